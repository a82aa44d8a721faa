/* cache/coherence.c against a real redis-server: two "nodes" (two clients with their own
 * subscriptions and leases) on the services fixture's Redis, plus a private redis-server that this
 * test freezes (SIGSTOP) and kills. Keys and channels carry a per-run prefix. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/cache.h"
#include "cache/cache.h"

static char prefix[64];
static pid_t private_pid;

static sl_cache_config_t config(unsigned port)
{
    sl_cache_config_t c = {0};
    c.host = "127.0.0.1";
    c.port = port;
    c.key_prefix = prefix;
    c.command_timeout_ms = 400;
    c.connect_timeout_ms = 400;
    c.reconnect_min_ms = 20;
    c.reconnect_max_ms = 200;
    return c;
}

static const sl_coh_config_t COH = {.lease_ms = 900, .renew_ms = 150, .margin_ms = 200};

static unsigned service_port(void)
{
    return (unsigned)atoi(getenv("SHARELINE_REDIS_PORT") ? getenv("SHARELINE_REDIS_PORT") : "6379");
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void start_private(unsigned port)
{
    char p[16];
    snprintf(p, sizeof(p), "%u", port);
    private_pid = fork();
    assert_true(private_pid >= 0);
    if (private_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
}

static int teardown_private(void **state)
{
    (void)state;
    if (private_pid > 0) {
        kill(private_pid, SIGCONT);
        kill(private_pid, SIGKILL);
        waitpid(private_pid, NULL, 0);
        private_pid = 0;
    }
    return 0;
}

static void pump(uv_loop_t *loop, int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* Runs the loop until cond(arg) or ms passed; returns cond's last value. */
static int pump_until(uv_loop_t *loop, int ms, int (*cond)(void *), void *arg)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (!cond(arg) && uv_hrtime() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    return cond(arg);
}

static int coherent(void *h)
{
    return sl_coh_coherent(h);
}

static int not_coherent(void *h)
{
    return !sl_coh_coherent(h);
}

typedef struct node {
    sl_cache_t *cache;
    sl_coh_t *coh;
} node_t;

/* Each test gets its own prefix: nodes closed by an earlier test keep their lease in Redis until
 * it expires (a stopped node is waited out, see test_silent_node_waited_out). */
static int setup_prefix(void **state)
{
    (void)state;
    static int n;
    snprintf(prefix, sizeof(prefix), "t%ld-%d:", (long)getpid(), ++n);
    return 0;
}

static void node_open(node_t *n, uv_loop_t *loop, unsigned port)
{
    sl_cache_config_t cfg = config(port);
    assert_int_equal(sl_cache_open(&n->cache, loop, &cfg), 0);
    assert_int_equal(sl_coh_open(&n->coh, loop, n->cache, &cfg, &COH), 0);
}

static void node_close(node_t *n)
{
    sl_coh_close(n->coh);
    sl_cache_close(n->cache);
}

static void loop_done(uv_loop_t *loop)
{
    /* the contract: once closed, nothing is left on the loop */
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

typedef struct inv_outcome {
    int called, returned, sync_call;
    sl_cache_status_t status;
    uint64_t at_ns;
    /* what the other node knew when the callback ran */
    node_t *other;
    const char *id;
    int other_knew;
} inv_outcome_t;

static void on_inv(const sl_proj_reply_t *r, void *data)
{
    inv_outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    o->status = r->status;
    o->at_ns = uv_hrtime();
    if (o->other) {
        sl_proj_kind_t k;
        uint64_t v, tg;
        o->other_knew = sl_coh_lookup(o->other->coh, o->id, strlen(o->id), &k, &v, &tg);
    }
}

static int inv_called(void *o)
{
    return ((inv_outcome_t *)o)->called != 0;
}

static void invalidate(uv_loop_t *loop, node_t *n, const char *id, uint64_t version, inv_outcome_t *o)
{
    sl_coh_invalidate(n->coh, id, strlen(id), version, on_inv, o);
    o->returned = 1;
    assert_true(pump_until(loop, 5000, inv_called, o));
    assert_int_equal(o->sync_call, 0);
    assert_int_equal(o->called, 1);
}

static int knows(node_t *n, const char *id, sl_proj_kind_t *k, uint64_t *v)
{
    sl_proj_kind_t kk;
    uint64_t vv, tt;
    return sl_coh_lookup(n->coh, id, strlen(id), k ? k : &kk, v ? v : &vv, &tt);
}

/* A node answers from memory only after its lease is confirmed; an invalidation by another node
 * returns only once this node has forgotten the id. */
static void test_invalidate_reaches_other_node(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a, b;
    node_open(&a, &loop, service_port());
    node_open(&b, &loop, service_port());
    assert_false(sl_coh_coherent(b.coh)); /* nothing confirmed yet */
    assert_true(pump_until(&loop, 3000, coherent, a.coh));
    assert_true(pump_until(&loop, 3000, coherent, b.coh));

    sl_coh_ticket_t t = sl_coh_ticket(b.coh);
    sl_coh_learn(b.coh, t, "s1", 2, SL_PROJ_PUBLIC, 5, 0x5a);
    sl_proj_kind_t k;
    uint64_t v;
    assert_true(knows(&b, "s1", &k, &v));
    assert_int_equal(k, SL_PROJ_PUBLIC);
    assert_int_equal(v, 5);
    /* MARK, LEASE and ABSENT answers are never remembered */
    sl_coh_learn(b.coh, sl_coh_ticket(b.coh), "s2", 2, SL_PROJ_MARK, 9, 0x5a);
    assert_false(knows(&b, "s2", NULL, NULL));

    inv_outcome_t o = {.other = &b, .id = "s1"};
    invalidate(&loop, &a, "s1", 6, &o);
    assert_int_equal(o.status, SL_CACHE_OK);
    assert_int_equal(o.other_knew, 0); /* forgotten before A's call completed */
    sl_coh_stats_t sa;
    sl_coh_get_stats(a.coh, &sa);
    assert_true(sa.acks_received >= 1);
    assert_int_equal(sa.lease_waits, 0);

    /* and the other way round, with a tombstone */
    sl_coh_learn(a.coh, sl_coh_ticket(a.coh), "s3", 2, SL_PROJ_TOMB, 3, 0x5a);
    assert_true(knows(&a, "s3", &k, NULL));
    assert_int_equal(k, SL_PROJ_TOMB);
    inv_outcome_t o2 = {.other = &a, .id = "s3"};
    invalidate(&loop, &b, "s3", 4, &o2);
    assert_int_equal(o2.status, SL_CACHE_OK);
    assert_int_equal(o2.other_knew, 0);

    node_close(&a);
    node_close(&b);
    loop_done(&loop);
}

/* A Redis answer taken before an invalidation arrived is not remembered (it may predate it). */
static void test_stale_answer_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a, b;
    node_open(&a, &loop, service_port());
    node_open(&b, &loop, service_port());
    assert_true(pump_until(&loop, 3000, coherent, a.coh));
    assert_true(pump_until(&loop, 3000, coherent, b.coh));

    sl_coh_ticket_t before = sl_coh_ticket(b.coh);
    inv_outcome_t o = {0};
    invalidate(&loop, &a, "s9", 2, &o);
    assert_int_equal(o.status, SL_CACHE_OK);
    sl_coh_learn(b.coh, before, "s9", 2, SL_PROJ_PUBLIC, 1, 0x5a); /* the reply to a command sent before */
    assert_false(knows(&b, "s9", NULL, NULL));
    /* other ids are not affected by s9's invalidation */
    sl_coh_learn(b.coh, before, "s10", 3, SL_PROJ_PUBLIC, 1, 0x5a);
    assert_true(knows(&b, "s10", NULL, NULL));
    /* a ticket taken after the invalidation is fine */
    sl_coh_learn(b.coh, sl_coh_ticket(b.coh), "s9", 2, SL_PROJ_PUBLIC, 2, 0x5a);
    assert_true(knows(&b, "s9", NULL, NULL));
    /* the writer's own ticket is refused too (it forgets before publishing) */
    sl_coh_ticket_t ta = sl_coh_ticket(a.coh);
    inv_outcome_t o2 = {0};
    invalidate(&loop, &a, "s11", 2, &o2);
    sl_coh_learn(a.coh, ta, "s11", 3, SL_PROJ_PUBLIC, 1, 0x5a);
    assert_false(knows(&a, "s11", NULL, NULL));
    sl_coh_stats_t sb;
    sl_coh_get_stats(b.coh, &sb);
    assert_true(sb.refused >= 1);

    node_close(&a);
    node_close(&b);
    loop_done(&loop);
}

typedef struct gen {
    int called;
    sl_cache_status_t status;
} gen_t;

static void on_gen(const sl_cache_reply_t *r, void *data)
{
    gen_t *g = data;
    g->called = 1;
    g->status = r->status;
}

static int gen_called(void *g)
{
    return ((gen_t *)g)->called;
}

/* A node that holds a lease but never acknowledges (dead, partitioned) is waited out: the
 * invalidation completes only after its lease has expired in Redis. */
static void test_silent_node_waited_out(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a;
    node_open(&a, &loop, service_port());
    assert_true(pump_until(&loop, 3000, coherent, a.coh));
    char key[128];
    snprintf(key, sizeof(key), "%snodes", prefix);
    const char *script =
        "local t = redis.call('TIME') "
        "redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 700, "
        "'silentnode') return 'ok'";
    const char *argv[] = {"EVAL", script, "1", key};
    size_t lens[] = {4, strlen(script), 1, strlen(key)};
    gen_t g = {0};
    sl_cache_command(a.cache, 4, argv, lens, on_gen, &g);
    assert_true(pump_until(&loop, 2000, gen_called, &g));
    assert_int_equal(g.status, SL_CACHE_OK);

    uint64_t t0 = uv_hrtime();
    inv_outcome_t o = {0};
    invalidate(&loop, &a, "s20", 2, &o);
    double waited_ms = (double)(o.at_ns - t0) / 1e6;
    assert_int_equal(o.status, SL_CACHE_OK);
    assert_true(waited_ms >= 600); /* the silent node's lease, less the time since the ZADD */
    assert_true(waited_ms < 2000);
    sl_coh_stats_t s;
    sl_coh_get_stats(a.coh, &s);
    assert_int_equal(s.lease_waits, 1);
    /* once expired it is not waited for again */
    t0 = uv_hrtime();
    inv_outcome_t o2 = {0};
    invalidate(&loop, &a, "s21", 2, &o2);
    assert_true((double)(o2.at_ns - t0) / 1e6 < 300);

    node_close(&a);
    loop_done(&loop);
}

/* Without Redis a node never trusts its memory and invalidations fail (so owner calls fail). */
static void test_no_redis(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a;
    node_open(&a, &loop, free_port());
    pump(&loop, 300);
    assert_false(sl_coh_coherent(a.coh));
    sl_coh_learn(a.coh, sl_coh_ticket(a.coh), "s1", 2, SL_PROJ_PUBLIC, 1, 0x5a);
    assert_false(knows(&a, "s1", NULL, NULL));
    inv_outcome_t o = {0};
    invalidate(&loop, &a, "s1", 2, &o);
    assert_int_not_equal(o.status, SL_CACHE_OK);
    node_close(&a);
    loop_done(&loop);
}

/* Frozen Redis: the lease lapses (memory dropped) within the lease; killed Redis: at once. After
 * Redis is back the node becomes coherent again, with an empty memory. */
static void test_frozen_and_killed_redis(void **state)
{
    (void)state;
    unsigned port = free_port();
    start_private(port);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a;
    node_open(&a, &loop, port);
    assert_true(pump_until(&loop, 5000, coherent, a.coh));
    sl_coh_learn(a.coh, sl_coh_ticket(a.coh), "s1", 2, SL_PROJ_PUBLIC, 1, 0x5a);
    assert_true(knows(&a, "s1", NULL, NULL));

    kill(private_pid, SIGSTOP);
    uint64_t t0 = uv_hrtime();
    assert_true(pump_until(&loop, 3000, not_coherent, a.coh));
    double lapse_ms = (double)(uv_hrtime() - t0) / 1e6;
    assert_true(lapse_ms <= COH.lease_ms - COH.margin_ms + 50);
    assert_false(knows(&a, "s1", NULL, NULL));
    kill(private_pid, SIGCONT);
    assert_true(pump_until(&loop, 5000, coherent, a.coh));
    assert_false(knows(&a, "s1", NULL, NULL)); /* memory was dropped */

    sl_coh_learn(a.coh, sl_coh_ticket(a.coh), "s2", 2, SL_PROJ_PUBLIC, 1, 0x5a);
    assert_true(knows(&a, "s2", NULL, NULL));
    kill(private_pid, SIGKILL);
    waitpid(private_pid, NULL, 0);
    private_pid = 0;
    t0 = uv_hrtime();
    assert_true(pump_until(&loop, 3000, not_coherent, a.coh));
    assert_true((double)(uv_hrtime() - t0) / 1e6 < 200); /* the subscription's loss, not the lease */
    assert_false(knows(&a, "s2", NULL, NULL));
    start_private(port);
    assert_true(pump_until(&loop, 8000, coherent, a.coh));
    assert_false(knows(&a, "s2", NULL, NULL));

    node_close(&a);
    loop_done(&loop);
}

/* Closing with an invalidation still waiting completes it with E_CLOSED, later. */
static void test_close_while_waiting(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    node_t a;
    node_open(&a, &loop, service_port());
    assert_true(pump_until(&loop, 3000, coherent, a.coh));
    inv_outcome_t o = {0};
    sl_coh_invalidate(a.coh, "s30", 3, 2, on_inv, &o);
    o.returned = 1;
    node_close(&a);
    assert_int_equal(o.called, 0);
    loop_done(&loop);
    assert_int_equal(o.called, 1);
    assert_int_equal(o.sync_call, 0);
    assert_int_not_equal(o.status, SL_CACHE_OK);
}

static void test_config_rejected(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sl_cache_config_t cfg = config(service_port());
    sl_cache_t *c;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    sl_coh_t *h;
    sl_coh_config_t bad = {.lease_ms = 500, .renew_ms = 400, .margin_ms = 100}; /* renewals too rare */
    assert_int_not_equal(sl_coh_open(&h, &loop, c, &cfg, &bad), 0);
    sl_coh_config_t bad2 = {.lease_ms = 500, .renew_ms = 50, .margin_ms = 600}; /* margin > lease */
    assert_int_not_equal(sl_coh_open(&h, &loop, c, &cfg, &bad2), 0);
    sl_cache_close(c);
    loop_done(&loop);
}

int main(void)
{
    snprintf(prefix, sizeof(prefix), "t%ld:", (long)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_invalidate_reaches_other_node, setup_prefix),
        cmocka_unit_test_setup(test_stale_answer_refused, setup_prefix),
        cmocka_unit_test_setup(test_silent_node_waited_out, setup_prefix),
        cmocka_unit_test_setup(test_no_redis, setup_prefix),
        cmocka_unit_test_setup_teardown(test_frozen_and_killed_redis, setup_prefix, teardown_private),
        cmocka_unit_test_setup(test_close_while_waiting, setup_prefix),
        cmocka_unit_test_setup(test_config_rejected, setup_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
