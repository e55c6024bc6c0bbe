/* Baseline for bench_scale.py: a minimal libfuse3 low-level server whose root holds
 * directories made by mkdir and removed by rmdir (a hash table of names), listed with
 * readdirplus, with the same entry/attr timeouts as cgroupfs-emu. Each directory is
 * empty; nothing is read or written. Single-threaded. */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUCKETS 131072
static const double timeout = 10.0;

struct dir { char *name; fuse_ino_t ino; struct dir *next; };
static struct dir *table[BUCKETS];
static struct dir **by_ino;          /* ino - 2 -> entry (NULL when removed) */
static size_t nr_ino, cap_ino, nr_dirs;

static unsigned hash(const char *s) { unsigned h = 5381; while (*s) h = h * 33 + (unsigned char)*s++; return h % BUCKETS; }

static struct dir *find(const char *name) {
    for (struct dir *d = table[hash(name)]; d; d = d->next) if (!strcmp(d->name, name)) return d;
    return NULL;
}

static void fill(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = ino == 1 ? 2 + nr_dirs : 2;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino) {
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = ino; e.attr_timeout = timeout; e.entry_timeout = timeout;
    fill(ino, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    struct dir *d = parent == 1 ? find(name) : NULL;
    if (!d) { fuse_reply_err(req, ENOENT); return; }
    reply_entry(req, d->ino);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct stat st;
    (void)fi;
    fill(ino, &st);
    fuse_reply_attr(req, &st, timeout);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
    (void)mode;
    if (parent != 1) { fuse_reply_err(req, EPERM); return; }
    if (find(name)) { fuse_reply_err(req, EEXIST); return; }
    struct dir *d = malloc(sizeof(*d));
    d->name = strdup(name);
    if (nr_ino == cap_ino) { cap_ino = cap_ino ? 2 * cap_ino : 1024; by_ino = realloc(by_ino, cap_ino * sizeof(*by_ino)); }
    d->ino = 2 + nr_ino;
    by_ino[nr_ino++] = d;
    unsigned h = hash(name);
    d->next = table[h]; table[h] = d;
    nr_dirs++;
    reply_entry(req, d->ino);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
    if (parent != 1) { fuse_reply_err(req, ENOENT); return; }
    for (struct dir **p = &table[hash(name)]; *p; p = &(*p)->next) {
        if (!strcmp((*p)->name, name)) {
            struct dir *d = *p;
            *p = d->next;
            by_ino[d->ino - 2] = NULL;
            free(d->name); free(d);
            nr_dirs--;
            fuse_reply_err(req, 0);
            return;
        }
    }
    fuse_reply_err(req, ENOENT);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
    char *buf = malloc(size);
    size_t used = 0;
    (void)fi;
    if (ino != 1) { fuse_reply_buf(req, NULL, 0); free(buf); return; }
    for (size_t i = off; i < nr_ino; i++) {
        struct dir *d = by_ino[i];
        if (!d) continue;
        struct fuse_entry_param e;
        memset(&e, 0, sizeof(e));
        e.ino = d->ino; e.attr_timeout = timeout; e.entry_timeout = timeout;
        fill(d->ino, &e.attr);
        size_t len = fuse_add_direntry_plus(req, buf + used, size - used, d->name, &e, i + 1);
        if (len > size - used) break;
        used += len;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup, .getattr = op_getattr, .mkdir = op_mkdir, .rmdir = op_rmdir,
    .readdirplus = op_readdirplus,
};

int main(int argc, char *argv[]) {
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se;
    int ret;
    if (argc != 2) { fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]); return 2; }
    fuse_opt_add_arg(&args, argv[0]);
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "fsname=bench,subtype=bench_dirs,default_permissions");
    se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
    if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[1])) return 1;
    ret = fuse_session_loop(se);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return ret ? 1 : 0;
}
