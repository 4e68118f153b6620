"""Property tests of the signed envelope: only VerifyError escapes, any byte change is caught."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.canonical import dumps
from protocol.envelope import (
    MAX_PAYLOAD,
    Reason,
    VerifyError,
    _verify_fast,
    mac_hex,
    open_payload,
    seal,
    verify,
    verify_slow,
)
from tests.proof_strategies import FEW, PROPS, event_bodies, ids, json_values

KEY = bytes(range(32))
KEYS = {"node-a": KEY, "node-b": bytes(32)}

seqs = st.integers(0, 2**53 - 1)
epochs = st.integers(1, 2**53 - 1)


@st.composite
def sealed(draw):
    etype, body = draw(event_bodies())
    epoch, seq, ts = draw(epochs), draw(seqs), draw(st.integers(0, 2**53 - 1))
    return (epoch, seq, ts, etype, body), seal(KEY, "node-a", epoch, seq, ts, etype, body)


def _only_verify_error(payload: bytes) -> str | None:
    try:
        verify(payload, KEYS)
    except VerifyError as e:
        assert e.reason in vars(Reason).values()
        return e.reason
    return None


@PROPS
@given(sealed())
def test_valid_payloads_verify_to_the_sealed_event(case):
    (epoch, seq, ts, etype, body), payload = case
    ev = verify(payload, KEYS, topic_node="node-a")
    assert (ev.node, ev.epoch, ev.seq, ev.ts_ms, ev.type, ev.body) == (
        "node-a", epoch, seq, ts, etype, body)


@PROPS
@given(sealed(), st.data())
def test_any_single_byte_change_is_rejected(case, data):
    _, payload = case
    i = data.draw(st.integers(0, len(payload) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda b: b != payload[i]))
    bad = payload[:i] + bytes([b]) + payload[i + 1:]
    assert _only_verify_error(bad) is not None


@PROPS
@given(sealed(), st.data())
def test_truncation_and_deletion_are_rejected(case, data):
    _, payload = case
    i = data.draw(st.integers(0, len(payload) - 1))
    assert _only_verify_error(payload[:i]) is not None
    assert _only_verify_error(payload[:i] + payload[i + 1:]) is not None


@PROPS
@given(sealed(), st.data())
def test_an_inserted_byte_is_rejected_unless_it_is_outer_whitespace(case, data):
    # The MAC covers the envelope text; the outer object is plain JSON, so whitespace
    # between its tokens is the one insertion that changes nothing (and is accepted).
    (epoch, seq, ts, etype, body), payload = case
    i = data.draw(st.integers(0, len(payload)))
    b = data.draw(st.integers(0, 255))
    bad = payload[:i] + bytes([b]) + payload[i:]
    if _only_verify_error(bad) is None:
        assert chr(b) in " \t\r\n"
        ev = verify(bad, KEYS)
        assert (ev.epoch, ev.seq, ev.ts_ms, ev.type, ev.body) == (epoch, seq, ts, etype, body)


@PROPS
@given(sealed(), ids)
def test_wrong_key_wrong_node_and_unknown_node(case, other):
    (epoch, seq, ts, etype, body), payload = case
    with pytest.raises(VerifyError) as e:
        verify(payload, {"node-a": bytes(32)})
    assert e.value.reason == Reason.BAD_MAC
    with pytest.raises(VerifyError) as e:
        verify(payload, {})
    assert e.value.reason == Reason.UNKNOWN_NODE
    if other != "node-a":
        with pytest.raises(VerifyError) as e:
            verify(payload, KEYS, topic_node=other)
        assert e.value.reason == Reason.NODE_MISMATCH
        # node-b cannot speak for node-a even with its own valid key.
        forged = seal(KEYS["node-b"], "node-a", epoch, seq, ts, etype, body)
        assert _only_verify_error(forged) == Reason.BAD_MAC


@PROPS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_verify_error(payload):
    assert _only_verify_error(payload) is not None


@PROPS
@given(json_values(), st.text(max_size=70))
def test_arbitrary_json_shapes_raise_only_verify_error(value, mac):
    for outer in (value, {"env": value, "mac": mac}, {"env": json.dumps(value), "mac": mac}):
        try:
            payload = json.dumps(outer).encode()
        except (TypeError, ValueError):
            continue
        assert _only_verify_error(payload) is not None


@PROPS
@given(st.dictionaries(st.sampled_from(["v", "node", "epoch", "seq", "ts", "type", "body", "x"]),
                       json_values(max_leaves=6), max_size=8))
def test_correctly_signed_garbage_envelopes_raise_only_verify_error(env):
    # A node holding a valid key but sending a wrong envelope: MAC passes, fields must not.
    env = dict(env)
    env["node"] = "node-a"
    try:
        text = dumps(env)
    except ValueError:
        return
    payload = dumps({"env": text, "mac": mac_hex(KEY, text.encode())}).encode()
    try:
        ev = verify(payload, KEYS)
    except VerifyError as e:
        assert e.reason in (Reason.BAD_FIELD, Reason.BAD_BODY, Reason.UNKNOWN_TYPE,
                            Reason.MALFORMED)
        return
    assert set(env) == {"v", "node", "epoch", "seq", "ts", "type", "body"}
    assert ev.body == env["body"]


@FEW
@given(st.integers(1000, MAX_PAYLOAD), st.sampled_from([b"[", b"{\"a\":", b"[{\"a\":"]))
def test_deep_nesting_is_malformed_not_a_crash(n, opener):
    # Found by these tests: json recursion used to escape as RecursionError.
    assert _only_verify_error((opener * n)[:MAX_PAYLOAD]) == Reason.MALFORMED
    env = "[" * min(n, MAX_PAYLOAD - 100)
    assert _only_verify_error(dumps({"env": env, "mac": "0" * 64}).encode()) == Reason.MALFORMED


def test_oversize_refused_before_parsing():
    with pytest.raises(VerifyError) as e:
        open_payload(b" " * (MAX_PAYLOAD + 1))
    assert e.value.reason == Reason.OVERSIZE


def _outcome(fn, payload: bytes, node: str):
    try:
        ev = fn(payload, KEYS, topic_node=node)
    except VerifyError as e:
        return e.reason
    return (ev.node, ev.epoch, ev.seq, ev.ts_ms, ev.type, ev.body)


@PROPS
@given(sealed(), st.data())
def test_the_fast_path_takes_valid_payloads_and_agrees_with_the_full_check(case, data):
    # The supervisor's hot path: a canonical payload is accepted without the slow parse, and
    # for any change of it (byte changed, inserted, dropped) the outcome and reason are those
    # of the full, ordered check.
    _, payload = case
    fast = _verify_fast(payload, KEYS, "node-a")
    assert fast is None or fast == verify_slow(payload, KEYS, "node-a")
    # Every payload without \b \t \n \f \r or DEL (which the C encoder writes differently)
    # takes the fast way; one with them may take either, with the same outcome (above).
    if not re.search(rb"\\\\u00(?:0[89acd]|7f)", payload):
        assert fast is not None
    i = data.draw(st.integers(0, len(payload) - 1))
    b = data.draw(st.integers(0, 255))
    node = data.draw(st.sampled_from(["node-a", "node-b", "node-c"]))
    for bad in (payload[:i] + bytes([b]) + payload[i + 1:], payload[:i] + bytes([b]) + payload[i:],
                payload[:i] + payload[i + 1:], payload.replace(b"}", b"}}", 1)):
        assert _outcome(verify, bad, node) == _outcome(verify_slow, bad, node)


@PROPS
@given(st.dictionaries(st.sampled_from(["v", "node", "epoch", "seq", "ts", "type", "body", "x"]),
                       json_values(max_leaves=6), max_size=8), st.booleans())
def test_signed_odd_envelopes_get_the_same_verdict_on_both_paths(env, duplicate):
    env = dict(env)
    env["node"] = "node-a"
    try:
        text = dumps(env)
    except ValueError:
        return
    if duplicate and len(text) > 2:  # a repeated key after a valid envelope's last one
        text = text[:-1] + ',"v":1}'
    payload = dumps({"env": text, "mac": mac_hex(KEY, text.encode())}).encode()
    assert _outcome(verify, payload, "node-a") == _outcome(verify_slow, payload, "node-a")
