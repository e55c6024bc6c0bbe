"""One read or write of a control file: who, which group, which row."""

from __future__ import annotations

from typing import NamedTuple

import attrs

from ..core.cgroup import Cgroup
from ..core.memcg import SUBSYS, MemCgroup


class Caller(NamedTuple):
    """Who opened the file: FUSE reports no pid on write, so it is kept from open.
    (A tuple: one is made at every open, and a frozen attrs class costs three
    object.__setattr__ calls there.)"""

    pid: int
    uid: int
    gid: int


@attrs.define(slots=True)
class Request:
    """One read or write of a control file of one group. *tree* is the ControlTree
    serving it: the hierarchy, the memory controller, the host facts."""

    group: Cgroup
    cf: object
    caller: Caller
    tree: object

    @property
    def memcg(self) -> MemCgroup:
        """The group's memory state (of_css() for a memory.* file)."""
        return self.group.subsys[SUBSYS]

    @property
    def counter(self):
        return self.memcg.counter(self.cf.res)
