/* Fuzz target: the msgpack request decoder (rpc/codec.c) and what runs on what it accepts.
 * Invariant the server relies on (rpc/server.c): a body the checker accepts unpacks completely into
 * one map, its fields can be read, and it converts to valid UTF-8 JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    char err[256] = "";
    if (sl_rpc_check_msgpack(data, size, &lim, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort(); /* every refusal explains itself */
        return 0;
    }
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack((const char *)data, size, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        off != size || obj.type != MSGPACK_OBJECT_MAP)
        abort();
    /* the field readers on every key, with each type */
    for (uint32_t i = 0; i < obj.via.map.size; i++) {
        const msgpack_object *k = &obj.via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            abort(); /* the checker only lets string keys through */
        char key[64];
        size_t n = k->via.str.size < sizeof(key) - 1 ? k->via.str.size : sizeof(key) - 1;
        if (n) /* an empty str may have a NULL pointer */
            memcpy(key, k->via.str.ptr, n);
        key[n] = '\0';
        const char *s;
        size_t slen;
        int b;
        int64_t v;
        char msg[128];
        if (sl_rpc_get_str(&obj, key, 0, 1u << 20, &s, &slen, msg, sizeof(msg)) == 1 &&
            !sl_rpc_utf8_valid(s, slen))
            abort();
        sl_rpc_get_bool(&obj, key, 1, &b, msg, sizeof(msg));
        sl_rpc_get_i64(&obj, key, 1, INT64_MIN, INT64_MAX, &v, msg, sizeof(msg));
    }
    char *json = NULL;
    size_t jlen = 0;
    if (sl_rpc_msgpack_to_json(data, size, &json, &jlen) != 0 || !sl_rpc_utf8_valid(json, jlen) ||
        strlen(json) != jlen)
        abort();
    free(json);
    msgpack_zone_destroy(&zone);
    return 0;
}
