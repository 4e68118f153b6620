"""The vision plug point as the contract fixes it (a stand-in vision module: the real one is
the vision part's; these unit tests only show the agent's side of the call)."""

import sys
import threading
import types

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from tests.agent_support import Observer, Rig, wait_for, write_config, write_site

CAMERA = '\n[[nodes.cameras]]\nid = "cam-a"\nsource = "0"\n'


class FakeWorker:
    def __init__(self, camera, room, emit, clock, rules):
        self.args = (camera, room, emit, clock, rules)
        self.options: dict = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        camera, room, emit = self.args[0], self.args[1], self.args[2]
        while not self.stopped.wait(0.2):  # emit from the worker's own thread
            emit("camera", {"camera": camera.id, "room": room, "live": True, "fps_x10": 150})

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()

    def health(self):
        return {"fps_x10": 150, "frames": 7}


def _agent(broker, tmp_path, vision: bool):
    rig = Rig()
    site = write_site(tmp_path)
    site.write_text(site.read_text() + CAMERA)
    cfg = write_config(tmp_path, broker, rig, site, vision=vision)
    cfg.write_text(cfg.read_text() + '[cameras.cam-a]\nsource = "kp:/dev/null"\n')
    return Agent(load_agent_config(cfg)), rig


def test_open_camera_called_per_camera_and_events_flow(broker, tmp_path, monkeypatch):
    workers = []

    def open_camera(camera, room, emit, clock, rules, **options):
        w = FakeWorker(camera, room, emit, clock, rules)
        w.options = options
        workers.append(w)
        return w

    mod = types.ModuleType("edge_agent.vision")
    mod.open_camera = open_camera
    monkeypatch.setitem(sys.modules, "edge_agent.vision", mod)
    agent, rig = _agent(broker, tmp_path, True)
    obs = Observer(broker)
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: obs.unique("camera") and obs.health
                 and "cameras" in obs.health[-1]["obj"], 15, "camera events and health")
        (w,) = workers
        camera, room, _, clock, rules = w.args
        assert (camera.id, camera.source, room) == ("cam-a", "kp:/dev/null", "room-a")
        assert clock is agent.clock and rules is agent.conf.site.rules
        assert w.options == {"heartbeat_s": rules.recording_gap_s / 2}
        assert obs.health[-1]["obj"]["cameras"] == {"cam-a": {"fps_x10": 150, "frames": 7}}
        assert obs.unique("camera")[0].body == {"camera": "cam-a", "room": "room-a",
                                                "live": True, "fps_x10": 150}
    finally:
        agent.stop()
        t.join(10)
        obs.close()
        rig.close()
    assert w.stopped.is_set()


def test_missing_vision_is_a_fault_not_a_crash(broker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "edge_agent.vision", None)  # import fails
    agent, rig = _agent(broker, tmp_path, True)
    obs = Observer(broker)
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        f = wait_for(lambda: obs.unique("fault"), 15, "a fault")[0]
        assert f.body["kind"] == "vision-unavailable" and f.body["device"] == "cam-a"
        assert t.is_alive()
    finally:
        agent.stop()
        t.join(10)
        obs.close()
        rig.close()


def test_vision_false_never_imports_vision(broker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "edge_agent.vision", None)
    agent, rig = _agent(broker, tmp_path, False)
    agent._start_vision()
    assert agent.cameras == {} and agent.outbox.depth == 0
    agent.outbox.close()
    rig.close()
