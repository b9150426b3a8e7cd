/* The cost floor for polling Capintec CRC-15R calibrators: a minimal C poller that does
 * what the nmbridge driver does on the wire (send "@ABCDEFGHIJK\r\n", wait for the 11-byte
 * reply, decode nuclide, unit code and float32), with poll(2) and nothing else: no
 * journal, no settling, no events. Used by bench/dosecal/run as the named peer.
 *
 *   crc15r_poll POLL_MS PATH...      runs until SIGTERM, prints replies received to stdout
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s POLL_MS PATH...\n", argv[0]); return 2; }
    int poll_ms = atoi(argv[1]);
    int n = argc - 2;
    int *fds = calloc(n, sizeof(int));
    for (int i = 0; i < n; i++) {
        fds[i] = open(argv[i + 2], O_RDWR | O_NOCTTY | O_NONBLOCK);
        if (fds[i] < 0) { perror(argv[i + 2]); return 1; }
        struct termios t;
        tcgetattr(fds[i], &t);
        cfmakeraw(&t);
        cfsetispeed(&t, B4800);
        cfsetospeed(&t, B4800);
        tcsetattr(fds[i], TCSANOW, &t);
    }
    /* A blocked mask is inherited from the spawning thread: unblock what stops us. */
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGTERM);
    sigaddset(&unblock, SIGINT);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    static const char request[] = "@ABCDEFGHIJK\r\n";
    long replies = 0;
    double next = now_s();
    while (!stop) {
        for (int i = 0; i < n && !stop; i++) {
            unsigned char reply[11];
            size_t got = 0;
            tcflush(fds[i], TCIFLUSH);
            if (write(fds[i], request, sizeof request - 1) < 0) continue;
            double deadline = now_s() + 1.0;
            while (got < sizeof reply && !stop) {
                int left = (int)((deadline - now_s()) * 1000);
                if (left <= 0) break;
                struct pollfd p = {fds[i], POLLIN, 0};
                if (poll(&p, 1, left) <= 0) continue;
                ssize_t r = read(fds[i], reply + got, sizeof reply - got);
                if (r > 0) got += (size_t)r;
            }
            if (got == sizeof reply) {
                uint32_t bits = reply[7] | reply[8] << 8 | reply[9] << 16 | (uint32_t)reply[10] << 24;
                float value;
                memcpy(&value, &bits, sizeof value);
                if (value >= 0) replies++;
            }
        }
        next += poll_ms / 1000.0;
        double wait = next - now_s();
        if (wait > 0) usleep((useconds_t)(wait * 1e6));
    }
    printf("%ld\n", replies);
    return 0;
}
