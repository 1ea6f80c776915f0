"""Settings: sources and their precedence, validation naming the variable, secrets, the local key."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from trail.config import MIN_KEY_LEN, Settings, load_settings
from trail.errors import ConfigError
from trail.sdk.pseudonymise import Pseudonymiser

KEY = "k" * 64  # a fixed fake key
OTHER_KEY = "o" * 64


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in an empty directory, so no stray ./trail.toml is read."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture()
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "trail.toml"
    path.parent.mkdir()
    path.write_text('[trail]\nnamespace = "file."\nsink_batch_size = 111\nlog_level = "debug"\n', encoding="utf-8")
    return path


def load(env: dict[str, str] | None = None, **kwargs: Any) -> Settings:
    return load_settings(env or {}, **kwargs)


def test_defaults_without_any_source() -> None:
    """With no file and no variables the documented defaults apply."""
    s = load()
    assert s.mode == "local"
    assert s.data_dir == Path(".trail")
    assert s.sink_batch_size == 20_000
    assert s.spool_max_bytes == 1 << 30
    assert s.effective_spool_dir == Path(".trail") / "spool"
    assert s.topic("events") == "trail.events"


@pytest.mark.parametrize(
    ("env", "overrides", "namespace", "batch"),
    [
        pytest.param({}, {}, "file.", 111, id="file-only"),
        pytest.param({"TRAIL_NAMESPACE": "env."}, {}, "env.", 111, id="env-over-file"),
        pytest.param({"TRAIL_SINK_BATCH_SIZE": "222"}, {}, "file.", 222, id="env-int-over-file"),
        pytest.param({"TRAIL_NAMESPACE": "env."}, {"namespace": "cli."}, "cli.", 111, id="override-over-env"),
        pytest.param({"TRAIL_SINK_BATCH_SIZE": "222"}, {"sink_batch_size": 333}, "file.", 333, id="override-int"),
        pytest.param({"TRAIL_NAMESPACE": ""}, {}, "file.", 111, id="empty-env-ignored"),
        pytest.param({}, {"namespace": None}, "file.", 111, id="none-override-ignored"),
    ],
)
def test_precedence(
    toml_file: Path, env: dict[str, str], overrides: dict[str, Any], namespace: str, batch: int
) -> None:
    """The toml file is overridden by TRAIL_* variables, which are overridden by explicit overrides."""
    s = load(env, config_file=toml_file, **overrides)
    assert s.namespace == namespace
    assert s.sink_batch_size == batch
    assert s.log_level == "debug"
    assert s.topic("events") == f"{namespace}trail.events"


def test_config_file_from_trail_config(toml_file: Path) -> None:
    """TRAIL_CONFIG names the toml file to read."""
    assert load({"TRAIL_CONFIG": str(toml_file)}).namespace == "file."


def test_trail_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    """Without TRAIL_CONFIG, ./trail.toml is read when present."""
    (tmp_path / "trail.toml").write_text('namespace = "cwd."\n', encoding="utf-8")
    assert load().namespace == "cwd."


def test_toml_top_level_table_is_accepted(tmp_path: Path) -> None:
    """Settings may sit at the top level of the toml file instead of a [trail] table."""
    path = tmp_path / "flat.toml"
    path.write_text('sink_batch_seconds = 2.5\nmode = "local"\n', encoding="utf-8")
    assert load(config_file=path).sink_batch_seconds == 2.5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"TRAIL_SINK_BATCH_SIZE": "abc"}, "TRAIL_SINK_BATCH_SIZE", id="batch-size-text"),
        pytest.param({"TRAIL_SINK_BATCH_SIZE": "0"}, "TRAIL_SINK_BATCH_SIZE", id="batch-size-zero"),
        pytest.param({"TRAIL_API_PORT": "-1"}, "TRAIL_API_PORT", id="port-negative"),
        pytest.param({"TRAIL_SPOOL_MAX_BYTES": "1GB"}, "TRAIL_SPOOL_MAX_BYTES", id="spool-units"),
        pytest.param({"TRAIL_SINK_BATCH_SECONDS": "soon"}, "TRAIL_SINK_BATCH_SECONDS", id="seconds-text"),
        pytest.param({"TRAIL_SINK_MAX_DEADLETTER_RATIO": "2"}, "TRAIL_SINK_MAX_DEADLETTER_RATIO", id="ratio-above-one"),
        pytest.param({"TRAIL_SINK_MAX_DEADLETTER_RATIO": "0"}, "TRAIL_SINK_MAX_DEADLETTER_RATIO", id="ratio-zero"),
        pytest.param({"TRAIL_MODE": "staging"}, "TRAIL_MODE", id="mode"),
        pytest.param({"TRAIL_LOG_LEVEL": "loud"}, "TRAIL_LOG_LEVEL", id="log-level"),
        pytest.param({"TRAIL_LOG_FORMAT": "xml"}, "TRAIL_LOG_FORMAT", id="log-format"),
        pytest.param({"TRAIL_NAMESPACE": "a b"}, "TRAIL_NAMESPACE", id="namespace"),
        pytest.param({"TRAIL_CLICKHOUSE_DSN": "ftp://host"}, "TRAIL_CLICKHOUSE_DSN", id="dsn-scheme"),
        pytest.param({"TRAIL_SINK_BATCH_SECONDS": "-1"}, "TRAIL_SINK_BATCH_SECONDS", id="seconds-negative"),
        pytest.param({"TRAIL_SEALER_STALL_WARN": "0"}, "TRAIL_SEALER_STALL_WARN", id="stall-warn-zero"),
        pytest.param({"TRAIL_SEALER_STALL_WARN": "soon"}, "TRAIL_SEALER_STALL_WARN", id="stall-warn-text"),
        pytest.param({"TRAIL_VERIFY_EVERY": "-1h"}, "TRAIL_VERIFY_EVERY", id="verify-every-negative"),
        pytest.param({"TRAIL_VERIFY_EVERY": "daily"}, "TRAIL_VERIFY_EVERY", id="verify-every-text"),
    ],
)
def test_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    """An invalid value is refused with a ConfigError that names the variable."""
    with pytest.raises(ConfigError, match=variable):
        load(env)


def test_sealer_stall_warning_takes_a_duration() -> None:
    assert load({}).sealer_stall_warn == 300.0
    assert load({"TRAIL_SEALER_STALL_WARN": "2m"}).sealer_stall_warn == 120.0
    assert load({"TRAIL_SEALER_STALL_WARN": "45"}).sealer_stall_warn == 45.0


def test_scheduled_verification_is_off_unless_given_a_duration() -> None:
    assert load({}).verify_every == 0.0
    assert load({"TRAIL_VERIFY_EVERY": "24h"}).verify_every == 86400.0
    assert load({"TRAIL_VERIFY_EVERY": "0"}).verify_every == 0.0


def test_bad_override_names_the_flag() -> None:
    """An invalid override is refused naming the command-line flag."""
    with pytest.raises(ConfigError, match="--sink-batch-size"):
        load(sink_batch_size="many")


def test_bad_toml_value_names_file_and_key(toml_file: Path) -> None:
    """An invalid value in the toml file is refused naming the file and the key."""
    toml_file.write_text('[trail]\nsink_batch_size = "many"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"trail\.toml:sink_batch_size"):
        load(config_file=toml_file)


def test_unknown_toml_key_is_refused(toml_file: Path) -> None:
    """An unknown setting in the toml file is refused with its name."""
    toml_file.write_text("[trail]\nbatch = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown setting 'batch'"):
        load(config_file=toml_file)


def test_invalid_toml_is_refused(toml_file: Path) -> None:
    """A toml file that does not parse is refused naming the file."""
    toml_file.write_text("[trail\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(config_file=toml_file)


# ---------------------------------------------------------------- the subject key


def test_production_without_key_is_refused() -> None:
    """Production mode without a subject key is refused naming TRAIL_SUBJECT_KEY."""
    with pytest.raises(ConfigError, match="TRAIL_SUBJECT_KEY"):
        load({"TRAIL_MODE": "production", "TRAIL_KAFKA_BOOTSTRAP": "kafka.test:9092"})


def test_production_without_bootstrap_is_refused() -> None:
    """Production mode without a broker address is refused naming TRAIL_KAFKA_BOOTSTRAP."""
    with pytest.raises(ConfigError, match="TRAIL_KAFKA_BOOTSTRAP"):
        load({"TRAIL_MODE": "production", "TRAIL_SUBJECT_KEY": KEY})


def test_production_with_key_and_bootstrap_loads() -> None:
    """Production mode with a key and a broker address loads and hands the key out."""
    s = load({"TRAIL_MODE": "production", "TRAIL_SUBJECT_KEY": KEY, "TRAIL_KAFKA_BOOTSTRAP": "kafka.test:9092"})
    assert s.require_subject_key() == KEY.encode()


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"TRAIL_SUBJECT_KEY": "short"}, id="local"),
        pytest.param({"TRAIL_SUBJECT_KEY": "k" * (MIN_KEY_LEN - 1)}, id="one-short"),
        pytest.param(
            {"TRAIL_SUBJECT_KEY": "short", "TRAIL_MODE": "production", "TRAIL_KAFKA_BOOTSTRAP": "kafka.test:9092"},
            id="production",
        ),
    ],
)
def test_short_key_is_refused(env: dict[str, str]) -> None:
    """A subject key under 32 characters is refused naming TRAIL_SUBJECT_KEY and the minimum."""
    with pytest.raises(ConfigError, match=f"TRAIL_SUBJECT_KEY: must be at least {MIN_KEY_LEN}"):
        load(env)


def test_key_is_read_from_key_file(tmp_path: Path) -> None:
    """TRAIL_SUBJECT_KEY_FILE supplies the key, stripped of its trailing newline."""
    path = tmp_path / "subject.key"
    path.write_text(KEY + "\n", encoding="utf-8")
    assert load({"TRAIL_SUBJECT_KEY_FILE": str(path)}).subject_key == KEY


def test_unreadable_key_file_is_named(tmp_path: Path) -> None:
    """A key file that cannot be read is refused naming TRAIL_SUBJECT_KEY_FILE."""
    with pytest.raises(ConfigError, match="TRAIL_SUBJECT_KEY_FILE"):
        load({"TRAIL_SUBJECT_KEY_FILE": str(tmp_path / "missing.key")})


def test_key_variable_wins_over_key_file(tmp_path: Path) -> None:
    """TRAIL_SUBJECT_KEY wins over TRAIL_SUBJECT_KEY_FILE when both are set."""
    path = tmp_path / "subject.key"
    path.write_text(OTHER_KEY, encoding="utf-8")
    assert load({"TRAIL_SUBJECT_KEY": KEY, "TRAIL_SUBJECT_KEY_FILE": str(path)}).subject_key == KEY


def test_key_file_variable_wins_over_toml(toml_file: Path, tmp_path: Path) -> None:
    """TRAIL_SUBJECT_KEY_FILE (environment) wins over subject_key in the toml file."""
    toml_file.write_text(f'[trail]\nsubject_key = "{OTHER_KEY}"\n', encoding="utf-8")
    path = tmp_path / "subject.key"
    path.write_text(KEY, encoding="utf-8")
    assert load({"TRAIL_SUBJECT_KEY_FILE": str(path)}, config_file=toml_file).subject_key == KEY


# ---------------------------------------------------------------- masking


def test_masked_hides_the_key() -> None:
    """masked() and repr() never show the subject key."""
    s = load({"TRAIL_SUBJECT_KEY": KEY})
    shown = s.masked()
    assert shown["subject_key"] == "****"
    assert KEY not in json.dumps(shown)
    assert KEY not in repr(s)


def test_masked_without_key_shows_none() -> None:
    """masked() shows an unset key as None rather than a mask."""
    assert load().masked()["subject_key"] is None


@pytest.mark.parametrize(
    ("dsn", "password", "kept"),
    [
        pytest.param("http://trail:pw-test-0001@ch.test:8123", "pw-test-0001", "ch.test:8123", id="http"),
        pytest.param("https://trail:pw-test-0002@ch.test:8443/db", "pw-test-0002", "ch.test:8443/db", id="https"),
        pytest.param("http://trail:pw@test-0003@ch.test:8123", "test-0003", "ch.test:8123", id="at-sign-in-password"),
    ],
)
def test_masked_hides_dsn_password(dsn: str, password: str, kept: str) -> None:
    """masked() hides the password of TRAIL_CLICKHOUSE_DSN and keeps the host."""
    shown = load({"TRAIL_CLICKHOUSE_DSN": dsn}).masked()
    assert password not in json.dumps(shown)
    assert shown["clickhouse_dsn"].endswith("@" + kept)
    assert shown["store_dsn (effective)"] == shown["clickhouse_dsn"]


def test_masked_paths_are_strings(tmp_path: Path) -> None:
    """masked() renders paths as strings, so it can be printed as JSON."""
    shown = load({"TRAIL_DATA_DIR": str(tmp_path / "data")}).masked()
    assert shown["data_dir"] == str(tmp_path / "data")
    json.dumps(shown)


# ---------------------------------------------------------------- the local key


def test_local_mode_creates_private_key_file(tmp_path: Path) -> None:
    """In local mode a key is created as DATA_DIR/subject.key with mode 0600."""
    data = tmp_path / "data"
    key = load({"TRAIL_DATA_DIR": str(data)}).require_subject_key()
    path = data / "subject.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip().encode() == key
    assert len(key) >= MIN_KEY_LEN
    Pseudonymiser(key)  # long enough for the pseudonymiser


def test_local_mode_reuses_key_file(tmp_path: Path) -> None:
    """A second start in the same data directory reuses the key instead of making a new one."""
    env = {"TRAIL_DATA_DIR": str(tmp_path / "data")}
    first = load(env).require_subject_key()
    second = load(env).require_subject_key()
    assert first == second


def test_local_keys_differ_between_data_dirs(tmp_path: Path) -> None:
    """Two data directories get two different random keys."""
    a = load({"TRAIL_DATA_DIR": str(tmp_path / "a")}).require_subject_key()
    b = load({"TRAIL_DATA_DIR": str(tmp_path / "b")}).require_subject_key()
    assert a != b


def test_configured_key_does_not_touch_data_dir(tmp_path: Path) -> None:
    """A configured key is used as is and no key file is written."""
    data = tmp_path / "data"
    assert load({"TRAIL_DATA_DIR": str(data), "TRAIL_SUBJECT_KEY": KEY}).require_subject_key() == KEY.encode()
    assert not (data / "subject.key").exists()


def test_public_key_file_whose_path_is_64_characters_long() -> None:
    """A public key file is read as a file even when its path happens to be 64 characters long."""
    import shutil
    import tempfile

    from trail.integrity.keys import generate, load_public_key, write_keypair

    base = Path(tempfile.mkdtemp(prefix="k", dir="/tmp"))
    try:
        directory = base / ("d" * (64 - len(str(base / "checkpoint.pub")) - 1))
        _, pub = write_keypair(directory, key := generate())
        assert len(str(pub)) == 64
        assert load_public_key(str(pub)).raw_hex == key.public.raw_hex
        assert load_public_key(pub).raw_hex == key.public.raw_hex
    finally:
        shutil.rmtree(base)
