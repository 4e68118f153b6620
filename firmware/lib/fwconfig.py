# config.json: checked at load; every error names the file and the key.
import json

import envelope


class ConfigError(ValueError):
    pass


def _fail(path, key, want, got=None):
    msg = "%s: %s: expected %s" % (path, key, want)
    if got is not None:
        msg += ", got %r" % (got,)
    raise ConfigError(msg)


class _Sec:
    def __init__(self, path, prefix, data):
        if not isinstance(data, dict):
            _fail(path, prefix or "<top>", "an object", data)
        self.path, self.prefix, self.data, self.used = path, prefix, data, set()

    def key(self, k):
        return self.prefix + "." + k if self.prefix else k

    def get(self, k, kind, default=None, required=False):
        self.used.add(k)
        if k not in self.data:
            if required:
                _fail(self.path, self.key(k), "a value (required)")
            return default
        v = self.data[k]
        if kind == "int" and (not isinstance(v, int) or isinstance(v, bool)):
            _fail(self.path, self.key(k), "an integer", v)
        if kind == "str" and not isinstance(v, str):
            _fail(self.path, self.key(k), "a string", v)
        if kind == "bool" and not isinstance(v, bool):
            _fail(self.path, self.key(k), "true or false", v)
        if kind == "list" and not isinstance(v, list):
            _fail(self.path, self.key(k), "a list", v)
        if kind == "id" and not envelope.is_id(v):
            _fail(self.path, self.key(k), "an id of [a-z0-9-]", v)
        return v

    def done(self):
        for k in self.data:
            if k not in self.used:
                _fail(self.path, self.key(k), "a known key (unknown key)", k)


class Config:
    pass


def load(path="config.json"):
    """Read and validate config.json; return a Config."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError:
        raise ConfigError("%s: cannot be read" % path)
    except ValueError:
        raise ConfigError("%s: not valid JSON" % path)
    top = _Sec(path, "", data)
    c = Config()
    c.node = top.get("node", "id", required=True)
    c.site = top.get("site", "id", required=True)
    c.topic_prefix = top.get("topic_prefix", "str", "custody/v1")
    c.room = top.get("room", "id", required=True)
    key_hex = top.get("key", "str", required=True)
    try:
        import binascii
        c.key = binascii.unhexlify(key_hex)
    except ValueError:
        _fail(path, "key", "hex digits", key_hex)
    if len(c.key) < 16:
        _fail(path, "key", "a key of at least 16 bytes")
    c.outbox_dir = top.get("outbox_dir", "str", "outbox")
    c.outbox_max = top.get("outbox_max", "int", 2000)
    c.watchdog_ms = top.get("watchdog_ms", "int", 8000)
    c.health_interval_s = top.get("health_interval_s", "int", 30)
    c.resend_s = top.get("resend_s", "int", 10)
    c.poll_ms = top.get("poll_ms", "int", 10)
    c.ntp = top.get("ntp", "bool", True)
    c.epoch = top.get("epoch", "int", 1)

    w = _Sec(path, "wifi", top.get("wifi", None, {}))
    c.wifi_ssid = w.get("ssid", "str", "")
    c.wifi_password = w.get("password", "str", "")
    w.done()

    m = _Sec(path, "mqtt", top.get("mqtt", None, {}))
    c.host = m.get("host", "str", required=True)
    c.port = m.get("port", "int", 1883)
    c.user = m.get("user", "str", "")
    c.password = m.get("password", "str", "")
    c.keepalive_s = m.get("keepalive_s", "int", 30)
    if c.keepalive_s < 1:
        # Mosquitto refuses keepalive 0, and without it a dead link goes unnoticed.
        _fail(path, "mqtt.keepalive_s", "an integer >= 1", c.keepalive_s)
    c.ca_der = m.get("ca_der", "str", "")
    c.cert_der = m.get("cert_der", "str", "")
    c.key_der = m.get("key_der", "str", "")
    c.backoff_max_s = m.get("backoff_max_s", "int", 30)
    m.done()

    c.doors = []
    for i, d in enumerate(top.get("doors", "list", [])):
        s = _Sec(path, "doors[%d]" % i, d)
        c.doors.append((s.get("door", "id", required=True), s.get("pin", "int", required=True),
                        s.get("active_low", "bool", True), s.get("debounce_ms", "int", 50)))
        s.done()
    c.buttons = []
    for i, b in enumerate(top.get("buttons", "list", [])):
        s = _Sec(path, "buttons[%d]" % i, b)
        kind = s.get("kind", "str", "panic")
        if kind not in ("panic", "call"):
            _fail(path, s.key("kind"), "panic or call", kind)
        c.buttons.append((s.get("id", "id", required=True), kind,
                          s.get("pin", "int", required=True), s.get("active_low", "bool", True)))
        s.done()
    c.reader = None
    r = top.get("reader", None, None)
    if r is not None:
        s = _Sec(path, "reader", r)
        c.reader = (s.get("id", "id", required=True), s.get("uart", "int", 1),
                    s.get("rx", "int", 16), s.get("tx", "int", 17),
                    s.get("door", "str", ""), s.get("repeat_ms", "int", 1500))
        s.done()
    top.done()
    return c
