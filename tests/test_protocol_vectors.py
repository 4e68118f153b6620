"""Every JSON vector in protocol/vectors gives its expected verdict."""

import json
from pathlib import Path

import pytest

from protocol.canonical import CanonicalError, dumps
from protocol.envelope import VerifyError, seal
from protocol.topics import Topics
from protocol.verifier import Verifier

VECTORS = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
VALID = json.loads((VECTORS / "valid.json").read_text())
INVALID = json.loads((VECTORS / "invalid.json").read_text())
CANONICAL = json.loads((VECTORS / "canonical.json").read_text())


def _verifier(keys_hex: dict[str, str]) -> Verifier:
    return Verifier(Topics("test-site"), {k: bytes.fromhex(v) for k, v in keys_hex.items()})


def test_vector_files_cover_every_required_failure():
    reasons = {v["reason"] for v in INVALID}
    assert {"bad_mac", "replay", "unknown_node", "malformed", "oversize", "bad_topic"} <= reasons


@pytest.mark.parametrize("vec", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_signs_byte_identically_and_verifies(vec):
    s = vec["sign"]
    payload = seal(bytes.fromhex(vec["key"]), s["node"], s["epoch"], s["seq"], s["ts"], s["type"],
                   s["body"])
    assert payload == vec["payload"].encode("ascii")
    event, _gap = _verifier({s["node"]: vec["key"]}).check(vec["topic"], payload)
    assert (event.node, event.seq, event.type, event.body) == (s["node"], s["seq"], s["type"],
                                                               s["body"])


@pytest.mark.parametrize("vec", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_is_rejected_for_its_reason(vec):
    v = _verifier(vec["keys"])
    for node, epoch, seq in vec["admitted_before"]:
        v.window.admit(node, epoch, seq)
    with pytest.raises(VerifyError) as info:
        v.check(vec["topic"], vec["payload"].encode("utf-8"))
    assert info.value.reason == vec["reason"]


@pytest.mark.parametrize("vec", CANONICAL, ids=[str(i) for i in range(len(CANONICAL))])
def test_canonical_text(vec):
    assert dumps(vec["value"]) == vec["text"]
    assert json.loads(vec["text"]) == vec["value"]


def test_canonical_refuses_floats_and_non_string_keys():
    with pytest.raises(CanonicalError):
        dumps({"a": 1.5})
    with pytest.raises(CanonicalError):
        dumps({1: "a"})


def test_gap_is_reported_and_new_epoch_restarts_sequence():
    v = Verifier(Topics("s"), {"n": b"k" * 32})
    topic = "custody/v1/s/node/n/event"

    def msg(epoch: int, seq: int) -> bytes:
        return seal(b"k" * 32, "n", epoch, seq, 0, "door", {"door": "d", "state": "open"})

    assert v.check(topic, msg(1, 1))[1].gap_from == 0
    gap = v.check(topic, msg(1, 5))[1]
    assert (gap.gap_from, gap.gap_to) == (2, 4)
    assert v.check(topic, msg(2, 1))[1].gap_from == 0
    with pytest.raises(VerifyError) as info:
        v.check(topic, msg(1, 6))
    assert info.value.reason == "stale_epoch"
