#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/dirops.py: directory mutation rates of an idle 3-rank job on this machine.

Starts one dsdfs job under mpirun (3 ranks, UCX over TCP on loopback:
scripts/loopback-env.sh; the job machinery it shares with bench/cluster.py,
bench/dsdfsbench/mpijob.py) and measures,
for --reps repetitions, four phases on fresh names:

  mkdir    mkdir of COUNT new directories
  chmod    chmod of each (0700), a directory attribute change
  rename   rename of each to a new name in the same parent
  rmdir    rmdir of each renamed directory

each issued two ways:

  one      one process on rank --from-rank (default 1: not the coordinator,
           so every mutation crosses the network to rank 0 and back)
  all      --procs processes on every rank at once (default 2 per rank, 6 in
           all), all in ONE shared parent directory (each its own names), as a
           metadata benchmark's shared-directory phases do; a process starts
           a phase when every process has finished the previous one

and prints, per phase and way, the aggregate rate (operations of all
processes / wall time from the first start to the last end) and the median
latency of one call (ms/op), as medians over the repetitions with their
range. Every directory mutation is ordered by the coordinator and applied on
every rank before the call returns, so "all" measures that serialisation too.

Targets (issue 8): >= 1,000 renames/s and >= 1,000 rmdirs/s.

Writes a markdown section between <!-- bench/dirops:SECTION:begin --> and
<!-- bench/dirops:SECTION:end --> of --doc (default docs/performance.md,
SECTION "results" unless --section; --no-doc only prints). --launcher runs
another build (e.g. a copy of an older one, to measure before/after on the
same machine). Needs root (FUSE mounts with allow_other) and mpirun. Every
job is stopped by the PID of its mpirun (then its ranks by PID, then any
mount left is unmounted) on exit, failure, Ctrl-C or SIGTERM.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, jobs, phases, tables, timing  # noqa: E402
from dsdfsbench.common import DEFAULT_LAUNCHER, DEFAULT_DOC, BenchError, log, set_log, tail  # noqa: E402
from dsdfsbench.facts import cluster_facts  # noqa: E402
from dsdfsbench.mpijob import Job, loopback_env  # noqa: E402
from dsdfsbench.tables import fmt_rate, min_max as fmt_range  # noqa: E402

PROG = "bench/dirops.py"
DOC_TOOL = "bench/dirops"  # the doc's markers keep the name they were written with
PHASES = ["mkdir", "chmod", "rename", "rmdir"]
WAYS = ["one", "all"]
TARGETS = {"rename": 1000.0, "rmdir": 1000.0}


# ------------------------------------------------------------------ worker
#
# `bench/dirops.py --worker PARENT PREFIX COUNT START_FILE DONE_DIR ID` runs in its
# own process: for each phase it waits for START_FILE.<phase> (written by the
# parent once every worker has finished the previous phase), then does COUNT
# operations on PARENT/PREFIX<i>, and writes DONE_DIR/<ID>.<phase> with its
# start and end (CLOCK_MONOTONIC, shared by all processes of the machine) and
# the latency of every call.

def worker(parent, prefix, count, start_file, done_dir, wid):
    names = [os.path.join(parent, f"{prefix}{i}") for i in range(count)]
    moved = [os.path.join(parent, f"{prefix}{i}.moved") for i in range(count)]
    ops = {
        "mkdir": lambda i: os.mkdir(names[i], 0o755),
        "chmod": lambda i: os.chmod(names[i], 0o700),
        "rename": lambda i: os.rename(names[i], moved[i]),
        "rmdir": lambda i: os.rmdir(moved[i]),
    }
    ctl = os.path.dirname(start_file)
    for phase in PHASES:
        phases.wait_go(ctl, phase)
        op = ops[phase]
        lat = []
        t0 = time.monotonic()
        for i in range(count):
            a = time.monotonic()
            op(i)
            lat.append(time.monotonic() - a)
        phases.publish(done_dir, wid, phase, {"start": t0, "end": time.monotonic(), "lat": lat})


# ------------------------------------------------------------------- bench

class Run:
    """One repetition of one way: workers started, phases released one by one."""

    def __init__(self, job, way, rep, o):
        self.job, self.way, self.rep, self.o = job, way, rep, o
        self.dir = os.path.join(job.dir, f"ctl-{way}-{rep}")
        os.makedirs(self.dir)
        self.procs = []

    def start_workers(self):
        o, job = self.o, self.job
        parent_rel = f"{self.way}{self.rep}"
        # The shared parent exists before anyone starts (made on rank 0, seen by all).
        os.mkdir(os.path.join(job.mnt(0), parent_rel))
        ranks = [o.from_rank] if self.way == "one" else list(range(job.n))
        procs = 1 if self.way == "one" else o.procs
        wid = 0
        for r in ranks:
            for p in range(procs):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", os.path.join(job.mnt(r), parent_rel),
                       f"r{r}p{p}.", str(o.count), os.path.join(self.dir, "go"), self.dir, str(wid)]
                self.procs.append(subprocess.Popen(cmd, start_new_session=True))
                wid += 1
        return wid

    def phase(self, phase, nworkers):
        phases.release(self.dir, phase)
        what = f"{self.way} rep {self.rep}"
        try:
            res = phases.collect(self.dir, phase, nworkers, self.procs, self.o.phase_timeout,
                                 check=self.job.check, what=what)
        except BenchError as e:
            raise BenchError(f"{e}; job log:\n{tail(self.job.log_path, 30)}") from e
        start = min(x["start"] for x in res)
        end = max(x["end"] for x in res)
        lat = [v for x in res for v in x["lat"]]
        return {"ops": len(lat), "wall": end - start, "rate": len(lat) / (end - start),
                "ms_per_op": statistics.median(lat) * 1000.0, "mean_ms": statistics.mean(lat) * 1000.0,
                "max_ms": max(lat) * 1000.0}

    def finish(self):
        for p in self.procs:
            jobs.reap(p, timeout=30)
        self.procs = []

    def stop(self):
        """Kills the workers at once (a run cut short; registered with jobs while it lasts)."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs = []
        jobs.unregister(self)


def report(res, o, facts, elapsed, loads, busy):
    lines = []
    lines.append(f"{PROG}, {time.strftime('%Y-%m-%d %H:%M')}, {elapsed:.0f} s; "
                 f"3 ranks, UCX_TLS={o.tls}; {o.count} operations per process per phase, "
                 f"{o.reps} repetitions; `one`: 1 process on rank {o.from_rank}; "
                 f"`all`: {o.procs} processes on each rank, one shared parent directory.")
    lines.append("")
    for k, v in facts:
        lines.append(f"- {k}: {v}")
    lines.append(f"- load average: " + ", ".join(f"{w} {v:.2f}" for w, v in loads))
    lines.append(f"- CPUs busy before each run (other users of the machine): median {statistics.median(busy):.0%}, "
                 f"max {max(busy):.0%}")
    lines.append("")
    lines += tables.header([("operation", "l"), ("issued from", "l"), ("ops/s (median)", "r"), ("range", "l"),
                            ("ms/op (median of medians)", "r"), ("range", "l"), ("target", "l")])
    for phase in PHASES:
        for way in WAYS:
            rows = res.get(way, {}).get(phase, [])
            if not rows:
                continue
            rates = [r["rate"] for r in rows]
            ms = [r["ms_per_op"] for r in rows]
            target = TARGETS.get(phase)
            verdict = ""
            if target:
                verdict = f">= {target:.0f}/s: " + ("met" if statistics.median(rates) >= target else "NOT met")
            who = f"1 process, rank {o.from_rank}" if way == "one" else f"{o.procs} x 3 processes"
            lines.append(tables.row([phase, who, fmt_rate(statistics.median(rates)), fmt_range(rates),
                                     f"{statistics.median(ms):.2f}", fmt_range(ms, 2), verdict]))
    return "\n".join(lines) + "\n"


def write_doc(path, section, text):
    """Replaces the section's text in --doc; DocError if its markers are not there."""
    docs.write_section(path, DOC_TOOL, section, text)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        parent, prefix, count, start_file, done_dir, wid = sys.argv[2:8]
        worker(parent, prefix, int(count), start_file, done_dir, wid)
        return
    set_log("dirops", elapsed=True)
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=300, help="operations per process per phase (300)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each way (5)")
    ap.add_argument("--procs", type=int, default=2, help="processes per rank in the `all` way (2)")
    ap.add_argument("--from-rank", type=int, default=1, help="the rank of the `one` way (1)")
    ap.add_argument("--ways", default=",".join(WAYS), help="comma list of one,all")
    ap.add_argument("--tls", default="tcp", help="UCX_TLS of the job (tcp)")
    ap.add_argument("--launcher", default=DEFAULT_LAUNCHER,
                    help="the dsdfs-launch to measure (build/launcher/dsdfs-launch)")
    ap.add_argument("--phase-timeout", type=float, default=900, help="seconds a phase may take (900)")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where the temporary directory goes")
    ap.add_argument("--max-busy", type=float, default=0.25,
                    help="before each run, wait for the CPUs to be at most this busy (0.25)")
    ap.add_argument("--busy-wait", type=float, default=30, help="wait at most this long for it (s, 30)")
    ap.add_argument("--doc", default=DEFAULT_DOC, help="file with the markers")
    ap.add_argument("--section", default="results", help="marker name in --doc (results)")
    ap.add_argument("--no-doc", action="store_true", help="only print the results")
    ap.add_argument("--json", help="also write the raw figures to this file")
    o = ap.parse_args()
    o.ways = [w for w in o.ways.split(",") if w]
    for w in o.ways:
        if w not in WAYS:
            ap.error(f"--ways: one or all, not {w}")
    if not 0 <= o.from_rank < 3:
        ap.error("--from-rank: 0, 1 or 2")
    if os.geteuid() != 0:
        sys.exit(f"{PROG}: needs root (FUSE mounts with allow_other)")
    for tool in ("mpirun", "fusermount3"):
        if not shutil.which(tool):
            sys.exit(f"{PROG}: {tool} not found")
    launcher = os.path.abspath(o.launcher)
    if not os.access(launcher, os.X_OK):
        sys.exit(f"{PROG}: {launcher} not built (ninja -C build)")

    jobs.install_signal_handlers()

    loads = [("at start", timing.loadavg())]
    busy = []
    root = tempfile.mkdtemp(prefix="dsdfs-dirops.", dir=o.dir)
    res = {}
    t0 = time.monotonic()
    ok = False
    current = None
    try:
        facts = cluster_facts(launcher, root)
        if launcher != DEFAULT_LAUNCHER:
            # machine_facts names this tree's commit, which says nothing about another build.
            facts = [(k, v) if k != "dsdfs" else (k, v.split(", tree at")[0]) for k, v in facts]
        facts.append(("launcher", launcher))
        job = Job(root, "job", 3, o.tls, None, loopback_env(), launcher).start()
        for rep in range(o.reps):
            for way in o.ways:  # interleaved, so both see the same machine
                # The load average counts tasks blocked in the kernel too; CPU time is what matters here.
                busy.append(timing.quiet(o.busy_wait, o.max_busy))
                current = jobs.register(Run(job, way, rep, o))
                n = current.start_workers()
                for phase in PHASES:
                    r = current.phase(phase, n)
                    res.setdefault(way, {}).setdefault(phase, []).append(r)
                    log(f"rep {rep} {way:3} {phase:6}: {r['rate']:8.1f} ops/s, {r['ms_per_op']:7.2f} ms/op "
                        f"(mean {r['mean_ms']:.2f}, max {r['max_ms']:.1f})")
                current.finish()
                jobs.unregister(current)
        loads.append(("at end", timing.loadavg()))
        ok = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
    except BenchError as e:
        log(f"error: {e}")
    finally:
        # Workers of a run cut short first (registered last), then the job.
        jobs.cleanup(root)
    if not ok:
        sys.exit(1)
    text = report(res, o, facts, time.monotonic() - t0, loads, busy)
    print(text)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(res, f, indent=1)
    if not o.no_doc:
        try:
            write_doc(o.doc, o.section, text)
        except BenchError as e:
            sys.exit(f"{PROG}: {e}; printed only")
        log(f"results written to {o.doc} ({o.section})")


if __name__ == "__main__":
    main()
