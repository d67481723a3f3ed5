#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/cluster.py: dsdfs with many ranks on one machine, against its limits, in one run.

Starts dsdfs jobs under mpirun (several ranks on this machine, each with its
own mount point and store, UCX on loopback only: scripts/loopback-env.sh) and
measures, reporting ratios with the raw figures beside them:

  read     remote sequential read, cold: a file written on rank 1, read on
           rank 0 with dd bs=1M after drop_caches (and after a touch on rank 1,
           so that rank 0's cache is stale), against ucx_perftest ucp_am_bw and
           ucp_get at 1 MiB on the same transport, run interleaved with it.
           UCX_TLS=tcp and UCX_TLS=sm,self, each with --bulk auto and the other
           bulk path forced. Target 0.8x of the better perftest figure.
  cached   second open of that remote file (owner unchanged) against an owned
           file of the same size on the same rank, warm and after
           drop_caches; the counters prove the second read came from the
           cache. Target 0.9x.
  idle     CPU seconds (utime+stime from /proc/PID/stat) of every rank of an
           idle 3-rank job over --idle-seconds (60, --quick 10). Target < 0.1 s.
  write    local sequential write (dd bs=1M conv=fsync) of each rank to its own
           mount, one rank at a time, with jobs of N=1, 2, 4 ranks alive at
           once (so the N values are interleaved and see the same machine).
           Target: every rank >= 0.95x of N=1.
  meta     create rate (create + write 4 KiB + close, rank 0 creating) with
           N=1, 2, 4, and remote append rate (64-byte O_APPEND writes from
           rank 0 into a file owned by rank 1) with N=2, 4.
  rpc      what one small remote call costs against UCX's own round trip:
           ucx_perftest ucp_am_lat (64 bytes, same transport, in the same
           run), a FUSE request the daemon answers locally (getxattr
           user.dsdfs.owner of an owned file), a stat of another rank's file
           (one FUSE GETATTR and one RPC) and a 64-byte append to it (one fd),
           in the N=2 job. Target (issue 11): the RPC's share within 2x of
           the UCX round trip.

Writes a markdown section between <!-- bench/cluster:results:begin --> and
<!-- bench/cluster:results:end --> of --doc (default docs/performance.md;
--no-doc only prints). Needs root (FUSE mounts, drop_caches), mpirun,
ucx_perftest, dd and a built build/launcher/dsdfs-launch. Installs nothing.
Every job is stopped by the PID of its mpirun (then its ranks by PID, then
any mount left is unmounted) on exit, failure, Ctrl-C or SIGTERM. The
shared helpers (and the job machinery bench/dirops.py uses too) are the
package bench/dsdfsbench.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, jobs, tables, timing  # noqa: E402
from dsdfsbench.caches import drop_caches  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, DEFAULT_LAUNCHER, MIB, BenchError, log, run, set_log  # noqa: E402
from dsdfsbench.facts import cluster_facts  # noqa: E402
from dsdfsbench.mpijob import Job, loopback_env, rpcs_by_op  # noqa: E402
from dsdfsbench.tables import breakdown, fmt_x, median, median_range as fmt_range, ratio, verdict  # noqa: E402

PROG = "bench/cluster.py"
DOC_TOOL, DOC_SECTION = "bench/cluster", "results"  # the doc's markers keep the name they were written with
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_TESTS = ["read", "cached", "idle", "write", "meta", "rpc"]


def proc_cpu_ticks(pid):
    """utime + stime of the whole process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def proc_ctx_switches(pid):
    """Context switches summed over the live threads of pid."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True if some socket listens on TCP port (from /proc/net/tcp*, without connecting)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


# ---------------------------------------------------------------- processes

class Server:
    """A ucx_perftest server waiting for one client."""

    def __init__(self, proc):
        self.proc = proc

    def stop(self):
        jobs.stop_process(self.proc, "ucx_perftest server", timeout=5)
        jobs.unregister(self)


def perftest(env, test, size, iters, warmup, field=5):
    """ucx_perftest TEST at SIZE bytes between two processes on loopback: by default overall_bw,
    MiB/s (UCX's MB are 2^20); field 2 is avg_lat, us (half the round trip for the _lat tests)."""
    port = free_port()
    srv = subprocess.Popen(["ucx_perftest", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=env, start_new_session=True, text=True)
    s = jobs.register(Server(srv))
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if srv.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"ucx_perftest server did not listen on {port}: {srv.stderr.read()[-500:]}")
            time.sleep(0.02)
        r = run(["ucx_perftest", "127.0.0.1", "-p", str(port), "-t", test, "-s", str(size), "-n", str(iters),
                 "-w", str(warmup), "-v"], timeout=180, env=env, check=False)
        if r.returncode != 0:
            raise BenchError(f"ucx_perftest {test}: {(r.stdout + r.stderr).strip()[-800:]}")
        last = [ln for ln in r.stdout.splitlines() if re.match(r"^\s*\d+,", ln)]
        if not last:
            raise BenchError(f"ucx_perftest {test}: no result line in {r.stdout[-500:]}")
        return float(last[-1].split(",")[field])
    finally:
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        s.stop()


# ------------------------------------------------------------------ timing

def dd_read(path, expect):
    t0 = time.monotonic()
    r = run(["dd", f"if={path}", "of=/dev/null", "bs=1M"])
    dt = time.monotonic() - t0
    m = re.search(r"^(\d+) bytes", r.stderr, re.M)
    if not m or int(m.group(1)) != expect:
        raise BenchError(f"dd read of {path}: expected {expect} bytes, got: {r.stderr.strip()}")
    return expect / MIB / dt


def dd_write(path, mib):
    t0 = time.monotonic()
    run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync"])
    return mib / (time.monotonic() - t0)


def quiet(max_wait=1.5, limit=0.15):
    """Waits up to max_wait s for the CPUs to be idle; returns how busy they were."""
    return timing.quiet(max_wait, limit)


def delta(a, b):
    return {k: b[k] - a.get(k, 0) for k in b}


# ------------------------------------------------------------------- bench

class Bench:
    def __init__(self, o, root, base_env, launcher):
        self.o, self.root, self.base_env, self.launcher = o, root, base_env, launcher
        self.res = {}   # free-form results, also dumped as JSON
        self.busy = []  # CPU busy fraction before each measurement
        self.loads = []
        self.jobs = []

    def job(self, name, n, tls, bulk=None):
        j = Job(self.root, name, n, tls, bulk, self.base_env, self.launcher)
        self.jobs.append(j)
        return j.start()

    def note_load(self, where):
        self.loads.append((where, timing.loadavg()))

    def ucx_env(self, tls):
        env = dict(self.base_env)
        env["UCX_TLS"] = tls
        return env

    # -- 1 + 2: remote cold read against perftest, cached read against owned
    def read_tls(self, tls, bulk_forced):
        """Read tests on tls; returns the 3-rank auto job still running if the idle test wants it."""
        o = self.o
        size = o.size_mib * MIB
        key = tls.replace(",", "+")
        keep = None
        for bulk in ("auto", bulk_forced):
            j = self.job(f"read-{key}-{bulk}", 3, tls, None if bulk == "auto" else bulk)
            try:
                self.note_load(f"read {tls} {bulk}")
                big1 = os.path.join(j.mnt(1), "big")
                big0 = os.path.join(j.mnt(0), "big")
                w = dd_write(big1, o.size_mib)
                log(f"  wrote {o.size_mib} MiB on rank 1 at {w:.0f} MiB/s")
                owner = os.getxattr(big0, "user.dsdfs.owner").decode()
                if not owner.startswith("1"):
                    raise BenchError(f"{big0}: owner is '{owner}', expected rank 1")
                rows = self.res.setdefault("read", {}).setdefault(f"{tls}|{bulk}", [])
                for rep in range(o.reps):
                    row = {}
                    if bulk == "auto":
                        # The limit, interleaved with dsdfs (same machine state), ranks idle.
                        for test in ("ucp_am_bw", "ucp_get"):
                            self.busy.append(quiet())
                            try:
                                row[test] = perftest(self.ucx_env(tls), test, MIB, o.size_mib, 16)
                            except BenchError as e:
                                log(f"  {e}")
                                row[test] = None
                    # Disk limit: the owner's store file, cold.
                    drop_caches()
                    self.busy.append(quiet())
                    row["disk"] = dd_read(os.path.join(j.store(1), "files", "big"), size)
                    if bulk == "auto":
                        # What the reader pays to fill its cache file: a page-cache write of the same size.
                        fill = os.path.join(self.root, "fill")
                        drop_caches()
                        self.busy.append(quiet())
                        t0 = time.monotonic()
                        run(["dd", "if=/dev/zero", f"of={fill}", "bs=1M", f"count={o.size_mib}"])
                        row["fill"] = o.size_mib / (time.monotonic() - t0)
                        os.unlink(fill)
                    # A new version on rank 1 makes rank 0's cache stale: a full remote fetch.
                    os.utime(big1, None)
                    drop_caches()
                    self.busy.append(quiet())
                    s0, s1 = j.stats(0), j.stats(1)
                    c0, c1 = proc_cpu_ticks(j.pids[0]), proc_cpu_ticks(j.pids[1])
                    row["dsdfs"] = dd_read(big0, size)
                    row["cpu_reader"] = (proc_cpu_ticks(j.pids[0]) - c0) / CLK_TCK
                    row["cpu_owner"] = (proc_cpu_ticks(j.pids[1]) - c1) / CLK_TCK
                    d0, d1 = delta(s0, j.stats(0)), delta(s1, j.stats(1))
                    row["remote_bytes"] = d0["bytes_read_remote"]
                    row["served_bytes"] = d1["bytes_served_to_peers"]
                    row["rpcs"] = d0["rpcs_sent"]
                    row["misses"] = d0["cache_misses"]
                    if d0["bytes_read_remote"] != size:
                        log(f"  WARNING: cold read fetched {d0['bytes_read_remote']} bytes, expected {size}")
                    row["path"] = "am" if d1["bytes_served_to_peers"] >= size else "rma"
                    # Again with the owner's page cache warm (only the reader's cache is stale):
                    # the transfer path without the owner's disk.
                    os.utime(big1, None)
                    run(["sync"])
                    self.busy.append(quiet())
                    row["dsdfs_warm"] = dd_read(big0, size)
                    rows.append(row)
                    log(f"  {tls} {bulk} rep {rep}: dsdfs {row['dsdfs']:.0f} MiB/s ({row['path']}), owner warm {row['dsdfs_warm']:.0f}, "
                        f"am_bw {row.get('ucp_am_bw') or 0:.0f}, get {row.get('ucp_get') or 0:.0f}, "
                        f"disk {row['disk']:.0f}, fill {row.get('fill') or 0:.0f}; CPU s reader {row['cpu_reader']:.2f} owner {row['cpu_owner']:.2f}; "
                        f"{row['rpcs']} RPCs")
                if bulk == "auto" and "cached" in o.tests:
                    self.cached(j, tls, size)
                # The big files go now, by their owners (a long store removal at stop
                # would be cut short by mpirun's SIGKILL, see Job.stop).
                for f in (big1, os.path.join(j.mnt(0), "own")):
                    if os.path.exists(f):
                        os.unlink(f)
                if bulk == "auto" and "idle" in o.tests:
                    keep = j
            finally:
                if j is not keep:
                    j.stop()
        return keep

    def cached(self, j, tls, size):
        own0 = os.path.join(j.mnt(0), "own")
        big0 = os.path.join(j.mnt(0), "big")
        dd_write(own0, self.o.size_mib)
        rows = self.res.setdefault("cached", {}).setdefault(tls, [])
        for rep in range(self.o.reps):
            row = {}
            for state in ("warm", "cold"):
                for target in (("own", "cached") if rep % 2 == 0 else ("cached", "own")):
                    path = own0 if target == "own" else big0
                    if state == "cold":
                        drop_caches()
                    else:
                        dd_read(path, size)  # the same history for both: one read before
                    self.busy.append(quiet())
                    s0, s1 = j.stats(0), j.stats(1)
                    row[f"{target}_{state}"] = dd_read(path, size)
                    if target == "cached":
                        d0, d1 = delta(s0, j.stats(0)), delta(s1, j.stats(1))
                        row[f"proof_{state}"] = {"bytes_read_remote": d0["bytes_read_remote"],
                                                 "cache_hits": d0["cache_hits"],
                                                 "cache_misses": d0["cache_misses"],
                                                 "rpcs_sent": d0["rpcs_sent"],
                                                 "owner_bytes_served": d1["bytes_served_to_peers"]}
            rows.append(row)
            log(f"  cached {tls} rep {rep}: warm cached {row['cached_warm']:.0f} own {row['own_warm']:.0f}; "
                f"cold cached {row['cached_cold']:.0f} own {row['own_cold']:.0f} MiB/s; "
                f"proof {row['proof_cold']}")

    # -- 3: idle CPU
    def idle(self, jobs):
        """Watches every rank of the jobs (all idle, nothing else of ours running) over one window."""
        os.sync()
        time.sleep(2)
        self.note_load("idle")
        t0 = time.monotonic()
        c0 = {(j.tls, r): proc_cpu_ticks(p) for j in jobs for r, p in j.pids.items()}
        x0 = {(j.tls, r): proc_ctx_switches(p) for j in jobs for r, p in j.pids.items()}
        time.sleep(self.o.idle_seconds)
        dt = time.monotonic() - t0
        for j in jobs:
            j.check()
            rows = self.res.setdefault("idle", {}).setdefault(j.tls, {})
            for r, p in j.pids.items():
                rows[r] = {"cpu_s": (proc_cpu_ticks(p) - c0[(j.tls, r)]) / CLK_TCK, "seconds": dt,
                           "ctx": proc_ctx_switches(p) - x0[(j.tls, r)]}
            log(f"  idle {j.tls} over {dt:.0f} s: " + ", ".join(
                f"rank {r} {v['cpu_s']:.2f} CPU s, {v['ctx']} switches" for r, v in rows.items()))

    # -- 4 + 5: jobs of 1, 2, 4 ranks alive at once
    def scale(self):
        o = self.o
        native = os.path.join(self.root, "native")
        os.makedirs(native)
        jobs = {}
        try:
            for n in (1, 2, 4):
                jobs[n] = self.job(f"scale-n{n}", n, o.scale_tls)
            self.note_load("scale")
            if "write" in o.tests:
                self.writes(jobs, native)
            if "meta" in o.tests:
                self.meta(jobs, native)
            if "rpc" in o.tests:
                self.rpc(jobs[2], o.scale_tls)
        finally:
            for j in jobs.values():
                j.stop()

    def writes(self, jobs, native):
        o = self.o
        targets = [("native", None, 0)] + [(f"N={n}", jobs[n], r) for n in (1, 2, 4) for r in range(n)]
        rows = self.res.setdefault("write", {})
        for rep in range(o.reps_write):
            k = rep % len(targets)
            for name, j, r in targets[k:] + targets[:k]:
                d = native if j is None else j.mnt(r)
                f = os.path.join(d, f"w{rep}")
                open(f, "w").close()  # the create (and its locator claim) stays outside the timed window
                os.sync()
                self.busy.append(quiet())
                if j is not None:
                    st = {rr: j.stats(rr) for rr in range(j.n)}
                v = dd_write(f, o.write_mib)
                rec = {"mibs": v}
                if j is not None:
                    rec["rpcs_sent"] = delta(st[r], j.stats(r))["rpcs_sent"]
                    rec["rpcs_served_others"] = sum(delta(st[rr], j.stats(rr))["rpcs_served"]
                                                    for rr in range(j.n) if rr != r)
                os.unlink(f)
                rows.setdefault(f"{name}|{r}", []).append(rec)
            log(f"  write rep {rep}: " + ", ".join(f"{key.replace('|', ' r')} {v[-1]['mibs']:.0f}"
                                                   for key, v in rows.items()))

    def create_files(self, d, count):
        buf = b"x" * 4096
        t0 = time.monotonic()
        for i in range(count):
            fd = os.open(os.path.join(d, f"f{i:07d}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
            if os.write(fd, buf) != 4096:
                raise BenchError("short write")
            os.close(fd)
        return count / (time.monotonic() - t0)

    def appends(self, path, count, reopen=False):
        rec = b"a" * 63 + b"\n"
        t0 = time.monotonic()
        if reopen:
            for _ in range(count):
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                os.write(fd, rec)
                os.close(fd)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            for _ in range(count):
                if os.write(fd, rec) != 64:
                    raise BenchError("short append")
            os.close(fd)
        return count / (time.monotonic() - t0)

    @staticmethod
    def per_op_us(fn, count):
        t0 = time.monotonic()
        for _ in range(count):
            fn()
        return (time.monotonic() - t0) / count * 1e6

    def rpc(self, j, tls):
        """One small remote call against UCX's round trip, all on tls, interleaved per repetition."""
        o = self.o
        rows = self.res.setdefault("rpc", [])
        env = self.ucx_env(tls)
        n = o.appends
        rec64 = b"r" * 63 + b"\n"
        for rep in range(o.reps_meta):
            f1 = os.path.join(j.mnt(1), f"rpc{rep}")
            f0 = os.path.join(j.mnt(0), f"rpc{rep}")
            with open(f1, "wb") as f:
                f.write(b"x" * 4096)
            if os.getxattr(f0, "user.dsdfs.owner").decode().split()[0] != "1":
                raise BenchError(f"{f0} not owned by rank 1")
            rec = {}
            self.busy.append(quiet())
            rec["am_rtt_us"] = 2 * perftest(env, "ucp_am_lat", 64, 20000, 2000, field=2)
            self.busy.append(quiet())
            s1 = j.stats(1)
            rec["fuse_us"] = self.per_op_us(lambda: os.getxattr(f1, "user.dsdfs.owner"), n)
            rec["fuse_rpcs"] = delta(s1, j.stats(1))["rpcs_sent"] / n
            self.busy.append(quiet())
            s0 = j.stats(0)
            rec["stat_us"] = self.per_op_us(lambda: os.stat(f0), n)
            s0b = j.stats(0)
            rec["stat_rpcs"] = delta(s0, s0b)["rpcs_sent"] / n
            rec["stat_by_op"] = breakdown(rpcs_by_op(s0, s0b), n)
            fd = os.open(f0, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                self.busy.append(quiet())
                s0 = j.stats(0)
                rec["append_us"] = self.per_op_us(lambda: os.write(fd, rec64), n)
                s0b = j.stats(0)
                rec["append_rpcs"] = delta(s0, s0b)["rpcs_sent"] / n
                rec["append_by_op"] = breakdown(rpcs_by_op(s0, s0b), n)
            finally:
                os.close(fd)
            if os.stat(f1).st_size != 4096 + 64 * n:
                raise BenchError(f"{f1}: {os.stat(f1).st_size} bytes after {n} appends")
            os.unlink(f1)
            rows.append(rec)
            log(f"  rpc rep {rep}: " + ", ".join(f"{k} {v:.1f}" for k, v in rec.items() if not k.endswith("by_op")))

    def meta(self, jobs, native):
        o = self.o
        rows = self.res.setdefault("meta", {})
        for rep in range(o.reps_meta):
            # creates: rank 0 of each job, and native
            order = [("native", None), ("N=1", jobs[1]), ("N=2", jobs[2]), ("N=4", jobs[4])]
            k = rep % len(order)
            for name, j in order[k:] + order[:k]:
                d = os.path.join(native if j is None else j.mnt(0), f"c{rep}")
                os.mkdir(d)
                os.sync()
                self.busy.append(quiet())
                s = j.stats(0) if j else None
                v = self.create_files(d, o.files)
                rec = {"rate": v}
                if j:
                    rec["rpcs_per_op"] = delta(s, j.stats(0))["rpcs_sent"] / o.files
                rows.setdefault(f"create|{name}", []).append(rec)
                # Untimed: remove them while their 4 KiB are still only in the page cache
                # (no blocks allocated, so no synchronous discard; a store full of synced
                # files takes long to remove at stop).
                for i in range(o.files):
                    os.unlink(os.path.join(d, f"f{i:07d}"))
                os.rmdir(d)
            # appends: remote (rank 0 -> file of rank 1), own (rank 1 -> its file), native
            for name, j in [("native", None), ("N=2", jobs[2]), ("N=4", jobs[4])]:
                if j is None:
                    f = os.path.join(native, f"a{rep}")
                    open(f, "w").close()
                    self.busy.append(quiet())
                    rows.setdefault("append|native", []).append({"rate": self.appends(f, o.appends)})
                    self.busy.append(quiet())
                    rows.setdefault("append_reopen|native", []).append(
                        {"rate": self.appends(f, o.appends // 5, reopen=True)})
                    continue
                f1 = os.path.join(j.mnt(1), f"a{rep}")
                f0 = os.path.join(j.mnt(0), f"a{rep}")
                open(f1, "w").close()
                if os.getxattr(f0, "user.dsdfs.owner").decode().split()[0] != "1":
                    raise BenchError(f"{f0} not owned by rank 1")
                self.busy.append(quiet())
                s = j.stats(0)
                v = self.appends(f0, o.appends)
                rpcs = delta(s, j.stats(0))["rpcs_sent"] / o.appends
                rows.setdefault(f"append|{name}", []).append({"rate": v, "rpcs_per_op": rpcs})
                self.busy.append(quiet())
                s = j.stats(0)
                n2 = o.appends // 5
                v = self.appends(f0, n2, reopen=True)
                rows.setdefault(f"append_reopen|{name}", []).append(
                    {"rate": v, "rpcs_per_op": delta(s, j.stats(0))["rpcs_sent"] / n2})
                if j is jobs[2]:  # the owner appending to its own file, for scale
                    self.busy.append(quiet())
                    rows.setdefault("append|own", []).append({"rate": self.appends(f1, o.appends)})
                want = (o.appends + n2 + (o.appends if j is jobs[2] else 0)) * 64
                got = os.stat(f1).st_size
                if got != want:
                    raise BenchError(f"{f1}: {got} bytes after appends, expected {want}")
            log(f"  meta rep {rep}: " + ", ".join(f"{key} {v[-1]['rate']:.0f}/s" for key, v in rows.items()))


# ------------------------------------------------------------------ report

def report(b, facts, elapsed):
    o = b.o
    res = b.res
    row, header = tables.row, tables.header
    L = []
    L.append(f"Run of `{PROG}{' --quick' if o.quick else ''}` on {datetime.date.today().isoformat()}, "
             f"{elapsed / 60:.1f} min. Medians, with (min–max) over the repetitions; MiB/s are 2^20 bytes/s "
             f"(ucx_perftest's \"MB/s\" are the same unit).")
    L.append("")
    for k, v in facts:
        L.append(f"- {k}: {v}")
    busy = [x for x in b.busy if x is not None]
    if busy:
        L.append(f"- machine: load average {', '.join(f'{w} {l:.1f}' for w, l in b.loads)}; CPUs busy "
                 f"before a measurement (other processes): median {statistics.median(busy) * 100:.0f}%, "
                 f"max {max(busy) * 100:.0f}%")
    left = [f"{j.name} rank {', '.join(map(str, j.stores_left))}" for j in b.jobs if j.stores_left]
    if left:
        L.append(f"- stores left behind after a SIGTERM to mpirun (rank killed before it had removed its "
                 f"store): {'; '.join(left)}")
    L.append("")

    if "read" in res:
        L.append(f"**Remote sequential read, cold** ({o.size_mib} MiB written on rank 1, read on rank 0 with "
                 f"`dd bs=1M` after `drop_caches`; {o.reps} repetitions; perftest at 1 MiB messages, "
                 f"{o.size_mib} iterations, interleaved with the reads). Target: 0.8x of the better perftest.")
        L.append("")
        L += header([("UCX_TLS", "l"), ("--bulk", "l"), ("path taken", "l"), ("dsdfs MiB/s", "r"),
                     ("ucp_am_bw MiB/s", "r"), ("ucp_get MiB/s", "r"), ("dsdfs / better", "r"), ("≥ 0.8x", "c"),
                     ("owner's disk, cold MiB/s", "r"), ("dsdfs / min(better, disk)", "r"),
                     ("dsdfs, owner warm MiB/s", "r"), ("warm / better", "r"), ("page-cache fill MiB/s", "r"),
                     ("CPU s per GiB reader / owner", "r"), ("RPCs", "r")])
        for key, rows in res["read"].items():
            tls, bulk = key.split("|")
            perf = res["read"].get(f"{tls}|auto", [])
            am = [r.get("ucp_am_bw") for r in perf]
            get = [r.get("ucp_get") for r in perf]
            best = max([x for x in (median(am), median(get)) if x is not None], default=None)
            d = [r["dsdfs"] for r in rows]
            warm = [r.get("dsdfs_warm") for r in rows]
            disk = [r["disk"] for r in rows]
            rt = ratio(median(d), best)
            gib = o.size_mib / 1024
            paths = sorted({r["path"] for r in rows})
            L.append(row([tls, bulk, "/".join(paths), fmt_range(d), fmt_range(am), fmt_range(get),
                          fmt_x(rt), verdict(rt, 0.8), fmt_range(disk),
                          fmt_x(ratio(median(d), min(best, median(disk)) if best else None)),
                          fmt_range(warm), fmt_x(ratio(median(warm), best)),
                          fmt_range([r.get("fill") for r in perf]),
                          f"{median([r['cpu_reader'] for r in rows]) / gib:.2f} / "
                          f"{median([r['cpu_owner'] for r in rows]) / gib:.2f}",
                          f"{median([r['rpcs'] for r in rows]):.0f}"]))
        L.append("")
        L.append("\"path taken\" is read off the owner's counters: `am` when its `bytes_served_to_peers` grew by "
                 "the file size, `rma` when it did not move (one-sided gets). perftest and page-cache fill figures of "
                 "a forced row are those of the auto row of the same transport (measured in the same run). "
                 "Page-cache fill: `dd if=/dev/zero bs=1M` of the same size into a new file after `drop_caches`, "
                 "no fsync: what writing the reader's cache file costs. \"owner warm\": the same read right after, "
                 "with a new version on rank 1 but its pages still in the owner's page cache (no `drop_caches`): "
                 "the transfer without the owner's disk. min(better, disk): the lower of the two limits of a "
                 "cold read measured in the same run.")
        L.append("")

    if "cached" in res:
        L.append("**Cached read** (second open of the remote file on rank 0, owner unchanged) against an owned "
                 "file of the same size on rank 0; warm = read right after a first read, cold = after "
                 "`drop_caches`. Target 0.9x.")
        L.append("")
        L += header([("UCX_TLS", "l"), ("state", "l"), ("cached remote MiB/s", "r"), ("owned MiB/s", "r"),
                     ("cached / owned", "r"), ("≥ 0.9x", "c"),
                     ("proof (per cached read: bytes fetched, cache hits, misses, RPCs, owner bytes served)", "l")])
        for tls, rows in res["cached"].items():
            for state in ("warm", "cold"):
                c = [r[f"cached_{state}"] for r in rows]
                w = [r[f"own_{state}"] for r in rows]
                rt = ratio(median(c), median(w))
                pr = [r[f"proof_{state}"] for r in rows]
                proof = "; ".join(f"{p['bytes_read_remote']} B, {p['cache_hits']} hit, {p['cache_misses']} miss, "
                                  f"{p['rpcs_sent']} RPC, {p['owner_bytes_served']} B" for p in pr[:1])
                allzero = all(p["bytes_read_remote"] == 0 and p["cache_hits"] >= 1 for p in pr)
                L.append(row([tls, state, fmt_range(c), fmt_range(w), fmt_x(rt), verdict(rt, 0.9),
                              proof + (" (same in every repetition)" if allzero else " (**not** all from cache)")]))
        L.append("")

    if "idle" in res:
        L.append("**Idle CPU** of each rank of a 3-rank job (utime + stime of its `dsdfs-launch` from "
                 "`/proc/PID/stat`, all threads): the jobs of the read tests of both transports, watched "
                 "together after all reads, nothing else of the bench running. Target < 0.1 s.")
        L.append("")
        L += header([("UCX_TLS", "l"), ("rank", "r"), ("seconds watched", "r"), ("CPU seconds", "r"),
                     ("< 0.1 s", "c"), ("context switches (all threads)", "r")])
        for tls, rows in res["idle"].items():
            for r, v in sorted(rows.items()):
                L.append(row([tls, r, f"{v['seconds']:.0f}", f"{v['cpu_s']:.2f}",
                              verdict(v["cpu_s"], 0.1, above=False), v["ctx"]]))
        L.append("")

    if "write" in res:
        rows = res["write"]
        base = median([x["mibs"] for x in rows.get("N=1|0", [])])
        nat = median([x["mibs"] for x in rows.get("native|0", [])])
        L.append(f"**Local sequential write** (`dd bs=1M count={o.write_mib} conv=fsync` to the rank's own mount, "
                 f"one rank at a time; jobs of 1, 2 and 4 ranks alive at once, UCX_TLS={o.scale_tls}; "
                 f"{o.reps_write} repetitions, order rotated). Target: every rank ≥ 0.95x of N=1.")
        L.append("")
        L += header([("job", "l"), ("rank", "r"), ("MiB/s", "r"), ("/ N=1", "r"), ("≥ 0.95x", "c"),
                     ("/ native", "r"), ("RPCs during the writes: sent by the writer, served by the others", "l")])
        for key, recs in rows.items():
            name, r = key.split("|")
            v = [x["mibs"] for x in recs]
            if name == "native":
                L.append(row(["native (store's fs)", "–", fmt_range(v), "–", "–", "1.00x", "–"]))
                continue
            rt = ratio(median(v), base)
            rpc = f"{sum(x['rpcs_sent'] for x in recs)}, {sum(x['rpcs_served_others'] for x in recs)}"
            L.append(row([name, r, fmt_range(v), fmt_x(rt), verdict(rt, 0.95) if name != "N=1" else "–",
                          f"{ratio(median(v), nat) or 0:.2f}x", rpc]))
        L.append("")

    if "meta" in res:
        rows = res["meta"]
        L.append(f"**Create and append rates** (python3 loop: `open(O_CREAT|O_EXCL)` + write 4 KiB + close, "
                 f"{o.files} files in a new directory by rank 0; appends: 64-byte `write`s to one `O_APPEND` fd, "
                 f"{o.appends} per run, or open + write + close each ({o.appends // 5}); {o.reps_meta} repetitions).")
        L.append("")
        L += header([("what", "l"), ("job", "l"), ("ops/s", "r"), ("/ N=1 (creates) or / own (appends)", "r"),
                     ("RPCs per op sent by rank 0", "r")])
        cbase = median([x["rate"] for x in rows.get("create|N=1", [])])
        abase = median([x["rate"] for x in rows.get("append|own", [])])
        labels = {"create": "create + 4 KiB + close", "append": "append 64 B (one fd)",
                  "append_reopen": "open + append 64 B + close"}
        for key, recs in rows.items():
            what, job = key.split("|")
            v = [x["rate"] for x in recs]
            rp = [x["rpcs_per_op"] for x in recs if "rpcs_per_op" in x]
            if job == "native":
                rt = None
            elif what == "create":
                rt = ratio(median(v), cbase)
            elif what == "append" and job != "own":
                rt = ratio(median(v), abase)
            else:
                rt = None
            jobname = {"own": "N=2, rank 1 into its own file (writeback cache)",
                       "native": "native (store's fs)"}.get(
                job, f"{job}, rank 0 into rank 1's file" if what != "create" else job)
            L.append(row([labels[what], jobname, fmt_range(v), "–" if rt is None else f"{rt:.2f}x",
                          f"{median(rp):.2f}" if rp else "–"]))
        L.append("")
    if "rpc" in res:
        rows = res["rpc"]
        am = median([x["am_rtt_us"] for x in rows])
        fuse = median([x["fuse_us"] for x in rows])
        L.append(f"**One small remote call** (N=2 job, UCX_TLS={o.scale_tls}; {o.appends} calls per run, "
                 f"{o.reps_meta} repetitions; us per call, median and range). The RPC's share is a call's "
                 f"time less the FUSE request answered locally; target (issue 11): within 2x of UCX's round "
                 f"trip (`ucx_perftest -t ucp_am_lat -s 64`: twice its one-way latency).")
        L.append("")
        L += header([("call", "l"), ("us per call", "r"), ("RPCs per call, by kind", "l"), ("RPC share, us", "r"),
                     ("/ UCX round trip", "r"), ("≤ 2x", "c")])
        L.append(row(["UCX active message round trip, 64 B", fmt_range([x["am_rtt_us"] for x in rows], 1),
                      "–", "–", "1.00x", "–"]))
        L.append(row(["FUSE request answered locally (getxattr)", fmt_range([x["fuse_us"] for x in rows], 1),
                      f"{median([x['fuse_rpcs'] for x in rows]):.2f}", "–", "–", "–"]))
        for key, label in (("stat", "stat of rank 1's file from rank 0"),
                           ("append", "64-byte append to rank 1's file (one fd)")):
            v = median([x[f"{key}_us"] for x in rows])
            share = v - fuse
            rt = share / am if am else None
            L.append(row([label, fmt_range([x[f"{key}_us"] for x in rows], 1),
                          rows[-1][f"{key}_by_op"], f"{share:.1f}",
                          fmt_x(rt), verdict(rt, 2.0, above=False)]))
        L.append("")
    return "\n".join(L)


def write_doc(path, text):
    """The results section of --doc; a missing file is made with just that section."""
    begin, end = docs.markers(DOC_TOOL, DOC_SECTION)
    docs.write_section(path, DOC_TOOL, DOC_SECTION, text, new_file=f"# bench/cluster results\n\n{begin}\n{end}\n")


def main():
    set_log("cluster", elapsed=True)
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions, 10 s idle (~3 min)")
    ap.add_argument("--tests", default=",".join(ALL_TESTS), help=f"comma list of {','.join(ALL_TESTS)}")
    ap.add_argument("--tls", default="tcp,sm", help="transports for read/cached/idle: tcp and/or sm (sm,self)")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"), help="where the temporary directory goes")
    ap.add_argument("--size-mib", type=int, help="remote read file size (default 1024, --quick 256)")
    ap.add_argument("--reps", type=int, help="read repetitions (default 3, --quick 2)")
    ap.add_argument("--idle-seconds", type=float, help="idle window (default 60, --quick 10)")
    ap.add_argument("--write-mib", type=int, help="local write size (default 256, --quick 128)")
    ap.add_argument("--files", type=int, help="files per create run (default 2000, --quick 500)")
    ap.add_argument("--appends", type=int, help="appends per run (default 5000, --quick 1000)")
    ap.add_argument("--scale-tls", default="tcp", help="UCX_TLS of the N=1,2,4 jobs (default tcp)")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a load average below this (1.5)")
    ap.add_argument("--load-wait", type=float, default=1200, help="wait at most this long for it (s, 1200)")
    ap.add_argument("--doc", default=DEFAULT_DOC, help="file with the markers")
    ap.add_argument("--no-doc", action="store_true", help="only print the results")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    o = ap.parse_args()
    q = o.quick
    o.size_mib = o.size_mib or (256 if q else 1024)
    o.reps = o.reps or (2 if q else 3)
    o.reps_write = 3 if q else 5
    o.reps_meta = 2 if q else 3
    o.idle_seconds = o.idle_seconds or (10 if q else 60)
    o.write_mib = o.write_mib or (128 if q else 256)
    o.files = o.files or (500 if q else 2000)
    o.appends = o.appends or (1000 if q else 5000)
    o.tests = [t for t in o.tests.split(",") if t]
    for t in o.tests:
        if t not in ALL_TESTS:
            ap.error(f"unknown test {t}")
    tls_list = []
    for t in o.tls.split(","):
        if t == "tcp":
            tls_list.append(("tcp", "rma"))
        elif t == "sm":
            tls_list.append(("sm,self", "rma"))
        elif t:
            ap.error(f"--tls: tcp or sm, not {t}")

    if os.geteuid() != 0:
        sys.exit(f"{PROG}: needs root (FUSE mounts with allow_other, drop_caches)")
    launcher = DEFAULT_LAUNCHER
    for tool in ("mpirun", "ucx_perftest", "ucx_info", "dd", "fusermount3"):
        if not shutil.which(tool):
            sys.exit(f"{PROG}: {tool} not found")
    if not os.access(launcher, os.X_OK):
        sys.exit(f"{PROG}: {launcher} not built (ninja -C build)")

    jobs.install_signal_handlers()

    start_load = timing.wait_for_load(o.max_load, o.load_wait, log=log)
    root = tempfile.mkdtemp(prefix="dsdfs-cluster.", dir=o.dir)
    b = Bench(o, root, loopback_env(), launcher)
    b.loads.append(("at start", start_load))
    t_start = time.monotonic()
    ok = False
    try:
        facts = cluster_facts(launcher, root)
        if "read" in o.tests or "cached" in o.tests or "idle" in o.tests:
            idle_jobs = []
            for tls, forced in tls_list:
                j = b.read_tls(tls, forced)
                if j:
                    idle_jobs.append(j)
            if idle_jobs:
                # One window for both transports: their jobs are independent processes.
                b.idle(idle_jobs)
                for j in idle_jobs:
                    j.stop()
        if "write" in o.tests or "meta" in o.tests or "rpc" in o.tests:
            b.scale()
        b.note_load("at end")
        ok = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
    except BenchError as e:
        log(f"error: {e}")
    finally:
        jobs.cleanup(root, keep=o.keep)
    if not ok:
        sys.exit(1)
    text = report(b, facts, time.monotonic() - t_start)
    print(text)
    if o.json:
        with open(o.json, "w") as f:
            json.dump({"results": b.res, "loads": b.loads, "busy": b.busy}, f, indent=1, default=str)
    if not o.no_doc:
        try:
            write_doc(o.doc, text)
        except BenchError as e:
            sys.exit(f"{PROG}: {e}; printed only")
        log(f"results written to {o.doc}")


if __name__ == "__main__":
    main()
