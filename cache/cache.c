/*
 * cache/ — see cache.h for the contract and docs/invalidation.md for the protocol. This file is the
 * command layer; the projection entries and their write rules are in proj.c.
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

#include "cache/internal/client.h"
#include "cache/internal/uv_redis.h"

static void start_connect(sl_cache_t *c);
static void maybe_free(sl_cache_t *c);

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

static void start_idle(sl_cache_t *c)
{
    if (!c->idle_active) {
        uv_idle_start(&c->idle, on_idle);
        c->idle_active = 1;
    }
}

/* Fails k with status from the idle queue: always later, from the loop, never inside the API call
 * (or the sl_cache_close()) that got us here. */
void sl_cache__fail(cmd_t *k, sl_cache_status_t status, const char *error)
{
    sl_cache_t *c = k->c;
    if (k->done)
        return;
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

/* Runs k's callback. r is the reply when status is OK, else NULL. */
static void deliver_now(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r)
{
    sl_cache_t *c = k->c;
    k->done = 1;
    if (status == SL_CACHE_OK && r->type == REDIS_REPLY_ERROR) {
        status = SL_CACHE_E_REPLY;
        error = r->str;
    }
    if (k->kind == K_BLOBS) {
        if (status != SL_CACHE_OK)
            c->stats.errors++;
        sl_cache__deliver_blobs(k, status, error, status == SL_CACHE_OK ? r : NULL);
        return;
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
            sl_cache__parse_proj(&pr, r, 0);
        } else if (k->kind == K_HEAD) {
            /* GETRANGE answers "" for an absent key; the rest is cut, so never reported */
            sl_cache__parse_proj(&pr, r, 1);
        } else if (r->type == REDIS_REPLY_INTEGER && (r->integer == 0 || r->integer == 1)) {
            pr.stored = (int)r->integer; /* every write script answers 1 (stored) or 0 (refused) */
        } else if (r->type == REDIS_REPLY_STRING &&
                   sl_cache__parse_refusal(&pr, r->str, (size_t)r->len) == 0) {
            pr.stored = 0; /* refused, with what holds the key: kind and version */
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
        if (c->closing)
            maybe_free(c);
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
    if (c->closing && c->in_hiredis_cmds == 0 && !c->idle_active)
        maybe_free(c);
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
    if (ac == NULL)
        return;
    if (ac->c.flags & REDIS_CONNECTED)
        c->stats.disconnects++;
    if (free_it) {
        ac->data = NULL; /* its connect/disconnect callbacks now ignore it */
        redisAsyncFree(ac);
    }
}

static void on_conn_timer(uv_timer_t *t)
{
    sl_cache_t *c = t->data;
    if (c->closing)
        return;
    if (c->connecting) {
        /* connect timeout: counts as a failed attempt */
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
        unsigned next = delay > c->cfg.reconnect_max_ms / 2 ? c->cfg.reconnect_max_ms : delay * 2;
        c->backoff_ms = next;
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
        /* refused/unreachable (reported by our adapter); hiredis frees the context after this */
        c->ac = NULL;
        schedule_retry(c, 1);
        return;
    }
    c->connected = 1;
    c->backoff_ms = 0;
    c->stats.connects++;
    sl_cache__trust_connected(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    sl_cache_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return; /* one we dropped ourselves */
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
    if (c->phead == NULL || c->closing)
        return; /* an idle timer would keep the loop alive for nothing */
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

cmd_t *sl_cache__cmd_new(sl_cache_t *c, ckind_t kind)
{
    cmd_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        abort(); /* the exactly-once promise cannot be kept without memory */
    k->c = c;
    k->kind = kind;
    return k;
}

void sl_cache__send(cmd_t *k, int argc, const char **argv, const size_t *argvlen)
{
    sl_cache_t *c = k->c;
    if (c->closing) {
        sl_cache__fail(k, SL_CACHE_E_CLOSED, "cache client closed");
    } else if (!c->connected || c->ac == NULL) {
        sl_cache__fail(k, SL_CACHE_E_DOWN, "not connected to Redis");
    } else if (k->kind != K_GENERIC && !c->trusted) {
        sl_cache__fail(k, SL_CACHE_E_DOWN, "Redis is not trusted yet (checking that it holds our entries)");
    } else if (redisAsyncCommandArgv(c->ac, on_reply, k, argc, argv, argvlen) != REDIS_OK) {
        /* the context is being torn down (hiredis refuses new commands then) */
        sl_cache__fail(k, SL_CACHE_E_DOWN, "Redis connection is closing");
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
        if (!uv_is_active((uv_handle_t *)&c->cmd_timer))
            arm_cmd_timer(c);
    }
}

void sl_cache_command(sl_cache_t *c, int argc, const char **argv, const size_t *argvlen, sl_cache_cb cb,
                      void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_GENERIC);
    k->gcb = cb;
    k->data = data;
    if (argc <= 0 || argv == NULL) {
        sl_cache__fail(k, SL_CACHE_E_REPLY, "empty command");
        return;
    }
    sl_cache__send(k, argc, argv, argvlen);
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
        if (n == 0 || n >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return -EINVAL;
    } else if (cfg->host == NULL || !is_ip_literal(cfg->host) || cfg->port > 65535) {
        return -EINVAL;
    }
    if (cfg->reconnect_min_ms && cfg->reconnect_max_ms && cfg->reconnect_max_ms < cfg->reconnect_min_ms)
        return -EINVAL;
    return 0;
}

static void on_trust_timer(uv_timer_t *t)
{
    sl_cache__trust_check(t->data);
}

int sl_cache_open(sl_cache_t **out, uv_loop_t *loop, const sl_cache_config_t *cfg)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (loop == NULL || cfg == NULL)
        return -EINVAL;
    int rc = check_config(cfg);
    if (rc != 0)
        return rc;
    sl_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
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
    if (c->cfg.port == 0)
        c->cfg.port = 6379;
    if (c->cfg.connect_timeout_ms == 0)
        c->cfg.connect_timeout_ms = 1000;
    if (c->cfg.command_timeout_ms == 0)
        c->cfg.command_timeout_ms = 1000;
    if (c->cfg.reconnect_min_ms == 0)
        c->cfg.reconnect_min_ms = 50;
    if (c->cfg.reconnect_max_ms == 0)
        c->cfg.reconnect_max_ms = c->cfg.reconnect_min_ms > 2000 ? c->cfg.reconnect_min_ms : 2000;
    /* TTLs: "0 = none" for public_ttl_s collides with "0 = default" of a zeroed config. Both zero is
     * read as an all-defaults config; a zero public TTL next to a set tomb TTL means "no expiry". A
     * tombstone always expires (it is re-made on demand), so its 0 is the default. */
    if (cfg->public_ttl_s == 0 && cfg->tomb_ttl_s == 0)
        c->cfg.public_ttl_s = 86400;
    if (c->cfg.tomb_ttl_s == 0)
        c->cfg.tomb_ttl_s = 3600;
    uv_timer_init(loop, &c->conn_timer);
    c->conn_timer.data = c;
    uv_timer_init(loop, &c->cmd_timer);
    c->cmd_timer.data = c;
    uv_idle_init(loop, &c->idle);
    c->idle.data = c;
    if (c->cfg.trust_check_ms == 0)
        c->cfg.trust_check_ms = 1000;
    uv_timer_init(loop, &c->trust_timer);
    c->trust_timer.data = c;
    uv_timer_start(&c->trust_timer, on_trust_timer, c->cfg.trust_check_ms, c->cfg.trust_check_ms);
    uv_unref((uv_handle_t *)&c->trust_timer); /* it never keeps a loop alive on its own */
    start_connect(c);
    *out = c;
    return 0;
}

int sl_cache_connected(const sl_cache_t *c)
{
    return sl_cache_trusted(c);
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
    if (c->pending_closes || c->dhead || c->idle_active || c->in_hiredis_cmds > 0 || c->ac)
        return;
    c->pending_closes = 4;
    uv_close((uv_handle_t *)&c->trust_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

void sl_cache_close(sl_cache_t *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = 1;
    c->connected = 0;
    uv_timer_stop(&c->conn_timer);
    uv_timer_stop(&c->cmd_timer);
    uv_timer_stop(&c->trust_timer);
    /* The idle run is what frees the client; started before anything below can call back into
     * us, so maybe_free() cannot close the idle handle under our feet. */
    start_idle(c);
    /* Pending commands: queued for E_CLOSED now; hiredis lets go of them when freed below. */
    while (c->phead)
        sl_cache__fail(c->phead, SL_CACHE_E_CLOSED, "cache client closed");
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->connecting = 0;
        ac->data = NULL;
        /* Inside a hiredis callback, hiredis defers this until the callback returns. */
        redisAsyncFree(ac);
    }
}
