/*
 * The owner console (docs/console.md): /console/ and its assets (built into the binary, strong
 * ETags), sign-in by a one-time link or a token form, the session cookie, the CSRF token, sign-out,
 * "Preview as Viewer", and the cookie credential of owner RPCs (owner_rpc.c asks here).
 *
 * The console is a client of the owner RPCs like any other: it calls POST /rpc/... with the cookie
 * instead of a bearer token, and nothing else. What makes a cookie safe as a credential:
 *   - the cookie is HttpOnly, SameSite=Strict, Path=/, and on TLS Secure with the __Host- name;
 *   - a call that changes anything (every RPC, sign-out, the token form) must come from our own
 *     origin (Origin equal to this server's scheme and authority; Sec-Fetch-Site, when sent, is
 *     same-origin) and, when authenticated by the cookie, carry X-CSRF-Token: the SHA-256 of the
 *     session's token under a label, which only a page that read /console/me of this origin knows;
 *   - bearer-token callers are unaffected: a request with Authorization never looks at cookies.
 * The core decides whether the session is valid (core/console.c): here only shapes are checked.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "gateway/internal/gateway.h"

/* ---- the assets (generated from gateway/console/ by gateway/CMakeLists.txt) ---- */

typedef struct sl_console_asset {
    const char *path; /* after "/console", e.g. "/console.js" */
    const unsigned char *body;
    size_t len;
} sl_console_asset_t;
extern const sl_console_asset_t sl_console_assets[];
extern const size_t sl_console_assets_count;

static char asset_etags[8][36]; /* "\"<32 hex>\"", made once */

#define CONSOLE_CSP                                                                                          \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "    \
    "frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
/* The public page as a viewer gets it, framed by the console only, with no script and no origin. */
#define PREVIEW_CSP                                                                                          \
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "              \
    "form-action 'none'; frame-ancestors 'self'"

#define COOKIE_PLAIN  "shareline_console"
#define COOKIE_SECURE "__Host-shareline_console"
#define MAX_TOKEN     256
#define MAX_FORM      4096

/* Browsers see https when this listener has TLS or when the public URL is https (a TLS proxy in
 * front): then the cookie is Secure and __Host- (no sibling host can plant one of that name). */
static int secure(const sl_gateway_t *gw)
{
    return gw->ssl != NULL || (gw->cfg.public_url && strncasecmp(gw->cfg.public_url, "https://", 8) == 0);
}

static const char *cookie_name(const sl_gateway_t *gw)
{
    return secure(gw) ? COOKIE_SECURE : COOKIE_PLAIN;
}

static void security_headers(h2o_req_t *req, const char *csp)
{
    sl_gw_add_header_str(req, "content-security-policy", csp);
    sl_gw_add_header_str(req, "x-content-type-options", "nosniff");
    /* same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on a form post,
     * which the origin check must refuse; nothing is sent to another origin either way */
    sl_gw_add_header_str(req, "referrer-policy", "same-origin");
    sl_gw_add_header_str(req, "cross-origin-opener-policy", "same-origin");
    sl_gw_add_header_str(req, "cross-origin-resource-policy", "same-origin");
}

/* A short HTML page of ours (no user text) with the console's headers. */
static void send_page(sl_gateway_t *gw, h2o_req_t *req, int status, const char *title, const char *text)
{
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                     "<title>%s · Shareline console</title><link rel=\"icon\" href=\"data:,\"><link "
                     "rel=\"stylesheet\" href=\"/console/console.css\">"
                     "</head><body><main class=\"notice\"><h1>%s</h1><p>%s</p>"
                     "<p><a href=\"/console/\">Open the console</a></p></main></body></html>\n",
                     title, title, text);
    security_headers(req, CONSOLE_CSP);
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_send(gw, req, status, "text/html; charset=utf-8", body, n < 0 ? 0 : (size_t)n);
}

/* The page a sign-in link opens: one button that posts the link (its characters are checked:
 * [A-Za-z0-9_-] only, nothing to escape). */
static void send_link_page(sl_gateway_t *gw, h2o_req_t *req, const char *link, size_t n)
{
    char body[1200];
    int k = snprintf(
        body, sizeof(body),
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        "<title>Sign in · Shareline console</title><link rel=\"icon\" href=\"data:,\"><link "
        "rel=\"stylesheet\" href=\"/console/console.css\">"
        "</head><body><main class=\"notice\"><h1>Sign in to the Shareline console</h1>"
        "<p>This one-time link signs you in. It works once and expires 10 minutes after it was made.</p>"
        "<form method=\"post\" action=\"/console/login\"><input type=\"hidden\" name=\"link\" "
        "value=\"%.*s\"><button type=\"submit\" id=\"link-signin\">Sign in</button></form>"
        "</main></body></html>\n",
        (int)n, link);
    security_headers(req, CONSOLE_CSP);
    sl_gw_add_header_str(req, "x-frame-options", "DENY");
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_send(gw, req, 200, "text/html; charset=utf-8", body, k < 0 ? 0 : (size_t)k);
}

static void send_json_error(sl_gateway_t *gw, h2o_req_t *req, sl_rpc_code_t code, const char *msg)
{
    security_headers(req, CONSOLE_CSP);
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_send_error(gw, req, code, msg);
}

static void send_asset(sl_gateway_t *gw, h2o_req_t *req, size_t i)
{
    const sl_console_asset_t *a = &sl_console_assets[i];
    char *tag = asset_etags[i];
    if (tag[0] == '\0') {
        unsigned char d[32];
        SHA256(a->body, a->len, d);
        tag[0] = '"';
        for (int k = 0; k < 16; k++)
            snprintf(tag + 1 + 2 * k, 3, "%02x", d[k]);
        tag[33] = '"';
        tag[34] = '\0';
    }
    security_headers(req, CONSOLE_CSP);
    sl_gw_add_header_str(req, "x-frame-options", "DENY");
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-cache"));
    sl_gw_add_header(req, H2O_TOKEN_ETAG, tag, 34);
    if (sl_gw_etag_matches(req, tag, 34)) {
        sl_gw_send_status(gw, req, 304, "Not Modified");
        return;
    }
    size_t pl = strlen(a->path);
    const char *ctype = pl > 3 && strcmp(a->path + pl - 3, ".js") == 0    ? "text/javascript; charset=utf-8"
                        : pl > 4 && strcmp(a->path + pl - 4, ".css") == 0 ? "text/css; charset=utf-8"
                                                                          : "text/html; charset=utf-8";
    sl_gw_send(gw, req, 200, ctype, (const char *)a->body, a->len);
}

/* ---- cookie, origin, CSRF ---- */

static int token_chars_ok(const char *s, size_t n)
{
    if (n == 0 || n > MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* The console session's token from the Cookie header(s), or NULL. */
static const char *session_cookie(sl_gateway_t *gw, h2o_req_t *req, size_t *len)
{
    const char *name = cookie_name(gw);
    size_t nlen = strlen(name);
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        const char *p = v.base, *end = v.base + v.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *pair = p;
            while (p < end && *p != ';')
                p++;
            size_t plen = (size_t)(p - pair);
            if (plen > nlen && memcmp(pair, name, nlen) == 0 && pair[nlen] == '=' &&
                token_chars_ok(pair + nlen + 1, plen - nlen - 1)) {
                *len = plen - nlen - 1;
                return pair + nlen + 1;
            }
        }
    }
    return NULL;
}

/* The CSRF token of a console session: base64url of SHA-256("shareline console csrf\n" + token),
 * 43 characters. Only the holder of the session's token (the server, and a page of this origin that
 * asked /console/me) knows it. */
static void csrf_of(const char *tok, size_t len, char out[44])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const char label[] = "shareline console csrf\n";
    unsigned char in[sizeof(label) - 1 + MAX_TOKEN], d[33];
    if (len > MAX_TOKEN)
        len = MAX_TOKEN;
    memcpy(in, label, sizeof(label) - 1);
    memcpy(in + sizeof(label) - 1, tok, len);
    SHA256(in, sizeof(label) - 1 + len, d);
    d[32] = 0;
    size_t k = 0;
    for (size_t i = 0; i < 33 && k < 43; i += 3) {
        uint32_t v =
            (uint32_t)d[i] << 16 | (uint32_t)(i + 1 < 33 ? d[i + 1] : 0) << 8 | (i + 2 < 33 ? d[i + 2] : 0);
        for (int s = 18; s >= 0 && k < 43; s -= 6)
            out[k++] = b64[(v >> s) & 63];
    }
    out[43] = '\0';
}

/* 1 when the request comes from a page of this server's own origin. */
static int same_origin(sl_gateway_t *gw, h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-fetch-site"), -1);
    if (i >= 0 && !h2o_memis(req->headers.entries[i].value.base, req->headers.entries[i].value.len,
                             H2O_STRLIT("same-origin")))
        return 0;
    h2o_iovec_t o = h2o_iovec_init(NULL, 0);
    if ((i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1)) >= 0)
        o = req->headers.entries[i].value;
    if (o.base == NULL)
        return 0;
    /* the public URL's origin (scheme://host[:port], what a browser behind a proxy sends) ... */
    const char *pu = gw->cfg.public_url, *host = pu ? strstr(pu, "://") : NULL;
    if (host != NULL) {
        const char *slash = strchr(host + 3, '/');
        size_t plen = slash ? (size_t)(slash - pu) : strlen(pu);
        if (o.len == plen && strncasecmp(o.base, pu, plen) == 0)
            return 1;
    }
    /* ... or this listener's scheme and the request's authority */
    const char *scheme = gw->ssl ? "https://" : "http://";
    size_t sl = strlen(scheme);
    return req->authority.len > 0 && o.len == sl + req->authority.len &&
           strncasecmp(o.base, scheme, sl) == 0 &&
           strncasecmp(o.base + sl, req->authority.base, req->authority.len) == 0;
}

int sl_gw_console_credential(sl_gateway_t *gw, h2o_req_t *req, const char **tok, size_t *len)
{
    *tok = session_cookie(gw, req, len);
    if (*tok == NULL)
        return 0;
    if (!same_origin(gw, req)) {
        sl_gw_send_error(gw, req, SL_RPC_PERMISSION_DENIED,
                         "a console call must come from the console's origin");
        return -1;
    }
    char want[44];
    csrf_of(*tok, *len, want);
    h2o_iovec_t got = h2o_iovec_init(NULL, 0);
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-csrf-token"), -1);
    if (i >= 0)
        got = req->headers.entries[i].value;
    if (got.len != 43 || CRYPTO_memcmp(got.base, want, 43) != 0) {
        sl_gw_send_error(gw, req, SL_RPC_PERMISSION_DENIED, "missing or wrong X-CSRF-Token");
        return -1;
    }
    return 1;
}

static void set_cookie(sl_gateway_t *gw, h2o_req_t *req, const char *tok, size_t len, uint64_t max_age)
{
    char v[512];
    snprintf(v, sizeof(v), "%s=%.*s; Path=/; Max-Age=%llu; HttpOnly; SameSite=Strict%s", cookie_name(gw),
             (int)len, tok, (unsigned long long)max_age, secure(gw) ? "; Secure" : "");
    sl_gw_add_header_str(req, "set-cookie",
                         h2o_strdup(&req->pool, v, SIZE_MAX).base); /* h2o keeps the pointer */
}

static void clear_cookie(sl_gateway_t *gw, h2o_req_t *req)
{
    char v[200];
    snprintf(v, sizeof(v), "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s", cookie_name(gw),
             secure(gw) ? "; Secure" : "");
    sl_gw_add_header_str(req, "set-cookie",
                         h2o_strdup(&req->pool, v, SIZE_MAX).base); /* h2o keeps the pointer */
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
}

/* ---- calls to the core ---- */

enum { ACT_SIGN_IN, ACT_SIGN_OUT, ACT_ME, ACT_PREVIEW, ACT_LINK };

typedef struct reply_view {
    msgpack_unpacked u;
    const msgpack_object *map;
} reply_view_t;

static int view_open(reply_view_t *v, const void *body, size_t len)
{
    msgpack_unpacked_init(&v->u);
    if (msgpack_unpack_next(&v->u, body, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        v->u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&v->u);
        return -1;
    }
    v->map = &v->u.data;
    return 0;
}

static const char *view_str(reply_view_t *v, const char *key, size_t *len)
{
    const msgpack_object *o = sl_rpc_field(v->map, key);
    if (o == NULL || o->type != MSGPACK_OBJECT_STR)
        return NULL;
    *len = o->via.str.size;
    return o->via.str.ptr;
}

static void on_console_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    int act = pd->action, json = pd->json;
    char csrf[44];
    memcpy(csrf, pd->id, sizeof(csrf));
    h2o_req_t *req = sl_gw_pending_finish(pd);
    if (req == NULL)
        return;
    reply_view_t v;
    if (act == ACT_SIGN_OUT && (code == SL_RPC_OK || code == SL_RPC_UNAUTHENTICATED)) {
        /* ended now in MariaDB (or was no session): the cookie goes too */
        clear_cookie(gw, req);
        security_headers(req, CONSOLE_CSP);
        sl_gw_send(gw, req, 200, "application/json", "{}", 2);
        return;
    }
    if (code != SL_RPC_OK) {
        /* the core's message is ours: it names the failure class, never a token */
        const char *msg = "request failed";
        size_t mlen = 0;
        if (view_open(&v, body, len) == 0) {
            const char *m = view_str(&v, "message", &mlen);
            char buf[300];
            snprintf(buf, sizeof(buf), "%.*s", m ? (int)mlen : 0, m ? m : "");
            msgpack_unpacked_destroy(&v.u);
            if (code == SL_RPC_UNAUTHENTICATED && act != ACT_SIGN_IN && act != ACT_LINK)
                snprintf(buf, sizeof(buf), "not signed in (or the console session ended)");
            if (act == ACT_SIGN_IN && code == SL_RPC_UNAUTHENTICATED)
                send_page(
                    gw, req, 401, "Sign-in failed",
                    "This sign-in link or token is invalid, expired or already used. Ask for a new link "
                    "(<code>shareline admin login-link</code> or <code>sharectl login-link</code>).");
            else if (act == ACT_SIGN_IN) /* the core's message is one of ours, never user text */
                send_page(gw, req, sl_rpc_code_http_status(code), "Sign-in failed", buf);
            else if (!json)
                sl_gw_send_error_as(gw, req, 0, code, buf[0] ? buf : msg);
            else
                send_json_error(gw, req, code, buf[0] ? buf : msg);
            return;
        }
        send_json_error(gw, req, code, msg);
        return;
    }
    if (view_open(&v, body, len) != 0) {
        send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (the core's answer)");
        return;
    }
    size_t n = 0;
    const char *s;
    switch (act) {
    case ACT_SIGN_IN: {
        const msgpack_object *age = sl_rpc_field(v.map, "max_age");
        s = view_str(&v, "session_token", &n);
        if (s == NULL || !token_chars_ok(s, n) || age == NULL ||
            age->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (sign-in)");
            break;
        }
        set_cookie(gw, req, s, n, age->via.u64);
        security_headers(req, CONSOLE_CSP);
        sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        sl_gw_add_header(req, H2O_TOKEN_LOCATION, H2O_STRLIT("/console/"));
        sl_gw_send_status(gw, req, 303, "See Other");
        break;
    }
    case ACT_ME: {
        char *js = NULL;
        size_t jlen = 0;
        if (sl_rpc_msgpack_to_json(body, len, &js, &jlen) != 0 || jlen < 2) {
            free(js);
            send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (encoding the answer)");
            break;
        }
        /* {...} + "csrf": the map the core answered, with the session's CSRF token added */
        char *out = malloc(jlen + 64);
        if (out == NULL) {
            free(js);
            send_json_error(gw, req, SL_RPC_INTERNAL, "out of memory");
            break;
        }
        int k = snprintf(out, jlen + 64, "%.*s%s\"csrf\":\"%s\"}", (int)(jlen - 1), js, jlen > 2 ? "," : "",
                         csrf);
        free(js);
        security_headers(req, CONSOLE_CSP);
        sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        sl_gw_send(gw, req, 200, "application/json", out, k < 0 ? 0 : (size_t)k);
        free(out);
        break;
    }
    case ACT_PREVIEW:
        s = view_str(&v, "html", &n);
        if (s == NULL) {
            send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (preview)");
            break;
        }
        security_headers(req, PREVIEW_CSP);
        sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        sl_gw_send(gw, req, 200, "text/html; charset=utf-8", s, n);
        break;
    default: { /* the sign-in link, in the request's encoding */
        char *out = NULL;
        size_t olen = 0;
        sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        if (!json) {
            sl_gw_send(gw, req, 200, "application/msgpack", body, len);
            break;
        }
        if (sl_rpc_msgpack_to_json(body, len, &out, &olen) != 0) {
            send_json_error(gw, req, SL_RPC_INTERNAL, "internal error (encoding the answer)");
            break;
        }
        sl_gw_send(gw, req, 200, "application/json", out, olen);
        free(out);
        break;
    }
    }
    msgpack_unpacked_destroy(&v.u);
}

/* Calls method with auth (may be NULL) and a request of zero or one string field. */
static void call_core(sl_gateway_t *gw, h2o_req_t *req, int act, sl_rpc_method_id_t m, const char *auth,
                      size_t alen, const char *key, const char *val, size_t vlen)
{
    sl_pending_t *pd = sl_gw_pending_new(gw, req, SL_ROUTE_CONSOLE);
    if (pd == NULL) {
        send_json_error(gw, req, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pd->action = act;
    pd->json = 1;
    if (act == ACT_LINK)
        pd->json = !sl_gw_media_type_is(sl_gw_header(req, H2O_TOKEN_CONTENT_TYPE), "application/msgpack");
    if (act == ACT_ME)
        csrf_of(auth, alen, pd->id);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, key ? 1 : 0);
    if (key) {
        sl_rpc_pack_str(&pk, key);
        sl_rpc_pack_strn(&pk, val, vlen);
    }
    const char *name = sl_rpc_method_name(m);
    sl_rpc_call(gw->rpc, name, strlen(name), auth, alen, sb.data, sb.size, on_console_reply, pd);
    msgpack_sbuffer_destroy(&sb);
}

static int hexdigit(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The value of `name` in an application/x-www-form-urlencoded body or a query, percent-decoded into
 * out; its length, or -1. Tokens and links hold no '+' or '%' of their own. */
static int form_value(const char *s, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *pair = p;
        while (p < end && *p != '&')
            p++;
        if ((size_t)(p - pair) > nl && memcmp(pair, name, nl) == 0 && pair[nl] == '=') {
            size_t k = 0;
            for (const char *q = pair + nl + 1; q < p; q++) {
                char c = *q;
                if (c == '%') { /* two hex digits, decoded here: the buffer has no NUL to stop sscanf */
                    if (p - q < 3 || !isxdigit((unsigned char)q[1]) || !isxdigit((unsigned char)q[2]))
                        return -1;
                    c = (char)(hexdigit(q[1]) << 4 | hexdigit(q[2]));
                    q += 2;
                }
                if (k + 1 >= cap)
                    return -1;
                out[k++] = c;
            }
            out[k] = '\0';
            return (int)k;
        }
        if (p < end)
            p++;
    }
    return -1;
}

/* ---- the routes ---- */

void sl_gw_console(sl_gateway_t *gw, h2o_req_t *req, const char *rest, size_t len)
{
    int get = sl_gw_is_method(req, "GET") || sl_gw_is_method(req, "HEAD");
    int post = sl_gw_is_method(req, "POST");
    if (len == 0) {
        sl_gw_add_header(req, H2O_TOKEN_LOCATION, H2O_STRLIT("/console/"));
        sl_gw_send_status(gw, req, 301, "Moved Permanently");
        return;
    }
    const char *path = len == 1 || (len == 11 && memcmp(rest, "/index.html", 11) == 0) ? "/" : NULL;
    for (size_t i = 0; i < sl_console_assets_count && i < 8; i++) {
        const char *ap = sl_console_assets[i].path;
        if ((path && strcmp(ap, "/") == 0) || (strlen(ap) == len && memcmp(ap, rest, len) == 0)) {
            if (!get) {
                sl_gw_add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("GET, HEAD"));
                send_json_error(gw, req, SL_RPC_INVALID_ARGUMENT, "method not allowed");
                return;
            }
            send_asset(gw, req, i);
            return;
        }
    }
    size_t tlen = 0;
    const char *tok = session_cookie(gw, req, &tlen);
    h2o_iovec_t query = req->query_at != SIZE_MAX ? h2o_iovec_init(req->path.base + req->query_at + 1,
                                                                   req->path.len - req->query_at - 1)
                                                  : h2o_iovec_init(NULL, 0);
    if (len == 6 && memcmp(rest, "/login", 6) == 0) {
        char val[MAX_TOKEN + 1];
        int n;
        if (get) {
            /* Opening a sign-in link consumes nothing: it shows a button that posts the link from
             * this origin. A link an attacker made for their own account cannot sign a visitor in
             * without that click on our page (no login CSRF), and link scanners use nothing up. */
            n = query.base ? form_value(query.base, query.len, "link", val, sizeof(val)) : -1;
            if (n <= 0 || !token_chars_ok(val, (size_t)n)) {
                send_page(gw, req, 400, "Sign-in failed", "This address is not a sign-in link.");
                return;
            }
            send_link_page(gw, req, val, (size_t)n);
            return;
        }
        if (!post) {
            sl_gw_add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("GET, POST"));
            send_page(gw, req, 405, "Method not allowed", "Use the sign-in link or the token form.");
            return;
        }
        /* the link's button or the token form: from our own page only, a small urlencoded body */
        h2o_iovec_t ct = sl_gw_header(req, H2O_TOKEN_CONTENT_TYPE);
        size_t blen = req->entity.base ? req->entity.len : 0;
        if (!same_origin(gw, req)) {
            send_page(gw, req, 403, "Sign-in refused", "Sign in from the console's own page.");
            return;
        }
        if (!sl_gw_media_type_is(ct, "application/x-www-form-urlencoded") || blen > MAX_FORM) {
            send_page(gw, req, 400, "Sign-in failed", "Paste an access token (it starts with slt_).");
            return;
        }
        if ((n = form_value(req->entity.base, blen, "link", val, sizeof(val))) > 0 &&
            token_chars_ok(val, (size_t)n)) {
            call_core(gw, req, ACT_SIGN_IN, SL_M_CONSOLE_SIGN_IN, NULL, 0, "login_link", val, (size_t)n);
            return;
        }
        if ((n = form_value(req->entity.base, blen, "token", val, sizeof(val))) <= 0 ||
            !token_chars_ok(val, (size_t)n)) {
            send_page(gw, req, 400, "Sign-in failed", "Paste an access token (it starts with slt_).");
            return;
        }
        call_core(gw, req, ACT_SIGN_IN, SL_M_CONSOLE_SIGN_IN, val, (size_t)n, NULL, NULL, 0);
        explicit_bzero(val, sizeof(val));
        return;
    }
    if (len == 7 && memcmp(rest, "/logout", 7) == 0) {
        if (!post) {
            sl_gw_add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("POST"));
            send_json_error(gw, req, SL_RPC_INVALID_ARGUMENT, "sign out with POST");
            return;
        }
        const char *t;
        size_t n;
        if (sl_gw_console_credential(gw, req, &t, &n) < 0)
            return;
        if (t == NULL) {
            clear_cookie(gw, req);
            security_headers(req, CONSOLE_CSP);
            sl_gw_send(gw, req, 200, "application/json", "{}", 2);
            return;
        }
        call_core(gw, req, ACT_SIGN_OUT, SL_M_CONSOLE_SIGN_OUT, t, n, NULL, NULL, 0);
        return;
    }
    if (len == 11 && memcmp(rest, "/login-link", 11) == 0) {
        size_t n = 0;
        const char *bearer = sl_gw_bearer(req, &n);
        if (!post || bearer == NULL) {
            send_json_error(gw, req, SL_RPC_UNAUTHENTICATED,
                            "POST with Authorization: Bearer <a user's token> makes a sign-in link");
            return;
        }
        call_core(gw, req, ACT_LINK, SL_M_CONSOLE_LOGIN_LINK, bearer, n, NULL, NULL, 0);
        return;
    }
    if (len == 3 && memcmp(rest, "/me", 3) == 0 && get) {
        if (tok == NULL) {
            send_json_error(gw, req, SL_RPC_UNAUTHENTICATED, "not signed in");
            return;
        }
        call_core(gw, req, ACT_ME, SL_M_CONSOLE_WHOAMI, tok, tlen, NULL, NULL, 0);
        return;
    }
    if (len > 9 && memcmp(rest, "/preview/", 9) == 0 && get) {
        char id[65];
        int n = sl_route_segment(rest + 9, len - 9, id, sizeof(id));
        if (tok == NULL) {
            send_json_error(gw, req, SL_RPC_UNAUTHENTICATED, "not signed in");
            return;
        }
        if (n <= 0 || !sl_route_share_id_valid(id, (size_t)n)) {
            send_json_error(gw, req, SL_RPC_NOT_FOUND, "session not found");
            return;
        }
        call_core(gw, req, ACT_PREVIEW, SL_M_PREVIEW_AS_VIEWER, tok, tlen, "session_id", id, (size_t)n);
        return;
    }
    send_json_error(gw, req, SL_RPC_NOT_FOUND, "no such console route");
}
