"""Which bands are in the room, taps, and crossings from paired door readers.

Pure state: every method takes the time, so tests and a sped-up clock drive it directly.
`now` is custody time (seconds); `mono` is real monotonic time (tap re-arming is about how
long a reader keeps repeating a tag, which is device time, not custody time).
"""

from dataclasses import dataclass, field
from typing import Any

from .drivers import Read

EventOut = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ReaderRole:
    """What a reader's reads mean: role, the room it reports for, and its door if any."""

    id: str
    role: str  # presence | tap | door
    room: str  # the node's room, or for a door reader the room it stands in
    door: str | None = None


@dataclass
class PresentBand:
    """A band currently counted in the room."""

    reader: str
    entered: float
    last_seen: float


@dataclass
class Presence:
    """Presence (TTL), taps (re-armed after the band leaves the field) and crossings."""

    room: str
    readers: dict[str, ReaderRole]
    ttl_s: float
    crossing_window_s: float = 10.0
    tap_rearm_s: float = 0.5
    present: dict[str, PresentBand] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)  # any reader, custody time
    status: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # band -> (tamper, low)
    _tap_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _door_pending: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)

    def on_read(self, reader_id: str, read: Read, now: float, mono: float) -> list[EventOut]:
        """Events caused by one read."""
        r = self.readers.get(reader_id)
        if r is None:
            return []
        out: list[EventOut] = []
        band = read.band
        self.last_seen[band] = now
        if read.tamper is not None or read.battery_low is not None:
            flags = (bool(read.tamper), bool(read.battery_low))
            if flags != self.status.get(band, (False, False)):
                out.append(("band.status", {"band": band, "reader": r.id, "tamper": flags[0],
                                            "battery_low": flags[1]}))
            self.status[band] = flags
        if r.role == "presence":
            p = self.present.get(band)
            if p is None:
                self.present[band] = PresentBand(r.id, now, now)
                body: dict[str, Any] = {"band": band, "room": self.room, "reader": r.id}
                if read.rssi is not None:
                    body["rssi"] = read.rssi
                out.append(("presence.enter", body))
            else:
                p.last_seen, p.reader = now, r.id
            return out
        last = self._tap_seen.get((r.id, band))
        self._tap_seen[(r.id, band)] = mono
        if last is None or mono - last > self.tap_rearm_s:
            tap: dict[str, Any] = {"band": band, "reader": r.id, "room": r.room}
            if r.door is not None:
                tap["door"] = r.door
            out.append(("tap", tap))
        if r.role == "door" and r.door is not None:
            key = (r.door, band)
            pend = self._door_pending.get(key)
            if pend is not None and pend[0] != r.room and now - pend[1] <= self.crossing_window_s:
                out.append(("crossing", {"band": band, "door": r.door, "from_room": pend[0],
                                         "to_room": r.room}))
            # The latest side read starts (or refreshes) the next pairing.
            self._door_pending[key] = (r.room, now)
        return out

    def tick(self, now: float, mono: float) -> list[EventOut]:
        """Leave events for bands not read within the TTL; forget stale tap/door state."""
        out: list[EventOut] = []
        for band, p in list(self.present.items()):
            if now - p.last_seen > self.ttl_s:
                del self.present[band]
                out.append(("presence.leave", {"band": band, "room": self.room,
                                               "reader": p.reader,
                                               "seen_ts": int(p.last_seen * 1000)}))
        for key, t in list(self._tap_seen.items()):
            if mono - t > self.tap_rearm_s * 4:
                del self._tap_seen[key]
        for dkey, (_, t) in list(self._door_pending.items()):
            if now - t > self.crossing_window_s:
                del self._door_pending[dkey]
        for band, t in list(self.last_seen.items()):
            if now - t > self.ttl_s and band not in self.present:
                del self.last_seen[band]
        return out

    def next_change(self) -> float | None:
        """Custody time at which the next band expires (leave / no longer recently seen)."""
        times = [p.last_seen for p in self.present.values()] + list(self.last_seen.values())
        return min(times) + self.ttl_s if times else None

    def recently_seen(self) -> set[str]:
        """Bands read by any reader of the node within the TTL (or present)."""
        return set(self.last_seen) | set(self.present)
