/*
 * Recipes: what a PUBLIC entry in Redis holds (docs/pieces.md, "Redis: recipes and blobs").
 *
 * A public document is glue made from the session's fields plus its visible exchanges' pieces in
 * order (assemble.c). So Redis need not hold the documents: an entry holds the recipe — the
 * version, the session's fields and the 16-byte keys of the pieces — and each exchange's blob of
 * pieces is stored once under its key (cache/blobs.c). An owner change writes the recipe and the
 * blobs Redis lacks (the new or changed exchanges), not the session; a reader assembles the form it
 * serves from the recipe and the blobs, with the same code as a full build, so the bytes are the
 * same, and checks them against the ETag's CRC before serving them.
 *
 * Encoding (little-endian): "SLR1", version u64, count u32, nine strings (u32 length, bytes: id,
 * title, created_at, updated_at, project name, icon, colour, author name, handle), count keys.
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal/projection.h"

#define MAGIC "SLR1"
#define NSTR  9

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

int sl_recipe_encode(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                     char **out, size_t *len)
{
    size_t total = 4 + 8 + 4 + 16 * n;
    for (int i = 0; i < NSTR; i++)
        total += 4 + field(s, i)->n;
    unsigned char *b = malloc(total), *q = b;
    if (b == NULL || n > UINT32_MAX)
        return free(b), -1;
    memcpy(q, MAGIC, 4);
    q += 4;
    for (int i = 0; i < 8; i++)
        *q++ = (unsigned char)(version >> (8 * i));
    put_u32(q, (uint32_t)n);
    q += 4;
    for (int i = 0; i < NSTR; i++) {
        const sl_proj_str_t *f = field(s, i);
        put_u32(q, (uint32_t)f->n);
        q += 4;
        if (f->n)
            memcpy(q, f->p, f->n);
        q += f->n;
    }
    for (size_t i = 0; i < n; i++, q += 16)
        memcpy(q, rows[i].key, 16);
    *out = (char *)b;
    *len = total;
    return 0;
}

/* Pointers into p. 0, or -1 when p is not a recipe. */
static int decode(const void *p, size_t len, sl_proj_session_t *s, uint64_t *version, size_t *n,
                  const unsigned char **keys)
{
    const unsigned char *q = p, *end = q + len;
    if (len < 16 || memcmp(q, MAGIC, 4) != 0)
        return -1;
    q += 4;
    *version = 0;
    for (int i = 0; i < 8; i++)
        *version |= (uint64_t)q[i] << (8 * i);
    q += 8;
    *n = get_u32(q);
    q += 4;
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
    if ((size_t)(end - q) / 16 != *n || (size_t)(end - q) % 16 != 0)
        return -1;
    *keys = q;
    return 0;
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

int sl_recipe_assemble(sl_core_t *core, const void *recipe, size_t len, const sl_stored_meta_t *m,
                       uint64_t version, unsigned part, char **gz, size_t *gzlen)
{
    sl_proj_session_t s;
    uint64_t rv;
    size_t n;
    const unsigned char *keys;
    if (decode(recipe, len, &s, &rv, &n, &keys) != 0 || part > 2)
        return -1;
    (void)version; /* the entry's version; the documents carry the one they were built at (rv) */
    sl_proj_row_t *rows = calloc(n ? n : 1, sizeof(*rows));
    sl_pc_entry_t **held = calloc(n ? n : 1, sizeof(*held));
    unsigned char **own = calloc(n ? n : 1, sizeof(*own));
    size_t *ownlen = calloc(n ? n : 1, sizeof(*ownlen));
    size_t *missing = calloc(n ? n : 1, sizeof(*missing));
    int rc = -1;
    if (rows == NULL || held == NULL || own == NULL || ownlen == NULL || missing == NULL)
        goto out;
    size_t nmiss = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(rows[i].key, keys + 16 * i, 16);
        const void *blob;
        size_t bl;
        held[i] = sl_pcache_get(core->pieces, rows[i].key, &blob, &bl);
        if (held[i] != NULL && sl_pieces_read(blob, bl, &rows[i].pieces) == 0) {
            bytes += bl;
            continue;
        }
        sl_pcache_release(core->pieces, held[i]);
        held[i] = NULL;
        missing[nmiss++] = i;
    }
    /* The blobs the node lacks, from Redis, in batches (one round trip each). */
    for (size_t at = 0; at < nmiss; at += MGET_BATCH) {
        size_t k = nmiss - at < MGET_BATCH ? nmiss - at : MGET_BATCH;
        unsigned char(*ask)[16] = malloc(k * 16);
        if (ask == NULL)
            goto out;
        for (size_t j = 0; j < k; j++)
            memcpy(ask[j], rows[missing[at + j]].key, 16);
        wait_blobs_t w = {
            .task = sl_task_current(), .left = 1, .idx = missing + at, .own = own, .ownlen = ownlen};
        sl_cache_blobs_get(core->cache, k, (const unsigned char(*)[16])ask, on_get, &w);
        while (w.left > 0)
            sl_task_wait();
        free(ask);
        core->stats.pieces_fetched += k - w.gone;
        if (w.failed)
            goto out;
        if (w.gone) {
            rc = 1; /* evicted or expired: the entry is rebuilt from MariaDB */
            goto out;
        }
    }
    uint64_t gen = sl_cache_trust_generation(core->cache), now = uv_now(core->loop);
    for (size_t j = 0; j < nmiss; j++) {
        size_t i = missing[j];
        if (sl_pieces_read(own[i], ownlen[i], &rows[i].pieces) != 0) {
            rc = 1; /* not a blob of ours: rebuilt */
            goto out;
        }
        sl_pcache_put(core->pieces, rows[i].key, own[i], ownlen[i]);
        sl_pcache_set_in_redis(core->pieces, rows[i].key, gen, now);
        bytes += ownlen[i];
    }
    assembly_t a = {.s = &s, .rows = rows, .n = n, .version = rv, .part = part};
    if (bytes > INLINE_ASSEMBLY)
        sl_await_work(core->loop, run_assembly, &a);
    else
        run_assembly(&a);
    if (a.rc != 0)
        goto out;
    /* The bytes must be the ones the publisher described (a blob is named by what it was made
     * from; this catches anything else): else the entry is dropped and rebuilt. */
    if (a.gzlen != m->gz_len[part] || a.plain != m->plain_len[part] ||
        !sl_etag_part_matches(m->etag, m->etag_len, part, a.crc)) {
        free(a.gz);
        rc = 1;
        goto out;
    }
    *gz = a.gz;
    *gzlen = a.gzlen;
    rc = 0;
out:
    for (size_t i = 0; held && i < n; i++)
        sl_pcache_release(core->pieces, held[i]);
    for (size_t i = 0; own && i < n; i++)
        free(own[i]);
    free(rows);
    free(held);
    free(own);
    free(ownlen);
    free(missing);
    return rc;
}
