"""cgroupfs-emu: a FUSE filesystem that behaves like the Linux cgroup v1 memory hierarchy."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the version of pyproject.toml (the one place it is written), as installed
    __version__ = version("cgroupfs_emu")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
