"""Host figures for the health message: CPU, memory, temperature (where the host has them)."""

import contextlib
import os
from pathlib import Path


class HostStats:
    """CPU use since the previous sample, memory in use, process RSS, SoC temperature."""

    def __init__(self, proc: Path = Path("/proc"), thermal: Path = Path("/sys/class/thermal")
                 ) -> None:
        self.proc, self.thermal = proc, thermal
        self._cpu: tuple[int, int] | None = self._cpu_times()

    def _cpu_times(self) -> tuple[int, int] | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (self.proc / "stat").read_text().splitlines()[0].split()[1:]
            vals = [int(x) for x in fields]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            return sum(vals), idle
        return None

    def sample(self) -> dict[str, int]:
        """Integer figures (canonical JSON has no floats); missing ones are left out."""
        out: dict[str, int] = {}
        now = self._cpu_times()
        if now is not None and self._cpu is not None and now[0] > self._cpu[0]:
            total, idle = now[0] - self._cpu[0], now[1] - self._cpu[1]
            out["cpu_pct"] = round(100 * (total - idle) / total)
        self._cpu = now
        with contextlib.suppress(OSError, ValueError):
            mem = {}
            for line in (self.proc / "meminfo").read_text().splitlines():
                k, _, v = line.partition(":")
                mem[k] = int(v.split()[0])
            out["mem_used_pct"] = round(100 * (mem["MemTotal"] - mem["MemAvailable"])
                                        / mem["MemTotal"])
        with contextlib.suppress(OSError, ValueError, KeyError):
            for line in (self.proc / "self" / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
        with contextlib.suppress(OSError, ValueError):
            milli = int((self.thermal / "thermal_zone0" / "temp").read_text().strip())
            out["temp_c_x10"] = milli // 100
        out["pid"] = os.getpid()
        return out
