/*
 * Internal to core/: the node's memory of exchange pieces (piece_cache.c, docs/pieces.md).
 *
 * A blob of pieces is named by its key (the hash of everything it is made from): equal keys, equal
 * bytes, on any node, for any session. So the node keeps the blobs it read or built, and a change
 * reads from MariaDB only the keys of a session's exchanges and the blobs it does not hold. Bounded
 * by bytes, least recently used first out. Used on the loop thread only; an entry handed out is
 * referenced (a build on the thread pool reads it) until released.
 */
#ifndef SL_CORE_INTERNAL_PIECE_CACHE_H
#define SL_CORE_INTERNAL_PIECE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_pcache sl_pcache_t;
typedef struct sl_pc_entry sl_pc_entry_t;

typedef struct sl_pcache_stats {
    uint64_t hits, misses, entries, bytes, max_bytes;
} sl_pcache_stats_t;

/* max_bytes 0: keeps nothing. NULL when out of memory. */
sl_pcache_t *sl_pcache_new(size_t max_bytes);
void sl_pcache_free(sl_pcache_t *c);

/* The entry under key, referenced, with its blob; NULL when absent (counted as a miss). */
sl_pc_entry_t *sl_pcache_get(sl_pcache_t *c, const unsigned char key[16], const void **blob, size_t *len);

/* Keeps a copy of blob under key (when not already there and it fits). */
void sl_pcache_put(sl_pcache_t *c, const unsigned char key[16], const void *blob, size_t len);

/* Releases a reference from sl_pcache_get (e may be NULL). */
void sl_pcache_release(sl_pcache_t *c, sl_pc_entry_t *e);

/* Whether the node knows Redis holds e's blob (cache/blobs.c): it stored or read it there, in the
 * same trust generation of its Redis (a restarted or emptied Redis is another generation), less than
 * max_age_ms ago (blobs are written with a TTL). */
int sl_pcache_in_redis(const sl_pc_entry_t *e, uint64_t gen, uint64_t now_ms, uint64_t max_age_ms);
void sl_pcache_set_in_redis(sl_pcache_t *c, const unsigned char key[16], uint64_t gen, uint64_t now_ms);

void sl_pcache_stats(const sl_pcache_t *c, sl_pcache_stats_t *out);

#endif
