"""The console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright,
against a running local stack with the demo's day recorded once (tests/console_stack.py).
Nothing here downloads a browser. Screenshots of the main pages are kept as test artefacts
(in the test's temporary directory, or TRAIL_TEST_ARTEFACTS when set)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.console_stack import PRINCIPALS, ConsoleStack, start_console_stack, wait
from trail.access.roles import granting_role
from trail.console.core import NAV

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.clickhouse,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(scripts/system-packages.sh installs it: apt-get install chromium)"),
]  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[dev]' (playwright, no browser download)")


@pytest.fixture(scope="module")
def cs(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[ConsoleStack]:
    yield from start_console_stack(tmp_path_factory.mktemp("console-stack"), chdb_path)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("TRAIL_TEST_ARTEFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_page(chromium: Any, lang: str = "en") -> Any:
    ctx = chromium.new_context(locale="en-US" if lang == "en" else "zh-CN", viewport={"width": 1360, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    return page


def login(chromium: Any, cs: ConsoleStack, who: str, lang: str = "en") -> Any:
    page = new_page(chromium, lang)
    page.goto(cs.url + "/")
    assert "/console/login" in page.url
    page.fill("#token", cs.tokens[who])
    page.click("#login")
    page.wait_for_selector("#logout")
    return page


def shot(page: Any, artefacts: Path, name: str) -> Path:
    path = artefacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_log_in_and_out(chromium: Any, cs: ConsoleStack) -> None:
    page = new_page(chromium)
    page.goto(cs.url + "/events")
    assert "/console/login" in page.url
    page.fill("#token", "trail_not-a-token-anyone-was-given")
    page.click("#login")
    assert "unknown" in page.inner_text("p.error")
    page.fill("#token", cs.tokens["ana"])
    page.click("#login")
    page.wait_for_selector("#logout")
    assert page.inner_text(".principal") == "ana"
    cookie = next(c for c in page.context.cookies() if c["name"] == "trail_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("#logout")
    page.wait_for_selector("#token")
    page.goto(cs.url + "/events")
    assert "/console/login" in page.url
    page.context.close()


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_each_role_sees_only_its_pages_and_is_refused_the_others(chromium: Any, cs: ConsoleStack, who: str) -> None:
    page = login(chromium, cs, who)
    shown = set(page.eval_on_selector_all("#nav a", "els => els.map(e => e.dataset.page)"))
    expected = {key for key, _path, perm in NAV if granting_role(PRINCIPALS[who], perm)}
    assert shown == expected
    for key, path, perm in NAV:
        res = page.goto(cs.url + path)
        assert res is not None
        if key in expected:
            assert res.status == 200, (who, path)
        else:
            assert res.status == 403, (who, path)
            assert perm in page.inner_text("#message")
    page.context.close()


def test_search_an_actor_and_find_the_0300_export(chromium: Any, cs: ConsoleStack, artefacts: Path) -> None:
    page = login(chromium, cs, "ana")
    page.click("#nav a[data-page=events]")
    page.fill("input[name=actor]", "E2042")
    page.fill("input[name=action]", "export")
    page.click("#search")
    rows = page.locator("#events tbody tr")
    assert rows.count() == 4
    first = rows.nth(0).inner_text()
    assert re.search(r"\b03:0\d:\d\d\b", first), first  # 03:00 in the organisation's time zone
    assert "export" in first and "12500" in first and "file" in first
    shot(page, artefacts, "events")
    rows.nth(0).locator("a").click()
    page.wait_for_selector("#integrity")
    wait(lambda: (page.reload() or True) and "checkpoint" in page.inner_text("#integrity"), 30, "the seal")
    shot(page, artefacts, "event")
    page.goto(cs.url + "/actor?actor=E2042&days=3")
    assert page.locator("#volume rect.bar").count() >= 1
    assert page.locator("#volume rect.bar.over").count() >= 1  # the export stands far above E2042's usual level
    assert "file" in page.inner_text("body")
    shot(page, artefacts, "actor")
    page.context.close()


def test_review_an_alert_and_see_the_review_in_the_trail(chromium: Any, cs: ConsoleStack, artefacts: Path) -> None:
    page = login(chromium, cs, "ana")
    page.goto(cs.url + "/alerts?status=open&actor=E2042")
    shot(page, artefacts, "alerts")
    boxes = page.locator("#alerts input.pick")
    assert boxes.count() >= 1
    boxes.nth(0).check()
    page.fill("#reason", "campaign export approved by DPO, ticket DPO-77")
    page.click("#ack")
    page.wait_for_selector("#reviewed")
    assert "1" in page.inner_text("#reviewed")

    def reviewed_in_trail() -> bool:
        page.goto(cs.url + "/events?actor=ana")
        return "alert review" in page.inner_text("#events")

    wait(reviewed_in_trail, 60, "the review's audit event in the trail")
    page.context.close()


def test_the_board_shows_a_running_clock_and_turns_red_when_past(
    chromium: Any, cs: ConsoleStack, artefacts: Path
) -> None:
    soon = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=20)
    view = cs.incidents.open({"title": "Laptop with a customer list lost", "by": "rex",
                              "discovered_at": soon.isoformat()})  # fmt: skip
    page = login(chromium, cs, "rex")
    page.goto(cs.url + "/incidents")
    demo = page.locator(f"article[data-ref={cs.plan['incident']}] .clock")
    before = demo.inner_text()
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).textContent !== text",
        arg=[f"article[data-ref={cs.plan['incident']}] .clock", before],
    )  # the clock runs in the page
    card = page.locator(f"article[data-ref={view['ref']}]")
    assert "state-overdue" not in (card.get_attribute("class") or "")
    shot(page, artefacts, "board")
    page.wait_for_selector(f"article[data-ref={view['ref']}].state-overdue", timeout=90_000)
    assert "OVERDUE" in (card.locator(".clock").text_content() or "")
    page.context.close()


def test_record_an_obligation_as_met_and_the_clock_stops(chromium: Any, cs: ConsoleStack, artefacts: Path) -> None:
    ref = cs.plan["incident"]
    page = login(chromium, cs, "rex")
    page.goto(f"{cs.url}/incidents/{ref}")
    row = page.locator("tr[data-obligation=miit_telecom_report]")
    assert row.locator("[data-deadline]").count() == 1
    shot(page, artefacts, "incident")
    row.locator("input[name=how]").fill("reported by phone to the telecom authority")
    row.locator("input[name=reference]").fill("MIIT-2026-001")
    row.locator("button").click()
    page.wait_for_load_state()
    row = page.locator("tr[data-obligation=miit_telecom_report]")
    assert row.locator("[data-deadline]").count() == 0
    assert "met" in row.inner_text() and "rex" in row.inner_text()
    assert "ObligationMet" in page.inner_text("#timeline") or "met" in page.inner_text("#timeline")
    page.context.close()


def test_documents_in_both_languages(chromium: Any, cs: ConsoleStack) -> None:
    ref = cs.plan["incident"]
    page = login(chromium, cs, "rex")
    for lang in ("zh", "en"):
        res = page.request.get(f"{cs.url}/incidents/{ref}/documents/initial_report.{lang}.pdf")
        assert res.status == 200 and res.body()[:5] == b"%PDF-"
        md = page.request.get(f"{cs.url}/incidents/{ref}/documents/initial_report.{lang}.md")
        assert md.status == 200 and ref in md.text()
        if lang == "zh":  # every generated sentence in Chinese: the alert's summary, the title, the grade's reason
            text = md.text()
            assert "单次导出操作涉及 12500 条记录" in text and "E2042：批量导出" in text, text
            for english in ("records in one operation", "bulk_export by", "no criterion of grades"):
                assert english not in text
    page.context.close()


def test_draft_approve_and_send_notices_with_live_progress(chromium: Any, cs: ConsoleStack, artefacts: Path) -> None:
    ref = cs.plan["incident"]
    rex = login(chromium, cs, "rex")
    rex.goto(f"{cs.url}/incidents/{ref}")
    rex.click("#notices-draft")
    rex.wait_for_selector("#notice-drafted")
    assert "rex" in rex.inner_text("#notice-drafted")
    rex.click("#notices-approve")  # the drafter may not approve (four eyes)
    assert rex.locator("#message").count() == 1
    rose = login(chromium, cs, "rose")
    rose.goto(f"{cs.url}/incidents/{ref}")
    rose.click("#notices-approve")
    assert "rose" in rose.inner_text("#notice-approved")
    rose.click("#notices-send")
    rose.wait_for_selector("#send-progress")
    shot(rose, artefacts, "notices-sending")
    rose.wait_for_selector("#send-progress.finished", timeout=180_000)
    assert rose.get_attribute("#send-progress", "data-state") == "finished"
    rose.reload()
    delivery = rose.inner_text("#notice-delivery")
    assert re.search(r"sent [1-9]\d*", delivery), delivery
    rex.context.close()
    rose.context.close()


def test_switch_language_and_it_is_remembered(chromium: Any, cs: ConsoleStack) -> None:
    page = login(chromium, cs, "ana", lang="en")
    assert page.inner_text("#nav a[data-page=events]") == "Events"
    page.click("#lang-switch")
    page.wait_for_selector("#nav a[data-page=events]:text('审计事件')")
    page.click("#nav a[data-page=alerts]")
    assert page.inner_text("#nav a[data-page=alerts]") == "告警"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.click("#lang-switch")
    page.wait_for_selector("#nav a[data-page=alerts]:text('Alerts')")
    page.context.close()


def test_a_form_without_its_csrf_token_is_refused(chromium: Any, cs: ConsoleStack) -> None:
    page = login(chromium, cs, "ana")
    page.goto(cs.url + "/alerts?status=")
    page.evaluate("document.querySelectorAll('#review-form input[name=csrf]').forEach(e => e.remove())")
    page.locator("#alerts input.pick").nth(0).check()
    page.fill("#reason", "no token")
    with page.expect_navigation() as nav:
        page.click("#dismiss")
    assert nav.value.status == 403
    assert "CSRF" in page.inner_text("#message")
    page.context.close()


def test_the_auditor_verifies_and_reads_the_access_log(chromium: Any, cs: ConsoleStack, artefacts: Path) -> None:
    ana = login(chromium, cs, "ana")
    ana.goto(cs.url + "/events?action=export")
    ana.context.close()
    page = login(chromium, cs, "aud")
    page.click("#nav a[data-page=integrity]")
    page.click("#verify-now")  # starts a job; the page reloads itself until its result is there
    page.wait_for_selector("#verification pre", timeout=120_000)
    shot(page, artefacts, "integrity")
    assert "ok" in (page.get_attribute("#verification", "class") or ""), page.inner_text("#verification")
    assert page.locator("#checkpoints tbody tr").count() >= 1
    shot(page, artefacts, "integrity")

    def logged() -> bool:
        page.goto(cs.url + "/access-log?principal=ana")
        return "/console/events" in page.inner_text("#access-log")

    wait(logged, 60, "ana's console reads in the access log")
    shot(page, artefacts, "access-log")
    page.context.close()


def test_screenshots_are_kept(artefacts: Path) -> None:
    """Run last in this module: the main pages' screenshots are artefacts; the board is the README's."""
    names = {p.stem for p in artefacts.glob("*.png")}
    assert {"board", "incident", "events", "actor", "alerts", "integrity"} <= names
    docs = Path(__file__).resolve().parents[2] / "docs" / "console.png"
    if os.environ.get("TRAIL_UPDATE_SCREENSHOT"):
        shutil.copy(artefacts / "board.png", docs)
