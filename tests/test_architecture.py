"""The layering rules of DESIGN.md section 1, read from the imports themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("device_sim", "sentry_sim", "uem_sim", "exchange_sim")
PROJECT = (
    *SERVICES,
    "activesync",
    "scenarios",
    "loadtest",
    "simclock",
    "labfaults",
    "labauth",
    "labpki",
)
IO_MODULES = ("asyncio", "aiohttp", "socket", "uvloop", "ssl", "selectors", "httptools")


def imports_of(package: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.extend((path, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_activesync_imports_no_project_package_and_no_io() -> None:
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in imports_of("activesync")
        if top(name) in IO_MODULES or (top(name) in PROJECT and top(name) != "activesync")
    ]
    assert bad == []


#: Lab libraries every actor may use: each stands alone, importing no project package.
STANDALONE = ("simclock", "labfaults", "labauth", "labpki")


@pytest.mark.parametrize("library", STANDALONE)
def test_lab_library_imports_no_project_package(library: str) -> None:
    found = imports_of(library)
    assert found, f"{library}/ has no imports at all: is the package there?"
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in found
        if top(name) in PROJECT and top(name) != library
    ]
    assert bad == []


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service_except_the_uem_contract(service: str) -> None:
    bad = []
    for path, name in imports_of(service):
        if top(name) in SERVICES and top(name) != service:
            allowed = service == "sentry_sim" and name.startswith("uem_sim.contract")
            if not allowed:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert bad == []


def test_uem_contract_is_pure_data() -> None:
    contract = ROOT / "uem_sim" / "contract.py"
    if not contract.exists():
        pytest.fail("uem_sim/contract.py is the one module sentry_sim may import; it is missing")
    bad = [
        name
        for path, name in imports_of("uem_sim")
        if path == contract and (top(name) in IO_MODULES or top(name) in PROJECT)
    ]
    assert bad == []
