/*
 * Owner RPC latency and throughput: THREADS clients (client/client.h, msgpack over HTTP/1.1
 * keep-alive) each toggle one exchange of its own session (hidden true/false, so every call is a
 * real change: MARK, transaction, projection rebuild, publish, node invalidations) CALLS times.
 *
 * usage: rpc_bench BASE_URL TOKEN SESSION_PREFIX EXCHANGE_ID THREADS CALLS
 *   sessions are SESSION_PREFIX-0 .. SESSION_PREFIX-(THREADS-1), each with exchange EXCHANGE_ID
 *   (its own id in each session: pass 0 to use the first exchange id printed by the seeder, or
 *   give it through the env SL_BENCH_EXCHANGE_IDS="id0 id1 ...").
 * Prints: calls=N errors=E seconds=S calls_per_s=R p50_ms=A p90_ms=B p99_ms=C max_ms=D
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "client/client.h"

static const char *base, *token, *prefix;
static int calls;

typedef struct worker {
    pthread_t th;
    int index;
    unsigned long long exchange;
    double *lat_ms;
    int errors;
} worker_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    worker_t *w = arg;
    sl_client_t *c;
    if (sl_client_open(&c, base, token, SL_CLIENT_HTTP1) != 0)
        return NULL;
    char sid[200];
    snprintf(sid, sizeof(sid), "%s-%d", prefix, w->index);
    for (int i = 0; i < calls; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "session_id", 10);
        msgpack_pack_str_with_body(&pk, sid, strlen(sid));
        msgpack_pack_str_with_body(&pk, "exchange_ids", 12);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_uint64(&pk, w->exchange);
        msgpack_pack_str_with_body(&pk, "hidden", 6);
        if (i % 2 == 0)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        sl_client_answer_t a;
        char err[256];
        double t0 = now_s();
        int rc = sl_client_call(c, "SetExchangesHidden", sb.data, sb.size, &a, err, sizeof(err));
        w->lat_ms[i] = (now_s() - t0) * 1000;
        if (rc != 0 || a.status != 200) {
            w->errors++;
            if (w->errors <= 3)
                fprintf(stderr, "rpc_bench: %s: %s\n", sid, rc != 0 ? err : "non-200 answer");
        }
        if (rc == 0)
            sl_client_answer_free(&a);
        msgpack_sbuffer_destroy(&sb);
    }
    sl_client_close(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: rpc_bench BASE_URL TOKEN SESSION_PREFIX EXCHANGE_ID THREADS CALLS\n");
        return 2;
    }
    base = argv[1];
    token = argv[2];
    prefix = argv[3];
    unsigned long long ex = strtoull(argv[4], NULL, 10);
    int threads = atoi(argv[5]);
    calls = atoi(argv[6]);
    if (threads < 1 || threads > 64 || calls < 1 || calls > 1000000)
        return 2;
    const char *ids = getenv("SL_BENCH_EXCHANGE_IDS");
    worker_t *w = calloc((size_t)threads, sizeof(*w));
    double *all = calloc((size_t)threads * (size_t)calls, sizeof(double));
    char *save = NULL, *copy = ids ? strdup(ids) : NULL;
    char *tok = copy ? strtok_r(copy, " ", &save) : NULL;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        w[i].index = i;
        w[i].exchange = tok ? strtoull(tok, NULL, 10) : ex;
        if (tok)
            tok = strtok_r(NULL, " ", &save);
        w[i].lat_ms = all + (size_t)i * (size_t)calls;
        pthread_create(&w[i].th, NULL, run, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        errors += w[i].errors;
    }
    double secs = now_s() - t0;
    size_t n = (size_t)threads * (size_t)calls;
    qsort(all, n, sizeof(double), cmp_d);
    printf(
        "calls=%zu errors=%d seconds=%.2f calls_per_s=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
        n, errors, secs, (double)n / secs, all[n / 2], all[(size_t)(n * 0.9)], all[(size_t)(n * 0.99)],
        all[n - 1]);
    free(all);
    free(w);
    free(copy);
    return errors ? 1 : 0;
}
