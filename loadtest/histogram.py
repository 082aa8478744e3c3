"""An HDR-style latency histogram: fixed relative precision over a wide range, in little memory.

Responsibility: count integer values (microseconds, in this package) in log-spaced buckets so
that any percentile can be read back within a relative error of ``10 ** -significant_digits``;
record with a count; record with coordinated-omission correction; merge; report min, max, mean
and percentiles; round-trip through JSON. It must not read clocks or do I/O: values come in,
numbers go out.

Theory of operation (the bucket scheme HdrHistogram describes, written afresh here):
- ``sub_bucket_count`` is the smallest power of two at least ``2 * 10**digits``; values below it
  are counted exactly (bucket 0). Each further bucket ``b`` covers ``[2**(b+m), 2**(b+m+1))``
  (``m = log2(sub_bucket_count)``) with ``sub_bucket_count / 2`` slots of width ``2**b``, so the
  width of a slot is never more than ``1 / (sub_bucket_count / 2)`` of the values in it.
- Slots are numbered by one flat ``index``; counts live in a dict (sparse: a per-second
  histogram of a load run touches a few hundred slots, not tens of thousands).
- A percentile ``p`` is the nearest-rank sample (rank ``ceil(p/100 * total)``), reported as the
  highest value equivalent to its slot: never below the exact sorted-sample percentile and
  never above it by more than the slot width.
- Coordinated omission (``record_corrected``): a closed-loop client that stalls for ``v`` while
  expecting to send every ``interval`` silently skips the requests it would have sent meanwhile;
  they are added back as ``v - interval``, ``v - 2*interval``, ... down to ``interval``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

import attrs

#: The digits the load generator uses (0.1% precision).
DEFAULT_DIGITS: Final = 3
#: Largest value accepted: one day in microseconds (a load run never waits longer).
MAX_VALUE: Final = 86_400 * 1_000_000


class HistogramError(ValueError):
    """A value, count or merge that the histogram cannot take."""


def _digits(_instance: object, _attribute: object, value: int) -> None:
    if not 1 <= value <= 5:
        raise HistogramError(f"significant digits: expected 1..5, got {value}")


@attrs.define(eq=False)
class Histogram:
    """Counts of non-negative integer values with ``significant_digits`` of precision."""

    significant_digits: int = attrs.field(default=DEFAULT_DIGITS, validator=_digits)
    _counts: dict[int, int] = attrs.field(factory=dict, init=False)
    total: int = attrs.field(default=0, init=False)
    #: Sum of every recorded value (weighted by count): the mean is exact, not bucketed.
    value_sum: int = attrs.field(default=0, init=False)
    min: int | None = attrs.field(default=None, init=False)
    max: int | None = attrs.field(default=None, init=False)
    _magnitude: int = attrs.field(init=False)
    _half: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        wanted = 2 * 10**self.significant_digits
        self._magnitude = max(1, math.ceil(math.log2(wanted)))
        self._half = 1 << (self._magnitude - 1)

    # -- bucket arithmetic ---------------------------------------------------------------

    @property
    def sub_bucket_count(self) -> int:
        return 1 << self._magnitude

    def index_of(self, value: int) -> int:
        """The flat slot index that counts ``value``."""
        bucket = max(0, value.bit_length() - self._magnitude)
        sub = value >> bucket
        if bucket == 0:
            return sub
        # Buckets past the first use only their upper half of sub-buckets (the lower half
        # would repeat the previous bucket's range at a coarser width).
        return (bucket + 1) * self._half + (sub - self._half)

    def _bounds(self, index: int) -> tuple[int, int]:
        """(lowest, highest) value equivalent to slot ``index``."""
        if index < 2 * self._half:
            return index, index
        bucket = index // self._half - 1
        sub = index - (bucket + 1) * self._half + self._half
        low = sub << bucket
        return low, low + (1 << bucket) - 1

    def lowest_equivalent(self, value: int) -> int:
        return self._bounds(self.index_of(value))[0]

    def highest_equivalent(self, value: int) -> int:
        return self._bounds(self.index_of(value))[1]

    # -- recording -----------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Count ``value`` (an integer in 0..MAX_VALUE) ``count`` times."""
        if not 0 <= value <= MAX_VALUE:
            raise HistogramError(f"value: expected 0..{MAX_VALUE}, got {value}")
        if count < 1:
            raise HistogramError(f"count: expected at least 1, got {count}")
        index = self.index_of(value)
        self._counts[index] = self._counts.get(index, 0) + count
        self.total += count
        self.value_sum += value * count
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def record_corrected(self, value: int, expected_interval: int, count: int = 1) -> None:
        """Record ``value``, plus the samples a stalled closed-loop client failed to send.

        With ``expected_interval`` > 0 and ``value`` above it, also records ``value - k *
        expected_interval`` for k = 1, 2, ... while that is at least ``expected_interval``.
        """
        self.record(value, count)
        if expected_interval <= 0 or value <= expected_interval:
            return
        missing = value - expected_interval
        while missing >= expected_interval:
            self.record(missing, count)
            missing -= expected_interval

    def merge(self, other: Histogram) -> None:
        """Add every count of ``other`` (same precision) to this histogram."""
        if other.significant_digits != self.significant_digits:
            raise HistogramError(
                f"merge: precision differs ({other.significant_digits} significant digits "
                f"into {self.significant_digits})"
            )
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        self.total += other.total
        self.value_sum += other.value_sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max

    # -- reading ---------------------------------------------------------------------------

    @property
    def mean(self) -> float | None:
        return self.value_sum / self.total if self.total else None

    def percentile(self, p: float) -> int | None:
        """The value at percentile ``p`` (0..100); None when nothing was recorded.

        Nearest rank, reported as the highest value of the sample's slot (capped by ``max``,
        so p100 is the exact maximum).
        """
        if not 0.0 <= p <= 100.0:
            raise HistogramError(f"percentile: expected 0..100, got {p}")
        if self.total == 0:
            return None
        rank = max(1, math.ceil(p / 100.0 * self.total))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                high = self._bounds(index)[1]
                assert self.max is not None
                return min(high, self.max)
        return self.max  # pragma: no cover - the counts add up to total

    def percentiles(self, ps: Iterable[float]) -> dict[float, int | None]:
        """Several percentiles in one pass over the slots."""
        wanted = sorted(set(ps))
        for p in wanted:
            if not 0.0 <= p <= 100.0:
                raise HistogramError(f"percentile: expected 0..100, got {p}")
        out: dict[float, int | None] = dict.fromkeys(wanted)
        if self.total == 0:
            return out
        assert self.max is not None
        slots = iter(sorted(self._counts.items()))
        seen = 0
        high = 0
        for p in wanted:
            rank = max(1, math.ceil(p / 100.0 * self.total))
            while seen < rank:
                index, count = next(slots)
                seen += count
                high = self._bounds(index)[1]
            out[p] = min(high, self.max)
        return out

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """(lowest, highest, count) of every non-empty slot, in value order."""
        for index in sorted(self._counts):
            low, high = self._bounds(index)
            yield low, high, self._counts[index]

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; ``from_json`` reads it back to an equal histogram."""
        return {
            "significant_digits": self.significant_digits,
            "total": self.total,
            "sum": self.value_sum,
            "min": self.min,
            "max": self.max,
            "counts": [[i, c] for i, c in sorted(self._counts.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Histogram:
        digits = data.get("significant_digits")
        counts = data.get("counts")
        if not isinstance(digits, int) or not isinstance(counts, list):
            raise HistogramError(
                "histogram JSON: expected 'significant_digits' (int) and 'counts' (list)"
            )
        hist = cls(digits)
        for pair in counts:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(x, int) for x in pair)
            ):
                raise HistogramError(f"histogram JSON: counts: expected [index, count], got {pair}")
            index, count = pair
            if index < 0 or count < 1:
                raise HistogramError(f"histogram JSON: counts: bad slot {pair}")
            hist._counts[index] = hist._counts.get(index, 0) + count
            hist.total += count
        total_sum = data.get("sum")
        hist.value_sum = total_sum if isinstance(total_sum, int) else 0
        low, high = data.get("min"), data.get("max")
        hist.min = low if isinstance(low, int) else None
        hist.max = high if isinstance(high, int) else None
        return hist

    def same_counts(self, other: Histogram) -> bool:
        """True when both hold the same counts at the same precision (for round-trip checks)."""
        return self.significant_digits == other.significant_digits and self._counts == other._counts
