/*
 * The Connect protocol's unary JSON (docs/connect.md): what makes a request of a generated client
 * (protobuf JSON mapping, rpc/proto/shareline/v1/sessions.proto) the request map the owner methods
 * read, and the HTTP statuses Connect gives each code.
 *
 * The protobuf JSON mapping differs from the server's JSON in three ways, all undone here on the
 * msgpack the JSON was decoded to:
 *   - field names may be lowerCamelCase (the json_name): "sessionId" -> "session_id";
 *   - 64-bit (and any) integers may come as decimal strings: "exchangeId": "3" -> 3;
 *   - fields equal to their default are omitted: a generated client sends no "public" for false, no
 *     "title" for "" (back to the default title), no "prompt" for an empty prompt. The owner methods
 *     require those fields, so they are filled in with the proto3 default.
 * Only field names of the contract are renamed and only its integer fields converted (the tables
 * below, checked against the .proto by the conformance test), and nothing inside "metadata" (a
 * google.protobuf.Struct: the client's own JSON, kept as sent). Pure: safe on any thread.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

/* The integer fields of the requests (ids, sizes): strings of digits become integers. */
static const char *const INT_FIELDS[] = {"exchange_id", "exchange_ids", "project_id", "project_ids",
                                         "finding_id",  "as_user",      "page_size",  "upload"};

/* Fields a method requires whose proto3 default is a valid value: filled in when omitted. */
typedef enum { D_BOOL, D_STR } dkind_t;
typedef struct deflt {
    sl_rpc_method_id_t method;
    const char *key;
    dkind_t kind;
} deflt_t;
static const deflt_t DEFAULTS[] = {
    {SL_M_SET_VISIBILITY, "public", D_BOOL},
    {SL_M_SET_EXCHANGES_HIDDEN, "hidden", D_BOOL},
    {SL_M_UPDATE_SESSION_TITLE, "title", D_STR},
    {SL_M_UPDATE_EXCHANGE_TITLE, "title", D_STR},
};
/* AppendExchanges: each exchange's prompt and response ("" when omitted). */
static const char *const EXCHANGE_DEFAULTS[] = {"prompt", "response"};

#define MAX_KEY 64
/* No message of the contract has more fields (the free-form metadata is copied as it is): a map of
 * the request with more is refused, which also bounds the duplicate check below. */
#define MAX_FIELDS 64

static int is_int_field(const char *k, size_t n)
{
    for (size_t i = 0; i < sizeof(INT_FIELDS) / sizeof(INT_FIELDS[0]); i++)
        if (strlen(INT_FIELDS[i]) == n && memcmp(INT_FIELDS[i], k, n) == 0)
            return 1;
    return 0;
}

/* snake_case of a lowerCamelCase name into out (NUL-terminated); its length, or 0 when the name is
 * not lowerCamelCase (then it is kept as it is). */
static size_t snake(const char *k, size_t n, char out[MAX_KEY + 1])
{
    if (n == 0 || !islower((unsigned char)k[0]))
        return 0;
    size_t o = 0;
    int upper = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (!isalnum(c))
            return 0;
        if (isupper(c)) {
            upper = 1;
            if (o + 2 > MAX_KEY)
                return 0;
            out[o++] = '_';
            out[o++] = (char)tolower(c);
        } else {
            if (o + 1 > MAX_KEY)
                return 0;
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return upper ? o : 0;
}

/* The key as the server names it: pointer and length (into buf when renamed). */
static const char *server_key(const msgpack_object *key, char buf[MAX_KEY + 1], size_t *len)
{
    size_t n = snake(key->via.str.ptr, key->via.str.size, buf);
    if (n > 0) {
        *len = n;
        return buf;
    }
    *len = key->via.str.size;
    return key->via.str.ptr;
}

static int pack_int_string(msgpack_packer *pk, const msgpack_object *v)
{
    const char *s = v->via.str.ptr;
    size_t n = v->via.str.size;
    int neg = n > 0 && s[0] == '-';
    if (n == (size_t)neg || n - (size_t)neg > 19)
        return -1;
    uint64_t x = 0;
    for (size_t i = (size_t)neg; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (x > (uint64_t)INT64_MAX + 1)
            return -1;
        msgpack_pack_int64(pk, x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x);
    } else {
        msgpack_pack_uint64(pk, x);
    }
    return 0;
}

typedef struct walk {
    msgpack_packer *pk;
    char *err;
    size_t errlen;
} walk_t;

static int copy(walk_t *w, const msgpack_object *o, int int_field, int verbatim, int exchange_list);

static int has_key(const msgpack_object *map, const char *key, int verbatim)
{
    char buf[MAX_KEY + 1];
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR || map->via.map.ptr[i].val.type == MSGPACK_OBJECT_NIL)
            continue;
        size_t n;
        const char *s = verbatim ? k->via.str.ptr : server_key(k, buf, &n);
        if (verbatim)
            n = k->via.str.size;
        if (n == strlen(key) && memcmp(s, key, n) == 0)
            return 1;
    }
    return 0;
}

/* A map; `extra` keys (NULL-terminated pairs of key and kind) are added with their default when
 * absent. */
static int copy_map(walk_t *w, const msgpack_object *o, int verbatim, const char *const *extra_keys,
                    const dkind_t *extra_kinds, size_t nextra)
{
    size_t add = 0, kept = 0;
    int missing[8] = {0};
    if (!verbatim) {
        if (o->via.map.size > MAX_FIELDS) {
            snprintf(w->err, w->errlen, "a message has at most %d fields", MAX_FIELDS);
            return -1;
        }
        /* "sessionId" and "session_id" both given: which one wins would be a guess. Each key is
         * converted once; at most 64 * 63 / 2 comparisons of short strings. */
        char names[MAX_FIELDS][MAX_KEY + 1];
        const char *kp[MAX_FIELDS];
        size_t kl[MAX_FIELDS];
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            kp[i] = k->type == MSGPACK_OBJECT_STR ? server_key(k, names[i], &kl[i]) : NULL;
            if (kp[i] != NULL && kl[i] > MAX_KEY) /* no field of the contract: ignored, not compared */
                kp[i] = NULL;
        }
        for (uint32_t i = 0; i < o->via.map.size; i++)
            for (uint32_t j = i + 1; kp[i] != NULL && j < o->via.map.size; j++)
                if (kp[j] != NULL && kl[i] == kl[j] && memcmp(kp[i], kp[j], kl[i]) == 0) {
                    snprintf(w->err, w->errlen, "field \"%.*s\" is given twice", (int)kl[i], kp[i]);
                    return -1;
                }
    }
    for (size_t i = 0; i < nextra && i < 8; i++)
        if (!has_key(o, extra_keys[i], verbatim))
            missing[i] = 1, add++;
    /* null is the default in the JSON mapping: such fields are left out (then filled in above) */
    for (uint32_t i = 0; i < o->via.map.size; i++)
        kept += verbatim || o->via.map.ptr[i].val.type != MSGPACK_OBJECT_NIL;
    msgpack_pack_map(w->pk, kept + add);
    char buf[MAX_KEY + 1];
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (!verbatim && v->type == MSGPACK_OBJECT_NIL)
            continue;
        if (k->type != MSGPACK_OBJECT_STR) { /* the JSON mapping makes none; kept for msgpack */
            if (copy(w, k, 0, 1, 0) != 0 || copy(w, v, 0, 1, 0) != 0)
                return -1;
            continue;
        }
        size_t n;
        const char *s = verbatim ? k->via.str.ptr : server_key(k, buf, &n);
        if (verbatim)
            n = k->via.str.size;
        sl_rpc_pack_strn(w->pk, s, n);
        int meta = !verbatim && n == 8 && memcmp(s, "metadata", 8) == 0;
        int exchanges = !verbatim && n == 9 && memcmp(s, "exchanges", 9) == 0;
        if (copy(w, v, !verbatim && is_int_field(s, n), verbatim || meta, exchanges) != 0)
            return -1;
    }
    for (size_t i = 0; i < nextra && i < 8; i++) {
        if (!missing[i])
            continue;
        sl_rpc_pack_str(w->pk, extra_keys[i]);
        if (extra_kinds[i] == D_BOOL)
            msgpack_pack_false(w->pk);
        else
            sl_rpc_pack_strn(w->pk, "", 0);
    }
    return 0;
}

static int copy(walk_t *w, const msgpack_object *o, int int_field, int verbatim, int exchange_list)
{
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        if (int_field) {
            if (pack_int_string(w->pk, o) != 0) {
                snprintf(w->err, w->errlen, "an integer field holds \"%.*s\", not an integer",
                         (int)(o->via.str.size > 40 ? 40 : o->via.str.size), o->via.str.ptr);
                return -1;
            }
            return 0;
        }
        sl_rpc_pack_strn(w->pk, o->via.str.ptr, o->via.str.size);
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        msgpack_pack_array(w->pk, o->via.array.size);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            if (exchange_list && e->type == MSGPACK_OBJECT_MAP) {
                static const dkind_t kinds[] = {D_STR, D_STR};
                if (copy_map(w, e, 0, EXCHANGE_DEFAULTS, kinds, 2) != 0)
                    return -1;
            } else if (copy(w, e, int_field, verbatim, 0) != 0) {
                return -1;
            }
        }
        return 0;
    case MSGPACK_OBJECT_MAP:
        return copy_map(w, o, verbatim, NULL, NULL, 0);
    default:
        return msgpack_pack_object(w->pk, *o);
    }
}

int sl_rpc_connect_normalize(sl_rpc_method_id_t method, const void *in, size_t len, msgpack_sbuffer *out,
                             char *err, size_t errlen)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, in, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&u);
        snprintf(err, errlen, "the request is not a JSON object");
        return -1;
    }
    const char *keys[4];
    dkind_t kinds[4];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(DEFAULTS) / sizeof(DEFAULTS[0]) && n < 4; i++)
        if (DEFAULTS[i].method == method) {
            keys[n] = DEFAULTS[i].key;
            kinds[n++] = DEFAULTS[i].kind;
        }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    walk_t w = {&pk, err, errlen};
    int rc = copy_map(&w, &u.data, 0, keys, kinds, n);
    msgpack_unpacked_destroy(&u);
    return rc;
}

int sl_rpc_code_connect_status(sl_rpc_code_t code)
{
    switch (code) {
    case SL_RPC_FAILED_PRECONDITION:
        return 400; /* Connect (and google.rpc) map failed_precondition to 400 */
    case SL_RPC_PAYLOAD_TOO_LARGE:
        return 429; /* resource_exhausted */
    default:
        return sl_rpc_code_http_status(code);
    }
}
