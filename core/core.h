/*
 * core — Shareline's domain: tenants/users/tokens, sessions and exchanges, owner operations,
 * SpecStory import, the public projection and its invalidation.
 *
 * The core implements the methods of the rpc method table (sl_core_register) and talks to the
 * store (MariaDB) and the cache (Redis) it is given. It runs on one libuv loop; it never blocks it.
 *
 * Method names it registers:
 *   shareline.v1.Sessions/<Method>   the owner RPCs of API.md (authenticated by bearer token)
 *   shareline.v1.Public/GetShare     the public read path: {"session_id"} ->
 *       {"found": false} or the projection {"found": true, "version", "etag", "json", "json_gz",
 *        "html", "html_gz"} (bin values; etag without the variant suffix, see docs/projection.md)
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdint.h>
#include <uv.h>

#include "cache/cache.h"
#include "rpc/rpc.h"
#include "store/store.h"

typedef struct sl_core sl_core_t;

typedef struct sl_core_config {
    const char *public_base_url; /* e.g. "http://127.0.0.1:8080" (share_url = base + "/share/" + id) */
    size_t max_markdown;         /* bytes of one uploaded markdown (and rawData, sessionData), default 64 MiB */
    unsigned max_exchanges;      /* exchanges of one session, default 10000 */
    unsigned test_fill_delay_ms; /* tests only: a reader waits this long before its cache fill */
    unsigned test_fail_publish;  /* tests only: the publish after the Nth commit (1-based) fails */
} sl_core_config_t;

typedef struct sl_core_stats {
    uint64_t public_requests;     /* GetShare calls */
    uint64_t public_cache_hits;   /* answered from Redis (PUBLIC or TOMB entry) */
    uint64_t public_store_reads;  /* answered by reading MariaDB (miss, mark, cache down) */
    uint64_t public_fills;        /* projections written to Redis by readers */
    uint64_t public_fills_refused; /* reader fills refused because an owner change came first */
    uint64_t public_unchanged;    /* answered "unchanged": the gateway's copy is the current version */
    uint64_t owner_calls;         /* owner RPCs */
    uint64_t owner_errors;        /* owner RPCs answered with an error */
    uint64_t publishes;           /* projections/tombstones written by owner changes */
    uint64_t public_memory_hits;  /* answered from the node's memory, without asking Redis */
    uint64_t cache_repairs;       /* sessions republished by the repair after a failed publish */
} sl_core_stats_t;

/* owner: the pool for the owner path (full access); public: the pool of the account that can read
 * only the public_* views. Neither is owned by the core. */
int sl_core_open(sl_core_t **out, uv_loop_t *loop, sl_store_t *owner, sl_store_t *public_, sl_cache_t *cache,
                 const sl_core_config_t *cfg);
void sl_core_close(sl_core_t *core);

/* Lets public reads answer from the node's memory (cache/coherence.h) and makes every owner change
 * invalidate it on every node before returning. Not owned. Call before serving. */
struct sl_coh;
void sl_core_set_coherence(sl_core_t *core, struct sl_coh *coh);

/* Registers every method of the core in srv. */
int sl_core_register(sl_core_t *core, sl_rpc_server_t *srv);

/* Starts the cache repair: every interval_ms, sessions whose publish failed more than 5 s ago
 * (cache_dirty) are published again (docs/invalidation.md, "Repair"). Call once, from serve. */
void sl_core_start_repair(sl_core_t *core, unsigned interval_ms);

void sl_core_get_stats(const sl_core_t *core, sl_core_stats_t *out);

/* SHA-256 of a token as stored in tokens.token_hash (for the admin subcommands). */
void sl_core_token_hash(const char *token, size_t len, unsigned char out[32]);
/* 1 when stored[0..len) is exactly hash (32 bytes); constant time in the bytes' values. */
int sl_core_token_hash_equal(const void *stored, size_t len, const unsigned char hash[32]);
/* Writes a new random token ("slt_" + 43 base64url chars) into out (>= 64 bytes). Returns 0 or -1. */
int sl_core_token_new(char *out, size_t outlen);

#endif
