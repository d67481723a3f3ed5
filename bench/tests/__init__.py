# SPDX-License-Identifier: Apache-2.0
# Unit tests of bench/dsdfsbench (no root, FUSE or MPI needed):
#   python3 -m unittest discover -s bench/tests -t bench
