"""Documents render from what the package ships: templates, labels and the default playbook come
through importlib.resources, so an installed wheel (or a zip) renders as the source tree does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trail
from tests.unit.test_documents import incident_ctx, plan_ctx
from trail.documents import ALL_KINDS, FORMATS, LANGS, PLAN_KIND, packaged_templates, render, template_name
from trail.documents.rendering import LAYOUT_TEMPLATE

PACKAGE = Path(trail.__file__).parent

RENDER_ALL = """
import json, sys
import trail
from trail.documents import ALL_KINDS, FORMATS, LANGS, PLAN_KIND, render, required_elements
from trail.incidents.playbook import load_playbook

assert trail.__file__.startswith(sys.argv[1]), trail.__file__
contexts = json.load(sys.stdin)
shipped = load_playbook()
contexts["shipped_plan"] = dict(contexts["plan"], org=shipped.org_dict(), playbook=shipped.to_plan_dict(None))
done = []
for name in ("incident", "plan", "shipped_plan"):
    for kind in ALL_KINDS:
        if (kind == PLAN_KIND) != (name != "incident"):
            continue
        for lang in LANGS:
            for fmt in FORMATS:
                out = render(kind, contexts[name], lang=lang, fmt=fmt)
                assert required_elements(kind, lang)[0] in out, (kind, lang, fmt)
                done.append(f"{name}:{kind}.{lang}.{fmt}")
print(json.dumps(done))
"""


def test_every_template_is_package_data() -> None:
    """Each kind has a template per language, and the layout, in the installed package's resources."""
    root = packaged_templates()
    for kind in ALL_KINDS:
        for lang in LANGS:
            assert root.joinpath(template_name(kind, lang)).is_file(), template_name(kind, lang)
    assert root.joinpath(LAYOUT_TEMPLATE).is_file()
    assert Path(str(root)).is_relative_to(PACKAGE)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_renders_with_the_packaged_templates(kind: str, lang: str) -> None:
    """With no templates directory given, every kind renders in both formats from the packaged templates."""
    ctx = plan_ctx() if kind == PLAN_KIND else incident_ctx()
    for fmt in FORMATS:
        assert render(kind, ctx, lang=lang, fmt=fmt, templates_dir=None)


def test_every_kind_renders_from_a_zipped_package(tmp_path: Path) -> None:
    """trail imported from a zip (no files on disk) renders every kind in zh and en, and the shipped plan."""
    archive = tmp_path / "trail.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                z.write(path, Path("trail") / path.relative_to(PACKAGE))
    contexts = {"incident": incident_ctx(), "plan": plan_ctx()}
    run = subprocess.run(
        [sys.executable, "-c", RENDER_ALL, str(archive)],
        input=json.dumps(contexts),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(archive)},
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    done = json.loads(run.stdout)
    per_context = len(LANGS) * len(FORMATS)
    assert len(done) == per_context * (len(ALL_KINDS) + 1)  # every kind, and the shipped plan again
