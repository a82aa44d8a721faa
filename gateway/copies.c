/*
 * The gateway's copies of projections.
 *
 * A public GET used to move the whole projection (JSON, HTML, Markdown and their gzip) from Redis
 * through the core on every request. The gateway keeps the last projection it served for each
 * session, decoded once (rpc.h: the GetShare answer), and sends the core its version and content
 * tag ("have_version", "have_tag"); the core answers "unchanged" when Redis (or the node's memory)
 * holds exactly that version with that content. So every request is still confirmed — a revoke or hide that returned is seen by the
 * next request on every node — but only a few bytes cross. Bounded by bytes, LRU.
 *
 * Answers are sent straight from a copy (no copy into h2o's request pool): a copy being sent is
 * reference-counted and outlives its replacement until the last request using it is disposed.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/gateway.h"

#define BUCKETS 4096

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

struct sl_copy {
    struct sl_copy *chain;
    struct sl_copy *prev, *next; /* LRU: head = most recent */
    size_t idlen;
    char id[65];
    char *body; /* the GetShare answer as the core sent it */
    size_t len;
    sl_rpc_share_t share; /* decoded from body (points into it) */
    uint64_t tag;         /* sl_rpc_etag_tag of its etag */
    struct {
        char tag[SL_REP_TAG_MAX]; /* quoted: "<etag>-<suffix>" */
        size_t taglen;
    } rep[SL_REP_COUNT]; /* resolved once, when stored */
    unsigned refs;       /* answers still being sent straight from body */
    int detached;        /* removed from the copies: freed when refs drops to 0 */
};

typedef struct sl_copies {
    sl_copy_t *buckets[BUCKETS];
    sl_copy_t *head, *tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses;
} sl_copies_t;

int sl_copies_open(sl_copies_t **out, size_t max_bytes)
{
    sl_copies_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->max_bytes = max_bytes;
    *out = c;
    return 0;
}

static size_t bucket(const char *id, size_t n)
{
    size_t h = 5381;
    for (size_t i = 0; i < n; i++)
        h = h * 33 + (unsigned char)id[i];
    return h % BUCKETS;
}

sl_copy_t *sl_copies_find(sl_copies_t *c, const char *id, size_t n)
{
    for (sl_copy_t *e = c->buckets[bucket(id, n)]; e; e = e->chain)
        if (e->idlen == n && memcmp(e->id, id, n) == 0)
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

static void lru_unlink(sl_copies_t *c, sl_copy_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(sl_copies_t *c, sl_copy_t *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

void sl_copies_touch(sl_copies_t *c, sl_copy_t *e)
{
    lru_unlink(c, e);
    lru_front(c, e);
}

static void copy_free(sl_copy_t *e)
{
    free(e->body);
    free(e);
}

static void remove_copy(sl_copies_t *c, sl_copy_t *e)
{
    sl_copy_t **pp = &c->buckets[bucket(e->id, e->idlen)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    lru_unlink(c, e);
    c->bytes -= e->len;
    c->entries--;
    if (e->refs > 0) {
        e->detached = 1; /* still being sent: the last answer frees it */
        return;
    }
    copy_free(e);
}

sl_copy_t *sl_copies_put(sl_copies_t *c, const char *id, size_t n, const void *body, size_t len)
{
    sl_copy_t *old = sl_copies_find(c, id, n);
    if (old)
        remove_copy(c, old);
    if (len > c->max_bytes / 4 || n > 64)
        return NULL;
    sl_copy_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->body = malloc(len)) == NULL) {
        free(e);
        return NULL;
    }
    memcpy(e->body, body, len);
    e->len = len;
    /* Only a complete projection is kept: not-found and unchanged answers are never copies. */
    if (sl_rpc_share_decode(e->body, len, &e->share) != 0 || !e->share.found || e->share.unchanged) {
        copy_free(e);
        return NULL;
    }
    for (int r = 0; r < SL_REP_COUNT; r++)
        e->rep[r].taglen = sl_rep_tag(&e->share, r, e->rep[r].tag);
    e->tag = sl_rpc_etag_tag(e->share.etag.ptr, e->share.etag.len);
    memcpy(e->id, id, n);
    e->idlen = n;
    size_t b = bucket(id, n);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    lru_front(c, e);
    c->bytes += len;
    c->entries++;
    while (c->bytes > c->max_bytes && c->tail && c->tail != e)
        remove_copy(c, c->tail);
    return e;
}

void sl_copy_rep(const sl_copy_t *e, sl_rpc_rep_t rep, const char **body, size_t *len, const char **tag,
                 size_t *taglen)
{
    *body = e->share.rep[rep].ptr;
    *len = e->share.rep[rep].len;
    *tag = e->rep[rep].tag;
    *taglen = e->rep[rep].taglen;
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
    zsend_t *z = p;
    sl_copy_t *e = z->e;
    assert(e->refs > 0); /* one reference per answer being sent */
    if (--e->refs == 0 && e->detached)
        copy_free(e);
}

void sl_copy_send(sl_copy_t *e, h2o_req_t *req, sl_rpc_rep_t rep)
{
    zsend_t *z = h2o_mem_alloc_shared(&req->pool, sizeof(*z), zsend_dispose);
    z->super.proceed = zsend_proceed;
    z->super.stop = zsend_stop;
    z->e = e;
    e->refs++;
    req->res.content_length = e->share.rep[rep].len;
    h2o_start_response(req, &z->super);
    h2o_iovec_t buf = h2o_iovec_init(e->share.rep[rep].ptr, e->share.rep[rep].len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void sl_copies_count(sl_copies_t *c, int hit)
{
    if (hit)
        c->hits++;
    else
        c->misses++;
}

void sl_copies_stats(const sl_copies_t *c, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    *hits = c->hits;
    *misses = c->misses;
    *bytes = c->bytes;
}

void sl_copies_close(sl_copies_t *c)
{
    while (c->head)
        remove_copy(c, c->head);
    free(c);
}
