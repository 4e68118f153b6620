# Door contacts (debounced) and panic/call buttons (never muted), polled every loop and,
# where the port has them, latched by pin interrupts so a short press is never missed.
import time

from machine import Pin


class Door:
    """A reed contact: closed contact pulls the pin to its active level (door closed)."""

    def __init__(self, door_id, pin, active_low=True, debounce_ms=50):
        self.id = door_id
        self.pin = Pin(pin, Pin.IN, Pin.PULL_UP if active_low else Pin.PULL_DOWN)
        self.active_low = active_low
        self.debounce_ms = debounce_ms
        self.state = self._read()
        self._candidate = self.state
        self._since = time.ticks_ms()

    def _read(self):
        active = self.pin.value() == (0 if self.active_low else 1)
        return "closed" if active else "open"

    def poll(self):
        """The new state once a change has held for debounce_ms, else None."""
        now = time.ticks_ms()
        s = self._read()
        if s != self._candidate:
            self._candidate, self._since = s, now
            return None
        if s != self.state and time.ticks_diff(now, self._since) >= self.debounce_ms:
            self.state = s
            return s
        return None


class Button:
    """A panic or call button. Every press is an event: no rate limit, no mute."""

    def __init__(self, button_id, kind, pin, active_low=True):
        self.id = button_id
        self.kind = kind
        self.active_low = active_low
        self.pin = Pin(pin, Pin.IN, Pin.PULL_UP if active_low else Pin.PULL_DOWN)
        self._down = self._pressed()
        self._latched = 0
        try:
            trig = Pin.IRQ_FALLING if active_low else Pin.IRQ_RISING
            self.pin.irq(handler=self._irq, trigger=trig)
        except (AttributeError, ValueError):
            pass  # no interrupts on this port: polling alone

    def _irq(self, _pin):
        self._latched += 1

    def _pressed(self):
        return self.pin.value() == (0 if self.active_low else 1)

    def poll(self):
        """Number of new presses since the last poll (0 if none)."""
        down = self._pressed()
        presses = 0
        if down and not self._down:
            presses = 1
        latched, self._latched = self._latched, 0
        if latched and not presses and not down and not self._down:
            # Pressed and released between two polls: only the IRQ saw it. (Edges while
            # the last poll saw it held are release bounce, not a new press.)
            presses = 1
        self._down = down
        return presses
