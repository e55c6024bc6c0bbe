"""The CI recipes of examples/ci, replayed: their own commands, read from the YAML,
in their order and under their conditions, on a fresh clone of this repository.

What a runner provides is stood in for, and only that:
* the checkout is a copy of tests/go (a Go module testing runc's and containerd's
  cgroup code, and check-paths.sh with hard-coded /sys/fs/cgroup/memory paths);
* Go is Debian's, in offline GOPATH mode (golang.go_env), where setup-go or the
  golang image would fetch modules;
* the repository cloned is this one (CGROUPFS_EMU_REPO), and the paths the recipe
  names are moved below the test's tmp dir;
* an artifact upload copies the file into an artifacts directory.
Everything runs in a private mount namespace whose /usr/local/bin is an empty
directory of the test's, so the fresh clone's scripts/install links its commands
there and not on the machine. Whatever the recipe leaves running is killed at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import needs_fuse
from golang import GO_DIR, go_env, require_go

pytestmark = [pytest.mark.mount, needs_fuse,
              pytest.mark.skipif(os.geteuid() != 0, reason="the recipes run as root (sudo)")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "ci")
#: uses: steps and what stands in for them (None: the runner's part, done by the test)
ACTIONS = {"actions/checkout": None, "actions/setup-go": None,
           "actions/upload-artifact": 'mkdir -p "$ARTIFACTS" && cp {path} "$ARTIFACTS"/'}
#: a step: (condition, shell script); conditions are success, failure, always
Step = tuple[str, str]

# Run the steps in order: a success step runs while nothing failed, a failure step only
# after a failure, an always step in any case. Each is one `bash -eo pipefail` script,
# the shell of both services.
DRIVER = r"""
set -u
mount --bind "$1" /usr/local/bin || exit 99
readlink /proc/self/ns/mnt > "$2"
cd "$3"
shift 3
status=0
for step in "$@"; do
    when=${step%%:*} file=${step#*:}
    case $when in
        success) [ $status -eq 0 ] || continue ;;
        failure) [ $status -ne 0 ] || continue ;;
    esac
    echo "== $file ($when)"
    bash --noprofile --norc -eo pipefail "$file" || { rc=$?; [ $status -ne 0 ] || status=$rc; }
done
exit $status
"""


def _expression(text: str) -> str:
    """GitHub's ${{ env.NAME }} as the shell's "$NAME"; any other expression fails."""
    out = re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", r'"$\1"', text)
    assert "${{" not in out, f"no stand-in for the expression in {text!r}"
    return out


def github_steps(doc: dict) -> tuple[dict, list[Step]]:
    (job,) = doc["jobs"].values()
    steps = []
    for s in job["steps"]:
        when = {"always()": "always", "failure()": "failure", None: "success"}[s.get("if")]
        if "run" in s:
            steps.append((when, _expression(s["run"])))
            continue
        action = ACTIONS[s["uses"].split("@")[0]]
        if action is not None:
            steps.append((when, action.format(path=_expression(s["with"]["path"]))))
    return {k: str(v) for k, v in job.get("env", {}).items()}, steps


def gitlab_steps(doc: dict) -> tuple[dict, list[Step]]:
    """before_script and script are one shell (GitLab runs them together); after_script
    is another that always runs; artifacts go up when the job failed."""
    (job,) = doc.values()
    steps = [("success", "\n".join(job["before_script"] + job["script"])),
             ("always", "\n".join(job["after_script"]))]
    art = job["artifacts"]
    assert art["when"] == "on_failure"
    steps += [("failure", ACTIONS["actions/upload-artifact"].format(path=shlex.quote(p)))
              for p in art["paths"]]
    return {k: str(v) for k, v in job.get("variables", {}).items()}, steps


RECIPES = {"github-actions.yml": github_steps, "gitlab-ci.yml": gitlab_steps}


def _leftovers(ns: str) -> list[int]:
    """Pids of processes in mount namespace *ns* (all started by this test)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/mnt") == ns:
                    found.append(int(name))
            except OSError:
                pass
    return found


def _kill_namespace(ns_file: str, grace: float) -> list[int]:
    """SIGKILL whatever still runs in the replay's namespace after *grace* seconds (a
    daemon finishes its exit after fusermount3 -u returns), each through a pidfd
    opened before its namespace is checked again; returns the pids it found."""
    try:
        with open(ns_file) as f:
            ns = f.read().strip()
    except OSError:
        return []
    if not ns or ns == os.readlink("/proc/self/ns/mnt"):
        return []
    deadline = time.monotonic() + grace
    while (found := _leftovers(ns)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in found:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)
    return found


@pytest.mark.parametrize("outcome", ["passing", "failing"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_the_ci_recipe_replayed_on_a_fresh_clone(recipe, outcome, tmp_path):
    """*failing*: the project's shell test fails; the job must fail, still unmount,
    and upload the daemon's complete log."""
    require_go()
    top = subprocess.run(["git", "-C", ROOT, "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    assert top.returncode == 0, f"the replay clones this repository: {top.stderr}"
    with open(os.path.join(EXAMPLES, recipe)) as f:
        variables, steps = RECIPES[recipe](yaml.safe_load(f))

    project = tmp_path / "project"
    shutil.copytree(GO_DIR, project)
    if outcome == "failing":
        (project / "check-paths.sh").write_text("#!/bin/sh\necho 'check-paths: broken'; exit 3\n")
    bindir, artifacts, ns_file = tmp_path / "bin", tmp_path / "artifacts", tmp_path / "ns"
    bindir.mkdir()
    moved = {"CGROUPFS_EMU_REPO": top.stdout.strip(), "CGEMU_SRC": str(tmp_path / "src"),
             "CGEMU_MOUNT": str(tmp_path / "cgroupfs-emu"),
             "CGEMU_LOG": str(tmp_path / "cgroupfs-emu.log")}
    assert set(moved) <= set(variables), f"{recipe} no longer names {set(moved) - set(variables)}"
    if "$CI_PROJECT_DIR" in variables["CGEMU_LOG"]:  # GitLab: already below the checkout
        del moved["CGEMU_LOG"]
    # GitHub's env values are literal, GitLab expands $VARIABLES in its own
    quote = shlex.quote if recipe.startswith("github") else (lambda v: f'"{v}"')
    exports = "".join(f"export {k}={shlex.quote(moved[k]) if k in moved else quote(v)}\n"
                      for k, v in variables.items())
    env = go_env()
    env.update(CI_PROJECT_DIR=str(project), RUNNER_TEMP=str(tmp_path),
               ARTIFACTS=str(artifacts))
    env.pop("CGROUPFS_EMU_MOUNT", None)
    files = []
    for i, (when, script) in enumerate(steps):
        path = tmp_path / f"step{i}.sh"
        path.write_text(exports + script + "\n")
        files.append(f"{when}:{path}")
    start = time.monotonic()
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", DRIVER,
                            "replay", str(bindir), str(ns_file), str(project), *files],
                           env=env, capture_output=True, text=True, timeout=900)
    finally:
        stray = _kill_namespace(str(ns_file), grace=10)
    took = time.monotonic() - start
    out = r.stdout + r.stderr
    assert r.returncode == (0 if outcome == "passing" else 3), f"{recipe}: {took:.0f} s\n{out}"
    assert not stray, f"{recipe} left processes running: {stray}\n{out}"
    # the fresh clone's commands were linked into the namespace's /usr/local/bin (the
    # test's directory mounted over it), never into the machine's
    assert sorted(os.listdir(bindir)) == ["cgemu", "cgroupfs_emu"]
    assert all(os.readlink(bindir / c).startswith(moved["CGEMU_SRC"] + "/") for c in os.listdir(bindir))
    # the project's own tests ran in the view, in the group the recipe named
    assert "runc: own memory cgroup /ci" in out and "containerd: own memory cgroup /ci" in out, out
    assert re.search(r"^ok\s", out, re.M), out
    assert ("check-paths: ok in /ci" if outcome == "passing" else "check-paths: broken") in out
    log = moved.get("CGEMU_LOG") or variables["CGEMU_LOG"].replace("$CI_PROJECT_DIR", str(project))
    with open(log) as f:
        text = f.read()
    assert "unmounted, exiting with status 0" in text and "Traceback" not in text, text
    if outcome == "passing":
        assert not artifacts.exists()  # uploaded only on failure
    else:
        with open(artifacts / os.path.basename(log)) as f:
            assert f.read() == text
    print(f"\n{recipe} ({outcome}) replayed in {took:.1f} s")
