"""Alert rule ids and the alert message staff receive on `alert/<severity>/<rule>`.

Message: {"id": alert id, "rule": rule id, "state": one of STATES, "severity": tier,
"detainee": id or null, "room": id or null, "raised_ts": ms, "ts": ms, "message": text,
"by": officer id or null, "action": text or null}, plus "evidence": the node's evidence clip
id when it kept one (a behaviour alert; staff `view-evidence`). The retained `state/alerts`
snapshot is {"ts": ms, "active": [message, ...]}.
"""

STATES = ("raised", "updated", "escalated", "acknowledged", "resolved", "false_alarm")

# Rule id -> default severity. Supervisor and nodes use exactly these ids.
RULES: dict[str, str] = {
    "brought-straight-in": "warning",
    "search-first": "critical",
    "real-search": "warning",
    "never-alone": "critical",
    "holding-watch": "critical",
    "door-open": "warning",
    "interview": "warning",
    "recording-gap": "warning",
    "co-suspects": "critical",
    "welfare-check": "warning",
    "time-limit": "warning",
    "exit": "critical",
    "temporary-exit-overdue": "critical",
    "property": "warning",
    "fall": "critical",
    "fight": "critical",
    "lying-still": "critical",
    "agitated": "warning",
    "panic": "critical",
    "device-offline": "warning",
    "camera-tamper": "critical",
    "band-tamper": "critical",
    "band-battery": "info",
    "unknown-band": "warning",
    "reader-fault": "info",
    "security": "critical",
    "clock-skew": "warning",
    "node-throttled": "warning",
    "supervisor-degraded": "critical",
    "node-storage": "critical",
    "missing-events": "critical",
    "outbox-high-water": "warning",
    "roster-refused": "warning",
    "emergency-exit": "critical",
    "login-locked": "critical",
    "staff-throttled": "critical",
}

# A security entry's reason -> the rule its incident raises (default `security`).
SECURITY_REASON_RULE: dict[str, str] = {
    "clock_skew": "clock-skew",
    "throttled": "node-throttled",
    "journal_unwritable": "supervisor-degraded",
    "node_storage": "node-storage",
    "staff_throttled": "staff-throttled",
}
