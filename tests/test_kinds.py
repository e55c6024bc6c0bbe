"""The kind table (core/memcg/kinds.py) walked as data."""

from cgroupfs_emu import protocol
from cgroupfs_emu.core.memcg.kinds import ACCOUNTS, KINDS, Res
from cgroupfs_emu.core.memcg.stats import STAT_KEYS


def test_every_kind_is_complete_and_agrees_with_the_protocol():
    assert tuple(n for n, k in KINDS.items() if k.client) == protocol.KINDS
    assert tuple(n for n, k in KINDS.items() if k.stockable) == protocol.STOCK_KINDS
    for kind in KINDS.values():
        assert kind.accounts and all(ACCOUNTS[a.name] is a for a in kind.accounts)
        # user pages wait on OOM and are reparented; kernel memory neither
        assert kind.user == kind.reparented
        if kind.stockable:  # a stock is precharged to memsw + memory
            assert kind.accounts[0].tried == (Res.MEMSW, Res.MEM)
    for acc in ACCOUNTS.values():
        assert set(acc.stat_keys) <= set(STAT_KEYS)
        # memsw is tried before memory whenever an account charges both
        # (try_charge_memcg); 3.8's memcg_charge_kmem() tries the kmem counter first
        if Res.MEMSW in acc.tried and Res.MEM in acc.tried:
            assert acc.tried.index(Res.MEMSW) < acc.tried.index(Res.MEM)
    # each account belongs to exactly one kind
    owners = [a.name for k in KINDS.values() for a in k.accounts]
    assert sorted(owners) == sorted(ACCOUNTS)
