"""Commands: the mount helper ``cgroupfs_emu``."""
