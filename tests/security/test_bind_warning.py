"""Listeners bind 127.0.0.1 unless told otherwise, and say so loudly when told otherwise."""

from __future__ import annotations

import asyncio
import io

import pytest
from aiohttp import web

from labauth import admin_guard
from scenarios.serving import exposure_warning, is_loopback_host, start_site, warn_if_exposed
from simclock import ManualClock


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "[::1]"])
def test_loopback_hosts_get_no_warning(host: str) -> None:
    assert is_loopback_host(host)
    assert exposure_warning(host, 8443, admin=True) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.20", "lab.example.org"])
def test_any_other_host_gets_the_admin_warning(host: str) -> None:
    text = exposure_warning(host, 8443, admin=True)
    assert text is not None
    assert text.startswith("WARNING:")
    assert "admin API exposed beyond this machine" in text
    assert ":8443" in text


def test_a_listener_without_admin_api_gets_the_plain_warning() -> None:
    text = exposure_warning("0.0.0.0", 443, admin=False)
    assert text is not None
    assert "every interface" in text
    assert "admin API" not in text


def test_warning_goes_to_the_given_stream() -> None:
    out = io.StringIO()
    assert warn_if_exposed("0.0.0.0", 1, admin=True, stream=out) is not None
    assert "admin API exposed beyond this machine" in out.getvalue()
    quiet = io.StringIO()
    assert warn_if_exposed("127.0.0.1", 1, admin=True, stream=quiet) is None
    assert quiet.getvalue() == ""


def _guarded_app() -> web.Application:
    return web.Application(middlewares=[admin_guard("t0ken", clock=ManualClock())])


async def test_start_site_on_every_interface_warns_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Bound on 0.0.0.0 for this test only; no traffic is sent anywhere.
    async with asyncio.timeout(10):
        site = await start_site(_guarded_app(), "0.0.0.0", 0)
        await site.stop()
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "admin API exposed beyond this machine" in err
    assert f":{site.port}" in err


async def test_start_site_on_loopback_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    async with asyncio.timeout(10):
        site = await start_site(_guarded_app())
        await site.stop()
    assert site.url.startswith("http://127.0.0.1:")
    assert capsys.readouterr().err == ""
