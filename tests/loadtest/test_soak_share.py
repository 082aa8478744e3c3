"""The soak's first-access share: 0 leaves the device records out of a run (leak hunting)."""

from __future__ import annotations

import pytest

from loadtest.profiles import Op, load_profile
from loadtest.soak import FIRST_ACCESS_SHARE, SoakError, steady_profile


def test_share_zero_runs_the_mix_without_first_accesses() -> None:
    base = load_profile("morning_rush")
    profile = steady_profile(base, seconds=600, rate=20, first_access_share=0.0)
    ops = dict(profile.workload)
    assert Op.FIRST_ACCESS not in ops
    assert ops == {op: w for op, w in base.workload if op is not Op.FIRST_ACCESS}


def test_default_share_is_the_documented_trickle() -> None:
    profile = steady_profile(load_profile("morning_rush"), seconds=600, rate=20)
    ops = dict(profile.workload)
    assert ops[Op.FIRST_ACCESS] / sum(ops.values()) == pytest.approx(FIRST_ACCESS_SHARE)


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_share_out_of_range_is_refused_naming_it(share: float) -> None:
    with pytest.raises(SoakError, match="first access share"):
        steady_profile(load_profile("morning_rush"), seconds=60, first_access_share=share)
