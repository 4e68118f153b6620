"""Per-node replay window over (epoch, sequence)."""

from dataclasses import dataclass

from .envelope import Reason, VerifyError

DEFAULT_WINDOW = 4096
# A node's outbox never deletes what was not acked, so its sequence can run ahead of what the
# supervisor has seen by at most what the outbox holds (edge_agent's config caps it at 1e8).
MAX_SEQ_JUMP = 100_000_000
MAX_SEQ = 2**40  # ~35 years at 1,000 events/s: anything above was not counted, it was made up


@dataclass
class NodeWindow:
    """What one node has been seen to send: its epoch, highest sequence and recent ones.

    `seen` is a bit mask: bit i set means sequence `highest - i` was admitted. A fixed
    size-bit integer per node (512 bytes for 4096) where a set of ints grew to ~250 KB.
    """

    epoch: int = 0
    highest: int = 0
    seen: int = 0


@dataclass(frozen=True)
class Admission:
    """Outcome of admitting a (node, epoch, seq): the missing sequences it reveals, if any."""

    gap_from: int = 0  # first missing sequence, 0 when none
    gap_to: int = 0  # last missing sequence


class ReplayWindow:
    """Accepts each (node, epoch, seq) once; newer epochs restart the sequence.

    A seq already seen, or older than `size` below the highest, is a replay; an epoch
    lower than the node's current one is stale. A jump forward reports the gap.
    """

    def __init__(self, size: int = DEFAULT_WINDOW, max_jump: int = MAX_SEQ_JUMP) -> None:
        self.size, self.max_jump = size, max_jump
        self._mask = (1 << size) - 1
        self.nodes: dict[str, NodeWindow] = {}

    def admit(self, node: str, epoch: int, seq: int) -> Admission:
        """Record the message or raise VerifyError(replay / stale_epoch / out_of_window /
        seq_jump)."""
        w = self.nodes.setdefault(node, NodeWindow())
        if epoch < w.epoch:
            raise VerifyError(Reason.STALE_EPOCH, f"{node}: epoch {epoch} < current {w.epoch}")
        # Checked before anything changes: an absurd sequence must not move the window.
        base = w.highest if epoch == w.epoch else 0
        if seq > MAX_SEQ or (w.epoch and seq - base > self.max_jump):
            raise VerifyError(Reason.SEQ_JUMP, f"{node}: epoch {epoch} seq {seq} jumps past "
                              f"{base} by more than an outbox holds ({self.max_jump})")
        if epoch > w.epoch:
            w.epoch, w.highest, w.seen = epoch, 0, 0
        back = w.highest - seq
        if back >= 0:
            if back >= self.size:
                raise VerifyError(Reason.OUT_OF_WINDOW,
                                  f"{node}: seq {seq} older than window below {w.highest}")
            if w.seen >> back & 1:
                raise VerifyError(Reason.REPLAY, f"{node}: epoch {epoch} seq {seq} already seen")
            w.seen |= 1 << back
            return Admission()
        gap = Admission(w.highest + 1, seq - 1) if seq > w.highest + 1 else Admission()
        ahead = seq - w.highest
        w.seen = ((w.seen << ahead) | 1) & self._mask if ahead < self.size else 1
        w.highest = seq
        return gap

    def forget(self, node: str, epoch: int, seq: int) -> None:
        """Undo an admission whose journal write was rolled back (it may come again)."""
        w = self.nodes.get(node)
        if w is not None and w.epoch == epoch and 0 <= w.highest - seq < self.size:
            w.seen &= ~(1 << (w.highest - seq))
