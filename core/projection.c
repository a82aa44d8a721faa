/*
 * The public projection: what a viewer may see of a session, precomputed as the public JSON
 * document (API.md), the HTML page, the Markdown alternate, and the gzip of each. Redis stores the
 * three gzip forms as the parts of one entry (cache.h) with the ETag and the plain lengths as its
 * meta; a node inflates a plain form when it is asked for (sl_gunzip) and keeps what it served.
 *
 * It is built from the public_* (or viewer_*) views, so hidden and deleted rows are filtered by
 * MariaDB, not by this code: one SELECT of the session and its exchanges' keys, then the stored
 * pieces the node does not hold and the text of the exchanges to render (docs/pieces.md), each
 * checked against the first statement's keys. The documents are assembled by assemble.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <zlib.h>

#include "core/internal/chunk_store.h"
#include "core/internal/pieces.h"
#include "core/internal/projection.h"
#include "core/internal/render.h"

/* Whether an exchange's stored pieces are current is decided by a hash (pieces_key, computed here:
 * piece_key) of everything a piece is made from: the id, the MD5 of the title as shown
 * (title_md5, a stored generated column), the time, the SHA-256 of the prompt and of the response
 * (kept with the text by a trigger, whoever writes it), and the piece format's version. All of it
 * is in one index (exchanges_pieces), so reading the rows reads neither their text nor their
 * pieces: an owner change costs the pieces it renders, not the session's size. */
#define SELECT_COLUMNS                                                                                       \
    "SELECT s.id, s.version, s.title, s.created_at, s.updated_at, s.project_name, s.project_icon,"           \
    " s.project_color, s.author_name, s.author_handle, e.id, e.title_md5, e.created_raw, e.pieces_key,"      \
    " e.prompt_sha256, e.response_sha256, e.position, e.redaction"

/* The rows, without their text or pieces: what the document is assembled from. Not ORDER BY e.position, e.id:
 * MariaDB sorts that through a temporary table holding the pieces (5 ms at 1,000 exchanges); the
 * rows are sorted here instead. */
static const char SQL_LOAD_PUBLIC[] =
    SELECT_COLUMNS " FROM public_sessions s LEFT JOIN public_exchange_keys e ON e.session_id = s.id"
                   " WHERE s.id = ?";
static const char SQL_LOAD_VIEWER[] =
    SELECT_COLUMNS " FROM viewer_sessions s LEFT JOIN viewer_exchange_keys e ON e.session_id = s.id"
                   " WHERE s.id = ?";

/* Inside an owner's transaction (one snapshot for every statement), the session's fields once and
 * its exchanges' keys apart: the join repeats the fields, formatted, on every row (22 ms against
 * 0.8 + 10 ms at 10,000 exchanges). Same columns as SELECT_COLUMNS (the session's are NULL in the
 * second). */
#define SESSION_COLUMNS                                                                                      \
    "SELECT s.id, s.version, s.title, s.created_at, s.updated_at, s.project_name, s.project_icon,"           \
    " s.project_color, s.author_name, s.author_handle"
static const char SQL_SESSION_PUBLIC[] = SESSION_COLUMNS " FROM public_sessions s WHERE s.id = ?";
static const char SQL_SESSION_VIEWER[] = SESSION_COLUMNS " FROM viewer_sessions s WHERE s.id = ?";
#define KEY_COLUMNS                                                                                          \
    "SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, e.id, e.title_md5, e.created_raw,"   \
    " e.pieces_key, e.prompt_sha256, e.response_sha256, e.position, e.redaction"
static const char SQL_KEYS_PUBLIC[] = KEY_COLUMNS " FROM public_exchange_keys e WHERE e.session_id = ?";
static const char SQL_KEYS_VIEWER[] = KEY_COLUMNS " FROM viewer_exchange_keys e WHERE e.session_id = ?";
/* The keys of the exchanges a change touched (chunk_store.c): a range and up to SL_TOUCH_MAX ids,
 * through the index-only view (their pieces and text: SQL_PIECES_IDS, SQL_TEXT_IDS, row_ids). */
#define Q8 "?,?,?,?,?,?,?,?"
#define TOUCHED                                                                                              \
    " WHERE e.session_id = ? AND (e.id BETWEEN ? AND ? OR e.id IN (" Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8   \
    "," Q8 "," Q8 "))"
static const char SQL_KEYS_TOUCHED[] = KEY_COLUMNS " FROM public_exchange_keys e" TOUCHED;

/* The text of the exchanges with ids in [?, ?] (those to render are among them). */
#define SELECT_TEXT                                                                                          \
    "SELECT e.id, e.prompt, e.response, e.title, e.created_at, e.prompt_sha256, e.response_sha256,"          \
    " e.title_md5, e.created_raw, e.redaction"
static const char SQL_TEXT_PUBLIC[] =
    SELECT_TEXT " FROM public_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";
static const char SQL_TEXT_VIEWER[] =
    SELECT_TEXT " FROM viewer_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";
/* The text or stored pieces of up to SL_TOUCH_MAX exchanges by id (an incremental build: never the
 * rows in between; not the range-or-ids condition above, which MariaDB answers through this view by
 * reading every row of the session, 11 ms at 10,000 exchanges). */
#define IDS " WHERE e.session_id = ? AND e.id IN (" Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 "," Q8 ")"
static const char SQL_TEXT_IDS[] = SELECT_TEXT " FROM public_exchanges e" IDS " ORDER BY e.id";

/* The stored pieces of the exchanges with ids in [?, ?] (those the node does not hold are among
 * them). */
#define SELECT_PIECES "SELECT e.id, e.pieces, e.pieces_key"
static const char SQL_PIECES_PUBLIC[] =
    SELECT_PIECES " FROM public_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";
static const char SQL_PIECES_VIEWER[] =
    SELECT_PIECES " FROM viewer_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";
static const char SQL_PIECES_IDS[] = SELECT_PIECES " FROM public_exchanges e" IDS " ORDER BY e.id";
enum { B_ID, B_PIECES, B_KEY, B_COUNT };

/* Keeps rebuilt pieces with their exchange (inside the owner transaction that built them). */
static const char SQL_KEEP_PIECES[] =
    "UPDATE exchanges SET pieces = ?, pieces_key = ? WHERE session_id = ? AND id = ?";

enum {
    C_ID,
    C_VERSION,
    C_TITLE,
    C_CREATED,
    C_UPDATED,
    C_PNAME,
    C_PICON,
    C_PCOLOR,
    C_ANAME,
    C_AHANDLE,
    C_EID,
    C_ETMD5,
    C_ECRAW,
    C_EPKEY,
    C_EPSHA,
    C_ERSHA,
    C_EPOS,
    C_ERED,
    C_COUNT
};
enum { T_ID, T_PROMPT, T_RESPONSE, T_TITLE, T_CREATED, T_PSHA, T_RSHA, T_TMD5, T_CRAW, T_RED, T_COUNT };

static const char *cell(const sl_store_result_t *r, size_t row, size_t col, size_t *len)
{
    const sl_store_value_t *v = sl_store_cell(r, row, col);
    if (v->type == SL_STORE_TEXT || v->type == SL_STORE_BLOB) {
        *len = v->len;
        return v->ptr;
    }
    *len = 0;
    return "";
}

static sl_proj_str_t str_of(const sl_store_result_t *r, size_t row, size_t col)
{
    sl_proj_str_t v;
    v.p = cell(r, row, col, &v.n);
    return v;
}

void sl_projection_content(const sl_projection_t *p, sl_proj_content_t *ct, char metabuf[SL_PROJ_META_MAX])
{
    memset(ct, 0, sizeof(*ct));
    int n =
        snprintf(metabuf, SL_PROJ_META_MAX, "%.*s %zu %zu %zu %zu %zu %zu", (int)p->etag_len, p->etag,
                 p->plain_len[0], p->plain_len[1], p->plain_len[2], p->gz_len[0], p->gz_len[1], p->gz_len[2]);
    ct->meta = metabuf;
    ct->meta_len = n > 0 && n < SL_PROJ_META_MAX ? (size_t)n : 0;
    ct->nparts = 1;
    ct->part[0] = p->recipe;
    ct->len[0] = p->recipe_len;
}

/* The hash stored pieces must carry to be current (see SELECT_COLUMNS): the first 16 bytes of a
 * SHA-256 over the version of the piece format and the exchange's id, title hash, time and text
 * hashes, each length-prefixed. A missing hash counts as its own value. */
/* SHA256() looks its algorithm up on every call (OpenSSL 3): a projection hashes one key per
 * exchange, so the lookup is made once. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void piece_key(int64_t id, sl_proj_str_t title, sl_proj_str_t created, const sl_store_value_t *psha,
                      const sl_store_value_t *rsha, const sl_store_value_t *red, unsigned char out[16])
{
    unsigned char in[8 + 3 * 8 + 3 * 33 + sizeof(SL_PIECES_REV) + 128], *q = in;
    if (title.n > 32)
        title.n = 32; /* an MD5: 16 bytes */
    memcpy(q, SL_PIECES_REV, sizeof(SL_PIECES_REV));
    q += sizeof(SL_PIECES_REV);
    uint64_t v[3] = {(uint64_t)id, title.n, created.n < 64 ? created.n : 64};
    memcpy(q, v, sizeof(v));
    q += sizeof(v);
    memcpy(q, title.p, title.n);
    q += title.n;
    memcpy(q, created.p, v[2]);
    q += v[2];
    /* the text's hashes, and the redaction (the hash of the public text where a secret was
     * redacted, docs/secrets.md): a decision of the owner changes the pieces, not the text */
    const sl_store_value_t *h[3] = {psha, rsha, red};
    for (int i = 0; i < 3; i++) {
        size_t want = i < 2 ? 32 : 16;
        int has = (h[i]->type == SL_STORE_BLOB || h[i]->type == SL_STORE_TEXT) && h[i]->len == want;
        *q++ = (unsigned char)has;
        if (has) {
            memcpy(q, h[i]->ptr, want);
            q += want;
        }
    }
    unsigned char d[SHA256_DIGEST_LENGTH];
    pthread_once(&sha256_once, sha256_fetch);
    if (sha256_md == NULL || EVP_Digest(in, (size_t)(q - in), d, NULL, sha256_md, NULL) != 1)
        SHA256(in, (size_t)(q - in), d);
    memcpy(out, d, 16);
}

/* The order of the document: by position, then id. */
static int by_position(const void *a, const void *b)
{
    const sl_proj_row_t *x = a, *y = b;
    if (x->position != y->position)
        return x->position < y->position ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sessions whose pieces and text to render hold more than this are built off the loop. */
#define INLINE_BUILD (64u << 10)
#define NONE         ((size_t)-1)
#define NEED         ((size_t)-2) /* text_of[]: stored pieces to read */

typedef struct build {
    const sl_store_result_t *t; /* the text of the rows to render (NULL: none) */
    sl_proj_session_t sess;
    sl_proj_row_t *rows;
    size_t n;
    size_t *text_of;       /* per row: its row in t, or NONE when its stored pieces are used */
    unsigned char **blobs; /* per row: the pieces rendered now (malloc'd), or NULL */
    size_t *bloblen;
    sl_pc_entry_t **held; /* per row: the node's copy of its pieces, referenced while building */
    const void **hblob;   /* ... and that copy's blob */
    size_t *hlen;
    uint64_t version;
    unsigned flags;
    int inc; /* from the chunk state: render only (the documents are counted from its sums) */
    sl_projection_t *out;
    int rc;
} build_t;

/* Renders what is missing, then assembles (runs on the loop or on the thread pool: touches only b). */
static void build(void *arg)
{
    build_t *b = arg;
    z_stream z;
    memset(&z, 0, sizeof(z));
    int zok = 0;
    b->rc = 0;
    for (size_t i = 0; i < b->n && b->rc == 0; i++) {
        if (b->text_of[i] == NONE)
            continue;
        if (!zok && deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            b->rc = -1;
            break;
        }
        zok = 1;
        size_t tr = b->text_of[i];
        sl_piece_src_t src = {.id = b->rows[i].id,
                              .title = b->rows[i].title.p,
                              .title_len = b->rows[i].title.n,
                              .created_at = b->rows[i].created_at.p,
                              .created_len = b->rows[i].created_at.n};
        src.prompt = cell(b->t, tr, T_PROMPT, &src.prompt_len);
        src.response = cell(b->t, tr, T_RESPONSE, &src.response_len);
        if (sl_pieces_build(&z, &src, &b->blobs[i], &b->bloblen[i]) != 0 ||
            sl_pieces_read(b->blobs[i], b->bloblen[i], &b->rows[i].pieces) != 0)
            b->rc = -1;
    }
    if (zok)
        deflateEnd(&z);
    int dry = (b->flags & SL_PROJ_DRY) != 0;
    if (b->rc == 0 && b->inc)
        return;
    if (b->rc == 0)
        b->rc = sl_projection_assemble(&b->sess, b->rows, b->n, b->version, dry, b->out);
    if (b->rc == 0 && !dry)
        b->rc = sl_projection_plain(b->out, b->flags);
}

/* Fills err with a message of ours (not MariaDB's); returns -1. */
static int fail(sl_store_error_t *err, const char *msg)
{
    err->code = SL_STORE_E_QUERY;
    err->server_errno = 0;
    snprintf(err->message, sizeof(err->message), "%s", msg);
    return -1;
}

static int is_key(const sl_store_value_t *v)
{
    return (v->type == SL_STORE_BLOB || v->type == SL_STORE_TEXT) && v->len == 16;
}

static void too_large(sl_store_error_t *err, size_t text)
{
    err->code = SL_STORE_E_QUERY;
    err->server_errno = 0;
    snprintf(err->message, sizeof(err->message),
             "the public page of this session would exceed %u MiB (its visible exchanges hold %zu bytes of "
             "text to show); hide or delete exchanges, or split the session",
             SL_MAX_PUBLIC_BYTES >> 20, text);
}

#define RETRY    1
#define FALLBACK 3 /* the chunk state cannot be used: build from every exchange */

int sl_projection_store_add(sl_projection_t *out, const unsigned char key[16], const void *blob, size_t len)
{
    if (out->nstore == 0 || (out->nstore & (out->nstore - 1)) == 0) {
        sl_blob_t *g = realloc(out->store, (out->nstore ? 2 * out->nstore : 1) * sizeof(*g));
        if (g == NULL)
            return -1;
        out->store = g;
    }
    sl_blob_t *s = &out->store[out->nstore];
    s->blob = malloc(len ? len : 1);
    if (s->blob == NULL)
        return -1;
    memcpy(s->key, key, 16);
    memcpy(s->blob, blob, len);
    s->len = len;
    out->nstore++;
    return 0;
}

/* out's recipe, and the chunks of keys it names that this node does not know Redis holds. 0, or -1. */
static int keep_recipe(sl_core_t *core, const build_t *b, sl_projection_t *out)
{
    sl_blob_t *chunks;
    size_t nc;
    if (sl_recipe_encode(&b->sess, b->rows, b->n, b->version, &out->recipe, &out->recipe_len, &chunks, &nc) !=
        0)
        return -1;
    uint64_t gen = core->cache ? sl_cache_trust_generation(core->cache) : 0, now = uv_now(core->loop);
    int rc = 0;
    for (size_t i = 0; i < nc && rc == 0; i++) {
        const void *blob;
        size_t len;
        sl_pc_entry_t *e = sl_pcache_get(core->pieces, chunks[i].key, &blob, &len);
        int known = sl_pcache_in_redis(e, gen, now, SL_BLOB_KNOWN_MS);
        sl_pcache_release(core->pieces, e);
        if (known)
            continue;
        if (e == NULL)
            sl_pcache_put(core->pieces, chunks[i].key, chunks[i].blob, chunks[i].len);
        rc = sl_projection_store_add(out, chunks[i].key, chunks[i].blob, chunks[i].len);
    }
    sl_recipe_chunks_free(chunks, nc);
    return rc;
}

/* The blobs of b's rows this node does not know Redis holds (to out->store): rendered now, read
 * from MariaDB (rblob), or held but not known there. 0, or -1. */
static int keep_rows(sl_core_t *core, const build_t *b, const void *const *rblob, const size_t *rlen,
                     sl_projection_t *out)
{
    uint64_t gen = core->cache ? sl_cache_trust_generation(core->cache) : 0, now = uv_now(core->loop);
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const void *blob = b->blobs[i] ? (const void *)b->blobs[i] : rblob[i] ? rblob[i] : b->hblob[i];
        size_t len = b->blobs[i] ? b->bloblen[i] : rblob[i] ? rlen[i] : b->hlen[i];
        if (blob == NULL || (b->blobs[i] == NULL && rblob[i] == NULL &&
                             sl_pcache_in_redis(b->held[i], gen, now, SL_BLOB_KNOWN_MS)))
            continue;
        rc = sl_projection_store_add(out, b->rows[i].key, blob, len);
    }
    return rc;
}

/* The first exchange's pieces (its title and description are glue) when it is not among b's rows:
 * held by the node, or read from MariaDB (checked against the key the chunk state gives). 0 with
 * *first set (*held or *res to release after use), or -1: the state cannot be used. */
static int first_pieces(sl_core_t *core, sl_store_conn_t *conn, const char *id, size_t idlen,
                        const sl_chunk_rec_t *r0, sl_pieces_t *first, sl_pc_entry_t **held,
                        sl_store_result_t **res, sl_store_error_t *err)
{
    const void *blob;
    size_t len;
    if ((*held = sl_pcache_get(core->pieces, r0->key, &blob, &len)) != NULL &&
        sl_pieces_read(blob, len, first) == 0)
        return 0;
    sl_store_value_t pp[] = {sl_store_text(id, idlen), sl_store_int(r0->id), sl_store_int(r0->id)};
    sl_store_result_t *pr = *res = sl_await_exec(conn, SQL_PIECES_PUBLIC, pp, 3, err);
    if (pr == NULL || pr->nrows != 1 || pr->ncols != B_COUNT)
        return -1;
    const sl_store_value_t *k = sl_store_cell(pr, 0, B_KEY), *pc = sl_store_cell(pr, 0, B_PIECES);
    if (!is_key(k) || memcmp(k->ptr, r0->key, 16) != 0 || sl_pieces_read(pc->ptr, pc->len, first) != 0)
        return -1;
    sl_pcache_put(core->pieces, r0->key, pc->ptr, pc->len);
    return 0;
}

/* The chunk records of b's rows, in order (malloc'd), or NULL when out of memory. */
static sl_chunk_rec_t *records_of(const build_t *b)
{
    sl_chunk_rec_t *v = malloc((b->n ? b->n : 1) * sizeof(*v));
    for (size_t i = 0; v != NULL && i < b->n; i++)
        sl_chunk_rec_of(&v[i], b->rows[i].position, b->rows[i].id, b->rows[i].key, &b->rows[i].pieces);
    return v;
}

/* The parameters of IDS: the session and the ids of b's rows whose stored pieces are to be read
 * (need) or whose text is (else), padded with 0 (no exchange has id 0). 0 when the range of those
 * ids holds few others (an append, one exchange: the range query reads exactly them, by the primary
 * key) or when there are more than SL_TOUCH_MAX: the range query then. The list is for ids far
 * apart, which the range would read every row between; MariaDB plans an IN list through this view
 * by its statistics (a scan of the session's rows when they are stale), so it is not the default. */
static int row_ids(const build_t *b, int need, sl_store_value_t sid, sl_store_value_t kp[1 + SL_TOUCH_MAX])
{
    size_t k = 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    kp[0] = sid;
    for (size_t i = 0; i < b->n; i++)
        if (need ? b->text_of[i] == NEED : b->text_of[i] != NONE) {
            if (k == SL_TOUCH_MAX)
                return 0;
            kp[1 + k++] = sl_store_int(b->rows[i].id);
            lo = b->rows[i].id < lo ? b->rows[i].id : lo;
            hi = b->rows[i].id > hi ? b->rows[i].id : hi;
        }
    if (k == 0 || (uint64_t)(hi - lo) < 2 * k + 16)
        return 0;
    while (k < SL_TOUCH_MAX)
        kp[1 + k++] = sl_store_int(0);
    return 1;
}

/* The parameters of TOUCHED: the session, the range, the ids (padded with 0: no exchange has id 0). */
static void touched_params(sl_store_value_t sid, const sl_touch_t *t, sl_store_value_t kp[3 + SL_TOUCH_MAX])
{
    kp[0] = sid;
    kp[1] = sl_store_int(t->lo);
    kp[2] = sl_store_int(t->hi);
    for (size_t i = 0; i < SL_TOUCH_MAX; i++)
        kp[3 + i] = sl_store_int(i < t->n ? t->ids[i] : 0);
}

static int load_once(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                     const char *id, size_t idlen, unsigned flags, const sl_touch_t *touch,
                     sl_projection_t *out, sl_store_error_t *err)
{
    sl_store_value_t kp[3 + SL_TOUCH_MAX];
    memset(out, 0, sizeof(*out));
    /* an owner change's build from the chunk state (chunk_store.c): only the exchanges it touched */
    int inc = touch != NULL && touch->inc && conn != NULL && view == SL_VIEW_PUBLIC &&
              !(flags & SL_PROJ_SCRATCH) && touch->n <= SL_TOUCH_MAX;
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(0)};
    sl_store_result_t *r, *rs; /* the exchanges' rows; the session's (the same result when joined) */
    if (conn) {
        rs = sl_await_exec(conn, view == SL_VIEW_PUBLIC ? SQL_SESSION_PUBLIC : SQL_SESSION_VIEWER, p, 1, err);
        if (rs == NULL)
            return -1;
        if (rs->nrows == 0 || rs->ncols != C_EID) {
            sl_store_result_free(rs);
            return 0; /* not visible: found = 0 */
        }
        if (inc) {
            touched_params(p[0], touch, kp);
            r = sl_await_exec(conn, SQL_KEYS_TOUCHED, kp, 3 + SL_TOUCH_MAX, err);
        } else {
            r = sl_await_exec(conn, view == SL_VIEW_PUBLIC ? SQL_KEYS_PUBLIC : SQL_KEYS_VIEWER, p, 1, err);
        }
        if (r == NULL || r->ncols != C_COUNT) {
            if (r != NULL)
                fail(err, "unexpected columns reading the exchanges' keys");
            sl_store_result_free(r);
            sl_store_result_free(rs);
            return -1;
        }
    } else {
        const char *sql = view == SL_VIEW_PUBLIC ? SQL_LOAD_PUBLIC : SQL_LOAD_VIEWER;
        rs = r = sl_await_query(store, sql, p, 1, err);
        if (r == NULL)
            return -1;
        if (r->nrows == 0 || r->ncols != C_COUNT) {
            sl_store_result_free(r);
            return 0; /* not visible: found = 0 */
        }
    }
    out->found = 1;
    build_t b = {
        .version = (uint64_t)sl_store_cell(rs, 0, C_VERSION)->i, .flags = flags, .out = out, .inc = inc};
    out->version = b.version;
    b.sess = (sl_proj_session_t){str_of(rs, 0, C_ID),      str_of(rs, 0, C_TITLE), str_of(rs, 0, C_CREATED),
                                 str_of(rs, 0, C_UPDATED), str_of(rs, 0, C_PNAME), str_of(rs, 0, C_PICON),
                                 str_of(rs, 0, C_PCOLOR),  str_of(rs, 0, C_ANAME), str_of(rs, 0, C_AHANDLE)};
    size_t rows = r->nrows, cap = rows ? rows : 1; /* cap: what calloc is asked for */
    b.rows = calloc(cap, sizeof(*b.rows));
    b.text_of = calloc(cap, sizeof(*b.text_of));
    b.blobs = calloc(cap, sizeof(*b.blobs));
    b.bloblen = calloc(cap, sizeof(*b.bloblen));
    b.held = calloc(cap, sizeof(*b.held));
    b.hblob = calloc(cap, sizeof(*b.hblob));
    b.hlen = calloc(cap, sizeof(*b.hlen));
    const void **rblob = calloc(cap, sizeof(*rblob)); /* per row: its blob read from MariaDB (in pr) */
    size_t *rlen = calloc(cap, sizeof(*rlen));
    sl_store_result_t *t = NULL, *pr = NULL, *cr = NULL, *fr = NULL;
    sl_chunks_t cs = {0};
    sl_chunk_rec_t *vis = NULL;
    sl_pc_entry_t *fheld = NULL;
    int rc = -1;
    if (b.rows == NULL || b.text_of == NULL || b.blobs == NULL || b.bloblen == NULL || b.held == NULL ||
        b.hblob == NULL || b.hlen == NULL || rblob == NULL || rlen == NULL) {
        fail(err, "out of memory building the projection");
        goto out;
    }
    if (inc) {
        int c = sl_chunks_read(conn, id, idlen, &cs, &cr, err);
        if (c != 0) {
            rc = c < 0 ? -1 : FALLBACK;
            goto out;
        }
    }
    /* The rows, and which of them have current pieces. */
    size_t stale = 0, need = 0, bytes = 0;
    int all = (flags & SL_PROJ_SCRATCH) != 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN;   /* the ids of the rows to render */
    int64_t plo = INT64_MAX, phi = INT64_MIN; /* the ids of the rows whose stored pieces to read */
    for (size_t row = 0; row < rows; row++) {
        const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
        if (eid->type != SL_STORE_INT)
            continue; /* LEFT JOIN row of a session without visible exchanges */
        sl_proj_row_t *e = &b.rows[b.n++];
        e->id = eid->i;
        e->position = sl_store_cell(r, row, C_EPOS)->i;
        e->at = row;
    }
    qsort(b.rows, b.n, sizeof(*b.rows), by_position);
    for (size_t i = 0; i < b.n; i++) {
        sl_proj_row_t *e = &b.rows[i];
        size_t row = e->at;
        piece_key(e->id, str_of(r, row, C_ETMD5), str_of(r, row, C_ECRAW), sl_store_cell(r, row, C_EPSHA),
                  sl_store_cell(r, row, C_ERSHA), sl_store_cell(r, row, C_ERED), e->key);
        const sl_store_value_t *pk = sl_store_cell(r, row, C_EPKEY);
        int keyed = !all && is_key(pk) && memcmp(pk->ptr, e->key, 16) == 0, current = 0;
        const void *blob;
        size_t len;
        if (keyed && (b.held[i] = sl_pcache_get(core->pieces, e->key, &blob, &len)) != NULL) {
            current = sl_pieces_read(blob, len, &e->pieces) == 0;
            b.hblob[i] = blob;
            b.hlen[i] = len;
            bytes += len;
        } else if (keyed) {
            need++; /* stored, not held: read below */
            plo = e->id < plo ? e->id : plo;
            phi = e->id > phi ? e->id : phi;
            b.text_of[i] = NEED;
            continue;
        }
        if (!current) {
            lo = e->id < lo ? e->id : lo;
            hi = e->id > hi ? e->id : hi;
        }
        b.text_of[i] = current ? NONE : 0;
        stale += !current;
    }
    if (need > 0) {
        /* The stored pieces the node does not hold. Each must carry the key computed above from
         * the same row (outside a transaction, a change in between: start over). */
        const char *psql = view == SL_VIEW_PUBLIC ? SQL_PIECES_PUBLIC : SQL_PIECES_VIEWER;
        sl_store_value_t pp[] = {p[0], sl_store_int(plo), sl_store_int(phi)};
        if (inc && row_ids(&b, 1, p[0], kp))
            pr = sl_await_exec(conn, SQL_PIECES_IDS, kp, 1 + SL_TOUCH_MAX, err);
        else
            pr = conn ? sl_await_exec(conn, psql, pp, 3, err) : sl_await_query(store, psql, pp, 3, err);
        if (pr == NULL)
            goto out;
        if (pr->ncols != B_COUNT) {
            fail(err, "unexpected columns reading pieces");
            goto out;
        }
        for (size_t i = 0; i < b.n; i++) {
            if (b.text_of[i] != NEED)
                continue;
            size_t j = sl_store_find_int(pr, B_ID, b.rows[i].id);
            const sl_store_value_t *k = j == pr->nrows ? NULL : sl_store_cell(pr, j, B_KEY);
            if (k == NULL || !is_key(k) || memcmp(k->ptr, b.rows[i].key, 16) != 0) {
                /* in a transaction the snapshot cannot change; outside one, start over */
                rc = conn ? fail(err, "the exchanges changed while read") : RETRY;
                goto out;
            }
            const sl_store_value_t *pc = sl_store_cell(pr, j, B_PIECES);
            int current = sl_pieces_read(pc->ptr, pc->len, &b.rows[i].pieces) == 0;
            if (current) {
                sl_pcache_put(core->pieces, b.rows[i].key, pc->ptr, pc->len);
                rblob[i] = pc->ptr;
                rlen[i] = pc->len;
                bytes += pc->len;
            } else {
                lo = b.rows[i].id < lo ? b.rows[i].id : lo;
                hi = b.rows[i].id > hi ? b.rows[i].id : hi;
            }
            b.text_of[i] = current ? NONE : 0;
            stale += !current;
        }
    }
    if (stale > 0) {
        /* The text of the rows to render: in the owner's transaction, the same snapshot as the
         * rows; outside one, checked against the rows' keys (a change in between: start over). */
        const char *tsql = view == SL_VIEW_PUBLIC ? SQL_TEXT_PUBLIC : SQL_TEXT_VIEWER;
        sl_store_value_t tp[] = {p[0], sl_store_int(lo), sl_store_int(hi)};
        if (inc && row_ids(&b, 0, p[0], kp))
            t = sl_await_exec(conn, SQL_TEXT_IDS, kp, 1 + SL_TOUCH_MAX, err);
        else
            t = conn ? sl_await_exec(conn, tsql, tp, 3, err) : sl_await_query(store, tsql, tp, 3, err);
        if (t == NULL)
            goto out;
        if (t->ncols != T_COUNT) {
            fail(err, "unexpected columns reading exchanges");
            goto out;
        }
        size_t text = 0;
        for (size_t i = 0; i < b.n; i++) {
            if (b.text_of[i] == NONE)
                continue;
            size_t j = sl_store_find_int(t, T_ID, b.rows[i].id);
            unsigned char k[16];
            if (j != t->nrows)
                piece_key(b.rows[i].id, str_of(t, j, T_TMD5), str_of(t, j, T_CRAW),
                          sl_store_cell(t, j, T_PSHA), sl_store_cell(t, j, T_RSHA),
                          sl_store_cell(t, j, T_RED), k);
            if (j == t->nrows || memcmp(k, b.rows[i].key, 16) != 0) {
                /* in a transaction the snapshot cannot change; outside one, start over */
                rc = conn ? fail(err, "the exchanges changed while read") : RETRY;
                goto out;
            }
            b.text_of[i] = j;
            b.rows[i].title = str_of(t, j, T_TITLE);
            b.rows[i].created_at = str_of(t, j, T_CREATED);
            text += sl_store_cell(t, j, T_PROMPT)->len + sl_store_cell(t, j, T_RESPONSE)->len;
        }
        /* Every representation holds the text at least once: text over a third of the cap cannot
         * fit, and is refused before anything is rendered. */
        if (text > SL_MAX_PUBLIC_BYTES / 3) {
            too_large(err, text);
            rc = -2;
            goto out;
        }
        bytes += text;
        b.t = t;
    }
    /* Rendering and compressing a large session would stall the loop: it goes to the thread pool. */
    if (bytes > INLINE_BUILD)
        sl_await_work(core->loop, build, &b);
    else
        build(&b);
    if (b.rc != 0) {
        fail(err, "out of memory building the projection");
        goto out;
    }
    if (inc) {
        /* The touched exchanges out of the chunk state and back as the views show them now; the
         * documents' lengths, CRCs and ETag from its sums. */
        if ((vis = records_of(&b)) == NULL) {
            fail(err, "out of memory building the projection");
            goto out;
        }
        sl_pieces_t fp;
        const sl_pieces_t *first = NULL;
        sl_chunk_rec_t r0;
        if (sl_chunks_apply(&cs, touch->ids, touch->n, touch->lo, touch->hi, vis, b.n) != 0) {
            rc = FALLBACK;
            goto out;
        }
        if (cs.total > 0) {
            sl_chunk_rec_at(&cs.c[0], 0, &r0);
            for (size_t i = 0; i < b.n && first == NULL; i++)
                first = b.rows[i].id == r0.id ? &b.rows[i].pieces : NULL;
            if (first == NULL && first_pieces(core, conn, id, idlen, &r0, &fp, &fheld, &fr, err) != 0) {
                rc = fr == NULL && fheld == NULL ? -1 : FALLBACK;
                goto out;
            }
            first = first ? first : &fp;
        }
        sl_proj_seq_t q = {cs.total, NULL, &cs, first};
        if (sl_projection_assemble_seq(&b.sess, &q, b.version, 1, out) != 0) {
            fail(err, "out of memory building the projection");
            goto out;
        }
    }
    size_t largest = 0;
    for (int part = 0; part < 3; part++)
        largest = out->plain_len[part] > largest ? out->plain_len[part] : largest;
    if (out->len > SL_MAX_PUBLIC_BYTES || largest > SL_MAX_PUBLIC_BYTES) {
        too_large(err, largest);
        rc = -2;
        goto out;
    }
    /* What Redis will hold (recipe.c): the recipe, and the blobs this node does not know it holds. */
    if (view == SL_VIEW_PUBLIC && ((inc ? sl_chunks_keep_recipe(core, &cs, &b.sess, b.version, out)
                                        : keep_recipe(core, &b, out)) != 0 ||
                                   keep_rows(core, &b, rblob, rlen, out) != 0)) {
        fail(err, "out of memory building the projection");
        goto out;
    }
    /* The chunk state the next change starts from (an owner's change of a long session). */
    if (inc && sl_chunks_write(conn, id, idlen, &cs, 0, b.version, err) != 0)
        goto out;
    if (!inc && touch != NULL && conn != NULL && view == SL_VIEW_PUBLIC && !(flags & SL_PROJ_SCRATCH) &&
        b.n >= (core->cfg.chunks_min ? core->cfg.chunks_min : SL_CHUNKS_MIN)) {
        if ((vis = records_of(&b)) == NULL) {
            fail(err, "out of memory building the projection");
            goto out;
        }
        if (sl_chunks_from(&cs, vis, b.n) != 0) {
            fail(err, "out of memory building the projection");
            goto out;
        }
        if (sl_chunks_write(conn, id, idlen, &cs, 1, b.version, err) != 0)
            goto out;
    }
    core->stats.chunk_builds[inc]++;
    /* The pieces rendered now stay with their exchange: the next change renders only what it
     * touches. In the node's memory always (named by their key, they are right wherever they
     * came from); in MariaDB only inside the owner's transaction, where the rows cannot change
     * meanwhile. */
    rc = 0;
    for (size_t i = 0; i < b.n; i++) {
        if (b.blobs[i] == NULL)
            continue;
        core->stats.pieces_rendered++;
        if (!(flags & SL_PROJ_SCRATCH))
            sl_pcache_put(core->pieces, b.rows[i].key, b.blobs[i], b.bloblen[i]);
    }
    for (size_t i = 0; conn && !(flags & SL_PROJ_SCRATCH) && i < b.n; i++) {
        if (b.blobs[i] == NULL)
            continue;
        sl_store_value_t kv[] = {sl_store_blob(b.blobs[i], b.bloblen[i]), sl_store_blob(b.rows[i].key, 16),
                                 sl_store_text(id, idlen), sl_store_int(b.rows[i].id)};
        sl_store_result_t *u = sl_await_exec(conn, SQL_KEEP_PIECES, kv, 4, err);
        if (u == NULL) {
            rc = -1;
            break;
        }
        sl_store_result_free(u);
    }
out:
    if (rc != 0)
        sl_projection_free(out);
    for (size_t i = 0; b.blobs && i < b.n; i++)
        free(b.blobs[i]);
    free(b.rows);
    free(b.text_of);
    free(b.blobs);
    free(b.bloblen);
    for (size_t i = 0; b.held && i < b.n; i++)
        sl_pcache_release(core->pieces, b.held[i]);
    free(b.held);
    free(b.hblob);
    free(b.hlen);
    free(rblob);
    free(rlen);
    free(vis);
    sl_chunks_free(&cs);
    sl_pcache_release(core->pieces, fheld);
    sl_store_result_free(fr);
    sl_store_result_free(cr);
    sl_store_result_free(pr);
    sl_store_result_free(t);
    if (rs != r)
        sl_store_result_free(rs);
    sl_store_result_free(r);
    return rc;
}

int sl_projection_load(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                       const char *id, size_t idlen, unsigned flags, sl_projection_t *out,
                       sl_store_error_t *err)
{
    if (core->cfg.projection_scratch)
        flags |= SL_PROJ_SCRATCH;
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = load_once(core, store, conn, view, id, idlen, flags, NULL, out, err);
        if (rc != RETRY)
            return rc;
    }
    return fail(err, "the session kept changing while its page was built; retry");
}

int sl_projection_change(sl_core_t *core, sl_store_conn_t *conn, const char *id, size_t idlen,
                         const sl_touch_t *t, sl_projection_t *out, sl_store_error_t *err)
{
    unsigned flags = SL_PROJ_DRY | (core->cfg.projection_scratch ? SL_PROJ_SCRATCH : 0);
    int rc = load_once(core, core->owner, conn, SL_VIEW_PUBLIC, id, idlen, flags, t, out, err);
    if (rc != FALLBACK)
        return rc == RETRY ? fail(err, "the exchanges changed while read") : rc;
    core->stats.chunk_fallbacks++;
    sl_touch_t full = *t;
    full.inc = 0;
    rc = load_once(core, core->owner, conn, SL_VIEW_PUBLIC, id, idlen, flags, &full, out, err);
    return rc == RETRY || rc == FALLBACK ? fail(err, "the exchanges changed while read") : rc;
}

void sl_projection_free(sl_projection_t *p)
{
    for (int r = 0; r < SL_REP_COUNT; r++) {
        free(p->rep[r]);
        p->rep[r] = NULL;
    }
    free(p->recipe);
    p->recipe = NULL;
    p->recipe_len = 0;
    for (size_t i = 0; i < p->nstore; i++)
        free(p->store[i].blob);
    free(p->store);
    p->store = NULL;
    p->nstore = 0;
}
