# SPDX-License-Identifier: Apache-2.0
"""The repository's paths, BenchError, log lines, running a command, a log's tail."""

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20
DEFAULT_LAUNCHER = os.path.join(REPO, "build", "launcher", "dsdfs-launch")
DEFAULT_DOC = os.path.join(REPO, "docs", "performance.md")


class BenchError(Exception):
    """The benchmark cannot go on: a tool failed, a daemon died, a doc has no markers."""


_LOG = {"name": "bench", "elapsed": False}
_T0 = time.monotonic()


def set_log(name, elapsed=False):
    """Log lines start with [NAME HH:MM:SS], or [NAME  12.3s] (seconds since start) if elapsed."""
    _LOG["name"] = name
    _LOG["elapsed"] = elapsed


def log_prefix():
    if _LOG["elapsed"]:
        return f"[{_LOG['name']} {time.monotonic() - _T0:6.1f}s]"
    return f"[{_LOG['name']} {time.strftime('%H:%M:%S')}]"


def log(msg):
    print(f"{log_prefix()} {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=None, env=None, check=True, cwd=None):
    """Runs cmd (a list) and returns its CompletedProcess, text stdout and stderr.

    With check, a non-zero exit raises BenchError with the command and the
    end of its output (stdout and stderr). A missing program raises
    FileNotFoundError, a timeout subprocess.TimeoutExpired.
    """
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stdout + r.stderr).strip()[-2000:]}")
    return r


def tail(path, n=20):
    """The last n lines of a (log) file, or "" if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except (OSError, TypeError):
        return ""


def run_main(prog, main, argv):
    """Exits with main(argv)'s status; a BenchError is one line "PROG: error: ..." and status 1,
    a Ctrl-C or SIGTERM (main's finally blocks have stopped what it started) status 130."""
    try:
        sys.exit(main(argv))
    except BenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted ({e or 'Ctrl-C'}); mounts and daemons stopped", file=sys.stderr)
        sys.exit(130)
