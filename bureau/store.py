"""The bureau's PostgreSQL schema: the mirror, the witness's per-site state, leases, alerts,
and the reporting tables the bulletin reads (filled from mirrored entries as they arrive)."""

import json
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS bureau_site (
    site TEXT PRIMARY KEY,
    last_idx BIGINT NOT NULL DEFAULT 0,
    head TEXT NOT NULL,
    stream_seq BIGINT NOT NULL DEFAULT 0,      -- where a new consumer resumes (below waiting)
    handled_seq BIGINT NOT NULL DEFAULT 0,     -- highest stream sequence ever handled
    cp_count BIGINT NOT NULL DEFAULT 0,
    cp_head TEXT NOT NULL DEFAULT '',
    cp_ts BIGINT,
    tampered BOOLEAN NOT NULL DEFAULT false,
    duplicates BIGINT NOT NULL DEFAULT 0,      -- re-sent entries already mirrored (same hash)
    early BIGINT NOT NULL DEFAULT 0,           -- entries that arrived before their predecessor
    updated TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS mirror (
    site TEXT NOT NULL,
    idx BIGINT NOT NULL,
    node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload BYTEA NOT NULL,
    hash TEXT NOT NULL,
    stream_seq BIGINT NOT NULL,
    published TIMESTAMPTZ,                     -- when JetStream stored it
    mirrored TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    worker TEXT NOT NULL,
    PRIMARY KEY (site, idx)
);
CREATE TABLE IF NOT EXISTS site_checkpoint (
    site TEXT NOT NULL,
    count BIGINT NOT NULL,
    head TEXT NOT NULL,
    ts BIGINT NOT NULL,
    data BYTEA NOT NULL,
    received TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (site, count, head, ts)
);
CREATE TABLE IF NOT EXISTS security_alert (
    id BIGSERIAL PRIMARY KEY,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx BIGINT,
    detail TEXT NOT NULL,
    raised TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rejected (
    id BIGSERIAL PRIMARY KEY,
    site TEXT NOT NULL,
    stream_seq BIGINT NOT NULL,
    reason TEXT NOT NULL,
    headers JSONB,
    payload BYTEA,
    received TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bureau_worker (
    worker TEXT PRIMARY KEY,
    seen TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS bureau_lease (
    site TEXT PRIMARY KEY,
    worker TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS report_alert (
    site TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    room TEXT,
    detainee TEXT,
    severity TEXT NOT NULL,
    raised_ts BIGINT NOT NULL,
    acked_ts BIGINT,
    acked_by TEXT,
    closed_state TEXT,
    closed_ts BIGINT,
    closed_by TEXT,
    escalated BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (site, alert_id)
);
CREATE TABLE IF NOT EXISTS report_staff (
    site TEXT NOT NULL,
    idx BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    account TEXT NOT NULL,
    command TEXT NOT NULL,
    ok BOOLEAN NOT NULL DEFAULT true,
    detainee TEXT,
    args JSONB NOT NULL,
    PRIMARY KEY (site, idx)
);
CREATE INDEX IF NOT EXISTS report_staff_cmd ON report_staff (command);
ALTER TABLE bureau_site ADD COLUMN IF NOT EXISTS handled_seq BIGINT NOT NULL DEFAULT 0;
"""

# Serialises schema creation between workers that start together.
SCHEMA_LOCK = 0x6375737479


async def ensure_schema(conn: Any) -> None:
    """Create the tables if absent (idempotent, safe with several workers)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        await conn.execute(SCHEMA)


def report_rows(site: str, idx: int, kind: str, payload: bytes
                ) -> list[tuple[str, tuple[Any, ...]]]:
    """SQL statements that fold one mirrored entry into the reporting tables."""
    if kind not in ("alert", "staff", "refused"):
        return []
    try:
        m = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(m, dict):
        return []
    if kind == "alert":
        return _alert_rows(site, m)
    raw = m.get("args")
    args: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return [("INSERT INTO report_staff (site, idx, ts, account, command, ok, detainee, args) "
             "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
             (site, idx, int(m.get("ts") or 0), str(m.get("user") or "?"),
              str(m.get("command") or "?"), kind == "staff",  # 'refused': journaled refusal
              args.get("detainee") if isinstance(args.get("detainee"), str) else None,
              json.dumps(args)))]


def _alert_rows(site: str, m: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    st, aid = m.get("state"), str(m.get("id"))
    if st == "raised":
        return [("INSERT INTO report_alert (site, alert_id, rule, room, detainee, severity, "
                 "raised_ts) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                 (site, aid, str(m.get("rule")), m.get("room"), m.get("detainee"),
                  str(m.get("severity")), int(m.get("raised_ts") or m.get("ts") or 0)))]
    if st == "acknowledged":
        return [("UPDATE report_alert SET acked_ts = %s, acked_by = %s WHERE site = %s AND "
                 "alert_id = %s AND acked_ts IS NULL", (m.get("ts"), m.get("by"), site, aid))]
    if st in ("resolved", "false_alarm"):
        return [("UPDATE report_alert SET closed_state = %s, closed_ts = %s, closed_by = %s "
                 "WHERE site = %s AND alert_id = %s", (st, m.get("ts"), m.get("by"), site, aid))]
    if st == "escalated":
        return [("UPDATE report_alert SET severity = %s, escalated = true WHERE site = %s AND "
                 "alert_id = %s", (str(m.get("severity")), site, aid))]
    return []
