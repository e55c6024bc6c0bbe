/*
 * libcgemu_preload.so: what a process reads about its own cgroups agrees with the
 * emulator.
 *
 * `cgemu run` mounts the emulator at $CGROUPFS_EMU_VIEW (e.g. /sys/fs/cgroup/memory)
 * in a private mount namespace and preloads this library.  The kernel still prints
 * the host's truth in /proc (the emulator is a fuse.cgroupfs_emu mount, the task's
 * memory cgroup is the host's), so the libc entry points programs use to read those
 * files are interposed and answer with the text a cgroup v1 host would print:
 *
 *   /proc/mounts, /proc/{self,thread-self,PID}/mounts, /etc/mtab -> /proc/self/mounts
 *   /proc/{self,thread-self,PID}/mountinfo
 *       the real table with every cgroup/cgroup2 line dropped (those hierarchies are
 *       hidden from the view) and the view's line shown as type "cgroup", source
 *       "cgroup", option "memory" -- the shape of mount_cgroup v1's show_options.
 *   /proc/{self,thread-self,PID}/cgroup, /proc/PID/task/TID/cgroup
 *       the real lines minus the memory one, plus "N:memory:/GROUP", in the kernel's
 *       order (proc_cgroup_show() walks the roots newest first: ids descending, 0 last).
 *   /proc/cgroups
 *       the real table with memory's hierarchy id and num_cgroups from the emulator.
 *
 * GROUP is looked up in the emulator itself: the group whose `tasks` file lists the
 * pid, so a task moved by cgclassify, cgexec or a plain `echo $$ > tasks` is seen where
 * it now is; a task forked in the last few seconds and not yet adopted by the daemon
 * is shown in its parent's group; anything else is in the root.  N is the host's memory hierarchy
 * id when memory is a v1 hierarchy there, else one more than the largest id in use.
 *
 * Entry points: open, open64, openat, openat64, their _FORTIFY_SOURCE forms
 * (__open_2, ...), fopen, fopen64, setmntent (glibc's setmntent and fopen call
 * their internal open directly, so both are interposed; getmntent/getmntent_r then
 * read the synthesized stream as they would the real one).  The exec family and
 * posix_spawn are interposed only to take this library out of LD_PRELOAD for a
 * program it cannot serve (static, or set-user/group-ID).
 *
 * The same render() serves the view's seccomp supervisor (supervise.c, through
 * cgemu_render()), which reaches what this library cannot: statically linked programs
 * (Go without cgo reads /proc with raw syscalls), open(2) issued directly, reads
 * relative to a directory fd, openat2(2), and statfs().  `cgemu run` preloads this
 * library only where there is no seccomp view (it says why in one line).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ buffers */

struct buf {
    char *p;
    size_t len, cap;
    int bad;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->bad = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* Read a whole file with raw syscalls, never through the interposed functions. */
static int slurp(const char *path, struct buf *out)
{
    int fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            close(fd);
            if (n < 0) {
                errno = saved;
                return -1;
            }
            break;
        }
        put(out, chunk, n);
    }
    if (!out->p)
        puts_(out, "");
    return out->bad ? -1 : 0;
}

/* ------------------------------------------------------------------ the view */

/* Set by the view's supervisor (supervise.c), which serves other processes; a
 * preloaded copy reads its own environment. */
static char view_given[PATH_MAX];

void cgemu_set_view(const char *view)
{
    snprintf(view_given, sizeof view_given, "%s", view);
}

static const char *view_path(void)
{
    const char *v = view_given[0] ? view_given : getenv("CGROUPFS_EMU_VIEW");
    return v && v[0] == '/' ? v : NULL;
}

/* The kernel's mangle for paths in mounts/mountinfo: space, tab, newline, backslash. */
static void put_escaped(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\\') {
            char o[5];
            snprintf(o, sizeof o, "\\%03o", (unsigned char)*s);
            puts_(b, o);
        } else {
            put(b, s, 1);
        }
    }
}

/* The groups below the root, parents before children, read once per synthesized file:
 * each with its tasks file where a pid is looked for, only counted for /proc/cgroups. */
struct group {
    char *path; /* relative to the view, with a leading slash */
    struct buf tasks;
};

struct groups {
    struct group *v;
    size_t n, cap;
};

static int lists(const struct buf *tasks, long pid);

/* What a walk reads: with_tasks reads every group's tasks file (group_of), and a walk
 * for a pid (> 0) stops at the first group whose tasks lists it: that listing is
 * where the task was when it was read. Every read here is a FUSE round trip to the
 * daemon, and these renders sit in the traced program's open(). */
struct walk {
    int with_tasks;
    long pid;
    int found;
};

/* A directory is opened only when it has subgroups: kernfs counts each child
 * directory's ".." in its parent's link count (kernfs_refresh_inode(): 2 + subdirs, as the
 * emulator reports it), so a group with st_nlink 2 is a leaf. A link count below 2
 * (a filesystem that does not count) is walked. */
static void collect_groups(char *path, size_t root_len, size_t len, struct groups *gs,
                           struct walk *w)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while (!w->found && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
            continue; /* a control file: no stat for it */
        size_t n = strlen(e->d_name);
        if (len + 1 + n + sizeof "/tasks" > PATH_MAX)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        path[len] = '/';
        memcpy(path + len + 1, e->d_name, n + 1);
        if (gs->n == gs->cap) {
            size_t cap = gs->cap ? gs->cap * 2 : 16;
            struct group *v = realloc(gs->v, cap * sizeof *v);
            if (!v)
                break;
            gs->v = v;
            gs->cap = cap;
        }
        struct group *g = &gs->v[gs->n++];
        memset(g, 0, sizeof *g);
        g->path = strdup(path + root_len);
        if (w->with_tasks) {
            memcpy(path + len + 1 + n, "/tasks", sizeof "/tasks");
            slurp(path, &g->tasks); /* a group removed meanwhile lists nothing */
            path[len + 1 + n] = 0;
            w->found = w->pid > 0 && lists(&g->tasks, w->pid);
        }
        if (!w->found && st.st_nlink != 2)
            collect_groups(path, root_len, len + 1 + n, gs, w);
        path[len] = 0;
    }
    closedir(d);
    path[len] = 0;
}

static void read_groups(struct groups *gs, struct walk *w)
{
    const char *v = view_path();
    char path[PATH_MAX];
    size_t vl = strlen(v);
    while (vl > 1 && v[vl - 1] == '/')
        vl--;
    if (vl >= sizeof path)
        return;
    memcpy(path, v, vl);
    path[vl] = 0;
    collect_groups(path, vl, vl, gs, w);
}

static void free_groups(struct groups *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        free(gs->v[i].path);
        free(gs->v[i].tasks.p);
    }
    free(gs->v);
}

static int lists(const struct buf *tasks, long pid)
{
    char *s = tasks->p, *end;
    while (s && *s) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (v == pid)
            return 1;
        s = end;
    }
    return 0;
}

/* How long after its start an unlisted task is taken to be a fork the daemon has not
 * adopted yet: several of its polls (poll_ms, default 500 ms) on a busy machine. Older
 * unlisted tasks are where the emulator says: in the root (moved there, or forked
 * before their parent joined a group). */
#define ADOPT_WINDOW_S 5.0

/* Where a task came from, and whether it started within the adoption window: for a
 * thread its thread-group leader (new threads join their process's group), else its
 * parent; -1 if it is gone. */
static long origin_if_young(long pid, int *young)
{
    char path[64];
    struct buf b = {0}, up = {0};
    long ppid = -1, tgid = -1;
    unsigned long long start = 0;
    *young = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    if (slurp(path, &b) == 0) {
        char *t = strstr(b.p, "\nTgid:");
        if (t)
            tgid = strtol(t + 6, NULL, 10);
    }
    free(b.p);
    b = (struct buf){0};
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (slurp(path, &b) == 0) {
        char *paren = strrchr(b.p, ')'); /* comm may hold spaces and parens */
        /* fields 3 (state), 4 (ppid) ... 22 (starttime, clock ticks after boot) */
        if (!paren || sscanf(paren + 1, " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u"
                                        " %*d %*d %*d %*d %*d %*d %llu", &ppid, &start) != 2)
            ppid = -1;
    }
    double uptime;
    if (ppid >= 0 && slurp("/proc/uptime", &up) == 0 && sscanf(up.p, "%lf", &uptime) == 1)
        *young = uptime - (double)start / sysconf(_SC_CLK_TCK) < ADOPT_WINDOW_S;
    free(b.p);
    free(up.p);
    return tgid > 0 && tgid != pid && ppid >= 0 ? tgid : ppid;
}

/* The emulated group of pid: the group whose tasks lists it. The daemon adopts forked
 * children only at its next poll, where the kernel puts them in their parent's group
 * at fork (cgroup_post_fork()), so a young unlisted task is shown in the group of its
 * nearest listed ancestor (its process first, for a thread), through young unlisted
 * ones; otherwise it is in the root. */
static void group_of(long pid, struct buf *out)
{
    struct groups gs = {0};
    struct walk w = {.with_tasks = 1, .pid = pid};
    read_groups(&gs, &w); /* all of them, unless pid was found: then it is the last */
    for (int depth = 0; depth < 64 && pid > 0; depth++) {
        /* children before parents: a listing read mid-move must not hide the newer */
        for (size_t i = gs.n; i-- > 0;) {
            if (lists(&gs.v[i].tasks, pid)) {
                puts_(out, gs.v[i].path);
                free_groups(&gs);
                return;
            }
        }
        int young;
        pid = pid > 1 ? origin_if_young(pid, &young) : 0;
        if (!young)
            break;
    }
    free_groups(&gs);
    puts_(out, "/");
}

static long group_count(void)
{
    struct groups gs = {0};
    struct walk w = {0}; /* counting needs no tasks file */
    read_groups(&gs, &w);
    long n = (long)gs.n + 1;
    free_groups(&gs);
    return n;
}

/* The controllers of the host's /proc/cgroups and the hierarchy each has in the view.
 * Where the host has memory on a v1 hierarchy, every id stays. Where it keeps memory
 * on cgroup2 (id 0), the view is a legacy v1 host: every enabled controller at 0 gets
 * its own new id after the largest in use, in table order, memory among them -- a mix
 * of 0 and non-zero ids would be a hybrid host some runtimes refuse (the JDK's
 * CgroupSubsystemFactory: "Mixed cgroupv1 and cgroupv2 not supported"). */
#define MAX_CONTROLLERS 64

struct controller {
    char name[64];
    int host, id, count, enabled;
};

static int read_controllers(struct controller *c)
{
    struct buf b = {0};
    int n = 0, max = 0;
    if (slurp("/proc/cgroups", &b) == 0) {
        for (char *line = b.p; line && *line && n < MAX_CONTROLLERS;) {
            char *nl = strchr(line, '\n');
            struct controller *x = &c[n];
            if (line[0] != '#' &&
                sscanf(line, "%63s %d %d %d", x->name, &x->host, &x->count, &x->enabled) == 4) {
                if (x->host > max)
                    max = x->host;
                n++;
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    free(b.p);
    b = (struct buf){0};
    /* new ids must not collide with named hierarchies (name=systemd), which only
     * /proc/PID/cgroup shows */
    if (slurp("/proc/self/cgroup", &b) == 0) {
        for (char *line = b.p; line && *line;) {
            char *nl = strchr(line, '\n');
            if (atoi(line) > max)
                max = atoi(line);
            line = nl ? nl + 1 : NULL;
        }
    }
    free(b.p);
    int memory = 0, keep = 1;
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].name, "memory"))
            keep = c[i].host != 0;
    for (int i = 0; i < n; i++) {
        int is_memory = !strcmp(c[i].name, "memory"); /* enabled in the view, always */
        c[i].id = keep || c[i].host || (!c[i].enabled && !is_memory) ? c[i].host : ++max;
        memory |= is_memory;
    }
    if (!memory && n < MAX_CONTROLLERS) { /* a kernel without memcg: the view has one */
        struct controller *x = &c[n++];
        snprintf(x->name, sizeof x->name, "memory");
        x->host = 0;
        x->id = ++max;
        x->count = x->enabled = 1;
    }
    return n;
}

/* ------------------------------------------------------------- synthesizing */

/* The n-th (0-based) space-separated field of line, copied into out. */
static int field(const char *line, int n, char *out, size_t size)
{
    const char *s = line;
    for (int i = 0; i < n; i++) {
        s = strchr(s, ' ');
        if (!s)
            return -1;
        s++;
    }
    size_t k = strcspn(s, " \n");
    if (k >= size)
        return -1;
    memcpy(out, s, k);
    out[k] = 0;
    return 0;
}

static int is_cgroup_type(const char *t) { return !strcmp(t, "cgroup") || !strcmp(t, "cgroup2"); }

/* Mount flags as show_mnt_opts()/show_vfsmnt() print them: no FUSE superblock options. */
static void put_mount_flags(struct buf *b, const char *opts)
{
    static const char *const keep[] = {"rw", "ro", "nosuid", "nodev", "noexec", "sync",
                                       "dirsync", "mand", "noatime", "nodiratime",
                                       "relatime", "strictatime", "lazytime", NULL};
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", opts);
    int first = 1;
    for (char *save, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        for (int i = 0; keep[i]; i++) {
            if (!strcmp(t, keep[i])) {
                if (!first)
                    puts_(b, ",");
                puts_(b, t);
                first = 0;
            }
        }
    }
    if (first)
        puts_(b, "rw");
}

static int synth_mounts(const char *real, struct buf *out)
{
    struct buf in = {0}, esc = {0};
    if (slurp(real, &in) < 0)
        return -1;
    put_escaped(&esc, view_path());
    for (char *line = in.p; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        char mp[PATH_MAX], type[256], opts[1024];
        if (field(line, 1, mp, sizeof mp) == 0 && field(line, 2, type, sizeof type) == 0 &&
            field(line, 3, opts, sizeof opts) == 0) {
            if (is_cgroup_type(type)) {
                line += n;
                continue;
            }
            if (esc.p && !strcmp(mp, esc.p)) {
                puts_(out, "cgroup ");
                puts_(out, esc.p);
                puts_(out, " cgroup ");
                put_mount_flags(out, opts);
                puts_(out, ",memory 0 0\n");
                line += n;
                continue;
            }
        }
        put(out, line, n);
        line += n;
    }
    free(in.p);
    free(esc.p);
    return 0;
}

static int synth_mountinfo(const char *real, struct buf *out)
{
    struct buf in = {0}, esc = {0};
    if (slurp(real, &in) < 0)
        return -1;
    put_escaped(&esc, view_path());
    for (char *line = in.p; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        char copy[8192], mp[PATH_MAX], type[256], superopts[1024];
        char *sep = NULL;
        if (n < sizeof copy) {
            memcpy(copy, line, n);
            copy[n] = 0;
            sep = strstr(copy, " - ");
        }
        if (sep && field(copy, 4, mp, sizeof mp) == 0 &&
            field(sep + 3, 0, type, sizeof type) == 0 &&
            field(sep + 3, 2, superopts, sizeof superopts) == 0) {
            if (is_cgroup_type(type)) {
                line += n;
                continue;
            }
            if (esc.p && !strcmp(mp, esc.p)) {
                /* the per-mount part is the bind mount's own; the superblock part is
                 * what cgroup1_show_options() prints for a memory-only hierarchy */
                put(out, copy, sep - copy);
                puts_(out, " - cgroup cgroup ");
                int ro = !strncmp(superopts, "ro", 2) && (superopts[2] == ',' || !superopts[2]);
                puts_(out, ro ? "ro" : "rw");
                puts_(out, ",memory\n");
                line += n;
                continue;
            }
        }
        put(out, line, n);
        line += n;
    }
    free(in.p);
    free(esc.p);
    return 0;
}

/* One line of /proc/PID/cgroup, kept with its hierarchy id for sorting. */
struct cgline {
    int id;
    char *text;
};

static int by_id_descending(const void *x, const void *y)
{
    return ((const struct cgline *)y)->id - ((const struct cgline *)x)->id;
}

static int names_memory(const char *line)
{
    /* hierarchy-id:controller,controller...:path */
    const char *c = strchr(line, ':'), *e = c ? strchr(c + 1, ':') : NULL;
    for (const char *t = c + 1; e && t < e;) {
        size_t k = strcspn(t, ",:");
        if (k == 6 && !strncmp(t, "memory", 6))
            return 1;
        t += k + 1;
    }
    return 0;
}

static int synth_cgroup(const char *real, long pid, struct buf *out)
{
    struct buf in = {0}, group = {0};
    if (slurp(real, &in) < 0)
        return -1;
    struct controller c[MAX_CONTROLLERS];
    int nc = read_controllers(c);
    size_t cap = nc + 64, n = 0;
    struct cgline *lines = calloc(cap, sizeof *lines);
    if (!lines) {
        free(in.p);
        return -1;
    }
    /* the host's lines, less memory's: its other v1 hierarchies and its cgroup2 one */
    for (char *line = in.p; *line && n < cap;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (!names_memory(line)) {
            lines[n].id = atoi(line);
            lines[n++].text = strndup(line, len);
        }
        line += len;
    }
    /* the hierarchies the view has and the host keeps on cgroup2: the task is at the
     * root of each, except memory's, where it is in its emulated group */
    group_of(pid, &group);
    for (int i = 0; i < nc && n < cap; i++) {
        int is_memory = !strcmp(c[i].name, "memory");
        if (c[i].id == 0 || (c[i].host && !is_memory))
            continue;
        char *text;
        if (asprintf(&text, "%d:%.63s:%s\n", c[i].id, c[i].name,
                     is_memory && group.p ? group.p : "/") < 0)
            continue;
        lines[n].id = c[i].id;
        lines[n++].text = text;
    }
    /* proc_cgroup_show() walks the roots newest first: ids descending, cgroup2's 0 last */
    qsort(lines, n, sizeof *lines, by_id_descending);
    for (size_t i = 0; i < n; i++) {
        if (lines[i].text)
            puts_(out, lines[i].text);
        free(lines[i].text);
    }
    free(lines);
    free(in.p);
    free(group.p);
    return 0;
}

static int synth_cgroups(struct buf *out)
{
    struct controller c[MAX_CONTROLLERS];
    int n = read_controllers(c);
    if (n == 0)
        return -1;
    puts_(out, "#subsys_name\thierarchy\tnum_cgroups\tenabled\n");
    for (int i = 0; i < n; i++) {
        char row[256];
        long count = !strcmp(c[i].name, "memory") ? group_count()
                     : c[i].id != c[i].host ? 1 /* a new hierarchy: its root only */
                     : c[i].count;
        snprintf(row, sizeof row, "%.63s\t%d\t%ld\t%d\n", c[i].name, c[i].id, count,
                 !strcmp(c[i].name, "memory") ? 1 : c[i].enabled);
        puts_(out, row);
    }
    return 0;
}

/* ------------------------------------------------------------ path matching */

enum kind { NONE, MOUNTS, MOUNTINFO, CGROUP, CGROUPS };

/* The task that opens the file: "self" and "thread-self" name it. The preloaded
 * library is that task; the supervisor is told from the seccomp notification. */
struct caller {
    long pid, tid;
};

/* Parses "/proc/<who>/<rest>" where who is self, thread-self or digits. */
static const char *proc_who(const char *path, long *pid, const struct caller *c)
{
    if (strncmp(path, "/proc/", 6))
        return NULL;
    const char *s = path + 6;
    if (!strncmp(s, "self/", 5)) {
        *pid = c->pid;
        return s + 5;
    }
    if (!strncmp(s, "thread-self/", 12)) {
        *pid = c->tid;
        return s + 12;
    }
    if (!isdigit((unsigned char)*s))
        return NULL;
    char *end;
    *pid = strtol(s, &end, 10);
    return *end == '/' ? end + 1 : NULL;
}

static enum kind classify(const char *path, long *pid, const struct caller *c)
{
    if (!path || !view_path())
        return NONE;
    if (!strcmp(path, "/proc/mounts"))
        return *pid = c->pid, MOUNTS;
    if (!strcmp(path, "/proc/cgroups"))
        return CGROUPS;
    if (!strcmp(path, "/etc/mtab")) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = 0;
            if (strstr(target, "proc/self/mounts") || strstr(target, "proc/mounts"))
                return *pid = c->pid, MOUNTS;
        }
        return NONE;
    }
    const char *rest = proc_who(path, pid, c);
    if (!rest)
        return NONE;
    if (!strcmp(rest, "cgroup"))
        return CGROUP;
    if (!strncmp(rest, "task/", 5)) {
        char *end;
        long tid = strtol(rest + 5, &end, 10);
        if (end != rest + 5 && !strcmp(end, "/cgroup")) {
            *pid = tid;
            return CGROUP;
        }
        return NONE;
    }
    /* another process's mount table is the view's only if it is in our namespace */
    if (*pid != c->pid && *pid != c->tid) {
        char theirs[64], mine[64], a[64] = "", b[64] = "";
        snprintf(theirs, sizeof theirs, "/proc/%ld/ns/mnt", *pid);
        snprintf(mine, sizeof mine, "/proc/%ld/ns/mnt", c->pid);
        if (readlink(theirs, a, sizeof a - 1) <= 0 ||
            readlink(mine, b, sizeof b - 1) <= 0 || strcmp(a, b))
            return NONE;
    }
    if (!strcmp(rest, "mounts"))
        return MOUNTS;
    if (!strcmp(rest, "mountinfo"))
        return MOUNTINFO;
    return NONE;
}

/* An fd reading the synthesized text from offset 0, or -2 (errno kept) when path is
 * none of the view's files or cannot be rendered: the real call answers then. This is
 * the one renderer: the preloaded library and the supervisor both come here. */
static int render(const char *path, int flags, const struct caller *c)
{
    long pid = 0;
    enum kind k = classify(path, &pid, c);
    if (k == NONE || (flags & O_ACCMODE) != O_RDONLY || (flags & (O_PATH | O_DIRECTORY)))
        return -2;
    int saved = errno;
    struct buf b = {0};
    int rc;
    char real[64];
    switch (k) {
    case MOUNTS: /* pid's namespace is the caller's (classify), so is this table */
        snprintf(real, sizeof real, "/proc/%ld/mounts", c->pid);
        rc = synth_mounts(real, &b);
        break;
    case MOUNTINFO:
        snprintf(real, sizeof real, "/proc/%ld/mountinfo", c->pid);
        rc = synth_mountinfo(real, &b);
        break;
    case CGROUP:
        snprintf(real, sizeof real, "/proc/%ld/cgroup", pid);
        rc = synth_cgroup(real, pid, &b);
        break;
    default:
        rc = synth_cgroups(&b);
        break;
    }
    if (rc < 0 || b.bad) {
        free(b.p);
        errno = saved;
        return -2; /* let the real call report what the kernel says */
    }
    int fd = syscall(SYS_memfd_create, "cgroupfs_emu", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0) {
        free(b.p);
        errno = saved;
        return -2;
    }
    size_t done = 0;
    while (done < b.len) {
        ssize_t w = write(fd, b.p + done, b.len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            free(b.p);
            errno = saved;
            return -2;
        }
        done += w;
    }
    free(b.p);
    lseek(fd, 0, SEEK_SET);
    errno = saved;
    return fd;
}

int cgemu_render(const char *path, int flags, long pid, long tid)
{
    struct caller c = {pid, tid};
    return render(path, flags, &c);
}

static int synth_fd(const char *path, int flags)
{
    struct caller c = {getpid(), syscall(SYS_gettid)};
    return render(path, flags, &c);
}

/* ------------------------------------------------------------- interposers */

/* the next definition of name (libc's), looked up once */
#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

/* libc declares path nonnull; a NULL must still reach libc (EFAULT), not crash here */
static inline const char *opaque(const char *p)
{
    __asm__("" : "+r"(p));
    return p;
}

static int synth_at(const char *path, int flags)
{
    path = opaque(path);
    return path && path[0] == '/' ? synth_fd(path, flags) : -2;
}

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(open);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(open64);
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(openat);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(openat64);
    return real_openat64(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE builds call these when the flags are not a compile-time constant */
int __open_2(const char *path, int flags)
{
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(__open_2);
    return real___open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(__open64_2);
    return real___open64_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(__openat_2);
    return real___openat_2(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    int fd = synth_at(path, flags);
    if (fd != -2)
        return fd;
    REAL(__openat64_2);
    return real___openat64_2(dirfd, path, flags);
}

static FILE *synth_file(const char *path, const char *mode)
{
    mode = opaque(mode);
    if (!mode || mode[0] != 'r' || strchr(mode, '+'))
        return NULL;
    int fd = synth_at(path, O_RDONLY | (strchr(mode, 'e') ? O_CLOEXEC : 0));
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "r");
    if (!f)
        close(fd);
    return f;
}

FILE *fopen(const char *path, const char *mode)
{
    FILE *f = synth_file(path, mode);
    if (f)
        return f;
    REAL(fopen);
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    FILE *f = synth_file(path, mode);
    if (f)
        return f;
    REAL(fopen64);
    return real_fopen64(path, mode);
}

/* glibc's setmntent opens with its internal fopen, which the one above cannot see */
FILE *setmntent(const char *path, const char *mode)
{
    FILE *f = synth_file(path, mode);
    if (f) {
        __fsetlocking(f, FSETLOCKING_BYCALLER); /* as glibc's __setmntent does */
        return f;
    }
    REAL(setmntent);
    return real_setmntent(path, mode);
}

/* ------------------------------------------- exec: leave what we cannot serve */

static const char *self_path(void)
{
    static char path[PATH_MAX];
    if (!path[0]) {
        Dl_info info;
        if (dladdr((void *)self_path, &info) && info.dli_fname)
            snprintf(path, sizeof path, "%s", info.dli_fname);
    }
    return path;
}

/* 1 when the dynamic loader will run us in the program at path: an ELF file with a
 * PT_INTERP, whose set-user/group-ID bits (if any) do not change our ids.
 * Scripts and anything unreadable count as served: their interpreter decides. */
static int served(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 1;
    /* the loader's secure mode (AT_SECURE) drops LD_PRELOAD when the exec changes ids */
    if (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
        ((st.st_mode & S_ISGID) && st.st_gid != getgid()))
        return 0;
    int fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    Elf64_Ehdr eh;
    int ok = 1;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh &&
        !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
        ok = 0;
        for (int i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, eh.e_phoff + (off_t)i * sizeof ph) != (ssize_t)sizeof ph)
                break;
            if (ph.p_type == PT_INTERP) {
                ok = 1;
                break;
            }
        }
    }
    close(fd);
    return ok;
}

/* The program execvp/posix_spawnp would run, searched along PATH like they do. */
static int resolve(const char *file, char *out, size_t size)
{
    if (strchr(file, '/'))
        return snprintf(out, size, "%s", file) < (int)size ? 0 : -1;
    const char *p = getenv("PATH");
    if (!p)
        p = "/bin:/usr/bin";
    while (*p) {
        size_t k = strcspn(p, ":");
        if (snprintf(out, size, "%.*s%s%s", (int)k, p, k ? "/" : "", file) < (int)size &&
            access(out, X_OK) == 0)
            return 0;
        p += k + (p[k] == ':');
    }
    return -1;
}

/* envp without this library in LD_PRELOAD (freed by the caller with free_env) */
static char **cleaned(char *const envp[])
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    const char *me = self_path();
    const char *base = strrchr(me, '/') ? strrchr(me, '/') + 1 : me;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(envp[i], "LD_PRELOAD=", 11)) {
            out[j++] = strdup(envp[i]);
            continue;
        }
        struct buf b = {0};
        puts_(&b, "LD_PRELOAD=");
        int any = 0;
        char *copy = strdup(envp[i] + 11);
        for (char *save, *t = strtok_r(copy, ": ", &save); t; t = strtok_r(NULL, ": ", &save)) {
            const char *tb = strrchr(t, '/') ? strrchr(t, '/') + 1 : t;
            if (!strcmp(t, me) || !strcmp(tb, base))
                continue;
            if (any)
                puts_(&b, ":");
            puts_(&b, t);
            any = 1;
        }
        free(copy);
        if (any)
            out[j++] = b.p;
        else
            free(b.p);
    }
    return out;
}

static void free_env(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    REAL(execve);
    if (served(path))
        return real_execve(path, argv, envp);
    char **env = cleaned(envp);
    int rc = real_execve(path, argv, env ? env : envp);
    int saved = errno;
    free_env(env);
    errno = saved;
    return rc;
}

int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    REAL(execvpe);
    char path[PATH_MAX];
    if (resolve(file, path, sizeof path) < 0 || served(path))
        return real_execvpe(file, argv, envp);
    char **env = cleaned(envp);
    int rc = real_execvpe(file, argv, env ? env : envp);
    int saved = errno;
    free_env(env);
    errno = saved;
    return rc;
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

static char **collect(const char *arg0, va_list ap, char ***envp)
{
    size_t n = 1, cap = 16;
    char **argv = malloc(cap * sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = (char *)arg0;
    for (;;) {
        char *a = arg0 ? va_arg(ap, char *) : NULL;
        if (n + 1 >= cap) {
            char **p = realloc(argv, (cap *= 2) * sizeof *argv);
            if (!p) {
                free(argv);
                return NULL;
            }
            argv = p;
        }
        argv[n++] = a;
        if (!a)
            break;
    }
    if (envp)
        *envp = va_arg(ap, char **);
    return argv;
}

int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **argv = collect(arg, ap, NULL);
    va_end(ap);
    if (!argv)
        return errno = ENOMEM, -1;
    int rc = execve(path, argv, environ);
    free(argv);
    return rc;
}

int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **argv = collect(arg, ap, NULL);
    va_end(ap);
    if (!argv)
        return errno = ENOMEM, -1;
    int rc = execvpe(file, argv, environ);
    free(argv);
    return rc;
}

int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    char **envp;
    va_start(ap, arg);
    char **argv = collect(arg, ap, &envp);
    va_end(ap);
    if (!argv)
        return errno = ENOMEM, -1;
    int rc = execve(path, argv, envp);
    free(argv);
    return rc;
}

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);

static int spawn(spawn_fn real, const char *found, pid_t *pid, const char *file,
                 const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *at,
                 char *const argv[], char *const envp[])
{
    if (!found || served(found))
        return real(pid, file, fa, at, argv, envp);
    char **env = cleaned(envp);
    int rc = real(pid, file, fa, at, argv, env ? env : envp);
    free_env(env);
    return rc;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    REAL(posix_spawn);
    return spawn(real_posix_spawn, path, pid, path, fa, at, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
    REAL(posix_spawnp);
    char path[PATH_MAX];
    return spawn(real_posix_spawnp, resolve(file, path, sizeof path) == 0 ? path : NULL, pid,
                 file, fa, at, argv, envp);
}
