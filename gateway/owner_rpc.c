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
    sl_pending_t *pd = sl_gw_pending_new(gw, req, SL_ROUTE_RPC);
    if (pd == NULL) {
        sl_gw_send_error(gw, req, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
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
    if (sl_rpc_json_to_msgpack(req->entity.base ? req->entity.base : "", blen, sl_rpc_server_limits(gw->rpc),
                               &sb, msg, sizeof(msg)) != 0) {
        msgpack_sbuffer_destroy(&sb);
        sl_gw_pending_finish(pd);
        /* The parser's message quotes input: keep only what is safe to embed. */
        for (char *p = msg; *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x80)
                *p = '\'';
        sl_gw_send_error(gw, req, SL_RPC_INVALID_ARGUMENT, msg);
        return;
    }
    sl_rpc_call(gw->rpc, method, mlen, auth, auth_len, sb.data, sb.size, on_rpc_reply, pd);
    msgpack_sbuffer_destroy(&sb);
}
