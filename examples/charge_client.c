/* Charge memory to a cgroupfs_emu mount: protocol version 1 in plain C.
 * usage: charge_client SOCKET KIND BYTES [pid=PID]   (cc -o charge_client charge_client.c)
 * Prints the daemon's reply; exit 0 on "ok", 3 on "err ENOMEM", 1 otherwise. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int reply(int fd, char *line, size_t cap) {  /* next line that is not an event */
    for (;;) {
        size_t n = 0;
        while (n + 1 < cap && read(fd, line + n, 1) == 1 && line[n] != '\n') n++;
        line[n] = '\0';
        if (strncmp(line, "event ", 6) != 0) return n > 0;
    }
}

int main(int argc, char **argv) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char req[256], line[4096];
    if (argc < 4) { fprintf(stderr, "usage: %s SOCKET KIND BYTES [pid=PID]\n", argv[0]); return 2; }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
    dprintf(fd, "hello 1\n");
    if (!reply(fd, line, sizeof line) || strncmp(line, "ok ", 3) != 0) { puts(line); return 1; }
    snprintf(req, sizeof req, "charge %s %s %s\n", argv[2], argv[3], argc > 4 ? argv[4] : "");
    dprintf(fd, "%s", req);
    reply(fd, line, sizeof line);
    puts(line);  /* the charge lasts until we exit: closing the socket frees it */
    return strncmp(line, "ok", 2) == 0 ? 0 : strncmp(line, "err ENOMEM", 10) == 0 ? 3 : 1;
}
