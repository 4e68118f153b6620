"""Topic builders refuse bad ids and wildcards; the parser knows the whole tree."""

import pytest

from protocol.topics import TopicError, Topics, check_publish_topic

T = Topics("demo-centre")


def test_builders_and_parser_round_trip():
    for topic, kind, channel in [
        (T.node("node-entry", "event"), "node", "event"),
        (T.node("node-entry", "availability"), "node", "availability"),
        (T.alert("critical", "never-alone"), "alert", "alert"),
        (T.state("alerts"), "state", "alerts"),
        (T.state("room", "holding-1"), "state", "room"),
        (T.supervisor("checkpoint"), "supervisor", "checkpoint"),
        (T.request("o1", "register-detainee"), "request", "register-detainee"),
        (T.response("o1", "register-detainee"), "response", "register-detainee"),
    ]:
        parsed = T.parse(topic)
        assert (parsed.kind, parsed.channel) == (kind, channel)
    assert T.parse(T.node("n-1", "ack")).node == "n-1"


@pytest.mark.parametrize("bad", ["", "+", "#", "Node", "a/b", "a b", "-x", "x" * 65])
def test_bad_ids_refused(bad):
    with pytest.raises(TopicError):
        T.node(bad, "event")


@pytest.mark.parametrize("topic", [
    "custody/v1/demo-centre/node/+/event", "custody/v1/demo-centre/node/a/#",
    "custody/v1/other/node/a/event", "custody/v1/demo-centre/node/a/teleport",
    "custody/v1/demo-centre//node/a/event", "custody/v1/demo-centre/node/A/event",
])
def test_parser_refuses_topics_outside_the_tree(topic):
    with pytest.raises(TopicError):
        T.parse(topic)


def test_publish_topic_check():
    assert check_publish_topic("a/b") == "a/b"
    for bad in ("a/+/b", "a/#", "", "a//b"):
        with pytest.raises(TopicError):
            check_publish_topic(bad)
