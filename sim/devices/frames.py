"""Reader frames as real hardware sends them, written from the documented formats.

RDM6300 (125 kHz EM4100): 0x02, 10 ASCII hex (the 5-byte id), 2 ASCII hex XOR of the 5
bytes, 0x03. MagicRF M100 UHF: 0xBB, Type, Command, PL (2 bytes big-endian), payload,
checksum (sum of Type..payload & 0xFF), 0x7E; an inventory notice is Type 0x02 Command 0x22
with RSSI, PC, EPC, CRC. These are the simulator's own encoders (it never imports the
agent's parsers), so a test comparing the two checks both against the formats.
"""

import random
from dataclasses import dataclass

STX, ETX = 0x02, 0x03
UHF_HEADER, UHF_END = 0xBB, 0x7E
UHF_NOTICE, UHF_RESPONSE = 0x02, 0x01
CMD_INVENTORY, CMD_ERROR = 0x22, 0xFF
PC_TAMPER, PC_BATTERY_LOW = 0x01, 0x02  # project convention: low byte of the Gen2 PC word


def band_bytes(band: str) -> bytes:
    """The 5 bytes of a band id (10 hex digits)."""
    raw = bytes.fromhex(band)
    if len(raw) != 5:
        raise ValueError(f"band id must be 10 hex digits, got {band!r}")
    return raw


def rdm6300_frame(band: str) -> bytes:
    """One RDM6300 read of a band."""
    raw = band_bytes(band)
    xor = 0
    for b in raw:
        xor ^= b
    return bytes([STX]) + raw.hex().upper().encode() + f"{xor:02X}".encode() + bytes([ETX])


def _crc16(data: bytes) -> int:
    """CRC-16/GENIBUS (the Gen2 EPC CRC); readers pass it through, nobody checks it."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc ^ 0xFFFF


def uhf_frame(ftype: int, command: int, payload: bytes) -> bytes:
    """A complete M100 frame."""
    body = bytes([ftype, command, len(payload) >> 8, len(payload) & 0xFF]) + payload
    return bytes([UHF_HEADER]) + body + bytes([sum(body) & 0xFF, UHF_END])


def uhf_epc(band: str) -> bytes:
    """A custody band's 12-byte EPC: 7 zero bytes then the 5 id bytes."""
    return bytes(7) + band_bytes(band)


def uhf_inventory(band: str, rssi: int = -55, tamper: bool = False,
                  battery_low: bool = False, epc: bytes | None = None) -> bytes:
    """An inventory notice for one read of a band (or of a raw EPC)."""
    e = uhf_epc(band) if epc is None else epc
    pc = (len(e) // 2) << 11 | (PC_TAMPER if tamper else 0) | (PC_BATTERY_LOW if battery_low
                                                              else 0)
    payload = bytes([rssi & 0xFF, pc >> 8, pc & 0xFF]) + e
    crc = _crc16(payload[1:])
    return uhf_frame(UHF_NOTICE, CMD_INVENTORY, payload + bytes([crc >> 8, crc & 0xFF]))


def uhf_error(code: int = 0x15) -> bytes:
    """An error response (0x15: no tag in this poll)."""
    return uhf_frame(UHF_RESPONSE, CMD_ERROR, bytes([code]))


@dataclass(frozen=True)
class Noise:
    """Line impairments: junk bytes between frames, corrupted frames, frames split in two."""

    junk_rate: float = 0.0  # chance of a burst of random bytes before a frame
    corrupt_rate: float = 0.0  # chance a frame has one byte flipped (checksum then fails)
    split_rate: float = 0.0  # chance a frame is written in two separate writes

    @property
    def clean(self) -> bool:
        """True when the line is perfect."""
        return not (self.junk_rate or self.corrupt_rate or self.split_rate)


def impair(frame: bytes, noise: Noise, rng: random.Random) -> tuple[list[bytes], bool]:
    """The writes that carry `frame` over a noisy line, and whether it arrives intact."""
    out: list[bytes] = []
    if noise.junk_rate and rng.random() < noise.junk_rate:
        # Junk never contains a start byte, so it cannot swallow the frame that follows.
        out.append(bytes(b for b in rng.randbytes(rng.randint(1, 6))
                         if b not in (STX, UHF_HEADER)) or b"\x00")
    intact = True
    data = bytearray(frame)
    if noise.corrupt_rate and rng.random() < noise.corrupt_rate:
        i = rng.randint(1, len(data) - 3)  # never the start byte or the end byte
        data[i] ^= 0x01
        intact = False
    if noise.split_rate and rng.random() < noise.split_rate and len(data) > 2:
        cut = rng.randint(1, len(data) - 1)
        out += [bytes(data[:cut]), bytes(data[cut:])]
    else:
        out.append(bytes(data))
    return out, intact
