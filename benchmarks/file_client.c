/* Client for bench_files.py: N timed rounds of open+read+close (mode r) or
 * open+write+close (mode w) of one path; prints one latency in ns per line. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    char buf[4096];
    const char *value = "4194304\n";
    if (argc != 4) { fprintf(stderr, "usage: %s r|w PATH N\n", argv[0]); return 2; }
    int write_mode = argv[1][0] == 'w';
    int n = atoi(argv[3]);
    for (int i = 0; i < n; i++) {
        long long t0 = now();
        int fd = open(argv[2], write_mode ? O_WRONLY : O_RDONLY);
        if (fd < 0) { perror("open"); return 1; }
        if (write_mode) {
            if (write(fd, value, strlen(value)) < 0) { perror("write"); return 1; }
        } else if (read(fd, buf, sizeof(buf)) < 0) { perror("read"); return 1; }
        close(fd);
        printf("%lld\n", now() - t0);
    }
    return 0;
}
