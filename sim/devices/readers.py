"""Virtual RFID readers: a UHF presence reader polling the bands in its room, and tap readers."""

import contextlib
import os
import random

from .frames import Noise, impair, rdm6300_frame, uhf_error, uhf_inventory
from .pty_port import PtyPort


class VirtualReader:
    """A reader behind a pty: writes real frames for the bands it reads."""

    def __init__(self, reader_id: str, kind: str, noise: Noise | None = None,
                 seed: int = 0) -> None:
        if kind not in ("uhf", "rdm6300"):
            raise ValueError(f"reader kind {kind!r} unknown")
        self.id = reader_id
        self.kind = kind
        self.port = PtyPort(reader_id)
        self.noise = noise or Noise()
        self.rng = random.Random(seed)
        self.frames = 0
        self.corrupted = 0
        self.enabled = True  # a reader cut off (e.g. unplugged) writes nothing
        self._link = ""  # the stable name the node opens (see link)

    @property
    def path(self) -> str:
        """The pty path the agent opens."""
        return self.port.path

    def read_band(self, band: str, *, tamper: bool = False, battery_low: bool = False,
                  rssi: int = -55) -> None:
        """The reader sees `band` once: write its frame through the line's impairments."""
        if not self.enabled:
            return
        if self.kind == "uhf":
            frame = uhf_inventory(band, rssi, tamper=tamper, battery_low=battery_low)
        else:
            frame = rdm6300_frame(band)
        self._send(frame)

    def idle(self) -> None:
        """A UHF poll with nothing in the field ("no tag" error frame)."""
        if self.enabled and self.kind == "uhf":
            self._send(uhf_error(0x15))

    def _send(self, frame: bytes) -> None:
        writes, intact = impair(frame, self.noise, self.rng) if not self.noise.clean else (
            [frame], True)
        for w in writes:
            self.port.write(w)
        self.frames += 1
        self.corrupted += 0 if intact else 1

    def link(self, path: str) -> str:
        """Give the reader a stable name (a symlink to its pty, as udev's by-id links are),
        so that it can be unplugged and plugged in again on a new pty; returns `path`."""
        self._link = path
        self._relink()
        return path

    def _relink(self) -> None:
        tmp = f"{self._link}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.port.path, tmp)
        os.replace(tmp, self._link)

    def unplug(self) -> None:
        """Pull the reader's cable: its pty goes away (the driver's reads fail) and nothing
        is written until `plug`."""
        self.enabled = False
        self.port.close()

    def plug(self) -> None:
        """Plug it in again: a new pty behind the same name."""
        if self.enabled:
            return
        self.port = PtyPort(self.id)
        if self._link:
            self._relink()
        self.enabled = True

    def close(self) -> None:
        """Close the pty."""
        self.port.close()
