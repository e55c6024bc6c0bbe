"""What users of a command-line tool expect: shell completion for cgemu (generated from
its parser, installed by scripts/install) and a --help that lists every -o option
with its default (printed from the options table, so it cannot drift)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from cgroupfs_emu.cli import options
from cgroupfs_emu.cli.cgemu import _parser
from cgroupfs_emu.cli.completion import _subcommands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBCOMMANDS = list(_subcommands(_parser()))


def completion(shell: str) -> str:
    return subprocess.run([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "completion", shell],
                          capture_output=True, text=True, check=True).stdout


def complete(script: str, line: str, env: dict | None = None) -> list[str]:
    """What bash offers for the last word of *line* ("cgemu e" or "cgemu exec "),
    the way bash-completion calls _cgemu."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    program = (f"source {shlex.quote(script)}\n"
               f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\n"
               "_cgemu\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return sorted(w for w in r.stdout.splitlines() if w)


@pytest.fixture
def bash_script(tmp_path):
    path = tmp_path / "cgemu.bash"
    path.write_text(completion("bash"))
    return str(path)


def test_bash_completes_subcommands_and_their_options(bash_script):
    assert complete(bash_script, "cgemu e") == ["exec"]
    assert complete(bash_script, "cgemu ") == sorted(SUBCOMMANDS)
    assert complete(bash_script, "cgemu -") == ["--help", "--version", "-V", "-h"]
    assert complete(bash_script, "cgemu exec --no") == ["--no-guard"]
    assert "--hold" in complete(bash_script, "cgemu alloc --")
    assert complete(bash_script, "cgemu top -s me") == ["memsw"]
    assert complete(bash_script, "cgemu completion ") == ["bash", "zsh"]
    # after -- the command to run, then its files
    assert "true" in complete(bash_script, "cgemu exec -g a -- tru")


@pytest.mark.mount
def test_bash_completes_the_groups_of_the_mount(bash_script, mnt):
    for g in ("jobs", "jobs/a", "web"):
        os.mkdir(mnt.p(g))
    assert complete(bash_script, f"cgemu exec -m {mnt.path} -g ") == ["jobs", "web"]
    assert complete(bash_script, f"cgemu stat -m {mnt.path} jobs/") == ["jobs/a"]
    env = dict(os.environ, CGROUPFS_EMU_MOUNT=mnt.path)
    assert complete(bash_script, "cgemu run -g w", env=env) == ["web"]


def test_zsh_script_is_valid_and_knows_every_subcommand(tmp_path):
    text = completion("zsh")
    assert text.startswith("#compdef cgemu\n")
    path = tmp_path / "_cgemu"
    path.write_text(text)
    r = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in SUBCOMMANDS:
        assert f"\n        '{name}:" in text and f"\n            {name})\n" in text
    # zsh loads it as a function from $fpath, once compinit has run
    r = subprocess.run(["zsh", "-f", "-c", f"fpath=({tmp_path} $fpath); autoload -U compinit; "
                        f"compinit -u -d {tmp_path}/zcompdump; print -r -- $_comps[cgemu]"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "_cgemu", r.stdout + r.stderr


def test_scripts_install_puts_both_where_the_shells_look(tmp_path):
    env = dict(os.environ, BASH_COMPLETION_DIR=str(tmp_path / "bash"),
               ZSH_COMPLETION_DIR=str(tmp_path / "zsh"))
    r = subprocess.run([os.path.join(REPO, "scripts", "install")], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bash" / "cgemu").read_text() == completion("bash")
    assert (tmp_path / "zsh" / "_cgemu").read_text() == completion("zsh")


def test_help_lists_every_mount_option_with_its_default():
    text = subprocess.run([sys.executable, "-m", "cgroupfs_emu", "--help"], capture_output=True,
                          text=True, check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    for row in options.OPTIONS:
        spec = f"{row.name}={row.value}" if row.value else row.name
        assert re.search(rf"^  {re.escape(spec)}( |$)", text, re.M), spec
        shown = " ".join(f"{row.help} (default: {row.default})".split())
        assert shown in flat, row.name
    for name in options.PASSED | options.IGNORED:
        assert re.search(rf"\b{name}\b", text), name
    # the defaults shown are the ones that hold
    cfg = options.parse_args(["/mnt"])
    by_name = {row.name: row for row in options.OPTIONS}
    assert by_name["kernel"].default == cfg.profile
    for attr in ("poll_ms", "fast_ms", "swap", "events"):
        assert by_name[attr].default == str(getattr(cfg, attr))
    assert int(by_name["socket_mode"].default, 8) == cfg.socket_mode
    assert by_name["oom_kill"].default == ("kill" if cfg.oom_kill else "none")


def test_every_listed_option_is_taken_and_nothing_else():
    samples = {"kernel": "linux-6", "ncpus": "4", "release_agent": "/bin/true",
               "log": "x.log", "pidfile": "x.pid", "socket": "x.sock", "socket_mode": "0660",
               "swap": "64M", "oom_kill": "none", "poll_ms": "100", "fast_ms": "5",
               "events": "scan", "thread_stacks": "1"}
    for row in options.OPTIONS:
        opt = f"{row.name}={samples[row.name]}" if row.value else row.name
        options.parse_args(["-o", opt, "/mnt"])
    with pytest.raises(options.UsageError, match="unknown mount option 'bogus'"):
        options.parse_args(["-o", "bogus", "/mnt"])
