"""Event decisions of the memory controller (core/memcg/events.py, vmpressure.py) and
the cgroup core's release rule, without a mount: effects are recorded by the port."""

from cgroupfs_emu.core import SEEDS, RecordingEffects, memory_hierarchy
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
