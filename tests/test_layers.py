"""The import graph keeps its layers (scripts/check-layers): no arrow up, no cycle;
no module over 450 lines, no attribute set on another layer's object, no signal outside
the Signaller. Each check is shown to fail on a synthetic tree of its own."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check-layers"


def test_every_import_points_down():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "cgroupfs_emu"
    for name in ("__init__.py", "core/__init__.py", "files/__init__.py",
                 "service/__init__.py", "service/signals.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "core/thing.py").write_text(
        "class Thing:\n    def __init__(self):\n        self.secret = 0\n\n"
        "    def change(self):\n        self.secret = 1\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_a_clean_synthetic_tree_passes(tmp_path):
    root = _tree(tmp_path, {"files/good.py": "def f(t):\n    t.change()\n",
                            "service/signals.py": "import os\n\ndef f(p):\n    os.kill(p, 9)\n"})
    run = _check(root)
    assert run.returncode == 0, run.stdout


def test_a_module_over_450_lines_fails(tmp_path):
    run = _check(_tree(tmp_path, {"core/big.py": "x = 1\n" * 451}))
    assert run.returncode == 1
    assert "cgroupfs_emu.core.big: 451 lines (the limit is 450)" in run.stdout


def test_setting_an_attribute_of_another_layers_object_fails(tmp_path):
    run = _check(_tree(tmp_path, {
        "files/bad.py": "def f(t):\n    t.secret = 1\n",
        "files/bad2.py": "def f(t):\n    t.secret[0] = 1\n",
        "files/bad3.py": "def f(t):\n    setattr(t, 'secret', 1)\n"}))
    assert run.returncode == 1
    for mod in ("bad", "bad2", "bad3"):
        assert f"cgroupfs_emu.files.{mod}:2: sets .secret, an attribute of core" in run.stdout


def test_a_signal_outside_the_signaller_fails(tmp_path):
    run = _check(_tree(tmp_path, {
        "service/sig.py": "import os\n\ndef f(p):\n    os.kill(p, 9)\n",
        "service/sig2.py": "from signal import pidfd_send_signal as s\n\ndef f(fd):\n"
                           "    s(fd, 9)\n"}))
    assert run.returncode == 1
    assert "cgroupfs_emu.service.sig:4: os.kill() outside the Signaller" in run.stdout
    assert ("cgroupfs_emu.service.sig2:4: signal.pidfd_send_signal() outside the Signaller"
            in run.stdout)


def test_a_constructor_that_sets_an_attribute_of_another_object_fails(tmp_path):
    run = _check(_tree(tmp_path, {
        "service/driver.py": "class Driver:\n    def __init__(self, tracker):\n"
                             "        self.tracker = tracker\n"
                             "        tracker.driver = self\n",
        "service/fine.py": "class Fine:\n    def __init__(self):\n"
                           "        self.made = Made()\n        self.made.x = 1\n\n\n"
                           "class Made:\n    x = 0\n"}))
    assert run.returncode == 1
    assert "cgroupfs_emu.service.driver:4: a constructor sets .driver of another object" \
        in run.stdout
    assert "service.fine" not in run.stdout
