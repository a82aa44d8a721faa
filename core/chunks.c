/*
 * The chunk state of a long public session (core/internal/chunks.h, docs/pieces.md "Changes that
 * cost what they change"): pure, no I/O. projection.c reads it from and writes it to MariaDB.
 *
 * Stored form of a chunk (session_chunks.data, little-endian): "SLK1", record count u32, the
 * piece format it was made with (SL_PIECES_REV, 4 bytes: a state of another format is not used, so
 * that a renderer change reaches long sessions at their next change), the chunk's recipe key (16), per piece kind its sums (plain u64, deflated u64, CRC u32, CRC with
 * commas u32), then per record: position i64, id i64, piece key (16), per kind plain u32, deflated
 * u32, CRC u32, combine operator u32.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/internal/chunks.h"
#include "core/internal/projection.h"

#define MAGIC    "SLK1"
#define HEAD     (4 + 4 + 4 + 16 + SL_PC_COUNT * 24)
#define REC      (8 + 8 + 16 + SL_PC_COUNT * 16)
#define COMMA_Z  6 /* a one-byte stored block: 5 bytes of header, the comma */
#define MAX_RECS (1u << 20)

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* SL_PIECES_REV as stored: its first 4 bytes, zero-padded. */
static void rev(unsigned char out[4])
{
    size_t n = strlen(SL_PIECES_REV);
    memset(out, 0, 4);
    memcpy(out, SL_PIECES_REV, n < 4 ? n : 4);
}

static uint32_t comma_crc, comma_op;
static pthread_once_t commas_once = PTHREAD_ONCE_INIT;

static void commas_make(void)
{
    comma_crc = (uint32_t)crc32(0, (const Bytef *)",", 1);
    comma_op = (uint32_t)crc32_combine_gen(1);
}

static void commas_init(void)
{
    pthread_once(&commas_once, commas_make);
}

void sl_chunk_rec_of(sl_chunk_rec_t *r, int64_t position, int64_t id, const unsigned char key[16],
                     const sl_pieces_t *p)
{
    r->position = position;
    r->id = id;
    memcpy(r->key, key, 16);
    for (int k = 0; k < SL_PC_COUNT; k++) {
        r->plain[k] = (uint32_t)p->p[k].plain_len;
        r->zlen[k] = (uint32_t)p->p[k].zlen;
        r->crc[k] = p->p[k].crc;
        r->op[k] = p->p[k].op;
    }
}

static void rec_decode(const unsigned char *q, sl_chunk_rec_t *r)
{
    r->position = (int64_t)get64(q);
    r->id = (int64_t)get64(q + 8);
    memcpy(r->key, q + 16, 16);
    q += 32;
    for (int k = 0; k < SL_PC_COUNT; k++, q += 16) {
        r->plain[k] = get32(q);
        r->zlen[k] = get32(q + 4);
        r->crc[k] = get32(q + 8);
        r->op[k] = get32(q + 12);
    }
}

void sl_chunk_rec_at(const sl_chunk_t *c, size_t j, sl_chunk_rec_t *out)
{
    if (c->rec != NULL)
        *out = c->rec[j];
    else
        rec_decode(c->raw + (size_t)REC * j, out);
}

/* The place (position, id) and key of record j, without decoding the rest. */
static void place_at(const sl_chunk_t *c, size_t j, int64_t *pos, int64_t *id)
{
    if (c->rec != NULL) {
        *pos = c->rec[j].position;
        *id = c->rec[j].id;
    } else {
        *pos = (int64_t)get64(c->raw + (size_t)REC * j);
        *id = (int64_t)get64(c->raw + (size_t)REC * j + 8);
    }
}

static const unsigned char *key_at(const sl_chunk_t *c, size_t j)
{
    return c->rec != NULL ? c->rec[j].key : c->raw + (size_t)REC * j + 16;
}

static int place_cmp(int64_t p1, int64_t i1, int64_t p2, int64_t i2)
{
    if (p1 != p2)
        return p1 < p2 ? -1 : 1;
    return (i1 > i2) - (i1 < i2);
}

/* ---- reading ---- */

static sl_chunk_t *push(sl_chunks_t *cs)
{
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? 2 * cs->cap : 16;
        sl_chunk_t *c = realloc(cs->c, cap * sizeof(*c));
        if (c == NULL)
            return NULL;
        cs->c = c;
        cs->cap = cap;
    }
    sl_chunk_t *c = &cs->c[cs->n++];
    memset(c, 0, sizeof(*c));
    return c;
}

int sl_chunks_add_row(sl_chunks_t *cs, int64_t row_pos, int64_t row_id, const void *data, size_t len)
{
    const unsigned char *d = data;
    if (len < HEAD || memcmp(d, MAGIC, 4) != 0)
        return -1;
    size_t n = get32(d + 4);
    unsigned char r[4];
    rev(r);
    if (n == 0 || n > MAX_RECS || len != HEAD + (size_t)REC * n || memcmp(d + 8, r, 4) != 0)
        return -1;
    sl_chunk_t *c = push(cs);
    if (c == NULL)
        return -1;
    c->row_pos = row_pos;
    c->row_id = row_id;
    c->stored = 1;
    c->n = n;
    memcpy(c->key, d + 12, 16);
    const unsigned char *q = d + 28;
    for (int k = 0; k < SL_PC_COUNT; k++, q += 24)
        c->sum[k] = (sl_chunk_sum_t){get64(q), get64(q + 8), get32(q + 16), get32(q + 20)};
    c->raw = d + HEAD;
    return 0;
}

static int by_row(const void *a, const void *b)
{
    const sl_chunk_t *x = a, *y = b;
    return place_cmp(x->row_pos, x->row_id, y->row_pos, y->row_id);
}

static int index_chunks(sl_chunks_t *cs)
{
    free(cs->start);
    cs->start = malloc((cs->n + 1) * sizeof(*cs->start));
    if (cs->start == NULL)
        return -1;
    size_t t = 0;
    for (size_t i = 0; i < cs->n; i++) {
        cs->start[i] = t;
        t += cs->c[i].n;
    }
    cs->start[cs->n] = t;
    cs->total = t;
    return 0;
}

int sl_chunks_ready(sl_chunks_t *cs)
{
    if (cs->n > 1)
        qsort(cs->c, cs->n, sizeof(*cs->c), by_row);
    int64_t lp = INT64_MIN, li = INT64_MIN;
    for (size_t i = 0; i < cs->n; i++) {
        const sl_chunk_t *c = &cs->c[i];
        for (size_t j = 0; j < c->n; j++) {
            int64_t p, id;
            place_at(c, j, &p, &id);
            if (j == 0 && (p != c->row_pos || id != c->row_id))
                return -1; /* a row named after another exchange than its first */
            if (place_cmp(lp, li, p, id) >= 0)
                return -1; /* out of order, or twice */
            lp = p;
            li = id;
            /* cut as the recipe cuts: at its last key only (the session's last chunk may end anywhere) */
            int cut = sl_recipe_cut(key_at(c, j), j + 1);
            if (cut != (j + 1 == c->n) && (j + 1 < c->n || i + 1 < cs->n))
                return -1;
        }
    }
    return index_chunks(cs);
}

/* ---- changing ---- */

static void sums(sl_chunk_t *c)
{
    commas_init();
    memset(c->sum, 0, sizeof(c->sum));
    for (size_t j = 0; j < c->n; j++) {
        const sl_chunk_rec_t *r = &c->rec[j];
        for (int k = 0; k < SL_PC_COUNT; k++) {
            sl_chunk_sum_t *s = &c->sum[k];
            s->plain += r->plain[k];
            s->zlen += r->zlen[k];
            s->crc = (uint32_t)crc32_combine_op(s->crc, r->crc[k], r->op[k]);
            s->crc_comma = (uint32_t)crc32_combine_op(s->crc_comma, comma_crc, comma_op);
            s->crc_comma = (uint32_t)crc32_combine_op(s->crc_comma, r->crc[k], r->op[k]);
        }
    }
}

/* A new chunk of recs[0..n) (copied): sums, recipe key, dirty. */
static int close_chunk(sl_chunks_t *out, const sl_chunk_rec_t *recs, size_t n)
{
    sl_chunk_t *c = push(out);
    if (c == NULL)
        return -1;
    c->rec = malloc(n * sizeof(*c->rec));
    if (c->rec == NULL)
        return -1;
    memcpy(c->rec, recs, n * sizeof(*recs));
    c->n = n;
    c->dirty = 1;
    c->row_pos = recs[0].position;
    c->row_id = recs[0].id;
    sums(c);
    sl_blob_t b;
    if (sl_recipe_chunk(recs[0].key, sizeof(*recs), n, &b) != 0)
        return -1;
    memcpy(c->key, b.key, 16);
    free(b.blob);
    return 0;
}

/* Cuts recs[0..n) as the recipe does into out; the records after the last cut stay open: their
 * count is returned (0 when the last record was a cut), or (size_t)-1 when out of memory. */
static size_t cut_into(sl_chunks_t *out, const sl_chunk_rec_t *recs, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++)
        if (sl_recipe_cut(recs[i].key, i + 1 - from)) {
            if (close_chunk(out, recs + from, i + 1 - from) != 0)
                return (size_t)-1;
            from = i + 1;
        }
    return n - from;
}

int sl_chunks_from(sl_chunks_t *cs, const sl_chunk_rec_t *recs, size_t n)
{
    size_t open = cut_into(cs, recs, n);
    if (open == (size_t)-1 || (open > 0 && close_chunk(cs, recs + n - open, open) != 0))
        return -1;
    return index_chunks(cs);
}

static int materialize(sl_chunk_t *c)
{
    if (c->rec != NULL || c->n == 0)
        return 0;
    c->rec = malloc(c->n * sizeof(*c->rec));
    if (c->rec == NULL)
        return -1;
    for (size_t j = 0; j < c->n; j++)
        rec_decode(c->raw + (size_t)REC * j, &c->rec[j]);
    return 0;
}

static int touched_by(int64_t id, const int64_t *t, size_t nt, int64_t lo, int64_t hi)
{
    if (id >= lo && id <= hi)
        return 1;
    size_t a = 0, b = nt;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (t[m] == id)
            return 1;
        if (t[m] < id)
            a = m + 1;
        else
            b = m;
    }
    return 0;
}

/* A growable array of records. */
typedef struct recs {
    sl_chunk_rec_t *r;
    size_t n, cap;
} recs_t;

static int recs_add(recs_t *v, const sl_chunk_rec_t *r)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        sl_chunk_rec_t *g = realloc(v->r, cap * sizeof(*g));
        if (g == NULL)
            return -1;
        v->r = g;
        v->cap = cap;
    }
    v->r[v->n++] = *r;
    return 0;
}

static void chunk_free(sl_chunk_t *c)
{
    free(c->rec);
    c->rec = NULL;
}

static int gone_add(sl_chunks_t *cs, int64_t pos, int64_t id)
{
    struct sl_chunk_gone *g = realloc(cs->gone, (cs->ngone + 1) * sizeof(*g));
    if (g == NULL)
        return -1;
    cs->gone = g;
    g[cs->ngone++] = (struct sl_chunk_gone){pos, id};
    return 0;
}

/* Replaces chunks [lo, end) by fresh (their stored rows are deleted, unless a fresh chunk starts
 * where one did: its row is overwritten). */
static int splice(sl_chunks_t *cs, size_t lo, size_t end, sl_chunks_t *fresh)
{
    for (size_t i = lo; i < end; i++) {
        sl_chunk_t *o = &cs->c[i];
        int reused = 0;
        for (size_t f = 0; f < fresh->n && !reused; f++)
            if (fresh->c[f].row_pos == o->row_pos && fresh->c[f].row_id == o->row_id) {
                fresh->c[f].stored = o->stored;
                reused = o->stored;
            }
        if (o->stored && !reused && gone_add(cs, o->row_pos, o->row_id) != 0)
            return -1;
        chunk_free(o);
    }
    size_t n = cs->n - (end - lo) + fresh->n;
    if (n > cs->cap) {
        sl_chunk_t *g = realloc(cs->c, n * sizeof(*g));
        if (g == NULL)
            return -1;
        cs->c = g;
        cs->cap = n;
    }
    memmove(cs->c + lo + fresh->n, cs->c + end, (cs->n - end) * sizeof(*cs->c));
    if (fresh->n > 0)
        memcpy(cs->c + lo, fresh->c, fresh->n * sizeof(*cs->c));
    cs->n = n;
    free(fresh->c);
    memset(fresh, 0, sizeof(*fresh));
    return 0;
}

/* The chunk an exchange at (pos, id) belongs in: the last one starting at or before it (chunks are
 * ordered by where they started when read). */
static size_t home(const sl_chunks_t *cs, int64_t pos, int64_t id)
{
    size_t a = 0, b = cs->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (place_cmp(cs->c[m].row_pos, cs->c[m].row_id, pos, id) <= 0)
            a = m + 1;
        else
            b = m;
    }
    return a == 0 ? 0 : a - 1;
}

int sl_chunks_apply(sl_chunks_t *cs, const int64_t *touched, size_t nt, int64_t lo, int64_t hi,
                    const sl_chunk_rec_t *vis, size_t nv)
{
    size_t first = SIZE_MAX, last = 0; /* the chunks changed */
    for (size_t i = 0; i < cs->n; i++) {
        sl_chunk_t *c = &cs->c[i];
        size_t keep = 0;
        int hit = 0;
        for (size_t j = 0; j < c->n; j++) {
            int64_t p, id;
            place_at(c, j, &p, &id);
            if (!touched_by(id, touched, nt, lo, hi)) {
                if (hit)
                    c->rec[keep] = c->rec[j];
                keep++;
                continue;
            }
            if (!hit && materialize(c) != 0)
                return -1;
            hit = 1;
        }
        if (hit) {
            c->n = keep;
            first = i < first ? i : first;
            last = i > last ? i : last;
        }
    }
    if (cs->n == 0 && nv > 0) {
        sl_chunk_t *c = push(cs); /* a state of no exchanges: one empty chunk to put them in */
        if (c == NULL)
            return -1;
        c->row_pos = vis[0].position;
        c->row_id = vis[0].id;
    }
    for (size_t v = 0; v < nv; v++) {
        size_t i = home(cs, vis[v].position, vis[v].id);
        sl_chunk_t *c = &cs->c[i];
        if (materialize(c) != 0)
            return -1;
        sl_chunk_rec_t *g = realloc(c->rec, (c->n + 1) * sizeof(*g));
        if (g == NULL)
            return -1;
        c->rec = g;
        size_t at = c->n;
        while (at > 0 && place_cmp(g[at - 1].position, g[at - 1].id, vis[v].position, vis[v].id) >= 0) {
            if (g[at - 1].id == vis[v].id)
                return -1;
            at--;
        }
        memmove(g + at + 1, g + at, (c->n - at) * sizeof(*g));
        g[at] = vis[v];
        c->n++;
        first = i < first ? i : first;
        last = i > last ? i : last;
    }
    if (first == SIZE_MAX)
        return index_chunks(cs);
    /* Cut again from the first chunk changed until a cut falls where an old chunk ended. */
    sl_chunks_t fresh = {0};
    recs_t open = {0};
    size_t end = first;
    int rc = 0;
    while (rc == 0 && end < cs->n && (end <= last || open.n > 0)) {
        sl_chunk_t *c = &cs->c[end++];
        for (size_t j = 0; j < c->n && rc == 0; j++) {
            sl_chunk_rec_t r;
            sl_chunk_rec_at(c, j, &r);
            rc = recs_add(&open, &r);
        }
        size_t left = rc == 0 ? cut_into(&fresh, open.r, open.n) : 0;
        if (left == (size_t)-1) {
            rc = -1;
            break;
        }
        if (left > 0)
            memmove(open.r, open.r + open.n - left, left * sizeof(*open.r));
        open.n = left;
    }
    if (rc == 0 && open.n > 0) /* the session's end */
        rc = close_chunk(&fresh, open.r, open.n);
    free(open.r);
    if (rc == 0)
        rc = splice(cs, first, end, &fresh);
    if (rc != 0) {
        for (size_t i = 0; i < fresh.n; i++)
            chunk_free(&fresh.c[i]);
        free(fresh.c);
        return -1;
    }
    return index_chunks(cs);
}

/* ---- writing ---- */

int sl_chunk_encode(const sl_chunk_t *c, unsigned char **out, size_t *len)
{
    size_t n = HEAD + (size_t)REC * c->n;
    unsigned char *b = malloc(n), *q = b;
    if (b == NULL)
        return -1;
    memcpy(q, MAGIC, 4);
    put32(q + 4, (uint32_t)c->n);
    rev(q + 8);
    memcpy(q + 12, c->key, 16);
    q += 28;
    for (int k = 0; k < SL_PC_COUNT; k++, q += 24) {
        put64(q, c->sum[k].plain);
        put64(q + 8, c->sum[k].zlen);
        put32(q + 16, c->sum[k].crc);
        put32(q + 20, c->sum[k].crc_comma);
    }
    for (size_t j = 0; j < c->n; j++) {
        sl_chunk_rec_t r;
        sl_chunk_rec_at(c, j, &r);
        put64(q, (uint64_t)r.position);
        put64(q + 8, (uint64_t)r.id);
        memcpy(q + 16, r.key, 16);
        q += 32;
        for (int k = 0; k < SL_PC_COUNT; k++, q += 16) {
            put32(q, r.plain[k]);
            put32(q + 4, r.zlen[k]);
            put32(q + 8, r.crc[k]);
            put32(q + 12, r.op[k]);
        }
    }
    *out = b;
    *len = n;
    return 0;
}

int sl_chunk_keys_blob(const sl_chunk_t *c, unsigned char **out, size_t *len)
{
    sl_blob_t b;
    if (sl_recipe_chunk(key_at(c, 0), c->rec != NULL ? sizeof(*c->rec) : REC, c->n, &b) != 0)
        return -1;
    *out = b.blob;
    *len = b.len;
    return 0;
}

/* ---- spans ---- */

typedef struct span {
    uint64_t plain, zlen;
    uint32_t crc;
} span_t;

static void add_rec(span_t *s, const sl_chunk_rec_t *r, unsigned k, int comma)
{
    if (comma) {
        s->crc = (uint32_t)crc32_combine_op(s->crc, comma_crc, comma_op);
        s->plain += 1;
        s->zlen += COMMA_Z;
    }
    s->crc = (uint32_t)crc32_combine_op(s->crc, r->crc[k], r->op[k]);
    s->plain += r->plain[k];
    s->zlen += r->zlen[k];
}

/* Exchanges [a, b) of kind k, each after a comma when comma. */
static void add_range(const sl_chunks_t *cs, span_t *s, unsigned k, size_t a, size_t b, int comma)
{
    if (a >= b)
        return;
    size_t lo = 0, hi = cs->n; /* the chunk holding a: the last whose start is <= a */
    while (lo + 1 < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (cs->start[m] <= a)
            lo = m;
        else
            hi = m;
    }
    for (size_t i = lo; i < cs->n && cs->start[i] < b; i++) {
        const sl_chunk_t *c = &cs->c[i];
        size_t from = a > cs->start[i] ? a - cs->start[i] : 0;
        size_t to = b < cs->start[i + 1] ? b - cs->start[i] : c->n;
        if (from == 0 && to == c->n) {
            const sl_chunk_sum_t *u = &c->sum[k];
            uint64_t plain = u->plain + (comma ? c->n : 0);
            s->crc = (uint32_t)crc32_combine(s->crc, comma ? u->crc_comma : u->crc, (z_off_t)plain);
            s->plain += plain;
            s->zlen += u->zlen + (comma ? (uint64_t)COMMA_Z * c->n : 0);
            continue;
        }
        for (size_t j = from; j < to; j++) {
            sl_chunk_rec_t r;
            sl_chunk_rec_at(c, j, &r);
            add_rec(s, &r, k, comma);
        }
    }
}

void sl_chunks_span(const sl_chunks_t *cs, unsigned kind, size_t a, size_t b, int commas, sl_piece_t *out)
{
    commas_init();
    span_t s = {0, 0, 0};
    if (a < b && commas) {
        add_range(cs, &s, kind, a, a + 1, 0);
        add_range(cs, &s, kind, a + 1, b, 1);
    } else {
        add_range(cs, &s, kind, a, b, 0);
    }
    *out = (sl_piece_t){NULL, (size_t)s.zlen, (size_t)s.plain, s.crc,
                        (uint32_t)crc32_combine_gen((z_off_t)s.plain)};
}

void sl_chunks_free(sl_chunks_t *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        chunk_free(&cs->c[i]);
    free(cs->c);
    free(cs->start);
    free(cs->gone);
    memset(cs, 0, sizeof(*cs));
}
