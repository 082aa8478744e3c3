"""The pure failed-attempt table: counts, locks, resets and its memory bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labauth import Lockout, LockoutPolicy

T0 = 1_000_000.0


def test_defaults_follow_the_stig_three_failures_fifteen_minutes() -> None:
    policy = LockoutPolicy()
    assert (policy.max_failures, policy.window_s, policy.lock_s) == (3, 900.0, 900.0)


def test_third_wrong_token_locks_the_client_for_fifteen_minutes() -> None:
    table = Lockout()
    first = table.failed("10.0.0.1", T0)
    second = table.failed("10.0.0.1", T0 + 1)
    assert (first.failures, first.locked, second.failures, second.locked) == (1, None, 2, None)
    third = table.failed("10.0.0.1", T0 + 2)
    assert third.locked is not None
    assert third.locked.until == T0 + 2 + 900
    assert third.locked.retry_after_s == 900
    lock = table.locked("10.0.0.1", T0 + 62)
    assert lock is not None
    assert lock.retry_after_s == 840


def test_lock_ends_after_the_lock_time_and_the_count_starts_over() -> None:
    table = Lockout()
    for i in range(3):
        table.failed("c", T0 + i)
    assert table.locked("c", T0 + 2 + 899.5) is not None
    assert table.locked("c", T0 + 2 + 900) is None
    again = table.failed("c", T0 + 1000)
    assert again.failures == 1
    assert again.locked is None


def test_attempts_during_the_lock_do_not_extend_it() -> None:
    table = Lockout()
    for i in range(3):
        table.failed("c", T0 + i)
    during = table.failed("c", T0 + 500)
    assert during.locked is not None
    assert during.locked.until == T0 + 2 + 900


def test_success_resets_the_count() -> None:
    table = Lockout()
    table.failed("c", T0)
    table.failed("c", T0 + 1)
    table.succeeded("c")
    assert table.failed("c", T0 + 2).failures == 1
    assert table.locked("c", T0 + 3) is None


def test_failures_older_than_the_window_do_not_count() -> None:
    table = Lockout()
    table.failed("c", T0)
    table.failed("c", T0 + 1)
    late = table.failed("c", T0 + 901)
    assert late.failures == 1
    assert late.locked is None


def test_clients_are_counted_apart() -> None:
    table = Lockout()
    for i in range(3):
        table.failed("guesser", T0 + i)
    assert table.locked("guesser", T0 + 3) is not None
    assert table.locked("operator", T0 + 3) is None


def test_policy_is_configurable() -> None:
    table = Lockout(LockoutPolicy(max_failures=1, lock_s=5.0))
    locked = table.failed("c", T0).locked
    assert locked is not None
    assert locked.retry_after_s == 5
    assert table.locked("c", T0 + 5) is None


@pytest.mark.parametrize("field", ["max_failures", "window_s", "lock_s", "max_clients"])
def test_policy_rejects_non_positive_settings_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LockoutPolicy(**{field: 0})


def test_table_is_capped_and_keeps_a_fresh_lock_over_stale_entries() -> None:
    table = Lockout(LockoutPolicy(max_clients=3))
    table.failed("old-1", T0)
    table.failed("old-2", T0)
    for i in range(3):
        table.failed("guesser", T0 + 1000 + i)
    # old-1 and old-2 are out of the window by now: they go first.
    table.failed("new-1", T0 + 1003)
    table.failed("new-2", T0 + 1004)
    assert len(table) == 3
    assert table.locked("guesser", T0 + 1005) is not None


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.booleans(), st.floats(0, 50)),
        max_size=60,
    )
)
def test_table_never_exceeds_its_cap_and_never_locks_before_the_limit(
    steps: list[tuple[str, bool, float]],
) -> None:
    table = Lockout(LockoutPolicy(max_clients=3, lock_s=30.0, window_s=60.0))
    now = T0
    consecutive: dict[str, int] = {}
    for client, wrong, pause in steps:
        now += pause
        if table.locked(client, now) is not None:
            continue
        if wrong:
            failure = table.failed(client, now)
            consecutive[client] = consecutive.get(client, 0) + 1
            assert failure.failures <= consecutive[client]
            if failure.locked is not None:
                assert failure.failures == 3
                consecutive[client] = 0
        else:
            table.succeeded(client)
            consecutive[client] = 0
        assert len(table) <= 3
