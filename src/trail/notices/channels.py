"""Channels: delivering one rendered notice to one person (outbox, SMTP, webhook), and the e-mail.

Channel specs (``TRAIL_NOTICE_CHANNEL``, ``--channel``), see :func:`make_channel`:

| spec | channel |
|---|---|
| ``outbox`` / ``outbox:/dir`` | one ``.eml`` file per notice in the organisation's outbox directory |
| ``smtp://[user[:password]@]host[:port]?sender=a@b[&starttls=1][&timeout=30]`` | SMTP (``smtps://``: TLS at once) |
| ``webhook:https://host/path`` (or ``http://``) | a JSON POST per notice, e.g. to an SMS or IM gateway |

Contact details live only in what a channel hands on (the e-mail, the webhook request, the
organisation's outbox file); never in the ledger, logs or exception messages. A channel raises
:class:`~trail.notices.errors.DeliveryFailed` for one notice it did not deliver, and
:class:`~trail.notices.errors.ChannelError` when it is unusable as a whole. The notice id is
the e-mail's Message-ID, the webhook's Idempotency-Key and the outbox file's name, so a
receiver can drop a repeat. :func:`mask_spec` shows a spec without its secrets. The e-mail
itself is built by :mod:`trail.notices.mail`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import smtplib
import ssl as ssl_module
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trail.config import mask_url
from trail.files import open_private, private_dir
from trail.notices.errors import ChannelError, DeliveryFailed, NoticeSpecError
from trail.notices.mail import build_email, email_bytes
from trail.notices.model import LANGUAGES, OutgoingNotice

_ENHANCED_STATUS = re.compile(rb"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


@runtime_checkable
class Channel(Protocol):
    """Delivers one notice; raises :class:`DeliveryFailed` when it did not."""

    name: str

    def send(self, message: OutgoingNotice) -> None: ...

    def close(self) -> None: ...


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
                private_dir(folder)
                self._made.add(message.incident_id)
            tmp = folder / f".{message.notice_id}.{os.getpid()}.tmp"
            with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as fh:
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
    return mask_url(spec)


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
