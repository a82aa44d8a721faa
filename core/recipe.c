/*
 * Recipes: what a PUBLIC entry in Redis holds (docs/pieces.md, "Redis: recipes and blobs").
 *
 * A public document is glue made from the session's fields plus its visible exchanges' pieces in
 * order (assemble.c). So Redis need not hold the documents: an entry holds the recipe — the
 * version, the session's fields and the keys of chunks of the pieces' keys — and each exchange's
 * blob of pieces, like each chunk, is stored once under its key (cache/blobs.c). An owner change
 * writes the recipe and the blobs Redis lacks (the new or changed exchanges and the chunk that
 * holds them), not the session; a reader assembles the form it serves from the recipe and the
 * blobs, with the same code as a full build, so the bytes are the same, and checks them against
 * the ETag's CRC before serving them.
 *
 * Chunks: the pieces' keys in order, cut after every key whose last byte is below CUT_BELOW (one
 * in 64: the cuts depend on the keys, not on positions, so hiding or retitling an exchange changes
 * its own chunk only, and an append the last one), and after MAX_CHUNK keys at the most. A chunk is
 * named by the first 16 bytes of the SHA-256 of its bytes.
 *
 * Encoding (little-endian): the recipe "SLR2", version u64, exchange count u32, chunk count u32,
 * nine strings (u32 length, bytes: id, title, created_at, updated_at, project name, icon, colour,
 * author name, handle), the chunks' keys; a chunk "SLC1", key count u32, the keys.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

#include "core/internal/projection.h"

#define MAGIC       "SLR2"
#define CHUNK_MAGIC "SLC1"
#define NSTR        9
#define CUT_BELOW   4 /* of 256: a chunk holds 64 keys on average */
#define MAX_CHUNK   256

#define MGET_BATCH      512
#define INLINE_ASSEMBLY (64u << 10) /* bytes of pieces assembled on the loop; more go to the pool */

static const sl_proj_str_t *field(const sl_proj_session_t *s, int i)
{
    const sl_proj_str_t *f[NSTR] = {&s->id,           &s->title,        &s->created_at,    &s->updated_at,
                                    &s->project_name, &s->project_icon, &s->project_color, &s->author_name,
                                    &s->author_handle};
    return f[i];
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int sl_recipe_cut(const unsigned char key[16], size_t k)
{
    return key[15] < CUT_BELOW || k >= MAX_CHUNK;
}

int sl_recipe_chunk(const unsigned char *keys, size_t stride, size_t k, sl_blob_t *out)
{
    out->len = 8 + 16 * k;
    out->blob = malloc(out->len);
    if (out->blob == NULL)
        return -1;
    memcpy(out->blob, CHUNK_MAGIC, 4);
    put_u32(out->blob + 4, (uint32_t)k);
    for (size_t j = 0; j < k; j++)
        memcpy(out->blob + 8 + 16 * j, keys + j * stride, 16);
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(out->blob, out->len, d);
    memcpy(out->key, d, 16);
    return 0;
}

/* The chunks of rows[0..n): their count, and (when out is not NULL) each one's blob and key. */
static size_t chunk(const sl_proj_row_t *rows, size_t n, sl_blob_t *out)
{
    size_t nc = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        while (i + k < n) {
            k++;
            if (sl_recipe_cut(rows[i + k - 1].key, k))
                break;
        }
        if (out != NULL && sl_recipe_chunk(rows[i].key, sizeof(*rows), k, &out[nc]) != 0)
            return (size_t)-1;
        nc++;
        i += k;
    }
    return nc;
}

void sl_recipe_chunks_free(sl_blob_t *chunks, size_t n)
{
    for (size_t i = 0; chunks && i < n; i++)
        free(chunks[i].blob);
    free(chunks);
}

int sl_recipe_encode_keys(const sl_proj_session_t *s, size_t n, uint64_t version, const unsigned char *ckeys,
                          size_t stride, size_t nc, char **out, size_t *len)
{
    if (n > UINT32_MAX)
        return -1;
    size_t total = 4 + 8 + 4 + 4 + 16 * nc;
    for (int i = 0; i < NSTR; i++)
        total += 4 + field(s, i)->n;
    unsigned char *b = malloc(total), *q = b;
    if (b == NULL)
        return -1;
    memcpy(q, MAGIC, 4);
    q += 4;
    for (int i = 0; i < 8; i++)
        *q++ = (unsigned char)(version >> (8 * i));
    put_u32(q, (uint32_t)n);
    put_u32(q + 4, (uint32_t)nc);
    q += 8;
    for (int i = 0; i < NSTR; i++) {
        const sl_proj_str_t *f = field(s, i);
        put_u32(q, (uint32_t)f->n);
        q += 4;
        if (f->n)
            memcpy(q, f->p, f->n);
        q += f->n;
    }
    for (size_t i = 0; i < nc; i++, q += 16)
        memcpy(q, ckeys + i * stride, 16);
    *out = (char *)b;
    *len = total;
    return 0;
}

int sl_recipe_encode(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                     char **out, size_t *len, sl_blob_t **chunks, size_t *nchunks)
{
    size_t nc = chunk(rows, n, NULL);
    sl_blob_t *cs = calloc(nc ? nc : 1, sizeof(*cs));
    if (cs == NULL || chunk(rows, n, cs) != nc ||
        sl_recipe_encode_keys(s, n, version, cs[0].key, sizeof(*cs), nc, out, len) != 0) {
        sl_recipe_chunks_free(cs, nc);
        return -1;
    }
    *chunks = cs;
    *nchunks = nc;
    return 0;
}

/* Pointers into p. 0, or -1 when p is not a recipe. */
static int decode(const void *p, size_t len, sl_proj_session_t *s, uint64_t *version, size_t *n, size_t *nc,
                  const unsigned char **ckeys)
{
    const unsigned char *q = p, *end = q + len;
    if (len < 20 || memcmp(q, MAGIC, 4) != 0)
        return -1;
    q += 4;
    *version = 0;
    for (int i = 0; i < 8; i++)
        *version |= (uint64_t)q[i] << (8 * i);
    q += 8;
    *n = get_u32(q);
    *nc = get_u32(q + 4);
    q += 8;
    for (int i = 0; i < NSTR; i++) {
        if (end - q < 4)
            return -1;
        size_t l = get_u32(q);
        q += 4;
        if ((size_t)(end - q) < l)
            return -1;
        sl_proj_str_t *f = (sl_proj_str_t *)field(s, i);
        f->p = (const char *)q;
        f->n = l;
        q += l;
    }
    if ((size_t)(end - q) % 16 != 0 || (size_t)(end - q) / 16 != *nc || *nc > *n || (*n > 0 && *nc == 0))
        return -1;
    *ckeys = q;
    return 0;
}

/* A chunk's keys: their count, or (size_t)-1 when blob is not a chunk. */
static size_t chunk_keys(const void *blob, size_t len, const unsigned char **keys)
{
    const unsigned char *b = blob;
    if (len < 8 || memcmp(b, CHUNK_MAGIC, 4) != 0 || (len - 8) % 16 != 0 || get_u32(b + 4) != (len - 8) / 16)
        return (size_t)-1;
    *keys = b + 8;
    return (len - 8) / 16;
}

/* ---- the writer: blobs before the entry ---- */

typedef struct wait_blobs {
    sl_task_t *task;
    size_t left;
    int failed;
    /* get */
    const size_t *idx;   /* which rows the keys asked are */
    unsigned char **own; /* per row: a copy of the blob read (malloc'd) */
    size_t *ownlen;
    size_t gone; /* keys Redis did not hold */
} wait_blobs_t;

static void on_put(const sl_blobs_reply_t *r, void *data)
{
    wait_blobs_t *w = data;
    if (r->status != SL_CACHE_OK)
        w->failed = 1;
    w->left--;
    sl_task_resume(w->task);
}

int sl_recipe_store(sl_core_t *core, const sl_projection_t *p)
{
    if (p->nstore == 0)
        return 0;
    wait_blobs_t w = {.task = sl_task_current(), .left = p->nstore};
    for (size_t i = 0; i < p->nstore; i++)
        sl_cache_blob_put(core->cache, p->store[i].key, p->store[i].blob, p->store[i].len, SL_BLOB_TTL_S,
                          on_put, &w);
    while (w.left > 0)
        sl_task_wait();
    if (w.failed)
        return -1;
    uint64_t gen = sl_cache_trust_generation(core->cache), now = uv_now(core->loop);
    for (size_t i = 0; i < p->nstore; i++)
        sl_pcache_set_in_redis(core->pieces, p->store[i].key, gen, now);
    core->stats.pieces_stored += p->nstore;
    return 0;
}

void sl_recipe_forget(sl_core_t *core, const unsigned char (*keys)[16], size_t n)
{
    wait_blobs_t w = {.task = sl_task_current()};
    for (size_t at = 0; at < n; at += MGET_BATCH) {
        w.left++;
        sl_cache_blobs_del(core->cache, n - at < MGET_BATCH ? n - at : MGET_BATCH, keys + at, on_put, &w);
    }
    /* done before the call returns (a blob it could not delete expires with its TTL) */
    while (w.left > 0)
        sl_task_wait();
}

/* ---- the reader: blobs, then one document ---- */

static void on_get(const sl_blobs_reply_t *r, void *data)
{
    wait_blobs_t *w = data;
    if (r->status != SL_CACHE_OK) {
        w->failed = 1;
    } else {
        for (size_t i = 0; i < r->n; i++) {
            size_t row = w->idx[i];
            if (r->blob[i] == NULL || r->len[i] == 0) {
                w->gone++;
                continue;
            }
            w->own[row] = malloc(r->len[i]);
            if (w->own[row] == NULL) {
                w->failed = 1;
                continue;
            }
            memcpy(w->own[row], r->blob[i], r->len[i]);
            w->ownlen[row] = r->len[i];
        }
    }
    w->left--;
    sl_task_resume(w->task);
}

typedef struct assembly {
    const sl_proj_session_t *s;
    const sl_proj_row_t *rows;
    size_t n;
    uint64_t version;
    unsigned part;
    char *gz;
    size_t gzlen, plain;
    uint32_t crc;
    int rc;
} assembly_t;

static void run_assembly(void *arg)
{
    assembly_t *a = arg;
    a->rc = sl_projection_assemble_part(a->s, a->rows, a->n, a->version, a->part, 0, &a->gz, &a->gzlen,
                                        &a->crc, &a->plain);
}

/* The blobs of keys[0..n): the node's (held[i], referenced) or read from Redis (own[i], malloc'd;
 * then kept in the node's memory too); blob[i] / len[i] point at either. 0; 1 when Redis holds
 * one no longer; -1 when Redis could not be read. */
typedef struct fetched {
    sl_pc_entry_t **held;
    unsigned char **own;
    size_t *ownlen;
    const void **blob;
    size_t *len;
    size_t *missing;
    size_t n;
} fetched_t;

static void fetched_free(sl_core_t *core, fetched_t *f)
{
    for (size_t i = 0; f->held && i < f->n; i++)
        sl_pcache_release(core->pieces, f->held[i]);
    for (size_t i = 0; f->own && i < f->n; i++)
        free(f->own[i]);
    free(f->held);
    free(f->own);
    free(f->ownlen);
    free(f->blob);
    free(f->len);
    free(f->missing);
    memset(f, 0, sizeof(*f));
}

static int fetch(sl_core_t *core, const unsigned char *keys, size_t n, fetched_t *f)
{
    size_t m = n ? n : 1;
    f->n = n;
    f->held = calloc(m, sizeof(*f->held));
    f->own = calloc(m, sizeof(*f->own));
    f->ownlen = calloc(m, sizeof(*f->ownlen));
    f->blob = calloc(m, sizeof(*f->blob));
    f->len = calloc(m, sizeof(*f->len));
    f->missing = calloc(m, sizeof(*f->missing));
    if (!f->held || !f->own || !f->ownlen || !f->blob || !f->len || !f->missing)
        return -1;
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        f->held[i] = sl_pcache_get(core->pieces, keys + 16 * i, &f->blob[i], &f->len[i]);
        if (f->held[i] == NULL)
            f->missing[nmiss++] = i;
    }
    for (size_t at = 0; at < nmiss; at += MGET_BATCH) {
        size_t k = nmiss - at < MGET_BATCH ? nmiss - at : MGET_BATCH;
        unsigned char(*ask)[16] = malloc(k * 16);
        if (ask == NULL)
            return -1;
        for (size_t j = 0; j < k; j++)
            memcpy(ask[j], keys + 16 * f->missing[at + j], 16);
        wait_blobs_t w = {
            .task = sl_task_current(), .left = 1, .idx = f->missing + at, .own = f->own, .ownlen = f->ownlen};
        sl_cache_blobs_get(core->cache, k, (const unsigned char(*)[16])ask, on_get, &w);
        while (w.left > 0)
            sl_task_wait();
        free(ask);
        core->stats.pieces_fetched += k - w.gone;
        if (w.failed)
            return -1;
        if (w.gone)
            return 1; /* evicted or expired: the entry is rebuilt from MariaDB */
    }
    uint64_t gen = sl_cache_trust_generation(core->cache), now = uv_now(core->loop);
    for (size_t j = 0; j < nmiss; j++) {
        size_t i = f->missing[j];
        f->blob[i] = f->own[i];
        f->len[i] = f->ownlen[i];
        sl_pcache_put(core->pieces, keys + 16 * i, f->own[i], f->ownlen[i]);
        sl_pcache_set_in_redis(core->pieces, keys + 16 * i, gen, now);
    }
    return 0;
}

int sl_recipe_assemble(sl_core_t *core, const void *recipe, size_t len, const sl_stored_meta_t *m,
                       unsigned part, char **gz, size_t *gzlen)
{
    sl_proj_session_t s;
    uint64_t rv;
    size_t n, nc;
    const unsigned char *ckeys;
    if (part > 2)
        return -1;
    if (decode(recipe, len, &s, &rv, &n, &nc, &ckeys) != 0)
        return 1; /* not a recipe of ours (another writer, a damaged value): dropped and rebuilt */
    fetched_t chunks = {0}, pieces = {0};
    sl_proj_row_t *rows = calloc(n ? n : 1, sizeof(*rows));
    unsigned char *keys = malloc(n ? 16 * n : 1);
    int rc = -1;
    if (rows == NULL || keys == NULL)
        goto out;
    /* the chunks, then the pieces they name */
    if ((rc = fetch(core, ckeys, nc, &chunks)) != 0)
        goto out;
    rc = 1; /* from here, anything that does not add up: the entry is rebuilt */
    size_t at = 0;
    for (size_t c = 0; c < nc; c++) {
        const unsigned char *k;
        size_t kn = chunk_keys(chunks.blob[c], chunks.len[c], &k);
        if (kn == (size_t)-1 || kn > n - at)
            goto out;
        memcpy(keys + 16 * at, k, 16 * kn);
        at += kn;
    }
    if (at != n)
        goto out;
    if ((rc = fetch(core, keys, n, &pieces)) != 0)
        goto out;
    rc = 1;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(rows[i].key, keys + 16 * i, 16);
        if (sl_pieces_read(pieces.blob[i], pieces.len[i], &rows[i].pieces) != 0)
            goto out; /* not a blob of ours: rebuilt */
        bytes += pieces.len[i];
    }
    assembly_t a = {.s = &s, .rows = rows, .n = n, .version = rv, .part = part};
    if (bytes > INLINE_ASSEMBLY)
        sl_await_work(core->loop, run_assembly, &a);
    else
        run_assembly(&a);
    if (a.rc != 0) {
        rc = -1;
        goto out;
    }
    /* The bytes must be the ones the publisher described (a blob is named by what it was made
     * from; this catches anything else): else the entry is dropped and rebuilt. */
    if (a.gzlen != m->gz_len[part] || a.plain != m->plain_len[part] ||
        !sl_etag_part_matches(m->etag, m->etag_len, part, a.crc)) {
        free(a.gz);
        goto out;
    }
    *gz = a.gz;
    *gzlen = a.gzlen;
    rc = 0;
out:
    fetched_free(core, &chunks);
    fetched_free(core, &pieces);
    free(rows);
    free(keys);
    return rc;
}
