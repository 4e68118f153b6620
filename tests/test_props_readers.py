"""Property tests of the reader frame parsers (RDM6300, M100 UHF): any byte stream, any split."""

import contextlib

from hypothesis import assume, given
from hypothesis import strategies as st

from edge_agent.drivers import rdm6300, uhf_m100
from edge_agent.drivers.rdm6300 import Rdm6300Parser
from edge_agent.drivers.uhf_m100 import M100Parser
from tests.proof_strategies import PROPS

band_ids = st.binary(min_size=5, max_size=5).map(bytes.hex)
epcs = st.binary(min_size=1, max_size=uhf_m100.MAX_BAND_EPC)  # longer: not a band
rssis = st.integers(-128, 127)
pcs = st.integers(0, 0xFFFF)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (as a serial port would deliver it)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        out.append(data[last:p])
        last = p
    return out


def _is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@PROPS
@given(band_ids)
def test_rdm6300_encode_decode_round_trip(band):
    f = rdm6300.encode(band)
    assert len(f) == rdm6300.FRAME_LEN
    assert rdm6300.decode(f) == band
    assert [r.band for r in Rdm6300Parser().feed(f)] == [band]


@PROPS
@given(st.lists(st.tuples(band_ids, st.binary(max_size=30).map(lambda b: b.replace(b"\x02", b""))),
                max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_rdm6300_frames_between_noise_split_anywhere_are_read_exactly(items, cuts):
    stream = b"".join(noise + rdm6300.encode(band) for band, noise in items)
    p = Rdm6300Parser()
    reads = [r.band for c in _chunks(stream, cuts) for r in p.feed(c)]
    assert reads == [band for band, _ in items]
    assert p.counts["checksum"] == 0


@PROPS
@given(st.lists(st.tuples(band_ids, st.binary(max_size=30)), max_size=8),
       st.lists(st.integers(0, 10_000), max_size=12))
def test_rdm6300_arbitrary_noise_never_loses_a_good_frame(items, cuts):
    # A frame's STX is neither hex nor ETX, so it always ends whatever noise began.
    stream = b"".join(noise + rdm6300.encode(band) for band, noise in items)
    p = Rdm6300Parser()
    reads = [r.band for c in _chunks(stream, cuts) for r in p.feed(c)]
    assert _is_subsequence([band for band, _ in items], reads)


@PROPS
@given(band_ids, st.integers(1, 255))
def test_rdm6300_bad_checksum_is_counted_never_read(band, delta):
    f = bytearray(rdm6300.encode(band))
    good = int(f[11:13].decode(), 16)
    f[11:13] = f"{(good ^ delta):02X}".encode()
    p = Rdm6300Parser()
    assert p.feed(bytes(f)) == []
    assert p.counts["checksum"] == 1


@PROPS
@given(st.binary(max_size=400), st.lists(st.integers(0, 10_000), max_size=12))
def test_rdm6300_arbitrary_bytes_never_raise(data, cuts):
    p = Rdm6300Parser()
    for c in _chunks(data, cuts):
        for r in p.feed(c):
            assert len(r.band) == 10 and int(r.band, 16) >= 0
    assert len(p.buf) < rdm6300.FRAME_LEN  # never holds more than one partial frame
    with contextlib.suppress(ValueError):
        rdm6300.decode(data[:14])


@PROPS
@given(st.binary(min_size=uhf_m100.MAX_BAND_EPC + 1, max_size=62), rssis)
def test_m100_an_epc_longer_than_any_band_is_counted_not_read(epc, rssi):
    p = M100Parser()
    assert p.feed(uhf_m100.inventory_notice(epc, rssi)) == []
    assert p.counts["bad_epc"] == 1


@PROPS
@given(epcs, rssis, pcs, st.integers(0, 0xFFFF))
def test_m100_inventory_notice_round_trip(epc, rssi, pc, crc):
    p = M100Parser()
    reads = p.feed(uhf_m100.inventory_notice(epc, rssi, pc, crc))
    assert len(reads) == 1
    r = reads[0]
    assert (r.band, r.rssi, r.tamper, r.battery_low) == (
        uhf_m100.band_of_epc(epc), rssi, bool(pc & 1), bool(pc & 2))
    if len(epc) == 12 and epc[:7] == bytes(7):
        assert r.band == epc[7:].hex() and len(r.band) == 10
    else:
        assert r.band == epc.hex()


@PROPS
@given(st.lists(st.tuples(epcs, rssis, st.binary(max_size=30).map(
    lambda b: b.replace(b"\xbb", b""))), max_size=6), st.lists(st.integers(0, 10_000), max_size=12),
    st.lists(st.integers(0, 255), max_size=3))
def test_m100_frames_between_noise_split_anywhere_are_read_exactly(items, cuts, errors):
    stream = b"".join(noise + uhf_m100.inventory_notice(epc, rssi) for epc, rssi, noise in items)
    stream += b"".join(uhf_m100.error_frame(c) for c in errors)
    p = M100Parser()
    reads = [(r.band, r.rssi) for c in _chunks(stream, cuts) for r in p.feed(c)]
    assert reads == [(uhf_m100.band_of_epc(epc), rssi) for epc, rssi, _ in items]
    assert p.counts["no_tag"] + p.counts["errors"] == len(errors)


@PROPS
@given(st.lists(st.tuples(epcs, rssis, st.binary(max_size=40)), max_size=6),
       st.lists(st.integers(0, 10_000), max_size=12))
def test_m100_arbitrary_noise_never_loses_a_good_frame(items, cuts):
    stream = b"".join(noise + uhf_m100.inventory_notice(epc, rssi) for epc, rssi, noise in items)
    p = M100Parser()
    reads = [r.band for c in _chunks(stream, cuts) for r in p.feed(c)]
    assert _is_subsequence([uhf_m100.band_of_epc(epc) for epc, _, _ in items], reads)


@PROPS
@given(epcs, rssis, st.integers(0, 2), st.sampled_from([0x00, 0x01, 0x02]))
def test_m100_a_truncated_frame_does_not_swallow_the_next_one(epc, rssi, extra, ftype):
    # Found by these tests: a header whose length reaches exactly to the next good frame's
    # end byte failed its checksum and was dropped whole, good frame included.
    real = uhf_m100.inventory_notice(epc, rssi)
    plen = len(real) - 2 + extra
    stream = bytes([0xBB, ftype, 0x22, plen >> 8, plen & 0xFF]) + bytes(extra) + real
    # A one-byte checksum lets 1 lookalike in 256 pass as a frame: nothing can catch that one.
    assume(uhf_m100.checksum(stream[1:5 + plen]) != stream[5 + plen])
    p = M100Parser()
    assert [r.band for r in p.feed(stream)] == [uhf_m100.band_of_epc(epc)]


@PROPS
@given(epcs, st.integers(0, 255))
def test_m100_bad_checksum_is_counted_never_read(epc, delta):
    f = bytearray(uhf_m100.inventory_notice(epc))
    if delta == 0:
        return
    f[-2] = (f[-2] + delta) & 0xFF
    p = M100Parser()
    assert p.feed(bytes(f)) == []
    assert p.counts["checksum"] == 1


@PROPS
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=12))
def test_m100_arbitrary_bytes_never_raise(data, cuts):
    p = M100Parser()
    for c in _chunks(data, cuts):
        p.feed(c)
    assert len(p.buf) < 5 + uhf_m100.MAX_PAYLOAD + 2
