"""The uplink's wire format: site journal entries and checkpoints as JetStream messages.

One subject per site (`custody.site.<site>`) in one stream; entries and checkpoints share the
subject so their order is the site's order. The body is the entry's exact payload bytes (or
the checkpoint's exact bytes); everything else rides in headers. The message id is
site + journal index, so JetStream drops a re-send inside its duplicate window; the bureau
drops (or flags) anything older itself.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .ids import check_id

SUBJECT_PREFIX = "custody.site"
DEFAULT_STREAM = "CUSTODY"
DUPLICATE_WINDOW_S = 120.0

H_ID = "Nats-Msg-Id"
H_KIND = "Custody-Kind"  # "entry" or "checkpoint"
H_SITE = "Custody-Site"
H_IDX = "Custody-Idx"
H_NODE = "Custody-Node"
H_EPOCH = "Custody-Epoch"
H_SEQ = "Custody-Seq"
H_ENTRY_KIND = "Custody-Entry-Kind"
H_HASH = "Custody-Hash"


class UplinkFormatError(ValueError):
    """A message on a site subject that is not a well-formed entry or checkpoint."""


def site_subject(site: str) -> str:
    """The subject a site's journal travels on."""
    check_id(site, "site id")
    return f"{SUBJECT_PREFIX}.{site}"


def subject_site(subject: str) -> str:
    """The site id of a site subject (UplinkFormatError otherwise)."""
    prefix = SUBJECT_PREFIX + "."
    if not subject.startswith(prefix):
        raise UplinkFormatError(f"subject {subject!r} is not under {prefix}")
    return subject[len(prefix):]


@dataclass(frozen=True)
class WireEntry:
    """One journal entry as the bureau receives it."""

    site: str
    idx: int
    node: str
    epoch: int
    seq: int
    kind: str
    payload: bytes
    hash: str


@dataclass(frozen=True)
class WireCheckpoint:
    """One signed checkpoint as the bureau receives it (exact bytes)."""

    site: str
    data: bytes


def entry_headers(site: str, idx: int, node: str, epoch: int, seq: int, kind: str,
                  hash_hex: str) -> dict[str, str]:
    """Headers of an entry message (the body is the payload)."""
    return {H_ID: f"{site}:{idx}", H_KIND: "entry", H_SITE: site, H_IDX: str(idx),
            H_NODE: node, H_EPOCH: str(epoch), H_SEQ: str(seq), H_ENTRY_KIND: kind,
            H_HASH: hash_hex}


def checkpoint_headers(site: str, data: bytes) -> dict[str, str]:
    """Headers of a checkpoint message; its id is the hash of its bytes (a re-send is a dup)."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    return {H_ID: f"{site}:cp:{digest}", H_KIND: "checkpoint", H_SITE: site}


def decode(subject: str, headers: Mapping[str, str] | None,
           body: bytes) -> WireEntry | WireCheckpoint:
    """Parse one message; UplinkFormatError names what is wrong."""
    site = subject_site(subject)
    h = dict(headers or {})
    if h.get(H_SITE) != site:
        raise UplinkFormatError(f"{subject}: header {H_SITE}={h.get(H_SITE)!r} is not {site!r}")
    kind = h.get(H_KIND)
    if kind == "checkpoint":
        return WireCheckpoint(site, bytes(body))
    if kind != "entry":
        raise UplinkFormatError(f"{subject}: header {H_KIND}={kind!r} is not entry/checkpoint")
    try:
        e = WireEntry(site, int(h[H_IDX]), h[H_NODE], int(h[H_EPOCH]), int(h[H_SEQ]),
                      h[H_ENTRY_KIND], bytes(body), h[H_HASH])
    except (KeyError, ValueError) as ex:
        raise UplinkFormatError(f"{subject}: entry header missing or not a number: {ex}") from None
    if e.idx < 1 or h.get(H_ID) != f"{site}:{e.idx}":
        raise UplinkFormatError(f"{subject}: entry index/message id mismatch ({h.get(H_ID)!r})")
    return e


async def ensure_stream(js: Any, name: str = DEFAULT_STREAM, replicas: int = 1) -> None:
    """Create the sites' stream if it does not exist (file storage, duplicate window)."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError
    try:
        await js.stream_info(name)
        return
    except NotFoundError:
        pass
    await js.add_stream(StreamConfig(name=name, subjects=[f"{SUBJECT_PREFIX}.>"],
                                     num_replicas=replicas, storage=StorageType.FILE,
                                     duplicate_window=DUPLICATE_WINDOW_S))
