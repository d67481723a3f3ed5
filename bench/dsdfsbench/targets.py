# SPDX-License-Identifier: Apache-2.0
"""Single-node targets of bench/run.py and bench/workloads.py: a plain directory, a dsdfs
mount (one daemon with its own store) or a bindfs mount over the same file system, each
stopped by PID; and the machine facts printed with their results."""

import os
import platform
import shutil

from . import jobs, mounts
from .common import BenchError, log, run, tail
from .facts import cpu_model, git_tree


class Target:
    """A directory to benchmark; for FUSE targets, the daemon serving it."""

    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.proc = None
        self.mountpoint = None
        self.log_path = None
        self.counts_requests = False  # dsdfs: FUSE requests by operation in user.dsdfs.stats

    def requests(self):
        """The daemon's FUSE request counters ({op: count}), or None for other targets."""
        if not self.counts_requests:
            return None
        text = os.getxattr(self.mountpoint, "user.dsdfs.stats").decode()
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("fuse_"):
                out[name[len("fuse_"):]] = int(value)
        return out

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.name}: daemon exited with {self.proc.returncode}; "
                             f"log {self.log_path}:\n{tail(self.log_path)}")

    def start(self, cmd, ready, what):
        """Starts the daemon (registered for cleanup at once) and waits until ready() is true."""
        log(f"{self.name}: {' '.join(cmd)}")
        # Own session: a Ctrl-C on the terminal reaches us, and we stop the daemon.
        self.proc = jobs.start_logged(cmd, self.log_path)
        jobs.register(self)
        jobs.wait_until(ready, 30, f"{self.name}: {what}", check=self.check_alive,
                        detail=lambda: f"; log:\n{tail(self.log_path)}")
        return self

    def stop(self):
        """Stops the daemon by PID, then makes sure nothing stays mounted."""
        jobs.stop_process(self.proc, f"{self.name}: daemon", timeout=20)
        if self.mountpoint and mounts.is_mounted(self.mountpoint):
            log(f"{self.name}: {self.mountpoint} still mounted; lazy unmount")
            mounts.unmount_lazy(self.mountpoint)
        jobs.unregister(self)


def preflight(tools, launchers, hint=""):
    """BenchError unless every tool is on PATH and every dsdfs-launch is executable."""
    for tool in tools:
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (apt-get install {tool}{hint})")
    for path in launchers:
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} is not an executable: build it (ninja -C build) or pass --dsdfs")


def log_daemons():
    """Logs each live target's daemon: running or how it exited, and the end of its log."""
    for t in [x for x in jobs.LIVE if isinstance(x, Target)]:
        state = "running" if t.proc.poll() is None else f"exited with {t.proc.returncode}"
        log(f"{t.name}: daemon {t.proc.pid} {state}; last lines of its log:\n{tail(t.log_path)}")


def start_dsdfs(binary, work, threads, name, extra=()):
    """A dsdfs daemon of its own (store under work), mounted at work/mnt-NAME; extra: more daemon options."""
    t = Target(name, os.path.join(work, f"mnt-{name}"))
    t.mountpoint = t.path
    store = os.path.join(work, f"store-{name}")
    ready = os.path.join(work, f"ready-{name}")
    t.log_path = os.path.join(work, f"{name}.log")
    os.makedirs(t.path)
    t.store_files = os.path.join(store, "files")
    t.counts_requests = True
    cmd = [binary, t.path, "--store", store, "--ready-file", ready]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += list(extra)
    return t.start(cmd, lambda: os.path.exists(ready), "no ready file")


def start_bindfs(work):
    src = os.path.join(work, "bindfs-src")
    t = Target("bindfs", os.path.join(work, "mnt-bindfs"))
    t.mountpoint = t.path
    t.log_path = os.path.join(work, "bindfs.log")
    os.makedirs(src)
    os.makedirs(t.path)
    return t.start(["bindfs", "-f", src, t.path], lambda: mounts.is_mounted(t.path), "not mounted")


def machine_facts(work, binary, label="", tools=("fio",)):
    """Kernel, CPUs, memory, the store's file system, tool versions and the dsdfs build, as (name, text)."""
    facts = []
    uname = platform.uname()
    facts.append(("kernel", f"{uname.system} {uname.release} {uname.machine}"))
    facts.append(("CPUs", f"{os.cpu_count()} x {cpu_model()}"))
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    facts.append(("memory", f"{mem_kb / 1024 / 1024:.1f} GiB"))
    mnt, fstype, src = mounts.fs_of(work)
    dev = os.path.basename(os.path.realpath(src)) if src.startswith("/dev/") else ""
    rot = ""
    if dev and os.path.exists(f"/sys/class/block/{dev}/queue/rotational"):
        with open(f"/sys/class/block/{dev}/queue/rotational") as f:
            rot = ", rotational" if f.read().strip() == "1" else ", non-rotational"
    facts.append(("store file system", f"{fstype} on {src} (mounted at {mnt}{rot}); "
                  f"native dir, dsdfs store and bindfs source all under {work}"))
    for tool in tools:
        if shutil.which(tool):
            facts.append((tool, run([tool, "--version"]).stdout.strip().splitlines()[0]))
    if shutil.which("bindfs"):
        facts.append(("bindfs", run(["bindfs", "--version"]).stdout.strip().splitlines()[0]))
    try:
        facts.append(("libfuse", run(["pkg-config", "--modversion", "fuse3"]).stdout.strip()))
    except (BenchError, FileNotFoundError):
        pass
    ver = run([binary, "--version"]).stdout.strip()
    commit = ""
    # The commit and the uncommitted changes of the tree the binary was built in.
    tree = git_tree(os.path.dirname(os.path.realpath(binary)))
    if tree:
        commit = f", tree at {tree[0]}{' (with uncommitted changes)' if tree[1] else ''}"
    label = f", {label}" if label else ""
    facts.append(("dsdfs", f"{ver}: {binary}{commit}{label}"))
    return facts
