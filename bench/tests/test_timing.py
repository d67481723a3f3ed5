# SPDX-License-Identifier: Apache-2.0
import os
import tempfile
import time
import unittest

from dsdfsbench import timing


class CpuBusy(unittest.TestCase):
    def test_real_proc_stat(self):
        t0 = time.monotonic()
        busy = timing.cpu_busy(0.05)
        self.assertGreaterEqual(time.monotonic() - t0, 0.05)
        self.assertGreaterEqual(busy, 0.0)
        self.assertLessEqual(busy, 1.0)

    def test_from_a_stat_file(self):
        # user nice system idle iowait irq softirq: 40 busy of 100, then 70 busy of 200 more.
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "stat")
            with open(p, "w") as f:
                f.write("cpu  10 0 30 50 10 0 0\ncpu0 1 2 3\n")
            self.assertEqual(timing.cpu_times(p), (100, 60))

    def test_no_jiffies_counts_as_idle(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "stat")
            with open(p, "w") as f:
                f.write("cpu  1 0 1 5 1 0 0\n")
            self.assertEqual(timing.cpu_busy(0, p), 1.0)  # no change: 1 - 0/max(1, 0)


class Quiet(unittest.TestCase):
    def test_idle_at_once(self):
        seen = []
        busy = timing.quiet(5, 0.25, first=0.3, then=1.0, sample=lambda s: seen.append(s) or 0.1)
        self.assertEqual(busy, 0.1)
        self.assertEqual(seen, [0.3])

    def test_waits_until_idle(self):
        values = iter([0.9, 0.8, 0.2, 0.0])
        seen = []
        busy = timing.quiet(5, 0.25, sample=lambda s: seen.append(s) or next(values))
        self.assertEqual(busy, 0.2)
        self.assertEqual(seen, [0.2, 0.5, 0.5])

    def test_gives_up_after_max_wait(self):
        def always_busy(s):
            time.sleep(0.01)
            return 1.0
        t0 = time.monotonic()
        busy = timing.quiet(0.1, 0.25, sample=always_busy)
        self.assertEqual(busy, 1.0)
        self.assertLess(time.monotonic() - t0, 2)


class Load(unittest.TestCase):
    def test_loadavg(self):
        self.assertGreaterEqual(timing.loadavg(), 0.0)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "loadavg")
            with open(p, "w") as f:
                f.write("1.25 0.50 0.10 2/300 4242\n")
            self.assertEqual(timing.loadavg(p), 1.25)

    def test_wait_for_load_low_at_once(self):
        sleeps = []
        self.assertEqual(timing.wait_for_load(1.5, 100, load=lambda: 0.4, sleep=sleeps.append), 0.4)
        self.assertEqual(sleeps, [])

    def test_wait_for_load_until_low(self):
        values = iter([3.0, 2.0, 1.0])
        sleeps, logs = [], []
        self.assertEqual(timing.wait_for_load(1.5, 100, poll=30, log=logs.append, load=lambda: next(values),
                                              sleep=sleeps.append), 1.0)
        self.assertEqual(len(sleeps), 2)
        self.assertTrue(all(0 < s <= 30 for s in sleeps))
        self.assertEqual(len(logs), 2)

    def test_wait_for_load_runs_anyway(self):
        logs = []
        self.assertEqual(timing.wait_for_load(1.5, 0.05, poll=0.01, log=logs.append, load=lambda: 9.0), 9.0)
        self.assertIn("running anyway", logs[-1])


class Timed(unittest.TestCase):
    def test_timed(self):
        value, seconds = timing.timed(lambda x: time.sleep(0.02) or x * 2, 21)
        self.assertEqual(value, 42)
        self.assertGreaterEqual(seconds, 0.02)
        self.assertLess(seconds, 2)

    def test_rate(self):
        self.assertEqual(timing.rate(100, 2.0), 50)
        self.assertGreater(timing.rate(1, 0), 0)


if __name__ == "__main__":
    unittest.main()
