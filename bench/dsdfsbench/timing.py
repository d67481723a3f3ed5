# SPDX-License-Identifier: Apache-2.0
"""Timing and waiting for a quiet machine: CPU busy fraction, load average, timed calls."""

import time

PROC_STAT = "/proc/stat"
PROC_LOADAVG = "/proc/loadavg"


def cpu_times(path=PROC_STAT):
    """(all jiffies, idle + iowait jiffies) of all CPUs together, from the first line of /proc/stat."""
    with open(path) as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def cpu_busy(interval, path=PROC_STAT):
    """Fraction of all CPUs busy (not idle or iowait) over interval seconds."""
    t0, i0 = cpu_times(path)
    time.sleep(interval)
    t1, i1 = cpu_times(path)
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def quiet(max_wait, limit, first=0.2, then=0.5, sample=cpu_busy):
    """Waits up to max_wait s until the CPUs are at most limit busy: one sample over first
    seconds, then samples over then seconds while still busier. Returns the last busy fraction
    (what a report counts); never raises for a busy machine."""
    deadline = time.monotonic() + max_wait
    busy = sample(first)
    while busy > limit and time.monotonic() < deadline:
        busy = sample(then)
    return busy


def loadavg(path=PROC_LOADAVG):
    """The 1-minute load average."""
    with open(path) as f:
        return float(f.read().split()[0])


def wait_for_load(max_load, max_wait, poll=30, log=None, load=loadavg, sleep=time.sleep):
    """Waits up to max_wait s, polling every poll s, for the load average to fall below
    max_load; returns the last one (runs anyway after max_wait: the caller reports it)."""
    value = load()
    deadline = time.monotonic() + max_wait
    while value >= max_load and time.monotonic() < deadline:
        if log:
            log(f"load average {value:.2f} >= {max_load}: waiting (up to {deadline - time.monotonic():.0f} s more)")
        sleep(min(poll, max(0.0, deadline - time.monotonic())))
        value = load()
    if value >= max_load and log:
        log(f"load average still {value:.2f}: running anyway (the report says so)")
    return value


def timed(fn, *args, **kw):
    """(fn(*args, **kw), seconds it took on the monotonic clock)."""
    t0 = time.monotonic()
    value = fn(*args, **kw)
    return value, time.monotonic() - t0


def rate(count, seconds):
    """count / seconds, with a zero or negative interval counted as one nanosecond."""
    return count / max(seconds, 1e-9)
