"""Control bodies: valid ones become values, bad ones a ControlError naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenarios.dashboard import controls
from scenarios.dashboard.controls import ControlError


def test_an_unregistered_phone_needs_only_user_and_device_id() -> None:
    wanted = controls.parse_add_device({"user": "carol", "device_id": "CAROLPHONE01"})
    assert (wanted.user, wanted.device_id, wanted.version, wanted.register) == (
        "carol",
        "CAROLPHONE01",
        "16.1",
        None,
    )


def test_a_registered_phone_carries_its_posture() -> None:
    wanted = controls.parse_add_device(
        {
            "user": "alice",
            "device_id": "NEW01",
            "registered": True,
            "platform": "android",
            "os_version": "14",
            "compromised": True,
        }
    )
    assert wanted.register == controls.Posture(
        platform="android", os_version="14", compromised=True, data_protection=True
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "X1"}, "user"),
        ({"user": "alice", "device_id": "bad id!"}, "device_id"),
        ({"user": "alice", "device_id": "X1", "version": "15.0"}, "version"),
        ({"user": "alice", "device_id": "X1", "registered": "yes"}, "registered"),
        ({"user": "alice", "device_id": "X1", "registered": True, "os_version": 17}, "os_version"),
        ({"user": "alice", "device_id": "X1", "compromised": True}, "compromised"),
        ({"user": "alice", "device_id": "X1", "colour": "red"}, "colour"),
    ],
)
def test_bad_add_device_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ControlError) as caught:
        controls.parse_add_device(body)
    assert caught.value.field == field
    assert f"$.{field}" in caught.value.message
    assert caught.value.status == 400


def test_actions_postures_and_lab_controls_validate_their_fields() -> None:
    assert controls.parse_action({"action": "block"}).action == "block"
    for body, field in (
        ({}, "action"),
        ({"action": "explode"}, "action"),
        ({"action": "wipe", "note": 5}, "note"),
    ):
        with pytest.raises(ControlError) as caught:
            controls.parse_action(body)
        assert caught.value.field == field
    assert controls.parse_posture({"compromised": True}).to_json() == {"compromised": True}
    with pytest.raises(ControlError, match=r"\$\.os_version: expected a version"):
        controls.parse_posture({"os_version": "seventeen"})
    assert controls.parse_uem_state({"state": "down"}) is False
    with pytest.raises(ControlError, match=r"\$\.state"):
        controls.parse_uem_state({"state": "sideways"})
    assert controls.parse_advance({"advance_s": 3600}) == 3600.0
    with pytest.raises(ControlError, match=r"\$\.advance_s"):
        controls.parse_advance({"advance_s": -1})
    with pytest.raises(ControlError, match=r"\$\.pause_s"):
        controls.parse_slow_motion({"pause_s": True})


def test_bodies_must_be_bounded_json_objects() -> None:
    assert controls.decode_body(b"") == {}
    for raw, words in (
        (b"[1]", "expected a JSON object"),
        (b"{nope", "not JSON"),
        (b"{" + b" " * controls.MAX_BODY + b"}", "allowed"),
    ):
        with pytest.raises(ControlError, match=words):
            controls.decode_body(raw)


@given(st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.text(max_size=8)))
def test_any_add_device_body_gives_a_value_or_a_control_error(body: dict[str, Any]) -> None:
    outcome: object
    try:
        outcome = controls.parse_add_device(body)
    except ControlError as exc:
        outcome = exc.message
    if isinstance(outcome, str):
        assert outcome.startswith("request body: $.")
    else:
        assert isinstance(outcome, controls.AddDevice)
