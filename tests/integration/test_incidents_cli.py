"""``trail incidents``, ``trail playbook`` and ``trail drill`` as a responder runs them.

Direct mode (no ``trail up``: the commands open the data directory's incident store
themselves) and, marked ``slow``, through the HTTP API of one ``trail up`` shared by the
tests at the end of this module. Each command runs as a real subprocess.
"""

from __future__ import annotations

import html
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIL, trail_env, wait_for
from trail.incidents.playbook import default_playbook_path, load_playbook

PLAYBOOK = default_playbook_path()
PB = load_playbook(PLAYBOOK)


# --------------------------------------------------------------------------- helpers
def trail(*args: str, data: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [TRAIL, *args] + (["--data-dir", str(data)] if data is not None else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env or trail_env(), check=False)


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr
    return res


def view(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(ok(res).stdout)
    return out


def rows(res: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(res).stdout.splitlines() if line.strip()]


def refused(res: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one line ``trail: error: ...`` on stderr naming ``needles``, no traceback."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == code, f"exit {res.returncode}: {res.stdout[-500:]} {res.stderr[-2000:]}"
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("trail: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert res.stdout == ""
    return lines[0]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def obligation(v: dict[str, Any], oid: str) -> dict[str, Any]:
    found = [o for o in v["obligations"] if o["id"] == oid]
    assert len(found) == 1, (oid, [o["id"] for o in v["obligations"]])
    return found[0]


def open_incident(data: Path, discovered: datetime, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return view(
        trail("incidents", "open", "--title", "Laptop with a customer export stolen", "--by", "E1",
              "--fact", "people_affected=1200000", "--source", "HR report HR-77", "--discovered-at",
              rfc3339(discovered), *extra, "--format", "json", data=data, env=env)
    )  # fmt: skip


def subsequence(seq: list[Any], wanted: list[Any]) -> bool:
    it = iter(seq)
    return all(any(x == w for x in it) for w in wanted)


# --------------------------------------------------------------------------- direct mode
def test_open_grades_starts_the_clocks_and_flags_what_is_due_soon(tmp_path: Path) -> None:
    """1,200,000 people: grade III, CAC report to the province due 4 h after discovery; the 1 h MIIT
    report is the next deadline and flagged DUE SOON in list and show (JSON and table)."""
    data = tmp_path / "data"
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    v = open_incident(data, discovered)
    assert re.fullmatch(r"INC-[0-9A-F]{8}", v["ref"])
    assert v["status"] == "open" and v["drill"] is False and v["opened_by"] == "E1"
    assert parse(v["discovered_at"]) == discovered
    assert v["facts"]["people_affected"] == {
        "value": 1200000, "source": "HR report HR-77", "by": "E1", "at": v["facts"]["people_affected"]["at"],
    }  # fmt: skip
    g = v["grade"]
    assert (g["level"], g["computed_level"], g["overridden"]) == ("III", "III", False)
    assert g["name_en"] == PB.grade("III").name_en
    assert any("1,200,000" in r and "(verify)" in r for r in g["reasons"])

    ids = {o["id"] for o in v["obligations"]}
    assert {"cac_report_other", "miit_telecom_report", "individual_notice", "closing_summary"} <= ids
    assert not ids & {"cac_report_cii", "cac_report_state_organ"}, "the default organisation is 'other'"
    cac = obligation(v, "cac_report_other")
    assert parse(cac["due_at"]) - discovered == timedelta(hours=4)
    assert cac["state"] == "ok" and cac["status"] == "open"
    miit = obligation(v, "miit_telecom_report")
    assert parse(miit["due_at"]) - discovered == timedelta(hours=1)
    assert miit["state"] == "due_soon"
    assert obligation(v, "closing_summary")["due_at"] is None  # its clock starts when handling ends
    assert obligation(v, "closing_summary")["state"] == "not_started"
    assert v["flags"] == "DUE SOON 1"

    running = [o for o in v["obligations"] if o["state"] in ("ok", "due_soon", "overdue")]
    (row,) = rows(trail("incidents", "list", "--format", "json", data=data))
    assert row["ref"] == v["ref"] and row["grade"] == "III" and row["status"] == "open" and row["drill"] is False
    assert row["next_obligation"] == "miit_telecom_report"
    assert parse(row["next_deadline"]) == discovered + timedelta(hours=1)
    assert row["open_obligations"] == len(running)
    assert (row["due_soon"], row["overdue"]) == (1, 0)
    assert row["flags"] == "DUE SOON 1"
    assert rows(trail("incidents", "list", "--status", "closed", "--format", "json", data=data)) == []

    table = ok(trail("incidents", "list", data=data)).stdout
    assert v["ref"] in table and "DUE SOON 1" in table and "miit_telecom_report" in table
    shown = ok(trail("incidents", "show", v["ref"], data=data)).stdout
    assert "DUE SOON 1" in shown
    assert v["ref"] in shown and "grade III" in shown and "HR report HR-77" in shown
    assert "cac_report_other" in shown and "due_soon" in shown and "when handling ends" in shown


def test_an_obligation_past_its_deadline_is_flagged_overdue(tmp_path: Path) -> None:
    """Discovered 2 h ago: the 1 h MIIT report is OVERDUE, the 4 h CAC report is not yet due soon."""
    data = tmp_path / "data"
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    v = open_incident(data, discovered)
    assert obligation(v, "miit_telecom_report")["state"] == "overdue"
    assert obligation(v, "cac_report_other")["state"] == "ok"
    (row,) = rows(trail("incidents", "list", "--status", "open", "--format", "json", data=data))
    assert row["flags"] == "OVERDUE 1" and row["overdue"] == 1
    assert row["next_obligation"] == "miit_telecom_report" and "overdue" in row["time_left"]
    assert "OVERDUE 1" in ok(trail("incidents", "show", v["ref"], data=data)).stdout


def test_lifecycle_refusals_record_nothing_and_the_timeline_names_every_responder(tmp_path: Path) -> None:
    """fact, grade override (with and without reason), meet, close refused until resolved, reviewed and
    every obligation met or waived; the timeline lists each decision with its responder."""
    data = tmp_path / "data"
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    ref = open_incident(data, discovered)["ref"]

    def timeline() -> list[dict[str, Any]]:
        return rows(trail("incidents", "timeline", ref, "--format", "json", data=data))

    v = view(trail("incidents", "fact", ref, "cause", "laptop stolen from a car", "--source", "police report 4711",
                   "--by", "E2", "--format", "json", data=data))  # fmt: skip
    assert v["facts"]["cause"]["value"] == "laptop stolen from a car"
    assert v["facts"]["cause"]["source"] == "police report 4711" and v["facts"]["cause"]["by"] == "E2"
    assert v["grade"]["level"] == "III"

    # an override without a reason is refused and records nothing
    before = timeline()
    assert [t["version"] for t in before] == list(range(1, v["version"] + 1))
    refused(trail("incidents", "grade", ref, "II", "--by", "E3", data=data), "--reason")
    assert timeline() == before

    v = view(trail("incidents", "grade", ref, "II", "--by", "E3", "--reason", "press coverage; regulator asked",
                   "--format", "json", data=data))  # fmt: skip
    g = v["grade"]
    assert (g["level"], g["computed_level"], g["overridden"]) == ("II", "III", True)
    assert g["override_reason"] == "press coverage; regulator asked" and g["by"] == "E3"
    assert "public_announcement" in {o["id"] for o in v["obligations"]}, "grade II adds the public announcement"

    v = view(trail("incidents", "meet", ref, "miit_telecom_report", "--by", "E4", "--how",
                   "phone call to the MIIT duty office", "--reference", "MIIT-2026-0042", "--format", "json",
                   data=data))  # fmt: skip
    shown = view(trail("incidents", "show", ref, "--format", "json", data=data))
    assert shown["version"] == v["version"]
    miit = obligation(shown, "miit_telecom_report")
    assert miit["status"] == "met" and miit["state"] == "met" and miit["met_by"] == "E4"
    assert miit["how"] == "phone call to the MIIT duty office" and miit["reference"] == "MIIT-2026-0042"
    assert discovered < parse(miit["met_at"]) <= datetime.now(UTC)

    refused(trail("incidents", "close", ref, "--by", "E7", data=data), ref, "resolve")
    v = view(trail("incidents", "resolve", ref, "--by", "E1", "--note", "laptop wiped remotely", "--format", "json",
                   data=data))  # fmt: skip
    assert v["status"] == "resolved" and v["handling_ended_at"]
    ended = parse(v["handling_ended_at"])
    assert parse(obligation(v, "closing_summary")["due_at"]) - ended == timedelta(hours=720)
    refused(trail("incidents", "close", ref, "--by", "E7", data=data), ref, "review")
    v = view(trail("incidents", "review", ref, "--by", "E5", "--cause", "laptop left in a car",
                   "--responsibility", "the account holder", "--countermeasures", "disk encryption enforced",
                   "--prevention", "no customer exports to laptops", "--format", "json", data=data))  # fmt: skip
    assert v["review"] and v["review"]["by"] == "E5"
    still_open = sorted(o["id"] for o in v["obligations"] if o["status"] == "open")
    assert still_open and "miit_telecom_report" not in still_open
    line = refused(trail("incidents", "close", ref, "--by", "E7", data=data), "open obligations", *still_open)
    assert "waive" in line
    after_refusals = timeline()
    assert len(after_refusals) == v["version"] and "Closed" not in {t["event"] for t in after_refusals}

    for oid in still_open:
        ok(trail("incidents", "waive", ref, oid, "--by", "E6", "--reason", f"not applicable here: {oid}", data=data))
    refused(trail("incidents", "waive", ref, still_open[0], "--by", "E6", "--reason", "twice", data=data), "already")
    v = view(trail("incidents", "close", ref, "--by", "E7", "--reason", "handled", "--format", "json", data=data))
    assert v["status"] == "closed" and v["closed_by"] == "E7"
    for oid in still_open:
        o = obligation(v, oid)
        assert o["status"] == "waived" and o["waived_reason"] == f"not applicable here: {oid}"
    assert v["flags"] == ""
    refused(trail("incidents", "fact", ref, "location", "Shenzhen", "--source", "s", "--by", "E2", data=data),
            "closed")  # fmt: skip

    tl = timeline()
    assert [t["version"] for t in tl] == list(range(1, v["version"] + 1)), "one entry per recorded event"
    assert all(t["by"] and t["recorded_at"] for t in tl)
    decisions = [(t["event"], t["by"]) for t in tl]
    assert subsequence(
        decisions,
        [("Opened", "E1"), ("FactRecorded", "E2"), ("Graded", "E3"), ("ObligationMet", "E4"), ("Resolved", "E1"),
         ("Reviewed", "E5"), *[("ObligationWaived", "E6")] * len(still_open), ("Closed", "E7")],
    ), decisions  # fmt: skip
    kinds = [t["event"] for t in tl]
    assert kinds.count("Graded") == 2 and kinds.count("Closed") == 1 and kinds.count("Resolved") == 1
    text = "\n".join(t["summary"] for t in tl)
    assert "press coverage; regulator asked" in text and "MIIT-2026-0042" in text
    assert all(f"not applicable here: {oid}" in text for oid in still_open)
    assert {t["by"] for t in tl} == {"E1", "E2", "E3", "E4", "E5", "E6", "E7"}


def test_unknown_incidents_and_bad_facts_exit_2(tmp_path: Path) -> None:
    """An unknown incident and a malformed --fact are one-line errors (exit 2); nothing is opened."""
    data = tmp_path / "data"
    ok(trail("incidents", "list", data=data))
    refused(trail("incidents", "show", "INC-FFFFFFFF", data=data), "no incident INC-FFFFFFFF")
    refused(trail("incidents", "timeline", "NOPE", "--format", "json", data=data), "NOPE")
    refused(trail("incidents", "fact", "INC-FFFFFFFF", "cause", "x", "--source", "s", "--by", "E1", data=data),
            "INC-FFFFFFFF")  # fmt: skip
    for fact, needle in [
        ("people_affected", "NAME=VALUE"),
        ("=12", "NAME=VALUE"),
        ("people_affected=lots", "must be a number"),
        ("people_affected=-3", "0 or more"),
        ("cii_involved=perhaps", "true or false"),
    ]:
        refused(trail("incidents", "open", "--title", "t", "--by", "E1", "--fact", fact, "--source", "s", data=data),
                needle)  # fmt: skip
    refused(trail("incidents", "open", "--title", "t", "--by", "E1", "--fact", "people_affected=5", data=data),
            "--source")  # fmt: skip
    assert rows(trail("incidents", "list", "--format", "json", data=data)) == []


def test_a_missing_required_option_is_one_line(tmp_path: Path) -> None:
    refused(trail("incidents", "waive", "INC-FFFFFFFF", "individual_notice", "--by", "E1", data=tmp_path), "--reason")


# --------------------------------------------------------------------------- playbook
def test_playbook_validate_accepts_the_default() -> None:
    res = ok(trail("playbook", "validate"))
    assert res.stdout.startswith(f"{PLAYBOOK}: ok")
    assert PB.organisation.name in res.stdout and res.stderr == ""


BREAKAGES = [
    # (a unique text of the line to break, the text to replace in it or None to insert a line after it, the new
    # text, what the error says); the error must name the first line that differs from the default
    pytest.param("        value: 10000000\n", "10000000", "lots", "must be a number", id="threshold-not-a-number"),
    pytest.param("id: remediate,", "role: it_ops", "role: janitor", "unknown role 'janitor'", id="unknown-role"),
    pytest.param("clock: {from: discovery, hours: 2}", "hours: 2", "hours: -2", "at least 0", id="negative-hours"),
    pytest.param("  cii_operator: false", None, "   oops: [unclosed", "not valid YAML", id="yaml"),
    pytest.param("  sector: telecom", None, "  colour: blue", "unknown key", id="unknown-key"),
    pytest.param("  - id: shenzhen_report\n", "shenzhen_report", "miit_telecom_report", "used twice", id="dup-id"),
]


@pytest.mark.parametrize(("anchor", "old", "new", "needle"), BREAKAGES)
def test_playbook_validate_names_file_and_line_of_a_broken_copy(
    tmp_path: Path, anchor: str, old: str | None, new: str, needle: str
) -> None:
    lines = PLAYBOOK.read_text(encoding="utf-8").splitlines(keepends=True)
    (at,) = [n for n, line in enumerate(lines) if anchor in line]
    broken = list(lines)
    if old is None:
        broken.insert(at + 1, new + "\n")
    else:
        assert lines[at].count(old) == 1
        broken[at] = lines[at].replace(old, new)
    line_no = next(n for n, (a, b) in enumerate(zip(lines, broken, strict=False), 1) if a != b)
    path = tmp_path / "broken.yaml"
    path.write_text("".join(broken), encoding="utf-8")
    err = refused(trail("playbook", "validate", str(path)), needle)
    assert err.startswith(f"trail: error: {path}:{line_no}: "), (line_no, err)

    both = trail("playbook", "validate", str(PLAYBOOK), str(path))
    assert both.returncode == 2 and f"{PLAYBOOK}: ok" in both.stdout
    assert both.stderr.strip() == err


def _plain(text: str, fmt: str) -> str:
    """Rendered text without markup: HTML tags and entities, Markdown backslash escapes."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", text)) if fmt == "html" else re.sub(r"\\(.)", r"\1", text)
    return re.sub(r"\s+", " ", text)


def _assert_plan(text: str, lang: str) -> None:
    org = PB.organisation
    assert (org.name if lang == "zh" else org.name_en) in text
    for g in PB.grades:
        assert (g.name_zh if lang == "zh" else g.name_en) in text, g.level
        for c in g.criteria:
            assert c.source in text, (g.level, c.source)
            if not isinstance(c.value, bool):
                assert f"≥ {c.value:,.0f}" in text, (g.level, c.value)
    for o in PB.overlays:
        assert o.criterion.source in text
    assert ("待核实" if lang == "zh" else "(verify)") in text
    verify = sum(1 for g in PB.grades for c in g.criteria if c.status == "verify") + sum(
        1 for o in PB.overlays if o.criterion.status == "verify"
    )
    assert verify > 0
    for s in PB.steps:
        assert (s.title_zh if lang == "zh" else s.title_en) in text, s.id
    for o in PB.obligations:
        assert (o.recipient_zh if lang == "zh" else o.recipient_en) in text, o.id
        assert o.basis in text, o.id
    every = PB.drills.every_months
    assert (f"每 {every} 个月" if lang == "zh" else f"Drill every: {every} months") in text


def test_playbook_render_md_zh_and_html_en(tmp_path: Path) -> None:
    """The plan as a filing document: organisation, the four grades with criteria and sources, verify
    marks, steps, obligations and the drill schedule; HTML written to --out."""
    md = ok(trail("playbook", "render", "--format", "md", "--lang", "zh")).stdout
    assert md.startswith("# ")
    _assert_plan(_plain(md, "md"), "zh")
    for level in ("I级", "II级", "III级", "IV级"):
        assert f"### {level}" in md

    out = tmp_path / "filing" / "plan.en.html"
    res = ok(trail("playbook", "render", "--format", "html", "--lang", "en", "--out", str(out)))
    assert res.stdout.strip() == str(out)
    doc = out.read_text(encoding="utf-8")
    assert doc.lstrip().lower().startswith("<!doctype html") and "</html>" in doc
    _assert_plan(_plain(doc, "html"), "en")

    # the drill schedule follows the last drill recorded in the playbook
    copy = tmp_path / "pb.yaml"
    copy.write_text(PLAYBOOK.read_text(encoding="utf-8").replace("  last: null", "  last: 2026-03-10"), "utf-8")
    res = ok(trail("playbook", "render", "--format", "md", "--lang", "en", "--playbook", str(copy)))
    plain = _plain(res.stdout, "md")
    assert "2026-03-10" in plain and "2027-03-10" in plain


# --------------------------------------------------------------------------- drill
def test_drill_runs_the_playbook_end_to_end_and_is_listed_as_a_drill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = {}
    for org_type in ("playbook", "cii"):
        extra = ["--org-type", org_type] if org_type != "playbook" else []
        r = view(trail("drill", "--by", "E1", *extra, "--format", "json", data=data))
        runs[org_type] = r
        assert r["grade"] == "III" and r["status"] == "closed"
        due = {o["id"]: o["due"] for o in r["obligations"]}
        if org_type == "cii":
            assert r["org_type"] == "cii"
            assert due["cac_report_cii"] == "1 h after discovery"
            assert "cac_report_other" not in due
        else:
            assert r["org_type"] == "other"
            assert due["cac_report_other"] == "4 h after discovery"
            assert "cac_report_cii" not in due
        docs = [Path(p) for p in r["documents"]]
        assert docs and all(p.is_file() and p.stat().st_size > 0 for p in docs)
        assert Path(r["documents_dir"]) == data / "outbox" / r["ref"] / "documents"
        names = {p.name for p in docs}
        for lang in ("zh", "en"):
            for fmt in ("md", "html"):
                assert f"initial_report.{lang}.{fmt}" in names
        zh = (Path(r["documents_dir"]) / "initial_report.zh.md").read_text(encoding="utf-8")
        assert "演练" in zh and "1,200,000" in zh
        hours = "1 小时" if org_type == "cii" else "4 小时"
        assert hours in zh
        assert "drill" in (Path(r["documents_dir"]) / "initial_report.en.md").read_text(encoding="utf-8").lower()
        assert datetime.fromisoformat(r["next_drill_due"]).date() > datetime.now(UTC).date()

    listed = {row["ref"]: row for row in rows(trail("incidents", "list", "--format", "json", data=data))}
    assert set(listed) == {r["ref"] for r in runs.values()}
    for row in listed.values():
        assert row["drill"] is True and row["status"] == "closed" and row["grade"] == "III"
        assert row["open_obligations"] == 0 and row["flags"] == ""
        assert "1,200,000" in row["title"]
    cii = view(trail("incidents", "show", runs["cii"]["ref"], "--format", "json", data=data))
    assert cii["drill"] is True and cii["facts"]["people_affected"]["value"] == 1_200_000
    assert obligation(cii, "cac_report_cii")["status"] == "met"
    assert "DRILL" in ok(trail("incidents", "show", runs["cii"]["ref"], data=data)).stdout


# --------------------------------------------------------------------------- through trail up's API
#: trail up's API URL -> the local principal's token it wrote to DATA_DIR/keys/local.token.
LOCAL_TOKENS: dict[str, str] = {}


@dataclass
class Up:
    data: Path
    api: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    elsewhere: Path
    seen: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One ``trail up`` for the API tests below (the last of them stops it)."""
    base = tmp_path_factory.mktemp("incidents-up")
    data = base / "data"
    log = base / "up.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([TRAIL, "up", "--data-dir", str(data)], env=trail_env(), stdout=subprocess.DEVNULL,
                                stderr=fh)  # fmt: skip
    try:
        server = wait_for(lambda: (data / "server.json").exists() and json.loads((data / "server.json").read_text()),
                          60, what="server.json")  # fmt: skip
        LOCAL_TOKENS[str(server["api"])] = (data / "keys" / "local.token").read_text().strip()
        # The CLI is pointed at another incident store: if it ever bypassed the API, its changes would land there.
        elsewhere = base / "elsewhere.db"
        env = trail_env(TRAIL_INCIDENT_STORE=f"sqlite://{elsewhere}")
        yield Up(data=data, api=str(server["api"]), proc=proc, log=log, env=env, elsewhere=elsewhere)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A request to trail up's API with the local token (DATA_DIR/keys/local.token) of its data directory."""
    headers = {"Authorization": f"Bearer {LOCAL_TOKENS.get(url.split('/v1/')[0], '')}", **(headers or {})}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310  # local API
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310  # local API
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def api_open(up: Up) -> dict[str, Any]:
    code, v = http("POST", up.api + "/v1/incidents", json.dumps({
        "title": "Leaked export", "by": "E1", "facts": {"people_affected": 1_200_000}, "source": "ticket T-1",
    }).encode())  # fmt: skip
    assert code == 201, v
    return dict(v)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_cli_works_through_the_api_while_up(up: Up) -> None:
    """open, fact, show, list and timeline go through trail up (not the incident store configured for the CLI)."""
    v = view(trail("incidents", "open", "--title", "Through the API", "--by", "E1", "--fact",
                   "people_affected=1200000", "--source", "SOC ticket", "--format", "json",
                   data=up.data, env=up.env))  # fmt: skip
    ref = v["ref"]
    assert v["grade"]["level"] == "III" and obligation(v, "cac_report_other")["status"] == "open"
    v = view(trail("incidents", "fact", ref, "cause", "phishing", "--source", "forensics", "--by", "E2",
                   "--format", "json", data=up.data, env=up.env))  # fmt: skip
    assert v["facts"]["cause"]["by"] == "E2"
    shown = view(trail("incidents", "show", ref, "--format", "json", data=up.data, env=up.env))
    assert shown["version"] == v["version"] and shown["facts"]["cause"]["value"] == "phishing"
    code, remote = http("GET", f"{up.api}/v1/incidents/{ref}")
    assert code == 200 and remote["version"] == v["version"]
    listed = rows(trail("incidents", "list", "--format", "json", data=up.data, env=up.env))
    assert ref in {r["ref"] for r in listed}
    tl = rows(trail("incidents", "timeline", ref, "--format", "json", data=up.data, env=up.env))
    assert len(tl) == v["version"] and (tl[0]["event"], tl[0]["by"]) == ("Opened", "E1")
    assert (tl[-1]["event"], tl[-1]["by"]) == ("FactRecorded", "E2")
    refused(trail("incidents", "grade", ref, "II", "--by", "E3", data=up.data, env=up.env), "--reason")
    refused(trail("incidents", "show", "INC-FFFFFFFF", data=up.data, env=up.env), "INC-FFFFFFFF")
    stale = trail("incidents", "fact", ref, "location", "x", "--source", "s", "--by", "E3", "--if-version", "1",
                  data=up.data, env=up.env)  # fmt: skip
    refused(stale, f"is at version {v['version']}, not 1", "retry", code=3)
    assert not up.elsewhere.exists(), "the CLI wrote to its own incident store instead of going through the API"
    up.seen = {"ref": ref, "version": v["version"], "title": "Through the API"}


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_api_stale_if_match_is_409_and_records_nothing(up: Up) -> None:
    v = api_open(up)
    ref, version = v["ref"], v["version"]
    body = json.dumps({"name": "cause", "value": "x", "source": "s", "by": "E2"}).encode()
    code, answer = http("POST", f"{up.api}/v1/incidents/{ref}/fact", body, {"If-Match": str(version - 1)})
    assert code == 409
    assert answer["error"] == (
        f"{ref} is at version {version}, not {version - 1}: it changed since you read it; look at it again and retry"
    )
    code, tl = http("GET", f"{up.api}/v1/incidents/{ref}/timeline")
    assert code == 200 and len(tl["timeline"]) == version
    code, answer = http("POST", f"{up.api}/v1/incidents/{ref}/fact", body, {"If-Match": f'"{version}"'})
    assert code == 200 and answer["version"] > version and answer["facts"]["cause"]["by"] == "E2"
    code, answer = http("POST", f"{up.api}/v1/incidents/{ref}/fact", body, {"If-Match": "yesterday"})
    assert code == 400 and "If-Match" in answer["error"]


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_api_refused_and_malformed_requests_are_400_and_the_server_stays_up(up: Up) -> None:
    v = api_open(up)
    ref, version = v["ref"], v["version"]
    for command, args, needle in [
        ("grade", {"level": "II", "by": "E3"}, "reason"),
        ("fact", {"name": "people_affected", "value": "lots", "source": "s", "by": "E3"}, "must be a number"),
        ("meet", {"obligation": "no_such_obligation", "by": "E3", "how": "x"}, "no_such_obligation"),
        ("close", {"by": "E3"}, "resolve"),
        ("fact", {"name": "cause", "value": "x", "source": "s"}, "by"),
        ("frobnicate", {"by": "E3"}, "unknown incident command"),
    ]:
        code, answer = http("POST", f"{up.api}/v1/incidents/{ref}/{command}", json.dumps(args).encode())
        assert code == 400, (command, code, answer)
        assert needle in answer["error"], (command, answer)
    for bad in (b'{"name":', b"not json at all", b"[1, 2]", b'"a string"'):
        code, answer = http("POST", f"{up.api}/v1/incidents/{ref}/fact", bad)
        assert code == 400 and "JSON object" in answer["error"], (bad, answer)
    code, answer = http("POST", f"{up.api}/v1/incidents", b"{oops")
    assert code == 400 and "JSON object" in answer["error"]
    code, tl = http("GET", f"{up.api}/v1/incidents/{ref}/timeline")
    assert len(tl["timeline"]) == version, "a refused command records nothing"
    code, health = http("GET", up.api + "/v1/health")
    assert code == 200 and health["status"] == "ok"
    assert up.proc.poll() is None
    assert "internal_error" not in up.log.read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_api_unknown_incident_is_404(up: Up) -> None:
    body = json.dumps({"name": "cause", "value": "x", "source": "s", "by": "E2"}).encode()
    for method, path, data in [
        ("GET", "/v1/incidents/INC-FFFFFFFF", None),
        ("GET", "/v1/incidents/INC-FFFFFFFF/timeline", None),
        ("POST", "/v1/incidents/INC-FFFFFFFF/fact", body),
    ]:
        code, answer = http(method, up.api + path, data)
        assert code == 404, (method, path, code, answer)
        assert "INC-FFFFFFFF" in answer["error"]


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_after_sigint_the_incident_is_still_there_in_direct_mode(up: Up) -> None:
    """Runs last: stop trail up with SIGINT; the incident recorded through the API persists."""
    if not up.seen:  # this test alone: record one through the API first
        v = api_open(up)
        up.seen = {"ref": v["ref"], "version": v["version"], "title": v["title"]}
    code, before = http("GET", f"{up.api}/v1/incidents/{up.seen['ref']}")
    assert code == 200
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(60) == 0
    assert not (up.data / "server.json").exists()
    after = view(trail("incidents", "show", up.seen["ref"], "--format", "json", data=up.data))
    assert after["title"] == up.seen["title"] and after["version"] == before["version"]
    assert after["facts"] == before["facts"] and after["obligations"][0]["id"] == before["obligations"][0]["id"]
    tl = rows(trail("incidents", "timeline", up.seen["ref"], "--format", "json", data=up.data))
    assert len(tl) == before["version"]
