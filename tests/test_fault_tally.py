"""The fault tests' counting and network cut are themselves right (unit level, plus a real
broker reached through a real network namespace)."""

import subprocess

import pytest

from custody.broker import BrokerConfig, Mosquitto
from tests.fault_support import NetNs, netns_available, tally

GEN = ["b1", "b2", "b3", "b4"]


def test_clean_run_counts_zero():
    t = tally(GEN, [((1, i + 1), b) for i, b in enumerate(GEN)])
    assert t.clean() and (t.generated, t.journaled, t.late) == (4, 4, 0)


def test_missing_duplicated_out_of_order_and_late_are_counted():
    assert tally(GEN, [((1, 1), "b1"), ((1, 2), "b2"), ((1, 4), "b4")]).missing == 1
    assert tally(GEN, [((1, i + 1), b) for i, b in enumerate(GEN)] + [((1, 2), "b2")]
                 ).duplicated == 1
    # Node sequence order differs from device order: b3 got a lower seq than b2.
    swapped = tally(GEN, [((1, 1), "b1"), ((1, 3), "b2"), ((1, 2), "b3"), ((1, 4), "b4")])
    assert swapped.out_of_order == 2 and not swapped.clean()
    # A gap filled by a resend: journal position late, node order right: clean but counted.
    late = tally(GEN, [((1, 1), "b1"), ((1, 3), "b3"), ((1, 4), "b4"), ((1, 2), "b2")])
    assert late.clean() and late.late == 1
    # Entries of other devices are ignored.
    assert tally(GEN, [((1, i + 1), b) for i, b in enumerate([*GEN, "other"])]).clean()


@pytest.mark.skipif(not netns_available(), reason="network namespaces need root and iproute2")
def test_netns_cut_and_restore_with_a_real_broker(tmp_path):
    with NetNs(9) as ns, Mosquitto(BrokerConfig(host=ns.host_ip)) as b:
        pub = [*ns.prefix(), "mosquitto_pub", "-h", b.host, "-p", str(b.port), "-t", "t",
               "-m", "x", "-q", "1"]
        assert subprocess.run(pub, capture_output=True, timeout=20).returncode == 0
        ns.cut()
        r = subprocess.run(["timeout", "5", *pub], capture_output=True, timeout=30)
        assert r.returncode != 0, "the cut node must not reach the broker"
        ns.restore()
        assert subprocess.run(pub, capture_output=True, timeout=20).returncode == 0
