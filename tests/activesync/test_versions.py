"""ProtocolVersion: the seven versions, their order and their wire forms."""

from __future__ import annotations

import pytest

from activesync.errors import QueryError
from activesync.versions import ALL_VERSIONS, ProtocolVersion, versions_header

TEXTS = ["2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1"]
BYTES = [25, 120, 121, 140, 141, 160, 161]


def test_there_are_exactly_the_seven_spec_versions_in_order() -> None:
    assert [v.text for v in ALL_VERSIONS] == TEXTS
    assert sorted(ALL_VERSIONS) == list(ALL_VERSIONS)


@pytest.mark.parametrize(("text", "byte"), zip(TEXTS, BYTES, strict=True))
def test_text_and_byte_name_the_same_version(text: str, byte: int) -> None:
    assert ProtocolVersion.from_text(text) is ProtocolVersion.from_byte(byte)
    assert ProtocolVersion.from_byte(byte).text == text
    assert ProtocolVersion.from_text(text).byte == byte
    assert str(ProtocolVersion.from_text(text)) == text


def test_versions_compare_in_protocol_order() -> None:
    assert ProtocolVersion.V12_1 < ProtocolVersion.V14_0 < ProtocolVersion.V16_1
    assert ProtocolVersion.V14_1 >= ProtocolVersion.V14_0


@pytest.mark.parametrize("text", ["1.0", "14", "14.2", "", "sixteen", "16.1.0"])
def test_unknown_version_text_is_query_error_400_138(text: str) -> None:
    with pytest.raises(QueryError) as info:
        ProtocolVersion.from_text(text)
    assert info.value.http_status == 400
    assert info.value.eas_status == 138
    assert "expected one of 2.5, 12.0, 12.1, 14.0, 14.1, 16.0, 16.1" in info.value.message


@pytest.mark.parametrize("byte", [0, 10, 122, 139, 162, 255])
def test_unknown_version_byte_is_query_error_naming_the_byte(byte: int) -> None:
    with pytest.raises(QueryError) as info:
        ProtocolVersion.from_byte(byte)
    assert info.value.eas_status == 138
    assert f"got {byte}" in info.value.message


def test_base64_form_is_allowed_from_12_1() -> None:
    allowed = [v.text for v in ALL_VERSIONS if v.allows_base64_query]
    assert allowed == ["12.1", "14.0", "14.1", "16.0", "16.1"]


def test_options_versions_header_lists_versions_up_to_the_highest() -> None:
    assert versions_header() == "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
    assert versions_header(ProtocolVersion.V14_0) == "2.5,12.0,12.1,14.0"


def test_coerce_accepts_members_and_text() -> None:
    assert ProtocolVersion.coerce("14.1") is ProtocolVersion.V14_1
    assert ProtocolVersion.coerce(ProtocolVersion.V2_5) is ProtocolVersion.V2_5
