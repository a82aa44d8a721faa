/*
 * The owner methods' dispatch: every method of the owner service (rpc.h) runs as a task that first
 * resolves the caller's bearer token, then runs the method's straight-line code (one file per
 * capability: sync.c, append.c, sharing.c, edits.c, reads.c, search.c, projects.c), then clears the cache
 * flag its change left pending. Which function implements which method is this table.
 */
#include <stdlib.h>

#include "core/internal/owner.h"

static const sl_op_fn methods[SL_M_OWNER_COUNT] = {
    [SL_M_SYNC_SESSION] = sl_owner_sync_session,
    [SL_M_APPEND_EXCHANGES] = sl_owner_append_exchanges,
    [SL_M_GET_SESSION] = sl_owner_get_session,
    [SL_M_LIST_SESSIONS] = sl_owner_list_sessions,
    [SL_M_SET_VISIBILITY] = sl_owner_set_visibility,
    [SL_M_UPDATE_SESSION_TITLE] = sl_owner_update_session_title,
    [SL_M_UPDATE_EXCHANGE_TITLE] = sl_owner_update_exchange_title,
    [SL_M_SET_EXCHANGES_HIDDEN] = sl_owner_set_exchanges_hidden,
    [SL_M_DELETE_EXCHANGE] = sl_owner_delete_exchange,
    [SL_M_DELETE_SESSION] = sl_owner_delete_session,
    [SL_M_GET_SHARE_SETTINGS] = sl_owner_get_share_settings,
    [SL_M_PREVIEW_AS_VIEWER] = sl_owner_preview_as_viewer,
    [SL_M_EXPORT_SESSION] = sl_owner_export_session,
    [SL_M_LIST_PROJECTS] = sl_owner_list_projects,
    [SL_M_UPDATE_PROJECT] = sl_owner_update_project,
    [SL_M_SESSION_SIZES] = sl_owner_session_sizes,
    [SL_M_LIST_FINDINGS] = sl_owner_list_findings,
    [SL_M_RESOLVE_FINDING] = sl_owner_resolve_finding,
};

typedef struct owner_call {
    sl_op_t op;
    sl_op_fn fn;
} owner_call_t;

/* Bodies up to this size are decoded on the loop (a thread hop costs more than the work). */
#define INLINE_BODY (64u << 10)

static void make_body(void *arg)
{
    sl_rpc_load_make(arg);
}

/* The request's body is read (inflated, parsed, checked) only now, once the token is known to be
 * good: an anonymous request costs its headers and one token lookup. */
static int load_request(sl_op_t *op)
{
    if (sl_rpc_load_take(op->call) != 0)
        return -1;
    if (sl_rpc_load_size(op->call) > INLINE_BODY)
        sl_await_work(op->core->loop, make_body, op->call);
    else
        sl_rpc_load_make(op->call);
    return sl_rpc_load_finish(op->call);
}

static void owner_task(void *arg)
{
    owner_call_t *oc = arg;
    sl_op_t *op = &oc->op;
    op->core->stats.owner_calls++;
    if (sl_auth_token(op->core, op->call, &op->who) == 0 && load_request(op) == 0 &&
        sl_auth_as_user(op->core, op->call, &op->who) == 0) {
        oc->fn(op);
        if (!op->answered) /* every path answers; this guards against a future one that doesn't */
            sl_op_fail(op, SL_RPC_INTERNAL, "internal error: no answer");
        sl_op_tx_end(op);
        sl_op_clean_pending(op); /* after the answer: the caller does not wait for it */
    } else {
        op->core->stats.owner_errors++;
    }
    sl_op_tx_end(op);
    free(oc);
}

static void on_owner_call(sl_rpc_call_t *call, void *data)
{
    const sl_core_method_t *m = data;
    owner_call_t *oc = calloc(1, sizeof(*oc));
    if (oc == NULL) {
        sl_rpc_fail(call, SL_RPC_INTERNAL, "internal error");
        return;
    }
    oc->op.core = m->core;
    oc->op.call = call;
    oc->fn = methods[m->id];
    if (sl_task_spawn(owner_task, oc) != 0) {
        free(oc);
        sl_rpc_fail(call, SL_RPC_RESOURCE_EXHAUSTED, "server overloaded, retry later");
    }
}

int sl_owner_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    for (int i = 0; i < SL_M_OWNER_COUNT; i++) {
        core->methods[i].core = core;
        core->methods[i].id = (sl_rpc_method_id_t)i;
        if (methods[i] == NULL ||
            sl_rpc_register(srv, sl_rpc_method_name(i), on_owner_call, &core->methods[i]) != 0)
            return -1;
    }
    return 0;
}
