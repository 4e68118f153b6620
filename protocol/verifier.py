"""Everything a receiver checks, in order: topic, size, shape, node, MAC, fields, replay."""

from .envelope import Reason, VerifyError, seal, verify
from .events import Event
from .replay import Admission, ReplayWindow
from .topics import TopicError, Topics


class Verifier:
    """Checks node messages for one site against the node key table and a replay window."""

    def __init__(self, topics: Topics, keys: dict[str, bytes],
                 window: ReplayWindow | None = None) -> None:
        self.topics, self.keys = topics, keys
        self.window = window if window is not None else ReplayWindow()

    def check(self, topic: str, payload: bytes, channel: str = "event") -> tuple[Event, Admission]:
        """Return the verified event and any sequence gap, or raise VerifyError."""
        try:
            parsed = self.topics.parse(topic)
        except TopicError as e:
            raise VerifyError(Reason.BAD_TOPIC, str(e)) from None
        if parsed.kind != "node" or parsed.channel != channel:
            raise VerifyError(Reason.BAD_TOPIC, f"{topic!r} is not a node {channel} topic")
        event = verify(payload, self.keys, topic_node=parsed.node)
        return event, self.window.admit(event.node, event.epoch, event.seq)


def ack_payload(key: bytes, node: str, ack_seq: int, ts_ms: int, epoch: int,
                seqs: list[int]) -> bytes:
    """The supervisor's signed acknowledgement that `seqs` of `epoch` are journaled."""
    return seal(key, node, 1, ack_seq, ts_ms, "ack", {"epoch": epoch, "seqs": sorted(seqs)})
