/*
 * Internal to core/: what the owner methods share — the operation a call runs as, answering it,
 * transactions, the change pipeline, request fields and packing answers by named columns.
 *
 * Every change that alters what viewers see follows one pipeline (pipeline.c):
 *
 *   sl_op_lock_session()    SELECT ... FOR UPDATE: owner check (another user's session is
 *                           not_found) and the row lock that serialises changes of one session;
 *   sl_op_change_begin()    MARK in Redis when the session is or becomes public (or is dirty);
 *   ...the change's own statements...
 *   sl_op_change_commit()   bump the version by one, build the projection inside the transaction,
 *                           COMMIT, publish, and clear cache_dirty once the caller was answered.
 *
 * A change of several sessions in one transaction (UpdateProject) calls sl_op_change_begin() for
 * each, then sl_op_change_prepare() for each, sl_op_tx_commit() once and sl_op_change_publish()
 * for each: the same steps, in the same order, for every session; with `late` set the projection
 * is built in the publish step, so that memory holds one at a time.
 *
 * Private sessions never touch Redis: nothing of theirs can be served, so there is nothing to
 * invalidate, and owners can keep working on them while Redis is down.
 */
#ifndef SL_CORE_INTERNAL_OWNER_H
#define SL_CORE_INTERNAL_OWNER_H

#include <stdint.h>

#include "core/internal/core.h"
#include "core/internal/projection.h"

typedef struct sl_op sl_op_t;
typedef void (*sl_op_fn)(sl_op_t *op);

/* One owner call (or one repair step, with call == NULL), run as a task. */
struct sl_op {
    sl_core_t *core;
    sl_rpc_call_t *call; /* NULL for the cache repair: failures are logged */
    sl_principal_t who;
    sl_store_conn_t *conn; /* held while a transaction is open */
    int answered;
    char msg[256]; /* the field readers' message */
    /* a change MARKed in Redis and not committed yet: undone if its transaction is rolled back */
    int marked;
    uint64_t marked_version;
    size_t marked_idlen;
    char marked_id[65];
    /* cache_dirty to clear once the call is answered (its own commit costs a log flush) */
    int clean_pending;
    uint64_t clean_version;
    size_t clean_idlen;
    char clean_id[65];
};

/* ---- answering (exactly once; later calls are ignored by the guard in owner.c) ---- */

void sl_op_fail(sl_op_t *op, sl_rpc_code_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* invalid_argument with the message a field reader left in op->msg. */
void sl_op_fail_field(sl_op_t *op);
void sl_op_fail_store(sl_op_t *op, const sl_store_error_t *err);
/* Answers with what was packed into sl_op_pk(op). */
void sl_op_reply(sl_op_t *op);
/* Answers {"version": version}. */
void sl_op_reply_version(sl_op_t *op, uint64_t version);

static inline msgpack_packer *sl_op_pk(sl_op_t *op)
{
    return sl_rpc_packer(op->call);
}

static inline const msgpack_object *sl_op_req(sl_op_t *op)
{
    return sl_rpc_request(op->call);
}

/* ---- transactions ---- */

/* Runs a statement on the op's connection; on error answers the call and returns -1. The result is
 * handed to *res when res is non-NULL, else freed. */
int sl_op_run(sl_op_t *op, const char *sql, const sl_store_value_t *p, size_t n, sl_store_result_t **res);
/* Acquires a connection and starts a transaction; on error answers and returns -1. */
int sl_op_tx_begin(sl_op_t *op);
/* COMMIT and give the connection back; on error answers and returns -1. */
int sl_op_tx_commit(sl_op_t *op);
/* Gives the connection back; a transaction still open is rolled back by the store. */
void sl_op_tx_end(sl_op_t *op);

/* ---- the change pipeline ---- */

typedef struct sl_locked {
    const char *id;
    size_t idlen;
    uint64_t version; /* before the change */
    int is_public;
    uint32_t seq; /* exchange_seq */
    int deleted;
    int exists;
    int dirty;            /* cache_dirty: a publish of this session may have failed */
    uint64_t new_version; /* set by sl_op_change_begin: version + 1 */
    int cached;           /* the change must go through Redis */
    int unsure;           /* private, and Redis could not be asked whether it still holds an entry:
                             cache_dirty is set so that the repair settles it */
    int begun;            /* sl_op_change_begin succeeded */
    int late;             /* build the projection in sl_op_change_publish, after the commit (a change of
                             many sessions: one projection in memory at a time) */
    int scan;             /* what to scan before the projection is built (SL_SCAN_*, scan.c): what the
                             change wrote, and everything when the lock found unscanned rows (changed
                             behind the owner's back); other changes make nothing unscanned */
    sl_projection_t proj; /* built by sl_op_change_prepare when cached */
    /* The exchanges the change touched, when it can say (sl_op_touch): the build then starts from
     * the session's chunk state, when that is current (chunks_ok, from the lock). */
    int chunks_ok;
    int touch_set;
    const int64_t *touched; /* sorted; the caller's, alive until the change is prepared */
    size_t ntouched;
    int64_t touch_lo, touch_hi; /* and the ids in [lo, hi] (an append) */
} sl_locked_t;

/* Tells the build what the change touched: the exchanges ids[0..n) (sorted, at most SL_TOUCH_MAX;
 * more: nothing is said and the build reads every exchange) and those in [lo, hi] (lo > hi: none). */
void sl_op_touch(sl_locked_t *s, const int64_t *ids, size_t n, int64_t lo, int64_t hi);

/* Locks the session row. Unknown, deleted (unless allow_absent) or another user's: answers
 * not_found and returns -1. With allow_absent an unknown id is s->exists == 0. */
int sl_op_lock_session(sl_op_t *op, const char *id, size_t idlen, int allow_absent, sl_locked_t *s);
/* Fills s from a row already locked by the caller (id, version, is_public, deleted, cache_dirty). */
void sl_op_locked_init(sl_locked_t *s, const char *id, size_t idlen, uint64_t version, int is_public,
                       int deleted, int dirty);
/* Before the change's statements: the MARK when the session goes through Redis (it is public or
 * dirty, through_cache is set — it becomes public, or is revoked — or Redis still holds an entry of
 * it). When Redis holds a greater version (it is ahead of MariaDB after a restore) the change takes
 * the version after it. On error answers (unavailable: nothing was changed) and returns -1. */
int sl_op_change_begin(sl_op_t *op, sl_locked_t *s, int through_cache);
/* The change's end: prepare, COMMIT, publish. On error answers and returns -1. */
int sl_op_change_commit(sl_op_t *op, sl_locked_t *s);
/* Inside the transaction, after the change's statements: set the version to s->new_version
 * (cache_dirty = 1 when cached) and build the new projection from the transaction's own view. On
 * error answers. */
int sl_op_change_prepare(sl_op_t *op, sl_locked_t *s);
/* After sl_op_tx_commit: publishes s->proj and frees it. Does not answer; returns 0, or -1 when
 * Redis could not be updated (cache_dirty stays 1 and the repair publishes later). */
int sl_op_change_publish(sl_op_t *op, sl_locked_t *s);
/* A call that changes nothing still answers only once the cache shows the session's truth: when an
 * earlier publish failed (cache_dirty), republish now, at a new version. */
int sl_op_settle(sl_op_t *op, sl_locked_t *s);
/* The answer for a failed publish after the commit (the change is saved). */
void sl_op_fail_unpublished(sl_op_t *op);
/* Clears cache_dirty of id at version (after a publish that succeeded; outside any transaction). */
void sl_mark_clean(sl_core_t *core, const char *id, size_t idlen, uint64_t version);
/* Clears what the op left pending (called after the answer). */
void sl_op_clean_pending(sl_op_t *op);

/* ---- a project change: every public page of the project shows its name, icon and colour ---- */

/* The sessions of one project that a change of the project republishes (projects.c). */
typedef struct sl_fanout {
    sl_locked_t *ch;
    size_t n;
    sl_store_result_t *rows;
} sl_fanout_t;

/* Inside the transaction, with the project row locked: locks the project's sessions and begins a
 * change (MARK, late build) of each that goes through the cache (public, or dirty), except the
 * session skip_id (the caller's own change). On error answers and returns -1; f is freed by
 * sl_fanout_free either way. */
int sl_fanout_begin(sl_op_t *op, int64_t project_id, const char *skip_id, size_t skip_len, sl_fanout_t *f);
/* After the project's statements, still inside the transaction: bumps each session's version. */
int sl_fanout_prepare(sl_op_t *op, sl_fanout_t *f);
/* After the COMMIT: builds and publishes each, one at a time. Returns how many could not be
 * published (cache_dirty stays 1 for those; the repair publishes them). */
size_t sl_fanout_publish(sl_op_t *op, sl_fanout_t *f);
void sl_fanout_free(sl_fanout_t *f);

/* ---- request fields (each answers invalid_argument and returns -1 when wrong) ---- */

int sl_op_session_id(sl_op_t *op, const char **id, size_t *len);
int sl_op_exchange_id(sl_op_t *op, int64_t *out);
/* An owner title: 1..500 bytes, no control characters; "" resets to the default. */
int sl_op_title(sl_op_t *op, const char **t, size_t *len);
/* An optional "project_ext_id" (the client's project id): 1 given, 0 absent, -1 answered. */
int sl_op_project_ext(sl_op_t *op, const char **ext, size_t *len);
/* 1 when the cell holds exactly ext[0..len). */
int sl_ext_matches(const sl_store_value_t *v, const char *ext, size_t len);
/* 1 when s[0..n) is "YYYY-MM-DDTHH:MM:SSZ" and a real date and time (years 1000-9999). */
int sl_valid_timestamp(const char *s, size_t n);
/* The length of the longest prefix of valid UTF-8 s[0..n) that is at most max bytes and ends on a
 * character boundary (for text cut to fit a column). */
size_t sl_utf8_prefix(const char *s, size_t n, size_t max);

/* Column limits that requests must meet before any SQL runs (a longer value would fail in MariaDB,
 * answered 500): exchanges.prompt is a MEDIUMTEXT, sessions.agent a VARCHAR(100). */
#define SL_MAX_PROMPT (16u * 1024 * 1024 - 1)
#define SL_MAX_AGENT  100

/* Uploads kept besides the current one (ExportSession "upload": 1 = the one before, ...). */
#define SL_UPLOADS_KEPT 5

/* ---- answers ---- */

void sl_pack_kv_str(msgpack_packer *pk, const char *k, const char *v, size_t n);
void sl_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v);
void sl_pack_kv_bool(msgpack_packer *pk, const char *k, int v);
/* "share_url": <base>/share/<id> */
void sl_op_pack_share_url(sl_op_t *op, const char *id, size_t idlen);

/* Result columns packed by name: cols[i] says how column i of a row is answered. */
typedef enum sl_col_kind {
    SL_COL_SKIP, /* read by the method, not answered */
    SL_COL_STR,  /* a string, nil when NULL */
    SL_COL_U64,
    SL_COL_BOOL,
} sl_col_kind_t;

typedef struct sl_col {
    const char *key;
    sl_col_kind_t kind;
} sl_col_t;

/* How many of cols are answered (not SKIP). */
size_t sl_cols_answered(const sl_col_t *cols, size_t ncols);
/* Packs the key/value pairs of row, cols[i] describing column first + i (no map header: the caller
 * counts sl_cols_answered()). */
void sl_pack_cols(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t first,
                  const sl_col_t *cols, size_t ncols);
/* A map of the answered columns of row. */
void sl_pack_row(msgpack_packer *pk, const sl_store_result_t *r, size_t row, const sl_col_t *cols,
                 size_t ncols);
/* One cell as a string (nil when NULL or not text). */
void sl_pack_cell_str(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t col);

/* ---- secret scanning (scan.c, docs/secrets.md) ---- */

enum { SL_SCAN_EXCHANGES = 1, SL_SCAN_TITLE = 2, SL_SCAN_ALL = 3 };
/* Inside the change's transaction, with the session row locked: scans the session's unscanned
 * exchanges and/or title (what: SL_SCAN_*), writes their findings and public text, and marks them
 * scanned. On error answers and returns -1. */
int sl_scan_pending(sl_op_t *op, const char *id, size_t idlen, int what);
/* "prompt", "response", "title", "session_title" (session_findings.field 0..3). */
const char *sl_scan_field_name(int field);
/* The background pass, run by the repair's timer task (repair.c) after the repair: an owner change
 * on each session that holds unscanned rows (changed behind the owner's back, or before migration
 * 9), at most 20 sessions or about a second per tick. */
void sl_scan_pass(sl_core_t *core);

/* ---- the methods (one file per capability) ---- */

void sl_owner_sync_session(sl_op_t *op);     /* sync.c */
void sl_owner_append_exchanges(sl_op_t *op); /* append.c */
void sl_owner_set_visibility(sl_op_t *op);   /* sharing.c */
void sl_owner_set_exchanges_hidden(sl_op_t *op);
void sl_owner_get_share_settings(sl_op_t *op);
void sl_owner_preview_as_viewer(sl_op_t *op);
void sl_owner_update_session_title(sl_op_t *op); /* edits.c */
void sl_owner_update_exchange_title(sl_op_t *op);
void sl_owner_delete_exchange(sl_op_t *op);
void sl_owner_delete_session(sl_op_t *op);
void sl_owner_get_session(sl_op_t *op); /* reads.c */
void sl_owner_export_session(sl_op_t *op);
void sl_owner_session_sizes(sl_op_t *op);
void sl_owner_list_sessions(sl_op_t *op); /* search.c */
void sl_owner_list_projects(sl_op_t *op); /* projects.c */
void sl_owner_update_project(sl_op_t *op);
void sl_owner_list_findings(sl_op_t *op); /* findings.c */
void sl_owner_resolve_finding(sl_op_t *op);

/* The ETag of an upload: the first 128 bits of the markdown's SHA-256, quoted. The same bytes
 * always give the same tag, so a client can tell whether the server holds its file (sync.c). */
void sl_upload_etag(const char *md, size_t len, char out[40]);
/* The current upload of a session, whole (its base and tail parts, sync.c), read on op's
 * connection (op->conn: in a transaction, one snapshot): *out malloc'd. 0, or -1 (answered). */
int sl_upload_read_whole(sl_op_t *op, const char *id, size_t idlen, char **out, size_t *len);
/* Removes an exchange: text wiped, id kept unused (edits.c). Answers on error. */
int sl_op_remove_exchange(sl_op_t *op, const char *id, size_t idlen, int64_t exchange_id);

/* Owner-side title of a session: its own, else its first exchange's (hidden or not: the owner sees
 * everything), else "Untitled session". Packs "title": ... */
void sl_pack_owner_title(msgpack_packer *pk, const sl_store_value_t *own, const sl_store_value_t *first);
/* A project as {"project_id", "name", "icon", "color"} from 4 consecutive columns from col. */
void sl_pack_project(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t col);

#endif
