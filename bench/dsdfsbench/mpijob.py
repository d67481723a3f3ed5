# SPDX-License-Identifier: Apache-2.0
"""One mpirun of dsdfs-launch on this machine: N ranks, each with its own mount point and store.

Used by bench/cluster.py and bench/dirops.py. UCX stays on loopback
(scripts/loopback-env.sh). A job is stopped by the PID of its mpirun, then
ranks that outlived it by their PIDs, then mounts left behind are unmounted.
"""

import os

from . import jobs, mounts
from .common import REPO, BenchError, log, run, tail


def loopback_env():
    """The environment scripts/loopback-env.sh gives (sourced by bash, so it stays the one truth)."""
    r = run(["bash", "-c", f". '{REPO}/scripts/loopback-env.sh' && env -0"])
    env = {}
    for item in r.stdout.split("\0"):
        if "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


def rank_pids(mpirun_pid, program="dsdfs-launch"):
    """Rank -> PID of each `program` below mpirun_pid, by OMPI_COMM_WORLD_RANK in its environment."""
    pids = {}
    for pid in jobs.descendants(mpirun_pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != program:
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
            pids[int(env[b"OMPI_COMM_WORLD_RANK"])] = pid
        except (OSError, KeyError, ValueError):
            continue
    return pids


class Job:
    """One mpirun of dsdfs-launch: N ranks on this machine, their mounts and stores."""

    def __init__(self, root, name, n, tls, bulk, base_env, launcher, threads=None):
        self.name, self.n, self.tls, self.bulk = name, n, tls, bulk
        self.dir = os.path.join(root, name)
        self.launcher = launcher
        self.env = dict(base_env)
        self.env["UCX_TLS"] = tls
        self.threads = threads
        self.proc = None
        self.pids = {}
        self.stores_left = []
        self.log_path = os.path.join(self.dir, "job.log")

    def mnt(self, r):
        return os.path.join(self.dir, f"mnt{r}")

    def store(self, r):
        return os.path.join(self.dir, f"store{r}")

    def start(self, timeout=60):
        os.makedirs(self.dir)
        for r in range(self.n):
            os.makedirs(self.mnt(r))
        cmd = ["mpirun", "-np", str(self.n), "--enable-recovery", self.launcher, os.path.join(self.dir, "mnt%r"),
               "--store", os.path.join(self.dir, "store%r"), "--ready-file", os.path.join(self.dir, "ready%r")]
        if self.bulk:
            cmd += ["--bulk", self.bulk]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        log(f"{self.name}: UCX_TLS={self.tls} {' '.join(cmd)}")
        # Own session: our Ctrl-C handler stops it, by PID.
        self.proc = jobs.start_logged(cmd, self.log_path, env=self.env, cwd=self.dir)
        jobs.register(self)
        ready = [os.path.join(self.dir, f"ready{r}") for r in range(self.n)]
        jobs.wait_until(lambda: all(os.path.exists(f) for f in ready), timeout,
                        f"{self.name}: not every rank ready", check=self.check,
                        detail=lambda: f"; log:\n{tail(self.log_path, 30)}")
        self.pids = rank_pids(self.proc.pid)
        if sorted(self.pids) != list(range(self.n)):
            raise BenchError(f"{self.name}: found rank PIDs {self.pids}, expected {self.n} ranks")
        for r in range(self.n):
            if not mounts.is_mounted(self.mnt(r)):
                raise BenchError(f"{self.name}: {self.mnt(r)} is not mounted")
        return self

    def check(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name}: mpirun exited with {self.proc.returncode}; "
                             f"log:\n{tail(self.log_path, 30)}")

    def stats(self, r):
        raw = os.getxattr(self.mnt(r), "user.dsdfs.stats").decode()
        return {k: int(v) for k, v in (line.split() for line in raw.splitlines() if line.strip())}

    def stop(self):
        if self.proc is None:
            return
        jobs.stop_process(self.proc, f"{self.name}: mpirun", timeout=30)
        for r, pid in self.pids.items():
            # Still there (mpirun was killed)? Only if it is still our rank's dsdfs-launch.
            line = jobs.cmdline(pid)
            if line is not None and self.dir.encode() in line and jobs.pid_alive(pid):
                log(f"{self.name}: rank {r} (PID {pid}) outlived mpirun; SIGTERM")
                jobs.stop_pid(pid, marker=self.dir, timeout=10, name=f"{self.name}: rank {r}")
        for r in range(self.n):
            if os.path.exists(self.store(r)):
                log(f"{self.name}: rank {r} left its store {self.store(r)} behind")
                self.stores_left.append(r)
            m = self.mnt(r)
            if mounts.is_mounted(m):
                log(f"{self.name}: {m} still mounted; lazy unmount")
                mounts.unmount_lazy(m)
        jobs.unregister(self)
        self.proc = None


def _deltas(before, after, prefix, skip):
    out = {}
    for k, v in after.items():
        if k.startswith(prefix) and not skip(k[len(prefix):]):
            n = v - before.get(k, 0)
            if n:
                out[k[len(prefix):]] = n
    return out


def rpcs_by_op(before, after):
    """{op: RPCs sent} between two stats() snapshots, from the rpc_OP counters, nonzero only."""
    return _deltas(before, after, "rpc_", lambda op: op == "failures")


def fuse_by_op(before, after):
    """{op: FUSE requests served} between two stats() snapshots, from the fuse_OP counters, nonzero
    only; FORGETs are left out (the kernel sends them later, in batches)."""
    return _deltas(before, after, "fuse_", lambda op: op.startswith("forget") or op == "batch_forget")
