# SPDX-License-Identifier: Apache-2.0
"""Worker processes released phase by phase through files, for the multi-rank benchmarks.

The controller writes CTL/go.PHASE (a start time on the monotonic clock, a
little ahead so that every worker is polling by then), whole, by rename; each
worker waits for it, spins until that time, runs the phase, and publishes
CTL/WID.PHASE (JSON: start, end and whatever the phase measured), whole, by
rename. A file seen by its name is always complete (a worker that saw the
name before the bytes once read an empty start time).
"""

import json
import os
import time

from .common import BenchError


def _publish(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def wait_go(ctl, phase, timeout=600):
    """Worker side: blocks until the controller releases `phase`, then until its start time."""
    go = os.path.join(ctl, f"go.{phase}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit(f"no start signal for {phase} after {timeout} s")
        time.sleep(0.002)
    with open(go) as f:
        t_start = float(f.read())
    while time.monotonic() < t_start:
        pass


def publish(ctl, wid, phase, result):
    """Worker side: the phase's result (a dict with at least start and end), whole."""
    _publish(os.path.join(ctl, f"{wid}.{phase}"), json.dumps(result))


def release(ctl, phase, lead=0.3):
    """Controller side: every worker starts `phase` lead seconds from now."""
    _publish(os.path.join(ctl, f"go.{phase}"), repr(time.monotonic() + lead))


def collect(ctl, phase, nworkers, procs, timeout, check=None, what=""):
    """Controller side: the results of every worker for `phase`, in worker order.

    BenchError if a worker exits non-zero, check() raises (a job died), or
    the phase is not done within timeout seconds."""
    done = [os.path.join(ctl, f"{w}.{phase}") for w in range(nworkers)]
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(d) for d in done):
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise BenchError(f"{what}: a worker failed in {phase} (exit {p.returncode})")
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: {phase} not done after {timeout} s")
        time.sleep(0.01)
    out = []
    for d in done:
        with open(d) as f:
            out.append(json.load(f))
    return out
