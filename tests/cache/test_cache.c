/* cache/ against a real redis-server: the one of the ctest `services` fixture, plus a private one
 * this test starts, stops, freezes (SIGSTOP) and restarts to exercise reconnects and timeouts. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/cache.h"

static char prefix[64];

static sl_cache_config_t config(unsigned port)
{
    sl_cache_config_t c = {0};
    c.host = "127.0.0.1";
    c.port = port;
    c.key_prefix = prefix;
    c.command_timeout_ms = 500;
    c.connect_timeout_ms = 500;
    c.reconnect_min_ms = 20;
    c.reconnect_max_ms = 200;
    return c;
}

static unsigned service_port(void)
{
    return (unsigned)atoi(getenv("SHARELINE_REDIS_PORT") ? getenv("SHARELINE_REDIS_PORT") : "6379");
}

typedef struct outcome {
    int called, returned, sync_call;
    sl_proj_reply_t proj;
    sl_cache_reply_t gen;
    char payload[256];
    char str[256];
} outcome_t;

static void on_proj(const sl_proj_reply_t *r, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    o->proj = *r;
    if (r->payload && r->len < sizeof(o->payload)) {
        memcpy(o->payload, r->payload, r->len);
        o->payload[r->len] = 0;
    }
    o->proj.payload = NULL;
}

static void on_gen(const sl_cache_reply_t *r, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    o->gen = *r;
    if (r->str && r->len < sizeof(o->str)) {
        memcpy(o->str, r->str, r->len);
        o->str[r->len] = 0;
    }
    o->gen.str = NULL;
    o->gen.error = NULL;
}

static void wait_for(uv_loop_t *loop, outcome_t *o)
{
    o->returned = 1;
    while (!o->called)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(o->sync_call, 0);
    assert_int_equal(o->called, 1);
}

static void wait_connected(sl_cache_t *c, uv_loop_t *loop, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (!sl_cache_connected(c) && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

static void pump(uv_loop_t *loop, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

static void close_cache(sl_cache_t *c, uv_loop_t *loop)
{
    sl_cache_close(c);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static outcome_t cmd(sl_cache_t *c, uv_loop_t *loop, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    outcome_t o = {0};
    sl_cache_command(c, argc, argv, lens, on_gen, &o);
    wait_for(loop, &o);
    return o;
}

static outcome_t get(sl_cache_t *c, uv_loop_t *loop, const char *id)
{
    outcome_t o = {0};
    sl_cache_proj_get(c, id, strlen(id), on_proj, &o);
    wait_for(loop, &o);
    return o;
}

static int publish(sl_cache_t *c, uv_loop_t *loop, const char *id, sl_proj_kind_t kind, uint64_t v, const char *p)
{
    outcome_t o = {0};
    sl_cache_proj_publish(c, id, strlen(id), kind, v, p, p ? strlen(p) : 0, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

static int mark(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t v)
{
    outcome_t o = {0};
    sl_cache_proj_mark(c, id, strlen(id), v, 5000, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

static int lease(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token)
{
    outcome_t o = {0};
    sl_cache_proj_lease(c, id, strlen(id), token, 5000, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

static int fill(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token, sl_proj_kind_t kind, uint64_t v,
                const char *p)
{
    outcome_t o = {0};
    sl_cache_proj_fill(c, id, strlen(id), token, kind, v, p, p ? strlen(p) : 0, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

static sl_cache_t *open_service(uv_loop_t *loop)
{
    sl_cache_t *c;
    uv_loop_init(loop);
    sl_cache_config_t cfg = config(service_port());
    assert_int_equal(sl_cache_open(&c, loop, &cfg), 0);
    wait_connected(c, loop, 3000);
    assert_true(sl_cache_connected(c));
    return c;
}

static void test_commands(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    char key[96];
    snprintf(key, sizeof(key), "%sraw", prefix);
    const char *set[] = {"SET", key, "v1"};
    outcome_t o = cmd(c, &loop, 3, set);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    assert_string_equal(o.str, "OK");
    const char *getv[] = {"GET", key};
    o = cmd(c, &loop, 2, getv);
    assert_string_equal(o.str, "v1");
    const char *incr[] = {"INCRBY", key, "1"};
    o = cmd(c, &loop, 3, incr);
    assert_int_equal(o.gen.status, SL_CACHE_E_REPLY); /* not an integer: an error reply */
    const char *del[] = {"DEL", key};
    o = cmd(c, &loop, 2, del);
    assert_int_equal(o.gen.integer, 1);
    o = cmd(c, &loop, 2, getv);
    assert_int_equal(o.gen.is_nil, 1);
    const char *arr[] = {"KEYS", "nothing-matches-this*"};
    o = cmd(c, &loop, 2, arr);
    assert_int_equal(o.gen.status, SL_CACHE_E_REPLY);
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_true(st.commands >= 6);
    assert_int_equal(st.connects, 1);
    close_cache(c, &loop);
}

static void test_projection_rules(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    const char *id = "s1";
    assert_int_equal(get(c, &loop, id).proj.kind, SL_PROJ_ABSENT);

    /* lease only when absent */
    assert_int_equal(lease(c, &loop, id, 7), 1);
    assert_int_equal(lease(c, &loop, id, 8), 0);
    outcome_t o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_LEASE);
    assert_int_equal(o.proj.version, 7);
    /* fill only with the matching lease token */
    assert_int_equal(fill(c, &loop, id, 8, SL_PROJ_PUBLIC, 3, "wrong"), 0);
    assert_int_equal(fill(c, &loop, id, 7, SL_PROJ_PUBLIC, 3, "doc v3\nwith newline"), 1);
    o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_int_equal(o.proj.version, 3);
    assert_string_equal(o.payload, "doc v3\nwith newline");
    /* a fill after the lease is gone is refused */
    assert_int_equal(fill(c, &loop, id, 7, SL_PROJ_PUBLIC, 3, "again"), 0);

    /* publish: only newer than PUBLIC/TOMB */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 3, "same version"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 2, "older"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 4, "doc v4"), 1);
    /* mark: refused by a greater version, accepted otherwise */
    assert_int_equal(mark(c, &loop, id, 3), 0);
    assert_int_equal(mark(c, &loop, id, 5), 1);
    o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_MARK);
    assert_int_equal(o.proj.version, 5);
    /* readers cannot lease or fill over a mark */
    assert_int_equal(lease(c, &loop, id, 9), 0);
    assert_int_equal(fill(c, &loop, id, 9, SL_PROJ_PUBLIC, 5, "reader"), 0);
    /* publish over a mark: not of an older version, yes of the same or newer */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 4, "stale builder"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_TOMB, 5, NULL), 1);
    o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_TOMB);
    assert_int_equal(o.proj.version, 5);
    /* the stale write-back of N after N+1 is stored is rejected */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 5, "v5 public, late"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 6, "v6"), 1);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 5, "v5 late"), 0);
    assert_string_equal(get(c, &loop, id).payload, "v6");
    /* publish over a lease wins */
    const char *id2 = "s2";
    assert_int_equal(lease(c, &loop, id2, 1), 1);
    assert_int_equal(publish(c, &loop, id2, SL_PROJ_PUBLIC, 1, "owner"), 1);
    assert_int_equal(fill(c, &loop, id2, 1, SL_PROJ_PUBLIC, 0, "reader late"), 0);

    /* versions beyond 2^53 compare exactly (no double rounding) */
    const char *id3 = "s3";
    uint64_t big = (1ull << 53) + 1;
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big, "big"), 1);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big - 1, "big-1"), 0);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big + 1, "big+1"), 1);
    assert_int_equal(get(c, &loop, id3).proj.version, big + 1);
    assert_int_equal(mark(c, &loop, id3, UINT64_MAX), 1);
    assert_int_equal(get(c, &loop, id3).proj.version, UINT64_MAX);
    /* 10 vs 9: longer decimal is greater */
    const char *id4 = "s4";
    assert_int_equal(publish(c, &loop, id4, SL_PROJ_PUBLIC, 10, "ten"), 1);
    assert_int_equal(publish(c, &loop, id4, SL_PROJ_PUBLIC, 9, "nine"), 0);

    /* a value that is not ours is reported, not misread */
    char key[96];
    snprintf(key, sizeof(key), "%sp:junk", prefix);
    const char *set[] = {"SET", key, "Pnotanumber"};
    cmd(c, &loop, 3, set);
    assert_int_equal(get(c, &loop, "junk").proj.status, SL_CACHE_E_REPLY);

    /* PUBLIC entries carry the TTL, MARKs the given one */
    snprintf(key, sizeof(key), "%sp:s4", prefix);
    const char *ttl[] = {"TTL", key};
    outcome_t t = cmd(c, &loop, 2, ttl);
    assert_true(t.gen.integer > 0 && t.gen.integer <= 86400);
    close_cache(c, &loop);
}

/* ---- a private redis-server for failure tests ---- */

static pid_t start_redis(unsigned port)
{
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof(p), "%u", port);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2); /* never hold the test runner's pipes open */
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_redis(pid_t pid)
{
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_refused_is_reported(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(1); /* nothing listens on port 1 */
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    pump(&loop, 300);
    assert_false(sl_cache_connected(c));
    outcome_t o = get(c, &loop, "x");
    assert_int_equal(o.proj.status, SL_CACHE_E_DOWN);
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_int_equal(st.connects, 0);
    close_cache(c, &loop);
}

static void test_reconnect_and_timeout(void **state)
{
    (void)state;
    unsigned port = service_port() + 7;
    pid_t pid = start_redis(port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_cache_config_t cfg = config(port);
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    wait_connected(c, &loop, 5000); /* it keeps retrying while redis-server starts */
    assert_true(sl_cache_connected(c));
    assert_int_equal(publish(c, &loop, "r", SL_PROJ_PUBLIC, 1, "one"), 1);

    /* frozen server: the command times out, the connection is dropped */
    kill(pid, SIGSTOP);
    outcome_t o = {0};
    uint64_t t0 = uv_now(&loop);
    sl_cache_proj_get(c, "r", 1, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_E_TIMEOUT);
    uint64_t took = uv_now(&loop) - t0;
    assert_true(took >= 450 && took < 1500);
    kill(pid, SIGCONT);
    wait_connected(c, &loop, 3000);
    pump(&loop, 100);
    wait_connected(c, &loop, 3000);
    o = get(c, &loop, "r");
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_string_equal(o.payload, "one");

    /* killed server: down, then back after restart */
    stop_redis(pid);
    pump(&loop, 200);
    assert_false(sl_cache_connected(c));
    assert_int_equal(get(c, &loop, "r").proj.status, SL_CACHE_E_DOWN);
    pid = start_redis(port);
    wait_connected(c, &loop, 5000);
    assert_true(sl_cache_connected(c));
    o = get(c, &loop, "r");
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_int_equal(o.proj.kind, SL_PROJ_ABSENT); /* a fresh server (no persistence) */
    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_true(st.connects >= 2);
    assert_true(st.disconnects >= 1);
    assert_true(st.timeouts >= 1);
    close_cache(c, &loop);
    stop_redis(pid);
}

static void on_proj_close(const sl_proj_reply_t *r, void *data);
typedef struct closer {
    sl_cache_t *c;
    outcome_t o;
} closer_t;
static void on_proj_close(const sl_proj_reply_t *r, void *data)
{
    closer_t *k = data;
    on_proj(r, &k->o);
    sl_cache_close(k->c); /* closing from inside a callback is allowed */
}

static void test_close_with_pending(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    outcome_t a = {0}, b = {0};
    sl_cache_proj_get(c, "p", 1, on_proj, &a);
    sl_cache_proj_get(c, "p", 1, on_proj, &b);
    a.returned = b.returned = 1;
    sl_cache_close(c);
    assert_int_equal(a.called + b.called, 0);
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
    sl_cache_proj_get(c, "p", 1, on_proj_close, &k);
    sl_cache_proj_get(c, "p", 1, on_proj, &d);
    k.o.returned = d.returned = 1;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(k.o.called, 1);
    assert_int_equal(k.o.proj.status, SL_CACHE_OK);
    assert_int_equal(d.called, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    snprintf(prefix, sizeof(prefix), "test%d:", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_projection_rules),
        cmocka_unit_test(test_refused_is_reported),
        cmocka_unit_test(test_reconnect_and_timeout),
        cmocka_unit_test(test_close_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
