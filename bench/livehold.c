/* Load and stand-in connector processes for bench/live.py (compiled by bench/livehost.py).
 *
 *   livehold sleepers N         fork N children that only pause (extra processes)
 *   livehold sockets PAIRS      hold PAIRS established loopback TCP connections, both ends
 *                               (2 x PAIRS sockets, plus one listener)
 *   livehold daemon N PATH [STATUS_FILE]
 *                               the stand-in ampdaemon: N established loopback TCP
 *                               connections (both ends) and a Unix socket listening at PATH,
 *                               answering each connection's "status\n" with STATUS_FILE's
 *                               text (read once, at start) and "count\n" with how many
 *                               status answers it gave, then closing it; a connection that
 *                               asks nothing (ampscansvc's) is held
 *   livehold client PATH        the stand-in ampscansvc: connected to the Unix socket at PATH
 *   ampcli status               (this binary installed as ampcli) the stand-in ampcli: asks
 *                               the daemon at AMPCLI_SOCKET and prints its answer, as the
 *                               real one does: one exec and a socket round trip. The daemon
 *                               unreachable, it prints the real ampcli's first lines and
 *                               exits 1, as the real one does with its daemon dead; any
 *                               other command: "Unknown command: X" on stderr, exit 1.
 *
 * Each but ampcli prints "ready" on stdout once set up, then waits for end of file on
 * stdin: then it (and every process it made) is gone. Each dies with its parent
 * (PR_SET_PDEATHSIG), and so do the sleepers; sleepers reaps its children itself.
 * Sockets are closed with SO_LINGER 0 (a reset), so that no TIME_WAIT entries outlive the
 * holder and weigh on later runs. Limits (open files, processes) are raised in this
 * process only, as far as it needs. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

#ifndef AMPCLI_SOCKET /* livehost.py passes livehost.DAEMON_SOCKET */
#define AMPCLI_SOCKET "/opt/cisco/amp/var/run/ampdaemon.sock"
#endif
/* What the real ampcli prints before it has reached its daemon. */
#define AMPCLI_TRYING "[logger] Set minimum reported log level to notice\nTrying to connect...\n"
#define MAX_CONNS 64

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

static int unix_socket(const char *path, int connect_to) {
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
    return fd;
}

static int send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A file's whole text (the status to answer with), or "" without one. */
static char *slurp(const char *path, size_t *len) {
    *len = 0;
    char *text = calloc(1, 1);
    if (!path || !text)
        return text;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (!(text = realloc(text, *len + (size_t)n + 1)))
            die("realloc");
        memcpy(text + *len, buf, (size_t)n);
        *len += (size_t)n;
    }
    if (n < 0)
        die(path);
    close(fd);
    return text;
}

/* The daemon's life after "ready": one poll loop over stdin (end of file: stop), the
 * listener and the connections it accepted, so that ampcli's requests are answered while
 * ampscansvc's connection (which asks nothing) is held. */
static void serve(int listener, const char *status, size_t status_len) {
    struct pollfd fds[2 + MAX_CONNS];
    char req[MAX_CONNS][16];
    size_t got[MAX_CONNS];
    int conns = 0;
    unsigned long answered = 0;
    fds[0] = (struct pollfd){.fd = 0, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = listener, .events = POLLIN};
    for (;;) {
        fds[1].fd = conns < MAX_CONNS ? listener : -1; /* full: new ones wait in the backlog */
        if (poll(fds, 2 + (nfds_t)conns, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (fds[0].revents) {
            char buf[64];
            ssize_t n = read(0, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR))
                return;
        }
        for (int i = conns - 1; i >= 0; i--) {
            struct pollfd *p = &fds[2 + i];
            if (!p->revents)
                continue;
            ssize_t n = read(p->fd, req[i] + got[i], sizeof req[i] - 1 - got[i]);
            if (n < 0 && errno == EINTR)
                continue;
            if (n > 0) {
                got[i] += (size_t)n;
                req[i][got[i]] = '\0';
                if (!strchr(req[i], '\n') && got[i] < sizeof req[i] - 1)
                    continue; /* the rest of the request is on its way */
                if (strcmp(req[i], "status\n") == 0) {
                    answered += send_all(p->fd, status, status_len) == 0;
                } else if (strcmp(req[i], "count\n") == 0) {
                    char count[32];
                    int len = snprintf(count, sizeof count, "%lu\n", answered);
                    send_all(p->fd, count, (size_t)len);
                }
            }
            close(p->fd); /* answered, unknown, closed or failed: done with it */
            conns--;
            fds[2 + i] = fds[2 + conns];
            memcpy(req[i], req[conns], sizeof req[i]);
            got[i] = got[conns];
        }
        if (fds[1].fd >= 0 && fds[1].revents) {
            int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                fds[2 + conns] = (struct pollfd){.fd = c, .events = POLLIN};
                got[conns++] = 0;
            }
        }
    }
}

/* The stand-in ampcli: what `ampcli status` does, against the stand-in daemon. */
static int ampcli(int argc, char **argv) {
    const char *command = argc >= 2 ? argv[1] : "";
    if (strcmp(command, "status") != 0) {
        fprintf(stderr, "Unknown command: %s\n", command);
        return 1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = AMPCLI_SOCKET};
    char buf[4096];
    size_t total = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        send_all(fd, "status\n", 7) == 0) {
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
            if (n > 0 && write(1, buf, (size_t)n) != n)
                return 1;
            total += n > 0 ? (size_t)n : 0;
        }
    }
    if (total == 0) { /* no daemon to talk to, or it said nothing: as a dead daemon's ampcli */
        fputs(AMPCLI_TRYING, stdout);
        return 1;
    }
    return 0;
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
    const char *base = strrchr(argv[0], '/');
    if (strcmp(base ? base + 1 : argv[0], "ampcli") == 0)
        return ampcli(argc, argv);
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
        size_t status_len;
        char *status = slurp(argc >= 5 ? argv[4] : NULL, &status_len);
        connections(atol(argv[2]));
        int listener = unix_socket(argv[3], 0);
        ready();
        serve(listener, status, status_len);
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
    fprintf(stderr, "usage: livehold sleepers N | sockets PAIRS | daemon N PATH [STATUS_FILE] | "
                    "client PATH\n");
    return 2;
}
