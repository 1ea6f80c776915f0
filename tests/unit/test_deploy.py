"""The deployment files build what they name: the Dockerfile installs the server extra as a
non-root user; the compose file and the Kubernetes manifests start every role from files that
exist, with settings trail knows, private by default. No container engine or cluster runs here:
these checks are what can be proved on this machine (deploy/README.md says the rest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from trail.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ROLES = {p.name for p in (ROOT / "consumers").glob("*.py")}
#: Files an operator provides and the repository must never hold (keys, passwords, certificates).
OPERATOR_PROVIDED = ("./secrets/", "./tls/")


def _known(var: str) -> bool:
    name = var.removeprefix("TRAIL_").lower()
    return name in Settings.__dataclass_fields__ or (
        name.endswith("_file") and name.removesuffix("_file") in Settings.__dataclass_fields__
    )


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_dockerfile_installs_the_server_extra_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert re.search(r"pip install .*'\.\[server\]'", text) and "[local" not in text
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".trail" in ignored and ".git" in ignored


def test_compose_runs_every_role_from_the_image_with_known_settings() -> None:
    services = _compose()["services"]
    commands = {}
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc and "build" not in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin the image"
        if "build" in svc:
            assert (DEPLOY / svc["build"] / "Dockerfile").is_file(), name
            script = svc["command"][-1]
            assert (ROOT / script).is_file(), f"{name} runs {script}, which does not exist"
            commands[Path(script).name] = name
            env = svc["environment"]
            unknown = [k for k in env if k.startswith("TRAIL_") and not _known(k)]
            assert not unknown, f"{name}: settings trail does not know: {unknown}"
            assert env["TRAIL_MODE"] == "production"
            assert svc.get("read_only") is True, f"{name}: read-only root file system"
    assert set(commands) == ROLES, f"roles without a service: {ROLES - set(commands)}"
    assert services[commands["sink.py"]]["deploy"]["replicas"] >= 2


def test_compose_names_only_files_that_exist_or_that_the_operator_provides() -> None:
    compose = _compose()
    paths = []
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                paths.append(src)
    paths += [s["file"] for s in compose.get("secrets", {}).values()]
    assert paths
    for src in paths:
        if (src.rstrip("/") + "/").startswith(OPERATOR_PROVIDED):
            assert not (DEPLOY / src).exists() or src.endswith(".example"), f"{src} must not be committed"
            continue
        assert (DEPLOY / src).exists(), f"compose mounts {src}, which does not exist"
    readme = (DEPLOY / "README.md").read_text()
    assert "./secrets/" in readme and "./tls/" in readme


def test_prometheus_scrapes_every_trail_service() -> None:
    services = {n for n, s in _compose()["services"].items() if "build" in s}
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped = {name for job in config["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]}
    assert scraped == services


def _manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = []
    for res in kustomization["resources"]:
        path = DEPLOY / "k8s" / res
        assert path.is_file(), res
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_k8s_manifests_are_well_formed_and_locked_down() -> None:
    docs = _manifests()
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == len(ROLES)
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert all(_known(k) for k in config["data"]), config["data"]
    scripts = set()
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), d["metadata"]["name"]
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"] for v in pod["volumes"]}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["image"] == "trail"
            script = c["command"][-1]
            assert (ROOT / script).is_file(), script
            scripts.add(Path(script).name)
            assert all(_known(e["name"]) for e in c.get("env", [])), c["env"]
            assert {m["name"] for m in c["volumeMounts"]} <= volumes
            assert c["ports"] and "memory" in c["resources"]["limits"]
    assert scripts == ROLES
    svc = next(d for d in docs if d["kind"] == "Service")
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "trail-api")
    assert svc["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("var", ["TRAIL_NOT_A_SETTING", "TRAIL_KAFKA_SASL_PASWORD"])
def test_the_settings_check_catches_a_misspelt_variable(var: str) -> None:
    assert not _known(var)
    assert _known("TRAIL_KAFKA_SASL_PASSWORD_FILE") and _known("TRAIL_METRICS_PORT")
