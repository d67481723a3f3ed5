# SPDX-License-Identifier: Apache-2.0
"""Processes the benchmarks start, and stop again by PID.

Every daemon and job is started in a session of its own (a Ctrl-C on the
terminal reaches only the benchmark, which then stops them itself), stopped
with SIGTERM to its PID and SIGKILL after a timeout. Things to stop at the
end are registered; stop_all() stops them newest first and goes on after a
failure. install_signal_handlers() turns SIGTERM and SIGHUP into
KeyboardInterrupt, so that the same finally blocks run as for a Ctrl-C.
"""

import os
import shutil
import signal
import subprocess
import time

from . import mounts
from .common import BenchError, log

LIVE = []  # things with a stop() method, to stop on exit


def register(thing):
    LIVE.append(thing)
    return thing


def unregister(thing):
    if thing in LIVE:
        LIVE.remove(thing)


def stop_all():
    """Stops every registered thing, newest first; a failure is logged and the rest still stopped."""
    for thing in list(reversed(LIVE)):
        try:
            thing.stop()
        except Exception as e:  # keep stopping the others
            log(f"cleanup: {e}")
        unregister(thing)


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGHUP)):
    """SIGTERM and SIGHUP raise KeyboardInterrupt("signal N"), as Ctrl-C does."""
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in signals:
        signal.signal(s, on_signal)
    return on_signal


def start_logged(cmd, log_path, env=None, cwd=None):
    """Starts cmd in a session of its own, stdout and stderr into log_path; returns the Popen."""
    with open(log_path, "w") as lf:
        return subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def wait_until(done, timeout, what, check=None, poll=0.05, detail=None):
    """Polls done() until it is true; check() (which raises if what we wait for died) before
    each poll. BenchError "WHAT after T s" + detail() once timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    while not done():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise BenchError(f"{what} after {timeout:g} s{detail() if detail else ''}")
        time.sleep(poll)


def stop_process(proc, name="", timeout=20, kill_timeout=10):
    """Stops a child started by us: SIGTERM to its PID, SIGKILL if it is still there after
    timeout s. Returns its exit status (negative: the signal), None if it could not be reaped."""
    if proc is None:
        return None
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{name or proc.args[0]}: PID {proc.pid} ignored SIGTERM for {timeout:g} s; SIGKILL")
                proc.kill()
                proc.wait(timeout=kill_timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        log(f"{name or proc.args[0]}: PID {proc.pid} still there after SIGKILL")
        return None
    return proc.returncode


def reap(proc, timeout):
    """Waits up to timeout s for a child that ends by itself, then SIGKILLs it."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def cmdline(pid):
    """The raw /proc/PID/cmdline (arguments separated by NUL), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def stop_pid(pid, marker=None, timeout=10, name=""):
    """Stops a process that is not (or no longer) our child, by PID: SIGTERM, SIGKILL after
    timeout s. With marker (bytes or str), only if its command line still contains marker
    (the PID may have been reused). Returns True if it was ours and is gone now."""
    if marker is not None:
        if isinstance(marker, str):
            marker = marker.encode()
        line = cmdline(pid)
        if line is None or marker not in line:
            return False
    if not pid_alive(pid):
        return True
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                log(f"{name or pid}: PID {pid} ignored SIGTERM for {timeout:g} s; SIGKILL")
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                break
            time.sleep(0.05)
    except ProcessLookupError:
        pass
    return not pid_alive(pid)


def children_of(pid):
    """Direct children of pid, from /proc/PID/task/TID/children: reads nothing of unrelated
    processes (a /proc/PID/stat read of a process stuck in the kernel can block the reader)."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def descendants(pid):
    """Every process below pid (children, their children, ...)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children_of(p):
            out.append(c)
            todo.append(c)
    return out


def cleanup(root, keep=False):
    """The end of every run: stop_all(), then remove the temporary directory root unless
    something is still mounted below it (or keep). Returns the mount points left."""
    stop_all()
    left = mounts.mounts_under(root)
    if left:
        log(f"still mounted, not removing {root}: {left}")
    elif not keep:
        shutil.rmtree(root, ignore_errors=True)
    return left


def run_guarded(root, keep, body):
    """Runs body(); Ctrl-C, SIGTERM (install_signal_handlers) and BenchError end it with a
    log line. Always cleanup(root, keep). True if body returned."""
    try:
        body()
        return True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
    except BenchError as e:
        log(f"error: {e}")
    finally:
        cleanup(root, keep=keep)
    return False
