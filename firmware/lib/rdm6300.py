# RDM6300 125 kHz reader on a UART (9600 8N1): 0x02, 10 ASCII hex (2 version + 8 data =
# the 5-byte EM4100 id), 2 ASCII hex XOR checksum of those 5 bytes, 0x03. The module repeats
# the frame while a card is held: one tap is reported per presentation.
import time

STX, ETX = 0x02, 0x03
FRAME_LEN = 14
_HEXCHARS = b"0123456789ABCDEFabcdef"


def parse_frame(frame):
    """The band id (10 lower-case hex digits) of one 14-byte frame, or None if corrupt."""
    if len(frame) != FRAME_LEN or frame[0] != STX or frame[-1] != ETX:
        return None
    body = frame[1:13]
    for b in body:
        if b not in _HEXCHARS:
            return None
    raw = bytes(int(body[i:i + 2], 16) for i in range(0, 10, 2))
    check = int(body[10:12], 16)
    x = 0
    for b in raw:
        x ^= b
    if x != check:
        return None
    return "".join("%02x" % b for b in raw)


class Reader:
    """Collects frames from a UART; reports each band once per presentation."""

    def __init__(self, uart, repeat_ms=1500):
        self.uart = uart
        self.repeat_ms = repeat_ms
        self.buf = bytearray()
        self.errors = 0
        self._last = None
        self._last_at = 0

    def poll(self):
        """List of band ids newly presented since the last poll."""
        out = []
        if not self.uart.any():
            return out
        data = self.uart.read()
        if data:
            self.buf += data
        while True:
            start = bytes(self.buf).find(b"\x02")
            if start < 0:
                if self.buf:
                    self.errors += 1
                self.buf = bytearray()
                break
            if start:
                self.errors += 1  # bytes outside a frame
                self.buf = self.buf[start:]
            if len(self.buf) < FRAME_LEN:
                break
            frame = bytes(self.buf[:FRAME_LEN])
            band = parse_frame(frame)
            if band is None:
                self.errors += 1
                self.buf = self.buf[1:]  # resynchronise on the next STX
                continue
            self.buf = self.buf[FRAME_LEN:]
            now = time.ticks_ms()
            if band != self._last or time.ticks_diff(now, self._last_at) > self.repeat_ms:
                out.append(band)
            self._last, self._last_at = band, now
        return out
