/* Projects: ListProjects and UpdateProject (whose name, icon and colour every public page of the
 * project shows, so a change republishes each of its public sessions). */
#include <stdlib.h>
#include <string.h>

#include "core/internal/owner.h"

enum { P_ID, P_NAME, P_ICON, P_COLOR, P_SESSIONS, P_EXT };
static const char SQL_LIST_PROJECTS[] =
    "SELECT p.id, p.name, p.icon, p.color,"
    " (SELECT COUNT(*) FROM sessions s WHERE s.project_id = p.id AND s.deleted_at IS NULL), p.ext_id"
    " FROM projects p WHERE p.owner_id = ? ORDER BY p.name, p.id";
static const sl_col_t PROJECT_COLS[] = {
    [P_ID] = {"project_id", SL_COL_U64},
    [P_NAME] = {"name", SL_COL_STR},
    [P_ICON] = {"icon", SL_COL_STR},
    [P_COLOR] = {"color", SL_COL_STR},
    [P_SESSIONS] = {"session_count", SL_COL_U64},
    [P_EXT] = {"ext_id", SL_COL_STR},
};

void sl_owner_list_projects(sl_op_t *op)
{
    sl_store_value_t p[] = {sl_store_int((int64_t)op->who.user_id)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_LIST_PROJECTS, p, 1, &err);
    if (r == NULL) {
        sl_op_fail_store(op, &err);
        return;
    }
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 1);
    sl_rpc_pack_str(pk, "projects");
    msgpack_pack_array(pk, r->nrows);
    for (size_t i = 0; i < r->nrows; i++)
        sl_pack_row(pk, r, i, PROJECT_COLS, sizeof(PROJECT_COLS) / sizeof(PROJECT_COLS[0]));
    sl_store_result_free(r);
    sl_op_reply(op);
}

static const char SQL_LOCK_PROJECT[] = "SELECT owner_id FROM projects WHERE id = ? FOR UPDATE";
static const char SQL_UPDATE_PROJECT[] =
    "UPDATE projects SET name = COALESCE(?, name), icon = COALESCE(?, icon),"
    " color = COALESCE(?, color), updated_at = NOW(6) WHERE id = ?";
enum { PS_ID, PS_VERSION, PS_PUBLIC, PS_DIRTY };
static const char SQL_PROJECT_SESSIONS[] =
    "SELECT id, version, is_public, cache_dirty FROM sessions"
    " WHERE project_id = ? AND deleted_at IS NULL ORDER BY id FOR UPDATE";

#define MAX_PROJECT_REPUBLISH 10000

/* Each session that goes through the cache (public, or dirty after a failed publish) is a change of
 * its own through the pipeline (MARK, bump, publish), all in the caller's transaction; with `late`
 * its projection is built after the commit, so memory holds one at a time. */
int sl_fanout_begin(sl_op_t *op, int64_t project_id, const char *skip_id, size_t skip_len, sl_fanout_t *f)
{
    memset(f, 0, sizeof(*f));
    sl_store_value_t p[] = {sl_store_int(project_id)};
    if (sl_op_run(op, SQL_PROJECT_SESSIONS, p, 1, &f->rows) != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < f->rows->nrows; i++) {
        const sl_store_value_t *sid = sl_store_cell(f->rows, i, PS_ID);
        int skip = skip_id && sid->len == skip_len && memcmp(sid->ptr, skip_id, skip_len) == 0;
        n += !skip &&
             (sl_store_cell(f->rows, i, PS_PUBLIC)->i != 0 || sl_store_cell(f->rows, i, PS_DIRTY)->i != 0);
    }
    if (n > MAX_PROJECT_REPUBLISH) {
        sl_op_fail(op, SL_RPC_FAILED_PRECONDITION, "the project has more than %d public sessions",
                   MAX_PROJECT_REPUBLISH);
        return -1;
    }
    f->ch = calloc(n ? n : 1, sizeof(*f->ch));
    if (f->ch == NULL) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    /* The rows are locked (FOR UPDATE above): each change begins before anything changes. */
    for (size_t i = 0; i < f->rows->nrows; i++) {
        const sl_store_value_t *sid = sl_store_cell(f->rows, i, PS_ID);
        int pub = sl_store_cell(f->rows, i, PS_PUBLIC)->i != 0,
            dirty = sl_store_cell(f->rows, i, PS_DIRTY)->i != 0;
        if ((!pub && !dirty) || (skip_id && sid->len == skip_len && memcmp(sid->ptr, skip_id, skip_len) == 0))
            continue;
        sl_locked_t *c = &f->ch[f->n++];
        sl_op_locked_init(c, sid->ptr, sid->len, (uint64_t)sl_store_cell(f->rows, i, PS_VERSION)->i, pub, 0,
                          dirty);
        c->late = 1;
        if (sl_op_change_begin(op, c, 0) != 0)
            return -1;
    }
    return 0;
}

int sl_fanout_prepare(sl_op_t *op, sl_fanout_t *f)
{
    for (size_t k = 0; k < f->n; k++)
        if (sl_op_change_prepare(op, &f->ch[k]) != 0)
            return -1;
    return 0;
}

size_t sl_fanout_publish(sl_op_t *op, sl_fanout_t *f)
{
    size_t unpublished = 0;
    for (size_t k = 0; k < f->n; k++)
        unpublished += sl_op_change_publish(op, &f->ch[k]) != 0;
    return unpublished;
}

void sl_fanout_free(sl_fanout_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        sl_projection_free(&f->ch[i].proj);
    free(f->ch);
    sl_store_result_free(f->rows);
    memset(f, 0, sizeof(*f));
}

/* The project's name, icon and colour are part of every public document of its sessions: each
 * public one is republished (sl_fanout_*) before the call answers. */
void sl_owner_update_project(sl_op_t *op)
{
    const msgpack_object *m = sl_op_req(op);
    int64_t pid;
    const char *name = NULL, *icon = NULL, *color = NULL;
    size_t nlen = 0, ilen = 0, clen = 0;
    if (sl_rpc_get_i64(m, "project_id", 1, 1, INT64_MAX, &pid, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(m, "name", 0, 200, &name, &nlen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "icon", 0, 64, &icon, &ilen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "color", 0, 32, &color, &clen, op->msg, sizeof(op->msg)) < 0) {
        sl_op_fail_field(op);
        return;
    }
    if (name && nlen == 0) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"name\" must not be empty");
        return;
    }
    sl_store_value_t p[] = {sl_store_int(pid)};
    sl_store_result_t *r = NULL;
    sl_fanout_t f;
    memset(&f, 0, sizeof(f));
    if (sl_op_tx_begin(op) != 0 || sl_op_run(op, SQL_LOCK_PROJECT, p, 1, &r) != 0)
        return;
    int mine = r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == op->who.user_id;
    sl_store_result_free(r);
    if (!mine) {
        sl_op_fail(op, SL_RPC_NOT_FOUND, "project not found");
        return;
    }
    if (sl_fanout_begin(op, pid, NULL, 0, &f) != 0)
        goto out;
    sl_store_value_t u[] = {name ? sl_store_text(name, nlen) : sl_store_null(),
                            icon ? sl_store_text(icon, ilen) : sl_store_null(),
                            color ? sl_store_text(color, clen) : sl_store_null(), sl_store_int(pid)};
    if (sl_op_run(op, SQL_UPDATE_PROJECT, u, 4, NULL) != 0 || sl_fanout_prepare(op, &f) != 0 ||
        sl_op_tx_commit(op) != 0)
        goto out;
    if (sl_fanout_publish(op, &f) != 0) {
        sl_op_fail_unpublished(op);
        goto out;
    }
    msgpack_pack_map(sl_op_pk(op), 1);
    sl_pack_kv_u64(sl_op_pk(op), "project_id", (uint64_t)pid);
    sl_op_reply(op);
out:
    sl_fanout_free(&f);
}
