"""Provision bodies: EASProvisionDoc, requests, responses, and their round trips."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.provision import (
    EAS_POLICY_TYPE,
    SETTINGS,
    WAP_POLICY_TYPE,
    DeviceInformation,
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
    RequestKind,
    Setting,
    precheck,
)
from activesync.errors import CommandError
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from activesync.wbxml.tree import E, Element

V = ProtocolVersion
P = "Provision"
S = "Settings"


def through_wire(el: Element) -> Element:
    return decode(encode(el))


SPEC_SETTINGS = [
    "DevicePasswordEnabled",
    "AlphanumericDevicePasswordRequired",
    "RequireStorageCardEncryption",
    "PasswordRecoveryEnabled",
    "AttachmentsEnabled",
    "MinDevicePasswordLength",
    "MaxInactivityTimeDeviceLock",
    "MaxDevicePasswordFailedAttempts",
    "MaxAttachmentSize",
    "AllowSimpleDevicePassword",
    "DevicePasswordExpiration",
    "DevicePasswordHistory",
    "AllowStorageCard",
    "AllowCamera",
    "RequireDeviceEncryption",
    "AllowUnsignedApplications",
    "AllowUnsignedInstallationPackages",
    "MinDevicePasswordComplexCharacters",
    "AllowWiFi",
    "AllowTextMessaging",
    "AllowPOPIMAPEmail",
    "AllowBluetooth",
    "AllowIrDA",
    "RequireManualSyncWhenRoaming",
    "AllowDesktopSync",
    "MaxCalendarAgeFilter",
    "AllowHTMLEmail",
    "MaxEmailAgeFilter",
    "MaxEmailBodyTruncationSize",
    "MaxEmailHTMLBodyTruncationSize",
    "RequireSignedSMIMEMessages",
    "RequireEncryptedSMIMEMessages",
    "RequireSignedSMIMEAlgorithm",
    "RequireEncryptionSMIMEAlgorithm",
    "AllowSMIMEEncryptionAlgorithmNegotiation",
    "AllowSMIMESoftCerts",
    "AllowBrowser",
    "AllowConsumerEmail",
    "AllowRemoteDesktop",
    "AllowInternetSharing",
    "UnapprovedInROMApplicationList",
    "ApprovedApplicationList",
]


# --- ProvisionDoc ---------------------------------------------------------------------------


def test_every_setting_of_the_notes_table_is_present_in_token_order() -> None:
    # Notes 2.4 / MS-ASWBXML code page 14, tokens 0x0E-0x39 without 0x12 (obsolete) and the
    # list items ApplicationName (0x38) and Hash (0x3A); AccountOnlyRemoteWipe is a directive.
    assert [s.name for s in SETTINGS] == SPEC_SETTINGS


def test_default_doc_is_permissive() -> None:
    doc = ProvisionDoc()
    assert doc["DevicePasswordEnabled"] is False
    assert doc["AllowCamera"] is True
    assert doc["MinDevicePasswordLength"] is None
    assert doc["AllowBluetooth"] == 2
    assert doc.non_defaults == {}


def test_from_mapping_accepts_wire_and_snake_names() -> None:
    doc = ProvisionDoc.from_mapping(
        {
            "DevicePasswordEnabled": True,
            "min_device_password_length": 6,
            "require_device_encryption": 1,
            "allow_pop_imap_email": False,
            "max_inactivity_time_device_lock": 900,
            "approved_application_list": ["a9993e364706816aba3e25717850c26c9cd0d89d"],
        }
    )
    assert doc.non_defaults == {
        "DevicePasswordEnabled": True,
        "MinDevicePasswordLength": 6,
        "MaxInactivityTimeDeviceLock": 900,
        "RequireDeviceEncryption": True,
        "AllowPOPIMAPEmail": False,
        "ApprovedApplicationList": ("a9993e364706816aba3e25717850c26c9cd0d89d",),
    }


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"MinDevicePasswordLenght": 4},
            "uem.activesync_policy.MinDevicePasswordLenght: unknown "
            "EASProvisionDoc setting; did you mean MinDevicePasswordLength",
        ),
        (
            {"MinDevicePasswordLength": 17},
            "MinDevicePasswordLength: expected an integer 1..16 or null (empty: no limit), got 17",
        ),
        ({"MaxDevicePasswordFailedAttempts": 3}, "expected an integer 4..16 or null"),
        ({"AllowCamera": "yes"}, "AllowCamera: expected true or false, got 'yes'"),
        ({"AllowCamera": 2}, "AllowCamera: expected true or false, got 2"),
        ({"AllowBluetooth": 3}, "AllowBluetooth: expected one of 0, 1, 2, got 3"),
        ({"MaxCalendarAgeFilter": 1}, "expected one of 0, 4, 5, 6, 7, got 1"),
        ({"DevicePasswordHistory": None}, "DevicePasswordHistory: expected an integer"),
        ({"MaxAttachmentSize": True}, "MaxAttachmentSize: expected an integer"),
        ({"ApprovedApplicationList": "abc"}, "expected a list of Hash strings"),
        ({"AllowCamera": True, "allow_camera": False}, "already set by 'AllowCamera'"),
    ],
)
def test_from_mapping_errors_name_the_field_expected_and_got(
    mapping: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=r"^lab\.yaml: uem\.activesync_policy\.") as info:
        ProvisionDoc.from_mapping(mapping)
    assert message in str(info.value)


def test_from_mapping_uses_the_given_source_in_messages() -> None:
    with pytest.raises(ValueError, match=r"^policy.yaml: x\.AllowCamera: "):
        ProvisionDoc.from_mapping({"AllowCamera": "no"}, source="policy.yaml: x")


def test_to_element_writes_empty_tags_for_no_limit_and_0_1_for_booleans() -> None:
    doc = ProvisionDoc().replace(DevicePasswordEnabled=True, MinDevicePasswordLength=4)
    el = doc.to_element()
    assert el.child("DevicePasswordEnabled") == E(P, "DevicePasswordEnabled", text="1")
    assert el.child("AllowCamera") == E(P, "AllowCamera", text="1")
    assert el.child("MinDevicePasswordLength") == E(P, "MinDevicePasswordLength", text="4")
    assert el.child("MaxAttachmentSize") == Element(P, "MaxAttachmentSize")
    assert el.child("UnapprovedInROMApplicationList") == Element(
        P, "UnapprovedInROMApplicationList"
    )
    assert el.child("MaxEmailBodyTruncationSize") == E(P, "MaxEmailBodyTruncationSize", text="-1")


def test_to_element_for_a_version_leaves_out_settings_it_lacks() -> None:
    tags_12_0 = {c.tag for c in ProvisionDoc().to_element(V.V12_0).children}
    assert "AllowCamera" not in tags_12_0
    assert "DevicePasswordEnabled" in tags_12_0
    tags_16_1 = {c.tag for c in ProvisionDoc().to_element(V.V16_1).children}
    assert "MaxDevicePasswordFailedAttempts" not in tags_16_1
    assert "MaxCalendarAgeFilter" not in tags_16_1
    assert len(ProvisionDoc().to_element().children) == len(SETTINGS)


def setting_values(setting: Setting) -> st.SearchStrategy[object]:
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "list":
        return st.lists(
            st.text(
                st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
                min_size=1,
                max_size=20,
            ),
            max_size=3,
        ).map(tuple)
    ints: st.SearchStrategy[object] = (
        st.sampled_from(setting.choices) if setting.choices else st.integers(setting.lo, setting.hi)
    )
    return st.none() | ints if setting.empty_ok else ints


docs = st.tuples(*(setting_values(s) for s in SETTINGS)).map(ProvisionDoc)


@given(docs)
def test_provision_doc_round_trips_through_wbxml(doc: ProvisionDoc) -> None:
    assert ProvisionDoc.from_element(through_wire(doc.to_element())) == doc


@given(docs)
def test_provision_doc_round_trips_through_the_mapping_form(doc: ProvisionDoc) -> None:
    assert ProvisionDoc.from_mapping(doc.to_mapping()) == doc


def test_doc_absent_settings_take_defaults_and_empty_bools_their_default() -> None:
    el = E(P, "EASProvisionDoc", E(P, "AllowCamera", text="0"), Element(P, "AllowWiFi"))
    doc = ProvisionDoc.from_element(el)
    assert doc["AllowCamera"] is False
    assert doc["AllowWiFi"] is True
    assert doc["DevicePasswordEnabled"] is False


@pytest.mark.parametrize(
    ("child", "message"),
    [
        (E(P, "AllowCamera", text="yes"), "AllowCamera: expected 0 or 1, got 'yes'"),
        (E(P, "MinDevicePasswordLength", text="40"), "expected an integer in 1..16, got 40"),
        (E(P, "AllowBluetooth", text="7"), "AllowBluetooth: expected one of 0, 1, 2"),
        (E(P, "Bogus", text="1"), "unknown policy setting <Provision:Bogus>"),
        (E(P, "ApprovedApplicationList", E(P, "ApplicationName", text="x")), "expected <Hash>"),
    ],
)
def test_doc_from_element_errors_name_the_element(child: Element, message: str) -> None:
    with pytest.raises(CommandError) as info:
        ProvisionDoc.from_element(E(P, "EASProvisionDoc", child))
    assert message in info.value.message
    assert info.value.eas_status == 103


# --- requests ---------------------------------------------------------------------------------

INFO = DeviceInformation(
    model="iPhone15,2",
    imei="356938035643809",
    friendly_name="Ann's phone",
    os="iOS 17.1",
    os_language="en-US",
    phone_number="+15551234",
    user_agent="Apple-iPhone15C2/2101.1",
    enable_outbound_sms=False,
    mobile_operator="Carrier",
)


@pytest.mark.parametrize(
    "request_",
    [
        ProvisionRequest.initial(V.V14_1, INFO),
        ProvisionRequest.initial(V.V14_0),
        ProvisionRequest.initial(V.V2_5),
        ProvisionRequest.acknowledgement(V.V14_1, 3942919513, status=1),
        ProvisionRequest.acknowledgement(V.V12_1, "not-a-number", status=2),
        ProvisionRequest.wipe_fetch(),
        ProvisionRequest.wipe_ack(1),
        ProvisionRequest.wipe_ack(2, account_only=True),
    ],
)
def test_requests_round_trip_through_wbxml(request_: ProvisionRequest) -> None:
    assert ProvisionRequest.from_element(through_wire(request_.to_element())) == request_


def test_initial_request_reads_device_information() -> None:
    req = ProvisionRequest.from_element(ProvisionRequest.initial(V.V16_1, INFO).to_element())
    assert req.kind is RequestKind.INITIAL
    assert req.policy_type == EAS_POLICY_TYPE
    assert req.device_information == INFO


def test_acknowledgement_puts_policy_key_before_status() -> None:
    el = ProvisionRequest.acknowledgement(V.V14_0, 7).to_element()
    policy = el.find("Policies/Policy")
    assert policy is not None
    assert [c.tag for c in policy.children] == ["PolicyType", "PolicyKey", "Status"]
    req = ProvisionRequest.from_element(el)
    assert (req.kind, req.policy_key_value, req.status) == (RequestKind.ACKNOWLEDGEMENT, 7, 1)


def test_empty_provision_is_the_wipe_fetch() -> None:
    assert ProvisionRequest.from_element(Element(P, "Provision")).kind is RequestKind.WIPE_FETCH


def test_2_5_initial_request_asks_for_wap_policy() -> None:
    assert ProvisionRequest.initial(V.V2_5).policy_type == WAP_POLICY_TYPE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (E(P, "Sync"), "expected root element <Provision:Provision>"),
        (E(P, "Provision", E(P, "Status", text="1")), "unexpected element <Provision:Status>"),
        (E(P, "Provision", E(P, "RemoteWipe")), "missing required element <Provision:Status>"),
        (E(P, "Provision", E(P, "RemoteWipe", E(P, "Status", text="3"))), "1..2, got 3"),
        (
            E(P, "Provision", E(P, "Policies", E(P, "Policy", E(P, "PolicyKey", text="1")))),
            "missing required element <Provision:Status>",
        ),
        (
            E(P, "Provision", E(P, "Policies", E(P, "Policy", E(P, "Status", text="1")))),
            "<Status> without <PolicyKey>",
        ),
        (E(P, "Provision", E(P, "Policies")), "missing required element <Provision:Policy>"),
        (E(P, "Provision", E(S, "DeviceInformation")), "missing required element <Settings:Set>"),
        (
            E(P, "Provision", E(S, "DeviceInformation", E(S, "Set", E(S, "Bogus", text="x")))),
            "unexpected element <Settings:Bogus>",
        ),
    ],
)
def test_broken_request_bodies_are_command_errors(body: Element, message: str) -> None:
    with pytest.raises(CommandError) as info:
        ProvisionRequest.from_element(body)
    assert message in info.value.message


# --- precheck (server rules) -------------------------------------------------------------------


def test_initial_without_policy_type_gets_status_2() -> None:
    req = ProvisionRequest.from_element(E(P, "Provision", E(P, "Policies", Element(P, "Policy"))))
    answer = precheck(req, V.V14_0)
    assert answer == ProvisionResponse.failure(2)


def test_wrong_policy_type_for_the_version_gets_policy_status_3() -> None:
    answer = precheck(ProvisionRequest.initial(V.V2_5), V.V14_0)
    assert answer is not None
    assert (answer.status, answer.policy_status) == (1, 3)


def test_14_1_initial_without_device_information_gets_165_unless_switched_off() -> None:
    req = ProvisionRequest.initial(V.V14_1)
    assert precheck(req, V.V14_1) == ProvisionResponse.failure(165)
    assert precheck(req, V.V14_1, require_device_information=False) is None
    assert precheck(req, V.V14_0) is None
    assert precheck(ProvisionRequest.initial(V.V14_1, INFO), V.V16_1) is None


def test_precheck_ignores_wipe_requests() -> None:
    assert precheck(ProvisionRequest.wipe_fetch(), V.V16_1) is None


# --- responses --------------------------------------------------------------------------------

DOC = ProvisionDoc().replace(DevicePasswordEnabled=True, MinDevicePasswordLength=6)


@pytest.mark.parametrize(
    "response",
    [
        ProvisionResponse.initial(
            version=V.V14_1, policy_key=123, doc=DOC, device_information_sent=True
        ),
        ProvisionResponse.initial(version=V.V2_5, policy_key=9, doc=DOC),
        ProvisionResponse.acknowledged(version=V.V14_0, policy_key=456),
        ProvisionResponse.wrong_key(version=V.V14_0),
        ProvisionResponse.failure(2),
        ProvisionResponse.wipe_directive(version=V.V14_0),
        ProvisionResponse.wipe_directive(version=V.V16_1, account_only=True),
        ProvisionResponse.wipe_acknowledged(version=V.V14_0, succeeded=True),
        ProvisionResponse.wipe_acknowledged(version=V.V14_0, succeeded=False),
    ],
)
def test_responses_round_trip_through_wbxml(response: ProvisionResponse) -> None:
    assert ProvisionResponse.from_element(through_wire(response.to_element())) == response


def test_initial_response_shape() -> None:
    el = ProvisionResponse.initial(
        version=V.V14_1, policy_key=123, doc=DOC, device_information_sent=True
    ).to_element()
    assert [(c.page, c.tag) for c in el.children] == [
        (S, "DeviceInformation"),
        (P, "Status"),
        (P, "Policies"),
    ]
    policy = el.find("Policies/Policy")
    assert policy is not None
    assert [c.tag for c in policy.children] == ["PolicyType", "Status", "PolicyKey", "Data"]
    assert policy.child_text("PolicyKey") == "123"
    data = policy.child("Data")
    assert data is not None
    assert data.child("EASProvisionDoc") is not None


def test_acknowledged_response_has_the_final_key_and_no_data() -> None:
    el = ProvisionResponse.acknowledged(version=V.V14_0, policy_key=456).to_element()
    policy = el.find("Policies/Policy")
    assert policy is not None
    assert policy.child("Data") is None
    assert policy.child_text("PolicyKey") == "456"


def test_wrong_key_response_has_policy_status_5() -> None:
    resp = ProvisionResponse.wrong_key(version=V.V14_0)
    assert (resp.status, resp.policy_status, resp.policy_key) == (1, 5, None)


def test_wipe_directive_is_status_1_and_an_empty_remote_wipe() -> None:
    el = ProvisionResponse.wipe_directive(version=V.V14_0).to_element()
    assert el == E(P, "Provision", E(P, "Status", text="1"), Element(P, "RemoteWipe"))
    assert encode(el).endswith(bytes((0x45, 0x4B, 0x03)) + b"1\x00\x01\x0c\x01")


def test_account_only_wipe_exists_only_in_16_1() -> None:
    with pytest.raises(ValueError, match=r"16\.1"):
        ProvisionResponse.wipe_directive(version=V.V16_0, account_only=True)
    el = ProvisionResponse.wipe_directive(version=V.V16_1, account_only=True).to_element()
    assert el.child("AccountOnlyRemoteWipe") == Element(P, "AccountOnlyRemoteWipe")


def test_failed_wipe_report_gets_status_2_and_the_directive_again() -> None:
    resp = ProvisionResponse.wipe_acknowledged(version=V.V14_0, succeeded=False)
    assert (resp.status, resp.remote_wipe) == (2, True)
    ok = ProvisionResponse.wipe_acknowledged(version=V.V14_0, succeeded=True)
    assert (ok.status, ok.remote_wipe) == (1, False)


def test_device_reads_the_policy_and_key_from_an_initial_response() -> None:
    body = encode(ProvisionResponse.initial(version=V.V16_0, policy_key=77, doc=DOC).to_element())
    resp = ProvisionResponse.from_element(decode(body))
    assert resp.policy_key_value == 77
    assert resp.doc is not None
    assert resp.doc["MinDevicePasswordLength"] == 6


def test_broken_response_is_command_error() -> None:
    with pytest.raises(CommandError, match="expected an empty element"):
        ProvisionResponse.from_element(
            E(P, "Provision", E(P, "Status", text="1"), E(P, "RemoteWipe", text="x"))
        )


# --- fuzzed trees ----------------------------------------------------------------------------

VOCAB = [
    (P, t)
    for t in (
        "Provision",
        "Policies",
        "Policy",
        "PolicyType",
        "PolicyKey",
        "Data",
        "Status",
        "RemoteWipe",
        "EASProvisionDoc",
        "AllowCamera",
        "MinDevicePasswordLength",
        "ApprovedApplicationList",
        "Hash",
        "AccountOnlyRemoteWipe",
    )
] + [(S, t) for t in ("DeviceInformation", "Set", "Model", "EnableOutboundSMS", "Status")]

leaves = st.builds(
    lambda pt, text: Element(pt[0], pt[1], text=text),
    st.sampled_from(VOCAB),
    st.none()
    | st.sampled_from(["1", "0", "5", "-1", "abc", "", "\x01", "MS-EAS-Provisioning-WBXML"]),
)
trees = st.recursive(
    leaves,
    lambda kids: st.builds(
        lambda pt, children: Element(pt[0], pt[1], tuple(children)),
        st.sampled_from(VOCAB),
        st.lists(kids, max_size=4),
    ),
    max_leaves=12,
)


@given(trees)
def test_fuzzed_trees_only_raise_command_error(tree: Element) -> None:
    root = E(P, "Provision", tree)
    for reader in (ProvisionRequest.from_element, ProvisionResponse.from_element):
        with contextlib.suppress(CommandError):
            reader(root)
