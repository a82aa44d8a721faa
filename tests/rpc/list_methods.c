/* Prints the server's owner methods (the method table of rpc/contract.c), one name a line without
 * the service prefix: what tests/rpc/proto_methods.sh compares with the .proto and the README. */
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

int main(void)
{
    static const char prefix[] = SL_RPC_OWNER_SERVICE "/";
    for (int m = 0; m < SL_M_OWNER_COUNT; m++) {
        const char *name = sl_rpc_method_name((sl_rpc_method_id_t)m);
        if (name == NULL || strncmp(name, prefix, sizeof(prefix) - 1) != 0)
            return 1;
        printf("%s\n", name + sizeof(prefix) - 1);
    }
    return 0;
}
