/*
 * Internal to cache/: the node memory's state, shared by coherence.c (subscription, leases,
 * invalidations) and memory.c (the table of what the node knows and when it may use it).
 */
#ifndef SL_CACHE_INTERNAL_COH_H
#define SL_CACHE_INTERNAL_COH_H

#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

#include "cache/cache.h"

#define BUCKETS        65536
#define RING           8192
#define MAX_WAIT_NODES 256

typedef struct entry {
    struct entry *next;
    struct entry *qprev, *qnext; /* its queue, oldest first (eviction order) */
    int neg;                     /* a negative answer: TOMB of version 0 (never an owner's write) */
    uint64_t hash;
    uint64_t version;
    uint64_t tag; /* content tag of a PUBLIC entry */
    sl_proj_kind_t kind;
    size_t idlen;
    char id[];
} entry_t;

typedef struct waitnode {
    char id[24];
    uint64_t deadline_ns;
} waitnode_t;

typedef struct inv {
    struct inv *next, *prev;
    sl_coh_t *h;
    uint64_t seq;
    sl_proj_cb cb;
    void *data;
    int replied;   /* the script answered: `nodes` is the set to wait for */
    int done;      /* cb ran (or the inv was abandoned at close) */
    int in_flight; /* the script command is still pending in sl_cache */
    waitnode_t *nodes;
    size_t n;
    char (*early)[24]; /* acks that arrived before the script's answer */
    size_t nearly;
} inv_t;

struct sl_coh {
    uv_loop_t *loop;
    sl_coh_listener_fn listener; /* every invalidation heard (sl_coh_set_listener), or NULL */
    void *listener_data;
    sl_cache_t *data;
    uint64_t trust_gen_seen; /* sl_cache_trust_generation() when last looked at */
    sl_coh_config_t cfg;
    char *host, *unix_path;
    unsigned port;
    char node[24];
    char *prefix, *nodes_key, *inv_chan, *own_chan;
    /* subscription */
    redisAsyncContext *sub;
    int sub_confirmed; /* SUBSCRIBE confirmations received (2 = both channels) */
    unsigned sub_backoff_ms;
    uint64_t last_sync_ns;
    uv_timer_t sub_timer;   /* reconnect delay */
    uv_timer_t renew_timer; /* renewals */
    uv_timer_t wait_timer;  /* deadlines of invalidations waiting for acks */
    /* trust */
    uint64_t lease_until_ns;
    uint64_t epoch;
    int was_coherent;
    /* memory */
    entry_t **buckets;
    size_t entries;
    /* Two eviction queues, oldest first: [0] real entries, [1] negative answers (ids that were
     * never shared, learnt from reads): a flood of unknown ids evicts only other negatives. */
    entry_t *qhead[2], *qtail[2];
    size_t qcount[2];
    struct {
        uint64_t seq, hash;
    } ring[RING];
    uint64_t inv_seq;
    /* my invalidations */
    inv_t *ihead;
    uint64_t next_seq;
    sl_coh_stats_t stats;
    uv_timer_t fail_timer; /* invalidations that could not even start */
    struct {
        sl_proj_cb cb;
        void *data;
    } fails[16];
    size_t nfails;
    int closing;
    int open_handles;
    int refs; /* sl_cache commands in flight that point at us */
};

static inline uint64_t sl_coh__now_ns(void)
{
    return uv_hrtime();
}

/* memory.c */
uint64_t sl_coh__hash_id(const char *id, size_t n);
/* Forgets id and records the invalidation (so that replies already on their way are refused). */
void sl_coh__forget(sl_coh_t *h, const char *id, size_t n);
/* The node stops trusting its memory: lease gone, table emptied, tickets void. */
void sl_coh__lose(sl_coh_t *h);
void sl_coh__clear_table(sl_coh_t *h);

#endif
