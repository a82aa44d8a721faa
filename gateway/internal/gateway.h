/*
 * Internal to gateway/: the gateway object and what its handlers share — answering, reading
 * request headers, and requests whose answer comes later from an rpc call.
 *
 * Files: server.c (listening, accepting, TLS, routing), http.c (answers, headers, pending
 * requests), share.c (the public share: /share/{id}, /api/v1/share/{id}), copies.c (the gateway's
 * copies of projections, sent without copying), owner_rpc.c (POST /rpc/...), console.c (the owner
 * console: its pages, sign-in, cookie and CSRF), specstory.c (the SpecStory-compatible API),
 * metrics.c (/metrics), route.c (paths, pure functions).
 */
#ifndef SL_GATEWAY_INTERNAL_GATEWAY_H
#define SL_GATEWAY_INTERNAL_GATEWAY_H

#include <h2o.h>

#include "gateway/gateway.h"
#include "gateway/internal/route.h"

/* A SpecStory upload after gzip: the limit of one uploaded markdown (core's max_markdown). */
#define SL_GW_MAX_UPLOAD (64u << 20)

/* The per-route counters, in the order of sl_route_kind_t. */
#define SL_GW_ROUTES (SL_ROUTE_OTHER + 1)

struct sl_copies;
typedef struct sl_events sl_events_t;

struct sl_gateway {
    uv_loop_t *loop;
    sl_rpc_server_t *rpc;
    sl_gateway_config_t cfg;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    SSL_CTX *ssl;
    uint64_t requests[SL_GW_ROUTES];
    uint64_t status_class[6];                           /* index: status / 100 */
    uint64_t aborted;                                   /* answers dropped because the client had gone */
    uint64_t deadlines;                                 /* Connect calls answered deadline_exceeded */
    uint64_t conns_open, conns_accepted, conns_refused; /* client connections */
    struct sl_copies *copies;                           /* copies of projections (copies.c) */
    sl_events_t *events;                                /* live event streams (events.c) */
    sl_rpc_limits_t upload_limits; /* the JSON mapping's limits for a SpecStory upload (after gzip) */
};

/* ---- answering (http.c) ---- */

void sl_gw_count_status(sl_gateway_t *gw, int status);
/* h2o keeps value's pointer, not a copy: it must live as long as the request (a literal, or memory
 * of the request's pool). */
void sl_gw_add_header(h2o_req_t *req, const h2o_token_t *token, const char *value, size_t len);
void sl_gw_add_header_str(h2o_req_t *req, const char *name, const char *value);
/* status, Content-Type (when ctype), Content-Length and the body (copied); HEAD sends no body. */
void sl_gw_send(sl_gateway_t *gw, h2o_req_t *req, int status, const char *ctype, const char *body,
                size_t len);
/* {"code": <name>, "message": msg} with the code's HTTP status. msg must be ours (no quotes or
 * control characters): it is embedded as is. */
void sl_gw_send_error(sl_gateway_t *gw, h2o_req_t *req, sl_rpc_code_t code, const char *msg);
/* The same error in the request's encoding: msgpack when json == 0. */
void sl_gw_send_error_as(sl_gateway_t *gw, h2o_req_t *req, int json, sl_rpc_code_t code, const char *msg);
/* The JSON error with an explicit status (a Connect request's, sl_rpc_code_connect_status). */
void sl_gw_send_error_status(sl_gateway_t *gw, h2o_req_t *req, int status, sl_rpc_code_t code,
                             const char *msg);
/* An empty answer with this status (HEAD-style: headers only). */
void sl_gw_send_status(sl_gateway_t *gw, h2o_req_t *req, int status, const char *reason);

/* ---- request headers (http.c) ---- */

h2o_iovec_t sl_gw_header(h2o_req_t *req, const h2o_token_t *token);
/* 1 when Accept-Encoding allows gzip (a "gzip" or "*" token without q=0). */
int sl_gw_accepts_gzip(h2o_req_t *req);
/* 1 when If-None-Match names etag (quoted, strong), with RFC 9110's weak comparison, or is "*". */
int sl_gw_etag_matches(h2o_req_t *req, const char *etag, size_t len);
/* 1 when Accept asks for text/markdown and not for application/json. */
int sl_gw_wants_markdown(h2o_req_t *req);
/* 1 when the media type of v (parameters ignored) is type, case-insensitively. */
int sl_gw_media_type_is(h2o_iovec_t v, const char *type);
/* The bearer token of "Authorization: Bearer <token>" (spaces around it trimmed), or NULL. */
const char *sl_gw_bearer(h2o_req_t *req, size_t *len);
int sl_gw_is_method(h2o_req_t *req, const char *method);

/* ---- requests answered later (http.c) ----
 *
 * h2o 2.2 calls no stop callback before h2o_start_response, so a request whose answer comes from
 * an rpc call keeps its state outside the request pool, and a dispose hook in the pool clears the
 * pointer to the request when the client goes away first (the pattern of h2o's lib/core/proxy.c).
 * The answer is then dropped. */
typedef struct sl_pending {
    sl_gateway_t *gw;
    h2o_req_t *req;           /* NULL once the request was disposed (client gone) */
    struct sl_pending **slot; /* lives in the request pool; cleared when we finish first */
    sl_route_kind_t route;
    int json;              /* owner rpc, console: answer in JSON */
    int action;            /* console.c: what the console's call was for */
    int connect;           /* owner rpc: a Connect protocol request (Connect-Protocol-Version: 1) */
    int method;            /* owner rpc: its method id (sl_rpc_method_lookup) */
    void *deadline;        /* owner rpc: the timer of a Connect-Timeout-Ms, or NULL */
    int timed_out;         /* owner rpc: answered deadline_exceeded (not a client that went away) */
    int gzip;              /* public: the client accepts gzip */
    int markdown;          /* public JSON route: the client asked for text/markdown */
    uint64_t have_version; /* public: the version of our copy sent to the core (0: none) */
    uint64_t have_tag;     /* public: its content tag */
    void *ctx;             /* the SpecStory API's call */
    size_t idlen;
    char id[65];
} sl_pending_t;

sl_pending_t *sl_gw_pending_new(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route);
/* Detaches from the request (if still there) and frees. Returns the request, or NULL (gone). */
h2o_req_t *sl_gw_pending_finish(sl_pending_t *pd);

/* ---- handlers ---- */

/* share.c: GET/HEAD of /api/v1/share/{id} and /share/{id}. */
void sl_gw_share(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route, const char *id, size_t idlen);
/* share.c: an error on a share path: the HTML page for /share/{id} (405 with allow = the methods
 * allowed, 503, 500), the {"code","message"} JSON for /api/v1/share/{id}. */
void sl_gw_share_error(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route, int status,
                       const char *allow);
/* share.c: the one 404 of unknown, private, revoked and deleted sessions (HTML for the page's
 * routes, JSON for the API's). */
void sl_gw_share_not_found(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route);
/* share.c: the viewer page's Content-Security-Policy (allows the live script by its hash). */
const char *sl_gw_page_csp(void);
/* events.c: GET /share/{id}/events. */
void sl_gw_events(sl_gateway_t *gw, h2o_req_t *req, const char *id, size_t idlen);
/* owner_rpc.c: POST /rpc/<service>/<method>. */
void sl_gw_owner_rpc(sl_gateway_t *gw, h2o_req_t *req, const char *method, size_t mlen);
/* console.c: /console[/...] (path after "/console"): the owner console and its sign-in. */
void sl_gw_console(sl_gateway_t *gw, h2o_req_t *req, const char *path, size_t len);
/* console.c: the console's cookie as an owner RPC's credential, for a request without a bearer
 * token: 0 (no console cookie: *tok NULL), 1 (*tok, *len: the session's token; the request came
 * from our origin with the session's X-CSRF-Token), -1 (refused: answered with 403). */
int sl_gw_console_credential(sl_gateway_t *gw, h2o_req_t *req, const char **tok, size_t *len);
/* specstory.c: /api/v1/projects[...] (path after "/api/v1/projects"). */
void sl_gw_specstory(sl_gateway_t *gw, h2o_req_t *req, const char *path, size_t len);
/* metrics.c: the gateway's own counters. */
void sl_gw_metrics(const sl_gateway_t *gw, char **buf, size_t *len);

/* ---- copies of projections (copies.c) ---- */

typedef struct sl_copy sl_copy_t;

/* The strong ETag of one representation, quoted: "<etag>-<j|jz|h|hz|m|mz>" (at most 80 bytes of
 * the projection's etag). Returns its length. */
#define SL_REP_TAG_MAX 100
size_t sl_rep_tag(const sl_rpc_share_t *s, sl_rpc_rep_t rep, char out[SL_REP_TAG_MAX]);

/* Copies of at most max_bytes (bodies and bookkeeping), admitted and evicted by S3-FIFO. */
int sl_copies_open(struct sl_copies **out, size_t max_bytes);
void sl_copies_close(struct sl_copies *c);
/* The copy of representation rep of session id, or NULL. */
sl_copy_t *sl_copies_find(struct sl_copies *c, const char *id, size_t idlen, sl_rpc_rep_t rep);
/* The version of a copy, and its content tag (sl_rpc_etag_tag of its etag). */
uint64_t sl_copy_version(const sl_copy_t *e);
uint64_t sl_copy_tag(const sl_copy_t *e);
/* Counts a hit of e (its frequency, for eviction). */
void sl_copies_touch(struct sl_copies *c, sl_copy_t *e);
/* Stores a copy of a GetShare answer for (id, rep), replacing any older one, when it is a "found"
 * answer of that representation small enough to keep (a quarter of the budget); returns it, or NULL
 * (nothing kept). May evict others. */
sl_copy_t *sl_copies_put(struct sl_copies *c, const char *id, size_t idlen, sl_rpc_rep_t rep,
                         const void *body, size_t len);
/* Forgets e (freed once no answer is being sent from it). */
void sl_copies_drop(struct sl_copies *c, sl_copy_t *e);
/* Forgets every representation of session id (it is not, or no longer, public). */
void sl_copies_drop_id(struct sl_copies *c, const char *id, size_t idlen);
/* The body and strong ETag ("<etag>-<j|m|h>[z]", quoted) of a copy. */
void sl_copy_rep(const sl_copy_t *e, const char **body, size_t *len, const char **tag, size_t *taglen);
/* The representation's bytes (valid while e is held or current). */
void sl_copy_body(const sl_copy_t *e, const char **body, size_t *len);
/* The strong ETag of the JSON document of the same version and content as e. */
size_t sl_copy_json_tag(const sl_copy_t *e, char out[SL_REP_TAG_MAX]);
/* Holds e alive (e.g. while a thread reads it) until sl_copy_unref, even if it is replaced or
 * evicted meanwhile. */
void sl_copy_ref(sl_copy_t *e);
void sl_copy_unref(sl_copy_t *e);
/* Keeps e (its body and ETag) alive until req is disposed, for an answer that points into it. */
void sl_copy_hold(sl_copy_t *e, h2o_req_t *req);
/* Sends e as the final body of req without copying it: e stays alive until the request's pool is
 * cleared, even if it is replaced or evicted meanwhile. Status and headers must be set. */
void sl_copy_send(sl_copy_t *e, h2o_req_t *req);
/* The metrics of the copies. */
typedef struct sl_copies_stats {
    uint64_t hits, misses;   /* answers from a confirmed copy / from a new answer */
    size_t bytes, max_bytes; /* held now / budget */
    size_t entries, main_bytes;
    uint64_t admitted_main, evicted;
} sl_copies_stats_t;
void sl_copies_stats(const struct sl_copies *c, sl_copies_stats_t *out);
void sl_copies_count(struct sl_copies *c, int hit);

/* ---- live events (events.c) ---- */

/* heartbeat_ms 0: 15,000; max_streams 0: 20,000. Registers the gateway as the rpc's change listener. */
int sl_events_open(sl_events_t **out, sl_gateway_t *gw, unsigned heartbeat_ms, size_t max_streams);
void sl_events_close(sl_events_t *ev);
typedef struct sl_events_stats {
    size_t streams, watches;             /* open streams, sessions they follow */
    uint64_t sent, dropped, gone, looks; /* events queued, streams ended for not reading, ended by
                                            "gone", GetShare looks */
} sl_events_stats_t;
void sl_events_stats(const sl_events_t *ev, sl_events_stats_t *out);

#endif
