/*
 * cache/ — see cache.h for the contract and docs/invalidation.md for the protocol.
 *
 * One hiredis async connection on the caller's loop (our adapter: uv_redis.c). Commands are
 * tracked in our own FIFO list, not only by hiredis, so that every user callback runs exactly
 * once whatever happens to the connection:
 *   - a reply arrives: the callback gets it;
 *   - the command's deadline passes: the callback gets SL_CACHE_E_TIMEOUT and the connection is
 *     dropped (a stuck Redis must not hold later commands), then re-made;
 *   - the connection ends: hiredis hands every outstanding command a NULL reply -> E_DOWN (or
 *     E_CLOSED after sl_cache_close()).
 * A command is freed when both its callback ran and hiredis let go of it.
 *
 * Results known inside an API call (not connected, closing, out of memory) are queued and
 * delivered from a uv_idle_t, so a callback never runs inside the call that registered it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "cache/uv_redis.h"

typedef enum ckind { K_GENERIC, K_GET, K_HEAD, K_WRITE } ckind_t;

typedef struct cmd {
    struct cmd *next, *prev; /* pending list (sent, awaiting reply), FIFO by deadline */
    struct cmd *dnext;       /* deferred-delivery queue */
    sl_cache_t *c;
    ckind_t kind;
    sl_cache_cb gcb;
    sl_proj_cb pcb;
    void *data;
    uint64_t deadline;
    int in_hiredis; /* hiredis holds privdata = this */
    int done;       /* the user callback ran (or is queued) */
    int pending;    /* in the pending list */
    int queued;     /* in the deferred-delivery queue */
    /* for deferred delivery */
    sl_cache_status_t status;
    const char *error;
} cmd_t;

struct sl_cache {
    uv_loop_t *loop;
    sl_cache_config_t cfg;
    char *host, *unix_path, *prefix;
    size_t prefix_len;
    redisAsyncContext *ac;
    int connected;
    int connecting;
    unsigned backoff_ms;
    uv_timer_t conn_timer; /* connect timeout, or the delay before the next attempt */
    uv_timer_t cmd_timer;  /* the oldest pending command's deadline */
    uv_idle_t idle;
    int idle_active;
    cmd_t *phead, *ptail;
    cmd_t *dhead, *dtail;
    int depth;
    int closing;
    int pending_closes;
    int in_hiredis_cmds; /* commands hiredis still holds (the client lives until it lets go) */
    sl_cache_stats_t stats;
};

static void start_connect(sl_cache_t *c);
static void maybe_free(sl_cache_t *c);

/* ---- Lua: the conditional writes of the invalidation protocol ----
 * Versions are decimal uint64 strings without leading zeros, so they compare exactly as
 * (length, then bytes) — Lua numbers are doubles and would round above 2^53. */
#define LUA_PARSE                                                                                                      \
    "local function gt(a, b) if #a ~= #b then return #a > #b end return a > b end "                                    \
    "local cur = redis.call('GET', KEYS[1]) "                                                                          \
    "local kind, ver = nil, nil "                                                                                      \
    "if cur then "                                                                                                     \
    "  kind = string.sub(cur, 1, 1) "                                                                                  \
    "  if kind == 'P' then local nl = string.find(cur, '\\n', 2, true) "                                               \
    "    if nl then ver = string.sub(cur, 2, nl - 1) end "                                                             \
    "  elseif kind == 'M' or kind == 'T' then ver = string.sub(cur, 2) end "                                           \
    "  if ver and not string.match(ver, '^%d+$') then ver = nil end "                                                  \
    "end "

/* ARGV: 1 = expected lease value, 2 = new value, 3 = TTL seconds (0 = none) */
static const char LUA_FILL[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
                               "if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
                               "else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

/* ARGV: 1 = version, 2 = TTL ms */
static const char LUA_MARK[] = LUA_PARSE "if ver and (kind == 'P' or kind == 'T' or kind == 'M') and gt(ver, ARGV[1]) "
                                         "then return 0 end "
                                         "redis.call('SET', KEYS[1], 'M' .. ARGV[1], 'PX', ARGV[2]) return 1";

/* ARGV: 1 = version, 2 = new value, 3 = TTL seconds (0 = none) */
static const char LUA_PUBLISH[] = LUA_PARSE "if ver and kind == 'M' and gt(ver, ARGV[1]) then return 0 end "
                                            "if ver and (kind == 'P' or kind == 'T') and not gt(ARGV[1], ver) "
                                            "then return 0 end "
                                            "if tonumber(ARGV[3]) > 0 then "
                                            "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
                                            "else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

/* ---- delivery ---- */

static void on_idle(uv_idle_t *h);

static void deliver_now(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r);

static void cmd_release(cmd_t *k)
{
    if (!k->done || k->in_hiredis || k->pending || k->queued)
        return;
    free(k);
}

static void list_remove(sl_cache_t *c, cmd_t *k)
{
    if (!k->pending)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->phead = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        c->ptail = k->prev;
    k->next = k->prev = NULL;
    k->pending = 0;
}

/* Fails k with status, now if we are on the loop, else from the idle queue. */
static void fail(cmd_t *k, sl_cache_status_t status, const char *error)
{
    sl_cache_t *c = k->c;
    if (k->done)
        return;
    list_remove(c, k);
    if (c->depth == 0) {
        deliver_now(k, status, error, NULL);
        cmd_release(k);
        return;
    }
    k->done = 1; /* blocks every other path to the callback */
    k->queued = 1;
    k->status = status;
    k->error = error;
    k->dnext = NULL;
    if (c->dtail)
        c->dtail->dnext = k;
    else
        c->dhead = k;
    c->dtail = k;
    if (!c->idle_active) {
        uv_idle_start(&c->idle, on_idle);
        c->idle_active = 1;
    }
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static void deliver_get(cmd_t *k, sl_proj_reply_t *pr, const redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL) {
        pr->kind = SL_PROJ_ABSENT;
        return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len < 2) {
        pr->status = SL_CACHE_E_REPLY;
        pr->error = "unexpected value in a projection key";
        return;
    }
    const char *s = r->str;
    size_t len = (size_t)r->len;
    size_t vend = len;
    switch (s[0]) {
    case 'L':
        pr->kind = SL_PROJ_LEASE;
        break;
    case 'M':
        pr->kind = SL_PROJ_MARK;
        break;
    case 'T':
        pr->kind = SL_PROJ_TOMB;
        break;
    case 'P': {
        const char *nl = memchr(s, '\n', len);
        if (nl == NULL)
            goto bad;
        pr->kind = SL_PROJ_PUBLIC;
        vend = (size_t)(nl - s);
        pr->payload = nl + 1;
        pr->len = len - vend - 1;
        break;
    }
    default:
        goto bad;
    }
    if (parse_u64(s + 1, vend - 1, &pr->version) == 0)
        return;
bad:
    (void)k;
    pr->status = SL_CACHE_E_REPLY;
    pr->error = "malformed value in a projection key";
    pr->kind = SL_PROJ_ABSENT;
    pr->payload = NULL;
    pr->len = 0;
}

static void deliver_now(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r)
{
    sl_cache_t *c = k->c;
    k->done = 1;
    if (status == SL_CACHE_OK && r && r->type == REDIS_REPLY_ERROR) {
        status = SL_CACHE_E_REPLY;
        error = r->str;
    }
    if (k->kind == K_GENERIC) {
        sl_cache_reply_t gr = {.status = status, .error = error};
        if (status == SL_CACHE_OK) {
            switch (r->type) {
            case REDIS_REPLY_NIL:
                gr.is_nil = 1;
                break;
            case REDIS_REPLY_INTEGER:
                gr.integer = r->integer;
                break;
            case REDIS_REPLY_STRING:
            case REDIS_REPLY_STATUS:
                gr.str = r->str;
                gr.len = (size_t)r->len;
                break;
            default:
                gr.status = SL_CACHE_E_REPLY;
                gr.error = "array replies are not supported";
            }
        }
        if (gr.status != SL_CACHE_OK)
            c->stats.errors++;
        k->gcb(&gr, k->data);
        return;
    }
    sl_proj_reply_t pr = {.status = status, .error = error};
    if (status == SL_CACHE_OK) {
        if (k->kind == K_GET) {
            deliver_get(k, &pr, r);
        } else if (k->kind == K_HEAD) {
            /* GETRANGE of the head: "" is an absent key; the payload is cut, so not reported */
            if (r->type == REDIS_REPLY_STRING && r->len == 0)
                pr.kind = SL_PROJ_ABSENT;
            else
                deliver_get(k, &pr, r);
            pr.payload = NULL;
            pr.len = 0;
        } else if (r->type == REDIS_REPLY_INTEGER) {
            pr.stored = r->integer == 1;
        } else if (r->type == REDIS_REPLY_STATUS) {
            pr.stored = 1; /* SET ... NX answered OK */
        } else if (r->type == REDIS_REPLY_NIL) {
            pr.stored = 0; /* SET ... NX refused */
        } else {
            pr.status = SL_CACHE_E_REPLY;
            pr.error = "unexpected reply to a projection write";
        }
    }
    if (pr.status != SL_CACHE_OK)
        c->stats.errors++;
    k->pcb(&pr, k->data);
}

static void on_idle(uv_idle_t *h)
{
    sl_cache_t *c = h->data;
    while (c->dhead) {
        cmd_t *k = c->dhead;
        c->dhead = k->dnext;
        if (c->dhead == NULL)
            c->dtail = NULL;
        k->queued = 0;
        deliver_now(k, k->status, k->error, NULL);
        cmd_release(k);
    }
    uv_idle_stop(&c->idle);
    c->idle_active = 0;
    if (c->closing)
        maybe_free(c);
}

/* ---- the connection ---- */

static void arm_cmd_timer(sl_cache_t *c);

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    cmd_t *k = privdata;
    sl_cache_t *c = k->c;
    k->in_hiredis = 0;
    c->in_hiredis_cmds--;
    if (!k->done) {
        list_remove(c, k);
        if (reply == NULL)
            deliver_now(k, c->closing ? SL_CACHE_E_CLOSED : SL_CACHE_E_DOWN,
                        c->closing ? "cache client closed" : "lost the connection to Redis", NULL);
        else
            deliver_now(k, SL_CACHE_OK, NULL, reply);
    }
    cmd_release(k);
    if (!c->closing)
        arm_cmd_timer(c);
    else if (c->in_hiredis_cmds == 0 && !c->idle_active)
        maybe_free(c);
}

static void schedule_retry(sl_cache_t *c, int failed);

/* Forgets the current context (it is freed by hiredis, or by us here). */
static void drop_connection(sl_cache_t *c, int free_it)
{
    redisAsyncContext *ac = c->ac;
    int was_connected = c->connected;
    c->ac = NULL;
    c->connected = 0;
    c->connecting = 0;
    if (was_connected)
        c->stats.disconnects++;
    if (ac && free_it) {
        ac->data = NULL; /* its connect/disconnect callbacks now ignore it */
        redisAsyncFree(ac); /* outstanding commands get E_DOWN through on_reply */
    }
}

static void on_conn_timer(uv_timer_t *t)
{
    sl_cache_t *c = t->data;
    if (c->closing)
        return;
    if (c->connecting) {
        /* connect timeout */
        drop_connection(c, 1);
        schedule_retry(c, 1);
        return;
    }
    if (c->ac == NULL)
        start_connect(c);
}

static void schedule_retry(sl_cache_t *c, int failed)
{
    if (c->closing)
        return;
    unsigned delay = c->cfg.reconnect_min_ms;
    if (failed) {
        delay = c->backoff_ms ? c->backoff_ms : c->cfg.reconnect_min_ms;
        unsigned next = delay * 2;
        c->backoff_ms = next > c->cfg.reconnect_max_ms ? c->cfg.reconnect_max_ms : next;
    }
    uv_timer_start(&c->conn_timer, on_conn_timer, delay, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_cache_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    uv_timer_stop(&c->conn_timer);
    c->connecting = 0;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        c->ac = NULL;
        schedule_retry(c, 1);
        return;
    }
    c->connected = 1;
    c->backoff_ms = 0;
    c->stats.connects++;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    sl_cache_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    drop_connection(c, 0);
    schedule_retry(c, 0);
}

static void start_connect(sl_cache_t *c)
{
    redisAsyncContext *ac =
        c->unix_path ? redisAsyncConnectUnix(c->unix_path) : redisAsyncConnect(c->host, (int)c->cfg.port);
    if (ac == NULL) {
        schedule_retry(c, 1);
        return;
    }
    if (ac->err || sl_uv_redis_attach(c->loop, ac) != 0) {
        redisAsyncFree(ac);
        schedule_retry(c, 1);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->connecting = 1;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&c->conn_timer, on_conn_timer, c->cfg.connect_timeout_ms, 0);
}

static void on_cmd_timer(uv_timer_t *t)
{
    sl_cache_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    int expired = 0;
    while (c->phead && c->phead->deadline <= now) {
        cmd_t *k = c->phead;
        list_remove(c, k);
        c->stats.timeouts++;
        expired = 1;
        deliver_now(k, SL_CACHE_E_TIMEOUT, "Redis did not answer in time", NULL);
        cmd_release(k); /* still held by hiredis until the context goes */
    }
    if (expired && c->ac) {
        /* A Redis that does not answer holds every later command: start over. */
        drop_connection(c, 1);
        schedule_retry(c, 0);
    }
    arm_cmd_timer(c);
}

static void arm_cmd_timer(sl_cache_t *c)
{
    if (c->phead == NULL) {
        uv_timer_stop(&c->cmd_timer);
        return;
    }
    uint64_t now = uv_now(c->loop);
    uv_timer_start(&c->cmd_timer, on_cmd_timer, c->phead->deadline > now ? c->phead->deadline - now : 0, 0);
}

/* ---- sending ---- */

static cmd_t *cmd_new(sl_cache_t *c, ckind_t kind)
{
    cmd_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        abort(); /* the exactly-once promise cannot be kept without memory */
    k->c = c;
    k->kind = kind;
    return k;
}

static void send_argv(cmd_t *k, int argc, const char **argv, const size_t *argvlen)
{
    sl_cache_t *c = k->c;
    c->depth++;
    if (c->closing) {
        fail(k, SL_CACHE_E_CLOSED, "cache client closed");
    } else if (!c->connected || c->ac == NULL) {
        fail(k, SL_CACHE_E_DOWN, "not connected to Redis");
    } else if (redisAsyncCommandArgv(c->ac, on_reply, k, argc, argv, argvlen) != REDIS_OK) {
        fail(k, SL_CACHE_E_DOWN, "Redis connection is closing");
    } else {
        c->stats.commands++;
        k->in_hiredis = 1;
        c->in_hiredis_cmds++;
        k->deadline = uv_now(c->loop) + c->cfg.command_timeout_ms;
        k->pending = 1;
        k->prev = c->ptail;
        if (c->ptail)
            c->ptail->next = k;
        else
            c->phead = k;
        c->ptail = k;
        if (k == c->phead)
            arm_cmd_timer(c);
    }
    c->depth--;
}

void sl_cache_command(sl_cache_t *c, int argc, const char **argv, const size_t *argvlen, sl_cache_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_GENERIC);
    k->gcb = cb;
    k->data = data;
    send_argv(k, argc, argv, argvlen);
}

/* Builds "<prefix>p:<id>" into buf (heap when large). */
static char *make_key(sl_cache_t *c, const char *id, size_t idlen, size_t *len, char *stackbuf, size_t stacklen)
{
    size_t n = c->prefix_len + 2 + idlen;
    char *k = n <= stacklen ? stackbuf : malloc(n);
    if (k == NULL)
        abort();
    memcpy(k, c->prefix, c->prefix_len);
    memcpy(k + c->prefix_len, "p:", 2);
    memcpy(k + c->prefix_len + 2, id, idlen);
    *len = n;
    return k;
}

void sl_cache_proj_get(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_GET);
    k->pcb = cb;
    k->data = data;
    char kb[256];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, klen};
    send_argv(k, 2, argv, lens);
    if (key != kb)
        free(key);
}

void sl_cache_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_HEAD);
    k->pcb = cb;
    k->data = data;
    char kb[256];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    /* "P<20 digits>\n" fits in 23 bytes: only the head crosses the wire, however big the entry. */
    const char *argv[] = {"GETRANGE", key, "0", "31"};
    size_t lens[] = {8, klen, 1, 2};
    send_argv(k, 4, argv, lens);
    if (key != kb)
        free(key);
}

void sl_cache_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms, sl_proj_cb cb,
                         void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], val[32], ttl[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(val, sizeof(val), "L%" PRIu64, token);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1);
    /* One SET NX PX is atomic on its own: no script needed for "only when absent". */
    const char *argv[] = {"SET", key, val, "NX", "PX", ttl};
    size_t lens[] = {3, klen, (size_t)vlen, 2, 2, (size_t)tlen};
    send_argv(k, 6, argv, lens);
    if (key != kb)
        free(key);
}

/* "P<version>\n<payload>" or "T<version>" */
static char *make_value(sl_proj_kind_t kind, uint64_t version, const void *payload, size_t len, size_t *out)
{
    char head[32];
    int hlen = snprintf(head, sizeof(head), kind == SL_PROJ_PUBLIC ? "P%" PRIu64 "\n" : "T%" PRIu64, version);
    size_t n = (size_t)hlen + (kind == SL_PROJ_PUBLIC ? len : 0);
    char *v = malloc(n ? n : 1);
    if (v == NULL)
        abort();
    memcpy(v, head, (size_t)hlen);
    if (kind == SL_PROJ_PUBLIC && len)
        memcpy(v + hlen, payload, len);
    *out = n;
    return v;
}

static int bad_kind(cmd_t *k, sl_proj_kind_t kind)
{
    if (kind == SL_PROJ_PUBLIC || kind == SL_PROJ_TOMB)
        return 0;
    k->c->depth++;
    fail(k, SL_CACHE_E_REPLY, "only PUBLIC or TOMB can be written");
    k->c->depth--;
    return 1;
}

void sl_cache_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, const void *payload, size_t len, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind))
        return;
    char kb[256], lease[32], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, payload, len, &vlen);
    int llen = snprintf(lease, sizeof(lease), "L%" PRIu64, token);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_FILL, "1", key, lease, val, ttl};
    size_t lens[] = {4, sizeof(LUA_FILL) - 1, 1, klen, (size_t)llen, vlen, (size_t)tlen};
    send_argv(k, 7, argv, lens);
    free(val);
    if (key != kb)
        free(key);
}

void sl_cache_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms, sl_proj_cb cb,
                        void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], ver[24], ttl[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1);
    const char *argv[] = {"EVAL", LUA_MARK, "1", key, ver, ttl};
    size_t lens[] = {4, sizeof(LUA_MARK) - 1, 1, klen, (size_t)vlen, (size_t)tlen};
    send_argv(k, 6, argv, lens);
    if (key != kb)
        free(key);
}

void sl_cache_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           const void *payload, size_t len, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind))
        return;
    char kb[256], ver[24], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, payload, len, &vlen);
    int verlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_PUBLISH, "1", key, ver, val, ttl};
    size_t lens[] = {4, sizeof(LUA_PUBLISH) - 1, 1, klen, (size_t)verlen, vlen, (size_t)tlen};
    send_argv(k, 7, argv, lens);
    free(val);
    if (key != kb)
        free(key);
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sl_cache_open(sl_cache_t **out, uv_loop_t *loop, const sl_cache_config_t *cfg)
{
    *out = NULL;
    if (loop == NULL || cfg == NULL)
        return -EINVAL;
    if (cfg->unix_path == NULL && (cfg->host == NULL || cfg->port > 65535))
        return -EINVAL;
    sl_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->loop = loop;
    c->cfg = *cfg;
    c->host = dup_or_null(cfg->host);
    c->unix_path = dup_or_null(cfg->unix_path);
    c->prefix = strdup(cfg->key_prefix ? cfg->key_prefix : "sl:");
    if ((cfg->host && c->host == NULL) || (cfg->unix_path && c->unix_path == NULL) || c->prefix == NULL) {
        free(c->host);
        free(c->unix_path);
        free(c->prefix);
        free(c);
        return -ENOMEM;
    }
    c->prefix_len = strlen(c->prefix);
    c->cfg.host = c->host;
    c->cfg.unix_path = c->unix_path;
    c->cfg.key_prefix = c->prefix;
    if (c->cfg.port == 0)
        c->cfg.port = 6379;
    if (c->cfg.connect_timeout_ms == 0)
        c->cfg.connect_timeout_ms = 1000;
    if (c->cfg.command_timeout_ms == 0)
        c->cfg.command_timeout_ms = 1000;
    if (c->cfg.reconnect_min_ms == 0)
        c->cfg.reconnect_min_ms = 50;
    if (c->cfg.reconnect_max_ms == 0)
        c->cfg.reconnect_max_ms = 2000;
    if (c->cfg.reconnect_max_ms < c->cfg.reconnect_min_ms)
        c->cfg.reconnect_max_ms = c->cfg.reconnect_min_ms;
    if (cfg->public_ttl_s == 0 && cfg->tomb_ttl_s == 0) {
        /* both zero: an all-defaults config */
        c->cfg.public_ttl_s = 86400;
        c->cfg.tomb_ttl_s = 3600;
    } else if (c->cfg.tomb_ttl_s == 0) {
        c->cfg.tomb_ttl_s = 3600; /* a tombstone must expire some day; it is re-made on demand */
    }
    uv_timer_init(loop, &c->conn_timer);
    c->conn_timer.data = c;
    uv_timer_init(loop, &c->cmd_timer);
    c->cmd_timer.data = c;
    uv_idle_init(loop, &c->idle);
    c->idle.data = c;
    start_connect(c);
    *out = c;
    return 0;
}

int sl_cache_connected(const sl_cache_t *c)
{
    return c != NULL && c->connected && !c->closing;
}

void sl_cache_get_stats(const sl_cache_t *c, sl_cache_stats_t *out)
{
    *out = c->stats;
}

static void on_handle_closed(uv_handle_t *h)
{
    sl_cache_t *c = h->data;
    if (--c->pending_closes == 0) {
        free(c->host);
        free(c->unix_path);
        free(c->prefix);
        free(c);
    }
}

static void maybe_free(sl_cache_t *c)
{
    if (c->pending_closes || c->dhead || c->in_hiredis_cmds > 0 || c->ac)
        return;
    c->pending_closes = 3;
    uv_close((uv_handle_t *)&c->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

void sl_cache_close(sl_cache_t *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = 1;
    c->depth++;
    uv_timer_stop(&c->conn_timer);
    uv_timer_stop(&c->cmd_timer);
    /* Pending commands: queued for E_CLOSED now; hiredis lets go of them when freed below. */
    while (c->phead)
        fail(c->phead, SL_CACHE_E_CLOSED, "cache client closed");
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->connected = 0;
        ac->data = NULL;
        /* Inside a hiredis callback this is deferred by hiredis until the callback returns. */
        redisAsyncFree(ac);
    }
    c->depth--;
    if (!c->idle_active) {
        uv_idle_start(&c->idle, on_idle);
        c->idle_active = 1;
    }
}
