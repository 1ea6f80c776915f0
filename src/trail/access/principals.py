"""Principals (a person or a service) and the rules on their names and roles.

Names are normalised once, at creation (Unicode NFKC, then case-folded) and restricted to
ASCII letters, digits and ``.``, ``_``, ``-``, ``@``: ``E1002``, ``e1002`` and the full-width
``Ｅ１００２`` are one principal ``e1002``, and a Cyrillic look-alike cannot be created at all.
The four-eyes rules compare these names, so a changed spelling never passes for a second person.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final

from trail.access.roles import ROLES
from trail.errors import UsageError, ValidationError

KINDS: Final = ("staff", "service")
#: Names trail uses for itself; no principal may take them.
RESERVED: Final = frozenset({"unauthenticated", "system", "trail", "trail-api", "trail-access", "trail-cli"})
LOCAL: Final = "local"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")


def normalise_name(name: str, what: str = "name") -> str:
    """The canonical form of a principal (or responder) name; refuses what cannot be one."""
    text = unicodedata.normalize("NFKC", str(name)).strip().casefold()
    if not _NAME.match(text):
        raise ValidationError(
            what, "1-64 characters, ASCII letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
        )
    return text


def same_person(a: str, b: str) -> bool:
    """Whether two responder names name one person (NFKC, case-folded, trimmed)."""

    def canon(x: str) -> str:
        return unicodedata.normalize("NFKC", str(x)).strip().casefold()

    return canon(a) == canon(b)


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str
    roles: tuple[str, ...]
    disabled: bool = False
    created_at: str = ""
    created_by: str = ""
    #: Only the local principal of ``trail up``: it acts for the responders it names (``by``),
    #: as direct mode on the data directory does.
    delegates: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_kind(self) -> str:
        return "service" if self.kind == "service" else "staff"

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "roles": list(self.roles),
            "disabled": self.disabled,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def check_new(
    name: str, kind: str, roles: list[str] | tuple[str, ...], *, local: bool = False
) -> tuple[str, str, tuple[str, ...]]:
    """A new principal's canonical name, kind and roles, or a UsageError saying what is wrong."""
    canon = normalise_name(name)
    if canon in RESERVED or (canon == LOCAL and not local):
        raise ValidationError("name", f"'{canon}' is reserved")
    if kind not in KINDS:
        raise UsageError(f"kind: one of {', '.join(KINDS)}")
    wanted = tuple(r for r in ROLES if r in set(roles))
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise UsageError(f"role: unknown {', '.join(unknown)} (roles: {', '.join(ROLES)})")
    if not wanted:
        raise UsageError(f"role: give at least one ({', '.join(ROLES)})")
    if not local:
        if "admin" in wanted and len(wanted) > 1:
            raise UsageError(
                "role: admin cannot be combined with another role (MLPS 2.0 8.1.4.3: system, security and audit "
                "administrators are separate); create a second principal"
            )
        if "admin" in wanted and kind != "staff":
            raise UsageError("role: admin is a person's role (kind staff)")
        if "auditor" in wanted and len(wanted) > 1:
            raise UsageError("role: auditor cannot be combined with another role (the auditors are audited apart)")
    return canon, kind, wanted
