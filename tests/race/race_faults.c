/*
 * The fault mode of race_check (race_check.c, tests/e2e/faults.sh): the fault thread that restarts,
 * freezes and kills Redis and MariaDB under the owner's loop, the probe thread that watches
 * /readyz and a steady session meanwhile, and the checks of the end state (the ledger canaries in
 * GetSession and in a final public GET).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "client/client.h"
#include "rpc/rpc.h"
#include "tests/race/race.h"

window_t windows[8];
int nwindows;
atomic_int faults_done;
uint64_t recovered_at; /* every GET that starts after this must succeed */
int fault_failed;

probe_t *probes;
size_t nprobes, probes_cap;

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

static void fault(const char *action)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s", fault_cmd, action);
    uint64_t t = now_ns();
    int rc = system(cmd);
    fprintf(stderr, "race_check: fault %-13s exit %d (%.2f s)\n", action, rc, (double)(now_ns() - t) / 1e9);
    if (rc != 0)
        fault_failed = 1;
}

void *fault_main(void *arg)
{
    (void)arg;
    static const struct {
        const char *what, *down, *up;
        unsigned hold_ms;
        int redis_down, db_down;
    } plan[] = {
        {"Redis restart 1 (SIGKILL)", "redis-kill", "redis-start", 2000, 1, 0},
        {"Redis frozen (SIGSTOP)", "redis-stop", "redis-cont", 3000, 0, 0},
        {"Redis restart 2 (SIGKILL)", "redis-kill", "redis-start", 2000, 1, 0},
        {"MariaDB killed (SIGKILL)", "mariadb-kill", "mariadb-start", 4000, 0, 1},
    };
    sleep_ms(3000);
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        window_t *w = &windows[nwindows];
        w->what = plan[i].what;
        w->redis_down = plan[i].redis_down;
        w->db_down = plan[i].db_down;
        fault(plan[i].down);
        w->from = now_ns(); /* the service is down (or frozen) from here */
        sleep_ms(plan[i].hold_ms);
        w->to = now_ns(); /* ... at least until here */
        fault(plan[i].up);
        nwindows++;
        sleep_ms(3000);
    }
    recovered_at = now_ns() + 2000000000ull; /* 3 s after the last fault, plus these 2 */
    sleep_ms(3000);
    atomic_store(&faults_done, 1);
    return NULL;
}

static size_t discard(char *p, size_t size, size_t nmemb, void *ud)
{
    (void)p;
    (void)ud;
    return size * nmemb;
}

static int get_status(CURL *c, const char *url)
{
    long status = -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return (int)status;
}

/* GET /readyz (and the steady session) every 100 ms, until stop. */
void *probe_main(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof(url), "%s/readyz", base);
    const char *steady = getenv("SL_FAULT_STEADY_URL");
    while (!atomic_load(&stop)) {
        uint64_t t = now_ns();
        int ready = get_status(c, url);
        int st = steady && *steady ? get_status(c, steady) : 0;
        if (nprobes < probes_cap)
            probes[nprobes++] = (probe_t){t, ready, st};
        sleep_ms(100);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* ---- the end state (fault mode) ---- */

/* GetSession: every ledger canary present with its acknowledged hidden flag. Returns the number
 * of ledger canaries lost or wrong. */
uint64_t check_ledger(const canary_t *can, int ncan, uint64_t *checked)
{
    sl_client_answer_t a;
    if (get_session(&a) != 0)
        return (uint64_t)-1;
    const msgpack_object *ex = sl_rpc_field(a.map, "exchanges");
    uint64_t lost = 0;
    for (int i = 0; i < ncan; i++) {
        if (!can[i].ledger)
            continue;
        (*checked)++;
        char want[96];
        snprintf(want, sizeof(want), "%s%d-", tag, i);
        size_t wl = strlen(want);
        int present = 0, text_ok = 0, hidden_ok = 0;
        for (uint32_t k = 0; ex && ex->type == MSGPACK_OBJECT_ARRAY && k < ex->via.array.size; k++) {
            const msgpack_object *e = &ex->via.array.ptr[k];
            const msgpack_object *id = sl_rpc_field(e, "id");
            if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || id->via.u64 != can[i].id)
                continue;
            present = 1;
            const msgpack_object *h = sl_rpc_field(e, "hidden");
            const msgpack_object *pr = sl_rpc_field(e, "prompt");
            if (pr && (pr->type == MSGPACK_OBJECT_STR || pr->type == MSGPACK_OBJECT_BIN)) {
                const char *p = pr->type == MSGPACK_OBJECT_STR ? pr->via.str.ptr : pr->via.bin.ptr;
                uint32_t n = pr->type == MSGPACK_OBJECT_STR ? pr->via.str.size : pr->via.bin.size;
                for (uint32_t o = 0; o + wl <= n && !text_ok; o++)
                    text_ok = memcmp(p + o, want, wl) == 0;
            }
            hidden_ok = h && h->type == MSGPACK_OBJECT_BOOLEAN && h->via.boolean == (can[i].hidden != 0);
        }
        if (!present || !text_ok || !hidden_ok) {
            lost++;
            fprintf(stderr, "LOST: ledger canary %d (exchange %llu): %s\n", i, (unsigned long long)can[i].id,
                    !present   ? "missing"
                    : !text_ok ? "wrong text"
                               : "wrong hidden flag");
        }
    }
    sl_client_answer_free(&a);
    return lost;
}

/* One public GET at the end: every visible ledger canary shown, no removed canary shown. */
uint64_t check_final_get(const canary_t *can, int ncan, uint64_t *checked)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof(url), "%s/api/v1/share/%s", read_base, session);
    body_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long status = 0;
    uint64_t bad = 0;
    if (curl_easy_perform(c) != CURLE_OK ||
        (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), status != 200)) {
        fprintf(stderr, "race_check: the final public GET failed (HTTP %ld)\n", status);
        bad = 1;
    }
    for (int i = 0; !bad && i < ncan; i++) {
        if (can[i].ghost)
            continue;
        char want[96];
        snprintf(want, sizeof(want), "%s%d-", tag, i);
        int seen = b.p && strstr(b.p, want) != NULL;
        int vis = can[i].ledger && !can[i].hidden;
        (*checked)++;
        if (seen != vis) {
            bad++;
            fprintf(stderr, "%s: canary %d is %s in the final public GET\n", vis ? "LOST" : "VIOLATION", i,
                    seen ? "shown" : "absent");
        }
    }
    free(b.p);
    curl_easy_cleanup(c);
    return bad;
}
