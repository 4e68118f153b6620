"""Visitors and lawyers: bands that are neither officer nor detainee (issue 18).

A visitor's band is known (no unknown-band) but never an escort; a lawyer alone with their
client in an interview room is a legal consultation (neither never-alone nor an interview),
and the time alone after the lawyer leaves counts from the lawyer's leaving. Also the cell
door left open (door-open).
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.site import Door
from supervisor import rules as R
from tests.supervisor_support import BANDS, ROOM_NODE
from tests.test_supervisor_units import World

LAWYER, VISITOR = "00000000b1", "00000000b2"


@pytest.fixture(name="w")
def world(tmp_path: Path) -> Iterator[World]:
    x = World(tmp_path)
    yield x
    x.journal.close()


def band(w: World, band: str, room: str, etype: str = "presence.enter") -> None:
    w.event(ROOM_NODE[room], etype, {"band": band, "room": room, "reader": f"{room}-uhf"})


def visitor(w: World, who: str, band: str, kind: str, detainee: str = "d1") -> dict[str, Any]:
    return w.staff("register-visitor", {"visitor": who, "band": band, "kind": kind,
                                        "detainee": detainee})


def test_register_visitor_is_checked_like_the_supervisor_checks_people(w):
    w.people()
    assert visitor(w, "law-1", LAWYER, "lawyer")["ok"]
    r = visitor(w, "law-2", LAWYER, "lawyer")
    assert not r["ok"] and "band 00000000b1 is in use by lawyer law-1" in r["error"]
    r = visitor(w, "law-1", VISITOR, "lawyer")
    assert not r["ok"] and "'law-1' is already inside" in r["error"]
    r = visitor(w, "fam-1", VISITOR, "friend")
    assert not r["ok"] and "argument 'kind' must be one of visitor, lawyer" in r["error"]
    r = visitor(w, "fam-1", VISITOR, "visitor", detainee="d9")
    assert not r["ok"] and "detainee 'd9' is not registered" in r["error"]
    r = w.staff("register-detainee", {"detainee": "d2", "band": LAWYER, "case": "c2",
                                      "sex": "m", "custody_type": "short",
                                      "observation": "level1"})
    assert not r["ok"] and "in use by lawyer law-1" in r["error"]


def test_a_visitor_is_known_but_never_an_escort(w):
    w.people()
    assert visitor(w, "fam-1", VISITOR, "visitor")["ok"]
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    band(w, VISITOR, "medical")
    assert w.rule(R.unknown_band) == []
    w.at(1).leave("o1", "medical")
    assert w.at(11).rule(R.never_alone) == [("never-alone", "d1", "medical")]
    # Not a lawyer, so not a consultation either, even in an interview room.
    w.at(12).enter("d1", "interview-1")
    band(w, VISITOR, "interview-1")
    assert w.at(30).rule(R.never_alone) == [("never-alone", "d1", "interview-1")]


def test_a_lawyer_with_their_client_in_an_interview_room_is_a_consultation(w):
    w.people()
    assert visitor(w, "law-1", LAWYER, "lawyer")["ok"]
    w.at(0).enter("o1", "interview-1")
    w.enter("d1", "interview-1")
    band(w, LAWYER, "interview-1")
    w.at(1).leave("o1", "interview-1")
    late = w.at(600)
    assert late.rule(R.never_alone) == [] and late.rule(R.interview) == []
    # The lawyer leaves: alone from then on, not from when the officer left.
    band(w, LAWYER, "interview-1", "presence.leave")
    assert w.at(609.9).rule(R.never_alone) == []
    assert w.at(610).rule(R.never_alone) == [("never-alone", "d1", "interview-1")]
    # Back with one officer: the time with too few officers counts from the consultation's
    # end, not from the detainee's entering (an interview with one officer only after 20 s).
    w.at(615).enter("o2", "interview-1")
    assert w.rule(R.never_alone) == []
    assert w.at(619.9).rule(R.interview) == []
    assert w.at(620).rule(R.interview) == [("interview", "d1", "interview-1")]


def test_an_officer_joining_ends_the_consultation(w):
    w.people()
    assert visitor(w, "law-1", LAWYER, "lawyer")["ok"]
    w.at(0).enter("o1", "interview-1")
    w.enter("d1", "interview-1")
    band(w, LAWYER, "interview-1")
    w.at(1).leave("o1", "interview-1")
    w.at(300).enter("o2", "interview-1")  # the officer comes back; the lawyer is still there
    band(w, LAWYER, "interview-1", "presence.leave")
    assert w.at(319.9).rule(R.interview) == []
    assert w.at(320).rule(R.interview) == [("interview", "d1", "interview-1")]


def test_a_lawyer_is_no_escort_outside_an_interview_room_nor_for_another_detainee(w):
    w.people()
    assert visitor(w, "law-1", LAWYER, "lawyer")["ok"]
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    band(w, LAWYER, "medical")
    w.at(1).leave("o1", "medical")
    assert w.at(11).rule(R.never_alone) == [("never-alone", "d1", "medical")]
    # With an officer in the interview room and the lawyer, one officer is still an interview
    # with too few officers.
    w.at(20).enter("o1", "interview-1")
    w.enter("d1", "interview-1")
    band(w, LAWYER, "interview-1")
    assert w.at(200).rule(R.interview) == [("interview", "d1", "interview-1")]


def test_the_visitor_band_goes_back_at_the_exit(w):
    w.people()
    assert visitor(w, "fam-1", VISITOR, "visitor")["ok"]
    assert w.state.bands[VISITOR].role == "visitor"
    version = w.state.roster_version
    w.at(0)
    band(w, VISITOR, "exit")
    assert VISITOR not in w.state.bands and "fam-1" not in w.state.visitors
    assert w.state.roster_version == version + 1
    assert visitor(w, "fam-1", VISITOR, "visitor")["ok"]  # the band may be issued again
    assert BANDS["d1"] in w.state.bands


def test_an_occupied_cell_door_left_open_without_an_officer(w):
    """door-open: a holding room's door open with a detainee inside and no officer, for
    door_open_limit_s (60 s by default); an officer inside (a visit) or a shut door is fine."""
    w.state.site = dataclasses.replace(
        w.state.site, doors=(*w.state.site.doors, Door("d-cell", ("holding-1", "corridor"))))
    w.people()
    w.at(0).enter("o1", "holding-1")
    w.enter("d1", "holding-1")
    w.state.doors["d-cell"] = ("open", w.now)
    assert w.at(100).rule(R.door_open) == []  # an officer is in the cell
    w.leave("o1", "holding-1")
    assert w.at(159.9).rule(R.door_open) == []
    assert w.at(160).rule(R.door_open) == [("door-open", "d1", "holding-1")]
    w.state.doors["d-cell"] = ("closed", w.now)
    assert w.at(161).rule(R.door_open) == []


def test_time_alone_before_the_lawyer_came_is_latched_when_they_arrive(w):
    """Alone past the grace, then the lawyer comes in before the rules looked: the spell
    ended there and is latched (as when an officer comes back)."""
    w.people()
    assert visitor(w, "law-1", LAWYER, "lawyer")["ok"]
    w.at(0).enter("o1", "interview-1")
    w.enter("d1", "interview-1")
    w.at(1).leave("o1", "interview-1")
    w.at(16)
    band(w, LAWYER, "interview-1")
    assert w.rule(R.never_alone) == []  # a consultation now
    assert [(i.rule, i.detainee) for i in w.state.incidents.values() if i.open] == [
        ("never-alone", "d1")]
