#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/stage_out.py: `dsdfs stage-out` against a copy through the mount and the disks' own copy.

Starts a dsdfs job under mpirun (N ranks on this machine, each with its own
mount point and store, UCX on loopback: scripts/loopback-env.sh). Each rank
writes its share of a tree (files of 4 KiB to --max-file-mib, --share-mib per
rank) through its own mount. Then, interleaved over --reps repetitions, into a
fresh destination directory each time (standing for the parallel file system),
after drop_caches:

  stage-out   dsdfs stage-out MNT0/tree DEST: every rank copies the files it
              owns straight from its store, in parallel
  cp-mount    cp -r MNT0/tree DEST from one node through the mount: rank 0
              reads every other rank's files over dsdfs's network
  cp-stores   the bound: cp -r of every store's files to DEST, one cp per
              rank at once (what the disks and the copy can do without dsdfs)

Reports the aggregate rate of each (median), the ratios against cp-stores, and
the bytes that crossed dsdfs's network during each (the ranks' counters
bytes_read_remote + bytes_forwarded; 0 expected for stage-out). On one
machine every "node" shares one disk and two cores, so the parallel copy
cannot beat the single one here by much: what this run shows is the network
bytes and the overhead against the disks' own copy; a real cluster adds one
disk and one network link per node.

Writes a markdown section between <!-- bench/stage_out:results:begin --> and
<!-- bench/stage_out:results:end --> of --doc (default docs/performance.md;
--no-doc only prints). Needs root (FUSE mounts, drop_caches), mpirun and a
built build/launcher/dsdfs-launch and build/launcher/dsdfs. The job is
stopped by the PID of its mpirun on exit, failure, Ctrl-C or SIGTERM.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dsdfsbench import caches, docs, jobs  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, MIB, REPO, BenchError, log, run, set_log  # noqa: E402
from dsdfsbench.mpijob import Job, loopback_env  # noqa: E402

PROG = "bench/stage_out.py"
DOC_TOOL, DOC_SECTION = "bench/stage_out", "results"
CLI = os.path.join(REPO, "build", "launcher", "dsdfs")
LAUNCHER = os.path.join(REPO, "build", "launcher", "dsdfs-launch")
NET = ("bytes_read_remote", "bytes_forwarded")  # each byte once: where it arrived, or was sent as a write


def sizes(share, max_file, rng):
    """File sizes adding up to about `share` bytes: log-uniform from 4 KiB to max_file."""
    out, total = [], 0
    while total < share:
        s = int(4096 * (max_file / 4096) ** rng.random())
        s = min(s, share - total) if share - total >= 4096 else share - total
        out.append(max(s, 1))
        total += out[-1]
    return out


def write_share(job, r, n_sizes, rng):
    base = os.path.join(job.mnt(r), "tree", f"rank{r}")
    os.makedirs(base, exist_ok=True)
    block = os.urandom(1 << 20)
    for i, s in enumerate(n_sizes):
        with open(os.path.join(base, f"f{i:05d}"), "wb") as f:
            left = s
            while left > 0:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))


def net_bytes(job):
    return sum(job.stats(r).get(k, 0) for r in range(job.n) for k in NET)


def tree_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(d, f)).st_size
    return total


def touch_remote(job):
    """New versions of the files rank 0 does not own: its copies of them (cp-mount's last
    run) are stale, so cp-mount reads them over the network again."""
    now = time.time()
    for r in range(1, job.n):
        base = os.path.join(job.mnt(r), "tree", f"rank{r}")
        for f in os.listdir(base):
            os.utime(os.path.join(base, f), (now, now))


def timed(job, name, dest, can_drop):
    os.makedirs(dest)
    if name == "cp-mount":
        touch_remote(job)
    caches.settle(can_drop)
    before = net_bytes(job)
    t0 = time.monotonic()
    if name == "stage-out":
        run([CLI, "stage-out", os.path.join(job.mnt(0), "tree"), dest, "--jobs", "4"], timeout=3600)
    elif name == "cp-mount":
        run(["cp", "-r", os.path.join(job.mnt(0), "tree"), dest], timeout=3600)
    else:
        # Each rank's own files only (its store holds every directory, empty elsewhere).
        for r in range(job.n):
            os.makedirs(os.path.join(dest, "tree", f"rank{r}"))
        procs = [subprocess.Popen(["cp", "-r", os.path.join(job.store(r), "files", "tree", f"rank{r}", "."),
                                   os.path.join(dest, "tree", f"rank{r}")]) for r in range(job.n)]
        for p in procs:
            if p.wait(timeout=3600) != 0:
                raise BenchError("cp of a store failed")
    secs = time.monotonic() - t0
    return secs, net_bytes(job) - before


def main():
    set_log("stage_out", elapsed=True)
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=3, help="ranks in the job (3)")
    ap.add_argument("--share-mib", type=int, default=256, help="bytes each rank owns, MiB (256)")
    ap.add_argument("--max-file-mib", type=int, default=64, help="largest file, MiB (64)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each copy, interleaved (3)")
    ap.add_argument("--quick", action="store_true", help="--share-mib 64 --max-file-mib 16 --reps 2")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where the temporary directory goes")
    ap.add_argument("--doc", default=DEFAULT_DOC, help="file with the markers")
    ap.add_argument("--no-doc", action="store_true", help="only print the results")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    o = ap.parse_args()
    if o.quick:
        o.share_mib, o.max_file_mib, o.reps = 64, 16, 2
    if os.geteuid() != 0:
        sys.exit(f"{PROG}: needs root (FUSE mounts, drop_caches)")
    for p in (LAUNCHER, CLI):
        if not os.access(p, os.X_OK):
            sys.exit(f"{PROG}: {p} not built (ninja -C build)")
    if not shutil.which("mpirun"):
        sys.exit(f"{PROG}: mpirun not found")
    jobs.install_signal_handlers()
    root = tempfile.mkdtemp(prefix="dsdfs-stage.", dir=o.dir)
    can_drop = caches.can_drop()
    res = {k: [] for k in ("stage-out", "cp-mount", "cp-stores")}
    state = {"total": 0}

    def body():
        job = Job(root, "job", o.ranks, "tcp", None, loopback_env(), LAUNCHER).start()
        rng = random.Random(42)
        for r in range(o.ranks):
            write_share(job, r, sizes(o.share_mib * MIB, o.max_file_mib * MIB, rng), rng)
        total = state["total"] = tree_bytes(os.path.join(job.mnt(0), "tree"))
        log(f"tree: {total / MIB:.0f} MiB over {o.ranks} ranks")
        for rep in range(o.reps):
            order = list(res) if rep % 2 == 0 else list(reversed(list(res)))
            for name in order:
                dest = os.path.join(root, f"pfs-{name}-{rep}")
                secs, net = timed(job, name, dest, can_drop)
                got = tree_bytes(dest)
                if got != total:
                    raise BenchError(f"{name}: copied {got} bytes of {total}")
                res[name].append((secs, net))
                log(f"{name} rep {rep}: {total / MIB / secs:.0f} MiB/s, {net} bytes over the network")
                shutil.rmtree(dest)
        job.stop()

    ok = jobs.run_guarded(root, o.keep, body)
    total = state["total"]
    if not ok:
        sys.exit(1)
    bound = statistics.median(total / MIB / s for s, _ in res["cp-stores"])
    lines = [f"Stage-out of a {total / MIB:.0f} MiB tree ({o.ranks} ranks, {o.share_mib} MiB each, files of 4 KiB "
             f"to {o.max_file_mib} MiB), median of {o.reps} interleaved runs, caches dropped before each"
             f"{'' if can_drop else ' (could not drop caches)'}; `{PROG}`:", "",
             "| copy | MiB/s | ratio to cp-stores | bytes over dsdfs's network |", "|---|---:|---:|---:|"]
    for name, runs in res.items():
        rate = statistics.median(total / MIB / s for s, _ in runs)
        net = max(n for _, n in runs)
        lines.append(f"| {name} | {rate:.0f} | {rate / bound:.2f}x | {net:,} |")
    lines += ["", "stage-out writes each file to disk (`fsync`) and renames it into place, which cp does not; "
              "cp-stores is cp of each store at once, one per rank, without dsdfs. Here every rank shares one disk "
              "and two cores; on a cluster each node adds its own disk, and cp-mount's network bytes cross real links."]
    text = "\n".join(lines)
    print(text)
    if not o.no_doc:
        begin, end = docs.markers(DOC_TOOL, DOC_SECTION)
        try:
            docs.write_section(o.doc, DOC_TOOL, DOC_SECTION, text, append_title="Stage-out (bench/stage_out.py)",
                               new_file=f"# bench/stage_out results\n\n{begin}\n{end}\n")
        except BenchError as e:
            sys.exit(f"{PROG}: {e}; printed only")
        log(f"results written to {o.doc}")


if __name__ == "__main__":
    main()
