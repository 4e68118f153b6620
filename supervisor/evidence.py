"""Evidence clips fetched from a node for a staff member who may see them (`view-evidence`).

Order, so that no video moves unrecorded: Staff.execute checks the role (masked: custody
supervisor or legal officer; clear: legal officer with a reason), resolves the alert or
evidence id against the journaled `evidence` events and journals the view (kind `staff`:
who, which clip, masked or clear, why). Only then does `EvidenceService.start` ask the node
for the clip chunk by chunk (protocol/evidence.py, signed with the node's key), in a thread of
its own: the worker never waits for a node. The whole file's SHA-256 must equal the journaled
one; the outcome is journaled (kind `evidence`) and a mismatch, or a node saying its file no
longer matches, is a `security` entry (a critical alert). A verified clip goes into a bounded
cache beside the journal and the answer says where it is. A node that does not answer within
the timeout, an unknown id, a mismatch: each is an error to the staff member, counted in the
supervisor's health, and no file is kept.

Chromium (Debian's, measured) plays WebM (VP8/VP9) and H.264 MP4, not the MPEG-4 Part 2 or
MJPEG that OpenCV's pip wheels record: for those the desk shows a still frame taken from the
middle of the verified clip (the moment of the alert) and offers the file to download.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.evidence import (
    MAX_CHUNK,
    EvidenceError,
    EvidenceRequest,
    open_response,
    seal_request,
    sha256_file,
)
from protocol.staff import StaffError
from protocol.topics import TopicError, Topics

from .journal import Journal
from .state import State

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 10.0  # real seconds a node has to answer one chunk request
CACHE_BYTES = 512 * 1024 * 1024  # the supervisor's evidence cache at most
MAX_ACTIVE = 4  # fetches at once (each holds one thread and one partial file)
Reply = Callable[[dict[str, Any]], None]


def resolve(state: State, args: dict[str, Any]) -> dict[str, Any]:
    """The journaled evidence record a `view-evidence` names (by `evidence` or `alert`);
    raise StaffError saying why there is none."""
    if "evidence" in args:
        eid = args["evidence"]
    elif "alert" in args:
        a = state.alerts.get(args["alert"])
        closed = state.closed_alerts.get(args["alert"])
        if a is None and closed is None:
            raise StaffError(f"view-evidence: alert {args['alert']!r} does not exist")
        # a closed alert that left memory (live mode) keeps its evidence id in its tombstone
        eid = a.get("evidence") if a is not None else closed[2] if closed is not None else None
        if not eid:
            raise StaffError(f"view-evidence: alert {args['alert']!r} has no evidence clip "
                             "(its node sent none)")
    else:
        raise StaffError("view-evidence: give 'evidence' or 'alert'")
    if eid in state.evidence_conflicts:
        raise StaffError(f"view-evidence: evidence {eid!r} was claimed by two nodes; "
                         "refused (a security matter)")
    rec = state.evidence.get(eid)
    if rec is None:
        raise StaffError(f"view-evidence: no evidence {eid!r} is journaled (unknown id, or the "
                         "node has not finished cutting the clip: it keeps recording past "
                         "the alert first)")
    return rec


def media_kind(path: Path) -> str:
    """'webm', 'mp4', 'avi' or 'video' by the file's magic bytes."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"RIFF":
        return "avi"
    return "video"


def playable(path: Path, kind: str) -> bool:
    """Whether Chromium plays this clip in a <video> (WebM; MP4 only when H.264)."""
    if kind == "webm":
        return True
    if kind != "mp4":
        return False
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).lower()
    return fourcc in ("avc1", "h264")


def still_frame(path: Path, out: Path) -> bool:
    """Write the clip's middle frame as JPEG to `out`; False when no frame could be read."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n // 2)
        ok, img = cap.read()
    finally:
        cap.release()
    if not ok or img is None:
        return False
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return False
    out.write_bytes(jpeg.tobytes())
    return True


class EvidenceCache:
    """Verified clips (and their still frames) in one directory, oldest dropped past a size."""

    def __init__(self, directory: str | Path, max_bytes: int = CACHE_BYTES) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)  # video of people in custody: the supervisor's user only
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        for stale in self.dir.glob(".*.part"):  # a fetch cut short by a restart
            stale.unlink(missing_ok=True)

    def stem(self, evidence: str, clear: bool) -> str:
        """The file name stem of a clip in the cache."""
        return f"{evidence}.{'clear' if clear else 'masked'}"

    def find(self, evidence: str, clear: bool, sha256: str) -> Path | None:
        """The cached clip, if present and still hashing to `sha256`."""
        stem = self.stem(evidence, clear)
        for p in self.dir.glob(f"{stem}.*"):
            if p.suffix in (".jpg", ".part"):
                continue
            if sha256_file(p) == sha256:
                os.utime(p)  # recently used: evicted last
                return p
            p.unlink(missing_ok=True)  # changed on the supervisor's disk: fetched afresh
        return None

    def path(self, name: str) -> Path | None:
        """A cached file by name (no directories), or None."""
        if "/" in name or name.startswith(".") or not name:
            return None
        p = self.dir / name
        return p if p.is_file() else None

    def total(self) -> int:
        """Bytes held."""
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def trim(self, keep: set[Path]) -> int:
        """Delete the least recently used files until within the bound; how many deleted."""
        with self.lock:
            files = sorted((p for p in self.dir.iterdir() if p.is_file()
                            and not p.name.endswith(".part")),
                           key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            n = 0
            for p in files:
                if total <= self.max_bytes:
                    break
                if p in keep:
                    continue
                total -= p.stat().st_size
                p.unlink(missing_ok=True)
                n += 1
            return n


class EvidenceService:
    """Fetches journaled views' clips from the nodes; journals each outcome."""

    def __init__(self, state: State, journal: Journal, topics: Topics,
                 node_keys: dict[str, bytes], publish: Callable[..., Any],
                 now_ms: Callable[[], int], to_worker: Callable[[Callable[[], None]], None],
                 cache_dir: str | Path, cache_bytes: int = CACHE_BYTES,
                 timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self.state, self.journal, self.topics = state, journal, topics
        self.node_keys, self.publish, self.now_ms = node_keys, publish, now_ms
        self.to_worker = to_worker
        self.cache_dir, self.cache_bytes = Path(cache_dir), cache_bytes
        self._cache: EvidenceCache | None = None
        self.timeout_s = timeout_s
        self.waiting: dict[str, queue.Queue[tuple[dict[str, Any], bytes]]] = {}
        self.lock = threading.Lock()
        self.active = 0
        self.stats: Counter[str] = Counter()

    @property
    def cache(self) -> EvidenceCache:
        """The cache, created on first use (a supervisor nobody asks for video makes none)."""
        if self._cache is None:
            self._cache = EvidenceCache(self.cache_dir, self.cache_bytes)
        return self._cache

    # ---- paho's thread ---------------------------------------------------------------------

    def on_data(self, topic: str, payload: bytes) -> None:
        """An answer on node/<node>/evidence-data: verified, then handed to its fetch."""
        try:
            node = self.topics.parse(topic).node
            key = self.node_keys.get(node or "")
            if node is None or key is None:
                raise EvidenceError(f"evidence answer from unknown node {node!r}")
            body, data = open_response(payload, key, node)
        except (EvidenceError, TopicError) as e:
            self.stats["bad_answer"] += 1
            log.warning("evidence answer on %s refused: %s", topic, e)
            return
        with self.lock:
            q = self.waiting.get(body["txn"])
        if q is None:
            self.stats["unmatched"] += 1  # late (timed out) or not ours
            return
        q.put((body, data))

    # ---- the worker ------------------------------------------------------------------------

    def defer(self, user: str, response: bytes, send: Callable[[bytes], Any]) -> bool:
        """After a `view-evidence` staff response (MQTT path): start its fetch and answer when
        it ends (True), or leave the response to be sent as it is (False: refused)."""
        from protocol.staff import response_payload

        try:
            r = json.loads(response)
        except ValueError:
            return False
        if not r.get("ok") or "fetch" not in r.get("result", {}):
            return False

        def reply(final: dict[str, Any]) -> None:
            send(response_payload(final["txn"], final["ok"], final["error"], final["result"]))
        self.start(user, r, reply)
        return True

    def start(self, user: str, staff_result: dict[str, Any], reply: Reply) -> None:
        """Fetch the clip of a journaled view (`staff_result`: Staff.execute's answer)."""
        fetch = staff_result["result"]["fetch"]
        self.stats["views"] += 1
        with self.lock:
            busy = self.active >= MAX_ACTIVE
            if not busy:
                self.active += 1
        if busy:
            self._finish(user, staff_result, fetch, reply, {
                "ok": False, "outcome": "busy",
                "error": f"{MAX_ACTIVE} evidence fetches are running: try again shortly"})
            return
        t = threading.Thread(target=self._fetch, args=(user, staff_result, fetch, reply),
                             name=f"evidence-{fetch['evidence'][:20]}", daemon=True)
        t.start()

    # ---- the fetch thread ------------------------------------------------------------------

    def _fetch(self, user: str, staff_result: dict[str, Any], fetch: dict[str, Any],
               reply: Reply) -> None:
        try:
            out = self._get(user, staff_result["txn"], fetch)
        except Exception as e:  # whatever happens, the staff member hears of it
            log.exception("evidence fetch failed")
            out = {"ok": False, "outcome": "failed", "error": f"evidence fetch failed: {e}"}
        finally:
            with self.lock:
                self.active -= 1
        self.to_worker(lambda: self._finish(user, staff_result, fetch, reply, out))

    def _get(self, user: str, txn: str, fetch: dict[str, Any]) -> dict[str, Any]:
        evidence, clear, want = fetch["evidence"], fetch["clear"], fetch["sha256"]
        cache = self.cache
        hit = cache.find(evidence, clear, want)
        if hit is not None:
            return self._ready(hit, want, cached=True)
        node, key = fetch["node"], self.node_keys.get(fetch["node"])
        if key is None:
            return {"ok": False, "outcome": "failed", "error": f"no key for node {node!r}"}
        part = cache.dir / f".{evidence}.{txn[:40]}.part"
        h = hashlib.sha256()
        q: queue.Queue[tuple[dict[str, Any], bytes]] = queue.Queue()
        rtxn = f"ev-{os.urandom(8).hex()}"
        with self.lock:
            self.waiting[rtxn] = q
        offset = 0
        try:
            with open(part, "wb") as fh:
                while True:
                    req = EvidenceRequest(rtxn, evidence, user, clear, offset, MAX_CHUNK)
                    self.publish(self.topics.node(node, "evidence-request"),
                                 seal_request(key, node, self.now_ms(), req), 1, False)
                    deadline = time.monotonic() + self.timeout_s
                    while True:
                        try:
                            body, data = q.get(timeout=max(0.0, deadline - time.monotonic()))
                        except queue.Empty:
                            return {"ok": False, "outcome": "timeout",
                                    "error": f"node {node} did not answer within "
                                             f"{self.timeout_s:g} s (offline or busy?): "
                                             "no video was fetched"}
                        if body.get("offset", offset) == offset:
                            break  # an answer to an earlier, timed-out request is dropped
                    if not body["ok"]:
                        err = str(body.get("error") or "refused")
                        outcome = "mismatch" if "sha256" in err else "refused"
                        return {"ok": False, "outcome": outcome,
                                "error": f"node {node} refused: {err}"}
                    if body["sha256"] != want:
                        return {"ok": False, "outcome": "mismatch",
                                "error": f"node {node} offers evidence {evidence} with SHA-256 "
                                         f"{body['sha256'][:16]}..., not the journaled "
                                         f"{want[:16]}...: refused"}
                    if body["total"] > cache.max_bytes:
                        return {"ok": False, "outcome": "failed",
                                "error": f"clip of {body['total']} bytes exceeds the evidence "
                                         f"cache ({cache.max_bytes} bytes)"}
                    fh.write(data)
                    h.update(data)
                    offset += len(data)
                    if body["eof"] or offset >= body["total"]:
                        break
                    if not data:
                        return {"ok": False, "outcome": "failed",
                                "error": f"node {node} sent an empty chunk before the end"}
            got = h.hexdigest()
            if got != want:
                return {"ok": False, "outcome": "mismatch",
                        "error": f"evidence {evidence}: the {offset} bytes received hash to "
                                 f"{got[:16]}..., not the journaled {want[:16]}...: the clip "
                                 "on the node is not the one it recorded; nothing kept"}
            kind = media_kind(part)
            final = cache.dir / f"{cache.stem(evidence, clear)}.{kind}"
            os.replace(part, final)
            return self._ready(final, want, cached=False)
        finally:
            with self.lock:
                self.waiting.pop(rtxn, None)
            part.unlink(missing_ok=True)

    def _ready(self, path: Path, sha256: str, cached: bool) -> dict[str, Any]:
        """The answer for a verified clip in the cache (its still frame made if needed)."""
        kind = path.suffix.lstrip(".")
        out: dict[str, Any] = {"ok": True, "outcome": "cached" if cached else "fetched",
                               "error": None, "file": str(path), "name": path.name,
                               "bytes": path.stat().st_size, "sha256": sha256,
                               "playable": playable(path, kind), "still": None}
        if not out["playable"]:
            jpg = path.with_name(path.name + ".jpg")
            if jpg.is_file() or still_frame(path, jpg):
                out["still"] = jpg.name
        self.cache.trim({path, path.with_name(path.name + ".jpg")})
        return out

    # ---- back on the worker ------------------------------------------------------------------

    def _finish(self, user: str, staff_result: dict[str, Any], fetch: dict[str, Any],
                reply: Reply, out: dict[str, Any]) -> None:
        self.stats[out["outcome"]] += 1
        now = self.now_ms()
        record = {"ts": now, "user": user, "txn": staff_result["txn"],
                  "view": staff_result["result"].get("journal"),
                  "evidence": fetch["evidence"], "node": fetch["node"], "clear": fetch["clear"],
                  "ok": out["ok"], "outcome": out["outcome"], "error": out.get("error"),
                  "sha256": fetch["sha256"], "bytes": out.get("bytes")}
        try:
            self.state.apply(self.journal.append_own("evidence", record))
            if out["outcome"] == "mismatch":  # evidence changed on the node: staff must know
                self.state.apply(self.journal.append_own("security", {
                    "ts": now, "node": fetch["node"], "reason": "evidence_mismatch",
                    "detail": str(out["error"])[:300]}))
        except Exception as e:  # a full disk must not swallow the answer: said, and logged
            self.stats["unjournaled"] += 1
            log.error("evidence outcome not journaled: %s", e)
            out = {**out, "error": f"{out.get('error') or 'fetched'}; its outcome could not "
                                   f"be journaled ({e})"}
        if not out["ok"]:
            log.warning("view-evidence by %s: %s", user, out["error"])
        result = {k: v for k, v in staff_result["result"].items() if k != "fetch"}
        result.update({"evidence": fetch["evidence"], "clear": fetch["clear"],
                       "node": fetch["node"]})
        if out["ok"]:
            result.update({k: out[k] for k in ("file", "name", "bytes", "sha256", "playable",
                                               "still", "outcome")})
        reply({"txn": staff_result["txn"], "ok": out["ok"], "error": out.get("error"),
               "result": result})
