"""``lab.tls``: the gatekeeper and the UEM over TLS with the lab's own CA, end to end."""

from __future__ import annotations

import asyncio
import io
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from device_sim.client import DeviceClient, FolderSync, Provision, Step, Sync
from device_sim.shell import AiohttpTransport, DeviceRunner, DeviceTls
from labpki import ClientCertMode, make_hierarchy
from scenarios import cli_lab
from scenarios import lab as lab_module
from scenarios.lab import Lab, LabConfig, LabConfigError, LabError, default_lab_mapping
from scenarios.serving import warn_if_exposed

ONBOARD: list[Step] = [Provision(), FolderSync(), Sync()]


def tls_lab(tls: object = True, **sections: Any) -> LabConfig:
    mapping = default_lab_mapping()
    mapping["lab"]["tls"] = tls
    mapping.update(sections)
    return LabConfig.from_mapping(mapping, "tls-lab.yaml")


# -- the lab file ---------------------------------------------------------------------------------


def test_tls_is_off_by_default_and_everything_stays_plain() -> None:
    config = LabConfig.default()
    assert not config.lab.tls.enabled
    assert not config.sentry.tls.enabled
    assert not config.uem.tls.api.enabled


def test_tls_true_turns_on_all_four_ports() -> None:
    config = tls_lab(True)
    assert config.lab.tls.enabled
    assert config.sentry.tls.device.enabled
    assert config.sentry.tls.admin.enabled
    assert config.sentry.tls.device.client_certificates is ClientCertMode.OFF
    assert config.uem.tls.api.enabled
    assert config.uem.tls.admin.enabled


def test_tls_mapping_sets_mutual_tls_on_the_device_port() -> None:
    config = tls_lab({"client_certificates": "required"})
    assert config.lab.tls.client_certificates is ClientCertMode.REQUIRED
    assert config.sentry.tls.device.client_certificates is ClientCertMode.REQUIRED
    # YAML reads a bare off as false.
    assert tls_lab({"client_certificates": False}).lab.tls.client_certificates is (
        ClientCertMode.OFF
    )


@pytest.mark.parametrize(
    ("tls", "sections", "message"),
    [
        ("yes", {}, "tls-lab.yaml: lab.tls: expected true, false or a mapping"),
        ({"mtls": True}, {}, "tls-lab.yaml: lab.tls.mtls: unknown key"),
        (
            {"client_certificates": "sometimes"},
            {},
            "lab.tls.client_certificates: expected off, optional or required",
        ),
        (
            {"enabled": False, "client_certificates": "required"},
            {},
            "lab.tls.client_certificates: required needs TLS",
        ),
        (
            False,
            {"sentry": {"tls": {"device": {"enabled": True}}}},
            "tls-lab.yaml: sentry.tls: TLS in a lab needs lab.tls: true",
        ),
        (
            {"client_certificates": "optional"},
            {"sentry": {"tls": {"device": {"enabled": True}}}},
            "lab.tls.client_certificates: sentry.tls is set in this file",
        ),
    ],
)
def test_bad_tls_settings_name_the_file_and_key(
    tls: object, sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(LabConfigError) as failure:
        tls_lab(tls, **sections)
    assert message in str(failure.value)


def test_explicit_sentry_tls_in_a_tls_lab_is_kept() -> None:
    config = tls_lab(True, sentry={"tls": {"device": {"enabled": True}}})
    assert config.sentry.tls.device.enabled
    assert not config.sentry.tls.admin.enabled  # the file said so
    assert config.uem.tls.api.enabled


# -- a running TLS lab ----------------------------------------------------------------------


async def test_ready_payload_has_https_urls_and_names_the_root_file() -> None:
    async with asyncio.timeout(20), Lab(tls_lab(), dashboard=False) as lab:
        payload = lab.ready_payload()
        for key in ("sentry_url", "sentry_admin_url", "uem_url", "uem_admin_url"):
            assert payload[key].startswith("https://127.0.0.1:"), key
        assert payload["exchange_url"].startswith("http://")  # the upstream stays plain
        root = Path(payload["tls_root"])
        assert root.read_bytes() == lab.tls_root_pem  # noqa: ASYNC240 - a small local file
        assert lab.hierarchy is not None
        assert lab.tls_root_path == root
    assert not root.exists()  # noqa: ASYNC240 - the temporary directory went with the lab


async def test_root_file_goes_where_asked_and_stays(tmp_path: Path) -> None:
    target = tmp_path / "root.pem"
    async with asyncio.timeout(20), Lab(tls_lab(), dashboard=False, tls_root_file=target) as lab:
        assert lab.ready_payload()["tls_root"] == str(target)
        lines = cli_lab.describe(lab, tmp_path / "ready.json", token_given=False)
    assert target.exists()
    text = "\n".join(lines)
    assert f"TLS root (trust it)   {target}" in text
    assert "https://127.0.0.1:" in text
    assert "client certificates" not in text


async def test_plain_lab_has_no_tls_and_refuses_identities() -> None:
    async with asyncio.timeout(20), Lab(LabConfig.default(), dashboard=False) as lab:
        assert lab.tls_root_pem is None
        assert lab.hierarchy is None
        assert "tls_root" not in lab.ready_payload()
        with pytest.raises(LabError, match="the lab runs without TLS"):
            lab.device_identity("alice", "ALICEIPHONE01")


async def test_onboarding_over_tls_and_an_admin_block_pushed_over_tls_reaches_the_device() -> None:
    async with asyncio.timeout(30), Lab(tls_lab(), dashboard=False) as lab:
        # The gatekeeper reached the UEM over https (trusting only the root) and registered
        # its https push URL.
        assert lab.sentry.registered
        phone = lab.device("alice", "ALICEIPHONE01")
        report = await phone.run_script(ONBOARD)
        assert report.succeeded, report
        record = await lab.sentry_record("alice", "ALICEIPHONE01")
        assert record is not None
        assert lab.sentry_state("alice", "ALICEIPHONE01") == "allowed"
        view = await lab.eas_devices()
        assert view["counts"]["registered_allowed"] == 1
        # A UEM admin action: the UEM pushes it to the gatekeeper's admin port over TLS.
        await lab.admin_action("alice", "ALICEIPHONE01", "block", "TLS test")
        await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "blocked", within=5)
        after = await phone.run_script([Sync()])
        assert after.blocked


async def test_device_with_another_labs_root_fails_with_the_clear_message() -> None:
    stranger = make_hierarchy("another lab")
    async with asyncio.timeout(20), Lab(tls_lab(), dashboard=False) as lab:
        runner = DeviceRunner(
            DeviceClient(lab.identity("alice", "ALICEIPHONE01")),
            AiohttpTransport(
                lab.session, lab.sentry_url, tls=DeviceTls.from_root(stranger.root_pem())
            ),
            lab.clock,
            request_timeout=5,
        )
        report = await runner.run_script(ONBOARD)
        assert lab.sentry_state("alice", "ALICEIPHONE01") is None  # never past the handshake
        url = lab.sentry_url
    assert report.error == (
        f"TLS: certificate verify failed for {url} — does --ca name the lab's "
        "root? (OpenSSL: unable to get local issuer certificate)"
    )


async def test_the_lab_session_trusts_only_its_root() -> None:
    async with asyncio.timeout(20), Lab(tls_lab(), dashboard=False) as lab:
        # The system store does not know the lab's root ...
        async with aiohttp.ClientSession() as outsider:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await outsider.get(lab.uem_admin_url + "/api/v1/eas/devices")
        # ... the lab's own session does, and one built from tls_root_pem too.
        assert (await lab.eas_devices())["counts"]["wiped"] == 0
        context = lab.client_context()
        assert isinstance(context, ssl.SSLContext)
        headers = {"Authorization": f"Bearer {lab.admin_token}"}
        async with (
            aiohttp.ClientSession() as mine,
            mine.get(lab.sentry_admin_url + "/api/stats", headers=headers, ssl=context) as ok,
        ):
            assert ok.status == 200


async def test_mutual_tls_required_lets_the_right_identity_in_and_refuses_another_users() -> None:
    config = tls_lab({"client_certificates": "required"})
    async with asyncio.timeout(30), Lab(config, dashboard=False) as lab:
        alice_cert = lab.device_identity("alice", "ALICEIPHONE01")
        phone = lab.device("alice", "ALICEIPHONE01", client_certificate=alice_cert)
        assert (await phone.run_script(ONBOARD)).succeeded
        # Carol's phone presenting Alice's certificate: refused with the reason.
        borrowed = lab.device("carol", "CAROLPHONE01", client_certificate=alice_cert)
        refused = await borrowed.run_script([Provision()])
        assert refused.blocked
        assert refused.block is not None
        assert refused.block.code == 403
        assert lab.sentry_state("carol", "CAROLPHONE01") is None
        events = await lab.sentry_events()
        denied = [e for e in events if e.get("event") == "request_denied"]
        assert any(e.get("why") == "client_certificate" for e in denied), denied
        # No certificate at all: the handshake fails and the device is told why.
        bare = lab.device("bob", "BOBPIXEL01")
        failed = await bare.run_script([Provision()])
        assert failed.error is not None
        assert "Lab.device_identity" in failed.error


async def test_mutual_tls_optional_still_admits_a_device_without_a_certificate() -> None:
    config = tls_lab({"client_certificates": "optional"})
    async with asyncio.timeout(30), Lab(config, dashboard=False) as lab:
        assert (await lab.device("alice", "ALICEIPHONE01").run_script(ONBOARD)).succeeded
        lines = cli_lab.describe(lab, None, token_given=False)
        assert any("optional on the gatekeeper's device port" in line for line in lines)


# -- the UEM's listeners warn like start_site --------------------------------------------------


async def test_uem_listeners_give_the_exposure_warning_with_admin_wording(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[str, int, bool]] = []

    def as_if_exposed(host: str, port: int, *, admin: bool) -> str | None:
        # The lab binds loopback only; the warning is checked as if the bind were 0.0.0.0.
        calls.append((host, port, admin))
        return warn_if_exposed("0.0.0.0", port, admin=admin)

    monkeypatch.setattr(lab_module, "warn_if_exposed", as_if_exposed)
    async with asyncio.timeout(20), Lab(LabConfig.default(), dashboard=False) as lab:
        ports = [int(url.rsplit(":", 1)[1]) for url in (lab.uem_url, lab.uem_admin_url)]
        await lab.uem_offline()
        await lab.uem_online()  # listening again after an outage does not warn again
    # One app serves both ports and guards its admin routes on either: admin wording twice.
    assert calls == [("127.0.0.1", ports[0], True), ("127.0.0.1", ports[1], True)]
    err = capsys.readouterr().err
    for port in ports:
        assert f"WARNING: listening on every interface (0.0.0.0:{port})" in err
    assert err.count("admin API exposed beyond this machine") == 2


def test_the_real_warning_stays_quiet_for_loopback() -> None:
    stream = io.StringIO()
    assert warn_if_exposed("127.0.0.1", 8443, admin=True, stream=stream) is None
    assert stream.getvalue() == ""
