"""Principals' names, roles' combinations, tokens, the permission table and the Kafka security settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trail.access.principals import check_new, normalise_name, same_person
from trail.access.roles import PERMISSIONS, ROLES, granting_role
from trail.access.tokens import looks_like_token, new_secret, parse_expiry, token_hash
from trail.config import kafka_options, load_settings
from trail.errors import ConfigError, UsageError, ValidationError


@pytest.mark.parametrize("name", ["E1002", "e1002", "Ｅ１００２", " E1002 ", "ｅ1002"])
def test_lookalike_names_are_one_principal(name: str) -> None:
    """Case, width and surrounding spaces do not make another principal."""
    assert normalise_name(name) == "e1002"
    assert same_person(name, "e1002")


@pytest.mark.parametrize("name", ["Е1002", "e 1002", "", "-x", "a" * 65, "e1002\u200b", "名字"])
def test_names_outside_the_alphabet_are_refused(name: str) -> None:
    """Cyrillic look-alikes, spaces, zero-width characters and other scripts cannot be names."""
    with pytest.raises(ValidationError):
        normalise_name(name)


@pytest.mark.parametrize(
    ("roles", "kind", "ok"),
    [
        pytest.param(["admin"], "staff", True, id="admin-alone"),
        pytest.param(["admin", "analyst"], "staff", False, id="admin-reads-nothing"),
        pytest.param(["auditor", "responder"], "staff", False, id="auditor-apart"),
        pytest.param(["admin"], "service", False, id="admin-is-a-person"),
        pytest.param(["analyst", "investigator", "responder"], "staff", True, id="readers-and-responder"),
        pytest.param(["root"], "staff", False, id="unknown-role"),
        pytest.param([], "staff", False, id="no-role"),
    ],
)
def test_role_combinations(roles: list[str], kind: str, ok: bool) -> None:
    """Separation of duties: admin alone, auditor alone, admin only for people."""
    if ok:
        assert check_new("someone", kind, roles)[2]
    else:
        with pytest.raises(UsageError):
            check_new("someone", kind, roles)


@pytest.mark.parametrize("name", ["local", "trail-access", "unauthenticated", "SYSTEM"])
def test_reserved_names_cannot_be_taken(name: str) -> None:
    with pytest.raises(ValidationError):
        check_new(name, "staff", ["analyst"])


def test_every_permission_names_known_roles_and_admin_reads_no_events() -> None:
    """The permission table uses the six roles only; admin grants nothing that reads events."""
    assert all(roles <= set(ROLES) for roles in PERMISSIONS.values())
    reads = ("events.read", "subjects.lookup", "sql.query", "access_log.read", "incidents.read", "alerts.read")
    assert not any(granting_role(("admin",), p) for p in reads)
    assert granting_role(("analyst", "investigator"), "subjects.lookup") == "investigator"


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and looks_like_token(a) and len(a) >= 43
    assert token_hash(a) != a and len(token_hash(a)) == 64


@pytest.mark.parametrize(("text", "delta"), [("12h", timedelta(hours=12)), ("90d", timedelta(days=90)),
                                             ("2w", timedelta(weeks=2)), ("1y", timedelta(days=365))])  # fmt: skip
def test_expiry_durations(text: str, delta: timedelta) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry(text, now) == now + delta
    assert parse_expiry("never") is None


@pytest.mark.parametrize("text", ["0d", "90", "d", "3 days", "-1d"])
def test_bad_expiry_is_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_expiry(text)


def _load(tmp_path: Path, **env: str) -> object:
    return load_settings(env, config_file=tmp_path / "none.toml")


def test_kafka_security_becomes_kafka_python_options_and_is_masked(tmp_path: Path) -> None:
    """SASL/SCRAM over TLS: every option kafka-python needs; the password is masked in config show."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = load_settings(
        {
            "TRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRAIL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TRAIL_KAFKA_SASL_USERNAME": "trail-sink",
            "TRAIL_KAFKA_SASL_PASSWORD_FILE": str(pw),
            "TRAIL_KAFKA_SSL_CAFILE": str(ca),
        },
        config_file=tmp_path / "none.toml",
    )
    assert kafka_options(s) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "trail-sink",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(ca),
    }
    assert s.masked()["kafka_sasl_password"] == "****" and "s3cret" not in repr(s)
    assert kafka_options(load_settings({}, config_file=tmp_path / "none.toml")) == {}


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        pytest.param({"TRAIL_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL", id="bad-protocol"),
        pytest.param({"TRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM", id="sasl-without-mechanism"),
        pytest.param({"TRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TRAIL_KAFKA_SASL_MECHANISM": "GSSAPI"},
                     "SASL_MECHANISM", id="unsupported-mechanism"),
        pytest.param({"TRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TRAIL_KAFKA_SASL_MECHANISM": "PLAIN"},
                     "USERNAME", id="no-credentials"),
        pytest.param({"TRAIL_KAFKA_SASL_MECHANISM": "PLAIN"}, "SASL_MECHANISM", id="mechanism-without-sasl"),
        pytest.param({"TRAIL_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "SSL_CAFILE", id="missing-file"),
        pytest.param({"TRAIL_RETENTION_FLOOR_DAYS": "30"}, "RETENTION_FLOOR_DAYS", id="floor-below-six-months"),
        pytest.param({"TRAIL_API_URL": "ftp://x"}, "TRAIL_API_URL", id="api-url"),
        pytest.param({"TRAIL_API_HEADER_TIMEOUT": "0"}, "HEADER_TIMEOUT", id="zero-timeout"),
    ],
)  # fmt: skip
def test_bad_access_and_kafka_settings_are_refused_naming_the_variable(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        _load(tmp_path, **env)


def test_the_retention_floor_can_be_raised(tmp_path: Path) -> None:
    s = load_settings({"TRAIL_RETENTION_FLOOR_DAYS": "1100"}, config_file=tmp_path / "x")
    assert s.retention_floor_days == 1100
