"""Which roles may issue which staff command (a role check only: no state, no four eyes).

`permitted` is what the desk uses to hide buttons; supervisor/staff.py checks it, then four
eyes and the state, before anything changes.
"""

from .accounts import Account

OFFICER, SUPERVISOR, LEGAL, ADMIN = "officer", "custody-supervisor", "legal-officer", "admin"
_FLOOR = frozenset({OFFICER, SUPERVISOR})  # everyday custody work: the duty leader may do it too

COMMAND_ROLES: dict[str, frozenset[str]] = {
    "register-detainee": _FLOOR,
    "register-officer": _FLOOR,
    "register-visitor": _FLOOR,
    "set-observation": _FLOOR,
    "record-search": _FLOOR,
    "log-belongings": _FLOOR,
    "log-case-property": _FLOOR,
    "property-out": _FLOOR,
    "property-in": _FLOOR,
    "record-welfare-check": _FLOOR,
    "ack-alert": _FLOOR,
    "resolve-alert": _FLOOR,
    "false-alarm": _FLOOR,
    # A medical emergency cannot wait for the duty leader: an officer records it with a
    # reason, and a critical alert asks a custody supervisor to review it.
    "record-emergency-exit": _FLOOR,
    "approve-temporary-exit": frozenset({SUPERVISOR}),
    "approve-extension": frozenset({SUPERVISOR}),
    "approve-disposition": frozenset({SUPERVISOR}),
    "record-finding": frozenset({LEGAL}),
    "unlock-account": frozenset({ADMIN}),
    # Video of people in custody: the masked clip for the duty supervisor and the inspector;
    # officers on the floor see the room live, not the recording.
    "view-evidence": frozenset({SUPERVISOR, LEGAL}),
}
# Who reads the compliance report on the desk (supervisor/report.py): the duty leader and
# the inspector, the same roles that may see masked evidence.
REPORT_ROLES = frozenset({SUPERVISOR, LEGAL})
# The unmasked (clear) clip: legal officers only, and only with a reason (supervisor/staff.py).
CLEAR_EVIDENCE = frozenset({LEGAL})
# Approvals: custody-supervisor only, and never by someone on the detainee's own team.
FOUR_EYES = ("approve-temporary-exit", "approve-extension", "approve-disposition")


def may_see_clear(account: Account) -> bool:
    """Whether the account may view unmasked evidence video."""
    return account.enabled and bool(account.roles & CLEAR_EVIDENCE)


def permitted(account: Account, command: str) -> bool:
    """Whether the account's roles allow the command (False for a disabled account)."""
    allowed = COMMAND_ROLES.get(command)
    return account.enabled and allowed is not None and bool(account.roles & allowed)
