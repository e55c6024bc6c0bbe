"""Building tests/go offline: Debian's Go in GOPATH mode against Debian's runc and
containerd/cgroups sources (/usr/share/gocode), with no network and no module proxy.
One build cache per machine user under the temporary directory, shared by every test
that builds Go (the first build of a session compiles the libraries, about 10 s on
two CPUs; later ones only link)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

GO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go")
GOCODE = "/usr/share/gocode"
#: what the tests import, by the Debian package that ships it
SOURCES = {
    "golang-github-opencontainers-runc-dev": "github.com/opencontainers/runc/libcontainer/cgroups",
    "golang-github-containerd-cgroups-dev": "github.com/containerd/cgroups",
}


def go_env(base: dict | None = None) -> dict[str, str]:
    """The environment of an offline GOPATH-mode build with static binaries."""
    env = dict(os.environ if base is None else base)
    env.update(GO111MODULE="off", GOPATH=GOCODE, GOPROXY="off", GOFLAGS="",
               CGO_ENABLED="0", GOTOOLCHAIN="local",
               GOCACHE=os.path.join(tempfile.gettempdir(), f"cgemu-gocache-{os.getuid()}"))
    return env


def require_go() -> str:
    """The go command; a test fails (never skips) without it: scripts/install --test
    installs golang-go and the library sources."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go not found: run scripts/install --test (it installs golang-go)")
    for package, path in SOURCES.items():
        if not os.path.isdir(os.path.join(GOCODE, "src", path)):
            pytest.fail(f"{GOCODE}/src/{path} missing: run scripts/install --test "
                        f"(it installs {package})")
    return go
