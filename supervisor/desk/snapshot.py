"""The desk's view of the state: plain data built on the supervisor's worker thread.

Browsers' threads never touch the live State: the worker copies what the pages show into a
snapshot (dicts, lists, numbers, text) each time the journal grows or a second has passed, and
the pages are rendered from that copy.
"""

from itertools import islice
from typing import Any

from ..rules.limits import limit_ms
from ..rules.recording import camera_dead_since
from ..state import State

STEPS = ("registered", "searched", "information", "interview", "belongings", "disposition")
RECENT_CLOSED = 30  # closed alerts kept in the snapshot for the queue's history


def _alert(a: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "rule", "state", "severity", "detainee", "room", "raised_ts", "ts", "message",
            "acked_by", "acked_ts", "action", "by", "closed_ts", "evidence")
    out = {k: a.get(k) for k in keep}
    out["escalations"] = a.get("escalations", 0)
    return out


def _detainee(state: State, cid: str, now: int) -> dict[str, Any]:
    c = state.detainees[cid]
    rules = state.rules
    limit = limit_ms(state, cid)
    kinds = {v.kind for v in c.visits}
    steps = {"registered": True,
             "searched": c.search is not None and c.search["result"] == "completed",
             "information": "information" in kinds,
             "interview": "interview" in kinds,
             "belongings": bool(c.belongings),
             "disposition": c.disposition is not None}
    verified = [w for w in c.welfare if w.get("verified")]
    last = verified[-1] if verified else None
    interval = rules.welfare_interval_s(c.observation) * 1000
    # As the welfare rule counts it: from entering the holding room or the last verified visit.
    entered = (state.rooms[c.visit.room].bands.get(c.band)
               if c.visit is not None and c.visit.kind == "holding" else None)
    base = max(c.last_verified_ms, entered) if entered is not None else None
    next_due = base + interval if base is not None else None
    status = ("exited" if c.exit_ms is not None else
              "temporary-exit" if c.temp_out is not None else "in-custody")
    return {"id": c.id, "case": c.case, "sex": c.sex, "custody_type": c.custody_type,
            "observation": c.observation, "arrived": c.arrived_ms, "limit_ms": limit,
            "deadline": c.arrived_ms + limit, "used_ms": (c.exit_ms or now) - c.arrived_ms,
            "extension_h": c.extension_h, "steps": steps,
            "last_welfare": ({"ts": last["ts"], "officer": last.get("officer")} if last else None),
            "next_due": next_due, "overdue": next_due is not None and now >= next_due,
            "room": c.visit.room if c.visit is not None else None, "status": status,
            "disposition": (c.disposition or {}).get("disposition"),
            "temp_approval": c.temp_approval}


def build(state: State, now: int, count: int, names: dict[str, str]) -> dict[str, Any]:
    """Copy what the desk shows out of the live state (call on the worker thread)."""
    by_room: dict[str, list[dict[str, Any]]] = {}
    open_alerts = [_alert(a) for a in state.open_alerts()]
    for a in open_alerts:
        if a["room"]:
            by_room.setdefault(a["room"], []).append(a)
    doors_of: dict[str, list[tuple[str, str]]] = {}
    for d in state.site.doors:
        st = state.doors.get(d.id)
        for side in d.between:
            doors_of.setdefault(side, []).append((d.id, st[0] if st else "unknown"))
    cameras = {n.room for n in state.site.nodes if n.cameras}
    rooms = []
    for r in state.site.rooms:
        rs = state.rooms[r.id]
        has_cam = r.id in cameras or rs.cam_last_live is not None or r.camera_required
        rooms.append({
            "id": r.id, "name": r.name, "kind": r.kind, "position": r.position,
            "officers": sorted(state.bands[b].person for b in state.officers_in(rs)),
            "detainees": state.detainees_in(rs),
            "visitors": [{"id": p.person, "name": p.name, "role": p.role, "client": p.client}
                         for p in state.visitors_in(rs)],
            "unregistered": sum(1 for b in rs.bands if b not in state.bands),
            "camera": (None if not has_cam else
                       camera_dead_since(state, rs, now, state.rules) is None
                       and rs.cam_last_live is not None),
            "doors": doors_of.get(r.id, []),
            "alerts": by_room.get(r.id, [])})
    # The last RECENT_CLOSED closed alerts, newest first: the state keeps them whole, in fold
    # order, in both modes.
    closed = list(islice(reversed(state.recent_closed.values()), RECENT_CLOSED))
    return {"count": count, "now": now, "site": {"id": state.site.id, "name": state.site.name},
            "rooms": rooms, "alerts": open_alerts, "closed": [_alert(a) for a in closed],
            "detainees": [_detainee(state, d, now) for d in sorted(state.detainees)],
            "custody_types": {t.id: {"limit_h": t.limit_h, "extended_h": list(t.extended_h)}
                              for t in state.rules.custody_types},
            "false_alarms": dict(state.false_alarms), "names": dict(names)}
