"""The C library of `cgemu run`: the renderer of the view's /proc files, the preload
interposers (cgview.c) and the view's seccomp supervisor (supervise.c).

It is built when the package is installed (setup.py's build_ext); `python -m
cgroupfs_emu.preload build` rebuilds it in place.
"""

from __future__ import annotations

import os

from .build import HERE, LIBRARY_NAME, SOURCES

# The environment protocol between `cgemu run` and the library.
VIEW_ENV = "CGROUPFS_EMU_VIEW"  # where the emulator is mounted in the private view


def library_path() -> str:
    """The installed library; FileNotFoundError (with the fix) when it was not built."""
    path = os.path.join(HERE, LIBRARY_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"the preload library {path} is missing; build it with "
            "`python3 -m cgroupfs_emu.preload build` (needs a C compiler) or reinstall the package")
    # A checkout updated after the install keeps the old library: its supervisor may
    # lack an entry point this package calls, and a traced command would wait on it.
    built = os.stat(path).st_mtime
    newer = [os.path.basename(s) for s in SOURCES
             if os.path.exists(s) and os.stat(s).st_mtime > built]
    if newer:
        raise FileNotFoundError(
            f"the preload library {path} is older than {', '.join(newer)}; rebuild it with "
            "`python3 -m cgroupfs_emu.preload build` or reinstall the package")
    return path
