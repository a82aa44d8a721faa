/*
 * The gzip member assembled from glue and pieces (core/pieces.c): for thousands of random
 * documents (runs of glue of every length, including none and the stored-block boundary, and
 * pieces of random text, empty ones included), the member inflates to exactly the glue and the
 * pieces' plain bytes in order, with the right CRC-32 and length in its trailer; and the pieces of
 * an exchange read back from their blob and inflate to what they say.
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

#include "core/internal/pieces.h"

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

/* random text: a few words from a small alphabet (compressible), or bytes of anything */
static size_t rand_text(char *out, size_t max)
{
    size_t n = rnd() % (max + 1);
    int kind = (int)(rnd() % 3);
    for (size_t i = 0; i < n; i++)
        out[i] = kind == 0 ? "ab <>&\"\n"[rnd() % 8] : kind == 1 ? (char)(rnd() % 256) : (char)('a' + i % 7);
    return n;
}

/* A piece made from plain bytes, as sl_pieces_build makes one (fresh stream, full flush). */
static void make_piece(z_stream *z, const char *p, size_t n, sl_piece_t *out, sl_buf_t *store)
{
    assert_int_equal(deflateReset(z), Z_OK);
    size_t cap = deflateBound(z, n) + 64;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    z->next_out = buf;
    z->avail_out = (uInt)cap;
    assert_int_equal(deflate(z, Z_FULL_FLUSH), Z_OK);
    assert_int_equal(z->avail_in, 0);
    out->z = buf;
    out->zlen = cap - z->avail_out;
    out->plain_len = n;
    out->crc = (uint32_t)crc32(0, (const Bytef *)p, (uInt)n);
    out->op = (uint32_t)crc32_combine_gen((z_off_t)n);
    (void)store;
}

static void test_random_documents(void **state)
{
    (void)state;
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    char *text = malloc(1 << 16);
    assert_non_null(text);
    for (int doc = 0; doc < 3000; doc++) {
        sl_zdoc_t d;
        sl_zdoc_init(&d);
        sl_buf_t want = {0};
        sl_piece_t pieces[40];
        int np = 0, parts = (int)(rnd() % 40);
        for (int i = 0; i < parts; i++) {
            size_t n = rand_text(text, rnd() % 4 == 0 ? 20000 : 130);
            if (rnd() % 2) {
                sl_zdoc_glue(&d, text, n);
            } else {
                make_piece(&z, text, n, &pieces[np], NULL);
                sl_zdoc_piece(&d, &pieces[np++]);
            }
            sl_buf_add(&want, text, n);
        }
        char *gz;
        size_t gzlen, plain;
        uint32_t crc;
        assert_int_equal(sl_zdoc_finish(&d, &gz, &gzlen, &crc, &plain), 0);
        assert_int_equal(plain, want.len);
        assert_int_equal(crc, (uint32_t)crc32(0, (const Bytef *)want.p, (uInt)want.len));
        /* inflate as a gzip member: exactly the expected bytes, trailer checked by zlib */
        z_stream in;
        memset(&in, 0, sizeof(in));
        assert_int_equal(inflateInit2(&in, 15 + 16), Z_OK);
        char *got = malloc(want.len + 1);
        assert_non_null(got);
        in.next_in = (Bytef *)gz;
        in.avail_in = (uInt)gzlen;
        in.next_out = (Bytef *)got;
        in.avail_out = (uInt)want.len + 1;
        assert_int_equal(inflate(&in, Z_FINISH), Z_STREAM_END);
        assert_int_equal(in.total_out, want.len);
        assert_int_equal(in.avail_in, 0);
        assert_memory_equal(got, want.p ? want.p : "", want.len);
        inflateEnd(&in);
        free(got);
        free(gz);
        free(want.p);
        for (int i = 0; i < np; i++)
            free((void *)pieces[i].z);
    }
    free(text);
    deflateEnd(&z);
}

/* inflates one raw-deflate piece (with a final empty block appended) */
static void check_piece(const sl_piece_t *p, const char *must_contain)
{
    unsigned char *raw = malloc(p->zlen + 2);
    assert_non_null(raw);
    memcpy(raw, p->z, p->zlen);
    raw[p->zlen] = 0x03; /* final, fixed-Huffman, end of block */
    raw[p->zlen + 1] = 0x00;
    z_stream in;
    memset(&in, 0, sizeof(in));
    assert_int_equal(inflateInit2(&in, -15), Z_OK);
    char *out = malloc(p->plain_len + 1);
    assert_non_null(out);
    in.next_in = raw;
    in.avail_in = (uInt)p->zlen + 2;
    in.next_out = (Bytef *)out;
    in.avail_out = (uInt)p->plain_len + 1;
    assert_int_equal(inflate(&in, Z_FINISH), Z_STREAM_END);
    assert_int_equal(in.total_out, p->plain_len);
    assert_int_equal(p->crc, (uint32_t)crc32(0, (const Bytef *)out, (uInt)p->plain_len));
    out[p->plain_len] = '\0';
    if (strstr(out, must_contain) == NULL)
        fail_msg("piece [%s] lacks [%s]", out, must_contain);
    inflateEnd(&in);
    free(out);
    free(raw);
}

static void test_exchange_pieces(void **state)
{
    (void)state;
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    const char *title = "A <title> & \"quotes\"", *prompt = "  Fix   the\n\tbug **now**", *resp = "Done\x01.";
    sl_piece_src_t src = {.id = 42,
                          .title = title,
                          .title_len = strlen(title),
                          .prompt = prompt,
                          .prompt_len = strlen(prompt),
                          .response = resp,
                          .response_len = strlen(resp),
                          .created_at = "2026-01-05T07:01:00Z",
                          .created_len = 20};
    unsigned char *blob;
    size_t len;
    assert_int_equal(sl_pieces_build(&z, &src, &blob, &len), 0);
    sl_pieces_t pc;
    assert_int_equal(sl_pieces_read(blob, len, &pc), 0);
    assert_int_equal(pc.desc_len, strlen("Fix the bug **now**"));
    assert_memory_equal(pc.desc, "Fix the bug **now**", pc.desc_len);
    assert_int_equal(pc.title_len, strlen(title));
    assert_memory_equal(pc.title, title, pc.title_len);
    check_piece(&pc.p[SL_PC_TOC_HTML],
                "<li><a href=\"#exchange-42\">A &lt;title&gt; &amp; &quot;quotes&quot;</a></li>");
    check_piece(&pc.p[SL_PC_ART_HTML], "<article id=\"exchange-42\">");
    check_piece(&pc.p[SL_PC_TOC_JSON], "{\"id\":42,\"title\":\"A <title> & \\\"quotes\\\"\"}");
    check_piece(&pc.p[SL_PC_EX_JSON],
                "\"response\":\"Done\\u0001.\",\"created_at\":\"2026-01-05T07:01:00Z\"}");
    check_piece(&pc.p[SL_PC_MD], "<!-- exchange 42, 2026-01-05T07:01:00Z -->");
    /* a blob cut short, or with bytes after it, is not one */
    assert_int_equal(sl_pieces_read(blob, len - 1, &pc), -1);
    assert_int_equal(sl_pieces_read(blob, 5, &pc), -1);
    free(blob);
    deflateEnd(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_documents),
        cmocka_unit_test(test_exchange_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
