# Runs first at every reset: bring up Wi-Fi and the clock quickly, then return so main.py
# starts the node. Nothing here may block for long (the watchdog starts in main.py).
import gc
import json
import time

gc.collect()
try:
    with open("config.json") as f:
        _cfg = json.load(f)
except (OSError, ValueError):
    _cfg = {}

try:
    import network

    _wlan = network.WLAN(network.STA_IF)
    _wlan.active(True)
    _wifi = _cfg.get("wifi", {})
    if _wifi.get("ssid") and not _wlan.isconnected():
        _wlan.connect(_wifi["ssid"], _wifi.get("password", ""))
        _t0 = time.ticks_ms()
        while not _wlan.isconnected() and time.ticks_diff(time.ticks_ms(), _t0) < 10000:
            time.sleep_ms(100)
    if _cfg.get("ntp", True) and _wlan.isconnected():
        try:
            import ntptime

            ntptime.settime()
        except Exception as e:  # no NTP yet: events carry board time until the next boot
            print("boot: ntp failed:", e)
except ImportError:
    pass
del _cfg
gc.collect()
