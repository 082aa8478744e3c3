"""Config validation (errors name file and key) and Basic authentication decisions."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from activesync.versions import ProtocolVersion
from exchange_sim.auth import AuthDenied, authenticate, challenge
from exchange_sim.config import ConfigError, ExchangeConfig, UserConfig

USERS = [{"name": "alice", "email": "alice@example.com", "password": "pw"}]


def config(**exchange: Any) -> ExchangeConfig:
    return ExchangeConfig.from_mapping({"users": USERS, "exchange": exchange}, source="lab.yaml")


def test_defaults_serve_every_version_and_require_provisioning() -> None:
    cfg = config()
    assert cfg.protocol_versions[-1] is ProtocolVersion.V16_1
    assert cfg.provisioning_required is True
    assert cfg.activesync_policy["DevicePasswordEnabled"] is True


def test_server_version_caps_the_advertised_versions() -> None:
    assert config(server_version="14.0").highest_version is ProtocolVersion.V14_0
    assert config(server_version=14.1).highest_version is ProtocolVersion.V14_1


@pytest.mark.parametrize(
    ("exchange", "message"),
    [
        ({"seed_messages_per_mailbox": -1}, "lab.yaml: exchange.seed_messages_per_mailbox"),
        ({"heartbeat_min_s": "soon"}, "lab.yaml: exchange.heartbeat_min_s: expected an integer"),
        ({"heartbeat_min_s": 600, "heartbeat_max_s": 300}, "must not exceed heartbeat_max_s"),
        ({"server_version": "13.0"}, "lab.yaml: exchange.server_version"),
        ({"provisioning_required": "yes"}, "expected true or false"),
        ({"seed_mesages_per_mailbox": 3}, "exchange.seed_mesages_per_mailbox: unknown setting"),
        ({"activesync_policy": {"AllowCamra": True}}, "did you mean AllowCamera"),
    ],
)
def test_bad_exchange_settings_name_the_file_and_key(
    exchange: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**exchange)


@pytest.mark.parametrize(
    ("users", "message"),
    [
        (None, "lab.yaml: users: expected a list"),
        ([{"name": "a", "email": "a@x"}], r"users\[0\].password: expected a non-empty string"),
        ([{"name": "a", "email": "nope", "password": "p"}], "expected an SMTP address"),
        (
            [
                {"name": "a", "email": "a@x.org", "password": "p"},
                {"name": "A", "email": "b@x.org", "password": "p"},
            ],
            "names two users",
        ),
    ],
)
def test_bad_users_name_the_entry(users: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExchangeConfig.from_mapping({"users": users}, source="lab.yaml")


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("login", ["alice", "ALICE", "alice@example.com", "CORP\\alice"])
def test_every_spelling_of_the_user_authenticates(login: str) -> None:
    assert authenticate(header(login, "pw"), config()) == UserConfig(
        "alice", "alice@example.com", "pw"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no Authorization header"),
        ("Bearer abc", "scheme 'Bearer' is not supported"),
        ("Basic !!!", "not base64"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "must be 'user:password'"),
        (header("alice", "wrong"), "unknown user or wrong password"),
        (header("mallory", "pw"), "unknown user or wrong password"),
    ],
)
def test_refusals_say_why(value: str | None, reason: str) -> None:
    result = authenticate(value, config())
    assert isinstance(result, AuthDenied)
    assert reason in result.reason


def test_challenge_quotes_the_realm() -> None:
    assert challenge('Lab "A"') == 'Basic realm="Lab \\"A\\"", charset="UTF-8"'
