"""WBXML encoder and decoder: spec vectors, error messages, bounds, streaming, properties."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wbxml_trees import trees

from activesync.errors import WbxmlError
from activesync.wbxml import HEADER, DecoderState, E, Element, WbxmlDecoder, decode, encode
from activesync.wbxml.encoder import mb_uint32


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def outcome(chunks: list[bytes], **limits: int) -> Element | str:
    """The tree, or the error message, from feeding ``chunks`` then closing."""
    decoder = WbxmlDecoder(**limits)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
        return decoder.close()
    except WbxmlError as exc:
        return str(exc)


def nested(depth: int) -> Element:
    node = E("AirSync", "Status", text="1")
    for _ in range(depth - 1):
        kids: Any = (node,)
        node = Element("AirSync", "Collection", kids)
    return node


# -- spec vectors ------------------------------------------------------------------------------


def test_folder_sync_status_142_is_the_15_byte_spec_vector() -> None:
    tree = E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "Status", text=142))
    body = encode(tree)
    assert body == h("03 01 6A 00 00 07 56 4C 03 31 34 32 00 01 01")
    assert len(body) == 15
    assert decode(body) == tree


def test_provision_body_switches_to_page_14_first() -> None:
    tree = E("Provision", "Provision", E("Provision", "Policies"))
    assert encode(tree).startswith(h("03 01 6A 00 00 0E 45"))


def test_sync_body_starts_on_page_0_without_a_switch() -> None:
    tree = E("AirSync", "Sync", E("AirSync", "Collections"))
    assert encode(tree)[4:] == h("45 1C 01")


# notes 7 item 4: 03 01 6A 00 [00 pp] <root|0x40> <Status|0x40> 03 '1' '2' '9' 00 01 01
BLOCKED_129 = [
    ("AirSync", "Sync", "45 4E"),
    ("FolderHierarchy", "FolderSync", "00 07 56 4C"),
    ("FolderHierarchy", "FolderCreate", "00 07 53 4C"),
    ("FolderHierarchy", "FolderDelete", "00 07 54 4C"),
    ("FolderHierarchy", "FolderUpdate", "00 07 55 4C"),
    ("GetItemEstimate", "GetItemEstimate", "00 06 45 4E"),
    ("ItemOperations", "ItemOperations", "00 14 45 4D"),
    ("MeetingResponse", "MeetingResponse", "00 08 47 4B"),
    ("Move", "MoveItems", "00 05 45 4B"),
    ("Ping", "Ping", "00 0D 45 47"),
    ("Provision", "Provision", "00 0E 45 4B"),
    ("ResolveRecipients", "ResolveRecipients", "00 0A 45 47"),
    ("Search", "Search", "00 0F 45 4C"),
    ("ComposeMail", "SendMail", "00 15 45 52"),
    ("ComposeMail", "SmartForward", "00 15 46 52"),
    ("ComposeMail", "SmartReply", "00 15 47 52"),
    ("Settings", "Settings", "00 12 45 46"),
    ("ValidateCert", "ValidateCert", "00 0B 45 4A"),
    ("Find", "Find", "00 19 45 4A"),
]


@pytest.mark.parametrize(("page", "root", "prefix"), BLOCKED_129)
def test_blocked_status_129_answer_bytes(page: str, root: str, prefix: str) -> None:
    tree = E(page, root, E(page, "Status", text=129))
    expected = h("03 01 6A 00 " + prefix + " 03 31 32 39 00 01 01")
    assert encode(tree) == expected
    assert decode(expected) == tree


def test_empty_element_is_the_bare_token() -> None:
    tree = E("AirSync", "Sync", E("AirSync", "MoreAvailable"))
    assert encode(tree) == HEADER + h("45 14 01")


def test_opaque_is_c3_length_bytes_end() -> None:
    tree = E("ComposeMail", "SendMail", Element("ComposeMail", "Mime", opaque=b"abc"))
    body = encode(tree)
    assert body == h("03 01 6A 00 00 15 45 50 C3 03 61 62 63 01 01")
    assert decode(body) == tree


def test_text_is_utf8_between_str_i_and_nul() -> None:
    tree = E("Email", "Subject", text="Grüße")
    assert encode(tree) == HEADER + h("00 02 54 03") + "Grüße".encode() + h("00 01")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (0x7F, "7F"), (0x80, "81 00"), (200, "81 48"), (0xFFFFFFFF, "8F FF FF FF 7F")],
)
def test_mb_uint32(value: int, encoded: str) -> None:
    assert mb_uint32(value) == h(encoded)


def test_switch_page_only_on_change_and_end_does_not_restore_the_page() -> None:
    tree = E(
        "AirSync",
        "Collection",
        E("AirSyncBase", "BodyPreference", E("AirSyncBase", "Type", text=1)),
        E("AirSyncBase", "BodyPreference", E("AirSyncBase", "Type", text=2)),
        E("AirSync", "SyncKey", text=0),
    )
    body = encode(tree)
    # One switch to 17 for both BodyPreference blocks, one switch back to 0 for SyncKey.
    assert body == h(
        "03 01 6A 00 4F 00 11 45 46 03 31 00 01 01 45 46 03 32 00 01 01 00 00 4B 03 30 00 01 01"
    )
    assert decode(body) == tree


# -- encoder errors ----------------------------------------------------------------------------


def test_encoding_an_unknown_page_names_page_and_tag() -> None:
    with pytest.raises(WbxmlError, match=r"<Bogus:Sync>: unknown code page 'Bogus'"):
        encode(E("Bogus", "Sync"))


def test_encoding_an_unknown_tag_names_tag_and_page() -> None:
    with pytest.raises(WbxmlError, match=r"unknown tag 'FolderSync' in code page 0 \(AirSync\)"):
        encode(E("AirSync", "Sync", E("AirSync", "FolderSync")))


def test_encoding_text_with_nul_is_refused() -> None:
    with pytest.raises(WbxmlError, match="NUL"):
        encode(E("AirSync", "SyncKey", text="a\x00b"))


def test_encoding_lone_surrogate_is_refused() -> None:
    with pytest.raises(WbxmlError, match="not valid Unicode"):
        encode(E("AirSync", "SyncKey", text="\ud800"))


def test_encoding_an_alias_gives_the_current_token() -> None:
    body = encode(E("Provision", "DeviceEncryptionEnabled", text=1))
    assert decode(body) == E("Provision", "RequireStorageCardEncryption", text=1)


def test_encoding_a_very_deep_tree_does_not_recurse() -> None:
    deep = nested(5000)
    assert encode(deep).endswith(b"\x01" * 4999)


# -- decoder errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("02 01 6A 00 45 01", "unsupported WBXML version 0x02 at byte 0: expected 0x03"),
        ("03 02 6A 00 45 01", "public identifier 2 at byte 1: expected 1"),
        ("03 01 04 00 45 01", "charset MIBenum 4 at byte 2: expected 106 (UTF-8)"),
        ("03 01 6A 02 41 42 45 01", "string table of 2 bytes at byte 3: expected length 0"),
        ("03 81 81 81 81 81 01 6A 00", "mb_u_int32 overflow in the public identifier at byte 1"),
        ("03 01 6A 00 8F FF FF FF 7F", "tag byte 0x8F at byte 4 has the attribute bit"),
        (
            "03 01 6A 00 00 07 59 01",
            "unknown WBXML token 0x19 (tag byte 0x59) in code page 7 (FolderHierarchy) at byte 6",
        ),
        ("03 01 6A 00 00 1A 45 01", "SWITCH_PAGE to unknown code page 26 at byte 4"),
        ("03 01 6A 00 45 02 41 01", "global token 0x02 (ENTITY) at byte 5"),
        ("03 01 6A 00 45 04 00 01", "global token 0x04 (LITERAL) at byte 5"),
        ("03 01 6A 00 45 40 41 00 01", "global token 0x40 (EXT_I_0) at byte 5"),
        ("03 01 6A 00 45 43 01", "global token 0x43 (PI) at byte 5"),
        ("03 01 6A 00 45 83 00 01", "global token 0x83 (STR_T) at byte 5"),
        ("03 01 6A 00 45 C0 01", "global token 0xC0 (EXT_0) at byte 5"),
        ("03 01 6A 00 45 CB 01 01", "tag byte 0xCB at byte 5 has the attribute bit"),
        (
            "03 01 6A 00 4B 03 61 FF 00 01",
            "invalid UTF-8 in the inline string of <AirSync:SyncKey> at byte 7",
        ),
        ("03 01 6A 00 01", "END token at byte 4 with no open element"),
        ("03 01 6A 00 03 41 00", "inline string (STR_I) at byte 4 outside any element"),
        ("03 01 6A 00 C3 01 41", "opaque data (OPAQUE) at byte 4 outside any element"),
        ("03 01 6A 00 45 4B 03 31 00 14 01 01", "mixes content and child elements"),
        ("03 01 6A 00 45 14 03 31 00 01", "<AirSync:Sync> mixes child elements and content"),
        ("03 01 6A 00 4B 03 31 00 C3 01 41 01", "mixes text and opaque data"),
        ("03 01 6A 00 4B C3 01 41 03 31 00 01", "mixes opaque data and text"),
        (
            "03 01 6A 00 4B C3 8F FF FF FF FF 01",
            "mb_u_int32 overflow in the OPAQUE length at byte 6",
        ),
        ("03 01 6A 00 45 01 01", "trailing bytes after the end of the document at byte 6"),
        ("03 01 6A 00 14 14", "trailing bytes after the end of the document at byte 5"),
        (
            "03 01 6A 00 45 4B 03 31",
            "truncated WBXML body: input ended at byte 8 inside <AirSync:SyncKey>",
        ),
        ("03 01 6A", "truncated WBXML body: input ended at byte 3 in the header"),
        ("03 01 6A 00 00 07", "input ended at byte 6 before the root element"),
        ("", "input ended at byte 0 in the header"),
    ],
)
def test_malformed_body_error_names_the_problem_and_byte(body: str, message: str) -> None:
    with pytest.raises(WbxmlError) as caught:
        decode(h(body))
    assert message in str(caught.value)
    assert caught.value.eas_status == 102


def test_legacy_token_from_an_old_client_decodes() -> None:
    body = h("03 01 6A 00 00 0E 45 00 0E 52 03 31 00 01 01")  # Provision 0x12 on page 14
    assert decode(body) == E(
        "Provision", "Provision", E("Provision", "DocumentBrowseEnabled", text=1)
    )


def test_content_flag_without_content_decodes_as_empty_element() -> None:
    assert decode(h("03 01 6A 00 45 54 01 01")) == E(
        "AirSync", "Sync", E("AirSync", "MoreAvailable")
    )


def test_several_inline_strings_are_joined() -> None:
    assert decode(h("03 01 6A 00 4B 03 31 00 03 32 00 01")) == E("AirSync", "SyncKey", text="12")


def test_empty_inline_string_is_empty_text_not_an_empty_element() -> None:
    tree = decode(h("03 01 6A 00 4B 03 00 01"))
    assert tree.text == ""
    assert not tree.is_empty
    assert encode(tree) == h("03 01 6A 00 4B 03 00 01")


# -- bounds ------------------------------------------------------------------------------------


def test_depth_up_to_the_limit_decodes() -> None:
    assert decode(encode(nested(64))) == nested(64)


def test_depth_beyond_the_limit_is_refused() -> None:
    with pytest.raises(WbxmlError, match="nested 65 deep: the limit is 64"):
        decode(encode(nested(65)))
    with pytest.raises(WbxmlError, match="nested 4 deep: the limit is 3"):
        decode(encode(nested(4)), max_depth=3)


def test_body_over_the_size_limit_is_refused() -> None:
    body = encode(E("AirSync", "SyncKey", text="x" * 100))
    assert decode(body, max_size=len(body)) == E("AirSync", "SyncKey", text="x" * 100)
    with pytest.raises(WbxmlError, match=f"larger than the limit of {len(body) - 1} bytes"):
        decode(body, max_size=len(body) - 1)


def test_opaque_announcing_more_than_the_limit_is_refused_before_the_data_arrives() -> None:
    decoder = WbxmlDecoder(max_size=1000)
    with pytest.raises(WbxmlError, match="announces 4294967295 bytes, beyond the limit of 1000"):
        decoder.feed(h("03 01 6A 00 00 15 50 C3 8F FF FF FF 7F"))


# -- streaming ---------------------------------------------------------------------------------


def test_streaming_returns_the_tree_exactly_when_the_last_byte_arrives() -> None:
    tree = E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "SyncKey", text="0"))
    body = encode(tree)
    decoder = WbxmlDecoder()
    for i, byte in enumerate(body):
        result = decoder.feed(bytes([byte]))
        assert (result is not None) == (i == len(body) - 1)
    assert decoder.state is DecoderState.DONE
    assert decoder.result == tree
    assert decoder.close() == tree


def test_streaming_refuses_bytes_after_the_document() -> None:
    decoder = WbxmlDecoder()
    decoder.feed(h("03 01 6A 00 14"))
    with pytest.raises(WbxmlError, match="trailing bytes after the end of the document at byte 5"):
        decoder.feed(b"\x14")
    assert decoder.state is DecoderState.FAILED


def test_failed_decoder_refuses_further_input() -> None:
    decoder = WbxmlDecoder()
    with pytest.raises(WbxmlError):
        decoder.feed(b"\x02")
    with pytest.raises(WbxmlError, match="already failed: unsupported WBXML version"):
        decoder.feed(b"\x01")
    with pytest.raises(WbxmlError, match="already failed"):
        decoder.close()


def test_empty_feed_is_a_no_op() -> None:
    decoder = WbxmlDecoder()
    assert decoder.feed(b"") is None
    assert decoder.state is DecoderState.HEADER


def test_large_opaque_in_small_chunks() -> None:
    payload = bytes(range(256)) * 400
    tree = E("ItemOperations", "ItemOperations", Element("ItemOperations", "Data", opaque=payload))
    body = encode(tree)
    assert outcome([body[i : i + 7] for i in range(0, len(body), 7)]) == tree


# -- properties --------------------------------------------------------------------------------


@given(trees)
def test_decode_inverts_encode(tree: Element) -> None:
    assert decode(encode(tree)) == tree


@given(trees, st.data())
def test_any_chunking_gives_the_same_tree(tree: Element, data: st.DataObject) -> None:
    body = encode(tree)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(body)), max_size=12))))
    bounds = [0, *cuts, len(body)]
    chunks = [body[a:b] for a, b in itertools.pairwise(bounds)]
    assert outcome(chunks) == tree


@given(trees, st.data())
def test_every_proper_prefix_is_reported_truncated(tree: Element, data: st.DataObject) -> None:
    body = encode(tree)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(WbxmlError, match="truncated WBXML body"):
        decode(body[:cut])


@given(
    trees,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.data(),
)
def test_mutated_bodies_only_raise_wbxml_error_whatever_the_chunking(
    tree: Element, mutations: list[tuple[int, int]], data: st.DataObject
) -> None:
    body = bytearray(encode(tree))
    for position, value in mutations:
        body[position % len(body)] = value
    whole = outcome([bytes(body)], max_depth=8)
    cut = data.draw(st.integers(0, len(body)))
    split = outcome([bytes(body[:cut]), bytes(body[cut:])], max_depth=8)
    bytewise = outcome([bytes([b]) for b in body], max_depth=8)
    assert whole == split == bytewise


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_wbxml_error(noise: bytes) -> None:
    for body in (noise, HEADER + noise):
        result = outcome([body], max_depth=8)
        assert isinstance(result, (Element, str))


@given(trees, st.binary(min_size=1, max_size=20), st.data())
def test_inserted_bytes_only_raise_wbxml_error(
    tree: Element, junk: bytes, data: st.DataObject
) -> None:
    body = encode(tree)
    at = data.draw(st.integers(0, len(body)))
    mutated = body[:at] + junk + body[at:]
    assert outcome([mutated]) == outcome([mutated[:at], mutated[at:]])
