# SPDX-License-Identifier: Apache-2.0
"""The programs load the package from wherever they are started; dirops.py's worker."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ["run.py", "cluster.py", "dirops.py", "faults.py", "stage_out.py", "workloads.py", "scaling.py"]


class Help(unittest.TestCase):
    def test_help_from_another_directory(self):
        for prog in PROGRAMS:
            with self.subTest(prog=prog):
                path = os.path.join(BENCH, prog)
                self.assertTrue(os.access(path, os.X_OK), f"{prog} is not executable")
                r = subprocess.run([sys.executable, path, "--help"], cwd="/", stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, timeout=30,
                                   env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"usage: bench/{prog}", r.stdout)
                self.assertIn("--no-doc", r.stdout)


class DiropsWorker(unittest.TestCase):
    def test_worker_phases_on_a_plain_directory(self):
        with tempfile.TemporaryDirectory() as d:
            parent = os.path.join(d, "parent")
            ctl = os.path.join(d, "ctl")
            os.mkdir(parent)
            os.mkdir(ctl)
            go = os.path.join(ctl, "go")
            p = subprocess.Popen([sys.executable, os.path.join(BENCH, "dirops.py"), "--worker", parent, "w.", "5",
                                  go, ctl, "0"], env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
            try:
                for phase in ["mkdir", "chmod", "rename", "rmdir"]:
                    # published whole, as the bench does: the worker reads the file
                    # as soon as the name exists
                    with open(go + ".tmp", "w") as f:
                        f.write(repr(time.monotonic()))
                    os.rename(go + ".tmp", go + "." + phase)
                    done = os.path.join(ctl, f"0.{phase}")
                    deadline = time.monotonic() + 20
                    while not os.path.exists(done):
                        self.assertIsNone(p.poll(), "worker ended early")
                        self.assertLess(time.monotonic(), deadline, f"{phase} not done")
                        time.sleep(0.01)
                    with open(done) as f:
                        r = json.load(f)
                    self.assertEqual(len(r["lat"]), 5)
                    self.assertLessEqual(r["start"], r["end"])
                    if phase == "mkdir":
                        self.assertEqual(sorted(os.listdir(parent)), [f"w.{i}" for i in range(5)])
                    if phase == "rename":
                        self.assertEqual(sorted(os.listdir(parent)), [f"w.{i}.moved" for i in range(5)])
                self.assertEqual(p.wait(timeout=10), 0)
                self.assertEqual(os.listdir(parent), [])
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    unittest.main()
