"""The distribution works outside the repository: a wheel, installed into a fresh virtual environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]


def _sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{args[:3]}: {res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """No TRAIL_* and no PYTHONPATH of the repository's: only what the fresh install has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAIL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, ROOT, cwd=out)
    [whl] = out.glob("trail-*.whl")
    return whl


def _venv(where: Path, *requirement: str) -> Path:
    base = getattr(sys, "_base_executable", sys.executable)
    _sh(base, "-m", "venv", where / "venv", cwd=where)
    py = where / "venv" / "bin" / "python"
    _sh(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirement, cwd=where, timeout=900)
    return py


@pytest.fixture(scope="module")
def full_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel with the local extra in a fresh venv. Its third-party dependencies come from the
    test run's own environment (a path entry, not the editable install of the repository), so the
    test does not download a second copy of the store; `pip install trail[local]` resolving them is
    what `make venv` does, and the SDK-only test below resolves the base install for real."""
    where = tmp_path_factory.mktemp("full")
    py = _venv(where, "--no-deps", str(wheel))
    site = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).strip())
    ours = Path(
        _sh(sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).strip()
    )
    (site / "zz_dependencies.pth").write_text(f"{ours}\n")
    return py


def test_wheel_ships_its_data_and_runs_outside_the_repository(full_install: Path, tmp_path: Path) -> None:
    """From a wheel install in a fresh venv: the schema, the plan, a drill's documents and the README's SDK example."""
    py = full_install
    trail = py.parent / "trail"
    origin = _sh(py, "-c", "import trail; print(trail.__file__)", cwd=tmp_path, env=_clean_env())
    assert origin.startswith(str(py.parent.parent)) and str(ROOT) not in origin

    schema = json.loads(_sh(trail, "schema", cwd=tmp_path, env=_clean_env()))
    assert schema["properties"]["schema"]["const"] == "trail.audit/v1"

    plan = _sh(trail, "playbook", "render", "--format", "md", "--lang", "zh", cwd=tmp_path, env=_clean_env())
    assert "应急预案" in plan

    data = tmp_path / "drill"
    _sh(trail, "drill", "--by", "E1001", "--data-dir", data, cwd=tmp_path, env=_clean_env())
    documents = sorted(p.name for p in data.rglob("*.html"))
    assert any("initial_report" in name for name in documents), documents

    data = tmp_path / "data"
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115  # closed below
    up = subprocess.Popen([trail, "up", "--data-dir", data], cwd=tmp_path, env=_clean_env(), stderr=log)
    try:
        wait_for(lambda: (data / "server.json").exists(), 90, what="trail up from the wheel")
        readme = (ROOT / "README.md").read_text()
        example = readme.split("<!-- sdk-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
        _sh(py, "-c", example, cwd=tmp_path, env=_clean_env(TRAIL_DATA_DIR=str(data)), timeout=120)

        def stored() -> int:
            out = _sh(trail, "query", "actor", "E1001", "--data-dir", data, "--format", "json", cwd=tmp_path,
                      env=_clean_env())  # fmt: skip
            return len([line for line in out.splitlines() if line.strip()])

        wait_for(lambda: stored() >= 2, 60, what="the README example's events in the store")
        api = json.loads((data / "server.json").read_text())["api"]
        with urllib.request.urlopen(api + "/console/login", timeout=30) as res:  # noqa: S310  # local API
            assert res.status == 200 and "/console/static/console.js" in res.read().decode()
        with urllib.request.urlopen(api + "/console/static/console.css", timeout=30) as res:  # noqa: S310
            assert res.status == 200 and b".clock" in res.read()  # the console's templates and files are in the wheel
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]


def test_sdk_alone_installs_without_the_server(wheel: Path, tmp_path: Path) -> None:
    """The base install is the SDK: it records without the store client, and `trail` says what to install."""
    py = _venv(tmp_path, str(wheel))
    probe = (
        "import importlib.util as u, trail.sdk;"
        "from trail.sdk import connect, Client;"
        "print(sorted(m for m in ('clickhouse_connect','eventsourcing','jinja2','click','chdb') if u.find_spec(m)))"
    )
    assert _sh(py, "-c", probe, cwd=tmp_path, env=_clean_env()).strip() == "[]"
    res = subprocess.run([py.parent / "trail", "--help"], cwd=tmp_path, env=_clean_env(), capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2
    assert "pip install 'trail[server]'" in res.stderr and "Traceback" not in res.stderr
