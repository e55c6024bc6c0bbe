/*
 * bench_view's workload, linked statically:
 *   view_files [ROUNDS] < LIST   stat, open, read and close every file named on stdin
 *                                (one path a line) with raw syscalls, as Go does;
 *                                prints the seconds it took and the bytes read
 *   view_files --time CMD...     run CMD and print the seconds it took (so that a
 *                                command is timed from inside the view, without the
 *                                view's setup)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--time"))
        return timed(argv + 2);
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
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
