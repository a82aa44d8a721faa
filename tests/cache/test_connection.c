/* cache/ against redis-servers this test starts, stops, freezes (SIGSTOP) and restarts: trust (a
 * Redis that does not hold our marker is emptied first), refused connects, reconnects, timeouts,
 * unix sockets, closing with commands pending. The projection protocol is in test_cache.c. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/cache/cache_helpers.h"

static void test_trust(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_config_t cfg = config(service_port());
    cfg.trust_check_ms = 50;
    sl_cache_t *c = open_with(&loop, &cfg);
    assert_true(sl_cache_trusted(c));
    uint64_t g0 = sl_cache_trust_generation(c);
    assert_int_equal(publish(c, &loop, "t1", SL_PROJ_PUBLIC, 7, "old page"), 1);
    /* refused writes say what holds the key */
    outcome_t o = {0};
    sl_cache_proj_mark(c, "t1", 2, 5, 60000, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.stored, 0);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_int_equal(o.proj.version, 7);
    o = (outcome_t){0};
    sl_cache_proj_publish(c, "t1", 2, SL_PROJ_TOMB, 7, 0, NULL, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.stored, 0);
    assert_int_equal(o.proj.version, 7);
    /* the marker goes: within a check or two the entry is gone and trust is back */
    char mk[96];
    snprintf(mk, sizeof(mk), "%strusted:5", prefix);
    const char *del[] = {"DEL", mk};
    assert_int_equal(cmd(c, &loop, 2, del).gen.integer, 1);
    pump(&loop, 400);
    assert_true(sl_cache_trusted(c));
    assert_true(sl_cache_trust_generation(c) >= g0 + 2); /* lost, then regained */
    assert_int_equal(head(c, &loop, "t1").proj.kind, SL_PROJ_ABSENT);
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_int_equal(st.trust_lost, 1);
    assert_true(st.trust_flushes >= 1);
    close_cache(c, &loop);
}

static void test_refused_is_reported(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(1); /* nothing listens on port 1 */
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    outcome_t o = {0};
    sl_cache_proj_get(c, "x", 1, 0, on_proj, &o); /* still connecting: fails, but never inside the call */
    wait_for(&loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_E_DOWN);
    pump(&loop, 300);
    assert_false(sl_cache_connected(c));
    o = (outcome_t){.loop = &loop};
    uint64_t t0 = uv_now(&loop);
    sl_cache_proj_get(c, "x", 1, 0, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_E_DOWN);
    assert_true(o.at - t0 < 100); /* promptly: no waiting for a timeout */
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.commands, 0);
    assert_int_equal(st.errors, 2);
    close_cache(c, &loop);
}

/* Refused while the server is away, then connected soon after it starts: with a connect timeout
 * far longer than the wait, that proves refusals are reported (not left hanging until the
 * timeout) and that the client keeps retrying. */
static void test_retry_until_up(void **state)
{
    (void)state;
    unsigned port = free_port();
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(port);
    cfg.connect_timeout_ms = 20000;
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    pump(&loop, 500); /* several refused attempts, backing off to 200 ms */
    assert_false(sl_cache_connected(c));
    pid_t pid = start_redis(port, NULL);
    wait_connected(c, &loop, 3000);
    assert_true(sl_cache_connected(c));
    const char *ping[] = {"PING"};
    outcome_t o = cmd(c, &loop, 1, ping);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    assert_string_equal(o.str, "PONG");
    close_cache(c, &loop);
    stop_redis(pid);
}

static void test_timeout_and_reconnect(void **state)
{
    (void)state;
    unsigned port = free_port();
    pid_t pid = start_redis(port, NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(port);
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    wait_connected(c, &loop, 5000); /* it keeps retrying while redis-server starts */
    assert_true(sl_cache_connected(c));
    assert_int_equal(publish(c, &loop, "r", SL_PROJ_PUBLIC, 1, "one"), 1);

    /* Frozen server: the oldest command times out after command_timeout_ms, the connection is
     * dropped, and the command sent after it fails with E_DOWN at that moment. */
    kill(pid, SIGSTOP);
    outcome_t a = {.loop = &loop}, b = {.loop = &loop};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    sl_cache_proj_get(c, "r", 1, 0, on_proj, &a);
    a.returned = 1;
    pump(&loop, 150);
    const char *ping[] = {"PING"};
    size_t plen[] = {4};
    sl_cache_command(c, 1, ping, plen, on_gen, &b);
    b.returned = 1;
    while (!a.called || !b.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(a.sync_call + b.sync_call, 0);
    assert_int_equal(a.proj.status, SL_CACHE_E_TIMEOUT);
    assert_true(a.at - t0 >= 450 && a.at - t0 < 1000);
    assert_int_equal(b.gen.status, SL_CACHE_E_DOWN);
    assert_true(b.at - t0 < 1000); /* with a's timeout, not its own */
    kill(pid, SIGCONT);
    wait_connected(c, &loop, 3000);
    pump(&loop, 100);
    wait_connected(c, &loop, 3000);
    assert_int_equal(a.called, 1); /* no second callback, whatever the thawed server sends */
    assert_int_equal(b.called, 1);
    outcome_t o = get(c, &loop, "r");
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_string_equal(o.payload, "one");

    /* killed server: down, then back after a restart */
    stop_redis(pid);
    pump(&loop, 200);
    assert_false(sl_cache_connected(c));
    assert_int_equal(get(c, &loop, "r").proj.status, SL_CACHE_E_DOWN);
    pid = start_redis(port, NULL);
    wait_connected(c, &loop, 5000);
    assert_true(sl_cache_connected(c));
    o = get(c, &loop, "r");
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_int_equal(o.proj.kind, SL_PROJ_ABSENT); /* a fresh server (no persistence) */
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_true(st.connects >= 3);
    assert_true(st.disconnects >= 2);
    assert_int_equal(st.timeouts, 1);
    assert_true(st.errors >= 3);
    close_cache(c, &loop);
    stop_redis(pid);
}

/* A command pending when the server dies fails with E_DOWN (not a timeout). */
static void test_down_while_pending(void **state)
{
    (void)state;
    unsigned port = free_port();
    pid_t pid = start_redis(port, NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(port);
    cfg.command_timeout_ms = 5000;
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    wait_connected(c, &loop, 5000);
    assert_true(sl_cache_connected(c));
    const char *blpop[] = {"BLPOP", "nothing-comes", "0"}; /* waits server side forever */
    size_t lens[] = {5, 13, 1};
    outcome_t o = {.loop = &loop};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    sl_cache_command(c, 3, blpop, lens, on_gen, &o);
    o.returned = 1;
    pump(&loop, 100);
    assert_int_equal(o.called, 0);
    stop_redis(pid);
    while (!o.called)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(o.gen.status, SL_CACHE_E_DOWN);
    assert_true(o.at - t0 < 2000);
    assert_false(sl_cache_connected(c));
    close_cache(c, &loop);
}

static void test_unix_socket(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/sl-test-cache-%d.sock", (int)getpid());
    unlink(path);
    pid_t pid = start_redis(0, path);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(0);
    cfg.host = NULL;
    cfg.unix_path = path;
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    wait_connected(c, &loop, 5000); /* the socket file appears when redis-server is up */
    assert_true(sl_cache_connected(c));
    assert_int_equal(publish(c, &loop, "u", SL_PROJ_PUBLIC, 2, "over unix"), 1);
    assert_string_equal(get(c, &loop, "u").payload, "over unix");
    close_cache(c, &loop);
    stop_redis(pid);
    unlink(path);
}

typedef struct closer {
    sl_cache_t *c;
    outcome_t o;
    outcome_t after; /* a command issued after the close, from the same callback */
} closer_t;

static void on_proj_close(const sl_proj_reply_t *r, void *data)
{
    closer_t *k = data;
    on_proj(r, &k->o);
    sl_cache_close(k->c); /* closing from inside a callback is allowed */
    sl_cache_close(k->c); /* and twice is harmless */
    sl_cache_proj_get(k->c, "p", 1, 0, on_proj, &k->after);
    k->after.returned = 1;
}

static void test_close_with_pending(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    outcome_t a = {0}, b = {0};
    sl_cache_proj_get(c, "p", 1, 0, on_proj, &a);
    sl_cache_proj_get(c, "p", 1, 0, on_proj, &b);
    a.returned = b.returned = 1;
    sl_cache_close(c);
    assert_int_equal(a.called + b.called, 0); /* E_CLOSED comes later, from the loop */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a.called, 1);
    assert_int_equal(b.called, 1);
    assert_int_equal(a.proj.status, SL_CACHE_E_CLOSED);
    assert_int_equal(b.proj.status, SL_CACHE_E_CLOSED);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* close from inside a reply callback, with another command outstanding */
    c = open_service(&loop);
    closer_t k = {.c = c};
    outcome_t d = {0};
    sl_cache_proj_get(c, "p", 1, 0, on_proj_close, &k);
    sl_cache_proj_get(c, "p", 1, 0, on_proj, &d);
    k.o.returned = d.returned = 1;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(k.o.called, 1);
    assert_int_equal(k.o.proj.status, SL_CACHE_OK);
    assert_int_equal(d.called, 1);
    assert_int_equal(d.proj.status, SL_CACHE_E_CLOSED);
    assert_int_equal(k.after.called, 1);
    assert_int_equal(k.after.sync_call, 0);
    assert_int_equal(k.after.proj.status, SL_CACHE_E_CLOSED);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* close while still connecting, and right after open */
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(service_port());
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    close_cache(c, &loop);
    uv_loop_init(&loop);
    cfg = config(1);
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    pump(&loop, 100); /* in the middle of backing off */
    close_cache(c, &loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(stop_all_redis);
    snprintf(prefix, sizeof(prefix), "conn%d.%ld:", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust),
        cmocka_unit_test(test_refused_is_reported),
        cmocka_unit_test_teardown(test_retry_until_up, teardown_servers),
        cmocka_unit_test_teardown(test_timeout_and_reconnect, teardown_servers),
        cmocka_unit_test_teardown(test_down_while_pending, teardown_servers),
        cmocka_unit_test_teardown(test_unix_socket, teardown_servers),
        cmocka_unit_test(test_close_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
