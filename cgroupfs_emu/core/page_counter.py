"""A port of the kernel's ``mm/page_counter.c``.

A page counter knows nothing but ``usage``, ``max``, ``watermark`` (max_usage),
``failcnt`` and its ``parent``. Everything is in pages. Charges walk up the parent chain.

Differences from the kernel: no atomics (the core runs on one thread and every call is
atomic with respect to the trio scheduler), no min/low protection and no per-CPU stock.
"""

from __future__ import annotations

from ..units import PAGE_SIZE, S64_MAX as LONG_MAX
from .errors import Busy

__all__ = ["PAGE_SIZE", "PAGE_COUNTER_MAX", "PageCounter", "ResCounter2007"]
#: LONG_MAX / PAGE_SIZE on 64-bit: the "unlimited" value. Read back as bytes it is
#: 9223372036854771712, what 3.19+ kernels print for an unlimited group.
PAGE_COUNTER_MAX = LONG_MAX // PAGE_SIZE


class PageCounter:
    """Usage, limit, high-water mark and failure count of one resource in one group."""

    __slots__ = ("usage", "max", "watermark", "failcnt", "parent", "memcg")

    def __init__(self, parent: PageCounter | None = None, max: int = PAGE_COUNTER_MAX,
                 memcg=None):
        #: the group this counter belongs to (the kernel's container_of), opaque here
        self.memcg = memcg
        self.usage = 0
        self.max = max
        self.watermark = 0
        self.failcnt = 0
        self.parent = parent

    def ancestors(self):
        """This counter and every counter above it, nearest first."""
        c = self
        while c is not None:
            yield c
            c = c.parent

    def try_charge(self, nr_pages: int) -> PageCounter | None:
        """Port of page_counter_try_charge().

        Charges every level up to the root. If a level would go above its max, that
        level's failcnt is incremented, the levels already charged are rolled back and
        the refusing counter is returned; None means success. As in the kernel, the
        watermarks of levels charged before the failure keep their raised value.
        """
        c = self
        while c is not None:
            new = c.usage + nr_pages
            if new > c.max:
                c.failcnt += 1
                done = self
                while done is not c:
                    done.usage -= nr_pages
                    done = done.parent
                return c
            c.usage = new
            if new > c.watermark:
                c.watermark = new
            c = c.parent
        return None

    def charge(self, nr_pages: int) -> None:
        """Port of page_counter_charge(): charge unconditionally (may exceed max)."""
        for c in self.ancestors():
            c.usage += nr_pages
            if c.usage > c.watermark:
                c.watermark = c.usage

    def uncharge(self, nr_pages: int) -> None:
        """Port of page_counter_uncharge(). Usage never goes below zero (the kernel
        warns and clamps the same way in page_counter_cancel())."""
        c = self
        while c is not None:
            c.usage = c.usage - nr_pages if c.usage > nr_pages else 0
            c = c.parent

    def set_max(self, nr_pages: int) -> None:
        """Port of page_counter_set_max(): refuse (EBUSY) a max below current usage."""
        if self.usage > nr_pages:
            raise Busy("usage is above the requested limit")
        self.max = nr_pages

    def reset_watermark(self) -> None:
        """Port of page_counter_reset_watermark(): the watermark restarts at *usage*."""
        self.watermark = self.usage

    def reset_failcnt(self) -> None:
        """mem_cgroup_reset(), RES_FAILCNT: ``counter->failcnt = 0``."""
        self.failcnt = 0


class ResCounter2007(PageCounter):
    """Seed 002's res_counter (patch 1): ``usage``, ``limit`` and ``failcnt`` as
    unsigned longs counted in pages, with no parent in practice (the 2007 controller
    had no hierarchy).

    Port of res_counter_charge_locked(): the charge succeeds if ``usage <= limit - val``
    computed in unsigned long, so a limit below the charge wraps around and lets it
    pass (a limit of 0 never blocks a one-page charge). No watermark existed; it is
    kept anyway, nobody reads it.
    """

    __slots__ = ()
    ULONG = (1 << 64) - 1

    def try_charge(self, nr_pages: int) -> PageCounter | None:
        if self.usage <= (self.max - nr_pages) & self.ULONG:
            self.usage += nr_pages
            self.watermark = max(self.watermark, self.usage)
            return None
        self.failcnt += 1
        return self
