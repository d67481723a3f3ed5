#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/scaling.py: aggregate rates with every rank working at once, for N = 1, 2, 4 (and 8) ranks.

Starts one dsdfs job per N under mpirun on this machine (UCX on loopback:
scripts/loopback-env.sh; the job machinery of bench/dsdfsbench/mpijob.py),
all alive at once, and runs one worker process per rank, on that rank's
mount, all released at the same moment, through these phases:

  create_shared  create + write 4 KiB + close of --files files each, all in
                 ONE directory (made on rank 0 before)
  create_own     the same in a directory of each rank's own
  stat_next      stat of the --files files rank r+1 made in create_own (its
                 own files when N=1)
  read_next      open + read 4 KiB + close of those files
  append_shared  --appends 64-byte appends each, through one O_APPEND fd, to
                 ONE file owned by rank 0 (checked afterwards: exactly
                 N x appends x 64 bytes)

The aggregate rate is all workers' operations over the wall time from the
first start to the last end; the ideal is N times the rate of N=1. Each
repetition runs every N (order turned round each repetition). N=8 only where
the machine has 8 CPUs. RPCs per operation come from the ranks' counters.

Writes a markdown section between <!-- bench/scaling:results:begin --> and
...:end --> of --doc (docs/performance.md; --no-doc only prints) and a plot
of rate against N with the ideal line (--plot, PNG, drawn with Debian's
python3-matplotlib by /usr/bin/python3; skipped with a note if it is not
installed). Needs root (FUSE mounts with allow_other) and mpirun. Every job
is stopped by the PID of its mpirun on exit, failure, Ctrl-C or SIGTERM.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, jobs, phases, timing  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, DEFAULT_LAUNCHER, REPO, BenchError, log, run_main, set_log, tail  # noqa: E402
from dsdfsbench.facts import cluster_facts  # noqa: E402
from dsdfsbench.mpijob import Job, fuse_by_op, loopback_env, rpcs_by_op  # noqa: E402
from dsdfsbench.tables import breakdown, fmt_x, header, median, median_range, ratio, row  # noqa: E402

PROG = "bench/scaling.py"
DOC_TOOL = "bench/scaling"
DEFAULT_PLOT = os.path.join(REPO, "docs", "img", "scaling.png")
PHASES = [
    ("create_shared", "create + 4 KiB + close, one shared directory"),
    ("create_own", "create + 4 KiB + close, a directory per rank"),
    ("stat_next", "stat of the next rank's files"),
    ("read_next", "open + read 4 KiB + close of the next rank's files"),
    ("append_shared", "64-byte appends to one file of rank 0 (one fd each)"),
]
BLOCK = b"s" * 4096
RECORD = b"a" * 63 + b"\n"


def names(root, tag):
    return {"shared": os.path.join(root, f"shared{tag}"), "own": lambda r: os.path.join(root, f"own{tag}-{r}"),
            "append": os.path.join(root, f"append{tag}")}


def worker(mnt, rank, n, files, appends, tag, ctl):
    """One rank's worker: every phase on its own mount, released by the controller."""
    p = names(mnt, tag)
    mine, nxt = p["own"](rank), p["own"]((rank + 1) % n)

    def create(d):
        for i in range(files):
            fd = os.open(os.path.join(d, f"r{rank}-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
            if os.write(fd, BLOCK) != len(BLOCK):
                raise SystemExit("short write")
            os.close(fd)
        return files

    def stat():
        for i in range(files):
            os.stat(os.path.join(nxt, f"r{(rank + 1) % n}-{i}"))
        return files

    def read():
        for i in range(files):
            fd = os.open(os.path.join(nxt, f"r{(rank + 1) % n}-{i}"), os.O_RDONLY | os.O_CLOEXEC)
            got = os.read(fd, 8192)
            os.close(fd)
            if got != BLOCK:
                raise SystemExit(f"read {len(got)} bytes of the next rank's file {i}, expected its 4 KiB")
        return files

    def append():
        fd = os.open(p["append"], os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        for _ in range(appends):
            if os.write(fd, RECORD) != len(RECORD):
                raise SystemExit("short append")
        os.close(fd)
        return appends

    ops = {"create_shared": lambda: create(p["shared"]), "create_own": lambda: create(mine),
           "stat_next": stat, "read_next": read, "append_shared": append}
    for phase, _ in PHASES:
        phases.wait_go(ctl, phase)
        t0 = time.monotonic()
        count = ops[phase]()
        phases.publish(ctl, rank, phase, {"start": t0, "end": time.monotonic(), "ops": count})


class Bench:
    def __init__(self, o, root):
        self.o = o
        self.root = root
        self.res = {}  # (phase, n) -> [{"rate", "rpcs_per_op"}]
        self.busy = []

    def one(self, j, rep):
        """Every phase once on job j, all ranks at once."""
        o, n = self.o, j.n
        tag = f"-{rep}"
        p = names(j.mnt(0), tag)
        os.mkdir(p["shared"])
        for r in range(n):
            os.mkdir(names(j.mnt(r), tag)["own"](r))
        open(p["append"], "w").close()
        ctl = os.path.join(j.dir, f"ctl{tag}")
        os.makedirs(ctl)
        procs = []
        try:
            for r in range(n):
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", j.mnt(r), str(r), str(n),
                       str(o.files), str(o.appends), tag, ctl]
                procs.append(subprocess.Popen(cmd, start_new_session=True,
                                              env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1")))
            for phase, _ in PHASES:
                self.busy.append(timing.quiet(3, 0.25, first=0.3, then=0.5))
                before = [j.stats(r) for r in range(n)]
                phases.release(ctl, phase)
                try:
                    got = phases.collect(ctl, phase, n, procs, o.phase_timeout, check=j.check,
                                         what=f"N={n} rep {rep}")
                except BenchError as e:
                    raise BenchError(f"{e}; job log:\n{tail(j.log_path, 30)}") from e
                ops = sum(x["ops"] for x in got)
                wall = max(x["end"] for x in got) - min(x["start"] for x in got)
                by_op, fuse = {}, {}
                for r in range(n):
                    after = j.stats(r)
                    for into, got in ((by_op, rpcs_by_op(before[r], after)), (fuse, fuse_by_op(before[r], after))):
                        for k, v in got.items():
                            into[k] = into.get(k, 0) + v
                self.res.setdefault((phase, n), []).append(
                    {"rate": ops / wall, "rpcs_per_op": sum(by_op.values()) / ops, "by_op": by_op,
                     "fuse": fuse, "ops": ops})
            for pr in procs:
                if pr.wait(timeout=30) != 0:
                    raise BenchError(f"N={n} rep {rep}: a worker exited with {pr.returncode}")
        finally:
            for pr in procs:
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()
        size = os.stat(p["append"]).st_size
        if size != n * o.appends * len(RECORD):
            raise BenchError(f"N={n}: the shared file has {size} bytes after the appends, "
                             f"expected {n * o.appends * len(RECORD)}")
        listed = len(os.listdir(p["shared"]))
        if listed != n * o.files:
            raise BenchError(f"N={n}: {listed} names in the shared directory, expected {n * o.files}")
        log(f"  N={n} rep {rep}: " + ", ".join(f"{ph} {self.res[(ph, n)][-1]['rate']:.0f}/s" for ph, _ in PHASES))


def shown(counts, ops):
    """The kinds worth listing: at least 0.005 per operation (stray requests at a phase's start
    or end are left out, of the total too)."""
    return {k: v for k, v in counts.items() if ops and v / ops >= 0.005}


def report(b, o, facts, elapsed, plot_note):
    L = [f"Run of `{PROG} {' '.join(o.argv)}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
         f"{elapsed / 60:.1f} min; {o.reps} repetitions, medians (range); UCX_TLS={o.tls}; "
         f"{o.files} files and {o.appends} appends per rank and phase; {os.cpu_count()} CPUs shared by "
         f"all ranks, their daemons and the workers.", ""]
    L += [f"- {k}: {v}" for k, v in facts]
    if b.busy:
        L.append(f"- CPUs busy before a phase (other processes): median {100 * median(b.busy):.0f}%, "
                 f"max {100 * max(b.busy):.0f}%")
    L.append("")
    cols = [("workload", "l"), ("N", "r"), ("ops/s, all ranks", "r"), ("ideal (N x N=1)", "r"),
            ("/ ideal", "r"), ("per rank", "r"), ("RPCs per op (last repetition), by kind", "l"),
            ("FUSE requests per op (last repetition; FORGETs left out)", "l")]
    L += header(cols)
    for phase, label in PHASES:
        base = median([x["rate"] for x in b.res.get((phase, 1), [])])
        for n in o.ns:
            recs = b.res.get((phase, n))
            if not recs:
                continue
            rate = median([x["rate"] for x in recs])
            ideal = base * n if base else None
            L.append(row([label if n == o.ns[0] else "", n, median_range([x["rate"] for x in recs]),
                          f"{ideal:,.0f}" if ideal else "n/a", fmt_x(ratio(rate, ideal)),
                          f"{rate / n:,.0f}", breakdown(shown(recs[-1]["by_op"], recs[-1]["ops"]), recs[-1]["ops"]),
                          breakdown(shown(recs[-1].get("fuse", {}), recs[-1]["ops"]), recs[-1]["ops"])]))
    L += ["", plot_note]
    return "\n".join(L) + "\n"


PLOT_SCRIPT = r'''
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = json.load(sys.stdin)
ns = d["ns"]
cols = 3
rows = (len(d["phases"]) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
flat = [ax for line in axes for ax in line]
for ax, (phase, label) in zip(flat, d["phases"]):
    rates = [d["rates"].get(f"{phase}|{n}") for n in ns]
    base = rates[0]
    ideal = [base * n for n in ns] if base else []
    ax.plot(ns, rates, "o-", label="measured")
    if ideal:
        ax.plot(ns, ideal, "--", color="gray", label="ideal (N x N=1)")
    shown = [v for v in rates + ideal if v]
    if shown and max(shown) > 20 * min(shown):
        ax.set_yscale("log")  # remote rates far below a local N=1
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(label, fontsize=9)
    ax.set_xlabel("ranks N")
    ax.set_xticks(ns)
    ax.set_ylabel("operations/s, all ranks", fontsize=8)
    ax.grid(alpha=0.3)
for ax in flat[len(d["phases"]):]:
    ax.axis("off")
flat[0].legend(fontsize=8)
fig.suptitle(d["title"], fontsize=10)
fig.tight_layout()
fig.savefig(d["out"], dpi=90)
'''


def plot(b, o):
    """The PNG of rate against N; returns the line the report prints about it."""
    py = "/usr/bin/python3"
    if not os.access(py, os.X_OK) or subprocess.run([py, "-c", "import matplotlib"],
                                                     capture_output=True).returncode != 0:
        return "No plot: Debian's python3-matplotlib is not installed (apt-get install python3-matplotlib)."
    os.makedirs(os.path.dirname(os.path.abspath(o.plot)), exist_ok=True)
    data = {"ns": o.ns, "phases": PHASES, "out": o.plot,
            "title": f"dsdfs, N ranks on one {os.cpu_count()}-CPU machine, UCX_TLS={o.tls}",
            "rates": {f"{ph}|{n}": median([x["rate"] for x in recs]) for (ph, n), recs in b.res.items()}}
    r = subprocess.run([py, "-c", PLOT_SCRIPT], input=json.dumps(data), text=True, capture_output=True)
    if r.returncode != 0:
        return f"No plot: matplotlib failed: {r.stderr.strip()[-300:]}"
    rel = os.path.relpath(o.plot, os.path.dirname(os.path.abspath(o.doc)))
    return f"![aggregate rate against N, with the ideal line]({rel})"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer files and appends, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--files", type=int, help="files per rank and phase (default 1000, --quick 300)")
    ap.add_argument("--appends", type=int, help="appends per rank (default 2000, --quick 500)")
    ap.add_argument("--ranks", default="", help="comma list of N (default 1,2,4, and 8 with 8 CPUs)")
    ap.add_argument("--tls", default="tcp", help="UCX_TLS of the jobs (default tcp)")
    ap.add_argument("--launcher", default=DEFAULT_LAUNCHER, help="dsdfs-launch (default build/launcher/dsdfs-launch)")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where the jobs' stores go")
    ap.add_argument("--phase-timeout", type=float, default=600, help="seconds a phase may take (600)")
    ap.add_argument("--doc", default=DEFAULT_DOC, help="markdown file to update")
    ap.add_argument("--plot", default=DEFAULT_PLOT, help="PNG to write (default docs/img/scaling.png)")
    ap.add_argument("--no-doc", action="store_true", help="print only: neither the doc nor the plot")
    o = ap.parse_args(argv)
    o.argv = argv
    o.launcher = os.path.abspath(o.launcher)  # the jobs run in their own directories
    o.reps = o.reps or (1 if o.quick else 3)
    o.files = o.files or (300 if o.quick else 1000)
    o.appends = o.appends or (500 if o.quick else 2000)
    try:
        o.ns = [int(x) for x in o.ranks.split(",") if x] or ([1, 2, 4] + ([8] if (os.cpu_count() or 1) >= 8 else []))
    except ValueError:
        ap.error("--ranks needs numbers, e.g. 1,2,4")
    if o.ns[0] != 1 or sorted(set(o.ns)) != o.ns:
        ap.error("--ranks must start with 1 and rise, e.g. 1,2,4")
    return o


def main(argv):
    set_log("scaling", elapsed=True)
    if argv[:1] == ["--worker"]:
        mnt, rank, n, files, appends, tag, ctl = argv[1:8]
        worker(mnt, int(rank), int(n), int(files), int(appends), tag, ctl)
        return 0
    o = parse_args(argv)
    if os.geteuid() != 0:
        raise BenchError("needs root (FUSE mounts with allow_other)")
    if not os.access(o.launcher, os.X_OK):
        raise BenchError(f"{o.launcher} is not an executable: build it (ninja -C build) or pass --launcher")
    jobs.install_signal_handlers()
    root = tempfile.mkdtemp(prefix="dsdfs-scaling.", dir=o.dir)
    started = time.monotonic()
    b = Bench(o, root)
    try:
        facts = cluster_facts(o.launcher, root)
        env = loopback_env()
        live = {n: jobs_start(root, n, o, env) for n in o.ns}
        for rep in range(o.reps):
            order = o.ns[rep % len(o.ns):] + o.ns[:rep % len(o.ns)]
            for n in order:
                b.one(live[n], rep)
    finally:
        jobs.cleanup(root)
    plot_note = "(no plot with --no-doc)" if o.no_doc else plot(b, o)
    text = report(b, o, facts, time.monotonic() - started, plot_note)
    print(text)
    if not o.no_doc:
        docs.write_section(o.doc, DOC_TOOL, "results", text, append_title="Scaling with ranks: results",
                           new_file="# dsdfs performance\n")
        log(f"wrote {o.doc} and {o.plot}")
    return 0


def jobs_start(root, n, o, env):
    return Job(root, f"n{n}", n, o.tls, None, env, o.launcher).start()


if __name__ == "__main__":
    run_main(PROG, main, sys.argv[1:])
