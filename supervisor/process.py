"""The custody record's pieces: people, room visits, a detainee's custody, latched incidents."""

import hashlib
from dataclasses import dataclass, field
from typing import Any


def incident_id(rule: str, key: str, since_ms: int) -> str:
    """Stable alert id from rule, subject key and the start of the condition."""
    digest = hashlib.sha256(f"{rule}|{key}|{since_ms}".encode()).hexdigest()[:12]
    return f"{rule}-{digest}"


@dataclass(frozen=True)
class Person:
    """Who wears a band."""

    role: str  # officer | detainee | visitor | lawyer
    person: str
    sex: str
    band: str
    case: str | None
    client: str | None = None  # a visitor's or lawyer's detainee
    name: str | None = None  # a visitor's or lawyer's name, as registered (if given)


@dataclass
class Visit:
    """One stay of a detainee in a room, with every officer present during it."""

    room: str
    kind: str
    enter_ms: int
    leave_ms: int | None = None
    officers: set[str] = field(default_factory=set)
    officer_sexes: set[str] = field(default_factory=set)

    def summary(self) -> tuple[Any, ...]:
        """Comparable form."""
        return (self.room, self.enter_ms, self.leave_ms, sorted(self.officers))


@dataclass
class Custody:
    """One detainee's custody record."""

    id: str
    band: str
    case: str
    sex: str
    custody_type: str
    observation: str
    arrived_ms: int
    registered_ms: int
    registered_by: str
    visits: list[Visit] = field(default_factory=list)
    visit: Visit | None = None
    holding_since: int | None = None
    last_verified_ms: int = 0
    welfare: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] | None = None
    belongings: list[dict[str, Any]] = field(default_factory=list)
    temp_approval: dict[str, Any] | None = None
    temp_out: dict[str, Any] | None = None
    temp_exits: list[dict[str, Any]] = field(default_factory=list)
    disposition: dict[str, Any] | None = None
    extension_h: int | None = None
    exit_ms: int | None = None
    timeline: list[tuple[int, str]] = field(default_factory=list)

    @property
    def in_custody(self) -> bool:
        """Registered and not yet exited for good."""
        return self.exit_ms is None

    def summary(self) -> dict[str, Any]:
        """Comparable form of the whole record."""
        return {k: (v.summary() if isinstance(v, Visit) else
                    [x.summary() for x in v] if k == "visits" else v)
                for k, v in sorted(vars(self).items())}


@dataclass
class Incident:
    """A latched happening (exit without approval, panic, security...) until staff close it."""

    id: str
    rule: str
    key: str
    since: int
    detainee: str | None
    room: str | None
    message: str
    count: int = 1
    open: bool = True
