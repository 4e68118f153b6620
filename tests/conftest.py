"""Shared fixtures: a real Mosquitto per test (or module) on a free loopback port."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custody.broker import BrokerConfig, Mosquitto

ROOT = Path(__file__).resolve().parent.parent
# The shared (read-only) data folder; CUSTODY_SHARED_DATA overrides it (worktrees, CI).
SHARED_DATA = Path(os.environ.get("CUSTODY_SHARED_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A fresh anonymous Mosquitto for one test."""
    b = Mosquitto(BrokerConfig())
    b.start()
    try:
        yield b
    finally:
        b.close()


# Test modules whose tests share a module- or session-scoped fixture (a broker, a provisioned
# site) and build on what earlier tests of the module did: each runs whole on one worker.
_SHARED_STATE_MODULES = frozenset(
    f"tests/{p.name}" for p in Path(__file__).parent.glob("test_*.py")
    if 'scope="module"' in p.read_text() or 'scope="session"' in p.read_text())


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Distribute single tests, except that a shared-state module goes to one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesKeptTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in _SHARED_STATE_MODULES else nodeid

    return ModulesKeptTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the long end-to-end tests first, so parallel workers do not finish on a tail of them."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
