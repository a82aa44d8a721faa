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
#include <string.h>

#include "core/internal/projection.h"

#define MARK_TTL_MS 60000

/* Retries after the commit (publish, then node invalidation): about 3 s in all. */
static const unsigned RETRY_MS[] = {0, 20, 50, 100, 200, 400, 800, 1500};
#define RETRIES (sizeof(RETRY_MS) / sizeof(RETRY_MS[0]))

int sl_invalidate_begin(sl_core_t *core, const char *id, size_t idlen, uint64_t version)
{
    sl_proj_reply_t r;
    sl_await_proj_mark(core->cache, id, idlen, version, MARK_TTL_MS, &r);
    /* stored == 0 means an entry of a greater version is there: readers are no less protected. */
    if (r.status != SL_CACHE_OK)
        return -1;
    /* No node may answer from its memory from now on (they will ask Redis and see the MARK). */
    if (core->coh) {
        sl_await_coh_invalidate(core->coh, id, idlen, version, &r);
        if (r.status != SL_CACHE_OK)
            return -1;
    }
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
        sl_proj_reply_t r;
        sl_await_proj_publish(core->cache, id, idlen, p->found ? SL_PROJ_PUBLIC : SL_PROJ_TOMB, p->version,
                              p->payload, p->len, &r);
        if (r.status == SL_CACHE_OK) {
            core->stats.publishes++;
            return core->coh ? forget_everywhere(core, id, idlen, p->version) : 0;
        }
    }
    return -1;
}
