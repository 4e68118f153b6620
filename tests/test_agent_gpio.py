"""The GPIO door path (edge_agent/doors.py GpioDoor) through gpiozero's own mock pin factory:
the real gpiozero Button, pull-up and polling; only the pin is simulated."""

import threading
import time

import gpiozero  # a dev dependency (pyproject.toml): the mock pin factory needs no Pi
import pytest
from gpiozero.pins.mock import MockFactory

from edge_agent.doors import make_door


@pytest.fixture
def factory():
    old = gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory = MockFactory()
    try:
        yield gpiozero.Device.pin_factory
    finally:
        gpiozero.Device.pin_factory.reset()
        gpiozero.Device.pin_factory = old


def _wait(pred, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met")


def test_a_contact_to_ground_reports_closed_and_open_debounced(factory):
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_change(door: str, state: str) -> None:
        with lock:
            seen.append((door, state))

    door = make_door("d-holding-1", "gpio:17", active_low=True, debounce_s=0.05)
    door.start(on_change)
    try:
        pin = factory.pin(17)
        _wait(lambda: seen)  # pulled up, nothing pressing: open
        assert seen[-1] == ("d-holding-1", "open")
        pin.drive_low()  # the door closes the contact to ground
        _wait(lambda: seen[-1][1] == "closed")
        for _ in range(5):  # contact bounce shorter than the debounce: nothing reported
            pin.drive_high()
            time.sleep(0.005)
            pin.drive_low()
            time.sleep(0.005)
        time.sleep(0.2)
        assert seen.count(("d-holding-1", "open")) == 1
        pin.drive_high()
        _wait(lambda: seen[-1][1] == "open")
        assert seen == [("d-holding-1", "open"), ("d-holding-1", "closed"),
                        ("d-holding-1", "open")]
        assert door.stats() == {"pin": 17, "failures": 0}
    finally:
        door.stop()
