"""The control-file table: rows (table.py), handlers (handlers.py), parsers, and the
tree the FUSE adapter walks (tree.py)."""

from .request import Caller, Request
from .table import ALL_FILES, BASE_FILES, MEMORY_FILES, CFlags, ControlFile, files_for
from .tree import ControlTree

__all__ = ["ALL_FILES", "BASE_FILES", "MEMORY_FILES", "CFlags", "Caller", "ControlFile",
           "ControlTree", "Request", "files_for"]
