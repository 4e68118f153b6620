"""Actors on the floor: who is in which room now, and what the virtual devices should see."""

import threading
from dataclasses import dataclass, field

OUTSIDE = "outside"


@dataclass
class BandFlags:
    """Condition bits a band reports over UHF."""

    tamper: bool = False
    battery_low: bool = False


@dataclass
class Floor:
    """Where every person is (thread-safe); the device pump reads it, steps change it."""

    where: dict[str, str] = field(default_factory=dict)  # person -> room or OUTSIDE
    flags: dict[str, BandFlags] = field(default_factory=dict)
    behaviour: dict[str, tuple[str, float]] = field(default_factory=dict)  # room -> (kind, since)
    unread: dict[str, float] = field(default_factory=dict)  # person -> missed reads until (s)
    echo: dict[str, tuple[str, float]] = field(default_factory=dict)  # person -> (room, until)
    worn: dict[str, str] = field(default_factory=dict)  # person -> whose band they wear
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def move(self, people: list[str], room: str) -> dict[str, str]:
        """Put people in a room; returns where each was before."""
        with self._lock:
            before = {p: self.where.get(p, OUTSIDE) for p in people}
            for p in people:
                self.where[p] = room
            return before

    def in_room(self, room: str) -> list[str]:
        """People in a room now, in a stable order."""
        with self._lock:
            return sorted(p for p, r in self.where.items() if r == room)

    def occupied(self) -> dict[str, list[str]]:
        """Room -> people, for every occupied room."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for p, r in sorted(self.where.items()):
                if r != OUTSIDE:
                    out.setdefault(r, []).append(p)
            return out

    def miss_reads(self, person: str, until: float) -> None:
        """No reader reads this band until custody second `until` (a missed read streak)."""
        with self._lock:
            self.unread[person] = until

    def echo_in(self, person: str, room: str, until: float) -> None:
        """A second room's reader also reads this band until `until` (seen by two readers)."""
        with self._lock:
            self.echo[person] = (room, until)

    def read_by_room(self, now: float) -> dict[str, list[str]]:
        """Room -> bands its readers read now: the occupants minus missed reads, plus echoes."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for p, r in sorted(self.where.items()):
                if r != OUTSIDE and self.unread.get(p, -1.0) <= now:
                    out.setdefault(r, []).append(p)
            for p, (r, until) in sorted(self.echo.items()):
                if until > now and p not in out.get(r, []):
                    out.setdefault(r, []).append(p)
            return out

    def swap_bands(self, a: str, b: str) -> None:
        """Two people exchange the bands they wear (swapping back restores them)."""
        with self._lock:
            wa, wb = self.worn.get(a, a), self.worn.get(b, b)
            self.worn[a], self.worn[b] = wb, wa

    def wears(self, person: str) -> str:
        """Whose band the person wears now (their own unless swapped)."""
        with self._lock:
            return self.worn.get(person, person)

    def set_flags(self, person: str, tamper: bool, battery_low: bool) -> None:
        """Change what a band reports about itself."""
        with self._lock:
            self.flags[person] = BandFlags(tamper, battery_low)

    def flags_of(self, person: str) -> BandFlags:
        """A band's condition bits."""
        with self._lock:
            return self.flags.get(person, BandFlags())

    def set_behaviour(self, room: str, kind: str, since: float) -> None:
        """What the people in a room's camera view are doing from custody time `since`
        ('none' clears it)."""
        with self._lock:
            if kind == "none":
                self.behaviour.pop(room, None)
            else:
                self.behaviour[room] = (kind, since)

    def behaviour_of(self, room: str) -> tuple[str, float] | None:
        """The behaviour shown in a room, if any."""
        with self._lock:
            return self.behaviour.get(room)
