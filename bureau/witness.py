"""The outside witness of one site's chain: what the bureau has seen, and the checks.

Pure decisions over the site's witnessed state (the worker supplies mirrored hashes it looks
up). The chain hashing and checkpoint MAC are the supervisor journal's own functions, so the
bureau checks exactly what the site computes. A site's key can re-sign a rewritten history,
but it cannot make that history agree with what the bureau has already witnessed.
"""

import json
from dataclasses import dataclass

from protocol.chain import GENESIS, entry_hash, open_checkpoint
from protocol.uplink import WireEntry

GENESIS_HEX = GENESIS.hex()


@dataclass
class SiteState:
    """One row of bureau_site."""

    site: str
    last_idx: int = 0
    head: str = GENESIS_HEX
    stream_seq: int = 0
    cp_count: int = 0
    cp_head: str = ""
    cp_ts: int | None = None
    tampered: bool = False
    duplicates: int = 0
    early: int = 0
    handled_seq: int = 0  # below it, a message delivered again was handled already


class Problem(Exception):
    """A security finding: `kind` names the check, the message says what differs."""

    def __init__(self, kind: str, idx: int | None, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.idx, self.detail = kind, idx, detail


def chain_next(st: SiteState, e: WireEntry) -> str:
    """The hash of the next entry chained on what was witnessed; Problem if it differs."""
    h = entry_hash(bytes.fromhex(st.head), e.node, e.epoch, e.seq, e.kind, e.payload).hex()
    if h != e.hash:
        raise Problem("entry-does-not-chain", e.idx,
                      f"site {e.site} entry #{e.idx} (node {e.node}, seq {e.seq}, kind {e.kind}) "
                      f"does not chain on the witnessed head of #{st.last_idx}: the site's "
                      "history before it was rewritten, or the entry was edited")
    return h


def check_resent(e: WireEntry, prev_hash: str, mirrored_hash: str) -> None:
    """An entry at an index already witnessed must be the same entry (Problem otherwise)."""
    h = entry_hash(bytes.fromhex(prev_hash), e.node, e.epoch, e.seq, e.kind, e.payload).hex()
    if h != mirrored_hash or e.hash != mirrored_hash:
        raise Problem("entry-rewritten", e.idx,
                      f"site {e.site} re-sent entry #{e.idx} with different content than "
                      "witnessed (rewritten, deleted or reordered after uplink)")


def parse_checkpoint(site: str, key: bytes | None, data: bytes) -> tuple[int, str, int]:
    """(count, head, ts) of a checkpoint whose MAC checks (Problem otherwise)."""
    try:
        ts = int(json.loads(data)["ts"])
    except (ValueError, KeyError, TypeError):
        raise Problem("checkpoint-malformed", None, f"site {site}: checkpoint is not "
                      "{count, head, ts, mac} JSON") from None
    if key is None:
        raise Problem("checkpoint-unverifiable", None,
                      f"site {site}: no checkpoint key for this site in the bureau's keys file")
    try:
        count, head = open_checkpoint(key, data)
    except ValueError as e:
        raise Problem("checkpoint-signature", None, f"site {site}: {e}") from None
    return count, head, ts


def check_checkpoint(st: SiteState, count: int, head: str, head_at_count: str) -> None:
    """A checkpoint must extend the last one and match the witnessed chain at its count."""
    if head != head_at_count:
        raise Problem("checkpoint-mismatch", count,
                      f"site {st.site}: signed checkpoint head at #{count} is {head[:16]}…, "
                      f"the witnessed chain has {head_at_count[:16]}… (history rewritten and "
                      "re-signed with the site's key)")
    if count < st.cp_count:
        raise Problem("checkpoint-goes-back", count,
                      f"site {st.site}: checkpoint counts {count} entries, the last one "
                      f"counted {st.cp_count} (entries deleted after uplink)")
    if count == st.cp_count and st.cp_head and head != st.cp_head:
        raise Problem("checkpoint-forked", count,
                      f"site {st.site}: a second checkpoint at {count} with another head")
