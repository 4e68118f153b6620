# The MQTT link over micropython-lib's umqtt.simple, with its known limits handled here:
# keepalive > 0 and pings sent by us (the library never pings), TCP_NODELAY (QoS 1 crawls
# without it), QoS 1 retransmission from the flash outbox (the library keeps nothing),
# reconnect with exponential back-off, LWT availability, TLS with the CA as DER.
import random
import time

from umqtt.simple import MQTTClient

IPPROTO_TCP = 6
TCP_NODELAY = 1


def _nodelay(sock):
    try:
        sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        return True
    except (OSError, AttributeError, TypeError):
        return False


class _NoDelayTLS:
    """Handed to umqtt as `ssl`: sets TCP_NODELAY on the raw socket, then wraps it."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.nodelay = False

    def wrap_socket(self, sock, server_hostname=None):
        self.nodelay = _nodelay(sock)
        return self.ctx.wrap_socket(sock, server_hostname=server_hostname)


def tls_context(ca_der, cert_der=None, key_der=None):
    """A client TLS context that trusts only the site CA (DER bytes)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_der)
    if cert_der and key_der:
        ctx.load_cert_chain(cert_der, key_der)
    return ctx


class Link:
    def __init__(self, cfg, topics, on_message, tls=None):
        self.cfg = cfg
        self.topics = topics
        self.on_message = on_message
        self.tls = _NoDelayTLS(tls) if tls is not None else None
        self.client = None
        self.up = False
        self.backoff_ms = 1000
        self.next_try = time.ticks_ms()
        self.last_out = time.ticks_ms()
        self.connects = 0
        self.failures = 0
        self.nodelay = False

    def _new_client(self):
        c = self.cfg
        client = MQTTClient(c.node, c.host, c.port, c.user or None, c.password or None,
                            c.keepalive_s, self.tls)
        client.set_callback(self.on_message)
        client.set_last_will(self.topics["availability"], b"offline", True, 1)
        return client

    def due(self):
        return not self.up and time.ticks_diff(time.ticks_ms(), self.next_try) >= 0

    def connect(self):
        """One connection attempt; on failure schedule the next with back-off and jitter."""
        try:
            self.client = self._new_client()
            # Persistent session: acks published while we were away are delivered now.
            self.client.connect(False)
            self.nodelay = self.tls.nodelay if self.tls else _nodelay(self.client.sock)
            self.client.publish(self.topics["availability"], b"online", True, 1)
            self.client.subscribe(self.topics["ack"], 1)
            self.client.subscribe(self.topics["roster"], 1)
        except Exception as e:  # OSError, MQTTException, TLS errors: all mean "not now"
            self.failures += 1
            self.drop()
            delay = self.backoff_ms + random.getrandbits(10)
            self.next_try = time.ticks_add(time.ticks_ms(), delay)
            self.backoff_ms = min(self.backoff_ms * 2, self.cfg.backoff_max_s * 1000)
            print("link: connect failed (%r); next try in %d ms" % (e, delay))
            return False
        self.up = True
        self.connects += 1
        self.backoff_ms = 1000
        self.last_out = time.ticks_ms()
        print("link: connected to %s:%d" % (self.cfg.host, self.cfg.port))
        return True

    def drop(self):
        """Forget the connection (the outbox still holds everything unacked)."""
        if self.client is not None and self.client.sock is not None:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.up = False
        self.client = None

    def fail(self, why):
        print("link: lost (%r)" % (why,))
        self.drop()
        self.next_try = time.ticks_ms()

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, retain, 1)
        self.last_out = time.ticks_ms()

    def service(self):
        """Read what is waiting and ping when idle for half the keepalive."""
        for _ in range(20):
            if self.client.check_msg() is None:
                break
        if time.ticks_diff(time.ticks_ms(), self.last_out) >= self.cfg.keepalive_s * 500:
            self.client.ping()
            self.last_out = time.ticks_ms()
