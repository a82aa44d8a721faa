/*
 * Internal to core/: the core object and what every file of the core shares (awaiting the
 * callback modules from a task, the caller's identity, tokens). Never included outside core/
 * (tests of the core's internals aside).
 */
#ifndef SL_CORE_INTERNAL_CORE_H
#define SL_CORE_INTERNAL_CORE_H

#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "core/internal/piece_cache.h"
#include "core/internal/task.h"

/* Test hooks, read from the environment by sl_core_open() (core.c); zero in production. */
typedef struct sl_core_hooks {
    unsigned fill_delay_ms; /* SHARELINE_TEST_FILL_DELAY_MS: a reader waits this long before its
                               cache fill (tests/e2e/stale_writeback.sh) */
    unsigned fail_publish;  /* SHARELINE_TEST_FAIL_PUBLISH: the publish after the Nth commit (1-based)
                               fails (tests/e2e/repair.sh) */
} sl_core_hooks_t;

/* What an owner method registration carries to the dispatcher (owner.c). */
typedef struct sl_core_method {
    struct sl_core *core;
    sl_rpc_method_id_t id;
} sl_core_method_t;

struct sl_core {
    uv_loop_t *loop;
    sl_store_t *owner;
    sl_store_t *public_;
    sl_cache_t *cache;
    sl_coh_t *coh; /* node memory (the cache module's coherence), or NULL: always ask Redis */
    sl_core_config_t cfg;
    sl_pcache_t *pieces; /* the exchange pieces this node holds (piece_cache.h) */
    sl_core_hooks_t hooks;
    char *base_url;
    sl_core_stats_t stats;
    sl_core_method_t methods[SL_M_OWNER_COUNT];
    sl_core_method_t console_methods[4]; /* SignIn, SignOut, WhoAmI, CreateLoginLink (console.c) */
    uint64_t console_swept_ms;           /* when sl_console_sweep last ran (loop time) */
    uv_timer_t repair_timer;
    int repair_started;
    int repairing;     /* a repair task is running */
    unsigned finishes; /* sl_invalidate_finish calls (for hooks.fail_publish) */
};

/* ---- awaiting the callback modules from inside a task (await.c) ---- */

sl_store_conn_t *sl_await_acquire(sl_store_t *s, sl_store_error_t *err);
/* Returns the result (caller frees) or NULL with err filled. */
sl_store_result_t *sl_await_exec(sl_store_conn_t *c, const char *sql, const sl_store_value_t *params,
                                 size_t n, sl_store_error_t *err);
sl_store_result_t *sl_await_query(sl_store_t *s, const char *sql, const sl_store_value_t *params, size_t n,
                                  sl_store_error_t *err);

/* A projection reply whose part and meta (if any) were copied: free `payload` with free(). */
typedef struct sl_proj_result {
    sl_proj_reply_t r;
    void *payload;
} sl_proj_result_t;

void sl_await_proj_get(sl_cache_t *c, const char *id, size_t idlen, unsigned part, sl_proj_result_t *out);
/* kind and version only (the payload is not read) */
void sl_await_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_reply_t *out);
void sl_await_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_reply_t *out);
void sl_await_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, uint64_t tag, const sl_proj_content_t *content,
                        sl_proj_reply_t *out);
void sl_await_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_reply_t *out);
void sl_await_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           uint64_t tag, const sl_proj_content_t *content, sl_proj_reply_t *out);
void sl_await_proj_unmark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version,
                          sl_proj_reply_t *out);
void sl_await_proj_drop(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, uint64_t tag,
                        sl_proj_reply_t *out);
void sl_await_sleep(uv_loop_t *loop, unsigned ms);
/* Runs fn(arg) on libuv's thread pool and waits for it: CPU-heavy work (importing, rendering,
 * compressing, decoding a large body) that must not stall the loop. fn must touch nothing the loop
 * may touch meanwhile. */
void sl_await_work(uv_loop_t *loop, void (*fn)(void *), void *arg);
/* sl_coh_invalidate, awaited; out->status SL_CACHE_OK when every node forgot id. */
void sl_await_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version,
                             sl_proj_reply_t *out);

/* ---- the caller ---- */

/* Who is calling: resolved from the bearer token (auth.c). */
typedef struct sl_principal {
    uint64_t tenant_id;
    uint64_t user_id;  /* the user acted for (a service token's "as_user") */
    int service;       /* authenticated by a tenant's service token */
    int console;       /* authenticated by a console session ("slc_…", console_tokens) */
    uint64_t token_id; /* the bearer token's row (tokens.id); 0 for a console session */
} sl_principal_t;

/* Inside a task: resolves the call's bearer token, before its body is read. Returns 0, or answers
 * the call (401/503) and returns -1. */
int sl_auth_token(sl_core_t *core, sl_rpc_call_t *call, sl_principal_t *out);
/* After the body is loaded: a service token names the user it acts for ("as_user", of its own
 * tenant). Returns 0, or answers the call and returns -1. */
int sl_auth_as_user(sl_core_t *core, sl_rpc_call_t *call, sl_principal_t *out);

/* Maps a store error to an rpc answer (unavailable / internal). */
void sl_fail_store(sl_rpc_call_t *call, const sl_store_error_t *err);

/* Registers the owner methods (owner.c), the public read (public.c) and the console's sign-in
 * (console.c). */
int sl_owner_register(sl_core_t *core, sl_rpc_server_t *srv);
int sl_console_register(sl_core_t *core, sl_rpc_server_t *srv);
/* Inside a task: deletes expired console sessions and sign-in links (at most once a minute). */
void sl_console_sweep(sl_core_t *core);

/* The console (docs/console.md): a session lasts 12 hours, a sign-in link 10 minutes. */
#define SL_CONSOLE_SESSION_TTL_S 43200u
#define SL_CONSOLE_LINK_TTL_S    600u
int sl_public_register(sl_core_t *core, sl_rpc_server_t *srv);

/* A random 64-bit value from the OS (getrandom). */
uint64_t sl_random_u64(void);

/* ---- tokens (auth.c) ---- */

/* SHA-256 of a token as stored in tokens.token_hash. */
void sl_token_hash(const char *token, size_t len, unsigned char out[32]);
/* 1 when stored[0..len) is exactly hash (32 bytes); constant time in the bytes' values. */
int sl_token_hash_equal(const void *stored, size_t len, const unsigned char hash[32]);
/* Writes a new random token ("slt_" + 43 base64url chars) into out (>= 64 bytes). Returns 0 or -1. */
int sl_token_new(char *out, size_t outlen);
/* The same with another prefix of 4 characters: "slc_" (console sessions), "sll_" (sign-in links). */
int sl_token_new_prefixed(char *out, size_t outlen, const char *prefix);

#endif
