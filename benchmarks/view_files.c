/*
 * bench_view's workload, linked statically:
 *   view_files [ROUNDS] < LIST   stat, open, read and close every file named on stdin
 *                                (one path a line) with raw syscalls, as Go does;
 *                                prints the seconds it took and the bytes read
 *   view_files --floor FILTER [--read] [ROUNDS] < LIST
 *                                the same in a child that installs the seccomp filter
 *                                FILTER (struct sock_filter instructions in hex, as
 *                                bench_view passes cgemu run's own), served by this
 *                                process with SECCOMP_USER_NOTIF_FLAG_CONTINUE for every
 *                                notification and nothing else: the cheapest supervisor
 *                                of one notification per open (--read: plus one read of
 *                                the path's first 256 bytes, as the view's supervisor
 *                                reads it)
 *   view_files --time CMD...     run CMD and print the seconds it took (so that a
 *                                command is timed from inside the view, without the
 *                                view's setup)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* as in cgroupfs_emu/preload/supervise.c: older headers lack them */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int timed(char **argv)
{
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    fprintf(stderr, "%.6f\n", now() - t0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* stat, open, read and close every path rounds times; prints the seconds and bytes */
static int workload(int rounds)
{
    size_t n = 0, cap = 1024;
    char **paths = malloc(cap * sizeof *paths), line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (n == cap)
            paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[n++] = strdup(line);
    }
    struct timespec t0, t1;
    char buf[4096];
    long long bytes = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) {
            struct stat st;
            if (syscall(SYS_newfstatat, AT_FDCWD, paths[i], &st, 0) < 0)
                return perror(paths[i]), 1;
            int fd = syscall(SYS_openat, AT_FDCWD, paths[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return perror(paths[i]), 1;
            ssize_t got;
            while ((got = syscall(SYS_read, fd, buf, sizeof buf)) > 0)
                bytes += got;
            syscall(SYS_close, fd);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f %lld\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, bytes);
    return 0;
}

/* In the child: install the filter (flags as service/fork_guard.py install()) and send
 * its listener over sock. */
static int install(const char *hex, int sock)
{
    size_t len = strlen(hex) / 16;
    struct sock_filter *insns = calloc(len, sizeof *insns);
    for (size_t i = 0; i < len; i++) {
        unsigned char b[8];
        for (int j = 0; j < 8; j++)
            sscanf(hex + 16 * i + 2 * j, "%2hhx", &b[j]);
        memcpy(&insns[i], b, 8); /* code u16, jt u8, jf u8, k u32: little-endian */
    }
    struct sock_fprog prog = {(unsigned short)len, insns};
    unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (fd < 0 && errno == EINVAL) /* before 5.19 */
        fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags = SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0 && errno == EACCES && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (fd < 0)
        return perror("seccomp"), -1;
    char c = 'L', ctl[CMSG_SPACE(sizeof fd)] = {0};
    struct iovec iov = {&c, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fd);
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(sock, &msg, 0) != 1)
        return perror("sendmsg"), -1;
    close(fd);
    return 0;
}

static int receive_listener(int sock)
{
    int fd = -1;
    char c, ctl[CMSG_SPACE(sizeof fd)];
    struct iovec iov = {&c, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &msg, 0) != 1)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS)
        return -1;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

static void woken(int sig)
{
    (void)sig; /* only to interrupt RECV where the kernel does not end it (before 6.6) */
}

/* The floor: the child runs the workload under the filter; this process answers every
 * notification CONTINUE, as the view's supervisor does after its own work (its loop:
 * RECV waits, SEND answers, SYNC_WAKE_UP asked for). */
static int floor_run(const char *hex, int read_path, int rounds)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return perror("socketpair"), 1;
    struct sigaction sa = {.sa_handler = woken}; /* no SA_RESTART */
    sigaction(SIGCHLD, &sa, NULL);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (install(hex, sv[1]) < 0)
            _exit(1);
        close(sv[1]);
        exit(workload(rounds));
    }
    close(sv[1]);
    int listener = receive_listener(sv[0]);
    close(sv[0]);
    if (listener < 0) {
        waitpid(pid, NULL, 0);
        return fprintf(stderr, "view_files: no listener from the child\n"), 1;
    }
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
              (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
        perror("view_files: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP"); /* said, not hidden */
    struct seccomp_notif_sizes sizes = {0};
    syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes);
    size_t size = sizes.seccomp_notif > sizeof(struct seccomp_notif)
                      ? sizes.seccomp_notif : sizeof(struct seccomp_notif);
    struct seccomp_notif *req = malloc(size);
    char path[256];
    for (;;) {
        memset(req, 0, size);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) {
            if (read_path) { /* openat's path, as the supervisor's first read of it */
                struct iovec local = {path, sizeof path},
                             remote = {(void *)(uintptr_t)req->data.args[1], sizeof path};
                process_vm_readv(req->pid, &local, 1, &remote, 1, 0);
            }
            struct seccomp_notif_resp resp = {.id = req->id,
                                              .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
            ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
            continue;
        }
        if (errno != EINTR && errno != ENOENT && errno != EAGAIN)
            return perror("SECCOMP_IOCTL_NOTIF_RECV"), 1;
        struct pollfd p = {listener, POLLIN, 0};
        if (poll(&p, 1, 0) >= 0 && !(p.revents & POLLIN) && (p.revents & POLLHUP))
            break; /* the child is gone */
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--time"))
        return timed(argv + 2);
    if (argc > 2 && !strcmp(argv[1], "--floor")) {
        int read_path = argc > 3 && !strcmp(argv[3], "--read");
        int more = 3 + read_path;
        return floor_run(argv[2], read_path, argc > more ? atoi(argv[more]) : 1);
    }
    return workload(argc > 1 ? atoi(argv[1]) : 1);
}
