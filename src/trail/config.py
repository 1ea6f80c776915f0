"""One frozen, typed settings object for every trail process.

Sources, later wins: built-in defaults, an optional ``trail.toml`` (``$TRAIL_CONFIG`` or
``./trail.toml``, table ``[trail]`` or top level), then ``TRAIL_*`` environment variables.
Everything is validated once, at start-up, with messages that name the variable.

| variable | meaning | default |
|---|---|---|
| TRAIL_DATA_DIR | local data directory (store, spool, keys, server.json) | ./.trail |
| TRAIL_MODE | ``local`` or ``production`` | local |
| TRAIL_NAMESPACE | prefix for topic names (multi-tenant clusters) | empty |
| TRAIL_KAFKA_BOOTSTRAP | ``host:port[,host:port]``; unset = the local stack's broker | unset |
| TRAIL_CLICKHOUSE_DSN | ``http://user:pass@host:8123`` or ``chdb:///path``; unset = chDB in the data dir | unset |
| TRAIL_CLICKHOUSE_DATABASE | database holding trail's tables | trail |
| TRAIL_CLICKHOUSE_CLUSTER | ClickHouse cluster the tables are sharded over (``trail store ddl --cluster``) | unset |
| TRAIL_SUBJECT_KEY | key for subject pseudonymisation (≥ 32 characters) | required in production |
| TRAIL_SUBJECT_KEY_FILE | file holding that key | unset |
| TRAIL_SPOOL_DIR | SDK on-disk spool | DATA_DIR/spool |
| TRAIL_SPOOL_MAX_BYTES | bound of the SDK spool | 1 GiB |
| TRAIL_MAX_CLOCK_SKEW | how far ``occurred_at`` may be ahead of the host clock (seconds, ``10m``, ``1h``) | 10m |
| TRAIL_REFUSE_PERSONAL_DATA | refuse ``attributes`` values and ``consent_ref`` that look like personal data | true |
| TRAIL_SINK_BATCH_SIZE | sink flushes at this many rows ... | 20000 |
| TRAIL_SINK_BATCH_SECONDS | ... or after this many seconds | 1.0 |
| TRAIL_SINK_MAX_DEADLETTER_RATIO | crash if a batch dead-letters more than this share | 0.5 |
| TRAIL_CHECKPOINT_KEY_FILE | Ed25519 signing key (PEM) for checkpoints | DATA_DIR/keys/checkpoint.key |
| TRAIL_CHECKPOINT_SECONDS | seal a checkpoint this often (0: never) | 10 |
| TRAIL_SEALER_STALL_WARN | how long records wait for the sinks' group before the sealer warns (``5m``) | 5m |
| TRAIL_TIMEZONE | the organisation's local time zone (detection rules) | Asia/Shanghai |
| TRAIL_RULES_FILE | TOML file overriding detection rule defaults | unset |
| TRAIL_APPROVED_JOBS | actor ids of approved bulk jobs (comma-separated) | empty |
| TRAIL_DETECTOR_CHECKPOINT_SECONDS | how often the detector checkpoints its window state | 300 |
| TRAIL_API_HOST / TRAIL_API_PORT | HTTP API of ``trail up`` | 127.0.0.1 / free port |
| TRAIL_METRICS_HOST / TRAIL_METRICS_PORT | Prometheus ``/metrics`` of a role without an API (0: off) | 127.0.0.1 / 0 |
| TRAIL_INCIDENT_STORE | ``postgresql://user:pass@host:port/db?schema=trail``; unset = SQLite in the data dir | unset |
| TRAIL_PLAYBOOK | the graded emergency plan (YAML) | the default shipped in trail.incidents.playbooks |
| TRAIL_CONTACT_RESOLVER | ``module:attr``, ``entrypoint:NAME`` or ``command:PROGRAM ARGS`` | unset |
| TRAIL_NOTICE_CHANNEL | ``outbox``, ``smtp://...`` or ``webhook:URL`` | outbox |
| TRAIL_OUTBOX_DIR | where the outbox channel and documents are written | DATA_DIR/outbox |
| TRAIL_INCIDENT_SEVERITIES | alert severities that open incidents (comma-separated) | high,critical |
| TRAIL_LOG_FORMAT | ``json`` or ``console`` (default: console on a TTY) | auto |
| TRAIL_LOG_LEVEL | debug, info, warning, error | info |
| TRAIL_API_URL | the API the command line talks to (a remote ``trail serve``); unset = ``trail up``'s | unset |
| TRAIL_TOKEN / TRAIL_TOKEN_FILE | the command line's bearer token; unset = ``DATA_DIR/keys/local.token`` | unset |
| TRAIL_API_MAX_BODY_BYTES | largest request body (``POST /v1/events``; JSON bodies are capped at 1 MiB) | 64 MiB |
| TRAIL_API_MAX_CONNECTIONS | open connections and requests at once (more: 503) | 1000 |
| TRAIL_API_WORKER_THREADS | requests served at once by the store-bound handlers (others wait) | 32 |
| TRAIL_API_BACKLOG | the listen backlog | 2048 |
| TRAIL_API_HEADER_TIMEOUT | seconds a client has to send a request's headers | 10 |
| TRAIL_API_BODY_TIMEOUT | seconds a client has to send a request's body | 30 |
| TRAIL_API_KEEPALIVE_TIMEOUT | seconds an idle keep-alive connection stays open | 5 |
| TRAIL_API_RATE_PER_PRINCIPAL | requests per second one principal may make (bursts of twice that) | 500 |
| TRAIL_API_AUTH_FAILURES_PER_MINUTE | failed authentications per client address before 429 | 30 |
| TRAIL_CONSOLE_SESSION_IDLE | seconds a console session lasts without a request | 1800 |
| TRAIL_CONSOLE_SESSION_MAX | seconds a console session lasts at most (then log in again) | 43200 |
| TRAIL_SQL_MAX_ROWS / TRAIL_SQL_TIMEOUT | ``trail sql``: rows returned at most; seconds a query may run | 10000 / 30 |
| TRAIL_RETENTION_FLOOR_DAYS | nothing younger is deleted (Cybersecurity Law Art. 21(3)); only raised | 183 |
| TRAIL_KAFKA_SECURITY_PROTOCOL | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL | PLAINTEXT |
| TRAIL_KAFKA_SASL_MECHANISM | PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 | unset |
| TRAIL_KAFKA_SASL_USERNAME / _PASSWORD (_PASSWORD_FILE) | SASL credentials of this role | unset |
| TRAIL_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE | TLS: the CA bundle, this client's certificate and key (mTLS) | unset |
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from trail.errors import ConfigError

MIN_KEY_LEN = 32
#: Cybersecurity Law Art. 21(3): network logs are kept at least six months.
RETENTION_FLOOR_DAYS = 183
#: Where ``trail up`` writes the local principal's token (mode 0600), under the data directory.
LOCAL_TOKEN_FILE = "keys/local.token"  # noqa: S105  # a file name, not a secret


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".trail")
    mode: str = "local"
    namespace: str = ""
    kafka_bootstrap: str | None = None
    clickhouse_dsn: str | None = None
    clickhouse_database: str = "trail"
    clickhouse_cluster: str | None = None
    subject_key: str | None = field(default=None, repr=False)
    spool_dir: Path | None = None
    spool_max_bytes: int = 1 << 30
    max_clock_skew: float = 600.0  # seconds
    refuse_personal_data: bool = True
    sink_batch_size: int = 20_000
    sink_batch_seconds: float = 1.0
    sink_max_deadletter_ratio: float = 0.5
    checkpoint_key_file: Path | None = None
    checkpoint_seconds: float = 10.0
    sealer_stall_warn: float = 300.0  # seconds
    verify_every: float = 0.0  # seconds between the API process's own verifications; 0: never
    timezone: str = "Asia/Shanghai"
    rules_file: Path | None = None
    approved_jobs: str = ""
    detector_checkpoint_seconds: float = 300.0
    api_host: str = "127.0.0.1"
    api_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    incident_store: str | None = field(default=None, repr=False)
    playbook: Path | None = None
    contact_resolver: str | None = None
    notice_channel: str = field(default="outbox", repr=False)
    outbox_dir: Path | None = None
    incident_severities: str = "high,critical"
    log_format: str = "auto"
    log_level: str = "info"
    api_url: str | None = None
    token: str | None = field(default=None, repr=False)
    api_max_body_bytes: int = 64 << 20
    api_max_connections: int = 1000
    api_worker_threads: int = 32
    api_backlog: int = 2048
    api_header_timeout: float = 10.0
    api_body_timeout: float = 30.0
    api_keepalive_timeout: float = 5.0
    api_rate_per_principal: float = 500.0
    api_auth_failures_per_minute: int = 30
    console_session_idle: float = 1800.0
    console_session_max: float = 43200.0
    sql_max_rows: int = 10_000
    sql_timeout: float = 30.0
    retention_floor_days: int = RETENTION_FLOOR_DAYS
    #: Subject reports name staff by id only when the organisation says so (yes|no).
    report_staff_ids: str = "no"
    #: Deadlines of subject requests in working days, per kind: "deletion=10,access=15" (default 15 each).
    request_deadlines: str = ""
    #: YAML of retention classes and declared dataset retention (trail.access.retention_classes).
    retention_policy: Path | None = None
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # -- derived values -------------------------------------------------------------
    def topic(self, name: str) -> str:
        """The full topic name for ``events``, ``alerts`` or ``deadletter``."""
        return f"{self.namespace}trail.{name}"

    @property
    def store_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'store').resolve()}"

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    def require_subject_key(self) -> bytes:
        """The pseudonymisation key; in local mode one is created in the data directory."""
        if self.subject_key:
            return self.subject_key.encode("utf-8")
        if self.mode == "production":
            raise ConfigError(
                "TRAIL_SUBJECT_KEY (or TRAIL_SUBJECT_KEY_FILE) is required in production mode: "
                "subject ids are pseudonymised with it, and it must be the same for every service"
            )
        path = self.data_dir / "subject.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode("utf-8")

    @property
    def incident_store_path(self) -> Path:
        """The SQLite file of the incident store (when TRAIL_INCIDENT_STORE is unset)."""
        return self.data_dir / "incidents.db"

    @property
    def effective_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def checkpoint_key_path(self) -> Path:
        return self.checkpoint_key_file or self.data_dir / "keys" / "checkpoint.key"

    @property
    def public_key_path(self) -> Path:
        return self.checkpoint_key_path.with_suffix(".pub")

    @property
    def checkpoint_log_path(self) -> Path:
        return self.data_dir / "checkpoints.jsonl"

    def masked(self) -> dict[str, Any]:
        """The effective values for display, secrets masked."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        out["subject_key"] = "****" if self.subject_key else None
        if self.clickhouse_dsn and "@" in self.clickhouse_dsn:
            scheme, rest = self.clickhouse_dsn.split("://", 1)
            out["clickhouse_dsn"] = f"{scheme}://****@{rest.rsplit('@', 1)[1]}"
        out["store_dsn (effective)"] = out["clickhouse_dsn"] or self.store_dsn
        if self.incident_store and "@" in self.incident_store:
            scheme, rest = self.incident_store.split("://", 1)
            out["incident_store"] = f"{scheme}://****@{rest.rsplit('@', 1)[1]}"
        out["notice_channel"] = mask_url(self.notice_channel)
        out["token"] = "****" if self.token else None
        out["kafka_sasl_password"] = "****" if self.kafka_sasl_password else None
        return out

    @property
    def local_token_path(self) -> Path:
        return self.data_dir / LOCAL_TOKEN_FILE


_INT = {
    "spool_max_bytes",
    "sink_batch_size",
    "api_port",
    "metrics_port",
    "api_max_body_bytes",
    "api_max_connections",
    "api_worker_threads",
    "api_backlog",
    "api_auth_failures_per_minute",
    "sql_max_rows",
    "retention_floor_days",
}
_FLOAT = {
    "sink_batch_seconds",
    "sink_max_deadletter_ratio",
    "checkpoint_seconds",
    "detector_checkpoint_seconds",
    "api_header_timeout",
    "api_body_timeout",
    "api_keepalive_timeout",
    "api_rate_per_principal",
    "console_session_idle",
    "console_session_max",
    "sql_timeout",
}
_BOOL = {"refuse_personal_data"}
_DURATION = {"max_clock_skew", "sealer_stall_warn", "verify_every"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_UNITS = {"s": 1, "m": 60, "h": 3600}
_PATH = {
    "data_dir",
    "retention_policy",
    "spool_dir",
    "checkpoint_key_file",
    "rules_file",
    "playbook",
    "outbox_dir",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
}
#: Secrets that may also come from a file: ``TRAIL_<NAME>_FILE`` (the variable itself wins).
_FILE_SECRETS = ("subject_key", "token", "kafka_sasl_password")


def _coerce(name: str, value: Any, var: str) -> Any:
    if name in _INT:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{var}: must be a whole number") from None
        if number < 0:
            raise ConfigError(f"{var}: must be 0 or more")
        return number
    if name in _FLOAT:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{var}: must be a number") from None
    if name in _BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{var}: must be true or false")
    if name in _DURATION:
        return _duration(value, var)
    if name in _PATH:
        return Path(str(value)).expanduser()
    return str(value)


def _duration(value: Any, var: str) -> float:
    """Seconds from ``600``, ``600s``, ``10m`` or ``1h``."""
    text = str(value).strip().lower()
    factor = _UNITS.get(text[-1:])
    number = text[:-1] if factor else text
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise ConfigError(f"{var}: a duration in seconds, or like 10m or 1h") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigError(f"{var}: must be 0 or more")
    return seconds


def load_settings(
    env: Mapping[str, str] | None = None, *, config_file: Path | None = None, **overrides: Any
) -> Settings:
    """Read and validate the settings; ``overrides`` (e.g. from CLI flags) win over everything."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    names = set(Settings.__dataclass_fields__)

    path = config_file or (Path(env["TRAIL_CONFIG"]) if env.get("TRAIL_CONFIG") else Path("trail.toml"))
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        table = doc.get("trail", doc)
        for key, val in table.items():
            if key not in names:
                raise ConfigError(f"{path}: unknown setting '{key}'")
            values[key] = _coerce(key, val, f"{path}:{key}")

    for name in names:
        var = f"TRAIL_{name.upper()}"
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var], var)

    for secret in _FILE_SECRETS:
        var = f"TRAIL_{secret.upper()}"
        key_file = env.get(f"{var}_FILE")
        if key_file and not env.get(var):  # the environment wins over the file
            try:
                values[secret] = Path(key_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{var}_FILE: cannot read {key_file} ({exc.strerror})") from None

    for key, val in overrides.items():
        if val is not None:
            values[key] = _coerce(key, val, f"--{key.replace('_', '-')}")

    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.mode not in ("local", "production"):
        raise ConfigError("TRAIL_MODE: must be 'local' or 'production'")
    if s.subject_key is not None and len(s.subject_key) < MIN_KEY_LEN:
        raise ConfigError(f"TRAIL_SUBJECT_KEY: must be at least {MIN_KEY_LEN} characters")
    if s.mode == "production":
        if not s.subject_key:
            s.require_subject_key()  # raises the explanatory ConfigError
        if not s.kafka_bootstrap:
            raise ConfigError("TRAIL_KAFKA_BOOTSTRAP is required in production mode")
    if s.namespace and not all(c.isalnum() or c in "._-" for c in s.namespace):
        raise ConfigError("TRAIL_NAMESPACE: letters, digits, '.', '_' and '-' only")
    if s.clickhouse_dsn and not s.clickhouse_dsn.startswith(("chdb://", "http://", "https://")):
        raise ConfigError("TRAIL_CLICKHOUSE_DSN: must start with chdb://, http:// or https://")
    if s.clickhouse_cluster is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", s.clickhouse_cluster):
            raise ConfigError(
                "TRAIL_CLICKHOUSE_CLUSTER: a cluster name from the server's remote_servers (letters, digits, _)"
            )
        if s.store_dsn.startswith("chdb://"):
            raise ConfigError("TRAIL_CLICKHOUSE_CLUSTER needs TRAIL_CLICKHOUSE_DSN of a ClickHouse server, not chDB")
    if s.log_format not in ("auto", "json", "console"):
        raise ConfigError("TRAIL_LOG_FORMAT: must be auto, json or console")
    if s.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("TRAIL_LOG_LEVEL: must be debug, info, warning or error")
    if not 0 < s.sink_max_deadletter_ratio <= 1:
        raise ConfigError("TRAIL_SINK_MAX_DEADLETTER_RATIO: must be above 0 and at most 1")
    try:
        ZoneInfo(s.timezone)
    except (ValueError, KeyError, OSError):
        raise ConfigError("TRAIL_TIMEZONE: unknown time zone (use an IANA name like Asia/Shanghai)") from None
    if not s.detector_checkpoint_seconds > 0:
        raise ConfigError("TRAIL_DETECTOR_CHECKPOINT_SECONDS: must be above 0")
    if s.rules_file is not None and not s.rules_file.is_file():
        raise ConfigError(f"TRAIL_RULES_FILE: no file at {s.rules_file}")
    if not s.checkpoint_seconds >= 0:
        raise ConfigError("TRAIL_CHECKPOINT_SECONDS: must be 0 (never) or more")
    if not s.sealer_stall_warn > 0:
        raise ConfigError("TRAIL_SEALER_STALL_WARN: must be above 0 (seconds, or like 5m)")
    if not s.sink_batch_seconds > 0:  # also refuses NaN
        raise ConfigError("TRAIL_SINK_BATCH_SECONDS: must be above 0")
    if s.sink_batch_size < 1:
        raise ConfigError("TRAIL_SINK_BATCH_SIZE: must be at least 1")
    if s.incident_store and not s.incident_store.startswith(("postgresql://", "postgres://", "sqlite://")):
        raise ConfigError(
            "TRAIL_INCIDENT_STORE: must start with postgresql:// (or sqlite:///path); leave unset for SQLite "
            "in the data directory"
        )
    _validate_api(s)
    _validate_kafka_security(s)
    if s.retention_policy is not None and not s.retention_policy.is_file():
        raise ConfigError(f"TRAIL_RETENTION_POLICY: no file at {s.retention_policy}")
    for part in (p.strip() for p in s.request_deadlines.split(",") if p.strip()):
        kind, _, days = part.partition("=")
        kinds = ("access", "copy", "correction", "deletion", "consent_withdrawal", "portability")
        if kind.strip() not in kinds or not days.strip().isdigit() or not 1 <= int(days) <= 30:
            raise ConfigError(
                f"TRAIL_REQUEST_DEADLINES: '{part}': give kind=working days (1-30), kinds {', '.join(kinds)}"
            )
    if s.report_staff_ids not in ("yes", "no"):
        raise ConfigError("TRAIL_REPORT_STAFF_IDS: yes or no (whether subject reports name staff by id)")
    severities = [x.strip() for x in s.incident_severities.split(",") if x.strip()]
    bad = [x for x in severities if x not in ("low", "medium", "high", "critical")]
    if bad or not severities:
        raise ConfigError("TRAIL_INCIDENT_SEVERITIES: comma-separated list of low, medium, high, critical")


def _validate_api(s: Settings) -> None:
    if s.retention_floor_days < RETENTION_FLOOR_DAYS:
        raise ConfigError(
            f"TRAIL_RETENTION_FLOOR_DAYS: at least {RETENTION_FLOOR_DAYS} (Cybersecurity Law Art. 21(3): network logs "
            "are kept at least six months); it can only be raised"
        )
    for name, low in (
        ("api_max_body_bytes", 1024),
        ("api_max_connections", 1),
        ("api_worker_threads", 1),
        ("api_backlog", 1),
        ("api_auth_failures_per_minute", 1),
        ("sql_max_rows", 1),
    ):
        if getattr(s, name) < low:
            raise ConfigError(f"TRAIL_{name.upper()}: must be at least {low}")
    for name in (
        "api_header_timeout",
        "api_body_timeout",
        "api_keepalive_timeout",
        "api_rate_per_principal",
        "console_session_idle",
        "console_session_max",
        "sql_timeout",
    ):
        if not getattr(s, name) > 0:
            raise ConfigError(f"TRAIL_{name.upper()}: must be above 0")
    if s.api_url and not s.api_url.startswith(("http://", "https://")):
        raise ConfigError("TRAIL_API_URL: must start with http:// or https://")


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _validate_kafka_security(s: Settings) -> None:
    if s.kafka_security_protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(f"TRAIL_KAFKA_SECURITY_PROTOCOL: one of {', '.join(KAFKA_PROTOCOLS)}")
    sasl = s.kafka_security_protocol.startswith("SASL_")
    if s.kafka_sasl_mechanism and s.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
        raise ConfigError(f"TRAIL_KAFKA_SASL_MECHANISM: one of {', '.join(KAFKA_SASL_MECHANISMS)}")
    if sasl and not s.kafka_sasl_mechanism:
        raise ConfigError(f"TRAIL_KAFKA_SASL_MECHANISM: required with {s.kafka_security_protocol}")
    if s.kafka_sasl_mechanism and not sasl:
        raise ConfigError("TRAIL_KAFKA_SASL_MECHANISM: needs TRAIL_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL")
    if sasl and not (s.kafka_sasl_username and s.kafka_sasl_password):
        raise ConfigError("TRAIL_KAFKA_SASL_USERNAME and TRAIL_KAFKA_SASL_PASSWORD (or _FILE): required with SASL")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(s, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"TRAIL_{name.upper()}: no file at {path}")
    if (s.kafka_ssl_certfile is None) != (s.kafka_ssl_keyfile is None):
        raise ConfigError("TRAIL_KAFKA_SSL_CERTFILE and TRAIL_KAFKA_SSL_KEYFILE: give both (mTLS) or neither")


def kafka_options(settings: Settings) -> dict[str, Any]:
    """The kafka-python keyword arguments of the broker's security settings (``TRAIL_KAFKA_*``),
    for every producer, consumer and admin client trail creates. Empty for plain local brokers."""
    s = settings
    out: dict[str, Any] = {}
    if s.kafka_security_protocol != "PLAINTEXT":
        out["security_protocol"] = s.kafka_security_protocol
    if s.kafka_sasl_mechanism:
        out["sasl_mechanism"] = s.kafka_sasl_mechanism
        out["sasl_plain_username"] = s.kafka_sasl_username
        out["sasl_plain_password"] = s.kafka_sasl_password
    for name in ("cafile", "certfile", "keyfile"):
        path = getattr(s, f"kafka_ssl_{name}")
        if path is not None:
            out[f"ssl_{name}"] = str(path)
    return out


def mask_url(spec: str) -> str:
    """A URL-like setting for display: any password masked; a ``webhook:`` URL's query string
    (which often carries a token) left out."""
    prefix = "webhook:" if spec.startswith("webhook:") else ""
    url = spec.removeprefix(prefix)
    if "://" not in url:
        return spec
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:****@{host}"
    query = "" if prefix else parts.query
    return prefix + urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


# ---------------------------------------------------------------- the local stack's address
def server_file(settings: Settings) -> Path:
    """``DATA_DIR/server.json``: written by ``trail up`` once ready, removed on a clean stop."""
    return settings.data_dir / "server.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_server(settings: Settings) -> dict[str, Any] | None:
    """The ``server.json`` of a live ``trail up`` on this data directory
    (``{"api": URL, "kafka": "host:port", "pid": N}``), else None."""
    try:
        info = json.loads(server_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    try:
        pid = int(info.get("pid", -1))
    except (TypeError, ValueError):
        return None
    return info if pid > 0 and _pid_alive(pid) else None


def resolve_bootstrap(settings: Settings) -> str:
    """The broker: ``TRAIL_KAFKA_BOOTSTRAP``, else the local stack running on the data directory."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    info = running_server(settings)
    if info and info.get("kafka"):
        return str(info["kafka"])
    raise ConfigError(
        f"no broker: set TRAIL_KAFKA_BOOTSTRAP, or start the local stack with `trail up --data-dir {settings.data_dir}`"
    )


def with_data_dir(s: Settings, data_dir: Path | None) -> Settings:
    return s if data_dir is None else replace(s, data_dir=data_dir)


def is_tty() -> bool:
    return sys.stderr.isatty()
