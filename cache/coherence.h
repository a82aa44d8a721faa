/*
 * coherence — what this node may know about projections without asking Redis.
 *
 * Redis holds the authoritative projection entries (cache.h). Asking it on every public GET costs a
 * round trip, a context switch to Redis and Redis' own CPU. This module lets a node remember, per
 * session id, "Redis holds PUBLIC (or TOMB) of version V", and answer from that memory, while
 * keeping the guarantee of docs/invalidation.md: once an owner's call returned, no node serves what
 * it removed. How (the full argument is in docs/invalidation.md, "Node memory"):
 *
 *  - Every node subscribes to the channel "<prefix>inv" and to its own "<prefix>c:<node id>", and
 *    holds a lease: a member of the sorted set "<prefix>nodes" scored with its expiry (Redis time),
 *    renewed every renew_ms for lease_ms. A renewal becomes usable only when its sync message,
 *    published right after it, arrives on the node's subscription: so every invalidation published
 *    before the renewal has been processed by then. The node trusts its memory only while its
 *    subscription is up and until (send time of the last confirmed renewal + lease_ms - margin_ms).
 *  - An owner change calls sl_coh_invalidate() after writing the MARK and again after publishing:
 *    it forgets the id locally, then one Lua script publishes the invalidation and returns every
 *    node with a live lease, atomically. The callback runs when each of those nodes acknowledged
 *    (it forgot the id before acknowledging) or its lease expired. Only then does the owner's call
 *    go on (and eventually return).
 *  - A node learns "id is at V" only from a Redis reply to a command sent with a ticket
 *    (sl_coh_ticket() before sending); the reply is refused if an invalidation of that id arrived
 *    after the ticket was taken, or the node was not coherent in between.
 *
 * When Redis is unreachable, frozen or restarted, subscriptions and renewals fail, leases lapse,
 * and nodes fall back to asking Redis (and, through the core, MariaDB).
 */
#ifndef SL_CACHE_COHERENCE_H
#define SL_CACHE_COHERENCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache/cache.h"

typedef struct sl_coh sl_coh_t;

typedef struct sl_coh_config {
    unsigned lease_ms;    /* default 1500 */
    unsigned renew_ms;    /* default 250 */
    unsigned margin_ms;   /* default 300: how much earlier than Redis' expiry a node stops trusting */
    size_t max_entries;   /* default 262144; the table is emptied when full */
} sl_coh_config_t;

typedef struct sl_coh_stats {
    uint64_t lookups, known;   /* sl_coh_lookup calls, of which answered */
    uint64_t learned, refused; /* sl_coh_learn accepted / refused */
    uint64_t invalidations_sent, invalidations_received, acks_received, lease_waits;
    uint64_t resubscribes, coherence_lost;
    size_t entries;
    int coherent;
} sl_coh_stats_t;

/* Opens the node's coherence on `loop`: its own subscriber connection (to redis_cfg's server, same
 * key prefix) and the renewals, sent through `data` (an open sl_cache_t, not owned). */
int sl_coh_open(sl_coh_t **out, uv_loop_t *loop, sl_cache_t *data, const sl_cache_config_t *redis_cfg,
                const sl_coh_config_t *cfg);
/* Pending invalidations complete with status SL_CACHE_E_CLOSED (later, from the loop). */
void sl_coh_close(sl_coh_t *h);

/* 1 when the node may currently trust its memory. */
int sl_coh_coherent(sl_coh_t *h);

/* 1 and *kind (SL_PROJ_PUBLIC or SL_PROJ_TOMB), *version when the node knows what Redis holds for
 * id; 0 when it must ask. */
int sl_coh_lookup(sl_coh_t *h, const char *id, size_t idlen, sl_proj_kind_t *kind, uint64_t *version);

/* Take before sending the Redis command whose reply you will pass to sl_coh_learn(). */
typedef struct sl_coh_ticket {
    uint64_t epoch, seq;
} sl_coh_ticket_t;
sl_coh_ticket_t sl_coh_ticket(sl_coh_t *h);

/* A reply to a command sent after `t` said Redis holds kind (PUBLIC or TOMB; anything else is
 * ignored) of version for id. Remembered unless something may have changed since the ticket. */
void sl_coh_learn(sl_coh_t *h, sl_coh_ticket_t t, const char *id, size_t idlen, sl_proj_kind_t kind,
                  uint64_t version);

/* Forgets id here, tells every node, and calls cb when every node that could trust its memory has
 * forgotten it (reply->status SL_CACHE_OK), or with an error status when the invalidation could not
 * be published (then the caller must not report success). Never calls cb from inside this call. */
void sl_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version, sl_proj_cb cb, void *data);

void sl_coh_get_stats(sl_coh_t *h, sl_coh_stats_t *out);

#endif
