# SPDX-License-Identifier: Apache-2.0
import os
import stat
import tempfile
import unittest

from dsdfsbench import docs
from dsdfsbench.common import BenchError

DOC = """# perf

intro
<!-- bench/run:results:begin -->
old line 1
old line 2
<!-- bench/run:results:end -->

between
<!-- bench/dirops:results:begin -->
dirops old
<!-- bench/dirops:results:end -->
tail
"""


class ReplaceSection(unittest.TestCase):
    def test_markers(self):
        self.assertEqual(docs.markers("bench/run", "threads"),
                         ("<!-- bench/run:threads:begin -->", "<!-- bench/run:threads:end -->"))

    def test_replaces_only_that_section(self):
        out = docs.replace_section(DOC, "bench/run", "results", "new 1\nnew 2\n\n")
        self.assertEqual(out, DOC.replace("old line 1\nold line 2\n", "new 1\nnew 2\n"))

    def test_same_tool_other_section_and_other_tool(self):
        out = docs.replace_section(DOC, "bench/dirops", "results", "fresh")
        self.assertEqual(out, DOC.replace("dirops old", "fresh"))

    def test_idempotent(self):
        once = docs.replace_section(DOC, "bench/run", "results", "x\n")
        self.assertEqual(docs.replace_section(once, "bench/run", "results", "x\n"), once)

    def test_missing_markers_error(self):
        with self.assertRaises(docs.DocError) as cm:
            docs.replace_section(DOC, "bench/cluster", "results", "x")
        self.assertIn("<!-- bench/cluster:results:begin -->", str(cm.exception))
        self.assertTrue(issubclass(docs.DocError, BenchError))

    def test_missing_markers_append(self):
        out = docs.replace_section(DOC, "bench/run", "threads", "t\n", append_title="Results: threads")
        self.assertEqual(out, DOC.rstrip("\n") + "\n\n## Results: threads\n\n"
                         "<!-- bench/run:threads:begin -->\nt\n<!-- bench/run:threads:end -->\n")

    def test_one_marker_alone_is_an_error_even_with_append(self):
        doc = DOC.replace("<!-- bench/run:results:end -->\n", "")
        with self.assertRaises(docs.DocError):
            docs.replace_section(doc, "bench/run", "results", "x", append_title="Results: results")

    def test_end_before_begin(self):
        doc = "<!-- t:s:end -->\nx\n<!-- t:s:begin -->\n"
        with self.assertRaises(docs.DocError):
            docs.replace_section(doc, "t", "s", "y")

    def test_repeated_marker(self):
        doc = "<!-- t:s:begin -->\na\n<!-- t:s:end -->\n<!-- t:s:begin -->\nb\n<!-- t:s:end -->\n"
        with self.assertRaises(docs.DocError):
            docs.replace_section(doc, "t", "s", "y")


class WriteSection(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "performance.md")

    def tearDown(self):
        self.tmp.cleanup()

    def test_writes_in_place_and_keeps_mode(self):
        with open(self.path, "w") as f:
            f.write(DOC)
        os.chmod(self.path, 0o640)
        docs.write_section(self.path, "bench/run", "results", "new\n")
        with open(self.path) as f:
            self.assertEqual(f.read(), DOC.replace("old line 1\nold line 2\n", "new\n"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(os.listdir(self.tmp.name), ["performance.md"])  # no .tmp left

    def test_missing_markers_leave_the_file_alone(self):
        with open(self.path, "w") as f:
            f.write(DOC)
        with self.assertRaises(docs.DocError) as cm:
            docs.write_section(self.path, "bench/cluster", "results", "x")
        self.assertIn(self.path, str(cm.exception))
        with open(self.path) as f:
            self.assertEqual(f.read(), DOC)
        self.assertEqual(os.listdir(self.tmp.name), ["performance.md"])

    def test_missing_file(self):
        with self.assertRaises(docs.DocError):
            docs.write_section(self.path, "bench/dirops", "results", "x")
        self.assertFalse(os.path.exists(self.path))

    def test_missing_file_with_new_file(self):
        begin, end = docs.markers("bench/cluster", "results")
        docs.write_section(self.path, "bench/cluster", "results", "r\n",
                           new_file=f"# bench/cluster results\n\n{begin}\n{end}\n")
        with open(self.path) as f:
            self.assertEqual(f.read(), f"# bench/cluster results\n\n{begin}\nr\n{end}\n")


if __name__ == "__main__":
    unittest.main()
