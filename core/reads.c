/* The owner's reads of one session: GetSession (everything, hidden exchanges included), ExportSession
 * (the upload, byte-exact) and SessionSizes (what the SpecStory CLI asks before uploading). */
#include <stdio.h>
#include <string.h>

#include "core/internal/owner.h"

/* ---- GetSession ---- */

enum { S_OWNER, S_TITLE, S_PUBLIC, S_VERSION, S_CREATED, S_UPDATED, S_AGENT, S_PROJECT };
static const char SQL_GET_SESSION[] =
    "SELECT s.owner_id, s.title, s.is_public, s.version, DATE_FORMAT(s.created_at, '%Y-%m-%dT%H:%i:%sZ'),"
    " DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ'), s.agent, p.id, p.name, p.icon, p.color"
    " FROM sessions s JOIN projects p ON p.id = s.project_id WHERE s.id = ? AND s.deleted_at IS NULL";
/* answered after "title" and "custom_title" (derived), columns S_PUBLIC .. S_AGENT */
static const sl_col_t SESSION_COLS[] = {
    {"public", SL_COL_BOOL},    {"version", SL_COL_U64}, {"created_at", SL_COL_STR},
    {"updated_at", SL_COL_STR}, {"agent", SL_COL_STR},
};

enum { E_ID, E_TITLE, E_CUSTOM, E_PROMPT, E_RESPONSE, E_HIDDEN, E_CREATED };
static const char SQL_GET_EXCHANGES[] =
    "SELECT id, COALESCE(title, default_title), title, prompt, response, hidden,"
    " DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ') FROM exchanges"
    " WHERE session_id = ? AND deleted_at IS NULL ORDER BY position, id";
static const sl_col_t EXCHANGE_COLS[] = {
    [E_ID] = {"id", SL_COL_U64},
    [E_TITLE] = {"title", SL_COL_STR},
    [E_CUSTOM] = {"custom_title", SL_COL_STR},
    [E_PROMPT] = {"prompt", SL_COL_STR},
    [E_RESPONSE] = {"response", SL_COL_STR},
    [E_HIDDEN] = {"hidden", SL_COL_BOOL},
    [E_CREATED] = {"created_at", SL_COL_STR},
};

void sl_owner_get_session(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *s = NULL, *e = NULL;
    /* One connection, one consistent snapshot for both statements. */
    if (sl_op_tx_begin(op) != 0 || sl_op_run(op, SQL_GET_SESSION, p, 1, &s) != 0)
        return;
    if (s->nrows != 1 || (uint64_t)sl_store_cell(s, 0, S_OWNER)->i != op->who.user_id) {
        sl_store_result_free(s);
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    if (sl_op_run(op, SQL_GET_EXCHANGES, p, 1, &e) != 0) {
        sl_store_result_free(s);
        return;
    }
    sl_op_tx_end(op);
    size_t hidden = 0;
    for (size_t i = 0; i < e->nrows; i++)
        hidden += sl_store_cell(e, i, E_HIDDEN)->i != 0;
    size_t nsession = sizeof(SESSION_COLS) / sizeof(SESSION_COLS[0]);
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 7 + nsession);
    sl_pack_kv_str(pk, "session_id", id, idlen);
    sl_pack_owner_title(pk, sl_store_cell(s, 0, S_TITLE), e->nrows ? sl_store_cell(e, 0, E_TITLE) : NULL);
    sl_rpc_pack_str(pk, "custom_title");
    if (sl_store_cell(s, 0, S_TITLE)->len > 0)
        sl_pack_cell_str(pk, s, 0, S_TITLE);
    else
        msgpack_pack_nil(pk);
    sl_pack_cols(pk, s, 0, S_PUBLIC, SESSION_COLS, nsession);
    sl_rpc_pack_str(pk, "project");
    sl_pack_project(pk, s, 0, S_PROJECT);
    sl_pack_kv_u64(pk, "exchange_count", e->nrows);
    sl_pack_kv_u64(pk, "hidden_count", hidden);
    sl_rpc_pack_str(pk, "exchanges");
    msgpack_pack_array(pk, e->nrows);
    for (size_t i = 0; i < e->nrows; i++)
        sl_pack_row(pk, e, i, EXCHANGE_COLS, sizeof(EXCHANGE_COLS) / sizeof(EXCHANGE_COLS[0]));
    sl_store_result_free(s);
    sl_store_result_free(e);
    sl_op_reply(op);
}

/* ---- ExportSession ("upload": 0 the current upload, 1..5 the ones a sync replaced, newest first) ---- */

enum { X_OWNER, X_MARKDOWN, X_RAW, X_SDATA, X_EXT, X_UPDATED, X_TITLE, X_METADATA, X_TAIL, X_PREFIX, X_SEQ };
static const char SQL_EXPORT[] = "SELECT s.owner_id, u.markdown, u.raw_data, u.session_data, p.ext_id,"
                                 " DATE_FORMAT(u.updated_at, '%Y-%m-%dT%H:%i:%sZ'), s.title, u.metadata,"
                                 " u.tail_parts, NULL, NULL"
                                 " FROM sessions s JOIN session_uploads u ON u.session_id = s.id"
                                 " JOIN projects p ON p.id = s.project_id"
                                 " WHERE s.id = ? AND s.deleted_at IS NULL";
/* the same columns from an earlier upload: "upload" = n is the nth before the current one; one kept
 * as a reference (markdown NULL) is the first prefix_len bytes of the next newer upload */
static const char SQL_EXPORT_EARLIER[] =
    "SELECT s.owner_id, u.markdown, u.raw_data, u.session_data, p.ext_id,"
    " DATE_FORMAT(u.uploaded_at, '%Y-%m-%dT%H:%i:%sZ'), s.title, u.metadata, 0, u.prefix_len, u.seq"
    " FROM sessions s JOIN session_upload_history u ON u.session_id = s.id"
    " JOIN projects p ON p.id = s.project_id"
    " WHERE s.id = ? AND s.deleted_at IS NULL ORDER BY u.seq DESC LIMIT 1 OFFSET ?";
/* the kept uploads from the one asked for to the newest (a reference needs the next newer one) */
static const char SQL_KEPT_FROM[] = "SELECT prefix_len, markdown FROM session_upload_history"
                                    " WHERE session_id = ? AND seq >= ? ORDER BY seq DESC";
static const sl_col_t EXPORT_COLS[] = {
    [X_OWNER] = {NULL, SL_COL_SKIP},          [X_MARKDOWN] = {"markdown", SL_COL_STR},
    [X_RAW] = {"raw_data", SL_COL_STR},       [X_SDATA] = {"session_data", SL_COL_STR},
    [X_EXT] = {"project_ext_id", SL_COL_STR}, [X_UPDATED] = {"updated_at", SL_COL_STR},
    [X_TITLE] = {"title", SL_COL_STR},
}; /* X_METADATA is answered apart: stored as the request's own msgpack map */

void sl_owner_export_session(sl_op_t *op)
{
    const char *id, *ext = NULL;
    size_t idlen, extlen = 0;
    int64_t upload = 0;
    if (sl_op_session_id(op, &id, &idlen) != 0 || sl_op_project_ext(op, &ext, &extlen) < 0)
        return;
    if (sl_rpc_get_i64(sl_op_req(op), "upload", 0, 0, SL_UPLOADS_KEPT, &upload, op->msg, sizeof(op->msg)) <
        0) {
        sl_op_fail_field(op);
        return;
    }
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(upload - 1)};
    sl_store_result_t *r = NULL, *nk = NULL;
    char *whole = NULL;
    /* one snapshot: an upload is a row and its tail parts, or a reference to a newer one */
    if (sl_op_tx_begin(op) != 0 ||
        sl_op_run(op, upload ? SQL_EXPORT_EARLIER : SQL_EXPORT, p, upload ? 2 : 1, &r) != 0)
        goto fail;
    if (r->nrows != 1 || r->ncols != X_SEQ + 1 ||
        (uint64_t)sl_store_cell(r, 0, X_OWNER)->i != op->who.user_id ||
        (ext && !sl_ext_matches(sl_store_cell(r, 0, X_EXT), ext, extlen))) {
        sl_op_fail(op, SL_RPC_NOT_FOUND,
                   "session not found (or it has no upload: sessions made only with "
                   "AppendExchanges have nothing to export)");
        goto fail;
    }
    sl_store_value_t *mc = &r->cells[X_MARKDOWN];
    size_t wlen = 0;
    if (!upload && sl_store_cell(r, 0, X_TAIL)->i > 0) {
        if (sl_upload_read_whole(op, id, idlen, &whole, &wlen) != 0)
            goto fail;
    } else if (upload && sl_store_cell(r, 0, X_PREFIX)->type == SL_STORE_INT) {
        /* a reference: rebuilt from the newest kept upload (or the current one) down to this one */
        sl_store_value_t q[] = {p[0], sl_store_int(sl_store_cell(r, 0, X_SEQ)->i)};
        if (sl_op_run(op, SQL_KEPT_FROM, q, 2, &nk) != 0)
            goto fail;
        if (nk->nrows > 0 && sl_store_cell(nk, 0, 0)->type == SL_STORE_INT &&
            sl_upload_read_whole(op, id, idlen, &whole, &wlen) != 0)
            goto fail;
        for (size_t i = 0; i < nk->nrows; i++) {
            const sl_store_value_t *pl = sl_store_cell(nk, i, 0), *tail = sl_store_cell(nk, i, 1);
            size_t keep = pl->type == SL_STORE_INT ? (size_t)pl->i : 0;
            if (keep > wlen || (keep > 0 && whole == NULL)) {
                sl_op_fail(op, SL_RPC_INTERNAL, "the kept uploads of this session do not agree");
                goto fail;
            }
            char *next = malloc(keep + tail->len + 1);
            if (next == NULL) {
                sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
                goto fail;
            }
            if (keep)
                memcpy(next, whole, keep);
            if (tail->len)
                memcpy(next + keep, tail->ptr, tail->len);
            free(whole);
            whole = next;
            wlen = keep + tail->len;
        }
    }
    if (whole) {
        mc->type = SL_STORE_TEXT;
        mc->ptr = whole;
        mc->len = wlen;
    }
    if (sl_op_tx_commit(op) != 0)
        goto fail;
    const sl_store_value_t *md = sl_store_cell(r, 0, X_MARKDOWN);
    char etag[40];
    sl_upload_etag(md->ptr, md->len, etag);
    size_t ncols = sizeof(EXPORT_COLS) / sizeof(EXPORT_COLS[0]);
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, sl_cols_answered(EXPORT_COLS, ncols) + 2);
    sl_pack_cols(pk, r, 0, 0, EXPORT_COLS, ncols);
    sl_rpc_pack_str(pk, "metadata");
    const sl_store_value_t *meta = sl_store_cell(r, 0, X_METADATA);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (meta->type == SL_STORE_TEXT &&
        msgpack_unpack_next(&u, meta->ptr, meta->len, &off) == MSGPACK_UNPACK_SUCCESS)
        msgpack_pack_object(pk, u.data);
    else
        msgpack_pack_nil(pk);
    msgpack_unpacked_destroy(&u);
    sl_pack_kv_str(pk, "etag", etag, strlen(etag));
    sl_op_reply(op);
fail:
    sl_op_tx_end(op);
    sl_store_result_free(nk);
    sl_store_result_free(r);
    free(whole);
}

/* ---- SessionSizes ---- */

enum { Z_ID, Z_MARKDOWN, Z_SDATA };
static const char SQL_SIZES[] =
    "SELECT s.id, CAST(COALESCE(u.markdown_len, LENGTH(u.markdown)) AS SIGNED), LENGTH(u.session_data)"
    " FROM sessions s"
    " JOIN session_uploads u ON u.session_id = s.id JOIN projects p ON p.id = s.project_id"
    " WHERE p.owner_id = ? AND p.ext_id = ? AND s.owner_id = ? AND s.deleted_at IS NULL"
    " AND (? = '' OR s.id = ?) ORDER BY s.id";

/* {"sessions": {"<id>": markdown bytes, "<id>:sessionData": bytes}} of one project's uploads. */
void sl_owner_session_sizes(sl_op_t *op)
{
    const char *ext = NULL, *id = NULL;
    size_t extlen = 0, idlen = 0;
    if (sl_rpc_get_str(sl_op_req(op), "project_ext_id", 1, 200, &ext, &extlen, op->msg, sizeof(op->msg)) !=
            1 ||
        sl_rpc_get_str(sl_op_req(op), "session_id", 0, 64, &id, &idlen, op->msg, sizeof(op->msg)) < 0) {
        sl_op_fail_field(op);
        return;
    }
    sl_store_value_t p[] = {sl_store_int((int64_t)op->who.user_id), sl_store_text(ext, extlen),
                            sl_store_int((int64_t)op->who.user_id), sl_store_text(id ? id : "", idlen),
                            sl_store_text(id ? id : "", idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_SIZES, p, 5, &err);
    if (r == NULL) {
        sl_op_fail_store(op, &err);
        return;
    }
    if (id && r->nrows == 0) {
        sl_store_result_free(r);
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    size_t entries = 0;
    for (size_t i = 0; i < r->nrows; i++)
        entries += 1 + (sl_store_cell(r, i, Z_SDATA)->type == SL_STORE_INT);
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 1);
    sl_rpc_pack_str(pk, "sessions");
    msgpack_pack_map(pk, entries);
    for (size_t i = 0; i < r->nrows; i++) {
        const sl_store_value_t *sid = sl_store_cell(r, i, Z_ID);
        sl_rpc_pack_strn(pk, sid->ptr, sid->len);
        msgpack_pack_uint64(pk, (uint64_t)sl_store_cell(r, i, Z_MARKDOWN)->i);
        if (sl_store_cell(r, i, Z_SDATA)->type == SL_STORE_INT) {
            char key[80];
            int n = snprintf(key, sizeof(key), "%.*s:sessionData", (int)sid->len, (const char *)sid->ptr);
            sl_rpc_pack_strn(pk, key, (size_t)n);
            msgpack_pack_uint64(pk, (uint64_t)sl_store_cell(r, i, Z_SDATA)->i);
        }
    }
    sl_store_result_free(r);
    sl_op_reply(op);
}
