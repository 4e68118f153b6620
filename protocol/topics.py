"""The MQTT topic tree: builders that refuse bad ids and a parser for incoming topics.

Under `<prefix>/<site>`:

    node/<node>/event         signed events from a node (QoS 1, not retained)
    node/<node>/ack           supervisor's signed application-level acks to that node
    node/<node>/roster        supervisor's signed band roster for that node (retained)
    node/<node>/availability  "online" / "offline" (retained, LWT "offline")
    node/<node>/health        signed periodic health (retained)
    alert/<severity>/<rule>   alert lifecycle events for staff (QoS 1, not retained)
    state/alerts              snapshot of active alerts (retained)
    state/room/<room>         room occupancy (retained)
    state/detainee/<id>       custody record summary (retained)
    supervisor/availability   supervisor "online"/"offline" (retained)
    supervisor/checkpoint     signed journal checkpoint (retained)
    request/<user>/<command>  staff command by login <user> (the ACL binds it), never retained
    response/<user>/<command> the answer, echoing the transaction id, for that user only
"""

from dataclasses import dataclass

from .ids import ID_RE, IdError, check_id

DEFAULT_PREFIX = "custody/v1"
NODE_CHANNELS = ("event", "ack", "roster", "availability", "health", "evidence-request",
                 "evidence-data")
SEVERITIES = ("info", "warning", "critical")


class TopicError(ValueError):
    """A topic that is not part of the tree, or a builder given a bad id."""


def check_prefix(prefix: str) -> str:
    """Validate a topic prefix: '/'-separated segments of [a-z0-9-]."""
    if not prefix or any(not ID_RE.match(seg) for seg in prefix.split("/")):
        raise TopicError(f"topic prefix {prefix!r} must be '/'-separated [a-z0-9-] segments")
    return prefix


def check_publish_topic(topic: str) -> str:
    """Refuse wildcards and empty levels in a topic we publish on."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise TopicError(f"topic {topic!r} may not be empty or contain '+', '#' or NUL")
    if any(level == "" for level in topic.split("/")):
        raise TopicError(f"topic {topic!r} has an empty level")
    return topic


def _seg(value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except IdError as e:
        raise TopicError(str(e)) from None


@dataclass(frozen=True)
class ParsedTopic:
    """What an incoming topic names."""

    kind: str  # node, alert, state, supervisor, request, response
    channel: str  # e.g. "event" for node topics, the command for request/response
    node: str | None = None
    subject: str | None = None  # room, detainee, rule...; the user for request/response
    severity: str | None = None


class Topics:
    """Topic builders for one site."""

    def __init__(self, site: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)
        self.site = _seg(site, "site id")
        self.base = f"{self.prefix}/{self.site}"

    def node(self, node: str, channel: str) -> str:
        """Topic of one of a node's channels."""
        if channel not in NODE_CHANNELS:
            raise TopicError(f"node channel {channel!r} not one of {NODE_CHANNELS}")
        return f"{self.base}/node/{_seg(node, 'node id')}/{channel}"

    def node_filter(self, channel: str) -> str:
        """Subscription filter for one channel of every node."""
        if channel not in NODE_CHANNELS:
            raise TopicError(f"node channel {channel!r} not one of {NODE_CHANNELS}")
        return f"{self.base}/node/+/{channel}"

    def alert(self, severity: str, rule: str) -> str:
        """Topic on which an alert's lifecycle events are published."""
        if severity not in SEVERITIES:
            raise TopicError(f"severity {severity!r} not one of {SEVERITIES}")
        return f"{self.base}/alert/{severity}/{_seg(rule, 'rule')}"

    def alert_filter(self) -> str:
        """Subscription filter for every alert of this site."""
        return f"{self.base}/alert/#"

    def state(self, what: str, subject: str | None = None) -> str:
        """Retained state topic: 'alerts', or 'room'/'detainee' with a subject id."""
        if what == "alerts" and subject is None:
            return f"{self.base}/state/alerts"
        if what in ("room", "detainee") and subject is not None:
            return f"{self.base}/state/{what}/{_seg(subject, what + ' id')}"
        raise TopicError(f"state topic {what!r}/{subject!r} is not part of the tree")

    def supervisor(self, channel: str) -> str:
        """Supervisor's own topics: availability, checkpoint, health."""
        if channel not in ("availability", "checkpoint", "health"):
            raise TopicError(f"supervisor channel {channel!r} unknown")
        return f"{self.base}/supervisor/{channel}"

    def request(self, user: str, command: str) -> str:
        """Topic on which login `user` sends a staff command."""
        return f"{self.base}/request/{_seg(user, 'user')}/{_seg(command, 'command')}"

    def response(self, user: str, command: str) -> str:
        """Topic the answer to `user`'s staff command comes back on."""
        return f"{self.base}/response/{_seg(user, 'user')}/{_seg(command, 'command')}"

    def request_filter(self) -> str:
        """Subscription filter for every user's staff requests (the supervisor's)."""
        return f"{self.base}/request/+/+"

    def response_filter(self, user: str) -> str:
        """Subscription filter for every answer to `user`."""
        return f"{self.base}/response/{_seg(user, 'user')}/+"

    def parse(self, topic: str) -> ParsedTopic:
        """Parse a topic of this site, raising TopicError for anything outside the tree."""
        if not topic.startswith(self.base + "/"):
            raise TopicError(f"topic {topic!r} is not under {self.base!r}")
        levels = topic[len(self.base) + 1 :].split("/")
        for level in levels:
            if not ID_RE.match(level):
                raise TopicError(f"topic {topic!r} has a bad level {level!r}")
        head, n = levels[0], len(levels)
        if head == "node" and n == 3 and levels[2] in NODE_CHANNELS:
            return ParsedTopic("node", levels[2], node=levels[1])
        if head == "alert" and n == 3 and levels[1] in SEVERITIES:
            return ParsedTopic("alert", "alert", subject=levels[2], severity=levels[1])
        if head == "state" and n == 2 and levels[1] == "alerts":
            return ParsedTopic("state", "alerts")
        if head == "state" and n == 3 and levels[1] in ("room", "detainee"):
            return ParsedTopic("state", levels[1], subject=levels[2])
        if head == "supervisor" and n == 2 and levels[1] in ("availability", "checkpoint"):
            return ParsedTopic("supervisor", levels[1])
        if head in ("request", "response") and n == 3:
            return ParsedTopic(head, levels[2], subject=levels[1])
        raise TopicError(f"topic {topic!r} is not part of the tree")
