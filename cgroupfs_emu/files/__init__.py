"""The control-file table: parsers, formatting and dispatch to the core."""

from .table import ALL_FILES, BASE_FILES, MEMORY_FILES, Caller, ControlFile, files_for
from .tree import ControlTree

__all__ = ["ALL_FILES", "BASE_FILES", "MEMORY_FILES", "Caller", "ControlFile", "ControlTree",
           "files_for"]
