"""MagicRF M100 / QM100 UHF inventory reader frames (YRM100, JRD-100 modules).

Source: "MagicRF M100 & QM100 UHF RFID reader module firmware command manual" (frame format,
single and multiple polling). Every frame is

    0xBB | Type | Command | PL (2 bytes, big-endian) | payload | checksum | 0x7E

with checksum = (Type + Command + PL bytes + payload) & 0xFF. Type 0x00 = command,
0x01 = response, 0x02 = notice. An inventory notice (Type 0x02, Command 0x22) carries
RSSI (1 byte, signed dBm), PC (2 bytes), EPC (PL - 5 bytes), CRC-16 (2 bytes). An error
response is Type 0x01, Command 0xFF with a one-byte code (0x15: no tag in this poll).

Band status is a custody-edge convention, not part of the manual: a custody band sets bit 0
(tamper) and bit 1 (battery low) of the PC word's low (attribute) byte.
"""

from collections import Counter
from dataclasses import dataclass

from . import Read

HEADER, END = 0xBB, 0x7E
TYPES = (0x00, 0x01, 0x02)
CMD_INVENTORY, CMD_ERROR, CMD_MULTI_POLL = 0x22, 0xFF, 0x27
ERR_NO_TAG = 0x15
MAX_PAYLOAD = 255  # longest frame this family sends is far shorter (EPC <= 62 bytes)
MAX_BAND_EPC = 32  # band ids are at most 64 hex digits; longer EPCs are not custody bands
PC_TAMPER, PC_BATTERY_LOW = 0x01, 0x02
BAND_EPC_PREFIX = bytes(7)


def checksum(body: bytes | bytearray) -> int:
    """Sum of Type..last payload byte, & 0xFF."""
    return sum(body) & 0xFF


def frame(ftype: int, command: int, payload: bytes) -> bytes:
    """Build a complete frame."""
    body = bytes([ftype, command, len(payload) >> 8, len(payload) & 0xFF]) + payload
    return bytes([HEADER]) + body + bytes([checksum(body), END])


def multi_poll_command(count: int = 0xFFFF) -> bytes:
    """The "multiple polling" command (BB 00 27 00 03 22 cnt_hi cnt_lo cks 7E)."""
    return frame(0x00, CMD_MULTI_POLL, bytes([0x22, count >> 8, count & 0xFF]))


def band_epc(band: str) -> bytes:
    """The 12-byte EPC a custody band carries for its 5-byte id."""
    raw = bytes.fromhex(band)
    if len(raw) != 5:
        raise ValueError(f"a band id is 5 bytes, got {band!r}")
    return BAND_EPC_PREFIX + raw


def band_of_epc(epc: bytes) -> str:
    """Band id from an EPC: the 5 id bytes of a custody EPC, else the full EPC hex."""
    if len(epc) == 12 and epc[:7] == BAND_EPC_PREFIX:
        return epc[7:].hex()
    return epc.hex()


def inventory_notice(epc: bytes, rssi: int = -50, pc: int | None = None,
                     crc: int = 0) -> bytes:
    """The notice a reader sends for one tag read (for simulators and tests)."""
    if pc is None:
        pc = (len(epc) // 2) << 11
    payload = bytes([rssi & 0xFF, pc >> 8, pc & 0xFF]) + epc + bytes([crc >> 8, crc & 0xFF])
    return frame(0x02, CMD_INVENTORY, payload)


def error_frame(code: int) -> bytes:
    """An error response frame."""
    return frame(0x01, CMD_ERROR, bytes([code]))


@dataclass(frozen=True)
class Frame:
    """One checked frame."""

    type: int
    command: int
    payload: bytes


def read_of(f: Frame) -> Read | None:
    """The band read an inventory notice carries, or None for any other frame."""
    if f.type != 0x02 or f.command != CMD_INVENTORY or len(f.payload) < 5:
        return None
    rssi = f.payload[0] - 256 if f.payload[0] >= 128 else f.payload[0]
    pc = (f.payload[1] << 8) | f.payload[2]
    epc = f.payload[3:-2]
    if not epc or len(epc) > MAX_BAND_EPC:
        return None
    return Read(band_of_epc(epc), rssi, bool(pc & PC_TAMPER), bool(pc & PC_BATTERY_LOW))


class M100Parser:
    """Turns a byte stream into frames; resynchronises on noise and keeps split frames.

    Counters: `frames` (good frames of any kind), `checksum` (well-formed frames with a wrong
    checksum), `noise` (bytes discarded), `errors` (error responses other than "no tag"),
    `no_tag`.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.counts: Counter[str] = Counter()
        self.error_codes: Counter[int] = Counter()

    def feed_frames(self, data: bytes) -> list[Frame]:
        """Consume bytes; return the frames they complete."""
        self.buf += data
        out: list[Frame] = []
        buf = self.buf
        while True:
            start = buf.find(HEADER)
            if start < 0:
                self.counts["noise"] += len(buf)
                buf.clear()
                break
            if start:
                self.counts["noise"] += start
                del buf[:start]
            if len(buf) >= 2 and buf[1] not in TYPES:
                self.counts["noise"] += 1
                del buf[:1]
                continue
            if len(buf) < 5:
                break
            plen = (buf[3] << 8) | buf[4]
            if plen > MAX_PAYLOAD:
                self.counts["noise"] += 1
                del buf[:1]
                continue
            total = 5 + plen + 2
            if len(buf) < total:
                break  # a split frame: wait for the rest
            if buf[total - 1] != END:
                self.counts["noise"] += 1
                del buf[:1]
                continue
            if checksum(buf[1:5 + plen]) != buf[5 + plen]:
                self.counts["checksum"] += 1
                del buf[:total]
                continue
            f = Frame(buf[1], buf[2], bytes(buf[5:5 + plen]))
            del buf[:total]
            self.counts["frames"] += 1
            if f.type == 0x01 and f.command == CMD_ERROR:
                code = f.payload[0] if f.payload else -1
                if code == ERR_NO_TAG:
                    self.counts["no_tag"] += 1
                else:
                    self.counts["errors"] += 1
                    self.error_codes[code] += 1
            out.append(f)
        return out

    def feed(self, data: bytes) -> list[Read]:
        """Consume bytes; return the band reads they complete."""
        out = []
        for f in self.feed_frames(data):
            r = read_of(f)
            if r is not None:
                out.append(r)
            elif f.type == 0x02 and f.command == CMD_INVENTORY:
                self.counts["bad_epc"] += 1  # empty or longer than any band id
        return out
