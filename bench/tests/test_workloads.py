# SPDX-License-Identifier: Apache-2.0
"""bench/workloads.py's inputs: which build system a project uses, archives decompressed once."""
import gzip
import importlib.util
import os
import tarfile
import tempfile
import unittest

from dsdfsbench.common import BenchError

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("workloads", os.path.join(BENCH, "workloads.py"))
workloads = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workloads)


class BuildCommands(unittest.TestCase):
    def tree(self, *files):
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(d))
        for f in files:
            os.makedirs(os.path.dirname(os.path.join(d, f)), exist_ok=True)
            open(os.path.join(d, f), "w").close()
        return d

    def test_each_build_system(self):
        conf, comp = workloads.build_commands(self.tree("meson.build"), 4)
        self.assertEqual(conf[:2], ["meson", "setup"])
        self.assertNotIn("-Dtests=false", conf)
        self.assertEqual(comp, ["ninja", "-C", "bld", "-j", "4"])
        conf, _ = workloads.build_commands(self.tree("meson.build", "daemon/fs_entry.cc"), 2)
        self.assertIn("-Dtests=false", conf)  # dsdfs itself builds without its tests
        self.assertEqual(workloads.build_commands(self.tree("CMakeLists.txt"), 3)[1],
                         ["cmake", "--build", "bld", "-j", "3"])
        self.assertEqual(workloads.build_commands(self.tree("configure", "Makefile"), 2),
                         (["./configure"], ["make", "-j", "2"]))
        self.assertEqual(workloads.build_commands(self.tree("Makefile"), 2), (None, ["make", "-j", "2"]))
        with self.assertRaises(BenchError):
            workloads.build_commands(self.tree("README"), 2)


class Archives(unittest.TestCase):
    def test_plain_tar_is_used_as_is_and_gzip_is_decompressed_once(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "f.txt")
            with open(src, "w") as f:
                f.write("x" * 1000)
            plain = os.path.join(d, "a.tar")
            with tarfile.open(plain, "w") as t:
                t.add(src, arcname="dir/f.txt")
            self.assertEqual(workloads.plain_archive(plain, d), plain)
            gz = os.path.join(d, "a.tar.gz")
            with open(plain, "rb") as f, gzip.open(gz, "wb") as g:
                g.write(f.read())
            work = os.path.join(d, "work")
            os.mkdir(work)
            out = workloads.plain_archive(gz, work)
            self.assertEqual(os.path.dirname(out), work)
            with open(out, "rb") as a, open(plain, "rb") as b:
                self.assertEqual(a.read(), b.read())
            self.assertEqual(workloads.tar_entries(out), 1)


class Arguments(unittest.TestCase):
    def test_builds_are_named_and_names_must_differ(self):
        o = workloads.parse_args(["--dsdfs", "a/dsdfs-launch", "--dsdfs", "pt=b/dsdfs-launch", "--quick"])
        self.assertEqual(o.builds, [("dsdfs", "a/dsdfs-launch"), ("pt", "b/dsdfs-launch")])
        self.assertEqual(o.reps, 1)
        with self.assertRaises(SystemExit):
            workloads.parse_args(["--dsdfs", "x=a", "--dsdfs", "x=b"])
        with self.assertRaises(SystemExit):
            workloads.parse_args(["--tests", "build,compile"])


if __name__ == "__main__":
    unittest.main()
