"""Plans shaped like real ones, with any JSON value at any depth, only ever raise FaultError.

The plain fuzz of test_fault_plan.py draws arbitrary keys, so it seldom reaches a nested field
such as ``scope.methods[0]`` or ``corrupt_wbxml.command``. Here every level uses the keys the
readers know, so every field meets lists, mappings, NaN and huge numbers. (It found a list in
``scope.methods`` and in ``corrupt_wbxml.command`` raising TypeError: unhashable.)
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_sim.faults import EAS_KEYS, ExchangeFaults
from labfaults import FaultControl, FaultError

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.sampled_from(["", "POST", "get", "Sync", "FolderSync", "/", "/api", "x" * 300])
)
ANY = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
FIELDS: dict[str, list[str]] = {
    "scope": ["path_prefix", "methods", "command"],
    "latency": ["fixed_s", "jitter_s"],
    "error_rate": ["rate", "status"],
    "fail_after": ["n", "status"],
    "hang": ["max_s"],
    "provision_449_on": ["nth", "always_449"],
    "sync_status": ["status", "count"],
    "corrupt_wbxml": ["command", "count"],
}


def field_value(key: str) -> st.SearchStrategy[Any]:
    inner = st.dictionaries(st.sampled_from(FIELDS[key]), ANY | st.lists(ANY, max_size=3))
    return ANY | inner


RULE = st.fixed_dictionaries(
    {},
    optional={
        "scope": field_value("scope"),
        "latency": field_value("latency"),
        "error_rate": field_value("error_rate"),
        "fail_after": field_value("fail_after"),
        "hang": field_value("hang"),
        "down": ANY,
    },
)
PLAN = st.one_of(
    RULE,
    st.fixed_dictionaries({"rules": st.lists(RULE | ANY, max_size=3)}),
).flatmap(
    lambda base: st.fixed_dictionaries(
        {},
        optional={
            "seed": ANY,
            "provision_449_on": field_value("provision_449_on"),
            "sync_status": field_value("sync_status"),
            "corrupt_wbxml": field_value("corrupt_wbxml"),
        },
    ).map(lambda extra: {**base, **extra})
)


@given(PLAN)
def test_exchange_plan_of_any_shape_reads_or_raises_fault_error_only(plan: dict[str, Any]) -> None:
    faults = ExchangeFaults()
    message = ""
    try:
        faults.set_mapping(plan, "PUT /admin/faults")
    except FaultError as exc:
        message = str(exc)
    if message:
        assert message.startswith("PUT /admin/faults")
        assert not faults.active  # a refused plan changes nothing
    else:
        assert faults.active


@given(PLAN)
def test_uem_plan_of_any_shape_reads_or_raises_fault_error_only(plan: dict[str, Any]) -> None:
    # The UEM reads the generic keys only (the EAS keys are unknown keys there).
    generic = {k: v for k, v in plan.items() if k not in EAS_KEYS}
    control = FaultControl()
    message = ""
    try:
        control.set_mapping(generic, "PUT /api/v1/admin/faults")
    except FaultError as exc:
        message = str(exc)
    if message:
        assert message.startswith("PUT /api/v1/admin/faults")
        assert not control.active
    else:
        assert control.active


def test_unhashable_method_or_command_is_a_fault_error_naming_the_field() -> None:
    for plan, path in (
        ({"down": True, "scope": {"methods": [["POST"]]}}, "scope.methods[0]"),
        ({"down": True, "scope": {"methods": [{}]}}, "scope.methods[0]"),
        ({"corrupt_wbxml": {"command": ["Sync"]}}, "corrupt_wbxml.command"),
        ({"corrupt_wbxml": {"command": {"a": 1}}}, "corrupt_wbxml.command"),
    ):
        with pytest.raises(FaultError) as caught:
            ExchangeFaults().parse(plan, "t")
        assert caught.value.path == path
