#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/workloads.py: real workloads in dsdfs against the file system under its store, in one run.

Mounts dsdfs (one daemon per --dsdfs build, each with its own store) over
the file system of a plain "native" directory and runs, on every target,
interleaved (the order of the targets turns round each repetition):

  build    a real project compiled with its own build system and --jobs
           parallel jobs: its source is unpacked into the target (not
           timed), caches are dropped, then configure and compile are timed.
           Default project: dsdfs itself (`git archive HEAD`, meson setup
           -Dtests=false, ninja); --project DIR takes another tree (meson,
           CMake, ./configure + make, or a Makefile).
  archive  `tar -xf` of a source archive with tens of thousands of files,
           then (after a sync, not timed) `rm -rf` of the tree. Default
           archive: Debian 12's linux-source-6.1 (83,000 entries, 1.3 GB),
           fetched once with `apt-get download` into --cache and unpacked
           there to a plain tar, so that no decompression is timed;
           --archive FILE takes any tar (compressed or not).
  git      `git clone --no-local` of a local repository (default: this
           one), then `git status` in the clone, timed apiece.

Reports median seconds per step and the ratio native time / dsdfs time
(1.0x: as fast as the store's file system; 0.5x: twice the time), with the
FUSE requests each step cost (the daemon's `fuse_*` counters), as markdown
between <!-- bench/workloads:SECTION:begin --> and ...:end --> of --doc
(--no-doc only prints). Needs root (a FUSE mount with allow_other,
drop_caches), tar, git, and the build tools of the project. Every daemon is
stopped by PID on exit, failure, Ctrl-C or SIGTERM. The shared helpers are
the package bench/dsdfsbench.
"""

import argparse
import datetime
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, jobs, timing  # noqa: E402
from dsdfsbench.caches import can_drop as can_drop_caches, settle  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, DEFAULT_LAUNCHER, REPO, BenchError, log, run, run_main, set_log  # noqa: E402
from dsdfsbench.tables import header, median, min_max, ratio, row  # noqa: E402
from dsdfsbench.targets import Target, log_daemons, machine_facts, preflight, start_dsdfs  # noqa: E402

PROG = "bench/workloads.py"
DOC_TOOL = "bench/workloads"
DEFAULT_CACHE = "/var/cache/dsdfs-bench"
KERNEL_PACKAGE = "linux-source-6.1"

# (workload, step, label, target ratio native time / dsdfs time or None)
STEPS = [
    ("build", "configure", "build: configure", None),
    ("build", "compile", "build: compile, {jobs} jobs", None),
    ("build", "total", "build: configure + compile", 0.9),
    ("archive", "extract", "archive: tar -xf ({files} entries)", 0.5),
    ("archive", "delete", "archive: rm -rf", 0.5),
    ("git", "clone", "git clone --no-local ({files} files)", None),
    ("git", "status", "git status", None),
]
WORKLOADS = ["build", "archive", "git"]


def build_commands(tree, jobs_n):
    """The configure and compile commands of the project unpacked at tree, by its build system."""
    j = str(jobs_n)
    if os.path.exists(os.path.join(tree, "meson.build")):
        setup = ["meson", "setup", "bld", "-Dbuildtype=debugoptimized"]
        if os.path.exists(os.path.join(tree, "daemon", "fs_entry.cc")):  # dsdfs itself
            setup.append("-Dtests=false")
        return setup, ["ninja", "-C", "bld", "-j", j]
    if os.path.exists(os.path.join(tree, "CMakeLists.txt")):
        return ["cmake", "-S", ".", "-B", "bld"], ["cmake", "--build", "bld", "-j", j]
    if os.path.exists(os.path.join(tree, "configure")):
        return ["./configure"], ["make", "-j", j]
    if os.path.exists(os.path.join(tree, "Makefile")):
        return None, ["make", "-j", j]
    raise BenchError(f"{tree}: no meson.build, CMakeLists.txt, configure or Makefile")


def fetch_kernel_archive(cache):
    """A plain tar of Debian's linux-source, fetched and unpacked into cache once; its path."""
    plain = os.path.join(cache, f"{KERNEL_PACKAGE}.tar")
    if os.path.exists(plain):
        return plain
    os.makedirs(cache, exist_ok=True)
    debs = glob.glob(os.path.join(cache, f"{KERNEL_PACKAGE}_*.deb"))
    if not debs:
        log(f"fetching {KERNEL_PACKAGE} with apt-get download into {cache}")
        try:
            run(["apt-get", "download", "-qq", KERNEL_PACKAGE], cwd=cache, timeout=600)
        except (BenchError, FileNotFoundError, subprocess.TimeoutExpired) as e:
            raise BenchError(f"cannot fetch {KERNEL_PACKAGE} ({e}); run apt-get update first, "
                             f"or pass --archive FILE") from e
        debs = glob.glob(os.path.join(cache, f"{KERNEL_PACKAGE}_*.deb"))
        if not debs:
            raise BenchError(f"apt-get download {KERNEL_PACKAGE} left no .deb in {cache}")
    log(f"unpacking {os.path.basename(debs[0])} to {plain}")
    tmp = plain + ".part"
    with open(tmp, "wb") as out:
        deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", debs[0]], stdout=subprocess.PIPE)
        inner = subprocess.Popen(["tar", "-xO", "--wildcards", f"*/{KERNEL_PACKAGE}.tar.xz"],
                                 stdin=deb.stdout, stdout=subprocess.PIPE)
        deb.stdout.close()
        xz = subprocess.Popen(["xz", "-dc"], stdin=inner.stdout, stdout=out)
        inner.stdout.close()
        codes = [xz.wait(), inner.wait(), deb.wait()]
    if any(codes):
        os.unlink(tmp)
        raise BenchError(f"unpacking {debs[0]} failed (xz, tar, dpkg-deb exit codes {codes})")
    os.rename(tmp, plain)
    return plain


def plain_archive(path, work):
    """path itself if it is an uncompressed tar, else a decompressed copy in work (not timed)."""
    with open(path, "rb") as f:
        head = f.read(6)
    decompress = {b"\x1f\x8b": "gzip", b"\xfd7zXZ": "xz", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd"}
    for magic, tool in decompress.items():
        if head.startswith(magic):
            plain = os.path.join(work, "archive.tar")
            log(f"decompressing {path} with {tool} (not timed)")
            with open(path, "rb") as src, open(plain, "wb") as out:
                r = subprocess.run([tool, "-dc"], stdin=src, stdout=out, stderr=subprocess.PIPE)
            if r.returncode:
                raise BenchError(f"{tool} -dc {path} failed: {r.stderr.decode(errors='replace')[-500:]}")
            return plain
    return path


def tar_entries(archive):
    return sum(1 for _ in run(["tar", "-tf", archive]).stdout.splitlines())


def rmtree(path):
    if os.path.lexists(path):
        run(["rm", "-rf", path])


class Bench:
    def __init__(self, opts, work, can_drop):
        self.o = opts
        self.work = work
        self.can_drop = can_drop
        self.results = {}   # (target, workload, step) -> [seconds]
        self.requests = {}  # (target, workload, step) -> {op: requests}, last repetition
        self.busy = []
        self.facts = {}     # for the labels: files in the archive and in the repository

    def timed(self, t, key, cmd, cwd=None, env=None):
        """Runs cmd (after waiting for quiet CPUs) and records its wall time and FUSE requests."""
        self.busy.append(timing.quiet(self.o.max_wait, self.o.busy_limit, first=0.3, then=1.0))
        before = t.requests()
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        took = time.monotonic() - t0
        after = t.requests()
        if r.returncode != 0:
            raise BenchError(f"{t.name}: {' '.join(cmd)} failed ({r.returncode}) in {cwd}:\n"
                             f"{r.stdout.decode(errors='replace')[-3000:]}")
        if before is not None:
            delta = {op: after[op] - before.get(op, 0) for op in after}
            delta["getxattr"] -= 1  # the read of the counters after the step
            self.requests[(t.name,) + key] = {op: n for op, n in delta.items() if n > 0}
        self.results.setdefault((t.name,) + key, []).append(took)
        t.check_alive()
        return took

    def build(self, t, rep):
        tree = os.path.join(t.path, f"build-{rep}")
        os.makedirs(tree)
        run(["tar", "-xf", self.project_tar, "-C", tree])
        configure, compile_cmd = build_commands(tree, self.o.jobs)
        settle(self.can_drop)
        took = self.timed(t, ("build", "configure"), configure, cwd=tree) if configure else 0.0
        took += self.timed(t, ("build", "compile"), compile_cmd, cwd=tree)
        self.results.setdefault((t.name, "build", "total"), []).append(took)
        log(f"  {t.name:10s} build {took:.1f} s")
        rmtree(tree)

    def archive(self, t, rep):
        tree = os.path.join(t.path, f"archive-{rep}")
        os.makedirs(tree)
        settle(self.can_drop)
        x = self.timed(t, ("archive", "extract"), ["tar", "-xf", self.archive_tar, "-C", tree])
        os.sync()  # the extracted bytes on disk before the delete starts, in both (not timed)
        d = self.timed(t, ("archive", "delete"), ["rm", "-rf", tree])
        log(f"  {t.name:10s} archive extract {x:.1f} s, delete {d:.1f} s")

    def git(self, t, rep):
        clone = os.path.join(t.path, f"clone-{rep}")
        settle(self.can_drop)
        c = self.timed(t, ("git", "clone"), ["git", "clone", "-q", "--no-local", self.o.git_repo, clone])
        s = self.timed(t, ("git", "status"), ["git", "-C", clone, "status", "--porcelain"])
        log(f"  {t.name:10s} git clone {c:.2f} s, status {s:.2f} s")
        rmtree(clone)


def report(bench, targets, opts, facts, elapsed):
    native, others = targets[0], targets[1:]
    cols = [("step", "l"), ("native", "r")]
    for t in others:
        cols += [(t.name, "r"), (f"native/{t.name}", "r")]
    cols.append(("target", "r"))
    lines = header(cols)
    for workload, step, label, goal in STEPS:
        if workload not in opts.workloads or (native.name, workload, step) not in bench.results:
            continue
        files = {"archive": bench.facts.get("archive_files"), "git": bench.facts.get("git_files")}.get(workload)
        nat = median(bench.results[(native.name, workload, step)])
        cells = [label.format(jobs=opts.jobs, files=f"{files:,}" if files else "?"), f"{nat:.2f} s"]
        for t in others:
            v = median(bench.results.get((t.name, workload, step), []))
            r = ratio(nat, v)
            cells += [f"{v:.2f} s" if v is not None else "n/a", f"**{r:.2f}x**" if r else "n/a"]
        cells.append(f">= {goal:.1f}x" if goal else "")
        lines.append(row(cells))
    out = [f"Run of `{PROG} {' '.join(opts.argv)}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
           f"{elapsed / 60:.1f} min; median seconds of {opts.reps} interleaved repetitions. Ratios are "
           f"native time / dsdfs time (1.0x: as fast as the store's file system); the target column is "
           f"the goal of issue 10 (not asserted).", ""]
    out += lines
    if bench.busy:
        over = sum(1 for b in bench.busy if b > opts.busy_limit)
        out += ["", f"CPU use by other processes just before each of the {len(bench.busy)} timed steps: "
                f"median {100 * median(bench.busy):.0f}%, max {100 * max(bench.busy):.0f}%; {over} started "
                f"above {100 * opts.busy_limit:.0f}% after waiting {opts.max_wait:.0f} s."]
    req = [t for t in others if t.counts_requests]
    if req:
        out += ["", "FUSE requests the daemon served in each step (last repetition; FORGETs left out):", ""]
        out += header([("step", "l")] + [(t.name, "l") for t in req])
        for workload, step, label, _ in STEPS:
            cells = [short(label, opts)]
            for t in req:
                got = bench.requests.get((t.name, workload, step))
                if got is None:
                    cells.append("")
                    continue
                shown = {op: n for op, n in got.items() if not op.startswith("forget")}
                top = sorted(shown.items(), key=lambda kv: -kv[1])
                cells.append(f"{sum(shown.values()):,}: " + ", ".join(f"{op} {n:,}" for op, n in top[:6]))
            if any(cells[1:]):
                out.append(row(cells))
    out += ["", "Machine and inputs:", ""]
    out += [f"- {k}: {v}" for k, v in facts]
    out += ["", "<details><summary>Every repetition (seconds, in run order)</summary>", ""]
    out += header([("step", "l"), ("target", "l"), ("seconds", "l"), ("min–max", "l")])
    for workload, step, label, _ in STEPS:
        for t in targets:
            vals = bench.results.get((t.name, workload, step))
            if vals:
                out.append(row([short(label, opts), t.name,
                                ", ".join(f"{v:.2f}" for v in vals), min_max(vals, 2)]))
    out += ["", "</details>"]
    return "\n".join(out) + "\n"


def short(label, opts):
    """A step's label without the counts in parentheses (for the tables below the first)."""
    return re.sub(r" \([^)]*\{files\}[^)]*\)", "", label).format(jobs=opts.jobs)


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one repetition (default 3)")
    p.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    p.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"),
                   help="file system to test: the native dir and the dsdfs stores go under it")
    p.add_argument("--dsdfs", action="append", metavar="[NAME=]LAUNCHER",
                   help="dsdfs-launch binary, once per build to compare (default build/launcher/dsdfs-launch)")
    p.add_argument("--tests", default="build,archive,git", help="comma-separated: build, archive, git")
    p.add_argument("--project", help="source tree to build (default: this repository's HEAD, git archive)")
    p.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 1),
                   help="parallel compile jobs (default: the CPU count, at least 2)")
    p.add_argument("--archive", help="tar archive to extract and delete (default: Debian's linux-source)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help=f"where the default archive is kept ({DEFAULT_CACHE})")
    p.add_argument("--git-repo", default=REPO, help="local repository to clone (default: this one)")
    p.add_argument("--doc", default=DEFAULT_DOC, help="markdown file to update")
    p.add_argument("--section", default="results", help="marker name of the section to regenerate")
    p.add_argument("--no-doc", action="store_true", help="print only, do not touch the doc")
    p.add_argument("--busy-limit", type=float, default=0.25,
                   help="wait before each step until other processes use less than this fraction of the CPUs")
    p.add_argument("--max-wait", type=float, default=3, help="longest wait for quiet CPUs, seconds (default 3)")
    p.add_argument("--label", default="", help="free text recorded with the dsdfs line")
    o = p.parse_args(argv)
    o.argv = argv
    o.reps = o.reps or (1 if o.quick else 3)
    o.workloads = [w.strip() for w in o.tests.split(",") if w.strip()]
    for w in o.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w} (build, archive, git)")
    o.builds = []
    for i, spec in enumerate(o.dsdfs or [DEFAULT_LAUNCHER]):
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = ("dsdfs" if i == 0 else f"dsdfs{i + 1}"), spec
        o.builds.append((name, path))
    if len({n for n, _ in o.builds}) != len(o.builds):
        p.error("two --dsdfs builds with one name: give them NAME=LAUNCHER")
    if o.jobs < 1:
        p.error("--jobs needs at least 1")
    return o


def prepare_inputs(opts, work, bench):
    """The project tar, the plain archive and the file counts, outside every target (not timed)."""
    facts = []
    if "build" in opts.workloads:
        bench.project_tar = os.path.join(work, "project.tar")
        if opts.project:
            run(["tar", "-cf", bench.project_tar, "-C", opts.project, "."])
            what = opts.project
        else:
            run(["git", "-C", REPO, "archive", "-o", bench.project_tar, "HEAD"])
            what = f"dsdfs at {run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.strip()}"
        facts.append(("build", f"{what}, {tar_entries(bench.project_tar):,} entries, {opts.jobs} jobs"))
    if "archive" in opts.workloads:
        src = opts.archive or fetch_kernel_archive(opts.cache)
        bench.archive_tar = plain_archive(src, work)
        bench.facts["archive_files"] = tar_entries(bench.archive_tar)
        size = os.path.getsize(bench.archive_tar)
        facts.append(("archive", f"{src}: {bench.facts['archive_files']:,} entries, {size / 1e9:.2f} GB unpacked"))
    if "git" in opts.workloads:
        r = run(["git", "-C", opts.git_repo, "ls-files"], check=False)
        if r.returncode != 0:
            raise BenchError(f"{opts.git_repo} is not a git repository: {r.stderr.strip()}")
        bench.facts["git_files"] = len(r.stdout.splitlines())
        commits = run(["git", "-C", opts.git_repo, "rev-list", "--count", "HEAD"]).stdout.strip()
        facts.append(("git", f"{opts.git_repo}: {bench.facts['git_files']:,} files, {commits} commits, "
                      f"{run(['git', '--version']).stdout.strip()}"))
    return facts


def main(argv):
    set_log("workloads")
    opts = parse_args(argv)
    preflight(["tar", "git"], [path for _, path in opts.builds])
    can_drop = can_drop_caches()
    if not can_drop:
        log("cannot drop caches (not root): the build and archive steps start with warm caches")
    jobs.install_signal_handlers()
    os.makedirs(opts.dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dsdfs-workloads.", dir=opts.dir)
    targets = []
    started = time.time()
    try:
        bench = Bench(opts, work, can_drop)
        inputs = prepare_inputs(opts, work, bench)
        native = Target("native", os.path.join(work, "native"))
        os.makedirs(native.path)
        targets.append(native)
        for name, path in opts.builds:
            targets.append(start_dsdfs(path, work, 0, name))
        facts = [(k, v) for k, v in machine_facts(work, opts.builds[0][1], opts.label, tools=())
                 if k not in ("bindfs", "dsdfs")]
        facts += [(name, dict(machine_facts(work, path, opts.label, tools=()))["dsdfs"])
                  for name, path in opts.builds]
        facts += inputs
        for rep in range(opts.reps):
            log(f"repetition {rep + 1}/{opts.reps}")
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for w in opts.workloads:
                for t in order:
                    t.check_alive()
                    getattr(bench, w)(t, rep)
        text = report(bench, targets, opts, facts, time.time() - started)
        print(text)
        if not opts.no_doc:
            docs.write_section(opts.doc, DOC_TOOL, opts.section, text,
                               append_title=f"Real workloads: {opts.section}", new_file="# dsdfs performance\n")
            log(f"wrote {opts.doc} (section {opts.section})")
        return 0
    except BaseException:
        log_daemons()
        raise
    finally:
        jobs.cleanup(work)


if __name__ == "__main__":
    run_main(PROG, main, sys.argv[1:])
