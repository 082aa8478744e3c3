"""The pure parts of provisioning with the upstream: demands, request-line translation, answers,
and the gatekeeper's own answers never being an empty 200."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.answers import status_answer
from activesync.commands.provision import DeviceInformation, ProvisionRequest, ProvisionResponse
from activesync.commands.roots import COMMANDS, root_for
from activesync.query import EasRequest, parse_request
from activesync.status import Status
from activesync.versions import ProtocolVersion
from activesync.wbxml import E, decode, encode
from sentry_sim.config import BlockedResponse
from sentry_sim.gate import Access, Deny, DenyWhy
from sentry_sim.handlers import deny_answer, retry_answer
from sentry_sim.upstream_policy import (
    DEMAND_STATUSES,
    DeviceInformationBook,
    UpstreamKeys,
    ack_body,
    demand_of,
    initial_body,
    provision_line,
    read_phase,
    upstream_line,
)

V = ProtocolVersion
BODY_VERSIONS = (V.V14_0, V.V14_1, V.V16_0, V.V16_1)
DEVICE_COMMANDS = tuple(c.name for c in COMMANDS)


# --- demands ---------------------------------------------------------------------------------


def test_http_449_is_a_demand_whatever_the_body() -> None:
    assert demand_of(449, b"") == 449
    assert demand_of(449, b"anything") == 449


@pytest.mark.parametrize("version", BODY_VERSIONS)
@pytest.mark.parametrize("status", sorted(DEMAND_STATUSES))
def test_every_command_root_with_a_provisioning_status_is_a_demand(
    version: ProtocolVersion, status: int
) -> None:
    for command in DEVICE_COMMANDS:
        if root_for(command, version) is None:
            continue
        answer = status_answer(command, status, version)
        assert answer.http_status == 200
        assert demand_of(200, answer.body) == status, command


@pytest.mark.parametrize("status", [1, 3, 110, 126, 129, 140, 145, 177])
def test_other_statuses_are_no_demand(status: int) -> None:
    body = status_answer("FolderSync", status, V.V16_1).body or encode(
        E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "Status", text=status))
    )
    assert demand_of(200, body) is None


def test_a_status_142_nested_deeper_or_beside_other_children_is_no_demand() -> None:
    nested = E(
        "AirSync",
        "Sync",
        E("AirSync", "Collections", E("AirSync", "Collection", E("AirSync", "Status", text=142))),
    )
    beside = E(
        "FolderHierarchy",
        "FolderSync",
        E("FolderHierarchy", "Status", text=142),
        E("FolderHierarchy", "SyncKey", text="1"),
    )
    assert demand_of(200, encode(nested)) is None
    assert demand_of(200, encode(beside)) is None


def test_bodies_that_are_not_small_wbxml_are_no_demand() -> None:
    assert demand_of(200, b"") is None
    assert demand_of(200, b"upstream:hello") is None
    big = status_answer("Sync", 142, V.V16_1).body + b"\x00" * 100
    assert demand_of(200, big) is None
    assert demand_of(403, status_answer("Sync", 142, V.V16_1).body) is None


@given(st.binary(max_size=80))
def test_any_small_body_never_raises(body: bytes) -> None:
    found = demand_of(200, body)
    assert found is None or found in DEMAND_STATUSES


# --- request-line translation ---------------------------------------------------------------


def _b64_bytes(raw_path: str) -> bytes:
    query = raw_path.partition("?")[2]
    return base64.b64decode(query + "=" * (-len(query) % 4))


def _key_field(data: bytes) -> tuple[int, int]:
    """(offset, length) of the policy key field, length byte included (MS-ASHTTP 2.2.1.1.1.1)."""
    at = 5 + data[4]
    return at, 1 + data[at]


def _spliced(data: bytes, key: int | None) -> bytes:
    at, size = _key_field(data)
    field = b"\x00" if key is None else b"\x04" + struct.pack("<I", key)
    return data[:at] + field + data[at + size :]


keys = st.none() | st.integers(min_value=1, max_value=0xFFFF_FFFF)
texts = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=20,
)


@given(
    device_id=st.binary(min_size=1, max_size=16).filter(lambda b: len(b.hex()) <= 32),
    device_key=keys,
    upstream_key=keys,
    version=st.sampled_from([V.V12_1, *BODY_VERSIONS]),
    locale=st.integers(min_value=0, max_value=0xFFFF),
    user=st.none() | texts,
    params=st.lists(
        st.sampled_from(["CollectionId", "ItemId", "LongId"]).flatmap(
            lambda name: texts.map(lambda value: (name, value))
        ),
        max_size=3,
    ),
    options=st.integers(min_value=0, max_value=3),
    force=st.booleans(),
)
def test_base64_query_keeps_every_byte_but_the_key_field(
    device_id: bytes,
    device_key: int | None,
    upstream_key: int | None,
    version: ProtocolVersion,
    locale: int,
    user: str | None,
    params: list[tuple[str, str]],
    options: int,
    force: bool,
) -> None:
    eas = EasRequest.create(
        command="SmartReply",
        device_id=device_id,
        device_type="iPhone",
        version=version,
        form="base64",
        user=user,
        policy_key=device_key,
        locale=locale,
        params=params,
        save_in_sent=bool(options & 1),
        accept_multipart=bool(options & 2),
    )
    query, _ = eas.wire()
    raw_path = "/Microsoft-Server-ActiveSync?" + query
    line = upstream_line(eas, raw_path, upstream_key, force=force)
    sent = upstream_key if (device_key is not None or force) else None
    assert _b64_bytes(line.raw_path) == _spliced(_b64_bytes(raw_path), sent)
    assert line.set_headers == ()
    assert line.drop_headers == ("X-MS-PolicyKey",)
    again = parse_request(
        "POST", "/Microsoft-Server-ActiveSync", line.raw_path.partition("?")[2], {}
    )
    assert again.policy_key == sent
    assert (again.params, again.device_id_bytes, again.locale) == (
        eas.params,
        eas.device_id_bytes,
        eas.locale,
    )


def _plain(query: str, **headers: str) -> EasRequest:
    return parse_request("POST", "/Microsoft-Server-ActiveSync", query, headers)


def test_plain_request_gets_the_upstream_key_in_place_of_the_device_key() -> None:
    query = "Cmd=Sync&User=alice&DeviceId=D1&DeviceType=iPhone&Extra=a%20b"
    eas = _plain(query, **{"MS-ASProtocolVersion": "14.1", "X-MS-PolicyKey": "111"})
    raw_path = "/Microsoft-Server-ActiveSync?" + query
    line = upstream_line(eas, raw_path, 999)
    assert line.raw_path == raw_path
    assert line.set_headers == (("X-MS-PolicyKey", "999"),)
    assert line.drop_headers == ("X-MS-PolicyKey",)
    # No upstream key yet: the device's key is dropped and none put in its place.
    assert upstream_line(eas, raw_path, None).set_headers == ()


def test_plain_request_without_a_key_gets_none_unless_forced() -> None:
    query = "Cmd=Ping&User=alice&DeviceId=D1&DeviceType=iPhone"
    eas = _plain(query, **{"MS-ASProtocolVersion": "14.1"})
    raw_path = "/Microsoft-Server-ActiveSync?" + query
    assert upstream_line(eas, raw_path, 999).set_headers == ()
    assert upstream_line(eas, raw_path, 999, force=True).set_headers == (("X-MS-PolicyKey", "999"),)


def test_policy_key_query_parameter_is_removed_and_the_rest_kept_byte_for_byte() -> None:
    query = "Cmd=Sync&User=a%40b&policykey=5&DeviceId=D1&DeviceType=iPhone&X=%2F"
    eas = _plain(query, **{"MS-ASProtocolVersion": "12.1"})
    line = upstream_line(eas, "/Microsoft-Server-ActiveSync?" + query, 77)
    assert line.raw_path == (
        "/Microsoft-Server-ActiveSync?Cmd=Sync&User=a%40b&DeviceId=D1&DeviceType=iPhone&X=%2F"
    )
    assert line.set_headers == (("X-MS-PolicyKey", "77"),)


@pytest.mark.parametrize("form", ["plain", "base64"])
def test_provision_line_speaks_as_the_device(form: str) -> None:
    eas = EasRequest.create(
        command="FolderSync",
        device_id="Dev1",
        device_type="iPhone",
        version="14.1",
        form=form,  # type: ignore[arg-type]
        user="alice",
        policy_key=42,
    )
    query, _ = eas.wire()
    line = provision_line(eas, "/Microsoft-Server-ActiveSync?" + query, 0)
    headers = dict(line.set_headers)
    again = parse_request(
        "POST", "/Microsoft-Server-ActiveSync", line.raw_path.partition("?")[2], headers
    )
    assert (again.command, again.device_id, again.device_type, again.user) == (
        "Provision",
        "Dev1",
        "iPhone",
        "alice",
    )
    assert again.form == form
    assert again.policy_key == 0
    assert again.protocol_version == V.V14_1


def test_provision_bodies_follow_the_version_rules() -> None:
    info = DeviceInformation(model="iPhone15,2")
    assert ProvisionRequest.from_element(decode(initial_body(V.V14_1, info))) == (
        ProvisionRequest.initial(V.V14_1, info)
    )
    # MS-ASPROV 2.2.2.53: no DeviceInformation below 14.1.
    assert ProvisionRequest.from_element(decode(initial_body(V.V14_0, info))) == (
        ProvisionRequest.initial(V.V14_0)
    )
    ack = ProvisionRequest.from_element(decode(ack_body(V.V12_1, 1234)))
    assert (ack.policy_key, ack.status) == ("1234", 1)


# --- reading the upstream's Provision answers ---------------------------------------------


def _answer(response: ProvisionResponse) -> bytes:
    return encode(response.to_element())


def test_read_phase_gives_the_key_or_says_why_not() -> None:
    good = ProvisionResponse.acknowledged(version=V.V16_1, policy_key=4321)
    assert read_phase("acknowledgement", 200, _answer(good)) == 4321
    assert "HTTP 401" in str(read_phase("policy", 401, b""))
    wipe = ProvisionResponse.wipe_directive(version=V.V16_1)
    assert "remote wipe" in str(read_phase("policy", 200, _answer(wipe)))
    refused = ProvisionResponse.failure(165)
    assert "Provision Status 165" in str(read_phase("policy", 200, _answer(refused)))
    wrong = ProvisionResponse.wrong_key(version=V.V16_1)
    assert "Policy Status 5" in str(read_phase("acknowledgement", 200, _answer(wrong)))
    assert "unreadable" in str(read_phase("policy", 200, b"not wbxml"))


def test_upstream_keys_and_device_information_book() -> None:
    keys = UpstreamKeys()
    assert keys.load([("alice/d1", 7, 1.0)]) == 1
    keys.set("bob/d2", 9, 2.0)
    assert (keys.get("alice/d1"), keys.get("bob/d2"), keys.get("x/y"), len(keys)) == (
        7,
        9,
        None,
        2,
    )
    assert keys.issued_at("bob/d2") == 2.0
    book = DeviceInformationBook(limit=1)
    book.remember("alice/d1", DeviceInformation(model="A"))
    book.remember("bob/d2", DeviceInformation(model="B"))
    assert book.for_upstream("bob/d2", "iPhone", "ua").model == "B"
    fallback = book.for_upstream("alice/d1", "iPhone", "ua")  # dropped: over the limit
    assert (fallback.model, fallback.user_agent) == ("iPhone", "ua")


# --- the gatekeeper's own answers -----------------------------------------------------------


def _access(command: str, version: ProtocolVersion, key: int | None) -> Access:
    return Access.create(
        user="alice",
        device_id="D1",
        device_type="iPhone",
        command=command,
        version=version,
        policy_key=key,
    )


_DENIALS = (
    Deny(DenyWhy.BLOCKED, Status.DeviceIsBlockedForThisUser),
    Deny(DenyWhy.MAILBOX_LIMIT, Status.MaximumDevicesReached, 0x80),
    Deny(DenyWhy.UNREACHABLE_BLOCK, Status.DeviceIsBlockedForThisUser),
    Deny(DenyWhy.WIPE_PENDING, Status.RemoteWipeRequested),
    Deny(DenyWhy.PROVISIONING_NEEDED, Status.DeviceNotProvisioned),
    Deny(DenyWhy.PROVISIONING_NEEDED, Status.InvalidPolicyKey),
)


@pytest.mark.parametrize("mode", list(BlockedResponse))
@pytest.mark.parametrize("version", list(ProtocolVersion))
def test_gatekeeper_answers_are_never_an_empty_200(
    mode: BlockedResponse, version: ProtocolVersion
) -> None:
    for command in DEVICE_COMMANDS:
        for key in (None, 5):
            access = _access(command, version, key)
            for deny in _DENIALS:
                answer = deny_answer(mode, access, deny)
                assert answer.http_status != 200 or answer.body, (command, deny)
            retry = retry_answer(access)
            assert retry.http_status != 200 or retry.body, command
            assert ("Retry-After", "1") in retry.headers
