/* Reading request fields and packing answers: the helpers every method implementation shares. */
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

int sl_rpc_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* ---- fields ---- */

const msgpack_object *sl_rpc_field(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        /* an empty str may carry a NULL pointer: no memcmp on it */
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            (klen == 0 || memcmp(kv->key.via.str.ptr, key, klen) == 0))
            return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
    }
    return NULL;
}

static int absent(const char *key, int required, char *msg, size_t msglen)
{
    if (required)
        snprintf(msg, msglen, "missing required field \"%s\"", key);
    return 0;
}

int sl_rpc_get_str(const msgpack_object *map, const char *key, int required, size_t max_len, const char **s,
                   size_t *len, char *msg, size_t msglen)
{
    const msgpack_object *o = sl_rpc_field(map, key);
    if (o == NULL)
        return absent(key, required, msg, msglen);
    if (o->type == MSGPACK_OBJECT_STR) {
        *s = o->via.str.ptr;
        *len = o->via.str.size;
    } else if (o->type == MSGPACK_OBJECT_BIN && sl_rpc_utf8_valid(o->via.bin.ptr, o->via.bin.size)) {
        *s = o->via.bin.ptr;
        *len = o->via.bin.size;
    } else {
        snprintf(msg, msglen, "field \"%s\" must be a string", key);
        return -1;
    }
    if (*len > max_len) {
        snprintf(msg, msglen, "field \"%s\" is %zu bytes long; the limit is %zu", key, *len, max_len);
        return -1;
    }
    return 1;
}

int sl_rpc_get_bool(const msgpack_object *map, const char *key, int required, int *out, char *msg,
                    size_t msglen)
{
    const msgpack_object *o = sl_rpc_field(map, key);
    if (o == NULL)
        return absent(key, required, msg, msglen);
    if (o->type != MSGPACK_OBJECT_BOOLEAN) {
        snprintf(msg, msglen, "field \"%s\" must be a boolean", key);
        return -1;
    }
    *out = o->via.boolean;
    return 1;
}

int sl_rpc_get_i64(const msgpack_object *map, const char *key, int required, int64_t min, int64_t max,
                   int64_t *out, char *msg, size_t msglen)
{
    const msgpack_object *o = sl_rpc_field(map, key);
    if (o == NULL)
        return absent(key, required, msg, msglen);
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        v = o->via.i64;
    else {
        snprintf(msg, msglen, "field \"%s\" must be an integer", key);
        return -1;
    }
    if (v < min || v > max) {
        snprintf(msg, msglen, "field \"%s\" must be between %lld and %lld", key, (long long)min,
                 (long long)max);
        return -1;
    }
    *out = v;
    return 1;
}

void sl_rpc_pack_str(msgpack_packer *pk, const char *s)
{
    sl_rpc_pack_strn(pk, s, strlen(s));
}

void sl_rpc_pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}
