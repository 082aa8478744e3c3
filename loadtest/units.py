"""Reading the quantities profiles and the command line write: durations and rates.

Responsibility: turn ``"5s"``, ``"250ms"``, ``"2m"``, ``"100us"`` (or a bare number of seconds)
into seconds, ``"500/s"``, ``"30/m"`` (or a bare number per second) into arrivals per second,
and format them back for people. It must not know where the text came from: callers wrap
``UnitError`` with the file and key.
"""

from __future__ import annotations

import math
import re
from typing import Final

_DURATION: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(us|µs|ms|s|m|h)?\s*")
_RATE: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*(s|m|h))?\s*")
_SCALE: Final = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class UnitError(ValueError):
    """Text that is not the quantity expected; the message shows what would be."""


def parse_duration(value: object) -> float:
    """Seconds from ``5s``/``250ms``/``2m``/``100us``/``1h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration like 5s or 250ms, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _SCALE[match.group(2)]
    else:
        raise UnitError(f"expected a duration like 5s or 250ms, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise UnitError(f"expected a non-negative duration, got {value!r}")
    return seconds


def parse_rate(value: object) -> float:
    """Arrivals per second from ``500/s``, ``30/m``, ``1000/h`` or a bare number per second."""
    if isinstance(value, bool):
        raise UnitError(f"expected a rate like 500/s, got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str) and (match := _RATE.fullmatch(value)):
        rate = float(match.group(1)) / _SCALE[match.group(2)]
    else:
        raise UnitError(f"expected a rate like 500/s or 30/m, got {value!r}")
    if not math.isfinite(rate) or rate <= 0:
        raise UnitError(f"expected a rate above zero, got {value!r}")
    return rate


def format_duration(seconds: float) -> str:
    """``0.00123`` -> ``1.23ms``; ``12.5`` -> ``12.5s``."""
    if seconds >= 1.0:
        return f"{seconds:.3g}s" if seconds < 100 else f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds * 1e6:.3g}us"


def format_micros(micros: float | None) -> str:
    """A latency in microseconds for people; ``-`` when there is none."""
    return "-" if micros is None else format_duration(micros / 1e6)
