/* A test workload that uses exactly the memory it is told to, one command per line on
 * stdin, answering "ok ..." on stdout. No stdio and no malloc, so nothing but the
 * commands changes its memory.
 *   a N        anonymous pages (RssAnon)          s N   SysV shm segment (RssShmem)
 *   m N        MAP_SHARED anonymous (RssShmem)    l N   anonymous, mlocked (VmLck)
 *   f N PATH   N pages of a new file, mapped shared and read (RssFile)
 *   x          free the newest region              c N   fork a child using N anon pages
 *   q          exit
 * With arguments "KIND N" (KIND one of a s m l) it works on signals instead: each
 * SIGUSR1 alternately allocates those N pages and frees them, answering "ok" each time.
 * Children die with their parent (PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <unistd.h>

#define PAGE 4096
static struct { char *p; long n; int shm; } regions[64];
static int nregions;
static char line[512];

static void say(const char *s) { write(1, s, strlen(s)); }

static void say_num(const char *prefix, long v) {
    char buf[64]; int i = sizeof buf; buf[--i] = '\n';
    do { buf[--i] = '0' + v % 10; v /= 10; } while (v);
    say(prefix); write(1, buf + i, sizeof buf - i);
}

static void touch(char *p, long n) { for (long i = 0; i < n; i++) p[i * PAGE] = 1; }

static void push(char *p, long n, int shm) {
    regions[nregions].p = p; regions[nregions].n = n; regions[nregions].shm = shm; nregions++;
}

static int readline(void) {
    int n = 0;
    while (n < (int)sizeof line - 1) {
        if (read(0, line + n, 1) != 1) return 0;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    return 1;
}

static volatile sig_atomic_t poked;
static void on_usr1(int sig) { (void)sig; poked = 1; }

static void run(const char *cmd);

int main(int argc, char **argv) {
    if (argc == 3) {  /* signal mode */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &old);
        signal(SIGUSR1, on_usr1);
        say("ready\n");
        for (int held = 0;; held = !held) {
            while (!poked) sigsuspend(&old);
            poked = 0;
            if (held) run("x");
            else { strcpy(line, argv[1]); strcat(line, " "); strcat(line, argv[2]); run(line); }
            say("ok\n");
        }
    }
    say("ready\n");
    while (readline()) {
        if (line[0] == 'q') return 0;
        if (line[0] == 'c') {
            long n = atol(line + 2);
            pid_t pid = fork();
            if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                touch(p, n);
                for (;;) pause();
            }
            say_num("ok ", pid);
            continue;
        }
        run(line);
        say("ok\n");
    }
    return 0;
}

static void run(const char *cmd) {
    long n = atol(cmd + 2);
    char *p = NULL;
    switch (cmd[0]) {
    case 'a': case 'l':
        p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (cmd[0] == 'l') mlock(p, n * PAGE); else touch(p, n);
        push(p, n, 0); break;
    case 'm':
        p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        touch(p, n); push(p, n, 0); break;
    case 's': {
        int id = shmget(IPC_PRIVATE, n * PAGE, IPC_CREAT | 0600);
        p = shmat(id, NULL, 0);
        shmctl(id, IPC_RMID, NULL);  /* freed when detached */
        touch(p, n); push(p, n, 1); break;
    }
    case 'f': {
        const char *path = strchr(cmd + 2, ' ') + 1;
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        ftruncate(fd, n * PAGE);
        p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        touch(p, n); push(p, n, 0); break;
    }
    case 'x':
        if (nregions) {
            nregions--;
            if (regions[nregions].shm) shmdt(regions[nregions].p);
            else munmap(regions[nregions].p, regions[nregions].n * PAGE);
        }
        break;
    }
}
