/*
 * Secret scanning inside every change (docs/secrets.md). A row is *scanned* once its findings and
 * its public text are written; the public views show scanned rows only (migration 9), and whoever
 * changes a text or a title makes the row unscanned again (the triggers). So:
 *
 *   - every change scans what it made unscanned, inside its transaction, before its projection is
 *     built (sl_scan_pending, called by sl_op_change_prepare): there is no moment at which a page
 *     shows a fresh secret, and the cost is that of the changed rows;
 *   - a row changed behind our back (an operator in SQL, the migration) leaves the public page
 *     until it is scanned: the background pass (sl_scan_pass) finds such sessions and runs an
 *     owner change on each, which scans and republishes.
 *
 * The owner's decisions follow the text: a finding is known by its field, the SHA-256 of its value
 * and its occurrence among equal values in that field; a rescan (a re-sync, an edit, a decision)
 * keeps the id and the decision of every finding it finds again, and a new occurrence is a new
 * finding, redacted.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal/owner.h"
#include "core/internal/secrets.h"

#define SCAN_BATCH 200 /* rows read per statement */

enum { F_PROMPT, F_RESPONSE, F_TITLE, F_SESSION_TITLE, F_COUNT };
static const char *const field_names[F_COUNT] = {"prompt", "response", "title", "session_title"};

const char *sl_scan_field_name(int field)
{
    return field >= 0 && field < F_COUNT ? field_names[field] : "?";
}

static const char SQL_UNSCANNED[] =
    "SELECT e.id, e.prompt, e.response, COALESCE(e.title, e.default_title),"
    " EXISTS (SELECT 1 FROM session_findings f WHERE f.session_id = e.session_id AND f.exchange_id = e.id)"
    " FROM exchanges e FORCE INDEX (exchanges_unscanned)"
    " WHERE e.scanned = 0 AND e.session_id = ? AND e.deleted_at IS NULL ORDER BY e.id"
    " LIMIT " /* SCAN_BATCH */ "200 FOR UPDATE";
enum { U_ID, U_PROMPT, U_RESPONSE, U_TITLE, U_HAS_FINDINGS };
static const char SQL_TITLE_UNSCANNED[] = "SELECT title FROM sessions WHERE id = ? AND title_scanned = 0";
static const char SQL_OLD_FINDINGS[] =
    "SELECT id, exchange_id, field, value_sha256, occurrence, revealed"
    " FROM session_findings WHERE session_id = ? AND exchange_id BETWEEN ? AND ?";
static const char SQL_OLD_TITLE_FINDINGS[] =
    "SELECT id, exchange_id, field, value_sha256, occurrence, revealed"
    " FROM session_findings WHERE session_id = ? AND exchange_id IS NULL";
enum { O_ID, O_EX, O_FIELD, O_SHA, O_OCC, O_REVEALED };
static const char SQL_DROP_FINDINGS[] =
    "DELETE FROM session_findings WHERE session_id = ? AND exchange_id = ?";
static const char SQL_DROP_TITLE_FINDINGS[] =
    "DELETE FROM session_findings WHERE session_id = ? AND exchange_id IS NULL";
static const char SQL_ADD_FINDING[] =
    "INSERT INTO session_findings (id, session_id, exchange_id, field, kind, rule_id, start_offset, "
    "end_offset,"
    " value_sha256, occurrence, preview, revealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_EXCHANGE_SCANNED[] = "UPDATE exchanges SET scanned = 1, public_prompt = ?, "
                                           "public_response = ?, public_title = ?, redaction = ?"
                                           " WHERE session_id = ? AND id = ?";
/* Rows without findings are marked in statements of 1, 8 or 64 ids (a shorter batch repeats its
 * last id): the SQL text must be static (the store caches prepared statements by its address). */
#define SQL_CLEAN_HEAD                                                                                       \
    "UPDATE exchanges SET scanned = 1, public_prompt = NULL, public_response = NULL, public_title = NULL,"   \
    " redaction = NULL WHERE session_id = ? AND id IN ("
#define Q8 "?,?,?,?,?,?,?,?"
static const char SQL_CLEAN_1[] = SQL_CLEAN_HEAD "?)";
static const char SQL_CLEAN_8[] = SQL_CLEAN_HEAD Q8 ")";
static const char SQL_CLEAN_64[] = SQL_CLEAN_HEAD Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 ")";
static const char SQL_TITLE_SCANNED[] =
    "UPDATE sessions SET title_scanned = 1, public_title = ? WHERE id = ?";

/* The public title column's size: a redacted title longer than that is cut (never revealing). */
#define PUBLIC_TITLE_MAX 600

typedef struct old_findings {
    const sl_store_result_t *r;
    int64_t exchange; /* -1: the session title */
} old_t;

/* One field's findings, matched against the stored ones, and its public text. */
typedef struct field_scan {
    sl_secret_hit_t *hits;
    size_t n;
    int64_t *ids;  /* the stored id kept, or 0 (new) */
    int *revealed; /* the owner's decision */
    unsigned char (*sha)[32];
    unsigned *occ;
    char *pub; /* malloc'd public text, NULL when nothing is redacted */
    size_t pub_len;
} field_scan_t;

static void field_free(field_scan_t *f)
{
    free(f->hits), free(f->ids), free(f->revealed), free(f->sha), free(f->occ), free(f->pub);
    memset(f, 0, sizeof(*f));
}

static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    return sl_utf8_prefix(s, n, max);
}

/* Scans TEXT (field FIELD of exchange EX, -1 for the session title) and decides each hit from the
 * stored findings OLD. Returns 0, or -1 (allocation or engine failure). */
static int scan_field(const sl_secret_rules_t *rs, const old_t *old, int field, const char *text, size_t len,
                      size_t maxpub, field_scan_t *f)
{
    memset(f, 0, sizeof(*f));
    if (sl_secrets_scan(rs, text, len, &f->hits, &f->n) != 0)
        return -1;
    if (!f->n)
        return 0;
    f->ids = calloc(f->n, sizeof(*f->ids));
    f->revealed = calloc(f->n, sizeof(*f->revealed));
    f->sha = calloc(f->n, sizeof(*f->sha));
    f->occ = calloc(f->n, sizeof(*f->occ));
    if (!f->ids || !f->revealed || !f->sha || !f->occ)
        return -1;
    for (size_t i = 0; i < f->n; i++) {
        unsigned mdlen;
        if (!EVP_Digest(text + f->hits[i].start, f->hits[i].end - f->hits[i].start, f->sha[i], &mdlen,
                        EVP_sha256(), NULL))
            return -1;
        for (size_t j = 0; j < i; j++)
            f->occ[i] += !memcmp(f->sha[i], f->sha[j], 32);
        for (size_t row = 0; old->r && row < old->r->nrows; row++) {
            const sl_store_value_t *ex = sl_store_cell(old->r, row, O_EX),
                                   *sha = sl_store_cell(old->r, row, O_SHA);
            int same_place = old->exchange < 0 ? ex->type == SL_STORE_NULL
                                               : ex->type != SL_STORE_NULL && ex->i == old->exchange;
            if (same_place && sl_store_cell(old->r, row, O_FIELD)->i == field && sha->len == 32 &&
                !memcmp(sha->ptr, f->sha[i], 32) &&
                (unsigned)sl_store_cell(old->r, row, O_OCC)->i == f->occ[i]) {
                f->ids[i] = sl_store_cell(old->r, row, O_ID)->i;
                f->revealed[i] = sl_store_cell(old->r, row, O_REVEALED)->i != 0;
            }
        }
    }
    /* the public text: every hit not revealed replaced by "[redacted: <kind>]" */
    size_t redacted = 0, cap = len;
    for (size_t i = 0; i < f->n; i++)
        if (!f->revealed[i]) {
            redacted++;
            cap += 16 + strlen(sl_secrets_rule_kind(rs, f->hits[i].rule));
        }
    if (!redacted)
        return 0;
    if (!(f->pub = malloc(cap + 1)))
        return -1;
    size_t w = 0, at = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (f->revealed[i])
            continue;
        memcpy(f->pub + w, text + at, f->hits[i].start - at);
        w += f->hits[i].start - at;
        w += (size_t)sprintf(f->pub + w, "[redacted: %s]", sl_secrets_rule_kind(rs, f->hits[i].rule));
        at = f->hits[i].end;
    }
    memcpy(f->pub + w, text + at, len - at);
    w += len - at;
    f->pub_len = maxpub ? utf8_cut(f->pub, w, maxpub) : w;
    return 0;
}

/* Writes the findings of one field (their kept ids, or new ones). */
static int store_findings(sl_op_t *op, const sl_secret_rules_t *rs, const char *sid, size_t sidlen,
                          int64_t ex, int field, const char *text, const field_scan_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        const sl_secret_hit_t *h = &f->hits[i];
        char preview[64];
        sl_secrets_preview(text + h->start, h->end - h->start, preview, sizeof(preview));
        const char *kind = sl_secrets_rule_kind(rs, h->rule), *rule = sl_secrets_rule_id(rs, h->rule);
        sl_store_value_t p[] = {
            f->ids[i] ? sl_store_int(f->ids[i]) : sl_store_null(),
            sl_store_text(sid, sidlen),
            ex >= 0 ? sl_store_int(ex) : sl_store_null(),
            sl_store_int(field),
            sl_store_text(kind, strlen(kind)),
            sl_store_text(rule, strlen(rule)),
            sl_store_int((int64_t)h->start),
            sl_store_int((int64_t)h->end),
            sl_store_blob(f->sha[i], 32),
            sl_store_int(f->occ[i]),
            sl_store_text(preview, strlen(preview)),
            sl_store_int(f->revealed[i]),
        };
        if (sl_op_run(op, SQL_ADD_FINDING, p, sizeof(p) / sizeof(*p), NULL) != 0)
            return -1;
    }
    return 0;
}

/* 16 bytes naming the public text of an exchange (part of its pieces' key), or NULL when nothing
 * of it is redacted. */
static sl_store_value_t redaction_of(const field_scan_t f[3], unsigned char out[16])
{
    if (!f[0].pub && !f[1].pub && !f[2].pub)
        return sl_store_null();
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned mdlen = 0;
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    for (int i = 0; ok && i < 3; i++) {
        uint64_t l = f[i].pub ? f[i].pub_len + 1 : 0;
        ok = EVP_DigestUpdate(c, &l, sizeof(l)) && (!f[i].pub || EVP_DigestUpdate(c, f[i].pub, f[i].pub_len));
    }
    ok = ok && EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    if (!ok) /* never NULL for redacted text: a constant still changes the key from "no redaction" */
        memset(md, 0xff, sizeof(md));
    memcpy(out, md, 16);
    return sl_store_blob(out, 16);
}

static sl_store_value_t text_or_null(const field_scan_t *f)
{
    return f->pub ? sl_store_text(f->pub, f->pub_len) : sl_store_null();
}

static const char *cell_text(const sl_store_result_t *r, size_t row, size_t col, size_t *len)
{
    const sl_store_value_t *v = sl_store_cell(r, row, col);
    *len = v->type == SL_STORE_NULL ? 0 : v->len;
    return v->type == SL_STORE_NULL ? "" : v->ptr;
}

static int scan_title(sl_op_t *op, const sl_secret_rules_t *rs, const char *sid, size_t sidlen)
{
    sl_store_value_t p[] = {sl_store_text(sid, sidlen)};
    sl_store_result_t *r, *old = NULL;
    if (sl_op_run(op, SQL_TITLE_UNSCANNED, p, 1, &r) != 0)
        return -1;
    if (r->nrows == 0) {
        sl_store_result_free(r);
        return 0;
    }
    size_t tl;
    const char *t = cell_text(r, 0, 0, &tl);
    field_scan_t f;
    int rc = -1;
    if (sl_op_run(op, SQL_OLD_TITLE_FINDINGS, p, 1, &old) != 0)
        goto out;
    old_t o = {old, -1};
    if (scan_field(rs, &o, F_SESSION_TITLE, t, tl, PUBLIC_TITLE_MAX, &f) != 0) {
        field_free(&f);
        sl_op_fail(op, SL_RPC_INTERNAL, "the secret scan failed");
        goto out;
    }
    sl_store_value_t w[] = {text_or_null(&f), sl_store_text(sid, sidlen)};
    rc = sl_op_run(op, SQL_DROP_TITLE_FINDINGS, p, 1, NULL) != 0 ||
                 store_findings(op, rs, sid, sidlen, -1, F_SESSION_TITLE, t, &f) != 0 ||
                 sl_op_run(op, SQL_TITLE_SCANNED, w, 2, NULL) != 0
             ? -1
             : 0;
    field_free(&f);
out:
    sl_store_result_free(old);
    sl_store_result_free(r);
    return rc;
}

/* The scans of one batch (pure CPU: run on a worker when the batch is large). */
typedef struct batch_job {
    const sl_secret_rules_t *rs;
    const sl_store_result_t *r, *old;
    field_scan_t (*f)[3];
    int failed;
} batch_job_t;

#define SCAN_INLINE_BYTES (64 * 1024) /* a batch with less text is scanned on the loop (~0.1 ms) */

static void scan_rows(void *arg)
{
    batch_job_t *j = arg;
    for (size_t row = 0; row < j->r->nrows; row++) {
        old_t o = {j->old, sl_store_cell(j->r, row, U_ID)->i};
        for (int k = 0; k < 3; k++) {
            size_t len;
            const char *text = cell_text(j->r, row, U_PROMPT + k, &len);
            if (scan_field(j->rs, &o, k, text, len, k == F_TITLE ? PUBLIC_TITLE_MAX : 0, &j->f[row][k]) != 0)
                j->failed = 1;
        }
    }
}

/* One batch of unscanned exchanges: *more = 1 when a full batch was read. */
static int scan_batch(sl_op_t *op, const sl_secret_rules_t *rs, const char *sid, size_t sidlen, int *more)
{
    sl_store_value_t p[] = {sl_store_text(sid, sidlen)};
    sl_store_result_t *r, *old = NULL;
    *more = 0;
    if (sl_op_run(op, SQL_UNSCANNED, p, 1, &r) != 0)
        return -1;
    if (r->nrows == 0) {
        sl_store_result_free(r);
        return 0;
    }
    *more = r->nrows == SCAN_BATCH;
    int64_t lo = sl_store_cell(r, 0, U_ID)->i, hi = sl_store_cell(r, r->nrows - 1, U_ID)->i;
    sl_store_value_t q[] = {sl_store_text(sid, sidlen), sl_store_int(lo), sl_store_int(hi)};
    batch_job_t j = {.rs = rs, .r = r};
    int any_old = 0;
    for (size_t row = 0; row < r->nrows; row++)
        any_old |= sl_store_cell(r, row, U_HAS_FINDINGS)->i != 0;
    /* the stored findings (the owner's decisions) only when some row has any: a clean append reads none */
    int rc = any_old ? sl_op_run(op, SQL_OLD_FINDINGS, q, 3, &old) : 0;
    if (rc == 0 && !(j.f = calloc(r->nrows, sizeof(*j.f)))) {
        sl_op_fail(op, SL_RPC_INTERNAL, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        j.old = old;
        size_t bytes = 0;
        for (size_t row = 0; row < r->nrows; row++)
            for (int k = 0; k < 3; k++)
                bytes += sl_store_cell(r, row, U_PROMPT + k)->len;
        if (bytes > SCAN_INLINE_BYTES)
            sl_await_work(op->core->loop, scan_rows, &j);
        else
            scan_rows(&j);
        if (j.failed) {
            sl_op_fail(op, SL_RPC_INTERNAL, "the secret scan failed");
            rc = -1;
        }
    }
    /* rows without findings, before or now: one statement for all of them */
    size_t nclean = 0;
    sl_store_value_t *clean = rc == 0 ? calloc(r->nrows + 1, sizeof(*clean)) : NULL;
    if (rc == 0 && !clean) {
        sl_op_fail(op, SL_RPC_INTERNAL, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        clean[0] = sl_store_text(sid, sidlen);
        for (size_t row = 0; row < r->nrows; row++)
            if (!sl_store_cell(r, row, U_HAS_FINDINGS)->i && !j.f[row][0].n && !j.f[row][1].n &&
                !j.f[row][2].n)
                clean[1 + nclean++] = sl_store_int(sl_store_cell(r, row, U_ID)->i);
    }
    for (size_t at = 0; rc == 0 && at < nclean;) {
        size_t left = nclean - at, k = left >= 64 ? 64 : left > 1 ? 8 : 1, take = left < k ? left : k;
        sl_store_value_t ids[1 + 64];
        ids[0] = clean[0];
        for (size_t i = 0; i < k; i++)
            ids[1 + i] = clean[1 + at + (i < take ? i : take - 1)];
        rc = sl_op_run(op, k == 64 ? SQL_CLEAN_64 : k == 8 ? SQL_CLEAN_8 : SQL_CLEAN_1, ids, 1 + k, NULL);
        at += take;
    }
    free(clean);
    for (size_t row = 0; rc == 0 && row < r->nrows; row++) {
        int64_t ex = sl_store_cell(r, row, U_ID)->i;
        field_scan_t *f = j.f[row];
        if (!sl_store_cell(r, row, U_HAS_FINDINGS)->i && !f[0].n && !f[1].n && !f[2].n)
            continue; /* done above */
        size_t len[3];
        const char *text[3];
        for (int k = 0; k < 3; k++)
            text[k] = cell_text(r, row, U_PROMPT + k, &len[k]);
        int had_old = 0;
        for (size_t i = 0; old && i < old->nrows; i++) {
            const sl_store_value_t *e = sl_store_cell(old, i, O_EX);
            had_old |= e->type != SL_STORE_NULL && e->i == ex;
        }
        unsigned char red[16];
        sl_store_value_t d[] = {sl_store_text(sid, sidlen), sl_store_int(ex)};
        sl_store_value_t w[] = {text_or_null(&f[0]),  text_or_null(&f[1]),        text_or_null(&f[2]),
                                redaction_of(f, red), sl_store_text(sid, sidlen), sl_store_int(ex)};
        if ((had_old && sl_op_run(op, SQL_DROP_FINDINGS, d, 2, NULL) != 0) ||
            store_findings(op, rs, sid, sidlen, ex, F_PROMPT, text[0], &f[0]) != 0 ||
            store_findings(op, rs, sid, sidlen, ex, F_RESPONSE, text[1], &f[1]) != 0 ||
            store_findings(op, rs, sid, sidlen, ex, F_TITLE, text[2], &f[2]) != 0 ||
            sl_op_run(op, SQL_EXCHANGE_SCANNED, w, 6, NULL) != 0)
            rc = -1;
    }
    for (size_t row = 0; j.f && row < r->nrows; row++)
        for (int k = 0; k < 3; k++)
            field_free(&j.f[row][k]);
    free(j.f);
    sl_store_result_free(old);
    sl_store_result_free(r);
    return rc;
}

int sl_scan_pending(sl_op_t *op, const char *sid, size_t sidlen, int what)
{
    char err[256];
    const sl_secret_rules_t *rs = sl_secrets_builtin(err, sizeof(err));
    if (!rs) {
        sl_op_fail(op, SL_RPC_INTERNAL, "secret scanning is unavailable: %s", err);
        return -1;
    }
    if ((what & SL_SCAN_TITLE) && scan_title(op, rs, sid, sidlen) != 0)
        return -1;
    int more = (what & SL_SCAN_EXCHANGES) != 0;
    while (more)
        if (scan_batch(op, rs, sid, sidlen, &more) != 0)
            return -1;
    return 0;
}

/* ---- the background pass ---- */

#define PASS_BATCH     20
#define PASS_BUDGET_MS 1000

static const char SQL_PASS_EXCHANGES[] =
    "SELECT DISTINCT e.session_id, s.owner_id FROM exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE e.scanned = 0 AND e.deleted_at IS NULL LIMIT 20";
static const char SQL_PASS_TITLES[] =
    "SELECT id, owner_id FROM sessions WHERE title_scanned = 0 AND deleted_at IS NULL LIMIT 20";

/* Runs an owner change (no statement of its own) on each session found: its prepare step scans
 * what is pending and the change republishes the session, exactly as an owner's call would. */
static void pass_sessions(sl_core_t *core, const char *sql, uint64_t start, unsigned *done)
{
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, sql, NULL, 0, &err);
    for (size_t i = 0; r && i < r->nrows && *done < PASS_BATCH && uv_now(core->loop) - start < PASS_BUDGET_MS;
         i++, (*done)++) {
        const sl_store_value_t *id = sl_store_cell(r, i, 0);
        sl_op_t op = {.core = core, .call = NULL};
        op.who.user_id = (uint64_t)sl_store_cell(r, i, 1)->i;
        sl_locked_t s;
        int ok = sl_op_tx_begin(&op) == 0 && sl_op_lock_session(&op, id->ptr, id->len, 0, &s) == 0 &&
                 (s.scan |= SL_SCAN_ALL) && sl_op_change_begin(&op, &s, 0) == 0 &&
                 sl_op_change_commit(&op, &s) == 0;
        if (ok)
            core->stats.scan_passes++;
        sl_op_tx_end(&op);
        sl_op_clean_pending(&op);
    }
    sl_store_result_free(r);
}

void sl_scan_pass(sl_core_t *core)
{
    uint64_t start = uv_now(core->loop);
    unsigned done = 0;
    pass_sessions(core, SQL_PASS_TITLES, start, &done);
    pass_sessions(core, SQL_PASS_EXCHANGES, start, &done);
}
