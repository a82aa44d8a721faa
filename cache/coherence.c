/* Node memory kept coherent through Redis pub/sub, leases and acknowledgements (see cache.h,
 * "node memory", and docs/invalidation.md, "Node memory"). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache/internal/coh.h"
#include "cache/internal/uv_redis.h"

/* KEYS: nodes, own channel; ARGV: node id, lease ms, sync token. Registers the lease (scored with
 * its expiry in Redis time), drops expired members, then publishes the sync message that makes the
 * lease usable once it arrives on the node's subscription. */
static const char LUA_RENEW[] =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now) "
    "redis.call('PUBLISH', KEYS[2], 'S ' .. ARGV[3]) return 1";

/* KEYS: nodes, inv channel; ARGV: message. Atomically: the nodes whose lease is live now, and the
 * publication. Returns "node remaining_ms node remaining_ms ..." (a string: one reply type). */
static const char LUA_INV[] =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local n = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES') "
    "redis.call('PUBLISH', KEYS[2], ARGV[1]) "
    "local out = {} for i = 1, #n, 2 do out[#out + 1] = n[i] .. ' ' .. (tonumber(n[i + 1]) - now) end "
    "return table.concat(out, ' ')";

static void maybe_free(sl_coh_t *h);
static void start_sub(sl_coh_t *h);
static void on_sub_timer(uv_timer_t *t);

/* ---- my invalidations ---- */

static void inv_unlink(sl_coh_t *h, inv_t *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else if (h->ihead == v)
        h->ihead = v->next;
    if (v->next)
        v->next->prev = v->prev;
    v->next = v->prev = NULL;
}

static void inv_free(inv_t *v)
{
    free(v->nodes);
    free(v->early);
    free(v);
}

static void inv_complete(inv_t *v, sl_cache_status_t status, const char *error)
{
    sl_coh_t *h = v->h;
    if (v->done)
        return;
    v->done = 1;
    inv_unlink(h, v);
    sl_proj_reply_t r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.error = error;
    r.stored = status == SL_CACHE_OK;
    v->cb(&r, v->data);
    if (!v->in_flight)
        inv_free(v);
}

static void arm_wait_timer(sl_coh_t *h);

/* Drops waiting nodes whose lease is over; completes the invalidation when none is left. */
static int inv_check(inv_t *v, uint64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->nodes[i].deadline_ns > now)
            v->nodes[k++] = v->nodes[i];
        else
            v->h->stats.lease_waits++;
    }
    v->n = k;
    if (v->n == 0) {
        inv_complete(v, SL_CACHE_OK, NULL);
        return 1;
    }
    return 0;
}

static void on_wait_timer(uv_timer_t *t)
{
    sl_coh_t *h = t->data;
    uint64_t now = sl_coh__now_ns();
    inv_t *v = h->ihead;
    while (v) {
        inv_t *next = v->next;
        if (v->replied)
            inv_check(v, now);
        v = next;
    }
    arm_wait_timer(h);
}

static void arm_wait_timer(sl_coh_t *h)
{
    uint64_t first = UINT64_MAX;
    for (inv_t *v = h->ihead; v; v = v->next)
        for (size_t i = 0; v->replied && i < v->n; i++)
            if (v->nodes[i].deadline_ns < first)
                first = v->nodes[i].deadline_ns;
    if (first == UINT64_MAX || h->closing) {
        uv_timer_stop(&h->wait_timer);
        return;
    }
    uint64_t now = sl_coh__now_ns();
    uint64_t ms = first > now ? (first - now) / 1000000 + 1 : 0;
    uv_timer_start(&h->wait_timer, on_wait_timer, ms, 0);
}

static void on_ack(sl_coh_t *h, uint64_t seq, const char *node, size_t nlen)
{
    if (nlen == 0 || nlen >= 24)
        return;
    h->stats.acks_received++;
    for (inv_t *v = h->ihead; v; v = v->next) {
        if (v->seq != seq)
            continue;
        if (!v->replied) {
            void *p = realloc(v->early, (v->nearly + 1) * sizeof(*v->early));
            if (p == NULL)
                return; /* then we wait for that node's lease instead */
            v->early = p;
            memcpy(v->early[v->nearly], node, nlen);
            v->early[v->nearly][nlen] = '\0';
            v->nearly++;
            return;
        }
        for (size_t i = 0; i < v->n; i++) {
            if (strlen(v->nodes[i].id) == nlen && memcmp(v->nodes[i].id, node, nlen) == 0) {
                v->nodes[i] = v->nodes[--v->n];
                break;
            }
        }
        if (v->n == 0)
            inv_complete(v, SL_CACHE_OK, NULL);
        return;
    }
}

static void on_inv_reply(const sl_cache_reply_t *r, void *data)
{
    inv_t *v = data;
    sl_coh_t *h = v->h;
    v->in_flight = 0;
    h->refs--;
    if (v->done) { /* closed meanwhile */
        inv_free(v);
        maybe_free(h);
        return;
    }
    if (h->closing) {
        inv_complete(v, SL_CACHE_E_CLOSED, "closed");
        maybe_free(h);
        return;
    }
    if (r->status != SL_CACHE_OK || r->is_nil) {
        inv_complete(v, r->status != SL_CACHE_OK ? r->status : SL_CACHE_E_REPLY,
                     r->error ? r->error : "the invalidation could not be published");
        return;
    }
    /* "node remaining node remaining ..." */
    uint64_t now = sl_coh__now_ns();
    const char *s = r->str, *end = r->str + r->len;
    while (s < end) {
        const char *sp = memchr(s, ' ', (size_t)(end - s));
        if (sp == NULL)
            break;
        size_t nlen = (size_t)(sp - s);
        const char *num = sp + 1;
        const char *ne = memchr(num, ' ', (size_t)(end - num));
        if (ne == NULL)
            ne = end;
        char tmp[32];
        size_t tl = (size_t)(ne - num) < sizeof(tmp) - 1 ? (size_t)(ne - num) : sizeof(tmp) - 1;
        memcpy(tmp, num, tl);
        tmp[tl] = '\0';
        long long rem = strtoll(tmp, NULL, 10);
        int self = nlen == strlen(h->node) && memcmp(s, h->node, nlen) == 0;
        int early = 0;
        for (size_t i = 0; i < v->nearly && !early; i++)
            early = strlen(v->early[i]) == nlen && memcmp(v->early[i], s, nlen) == 0;
        if (!self && !early && rem > 0 && nlen > 0 && nlen < 24) {
            if (v->n == MAX_WAIT_NODES) {
                inv_complete(v, SL_CACHE_E_REPLY, "too many nodes");
                return;
            }
            if (v->nodes == NULL && (v->nodes = calloc(MAX_WAIT_NODES, sizeof(*v->nodes))) == NULL) {
                inv_complete(v, SL_CACHE_E_REPLY, "out of memory");
                return;
            }
            memcpy(v->nodes[v->n].id, s, nlen);
            v->nodes[v->n].id[nlen] = '\0';
            /* Redis' expiry seen from here, plus a little for the trip back */
            v->nodes[v->n].deadline_ns = now + (uint64_t)rem * 1000000u + 20000000u;
            v->n++;
        }
        s = ne < end ? ne + 1 : end;
    }
    v->replied = 1;
    if (!inv_check(v, now))
        arm_wait_timer(h);
}

static void on_fail_timer(uv_timer_t *t)
{
    sl_coh_t *h = t->data;
    while (h->nfails > 0) {
        h->nfails--;
        sl_proj_reply_t r = {.status = SL_CACHE_E_REPLY, .error = "out of memory (or an invalid id)"};
        h->fails[h->nfails].cb(&r, h->fails[h->nfails].data);
    }
}

void sl_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version, sl_proj_cb cb, void *data)
{
    sl_coh__forget(h, id, idlen);
    if (h->listener && idlen <= 64)
        h->listener(h->listener_data, id, idlen); /* this node hears its own change at once */
    inv_t *v = calloc(1, sizeof(*v));
    char msg[160];
    if (v == NULL || idlen > 64) {
        free(v);
        /* later, from the loop (cb never runs inside this call) */
        if (h->nfails == sizeof(h->fails) / sizeof(h->fails[0]))
            abort(); /* out of memory sixteen times within one loop iteration */
        h->fails[h->nfails].cb = cb;
        h->fails[h->nfails].data = data;
        h->nfails++;
        uv_timer_start(&h->fail_timer, on_fail_timer, 0, 0);
        return;
    }
    v->h = h;
    v->seq = ++h->next_seq;
    v->cb = cb;
    v->data = data;
    v->in_flight = 1;
    v->next = h->ihead;
    if (h->ihead)
        h->ihead->prev = v;
    h->ihead = v;
    int n = snprintf(msg, sizeof(msg), "I %s %" PRIu64 " %" PRIu64 " %.*s", h->node, v->seq, version,
                     (int)idlen, id);
    const char *argv[] = {"EVAL", LUA_INV, "2", h->nodes_key, h->inv_chan, msg};
    size_t argvlen[] = {4, sizeof(LUA_INV) - 1, 1, strlen(h->nodes_key), strlen(h->inv_chan), (size_t)n};
    h->stats.invalidations_sent++;
    h->refs++;
    sl_cache_command(h->data, 6, argv, argvlen, on_inv_reply, v);
}

/* ---- renewals ---- */

static void on_cmd_done(const sl_cache_reply_t *r, void *data)
{
    (void)r;
    sl_coh_t *h = data;
    h->refs--;
    maybe_free(h);
}

static void on_renew_timer(uv_timer_t *t)
{
    sl_coh_t *h = t->data;
    if (h->closing)
        return;
    if (h->sub != NULL && h->sub_confirmed >= 2) {
        /* a subscription that delivers nothing (a half-open connection) is replaced */
        if (h->last_sync_ns && sl_coh__now_ns() - h->last_sync_ns > 10ull * h->cfg.lease_ms * 1000000u) {
            redisAsyncContext *ac = h->sub;
            h->sub = NULL;
            h->sub_confirmed = 0;
            sl_coh__lose(h);
            ac->data = NULL;
            redisAsyncFree(ac);
            uv_timer_start(&h->sub_timer, on_sub_timer, 0, 0);
            return;
        }
        char token[32], lease[16];
        int tl = snprintf(token, sizeof(token), "%" PRIu64, sl_coh__now_ns());
        int ll = snprintf(lease, sizeof(lease), "%u", h->cfg.lease_ms);
        const char *argv[] = {"EVAL", LUA_RENEW, "2", h->nodes_key, h->own_chan, h->node, lease, token};
        size_t argvlen[] = {4,
                            sizeof(LUA_RENEW) - 1,
                            1,
                            strlen(h->nodes_key),
                            strlen(h->own_chan),
                            strlen(h->node),
                            (size_t)ll,
                            (size_t)tl};
        h->refs++;
        sl_cache_command(h->data, 8, argv, argvlen, on_cmd_done, h);
    }
}

void sl_coh_set_listener(sl_coh_t *h, sl_coh_listener_fn fn, void *data)
{
    h->listener = fn;
    h->listener_data = data;
}

/* ---- subscription ---- */

static void on_message(sl_coh_t *h, const char *chan, size_t clen, const char *msg, size_t len)
{
    char buf[200];
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (clen == strlen(h->inv_chan) && memcmp(chan, h->inv_chan, clen) == 0) {
        /* "I <writer> <seq> <version> <id>" */
        char writer[24], id[65];
        uint64_t seq, version;
        if (sscanf(buf, "I %23s %" SCNu64 " %" SCNu64 " %64s", writer, &seq, &version, id) != 4)
            return;
        h->stats.invalidations_received++;
        if (strcmp(writer, h->node) == 0) {
            /* mine: forgotten before it was sent */
            if (h->listener)
                h->listener(h->listener_data, id, strlen(id));
            return;
        }
        sl_coh__forget(h, id, strlen(id));
        if (h->listener)
            h->listener(h->listener_data, id, strlen(id));
        char ch[128], ack[64];
        int cl = snprintf(ch, sizeof(ch), "%sc:%s", h->prefix, writer);
        int al = snprintf(ack, sizeof(ack), "A %" PRIu64 " %s", seq, h->node);
        const char *argv[] = {"PUBLISH", ch, ack};
        size_t argvlen[] = {7, (size_t)cl, (size_t)al};
        h->refs++;
        sl_cache_command(h->data, 3, argv, argvlen, on_cmd_done, h);
        return;
    }
    if (buf[0] == 'S' && buf[1] == ' ') {
        uint64_t sent = strtoull(buf + 2, NULL, 10);
        uint64_t until = sent + ((uint64_t)h->cfg.lease_ms - h->cfg.margin_ms) * 1000000u;
        h->last_sync_ns = sl_coh__now_ns();
        if (until > h->lease_until_ns)
            h->lease_until_ns = until;
        if (sl_coh_coherent(h))
            h->was_coherent = 1;
        return;
    }
    if (buf[0] == 'A' && buf[1] == ' ') {
        char node[24];
        uint64_t seq;
        if (sscanf(buf, "A %" SCNu64 " %23s", &seq, node) == 2)
            on_ack(h, seq, node, strlen(node));
    }
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    sl_coh_t *h = ac->data;
    redisReply *r = reply;
    if (h == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    redisReply *kind = r->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        h->sub_confirmed++;
        if (h->sub_confirmed >= 2) {
            h->sub_backoff_ms = 0;
            h->stats.resubscribes++;
            on_renew_timer(&h->renew_timer); /* a lease right away */
        }
        return;
    }
    if (strcmp(kind->str, "message") == 0 && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING)
        on_message(h, r->element[1]->str, (size_t)r->element[1]->len, r->element[2]->str,
                   (size_t)r->element[2]->len);
}

static void on_sub_timer(uv_timer_t *t)
{
    start_sub(t->data);
}

static void schedule_sub(sl_coh_t *h)
{
    if (h->closing)
        return;
    h->sub_backoff_ms = h->sub_backoff_ms ? h->sub_backoff_ms * 2 : 50;
    if (h->sub_backoff_ms > 2000)
        h->sub_backoff_ms = 2000;
    uv_timer_start(&h->sub_timer, on_sub_timer, h->sub_backoff_ms, 0);
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    sl_coh_t *h = ac->data;
    if (h == NULL || h->sub != ac)
        return;
    if (status != REDIS_OK) {
        h->sub = NULL; /* hiredis frees it */
        schedule_sub(h);
        return;
    }
    h->sub_confirmed = 0;
    redisAsyncCommand(h->sub, on_sub_reply, NULL, "SUBSCRIBE %s %s", h->inv_chan, h->own_chan);
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    sl_coh_t *h = ac->data;
    if (h == NULL || h->sub != ac)
        return;
    h->sub = NULL;
    h->sub_confirmed = 0;
    sl_coh__lose(h);
    schedule_sub(h);
}

static void start_sub(sl_coh_t *h)
{
    if (h->closing || h->sub != NULL)
        return;
    redisAsyncContext *ac =
        h->unix_path ? redisAsyncConnectUnix(h->unix_path) : redisAsyncConnect(h->host, (int)h->port);
    if (ac == NULL || ac->err || sl_uv_redis_attach(h->loop, ac) != 0) {
        if (ac)
            redisAsyncFree(ac);
        schedule_sub(h);
        return;
    }
    ac->data = h;
    h->sub = ac;
    h->sub_confirmed = 0;
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
}

/* ---- life cycle ---- */

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

int sl_coh_open(sl_coh_t **out, uv_loop_t *loop, sl_cache_t *data, const sl_cache_config_t *redis_cfg,
                const sl_coh_config_t *cfg)
{
    if (out == NULL || loop == NULL || data == NULL || redis_cfg == NULL)
        return -EINVAL;
    sl_coh_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    if (cfg)
        h->cfg = *cfg;
    if (!h->cfg.lease_ms)
        h->cfg.lease_ms = 1500;
    if (!h->cfg.renew_ms)
        h->cfg.renew_ms = 250;
    if (!h->cfg.margin_ms)
        h->cfg.margin_ms = 300;
    if (!h->cfg.max_entries)
        h->cfg.max_entries = 262144;
    if (!h->cfg.max_negative)
        h->cfg.max_negative = 65536;
    if (h->cfg.margin_ms >= h->cfg.lease_ms || h->cfg.renew_ms * 2 > h->cfg.lease_ms - h->cfg.margin_ms) {
        free(h);
        return -EINVAL;
    }
    const char *prefix = redis_cfg->key_prefix ? redis_cfg->key_prefix : "sl:";
    h->loop = loop;
    h->data = data;
    h->port = redis_cfg->port ? redis_cfg->port : 6379;
    h->host = strdup(redis_cfg->host ? redis_cfg->host : "127.0.0.1");
    h->unix_path = redis_cfg->unix_path ? strdup(redis_cfg->unix_path) : NULL;
    h->buckets = calloc(BUCKETS, sizeof(*h->buckets));
    uint64_t r1 = 0;
    if (getrandom(&r1, sizeof(r1), 0) != (ssize_t)sizeof(r1))
        r1 = uv_hrtime() ^ (uint64_t)(uintptr_t)h;
    snprintf(h->node, sizeof(h->node), "%016" PRIx64, r1);
    h->prefix = strdup(prefix);
    h->nodes_key = concat(prefix, "nodes");
    h->inv_chan = concat(prefix, "inv");
    char *c = concat(prefix, "c:");
    h->own_chan = c ? concat(c, h->node) : NULL;
    free(c);
    if (h->host == NULL || h->prefix == NULL || (redis_cfg->unix_path && h->unix_path == NULL) ||
        h->buckets == NULL || h->nodes_key == NULL || h->inv_chan == NULL || h->own_chan == NULL) {
        free(h->host);
        free(h->unix_path);
        free(h->buckets);
        free(h->prefix);
        free(h->nodes_key);
        free(h->inv_chan);
        free(h->own_chan);
        free(h);
        return -ENOMEM;
    }
    h->epoch = 1;
    uv_timer_init(loop, &h->sub_timer);
    uv_timer_init(loop, &h->renew_timer);
    uv_timer_init(loop, &h->wait_timer);
    uv_timer_init(loop, &h->fail_timer);
    h->sub_timer.data = h->renew_timer.data = h->wait_timer.data = h->fail_timer.data = h;
    h->open_handles = 4;
    uv_timer_start(&h->renew_timer, on_renew_timer, h->cfg.renew_ms, h->cfg.renew_ms);
    start_sub(h);
    *out = h;
    return 0;
}

static void maybe_free(sl_coh_t *h)
{
    if (!h->closing || h->open_handles > 0 || h->refs > 0)
        return;
    sl_coh__clear_table(h);
    free(h->buckets);
    free(h->host);
    free(h->unix_path);
    free(h->prefix);
    free(h->nodes_key);
    free(h->inv_chan);
    free(h->own_chan);
    free(h);
}

static void on_closed(uv_handle_t *hd)
{
    sl_coh_t *h = hd->data;
    if (--h->open_handles == 0) {
        /* later than sl_coh_close(): fail what still waits */
        while (h->ihead)
            inv_complete(h->ihead, SL_CACHE_E_CLOSED, "closed");
        on_fail_timer(&h->fail_timer);
    }
    maybe_free(h);
}

void sl_coh_close(sl_coh_t *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = 1;
    if (h->sub) {
        redisAsyncContext *ac = h->sub;
        h->sub = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    sl_coh__lose(h);
    uv_close((uv_handle_t *)&h->sub_timer, on_closed);
    uv_close((uv_handle_t *)&h->renew_timer, on_closed);
    uv_close((uv_handle_t *)&h->wait_timer, on_closed);
    uv_close((uv_handle_t *)&h->fail_timer, on_closed);
}

void sl_coh_get_stats(sl_coh_t *h, sl_coh_stats_t *out)
{
    *out = h->stats;
    out->entries = h->entries;
    out->coherent = sl_coh_coherent(h);
}
