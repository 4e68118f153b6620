"""Behaviour events from nodes, device health, sequence gaps."""

from collections.abc import Collection

from protocol.site import Rules

from ..state import BEHAVIOUR_RULES, NodeState, State
from .base import Desired, desired, held_for

Nodes = Collection[str] | None  # the nodes a node rule looks at (None: every node)

MIRRORED_LOCAL = ("outbox-high-water",)


def behaviour(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Fall, fight, lying still, agitated while the node's behaviour event is open."""
    out = []
    for key, a in sorted(state.behaviours.items()):
        rule = BEHAVIOUR_RULES.get(a.kind)
        if rule is not None:
            only = state._only_detainee(a.room)
            out.append(desired(rule, key, a.since, only, a.room,
                               f"{a.kind.replace('_', ' ')} in {a.room}",
                               evidence=state.behaviour_evidence.get(key)))
    return out


def node_rows(state: State, nodes: Nodes) -> list[tuple[str, NodeState]]:
    """(id, state) of `nodes` (None: every node heard of), in id order."""
    if nodes is None:
        return sorted(state.nodes.items())
    return sorted((n, state.nodes[n]) for n in nodes if n in state.nodes)


def node_health(state: State, now_ms: int, rules: Rules, nodes: Nodes = None) -> list[Desired]:
    """Node offline, refused roster."""
    out = []
    for node, ns in node_rows(state, nodes):
        if ns.availability == "offline" and held_for(ns.availability_since, now_ms,
                                                     rules.device_offline_s):
            out.append(desired("device-offline", node, ns.availability_since, None, ns.room,
                               f"node {node} offline"))
        if ns.health.get("roster_refused"):
            since = ns.health.get("roster_refused_since", 0)
            out.append(desired("roster-refused", node, since, None, ns.room,
                               f"node {node} refused the band roster: "
                               f"{ns.health.get('roster_error') or 'no reason given'}"))
    return out


def devices(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Node offline, refused roster, camera tamper, band tamper/battery, reader faults, outbox
    high water."""
    return node_health(state, now_ms, rules) + device_activities(state, now_ms, rules)


def device_activities(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Camera tamper, band tamper/battery, reader faults, outbox high water (no clock)."""
    out: list[Desired] = []
    for key, a in sorted(state.tampers.items()):
        out.append(desired("camera-tamper", key, a.since, None, a.room,
                           f"camera in {a.room} {a.kind}"))
    for (band, flag), (since, room) in sorted(state.band_flags.items()):
        p = state.bands.get(band)
        who = p.person if p is not None and p.role == "detainee" else None
        rule = "band-tamper" if flag == "tamper" else "band-battery"
        out.append(desired(rule, band, since, who, room,
                           f"band {band}: {'tamper' if flag == 'tamper' else 'battery low'}"))
    for key, a in sorted(state.faults.items()):
        out.append(desired("reader-fault", key, a.since, None, a.room, f"fault: {a.detail}"))
    for key, a in sorted(state.local_alerts.items()):
        if a.kind in MIRRORED_LOCAL:
            out.append(desired(a.kind, key, a.since, None, a.room,
                               f"{a.kind} on {key.split('/')[0]}: {a.detail}"))
    return out


def missing_events(state: State, now_ms: int, rules: Rules, nodes: Nodes = None
                   ) -> list[Desired]:
    """A sequence gap left unfilled for the device grace."""
    out = []
    for node, ns in node_rows(state, nodes):
        for lo, hi, t in ns.gaps:
            if held_for(t, now_ms, rules.device_offline_s):
                out.append(desired("missing-events", f"{node}/{ns.epoch}/{lo}", t, None, ns.room,
                                   f"node {node} epoch {ns.epoch}: events {lo}..{hi} missing"))
    return out
