"""Build step beyond pyproject.toml: the compiled parts of the package (today one: the
C library of `cgemu run`, the preload library and the view's seccomp supervisor in
one shared object).

Each is declared as an extension so that every install path (wheel, `pip install .`,
`pip install -e .`) compiles it. None is a Python module: each is compiled by
cgroupfs_emu/preload/build.py with plain flags and keeps its plain name (no ABI tag).

The wheel is therefore tagged py3-none-<platform>: it runs on any Python 3 (nothing
in it is linked against libpython) but only on the machine kind it was compiled for.
A local build gets the platform tag `linux_x86_64` (PEP 425; what pip installs on
this machine), not a manylinux tag: manylinux is a promise about the glibc symbol
versions and libraries used, checked and applied by `auditwheel repair` for wheels
that go to an index.
"""

import importlib.util
import os
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

try:  # setuptools >= 70.1 has its own; before, the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))

#: The compiled parts: (dotted name of the shared object, its C sources). Add a row.
NATIVE = [
    ("cgroupfs_emu.preload.libcgemu_preload", ["cgroupfs_emu/preload/cgview.c",
                                               "cgroupfs_emu/preload/supervise.c"]),
]
_NAMES = {name for name, _ in NATIVE}


def _build_module():
    path = os.path.join(HERE, "cgroupfs_emu", "preload", "build.py")
    spec = importlib.util.spec_from_file_location("_cgemu_preload_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExt(build_ext):
    def get_ext_filename(self, fullname):
        # called with the dotted name or with its last part only (get_ext_fullpath)
        if any(name.endswith(fullname) for name in _NAMES):
            return os.path.join(*fullname.split(".")) + ".so"  # no ABI tag: not a module
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name not in _NAMES:
            return super().build_extension(ext)
        try:
            _build_module().compile_library(self.get_ext_fullpath(ext.name),
                                            tuple(os.path.join(HERE, s) for s in ext.sources))
        except (OSError, subprocess.CalledProcessError) as e:
            # optional: without a C compiler the rest installs, and `cgemu run` says
            # how to build the library later
            raise CompileError(f"cannot build {ext.name}: {e}") from None


class PlatformWheel(bdist_wheel):
    """py3-none-<platform>: see the module docstring."""

    def get_tag(self):
        return "py3", "none", sysconfig.get_platform().replace("-", "_").replace(".", "_")


setup(ext_modules=[Extension(name, sources=sources, optional=True) for name, sources in NATIVE],
      cmdclass={"build_ext": BuildExt, "bdist_wheel": PlatformWheel})
