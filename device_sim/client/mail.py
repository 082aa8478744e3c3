"""The SendMail command: the message a phone composes, its request, and reading the answer.

Responsibility: number outgoing messages, write the MIME message, frame it for the phone's
protocol version, and read the SendMail answer into a verdict. It must not change the phone:
the facade applies the verdict.

Theory of operation: MS-ASCMD 2.2.1.17: from 14.0 SendMail is a ComposeMail WBXML body with a
ClientId and the MIME inside; below 14.0 the body is the MIME message itself
(``message/rfc822``) and SaveInSent rides in the query (MS-ASHTTP 2.2.1.1.1.2.5). From 14.0 an
empty answer is success and a Status other than 1 fails the step; below, any 200 is success.
"""

from __future__ import annotations

from typing import Final

from activesync.commands.send_mail import SendMailRequest, SendMailResponse
from activesync.status import status_name
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import Element
from device_sim.client.exchanges import SendMailOp
from device_sim.client.framing import post
from device_sim.client.states import Event
from device_sim.client.steps import SendMail
from device_sim.client.verdicts import Advance, Fail, Verdict
from device_sim.wire import DeviceIdentity, HttpRequest

_V = ProtocolVersion

#: MS-ASCMD 2.2.1.17: SendMail below 14.0 posts the message itself.
RFC822: Final = "message/rfc822"


def mail_client_id(device_id: str, number: int) -> str:
    """The ClientId of the phone's ``number``-th message (unique per device, short)."""
    return f"{device_id[:24]}m{number}"


def send_mail_request(identity: DeviceIdentity, policy_key: int, op: SendMailOp) -> HttpRequest:
    """The SendMail request for ``op`` in the phone's protocol version."""
    mime = _mime(identity.user, op.mail)
    if identity.version < _V.V14_0:
        # MS-ASCMD 2.2.1.17: below 14.0 the body is the message itself, and SaveInSent
        # rides in the query (MS-ASHTTP 2.2.1.1.1.2.5).
        return post(
            identity,
            "SendMail",
            None,
            policy_key=policy_key,
            raw=mime,
            content_type=RFC822,
            save_in_sent=op.mail.save_in_sent,
        )
    request = SendMailRequest(
        client_id=op.client_id, mime=mime, save_in_sent_items=op.mail.save_in_sent
    )
    return post(identity, "SendMail", request.to_element(), policy_key=policy_key)


def read_send_mail(op: SendMailOp, root: Element | None, version: ProtocolVersion) -> Verdict:
    """Read a SendMail answer (its global status already handled)."""
    if version >= _V.V14_0:
        answer = SendMailResponse.from_element(root)
        if answer.status is not None and answer.status != 1:
            return Verdict(
                Fail(answer.status, f"SendMail Status {answer.status} {status_name(answer.status)}")
            )
    return Verdict(
        Advance(None, f"sent {op.mail.subject!r} to {op.mail.to}", {"client_id": op.client_id}),
        events=(Event.COMMAND_ACCEPTED,),
    )


def _mime(sender: str, mail: SendMail) -> bytes:
    """A minimal RFC 5322 message (CRLF line ends, as SMTP expects)."""
    lines = [
        f"From: {sender}",
        f"To: {mail.to}",
        f"Subject: {mail.subject}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "",
        mail.body,
    ]
    return "\r\n".join(lines).encode("utf-8")
