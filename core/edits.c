/* What the owner can edit: session and exchange titles, deleting an exchange, deleting the session. */
#include <stdlib.h>
#include <string.h>

#include "core/internal/owner.h"

static const char SQL_EXCHANGE_LIVE[] = "SELECT COUNT(*) FROM exchanges"
                                        " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
static const char SQL_EXCHANGE_REMOVE[] =
    "UPDATE exchanges SET deleted_at = NOW(6), prompt = '', response = '', title = NULL, removed_by_sync = 0,"
    " public_prompt = NULL, public_response = NULL, public_title = NULL, redaction = NULL,"
    " pieces = NULL, pieces_key = NULL, updated_at = NOW(6) WHERE session_id = ? AND id = ? AND deleted_at "
    "IS NULL";
static const char SQL_EXCHANGE_FINDINGS_REMOVE[] =
    "DELETE FROM session_findings WHERE session_id = ? AND exchange_id = ?";

/* *found = 1 when the session has exchange ex and it is not deleted. Answers on error. */
static int exchange_live(sl_op_t *op, const char *id, size_t idlen, int64_t ex, int *found)
{
    sl_store_value_t q[] = {sl_store_text(id, idlen), sl_store_int(ex)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_EXCHANGE_LIVE, q, 2, &r) != 0)
        return -1;
    *found = sl_store_cell(r, 0, 0)->i == 1;
    sl_store_result_free(r);
    return 0;
}

int sl_op_remove_exchange(sl_op_t *op, const char *id, size_t idlen, int64_t exchange_id)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(exchange_id)};
    if (sl_op_run(op, SQL_EXCHANGE_FINDINGS_REMOVE, p, 2, NULL) != 0)
        return -1;
    return sl_op_run(op, SQL_EXCHANGE_REMOVE, p, 2, NULL);
}

/* ---- UpdateSessionTitle, UpdateExchangeTitle ---- */

static const char SQL_SET_SESSION_TITLE[] = "UPDATE sessions SET title = ? WHERE id = ?";
static const char SQL_SET_EXCHANGE_TITLE[] = "UPDATE exchanges SET title = ?, updated_at = NOW(6)"
                                             " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";

void sl_owner_update_session_title(sl_op_t *op)
{
    const char *id, *title;
    size_t idlen, tlen;
    if (sl_op_session_id(op, &id, &idlen) != 0 || sl_op_title(op, &title, &tlen) != 0)
        return;
    sl_locked_t s;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0 ||
        sl_op_change_begin(op, &s, 0) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(title, tlen), sl_store_text(id, idlen)};
    s.scan |= SL_SCAN_TITLE;
    sl_op_touch(&s, NULL, 0, 1, 0); /* no exchange: the glue only */
    if (sl_op_run(op, SQL_SET_SESSION_TITLE, p, 2, NULL) != 0 || sl_op_change_commit(op, &s) != 0)
        return;
    sl_op_reply_version(op, s.new_version);
}

void sl_owner_update_exchange_title(sl_op_t *op)
{
    const char *id, *title;
    size_t idlen, tlen;
    int64_t ex;
    if (sl_op_session_id(op, &id, &idlen) != 0 || sl_op_exchange_id(op, &ex) != 0 ||
        sl_op_title(op, &title, &tlen) != 0)
        return;
    sl_locked_t s;
    int found;
    /* The exchange is checked under the row lock before anything touches Redis: a call that fails on
     * its arguments leaves no MARK behind. */
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0 ||
        exchange_live(op, id, idlen, ex, &found) != 0)
        return;
    if (!found) {
        sl_op_fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session", (long long)ex);
        return;
    }
    sl_store_value_t p[] = {tlen ? sl_store_text(title, tlen) : sl_store_null(), sl_store_text(id, idlen),
                            sl_store_int(ex)};
    s.scan |= SL_SCAN_EXCHANGES;
    sl_op_touch(&s, &ex, 1, 1, 0);
    if (sl_op_change_begin(op, &s, 0) != 0 || sl_op_run(op, SQL_SET_EXCHANGE_TITLE, p, 3, NULL) != 0 ||
        sl_op_change_commit(op, &s) != 0)
        return;
    sl_op_reply_version(op, s.new_version);
}

/* ---- DeleteExchange, DeleteSession ---- */

/* Deleted means gone, in Redis too: the keys of the pieces the deleted exchanges had, whose blobs
 * are deleted from Redis after the commit (recipe.c). */
static const char SQL_PIECE_KEY[] = "SELECT pieces_key FROM exchanges WHERE session_id = ? AND id = ?";
static const char SQL_PIECE_KEYS[] =
    "SELECT pieces_key FROM exchanges WHERE session_id = ? AND pieces_key IS NOT NULL";

/* The keys in r's first column (16 bytes each; others skipped), malloc'd, or NULL (none). */
static unsigned char (*piece_keys(const sl_store_result_t *r, size_t *n))[16]
{
    *n = 0;
    unsigned char(*k)[16] = r->nrows ? malloc(r->nrows * 16) : NULL;
    for (size_t i = 0; k && i < r->nrows; i++) {
        const sl_store_value_t *v = sl_store_cell(r, i, 0);
        if ((v->type == SL_STORE_BLOB || v->type == SL_STORE_TEXT) && v->len == 16)
            memcpy(k[(*n)++], v->ptr, 16);
    }
    return k;
}

static const char SQL_DELETE_SESSION[] =
    "UPDATE sessions SET deleted_at = NOW(6), is_public = 0, title = '', public_title = NULL WHERE id = ?";
static const char SQL_WIPE_EXCHANGES[] = "UPDATE exchanges SET deleted_at = COALESCE(deleted_at, NOW(6)), "
                                         "prompt = '', response = '', title = NULL, removed_by_sync = 0,"
                                         " public_prompt = NULL, public_response = NULL, public_title = NULL,"
                                         " redaction = NULL, default_title = '', pieces = NULL,"
                                         " pieces_key = NULL, updated_at = NOW(6) WHERE session_id = ?";
static const char SQL_WIPE_FINDINGS[] = "DELETE FROM session_findings WHERE session_id = ?";
static const char SQL_WIPE_UPLOAD[] = "DELETE FROM session_uploads WHERE session_id = ?";
static const char SQL_WIPE_HISTORY[] = "DELETE FROM session_upload_history WHERE session_id = ?";
static const char SQL_WIPE_TAIL[] = "DELETE FROM session_upload_tail WHERE session_id = ?";
static const char SQL_WIPE_CHUNKS[] = "DELETE FROM session_chunks WHERE session_id = ?";

void sl_owner_delete_exchange(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    int64_t ex;
    if (sl_op_session_id(op, &id, &idlen) != 0 || sl_op_exchange_id(op, &ex) != 0)
        return;
    sl_locked_t s;
    int found;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0 ||
        exchange_live(op, id, idlen, ex, &found) != 0)
        return;
    if (!found) {
        /* Perhaps deleted by an earlier call whose publish failed: make the cache right first. */
        if (sl_op_settle(op, &s) == 0)
            sl_op_fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session", (long long)ex);
        return;
    }
    sl_store_value_t q[] = {sl_store_text(id, idlen), sl_store_int(ex)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_PIECE_KEY, q, 2, &r) != 0)
        return;
    size_t nkeys;
    unsigned char(*keys)[16] = piece_keys(r, &nkeys);
    sl_store_result_free(r);
    sl_op_touch(&s, &ex, 1, 1, 0);
    if (sl_op_change_begin(op, &s, 0) != 0 || sl_op_remove_exchange(op, id, idlen, ex) != 0 ||
        sl_op_change_commit(op, &s) != 0) {
        free(keys);
        return;
    }
    if (nkeys)
        sl_recipe_forget(op->core, (const unsigned char(*)[16])keys, nkeys);
    free(keys);
    sl_op_reply_version(op, s.new_version);
}

static const char SQL_SESSION_EXT[] = "SELECT p.ext_id FROM sessions s JOIN projects p ON p.id = s.project_id"
                                      " WHERE s.id = ?";

void sl_owner_delete_session(sl_op_t *op)
{
    const char *id, *ext = NULL;
    size_t idlen, extlen = 0;
    if (sl_op_session_id(op, &id, &idlen) != 0 || sl_op_project_ext(op, &ext, &extlen) < 0)
        return;
    sl_locked_t s;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        return;
    if (ext) {
        sl_store_value_t q[] = {sl_store_text(id, idlen)};
        sl_store_result_t *r;
        if (sl_op_run(op, SQL_SESSION_EXT, q, 1, &r) != 0)
            return;
        int ok = r->nrows == 1 && sl_ext_matches(sl_store_cell(r, 0, 0), ext, extlen);
        sl_store_result_free(r);
        if (!ok) {
            sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
            return;
        }
    }
    if (sl_op_change_begin(op, &s, 0) != 0)
        return;
    /* Deleted means gone: the text of every exchange, its pieces (in MariaDB and Redis) and the
     * upload are wiped, not only flagged. A public session's entry becomes a tombstone (the public
     * views no longer show it). */
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_PIECE_KEYS, p, 1, &r) != 0)
        return;
    size_t nkeys;
    unsigned char(*keys)[16] = piece_keys(r, &nkeys);
    sl_store_result_free(r);
    if (sl_op_run(op, SQL_DELETE_SESSION, p, 1, NULL) != 0 ||
        sl_op_run(op, SQL_WIPE_EXCHANGES, p, 1, NULL) != 0 ||
        sl_op_run(op, SQL_WIPE_FINDINGS, p, 1, NULL) != 0 || sl_op_run(op, SQL_WIPE_TAIL, p, 1, NULL) != 0 ||
        sl_op_run(op, SQL_WIPE_UPLOAD, p, 1, NULL) != 0 || sl_op_run(op, SQL_WIPE_HISTORY, p, 1, NULL) != 0 ||
        sl_op_run(op, SQL_WIPE_CHUNKS, p, 1, NULL) != 0 || sl_op_change_commit(op, &s) != 0) {
        free(keys);
        return;
    }
    if (nkeys)
        sl_recipe_forget(op->core, (const unsigned char(*)[16])keys, nkeys);
    free(keys);
    msgpack_pack_map(sl_op_pk(op), 0);
    sl_op_reply(op);
}
