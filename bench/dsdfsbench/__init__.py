# SPDX-License-Identifier: Apache-2.0
"""dsdfsbench: what bench/run.py, bench/cluster.py and bench/dirops.py share.

  common   the repository's paths, BenchError, log(), run() of a command, tail()
  mounts   /proc/self/mountinfo: is_mounted, mounts_under, fs_of, lazy unmount
  jobs     processes started and stopped by PID, process trees, cleanup on
           exit and on SIGTERM/SIGHUP
  mpijob   one mpirun of dsdfs-launch on this machine (cluster.py, dirops.py)
  timing   CPU busy fraction, waiting for idle CPUs or a low load average
  caches   drop_caches
  tables   medians, ratios and markdown table rows
  docs     a marked section of docs/performance.md, replaced in place
  facts    the machine facts a report starts with

Python 3 standard library only; unit tests in bench/tests (no root, FUSE or MPI).
"""
