/*
 * Internal to cache/: the client's state and the command layer (cache.c) that the projection
 * protocol (proj.c) sends its commands through.
 */
#ifndef SL_CACHE_INTERNAL_CLIENT_H
#define SL_CACHE_INTERNAL_CLIENT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "cache/cache.h"

typedef enum ckind { K_GENERIC, K_GET, K_HEAD, K_WRITE, K_BLOBS } ckind_t;

typedef struct cmd {
    struct cmd *next, *prev; /* pending list (sent, awaiting reply), FIFO = deadline order */
    struct cmd *dnext;       /* deferred-delivery queue */
    sl_cache_t *c;
    ckind_t kind;
    sl_cache_cb gcb;
    sl_proj_cb pcb;
    sl_blobs_cb bcb;
    size_t nblobs; /* K_BLOBS: keys asked (0: a SET) */
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
    /* trust (trust.c): projection commands run only while `trusted` */
    int trusted;
    int trust_checking;
    unsigned trust_seq; /* bumped per connection: a check of an older one is dropped */
    uint64_t trust_gen; /* bumped whenever trust is lost or regained */
    char run_id[48];    /* of the Redis this connection reaches, once known */
    uv_timer_t trust_timer;
};

/* A new command of this kind (aborts when out of memory: the exactly-once promise needs it). */
cmd_t *sl_cache__cmd_new(sl_cache_t *c, ckind_t kind);
/* Sends k, or fails it (not connected, closing); its callback runs exactly once, later. */
void sl_cache__send(cmd_t *k, int argc, const char **argv, const size_t *argvlen);
/* Fails k with status and error (delivered from the loop). */
void sl_cache__fail(cmd_t *k, sl_cache_status_t status, const char *error);
/* Trust (trust.c): a check now (no-op while one runs or when not connected), and what a new
 * connection does (nothing trusted until checked). */
void sl_cache__trust_check(sl_cache_t *c);
void sl_cache__trust_connected(sl_cache_t *c);
/* Delivers a K_BLOBS reply (blobs.c); r is NULL unless status is OK. */
void sl_cache__deliver_blobs(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r);
/* Parses a projection value (or, for HEAD, its first bytes) into pr (proj.c). */
void sl_cache__parse_proj(sl_proj_reply_t *pr, const redisReply *r, int head_only);
/* A refused mark or publish answers "P<v>", "T<v>" or "M<v>": what holds the key. 0, or -1 when s is
 * not that. */
int sl_cache__parse_refusal(sl_proj_reply_t *pr, const char *s, size_t len);

#endif
