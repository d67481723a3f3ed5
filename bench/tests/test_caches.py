# SPDX-License-Identifier: Apache-2.0
import os
import tempfile
import unittest

from dsdfsbench import caches


class DropCaches(unittest.TestCase):
    def test_writes_3(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "drop_caches")
            open(p, "w").close()
            self.assertTrue(caches.can_drop(p))
            caches.drop_caches(p)
            with open(p) as f:
                self.assertEqual(f.read(), "3\n")

    def test_settle_without_the_right_only_syncs(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "drop_caches")
            caches.settle(False, p)
            self.assertFalse(os.path.exists(p))
            caches.settle(True, p)
            with open(p) as f:
                self.assertEqual(f.read(), "3\n")

    def test_cannot_drop_where_not_writable(self):
        self.assertFalse(caches.can_drop("/nonexistent/drop_caches"))
        self.assertEqual(caches.can_drop(), os.access(caches.DROP_CACHES, os.W_OK))


if __name__ == "__main__":
    unittest.main()
