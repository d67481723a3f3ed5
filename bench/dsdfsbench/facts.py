# SPDX-License-Identifier: Apache-2.0
"""The machine facts a report starts with."""

import os
import platform

from . import mounts
from .common import REPO, BenchError, run


def cpu_model(path="/proc/cpuinfo"):
    """The first "model name" of /proc/cpuinfo, or "?"."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def git_tree(directory):
    """(short HEAD commit, whether tracked files have uncommitted changes) of the git tree
    holding directory, or None if it is in none (or git is missing)."""
    try:
        top = run(["git", "-C", directory, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (BenchError, FileNotFoundError, NotADirectoryError):
        return None
    return top, bool(dirty)


def cluster_facts(launcher, root):
    """The facts of bench/cluster.py and bench/dirops.py: machine, stores, transport, dsdfs."""
    facts = []
    u = platform.uname()
    facts.append(("machine", f"{u.system} {u.release}, {os.cpu_count()} x {cpu_model()}"))
    m = mounts.fs_of(root)
    src = "?" if m.fstype == "?" else f"{m.fstype} on {m.source}"
    facts.append(("stores", f"{src} (under {os.path.dirname(root)})"))
    ucx = run(["ucx_info", "-v"]).stdout.splitlines()[0].lstrip("# ")
    ompi = run(["mpirun", "--version"]).stdout.splitlines()[0]
    facts.append(("transport", f"UCX {ucx}, {ompi}, UCX_NET_DEVICES=lo (scripts/loopback-env.sh)"))
    ver = run([launcher, "--version"]).stdout.strip()
    tree = git_tree(REPO)
    if tree:
        ver += f", tree at {tree[0]}{' with uncommitted changes' if tree[1] else ''}"
    facts.append(("dsdfs", ver))
    return facts
