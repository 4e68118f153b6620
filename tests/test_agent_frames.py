"""Reader frames written into real ptys become exactly the right events on a real broker."""

import time

from edge_agent.drivers import rdm6300, uhf_m100
from tests.agent_support import (
    DETAINEE,
    OFFICER,
    STRANGER,
    AgentProcess,
    Observer,
    Rig,
    publish_roster,
    wait_for,
    wait_up,
    write_config,
    write_site,
)


def _bad_checksum_uhf(band: str) -> bytes:
    f = bytearray(uhf_m100.inventory_notice(uhf_m100.band_epc(band), rssi=-60))
    f[-2] ^= 0x5A
    return bytes(f)


def _bad_checksum_rdm(band: str) -> bytes:
    f = bytearray(rdm6300.encode(band))
    f[11:13] = b"00" if f[11:13] != b"00" else b"11"
    return bytes(f)


def test_noisy_split_and_bad_frames_become_exact_events(broker, tmp_path):
    rig = Rig()
    publish_roster(broker, {OFFICER: {"role": "officer", "sex": "f", "person": "p-1"},
                            DETAINEE: {"role": "detainee", "sex": "m", "person": "p-2",
                                       "case": "c-1"}})
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    try:
        wait_up(obs, agent)
        off = uhf_m100.inventory_notice(uhf_m100.band_epc(OFFICER), rssi=-55)
        det = uhf_m100.inventory_notice(uhf_m100.band_epc(DETAINEE), rssi=-61)
        # Noise, a frame split across writes, 3 bad checksums of a third band, an error frame.
        rig.uhf.write(b"\x00\xff\x13garbage\xbb\x05")
        rig.uhf.write(off[:7])
        time.sleep(0.05)
        rig.uhf.write(off[7:] + b"\x7e\x7e" + _bad_checksum_uhf(STRANGER))
        rig.uhf.write(uhf_m100.error_frame(0x15) + det[:3])
        rig.uhf.write(det[3:] + _bad_checksum_uhf(STRANGER) + _bad_checksum_uhf(STRANGER))
        # Desk reader: one tap held in the field (repeated frames), noise and a bad checksum.
        tap = rdm6300.encode(DETAINEE)
        rig.desk.write(b"\x02\x02zz" + tap[:5])
        time.sleep(0.05)
        rig.desk.write(tap[5:] + tap + _bad_checksum_rdm(STRANGER) + tap)
        # Door readers: the officer read inside, then in the corridor: a crossing out.
        rig.door_in.write(rdm6300.encode(OFFICER))
        time.sleep(0.2)
        rig.door_out.write(b"\x03" + rdm6300.encode(OFFICER))

        def settled():
            h = obs.health[-1]["obj"]["readers"] if obs.health else {}
            return (len(obs.unique("presence.enter")) >= 2 and obs.unique("crossing")
                    and h.get("uhf-a", {}).get("checksum") == 3
                    and h.get("desk-a", {}).get("checksum") == 1)

        wait_for(settled, 15, "presence, crossing and checksum counts", agent.log_text)
        enters = obs.unique("presence.enter")
        assert sorted(e.body["band"] for e in enters) == sorted([OFFICER, DETAINEE])
        assert {e.body["band"]: e.body["rssi"] for e in enters} == {OFFICER: -55, DETAINEE: -61}
        assert all(e.body["room"] == "room-a" and e.body["reader"] == "uhf-a" for e in enters)
        taps = [e.body for e in obs.unique("tap")]
        assert [t for t in taps if t["reader"] == "desk-a"] == [
            {"band": DETAINEE, "reader": "desk-a", "room": "room-a"}]
        assert [e.body for e in obs.unique("crossing")] == [
            {"band": OFFICER, "door": "d-a", "from_room": "room-a", "to_room": "corridor"}]
        # The stranger only ever arrived with bad checksums: no event names it.
        assert not [e for e in obs.events if STRANGER in str(e.body)]
        readers = obs.health[-1]["obj"]["readers"]
        assert readers["uhf-a"]["frames"] == 3  # officer, detainee, the "no tag" error frame
        assert readers["uhf-a"]["noise"] > 0
        # No band was read again: both leave after the TTL.
        wait_for(lambda: len(obs.unique("presence.leave")) == 2, 10, "presence.leave",
                 agent.log_text)
        assert sorted(e.body["band"] for e in obs.unique("presence.leave")) == sorted(
            [OFFICER, DETAINEE])
        # Checksum failures are surfaced as a fault too.
        faults = [e.body for e in obs.unique("fault") if e.body["kind"] == "checksum"]
        assert {f["device"] for f in faults if f["phase"] == "new"} == {"uhf-a", "desk-a"}
        assert agent.proc is not None and agent.proc.poll() is None
        assert obs.bad == []
        assert agent.terminate() == 0
    finally:
        agent.close()
        obs.close()
        rig.close()
