"""The pyfuse3 adapter. Knows directories and files, nothing about memory."""

from .operations import CgroupFS

__all__ = ["CgroupFS"]
