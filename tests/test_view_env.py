"""What `cgemu run` hands the dynamic loader works wherever the checkout lives."""

from __future__ import annotations

import os
import shutil

from cgroupfs_emu.cli import view
from cgroupfs_emu.preload import library_path


def test_a_library_under_a_path_with_spaces_is_preloaded_from_a_copy(tmp_path):
    # ld.so splits LD_PRELOAD at spaces and colons: "/root/cg test/x.so" would be two
    # names, neither of them loadable
    spaced = tmp_path / "clone dir:with colon"
    spaced.mkdir()
    library = spaced / "libcgemu_preload.so"
    shutil.copy(library_path(), library)
    env = view.with_preload({"LD_PRELOAD": "/opt/other.so"}, str(library))
    first, *rest = env["LD_PRELOAD"].split(":")
    assert " " not in first and os.path.isfile(first)
    assert open(first, "rb").read() == library.read_bytes()
    assert rest == ["/opt/other.so"]
    assert os.path.basename(first) == "libcgemu_preload.so"  # how the library knows itself
    st = os.stat(os.path.dirname(os.path.dirname(first)))
    assert st.st_uid == os.geteuid() and not st.st_mode & 0o022


def test_a_plain_path_is_used_as_it_is(tmp_path):
    library = tmp_path / "libcgemu_preload.so"
    shutil.copy(library_path(), library)
    env = view.with_preload({}, str(library))
    assert env["LD_PRELOAD"] == str(library)
