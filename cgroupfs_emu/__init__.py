"""cgroupfs-emu: a FUSE filesystem that behaves like the Linux cgroup v1 memory hierarchy."""

#: the one place the version is written (pyproject.toml reads it from here)
__version__ = "0.1.0"
