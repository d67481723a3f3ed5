#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Count the results in a meson testlog.json (one JSON object per line).

Prints "PASSED FAILED SKIPPED" on stdout, and one line per test that did not
pass on stderr. OK and EXPECTEDFAIL count as passed; SKIP as skipped; FAIL,
TIMEOUT, ERROR, UNEXPECTEDPASS and anything else as failed.
Used by scripts/test.sh.
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: testlog-summary.py build/meson-logs/testlog.json", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    with open(sys.argv[1], encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                test = json.loads(line)
            except ValueError:
                continue
            result = test.get("result", "ERROR")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
                continue
            if result == "SKIP":
                skipped += 1
            else:
                failed += 1
            print(f"test.sh: {result}: {test.get('name', '?')}", file=sys.stderr)
    print(passed, failed, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
