"""The usage table (pure): what endpoints negotiated, asterisk markers, the weekly clear."""

from __future__ import annotations

from simclock import ManualClock
from uem_sim.outgoing_tls import OutgoingTlsSettings
from uem_sim.tls_usage import WEEK_S, TlsUsage

CBC = "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"


def test_success_records_protocol_suite_time_and_count() -> None:
    usage = TlsUsage(0.0)
    usage.succeeded(
        "gk:9090",
        sni="gk",
        protocol="TLSv1.2",
        openssl_cipher="ECDHE-ECDSA-AES128-GCM-SHA256",
        now=5.0,
    )
    entry = usage.succeeded(
        "gk:9090",
        sni="gk",
        protocol="TLSv1.2",
        openssl_cipher="ECDHE-ECDSA-AES128-GCM-SHA256",
        now=6.0,
    )
    assert entry.cipher == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    assert (entry.calls, entry.last_used_at, entry.protocol) == (2, 6.0, "TLSv1.2")
    view = usage.view(OutgoingTlsSettings.default(), 7.0)
    first = next(s for s in view["suites"] if s["name"] == entry.cipher)
    assert first["used_by"] == ["gk:9090"]
    assert first["marker"] == ""


def test_a_disabled_suite_a_failing_endpoint_needs_gets_the_asterisk() -> None:
    usage = TlsUsage(0.0)
    usage.failed("old:443", sni=None, error="handshake failed", now=1.0, needs_disabled=(CBC,))
    view = usage.view(OutgoingTlsSettings.default(), 2.0)
    assert view["marked"] == [CBC]
    marked = next(s for s in view["suites"] if s["name"] == CBC)
    assert (marked["status"], marked["marker"], marked["needed_by"]) == (
        "disabled",
        "*",
        ["old:443"],
    )
    assert view["endpoints"][0]["failing"] is True


def test_a_later_success_clears_the_diagnosis_but_keeps_the_failure_count() -> None:
    usage = TlsUsage(0.0)
    usage.failed("old:443", sni=None, error="x", now=1.0, needs_disabled=(CBC,))
    usage.succeeded(
        "old:443", sni=None, protocol="TLSv1.2", openssl_cipher="ECDHE-ECDSA-AES128-SHA256", now=2.0
    )
    view = usage.view(OutgoingTlsSettings.default(), 3.0)
    assert view["marked"] == []
    entry = view["endpoints"][0]
    assert (entry["failures"], entry["failing"], entry["cipher"]) == (1, False, CBC)


def test_a_retry_that_was_not_probed_keeps_the_last_diagnosis() -> None:
    usage = TlsUsage(0.0)
    usage.failed("old:443", sni=None, error="x", now=1.0, needs_disabled=(CBC,))
    entry = usage.failed("old:443", sni=None, error="x", now=2.0)
    assert entry.needs_disabled == (CBC,)
    assert entry.failures == 2


async def test_usage_is_cleared_when_the_lab_clock_moves_seven_days() -> None:
    clock = ManualClock()
    usage = TlsUsage(clock.now())
    usage.succeeded(
        "gk:1",
        sni=None,
        protocol="TLSv1.2",
        openssl_cipher="ECDHE-RSA-AES128-GCM-SHA256",
        now=clock.now(),
    )
    await clock.advance(WEEK_S - 1)
    assert [e.endpoint for e in usage.entries(clock.now())] == ["gk:1"]
    await clock.advance(1)
    assert usage.entries(clock.now()) == []
    view = usage.view(OutgoingTlsSettings.default(), clock.now())
    assert view["clears"] == 1
    assert view["clears_at"] == view["period_started_at"] + WEEK_S
    # Three more weeks at once clear it once more and start the period that contains "now".
    usage.failed("gk:1", sni=None, error="x", now=clock.now())
    await clock.advance(3 * WEEK_S + 10)
    assert usage.entries(clock.now()) == []
    assert usage.period_started_at <= clock.now() < usage.period_started_at + WEEK_S
