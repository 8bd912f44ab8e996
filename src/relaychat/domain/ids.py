"""Identifier generation."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A random UUID4 as a string: unguessable, so ids never reveal counts or neighbours."""
    return str(uuid.uuid4())
