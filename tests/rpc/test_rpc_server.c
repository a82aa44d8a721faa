/* The method table: dispatch, answers, errors, field readers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include "rpc/rpc.h"

typedef struct answer {
    int calls;
    sl_rpc_code_t code;
    char *json;
} answer_t;

static void on_answer(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    answer_t *a = data;
    a->calls++;
    a->code = code;
    size_t n;
    free(a->json);
    assert_int_equal(sl_rpc_msgpack_to_json(body, len, &a->json, &n), 0);
}

/* Echo: answers {"got": <name>, "auth": <token or "">} or fails when "name" is missing. */
static void echo(sl_rpc_call_t *call, void *data)
{
    (*(int *)data)++;
    char msg[128];
    const char *name;
    size_t len;
    if (sl_rpc_get_str(sl_rpc_request(call), "name", 1, 10, &name, &len, msg, sizeof(msg)) != 1) {
        sl_rpc_fail(call, SL_RPC_INVALID_ARGUMENT, "%s", msg);
        return;
    }
    size_t alen;
    const char *auth = sl_rpc_auth(call, &alen);
    msgpack_packer *pk = sl_rpc_packer(call);
    msgpack_pack_map(pk, 2);
    sl_rpc_pack_str(pk, "got");
    sl_rpc_pack_strn(pk, name, len);
    sl_rpc_pack_str(pk, "auth");
    sl_rpc_pack_strn(pk, auth ? auth : "", auth ? alen : 0);
    sl_rpc_reply(call);
}

static void test_dispatch(void **state)
{
    int handled = 0;
    sl_rpc_server_t *srv = sl_rpc_server_new(NULL);
    assert_int_equal(sl_rpc_register(srv, "t.v1.S/Echo", echo, &handled), 0);
    answer_t a = {0};
    const char req[] = "\x81\xa4" "name" "\xa3" "bob";
    sl_rpc_call(srv, "t.v1.S/Echo", 11, "tok", 3, req, sizeof(req) - 1, on_answer, &a);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.code, SL_RPC_OK);
    assert_string_equal(a.json, "{\"got\":\"bob\",\"auth\":\"tok\"}");

    /* missing field -> invalid_argument naming it */
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, "\x80", 1, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(a.json, "\"code\":\"invalid_argument\""));
    assert_non_null(strstr(a.json, "name"));

    /* too long */
    const char longreq[] = "\x81\xa4" "name" "\xab" "abcdefghijk";
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, longreq, sizeof(longreq) - 1, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_INVALID_ARGUMENT);

    /* unknown method: unimplemented, handler not called */
    int before = handled;
    sl_rpc_call(srv, "t.v1.S/Nope", 11, NULL, 0, req, sizeof(req) - 1, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_UNIMPLEMENTED);
    assert_int_equal(handled, before);

    /* malformed body: invalid_argument, handler not called */
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, "\x81\xa4" "na", 5, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(a.json, "malformed msgpack"));
    assert_int_equal(handled, before);
    assert_int_equal(a.calls, 5);
    free(a.json);
    sl_rpc_server_free(srv);
}

static void test_oversized(void **state)
{
    int handled = 0;
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    lim.max_body = 8;
    sl_rpc_server_t *srv = sl_rpc_server_new(&lim);
    sl_rpc_register(srv, "t.v1.S/Echo", echo, &handled);
    answer_t a = {0};
    const char req[] = "\x81\xa4" "name" "\xa3" "bob";
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, req, sizeof(req) - 1, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_PAYLOAD_TOO_LARGE);
    assert_int_equal(sl_rpc_code_http_status(a.code), 413);
    assert_int_equal(handled, 0);
    free(a.json);
    sl_rpc_server_free(srv);
}

static void test_fields(void **state)
{
    msgpack_zone z;
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_init(&z, 1024);
    /* {"b": true, "i": 7, "n": -3, "s": "x", "z": nil} */
    const char buf[] = "\x85\xa1" "b" "\xc3\xa1" "i" "\x07\xa1" "n" "\xfd\xa1" "s" "\xa1" "x" "\xa1" "z" "\xc0";
    assert_int_equal(msgpack_unpack(buf, sizeof(buf) - 1, &off, &z, &o), MSGPACK_UNPACK_SUCCESS);
    char msg[128];
    int b;
    int64_t i;
    const char *s;
    size_t len;
    assert_int_equal(sl_rpc_get_bool(&o, "b", 1, &b, msg, sizeof(msg)), 1);
    assert_true(b);
    assert_int_equal(sl_rpc_get_bool(&o, "i", 1, &b, msg, sizeof(msg)), -1);
    assert_int_equal(sl_rpc_get_i64(&o, "i", 1, 0, 10, &i, msg, sizeof(msg)), 1);
    assert_int_equal(i, 7);
    assert_int_equal(sl_rpc_get_i64(&o, "i", 1, 0, 5, &i, msg, sizeof(msg)), -1);
    assert_int_equal(sl_rpc_get_i64(&o, "n", 1, -5, 5, &i, msg, sizeof(msg)), 1);
    assert_int_equal(i, -3);
    assert_int_equal(sl_rpc_get_str(&o, "s", 1, 10, &s, &len, msg, sizeof(msg)), 1);
    assert_int_equal(len, 1);
    assert_int_equal(sl_rpc_get_str(&o, "z", 0, 10, &s, &len, msg, sizeof(msg)), 0); /* nil = absent */
    assert_int_equal(sl_rpc_get_str(&o, "z", 1, 10, &s, &len, msg, sizeof(msg)), 0);
    assert_non_null(strstr(msg, "missing required field \"z\""));
    assert_int_equal(sl_rpc_get_str(&o, "b", 1, 10, &s, &len, msg, sizeof(msg)), -1);
    msgpack_zone_destroy(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
