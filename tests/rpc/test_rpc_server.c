/* The method table: dispatch, answers, errors, field readers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

/* msgpack byte literals are laid out by message structure, one message a line: */
/* clang-format off */

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

/* Echo: answers {"got": <name>, "auth": <token or nil>} or fails when "name" is missing. */
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
    if (auth != NULL)
        sl_rpc_pack_strn(pk, auth, alen);
    else
        msgpack_pack_nil(pk); /* no credential: nil, not an empty or an earlier one */
    sl_rpc_reply(call);
}

static void test_dispatch(void **state)
{
    int handled = 0;
    sl_rpc_server_t *srv;
    assert_int_equal(sl_rpc_server_open(&srv, NULL), 0);
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
    sl_rpc_server_close(srv);
}

static void test_oversized(void **state)
{
    int handled = 0;
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    lim.max_body = 8;
    sl_rpc_server_t *srv;
    assert_int_equal(sl_rpc_server_open(&srv, &lim), 0);
    sl_rpc_register(srv, "t.v1.S/Echo", echo, &handled);
    answer_t a = {0};
    const char req[] = "\x81\xa4" "name" "\xa3" "bob";
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, req, sizeof(req) - 1, on_answer, &a);
    assert_int_equal(a.code, SL_RPC_PAYLOAD_TOO_LARGE);
    assert_int_equal(sl_rpc_code_http_status(a.code), 413);
    assert_int_equal(handled, 0);
    free(a.json);
    sl_rpc_server_close(srv);
}

/* Hold: keeps the call unanswered (in held[]) until the test answers it. */
static sl_rpc_call_t *held[200];
static int nheld;

static void hold(sl_rpc_call_t *call, void *data)
{
    (void)data;
    held[nheld++] = call;
}

/* Answered calls are reused: nothing of an earlier call (its credential, body or reply) may show in
 * a later one, with more calls in flight than the server keeps for reuse. */
static void test_call_reuse(void **state)
{
    int handled = 0;
    sl_rpc_server_t *srv;
    assert_int_equal(sl_rpc_server_open(&srv, NULL), 0);
    assert_int_equal(sl_rpc_register(srv, "t.v1.S/Echo", echo, &handled), 0);
    assert_int_equal(sl_rpc_register(srv, "t.v1.S/Hold", hold, NULL), 0);
    answer_t a = {0};
    const char req_a[] = "\x81\xa4" "name" "\xa5" "alice";
    const char req_b[] = "\x81\xa4" "name" "\xa1" "b";
    sl_rpc_call(srv, "t.v1.S/Echo", 11, "secret-token", 12, req_a, sizeof(req_a) - 1, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"alice\",\"auth\":\"secret-token\"}");
    /* the next call reuses that call object: no credential, a shorter name, a fresh reply */
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, req_b, sizeof(req_b) - 1, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"b\",\"auth\":null}");
    sl_rpc_call(srv, "t.v1.S/Echo", 11, "t2", 2, req_b, sizeof(req_b) - 1, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"b\",\"auth\":\"t2\"}");

    /* a large body (a 20,000-byte padding field) and then a small one */
    size_t big = 20000;
    char *breq = malloc(big + 64);
    size_t n = 0;
    memcpy(breq + n, "\x82\xa4" "name" "\xa1" "c" "\xa3" "pad" "\xda", 13);
    n += 13;
    breq[n++] = (char)(big >> 8);
    breq[n++] = (char)(big & 0xff);
    memset(breq + n, 'x', big);
    n += big;
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, breq, n, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"c\",\"auth\":null}");
    free(breq);
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, req_b, sizeof(req_b) - 1, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"b\",\"auth\":null}");

    /* 200 calls in flight (more than are kept for reuse), answered out of order, twice over */
    for (int round = 0; round < 2; round++) {
        nheld = 0;
        for (int i = 0; i < 200; i++)
            sl_rpc_call(srv, "t.v1.S/Hold", 11, "tok", 3, req_b, sizeof(req_b) - 1, on_answer, &a);
        assert_int_equal(nheld, 200);
        for (int i = 0; i < 200; i++) {
            sl_rpc_call_t *c = held[(i * 7) % 200]; /* 7 and 200 are coprime: each exactly once */
            size_t alen;
            const char *auth = sl_rpc_auth(c, &alen);
            assert_non_null(auth);
            assert_int_equal(alen, 3);
            msgpack_packer *pk = sl_rpc_packer(c);
            msgpack_pack_map(pk, 1);
            sl_rpc_pack_str(pk, "i");
            msgpack_pack_int(pk, (i * 7) % 200);
            sl_rpc_reply(c);
            char want[32];
            snprintf(want, sizeof(want), "{\"i\":%d}", (i * 7) % 200);
            assert_string_equal(a.json, want);
        }
    }
    sl_rpc_call(srv, "t.v1.S/Echo", 11, NULL, 0, req_a, sizeof(req_a) - 1, on_answer, &a);
    assert_string_equal(a.json, "{\"got\":\"alice\",\"auth\":null}");
    free(a.json);
    sl_rpc_server_close(srv); /* frees the kept calls: the ASan build checks nothing leaks */
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

/* clang-format on */

/* A confirmer that knows one copy: ("s1", version 7, tag 99). */
static int confirm_calls;
static int confirm_one(void *data, const char *id, size_t idlen, uint64_t version, uint64_t tag)
{
    (void)data;
    confirm_calls++;
    return idlen == 2 && memcmp(id, "s1", 2) == 0 && version == 7 && tag == 99;
}

/* GetShare's confirmation: 0 without a confirmer, never a call for what cannot be a copy (no
 * version, no tag, an impossible id), and the confirmer's word otherwise. */
static void test_share_confirm(void **state)
{
    (void)state;
    sl_rpc_server_t *srv;
    assert_int_equal(sl_rpc_server_open(&srv, NULL), 0);
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 7, 99), 0); /* none registered */
    sl_rpc_set_share_confirm(srv, confirm_one, NULL);
    confirm_calls = 0;
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 7, 99), 1);
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 8, 99), 0); /* another version */
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 7, 98), 0); /* other content */
    assert_int_equal(sl_rpc_share_confirm(srv, "s2", 2, 7, 99), 0); /* another session */
    assert_int_equal(confirm_calls, 4);
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 0, 99), 0); /* no copy */
    assert_int_equal(sl_rpc_share_confirm(srv, "s1", 2, 7, 0), 0);
    assert_int_equal(sl_rpc_share_confirm(srv, "s/1", 3, 7, 99), 0); /* not a possible id */
    assert_int_equal(sl_rpc_share_confirm(srv, "", 0, 7, 99), 0);
    assert_int_equal(confirm_calls, 4);
    sl_rpc_server_close(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),      cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_call_reuse),    cmocka_unit_test(test_fields),
        cmocka_unit_test(test_share_confirm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
