/* Test-only LD_PRELOAD shim: a program that opens /proc/mounts (or /proc/self/mounts)
 * reads the file named by $CGEMU_TEST_MOUNTS instead.
 *
 * libcgroup discovers hierarchies only from "cgroup"-type lines of /proc/mounts, and
 * an emulator mount is of type fuse.cgroupfs_emu; the test writes one line
 * "cgroup <mountpoint> cgroup rw,relatime,memory 0 0" into a file and runs cgget with
 * this shim preloaded. Nothing else is changed.
 *
 * Build: cc -shared -fPIC -o mounts_shim.so mounts_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *redirect(const char *path)
{
    const char *alt = getenv("CGEMU_TEST_MOUNTS");
    if (alt && path && (strcmp(path, "/proc/mounts") == 0 ||
                        strcmp(path, "/proc/self/mounts") == 0))
        return alt;
    return path;
}

FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen");
    return real(redirect(path), mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen64");
    return real(redirect(path), mode);
}

FILE *setmntent(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "setmntent");
    return real(redirect(path), mode);
}
