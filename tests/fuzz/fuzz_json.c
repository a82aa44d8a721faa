/* Fuzz target: the JSON request decoder (rpc/json.c) and the Connect mapping after it
 * (rpc/connect.c). Invariant: what they accept becomes a msgpack map that the msgpack checker
 * accepts too (the server sends converted bodies through it); a refusal always says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    if (sl_rpc_json_to_msgpack((const char *)data, size, &lim, &sb, err, sizeof(err)) == 0) {
        char err2[256];
        if (sl_rpc_check_msgpack(sb.data, sb.size, &lim, err2, sizeof(err2)) != 0) {
            fprintf(stderr, "accepted JSON became msgpack the checker refuses: %s\n", err2);
            abort();
        }
        /* the Connect mapping, for a method picked by the input's length */
        msgpack_sbuffer cn;
        msgpack_sbuffer_init(&cn);
        char err3[256] = "";
        if (sl_rpc_connect_normalize((sl_rpc_method_id_t)(size % SL_M_OWNER_COUNT), sb.data, sb.size, &cn,
                                     err3, sizeof(err3)) == 0) {
            if (sl_rpc_check_msgpack(cn.data, cn.size, &lim, err2, sizeof(err2)) != 0) {
                fprintf(stderr, "the Connect mapping made msgpack the checker refuses: %s\n", err2);
                abort();
            }
        } else if (err3[0] == '\0') {
            abort();
        }
        msgpack_sbuffer_destroy(&cn);
    } else if (err[0] == '\0') {
        abort();
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
