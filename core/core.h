/*
 * core — Shareline's domain: tenants/users/tokens, sessions and exchanges, owner operations,
 * SpecStory import, the public projection and its invalidation.
 *
 * The core implements the methods of the contract (rpc/rpc.h): every owner method of
 * the owner service (authenticated by bearer token) and the public read GetShare, whose
 * request and answer rpc.h defines. It talks to the store (MariaDB) and the cache (Redis) it is
 * given, on one libuv loop, and never blocks that loop. How a change reaches viewers, with its
 * races and failures: docs/invalidation.md.
 *
 * Where things are: core.c (this object, test hooks), owner.c (the owner methods' dispatch),
 * pipeline.c (the change pipeline every owner change runs through), one file per capability —
 * sync.c, sharing.c, edits.c, reads.c, search.c, projects.c — then public.c (GetShare),
 * projection.c + render.c (the public document, page and Markdown), publish.c (invalidation),
 * repair.c (republishing after failed publishes), specstory.c (the importer), auth.c (tokens),
 * admin.c (the admin operations below), task.c + await.c (coroutines over the callback modules).
 * Internal headers are in core/internal/.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdint.h>
#include <uv.h>

#include "cache/cache.h"
#include "rpc/rpc.h"
#include "store/store.h"

typedef struct sl_core sl_core_t;

/* The longest public base URL (SHARELINE_PUBLIC_URL). */
#define SL_CORE_MAX_BASE_URL 1000

typedef struct sl_core_config {
    const char *public_base_url; /* e.g. "http://127.0.0.1:8080" (share_url = base + "/share/" + id);
                                    at most SL_CORE_MAX_BASE_URL bytes */
    size_t max_markdown;    /* bytes of one uploaded markdown (and rawData, sessionData), default 64 MiB */
    unsigned max_exchanges; /* exchanges of one session, default 10000 */
    size_t
        pieces_cache_bytes; /* exchange pieces kept in memory (SHARELINE_PIECES_CACHE_BYTES), default 64 MiB */
    int projection_scratch; /* 1: every projection is rendered from the text, stored pieces are neither
                               used nor kept (SHARELINE_PROJECTION_SCRATCH; the identity check) */
    unsigned chunks_min;    /* visible exchanges from which a public session keeps its chunk state in
                               MariaDB (SHARELINE_CHUNKS_MIN; 0: SL_CHUNKS_MIN) */
} sl_core_config_t;

typedef struct sl_core_stats {
    uint64_t public_requests;      /* GetShare calls */
    uint64_t public_cache_hits;    /* answered from Redis (PUBLIC or TOMB entry) */
    uint64_t public_store_reads;   /* answered by reading MariaDB (miss, mark, cache down) */
    uint64_t public_fills;         /* projections written to Redis by readers */
    uint64_t public_fills_refused; /* reader fills refused because an owner change came first */
    uint64_t public_unchanged;     /* answered "unchanged": the gateway's copy is the current version */
    uint64_t owner_calls;          /* owner RPCs */
    uint64_t owner_errors;         /* owner RPCs answered with an error */
    uint64_t publishes;            /* projections/tombstones written by owner changes */
    uint64_t public_memory_hits;   /* answered from the node's memory, without asking Redis */
    uint64_t cache_repairs;        /* sessions republished by the repair after a failed publish */
    uint64_t scan_passes;          /* sessions scanned and republished by the background pass */
    uint64_t versions_behind;      /* owner writes that found Redis ahead of MariaDB (moved past it) */
    uint64_t pieces_hits;          /* exchange pieces found in the node's memory (docs/pieces.md) */
    uint64_t pieces_misses;        /* ... not found there (read from MariaDB, or rendered) */
    uint64_t pieces_bytes;         /* bytes the node's memory of pieces holds */
    uint64_t pieces_rendered;      /* exchanges whose pieces were rendered (new or changed) */
    uint64_t chunk_builds[2];      /* owner builds from every exchange [0] / from the chunk state [1] */
    uint64_t chunk_fallbacks;      /* builds that could not use the chunk state they were told to */
    uint64_t pieces_stored;        /* blobs of pieces written to Redis (new, changed, or not known there) */
    uint64_t pieces_fetched;       /* blobs of pieces a reader read from Redis (not in its memory) */
    uint64_t recipe_drops;         /* entries dropped by a reader: a blob they name was gone (rebuilt) */
} sl_core_stats_t;

/* owner: the pool for the owner path (full access); public: the pool of the account that can read
 * only the public_* views; coh: the node memory (sl_coh_open), or NULL to ask Redis on every public
 * read. None of them is owned by the core. Test hooks (SHARELINE_TEST_* variables, see core.c) are
 * read from the environment here. Returns 0 or -1 (out of memory). */
int sl_core_open(sl_core_t **out, uv_loop_t *loop, sl_store_t *owner, sl_store_t *public_, sl_cache_t *cache,
                 sl_coh_t *coh, const sl_core_config_t *cfg);
/* Stops the repair timer (the loop must run once more to close it) and frees the core. */
void sl_core_close(sl_core_t *core);

/* Registers every method of the core in srv. */
int sl_core_register(sl_core_t *core, sl_rpc_server_t *srv);

/* Starts the cache repair: every interval_ms, sessions whose publish failed more than 5 s ago
 * (cache_dirty) are published again (docs/invalidation.md, "Repair"). Call once, from serve. */
void sl_core_repair_start(sl_core_t *core, unsigned interval_ms);

void sl_core_get_stats(const sl_core_t *core, sl_core_stats_t *out);

/* ---- admin operations (blocking; for `shareline admin`, tests and set-up scripts) ----
 *
 * Each returns 0, or -1 with a message the operator can act on in err. */

/* Applies the schema migrations and grants the public account SELECT on the public views (the
 * only thing it may read). public_user and grantee_host: 1-80 of A-Z a-z 0-9 _ . - % : */
int sl_core_admin_migrate(sl_store_sync_t *db, const char *public_user, const char *grantee_host, char *err,
                          size_t errlen);
/* A tenant (name: 1-200 bytes) -> its id. */
int sl_core_admin_tenant_create(sl_store_sync_t *db, const char *name, uint64_t *id, char *err,
                                size_t errlen);
/* A user of tenant (handle 1-64 bytes, name 1-200 bytes) -> its id. */
int sl_core_admin_user_create(sl_store_sync_t *db, uint64_t tenant, const char *handle, const char *name,
                              uint64_t *id, char *err, size_t errlen);
/* A new token of user (service_tenant == 0) or a service token of service_tenant (user == 0), written
 * into token (>= 64 bytes). Only its SHA-256 is stored: the token is shown once. */
int sl_core_admin_token_create(sl_store_sync_t *db, uint64_t user, uint64_t service_tenant, char *token,
                               size_t tokcap, char *err, size_t errlen);

/* Revokes a token, given as the token itself or as the hex SHA-256 stored for it: every request
 * with it is refused from now on (tokens are looked up on every call). */
int sl_core_admin_token_revoke(sl_store_sync_t *db, const char *token_or_hash, char *err, size_t errlen);

/* A one-time sign-in link to the owner console for user (docs/console.md): written into url as
 * "<base_url>/console/login?link=<secret>"; it expires after 10 minutes and works once. */
int sl_core_admin_login_link(sl_store_sync_t *db, uint64_t user, const char *base_url, char *url, size_t cap,
                             char *err, size_t errlen);

#endif
