"""Serial RFID reader drivers: pure frame parsers and the pyserial reader thread."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Read:
    """One band read by a reader, whatever its technology."""

    band: str
    rssi: int | None = None
    tamper: bool | None = None  # None: this reader does not report band status
    battery_low: bool | None = None
