# `machine` for the MicroPython unix port in tests: pins read from files, a UART fed by a
# pty, a watchdog that records its feeds. Device code uses the same names on real boards.
#   CUSTODY_FW_PINS=<dir>: Pin(n).value() reads <dir>/<n> ("0"/"1"); absent = pull level.
#   CUSTODY_FW_UART_<id>=<path>: UART(id) reads that tty (a pty the test writes to).
#   CUSTODY_FW_WDT=<file>: WDT.feed() writes the feed count there (tests read it).
# Pin IRQs are not emulated: the firmware polls every pin as well, so tests hold levels
# for longer than one poll period.
import os
import select
import sys
import time


def _env(name):
    return os.getenv(name)


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.handler = None
        self._out = 0
        if value is not None:
            self.value(value)

    def _path(self):
        d = _env("CUSTODY_FW_PINS")
        return None if d is None else "%s/%s" % (d, self.id)

    def value(self, v=None):
        if v is not None:
            self._out = 1 if v else 0
            p = self._path()
            if p is not None and self.mode == Pin.OUT:
                with open(p + ".out", "w") as f:
                    f.write(str(self._out))
            return None
        if self.mode == Pin.OUT:
            return self._out
        p = self._path()
        if p is not None:
            try:
                with open(p) as f:
                    return 1 if f.read().strip() == "1" else 0
            except OSError:
                pass
        return 1 if self.pull == Pin.PULL_UP else 0

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=3):
        self.handler = handler


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1
        p = _env("CUSTODY_FW_WDT")
        if p is not None and self.feeds % 100 == 1:
            with open(p, "w") as f:
                f.write(str(self.feeds))


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None,
                 timeout=0, rxbuf=256):
        self.id = id
        self.baudrate = baudrate
        path = _env("CUSTODY_FW_UART_%s" % id)
        if path is None:
            raise OSError("no tty for UART %s (set CUSTODY_FW_UART_%s)" % (id, id))
        self._f = open(path, "rb")
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)

    def any(self):
        return 1 if self._poll.poll(0) else 0

    def read(self, n=-1):
        out = bytearray()
        while (n < 0 or len(out) < n) and self._poll.poll(0):
            b = self._f.read(1)
            if not b:
                break
            out += b
        return bytes(out) if out else None


def reset():
    sys.exit(3)


def reset_cause():
    return 1


def unique_id():
    return b"\x00unixfw"


def idle():
    time.sleep_ms(1)


PWRON_RESET = 1
WDT_RESET = 3
