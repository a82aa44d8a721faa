/* gateway/copies.c: the node's copies of served representations — budget, S3-FIFO admission and
 * eviction (a scan of one-hit ids does not flush the hot set), one copy per representation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/internal/gateway.h"

/* A GetShare "found" answer of one representation, `size` bytes of body. */
static size_t answer(char *out, size_t cap, uint64_t version, sl_rpc_rep_t rep, size_t size)
{
    static char body[8192];
    memset(body, 'x', sizeof(body));
    char etag[32];
    int n = snprintf(etag, sizeof(etag), "v%llu-abc", (unsigned long long)version);
    sl_rpc_share_t s = {.found = 1, .version = version, .etag = {etag, (size_t)n}};
    s.rep[rep] = (sl_rpc_bytes_t){body, size};
    size_t len = sl_rpc_share_encode(out, cap, &s);
    assert_true(len > 0);
    return len;
}

static sl_copy_t *put(struct sl_copies *c, const char *id, uint64_t v, sl_rpc_rep_t rep, size_t size)
{
    char buf[9000];
    size_t len = answer(buf, sizeof(buf), v, rep, size);
    return sl_copies_put(c, id, strlen(id), rep, buf, len);
}

static sl_copy_t *find(struct sl_copies *c, const char *id, sl_rpc_rep_t rep)
{
    return sl_copies_find(c, id, strlen(id), rep);
}

static void test_one_copy_per_representation(void **state)
{
    (void)state;
    struct sl_copies *c;
    assert_int_equal(sl_copies_open(&c, 1 << 20), 0);
    assert_non_null(put(c, "s1", 3, SL_REP_JSON, 100));
    assert_null(find(c, "s1", SL_REP_HTML)); /* only what was served is kept */
    assert_non_null(put(c, "s1", 3, SL_REP_HTML_GZ, 50));
    sl_copy_t *e = find(c, "s1", SL_REP_JSON);
    assert_non_null(e);
    assert_int_equal(sl_copy_version(e), 3);
    const char *body, *tag;
    size_t len, taglen;
    sl_copy_rep(e, &body, &len, &tag, &taglen);
    assert_int_equal(len, 100);
    assert_memory_equal(tag, "\"v3-abc-j\"", taglen);
    /* a new version replaces the old copy of that representation */
    assert_non_null(put(c, "s1", 4, SL_REP_JSON, 120));
    assert_int_equal(sl_copy_version(find(c, "s1", SL_REP_JSON)), 4);
    assert_int_equal(sl_copy_version(find(c, "s1", SL_REP_HTML_GZ)), 3);
    /* an answer of another representation than the key says is not kept */
    char buf[9000];
    size_t n = answer(buf, sizeof(buf), 5, SL_REP_MD, 10);
    assert_null(sl_copies_put(c, "s2", 2, SL_REP_JSON, buf, n));
    assert_null(find(c, "s2", SL_REP_JSON));
    sl_copies_close(c);
}

static void test_budget_and_scan_resistance(void **state)
{
    (void)state;
    const size_t budget = 200 * 1024, doc = 2000;
    struct sl_copies *c;
    assert_int_equal(sl_copies_open(&c, budget), 0);
    char id[32];
    /* a hot set of 20 sessions, each read several times */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "hot-%d", i);
        assert_non_null(put(c, id, 1, SL_REP_JSON, doc));
    }
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 20; i++) {
            snprintf(id, sizeof(id), "hot-%d", i);
            sl_copy_t *e = find(c, id, SL_REP_JSON);
            assert_non_null(e);
            sl_copies_touch(c, e);
        }
    /* a crawler reads 5,000 other sessions once each, with the hot set still read now and then */
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "crawl-%d", i);
        put(c, id, 1, SL_REP_JSON, doc);
        sl_copies_stats_t st;
        sl_copies_stats(c, &st);
        assert_true(st.bytes <= budget); /* never over the budget */
        if (i % 100 == 0)
            for (int h = 0; h < 20; h++) {
                snprintf(id, sizeof(id), "hot-%d", h);
                sl_copy_t *e = find(c, id, SL_REP_JSON);
                if (e)
                    sl_copies_touch(c, e);
            }
    }
    int kept = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "hot-%d", i);
        kept += find(c, id, SL_REP_JSON) != NULL;
    }
    assert_int_equal(kept, 20); /* an LRU of this size keeps none of them */
    sl_copies_stats_t st;
    sl_copies_stats(c, &st);
    assert_true(st.evicted > 4000);
    assert_true(st.entries < 120);
    sl_copies_close(c);
}

static void test_seen_again_is_admitted(void **state)
{
    (void)state;
    struct sl_copies *c;
    assert_int_equal(sl_copies_open(&c, 100 * 1024), 0);
    char id[32];
    for (int i = 0; i < 200; i++) { /* one pass: each leaves the small queue unread */
        snprintf(id, sizeof(id), "s-%d", i);
        put(c, id, 1, SL_REP_JSON, 1000);
    }
    sl_copies_stats_t before;
    sl_copies_stats(c, &before);
    /* the first ids come back soon after they left: straight to the main queue */
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "s-%d", i);
        put(c, id, 1, SL_REP_JSON, 1000);
    }
    sl_copies_stats_t after;
    sl_copies_stats(c, &after);
    assert_true(after.main_bytes > before.main_bytes);
    sl_copies_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_copy_per_representation),
        cmocka_unit_test(test_budget_and_scan_resistance),
        cmocka_unit_test(test_seen_again_is_admitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
