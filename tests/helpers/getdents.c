/* Print a directory as getdents64(2) returns it: "<d_off> <name>" per entry, in the
 * order the filesystem gives (no sorting), with a small buffer so that a listing takes
 * several calls and exercises the resume offset. Usage: getdents DIR [BUFSIZE] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [BUFSIZE]\n", argv[0]);
        return 2;
    }
    size_t size = argc > 2 ? (size_t)atoi(argv[2]) : 65536;
    char *buf = malloc(size);
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (fd < 0 || !buf) {
        perror(argv[1]);
        return 1;
    }
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, size);
        if (n < 0) {
            perror("getdents64");
            return 1;
        }
        if (n == 0)
            break;
        for (long i = 0; i < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + i);
            printf("%lld %s\n", d->d_off, d->d_name);
            i += d->d_reclen;
        }
    }
    close(fd);
    return 0;
}
