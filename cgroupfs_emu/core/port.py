"""The one way effects leave the core.

The core is pure: it never does I/O, never signals, never awaits. What must happen
outside it is reported through one :class:`Effects` object handed to its constructors
(the service implements it; tests pass a :class:`RecordingEffects`):

* ``fire(listener)``       -- eventfd_signal() on a cgroup.event_control listener;
* ``unregister(listener)`` -- a registration is gone (rmdir, or its eventfd closed):
  drop the daemon's duplicate of the eventfd;
* ``notice(kind, owner, detail)`` -- a message for a socket client: ``evicted`` (its
  page cache was reclaimed) or ``drain`` (return your stock);
* ``oom_recovered(memcg)`` -- memcg1_oom_recover(): tasks waiting on an OOM'ing group
  may retry (a limit was raised, memory freed, oom_kill_disable cleared);
* ``release(agent, path)`` -- a group with notify_on_release became empty: run the
  release agent with its path (call_usermodehelper, never waited for).

The kill-or-stop decision is not a call but a value: a charge that needs the OOM
killer returns a ``memcg.OomVerdict`` and whoever asked for the charge executes it.
Facts the core needs from outside come in the same way, as constructor arguments
(see ``memcg.TaskFacts``), never as attributes set on core objects afterwards.
"""

from __future__ import annotations


class Effects:
    """The port, with nothing attached: every effect is dropped."""

    def fire(self, listener) -> None:
        pass

    def unregister(self, listener) -> None:
        pass

    def notice(self, kind: str, owner, detail: dict) -> None:
        pass

    def oom_recovered(self, memcg) -> None:
        pass

    def release(self, agent: str, path: str) -> None:
        pass


class RecordingEffects(Effects):
    """Keeps every effect, in order, for tests of the core."""

    def __init__(self):
        self.fired: list = []
        self.unregistered: list = []
        self.notices: list[tuple[str, object, dict]] = []
        self.recovered: list = []
        self.released: list[str] = []

    def fire(self, listener) -> None:
        self.fired.append(listener)

    def unregister(self, listener) -> None:
        self.unregistered.append(listener)

    def notice(self, kind: str, owner, detail: dict) -> None:
        self.notices.append((kind, owner, detail))

    def oom_recovered(self, memcg) -> None:
        self.recovered.append(memcg)

    def release(self, agent: str, path: str) -> None:
        self.released.append(path)
