/*
 * Race check: readers GET a public share over HTTP/2 as fast as they can while the owner, through
 * the RPC client, appends an exchange carrying a unique canary, hides it, shows it, deletes it, and
 * every few cycles revokes and re-shares the whole session.
 *
 * Every owner call answers the session version it produced, and every public answer carries that
 * version in its ETag ("v<version>-..."). The owner's calls give the truth at each version: which
 * canaries are visible, and whether the session is public. Each GET is then checked twice:
 *   freshness:   a GET that started after an owner call returned is answered at that call's version
 *                or a later one (404 included: a GET after a revoke returned must be 404 unless a
 *                later re-share overlapped it);
 *   consistency: the answer at version V shows exactly the canaries visible at V, and no 200 is
 *                ever answered at a version where the session was private.
 * Together: no GET that starts after an owner call returned shows what that call removed. A GET
 * that overlaps a later call may show that later call's state (it is concurrent with it).
 * (t0 is taken before the request is sent, which only makes the check stricter.)
 *
 * usage: race_check BASE_URL TOKEN SESSION_ID CYCLES READERS   (env SL_RACE_PRIVATE_EVERY, default 10)
 * Prints the counts; exits 1 on any violation or error.
 *
 * Fault mode (env SL_FAULT_CMD, tests/e2e/faults.sh): a fault thread runs `$SL_FAULT_CMD <action>`
 * to restart Redis twice, freeze it (SIGSTOP) once and kill and restart MariaDB once, while the
 * owner keeps working (CYCLES is then only a cap: the loop runs until the faults are over). Owner
 * calls that fail (transport error, 5xx, 429) were not acknowledged: they are retried, and what
 * they may have done is accounted for conservatively: a call that adds visibility (show, re-share,
 * append) may have taken effect from the version after the last acknowledged one; a call that
 * removes visibility counts only from the version its acknowledged retry answered. A failed append
 * is never retried (it may have been applied): its canary is a "ghost" that may stay visible.
 * Every third cycle also appends a "ledger" exchange that stays (half of them hidden); at the end
 * GetSession must show every acknowledged ledger exchange with its acknowledged hidden flag, and a
 * public GET must show exactly the visible ones. Also checked: public reads answered 200 while
 * Redis was down, /readyz answered 503 while MariaDB was down and 200 after, and every GET that
 * started 5 s after the last fault succeeded.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "client/client.h"
#include "rpc/rpc.h"
#include "tests/race/race.h"

static int PRIVATE_EVERY = 10; /* env SL_RACE_PRIVATE_EVERY */
#define MAX_CANARIES_PER_GET 64

const char *base, *read_base, *session;
char tag[64]; /* "CANARY-<pid>-" */
atomic_int stop;
const char *fault_cmd; /* fault mode when set */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- readers ---- */

typedef struct obs {
    uint64_t t0, t1;
    int status;
    char etag[48];
    int n;
    int seen[MAX_CANARIES_PER_GET];
} obs_t;

typedef struct reader {
    pthread_t th;
    int html;
    obs_t *obs;
    size_t n, cap;
    uint64_t errors;
} reader_t;

size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body_t *b = ud;
    size_t n = size * nmemb;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL)
            return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    char *etag = ud;
    size_t n = size * nmemb;
    if (n > 6 && strncasecmp(ptr, "etag:", 5) == 0) {
        size_t k = n - 5 < 47 ? n - 5 : 47;
        memcpy(etag, ptr + 5, k);
        etag[k] = 0;
        etag[strcspn(etag, "\r\n")] = 0;
    }
    return n;
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof(url), "%s/%s/%s", read_base, r->html ? "share" : "api/v1/share", session);
    body_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    char etag[48] = "";
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, etag);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /* One HTTP/2 connection per GET: libcurl 7.88 cannot reuse a cleartext prior-knowledge
     * connection (see client/client.c). Loopback TIME_WAIT sockets are reused (tcp_tw_reuse=2). */
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    size_t taglen = strlen(tag);
    while (!atomic_load(&stop)) {
        b.n = 0;
        if (b.p)
            b.p[0] = 0;
        etag[0] = 0;
        uint64_t t0 = now_ns();
        CURLcode rc = curl_easy_perform(c);
        uint64_t t1 = now_ns();
        long status = 0;
        if (rc != CURLE_OK) {
            r->errors++;
            if (!fault_cmd)
                continue;
            status = -1; /* kept, with its time: the fault report needs it */
        } else {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        }
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 4096;
            r->obs = realloc(r->obs, r->cap * sizeof(*r->obs));
            if (r->obs == NULL)
                abort();
        }
        obs_t *o = &r->obs[r->n++];
        o->t0 = t0;
        o->t1 = t1;
        o->status = (int)status;
        memcpy(o->etag, etag, sizeof(o->etag));
        o->n = 0;
        for (const char *p = b.p; status == 200 && p && (p = strstr(p, tag)) != NULL; p += taglen) {
            int i = atoi(p + taglen);
            int dup = 0;
            for (int k = 0; k < o->n; k++)
                dup |= o->seen[k] == i;
            if (!dup && o->n < MAX_CANARIES_PER_GET)
                o->seen[o->n++] = i;
        }
    }
    free(b.p);
    curl_easy_cleanup(c);
    return NULL;
}

/* ---- owner ---- */

static sl_client_t *owner;
static uint64_t unacked;      /* owner calls that failed under faults (not acknowledged) */
static int last_retried;      /* the last owner call needed more than one attempt */
static uint64_t last_version; /* the version the last owner call produced */

/* Returns 0 (200), -1 (failed), 1 (fault mode: 404 after a failed attempt, which must then have
 * been applied), -2 (fault mode, may_retry 0: the one attempt failed and may have been applied).
 * In fault mode, transport errors, 5xx and 429 are retried for up to 90 s. */
static int rpc_ex(const char *method, msgpack_sbuffer *sb, sl_client_answer_t *a, int may_retry)
{
    char err[512];
    uint64_t deadline = now_ns() + 90ull * 1000000000ull;
    last_retried = 0;
    for (;;) {
        int transport = sl_client_call(owner, method, sb->data, sb->size, a, err, sizeof(err)) != 0;
        if (!transport && a->status == 200)
            return 0;
        if (!transport && a->status == 404 && last_retried) {
            sl_client_answer_free(a);
            return 1;
        }
        int transient = transport || a->status >= 500 || a->status == 429;
        if (!fault_cmd || !transient || now_ns() > deadline) {
            if (transport)
                fprintf(stderr, "race_check: %s: %s\n", method, err);
            else
                fprintf(stderr, "race_check: %s: HTTP %d %.*s\n", method, a->status, (int)a->message_len,
                        a->message ? a->message : "");
            if (!transport)
                sl_client_answer_free(a);
            return -1;
        }
        if (!transport)
            sl_client_answer_free(a);
        unacked++;
        last_retried = 1;
        if (!may_retry)
            return -2;
        usleep(100000);
    }
}

int rpc(const char *method, msgpack_sbuffer *sb, sl_client_answer_t *a)
{
    int rc = rpc_ex(method, sb, a, 1);
    return rc == 0 ? 0 : -1;
}

void pk_str(msgpack_packer *pk, const char *k, const char *v)
{
    sl_rpc_pack_str(pk, k);
    sl_rpc_pack_str(pk, v);
}

static uint64_t answer_version(const sl_client_answer_t *a)
{
    const msgpack_object *v = sl_rpc_field(a->map, "version");
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static int set_hidden(uint64_t id, int hidden)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "session_id", session);
    sl_rpc_pack_str(&pk, "exchange_ids");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint64(&pk, id);
    sl_rpc_pack_str(&pk, "hidden");
    hidden ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    sl_client_answer_t a;
    int rc = rpc("SetExchangesHidden", &sb, &a);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0) {
        last_version = answer_version(&a);
        sl_client_answer_free(&a);
    }
    return rc;
}

static int set_public(int pub)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "session_id", session);
    sl_rpc_pack_str(&pk, "public");
    pub ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    sl_client_answer_t a;
    int rc = rpc("SetVisibility", &sb, &a);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0) {
        last_version = answer_version(&a);
        sl_client_answer_free(&a);
    }
    return rc;
}

static int64_t append_canary(int i)
{
    char text[160];
    snprintf(text, sizeof(text), "prompt with %s%d- inside", tag, i);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "session_id", session);
    sl_rpc_pack_str(&pk, "exchanges");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "prompt", text);
    pk_str(&pk, "response", text);
    sl_client_answer_t a;
    int rc = rpc_ex("AppendExchanges", &sb, &a, 0);
    msgpack_sbuffer_destroy(&sb);
    if (rc == -2)
        return -2; /* not acknowledged; may have been applied: a ghost */
    if (rc != 0)
        return -1;
    last_version = answer_version(&a);
    const msgpack_object *ids = sl_rpc_field(a.map, "exchange_ids");
    int64_t id = ids && ids->type == MSGPACK_OBJECT_ARRAY && ids->via.array.size == 1
                     ? (int64_t)ids->via.array.ptr[0].via.u64
                     : -1;
    sl_client_answer_free(&a);
    return id;
}

int get_session(sl_client_answer_t *a)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "session_id", session);
    int rc = rpc("GetSession", &sb, a);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* The session's current version (GetSession), into last_version. */
static int fetch_version(void)
{
    sl_client_answer_t a;
    int rc = get_session(&a);
    if (rc == 0) {
        last_version = answer_version(&a);
        sl_client_answer_free(&a);
    }
    return rc;
}

static int delete_exchange(uint64_t id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "session_id", session);
    sl_rpc_pack_str(&pk, "exchange_id");
    msgpack_pack_uint64(&pk, id);
    sl_client_answer_t a;
    int rc = rpc_ex("DeleteExchange", &sb, &a, 1);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 1) /* a failed attempt deleted it: the version now is at least its version */
        return fetch_version();
    if (rc == 0) {
        last_version = answer_version(&a);
        sl_client_answer_free(&a);
    }
    return rc == 0 ? 0 : -1;
}

/* One owner call: when it returned and the version it produced. */
typedef struct event {
    uint64_t ret;
    uint64_t version;
} event_t;

static event_t *events;
static size_t nevents, events_cap;

static void record(void)
{
    if (nevents == events_cap)
        return; /* the loop stops before this can happen */
    events[nevents].ret = now_ns();
    events[nevents].version = last_version;
    nevents++;
}

/* The greatest version of an owner call that returned before t. */
static uint64_t version_before(uint64_t t)
{
    size_t lo = 0, hi = nevents; /* events are in time and version order */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (events[mid].ret <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? events[lo - 1].version : 0;
}

static int visible_at(const canary_t *c, uint64_t v)
{
    if (!c->appended || v < c->appended)
        return 0;
    if (c->deleted && v >= c->deleted)
        return 0;
    if (c->hidden && v >= c->hidden && (!c->shown || v < c->shown))
        return 0;
    return 1;
}

typedef struct span {
    uint64_t from, to; /* private for versions [from, to) */
} span_t;

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: race_check BASE_URL TOKEN SESSION_ID CYCLES READERS\n");
        return 2;
    }
    base = argv[1];
    /* SL_RACE_READ_URL: readers use another node than the owner (tests/e2e/two_nodes.sh) */
    read_base = getenv("SL_RACE_READ_URL") && *getenv("SL_RACE_READ_URL") ? getenv("SL_RACE_READ_URL") : base;
    fault_cmd = getenv("SL_FAULT_CMD") && *getenv("SL_FAULT_CMD") ? getenv("SL_FAULT_CMD") : NULL;
    session = argv[3];
    int cycles = atoi(argv[4]), nreaders = atoi(argv[5]);
    if (cycles <= 0 || nreaders <= 0 || nreaders > 16) {
        fprintf(stderr, "race_check: CYCLES > 0, READERS 1-16\n");
        return 2;
    }
    snprintf(tag, sizeof(tag), "CANARY-%d-", (int)getpid());
    if (getenv("SL_RACE_PRIVATE_EVERY") && atoi(getenv("SL_RACE_PRIVATE_EVERY")) > 0)
        PRIVATE_EVERY = atoi(getenv("SL_RACE_PRIVATE_EVERY"));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sl_client_open(&owner, base, argv[2], SL_CLIENT_HTTP2) != 0) {
        fprintf(stderr, "race_check: out of memory\n");
        return 2;
    }
    int can_cap = cycles * 3 + 64, ncan = 0;
    canary_t *can = calloc((size_t)can_cap, sizeof(*can));
    events_cap = (size_t)cycles * 10 + 16;
    events = calloc(events_cap, sizeof(*events));
    span_t *priv = calloc((size_t)cycles / PRIVATE_EVERY + 2, sizeof(*priv));
    size_t npriv = 0;
    reader_t *readers = calloc((size_t)nreaders, sizeof(*readers));
    probes_cap = 100000;
    probes = calloc(probes_cap, sizeof(*probes));
    if (!owner || !can || !events || !priv || !readers || !probes)
        return 1;
    if (set_public(1) != 0)
        return 1;
    record();
    for (int k = 0; k < nreaders; k++) {
        readers[k].html = k % 2;
        pthread_create(&readers[k].th, NULL, reader_main, &readers[k]);
    }
    pthread_t fault_th, probe_th;
    if (fault_cmd) {
        pthread_create(&probe_th, NULL, probe_main, NULL);
        pthread_create(&fault_th, NULL, fault_main, NULL);
    }
    int failed = 0, ghosts = 0;
    uint64_t t_start = now_ns();
    int i;
    for (i = 0; !failed; i++) {
        if (fault_cmd ? atomic_load(&faults_done) : i >= cycles)
            break;
        /* room for this cycle: 3 canaries, 10 events, one private span */
        if (i >= cycles || ncan + 3 > can_cap || nevents + 10 > events_cap) {
            fprintf(stderr, "race_check: cycle cap reached before the faults were over\n");
            failed = 1;
            break;
        }
        uint64_t before = last_version;
        int ci = ncan++;
        int64_t id = append_canary(ci);
        if (id == -2) { /* not acknowledged: it may be there, visible; never removed */
            can[ci].ghost = 1;
            can[ci].appended = before + 1;
            ghosts++;
            usleep(100000); /* the service is down: do not spin */
            continue;
        }
        if (id < 0) {
            failed = 1;
            break;
        }
        record();
        can[ci].appended = last_version;
        can[ci].id = (uint64_t)id;
        if (set_hidden((uint64_t)id, 1) != 0) {
            failed = 1;
            break;
        }
        record();
        can[ci].hidden = last_version;
        usleep(1000); /* let readers look while it is hidden */
        before = last_version;
        if (set_hidden((uint64_t)id, 0) != 0) {
            failed = 1;
            break;
        }
        record();
        can[ci].shown = last_retried ? before + 1 : last_version;
        if (delete_exchange((uint64_t)id) != 0) {
            failed = 1;
            break;
        }
        record();
        can[ci].deleted = last_version;
        if (i % PRIVATE_EVERY == PRIVATE_EVERY - 1) {
            if (set_public(0) != 0) {
                failed = 1;
                break;
            }
            record();
            priv[npriv].from = last_version;
            usleep(2000); /* give the readers a chance to look while it is private */
            before = last_version;
            if (set_public(1) != 0) {
                failed = 1;
                break;
            }
            record();
            priv[npriv++].to = last_retried ? before + 1 : last_version;
        }
        if (fault_cmd && i % 3 == 0) { /* a ledger exchange: stays, every other one hidden */
            int li = ncan++;
            before = last_version;
            int64_t lid = append_canary(li);
            if (lid == -2) {
                can[li].ghost = 1;
                can[li].appended = before + 1;
                ghosts++;
                usleep(100000);
                continue;
            }
            if (lid < 0) {
                failed = 1;
                break;
            }
            record();
            can[li].appended = last_version;
            can[li].id = (uint64_t)lid;
            can[li].ledger = 1;
            if (li % 2) {
                if (set_hidden((uint64_t)lid, 1) != 0) {
                    failed = 1;
                    break;
                }
                record();
                can[li].hidden = last_version;
            }
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    uint64_t calls = nevents;
    if (fault_cmd) {
        while (!atomic_load(&faults_done))
            sleep_ms(100); /* an owner failure ended the loop early: let the plan finish */
        pthread_join(fault_th, NULL);
    }
    atomic_store(&stop, 1);
    uint64_t ledger_checked = 0, ledger_lost = 0, final_checked = 0, final_bad = 0;
    uint64_t gets = 0, ok200 = 0, n404 = 0, canary_checks = 0, fresh_checks = 0, private_checks = 0,
             violations = 0, errors = 0, late_errors = 0;
    uint64_t in_window[8] = {0}, ok_in_window[8] = {0}, nf_in_window[8] = {0};
    for (int k = 0; k < nreaders; k++) {
        pthread_join(readers[k].th, NULL);
        if (!fault_cmd)
            errors += readers[k].errors;
        for (size_t j = 0; j < readers[k].n; j++) {
            const obs_t *o = &readers[k].obs[j];
            gets++;
            for (int w = 0; w < nwindows; w++)
                if (o->t0 >= windows[w].from && o->t1 <= windows[w].to) {
                    in_window[w]++;
                    ok_in_window[w] += o->status == 200;
                    nf_in_window[w] += o->status == 404;
                }
            uint64_t must = version_before(o->t0); /* the state the GET must at least reflect */
            /* was the session private at `must`? then a 200 needs a re-share that overlapped */
            int private_at_must = 0;
            for (size_t w = 0; w < npriv; w++)
                if (must >= priv[w].from && must < priv[w].to)
                    private_at_must = 1;
            if (o->status == 404) {
                n404++;
                continue; /* 404 never shows anything */
            }
            if (o->status != 200) {
                errors++;
                if (fault_cmd && o->t0 >= recovered_at)
                    late_errors++;
                continue;
            }
            ok200++;
            unsigned long long v = 0;
            const char *p = strchr(o->etag, 'v');
            if (p == NULL || sscanf(p + 1, "%llu", &v) != 1) {
                violations++;
                fprintf(stderr, "VIOLATION: a 200 without a versioned ETag\n");
                continue;
            }
            fresh_checks++;
            if (v < must) {
                violations++;
                fprintf(stderr,
                        "VIOLATION: GET started after version %llu returned, answered at older %llu\n",
                        (unsigned long long)must, v);
            }
            for (size_t w = 0; w < npriv; w++)
                if (v >= priv[w].from && v < priv[w].to) {
                    violations++;
                    fprintf(stderr, "VIOLATION: 200 at version %llu, when the session was private\n", v);
                }
            if (private_at_must)
                private_checks++; /* a 200 after a revoke returned: only at a later re-share's version */
            for (int c = 0; c < ncan; c++) {
                if (!can[c].appended || can[c].appended > v)
                    continue;
                int vis = visible_at(&can[c], v);
                int seen = 0;
                for (int s2 = 0; s2 < o->n; s2++)
                    seen |= o->seen[s2] == c;
                if (!vis)
                    canary_checks++;
                if (seen && !vis) {
                    violations++;
                    fprintf(stderr, "VIOLATION: canary %d shown at version %llu, where it is removed\n", c,
                            v);
                }
            }
        }
        free(readers[k].obs);
    }
    printf(
        "race_check: %d cycles, %llu owner calls in %.1f s (%.0f/s), %zu revocations; %llu GETs over HTTP/2 "
        "(%llu 200, %llu 404, %llu errors); %llu freshness checks, %llu canary-absence checks, "
        "%llu 200s racing a re-share; %llu violations\n",
        i, (unsigned long long)calls, secs, (double)calls / secs, npriv, (unsigned long long)gets,
        (unsigned long long)ok200, (unsigned long long)n404, (unsigned long long)errors,
        (unsigned long long)fresh_checks, (unsigned long long)canary_checks,
        (unsigned long long)private_checks, (unsigned long long)violations);
    int fault_bad = 0;
    if (fault_cmd) {
        pthread_join(probe_th, NULL);
        ledger_lost = check_ledger(can, ncan, &ledger_checked);
        final_bad = check_final_get(can, ncan, &final_checked);
        printf("faults: %d injected; %llu owner attempts not acknowledged (retried), %d ghost appends\n",
               nwindows, (unsigned long long)unacked, ghosts);
        for (int w = 0; w < nwindows; w++) {
            uint64_t p200 = 0, p503 = 0, pn = 0, back = 0, s200 = 0, sn = 0;
            for (size_t k = 0; k < nprobes; k++) {
                if (probes[k].t >= windows[w].from && probes[k].t <= windows[w].to) {
                    pn++;
                    p200 += probes[k].status == 200;
                    p503 += probes[k].status == 503;
                    sn += probes[k].steady_status != 0;
                    s200 += probes[k].steady_status == 200;
                }
                if (!back && probes[k].t > windows[w].to && probes[k].status == 200)
                    back = probes[k].t;
            }
            printf("  %-26s %.1f s: edited session %llu GETs inside, %llu x 200, %llu x 404, %llu failed; "
                   "/readyz %llu x 200, %llu x 503 of %llu; "
                   "ready again %.1f s after the restart began; steady session %llu x 200 of %llu\n",
                   windows[w].what, (double)(windows[w].to - windows[w].from) / 1e9,
                   (unsigned long long)in_window[w], (unsigned long long)ok_in_window[w],
                   (unsigned long long)nf_in_window[w],
                   (unsigned long long)(in_window[w] - ok_in_window[w] - nf_in_window[w]),
                   (unsigned long long)p200, (unsigned long long)p503, (unsigned long long)pn,
                   back ? (double)(back - windows[w].to) / 1e9 : -1.0, (unsigned long long)s200,
                   (unsigned long long)sn);
            if (sn && s200 != sn) {
                fault_bad = 1;
                fprintf(stderr, "FAULT CHECK: the untouched public session was not always served (%s)\n",
                        windows[w].what);
            }
            /* The edited session may legitimately be private or mid-change (404, 503) in a window;
             * the untouched one must be served all along: from MariaDB while Redis is down, from
             * Redis while MariaDB is down. */
            if (sn == 0 || (windows[w].redis_down && s200 == 0)) {
                fault_bad = 1;
                fprintf(stderr, "FAULT CHECK: the untouched public session was not read during %s\n",
                        windows[w].what);
            }
            if (windows[w].db_down && (p503 == 0 || back == 0 || back - windows[w].to > 20000000000ull)) {
                fault_bad = 1;
                fprintf(stderr,
                        "FAULT CHECK: /readyz did not follow MariaDB (%llu x 503 while down, %s after)\n",
                        (unsigned long long)p503, back ? "200" : "never 200");
            }
        }
        if (nprobes == 0 || probes[nprobes - 1].status != 200) {
            fault_bad = 1;
            fprintf(stderr, "FAULT CHECK: /readyz is not 200 at the end\n");
        }
        if (nwindows != 4 || fault_failed) {
            fault_bad = 1;
            fprintf(stderr, "FAULT CHECK: the fault plan did not run completely\n");
        }
        if (late_errors) {
            fault_bad = 1;
            fprintf(stderr, "FAULT CHECK: %llu GETs failed after recovery\n",
                    (unsigned long long)late_errors);
        }
        printf("end state: %llu acknowledged ledger exchanges checked with GetSession, %llu lost or wrong; "
               "final public GET: %llu canaries checked, %llu wrong; %llu GETs failed after recovery\n",
               (unsigned long long)ledger_checked, (unsigned long long)ledger_lost,
               (unsigned long long)final_checked, (unsigned long long)final_bad,
               (unsigned long long)late_errors);
    }
    sl_client_close(owner);
    free(can);
    free(events);
    free(priv);
    free(readers);
    free(probes);
    curl_global_cleanup();
    if (failed)
        fprintf(stderr, "race_check: an owner call failed\n");
    return failed || violations || errors > (fault_cmd ? gets : 0) || gets == 0 || fault_bad || ledger_lost ||
                   final_bad
               ? 1
               : 0;
}
