"""core/notify.py and the hierarchy's event hooks, without a mount."""

from cgroupfs_emu.core import SEEDS, Hierarchy
from cgroupfs_emu.core import notify
from cgroupfs_emu.core.notify import EventListener


def setup():
    h = Hierarchy(SEEDS)
    fired = []
    h.on_event = fired.append
    p = h.mkdir(h.root, "p")
    g = h.mkdir(p, "g")
    return h, p, g, fired


def pressure(h, group, level, mode):
    listener = EventListener(notify.PRESSURE, 1, 1, level=level, mode=mode)
    h.register_event(group, listener)
    return listener


def test_pressure_level_thresholds():
    assert notify.pressure_level(512, 512) == "low"
    assert notify.pressure_level(100, 41) == "low"  # 59 %
    assert notify.pressure_level(100, 40) == "medium"
    assert notify.pressure_level(100, 5) == "critical"
    assert notify.pressure_level(100, 0) == "critical"


def test_pressure_propagation_modes():
    h, p, g, fired = setup()
    g_med = pressure(h, g, "medium", "default")
    p_default = pressure(h, p, "low", "default")
    p_hier = pressure(h, p, "low", "hierarchy")
    p_local = pressure(h, p, "low", "local")
    # low pressure in g: g's medium listener stays silent, so p's default one hears
    h.vmpressure(g, 512, 512)
    assert fired == [p_default, p_hier]
    fired.clear()
    h.vmpressure(g, 100, 30)  # short pass, 70 %: medium, closes the window early
    assert fired == [g_med, p_hier]
    fired.clear()
    h.vmpressure(g, 100, 100)  # below a window and fully reclaimed: nothing yet
    assert fired == []
    h.vmpressure(p, 600, 600)
    assert fired == [p_default, p_hier, p_local]


def test_threshold_state_and_oom_fan_out():
    h, p, g, fired = setup()
    t = EventListener(notify.THRESHOLD, 1, 1, threshold=10)
    h.register_event(g, t)
    o_p, o_g = EventListener(notify.OOM, 1, 2), EventListener(notify.OOM, 1, 3)
    h.register_event(p, o_p)
    h.register_event(g, o_g)
    owner = h.charges.new_owner(7)
    h.charges.charge(owner, g, "anon", 10)
    h.check_thresholds()
    h.check_thresholds()
    assert fired == [t]
    h.charges.uncharge(owner, g, "anon", 1)
    h.check_thresholds()
    assert fired == [t, t]
    fired.clear()
    h.oom_notify(g)
    assert fired == [o_g]
    h.oom_notify(p)
    assert fired == [o_g, o_p, o_g]


def test_rmdir_fires_and_drops_and_release_rules():
    h, p, g, fired = setup()
    dropped, released = [], []
    h.on_unregister = dropped.append
    h.on_release = released.append
    listener = EventListener(notify.OOM, 1, 1)
    h.register_event(g, listener)
    p.set_notify_on_release(1)
    g.set_notify_on_release(1)
    h.attach(100, g)
    h.attach(100, h.root)
    assert released == ["/p/g"]
    h.rmdir(g)
    assert fired == [listener] and dropped == [listener] and released == ["/p/g", "/p"]
    h.attach(101, p)
    h.prune(lambda tid: False)
    assert released[-1] == "/p"
