/*
 * The wire contract between the gateway and the core, in one place: the method names, the public
 * read (GetShare) request and answer, and the keys of a projection's representations. Both sides
 * call these functions; neither writes msgpack bytes of this contract by hand.
 *
 * The GetShare answer is also what Redis holds for a public session (the core stores the "found"
 * answer as is and returns it verbatim), so its encoding must stay stable across versions of the
 * server that share one Redis: keys are looked up by name, unknown keys are skipped.
 */
#include <string.h>

#include "rpc/rpc.h"

static const char *const method_names[SL_M_COUNT] = {
    [SL_M_SYNC_SESSION] = SL_RPC_OWNER_SERVICE "/SyncSession",
    [SL_M_APPEND_EXCHANGES] = SL_RPC_OWNER_SERVICE "/AppendExchanges",
    [SL_M_GET_SESSION] = SL_RPC_OWNER_SERVICE "/GetSession",
    [SL_M_LIST_SESSIONS] = SL_RPC_OWNER_SERVICE "/ListSessions",
    [SL_M_SET_VISIBILITY] = SL_RPC_OWNER_SERVICE "/SetVisibility",
    [SL_M_UPDATE_SESSION_TITLE] = SL_RPC_OWNER_SERVICE "/UpdateSessionTitle",
    [SL_M_UPDATE_EXCHANGE_TITLE] = SL_RPC_OWNER_SERVICE "/UpdateExchangeTitle",
    [SL_M_SET_EXCHANGES_HIDDEN] = SL_RPC_OWNER_SERVICE "/SetExchangesHidden",
    [SL_M_DELETE_EXCHANGE] = SL_RPC_OWNER_SERVICE "/DeleteExchange",
    [SL_M_DELETE_SESSION] = SL_RPC_OWNER_SERVICE "/DeleteSession",
    [SL_M_GET_SHARE_SETTINGS] = SL_RPC_OWNER_SERVICE "/GetShareSettings",
    [SL_M_PREVIEW_AS_VIEWER] = SL_RPC_OWNER_SERVICE "/PreviewAsViewer",
    [SL_M_EXPORT_SESSION] = SL_RPC_OWNER_SERVICE "/ExportSession",
    [SL_M_LIST_PROJECTS] = SL_RPC_OWNER_SERVICE "/ListProjects",
    [SL_M_UPDATE_PROJECT] = SL_RPC_OWNER_SERVICE "/UpdateProject",
    [SL_M_SESSION_SIZES] = SL_RPC_OWNER_SERVICE "/SessionSizes",
    [SL_M_LIST_FINDINGS] = SL_RPC_OWNER_SERVICE "/ListFindings",
    [SL_M_RESOLVE_FINDING] = SL_RPC_OWNER_SERVICE "/ResolveFinding",
    [SL_M_GET_SHARE] = SL_RPC_PUBLIC_SERVICE "/GetShare",
    [SL_M_CONSOLE_SIGN_IN] = SL_RPC_CONSOLE_SERVICE "/SignIn",
    [SL_M_CONSOLE_SIGN_OUT] = SL_RPC_CONSOLE_SERVICE "/SignOut",
    [SL_M_CONSOLE_WHOAMI] = SL_RPC_CONSOLE_SERVICE "/WhoAmI",
    [SL_M_CONSOLE_LOGIN_LINK] = SL_RPC_CONSOLE_SERVICE "/CreateLoginLink",
};

const char *sl_rpc_method_name(sl_rpc_method_id_t m)
{
    return (unsigned)m < SL_M_COUNT ? method_names[m] : NULL;
}

int sl_rpc_method_lookup(const char *name, size_t len)
{
    for (int m = 0; m < SL_M_COUNT; m++)
        if (strlen(method_names[m]) == len && memcmp(method_names[m], name, len) == 0)
            return m;
    return -1;
}

int sl_rpc_owner_path(const char *name, size_t len)
{
    static const char prefix[] = SL_RPC_OWNER_SERVICE "/";
    return len >= sizeof(prefix) - 1 && memcmp(name, prefix, sizeof(prefix) - 1) == 0;
}

/* ---- representations ---- */

static const char *const rep_keys[SL_REP_COUNT] = {
    [SL_REP_JSON] = "json",       [SL_REP_JSON_GZ] = "json_gz", [SL_REP_HTML] = "html",
    [SL_REP_HTML_GZ] = "html_gz", [SL_REP_MD] = "md",           [SL_REP_MD_GZ] = "md_gz",
};

const char *sl_rpc_rep_key(sl_rpc_rep_t r)
{
    return (unsigned)r < SL_REP_COUNT ? rep_keys[r] : NULL;
}

/* ---- packing into a caller's fixed buffer (no allocation on the public read path) ---- */

typedef struct fixbuf {
    char *p;
    size_t len, cap;
    int overflow;
} fixbuf_t;

static int fixbuf_write(void *data, const char *buf, size_t len)
{
    fixbuf_t *b = data;
    if (b->overflow || b->cap - b->len < len) {
        b->overflow = 1;
        return -1;
    }
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    sl_rpc_pack_str(pk, key);
}

/* ---- GetShare request: {"session_id": id[, "have_version": V, "have_tag": T]} ---- */

uint64_t sl_rpc_etag_tag(const char *etag, size_t len)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        x ^= (unsigned char)etag[i];
        x *= 1099511628211ull;
    }
    return x ? x : 1;
}

size_t sl_rpc_share_request_encode(char *buf, size_t cap, const char *id, size_t idlen, sl_rpc_rep_t rep,
                                   uint64_t have_version, uint64_t have_tag)
{
    fixbuf_t b = {buf, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, fixbuf_write);
    int have = have_version && have_tag;
    msgpack_pack_map(&pk, have ? 4 : 2);
    pack_key(&pk, "session_id");
    sl_rpc_pack_strn(&pk, id, idlen);
    pack_key(&pk, "rep");
    msgpack_pack_unsigned_int(&pk, (unsigned)rep < SL_REP_COUNT ? (unsigned)rep : 0);
    if (have) {
        pack_key(&pk, "have_version");
        msgpack_pack_uint64(&pk, have_version);
        pack_key(&pk, "have_tag");
        msgpack_pack_uint64(&pk, have_tag);
    }
    return b.overflow ? 0 : b.len;
}

int sl_rpc_share_request_decode(const msgpack_object *req, const char **id, size_t *idlen, sl_rpc_rep_t *rep,
                                uint64_t *have_version, uint64_t *have_tag)
{
    char msg[8];
    if (sl_rpc_get_str(req, "session_id", 1, 64, id, idlen, msg, sizeof(msg)) != 1 ||
        !sl_rpc_id_valid(*id, *idlen))
        return -1;
    const msgpack_object *rp = sl_rpc_field(req, "rep");
    if (rp == NULL)
        *rep = SL_REP_JSON;
    else if (rp->type == MSGPACK_OBJECT_POSITIVE_INTEGER && rp->via.u64 < SL_REP_COUNT)
        *rep = (sl_rpc_rep_t)rp->via.u64;
    else
        return -1;
    const msgpack_object *hv = sl_rpc_field(req, "have_version"), *ht = sl_rpc_field(req, "have_tag");
    *have_version = hv && hv->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? hv->via.u64 : 0;
    *have_tag = ht && ht->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? ht->via.u64 : 0;
    if (*have_tag == 0)
        *have_version = 0; /* a copy is "unchanged" only for the very content it holds */
    return 0;
}

/* ---- GetShare answer ---- */

void sl_rpc_share_pack(msgpack_packer *pk, const sl_rpc_share_t *s)
{
    if (!s->found) {
        msgpack_pack_map(pk, 1);
        pack_key(pk, "found");
        msgpack_pack_false(pk);
        return;
    }
    if (s->unchanged) {
        msgpack_pack_map(pk, 3);
        pack_key(pk, "found");
        msgpack_pack_true(pk);
        pack_key(pk, "unchanged");
        msgpack_pack_true(pk);
        pack_key(pk, "version");
        msgpack_pack_uint64(pk, s->version);
        return;
    }
    unsigned reps = 0;
    for (int r = 0; r < SL_REP_COUNT; r++)
        reps += s->rep[r].ptr != NULL;
    msgpack_pack_map(pk, 3 + reps);
    pack_key(pk, "found");
    msgpack_pack_true(pk);
    pack_key(pk, "version");
    msgpack_pack_uint64(pk, s->version);
    pack_key(pk, "etag");
    sl_rpc_pack_strn(pk, s->etag.ptr, s->etag.len);
    for (int r = 0; r < SL_REP_COUNT; r++) {
        if (s->rep[r].ptr == NULL)
            continue;
        pack_key(pk, rep_keys[r]);
        msgpack_pack_bin(pk, s->rep[r].len);
        msgpack_pack_bin_body(pk, s->rep[r].ptr, s->rep[r].len);
    }
}

size_t sl_rpc_share_encode(char *buf, size_t cap, const sl_rpc_share_t *s)
{
    fixbuf_t b = {buf, 0, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, fixbuf_write);
    sl_rpc_share_pack(&pk, s);
    return b.overflow ? 0 : b.len;
}

/*
 * The decoder walks the answer's top-level map in place: str keys; values nil, bool, unsigned int,
 * str or bin (anything else is malformed). Nothing is allocated and every pointer points into buf,
 * so the answer can be kept as it came and served from.
 */
typedef struct rd {
    const unsigned char *p, *end;
} rd_t;

static int rd_uint(rd_t *r, size_t n, uint64_t *v)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = *v << 8 | *r->p++;
    return 0;
}

/* Reads a str (want 's'), bin ('b') or either ('x'). */
static int rd_bytes(rd_t *r, int want, sl_rpc_bytes_t *out)
{
    if (r->p >= r->end)
        return -1;
    unsigned t = *r->p++;
    uint64_t n;
    int is_str;
    if (t >= 0xa0 && t <= 0xbf) {
        n = t & 0x1f;
        is_str = 1;
    } else if (t >= 0xd9 && t <= 0xdb) {
        if (rd_uint(r, (size_t)1 << (t - 0xd9), &n) != 0)
            return -1;
        is_str = 1;
    } else if (t >= 0xc4 && t <= 0xc6) {
        if (rd_uint(r, (size_t)1 << (t - 0xc4), &n) != 0)
            return -1;
        is_str = 0;
    } else {
        return -1;
    }
    if ((want == 's' && !is_str) || (want == 'b' && is_str) || (uint64_t)(r->end - r->p) < n)
        return -1;
    out->ptr = (const char *)r->p;
    out->len = (size_t)n;
    r->p += n;
    return 0;
}

typedef enum { V_NIL, V_BOOL, V_UINT, V_BYTES } vkind_t;

typedef struct value {
    vkind_t kind;
    int b;
    uint64_t u;
    sl_rpc_bytes_t bytes;
} value_t;

static int rd_value(rd_t *r, value_t *v)
{
    if (r->p >= r->end)
        return -1;
    unsigned t = *r->p;
    if (t == 0xc0 || t == 0xc2 || t == 0xc3) {
        r->p++;
        v->kind = t == 0xc0 ? V_NIL : V_BOOL;
        v->b = t == 0xc3;
        return 0;
    }
    if (t <= 0x7f) {
        r->p++;
        v->kind = V_UINT;
        v->u = t;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
        r->p++;
        v->kind = V_UINT;
        return rd_uint(r, (size_t)1 << (t - 0xcc), &v->u);
    }
    v->kind = V_BYTES;
    return rd_bytes(r, 'x', &v->bytes);
}

static int key_is(const sl_rpc_bytes_t *k, const char *name)
{
    size_t n = strlen(name);
    return k->len == n && memcmp(k->ptr, name, n) == 0;
}

int sl_rpc_share_decode(const void *buf, size_t len, sl_rpc_share_t *out)
{
    memset(out, 0, sizeof(*out));
    rd_t r = {buf, (const unsigned char *)buf + len};
    uint64_t count;
    if (r.p >= r.end)
        return -1;
    unsigned t = *r.p++;
    if (t >= 0x80 && t <= 0x8f)
        count = t & 0x0f;
    else if (t == 0xde || t == 0xdf) {
        if (rd_uint(&r, t == 0xde ? 2 : 4, &count) != 0)
            return -1;
    } else {
        return -1;
    }
    int have_found = 0, have_version = 0, have_etag = 0, reps = 0;
    for (uint64_t i = 0; i < count; i++) {
        sl_rpc_bytes_t k;
        value_t v;
        if (rd_bytes(&r, 's', &k) != 0 || rd_value(&r, &v) != 0)
            return -1;
        if (key_is(&k, "found") && v.kind == V_BOOL) {
            out->found = v.b;
            have_found = 1;
        } else if (key_is(&k, "unchanged") && v.kind == V_BOOL) {
            out->unchanged = v.b;
        } else if (key_is(&k, "version") && v.kind == V_UINT) {
            out->version = v.u;
            have_version = 1;
        } else if (key_is(&k, "etag") && v.kind == V_BYTES) {
            out->etag = v.bytes;
            have_etag = 1;
        } else if (v.kind == V_BYTES) {
            for (int rep = 0; rep < SL_REP_COUNT; rep++)
                if (key_is(&k, rep_keys[rep]) && out->rep[rep].ptr == NULL) {
                    out->rep[rep] = v.bytes;
                    reps++;
                }
        }
    }
    if (r.p != r.end || !have_found)
        return -1;
    if (!out->found)
        return 0;
    if (!have_version || out->version == 0)
        return -1;
    if (out->unchanged)
        return 0;
    /* A found answer carries its etag and exactly one representation (the one asked for). */
    if (!have_etag || reps != 1)
        return -1;
    for (int rep = 0; rep < SL_REP_COUNT; rep++)
        if (out->rep[rep].ptr != NULL)
            out->which = (sl_rpc_rep_t)rep;
    return 0;
}
