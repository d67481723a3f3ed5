#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Count the results in a meson testlog.json (one JSON object per line).

Prints "PASSED FAILED SKIPPED" on stdout, and one line per test that did not
pass on stderr. With a second argument TAILS, writes the last 40 lines of
each such test's stdout and stderr there, so that they can be shown again at the end of
a long run. OK and EXPECTEDFAIL count as passed; SKIP as skipped; FAIL,
TIMEOUT, ERROR, UNEXPECTEDPASS and anything else as failed.
Used by scripts/test.sh.
"""
import json
import sys


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: testlog-summary.py build/meson-logs/testlog.json [TAILS]", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    tails = []
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
            # stdout, then stderr where the test keeps them apart (the shell
            # suites' fail() writes its reason to stderr)
            for stream in ("stdout", "stderr"):
                lines = (test.get(stream) or "").splitlines()[-40:]
                if stream == "stderr" and not lines:
                    continue
                tails.append(f"--- last {len(lines)} lines of {test.get('name', '?')} ({result}), {stream} ---")
                tails.extend(lines)
    if len(sys.argv) == 3:
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            out.write("\n".join(tails) + ("\n" if tails else ""))
    print(passed, failed, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
