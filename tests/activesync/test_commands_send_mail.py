"""SendMail views: the ComposeMail body, the empty success response, MIME header summaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.send_mail import (
    LegacySendMail,
    MimeSummary,
    SendMailRequest,
    SendMailResponse,
)
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E, Element

C = "ComposeMail"
MIME = (
    b"From: jane@example.com\r\n"
    b'To: "Bob" <bob@example.com>, carol@example.com\r\n'
    b"Cc: dave@example.com\r\n"
    b"Bcc: erin@example.com\r\n"
    b"Subject: Lunch\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"See you at noon.\r\n"
)

requests = st.builds(
    SendMailRequest,
    client_id=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
    ),
    mime=st.binary(max_size=200),
    save_in_sent_items=st.booleans(),
    account_id=st.none()
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64),
)


def test_spec_shaped_request_reads_client_id_flag_and_mime() -> None:
    el = from_xml(
        """<SendMail xmlns="ComposeMail:">
          <ClientId>633916348086136194</ClientId>
          <SaveInSentItems/>
          <Mime opaque="base64">RnJvbTogamFuZUBleGFtcGxlLmNvbQ0KDQpoaQ==</Mime>
        </SendMail>"""
    )
    request = SendMailRequest.from_element(el)
    assert request == SendMailRequest(
        client_id="633916348086136194",
        save_in_sent_items=True,
        mime=b"From: jane@example.com\r\n\r\nhi",
    )
    assert request.to_element() == el


def test_mime_travels_as_opaque() -> None:
    el = SendMailRequest(client_id="1", mime=MIME).to_element()
    mime = el.child("Mime")
    assert mime is not None
    assert mime.opaque == MIME


def test_summary_reads_recipients_and_subject() -> None:
    summary = SendMailRequest(client_id="1", mime=MIME).summary()
    assert summary == MimeSummary(
        to=("bob@example.com", "carol@example.com"),
        cc=("dave@example.com",),
        bcc=("erin@example.com",),
        subject="Lunch",
    )
    assert summary.recipients == (
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "erin@example.com",
    )


def test_legacy_request_summarises_the_raw_mime() -> None:
    legacy = LegacySendMail(mime=MIME, save_in_sent=True)
    assert legacy.summary().subject == "Lunch"


def test_mime_without_headers_is_invalid_mime() -> None:
    with pytest.raises(CommandError, match="expected an RFC 5322 message") as info:
        MimeSummary.from_mime(b"")
    assert info.value.eas_status == 107


def test_success_response_is_an_empty_body() -> None:
    assert SendMailResponse().to_element() is None
    assert SendMailResponse.from_element(None) == SendMailResponse()


def test_failure_response_is_status_only() -> None:
    assert SendMailResponse(118).to_element() == E(C, "SendMail", E(C, "Status", text=118))


@given(requests)
def test_request_round_trips_through_tree_and_bytes(request: SendMailRequest) -> None:
    assert SendMailRequest.from_element(request.to_element()) == request
    assert SendMailRequest.from_element(decode(encode(request.to_element()))) == request


@given(st.builds(SendMailResponse, st.none() | st.integers(0, 999)))
def test_response_round_trips(response: SendMailResponse) -> None:
    assert SendMailResponse.from_element(response.to_element()) == response


def test_request_without_mime_is_refused() -> None:
    with pytest.raises(
        CommandError, match=r"SendMail: missing required element <ComposeMail:Mime>"
    ):
        SendMailRequest.from_element(E(C, "SendMail", E(C, "ClientId", text="1")))


def test_overlong_client_id_is_refused() -> None:
    el = E(C, "SendMail", E(C, "ClientId", text="9" * 41), Element(C, "Mime", opaque=b"x"))
    with pytest.raises(CommandError, match=r"ClientId: expected at most 40 characters, got 41"):
        SendMailRequest.from_element(el)


def test_save_in_sent_items_with_content_is_refused() -> None:
    el = E(
        C,
        "SendMail",
        E(C, "ClientId", text="1"),
        E(C, "SaveInSentItems", text="1"),
        Element(C, "Mime", opaque=b"x"),
    )
    with pytest.raises(CommandError, match=r"SaveInSentItems: expected an empty element"):
        SendMailRequest.from_element(el)


def test_non_integer_status_is_refused() -> None:
    with pytest.raises(CommandError, match=r"SendMail/Status: expected an integer"):
        SendMailResponse.from_element(E(C, "SendMail", E(C, "Status", text="bad")))
