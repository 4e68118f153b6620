"""A pty pair the real drivers open by path; the simulator writes the device side."""

import contextlib
import errno
import os
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
        self.name = name
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
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
                n = os.write(self.master, self.pending)
            except OSError as e:
                # EBADF: closed under us (a reader unplugged while the pump wrote to it)
                if e.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    return
                raise
            self.written += n
            del self.pending[:n]

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
