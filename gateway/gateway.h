/*
 * gateway — the HTTP face of Shareline: h2o 2.2 on the caller's libuv loop, HTTP/1.1 and HTTP/2
 * (cleartext with prior knowledge on the same port, or TLS + ALPN when a certificate is given).
 * It translates requests into rpc calls (msgpack) and answers back into HTTP; it never reaches the
 * core, the cache or the store in any other way. The only h2o user in the project.
 *
 * Where things are: server.c (listening, routing), share.c (public share), copies.c (copies of
 * projections), owner_rpc.c (owner RPCs), specstory.c (the SpecStory-compatible API), http.c
 * (answers, headers, pending requests), metrics.c, route.c; internal headers in gateway/internal/.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc/rpc.h"

typedef struct sl_gateway sl_gateway_t;

typedef struct sl_gateway_config {
    const char *host;     /* IP literal to listen on, default "127.0.0.1" */
    unsigned port;        /* default 8080 */
    const char *tls_cert; /* PEM certificate chain; TLS is on when both cert and key are set */
    const char *tls_key;
    size_t max_body; /* request body limit answered with 413 + an error body (default: the rpc limit) */
    size_t share_cache_bytes;  /* copies of served representations (copies.c), default 64 MiB */
    unsigned max_connections;  /* open client connections; beyond, new ones are closed at once (16384) */
    unsigned send_timeout_ms;  /* a client that reads nothing of what we send for this long is
                                 disconnected (TCP_USER_TIMEOUT, zero-window probes included); 30000 */
    const char *metrics_token; /* when set, /metrics answers only "Authorization: Bearer <it>" (else 401) */
    const char *public_url;    /* SHARELINE_PUBLIC_URL: the console's origin as browsers see it (an https one
                                  behind a TLS proxy: Secure, __Host- cookie); NULL: this listener's */
    unsigned events_heartbeat_ms; /* live events: a comment line this often (default 15000) */
    unsigned max_event_streams;   /* live event streams open at once; beyond, 503 (default 20000) */
    /* /readyz: returns 1 when the process can serve (the store is reachable). */
    int (*ready)(void *data);
    /* /metrics: appends Prometheus text to *buf (malloc'd, grown with realloc), *len its length. */
    void (*metrics)(void *data, char **buf, size_t *len);
    void *data;
} sl_gateway_config_t;

/* Binds and starts serving on `loop`; rpc is not owned. Returns 0, or -1 with a message in err. */
int sl_gateway_open(sl_gateway_t **out, uv_loop_t *loop, sl_rpc_server_t *rpc, const sl_gateway_config_t *cfg,
                    char *err, size_t errlen);
/* Stops listening and closes handles; returns after the loop was given the chance to close them. */
void sl_gateway_close(sl_gateway_t *gw);

/* Appends one metric in the Prometheus text format ("# HELP", "# TYPE", the value) to *buf
 * (malloc'd, grown with realloc; *len its length): for the process's metrics callback. type is
 * "counter" or "gauge". */
void sl_gateway_metric(char **buf, size_t *len, const char *name, const char *type, const char *help,
                       uint64_t value);

#endif
