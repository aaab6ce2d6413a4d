/* Event storms for bench/events_overhead.py: N execs of /bin/true, or N open+close of a
 * file. In C so the loop itself costs little and the probes' share shows. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: storm exec|open N FILE\n");
        return 2;
    }
    long n = atol(argv[2]);
    if (strcmp(argv[1], "exec") == 0) {
        char *args[] = {"/bin/true", NULL};
        for (long i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                execv(args[0], args);
                _exit(127);
            }
            waitpid(pid, NULL, 0);
        }
    } else {
        for (long i = 0; i < n; i++) {
            int fd = open(argv[3], O_RDONLY);
            if (fd >= 0)
                close(fd);
        }
    }
    return 0;
}
