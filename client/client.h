/*
 * The Shareline owner-RPC client for internal services and tools (sharectl): one request map in,
 * one answer map out, msgpack over HTTP/2 (prior knowledge, or ALPN on https) or HTTP/1.1.
 *
 *   sl_client_t *c;
 *   if (sl_client_open(&c, "http://127.0.0.1:8080", token, SL_CLIENT_HTTP2) != 0) ...
 *   msgpack_sbuffer req; ... pack a map ...
 *   sl_client_answer_t a;
 *   if (sl_client_call(c, "SetVisibility", req.data, req.size, &a) == 0 && a.status == 200) ...
 *   sl_client_answer_free(&a);
 *
 * Not thread-safe per client; use one client per thread.
 */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H

#include <stddef.h>
#include <msgpack.h>

typedef struct sl_client sl_client_t;

typedef enum { SL_CLIENT_HTTP2 = 0, SL_CLIENT_HTTP1 = 1 } sl_client_proto_t;

/* base_url: "http://host:port" (no trailing path). token may be NULL (copied). Returns 0, or -1
 * when out of memory. */
int sl_client_open(sl_client_t **out, const char *base_url, const char *token, sl_client_proto_t proto);
void sl_client_close(sl_client_t *c);
/* Per-call timeout in milliseconds (default 30000). */
void sl_client_set_timeout(sl_client_t *c, long ms);
/* A service token acts for one user: adds "as_user" to every request map. 0 = off. */
void sl_client_set_as_user(sl_client_t *c, unsigned long long user_id);

typedef struct sl_client_answer {
    int status; /* HTTP status */
    msgpack_unpacked unpacked;
    const msgpack_object *map; /* the answer map (NULL if the body was not a msgpack map) */
    const char *code;          /* error code string ("not_found", ...) when status != 200 */
    size_t code_len;
    const char *message; /* error message when status != 200 */
    size_t message_len;
    char *body; /* raw body, malloc'd */
    size_t body_len;
} sl_client_answer_t;

/* method: "SyncSession" or a full "shareline.v1.Sessions/SyncSession", or a path of the server
 * starting with '/' ("/console/login-link"). req: a packed msgpack map.
 * Returns 0 when an HTTP answer arrived (look at ans->status), or -1 with err filled when the
 * server could not be reached. */
int sl_client_call(sl_client_t *c, const char *method, const void *req, size_t len, sl_client_answer_t *ans,
                   char *err, size_t errlen);
void sl_client_answer_free(sl_client_answer_t *ans);

#endif
