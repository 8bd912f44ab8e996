"""Every error code is one `ErrorCode` member: used, given one HTTP status, and in the README."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import relaychat
from relaychat.errors import AppError, ErrorCode
from relaychat.http.problems import _HTTP_CODES

ROOT = Path(__file__).parent.parent
SOURCE = ROOT / "src" / "relaychat"

# Modules that run something when imported rather than define it.
_NOT_IMPORTABLE = re.compile(r"(\.__main__$|\.migrations\.)")


def _import_everything() -> None:
    """Import every module, so the leaves that live next to the code raising them are found."""
    for module in pkgutil.walk_packages(relaychat.__path__, "relaychat."):
        if not _NOT_IMPORTABLE.search(module.name):
            importlib.import_module(module.name)


def _subclasses(cls: type[AppError]) -> Iterator[type[AppError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def error_classes() -> list[type[AppError]]:
    _import_everything()
    return list(dict.fromkeys(_subclasses(AppError)))


def statuses() -> dict[ErrorCode, int]:
    """The HTTP status of each code: its class's, or the status a plain HTTP error maps from."""
    found: dict[ErrorCode, set[int]] = defaultdict(set)
    for cls in error_classes():
        found[cls.code].add(cls.status)
    for status, code in _HTTP_CODES.items():
        found[code].add(status)
    clashes = {code: sorted(s) for code, s in found.items() if len(s) > 1}
    assert not clashes, f"a code with more than one status: {clashes}"
    return {code: s.pop() for code, s in found.items()}


def test_every_error_class_uses_an_error_code() -> None:
    for cls in error_classes():
        assert isinstance(cls.code, ErrorCode), f"{cls.__qualname__}.code is {cls.code!r}"


def test_no_two_error_classes_define_the_same_code() -> None:
    # A subclass may inherit its parent's code (KeyRefused groups the key refusals under
    # `forbidden`; TwilioMediaType is `unsupported_media_type` with a Twilio title) and then
    # keeps its status too; what must not happen is two classes spelling out one code.
    owners: dict[ErrorCode, list[str]] = defaultdict(list)
    for cls in error_classes():
        if "code" in vars(cls):
            owners[cls.code].append(f"{cls.__module__}.{cls.__qualname__}")
        else:
            parent = next(base for base in cls.__mro__[1:] if "code" in vars(base))
            assert issubclass(parent, AppError)
            assert cls.status == parent.status, f"{cls.__qualname__} changes {cls.code}'s status"
    shared = {code: names for code, names in owners.items() if len(names) > 1}
    assert not shared, shared


def test_one_status_per_code() -> None:
    assert statuses()


def test_every_error_code_is_used() -> None:
    text = "\n".join(path.read_text() for path in SOURCE.rglob("*.py"))
    unused = [code.name for code in ErrorCode if f"ErrorCode.{code.name}" not in text]
    assert not unused, f"ErrorCode members nothing uses: {unused}"


def readme_errors() -> dict[str, tuple[str, str]]:
    """The README's "Errors" table: code -> (status, meaning)."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^### Errors\n(.*?)(?=^#)", readme, re.DOTALL | re.MULTILINE)
    assert section, 'README.md has no "### Errors" section'
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \|$", section.group(1), re.MULTILINE)
    table = {code: (status.strip(), meaning.strip()) for code, status, meaning in rows}
    assert len(table) == len(rows), "a code appears twice in the README's table"
    return table


def test_readme_lists_exactly_the_error_codes() -> None:
    table = readme_errors()
    members = {str(code) for code in ErrorCode}
    assert not members - table.keys(), f"missing from the README: {members - table.keys()}"
    assert not table.keys() - members, f"not an ErrorCode: {table.keys() - members}"


def test_readme_gives_each_code_its_status() -> None:
    table = readme_errors()
    known = statuses()
    for code in ErrorCode:
        status, meaning = table[code]
        assert meaning, code
        if code in known:
            assert status == str(known[code]), f"{code}: README says {status}, code {known[code]}"
        else:  # only http_error: whatever other status the framework answered with
            assert not status.isdigit(), code
