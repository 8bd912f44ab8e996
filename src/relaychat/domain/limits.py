"""What may be stored: text both databases keep alike, and JSON every renderer can write back.

SQLite keeps a NUL or a lone surrogate that PostgreSQL refuses, and a lone surrogate cannot
be encoded as UTF-8 on the way out, so neither is stored anywhere. JSON is bounded so that
whatever is committed renders again: pydantic's serialiser stops at 255 levels, and events
and answers wrap a stored value in a few levels of their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator

from relaychat.errors import ValidationFailed

# Any JSON a request carries (bodies are also capped in bytes by BodySizeLimit).
MAX_JSON_DEPTH = 32

METADATA_MAX_DEPTH = 8
METADATA_MAX_KEYS = 256
METADATA_MAX_KEY_LENGTH = 128
METADATA_MAX_BYTES = 16_384

# In a Python str every code point in this range is unpaired: JSON pairs become one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Refusal:
    """Why a value cannot be stored, and where in it (`content[0].text`)."""

    field: str
    reason: str
    too_deep: bool = False


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000)"
    if not value.isascii() and _SURROGATE.search(value):
        return "must not contain a lone surrogate (\\ud800-\\udfff): it is not valid Unicode"
    return None


def storable_text(value: str) -> str:
    """`value` as both databases store it alike: NULs dropped, each lone surrogate replaced
    by U+FFFD. For text nobody can be asked to correct (a model's output); people's input is
    refused instead (`text_problem`)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    return value


def storable(value: Any) -> Any:
    """`value` with every string in it (dict keys too) made `storable_text`."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def find_unstorable(
    value: Any, *, max_depth: int = MAX_JSON_DEPTH, path: str = ""
) -> Refusal | None:
    """The first string (value or key) that cannot be stored, or nesting over `max_depth`."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            reason = text_problem(node)
            if reason:
                return Refusal(where or "body", reason)
        elif isinstance(node, dict | list):
            if depth > max_depth:
                return Refusal(where or "body", f"nested deeper than {max_depth} levels", True)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str) and (reason := text_problem(key)):
                    return Refusal(_child(where, key), f"key {reason}")
                stack.append((child, _child(where, key), depth + 1))
    return None


def metadata_problem(metadata: dict[str, Any]) -> Refusal | None:
    """Why `metadata` is out of bounds (depth, keys, key length, size, text), or None."""
    refusal = find_unstorable(metadata, max_depth=METADATA_MAX_DEPTH, path="metadata")
    if refusal is not None:
        return refusal
    keys = 0
    stack: list[tuple[Any, str]] = [(metadata, "metadata")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                keys += 1
                if len(key) > METADATA_MAX_KEY_LENGTH:
                    return Refusal(where, f"keys are at most {METADATA_MAX_KEY_LENGTH} characters")
                stack.append((child, _child(where, key)))
        elif isinstance(node, list):
            stack.extend((child, _child(where, i)) for i, child in enumerate(node))
    if keys > METADATA_MAX_KEYS:
        return Refusal("metadata", f"at most {METADATA_MAX_KEYS} keys in all")
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        return Refusal("metadata", f"at most {METADATA_MAX_BYTES} bytes as JSON (got {size})")
    return None


def check_metadata(metadata: dict[str, Any] | None) -> None:
    """Refuse metadata out of bounds, whichever door it came in by."""
    refusal = metadata_problem(metadata or {})
    if refusal is not None:
        raise ValidationFailed(f"{refusal.field}: {refusal.reason}", field=refusal.field)


def _valid_metadata(value: dict[str, Any]) -> dict[str, Any]:
    refusal = metadata_problem(value)
    if refusal is not None:
        # The location is added by pydantic; name the spot inside metadata in the message.
        inner = refusal.field.removeprefix("metadata").lstrip(".")
        raise ValueError(f"{inner}: {refusal.reason}" if inner else refusal.reason)
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_valid_metadata)]
"""A request's free-form metadata, bounded in depth, keys, key length and size."""
