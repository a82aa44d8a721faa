/* The bounded msgpack checker, the JSON mapping and UTF-8 validation (pure logic). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include <msgpack.h>

#include "rpc/rpc.h"

/* msgpack byte literals are laid out by message structure, one message a line: */
/* clang-format off */

static int check(const char *buf, size_t len)
{
    char err[256];
    return sl_rpc_check_msgpack(buf, len, NULL, err, sizeof(err));
}

#define CHECK_LIT(s) check(s, sizeof(s) - 1)

static void test_valid_map(void **state)
{
    /* {"a": 1, "b": [true, nil, "x"], "c": {"d": -1}} */
    assert_int_equal(CHECK_LIT("\x83\xa1" "a" "\x01\xa1" "b" "\x93\xc3\xc0\xa1" "x" "\xa1" "c" "\x81\xa1" "d" "\xff"), 0);
    assert_int_equal(CHECK_LIT("\x80"), 0);
}

static void test_rejects_non_map_and_trailing(void **state)
{
    char err[256];
    assert_int_equal(CHECK_LIT("\x91\x01"), -1);                    /* top-level array */
    assert_int_equal(CHECK_LIT("\xa3" "abc"), -1);                  /* top-level string */
    assert_int_equal(sl_rpc_check_msgpack("\x80\x01", 2, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "trailing"));
    assert_int_equal(check("", 0), -1);
}

static void test_rejects_lying_counts(void **state)
{
    char err[256];
    /* {"a": array32 of 4294967295 elements} in 9 bytes: must be refused without allocating. */
    const char bomb[] = "\x81\xa1" "a" "\xdd\xff\xff\xff\xff";
    assert_int_equal(sl_rpc_check_msgpack(bomb, sizeof(bomb) - 1, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exceeds"));
    /* map32 claiming 2^31 pairs */
    assert_int_equal(CHECK_LIT("\xdf\x80\x00\x00\x00"), -1);
    /* str32 claiming 1 GiB */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xdb\x40\x00\x00\x00" "xx"), -1);
    /* bin16 claiming 300 bytes with 2 present */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xc5\x01\x2c" "xx"), -1);
    /* truncated header of uint32 */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xce\x00"), -1);
}

static void test_rejects_bad_types(void **state)
{
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xc1"), -1);              /* never-used byte */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xd4\x01\x02"), -1);      /* fixext 1 */
    assert_int_equal(CHECK_LIT("\x81\x01\x02"), -1);                     /* integer key */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xa2\xc3\x28"), -1);      /* invalid UTF-8 in str */
    assert_int_equal(CHECK_LIT("\x81\xa1" "a" "\xc4\x02\xc3\x28"), 0);   /* the same bytes as bin: fine */
}

static void test_depth_and_elements(void **state)
{
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    lim.max_depth = 3;
    char err[256];
    /* {"a": [[1]]} is depth 3: ok; {"a": [[[1]]]} is 4: refused */
    assert_int_equal(sl_rpc_check_msgpack("\x81\xa1" "a" "\x91\x91\x01", 6, &lim, err, sizeof(err)), 0);
    assert_int_equal(sl_rpc_check_msgpack("\x81\xa1" "a" "\x91\x91\x91\x01", 7, &lim, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "deep"));
    sl_rpc_limits_default(&lim);
    lim.max_elements = 4;
    /* map + key + array + 3 ints = 6 elements */
    assert_int_equal(sl_rpc_check_msgpack("\x81\xa1" "a" "\x93\x01\x02\x03", 7, &lim, err, sizeof(err)), -1);
    lim.max_body = 3;
    assert_int_equal(sl_rpc_check_msgpack("\x81\xa1" "a" "\x01", 4, &lim, err, sizeof(err)), -1);
}

static void test_utf8(void **state)
{
    assert_true(sl_rpc_utf8_valid("plain", 5));
    assert_true(sl_rpc_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_false(sl_rpc_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(sl_rpc_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    assert_false(sl_rpc_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(sl_rpc_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(sl_rpc_utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(sl_rpc_utf8_valid("\x80", 1));
}

static void test_json_to_msgpack(void **state)
{
    char err[256];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    const char *js = "{\"a\":1,\"b\":[true,null,\"x\"],\"c\":{\"d\":-1}}";
    assert_int_equal(sl_rpc_json_to_msgpack(js, strlen(js), NULL, &sb, err, sizeof(err)), 0);
    const char want[] = "\x83\xa1" "a" "\x01\xa1" "b" "\x93\xc3\xc0\xa1" "x" "\xa1" "c" "\x81\xa1" "d" "\xff";
    assert_int_equal(sb.size, sizeof(want) - 1);
    assert_memory_equal(sb.data, want, sb.size);
    assert_int_equal(check(sb.data, sb.size), 0);

    /* and back */
    char *out;
    size_t outlen;
    assert_int_equal(sl_rpc_msgpack_to_json(sb.data, sb.size, &out, &outlen), 0);
    assert_string_equal(out, js);
    free(out);
    msgpack_sbuffer_destroy(&sb);
}

static void test_json_rejects(void **state)
{
    char err[256];
    msgpack_sbuffer sb;
    const char *bad[] = {"{", "[1,2]", "\"s\"", "{\"a\":1,\"a\":2}", "{\"a\":\"\xc3\x28\"}", "{\"a\":1} x", "",
                         "{\"a\":\"\\u0000\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msgpack_sbuffer_init(&sb);
        assert_int_equal(sl_rpc_json_to_msgpack(bad[i], strlen(bad[i]), NULL, &sb, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        msgpack_sbuffer_destroy(&sb);
    }
    /* depth */
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    lim.max_depth = 2;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(sl_rpc_json_to_msgpack("{\"a\":[[1]]}", 11, &lim, &sb, err, sizeof(err)), -1);
    msgpack_sbuffer_destroy(&sb);
}

static void test_bin_to_json_base64(void **state)
{
    /* {"b": bin "\xff\x00\x01"} -> base64 "/wAB" */
    char *out;
    size_t outlen;
    assert_int_equal(sl_rpc_msgpack_to_json("\x81\xa1" "b" "\xc4\x03\xff\x00\x01", 8, &out, &outlen), 0);
    assert_string_equal(out, "{\"b\":\"/wAB\"}");
    free(out);
}

static void test_codes(void **state)
{
    struct { sl_rpc_code_t c; const char *name; int http; } want[] = {
        {SL_RPC_INVALID_ARGUMENT, "invalid_argument", 400}, {SL_RPC_UNAUTHENTICATED, "unauthenticated", 401},
        {SL_RPC_PERMISSION_DENIED, "permission_denied", 403}, {SL_RPC_NOT_FOUND, "not_found", 404},
        {SL_RPC_ALREADY_EXISTS, "already_exists", 409}, {SL_RPC_FAILED_PRECONDITION, "failed_precondition", 412},
        {SL_RPC_RESOURCE_EXHAUSTED, "resource_exhausted", 429}, {SL_RPC_PAYLOAD_TOO_LARGE, "resource_exhausted", 413},
        {SL_RPC_UNAVAILABLE, "unavailable", 503}, {SL_RPC_INTERNAL, "internal", 500},
        {SL_RPC_UNIMPLEMENTED, "unimplemented", 501},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_string_equal(sl_rpc_code_name(want[i].c), want[i].name);
        assert_int_equal(sl_rpc_code_http_status(want[i].c), want[i].http);
    }
}

/* clang-format on */

/* GetShare: one representation asked for, one answered. */
static void test_share_contract(void **state)
{
    (void)state;
    char buf[SL_RPC_SHARE_SMALL_MAX];
    size_t n = sl_rpc_share_request_encode(buf, sizeof(buf), "abc", 3, SL_REP_HTML_GZ, 7, 99);
    assert_true(n > 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, buf, n, NULL), MSGPACK_UNPACK_SUCCESS);
    const char *id;
    size_t idlen;
    sl_rpc_rep_t rep;
    uint64_t hv, ht;
    assert_int_equal(sl_rpc_share_request_decode(&u.data, &id, &idlen, &rep, &hv, &ht), 0);
    assert_int_equal(idlen, 3);
    assert_int_equal(rep, SL_REP_HTML_GZ);
    assert_int_equal(hv, 7);
    assert_int_equal(ht, 99);
    msgpack_unpacked_destroy(&u);
    /* a representation that does not exist is refused */
    static const char bad_rep[] = "\x82\xaa"
                                  "session_id"
                                  "\xa3"
                                  "abc"
                                  "\xa3"
                                  "rep"
                                  "\x06";
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, bad_rep, sizeof(bad_rep) - 1, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(sl_rpc_share_request_decode(&u.data, &id, &idlen, &rep, &hv, &ht), -1);
    msgpack_unpacked_destroy(&u);

    /* a found answer carries exactly one representation */
    char out[512];
    sl_rpc_share_t s = {.found = 1, .version = 5, .etag = {"v5-ab", 5}};
    s.rep[SL_REP_MD] = (sl_rpc_bytes_t){"# md", 4};
    n = sl_rpc_share_encode(out, sizeof(out), &s);
    assert_true(n > 0);
    sl_rpc_share_t d;
    assert_int_equal(sl_rpc_share_decode(out, n, &d), 0);
    assert_int_equal(d.which, SL_REP_MD);
    assert_int_equal(d.rep[SL_REP_MD].len, 4);
    assert_memory_equal(d.rep[SL_REP_MD].ptr, "# md", 4);
    assert_int_equal(d.version, 5);
    s.rep[SL_REP_JSON] = (sl_rpc_bytes_t){"{}", 2};
    n = sl_rpc_share_encode(out, sizeof(out), &s);
    assert_int_equal(sl_rpc_share_decode(out, n, &d), -1); /* two */
    memset(s.rep, 0, sizeof(s.rep));
    n = sl_rpc_share_encode(out, sizeof(out), &s);
    assert_int_equal(sl_rpc_share_decode(out, n, &d), -1); /* none */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_map),
        cmocka_unit_test(test_rejects_non_map_and_trailing),
        cmocka_unit_test(test_rejects_lying_counts),
        cmocka_unit_test(test_rejects_bad_types),
        cmocka_unit_test(test_depth_and_elements),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_to_msgpack),
        cmocka_unit_test(test_json_rejects),
        cmocka_unit_test(test_bin_to_json_base64),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_share_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
