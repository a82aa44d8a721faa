/*
 * Whether what Redis holds can be trusted (cache.h, "trust"; docs/invalidation.md, "A Redis that
 * lost its data or came back with old data").
 *
 * The projection entries are only as good as the Redis that holds them: one restarted from an RDB
 * snapshot, a promoted replica that is behind, or a FLUSHALL brings back entries (or the lack of
 * them) that no owner change wrote over, and versions alone cannot tell. So the client trusts a
 * Redis only once it knows the entries were written to *this* Redis since it started:
 *
 *   - the key "<prefix>trusted:<entry format>" names the run_id (INFO server) of the Redis whose entries are good;
 *   - after every connect, and every trust_check_ms while connected, the client reads both; when
 *     they differ (a restart, a failover, a snapshot, a flush), it stops serving projections (every
 *     projection command fails fast, as if Redis were down, so readers go to MariaDB and owner
 *     changes of public sessions answer `unavailable`), deletes every "<prefix>p:*" entry in
 *     batches, writes the run_id into the marker, and trusts again. Each loss of trust bumps a
 *     generation that the node memory (coherence.c) watches: the node forgets everything it knew.
 *
 * Several nodes may flush at once; deleting an entry is always safe (a reader rebuilds it from
 * MariaDB under a lease, and an owner's publish replaces whatever is there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal/client.h"

/* One batch of the flush: deletes the projection entries of one SCAN step; answers the next cursor
 * ("0" when done). ARGV: 1 = cursor, 2 = pattern. */
static const char LUA_FLUSH_STEP[] = "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000) "
                                     "for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end return r[1]";

/* One check, from INFO to trusting again; a check of an older connection is dropped. */
typedef struct check {
    sl_cache_t *c;
    unsigned seq;
} check_t;

static void distrust(sl_cache_t *c)
{
    if (c->trusted) {
        c->trusted = 0;
        c->stats.trust_lost++;
    }
    c->trust_gen++;
}

/* 1 when the check is still the current one and its command succeeded; else ends it. */
static int current(check_t *k, const sl_cache_reply_t *r)
{
    sl_cache_t *c = k->c;
    if (k->seq == c->trust_seq && !c->closing && r->status == SL_CACHE_OK)
        return 1;
    if (k->seq == c->trust_seq)
        c->trust_checking = 0; /* tried again at the next check */
    free(k);
    return 0;
}

static void done(check_t *k)
{
    k->c->trust_checking = 0;
    free(k);
}

static void on_flush_step(const sl_cache_reply_t *r, void *data);

static void send_flush_step(check_t *k, const char *cursor, size_t n)
{
    sl_cache_t *c = k->c;
    char pattern[300];
    int plen = snprintf(pattern, sizeof(pattern), "%sp:*", c->prefix);
    const char *argv[] = {"EVAL", LUA_FLUSH_STEP, "0", cursor, pattern};
    size_t lens[] = {4, sizeof(LUA_FLUSH_STEP) - 1, 1, n, (size_t)plen};
    sl_cache_command(c, 5, argv, lens, on_flush_step, k);
}

/* The marker's name carries the entry format ("2": parts, cache.h): a node of a newer format finds
 * no marker in a Redis written by an older one, so it empties the old entries before using it. */
/* 3: projections redact secrets (migration 9): an entry of format 2 may hold a secret in the clear,
 * so a node of this version flushes them all before it trusts a Redis (docs/secrets.md) */
/* 4: the rules of 2c0f221 find tokens the earlier ones missed (migration 10 rescans every row): an
 * entry of format 3 may hold such a token in the clear */
#define ENTRY_FORMAT "5"

static void marker_key(sl_cache_t *c, char *buf, size_t cap, size_t *len)
{
    int n = snprintf(buf, cap, "%strusted:" ENTRY_FORMAT, c->prefix);
    *len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void on_marker_set(const sl_cache_reply_t *r, void *data)
{
    check_t *k = data;
    if (!current(k, r))
        return;
    sl_cache_t *c = k->c;
    c->trusted = 1;
    c->stats.trust_flushes++;
    c->trust_gen++;
    done(k);
}

static void on_flush_step(const sl_cache_reply_t *r, void *data)
{
    check_t *k = data;
    if (!current(k, r))
        return;
    sl_cache_t *c = k->c;
    if (r->str == NULL || r->len == 0 || r->len > 30) {
        done(k);
        return;
    }
    if (r->len == 1 && r->str[0] == '0') { /* emptied: this Redis is ours from now on */
        char key[300];
        size_t klen;
        marker_key(c, key, sizeof(key), &klen);
        const char *argv[] = {"SET", key, c->run_id};
        size_t lens[] = {3, klen, strlen(c->run_id)};
        sl_cache_command(c, 3, argv, lens, on_marker_set, k);
        return;
    }
    char cursor[32];
    memcpy(cursor, r->str, r->len);
    send_flush_step(k, cursor, r->len);
}

static void on_marker(const sl_cache_reply_t *r, void *data)
{
    check_t *k = data;
    if (!current(k, r))
        return;
    sl_cache_t *c = k->c;
    if (!r->is_nil && r->len == strlen(c->run_id) && memcmp(r->str, c->run_id, r->len) == 0) {
        if (!c->trusted) {
            c->trusted = 1;
            c->trust_gen++; /* the node memory starts afresh after any time without trust */
        }
        done(k);
        return;
    }
    /* Not the Redis whose entries we wrote: nothing it holds is served until it is emptied. */
    distrust(c);
    fprintf(stderr,
            "shareline: Redis %s does not hold our marker (a restart, snapshot, failover or flush): "
            "emptying its projection entries before trusting it\n",
            c->run_id);
    send_flush_step(k, "0", 1);
}

static void on_info(const sl_cache_reply_t *r, void *data)
{
    check_t *k = data;
    if (!current(k, r))
        return;
    sl_cache_t *c = k->c;
    const char *p = r->str ? strstr(r->str, "run_id:") : NULL;
    size_t n = p ? strcspn(p + 7, "\r\n") : 0;
    if (n == 0 || n >= sizeof(c->run_id)) {
        done(k);
        return;
    }
    p += 7;
    if (c->run_id[0] && (strlen(c->run_id) != n || memcmp(c->run_id, p, n) != 0))
        distrust(c); /* another Redis behind the same address, without a disconnect */
    memcpy(c->run_id, p, n);
    c->run_id[n] = '\0';
    char key[300];
    size_t klen;
    marker_key(c, key, sizeof(key), &klen);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, klen};
    sl_cache_command(c, 2, argv, lens, on_marker, k);
}

void sl_cache__trust_check(sl_cache_t *c)
{
    if (c->closing || c->trust_checking || !c->connected)
        return;
    check_t *k = malloc(sizeof(*k));
    if (k == NULL)
        return; /* tried again at the next tick */
    k->c = c;
    k->seq = c->trust_seq;
    c->trust_checking = 1;
    const char *argv[] = {"INFO", "server"};
    size_t lens[] = {4, 6};
    sl_cache_command(c, 2, argv, lens, on_info, k);
}

void sl_cache__trust_connected(sl_cache_t *c)
{
    /* a new connection may reach another Redis: nothing is trusted until checked */
    if (c->trusted)
        distrust(c);
    c->run_id[0] = '\0';
    c->trust_seq++; /* a check in flight on the old connection is dropped when it ends */
    c->trust_checking = 0;
    sl_cache__trust_check(c);
}

int sl_cache_trusted(const sl_cache_t *c)
{
    return c != NULL && c->connected && c->trusted && !c->closing;
}

uint64_t sl_cache_trust_generation(const sl_cache_t *c)
{
    return c->trust_gen;
}
