/*
 * The cache repair (docs/invalidation.md, "Repair"): sessions whose publish failed after their
 * commit stay cache_dirty; every node's timer republishes those dirty for more than 5 s, through
 * the same pipeline as an owner change.
 */
#include "core/internal/owner.h"

/* At most this many sessions per tick, and no new one once a tick has run this long: the repair
 * never takes more than a slice of the node, whatever is dirty. */
#define REPAIR_BATCH     20
#define REPAIR_BUDGET_MS 1000

enum { DIRTY_ID, DIRTY_OWNER };
static const char SQL_DIRTY[] = "SELECT id, owner_id FROM sessions WHERE cache_dirty = 1"
                                " AND updated_at < NOW(6) - INTERVAL 5 SECOND"
                                " AND (cache_repair_after IS NULL OR cache_repair_after <= NOW(6))"
                                " ORDER BY updated_at LIMIT 20";
/* A failed repair waits 2^attempts seconds (at most 10 minutes) before the next one. */
static const char SQL_BACKOFF[] =
    "UPDATE sessions SET cache_repair_attempts = LEAST(cache_repair_attempts + 1, 30),"
    " cache_repair_after = NOW(6) + INTERVAL LEAST(600, POW(2, cache_repair_attempts + 1))"
    " SECOND WHERE id = ?";

/* Republishes each dirty session at a new version, under its row lock, exactly as an owner change
 * would (MARK, bump, build, COMMIT, publish, clean). Deleted sessions are included (a tombstone). */
static void repair_task(void *arg)
{
    sl_core_t *core = arg;
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_DIRTY, NULL, 0, &err);
    uint64_t start = uv_now(core->loop);
    for (size_t i = 0; r && i < r->nrows && i < REPAIR_BATCH && uv_now(core->loop) - start < REPAIR_BUDGET_MS;
         i++) {
        const sl_store_value_t *id = sl_store_cell(r, i, DIRTY_ID);
        sl_op_t op = {.core = core, .call = NULL};
        op.who.user_id = (uint64_t)sl_store_cell(r, i, DIRTY_OWNER)->i;
        sl_locked_t s;
        int ok = sl_op_tx_begin(&op) == 0 && sl_op_lock_session(&op, id->ptr, id->len, 1, &s) == 0 &&
                 (!s.exists || !s.dirty || sl_op_settle(&op, &s) == 0) && !s.unsure; /* unsure: Redis down */
        if (ok && s.exists && s.dirty)
            core->stats.cache_repairs++;
        sl_op_tx_end(&op);
        if (!ok) { /* tried again later, after a growing pause: never in a tight loop */
            sl_store_value_t p[] = {sl_store_text(id->ptr, id->len)};
            sl_store_result_free(sl_await_query(core->owner, SQL_BACKOFF, p, 1, &err));
        }
        sl_op_clean_pending(&op);
    }
    sl_store_result_free(r);
    sl_scan_pass(core);
    sl_console_sweep(core);
    core->repairing = 0;
}

static void on_repair_timer(uv_timer_t *t)
{
    sl_core_t *core = t->data;
    if (core->repairing || !sl_store_ready(core->owner))
        return;
    core->repairing = 1;
    if (sl_task_spawn(repair_task, core) != 0)
        core->repairing = 0;
}

void sl_core_repair_start(sl_core_t *core, unsigned interval_ms)
{
    core->repair_started = 1;
    uv_timer_init(core->loop, &core->repair_timer);
    core->repair_timer.data = core;
    uv_timer_start(&core->repair_timer, on_repair_timer, interval_ms, interval_ms);
}
