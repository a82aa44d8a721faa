/*
 * The public read path: GetShare of the public service (rpc.h).
 *
 * The caller asks for one representation (rpc.h). Hot path: one Redis read of the entry's head and
 * of the one part that holds that representation's gzip form (cache.h); a gzip form is answered as
 * stored, a plain one inflated (off the loop when large); no task for small answers. Anything else
 * goes to the slow path (a task):
 *   ABSENT  read MariaDB through the public account and answer; an id with no public session
 *           stops there (no Redis key: remembered by the node, bounded); else take a lease, read
 *           again and fill the entry if the lease is still ours (so a reader can never overwrite
 *           what an owner wrote meanwhile);
 *   TOMB    the same first read (not filled: the key is taken): one 404 for unknown, private,
 *           revoked and deleted ids, in status, body and cost — each asks MariaDB once per node
 *           (then the node remembers the answer), each is 503 while MariaDB is down;
 *   LEASE   another reader is rebuilding: wait a little and look again (one rebuild per miss);
 *   MARK    an owner change is in flight: read MariaDB, do not fill;
 *   Redis down or slow: read MariaDB, do not fill.
 * MariaDB filters through the public_* views, so the slow path shows the same as the fast one.
 */
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>

#include "core/internal/projection.h"

#define LEASE_TTL_MS  10000
#define LEASE_WAIT_MS 15
#define LEASE_WAITS   10

/* The short answers (rpc.h): encoded once, at registration. */
static char not_found[SL_RPC_SHARE_SMALL_MAX];
static size_t not_found_len;

static void reply_not_found(sl_rpc_call_t *call)
{
    sl_rpc_reply_raw(call, not_found, not_found_len);
}

typedef struct get_share {
    sl_core_t *core;
    sl_rpc_call_t *call;
    sl_rpc_rep_t rep;       /* the representation asked for */
    uint64_t have_version;  /* the caller holds this version (0: none) ... */
    uint64_t have_tag;      /* ... with this content tag */
    sl_coh_ticket_t ticket; /* taken before asking Redis (node memory) */
    size_t idlen;
    char id[65]; /* a copy: the request (and the call) is freed once answered, and the slow path
                    still fills the cache after answering */
} get_share_t;

/* Answers with one representation. */
static void reply_rep(sl_rpc_call_t *call, uint64_t version, const char *etag, size_t etag_len,
                      sl_rpc_rep_t rep, const char *body, size_t len)
{
    sl_rpc_share_t s = {.found = 1, .version = version, .etag = {etag, etag_len}};
    s.rep[rep] = (sl_rpc_bytes_t){body ? body : "", len};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sl_rpc_share_pack(&pk, &s);
    if (sb.data == NULL)
        sl_rpc_fail(call, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
    else
        sl_rpc_reply_raw(call, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void reply_projection(sl_rpc_call_t *call, const sl_projection_t *p, sl_rpc_rep_t rep)
{
    if (p->found)
        reply_rep(call, p->version, p->etag, p->etag_len, rep, p->rep[rep], p->rep_len[rep]);
    else
        reply_not_found(call);
}

/* Plain forms larger than this are inflated off the loop. */
#define INLINE_INFLATE (256u << 10)

typedef struct inflate_job {
    const char *in;
    size_t len, plain_len;
    char *out;
    int rc;
} inflate_job_t;

static void run_inflate(void *arg)
{
    inflate_job_t *j = arg;
    j->rc = sl_gunzip(j->in, j->len, j->plain_len, &j->out);
}

/* Answers g from a stored PUBLIC entry: the form asked for, assembled from the entry's recipe and
 * the pieces it names (recipe.c), inflated when a plain form is asked for (large ones off the loop).
 * Runs in a task. 1: answered; 0: a blob the recipe names is gone, or the bytes do not match the
 * entry's ETag (nothing answered: the caller drops the entry and rebuilds); -1: Redis could not be
 * read (nothing answered: the caller reads MariaDB). */
static int reply_stored(get_share_t *g, const sl_proj_reply_t *r)
{
    sl_stored_meta_t m;
    if (sl_stored_meta_parse(r->meta, r->meta_len, &m) != 0)
        return 0;
    char *gz = NULL;
    size_t gzlen = 0;
    unsigned part = SL_PART_OF(g->rep);
    int rc = sl_recipe_assemble(g->core, r->payload, r->len, &m, part, &gz, &gzlen);
    if (rc != 0)
        return rc == 1 ? 0 : -1;
    if (SL_REP_IS_GZ(g->rep)) {
        reply_rep(g->call, r->version, m.etag, m.etag_len, g->rep, gz, gzlen);
        free(gz);
        return 1;
    }
    inflate_job_t j = {gz, gzlen, m.plain_len[part], NULL, 0};
    if (j.plain_len > INLINE_INFLATE)
        sl_await_work(g->core->loop, run_inflate, &j);
    else
        run_inflate(&j);
    free(gz);
    if (j.rc != 0) {
        sl_rpc_fail(g->call, SL_RPC_INTERNAL, "malformed projection entry");
        return 1;
    }
    reply_rep(g->call, r->version, m.etag, m.etag_len, g->rep, j.out, j.plain_len);
    free(j.out);
    return 1;
}

/* Reads the session from MariaDB through the public account. 0, or -1 when the store failed (the
 * call is then answered unless it already was). */
static int read_store(get_share_t *g, sl_projection_t *p, int answered)
{
    sl_store_error_t err;
    g->core->stats.public_store_reads++;
    /* the plain form asked for, if one was: the others are never served from here */
    unsigned plain = SL_REP_IS_GZ(g->rep) ? 0 : SL_PROJ_PLAIN_PART(SL_PART_OF(g->rep));
    int rc =
        sl_projection_load(g->core, g->core->public_, NULL, SL_VIEW_PUBLIC, g->id, g->idlen, plain, p, &err);
    if (rc == -2) {
        memset(p, 0, sizeof(*p)); /* over the cap (an owner change refuses that): not shown, fail closed */
        return 0;
    }
    if (rc == 0)
        return 0;
    if (!answered)
        sl_fail_store(g->call, &err);
    return -1;
}

/* ---- one MariaDB read per id and node at a time ----
 * Without this, every reader of a cold id that arrives while the first one is reading MariaDB reads
 * it too (each sees the key absent): a viral share after a Redis restart is a stampede. A reader
 * that finds another task of this node reading MariaDB for the same id waits for it (once, at most
 * FLIGHT_WAIT_MS) and then reads Redis again: the entry that task filled, or (an id that is not
 * shared) the negative answer it left in the node memory. Nothing read by the other task is reused,
 * so what a reader serves is never older than its own request. Across nodes the lease does the same. */
#define FLIGHTS        256
#define FLIGHT_POLL_MS 5
#define FLIGHT_WAIT_MS 2000

static struct {
    const sl_core_t *core; /* NULL: free */
    size_t idlen;
    char id[65];
} flights[FLIGHTS];

static int flight_find(const sl_core_t *core, const char *id, size_t n)
{
    for (int i = 0; i < FLIGHTS; i++)
        if (flights[i].core == core && flights[i].idlen == n && memcmp(flights[i].id, id, n) == 0)
            return i;
    return -1;
}

/* The slot now held for id, or -1 when the table is full (then nobody waits for this read). */
static int flight_enter(const sl_core_t *core, const char *id, size_t n)
{
    for (int i = 0; i < FLIGHTS; i++)
        if (flights[i].core == NULL) {
            flights[i].core = core;
            flights[i].idlen = n;
            memcpy(flights[i].id, id, n);
            return i;
        }
    return -1;
}

static void flight_leave(int slot)
{
    if (slot >= 0)
        flights[slot].core = NULL;
}

/* 1 when the entry's state sends this reader to MariaDB. */
static int reads_store(const sl_proj_reply_t *r, int probed)
{
    return r->kind == SL_PROJ_TOMB || r->kind == SL_PROJ_MARK || (r->kind == SL_PROJ_ABSENT && !probed);
}

/* A Redis answer, remembered by the node when nothing changed since the ticket was taken. A TOMB is
 * not: what the node remembers as 404 it learnt from MariaDB, as for ids never shared. */
static void learn(get_share_t *g, const sl_proj_reply_t *r)
{
    if (g->core->coh && r->status == SL_CACHE_OK && r->kind == SL_PROJ_PUBLIC)
        sl_coh_learn(g->core->coh, g->ticket, g->id, g->idlen, r->kind, r->version, r->tag);
}

static void slow_path_run(get_share_t *g, int *slot)
{
    sl_core_t *core = g->core;
    int may_fill = 1, answered = 0, probed = 0, waited = 0;
    uint64_t token = 0;
    sl_projection_t p;
    for (int attempt = 0; attempt <= LEASE_WAITS; attempt++) {
        sl_proj_result_t pr;
        if (core->coh)
            g->ticket = sl_coh_ticket(core->coh);
        sl_await_proj_get(core->cache, g->id, g->idlen, SL_ENTRY_PART, &pr);
        if (pr.r.status != SL_CACHE_OK) {
            may_fill = 0;
            break;
        }
        if (*slot < 0 && reads_store(&pr.r, probed)) {
            if (!waited && flight_find(core, g->id, g->idlen) >= 0) {
                waited = 1;
                free(pr.payload);
                for (int t = 0;
                     t < FLIGHT_WAIT_MS / FLIGHT_POLL_MS && flight_find(core, g->id, g->idlen) >= 0; t++)
                    sl_await_sleep(core->loop, FLIGHT_POLL_MS);
                sl_proj_kind_t kind;
                uint64_t version, tag;
                if (core->coh && sl_coh_lookup(core->coh, g->id, g->idlen, &kind, &version, &tag) &&
                    kind == SL_PROJ_TOMB) {
                    core->stats.public_memory_hits++;
                    reply_not_found(g->call); /* the other read found no public session */
                    free(g);
                    return;
                }
                continue; /* read Redis again */
            }
            *slot = flight_enter(core, g->id, g->idlen);
        }
        if (pr.r.kind == SL_PROJ_PUBLIC) {
            int rc = answered ? 1 : reply_stored(g, &pr.r);
            free(pr.payload);
            if (rc == 1) {
                if (!answered) {
                    core->stats.public_cache_hits++;
                    learn(g, &pr.r);
                }
                free(g);
                return;
            }
            if (rc < 0) {
                may_fill = 0; /* Redis failed us midway: MariaDB answers, nothing is filled */
                break;
            }
            /* A blob it names is gone (evicted, expired): the entry goes, exactly that one, and the
             * next look finds the key absent and rebuilds it like any miss. */
            core->stats.recipe_drops++;
            sl_proj_reply_t dr;
            sl_await_proj_drop(core->cache, g->id, g->idlen, pr.r.version, pr.r.tag, &dr);
            if (dr.status != SL_CACHE_OK) {
                may_fill = 0;
                break;
            }
            continue;
        }
        free(pr.payload);
        if (pr.r.kind == SL_PROJ_TOMB) {
            /* Asked of MariaDB like an id never shared, so that the two cannot be told apart. */
            if (!answered && read_store(g, &p, 0) == 0) {
                reply_projection(g->call, &p, g->rep);
                if (!p.found && core->coh)
                    sl_coh_learn(core->coh, g->ticket, g->id, g->idlen, SL_PROJ_TOMB, 0, 0);
                sl_projection_free(&p);
            }
            free(g);
            return;
        }
        if (pr.r.kind == SL_PROJ_MARK) {
            may_fill = 0;
            break;
        }
        if (pr.r.kind == SL_PROJ_ABSENT) {
            if (!probed) {
                /* Before anything is written to Redis: is there a public session at all? An id that
                 * was never shared costs no Redis key (a flood of random ids cannot evict real
                 * projections); the node remembers it, bounded, until an owner change of that id. */
                probed = 1;
                if (read_store(g, &p, 0) != 0) {
                    free(g);
                    return;
                }
                reply_projection(g->call, &p, g->rep);
                answered = 1;
                if (!p.found) {
                    if (core->coh)
                        sl_coh_learn(core->coh, g->ticket, g->id, g->idlen, SL_PROJ_TOMB, 0, 0);
                    sl_projection_free(&p);
                    free(g);
                    return;
                }
                sl_projection_free(&p);
            }
            sl_proj_reply_t lr;
            token = sl_random_u64() | 1;
            sl_await_proj_lease(core->cache, g->id, g->idlen, token, LEASE_TTL_MS, &lr);
            if (lr.status != SL_CACHE_OK) {
                may_fill = 0;
                break;
            }
            if (lr.stored)
                break; /* ours: rebuild */
            continue;  /* someone else took it first: look again */
        }
        /* LEASE of another reader */
        if (attempt == LEASE_WAITS) {
            may_fill = 0;
            break;
        }
        sl_await_sleep(core->loop, LEASE_WAIT_MS);
    }
    if (answered && !(may_fill && token != 0)) {
        free(g);
        return;
    }
    /* Read after the lease was taken: an owner's MARK or publish since then voids the lease, so
     * this fill can never put back what an owner removed. */
    if (read_store(g, &p, answered) != 0) {
        free(g);
        return;
    }
    if (!answered)
        reply_projection(g->call, &p, g->rep);
    if (may_fill && token != 0) {
        /* p.version is 0 for a session that is not visible; a tombstone of version 0 is refused
         * by any later owner write, which always carries a greater version. */
        if (core->hooks.fill_delay_ms)
            sl_await_sleep(core->loop, core->hooks.fill_delay_ms); /* the stale write-back test */
        sl_proj_reply_t fr = {.status = SL_CACHE_E_DOWN};
        sl_proj_content_t ct;
        char meta[SL_PROJ_META_MAX];
        if (p.found)
            sl_projection_content(&p, &ct, meta);
        /* the blobs the recipe names first: an entry whose blobs Redis did not take is not written */
        if (!p.found || sl_recipe_store(core, &p) == 0)
            sl_await_proj_fill(core->cache, g->id, g->idlen, token, p.found ? SL_PROJ_PUBLIC : SL_PROJ_TOMB,
                               p.version, p.tag, p.found ? &ct : NULL, &fr);
        if (fr.status == SL_CACHE_OK && fr.stored)
            core->stats.public_fills++;
        else if (fr.status == SL_CACHE_OK)
            core->stats.public_fills_refused++;
    }
    sl_projection_free(&p);
    free(g);
}

static void slow_path(void *arg)
{
    int slot = -1;
    slow_path_run(arg, &slot); /* frees arg */
    flight_leave(slot);
}

/* Everything that is not answered from the node's memory goes to a task: it reads the entry, and a
 * PUBLIC entry is a recipe, assembled there from the pieces the node holds or reads from Redis. */
static void go_slow(get_share_t *g)
{
    if (sl_task_spawn(slow_path, g) != 0) {
        sl_rpc_fail(g->call, SL_RPC_RESOURCE_EXHAUSTED, "server overloaded");
        free(g);
    }
}

/* The caller (a gateway) already holds version have_version with content tag have_tag: when Redis
 * still holds PUBLIC of exactly that version and content, answer {"found":true,"unchanged":true,
 * "version":V} instead of the payload. The tag makes it impossible to confirm bytes the caller
 * never got (a version number reused after a database restore names other content).
 * Redis is asked at every request, as on the full path: what is served is never older than what
 * the full path would serve. */
static void reply_unchanged(get_share_t *g)
{
    char buf[SL_RPC_SHARE_SMALL_MAX];
    sl_rpc_share_t s = {.found = 1, .unchanged = 1, .version = g->have_version};
    size_t n = sl_rpc_share_encode(buf, sizeof(buf), &s);
    sl_rpc_reply_raw(g->call, buf, n);
}

static void on_head(const sl_proj_reply_t *r, void *data)
{
    get_share_t *g = data;
    sl_core_t *core = g->core;
    learn(g, r);
    if (r->status == SL_CACHE_OK && r->kind == SL_PROJ_PUBLIC && r->version == g->have_version &&
        r->tag == g->have_tag) {
        core->stats.public_cache_hits++;
        core->stats.public_unchanged++;
        reply_unchanged(g);
        free(g);
        return;
    }
    /* another version or content, a tombstone, a mark, a lease, absent, or Redis trouble: the full
     * path decides */
    go_slow(g);
}

static void get_share(sl_rpc_call_t *call, void *data)
{
    sl_core_t *core = data;
    const char *id;
    size_t idlen;
    uint64_t have_version, have_tag;
    sl_rpc_rep_t rep;
    core->stats.public_requests++;
    if (sl_rpc_share_request_decode(sl_rpc_request(call), &id, &idlen, &rep, &have_version, &have_tag) != 0) {
        /* Not a possible id: the same answer as an unknown one. */
        reply_not_found(call);
        return;
    }
    get_share_t *g = malloc(sizeof(*g));
    if (g == NULL) {
        sl_rpc_fail(call, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    g->core = core;
    g->call = call;
    g->ticket = (sl_coh_ticket_t){0, 0};
    g->idlen = idlen;
    memcpy(g->id, id, idlen);
    g->id[idlen] = '\0';
    g->rep = rep;
    g->have_version = have_version;
    g->have_tag = have_tag;
    if (core->coh) {
        /* The node's memory: exact as long as the node is coherent (cache/cache.h, "node memory"). */
        sl_proj_kind_t kind;
        uint64_t version, tag;
        if (sl_coh_lookup(core->coh, g->id, idlen, &kind, &version, &tag)) {
            if (kind == SL_PROJ_TOMB) {
                core->stats.public_memory_hits++;
                core->stats.public_cache_hits++;
                reply_not_found(call);
                free(g);
                return;
            }
            if (g->have_version && version == g->have_version && tag == g->have_tag) {
                core->stats.public_memory_hits++;
                core->stats.public_cache_hits++;
                core->stats.public_unchanged++;
                reply_unchanged(g);
                free(g);
                return;
            }
            /* a version the caller does not hold: fetch it */
            go_slow(g);
            return;
        }
        g->ticket = sl_coh_ticket(core->coh);
    }
    if (g->have_version)
        sl_cache_proj_head(core->cache, g->id, idlen, on_head, g);
    else
        go_slow(g);
}

/* GetShare's confirmer (rpc.h): the node memory's half of get_share, for a caller that holds a
 * copy. It says 1 exactly where get_share would answer "unchanged" from the node memory; everything
 * else (not known to the node, another version, a tombstone, the node not coherent) is the call's. */
static int confirm_share(void *data, const char *id, size_t idlen, uint64_t have_version, uint64_t have_tag)
{
    sl_core_t *core = data;
    sl_proj_kind_t kind;
    uint64_t version, tag;
    if (core->coh == NULL || !sl_coh_lookup(core->coh, id, idlen, &kind, &version, &tag) ||
        kind != SL_PROJ_PUBLIC || version != have_version || tag != have_tag)
        return 0;
    core->stats.public_requests++;
    core->stats.public_memory_hits++;
    core->stats.public_cache_hits++;
    core->stats.public_unchanged++;
    return 1;
}

int sl_public_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    sl_rpc_share_t nf = {.found = 0};
    not_found_len = sl_rpc_share_encode(not_found, sizeof(not_found), &nf);
    if (not_found_len == 0 || sl_rpc_register(srv, sl_rpc_method_name(SL_M_GET_SHARE), get_share, core) != 0)
        return -1;
    sl_rpc_set_share_confirm(srv, confirm_share, core);
    return 0;
}
