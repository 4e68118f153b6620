"""Property tests of staff commands: valid requests pass whole, anything else is a StaffError."""

import contextlib
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocol.staff import COMMANDS, StaffError, parse_request, request_payload, response_payload
from tests.proof_strategies import PROPS, json_values, staff_requests

commands = st.sampled_from(sorted(COMMANDS))


@PROPS
@given(staff_requests())
def test_valid_requests_parse_whole(req):
    command, txn, user, args = req
    r = parse_request(command, request_payload(txn, user, args))
    assert (r.command, r.txn, r.user, r.args) == (command, txn, user, args)


@PROPS
@given(staff_requests(), st.data())
def test_missing_required_argument_is_named(req, data):
    command, txn, user, args = req
    required = [k for k, (_, req_) in COMMANDS[command].items() if req_]
    assume(required)  # view-evidence: one of two optional arguments, checked by the supervisor
    key = data.draw(st.sampled_from(required))
    del args[key]
    with pytest.raises(StaffError, match=repr(key)):
        parse_request(command, request_payload(txn, user, args))


@PROPS
@given(staff_requests(), st.text(min_size=1, max_size=10))
def test_unknown_argument_is_named(req, extra):
    command, txn, user, args = req
    if extra in COMMANDS[command]:
        return
    args[extra] = 1
    with pytest.raises(StaffError) as e:
        parse_request(command, request_payload(txn, user, args))
    assert repr(extra) in str(e.value)


@PROPS
@given(staff_requests(), st.data())
def test_wrongly_typed_argument_is_named(req, data):
    command, txn, user, args = req
    key = data.draw(st.sampled_from(sorted(args))) if args else None
    if key is None:
        return
    args[key] = {"not": "a " + COMMANDS[command][key][0]}
    with pytest.raises(StaffError) as e:
        parse_request(command, request_payload(txn, user, args))
    assert repr(key) in str(e.value)


@PROPS
@given(commands, st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_staff_error(command, payload):
    with contextlib.suppress(StaffError):
        parse_request(command, payload)


@PROPS
@given(commands, json_values(), st.sampled_from(["txn", "user", "args"]))
def test_arbitrary_json_raise_only_staff_error(command, value, slot):
    outer = {"txn": "t1", "user": "officer-1", "args": {}}
    outer[slot] = value
    for doc in (value, outer):
        with contextlib.suppress(StaffError):
            parse_request(command, json.dumps(doc).encode())


@PROPS
@given(st.text(max_size=40).filter(lambda c: c not in COMMANDS))
def test_unknown_command_refused(command):
    with pytest.raises(StaffError, match="unknown command"):
        parse_request(command, request_payload("t", "u", {}))


@PROPS
@given(st.text(min_size=1, max_size=64), st.booleans(), st.none() | st.text(max_size=20),
       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_response_payload_round_trip(txn, ok, error, result):
    assert json.loads(response_payload(txn, ok, error, result)) == {
        "txn": txn, "ok": ok, "error": error, "result": result}
