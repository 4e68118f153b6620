"""Evidence from the node to an authorised person, end to end, over a real Mosquitto: a real
agent whose camera worker records a real clip and keeps the clip around a fall; a real
supervisor; staff asking for it by the fall alert. The view is journaled before any video
moves, the clip's hash is checked against the journal, roles decide masked / clear / nothing,
and a changed clip, a lying node and a silent node each end in a clear error, counted, with
nothing kept."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import paho.mqtt.client as mqtt
import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from edge_agent.vision.capture import Frame
from edge_agent.vision.pipeline import CameraWorker
from protocol.clock import REAL
from protocol.evidence import REQUEST_CHANNEL, open_request, response, seal_response
from protocol.site import Camera, load_site
from protocol.transport import LinkConf, make_client
from supervisor.service import Supervisor
from tests.agent_support import KEY, NODE, Rig, wait_for, write_config, write_site
from tests.conftest import SHARED_DATA
from tests.supervisor_support import Driver, make_directory

CLIP = SHARED_DATA / "gmdcsa24" / "Subject-3" / "Fall" / "20.mp4"  # walking, then a fall
CAMERA = '\n[[nodes.cameras]]\nid = "cam-a"\nsource = "0"\n'


def _frames(path: Path) -> tuple[list[Any], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out, fps


def _entries(sup: Supervisor, kind: str) -> list[tuple[int, dict[str, Any]]]:
    return sup.submit(lambda: [(e.idx, e.json()) for e in sup.journal.entries()
                               if e.kind == kind])


def view(driver: Driver, args: dict[str, Any], user: str, expect_ok: bool = True
         ) -> dict[str, Any]:
    """view-evidence over MQTT; its answer comes once the clip is fetched (or refused)."""
    return driver.staff("view-evidence", args, user=user, expect_ok=expect_ok, timeout=60)


class LyingNode:
    """Answers evidence requests with the node's key, claiming the journaled hash for bytes
    that are not the clip (a node whose disk was changed and whose records were too)."""

    def __init__(self, broker: Any, topics: Any, claimed_sha: str) -> None:
        self.topics, self.claimed = topics, claimed_sha
        self.client = make_client("lying-node", LinkConf(broker.host, broker.port))
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(broker.host, broker.port, 5)
        self.client.loop_start()
        self.client.subscribe(topics.node(NODE, REQUEST_CHANNEL), 1)
        assert ready.wait(5)

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        req = open_request(bytes(msg.payload), KEY, NODE)
        import base64

        data = b"not the recorded clip" * 10
        resp = response(req, ok=True, sha256=self.claimed, total=len(data), offset=0,
                        data_b64=base64.b64encode(data).decode(), eof=True, clear=req.clear)
        self.client.publish(self.topics.node(NODE, "evidence-data"),
                            seal_response(KEY, NODE, REAL.now_ms(), resp), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.skipif(not CLIP.is_file(), reason=f"real clip not present at {CLIP} "
                    "(shared data folder absent; set CUSTODY_SHARED_DATA)")
def test_evidence_fetched_verified_journaled_and_refused_by_role(broker, tmp_path):
    site_file = write_site(tmp_path, room_kind="holding")
    site_file.write_text(site_file.read_text() + CAMERA)
    rig = Rig()
    agent = Agent(load_agent_config(write_config(tmp_path, broker, rig, site_file)))
    site = load_site(site_file)
    worker = CameraWorker(Camera("cam-a", "0", ()), "room-a", agent.emit_threadsafe, REAL,
                          site.rules, record_dir=str(tmp_path / "rec"), segment_s=2.0,
                          ring_hours=1.0, evidence_dir=str(tmp_path / "ev"),
                          evidence_before_s=2.0, evidence_after_s=1.0)
    agent.cameras["cam-a"] = worker
    (tmp_path / "sup").mkdir()
    sup = Supervisor(site, {NODE: KEY}, tmp_path / "sup" / "journal.db",
                     tmp_path / "sup" / "checkpoint.json", LinkConf(broker.host, broker.port),
                     REAL, accounts=make_directory())
    threads = [threading.Thread(target=agent.run, daemon=True),
               threading.Thread(target=sup.run, daemon=True)]
    for t in threads:
        t.start()
    driver = None
    try:
        assert sup.subscribed.wait(10)
        driver = Driver(broker.host, broker.port, site, REAL)
        # The camera sees the real clip (stamped as if it just happened).
        imgs, fps = _frames(CLIP)
        start = REAL.now_ms() - round(len(imgs) * 1000 / fps) - 2000
        for i, img in enumerate(imgs):
            worker.process(Frame(start + round(i * 1000 / fps), image=img))
        worker.stop()  # closes the segment, cuts the pending clip
        for t in worker._evidence_threads:
            t.join(30)
        (kept,) = worker.evidence.kept.values()
        fall = driver.wait_for("fall", 20)
        assert fall["evidence"] == kept.id  # the alert carries its clip's reference
        wait_for(lambda: kept.id in sup.state.evidence, 20, "the evidence event journaled")

        # An officer: refused, journaled as refused, no fetch made.
        r = view(driver, {"alert": fall["id"]}, user="o1", expect_ok=False)
        assert "may not" in r["error"]
        # A custody supervisor: the masked clip, checked against the journal.
        r = view(driver, {"alert": fall["id"]}, user="sup")["result"]
        got = Path(r["file"])
        assert got.parent == tmp_path / "sup" / "evidence-cache"
        assert hashlib.sha256(got.read_bytes()).hexdigest() == kept.sha256 == r["sha256"]
        assert r["clear"] is False and r["evidence"] == kept.id
        # mp4v does not play in Chromium: a still frame from the verified clip instead.
        assert r["playable"] is False and (got.parent / r["still"]).stat().st_size > 1000
        views = [(i, o) for i, o in _entries(sup, "staff") if o["command"] == "view-evidence"]
        outcomes = _entries(sup, "evidence")
        assert views[0][1]["user"] == "sup" and views[0][1]["args"]["evidence"] == kept.id
        assert views[0][1]["args"]["clear"] is False
        assert outcomes[0][1]["outcome"] == "fetched" and outcomes[0][1]["user"] == "sup"
        assert views[0][0] < outcomes[0][0]  # the view journaled before the video came
        # Clear video: not for a custody supervisor; for a legal officer only with a reason.
        r = view(driver, {"alert": fall["id"], "clear": True,
                                           "reason": "complaint"}, user="sup", expect_ok=False)
        assert "legal" in r["error"]
        r = view(driver, {"evidence": kept.id, "clear": True}, user="insp",
                         expect_ok=False)
        assert "reason" in r["error"]
        r = view(driver, {"evidence": kept.id, "clear": True,
                                           "reason": "complaint 12"}, user="insp")["result"]
        assert hashlib.sha256(Path(r["file"]).read_bytes()).hexdigest() == kept.clear_sha256
        last = [o for _, o in _entries(sup, "staff") if o["command"] == "view-evidence"][-1]
        assert (last["user"], last["args"]["clear"], last["args"]["reason"]) == \
            ("insp", True, "complaint 12")
        # An unknown id: refused, nothing asked of any node.
        r = view(driver, {"evidence": "no-such-clip"}, user="sup",
                         expect_ok=False)
        assert "no evidence 'no-such-clip'" in r["error"]

        # The clip changed on the node's disk: the node itself refuses it, staff are told,
        # and it is a security alert.
        masked = tmp_path / "ev" / kept.masked_file
        data = bytearray(masked.read_bytes())
        data[len(data) // 2] ^= 0xFF
        masked.write_bytes(bytes(data))
        for f in (tmp_path / "sup" / "evidence-cache").glob(f"{kept.id}.masked*"):
            f.unlink()
        r = view(driver, {"alert": fall["id"]}, user="sup", expect_ok=False)
        assert "sha256" in r["error"]
        assert driver.wait_for("security", 10)
        assert not list((tmp_path / "sup" / "evidence-cache").glob(f"{kept.id}.masked*"))
    finally:
        agent.stop()
        threads[0].join(10)
        rig.close()

    try:
        # A node that lies (the journaled hash, other bytes): the supervisor's own check.
        liar = LyingNode(broker, sup.topics, kept.sha256)
        try:
            r = view(driver, {"alert": fall["id"]}, user="sup",
                             expect_ok=False)
        finally:
            liar.close()
        assert "not the journaled" in r["error"] and "nothing kept" in r["error"]
        # Nobody answers: a timeout, said as such.
        sup.evidence.timeout_s = 2.0
        r = view(driver, {"alert": fall["id"]}, user="sup", expect_ok=False)
        assert "did not answer within 2 s" in r["error"]
        stats = sup.evidence.stats
        assert (stats["fetched"], stats["mismatch"], stats["timeout"]) == (2, 2, 1)
        outcomes = [o["outcome"] for _, o in _entries(sup, "evidence")]
        assert outcomes == ["fetched", "fetched", "mismatch", "mismatch", "timeout"]
        assert not [p for p in (tmp_path / "sup" / "evidence-cache").iterdir()
                    if p.name.startswith(".")]  # no partial file left behind
        # Counted where an operator looks: the supervisor's health.
        from supervisor.health import health_body

        health = json.loads(json.dumps(health_body(sup, REAL.now_ms())))["evidence"]
        assert health["views"] == 5 and health["fetched"] == 2 and health["mismatch"] == 2
        assert health["refused_views"] == 4  # officer, sup clear, no reason, unknown id
    finally:
        assert driver is not None
        driver.close()
        sup.stop_event.set()
        threads[1].join(10)
