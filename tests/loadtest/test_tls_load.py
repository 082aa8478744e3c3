"""Load over TLS: profile ``target.tls``, the ready file's ``tls_root``, a run against a TLS lab."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from labpki import Hierarchy, make_hierarchy
from loadtest.generator import Generator, GeneratorError, run_profile
from loadtest.locustfile import Settings
from loadtest.profiles import Profile, ProfileError, TargetKind, lab_config
from loadtest.results import Outcome
from loadtest.target import Target, TargetError, TlsFiles, read_ready_file
from loadtest.thresholds import evaluate
from scenarios.cli_load import LabFaults, lab_for
from scenarios.lab import LabConfig

SMOKE: dict[str, Any] = {
    "name": "tls-smoke",
    "target": {"lab": "default", "lab_settings": {"lab": {"tls": True}}},
    "model": {"open": {"rate": "50/s"}},
    "phases": [{"name": "steady", "duration": "1s"}],
    "population": {"registered": 6, "new": 3, "unregistered": 3},
    "workload": {"sync": 6, "foldersync": 1, "first_access": 2},
    "thresholds": [
        "error_rate < 0.001",
        {"decisions": {"registered": "allowed", "unregistered": "blocked"}},
    ],
    "options": {"timeout": "5s"},
}


@pytest.fixture(scope="module")
def ca() -> Hierarchy:
    return make_hierarchy("load tls test")


def profile_with(target: dict[str, Any]) -> Profile:
    return Profile.from_mapping({**SMOKE, "target": target}, "tls.yaml")


# -- the profile -------------------------------------------------------------------------------


def test_https_urls_with_a_root_are_accepted() -> None:
    profile = profile_with(
        {
            "sentry_url": "https://127.0.0.1:8443",
            "tls": {"ca": "root.pem", "client_cert": "me.pem", "client_key": "me.key"},
        }
    )
    tls = profile.target.tls
    assert tls is not None
    assert (tls.ca, tls.client_cert, tls.client_key) == ("root.pem", "me.pem", "me.key")
    assert tls.at("ca") == "tls.yaml: target.tls.ca"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"sentry_url": "https://127.0.0.1:8443"},
            "tls.yaml: target.tls: sentry_url is https://: give tls: {ca: ROOT.pem}",
        ),
        (
            {"sentry_url": "http://127.0.0.1:8443", "tls": {"ca": "root.pem"}},
            "tls.yaml: target.tls: sentry_url is plain http",
        ),
        ({"sentry_url": "https://127.0.0.1:1", "tls": {}}, "target.tls.ca: missing"),
        (
            {"sentry_url": "https://127.0.0.1:1", "tls": {"ca": "r.pem", "client_key": "k"}},
            "target.tls.client_key: needs client_cert",
        ),
        (
            {"sentry_url": "https://127.0.0.1:1", "tls": {"ca": "r.pem", "pin": "x"}},
            "target.tls.pin: unknown key",
        ),
        (
            {"lab": "default", "tls": {"ca": "r.pem"}},
            "target.tls: the embedded lab makes its own root",
        ),
        (
            {"sentry_url": "https://10.0.0.1:8443", "tls": {"ca": "r.pem"}},
            "10.0.0.1 is not a loopback address",
        ),
    ],
)
def test_bad_tls_targets_name_the_file_and_key(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as failure:
        profile_with(target)
    assert message in str(failure.value)


def test_the_embedded_lab_runs_with_tls_through_lab_settings() -> None:
    profile = Profile.from_mapping(SMOKE, "tls.yaml")
    config = lab_config(profile)
    assert config["lab"] == {"tls": True}
    assert LabConfig.from_mapping(config, "generated").lab.tls.enabled


def test_a_ready_file_override_keeps_the_profiles_root() -> None:
    profile = profile_with({"ready_file": "a.json", "tls": {"ca": "root.pem"}})
    moved = profile.with_overrides(ready_file="b.json")
    assert moved.target.kind is TargetKind.READY_FILE
    assert moved.target.ready_file == "b.json"
    assert moved.target.tls == profile.target.tls


# -- the files ---------------------------------------------------------------------------------


def test_a_ready_file_with_tls_root_names_the_root(tmp_path: Path, ca: Hierarchy) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_pem())
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"sentry_url": "https://127.0.0.1:1", "tls_root": str(root)}))
    target = read_ready_file(ready)
    assert target.tls is not None
    assert target.tls.at(target.tls.ca_key) == f"{ready}: tls_root"
    assert target.tls.load().context.get_ca_certs()[0]["subject"]
    with pytest.raises(TargetError, match=r"x.json: tls_root: expected the path of a PEM root"):
        Target.from_mapping({"sentry_url": "https://127.0.0.1:1", "tls_root": 7}, "x.json")


def test_tls_file_errors_name_the_setting_and_the_file(tmp_path: Path, ca: Hierarchy) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_pem())
    issued = ca.device_identity("ltreg000001")
    cert, key = tmp_path / "me.pem", tmp_path / "me.key"
    cert.write_bytes(issued.chain_pem())
    key.write_bytes(make_hierarchy("x").device_identity("y").key_pem())
    source = "tls.yaml: target.tls"
    with pytest.raises(TargetError, match=r"tls.yaml: target.tls.ca: .*gone.pem: cannot read"):
        TlsFiles(ca=str(tmp_path / "gone.pem"), source=source).load()
    with pytest.raises(TargetError, match=r"target.tls.client_key: .*me.key: the private key"):
        TlsFiles(ca=str(root), client_cert=str(cert), client_key=str(key), source=source).load()
    files = TlsFiles(ca=str(root), client_cert=str(cert), password_env="P12_PW", source=source)
    with pytest.raises(TargetError, match=r"target.tls.password_env: environment variable P12_PW"):
        files.load(environ={})


async def test_generator_refuses_https_without_a_root_and_a_root_for_plain_http() -> None:
    bare = Profile.from_mapping(
        {**SMOKE, "target": {"ready_file": "r.json"}, "thresholds": []}, "p.yaml"
    )
    https = Generator(bare, Target(sentry_url="https://127.0.0.1:1"))
    with pytest.raises(GeneratorError, match=r"p.yaml: target.tls: the target https://"):
        https.tls()
    rooted = profile_with({"ready_file": "r.json", "tls": {"ca": "root.pem"}})
    plain = Generator(rooted, Target(sentry_url="http://127.0.0.1:1"))
    with pytest.raises(GeneratorError, match=r"target.tls.ca: given, but the target"):
        plain.tls()


# -- runs --------------------------------------------------------------------------------------


async def test_smoke_run_against_a_tls_lab_trusting_only_its_root() -> None:
    profile = Profile.from_mapping(SMOKE, "tls.yaml")
    async with asyncio.timeout(60), lab_for(profile) as lab:
        payload = lab.ready_payload()
        assert payload["sentry_url"].startswith("https://")
        target = Target.from_mapping(payload, "the embedded lab")
        result = await run_profile(profile, target, lab=LabFaults(lab), lab_in_process=True)
    assert result.dispatched == 50
    assert result.overall.errors == 0
    assert result.warmup is not None
    assert result.warmup.ready == result.warmup.devices == 6
    assert result.ops["sync"].outcomes[Outcome.OK] > 0
    # Registered first accesses allowed, unregistered ones blocked: the UEM decided, so the
    # gatekeeper reached it over TLS.
    checks = evaluate(profile.rules, result)
    assert [c.passed for c in checks] == [True, True, True], checks


async def test_a_run_with_another_root_stops_at_warm_up_naming_the_setting(
    tmp_path: Path,
) -> None:
    stranger = tmp_path / "stranger-root.pem"
    stranger.write_bytes(make_hierarchy("not the lab").root_pem())
    profile = Profile.from_mapping(SMOKE, "tls.yaml")
    async with asyncio.timeout(60), lab_for(profile) as lab:
        url = lab.sentry_url
        wrong = profile_with({"sentry_url": url, "tls": {"ca": str(stranger)}})
        with pytest.raises(GeneratorError) as failure:
            await run_profile(wrong, Target(sentry_url=url))
    text = str(failure.value)
    assert "warm-up: none of the 6 registered devices became ready" in text
    assert f"TLS: certificate verify failed for {url}" in text
    assert f"does tls.yaml: target.tls.ca ({stranger}) name the lab's root?" in text


# -- Locust ------------------------------------------------------------------------------------


def test_locust_settings_read_the_root_and_client_files(tmp_path: Path, ca: Hierarchy) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(ca.root_pem())
    issued = ca.device_identity("ltreg000001")
    cert, key = tmp_path / "me.pem", tmp_path / "me.key"
    cert.write_bytes(issued.chain_pem())
    key.write_bytes(issued.key_pem())
    settings = Settings.from_environ(
        {
            "SENTRY_SIM_CA": str(root),
            "SENTRY_SIM_CLIENT_CERT": str(cert),
            "SENTRY_SIM_CLIENT_KEY": str(key),
        }
    )
    assert (settings.ca, settings.client_cert, settings.client_key) == (
        str(root),
        str(cert),
        str(key),
    )
    assert Settings.from_environ({}).ca is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SENTRY_SIM_CA": "/nowhere/root.pem"}, "SENTRY_SIM_CA: /nowhere/root.pem: cannot read"),
        ({"SENTRY_SIM_CLIENT_CERT": "c.pem"}, "give both"),
        (
            {"SENTRY_SIM_CLIENT_CERT": "c.pem", "SENTRY_SIM_CLIENT_KEY": "k.pem"},
            "SENTRY_SIM_CLIENT_CERT: needs SENTRY_SIM_CA",
        ),
    ],
)
def test_locust_settings_errors_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_environ(environ)
