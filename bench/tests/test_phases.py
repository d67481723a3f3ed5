# SPDX-License-Identifier: Apache-2.0
"""dsdfsbench.phases: workers released phase by phase through whole files."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

from dsdfsbench import phases
from dsdfsbench.common import BenchError

WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from dsdfsbench import phases
ctl, wid = sys.argv[2], sys.argv[3]
for phase in ("one", "two"):
    phases.wait_go(ctl, phase, timeout=20)
    t0 = time.monotonic()
    phases.publish(ctl, wid, phase, {"start": t0, "end": time.monotonic(), "wid": wid})
"""
BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Phases(unittest.TestCase):
    def test_workers_run_each_phase_after_its_release(self):
        with tempfile.TemporaryDirectory() as ctl:
            procs = [subprocess.Popen([sys.executable, "-c", WORKER, BENCH, ctl, str(w)],
                                      env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1")) for w in range(3)]
            try:
                time.sleep(0.2)
                self.assertEqual([n for n in os.listdir(ctl) if n.startswith("0.")], [],
                                 "a worker ran before its release")
                for phase in ("one", "two"):
                    t = time.monotonic()
                    phases.release(ctl, phase, lead=0.05)
                    got = phases.collect(ctl, phase, 3, procs, timeout=20, what="test")
                    self.assertEqual([g["wid"] for g in got], ["0", "1", "2"])
                    self.assertTrue(all(g["start"] >= t + 0.05 for g in got), got)
                for p in procs:
                    self.assertEqual(p.wait(timeout=10), 0)
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()

    def test_a_failed_worker_or_a_timeout_is_an_error(self):
        with tempfile.TemporaryDirectory() as ctl:
            bad = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
            bad.wait()
            with self.assertRaisesRegex(BenchError, "exit 3"):
                phases.collect(ctl, "x", 1, [bad], timeout=5, what="test")
            with self.assertRaisesRegex(BenchError, "not done after"):
                phases.collect(ctl, "x", 1, [], timeout=0.05, what="test")


if __name__ == "__main__":
    unittest.main()
