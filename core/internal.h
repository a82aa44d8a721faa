/* Internal to core/: what the core's files share. Never included outside core/. */
#ifndef SL_CORE_INTERNAL_H
#define SL_CORE_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "cache/coherence.h"
#include "core/task.h"

struct sl_core {
    uv_loop_t *loop;
    sl_store_t *owner;
    sl_store_t *public_;
    sl_cache_t *cache;
    sl_coh_t *coh; /* node memory (cache/coherence.h), or NULL: always ask Redis */
    sl_core_config_t cfg;
    char *base_url;
    sl_core_stats_t stats;
    uv_timer_t repair_timer;
    int repairing; /* a repair task is running */
    unsigned finishes; /* sl_invalidate_finish calls (for cfg.test_fail_publish) */
};

/* ---- awaiting the callback modules from inside a task (await.c) ---- */

sl_store_conn_t *sl_await_acquire(sl_store_t *s, sl_store_error_t *err);
/* Returns the result (caller frees) or NULL with err filled. */
sl_store_result_t *sl_await_exec(sl_store_conn_t *c, const char *sql, const sl_store_value_t *params, size_t n,
                                 sl_store_error_t *err);
sl_store_result_t *sl_await_query(sl_store_t *s, const char *sql, const sl_store_value_t *params, size_t n,
                                  sl_store_error_t *err);

/* A projection reply whose payload (if any) was copied: free `payload` with free(). */
typedef struct sl_proj_result {
    sl_proj_reply_t r;
    void *payload;
} sl_proj_result_t;

void sl_await_proj_get(sl_cache_t *c, const char *id, size_t idlen, sl_proj_result_t *out);
void sl_await_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_reply_t *out);
void sl_await_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, const void *payload, size_t len, sl_proj_reply_t *out);
void sl_await_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_reply_t *out);
void sl_await_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           const void *payload, size_t len, sl_proj_reply_t *out);
void sl_await_sleep(uv_loop_t *loop, unsigned ms);
/* sl_coh_invalidate, awaited; out->status SL_CACHE_OK when every node forgot id. */
void sl_await_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version, sl_proj_reply_t *out);

/* ---- the projection (projection.c) ---- */

/* A built projection: the payload stored in Redis (msgpack map, see core.h), malloc'd. */
typedef struct sl_projection {
    int found;        /* 0: the session is not visible (TOMB) */
    uint64_t version;
    char *payload;
    size_t len;
} sl_projection_t;

/* Which rows a projection is built from: the public views (public account, or inside an owner
 * transaction) or the viewer views (preview: the same filtering minus "is public"). */
typedef enum { SL_VIEW_PUBLIC, SL_VIEW_VIEWER } sl_view_t;

/* Reads the rows (one statement, so one consistent snapshot) and builds the projection. Runs inside
 * a task. conn may be NULL (then a connection of `store` is used for the one statement). Returns 0,
 * or -1 with err filled (store errors only). */
int sl_projection_load(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view, const char *id,
                       size_t idlen, sl_projection_t *out, sl_store_error_t *err);
void sl_projection_free(sl_projection_t *p);

/* ---- invalidation (publish.c) ---- */

/* Inside an owner transaction that is about to change what viewers may see of session `id`, whose
 * new version will be `version`: writes the MARK. Returns 0, or -1 when Redis did not take it (the
 * caller must roll back and answer `unavailable`). */
int sl_invalidate_begin(sl_core_t *core, const char *id, size_t idlen, uint64_t version);
/* After COMMIT: publishes the new projection (or tombstone), retrying for a bounded time. Returns 0,
 * or -1 if Redis could not be updated (the MARK stays; readers keep reading MariaDB). */
int sl_invalidate_finish(sl_core_t *core, const char *id, size_t idlen, const sl_projection_t *p);

/* ---- owner operations ---- */

/* Who is calling: resolved from the bearer token (auth.c). */
typedef struct sl_principal {
    uint64_t tenant_id;
    uint64_t user_id; /* the user acted for (a service token's "as_user") */
    int service;      /* authenticated by a tenant's service token */
} sl_principal_t;

/* Inside a task: resolves the call's bearer token. Returns 0, or answers the call (401/503) and
 * returns -1. */
int sl_auth_principal(sl_core_t *core, sl_rpc_call_t *call, sl_principal_t *out);

/* Maps a store error to an rpc answer (unavailable / internal). */
void sl_fail_store(sl_rpc_call_t *call, const sl_store_error_t *err);

int sl_sessions_register(sl_core_t *core, sl_rpc_server_t *srv);
int sl_public_register(sl_core_t *core, sl_rpc_server_t *srv);

/* Monotonic-enough random 64-bit value from the OS (getrandom). */
uint64_t sl_random_u64(void);

#endif
