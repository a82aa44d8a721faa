/*
 * The bounded msgpack checker. msgpack-c's unpacker trusts declared counts: a 5-byte message that
 * claims an array of 268M elements makes it allocate gigabytes before it notices the bytes are not
 * there. So every request body is walked here first, without allocating, and rejected unless every
 * declared count and length fits in what remains.
 */
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

int sl_rpc_utf8_valid(const char *buf, size_t len)
{
    if (len == 0)
        return 1; /* buf may be NULL (an empty msgpack str): no pointer arithmetic on it */
    const unsigned char *s = (const unsigned char *)buf, *end = s + len;
    while (s < end) {
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        size_t n;
        unsigned min, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - s) <= n)
            return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += n + 1;
    }
    return 1;
}

void sl_rpc_limits_default(sl_rpc_limits_t *l)
{
    l->max_body = 32u << 20;
    l->max_depth = 32;
    l->max_elements = 1000000;
}

typedef struct walker {
    const unsigned char *p, *end, *start;
    const sl_rpc_limits_t *lim;
    size_t elements;
    char *err;
    size_t errlen;
} walker_t;

static int fail(walker_t *w, const char *what)
{
    snprintf(w->err, w->errlen, "malformed msgpack at byte %zu: %s", (size_t)(w->p - w->start), what);
    return -1;
}

static int need(walker_t *w, size_t n)
{
    return (size_t)(w->end - w->p) >= n ? 0 : fail(w, "truncated");
}

static uint64_t be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int walk(walker_t *w, unsigned depth, int want_str);

/* A str/bin of n bytes follows; strings must be UTF-8. */
static int take_bytes(walker_t *w, uint64_t n, int is_str)
{
    if ((uint64_t)(w->end - w->p) < n)
        return fail(w, "declared length exceeds the body");
    if (is_str && !sl_rpc_utf8_valid((const char *)w->p, (size_t)n))
        return fail(w, "string is not valid UTF-8");
    w->p += n;
    return 0;
}

static int take_container(walker_t *w, uint64_t count, int is_map, unsigned depth)
{
    /* Each element takes at least one byte: a count larger than what remains is a lie. */
    uint64_t items = is_map ? count * 2 : count;
    if (count > (uint64_t)(w->end - w->p) || items > (uint64_t)(w->end - w->p))
        return fail(w, "declared element count exceeds the body");
    if (depth + 1 > w->lim->max_depth)
        return fail(w, "nesting too deep");
    for (uint64_t i = 0; i < count; i++) {
        if (is_map && walk(w, depth + 1, 1) != 0)
            return -1;
        if (walk(w, depth + 1, 0) != 0)
            return -1;
    }
    return 0;
}

static int walk(walker_t *w, unsigned depth, int want_str)
{
    if (++w->elements > w->lim->max_elements)
        return fail(w, "too many elements");
    if (need(w, 1) != 0)
        return -1;
    unsigned char t = *w->p++;
    int is_str = (t >= 0xa0 && t <= 0xbf) || t == 0xd9 || t == 0xda || t == 0xdb;
    if (want_str && !is_str)
        return fail(w, "map key is not a string");
    if (t <= 0x7f || t >= 0xe0)
        return 0; /* fixint */
    if (t >= 0x80 && t <= 0x8f)
        return take_container(w, t & 0x0f, 1, depth);
    if (t >= 0x90 && t <= 0x9f)
        return take_container(w, t & 0x0f, 0, depth);
    if (t >= 0xa0 && t <= 0xbf)
        return take_bytes(w, t & 0x1f, 1);
    switch (t) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
        return 0; /* nil, false, true */
    case 0xc4:
    case 0xc5:
    case 0xc6: { /* bin 8/16/32 */
        size_t n = (size_t)1 << (t - 0xc4);
        if (need(w, n) != 0)
            return -1;
        uint64_t len = be(w->p, n);
        w->p += n;
        return take_bytes(w, len, 0);
    }
    case 0xd9:
    case 0xda:
    case 0xdb: { /* str 8/16/32 */
        size_t n = (size_t)1 << (t - 0xd9);
        if (need(w, n) != 0)
            return -1;
        uint64_t len = be(w->p, n);
        w->p += n;
        return take_bytes(w, len, 1);
    }
    case 0xca:
    case 0xcc:
    case 0xd0:
        if (t == 0xca)
            return need(w, 4) ? -1 : (w->p += 4, 0);
        return need(w, 1) ? -1 : (w->p += 1, 0);
    case 0xcb:
    case 0xcf:
    case 0xd3:
        return need(w, 8) ? -1 : (w->p += 8, 0);
    case 0xcd:
    case 0xd1:
        return need(w, 2) ? -1 : (w->p += 2, 0);
    case 0xce:
    case 0xd2:
        return need(w, 4) ? -1 : (w->p += 4, 0);
    case 0xdc:
    case 0xdd: { /* array 16/32 */
        size_t n = t == 0xdc ? 2 : 4;
        if (need(w, n) != 0)
            return -1;
        uint64_t count = be(w->p, n);
        w->p += n;
        return take_container(w, count, 0, depth);
    }
    case 0xde:
    case 0xdf: { /* map 16/32 */
        size_t n = t == 0xde ? 2 : 4;
        if (need(w, n) != 0)
            return -1;
        uint64_t count = be(w->p, n);
        w->p += n;
        return take_container(w, count, 1, depth);
    }
    default: /* 0xc1 (never used), ext and fixext types */
        w->p--;
        return fail(w, "unsupported type (ext or reserved)");
    }
}

int sl_rpc_check_msgpack(const void *buf, size_t len, const sl_rpc_limits_t *limits, char *err, size_t errlen)
{
    sl_rpc_limits_t def;
    if (limits == NULL) {
        sl_rpc_limits_default(&def);
        limits = &def;
    }
    walker_t w = {buf, (const unsigned char *)buf + len, buf, limits, 0, err, errlen};
    if (len > limits->max_body) {
        snprintf(err, errlen, "body of %zu bytes exceeds the limit of %zu bytes", len, limits->max_body);
        return -1;
    }
    if (len == 0) {
        snprintf(err, errlen, "empty body: expected a msgpack map");
        return -1;
    }
    unsigned char t = w.p[0];
    if (!((t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf)) {
        snprintf(err, errlen, "the request must be a msgpack map");
        return -1;
    }
    if (walk(&w, 0, 0) != 0)
        return -1;
    if (w.p != w.end) {
        snprintf(err, errlen, "malformed msgpack: %zu trailing bytes after the request map",
                 (size_t)(w.end - w.p));
        return -1;
    }
    return 0;
}
