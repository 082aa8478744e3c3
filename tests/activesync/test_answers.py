"""Error answers: exact bytes for every command root, and the per-version shape."""

from __future__ import annotations

import pytest

from activesync.answers import (
    WBXML_CONTENT_TYPE,
    EasAnswer,
    blocked_answer,
    device_limit_answer,
    provisioning_needed_answer,
    remote_wipe_needed_answer,
    status_answer,
)
from activesync.commands.roots import COMMANDS, ROOTS
from activesync.errors import QueryError
from activesync.versions import ALL_VERSIONS, ProtocolVersion
from activesync.wbxml import decode

V = ProtocolVersion

# (command, code page number, root token, Status token), from the MS-ASWBXML 2.1.2.1 tables
# written out independently of the codec under test.
ROOT_TOKENS = [
    ("Sync", 0, 0x05, 0x0E),
    ("SendMail", 21, 0x05, 0x12),
    ("SmartForward", 21, 0x06, 0x12),
    ("SmartReply", 21, 0x07, 0x12),
    ("FolderSync", 7, 0x16, 0x0C),
    ("FolderCreate", 7, 0x13, 0x0C),
    ("FolderDelete", 7, 0x14, 0x0C),
    ("FolderUpdate", 7, 0x15, 0x0C),
    ("MoveItems", 5, 0x05, 0x0B),
    ("GetItemEstimate", 6, 0x05, 0x0E),
    ("MeetingResponse", 8, 0x07, 0x0B),
    ("Search", 15, 0x05, 0x0C),
    ("Settings", 18, 0x05, 0x06),
    ("Ping", 13, 0x05, 0x07),
    ("ItemOperations", 20, 0x05, 0x0D),
    ("Provision", 14, 0x05, 0x0B),
    ("ResolveRecipients", 10, 0x05, 0x07),
    ("ValidateCert", 11, 0x05, 0x0A),
    ("Find", 25, 0x05, 0x0A),
]


def expected_body(page: int, root: int, status_tag: int, status: int) -> bytes:
    switch = b"" if page == 0 else bytes((0x00, page))
    digits = str(status).encode("ascii")
    return (
        b"\x03\x01\x6a\x00"
        + switch
        + bytes((root | 0x40, status_tag | 0x40, 0x03))
        + digits
        + b"\x00\x01\x01"
    )


def test_the_table_covers_every_command_root() -> None:
    assert len(ROOT_TOKENS) == len(ROOTS) == 19


def test_folder_sync_142_on_14_0_matches_the_ms_asprov_example() -> None:
    answer = status_answer("FolderSync", 142, V.V14_0)
    assert answer.body == bytes.fromhex("03016A000007564C0331343200 0101".replace(" ", ""))
    assert len(answer.body) == 15  # the example's Content-Length


def test_sync_129_is_the_documented_bytes() -> None:
    assert blocked_answer("Sync", V.V14_0).body == bytes.fromhex("03016A00454E03313239000101")


@pytest.mark.parametrize(("command", "page", "root", "status_tag"), ROOT_TOKENS)
@pytest.mark.parametrize("status", [129, 142, 177])
def test_exact_answer_bytes_for_every_root_on_16_1(
    command: str, page: int, root: int, status_tag: int, status: int
) -> None:
    answer = status_answer(command, status, V.V16_1)
    assert answer.http_status == 200
    assert answer.body == expected_body(page, root, status_tag, status)
    assert answer.headers == (("Content-Type", WBXML_CONTENT_TYPE),)
    tree = decode(answer.body)
    assert tree.child_text("Status") == str(status)


@pytest.mark.parametrize("version", [V.V2_5, V.V12_0, V.V12_1])
@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_blocked_below_14_0_is_403_with_empty_body(command: str, version: ProtocolVersion) -> None:
    answer = blocked_answer(command, version)
    assert answer == EasAnswer(http_status=403, body=b"", headers=(), eas_status=129)


@pytest.mark.parametrize("version", [V.V14_0, V.V14_1, V.V16_0, V.V16_1])
def test_blocked_from_14_0_is_200_with_status_129(version: ProtocolVersion) -> None:
    answer = blocked_answer("FolderSync", version)
    assert answer.http_status == 200
    assert answer.body == expected_body(7, 0x16, 0x0C, 129)
    assert answer.status_in_body


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_get_attachment_is_always_403(version: ProtocolVersion) -> None:
    assert blocked_answer("GetAttachment", version).http_status == 403
    assert blocked_answer("GetAttachment", version).body == b""


@pytest.mark.parametrize(
    ("version", "http"),
    [(V.V12_1, 403), (V.V14_0, 403), (V.V14_1, 200), (V.V16_0, 200), (V.V16_1, 200)],
)
def test_device_limit_is_403_up_to_14_0_and_177_in_body_from_14_1(
    version: ProtocolVersion, http: int
) -> None:
    answer = device_limit_answer("Sync", version)
    assert answer.http_status == http
    assert answer.body == (b"" if http == 403 else expected_body(0, 0x05, 0x0E, 177))


@pytest.mark.parametrize("kind", [142, 143, 144])
def test_provisioning_needed_is_449_below_14_0_and_in_body_from_14_0(kind: int) -> None:
    old = provisioning_needed_answer("FolderSync", V.V12_1, kind)
    assert (old.http_status, old.body, old.reason) == (
        449,
        b"",
        "Retry after sending a PROVISION command",
    )
    new = provisioning_needed_answer("FolderSync", V.V14_0, kind)
    assert new.http_status == 200
    assert new.body == expected_body(7, 0x16, 0x0C, kind)


def test_provisioning_needed_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="142, 143 or 144"):
        provisioning_needed_answer("Sync", V.V14_0, 129)


def test_remote_wipe_below_14_0_is_403_without_key_and_449_with_key() -> None:
    assert remote_wipe_needed_answer("Sync", V.V12_1, policy_key_sent=False).http_status == 403
    assert remote_wipe_needed_answer("Sync", V.V12_1, policy_key_sent=True).http_status == 449
    new = remote_wipe_needed_answer("Sync", V.V14_0, policy_key_sent=True)
    assert (new.http_status, new.body) == (200, expected_body(0, 0x05, 0x0E, 140))


def test_compose_mail_commands_below_14_0_have_no_body_even_for_low_statuses() -> None:
    # Below 14.0 SendMail carries MIME, so even a command-specific status has no XML root.
    answer = status_answer("SendMail", 120, V.V12_1)
    assert (answer.http_status, answer.body) == (500, b"")


def test_command_specific_status_below_14_0_goes_in_the_body() -> None:
    answer = status_answer("Sync", 3, V.V12_1)
    assert answer.http_status == 200
    assert answer.body == expected_body(0, 0x05, 0x0E, 3)


def test_status_beyond_the_version_limit_uses_its_http_pairing() -> None:
    # 14.0 carries statuses up to 163 only: 165 becomes HTTP 400.
    assert status_answer("Provision", 165, V.V14_0).http_status == 400
    assert status_answer("Provision", 165, V.V14_1).http_status == 200


def test_options_never_gets_a_body() -> None:
    assert status_answer("Options", 129, V.V16_1).body == b""


def test_version_may_be_given_as_text() -> None:
    assert blocked_answer("sync", "14.0") == blocked_answer("Sync", V.V14_0)


def test_unknown_command_is_a_query_error() -> None:
    with pytest.raises(QueryError):
        status_answer("Frobnicate", 129, V.V14_0)
