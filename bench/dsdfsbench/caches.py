# SPDX-License-Identifier: Apache-2.0
"""Dropping the page cache, dentries and inodes (sync first), for cold measurements."""

import os

DROP_CACHES = "/proc/sys/vm/drop_caches"


def can_drop(path=DROP_CACHES):
    """True if this process may write drop_caches (root, and /proc/sys not read-only)."""
    return os.access(path, os.W_OK)


def drop_caches(path=DROP_CACHES):
    """sync, then drop clean page cache, dentries and inodes: the FUSE page cache and the
    store's page cache alike. Raises OSError without the right to."""
    os.sync()
    with open(path, "w") as f:
        f.write("3\n")


def settle(can_drop_caches, path=DROP_CACHES):
    """drop_caches where allowed, else only sync."""
    if can_drop_caches:
        drop_caches(path)
    else:
        os.sync()
