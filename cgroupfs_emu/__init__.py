"""cgroupfs-emu: a FUSE filesystem that behaves like the Linux cgroup v1 memory hierarchy."""

__version__ = "0.1.0"
