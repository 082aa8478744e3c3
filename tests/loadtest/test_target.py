"""The loopback rule: load goes to 127.0.0.0/8, ::1 or localhost, nowhere else.

No test sends traffic or asks a real resolver: names resolve through a fake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.target import Target, TargetError, check_loopback, read_ready_file

FAKE_DNS = {
    "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "lab.internal": ["127.0.0.1"],
    "split.internal": ["127.0.0.1", "10.1.2.3"],
}


def fake_resolver(host: str) -> list[str]:
    if host not in FAKE_DNS:
        raise TargetError(f"cannot resolve {host!r}")
    return FAKE_DNS[host]


def no_resolver(host: str) -> list[str]:
    raise AssertionError(f"the rule asked the resolver about {host!r}")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://192.168.1.1",
        "http://8.8.8.8/",
        "http://[2001:db8::1]:443",
        "http://[::ffff:10.0.0.1]:80",
        "http://0.0.0.0:80",
    ],
)
def test_non_loopback_addresses_are_refused_without_a_lookup(url: str) -> None:
    with pytest.raises(TargetError, match="not a loopback address"):
        check_loopback(url, "profile.yaml: target.sentry_url", resolver=no_resolver)


def test_a_name_outside_loopback_is_refused_with_its_addresses() -> None:
    with pytest.raises(TargetError, match=r"example\.com is not a loopback.*93\.184\.215\.14"):
        check_loopback("http://example.com", "t", resolver=fake_resolver)


def test_a_name_with_any_address_outside_loopback_is_refused() -> None:
    with pytest.raises(TargetError, match=r"10\.1\.2\.3"):
        check_loopback("http://split.internal:80", "t", resolver=fake_resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8443",
        "http://127.0.0.2:80/",
        "http://127.255.255.254",
        "http://[::1]:9000",
        "http://localhost:1234",
        "https://LOCALHOST",
        "http://[::ffff:127.0.0.1]:80",
    ],
)
def test_loopback_addresses_are_allowed_without_a_lookup(url: str) -> None:
    assert check_loopback(url, "t", resolver=no_resolver) == url.rstrip("/")


def test_a_name_resolving_only_to_loopback_is_allowed() -> None:
    assert check_loopback("http://lab.internal:8080", "t", resolver=fake_resolver)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:80", "http://", ""])
def test_malformed_target_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetError, match="where"):
        check_loopback(url, "where", resolver=no_resolver)


def test_ready_file_urls_pass_the_rule(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text(
        json.dumps(
            {
                "sentry_url": "http://127.0.0.1:1000/",
                "sentry_admin_url": "http://127.0.0.1:1001",
                "uem_url": "http://[::1]:1002",
                "admin_token": "secret",
            }
        )
    )
    target = read_ready_file(ready, resolver=no_resolver)
    assert target.sentry_url == "http://127.0.0.1:1000"
    assert target.uem_url == "http://[::1]:1002"
    assert target.exchange_url is None


def test_a_ready_file_pointing_elsewhere_is_refused(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"sentry_url": "http://192.168.1.1:443"}))
    with pytest.raises(TargetError, match=r"ready\.json: sentry_url: 192\.168\.1\.1"):
        read_ready_file(ready, resolver=no_resolver)


def test_a_ready_file_without_the_gatekeeper_is_refused() -> None:
    with pytest.raises(TargetError, match="sentry_url: missing"):
        Target.from_mapping({"uem_url": "http://127.0.0.1:1"}, "ready.json")


def test_a_ready_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text("sentry_url: http://127.0.0.1")
    with pytest.raises(TargetError, match="not a JSON ready file"):
        read_ready_file(ready)
