"""cgroup.event_control: "<event_fd> <control_fd> [args]" (memcg_write_event_control(); docs/notifications.md).

Port of memcg_write_event_control(). Both numbers are descriptors of the *writing*
process (the task blocked in the write(2), found by ControlTree.writer; EBADF where it
cannot be established, never the opener's table); they are looked up through
/proc/PID/fd and validated in the kernel's order
with the kernel's errno. For a valid registration the emulator takes its own duplicate
of the writer's eventfd (pidfd_open + pidfd_getfd, which needs root or ptrace rights
over the writer: the same user, without Yama restrictions) and hands the listener to
the memory controller, which decides when it fires (core/memcg/events.py).
"""

from __future__ import annotations

from ..core.errors import AccessDenied, BadFd, Invalid
from ..core.memcg import events as notify
from ..core.memcg.vmpressure import LEVELS as PRESSURE_LEVELS
from ..core.memcg.vmpressure import MODES as PRESSURE_MODES
from ..core.profiles import CounterKind
from ..units import PAGE_SIZE
from . import mechanics, parsers
from .request import Request

EVENTFD_TARGET = "anon_inode:[eventfd]"
#: control files a listener may name
EVENT_SOURCES = ("memory.usage_in_bytes", "memory.memsw.usage_in_bytes",
                 "memory.oom_control", "memory.pressure_level")
#: MAX_VMPRESSURE_ARGS_LEN: strlen("critical") + strlen("hierarchy") + 2
_MAX_PRESSURE_ARGS = 19


def _threshold(req: Request, args: bytes) -> int:
    """mem_cgroup_usage_register_event(): the threshold is parsed as the profile's
    limits are (res_counter kernels: res_counter_memparse_write_strategy(), rounded
    up), in pages."""
    profile = req.tree.profile
    if profile.counter is CounterKind.RES_COUNTER:
        nbytes = mechanics.res_counter_memparse(parsers.strstrip(args),
                                                profile.memparse_suffixes)
        return nbytes // PAGE_SIZE
    return parsers.parse_limit(args, profile.memparse_suffixes)


def _strtoul10(s: bytes, i: int) -> tuple[int, int]:
    """simple_strtoul(s + i, &end, 10): (value, end index into *s*)."""
    value, end = parsers.simple_strtoull(s[i:], 10)
    return value, i + end


def parse_pressure_args(args: bytes) -> tuple[str, str]:
    """vmpressure_register_event(): level[,mode], case-sensitive; rest ignored."""
    tokens = args[:_MAX_PRESSURE_ARGS].decode("latin-1").split(",")
    if tokens[0] not in PRESSURE_LEVELS:
        raise Invalid("unknown pressure level")
    mode = "default"
    if len(tokens) > 1:
        if tokens[1] not in PRESSURE_MODES:
            raise Invalid("unknown pressure mode")
        mode = tokens[1]
    return tokens[0], mode


def register_event(req: Request, buf: bytes) -> None:
    s = parsers.strstrip(buf)
    efd, end = _strtoul10(s, 0)
    if s[end:end + 1] != b" ":
        raise Invalid("expected '<event_fd> <control_fd> [args]'")
    cfd, end = _strtoul10(s, end + 1)
    if end < len(s) and s[end:end + 1] != b" ":
        raise Invalid("expected '<event_fd> <control_fd> [args]'")
    # With nothing after control_fd the kernel reads past the terminating NUL; what
    # it finds there is empty in practice, which is what we parse.
    args = s[end + 1:]

    host, pid = req.tree.host, req.caller.pid
    target = host.fd_target(pid, efd)
    if target is None:
        raise BadFd("event_fd is not open")
    if target != EVENTFD_TARGET:
        raise Invalid("event_fd is not an eventfd")
    control = host.fd_target(pid, cfd)
    if control is None:
        raise BadFd("control_fd is not open")
    resolved = req.tree.nodes.resolve(control, req.caller)
    if resolved is not None and not resolved[2]:
        raise AccessDenied("no read permission on the control file")
    if resolved is None or resolved[1] not in EVENT_SOURCES:
        raise Invalid("not a memory cgroup event source")
    group, name, _ = resolved
    if group is not req.group:
        raise Invalid("control file belongs to another group")

    if name.endswith("usage_in_bytes"):
        listener = notify.EventListener(notify.THRESHOLD, pid, efd,
                                        threshold=_threshold(req, args),
                                        memsw=name == "memory.memsw.usage_in_bytes")
    elif name == "memory.pressure_level":
        level, mode = parse_pressure_args(args)
        listener = notify.EventListener(notify.PRESSURE, pid, efd, level=level, mode=mode)
    else:
        listener = notify.EventListener(notify.OOM, pid, efd)
    listener.take_handle(host.take_eventfd(pid, efd))
    req.tree.memory.register_event(req.memcg, listener)
