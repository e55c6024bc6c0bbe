/* Client for bench_files.py: N timed rounds of one file operation on one path; prints
 * one latency in ns per line.
 *   r     open(O_RDONLY) + read + close
 *   w     open(O_WRONLY) + write + close
 *   cat   what cat(1) does: open + fstat + read until EOF + close
 *   echo  what "echo 4194304 > f" does: open(O_WRONLY|O_CREAT|O_TRUNC) + write + close */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    char buf[4096];
    struct stat st;
    const char *value = "4194304\n";
    if (argc != 4) { fprintf(stderr, "usage: %s r|w|cat|echo PATH N\n", argv[0]); return 2; }
    const char *mode = argv[1];
    int writing = !strcmp(mode, "w") || !strcmp(mode, "echo");
    int flags = !strcmp(mode, "echo") ? O_WRONLY | O_CREAT | O_TRUNC : writing ? O_WRONLY : O_RDONLY;
    int cat = !strcmp(mode, "cat");
    int n = atoi(argv[3]);
    for (int i = 0; i < n; i++) {
        long long t0 = now();
        int fd = open(argv[2], flags, 0644);
        if (fd < 0) { perror("open"); return 1; }
        if (writing) {
            if (write(fd, value, strlen(value)) < 0) { perror("write"); return 1; }
        } else if (cat) {
            ssize_t r;
            if (fstat(fd, &st) < 0) { perror("fstat"); return 1; }
            while ((r = read(fd, buf, sizeof(buf))) > 0) {}
            if (r < 0) { perror("read"); return 1; }
        } else if (read(fd, buf, sizeof(buf)) < 0) { perror("read"); return 1; }
        close(fd);
        printf("%lld\n", now() - t0);
    }
    return 0;
}
