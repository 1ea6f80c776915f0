"""The detection rules' configuration: defaults, the articles each rule serves, a TOML override.

Every rule has a frozen config with the defaults of the detection issue; an optional rules
file (TOML, read with :mod:`tomllib`) overrides any of them::

    timezone = "Asia/Shanghai"          # the organisation's local time
    lateness_s = 600                    # events older than max(occurred_at) - this are late
    approved_jobs = ["svc-retention"]   # actor ids of declared, approved batch jobs
    human_kinds = ["staff", "agent"]

    [rules.bulk_export]
    single_records = 2000
    severity = "critical"

    [rules.off_hours]
    enabled = false

Errors name the file and the key (``rules.toml: rules.bulk_export.single_records: must be a
whole number of at least 1``). ``trail rules show`` prints the effective set.

Articles (texts in DESIGN.md's ``regulations/``):

* MIIT Order 24 Art. 13(3): review bulk export, copy and destruction; prevent leaks.
* MIIT Order 24 Art. 13(5): access review, anti-intrusion measures.
* Shenzhen Art. 18-20: explicit consent for sensitive personal data (biometric, minors).
* Shenzhen Art. 22: withdrawal of consent; no further handling within its scope.
* Shenzhen Art. 82: security appraisal before personal data goes abroad.
* Shenzhen Art. 83: monitoring and alerts for leaks, damage, loss, alteration.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trail.errors import ConfigError
from trail.events.model import ACTOR_KINDS, MOVING_ACTIONS

#: The actor (kind ``system``) and ``source.service`` of trail's own notice deliveries. A
#: delivery event of a notice batch (``attributes.incident`` and ``attributes.batch`` set), which
#: trail sends only after a second responder approved the notice, is an approved bulk job: the
#: rules judge it as they judge ``approved_jobs``, and leave it out of the volume baseline. The
#: responders who sent and approved it are named in its attributes (``sent_by``, ``approved_by``).
NOTICE_JOB: Final = "trail-notices"
SEVERITIES: Final = ("low", "medium", "high", "critical")

MIIT_13_3: Final = "MIIT Order 24 Art. 13(3)"
MIIT_13_5: Final = "MIIT Order 24 Art. 13(5)"
SZ_18: Final = "Shenzhen Art. 18"
SZ_19: Final = "Shenzhen Art. 19"
SZ_20: Final = "Shenzhen Art. 20"
SZ_22: Final = "Shenzhen Art. 22"
SZ_82: Final = "Shenzhen Art. 82"
SZ_83: Final = "Shenzhen Art. 83"

#: Which articles each rule serves (printed by ``trail rules show``, carried by every alert).
ARTICLES: Final[dict[str, tuple[str, ...]]] = {
    "bulk_export": (MIIT_13_3, SZ_83),
    "bulk_destruction": (MIIT_13_3, SZ_83),
    "volume_anomaly": (SZ_83, MIIT_13_3),
    "enumeration": (SZ_83, MIIT_13_3),
    "off_hours": (MIIT_13_3, SZ_83),
    "sensitive_without_consent": (SZ_18, SZ_19, SZ_20),
    "after_withdrawal": (SZ_22,),
    "cross_border": (SZ_82,),
    "denied_burst": (MIIT_13_5, SZ_83),
}


@dataclass(frozen=True)
class BulkExport:
    """One moving operation of >= ``single_records``, or one actor's total >= ``total_records``
    within a local calendar day (MIIT Art. 13(3): review bulk export and copy)."""

    enabled: bool = True
    severity: str = "high"
    single_records: int = 1000
    total_records: int = 5000
    actions: tuple[str, ...] = tuple(sorted(MOVING_ACTIONS))
    exempt_approved_jobs: bool = True


@dataclass(frozen=True)
class BulkDestruction:
    """delete/destroy of >= ``records`` in one operation by an actor that is not an approved
    job (MIIT Art. 13(3): review bulk destruction)."""

    enabled: bool = True
    severity: str = "high"
    records: int = 1000
    actions: tuple[str, ...] = ("delete", "destroy")


@dataclass(frozen=True)
class VolumeAnomaly:
    """An actor's events in one hour far above its own baseline for that hour of the day
    (same kind of day: weekday or weekend), or its peers' when it has little history
    (Shenzhen Art. 83). threshold = max(min_events, factor * median, median + k * 1.4826 * MAD)."""

    enabled: bool = True
    severity: str = "medium"
    min_events: int = 50
    factor: float = 4.0
    mad_k: float = 8.0
    baseline_days: int = 14
    min_history_days: int = 3
    cold_start_factor: float = 6.0
    cold_start_min_events: int = 1000


@dataclass(frozen=True)
class Enumeration:
    """A human actor touching >= ``distinct_subjects`` distinct subjects within ``window_s``
    (scraping; Shenzhen Art. 83). Hopping windows (a new one every ``window_s / hops``)."""

    enabled: bool = True
    severity: str = "high"
    distinct_subjects: int = 500
    window_s: int = 3600
    #: Windows start every window_s / hops: a burst within 3/4 of the window is always caught.
    hops: int = 4


@dataclass(frozen=True)
class OffHours:
    """A human actor handling sensitive categories, or >= ``records`` records within an hour,
    outside ``start_hour``-``end_hour`` local time on weekdays, or at any time on weekends."""

    enabled: bool = True
    severity: str = "medium"
    start_hour: int = 8
    end_hour: int = 20
    records: int = 100


@dataclass(frozen=True)
class SensitiveWithoutConsent:
    """A sensitive category handled on a legal basis other than consent or law, or on consent
    without a consent_ref (Shenzhen Art. 18-20)."""

    enabled: bool = True
    severity: str = "high"
    allowed_bases: tuple[str, ...] = ("consent", "law")


@dataclass(frozen=True)
class AfterWithdrawal:
    """Handling of a subject after that subject's consent_withdraw (Shenzhen Art. 22), other
    than erasure; handling on legal basis ``law`` is exempt (Art. 22: "where laws and
    regulations provide otherwise")."""

    enabled: bool = True
    severity: str = "high"
    allowed_actions: tuple[str, ...] = (
        "delete",
        "destroy",
        "anonymize",
        "deidentify",
        "consent_grant",
        "consent_withdraw",
        "access_request",
    )


@dataclass(frozen=True)
class CrossBorder:
    """A destination of kind abroad, or a destination region outside ``home_region``
    (Shenzhen Art. 82: security appraisal before data goes abroad)."""

    enabled: bool = True
    severity: str = "critical"
    home_region: str = "CN"
    #: Sub-regions of the home code that are nevertheless outside the mainland regime.
    foreign_subregions: tuple[str, ...] = ("CN-HK", "CN-MO", "CN-TW")


@dataclass(frozen=True)
class DeniedBurst:
    """>= ``count`` denied operations within ``window_s`` from one actor, or from one IP
    used by at least two actors (credential stuffing) (MIIT Art. 13(5))."""

    enabled: bool = True
    severity: str = "high"
    count: int = 20
    window_s: int = 600
    hops: int = 4


RULE_TYPES: Final[dict[str, type[Any]]] = {
    "bulk_export": BulkExport,
    "bulk_destruction": BulkDestruction,
    "volume_anomaly": VolumeAnomaly,
    "enumeration": Enumeration,
    "off_hours": OffHours,
    "sensitive_without_consent": SensitiveWithoutConsent,
    "after_withdrawal": AfterWithdrawal,
    "cross_border": CrossBorder,
    "denied_burst": DeniedBurst,
}
RULE_NAMES: Final = tuple(RULE_TYPES)
#: Rules run over the store in batches rather than on the stream (trail.detect.retention_overdue).
BATCH_RULES: Final = ("retention_overdue",)
#: Every rule an alert may come from.
ALERT_RULES: Final = RULE_NAMES + BATCH_RULES


@dataclass(frozen=True)
class RuleSet:
    """The effective detection configuration."""

    timezone: str = "Asia/Shanghai"
    lateness_s: int = 600
    approved_jobs: tuple[str, ...] = ()
    human_kinds: tuple[str, ...] = ("staff", "agent")
    bulk_export: BulkExport = field(default_factory=BulkExport)
    bulk_destruction: BulkDestruction = field(default_factory=BulkDestruction)
    volume_anomaly: VolumeAnomaly = field(default_factory=VolumeAnomaly)
    enumeration: Enumeration = field(default_factory=Enumeration)
    off_hours: OffHours = field(default_factory=OffHours)
    sensitive_without_consent: SensitiveWithoutConsent = field(default_factory=SensitiveWithoutConsent)
    after_withdrawal: AfterWithdrawal = field(default_factory=AfterWithdrawal)
    cross_border: CrossBorder = field(default_factory=CrossBorder)
    denied_burst: DeniedBurst = field(default_factory=DeniedBurst)
    source: str = "built-in defaults"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def rule(self, name: str) -> Any:
        return getattr(self, name)

    def describe(self) -> list[dict[str, Any]]:
        """One row per rule: name, enabled, severity, parameters, articles (``trail rules show``)."""
        rows = []
        for name in RULE_NAMES:
            cfg = self.rule(name)
            skip = ("enabled", "severity")
            params = {f.name: _plain(getattr(cfg, f.name)) for f in fields(cfg) if f.name not in skip}
            rows.append(
                {
                    "rule": name,
                    "enabled": cfg.enabled,
                    "severity": cfg.severity,
                    "params": params,
                    "articles": list(ARTICLES[name]),
                }
            )
        return rows

    def globals(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "lateness_s": self.lateness_s,
            "approved_jobs": list(self.approved_jobs),
            "human_kinds": list(self.human_kinds),
            "source": self.source,
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _coerce(where: str, current: Any, value: Any) -> Any:
    """Convert a TOML value to the type of the default it replaces; errors name ``where``."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false")
        return value
    if isinstance(current, int):
        low = 0 if where.endswith("_hour") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{where}: must be a whole number of at least {low}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{where}: must be a number above 0")
        return float(value)
    if isinstance(current, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: must be a list of non-empty strings")
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty string")
    return value


def _check(where: str, rs: RuleSet) -> None:
    try:
        ZoneInfo(rs.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}timezone: unknown time zone (use an IANA name like Asia/Shanghai)") from None
    bad = [k for k in rs.human_kinds if k not in ACTOR_KINDS]
    if bad:
        raise ConfigError(f"{where}human_kinds: must be actor kinds among {', '.join(ACTOR_KINDS)}")
    for name in RULE_NAMES:
        cfg = rs.rule(name)
        if cfg.severity not in SEVERITIES:
            raise ConfigError(f"{where}rules.{name}.severity: must be one of {', '.join(SEVERITIES)}")
    for name in ("enumeration", "denied_burst"):
        cfg = rs.rule(name)
        if cfg.window_s % cfg.hops:
            raise ConfigError(f"{where}rules.{name}.hops: must divide window_s ({cfg.window_s})")
    oh = rs.off_hours
    if not (0 <= oh.start_hour < oh.end_hour <= 24):
        raise ConfigError(f"{where}rules.off_hours.start_hour: must be below end_hour, both within 0-24")


def load_rules(
    path: Path | None = None,
    *,
    timezone: str | None = None,
    approved_jobs: tuple[str, ...] | None = None,
) -> RuleSet:
    """The built-in defaults, overridden by the rules file at ``path`` (if given), then by the
    ``timezone``/``approved_jobs`` settings (if given)."""
    rs = RuleSet()
    where = ""
    if path is not None:
        where = f"{path}: "
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the rules file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        rs = _apply(rs, doc, where)
        rs = dataclasses.replace(rs, source=str(path))
    if timezone:
        rs = dataclasses.replace(rs, timezone=timezone)
    if approved_jobs:
        rs = dataclasses.replace(rs, approved_jobs=tuple(approved_jobs))
    _check(where, rs)
    return rs


def _apply(rs: RuleSet, doc: dict[str, Any], where: str) -> RuleSet:
    top: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "rules":
            continue
        if key not in ("timezone", "lateness_s", "approved_jobs", "human_kinds"):
            raise ConfigError(
                f"{where}{key}: unknown key (allowed: timezone, lateness_s, approved_jobs, human_kinds, [rules.NAME])"
            )
        top[key] = _coerce(f"{where}{key}", getattr(rs, key), value)
    rules = doc.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError(f"{where}rules: must be a table of [rules.NAME] tables")
    for name, table in rules.items():
        if name not in RULE_TYPES:
            raise ConfigError(f"{where}rules.{name}: unknown rule (known: {', '.join(RULE_NAMES)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}rules.{name}: must be a table")
        cfg = rs.rule(name)
        known = {f.name for f in fields(cfg)}
        changes = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{where}rules.{name}.{key}: unknown parameter (known: {', '.join(sorted(known))})")
            changes[key] = _coerce(f"{where}rules.{name}.{key}", getattr(cfg, key), value)
        top[name] = dataclasses.replace(cfg, **changes)
    return dataclasses.replace(rs, **top)


def rules_from_settings(settings: Any) -> RuleSet:
    """The rule set for a :class:`trail.config.Settings`.

    Reads ``rules_file``, ``timezone`` and ``approved_jobs`` (TRAIL_RULES_FILE,
    TRAIL_TIMEZONE, TRAIL_APPROVED_JOBS); settings without those fields give the defaults.
    """
    path = getattr(settings, "rules_file", None)
    tz = getattr(settings, "timezone", None)
    jobs = getattr(settings, "approved_jobs", None)
    if isinstance(jobs, str):
        jobs = tuple(j.strip() for j in jobs.split(",") if j.strip())
    return load_rules(Path(path) if path else None, timezone=tz or None, approved_jobs=tuple(jobs) if jobs else None)
