"""Reader frame parsers: known frames, resynchronisation, split frames, checksum counting."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drivers import rdm6300, uhf_m100
from edge_agent.drivers.rdm6300 import Rdm6300Parser
from edge_agent.drivers.uhf_m100 import M100Parser

BAND = "0a1b2c3d4e"


def test_rdm6300_known_frame():
    # Id 62 E3 08 6C ED: XOR of the five bytes = 0x08.
    frame = b"\x0262E3086CED08\x03"
    assert rdm6300.decode(frame) == "62e3086ced"
    assert rdm6300.encode("62e3086ced") == frame
    p = Rdm6300Parser()
    assert [r.band for r in p.feed(frame)] == ["62e3086ced"]
    assert p.feed(frame)[0].tamper is None  # 125 kHz readers report no band status


def test_rdm6300_bad_checksum_counted_not_read():
    frame = bytearray(rdm6300.encode(BAND))
    frame[12] = ord("0") if frame[12] != ord("0") else ord("1")
    p = Rdm6300Parser()
    assert p.feed(bytes(frame) + rdm6300.encode(BAND)) != []
    assert p.counts["checksum"] == 1 and p.counts["frames"] == 1


def test_rdm6300_resyncs_after_truncated_frame():
    good = rdm6300.encode(BAND)
    p = Rdm6300Parser()
    # A frame cut short (reader unplugged mid-frame) followed directly by a whole one.
    reads = p.feed(good[:6] + good + b"\xff\x00" + good)
    assert [r.band for r in reads] == [BAND, BAND]
    assert p.counts["checksum"] == 0 and p.counts["noise"] == 8


def test_m100_multi_poll_command_matches_manual():
    assert uhf_m100.multi_poll_command() == bytes.fromhex("BB00270003 22FFFF4A7E".replace(" ",
                                                                                        ""))


def test_m100_inventory_notice_decodes():
    f = uhf_m100.inventory_notice(uhf_m100.band_epc(BAND), rssi=-65, crc=0x1234)
    p = M100Parser()
    (r,) = p.feed(f)
    assert (r.band, r.rssi, r.tamper, r.battery_low) == (BAND, -65, False, False)
    other = bytes(range(1, 13))
    (r2,) = p.feed(uhf_m100.inventory_notice(other, pc=0x3003))
    assert r2.band == other.hex() and r2.tamper and r2.battery_low


def test_m100_error_frames_counted():
    p = M100Parser()
    assert p.feed(uhf_m100.error_frame(0x15) + uhf_m100.error_frame(0x09)) == []
    assert p.counts["no_tag"] == 1 and p.counts["errors"] == 1 and p.error_codes[0x09] == 1


def test_m100_bad_checksum_and_noise():
    good = uhf_m100.inventory_notice(uhf_m100.band_epc(BAND))
    bad = bytearray(good)
    bad[-2] ^= 1
    p = M100Parser()
    reads = p.feed(b"\xbb\xbb\x99" + bytes(bad) + good[:4])
    reads += p.feed(good[4:] + b"\x7e")
    assert [r.band for r in reads] == [BAND]
    assert p.counts["checksum"] == 1 and p.counts["frames"] == 1


@st.composite
def _stream(draw, encode, noise_alphabet):
    bands = draw(st.lists(st.binary(min_size=5, max_size=5).map(bytes.hex), min_size=1,
                          max_size=8))
    chunks, expected = [], []
    for b in bands:
        noise = draw(st.binary(max_size=6).filter(lambda n: not set(n) & noise_alphabet))
        chunks.append(noise)
        chunks.append(encode(b))
        expected.append(b)
    data = b"".join(chunks)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    return data, cuts, expected


def _split(data, cuts):
    out, last = [], 0
    for c in [*cuts, len(data)]:
        out.append(data[last:c])
        last = c
    return out


@settings(max_examples=150, deadline=None)
@given(_stream(rdm6300.encode, {0x02}))
def test_rdm6300_recovers_every_frame_from_noise_and_any_split(case):
    data, cuts, expected = case
    p = Rdm6300Parser()
    got = []
    for piece in _split(data, cuts):
        got += [r.band for r in p.feed(piece)]
    assert got == expected
    assert p.counts["checksum"] == 0


@settings(max_examples=150, deadline=None)
@given(_stream(lambda b: uhf_m100.inventory_notice(uhf_m100.band_epc(b)), {0xBB}))
def test_m100_recovers_every_frame_from_noise_and_any_split(case):
    data, cuts, expected = case
    p = M100Parser()
    got = []
    for piece in _split(data, cuts):
        got += [r.band for r in p.feed(piece)]
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_never_raise_on_garbage(data):
    for p in (Rdm6300Parser(), M100Parser()):
        p.feed(data)
        p.feed(data[::-1])
        assert len(p.buf) < 400 + 14


def test_random_corruption_counts_every_bad_frame():
    rng = random.Random(7)
    p = M100Parser()
    good = bad = 0
    stream = b""
    for i in range(300):
        f = bytearray(uhf_m100.inventory_notice(uhf_m100.band_epc(f"{i:010x}")))
        if rng.random() < 0.2:
            f[rng.randrange(8, len(f) - 2)] ^= 0x40  # a flipped bit inside the payload
            bad += 1
        else:
            good += 1
        stream += bytes(f)
    reads = []
    for i in range(0, len(stream), 37):
        reads += p.feed(stream[i:i + 37])
    assert len(reads) == good and p.counts["checksum"] == bad


def test_m100_overlong_epc_is_counted_not_a_band():
    p = M100Parser()
    assert p.feed(uhf_m100.inventory_notice(bytes(40))) == []
    assert p.counts["bad_epc"] == 1 and p.counts["frames"] == 1
