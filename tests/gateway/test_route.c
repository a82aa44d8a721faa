/* Routing without h2o (gateway/route.c): classification, share ids, path segments, compat paths,
 * and the traversal attempts a hostile client would make. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gateway/internal/route.h"

static sl_route_t classify(const char *path)
{
    sl_route_t r;
    sl_route_classify(path, strlen(path), &r);
    return r;
}

static void test_classify(void **state)
{
    (void)state;
    sl_route_t r = classify("/api/v1/share/abc-1?x=1");
    assert_int_equal(r.kind, SL_ROUTE_SHARE_JSON);
    assert_int_equal(r.rest_len, 5);
    assert_memory_equal(r.rest, "abc-1", 5);
    r = classify("/share/abc");
    assert_int_equal(r.kind, SL_ROUTE_SHARE_HTML);
    assert_int_equal(r.rest_len, 3);
    r = classify("/share/");
    assert_int_equal(r.kind, SL_ROUTE_SHARE_HTML);
    assert_int_equal(r.rest_len, 0);
    r = classify("/share/abc-1/events?x");
    assert_int_equal(r.kind, SL_ROUTE_SHARE_EVENTS);
    assert_int_equal(r.rest_len, 5);
    assert_memory_equal(r.rest, "abc-1", 5);
    r = classify("/share//events"); /* no id: the page route, whose id is invalid (404) */
    assert_int_equal(r.kind, SL_ROUTE_SHARE_HTML);
    r = classify("/share/a/b/events"); /* "a/b" is no id: the events route answers the 404 */
    assert_int_equal(r.kind, SL_ROUTE_SHARE_EVENTS);
    assert_int_equal(r.rest_len, 3);
    assert_int_equal(classify("/share/abc/eventsx").kind, SL_ROUTE_SHARE_HTML);
    r = classify("/rpc/shareline.v1.Sessions/GetSession");
    assert_int_equal(r.kind, SL_ROUTE_RPC);
    assert_int_equal(r.rest_len, strlen("shareline.v1.Sessions/GetSession"));
    r = classify("/api/v1/projects");
    assert_int_equal(r.kind, SL_ROUTE_COMPAT);
    assert_int_equal(r.rest_len, 0);
    r = classify("/api/v1/projects/p/sessions");
    assert_int_equal(r.kind, SL_ROUTE_COMPAT);
    assert_int_equal(r.kind, classify("/api/v1/projects?q").kind);
    assert_int_equal(classify("/api/v1/projectsX").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/healthz").kind, SL_ROUTE_HEALTH);
    assert_int_equal(classify("/healthz?x").kind, SL_ROUTE_HEALTH);
    assert_int_equal(classify("/healthzz").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/readyz").kind, SL_ROUTE_READY);
    assert_int_equal(classify("/metrics").kind, SL_ROUTE_METRICS);
    r = classify("/console");
    assert_int_equal(r.kind, SL_ROUTE_CONSOLE);
    assert_int_equal(r.rest_len, 0);
    r = classify("/console/preview/abc?x=1");
    assert_int_equal(r.kind, SL_ROUTE_CONSOLE);
    assert_int_equal(r.rest_len, strlen("/preview/abc"));
    assert_int_equal(classify("/consoles").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/Console/").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/../share/x").kind, SL_ROUTE_OTHER);
    assert_int_equal(classify("/SHARE/x").kind, SL_ROUTE_OTHER);
}

static void test_share_ids(void **state)
{
    (void)state;
    assert_true(sl_route_share_id_valid("a", 1));
    assert_true(sl_route_share_id_valid("b5c8e0d2-1f3a-4c4e-9d2b-7e0f1a2b3c4d", 36));
    assert_true(sl_route_share_id_valid("A_z-09", 6));
    char id[66];
    memset(id, 'a', sizeof(id));
    assert_true(sl_route_share_id_valid(id, 64));
    assert_false(sl_route_share_id_valid(id, 65));
    assert_false(sl_route_share_id_valid("", 0));
    static const char *const bad[] = {"..",   "../x", "a/b",     "a%2fb",   "%2e%2e", "a b",
                                      "a\\b", "a.b",  "é",       "a?b",     "a#b",    "~root",
                                      "a;b",  "a:b",  "....//x", "..%5c..", "%00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(sl_route_share_id_valid(bad[i], strlen(bad[i])));
    assert_false(sl_route_share_id_valid("a\0b", 3));
    /* the share routes hand the rest of the path over, and only a valid id passes */
    sl_route_t r = classify("/share/../../etc/passwd");
    assert_false(sl_route_share_id_valid(r.rest, r.rest_len));
    r = classify("/api/v1/share/..%2F..%2Fetc%2Fpasswd");
    assert_false(sl_route_share_id_valid(r.rest, r.rest_len));
    r = classify("/api/v1/share/ok/extra");
    assert_false(sl_route_share_id_valid(r.rest, r.rest_len));
}

static void test_segment(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(sl_route_segment("abc", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(sl_route_segment("a%20b", 5, out, sizeof(out)), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(sl_route_segment("%2e%2E", 6, out, sizeof(out)), 2);
    assert_string_equal(out, ".."); /* decoded, but only ever used as a database value */
    assert_int_equal(sl_route_segment("a%", 2, out, sizeof(out)), 2); /* a lone % stays */
    assert_string_equal(out, "a%");
    assert_int_equal(sl_route_segment("a%4", 3, out, sizeof(out)), 3);
    assert_int_equal(sl_route_segment("%zz", 3, out, sizeof(out)), 3);
    assert_int_equal(sl_route_segment("%00", 3, out, sizeof(out)), -1);   /* NUL */
    assert_int_equal(sl_route_segment("a%0a", 4, out, sizeof(out)), -1);  /* newline */
    assert_int_equal(sl_route_segment("%7f", 3, out, sizeof(out)), -1);   /* DEL */
    assert_int_equal(sl_route_segment("%c3%a9", 6, out, sizeof(out)), 2); /* é */
    assert_int_equal(sl_route_segment("%c3", 3, out, sizeof(out)), -1);   /* broken UTF-8 */
    assert_int_equal(sl_route_segment("%ff", 3, out, sizeof(out)), -1);
    assert_int_equal(sl_route_segment("", 0, out, sizeof(out)), -1);
    assert_int_equal(sl_route_segment("0123456789abcdef", 16, out, sizeof(out)), -1); /* too long */
    assert_int_equal(sl_route_segment("0123456789abcde", 15, out, sizeof(out)), 15);
    assert_int_equal(sl_route_segment("x", 1, out, 0), -1);
}

static void test_compat(void **state)
{
    (void)state;
    char p[201], s[65];
#define COMPAT(path) sl_route_compat(path, strlen(path), p, sizeof(p), s, sizeof(s))
    assert_int_equal(COMPAT(""), SL_COMPAT_PROJECTS);
    assert_int_equal(COMPAT("/"), SL_COMPAT_PROJECTS);
    assert_int_equal(COMPAT("/proj/sessions"), SL_COMPAT_SESSIONS);
    assert_string_equal(p, "proj");
    assert_int_equal(COMPAT("/proj/sessions/"), SL_COMPAT_SESSIONS);
    assert_int_equal(COMPAT("/pr%20oj/sessions/sizes"), SL_COMPAT_SIZES);
    assert_string_equal(p, "pr oj");
    assert_int_equal(COMPAT("/proj/sessions/abc-1"), SL_COMPAT_SESSION);
    assert_string_equal(s, "abc-1");
    assert_int_equal(COMPAT("/proj"), SL_COMPAT_NONE);
    assert_int_equal(COMPAT("/proj/"), SL_COMPAT_NONE);
    assert_int_equal(COMPAT("/proj/other"), SL_COMPAT_NONE);
    assert_int_equal(COMPAT("//sessions"), SL_COMPAT_NONE);    /* empty project */
    assert_int_equal(COMPAT("/%00/sessions"), SL_COMPAT_NONE); /* NUL */
    assert_int_equal(COMPAT("/p/sessions/%00"), SL_COMPAT_NONE);
    assert_int_equal(COMPAT("/p/sessionsX"), SL_COMPAT_NONE);
    assert_int_equal(COMPAT("x/sessions"), SL_COMPAT_NONE);
    /* traversal-looking segments are plain values (checked as ids by the core: 400/404) */
    assert_int_equal(COMPAT("/%2e%2e/sessions/x"), SL_COMPAT_SESSION);
    assert_string_equal(p, "..");
    assert_int_equal(COMPAT("/p/sessions/..%2F..%2Fetc%2Fpasswd"), SL_COMPAT_SESSION);
    assert_string_equal(s, "../../etc/passwd");
#undef COMPAT
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_classify), cmocka_unit_test(test_share_ids),
                                       cmocka_unit_test(test_segment), cmocka_unit_test(test_compat)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
