/*
 * The owner change pipeline (core/internal/owner.h explains its steps) and what every owner
 * method needs around it: answering exactly once, transactions on a held connection, and the
 * request fields several methods share.
 *
 * Invariants checked here (DESIGN.md, docs/invalidation.md):
 *   - one change, one version step: a change publishes version + 1 of what it locked;
 *   - the change's statements, its bump and its projection run on one held connection, inside the
 *     transaction that holds the session's row lock;
 *   - a session that goes through Redis is MARKed before anything changes, and stays cache_dirty
 *     in the database until its publish is known to be done.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal/owner.h"

/* ---- answering ---- */

void sl_op_fail(sl_op_t *op, sl_rpc_code_t code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    op->core->stats.owner_errors++;
    assert(!op->answered);
    op->answered = 1;
    if (op->call)
        sl_rpc_fail(op->call, code, "%s", msg);
    else /* the cache repair (no caller) */
        fprintf(stderr, "shareline: cache repair: %s\n", msg);
}

void sl_op_fail_field(sl_op_t *op)
{
    sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
}

void sl_op_fail_store(sl_op_t *op, const sl_store_error_t *err)
{
    op->core->stats.owner_errors++;
    assert(!op->answered);
    op->answered = 1;
    if (op->call)
        sl_fail_store(op->call, err);
    else
        fprintf(stderr, "shareline: cache repair: store error: %s\n", err->message);
}

void sl_op_reply(sl_op_t *op)
{
    assert(!op->answered && op->call != NULL);
    op->answered = 1;
    sl_rpc_reply(op->call);
}

void sl_op_reply_version(sl_op_t *op, uint64_t version)
{
    msgpack_pack_map(sl_op_pk(op), 1);
    sl_pack_kv_u64(sl_op_pk(op), "version", version);
    sl_op_reply(op);
}

/* ---- transactions ---- */

static const char SQL_BEGIN[] = "START TRANSACTION";
static const char SQL_COMMIT[] = "COMMIT";

int sl_op_run(sl_op_t *op, const char *sql, const sl_store_value_t *p, size_t n, sl_store_result_t **res)
{
    assert(op->conn != NULL);
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_exec(op->conn, sql, p, n, &err);
    if (r == NULL) {
        sl_op_fail_store(op, &err);
        return -1;
    }
    if (res)
        *res = r;
    else
        sl_store_result_free(r);
    return 0;
}

int sl_op_tx_begin(sl_op_t *op)
{
    assert(op->conn == NULL);
    sl_store_error_t err;
    op->conn = sl_await_acquire(op->core->owner, &err);
    if (op->conn == NULL) {
        sl_op_fail_store(op, &err);
        return -1;
    }
    return sl_op_run(op, SQL_BEGIN, NULL, 0, NULL);
}

int sl_op_tx_commit(sl_op_t *op)
{
    if (sl_op_run(op, SQL_COMMIT, NULL, 0, NULL) != 0)
        return -1;
    op->marked = 0; /* committed: its publish replaces the MARK */
    sl_op_tx_end(op);
    return 0;
}

void sl_op_tx_end(sl_op_t *op)
{
    if (op->conn == NULL)
        return;
    if (op->marked) {
        /* A change that failed after its MARK (a cap, a store error): still holding the row lock,
         * take the MARK away, so that readers do not bypass the cache for its whole TTL. */
        sl_proj_reply_t r;
        sl_await_proj_unmark(op->core->cache, op->marked_id, op->marked_idlen, op->marked_version, &r);
        op->marked = 0;
    }
    sl_store_release(op->conn);
    op->conn = NULL;
}

/* ---- the change pipeline ---- */

enum {
    LOCK_OWNER,
    LOCK_VERSION,
    LOCK_PUBLIC,
    LOCK_SEQ,
    LOCK_DELETED,
    LOCK_DIRTY,
    LOCK_UNSCANNED,
    LOCK_CHUNKS
};
/* LOCK_UNSCANNED: the session holds rows changed behind the owner's back (an operator in SQL, the
 * migration): the change scans them too (scan.c). The subquery is a plain consistent read (the
 * FOR UPDATE of the outer statement does not lock what a subquery reads) on exchanges_unscanned. */
static const char SQL_LOCK[] =
    "SELECT owner_id, version, is_public, exchange_seq, deleted_at IS NOT NULL,"
    " cache_dirty, title_scanned = 0 OR EXISTS (SELECT 1 FROM exchanges e"
    " WHERE e.scanned = 0 AND e.deleted_at IS NULL AND e.session_id = sessions.id),"
    " chunks_version <=> version FROM sessions WHERE id = ? FOR UPDATE";

void sl_op_locked_init(sl_locked_t *s, const char *id, size_t idlen, uint64_t version, int is_public,
                       int deleted, int dirty)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->idlen = idlen;
    s->exists = 1;
    s->version = version;
    s->is_public = is_public;
    s->deleted = deleted;
    s->dirty = dirty;
}

void sl_op_touch(sl_locked_t *s, const int64_t *ids, size_t n, int64_t lo, int64_t hi)
{
    s->touch_set = n <= SL_TOUCH_MAX;
    s->touched = ids;
    s->ntouched = n;
    s->touch_lo = lo;
    s->touch_hi = hi;
}

int sl_op_lock_session(sl_op_t *op, const char *id, size_t idlen, int allow_absent, sl_locked_t *s)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->idlen = idlen;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_LOCK, p, 1, &r) != 0)
        return -1;
    if (r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, LOCK_OWNER)->i == op->who.user_id) {
        sl_op_locked_init(s, id, idlen, (uint64_t)sl_store_cell(r, 0, LOCK_VERSION)->i,
                          sl_store_cell(r, 0, LOCK_PUBLIC)->i != 0, sl_store_cell(r, 0, LOCK_DELETED)->i != 0,
                          sl_store_cell(r, 0, LOCK_DIRTY)->i != 0);
        s->seq = (uint32_t)sl_store_cell(r, 0, LOCK_SEQ)->i;
        /* the chunk state describes the session as locked (chunk_store.c), and nothing changed
         * behind the owner's back since (that would have set chunks_version to NULL, or left rows
         * unscanned) */
        s->chunks_ok = sl_store_cell(r, 0, LOCK_CHUNKS)->i != 0;
        if (sl_store_cell(r, 0, LOCK_UNSCANNED)->i) {
            s->scan = SL_SCAN_ALL;
            s->chunks_ok = 0;
        }
    } else if (r->nrows == 1 || !allow_absent) {
        /* Another user's session looks exactly like a missing one. */
        sl_store_result_free(r);
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return -1;
    }
    sl_store_result_free(r);
    if (s->deleted && !allow_absent) {
        sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found");
        return -1;
    }
    return 0;
}

/* A session private in MariaDB never needs Redis, unless Redis is ahead of MariaDB (a database
 * restored from a backup taken before the session was shared): then Redis may still serve it. One
 * head read tells; when Redis cannot be asked, the change is marked cache_dirty, so that the repair
 * settles the entry once Redis is back. */
static void check_private(sl_op_t *op, sl_locked_t *s)
{
    sl_proj_reply_t h;
    sl_await_proj_head(op->core->cache, s->id, s->idlen, &h);
    if (h.status != SL_CACHE_OK)
        s->unsure = 1;
    else if (h.kind == SL_PROJ_PUBLIC || h.kind == SL_PROJ_MARK)
        s->cached = 1;
}

#define AHEAD_TRIES 3

int sl_op_change_begin(sl_op_t *op, sl_locked_t *s, int through_cache)
{
    assert(op->conn != NULL && !s->begun); /* under the row lock, once per change */
    s->new_version = s->version + 1;
    /* A dirty session goes through Redis whatever its state: that publish is what replaces an
     * entry a failed publish may have left behind (docs/invalidation.md, "Repair"). */
    int shown = (s->exists && !s->deleted && s->is_public) || through_cache;
    s->cached = shown || (s->exists && s->dirty);
    if (!s->cached && s->exists)
        check_private(op, s);
    for (int i = 0; s->cached; i++) {
        uint64_t ahead = 0;
        int rc = sl_invalidate_begin(op->core, s->id, s->idlen, s->new_version, &ahead);
        if (rc == 0)
            break;
        if (rc == -1 && !shown) {
            /* private, and dirty or once seen in Redis: while Redis is down nothing of it is served
             * from there; the change goes on, cache_dirty stays and the repair settles it later */
            s->cached = 0;
            s->unsure = 1;
            break;
        }
        if (rc == 1 && i + 1 < AHEAD_TRIES && ahead >= s->new_version && ahead < UINT64_MAX - 1) {
            /* Versions only move forward against the cache: this change takes the version after
             * the one Redis holds, so that its publish replaces what a restore left behind. */
            s->version = ahead;
            s->new_version = ahead + 1;
            s->chunks_ok = 0;
            continue;
        }
        sl_op_fail(op, SL_RPC_UNAVAILABLE,
                   "the share cache is unavailable; nothing was changed, retry later");
        return -1;
    }
    /* One MARK is remembered for undoing (a change of several sessions leaves the others to expire). */
    if (s->cached && !op->marked && s->idlen < sizeof(op->marked_id)) {
        op->marked = 1;
        op->marked_version = s->new_version;
        op->marked_idlen = s->idlen;
        memcpy(op->marked_id, s->id, s->idlen);
    }
    s->begun = 1;
    return 0;
}

static const char SQL_BUMP[] = "UPDATE sessions SET version = ?, updated_at = NOW(6) WHERE id = ?";
/* A change that will be published: cache_dirty stays 1 until the publish is known to be done. */
static const char SQL_BUMP_DIRTY[] = "UPDATE sessions SET version = ?, updated_at = NOW(6), cache_dirty = 1"
                                     " WHERE id = ?";
static const char SQL_CLEAN[] = "UPDATE sessions SET cache_dirty = 0, cache_repair_attempts = 0,"
                                " cache_repair_after = NULL WHERE id = ? AND version = ?";

/* After a publish that succeeded: the session's Redis entry is its truth at `version`. Outside the
 * transaction (it is committed); when this fails the repair republishes later, which is harmless. */
void sl_mark_clean(sl_core_t *core, const char *id, size_t idlen, uint64_t version)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int((int64_t)version)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_CLEAN, p, 2, &err);
    sl_store_result_free(r);
}

int sl_op_change_prepare(sl_op_t *op, sl_locked_t *s)
{
    /* One change, one version step, on the connection that holds the row lock. */
    assert(s->begun && s->new_version == s->version + 1);
    assert(op->conn != NULL);
    sl_store_value_t p[] = {sl_store_int((int64_t)s->new_version), sl_store_text(s->id, s->idlen)};
    if (sl_op_run(op, s->cached || s->unsure ? SQL_BUMP_DIRTY : SQL_BUMP, p, 2, NULL) != 0)
        return -1;
    /* What the change made unscanned is scanned before anything is built from it (scan.c): the
     * public views show scanned rows only, with their secrets redacted. A change that wrote no text
     * made nothing unscanned; rows changed behind our back were seen by the lock (s->scan). */
    if (s->scan && sl_scan_pending(op, s->id, s->idlen, s->scan) != 0)
        return -1;
    if (!s->cached || s->late)
        return 0;
    /* Built inside the transaction: the public views show this transaction's own changes. From the
     * chunk state when it is current and the change said which exchanges it touched. */
    sl_store_error_t err;
    sl_touch_t t = {s->chunks_ok && s->touch_set, s->touched, s->ntouched, s->touch_lo, s->touch_hi};
    int rc = sl_projection_change(op->core, op->conn, s->id, s->idlen, &t, &s->proj, &err);
    if (rc == -2 && op->call == NULL) {
        /* the repair of a session over the cap: its public page goes (fail closed), no retry loop */
        s->proj.found = 0;
    } else if (rc == -2) {
        sl_op_fail(op, SL_RPC_FAILED_PRECONDITION, "%s", err.message);
        return -1;
    } else if (rc != 0) {
        sl_op_fail_store(op, &err);
        return -1;
    }
    /* The projection carries the version it was built at: the one this transaction wrote. */
    assert(!s->proj.found || s->proj.version == s->new_version);
    s->proj.version = s->new_version;
    return 0;
}

int sl_op_change_publish(sl_op_t *op, sl_locked_t *s)
{
    assert(op->conn == NULL); /* committed: a publish never precedes its COMMIT */
    if (!s->cached)
        return 0;
    if (s->late) {
        /* Built now, after the commit, from what the public views show (this change, or a later
         * one whose own publish carries a greater version and wins): one projection in memory at a
         * time, however many sessions the change touched. */
        sl_store_error_t err;
        int rc = sl_projection_load(op->core, op->core->owner, NULL, SL_VIEW_PUBLIC, s->id, s->idlen,
                                    SL_PROJ_DRY, &s->proj, &err);
        if (rc == -1)
            return -1; /* cache_dirty stays 1: the repair publishes */
        if (rc == -2 || !s->proj.found)
            s->proj.found = 0; /* over the cap (fail closed), or no longer public */
        if (!s->proj.found || s->proj.version < s->new_version)
            s->proj.version = s->new_version;
    }
    int rc = sl_invalidate_finish(op->core, s->id, s->idlen, &s->proj);
    sl_projection_free(&s->proj);
    if (rc != 0)
        return -1; /* cache_dirty stays 1: the next owner call on this session, or the repair, publishes */
    if (op->clean_pending) /* a second change in one call: clean the first now */
        sl_op_clean_pending(op);
    op->clean_pending = s->idlen < sizeof(op->clean_id);
    if (op->clean_pending) {
        memcpy(op->clean_id, s->id, s->idlen);
        op->clean_idlen = s->idlen;
        op->clean_version = s->new_version;
    }
    return 0;
}

void sl_op_fail_unpublished(sl_op_t *op)
{
    sl_op_fail(op, SL_RPC_UNAVAILABLE,
               "the change was saved, but the share cache could not be updated; retry the call");
}

void sl_op_clean_pending(sl_op_t *op)
{
    if (!op->clean_pending)
        return;
    op->clean_pending = 0;
    sl_mark_clean(op->core, op->clean_id, op->clean_idlen, op->clean_version);
}

int sl_op_change_commit(sl_op_t *op, sl_locked_t *s)
{
    if (sl_op_change_prepare(op, s) != 0)
        return -1;
    if (sl_op_tx_commit(op) != 0) {
        sl_projection_free(&s->proj);
        return -1;
    }
    if (sl_op_change_publish(op, s) != 0) {
        sl_op_fail_unpublished(op);
        return -1;
    }
    return 0;
}

int sl_op_settle(sl_op_t *op, sl_locked_t *s)
{
    if (!s->dirty)
        return 0;
    return sl_op_change_begin(op, s, 0) != 0 || sl_op_change_commit(op, s) != 0 ? -1 : 0;
}

/* ---- request fields ---- */

int sl_op_session_id(sl_op_t *op, const char **id, size_t *len)
{
    if (sl_rpc_get_str(sl_op_req(op), "session_id", 1, 64, id, len, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return -1;
    }
    if (!sl_rpc_id_valid(*id, *len)) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT,
                   "field \"session_id\" must be 1-64 characters of A-Z a-z 0-9 - _");
        return -1;
    }
    return 0;
}

int sl_op_exchange_id(sl_op_t *op, int64_t *out)
{
    if (sl_rpc_get_i64(sl_op_req(op), "exchange_id", 1, 1, UINT32_MAX, out, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return -1;
    }
    return 0;
}

int sl_op_title(sl_op_t *op, const char **t, size_t *len)
{
    if (sl_rpc_get_str(sl_op_req(op), "title", 1, 500, t, len, op->msg, sizeof(op->msg)) != 1) {
        sl_op_fail_field(op);
        return -1;
    }
    for (size_t i = 0; i < *len; i++)
        if ((unsigned char)(*t)[i] < 0x20) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT,
                       "field \"title\" must not contain control characters or newlines");
            return -1;
        }
    return 0;
}

int sl_op_project_ext(sl_op_t *op, const char **ext, size_t *len)
{
    int rc = sl_rpc_get_str(sl_op_req(op), "project_ext_id", 0, 200, ext, len, op->msg, sizeof(op->msg));
    if (rc < 0)
        sl_op_fail_field(op);
    return rc;
}

int sl_ext_matches(const sl_store_value_t *v, const char *ext, size_t len)
{
    return v->type == SL_STORE_TEXT && v->len == len && memcmp(v->ptr, ext, len) == 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int sl_valid_timestamp(const char *s, size_t n)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return 0;
    /* a real instant that MariaDB's DATETIME holds: 2026-02-30 or 25:00 would fail in SQL (a 500) */
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1000 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return 0;
    return digits(s + 11, 2) <= 23 && digits(s + 14, 2) <= 59 && digits(s + 17, 2) <= 59;
}

size_t sl_utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--; /* s[k] would continue a character: cut before the character it belongs to */
    return k;
}
