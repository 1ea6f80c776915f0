"""The rooms keep their layers: documents below incidents, incidents below notices, the local stack on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trail

PACKAGE = Path(trail.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _violations(room: str, forbidden: tuple[str, ...], allowed_files: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        if path.name in allowed_files:
            continue
        for name in sorted(_imports(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return out


@pytest.mark.parametrize(
    ("room", "forbidden", "allowed_files"),
    [
        pytest.param(
            "documents",
            ("trail.incidents", "trail.notices", "trail.storage", "trail.sdk", "trail.local", "trail.config"),
            (),
            id="documents-render-plain-contexts",
        ),
        # delivery.py only re-exports mask_spec for trail.config, until config imports it from trail.notices.
        pytest.param("incidents", ("trail.notices",), ("delivery.py",), id="incidents-below-notices"),
        pytest.param("notices", ("trail.local",), (), id="notices-below-the-local-stack"),
    ],
)
def test_a_room_imports_nothing_above_it(room: str, forbidden: tuple[str, ...], allowed_files: tuple[str, ...]) -> None:
    """No module of the room imports a room above it (at the top or inside a function)."""
    assert _violations(room, forbidden, allowed_files) == []
