"""The scenario language (seconds): ids checked as the supervisor checks them, staff commands
the supervisor would refuse refused at load, violations with parameters (inside a rule's limit
they expect nothing), expectations that follow a named violation or step, staff reactions, and
the scorecard's lifecycle steps and refused commands."""

import itertools
from pathlib import Path

import pytest

from protocol.config import ConfigError
from protocol.ids import IdError, check_id
from sim.scenario import load_scenario
from sim.score import Raised, score
from sim.timetable import Expected

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "sim" / "sites" / "compact.toml"
BASE = (ROOT / "sim/scenarios/never-alone.toml").read_text().replace(
    'site = "../sites/compact.toml"', f'site = "{SITE}"')
HEAD = BASE[: BASE.index("[[detainees]]")]


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "s.toml"
    f.write_text(text)
    return f


def _detainee(violations: str, extra: str = "") -> str:
    return (f'[[detainees]]\nid = "det-1"\ncase = "case-201"\nsex = "m"\nholding = "holding-1"\n'
            f'team = ["off-ben", "off-anna"]\narrive_s = 60\nstay_s = 900\ninterviews = 0\n'
            f'violations = {violations}\n{extra}\n')


def test_upper_case_case_id_is_refused_with_the_supervisors_message(tmp_path):
    f = _write(tmp_path, BASE.replace('case = "case-201"', 'case = "CASE-201"'))
    with pytest.raises(ConfigError) as err:
        load_scenario(f)
    with pytest.raises(IdError) as ref:
        check_id("CASE-201", "case")
    assert "detainees[0].case" in str(err.value)
    assert str(ref.value) in str(err.value)


def test_officer_id_and_duplicate_people_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"officers\[0\]\.id.*\[a-z0-9-\]"):
        load_scenario(_write(tmp_path, BASE.replace('id = "off-anna"', 'id = "Off_Anna"')))


def test_a_command_step_the_supervisor_would_refuse_is_refused_at_load(tmp_path):
    text = BASE + ('\n[[steps]]\nid = "bad-reg"\nat_s = 30\naction = "command"\n'
                   'command = "register-detainee"\nuser = "off-anna"\n'
                   'args = { detainee = "det-9", band = "ab12", case = "Case-9", sex = "m",'
                   ' custody_type = "administrative-questioning", observation = "level1" }\n')
    with pytest.raises(ConfigError, match=r"steps \(id bad-reg\).*argument 'case' must be id"):
        load_scenario(_write(tmp_path, text))


@pytest.mark.parametrize("kind,inside,outside,rule", [
    ("left-alone", "duration_s = 8", "duration_s = 12", "never-alone"),
    ("short-search", "duration_s = 180", "duration_s = 178", "real-search"),
    ("late-registration", "late_s = 598", "late_s = 602", "brought-straight-in"),
    ("belongings-late", "after_s = 1795", "after_s = 1800", "property"),
    ("holding-camera-off", "duration_s = 10", "duration_s = 12", "recording-gap"),
    ("lawyer-visit", "alone_s = 8", "alone_s = 12", "never-alone"),
    ("family-visit", "officer_out_s = 8", "officer_out_s = 12", "never-alone"),
    ("door-left-open", "open_s = 60", "open_s = 61", "door-open"),
    ("reader-fault", "junk_s = 30", "corrupt_s = 5", "reader-fault"),
    ("node-offline", "duration_s = 30", "duration_s = 31", "device-offline"),
])
def test_violation_parameters_inside_a_limit_expect_nothing(tmp_path, kind, inside, outside,
                                                            rule):
    def plan(param: str, expect: str = "") -> list[Expected]:
        v = f'[{{ kind = "{kind}", id = "v1", {param} }}]'
        return load_scenario(_write(tmp_path, HEAD + _detainee(v) + expect)).plan.expected

    assert [e for e in plan(inside) if e.rule == rule] == []
    out = plan(outside, f'\n[[expect]]\nrule = "{rule}"\nafter = "v1"\nwithin_s = 99\n')
    assert [(e.rule, e.cause, e.within_s) for e in out] == [(rule, "v1", 99)]


def test_unknown_violation_parameter_and_after_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"violations\[0\]\.late_s"):
        load_scenario(_write(tmp_path, HEAD + _detainee('[{ kind = "left-alone", late_s = 1 }]')))
    text = HEAD + _detainee('["left-alone"]') + '\n[[expect]]\nrule = "never-alone"\nafter = "x"\n'
    with pytest.raises(ConfigError, match=r"expect\[0\]\.after.*det-1:left-alone"):
        load_scenario(_write(tmp_path, text))


def test_expectations_follow_raw_steps_and_raw_moves_are_predicted(tmp_path):
    text = (HEAD + _detainee("[]")
            + '\n[[steps]]\nid = "press"\nat_s = 300\naction = "button"\nbutton = "panic-exit"\n'
            + '\n[[expect]]\nrule = "panic"\nroom = "exit"\nafter = "press"\ndelay_s = 1\n'
            + 'within_s = 30\n')
    e = load_scenario(_write(tmp_path, text)).plan.expected
    assert [(x.rule, x.from_s, x.cause) for x in e] == [("panic", 301, "press")]


def test_staff_reactions_are_checked(tmp_path):
    text = HEAD + _detainee('["left-alone"]') + (
        '\n[[expect]]\nrule = "never-alone"\nafter = "det-1:left-alone"\n'
        '\n[[staff]]\ndo = "ack"\nby = "off-zed"\nrule = "never-alone"\ndetainee = "det-1"\n')
    with pytest.raises(ConfigError, match=r"staff\[0\]\.by"):
        load_scenario(_write(tmp_path, text))
    sc = load_scenario(_write(tmp_path, text.replace("off-zed", "off-anna")))
    (r,) = sc.plan.reactions
    assert (r.do, r.by, r.rule, r.detainee, r.after_s) == ("ack-alert", "off-anna",
                                                          "never-alone", "det-1", 0)


def test_score_checks_each_lifecycle_step_and_fails_on_refused_commands():
    start = 1_000_000
    e = Expected("recording-gap", None, "holding-1", 100, 40, checks={
        "severity": "warning", "escalated": True, "closed_within_s": 200,
        "lifecycle": ["raised", "escalated", "resolved"]})
    r = Raised("a1", "recording-gap", "warning", None, "holding-1", start + 110_000, 0.0)
    msg = {"id": "a1", "rule": "recording-gap", "severity": "warning", "raised_ts": r.raised_ts}
    hist = [{**msg, "state": "raised", "ts": r.raised_ts},
            {**msg, "state": "updated", "ts": r.raised_ts + 1000},
            {**msg, "state": "escalated", "severity": "critical", "ts": r.raised_ts + 120_000},
            {**msg, "state": "resolved", "ts": r.raised_ts + 150_000}]
    s = score("t", [e], [r], start, history=hist)
    assert s.passed and [c["step"] for c in s.lifecycle] == [
        "severity", "escalated", "lifecycle", "closed_within_s"]
    assert s.lifecycle[-1]["got"] == 150.0
    s = score("t", [e], [r], start, history=hist[:2])
    assert not s.passed
    assert {c["step"] for c in s.lifecycle if not c["ok"]} == {
        "escalated", "lifecycle", "closed_within_s"}
    s = score("t", [e], [r], start, history=hist, refused=["at 5 s ack-alert by x: nope"])
    assert not s.passed and s.as_json()["refused"] == ["at 5 s ack-alert by x: nope"]


POOL = f'''[scenario]
site = "{SITE}"
speed = 40
pace = 0.3

[[officers]]
id = "off-anna"
sex = "f"

[[officers]]
id = "off-ben"
sex = "m"
OFF_BEN

[[officers]]
id = "off-cara"
sex = "f"

[[detainees]]
id = "det-1"
case = "case-1"
sex = "m"
holding = "holding-1"
team = ["off-ben", "off-anna"]
arrive_s = 60
stay_s = 3000
interviews = 0

[[detainees]]
id = "det-2"
case = "case-2"
sex = "m"
holding = "holding-2"
team = ["off-ben", "off-cara"]
arrive_s = ARRIVE
stay_s = 900
interviews = 0
'''


def test_an_officer_in_two_places_or_off_duty_is_refused_and_visits_pass_to_whoever_is_free(
        tmp_path):
    with pytest.raises(ConfigError, match="det-2: officer off-ben in two places: the intake "
                                          "of det-1"):
        load_scenario(_write(tmp_path, POOL.replace("ARRIVE", "100").replace("OFF_BEN", "")))
    with pytest.raises(ConfigError, match="officer off-ben is off duty for the intake of det-1"):
        load_scenario(_write(tmp_path, POOL.replace("ARRIVE", "2000")
                             .replace("OFF_BEN", "off_s = 300")))
    sc = load_scenario(_write(tmp_path, POOL.replace("ARRIVE", "1900").replace("OFF_BEN", "")))
    visitors = {s.args["user"] for s in sc.plan.steps if s.action == "command"
                and s.args["command"] == "record-welfare-check"
                and s.args["args"]["detainee"] == "det-1"}
    assert "off-ben" in visitors and visitors - {"off-ben"}, visitors  # one handed over
    # Nobody is booked in two places at once.
    for o in sc.centre.officers:
        spans = sorted((s, e) for s, e, _ in _spans(sc, o))
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), (o, spans)


def _spans(sc, officer):
    """(start, end, what) an officer is in a room with work to do, from the moves."""
    out, since = [], None
    for s in sc.plan.sorted_steps():
        if s.action == "move" and officer in s.args["people"]:
            if s.args["room"] == "outside":
                if since is not None:
                    out.append((since, s.at_s, ""))
                since = None
            elif since is None:
                since = s.at_s
    return out


def test_new_steps_are_checked_against_the_site_and_people(tmp_path):
    """Issue 18's steps: a reader unplugged, a door held open, a band swapped."""
    def load(step: str) -> None:
        load_scenario(_write(tmp_path, HEAD + _detainee("[]") + "\n[[steps]]\nat_s = 30\n"
                             + step))

    load('action = "reader"\nreader = "holding-1-uhf"\nplugged = false\n')
    with pytest.raises(ConfigError, match=r"steps\[0\]\.reader.*a reader of a room node"):
        load('action = "reader"\nreader = "nowhere"\nplugged = false\n')
    load('action = "door"\ndoor = "d-holding-1"\nopen_s = 20\n')
    with pytest.raises(ConfigError, match=r"steps\[0\]\.door.*a door with a contact"):
        load('action = "door"\ndoor = "d-nowhere"\nopen_s = 20\n')
    with pytest.raises(ConfigError, match=r"steps\[0\]\.swap_with.*another id"):
        load('action = "band"\nperson = "det-1"\nswap_with = "det-1"\n')


def test_a_band_swap_expects_band_tamper_for_both_bands_at_each_opening(tmp_path):
    crew = '[[officers]]\nid = "off-cara"\nsex = "f"\n\n[[officers]]\nid = "off-dan"\nsex = "m"\n'
    mate = crew + _detainee("[]").replace('"det-1"', '"det-0"').replace(
        '"case-201"', '"case-200"').replace('"off-ben", "off-anna"', '"off-dan", "off-cara"'
                                           ).replace("stay_s = 900", "stay_s = 1500")
    swap = _detainee('[{ kind = "band-swap", id = "swap", at_s = 60, open_s = 20, '
                     'worn_s = 60 }]').replace("arrive_s = 60", "arrive_s = 80")
    exp = "".join(f'\n[[expect]]\nrule = "band-tamper"\ndetainee = "{d}"\nafter = "swap"\n'
                  for d in ("det-1", "det-0", "det-1", "det-0"))
    sc = load_scenario(_write(tmp_path, HEAD + mate + swap + exp))
    assert sorted((e.detainee, e.room) for e in sc.plan.expected) == [
        ("det-0", "holding-1"), ("det-0", "holding-1"), ("det-1", "holding-1"),
        ("det-1", "holding-1")]
    swaps = [s for s in sc.plan.steps if s.action == "band" and "swap_with" in s.args]
    assert len(swaps) == 2  # swapped and swapped back
    alone = HEAD + swap.replace('"det-1"', '"det-2"')
    with pytest.raises(ConfigError, match="no cellmate of det-2"):
        load_scenario(_write(tmp_path, alone))


def test_visitors_are_registered_with_a_command_the_supervisor_accepts(tmp_path):
    v = '[{ kind = "lawyer-visit", id = "law", duration_s = 60, alone_s = 0 }]'
    sc = load_scenario(_write(tmp_path, HEAD + _detainee(v)))
    (reg,) = [s for s in sc.plan.steps if s.action == "command"
              and s.args["command"] == "register-visitor"]
    assert reg.args["args"]["kind"] == "lawyer" and reg.args["args"]["detainee"] == "det-1"
    assert sc.centre.band_of("law-det-1") == reg.args["args"]["band"]
    assert sc.plan.expected == []
