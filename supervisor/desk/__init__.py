"""The custody desk: the supervisor's web dashboard (floor, alerts, detainees, record, approvals,
inspection), live over server-sent events; see supervisor/README.md."""

from .server import Desk

__all__ = ["Desk"]
