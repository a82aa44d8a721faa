/* Live events without h2o (internal/events.h): event buffers, their encoding, page comparison. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/events.h"

#define DELTA_MAX_BYTES (256u << 10) /* more rendered HTML than this in one change: "reload" */
#define DELTA_MAX_ITEMS 200

uint64_t sl_ev_hash(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    /* FNV-1a, 64 bits */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

ev_t *sl_ev_new(const char *s, size_t n)
{
    ev_t *e = malloc(sizeof(*e) + n);
    if (e == NULL)
        return NULL;
    e->refs = 1;
    e->len = n;
    memcpy(e->data, s, n);
    return e;
}

void sl_ev_unref(ev_t *e)
{
    if (e && --e->refs == 0)
        free(e);
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf_t;

static void sb_add(strbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_str(strbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_u64(strbuf_t *b, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof(t), "%llu", (unsigned long long)v);
    sb_add(b, t, (size_t)n);
}

/* s as a JSON string (our HTML is UTF-8 already: only quotes, backslashes and controls escaped). */
static void sb_json(strbuf_t *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, s + run, i - run);
        char t[8];
        int k = c == '"'    ? snprintf(t, sizeof(t), "\\\"")
                : c == '\\' ? snprintf(t, sizeof(t), "\\\\")
                : c == '\n' ? snprintf(t, sizeof(t), "\\n")
                            : snprintf(t, sizeof(t), "\\u%04x", c);
        sb_add(b, t, (size_t)k);
        run = i + 1;
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

/* The start of "event: version\nid: V\ndata: {"version":V,"etag":"<the JSON document's ETag>"...". */
static void version_head(strbuf_t *b, uint64_t version, const char *tag, size_t taglen)
{
    sb_str(b, "event: version\nid: ");
    sb_u64(b, version);
    sb_str(b, "\ndata: {\"version\":");
    sb_u64(b, version);
    sb_str(b, ",\"etag\":");
    sb_json(b, tag, taglen);
}

static ev_t *sb_event(strbuf_t *b);

ev_t *sl_ev_version(uint64_t version, const char *tag, size_t taglen, int connect, int reload)
{
    strbuf_t b = {0};
    if (connect)
        sb_str(&b, "retry: 3000\n");
    version_head(&b, version, tag, taglen);
    if (reload)
        sb_str(&b, ",\"reload\":true");
    return sb_event(&b);
}

static ev_t *sb_event(strbuf_t *b)
{
    sb_str(b, "}\n\n");
    ev_t *e = b->oom ? NULL : sl_ev_new(b->p, b->len);
    free(b->p);
    return e;
}

/* ---- page index: articles and header of a rendered page (core/projection.c's markup) ---- */

static const char ART_OPEN[] = "<article id=\"exchange-";
static const char ART_CLOSE[] = "</article>\n";

void sl_ev_index_page(const char *p, size_t n, page_index_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *end = p + n;
    const char *h = memmem(p, n, "<header>", 8),
               *he = h ? memmem(h, (size_t)(end - h), "</header>", 9) : NULL;
    if (h == NULL || he == NULL)
        return;
    out->header_off = (size_t)(h - p);
    out->header_len = (size_t)(he + 9 - h);
    out->header_hash = sl_ev_hash(h, out->header_len);
    size_t cap = 0;
    for (const char *a = he; (a = memmem(a, (size_t)(end - a), ART_OPEN, sizeof(ART_OPEN) - 1)) != NULL;) {
        const char *close = memmem(a, (size_t)(end - a), ART_CLOSE, sizeof(ART_CLOSE) - 1);
        if (close == NULL)
            break;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            art_t *na = realloc(out->arts, cap * sizeof(*na));
            if (na == NULL) {
                free(out->arts);
                memset(out, 0, sizeof(*out));
                return;
            }
            out->arts = na;
        }
        art_t *t = &out->arts[out->n++];
        t->id = strtoull(a + sizeof(ART_OPEN) - 1, NULL, 10);
        t->off = (size_t)(a - p);
        t->len = (size_t)(close + sizeof(ART_CLOSE) - 1 - a) - 1; /* without the newline */
        t->hash = sl_ev_hash(a, t->len);
        a = close + sizeof(ART_CLOSE) - 1;
    }
    out->ok = 1;
}

/* The old index's hash of id, or 0 (absent); a small open-addressing table built per comparison. */
typedef struct idset {
    uint64_t *keys, *vals;
    size_t mask;
} idset_t;

static int idset_build(idset_t *t, const page_index_t *ix)
{
    size_t cap = 16;
    while (cap < ix->n * 2)
        cap *= 2;
    t->keys = calloc(cap, sizeof(uint64_t));
    t->vals = calloc(cap, sizeof(uint64_t));
    t->mask = cap - 1;
    if (t->keys == NULL || t->vals == NULL)
        return -1;
    for (size_t i = 0; i < ix->n; i++) {
        size_t k = (size_t)(ix->arts[i].id * 0x9E3779B97F4A7C15ull) & t->mask;
        while (t->keys[k] != 0 && t->keys[k] != ix->arts[i].id + 1)
            k = (k + 1) & t->mask;
        t->keys[k] = ix->arts[i].id + 1;
        t->vals[k] = ix->arts[i].hash | 1; /* never 0 */
    }
    return 0;
}

static uint64_t idset_get(const idset_t *t, uint64_t id)
{
    size_t k = (size_t)(id * 0x9E3779B97F4A7C15ull) & t->mask;
    while (t->keys[k] != 0) {
        if (t->keys[k] == id + 1)
            return t->vals[k];
        k = (k + 1) & t->mask;
    }
    return 0;
}

/* The version event of the change old -> (version, page p with index nw): removed, upserted, header. */
ev_t *sl_ev_change(const page_index_t *old, uint64_t prev, uint64_t version, const char *tag, size_t taglen,
                   const char *p, const page_index_t *nw)
{
    strbuf_t b = {0};
    version_head(&b, version, tag, taglen);
    if (prev == 0 || !old->ok || !nw->ok) {
        sb_str(&b, ",\"reload\":true");
        return sb_event(&b);
    }
    sb_str(&b, ",\"prev\":");
    sb_u64(&b, prev);
    idset_t was = {0}, now = {0};
    int ok = idset_build(&was, old) == 0 && idset_build(&now, nw) == 0;
    size_t items = 0, bytes = 0;
    if (ok) {
        sb_str(&b, ",\"removed\":[");
        int first = 1;
        for (size_t i = 0; i < old->n; i++)
            if (idset_get(&now, old->arts[i].id) == 0) {
                if (!first)
                    sb_add(&b, ",", 1);
                sb_u64(&b, old->arts[i].id);
                first = 0;
                items++;
            }
        sb_str(&b, "],\"upserted\":[");
        first = 1;
        for (size_t i = 0; i < nw->n; i++) {
            const art_t *a = &nw->arts[i];
            if (idset_get(&was, a->id) == (a->hash | 1))
                continue;
            if (!first)
                sb_add(&b, ",", 1);
            sb_str(&b, "{\"id\":");
            sb_u64(&b, a->id);
            sb_str(&b, ",\"after\":");
            sb_u64(&b, i > 0 ? nw->arts[i - 1].id : 0);
            sb_str(&b, ",\"html\":");
            sb_json(&b, p + a->off, a->len);
            sb_add(&b, "}", 1);
            first = 0;
            items++;
            bytes += a->len;
        }
        sb_add(&b, "]", 1);
        if (old->header_hash != nw->header_hash) {
            sb_str(&b, ",\"header\":");
            sb_json(&b, p + nw->header_off, nw->header_len);
            bytes += nw->header_len;
        }
    }
    free(was.keys);
    free(was.vals);
    free(now.keys);
    free(now.vals);
    if (!ok || items > DELTA_MAX_ITEMS || bytes > DELTA_MAX_BYTES) {
        /* too big to describe (or no memory): the pages reload */
        free(b.p);
        b = (strbuf_t){0};
        version_head(&b, version, tag, taglen);
        sb_str(&b, ",\"reload\":true");
    }
    return sb_event(&b);
}
