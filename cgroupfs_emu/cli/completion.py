"""``cgemu completion bash|zsh``: shell completion scripts generated from cgemu's own
argparse parser, so a new subcommand or option completes without a second list.

What completes: subcommands (with their help in zsh), each subcommand's options,
option values (choices; a directory for -m/--mount and --at; a file for --socket;
the groups of the mount for -g/--group and a GROUP positional), and after ``--`` a
command and then files. scripts/install writes both scripts where the shells look.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: option dest -> what its value is (a shell-neutral kind the writers below map)
VALUE_KINDS = {"mount": "dir", "at": "dir", "socket": "file", "group": "group"}


def register(sub, build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """Add `completion` to cgemu's subparsers; *build_parser* makes cgemu's parser."""
    c = sub.add_parser("completion", help="print a bash or zsh completion script",
                       description=COMPLETION_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("shell", choices=sorted(WRITERS), help="the shell")
    c.set_defaults(func=lambda args: print(WRITERS[args.shell](build_parser()), end="") or 0)


COMPLETION_HELP = """\
Print a completion script for cgemu, generated from its command-line parser.
scripts/install installs both; by hand:

examples:
  cgemu completion bash > ~/.local/share/bash-completion/completions/cgemu
  cgemu completion zsh > "${fpath[1]}/_cgemu"     # then: compinit"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """name -> (its parser, its one-line help), in help order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (p, helps.get(name, "")) for name, p in action.choices.items()}
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _kind(action: argparse.Action) -> str:
    """choices, dir, file, group, command (a REMAINDER) or "" (anything)."""
    if action.choices:
        return "choices"
    if action.nargs == argparse.REMAINDER:
        return "command"
    if action.metavar == "GROUP":
        return "group"
    return VALUE_KINDS.get(action.dest, "")


# ---------------------------------------------------------------------- bash

def bash(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    subs = _subcommands(parser)
    cases = []
    for name, (p, _) in subs.items():
        words = " ".join(s for a in _options(p) for s in a.option_strings)
        values = []
        for a in _options(p):
            if _takes_value(a):
                kind = _kind(a)
                reply = {"choices": f'compgen -W "{" ".join(map(str, a.choices or ()))}" -- "$cur"',
                         "dir": 'compgen -d -- "$cur"', "file": 'compgen -f -- "$cur"',
                         "group": '_cgemu_groups'}.get(kind, "true")
                values.append(f"                {'|'.join(a.option_strings)}) "
                              f"COMPREPLY=($({reply})); return ;;")
        positional = [a for a in p._actions if not a.option_strings and a.dest != "help"]
        pos = _kind(positional[0]) if positional else ""
        pos_reply = {"choices": f'compgen -W "{" ".join(map(str, positional[0].choices or ()))}"'
                                ' -- "$cur"' if positional else "",
                     "group": "_cgemu_groups", "command": "true"}.get(pos, "true")
        cases.append(f"""        {name})
            case $prev in
{chr(10).join(values) or "                '') ;;"}
            esac
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "{words}" -- "$cur"))
            else
                COMPREPLY=($({pos_reply}))
            fi ;;""")
    top = " ".join(s for a in _options(parser) for s in a.option_strings)
    return f"""# bash completion for {prog}: generated from its argparse parser by
# `{prog} completion bash` (scripts/install puts it where bash-completion looks)

_cgemu_groups() {{
    # the groups (directories) of the mount: -m MOUNT, $CGROUPFS_EMU_MOUNT, or the
    # first cgroupfs_emu mount, as cgemu itself finds it
    local m="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -m|--mount) m=${{COMP_WORDS[i+1]}} ;; esac
    done
    [ -n "$m" ] || m=${{CGROUPFS_EMU_MOUNT:-}}
    [ -n "$m" ] || m=$(awk '$3 == "fuse.cgroupfs_emu" {{ print $2; exit }}' /proc/self/mounts)
    [ -d "$m" ] && (cd "$m" && compgen -d -- "${{cur#/}}")
}}

_cgemu() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [ -z "$cmd" ]; then
            [[ ${{COMP_WORDS[i]}} == -* ]] || cmd=${{COMP_WORDS[i]}}
        elif [ "${{COMP_WORDS[i]}}" = "--" ]; then
            # the command to run, then its arguments
            if ((i == COMP_CWORD - 1)); then
                COMPREPLY=($(compgen -c -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi
            return
        fi
    done
    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "{top}" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{" ".join(subs)}" -- "$cur"))
        fi
        return
    fi
    case $cmd in
{chr(10).join(cases)}
    esac
}}
complete -F _cgemu {prog}
"""


# ----------------------------------------------------------------------- zsh

def _zq(text: str) -> str:
    """Text inside a single-quoted _arguments spec: no quote, no brackets, no colon."""
    return (text.replace("'", "'\\''").replace("[", "(").replace("]", ")")
            .replace(":", " -").replace("%", "%%"))


def _zsh_action(a: argparse.Action) -> str:
    kind = _kind(a)
    meta = _zq(str(a.metavar or a.dest))
    return {"choices": f":{meta}:({' '.join(map(str, a.choices or ()))})",
            "dir": f":{meta}:_files -/", "file": f":{meta}:_files",
            "group": f":{meta}:_cgemu_groups"}.get(kind, f":{meta}: ")


def zsh(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    subs = _subcommands(parser)
    described = "\n".join(f"        '{name}:{_zq(h)}'" for name, (_, h) in subs.items())
    cases = []
    for name, (p, _) in subs.items():
        specs = []
        for a in _options(p):
            value = _zsh_action(a) if _takes_value(a) else ""
            for s in a.option_strings:
                specs.append(f"'{s}[{_zq(a.help or '')}]{value}'")
        for a in p._actions:
            if a.option_strings:
                continue
            if a.nargs == argparse.REMAINDER:
                specs.append("'*::command:_normal'")
            else:
                specs.append(f"'{'*' if a.nargs in ('*', '+') else ''}{_zsh_action(a)}'")
        joined = " \\\n                ".join(specs)
        cases.append(f"            {name})\n                _arguments -s {joined} ;;")
    return f"""#compdef {prog}
# zsh completion for {prog}: generated from its argparse parser by
# `{prog} completion zsh` (scripts/install puts it in a site-functions directory)

_cgemu_groups() {{
    local m=${{opt_args[-m]:-${{opt_args[--mount]:-$CGROUPFS_EMU_MOUNT}}}}
    [[ -n $m ]] || m=$(awk '$3 == "fuse.cgroupfs_emu" {{ print $2; exit }}' /proc/self/mounts)
    [[ -d $m ]] && _files -W "$m" -/
}}

_cgemu() {{
    local curcontext=$curcontext state line
    typeset -A opt_args
    _arguments -C \\
        '(- *)'{{-h,--help}}'[show help]' \\
        '(- *)'{{-V,--version}}'[show the version]' \\
        '1:command:->command' \\
        '*::argument:->argument'
    case $state in
    command)
        local -a commands=(
{described}
        )
        _describe -t commands '{prog} command' commands ;;
    argument)
        curcontext=${{curcontext%:*:*}}:{prog}-$line[1]:
        case $line[1] in
{chr(10).join(cases)}
        esac ;;
    esac
}}

_cgemu "$@"
"""


WRITERS = {"bash": bash, "zsh": zsh}
