"""Fixtures of the labpki tests: two independent CA hierarchies, made once per session."""

from __future__ import annotations

import pytest

from labpki import Hierarchy, make_hierarchy


@pytest.fixture(scope="session")
def hierarchy() -> Hierarchy:
    return make_hierarchy("test lab")


@pytest.fixture(scope="session")
def other_hierarchy() -> Hierarchy:
    return make_hierarchy("other lab")
