"""The C library of `cgemu run`: the renderer of the view's /proc files, the preload
interposers (cgview.c) and the view's seccomp supervisor (supervise.c).

It is built when the package is installed (setup.py's build_ext); `python -m
cgroupfs_emu.preload build` rebuilds it in place.
"""

from __future__ import annotations

import os

from .build import HERE, LIBRARY_NAME

# The environment protocol between `cgemu run` and the library.
VIEW_ENV = "CGROUPFS_EMU_VIEW"  # where the emulator is mounted in the private view

#: the library's functions that Python calls (cli/view.py, through ctypes)
ENTRY_POINTS = (b"cgemu_render", b"cgemu_set_view", b"cgemu_view_supervise",
                b"cgemu_view_sync_wakeup")


def library_path() -> str:
    """The installed library; FileNotFoundError (with the fix) when it was not built."""
    path = os.path.join(HERE, LIBRARY_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"the preload library {path} is missing; build it with "
            "`python3 -m cgroupfs_emu.preload build` (needs a C compiler) or reinstall the package")
    # A checkout updated after the install keeps the old library, whose supervisor may
    # lack an entry point this package calls (a traced command then waited on it). The
    # names are in the library's dynamic symbol table; file times say nothing here
    # (an installed wheel's files all get the time of the install).
    with open(path, "rb") as f:
        image = f.read()
    missing = [name.decode() for name in ENTRY_POINTS if name not in image]
    if missing:
        raise FileNotFoundError(
            f"the preload library {path} is older than this package (no {', '.join(missing)});"
            " rebuild it with `python3 -m cgroupfs_emu.preload build` or reinstall the package")
    return path
