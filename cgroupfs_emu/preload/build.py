"""Compile the preload library with the system C compiler: cgview.c (the renderer and
the libc interposers) and supervise.c (the seccomp supervisor of the view, which calls
the same renderer) make one shared object.

Kept free of package imports so that setup.py can load it by path at install time
(`pip install .` / `pip install -e .` run it through setup.py's build_ext), and so that
`python -m cgroupfs_emu.preload build` can rebuild it in place by hand.
"""

from __future__ import annotations

import os
import shlex
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = (os.path.join(HERE, "cgview.c"), os.path.join(HERE, "supervise.c"))
LIBRARY_NAME = "libcgemu_preload.so"

# Only the distribution's compiler and libc: -ldl for dlsym (a no-op on glibc >= 2.34).
CFLAGS = ["-O2", "-g", "-Wall", "-fPIC", "-shared", "-fvisibility=default"]
LIBS = ["-ldl"]


def compile_library(output: str, sources: tuple[str, ...] = SOURCES) -> None:
    cc = shlex.split(os.environ.get("CC", "cc"))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    subprocess.run(cc + CFLAGS + ["-o", tmp, *sources] + LIBS, check=True)
    os.replace(tmp, output)  # never leave a half-written library where LD_PRELOAD looks
