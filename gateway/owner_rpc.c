/*
 * Owner RPCs: POST /rpc/<owner service>/<Method> (rpc.h), msgpack or JSON bodies (the answer uses the
 * request's encoding). The gateway checks the media type and the body's size, passes the bearer
 * token on (the core decides whether it is valid) and maps JSON to msgpack through the contract's
 * one mapping (rpc.h), with its limits.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gateway/internal/gateway.h"

static void on_rpc_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    int json = pd->json;
    h2o_req_t *req = sl_gw_pending_finish(pd);
    if (req == NULL)
        return;
    int status = sl_rpc_code_http_status(code);
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

static const sl_rpc_body_src_t MSGPACK_BODY = {take_body, NULL};
static const sl_rpc_body_src_t JSON_BODY = {take_body, json_body};

void sl_gw_owner_rpc(sl_gateway_t *gw, h2o_req_t *req, const char *method, size_t mlen)
{
    h2o_iovec_t ctype = sl_gw_header(req, H2O_TOKEN_CONTENT_TYPE);
    int json;
    if (sl_gw_media_type_is(ctype, "application/msgpack") ||
        sl_gw_media_type_is(ctype, "application/x-msgpack"))
        json = 0;
    else if (sl_gw_media_type_is(ctype, "application/json"))
        json = 1;
    else {
        sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT,
                         "Content-Type must be application/msgpack or application/json");
        return;
    }
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (blen > gw->cfg.max_body) {
        char msg[160];
        snprintf(msg, sizeof(msg), "request body of %zu bytes exceeds the limit of %zu bytes", blen,
                 gw->cfg.max_body);
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
    sl_rpc_call_deferred(gw->rpc, method, mlen, auth, auth_len, json ? &JSON_BODY : &MSGPACK_BODY, pd,
                         on_rpc_reply, pd);
}
