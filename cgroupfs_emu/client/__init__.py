"""The workload side: tell a cgroupfs_emu mount what this process allocates.

    from cgroupfs_emu.client import Client
    with Client.connect("/sys/fs/cgroup/memory") as c:
        c.charge(16 << 20, "anon")      # MemoryError (ChargeRefused) if refused
        c.uncharge(16 << 20, "anon")
"""

from .client import ChargeRefused, Client, ProtocolFailure, ask, find_socket

__all__ = ["ChargeRefused", "Client", "ProtocolFailure", "ask", "find_socket"]
