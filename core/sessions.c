/*
 * Owner operations (shareline.v1.Sessions/<Method>). Each call runs as a task: authenticate, then
 * straight-line transactions. Every change that alters what viewers see follows one pipeline:
 *
 *   lock_session()   SELECT ... FOR UPDATE: owner check (another user's session is not_found) and
 *                    the row lock that serialises changes of one session;
 *   change_begin()   MARK in Redis when the session is or becomes public (else nothing to do);
 *   ...the change's own statements...
 *   change_commit()  bump version, build the projection inside the transaction, COMMIT, publish.
 *
 * Private sessions never touch Redis: nothing of theirs can be served, so there is nothing to
 * invalidate, and owners can keep working on them while Redis is down.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "core/internal.h"
#include "core/specstory.h"

typedef struct owner_op owner_op_t;
typedef void (*owner_fn)(owner_op_t *op);

struct owner_op {
    sl_core_t *core;
    sl_rpc_call_t *call;
    owner_fn fn;
    sl_principal_t who;
    sl_store_conn_t *conn; /* held while a transaction is open */
    int answered;
    char msg[256];
    /* cache_dirty to clear once the call is answered (its own commit costs a log flush) */
    int clean_pending;
    uint64_t clean_version;
    size_t clean_idlen;
    char clean_id[65];
};

static void fail(owner_op_t *op, sl_rpc_code_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(owner_op_t *op, sl_rpc_code_t code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    op->core->stats.owner_errors++;
    op->answered = 1;
    if (op->call)
        sl_rpc_fail(op->call, code, "%s", msg);
    else /* the cache repair (no caller) */
        fprintf(stderr, "shareline: cache repair: %s\n", msg);
}

static void fail_store(owner_op_t *op, const sl_store_error_t *err)
{
    op->core->stats.owner_errors++;
    op->answered = 1;
    if (op->call)
        sl_fail_store(op->call, err);
    else
        fprintf(stderr, "shareline: cache repair: store error: %s\n", err->message);
}

static void reply(owner_op_t *op)
{
    op->answered = 1;
    sl_rpc_reply(op->call);
}

static msgpack_packer *pk(owner_op_t *op)
{
    return sl_rpc_packer(op->call);
}

static const msgpack_object *req(owner_op_t *op)
{
    return sl_rpc_request(op->call);
}

/* ---- transactions ---- */

static const char SQL_BEGIN[] = "START TRANSACTION";
static const char SQL_COMMIT[] = "COMMIT";

/* Runs a statement on the op's connection; on error answers the call and returns -1. The result is
 * handed to *res when res is non-NULL, else freed. */
static int run(owner_op_t *op, const char *sql, const sl_store_value_t *p, size_t n, sl_store_result_t **res)
{
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_exec(op->conn, sql, p, n, &err);
    if (r == NULL) {
        fail_store(op, &err);
        return -1;
    }
    if (res)
        *res = r;
    else
        sl_store_result_free(r);
    return 0;
}

static int tx_begin(owner_op_t *op)
{
    sl_store_error_t err;
    op->conn = sl_await_acquire(op->core->owner, &err);
    if (op->conn == NULL) {
        fail_store(op, &err);
        return -1;
    }
    return run(op, SQL_BEGIN, NULL, 0, NULL);
}

/* The connection goes back to the pool; if the transaction is still open the store rolls it back. */
static void tx_end(owner_op_t *op)
{
    if (op->conn) {
        sl_store_release(op->conn);
        op->conn = NULL;
    }
}

typedef struct locked {
    const char *id;
    size_t idlen;
    uint64_t version;  /* before the change */
    int is_public;
    uint32_t seq;      /* exchange_seq */
    int deleted;
    int exists;
    uint64_t new_version;
    int cached;        /* the change must go through Redis */
    int dirty;         /* cache_dirty: a publish of this session may have failed (see change_commit) */
} locked_t;

static const char SQL_LOCK[] = "SELECT owner_id, version, is_public, exchange_seq, deleted_at IS NOT NULL,"
                               " cache_dirty FROM sessions WHERE id = ? FOR UPDATE";

/* Locks the session row. Unknown, deleted (unless allow_deleted) or another user's: not_found. */
static int lock_session(owner_op_t *op, const char *id, size_t idlen, int allow_absent, locked_t *s)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->idlen = idlen;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (run(op, SQL_LOCK, p, 1, &r) != 0)
        return -1;
    if (r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == op->who.user_id) {
        s->exists = 1;
        s->version = (uint64_t)sl_store_cell(r, 0, 1)->i;
        s->is_public = sl_store_cell(r, 0, 2)->i != 0;
        s->seq = (uint32_t)sl_store_cell(r, 0, 3)->i;
        s->deleted = sl_store_cell(r, 0, 4)->i != 0;
        s->dirty = sl_store_cell(r, 0, 5)->i != 0;
    } else if (r->nrows == 1 || !allow_absent) {
        /* Another user's session looks exactly like a missing one. */
        sl_store_result_free(r);
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return -1;
    }
    sl_store_result_free(r);
    if (s->deleted && !allow_absent) {
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return -1;
    }
    return 0;
}

static int change_begin(owner_op_t *op, locked_t *s, int becomes_public)
{
    s->new_version = s->version + 1;
    /* A dirty session goes through Redis whatever its state: that publish is what replaces an
     * entry a failed publish may have left behind (docs/invalidation.md, "Repair"). */
    s->cached = (s->exists && !s->deleted && s->is_public) || becomes_public || (s->exists && s->dirty);
    if (s->cached && sl_invalidate_begin(op->core, s->id, s->idlen, s->new_version) != 0) {
        fail(op, SL_RPC_UNAVAILABLE, "the share cache is unavailable; nothing was changed, retry later");
        return -1;
    }
    return 0;
}

static const char SQL_BUMP[] = "UPDATE sessions SET version = ?, updated_at = NOW(6) WHERE id = ?";
/* A change that will be published: cache_dirty stays 1 until the publish is known to be done. */
static const char SQL_BUMP_DIRTY[] = "UPDATE sessions SET version = ?, updated_at = NOW(6), cache_dirty = 1"
                                     " WHERE id = ?";
static const char SQL_CLEAN[] = "UPDATE sessions SET cache_dirty = 0 WHERE id = ? AND version = ?";

/* After a publish that succeeded: the session's Redis entry is its truth at `version`. Outside the
 * transaction (it is committed); when this fails the repair republishes later, which is harmless. */
static void mark_clean(sl_core_t *core, const char *id, size_t idlen, uint64_t version)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int((int64_t)version)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_CLEAN, p, 2, &err);
    sl_store_result_free(r);
}

static int change_commit(owner_op_t *op, locked_t *s)
{
    sl_store_value_t p[] = {sl_store_int((int64_t)s->new_version), sl_store_text(s->id, s->idlen)};
    if (run(op, s->cached ? SQL_BUMP_DIRTY : SQL_BUMP, p, 2, NULL) != 0)
        return -1;
    sl_projection_t proj = {0};
    if (s->cached) {
        /* Built inside the transaction: the public views show this transaction's own changes. */
        sl_store_error_t err;
        if (sl_projection_load(op->core, op->core->owner, op->conn, SL_VIEW_PUBLIC, s->id, s->idlen, &proj,
                               &err) != 0) {
            fail_store(op, &err);
            return -1;
        }
        proj.version = s->new_version;
    }
    if (run(op, SQL_COMMIT, NULL, 0, NULL) != 0) {
        sl_projection_free(&proj);
        return -1;
    }
    tx_end(op);
    int rc = 0;
    if (s->cached && sl_invalidate_finish(op->core, s->id, s->idlen, &proj) != 0) {
        /* cache_dirty stays 1: the next owner call on this session, or the repair, publishes. */
        fail(op, SL_RPC_UNAVAILABLE,
             "the change was saved, but the share cache could not be updated; retry the call");
        rc = -1;
    } else if (s->cached) {
        if (op->clean_pending) /* a second change in one call: clean the first now */
            mark_clean(op->core, op->clean_id, op->clean_idlen, op->clean_version);
        op->clean_pending = s->idlen < sizeof(op->clean_id);
        if (op->clean_pending) {
            memcpy(op->clean_id, s->id, s->idlen);
            op->clean_idlen = s->idlen;
            op->clean_version = s->new_version;
        }
    }
    sl_projection_free(&proj);
    return rc;
}

/* A call that changes nothing still answers only once the cache shows the session's truth: when an
 * earlier publish failed (cache_dirty), republish now, at a new version. */
static int settle(owner_op_t *op, locked_t *s)
{
    if (!s->dirty)
        return 0;
    return change_begin(op, s, 0) != 0 || change_commit(op, s) != 0 ? -1 : 0;
}

/* ---- helpers for fields ---- */

static int get_session_id(owner_op_t *op, const char **id, size_t *len)
{
    int rc = sl_rpc_get_str(req(op), "session_id", 1, 64, id, len, op->msg, sizeof(op->msg));
    if (rc != 1) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return -1;
    }
    if (!sl_rpc_id_valid(*id, *len)) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"session_id\" must be 1-64 characters of A-Z a-z 0-9 - _");
        return -1;
    }
    return 0;
}

static void pack_kv_str(owner_op_t *op, const char *k, const char *v, size_t n)
{
    sl_rpc_pack_str(pk(op), k);
    sl_rpc_pack_strn(pk(op), v, n);
}

static void pack_kv_u64(owner_op_t *op, const char *k, uint64_t v)
{
    sl_rpc_pack_str(pk(op), k);
    msgpack_pack_uint64(pk(op), v);
}

static void pack_kv_bool(owner_op_t *op, const char *k, int v)
{
    sl_rpc_pack_str(pk(op), k);
    if (v)
        msgpack_pack_true(pk(op));
    else
        msgpack_pack_false(pk(op));
}

static void pack_share_url(owner_op_t *op, const char *id, size_t idlen)
{
    char url[1200];
    int n = snprintf(url, sizeof(url), "%s/share/%.*s", op->core->base_url, (int)idlen, id);
    pack_kv_str(op, "share_url", url, (size_t)n);
}

/* ---- SyncSession ---- */

static const char SQL_PROJECT_UPSERT[] =
    "INSERT INTO projects (tenant_id, owner_id, ext_id, name, icon, color) VALUES (?, ?, ?, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), name = VALUES(name),"
    " icon = IF(? = 1, VALUES(icon), icon), color = IF(? = 1, VALUES(color), color), updated_at = NOW(6)";
static const char SQL_SESSION_INSERT[] =
    "INSERT INTO sessions (id, tenant_id, owner_id, project_id, title, is_public, version, exchange_seq, agent)"
    " VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?)";
static const char SQL_SESSION_UPDATE[] =
    "UPDATE sessions SET project_id = ?, title = COALESCE(?, title), exchange_seq = ?, agent = ?,"
    " is_public = IF(deleted_at IS NULL, is_public, 0), deleted_at = NULL WHERE id = ?";
static const char SQL_EXCHANGES_OF[] = "SELECT id, prompt_sha256, deleted_at IS NOT NULL FROM exchanges"
                                       " WHERE session_id = ? ORDER BY position, id";
static const char SQL_EXCHANGE_INSERT[] =
    "INSERT INTO exchanges (session_id, id, position, default_title, prompt, response, prompt_sha256, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE(STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'), NOW(6)))";
static const char SQL_EXCHANGE_UPDATE[] =
    "UPDATE exchanges SET position = ?, default_title = ?, prompt = ?, response = ?, updated_at = NOW(6)"
    " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
static const char SQL_EXCHANGE_REMOVE[] =
    "UPDATE exchanges SET deleted_at = NOW(6), prompt = '', response = '', title = NULL, updated_at = NOW(6)"
    " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
static const char SQL_UPLOAD_UPSERT[] =
    "INSERT INTO session_uploads (session_id, markdown, raw_data, session_data, metadata) VALUES (?, ?, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE markdown = VALUES(markdown), raw_data = VALUES(raw_data),"
    " session_data = VALUES(session_data), metadata = VALUES(metadata), updated_at = NOW(6)";

typedef struct existing {
    int64_t id;
    unsigned char sha[32];
    int deleted;
    int matched;
} existing_t;

/* "2026-08-03 21:15:02Z"-style headings are timestamps, not titles. */
static int looks_like_timestamp(const char *s)
{
    return s && strlen(s) >= 10 && s[4] == '-' && s[7] == '-' && s[0] >= '0' && s[0] <= '9';
}

static void new_session_id(char out[37])
{
    unsigned char b[16];
    uint64_t a = sl_random_u64(), c = sl_random_u64();
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The ETag of an upload: the first 128 bits of the markdown's SHA-256, quoted. The same bytes
 * always give the same tag, so a client can tell whether the server holds its file. */
static void upload_etag(const char *md, size_t len, char out[40])
{
    unsigned char sha[32];
    SHA256((const unsigned char *)md, len, sha);
    int k = snprintf(out, 40, "\"");
    for (int i = 0; i < 16; i++)
        k += snprintf(out + k, 40 - (size_t)k, "%02x", sha[i]);
    snprintf(out + k, 40 - (size_t)k, "\"");
}

static void sync_session(owner_op_t *op)
{
    sl_core_t *core = op->core;
    const msgpack_object *m = req(op);
    const char *id = NULL, *title = NULL, *markdown = NULL, *raw = NULL, *sdata = NULL;
    size_t idlen = 0, title_len = 0, md_len = 0, raw_len = 0, sdata_len = 0;
    const char *pid = NULL, *pname = NULL, *picon = NULL, *pcolor = NULL;
    size_t pid_len = 0, pname_len = 0, picon_len = 0, pcolor_len = 0;
    int rc;

    if ((rc = sl_rpc_get_str(m, "session_id", 0, 64, &id, &idlen, op->msg, sizeof(op->msg))) < 0)
        goto bad;
    if (rc == 1 && !sl_rpc_id_valid(id, idlen)) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"session_id\" must be 1-64 characters of A-Z a-z 0-9 - _");
        return;
    }
    if (sl_rpc_get_str(m, "title", 0, 500, &title, &title_len, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "markdown", 1, core->cfg.max_markdown, &markdown, &md_len, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(m, "raw_data", 0, core->cfg.max_markdown, &raw, &raw_len, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "session_data", 0, core->cfg.max_markdown, &sdata, &sdata_len, op->msg, sizeof(op->msg)) < 0)
        goto bad;
    const msgpack_object *project = sl_rpc_field(m, "project");
    if (project == NULL || project->type != MSGPACK_OBJECT_MAP) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project\" must be a map with at least \"name\"");
        return;
    }
    if (sl_rpc_get_str(project, "name", 1, 200, &pname, &pname_len, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(project, "id", 0, 200, &pid, &pid_len, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(project, "icon", 0, 64, &picon, &picon_len, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(project, "color", 0, 32, &pcolor, &pcolor_len, op->msg, sizeof(op->msg)) < 0)
        goto bad;
    if (pname_len == 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project.name\" must not be empty");
        return;
    }
    const msgpack_object *metadata = sl_rpc_field(m, "metadata");
    if (metadata != NULL && metadata->type != MSGPACK_OBJECT_MAP) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"metadata\" must be a map");
        return;
    }

    sl_specstory_doc_t doc;
    char perr[256];
    if (sl_specstory_parse(markdown, md_len, &doc, perr, sizeof(perr)) != 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"markdown\": %s", perr);
        return;
    }
    if (doc.count > core->cfg.max_exchanges) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "the session has %zu exchanges; the limit is %u", doc.count,
             core->cfg.max_exchanges);
        sl_specstory_free(&doc);
        return;
    }

    char gen_id[37];
    if (id == NULL) {
        new_session_id(gen_id);
        id = gen_id;
        idlen = strlen(gen_id);
    }
    msgpack_sbuffer meta;
    msgpack_sbuffer_init(&meta);
    if (metadata) {
        msgpack_packer mp;
        msgpack_packer_init(&mp, &meta, msgpack_sbuffer_write);
        msgpack_pack_object(&mp, *metadata);
    }
    existing_t *ex = NULL;
    size_t nex = 0;
    sl_store_result_t *r = NULL;
    locked_t s;

    if (tx_begin(op) != 0)
        goto out;
    /* The project: found by (owner, client id), created on first use. */
    {
        if (pid == NULL || pid_len == 0) {
            pid = pname;
            pid_len = pname_len;
        }
        sl_store_value_t p[] = {sl_store_int((int64_t)op->who.tenant_id), sl_store_int((int64_t)op->who.user_id),
                                sl_store_text(pid, pid_len), sl_store_text(pname, pname_len),
                                sl_store_text(picon ? picon : "", picon_len), sl_store_text(pcolor ? pcolor : "", pcolor_len),
                                sl_store_int(picon != NULL), sl_store_int(pcolor != NULL)};
        if (run(op, SQL_PROJECT_UPSERT, p, 8, &r) != 0)
            goto out;
    }
    int64_t project_id = (int64_t)r->insert_id;
    sl_store_result_free(r);
    r = NULL;

    if (lock_session(op, id, idlen, 1, &s) != 0)
        goto out;
    int created = !s.exists;
    const char *agent = doc.agent ? doc.agent : "";
    if (created) {
        const char *t = title;
        size_t tl = title_len;
        if (t == NULL) {
            /* '' = no title of its own: viewers see the first visible exchange's title (see
             * projection.c), never that of a hidden one. */
            t = (doc.title && !looks_like_timestamp(doc.title)) ? doc.title : "";
            tl = strlen(t);
            if (tl > 500)
                tl = 500; /* titles from the importer are short; this only guards the column */
        }
        sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int((int64_t)op->who.tenant_id),
                                sl_store_int((int64_t)op->who.user_id), sl_store_int(project_id),
                                sl_store_text(t, tl), sl_store_text(agent, strlen(agent))};
        sl_store_error_t err;
        r = sl_await_exec(op->conn, SQL_SESSION_INSERT, p, 6, &err);
        if (r == NULL) {
            if (err.code == SL_STORE_E_DUP)
                fail(op, SL_RPC_NOT_FOUND, "session not found"); /* created meanwhile by someone else */
            else
                fail_store(op, &err);
            goto out;
        }
        sl_store_result_free(r);
        r = NULL;
    } else if (!s.deleted) {
        /* Existing exchanges, to keep the owner's edits on those still in the upload. A deleted
         * session that is synced again starts over: its old exchanges stay removed. */
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (run(op, SQL_EXCHANGES_OF, p, 1, &r) != 0)
            goto out;
        nex = r->nrows;
        ex = calloc(nex ? nex : 1, sizeof(*ex));
        if (ex == NULL) {
            fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nex; i++) {
            ex[i].id = sl_store_cell(r, i, 0)->i;
            const sl_store_value_t *h = sl_store_cell(r, i, 1);
            if (h->len == 32)
                memcpy(ex[i].sha, h->ptr, 32);
            ex[i].deleted = sl_store_cell(r, i, 2)->i != 0;
        }
        sl_store_result_free(r);
        r = NULL;
    }
    if (change_begin(op, &s, 0) != 0)
        goto out;

    /* Match the upload's exchanges to the stored ones in order, by the hash of their prompt. */
    uint32_t seq = s.seq;
    size_t cursor = 0;
    for (size_t i = 0; i < doc.count; i++) {
        const sl_specstory_exchange_t *e = &doc.exchanges[i];
        unsigned char sha[32];
        SHA256((const unsigned char *)e->prompt, e->prompt_len, sha);
        size_t k = cursor;
        while (k < nex && (ex[k].matched || memcmp(ex[k].sha, sha, 32) != 0))
            k++;
        sl_store_value_t pos = sl_store_int((int64_t)i + 1);
        sl_store_value_t ttl = sl_store_text(e->title, strlen(e->title));
        sl_store_value_t prm = sl_store_text(e->prompt, e->prompt_len);
        sl_store_value_t rsp = sl_store_text(e->response, e->response_len);
        sl_store_value_t sid = sl_store_text(id, idlen);
        if (k < nex) {
            ex[k].matched = 1;
            cursor = k + 1;
            if (ex[k].deleted)
                continue; /* the owner deleted it: it stays deleted */
            sl_store_value_t p[] = {pos, ttl, prm, rsp, sid, sl_store_int(ex[k].id)};
            if (run(op, SQL_EXCHANGE_UPDATE, p, 6, NULL) != 0)
                goto out;
        } else {
            seq++;
            sl_store_value_t p[] = {sid, sl_store_int(seq), pos, ttl, prm, rsp, sl_store_blob(sha, 32),
                                    e->created_at ? sl_store_text(e->created_at, strlen(e->created_at))
                                                  : sl_store_null()};
            if (run(op, SQL_EXCHANGE_INSERT, p, 8, NULL) != 0)
                goto out;
        }
    }
    /* Stored exchanges that are no longer in the upload are removed (text wiped, id kept unused). */
    for (size_t k = 0; k < nex; k++) {
        if (ex[k].matched || ex[k].deleted)
            continue;
        sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(ex[k].id)};
        if (run(op, SQL_EXCHANGE_REMOVE, p, 2, NULL) != 0)
            goto out;
    }
    {
        sl_store_value_t p[] = {sl_store_int(project_id), title ? sl_store_text(title, title_len) : sl_store_null(),
                                sl_store_int(seq), sl_store_text(agent, strlen(agent)), sl_store_text(id, idlen)};
        if (run(op, SQL_SESSION_UPDATE, p, 5, NULL) != 0)
            goto out;
    }
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_blob(markdown, md_len),
                                raw ? sl_store_blob(raw, raw_len) : sl_store_null(),
                                sdata ? sl_store_blob(sdata, sdata_len) : sl_store_null(),
                                metadata ? sl_store_blob(meta.data, meta.size) : sl_store_null()};
        if (run(op, SQL_UPLOAD_UPSERT, p, 5, NULL) != 0)
            goto out;
    }
    if (change_commit(op, &s) != 0)
        goto out;

    char etag[40];
    upload_etag(markdown, md_len, etag);

    msgpack_pack_map(pk(op), 5);
    pack_kv_str(op, "session_id", id, idlen);
    pack_kv_bool(op, "created", created);
    pack_kv_u64(op, "version", s.new_version);
    pack_kv_str(op, "etag", etag, strlen(etag));
    pack_kv_u64(op, "exchange_count", doc.count);
    reply(op);
out:
    free(ex);
    msgpack_sbuffer_destroy(&meta);
    sl_specstory_free(&doc);
    return;
bad:
    fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
}

/* ---- SetVisibility ---- */

static const char SQL_SET_PUBLIC[] = "UPDATE sessions SET is_public = ? WHERE id = ?";

static void set_visibility(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    int want;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    if (sl_rpc_get_bool(req(op), "public", 1, &want, op->msg, sizeof(op->msg)) != 1) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    locked_t s;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0)
        return;
    uint64_t version = s.version;
    if (s.is_public != want) {
        if (change_begin(op, &s, want) != 0)
            return;
        sl_store_value_t p[] = {sl_store_int(want), sl_store_text(id, idlen)};
        if (run(op, SQL_SET_PUBLIC, p, 2, NULL) != 0 || change_commit(op, &s) != 0)
            return;
        version = s.new_version;
    } else if (s.dirty) {
        if (settle(op, &s) != 0)
            return;
        version = s.new_version;
    }
    msgpack_pack_map(pk(op), 3);
    pack_kv_bool(op, "public", want);
    pack_share_url(op, id, idlen);
    pack_kv_u64(op, "version", version);
    reply(op);
}

/* ---- SetExchangesHidden ---- */

#define MAX_IDS_PER_CALL 10000

static const char SQL_LIVE_EXCHANGES[] = "SELECT id, hidden FROM exchanges WHERE session_id = ? AND deleted_at IS NULL";
static const char SQL_SET_HIDDEN[] = "UPDATE exchanges SET hidden = ?, updated_at = NOW(6)"
                                     " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
static const char SQL_HIDDEN_COUNT[] = "SELECT COUNT(*) FROM exchanges"
                                       " WHERE session_id = ? AND hidden = 1 AND deleted_at IS NULL";

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void set_exchanges_hidden(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    int hidden;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    if (sl_rpc_get_bool(req(op), "hidden", 1, &hidden, op->msg, sizeof(op->msg)) != 1) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    const msgpack_object *ids = sl_rpc_field(req(op), "exchange_ids");
    if (ids == NULL || ids->type != MSGPACK_OBJECT_ARRAY || ids->via.array.size == 0 ||
        ids->via.array.size > MAX_IDS_PER_CALL) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"exchange_ids\" must be an array of 1 to %d exchange ids",
             MAX_IDS_PER_CALL);
        return;
    }
    size_t n = ids->via.array.size;
    int64_t *want = malloc(n * sizeof(*want));
    if (want == NULL) {
        fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *o = &ids->via.array.ptr[i];
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "field \"exchange_ids\" must hold positive integers");
            free(want);
            return;
        }
        want[i] = (int64_t)o->via.u64;
    }
    qsort(want, n, sizeof(*want), cmp_i64);

    sl_store_result_t *r = NULL;
    int64_t *change = NULL;
    size_t nchange = 0;
    locked_t s;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0)
        goto out;
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (run(op, SQL_LIVE_EXCHANGES, p, 1, &r) != 0)
            goto out;
    }
    change = malloc(n * sizeof(*change));
    if (change == NULL) {
        fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && want[i] == want[i - 1])
            continue;
        size_t row = 0;
        while (row < r->nrows && sl_store_cell(r, row, 0)->i != want[i])
            row++;
        if (row == r->nrows) {
            fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session", (long long)want[i]);
            goto out;
        }
        if ((sl_store_cell(r, row, 1)->i != 0) != hidden)
            change[nchange++] = want[i];
    }
    uint64_t version = s.version;
    int publish = nchange > 0 || s.dirty; /* nothing to change, but an earlier publish failed */
    if (publish) {
        if (change_begin(op, &s, 0) != 0)
            goto out;
        for (size_t i = 0; i < nchange; i++) {
            sl_store_value_t p[] = {sl_store_int(hidden), sl_store_text(id, idlen), sl_store_int(change[i])};
            if (run(op, SQL_SET_HIDDEN, p, 3, NULL) != 0)
                goto out;
        }
    }
    sl_store_result_free(r);
    r = NULL;
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (run(op, SQL_HIDDEN_COUNT, p, 1, &r) != 0)
            goto out;
    }
    int64_t hidden_count = sl_store_cell(r, 0, 0)->i;
    if (publish) {
        if (change_commit(op, &s) != 0)
            goto out;
        version = s.new_version;
    }
    msgpack_pack_map(pk(op), 2);
    pack_kv_u64(op, "hidden_count", (uint64_t)hidden_count);
    pack_kv_u64(op, "version", version);
    reply(op);
out:
    sl_store_result_free(r);
    free(change);
    free(want);
}

/* ---- GetShareSettings ---- */

static const char SQL_SETTINGS[] =
    "SELECT s.owner_id, s.is_public,"
    " (SELECT COUNT(*) FROM exchanges e WHERE e.session_id = s.id AND e.hidden = 1 AND e.deleted_at IS NULL),"
    " (SELECT COUNT(*) FROM exchanges e WHERE e.session_id = s.id AND e.deleted_at IS NULL)"
    " FROM sessions s WHERE s.id = ? AND s.deleted_at IS NULL";

static void get_share_settings(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_SETTINGS, p, 1, &err);
    if (r == NULL) {
        fail_store(op, &err);
        return;
    }
    if (r->nrows != 1 || (uint64_t)sl_store_cell(r, 0, 0)->i != op->who.user_id) {
        sl_store_result_free(r);
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    msgpack_pack_map(pk(op), 4);
    pack_kv_bool(op, "public", sl_store_cell(r, 0, 1)->i != 0);
    pack_share_url(op, id, idlen);
    pack_kv_u64(op, "hidden_count", (uint64_t)sl_store_cell(r, 0, 2)->i);
    pack_kv_u64(op, "exchange_count", (uint64_t)sl_store_cell(r, 0, 3)->i);
    sl_store_result_free(r);
    reply(op);
}

/* ---- shared by the methods below ---- */

static int get_project_ext(owner_op_t *op, const char **ext, size_t *len);
static int ext_matches(const sl_store_value_t *v, const char *ext, size_t len);

static int get_exchange_id(owner_op_t *op, int64_t *out)
{
    if (sl_rpc_get_i64(req(op), "exchange_id", 1, 1, UINT32_MAX, out, op->msg, sizeof(op->msg)) != 1) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return -1;
    }
    return 0;
}

/* A title set by the owner: 1..500 bytes, no control characters; "" resets to the default. */
static int get_title(owner_op_t *op, const char **t, size_t *len)
{
    if (sl_rpc_get_str(req(op), "title", 1, 500, t, len, op->msg, sizeof(op->msg)) != 1) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return -1;
    }
    for (size_t i = 0; i < *len; i++)
        if ((unsigned char)(*t)[i] < 0x20) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "field \"title\" must not contain control characters or newlines");
            return -1;
        }
    return 0;
}

static void pack_version_only(owner_op_t *op, uint64_t version)
{
    msgpack_pack_map(pk(op), 1);
    pack_kv_u64(op, "version", version);
    reply(op);
}

static void pack_cell_str(owner_op_t *op, const sl_store_result_t *r, size_t row, size_t col)
{
    const sl_store_value_t *v = sl_store_cell(r, row, col);
    if (v->type == SL_STORE_TEXT)
        sl_rpc_pack_strn(pk(op), v->ptr, v->len);
    else
        msgpack_pack_nil(pk(op));
}

static void pack_project(owner_op_t *op, const sl_store_result_t *r, size_t row, size_t col)
{
    /* cols: id, name, icon, color */
    msgpack_pack_map(pk(op), 4);
    pack_kv_u64(op, "project_id", (uint64_t)sl_store_cell(r, row, col)->i);
    sl_rpc_pack_str(pk(op), "name");
    pack_cell_str(op, r, row, col + 1);
    sl_rpc_pack_str(pk(op), "icon");
    pack_cell_str(op, r, row, col + 2);
    sl_rpc_pack_str(pk(op), "color");
    pack_cell_str(op, r, row, col + 3);
}

/* ---- AppendExchanges ---- */

#define MAX_APPEND_PER_CALL 1000

static const char SQL_MAX_POSITION[] = "SELECT COALESCE(MAX(position), 0), COUNT(*) FROM exchanges"
                                       " WHERE session_id = ? AND deleted_at IS NULL";
static const char SQL_APPEND_INSERT[] =
    "INSERT INTO exchanges (session_id, id, position, title, default_title, prompt, response, prompt_sha256,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, COALESCE(STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'), NOW(6)))";
static const char SQL_SET_SEQ[] = "UPDATE sessions SET exchange_seq = ? WHERE id = ?";

static int valid_timestamp(const char *s, size_t n)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (n != 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return 0;
    return 1;
}

static void append_exchanges(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    const msgpack_object *arr = sl_rpc_field(req(op), "exchanges");
    if (arr == NULL || arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size == 0 ||
        arr->via.array.size > MAX_APPEND_PER_CALL) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"exchanges\" must be an array of 1 to %d exchanges",
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
            fail(op, SL_RPC_INVALID_ARGUMENT, "%s must be a map", where);
            return;
        }
        if (sl_rpc_get_str(e, "prompt", 1, op->core->cfg.max_markdown, &s, &l, op->msg, sizeof(op->msg)) != 1 ||
            sl_rpc_get_str(e, "response", 1, op->core->cfg.max_markdown, &s, &l, op->msg, sizeof(op->msg)) != 1 ||
            sl_rpc_get_str(e, "title", 0, 500, &s, &l, op->msg, sizeof(op->msg)) < 0) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "%s: %s", where, op->msg);
            return;
        }
        int has_ts = sl_rpc_get_str(e, "created_at", 0, 64, &s, &l, op->msg, sizeof(op->msg));
        if (has_ts < 0 || (has_ts == 1 && !valid_timestamp(s, l))) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "%s: field \"created_at\" must be YYYY-MM-DDTHH:MM:SSZ", where);
            return;
        }
    }
    locked_t s;
    sl_store_result_t *r = NULL;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0)
        return;
    {
        sl_store_value_t p[] = {sl_store_text(id, idlen)};
        if (run(op, SQL_MAX_POSITION, p, 1, &r) != 0)
            return;
    }
    int64_t position = sl_store_cell(r, 0, 0)->i;
    int64_t live = sl_store_cell(r, 0, 1)->i;
    sl_store_result_free(r);
    if ((uint64_t)live + n > op->core->cfg.max_exchanges) {
        fail(op, SL_RPC_FAILED_PRECONDITION, "a session holds at most %u exchanges; it has %lld",
             op->core->cfg.max_exchanges, (long long)live);
        return;
    }
    if (change_begin(op, &s, 0) != 0)
        return;
    uint32_t seq = s.seq;
    uint32_t *ids = malloc(n * sizeof(*ids));
    if (ids == NULL) {
        fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        const char *prompt, *response, *title = NULL, *ts = NULL;
        size_t plen, rlen, tlen = 0, tslen = 0;
        sl_rpc_get_str(e, "prompt", 1, op->core->cfg.max_markdown, &prompt, &plen, op->msg, sizeof(op->msg));
        sl_rpc_get_str(e, "response", 1, op->core->cfg.max_markdown, &response, &rlen, op->msg, sizeof(op->msg));
        sl_rpc_get_str(e, "title", 0, 500, &title, &tlen, op->msg, sizeof(op->msg));
        sl_rpc_get_str(e, "created_at", 0, 64, &ts, &tslen, op->msg, sizeof(op->msg));
        char *def = sl_specstory_title(prompt, plen);
        if (def == NULL) {
            fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            free(ids);
            return;
        }
        unsigned char sha[32];
        SHA256((const unsigned char *)prompt, plen, sha);
        ids[i] = ++seq;
        sl_store_value_t p[] = {sl_store_text(id, idlen),
                                sl_store_int(seq),
                                sl_store_int(++position),
                                (title && tlen) ? sl_store_text(title, tlen) : sl_store_null(),
                                sl_store_text(def, strlen(def)),
                                sl_store_text(prompt, plen),
                                sl_store_text(response, rlen),
                                sl_store_blob(sha, 32),
                                ts ? sl_store_text(ts, tslen) : sl_store_null()};
        int rc = run(op, SQL_APPEND_INSERT, p, 9, NULL);
        free(def);
        if (rc != 0) {
            free(ids);
            return;
        }
    }
    sl_store_value_t q[] = {sl_store_int(seq), sl_store_text(id, idlen)};
    if (run(op, SQL_SET_SEQ, q, 2, NULL) != 0 || change_commit(op, &s) != 0) {
        free(ids);
        return;
    }
    msgpack_pack_map(pk(op), 3);
    pack_kv_str(op, "session_id", id, idlen);
    pack_kv_u64(op, "version", s.new_version);
    sl_rpc_pack_str(pk(op), "exchange_ids");
    msgpack_pack_array(pk(op), n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_uint32(pk(op), ids[i]);
    free(ids);
    reply(op);
}

/* ---- GetSession ---- */

static const char SQL_GET_SESSION[] =
    "SELECT s.owner_id, s.title, s.is_public, s.version, DATE_FORMAT(s.created_at, '%Y-%m-%dT%H:%i:%sZ'),"
    " DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ'), s.agent, p.id, p.name, p.icon, p.color"
    " FROM sessions s JOIN projects p ON p.id = s.project_id WHERE s.id = ? AND s.deleted_at IS NULL";
static const char SQL_GET_EXCHANGES[] =
    "SELECT id, COALESCE(title, default_title), title, default_title, prompt, response, hidden,"
    " DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ') FROM exchanges"
    " WHERE session_id = ? AND deleted_at IS NULL ORDER BY position, id";

/* Owner-side title of a session: its own, else its first exchange's (hidden or not: the owner sees
 * everything), else "Untitled session". */
static void pack_owner_title(owner_op_t *op, const sl_store_value_t *own, const sl_store_value_t *first)
{
    sl_rpc_pack_str(pk(op), "title");
    if (own->type == SL_STORE_TEXT && own->len > 0)
        sl_rpc_pack_strn(pk(op), own->ptr, own->len);
    else if (first && first->type == SL_STORE_TEXT && first->len > 0)
        sl_rpc_pack_strn(pk(op), first->ptr, first->len);
    else
        sl_rpc_pack_str(pk(op), "Untitled session");
}

static void get_session(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_error_t err;
    sl_store_result_t *s = NULL, *e = NULL;
    /* One connection, one consistent snapshot for both statements. */
    if (tx_begin(op) != 0)
        return;
    if (run(op, SQL_GET_SESSION, p, 1, &s) != 0)
        return;
    if (s->nrows != 1 || (uint64_t)sl_store_cell(s, 0, 0)->i != op->who.user_id) {
        sl_store_result_free(s);
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    if (run(op, SQL_GET_EXCHANGES, p, 1, &e) != 0) {
        sl_store_result_free(s);
        return;
    }
    (void)err;
    tx_end(op);
    size_t hidden = 0;
    for (size_t i = 0; i < e->nrows; i++)
        hidden += sl_store_cell(e, i, 6)->i != 0;
    msgpack_pack_map(pk(op), 12);
    pack_kv_str(op, "session_id", id, idlen);
    pack_owner_title(op, sl_store_cell(s, 0, 1), e->nrows ? sl_store_cell(e, 0, 1) : NULL);
    sl_rpc_pack_str(pk(op), "custom_title");
    if (sl_store_cell(s, 0, 1)->len > 0)
        pack_cell_str(op, s, 0, 1);
    else
        msgpack_pack_nil(pk(op));
    pack_kv_bool(op, "public", sl_store_cell(s, 0, 2)->i != 0);
    pack_kv_u64(op, "version", (uint64_t)sl_store_cell(s, 0, 3)->i);
    sl_rpc_pack_str(pk(op), "created_at");
    pack_cell_str(op, s, 0, 4);
    sl_rpc_pack_str(pk(op), "updated_at");
    pack_cell_str(op, s, 0, 5);
    sl_rpc_pack_str(pk(op), "agent");
    pack_cell_str(op, s, 0, 6);
    sl_rpc_pack_str(pk(op), "project");
    pack_project(op, s, 0, 7);
    pack_kv_u64(op, "exchange_count", e->nrows);
    pack_kv_u64(op, "hidden_count", hidden);
    sl_rpc_pack_str(pk(op), "exchanges");
    msgpack_pack_array(pk(op), e->nrows);
    for (size_t i = 0; i < e->nrows; i++) {
        msgpack_pack_map(pk(op), 7);
        pack_kv_u64(op, "id", (uint64_t)sl_store_cell(e, i, 0)->i);
        sl_rpc_pack_str(pk(op), "title");
        pack_cell_str(op, e, i, 1);
        sl_rpc_pack_str(pk(op), "custom_title");
        pack_cell_str(op, e, i, 2);
        sl_rpc_pack_str(pk(op), "prompt");
        pack_cell_str(op, e, i, 4);
        sl_rpc_pack_str(pk(op), "response");
        pack_cell_str(op, e, i, 5);
        pack_kv_bool(op, "hidden", sl_store_cell(e, i, 6)->i != 0);
        sl_rpc_pack_str(pk(op), "created_at");
        pack_cell_str(op, e, i, 7);
    }
    sl_store_result_free(s);
    sl_store_result_free(e);
    reply(op);
}

/* ---- ListSessions ---- */

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE 200

/* Newest first by (updated_at, id): keyset pagination, stable under inserts. The page token is
 * "<updated_at micros>.<id>" of the last row of the previous page. query = LIKE over the session
 * title and the exchanges' titles, prompts and responses (hidden ones too: the owner sees all). */
#define LIST_SQL(SNIPPET_MATCH, EXCHANGE_MATCH)                                                                \
    "SELECT s.id, s.title, s.is_public, DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ'),"                      \
    " p.id, p.name, p.icon, p.color, CAST(UNIX_TIMESTAMP(s.updated_at) * 1000000 AS UNSIGNED),"                 \
    " (SELECT COALESCE(e.title, e.default_title) FROM exchanges e WHERE e.session_id = s.id"                      \
    "   AND e.deleted_at IS NULL ORDER BY e.position, e.id LIMIT 1),"                                             \
    " (SELECT SUBSTRING(CONCAT(e.prompt, '\n', e.response),"                                                     \
    "    GREATEST(1, LOCATE(?, CONCAT(e.prompt, '\n', e.response)) - 60), 200)"                                   \
    "   FROM exchanges e WHERE ? <> '' AND e.session_id = s.id AND e.deleted_at IS NULL"                        \
    "   AND " SNIPPET_MATCH " ORDER BY e.position LIMIT 1)"                                                     \
    " FROM sessions s JOIN projects p ON p.id = s.project_id"                                                     \
    " WHERE s.owner_id = ? AND s.deleted_at IS NULL"                                                              \
    " AND (? = '' OR FIND_IN_SET(s.project_id, ?)) AND (? = '' OR p.ext_id = ?)"                                \
    " AND (? IS NULL OR s.updated_at >= STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'))"                                    \
    " AND (? IS NULL OR s.updated_at < STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'))"                                     \
    " AND (? = '' OR s.title LIKE ? OR EXISTS (SELECT 1 FROM exchanges e WHERE e.session_id = s.id"               \
    "   AND e.deleted_at IS NULL AND (COALESCE(e.title, e.default_title) LIKE ? OR " EXCHANGE_MATCH ")))"         \
    " AND (? = 0 OR s.updated_at < FROM_UNIXTIME(? / 1000000)"                                                    \
    "   OR (s.updated_at = FROM_UNIXTIME(? / 1000000) AND s.id < ?))"                                             \
    " ORDER BY s.updated_at DESC, s.id DESC LIMIT ?"

/* Newest first by (updated_at, id): keyset pagination, stable under inserts; the page token is
 * "<updated_at micros>.<id>" of the last row of the previous page. `query` searches the session
 * title and the exchanges' titles, prompts and responses (hidden ones too: the owner sees all).
 * Prompts and responses go through the FULLTEXT index (a phrase search in boolean mode); a query
 * without any word of 3+ characters (InnoDB's minimum token size) falls back to LIKE. */
static const char SQL_LIST_FT[] = LIST_SQL("MATCH (e.prompt, e.response) AGAINST (? IN BOOLEAN MODE)",
                                           "MATCH (e.prompt, e.response) AGAINST (? IN BOOLEAN MODE)");
static const char SQL_LIST_LIKE[] = LIST_SQL("(e.prompt LIKE ? OR e.response LIKE ?)",
                                             "e.prompt LIKE ? OR e.response LIKE ?");
static const char SQL_PROJECT_OWNER[] = "SELECT owner_id FROM projects WHERE id = ?";

static void list_sessions(owner_op_t *op)
{
    const msgpack_object *m = req(op);
    int64_t project = 0, page = LIST_DEFAULT_PAGE;
    const char *query = NULL, *from = NULL, *to = NULL, *token = NULL;
    size_t qlen = 0, flen = 0, tlen = 0, toklen = 0;
    if (sl_rpc_get_i64(m, "project_id", 0, 1, INT64_MAX, &project, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_i64(m, "page_size", 0, 1, LIST_MAX_PAGE, &page, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "query", 0, 200, &query, &qlen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "from", 0, 64, &from, &flen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "to", 0, 64, &to, &tlen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "page_token", 0, 100, &token, &toklen, op->msg, sizeof(op->msg)) < 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    if ((from && !valid_timestamp(from, flen)) || (to && !valid_timestamp(to, tlen))) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "fields \"from\" and \"to\" must be YYYY-MM-DDTHH:MM:SSZ");
        return;
    }
    long long after_us = 0;
    char after_id[65] = "";
    if (token && toklen) {
        char buf[101];
        memcpy(buf, token, toklen);
        buf[toklen] = 0;
        char *dot = strchr(buf, '.');
        char *end = NULL;
        if (dot)
            after_us = strtoll(buf, &end, 10);
        if (dot == NULL || end != dot || after_us <= 0 || !sl_rpc_id_valid(dot + 1, strlen(dot + 1))) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "field \"page_token\" is not a token this server gave out");
            return;
        }
        snprintf(after_id, sizeof(after_id), "%s", dot + 1);
    }
    sl_store_error_t err;
    /* projects: "project_id" and/or "project_ids" (each must be the caller's), "project_ext_id" */
    const char *ext = NULL;
    size_t extlen = 0;
    if (sl_rpc_get_str(m, "project_ext_id", 0, 200, &ext, &extlen, op->msg, sizeof(op->msg)) < 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    int64_t pids[51];
    size_t npids = 0;
    if (project)
        pids[npids++] = project;
    const msgpack_object *arr = sl_rpc_field(m, "project_ids");
    if (arr) {
        if (arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size > 50) {
            fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project_ids\" must be an array of at most 50 project ids");
            return;
        }
        for (uint32_t i = 0; i < arr->via.array.size; i++) {
            const msgpack_object *o = &arr->via.array.ptr[i];
            if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0 || o->via.u64 > INT64_MAX) {
                fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project_ids\" must hold positive integers");
                return;
            }
            pids[npids++] = (int64_t)o->via.u64;
        }
    }
    char plist[51 * 21 + 1];
    size_t plist_len = 0;
    for (size_t i = 0; i < npids; i++) {
        sl_store_value_t pp[] = {sl_store_int(pids[i])};
        sl_store_result_t *pr = sl_await_query(op->core->owner, SQL_PROJECT_OWNER, pp, 1, &err);
        if (pr == NULL) {
            fail_store(op, &err);
            return;
        }
        int mine = pr->nrows == 1 && (uint64_t)sl_store_cell(pr, 0, 0)->i == op->who.user_id;
        sl_store_result_free(pr);
        if (!mine) {
            fail(op, SL_RPC_NOT_FOUND, "project %lld not found", (long long)pids[i]);
            return;
        }
        plist_len += (size_t)snprintf(plist + plist_len, sizeof(plist) - plist_len, "%s%lld", i ? "," : "",
                                      (long long)pids[i]);
    }
    /* LIKE pattern with the query's own % _ \ escaped; the FULLTEXT phrase without quotes */
    char *like = malloc(qlen * 2 + 3), *phrase = malloc(qlen + 3);
    if (like == NULL || phrase == NULL) {
        free(like);
        free(phrase);
        fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t k = 0, f = 0, word = 0, longest = 0;
    like[k++] = '%';
    phrase[f++] = '"';
    for (size_t i = 0; i < qlen; i++) {
        if (query[i] == '%' || query[i] == '_' || query[i] == '\\')
            like[k++] = '\\';
        like[k++] = query[i];
        if (query[i] != '"')
            phrase[f++] = query[i];
        word = isalnum((unsigned char)query[i]) || (unsigned char)query[i] >= 0x80 ? word + 1 : 0;
        if (word > longest)
            longest = word;
    }
    like[k++] = '%';
    phrase[f++] = '"';
    int use_ft = longest >= 3;
    sl_store_value_t q = sl_store_text(query ? query : "", qlen), lk = sl_store_text(like, k);
    sl_store_value_t ft = sl_store_text(phrase, f);
    sl_store_value_t fr = from ? sl_store_text(from, flen) : sl_store_null();
    sl_store_value_t t = to ? sl_store_text(to, tlen) : sl_store_null();
    sl_store_value_t pl = sl_store_text(plist, plist_len), ex = sl_store_text(ext ? ext : "", extlen);
    sl_store_value_t p[24];
    size_t np = 0;
    p[np++] = q;
    p[np++] = q;
    if (use_ft) {
        p[np++] = ft;
    } else {
        p[np++] = lk;
        p[np++] = lk;
    }
    p[np++] = sl_store_int((int64_t)op->who.user_id);
    p[np++] = pl;
    p[np++] = pl;
    p[np++] = ex;
    p[np++] = ex;
    p[np++] = fr;
    p[np++] = fr;
    p[np++] = t;
    p[np++] = t;
    p[np++] = q;
    p[np++] = lk;
    p[np++] = lk;
    if (use_ft) {
        p[np++] = ft;
    } else {
        p[np++] = lk;
        p[np++] = lk;
    }
    p[np++] = sl_store_int(after_us);
    p[np++] = sl_store_int(after_us);
    p[np++] = sl_store_int(after_us);
    p[np++] = sl_store_text(after_id, strlen(after_id));
    p[np++] = sl_store_int(page + 1);
    sl_store_result_t *r = sl_await_query(op->core->owner, use_ft ? SQL_LIST_FT : SQL_LIST_LIKE, p, np, &err);
    free(like);
    free(phrase);
    if (r == NULL) {
        fail_store(op, &err);
        return;
    }
    size_t rows = r->nrows > (size_t)page ? (size_t)page : r->nrows;
    msgpack_pack_map(pk(op), 2);
    sl_rpc_pack_str(pk(op), "sessions");
    msgpack_pack_array(pk(op), rows);
    for (size_t i = 0; i < rows; i++) {
        int snippet = qlen > 0 && sl_store_cell(r, i, 10)->type == SL_STORE_TEXT;
        msgpack_pack_map(pk(op), 5 + snippet);
        sl_rpc_pack_str(pk(op), "session_id");
        pack_cell_str(op, r, i, 0);
        pack_owner_title(op, sl_store_cell(r, i, 1), sl_store_cell(r, i, 9));
        sl_rpc_pack_str(pk(op), "project");
        pack_project(op, r, i, 4);
        sl_rpc_pack_str(pk(op), "updated_at");
        pack_cell_str(op, r, i, 3);
        pack_kv_bool(op, "public", sl_store_cell(r, i, 2)->i != 0);
        if (snippet) {
            /* SUBSTRING counts characters, so the cut is on a character boundary. */
            sl_rpc_pack_str(pk(op), "snippet");
            pack_cell_str(op, r, i, 10);
        }
    }
    sl_rpc_pack_str(pk(op), "next_page_token");
    if (r->nrows > (size_t)page) {
        char tok[128];
        const sl_store_value_t *idv = sl_store_cell(r, rows - 1, 0);
        int n = snprintf(tok, sizeof(tok), "%lld.%.*s", (long long)sl_store_cell(r, rows - 1, 8)->i, (int)idv->len,
                         (const char *)idv->ptr);
        sl_rpc_pack_strn(pk(op), tok, (size_t)n);
    } else {
        msgpack_pack_nil(pk(op));
    }
    sl_store_result_free(r);
    reply(op);
}

/* ---- UpdateSessionTitle, UpdateExchangeTitle ---- */

static const char SQL_SET_SESSION_TITLE[] = "UPDATE sessions SET title = ? WHERE id = ?";
static const char SQL_SET_EXCHANGE_TITLE[] = "UPDATE exchanges SET title = ?, updated_at = NOW(6)"
                                             " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";

static void update_session_title(owner_op_t *op)
{
    const char *id, *title;
    size_t idlen, tlen;
    if (get_session_id(op, &id, &idlen) != 0 || get_title(op, &title, &tlen) != 0)
        return;
    locked_t s;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0 || change_begin(op, &s, 0) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(title, tlen), sl_store_text(id, idlen)};
    if (run(op, SQL_SET_SESSION_TITLE, p, 2, NULL) != 0 || change_commit(op, &s) != 0)
        return;
    pack_version_only(op, s.new_version);
}

static void update_exchange_title(owner_op_t *op)
{
    const char *id, *title;
    size_t idlen, tlen;
    int64_t ex;
    if (get_session_id(op, &id, &idlen) != 0 || get_exchange_id(op, &ex) != 0 || get_title(op, &title, &tlen) != 0)
        return;
    locked_t s;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0 || change_begin(op, &s, 0) != 0)
        return;
    sl_store_value_t p[] = {tlen ? sl_store_text(title, tlen) : sl_store_null(), sl_store_text(id, idlen),
                            sl_store_int(ex)};
    sl_store_result_t *r;
    if (run(op, SQL_SET_EXCHANGE_TITLE, p, 3, &r) != 0)
        return;
    /* affected_rows counts changed rows: a same-title update is 0 too, so check existence apart. */
    sl_store_result_free(r);
    sl_store_value_t q[] = {sl_store_text(id, idlen), sl_store_int(ex)};
    if (run(op, "SELECT COUNT(*) FROM exchanges WHERE session_id = ? AND id = ? AND deleted_at IS NULL", q, 2, &r) !=
        0)
        return;
    int found = sl_store_cell(r, 0, 0)->i == 1;
    sl_store_result_free(r);
    if (!found) {
        fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session", (long long)ex);
        return; /* rolled back by tx_end; the MARK only makes readers bypass the cache until it expires */
    }
    if (change_commit(op, &s) != 0)
        return;
    pack_version_only(op, s.new_version);
}

/* ---- DeleteExchange, DeleteSession ---- */

static const char SQL_DELETE_SESSION[] = "UPDATE sessions SET deleted_at = NOW(6), is_public = 0, title = '' WHERE id = ?";
static const char SQL_WIPE_EXCHANGES[] =
    "UPDATE exchanges SET deleted_at = COALESCE(deleted_at, NOW(6)), prompt = '', response = '', title = NULL,"
    " default_title = '', updated_at = NOW(6) WHERE session_id = ?";
static const char SQL_WIPE_UPLOAD[] = "DELETE FROM session_uploads WHERE session_id = ?";

static void delete_exchange(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    int64_t ex;
    if (get_session_id(op, &id, &idlen) != 0 || get_exchange_id(op, &ex) != 0)
        return;
    locked_t s;
    sl_store_result_t *r;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0)
        return;
    sl_store_value_t q[] = {sl_store_text(id, idlen), sl_store_int(ex)};
    if (run(op, "SELECT COUNT(*) FROM exchanges WHERE session_id = ? AND id = ? AND deleted_at IS NULL", q, 2, &r) !=
        0)
        return;
    int found = sl_store_cell(r, 0, 0)->i == 1;
    sl_store_result_free(r);
    if (!found) {
        /* Perhaps deleted by an earlier call whose publish failed: make the cache right first. */
        if (settle(op, &s) == 0)
            fail(op, SL_RPC_NOT_FOUND, "exchange %lld not found in this session", (long long)ex);
        return;
    }
    if (change_begin(op, &s, 0) != 0 || run(op, SQL_EXCHANGE_REMOVE, q, 2, NULL) != 0 || change_commit(op, &s) != 0)
        return;
    pack_version_only(op, s.new_version);
}

static const char SQL_SESSION_EXT[] = "SELECT p.ext_id FROM sessions s JOIN projects p ON p.id = s.project_id"
                                      " WHERE s.id = ?";

static void delete_session(owner_op_t *op)
{
    const char *id, *ext = NULL;
    size_t idlen, extlen = 0;
    if (get_session_id(op, &id, &idlen) != 0 || get_project_ext(op, &ext, &extlen) < 0)
        return;
    locked_t s;
    if (tx_begin(op) != 0 || lock_session(op, id, idlen, 0, &s) != 0)
        return;
    if (ext) {
        sl_store_value_t q[] = {sl_store_text(id, idlen)};
        sl_store_result_t *r;
        if (run(op, SQL_SESSION_EXT, q, 1, &r) != 0)
            return;
        int ok = r->nrows == 1 && ext_matches(sl_store_cell(r, 0, 0), ext, extlen);
        sl_store_result_free(r);
        if (!ok) {
            fail(op, SL_RPC_NOT_FOUND, "session not found");
            return;
        }
    }
    if (change_begin(op, &s, 0) != 0)
        return;
    /* Deleted means gone: the text of every exchange and the upload are wiped, not only flagged.
     * A public session's entry becomes a tombstone (the public views no longer show it). */
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    if (run(op, SQL_DELETE_SESSION, p, 1, NULL) != 0 || run(op, SQL_WIPE_EXCHANGES, p, 1, NULL) != 0 ||
        run(op, SQL_WIPE_UPLOAD, p, 1, NULL) != 0 || change_commit(op, &s) != 0)
        return;
    msgpack_pack_map(pk(op), 0);
    reply(op);
}

/* ---- PreviewAsViewer ---- */

/* Finds key in the projection payload (a msgpack map of bin values). */
static int payload_field(const char *payload, size_t len, const char *key, const char **out, size_t *outlen)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -1;
    /* The payload outlives u only as bytes: point into the payload, not into u. */
    if (msgpack_unpack_next(&u, payload, len, &off) == MSGPACK_UNPACK_SUCCESS && u.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *v = sl_rpc_field(&u.data, key);
        if (v && (v->type == MSGPACK_OBJECT_BIN || v->type == MSGPACK_OBJECT_STR)) {
            const char *p = v->type == MSGPACK_OBJECT_BIN ? v->via.bin.ptr : v->via.str.ptr;
            *outlen = v->type == MSGPACK_OBJECT_BIN ? v->via.bin.size : v->via.str.size;
            /* msgpack_unpack_next references the input buffer for raw data (zone-less copy is not
             * made for bin/str), so p points into payload. */
            *out = p;
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void preview_as_viewer(owner_op_t *op)
{
    const char *id;
    size_t idlen;
    if (get_session_id(op, &id, &idlen) != 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (tx_begin(op) != 0 || run(op, "SELECT owner_id FROM sessions WHERE id = ? AND deleted_at IS NULL", p, 1, &r) != 0)
        return;
    int mine = r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == op->who.user_id;
    sl_store_result_free(r);
    if (!mine) {
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    /* The viewer views: the public filtering minus "is public", so the document is the one the
     * public endpoint serves (or would serve once shared), byte for byte. */
    sl_projection_t proj;
    sl_store_error_t err;
    if (sl_projection_load(op->core, op->core->owner, op->conn, SL_VIEW_VIEWER, id, idlen, &proj, &err) != 0) {
        fail_store(op, &err);
        return;
    }
    tx_end(op);
    const char *json = NULL, *html = NULL;
    size_t jlen = 0, hlen = 0;
    if (!proj.found || payload_field(proj.payload, proj.len, "json", &json, &jlen) != 0 ||
        payload_field(proj.payload, proj.len, "html", &html, &hlen) != 0) {
        sl_projection_free(&proj);
        fail(op, SL_RPC_INTERNAL, "internal error (preview)");
        return;
    }
    msgpack_pack_map(pk(op), 2);
    pack_kv_str(op, "document", json, jlen);
    pack_kv_str(op, "html", html, hlen);
    sl_projection_free(&proj);
    reply(op);
}

/* ---- ExportSession, SessionSizes ---- */

/* An optional "project_ext_id" (the client's project id, as in the SpecStory paths) must match the
 * session's project, else the session is not_found. Returns 1 (given), 0 (absent), -1 (answered). */
static int get_project_ext(owner_op_t *op, const char **ext, size_t *len)
{
    int rc = sl_rpc_get_str(req(op), "project_ext_id", 0, 200, ext, len, op->msg, sizeof(op->msg));
    if (rc < 0)
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
    return rc;
}

static int ext_matches(const sl_store_value_t *v, const char *ext, size_t len)
{
    return v->type == SL_STORE_TEXT && v->len == len && memcmp(v->ptr, ext, len) == 0;
}

static const char SQL_EXPORT[] = "SELECT s.owner_id, u.markdown, u.raw_data, u.metadata, u.session_data, p.ext_id,"
                                 " DATE_FORMAT(u.updated_at, '%Y-%m-%dT%H:%i:%sZ'), s.title"
                                 " FROM sessions s JOIN session_uploads u ON u.session_id = s.id"
                                 " JOIN projects p ON p.id = s.project_id"
                                 " WHERE s.id = ? AND s.deleted_at IS NULL";

static void export_session(owner_op_t *op)
{
    const char *id, *ext = NULL;
    size_t idlen, extlen = 0;
    if (get_session_id(op, &id, &idlen) != 0 || get_project_ext(op, &ext, &extlen) < 0)
        return;
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_EXPORT, p, 1, &err);
    if (r == NULL) {
        fail_store(op, &err);
        return;
    }
    if (r->nrows != 1 || (uint64_t)sl_store_cell(r, 0, 0)->i != op->who.user_id ||
        (ext && !ext_matches(sl_store_cell(r, 0, 5), ext, extlen))) {
        sl_store_result_free(r);
        fail(op, SL_RPC_NOT_FOUND, "session not found (or it has no upload: sessions made only with "
                                   "AppendExchanges have nothing to export)");
        return;
    }
    const sl_store_value_t *md = sl_store_cell(r, 0, 1);
    char etag[40];
    upload_etag(md->ptr, md->len, etag);
    msgpack_pack_map(pk(op), 8);
    sl_rpc_pack_str(pk(op), "markdown");
    pack_cell_str(op, r, 0, 1);
    sl_rpc_pack_str(pk(op), "raw_data");
    pack_cell_str(op, r, 0, 2);
    sl_rpc_pack_str(pk(op), "session_data");
    pack_cell_str(op, r, 0, 4);
    sl_rpc_pack_str(pk(op), "metadata");
    const sl_store_value_t *meta = sl_store_cell(r, 0, 3);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (meta->type == SL_STORE_TEXT &&
        msgpack_unpack_next(&u, meta->ptr, meta->len, &off) == MSGPACK_UNPACK_SUCCESS)
        msgpack_pack_object(pk(op), u.data); /* stored as the request's own msgpack map */
    else
        msgpack_pack_nil(pk(op));
    msgpack_unpacked_destroy(&u);
    pack_kv_str(op, "etag", etag, strlen(etag));
    sl_rpc_pack_str(pk(op), "project_ext_id");
    pack_cell_str(op, r, 0, 5);
    sl_rpc_pack_str(pk(op), "updated_at");
    pack_cell_str(op, r, 0, 6);
    sl_rpc_pack_str(pk(op), "title");
    pack_cell_str(op, r, 0, 7);
    sl_store_result_free(r);
    reply(op);
}

/* Sizes of the stored uploads of one project (the SpecStory CLI asks before uploading). */
static const char SQL_SIZES[] = "SELECT s.id, LENGTH(u.markdown), LENGTH(u.session_data) FROM sessions s"
                                " JOIN session_uploads u ON u.session_id = s.id JOIN projects p ON p.id = s.project_id"
                                " WHERE p.owner_id = ? AND p.ext_id = ? AND s.owner_id = ? AND s.deleted_at IS NULL"
                                " AND (? = '' OR s.id = ?) ORDER BY s.id";

static void session_sizes(owner_op_t *op)
{
    const char *ext = NULL, *id = NULL;
    size_t extlen = 0, idlen = 0;
    if (sl_rpc_get_str(req(op), "project_ext_id", 1, 200, &ext, &extlen, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(req(op), "session_id", 0, 64, &id, &idlen, op->msg, sizeof(op->msg)) < 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    sl_store_value_t p[] = {sl_store_int((int64_t)op->who.user_id), sl_store_text(ext, extlen),
                            sl_store_int((int64_t)op->who.user_id), sl_store_text(id ? id : "", idlen),
                            sl_store_text(id ? id : "", idlen)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_SIZES, p, 5, &err);
    if (r == NULL) {
        fail_store(op, &err);
        return;
    }
    if (id && r->nrows == 0) {
        sl_store_result_free(r);
        fail(op, SL_RPC_NOT_FOUND, "session not found");
        return;
    }
    size_t entries = 0;
    for (size_t i = 0; i < r->nrows; i++)
        entries += 1 + (sl_store_cell(r, i, 2)->type == SL_STORE_INT);
    msgpack_pack_map(pk(op), 1);
    sl_rpc_pack_str(pk(op), "sessions");
    msgpack_pack_map(pk(op), entries);
    for (size_t i = 0; i < r->nrows; i++) {
        const sl_store_value_t *sid = sl_store_cell(r, i, 0);
        sl_rpc_pack_strn(pk(op), sid->ptr, sid->len);
        msgpack_pack_uint64(pk(op), (uint64_t)sl_store_cell(r, i, 1)->i);
        if (sl_store_cell(r, i, 2)->type == SL_STORE_INT) {
            char key[80];
            int n = snprintf(key, sizeof(key), "%.*s:sessionData", (int)sid->len, (const char *)sid->ptr);
            sl_rpc_pack_strn(pk(op), key, (size_t)n);
            msgpack_pack_uint64(pk(op), (uint64_t)sl_store_cell(r, i, 2)->i);
        }
    }
    sl_store_result_free(r);
    reply(op);
}

/* ---- ListProjects, UpdateProject ---- */

static const char SQL_LIST_PROJECTS[] =
    "SELECT p.id, p.name, p.icon, p.color,"
    " (SELECT COUNT(*) FROM sessions s WHERE s.project_id = p.id AND s.deleted_at IS NULL), p.ext_id"
    " FROM projects p WHERE p.owner_id = ? ORDER BY p.name, p.id";

static void list_projects(owner_op_t *op)
{
    sl_store_value_t p[] = {sl_store_int((int64_t)op->who.user_id)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, SQL_LIST_PROJECTS, p, 1, &err);
    if (r == NULL) {
        fail_store(op, &err);
        return;
    }
    msgpack_pack_map(pk(op), 1);
    sl_rpc_pack_str(pk(op), "projects");
    msgpack_pack_array(pk(op), r->nrows);
    for (size_t i = 0; i < r->nrows; i++) {
        msgpack_pack_map(pk(op), 6);
        pack_kv_u64(op, "project_id", (uint64_t)sl_store_cell(r, i, 0)->i);
        sl_rpc_pack_str(pk(op), "ext_id");
        pack_cell_str(op, r, i, 5);
        sl_rpc_pack_str(pk(op), "name");
        pack_cell_str(op, r, i, 1);
        sl_rpc_pack_str(pk(op), "icon");
        pack_cell_str(op, r, i, 2);
        sl_rpc_pack_str(pk(op), "color");
        pack_cell_str(op, r, i, 3);
        pack_kv_u64(op, "session_count", (uint64_t)sl_store_cell(r, i, 4)->i);
    }
    sl_store_result_free(r);
    reply(op);
}

static const char SQL_LOCK_PROJECT[] = "SELECT owner_id FROM projects WHERE id = ? FOR UPDATE";
static const char SQL_UPDATE_PROJECT[] = "UPDATE projects SET name = COALESCE(?, name), icon = COALESCE(?, icon),"
                                         " color = COALESCE(?, color), updated_at = NOW(6) WHERE id = ?";
static const char SQL_PROJECT_SESSIONS[] = "SELECT id, version, is_public FROM sessions"
                                           " WHERE project_id = ? AND deleted_at IS NULL ORDER BY id FOR UPDATE";

#define MAX_PROJECT_REPUBLISH 10000

/* The project's name, icon and colour are part of every public document of its sessions, so each
 * public session goes through the same pipeline as any other change (mark, bump, rebuild, publish),
 * all in one transaction. */
static void update_project(owner_op_t *op)
{
    const msgpack_object *m = req(op);
    int64_t pid;
    const char *name = NULL, *icon = NULL, *color = NULL;
    size_t nlen = 0, ilen = 0, clen = 0;
    if (sl_rpc_get_i64(m, "project_id", 1, 1, INT64_MAX, &pid, op->msg, sizeof(op->msg)) != 1 ||
        sl_rpc_get_str(m, "name", 0, 200, &name, &nlen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "icon", 0, 64, &icon, &ilen, op->msg, sizeof(op->msg)) < 0 ||
        sl_rpc_get_str(m, "color", 0, 32, &color, &clen, op->msg, sizeof(op->msg)) < 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "%s", op->msg);
        return;
    }
    if (name && nlen == 0) {
        fail(op, SL_RPC_INVALID_ARGUMENT, "field \"name\" must not be empty");
        return;
    }
    sl_store_value_t p[] = {sl_store_int(pid)};
    sl_store_result_t *r = NULL, *ss = NULL;
    if (tx_begin(op) != 0 || run(op, SQL_LOCK_PROJECT, p, 1, &r) != 0)
        return;
    int mine = r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == op->who.user_id;
    sl_store_result_free(r);
    if (!mine) {
        fail(op, SL_RPC_NOT_FOUND, "project not found");
        return;
    }
    if (run(op, SQL_PROJECT_SESSIONS, p, 1, &ss) != 0)
        return;
    size_t n = 0;
    for (size_t i = 0; i < ss->nrows; i++)
        n += sl_store_cell(ss, i, 2)->i != 0;
    if (n > MAX_PROJECT_REPUBLISH) {
        sl_store_result_free(ss);
        fail(op, SL_RPC_FAILED_PRECONDITION, "the project has more than %d public sessions", MAX_PROJECT_REPUBLISH);
        return;
    }
    sl_projection_t *proj = calloc(n ? n : 1, sizeof(*proj));
    size_t k = 0;
    if (proj == NULL) {
        sl_store_result_free(ss);
        fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < ss->nrows; i++) {
        if (sl_store_cell(ss, i, 2)->i == 0)
            continue;
        const sl_store_value_t *sid = sl_store_cell(ss, i, 0);
        if (sl_invalidate_begin(op->core, sid->ptr, sid->len, (uint64_t)sl_store_cell(ss, i, 1)->i + 1) != 0) {
            fail(op, SL_RPC_UNAVAILABLE, "the share cache is unavailable; nothing was changed, retry later");
            goto out;
        }
    }
    {
        sl_store_value_t u[] = {name ? sl_store_text(name, nlen) : sl_store_null(),
                                icon ? sl_store_text(icon, ilen) : sl_store_null(),
                                color ? sl_store_text(color, clen) : sl_store_null(), sl_store_int(pid)};
        if (run(op, SQL_UPDATE_PROJECT, u, 4, NULL) != 0)
            goto out;
    }
    for (size_t i = 0; i < ss->nrows; i++) {
        if (sl_store_cell(ss, i, 2)->i == 0)
            continue;
        const sl_store_value_t *sid = sl_store_cell(ss, i, 0);
        uint64_t v = (uint64_t)sl_store_cell(ss, i, 1)->i + 1;
        sl_store_value_t b[] = {sl_store_int((int64_t)v), sl_store_text(sid->ptr, sid->len)};
        sl_store_error_t err;
        if (run(op, SQL_BUMP_DIRTY, b, 2, NULL) != 0)
            goto out;
        if (sl_projection_load(op->core, op->core->owner, op->conn, SL_VIEW_PUBLIC, sid->ptr, sid->len, &proj[k],
                               &err) != 0) {
            fail_store(op, &err);
            goto out;
        }
        proj[k++].version = v;
    }
    if (run(op, SQL_COMMIT, NULL, 0, NULL) != 0)
        goto out;
    tx_end(op);
    k = 0;
    int unpublished = 0;
    for (size_t i = 0; i < ss->nrows; i++) {
        if (sl_store_cell(ss, i, 2)->i == 0)
            continue;
        const sl_store_value_t *sid = sl_store_cell(ss, i, 0);
        if (sl_invalidate_finish(op->core, sid->ptr, sid->len, &proj[k]) != 0)
            unpublished++;
        else
            mark_clean(op->core, sid->ptr, sid->len, proj[k].version);
        k++;
    }
    if (unpublished) {
        fail(op, SL_RPC_UNAVAILABLE, "the change was saved, but the share cache could not be updated; retry the call");
        goto out;
    }
    msgpack_pack_map(pk(op), 1);
    pack_kv_u64(op, "project_id", (uint64_t)pid);
    reply(op);
out:
    for (size_t i = 0; i < n; i++)
        sl_projection_free(&proj[i]);
    free(proj);
    sl_store_result_free(ss);
}

/* ---- Repair: sessions whose publish failed ---- */

static const char SQL_DIRTY[] = "SELECT id, owner_id FROM sessions WHERE cache_dirty = 1"
                                " AND updated_at < NOW(6) - INTERVAL 5 SECOND ORDER BY updated_at LIMIT 100";

/* Republishes each dirty session at a new version, under its row lock, exactly as an owner change
 * would (MARK, bump, build, COMMIT, publish, clean). Deleted sessions are included (a tombstone). */
static void repair_task(void *arg)
{
    sl_core_t *core = arg;
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_DIRTY, NULL, 0, &err);
    for (size_t i = 0; r && i < r->nrows; i++) {
        const sl_store_value_t *id = sl_store_cell(r, i, 0);
        owner_op_t op = {.core = core, .call = NULL};
        op.who.user_id = (uint64_t)sl_store_cell(r, i, 1)->i;
        locked_t s;
        if (tx_begin(&op) == 0 && lock_session(&op, id->ptr, id->len, 1, &s) == 0 && s.exists && s.dirty &&
            settle(&op, &s) == 0)
            core->stats.cache_repairs++;
        tx_end(&op);
        if (op.clean_pending)
            mark_clean(core, op.clean_id, op.clean_idlen, op.clean_version);
    }
    sl_store_result_free(r);
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

void sl_core_start_repair(sl_core_t *core, unsigned interval_ms)
{
    uv_timer_init(core->loop, &core->repair_timer);
    core->repair_timer.data = core;
    uv_timer_start(&core->repair_timer, on_repair_timer, interval_ms, interval_ms);
}

/* ---- dispatch ---- */

static void owner_task(void *arg)
{
    owner_op_t *op = arg;
    op->core->stats.owner_calls++;
    if (sl_auth_principal(op->core, op->call, &op->who) == 0) {
        op->fn(op);
        if (!op->answered) /* every path answers; this guards against a future one that doesn't */
            fail(op, SL_RPC_INTERNAL, "internal error: no answer");
        tx_end(op);
        if (op->clean_pending) /* after the answer: the caller does not wait for it */
            mark_clean(op->core, op->clean_id, op->clean_idlen, op->clean_version);
    } else {
        op->core->stats.owner_errors++;
    }
    tx_end(op);
    free(op);
}

typedef struct method_entry {
    const char *name;
    owner_fn fn;
} method_entry_t;

static const method_entry_t methods[] = {
    {"shareline.v1.Sessions/SyncSession", sync_session},
    {"shareline.v1.Sessions/SetVisibility", set_visibility},
    {"shareline.v1.Sessions/SetExchangesHidden", set_exchanges_hidden},
    {"shareline.v1.Sessions/GetShareSettings", get_share_settings},
    {"shareline.v1.Sessions/AppendExchanges", append_exchanges},
    {"shareline.v1.Sessions/GetSession", get_session},
    {"shareline.v1.Sessions/ListSessions", list_sessions},
    {"shareline.v1.Sessions/UpdateSessionTitle", update_session_title},
    {"shareline.v1.Sessions/UpdateExchangeTitle", update_exchange_title},
    {"shareline.v1.Sessions/DeleteExchange", delete_exchange},
    {"shareline.v1.Sessions/DeleteSession", delete_session},
    {"shareline.v1.Sessions/PreviewAsViewer", preview_as_viewer},
    {"shareline.v1.Sessions/ExportSession", export_session},
    {"shareline.v1.Sessions/ListProjects", list_projects},
    {"shareline.v1.Sessions/UpdateProject", update_project},
    {"shareline.v1.Sessions/SessionSizes", session_sizes},
};

static void on_owner_call(sl_rpc_call_t *call, void *data)
{
    const method_entry_t *me = NULL;
    const char *name = sl_rpc_method(call);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, name) == 0)
            me = &methods[i];
    owner_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL || me == NULL) {
        free(op);
        sl_rpc_fail(call, SL_RPC_INTERNAL, "internal error");
        return;
    }
    op->core = data;
    op->call = call;
    op->fn = me->fn;
    if (sl_task_spawn(owner_task, op) != 0) {
        free(op);
        sl_rpc_fail(call, SL_RPC_RESOURCE_EXHAUSTED, "server overloaded, retry later");
    }
}

int sl_sessions_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (sl_rpc_register(srv, methods[i].name, on_owner_call, core) != 0)
            return -1;
    return 0;
}
