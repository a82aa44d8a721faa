/* rpc/connect.c: the protobuf JSON mapping of a Connect call undone, on its own (pure logic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/rpc.h"

/* JSON in -> the normalized request, back to JSON (keys in the order the mapping writes them). */
static char *normalize(sl_rpc_method_id_t m, const char *json, char *err, size_t errlen)
{
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    msgpack_sbuffer in, out;
    msgpack_sbuffer_init(&in);
    msgpack_sbuffer_init(&out);
    assert_int_equal(sl_rpc_json_to_msgpack(json, strlen(json), &lim, &in, err, errlen), 0);
    char *text = NULL;
    size_t len;
    if (sl_rpc_connect_normalize(m, in.data, in.size, &out, err, errlen) == 0) {
        assert_int_equal(sl_rpc_check_msgpack(out.data, out.size, &lim, err, errlen), 0);
        assert_int_equal(sl_rpc_msgpack_to_json(out.data, out.size, &text, &len), 0);
    }
    msgpack_sbuffer_destroy(&in);
    msgpack_sbuffer_destroy(&out);
    return text;
}

static void expect(sl_rpc_method_id_t m, const char *json, const char *want)
{
    char err[256] = "";
    char *got = normalize(m, json, err, sizeof(err));
    if (got == NULL)
        fail_msg("%s: refused: %s", json, err);
    assert_string_equal(got, want);
    free(got);
}

static void refuse(sl_rpc_method_id_t m, const char *json, const char *why)
{
    char err[256] = "";
    char *got = normalize(m, json, err, sizeof(err));
    if (got != NULL)
        fail_msg("%s: accepted as %s", json, got);
    assert_non_null(strstr(err, why));
}

static void test_names(void **state)
{
    (void)state;
    expect(SL_M_GET_SESSION, "{\"sessionId\":\"a\"}", "{\"session_id\":\"a\"}");
    expect(SL_M_GET_SESSION, "{\"session_id\":\"a\"}", "{\"session_id\":\"a\"}");
    expect(SL_M_EXPORT_SESSION, "{\"sessionId\":\"a\",\"projectExtId\":\"p\"}",
           "{\"session_id\":\"a\",\"project_ext_id\":\"p\"}");
    /* not lowerCamelCase: kept as sent (an unknown field stays unknown) */
    expect(SL_M_GET_SESSION, "{\"SessionId\":\"a\",\"x-y\":1}", "{\"SessionId\":\"a\",\"x-y\":1}");
    /* the client's own metadata is never renamed */
    expect(SL_M_SYNC_SESSION, "{\"markdown\":\"m\",\"metadata\":{\"someKey\":{\"innerKey\":\"1\"}}}",
           "{\"markdown\":\"m\",\"metadata\":{\"someKey\":{\"innerKey\":\"1\"}}}");
    refuse(SL_M_GET_SESSION, "{\"sessionId\":\"a\",\"session_id\":\"b\"}", "given twice");
}

static void test_integers(void **state)
{
    (void)state;
    expect(SL_M_DELETE_EXCHANGE, "{\"sessionId\":\"a\",\"exchangeId\":\"7\"}",
           "{\"session_id\":\"a\",\"exchange_id\":7}");
    expect(SL_M_SET_EXCHANGES_HIDDEN, "{\"sessionId\":\"a\",\"exchangeIds\":[\"1\",2,\"3\"],\"hidden\":true}",
           "{\"session_id\":\"a\",\"exchange_ids\":[1,2,3],\"hidden\":true}");
    expect(SL_M_GET_SESSION, "{\"sessionId\":\"a\",\"asUser\":\"9223372036854775807\"}",
           "{\"session_id\":\"a\",\"as_user\":9223372036854775807}");
    /* a string field that holds digits stays a string */
    expect(SL_M_GET_SESSION, "{\"sessionId\":\"123\"}", "{\"session_id\":\"123\"}");
    refuse(SL_M_DELETE_EXCHANGE, "{\"exchangeId\":\"7a\"}", "not an integer");
    refuse(SL_M_DELETE_EXCHANGE, "{\"exchangeId\":\"\"}", "not an integer");
    refuse(SL_M_DELETE_EXCHANGE, "{\"exchangeId\":\"99999999999999999999\"}", "not an integer");
}

static void test_defaults(void **state)
{
    (void)state;
    expect(SL_M_SET_VISIBILITY, "{\"sessionId\":\"a\"}", "{\"session_id\":\"a\",\"public\":false}");
    expect(SL_M_SET_VISIBILITY, "{\"sessionId\":\"a\",\"public\":true}",
           "{\"session_id\":\"a\",\"public\":true}");
    expect(SL_M_SET_VISIBILITY, "{\"sessionId\":\"a\",\"public\":null}",
           "{\"session_id\":\"a\",\"public\":false}");
    expect(SL_M_SET_EXCHANGES_HIDDEN, "{\"exchangeIds\":[\"1\"]}", "{\"exchange_ids\":[1],\"hidden\":false}");
    expect(SL_M_UPDATE_SESSION_TITLE, "{\"sessionId\":\"a\"}", "{\"session_id\":\"a\",\"title\":\"\"}");
    expect(SL_M_UPDATE_EXCHANGE_TITLE, "{\"exchangeId\":1}", "{\"exchange_id\":1,\"title\":\"\"}");
    expect(SL_M_APPEND_EXCHANGES, "{\"exchanges\":[{\"prompt\":\"p\"},{}]}",
           "{\"exchanges\":[{\"prompt\":\"p\",\"response\":\"\"},{\"prompt\":\"\",\"response\":\"\"}]}");
    /* no defaults for methods that have none; nulls dropped */
    expect(SL_M_GET_SESSION, "{\"sessionId\":\"a\",\"title\":null}", "{\"session_id\":\"a\"}");
}

static void test_bounds(void **state)
{
    (void)state;
    char json[4096] = "{";
    for (int i = 0; i < 65; i++)
        snprintf(json + strlen(json), sizeof(json) - strlen(json), "%s\"f%d\":1", i ? "," : "", i);
    strcat(json, "}");
    refuse(SL_M_GET_SESSION, json, "at most 64 fields");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
