# Runs protocol/vectors/*.json inside MicroPython with the firmware's own signer and verifier.
# Usage: micropython run_vectors.py VECTOR_DIR   (firmware/lib on MICROPYPATH)
# Prints one line per vector: "<file> <name> ok" or "<file> <name> FAIL <why>".
import json
import sys

import canon
import envelope

BASE = "custody/v1/test-site"


def _unhex(s):
    import binascii
    return binascii.unhexlify(s)


def run(vdir):
    fails = 0
    with open(vdir + "/canonical.json") as f:
        for i, vec in enumerate(json.load(f)):
            got = canon.dumps(vec["value"])
            ok = got == vec["text"]
            print("canonical %d %s" % (i, "ok" if ok else "FAIL " + got))
            fails += not ok
    with open(vdir + "/valid.json") as f:
        valid = json.load(f)
    for vec in valid:
        s = vec["sign"]
        key = _unhex(vec["key"])
        payload = envelope.seal(key, s["node"], s["epoch"], s["seq"], s["ts"], s["type"],
                                s["body"])
        why = ""
        if payload != vec["payload"].encode():
            why = "payload differs: " + payload.decode()
        else:
            try:
                node = envelope.parse_node_topic(vec["topic"], BASE, "event")
                env = envelope.verify(payload, {s["node"]: key}, node)
                envelope.ReplayWindow().admit(env["node"], env["epoch"], env["seq"])
                if (env["seq"], env["type"]) != (s["seq"], s["type"]):
                    why = "fields differ"
            except envelope.VerifyError as e:
                why = "rejected: " + str(e)
        print("valid %s %s" % (vec["name"], "ok" if not why else "FAIL " + why))
        fails += bool(why)
    with open(vdir + "/invalid.json") as f:
        invalid = json.load(f)
    for vec in invalid:
        keys = {}
        for k in vec["keys"]:
            keys[k] = _unhex(vec["keys"][k])
        window = envelope.ReplayWindow()
        for node, epoch, seq in vec["admitted_before"]:
            window.admit(node, epoch, seq)
        why = "accepted"
        try:
            node = envelope.parse_node_topic(vec["topic"], BASE, "event")
            env = envelope.verify(vec["payload"].encode(), keys, node)
            window.admit(env["node"], env["epoch"], env["seq"])
        except envelope.VerifyError as e:
            why = "" if e.reason == vec["reason"] else "wrong reason " + e.reason
        print("invalid %s %s" % (vec["name"], "ok" if not why else "FAIL " + why))
        fails += bool(why)
    print("done %d failures" % fails)
    return fails


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1]) else 0)
