"""A long, realistic journal made quickly: a centre of many rooms through custody days.

Entries are written straight through the journal API (valid chain, correctly sealed events,
the supervisor's own entries in its formats), without a broker or the rules: the start-up
tests fold it from #1 and from snapshots, and benchmarks/bench_startup.py builds a million
entries with it. What is in it: camera heartbeats, person counts and doors from every room;
detainees registered, searched, held, visited, interviewed, released, each with two officers;
alerts raised, acknowledged and resolved (one marked false); falls and tampers that open and
end; band status; a panic button; nodes going offline and back, a node restarting with a new
epoch, a sequence gap, a rejected message, health flags.
"""

import heapq
import json
import random
from collections.abc import Iterator
from typing import Any

from protocol import PROTOCOL_VERSION
from protocol.chain import entry_hash
from protocol.envelope import mac_hex
from supervisor.journal import SUPERVISOR_NODE, Journal
from supervisor.process import incident_id

EPOCH = 1_764_000_000
T0 = 1_764_000_000_000
_ENC = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # canonical for ASCII ids


def centre_toml(site_id: str, holding: int, interview: int) -> str:
    """A site with entry, search, corridor, medical, exit, `holding` holding rooms and
    `interview` interview rooms; every room has a node with a presence reader and a camera,
    rooms off the corridor a door."""
    parts = [f'[site]\nid = "{site_id}"\n', "[rules]\ndevice_offline_s = 30\n"]
    rooms = centre_rooms(holding, interview)
    for rid, kind in rooms:
        parts.append(f'[[rooms]]\nid = "{rid}"\nkind = "{kind}"\n')
    for rid, kind in rooms:
        if kind in ("holding", "interview", "medical"):
            parts.append(f'[[doors]]\nid = "d-{rid}"\nbetween = ["{rid}", "corridor"]\n')
    for rid, kind in rooms:
        node = [f'[[nodes]]\nid = "n-{rid}"\nroom = "{rid}"\n',
                f'[[nodes.readers]]\nid = "{rid}-uhf"\ntype = "uhf"\nrole = "presence"\n'
                'port = "/dev/null"\n',
                f'[[nodes.cameras]]\nid = "cam-{rid}"\nsource = "0"\n']
        if kind in ("holding", "interview", "medical"):
            node.append(f'[[nodes.doors]]\ndoor = "d-{rid}"\ntype = "gpio"\npin = 17\n')
        if kind == "holding":
            node.append('[[nodes.buttons]]\nid = "p-' + rid + '"\nkind = "panic"\npin = 6\n')
        parts.append("".join(node))
    return "\n".join(parts)


def centre_keys(rooms: list[str]) -> dict[str, bytes]:
    """A key per room node."""
    return {f"n-{r}": bytes([i % 251 + 1]) * 32 for i, r in enumerate(rooms)}


def band(role: str, i: int) -> str:
    """A 10-hex-digit band id."""
    return f"{0xA0 if role == 'o' else 0xD0:02x}{i:08x}"


class CentreJournal:
    """Writes a centre's custody days into a journal, entry by entry, in time order."""

    def __init__(self, journal: Journal, rooms: list[tuple[str, str]], keys: dict[str, bytes],
                 seed: int = 1, lanes: int = 8, pace: float = 1.0) -> None:
        self.j, self.keys, self.rng = journal, keys, random.Random(seed)
        self.pace = pace  # < 1: custody steps closer together (more detainees per entry)
        self.rooms = rooms
        self.holding = [r for r, k in rooms if k == "holding"]
        self.interview = [r for r, k in rooms if k == "interview"]
        self.now = T0
        self.seq: dict[str, int] = {}
        self.epoch: dict[str, int] = {}
        self.lanes = lanes
        self.active = 0
        self.next_detainee = 0
        self.officers = [f"o{i}" for i in range(2 * lanes + 2)]
        self.queue: list[tuple[int, int, Iterator[float]]] = []
        self.tick = 0
        self.txn = 0
        self.offline: str | None = None
        self.rows: list[tuple[int, str, int, int, str, bytes, str]] = []

    # ---- writing entries ----------------------------------------------------------------

    def event(self, room: str, etype: str, body: dict[str, Any], skip: int = 0) -> None:
        """A sealed event from the room's node (canonical JSON via the C encoder)."""
        node = f"n-{room}"
        seq = self.seq[node] = self.seq.get(node, 0) + 1 + skip
        epoch = self.epoch.setdefault(node, EPOCH)
        env = _ENC.encode({"v": PROTOCOL_VERSION, "node": node, "epoch": epoch, "seq": seq,
                           "ts": self.now, "type": etype, "body": body})
        payload = _ENC.encode({"env": env, "mac": mac_hex(self.keys[node],
                                                          env.encode("ascii"))})
        self.append(node, epoch, seq, "event", payload.encode("ascii"))

    def own(self, kind: str, obj: dict[str, Any]) -> None:
        """An entry the supervisor writes itself."""
        self.j.own_seq += 1
        self.append(SUPERVISOR_NODE, 1, self.j.own_seq, kind,
                    _ENC.encode({"ts": self.now, **obj}).encode("ascii"))

    def append(self, node: str, epoch: int, seq: int, kind: str, payload: bytes) -> None:
        """Chain an entry as Journal.append does; rows are inserted in batches (flush)."""
        self.j.head = entry_hash(self.j.head, node, epoch, seq, kind, payload)
        self.j.count += 1
        self.rows.append((self.j.count, node, epoch, seq, kind, payload, self.j.head.hex()))

    def flush(self) -> None:
        """Insert the rows chained so far, in one transaction."""
        self.j.db.execute("BEGIN IMMEDIATE")
        self.j.db.executemany("INSERT INTO journal (idx, node, epoch, seq, kind, payload, hash) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)", self.rows)
        self.j.db.execute("COMMIT")
        self.rows = []

    def staff(self, user: str, command: str, args: dict[str, Any]) -> None:
        """A staff command as the supervisor journals it once accepted."""
        self.txn += 1
        self.own("staff", {"command": command, "txn": f"t{self.txn}", "user": user,
                           "args": args})

    def alert(self, rule: str, key: str, state: str, since: int, severity: str,
              detainee: str | None, room: str | None, by: str | None = None) -> str:
        """One alert lifecycle message (as supervisor/alerts.py journals them)."""
        aid = incident_id(rule, key, since)
        self.own("alert", {"id": aid, "rule": rule, "state": state, "severity": severity,
                           "detainee": detainee, "room": room, "raised_ts": since,
                           "message": f"{rule}: {key}", "by": by,
                           "action": "attended" if by else None})
        return aid

    def enter(self, who: str, room: str) -> None:
        """A band read into a room."""
        self.event(room, "presence.enter", {"band": self.band_of(who), "room": room,
                                            "reader": f"{room}-uhf"})

    def leave(self, who: str, room: str) -> None:
        """A band no longer read in a room (its last read a moment ago)."""
        self.event(room, "presence.leave", {"band": self.band_of(who), "room": room,
                                            "reader": f"{room}-uhf", "seen_ts": self.now - 900})

    def cross(self, who: str, src: str, dst: str) -> None:
        """A band through the door between a room and the corridor."""
        door = f"d-{dst if src == 'corridor' else src}"
        self.event(dst, "crossing", {"band": self.band_of(who), "door": door,
                                     "from_room": src, "to_room": dst})

    @staticmethod
    def band_of(who: str) -> str:
        """The band a person wears."""
        return band(who[0], int(who[1:]))

    # ---- a detainee's day ---------------------------------------------------------------

    def detainee(self, i: int) -> Iterator[float]:
        """One custody from arrival to release: yields the seconds until its next step."""
        rng = self.rng
        d, case = f"d{i}", f"c{i // 2}"
        h, iv = self.holding[i % len(self.holding)], self.interview[i % len(self.interview)]
        k = 2 * (i % self.lanes)
        oa, ob = self.officers[k], self.officers[k + 1]
        self.enter(oa, "entry")
        self.enter(d, "entry")
        yield rng.uniform(20, 90)
        self.staff(oa, "register-detainee", {"detainee": d, "band": self.band_of(d),
                                             "case": case, "sex": "m",
                                             "custody_type": "criminal-summons",
                                             "observation": rng.choice(["level1", "level2"])})
        yield 10
        for p in (oa, ob, d):
            self.enter(p, "search")
        yield rng.uniform(150, 400)
        self.staff(oa, "record-search", {"detainee": d, "officers": [oa, ob],
                                         "result": "completed"})
        self.staff(ob, "log-belongings", {"detainee": d, "locker": f"l{i % 40}",
                                          "items": ["phone", "keys"]})
        yield 5
        for p in (oa, d):
            self.enter(p, "corridor")
        yield 8
        for p in (d, oa):
            self.cross(p, "corridor", h)
        yield 15
        self.cross(oa, h, "corridor")
        for _ in range(rng.randint(1, 3)):
            yield rng.uniform(600, 1800)
            self.cross(ob, "corridor", h)
            yield 20
            self.staff(ob, "record-welfare-check", {"detainee": d, "note": "checked"})
            self.cross(ob, h, "corridor")
            if rng.random() < 0.3:  # a late visit: the rule's alert, seen and closed
                since = self.now - 300_000
                self.alert("welfare", d, "raised", since, "warning", d, h)
                yield 40
                self.staff(ob, "ack-alert", {"alert": incident_id("welfare", d, since),
                                             "action": "visited"})
                self.alert("welfare", d, "acknowledged", since, "warning", d, h, by=ob)
                yield 60
                self.alert("welfare", d, "resolved", since, "warning", d, h)
        yield rng.uniform(60, 600)
        for p in (oa, ob):
            self.cross(p, "corridor", h)
        yield 5
        for p in (d, oa, ob):
            self.cross(p, h, "corridor")
        yield 10
        for p in (oa, ob, d):
            self.cross(p, "corridor", iv)
        yield rng.uniform(600, 1500)
        for p in (d, oa, ob):
            self.cross(p, iv, "corridor")
        yield 10
        self.cross(d, "corridor", h)
        self.cross(oa, "corridor", h)
        yield 5
        self.cross(oa, h, "corridor")
        if rng.random() < 0.2:  # a fall in the cell, the alert raised and resolved
            self.event(h, "behaviour", {"id": f"b{i}", "phase": "new", "camera": f"cam-{h}",
                                        "room": h, "cls": "fall", "score_pct": 88})
            self.alert("fall", f"n-{h}/b{i}", "raised", self.now, "critical", d, h)
            yield 30
            self.event(h, "behaviour", {"id": f"b{i}", "phase": "end", "camera": f"cam-{h}",
                                        "room": h, "cls": "fall", "score_pct": 88})
        yield rng.uniform(600, 3600)
        self.staff("sup", "approve-disposition", {"detainee": d, "disposition": "release"})
        yield 30
        self.cross(oa, "corridor", h)
        yield 10
        for p in (d, oa):
            self.cross(p, h, "corridor")
        yield 10
        for p in (d, oa):
            self.enter(p, "exit")
        yield 20
        self.leave(oa, "exit")
        self.enter(oa, "corridor")
        self.active -= 1

    # ---- the device background ----------------------------------------------------------

    def background(self) -> None:
        """One device message from the next room: heartbeat, count or door."""
        room, kind = self.rooms[self.tick % len(self.rooms)]
        phase = (self.tick // len(self.rooms)) % 4
        self.tick += 1
        if phase in (0, 2):
            self.event(room, "camera", {"camera": f"cam-{room}", "room": room, "live": True,
                                        "recording": True, "fps_x10": 150})
        elif phase == 1:
            self.event(room, "person_count", {"camera": f"cam-{room}", "room": room,
                                              "count": self.rng.randint(0, 3)})
        elif kind in ("holding", "interview", "medical"):
            self.event(room, "door", {"door": f"d-{room}", "state": "closed"})
        else:
            self.event(room, "camera", {"camera": f"cam-{room}", "room": room, "live": True})

    def rare(self) -> None:
        """Now and then: device trouble, availability, health, security."""
        rng, n = self.rng, self.rng.random()
        room = self.rng.choice(self.rooms)[0]
        if n < 0.2:
            self.event(room, "tamper", {"id": f"t{self.tick}", "phase": "new",
                                        "camera": f"cam-{room}", "room": room,
                                        "kind": "covered"})
            self.event(room, "tamper", {"id": f"t{self.tick}", "phase": "end",
                                        "camera": f"cam-{room}", "room": room,
                                        "kind": "covered"})
        elif n < 0.4:
            self.event(room, "band.status", {"band": band("d", rng.randint(0, 50)),
                                             "reader": f"{room}-uhf",
                                             "battery_low": rng.random() < 0.5})
        elif n < 0.55:
            if self.offline is None:
                self.offline = f"n-{room}"
                self.own("availability", {"node": self.offline, "status": "offline"})
            else:
                self.own("availability", {"node": self.offline, "status": "online"})
                self.offline = None
        elif n < 0.7:
            self.own("health", {"node": f"n-{room}", "roster_refused": False, "roster_error": "",
                                "outbox_high_water": rng.random() < 0.5})
        elif n < 0.8:
            self.own("security", {"topic": f"custody/v1/x/node/n-{room}/event",
                                  "reason": "bad_mac", "node": f"n-{room}",
                                  "detail": "mac does not match", "payload_hex": "00",
                                  "sha256": "0" * 64})
        elif n < 0.85:
            self.event(room, "camera", {"camera": f"cam-{room}", "room": room, "live": True},
                       skip=2)  # a sequence gap
        elif n < 0.9:
            node = f"n-{room}"  # the node lost its outbox: a new epoch from seq 1
            self.epoch[node] = self.epoch.get(node, EPOCH) + 1
            self.seq[node] = 0
            self.event(room, "camera", {"camera": f"cam-{room}", "room": room, "live": True})
        elif n < 0.93 and self.holding:
            h = rng.choice(self.holding)
            self.event(h, "button", {"button": f"p-{h}", "kind": "panic", "room": h})
            aid = self.alert("panic", f"p-{h}", "raised", self.now, "critical", None, h)
            self.staff("o0", "false-alarm", {"alert": aid, "note": "pressed by mistake"})
            self.alert("panic", f"p-{h}", "false_alarm", self.now, "critical", None, h,
                       by="o0")
        else:
            self.event(room, "camera", {"camera": f"cam-{room}", "room": room, "live": False})

    # ---- the run ------------------------------------------------------------------------

    def run(self, entries: int, step_ms: int = 200, commit_every: int = 20_000,
            trouble: float = 0.002) -> None:
        """Write until the journal holds `entries` entries (one transaction per batch)."""
        if self.j.count == 0:
            for o in self.officers:
                self.staff("desk", "register-officer", {"officer": o, "band": self.band_of(o),
                                                        "sex": "f" if int(o[1:]) % 2 else "m"})
        last_commit = self.j.count
        while self.j.count < entries:
            self.now += step_ms
            if self.active < self.lanes and self.rng.random() < 0.01 / self.pace:
                self.active += 1
                self.next_detainee += 1
                heapq.heappush(self.queue, (self.now, self.next_detainee,
                                            self.detainee(self.next_detainee)))
            while self.queue and self.queue[0][0] <= self.now and self.j.count < entries:
                _, i, lane = heapq.heappop(self.queue)
                delay = next(lane, None)
                if delay is not None:
                    heapq.heappush(self.queue, (self.now + int(delay * 1000 * self.pace), i,
                                                lane))
            if self.j.count < entries:
                self.background()
            if self.rng.random() < trouble and self.j.count < entries:
                self.rare()
            if self.j.count - last_commit >= commit_every:
                self.flush()
                last_commit = self.j.count
        self.flush()


def centre_rooms(holding: int, interview: int) -> list[tuple[str, str]]:
    """(id, kind) of the rooms of centre_toml's site."""
    rooms = [("entry", "entry"), ("search", "search"), ("corridor", "corridor"),
             ("medical", "medical"), ("exit", "exit")]
    rooms += [(f"holding-{i}", "holding") for i in range(holding)]
    return rooms + [(f"interview-{i}", "interview") for i in range(interview)]


def build(journal: Journal, holding: int, interview: int, entries: int, seed: int = 1,
          lanes: int = 8, pace: float = 1.0, trouble: float = 0.002) -> CentreJournal:
    """Fill `journal` with `entries` entries of a centre of that many rooms."""
    rooms = centre_rooms(holding, interview)
    c = CentreJournal(journal, rooms, centre_keys([r for r, _ in rooms]), seed, lanes, pace)
    c.run(entries, trouble=trouble)
    return c
