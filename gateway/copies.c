/*
 * The node's memory of what it served: the gateway's copies, one per (session, representation).
 *
 * The gateway keeps the representations it served (JSON, HTML, Markdown, plain or gzip: each one on
 * its own, never the five others) and sends the core the version and content tag of the copy it
 * holds ("have_version", "have_tag", rpc.h); the core answers "unchanged" when its node memory or
 * Redis holds exactly that version with that content, and the copy is served. Every request is
 * still confirmed (docs/invalidation.md): a revoke or hide that returned is seen by the next request
 * on every node, whatever the copies hold.
 *
 * Bounded by bytes (SHARELINE_NODE_MEMORY_BYTES, README), with S3-FIFO admission and eviction
 * (Yang et al., SOSP 2023), which resists scans and one-hit wonders where an LRU does not:
 *   - a new copy enters the small queue (a tenth of the budget); a copy whose key was evicted from
 *     it recently (the ghost table) enters the main queue directly;
 *   - a hit raises the copy's frequency (at most 3); nothing moves on a hit (no list surgery on the
 *     hot path);
 *   - the small queue evicts from its tail: a copy hit since it entered moves to the main queue,
 *     any other leaves (its key goes to the ghost table);
 *   - the main queue evicts from its tail: a copy with frequency > 0 is reinserted at the head with
 *     one less, any other leaves.
 * A crawler reading every session once only churns the small queue; the hot set stays in main.
 *
 * Answers are sent straight from a copy (no copy into h2o's request pool): a copy being sent is
 * reference-counted and outlives its replacement or eviction until the last request using it is
 * disposed.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/gateway.h"

#define GHOST_SLOTS (1u << 16) /* direct-mapped fingerprints of keys evicted from the small queue */
#define MAX_FREQ    3

/* The ETag suffix of each representation: "<etag>-<suffix>" (the variant a client cached). */
static const char *const rep_suffix[SL_REP_COUNT] = {
    [SL_REP_JSON] = "j",     [SL_REP_JSON_GZ] = "jz", [SL_REP_HTML] = "h",
    [SL_REP_HTML_GZ] = "hz", [SL_REP_MD] = "m",       [SL_REP_MD_GZ] = "mz",
};

size_t sl_rep_tag(const sl_rpc_share_t *s, sl_rpc_rep_t rep, char out[SL_REP_TAG_MAX])
{
    size_t el = s->etag.len > 80 ? 80 : s->etag.len;
    size_t sl = strlen(rep_suffix[rep]);
    char *t = out;
    *t++ = '"';
    memcpy(t, s->etag.ptr, el);
    t += el;
    *t++ = '-';
    memcpy(t, rep_suffix[rep], sl);
    t += sl;
    *t++ = '"';
    return (size_t)(t - out);
}

enum { Q_SMALL, Q_MAIN };

struct sl_copy {
    struct sl_copy *chain;
    struct sl_copy *prev, *next; /* in its queue: head = newest */
    uint64_t hash;               /* of (id, rep) */
    size_t idlen;
    char id[65];
    sl_rpc_rep_t rep;
    int queue;
    unsigned freq;
    char *body;           /* the GetShare answer as the core sent it */
    size_t len;           /* its length */
    size_t cost;          /* bytes charged to the budget: len + this struct */
    sl_rpc_share_t share; /* decoded from body (points into it) */
    uint64_t tag;         /* sl_rpc_etag_tag of its etag */
    char etag[SL_REP_TAG_MAX];
    size_t etaglen;
    unsigned refs; /* answers still being sent straight from body */
    int detached;  /* no longer in the copies: freed when refs drops to 0 */
};

typedef struct queue {
    sl_copy_t *head, *tail;
    size_t bytes;
} queue_t;

typedef struct sl_copies {
    sl_copy_t **buckets;
    size_t nbuckets, entries;
    queue_t q[2];
    uint64_t *ghost;
    size_t max_bytes, small_max;
    uint64_t hits, misses, admitted_main, evicted;
} sl_copies_t;

int sl_copies_open(sl_copies_t **out, size_t max_bytes)
{
    sl_copies_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->nbuckets = 4096;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->ghost = calloc(GHOST_SLOTS, sizeof(*c->ghost));
    if (c->buckets == NULL || c->ghost == NULL) {
        free(c->buckets);
        free(c->ghost);
        free(c);
        return -1;
    }
    c->max_bytes = max_bytes;
    c->small_max = max_bytes / 10;
    *out = c;
    return 0;
}

static uint64_t key_hash(const char *id, size_t n, sl_rpc_rep_t rep)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ull;
    }
    h ^= (uint64_t)rep + 1;
    h *= 1099511628211ull;
    return h ? h : 1;
}

sl_copy_t *sl_copies_find(sl_copies_t *c, const char *id, size_t n, sl_rpc_rep_t rep)
{
    uint64_t h = key_hash(id, n, rep);
    for (sl_copy_t *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->chain)
        if (e->hash == h && e->rep == rep && e->idlen == n && memcmp(e->id, id, n) == 0)
            return e;
    return NULL;
}

uint64_t sl_copy_version(const sl_copy_t *e)
{
    return e->share.version;
}

uint64_t sl_copy_tag(const sl_copy_t *e)
{
    return e->tag;
}

void sl_copies_touch(sl_copies_t *c, sl_copy_t *e)
{
    (void)c;
    if (e->freq < MAX_FREQ)
        e->freq++;
}

static void q_unlink(sl_copies_t *c, sl_copy_t *e)
{
    queue_t *q = &c->q[e->queue];
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    e->prev = e->next = NULL;
    q->bytes -= e->cost;
}

static void q_push(sl_copies_t *c, sl_copy_t *e, int which)
{
    queue_t *q = &c->q[which];
    e->queue = which;
    e->prev = NULL;
    e->next = q->head;
    if (q->head)
        q->head->prev = e;
    q->head = e;
    if (q->tail == NULL)
        q->tail = e;
    q->bytes += e->cost;
}

static void copy_free(sl_copy_t *e)
{
    free(e->body);
    free(e);
}

/* Takes e out of the table and its queue; freed now, or by its last answer. */
static void remove_copy(sl_copies_t *c, sl_copy_t *e)
{
    sl_copy_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    q_unlink(c, e);
    c->entries--;
    if (e->refs > 0) {
        e->detached = 1; /* still being sent: the last answer frees it */
        return;
    }
    copy_free(e);
}

/* One eviction (S3-FIFO): 1 when a copy left, 0 when nothing but `keep` (the copy being stored)
 * could go. */
static int evict_one(sl_copies_t *c, const sl_copy_t *keep)
{
    for (;;) {
        sl_copy_t *st = c->q[Q_SMALL].tail, *mt = c->q[Q_MAIN].tail;
        int small_ok = st != NULL && st != keep, main_ok = mt != NULL && mt != keep;
        if (!small_ok && !main_ok)
            return 0;
        int from_small = small_ok && (c->q[Q_SMALL].bytes > c->small_max || !main_ok);
        sl_copy_t *e = from_small ? st : mt;
        q_unlink(c, e);
        if (from_small) {
            if (e->freq > 0) {
                e->freq = 0;
                q_push(c, e, Q_MAIN); /* hit while on probation: admitted */
                c->admitted_main++;
                continue;
            }
            c->ghost[e->hash & (GHOST_SLOTS - 1)] = e->hash;
        } else if (e->freq > 0) {
            e->freq--;
            q_push(c, e, Q_MAIN); /* still used: another round */
            continue;
        }
        q_push(c, e, e->queue); /* remove_copy unlinks it from there */
        c->evicted++;
        remove_copy(c, e);
        return 1;
    }
}

static void grow(sl_copies_t *c)
{
    size_t n = c->nbuckets * 2;
    sl_copy_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        sl_copy_t *e = c->buckets[i];
        while (e) {
            sl_copy_t *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

sl_copy_t *sl_copies_put(sl_copies_t *c, const char *id, size_t n, sl_rpc_rep_t rep, const void *body,
                         size_t len)
{
    sl_copy_t *old = sl_copies_find(c, id, n, rep);
    int queue = Q_SMALL;
    unsigned freq = 0;
    if (old) {
        queue = old->queue; /* a new version of a copy keeps its standing */
        freq = old->freq;
        remove_copy(c, old);
    }
    if (len + sizeof(sl_copy_t) > c->max_bytes / 4 || n > 64)
        return NULL;
    sl_copy_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->body = malloc(len ? len : 1)) == NULL) {
        free(e);
        return NULL;
    }
    memcpy(e->body, body, len);
    e->len = len;
    /* Only a "found" answer of this very representation is kept: not-found and unchanged answers
     * are never copies. */
    if (sl_rpc_share_decode(e->body, len, &e->share) != 0 || !e->share.found || e->share.unchanged ||
        e->share.which != rep) {
        copy_free(e);
        return NULL;
    }
    e->etaglen = sl_rep_tag(&e->share, rep, e->etag);
    e->tag = sl_rpc_etag_tag(e->share.etag.ptr, e->share.etag.len);
    memcpy(e->id, id, n);
    e->idlen = n;
    e->rep = rep;
    e->hash = key_hash(id, n, rep);
    e->cost = len + sizeof(*e);
    e->freq = freq;
    if (!old && c->ghost[e->hash & (GHOST_SLOTS - 1)] == e->hash)
        queue = Q_MAIN; /* seen again soon after it left: not a one-hit wonder */
    if (c->entries >= c->nbuckets)
        grow(c);
    sl_copy_t **b = &c->buckets[e->hash & (c->nbuckets - 1)];
    e->chain = *b;
    *b = e;
    c->entries++;
    q_push(c, e, queue);
    while (c->q[Q_SMALL].bytes + c->q[Q_MAIN].bytes > c->max_bytes && evict_one(c, e))
        ;
    return e;
}

void sl_copies_drop(sl_copies_t *c, sl_copy_t *e)
{
    remove_copy(c, e);
}

void sl_copies_drop_id(sl_copies_t *c, const char *id, size_t n)
{
    for (int r = 0; r < SL_REP_COUNT; r++) {
        sl_copy_t *e = sl_copies_find(c, id, n, (sl_rpc_rep_t)r);
        if (e)
            remove_copy(c, e);
    }
}

void sl_copy_rep(const sl_copy_t *e, const char **body, size_t *len, const char **tag, size_t *taglen)
{
    *body = e->share.rep[e->rep].ptr;
    *len = e->share.rep[e->rep].len;
    *tag = e->etag;
    *taglen = e->etaglen;
}

void sl_copy_body(const sl_copy_t *e, const char **body, size_t *len)
{
    *body = e->share.rep[e->rep].ptr;
    *len = e->share.rep[e->rep].len;
}

size_t sl_copy_json_tag(const sl_copy_t *e, char out[SL_REP_TAG_MAX])
{
    return sl_rep_tag(&e->share, SL_REP_JSON, out);
}

void sl_copy_ref(sl_copy_t *e)
{
    e->refs++;
}

void sl_copy_unref(sl_copy_t *e)
{
    assert(e->refs > 0);
    if (--e->refs == 0 && e->detached)
        copy_free(e);
}

/* ---- answers sent straight from a copy ---- */

typedef struct zsend {
    h2o_generator_t super;
    sl_copy_t *e;
} zsend_t;

static void zsend_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g;
    (void)req; /* everything was sent with the final h2o_send() */
}

static void zsend_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g;
    (void)req;
}

/* Runs when the request's pool is cleared: h2o no longer needs the bytes. */
static void zsend_dispose(void *p)
{
    sl_copy_unref(((zsend_t *)p)->e); /* one reference per answer being sent */
}

static zsend_t *hold(sl_copy_t *e, h2o_req_t *req)
{
    zsend_t *z = h2o_mem_alloc_shared(&req->pool, sizeof(*z), zsend_dispose);
    z->super.proceed = zsend_proceed;
    z->super.stop = zsend_stop;
    z->e = e;
    e->refs++;
    return z;
}

void sl_copy_hold(sl_copy_t *e, h2o_req_t *req)
{
    (void)hold(e, req);
}

void sl_copy_send(sl_copy_t *e, h2o_req_t *req)
{
    zsend_t *z = hold(e, req);
    req->res.content_length = e->share.rep[e->rep].len;
    h2o_start_response(req, &z->super);
    h2o_iovec_t buf = h2o_iovec_init(e->share.rep[e->rep].ptr, e->share.rep[e->rep].len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void sl_copies_count(sl_copies_t *c, int hit)
{
    if (hit)
        c->hits++;
    else
        c->misses++;
}

void sl_copies_stats(const sl_copies_t *c, sl_copies_stats_t *out)
{
    out->hits = c->hits;
    out->misses = c->misses;
    out->bytes = c->q[Q_SMALL].bytes + c->q[Q_MAIN].bytes;
    out->max_bytes = c->max_bytes;
    out->entries = c->entries;
    out->main_bytes = c->q[Q_MAIN].bytes;
    out->admitted_main = c->admitted_main;
    out->evicted = c->evicted;
}

void sl_copies_close(sl_copies_t *c)
{
    for (int q = 0; q < 2; q++)
        while (c->q[q].head)
            remove_copy(c, c->q[q].head);
    free(c->buckets);
    free(c->ghost);
    free(c);
}
