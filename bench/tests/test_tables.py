# SPDX-License-Identifier: Apache-2.0
import unittest

from dsdfsbench import tables


class MedianRatio(unittest.TestCase):
    def test_median_skips_none(self):
        self.assertEqual(tables.median([3, None, 1, 2]), 2)
        self.assertEqual(tables.median([1, 2, 3, 4]), 2.5)

    def test_median_of_nothing_is_none(self):
        self.assertIsNone(tables.median([]))
        self.assertIsNone(tables.median([None, None]))

    def test_ratio(self):
        self.assertEqual(tables.ratio(3, 4), 0.75)
        self.assertIsNone(tables.ratio(None, 4))
        self.assertIsNone(tables.ratio(3, None))
        self.assertIsNone(tables.ratio(3, 0))
        self.assertEqual(tables.ratio(0, 4), 0)

    def test_fmt_x_and_verdict(self):
        self.assertEqual(tables.fmt_x(0.934), "0.93x")
        self.assertEqual(tables.fmt_x(None), "n/a")
        self.assertEqual(tables.verdict(0.8, 0.8), "yes")
        self.assertEqual(tables.verdict(0.79, 0.8), "**no**")
        self.assertEqual(tables.verdict(0.05, 0.1, above=False), "yes")
        self.assertEqual(tables.verdict(0.1, 0.1, above=False), "**no**")
        self.assertEqual(tables.verdict(None, 0.8), "n/a")


class Ranges(unittest.TestCase):
    def test_median_range(self):
        self.assertEqual(tables.median_range([1000, 1300, 1100]), "1,100 (1,000–1,300)")
        self.assertEqual(tables.median_range([2.345], digits=2), "2.35")
        self.assertEqual(tables.median_range([None, 5, None, 7], digits=1), "6.0 (5.0–7.0)")
        self.assertEqual(tables.median_range([None]), "n/a")
        self.assertEqual(tables.median_range([]), "n/a")

    def test_min_max(self):
        self.assertEqual(tables.min_max([1829.4, 2680.2, 1887.0]), "1829–2680")
        self.assertEqual(tables.min_max([5.25, 12.0]), "5.2–12")
        self.assertEqual(tables.min_max([0.361, 0.54], 2), "0.36–0.54")
        self.assertEqual(tables.min_max([3.0]), "3.0")

    def test_fmt_rate(self):
        self.assertEqual(tables.fmt_rate(9.94), "9.9")
        self.assertEqual(tables.fmt_rate(10.4), "10")
        self.assertEqual(tables.fmt_rate(1887.3), "1887")


class Markdown(unittest.TestCase):
    def test_header(self):
        self.assertEqual(tables.header([("test", "l"), ("native", "r"), ("ok", "c")]),
                         ["| test | native | ok |", "| --- | ---: | :---: |"])

    def test_row(self):
        self.assertEqual(tables.row(["a", 1, 2.5]), "| a | 1 | 2.5 |")
        # An empty last cell keeps its column: two spaces between the bars.
        self.assertEqual(tables.row(["a", ""]), "| a |  |")

    def test_unknown_alignment(self):
        with self.assertRaises(KeyError):
            tables.header([("x", "middle")])


if __name__ == "__main__":
    unittest.main()


class Breakdown(unittest.TestCase):
    def test_total_and_parts_largest_first(self):
        from dsdfsbench.tables import breakdown
        self.assertEqual(breakdown({"loc_lookup": 100, "file_stat": 150}, 100),
                         "2.50: file_stat 1.50, loc_lookup 1.00")
        self.assertEqual(breakdown({}, 10), "0")

    def test_rpcs_by_op_from_two_snapshots(self):
        from dsdfsbench.mpijob import rpcs_by_op
        before = {"rpcs_sent": 5, "rpc_file_stat": 2, "rpc_failures": 0, "rpc_loc_lookup": 3}
        after = {"rpcs_sent": 9, "rpc_file_stat": 6, "rpc_failures": 1, "rpc_loc_lookup": 3, "rpc_file_read": 1}
        self.assertEqual(rpcs_by_op(before, after), {"file_stat": 4, "file_read": 1})

    def test_fuse_by_op_leaves_forgets_out(self):
        from dsdfsbench.mpijob import fuse_by_op
        before = {"fuse_lookup": 10, "fuse_getattr": 4, "fuse_forget": 1, "rpc_file_stat": 1}
        after = {"fuse_lookup": 15, "fuse_getattr": 4, "fuse_forget": 9, "fuse_batch_forget": 2,
                 "fuse_open": 5, "rpc_file_stat": 7}
        self.assertEqual(fuse_by_op(before, after), {"lookup": 5, "open": 5})
