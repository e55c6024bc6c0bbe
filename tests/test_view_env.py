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


def test_a_library_older_than_the_package_is_refused_with_the_fix(tmp_path, monkeypatch):
    """A checkout updated after the install keeps its old library; the supervisor of
    an older build lacks entry points this package calls and a traced command waited
    on it for ever (a dev tree after a merge did). cgemu run says so instead."""
    import cgroupfs_emu.preload as preload
    lib = tmp_path / preload.LIBRARY_NAME
    real = open(library_path(), "rb").read()
    lib.write_bytes(real.replace(b"cgemu_view_sync_wakeup", b"cgemu_view_sync_wakeuX"))
    monkeypatch.setattr(preload, "HERE", str(tmp_path))
    try:
        preload.library_path()
    except FileNotFoundError as e:
        assert "no cgemu_view_sync_wakeup" in str(e) and "preload build" in str(e), e
    else:
        raise AssertionError("a stale library was handed out")
    lib.write_bytes(real)  # rebuilt: fine
    assert preload.library_path() == str(lib)
