/* ListSessions: the owner's sessions, newest first, filtered by project and time, with full-text search. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal/owner.h"

#define LIST_DEFAULT_PAGE 50
#define LIST_MAX_PAGE     200

/* Columns: id, title, is_public, updated_at, project (4), updated_at micros, first exchange's
 * title, snippet (see the enum below). */
#define LIST_SQL(SNIPPET_MATCH, EXCHANGE_MATCH)                                                              \
    "SELECT s.id, s.title, s.is_public, DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ'),"                    \
    " p.id, p.name, p.icon, p.color, CAST(UNIX_TIMESTAMP(s.updated_at) * 1000000 AS UNSIGNED),"              \
    " (SELECT COALESCE(e.title, e.default_title) FROM exchanges e WHERE e.session_id = s.id"                 \
    "   AND e.deleted_at IS NULL ORDER BY e.position, e.id LIMIT 1),"                                        \
    " (SELECT SUBSTRING(CONCAT(e.prompt, '\n', e.response),"                                                 \
    "    GREATEST(1, LOCATE(?, CONCAT(e.prompt, '\n', e.response)) - 60), 200)"                              \
    "   FROM exchanges e WHERE ? <> '' AND e.session_id = s.id AND e.deleted_at IS NULL"                     \
    "   AND " SNIPPET_MATCH " ORDER BY e.position LIMIT 1)"                                                  \
    " FROM sessions s JOIN projects p ON p.id = s.project_id"                                                \
    " WHERE s.owner_id = ? AND s.deleted_at IS NULL"                                                         \
    " AND (? = '' OR FIND_IN_SET(s.project_id, ?)) AND (? = '' OR p.ext_id = ?)"                             \
    " AND (? IS NULL OR s.updated_at >= STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'))"                               \
    " AND (? IS NULL OR s.updated_at < STR_TO_DATE(?, '%Y-%m-%dT%H:%i:%sZ'))"                                \
    " AND (? = '' OR s.title LIKE ? OR EXISTS (SELECT 1 FROM exchanges e WHERE e.session_id = s.id"          \
    "   AND e.deleted_at IS NULL AND (COALESCE(e.title, e.default_title) LIKE ? OR " EXCHANGE_MATCH ")))"    \
    " AND (? = 0 OR s.updated_at < FROM_UNIXTIME(? / 1000000)"                                               \
    "   OR (s.updated_at = FROM_UNIXTIME(? / 1000000) AND s.id < ?))"                                        \
    " ORDER BY s.updated_at DESC, s.id DESC LIMIT ?"

/* Newest first by (updated_at, id): keyset pagination, stable under inserts; the page token is
 * "<updated_at micros>.<id>" of the last row of the previous page. `query` searches the session
 * title and the exchanges' titles, prompts and responses (hidden ones too: the owner sees all).
 * Prompts and responses go through the FULLTEXT index (a phrase search in boolean mode); a query
 * without any word of 3+ characters (InnoDB's minimum token size) falls back to LIKE. */
static const char SQL_LIST_FT[] = LIST_SQL("MATCH (e.prompt, e.response) AGAINST (? IN BOOLEAN MODE)",
                                           "MATCH (e.prompt, e.response) AGAINST (? IN BOOLEAN MODE)");
static const char SQL_LIST_LIKE[] =
    LIST_SQL("(e.prompt LIKE ? OR e.response LIKE ?)", "e.prompt LIKE ? OR e.response LIKE ?");
static const char SQL_PROJECT_OWNER[] = "SELECT owner_id FROM projects WHERE id = ?";

enum {
    L_ID,
    L_TITLE,
    L_PUBLIC,
    L_UPDATED,
    L_PROJECT,
    L_UPDATED_US = L_PROJECT + 4,
    L_FIRST_TITLE,
    L_SNIPPET
};

/* The filters of one ListSessions call, read and checked. */
typedef struct list_req {
    int64_t page;
    const char *query, *from, *to, *ext;
    size_t qlen, flen, tlen, extlen;
    long long after_us; /* the page token: (updated_at micros, id) of the previous page's last row */
    char after_id[65];
    char plist[51 * 21 + 1]; /* the caller's project ids, comma-separated (FIND_IN_SET) */
    size_t plist_len;
} list_req_t;

static int read_page_token(sl_op_t *op, const char *token, size_t toklen, list_req_t *q)
{
    char buf[101];
    memcpy(buf, token, toklen);
    buf[toklen] = 0;
    char *dot = strchr(buf, '.');
    char *end = NULL;
    if (dot)
        q->after_us = strtoll(buf, &end, 10);
    if (dot == NULL || end != dot || q->after_us <= 0 || !sl_rpc_id_valid(dot + 1, strlen(dot + 1))) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"page_token\" is not a token this server gave out");
        return -1;
    }
    snprintf(q->after_id, sizeof(q->after_id), "%s", dot + 1);
    return 0;
}

/* "project_id" and/or "project_ids": each must be the caller's (another's is not_found). */
static int read_projects(sl_op_t *op, int64_t project, list_req_t *q)
{
    int64_t pids[51];
    size_t npids = 0;
    if (project)
        pids[npids++] = project;
    const msgpack_object *arr = sl_rpc_field(sl_op_req(op), "project_ids");
    if (arr) {
        if (arr->type != MSGPACK_OBJECT_ARRAY || arr->via.array.size > 50) {
            sl_op_fail(op, SL_RPC_INVALID_ARGUMENT,
                       "field \"project_ids\" must be an array of at most 50 project ids");
            return -1;
        }
        for (uint32_t i = 0; i < arr->via.array.size; i++) {
            const msgpack_object *o = &arr->via.array.ptr[i];
            if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0 || o->via.u64 > INT64_MAX) {
                sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "field \"project_ids\" must hold positive integers");
                return -1;
            }
            pids[npids++] = (int64_t)o->via.u64;
        }
    }
    for (size_t i = 0; i < npids; i++) {
        sl_store_value_t pp[] = {sl_store_int(pids[i])};
        sl_store_error_t err;
        sl_store_result_t *pr = sl_await_query(op->core->owner, SQL_PROJECT_OWNER, pp, 1, &err);
        if (pr == NULL) {
            sl_op_fail_store(op, &err);
            return -1;
        }
        int mine = pr->nrows == 1 && (uint64_t)sl_store_cell(pr, 0, 0)->i == op->who.user_id;
        sl_store_result_free(pr);
        if (!mine) {
            sl_op_fail(op, SL_RPC_NOT_FOUND, "project %lld not found", (long long)pids[i]);
            return -1;
        }
        q->plist_len += (size_t)snprintf(q->plist + q->plist_len, sizeof(q->plist) - q->plist_len, "%s%lld",
                                         i ? "," : "", (long long)pids[i]);
    }
    return 0;
}

static int read_list_request(sl_op_t *op, list_req_t *q)
{
    const msgpack_object *m = sl_op_req(op);
    char *msg = op->msg;
    size_t ml = sizeof(op->msg);
    int64_t project = 0;
    const char *token = NULL;
    size_t toklen = 0;
    memset(q, 0, sizeof(*q));
    q->page = LIST_DEFAULT_PAGE;
    if (sl_rpc_get_i64(m, "project_id", 0, 1, INT64_MAX, &project, msg, ml) < 0 ||
        sl_rpc_get_i64(m, "page_size", 0, 1, LIST_MAX_PAGE, &q->page, msg, ml) < 0 ||
        sl_rpc_get_str(m, "query", 0, 200, &q->query, &q->qlen, msg, ml) < 0 ||
        sl_rpc_get_str(m, "from", 0, 64, &q->from, &q->flen, msg, ml) < 0 ||
        sl_rpc_get_str(m, "to", 0, 64, &q->to, &q->tlen, msg, ml) < 0 ||
        sl_rpc_get_str(m, "page_token", 0, 100, &token, &toklen, msg, ml) < 0) {
        sl_op_fail_field(op);
        return -1;
    }
    if ((q->from && !sl_valid_timestamp(q->from, q->flen)) ||
        (q->to && !sl_valid_timestamp(q->to, q->tlen))) {
        sl_op_fail(op, SL_RPC_INVALID_ARGUMENT, "fields \"from\" and \"to\" must be YYYY-MM-DDTHH:MM:SSZ");
        return -1;
    }
    if (token && toklen && read_page_token(op, token, toklen, q) != 0)
        return -1;
    if (sl_rpc_get_str(m, "project_ext_id", 0, 200, &q->ext, &q->extlen, msg, ml) < 0) {
        sl_op_fail_field(op);
        return -1;
    }
    return read_projects(op, project, q);
}

/* The query as a LIKE pattern (its own % _ \ escaped) and as a FULLTEXT phrase (without quotes);
 * returns 1 when the phrase can use the index (a word of 3+ characters, InnoDB's minimum). */
static int query_patterns(const char *query, size_t qlen, char *like, size_t *k, char *phrase, size_t *f)
{
    size_t word = 0, longest = 0;
    *k = *f = 0;
    like[(*k)++] = '%';
    phrase[(*f)++] = '"';
    for (size_t i = 0; i < qlen; i++) {
        if (query[i] == '%' || query[i] == '_' || query[i] == '\\')
            like[(*k)++] = '\\';
        like[(*k)++] = query[i];
        if (query[i] != '"')
            phrase[(*f)++] = query[i];
        word = isalnum((unsigned char)query[i]) || (unsigned char)query[i] >= 0x80 ? word + 1 : 0;
        if (word > longest)
            longest = word;
    }
    like[(*k)++] = '%';
    phrase[(*f)++] = '"';
    return longest >= 3;
}

static void pack_rows(sl_op_t *op, const list_req_t *q, const sl_store_result_t *r)
{
    size_t rows = r->nrows > (size_t)q->page ? (size_t)q->page : r->nrows;
    msgpack_packer *pk = sl_op_pk(op);
    msgpack_pack_map(pk, 2);
    sl_rpc_pack_str(pk, "sessions");
    msgpack_pack_array(pk, rows);
    for (size_t i = 0; i < rows; i++) {
        int snippet = q->qlen > 0 && sl_store_cell(r, i, L_SNIPPET)->type == SL_STORE_TEXT;
        msgpack_pack_map(pk, 5 + snippet);
        sl_rpc_pack_str(pk, "session_id");
        sl_pack_cell_str(pk, r, i, L_ID);
        sl_pack_owner_title(pk, sl_store_cell(r, i, L_TITLE), sl_store_cell(r, i, L_FIRST_TITLE));
        sl_rpc_pack_str(pk, "project");
        sl_pack_project(pk, r, i, L_PROJECT);
        sl_rpc_pack_str(pk, "updated_at");
        sl_pack_cell_str(pk, r, i, L_UPDATED);
        sl_pack_kv_bool(pk, "public", sl_store_cell(r, i, L_PUBLIC)->i != 0);
        if (snippet) {
            /* SUBSTRING counts characters, so the cut is on a character boundary. */
            sl_rpc_pack_str(pk, "snippet");
            sl_pack_cell_str(pk, r, i, L_SNIPPET);
        }
    }
    sl_rpc_pack_str(pk, "next_page_token");
    if (r->nrows > (size_t)q->page) {
        char tok[128];
        const sl_store_value_t *idv = sl_store_cell(r, rows - 1, L_ID);
        int n =
            snprintf(tok, sizeof(tok), "%lld.%.*s", (long long)sl_store_cell(r, rows - 1, L_UPDATED_US)->i,
                     (int)idv->len, (const char *)idv->ptr);
        sl_rpc_pack_strn(pk, tok, (size_t)n);
    } else {
        msgpack_pack_nil(pk);
    }
}

void sl_owner_list_sessions(sl_op_t *op)
{
    list_req_t q;
    if (read_list_request(op, &q) != 0)
        return;
    char *like = malloc(q.qlen * 2 + 3), *phrase = malloc(q.qlen + 3);
    if (like == NULL || phrase == NULL) {
        free(like);
        free(phrase);
        sl_op_fail(op, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t k, f;
    int use_ft = query_patterns(q.query, q.qlen, like, &k, phrase, &f);
    sl_store_value_t qv = sl_store_text(q.query ? q.query : "", q.qlen), lk = sl_store_text(like, k);
    sl_store_value_t ft = sl_store_text(phrase, f);
    sl_store_value_t fr = q.from ? sl_store_text(q.from, q.flen) : sl_store_null();
    sl_store_value_t t = q.to ? sl_store_text(q.to, q.tlen) : sl_store_null();
    sl_store_value_t pl = sl_store_text(q.plist, q.plist_len),
                     ex = sl_store_text(q.ext ? q.ext : "", q.extlen);
    sl_store_value_t after = sl_store_int(q.after_us);
    /* The markers of LIST_SQL in order: snippet (query, query, match), owner, projects, ext, from,
     * to, query (title, exchange title, match), page token, limit. */
    sl_store_value_t p[24];
    size_t np = 0;
    p[np++] = qv;
    p[np++] = qv;
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
    p[np++] = qv;
    p[np++] = lk;
    p[np++] = lk;
    if (use_ft) {
        p[np++] = ft;
    } else {
        p[np++] = lk;
        p[np++] = lk;
    }
    p[np++] = after;
    p[np++] = after;
    p[np++] = after;
    p[np++] = sl_store_text(q.after_id, strlen(q.after_id));
    p[np++] = sl_store_int(q.page + 1);
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(op->core->owner, use_ft ? SQL_LIST_FT : SQL_LIST_LIKE, p, np, &err);
    free(like);
    free(phrase);
    if (r == NULL) {
        sl_op_fail_store(op, &err);
        return;
    }
    pack_rows(op, &q, r);
    sl_store_result_free(r);
    sl_op_reply(op);
}
