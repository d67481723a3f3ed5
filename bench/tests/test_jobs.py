# SPDX-License-Identifier: Apache-2.0
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from dsdfsbench import jobs
from dsdfsbench.common import BenchError


def quiet_log():
    """The helpers log to stderr; keep the test output clean."""
    return contextlib.redirect_stderr(io.StringIO())


class StartStop(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.log = os.path.join(self.tmp.name, "log")
        self.procs = []

    def tearDown(self):
        for p in self.procs:  # whatever a failed test left
            if p.poll() is None:
                p.kill()
                p.wait()
        self.tmp.cleanup()

    def start(self, cmd):
        p = jobs.start_logged(cmd, self.log)
        self.procs.append(p)
        return p

    def test_sleep_stopped_by_pid(self):
        p = self.start(["sleep", "60"])
        self.assertEqual(os.getsid(p.pid), p.pid)  # a session of its own
        self.assertTrue(jobs.pid_alive(p.pid))
        self.assertEqual(jobs.stop_process(p, "sleep", timeout=5), -signal.SIGTERM)
        self.assertFalse(jobs.pid_alive(p.pid))
        with self.assertRaises(ProcessLookupError):
            os.kill(p.pid, 0)  # reaped: nothing left behind

    def test_sigterm_ignored_then_sigkill(self):
        p = self.start(["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"])
        jobs.wait_until(lambda: os.path.getsize(self.log) > 0, 5, "no ready line")
        with quiet_log() as err:
            self.assertEqual(jobs.stop_process(p, "stubborn", timeout=0.3), -signal.SIGKILL)
        self.assertIn("ignored SIGTERM", err.getvalue())
        self.assertFalse(jobs.pid_alive(p.pid))

    def test_stop_of_an_ended_process(self):
        p = self.start(["true"])
        p.wait()
        self.assertEqual(jobs.stop_process(p), 0)
        self.assertIsNone(jobs.stop_process(None))

    def test_output_goes_to_the_log(self):
        p = self.start(["sh", "-c", "echo out; echo err >&2"])
        p.wait()
        with open(self.log) as f:
            self.assertEqual(sorted(f.read().split()), ["err", "out"])

    def test_reap(self):
        self.assertEqual(jobs.reap(self.start(["true"]), 5), 0)
        self.assertEqual(jobs.reap(self.start(["sleep", "60"]), 0.1), -signal.SIGKILL)


class NotOurChild(unittest.TestCase):
    """A process whose parent is gone (as a rank whose mpirun was killed), stopped by PID."""

    def orphan(self, arg):
        out = subprocess.run(["sh", "-c", f"sleep {arg} >/dev/null 2>&1 & echo $!"], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
        pid = int(out)
        self.addCleanup(self.kill, pid)
        return pid

    @staticmethod
    def kill(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def test_stop_pid_with_marker(self):
        pid = self.orphan("61.25")
        self.assertTrue(jobs.pid_alive(pid))
        self.assertIn(b"61.25", jobs.cmdline(pid))
        self.assertTrue(jobs.stop_pid(pid, marker="61.25", timeout=5))
        self.assertFalse(jobs.pid_alive(pid))

    def test_stop_pid_leaves_a_process_without_the_marker(self):
        pid = self.orphan("61.5")
        self.assertFalse(jobs.stop_pid(pid, marker="not-this-one"))
        self.assertTrue(jobs.pid_alive(pid))

    def test_gone_pid(self):
        p = subprocess.Popen(["true"])
        p.wait()
        self.assertFalse(jobs.pid_alive(p.pid))
        self.assertIsNone(jobs.cmdline(p.pid))
        self.assertFalse(jobs.stop_pid(p.pid, marker="true"))
        self.assertTrue(jobs.stop_pid(p.pid))

    def test_zombie_is_not_alive(self):
        p = subprocess.Popen(["true"])
        self.addCleanup(p.wait)
        deadline = time.monotonic() + 5
        while jobs.pid_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertFalse(jobs.pid_alive(p.pid))  # exited, not yet reaped
        os.kill(p.pid, 0)  # the zombie is still there


class Tree(unittest.TestCase):
    def test_descendants(self):
        p = jobs.start_logged(["sh", "-c", "sleep 60 & sleep 60 & wait"], os.devnull)
        try:
            # Both children there and past their exec (a child between fork and exec, or
            # in exec, can show the shell's command line or an empty one).
            def execed(k):
                line = jobs.cmdline(k) or b""
                return b"sleep" in line and b"wait" not in line
            jobs.wait_until(lambda: [execed(k) for k in jobs.descendants(p.pid)] == [True, True], 5, "no children")
            kids = jobs.descendants(p.pid)
            self.assertEqual(jobs.children_of(p.pid), kids)
            for k in kids:
                self.assertIn(b"sleep", jobs.cmdline(k))
        finally:
            kids = jobs.descendants(p.pid)
            for k in kids:
                os.kill(k, signal.SIGTERM)
            jobs.stop_process(p, timeout=5)
        self.assertEqual(jobs.descendants(p.pid), [])
        self.assertEqual(jobs.children_of(-1), [])


class Registry(unittest.TestCase):
    class Thing:
        def __init__(self, order, fail=False):
            self.order, self.fail = order, fail

        def stop(self):
            self.order.append(self)
            if self.fail:
                raise RuntimeError("cannot stop")

    def test_stop_all_newest_first_and_past_failures(self):
        order = []
        a, b, c = self.Thing(order), self.Thing(order, fail=True), self.Thing(order)
        for t in (a, b, c):
            self.assertIs(jobs.register(t), t)
        with quiet_log() as err:
            jobs.stop_all()
        self.assertEqual(order, [c, b, a])
        self.assertIn("cannot stop", err.getvalue())
        self.assertEqual(jobs.LIVE, [])

    def test_unregister(self):
        t = jobs.register(self.Thing([]))
        jobs.unregister(t)
        jobs.unregister(t)  # twice is fine
        self.assertNotIn(t, jobs.LIVE)

    def test_cleanup_removes_the_directory(self):
        d = tempfile.mkdtemp()
        order = []
        jobs.register(self.Thing(order))
        self.assertEqual(jobs.cleanup(d), [])
        self.assertEqual(len(order), 1)
        self.assertFalse(os.path.exists(d))

    def test_cleanup_keep(self):
        with tempfile.TemporaryDirectory() as d:
            jobs.cleanup(d, keep=True)
            self.assertTrue(os.path.isdir(d))


class Waiting(unittest.TestCase):
    def test_wait_until_timeout(self):
        with self.assertRaises(BenchError) as cm:
            jobs.wait_until(lambda: False, 0.1, "thing: not ready", poll=0.01)
        self.assertEqual(str(cm.exception), "thing: not ready after 0.1 s")
        with self.assertRaises(BenchError) as cm:
            jobs.wait_until(lambda: False, 0.05, "thing", poll=0.01, detail=lambda: "; log: x")
        self.assertEqual(str(cm.exception), "thing after 0.05 s; log: x")

    def test_wait_until_check_raises(self):
        def check():
            raise BenchError("daemon died")
        with self.assertRaises(BenchError) as cm:
            jobs.wait_until(lambda: False, 10, "x", check=check)
        self.assertEqual(str(cm.exception), "daemon died")


class Signals(unittest.TestCase):
    def test_sigterm_and_sighup_raise_keyboard_interrupt(self):
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            jobs.install_signal_handlers()
            for s in (signal.SIGTERM, signal.SIGHUP):
                with self.assertRaises(KeyboardInterrupt) as cm:
                    os.kill(os.getpid(), s)
                    time.sleep(1)  # the handler runs before this ends
                self.assertEqual(str(cm.exception), f"signal {int(s)}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def test_a_program_cleans_up_on_sigterm(self):
        """A child that registers a sleep and waits: SIGTERM to it stops the sleep, by PID."""
        bench = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (
            "import sys, time\n"
            f"sys.path.insert(0, {bench!r})\n"
            "from dsdfsbench import jobs\n"
            "class S:\n"
            "    def __init__(self): self.p = jobs.start_logged(['sleep', '60'], '/dev/null')\n"
            "    def stop(self): jobs.stop_process(self.p, timeout=5)\n"
            "jobs.install_signal_handlers()\n"
            "s = jobs.register(S())\n"
            "try:\n"
            "    print(s.p.pid, flush=True)\n"
            "    time.sleep(60)\n"
            "except KeyboardInterrupt as e:\n"
            "    print(e, flush=True)\n"
            "finally:\n"
            "    jobs.stop_all()\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            sleep_pid = int(p.stdout.readline())
            self.assertTrue(jobs.pid_alive(sleep_pid))
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.stdout.readline().strip(), f"signal {int(signal.SIGTERM)}")
            self.assertEqual(p.wait(timeout=10), 0)
            self.assertFalse(jobs.pid_alive(sleep_pid))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()


if __name__ == "__main__":
    unittest.main()
