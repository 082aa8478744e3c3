"""Settings (MS-ASCMD 2.2.1.18, 12.0+): typed request and response bodies on the Settings page.

Responsibility: turn ``<Settings>`` trees into values and back for the phone and the mock
Exchange. ``DeviceInformation`` is also the view Provision uses for its
``<settings:DeviceInformation>`` (MS-ASPROV 2.2.2.53). It must not store device records or
decide what a user's addresses are.

Theory of operation: a request may hold any of Oof (Get or Set), DevicePassword/Set,
DeviceInformation/Set, UserInformation/Get and RightsManagementInformation/Get; the response
answers each with its own Status plus the top-level Status. Out-of-office and the rights
management template list are carried with a small typed shell around the raw content (the
simulator never acts on them, but a request that has them must still parse and answer).

UserInformation response shapes differ by protocol version (MS-ASCMD 2.2.3.57):
- 12.0, 12.1, 14.0: ``Get/EmailAddresses/SMTPAddress*``;
- 14.1, 16.0, 16.1: ``Get/Accounts/Account/(AccountId?, AccountName?, UserDisplayName?,
  SendDisabled?, EmailAddresses/(SMTPAddress*, PrimarySmtpAddress?))``.
``UserInformationResult`` holds either form (``email_addresses`` or ``accounts``);
``UserInformationResult.for_version`` builds the right one for a request's version.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.commands.fields import MAX_STATUS
from activesync.errors import CommandError
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import Element

PAGE: Final = "Settings"
#: MS-ASCMD 2.2.3.115 etc.: each DeviceInformation value is a string of up to 1024 characters.
MAX_DEVICE_INFO_LEN: Final = 1024
#: MS-ASCMD 2.2.3.132.1: the recovery password is at most 255 characters.
MAX_PASSWORD_LEN: Final = 255


class SettingsStatus(enum.IntEnum):
    """Settings Status values (MS-ASCMD 2.2.3.177.15); 1xx global values may also appear."""

    #: Success.
    SUCCESS = 1
    #: Protocol error.
    PROTOCOL_ERROR = 2
    #: Access denied.
    ACCESS_DENIED = 3
    #: Server unavailable.
    SERVER_UNAVAILABLE = 4
    #: Invalid arguments.
    INVALID_ARGUMENTS = 5
    #: Conflicting arguments.
    CONFLICTING_ARGUMENTS = 6
    #: Denied by policy.
    DENIED_BY_POLICY = 7


def _info_rule(tag: str) -> f.Validator:
    return f.text_rule(PAGE, tag, max_len=MAX_DEVICE_INFO_LEN)


#: (attribute, tag) of DeviceInformation/Set children, in code page token order.
_DEVICE_FIELDS: Final = (
    ("model", "Model"),
    ("imei", "IMEI"),
    ("friendly_name", "FriendlyName"),
    ("os", "OS"),
    ("os_language", "OSLanguage"),
    ("phone_number", "PhoneNumber"),
    ("user_agent", "UserAgent"),
    ("mobile_operator", "MobileOperator"),
)


@attrs.frozen(kw_only=True)
class DeviceInformation:
    """``<DeviceInformation><Set>…</Set></DeviceInformation>`` (MS-ASCMD 2.2.3.45/2.2.3.167).

    The one view of this element: Settings sends it as a part of its own, Provision carries it
    from 14.1 (MS-ASPROV 2.2.2.53); ``activesync.commands.provision`` re-exports this class.
    """

    #: Device model, e.g. "iPhone15,2".
    model: str | None = attrs.field(default=None, validator=_info_rule("Model"))
    #: IMEI (not validated by servers).
    imei: str | None = attrs.field(default=None, validator=_info_rule("IMEI"))
    #: User-visible device name.
    friendly_name: str | None = attrs.field(default=None, validator=_info_rule("FriendlyName"))
    #: Operating system, e.g. "iOS 17.1".
    os: str | None = attrs.field(default=None, validator=_info_rule("OS"))
    #: OS language, e.g. "en-us".
    os_language: str | None = attrs.field(default=None, validator=_info_rule("OSLanguage"))
    #: Phone number.
    phone_number: str | None = attrs.field(default=None, validator=_info_rule("PhoneNumber"))
    #: The client's User-Agent (12.1+).
    user_agent: str | None = attrs.field(default=None, validator=_info_rule("UserAgent"))
    #: Whether the server may send SMS through the device (14.0+, MS-ASMS).
    enable_outbound_sms: bool | None = None
    #: Mobile operator (14.0+).
    mobile_operator: str | None = attrs.field(default=None, validator=_info_rule("MobileOperator"))

    def to_element(self) -> Element:
        """``<Settings:DeviceInformation>`` with its ``Set``."""
        values: list[Element | None] = [
            f.leaf(PAGE, tag, getattr(self, attr)) for attr, tag in _DEVICE_FIELDS[:7]
        ]
        values.append(f.leaf(PAGE, "EnableOutboundSMS", self.enable_outbound_sms))
        values.append(f.leaf(PAGE, "MobileOperator", self.mobile_operator))
        return f.container(PAGE, "DeviceInformation", f.container(PAGE, "Set", *values))

    @classmethod
    def from_element(cls, el: Element, where: str = "") -> DeviceInformation:
        """Read ``<Settings:DeviceInformation>``; ``where`` is the path of its parent
        (``"Settings"``, ``"Provision"``) for error messages."""
        f.expect_root(el, PAGE, "DeviceInformation", where)
        path = f"{where}/DeviceInformation" if where else "DeviceInformation"
        f.reject_unknown(el, [(PAGE, "Set")], path)
        set_el = f.required(el, PAGE, "Set", path)
        path = f"{path}/Set"
        f.reject_unknown(
            set_el,
            [(PAGE, tag) for _, tag in _DEVICE_FIELDS] + [(PAGE, "EnableOutboundSMS")],
            path,
        )
        texts = {
            attr: f.opt_text(set_el, PAGE, tag, path, max_len=MAX_DEVICE_INFO_LEN)
            for attr, tag in _DEVICE_FIELDS
        }
        sms = f.opt_int(set_el, PAGE, "EnableOutboundSMS", path, hi=1)
        return cls(
            model=texts["model"],
            imei=texts["imei"],
            friendly_name=texts["friendly_name"],
            os=texts["os"],
            os_language=texts["os_language"],
            phone_number=texts["phone_number"],
            user_agent=texts["user_agent"],
            mobile_operator=texts["mobile_operator"],
            enable_outbound_sms=None if sms is None else sms == 1,
        )


@attrs.frozen
class OofGet:
    """``<Oof><Get><BodyType>…</BodyType></Get></Oof>``: read the out-of-office settings."""

    #: "Text" or "HTML".
    body_type: str = attrs.field(validator=f.text_rule(PAGE, "BodyType", max_len=16))

    def to_element(self) -> Element:
        return f.container(
            PAGE, "Oof", f.container(PAGE, "Get", f.leaf(PAGE, "BodyType", self.body_type))
        )


@attrs.frozen
class OofSet:
    """``<Oof><Set>…</Set></Oof>``: change out-of-office; the content is kept verbatim."""

    #: The children of Set (OofState, StartTime, EndTime, OofMessage...).
    content: tuple[Element, ...] = attrs.field()

    def to_element(self) -> Element:
        return f.container(PAGE, "Oof", f.container(PAGE, "Set", *self.content))


def _oof_request(el: Element, where: str) -> OofGet | OofSet:
    path = f"{where}/Oof"
    f.reject_unknown(el, [(PAGE, "Get"), (PAGE, "Set")], path)
    get = f.optional(el, PAGE, "Get", path)
    set_ = f.optional(el, PAGE, "Set", path)
    if (get is None) == (set_ is None):
        raise CommandError(
            f"{path}: expected exactly one of {f.name(PAGE, 'Get')} or {f.name(PAGE, 'Set')}"
        )
    if get is not None:
        return OofGet(f.req_text(get, PAGE, "BodyType", f"{path}/Get", max_len=16))
    if set_ is None or set_.text is not None or set_.opaque is not None:
        raise CommandError(f"{path}/Set: expected a container, got a value")
    return OofSet(set_.children)


@attrs.frozen(kw_only=True)
class SettingsRequest:
    """A Settings request; each part is optional (a client sends the ones it needs)."""

    #: Out-of-office read or change.
    oof: OofGet | OofSet | None = None
    #: DevicePassword/Set/Password: the device's recovery password.
    device_password: str | None = attrs.field(
        default=None, validator=f.text_rule(PAGE, "Password", max_len=MAX_PASSWORD_LEN)
    )
    #: DeviceInformation/Set.
    device_information: DeviceInformation | None = None
    #: UserInformation/Get: ask for the user's addresses.
    user_information: bool = False
    #: RightsManagementInformation/Get: ask for the IRM templates (14.1+).
    rights_management_information: bool = False

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Settings",
            None if self.oof is None else self.oof.to_element(),
            None
            if self.device_password is None
            else f.container(
                PAGE,
                "DevicePassword",
                f.container(PAGE, "Set", f.leaf(PAGE, "Password", self.device_password)),
            ),
            None if self.device_information is None else self.device_information.to_element(),
            f.container(PAGE, "UserInformation", Element(PAGE, "Get"))
            if self.user_information
            else None,
            f.container(PAGE, "RightsManagementInformation", Element(PAGE, "Get"))
            if self.rights_management_information
            else None,
        )

    @classmethod
    def from_element(cls, el: Element) -> SettingsRequest:
        f.expect_root(el, PAGE, "Settings")
        where = "Settings"
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in (
                    "Oof",
                    "DevicePassword",
                    "DeviceInformation",
                    "UserInformation",
                    "RightsManagementInformation",
                )
            ],
            where,
        )
        oof = f.optional(el, PAGE, "Oof", where)
        password_el = f.optional(el, PAGE, "DevicePassword", where)
        password: str | None = None
        if password_el is not None:
            set_el = f.required(password_el, PAGE, "Set", f"{where}/DevicePassword")
            password = f.req_text(
                set_el, PAGE, "Password", f"{where}/DevicePassword/Set", max_len=MAX_PASSWORD_LEN
            )
        info = f.optional(el, PAGE, "DeviceInformation", where)
        return cls(
            oof=None if oof is None else _oof_request(oof, where),
            device_password=password,
            device_information=None
            if info is None
            else DeviceInformation.from_element(info, where),
            user_information=_has_get(el, "UserInformation", where),
            rights_management_information=_has_get(el, "RightsManagementInformation", where),
        )


def _has_get(el: Element, tag: str, where: str) -> bool:
    part = f.optional(el, PAGE, tag, where)
    if part is None:
        return False
    f.reject_unknown(part, [(PAGE, "Get")], f"{where}/{tag}")
    f.expect_empty(f.required(part, PAGE, "Get", f"{where}/{tag}"), f"{where}/{tag}")
    return True


# -- Response ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EmailAddresses:
    """``<EmailAddresses>``: SMTPAddress* then PrimarySmtpAddress (14.1+)."""

    #: Every SMTP address of the user/account.
    smtp_addresses: tuple[str, ...] = ()
    #: The primary address (14.1+ only).
    primary_smtp_address: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "EmailAddresses",
            *(Element(PAGE, "SMTPAddress", text=a) for a in self.smtp_addresses),
            f.leaf(PAGE, "PrimarySmtpAddress", self.primary_smtp_address),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> EmailAddresses:
        path = f"{where}/EmailAddresses"
        f.reject_unknown(el, [(PAGE, "SMTPAddress"), (PAGE, "PrimarySmtpAddress")], path)
        return cls(
            smtp_addresses=tuple(f.text_of(a, path) for a in f.all_named(el, PAGE, "SMTPAddress")),
            primary_smtp_address=f.opt_text(el, PAGE, "PrimarySmtpAddress", path),
        )


@attrs.frozen(kw_only=True)
class Account:
    """``<Account>`` of the 14.1+ UserInformation response (MS-ASCMD 2.2.3.2)."""

    #: Account id; the primary account has none.
    account_id: str | None = None
    #: Account name.
    account_name: str | None = None
    #: User display name.
    user_display_name: str | None = None
    #: True when the user may not send from this account.
    send_disabled: bool | None = None
    #: The account's addresses.
    email_addresses: EmailAddresses | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Account",
            f.leaf(PAGE, "AccountId", self.account_id),
            f.leaf(PAGE, "AccountName", self.account_name),
            f.leaf(PAGE, "UserDisplayName", self.user_display_name),
            f.leaf(PAGE, "SendDisabled", self.send_disabled),
            None if self.email_addresses is None else self.email_addresses.to_element(),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> Account:
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in (
                    "AccountId",
                    "AccountName",
                    "UserDisplayName",
                    "SendDisabled",
                    "EmailAddresses",
                )
            ],
            where,
        )
        addrs = f.optional(el, PAGE, "EmailAddresses", where)
        return cls(
            account_id=f.opt_text(el, PAGE, "AccountId", where),
            account_name=f.opt_text(el, PAGE, "AccountName", where),
            user_display_name=f.opt_text(el, PAGE, "UserDisplayName", where),
            send_disabled=f.opt_bool(el, PAGE, "SendDisabled", where),
            email_addresses=None if addrs is None else EmailAddresses.from_element(addrs, where),
        )


@attrs.frozen(kw_only=True)
class UserInformationResult:
    """``<UserInformation>`` of a response: Status and, on success, Get in one of two shapes.

    ``email_addresses`` is the 12.0-14.0 shape (Get/EmailAddresses), ``accounts`` the 14.1+
    shape (Get/Accounts); both None means no Get element (a failure).
    """

    #: SettingsStatus of this part.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: 12.0-14.0 form.
    email_addresses: EmailAddresses | None = None
    #: 14.1+ form.
    accounts: tuple[Account, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.email_addresses is not None and self.accounts is not None:
            raise CommandError(
                "UserInformation/Get holds EmailAddresses (12.0-14.0) or Accounts (14.1+), not both"
            )

    @classmethod
    def for_version(
        cls,
        protocol_version: ProtocolVersion,
        *,
        smtp_addresses: tuple[str, ...],
        primary_smtp_address: str,
        display_name: str | None = None,
    ) -> UserInformationResult:
        """A successful result in the shape ``protocol_version`` expects (MS-ASCMD 2.2.3.57)."""
        if protocol_version >= ProtocolVersion.V14_1:
            account = Account(
                user_display_name=display_name,
                email_addresses=EmailAddresses(
                    smtp_addresses=smtp_addresses, primary_smtp_address=primary_smtp_address
                ),
            )
            return cls(status=SettingsStatus.SUCCESS, accounts=(account,))
        return cls(
            status=SettingsStatus.SUCCESS,
            email_addresses=EmailAddresses(smtp_addresses=smtp_addresses),
        )

    def to_element(self) -> Element:
        get: Element | None = None
        if self.email_addresses is not None:
            get = f.container(PAGE, "Get", self.email_addresses.to_element())
        elif self.accounts is not None:
            get = f.container(
                PAGE,
                "Get",
                f.container(PAGE, "Accounts", *(a.to_element() for a in self.accounts)),
            )
        return f.container(PAGE, "UserInformation", f.leaf(PAGE, "Status", self.status), get)

    @classmethod
    def from_element(cls, el: Element, where: str) -> UserInformationResult:
        path = f"{where}/UserInformation"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Get")], path)
        get = f.optional(el, PAGE, "Get", path)
        addresses: EmailAddresses | None = None
        accounts: tuple[Account, ...] | None = None
        if get is not None:
            gpath = f"{path}/Get"
            f.reject_unknown(get, [(PAGE, "EmailAddresses"), (PAGE, "Accounts")], gpath)
            addr_el = f.optional(get, PAGE, "EmailAddresses", gpath)
            acc_el = f.optional(get, PAGE, "Accounts", gpath)
            if addr_el is not None:
                addresses = EmailAddresses.from_element(addr_el, gpath)
            if acc_el is not None:
                accounts = f.list_of(acc_el, PAGE, "Account", gpath, Account.from_element)
            if addresses is None and accounts is None:
                # An empty Get: represent it as the legacy form with no addresses.
                addresses = EmailAddresses()
        return cls(
            status=f.req_int(el, PAGE, "Status", path, hi=MAX_STATUS),
            email_addresses=addresses,
            accounts=accounts,
        )


@attrs.frozen(kw_only=True)
class OofResult:
    """``<Oof>`` of a response: Status and, for a Get, the settings kept verbatim."""

    #: SettingsStatus of this part.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: Children of Get (OofState, StartTime, EndTime, OofMessage...); None when absent.
    get: tuple[Element, ...] | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Oof",
            f.leaf(PAGE, "Status", self.status),
            None if self.get is None else f.container(PAGE, "Get", *self.get),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> OofResult:
        path = f"{where}/Oof"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Get")], path)
        get = f.optional(el, PAGE, "Get", path)
        return cls(
            status=f.req_int(el, PAGE, "Status", path, hi=MAX_STATUS),
            get=None if get is None else get.children,
        )


def _status_part(tag: str, status: int | None) -> Element | None:
    if status is None:
        return None
    return f.container(PAGE, tag, f.leaf(PAGE, "Status", status))


def _read_status_part(el: Element, tag: str, where: str) -> int | None:
    part = f.optional(el, PAGE, tag, where)
    if part is None:
        return None
    f.reject_unknown(part, [(PAGE, "Status")], f"{where}/{tag}")
    return f.req_int(part, PAGE, "Status", f"{where}/{tag}", hi=MAX_STATUS)


@attrs.frozen(kw_only=True)
class SettingsResponse:
    """A Settings response: the overall Status and one result per requested part."""

    #: Overall SettingsStatus (or a global status).
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: Oof result.
    oof: OofResult | None = None
    #: DevicePassword/Status.
    device_password_status: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS)
    )
    #: DeviceInformation/Status.
    device_information_status: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS)
    )
    #: UserInformation result.
    user_information: UserInformationResult | None = None
    #: RightsManagementInformation children, verbatim (the simulator has no IRM templates).
    rights_management_information: tuple[Element, ...] | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Settings",
            f.leaf(PAGE, "Status", self.status),
            None if self.oof is None else self.oof.to_element(),
            _status_part("DevicePassword", self.device_password_status),
            _status_part("DeviceInformation", self.device_information_status),
            None if self.user_information is None else self.user_information.to_element(),
            None
            if self.rights_management_information is None
            else f.container(
                PAGE, "RightsManagementInformation", *self.rights_management_information
            ),
        )

    @classmethod
    def from_element(cls, el: Element) -> SettingsResponse:
        f.expect_root(el, PAGE, "Settings")
        where = "Settings"
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in (
                    "Status",
                    "Oof",
                    "DevicePassword",
                    "DeviceInformation",
                    "UserInformation",
                    "RightsManagementInformation",
                )
            ],
            where,
        )
        oof = f.optional(el, PAGE, "Oof", where)
        user = f.optional(el, PAGE, "UserInformation", where)
        rights = f.optional(el, PAGE, "RightsManagementInformation", where)
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            oof=None if oof is None else OofResult.from_element(oof, where),
            device_password_status=_read_status_part(el, "DevicePassword", where),
            device_information_status=_read_status_part(el, "DeviceInformation", where),
            user_information=None
            if user is None
            else UserInformationResult.from_element(user, where),
            rights_management_information=None if rights is None else rights.children,
        )
