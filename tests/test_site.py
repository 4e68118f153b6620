"""The site file: the demo loads; every fault is one line naming file and key, exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from protocol.config import ConfigError, read_toml
from protocol.site import DEMO_SITE, ROOM_KINDS, load_site, parse_site


def test_demo_site_has_every_room_kind_and_twelve_rooms():
    site = load_site(DEMO_SITE)
    assert len(site.rooms) >= 12
    assert {r.kind for r in site.rooms} == set(ROOM_KINDS)
    assert site.rules.never_alone_grace_s == 10
    assert site.rules.custody_type("administrative-questioning").extended_h == (12, 24)
    assert any(n.kind == "sensor" for n in site.nodes)


def _mutate(path: Path, old: str, new: str, tmp: Path) -> Path:
    text = path.read_text()
    assert old in text
    out = tmp / "site.toml"
    out.write_text(text.replace(old, new, 1))
    return out


@pytest.mark.parametrize("old,new,key", [
    ('kind = "holding"', 'kind = "cell"', "rooms[8].kind"),
    ("never_alone_grace_s = 10", 'never_alone_grace_s = "ten"', "rules.never_alone_grace_s"),
    ("never_alone_grace_s = 10", "never_alone_grace_s = 10\nnever_alone_grace = 10",
     "rules.never_alone_grace"),
    ('between = ["entry", "search"]', 'between = ["entry", "nowhere"]', "doors[0].between"),
    ('id = "node-entry"', 'id = "Node Entry"', "nodes[0].id"),
    ('port = 1883', 'port = 70000', "broker.port"),
    ('type = "uhf"', 'type = "nfc"', "nodes[0].readers[0].type"),
    ('id = "search"\nkind', 'id = "entry"\nkind', "rooms[1].id"),
])
def test_bad_value_names_the_key(tmp_path, old, new, key):
    bad = _mutate(DEMO_SITE, old, new, tmp_path)
    with pytest.raises(ConfigError) as info:
        load_site(bad)
    assert info.value.key == key
    assert str(bad) in str(info.value)


def test_unknown_top_level_section_refused():
    data = read_toml(DEMO_SITE)
    data["extras"] = {"a": 1}
    with pytest.raises(ConfigError, match="extras: expected no such key"):
        parse_site(data, "x.toml")


def test_cli_reports_one_line_and_exit_2(tmp_path):
    bad = _mutate(DEMO_SITE, 'kind = "holding"', 'kind = "cell"', tmp_path)
    r = subprocess.run([sys.executable, "-m", "custody", "site", "check", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "rooms[8].kind" in r.stderr and str(bad) in r.stderr


def test_cli_syntax_error_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\n")
    for f in (broken, tmp_path / "absent.toml"):
        r = subprocess.run([sys.executable, "-m", "custody", "site", "check", str(f)],
                           capture_output=True, text=True)
        assert r.returncode == 2 and str(f) in r.stderr and "Traceback" not in r.stderr


def test_help_lists_subcommands():
    r = subprocess.run([sys.executable, "-m", "custody", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "site" in r.stdout
