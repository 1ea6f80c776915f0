"""Contact resolvers: how the organisation maps subject refs to contacts, loaded from a spec.

Resolver specs (``TRAIL_CONTACT_RESOLVER``), see :func:`load_resolver`:

| spec | meaning |
|---|---|
| ``entrypoint:NAME`` | entry point ``NAME`` in group ``trail.contact_resolvers``, called with no arguments |
| ``package.module:attr`` | a class or factory importable from ``sys.path``, called with no arguments |
| ``/path/to/file.py:attr`` | the same, loaded from a file |
| ``command:PROGRAM ARGS...`` | an external program: refs as JSON lines on stdin, contacts as JSON lines on stdout |

A resolver implements :class:`~trail.notices.model.ContactResolver` (``resolve(refs)`` → a
mapping of ref to :class:`~trail.notices.model.Contact`; ``examples/contact_resolver.py`` shows
both forms). Contact details live only in memory during a send; errors name the resolver and
the line, never contact data.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from trail.errors import TrailError
from trail.notices.errors import NoticeSpecError, ResolverError
from trail.notices.model import RESOLVE_CHUNK, Contact, ContactResolver, normalise_language

RESOLVER_GROUP = "trail.contact_resolvers"


class CommandResolver:
    """An external program as resolver, one process per chunk of refs.

    Protocol: the program reads JSON lines ``{"subject_ref": "..."}`` on stdin and writes one
    JSON line per ref it can resolve, ``{"subject_ref", "email", "phone", "name", "language"}``
    (all but ``subject_ref`` may be null or missing), then exits 0. What it writes on stderr
    is never shown (it may hold contact details): run it by hand to debug it.
    """

    def __init__(self, argv: Sequence[str], *, chunk_size: int = RESOLVE_CHUNK, timeout: float = 120.0) -> None:
        if not argv:
            raise NoticeSpecError("command: resolver spec names no program; write command:/path/to/program [args]")
        self.argv = list(argv)
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.label = f"command resolver {Path(self.argv[0]).name!r}"

    def resolve(self, refs: Sequence[str]) -> Mapping[str, Contact]:
        out: dict[str, Contact] = {}
        for start in range(0, len(refs), self.chunk_size):
            out.update(self._run(refs[start : start + self.chunk_size]))
        return out

    def _run(self, refs: Sequence[str]) -> dict[str, Contact]:
        stdin = "".join(json.dumps({"subject_ref": r}) + "\n" for r in refs).encode()
        try:
            proc = subprocess.run(self.argv, input=stdin, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ResolverError(
                f"{self.label} did not finish within {self.timeout:g}s for {len(refs)} refs; "
                "make it faster or raise its timeout"
            ) from None
        except OSError as exc:
            raise ResolverError(f"{self.label} could not be started: {exc.strerror or type(exc).__name__}") from None
        if proc.returncode != 0:
            raise ResolverError(
                f"{self.label} exited with status {proc.returncode} "
                f"({len(proc.stderr)} bytes on stderr, not shown since they may hold contact details; "
                "run the program by hand with one ref on stdin to see them)"
            )
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise ResolverError(f"{self.label} wrote output that is not UTF-8") from None
        asked = set(refs)
        out: dict[str, Contact] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            out_ref, contact = self._parse_line(line, number, asked)
            if out_ref in out:
                raise ResolverError(f"{self.label}, stdout line {number}: a second contact for the same subject_ref")
            out[out_ref] = contact
        return out

    def _parse_line(self, line: str, number: int, asked: set[str]) -> tuple[str, Contact]:
        where = f"{self.label}, stdout line {number}"
        try:
            doc = json.loads(line)
        except ValueError:
            raise ResolverError(f"{where}: not valid JSON (expected one object per line)") from None
        if not isinstance(doc, dict):
            raise ResolverError(f"{where}: expected a JSON object")
        ref = doc.get("subject_ref")
        if not isinstance(ref, str) or ref not in asked:
            raise ResolverError(f"{where}: subject_ref is missing or not one of the refs asked for")
        fields: dict[str, str | None] = {}
        for key in ("email", "phone", "name", "language"):
            value = doc.get(key)
            if value is not None and not isinstance(value, str):
                raise ResolverError(f"{where}: {key} must be a string or null")
            fields[key] = value
        try:
            language = normalise_language(fields["language"])
        except ValueError as exc:
            raise ResolverError(f"{where}: {exc}") from None
        return ref, Contact(ref, fields["email"], fields["phone"], fields["name"], language)


def _load_object(module_part: str, attr: str, spec: str) -> Any:
    if module_part.endswith(".py") or os.sep in module_part:
        path = Path(module_part).expanduser()
        if not path.is_file():
            raise NoticeSpecError(f"contact resolver {spec!r}: no such file {path}")
        name = f"_trail_resolver_{path.stem}_{abs(hash(str(path.resolve()))):x}"
        import_spec = importlib.util.spec_from_file_location(name, path)
        if import_spec is None or import_spec.loader is None:
            raise NoticeSpecError(f"contact resolver {spec!r}: cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(import_spec)
        sys.modules[name] = module
        try:
            import_spec.loader.exec_module(module)
        except Exception as exc:  # the organisation's code: report which and how
            sys.modules.pop(name, None)
            raise NoticeSpecError(f"contact resolver {spec!r}: importing {path} failed: {type(exc).__name__}") from exc
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as exc:
            raise NoticeSpecError(
                f"contact resolver {spec!r}: cannot import module {module_part!r} ({exc.msg}); "
                "install it or give a path: /path/to/file.py:attr"
            ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NoticeSpecError(f"contact resolver {spec!r}: {module_part} has no attribute {attr!r}") from None
    return obj


def _build(factory: Any, spec: str) -> ContactResolver:
    if isinstance(factory, ContactResolver) and not isinstance(factory, type):
        return factory  # already an instance
    if not callable(factory):
        raise NoticeSpecError(f"contact resolver {spec!r}: names neither a class nor a factory function")
    try:
        resolver = factory()
    except TrailError:
        raise
    except Exception as exc:  # the organisation's code: report which and how
        raise NoticeSpecError(f"contact resolver {spec!r}: building it failed: {type(exc).__name__}") from exc
    if not isinstance(resolver, ContactResolver):
        raise NoticeSpecError(f"contact resolver {spec!r}: what it built has no resolve(refs) method")
    return resolver


def load_resolver(spec: str, *, timeout: float = 120.0, chunk_size: int = RESOLVE_CHUNK) -> ContactResolver:
    """Build the contact resolver a spec names (see the module docstring for the forms)."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or not rest.strip():
        raise NoticeSpecError(
            f"contact resolver {spec!r} is not a resolver spec; use entrypoint:NAME, package.module:attr, "
            "/path/to/file.py:attr or command:/path/to/program [args]"
        )
    if kind == "command":
        try:
            argv = shlex.split(rest)
        except ValueError as exc:
            raise NoticeSpecError(f"contact resolver command: cannot split the command line ({exc})") from None
        if not argv:
            raise NoticeSpecError("contact resolver command: names no program")
        program = argv[0]
        found = program if os.sep in program else shutil.which(program)
        if found is None or not os.path.isfile(found):
            raise NoticeSpecError(f"contact resolver command: program {program!r} not found")
        if not os.access(found, os.X_OK):
            raise NoticeSpecError(f"contact resolver command: program {program!r} is not executable")
        return CommandResolver([found, *argv[1:]], chunk_size=chunk_size, timeout=timeout)
    if kind == "entrypoint":
        name = rest.strip()
        matches = list(metadata.entry_points(group=RESOLVER_GROUP, name=name))
        if not matches:
            known = sorted(ep.name for ep in metadata.entry_points(group=RESOLVER_GROUP))
            raise NoticeSpecError(
                f"contact resolver entrypoint:{name}: no entry point {name!r} in group {RESOLVER_GROUP!r} "
                f"(installed: {', '.join(known) or 'none'}); install the package that provides it"
            )
        try:
            factory = matches[0].load()
        except Exception as exc:  # the organisation's code: report which and how
            raise NoticeSpecError(f"contact resolver entrypoint:{name}: loading failed: {type(exc).__name__}") from exc
        return _build(factory, spec)
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise NoticeSpecError(
            f"contact resolver {spec!r}: expected package.module:attr (a class or factory taking no arguments)"
        )
    return _build(_load_object(module_part, attr, spec), spec)


def resolve_checked(resolver: ContactResolver, refs: Sequence[str]) -> dict[str, Contact]:
    """Call a resolver and keep only well-formed answers for the refs asked for.

    Errors from the resolver's own code are re-raised as :class:`ResolverError` naming only
    the exception type: its message might carry contact data.
    """
    try:
        found = resolver.resolve(refs)
    except TrailError:
        raise
    except Exception as exc:  # noqa: BLE001  # the organisation's code; its text may hold contact data
        raise ResolverError(f"contact resolver {type(resolver).__name__} failed: {type(exc).__name__}") from None
    if not isinstance(found, Mapping):
        raise ResolverError(f"contact resolver {type(resolver).__name__} returned no mapping of ref to Contact")
    out: dict[str, Contact] = {}
    for ref in refs:
        contact = found.get(ref)
        if contact is None:
            continue
        if not isinstance(contact, Contact) or contact.subject_ref != ref:
            raise ResolverError(
                f"contact resolver {type(resolver).__name__} returned something other than a Contact for its ref"
            )
        out[ref] = contact
    return out
