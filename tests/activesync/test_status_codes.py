"""Global status codes, the per-version body rule and the HTTP pairings."""

from __future__ import annotations

import pytest

from activesync.status import (
    PolicyStatus,
    ProvisionStatus,
    Status,
    http_equivalent,
    http_pairing_source,
    status_in_body,
    status_name,
)
from activesync.versions import ALL_VERSIONS, ProtocolVersion

V = ProtocolVersion


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (101, "InvalidContent"),
        (108, "DeviceIdMissingOrInvalid"),
        (126, "UserDisabledForSync"),
        (127, "UserOnNewMailboxCannotSync"),
        (129, "DeviceIsBlockedForThisUser"),
        (137, "CommandNotSupported"),
        (140, "RemoteWipeRequested"),
        (142, "DeviceNotProvisioned"),
        (143, "PolicyRefresh"),
        (144, "InvalidPolicyKey"),
        (165, "DeviceInformationRequired"),
        (177, "MaximumDevicesReached"),
        (183, "InvalidRecipients"),
        (184, "OneOrMoreExceptionsFailed"),
    ],
)
def test_status_names_follow_the_spec(value: int, name: str) -> None:
    assert Status(value).name == name
    assert status_name(value) == name


def test_status_name_of_an_unknown_code_says_so() -> None:
    assert status_name(3) == "Status 3"


def test_provision_statuses_have_the_spec_values() -> None:
    assert int(ProvisionStatus.ProtocolError) == 2
    assert int(ProvisionStatus.DeviceInformationRequired) == 165
    assert int(PolicyStatus.WrongPolicyKey) == 5
    assert int(PolicyStatus.UnknownPolicyType) == 3


# Exchange's rule (notes 3.3): the highest status that goes in the body, per version.
LIMITS = {
    V.V2_5: 100,
    V.V12_0: 100,
    V.V12_1: 100,
    V.V14_0: 163,
    V.V14_1: 177,
    V.V16_0: 185,
    V.V16_1: 10_000,
}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_status_in_body_follows_exchange_limit_per_version(version: ProtocolVersion) -> None:
    limit = LIMITS[version]
    for status in range(1, 200):
        assert status_in_body(status, version) is (status <= limit), (status, version)


def test_blocked_129_is_in_body_from_14_0_only() -> None:
    assert not status_in_body(129, V.V12_1)
    assert status_in_body(129, V.V14_0)


def test_device_limit_177_is_in_body_from_14_1_only() -> None:
    assert not status_in_body(177, V.V14_0)
    assert status_in_body(177, V.V14_1)


@pytest.mark.parametrize(
    ("status", "http"),
    [
        (126, 403),
        (129, 403),
        (177, 403),
        (141, 449),
        (142, 449),
        (143, 449),
        (144, 449),
        (110, 500),
        (111, 503),
        (113, 507),
        (137, 501),
        (138, 400),
        (101, 400),
        (103, 400),
    ],
)
def test_http_equivalent_pairs(status: int, http: int) -> None:
    assert http_equivalent(status) == http


def test_remote_wipe_140_is_403_without_key_and_449_with_key() -> None:
    assert http_equivalent(140, "Sync", policy_key_sent=False) == 403
    assert http_equivalent(140, "Sync", policy_key_sent=True) == 449


def test_command_specific_pairings() -> None:
    assert http_equivalent(106, "SendMail") == 500
    assert http_equivalent(106, "Sync") == 400
    assert http_equivalent(132, "Provision") == 500
    assert http_equivalent(132, "Sync") == 403


def test_command_specific_statuses_are_http_200() -> None:
    assert http_equivalent(3, "Sync") == 200


def test_every_global_status_has_an_http_code_and_a_source() -> None:
    for status in Status:
        assert 400 <= http_equivalent(status) < 600
        assert http_pairing_source(status)
