"""A phone's ``client_certificate:`` (mutual TLS): how it is read, every mistake named with the
file, the device and the field, and a run in which a per-user certificate admits a device."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.runner import render_failures, run_scenario
from scenarios.spec import load_scenario, parse_scenario
from scenarios.spec_read import ScenarioError
from scenarios.spec_steps import ClientCertificate

USERS = [
    {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
    {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
]
MTLS = {"tls": {"client_certificates": "required"}}


def write(tmp_path: Path, tls: str, devices: str) -> Path:
    """A scenario file with an inline lab (``lab: {tls: ...}``) and the given devices (line 7
    is the first device's)."""
    text = (
        "lab:\n"
        "  users:\n"
        "    - {name: alice, email: alice@example.com, password: alice-pass}\n"
        "    - {name: bob, email: bob@example.com, password: bob-pass}\n"
        f"  lab: {{tls: {tls}}}\n"
        "devices:\n" + textwrap.indent(textwrap.dedent(devices), "  ") + "steps:\n"
        "  - connect: alice-phone\n"
    )
    path = tmp_path / "mtls.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, tls: str, devices: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, tls, devices))
    return info.value


def test_certificate_for_a_user_and_device_is_read(tmp_path: Path) -> None:
    devices = """\
        alice-phone:
          user: alice
          device_id: ALICEIPHONE01
          client_certificate: {user: alice, device_id: ALICEIPHONE01}
        """
    scenario = load_scenario(write(tmp_path, "{client_certificates: required}", devices))
    spec = scenario.devices["alice-phone"]
    assert spec.client_certificate == ClientCertificate("alice", "ALICEIPHONE01")
    assert spec.client_certificate.label == "alice (device ALICEIPHONE01)"


def test_certificate_without_device_id_is_a_per_user_one(tmp_path: Path) -> None:
    devices = """\
        alice-phone: {user: alice, device_id: A1, client_certificate: {user: bob}}
        """
    scenario = load_scenario(write(tmp_path, "{client_certificates: optional}", devices))
    certificate = scenario.devices["alice-phone"].client_certificate
    assert certificate == ClientCertificate("bob", None)
    assert certificate.label == "bob (any device)"


@pytest.mark.parametrize("value", ["none", "null"])
def test_none_means_the_phone_holds_no_certificate_even_without_tls(
    tmp_path: Path, value: str
) -> None:
    devices = f"alice-phone: {{user: alice, device_id: A1, client_certificate: {value}}}\n"
    scenario = load_scenario(write(tmp_path, "false", devices))
    assert scenario.devices["alice-phone"].client_certificate is None


def test_certificate_in_a_lab_without_tls_says_to_set_lab_tls(tmp_path: Path) -> None:
    devices = """\
        alice-phone:
          user: alice
          device_id: A1
          client_certificate: {user: alice}
        """
    err = error_of(tmp_path, "false", devices)
    assert err.path == "devices.alice-phone.client_certificate"
    assert "needs a TLS lab" in err.problem
    assert "lab.tls: {client_certificates: required}" in err.hint
    assert err.line == 10
    assert str(err).startswith(f"{tmp_path / 'mtls.yaml'}: devices.alice-phone.client_certificate:")


def test_certificate_when_the_gatekeeper_does_not_ask_for_one_is_an_error(tmp_path: Path) -> None:
    devices = "alice-phone: {user: alice, device_id: A1, client_certificate: {user: alice}}\n"
    err = error_of(tmp_path, "true", devices)
    assert err.path == "devices.alice-phone.client_certificate"
    assert "does not ask for client certificates" in err.problem
    assert "client_certificates: required" in err.hint


def test_certificate_in_a_lab_file_with_tls_through_lab_overrides(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(
        "users:\n  - {name: alice, email: alice@example.com, password: p}\n", "utf-8"
    )
    path = tmp_path / "s.yaml"
    path.write_text(
        "lab: lab.yaml\n"
        "lab_overrides: {lab: {tls: {client_certificates: required}}}\n"
        "devices:\n"
        "  alice-phone: {user: alice, device_id: A1, client_certificate: {user: alice}}\n"
        "steps: [{connect: alice-phone}]\n",
        encoding="utf-8",
    )
    assert load_scenario(path).devices["alice-phone"].client_certificate == (
        ClientCertificate("alice")
    )


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ("alice", "client_certificate", "expected none or a mapping like {user: alice"),
        ("true", "client_certificate", "expected none or a mapping"),
        ("{}", "client_certificate.user", "missing (required)"),
        ("{device_id: A1}", "client_certificate.user", "missing (required)"),
        (
            "{user: alice, devise_id: A1}",
            "client_certificate.devise_id",
            'did you mean "device_id"',
        ),
        ("{user: 17}", "client_certificate.user", "expected a user's login"),
        ("{user: '" + "a" * 65 + "'}", "client_certificate.user", "at most 64 characters"),
        ("{user: alice, device_id: A-1}", "client_certificate.device_id", "1-32 letters"),
        ("{user: alice, device_id: null}", "client_certificate.device_id", "got null"),
    ],
)
def test_malformed_certificate_names_the_field(
    tmp_path: Path, value: str, path: str, fragment: str
) -> None:
    devices = f"alice-phone: {{user: alice, device_id: A1, client_certificate: {value}}}\n"
    err = error_of(tmp_path, "{client_certificates: required}", devices)
    assert err.path == f"devices.alice-phone.{path}"
    assert fragment in str(err)
    assert err.line == 7


@given(
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.sampled_from(["none", "alice", "A1", "", "x" * 70, "a b"]),
        ),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["user", "device_id", "other"]), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    st.sampled_from([False, True, MTLS["tls"]]),
)
def test_any_certificate_value_parses_or_raises_scenario_error(value: object, tls: object) -> None:
    mapping: dict[str, Any] = {
        "lab": {"users": USERS, "lab": {"tls": tls}},
        "devices": {"p": {"user": "alice", "device_id": "A1", "client_certificate": value}},
        "steps": [{"connect": "p"}],
    }
    try:
        scenario = parse_scenario(mapping, "fuzz.yaml", base_dir=Path("."))
    except ScenarioError as exc:
        failed_at = exc.path
    else:
        failed_at = ""
    if failed_at:
        # The only field that varies is the certificate: every error is about it.
        assert failed_at.startswith("devices.p.client_certificate")
        return
    certificate = scenario.devices["p"].client_certificate
    assert certificate is None or (tls == MTLS["tls"] and isinstance(certificate.user, str))


async def test_per_user_certificate_admits_every_device_of_that_user_and_no_other() -> None:
    mapping = {
        "lab": {"users": USERS, "lab": MTLS},
        "devices": {
            "alice-phone": {
                "user": "alice",
                "device_id": "ALICEPHONE1",
                "client_certificate": {"user": "alice"},
            },
            "alice-ipad": {
                "user": "alice",
                "device_id": "ALICEIPAD1",
                "device_type": "iPad",
                "client_certificate": {"user": "alice"},
            },
            "bob-phone": {
                "user": "bob",
                "device_id": "BOBPHONE1",
                "client_certificate": {"user": "alice"},
            },
        },
        "steps": [
            {"connect": "alice-phone"},
            {"connect": "alice-ipad"},
            {"provision": "bob-phone"},
            {
                "expect": {
                    "device": [
                        {"device": "alice-phone", "saw": "allowed", "http": 200},
                        {"device": "alice-ipad", "saw": "allowed", "http": 200},
                        {"device": "bob-phone", "saw": "blocked", "http": 403},
                    ],
                    "gatekeeper": {"device": "bob-phone", "state": "absent"},
                    "events": {
                        "happened": [
                            {
                                "event": "request_denied",
                                "device": "bob-phone",
                                "where": {"why": "client_certificate", "command": "Provision"},
                                "count": 1,
                            }
                        ],
                        "not_happened": [{"event": "RequestDenied", "device": "alice-ipad"}],
                    },
                }
            },
        ],
    }
    scenario = parse_scenario(mapping, "per-user.yaml", base_dir=Path("."))
    lines: list[str] = []
    async with asyncio.timeout(30):
        result = await run_scenario(scenario, narrate=lines.append)
    assert result.passed, "\n".join(render_failures(result))
    assert any(
        "alice-ipad presents a client certificate for alice (any device)" in t for t in lines
    )
