"""The virtual centre: a site file plus the people in it (officers, detainees) with bands."""

import random
from dataclasses import dataclass, field

from protocol.site import Node, Reader, Site


@dataclass(frozen=True)
class Officer:
    """A custody officer wearing a staff band."""

    id: str
    sex: str
    band: str
    name: str = ""
    on_s: float = 0.0  # the shift: on duty from on_s to off_s custody seconds
    off_s: float = float("inf")


@dataclass(frozen=True)
class Detainee:
    """A detainee, banded at registration; `holding` is the room they wait in."""

    id: str
    case: str
    sex: str
    custody_type: str
    observation: str
    band: str
    holding: str = ""
    name: str = ""


@dataclass(frozen=True)
class Visitor:
    """A visitor or a lawyer, banded at the entry desk to see one detainee."""

    id: str
    kind: str  # visitor | lawyer
    band: str
    detainee: str


@dataclass
class Centre:
    """Site + people, and where each of the site's devices is."""

    site: Site
    officers: dict[str, Officer] = field(default_factory=dict)
    detainees: dict[str, Detainee] = field(default_factory=dict)
    visitors: dict[str, Visitor] = field(default_factory=dict)
    bands: "BandMaker | None" = None  # where the planner gets visitors' bands

    def band_of(self, person: str) -> str:
        """The band a person wears (KeyError if unknown)."""
        if person in self.officers:
            return self.officers[person].band
        if person in self.visitors:
            return self.visitors[person].band
        return self.detainees[person].band

    def new_band(self) -> str:
        """A band nobody has yet (for people the plan brings in: visitors)."""
        if self.bands is None:
            self.bands = BandMaker(len(self.officers) * 1000 + len(self.detainees))
            self.bands.used.update(self.band_of(p) for p in [*self.officers, *self.detainees])
        return self.bands.new()

    def rooms_of_kind(self, kind: str) -> list[str]:
        """Ids of the rooms of one kind, in site order."""
        return [r.id for r in self.site.rooms if r.kind == kind]

    def room_nodes(self) -> list[Node]:
        """The site's room nodes (each becomes one agent process)."""
        return [n for n in self.site.nodes if n.kind == "room"]

    def sensor_nodes(self) -> list[Node]:
        """The site's sensor nodes (each becomes one MicroPython firmware process)."""
        return [n for n in self.site.nodes if n.kind == "sensor"]

    def node_of_room(self, room: str) -> Node | None:
        """The room node watching `room`, if any."""
        for n in self.room_nodes():
            if n.room == room:
                return n
        return None

    def readers(self, room: str, role: str) -> list[Reader]:
        """Readers of the room's node with this role."""
        n = self.node_of_room(room)
        return [r for r in n.readers if r.role == role] if n else []

    def door_between(self, a: str, b: str) -> str | None:
        """The door between two rooms, if there is one."""
        for d in self.site.doors:
            if set(d.between) == {a, b}:
                return d.id
        return None


class BandMaker:
    """Unique band ids from a seed (5 random bytes, never repeated)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: set[str] = set()

    def new(self) -> str:
        """A band id nobody has yet."""
        while True:
            b = self.rng.randbytes(5).hex()
            if b not in self.used and b != "0000000000":
                self.used.add(b)
                return b
