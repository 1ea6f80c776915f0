"""The console's pages. Each one names the permission it needs (the API's table, trail.access.roles)
and reads through the same services as the API; what it read is noted for the access log."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from trail.access.tokens import parse_expiry
from trail.console.core import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    NAV,
    PREFIX,
    SESSION_COOKIE,
    allowed,
    form,
    form_list,
    local_path,
    redirect,
    render,
    require,
    services,
    sessions,
    set_cookie,
    visit,
)
from trail.console.i18n import pick
from trail.detect.review import get_alert, list_alerts, review_alert
from trail.errors import NotFound, RateLimited, Refused, TrailError, ValidationError
from trail.service import CSV_COLUMNS, QueryFilters, csv_row

router = APIRouter()

PAGE_SIZE = 50


# ------------------------------------------------------------------ login, logout, language
@router.get("/")
def home(request: Request) -> Response:
    v = visit(request)
    if v.principal is None:
        return redirect(f"{PREFIX}/login")
    for _key, path, perm in NAV:
        if allowed(v.principal, perm):
            return redirect(PREFIX + path)
    return render(request, "error.html", 200, title="app", message_key="no_pages")


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:  # the query parameter
    import secrets

    v = visit(request)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    v.extra_cookies[LOGIN_CSRF_COOKIE] = token
    resp = render(request, "login.html", next=local_path(next, ""), failed=None)
    set_cookie(resp, v, LOGIN_CSRF_COOKIE, token)
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    v = visit(request)
    fields = await form(request)
    ip = request.client.host if request.client else ""
    failures = request.app.state.login_failures
    wait = failures.wait(ip)
    if wait > 0:
        raise RateLimited("too many failed logins from this address; wait and retry", math.ceil(wait))
    secret = fields.get("token", "").strip()
    auth = await anyio.to_thread.run_sync(services(request).access.authenticate, secret)
    if auth.state != "active" or auth.principal is None:
        failures.add(ip)
        v.reason = f"console login refused: token {auth.state}"
        return render(request, "login.html", 401, next=local_path(fields.get("next"), ""), failed=auth.state)
    sid, _s = sessions(request).create(auth.token_id or "", auth.principal.name)
    if v.sid:
        sessions(request).end(v.sid)
    v.principal, v.note.dataset = auth.principal, "console-session"
    v.session = _s
    resp = redirect(local_path(fields.get("next")))
    set_cookie(resp, v, SESSION_COOKIE, sid, max_age=int(services(request).settings.console_session_max))
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    v = visit(request)
    await form(request)
    sessions(request).end(v.sid)
    v.note.dataset = "console-session"
    resp = redirect(f"{PREFIX}/login")
    resp.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=v.secure)
    return resp


@router.post("/lang")
async def language(request: Request) -> Response:
    v = visit(request)
    fields = await form(request)
    lang = pick(fields.get("lang"))
    resp = redirect(local_path(fields.get("next")))
    set_cookie(resp, v, LANG_COOKIE, lang, max_age=365 * 24 * 3600)
    return resp


# ------------------------------------------------------------------ events
def _local_time(request: Request, name: str, text: str | None) -> datetime | None:
    """A time from a form: RFC 3339, or a local date and time (``datetime-local``) in the organisation's zone."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(name, "a date and time such as 2026-11-30T03:00") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(services(request).settings.timezone))
    return at.astimezone(UTC)


EVENT_FILTERS = ("since", "until", "actor", "action", "category", "system", "outcome", "destination")


def _event_filters(request: Request, q: dict[str, str], limit: int) -> QueryFilters:
    return QueryFilters(
        since=_local_time(request, "since", q.get("since")),
        until=_local_time(request, "until", q.get("until")),
        action=q.get("action") or None,
        category=q.get("category") or None,
        limit=limit,
        system=q.get("system") or None,
        outcome=q.get("outcome") or None,
        destination=q.get("destination") or None,
    )


@router.get("/events")
def events(request: Request) -> Response:
    v = require(request, "events.read", "events")
    q = {k: request.query_params.get(k, "").strip()[:256] for k in EVENT_FILTERS}
    cursor = request.query_params.get("cursor") or None
    f = _event_filters(request, q, PAGE_SIZE)
    actor = q["actor"]
    rows, nxt = services(request).backend.page("actor" if actor else "events", actor or None, f, cursor)
    v.note.rows = len(rows)
    query = "&".join(f"{k}={_q(val)}" for k, val in q.items() if val)
    return render(request, "events.html", q=q, rows=rows, next=nxt, query=query, cursor=cursor)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@router.get("/events/export.csv")
def export_csv(request: Request) -> Response:
    v = require(request, "events.read", "events")
    q = {k: request.query_params.get(k, "").strip()[:256] for k in EVENT_FILTERS}
    f = _event_filters(request, q, 1_000_000)
    v.note.attributes["format"] = "csv"
    actor = q["actor"]
    blocks = services(request).backend.export("actor" if actor else "events", actor or None, f)

    def lines() -> Iterator[bytes]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for block in blocks:
            for ev in block:
                writer.writerow(csv_row(ev))
            v.note.rows += len(block)
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
        if buf.tell():
            yield buf.getvalue().encode("utf-8")

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="trail-events.csv"', "Cache-Control": "no-store"},
    )


@router.get("/events/{event_id}")
def event(request: Request, event_id: str) -> Response:
    v = require(request, "events.read", "events")
    v.note.attributes["event_id"] = event_id[:64]
    svc = services(request)
    found = svc.backend.store.find_events_by_id(event_id)
    if not found:
        raise NotFound(f"no event {event_id[:64]}")
    ev = found[0]
    if ev.get("source", {}).get("service") == "trail-access" and not allowed(v.principal, "access_log.read"):
        raise NotFound(f"no event {event_id[:64]}")
    v.note.rows = 1
    checkpoint = None
    try:
        checkpoint = svc.backend.proof(event_id)["checkpoint"]
    except TrailError:
        checkpoint = None
    can_prove = allowed(v.principal, "integrity.verify") is not None
    return render(
        request, "event.html", ev=ev, pretty=json.dumps(ev, indent=2, ensure_ascii=False, default=str),
        checkpoint=checkpoint, can_prove=can_prove,
    )  # fmt: skip


@router.get("/events/{event_id}/proof.json")
def proof(request: Request, event_id: str) -> Response:
    v = require(request, "integrity.verify", "integrity")
    v.note.attributes["event_id"] = event_id[:64]
    doc = services(request).backend.proof(event_id)
    v.note.rows = 1
    return Response(
        json.dumps(doc, indent=2, ensure_ascii=False, default=str),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="proof-{event_id[:36]}.json"'},
    )


# ------------------------------------------------------------------ actor
@router.get("/actor")
def actor(request: Request) -> Response:
    v = require(request, "events.read", "events")
    actor_id = request.query_params.get("actor", "").strip()[:256]
    days = request.query_params.get("days", "7").strip()
    if not days.isdigit() or not 1 <= int(days) <= 90:
        raise ValidationError("days", "a whole number of days from 1 to 90")
    ctx: dict[str, Any] = {"actor_id": actor_id, "days": int(days), "chart": None}
    if actor_id:
        svc = services(request)
        until = datetime.now(UTC)
        since = until - timedelta(days=int(days))
        rows = svc.backend.query("actor", actor_id, QueryFilters(since=since, until=until, limit=100_000))
        found = list_alerts(svc.alerts, actor=actor_id, limit=100) if allowed(v.principal, "alerts.read") else []
        v.note.rows = len(rows) + len(found)
        ctx.update(
            chart=volume_chart(rows, since, until, svc.settings.timezone),
            events=len(rows),
            records=sum(int(r.get("record_count", 0)) for r in rows),
            categories=Counter(c for r in rows for c in r.get("data_categories", [])).most_common(),
            destinations=Counter((r.get("destination") or {}).get("kind", "-") for r in rows).most_common(),
            actions=Counter(r.get("action", "") for r in rows).most_common(),
            alerts=[a.public() for a in found],
            recent=rows[-20:][::-1],
        )
    return render(request, "actor.html", **ctx)


def volume_chart(rows: list[dict[str, Any]], since: datetime, until: datetime, zone: str) -> dict[str, Any]:
    """Records per hour over the period against the actor's usual level (its average per hour
    over the period), as the numbers of an inline SVG bar chart; hours over three times the usual
    level are marked."""
    hours = max(1, int((until - since).total_seconds() // 3600) + 1)
    buckets = [0] * hours
    start = since.replace(minute=0, second=0, microsecond=0)
    for r in rows:
        at = datetime.fromisoformat(str(r["occurred_at"]).replace("Z", "+00:00"))
        i = int((at - start).total_seconds() // 3600)
        if 0 <= i < hours:
            buckets[i] += int(r.get("record_count", 0))
    usual = round(sum(buckets) / hours, 1)
    peak = max([*buckets, usual, 1])
    width, height = 720, 180
    bw = width / hours
    bars = []
    for i, b in enumerate(buckets):
        if b:
            h = max(1.0, b / peak * (height - 20))
            at = (start + timedelta(hours=i)).astimezone(ZoneInfo(zone))
            bars.append(
                {
                    "x": round(i * bw, 2), "y": round(height - h, 2), "w": round(max(bw - 0.5, 0.8), 2),
                    "h": round(h, 2), "n": b, "at": at.strftime("%Y-%m-%d %H:00"), "over": usual and b > 3 * usual,
                }
            )  # fmt: skip
    usual_y = round(height - usual / peak * (height - 20), 2)
    return {"bars": bars, "usual": usual, "usual_y": usual_y, "peak": peak, "width": width, "height": height}


# ------------------------------------------------------------------ person (raw id only in the body)
@router.get("/person")
def person_form(request: Request) -> Response:
    require(request, "subjects.lookup", "subjects")
    return render(request, "person.html", rows=None, purpose="")


@router.post("/person")
async def person(request: Request) -> Response:
    v = require(request, "subjects.lookup", "subjects")
    fields = await form(request)
    subject_id = fields.get("subject_id", "").strip()
    purpose = fields.get("purpose", "").strip()[:1024]
    if not subject_id:
        raise ValidationError("subject_id", "give the person's id")
    v.note.subject_ids = [subject_id]
    if len(purpose) < 3:
        raise ValidationError("purpose", "state why you look this person up (kept in the access log); required")
    v.note.purpose = purpose
    svc = services(request)
    rows = svc.backend.query("subject", svc.backend.subject_ref(subject_id), QueryFilters(limit=1000))
    v.note.rows = len(rows)
    return render(request, "person.html", rows=rows, purpose=purpose)


# ------------------------------------------------------------------ alerts
ALERT_FILTERS = ("status", "rule", "severity", "actor")


@router.get("/alerts")
def alerts(request: Request) -> Response:
    v = require(request, "alerts.read", "alerts")
    q = {k: request.query_params.get(k, "").strip()[:128] for k in ALERT_FILTERS}
    if "status" not in request.query_params:
        q["status"] = "open"
    found = list_alerts(
        services(request).alerts,
        status=q["status"] or None, rule=q["rule"] or None, severity=q["severity"] or None, actor=q["actor"] or None,
        limit=500,
    )  # fmt: skip
    v.note.rows = len(found)
    done = request.query_params.get("reviewed", "")
    return render(
        request, "alerts.html", q=q, alerts=[a.public() for a in found], reviewed=int(done) if done.isdigit() else None
    )


@router.get("/alerts/{alert_id}")
def alert(request: Request, alert_id: str) -> Response:
    v = require(request, "alerts.read", "alerts")
    v.note.attributes["alert_id"] = alert_id[:64]
    svc = services(request)
    a = get_alert(svc.alerts, alert_id)
    evidence = []
    for eid in a.evidence[:50]:
        evidence.extend(svc.backend.store.find_events_by_id(eid)[:1])
    v.note.rows = 1 + len(evidence)
    return render(request, "alert.html", a=a.public(), evidence=evidence)


@router.post("/alerts/review")
async def review(request: Request) -> Response:
    v = require(request, "alerts.review", "alerts")
    fields = await form(request)
    decision = fields.get("decision", "")
    reason = fields.get("reason", "").strip()
    ids = [i for i in form_list(request, "alert_id") if i][:500]
    if decision not in ("ack", "dismiss"):
        raise ValidationError("decision", "ack or dismiss")
    if not reason:
        raise ValidationError("reason", "say why (it is kept with the alert and in the trail)")
    if not ids:
        raise ValidationError("alert_id", "choose at least one alert")
    svc = services(request)
    assert v.principal is not None
    for alert_id in ids:
        await run_in_threadpool(
            review_alert, svc.alerts, svc.backend.client, alert_id, decision, reviewer=v.principal.name, reason=reason
        )
    v.note.rows = len(ids)
    v.note.attributes["alerts"] = ",".join(ids)[:1000]
    v.note.attributes["decision"] = decision
    back = local_path(fields.get("next"), f"{PREFIX}/alerts")
    sep = "&" if "?" in back else "?"
    return redirect(f"{back}{sep}reviewed={len(ids)}")


# ------------------------------------------------------------------ integrity
@router.get("/integrity")
def integrity(request: Request) -> Response:
    v = require(request, "integrity.verify", "integrity")
    svc = services(request)
    cps = svc.backend.checkpoints(50)
    v.note.rows = len(cps)
    job = svc.verifications.latest() if svc.verifications is not None else None
    last = job.as_dict() if job is not None else None
    if last is not None and last["status"] == "done":
        v.note.rows += int(last["summary"].get("events_checked", 0))
    return render(request, "integrity.html", checkpoints=cps[::-1], last=last)


@router.post("/integrity/verify")
async def verify_now(request: Request) -> Response:
    """Starts a verification as a job (minutes at 100 M events) and comes back to the integrity
    page, which shows it running (and reloads itself) until its result is there."""
    v = require(request, "integrity.verify", "integrity")
    await form(request)
    svc = services(request)
    if svc.verifications is None:
        raise NotFound("verifications are not served by this process")
    assert v.principal is not None
    svc.verifications.start(None, False, by=v.principal.name)
    return redirect(f"{PREFIX}/integrity")


# ------------------------------------------------------------------ access log
@router.get("/access-log")
def access_log(request: Request) -> Response:
    v = require(request, "access_log.read", "access-log")
    name = request.query_params.get("principal", "").strip()[:64]
    q = {k: request.query_params.get(k, "").strip()[:64] for k in ("since", "until", "outcome")}
    cursor = request.query_params.get("cursor") or None
    f = QueryFilters(
        since=_local_time(request, "since", q["since"]), until=_local_time(request, "until", q["until"]),
        outcome=q["outcome"] or None, limit=PAGE_SIZE,
    )  # fmt: skip
    rows, nxt = services(request).backend.page("access", name or None, f, cursor)
    v.note.rows = len(rows)
    query = "&".join(f"{k}={_q(val)}" for k, val in {**q, "principal": name}.items() if val)
    return render(request, "access_log.html", rows=rows, next=nxt, name=name, q=q, query=query)


# ------------------------------------------------------------------ principals and tokens
@router.get("/principals")
def principals(request: Request) -> Response:
    v = require(request, "principals.manage", "principals")
    access = services(request).access
    ps = access.principals()
    toks = access.tokens()
    v.note.rows = len(ps) + len(toks)
    return render(request, "principals.html", principals=ps, tokens=[t.public() for t in toks], new_token=None)


@router.post("/principals")
async def add_principal(request: Request) -> Response:
    v = require(request, "principals.manage", "principals")
    fields = await form(request)
    roles = [r for r in form_list(request, "role") if r]
    assert v.principal is not None
    p = services(request).access.add_principal(
        fields.get("name", ""), roles, kind=fields.get("kind", "staff") or "staff", by=v.principal.name
    )
    v.note.rows, v.note.attributes["principal"] = 1, p.name
    return redirect(f"{PREFIX}/principals")


@router.post("/principals/{name}/{change}")
async def change_principal(request: Request, name: str, change: str) -> Response:
    """Disable or enable a principal: its tokens, and so its console sessions, stop or start at once."""
    v = require(request, "principals.manage", "principals")
    await form(request)
    if change not in ("disable", "enable"):
        raise ValidationError("change", "disable or enable")
    access = services(request).access
    v.note.attributes["principal"], v.note.attributes["change"] = name[:64], change
    target = access.get_principal(name)
    if change == "disable" and "admin" in target.roles and access.active_admins() == [target.name]:
        raise Refused(f"{target.name} is the last active admin; add another admin first")
    access.set_disabled(name, change == "disable")
    v.note.rows = 1
    return redirect(f"{PREFIX}/principals")


@router.post("/tokens")
async def create_token(request: Request) -> Response:
    v = require(request, "principals.manage", "tokens")
    fields = await form(request)
    assert v.principal is not None
    access = services(request).access
    tok, secret = access.create_token(
        fields.get("principal", ""), by=v.principal.name, expires_at=parse_expiry(fields.get("expires") or "90d")
    )
    v.note.rows, v.note.attributes["token"] = 1, tok.id
    ps = access.principals()
    toks = access.tokens()
    return render(
        request, "principals.html", principals=ps, tokens=[t.public() for t in toks], new_token=secret, new_id=tok.id
    )


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    v = require(request, "principals.manage", "tokens")
    await form(request)
    assert v.principal is not None
    services(request).access.revoke_token(token_id, by=v.principal.name)
    sessions(request).end_token(token_id)
    v.note.rows, v.note.attributes["token"] = 1, token_id[:64]
    return redirect(f"{PREFIX}/principals")
