/*
 * The node's memory of exchange pieces (piece_cache.h): a hash table of blobs by key, with a
 * least-recently-used list bounding the bytes held. An entry evicted while referenced leaves the
 * table at once and is freed by its last release.
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal/piece_cache.h"

struct sl_pc_entry {
    sl_pc_entry_t *next_hash;
    sl_pc_entry_t *prev, *next; /* LRU: head = most recent */
    unsigned refs;
    int linked;                   /* in the table and the list */
    uint64_t redis_gen, redis_ms; /* Redis held it (its trust generation, when): sl_pcache_in_redis */
    unsigned char key[16];
    size_t len;
    unsigned char blob[];
};

struct sl_pcache {
    sl_pc_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    sl_pc_entry_t *head, *tail;
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses;
};

#define OVERHEAD (sizeof(sl_pc_entry_t) + 2 * sizeof(void *))

static size_t cost(const sl_pc_entry_t *e)
{
    return e->len + OVERHEAD;
}

static size_t slot(const sl_pcache_t *c, const unsigned char key[16])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h)); /* the key is a hash already */
    return (size_t)h & (c->nbuckets - 1);
}

sl_pcache_t *sl_pcache_new(size_t max_bytes)
{
    sl_pcache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->max_bytes = max_bytes;
    return c;
}

static void lru_unlink(sl_pcache_t *c, sl_pc_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(sl_pcache_t *c, sl_pc_entry_t *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

/* Out of the table and the list; freed now unless referenced. */
static void drop(sl_pcache_t *c, sl_pc_entry_t *e)
{
    sl_pc_entry_t **pp = &c->buckets[slot(c, e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->next_hash;
    if (*pp)
        *pp = e->next_hash;
    lru_unlink(c, e);
    e->linked = 0;
    c->bytes -= cost(e);
    c->entries--;
    if (e->refs == 0)
        free(e);
}

void sl_pcache_free(sl_pcache_t *c)
{
    if (c == NULL)
        return;
    while (c->head)
        drop(c, c->head); /* references are all released when the core closes */
    free(c->buckets);
    free(c);
}

sl_pc_entry_t *sl_pcache_get(sl_pcache_t *c, const unsigned char key[16], const void **blob, size_t *len)
{
    for (sl_pc_entry_t *e = c->buckets[slot(c, key)]; e; e = e->next_hash) {
        if (memcmp(e->key, key, 16) != 0)
            continue;
        lru_unlink(c, e);
        lru_front(c, e);
        e->refs++;
        c->hits++;
        *blob = e->blob;
        *len = e->len;
        return e;
    }
    c->misses++;
    return NULL;
}

static void grow(sl_pcache_t *c)
{
    size_t n = c->nbuckets * 2;
    sl_pc_entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    sl_pc_entry_t **old = c->buckets;
    size_t oldn = c->nbuckets;
    c->buckets = b;
    c->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        for (sl_pc_entry_t *e = old[i], *next; e; e = next) {
            next = e->next_hash;
            size_t s = slot(c, e->key);
            e->next_hash = b[s];
            b[s] = e;
        }
    }
    free(old);
}

void sl_pcache_put(sl_pcache_t *c, const unsigned char key[16], const void *blob, size_t len)
{
    if (len + OVERHEAD > c->max_bytes)
        return;
    for (sl_pc_entry_t *e = c->buckets[slot(c, key)]; e; e = e->next_hash)
        if (memcmp(e->key, key, 16) == 0)
            return;
    sl_pc_entry_t *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return;
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    e->len = len;
    memcpy(e->blob, blob, len);
    while (c->bytes + cost(e) > c->max_bytes && c->tail)
        drop(c, c->tail);
    if (c->entries >= c->nbuckets)
        grow(c);
    size_t s = slot(c, key);
    e->next_hash = c->buckets[s];
    c->buckets[s] = e;
    lru_front(c, e);
    e->linked = 1;
    c->bytes += cost(e);
    c->entries++;
}

void sl_pcache_release(sl_pcache_t *c, sl_pc_entry_t *e)
{
    (void)c;
    if (e == NULL)
        return;
    if (--e->refs == 0 && !e->linked)
        free(e);
}

int sl_pcache_in_redis(const sl_pc_entry_t *e, uint64_t gen, uint64_t now_ms, uint64_t max_age_ms)
{
    return e != NULL && e->redis_ms != 0 && e->redis_gen == gen && now_ms - e->redis_ms < max_age_ms;
}

void sl_pcache_set_in_redis(sl_pcache_t *c, const unsigned char key[16], uint64_t gen, uint64_t now_ms)
{
    for (sl_pc_entry_t *e = c->buckets[slot(c, key)]; e; e = e->next_hash)
        if (memcmp(e->key, key, 16) == 0) {
            e->redis_gen = gen;
            e->redis_ms = now_ms ? now_ms : 1;
            return;
        }
}

void sl_pcache_stats(const sl_pcache_t *c, sl_pcache_stats_t *out)
{
    out->hits = c->hits;
    out->misses = c->misses;
    out->entries = c->entries;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
}
