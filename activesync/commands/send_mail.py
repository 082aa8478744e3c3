"""SendMail (MS-ASCMD 2.2.1.17): the 14.0+ ComposeMail body, the plain MIME form below 14.0,
and a summary of the message headers.

Responsibility: turn ``<SendMail>`` trees into values and back; represent the legacy request
(raw ``message/rfc822`` body, SaveInSent in the query string); read To/Cc/Bcc/Subject from a
MIME message with the standard library's email package. It must not deliver mail or decide
what a failure status is.

Theory of operation:
- 14.0+: ``SendMail`` holds ClientId (up to 40 characters, unique per message: the server
  spots duplicates by it, Status 118), optional AccountId, the empty tag ``SaveInSentItems``,
  and ``Mime`` (OPAQUE bytes), in the MS-ASCMD 2.2.3.162 order.
- Success is an empty response body; failure is ``<SendMail><Status>N</Status></SendMail>``.
  ``SendMailResponse`` with ``status=None`` is the success form, and its ``to_element()`` is
  None.
- Below 14.0 the body is the MIME message itself and ``SaveInSent=T`` rides in the query
  (MS-ASHTTP 2.2.1.1.1.2.5): ``LegacySendMail``.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.commands.fields import MAX_STATUS
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "ComposeMail"
#: MS-ASCMD 2.2.3.28.1: ClientId is up to 40 characters.
MAX_CLIENT_ID_LEN: Final = 40
#: MS-ASCMD 2.2.3.3.1: AccountId, a string; bounded like other ids.
MAX_ACCOUNT_ID_LEN: Final = 64
#: MS-ASCMD 2.2.2 status 107 InvalidMIME.
INVALID_MIME: Final = 107


@attrs.frozen
class MimeSummary:
    """The headers of an outgoing message that a server or a trace cares about."""

    #: Addresses in To, in order.
    to: tuple[str, ...]
    #: Addresses in Cc.
    cc: tuple[str, ...]
    #: Addresses in Bcc (a client puts them in the MIME it submits).
    bcc: tuple[str, ...]
    #: Subject, or None when the message has none.
    subject: str | None

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every recipient (To, Cc, Bcc) in that order."""
        return self.to + self.cc + self.bcc

    @classmethod
    def from_mime(cls, mime: bytes) -> MimeSummary:
        """Read the headers of ``mime`` (RFC 5322); raise CommandError (status 107) when there
        is no header section at all."""
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            mime, headersonly=True
        )
        if not message.keys():
            raise CommandError(
                "SendMail Mime: expected an RFC 5322 message with headers, found none",
                eas_status=INVALID_MIME,
            )

        def addresses(header: str) -> tuple[str, ...]:
            values = [str(v) for v in message.get_all(header, [])]
            return tuple(addr for _, addr in email.utils.getaddresses(values) if addr)

        subject = message.get("Subject")
        return cls(
            to=addresses("To"),
            cc=addresses("Cc"),
            bcc=addresses("Bcc"),
            subject=None if subject is None else str(subject),
        )


@attrs.frozen(kw_only=True)
class SendMailRequest:
    """The 14.0+ ``<SendMail>`` request."""

    #: The client's unique message id (duplicates get Status 118).
    client_id: str = attrs.field(validator=f.text_rule(PAGE, "ClientId", max_len=MAX_CLIENT_ID_LEN))
    #: The whole message, RFC 5322 bytes.
    mime: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    #: Keep a copy in Sent Items.
    save_in_sent_items: bool = False
    #: Account to send from (14.1+), None for the primary account.
    account_id: str | None = attrs.field(
        default=None, validator=f.text_rule(PAGE, "AccountId", max_len=MAX_ACCOUNT_ID_LEN)
    )

    def summary(self) -> MimeSummary:
        """To/Cc/Bcc/Subject of the message."""
        return MimeSummary.from_mime(self.mime)

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "SendMail",
            f.leaf(PAGE, "ClientId", self.client_id),
            f.leaf(PAGE, "AccountId", self.account_id),
            f.flag(PAGE, "SaveInSentItems", self.save_in_sent_items),
            f.opaque_leaf(PAGE, "Mime", self.mime),
        )

    @classmethod
    def from_element(cls, el: Element) -> SendMailRequest:
        f.expect_root(el, PAGE, "SendMail")
        where = "SendMail"
        f.reject_unknown(
            el,
            [
                (PAGE, "ClientId"),
                (PAGE, "AccountId"),
                (PAGE, "SaveInSentItems"),
                (PAGE, "Mime"),
                # MS-ASRM 2.2.2.20: accepted, not modelled (the simulator has no IRM).
                ("RightsManagement", "TemplateID"),
            ],
            where,
        )
        return cls(
            client_id=f.req_text(el, PAGE, "ClientId", where, max_len=MAX_CLIENT_ID_LEN),
            account_id=f.opt_text(el, PAGE, "AccountId", where, max_len=MAX_ACCOUNT_ID_LEN),
            save_in_sent_items=f.has_flag(el, PAGE, "SaveInSentItems", where),
            mime=f.opaque_of(f.required(el, PAGE, "Mime", where), where),
        )


@attrs.frozen(kw_only=True)
class LegacySendMail:
    """The 2.5-12.1 request: the body is the MIME message (``Content-Type: message/rfc822``)
    and ``SaveInSent=T`` is a query parameter (or the Options bit of the base64 query)."""

    #: The whole message.
    mime: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    #: SaveInSent=T.
    save_in_sent: bool = False

    def summary(self) -> MimeSummary:
        """To/Cc/Bcc/Subject of the message."""
        return MimeSummary.from_mime(self.mime)


@attrs.frozen
class SendMailResponse:
    """The response: no body on success (``status=None``), ``<SendMail><Status>`` on failure."""

    #: None on success, else a global status (MS-ASCMD 2.2.2, e.g. 118, 119, 120).
    status: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS)
    )

    def to_element(self) -> Element | None:
        """The failure body, or None (empty body) on success."""
        if self.status is None:
            return None
        return f.container(PAGE, "SendMail", f.leaf(PAGE, "Status", self.status))

    @classmethod
    def from_element(cls, el: Element | None) -> SendMailResponse:
        """Read a response; None (empty body) is success."""
        if el is None:
            return cls()
        f.expect_root(el, PAGE, "SendMail")
        f.reject_unknown(el, [(PAGE, "Status")], "SendMail")
        # An element with no Status would be odd; treat <SendMail/> as success, as the XSD
        # makes Status optional (MS-ASCMD 6.39).
        return cls(f.opt_int(el, PAGE, "Status", "SendMail", hi=MAX_STATUS))
