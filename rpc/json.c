/*
 * JSON <-> msgpack mapping. A JSON request body is the same map as a msgpack one; it is converted
 * here and then goes through exactly the same checks and code as a msgpack request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "rpc/rpc.h"

typedef struct conv {
    const sl_rpc_limits_t *lim;
    size_t elements;
    char *err;
    size_t errlen;
} conv_t;

static int pack_json(conv_t *c, msgpack_packer *pk, json_t *v, unsigned depth)
{
    if (++c->elements > c->lim->max_elements) {
        snprintf(c->err, c->errlen, "malformed JSON request: too many elements");
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth + 1 > c->lim->max_depth) {
            snprintf(c->err, c->errlen, "malformed JSON request: nesting too deep");
            return -1;
        }
        msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
        {
            sl_rpc_pack_str(pk, key);
            if (pack_json(c, pk, val, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (depth + 1 > c->lim->max_depth) {
            snprintf(c->err, c->errlen, "malformed JSON request: nesting too deep");
            return -1;
        }
        size_t i;
        json_t *val;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, val)
        {
            if (pack_json(c, pk, val, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_STRING:
        sl_rpc_pack_strn(pk, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        return 0;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        return 0;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return 0;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return 0;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return 0;
    }
    return -1;
}

int sl_rpc_json_to_msgpack(const char *json, size_t len, const sl_rpc_limits_t *limits, msgpack_sbuffer *out,
                           char *err, size_t errlen)
{
    sl_rpc_limits_t def;
    if (limits == NULL) {
        sl_rpc_limits_default(&def);
        limits = &def;
    }
    if (len > limits->max_body) {
        snprintf(err, errlen, "body of %zu bytes exceeds the limit of %zu bytes", len, limits->max_body);
        return -1;
    }
    /* jansson limits nesting itself (2048) while parsing, rejects invalid UTF-8 and, with this flag,
     * duplicate keys (which would make "which value wins" ambiguous between encodings). */
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON request at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(err, errlen, "malformed JSON request: the body must be a JSON object");
        return -1;
    }
    conv_t c = {limits, 0, err, errlen};
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = pack_json(&c, &pk, root, 0);
    json_decref(root);
    return rc;
}

/* ---- msgpack -> JSON (replies) ---- */

static json_t *to_json(const msgpack_object *o);

static json_t *bytes_to_json(const char *p, size_t n)
{
    if (sl_rpc_utf8_valid(p, n))
        return json_stringn(p, n);
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = 4 * ((n + 2) / 3);
    char *b = malloc(olen + 1);
    if (b == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)p[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)p[i + 2];
        b[j++] = tbl[(v >> 18) & 63];
        b[j++] = tbl[(v >> 12) & 63];
        b[j++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        b[j++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    json_t *s = json_stringn(b, j);
    free(b);
    return s;
}

static json_t *to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return bytes_to_json(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return bytes_to_json(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            json_array_append_new(a, to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            json_object_setn_new(m, kv->key.via.str.ptr, kv->key.via.str.size, to_json(&kv->val));
        }
        return m;
    }
    default:
        return json_null();
    }
}

int sl_rpc_msgpack_to_json(const void *buf, size_t len, char **out, size_t *outlen)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 4096);
    int rc = -1;
    if (msgpack_unpack(buf, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        json_t *j = to_json(&obj);
        if (j != NULL) {
            *out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            if (*out != NULL) {
                *outlen = strlen(*out);
                rc = 0;
            }
        }
    }
    msgpack_zone_destroy(&zone);
    return rc;
}
