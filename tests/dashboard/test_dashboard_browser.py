"""The dashboard in a real headless browser: Debian's chromium driven by Playwright.

These tests need ``/usr/bin/chromium`` and the ``playwright`` Python package;
``.ci/browser-setup.sh`` installs both. When either is missing the tests FAIL (with the command
to run), never skip: a dashboard nobody opened in a browser is not tested. Screenshots go to
``artifacts/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scenarios.lab import Lab, LabConfig
from sentry_sim.events import Event
from simclock import ManualClock

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETUP_HINT = "run .ci/browser-setup.sh (installs Debian's chromium and the playwright package)"
#: Milliseconds the page may take to show what the lab did.
SEEN_MS = 8000


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(f"the playwright Python package is missing: {SETUP_HINT}")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {SETUP_HINT}")
    return async_playwright


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(LabConfig.default(), clock=ManualClock()) as running:
        yield running


@pytest.fixture
async def page(lab: Lab, browser_installed: None) -> AsyncIterator[Any]:
    async_playwright = _playwright()
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=30_000
        )
        try:
            context = await browser.new_context(viewport={"width": 1600, "height": 1000})
            tab = await context.new_page()
            problems: list[str] = []
            tab.on("pageerror", lambda error: problems.append(str(error)))
            await tab.goto(f"{lab.dashboard_url}/?token={lab.admin_token}")
            await tab.wait_for_selector("#stream-state[data-state=live]", timeout=SEEN_MS)
            yield tab
            assert problems == [], f"the page raised: {problems}"
            await context.close()
        finally:
            await browser.close()


def _shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


async def _add_device(page: Any, user: str, device_id: str) -> None:
    await page.select_option("#add-user", user)
    await page.fill("#add-device", device_id)
    await page.click("#add-submit")


def _row(key: str) -> str:
    return f"#sentry-table tr[data-key='{key}']"


async def test_connecting_a_device_fills_in_the_ladder_and_adds_its_row(
    lab: Lab, page: Any
) -> None:
    async with asyncio.timeout(60):
        await _add_device(page, "alice", "ALICEIPHONE01")
        await page.wait_for_selector(
            _row("alice/aliceiphone01") + " .state-allowed", timeout=SEEN_MS
        )
        # The ladder reaches step 7 (proxied to Exchange) and tells every earlier step.
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#ladder-text li')].some(li =>"
            " li.textContent.startsWith('Step 7') && li.textContent.includes('proxied'))",
            timeout=SEEN_MS,
        )
        steps = await page.eval_on_selector_all(
            "#ladder .step-num", "nodes => nodes.map(n => Number(n.textContent))"
        )
        assert {1, 2, 3, 4, 5, 6, 7} <= set(steps)
        assert 8 not in steps
        assert steps == sorted(steps[: steps.index(7)]) + steps[steps.index(7) :]
        row_text = await page.inner_text(_row("alice/aliceiphone01"))
        assert "ALLOWED" in row_text  # a word, not only a colour
        uem = await page.inner_text("#uem-groups .group-registered_allowed")
        assert "alice/ALICEIPHONE01" in uem
        assert lab.sentry_state("alice", "ALICEIPHONE01") == "allowed"
        await page.screenshot(path=_shot("dashboard-connected.png"), full_page=True)


async def test_block_button_makes_the_devices_next_request_fail(lab: Lab, page: Any) -> None:
    denied: list[dict[str, Any]] = []

    def watch(event: Event) -> None:
        if event.kind == "request_denied" and event.record == "alice/aliceiphone01":
            denied.append(event.to_json())

    unsubscribe = lab.bus.subscribe(watch)
    try:
        async with asyncio.timeout(60):
            await _add_device(page, "alice", "ALICEIPHONE01")
            await page.wait_for_selector(
                _row("alice/aliceiphone01") + " .state-allowed", timeout=SEEN_MS
            )
            await page.click("[data-action=block]")
            await page.wait_for_selector(
                _row("alice/aliceiphone01") + " .state-blocked", timeout=SEEN_MS
            )
            await page.click("[data-do=sync]")
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#ladder-text li')]"
                ".some(li => li.textContent.startsWith('Step 8'))",
                timeout=SEEN_MS,
            )
            await page.wait_for_selector(
                _row("alice/aliceiphone01") + " td:has-text('blocked')", timeout=SEEN_MS
            )
            await page.screenshot(path=_shot("dashboard-blocked.png"), full_page=True)
    finally:
        unsubscribe()
    assert [(d["command"], d["http_status"], d["eas_status"]) for d in denied] == [
        ("Sync", 200, 129)
    ]
    ladder = await page.inner_text("#ladder-text")
    assert "Status 129" in ladder
    log = await page.inner_text("#log-table")
    assert "request_denied" in log


async def test_keyboard_shortcuts_drive_the_page_and_large_text_persists(
    lab: Lab, page: Any
) -> None:
    async with asyncio.timeout(60):
        await page.keyboard.press("n")
        focused = await page.evaluate("document.activeElement.id")
        assert focused == "add-device"
        await page.keyboard.type("CAROLPHONE01")
        await page.select_option("#add-user", "carol")
        await page.press("#add-device", "Enter")  # submits the form
        await page.wait_for_selector(
            _row("carol/carolphone01") + " .state-blocked", timeout=SEEN_MS
        )
        await page.focus("#ladder-section")
        await page.keyboard.press("l")
        assert await page.evaluate("document.body.classList.contains('large')")
        await page.reload()
        await page.wait_for_selector("#stream-state[data-state=live]", timeout=SEEN_MS)
        assert await page.evaluate("document.body.classList.contains('large')")
        assert await page.get_attribute("#large-toggle", "aria-pressed") == "true"
        # The reloaded page rebuilds carol's ladder from the state it is sent.
        await page.wait_for_function(
            "() => document.querySelectorAll('#ladder-text li').length > 5", timeout=SEEN_MS
        )
        await page.screenshot(path=_shot("dashboard-large-text.png"), full_page=False)
    assert (ARTIFACTS / "dashboard-large-text.png").stat().st_size > 0
