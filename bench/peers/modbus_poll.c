/* The peer for bench/modbus: a plain C loop of modbus_read_input_registers, what a
 * minimal hand-written poller does. Not linked into nmbridge.
 *
 *   modbus_poll HOST PORT REGISTERS COUNT        COUNT back-to-back reads; prints one JSON line
 *   modbus_poll HOST PORT REGISTERS 0 INTERVAL   reads every INTERVAL ms until killed (CPU)
 */
#include <errno.h>
#include <modbus/modbus.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(uint64_t *sorted, long n, double p) {
    long rank = (long)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT REGISTERS COUNT [INTERVAL_MS]\n", argv[0]);
        return 2;
    }
    /* Started from a Swift task, it inherits a blocked signal mask: unblock, so SIGTERM ends it. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int registers = atoi(argv[3]);
    long count = atol(argv[4]);
    long interval_ms = argc > 5 ? atol(argv[5]) : 0;
    modbus_t *ctx = modbus_new_tcp(argv[1], atoi(argv[2]));
    if (ctx == NULL || modbus_connect(ctx) != 0) {
        fprintf(stderr, "connect: %s\n", modbus_strerror(errno));
        return 1;
    }
    modbus_set_slave(ctx, 1);
    uint16_t values[125];
    if (count == 0) {
        struct timespec pause = {interval_ms / 1000, (interval_ms % 1000) * 1000000};
        for (;;) {
            if (modbus_read_input_registers(ctx, 0, registers, values) != registers) {
                fprintf(stderr, "read: %s\n", modbus_strerror(errno));
            }
            nanosleep(&pause, NULL);
        }
    }
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)count);
    uint64_t start = now_ns();
    for (long i = 0; i < count; i++) {
        uint64_t t0 = now_ns();
        if (modbus_read_input_registers(ctx, 0, registers, values) != registers) {
            fprintf(stderr, "read %ld: %s\n", i, modbus_strerror(errno));
            return 1;
        }
        samples[i] = now_ns() - t0;
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    qsort(samples, (size_t)count, sizeof(uint64_t), compare);
    printf("{\"polls\":%ld,\"polls_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", count, (double)count / seconds,
           percentile_us(samples, count, 50), percentile_us(samples, count, 99));
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
