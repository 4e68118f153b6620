"""A virtual door contact: `open` / `closed` lines on a pty, read by the agent's `line:` input."""

from .pty_port import PtyPort


class VirtualDoor:
    """A door contact the agent reads through `source = "line:<path>"`."""

    def __init__(self, door_id: str) -> None:
        self.id = door_id
        self.port = PtyPort(door_id)
        self.state = "closed"

    @property
    def path(self) -> str:
        """The pty path the agent opens."""
        return self.port.path

    def set(self, state: str) -> None:
        """Report the contact's state (written again even if unchanged: harmless)."""
        if state not in ("open", "closed"):
            raise ValueError(f"door state {state!r}")
        self.state = state
        self.port.write(f"{state}\n".encode())

    def close(self) -> None:
        """Close the pty."""
        self.port.close()
