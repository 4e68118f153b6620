"""Refused broker logins, read from Mosquitto's log file.

Mosquitto checks staff passwords itself and tells nobody. Its log (with
`connection_messages true`) is the only trace, and on Mosquitto 2.0.11 (measured) a refused
login reads `New connection from <addr>:<port> on port <p>.` then `Client <unknown>
disconnected, not authorised.`: no account name, no client id. So broker logins are counted
per source address: `threshold` refusals in a row from one address (no successful login from
it in between) is reported once, and counting starts again.
"""

import re
from pathlib import Path

NEW = re.compile(r"New connection from (?P<addr>\[?[0-9A-Fa-f:.]+?\]?):\d+ on port \d+\.")
OK = re.compile(r"New client connected from (?P<addr>\[?[0-9A-Fa-f:.]+?\]?):\d+ as ")
REFUSED = "disconnected, not authorised."


class BrokerLogWatch:
    """Follows the log from its current end; `poll()` returns addresses that crossed the
    threshold since the last poll, with their count."""

    def __init__(self, path: str | Path, threshold: int = 5) -> None:
        self.path, self.threshold = Path(path), threshold
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.last_addr: str | None = None
        self.failures: dict[str, int] = {}
        self.refused_total = 0

    def poll(self) -> list[tuple[str, int]]:
        """Read what was appended (from the start again if the file was rotated)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset = 0
        if size == self.offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
        self.offset += end
        crossed: list[tuple[str, int]] = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            m = NEW.search(line)
            if m:
                self.last_addr = m["addr"]
                continue
            m = OK.search(line)
            if m:
                self.failures.pop(m["addr"], None)
                continue
            if REFUSED in line and self.last_addr is not None:
                self.refused_total += 1
                n = self.failures.get(self.last_addr, 0) + 1
                if n >= self.threshold:
                    crossed.append((self.last_addr, n))
                    n = 0
                self.failures[self.last_addr] = n
        return crossed
