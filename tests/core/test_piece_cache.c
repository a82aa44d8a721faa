/*
 * The node's memory of exchange pieces (core/piece_cache.c): found by key, bounded by bytes with
 * the least recently used out first, an entry evicted while referenced stays readable until
 * released (the sanitizer build checks the frees), a blob larger than the bound is not kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/internal/piece_cache.h"

static void key_of(int i, unsigned char k[16])
{
    memset(k, 0, 16);
    /* spread like the real keys (hashes) and collide on purpose now and then */
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    if (i % 7 == 0)
        h = 42;
    memcpy(k, &h, 8);
    memcpy(k + 8, &i, sizeof(i));
}

static void test_get_put_evict(void **state)
{
    (void)state;
    sl_pcache_t *c = sl_pcache_new(64 * 1024);
    assert_non_null(c);
    char blob[1000];
    unsigned char k[16];
    const void *got;
    size_t len;
    for (int i = 0; i < 2000; i++) {
        memset(blob, i & 0xff, sizeof(blob));
        key_of(i, k);
        sl_pcache_put(c, k, blob, sizeof(blob));
        sl_pcache_put(c, k, blob, sizeof(blob)); /* twice: kept once */
    }
    sl_pcache_stats_t st;
    sl_pcache_stats(c, &st);
    assert_true(st.bytes <= 64 * 1024);
    assert_true(st.entries > 30 && st.entries < 64);
    /* the newest are there with their bytes, the oldest are gone */
    key_of(1999, k);
    sl_pc_entry_t *e = sl_pcache_get(c, k, &got, &len);
    assert_non_null(e);
    assert_int_equal(len, 1000);
    assert_int_equal(((const unsigned char *)got)[0], 1999 & 0xff);
    sl_pcache_release(c, e);
    key_of(0, k);
    assert_null(sl_pcache_get(c, k, &got, &len));
    /* recently used survives newer puts */
    key_of(1990, k);
    e = sl_pcache_get(c, k, &got, &len);
    assert_non_null(e);
    sl_pcache_release(c, e);
    for (int i = 2000; i < 2050; i++) {
        key_of(i, k);
        sl_pcache_put(c, k, blob, sizeof(blob));
        key_of(1990, k);
        e = sl_pcache_get(c, k, &got, &len);
        assert_non_null(e);
        sl_pcache_release(c, e);
    }
    /* an entry held across its eviction stays readable, and is freed by its release */
    key_of(2049, k);
    e = sl_pcache_get(c, k, &got, &len);
    assert_non_null(e);
    for (int i = 3000; i < 3100; i++) {
        unsigned char k2[16];
        key_of(i, k2);
        sl_pcache_put(c, k2, blob, sizeof(blob));
    }
    assert_null(sl_pcache_get(c, k, &(const void *){NULL}, &(size_t){0}));
    assert_int_equal(((const unsigned char *)got)[999], blob[999] & 0xff);
    sl_pcache_release(c, e);
    /* larger than the bound: not kept */
    char *big = calloc(1, 70 * 1024);
    assert_non_null(big);
    key_of(9999, k);
    sl_pcache_put(c, k, big, 70 * 1024);
    assert_null(sl_pcache_get(c, k, &got, &len));
    free(big);
    sl_pcache_stats(c, &st);
    assert_true(st.hits > 50 && st.misses >= 3);
    sl_pcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_evict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
