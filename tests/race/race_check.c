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

#include "rpc/client.h"
#include "rpc/rpc.h"

static int PRIVATE_EVERY = 10; /* env SL_RACE_PRIVATE_EVERY */
#define MAX_CANARIES_PER_GET 64

static const char *base, *read_base, *session;
static char tag[64]; /* "CANARY-<pid>-" */
static atomic_int stop;

static uint64_t now_ns(void)
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

typedef struct body {
    char *p;
    size_t n, cap;
} body_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
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
     * connection (see rpc/client.c). Loopback TIME_WAIT sockets are reused (tcp_tw_reuse=2). */
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
        if (rc != CURLE_OK) {
            r->errors++;
            continue;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
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
        for (const char *p = b.p; p && (p = strstr(p, tag)) != NULL; p += taglen) {
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

static int rpc(const char *method, msgpack_sbuffer *sb, sl_client_answer_t *a)
{
    char err[512];
    if (sl_client_call(owner, method, sb->data, sb->size, a, err, sizeof(err)) != 0) {
        fprintf(stderr, "race_check: %s: %s\n", method, err);
        return -1;
    }
    if (a->status != 200) {
        fprintf(stderr, "race_check: %s: HTTP %d %.*s\n", method, a->status, (int)a->message_len,
                a->message ? a->message : "");
        sl_client_answer_free(a);
        return -1;
    }
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *k, const char *v)
{
    sl_rpc_pack_str(pk, k);
    sl_rpc_pack_str(pk, v);
}

static uint64_t last_version; /* the version the last owner call produced */

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
    int rc = rpc("AppendExchanges", &sb, &a);
    msgpack_sbuffer_destroy(&sb);
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
    int rc = rpc("DeleteExchange", &sb, &a);
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0) {
        last_version = answer_version(&a);
        sl_client_answer_free(&a);
    }
    return rc;
}

/* One owner call: when it returned and the version it produced. */
typedef struct event {
    uint64_t ret;
    uint64_t version;
} event_t;

/* What the owner did to canary i, by version. 0 = not (yet) done. */
typedef struct canary {
    uint64_t appended, hidden, shown, deleted;
} canary_t;

static event_t *events;
static size_t nevents;

static void record(void)
{
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

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: race_check BASE_URL TOKEN SESSION_ID CYCLES READERS\n");
        return 2;
    }
    base = argv[1];
    /* SL_RACE_READ_URL: readers use another node than the owner (tests/e2e/two_nodes.sh) */
    read_base = getenv("SL_RACE_READ_URL") && *getenv("SL_RACE_READ_URL") ? getenv("SL_RACE_READ_URL") : base;
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
    owner = sl_client_new(base, argv[2], SL_CLIENT_HTTP2);
    canary_t *can = calloc((size_t)cycles, sizeof(*can));
    events = calloc((size_t)cycles * 6 + 8, sizeof(*events));
    span_t *priv = calloc((size_t)cycles / PRIVATE_EVERY + 2, sizeof(*priv));
    size_t npriv = 0;
    reader_t *readers = calloc((size_t)nreaders, sizeof(*readers));
    if (!owner || !can || !events || !priv || !readers)
        return 1;
    if (set_public(1) != 0)
        return 1;
    record();
    for (int k = 0; k < nreaders; k++) {
        readers[k].html = k % 2;
        pthread_create(&readers[k].th, NULL, reader_main, &readers[k]);
    }
    int failed = 0;
    uint64_t t_start = now_ns();
    for (int i = 0; i < cycles && !failed; i++) {
        int64_t id = append_canary(i);
        if (id < 0) {
            failed = 1;
            break;
        }
        record();
        can[i].appended = last_version;
        if (set_hidden((uint64_t)id, 1) != 0) {
            failed = 1;
            break;
        }
        record();
        can[i].hidden = last_version;
        usleep(1000); /* let readers look while it is hidden */
        if (set_hidden((uint64_t)id, 0) != 0) {
            failed = 1;
            break;
        }
        record();
        can[i].shown = last_version;
        if (delete_exchange((uint64_t)id) != 0) {
            failed = 1;
            break;
        }
        record();
        can[i].deleted = last_version;
        if (i % PRIVATE_EVERY == PRIVATE_EVERY - 1) {
            if (set_public(0) != 0) {
                failed = 1;
                break;
            }
            record();
            priv[npriv].from = last_version;
            usleep(2000); /* give the readers a chance to look while it is private */
            if (set_public(1) != 0) {
                failed = 1;
                break;
            }
            record();
            priv[npriv++].to = last_version;
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    uint64_t calls = nevents;
    atomic_store(&stop, 1);
    uint64_t gets = 0, ok200 = 0, n404 = 0, canary_checks = 0, fresh_checks = 0, private_checks = 0,
             violations = 0, errors = 0;
    for (int k = 0; k < nreaders; k++) {
        pthread_join(readers[k].th, NULL);
        errors += readers[k].errors;
        for (size_t j = 0; j < readers[k].n; j++) {
            const obs_t *o = &readers[k].obs[j];
            gets++;
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
                fprintf(stderr, "VIOLATION: GET started after version %llu returned, answered at older %llu\n",
                        (unsigned long long)must, v);
            }
            for (size_t w = 0; w < npriv; w++)
                if (v >= priv[w].from && v < priv[w].to) {
                    violations++;
                    fprintf(stderr, "VIOLATION: 200 at version %llu, when the session was private\n", v);
                }
            if (private_at_must)
                private_checks++; /* a 200 after a revoke returned: only at a later re-share's version */
            for (int i = 0; i < cycles; i++) {
                if (!can[i].appended || can[i].appended > v)
                    continue;
                int vis = visible_at(&can[i], v);
                int seen = 0;
                for (int s2 = 0; s2 < o->n; s2++)
                    seen |= o->seen[s2] == i;
                if (!vis)
                    canary_checks++;
                if (seen && !vis) {
                    violations++;
                    fprintf(stderr, "VIOLATION: canary %d shown at version %llu, where it is removed\n", i, v);
                }
            }
        }
        free(readers[k].obs);
    }
    printf("race_check: %d cycles, %llu owner calls in %.1f s (%.0f/s), %zu revocations; %llu GETs over HTTP/2 "
           "(%llu 200, %llu 404, %llu errors); %llu freshness checks, %llu canary-absence checks, "
           "%llu 200s racing a re-share; %llu violations\n",
           cycles, (unsigned long long)calls, secs, (double)calls / secs, npriv, (unsigned long long)gets,
           (unsigned long long)ok200, (unsigned long long)n404, (unsigned long long)errors,
           (unsigned long long)fresh_checks, (unsigned long long)canary_checks, (unsigned long long)private_checks,
           (unsigned long long)violations);
    sl_client_free(owner);
    free(can);
    free(events);
    free(priv);
    free(readers);
    curl_global_cleanup();
    if (failed)
        fprintf(stderr, "race_check: an owner call failed\n");
    return failed || violations || errors || gets == 0 ? 1 : 0;
}
