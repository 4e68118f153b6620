"""systemd notifications (READY, WATCHDOG, STOPPING) without a library: one datagram each."""

import contextlib
import os
import socket


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET; does nothing when it is not set."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        # '@' names an abstract socket: the address starts with a NUL byte.
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else 0.0

    @property
    def enabled(self) -> bool:
        """True when systemd is listening."""
        return bool(self.addr)

    def notify(self, state: str) -> bool:
        """Send one state string (e.g. 'READY=1'); False if it could not be sent."""
        if not self.addr:
            return False
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), self.addr)
            return True
        return False

    def watchdog_interval(self) -> float:
        """How often to ping the watchdog: half its timeout (0 when no watchdog)."""
        return self.watchdog_s / 2
