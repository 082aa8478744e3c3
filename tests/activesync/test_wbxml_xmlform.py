"""The XML text form: MS-ASCMD-style output, faithful reading back, errors with lines, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from wbxml_trees import trees

from activesync.errors import XmlFormError
from activesync.wbxml import E, Element, encode, from_xml, to_xml


def test_folder_sync_renders_like_the_ms_ascmd_examples() -> None:
    tree = E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "SyncKey", text="0"))
    assert to_xml(tree) == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<FolderSync xmlns="FolderHierarchy:">\n'
        "  <SyncKey>0</SyncKey>\n"
        "</FolderSync>\n"
    )


def test_other_pages_get_lower_case_prefixes_declared_on_the_root() -> None:
    tree = E(
        "AirSync",
        "Sync",
        E(
            "AirSync",
            "Collection",
            E("AirSyncBase", "BodyPreference", E("AirSyncBase", "Type", text=2)),
            E("Email", "Subject", text="hi"),
        ),
    )
    xml = to_xml(tree)
    assert '<Sync xmlns="AirSync:" xmlns:email="Email:" xmlns:airsyncbase="AirSyncBase:">' in xml
    assert "<airsyncbase:Type>2</airsyncbase:Type>" in xml
    assert "<email:Subject>hi</email:Subject>" in xml
    assert "<Collection>" in xml
    assert from_xml(xml) == tree


def test_empty_element_and_empty_string_stay_distinct() -> None:
    tree = E("AirSync", "Sync", E("AirSync", "MoreAvailable"), E("AirSync", "SyncKey", text=""))
    xml = to_xml(tree)
    assert "<MoreAvailable/>" in xml
    assert '<SyncKey text="base64"/>' in xml
    assert from_xml(xml) == tree


def test_opaque_round_trips_as_base64_marker() -> None:
    tree = E("ComposeMail", "SendMail", Element("ComposeMail", "Mime", opaque=b"\x00\xffMIME"))
    xml = to_xml(tree)
    assert '<Mime opaque="base64">AP9NSU1F</Mime>' in xml
    assert from_xml(xml) == tree


def test_base64_may_be_wrapped_over_lines() -> None:
    xml = (
        '<SendMail xmlns="ComposeMail:"><Mime opaque="base64">\n  AP9N\n  SU1F\n</Mime></SendMail>'
    )
    assert from_xml(xml).find("Mime") == Element("ComposeMail", "Mime", opaque=b"\x00\xffMIME")


def test_text_is_kept_exactly_including_markup_characters_and_whitespace() -> None:
    text = "  a < b && c > d\r\n\ttabbed  "
    tree = E("Email", "Subject", text=text)
    xml = to_xml(tree)
    assert "&lt;" in xml
    assert "&#13;" in xml
    assert from_xml(xml) == tree


def test_text_xml_cannot_carry_uses_the_text_base64_marker() -> None:
    tree = E("Email", "Subject", text="bell\x07 and \ufffe")
    xml = to_xml(tree)
    assert 'text="base64"' in xml
    assert from_xml(xml) == tree


def test_namespace_without_colon_and_item_estimate_alias_are_accepted() -> None:
    assert from_xml('<Sync xmlns="AirSync"/>') == E("AirSync", "Sync")
    assert from_xml('<GetItemEstimate xmlns="ItemEstimate:"/>') == E(
        "GetItemEstimate", "GetItemEstimate"
    )


def test_tag_alias_is_read_as_the_current_name() -> None:
    xml = (
        '<Provision xmlns="Provision:">'
        "<DeviceEncryptionEnabled>1</DeviceEncryptionEnabled></Provision>"
    )
    assert from_xml(xml) == E(
        "Provision", "Provision", E("Provision", "RequireStorageCardEncryption", text=1)
    )


def test_whitespace_between_elements_is_ignored_and_comments_too() -> None:
    xml = """<?xml version="1.0" encoding="utf-8"?>
<!-- a Ping request -->
<Ping xmlns="Ping:">

    <HeartbeatInterval>480</HeartbeatInterval>
    <Folders>
      <Folder><Id>1</Id><Class>Email</Class></Folder>
    </Folders>
</Ping>
"""
    assert from_xml(xml) == E(
        "Ping",
        "Ping",
        E("Ping", "HeartbeatInterval", text=480),
        E(
            "Ping",
            "Folders",
            E("Ping", "Folder", E("Ping", "Id", text=1), E("Ping", "Class", text="Email")),
        ),
    )


def test_prefixed_names_resolve_through_their_declarations() -> None:
    xml = '<a:Sync xmlns:a="AirSync:" xmlns:b="AirSyncBase"><b:Body/></a:Sync>'
    assert from_xml(xml) == E("AirSync", "Sync", E("AirSyncBase", "Body"))


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<Sync xmlns="AirSync:">\n  <Bogus/>\n</Sync>',
            'line 2: unknown tag <Bogus> in namespace "AirSync:"',
        ),
        (
            '<Sync xmlns="AirSync:">\n\n  <x:Sync xmlns:x="Nope:"/></Sync>',
            'line 3: unknown namespace "Nope:" on <Sync>',
        ),
        ("<Sync/>", "line 1: <Sync> has no namespace"),
        ('<Sync xmlns="AirSync:" id="1"/>', 'unexpected attribute id="1" on <Sync>'),
        ('<Sync xmlns="AirSync:" opaque="hex"/>', 'unexpected attribute opaque="hex"'),
        (
            '<Sync xmlns="AirSync:">text<Collection/></Sync>',
            "<Sync> mixes text ('text') with child elements",
        ),
        ('<SyncKey xmlns="AirSync:" opaque="base64">!!</SyncKey>', "does not hold valid base64"),
        (
            '<SyncKey xmlns="AirSync:" text="base64">/w==</SyncKey>',
            "is not UTF-8 text once decoded",
        ),
        (
            '<Sync xmlns="AirSync:" opaque="base64"><Status/></Sync>',
            "holds base64 data and cannot contain <Status>",
        ),
        (
            '<Sync xmlns="AirSync:"><Collection></Sync>',
            "line 1, column 38: not well-formed XML (mismatched tag)",
        ),
        ("", "not well-formed XML (no element found)"),
        (
            '<?xml-stylesheet href="x"?><Sync xmlns="AirSync:"/>',
            "processing instruction <?xml-stylesheet ...?>",
        ),
        (
            '<!DOCTYPE Sync [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            '<Sync xmlns="AirSync:">&b;</Sync>',
            "a DOCTYPE has no place in the XML form",
        ),
    ],
)
def test_bad_xml_errors_name_the_problem_and_line(xml: str, message: str) -> None:
    with pytest.raises(XmlFormError) as caught:
        from_xml(xml)
    assert message in str(caught.value)


def test_input_size_is_bounded() -> None:
    xml = '<SyncKey xmlns="AirSync:">' + "1" * 100 + "</SyncKey>"
    assert from_xml(xml, max_chars=len(xml)).text == "1" * 100
    with pytest.raises(XmlFormError, match="over the limit of 50"):
        from_xml(xml, max_chars=50)


def test_nesting_is_bounded() -> None:
    xml = '<Sync xmlns="AirSync:">' + "<Collection>" * 5 + "</Collection>" * 5 + "</Sync>"
    assert from_xml(xml, max_depth=6).tag == "Sync"
    with pytest.raises(XmlFormError, match="nested deeper than the limit of 5"):
        from_xml(xml, max_depth=5)


def test_writing_an_unknown_tag_is_refused() -> None:
    with pytest.raises(XmlFormError, match="unknown tag in code page 0"):
        to_xml(E("AirSync", "Sync", E("AirSync", "Bogus")))
    with pytest.raises(XmlFormError, match="unknown code page"):
        to_xml(E("Bogus", "Sync"))


def test_a_very_deep_tree_is_written_without_recursion() -> None:
    node = E("AirSync", "SyncKey", text="1")
    for _ in range(3000):
        kids: Any = (node,)
        node = Element("AirSync", "Collection", kids)
    assert to_xml(node).count("</Collection>") == 3000


@given(trees)
def test_from_xml_inverts_to_xml(tree: Element) -> None:
    assert from_xml(to_xml(tree)) == tree


@given(trees)
def test_xml_form_encodes_to_the_same_bytes(tree: Element) -> None:
    assert encode(from_xml(to_xml(tree))) == encode(tree)
