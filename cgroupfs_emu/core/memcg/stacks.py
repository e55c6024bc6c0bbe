"""Thread stacks as kernel memory (seed 003): a client's ``fork`` and ``exit``.

A fork allocates the new task's kernel stack (copy_process() ->
alloc_thread_stack_node()); where the profile charges thread stacks
(``charges_thread_stacks``, seed 003 as merged in 3.8) that stack is THREAD_SIZE of
kmem charged to the forking task's group, held while the task lives. At the kmem limit
the allocation fails and so does the fork, with ENOMEM: that is how seed 003 stops a
fork bomb. Socket clients say ``fork`` / ``exit`` for tasks they create (they appear
in no ``tasks`` file); real processes are the process follower's (docs/real-processes.md).

Not emulated: a stack charge that hits the user limit never triggers the OOM killer
here; the fork just fails (the kernel could OOM-kill for it).
"""

from __future__ import annotations

from ...units import PAGE_SIZE
from ..errors import Invalid, NoMemory
from .charge import charge, uncharge
from .group import MemCgroup
from .kinds import ACCOUNTS, KIND_KMEM
from .owners import Owner, uncharge_account
from .state import MemState

#: THREAD_SIZE on x86_64 and arm64: 16 KiB, in pages
STACK_PAGES = 16384 // PAGE_SIZE


def fork(state: MemState, owner: Owner, group: MemCgroup, count: int) -> None:
    """*count* new tasks of *owner* start in *group*; each charges a stack. All or
    nothing: ENOMEM when one does not fit (the kmem limit, or no room at all)."""
    pages = STACK_PAGES if state.profile.charges_thread_stacks else 0
    new = []
    try:
        for _ in range(count):
            acc = KIND_KMEM.account(group)
            if pages:
                if charge(state, owner, group, KIND_KMEM.name, pages, may_wait=False):
                    raise NoMemory("no memory for the new task's stack")
            new.append((group, acc.name, pages))
    except NoMemory:
        for g, name, n in new:
            if n:
                uncharge_account(state, g, owner.ledger(g), ACCOUNTS[name], n)
        raise
    owner.forked.extend(new)


def charge_stacks(state: MemState, owner: Owner, group: MemCgroup, count: int) -> bool:
    """*count* thread stacks of a followed task: a real try_charge of THREAD_SIZE of
    kmem each that never waits or kills (alloc_thread_stack_node() fails and
    copy_process() returns ENOMEM instead). False when refused; the refusal counts
    in failcnt as the kernel's failed charge does."""
    try:
        return charge(state, owner, group, KIND_KMEM.name, count * STACK_PAGES,
                      may_wait=False) is None
    except NoMemory:
        return False


def uncharge_stacks(state: MemState, owner: Owner, group: MemCgroup, count: int) -> None:
    """*count* stacks charge_stacks() made are freed (their threads exited, or a
    reservation for a fork was never claimed)."""
    uncharge(state, owner, group, KIND_KMEM.name, count * STACK_PAGES)


def task_exit(state: MemState, owner: Owner, count: int) -> None:
    """*count* of the tasks *owner* forked exit (oldest first): their stacks are
    freed from the groups they were charged to."""
    if count > len(owner.forked):
        raise Invalid(f"only {len(owner.forked)} forked tasks to end")
    for g, name, n in owner.forked[:count]:
        if n:
            uncharge_account(state, g, owner.ledger(g), ACCOUNTS[name], n)
            state.oom_recover(g)
    del owner.forked[:count]
