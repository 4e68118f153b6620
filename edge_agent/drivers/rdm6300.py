"""RDM6300 125 kHz EM4100 reader frames.

Source: the RDM630/RDM6300 125 kHz card reader module data sheet (UART output format):
9600 8N1, each read is 14 bytes

    0x02 | 10 ASCII hex (2 version/customer + 8 data = the 5-byte EM4100 id) | 2 ASCII hex | 0x03

where the 2 hex digits are the XOR of the 5 id bytes. The module repeats the frame while a
tag stays in the field.
"""

from collections import Counter

from . import Read

STX, ETX = 0x02, 0x03
FRAME_LEN = 14
_HEX = frozenset(b"0123456789abcdefABCDEF")


def encode(band: str) -> bytes:
    """The frame an RDM6300 sends for a 10-hex-digit band id (for simulators and tests)."""
    raw = bytes.fromhex(band)
    if len(raw) != 5:
        raise ValueError(f"an EM4100 id is 5 bytes, got {band!r}")
    x = 0
    for b in raw:
        x ^= b
    return bytes([STX]) + raw.hex().upper().encode() + f"{x:02X}".encode() + bytes([ETX])


def decode(frame: bytes) -> str | None:
    """Band id of a 14-byte frame whose structure is valid, or None if its checksum fails.

    Raises ValueError when the bytes are not shaped like a frame at all.
    """
    if len(frame) != FRAME_LEN or frame[0] != STX or frame[-1] != ETX or \
            any(b not in _HEX for b in frame[1:13]):
        raise ValueError("not an RDM6300 frame")
    raw = bytes.fromhex(frame[1:11].decode("ascii"))
    x = 0
    for b in raw:
        x ^= b
    if x != int(frame[11:13].decode("ascii"), 16):
        return None
    return raw.hex()


class Rdm6300Parser:
    """Turns a byte stream into reads; resynchronises on noise and keeps split frames.

    Counters: `frames` (good), `checksum` (well-formed frames with a wrong XOR), `noise`
    (bytes discarded while looking for a frame).
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.counts: Counter[str] = Counter()

    def feed(self, data: bytes) -> list[Read]:
        """Consume bytes; return the reads completed by them."""
        self.buf += data
        out: list[Read] = []
        buf = self.buf
        while True:
            start = buf.find(STX)
            if start < 0:
                self.counts["noise"] += len(buf)
                buf.clear()
                break
            if start:
                self.counts["noise"] += start
                del buf[:start]
            # Validate as far as we have bytes: a broken frame is dropped as soon as it shows.
            bad = False
            for i in range(1, min(len(buf), FRAME_LEN)):
                b = buf[i]
                if (i < 13 and b not in _HEX) or (i == 13 and b != ETX):
                    bad = True
                    break
            if bad:
                self.counts["noise"] += 1
                del buf[:1]
                continue
            if len(buf) < FRAME_LEN:
                break  # a split frame: wait for the rest
            band = decode(bytes(buf[:FRAME_LEN]))
            del buf[:FRAME_LEN]
            if band is None:
                self.counts["checksum"] += 1
            else:
                self.counts["frames"] += 1
                out.append(Read(band))
        return out
