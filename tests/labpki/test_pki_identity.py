"""identity_of and identity_mismatch: the certificate's user/device against the request's."""

from __future__ import annotations

from typing import Any

import pytest

from labpki import (
    DeviceIdentity,
    Hierarchy,
    identity_mismatch,
    identity_of,
    identity_of_certificate,
)

ALICE_ABC = DeviceIdentity(user="alice", device_id="ABC")


def peercert(cn: str | None, *san: tuple[str, str]) -> dict[str, Any]:
    subject: tuple[tuple[tuple[str, str], ...], ...] = ((("organizationName", "test lab"),),)
    if cn is not None:
        subject = (*subject, (("commonName", cn),))
    return {"subject": subject, "subjectAltName": san}


def test_no_certificate_is_no_identity() -> None:
    assert identity_of(None) is None
    assert identity_of({}) is None


def test_cn_and_device_urn_give_user_and_device() -> None:
    cert = peercert("alice", ("URI", "urn:sentry-sim:device:ABC"))
    assert identity_of(cert) == ALICE_ABC


def test_percent_encoded_device_id_is_decoded() -> None:
    cert = peercert("alice", ("URI", "urn:sentry-sim:device:Appl%20F17%2FX"))
    assert identity_of(cert) == DeviceIdentity(user="alice", device_id="Appl F17/X")


def test_other_uris_are_not_devices() -> None:
    cert = peercert("alice", ("URI", "https://example.test/alice"), ("DNS", "x.test"))
    assert identity_of(cert) == DeviceIdentity(user="alice", device_id=None)


def test_email_san_stands_in_for_a_missing_cn() -> None:
    assert identity_of(peercert(None, ("email", "bob@corp.example"))) == DeviceIdentity(
        user="bob@corp.example", device_id=None
    )
    assert identity_of(peercert(None)) is None


def test_identity_of_certificate_reads_what_the_hierarchy_issued(hierarchy: Hierarchy) -> None:
    issued = hierarchy.device_identity("CORP\\carol", "Dev 9")
    assert identity_of_certificate(issued.certificate) == DeviceIdentity(
        user="CORP\\carol", device_id="Dev 9"
    )
    assert identity_of_certificate(hierarchy.root.certificate) == DeviceIdentity(
        user="test lab root CA", device_id=None
    )


@pytest.mark.parametrize(
    ("user", "device"),
    [
        ("alice", "ABC"),
        ("ALICE", "abc"),
        ("CORP\\alice", "ABC"),
        ("alice@corp.example", "ABC"),
        (" Alice ", "ABC "),
    ],
)
def test_matching_request_has_no_mismatch(user: str, device: str) -> None:
    assert identity_mismatch(ALICE_ABC, user, device) is None


@pytest.mark.parametrize(
    ("cert_user", "request_user"),
    [
        ("CORP\\alice", "alice@corp.example"),
        ("alice@corp.example", "CORP\\alice"),
        ("CORP\\alice", "corp\\ALICE"),
        ("alice@CORP.example", "alice@corp.EXAMPLE"),
    ],
)
def test_domain_forms_on_either_side_match(cert_user: str, request_user: str) -> None:
    identity = DeviceIdentity(user=cert_user, device_id="ABC")
    assert identity_mismatch(identity, request_user, "ABC") is None


def test_same_form_different_domains_mismatch() -> None:
    identity = DeviceIdentity(user="CORP\\alice", device_id=None)
    reason = identity_mismatch(identity, "LAB\\alice", "X")
    assert (
        reason
        == "certificate is for CORP\\alice (any device), request is for LAB\\alice (device X)"
    )


def test_other_user_is_a_mismatch_with_a_readable_reason() -> None:
    reason = identity_mismatch(ALICE_ABC, "bob", "ABC")
    assert reason == "certificate is for alice (device ABC), request is for bob (device ABC)"


def test_other_device_is_a_mismatch() -> None:
    reason = identity_mismatch(ALICE_ABC, "alice", "XYZ")
    assert reason == "certificate is for alice (device ABC), request is for alice (device XYZ)"


def test_per_user_certificate_matches_any_device_of_that_user() -> None:
    identity = DeviceIdentity(user="alice", device_id=None)
    assert identity_mismatch(identity, "alice", "ANY1") is None
    assert identity_mismatch(identity, "mallory", "ANY1") is not None
