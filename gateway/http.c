/* Answers, request headers and requests answered later: what every handler of the gateway shares. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/internal/gateway.h"

/* ---- answering ---- */

void sl_gw_count_status(sl_gateway_t *gw, int status)
{
    int c = status / 100;
    if (c >= 1 && c <= 5)
        gw->status_class[c]++;
}

void sl_gw_add_header_str(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value, strlen(value));
}

void sl_gw_add_header(h2o_req_t *req, const h2o_token_t *token, const char *value, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, len);
}

void sl_gw_send(sl_gateway_t *gw, h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    sl_gw_count_status(gw, status);
    req->res.status = status;
    req->res.reason = "";
    if (ctype)
        sl_gw_add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    /* Explicit, so that HEAD answers carry the length of what GET would send. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void sl_gw_send_status(sl_gateway_t *gw, h2o_req_t *req, int status, const char *reason)
{
    sl_gw_count_status(gw, status);
    req->res.status = status;
    req->res.reason = reason;
    h2o_send_inline(req, NULL, 0);
}

void sl_gw_send_error(sl_gateway_t *gw, h2o_req_t *req, sl_rpc_code_t code, const char *msg)
{
    sl_gw_send_error_status(gw, req, sl_rpc_code_http_status(code), code, msg);
}

void sl_gw_send_error_status(sl_gateway_t *gw, h2o_req_t *req, int status, sl_rpc_code_t code,
                             const char *msg)
{
    char body[600];
    /* at most 500 bytes of the message: the answer always fits (snprintf's return value is what it
     * would have written, not what it wrote) */
    int n =
        snprintf(body, sizeof(body), "{\"code\":\"%s\",\"message\":\"%.500s\"}", sl_rpc_code_name(code), msg);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1;
    sl_gw_send(gw, req, status, "application/json", body, len);
}

void sl_gw_send_error_as(sl_gateway_t *gw, h2o_req_t *req, int json, sl_rpc_code_t code, const char *msg)
{
    if (json) {
        sl_gw_send_error(gw, req, code, msg);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    sl_rpc_pack_str(&pk, "code");
    sl_rpc_pack_str(&pk, sl_rpc_code_name(code));
    sl_rpc_pack_str(&pk, "message");
    sl_rpc_pack_str(&pk, msg);
    sl_gw_send(gw, req, sl_rpc_code_http_status(code), "application/msgpack", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- request headers ---- */

h2o_iovec_t sl_gw_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

int sl_gw_is_method(h2o_req_t *req, const char *method)
{
    return h2o_memis(req->method.base, req->method.len, method, strlen(method));
}

int sl_gw_accepts_gzip(h2o_req_t *req)
{
    h2o_iovec_t v = sl_gw_header(req, H2O_TOKEN_ACCEPT_ENCODING);
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

int sl_gw_etag_matches(h2o_req_t *req, const char *etag, size_t len)
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

int sl_gw_wants_markdown(h2o_req_t *req)
{
    h2o_iovec_t v = sl_gw_header(req, H2O_TOKEN_ACCEPT);
    return v.base != NULL && h2o_strstr(v.base, v.len, H2O_STRLIT("text/markdown")) != SIZE_MAX &&
           h2o_strstr(v.base, v.len, H2O_STRLIT("application/json")) == SIZE_MAX;
}

int sl_gw_media_type_is(h2o_iovec_t v, const char *type)
{
    size_t n = strlen(type);
    if (v.len < n || strncasecmp(v.base, type, n) != 0)
        return 0;
    return v.len == n || v.base[n] == ';' || v.base[n] == ' ';
}

const char *sl_gw_bearer(h2o_req_t *req, size_t *len)
{
    h2o_iovec_t a = sl_gw_header(req, H2O_TOKEN_AUTHORIZATION);
    if (a.len <= 7 || strncasecmp(a.base, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = a.base + 7;
    size_t n = a.len - 7;
    while (n > 0 && tok[0] == ' ')
        tok++, n--;
    while (n > 0 && tok[n - 1] == ' ')
        n--;
    *len = n;
    return tok;
}

/* ---- requests answered later ---- */

static void on_req_dispose(void *p)
{
    sl_pending_t **slot = p;
    if (*slot != NULL)
        (*slot)->req = NULL;
}

sl_pending_t *sl_gw_pending_new(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route)
{
    /* malloc + memset rather than calloc: glibc's calloc bypasses the thread cache, and this runs
     * once per public GET */
    sl_pending_t *pd = malloc(sizeof(*pd));
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

h2o_req_t *sl_gw_pending_finish(sl_pending_t *pd)
{
    h2o_req_t *req = pd->req;
    if (req != NULL)
        *pd->slot = NULL;
    else
        pd->gw->aborted += !pd->timed_out;
    free(pd);
    return req;
}
