"""Property tests of the topic tree: builders and parser agree; nothing else escapes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.topics import NODE_CHANNELS, SEVERITIES, TopicError, Topics, check_publish_topic
from tests.proof_strategies import PROPS, ids

prefixes = st.lists(ids, min_size=1, max_size=3).map("/".join)


@PROPS
@given(prefixes, ids, ids, st.sampled_from(NODE_CHANNELS))
def test_node_topics_round_trip(prefix, site, node, channel):
    t = Topics(site, prefix)
    p = t.parse(t.node(node, channel))
    assert (p.kind, p.channel, p.node) == ("node", channel, node)
    assert check_publish_topic(t.node(node, channel))


@PROPS
@given(ids, ids, st.sampled_from(SEVERITIES), ids)
def test_other_topics_round_trip(site, rule, severity, subject):
    t = Topics(site)
    a = t.parse(t.alert(severity, rule))
    assert (a.kind, a.severity, a.subject) == ("alert", severity, rule)
    for what in ("room", "detainee"):
        s = t.parse(t.state(what, subject))
        assert (s.kind, s.channel, s.subject) == ("state", what, subject)
    assert t.parse(t.request("o1", rule)).channel == rule
    assert t.parse(t.response("o1", rule)).kind == "response"


@PROPS
@given(ids, st.text(max_size=80))
def test_arbitrary_topics_raise_only_topic_error(site, tail):
    t = Topics(site)
    for topic in (tail, f"{t.base}/{tail}", f"{t.base}/node/{tail}/event"):
        try:
            p = t.parse(topic)
        except TopicError:
            continue
        # Whatever parses names only valid ids and rebuilds to the same topic.
        if p.kind == "node":
            assert p.node is not None
            assert t.node(p.node, p.channel) == topic


@PROPS
@given(ids, st.text(min_size=1, max_size=20).filter(lambda s: not s.isascii() or any(
    c not in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in s) or s.startswith("-")))
def test_builders_refuse_bad_ids(site, bad):
    t = Topics(site)
    with pytest.raises(TopicError):
        t.node(bad, "event")
    with pytest.raises(TopicError):
        t.request("o1", bad)
    with pytest.raises(TopicError):
        Topics(bad)


@PROPS
@given(st.text(max_size=30), st.sampled_from(["+", "#", "\x00", "//"]), st.text(max_size=30))
def test_publish_topic_refuses_wildcards_nul_and_empty_levels(a, bad, b):
    with pytest.raises(TopicError):
        check_publish_topic(a + bad + b)
