"""Delivering one notice to one person: contact resolvers and channels.

The trail never holds contact details. It knows a person only by *subject ref* (64 lowercase
hex characters, the keyed HMAC-SHA256 pseudonym the SDK stores). When notices go out, the
organisation's **contact resolver** maps refs to :class:`Contact` details, a chunk at a time,
and a **channel** delivers each rendered :class:`OutgoingNotice`. Contact details live only in
memory during a send and in what the channel hands on (the e-mail, the webhook request, the
organisation's outbox file); never in the ledger, logs or exception messages. ``repr()`` of a
contact or a notice hides them, so a stray ``print`` or a traceback does not show them either.

Resolver specs (``TRAIL_CONTACT_RESOLVER``), see :func:`load_resolver`:

| spec | meaning |
|---|---|
| ``entrypoint:NAME`` | entry point ``NAME`` in group ``trail.contact_resolvers``, called with no arguments |
| ``package.module:attr`` | a class or factory importable from ``sys.path``, called with no arguments |
| ``/path/to/file.py:attr`` | the same, loaded from a file |
| ``command:PROGRAM ARGS...`` | an external program: refs as JSON lines on stdin, contacts as JSON lines on stdout |

Channel specs (``make_channel``):

| spec | channel |
|---|---|
| ``outbox`` / ``outbox:/dir`` | one ``.eml`` file per notice in the organisation's outbox directory |
| ``smtp://[user[:password]@]host[:port]?sender=a@b[&starttls=1][&timeout=30]`` | SMTP (``smtps://``: TLS at once) |
| ``webhook:https://host/path`` (or ``http://``) | a JSON POST per notice, e.g. to an SMS or IM gateway |

Errors (all :class:`~trail.errors.TrailError`)::

    NoticeError
    ├── NoticeSpecError     a resolver or channel spec is invalid (also a ConfigError; says what to fix)
    ├── ResolverError       the contact resolver failed (names the resolver and line, never contact data)
    └── DeliveryFailed      a channel did not deliver one notice; ``retryable`` says whether to try again
        └── ChannelError    the channel as a whole is unusable (credentials, sender, URL): the run stops
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import smtplib
import ssl as ssl_module
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trail.errors import ConfigError, TrailError

LANGUAGES = ("zh", "en")
RESOLVER_GROUP = "trail.contact_resolvers"
#: Refs per resolver call (and per process of a command resolver): memory stays flat at any batch size.
RESOLVE_CHUNK = 500
_REF_RE = re.compile(r"[0-9a-f]{64}")
_NOTICE_NAMESPACE = uuid.UUID("6f1d3c52-5a57-4c8e-9d0e-2b7f6a1e4c57")
_ENHANCED_STATUS = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


# -- errors ---------------------------------------------------------------------------------
class NoticeError(TrailError):
    """Root of the errors of notice delivery."""


class NoticeSpecError(NoticeError, ConfigError):
    """A contact-resolver or channel spec is invalid; the message says what to fix (never a password)."""


class ResolverError(NoticeError):
    """The contact resolver failed; the message names the resolver (and line), never contact data."""


class DeliveryFailed(NoticeError):
    """A channel did not deliver one notice.

    ``reason`` is short and sanitised (no address, no server text that could echo one);
    ``retryable`` is true when trying again later may succeed (4xx, 429, 5xx from a webhook,
    connection errors) and false when it cannot (no address, 5xx from SMTP, other 4xx).
    """

    def __init__(self, reason: str, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


class ChannelError(DeliveryFailed):
    """The channel itself is unusable (bad credentials, sender refused, wrong URL).

    Nothing was delivered for the notice at hand. A batch run records it as a retryable
    failure and stops, since every other notice would fail the same way.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=True)


# -- values ---------------------------------------------------------------------------------
def is_subject_ref(value: object) -> bool:
    return isinstance(value, str) and _REF_RE.fullmatch(value) is not None


def normalise_language(value: str | None) -> str:
    """``zh``/``en`` from a language tag (``zh-CN``, ``EN_us``); ValueError otherwise (not echoed)."""
    if value is None or value == "":
        return "zh"
    lang = value.replace("_", "-").split("-", 1)[0].lower()
    if lang not in LANGUAGES:
        raise ValueError("language must be one of zh, en (or a tag such as zh-CN)")
    return lang


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach one person. ``repr()`` shows only the ref: the rest is personal data."""

    subject_ref: str
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    name: str | None = field(default=None, repr=False)
    language: str = "zh"

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", normalise_language(self.language))


@runtime_checkable
class ContactResolver(Protocol):
    """Maps subject refs to contacts, a batch at a time. Refs it cannot resolve are left out."""

    def resolve(self, refs: Sequence[str]) -> Mapping[str, Contact]: ...


def notice_id_for(incident_id: str, subject_ref: str) -> str:
    """The deterministic id of the notice about ``incident_id`` to ``subject_ref`` (a UUIDv5).

    It is the Message-ID and the webhook's Idempotency-Key, so a receiver can drop a repeat.
    """
    return str(uuid.uuid5(_NOTICE_NAMESPACE, f"{incident_id}|{subject_ref}"))


def message_id(notice_id: str) -> str:
    """The RFC 5322 Message-ID header value for a notice."""
    return f"<{notice_id}@notice.trail>"


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """What the incident engine's templates produce for one contact."""

    subject: str = field(repr=False)
    body_text: str = field(repr=False)
    body_html: str = field(repr=False)
    language: str = "zh"


@dataclass(frozen=True, slots=True)
class OutgoingNotice:
    """One notice to one person, ready for a channel. ``repr()`` hides the contact and the text."""

    notice_id: str
    incident_id: str
    subject_ref: str
    contact: Contact
    language: str
    subject: str = field(repr=False)
    body_text: str = field(repr=False)
    body_html: str = field(repr=False)

    def payload(self) -> dict[str, Any]:
        """The JSON document a webhook receives."""
        c = self.contact
        return {
            "notice_id": self.notice_id,
            "incident_id": self.incident_id,
            "subject_ref": self.subject_ref,
            "language": self.language,
            "subject": self.subject,
            "body_text": self.body_text,
            "body_html": self.body_html,
            "contact": {"email": c.email, "phone": c.phone, "name": c.name, "language": c.language},
        }


# -- contact resolvers ----------------------------------------------------------------------
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


# -- channels -------------------------------------------------------------------------------
@runtime_checkable
class Channel(Protocol):
    """Delivers one notice; raises :class:`DeliveryFailed` when it did not."""

    name: str

    def send(self, message: OutgoingNotice) -> None: ...

    def close(self) -> None: ...


class _CachedHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new class for every header it parses; this reuses them (~10% per message)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_POLICY = policy.SMTP.clone(header_factory=_CachedHeaderRegistry())


def build_email(
    notice: OutgoingNotice, sender: str, *, internal_headers: bool = False, headers_only: bool = False
) -> EmailMessage:
    """The RFC 5322 message for a notice: plain text with an HTML alternative.

    ``internal_headers`` adds ``X-Trail-*`` headers (notice id, incident, subject ref, phone) for the
    organisation's own outbox processing; they are not sent to the person.
    """
    c = notice.contact
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = " ".join(notice.subject.split())  # a template's stray newline must not break the header
    msg["From"] = sender
    if c.email:
        try:
            msg["To"] = Address(display_name=c.name or "", addr_spec=c.email)
        except (ValueError, IndexError, TypeError):
            raise DeliveryFailed("invalid e-mail address", retryable=False) from None
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id(notice.notice_id)
    msg["Auto-Submitted"] = "auto-generated"
    if internal_headers:
        msg["X-Trail-Notice-Id"] = notice.notice_id
        msg["X-Trail-Incident"] = notice.incident_id
        msg["X-Trail-Ref"] = notice.subject_ref  # short name: the header fits on one line
        if c.phone:
            msg["X-Trail-Phone"] = c.phone
    if headers_only:
        return msg
    msg.set_content(notice.body_text)
    msg.add_alternative(notice.body_html, subtype="html")
    msg["Content-Language"] = "zh-CN" if notice.language == "zh" else "en"  # after set_content, which drops it
    return msg


_BODY_CACHE: dict[tuple[str, str, str], bytes] = {}


def _body_bytes(notice: OutgoingNotice) -> bytes:
    """The MIME body (text + HTML alternative, with its own headers), built once per text.

    Every person of a batch gets the same text, and building the MIME parts is ~90 % of the
    cost of a message; the headers that differ per person are added in :func:`email_bytes`.
    """
    key = (notice.language, notice.body_text, notice.body_html)
    cached = _BODY_CACHE.get(key)
    if cached is None:
        part = EmailMessage(policy=_POLICY)
        part.set_content(notice.body_text)
        part.add_alternative(notice.body_html, subtype="html")
        part["Content-Language"] = "zh-CN" if notice.language == "zh" else "en"
        cached = part.as_bytes()
        if len(_BODY_CACHE) >= 16:
            _BODY_CACHE.clear()
        _BODY_CACHE[key] = cached
    return cached


def email_bytes(notice: OutgoingNotice, sender: str, *, internal_headers: bool = False) -> bytes:
    """The same message as :func:`build_email`, serialised, with the body built once per text."""
    head = build_email(
        OutgoingNotice(
            notice_id=notice.notice_id,
            incident_id=notice.incident_id,
            subject_ref=notice.subject_ref,
            contact=notice.contact,
            language=notice.language,
            subject=notice.subject,
            body_text="",
            body_html="",
        ),
        sender,
        internal_headers=internal_headers,
        headers_only=True,
    ).as_bytes()
    return head.rstrip(b"\r\n") + b"\r\n" + _body_bytes(notice)


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class OutboxChannel:
    """One ``.eml`` file per notice: ``DIR/<incident_id>/<notice_id>.<lang>.eml``.

    The organisation's mail or SMS process takes the files from there. The file necessarily
    holds the person's address (it *is* the message to send): the outbox belongs to the
    organisation's sending path, not to the trail, and should be protected and cleaned up as
    such. Nothing else this module writes holds contact details.

    Each file is written under a temporary name and renamed into place, so a crash never
    leaves half a message; a file that already exists for the notice means it was delivered,
    and sending again does nothing. ``fsync=True`` also survives power loss, at some speed.
    """

    name = "outbox"

    def __init__(self, directory: Path, *, sender: str = "notices@trail.invalid", fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.sender = sender
        self.fsync = fsync
        self._made: set[str] = set()

    def path_for(self, notice: OutgoingNotice) -> Path:
        return self.directory / notice.incident_id / f"{notice.notice_id}.{notice.language}.eml"

    def send(self, message: OutgoingNotice) -> None:
        if not _SAFE_ID.fullmatch(message.incident_id) or message.incident_id.startswith("."):
            raise ChannelError("incident id is not usable as a directory name")
        folder = self.directory / message.incident_id
        if any((folder / f"{message.notice_id}.{lang}.eml").exists() for lang in LANGUAGES):
            return  # delivered before (idempotent)
        data = email_bytes(message, self.sender, internal_headers=True)
        try:
            if message.incident_id not in self._made:
                folder.mkdir(parents=True, exist_ok=True)
                self._made.add(message.incident_id)
            tmp = folder / f".{message.notice_id}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path_for(message))
            if self.fsync:
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise ChannelError(f"cannot write to the outbox: {exc.strerror or type(exc).__name__}") from None

    def close(self) -> None:
        pass


def _smtp_reason(stage: str, code: int, text: bytes | str) -> str:
    raw = text.encode() if isinstance(text, str) else text
    m = _ENHANCED_STATUS.match(raw or b"")
    # The server's text is left out: servers echo the address in it.
    return f"smtp {stage} {code}" + (f" {m.group(1).decode()}" if m else "")


class SmtpChannel:
    """E-mail through an SMTP server, one connection reused across a batch.

    4xx replies and connection errors are retryable, 5xx replies permanent; a refused login
    or sender is a :class:`ChannelError`. The Message-ID is the notice id.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        *,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 30.0,
        idle_check_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.starttls = starttls
        self.ssl = ssl
        self.timeout = timeout
        self.idle_check_s = idle_check_s
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host!r}, {self.port}, starttls={self.starttls}, ssl={self.ssl})"

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None and time.monotonic() - self._last_used > self.idle_check_s:
            try:
                if self._conn.noop()[0] != 250:
                    self._drop()
            except (smtplib.SMTPException, OSError):
                self._drop()
        if self._conn is not None:
            return self._conn
        try:
            conn: smtplib.SMTP
            if self.ssl:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl_module.create_default_context()
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"cannot connect to the SMTP server: {type(exc).__name__}", retryable=True) from None
        try:
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=ssl_module.create_default_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _quiet_close(conn)
            raise ChannelError(
                f"the SMTP server refused the login ({exc.smtp_code}); check user and password"
            ) from None
        except smtplib.SMTPNotSupportedError:
            _quiet_close(conn)
            raise ChannelError("the SMTP server does not offer STARTTLS or AUTH as configured") from None
        except smtplib.SMTPResponseException as exc:
            _quiet_close(conn)
            if exc.smtp_code >= 500:
                raise ChannelError(_smtp_reason("session", exc.smtp_code, exc.smtp_error)) from None
            raise DeliveryFailed(_smtp_reason("session", exc.smtp_code, exc.smtp_error), retryable=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            _quiet_close(conn)
            raise DeliveryFailed(f"SMTP session failed: {type(exc).__name__}", retryable=True) from None
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            _quiet_close(self._conn)
        self._conn = None

    def send(self, message: OutgoingNotice) -> None:
        email = message.contact.email
        if not email:
            raise DeliveryFailed("no e-mail address", retryable=False)
        msg = build_email(message, self.sender)
        conn = self._connect()
        try:
            refused = conn.send_message(msg, from_addr=self.sender, to_addrs=[email])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b""))
            self._reset()
            raise DeliveryFailed(_smtp_reason("recipient", code, text), retryable=code < 500) from None
        except smtplib.SMTPSenderRefused as exc:
            self._reset()
            if exc.smtp_code >= 500:
                raise ChannelError(_smtp_reason("sender", exc.smtp_code, exc.smtp_error)) from None
            raise DeliveryFailed(_smtp_reason("sender", exc.smtp_code, exc.smtp_error), retryable=True) from None
        except smtplib.SMTPResponseException as exc:  # DATA refused, or another reply
            self._reset()
            code = exc.smtp_code
            raise DeliveryFailed(_smtp_reason("data", code, exc.smtp_error), retryable=not 500 <= code < 600) from None
        except (smtplib.SMTPNotSupportedError, UnicodeError):
            self._reset()  # an address the server cannot take (non-ASCII without SMTPUTF8)
            raise DeliveryFailed("the SMTP server cannot take this address", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise DeliveryFailed(f"SMTP delivery failed: {type(exc).__name__}", retryable=True) from None
        self._last_used = time.monotonic()
        if refused:
            code, text = next(iter(refused.values()))
            raise DeliveryFailed(_smtp_reason("recipient", code, text), retryable=code < 500)

    def _reset(self) -> None:
        """After a refusal, RSET the transaction so the connection can carry the next one."""
        if self._conn is None:
            return
        try:
            self._conn.rset()
            self._last_used = time.monotonic()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._drop()

    def __enter__(self) -> SmtpChannel:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _quiet_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A POST must not turn into a GET elsewhere: a redirect is reported, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_CHANNEL_FATAL_HTTP = frozenset({301, 302, 303, 307, 308, 401, 403, 404, 405, 407})


class WebhookChannel:
    """A JSON POST per notice, with ``Idempotency-Key: <notice_id>``.

    2xx is delivered; 408, 425, 429, 5xx and connection errors are retryable; 401, 403, 404,
    405 and redirects mean the webhook is misconfigured (:class:`ChannelError`); other 4xx
    are permanent for that notice. The response body is never read into an error.
    """

    name = "webhook"

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, *, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise NoticeSpecError("webhook URL: the port is not valid") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NoticeSpecError("webhook URL must be http:// or https:// with a host")
        self.headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "trail-notices/1"}
        if parts.username is not None:
            token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + b64encode(token.encode()).decode()
            netloc = parts.hostname + (f":{port}" if port else "")
            parts = parts._replace(netloc=netloc)
        self.headers.update(headers or {})
        self.url = urllib.parse.urlunsplit(parts)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        return f"WebhookChannel({_strip_query(self.url)!r})"

    def send(self, message: OutgoingNotice) -> None:
        body = json.dumps(message.payload(), ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(  # noqa: S310  # the scheme is checked to be http(s) above
            self.url, data=body, method="POST", headers={**self.headers, "Idempotency-Key": message.notice_id}
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status = resp.status
                resp.read(1 << 16)  # drained, never kept: a receiver may echo the contact
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError) as exc:  # timeouts are OSErrors too
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"webhook unreachable: {type(reason).__name__}", retryable=True) from None
        if 200 <= status < 300:
            return
        if status in _CHANNEL_FATAL_HTTP:
            raise ChannelError(f"webhook answered HTTP {status}; check its URL and credentials")
        retryable = status in (408, 425, 429) or status >= 500
        raise DeliveryFailed(f"webhook answered HTTP {status}", retryable=retryable)

    def close(self) -> None:
        pass


def _strip_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def mask_spec(spec: str) -> str:
    """A channel spec for display: any password masked, a webhook's query string left out."""
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


def _flag(value: str, name: str, shown: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise NoticeSpecError(f"channel {shown}: {name} must be 1 or 0")


def _smtp_from_spec(spec: str) -> SmtpChannel:
    shown = mask_spec(spec)
    parts = urllib.parse.urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        raise NoticeSpecError(f"channel {shown}: the port is not a number") from None
    if not parts.hostname:
        raise NoticeSpecError(f"channel {shown}: no host; write smtp://[user:password@]host[:port]?sender=a@b")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - {"sender", "starttls", "timeout"})
    if unknown:
        raise NoticeSpecError(f"channel {shown}: unknown option(s) {', '.join(unknown)}; use sender, starttls, timeout")
    sender = query.get("sender", "")
    if "@" not in sender:
        raise NoticeSpecError(f"channel {shown}: add ?sender=notices@your.domain (the From address)")
    use_ssl = parts.scheme == "smtps"
    starttls = _flag(query.get("starttls", "0"), "starttls", shown)
    if use_ssl and starttls:
        raise NoticeSpecError(f"channel {shown}: smtps:// already uses TLS; drop starttls")
    try:
        timeout = float(query.get("timeout", "30"))
    except ValueError:
        raise NoticeSpecError(f"channel {shown}: timeout must be a number of seconds") from None
    return SmtpChannel(
        parts.hostname,
        port or (465 if use_ssl else 587 if starttls else 25),
        sender,
        urllib.parse.unquote(parts.username) if parts.username else None,
        urllib.parse.unquote(parts.password) if parts.password else None,
        starttls=starttls,
        ssl=use_ssl,
        timeout=timeout,
    )


def make_channel(spec: str, outbox_dir: Path, *, headers: Mapping[str, str] | None = None) -> Channel:
    """Build the channel a spec names; ``headers`` are extra webhook request headers (e.g. a token)."""
    spec = spec.strip()
    if spec == "outbox":
        return OutboxChannel(outbox_dir)
    if spec.startswith("outbox:"):
        directory = spec.removeprefix("outbox:").strip()
        if not directory:
            raise NoticeSpecError("channel outbox: give a directory after outbox: or write just outbox")
        return OutboxChannel(Path(directory).expanduser())
    if spec.startswith(("smtp://", "smtps://")):
        return _smtp_from_spec(spec)
    if spec.startswith("webhook:"):
        url = spec.removeprefix("webhook:")
        if not url.startswith(("http://", "https://")):
            raise NoticeSpecError("channel webhook: write webhook:https://host/path (or http://)")
        try:
            return WebhookChannel(url, headers)
        except NoticeSpecError as exc:
            raise NoticeSpecError(f"channel {mask_spec(spec)}: {exc}") from None
    raise NoticeSpecError(
        f"channel {mask_spec(spec)!r} is not a channel spec; use outbox, outbox:/dir, "
        "smtp://[user:password@]host[:port]?sender=a@b[&starttls=1], smtps://... or webhook:https://..."
    )
