"""Property tests of the replay window: nothing accepted twice, gaps reported exactly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.envelope import Reason, VerifyError
from protocol.replay import ReplayWindow
from tests.proof_strategies import PROPS

nodes = st.sampled_from(["n1", "n2", "n3"])
triples = st.tuples(nodes, st.integers(1, 3), st.integers(0, 40))


def _ranges(missing: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of a sorted list of ints."""
    out: list[tuple[int, int]] = []
    for s in missing:
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@PROPS
@given(st.lists(triples, max_size=120), st.integers(4, 64))
def test_no_triple_is_ever_accepted_twice(stream, size):
    w = ReplayWindow(size)
    accepted: set[tuple[str, int, int]] = set()
    for node, epoch, seq in stream:
        try:
            w.admit(node, epoch, seq)
        except VerifyError as e:
            assert e.reason in (Reason.REPLAY, Reason.STALE_EPOCH, Reason.OUT_OF_WINDOW)
            continue
        assert (node, epoch, seq) not in accepted
        accepted.add((node, epoch, seq))


@PROPS
@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 5))
def test_in_order_stream_with_drops_reports_exactly_the_dropped(kept, first):
    w = ReplayWindow()
    seqs = list(range(first, first + len(kept)))
    sent = [s for s, k in zip(seqs, kept, strict=True) if k]
    reported: list[tuple[int, int]] = []
    for s in sent:
        a = w.admit("n", 1, s)
        if a.gap_from:
            reported.append((a.gap_from, a.gap_to))
    if not sent:
        return
    missing = [s for s in range(1, sent[-1]) if s not in sent]
    assert reported == _ranges(missing)


@PROPS
@given(st.permutations(list(range(1, 31))), st.integers(2, 8))
def test_late_arrivals_inside_the_window_accepted_once_and_not_reported_again(order, dup_every):
    w = ReplayWindow(64)
    gaps: set[int] = set()
    seen: set[int] = set()
    for i, s in enumerate(order):
        a = w.admit("n", 1, s)
        if a.gap_from:
            assert a.gap_from > max(seen, default=0)  # a gap starts above everything seen
            gaps.update(range(a.gap_from, a.gap_to + 1))
        seen.add(s)
        if i % dup_every == 0:
            with pytest.raises(VerifyError) as e:
                w.admit("n", 1, s)
            assert e.value.reason == Reason.REPLAY
    # Every reported missing seq really arrived only later than the gap was announced.
    pos = {s: i for i, s in enumerate(order)}
    for g in gaps:
        assert any(pos[g] > pos[t] and t > g for t in order)


@PROPS
@given(st.integers(1, 1000), st.integers(1, 1000), st.integers(0, 100))
def test_older_epoch_is_stale_newer_epoch_restarts(e1, e2, seq):
    w = ReplayWindow()
    w.admit("n", e1, seq)
    if e2 < e1:
        with pytest.raises(VerifyError) as e:
            w.admit("n", e2, seq)
        assert e.value.reason == Reason.STALE_EPOCH
    elif e2 > e1:
        a = w.admit("n", e2, 1)  # a reboot restarts at 1: no gap, same seq numbers allowed
        assert (a.gap_from, a.gap_to) == (0, 0)
        w.admit("n", e2, seq) if seq != 1 else None
    else:
        with pytest.raises(VerifyError):
            w.admit("n", e2, seq)


@PROPS
@given(st.integers(8, 64), st.integers(0, 500))
def test_far_older_than_window_is_out_of_window(size, extra):
    w = ReplayWindow(size)
    top = size + 1 + extra
    w.admit("n", 1, top)
    with pytest.raises(VerifyError) as e:
        w.admit("n", 1, top - size)
    assert e.value.reason == Reason.OUT_OF_WINDOW
    w.admit("n", 1, top - size + 1)  # just inside: accepted once
    with pytest.raises(VerifyError):
        w.admit("n", 1, top - size + 1)



def test_in_order_traffic_keeps_no_per_sequence_memory():
    # The soak's growth was a set of every recent sequence per node (~60 B per event).
    w = ReplayWindow(1 << 27)
    for s in range(1, 20_000):
        w.admit("n", 1, s)
    assert w.nodes["n"].recent == set() and w.nodes["n"].floor == 19_999
