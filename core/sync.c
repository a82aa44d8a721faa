/*
 * How sessions arrive, 1: SyncSession (a SpecStory upload, authoritative for the whole session).
 * AppendExchanges (exchanges added one call at a time, e.g. by an agent as it works) is append.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "core/internal/owner.h"
#include "core/internal/resync.h"
#include "core/internal/sync.h"
#include "core/internal/specstory.h"

/* ---- SyncSession ---- */

static const char SQL_PROJECT_UPSERT[] =
    "INSERT INTO projects (tenant_id, owner_id, ext_id, name, icon, color) VALUES (?, ?, ?, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), name = VALUES(name),"
    " icon = IF(? = 1, VALUES(icon), icon), color = IF(? = 1, VALUES(color), color), updated_at = NOW(6)";
static const char SQL_SESSION_INSERT[] = "INSERT INTO sessions (id, tenant_id, owner_id, project_id, title, "
                                         "is_public, version, exchange_seq, agent)"
                                         " VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?)";
static const char SQL_SESSION_UPDATE[] =
    "UPDATE sessions SET project_id = ?, title = COALESCE(?, title), exchange_seq = ?, agent = ?,"
    " is_public = IF(deleted_at IS NULL, is_public, 0), deleted_at = NULL WHERE id = ?";
enum { EX_ID, EX_POSITION, EX_PSHA, EX_RSHA, EX_DELETED, EX_BY_SYNC, EX_HIDDEN, EX_CREATED };
static const char SQL_EXCHANGES_OF[] =
    "SELECT id, position, prompt_sha256, response_sha256, deleted_at IS NOT NULL AND removed_by_sync = 0,"
    " removed_by_sync, hidden, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ') FROM exchanges"
    " WHERE session_id = ? ORDER BY position, id";
/* Hidden ones, deleted or not: written as two ranges of exchanges_pieces (session, deleted_at,
 * hidden), so that MariaDB reads the live hidden ones and the deleted ones, not the whole session. */
static const char SQL_HIDDEN_OF[] =
    "SELECT id, position, prompt_sha256, response_sha256, 0, 0, hidden, '' FROM exchanges"
    " FORCE INDEX (exchanges_pieces) WHERE session_id = ?"
    " AND ((deleted_at IS NULL AND hidden = 1) OR (deleted_at IS NOT NULL AND hidden = 1))";
static const char SQL_EXCHANGE_INSERT[] =
    "INSERT INTO exchanges (session_id, id, position, default_title, prompt, response, prompt_sha256,"
    " response_sha256, hidden, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'), NOW(6)))";
/* a stored exchange the upload has (again): its new text, its place, back if a sync had removed it */
static const char SQL_EXCHANGE_UPDATE[] =
    "UPDATE exchanges SET position = ?, default_title = ?, prompt = ?, prompt_sha256 = ?, response = ?,"
    " response_sha256 = ?,"
    " hidden = ?, deleted_at = NULL, removed_by_sync = 0, updated_at = NOW(6)"
    " WHERE session_id = ? AND id = ? AND (deleted_at IS NULL OR removed_by_sync = 1)";
/* a stored exchange the upload lacks: out of every view, its text kept for a later upload */
static const char SQL_EXCHANGE_SYNC_REMOVE[] =
    "UPDATE exchanges SET deleted_at = NOW(6), removed_by_sync = 1, updated_at = NOW(6)"
    " WHERE session_id = ? AND id = ? AND deleted_at IS NULL";
/* The current upload (docs/specstory.md "Uploads"): a base (session_uploads.markdown, base_len,
 * base_sha256) followed by tail parts (session_upload_tail, part 1..tail_parts, each with len and
 * sha256); markdown_len and markdown_sha256 are of the whole. A new upload keeps the base and the
 * parts it still begins with (compared by hash) and adds the rest of its bytes as new parts; the
 * upload it replaces is kept as a reference: the first prefix_len bytes of the next newer upload,
 * then its own bytes after them. So a sync that adds to the end of the file writes what it adds,
 * not the file. A write splits off its last SPLIT_TAIL bytes as a part of their own, so that a file
 * whose end changes (a trailer, a last line rewritten) still keeps all but that part. An upload
 * whose base changed, or past TAIL_PARTS_MAX parts, is written whole. */
#define TAIL_PARTS_MAX 64
#define SPLIT_TAIL     4096
enum { U_LEN, U_SHA, U_TAIL, U_BLEN, U_BSHA };
static const char SQL_UPLOAD_STATE[] =
    "SELECT markdown_len, markdown_sha256, tail_parts, base_len, base_sha256"
    " FROM session_uploads WHERE session_id = ?";
static const char SQL_TAIL_STATE[] = "SELECT part, len, sha256 FROM session_upload_tail WHERE session_id = ?"
                                     " ORDER BY part";
static const char SQL_UPLOAD_INSERT[] =
    "INSERT INTO session_uploads (session_id, markdown, base_len, base_sha256, raw_data, session_data, "
    "metadata,"
    " markdown_len, markdown_sha256, tail_parts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_UPLOAD_REWRITE[] =
    "UPDATE session_uploads SET markdown = ?, base_len = ?, base_sha256 = ?, raw_data = ?, session_data = ?,"
    " metadata = ?, markdown_len = ?, markdown_sha256 = ?, tail_parts = ?, updated_at = NOW(6) WHERE "
    "session_id = ?";
static const char SQL_UPLOAD_PARTS[] =
    "UPDATE session_uploads SET raw_data = ?, session_data = ?, metadata = ?, markdown_len = ?,"
    " markdown_sha256 = ?, tail_parts = ?, updated_at = NOW(6) WHERE session_id = ?";
static const char SQL_UPLOAD_SAME[] =
    "UPDATE session_uploads SET raw_data = ?, session_data = ?, metadata = ?,"
    " updated_at = NOW(6) WHERE session_id = ?";
static const char SQL_TAIL_ADD[] =
    "INSERT INTO session_upload_tail (session_id, part, len, sha256, bytes) VALUES (?, ?, ?, ?, ?)";
static const char SQL_TAIL_DROP_AFTER[] = "DELETE FROM session_upload_tail WHERE session_id = ? AND part > ?";
static const char SQL_TAIL_AFTER[] =
    "SELECT bytes FROM session_upload_tail WHERE session_id = ? AND part > ? ORDER BY part";
/* the upload being replaced, kept: ? = its bytes after ? = the prefix it shares with the new one
 * (NULL: ? holds all of it); the last SL_UPLOADS_KEPT stay */
static const char SQL_ARCHIVE[] =
    "INSERT INTO session_upload_history (session_id, seq, markdown, prefix_len, raw_data, session_data,"
    " metadata, uploaded_at)"
    " SELECT u.session_id, COALESCE((SELECT MAX(h.seq) FROM session_upload_history h"
    "   WHERE h.session_id = u.session_id), 0) + 1, ?, ?, u.raw_data, u.session_data, u.metadata, "
    "u.updated_at"
    " FROM session_uploads u WHERE u.session_id = ?";
static const char SQL_BASE_READ[] = "SELECT markdown FROM session_uploads WHERE session_id = ?";
static const char SQL_UPLOAD_PRUNE[] =
    "DELETE FROM session_upload_history WHERE session_id = ? AND seq + ? <= (SELECT m FROM"
    " (SELECT MAX(seq) AS m FROM session_upload_history WHERE session_id = ?) t)";

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
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void sl_upload_etag(const char *md, size_t len, char out[40])
{
    unsigned char sha[32];
    SHA256((const unsigned char *)md, len, sha);
    int k = snprintf(out, 40, "\"");
    for (int i = 0; i < 16; i++)
        k += snprintf(out + k, 40 - (size_t)k, "%02x", sha[i]);
    snprintf(out + k, 40 - (size_t)k, "\"");
}

/* A SyncSession request, read and checked before anything is touched. Strings point into the request. */
typedef struct sync_req {
    const char *id, *title, *markdown, *raw, *sdata;
    size_t idlen, title_len, md_len, raw_len, sdata_len;
    const char *pid, *pname, *picon, *pcolor;
    size_t pid_len, pname_len, picon_len, pcolor_len;
    const msgpack_object *metadata;
} sync_req_t;

static int read_sync_request(sl_op_t *op, sync_req_t *q)
{
    const msgpack_object *m = sl_op_req(op);
    size_t max = op->core->cfg.max_markdown;
    char *msg = op->msg;
    size_t ml = sizeof(op->msg);
    memset(q, 0, sizeof(*q));
    int rc = sl_rpc_get_str(m, "session_id", 0, 64, &q->id, &q->idlen, msg, ml);
    if (rc < 0)
        goto bad;
    if (rc == 1 && !sl_rpc_id_valid(q->id, q->idlen)) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT,
                   "field \"session_id\" must be 1-64 characters of A-Z a-z 0-9 - _");
        return -1;
    }
    if (sl_rpc_get_str(m, "title", 0, 500, &q->title, &q->title_len, msg, ml) < 0 ||
        sl_rpc_get_str(m, "markdown", 1, max, &q->markdown, &q->md_len, msg, ml) != 1 ||
        sl_rpc_get_str(m, "raw_data", 0, max, &q->raw, &q->raw_len, msg, ml) < 0 ||
        sl_rpc_get_str(m, "session_data", 0, max, &q->sdata, &q->sdata_len, msg, ml) < 0)
        goto bad;
    const msgpack_object *project = sl_rpc_field(m, "project");
    if (project == NULL || project->type != MSGPACK_OBJECT_MAP) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project\" must be a map with at least \"name\"");
        return -1;
    }
    if (sl_rpc_get_str(project, "name", 1, 200, &q->pname, &q->pname_len, msg, ml) != 1 ||
        sl_rpc_get_str(project, "id", 0, 200, &q->pid, &q->pid_len, msg, ml) < 0 ||
        sl_rpc_get_str(project, "icon", 0, 64, &q->picon, &q->picon_len, msg, ml) < 0 ||
        sl_rpc_get_str(project, "color", 0, 32, &q->pcolor, &q->pcolor_len, msg, ml) < 0)
        goto bad;
    if (q->pname_len == 0) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project.name\" must not be empty");
        return -1;
    }
    if (q->pid == NULL || q->pid_len == 0) { /* the project's client id defaults to its name */
        q->pid = q->pname;
        q->pid_len = q->pname_len;
    }
    q->metadata = sl_rpc_field(m, "metadata");
    if (q->metadata != NULL && q->metadata->type != MSGPACK_OBJECT_MAP) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"metadata\" must be a map");
        return -1;
    }
    return 0;
bad:
    sl_op_fail_field(op);
    return -1;
}

enum { PN_NAME, PN_ICON, PN_COLOR };
static const char SQL_PROJECT_NOW[] =
    "SELECT name, icon, color FROM projects WHERE owner_id = ? AND ext_id = ? FOR UPDATE";

/* The project: found by (owner, client id), created on first use. Returns its id, or -1 (answered).
 * *renamed is set when an existing project's name, icon or colour changes: every public page of the
 * project shows them, so the caller republishes the project's other public sessions. */
static int64_t upsert_project(sl_op_t *op, const sync_req_t *q, int *renamed)
{
    sl_store_value_t k[] = {sl_store_int((int64_t)op->who.user_id), sl_store_text(q->pid, q->pid_len)};
    sl_store_result_t *now;
    if (sl_op_run(op, SQL_PROJECT_NOW, k, 2, &now) != 0)
        return -1;
    *renamed = now->nrows == 1 &&
               (!sl_ext_matches(sl_store_cell(now, 0, PN_NAME), q->pname, q->pname_len) ||
                (q->picon && !sl_ext_matches(sl_store_cell(now, 0, PN_ICON), q->picon, q->picon_len)) ||
                (q->pcolor && !sl_ext_matches(sl_store_cell(now, 0, PN_COLOR), q->pcolor, q->pcolor_len)));
    sl_store_result_free(now);
    sl_store_value_t p[] = {sl_store_int((int64_t)op->who.tenant_id),
                            sl_store_int((int64_t)op->who.user_id),
                            sl_store_text(q->pid, q->pid_len),
                            sl_store_text(q->pname, q->pname_len),
                            sl_store_text(q->picon ? q->picon : "", q->picon_len),
                            sl_store_text(q->pcolor ? q->pcolor : "", q->pcolor_len),
                            sl_store_int(q->picon != NULL),
                            sl_store_int(q->pcolor != NULL)};
    sl_store_result_t *r;
    if (sl_op_run(op, SQL_PROJECT_UPSERT, p, 8, &r) != 0)
        return -1;
    int64_t id = (int64_t)r->insert_id;
    sl_store_result_free(r);
    return id;
}

/* A new session row (private, version 0). */
static int insert_session(sl_op_t *op, const sync_req_t *q, const sl_specstory_doc_t *doc, int64_t project_id,
                          const char *agent, size_t agent_len)
{
    const char *t = q->title;
    size_t tl = q->title_len;
    if (t == NULL) {
        /* '' = no title of its own: viewers see the first visible exchange's title (see
         * projection.c), never that of a hidden one. */
        t = (doc->title && !looks_like_timestamp(doc->title)) ? doc->title : "";
        tl = sl_utf8_prefix(t, strlen(t), 500); /* the column holds 500; cut on a character boundary */
    }
    sl_store_value_t p[] = {sl_store_text(q->id, q->idlen),
                            sl_store_int((int64_t)op->who.tenant_id),
                            sl_store_int((int64_t)op->who.user_id),
                            sl_store_int(project_id),
                            sl_store_text(t, tl),
                            sl_store_text(agent, agent_len)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_exec(op->conn, SQL_SESSION_INSERT, p, 6, &err);
    if (r == NULL) {
        if (err.code == SL_STORE_E_DUP)
            sl_op_fail(op, SL_RPC_NOT_FOUND, "session not found"); /* created meanwhile by someone else */
        else
            sl_op_fail_store(op, &err);
        return -1;
    }
    sl_store_result_free(r);
    return 0;
}

/* The stored exchanges of a session (SQL_EXCHANGES_OF), or its hidden ones (SQL_HIDDEN_OF), as the
 * re-sync sees them. *out is malloc'd (free it). */
static int load_stored(sl_op_t *op, const char *sql, const char *id, size_t idlen, sl_stored_t **out,
                       size_t *n)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r;
    if (sl_op_run(op, sql, p, 1, &r) != 0)
        return -1;
    sl_stored_t *st = calloc(r->nrows ? r->nrows : 1, sizeof(*st));
    if (st == NULL) {
        sl_store_result_free(r);
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->nrows; i++) {
        st[i].id = sl_store_cell(r, i, EX_ID)->i;
        st[i].position = (uint32_t)sl_store_cell(r, i, EX_POSITION)->i;
        const sl_store_value_t *h = sl_store_cell(r, i, EX_PSHA), *rh = sl_store_cell(r, i, EX_RSHA);
        if (h->len == 32)
            memcpy(st[i].psha, h->ptr, 32);
        st[i].has_rsha = rh->len == 32;
        if (st[i].has_rsha)
            memcpy(st[i].rsha, rh->ptr, 32);
        st[i].deleted = sl_store_cell(r, i, EX_DELETED)->i != 0;
        st[i].by_sync = sl_store_cell(r, i, EX_BY_SYNC)->i != 0;
        st[i].hidden = sl_store_cell(r, i, EX_HIDDEN)->i != 0;
        const sl_store_value_t *c = sl_store_cell(r, i, EX_CREATED);
        if (c->type == SL_STORE_TEXT && c->len == 20)
            memcpy(st[i].created, c->ptr, 20);
    }
    *n = r->nrows;
    *out = st;
    sl_store_result_free(r);
    return 0;
}

static size_t trimmed_len(const char *s, size_t n)
{
    size_t a = 0;
    while (a < n && isspace((unsigned char)s[a]))
        a++;
    while (n > a && isspace((unsigned char)s[n - 1]))
        n--;
    return n - a;
}

void sl_sync_uploaded(sl_uploaded_t *u, const char *prompt, size_t plen, const char *response, size_t rlen,
                      const char *created)
{
    SHA256((const unsigned char *)prompt, plen, u->psha);
    SHA256((const unsigned char *)response, rlen, u->rsha);
    u->prompt_len = trimmed_len(prompt, plen);
    u->created = created;
}

/* The exchanges a re-sync wrote (what its projection build re-reads: sl_op_touch): those it
 * updated or removed, and the ids it appended. More than SL_TOUCH_MAX: the build reads every one. */
typedef struct touched {
    int64_t ids[SL_TOUCH_MAX];
    size_t n;
    int over;
} touched_t;

static void touch(touched_t *t, int64_t id)
{
    if (t->n < SL_TOUCH_MAX)
        t->ids[t->n++] = id;
    else
        t->over = 1;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Which stored exchange each uploaded one is and which arrive hidden (resync.c), then the writes:
 * matches keep their id and custom title and get the new text, the rest are appended (ids from
 * *seq on), stored exchanges the upload lacks are removed with their text kept. What it wrote goes
 * to *t. */
static int apply_exchanges(sl_op_t *op, const char *id, size_t idlen, const sl_specstory_doc_t *doc,
                           const sl_stored_t *st, size_t nst, uint32_t *seq, touched_t *t)
{
    sl_uploaded_t *up = calloc(doc->count ? doc->count : 1, sizeof(*up));
    sl_resync_step_t *steps = calloc(doc->count ? doc->count : 1, sizeof(*steps));
    unsigned char *removed = calloc(nst ? nst : 1, 1);
    int rc = -1;
    if (up == NULL || steps == NULL || removed == NULL) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < doc->count; i++) {
        const sl_specstory_exchange_t *e = &doc->exchanges[i];
        sl_sync_uploaded(&up[i], e->prompt, e->prompt_len, e->response, e->response_len, e->created_at);
    }
    if (sl_resync_plan(st, nst, up, doc->count, steps, removed) != 0) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    sl_store_value_t sid = sl_store_text(id, idlen);
    for (size_t i = 0; i < doc->count; i++) {
        const sl_specstory_exchange_t *e = &doc->exchanges[i];
        if (steps[i].skip)
            continue; /* the owner deleted it: it stays deleted */
        sl_store_value_t pos = sl_store_int((int64_t)i + 1);
        sl_store_value_t ttl = sl_store_text(e->title, strlen(e->title));
        sl_store_value_t prm = sl_store_text(e->prompt, e->prompt_len);
        sl_store_value_t rsp = sl_store_text(e->response, e->response_len);
        sl_store_value_t rsha = sl_store_blob(up[i].rsha, 32), hid = sl_store_int(steps[i].hidden);
        if (steps[i].row >= 0) {
            const sl_stored_t *was = &st[steps[i].row];
            if (!was->deleted && !was->by_sync && was->position == i + 1 && was->hidden == steps[i].hidden &&
                memcmp(was->psha, up[i].psha, 32) == 0 && was->has_rsha &&
                memcmp(was->rsha, up[i].rsha, 32) == 0)
                continue; /* the same text in the same place: a re-sync writes only what changed */
            sl_store_value_t p[] = {pos,  ttl, prm, sl_store_blob(up[i].psha, 32),    rsp,
                                    rsha, hid, sid, sl_store_int(st[steps[i].row].id)};
            if (sl_op_run(op, SQL_EXCHANGE_UPDATE, p, 9, NULL) != 0)
                goto out;
            touch(t, st[steps[i].row].id);
        } else {
            ++*seq;
            sl_store_value_t p[] = {sid,
                                    sl_store_int(*seq),
                                    pos,
                                    ttl,
                                    prm,
                                    rsp,
                                    sl_store_blob(up[i].psha, 32),
                                    rsha,
                                    hid,
                                    e->created_at ? sl_store_text(e->created_at, strlen(e->created_at))
                                                  : sl_store_null()};
            if (sl_op_run(op, SQL_EXCHANGE_INSERT, p, 10, NULL) != 0)
                goto out;
        }
    }
    for (size_t k = 0; k < nst; k++) {
        if (!removed[k])
            continue;
        sl_store_value_t p[] = {sid, sl_store_int(st[k].id)};
        if (sl_op_run(op, SQL_EXCHANGE_SYNC_REMOVE, p, 2, NULL) != 0)
            goto out;
        touch(t, st[k].id);
    }
    rc = 0;
out:
    free(up);
    free(steps);
    free(removed);
    return rc;
}

/* The bytes of the results' first columns, joined: *out malloc'd. -1 when out of memory. */
static int join_cells(sl_store_result_t *const *rs, size_t nr, char **out, size_t *len)
{
    size_t n = 0;
    for (size_t k = 0; k < nr; k++)
        for (size_t i = 0; rs[k] && i < rs[k]->nrows; i++)
            n += sl_store_cell(rs[k], i, 0)->len;
    char *m = malloc(n ? n : 1);
    if (m == NULL)
        return -1;
    size_t at = 0;
    for (size_t k = 0; k < nr; k++)
        for (size_t i = 0; rs[k] && i < rs[k]->nrows; i++) {
            const sl_store_value_t *c = sl_store_cell(rs[k], i, 0);
            if (c->len)
                memcpy(m + at, c->ptr, c->len);
            at += c->len;
        }
    *out = m;
    *len = n;
    return 0;
}

int sl_upload_read_whole(sl_op_t *op, const char *id, size_t idlen, char **out, size_t *len)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(0)};
    sl_store_result_t *r[2] = {NULL, NULL};
    *out = NULL;
    *len = 0;
    int rc = -1;
    if (sl_op_run(op, SQL_BASE_READ, p, 1, &r[0]) != 0 || sl_op_run(op, SQL_TAIL_AFTER, p, 2, &r[1]) != 0)
        goto out;
    if (join_cells(r, 2, out, len) != 0) {
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    rc = 0;
out:
    sl_store_result_free(r[0]);
    sl_store_result_free(r[1]);
    return rc;
}

/* Adds md[0..n) as parts first, first + 1 (its last SPLIT_TAIL bytes apart): the number added. */
static int add_parts(sl_op_t *op, sl_store_value_t id, int64_t first, const char *md, size_t n)
{
    size_t cut[3] = {0, n > SPLIT_TAIL ? n - SPLIT_TAIL : 0, n};
    int added = 0;
    for (int k = 0; k < 2; k++) {
        size_t len = cut[k + 1] - cut[k];
        if (len == 0)
            continue;
        unsigned char sha[32];
        SHA256((const unsigned char *)md + cut[k], len, sha);
        sl_store_value_t t[] = {id, sl_store_int(first + added), sl_store_int((int64_t)len),
                                sl_store_blob(sha, 32), sl_store_blob(md + cut[k], len)};
        if (sl_op_run(op, SQL_TAIL_ADD, t, 5, NULL) != 0)
            return -1;
        added++;
    }
    return added;
}

/* The upload itself, byte-exact (ExportSession gives it back); the one it replaces is kept when it
 * differs, the last SL_UPLOADS_KEPT of them: a sync never destroys the only copy of anything. What
 * it writes is what changed (SQL_UPLOAD_STATE above). */
static int store_upload(sl_op_t *op, const sync_req_t *q)
{
    const char *md = q->markdown;
    size_t L = q->md_len;
    unsigned char sha[32], bsha[32];
    SHA256((const unsigned char *)md, L, sha);
    msgpack_sbuffer meta;
    msgpack_sbuffer_init(&meta);
    if (q->metadata) { /* kept as the request's own msgpack map */
        msgpack_packer mp;
        msgpack_packer_init(&mp, &meta, msgpack_sbuffer_write);
        msgpack_pack_object(&mp, *q->metadata);
    }
    sl_store_value_t id = sl_store_text(q->id, q->idlen),
                     raw = q->raw ? sl_store_blob(q->raw, q->raw_len) : sl_store_null(),
                     sdata = q->sdata ? sl_store_blob(q->sdata, q->sdata_len) : sl_store_null(),
                     mt = q->metadata ? sl_store_blob(meta.data, meta.size) : sl_store_null(),
                     len = sl_store_int((int64_t)L), hash = sl_store_blob(sha, 32);
    sl_store_result_t *st = NULL, *parts = NULL, *after = NULL;
    char *old = NULL;
    size_t oldlen = 0;
    int rc = -1;
    /* a write of the whole: the base, and the last SPLIT_TAIL bytes as part 1 */
    size_t blen = L > SPLIT_TAIL ? L - SPLIT_TAIL : L;
    SHA256((const unsigned char *)md, blen, bsha);
    sl_store_value_t base = sl_store_blob(md, blen), base_len = sl_store_int((int64_t)blen),
                     base_sha = sl_store_blob(bsha, 32);
    int64_t whole_parts = blen < L ? 1 : 0;
    if (sl_op_run(op, SQL_UPLOAD_STATE, &id, 1, &st) != 0)
        goto out;
    if (st->nrows == 0) {
        sl_store_value_t p[] = {id,    base, base_len, base_sha, raw,
                                sdata, mt,   len,      hash,     sl_store_int(whole_parts)};
        rc = sl_op_run(op, SQL_UPLOAD_INSERT, p, 10, NULL) != 0 ||
                     add_parts(op, id, 1, md + blen, L - blen) < 0
                 ? -1
                 : 0;
        goto out;
    }
    const sl_store_value_t *clen = sl_store_cell(st, 0, U_LEN), *csha = sl_store_cell(st, 0, U_SHA),
                           *cblen = sl_store_cell(st, 0, U_BLEN), *cbsha = sl_store_cell(st, 0, U_BSHA);
    if (clen->type == SL_STORE_INT && (size_t)clen->i == L && csha->len == 32 &&
        memcmp(csha->ptr, sha, 32) == 0) {
        sl_store_value_t p[] = {raw, sdata, mt, id}; /* the same bytes: nothing to keep or write */
        rc = sl_op_run(op, SQL_UPLOAD_SAME, p, 4, NULL);
        goto out;
    }
    /* what the new upload keeps: the base, then the parts it still begins with */
    size_t off = 0;
    int64_t kept = -1; /* -1: not even the base; else the last part kept (0: the base only) */
    unsigned char h[32];
    if (cblen->type == SL_STORE_INT && (size_t)cblen->i <= L && cbsha->len == 32) {
        SHA256((const unsigned char *)md, (size_t)cblen->i, h);
        if (memcmp(h, cbsha->ptr, 32) == 0) {
            off = (size_t)cblen->i;
            kept = 0;
            if (sl_op_run(op, SQL_TAIL_STATE, &id, 1, &parts) != 0)
                goto out;
            for (size_t i = 0; i < parts->nrows; i++) {
                size_t pl = (size_t)sl_store_cell(parts, i, 1)->i;
                const sl_store_value_t *ps = sl_store_cell(parts, i, 2);
                if (off + pl > L || ps->len != 32)
                    break;
                SHA256((const unsigned char *)md + off, pl, h);
                if (memcmp(h, ps->ptr, 32) != 0)
                    break;
                off += pl;
                kept = sl_store_cell(parts, i, 0)->i;
            }
        }
    }
    sl_store_value_t prune[] = {id, sl_store_int(SL_UPLOADS_KEPT), id};
    if (kept >= 0) {
        /* the replaced upload: the first `off` bytes of this one, then its parts after `kept` */
        sl_store_value_t ap[] = {id, sl_store_int(kept)};
        if (sl_op_run(op, SQL_TAIL_AFTER, ap, 2, &after) != 0)
            goto out;
        if (join_cells(&after, 1, &old, &oldlen) != 0) {
            sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        sl_store_value_t a[] = {sl_store_blob(old, oldlen), sl_store_int((int64_t)off), id};
        if (sl_op_run(op, SQL_ARCHIVE, a, 3, NULL) != 0 ||
            sl_op_run(op, SQL_UPLOAD_PRUNE, prune, 3, NULL) != 0)
            goto out;
        if (kept + 2 <= TAIL_PARTS_MAX) {
            int added;
            if (sl_op_run(op, SQL_TAIL_DROP_AFTER, ap, 2, NULL) != 0 ||
                (added = add_parts(op, id, kept + 1, md + off, L - off)) < 0)
                goto out;
            sl_store_value_t u[] = {raw, sdata, mt, len, hash, sl_store_int(kept + added), id};
            rc = sl_op_run(op, SQL_UPLOAD_PARTS, u, 7, NULL);
            goto out;
        }
    } else {
        if (sl_upload_read_whole(op, q->id, q->idlen, &old, &oldlen) != 0)
            goto out;
        sl_store_value_t a[] = {sl_store_blob(old, oldlen), sl_store_null(), id};
        if (sl_op_run(op, SQL_ARCHIVE, a, 3, NULL) != 0 ||
            sl_op_run(op, SQL_UPLOAD_PRUNE, prune, 3, NULL) != 0)
            goto out;
    }
    /* written whole: the base changed, or too many parts */
    sl_store_value_t w[] = {base, base_len, base_sha, raw, sdata, mt, len, hash, sl_store_int(whole_parts),
                            id};
    sl_store_value_t d[] = {id, sl_store_int(0)};
    rc = sl_op_run(op, SQL_UPLOAD_REWRITE, w, 10, NULL) != 0 ||
                 sl_op_run(op, SQL_TAIL_DROP_AFTER, d, 2, NULL) != 0 ||
                 add_parts(op, id, 1, md + blen, L - blen) < 0
             ? -1
             : 0;
out:
    free(old);
    sl_store_result_free(st);
    sl_store_result_free(parts);
    sl_store_result_free(after);
    msgpack_sbuffer_destroy(&meta);
    return rc;
}

/* Files larger than this are imported on the thread pool. */
#define INLINE_PARSE (64u << 10)

typedef struct parse {
    const char *md;
    size_t len, max;
    sl_specstory_doc_t *doc;
    char *err;
    int rc;
} parse_t;

static void parse(void *arg)
{
    parse_t *p = arg;
    p->rc = sl_specstory_parse_max(p->md, p->len, p->max, p->doc, p->err, 256);
}

void sl_owner_sync_session(sl_op_t *op)
{
    sl_core_t *core = op->core;
    sync_req_t q;
    if (read_sync_request(op, &q) != 0)
        return;
    sl_specstory_doc_t doc;
    char perr[256];
    parse_t pj = {q.markdown, q.md_len, core->cfg.max_exchanges, &doc, perr, 0};
    if (q.md_len > INLINE_PARSE)
        sl_await_work(core->loop, parse, &pj); /* importing a large file would stall the loop */
    else
        parse(&pj);
    int prc = pj.rc;
    if (prc != 0) {
        if (prc == -2)
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "%s", perr); /* too many exchanges */
        else
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"markdown\": %s", perr);
        return;
    }
    for (size_t i = 0; i < doc.count; i++)
        if (doc.exchanges[i].prompt_len > SL_MAX_PROMPT) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "exchange %zu's prompt is %zu bytes; the limit is %u",
                       i + 1, doc.exchanges[i].prompt_len, SL_MAX_PROMPT);
            sl_specstory_free(&doc);
            return;
        }
    char gen_id[37];
    if (q.id == NULL) {
        new_session_id(gen_id);
        q.id = gen_id;
        q.idlen = strlen(gen_id);
    }
    const char *agent = doc.agent ? doc.agent : "";
    size_t agent_len = sl_utf8_prefix(agent, strlen(agent), SL_MAX_AGENT); /* a label: cut to the column */
    sl_stored_t *ex = NULL;
    size_t nex = 0;
    sl_locked_t s;
    sl_fanout_t others;
    memset(&s, 0, sizeof(s));
    memset(&others, 0, sizeof(others));
    int64_t project_id;
    int renamed = 0;
    if (sl_op_tx_begin(op) != 0 || (project_id = upsert_project(op, &q, &renamed)) < 0 ||
        sl_op_lock_session(op, q.id, q.idlen, 1, &s) != 0)
        goto out;
    int created = !s.exists;
    if (created && insert_session(op, &q, &doc, project_id, agent, agent_len) != 0)
        goto out;
    /* Existing exchanges, to keep the owner's edits on those still in the upload. A deleted
     * session that is synced again starts over: its old exchanges stay removed. */
    if (!created && !s.deleted && load_stored(op, SQL_EXCHANGES_OF, q.id, q.idlen, &ex, &nex) != 0)
        goto out;
    if (sl_op_change_begin(op, &s, 0) != 0 ||
        (renamed && sl_fanout_begin(op, project_id, q.id, q.idlen, &others) != 0))
        goto out;
    uint32_t seq = s.seq;
    touched_t t = {.n = 0};
    if (apply_exchanges(op, q.id, q.idlen, &doc, ex, nex, &seq, &t) != 0)
        goto out;
    qsort(t.ids, t.n, sizeof(t.ids[0]), cmp_id);
    sl_op_touch(&s, t.ids, t.over ? SL_TOUCH_MAX + 1 : t.n, (int64_t)s.seq + 1, (int64_t)seq);
    sl_store_value_t p[] = {sl_store_int(project_id),
                            q.title ? sl_store_text(q.title, q.title_len) : sl_store_null(),
                            sl_store_int(seq), sl_store_text(agent, agent_len), sl_store_text(q.id, q.idlen)};
    if (sl_op_run(op, SQL_SESSION_UPDATE, p, 5, NULL) != 0 || store_upload(op, &q) != 0)
        goto out;
    s.scan |= SL_SCAN_ALL; /* the new and changed text is scanned before the projection is built */
    if (others.n == 0 && sl_op_change_commit(op, &s) != 0)
        goto out;
    if (others.n > 0) { /* a renamed project: its other public pages change in the same transaction */
        if (sl_op_change_prepare(op, &s) != 0 || sl_fanout_prepare(op, &others) != 0 ||
            sl_op_tx_commit(op) != 0)
            goto out;
        int unpublished = sl_op_change_publish(op, &s) != 0;
        if (sl_fanout_publish(op, &others) != 0 || unpublished) {
            sl_op_fail_unpublished(op);
            goto out;
        }
    }

    char etag[40];
    sl_upload_etag(q.markdown, q.md_len, etag);
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 5);
    sl_pack_kv_str(pk, "session_id", q.id, q.idlen);
    sl_pack_kv_bool(pk, "created", created);
    sl_pack_kv_u64(pk, "version", s.new_version);
    sl_pack_kv_str(pk, "etag", etag, strlen(etag));
    sl_pack_kv_u64(pk, "exchange_count", doc.count);
    sl_op_reply(op);
out:
    sl_projection_free(&s.proj);
    sl_fanout_free(&others);
    free(ex);
    sl_specstory_free(&doc);
}

int sl_sync_load_hidden(sl_op_t *op, const char *id, size_t idlen, sl_stored_t **out, size_t *n)
{
    return load_stored(op, SQL_HIDDEN_OF, id, idlen, out, n);
}
