"""Property tests of the request line: round trips and mutated input."""

from __future__ import annotations

import base64
import contextlib
import string

from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.roots import COMMANDS
from activesync.errors import QueryError
from activesync.query import ENDPOINT, PARAM_TAGS, EasRequest, parse_request
from activesync.versions import ProtocolVersion

ALNUM = string.ascii_letters + string.digits
device_ids = st.text(alphabet=ALNUM, min_size=1, max_size=32)
binary_ids = st.binary(min_size=1, max_size=16)
device_types = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="-"),
    min_size=1,
    max_size=32,
)
users = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=40,
)
keys = st.none() | st.integers(min_value=0, max_value=0xFFFF_FFFF)
param_names = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12).filter(
    lambda n: n.lower() not in {"cmd", "user", "deviceid", "devicetype", "saveinsent"}
)
plain_params = st.lists(st.tuples(param_names, st.text(max_size=20)), max_size=4)
tagged_params = st.lists(
    st.tuples(
        st.sampled_from([n for n in PARAM_TAGS.values() if n not in ("User", "Options")]),
        st.text(max_size=30),
    ),
    max_size=4,
)


@st.composite
def command_and_version(draw: st.DrawFn, base64_form: bool) -> tuple[str, ProtocolVersion]:
    versions = [v for v in ProtocolVersion if v.allows_base64_query or not base64_form]
    version = draw(st.sampled_from(versions))
    usable = [
        c.name for c in COMMANDS if c.supports(version) and (c.code is not None or not base64_form)
    ]
    return draw(st.sampled_from(usable)), version


def reparse(req: EasRequest) -> EasRequest:
    query, headers = req.wire()
    return parse_request("POST", ENDPOINT, query, dict(headers))


@given(
    command_and_version(base64_form=False),
    device_ids,
    device_types,
    st.none() | users,
    keys,
    plain_params,
    st.booleans(),
    st.booleans(),
)
def test_plain_round_trip(
    cv: tuple[str, ProtocolVersion],
    device_id: str,
    device_type: str,
    user: str | None,
    key: int | None,
    params: list[tuple[str, str]],
    save: bool,
    multipart: bool,
) -> None:
    command, version = cv
    req = EasRequest.create(
        command=command,
        device_id=device_id,
        device_type=device_type,
        version=version,
        user=user,
        policy_key=key,
        params=params,
        save_in_sent=save,
        accept_multipart=multipart,
    )
    assert (req.command, req.form, req.protocol_version) == (command, "plain", version)
    assert (req.device_id, req.device_type, req.user) == (device_id, device_type, user)
    assert (req.policy_key, req.save_in_sent, req.accept_multipart) == (key, save, multipart)
    assert req.locale is None
    for name, value in params:
        assert req.param(name) is not None
        assert (name, value) in req.params
    assert reparse(req) == req


@given(
    command_and_version(base64_form=True),
    device_ids | binary_ids,
    device_types,
    st.none() | users,
    keys,
    st.integers(min_value=0, max_value=0xFFFF),
    tagged_params,
    st.booleans(),
    st.booleans(),
)
def test_base64_round_trip(
    cv: tuple[str, ProtocolVersion],
    device_id: str | bytes,
    device_type: str,
    user: str | None,
    key: int | None,
    locale: int,
    params: list[tuple[str, str]],
    save: bool,
    multipart: bool,
) -> None:
    command, version = cv
    req = EasRequest.create(
        command=command,
        device_id=device_id,
        device_type=device_type,
        version=version,
        form="base64",
        user=user,
        policy_key=key,
        locale=locale,
        params=params,
        save_in_sent=save,
        accept_multipart=multipart,
    )
    raw = device_id if isinstance(device_id, bytes) else device_id.encode("ascii")
    assert (req.command, req.form, req.protocol_version, req.locale) == (
        command,
        "base64",
        version,
        locale,
    )
    assert req.device_id_bytes == raw
    assert req.device_id == (
        raw.decode() if raw.isascii() and raw.decode().isalnum() else raw.hex()
    )
    assert (req.device_type, req.user, req.policy_key) == (device_type, user, key)
    assert (req.save_in_sent, req.accept_multipart) == (save, multipart)
    assert [p for p in req.params if p[0] not in ("User", "Options")] == params
    assert reparse(req) == req


def only_query_errors(query: str, headers: dict[str, str]) -> None:
    with contextlib.suppress(QueryError):
        parse_request("POST", ENDPOINT, query, headers)


@given(st.binary(max_size=80))
def test_arbitrary_base64_bytes_only_raise_query_error(data: bytes) -> None:
    only_query_errors(base64.b64encode(data).decode(), {})


@given(st.data())
def test_mutated_base64_query_only_raises_query_error(data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"))
    raw += data.draw(st.binary(max_size=12))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    only_query_errors(base64.b64encode(bytes(raw[:cut])).decode(), {})


@given(st.text(max_size=120), st.text(max_size=20), st.text(max_size=20))
def test_arbitrary_text_queries_and_headers_only_raise_query_error(
    query: str, version: str, auth: str
) -> None:
    only_query_errors(query, {"MS-ASProtocolVersion": version, "Authorization": auth})


@given(st.data())
def test_mutated_plain_query_only_raises_query_error(data: st.DataObject) -> None:
    query = list("Cmd=Sync&User=rm%40x.com&DeviceId=v140Device&DeviceType=SmartPhone")
    alphabet = "=&%5A@Cmd\\-\x00é+/"
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(query) - 1))
        query[at] = data.draw(st.sampled_from(alphabet))
    only_query_errors("".join(query), {"MS-ASProtocolVersion": "14.0"})
