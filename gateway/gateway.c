/*
 * The gateway. One h2o context on the caller's loop; one handler at "/" that routes by path.
 *
 * Deferred answers: an rpc answer may arrive after the client went away. h2o 2.2 calls no stop
 * callback before h2o_start_response, so each pending request keeps its state outside the request
 * pool and registers a dispose hook in the pool that clears its pointer to the request; the answer
 * is dropped when that pointer is NULL (the pattern of h2o's own lib/core/proxy.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <h2o.h>
#include <jansson.h>
#include <zlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gateway/gateway.h"
#include "gateway/route.h"

#define OWNER_SERVICE "shareline.v1.Sessions/"
#define PUBLIC_GET_SHARE "shareline.v1.Public/GetShare"

/* In the order of sl_route_kind_t (gateway/route.h): the counters are indexed by either. */
enum route { R_SHARE_JSON, R_SHARE_HTML, R_RPC, R_COMPAT, R_HEALTH, R_READY, R_METRICS, R_OTHER, R_COUNT };
_Static_assert((int)R_SHARE_JSON == (int)SL_ROUTE_SHARE_JSON && (int)R_COMPAT == (int)SL_ROUTE_COMPAT &&
                   (int)R_OTHER == (int)SL_ROUTE_OTHER,
               "enum route follows sl_route_kind_t");
static const char *const route_names[R_COUNT] = {"share_json", "share_html", "rpc",     "specstory",
                                                 "healthz",    "readyz",     "metrics", "other"};

struct sl_gateway {
    uv_loop_t *loop;
    sl_rpc_server_t *rpc;
    sl_gateway_config_t cfg;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    SSL_CTX *ssl;
    uint64_t requests[R_COUNT];
    uint64_t status_class[6]; /* index: status / 100 */
    uint64_t aborted;         /* answers dropped because the client had gone */
    uint64_t conns_open, conns_accepted, conns_refused; /* client connections */
    struct pcache *pcache;    /* copies of projections, see below */
};

typedef struct handler {
    h2o_handler_t super;
    sl_gateway_t *gw;
} handler_t;

/* ---- answering ---- */

static void count_status(sl_gateway_t *gw, int status)
{
    int c = status / 100;
    if (c >= 1 && c <= 5)
        gw->status_class[c]++;
}

static void add_header_str(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, strlen(value));
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, len);
}

static void send_body(sl_gateway_t *gw, h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    count_status(gw, status);
    req->res.status = status;
    req->res.reason = "";
    if (ctype)
        add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    /* Explicit, so that HEAD answers carry the length of what GET would send. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

static void send_json_error(sl_gateway_t *gw, h2o_req_t *req, sl_rpc_code_t code, const char *msg)
{
    char body[600];
    /* msg is ours (no quotes or control characters), so it can be embedded as is. */
    int n = snprintf(body, sizeof(body), "{\"code\":\"%s\",\"message\":\"%s\"}", sl_rpc_code_name(code), msg);
    send_body(gw, req, sl_rpc_code_http_status(code), "application/json", body, (size_t)n);
}

/* ---- header helpers ---- */

static h2o_iovec_t header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* 1 when Accept-Encoding allows gzip (a "gzip" token without q=0). */
static int accepts_gzip(h2o_req_t *req)
{
    h2o_iovec_t v = header(req, H2O_TOKEN_ACCEPT_ENCODING);
    const char *p = v.base, *end = v.base + v.len;
    while (p && p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ')
            p++;
        size_t tlen = (size_t)(p - tok);
        int q0 = 0;
        const char *params = p;
        while (p < end && *p != ',')
            p++;
        for (const char *s = params; s + 2 < p + 1 && s < p; s++)
            if ((s[0] == 'q' || s[0] == 'Q') && s + 2 < end && s[1] == '=' && s[2] == '0') {
                const char *t = s + 3;
                q0 = 1;
                if (t < p && *t == '.')
                    for (t++; t < p && *t >= '0' && *t <= '9'; t++)
                        if (*t != '0')
                            q0 = 0;
            }
        if (((tlen == 4 && strncasecmp(tok, "gzip", 4) == 0) || (tlen == 1 && *tok == '*')) && !q0)
            return 1;
    }
    return 0;
}

/* If-None-Match against our strong etag (quoted), with the weak comparison RFC 9110 asks for. */
static int etag_matches(h2o_req_t *req, const char *etag, size_t len)
{
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, i)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        const char *p = v.base, *end = v.base + v.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ','))
                p++;
            if (p < end && *p == '*')
                return 1;
            if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
                p += 2;
            const char *tok = p;
            while (p < end && *p != ',')
                p++;
            const char *tend = p;
            while (tend > tok && tend[-1] == ' ')
                tend--;
            if ((size_t)(tend - tok) == len && memcmp(tok, etag, len) == 0)
                return 1;
        }
    }
    return 0;
}

/* ---- the gateway's copies of projections ----
 *
 * A public GET used to move the whole projection (JSON, HTML, Markdown and their gzip) from Redis
 * through the core on every request. The gateway now keeps the last projection it served for each
 * session, unpacked once, and sends the core its version ("have_version"); the core asks Redis for
 * the entry's head only (GETRANGE 0 31) and answers "unchanged" when Redis holds PUBLIC of exactly
 * that version. So every request still consults Redis — a revoke or hide that returned is seen by
 * the next request on every node — but only ~30 bytes cross the wire. Bounded by bytes, LRU. */

#define PCACHE_BUCKETS 4096

/* One representation of a projection, ready to send: the body and its strong ETag. */
enum { REP_JSON, REP_JSON_GZ, REP_MD, REP_MD_GZ, REP_HTML, REP_HTML_GZ, REP_COUNT };
typedef struct rep {
    const char *body;
    size_t len;
    char tag[100]; /* quoted: "<version>-<hash>-<j|m|h>[z]" */
    size_t taglen;
} rep_t;

static const char *const rep_keys[REP_COUNT] = {"json", "json_gz", "md", "md_gz", "html", "html_gz"};
static const char *const rep_suffix[REP_COUNT] = {"j", "jz", "m", "mz", "h", "hz"};

static int rep_index(enum route route, int gzip, int markdown)
{
    if (route != R_SHARE_JSON)
        return gzip ? REP_HTML_GZ : REP_HTML;
    if (markdown)
        return gzip ? REP_MD_GZ : REP_MD;
    return gzip ? REP_JSON_GZ : REP_JSON;
}

/* Fills *out from a found projection; -1 when the representation or the etag is missing. */
static int rep_resolve(const msgpack_object *obj, int idx, rep_t *out)
{
    const msgpack_object *b = sl_rpc_field(obj, rep_keys[idx]);
    const msgpack_object *etag = sl_rpc_field(obj, "etag");
    if (b == NULL || b->type != MSGPACK_OBJECT_BIN || etag == NULL || etag->type != MSGPACK_OBJECT_STR)
        return -1;
    size_t el = etag->via.str.size > 80 ? 80 : etag->via.str.size;
    size_t sl = strlen(rep_suffix[idx]);
    char *t = out->tag;
    *t++ = '"';
    memcpy(t, etag->via.str.ptr, el);
    t += el;
    *t++ = '-';
    memcpy(t, rep_suffix[idx], sl);
    t += sl;
    *t++ = '"';
    out->taglen = (size_t)(t - out->tag);
    out->body = b->via.bin.ptr;
    out->len = b->via.bin.size;
    return 0;
}

static int projection_found(const msgpack_object *obj)
{
    const msgpack_object *found = sl_rpc_field(obj, "found");
    return found != NULL && found->type == MSGPACK_OBJECT_BOOLEAN && found->via.boolean;
}

typedef struct pentry {
    struct pentry *chain;
    struct pentry *prev, *next; /* LRU: head = most recent */
    size_t idlen;
    char id[65];
    uint64_t version;
    char *body; /* the payload as the core sent it */
    size_t len;
    msgpack_zone zone;
    msgpack_object obj; /* unpacked from body (str/bin point into body) */
    int found;          /* obj says found:true and carries every representation */
    rep_t rep[REP_COUNT]; /* resolved once, when stored */
    unsigned refs;      /* answers still being sent straight from body */
    int detached;       /* removed from the cache: freed when refs drops to 0 */
} pentry_t;

typedef struct pcache {
    pentry_t *buckets[PCACHE_BUCKETS];
    pentry_t *head, *tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses;
} pcache_t;

static pcache_t *pcache_of(sl_gateway_t *gw)
{
    return gw->pcache;
}

static size_t phash(const char *id, size_t n)
{
    size_t h = 5381;
    for (size_t i = 0; i < n; i++)
        h = h * 33 + (unsigned char)id[i];
    return h % PCACHE_BUCKETS;
}

static pentry_t *pcache_find(pcache_t *pc, const char *id, size_t n)
{
    for (pentry_t *e = pc->buckets[phash(id, n)]; e; e = e->chain)
        if (e->idlen == n && memcmp(e->id, id, n) == 0)
            return e;
    return NULL;
}

static void lru_unlink(pcache_t *pc, pentry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        pc->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        pc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(pcache_t *pc, pentry_t *e)
{
    e->next = pc->head;
    e->prev = NULL;
    if (pc->head)
        pc->head->prev = e;
    pc->head = e;
    if (pc->tail == NULL)
        pc->tail = e;
}

static void pcache_remove(pcache_t *pc, pentry_t *e)
{
    pentry_t **pp = &pc->buckets[phash(e->id, e->idlen)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    lru_unlink(pc, e);
    pc->bytes -= e->len;
    pc->entries--;
    if (e->refs > 0) {
        e->detached = 1; /* still being sent: the last answer frees it */
        return;
    }
    msgpack_zone_destroy(&e->zone);
    free(e->body);
    free(e);
}

/* ---- answers sent straight from a cached entry (no copy into the request pool) ---- */

typedef struct zsend {
    h2o_generator_t super;
    pentry_t *e;
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
    pentry_t *e = z->e;
    if (--e->refs == 0 && e->detached) {
        msgpack_zone_destroy(&e->zone);
        free(e->body);
        free(e);
    }
}

/* Stores a copy of body as the current projection of id; returns it, or NULL (not cacheable). */
static pentry_t *pcache_put(pcache_t *pc, const char *id, size_t n, uint64_t version, const void *body, size_t len)
{
    pentry_t *old = pcache_find(pc, id, n);
    if (old)
        pcache_remove(pc, old);
    if (len > pc->max_bytes / 4 || n > 64)
        return NULL;
    pentry_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->body = malloc(len)) == NULL) {
        free(e);
        return NULL;
    }
    memcpy(e->body, body, len);
    e->len = len;
    msgpack_zone_init(&e->zone, 256);
    size_t off = 0;
    if (msgpack_unpack(e->body, len, &off, &e->zone, &e->obj) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_zone_destroy(&e->zone);
        free(e->body);
        free(e);
        return NULL;
    }
    e->found = projection_found(&e->obj);
    for (int i = 0; i < REP_COUNT && e->found; i++)
        if (rep_resolve(&e->obj, i, &e->rep[i]) != 0)
            e->found = 0; /* incomplete: served through the checking path, which answers an error */
    memcpy(e->id, id, n);
    e->idlen = n;
    e->version = version;
    size_t b = phash(id, n);
    e->chain = pc->buckets[b];
    pc->buckets[b] = e;
    lru_front(pc, e);
    pc->bytes += len;
    pc->entries++;
    while (pc->bytes > pc->max_bytes && pc->tail && pc->tail != e)
        pcache_remove(pc, pc->tail);
    return e;
}


static void pcache_free(pcache_t *pc)
{
    while (pc->head)
        pcache_remove(pc, pc->head);
    free(pc);
}

/* ---- pending requests ---- */

typedef struct pending {
    sl_gateway_t *gw;
    h2o_req_t *req;       /* NULL once the request was disposed (client gone) */
    struct pending **slot; /* lives in the request pool; cleared when we finish first */
    enum route route;
    int json;             /* rpc: answer in JSON */
    int gzip;             /* public: client accepts gzip */
    int markdown;         /* public JSON route: the client asked for text/markdown */
    uint64_t have_version; /* public: the version of our copy sent to the core (0: none) */
    size_t idlen;
    char id[65];
} pending_t;

static void on_req_dispose(void *p)
{
    pending_t **slot = p;
    if (*slot != NULL)
        (*slot)->req = NULL;
}

static pending_t *pending_new(sl_gateway_t *gw, h2o_req_t *req, enum route route)
{
    /* malloc + memset rather than calloc: glibc's calloc bypasses the thread cache, and this runs
     * once per public GET */
    pending_t *pd = malloc(sizeof(*pd));
    if (pd == NULL)
        return NULL;
    memset(pd, 0, sizeof(*pd));
    pd->gw = gw;
    pd->req = req;
    pd->route = route;
    pd->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*pd->slot), on_req_dispose);
    *pd->slot = pd;
    return pd;
}

/* Detaches from the request (if still there) and frees. Returns the request or NULL. */
static h2o_req_t *pending_finish(pending_t *pd)
{
    h2o_req_t *req = pd->req;
    if (req != NULL)
        *pd->slot = NULL;
    else
        pd->gw->aborted++;
    free(pd);
    return req;
}

/* ---- public share: /api/v1/share/{id} and /share/{id} ---- */

static void send_not_found_share(sl_gateway_t *gw, h2o_req_t *req, enum route route);

/* The viewer page runs no script and loads nothing from elsewhere; inline CSS only. */
static const char PAGE_CSP[] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static void common_share_headers(h2o_req_t *req, enum route route)
{
    /* A shared cache must revalidate every time: a revoked link must not outlive the revocation. */
    add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-cache"));
    add_header_str(req, "x-robots-tag", "noindex, nofollow");
    add_header_str(req, "x-content-type-options", "nosniff");
    add_header_str(req, "referrer-policy", "no-referrer");
    if (route == R_SHARE_JSON) {
        add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept, Accept-Encoding"));
    } else {
        add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept-Encoding"));
        add_header_str(req, "content-security-policy", PAGE_CSP);
    }
}

/* Accept: text/markdown (and not a preference for JSON) on /api/v1/share/{id}. */
static int wants_markdown(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i == -1)
        return 0;
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    return h2o_strstr(v->base, v->len, H2O_STRLIT("text/markdown")) != SIZE_MAX &&
           h2o_strstr(v->base, v->len, H2O_STRLIT("application/json")) == SIZE_MAX;
}

static void share_call(sl_gateway_t *gw, pending_t *pd);
static void serve_projection(sl_gateway_t *gw, h2o_req_t *req, enum route route, int gzip, int markdown,
                             const msgpack_object *obj, pentry_t *from);

/* The core's "unchanged" answer: {"found":true,"unchanged":true,"version":<uint64>} (core/public.c). */
static const char UNCHANGED_HEAD[] = "\x83\xa5" "found" "\xc3" "\xa9" "unchanged" "\xc3" "\xa7" "version" "\xcf";

static void on_share_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    enum route route = pd->route;
    int gzip = pd->gzip;
    int markdown = pd->markdown;
    if (pd->req == NULL) {
        pending_finish(pd);
        return;
    }
    pcache_t *pc = pcache_of(gw);
    if (code == SL_RPC_OK && len == sizeof(UNCHANGED_HEAD) - 1 + 8 &&
        memcmp(body, UNCHANGED_HEAD, sizeof(UNCHANGED_HEAD) - 1) == 0) {
        const unsigned char *v = (const unsigned char *)body + sizeof(UNCHANGED_HEAD) - 1;
        uint64_t version = 0;
        for (int i = 0; i < 8; i++)
            version = version << 8 | v[i];
        pentry_t *e = pcache_find(pc, pd->id, pd->idlen);
        if (e == NULL || e->version != version) {
            /* our copy went away meanwhile: ask again for the whole projection */
            pd->have_version = 0;
            share_call(gw, pd);
            return;
        }
        pc->hits++;
        lru_unlink(pc, e);
        lru_front(pc, e);
        h2o_req_t *req = pending_finish(pd);
        serve_projection(gw, req, route, gzip, markdown, &e->obj, e);
        return;
    }
    char id[65];
    size_t idlen = pd->idlen;
    memcpy(id, pd->id, idlen);
    h2o_req_t *req = pending_finish(pd);
    if (code != SL_RPC_OK) {
        send_json_error(gw, req, code == SL_RPC_UNAVAILABLE ? code : SL_RPC_INTERNAL,
                        code == SL_RPC_UNAVAILABLE ? "temporarily unavailable, retry later" : "internal error");
        return;
    }
    pc->misses++;
    pentry_t *e = pcache_put(pc, id, idlen, 0, body, len);
    if (e != NULL) {
        const msgpack_object *ver = sl_rpc_field(&e->obj, "version");
        if (e->found && ver && ver->type == MSGPACK_OBJECT_POSITIVE_INTEGER && ver->via.u64 > 0) {
            e->version = ver->via.u64;
            serve_projection(gw, req, route, gzip, markdown, &e->obj, e);
            return;
        }
        /* not found, or incomplete: answered from the copy's unpacked form (serve_projection copies
         * what it sends when not given the entry), which is then dropped */
        serve_projection(gw, req, route, gzip, markdown, &e->obj, NULL);
        pcache_remove(pc, e);
        return;
    }
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 512);
    if (msgpack_unpack(body, len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_zone_destroy(&zone);
        send_json_error(gw, req, SL_RPC_INTERNAL, "internal error");
        return;
    }
    serve_projection(gw, req, route, gzip, markdown, &obj, NULL);
    msgpack_zone_destroy(&zone);
}

static void serve_projection(sl_gateway_t *gw, h2o_req_t *req, enum route route, int gzip, int markdown,
                             const msgpack_object *objp, pentry_t *from)
{
    int idx = rep_index(route, gzip, markdown);
    rep_t local;
    const rep_t *rep;
    if (from != NULL && from->found) {
        rep = &from->rep[idx]; /* resolved when the copy was stored */
    } else {
        if (!projection_found(objp)) {
            send_not_found_share(gw, req, route);
            return;
        }
        if (rep_resolve(objp, idx, &local) != 0) {
            send_json_error(gw, req, SL_RPC_INTERNAL, "internal error");
            return;
        }
        rep = &local;
        from = NULL; /* an incomplete copy is never sent from */
    }
    /* Strong ETag per representation: "<version>-<hash>-<j|m|h>[z]". */
    common_share_headers(req, route);
    add_header(req, H2O_TOKEN_ETAG, h2o_strdup(&req->pool, rep->tag, rep->taglen).base, rep->taglen);
    if (etag_matches(req, rep->tag, rep->taglen)) {
        count_status(gw, 304);
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, NULL, 0);
        return;
    }
    if (gzip)
        add_header(req, H2O_TOKEN_CONTENT_ENCODING, H2O_STRLIT("gzip"));
    const char *ctype = route == R_SHARE_JSON
                            ? (markdown ? "text/markdown; charset=utf-8" : "application/json; charset=utf-8")
                            : "text/html; charset=utf-8";
    if (from == NULL || h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        /* HEAD: h2o_send_inline() knows to send the headers only */
        send_body(gw, req, 200, ctype, rep->body, rep->len);
        return;
    }
    /* From the cached entry itself: it stays alive (refs) until the request's pool is cleared. */
    zsend_t *z = h2o_mem_alloc_shared(&req->pool, sizeof(*z), zsend_dispose);
    z->super.proceed = zsend_proceed;
    z->super.stop = zsend_stop;
    z->e = from;
    from->refs++;
    count_status(gw, 200);
    req->res.status = 200;
    req->res.reason = "OK";
    add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    req->res.content_length = rep->len;
    h2o_start_response(req, &z->super);
    h2o_iovec_t buf = h2o_iovec_init(rep->body, rep->len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

extern const char sl_gateway_not_found_html[];

static void send_not_found_share(sl_gateway_t *gw, h2o_req_t *req, enum route route)
{
    /* Unknown, private, revoked and deleted: one answer, byte for byte. */
    common_share_headers(req, route);
    if (route == R_SHARE_JSON)
        send_body(gw, req, 404, "application/json; charset=utf-8",
                  H2O_STRLIT("{\"code\":\"not_found\",\"message\":\"share not found\"}"));
    else
        send_body(gw, req, 404, "text/html; charset=utf-8", sl_gateway_not_found_html,
                  strlen(sl_gateway_not_found_html));
}

const char sl_gateway_not_found_html[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<meta name=\"robots\" content=\"noindex\"><title>Not found · Shareline</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}</style></head><body><h1>This share link does not exist</h1>"
    "<p>The session may never have existed, or its owner made it private or deleted it.</p>"
    "</body></html>\n";

static void handle_share(sl_gateway_t *gw, h2o_req_t *req, enum route route, const char *id, size_t idlen)
{
    if (!sl_route_share_id_valid(id, idlen)) {
        send_not_found_share(gw, req, route);
        return;
    }
    pending_t *pd = pending_new(gw, req, route);
    if (pd == NULL) {
        send_json_error(gw, req, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pd->gzip = accepts_gzip(req);
    pd->markdown = route == R_SHARE_JSON && wants_markdown(req);
    memcpy(pd->id, id, idlen);
    pd->idlen = idlen;
    pentry_t *e = pcache_find(pcache_of(gw), id, idlen);
    pd->have_version = e ? e->version : 0;
    share_call(gw, pd);
}

/* {"session_id": id[, "have_version": V]} */
static void share_call(sl_gateway_t *gw, pending_t *pd)
{
    char buf[120];
    size_t n = 0;
    buf[n++] = (char)(pd->have_version ? 0x82 : 0x81);
    buf[n++] = (char)0xaa;
    memcpy(buf + n, "session_id", 10);
    n += 10;
    buf[n++] = (char)0xd9;
    buf[n++] = (char)pd->idlen;
    memcpy(buf + n, pd->id, pd->idlen);
    n += pd->idlen;
    if (pd->have_version) {
        buf[n++] = (char)0xac;
        memcpy(buf + n, "have_version", 12);
        n += 12;
        buf[n++] = (char)0xcf;
        for (int i = 7; i >= 0; i--)
            buf[n++] = (char)(pd->have_version >> (8 * i));
    }
    sl_rpc_call(gw->rpc, H2O_STRLIT(PUBLIC_GET_SHARE), NULL, 0, buf, n, on_share_reply, pd);
}

/* ---- owner rpc: POST /rpc/shareline.v1.Sessions/<Method> ---- */

static void on_rpc_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    int json = pd->json;
    h2o_req_t *req = pending_finish(pd);
    if (req == NULL)
        return;
    int status = sl_rpc_code_http_status(code);
    if (!json) {
        send_body(gw, req, status, "application/msgpack", body, len);
        return;
    }
    char *out;
    size_t outlen;
    if (sl_rpc_msgpack_to_json(body, len, &out, &outlen) != 0) {
        send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (encoding the answer)");
        return;
    }
    send_body(gw, req, status, "application/json", out, outlen);
    free(out);
}

static int media_type_is(h2o_iovec_t v, const char *type)
{
    size_t n = strlen(type);
    if (v.len < n || strncasecmp(v.base, type, n) != 0)
        return 0;
    return v.len == n || v.base[n] == ';' || v.base[n] == ' ';
}

static void handle_rpc(sl_gateway_t *gw, h2o_req_t *req, const char *method, size_t mlen)
{
    h2o_iovec_t ctype = header(req, H2O_TOKEN_CONTENT_TYPE);
    int json;
    if (media_type_is(ctype, "application/msgpack") || media_type_is(ctype, "application/x-msgpack"))
        json = 0;
    else if (media_type_is(ctype, "application/json"))
        json = 1;
    else {
        send_json_error(gw, req, SL_RPC_INVALID_ARGUMENT,
                        "Content-Type must be application/msgpack or application/json");
        return;
    }
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (blen > gw->cfg.max_body) {
        char msg[160];
        snprintf(msg, sizeof(msg), "request body of %zu bytes exceeds the limit of %zu bytes", blen,
                 gw->cfg.max_body);
        sl_rpc_code_t code = SL_RPC_PAYLOAD_TOO_LARGE;
        if (json) {
            send_json_error(gw, req, code, msg);
        } else {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 2);
            sl_rpc_pack_str(&pk, "code");
            sl_rpc_pack_str(&pk, sl_rpc_code_name(code));
            sl_rpc_pack_str(&pk, "message");
            sl_rpc_pack_str(&pk, msg);
            send_body(gw, req, sl_rpc_code_http_status(code), "application/msgpack", sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
        }
        return;
    }
    /* Bearer token: the core decides whether it is valid. */
    const char *auth = NULL;
    size_t auth_len = 0;
    h2o_iovec_t a = header(req, H2O_TOKEN_AUTHORIZATION);
    if (a.len > 7 && strncasecmp(a.base, "Bearer ", 7) == 0) {
        auth = a.base + 7;
        auth_len = a.len - 7;
        while (auth_len > 0 && auth[0] == ' ')
            auth++, auth_len--;
        while (auth_len > 0 && auth[auth_len - 1] == ' ')
            auth_len--;
    }
    pending_t *pd = pending_new(gw, req, R_RPC);
    if (pd == NULL) {
        send_json_error(gw, req, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pd->json = json;
    if (!json) {
        sl_rpc_call(gw->rpc, method, mlen, auth, auth_len, req->entity.base, blen, on_rpc_reply, pd);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char msg[256];
    if (sl_rpc_json_to_msgpack(req->entity.base ? req->entity.base : "", blen, sl_rpc_server_limits(gw->rpc), &sb,
                               msg, sizeof(msg)) != 0) {
        msgpack_sbuffer_destroy(&sb);
        pending_finish(pd);
        /* The parser's message quotes input: keep only what is safe to embed. */
        for (char *p = msg; *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x80)
                *p = '\'';
        send_json_error(gw, req, SL_RPC_INVALID_ARGUMENT, msg);
        return;
    }
    sl_rpc_call(gw->rpc, method, mlen, auth, auth_len, sb.data, sb.size, on_rpc_reply, pd);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- SpecStory-compatible API: /api/v1/projects[/{p}/sessions[/sizes|/{s}]] ----
 *
 * The SpecStory CLI's wire format (shared/SPEC.md), mapped onto the same owner methods as the RPCs:
 *   PUT    …/sessions/{s}     -> SyncSession (gzip'd JSON body; 201 new, 200 update, ETag)
 *   GET    …/sessions/sizes   -> SessionSizes
 *   HEAD   …/sessions/{s}     -> SessionSizes (X-Markdown-Size, X-Session-Data-Size)
 *   GET    …/sessions/{s}     -> ExportSession (JSON, or the markdown itself for Accept: text/markdown)
 *   DELETE …/sessions/{s}     -> DeleteSession
 *   GET    /api/v1/projects   -> ListProjects;  GET …/{p}/sessions -> ListSessions
 * Answers use the {"success":true,"data":…} / {"success":false,"error":"…"} envelope. */

#define COMPAT_MAX_BODY (50u << 20)     /* compressed request body */
#define COMPAT_MAX_INFLATED (256u << 20) /* after gzip */

enum compat_kind { K_PUT, K_SIZES, K_HEAD, K_GET, K_DELETE, K_PROJECTS, K_SESSIONS };

typedef struct compat {
    pending_t *pd;
    enum compat_kind kind;
    char project[201];
    char session[65];
} compat_t;

static void compat_send(sl_gateway_t *gw, h2o_req_t *req, int status, json_t *doc)
{
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    if (out == NULL) {
        send_body(gw, req, 500, "application/json", H2O_STRLIT("{\"success\":false,\"error\":\"internal error\"}"));
        return;
    }
    send_body(gw, req, status, "application/json; charset=utf-8", out, strlen(out));
    free(out);
}

static void compat_error(sl_gateway_t *gw, h2o_req_t *req, int status, const char *msg)
{
    compat_send(gw, req, status, json_pack("{s:b,s:s}", "success", 0, "error", msg));
}

static void compat_ok(sl_gateway_t *gw, h2o_req_t *req, int status, json_t *data)
{
    compat_send(gw, req, status, json_pack("{s:b,s:o}", "success", 1, "data", data ? data : json_object()));
}

static const char *jstr_or(json_t *o, const char *key, const char *def)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

static void on_compat_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    compat_t *c = data;
    sl_gateway_t *gw = c->pd->gw;
    h2o_req_t *req = pending_finish(c->pd);
    if (req == NULL) {
        free(c);
        return;
    }
    char *text = NULL;
    size_t tlen = 0;
    json_t *ans = NULL;
    if (sl_rpc_msgpack_to_json(body, len, &text, &tlen) == 0)
        ans = json_loadb(text, tlen, 0, NULL);
    free(text);
    if (code != SL_RPC_OK || ans == NULL) {
        int status = ans ? sl_rpc_code_http_status(code) : 500;
        const char *msg = ans ? jstr_or(ans, "message", "error") : "internal error (answer)";
        if (c->kind == K_HEAD) {
            count_status(gw, status);
            req->res.status = status;
            req->res.reason = "";
            h2o_send_inline(req, NULL, 0);
        } else {
            compat_error(gw, req, status, msg);
        }
        json_decref(ans);
        free(c);
        return;
    }
    json_t *out = NULL;
    switch (c->kind) {
    case K_PUT: {
        int created = json_is_true(json_object_get(ans, "created"));
        const char *etag = jstr_or(ans, "etag", "");
        add_header(req, H2O_TOKEN_ETAG, h2o_strdup(&req->pool, etag, SIZE_MAX).base, strlen(etag));
        out = json_pack("{s:s,s:s,s:b,s:O,s:s,s:O}", "sessionId", c->session, "projectId", c->project, "created",
                        created, "version", json_object_get(ans, "version"), "etag", etag, "exchangeCount",
                        json_object_get(ans, "exchange_count"));
        compat_ok(gw, req, created ? 201 : 200, out);
        break;
    }
    case K_SIZES:
        compat_ok(gw, req, 200, json_pack("{s:O}", "sessions", json_object_get(ans, "sessions")));
        break;
    case K_HEAD: {
        json_t *sizes = json_object_get(ans, "sessions");
        char key[80], num[32];
        snprintf(key, sizeof(key), "%s:sessionData", c->session);
        json_int_t md = json_integer_value(json_object_get(sizes, c->session));
        json_int_t sd = json_integer_value(json_object_get(sizes, key));
        snprintf(num, sizeof(num), "%lld", (long long)md);
        add_header_str(req, "x-markdown-size", h2o_strdup(&req->pool, num, SIZE_MAX).base);
        snprintf(num, sizeof(num), "%lld", (long long)sd);
        add_header_str(req, "x-session-data-size", h2o_strdup(&req->pool, num, SIZE_MAX).base);
        add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        count_status(gw, 200);
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_send_inline(req, NULL, 0);
        break;
    }
    case K_GET: {
        const char *etag = jstr_or(ans, "etag", "");
        add_header(req, H2O_TOKEN_ETAG, h2o_strdup(&req->pool, etag, SIZE_MAX).base, strlen(etag));
        add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept"));
        if (*etag && etag_matches(req, etag, strlen(etag))) {
            count_status(gw, 304);
            req->res.status = 304;
            req->res.reason = "Not Modified";
            h2o_send_inline(req, NULL, 0);
            break;
        }
        h2o_iovec_t accept = header(req, H2O_TOKEN_ACCEPT);
        if (accept.base && h2o_strstr(accept.base, accept.len, H2O_STRLIT("text/markdown")) != SIZE_MAX &&
            h2o_strstr(accept.base, accept.len, H2O_STRLIT("application/json")) == SIZE_MAX) {
            json_t *md = json_object_get(ans, "markdown");
            add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
            send_body(gw, req, 200, "text/markdown; charset=utf-8", json_string_value(md),
                      json_string_length(md));
            break;
        }
        out = json_pack("{s:s,s:s,s:O,s:O,s:O,s:O,s:O,s:s,s:O}", "sessionId", c->session, "projectId", c->project,
                        "title", json_object_get(ans, "title"), "markdown", json_object_get(ans, "markdown"),
                        "rawData", json_object_get(ans, "raw_data"), "sessionData",
                        json_object_get(ans, "session_data"), "metadata", json_object_get(ans, "metadata"), "etag",
                        etag, "updatedAt", json_object_get(ans, "updated_at"));
        compat_ok(gw, req, 200, out);
        break;
    }
    case K_DELETE:
        compat_ok(gw, req, 200, json_pack("{s:s,s:b}", "sessionId", c->session, "deleted", 1));
        break;
    case K_PROJECTS: {
        json_t *list = json_array(), *in = json_object_get(ans, "projects");
        size_t i;
        json_t *p;
        json_array_foreach(in, i, p) {
            json_array_append_new(list, json_pack("{s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(p, "ext_id"),
                                                  "projectId", json_object_get(p, "project_id"), "name",
                                                  json_object_get(p, "name"), "icon", json_object_get(p, "icon"),
                                                  "color", json_object_get(p, "color"), "sessionCount",
                                                  json_object_get(p, "session_count")));
        }
        compat_ok(gw, req, 200, json_pack("{s:o}", "projects", list));
        break;
    }
    case K_SESSIONS: {
        json_t *list = json_array(), *in = json_object_get(ans, "sessions");
        size_t i;
        json_t *s;
        json_array_foreach(in, i, s) {
            json_array_append_new(list, json_pack("{s:O,s:O,s:O,s:O}", "sessionId", json_object_get(s, "session_id"),
                                                  "title", json_object_get(s, "title"), "updatedAt",
                                                  json_object_get(s, "updated_at"), "public",
                                                  json_object_get(s, "public")));
        }
        compat_ok(gw, req, 200, json_pack("{s:o}", "sessions", list));
        break;
    }
    }
    json_decref(ans);
    free(c);
}

/* JSON value -> msgpack, for the upload's metadata object. */
static void pack_json(msgpack_packer *pk, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(v));
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            sl_rpc_pack_str(pk, k);
            pack_json(pk, x);
        }
        break;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(v));
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) pack_json(pk, x);
        break;
    }
    case JSON_STRING:
        sl_rpc_pack_strn(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

static int inflate_body(const char *in, size_t len, char **out, size_t *outlen, char *msg, size_t msglen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        snprintf(msg, msglen, "cannot decompress the body");
        return 400;
    }
    size_t cap = len * 4 + 4096, n = 0;
    char *buf = malloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    int rc = Z_OK;
    while (buf && rc != Z_STREAM_END) {
        if (n == cap) {
            if (cap >= COMPAT_MAX_INFLATED) {
                free(buf);
                inflateEnd(&zs);
                snprintf(msg, msglen, "the decompressed body exceeds %u MiB", COMPAT_MAX_INFLATED >> 20);
                return 413;
            }
            cap = cap * 2 > COMPAT_MAX_INFLATED ? COMPAT_MAX_INFLATED : cap * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        zs.next_out = (Bytef *)buf + n;
        zs.avail_out = (uInt)(cap - n);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && n == cap)) {
            free(buf);
            inflateEnd(&zs);
            snprintf(msg, msglen, "the body is not valid gzip");
            return 400;
        }
    }
    inflateEnd(&zs);
    if (buf == NULL) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

static void compat_call(sl_gateway_t *gw, h2o_req_t *req, compat_t *c, const char *method, msgpack_sbuffer *sb)
{
    const char *auth = NULL;
    size_t auth_len = 0;
    h2o_iovec_t a = header(req, H2O_TOKEN_AUTHORIZATION);
    if (a.len > 7 && strncasecmp(a.base, "Bearer ", 7) == 0) {
        auth = a.base + 7;
        auth_len = a.len - 7;
        while (auth_len > 0 && auth[0] == ' ')
            auth++, auth_len--;
    }
    c->pd = pending_new(gw, req, R_COMPAT);
    if (c->pd == NULL) {
        free(c);
        compat_error(gw, req, 500, "out of memory");
        return;
    }
    sl_rpc_call(gw->rpc, method, strlen(method), auth, auth_len, sb->data, sb->size, on_compat_reply, c);
}

static void handle_compat(sl_gateway_t *gw, h2o_req_t *req, const char *path, size_t len)
{
    /* path after "/api/v1/projects" */
    const char *m = req->method.base;
    size_t ml = req->method.len;
    int get = h2o_memis(m, ml, H2O_STRLIT("GET")), head = h2o_memis(m, ml, H2O_STRLIT("HEAD"));
    int put = h2o_memis(m, ml, H2O_STRLIT("PUT")), del = h2o_memis(m, ml, H2O_STRLIT("DELETE"));
    compat_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        compat_error(gw, req, 500, "out of memory");
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const char *method = NULL;
    sl_compat_kind_t kind = sl_route_compat(path, len, c->project, sizeof(c->project), c->session, sizeof(c->session));
    if (kind == SL_COMPAT_NONE)
        goto not_found;
    if (kind == SL_COMPAT_PROJECTS) {
        if (!get && !head)
            goto bad_method;
        c->kind = K_PROJECTS;
        msgpack_pack_map(&pk, 0);
        method = "shareline.v1.Sessions/ListProjects";
        goto call;
    }
    if (kind == SL_COMPAT_SESSIONS) {
        if (!get && !head)
            goto bad_method;
        c->kind = K_SESSIONS;
        msgpack_pack_map(&pk, 2);
        sl_rpc_pack_str(&pk, "project_ext_id");
        sl_rpc_pack_str(&pk, c->project);
        sl_rpc_pack_str(&pk, "page_size");
        msgpack_pack_uint32(&pk, 200);
        method = "shareline.v1.Sessions/ListSessions";
        goto call;
    }
    if (kind == SL_COMPAT_SIZES) {
        if (!get && !head)
            goto bad_method;
        c->kind = K_SIZES;
        msgpack_pack_map(&pk, 1);
        sl_rpc_pack_str(&pk, "project_ext_id");
        sl_rpc_pack_str(&pk, c->project);
        method = "shareline.v1.Sessions/SessionSizes";
        goto call;
    }
    if (head) {
        c->kind = K_HEAD;
        msgpack_pack_map(&pk, 2);
        sl_rpc_pack_str(&pk, "project_ext_id");
        sl_rpc_pack_str(&pk, c->project);
        sl_rpc_pack_str(&pk, "session_id");
        sl_rpc_pack_str(&pk, c->session);
        method = "shareline.v1.Sessions/SessionSizes";
    } else if (get || del) {
        c->kind = get ? K_GET : K_DELETE;
        msgpack_pack_map(&pk, 2);
        sl_rpc_pack_str(&pk, "project_ext_id");
        sl_rpc_pack_str(&pk, c->project);
        sl_rpc_pack_str(&pk, "session_id");
        sl_rpc_pack_str(&pk, c->session);
        method = get ? "shareline.v1.Sessions/ExportSession" : "shareline.v1.Sessions/DeleteSession";
    } else if (put) {
        c->kind = K_PUT;
        size_t blen = req->entity.base ? req->entity.len : 0;
        if (blen > COMPAT_MAX_BODY) {
            char msg[120];
            snprintf(msg, sizeof(msg), "request body of %zu bytes exceeds the limit of %u MiB (compressed)", blen,
                     COMPAT_MAX_BODY >> 20);
            msgpack_sbuffer_destroy(&sb);
            free(c);
            compat_error(gw, req, 413, msg);
            return;
        }
        const char *json = req->entity.base ? req->entity.base : "";
        size_t jlen = blen;
        char *inflated = NULL;
        h2o_iovec_t ce = header(req, H2O_TOKEN_CONTENT_ENCODING);
        if (ce.base && h2o_contains_token(ce.base, ce.len, H2O_STRLIT("gzip"), ',')) {
            char msg[120];
            int st = inflate_body(json, blen, &inflated, &jlen, msg, sizeof(msg));
            if (st) {
                msgpack_sbuffer_destroy(&sb);
                free(c);
                compat_error(gw, req, st, msg);
                return;
            }
            json = inflated;
        } else if (ce.base && !h2o_memis(ce.base, ce.len, H2O_STRLIT("identity"))) {
            msgpack_sbuffer_destroy(&sb);
            free(c);
            compat_error(gw, req, 415, "Content-Encoding must be gzip or identity");
            return;
        }
        json_error_t jerr;
        json_t *doc = json_loadb(json, jlen, JSON_REJECT_DUPLICATES, &jerr);
        free(inflated);
        const char *md = doc ? jstr_or(doc, "markdown", NULL) : NULL;
        const char *bpid = doc ? jstr_or(doc, "projectId", NULL) : NULL;
        json_t *meta = doc ? json_object_get(doc, "metadata") : NULL;
        const char *why = doc == NULL                              ? "the body is not valid JSON (UTF-8)"
                          : !json_is_object(doc)                   ? "the body must be a JSON object"
                          : md == NULL                             ? "field \"markdown\" (a string) is required"
                          : bpid && strcmp(bpid, c->project) != 0  ? "field \"projectId\" differs from the URL's"
                          : meta && !json_is_object(meta)          ? "field \"metadata\" must be an object"
                                                                   : NULL;
        if (why) {
            json_decref(doc);
            msgpack_sbuffer_destroy(&sb);
            free(c);
            compat_error(gw, req, 400, why);
            return;
        }
        const char *title = meta ? jstr_or(meta, "title", NULL) : NULL;
        json_t *raw = json_object_get(doc, "rawData"), *sdata = json_object_get(doc, "sessionData");
        json_t *name = json_object_get(doc, "name");
        /* metadata kept as sent, plus the session's file name */
        json_t *keep = meta ? json_deep_copy(meta) : json_object();
        if (json_is_string(name))
            json_object_set(keep, "name", name);
        msgpack_pack_map(&pk, 4 + (title != NULL) + json_is_string(raw) + json_is_string(sdata) + 1);
        sl_rpc_pack_str(&pk, "session_id");
        sl_rpc_pack_str(&pk, c->session);
        sl_rpc_pack_str(&pk, "project");
        msgpack_pack_map(&pk, 2);
        sl_rpc_pack_str(&pk, "id");
        sl_rpc_pack_str(&pk, c->project);
        sl_rpc_pack_str(&pk, "name");
        const char *pname = jstr_or(doc, "projectName", c->project);
        sl_rpc_pack_str(&pk, *pname ? pname : c->project);
        sl_rpc_pack_str(&pk, "markdown");
        sl_rpc_pack_strn(&pk, md, json_string_length(json_object_get(doc, "markdown")));
        sl_rpc_pack_str(&pk, "metadata");
        pack_json(&pk, keep);
        if (title) {
            sl_rpc_pack_str(&pk, "title");
            sl_rpc_pack_str(&pk, title);
        }
        if (json_is_string(raw)) {
            sl_rpc_pack_str(&pk, "raw_data");
            sl_rpc_pack_strn(&pk, json_string_value(raw), json_string_length(raw));
        }
        if (json_is_string(sdata)) {
            sl_rpc_pack_str(&pk, "session_data");
            sl_rpc_pack_strn(&pk, json_string_value(sdata), json_string_length(sdata));
        }
        sl_rpc_pack_str(&pk, "compat");
        msgpack_pack_true(&pk);
        json_decref(keep);
        json_decref(doc);
        method = "shareline.v1.Sessions/SyncSession";
    } else {
        goto bad_method;
    }
call:
    compat_call(gw, req, c, method, &sb);
    msgpack_sbuffer_destroy(&sb);
    return;
not_found:
    msgpack_sbuffer_destroy(&sb);
    free(c);
    compat_error(gw, req, 404, "no such route");
    return;
bad_method:
    msgpack_sbuffer_destroy(&sb);
    free(c);
    add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("GET, HEAD, PUT, DELETE"));
    compat_error(gw, req, 405, "method not allowed");
}

/* ---- routing ---- */

static void send_text(sl_gateway_t *gw, h2o_req_t *req, int status, const char *text)
{
    add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    send_body(gw, req, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int prefix(const char *path, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && memcmp(path, pre, n) == 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    sl_gateway_t *gw = ((handler_t *)self)->gw;
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    sl_route_t rt;
    sl_route_classify(req->path.base, len, &rt);
    gw->requests[rt.kind]++; /* enum route has the order of sl_route_kind_t */

    switch (rt.kind) {
    case SL_ROUTE_SHARE_JSON:
    case SL_ROUTE_SHARE_HTML:
        if (!is_get)
            goto not_allowed_get;
        handle_share(gw, req, rt.kind == SL_ROUTE_SHARE_JSON ? R_SHARE_JSON : R_SHARE_HTML, rt.rest, rt.rest_len);
        return 0;
    case SL_ROUTE_RPC:
        if (!is_post) {
            add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("POST"));
            send_json_error(gw, req, SL_RPC_INVALID_ARGUMENT, "owner RPCs are called with POST");
            return 0;
        }
        /* Only the owner service is reachable from outside; internal methods are not. */
        if (!prefix(rt.rest, rt.rest_len, OWNER_SERVICE)) {
            send_json_error(gw, req, SL_RPC_UNIMPLEMENTED, "unknown service (expected shareline.v1.Sessions)");
            return 0;
        }
        handle_rpc(gw, req, rt.rest, rt.rest_len);
        return 0;
    case SL_ROUTE_COMPAT:
        handle_compat(gw, req, rt.rest, rt.rest_len);
        return 0;
    case SL_ROUTE_HEALTH:
        send_text(gw, req, 200, "ok\n");
        return 0;
    case SL_ROUTE_READY: {
        int ready = gw->cfg.ready ? gw->cfg.ready(gw->cfg.data) : 1;
        send_text(gw, req, ready ? 200 : 503, ready ? "ready\n" : "not ready: database unreachable\n");
        return 0;
    }
    case SL_ROUTE_METRICS: {
        char *buf = NULL;
        size_t blen = 0;
        if (gw->cfg.metrics)
            gw->cfg.metrics(gw->cfg.data, &buf, &blen);
        sl_gateway_metrics(gw, &buf, &blen);
        add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        send_body(gw, req, 200, "text/plain; version=0.0.4", buf ? buf : "", blen);
        free(buf);
        return 0;
    }
    case SL_ROUTE_OTHER:
        break;
    }
    send_json_error(gw, req, SL_RPC_NOT_FOUND, "no such route");
    return 0;

not_allowed_get:
    add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("GET, HEAD"));
    count_status(gw, 405);
    req->res.status = 405;
    req->res.reason = "Method Not Allowed";
    add_header(req, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"));
    h2o_send_inline(req, H2O_STRLIT("{\"code\":\"invalid_argument\",\"message\":\"method not allowed\"}"));
    return 0;
}

/* ---- metrics ---- */

static void appendf(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void appendf(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char *p = realloc(*buf, *len + (size_t)n + 1);
    if (p == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(p + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *buf = p;
    *len += (size_t)n;
}

void sl_gateway_metrics(const sl_gateway_t *gw, char **buf, size_t *len)
{
    appendf(buf, len, "# HELP shareline_http_requests_total HTTP requests by route.\n"
                      "# TYPE shareline_http_requests_total counter\n");
    for (int i = 0; i < R_COUNT; i++)
        appendf(buf, len, "shareline_http_requests_total{route=\"%s\"} %llu\n", route_names[i],
                (unsigned long long)gw->requests[i]);
    appendf(buf, len, "# HELP shareline_http_responses_total HTTP responses by status class.\n"
                      "# TYPE shareline_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        appendf(buf, len, "shareline_http_responses_total{class=\"%dxx\"} %llu\n", c,
                (unsigned long long)gw->status_class[c]);
    appendf(buf, len, "# HELP shareline_http_aborted_total Answers dropped because the client had gone.\n"
                      "# TYPE shareline_http_aborted_total counter\nshareline_http_aborted_total %llu\n",
            (unsigned long long)gw->aborted);
    appendf(buf, len,
            "# HELP shareline_share_copies_hits_total Public answers served from the gateway's copy (version confirmed in Redis).\n"
            "# TYPE shareline_share_copies_hits_total counter\nshareline_share_copies_hits_total %llu\n"
            "# HELP shareline_share_copies_misses_total Public answers that carried the whole projection.\n"
            "# TYPE shareline_share_copies_misses_total counter\nshareline_share_copies_misses_total %llu\n"
            "# HELP shareline_share_copies_bytes Bytes of projection copies held by the gateway.\n"
            "# TYPE shareline_share_copies_bytes gauge\nshareline_share_copies_bytes %zu\n",
            (unsigned long long)gw->pcache->hits, (unsigned long long)gw->pcache->misses, gw->pcache->bytes);
    appendf(buf, len,
            "# HELP shareline_connections_open Client connections open now.\n"
            "# TYPE shareline_connections_open gauge\nshareline_connections_open %llu\n"
            "# HELP shareline_connections_accepted_total Client connections accepted.\n"
            "# TYPE shareline_connections_accepted_total counter\nshareline_connections_accepted_total %llu\n"
            "# HELP shareline_connections_refused_total Connections closed at once: SHARELINE_MAX_CONNECTIONS reached.\n"
            "# TYPE shareline_connections_refused_total counter\nshareline_connections_refused_total %llu\n",
            (unsigned long long)gw->conns_open, (unsigned long long)gw->conns_accepted,
            (unsigned long long)gw->conns_refused);
}

/* ---- accepting ---- */

/* A client connection's handle; h2o owns handle->data, so the gateway rides along beside it. */
typedef struct client_conn {
    uv_tcp_t tcp; /* first: the handle h2o and libuv see */
    sl_gateway_t *gw;
} client_conn_t;

static void on_refused_close(uv_handle_t *h)
{
    free(h);
}

static void on_tcp_close(uv_handle_t *h)
{
    client_conn_t *cc = (client_conn_t *)h;
    cc->gw->conns_open--;
    free(cc);
}

static void on_accept(uv_stream_t *listener, int status)
{
    sl_gateway_t *gw = listener->data;
    if (status != 0)
        return;
    client_conn_t *cc = malloc(sizeof(*cc));
    if (cc == NULL)
        return;
    uv_tcp_t *conn = &cc->tcp;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_refused_close);
        return;
    }
    if (gw->conns_open >= gw->cfg.max_connections) {
        /* Over the cap: closed at once, before any memory of h2o's is spent on it. */
        gw->conns_refused++;
        uv_close((uv_handle_t *)conn, on_refused_close);
        return;
    }
    cc->gw = gw;
    gw->conns_open++;
    gw->conns_accepted++;
    uv_tcp_nodelay(conn, 1);
    uv_os_fd_t fd;
    if (gw->cfg.send_timeout_ms && uv_fileno((uv_handle_t *)conn, &fd) == 0) {
        unsigned ms = gw->cfg.send_timeout_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_tcp_close);
    h2o_accept(&gw->accept_ctx, sock);
}

static int setup_tls(sl_gateway_t *gw, char *err, size_t errlen)
{
    SSL_load_error_strings();
    SSL_library_init();
    gw->ssl = SSL_CTX_new(TLS_server_method());
    if (gw->ssl == NULL) {
        snprintf(err, errlen, "TLS: cannot create context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(gw->ssl, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(gw->ssl, gw->cfg.tls_cert) != 1) {
        snprintf(err, errlen, "TLS: cannot load certificate %s", gw->cfg.tls_cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(gw->ssl, gw->cfg.tls_key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "TLS: cannot load key %s", gw->cfg.tls_key);
        return -1;
    }
    h2o_ssl_register_alpn_protocols(gw->ssl, h2o_http2_alpn_protocols);
    gw->accept_ctx.ssl_ctx = gw->ssl;
    return 0;
}

int sl_gateway_start(sl_gateway_t **out, uv_loop_t *loop, sl_rpc_server_t *rpc, const sl_gateway_config_t *cfg,
                     char *err, size_t errlen)
{
    signal(SIGPIPE, SIG_IGN);
    sl_gateway_t *gw = calloc(1, sizeof(*gw));
    if (gw == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    gw->loop = loop;
    gw->rpc = rpc;
    gw->cfg = *cfg;
    if (gw->cfg.host == NULL)
        gw->cfg.host = "127.0.0.1";
    if (gw->cfg.port == 0)
        gw->cfg.port = 8080;
    if (gw->cfg.max_body == 0)
        gw->cfg.max_body = sl_rpc_server_limits(rpc)->max_body;
    gw->pcache = calloc(1, sizeof(*gw->pcache));
    if (gw->pcache == NULL) {
        free(gw);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    gw->pcache->max_bytes = gw->cfg.share_cache_bytes ? gw->cfg.share_cache_bytes : (64u << 20);
    if (gw->cfg.max_connections == 0)
        gw->cfg.max_connections = 16384;

    h2o_config_init(&gw->config);
    /* Bodies up to max_body are ours to judge (a 413 with an error body); h2o itself stops at twice
     * that (HTTP/1.1: 413; HTTP/2: RST_STREAM), so no request can make us buffer more. */
    gw->config.max_request_entity_size = gw->cfg.max_body * 2;
    /* h2o's timeouts, set here so that they are ours and documented (README "Limits"): a request
     * head must arrive within 10 s of the connection or the previous request (a byte-by-byte
     * slowloris is closed at 10 s), an idle HTTP/2 connection is closed after 10 s, and at most 100
     * requests of one HTTP/2 connection run at once (more are refused with RST_STREAM). */
    gw->config.http1.req_timeout = 10000;
    gw->config.http2.idle_timeout = 10000;
    gw->config.handshake_timeout = 10000;
    gw->config.http2.max_concurrent_requests_per_connection = 100;
    h2o_hostconf_t *host = h2o_config_register_host(&gw->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    handler_t *h = (handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->gw = gw;
    h2o_context_init(&gw->ctx, loop, &gw->config);
    gw->accept_ctx.ctx = &gw->ctx;
    gw->accept_ctx.hosts = gw->config.hosts;

    if (gw->cfg.tls_cert && *gw->cfg.tls_cert && gw->cfg.tls_key && *gw->cfg.tls_key &&
        setup_tls(gw, err, errlen) != 0)
        goto fail;

    struct sockaddr_storage addr;
    if (uv_ip4_addr(gw->cfg.host, (int)gw->cfg.port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(gw->cfg.host, (int)gw->cfg.port, (struct sockaddr_in6 *)&addr) != 0) {
        snprintf(err, errlen, "listen address %s is not an IP address", gw->cfg.host);
        goto fail;
    }
    uv_tcp_init(loop, &gw->listener);
    gw->listener.data = gw;
    int r;
    if ((r = uv_tcp_bind(&gw->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&gw->listener, 1024, on_accept)) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", gw->cfg.host, gw->cfg.port, uv_strerror(r));
        uv_close((uv_handle_t *)&gw->listener, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }
    *out = gw;
    return 0;
fail:
    h2o_context_dispose(&gw->ctx);
    h2o_config_dispose(&gw->config);
    if (gw->ssl)
        SSL_CTX_free(gw->ssl);
    free(gw);
    return -1;
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

void sl_gateway_stop(sl_gateway_t *gw)
{
    if (gw == NULL)
        return;
    uv_close((uv_handle_t *)&gw->listener, on_listener_closed);
    uv_run(gw->loop, UV_RUN_NOWAIT);
    h2o_context_dispose(&gw->ctx);
    h2o_config_dispose(&gw->config);
    if (gw->ssl)
        SSL_CTX_free(gw->ssl);
    pcache_free(gw->pcache);
    free(gw);
}
