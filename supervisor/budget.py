"""Per-node budgets: how many messages, and how many rejected ones, a node may cost us.

Token buckets in real (monotonic) seconds: the budget protects the supervisor's CPU and disk,
which run on real time whatever the custody clock says. A node that empties a bucket is
throttled until the bucket is half full again; while throttled its messages are dropped
unread and unacked, so a genuine node loses nothing (its outbox keeps them) and a flood
costs one topic parse per message.
"""

from dataclasses import dataclass, field

# Generous for genuine nodes: an outbox catching up after an outage publishes as fast as
# the broker acks (about 2,000/s measured), and a node's rejected messages are rare.
MESSAGE_RATE, MESSAGE_BURST = 3000.0, 30000.0
REJECT_RATE, REJECT_BURST = 5.0, 100.0


@dataclass
class Bucket:
    """A token bucket."""

    rate: float
    burst: float
    tokens: float
    at: float = 0.0

    def refill(self, mono: float) -> None:
        """Add what accrued since the last look."""
        if self.at:
            self.tokens = min(self.burst, self.tokens + (mono - self.at) * self.rate)
        self.at = mono


@dataclass
class NodeBudget:
    """One node's buckets and whether it is throttled."""

    messages: Bucket
    rejects: Bucket
    throttled: bool = False
    episodes: int = 0


@dataclass
class Budget:
    """Every node's budget."""

    message_rate: float = MESSAGE_RATE
    message_burst: float = MESSAGE_BURST
    reject_rate: float = REJECT_RATE
    reject_burst: float = REJECT_BURST
    nodes: dict[str, NodeBudget] = field(default_factory=dict)

    def _node(self, node: str) -> NodeBudget:
        b = self.nodes.get(node)
        if b is None:
            b = self.nodes[node] = NodeBudget(
                Bucket(self.message_rate, self.message_burst, self.message_burst),
                Bucket(self.reject_rate, self.reject_burst, self.reject_burst))
        return b

    def throttled(self, node: str, mono: float) -> bool:
        """Whether the node's messages are to be dropped now."""
        b = self.nodes.get(node)
        if b is None or not b.throttled:
            return False
        b.messages.refill(mono)
        b.rejects.refill(mono)
        if (b.messages.tokens >= b.messages.burst / 2
                and b.rejects.tokens >= b.rejects.burst / 2):
            b.throttled = False
        return b.throttled

    def message(self, node: str, mono: float) -> None:
        """Charge one message."""
        self._spend(node, mono, self._node(node).messages)

    def rejected(self, node: str, mono: float) -> None:
        """Charge one rejected message."""
        self._spend(node, mono, self._node(node).rejects)

    def _spend(self, node: str, mono: float, bucket: Bucket) -> None:
        bucket.refill(mono)
        bucket.tokens -= 1
        if bucket.tokens < 0:
            b = self.nodes[node]
            if not b.throttled:
                b.throttled, b.episodes = True, b.episodes + 1

    def describe(self, node: str) -> str:
        """The budget in words."""
        return (f"{self.message_rate:.0f} messages/s, burst {self.message_burst:.0f}; "
                f"{self.reject_rate:.0f} rejected/s, burst {self.reject_burst:.0f}")

    def throttled_nodes(self) -> list[str]:
        """Nodes throttled as of their last message."""
        return sorted(n for n, b in self.nodes.items() if b.throttled)
