"""Build step beyond pyproject.toml: the C library of `cgemu run` (the preload library
and the view's seccomp supervisor, one shared object).

It is declared as an extension so that every install path (wheel, `pip install .`,
`pip install -e .`) compiles it; it is not a Python module, so it is compiled by
cgroupfs_emu/preload/build.py with plain flags and named libcgemu_preload.so.
"""

import importlib.util
import os

import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

PRELOAD = "cgroupfs_emu.preload.libcgemu_preload"
HERE = os.path.dirname(os.path.abspath(__file__))


def _build_module():
    path = os.path.join(HERE, "cgroupfs_emu", "preload", "build.py")
    spec = importlib.util.spec_from_file_location("_cgemu_preload_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExt(build_ext):
    def get_ext_filename(self, fullname):
        # called with the dotted name or with its last part only (get_ext_fullpath)
        if PRELOAD.endswith(fullname):
            return os.path.join(*fullname.split(".")) + ".so"  # no ABI tag: not a module
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name != PRELOAD:
            return super().build_extension(ext)
        build = _build_module()
        try:
            build.compile_library(self.get_ext_fullpath(ext.name),
                                  tuple(os.path.join(HERE, s) for s in ext.sources))
        except (OSError, subprocess.CalledProcessError) as e:
            # optional: without a C compiler the rest installs, and `cgemu run` says
            # how to build the library later
            raise CompileError(f"cannot build the preload library of cgemu run: {e}") from None


setup(ext_modules=[Extension(PRELOAD, sources=["cgroupfs_emu/preload/cgview.c",
                                              "cgroupfs_emu/preload/supervise.c"],
                             optional=True)],
      cmdclass={"build_ext": BuildExt})
