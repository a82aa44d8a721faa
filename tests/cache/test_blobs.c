/* cache/blobs.c and the entry drop of cache/proj.c against the real redis-server of the ctest
 * `services` fixture: blobs of pieces stored, read back byte for byte (binary, with NUL and CRLF),
 * missing ones reported as such, deleted, stored with their TTL; and a reader's drop removes an
 * entry only when it still holds exactly the version and content tag the reader saw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/cache/cache_helpers.h"

typedef struct got {
    int called;
    sl_cache_status_t status;
    size_t n;
    int present[8];
    char blob[8][64];
    size_t len[8];
    sl_proj_reply_t proj;
    long long integer;
} got_t;

static void on_blobs(const sl_blobs_reply_t *r, void *data)
{
    got_t *g = data;
    g->called++;
    g->status = r->status;
    g->n = r->n;
    for (size_t i = 0; i < r->n && i < 8; i++) {
        g->present[i] = r->blob[i] != NULL;
        if (r->blob[i] && r->len[i] <= sizeof(g->blob[i])) {
            memcpy(g->blob[i], r->blob[i], r->len[i]);
            g->len[i] = r->len[i];
        }
    }
}

static void on_got_proj(const sl_proj_reply_t *r, void *data)
{
    got_t *g = data;
    g->called++;
    g->proj = *r;
    g->proj.payload = NULL;
    g->proj.meta = NULL;
    g->proj.error = NULL;
}

static void on_got_gen(const sl_cache_reply_t *r, void *data)
{
    got_t *g = data;
    g->called++;
    g->status = r->status;
    g->integer = r->integer;
}

static void wait_got(uv_loop_t *loop, got_t *g)
{
    while (!g->called)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(g->called, 1);
}

/* A client of the services' Redis that trusts it (blob commands, like the projection's, wait for
 * that). */
static sl_cache_t *open_trusted(uv_loop_t *loop)
{
    sl_cache_t *c = open_service(loop);
    for (int i = 0; i < 5000 && !sl_cache_trusted(c); i++)
        pump(loop, 1);
    assert_true(sl_cache_trusted(c));
    return c;
}

static void key_of(unsigned char k[16], int seed)
{
    for (int i = 0; i < 16; i++)
        k[i] = (unsigned char)(seed * 37 + i * 11);
}

static void test_blobs(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_trusted(&loop);
    unsigned char keys[3][16];
    key_of(keys[0], 1);
    key_of(keys[1], 2); /* never stored */
    key_of(keys[2], 3);
    static const char b0[] = "piece\0with NUL\r\nand CRLF", b2[] = "\x1f\x8b second";

    got_t g = {0};
    sl_cache_blob_put(c, keys[0], b0, sizeof(b0) - 1, 604800, on_blobs, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.status, SL_CACHE_OK);
    memset(&g, 0, sizeof(g));
    sl_cache_blob_put(c, keys[2], b2, sizeof(b2) - 1, 604800, on_blobs, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.status, SL_CACHE_OK);

    /* read back: byte for byte, the missing one reported missing, in the order asked */
    memset(&g, 0, sizeof(g));
    sl_cache_blobs_get(c, 3, (const unsigned char(*)[16])keys, on_blobs, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.status, SL_CACHE_OK);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.present[0], 1);
    assert_int_equal(g.len[0], sizeof(b0) - 1);
    assert_memory_equal(g.blob[0], b0, sizeof(b0) - 1);
    assert_int_equal(g.present[1], 0);
    assert_int_equal(g.present[2], 1);
    assert_memory_equal(g.blob[2], b2, sizeof(b2) - 1);

    /* the name and the TTL: "<prefix>x:<32 hex>", about 7 days */
    char name[128], hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", keys[0][i]);
    snprintf(name, sizeof(name), "%sx:%s", prefix, hex);
    const char *argv[] = {"TTL", name};
    size_t lens[] = {3, strlen(name)};
    memset(&g, 0, sizeof(g));
    sl_cache_command(c, 2, argv, lens, on_got_gen, &g);
    wait_got(&loop, &g);
    assert_true(g.integer > 604000 && g.integer <= 604800);

    /* deleted: read as missing */
    memset(&g, 0, sizeof(g));
    sl_cache_blobs_del(c, 1, (const unsigned char(*)[16])keys, on_blobs, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.status, SL_CACHE_OK);
    memset(&g, 0, sizeof(g));
    sl_cache_blobs_get(c, 3, (const unsigned char(*)[16])keys, on_blobs, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.present[0], 0);
    assert_int_equal(g.present[2], 1);

    /* asking for none is an error, reported later (never inside the call) */
    memset(&g, 0, sizeof(g));
    sl_cache_blobs_get(c, 0, (const unsigned char(*)[16])keys, on_blobs, &g);
    assert_int_equal(g.called, 0);
    wait_got(&loop, &g);
    assert_int_not_equal(g.status, SL_CACHE_OK);
    close_cache(c, &loop);
}

static int publish_recipe(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t v, uint64_t tag)
{
    static const char recipe[] = "a recipe";
    sl_proj_content_t ct = {.meta = "m", .meta_len = 1, .nparts = 1, .part = {recipe}, .len = {8}};
    got_t g = {0};
    sl_cache_proj_publish(c, id, strlen(id), SL_PROJ_PUBLIC, v, tag, &ct, on_got_proj, &g);
    wait_got(loop, &g);
    assert_int_equal(g.proj.status, SL_CACHE_OK);
    return g.proj.stored;
}

static int drop(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t v, uint64_t tag)
{
    got_t g = {0};
    sl_cache_proj_drop(c, id, strlen(id), v, tag, on_got_proj, &g);
    wait_got(loop, &g);
    assert_int_equal(g.proj.status, SL_CACHE_OK);
    return g.proj.stored;
}

static sl_proj_kind_t kind(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t *version)
{
    got_t g = {0};
    sl_cache_proj_head(c, id, strlen(id), on_got_proj, &g);
    wait_got(loop, &g);
    *version = g.proj.version;
    return g.proj.kind;
}

static void test_drop(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_trusted(&loop);
    uint64_t v;
    assert_int_equal(publish_recipe(c, &loop, "d1", 5, 0xabc), 1);
    /* another tag, another version, a version that is a prefix of this one: kept */
    assert_int_equal(drop(c, &loop, "d1", 5, 0xabd), 0);
    assert_int_equal(drop(c, &loop, "d1", 4, 0xabc), 0);
    assert_int_equal(publish_recipe(c, &loop, "d2", 51, 0xabc), 1);
    assert_int_equal(drop(c, &loop, "d2", 5, 0xabc), 0);
    assert_int_equal(kind(c, &loop, "d2", &v), SL_PROJ_PUBLIC);
    assert_int_equal(kind(c, &loop, "d1", &v), SL_PROJ_PUBLIC);
    assert_int_equal(v, 5);
    /* exactly that entry: gone */
    assert_int_equal(drop(c, &loop, "d1", 5, 0xabc), 1);
    assert_int_equal(kind(c, &loop, "d1", &v), SL_PROJ_ABSENT);
    /* a MARK (an owner change in flight) is never dropped */
    got_t g = {0};
    sl_cache_proj_mark(c, "d3", 2, 9, 60000, on_got_proj, &g);
    wait_got(&loop, &g);
    assert_int_equal(g.proj.stored, 1);
    assert_int_equal(drop(c, &loop, "d3", 9, 0), 0);
    assert_int_equal(kind(c, &loop, "d3", &v), SL_PROJ_MARK);
    close_cache(c, &loop);
}

int main(void)
{
    snprintf(prefix, sizeof(prefix), "blobs%d.%ld:", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
