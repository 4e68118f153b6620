"""An audit that cannot be re-signed away, against a real supervisor and Mosquitto.

Checkpoints are appended to a store, never overwritten; the key lives with the keys, not
beside the journal; a supervisor restarted over a truncated or rewritten journal refuses to
continue and says so on MQTT; `custody audit verify` checks every filed checkpoint.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from supervisor.journal import checkpoint, checkpoint_store, read_checkpoints
from tests.journal_mutations import rechain
from tests.supervisor_support import Driver, make_site, sped_up, write_files
from tests.test_storage_full import Watch, until


def _start(site_file: Path, keys_file: Path, db: Path, cp: Path, broker, clock,
           log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "custody", "supervisor", "--config",
                                 str(site_file), "--keys", str(keys_file), "--db", str(db),
                                 "--checkpoint", str(cp), "--host", broker.host, "--port",
                                 str(broker.port)], env={**os.environ, **clock.env()},
                                stdout=out, stderr=subprocess.STDOUT)


def _audit(db: Path, cp: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "custody", "audit", "verify", "--db", str(db),
                           "--checkpoint", str(cp), "--checkpoint-key", str(key)],
                          capture_output=True, text=True, timeout=60)


def test_truncated_or_rewritten_journal_is_refused_and_the_key_is_not_beside_it(broker,
                                                                                tmp_path):
    site_file, keys_file = write_files(tmp_path)
    var = tmp_path / "var"
    var.mkdir()
    db, cp, log = var / "j.db", var / "cp.json", tmp_path / "supervisor.log"
    key_file = tmp_path / "checkpoint.key"  # with the keys, as the CLI defaults
    site, clock = make_site(), sped_up(5.0)
    proc = _start(site_file, keys_file, db, cp, broker, clock, log)
    d = Driver(broker.host, broker.port, site, clock)
    w = Watch(broker.host, broker.port, d.topics.base)
    try:
        until(lambda: b"online" in w.availability, 20, "online", log)
        for i in range(1, 13):
            d.event("node-entry", "door", {"door": "d1", "state": "open" if i % 2 else "closed"})
        until(lambda: set(range(1, 13)) <= w.acked, 20, "12 events acked", log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        # Two runs' worth of checkpoints, appended: the first run's are still there.
        proc = _start(site_file, keys_file, db, cp, broker, clock, log)
        until(lambda: w.availability.count(b"online") >= 2, 20, "online again", log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        filed = read_checkpoints(cp)
        assert len(filed) >= 3
        assert key_file.exists() and not [p for p in var.iterdir() if p.suffix == ".key"]
        assert _audit(db, cp, key_file).returncode == 0

        # Cut the journal's tail and restart: refused, on MQTT, nothing re-signed.
        con = sqlite3.connect(db)
        n = con.execute("SELECT MAX(idx) FROM journal").fetchone()[0]
        con.execute("DELETE FROM journal WHERE idx > ?", (n - 4,))
        con.commit()
        con.close()
        store_before = checkpoint_store(cp).read_bytes()
        proc = _start(site_file, keys_file, db, cp, broker, clock, log)
        assert proc.wait(30) == 2
        assert "REFUSED" in log.read_text() and "truncated" in log.read_text()
        until(lambda: [a for a in w.of("security", "raised")
                       if "refuses to start" in a["message"]], 10, "the security alert", log)
        until(lambda: w.availability[-1:] == [b"refused"], 10, "availability refused", log)
        assert checkpoint_store(cp).read_bytes() == store_before  # nothing appended
        r = _audit(db, cp, key_file)
        assert r.returncode == 1 and "truncated" in r.stderr, r.stderr

        # A forger rewrites the whole chain and signs with a key planted beside the journal:
        # the supervisor does not use it, so it refuses; the auditor's key rejects it too.
        con = sqlite3.connect(db)
        con.execute("UPDATE journal SET payload = CAST('{}' AS BLOB) WHERE idx = 2")
        rechain(con)
        count, head = con.execute("SELECT idx, hash FROM journal ORDER BY idx DESC "
                                  "LIMIT 1").fetchone()
        con.commit()
        con.close()
        planted = os.urandom(32)
        Path(str(db) + ".key").write_text(planted.hex())
        forged = checkpoint(planted, count, bytes.fromhex(head), int(time.time() * 1000))
        cp.write_bytes(forged)
        with open(checkpoint_store(cp), "ab") as f:
            f.write(forged + b"\n")
        proc = _start(site_file, keys_file, db, cp, broker, clock, log)
        assert proc.wait(30) == 2
        assert _audit(db, cp, key_file).returncode == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        w.close()
        d.close()
