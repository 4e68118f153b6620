"""Property tests of the site file: any mutation of the demo site is a ConfigError naming a key."""

import random
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.mutators import mutate_bytes, mutate_tree
from protocol.config import ConfigError
from protocol.site import DEMO_SITE, Site, load_site, parse_site
from tests.proof_strategies import FEW, PROPS

DEMO_TEXT = DEMO_SITE.read_bytes()
DEMO = tomllib.loads(DEMO_TEXT.decode())


def _parse_or_config_error(data) -> Site | ConfigError:
    try:
        return parse_site(data, "demo.toml")
    except ConfigError as e:
        assert e.key, "a ConfigError must name a key"
        assert str(e).startswith("demo.toml: "), "and the file"
        return e


def test_demo_site_parses():
    assert isinstance(_parse_or_config_error(DEMO), Site)


@PROPS
@given(st.randoms(use_true_random=False), st.integers(1, 3))
def test_tree_mutations_give_a_site_or_a_config_error_naming_a_key(rng, n):
    data = DEMO
    for _ in range(n):
        data, _ = mutate_tree(data, rng)
    _parse_or_config_error(data)


@FEW
@given(st.randoms(use_true_random=False))
def test_byte_mutations_of_the_file_give_a_site_or_a_config_error(tmp_path_factory, rng):
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_bytes(mutate_bytes(DEMO_TEXT, rng))
    try:
        load_site(path)
    except ConfigError as e:
        assert e.key and str(e).startswith(str(path))


@PROPS
@given(st.data())
def test_deleting_a_required_key_names_exactly_that_key(data):
    i = data.draw(st.integers(0, len(DEMO["rooms"]) - 1))
    key = data.draw(st.sampled_from(["id", "kind"]))
    mutant = tomllib.loads(DEMO_TEXT.decode())
    del mutant["rooms"][i][key]
    with pytest.raises(ConfigError) as e:
        parse_site(mutant, "demo.toml")
    assert e.value.key == f"rooms[{i}].{key}"


@PROPS
@given(st.sampled_from(["site", "rules", "broker", "supervisor"]),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_keys_are_refused_by_name(section, name):
    mutant = tomllib.loads(DEMO_TEXT.decode())
    if name in mutant[section]:
        return
    mutant[section][name] = 1
    with pytest.raises(ConfigError) as e:
        parse_site(mutant, "demo.toml")
    assert e.value.key == f"{section}.{name}"


def test_deep_nesting_in_the_file_is_a_config_error(tmp_path):
    # Found by these tests: tomllib's recursion used to escape as RecursionError.
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000)
    with pytest.raises(ConfigError) as e:
        load_site(path)
    assert e.value.key == "(syntax)"


def test_seeded_mutations_are_reproducible():
    a = [mutate_tree(DEMO, random.Random(7))[1] for _ in range(3)]
    b = [mutate_tree(DEMO, random.Random(7))[1] for _ in range(3)]
    assert a == b
