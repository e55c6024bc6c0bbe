/* Baseline for bench_files.py: a minimal libfuse3 low-level server serving one file,
 * "value" in the root, read "0\n" / write accepted, with direct I/O and the same
 * entry/attr timeouts as cgroupfs-emu. Single-threaded, no flush handler. */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char content[] = "0\n";
static const double timeout = 10.0;

static void fill(fuse_ino_t ino, struct stat *st) {
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    if (ino == 1) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; }
    else { st->st_mode = S_IFREG | 0644; st->st_nlink = 1; }
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    struct fuse_entry_param e;
    if (parent != 1 || strcmp(name, "value") != 0) { fuse_reply_err(req, ENOENT); return; }
    memset(&e, 0, sizeof(e));
    e.ino = 2; e.attr_timeout = timeout; e.entry_timeout = timeout;
    fill(2, &e.attr);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct stat st;
    (void)fi;
    fill(ino, &st);
    fuse_reply_attr(req, &st, timeout);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    if (ino != 2) { fuse_reply_err(req, EISDIR); return; }
    fi->direct_io = 1;
    fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    size_t len = sizeof(content) - 1;
    (void)ino; (void)fi;
    if ((size_t)off >= len) { fuse_reply_buf(req, NULL, 0); return; }
    if (size > len - off) size = len - off;
    fuse_reply_buf(req, content + off, size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                     off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)buf; (void)off; (void)fi;
    fuse_reply_write(req, size);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup, .getattr = op_getattr, .open = op_open,
    .read = op_read, .write = op_write,
};

int main(int argc, char *argv[]) {
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *se;
    int ret;
    int debug = argc == 3 && strcmp(argv[1], "-d") == 0;
    if (argc != 2 + debug) { fprintf(stderr, "usage: %s [-d] MOUNTPOINT\n", argv[0]); return 2; }
    fuse_opt_add_arg(&args, argv[0]);
    if (debug) fuse_opt_add_arg(&args, "-d");  /* libfuse logs every request */
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "fsname=bench,subtype=bench_one_file,default_permissions");
    se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
    if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[argc - 1])) return 1;
    ret = fuse_session_loop(se);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return ret ? 1 : 0;
}
