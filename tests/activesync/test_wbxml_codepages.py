"""The 26 EAS code pages: names, numbers, tokens against the notes/spec, legacy tokens, aliases."""

from __future__ import annotations

import re

import pytest

from activesync.wbxml import LEGACY_TOKENS, PAGES, TAGS, page_name, page_number, tag_name, tag_token
from activesync.wbxml.codepages import PAGE_ALIASES, TAG_ALIASES

# MS-ASWBXML 2.1.2.1 (notes 4.2), in page-number order.
SPEC_PAGE_NAMES = [
    "AirSync",
    "Contacts",
    "Email",
    "AirNotify",
    "Calendar",
    "Move",
    "GetItemEstimate",
    "FolderHierarchy",
    "MeetingResponse",
    "Tasks",
    "ResolveRecipients",
    "ValidateCert",
    "Contacts2",
    "Ping",
    "Provision",
    "Search",
    "GAL",
    "AirSyncBase",
    "Settings",
    "DocumentLibrary",
    "ItemOperations",
    "ComposeMail",
    "Email2",
    "Notes",
    "RightsManagement",
    "Find",
]

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def test_there_are_26_pages_named_as_in_the_spec() -> None:
    assert list(PAGES) == SPEC_PAGE_NAMES


@pytest.mark.parametrize(("number", "name"), list(enumerate(SPEC_PAGE_NAMES)))
def test_page_number_and_name_are_inverse(number: int, name: str) -> None:
    assert page_number(name) == number
    assert page_name(number) == name


def test_unknown_pages_answer_none() -> None:
    assert page_number("Airsync") is None  # names are case-sensitive
    assert page_name(26) is None
    assert page_name(-1) is None
    assert tag_name(26, 0x05) is None
    assert tag_token("NoSuchPage", "Sync") is None


def test_item_estimate_namespace_alias_means_page_6() -> None:
    assert page_number("ItemEstimate") == 6
    assert PAGE_ALIASES["ItemEstimate"] == 6


@pytest.mark.parametrize(
    ("page", "token", "tag"),
    [
        # notes 4.3 tables
        (0, 0x05, "Sync"),
        (0, 0x0E, "Status"),
        (0, 0x14, "MoreAvailable"),
        (0, 0x29, "HeartbeatInterval"),
        (2, 0x19, "ReplyTo"),
        (2, 0x3B, "Status"),
        (2, 0x3F, "DisallowNewTimeProposal"),
        (5, 0x0C, "DstMsgId"),
        (6, 0x05, "GetItemEstimate"),
        (7, 0x0C, "Status"),
        (7, 0x16, "FolderSync"),
        (7, 0x17, "Count"),
        (13, 0x05, "Ping"),
        (13, 0x0D, "MaxFolders"),
        (14, 0x05, "Provision"),
        (14, 0x0C, "RemoteWipe"),
        (14, 0x10, "RequireStorageCardEncryption"),
        (14, 0x3B, "AccountOnlyRemoteWipe"),
        (17, 0x1F, "Content"),
        (17, 0x2D, "InstanceId"),
        (18, 0x1F, "SMTPAddress"),
        (18, 0x2B, "RightsManagementInformation"),
        (20, 0x18, "ConversationId"),
        (21, 0x10, "Mime"),
        (21, 0x17, "Name"),
        (21, 0x18, "Email"),
        # MS-ASWBXML pages the notes do not reproduce
        (1, 0x05, "Anniversary"),
        (1, 0x3E, "WeightedRank"),
        (4, 0x05, "Timezone"),
        (4, 0x3C, "ClientUid"),
        (8, 0x07, "MeetingResponse"),
        (8, 0x12, "SendResponse"),
        (9, 0x08, "Categories"),
        (9, 0x26, "FirstDayOfWeek"),
        (10, 0x05, "ResolveRecipients"),
        (10, 0x1D, "MaxPictures"),
        (11, 0x09, "CheckCRL"),
        (12, 0x0E, "MMS"),
        (15, 0x05, "Search"),
        (15, 0x23, "MaxPictures"),
        (16, 0x12, "Data"),
        (19, 0x0C, "ContentType"),
        (22, 0x05, "UmCallerID"),
        (22, 0x17, "Send"),
        (23, 0x09, "Category"),
        (24, 0x18, "RemoveRightsManagementProtection"),
        (25, 0x05, "Find"),
        (25, 0x19, "GalSearchCriterion"),
        (25, 0x22, "Picture"),
    ],
)
def test_token_and_tag_match_the_spec(page: int, token: int, tag: str) -> None:
    assert tag_name(page, token) == tag
    assert tag_name(PAGES[page], token) == tag
    assert tag_token(page, tag) == token
    assert token not in LEGACY_TOKENS[page]


@pytest.mark.parametrize(
    ("page", "token", "tag"),
    [
        (0, 0x11, "Version"),
        (0, 0x19, "Truncation"),
        (0, 0x1A, "RTFTruncation"),
        (0, 0x1F, "NotifyGUID"),
        (2, 0x05, "Attachment"),
        (2, 0x0E, "BodyTruncated"),
        (2, 0x10, "DisplayName"),
        (2, 0x36, "MIMEData"),
        (2, 0x38, "MIMESize"),
        (3, 0x05, "Notify"),
        (3, 0x17, "DeviceFriendlyName"),
        (6, 0x06, "Version"),
        (6, 0x0B, "DateTime"),
        (7, 0x0B, "Response"),
        (7, 0x0D, "ContentClass"),
        (7, 0x18, "Version"),
        (13, 0x06, "AutdState"),
        (14, 0x12, "DocumentBrowseEnabled"),
    ],
)
def test_obsolete_tokens_from_old_clients_still_decode(page: int, token: int, tag: str) -> None:
    assert tag_name(page, token) == tag
    assert token in LEGACY_TOKENS[page]


def test_air_notify_page_has_only_legacy_tokens_0x05_to_0x17() -> None:
    assert set(TAGS[3]) == set(range(0x05, 0x18))
    assert LEGACY_TOKENS[3] == frozenset(TAGS[3])


def test_provision_0x10_decodes_to_current_name_and_accepts_the_older_one() -> None:
    assert tag_name("Provision", 0x10) == "RequireStorageCardEncryption"
    assert tag_token("Provision", "DeviceEncryptionEnabled") == 0x10


@pytest.mark.parametrize("page", range(26))
def test_tokens_fit_the_tag_byte_and_names_are_unique_xml_names(page: int) -> None:
    table = TAGS[page]
    assert all(0x05 <= token <= 0x3F for token in table)
    assert len(set(table.values())) == len(table)
    assert all(_XML_NAME.match(tag) for tag in table.values())
    # An alias never hides a current name of the same page, and points at a known token.
    for alias, token in TAG_ALIASES[page].items():
        assert alias not in table.values()
        assert token in table
    assert LEGACY_TOKENS[page] <= set(table)


def test_unknown_token_and_tag_answer_none() -> None:
    assert tag_name("FolderHierarchy", 0x19) is None
    assert tag_name("AirSync", 0x3F) is None
    assert tag_token("AirSync", "FolderSync") is None
