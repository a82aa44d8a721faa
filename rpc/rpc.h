/*
 * rpc — the contract layer: the msgpack wire format, status codes, the method table and decoding
 * limits. The gateway reaches the core only through sl_rpc_call(); the core implements the methods
 * it registers here. A request is a msgpack map; a reply is a msgpack map (the method's answer) or,
 * on error, the map {"code": <name>, "message": <text>}.
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
} sl_rpc_code_t;

/* "invalid_argument", ... as in API.md ("ok" for SL_RPC_OK). */
const char *sl_rpc_code_name(sl_rpc_code_t code);
/* 200, 400, 401, 403, 404, 409, 412, 429, 413, 503, 500, 501. */
int sl_rpc_code_http_status(sl_rpc_code_t code);

/* ---- decoding limits ---- */

typedef struct sl_rpc_limits {
    size_t max_body;       /* bytes of one request body (msgpack or JSON), default 32 MiB */
    unsigned max_depth;    /* nesting of maps/arrays, default 32 */
    size_t max_elements;   /* objects in one request (all levels), default 1,000,000 */
} sl_rpc_limits_t;

void sl_rpc_limits_default(sl_rpc_limits_t *l);

/* Walks a msgpack buffer without allocating and checks, before anything unpacks it: exactly one
 * object that fills the buffer (no trailing bytes), the top level is a map, nesting and element
 * counts within the limits, every declared length/count fits in the bytes that remain, every str
 * is valid UTF-8, map keys are strings, no ext types. Returns 0, or -1 with a human message. */
int sl_rpc_check_msgpack(const void *buf, size_t len, const sl_rpc_limits_t *limits, char *err, size_t errlen);

/* Converts a JSON object (UTF-8) to the equivalent msgpack map, appended to `out`; checks the same
 * limits (depth, element count, body size). Integers stay integers, JSON strings become msgpack
 * str. Returns 0, or -1 with a human message (not JSON, not an object, duplicate key, too deep...). */
int sl_rpc_json_to_msgpack(const char *json, size_t len, const sl_rpc_limits_t *limits, msgpack_sbuffer *out,
                           char *err, size_t errlen);

/* Converts a msgpack buffer (one object) to compact JSON, malloc'd into *out (NUL-terminated), with
 * bin values as strings when they are valid UTF-8, else base64. Returns 0 or -1. */
int sl_rpc_msgpack_to_json(const void *buf, size_t len, char **out, size_t *outlen);

/* ---- server: method table and calls ---- */

typedef struct sl_rpc_server sl_rpc_server_t;
typedef struct sl_rpc_call sl_rpc_call_t;

/* A method implementation. It owns `call` until it answers with sl_rpc_reply() or sl_rpc_fail(),
 * which it must do exactly once, now or later (from the same loop). */
typedef void (*sl_rpc_handler)(sl_rpc_call_t *call, void *data);

/* The answer: code, and the reply map (msgpack) — the method's answer when code is OK, else the
 * error map. `body` is valid only during the callback. */
typedef void (*sl_rpc_reply_cb)(sl_rpc_code_t code, const void *body, size_t len, void *data);

sl_rpc_server_t *sl_rpc_server_new(const sl_rpc_limits_t *limits);
void sl_rpc_server_free(sl_rpc_server_t *srv);
const sl_rpc_limits_t *sl_rpc_server_limits(const sl_rpc_server_t *srv);

/* Registers `name` (e.g. "shareline.v1.Sessions/SetVisibility"); the name is copied. */
int sl_rpc_register(sl_rpc_server_t *srv, const char *name, sl_rpc_handler handler, void *data);
int sl_rpc_has_method(const sl_rpc_server_t *srv, const char *name, size_t len);

/* Calls a method. `body` (msgpack) and `auth` (the bearer token, or NULL) are copied. The body is
 * checked with sl_rpc_check_msgpack() first. `cb` is called exactly once — possibly before
 * sl_rpc_call() returns (bad input, unknown method, or a handler that answers at once). */
void sl_rpc_call(sl_rpc_server_t *srv, const char *method, size_t method_len, const char *auth, size_t auth_len,
                 const void *body, size_t len, sl_rpc_reply_cb cb, void *data);

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
