/*
 * The SpecStory-compatible API: /api/v1/projects[/{p}/sessions[/sizes|/{s}]], the SpecStory CLI's
 * wire format (shared/SPEC.md), mapped onto the same owner methods as the RPCs:
 *
 *   PUT    …/sessions/{s}     SyncSession (gzip'd JSON body; 201 new, 200 update, ETag)
 *   GET    …/sessions/sizes   SessionSizes
 *   HEAD   …/sessions/{s}     SessionSizes (X-Markdown-Size, X-Session-Data-Size)
 *   GET    …/sessions/{s}     ExportSession (JSON, or the markdown itself for Accept: text/markdown)
 *   DELETE …/sessions/{s}     DeleteSession
 *   GET    /api/v1/projects   ListProjects;  GET …/{p}/sessions  ListSessions
 *
 * Answers use the {"success":true,"data":…} / {"success":false,"error":"…"} envelope, built as
 * msgpack from the core's answer and written as JSON by the contract's one mapping (rpc.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gateway/internal/gateway.h"

#define MAX_BODY     (50u << 20)      /* compressed request body */
#define MAX_INFLATED SL_GW_MAX_UPLOAD /* after gzip */

typedef enum { K_PUT, K_SIZES, K_HEAD, K_GET, K_DELETE, K_PROJECTS, K_SESSIONS } kind_t;

/* Which owner method answers which path and HTTP method. */
static const struct {
    sl_compat_kind_t path;
    const char *http;
    kind_t kind;
    sl_rpc_method_id_t method;
} ROUTES[] = {
    {SL_COMPAT_PROJECTS, "GET", K_PROJECTS, SL_M_LIST_PROJECTS},
    {SL_COMPAT_PROJECTS, "HEAD", K_PROJECTS, SL_M_LIST_PROJECTS},
    {SL_COMPAT_SESSIONS, "GET", K_SESSIONS, SL_M_LIST_SESSIONS},
    {SL_COMPAT_SESSIONS, "HEAD", K_SESSIONS, SL_M_LIST_SESSIONS},
    {SL_COMPAT_SIZES, "GET", K_SIZES, SL_M_SESSION_SIZES},
    {SL_COMPAT_SIZES, "HEAD", K_SIZES, SL_M_SESSION_SIZES},
    {SL_COMPAT_SESSION, "HEAD", K_HEAD, SL_M_SESSION_SIZES},
    {SL_COMPAT_SESSION, "GET", K_GET, SL_M_EXPORT_SESSION},
    {SL_COMPAT_SESSION, "DELETE", K_DELETE, SL_M_DELETE_SESSION},
    {SL_COMPAT_SESSION, "PUT", K_PUT, SL_M_SYNC_SESSION},
};

typedef struct compat {
    kind_t kind;
    int gzip;                      /* PUT: Content-Encoding: gzip */
    sl_pending_t *pd;              /* PUT: the request, until its body was taken */
    const sl_rpc_limits_t *limits; /* PUT: the JSON mapping's limits */
    char project[201];
    char session[65];
} compat_t;

/* ---- answers ---- */

static void pack_key(msgpack_packer *pk, const char *k)
{
    sl_rpc_pack_str(pk, k);
}

/* key: the answer's field (nil when absent) */
static void pack_field(msgpack_packer *pk, const char *key, const msgpack_object *from, const char *field)
{
    pack_key(pk, key);
    const msgpack_object *v = sl_rpc_field(from, field);
    if (v)
        msgpack_pack_object(pk, *v);
    else
        msgpack_pack_nil(pk);
}

static void pack_kv_str(msgpack_packer *pk, const char *key, const char *v)
{
    pack_key(pk, key);
    sl_rpc_pack_str(pk, v);
}

/* Sends the envelope in sb (msgpack) as JSON. */
static void send_envelope(sl_gateway_t *gw, h2o_req_t *req, int status, const msgpack_sbuffer *sb)
{
    char *out = NULL;
    size_t outlen = 0;
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    if (sl_rpc_msgpack_to_json(sb->data, sb->size, &out, &outlen) != 0) {
        sl_gw_send(gw, req, 500, "application/json",
                   H2O_STRLIT("{\"success\":false,\"error\":\"internal error\"}"));
        return;
    }
    sl_gw_send(gw, req, status, "application/json; charset=utf-8", out, outlen);
    free(out);
}

static void send_fail(sl_gateway_t *gw, h2o_req_t *req, int status, const char *msg, size_t len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "success");
    msgpack_pack_false(&pk);
    pack_key(&pk, "error");
    sl_rpc_pack_strn(&pk, msg, len);
    send_envelope(gw, req, status, &sb);
    msgpack_sbuffer_destroy(&sb);
}

static void send_error(sl_gateway_t *gw, h2o_req_t *req, int status, const char *msg)
{
    send_fail(gw, req, status, msg, strlen(msg));
}

/* {"success":true,"data":<the map of `fields` pairs that pack_data writes>} */
static void begin_ok(msgpack_packer *pk, size_t fields)
{
    msgpack_pack_map(pk, 2);
    pack_key(pk, "success");
    msgpack_pack_true(pk);
    pack_key(pk, "data");
    msgpack_pack_map(pk, fields);
}

/* The fields of `from` renamed by `names` (n pairs: our name, the core's). */
static void pack_renamed(msgpack_packer *pk, const msgpack_object *from, const char *const *names, size_t n)
{
    for (size_t k = 0; k < n; k++)
        pack_field(pk, names[2 * k], from, names[2 * k + 1]);
}

/* A list of the answer's `list` entries, each renamed by `names`. */
static void pack_list(msgpack_packer *pk, const char *key, const msgpack_object *ans, const char *list,
                      const char *const *names, size_t n)
{
    begin_ok(pk, 1);
    pack_key(pk, key);
    const msgpack_object *in = sl_rpc_field(ans, list);
    uint32_t count = in && in->type == MSGPACK_OBJECT_ARRAY ? in->via.array.size : 0;
    msgpack_pack_array(pk, count);
    for (uint32_t i = 0; i < count; i++) {
        msgpack_pack_map(pk, n);
        pack_renamed(pk, &in->via.array.ptr[i], names, n);
    }
}

/* {"sessionId", "projectId"} of the URL and the answer's fields renamed by `names`. */
static void pack_session(msgpack_packer *pk, const compat_t *c, const msgpack_object *ans,
                         const char *const *names, size_t n)
{
    begin_ok(pk, 2 + n);
    pack_kv_str(pk, "sessionId", c->session);
    pack_kv_str(pk, "projectId", c->project);
    pack_renamed(pk, ans, names, n);
}

static const char *const PROJECT_NAMES[] = {"id",    "ext_id", "projectId",    "project_id",
                                            "name",  "name",   "icon",         "icon",
                                            "color", "color",  "sessionCount", "session_count"};
static const char *const SESSION_NAMES[] = {"sessionId", "session_id", "title",  "title",
                                            "updatedAt", "updated_at", "public", "public"};
static const char *const PUT_NAMES[] = {"created", "created", "version",       "version",
                                        "etag",    "etag",    "exchangeCount", "exchange_count"};
static const char *const GET_NAMES[] = {"title",    "title",       "markdown",     "markdown",  "rawData",
                                        "raw_data", "sessionData", "session_data", "metadata",  "metadata",
                                        "etag",     "etag",        "updatedAt",    "updated_at"};
#define PAIRS(names) (sizeof(names) / sizeof(*(names)) / 2)

static uint64_t size_of(const msgpack_object *sizes, const char *key)
{
    const msgpack_object *v = sl_rpc_field(sizes, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static void add_number_header(h2o_req_t *req, const char *name, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    sl_gw_add_header_str(req, name, h2o_strdup(&req->pool, num, SIZE_MAX).base);
}

/* The answer's str field, or "" */
static h2o_iovec_t str_field(const msgpack_object *ans, const char *key)
{
    const msgpack_object *v = sl_rpc_field(ans, key);
    return v && v->type == MSGPACK_OBJECT_STR ? h2o_iovec_init(v->via.str.ptr, v->via.str.size)
                                              : h2o_iovec_init("", 0);
}

/* Answers a successful call. Returns 0 when the envelope in pk is to be sent with *status. */
static int answer_ok(sl_gateway_t *gw, h2o_req_t *req, const compat_t *c, const msgpack_object *ans,
                     msgpack_packer *pk, int *status)
{
    *status = 200;
    switch (c->kind) {
    case K_PUT: {
        h2o_iovec_t etag = str_field(ans, "etag");
        const msgpack_object *created = sl_rpc_field(ans, "created");
        int is_new = created && created->type == MSGPACK_OBJECT_BOOLEAN && created->via.boolean;
        sl_gw_add_header(req, H2O_TOKEN_ETAG, h2o_strdup(&req->pool, etag.base, etag.len).base, etag.len);
        pack_session(pk, c, ans, PUT_NAMES, PAIRS(PUT_NAMES));
        *status = is_new ? 201 : 200;
        return 0;
    }
    case K_SIZES:
        begin_ok(pk, 1);
        pack_field(pk, "sessions", ans, "sessions");
        return 0;
    case K_HEAD: {
        const msgpack_object *sizes = sl_rpc_field(ans, "sessions");
        char key[80];
        snprintf(key, sizeof(key), "%s:sessionData", c->session);
        add_number_header(req, "x-markdown-size", size_of(sizes, c->session));
        add_number_header(req, "x-session-data-size", size_of(sizes, key));
        sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
        sl_gw_send_status(gw, req, 200, "OK");
        return 1;
    }
    case K_GET: {
        h2o_iovec_t etag = str_field(ans, "etag");
        sl_gw_add_header(req, H2O_TOKEN_ETAG, h2o_strdup(&req->pool, etag.base, etag.len).base, etag.len);
        sl_gw_add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Accept"));
        if (etag.len && sl_gw_etag_matches(req, etag.base, etag.len)) {
            sl_gw_send_status(gw, req, 304, "Not Modified");
            return 1;
        }
        if (sl_gw_wants_markdown(req)) {
            h2o_iovec_t md = str_field(ans, "markdown");
            sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
            sl_gw_send(gw, req, 200, "text/markdown; charset=utf-8", md.base, md.len);
            return 1;
        }
        pack_session(pk, c, ans, GET_NAMES, PAIRS(GET_NAMES));
        return 0;
    }
    case K_DELETE:
        begin_ok(pk, 2);
        pack_kv_str(pk, "sessionId", c->session);
        pack_key(pk, "deleted");
        msgpack_pack_true(pk);
        return 0;
    case K_PROJECTS:
        pack_list(pk, "projects", ans, "projects", PROJECT_NAMES, PAIRS(PROJECT_NAMES));
        return 0;
    case K_SESSIONS:
        pack_list(pk, "sessions", ans, "sessions", SESSION_NAMES, PAIRS(SESSION_NAMES));
        return 0;
    }
    return 0;
}

static void on_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    compat_t *c = pd->ctx;
    sl_gateway_t *gw = pd->gw;
    h2o_req_t *req = sl_gw_pending_finish(pd);
    msgpack_zone zone;
    msgpack_object ans;
    size_t off = 0;
    msgpack_zone_init(&zone, 1024);
    int unpacked = msgpack_unpack(body, len, &off, &zone, &ans) == MSGPACK_UNPACK_SUCCESS;
    if (req == NULL) {
        /* the client went away */
    } else if (code != SL_RPC_OK || !unpacked) {
        int status = unpacked ? sl_rpc_code_http_status(code) : 500;
        if (c->kind == K_HEAD) {
            sl_gw_send_status(gw, req, status, "");
        } else if (unpacked) {
            h2o_iovec_t msg = str_field(&ans, "message");
            send_fail(gw, req, status, msg.len ? msg.base : "error", msg.len ? msg.len : 5);
        } else {
            send_error(gw, req, 500, "internal error (answer)");
        }
    } else {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        int status;
        if (answer_ok(gw, req, c, &ans, &pk, &status) == 0)
            send_envelope(gw, req, status, &sb);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_zone_destroy(&zone);
    free(c);
}

/* ---- requests ---- */

/* Inflates a gzip body into *out (malloc'd), at most MAX_INFLATED bytes. Returns 0, or an HTTP
 * status with msg filled. */
static int inflate_body(const char *in, size_t len, char **out, size_t *outlen, char *msg, size_t msglen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        snprintf(msg, msglen, "cannot decompress the body");
        return 400;
    }
    size_t cap = len < (MAX_INFLATED - 4096) / 4 ? len * 4 + 4096 : MAX_INFLATED, n = 0;
    char *buf = malloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    int rc = Z_OK;
    while (buf && rc != Z_STREAM_END) {
        if (n == cap) {
            if (cap >= MAX_INFLATED) {
                free(buf);
                inflateEnd(&zs);
                snprintf(msg, msglen, "the decompressed body exceeds %u MiB", MAX_INFLATED >> 20);
                return 413;
            }
            cap = cap * 2 > MAX_INFLATED ? MAX_INFLATED : cap * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        zs.next_out = (Bytef *)buf + n;
        zs.avail_out = (uInt)(cap - n);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && n == cap)) {
            free(buf);
            inflateEnd(&zs);
            snprintf(msg, msglen, "the body is not valid gzip");
            return 400;
        }
    }
    inflateEnd(&zs);
    if (buf == NULL) {
        snprintf(msg, msglen, "out of memory");
        return 500;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

static int is_name_key(const msgpack_object_kv *kv)
{
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 4 &&
           memcmp(kv->key.via.str.ptr, "name", 4) == 0;
}

/* The metadata kept with the upload: the client's own, plus the session's file name ("name"). */
static void pack_metadata(msgpack_packer *pk, const msgpack_object *meta, const msgpack_object *name)
{
    uint32_t n = meta ? meta->via.map.size : 0, keep = 0;
    for (uint32_t i = 0; i < n; i++)
        keep += !(name && is_name_key(&meta->via.map.ptr[i]));
    msgpack_pack_map(pk, keep + (name != NULL));
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &meta->via.map.ptr[i];
        if (name && is_name_key(kv))
            continue;
        msgpack_pack_object(pk, kv->key);
        msgpack_pack_object(pk, kv->val);
    }
    if (name) {
        pack_key(pk, "name");
        msgpack_pack_object(pk, *name);
    }
}

/* The PUT's body, copied out of the request once the core checked the token. */
static sl_rpc_code_t take_put(void *data, msgpack_sbuffer *raw, char *msg, size_t msglen)
{
    compat_t *c = data;
    h2o_req_t *req = c->pd->req;
    if (req == NULL) {
        snprintf(msg, msglen, "the client went away");
        return SL_RPC_UNAVAILABLE;
    }
    if (req->entity.base && req->entity.len)
        msgpack_sbuffer_write(raw, req->entity.base, req->entity.len);
    return SL_RPC_OK;
}

/* The PUT's body (gzip or identity JSON) as a SyncSession request; runs off the loop for large
 * bodies (rpc.h: it touches only c and its arguments). */
static sl_rpc_code_t make_put(void *data, const char *body, size_t blen, msgpack_sbuffer *out, char *msg,
                              size_t msglen)
{
    compat_t *c = data;
    msgpack_packer packer, *pk = &packer;
    msgpack_packer_init(pk, out, msgpack_sbuffer_write);
    const char *json = body;
    size_t jlen = blen;
    char *inflated = NULL;
    if (c->gzip) {
        int st = inflate_body(body, blen, &inflated, &jlen, msg, msglen);
        if (st)
            return st == 413   ? SL_RPC_PAYLOAD_TOO_LARGE
                   : st == 400 ? SL_RPC_INVALID_ARGUMENT
                               : SL_RPC_RESOURCE_EXHAUSTED;
        json = inflated;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = sl_rpc_json_to_msgpack(json, jlen, c->limits, &sb, msg, msglen);
    free(inflated);
    msgpack_zone zone;
    msgpack_object doc;
    size_t off = 0;
    msgpack_zone_init(&zone, 1024);
    if (rc == 0 && msgpack_unpack(sb.data, sb.size, &off, &zone, &doc) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(msg, msglen, "the body is not valid JSON (UTF-8)");
        rc = -1;
    }
    const char *md = NULL, *bpid = NULL, *pname = NULL, *title = NULL, *raw = NULL, *sdata = NULL;
    size_t mdlen = 0, bpidlen = 0, pnamelen = 0, titlelen = 0, rawlen = 0, sdatalen = 0;
    const msgpack_object *meta = NULL, *name = NULL;
    char m[8];
    if (rc == 0) {
        meta = sl_rpc_field(&doc, "metadata");
        name = sl_rpc_field(&doc, "name");
        if (name && name->type != MSGPACK_OBJECT_STR)
            name = NULL;
        const char *why =
            sl_rpc_get_str(&doc, "markdown", 1, SIZE_MAX, &md, &mdlen, m, sizeof(m)) != 1
                ? "field \"markdown\" (a string) is required"
            : sl_rpc_get_str(&doc, "projectId", 0, SIZE_MAX, &bpid, &bpidlen, m, sizeof(m)) == 1 &&
                    (bpidlen != strlen(c->project) || memcmp(bpid, c->project, bpidlen) != 0)
                ? "field \"projectId\" differs from the URL's"
            : meta && meta->type != MSGPACK_OBJECT_MAP ? "field \"metadata\" must be an object"
                                                       : NULL;
        if (why) {
            snprintf(msg, msglen, "%s", why);
            rc = -1;
        }
    }
    if (rc != 0) {
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&sb);
        return SL_RPC_INVALID_ARGUMENT;
    }
    if (sl_rpc_get_str(&doc, "projectName", 0, SIZE_MAX, &pname, &pnamelen, m, sizeof(m)) != 1 ||
        pnamelen == 0) {
        pname = c->project;
        pnamelen = strlen(c->project);
    }
    if (meta && sl_rpc_get_str(meta, "title", 0, SIZE_MAX, &title, &titlelen, m, sizeof(m)) != 1)
        title = NULL;
    if (sl_rpc_get_str(&doc, "rawData", 0, SIZE_MAX, &raw, &rawlen, m, sizeof(m)) != 1)
        raw = NULL;
    if (sl_rpc_get_str(&doc, "sessionData", 0, SIZE_MAX, &sdata, &sdatalen, m, sizeof(m)) != 1)
        sdata = NULL;
    msgpack_pack_map(pk, 4 + (title != NULL) + (raw != NULL) + (sdata != NULL));
    pack_kv_str(pk, "session_id", c->session);
    pack_key(pk, "project");
    msgpack_pack_map(pk, 2);
    pack_kv_str(pk, "id", c->project);
    pack_key(pk, "name");
    sl_rpc_pack_strn(pk, pname, pnamelen);
    pack_key(pk, "markdown");
    sl_rpc_pack_strn(pk, md, mdlen);
    pack_key(pk, "metadata");
    pack_metadata(pk, meta, name);
    if (title) {
        pack_key(pk, "title");
        sl_rpc_pack_strn(pk, title, titlelen);
    }
    if (raw) {
        pack_key(pk, "raw_data");
        sl_rpc_pack_strn(pk, raw, rawlen);
    }
    if (sdata) {
        pack_key(pk, "session_data");
        sl_rpc_pack_strn(pk, sdata, sdatalen);
    }
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    return SL_RPC_OK;
}

static const sl_rpc_body_src_t PUT_BODY = {take_put, make_put};

/* What the PUT's headers alone can refuse, before the token is checked: 0, or an HTTP status. */
static int check_put_headers(h2o_req_t *req, compat_t *c, char *msg, size_t msglen)
{
    size_t blen = req->entity.base ? req->entity.len : 0;
    if (blen > MAX_BODY) {
        snprintf(msg, msglen, "request body of %zu bytes exceeds the limit of %u MiB (compressed)", blen,
                 MAX_BODY >> 20);
        return 413;
    }
    h2o_iovec_t ce = sl_gw_header(req, H2O_TOKEN_CONTENT_ENCODING);
    c->gzip = ce.base && h2o_contains_token(ce.base, ce.len, H2O_STRLIT("gzip"), ',');
    if (ce.base && !c->gzip && !h2o_memis(ce.base, ce.len, H2O_STRLIT("identity"))) {
        snprintf(msg, msglen, "Content-Encoding must be gzip or identity");
        return 415;
    }
    return 0;
}

/* The request map of every call but the PUT: the client's project and session ids. */
static void build_simple(const compat_t *c, msgpack_packer *pk)
{
    switch (c->kind) {
    case K_PROJECTS:
        msgpack_pack_map(pk, 0);
        break;
    case K_SESSIONS:
        msgpack_pack_map(pk, 2);
        pack_kv_str(pk, "project_ext_id", c->project);
        pack_key(pk, "page_size");
        msgpack_pack_uint32(pk, 200);
        break;
    case K_SIZES:
        msgpack_pack_map(pk, 1);
        pack_kv_str(pk, "project_ext_id", c->project);
        break;
    default:
        msgpack_pack_map(pk, 2);
        pack_kv_str(pk, "project_ext_id", c->project);
        pack_kv_str(pk, "session_id", c->session);
        break;
    }
}

void sl_gw_specstory(sl_gateway_t *gw, h2o_req_t *req, const char *path, size_t len)
{
    compat_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        send_error(gw, req, 500, "out of memory");
        return;
    }
    sl_compat_kind_t kind =
        sl_route_compat(path, len, c->project, sizeof(c->project), c->session, sizeof(c->session));
    int route = -1, path_known = kind != SL_COMPAT_NONE;
    for (size_t i = 0; path_known && i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++)
        if (ROUTES[i].path == kind && sl_gw_is_method(req, ROUTES[i].http))
            route = (int)i;
    if (route < 0) {
        free(c);
        if (!path_known) {
            send_error(gw, req, 404, "no such route");
            return;
        }
        sl_gw_add_header(req, H2O_TOKEN_ALLOW, H2O_STRLIT("GET, HEAD, PUT, DELETE"));
        send_error(gw, req, 405, "method not allowed");
        return;
    }
    c->kind = ROUTES[route].kind;
    char msg[256];
    int status = c->kind == K_PUT ? check_put_headers(req, c, msg, sizeof(msg)) : 0;
    sl_pending_t *pd = status ? NULL : sl_gw_pending_new(gw, req, SL_ROUTE_COMPAT);
    if (status || pd == NULL) {
        free(c);
        send_error(gw, req, status ? status : 500, status ? msg : "out of memory");
        return;
    }
    pd->ctx = c;
    size_t auth_len = 0;
    const char *auth = sl_gw_bearer(req, &auth_len);
    const char *method = sl_rpc_method_name(ROUTES[route].method);
    if (c->kind == K_PUT) {
        /* Nothing of the body is read before the core has checked the token. */
        c->pd = pd;
        c->limits = &gw->upload_limits;
        sl_rpc_call_deferred(gw->rpc, method, strlen(method), auth, auth_len, &PUT_BODY, c, on_reply, pd);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    build_simple(c, &pk);
    sl_rpc_call(gw->rpc, method, strlen(method), auth, auth_len, sb.data, sb.size, on_reply, pd);
    msgpack_sbuffer_destroy(&sb);
}
