"""The fast lane's cheap request-line reading agrees with ``parse_request`` whenever it answers.

``read_line`` may say "not sure" (None) as often as it likes: the full path then parses. What
it must never do is name another record or command than the full parser would, or answer for
a request line the full parser refuses.
"""

from __future__ import annotations

import base64
import string
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.roots import COMMANDS
from activesync.errors import QueryError
from activesync.query import ENDPOINT, EasRequest, parse_request
from activesync.versions import ProtocolVersion
from sentry_sim.device_list import record_key
from sentry_sim.lane.request_line import basic_user, read_line

ALNUM = string.ascii_letters + string.digits
device_ids = st.text(alphabet=ALNUM, min_size=1, max_size=32)
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
credentials = st.none() | st.builds(
    lambda user, password: "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
    users,
    st.text(alphabet=ALNUM, max_size=8),
)


@st.composite
def command_and_version(draw: st.DrawFn, base64_form: bool) -> tuple[str, ProtocolVersion]:
    versions = [v for v in ProtocolVersion if v.allows_base64_query or not base64_form]
    version = draw(st.sampled_from(versions))
    usable = [
        c.name for c in COMMANDS if c.supports(version) and (c.code is not None or not base64_form)
    ]
    return draw(st.sampled_from(usable)), version


def full(target: str, version: str | None, authorization: str | None) -> EasRequest | None:
    """What the full path reads, or None when it refuses the request."""
    path, _, query = target.partition("?")
    headers = {}
    if version is not None:
        headers["MS-ASProtocolVersion"] = version
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        return parse_request("POST", path, query, headers)
    except QueryError:
        return None


def assert_agrees(target: str, version: str | None, authorization: str | None) -> None:
    line = read_line(target, version, authorization)
    if line is None:
        return
    parsed = full(target, version, authorization)
    assert parsed is not None, f"the lane read {target!r}, the full parser refuses it"
    assert parsed.user is not None
    assert line.key == record_key(parsed.user, parsed.device_id)
    assert line.command == parsed.command
    assert line.form == parsed.form
    assert line.policy_key_param == (parsed.param("PolicyKey") is not None)


@given(
    command_and_version(base64_form=False),
    users,
    device_ids,
    device_types,
    st.lists(st.tuples(st.sampled_from(["PolicyKey", "SaveInSent", "X"]), st.text(max_size=6))),
    credentials,
)
def test_plain_requests_read_like_the_full_parser(
    cv: tuple[str, ProtocolVersion],
    user: str,
    device_id: str,
    device_type: str,
    extra: list[tuple[str, str]],
    authorization: str | None,
) -> None:
    command, version = cv
    pairs = [("Cmd", command), ("User", user), ("DeviceId", device_id)]
    pairs += [("DeviceType", device_type), *extra]
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs)
    target = f"{ENDPOINT}?{query}"
    assert_agrees(target, version.text, authorization)
    if not extra and user.isprintable():
        # The common shape is read by the lane itself, not left to the full path.
        line = read_line(target, version.text, authorization)
        assert line is not None
        assert line.key == record_key(user, device_id)


@given(
    command_and_version(base64_form=True),
    st.none() | users,
    st.binary(min_size=1, max_size=16),
    device_types,
    st.none() | st.integers(min_value=0, max_value=0xFFFF_FFFF),
    credentials,
)
def test_base64_requests_read_like_the_full_parser(
    cv: tuple[str, ProtocolVersion],
    user: str | None,
    device_id: bytes,
    device_type: str,
    policy_key: int | None,
    authorization: str | None,
) -> None:
    command, version = cv
    req = EasRequest.create(
        command=command,
        device_id=device_id,
        device_type=device_type,
        version=version,
        form="base64",
        user=user,
        policy_key=policy_key,
    )
    query, _ = req.wire()
    assert_agrees(f"{ENDPOINT}?{query}", None, authorization)
    assert_agrees(f"{ENDPOINT}?{quote(query, safe='')}", None, authorization)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120))
def test_arbitrary_queries_never_disagree(query: str) -> None:
    assert_agrees(f"{ENDPOINT}?{query}", "14.1", None)


@given(st.data())
def test_mutated_request_lines_never_disagree(data: st.DataObject) -> None:
    base = (
        f"{ENDPOINT}?Cmd=Sync&User=CONTOSO%5Calice&DeviceId=ABC123&DeviceType=iPhone"
        if data.draw(st.booleans())
        else f"{ENDPOINT}?"
        + EasRequest.create(
            command="Sync",
            device_id="ABC123",
            device_type="iPhone",
            version="14.1",
            form="base64",
            user="alice",
            policy_key=7,
        ).wire()[0]
    )
    raw = list(base)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.sampled_from(string.printable[:94]))
    version = data.draw(st.sampled_from(["14.1", "12.1", "2.5", "16.1", "99", None]))
    authorization = data.draw(st.sampled_from([None, "Basic !!!", "Basic YWxpY2U=", "Bearer x"]))
    assert_agrees("".join(raw), version, authorization)


def test_domain_user_and_case_map_to_one_record() -> None:
    a = read_line(
        f"{ENDPOINT}?Cmd=Sync&User=CONTOSO%5CAlice&DeviceId=ABC&DeviceType=iPhone", "14.1", None
    )
    b = read_line(f"{ENDPOINT}?cmd=sync&user=alice&deviceid=abc&devicetype=iPhone", "14.1", None)
    assert a is not None
    assert b is not None
    assert a.key == b.key == "alice/abc"


def test_unsure_cases_are_left_to_the_full_path() -> None:
    target = f"{ENDPOINT}?Cmd=Sync&User=alice&DeviceId=ABC&DeviceType=iPhone"
    assert read_line(target, None, None) is None  # no MS-ASProtocolVersion header
    assert read_line(target, "14.1", "Basic %%%") is None  # credentials the parser refuses
    assert read_line(target + "&User=bob", "14.1", None) is None  # a parameter twice
    assert read_line("/other?Cmd=Sync", "14.1", None) is None
    no_user = f"{ENDPOINT}?Cmd=Sync&DeviceId=ABC&DeviceType=iPhone"
    assert read_line(no_user, "14.1", "Basic YWxpY2U6cHc=") is None  # user only in credentials


def test_basic_credentials_are_read_as_the_full_parser_reads_them() -> None:
    assert basic_user("Basic YWxpY2U6cHc=") == (True, "alice")
    assert basic_user("Bearer abc") == (True, None)
    assert basic_user("Basic YWxpY2U=") == (False, None)  # no ':'
    assert basic_user("Basic !!") == (False, None)
