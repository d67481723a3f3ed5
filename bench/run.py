#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/run.py: dsdfs against the file system under its store, in one run.

Mounts dsdfs (one mount per --threads value) and, unless --no-bindfs, bindfs
(a plain FUSE passthrough, as a reference) over directories of the same file
system as a plain "native" directory, then runs every test on every target,
interleaved (native, dsdfs, bindfs, native, dsdfs, bindfs, ...) for --reps
repetitions and reports medians and the ratios target/native:

  write 1 MiB    fio sequential write, bs=1M, fsync at the end (end_fsync=1)
  write 4 KiB    fio sequential write, bs=4k, fsync at the end
  read 1 MiB     fio sequential read, bs=1M, of the file the 1 MiB write left:
                 cold (sync + drop_caches, which empties the FUSE page cache
                 and the store's page cache alike) then warm (at once again)
  small files    bench/small_files.c: create+write 4 KiB+close N files in one
                 directory, stat them (warm), stat them again after
                 drop_caches (cold), unlink them

Prints a markdown table and writes it into docs/performance.md between the
markers <!-- bench/run:SECTION:begin --> and <!-- bench/run:SECTION:end -->
(SECTION is "results" unless --section, a new one is appended; --no-doc
leaves the doc alone).
Needs root for drop_caches (without it the cold tests are skipped), fio, cc,
and bindfs for the reference line. Installs nothing. Every mount and daemon
it starts is stopped by PID on exit, failure, Ctrl-C or SIGTERM.
The shared helpers are the package bench/dsdfsbench.
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, jobs, timing  # noqa: E402
from dsdfsbench.caches import can_drop as can_drop_caches, drop_caches, settle  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, DEFAULT_LAUNCHER, MIB, REPO, BenchError, log, run, run_main, set_log  # noqa: E402
from dsdfsbench.targets import Target, log_daemons, machine_facts, preflight, start_bindfs, start_dsdfs  # noqa: E402
from dsdfsbench.tables import header, median, ratio, row  # noqa: E402

PROG = "bench/run.py"
DOC_TOOL = "bench/run"  # the doc's markers keep the name they were written with

# (test id, label, unit, target ratio or None)
TESTS = [
    ("write_1m", "seq write 1 MiB + fsync", "MB/s", 0.9),
    ("write_4k", "seq write 4 KiB + fsync", "MB/s", 0.6),
    ("read_1m_cold", "seq read 1 MiB, cold", "MB/s", 0.9),
    ("read_1m_warm", "seq read 1 MiB, warm", "MB/s", 0.9),
    ("create", "small files: create+write 4 KiB+close", "files/s", 0.4),
    ("stat", "small files: stat (warm)", "files/s", None),
    ("stat_cold", "small files: stat (cold)", "files/s", None),
    ("unlink", "small files: unlink", "files/s", None),
]
GROUPS = {  # command-line group -> tests it runs
    "write1m": ["write_1m"],
    "read1m": ["read_1m_cold", "read_1m_warm"],
    "write4k": ["write_4k"],
    "small": ["create", "stat", "stat_cold", "unlink"],
}


def fio(args, rw_key):
    """Runs one fio job; returns bytes/s of rw_key ('read' or 'write')."""
    out = run(["fio", "--output-format=json", "--ioengine=psync", "--invalidate=0",
               "--fallocate=none", "--name=bench"] + args).stdout
    j = json.loads(out[out.index("{"):])
    job = j["jobs"][0]
    if job.get("error", 0):
        raise BenchError(f"fio {args}: error {job['error']}")
    side = job[rw_key]
    if side["runtime"] <= 0:
        raise BenchError(f"fio {args}: zero runtime")
    # io_bytes over runtime (ms): the runtime of a job with end_fsync includes the fsync.
    return side["io_bytes"] / (side["runtime"] / 1000.0)


class Bench:
    def __init__(self, opts, work, small_bin, can_drop):
        self.o = opts
        self.work = work
        self.small_bin = small_bin
        self.can_drop = can_drop
        self.results = {}  # (target, test) -> [values]
        self.busy_samples = []  # CPU busy fraction seen just before each measurement
        self.requests = {}  # (target, test) -> ({op: requests per unit}, unit), last repetition

    def counted(self, t, test, per, unit, fn):
        """Runs fn() and keeps the FUSE requests it caused on t, per `per` units."""
        before = t.requests()
        value = fn()
        after = t.requests()
        if before is not None:
            delta = {op: after[op] - before.get(op, 0) for op in after}
            delta["getxattr"] -= 1  # the read of the counters after the test
            self.requests[(t.name, test)] = ({op: n / per for op, n in delta.items() if n > 0}, unit)
        return value

    def record(self, target, test, value):
        self.results.setdefault((target.name, test), []).append(value)

    def settle(self):
        settle(self.can_drop)

    def quiet(self):
        """Waits (up to --max-wait s) until other processes leave the CPUs idle.

        Other work on a 2-core machine (a compiler, a test suite) halves what
        a FUSE daemon gets; such measurements are counted and reported.
        """
        self.busy_samples.append(timing.quiet(self.o.max_wait, self.o.busy_limit, first=0.3, then=1.0))

    def seq_file(self, t, tag):
        return os.path.join(t.path, f"seq-{tag}.dat")

    def t_write(self, t, bs, size, tag, keep):
        f = self.seq_file(t, tag)
        if os.path.exists(f):
            os.unlink(f)
        self.settle()
        self.quiet()
        bw = fio([f"--filename={f}", "--rw=write", f"--bs={bs}", f"--size={size}", "--end_fsync=1"], "write")
        if not keep:
            os.unlink(f)
        return bw / 1e6

    def t_read(self, t, size):
        f = self.seq_file(t, "1m")
        self.quiet()
        return fio([f"--filename={f}", "--rw=read", "--bs=1M", f"--size={size}"], "read") / 1e6

    def small(self, t, phase, sub, size=4096):
        self.quiet()
        out = run([self.small_bin, sub, str(self.o.files), phase, str(size)]).stdout
        return float(out.split()[3])

    def group(self, targets, group):
        o = self.o
        for t in targets:
            t.check_alive()
            if group == "write1m":
                v = self.counted(t, "write_1m", o.size_1m / MIB, "MiB",
                                 lambda: self.t_write(t, "1M", o.size_1m, "1m", keep=True))
                self.record(t, "write_1m", v)
                log(f"  {t.name:10s} write_1m {v:9.1f} MB/s")
            elif group == "write4k":
                v = self.counted(t, "write_4k", o.size_4k / MIB, "MiB",
                                 lambda: self.t_write(t, "4k", o.size_4k, "4k", keep=False))
                self.record(t, "write_4k", v)
                log(f"  {t.name:10s} write_4k {v:9.1f} MB/s")
            elif group == "read1m":
                if not self.can_drop:
                    continue
                drop_caches()
                cold = self.counted(t, "read_1m_cold", o.size_1m / MIB, "MiB", lambda: self.t_read(t, o.size_1m))
                warm = self.counted(t, "read_1m_warm", o.size_1m / MIB, "MiB", lambda: self.t_read(t, o.size_1m))
                self.record(t, "read_1m_cold", cold)
                self.record(t, "read_1m_warm", warm)
                os.unlink(self.seq_file(t, "1m"))
                log(f"  {t.name:10s} read_1m cold {cold:9.1f} warm {warm:9.1f} MB/s")
            elif group == "small":
                # create, stat and unlink run back to back, with no sync in
                # between: the 4 KiB of each file are still in the page cache
                # when it is unlinked, so unlink frees no disk blocks (a synced
                # file would cost a synchronous discard on a file system
                # mounted with -o discard, paid inline natively but later, at
                # FORGET, by a FUSE daemon that holds the inode open).
                sub = os.path.join(t.path, "small")
                os.mkdir(sub)
                vals = {}
                for phase in ("create", "stat", "unlink"):
                    if phase == "create":
                        self.settle()
                    vals[phase] = self.counted(t, phase, o.files, "file", lambda: self.small(t, phase, sub))
                if self.can_drop:
                    # Cold stat: empty files (no blocks, no discard), caches dropped.
                    run([self.small_bin, sub, str(self.o.files), "create", "0"])
                    self.settle()
                    vals["stat_cold"] = self.counted(t, "stat_cold", o.files, "file",
                                                     lambda: self.small(t, "stat", sub, size=0))
                    run([self.small_bin, sub, str(self.o.files), "unlink"])
                os.rmdir(sub)
                for k, v in vals.items():
                    self.record(t, k, v)
                log(f"  {t.name:10s} small " + " ".join(f"{k} {v:.0f}/s" for k, v in vals.items()))
            t.check_alive()


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "MB/s":
        return f"{v:,.0f} MB/s" if v >= 100 else f"{v:,.1f} MB/s"
    return f"{v:,.0f}/s"


def report(bench, targets, opts, facts, elapsed):
    native = targets[0]
    others = targets[1:]
    lines = header([("test", "l"), ("native", "r")]
                   + [c for t in others for c in ((t.name, "r"), (f"{t.name}/native", "r"))]
                   + [("target", "r")])
    wanted = [t for g in opts.groups for t in GROUPS[g]]
    for test, label, unit, goal in TESTS:
        if test not in wanted or (native.name, test) not in bench.results:
            continue
        nat = median(bench.results[(native.name, test)])
        cells = [label, fmt(nat, unit)]
        for t in others:
            v = median(bench.results.get((t.name, test), []))
            r = ratio(v, nat)
            cells += [fmt(v, unit), f"**{r:.2f}x**" if r else "n/a"]
        cells.append(">= %.1fx" % goal if goal and test.startswith(("write", "read", "create")) else "")
        lines.append(row(cells))
    out = []
    out.append(f"Run of `{PROG} {' '.join(opts.argv)}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
               f"{elapsed / 60:.1f} min; median of {opts.reps} interleaved repetitions. "
               f"Sizes: {opts.size_1m // MIB} MiB for 1 MiB blocks, {opts.size_4k // MIB} MiB for 4 KiB blocks, "
               f"{opts.files} small files. Ratios are target/native; the target column is the goal "
               f"for dsdfs (not asserted). MB/s are 10^6 bytes per second.")
    out.append("")
    out += lines
    busy = bench.busy_samples
    if busy:
        over = sum(1 for b in busy if b > opts.busy_limit)
        out.append("")
        out.append(f"CPU use by other processes just before each of the {len(busy)} measurements: "
                   f"median {100 * median(busy):.0f}%, max {100 * max(busy):.0f}%; "
                   f"{over} started above {100 * opts.busy_limit:.0f}% after waiting {opts.max_wait:.0f} s "
                   f"(their figures are noisier).")
    req_lines = requests_table(bench, targets)
    if req_lines:
        out.append("")
        out.append("FUSE requests the daemon served per file (small files) or per MiB (sequential "
                   "tests), by operation, in the last repetition (the daemon's `fuse_*` counters; "
                   "FORGETs come later, in batches, and are left out):")
        out.append("")
        out += req_lines
    out.append("")
    out.append("Machine:")
    out.append("")
    for k, v in facts:
        out.append(f"- {k}: {v}")
    out.append("")
    out.append("<details><summary>Every repetition</summary>")
    out.append("")
    out += header([("test", "l"), ("target", "l"), ("values, in run order", "l")])
    for test, label, unit, _ in TESTS:
        for t in targets:
            vals = bench.results.get((t.name, test))
            if vals:
                out.append(row([label, t.name, ", ".join(fmt(v, unit) for v in vals)]))
    out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def requests_table(bench, targets):
    names = [t.name for t in targets if t.counts_requests]
    if not names:
        return []
    lines = header([("test", "l")] + [(f"{n}: requests", "l") for n in names])
    for test, label, _, _ in TESTS:
        cells = [label]
        for n in names:
            got = bench.requests.get((n, test))
            if got is None:
                cells.append("")
                continue
            per_op, unit = got
            shown = {op: v for op, v in per_op.items() if not op.startswith("forget") and v >= 0.005}
            total = sum(shown.values())
            parts = ", ".join(f"{op} {v:.2f}" for op, v in sorted(shown.items(), key=lambda kv: -kv[1]))
            cells.append(f"{total:.2f}/{unit}: {parts}" if parts else f"0/{unit}")
        if any(cells[1:]):
            lines.append(row(cells))
    return lines


def write_doc(path, section, text):
    """Replaces the section's text in the doc; a section without markers yet is appended."""
    docs.write_section(path, DOC_TOOL, section, text, append_title=f"Results: {section}",
                       new_file="# dsdfs performance\n")
    log(f"wrote {path} (section {section})")


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", s.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {s} (e.g. 512M, 1.5G)")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)])


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about 2 minutes: smaller sizes, 3 repetitions")
    p.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"),
                   help="file system to test: native dir, dsdfs store and bindfs source go under it (default $TMPDIR or /tmp)")
    p.add_argument("--reps", type=int, help="repetitions (default 5, --quick 3)")
    p.add_argument("--size-1m", type=parse_size, help="bytes for 1 MiB-block tests (default 1G, --quick 512M)")
    p.add_argument("--size-4k", type=parse_size, help="bytes for 4 KiB-block tests (default 256M, --quick 128M)")
    p.add_argument("--files", type=int, help="small files (default 10000, --quick 3000)")
    p.add_argument("--dsdfs", default=DEFAULT_LAUNCHER,
                   help="dsdfs-launch binary (default build/launcher/dsdfs-launch)")
    p.add_argument("--threads", default="0",
                   help="comma-separated --threads values (caps on idle FUSE workers); one dsdfs mount "
                        "each (default 0: the daemon's default, no --threads)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:OPTIONS",
                   help="one more dsdfs mount, named NAME, whose daemon gets OPTIONS (e.g. "
                        "'wbc:--passthrough off'); may be repeated")
    p.add_argument("--no-bindfs", action="store_true", help="leave out the bindfs reference line")
    p.add_argument("--tests", default="write1m,read1m,write4k,small",
                   help="comma-separated groups: write1m, read1m (needs write1m), write4k, small")
    p.add_argument("--doc", default=DEFAULT_DOC, help="markdown file to update")
    p.add_argument("--section", default="results", help="marker name of the section to regenerate")
    p.add_argument("--no-doc", action="store_true", help="print only, do not touch the doc")
    p.add_argument("--busy-limit", type=float, default=0.25,
                   help="wait before each measurement until other processes use less than this fraction of the CPUs (default 0.25)")
    p.add_argument("--max-wait", type=float, default=3,
                   help="longest wait for quiet CPUs before a measurement, seconds (default 3)")
    p.add_argument("--label", default="", help="free text recorded with the dsdfs line (e.g. a build note)")
    o = p.parse_args(argv)
    o.argv = argv
    o.reps = o.reps or (3 if o.quick else 5)
    o.size_1m = o.size_1m or (512 * MIB if o.quick else 1024 * MIB)
    o.size_4k = o.size_4k or (128 * MIB if o.quick else 256 * MIB)
    o.files = o.files or (3000 if o.quick else 10000)
    o.groups = [g.strip() for g in o.tests.split(",") if g.strip()]
    for g in o.groups:
        if g not in GROUPS:
            p.error(f"unknown test group {g}")
    if "read1m" in o.groups and "write1m" not in o.groups:
        p.error("read1m reads the file that write1m leaves: add write1m")
    # Run order: the 1 MiB write leaves the file the reads use.
    o.groups = [g for g in GROUPS if g in o.groups]
    try:
        o.thread_list = [int(x) for x in o.threads.split(",")]
    except ValueError:
        p.error("--threads needs numbers, e.g. 0,2,8")
    o.variants = []
    for v in o.variant:
        name, sep, args = v.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in ("native", "bindfs"):
            p.error(f"--variant needs NAME:OPTIONS with a plain NAME other than native or bindfs, not '{v}'")
        o.variants.append((name, shlex.split(args)))
    names = [n for n, _ in o.variants] + ["dsdfs" if len(o.thread_list) == 1 else f"dsdfs-t{n}" for n in o.thread_list]
    if len(set(names)) != len(names):
        p.error(f"two dsdfs mounts with one name among {', '.join(names)}")
    return o


def main(argv):
    set_log("bench")
    opts = parse_args(argv)
    preflight(["fio", "cc"] + ([] if opts.no_bindfs else ["bindfs"]), [opts.dsdfs], hint="; or --no-bindfs")
    can_drop = can_drop_caches()
    if not can_drop:
        log("cannot drop caches (not root, or /proc/sys read-only), so the cold read and cold stat tests are skipped")

    jobs.install_signal_handlers()

    os.makedirs(opts.dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dsdfs-bench.", dir=opts.dir)
    targets = []
    started = time.time()
    try:
        small_bin = os.path.join(work, "small_files")
        run(["cc", "-O2", "-Wall", "-o", small_bin, os.path.join(REPO, "bench", "small_files.c")])
        native = Target("native", os.path.join(work, "native"))
        os.makedirs(native.path)
        targets.append(native)
        for n in opts.thread_list:
            name = "dsdfs" if len(opts.thread_list) == 1 else f"dsdfs-t{n}"
            targets.append(start_dsdfs(opts.dsdfs, work, n, name))
        for name, args in opts.variants:
            targets.append(start_dsdfs(opts.dsdfs, work, 0, name, args))
        if not opts.no_bindfs:
            targets.append(start_bindfs(work))
        dev = os.stat(native.path).st_dev
        for t in targets[1:]:
            backing = getattr(t, "store_files", os.path.join(work, "bindfs-src"))
            if os.stat(backing).st_dev != dev:
                raise BenchError(f"{backing} is not on the file system of {native.path}")
        facts = machine_facts(work, opts.dsdfs, opts.label)
        free = shutil.disk_usage(work).free
        need = len(targets) * opts.size_1m + opts.size_4k + opts.files * 8192
        if free < need * 1.2:
            raise BenchError(f"{work}: {free >> 20} MiB free, the tests need about {need >> 20} MiB")
        bench = Bench(opts, work, small_bin, can_drop)
        for rep in range(opts.reps):
            log(f"repetition {rep + 1}/{opts.reps}")
            for g in opts.groups:
                bench.group(targets, g)
        elapsed = time.time() - started
        text = report(bench, targets, opts, facts, elapsed)
        print(text)
        if not opts.no_doc:
            write_doc(opts.doc, opts.section, text)
        return 0
    except BaseException:
        log_daemons()
        raise
    finally:
        # Every daemon started (also one that never became ready), newest first.
        jobs.cleanup(work)


if __name__ == "__main__":
    run_main(PROG, main, sys.argv[1:])
