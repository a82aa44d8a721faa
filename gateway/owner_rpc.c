/*
 * Owner RPCs: POST /rpc/<owner service>/<Method> (rpc.h), msgpack or JSON bodies (the answer uses the
 * request's encoding). The gateway checks the media type and the body's size, passes the bearer
 * token on (the core decides whether it is valid) and maps JSON to msgpack through the contract's
 * one mapping (rpc.h), with its limits.
 *
 * A request with Connect-Protocol-Version: 1 is a Connect unary call (docs/connect.md): its JSON is
 * in the protobuf JSON mapping (rpc/connect.c undoes it), its errors get Connect's statuses, and
 * Connect-Timeout-Ms is its deadline: when it passes first, the caller gets deadline_exceeded (the
 * call itself runs to its end, as a gRPC call past its deadline may).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/gateway.h"

/* ---- Connect deadlines ---- */

typedef struct deadline {
    uv_timer_t timer;
    sl_pending_t *pd; /* NULL once the call answered first */
} deadline_t;

static void on_deadline_closed(uv_handle_t *h)
{
    free(h);
}

static void deadline_stop(sl_pending_t *pd)
{
    deadline_t *d = pd->deadline;
    if (d == NULL)
        return;
    pd->deadline = NULL;
    d->pd = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, on_deadline_closed);
}

static void on_deadline(uv_timer_t *t)
{
    deadline_t *d = (deadline_t *)t;
    sl_pending_t *pd = d->pd;
    if (pd != NULL) {
        pd->deadline = NULL;
        h2o_req_t *req = pd->req;
        if (req != NULL) { /* answered now; the call's own answer will find no request */
            *pd->slot = NULL;
            pd->req = NULL;
            pd->timed_out = 1;
            pd->gw->deadlines++;
            sl_gw_send_error_status(pd->gw, req, sl_rpc_code_connect_status(SL_RPC_DEADLINE_EXCEEDED),
                                    SL_RPC_DEADLINE_EXCEEDED, "the deadline (Connect-Timeout-Ms) passed");
        }
    }
    uv_close((uv_handle_t *)t, on_deadline_closed);
}

static void on_rpc_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    int json = pd->json, connect = pd->connect;
    deadline_stop(pd);
    h2o_req_t *req = sl_gw_pending_finish(pd);
    if (req == NULL)
        return;
    int status = connect ? sl_rpc_code_connect_status(code) : sl_rpc_code_http_status(code);
    if (!json) {
        sl_gw_send(gw, req, status, "application/msgpack", body, len);
        return;
    }
    char *out;
    size_t outlen;
    if (sl_rpc_msgpack_to_json(body, len, &out, &outlen) != 0) {
        sl_gw_send_error(gw, req, SL_RPC_INTERNAL, "internal error (encoding the answer)");
        return;
    }
    sl_gw_send(gw, req, status, "application/json", out, outlen);
    free(out);
}

/* The body is copied out of the request only once the core has checked the token (rpc.h, "bodies
 * loaded after the caller is checked"), and JSON is decoded then, off the loop when it is large. */
static sl_rpc_code_t take_body(void *data, msgpack_sbuffer *raw, char *msg, size_t msglen)
{
    sl_pending_t *pd = data;
    if (pd->req == NULL) {
        snprintf(msg, msglen, "the client went away");
        return SL_RPC_UNAVAILABLE;
    }
    if (pd->req->entity.base && pd->req->entity.len)
        msgpack_sbuffer_write(raw, pd->req->entity.base, pd->req->entity.len);
    return SL_RPC_OK;
}

static sl_rpc_code_t json_body(void *data, const char *raw, size_t len, msgpack_sbuffer *out, char *msg,
                               size_t msglen)
{
    sl_pending_t *pd = data;
    if (sl_rpc_json_to_msgpack(raw, len, sl_rpc_server_limits(pd->gw->rpc), out, msg, msglen) != 0)
        return SL_RPC_INVALID_ARGUMENT;
    return SL_RPC_OK;
}

/* A Connect call's JSON: the same mapping, then the protobuf JSON mapping undone (rpc/connect.c). */
static sl_rpc_code_t connect_body(void *data, const char *raw, size_t len, msgpack_sbuffer *out, char *msg,
                                  size_t msglen)
{
    sl_pending_t *pd = data;
    msgpack_sbuffer plain;
    msgpack_sbuffer_init(&plain);
    sl_rpc_code_t rc = SL_RPC_OK;
    if (sl_rpc_json_to_msgpack(raw, len, sl_rpc_server_limits(pd->gw->rpc), &plain, msg, msglen) != 0 ||
        sl_rpc_connect_normalize((sl_rpc_method_id_t)pd->method, plain.data, plain.size, out, msg, msglen) !=
            0)
        rc = SL_RPC_INVALID_ARGUMENT;
    msgpack_sbuffer_destroy(&plain);
    return rc;
}

static const sl_rpc_body_src_t MSGPACK_BODY = {take_body, NULL};
static const sl_rpc_body_src_t JSON_BODY = {take_body, json_body};
static const sl_rpc_body_src_t CONNECT_BODY = {take_body, connect_body};

static h2o_iovec_t header_by_name(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* Connect-Timeout-Ms: 1 to 10 digits (the protocol's limit). Returns 0 and *ms, or -1. */
static int parse_timeout(h2o_iovec_t v, uint64_t *ms)
{
    if (v.len == 0 || v.len > 10)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v.base[i] - '0');
    }
    *ms = x;
    return 0;
}

void sl_gw_owner_rpc(sl_gateway_t *gw, h2o_req_t *req, const char *method, size_t mlen)
{
    h2o_iovec_t ctype = sl_gw_header(req, H2O_TOKEN_CONTENT_TYPE);
    h2o_iovec_t cver = header_by_name(req, "connect-protocol-version");
    h2o_iovec_t ctime = header_by_name(req, "connect-timeout-ms");
    int connect = cver.base != NULL, json;
    uint64_t timeout_ms = 0;
    if (connect && !h2o_memis(cver.base, cver.len, H2O_STRLIT("1"))) {
        sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT, "Connect-Protocol-Version must be 1");
        return;
    }
    if (!connect) /* the header is the Connect protocol's: other callers are unaffected by it */
        ctime = h2o_iovec_init(NULL, 0);
    if (ctime.base != NULL && parse_timeout(ctime, &timeout_ms) != 0) {
        sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT, "Connect-Timeout-Ms must be 1 to 10 digits");
        return;
    }
    if (sl_gw_media_type_is(ctype, "application/msgpack") ||
        sl_gw_media_type_is(ctype, "application/x-msgpack"))
        json = 0;
    else if (sl_gw_media_type_is(ctype, "application/json"))
        json = 1;
    else if (connect) { /* e.g. application/proto: the binary codec is not served (docs/connect.md) */
        sl_gw_send_error_status(gw, req, 415, SL_RPC_INVALID_ARGUMENT,
                                "Content-Type must be application/json (the Connect JSON codec)");
        return;
    } else {
        sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT,
                         "Content-Type must be application/msgpack or application/json");
        return;
    }
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (blen > gw->cfg.max_body) {
        char msg[160];
        snprintf(msg, sizeof(msg), "request body of %zu bytes exceeds the limit of %zu bytes", blen,
                 gw->cfg.max_body);
        if (connect)
            sl_gw_send_error_status(gw, req, sl_rpc_code_connect_status(SL_RPC_PAYLOAD_TOO_LARGE),
                                    SL_RPC_PAYLOAD_TOO_LARGE, msg);
        else
            sl_gw_send_error_as(gw, req, json, SL_RPC_PAYLOAD_TOO_LARGE, msg);
        return;
    }
    size_t auth_len = 0;
    const char *auth = sl_gw_bearer(req, &auth_len);
    /* no bearer token: the console's cookie, with its CSRF and origin checks (console.c) */
    if (auth == NULL && sl_gw_console_credential(gw, req, &auth, &auth_len) < 0)
        return;
    sl_pending_t *pd = sl_gw_pending_new(gw, req, SL_ROUTE_RPC);
    if (pd == NULL) {
        sl_gw_send_error(gw, req, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pd->json = json;
    pd->connect = connect;
    pd->method = sl_rpc_method_lookup(method, mlen);
    if (ctime.base != NULL) {
        deadline_t *d = calloc(1, sizeof(*d));
        if (d != NULL) {
            d->pd = pd;
            pd->deadline = d;
            uv_timer_init(gw->loop, &d->timer);
            uv_timer_start(&d->timer, on_deadline, timeout_ms, 0);
        }
    }
    sl_rpc_call_deferred(gw->rpc, method, mlen, auth, auth_len,
                         !json     ? &MSGPACK_BODY
                         : connect ? &CONNECT_BODY
                                   : &JSON_BODY,
                         pd, on_rpc_reply, pd);
}
