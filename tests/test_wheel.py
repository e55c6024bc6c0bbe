"""The package as PyPA tools hand it out: `python -m build` gives an sdist and a
py3-none-<platform> wheel that carries the compiled preload library; the wheel
installs into a fresh venv and through pipx, outside the checkout, and the commands it
installs mount, serve and unmount.

The build runs offline (--no-isolation, with the build and wheel packages of the test
extras); installing the wheel's dependencies uses pip as configured (its cache first).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import needs_fuse, wait_until

REPO = Path(__file__).resolve().parent.parent
PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
LIBRARY = "cgroupfs_emu/preload/libcgemu_preload.so"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                        str(REPO)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without this checkout's venv on PATH, working in
    *tmp_path*: what a user who installed the wheel has."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CGROUPFS_EMU"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if not p.startswith(str(REPO)))
    env.update(extra)
    return env


def test_build_gives_an_sdist_and_a_platform_wheel_with_the_library(dist):
    wheel = wheel_of(dist)
    version = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(),
                        re.M).group(1)
    assert wheel.name == f"cgroupfs_emu-{version}-py3-none-{PLATFORM}.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = f"cgroupfs_emu-{version}.dist-info"
        assert LIBRARY in names
        assert "Root-Is-Purelib: false" in z.read(f"{meta}/WHEEL").decode()
        entry_points = z.read(f"{meta}/entry_points.txt").decode()
        lib = z.read(LIBRARY)
    assert "cgemu = cgroupfs_emu.cli.cgemu:main" in entry_points
    assert "cgroupfs_emu = cgroupfs_emu.testing.plugin" in entry_points  # pytest11
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    # nothing but libc (and the loader): the library runs on any glibc Linux of the arch
    so = dist / "lib.so"
    so.write_bytes(lib)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(so)], capture_output=True,
                                       text=True, check=True).stdout)
    assert needed and all(re.fullmatch(r"lib(c|dl)\.so\.\d+", n) for n in needed), needed
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    assert {"setup.py", "pyproject.toml", "cgroupfs_emu/preload/cgview.c",
            "cgroupfs_emu/preload/build.py", "cgroupfs_emu/testing/plugin.py"} <= members
    assert not [m for m in members if m.endswith(".so")]  # the sdist compiles it


def mount_echo_cat_unmount(bin_dir: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """The mission's first use, with the installed commands only."""
    mnt = tmp_path / "cg"
    mnt.mkdir()
    run = dict(capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    r = subprocess.run([str(bin_dir / "cgroupfs_emu"), "-o", "kernel=linux-6", "memory",
                        str(mnt)], **run)
    assert r.returncode == 0, r.stderr
    pid = int(os.getxattr(mnt, "user.cgroupfs_emu.pid"))
    try:
        # the daemon is the installed script, run by the distribution's python
        assert os.path.realpath(f"/proc/{pid}/exe").startswith("/usr/bin/python3")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1] == str(bin_dir / "cgroupfs_emu").encode(), cmdline
        script = (f"mkdir {mnt}/a && echo 4M > {mnt}/a/memory.limit_in_bytes && "
                  f"cat {mnt}/a/memory.limit_in_bytes")
        r = subprocess.run(["sh", "-c", script], **run)
        assert (r.returncode, r.stdout) == (0, f"{4 << 20}\n"), r.stderr
        r = subprocess.run([str(bin_dir / "cgemu"), "exec", "-m", str(mnt), "-g", "a", "--",
                            "sh", "-c", f"echo $$; exec cat {mnt}/a/tasks"], **run)
        me, *tasks = r.stdout.split()
        assert r.returncode == 0 and tasks == [me], (r.stdout, r.stderr)
        assert subprocess.run([str(bin_dir / "cgemu"), "--version"], **run).stdout.startswith("cgemu ")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=15)
    assert not os.path.ismount(mnt)


@needs_fuse
@pytest.mark.mount
def test_the_wheel_installs_into_a_fresh_venv_and_mounts(dist, tmp_path):
    venv = tmp_path / "venv"
    env = clean_env(tmp_path)
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, env=env)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        str(wheel_of(dist))], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the installed package, not the checkout: its library came in the wheel
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import cgroupfs_emu.preload as p; print(p.library_path())"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert r.stdout.startswith(str(venv)) and os.path.exists(r.stdout.strip())
    mount_echo_cat_unmount(venv / "bin", tmp_path, env)


@needs_fuse
@pytest.mark.mount
def test_pipx_installs_the_wheel_and_its_commands_mount(dist, tmp_path):
    pipx = shutil.which("pipx")
    assert pipx, "pipx missing: scripts/install --test installs Debian's pipx"
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = clean_env(tmp_path, PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir),
                    PIPX_DEFAULT_PYTHON="/usr/bin/python3")
    r = subprocess.run([pipx, "install", str(wheel_of(dist))], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {"cgroupfs_emu", "cgemu"} <= {p.name for p in bin_dir.iterdir()}
    mount_echo_cat_unmount(bin_dir, tmp_path, env)


@needs_fuse
@pytest.mark.mount
def test_with_debians_pyfuse3_nothing_is_compiled(dist, tmp_path):
    """pyfuse3 is published as an sdist only, so a plain install compiles it (libfuse3-dev,
    pkg-config, gcc, python3-dev). With Debian's python3-pyfuse3 a venv that sees the
    system packages takes the wheel with binaries only: no compiler needed."""
    pipx = shutil.which("pipx")
    assert pipx, "pipx missing: scripts/install --test installs Debian's pipx"
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = clean_env(tmp_path, PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir),
                    PIPX_DEFAULT_PYTHON="/usr/bin/python3", PIP_ONLY_BINARY=":all:")
    r = subprocess.run([pipx, "install", "--system-site-packages", str(wheel_of(dist))],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    mount_echo_cat_unmount(bin_dir, tmp_path, env)
