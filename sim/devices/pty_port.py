"""The device side of what the real drivers open by path: a pty pair for serial devices,
a named pipe for keypoint feeds; the simulator writes it."""

import contextlib
import errno
import os
import shutil
import tempfile
import threading
import tty


class PtyPort:
    """One pseudo-terminal: the agent opens `path` (the slave), we write the master.

    The slave is put in raw mode at once (no echo, no line editing) so bytes written before
    the driver opens it are neither echoed back nor cooked. Writes never block: what the
    kernel buffer cannot take waits in `pending` (so frames and lines are never cut), and
    past MAX_PENDING new writes are dropped whole and counted.
    """

    MAX_PENDING = 65536

    def __init__(self, name: str) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self._init_writer(name, self.master, os.ttyname(self._slave))

    def _init_writer(self, name: str, out: int, path: str) -> None:
        """The state of the writing side, whatever the file: `out` is written, `path` is
        what the reader opens."""
        self.name, self._out, self.path = name, out, path
        self.written = 0
        self.dropped = 0
        self.pending = bytearray()
        self._lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes) -> bool:
        """Write bytes to the device side; False (and counted) if they could not go."""
        with self._lock:
            if self.closed:
                return False
            self._drain()
            if len(self.pending) + len(data) > self.MAX_PENDING:
                self.dropped += 1
                self.flush()
                return False
            self.pending += data
            self.flush()
            return True

    def flush(self) -> None:
        """Push pending bytes into the pty as far as it takes them."""
        while self.pending and not self.closed:
            try:
                n = os.write(self._out, self.pending)
            except OSError as e:
                # EBADF: closed under us (a reader unplugged while the pump wrote to it)
                if e.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    return
                raise
            self.written += n
            del self.pending[:n]

    def delivered(self) -> bool:
        """Push what waits in `pending`; True when the kernel has taken everything. Bytes
        left here are invisible to the reading node (it sees an empty pty), so the simulator
        counts itself behind while they wait (see Run._pump)."""
        with self._lock:
            self.flush()
            return not self.pending

    def _drain(self) -> None:
        # Whatever the driver writes (e.g. the UHF multi-poll command) is read and ignored.
        with contextlib.suppress(OSError):
            while os.read(self.master, 4096):
                pass

    def close(self) -> None:
        """Close both ends."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for fd in (self.master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


class FifoPort(PtyPort):
    """A named pipe in place of a pty, for a keypoint feed (not a serial device).

    Bytes written to a pty reach its reader through a kernel worker that runs at normal
    priority; with the run's processes ahead of it (sim/priority.py) on a busy machine a line
    waited there, seen by neither side's checks, for 60 ms (4 custody s at x60) while custody
    time ran. A pipe's bytes are readable, and counted by FIONREAD, as soon as the write
    returns. Opened read-write here, so the pipe never has no writer (the reader would see
    end of file) and opening it never waits for the reader.
    """

    def __init__(self, name: str) -> None:
        self._dir = tempfile.mkdtemp(prefix="custody-kp-")
        path = os.path.join(self._dir, f"{name}.kp")
        os.mkfifo(path, 0o600)
        self._init_writer(name, os.open(path, os.O_RDWR | os.O_NONBLOCK), path)

    def _drain(self) -> None:
        pass  # nothing comes back up a pipe (reading here would take the reader's lines)

    def close(self) -> None:
        """Close the pipe and remove it."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self._out)
            shutil.rmtree(self._dir, ignore_errors=True)
