/*
 * The gateway's server: one h2o context on the caller's loop, listening on one port (HTTP/1.1 and
 * HTTP/2 with prior knowledge, or TLS + ALPN), one handler at "/" that routes by path to the
 * handlers of share.c, owner_rpc.c and specstory.c, plus /healthz, /readyz and /metrics.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gateway/internal/gateway.h"

typedef struct handler {
    h2o_handler_t super;
    sl_gateway_t *gw;
} handler_t;

/* ---- routing ---- */

static void send_text(sl_gateway_t *gw, h2o_req_t *req, int status, const char *text)
{
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_send(gw, req, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void send_metrics(sl_gateway_t *gw, h2o_req_t *req)
{
    if (gw->cfg.metrics_token && *gw->cfg.metrics_token) {
        size_t n = 0, want = strlen(gw->cfg.metrics_token);
        const char *tok = sl_gw_bearer(req, &n);
        if (tok == NULL || n != want || CRYPTO_memcmp(tok, gw->cfg.metrics_token, n) != 0) {
            sl_gw_add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, H2O_STRLIT("Bearer"));
            send_text(gw, req, 401, "metrics need Authorization: Bearer <SHARELINE_METRICS_TOKEN>\n");
            return;
        }
    }
    char *buf = NULL;
    size_t blen = 0;
    if (gw->cfg.metrics)
        gw->cfg.metrics(gw->cfg.data, &buf, &blen);
    sl_gw_metrics(gw, &buf, &blen);
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_send(gw, req, 200, "text/plain; version=0.0.4", buf ? buf : "", blen);
    free(buf);
}

static void send_not_allowed(sl_gateway_t *gw, h2o_req_t *req, const char *allow)
{
    sl_gw_add_header(req, H2O_TOKEN_ALLOW, allow, strlen(allow));
    sl_gw_count_status(gw, 405);
    req->res.status = 405;
    req->res.reason = "Method Not Allowed";
    sl_gw_add_header(req, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"));
    h2o_send_inline(req, H2O_STRLIT("{\"code\":\"invalid_argument\",\"message\":\"method not allowed\"}"));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    sl_gateway_t *gw = ((handler_t *)self)->gw;
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    sl_route_t rt;
    sl_route_classify(req->path.base, len, &rt);
    gw->requests[rt.kind]++;

    switch (rt.kind) {
    case SL_ROUTE_SHARE_JSON:
    case SL_ROUTE_SHARE_HTML:
        if (sl_gw_is_method(req, "GET") || sl_gw_is_method(req, "HEAD"))
            sl_gw_share(gw, req, rt.kind, rt.rest, rt.rest_len);
        else if (rt.kind == SL_ROUTE_SHARE_HTML)
            sl_gw_share_error(gw, req, rt.kind, 405, "GET, HEAD");
        else
            send_not_allowed(gw, req, "GET, HEAD");
        return 0;
    case SL_ROUTE_SHARE_EVENTS:
        if (sl_gw_is_method(req, "GET"))
            sl_gw_events(gw, req, rt.rest, rt.rest_len);
        else
            sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, 405, "GET");
        return 0;
    case SL_ROUTE_RPC:
        if (!sl_gw_is_method(req, "POST")) {
            sl_gw_add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("POST"));
            sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT, "owner RPCs are called with POST");
        } else if (!sl_rpc_owner_path(rt.rest, rt.rest_len)) {
            /* Only the owner service is reachable from outside; internal methods are not. */
            sl_gw_send_error(gw, req, SL_RPC_UNIMPLEMENTED,
                             "unknown service (expected " SL_RPC_OWNER_SERVICE ")");
        } else {
            sl_gw_owner_rpc(gw, req, rt.rest, rt.rest_len);
        }
        return 0;
    case SL_ROUTE_COMPAT:
        sl_gw_specstory(gw, req, rt.rest, rt.rest_len);
        return 0;
    case SL_ROUTE_HEALTH:
        send_text(gw, req, 200, "ok\n");
        return 0;
    case SL_ROUTE_READY: {
        int ready = gw->cfg.ready ? gw->cfg.ready(gw->cfg.data) : 1;
        send_text(gw, req, ready ? 200 : 503, ready ? "ready\n" : "not ready: database unreachable\n");
        return 0;
    }
    case SL_ROUTE_METRICS:
        send_metrics(gw, req);
        return 0;
    case SL_ROUTE_CONSOLE:
        sl_gw_console(gw, req, rt.rest, rt.rest_len);
        return 0;
    case SL_ROUTE_OTHER:
        break;
    }
    sl_gw_send_error(gw, req, SL_RPC_NOT_FOUND, "no such route");
    return 0;
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

int sl_gateway_open(sl_gateway_t **out, uv_loop_t *loop, sl_rpc_server_t *rpc, const sl_gateway_config_t *cfg,
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
    gw->upload_limits = *sl_rpc_server_limits(rpc);
    gw->upload_limits.max_body = SL_GW_MAX_UPLOAD;
    if (sl_copies_open(&gw->copies, gw->cfg.share_cache_bytes ? gw->cfg.share_cache_bytes : (64u << 20)) !=
        0) {
        free(gw);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (gw->cfg.max_connections == 0)
        gw->cfg.max_connections = 16384;
    if (sl_events_open(&gw->events, gw, gw->cfg.events_heartbeat_ms, gw->cfg.max_event_streams) != 0) {
        sl_copies_close(gw->copies);
        free(gw);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

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
    h2o_hostconf_t *host =
        h2o_config_register_host(&gw->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
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
    sl_events_close(gw->events);
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

void sl_gateway_close(sl_gateway_t *gw)
{
    if (gw == NULL)
        return;
    uv_close((uv_handle_t *)&gw->listener, on_listener_closed);
    sl_events_close(gw->events);
    uv_run(gw->loop, UV_RUN_NOWAIT);
    h2o_context_dispose(&gw->ctx);
    h2o_config_dispose(&gw->config);
    if (gw->ssl)
        SSL_CTX_free(gw->ssl);
    sl_copies_close(gw->copies);
    free(gw);
}
