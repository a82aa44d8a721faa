/*
 * Invalidation: the owner side of the protocol in docs/invalidation.md.
 *
 * An owner change that alters what viewers may see runs inside a MariaDB transaction holding the
 * session row lock (SELECT ... FOR UPDATE), so owner changes of one session are serialised and
 * their versions strictly increase. Before it changes anything it writes MARK(new version) to
 * Redis: from then on readers bypass the cache for that session and may not fill it, and any
 * reader's lease taken earlier is void. If Redis does not take the MARK, the caller rolls back:
 * nothing changed, the call fails `unavailable`. After COMMIT it publishes the new projection (or a
 * tombstone) of the new version, which replaces the MARK; older writes are refused by version.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal/projection.h"

#define MARK_TTL_MS 60000

/* Retries after the commit (publish, then node invalidation): about 3 s in all. */
static const unsigned RETRY_MS[] = {0, 20, 50, 100, 200, 400, 800, 1500};
#define RETRIES (sizeof(RETRY_MS) / sizeof(RETRY_MS[0]))

int sl_invalidate_begin(sl_core_t *core, const char *id, size_t idlen, uint64_t version, uint64_t *ahead)
{
    sl_proj_reply_t r;
    sl_await_proj_mark(core->cache, id, idlen, version, MARK_TTL_MS, &r);
    if (r.status != SL_CACHE_OK)
        return -1;
    if (!r.stored) {
        /* Redis holds a greater version than this change's: it is ahead of MariaDB (a database
         * restored from a backup, a failover that lost commits). The caller moves past it. */
        core->stats.versions_behind++;
        *ahead = r.version;
        return 1;
    }
    /* No node may answer from its memory from now on (they will ask Redis and see the MARK). */
    if (core->coh) {
        sl_await_coh_invalidate(core->coh, id, idlen, version, &r);
        if (r.status != SL_CACHE_OK)
            return -1;
    }
    return 0;
}

static const char SQL_VERSION_NOW[] = "SELECT version FROM sessions WHERE id = ?";

/* A publish of `version` was refused because Redis holds `held` (PUBLIC or TOMB, >= version): fine
 * when MariaDB has moved on as far (a later change of the session published first), a failure when
 * Redis is ahead of MariaDB: the session stays cache_dirty and the repair moves its version past. */
static int refused_publish_ok(sl_core_t *core, const char *id, size_t idlen, uint64_t version, uint64_t held)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_VERSION_NOW, p, 1, &err);
    uint64_t now = r && r->nrows == 1 ? (uint64_t)sl_store_cell(r, 0, 0)->i : 0;
    sl_store_result_free(r);
    if (r != NULL && now >= held)
        return 1;
    core->stats.versions_behind++;
    fprintf(
        stderr,
        "shareline: publish of %.*s v%llu refused: Redis holds v%llu, MariaDB v%llu; left to the repair\n",
        (int)idlen, id, (unsigned long long)version, (unsigned long long)held, (unsigned long long)now);
    return 0;
}

/* After the publish: nodes that learnt an entry Redis held before it (a Redis restart can lose the
 * MARK) forget it. Same retries as the publish. */
static int forget_everywhere(sl_core_t *core, const char *id, size_t idlen, uint64_t version)
{
    for (size_t i = 0; i < RETRIES; i++) {
        if (RETRY_MS[i])
            sl_await_sleep(core->loop, RETRY_MS[i]);
        sl_proj_reply_t r;
        sl_await_coh_invalidate(core->coh, id, idlen, version, &r);
        if (r.status == SL_CACHE_OK)
            return 0;
    }
    return -1;
}

int sl_invalidate_finish(sl_core_t *core, const char *id, size_t idlen, const sl_projection_t *p)
{
    if (core->hooks.fail_publish && ++core->finishes == core->hooks.fail_publish)
        return -1; /* test hook (tests/e2e/repair.sh): as if Redis had been unreachable throughout */
    /* Retried for about 3 s: after a Redis restart the MARK may be gone, and a reader could have
     * filled the key from a read made before our COMMIT; our publish (a greater version) is what
     * replaces that entry, so it is worth waiting for the reconnect. */
    for (size_t i = 0; i < RETRIES; i++) {
        if (RETRY_MS[i])
            sl_await_sleep(core->loop, RETRY_MS[i]);
        /* the blobs the recipe names that Redis may lack go first (recipe.c) */
        if (p->found && sl_recipe_store(core, p) != 0)
            continue;
        sl_proj_reply_t r;
        sl_proj_content_t ct;
        char meta[SL_PROJ_META_MAX];
        if (p->found)
            sl_projection_content(p, &ct, meta);
        sl_await_proj_publish(core->cache, id, idlen, p->found ? SL_PROJ_PUBLIC : SL_PROJ_TOMB, p->version,
                              p->tag, p->found ? &ct : NULL, &r);
        if (r.status == SL_CACHE_OK && !r.stored && r.kind != SL_PROJ_MARK)
            return refused_publish_ok(core, id, idlen, p->version, r.version) ? 0 : -1;
        if (r.status == SL_CACHE_OK) {
            /* stored, or refused by the MARK of a later change (which publishes, or is undone and
             * leaves the key to readers that rebuild from MariaDB) */
            core->stats.publishes++;
            return core->coh ? forget_everywhere(core, id, idlen, p->version) : 0;
        }
    }
    return -1;
}
