/* A busy followed task for bench_follow.py: every PERIOD_MS it maps MIB MiB,
 * touches every page and unmaps it again, forever (until killed). */
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    long len = (argc > 1 ? atol(argv[1]) : 4) << 20;
    long ms = argc > 2 ? atol(argv[2]) : 50;
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    for (;;) {
        char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 1;
        for (long i = 0; i < len; i += 4096) p[i] = 1;
        nanosleep(&t, 0);
        munmap(p, len);
        nanosleep(&t, 0);
    }
}
