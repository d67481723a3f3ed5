# SPDX-License-Identifier: Apache-2.0
import os
import tempfile
import unittest

from dsdfsbench import mounts

INFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
23 22 0:5 / /proc rw,nosuid shared:2 - proc proc rw
40 22 0:40 / /tmp rw shared:3 - tmpfs tmpfs rw
41 40 0:41 / /tmp/work/mnt\040a rw,nosuid shared:4 - fuse.dsdfs dsdfs rw,user_id=0
42 40 0:42 / /tmp/work/t\303\244b\134x rw master:7 - fuse.bindfs /tmp/work/src\040dir rw
43 40 0:43 / /tmp/workshop rw - tmpfs tmpfs rw
this line is not mountinfo
"""


class Parse(unittest.TestCase):
    def test_parse_and_unescape(self):
        ms = mounts.parse_mountinfo(INFO)
        self.assertEqual([m.point for m in ms],
                         ["/", "/proc", "/tmp", "/tmp/work/mnt a", "/tmp/work/täb\\x", "/tmp/workshop"])
        self.assertEqual(ms[0], mounts.Mount("/", "ext4", "/dev/vda"))
        self.assertEqual(ms[4].fstype, "fuse.bindfs")
        self.assertEqual(ms[4].source, "/tmp/work/src dir")  # optional fields (master:7) passed over

    def test_unescape(self):
        self.assertEqual(mounts.unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e")
        self.assertEqual(mounts.unescape("plain"), "plain")

    def test_real_mountinfo(self):
        ms = mounts.mounts()
        self.assertTrue(ms)
        self.assertTrue(mounts.is_mounted("/"))


class Queries(unittest.TestCase):
    ms = mounts.parse_mountinfo(INFO)

    def test_is_mounted(self):
        self.assertTrue(mounts.is_mounted("/tmp/work/mnt a", self.ms))
        self.assertTrue(mounts.is_mounted("/tmp/work/mnt a/", self.ms))
        self.assertFalse(mounts.is_mounted("/tmp/work", self.ms))

    def test_mounts_under_includes_root_not_siblings(self):
        self.assertEqual(mounts.mounts_under("/tmp/work", self.ms), ["/tmp/work/mnt a", "/tmp/work/täb\\x"])
        self.assertEqual(mounts.mounts_under("/tmp/work/mnt a", self.ms), ["/tmp/work/mnt a"])
        self.assertEqual(mounts.mounts_under("/tmp/nothing", self.ms), [])

    def test_fs_of(self):
        self.assertEqual(mounts.fs_of("/tmp/work/mnt a/f", self.ms).fstype, "fuse.dsdfs")
        self.assertEqual(mounts.fs_of("/tmp/work/other", self.ms).point, "/tmp")
        self.assertEqual(mounts.fs_of("/tmp/workshop/x", self.ms).point, "/tmp/workshop")
        self.assertEqual(mounts.fs_of("/usr/bin", self.ms).source, "/dev/vda")
        self.assertEqual(mounts.fs_of("/x", []), mounts.Mount("/", "?", "?"))

    def test_resolve_follows_the_parent_only(self):
        with tempfile.TemporaryDirectory() as d:
            real = os.path.realpath(d)
            os.mkdir(os.path.join(real, "dir"))
            os.symlink(os.path.join(real, "dir"), os.path.join(real, "link"))
            self.assertEqual(mounts.resolve(os.path.join(d, "link", "m")), os.path.join(real, "dir", "m"))
            # The last component is not followed (nor stat'ed).
            self.assertEqual(mounts.resolve(os.path.join(d, "link")), os.path.join(real, "link"))
        self.assertEqual(mounts.resolve("/"), "/")

    def test_unmount_lazy_of_nothing_mounted(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertTrue(mounts.unmount_lazy(d))


if __name__ == "__main__":
    unittest.main()
