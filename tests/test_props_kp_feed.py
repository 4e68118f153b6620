"""Property tests of the vision keypoint feed parser (`kp:` lines): only ValueError escapes."""

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.vision.capture import parse_kp_line
from protocol.clock import from_env
from tests.proof_strategies import FEW, PROPS, json_values

CLOCK = from_env()
coord = st.floats(-0.5, 1.5, allow_nan=False, width=32)
person = st.lists(st.tuples(coord, coord, st.floats(0, 1, width=32)).map(list),
                  min_size=33, max_size=33)


@FEW
@given(st.lists(person, max_size=2), st.integers(0, 2**53))
def test_valid_lines_parse_to_the_keypoints(persons, ts):
    f = parse_kp_line(json.dumps({"ts": ts, "persons": persons}), CLOCK)
    assert f.ts_ms == ts and len(f.persons or []) == len(persons)
    for got, want in zip(f.persons or [], persons, strict=True):
        assert np.allclose(got, np.asarray(want, dtype=np.float32))


@PROPS
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_value_error(line):
    with contextlib.suppress(ValueError):
        parse_kp_line(line, CLOCK)


@PROPS
@given(json_values(), st.sampled_from(["ts", "persons", "aspect", "x"]))
def test_arbitrary_json_in_any_field_raises_only_value_error(value, key):
    for obj in ({key: value, "persons": []}, {"persons": [value]}, {"persons": [[value] * 33]}):
        with contextlib.suppress(ValueError):
            parse_kp_line(json.dumps(obj), CLOCK)


@pytest.mark.parametrize("line", [
    "[" * 5000,  # found by these tests: RecursionError used to kill the feed thread
    '{"persons": [[[' + "9" * 400 + ", 0, 0]]]}",  # and OverflowError
    '{"persons": [[[1e999, 0, 0]]]}',
])
def test_hostile_lines_are_value_errors(line):
    with pytest.raises(ValueError):
        parse_kp_line(line, CLOCK)
