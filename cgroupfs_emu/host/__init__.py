"""The host: facts about real processes from procfs, and pidfd / eventfd helpers.

Beneath everything that acts on processes; it reads and duplicates, it never signals
(service/signals.py does) and it knows nothing of groups.
"""

from .fds import EventFd, open_pidfd, take_eventfd
from .procfs import (PF_KTHREAD, PF_NO_SETAFFINITY, Host, MemSample, TaskInfo,
                     program_file_pages, protected_pids, read_sample)

__all__ = ["EventFd", "open_pidfd", "take_eventfd", "PF_KTHREAD", "PF_NO_SETAFFINITY",
           "Host", "MemSample", "TaskInfo", "program_file_pages", "protected_pids",
           "read_sample"]
