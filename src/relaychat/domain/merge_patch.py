"""JSON Merge Patch (RFC 7396): how every PATCH changes a nested object.

Named members change, a `null` member removes one (back to its default), members not named
stay, objects merge recursively, anything else (arrays too) replaces. Hand-written rather
than a dependency: it is the RFC's ten-line algorithm (section 2).
"""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied; neither argument is modified."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged
