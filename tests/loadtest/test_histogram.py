"""The HDR-style histogram against exact sorted-sample percentiles and hand-computed cases."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.histogram import Histogram, HistogramError

PERCENTILES = (0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)


def exact_percentile(ordered: list[int], p: float) -> int:
    """Nearest rank on the sorted samples (the definition the histogram approximates)."""
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def assert_within_precision(hist: Histogram, values: list[int]) -> None:
    ordered = sorted(values)
    bound = 10.0**-hist.significant_digits
    for p in PERCENTILES:
        exact = exact_percentile(ordered, p)
        got = hist.percentile(p)
        assert got is not None
        # Never below the exact value, never above it by more than the precision.
        assert exact <= got <= exact + max(0.0, exact * bound), (p, exact, got)


def test_uniform_distribution_percentiles_within_three_digits() -> None:
    rng = random.Random(11)
    values = [rng.randrange(0, 2_000_000) for _ in range(50_000)]
    hist = Histogram(3)
    for v in values:
        hist.record(v)
    assert_within_precision(hist, values)


def test_exponential_distribution_percentiles_within_three_digits() -> None:
    rng = random.Random(7)
    values = [int(rng.expovariate(1 / 5_000.0)) for _ in range(50_000)]
    hist = Histogram(3)
    for v in values:
        hist.record(v)
    assert_within_precision(hist, values)


@pytest.mark.parametrize("digits", [1, 2, 4])
def test_other_precisions_hold_their_bound(digits: int) -> None:
    rng = random.Random(digits)
    values = [int(rng.lognormvariate(8, 2)) for _ in range(10_000)]
    hist = Histogram(digits)
    for v in values:
        hist.record(v)
    assert_within_precision(hist, values)


def test_small_values_are_exact() -> None:
    hist = Histogram(3)
    for v in range(1, 101):
        hist.record(v)
    assert hist.percentile(50.0) == 50
    assert hist.percentile(99.0) == 99
    assert (hist.min, hist.max, hist.mean) == (1, 100, 50.5)


def test_record_with_count_is_the_same_as_repeated_records() -> None:
    once, many = Histogram(), Histogram()
    once.record(12_345, count=7)
    for _ in range(7):
        many.record(12_345)
    assert once.same_counts(many)
    assert once.total == many.total == 7
    assert once.value_sum == many.value_sum


def test_record_corrected_adds_the_requests_a_stall_hid() -> None:
    # Expected interval 20, a stall of 100: the client would have sent four more requests,
    # waiting 80, 60, 40 and 20 (HdrHistogram's recordValueWithExpectedInterval).
    hist = Histogram()
    hist.record_corrected(100, 20)
    assert [(low, count) for low, _, count in hist.buckets()] == [
        (20, 1),
        (40, 1),
        (60, 1),
        (80, 1),
        (100, 1),
    ]
    assert hist.total == 5
    assert hist.mean == 60


def test_record_corrected_below_the_interval_records_only_the_value() -> None:
    hist = Histogram()
    hist.record_corrected(15, 20)
    hist.record_corrected(20, 20)
    assert hist.total == 2


def test_corrected_percentiles_match_a_hand_computed_stall() -> None:
    # 99 requests of 1 ms every 10 ms, then one stall of 1 s: uncorrected p99 is 1 ms; the
    # corrected histogram holds 99 more samples 990, 980, ..., 10 ms, so p75 is the 505 ms one.
    raw, fixed = Histogram(), Histogram()
    for _ in range(99):
        raw.record(1_000)
        fixed.record_corrected(1_000, 10_000)
    raw.record(1_000_000)
    fixed.record_corrected(1_000_000, 10_000)
    assert raw.percentile(99.0) == 1_000
    assert fixed.total == 199
    values = sorted([1_000] * 99 + [1_000_000] + [1_000_000 - k * 10_000 for k in range(1, 100)])
    for p in (50.0, 75.0, 90.0, 99.0):
        exact = exact_percentile(values, p)
        got = fixed.percentile(p)
        assert got is not None
        assert exact <= got <= exact * 1.001


def test_merge_adds_counts_and_extremes() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in (5, 500, 50_000):
        a.record(v)
        both.record(v)
    for v in (7, 7_000_000):
        b.record(v)
        both.record(v)
    a.merge(b)
    assert a.same_counts(both)
    assert (a.min, a.max, a.total, a.value_sum) == (5, 7_000_000, 5, both.value_sum)


def test_merge_of_different_precisions_is_refused() -> None:
    with pytest.raises(HistogramError, match="precision differs"):
        Histogram(2).merge(Histogram(3))


def test_empty_histogram_reports_nothing() -> None:
    hist = Histogram()
    assert hist.percentile(99.0) is None
    assert hist.mean is None
    assert hist.percentiles([50.0, 99.0]) == {50.0: None, 99.0: None}


@pytest.mark.parametrize(
    ("value", "count"), [(-1, 1), (10**12, 1), (5, 0)], ids=["negative", "huge", "count0"]
)
def test_out_of_range_input_is_refused(value: int, count: int) -> None:
    with pytest.raises(HistogramError):
        Histogram().record(value, count)


def test_percentiles_in_one_pass_equal_single_reads() -> None:
    rng = random.Random(3)
    hist = Histogram()
    for _ in range(5_000):
        hist.record(rng.randrange(1, 10**7))
    many = hist.percentiles(PERCENTILES)
    assert many == {p: hist.percentile(p) for p in PERCENTILES}


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=200))
def test_json_round_trip_keeps_every_count(values: list[int]) -> None:
    hist = Histogram()
    for v in values:
        hist.record(v)
    back = Histogram.from_json(hist.to_json())
    assert back.same_counts(hist)
    assert (back.min, back.max, back.total, back.value_sum) == (
        hist.min,
        hist.max,
        hist.total,
        hist.value_sum,
    )


@given(st.integers(min_value=0, max_value=10**10))
def test_every_value_lies_within_its_slot(value: int) -> None:
    hist = Histogram()
    low, high = hist.lowest_equivalent(value), hist.highest_equivalent(value)
    assert low <= value <= high
    assert high - low <= max(0, value) / 1000
