/* Load and stand-in connector processes for bench/live.py (compiled by bench/livehost.py).
 *
 *   livehold sleepers N         fork N children that only pause (extra processes)
 *   livehold sockets PAIRS      hold PAIRS established loopback TCP connections, both ends
 *                               (2 x PAIRS sockets, plus one listener)
 *   livehold daemon N PATH      a stand-in connector process (run as ampdaemon, ampscansvc):
 *                               N established loopback TCP connections (both ends) and a
 *                               Unix socket listening at PATH
 *   livehold client PATH        the same, connected to the Unix socket at PATH instead
 *
 * Each prints "ready" on stdout once set up, then waits for end of file on stdin: then it
 * (and every process it made) is gone. Each dies with its parent (PR_SET_PDEATHSIG), and so
 * do the sleepers; sleepers reaps its children itself. Sockets are closed with SO_LINGER 0
 * (a reset), so that no TIME_WAIT entries outlive the holder and weigh on later runs.
 * Limits (open files, processes) are raised in this process only, as far as it needs. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void raise_limit(int resource, rlim_t need) {
    struct rlimit rl;
    if (getrlimit(resource, &rl) != 0)
        die("getrlimit");
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need)
        return;
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    rl.rlim_cur = need;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        rl.rlim_max = need;
    if (setrlimit(resource, &rl) != 0)
        die("setrlimit");
}

static void die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        die("prctl");
    if (getppid() != parent)
        _exit(1); /* the parent went before the prctl */
}

static void wait_for_eof(void) {
    char buf[64];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            return;
    }
}

static void ready(void) {
    if (printf("ready\n") < 0 || fflush(stdout) != 0)
        die("stdout");
}

static void no_linger(int fd) {
    struct linger l = {1, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0)
        die("SO_LINGER");
}

/* n established loopback connections, both ends held here. */
static void connections(long n) {
    if (n <= 0)
        return;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) != 0 ||
        listen(listener, 128) != 0 || getsockname(listener, (struct sockaddr *)&addr, &len) != 0)
        die("listener");
    no_linger(listener);
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof addr) != 0)
            die("connect");
        int a = accept(listener, NULL, NULL);
        if (a < 0)
            die("accept");
        no_linger(c);
        no_linger(a);
    }
}

static void unix_socket(const char *path, int connect_to) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (fd < 0 || strlen(path) >= sizeof addr.sun_path)
        die("unix socket");
    strcpy(addr.sun_path, path);
    if (connect_to) {
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
            die("unix connect");
    } else {
        unlink(path);
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0)
            die("unix listen");
    }
}

static int sleepers(long n) {
    pid_t self = getpid();
    pid_t *kids = calloc((size_t)n, sizeof *kids);
    if (!kids)
        die("calloc");
    raise_limit(RLIMIT_NPROC, (rlim_t)n + 4096);
    long made = 0;
    for (; made < n; made++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            die_with_parent(self);
            close(0);
            for (;;)
                pause();
        }
        kids[made] = pid;
    }
    if (made == n) {
        ready();
        wait_for_eof();
    } else {
        fprintf(stderr, "sleepers: made %ld of %ld\n", made, n);
    }
    for (long i = 0; i < made; i++)
        kill(kids[i], SIGKILL);
    for (long i = 0; i < made; i++)
        while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    return made == n ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "sleepers") == 0) {
        die_with_parent(getppid());
        return sleepers(atol(argv[2]));
    }
    if (argc >= 3 && strcmp(argv[1], "sockets") == 0) {
        die_with_parent(getppid());
        long pairs = atol(argv[2]);
        raise_limit(RLIMIT_NOFILE, (rlim_t)(2 * pairs + 64));
        connections(pairs);
        ready();
        wait_for_eof();
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "daemon") == 0) {
        die_with_parent(getppid());
        connections(atol(argv[2]));
        unix_socket(argv[3], 0);
        ready();
        wait_for_eof();
        unlink(argv[3]);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "client") == 0) {
        die_with_parent(getppid());
        unix_socket(argv[2], 1);
        ready();
        wait_for_eof();
        return 0;
    }
    fprintf(stderr, "usage: livehold sleepers N | sockets PAIRS | daemon N PATH | client PATH\n");
    return 2;
}
