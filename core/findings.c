/*
 * The owner decides about secret-scanning findings (API.md: ListFindings, ResolveFinding;
 * docs/secrets.md). A finding is redacted by default; "revealed" says it is not a secret and shows
 * it publicly. A decision is an owner change: the exchange (or title) is made unscanned and the
 * change's prepare step rescans it with the decision stored (scan.c), rebuilds its pieces and
 * republishes, so the page changes exactly as for any other edit.
 */
#include <string.h>

#include "core/internal/owner.h"

/* At most this many findings are listed (the rest: "truncated": true). */
#define LIST_MAX 5000

enum { L_ID, L_EX, L_FIELD, L_KIND, L_PREVIEW, L_REVEALED };
static const char SQL_LIST[] =
    "SELECT f.id, f.exchange_id, f.field, f.kind, f.preview, f.revealed FROM session_findings f"
    " LEFT JOIN exchanges e ON e.session_id = f.session_id AND e.id = f.exchange_id"
    " WHERE f.session_id = ? AND (f.exchange_id IS NULL OR e.deleted_at IS NULL)"
    " ORDER BY f.exchange_id IS NOT NULL, f.exchange_id, f.field, f.start_offset LIMIT 5001";

void sl_owner_list_findings(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    sl_locked_t s;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    /* the row lock only checks ownership (a consistent read of one session's findings) */
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_LIST, p, 1, &r) != 0)
        return;
    sl_op_tx_end(op);
    size_t n = r->nrows > LIST_MAX ? LIST_MAX : r->nrows;
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "findings", 8);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const sl_store_value_t *ex = sl_store_cell(r, i, L_EX);
        int field = (int)sl_store_cell(r, i, L_FIELD)->i;
        const char *fname = sl_scan_field_name(field);
        msgpack_pack_map(pk, ex->type == SL_STORE_NULL ? 5 : 6);
        sl_pack_kv_u64(pk, "finding_id", (uint64_t)sl_store_cell(r, i, L_ID)->i);
        if (ex->type != SL_STORE_NULL)
            sl_pack_kv_u64(pk, "exchange_id", (uint64_t)ex->i);
        sl_pack_kv_str(pk, "field", fname, strlen(fname));
        sl_pack_kv_str(pk, "kind", sl_store_cell(r, i, L_KIND)->ptr, sl_store_cell(r, i, L_KIND)->len);
        sl_pack_kv_str(pk, "preview", sl_store_cell(r, i, L_PREVIEW)->ptr,
                       sl_store_cell(r, i, L_PREVIEW)->len);
        const char *state = sl_store_cell(r, i, L_REVEALED)->i ? "revealed" : "redacted";
        sl_pack_kv_str(pk, "state", state, strlen(state));
    }
    sl_pack_kv_bool(pk, "truncated", r->nrows > LIST_MAX);
    sl_store_result_free(r);
    sl_op_reply(op);
}

static const char SQL_FINDING[] =
    "SELECT exchange_id, revealed FROM session_findings WHERE id = ? AND session_id = ?";
static const char SQL_DECIDE[] = "UPDATE session_findings SET revealed = ? WHERE id = ?";
static const char SQL_RESCAN_EXCHANGE[] = "UPDATE exchanges SET scanned = 0 WHERE session_id = ? AND id = ?";
static const char SQL_RESCAN_TITLE[] = "UPDATE sessions SET title_scanned = 0 WHERE id = ?";

void sl_owner_resolve_finding(sl_op_t *op)
{
    const char *id, *state;
    size_t idlen, slen;
    int64_t fid;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    if (sl_rpc_get_i64(sl_op_req(op), "finding_id", 1, 1, INT64_MAX, &fid, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(sl_op_req(op), "state", 1, 16, &state, &slen, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return;
    }
    int reveal = slen == 8 && !memcmp(state, "revealed", 8);
    if (!reveal && !(slen == 8 && !memcmp(state, "redacted", 8))) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "state must be \"redacted\" or \"revealed\"");
        return;
    }
    sl_locked_t s;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        return;
    sl_store_value_t q[] = {sl_store_int(fid), sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_FINDING, q, 2, &r) != 0)
        return;
    if (r->nrows != 1) { /* another session's finding is not found either */
        sl_store_result_free(r);
        sl_op_fail(op, SL_RPC_NOT_FOUND, "finding %lld not found in this session", (long long)fid);
        return;
    }
    const sl_store_value_t *ex = sl_store_cell(r, 0, 0);
    int64_t exchange = ex->type == SL_STORE_NULL ? -1 : ex->i;
    sl_store_result_free(r);
    sl_store_value_t d[] = {sl_store_int(reveal), sl_store_int(fid)};
    sl_store_value_t e[] = {sl_store_text(id, idlen), sl_store_int(exchange)};
    s.scan |= exchange >= 0 ? SL_SCAN_EXCHANGES : SL_SCAN_TITLE;
    if (sl_op_change_begin(op, &s, 0) != 0 || sl_op_run(op, SQL_DECIDE, d, 2, NULL) != 0 ||
        (exchange >= 0 ? sl_op_run(op, SQL_RESCAN_EXCHANGE, e, 2, NULL)
                       : sl_op_run(op, SQL_RESCAN_TITLE, e, 1, NULL)) != 0 ||
        sl_op_change_commit(op, &s) != 0)
        return;
    sl_op_reply_version(op, s.new_version);
}
