"""The Outgoing TLS panel in a real headless browser (Debian's chromium driven by Playwright).

A lab with ``lab.tls: true`` pushes to the gatekeeper over TLS; the page must show the suite
that push negotiated, a failing gatekeeper with the disabled suite it needs marked ``*``, and
the reset control bringing it back; a plain lab's panel must say that outgoing calls are plain
HTTP. Like the other browser tests these FAIL (never skip) without chromium and playwright
(``.ci/browser-setup.sh``); screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scenarios.dashboard.tls_panel import SETTINGS_PATH, USAGE_PATH
from scenarios.lab import Lab, LabConfig, default_lab_mapping
from simclock import ManualClock

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SETUP_HINT = "run .ci/browser-setup.sh (installs Debian's chromium and the playwright package)"
#: Milliseconds the page may take to show what the lab did.
SEEN_MS = 8000
KEY = "alice/aliceiphone01"
#: The lab's certificates have EC keys: a UEM offering only this RSA suite cannot reach them.
RSA_ONLY = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def _config(tls: bool) -> LabConfig:
    mapping = default_lab_mapping()
    mapping.setdefault("lab", {})["tls"] = tls
    return LabConfig.from_mapping(mapping, f"test lab (tls: {tls})")


@pytest.fixture
async def tls_lab() -> AsyncIterator[Lab]:
    async with Lab(_config(True), clock=ManualClock()) as running:
        yield running


@pytest.fixture
async def plain_lab() -> AsyncIterator[Lab]:
    async with Lab(_config(False), clock=ManualClock()) as running:
        yield running


async def _open(driver: Any, lab: Lab, problems: list[str]) -> Any:
    browser = await driver.chromium.launch(
        executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=30_000
    )
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    tab = await context.new_page()
    tab.on("pageerror", lambda error: problems.append(str(error)))
    await tab.goto(f"{lab.dashboard_url}/?token={lab.admin_token}")
    await tab.wait_for_selector("#stream-state[data-state=live]", timeout=SEEN_MS)
    return browser, tab


@pytest.fixture
def driver(browser_installed: None) -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(f"the playwright Python package is missing: {SETUP_HINT}")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {SETUP_HINT}")
    return async_playwright


@contextlib.asynccontextmanager
async def _page_of(lab: Lab, driver: Any) -> AsyncIterator[Any]:
    problems: list[str] = []
    async with driver() as playwright:
        browser, tab = await _open(playwright, lab, problems)
        try:
            yield tab
        finally:
            await browser.close()
    assert problems == [], f"the page raised: {problems}"


@pytest.fixture
async def tls_page(tls_lab: Lab, driver: Any) -> AsyncIterator[Any]:
    async with _page_of(tls_lab, driver) as tab:
        yield tab


@pytest.fixture
async def plain_page(plain_lab: Lab, driver: Any) -> AsyncIterator[Any]:
    async with _page_of(plain_lab, driver) as tab:
        yield tab


def _shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


async def _connect_and_block(page: Any) -> None:
    """From the page: add alice's phone, then Block it (the UEM pushes the block)."""
    await page.select_option("#add-user", "alice")
    await page.fill("#add-device", "ALICEIPHONE01")
    await page.click("#add-submit")
    await page.wait_for_selector(
        f"#sentry-table tr[data-key='{KEY}'] .state-allowed", timeout=SEEN_MS
    )
    await page.click("[data-action=block]")


async def _overflow(page: Any) -> int:
    """Pixels the panel's content sticks out of it sideways (0: it fits)."""
    result: int = await page.evaluate(
        "() => { const s = document.getElementById('tls-section');"
        " return Math.max(0, s.scrollWidth - s.clientWidth); }"
    )
    return result


async def test_panel_shows_the_suite_a_push_over_tls_negotiated(
    tls_lab: Lab, tls_page: Any
) -> None:
    page = tls_page
    async with asyncio.timeout(60):
        await page.wait_for_selector("#tls-headline[data-transport=tls]", timeout=SEEN_MS)
        await _connect_and_block(page)
        await page.wait_for_selector(
            f"#sentry-table tr[data-key='{KEY}'] .state-blocked", timeout=SEEN_MS
        )
        row = "#tls-endpoints tr.tls-ok"
        await page.wait_for_selector(row, timeout=SEEN_MS)
        usage = await tls_lab.uem("GET", USAGE_PATH)
        (used,) = usage["endpoints"]
        assert await page.get_attribute(row, "data-endpoint") == used["endpoint"]
        assert (await page.inner_text(f"{row} td.cipher")).strip() == used["cipher"]
        text = await page.inner_text(row)
        assert "TLS OK" in text  # a word, not only a colour
        assert "TLSv1.2" in text
        assert "none (IP address)" in text  # the lab's push URL is 127.0.0.1: no SNI
        negotiated = await page.inner_text(f"#tls-selected li[data-suite='{used['cipher']}']")
        assert "negotiated with " + used["endpoint"] in negotiated
        assert "plain HTTP" not in await page.inner_text("#tls-headline")
        left = usage["clears_at"] - tls_lab.clock.now()
        clears = datetime.fromtimestamp(usage["clears_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        expected = f"{clears} (in {int(left // 86400)} d {int(left % 86400 // 3600)} h, lab clock)"
        assert await page.inner_text("#tls-clears") == expected
        await page.screenshot(path=_shot("dashboard-tls-panel.png"), full_page=True)
        await page.click("#large-toggle")
        await page.wait_for_selector("body.large")
        assert await _overflow(page) == 0
        panel = await page.query_selector("#tls-section")
        await panel.screenshot(path=_shot("dashboard-tls-panel-large.png"))


async def test_failing_gatekeeper_is_marked_and_reset_to_default_brings_it_back(
    tls_lab: Lab, tls_page: Any
) -> None:
    page = tls_page
    async with asyncio.timeout(60):
        # An administrator narrowed the outgoing suites to one the lab's certificate cannot use.
        await tls_lab.uem("PUT", SETTINGS_PATH, {"selected_ciphers": [RSA_ONLY]})
        clock = tls_lab.clock
        assert isinstance(clock, ManualClock)
        await clock.advance(5)  # past the outgoing client's restart
        await _connect_and_block(page)
        failing = "#tls-endpoints tr.failing-detail"
        await page.wait_for_selector(failing, timeout=SEEN_MS)
        usage = await tls_lab.uem("GET", USAGE_PATH)
        (entry,) = usage["endpoints"]
        assert entry["failing"] is True
        detail = await page.inner_text(failing)
        assert entry["last_error"] in detail
        assert "FAILING" in await page.inner_text("#tls-endpoints tr.failing")
        marked = await page.eval_on_selector_all(
            "#tls-disabled li.marked", "items => items.map(i => i.dataset.suite)"
        )
        assert marked == usage["marked"]
        assert set(marked) == set(entry["needs_disabled"])
        first = await page.inner_text(f"#tls-disabled li[data-suite='{marked[0]}']")
        assert first.startswith("*")
        assert "needed by " + entry["endpoint"] in first
        selected = await page.eval_on_selector_all(
            "#tls-selected li", "items => items.map(i => i.dataset.suite)"
        )
        assert selected == [RSA_ONLY]
        assert "not the default" in await page.inner_text("#tls-policy")
        await page.click("#large-toggle")
        await page.wait_for_selector("body.large")
        assert await _overflow(page) == 0
        panel = await page.query_selector("#tls-section")
        await panel.screenshot(path=_shot("dashboard-tls-panel-failing-large.png"))
        await page.click("#large-toggle")

        await page.click("#tls-reset")
        await page.wait_for_selector("#tls-restart:not([hidden])", timeout=SEEN_MS)
        assert "the default" in await page.inner_text("#tls-policy")
        # The pusher's backoff and the restart run on the lab clock: the trainer advances it.
        await page.fill("#advance", "30")
        await page.click("#clock-form button[type=submit]")
        await page.wait_for_selector("#tls-endpoints tr.tls-ok", timeout=SEEN_MS)
        await page.wait_for_selector("#tls-restart[hidden]", state="attached", timeout=SEEN_MS)
        assert await page.query_selector_all("#tls-disabled li.marked") == []
        log = await page.inner_text("#log-table")
        assert "trainer: reset the UEM's outgoing TLS to the default" in log
        assert "outgoing TLS 1.2 handshake with" in log
        await page.screenshot(path=_shot("dashboard-tls-panel-reset.png"), full_page=True)
    settings = await tls_lab.uem("GET", SETTINGS_PATH)
    assert settings["settings"]["is_default"] is True


async def test_plain_lab_panel_says_outgoing_calls_are_plain_http(
    plain_lab: Lab, plain_page: Any
) -> None:
    page = plain_page
    async with asyncio.timeout(60):
        await page.wait_for_selector("#tls-headline[data-transport=plain]", timeout=SEEN_MS)
        headline = await page.inner_text("#tls-headline")
        assert "plain HTTP (no TLS)" in headline
        row = await page.inner_text("#tls-endpoints tr.tls-plain")
        assert "plain HTTP, no TLS" in row
        # The policy that would apply is still listed, in order.
        selected = await page.eval_on_selector_all(
            "#tls-selected li", "items => items.map(i => i.dataset.suite)"
        )
        policy = await plain_lab.uem("GET", SETTINGS_PATH)
        assert selected == policy["settings"]["selected_ciphers"]
        await page.click("#large-toggle")
        await page.wait_for_selector("body.large")
        assert await _overflow(page) == 0
        panel = await page.query_selector("#tls-section")
        await panel.screenshot(path=_shot("dashboard-tls-panel-plain-large.png"))
