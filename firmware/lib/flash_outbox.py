# The outbox in flash: one file per signed event, written before it is published and
# deleted only when the supervisor's verified ack names its (epoch, seq). Survives reset.
# (Not named outbox.py: the outbox/ directory at the flash root would shadow it.)
#   <dir>/state.json   {"epoch": E, "seq": S}: S is at least the last sequence handed out
#   <dir>/<E>-<S>.ev   the exact payload bytes of event (E, S)
# Files are written to a temporary name and renamed, so a reset never leaves half an event.
import json
import os

import envelope
import fwclock


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)  # atomic replace on LittleFS (the ESP32 default)
    except OSError:
        # FAT refuses to rename onto an existing file: remove it first. A reset in between
        # loses only state.json, and a lost state starts a new (clock-derived) epoch.
        os.remove(path)
        os.rename(tmp, path)


class Outbox:
    def __init__(self, directory, key, node, default_epoch=1, max_events=2000):
        self.dir = directory
        self.key = key
        self.node = node
        self.max_events = max_events
        self.dropped = 0
        if not _exists(directory):
            os.mkdir(directory)
        self.pending = []  # sorted [(epoch, seq)]
        for name in os.listdir(directory):
            if name.endswith(".ev"):
                e, s = name[:-3].split("-")
                self.pending.append((int(e), int(s)))
            elif name.endswith(".tmp"):
                os.remove(directory + "/" + name)  # an interrupted write: never published
        self.pending.sort()
        state = None
        try:
            with open(directory + "/state.json") as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = None
        if state is None:
            # A fresh (or wiped) board: a clock-derived epoch never repeats an old one.
            epoch = default_epoch
            if fwclock.clock_valid():
                epoch = max(epoch, fwclock.real_ms() // 1000)
            for e, _ in self.pending:
                epoch = max(epoch, e)
            self.epoch, self.seq = epoch, 0
            self._save_state()
        else:
            self.epoch, self.seq = state["epoch"], state["seq"]
        for e, s in self.pending:
            if e == self.epoch and s > self.seq:
                self.seq = s

    def _save_state(self):
        _write_atomic(self.dir + "/state.json",
                      json.dumps({"epoch": self.epoch, "seq": self.seq}).encode())

    def _path(self, epoch, seq):
        return "%s/%d-%d.ev" % (self.dir, epoch, seq)

    def full(self):
        return len(self.pending) >= self.max_events

    def append(self, event_type, body, must_keep=False):
        """Sign and store one event; return (epoch, seq) or None if full and droppable."""
        if self.full() and not must_keep:
            self.dropped += 1
            return None
        seq = self.seq + 1
        payload = envelope.seal(self.key, self.node, self.epoch, seq, fwclock.now_ms(),
                                event_type, body)
        _write_atomic(self._path(self.epoch, seq), payload)
        self.seq = seq
        self.pending.append((self.epoch, seq))
        return (self.epoch, seq)

    def read(self, epoch, seq):
        with open(self._path(epoch, seq), "rb") as f:
            return f.read()

    def ack(self, epoch, seqs):
        """Delete the acknowledged events; return how many were pending."""
        gone = [(epoch, s) for s in seqs if (epoch, s) in self.pending]
        if not gone:
            return 0
        # Keep the high-water mark on flash before the newest event file can disappear.
        if epoch == self.epoch:
            self._save_state()
        for key in gone:
            try:
                os.remove(self._path(key[0], key[1]))
            except OSError:
                pass
            self.pending.remove(key)
        return len(gone)
