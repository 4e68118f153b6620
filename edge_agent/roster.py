"""The band roster the supervisor publishes, signed with this node's key and retained."""

import json
from dataclasses import dataclass
from typing import Any

from protocol.envelope import verify
from protocol.ids import BAND_RE

# A visitor's or lawyer's band is known (not an unknown band) and never counts as an officer.
ROLES = ("officer", "detainee", "visitor", "lawyer")


class RosterError(ValueError):
    """A roster payload that is not acceptable."""


@dataclass(frozen=True)
class BandInfo:
    """Who wears a band."""

    role: str
    sex: str | None = None
    person: str | None = None
    case: str | None = None


@dataclass(frozen=True)
class Roster:
    """A verified roster version."""

    version: int
    bands: dict[str, BandInfo]

    def role(self, band: str) -> str | None:
        """'officer', 'detainee', or None for a band the roster does not hold."""
        info = self.bands.get(band)
        return None if info is None else info.role

    def to_json(self) -> str:
        """Serialised for the outbox DB."""
        return json.dumps({"version": self.version, "bands": {
            b: {k: v for k, v in vars(i).items() if v is not None} for b, i in self.bands.items()}})


def parse_body(body: dict[str, Any]) -> Roster:
    """Build a Roster from a roster body, refusing malformed entries."""
    version, bands = body.get("version"), body.get("bands")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RosterError("roster version must be a non-negative integer")
    if not isinstance(bands, dict):
        raise RosterError("roster bands must be an object")
    out: dict[str, BandInfo] = {}
    for band, info in bands.items():
        if not isinstance(band, str) or not BAND_RE.match(band):
            raise RosterError(f"roster band {band!r} is not lower-case hex")
        if not isinstance(info, dict) or info.get("role") not in ROLES:
            raise RosterError(f"roster band {band}: role must be one of {ROLES}")
        fields = {k: info.get(k) for k in ("sex", "person", "case")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            raise RosterError(f"roster band {band}: sex/person/case must be strings")
        out[band] = BandInfo(info["role"], **fields)
    return Roster(version, out)


def verify_roster(payload: bytes, node: str, key: bytes) -> Roster:
    """Verify a roster payload from node/<node>/roster (VerifyError / RosterError on fault)."""
    event = verify(payload, {node: key}, topic_node=node)
    if event.type != "roster":
        raise RosterError(f"expected a roster, got type {event.type!r}")
    roster = parse_body(event.body)
    if event.seq != roster.version:
        raise RosterError(f"roster seq {event.seq} != version {roster.version}")
    return roster


def load_json(text: str) -> Roster:
    """A roster saved by to_json."""
    return parse_body(json.loads(text))
