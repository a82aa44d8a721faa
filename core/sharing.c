/*
 * What viewers may see: SetVisibility (share, revoke), SetExchangesHidden (the eye toggle),
 * GetShareSettings (the share dialog) and PreviewAsViewer (exactly the bytes a viewer gets).
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal/owner.h"

/* ---- SetVisibility ---- */

static const char SQL_SET_PUBLIC[] = "UPDATE sessions SET is_public = ? WHERE id = ?";

void sl_owner_set_visibility(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    int want;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    if (sl_rpc_get_bool(sl_op_req(op), "public", 1, &want, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return;
    }
    sl_locked_t s;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        return;
    uint64_t version = s.version;
    if (s.is_public != want || !want) {
        /* A revoke always goes through the cache, even when MariaDB already says private: Redis may
         * be ahead of MariaDB (a restore) and still hold the page; the tombstone replaces it. */
        if (sl_op_change_begin(op, &s, 1) != 0)
            return;
        sl_store_value_t p[] = {sl_store_int(want), sl_store_text(id, idlen)};
        if (sl_op_run(op, SQL_SET_PUBLIC, p, 2, NULL) != 0 || sl_op_change_commit(op, &s) != 0)
            return;
        version = s.new_version;
    } else if (s.dirty) {
        if (sl_op_settle(op, &s) != 0)
            return;
        version = s.new_version;
    }
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 3);
    sl_pack_kv_bool(pk, "public", want);
    sl_op_pack_share_url(op, id, idlen);
    sl_pack_kv_u64(pk, "version", version);
    sl_op_reply(op);
}

/* ---- SetExchangesHidden ---- */

#define MAX_IDS_PER_CALL 10000

/* The named exchanges' rows, by primary key, IN_BATCH ids a statement (a shorter batch repeats
 * its last id): a call costs the ids it names, not the session's size. */
enum { LIVE_ID, LIVE_HIDDEN };
#define IN_BATCH 64
#define Q8       "?,?,?,?,?,?,?,?"
static const char SQL_LIVE_EXCHANGES[] =
    "SELECT id, hidden FROM exchanges WHERE session_id = ? AND deleted_at IS NULL AND id IN (" Q8 "," Q8
    "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 ") ORDER BY id";
static const char SQL_SET_HIDDEN[] = "UPDATE exchanges SET hidden = ?, updated_at = NOW(6)"
                                     " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
static const char SQL_HIDDEN_COUNT[] = "SELECT COUNT(*) FROM exchanges"
                                       " WHERE session_id = ? AND hidden = 1 AND deleted_at IS NULL";

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void sl_owner_set_exchanges_hidden(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    int hidden;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    if (sl_rpc_get_bool(sl_op_req(op), "hidden", 1, &hidden, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return;
    }
    const msgpack_object *ids = sl_rpc_field(sl_op_req(op), "exchange_ids");
    if (ids == NULL || ids->type != MSGPACK_OBJECT_ARRAY || ids->via.array.size == 0 ||
        ids->via.array.size > MAX_IDS_PER_CALL) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT,
                   "field \"exchange_ids\" must be an array of 1 to %d exchange ids", MAX_IDS_PER_CALL);
        return;
    }
    size_t n = ids->via.array.size;
    int64_t *want = malloc(n * sizeof(*want));
    if (want == NULL) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *o = &ids->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"exchange_ids\" must hold positive integers");
            free(want);
            return;
        }
        want[i] = (int64_t)o->via.u64;
    }
    qsort(want, n, sizeof(*want), cmp_i64);

    sl_store_result_t *r = NULL;
    int64_t *change = NULL;
    size_t nchange = 0;
    sl_locked_t s;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        goto out;
    change = malloc(n * sizeof(*change));
    if (change == NULL) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t nu = 0; /* want[] sorted and without repeats */
    for (size_t i = 0; i < n; i++)
        if (i == 0 || want[i] != want[i - 1])
            want[nu++] = want[i];
    for (size_t at = 0; at < nu; at += IN_BATCH) {
        size_t k = nu - at < IN_BATCH ? nu - at : IN_BATCH;
        sl_store_value_t p[1 + IN_BATCH];
        p[0] = sl_store_text(id, idlen);
        for (size_t j = 0; j < IN_BATCH; j++)
            p[1 + j] = sl_store_int(want[at + (j < k ? j : k - 1)]);
        sl_store_result_free(r);
        r = NULL;
        if (sl_op_run(op, SQL_LIVE_EXCHANGES, p, 1 + IN_BATCH, &r) != 0)
            goto out;
        for (size_t j = 0; j < k; j++) {
            size_t row = sl_store_find_int(r, LIVE_ID, want[at + j]);
            if (row == r->nrows) {
                sl_op_fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session",
                           (long long)want[at + j]);
                goto out;
            }
            if ((sl_store_cell(r, row, LIVE_HIDDEN)->i != 0) != hidden)
                change[nchange++] = want[at + j];
        }
    }
    uint64_t version = s.version;
    int publish = nchange > 0 || s.dirty; /* nothing to change, but an earlier publish failed */
    if (publish) {
        if (sl_op_change_begin(op, &s, 0) != 0)
            goto out;
        for (size_t i = 0; i < nchange; i++) {
            sl_store_value_t p[] = {sl_store_int(hidden), sl_store_text(id, idlen), sl_store_int(change[i])};
            if (sl_op_run(op, SQL_SET_HIDDEN, p, 3, NULL) != 0)
                goto out;
        }
    }
    sl_store_result_free(r);
    r = NULL;
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (sl_op_run(op, SQL_HIDDEN_COUNT, p, 1, &r) != 0)
            goto out;
    }
    int64_t hidden_count = sl_store_cell(r, 0, 0)->i;
    if (publish) {
        sl_op_touch(&s, change, nchange, 1, 0);
        if (sl_op_change_commit(op, &s) != 0)
            goto out;
        version = s.new_version;
    }
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 2);
    sl_pack_kv_u64(pk, "hidden_count", (uint64_t)hidden_count);
    sl_pack_kv_u64(pk, "version", version);
    sl_op_reply(op);
out:
    sl_store_result_free(r);
    free(change);
    free(want);
}

/* ---- GetShareSettings ---- */

enum { SET_OWNER, SET_PUBLIC, SET_HIDDEN, SET_EXCHANGES, SET_REDACTED };
/* findings_redacted: the redacted findings in what the public view shows (the title, and exchanges
 * neither hidden nor deleted) */
static const char SQL_SETTINGS[] =
    "SELECT s.owner_id, s.is_public,"
    " (SELECT COUNT(*) FROM exchanges e WHERE e.session_id = s.id AND e.hidden = 1 AND e.deleted_at IS NULL),"
    " (SELECT COUNT(*) FROM exchanges e WHERE e.session_id = s.id AND e.deleted_at IS NULL),"
    " (SELECT COUNT(*) FROM session_findings f LEFT JOIN exchanges e ON e.session_id = f.session_id"
    "  AND e.id = f.exchange_id WHERE f.session_id = s.id AND f.revealed = 0"
    "  AND (f.exchange_id IS NULL OR (e.deleted_at IS NULL AND e.hidden = 0)))"
    " FROM sessions s WHERE s.id = ? AND s.deleted_at IS NULL";

void sl_owner_get_share_settings(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_SETTINGS, p, 1, &err);
    if (r == NULL) {
        sl_op_fail_store(op, &err);
        return;
    }
    if (r->nrows != 1 || (uint64_t)sl_store_cell(r, 0, SET_OWNER)->i != op->who.user_id) {
        sl_store_result_free(r);
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 5);
    sl_pack_kv_bool(pk, "public", sl_store_cell(r, 0, SET_PUBLIC)->i != 0);
    sl_op_pack_share_url(op, id, idlen);
    sl_pack_kv_u64(pk, "hidden_count", (uint64_t)sl_store_cell(r, 0, SET_HIDDEN)->i);
    sl_pack_kv_u64(pk, "exchange_count", (uint64_t)sl_store_cell(r, 0, SET_EXCHANGES)->i);
    sl_pack_kv_u64(pk, "findings_redacted", (uint64_t)sl_store_cell(r, 0, SET_REDACTED)->i);
    sl_store_result_free(r);
    sl_op_reply(op);
}

/* ---- PreviewAsViewer ---- */

static const char SQL_SESSION_OWNER[] = "SELECT owner_id FROM sessions WHERE id = ? AND deleted_at IS NULL";

void sl_owner_preview_as_viewer(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_tx_begin(op) != 0 || sl_op_run(op, SQL_SESSION_OWNER, p, 1, &r) != 0)
        return;
    int mine = r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == op->who.user_id;
    sl_store_result_free(r);
    if (!mine) {
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    /* The viewer views: the public filtering minus "is public", so the document is the one the
     * public endpoint serves (or would serve once shared), byte for byte. */
    sl_projection_t proj;
    sl_store_error_t err;
    int rc = sl_projection_load(op->core, op->core->owner, op->conn, SL_VIEW_VIEWER, id, idlen, SL_PROJ_PLAIN,
                                &proj, &err);
    if (rc == -2) {
        sl_op_fail(op, SL_RPC_FAILED_PRECONDITION, "%s", err.message);
        return;
    }
    if (rc != 0) {
        sl_op_fail_store(op, &err);
        return;
    }
    sl_op_tx_end(op);
    /* The projection's representations, as viewers get them. */
    if (!proj.found) {
        sl_projection_free(&proj);
        sl_op_fail(op, SL_RPC_INTERNAL, "internal error (preview)");
        return;
    }
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 2);
    sl_pack_kv_str(pk, "document", proj.rep[SL_REP_JSON], proj.rep_len[SL_REP_JSON]);
    sl_pack_kv_str(pk, "html", proj.rep[SL_REP_HTML], proj.rep_len[SL_REP_HTML]);
    sl_projection_free(&proj);
    sl_op_reply(op);
}
