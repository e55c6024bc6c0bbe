/* Allocate as fast as possible: "eat MIB" maps MIB MiB of anonymous memory and
 * touches it page by page, then waits for stdin to close. With "-w" it first waits
 * for one byte on stdin (so a test can put it into a group before it starts).
 * Prints "done" after the last page; dies of SIGKILL if the OOM killer gets it. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int wait_first = argc > 2 && strcmp(argv[2], "-w") == 0;
    long mib = argc > 1 ? atol(argv[1]) : 64;
    char c;
    if (wait_first && read(0, &c, 1) != 1) return 2;
    long len = mib << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 1;
    for (long i = 0; i < len; i += 4096) p[i] = 1;
    write(1, "done\n", 5);
    while (read(0, &c, 1) > 0) ;
    return 0;
}
