"""Tampering with the journal, one way at a time: `custody audit verify` catches every one.

The journal is made by the real supervisor (real agent events, alerts, availability) and
closed cleanly so its last checkpoint covers every entry; each mutation then acts on a copy.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.broker import BrokerConfig, Mosquitto
from custody.cli import main as custody_main
from tests.fault_support import journal_rows, tally
from tests.journal_mutations import mutations
from tests.test_fault_e2e import Chain

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE: list[Path] = []  # the supervisor's checkpoint key, once the fixture has run


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("audit")
    with Mosquitto(BrokerConfig()) as b:
        c = Chain(d, b)
        try:
            c.sup.start()
            c.agent.start()
            c.wait_up()
            c.taps.burst(25, rate_hz=50)
            c.wait_journaled(25)
            assert tally(c.taps.generated, c.journaled_taps()).clean()
        finally:
            c.close()  # SIGTERM: the supervisor files a final checkpoint
    cp = c.db.with_suffix(".checkpoint")
    assert cp.exists() and len(journal_rows(c.db)) >= 27
    KEY_FILE.append(d / "checkpoint.key")  # beside the keys file, not the journal
    yield c.db, cp


def _verify(db: Path, cp: Path | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = ["audit", "verify", "--db", str(db)] + (
        ["--checkpoint", str(cp), "--checkpoint-key", str(KEY_FILE[-1])]
        if cp else [])
    rc = custody_main(args)
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_untouched_journal_verifies(journal, capsys):
    db, cp = journal
    rc, text = _verify(db, cp, capsys)
    assert rc == 0 and "OK" in text, text


@pytest.mark.parametrize("name", sorted(mutations()))
def test_every_mutation_is_detected(name, journal, tmp_path, capsys):
    db, cp = journal
    copy = tmp_path / "journal.db"
    shutil.copy(db, copy)
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    mutate, needs_checkpoint = mutations()[name]
    what = mutate(copy)
    rc, text = _verify(copy, cp, capsys)
    assert rc == 1, f"{what}: not detected\n{text}"
    assert "TAMPERED" in text and ("entry #" in text or "entries #" in text), text
    if needs_checkpoint:
        # The chain alone cannot see it (a cut tail, or a forger who recomputed every hash):
        # that is what the signed checkpoint is for.
        rc_chain, _ = _verify(copy, None, capsys)
        assert rc_chain == 0, f"{what}: expected only the checkpoint to catch it"


def test_a_forged_checkpoint_is_refused(journal, tmp_path, capsys):
    db, cp = journal
    forged = tmp_path / "forged.checkpoint"
    forged.write_bytes(cp.read_bytes().replace(b'"count":', b'"count":1'))
    rc, text = _verify(db, forged, capsys)
    assert rc == 1 and "TAMPERED" in text, text


def test_cli_exit_status_as_a_process(journal, tmp_path):
    db, cp = journal
    copy = tmp_path / "journal.db"
    shutil.copy(db, copy)
    mutations()["delete-middle"][0](copy)
    r = subprocess.run([sys.executable, "-m", "custody", "audit", "verify", "--db", str(copy),
                        "--checkpoint", str(cp), "--checkpoint-key", str(KEY_FILE[-1])],
                       cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "TAMPERED" in r.stderr, r.stdout + r.stderr
