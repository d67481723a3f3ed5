# SPDX-License-Identifier: Apache-2.0
"""A marked section of a markdown file (docs/performance.md), replaced in place.

A section is what stands between <!-- TOOL:SECTION:begin --> and
<!-- TOOL:SECTION:end -->, TOOL being bench/run, bench/cluster or bench/dirops
(the markers keep those names). The new text goes between them on lines of its
own; the rest of the file stays as it was, byte for byte.
"""

import os
import shutil

from .common import BenchError


class DocError(BenchError):
    """The markers of a section are missing, repeated or out of order."""


def markers(tool, section):
    return f"<!-- {tool}:{section}:begin -->", f"<!-- {tool}:{section}:end -->"


def block(tool, section, body):
    """The section with its markers: begin, body (without trailing white space), end."""
    begin, end = markers(tool, section)
    return f"{begin}\n{body.rstrip()}\n{end}"


def replace_section(doc, tool, section, body, append_title=None):
    """doc with the section's text replaced by body.

    Without the two markers, the section is appended under a heading
    "## APPEND_TITLE" if append_title is given, else DocError. One marker
    alone, a marker twice, or the end before the begin is always DocError.
    """
    begin, end = markers(tool, section)
    nb, ne = doc.count(begin), doc.count(end)
    if nb == 0 and ne == 0:
        if append_title is None:
            raise DocError(f"no {begin} ... {end} markers; add them where the results go")
        return doc.rstrip("\n") + f"\n\n## {append_title}\n\n{block(tool, section, body)}\n"
    if nb != 1 or ne != 1:
        raise DocError(f"{begin} found {nb} times and {end} {ne} times: each must be there once")
    a = doc.index(begin)
    z = doc.index(end)
    if z < a:
        raise DocError(f"{end} comes before {begin}")
    return doc[:a] + block(tool, section, body) + doc[z + len(end):]


def write_section(path, tool, section, body, append_title=None, new_file=None):
    """Replaces the section in the file at path (see replace_section), atomically (a
    temporary file renamed over it, with the old file's mode and, for root, owner).

    A missing file starts as new_file, or is DocError if new_file is None.
    """
    if os.path.exists(path):
        with open(path) as f:
            doc = f.read()
        old = os.stat(path)
    elif new_file is not None:
        doc, old = new_file, None
    else:
        raise DocError(f"{path} does not exist")
    try:
        text = replace_section(doc, tool, section, body, append_title)
    except DocError as e:
        raise DocError(f"{path}: {e}") from None
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        if old is not None:
            shutil.copymode(path, tmp)
            if os.geteuid() == 0:
                # sudo bench/...: the doc stays its owner's, not root's.
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
