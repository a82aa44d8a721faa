/* Routing without h2o (route.h). */
#include <ctype.h>
#include <string.h>

#include "gateway/internal/route.h"
#include "rpc/rpc.h"

static int starts(const char *p, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && memcmp(p, pre, n) == 0;
}

static int equals(const char *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

static void set(sl_route_t *out, sl_route_kind_t kind, const char *rest, size_t n)
{
    out->kind = kind;
    out->rest = rest;
    out->rest_len = n;
}

void sl_route_classify(const char *path, size_t len, sl_route_t *out)
{
    const char *q = len ? memchr(path, '?', len) : NULL;
    if (q)
        len = (size_t)(q - path);
    if (starts(path, len, "/api/v1/share/"))
        set(out, SL_ROUTE_SHARE_JSON, path + 14, len - 14);
    else if (starts(path, len, "/share/") && len > 7 + 7 && memcmp(path + len - 7, "/events", 7) == 0)
        set(out, SL_ROUTE_SHARE_EVENTS, path + 7, len - 7 - 7);
    else if (starts(path, len, "/share/"))
        set(out, SL_ROUTE_SHARE_HTML, path + 7, len - 7);
    else if (starts(path, len, "/rpc/"))
        set(out, SL_ROUTE_RPC, path + 5, len - 5);
    else if (starts(path, len, "/api/v1/projects") && (len == 16 || path[16] == '/'))
        set(out, SL_ROUTE_COMPAT, path + 16, len - 16);
    else if (equals(path, len, "/healthz"))
        set(out, SL_ROUTE_HEALTH, NULL, 0);
    else if (equals(path, len, "/readyz"))
        set(out, SL_ROUTE_READY, NULL, 0);
    else if (equals(path, len, "/metrics"))
        set(out, SL_ROUTE_METRICS, NULL, 0);
    else if (starts(path, len, "/console") && (len == 8 || path[8] == '/'))
        set(out, SL_ROUTE_CONSOLE, path + 8, len - 8);
    else
        set(out, SL_ROUTE_OTHER, NULL, 0);
}

int sl_route_share_id_valid(const char *id, size_t len)
{
    return sl_rpc_id_valid(id, len); /* the one id rule, shared with the core */
}

static int hexval(unsigned char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

int sl_route_segment(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            ch = (unsigned char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || k + 1 >= cap)
            return -1;
        out[k++] = (char)ch;
    }
    out[k] = '\0';
    return k > 0 && sl_rpc_utf8_valid(out, k) ? (int)k : -1;
}

sl_compat_kind_t sl_route_compat(const char *rest, size_t len, char *project, size_t pcap, char *session,
                                 size_t scap)
{
    if (len == 0 || (len == 1 && rest[0] == '/'))
        return SL_COMPAT_PROJECTS;
    if (rest[0] != '/')
        return SL_COMPAT_NONE;
    const char *p = rest + 1, *end = rest + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || sl_route_segment(p, (size_t)(slash - p), project, pcap) < 0)
        return SL_COMPAT_NONE;
    size_t rl = (size_t)(end - slash);
    if (equals(slash, rl, "/sessions") || equals(slash, rl, "/sessions/"))
        return SL_COMPAT_SESSIONS;
    if (rl <= 10 || memcmp(slash, "/sessions/", 10) != 0)
        return SL_COMPAT_NONE;
    if (equals(slash + 10, rl - 10, "sizes"))
        return SL_COMPAT_SIZES;
    if (sl_route_segment(slash + 10, rl - 10, session, scap) < 0)
        return SL_COMPAT_NONE;
    return SL_COMPAT_SESSION;
}
