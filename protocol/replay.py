"""Per-node replay window over (epoch, sequence)."""

from dataclasses import dataclass, field

from .envelope import Reason, VerifyError

DEFAULT_WINDOW = 4096
# The supervisor's window for node events: wider than any node's outbox may be (edge_agent's
# config caps outbox_max_events at 100,000,000; the default holds 72 h, 259,200 events), so a
# node that was offline for its whole outbox replays it and every event is journaled once.
# Memory stays small: sequences at or below a contiguous floor are not stored one by one.
NODE_EVENT_WINDOW = 1 << 27
# A node's outbox never deletes what was not acked, so its sequence can run ahead of what the
# supervisor has seen by at most what the outbox holds (edge_agent's config caps it at 1e8).
MAX_SEQ_JUMP = 100_000_000
MAX_SEQ = 2**40  # ~35 years at 1,000 events/s: anything above was not counted, it was made up


@dataclass
class NodeWindow:
    """What one node has been seen to send: its epoch, highest sequence, a floor at or below
    which every sequence is spent (seen or out of window), and the seen ones above it."""

    epoch: int = 0
    highest: int = 0
    floor: int = 0
    recent: set[int] = field(default_factory=set)
    zero: bool = False  # seq 0 (sequences count from 1; 0 is kept apart from the floor)


@dataclass(frozen=True)
class Admission:
    """Outcome of admitting a (node, epoch, seq): the missing sequences it reveals, if any."""

    gap_from: int = 0  # first missing sequence, 0 when none
    gap_to: int = 0  # last missing sequence


class ReplayWindow:
    """Accepts each (node, epoch, seq) once; newer epochs restart the sequence.

    A seq older than `size` below the highest is out of window; one already seen is a
    replay; an epoch lower than the node's current one is stale. A jump forward reports the
    gap.
    """

    def __init__(self, size: int = DEFAULT_WINDOW, max_jump: int = MAX_SEQ_JUMP) -> None:
        self.size, self.max_jump = size, max_jump
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
            w.epoch, w.highest, w.floor, w.recent, w.zero = epoch, 0, 0, set(), False
        if seq <= w.highest - self.size:
            raise VerifyError(Reason.OUT_OF_WINDOW,
                              f"{node}: seq {seq} older than window below {w.highest}")
        if (seq == 0 and w.zero) or 0 < seq <= w.floor or seq in w.recent:
            raise VerifyError(Reason.REPLAY, f"{node}: epoch {epoch} seq {seq} already seen")
        if seq == 0:
            w.zero = True
            return Admission()
        gap = Admission()
        if seq > w.highest + 1:
            gap = Admission(w.highest + 1, seq - 1)
        w.recent.add(seq)
        w.highest = max(w.highest, seq)
        while w.floor + 1 in w.recent:  # in-order traffic keeps `recent` near empty
            w.floor += 1
            w.recent.discard(w.floor)
        if w.highest - self.size > w.floor:
            w.floor = w.highest - self.size
            w.recent = {s for s in w.recent if s > w.floor}
        return gap

    def forget(self, node: str, epoch: int, seq: int) -> None:
        """Undo an admission whose journal write was rolled back (it may come again)."""
        w = self.nodes.get(node)
        if w is None or w.epoch != epoch:
            return
        if seq == 0:
            w.zero = False
        elif seq in w.recent:
            w.recent.discard(seq)
        elif seq <= w.floor:  # folded into the floor: lower it (the newest, so few to move)
            w.recent.update(range(seq + 1, w.floor + 1))
            w.floor = seq - 1
