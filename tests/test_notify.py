"""Event decisions of the memory controller (core/memcg/events.py, vmpressure.py) and
the cgroup core's release rule, without a mount: effects are recorded by the port."""

from cgroupfs_emu.core import LINUX_6, SEEDS, RecordingEffects, memory_hierarchy
from cgroupfs_emu.core.memcg import events as notify
from cgroupfs_emu.core.memcg.events import EventListener
from cgroupfs_emu.core.memcg.vmpressure import pressure_level


def setup():
    effects = RecordingEffects()
    h, mc = memory_hierarchy(SEEDS, effects)
    p = h.mkdir(h.root, "p")
    g = h.mkdir(p, "g")
    return h, mc, mc.of(p), mc.of(g), effects


def pressure(mc, group, level, mode):
    listener = EventListener(notify.PRESSURE, 1, 1, level=level, mode=mode)
    mc.register_event(group, listener)
    return listener


def test_pressure_level_thresholds():
    assert pressure_level(512, 512) == "low"
    assert pressure_level(100, 41) == "low"  # 59 %
    assert pressure_level(100, 40) == "medium"
    assert pressure_level(100, 5) == "critical"
    assert pressure_level(100, 0) == "critical"


def test_pressure_propagation_modes():
    h, mc, p, g, effects = setup()
    fired = effects.fired
    g_med = pressure(mc, g, "medium", "default")
    p_default = pressure(mc, p, "low", "default")
    p_hier = pressure(mc, p, "low", "hierarchy")
    p_local = pressure(mc, p, "low", "local")
    # low pressure in g: g's medium listener stays silent, so p's default one hears
    mc.vmpressure(g, 512, 512)
    assert fired == [p_default, p_hier]
    fired.clear()
    mc.vmpressure(g, 100, 30)  # short pass, 70 %: medium, closes the window early
    assert fired == [g_med, p_hier]
    fired.clear()
    mc.vmpressure(g, 100, 100)  # below a window and fully reclaimed: nothing yet
    assert fired == []
    mc.vmpressure(p, 600, 600)
    assert fired == [p_default, p_hier, p_local]


def test_threshold_state_and_oom_fan_out():
    h, mc, p, g, effects = setup()
    fired = effects.fired
    t = EventListener(notify.THRESHOLD, 1, 1, threshold=10)
    mc.register_event(g, t)
    o_p, o_g = EventListener(notify.OOM, 1, 2), EventListener(notify.OOM, 1, 3)
    mc.register_event(p, o_p)
    mc.register_event(g, o_g)
    owner = mc.new_owner(7)
    mc.charge(owner, g, "anon", 10)  # checked at the end of the operation
    mc.check_thresholds()
    assert fired == [t]
    mc.uncharge(owner, g, "anon", 1)
    assert fired == [t, t]
    fired.clear()
    mc.oom_notify(g)
    assert fired == [o_g]
    mc.oom_notify(p)
    assert fired == [o_g, o_p, o_g]


def test_rmdir_fires_and_drops_and_release_rules():
    h, mc, p, g, effects = setup()
    listener = EventListener(notify.OOM, 1, 1)
    mc.register_event(g, listener)
    p.cgroup.set_notify_on_release(1)
    g.cgroup.set_notify_on_release(1)
    h.attach(100, g.cgroup)
    h.attach(100, h.root)
    assert effects.released == ["/p/g"]
    h.rmdir(g.cgroup)
    assert effects.fired == [listener] and effects.unregistered == [listener]
    assert effects.released == ["/p/g", "/p"]
    h.attach(101, p.cgroup)
    h.prune(lambda tid: False)
    assert effects.released[-1] == "/p"


class CountedEvents(list):
    """A group's listener list that counts how often the event code looks at it."""

    looks = 0

    def __iter__(self):
        CountedEvents.looks += 1
        return super().__iter__()

    def __contains__(self, item):
        CountedEvents.looks += 1
        return super().__contains__(item)


def test_event_code_visits_only_the_groups_that_listen(monkeypatch):
    """With 300 groups of which 3 listen, a threshold check after a charge, a watcher
    round and an unregistration look at the listeners of those 3 only (before, every
    check walked every group: ~10% of a core for an idle daemon at 65,535 groups)."""
    from cgroupfs_emu.service.watcher import Watcher

    h, mc, p, g, effects = setup()
    others = [mc.of(h.mkdir(h.root, f"n{i}")) for i in range(300)]
    for group in mc.walk():
        group.events = CountedEvents(group.events)
    t_g = EventListener(notify.THRESHOLD, 1, 1, threshold=5)
    t_other = EventListener(notify.THRESHOLD, 1, 2, threshold=5)
    o_other = EventListener(notify.OOM, 1, 3)
    mc.register_event(g, t_g)
    mc.register_event(others[7], t_other)
    mc.register_event(others[200], o_other)
    listening = 3

    CountedEvents.looks = 0
    owner = mc.new_owner(7)
    mc.charge(owner, g, "anon", 10)  # one operation: one threshold check
    assert effects.fired == [t_g]
    assert 0 < CountedEvents.looks <= 2 * listening

    CountedEvents.looks = 0
    Watcher(mc).poll()
    assert 0 < CountedEvents.looks <= listening

    CountedEvents.looks = 0
    mc.unregister_event(t_other)
    assert 0 < CountedEvents.looks <= listening
    assert sorted(map(id, mc.listeners())) == sorted(map(id, [t_g, o_other]))


def test_thresholds_fire_child_first_and_in_the_kernels_array_order():
    """mem_cgroup_threshold() walks from the charged group up (the child's thresholds
    before the parent's, whatever was registered first); __mem_cgroup_threshold()
    fires memory before memsw, ascending as usage rises, descending as it falls."""
    effects = RecordingEffects()
    h, mc = memory_hierarchy(LINUX_6, effects)
    p = mc.of(h.mkdir(h.root, "p"))
    g = mc.of(h.mkdir(p.cgroup, "g"))
    p_10 = EventListener(notify.THRESHOLD, 1, 1, threshold=10)
    g_sw = EventListener(notify.THRESHOLD, 1, 2, threshold=5, memsw=True)
    g_20 = EventListener(notify.THRESHOLD, 1, 3, threshold=20)
    g_10 = EventListener(notify.THRESHOLD, 1, 4, threshold=10)
    for group, listener in ((p, p_10), (g, g_sw), (g, g_20), (g, g_10)):
        mc.register_event(group, listener)
    owner = mc.new_owner(7)
    mc.charge(owner, g, "anon", 30)
    assert effects.fired == [g_10, g_20, g_sw, p_10]
    effects.fired.clear()
    mc.uncharge(owner, g, "anon", 30)
    assert effects.fired == [g_20, g_10, g_sw, p_10]
