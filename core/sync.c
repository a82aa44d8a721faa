/*
 * How sessions arrive: SyncSession (a SpecStory upload, authoritative for the whole session) and
 * AppendExchanges (exchanges added one call at a time, e.g. by an agent as it works).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "core/internal/owner.h"
#include "core/internal/resync.h"
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
static const char SQL_HIDDEN_OF[] =
    "SELECT id, position, prompt_sha256, response_sha256, 0, 0, hidden, '' FROM exchanges"
    " WHERE session_id = ? AND hidden = 1";
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
/* the upload being replaced, kept (its markdown differs): the last SL_UPLOADS_KEPT stay */
static const char SQL_UPLOAD_ARCHIVE[] =
    "INSERT INTO session_upload_history (session_id, seq, markdown, raw_data, session_data, metadata, "
    "uploaded_at)"
    " SELECT u.session_id, COALESCE((SELECT MAX(h.seq) FROM session_upload_history h"
    "   WHERE h.session_id = u.session_id), 0) + 1, u.markdown, u.raw_data, u.session_data, u.metadata,"
    "  u.updated_at FROM session_uploads u WHERE u.session_id = ? AND SHA2(u.markdown, 256) <> ?";
static const char SQL_UPLOAD_PRUNE[] =
    "DELETE FROM session_upload_history WHERE session_id = ? AND seq + ? <= (SELECT m FROM"
    " (SELECT MAX(seq) AS m FROM session_upload_history WHERE session_id = ?) t)";
static const char SQL_UPLOAD_UPSERT[] =
    "INSERT INTO session_uploads (session_id, markdown, raw_data, session_data, metadata) VALUES (?, ?, ?, "
    "?, ?)"
    " ON DUPLICATE KEY UPDATE markdown = VALUES(markdown), raw_data = VALUES(raw_data),"
    " session_data = VALUES(session_data), metadata = VALUES(metadata), updated_at = NOW(6)";

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

static void uploaded(sl_uploaded_t *u, const char *prompt, size_t plen, const char *response, size_t rlen,
                     const char *created)
{
    SHA256((const unsigned char *)prompt, plen, u->psha);
    SHA256((const unsigned char *)response, rlen, u->rsha);
    u->prompt_len = trimmed_len(prompt, plen);
    u->created = created;
}

/* Which stored exchange each uploaded one is and which arrive hidden (resync.c), then the writes:
 * matches keep their id and custom title and get the new text, the rest are appended (ids from
 * *seq on), stored exchanges the upload lacks are removed with their text kept. */
static int apply_exchanges(sl_op_t *op, const char *id, size_t idlen, const sl_specstory_doc_t *doc,
                           const sl_stored_t *st, size_t nst, uint32_t *seq)
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
        uploaded(&up[i], e->prompt, e->prompt_len, e->response, e->response_len, e->created_at);
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
    }
    rc = 0;
out:
    free(up);
    free(steps);
    free(removed);
    return rc;
}

/* The upload itself, byte-exact (ExportSession gives it back); the one it replaces is kept when it
 * differs, the last SL_UPLOADS_KEPT of them: a sync never destroys the only copy of anything. */
static int store_upload(sl_op_t *op, const sync_req_t *q)
{
    unsigned char sha[32];
    char hex[65];
    SHA256((const unsigned char *)q->markdown, q->md_len, sha);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", sha[i]);
    sl_store_value_t a[] = {sl_store_text(q->id, q->idlen), sl_store_text(hex, 64)};
    sl_store_value_t d[] = {sl_store_text(q->id, q->idlen), sl_store_int(SL_UPLOADS_KEPT),
                            sl_store_text(q->id, q->idlen)};
    if (sl_op_run(op, SQL_UPLOAD_ARCHIVE, a, 2, NULL) != 0 ||
        sl_op_run(op, SQL_UPLOAD_PRUNE, d, 3, NULL) != 0)
        return -1;
    msgpack_sbuffer meta;
    msgpack_sbuffer_init(&meta);
    if (q->metadata) { /* kept as the request's own msgpack map */
        msgpack_packer mp;
        msgpack_packer_init(&mp, &meta, msgpack_sbuffer_write);
        msgpack_pack_object(&mp, *q->metadata);
    }
    sl_store_value_t p[] = {sl_store_text(q->id, q->idlen), sl_store_blob(q->markdown, q->md_len),
                            q->raw ? sl_store_blob(q->raw, q->raw_len) : sl_store_null(),
                            q->sdata ? sl_store_blob(q->sdata, q->sdata_len) : sl_store_null(),
                            q->metadata ? sl_store_blob(meta.data, meta.size) : sl_store_null()};
    int rc = sl_op_run(op, SQL_UPLOAD_UPSERT, p, 5, NULL);
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
    if (apply_exchanges(op, q.id, q.idlen, &doc, ex, nex, &seq) != 0)
        goto out;
    sl_store_value_t p[] = {sl_store_int(project_id),
                            q.title ? sl_store_text(q.title, q.title_len) : sl_store_null(),
                            sl_store_int(seq), sl_store_text(agent, agent_len), sl_store_text(q.id, q.idlen)};
    if (sl_op_run(op, SQL_SESSION_UPDATE, p, 5, NULL) != 0 || store_upload(op, &q) != 0)
        goto out;
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

/* ---- AppendExchanges ---- */

#define MAX_APPEND_PER_CALL 1000

enum { MAXPOS_POSITION, MAXPOS_LIVE };
static const char SQL_MAX_POSITION[] = "SELECT COALESCE(MAX(position), 0), COUNT(*) FROM exchanges"
                                       " WHERE session_id = ? AND deleted_at IS NULL";
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
    if (load_stored(op, SQL_HIDDEN_OF, id, idlen, &st, &nst) != 0)
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
            uploaded(&up[i], pr, pl, rs, rl, NULL);
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
