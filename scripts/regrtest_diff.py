#!/usr/bin/env python3
# regrtest_diff.py - compares two `python -m test --junit-xml` results (plain,
# under stalltrace) test by test; scripts/cpython_regrtest.sh calls it.
"""usage: regrtest_diff.py PLAIN.xml PLAIN_RC TRACED.xml TRACED_RC

Prints one summary line (counts by result, both ways), then one line per
test whose result differs; exits 1 when anything differs (the exit status
of the suite included), 0 otherwise."""

import sys
import xml.etree.ElementTree as ET

OUTCOMES = ("error", "failure", "skipped")


def results(path):
    """{test id: outcome}: error, failure, skipped, or regrtest's result
    (completed, expectedfailure, ...); None when there is no usable file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out = {}
    for case in root.iter("testcase"):
        found = [c.tag for c in case if c.tag in OUTCOMES]
        out[case.get("name")] = found[0] if found else case.get("result", "completed")
    return out


def counts(res):
    tally = {}
    for outcome in res.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return " ".join("%s=%d" % kv for kv in sorted(tally.items())) or "no tests"


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    plain, traced = results(argv[1]), results(argv[3])
    plain_rc, traced_rc = argv[2], argv[4]
    if plain is None or traced is None:
        print("  no result file: plain %s (exit %s), traced %s (exit %s)"
              % ("ok" if plain is not None else "missing", plain_rc,
                 "ok" if traced is not None else "missing", traced_rc))
        return 1 if (plain is None) != (traced is None) or plain_rc != traced_rc else 0
    print("  plain: exit %s, %s | traced: exit %s, %s"
          % (plain_rc, counts(plain), traced_rc, counts(traced)))
    differ = [(name, plain.get(name, "absent"), traced.get(name, "absent"))
              for name in sorted(set(plain) | set(traced))
              if plain.get(name) != traced.get(name)]
    for name, a, b in differ:
        print("  DIFF %s: plain %s, traced %s" % (name, a, b))
    return 1 if differ or plain_rc != traced_rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
