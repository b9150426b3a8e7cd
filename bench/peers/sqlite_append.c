/*
 * sqlite_append: the named peer for `nmbridge-bench journal-append`.
 *
 * What a straightforward implementation without group commit does: plain libsqlite3,
 * the journal's table schema (Sources/NMJournal/Journal.swift, createSchema), WAL mode,
 * the same `synchronous`, N threads each with its own connection, every event its own
 * transaction (BEGIN IMMEDIATE; INSERT; COMMIT) with a busy_timeout. The total number of
 * events is fixed and split evenly across the threads; each thread starts its next
 * event only after the previous COMMIT returned (durable with synchronous=FULL).
 *
 * seq is left to SQLite: for an INTEGER PRIMARY KEY without AUTOINCREMENT, a NULL gets
 * MAX(seq)+1 inside the writing transaction, the same rule the journal applies itself.
 *
 * With --serialize, the threads also take one process-wide mutex around each transaction,
 * so that they queue on a futex instead of in SQLite's busy handler (which polls with
 * sleeps of up to 100 ms): still one transaction per event, but without the lock
 * convoy. This is the stronger of the two peers; it reports impl
 * "sqlite-txn-per-event-mutex".
 *
 * Prints the same JSON line as nmbridge-bench, one per writer count:
 *   {"bench":"journal-append","impl":"sqlite-txn-per-event","sync":"full","writers":8,
 *    "events":20000,"seconds":…,"events_per_s":…,"p50_us":…,"p99_us":…,"max_us":…,
 *    "commits":…,"events_per_commit":1.00,"cpu_s":…,"busy_retries":…}
 *
 * Build: gcc -O2 -o sqlite_append sqlite_append.c -lsqlite3 -lpthread
 * Usage: sqlite_append --writers 1,8,64 --events 20000 --sync full|normal --dir DIR [--warmup 64] [--serialize]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *SCHEMA =
    "PRAGMA application_id = 1313686090;"
    "PRAGMA user_version = 1;"
    "CREATE TABLE journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE events ("
    "  seq      INTEGER PRIMARY KEY,"
    "  time     TEXT NOT NULL,"
    "  node     TEXT NOT NULL,"
    "  device   TEXT,"
    "  driver   TEXT,"
    "  kind     TEXT NOT NULL,"
    "  severity TEXT NOT NULL,"
    "  data     TEXT NOT NULL,"
    "  raw      TEXT"
    ");"
    "CREATE INDEX events_time ON events(time);"
    "CREATE INDEX events_device ON events(device, seq);"
    "INSERT INTO journal_meta(key, value) VALUES ('journal_id', 'bench'), ('created', 'bench');";

static const char *INSERT_SQL =
    "INSERT INTO events(time, node, device, driver, kind, severity, data, raw) VALUES (?,?,?,?,?,?,?,NULL)";

static const char *g_path;
static const char *g_sync;
static int g_serialize;
static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void die(sqlite3 *db, const char *what) {
    fprintf(stderr, "sqlite_append: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
    exit(1);
}

static sqlite3 *open_connection(void) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(g_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die(db, "open");
    sqlite3_busy_timeout(db, 60000);
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;", g_sync);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) die(db, "pragmas");
    return db;
}

/* RFC 3339 UTC with microseconds, fixed width, as the journal stores `time`. */
static void format_time(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

struct writer {
    int index;
    int share;
    uint64_t *latencies;
    long busy_retries;
};

/* Runs one statement that may meet SQLITE_BUSY beyond busy_timeout; retries it. */
static void exec_retrying(sqlite3 *db, sqlite3_stmt *stmt, long *busy_retries, const char *what) {
    for (;;) {
        int rc = sqlite3_step(stmt);
        sqlite3_reset(stmt);
        if (rc == SQLITE_DONE) return;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            (*busy_retries)++;
            continue;
        }
        die(db, what);
    }
}

static void append_one(sqlite3 *db, sqlite3_stmt *begin, sqlite3_stmt *insert, sqlite3_stmt *commit, int writer, int i,
                       long *busy_retries) {
    char time_text[32], device[32], data[64];
    format_time(time_text);
    snprintf(device, sizeof device, "bench-%d", writer);
    snprintf(data, sizeof data, "{\"i\":%d,\"writer\":%d}", i, writer);
    if (g_serialize) pthread_mutex_lock(&g_write_lock);
    exec_retrying(db, begin, busy_retries, "BEGIN IMMEDIATE");
    sqlite3_bind_text(insert, 1, time_text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, "bench", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 3, device, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 4, "bench", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 5, "experimental.bench", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 6, "info", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 7, data, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(insert) != SQLITE_DONE) die(db, "INSERT");
    sqlite3_reset(insert);
    exec_retrying(db, commit, busy_retries, "COMMIT");
    if (g_serialize) pthread_mutex_unlock(&g_write_lock);
}

static void prepare_all(sqlite3 *db, sqlite3_stmt **begin, sqlite3_stmt **insert, sqlite3_stmt **commit) {
    if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, begin, NULL) != SQLITE_OK) die(db, "prepare BEGIN");
    if (sqlite3_prepare_v2(db, INSERT_SQL, -1, insert, NULL) != SQLITE_OK) die(db, "prepare INSERT");
    if (sqlite3_prepare_v2(db, "COMMIT", -1, commit, NULL) != SQLITE_OK) die(db, "prepare COMMIT");
}

static pthread_barrier_t g_start;

static void *writer_main(void *arg) {
    struct writer *w = arg;
    sqlite3 *db = open_connection();
    sqlite3_stmt *begin, *insert, *commit;
    prepare_all(db, &begin, &insert, &commit);
    pthread_barrier_wait(&g_start);
    for (int i = 0; i < w->share; i++) {
        uint64_t t0 = now_ns();
        append_one(db, begin, insert, commit, w->index, i, &w->busy_retries);
        w->latencies[i] = now_ns() - t0;
    }
    sqlite3_finalize(begin);
    sqlite3_finalize(insert);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    return NULL;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample such that at least p percent are <= it. */
static uint64_t percentile(const uint64_t *sorted, size_t n, double p) {
    if (n == 0) return 0;
    double r = p / 100.0 * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void remove_database(const char *path) {
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    char buf[4096];
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%s%s", path, suffixes[i]);
        unlink(buf);
    }
}

static void run(int writers, int events, int warmup, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sqlite-%s-w%d.db", dir, g_sync, writers);
    remove_database(path);
    g_path = path;

    sqlite3 *setup = open_connection();
    if (sqlite3_exec(setup, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) die(setup, "schema");
    {
        sqlite3_stmt *begin, *insert, *commit;
        long ignored = 0;
        prepare_all(setup, &begin, &insert, &commit);
        for (int i = 0; i < warmup; i++) append_one(setup, begin, insert, commit, 0, i, &ignored);
        sqlite3_finalize(begin);
        sqlite3_finalize(insert);
        sqlite3_finalize(commit);
    }

    struct writer *ws = calloc((size_t)writers, sizeof *ws);
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)events);
    pthread_t *threads = calloc((size_t)writers, sizeof *threads);
    if (!ws || !all || !threads) die(NULL, "alloc");
    size_t offset = 0;
    for (int k = 0; k < writers; k++) {
        ws[k].index = k;
        ws[k].share = events / writers + (k < events % writers ? 1 : 0);
        ws[k].latencies = all + offset;
        offset += (size_t)ws[k].share;
    }
    /* Every connection is open and prepared before the clock starts, as in nmbridge
       (whose connection pool is open before its writers start). */
    pthread_barrier_init(&g_start, NULL, (unsigned)writers + 1);
    for (int k = 0; k < writers; k++) {
        if (pthread_create(&threads[k], NULL, writer_main, &ws[k]) != 0) die(NULL, "pthread_create");
    }
    pthread_barrier_wait(&g_start);
    double cpu0 = cpu_seconds();
    uint64_t start = now_ns();
    for (int k = 0; k < writers; k++) pthread_join(threads[k], NULL);
    double elapsed = (double)(now_ns() - start) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    long busy = 0;
    for (int k = 0; k < writers; k++) busy += ws[k].busy_retries;

    qsort(all, (size_t)events, sizeof *all, compare_u64);
    printf("{\"bench\":\"journal-append\",\"impl\":\"%s\",\"sync\":\"%s\",\"writers\":%d,"
           "\"events\":%d,\"seconds\":%.4f,\"events_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
           "\"commits\":%d,\"events_per_commit\":1.00,\"cpu_s\":%.3f,\"busy_retries\":%ld}\n",
           g_serialize ? "sqlite-txn-per-event-mutex" : "sqlite-txn-per-event", g_sync, writers, events, elapsed, events / elapsed, percentile(all, (size_t)events, 50) / 1e3,
           percentile(all, (size_t)events, 99) / 1e3, all[events - 1] / 1e3, events, cpu, busy);
    fflush(stdout);
    pthread_barrier_destroy(&g_start);
    sqlite3_close(setup);
    free(ws);
    free(all);
    free(threads);
}

static void usage(void) {
    fprintf(stderr, "usage: sqlite_append --writers 1,8,64 --events N --sync full|normal --dir DIR [--warmup N] [--serialize]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *writers = "1,8,64", *dir = NULL;
    int events = 20000, warmup = 64;
    g_sync = "full";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--serialize")) {
            g_serialize = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--writers")) writers = argv[++i];
        else if (!strcmp(argv[i], "--events")) events = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sync")) g_sync = argv[++i];
        else if (!strcmp(argv[i], "--dir")) dir = argv[++i];
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
        else usage();
    }
    if (!dir || events <= 0 || (strcmp(g_sync, "full") && strcmp(g_sync, "normal"))) usage();
    mkdir(dir, 0755);
    if (!sqlite3_threadsafe()) {
        fprintf(stderr, "sqlite_append: libsqlite3 is built without thread support\n");
        return 1;
    }
    char *list = strdup(writers);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int n = atoi(tok);
        if (n <= 0) usage();
        run(n, events, warmup, dir);
    }
    free(list);
    return 0;
}
