/*
 * The public share: GET/HEAD /api/v1/share/{id} (JSON, or Markdown for Accept: text/markdown) and
 * /share/{id} (the viewer page). Each asks the core (GetShare, rpc.h) for the one representation it
 * serves, with the version of the copy of it that the node holds (copies.c); "unchanged" is
 * answered from the copy, anything else replaces it.
 *
 * Unknown, private, revoked and deleted sessions get one answer, byte for byte.
 */
#include <string.h>

#include "gateway/internal/gateway.h"

/* The viewer page loads nothing from elsewhere: inline CSS, and one script of ours (rpc/live.c),
 * allowed by its hash, which may only connect back here (its event stream). Error pages run none. */
static char page_csp[400];
static size_t page_csp_len;
static const char ERROR_CSP[] =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const char *sl_gw_page_csp(void)
{
    if (page_csp_len == 0)
        page_csp_len = (size_t)snprintf(
            page_csp, sizeof(page_csp),
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src %s; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sl_rpc_live_script_hash());
    return page_csp;
}

static const char NOT_FOUND_HTML[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<meta name=\"robots\" content=\"noindex\"><title>Not found · Shareline</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}</style></head><body><h1>This share link does not exist</h1>"
    "<p>The session may never have existed, or its owner made it private or deleted it.</p>"
    "</body></html>\n";

static const char ERROR_HTML_HEAD[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<meta name=\"robots\" content=\"noindex\"><title>Shareline</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}</style></head><body><h1>";

static void common_headers(h2o_req_t *req, sl_route_kind_t route);

void sl_gw_share_error(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route, int status, const char *allow)
{
    const char *what = status == 405   ? "This address only answers GET and HEAD"
                       : status == 503 ? "Temporarily unavailable: please try again in a moment"
                                       : "Something went wrong on our side";
    if (allow)
        sl_gw_add_header(req, H2O_TOKEN_ALLOW, allow, strlen(allow));
    if (route != SL_ROUTE_SHARE_HTML) {
        common_headers(req, route);
        sl_gw_send_error(gw, req,
                         status == 405   ? SL_RPC_INVALID_ARGUMENT
                         : status == 503 ? SL_RPC_UNAVAILABLE
                                         : SL_RPC_INTERNAL,
                         status == 405   ? "method not allowed"
                         : status == 503 ? "temporarily unavailable, retry later"
                                         : "internal error");
        return;
    }
    common_headers(req, route);
    size_t n = strlen(ERROR_HTML_HEAD) + strlen(what) + 32;
    char *page = h2o_mem_alloc_pool(&req->pool, n);
    int k = snprintf(page, n, "%s%s</h1></body></html>\n", ERROR_HTML_HEAD, what);
    sl_gw_send(gw, req, status, "text/html; charset=utf-8", page,
               k < 0           ? 0
               : (size_t)k < n ? (size_t)k
                               : n - 1);
}

/* Header names that are not h2o tokens, made once (h2o keeps a pointer to the name). */
static h2o_iovec_t HDR_ROBOTS = {H2O_STRLIT("x-robots-tag")};
static h2o_iovec_t HDR_NOSNIFF = {H2O_STRLIT("x-content-type-options")};
static h2o_iovec_t HDR_REFERRER = {H2O_STRLIT("referrer-policy")};
static h2o_iovec_t HDR_CSP = {H2O_STRLIT("content-security-policy")};

static void add_named(h2o_req_t *req, h2o_iovec_t *name, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name->base, name->len, 0, NULL, value, len);
}

static void page_headers(h2o_req_t *req, sl_route_kind_t route, int page)
{
    /* A shared cache must revalidate every time: a revoked link must not outlive the revocation. */
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-cache"));
    add_named(req, &HDR_ROBOTS, H2O_STRLIT("noindex, nofollow"));
    add_named(req, &HDR_NOSNIFF, H2O_STRLIT("nosniff"));
    add_named(req, &HDR_REFERRER, H2O_STRLIT("no-referrer"));
    if (route == SL_ROUTE_SHARE_JSON) {
        sl_gw_add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept, Accept-Encoding"));
    } else {
        sl_gw_add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept-Encoding"));
        if (page) {
            const char *csp = sl_gw_page_csp(); /* made once, with its length */
            add_named(req, &HDR_CSP, csp, page_csp_len);
        } else
            add_named(req, &HDR_CSP, ERROR_CSP, sizeof(ERROR_CSP) - 1);
    }
}

static void common_headers(h2o_req_t *req, sl_route_kind_t route)
{
    page_headers(req, route, 0);
}

void sl_gw_share_not_found(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route)
{
    common_headers(req, route);
    if (route == SL_ROUTE_SHARE_JSON)
        sl_gw_send(gw, req, 404, "application/json; charset=utf-8",
                   H2O_STRLIT("{\"code\":\"not_found\",\"message\":\"share not found\"}"));
    else
        sl_gw_send(gw, req, 404, "text/html; charset=utf-8", NOT_FOUND_HTML, sizeof(NOT_FOUND_HTML) - 1);
}

static sl_rpc_rep_t rep_of(sl_route_kind_t route, int gzip, int markdown)
{
    if (route != SL_ROUTE_SHARE_JSON)
        return gzip ? SL_REP_HTML_GZ : SL_REP_HTML;
    if (markdown)
        return gzip ? SL_REP_MD_GZ : SL_REP_MD;
    return gzip ? SL_REP_JSON_GZ : SL_REP_JSON;
}

/* What a request wants: which route, and whether gzip and Markdown were asked for. */
typedef struct want {
    sl_route_kind_t route;
    int gzip;
    int markdown;
} want_t;

static want_t want_of(const sl_pending_t *pd)
{
    return (want_t){pd->route, pd->gzip, pd->markdown};
}

/* Answers with the representation: from the copy e without copying it, or (e == NULL) from a
 * decoded answer that could not be kept, copied into the request. */
static void serve(sl_gateway_t *gw, h2o_req_t *req, want_t w, sl_copy_t *e, const sl_rpc_share_t *s)
{
    sl_rpc_rep_t rep = rep_of(w.route, w.gzip, w.markdown);
    const char *body, *tag;
    size_t len, taglen;
    char local[SL_REP_TAG_MAX];
    if (e != NULL) {
        sl_copy_rep(e, &body, &len, &tag, &taglen); /* resolved when the copy was stored */
    } else {
        body = s->rep[rep].ptr;
        len = s->rep[rep].len;
        taglen = sl_rep_tag(s, rep, local);
        tag = local;
    }
    page_headers(req, w.route, 1);
    /* a copy's ETag lives as long as the answer that points to it (sl_copy_send keeps the copy) */
    int direct = e != NULL && !sl_gw_is_method(req, "HEAD");
    sl_gw_add_header(req, H2O_TOKEN_ETAG, direct ? tag : h2o_strdup(&req->pool, tag, taglen).base, taglen);
    if (sl_gw_etag_matches(req, tag, taglen)) {
        if (direct) /* the header points into the copy: keep it until the request is gone */
            sl_copy_hold(e, req);
        sl_gw_send_status(gw, req, 304, "Not Modified");
        return;
    }
    if (w.gzip)
        sl_gw_add_header(req, H2O_TOKEN_CONTENT_ENCODING, H2O_STRLIT("gzip"));
    const char *ctype = w.route == SL_ROUTE_SHARE_JSON ? (w.markdown ? "text/markdown; charset=utf-8"
                                                                     : "application/json; charset=utf-8")
                                                       : "text/html; charset=utf-8";
    if (!direct) {
        /* HEAD: h2o_send_inline() knows to send the headers only */
        sl_gw_send(gw, req, 200, ctype, body, len);
        return;
    }
    sl_gw_count_status(gw, 200);
    req->res.status = 200;
    req->res.reason = "OK";
    sl_gw_add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype, strlen(ctype));
    sl_copy_send(e, req);
}

static void ask(sl_gateway_t *gw, sl_pending_t *pd);

static void on_share_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    if (pd->req == NULL) {
        sl_gw_pending_finish(pd);
        return;
    }
    sl_rpc_share_t s;
    int ok = code == SL_RPC_OK && sl_rpc_share_decode(body, len, &s) == 0;
    sl_rpc_rep_t rep = rep_of(pd->route, pd->gzip, pd->markdown);
    if (ok && s.found && !s.unchanged && s.which != rep)
        ok = 0; /* not what was asked for */
    if (ok && s.found && s.unchanged) {
        sl_copy_t *e = sl_copies_find(gw->copies, pd->id, pd->idlen, rep);
        if (e == NULL || sl_copy_version(e) != s.version || sl_copy_tag(e) != pd->have_tag) {
            /* our copy went away (or was replaced) meanwhile: ask again for the representation */
            pd->have_version = 0;
            pd->have_tag = 0;
            ask(gw, pd);
            return;
        }
        sl_copies_count(gw->copies, 1);
        sl_copies_touch(gw->copies, e);
        want_t w = want_of(pd);
        serve(gw, sl_gw_pending_finish(pd), w, e, NULL);
        return;
    }
    sl_pending_t d = *pd;
    h2o_req_t *req = sl_gw_pending_finish(pd);
    if (code != SL_RPC_OK || !ok) {
        sl_gw_share_error(gw, req, d.route, code == SL_RPC_UNAVAILABLE ? 503 : 500, NULL);
        return;
    }
    sl_copies_count(gw->copies, 0);
    /* Replaces (or, when not found, drops) the copy this node held. */
    sl_copy_t *e = s.found ? sl_copies_put(gw->copies, d.id, d.idlen, rep, body, len) : NULL;
    if (!s.found)
        sl_copies_drop_id(gw->copies, d.id, d.idlen); /* not (or no longer) public: nothing of it is kept */
    if (!s.found)
        sl_gw_share_not_found(gw, req, d.route);
    else
        serve(gw, req, want_of(&d), e, &s);
}

static void ask(sl_gateway_t *gw, sl_pending_t *pd)
{
    char buf[SL_RPC_SHARE_SMALL_MAX];
    size_t n = sl_rpc_share_request_encode(buf, sizeof(buf), pd->id, pd->idlen,
                                           rep_of(pd->route, pd->gzip, pd->markdown), pd->have_version,
                                           pd->have_tag);
    const char *m = sl_rpc_method_name(SL_M_GET_SHARE);
    sl_rpc_call(gw->rpc, m, strlen(m), NULL, 0, buf, n, on_share_reply, pd);
}

void sl_gw_share(sl_gateway_t *gw, h2o_req_t *req, sl_route_kind_t route, const char *id, size_t idlen)
{
    if (!sl_route_share_id_valid(id, idlen)) {
        sl_gw_share_not_found(gw, req, route);
        return;
    }
    want_t w = {route, sl_gw_accepts_gzip(req), route == SL_ROUTE_SHARE_JSON && sl_gw_wants_markdown(req)};
    sl_copy_t *e = sl_copies_find(gw->copies, id, idlen, rep_of(route, w.gzip, w.markdown));
    if (e != NULL && sl_rpc_share_confirm(gw->rpc, id, idlen, sl_copy_version(e), sl_copy_tag(e))) {
        /* the core knows for certain that our copy is current (rpc.h): no call */
        sl_copies_count(gw->copies, 1);
        sl_copies_touch(gw->copies, e);
        serve(gw, req, w, e, NULL);
        return;
    }
    sl_pending_t *pd = sl_gw_pending_new(gw, req, route);
    if (pd == NULL) {
        sl_gw_share_error(gw, req, route, 503, NULL);
        return;
    }
    pd->gzip = w.gzip;
    pd->markdown = w.markdown;
    memcpy(pd->id, id, idlen);
    pd->idlen = idlen;
    pd->have_version = e ? sl_copy_version(e) : 0;
    pd->have_tag = e ? sl_copy_tag(e) : 0;
    ask(gw, pd);
}
