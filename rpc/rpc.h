/*
 * rpc — the contract layer: the msgpack wire format, status codes, the method names, the public
 * read's request and answer, the JSON <-> msgpack mapping and the decoding limits. The gateway
 * reaches the core only through sl_rpc_call(); the core implements the methods it registers here.
 * A request is a msgpack map; a reply is a msgpack map (the method's answer) or, on error, the map
 * {"code": <name>, "message": <text>}.
 *
 * Files: contract.c (names, GetShare, representation keys), server.c (method table, calls,
 * status codes), fields.c (reading requests, packing answers), codec.c (the bounded msgpack
 * checker, UTF-8), json.c (JSON <-> msgpack), connect.c (the Connect protocol's JSON and statuses;
 * the .proto of the owner service is proto/shareline/v1/sessions.proto).
 *
 * rpc knows nothing of HTTP beyond the status that each code maps to (API.md), and nothing of the
 * core, the cache or the store. Single-threaded: a server and its calls belong to one loop/thread.
 */
#ifndef SL_RPC_H
#define SL_RPC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

typedef enum sl_rpc_code {
    SL_RPC_OK = 0,
    SL_RPC_INVALID_ARGUMENT,
    SL_RPC_UNAUTHENTICATED,
    SL_RPC_PERMISSION_DENIED,
    SL_RPC_NOT_FOUND,
    SL_RPC_ALREADY_EXISTS,
    SL_RPC_FAILED_PRECONDITION,
    SL_RPC_RESOURCE_EXHAUSTED,
    SL_RPC_PAYLOAD_TOO_LARGE, /* "resource_exhausted" with HTTP 413: an oversized body */
    SL_RPC_UNAVAILABLE,
    SL_RPC_INTERNAL,
    SL_RPC_UNIMPLEMENTED,
    SL_RPC_DEADLINE_EXCEEDED, /* a Connect caller's deadline (Connect-Timeout-Ms) passed: 504 */
} sl_rpc_code_t;

/* "invalid_argument", ... as in API.md ("ok" for SL_RPC_OK). */
const char *sl_rpc_code_name(sl_rpc_code_t code);
/* 200, 400, 401, 403, 404, 409, 412, 429, 413, 503, 500, 501, 504. */
int sl_rpc_code_http_status(sl_rpc_code_t code);
/* The status the Connect protocol gives the code (docs/connect.md): as above but failed_precondition
 * 400 and resource_exhausted always 429. */
int sl_rpc_code_connect_status(sl_rpc_code_t code);

/* ---- decoding limits ---- */

typedef struct sl_rpc_limits {
    size_t max_body;     /* bytes of one request body (msgpack or JSON), default 32 MiB */
    unsigned max_depth;  /* nesting of maps/arrays, default 32 */
    size_t max_elements; /* objects in one request (all levels), default 1,000,000 */
} sl_rpc_limits_t;

void sl_rpc_limits_default(sl_rpc_limits_t *l);

/* Walks a msgpack buffer without allocating and checks, before anything unpacks it: exactly one
 * object that fills the buffer (no trailing bytes), the top level is a map, nesting and element
 * counts within the limits, every declared length/count fits in the bytes that remain, every str
 * is valid UTF-8, map keys are strings, no ext types. Returns 0, or -1 with a human message. */
int sl_rpc_check_msgpack(const void *buf, size_t len, const sl_rpc_limits_t *limits, char *err,
                         size_t errlen);

/* Converts a JSON object (UTF-8) to the equivalent msgpack map, appended to `out`; checks the same
 * limits (depth, element count, body size). Integers stay integers, JSON strings become msgpack
 * str. Returns 0, or -1 with a human message (not JSON, not an object, duplicate key, too deep...). */
int sl_rpc_json_to_msgpack(const char *json, size_t len, const sl_rpc_limits_t *limits, msgpack_sbuffer *out,
                           char *err, size_t errlen);

/* Converts a msgpack buffer (one object) to compact JSON, malloc'd into *out (NUL-terminated), with
 * bin values as strings when they are valid UTF-8, else base64. Returns 0 or -1. */
int sl_rpc_msgpack_to_json(const void *buf, size_t len, char **out, size_t *outlen);

/* ---- the contract: services and methods ---- */

/* Owner RPCs are reachable from outside as POST /rpc/<SL_RPC_OWNER_SERVICE>/<Method>; the public
 * service is internal (the gateway calls it for public GETs) and never reachable from outside. */
#define SL_RPC_OWNER_SERVICE  "shareline.v1.Sessions"
#define SL_RPC_PUBLIC_SERVICE "shareline.v1.Public"
/* The owner console's sign-in (docs/console.md), internal like the public service: the gateway
 * calls it for /console/ requests. */
#define SL_RPC_CONSOLE_SERVICE "shareline.v1.Console"

typedef enum sl_rpc_method_id {
    SL_M_SYNC_SESSION,
    SL_M_APPEND_EXCHANGES,
    SL_M_GET_SESSION,
    SL_M_LIST_SESSIONS,
    SL_M_SET_VISIBILITY,
    SL_M_UPDATE_SESSION_TITLE,
    SL_M_UPDATE_EXCHANGE_TITLE,
    SL_M_SET_EXCHANGES_HIDDEN,
    SL_M_DELETE_EXCHANGE,
    SL_M_DELETE_SESSION,
    SL_M_GET_SHARE_SETTINGS,
    SL_M_PREVIEW_AS_VIEWER,
    SL_M_EXPORT_SESSION,
    SL_M_LIST_PROJECTS,
    SL_M_UPDATE_PROJECT,
    SL_M_SESSION_SIZES,
    SL_M_LIST_FINDINGS,
    SL_M_RESOLVE_FINDING,
    SL_M_OWNER_COUNT,                  /* the owner methods are the ones above */
    SL_M_GET_SHARE = SL_M_OWNER_COUNT, /* the public read (below) */
    /* The console's sign-in (internal). Requests and answers:
     *   SignIn {"login_link": L} or {"token": T} (no auth)  -> {"session_token", "max_age"}
     *   SignOut (auth: the console session's token)          -> {}
     *   WhoAmI (auth: any token of a user)                   -> {"user_id", "handle", "name", "expires_at"?}
     *   CreateLoginLink (auth: a user's bearer token)        -> {"url", "expires_in"} */
    SL_M_CONSOLE_SIGN_IN,
    SL_M_CONSOLE_SIGN_OUT,
    SL_M_CONSOLE_WHOAMI,
    SL_M_CONSOLE_LOGIN_LINK,
    SL_M_COUNT
} sl_rpc_method_id_t;

/* The full name, e.g. "shareline.v1.Sessions/SyncSession" (static), or NULL for no such id. */
const char *sl_rpc_method_name(sl_rpc_method_id_t m);
/* The id of a full method name, or -1. */
int sl_rpc_method_lookup(const char *name, size_t len);
/* 1 when name[0..len) is inside the owner service ("shareline.v1.Sessions/..."). */
int sl_rpc_owner_path(const char *name, size_t len);

/* Connect unary JSON (rpc/connect.c): rewrites the msgpack decoded from a request in the protobuf
 * JSON mapping (lowerCamelCase names, integers as strings, omitted defaults, nulls) into the
 * request map the method reads, appended to out. Returns 0, or -1 with a message (a bad integer). */
int sl_rpc_connect_normalize(sl_rpc_method_id_t method, const void *in, size_t len, msgpack_sbuffer *out,
                             char *err, size_t errlen);

/* ---- the contract: the public read, shareline.v1.Public/GetShare ----
 *
 * Request {"session_id": id, "rep"?: R, "have_version"?: V, "have_tag"?: T}: the representation
 * wanted (sl_rpc_rep_t, default JSON) and the version and content tag (sl_rpc_etag_tag of its
 * etag) of the copy of that representation the caller already holds (absent: none). Answer, one of:
 *   {"found": false}                                    unknown, private, revoked, deleted
 *   {"found": true, "unchanged": true, "version": V}    the caller's copy is current
 *   {"found": true, "version": V, "etag": "<tag>", "<rep key>": bin}
 *                                                       that one representation ("json", "json_gz",
 *                                                       "html", "html_gz", "md" or "md_gz")
 * Only what is served crosses: Redis holds the gzip forms as parts of one entry, read one at a time
 * (cache.h), and a plain form is inflated by the core. */

/* The representations of a projection, in their order in the answer. */
typedef enum sl_rpc_rep {
    SL_REP_JSON,
    SL_REP_JSON_GZ,
    SL_REP_HTML,
    SL_REP_HTML_GZ,
    SL_REP_MD,
    SL_REP_MD_GZ,
    SL_REP_COUNT
} sl_rpc_rep_t;

/* "json", "json_gz", "html", "html_gz", "md", "md_gz". */
const char *sl_rpc_rep_key(sl_rpc_rep_t r);

typedef struct sl_rpc_bytes {
    const char *ptr;
    size_t len;
} sl_rpc_bytes_t;

/* A GetShare answer. Decoded, its bytes point into the buffer it was decoded from. */
typedef struct sl_rpc_share {
    int found;
    int unchanged; /* found, and the caller's have_version is current: no representations */
    uint64_t version;
    sl_rpc_bytes_t etag;              /* without quotes or variant suffix */
    sl_rpc_bytes_t rep[SL_REP_COUNT]; /* found and not unchanged: the one asked for (ptr != NULL) */
    sl_rpc_rep_t which;               /* decoded: which one that is */
} sl_rpc_share_t;

/* Room for any request and for the not-found and unchanged answers. */
#define SL_RPC_SHARE_SMALL_MAX 128

/* The content tag of a projection: a 64-bit hash (never 0) of its etag, which names its version and
 * its content. Redis, the node memory and the gateway's copies keep it next to the version, and
 * "unchanged" is answered only when both match: a version number alone could name other bytes after
 * a restore. */
uint64_t sl_rpc_etag_tag(const char *etag, size_t len);
/* Encodes a request into buf[0..cap); returns its length, 0 when cap is too small. have_version and
 * have_tag are sent only together (0: no copy). */
size_t sl_rpc_share_request_encode(char *buf, size_t cap, const char *id, size_t idlen, sl_rpc_rep_t rep,
                                   uint64_t have_version, uint64_t have_tag);
/* Reads a request: 0, or -1 when "session_id" is missing or not a possible id (sl_rpc_id_valid), or
 * "rep" is not a representation. A request without a tag has no copy (*have_version = 0). */
int sl_rpc_share_request_decode(const msgpack_object *req, const char **id, size_t *idlen, sl_rpc_rep_t *rep,
                                uint64_t *have_version, uint64_t *have_tag);

/* Packs an answer (found: the representations whose ptr is set, one for GetShare; !found;
 * unchanged: the short form). */
void sl_rpc_share_pack(msgpack_packer *pk, const sl_rpc_share_t *s);
/* The same into buf[0..cap); returns the length, 0 when cap is too small. */
size_t sl_rpc_share_encode(char *buf, size_t cap, const sl_rpc_share_t *s);
/* Decodes an answer without allocating. Returns 0, or -1 when it is malformed or a "found" answer
 * lacks its version or etag, or does not carry exactly one representation. */
int sl_rpc_share_decode(const void *buf, size_t len, sl_rpc_share_t *out);

/* ---- server: method table and calls ---- */

typedef struct sl_rpc_server sl_rpc_server_t;
typedef struct sl_rpc_call sl_rpc_call_t;

/* A method implementation. It owns `call` until it answers with sl_rpc_reply() or sl_rpc_fail(),
 * which it must do exactly once, now or later (from the same loop). */
typedef void (*sl_rpc_handler)(sl_rpc_call_t *call, void *data);

/* The answer: code, and the reply map (msgpack) — the method's answer when code is OK, else the
 * error map. `body` is valid only during the callback. */
typedef void (*sl_rpc_reply_cb)(sl_rpc_code_t code, const void *body, size_t len, void *data);

/* Creates a server with these limits (NULL: the defaults). Returns 0 or -1 (out of memory). */
int sl_rpc_server_open(sl_rpc_server_t **out, const sl_rpc_limits_t *limits);
/* Frees the server; every call must have been answered. */
void sl_rpc_server_close(sl_rpc_server_t *srv);
const sl_rpc_limits_t *sl_rpc_server_limits(const sl_rpc_server_t *srv);

/* Registers `name` (e.g. sl_rpc_method_name(SL_M_SET_VISIBILITY)); the name is copied. */
int sl_rpc_register(sl_rpc_server_t *srv, const char *name, sl_rpc_handler handler, void *data);
int sl_rpc_has_method(const sl_rpc_server_t *srv, const char *name, size_t len);

/* Calls a method. `body` (msgpack) and `auth` (the bearer token, or NULL) are copied. The body is
 * checked with sl_rpc_check_msgpack() first. `cb` is called exactly once — possibly before
 * sl_rpc_call() returns (bad input, unknown method, or a handler that answers at once). */
void sl_rpc_call(sl_rpc_server_t *srv, const char *method, size_t method_len, const char *auth,
                 size_t auth_len, const void *body, size_t len, sl_rpc_reply_cb cb, void *data);

/* ---- GetShare's confirmation without a call ----
 *
 * The public read path's hot case: a caller (the gateway) holds a copy of a representation and asks
 * whether it is still the current one. The service that registered GetShare may also register a
 * confirmer, which answers at once from what it knows for certain, with no msgpack round trip and
 * no allocation: 1 when GetShare would have answered {"found":true,"unchanged":true} for exactly
 * this (session_id, have_version, have_tag) now, 0 when it cannot say so (the caller then makes the
 * GetShare call, which decides). A confirmer never answers 1 where the call would not have answered
 * "unchanged". id must be a possible id (sl_rpc_id_valid). */
typedef int (*sl_rpc_share_confirm_fn)(void *data, const char *id, size_t idlen, uint64_t have_version,
                                       uint64_t have_tag);
void sl_rpc_set_share_confirm(sl_rpc_server_t *srv, sl_rpc_share_confirm_fn fn, void *data);
/* 1 or 0 as above; 0 when no confirmer is registered. */
int sl_rpc_share_confirm(sl_rpc_server_t *srv, const char *id, size_t idlen, uint64_t have_version,
                         uint64_t have_tag);

/* ---- changes of public documents (live events) ----
 *
 * The service tells the transport that the public document of a session may have changed: an owner
 * change on any node (docs/invalidation.md: every node hears every invalidation). The transport
 * then asks GetShare what holds now; a notice says nothing of what changed and may be spurious. */
typedef void (*sl_rpc_change_fn)(void *data, const char *id, size_t idlen);
void sl_rpc_set_change_listener(sl_rpc_server_t *srv, sl_rpc_change_fn fn, void *data);
/* Called by the service; a no-op without a listener. */
void sl_rpc_changed(sl_rpc_server_t *srv, const char *id, size_t idlen);
/* 1 when the service can send change notices at all (else the transport must look by itself). */
void sl_rpc_set_changes_available(sl_rpc_server_t *srv, int available);
int sl_rpc_changes_available(const sl_rpc_server_t *srv);

/* ---- the viewer page's live script (rpc/live.c) ----
 *
 * The public page (built by the service) carries one inline script of ours that follows
 * /share/{id}/events; the transport allows exactly that script with a CSP hash. Both take it from
 * here, so the page and its Content-Security-Policy cannot disagree. */
const char *sl_rpc_live_script(size_t *len);
/* "'sha256-<base64>'" of the script (computed once). */
const char *sl_rpc_live_script_hash(void);

/* ---- bodies loaded after the caller is checked ----
 *
 * A transport (the gateway) that must not parse or inflate anything before the caller is known
 * calls with a body source instead of a body: the method checks the credential first, then loads
 * the body in three steps, the middle one fit to run off the loop (a thread pool):
 *   sl_rpc_load_take    on the loop: src->take copies the raw bytes out of the transport;
 *   sl_rpc_load_make    any thread: src->make turns them into the msgpack request (may be NULL:
 *                       the raw bytes are the request), which is then checked and unpacked;
 *   sl_rpc_load_finish  on the loop: the request is ready, or the call was answered with the error.
 * For a call made with a body (sl_rpc_call) the three are no-ops. src and src_data must outlive the
 * call (until its reply callback ran); make must not touch the transport. */
typedef struct sl_rpc_body_src {
    /* Appends the raw body to raw; SL_RPC_OK, or an error code with a message for the caller. */
    sl_rpc_code_t (*take)(void *data, msgpack_sbuffer *raw, char *msg, size_t msglen);
    /* Writes the msgpack request made from raw[0..len) to out; SL_RPC_OK, or an error code and message. */
    sl_rpc_code_t (*make)(void *data, const char *raw, size_t len, msgpack_sbuffer *out, char *msg,
                          size_t msglen);
} sl_rpc_body_src_t;

void sl_rpc_call_deferred(sl_rpc_server_t *srv, const char *method, size_t method_len, const char *auth,
                          size_t auth_len, const sl_rpc_body_src_t *src, void *src_data, sl_rpc_reply_cb cb,
                          void *data);
/* 0, or -1 when the call was answered with an error (and freed). */
int sl_rpc_load_take(sl_rpc_call_t *call);
/* The raw body's size after take (to decide whether make is worth a thread). */
size_t sl_rpc_load_size(const sl_rpc_call_t *call);
/* Touches only the call and src: safe on another thread while the loop goes on. */
void sl_rpc_load_make(sl_rpc_call_t *call);
/* 0 (sl_rpc_request() is the request), or -1 when the call was answered with the error. */
int sl_rpc_load_finish(sl_rpc_call_t *call);

/* ---- inside a handler ---- */

const msgpack_object *sl_rpc_request(const sl_rpc_call_t *call); /* the request map */
const char *sl_rpc_auth(const sl_rpc_call_t *call, size_t *len); /* NULL when none */
const char *sl_rpc_method(const sl_rpc_call_t *call);

/* The packer for the reply; pack exactly one map, then sl_rpc_reply(). */
msgpack_packer *sl_rpc_packer(sl_rpc_call_t *call);
/* Answers OK with what was packed (an empty map if nothing was), and frees the call. */
void sl_rpc_reply(sl_rpc_call_t *call);
/* Answers with an error and frees the call. `fmt` is a human message. */
void sl_rpc_fail(sl_rpc_call_t *call, sl_rpc_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers OK with `body` as the reply verbatim (already a msgpack map), and frees the call. */
void sl_rpc_reply_raw(sl_rpc_call_t *call, const void *body, size_t len);

/* ---- reading request fields (a field missing or nil counts as absent) ---- */

const msgpack_object *sl_rpc_field(const msgpack_object *map, const char *key);

/* Each returns 1 when present and valid, 0 when absent, -1 when present but of the wrong type or
 * out of range; on -1 (and on 0 when `required`) it fills msg with an "invalid_argument" text
 * naming the field. Strings are not copied: they point into the request. */
int sl_rpc_get_str(const msgpack_object *map, const char *key, int required, size_t max_len, const char **s,
                   size_t *len, char *msg, size_t msglen);
int sl_rpc_get_bool(const msgpack_object *map, const char *key, int required, int *out, char *msg,
                    size_t msglen);
int sl_rpc_get_i64(const msgpack_object *map, const char *key, int required, int64_t min, int64_t max,
                   int64_t *out, char *msg, size_t msglen);

/* msgpack_pack_str + body for a C string / a buffer. */
void sl_rpc_pack_str(msgpack_packer *pk, const char *s);
void sl_rpc_pack_strn(msgpack_packer *pk, const char *s, size_t len);

/* 1 when id[0..len) follows the session id rule of the contract: 1-64 bytes of A-Z a-z 0-9 '-' '_'
 * (so no id can ever name a path or need escaping). */
int sl_rpc_id_valid(const char *id, size_t len);

/* 1 when buf[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int sl_rpc_utf8_valid(const char *buf, size_t len);

#endif
