"""Shared fixtures: a real Mosquitto per test (or module) on a free loopback port."""

import os
from collections.abc import Iterator
from pathlib import Path

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the long end-to-end tests first, so parallel workers do not finish on a tail of them."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
