/*
 * How sessions arrive, 2: AppendExchanges, exchanges added one call at a time (e.g. by an agent as it
 * works). Appended exchanges whose text the owner hid elsewhere arrive hidden, by the rule of a
 * re-sync (sync.c, resync.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "core/internal/owner.h"
#include "core/internal/resync.h"
#include "core/internal/specstory.h"
#include "core/internal/sync.h"

#define MAX_APPEND_PER_CALL 1000

enum { MAXPOS_POSITION, MAXPOS_LIVE };
/* Through the index of the projection's keys (it holds position): the rows themselves, with their
 * text and pieces, are not read — an append costs what it appends, not the session's size. */
static const char SQL_MAX_POSITION[] =
    "SELECT COALESCE(MAX(position), 0), COUNT(*) FROM exchanges"
    " FORCE INDEX (exchanges_pieces) WHERE session_id = ? AND deleted_at IS NULL";
static const char SQL_APPEND_INSERT[] =
    "INSERT INTO exchanges (session_id, id, position, title, default_title, prompt, response, prompt_sha256,"
    " response_sha256, hidden, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'), NOW(6)))";

/* Appended exchanges whose text the owner hid elsewhere in the session arrive hidden, as on a
 * re-sync (resync.c): hidden[i] for each of the n exchanges of arr. Answers on error. */
static int appended_hidden(sl_op_t *op, const char *id, size_t idlen, const msgpack_object *arr, size_t n,
                           int *hidden)
{
    sl_stored_t *st = NULL;
    size_t nst = 0;
    if (sl_sync_load_hidden(op, id, idlen, &st, &nst) != 0)
        return -1;
    sl_uploaded_t *up = calloc(n, sizeof(*up));
    sl_resync_step_t *steps = calloc(n, sizeof(*steps));
    unsigned char *removed = calloc(nst ? nst : 1, 1);
    int rc = -1;
    if (up && steps && removed) {
        for (size_t i = 0; i < n; i++) {
            const char *pr, *rs;
            size_t pl, rl;
            sl_rpc_get_str(&arr->via.array.ptr[i], "prompt", 1, SL_MAX_PROMPT, &pr, &pl, op->msg,
                           sizeof(op->msg));
            sl_rpc_get_str(&arr->via.array.ptr[i], "response", 1, op->core->cfg.max_markdown, &rs, &rl,
                           op->msg, sizeof(op->msg));
            sl_sync_uploaded(&up[i], pr, pl, rs, rl, NULL);
        }
        rc = sl_resync_plan(st, nst, up, n, steps, removed);
        for (size_t i = 0; rc == 0 && i < n; i++)
            hidden[i] = steps[i].hidden;
    }
    if (rc != 0)
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
    free(st);
    free(up);
    free(steps);
    free(removed);
    return rc;
}
static const char SQL_SET_SEQ[] = "UPDATE sessions SET exchange_seq = ? WHERE id = ?";

void sl_owner_append_exchanges(sl_op_t *op)
{
    const char *id;
    size_t idlen;
    if (sl_op_session_id(op, &id, &idlen) != 0)
        return;
    const msgpack_object *arr = sl_rpc_field(sl_op_req(op), "exchanges");
    if (arr == NULL || arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size == 0 ||
        arr->via.array.size > MAX_APPEND_PER_CALL) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"exchanges\" must be an array of 1 to %d exchanges",
                   MAX_APPEND_PER_CALL);
        return;
    }
    size_t n = arr->via.array.size;
    /* Validate everything before touching anything. */
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        const char *s;
        size_t l;
        char where[64];
        snprintf(where, sizeof(where), "exchanges[%zu]", i);
        if (e->type != MSGPACK_OBJECT_MAP) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "%s must be a map", where);
            return;
        }
        if (sl_rpc_get_str(e, "prompt", 1, SL_MAX_PROMPT, &s, &l, op->msg, sizeof(op->msg)) != 1 ||
            sl_rpc_get_str(e, "response", 1, op->core->cfg.max_markdown, &s, &l, op->msg, sizeof(op->msg)) !=
                1 ||
            sl_rpc_get_str(e, "title", 0, 500, &s, &l, op->msg, sizeof(op->msg)) < 0) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "%s: %s", where, op->msg);
            return;
        }
        int has_ts = sl_rpc_get_str(e, "created_at", 0, 64, &s, &l, op->msg, sizeof(op->msg));
        if (has_ts < 0 || (has_ts == 1 && !sl_valid_timestamp(s, l))) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "%s: field \"created_at\" must be YYYY-MM-DDTHH:MM:SSZ",
                       where);
            return;
        }
    }
    sl_locked_t s;
    sl_store_result_t *r = NULL;
    if (sl_op_tx_begin(op) != 0 || sl_op_lock_session(op, id, idlen, 0, &s) != 0)
        return;
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (sl_op_run(op, SQL_MAX_POSITION, p, 1, &r) != 0)
            return;
    }
    int64_t position = sl_store_cell(r, 0, MAXPOS_POSITION)->i;
    int64_t live = sl_store_cell(r, 0, MAXPOS_LIVE)->i;
    sl_store_result_free(r);
    if ((uint64_t)live + n > op->core->cfg.max_exchanges) {
        sl_op_fail(op, SL_RPC_FAILED_PRECONDITION, "a session holds at most %u exchanges; it has %lld",
                   op->core->cfg.max_exchanges, (long long)live);
        return;
    }
    uint32_t seq = s.seq;
    uint32_t *ids = malloc(n * sizeof(*ids));
    int *hidden = malloc(n * sizeof(*hidden));
    if (ids == NULL || hidden == NULL) {
        free(ids);
        free(hidden);
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (appended_hidden(op, id, idlen, arr, n, hidden) != 0 || sl_op_change_begin(op, &s, 0) != 0) {
        free(ids);
        free(hidden);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        const char *prompt, *response, *title = NULL, *ts = NULL;
        size_t plen, rlen, tlen = 0, tslen = 0;
        sl_rpc_get_str(e, "prompt", 1, SL_MAX_PROMPT, &prompt, &plen, op->msg, sizeof(op->msg));
        sl_rpc_get_str(e, "response", 1, op->core->cfg.max_markdown, &response, &rlen, op->msg,
                       sizeof(op->msg));
        sl_rpc_get_str(e, "title", 0, 500, &title, &tlen, op->msg, sizeof(op->msg));
        sl_rpc_get_str(e, "created_at", 0, 64, &ts, &tslen, op->msg, sizeof(op->msg));
        char *def = sl_specstory_title(prompt, plen);
        if (def == NULL) {
            sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            free(ids);
            free(hidden);
            return;
        }
        unsigned char sha[32], rsha[32];
        SHA256((const unsigned char *)prompt, plen, sha);
        SHA256((const unsigned char *)response, rlen, rsha);
        ids[i] = ++seq;
        sl_store_value_t p[] = {sl_store_text(id, idlen),
                                sl_store_int(seq),
                                sl_store_int(++position),
                                (title && tlen) ? sl_store_text(title, tlen) : sl_store_null(),
                                sl_store_text(def, strlen(def)),
                                sl_store_text(prompt, plen),
                                sl_store_text(response, rlen),
                                sl_store_blob(sha, 32),
                                sl_store_blob(rsha, 32),
                                sl_store_int(hidden[i]),
                                ts ? sl_store_text(ts, tslen) : sl_store_null()};
        int rc = sl_op_run(op, SQL_APPEND_INSERT, p, 11, NULL);
        free(def);
        if (rc != 0) {
            free(ids);
            free(hidden);
            return;
        }
    }
    free(hidden);
    sl_store_value_t q[] = {sl_store_int(seq), sl_store_text(id, idlen)};
    s.scan |= SL_SCAN_EXCHANGES; /* the appended text is scanned before the projection is built */
    if (n > 0)
        sl_op_touch(&s, NULL, 0, ids[0], ids[n - 1]);
    if (sl_op_run(op, SQL_SET_SEQ, q, 2, NULL) != 0 || sl_op_change_commit(op, &s) != 0) {
        free(ids);
        return;
    }
    msgpack_pack_map(sl_op_pk(op), 3);
    sl_pack_kv_str(sl_op_pk(op), "session_id", id, idlen);
    sl_pack_kv_u64(sl_op_pk(op), "version", s.new_version);
    sl_rpc_pack_str(sl_op_pk(op), "exchange_ids");
    msgpack_pack_array(sl_op_pk(op), n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_uint32(sl_op_pk(op), ids[i]);
    free(ids);
    sl_op_reply(op);
}
