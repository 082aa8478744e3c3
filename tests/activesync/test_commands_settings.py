"""Settings views: DeviceInformation request, version-shaped UserInformation, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.settings import (
    Account,
    DeviceInformation,
    EmailAddresses,
    OofGet,
    OofResult,
    OofSet,
    SettingsRequest,
    SettingsResponse,
    SettingsStatus,
    UserInformationResult,
)
from activesync.errors import CommandError
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

S = "Settings"
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF))
info_text = st.none() | text.map(lambda s: s[:1024])
statuses = st.integers(0, 999)

device_infos = st.builds(
    DeviceInformation,
    model=info_text,
    imei=info_text,
    friendly_name=info_text,
    os=info_text,
    os_language=info_text,
    phone_number=info_text,
    user_agent=info_text,
    enable_outbound_sms=st.none() | st.booleans(),
    mobile_operator=info_text,
)
oofs = (
    st.none()
    | st.builds(OofGet, st.sampled_from(["Text", "HTML"]))
    | st.just(OofSet((E(S, "OofState", text=1),)))
)
requests = st.builds(
    SettingsRequest,
    oof=oofs,
    device_password=st.none() | text.map(lambda s: s[:255]),
    device_information=st.none() | device_infos,
    user_information=st.booleans(),
    rights_management_information=st.booleans(),
)
addresses = st.builds(
    EmailAddresses,
    smtp_addresses=st.lists(text, max_size=3).map(tuple),
    primary_smtp_address=st.none() | text,
)
accounts = st.builds(
    Account,
    account_id=st.none() | text,
    account_name=st.none() | text,
    user_display_name=st.none() | text,
    send_disabled=st.none() | st.booleans(),
    email_addresses=st.none() | addresses,
)
user_infos = st.one_of(
    st.builds(UserInformationResult, status=statuses),
    st.builds(UserInformationResult, status=statuses, email_addresses=addresses),
    st.builds(
        UserInformationResult, status=statuses, accounts=st.lists(accounts, max_size=2).map(tuple)
    ),
)
responses = st.builds(
    SettingsResponse,
    status=statuses,
    oof=st.none() | st.builds(OofResult, status=statuses, get=st.none() | st.just(())),
    device_password_status=st.none() | statuses,
    device_information_status=st.none() | statuses,
    user_information=st.none() | user_infos,
    rights_management_information=st.none() | st.just(()),
)


def test_device_information_request_from_spec_shaped_body() -> None:
    # MS-ASCMD 4.12.x: a client reporting its device information.
    el = from_xml(
        """<Settings xmlns="Settings:">
          <DeviceInformation>
            <Set>
              <Model>iPhone15,2</Model>
              <IMEI>356938035643809</IMEI>
              <FriendlyName>Jane's iPhone</FriendlyName>
              <OS>iOS 17.1</OS>
              <OSLanguage>en-us</OSLanguage>
              <PhoneNumber>+14255550100</PhoneNumber>
              <UserAgent>Apple-iPhone15C2/2101.1</UserAgent>
              <EnableOutboundSMS>0</EnableOutboundSMS>
              <MobileOperator>Contoso Mobile</MobileOperator>
            </Set>
          </DeviceInformation>
        </Settings>"""
    )
    request = SettingsRequest.from_element(el)
    assert request.device_information == DeviceInformation(
        model="iPhone15,2",
        imei="356938035643809",
        friendly_name="Jane's iPhone",
        os="iOS 17.1",
        os_language="en-us",
        phone_number="+14255550100",
        user_agent="Apple-iPhone15C2/2101.1",
        enable_outbound_sms=False,
        mobile_operator="Contoso Mobile",
    )
    assert not request.user_information
    assert request.to_element() == el


def test_user_information_get_request() -> None:
    el = from_xml(
        '<Settings xmlns="Settings:"><UserInformation><Get/></UserInformation></Settings>'
    )
    assert SettingsRequest.from_element(el) == SettingsRequest(user_information=True)
    assert SettingsRequest(user_information=True).to_element() == el


def test_user_information_for_14_0_uses_get_email_addresses() -> None:
    result = UserInformationResult.for_version(
        ProtocolVersion.V14_0,
        smtp_addresses=("jane@example.com",),
        primary_smtp_address="jane@example.com",
    )
    assert result.to_element() == E(
        S,
        "UserInformation",
        E(S, "Status", text=1),
        E(S, "Get", E(S, "EmailAddresses", E(S, "SMTPAddress", text="jane@example.com"))),
    )


def test_user_information_for_14_1_uses_accounts_with_primary_address() -> None:
    result = UserInformationResult.for_version(
        ProtocolVersion.V14_1,
        smtp_addresses=("jane@example.com", "j.doe@example.com"),
        primary_smtp_address="jane@example.com",
        display_name="Jane Doe",
    )
    el = result.to_element()
    account = el.find("Get/Accounts/Account")
    assert account is not None
    assert account.child_text("UserDisplayName") == "Jane Doe"
    assert account.find("EmailAddresses/PrimarySmtpAddress") is not None
    assert UserInformationResult.from_element(el, "Settings") == result


def test_oof_get_request_is_typed() -> None:
    el = E(S, "Settings", E(S, "Oof", E(S, "Get", E(S, "BodyType", text="Text"))))
    assert SettingsRequest.from_element(el).oof == OofGet("Text")


@given(requests)
def test_request_round_trips_through_tree_and_bytes(request: SettingsRequest) -> None:
    assert SettingsRequest.from_element(request.to_element()) == request
    assert SettingsRequest.from_element(decode(encode(request.to_element()))) == request


@given(responses)
def test_response_round_trips_through_tree_and_bytes(response: SettingsResponse) -> None:
    assert SettingsResponse.from_element(response.to_element()) == response
    assert SettingsResponse.from_element(decode(encode(response.to_element()))) == response


def test_device_information_without_set_is_refused() -> None:
    el = E(S, "Settings", E(S, "DeviceInformation"))
    with pytest.raises(
        CommandError, match=r"Settings/DeviceInformation: missing required element <Settings:Set>"
    ):
        SettingsRequest.from_element(el)


def test_non_integer_outbound_sms_is_refused() -> None:
    el = E(
        S, "Settings", E(S, "DeviceInformation", E(S, "Set", E(S, "EnableOutboundSMS", text="yes")))
    )
    with pytest.raises(
        CommandError, match=r"Set/EnableOutboundSMS: expected an integer, got 'yes'"
    ):
        SettingsRequest.from_element(el)


def test_overlong_model_is_refused() -> None:
    with pytest.raises(CommandError, match=r"<Settings:Model>: expected at most 1024 characters"):
        DeviceInformation(model="x" * 1025)


def test_response_without_status_is_refused() -> None:
    with pytest.raises(CommandError, match=r"Settings: missing required element <Settings:Status>"):
        SettingsResponse.from_element(E(S, "Settings"))


def test_wrong_root_is_refused() -> None:
    with pytest.raises(CommandError, match=r"expected root element <Settings:Settings>"):
        SettingsRequest.from_element(E("Provision", "Provision"))


def test_both_user_information_shapes_at_once_are_refused() -> None:
    with pytest.raises(CommandError, match="not both"):
        UserInformationResult(
            status=SettingsStatus.SUCCESS, email_addresses=EmailAddresses(), accounts=()
        )
