"""The web console in a real Chromium against a real stack: log in with the token, watch
the sessions table fill while traffic runs, page a session's history, cancel a queued
run and approve a waiting one from their run pages, and see an HTML-injection attempt
shown as text. Assertions are on the DOM; screenshots go to the test's tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import pytest
from playwright.sync_api import Page, expect

from fence.runs import EventType, RunState
from producer import Run
from tests.support import REPO, fence_script

from .conftest import BrowserStack, PageLog

INJECTION = '<img src=x onerror="window.__pwned = 1"><b id="bold">bold</b>'


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_in(page: Page, stack: BrowserStack, path: str = "/console") -> None:
    page.goto(stack.base_url + path)
    page.fill("#login-token", stack.token)
    page.click("#login-submit")
    expect(page.locator("#login")).to_have_count(0)


@pytest.fixture
def console(page: Page, browser_stack: BrowserStack, page_log: PageLog):
    yield page
    assert page_log.offsite == []  # the console loads and calls nothing but the gateway
    assert page_log.errors == []


def test_a_wrong_token_is_refused_and_the_right_one_is_kept_for_the_tab(
    console: Page, browser_stack: BrowserStack, screenshot
):
    console.goto(browser_stack.base_url + "/console")
    console.fill("#login-token", "not-the-token")
    console.click("#login-submit")
    expect(console.locator("#login-error")).to_have_text("That token is not accepted.")
    screenshot("login-refused")

    log_in(console, browser_stack)
    console.reload()  # kept in sessionStorage: no second login
    expect(console.locator("h1")).to_have_text("Sessions")


def test_the_sessions_table_fills_while_the_demo_runs(
    console: Page, browser_stack: BrowserStack, screenshot
):
    log_in(console, browser_stack)
    env = {**os.environ, **browser_stack.runtime.env}
    demo = subprocess.Popen(
        [*fence_script(), "demo", "--sessions", "6", "--turns", "3", "--agent", "controlled"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rows = console.locator('#sessions-table tr[data-session^="demo-"]')
        expect(rows).to_have_count(6, timeout=60_000)  # each appears as the table refreshes
        screenshot("sessions-filling")
        output, _ = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 0, output
    expect(rows.locator(".state").filter(has_text="idle")).to_have_count(6)
    screenshot("sessions-idle")


def test_a_sessions_history_pages_back_and_user_content_is_text(
    console: Page, browser_stack: BrowserStack, screenshot
):
    session = unique("history")
    producer = browser_stack.runtime.producer
    for n in range(11):  # 22 messages: more than one page of 20
        producer.submit(session, f"question {n}").result(timeout=60)
    producer.submit(session, INJECTION).result(timeout=60)

    log_in(console, browser_stack, f"/console#/session/{session}")
    history = console.locator("#history > li")
    expect(history).to_have_count(20)
    expect(history.first.locator(".text")).to_have_text(f"answer to: {INJECTION}")
    expect(history.nth(1).locator(".text")).to_have_text(INJECTION)  # shown, not parsed
    expect(console.locator("#runs-table tbody tr")).to_have_count(12)
    screenshot("session-page")

    console.click("#older")
    expect(history).to_have_count(24)
    expect(history.last.locator(".text")).to_have_text("question 0")
    expect(console.locator("#older")).to_be_hidden()
    assert console.locator("#bold").count() == 0
    assert console.evaluate("window.__pwned") is None
    screenshot("session-older")


def test_a_queued_run_is_cancelled_from_its_page(
    console: Page, browser_stack: BrowserStack, screenshot
):
    runtime = browser_stack.runtime
    session, key = unique("cancel"), uuid.uuid4().hex[:10]
    blocking = runtime.producer.submit(session, f"key={key} block")
    runtime.wait_entered(key)
    queued = runtime.producer.submit(session, "waits behind it")

    log_in(console, browser_stack, f"/console#/run/{queued.id}")
    expect(console.locator("#run-state")).to_have_text("queued")
    screenshot("run-queued")
    console.click("#cancel")

    expect(console.locator("#run-state")).to_have_text("cancelled")
    expect(console.locator("#cancel")).to_have_count(0)
    expect(console.locator('#events li[data-type="run.finished"]')).to_have_count(1)
    screenshot("run-cancelled")
    runtime.release(key)
    assert blocking.result(timeout=60) == f"answer to: key={key} block"
    assert queued.status().state is RunState.CANCELLED


def test_a_waiting_run_is_approved_from_its_page_and_its_events_stream_in(
    console: Page, browser_stack: BrowserStack, screenshot
):
    run = browser_stack.runtime.producer.submit(unique("approve"), "refund", agent="approver")
    wait_for_approval(run)

    log_in(console, browser_stack, f"/console#/run/{run.id}")
    expect(console.locator("#run-state")).to_have_text("waiting")
    expect(console.locator("#approval code")).to_have_text("refund")
    console.fill("#approve-arguments", '{"order_id": "A1", "cents": 42}')
    screenshot("run-waiting")
    console.click("#approve")

    expect(console.locator("#run-state")).to_have_text("succeeded")
    expect(console.locator("#run-result")).to_have_text("done: refunded 42 on A1")
    types = console.locator("#events li").evaluate_all("items => items.map(i => i.dataset.type)")
    assert types.count("approval.requested") == types.count("approval.decided") == 1
    assert types[-1] == "run.finished"
    assert re.fullmatch(
        r"[0-9]+-[0-9]+", console.locator("#events li").last.get_attribute("data-id")
    )
    screenshot("run-approved")


def wait_for_approval(run: Run) -> None:
    for event in run.events(timeout=60):
        if event.type is EventType.APPROVAL_REQUESTED:
            return
    raise AssertionError(f"{run} never asked for approval")
