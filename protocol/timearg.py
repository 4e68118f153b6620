"""Command-line times: ISO date/time (UTC when no zone) or Unix ms."""

import datetime as dt


def parse_time(text: str) -> int:
    """ISO date/time or Unix ms -> Unix ms."""
    if text.isdigit():
        return int(text)
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)
