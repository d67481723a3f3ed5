# SPDX-License-Identifier: Apache-2.0
"""Mounts, from /proc/self/mountinfo: which paths are mounted, what holds a path, lazy unmounts."""

import os
import re
import subprocess
from typing import NamedTuple

MOUNTINFO = "/proc/self/mountinfo"


class Mount(NamedTuple):
    point: str
    fstype: str
    source: str


def unescape(field):
    """A mountinfo field with its octal escapes (\\040 space, \\011 tab, \\012 newline,
    \\134 backslash) decoded; bytes that are not UTF-8 stay as surrogates, as os paths do."""
    raw = field.encode("utf-8", "surrogateescape")
    raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8) & 0xFF]), raw)
    return raw.decode("utf-8", "surrogateescape")


def parse_mountinfo(text):
    """[Mount] in mount order from the text of a mountinfo file; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        try:
            dash = fields.index("-", 6)
            out.append(Mount(unescape(fields[4]), fields[dash + 1], unescape(fields[dash + 2])))
        except (ValueError, IndexError):
            continue
    return out


def mounts(path=MOUNTINFO):
    """[Mount] of this process's mount namespace, in mount order."""
    with open(path, errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def resolve(path):
    """path made absolute with the symbolic links of its parent resolved, without touching
    the last component itself (a hung FUSE mount point would block a stat of it)."""
    path = os.path.abspath(path)
    if path == "/":
        return path
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def is_mounted(path, mount_list=None):
    p = resolve(path)
    return any(m.point == p for m in (mounts() if mount_list is None else mount_list))


def mounts_under(root, mount_list=None):
    """Mount points at root or below it (root itself included)."""
    root = resolve(root)
    prefix = root.rstrip("/") + "/"
    return [m.point for m in (mounts() if mount_list is None else mount_list)
            if m.point == root or m.point.startswith(prefix)]


def fs_of(path, mount_list=None):
    """The Mount holding path (the longest mount point above it; the last one mounted there)."""
    path = os.path.realpath(path)
    best = Mount("/", "?", "?")
    for m in (mounts() if mount_list is None else mount_list):
        if (path == m.point or path.startswith(m.point.rstrip("/") + "/")) and len(m.point) >= len(best.point):
            best = m
    return best


def unmount_lazy(path):
    """Detaches whatever is still mounted at path: fusermount3 -u -z, then umount -l (root
    only) if it is still there; a missing tool is passed over. True if nothing is left."""
    for cmd in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return True
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            continue
    return not is_mounted(path)
