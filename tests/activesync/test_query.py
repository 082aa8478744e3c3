"""The EAS request line: both query forms, headers, and every validation rule."""

from __future__ import annotations

import base64
import struct

import pytest

from activesync.errors import QueryError
from activesync.query import (
    ENDPOINT,
    MAX_QUERY_LENGTH,
    EasRequest,
    UserName,
    build_base64_query,
    build_plain_query,
    canonical_device_id,
    parse_policy_key,
    parse_request,
    split_user,
)
from activesync.versions import ProtocolVersion

V = ProtocolVersion
SPEC_EXAMPLE = "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"
PLAIN_EQUIVALENT = "Cmd=Sync&User=rmjones&DeviceId=v140Device&DeviceType=SmartPhone"


def post(query: str, **headers: str) -> EasRequest:
    return parse_request(
        "POST", ENDPOINT, query, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def plain(query: str, version: str = "14.0", **headers: str) -> EasRequest:
    return post(query, MS_ASProtocolVersion=version, **headers)


def raw_query(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def layout(
    *,
    version: int = 140,
    code: int = 0,
    locale: int = 0x0409,
    device_id: bytes = b"dev1",
    key: bytes = b"",
    device_type: bytes = b"iPhone",
    tail: bytes = b"",
) -> bytes:
    return (
        bytes((version, code))
        + struct.pack("<H", locale)
        + bytes((len(device_id),))
        + device_id
        + bytes((len(key),))
        + key
        + bytes((len(device_type),))
        + device_type
        + tail
    )


def error_of(query: str, **headers: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        post(query, **headers)
    return info.value


# --- the MS-ASHTTP example -------------------------------------------------------------------


def test_spec_base64_example_decodes_to_14_0_sync_v140device_smartphone() -> None:
    req = post(SPEC_EXAMPLE)
    assert req.form == "base64"
    assert req.protocol_version is V.V14_0
    assert req.command == "Sync"
    assert req.locale == 0x0409
    assert req.device_id == "v140Device"
    assert req.device_id_bytes == b"v140Device"
    assert req.policy_key is None
    assert req.device_type == "SmartPhone"
    assert req.user is None
    assert req.params == ()


def test_spec_base64_example_is_reproduced_byte_for_byte() -> None:
    built = build_base64_query(
        command="Sync", device_id="v140Device", device_type="SmartPhone", version="14.0"
    )
    assert built == SPEC_EXAMPLE
    assert post(SPEC_EXAMPLE).wire() == (SPEC_EXAMPLE, ())


def test_plain_equivalent_of_the_spec_example_names_the_same_device() -> None:
    a = post(SPEC_EXAMPLE)
    b = plain(PLAIN_EQUIVALENT)
    assert (a.command, a.device_id, a.device_type, a.protocol_version) == (
        b.command,
        b.device_id,
        b.device_type,
        b.protocol_version,
    )
    assert b.user == "rmjones"
    assert b.form == "plain"


# --- plain form --------------------------------------------------------------------------------


def test_plain_parameters_are_read_by_name_not_position() -> None:
    # MS-ASPROV 4.1.1 puts Cmd last.
    req = plain(
        "User=deviceuser&DeviceId=6F24CAD599A5BF1A690246B8C68FAE8D&DeviceType=PocketPC"
        "&Cmd=FolderSync"
    )
    assert req.command == "FolderSync"
    assert req.device_id == "6F24CAD599A5BF1A690246B8C68FAE8D"


def test_plain_unknown_parameters_are_kept_in_order() -> None:
    req = plain(PLAIN_EQUIVALENT + "&PolicyKey=12345&Foo=bar")
    assert req.params[-2:] == (("PolicyKey", "12345"), ("Foo", "bar"))
    assert req.param("policykey") == "12345"
    assert req.param("Missing") is None
    assert req.policy_key is None  # the query parameter is not the header


def test_plain_command_name_is_case_insensitive_and_canonicalised() -> None:
    assert plain("Cmd=foldersync&DeviceId=a1&DeviceType=x").command == "FolderSync"


def test_plain_values_are_percent_decoded() -> None:
    req = plain("Cmd=Sync&User=CONTOSO%5Crmjones&DeviceId=a1&DeviceType=SP")
    assert req.user == "CONTOSO\\rmjones"
    assert req.user_name == UserName("rmjones", "CONTOSO", "down-level")


def test_plain_save_in_sent_and_accept_multipart() -> None:
    req = plain(
        "Cmd=SmartReply&DeviceId=a1&DeviceType=x&ItemId=5&SaveInSent=T",
        "12.1",
        MS_ASAcceptMultiPart="T",
    )
    assert req.save_in_sent
    assert req.accept_multipart


def test_headers_are_matched_case_insensitively() -> None:
    req = parse_request(
        "post", ENDPOINT, PLAIN_EQUIVALENT, {"ms-asprotocolversion": "16.1", "X-MS-POLICYKEY": "7"}
    )
    assert req.protocol_version is V.V16_1
    assert req.policy_key == 7


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0),
        ("3942919513", 3942919513),
        ("4294967295", 4294967295),
        (" 12 ", 12),
        ("abc", None),
        ("", None),
        ("-1", None),
        ("4294967296", None),
        ("1e5", None),
    ],
)
def test_policy_key_header_non_numeric_or_too_large_counts_as_absent(
    header: str, expected: int | None
) -> None:
    assert plain(PLAIN_EQUIVALENT, X_MS_PolicyKey=header).policy_key == expected
    assert parse_policy_key(header) == expected


def test_plain_query_without_version_header_is_400_138() -> None:
    err = error_of(PLAIN_EQUIVALENT)
    assert (err.http_status, err.eas_status) == (400, 138)
    assert "MS-ASProtocolVersion" in err.message


def test_plain_query_with_unknown_version_header_is_400_138() -> None:
    err = error_of(PLAIN_EQUIVALENT, MS_ASProtocolVersion="15.0")
    assert (err.http_status, err.eas_status) == (400, 138)
    assert "got '15.0'" in err.message


def test_missing_cmd_says_which_parameter() -> None:
    err = error_of("DeviceId=a1&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert err.http_status == 400
    assert "Cmd" in err.message


def test_unknown_cmd_is_501_137_and_lists_valid_commands() -> None:
    err = error_of("Cmd=Frobnicate&DeviceId=a1&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert (err.http_status, err.eas_status) == (501, 137)
    assert "'Frobnicate'" in err.message
    assert "Sync, SendMail" in err.message
    assert "Provision" in err.message


def test_duplicate_core_parameter_is_refused() -> None:
    err = error_of("Cmd=Sync&Cmd=Ping&DeviceId=a1&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert "twice" in err.message


@pytest.mark.parametrize(
    "device_id", ["", "a" * 33, "abc-def", "abc_def", "dev id", "dévice", "a,b"]
)
def test_bad_device_id_is_400_108(device_id: str) -> None:
    err = error_of(f"Cmd=Sync&DeviceId={device_id}&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert (err.http_status, err.eas_status) == (400, 108)
    assert "1-32 letters or digits" in err.message


def test_missing_device_id_is_400_108() -> None:
    err = error_of("Cmd=Sync&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert (err.http_status, err.eas_status) == (400, 108)


def test_device_id_of_32_alphanumerics_is_accepted() -> None:
    assert plain(f"Cmd=Sync&DeviceId={'A1' * 16}&DeviceType=x").device_id == "A1" * 16


@pytest.mark.parametrize("device_type", ["", "x" * 33, "Smart-Phone", "a b"])
def test_bad_device_type_is_400_109(device_type: str) -> None:
    err = error_of(f"Cmd=Sync&DeviceId=a1&DeviceType={device_type}", MS_ASProtocolVersion="14.0")
    assert (err.http_status, err.eas_status) == (400, 109)


def test_missing_device_type_is_400_109() -> None:
    err = error_of("Cmd=Sync&DeviceId=a1", MS_ASProtocolVersion="14.0")
    assert (err.http_status, err.eas_status) == (400, 109)


def test_command_outside_its_versions_is_400_138() -> None:
    err = error_of("Cmd=Find&DeviceId=a1&DeviceType=x", MS_ASProtocolVersion="16.0")
    assert (err.http_status, err.eas_status) == (400, 138)
    assert "16.1" in err.message
    err = error_of("Cmd=GetAttachment&DeviceId=a1&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert err.eas_status == 138


def test_bad_percent_escape_is_query_error() -> None:
    err = error_of("Cmd=Sync&DeviceId=a1&DeviceType=%ff", MS_ASProtocolVersion="14.0")
    assert "UTF-8" in err.message


def test_parameter_without_equals_is_query_error() -> None:
    err = error_of("Cmd=Sync&DeviceId&DeviceType=x", MS_ASProtocolVersion="14.0")
    assert "expected name=value" in err.message


# --- user --------------------------------------------------------------------------------------


def basic(user: str, password: str = "x$pIAK9@p9!") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_spec_authorization_example_gives_fakeuser() -> None:
    req = post(SPEC_EXAMPLE, Authorization="Basic ZmFrZXVzZXI6eCRwSUFLOUBwOSE=")
    assert req.user == "fakeuser"


@pytest.mark.parametrize(
    ("user", "account", "domain", "form"),
    [
        ("rmjones@contoso.com", "rmjones", "contoso.com", "upn"),
        ("CONTOSO\\rmjones", "rmjones", "CONTOSO", "down-level"),
        ("rmjones", "rmjones", None, "bare"),
    ],
)
def test_user_from_basic_auth_when_the_query_has_none(
    user: str, account: str, domain: str | None, form: str
) -> None:
    req = post(SPEC_EXAMPLE, Authorization=basic(user))
    assert req.user == user
    assert req.user_name == UserName(account, domain, form)  # type: ignore[arg-type]


def test_query_user_wins_over_basic_auth() -> None:
    req = plain(PLAIN_EQUIVALENT, Authorization=basic("other@contoso.com"))
    assert req.user == "rmjones"


def test_bearer_token_gives_no_user() -> None:
    assert post(SPEC_EXAMPLE, Authorization="Bearer abc.def").user is None


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_malformed_basic_credentials_are_401(header: str) -> None:
    assert error_of(SPEC_EXAMPLE, Authorization=header).http_status == 401


def test_split_user_edge_cases() -> None:
    assert split_user("\\user") == UserName("\\user", None, "bare")
    assert split_user("a@b@c") == UserName("a@b", "c", "upn")


# --- base64 form -------------------------------------------------------------------------------


def test_binary_device_id_renders_as_lowercase_hex_and_keeps_raw_bytes() -> None:
    raw = bytes.fromhex("ae4ecd1942f8a0b3c1d2e3f40516279b")
    req = post(raw_query(layout(version=121, device_id=raw, device_type=b"PPC")))
    assert req.device_id == raw.hex()
    assert req.device_id_bytes == raw
    assert req.protocol_version is V.V12_1
    assert req.device_key == raw.hex()


def test_canonical_device_id_rule() -> None:
    assert canonical_device_id(b"v140Device") == "v140Device"
    assert canonical_device_id(b"ab-c") == "61622d63"


def test_binary_device_id_longer_than_16_bytes_is_400_108() -> None:
    err = error_of(raw_query(layout(device_id=bytes(range(17)))))
    assert (err.http_status, err.eas_status) == (400, 108)
    assert "17 bytes" in err.message


def test_ascii_device_id_longer_than_32_is_400_108() -> None:
    err = error_of(raw_query(layout(device_id=b"a" * 33)))
    assert err.eas_status == 108


def test_zero_device_id_length_is_400_108() -> None:
    err = error_of(raw_query(layout(device_id=b"")))
    assert (err.http_status, err.eas_status) == (400, 108)
    assert "greater than 0" in err.message


def test_policy_key_is_little_endian_uint32() -> None:
    req = post(raw_query(layout(key=struct.pack("<I", 3942919513))))
    assert req.policy_key == 3942919513


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8])
def test_policy_key_length_other_than_0_or_4_is_refused(length: int) -> None:
    err = error_of(raw_query(layout(key=b"\x01" * length)))
    assert err.http_status == 400
    assert f"expected 0 or 4, got {length}" in err.message


def test_policy_key_header_is_used_when_the_base64_field_is_empty() -> None:
    assert post(SPEC_EXAMPLE, X_MS_PolicyKey="99").policy_key == 99


def test_parameters_and_options_bits() -> None:
    tail = bytes((8, 7)) + b"rmjones" + bytes((3, 2)) + b"42" + bytes((7, 1, 0x03))
    req = post(raw_query(layout(code=3, tail=tail)))
    assert req.command == "SmartReply"
    assert req.user == "rmjones"
    assert req.params == (("User", "rmjones"), ("ItemId", "42"), ("Options", "3"))
    assert req.save_in_sent
    assert req.accept_multipart


def test_unknown_parameter_tag_is_refused_with_its_position() -> None:
    data = layout(tail=bytes((9, 1)) + b"x")
    err = error_of(raw_query(data))
    assert f"byte {len(data) - 3}" in err.message
    assert "unknown parameter tag 9" in err.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (layout()[:4] + bytes((20,)) + b"short" + bytes((0, 0)), "device ID"),
        (layout(device_type=b"iPhone")[:-2], "device type"),
        (layout(tail=bytes((0, 10)) + b"abc"), "AttachmentName"),
        (layout(tail=bytes((0,))), "AttachmentName length"),
    ],
)
def test_lengths_running_past_the_buffer_are_refused(data: bytes, field: str) -> None:
    err = error_of(raw_query(data))
    assert field in err.message
    assert "remain" in err.message


def test_unknown_version_byte_is_400_138() -> None:
    err = error_of(raw_query(layout(version=150)))
    assert (err.http_status, err.eas_status) == (400, 138)
    assert "got 150" in err.message


@pytest.mark.parametrize("version", [25, 120])
def test_base64_form_on_2_5_and_12_0_is_refused(version: int) -> None:
    err = error_of(raw_query(layout(version=version)))
    assert (err.http_status, err.eas_status) == (400, 138)
    assert "plain-text" in err.message


def test_unknown_command_code_is_501_137() -> None:
    err = error_of(raw_query(layout(code=5)))
    assert (err.http_status, err.eas_status) == (501, 137)
    assert "code 5" in err.message


def test_non_ascii_device_type_is_400_109() -> None:
    err = error_of(raw_query(layout(device_type="Téléphone".encode())))
    assert err.eas_status == 109


@pytest.mark.parametrize("query", ["abc!", "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25", "jA@J", "AAAA"])
def test_bad_base64_is_a_query_error(query: str) -> None:
    assert error_of(query).http_status == 400


def test_percent_escaped_base64_is_accepted() -> None:
    escaped = raw_query(layout(device_id=b"\xfb\xff\xfe")).replace("+", "%2B").replace("/", "%2F")
    assert post(escaped).device_id == "fbfffe"


def test_missing_padding_is_tolerated() -> None:
    query = raw_query(layout(device_id=b"abc"))
    assert query.endswith("=")
    assert post(query.rstrip("=")).device_id == "abc"


# --- method, path, length, OPTIONS ---------------------------------------------------------------


def test_options_needs_no_query_or_cmd() -> None:
    req = parse_request("OPTIONS", ENDPOINT, "", {"Authorization": basic("u@x.com")})
    assert req.is_options
    assert req.command == "Options"
    assert req.user == "u@x.com"
    assert req.protocol_version is None


def test_options_with_a_query_keeps_its_pairs_without_requiring_them() -> None:
    req = parse_request("OPTIONS", ENDPOINT, "User=a&DeviceId=b", {"MS-ASProtocolVersion": "14.1"})
    assert req.params == (("User", "a"), ("DeviceId", "b"))
    assert req.protocol_version is V.V14_1


def test_get_is_501() -> None:
    with pytest.raises(QueryError) as info:
        parse_request("GET", ENDPOINT, "", {})
    assert info.value.http_status == 501


def test_other_path_is_404() -> None:
    with pytest.raises(QueryError) as info:
        parse_request("POST", "/owa", PLAIN_EQUIVALENT, {"MS-ASProtocolVersion": "14.0"})
    assert info.value.http_status == 404


def test_path_is_matched_case_insensitively_with_optional_slash() -> None:
    req = parse_request("POST", "/microsoft-server-activesync/", SPEC_EXAMPLE, {})
    assert req.command == "Sync"


def test_query_longer_than_the_bound_is_414() -> None:
    err = error_of("Cmd=Sync&X=" + "a" * MAX_QUERY_LENGTH)
    assert err.http_status == 414
    assert str(MAX_QUERY_LENGTH) in err.message


def test_post_without_query_is_400() -> None:
    assert "missing" in error_of("").message


# --- building ------------------------------------------------------------------------------------


def test_build_plain_query_writes_the_four_core_parameters_first() -> None:
    query = build_plain_query(
        command="sync", device_id="v140Device", device_type="SmartPhone", user="rmjones"
    )
    assert query == PLAIN_EQUIVALENT


def test_build_plain_query_refuses_a_non_alpha_parameter_name() -> None:
    with pytest.raises(QueryError):
        build_plain_query(command="Sync", device_id="a", device_type="b", params=[("X-Y", "1")])


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("AttachmentName", 0),
        ("CollectionId", 1),
        ("CollectionName", 2),
        ("ItemId", 3),
        ("LongId", 4),
        ("ParentId", 5),
        ("Occurrence", 6),
        ("User", 8),
    ],
)
def test_build_base64_query_writes_every_parameter_tag(name: str, tag: int) -> None:
    query = build_base64_query(
        command="Sync", device_id="d1", device_type="t", version="14.1", params=[(name, "val")]
    )
    data = base64.b64decode(query)
    assert data.endswith(bytes((tag, 3)) + b"val")
    assert post(query).param(name) == "val"


def test_build_base64_query_writes_options_bits() -> None:
    query = build_base64_query(
        command="SendMail",
        device_id="d1",
        device_type="t",
        version="14.0",
        save_in_sent=True,
        accept_multipart=True,
    )
    assert base64.b64decode(query).endswith(bytes((7, 1, 3)))


def test_build_base64_query_refuses_versions_below_12_1() -> None:
    with pytest.raises(QueryError) as info:
        build_base64_query(command="Sync", device_id="d", device_type="t", version="12.0")
    assert info.value.eas_status == 138


def test_build_base64_query_refuses_a_command_without_code() -> None:
    with pytest.raises(QueryError):
        build_base64_query(command="GetHierarchy", device_id="d", device_type="t", version="12.1")


def test_create_then_wire_gives_headers_for_the_plain_form() -> None:
    req = EasRequest.create(
        command="Ping",
        device_id="d1",
        device_type="t",
        version="14.1",
        policy_key=5,
        accept_multipart=True,
    )
    query, headers = req.wire()
    assert query == "Cmd=Ping&DeviceId=d1&DeviceType=t"
    assert headers == (
        ("MS-ASProtocolVersion", "14.1"),
        ("X-MS-PolicyKey", "5"),
        ("MS-ASAcceptMultiPart", "T"),
    )
