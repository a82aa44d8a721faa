/*
 * The chunk state of a long public session (core/chunks.c): thousands of random changes (hides,
 * shows, retitles, deletes, appends, several at once) applied to a state that goes through its
 * stored form (encode, the rows a change deletes and writes, read back) after every step. After
 * each, the state must equal the one made from scratch from the visible exchanges (the recipe's
 * chunks: counts, keys, sums, the row each is stored under), and spans of it (runs of pieces, with
 * and without commas) must have the length and CRC-32 of the bytes they stand for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>

#include "core/internal/chunks.h"

static uint32_t rng = 4242;
static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

#define POOL 900
#define TLEN 24

/* An exchange of the pool: its place, whether visible, and the plain bytes of each piece kind
 * (random, so the CRCs are real). */
typedef struct ex {
    int64_t pos, id;
    int visible;
    unsigned char key[16];
    char text[SL_PC_COUNT][TLEN];
    uint32_t len[SL_PC_COUNT], zlen[SL_PC_COUNT];
} ex_t;

static ex_t pool[POOL];
static size_t npool;

static void rekey(ex_t *e)
{
    for (int i = 0; i < 16; i++)
        e->key[i] = (unsigned char)rnd();
    for (int k = 0; k < SL_PC_COUNT; k++) {
        e->len[k] = rnd() % TLEN;
        for (uint32_t j = 0; j < e->len[k]; j++)
            e->text[k][j] = (char)rnd();
        e->zlen[k] = 5 + rnd() % 40;
    }
}

static void rec_of(const ex_t *e, sl_chunk_rec_t *r)
{
    r->position = e->pos;
    r->id = e->id;
    memcpy(r->key, e->key, 16);
    for (int k = 0; k < SL_PC_COUNT; k++) {
        r->plain[k] = e->len[k];
        r->zlen[k] = e->zlen[k];
        r->crc[k] = (uint32_t)crc32(0, (const Bytef *)e->text[k], e->len[k]);
        r->op[k] = (uint32_t)crc32_combine_gen(e->len[k]);
    }
}

/* the visible exchanges in order (the pool is kept in order of position) */
static size_t visible(sl_chunk_rec_t *out, const ex_t **which)
{
    size_t n = 0;
    for (size_t i = 0; i < npool; i++)
        if (pool[i].visible) {
            rec_of(&pool[i], &out[n]);
            which[n++] = &pool[i];
        }
    return n;
}

/* ---- the stored rows ---- */

typedef struct row {
    int64_t pos, id;
    unsigned char *data;
    size_t len;
} row_t;
static row_t table[POOL];
static size_t nrows;

static void put_row(int64_t pos, int64_t id, unsigned char *data, size_t len)
{
    for (size_t i = 0; i < nrows; i++)
        if (table[i].pos == pos && table[i].id == id) {
            free(table[i].data);
            table[i].data = data;
            table[i].len = len;
            return;
        }
    assert_true(nrows < POOL);
    table[nrows++] = (row_t){pos, id, data, len};
}

static void delete_row(int64_t pos, int64_t id)
{
    for (size_t i = 0; i < nrows; i++)
        if (table[i].pos == pos && table[i].id == id) {
            free(table[i].data);
            table[i] = table[--nrows];
            return;
        }
    fail_msg("a change deletes a row that is not there (%lld, %lld)", (long long)pos, (long long)id);
}

/* What sl_chunks_write does: the deletes, then the changed chunks (all: every one, after a clear). */
static void write_rows(const sl_chunks_t *cs, int all)
{
    if (all)
        while (nrows > 0)
            delete_row(table[0].pos, table[0].id);
    for (size_t i = 0; !all && i < cs->ngone; i++)
        delete_row(cs->gone[i].pos, cs->gone[i].id);
    for (size_t i = 0; i < cs->n; i++) {
        if (!cs->c[i].dirty && !all)
            continue;
        unsigned char *d;
        size_t len;
        assert_int_equal(sl_chunk_encode(&cs->c[i], &d, &len), 0);
        put_row(cs->c[i].row_pos, cs->c[i].row_id, d, len);
    }
}

static void read_rows(sl_chunks_t *cs)
{
    memset(cs, 0, sizeof(*cs));
    for (size_t i = 0; i < nrows; i++)
        assert_int_equal(sl_chunks_add_row(cs, table[i].pos, table[i].id, table[i].data, table[i].len), 0);
    assert_int_equal(sl_chunks_ready(cs), 0);
}

/* ---- checks ---- */

static void same_state(const sl_chunks_t *got, const sl_chunks_t *want)
{
    assert_int_equal(got->n, want->n);
    assert_int_equal(got->total, want->total);
    for (size_t i = 0; i < want->n; i++) {
        const sl_chunk_t *g = &got->c[i], *w = &want->c[i];
        assert_int_equal(g->n, w->n);
        assert_memory_equal(g->key, w->key, 16);
        assert_int_equal(g->row_pos, w->row_pos);
        assert_int_equal(g->row_id, w->row_id);
        for (int k = 0; k < SL_PC_COUNT; k++) {
            assert_int_equal(g->sum[k].plain, w->sum[k].plain);
            assert_int_equal(g->sum[k].zlen, w->sum[k].zlen);
            assert_int_equal(g->sum[k].crc, w->sum[k].crc);
            assert_int_equal(g->sum[k].crc_comma, w->sum[k].crc_comma);
        }
        for (size_t j = 0; j < w->n; j++) {
            sl_chunk_rec_t a, b;
            sl_chunk_rec_at(g, j, &a);
            sl_chunk_rec_at(w, j, &b);
            assert_memory_equal(&a, &b, sizeof(a));
        }
    }
}

/* A span against the bytes it stands for. */
static void check_span(const sl_chunks_t *cs, const ex_t *const *which, size_t a, size_t b, unsigned k,
                       int commas)
{
    static char buf[POOL * (TLEN + 1)];
    size_t n = 0;
    uint64_t zlen = 0;
    for (size_t i = a; i < b; i++) {
        if (commas && i > a) {
            buf[n++] = ',';
            zlen += 6;
        }
        memcpy(buf + n, which[i]->text[k], which[i]->len[k]);
        n += which[i]->len[k];
        zlen += which[i]->zlen[k];
    }
    sl_piece_t p;
    sl_chunks_span(cs, k, a, b, commas, &p);
    assert_int_equal(p.plain_len, n);
    assert_int_equal(p.zlen, zlen);
    assert_int_equal(p.crc, (uint32_t)crc32(0, (const Bytef *)buf, (uInt)n));
    assert_int_equal(p.op, (uint32_t)crc32_combine_gen((z_off_t)n));
}

static void test_random_changes(void **state)
{
    (void)state;
    static sl_chunk_rec_t recs[POOL], vis[POOL];
    static const ex_t *which[POOL];
    npool = 0;
    /* start: 300 exchanges, most visible */
    for (; npool < 300; npool++) {
        pool[npool] = (ex_t){.pos = (int64_t)npool + 1, .id = (int64_t)npool + 1, .visible = rnd() % 8 != 0};
        rekey(&pool[npool]);
    }
    sl_chunks_t cs;
    size_t n = visible(recs, which);
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(sl_chunks_from(&cs, recs, n), 0);
    write_rows(&cs, 1);
    sl_chunks_free(&cs);
    int64_t next = (int64_t)npool + 1;
    for (int step = 0; step < 2500; step++) {
        read_rows(&cs);
        int64_t touched[8], lo = 1, hi = 0;
        size_t nt = 0;
        if (rnd() % 6 == 0 && npool + 4 < POOL) {
            /* an append of 1-4 exchanges, some hidden */
            size_t k = 1 + rnd() % 4;
            lo = next;
            for (size_t j = 0; j < k; j++, npool++, next++) {
                pool[npool] = (ex_t){.pos = next, .id = next, .visible = rnd() % 5 != 0};
                rekey(&pool[npool]);
            }
            hi = next - 1;
        } else {
            /* 0-4 exchanges hidden, shown, retitled or deleted */
            size_t k = rnd() % 5;
            for (size_t j = 0; j < k; j++) {
                ex_t *e = &pool[rnd() % npool];
                int dup = 0;
                for (size_t t = 0; t < nt; t++)
                    dup |= touched[t] == e->id;
                if (dup)
                    continue;
                switch (rnd() % 4) {
                case 0:
                    e->visible = 0;
                    break;
                case 1:
                    e->visible = 1;
                    break;
                case 2:
                    rekey(e);
                    break;
                default:
                    e->visible = !e->visible;
                    rekey(e);
                    break;
                }
                size_t at = nt++;
                while (at > 0 && touched[at - 1] > e->id) {
                    touched[at] = touched[at - 1];
                    at--;
                }
                touched[at] = e->id;
            }
        }
        /* what the views show now of the touched exchanges, in order */
        size_t nv = 0;
        for (size_t i = 0; i < npool; i++) {
            int t = pool[i].id >= lo && pool[i].id <= hi;
            for (size_t j = 0; j < nt; j++)
                t |= touched[j] == pool[i].id;
            if (t && pool[i].visible)
                rec_of(&pool[i], &vis[nv++]);
        }
        assert_int_equal(sl_chunks_apply(&cs, touched, nt, lo, hi, vis, nv), 0);
        write_rows(&cs, 0);
        n = visible(recs, which);
        sl_chunks_t want = {0};
        assert_int_equal(sl_chunks_from(&want, recs, n), 0);
        same_state(&cs, &want);
        sl_chunks_t back;
        read_rows(&back); /* what the next change reads */
        same_state(&back, &want);
        for (int s = 0; s < 4 && n > 0; s++) {
            size_t a = rnd() % n, b = a + rnd() % (n - a + 1);
            check_span(&back, which, a, b, rnd() % SL_PC_COUNT, (int)(rnd() % 2));
        }
        check_span(&back, which, 0, n, SL_PC_EX_JSON, 1);
        sl_chunks_free(&back);
        sl_chunks_free(&want);
        sl_chunks_free(&cs);
    }
    while (nrows > 0)
        delete_row(table[0].pos, table[0].id);
}

/* Stored rows that do not make a state are refused (the change then builds from the rows). */
static void test_refuses_bad_rows(void **state)
{
    (void)state;
    static sl_chunk_rec_t recs[400];
    npool = 0;
    for (; npool < 400; npool++) {
        pool[npool] = (ex_t){.pos = (int64_t)npool + 1, .id = (int64_t)npool + 1, .visible = 1};
        rekey(&pool[npool]);
        rec_of(&pool[npool], &recs[npool]);
    }
    sl_chunks_t cs = {0};
    assert_int_equal(sl_chunks_from(&cs, recs, 400), 0);
    assert_true(cs.n > 1);
    unsigned char *d0, *d1;
    size_t l0, l1;
    assert_int_equal(sl_chunk_encode(&cs.c[0], &d0, &l0), 0);
    assert_int_equal(sl_chunk_encode(&cs.c[1], &d1, &l1), 0);
    sl_chunks_t r = {0};
    /* not a chunk */
    assert_int_equal(sl_chunks_add_row(&r, 1, 1, "SLK1", 4), -1);
    assert_int_equal(sl_chunks_add_row(&r, 1, 1, d0, l0 - 1), -1);
    /* a chunk made with another piece format (SL_PIECES_REV): its keys name other pieces */
    d0[8] ^= 1;
    assert_int_equal(sl_chunks_add_row(&r, cs.c[0].row_pos, cs.c[0].row_id, d0, l0), -1);
    d0[8] ^= 1;
    assert_int_equal(sl_chunks_add_row(&r, cs.c[0].row_pos, cs.c[0].row_id, d0, l0), 0);
    sl_chunks_free(&r);
    /* a row named after another exchange than its first */
    assert_int_equal(sl_chunks_add_row(&r, 2, 2, d0, l0), 0);
    assert_int_equal(sl_chunks_ready(&r), -1);
    sl_chunks_free(&r);
    /* the same chunk twice */
    assert_int_equal(sl_chunks_add_row(&r, cs.c[0].row_pos, cs.c[0].row_id, d0, l0), 0);
    assert_int_equal(sl_chunks_add_row(&r, cs.c[0].row_pos, cs.c[0].row_id, d0, l0), 0);
    assert_int_equal(sl_chunks_ready(&r), -1);
    sl_chunks_free(&r);
    /* rows come in any order: they are ordered by where they start */
    assert_int_equal(sl_chunks_add_row(&r, cs.c[1].row_pos, cs.c[1].row_id, d1, l1), 0);
    assert_int_equal(sl_chunks_add_row(&r, cs.c[0].row_pos, cs.c[0].row_id, d0, l0), 0);
    assert_int_equal(sl_chunks_ready(&r), 0);
    assert_int_equal(r.c[0].row_id, cs.c[0].row_id);
    sl_chunks_free(&r);
    free(d0);
    free(d1);
    sl_chunks_free(&cs);
}

/* No rows: a state of no exchanges (every one hidden), which an append then fills. */
static void test_empty_state(void **state)
{
    (void)state;
    sl_chunks_t cs = {0};
    assert_int_equal(sl_chunks_ready(&cs), 0);
    assert_int_equal(cs.total, 0);
    ex_t e = {.pos = 7, .id = 7, .visible = 1};
    rekey(&e);
    sl_chunk_rec_t r;
    rec_of(&e, &r);
    assert_int_equal(sl_chunks_apply(&cs, NULL, 0, 7, 7, &r, 1), 0);
    assert_int_equal(cs.total, 1);
    assert_int_equal(cs.n, 1);
    assert_int_equal(cs.ngone, 0);
    sl_chunks_t want = {0};
    assert_int_equal(sl_chunks_from(&want, &r, 1), 0);
    same_state(&cs, &want);
    /* and hidden again: no chunk, its row deleted */
    cs.c[0].stored = 1;
    assert_int_equal(sl_chunks_apply(&cs, NULL, 0, 7, 7, NULL, 0), 0);
    assert_int_equal(cs.total, 0);
    assert_int_equal(cs.n, 0);
    assert_int_equal(cs.ngone, 1);
    sl_chunks_free(&want);
    sl_chunks_free(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_changes),
        cmocka_unit_test(test_refuses_bad_rows),
        cmocka_unit_test(test_empty_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
