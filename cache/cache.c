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
 * Timeouts: one uv_timer per client, aimed at the oldest pending command's deadline. All commands
 * share command_timeout_ms, so the FIFO send order is also the deadline order and the head of the
 * list is always the next one to expire. The timer is re-aimed lazily: a reply does not touch it;
 * when it fires early (its command was answered) it is just re-armed for the new head.
 *
 * Connection: connect timeout and reconnect delay share one uv_timer. A failed or timed-out
 * connect is retried after reconnect_min_ms, doubling per consecutive failure up to
 * reconnect_max_ms; a lost connection is retried after reconnect_min_ms. This goes on for as long
 * as the client is open; a successful connect resets the backoff.
 *
 * Results known inside an API call (not connected, closing, bad argument) are queued and delivered
 * from a uv_idle_t, so a callback never runs inside the call that registered it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "cache/internal/uv_redis.h"

typedef enum ckind { K_GENERIC, K_GET, K_HEAD, K_WRITE } ckind_t;

typedef struct cmd {
    struct cmd *next, *prev; /* pending list (sent, awaiting reply), FIFO = deadline order */
    struct cmd *dnext;       /* deferred-delivery queue */
    sl_cache_t *c;
    ckind_t kind;
    sl_cache_cb gcb;
    sl_proj_cb pcb;
    void *data;
    uint64_t deadline;
    int in_hiredis; /* hiredis holds privdata = this */
    int done;       /* the user callback ran (or is queued): no other path may call it */
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
    redisAsyncContext *ac; /* the current context (connecting or connected), or NULL */
    int connected;
    int connecting;
    unsigned backoff_ms;
    uv_timer_t conn_timer; /* connect timeout, or the delay before the next attempt */
    uv_timer_t cmd_timer;  /* the oldest pending command's deadline */
    uv_idle_t idle;        /* delivers the deferred queue */
    int idle_active;
    cmd_t *phead, *ptail;
    cmd_t *dhead, *dtail;
    int closing;
    int pending_closes;
    int in_hiredis_cmds; /* commands hiredis still holds (the client lives until it lets go) */
    sl_cache_stats_t stats;
};

static void start_connect(sl_cache_t *c);
static void maybe_free(sl_cache_t *c);

/* ---- Lua: the conditional writes of the invalidation protocol ----
 * Versions are decimal uint64 strings without leading zeros, so they compare exactly as
 * (length, then bytes) — Lua numbers are doubles and would round above 2^53. A stored version
 * that is not all digits (someone else's value) is treated as no version: the write wins. */
#define LUA_PARSE                                                                                            \
    "local function gt(a, b) if #a ~= #b then return #a > #b end return a > b end "                          \
    "local cur = redis.call('GET', KEYS[1]) "                                                                \
    "local kind, ver = nil, nil "                                                                            \
    "if cur then "                                                                                           \
    "  kind = string.sub(cur, 1, 1) "                                                                        \
    "  if kind == 'P' then local nl = string.find(cur, '\\n', 2, true) "                                     \
    "    if nl then ver = string.sub(cur, 2, nl - 1) end "                                                   \
    "  elseif kind == 'M' or kind == 'T' then ver = string.sub(cur, 2) end "                                 \
    "  if ver and not string.match(ver, '^%d+$') then ver = nil end "                                        \
    "end "

/* ARGV: 1 = lease value, 2 = TTL ms. SET NX returns false (nil) when the key exists. */
static const char LUA_LEASE[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "return 0";

/* ARGV: 1 = expected lease value, 2 = new value, 3 = TTL seconds (0 = none) */
static const char LUA_FILL[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
    "else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

/* ARGV: 1 = version, 2 = TTL ms. A MARK of an equal or lower version and a LEASE are overwritten. */
static const char LUA_MARK[] =
    LUA_PARSE "if ver and (kind == 'P' or kind == 'T' or kind == 'M') and gt(ver, ARGV[1]) "
              "then return 0 end "
              "redis.call('SET', KEYS[1], 'M' .. ARGV[1], 'PX', ARGV[2]) return 1";

/* ARGV: 1 = version, 2 = new value, 3 = TTL seconds (0 = none) */
static const char LUA_PUBLISH[] =
    LUA_PARSE "if ver and kind == 'M' and gt(ver, ARGV[1]) then return 0 end "
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
    if (!k->done || k->in_hiredis || k->pending || k->queued) return;
    free(k);
}

static void list_remove(sl_cache_t *c, cmd_t *k)
{
    if (!k->pending) return;
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

static void start_idle(sl_cache_t *c)
{
    if (!c->idle_active) {
        uv_idle_start(&c->idle, on_idle);
        c->idle_active = 1;
    }
}

/* Fails k with status from the idle queue: always later, from the loop, never inside the API call
 * (or the sl_cache_close()) that got us here. */
static void fail(cmd_t *k, sl_cache_status_t status, const char *error)
{
    sl_cache_t *c = k->c;
    if (k->done) return;
    list_remove(c, k);
    k->done = 1; /* blocks every other path to the callback (e.g. hiredis' NULL reply later) */
    k->queued = 1;
    k->status = status;
    k->error = error;
    k->dnext = NULL;
    if (c->dtail)
        c->dtail->dnext = k;
    else
        c->dhead = k;
    c->dtail = k;
    start_idle(c);
}

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parses a projection value (or, for HEAD, its first bytes) into pr. */
static void parse_value(sl_proj_reply_t *pr, const redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL) {
        pr->kind = SL_PROJ_ABSENT;
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        pr->status = SL_CACHE_E_REPLY;
        pr->error = "unexpected reply type for a projection key";
        return;
    }
    const char *s = r->str;
    size_t len = (size_t)r->len;
    size_t vend = len;
    if (len < 2) goto bad;
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
        if (nl == NULL) goto bad;
        pr->kind = SL_PROJ_PUBLIC;
        vend = (size_t)(nl - s);
        pr->payload = nl + 1;
        pr->len = len - vend - 1;
        break;
    }
    default:
        goto bad;
    }
    if (parse_u64(s + 1, vend - 1, &pr->version) == 0) return;
bad:
    pr->status = SL_CACHE_E_REPLY;
    pr->error = "malformed value in a projection key";
    pr->kind = SL_PROJ_ABSENT;
    pr->version = 0;
    pr->payload = NULL;
    pr->len = 0;
}

/* Runs k's callback. r is the reply when status is OK, else NULL. */
static void deliver_now(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r)
{
    sl_cache_t *c = k->c;
    k->done = 1;
    if (status == SL_CACHE_OK && r->type == REDIS_REPLY_ERROR) {
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
        if (gr.status != SL_CACHE_OK) c->stats.errors++;
        k->gcb(&gr, k->data);
        return;
    }
    sl_proj_reply_t pr = {.status = status, .error = error};
    if (status == SL_CACHE_OK) {
        if (k->kind == K_GET) {
            parse_value(&pr, r);
        } else if (k->kind == K_HEAD) {
            /* GETRANGE answers "" for an absent key; the payload is cut, so never reported */
            if (r->type == REDIS_REPLY_STRING && r->len == 0)
                pr.kind = SL_PROJ_ABSENT;
            else
                parse_value(&pr, r);
            pr.payload = NULL;
            pr.len = 0;
        } else if (r->type == REDIS_REPLY_INTEGER && (r->integer == 0 || r->integer == 1)) {
            pr.stored = (int)r->integer; /* every write script answers 1 (stored) or 0 (refused) */
        } else {
            pr.status = SL_CACHE_E_REPLY;
            pr.error = "unexpected reply to a projection write";
        }
    }
    if (pr.status != SL_CACHE_OK) c->stats.errors++;
    k->pcb(&pr, k->data);
}

static void on_idle(uv_idle_t *h)
{
    sl_cache_t *c = h->data;
    /* Deliver only what is queued now: a callback that issues a command which fails at once (e.g.
     * a retry while down) queues it for the next loop iteration, so I/O and timers still run in
     * between instead of this loop spinning forever. */
    cmd_t *k = c->dhead;
    c->dhead = c->dtail = NULL;
    while (k) {
        cmd_t *next = k->dnext;
        k->queued = 0;
        deliver_now(k, k->status, k->error, NULL);
        cmd_release(k);
        k = next;
    }
    if (c->dhead == NULL) {
        uv_idle_stop(&c->idle);
        c->idle_active = 0;
        if (c->closing) maybe_free(c);
    }
}

/* ---- the connection ---- */

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
    /* (a reply for a command that already timed out lands here with k->done set: dropped) */
    cmd_release(k);
    /* After sl_cache_close() the idle queue normally does the freeing; this covers hiredis letting
     * go of the last command after that queue ran dry. */
    if (c->closing && c->in_hiredis_cmds == 0 && !c->idle_active) maybe_free(c);
}

static void schedule_retry(sl_cache_t *c, int failed);

/* Forgets the current context. free_it: we end it here (hiredis then hands every outstanding
 * command a NULL reply -> E_DOWN); otherwise hiredis is already freeing it. */
static void drop_connection(sl_cache_t *c, int free_it)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL; /* first: commands issued from the E_DOWN callbacks must not join it */
    c->connected = 0;
    c->connecting = 0;
    if (ac == NULL) return;
    if (ac->c.flags & REDIS_CONNECTED) c->stats.disconnects++;
    if (free_it) {
        ac->data = NULL; /* its connect/disconnect callbacks now ignore it */
        redisAsyncFree(ac);
    }
}

static void on_conn_timer(uv_timer_t *t)
{
    sl_cache_t *c = t->data;
    if (c->closing) return;
    if (c->connecting) {
        /* connect timeout: counts as a failed attempt */
        drop_connection(c, 1);
        schedule_retry(c, 1);
        return;
    }
    if (c->ac == NULL) start_connect(c);
}

static void schedule_retry(sl_cache_t *c, int failed)
{
    if (c->closing) return;
    unsigned delay = c->cfg.reconnect_min_ms;
    if (failed) {
        delay = c->backoff_ms ? c->backoff_ms : c->cfg.reconnect_min_ms;
        unsigned next = delay > c->cfg.reconnect_max_ms / 2 ? c->cfg.reconnect_max_ms : delay * 2;
        c->backoff_ms = next;
    }
    uv_timer_start(&c->conn_timer, on_conn_timer, delay, 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_cache_t *c = ac->data;
    if (c == NULL || c->ac != ac) return;
    uv_timer_stop(&c->conn_timer);
    c->connecting = 0;
    if (status != REDIS_OK) {
        /* refused/unreachable (reported by our adapter); hiredis frees the context after this */
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
    if (c == NULL || c->ac != ac) return; /* one we dropped ourselves */
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
    /* hiredis arms the write event here: the connect completes on the first writable (or error) */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&c->conn_timer, on_conn_timer, c->cfg.connect_timeout_ms, 0);
}

static void on_cmd_timer(uv_timer_t *t);

static void arm_cmd_timer(sl_cache_t *c)
{
    if (c->phead == NULL || c->closing) return; /* an idle timer would keep the loop alive for nothing */
    uint64_t now = uv_now(c->loop);
    uv_timer_start(&c->cmd_timer, on_cmd_timer, c->phead->deadline > now ? c->phead->deadline - now : 0, 0);
}

static void on_cmd_timer(uv_timer_t *t)
{
    sl_cache_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (c->phead && c->phead->deadline <= now) {
        /* A Redis that does not answer holds every later command: the connection is given up.
         * Marked down before the callbacks run, so commands issued from them fail fast (E_DOWN)
         * instead of joining a connection about to be dropped. */
        c->connected = 0;
        while (c->phead && c->phead->deadline <= now) {
            cmd_t *k = c->phead;
            list_remove(c, k);
            c->stats.timeouts++;
            deliver_now(k, SL_CACHE_E_TIMEOUT, "Redis did not answer in time", NULL);
            cmd_release(k); /* still held by hiredis until the context goes: its reply is dropped */
        }
        if (c->ac && !c->closing) {
            drop_connection(c, 1); /* the other pending commands get E_DOWN */
            schedule_retry(c, 0);
        }
    }
    arm_cmd_timer(c);
}

/* ---- sending ---- */

static cmd_t *cmd_new(sl_cache_t *c, ckind_t kind)
{
    cmd_t *k = calloc(1, sizeof(*k));
    if (k == NULL) abort(); /* the exactly-once promise cannot be kept without memory */
    k->c = c;
    k->kind = kind;
    return k;
}

static void send_argv(cmd_t *k, int argc, const char **argv, const size_t *argvlen)
{
    sl_cache_t *c = k->c;
    if (c->closing) {
        fail(k, SL_CACHE_E_CLOSED, "cache client closed");
    } else if (!c->connected || c->ac == NULL) {
        fail(k, SL_CACHE_E_DOWN, "not connected to Redis");
    } else if (redisAsyncCommandArgv(c->ac, on_reply, k, argc, argv, argvlen) != REDIS_OK) {
        /* the context is being torn down (hiredis refuses new commands then) */
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
        /* Lazy: an armed timer aims at an older (earlier) deadline and re-aims when it fires. */
        if (!uv_is_active((uv_handle_t *)&c->cmd_timer)) arm_cmd_timer(c);
    }
}

void sl_cache_command(sl_cache_t *c, int argc, const char **argv, const size_t *argvlen, sl_cache_cb cb,
                      void *data)
{
    cmd_t *k = cmd_new(c, K_GENERIC);
    k->gcb = cb;
    k->data = data;
    if (argc <= 0 || argv == NULL) {
        fail(k, SL_CACHE_E_REPLY, "empty command");
        return;
    }
    send_argv(k, argc, argv, argvlen);
}

/* Builds "<prefix>p:<id>" into stackbuf, or on the heap when it does not fit. */
static char *make_key(sl_cache_t *c, const char *id, size_t idlen, size_t *len, char *stackbuf,
                      size_t stacklen)
{
    size_t n = c->prefix_len + 2 + idlen;
    char *k = n <= stacklen ? stackbuf : malloc(n);
    if (k == NULL) abort();
    memcpy(k, c->prefix, c->prefix_len);
    memcpy(k + c->prefix_len, "p:", 2);
    if (idlen) memcpy(k + c->prefix_len + 2, id, idlen);
    *len = n;
    return k;
}

static void send_get(sl_cache_t *c, ckind_t kind, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, kind);
    k->pcb = cb;
    k->data = data;
    char kb[256];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    if (kind == K_GET) {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, klen};
        send_argv(k, 2, argv, lens);
    } else {
        /* "P<20 digits>\n" fits in 23 bytes: only the head crosses the wire, however big the entry. */
        const char *argv[] = {"GETRANGE", key, "0", "31"};
        size_t lens[] = {8, klen, 1, 2};
        send_argv(k, 4, argv, lens);
    }
    if (key != kb) free(key);
}

void sl_cache_proj_get(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    send_get(c, K_GET, id, idlen, cb, data);
}

void sl_cache_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    send_get(c, K_HEAD, id, idlen, cb, data);
}

void sl_cache_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], val[32], ttl[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(val, sizeof(val), "L%" PRIu64, token);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1); /* PX 0 is an error in Redis */
    const char *argv[] = {"EVAL", LUA_LEASE, "1", key, val, ttl};
    size_t lens[] = {4, sizeof(LUA_LEASE) - 1, 1, klen, (size_t)vlen, (size_t)tlen};
    send_argv(k, 6, argv, lens);
    if (key != kb) free(key);
}

/* "P<version>\n<payload>" or "T<version>" */
static char *make_value(sl_proj_kind_t kind, uint64_t version, const void *payload, size_t len, size_t *out)
{
    char head[32];
    int hlen = snprintf(head, sizeof(head), kind == SL_PROJ_PUBLIC ? "P%" PRIu64 "\n" : "T%" PRIu64, version);
    size_t n = (size_t)hlen + (kind == SL_PROJ_PUBLIC ? len : 0);
    char *v = malloc(n);
    if (v == NULL) abort();
    memcpy(v, head, (size_t)hlen);
    if (kind == SL_PROJ_PUBLIC && len) memcpy(v + hlen, payload, len);
    *out = n;
    return v;
}

/* fill/publish write PUBLIC or TOMB only; anything else fails (later, from the loop). */
static int bad_kind(cmd_t *k, sl_proj_kind_t kind)
{
    if (kind == SL_PROJ_PUBLIC || kind == SL_PROJ_TOMB) return 0;
    fail(k, SL_CACHE_E_REPLY, "only PUBLIC or TOMB can be written");
    return 1;
}

void sl_cache_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, const void *payload, size_t len, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind)) return;
    char kb[256], lease[32], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, payload, len, &vlen);
    int llen = snprintf(lease, sizeof(lease), "L%" PRIu64, token);
    int tlen =
        snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_FILL, "1", key, lease, val, ttl};
    size_t lens[] = {4, sizeof(LUA_FILL) - 1, 1, klen, (size_t)llen, vlen, (size_t)tlen};
    send_argv(k, 7, argv, lens);
    free(val);
    if (key != kb) free(key);
}

void sl_cache_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_cb cb, void *data)
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
    if (key != kb) free(key);
}

void sl_cache_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           const void *payload, size_t len, sl_proj_cb cb, void *data)
{
    cmd_t *k = cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind)) return;
    char kb[256], ver[24], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, payload, len, &vlen);
    int verlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    int tlen =
        snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_PUBLISH, "1", key, ver, val, ttl};
    size_t lens[] = {4, sizeof(LUA_PUBLISH) - 1, 1, klen, (size_t)verlen, vlen, (size_t)tlen};
    send_argv(k, 7, argv, lens);
    free(val);
    if (key != kb) free(key);
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Only IP literals: hiredis would resolve a name with a blocking getaddrinfo() on the loop. */
static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int check_config(const sl_cache_config_t *cfg)
{
    if (cfg->unix_path != NULL) {
        size_t n = strlen(cfg->unix_path);
        if (n == 0 || n >= sizeof(((struct sockaddr_un *)0)->sun_path)) return -EINVAL;
    } else if (cfg->host == NULL || !is_ip_literal(cfg->host) || cfg->port > 65535) {
        return -EINVAL;
    }
    if (cfg->reconnect_min_ms && cfg->reconnect_max_ms && cfg->reconnect_max_ms < cfg->reconnect_min_ms)
        return -EINVAL;
    return 0;
}

int sl_cache_open(sl_cache_t **out, uv_loop_t *loop, const sl_cache_config_t *cfg)
{
    if (out == NULL) return -EINVAL;
    *out = NULL;
    if (loop == NULL || cfg == NULL) return -EINVAL;
    int rc = check_config(cfg);
    if (rc != 0) return rc;
    sl_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return -ENOMEM;
    c->loop = loop;
    c->cfg = *cfg;
    c->unix_path = dup_or_null(cfg->unix_path);
    c->host = c->unix_path ? NULL : dup_or_null(cfg->host);
    c->prefix = strdup(cfg->key_prefix ? cfg->key_prefix : "sl:");
    if ((c->host == NULL && c->unix_path == NULL) || c->prefix == NULL) {
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
    if (c->cfg.port == 0) c->cfg.port = 6379;
    if (c->cfg.connect_timeout_ms == 0) c->cfg.connect_timeout_ms = 1000;
    if (c->cfg.command_timeout_ms == 0) c->cfg.command_timeout_ms = 1000;
    if (c->cfg.reconnect_min_ms == 0) c->cfg.reconnect_min_ms = 50;
    if (c->cfg.reconnect_max_ms == 0)
        c->cfg.reconnect_max_ms = c->cfg.reconnect_min_ms > 2000 ? c->cfg.reconnect_min_ms : 2000;
    /* TTLs: "0 = none" for public_ttl_s collides with "0 = default" of a zeroed config. Both zero is
     * read as an all-defaults config; a zero public TTL next to a set tomb TTL means "no expiry". A
     * tombstone always expires (it is re-made on demand), so its 0 is the default. */
    if (cfg->public_ttl_s == 0 && cfg->tomb_ttl_s == 0) c->cfg.public_ttl_s = 86400;
    if (c->cfg.tomb_ttl_s == 0) c->cfg.tomb_ttl_s = 3600;
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

/* Closes our handles once nothing can reach the client any more: no queued callback, no command
 * in hiredis, no context (the adapter's poll handle is closed by hiredis' cleanup hook). */
static void maybe_free(sl_cache_t *c)
{
    if (c->pending_closes || c->dhead || c->idle_active || c->in_hiredis_cmds > 0 || c->ac) return;
    c->pending_closes = 3;
    uv_close((uv_handle_t *)&c->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

void sl_cache_close(sl_cache_t *c)
{
    if (c == NULL || c->closing) return;
    c->closing = 1;
    c->connected = 0;
    uv_timer_stop(&c->conn_timer);
    uv_timer_stop(&c->cmd_timer);
    /* The idle run is what frees the client; started before anything below can call back into
     * us, so maybe_free() cannot close the idle handle under our feet. */
    start_idle(c);
    /* Pending commands: queued for E_CLOSED now; hiredis lets go of them when freed below. */
    while (c->phead)
        fail(c->phead, SL_CACHE_E_CLOSED, "cache client closed");
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->connecting = 0;
        ac->data = NULL;
        /* Inside a hiredis callback, hiredis defers this until the callback returns. */
        redisAsyncFree(ac);
    }
}
