"""The Outgoing TLS panel without a browser: the pure panel, the feed, the log lines, the route.

The pure part gets views shaped like the UEM's (docs/admin-api.md, "UEM outgoing TLS"); the
route tests run a real lab on loopback, over plain http and over TLS (``lab.tls: true``).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.dashboard.app import CONTROL_HEADER
from scenarios.dashboard.model import FlowModel
from scenarios.dashboard.tls_panel import (
    GATEKEEPERS_PATH,
    RESET_PATH,
    SETTINGS_PATH,
    TLS_EVENTS,
    USAGE_PATH,
    OutgoingTlsFeed,
    OutgoingTlsPanel,
    PanelDataError,
)
from scenarios.flow import FIRST_CONTACT
from scenarios.lab import Lab, LabConfig, LabError, default_lab_mapping
from simclock import ManualClock
from uem_sim.outgoing_tls import OutgoingTlsSettings, catalogue

NOW = 1_767_225_600.0
WEEK = 7 * 24 * 3600.0
GOOD = "127.0.0.1:40123"
BAD = "gk2.lab:9090"
IDLE = "127.0.0.1:40200"
PLAIN = "127.0.0.1:40300"
SECRET = "s3cr3t-push-token"
NEEDED = "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"
NEGOTIATED = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"


def settings_view(*, is_default: bool = True, unavailable: float = 0.0) -> dict[str, Any]:
    """``GET /api/v1/outgoing-tls`` as the UEM answers it (default policy)."""
    default = OutgoingTlsSettings.default().to_dict()
    return {
        "settings": {**default, "is_default": is_default},
        "default": default,
        "suites": catalogue(),
        "sni": "SNI is sent on every call to a host name",
        "trust": "configured roots",
        "generation": 0 if is_default else 1,
        "unavailable_for_s": unavailable,
    }


def endpoint(name: str, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "endpoint": name,
        "sni": None,
        "protocol": None,
        "cipher": None,
        "openssl_cipher": None,
        "calls": 0,
        "last_used_at": None,
        "failures": 0,
        "failing": False,
        "last_error": None,
        "last_failure_at": None,
        "needs_disabled": [],
        "speaks_only": None,
    }
    entry.update(fields)
    return entry


def usage_view(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /api/v1/outgoing-tls/usage`` for the default policy and ``endpoints``."""
    default = OutgoingTlsSettings.default()
    suites = []
    for status, listed in (("selected", default.selected), ("disabled", default.disabled)):
        for suite in listed:
            used = [e["endpoint"] for e in endpoints if e["cipher"] == suite.iana]
            needed = [
                e["endpoint"]
                for e in endpoints
                if e["failing"] and suite.iana in e["needs_disabled"]
            ]
            marked = status == "disabled" and bool(needed)
            suites.append(
                {
                    "name": suite.iana,
                    "openssl_name": suite.openssl,
                    "status": status,
                    "marker": "*" if marked else "",
                    "used_by": used,
                    "needed_by": needed,
                }
            )
    return {
        "period_started_at": NOW,
        "clears_at": NOW + WEEK,
        "clears": 0,
        "endpoints": endpoints,
        "suites": suites,
        "marked": [s["name"] for s in suites if s["marker"]],
    }


def gatekeepers_view(*urls: str) -> dict[str, Any]:
    return {
        "gatekeepers": [
            {"gatekeeper_id": f"sentry-{n}", "push_url": url, "pending_pushes": 0}
            for n, url in enumerate(urls)
        ]
    }


def mixed_views() -> dict[str, Any]:
    """One working TLS gatekeeper, one failing, one never called, one over plain http."""
    good = endpoint(
        GOOD,
        protocol="TLSv1.2",
        cipher=NEGOTIATED,
        openssl_cipher="ECDHE-ECDSA-AES128-GCM-SHA256",
        calls=12,
        last_used_at=NOW + 100.5,
    )
    bad = endpoint(
        BAD,
        sni="gk2.lab",
        failures=3,
        failing=True,
        last_error=f"TLS 1.2 handshake with {BAD} failed: no selected cipher suite is acceptable "
        f"to it; it would need the disabled suite(s) {NEEDED}",
        last_failure_at=NOW + 200.0,
        needs_disabled=[NEEDED],
    )
    return {
        "settings": settings_view(),
        "usage": usage_view([bad, good]),
        "gatekeepers": gatekeepers_view(
            f"https://{GOOD}/uem/push/{SECRET}",
            f"https://{BAD}/uem/push/{SECRET}",
            f"https://{IDLE}/uem/push/{SECRET}",
            f"http://{PLAIN}/uem/push/{SECRET}",
        ),
    }


def panel_of(views: Mapping[str, Any], now: float = NOW + 300) -> OutgoingTlsPanel:
    return OutgoingTlsPanel.from_views(
        settings=views["settings"], usage=views["usage"], gatekeepers=views["gatekeepers"], now=now
    )


# --- the pure panel --------------------------------------------------------------------------


def test_failing_endpoint_comes_first_with_its_error_and_the_disabled_suite_it_needs() -> None:
    panel = panel_of(mixed_views())
    rows = {row.endpoint: row for row in panel.endpoints}
    assert [row.endpoint for row in panel.endpoints] == [BAD, GOOD, IDLE, PLAIN]
    bad = rows[BAD]
    assert bad.status == "failing"
    assert bad.last_error is not None
    assert NEEDED in bad.last_error
    assert bad.needs_disabled == (NEEDED,)
    assert bad.sni == "gk2.lab"
    assert bad.gatekeepers == ("sentry-1",)
    assert panel.marked == (NEEDED,)
    marked = [s for s in panel.suites if s.marker]
    assert [(s.name, s.status, s.needed_by) for s in marked] == [(NEEDED, "disabled", (BAD,))]


def test_working_endpoint_shows_what_it_negotiated() -> None:
    row = {r.endpoint: r for r in panel_of(mixed_views()).endpoints}[GOOD]
    assert (row.status, row.protocol, row.cipher, row.calls, row.last_used_at) == (
        "ok",
        "TLSv1.2",
        NEGOTIATED,
        12,
        NOW + 100.5,
    )
    assert row.sni is None  # an IP address: RFC 6066 sends no SNI


def test_gatekeepers_without_usage_are_listed_as_unused_or_plain() -> None:
    rows = {r.endpoint: r for r in panel_of(mixed_views()).endpoints}
    assert (rows[IDLE].status, rows[IDLE].calls) == ("unused", 0)
    assert (rows[PLAIN].status, rows[PLAIN].cipher) == ("plain", None)
    assert panel_of(mixed_views()).transport == "mixed"


def test_suites_keep_the_selected_order_then_the_disabled_ones() -> None:
    panel = panel_of(mixed_views())
    default = OutgoingTlsSettings.default()
    assert [s.name for s in panel.suites] == [
        s.iana for s in (*default.selected, *default.disabled)
    ]
    selected = [s for s in panel.suites if s.status == "selected"]
    assert [s.order for s in selected] == list(range(1, len(default.selected) + 1))
    assert {s.order for s in panel.suites if s.status == "disabled"} == {None}
    assert {s.default_status for s in panel.suites} == {"selected", "disabled"}
    used = [s for s in panel.suites if s.used_by]
    assert [(s.name, s.used_by) for s in used] == [(NEGOTIATED, (GOOD,))]


def test_clearing_time_is_the_usage_period_end_on_the_lab_clock() -> None:
    panel = panel_of(mixed_views(), now=NOW + 3600)
    assert panel.clears_at == NOW + WEEK
    assert panel.clears_in_s == WEEK - 3600
    assert panel.to_json()["clears_at"] == NOW + WEEK


def test_plain_http_lab_says_so_and_still_shows_the_policy_that_would_apply() -> None:
    views = {
        "settings": settings_view(),
        "usage": usage_view([]),
        "gatekeepers": gatekeepers_view(f"http://{PLAIN}/uem/push/{SECRET}"),
    }
    data = panel_of(views).to_json()
    assert data["transport"] == "plain"
    assert "plain HTTP (no TLS)" in data["headline"]
    assert "would apply" in data["headline"]
    assert [(r["endpoint"], r["status"]) for r in data["endpoints"]] == [(PLAIN, "plain")]
    assert len(data["suites"]) == len(catalogue())
    assert data["marked"] == []


def test_no_gatekeeper_yet_is_its_own_case() -> None:
    views = {
        "settings": settings_view(),
        "usage": usage_view([]),
        "gatekeepers": {"gatekeepers": []},
    }
    panel = panel_of(views)
    assert (panel.transport, panel.endpoints) == ("none", ())
    assert "No gatekeeper" in panel.headline


def test_push_secret_never_reaches_the_page() -> None:
    data = json.dumps(panel_of(mixed_views()).to_json())
    assert SECRET not in data
    assert "/uem/push" not in data


def test_restart_window_gives_when_calls_resume_on_the_lab_clock() -> None:
    views = {**mixed_views(), "settings": settings_view(is_default=False, unavailable=0.75)}
    data = panel_of(views, now=NOW + 10).to_json()
    assert (data["is_default"], data["generation"]) == (False, 1)
    assert data["available_at"] == NOW + 10.75
    assert panel_of(mixed_views()).to_json()["available_at"] is None


def test_malformed_view_names_the_route_and_the_json_path() -> None:
    views = mixed_views()
    views["usage"]["endpoints"][1]["calls"] = "twelve"
    with pytest.raises(PanelDataError) as caught:
        panel_of(views)
    assert str(caught.value) == (
        f"GET {USAGE_PATH}: $.endpoints[1].calls: expected a count (an integer >= 0), got 'twelve'"
    )
    views = mixed_views()
    views["gatekeepers"]["gatekeepers"][2]["push_url"] = f"ftp://{IDLE}/uem/push/{SECRET}"
    with pytest.raises(PanelDataError) as caught:
        panel_of(views)
    assert f"GET {GATEKEEPERS_PATH}: $.gatekeepers[2].push_url" in str(caught.value)
    assert SECRET not in str(caught.value)
    views = mixed_views()
    views["settings"]["settings"]["is_default"] = "yes"
    with pytest.raises(PanelDataError, match=rf"GET {SETTINGS_PATH}: \$\.settings\.is_default"):
        panel_of(views)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found.extend(_paths(item, (*prefix, n)))
    return found


_VIEWS = mixed_views()
_PATHS = [p for p in _paths(_VIEWS) if len(p) > 1]
_JUNK = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)


@given(st.lists(st.tuples(st.sampled_from(_PATHS), _JUNK), min_size=1, max_size=4))
def test_mutated_views_only_raise_the_panels_own_error(
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    views = copy.deepcopy(_VIEWS)
    for path, junk in mutations:
        target: Any = views
        try:
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = junk
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    try:
        data = panel_of(views).to_json()
    except PanelDataError as exc:
        message = str(exc)
    else:
        json.dumps(data, allow_nan=True)  # whatever passes is still JSON for the page
        assert data["transport"] in ("tls", "plain", "mixed", "none")
        return
    assert message.startswith(("GET /api/v1/", "POST /api/v1/"))


# --- the feed (a fake lab: a clock and canned admin answers) ---------------------------------


class FakeUem:
    """Answers the panel's three admin reads; counts them; can be "down"."""

    def __init__(self, views: Mapping[str, Any]) -> None:
        self.clock = ManualClock(NOW)
        self.views = dict(views)
        self.calls: list[tuple[str, str]] = []
        self.down = False

    async def uem(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((method, path))
        if self.down:
            raise LabError(f"{method} {path}: connection refused")
        if (method, path) == ("POST", RESET_PATH):
            self.views["settings"] = settings_view(unavailable=1.0)
            return self.views["settings"]
        by_path = {SETTINGS_PATH: "settings", USAGE_PATH: "usage", GATEKEEPERS_PATH: "gatekeepers"}
        return self.views[by_path[path]]


async def test_feed_reads_once_then_again_only_after_a_tls_event_or_a_control() -> None:
    uem = FakeUem(mixed_views())
    feed = OutgoingTlsFeed()
    async with asyncio.timeout(5):
        first = await feed.read(uem)
        assert len(uem.calls) == 3
        assert await feed.read(uem) is first
        assert len(uem.calls) == 3
        assert feed.saw("DecisionChanged") is False
        await feed.read(uem)
        assert len(uem.calls) == 3
        assert feed.saw("PushDelivered") is True
        await feed.read(uem)
        assert len(uem.calls) == 6
        feed.mark()
        await feed.read(uem)
        assert len(uem.calls) == 9
    assert {"OutgoingTlsApplied", "OutgoingTlsFailed", "CertificateReplaced"} <= TLS_EVENTS


async def test_feed_keeps_the_last_panel_marked_stale_while_the_uem_is_down() -> None:
    uem = FakeUem(mixed_views())
    feed = OutgoingTlsFeed()
    async with asyncio.timeout(5):
        good = await feed.read(uem)
        uem.down = True
        feed.mark()
        stale = await feed.read(uem)
        assert stale["stale"] is True
        assert "cannot be read" in stale["error"]
        assert stale["endpoints"] == good["endpoints"]
        assert feed.dirty  # read again next time
        uem.down = False
        fresh = await feed.read(uem)
    assert (fresh["stale"], fresh["error"]) == (False, None)


async def test_feed_without_any_read_yet_says_what_failed() -> None:
    uem = FakeUem(mixed_views())
    uem.down = True
    async with asyncio.timeout(5):
        data = await OutgoingTlsFeed().read(uem)
    assert (data["transport"], data["stale"], data["endpoints"]) == ("unknown", True, [])


async def test_feed_reset_calls_the_uems_reset_and_reads_again() -> None:
    uem = FakeUem({**mixed_views(), "settings": settings_view(is_default=False)})
    feed = OutgoingTlsFeed()
    async with asyncio.timeout(5):
        await feed.read(uem)
        answer = await feed.reset(uem)
        data = await feed.read(uem)
    assert answer == {"is_default": True, "unavailable_for_s": 1.0}
    assert ("POST", RESET_PATH) in uem.calls
    assert data["is_default"] is True


# --- the log lines of the UEM's TLS events ---------------------------------------------------


def test_tls_events_become_plain_log_lines_without_arrows() -> None:
    model = FlowModel()
    failed = model.take_uem(
        {
            "event": "OutgoingTlsFailed",
            "at": NOW,
            "endpoint": BAD,
            "error": f"TLS 1.2 handshake with {BAD} failed: the endpoint speaks only TLSv1.1",
            "needs_disabled": (),
            "speaks_only": "TLSv1.1",
        }
    )
    applied = model.take_uem(
        {
            "event": "OutgoingTlsApplied",
            "at": NOW,
            "selected": ("A", "B"),
            "disabled": (),
            "is_default": False,
            "unavailable_s": 1.0,
        }
    )
    replaced = model.take_uem(
        {
            "event": "CertificateReplaced",
            "at": NOW,
            "port": "api",
            "subject": "CN=uem.lab",
            "serial": "0a1b",
            "not_after": "2027-01-01T00:00:00Z",
        }
    )
    assert failed.entry.summary == (
        f"outgoing TLS 1.2 handshake with {BAD} failed: the endpoint speaks only TLSv1.1"
    )
    assert applied.entry.summary.startswith("outgoing TLS settings applied (2 selected suite(s)")
    assert "refused for 1 s" in applied.entry.summary
    assert replaced.entry.summary == (
        "the UEM's api port now serves CN=uem.lab (serial 0a1b, valid until 2027-01-01T00:00:00Z)"
    )
    assert (failed.arrows, applied.arrows, replaced.arrows) == ((), (), ())
    assert failed.entry.fields["speaks_only"] == "TLSv1.1"


def test_failed_event_names_the_needed_suites_when_the_error_does_not() -> None:
    update = FlowModel().take_uem(
        {
            "event": "OutgoingTlsFailed",
            "at": NOW,
            "endpoint": BAD,
            "error": f"TLS 1.2 handshake with {BAD} failed: reset",
            "needs_disabled": (NEEDED,),
            "speaks_only": None,
        }
    )
    assert update.entry.summary.endswith(f"it would need the disabled suite(s) {NEEDED}")


# --- the route, over loopback ----------------------------------------------------------------


def tls_config() -> LabConfig:
    mapping = default_lab_mapping()
    mapping.setdefault("lab", {})["tls"] = True
    return LabConfig.from_mapping(mapping, "test lab with TLS")


@pytest.fixture
async def plain_lab() -> AsyncIterator[Lab]:
    async with Lab(LabConfig.default(), clock=ManualClock()) as running:
        yield running


@pytest.fixture
async def tls_lab() -> AsyncIterator[Lab]:
    async with Lab(tls_config(), clock=ManualClock()) as running:
        yield running


def client(lab: Lab, *, control: bool = True) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {lab.admin_token}"}
    if control:
        headers[CONTROL_HEADER] = "1"
    return aiohttp.ClientSession(base_url=lab.dashboard_url, headers=headers)


async def outgoing(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/api/state") as response:
        assert response.status == 200
        data: dict[str, Any] = (await response.json())["outgoing_tls"]
        return data


async def block_after_first_contact(lab: Lab) -> None:
    """A phone's first contact, then a UEM block: the block reaches the gatekeeper by push."""
    runner = lab.device("alice", "ALICEIPHONE01")
    for step in FIRST_CONTACT:
        await runner.run_step(step)
    await lab.admin_action("alice", "ALICEIPHONE01", "block")
    await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "blocked")


async def test_state_of_a_plain_lab_says_outgoing_calls_are_plain_http(plain_lab: Lab) -> None:
    async with asyncio.timeout(20), client(plain_lab) as http:
        await block_after_first_contact(plain_lab)
        data = await outgoing(http)
    assert data["transport"] == "plain"
    assert "plain HTTP (no TLS)" in data["headline"]
    assert [r["status"] for r in data["endpoints"]] == ["plain"]
    assert data["is_default"] is True
    assert [s["name"] for s in data["suites"] if s["status"] == "selected"] == [
        s.iana for s in OutgoingTlsSettings.default().selected
    ]


async def test_state_of_a_tls_lab_shows_the_suite_the_push_negotiated(tls_lab: Lab) -> None:
    async with asyncio.timeout(20), client(tls_lab) as http:
        await block_after_first_contact(tls_lab)
        usage = await tls_lab.uem("GET", USAGE_PATH)
        data = await outgoing(http)
    (used,) = usage["endpoints"]
    assert used["calls"] >= 1
    assert used["protocol"] == "TLSv1.2"
    assert data["transport"] == "tls"
    (row,) = data["endpoints"]
    assert (row["endpoint"], row["status"], row["protocol"], row["cipher"]) == (
        used["endpoint"],
        "ok",
        "TLSv1.2",
        used["cipher"],
    )
    assert row["calls"] == used["calls"]
    (suite,) = [s for s in data["suites"] if s["used_by"]]
    assert suite["name"] == used["cipher"]
    assert suite["status"] == "selected"


async def test_stream_pushes_a_fresh_panel_after_a_push_over_tls(tls_lab: Lab) -> None:
    async with (
        asyncio.timeout(20),
        client(tls_lab) as http,
        http.get("/api/events/stream") as stream,
    ):
        first = json.loads((await stream.content.readline()).decode()[len("data: ") :])
        assert first["type"] == "state"
        assert [r["status"] for r in first["outgoing_tls"]["endpoints"]] == ["unused"]
        await block_after_first_contact(tls_lab)
        while True:
            line = (await stream.content.readline()).decode()
            if not line.startswith("data: "):
                continue
            message = json.loads(line[len("data: ") :])
            rows = message.get("outgoing_tls", {}).get("endpoints", [])
            if message["type"] == "views" and rows and rows[0]["status"] == "ok":
                break
    assert rows[0]["cipher"].startswith("TLS_ECDHE_")


async def test_reset_control_needs_the_control_header(plain_lab: Lab) -> None:
    async with (
        asyncio.timeout(10),
        client(plain_lab, control=False) as http,
        http.post("/api/outgoing-tls/reset") as response,
    ):
        assert response.status == 403
    settings = await plain_lab.uem("GET", SETTINGS_PATH)
    assert settings["generation"] == 0  # nothing was reset


async def test_reset_control_restores_the_default_and_logs_the_trainers_action(
    tls_lab: Lab,
) -> None:
    narrow = {"selected_ciphers": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]}
    async with asyncio.timeout(20), client(tls_lab) as http:
        await tls_lab.uem("PUT", SETTINGS_PATH, narrow)
        assert (await outgoing(http))["is_default"] is False
        async with http.post("/api/outgoing-tls/reset") as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["is_default"] is True
        data = await outgoing(http)
        async with http.get("/api/state") as response:
            log = (await response.json())["log"]
    assert (data["is_default"], data["generation"]) == (True, 2)
    kinds = [entry["kind"] for entry in log]
    assert "trainer_outgoing_tls" in kinds
    assert "OutgoingTlsApplied" in kinds
