/* Fuzz target: routing and path parsing (gateway/route.c). Invariants: the rest of a route points
 * inside the path; an accepted share id is 1-64 bytes of [A-Za-z0-9_-]; decoded segments fit their
 * buffers, are NUL-terminated, valid UTF-8 and free of control bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/route.h"
#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_segment(const char *s, int n, size_t cap)
{
    if (n < 0)
        return;
    if (n == 0 || (size_t)n >= cap || s[n] != '\0' || strlen(s) != (size_t)n ||
        !sl_rpc_utf8_valid(s, (size_t)n))
        abort();
    for (int i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = (const char *)data;
    sl_route_t r;
    sl_route_classify(path, size, &r);
    if (r.rest && (r.rest < path || r.rest + r.rest_len > path + size))
        abort();
    if ((r.kind == SL_ROUTE_SHARE_JSON || r.kind == SL_ROUTE_SHARE_HTML || r.kind == SL_ROUTE_SHARE_EVENTS) &&
        sl_route_share_id_valid(r.rest, r.rest_len)) {
        if (r.rest_len == 0 || r.rest_len > 64)
            abort();
        for (size_t i = 0; i < r.rest_len; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", r.rest[i]) ||
                r.rest[i] == '\0')
                abort();
    }
    if (r.kind == SL_ROUTE_COMPAT) {
        char project[201], session[65];
        sl_compat_kind_t k =
            sl_route_compat(r.rest, r.rest_len, project, sizeof(project), session, sizeof(session));
        if (k == SL_COMPAT_SESSIONS || k == SL_COMPAT_SIZES || k == SL_COMPAT_SESSION)
            check_segment(project, (int)strlen(project), sizeof(project));
        if (k == SL_COMPAT_SESSION)
            check_segment(session, (int)strlen(session), sizeof(session));
    }
    char seg[32];
    check_segment(seg, sl_route_segment(path, size, seg, sizeof(seg)), sizeof(seg));
    return 0;
}
