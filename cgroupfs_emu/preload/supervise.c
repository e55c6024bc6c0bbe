/*
 * The view's supervisor: the same answers as the preloaded library, for every program
 * in `cgemu run`, statically linked (Go without cgo) or not.
 *
 * `cgemu run` installs, in the command it starts, a seccomp filter that turns open,
 * openat, openat2, statfs and fstatfs into user notifications (SECCOMP_RET_USER_NOTIF;
 * every other call never leaves the kernel). cgemu itself, outside the filter, runs
 * cgemu_view_supervise() on the listener in a thread of its own (ctypes releases the
 * GIL), and answers each notification:
 *
 *   open/openat/openat2 of one of the view's /proc files (cgview.c's classify()):
 *       the text cgemu_render() writes into a memfd, installed in the caller as the
 *       call's result (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND, 5.14+);
 *   statfs/fstatfs of anything on the emulator mount (same st_dev as the view):
 *       what a cgroup v1 mount's kernfs_statfs() says (tests/data/cgroup_statfs.*),
 *       written into the caller's buffer (process_vm_writev), result 0;
 *   everything else: SECCOMP_USER_NOTIF_FLAG_CONTINUE, the kernel runs the call.
 *
 * Paths are resolved as the caller sees them: absolute ones below /proc/TID/root,
 * relative ones below /proc/TID/cwd or the directory of /proc/TID/fd/DIRFD. What the
 * caller's memory says is read before the call runs, so another thread may change it
 * in between (seccomp_unotify(2), "Design goals"): this is a view, not a boundary.
 * SECCOMP_IOCTL_NOTIF_ID_VALID is asked before anything is written into the caller,
 * so a pid reused meanwhile is never written to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

int cgemu_render(const char *path, int flags, long pid, long tid);
void cgemu_set_view(const char *view);

/* 6.6+: wake the supervisor, and then the caller, on the waker's CPU (the round trip
 * becomes two direct switches); older kernels refuse it and keep the usual wakeups. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#define CGROUP_SUPER_MAGIC 0x27e0eb

static dev_t emu_dev;          /* the emulator's superblock, as stat() reports it */
static struct statfs answer;   /* what statfs says of it in the view */

static long page_size;         /* the caller's, which is ours */

/* Exactly len bytes (at most a page) at addr in pid, zero bytes and all: a struct, not a
 * string. One process_vm_readv with the remote range cut at its page boundary: the call
 * stops at the first remote iovec it cannot read, so what lies before an unreadable page
 * still arrives. Returns the bytes read: len, unless part of it is unreadable. */
static size_t peek_raw(pid_t pid, uint64_t addr, void *out, size_t len)
{
    size_t first = page_size - (addr & (page_size - 1));
    if (len > (size_t)page_size)
        return 0;
    struct iovec local = {out, len},
                 remote[2] = {{(void *)(uintptr_t)addr, len < first ? len : first},
                              {(void *)(uintptr_t)(addr + first), len < first ? 0 : len - first}};
    ssize_t got = process_vm_readv(pid, &local, 1, remote, len <= first ? 1 : 2, 0);
    return got < 0 ? 0 : (size_t)got;
}

/* The NUL-terminated path at addr in pid, into out (PATH_MAX bytes); 0, or -1 when it is
 * unreadable or longer. Most paths are short: the first read takes PATH_PREFIX bytes,
 * and only a path without its NUL there costs a second read of the rest. Each read is
 * cut at the page boundary it crosses (peek_raw), so an unreadable page after the NUL
 * never fails it. */
#define PATH_PREFIX 256
static int read_path(pid_t pid, uint64_t addr, char *out)
{
    size_t done = 0;
    for (size_t want = PATH_PREFIX; done < PATH_MAX; want = PATH_MAX) {
        size_t got = peek_raw(pid, addr + done, out + done, want - done);
        if (memchr(out + done, 0, got))
            return 0;
        if (done + got < want)
            return -1; /* an unreadable page before the NUL: the kernel says EFAULT */
        done += got;
    }
    return -1; /* ENAMETOOLONG */
}

/* Only these names can be a view file: everything else is let through at once. */
static int may_be_view_file(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return !strcmp(base, "mountinfo") || !strcmp(base, "mounts") || !strcmp(base, "cgroup") ||
           !strcmp(base, "cgroups") || !strcmp(base, "mtab");
}

/* "." and ".." and repeated slashes taken out of an absolute path, in place (as the
 * kernel walks it, except that a ".." after a symlink goes up lexically). */
static void normalize(char *p)
{
    char *out = p, *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        char *end = strchrnul(s, '/');
        size_t n = end - s;
        if (n == 0 || (n == 1 && s[0] == '.')) {
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (out > p && *--out != '/')
                ;
        } else {
            *out++ = '/';
            memmove(out, s, n);
            out += n;
        }
        s = end;
    }
    if (out == p)
        *out++ = '/';
    *out = 0;
}

/* The absolute path the caller names with dirfd and path, as text. */
static int absolute(pid_t tid, long dirfd, const char *path, char *out)
{
    char link[64];
    ssize_t n = 0;
    if (path[0] != '/') {
        if ((int)dirfd == AT_FDCWD)
            snprintf(link, sizeof link, "/proc/%d/cwd", tid);
        else
            snprintf(link, sizeof link, "/proc/%d/fd/%d", tid, (int)dirfd);
        n = readlink(link, out, PATH_MAX - 1);
        if (n <= 0 || out[0] != '/')
            return -1;
    }
    if (n + 1 + strlen(path) >= PATH_MAX)
        return -1;
    out[n] = '/';
    strcpy(out + n + 1, path);
    normalize(out);
    return 0;
}

static long tgid_of(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/status", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *t = strstr(buf, "\nTgid:");
    return t ? strtol(t + 6, NULL, 10) : -1;
}

static void reply(int listener, uint64_t id, int64_t val, int error, uint32_t flags)
{
    struct seccomp_notif_resp resp = {.id = id, .val = val, .error = error, .flags = flags};
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp); /* ENOENT: the caller is gone */
}

static void proceed(int listener, uint64_t id)
{
    reply(listener, id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
}

static int still_waiting(int listener, uint64_t id)
{
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

static void on_open(int listener, const struct seccomp_notif *req, long dirfd, uint64_t addr,
                    long flags)
{
    char path[PATH_MAX], abs[PATH_MAX];
    if (read_path(req->pid, addr, path) < 0 || !may_be_view_file(path) ||
        absolute(req->pid, dirfd, path, abs) < 0)
        return proceed(listener, req->id);
    long tgid = tgid_of(req->pid);
    int fd = tgid > 0 ? cgemu_render(abs, (int)flags, tgid, req->pid) : -2;
    if (fd < 0)
        return proceed(listener, req->id);
    if (still_waiting(listener, req->id)) {
        struct seccomp_notif_addfd add = {
            .id = req->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = fd,
            .newfd_flags = flags & O_CLOEXEC};
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0 && errno != ENOENT)
            /* EMFILE and the like: what the real open would have said */
            reply(listener, req->id, -1, errno == EBUSY ? -EIO : -errno, 0);
    }
    close(fd);
}

/* statfs(path) or fstatfs(fd): answered when its target is on the emulator mount. */
static void on_statfs(int listener, const struct seccomp_notif *req, int by_fd)
{
    char target[PATH_MAX + 64], path[PATH_MAX];
    if (by_fd) {
        snprintf(target, sizeof target, "/proc/%d/fd/%d", req->pid, (int)req->data.args[0]);
    } else {
        if (read_path(req->pid, req->data.args[0], path) < 0)
            return proceed(listener, req->id);
        snprintf(target, sizeof target, "/proc/%d/%s/%s", req->pid,
                 path[0] == '/' ? "root" : "cwd", path);
    }
    struct stat st;
    if (stat(target, &st) < 0 || st.st_dev != emu_dev)
        return proceed(listener, req->id);
    struct iovec local = {&answer, sizeof answer},
                 remote = {(void *)(uintptr_t)req->data.args[1], sizeof answer};
    if (!still_waiting(listener, req->id))
        return;
    if (process_vm_writev(req->pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof answer)
        return reply(listener, req->id, -1, -EFAULT, 0);
    reply(listener, req->id, 0, 0, 0);
}

static void dispatch(int listener, const struct seccomp_notif *req)
{
    const __u64 *a = req->data.args;
    switch (req->data.nr) {
#ifdef SYS_open
    case SYS_open:
        return on_open(listener, req, AT_FDCWD, a[0], (long)a[1]);
#endif
    case SYS_openat:
        return on_open(listener, req, (long)a[0], a[1], (long)a[2]);
    case SYS_openat2: {
        uint64_t how_flags = 0; /* struct open_how starts with its u64 flags */
        if (a[3] < sizeof how_flags ||
            peek_raw(req->pid, a[2], &how_flags, sizeof how_flags) != sizeof how_flags)
            return proceed(listener, req->id);
        return on_open(listener, req, (long)a[0], a[1], (long)how_flags);
    }
    case SYS_statfs:
        return on_statfs(listener, req, 0);
    case SYS_fstatfs:
        return on_statfs(listener, req, 1);
    default:
        return proceed(listener, req->id);
    }
}

/* Ask the kernel to wake the supervisor, and then the caller, on the waker's CPU
 * (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 6.6+): 0, or -errno when it refused (EINVAL
 * before 6.6), and then every round trip takes the usual wakeups. cgemu asks before
 * the loop starts, and says so when a kernel that has the flag refuses it. */
int cgemu_view_sync_wakeup(int listener)
{
    /* the flag is the ioctl's argument itself (seccomp_notify_set_flags()) */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
              (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
        return -errno;
    return 0;
}

/* Serve listener until no task uses its filter any more, or stop_fd is readable once
 * the listener has nothing to say. view is the emulator's mount point in the view.
 * Returns 0, or -errno. */
int cgemu_view_supervise(int listener, const char *view, int stop_fd)
{
    struct stat st;
    struct statfs real;
    if (stat(view, &st) < 0 || statfs(view, &real) < 0)
        return -errno;
    cgemu_set_view(view);
    emu_dev = st.st_dev;
    /* kernfs_statfs(): simple_statfs() (PAGE_SIZE blocks, NAME_MAX, no counts) with an
     * f_fsid from the superblock's random uuid; the mount flags are the bind's own */
    memset(&answer, 0, sizeof answer);
    answer.f_type = CGROUP_SUPER_MAGIC;
    page_size = sysconf(_SC_PAGESIZE);
    answer.f_bsize = answer.f_frsize = page_size;
    answer.f_namelen = NAME_MAX;
    answer.f_fsid.__val[0] = (int)(st.st_dev ^ CGROUP_SUPER_MAGIC);
    answer.f_fsid.__val[1] = (int)((uint64_t)st.st_dev >> 32);
    answer.f_flags = real.f_flags;

    struct seccomp_notif_sizes sizes = {0};
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
        return -errno;
    size_t size = sizes.seccomp_notif > sizeof(struct seccomp_notif)
                      ? sizes.seccomp_notif : sizeof(struct seccomp_notif);
    struct seccomp_notif *req = malloc(size);
    if (!req)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        /* RECV itself waits (one call less per round trip than poll first); it
         * returns ENOENT once the filter has no task left (recv_wait_event()) */
        memset(req, 0, size);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) {
            dispatch(listener, req);
            continue;
        }
        if (errno != EINTR && errno != ENOENT && errno != EAGAIN) {
            rc = -errno;
            break;
        }
        struct pollfd p[2] = {{listener, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        if (poll(p, stop_fd >= 0 ? 2 : 1, errno == ENOENT ? 0 : -1) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        if (p[1].revents || (!(p[0].revents & POLLIN) &&
                             (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))))
            break; /* told to stop, or every task of the view is gone */
    }
    free(req);
    return rc;
}
