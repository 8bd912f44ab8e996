"""The layering of DESIGN.md, checked on the imports themselves (ast, so comments and
strings do not count): nothing below the fronts imports them, nothing imports `api/`, and
neither the domain nor the adapters import the workers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "relaychat"
FRONTS = (
    "relaychat.api",
    "relaychat.gateway",
    "relaychat.openai_api",
    "relaychat.web",
    "relaychat.cli",
)
BELOW_THE_FRONTS = ("domain", "llm", "realtime", "storage", "workers", "http")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_nothing_but_the_app_imports_api() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(PACKAGE)
        if path.relative_to(PACKAGE).parts[0] != "api" and path.name != "app.py"
        for name in imports_of(path)
        if name == "relaychat.api" or name.startswith("relaychat.api.")
    ]
    assert offenders == []


@pytest.mark.parametrize("layer", BELOW_THE_FRONTS)
def test_lower_layers_do_not_import_the_fronts(layer: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(PACKAGE / layer)
        for name in imports_of(path)
        if any(name == front or name.startswith(front + ".") for front in FRONTS)
    ]
    assert offenders == []


@pytest.mark.parametrize("layer", ("domain", "llm", "realtime", "storage", "http"))
def test_workers_are_above_the_domain(layer: str) -> None:
    """Workers import the domain; the domain gets a worker handed in by Services (the key
    cache's `on_use`), never by importing it."""
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(PACKAGE / layer)
        for name in imports_of(path)
        if name == "relaychat.workers" or name.startswith("relaychat.workers.")
    ]
    assert offenders == []
