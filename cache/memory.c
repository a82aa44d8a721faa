/*
 * The node memory's table (cache.h, "node memory"): what this node knows Redis holds per session
 * id, in two bounded FIFO queues (real entries, and negative answers for ids never shared), and the
 * rules for when it may be used (coherent: a confirmed lease, a live subscription, a trusted Redis)
 * and learnt (a ticket older than no invalidation of the id).
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal/coh.h"

uint64_t sl_coh__hash_id(const char *id, size_t n)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        x ^= (unsigned char)id[i];
        x *= 1099511628211ull;
    }
    return x;
}

void sl_coh__clear_table(sl_coh_t *h)
{
    for (size_t b = 0; b < BUCKETS && h->entries; b++) {
        entry_t *e = h->buckets[b];
        while (e) {
            entry_t *n = e->next;
            free(e);
            h->entries--;
            e = n;
        }
        h->buckets[b] = NULL;
    }
    h->entries = 0;
    for (int q = 0; q < 2; q++) {
        h->qhead[q] = h->qtail[q] = NULL;
        h->qcount[q] = 0;
    }
}

static entry_t **find_slot(sl_coh_t *h, uint64_t hash, const char *id, size_t n)
{
    entry_t **pp = &h->buckets[hash & (BUCKETS - 1)];
    while (*pp && !((*pp)->hash == hash && (*pp)->idlen == n && memcmp((*pp)->id, id, n) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void q_unlink(sl_coh_t *h, entry_t *e)
{
    int q = e->neg;
    if (e->qprev)
        e->qprev->qnext = e->qnext;
    else
        h->qhead[q] = e->qnext;
    if (e->qnext)
        e->qnext->qprev = e->qprev;
    else
        h->qtail[q] = e->qprev;
    e->qprev = e->qnext = NULL;
    h->qcount[q]--;
}

static void q_push(sl_coh_t *h, entry_t *e)
{
    int q = e->neg;
    e->qnext = NULL;
    e->qprev = h->qtail[q];
    if (h->qtail[q])
        h->qtail[q]->qnext = e;
    else
        h->qhead[q] = e;
    h->qtail[q] = e;
    h->qcount[q]++;
}

/* Removes e from the table and its queue, and frees it. */
static void drop_entry(sl_coh_t *h, entry_t *e)
{
    entry_t **pp = find_slot(h, e->hash, e->id, e->idlen);
    if (*pp == e)
        *pp = e->next;
    q_unlink(h, e);
    free(e);
    h->entries--;
}

void sl_coh__forget(sl_coh_t *h, const char *id, size_t n)
{
    uint64_t hash = sl_coh__hash_id(id, n);
    entry_t *e = *find_slot(h, hash, id, n);
    if (e)
        drop_entry(h, e);
    h->inv_seq++;
    h->ring[h->inv_seq % RING].seq = h->inv_seq;
    h->ring[h->inv_seq % RING].hash = hash;
}

void sl_coh__lose(sl_coh_t *h)
{
    h->lease_until_ns = 0;
    if (h->was_coherent) {
        h->was_coherent = 0;
        h->stats.coherence_lost++;
    }
    h->epoch++;
    sl_coh__clear_table(h);
}

int sl_coh_coherent(sl_coh_t *h)
{
    /* The data connection's Redis was found to be another one, or emptied (trust.c): whatever the
     * node learnt before may be gone from Redis or out of date there. */
    uint64_t gen = sl_cache_trust_generation(h->data);
    if (gen != h->trust_gen_seen) {
        h->trust_gen_seen = gen;
        sl_coh__lose(h);
    }
    int ok = !h->closing && h->sub != NULL && h->sub_confirmed >= 2 && sl_coh__now_ns() < h->lease_until_ns &&
             sl_cache_trusted(h->data);
    if (!ok && h->was_coherent)
        sl_coh__lose(h);
    return ok;
}

int sl_coh_lookup(sl_coh_t *h, const char *id, size_t idlen, sl_proj_kind_t *kind, uint64_t *version,
                  uint64_t *tag)
{
    h->stats.lookups++;
    if (!sl_coh_coherent(h) || h->entries == 0)
        return 0;
    entry_t *e = *find_slot(h, sl_coh__hash_id(id, idlen), id, idlen);
    if (e == NULL)
        return 0;
    h->stats.known++;
    *kind = e->kind;
    *version = e->version;
    *tag = e->tag;
    return 1;
}

sl_coh_ticket_t sl_coh_ticket(sl_coh_t *h)
{
    sl_coh_ticket_t t = {sl_coh_coherent(h) ? h->epoch : 0, h->inv_seq};
    return t;
}

void sl_coh_learn(sl_coh_t *h, sl_coh_ticket_t t, const char *id, size_t idlen, sl_proj_kind_t kind,
                  uint64_t version, uint64_t tag)
{
    if (kind != SL_PROJ_PUBLIC && kind != SL_PROJ_TOMB)
        return;
    uint64_t hash = sl_coh__hash_id(id, idlen);
    int ok = t.epoch != 0 && sl_coh_coherent(h) && t.epoch == h->epoch && h->inv_seq - t.seq < RING;
    for (uint64_t s = t.seq + 1; ok && s <= h->inv_seq; s++)
        if (h->ring[s % RING].hash == hash)
            ok = 0;
    if (!ok) {
        h->stats.refused++;
        return;
    }
    int neg = kind == SL_PROJ_TOMB && version == 0;
    entry_t *e = *find_slot(h, hash, id, idlen);
    if (e != NULL && e->neg != neg) {
        drop_entry(h, e); /* moves to the other queue */
        e = NULL;
    }
    if (e == NULL) {
        /* Full: the oldest entry of the same queue goes (evicted, never the whole table). */
        size_t cap = neg ? h->cfg.max_negative : h->cfg.max_entries;
        while (h->qcount[neg] >= cap && h->qhead[neg])
            drop_entry(h, h->qhead[neg]);
        e = malloc(sizeof(*e) + idlen);
        if (e == NULL)
            return;
        e->hash = hash;
        e->idlen = idlen;
        e->neg = neg;
        memcpy(e->id, id, idlen);
        entry_t **pp = find_slot(h, hash, id, idlen);
        e->next = *pp;
        *pp = e;
        q_push(h, e);
        h->entries++;
    }
    e->kind = kind;
    e->version = version;
    e->tag = kind == SL_PROJ_PUBLIC ? tag : 0;
    h->stats.learned++;
}
