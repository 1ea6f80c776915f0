"""The architecture the tree promises: a light SDK and layers that only import downwards."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: What a service must not pay for when it records events.
HEAVY = (
    "clickhouse_connect",
    "chdb",
    "eventsourcing",
    "jinja2",
    "click",
    "yaml",
    "markdown_it",
    "cryptography",
    "fastapi",
    "starlette",
    "uvicorn",
    "trail.storage",
    "trail.incidents",
    "trail.api",
    "trail.local",
    "trail.detect",
    "trail.notices",
    "trail.documents",
    "trail.ingest",
)


def _loaded_modules(statement: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
    )
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                names.add(name)
    return names


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("import trail.sdk", id="import-sdk"),
        pytest.param("from trail.sdk import connect, Client", id="from-sdk-import"),
        pytest.param("import trail.testing", id="testing-helpers"),
    ],
)
def test_sdk_loads_nothing_heavy(statement: str) -> None:
    """Importing the SDK loads no store client, incident store, templates, API server or CLI."""
    loaded = _loaded_modules(statement)
    assert "trail.sdk" in loaded or "trail.testing" in loaded  # the measurement itself works
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []


def test_upward_import_fails_the_layers_contract(tmp_path: pytest.TempPathFactory) -> None:
    """import-linter's layers contract (make lint) breaks on an import from a lower layer upwards."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    copy = Path(str(tmp_path)) / "repo"
    shutil.copytree(root / "src", copy / "src")
    shutil.copy(root / "pyproject.toml", copy / "pyproject.toml")
    lint = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    env = {"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"}
    clean = subprocess.run(lint, cwd=copy, capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stdout[-2000:]
    events = copy / "src" / "trail" / "events" / "model.py"
    events.write_text(events.read_text() + "\nfrom trail.storage import store as _upward  # noqa\n")
    broken = subprocess.run(lint, cwd=copy, capture_output=True, text=True, env=env)
    assert broken.returncode != 0
    assert "trail.events is not allowed to import trail.storage" in broken.stdout


def test_no_package_holds_more_than_a_fifth_of_the_lines() -> None:
    """The tree shows the architecture: no package under src/trail/ holds more than a fifth of its lines."""
    from pathlib import Path

    import trail

    root = Path(trail.__file__).parent
    lines = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in root.rglob("*.py")}
    total = sum(lines.values())
    packages = [d for d in root.iterdir() if d.is_dir() and (d / "__init__.py").exists()]
    share = {d.name: sum(n for p, n in lines.items() if d in p.parents) / total for d in packages}
    assert share and max(share.values()) <= 0.2, share
