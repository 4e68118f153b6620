# Test stand-in for micropython-lib's umqtt.simple (the device runs the real library,
# version pinned in firmware/README.md). The project's own MQTT 3.1.1 client, kept to that
# library's public API and behaviour so the firmware cannot depend on anything more:
#   MQTTClient(client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None)
#   connect(clean_session=True) -> session_present; disconnect(); ping();
#   publish(topic, msg, retain=False, qos=0) (QoS 1 blocks until PUBACK, never retransmits);
#   subscribe(topic, qos=0); set_callback(f); set_last_will(topic, msg, retain, qos);
#   wait_msg(); check_msg() (non-blocking); and the `sock` attribute.
# Like the library, it sends no pings of its own and keeps nothing for retransmission.
import socket
import struct


class MQTTException(Exception):
    pass


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _remaining_length(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        self.client_id = _b(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert 0 <= qos <= 2 and topic
        self.lw_topic, self.lw_msg = _b(topic), _b(msg)
        self.lw_qos, self.lw_retain = qos, retain

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.read(n - len(buf))
            if not chunk:
                raise OSError(-1)
            buf += chunk
        return buf

    def _field(self, data):
        return struct.pack("!H", len(data)) + data

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def connect(self, clean_session=True):
        self.sock = socket.socket()
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.sock.connect(addr)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = 0x02 if clean_session else 0
        payload = self._field(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos << 3) | (0x20 if self.lw_retain else 0)
            payload += self._field(self.lw_topic) + self._field(self.lw_msg)
        if self.user:
            flags |= 0xC0
            payload += self._field(_b(self.user)) + self._field(_b(self.pswd or ""))
        assert self.keepalive < 65536
        var = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", self.keepalive)
        body = var + payload
        self.sock.write(b"\x10" + _remaining_length(len(body)) + body)
        resp = self._read(4)
        if resp[0] != 0x20 or resp[1] != 0x02:
            raise MQTTException("bad CONNACK")
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\x00")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\x00")

    def publish(self, topic, msg, retain=False, qos=0):
        assert qos in (0, 1)
        topic, msg = _b(topic), _b(msg)
        var = self._field(topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            var += struct.pack("!H", pid)
        head = 0x30 | (qos << 1) | (1 if retain else 0)
        self.sock.write(bytes([head]) + _remaining_length(len(var) + len(msg)) + var)
        self.sock.write(msg)
        while qos:
            op = self.wait_msg()
            if op == 0x40:
                if self._read(1) != b"\x02":
                    raise MQTTException("bad PUBACK")
                if struct.unpack("!H", self._read(2))[0] == pid:
                    return

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "Subscribe callback is not set"
        pid = self._next_pid()
        body = struct.pack("!H", pid) + self._field(_b(topic)) + bytes([qos])
        self.sock.write(b"\x82" + _remaining_length(len(body)) + body)
        while True:
            op = self.wait_msg()
            if op == 0x90:
                resp = self._read(4)
                if struct.unpack("!H", resp[1:3])[0] != pid:
                    raise MQTTException("SUBACK for another packet")
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def _recv_len(self):
        n, shift = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def wait_msg(self):
        """Handle one incoming packet; deliver PUBLISH to the callback; return its type."""
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        op = res[0]
        if op == 0xD0:  # PINGRESP
            if self._read(1) != b"\x00":
                raise MQTTException("bad PINGRESP")
            return None
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        tlen = struct.unpack("!H", self._read(2))[0]
        topic = self._read(tlen)
        size -= tlen + 2
        pid = 0
        if op & 6:
            pid = struct.unpack("!H", self._read(2))[0]
            size -= 2
        msg = self._read(size) if size else b""
        self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.write(b"\x40\x02" + struct.pack("!H", pid))
        elif op & 6 == 4:
            raise MQTTException("QoS 2 is not supported")
        return op

    def check_msg(self):
        """Like wait_msg, but returns None at once when nothing is waiting."""
        self.sock.setblocking(False)
        return self.wait_msg()
