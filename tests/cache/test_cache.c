/* cache/ against a real redis-server: the one of the ctest `services` fixture, plus private ones
 * this test starts, stops, freezes (SIGSTOP) and restarts to exercise refused connects,
 * reconnects, timeouts and unix sockets. Keys carry a per-run prefix, so runs never clash. */
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

/* A port nothing listens on right now (the kernel's pick), for a private redis-server. */
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

typedef struct outcome {
    int called, returned, sync_call;
    sl_proj_reply_t proj;
    sl_cache_reply_t gen;
    char payload[256];
    char meta[256];
    char str[256];
    uint64_t at; /* uv_now() when the callback ran */
    uv_loop_t *loop;
} outcome_t;

/* `returned` is set by the caller right after the registering call returns: a callback that finds
 * it unset ran synchronously, inside that call — which the contract forbids. */
static void on_proj(const sl_proj_reply_t *r, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    if (o->loop)
        o->at = uv_now(o->loop);
    o->proj = *r;
    if (r->payload && r->len < sizeof(o->payload)) {
        memcpy(o->payload, r->payload, r->len);
        o->payload[r->len] = 0;
    }
    if (r->meta && r->meta_len < sizeof(o->meta)) {
        memcpy(o->meta, r->meta, r->meta_len);
        o->meta[r->meta_len] = 0;
    }
    o->proj.payload = NULL;
    o->proj.meta = NULL;
    o->proj.error = NULL;
}

static void on_gen(const sl_cache_reply_t *r, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    if (o->loop)
        o->at = uv_now(o->loop);
    o->gen = *r;
    if (r->str && r->len < sizeof(o->str)) {
        memcpy(o->str, r->str, r->len);
        o->str[r->len] = 0;
    } else if (r->error) {
        snprintf(o->str, sizeof(o->str), "%s", r->error);
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

/* Runs the loop for up to ms (real time) or until the client is connected. */
static void wait_connected(sl_cache_t *c, uv_loop_t *loop, int ms)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (!sl_cache_connected(c) && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

static void pump(uv_loop_t *loop, int ms)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

/* The contract: after sl_cache_close() the loop runs dry (no handle left behind). */
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

/* TTL (or PTTL) of the projection key of id. */
static long long key_ttl(sl_cache_t *c, uv_loop_t *loop, const char *what, const char *id)
{
    char key[128];
    snprintf(key, sizeof(key), "%sp:%s", prefix, id);
    const char *argv[] = {what, key};
    outcome_t o = cmd(c, loop, 2, argv);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    return o.gen.integer;
}

/* The content the helpers write: the test's text as part 0, "<text>/1" as part 1, meta
 * "meta <length of the text>". */
typedef struct content {
    sl_proj_content_t ct;
    char meta[64], second[64];
} content_t;

static const sl_proj_content_t *content(content_t *k, const char *p)
{
    if (p == NULL)
        return NULL;
    memset(k, 0, sizeof(*k));
    snprintf(k->meta, sizeof(k->meta), "meta %zu", strlen(p));
    snprintf(k->second, sizeof(k->second), "%s/1", p);
    k->ct.meta = k->meta;
    k->ct.meta_len = strlen(k->meta);
    k->ct.nparts = 2;
    k->ct.part[0] = p;
    k->ct.len[0] = strlen(p);
    k->ct.part[1] = k->second;
    k->ct.len[1] = strlen(k->second);
    return &k->ct;
}

static outcome_t get_part(sl_cache_t *c, uv_loop_t *loop, const char *id, unsigned part)
{
    outcome_t o = {0};
    sl_cache_proj_get(c, id, strlen(id), part, on_proj, &o);
    wait_for(loop, &o);
    return o;
}

static outcome_t get(sl_cache_t *c, uv_loop_t *loop, const char *id)
{
    outcome_t o = {0};
    sl_cache_proj_get(c, id, strlen(id), 0, on_proj, &o);
    wait_for(loop, &o);
    return o;
}

static outcome_t head(sl_cache_t *c, uv_loop_t *loop, const char *id)
{
    outcome_t o = {0};
    sl_cache_proj_head(c, id, strlen(id), on_proj, &o);
    wait_for(loop, &o);
    return o;
}

static int publish(sl_cache_t *c, uv_loop_t *loop, const char *id, sl_proj_kind_t kind, uint64_t v,
                   const char *p)
{
    outcome_t o = {0};
    content_t k;
    sl_cache_proj_publish(c, id, strlen(id), kind, v, v * 31 + 7, content(&k, p), on_proj, &o);
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

static int fill(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token, sl_proj_kind_t kind,
                uint64_t v, const char *p)
{
    outcome_t o = {0};
    content_t k;
    sl_cache_proj_fill(c, id, strlen(id), token, kind, v, v * 31 + 7, content(&k, p), on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

static sl_cache_t *open_with(uv_loop_t *loop, const sl_cache_config_t *cfg)
{
    sl_cache_t *c;
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(sl_cache_open(&c, loop, cfg), 0);
    wait_connected(c, loop, 3000);
    assert_true(sl_cache_connected(c));
    return c;
}

static sl_cache_t *open_service(uv_loop_t *loop)
{
    sl_cache_config_t cfg = config(service_port());
    return open_with(loop, &cfg);
}

static void test_config_rejected(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sl_cache_t *c = (sl_cache_t *)&loop; /* must be reset to NULL on failure */
    sl_cache_config_t cfg = config(service_port());
    assert_int_equal(sl_cache_open(&c, NULL, &cfg), -EINVAL);
    assert_null(c);
    assert_int_equal(sl_cache_open(&c, &loop, NULL), -EINVAL);
    cfg.port = 65536;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), -EINVAL);
    cfg = config(service_port());
    cfg.host = NULL;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), -EINVAL);
    cfg.host = "localhost"; /* names are not resolved (that would block the loop) */
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), -EINVAL);
    cfg = config(service_port());
    cfg.reconnect_min_ms = 500;
    cfg.reconnect_max_ms = 100;
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), -EINVAL);
    cfg = config(0);
    cfg.host = NULL;
    cfg.unix_path = "";
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), -EINVAL);
    assert_null(c);
    /* an IPv6 literal is accepted (and never reached here: nothing is run) */
    cfg = config(service_port());
    cfg.host = "::1";
    assert_int_equal(sl_cache_open(&c, &loop, &cfg), 0);
    assert_non_null(c);
    close_cache(c, &loop);
}

static void test_commands(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    sl_cache_stats_t st0; /* after the trust check of the connect (trust.c): its commands are not ours */
    sl_cache_get_stats(c, &st0);
    char key[96];
    snprintf(key, sizeof(key), "%sraw", prefix);
    const char *set[] = {"SET", key, "v1"};
    outcome_t o = cmd(c, &loop, 3, set);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    assert_string_equal(o.str, "OK");
    const char *getv[] = {"GET", key};
    o = cmd(c, &loop, 2, getv);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    assert_string_equal(o.str, "v1");
    const char *incr[] = {"INCRBY", key, "1"};
    o = cmd(c, &loop, 3, incr);
    assert_int_equal(o.gen.status, SL_CACHE_E_REPLY); /* not an integer: an error reply, with its text */
    assert_non_null(strstr(o.str, "not an integer"));
    const char *del[] = {"DEL", key};
    o = cmd(c, &loop, 2, del);
    assert_int_equal(o.gen.integer, 1);
    o = cmd(c, &loop, 2, getv);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    assert_int_equal(o.gen.is_nil, 1);
    const char *arr[] = {"KEYS", "nothing-matches-this*"};
    o = cmd(c, &loop, 2, arr);
    assert_int_equal(o.gen.status, SL_CACHE_E_REPLY);
    /* binary-safe arguments */
    const char bin[] = {'a', 0, 'b'};
    const char *setb[] = {"SET", key, bin};
    size_t lens[] = {3, strlen(key), sizeof(bin)};
    o = (outcome_t){0};
    sl_cache_command(c, 3, setb, lens, on_gen, &o);
    wait_for(&loop, &o);
    const char *strlen_[] = {"STRLEN", key};
    o = cmd(c, &loop, 2, strlen_);
    assert_int_equal(o.gen.integer, 3);
    cmd(c, &loop, 2, del);
    /* an empty command fails, later */
    o = (outcome_t){0};
    sl_cache_command(c, 0, NULL, NULL, on_gen, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.gen.status, SL_CACHE_E_REPLY);

    sl_cache_stats_t st;
    sl_cache_get_stats(c, &st);
    assert_int_equal(st.commands - st0.commands, 9);
    assert_int_equal(st.errors - st0.errors, 3);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.disconnects, 0);
    close_cache(c, &loop);
}

static void test_projection_rules(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    const char *id = "s1";
    assert_int_equal(get(c, &loop, id).proj.kind, SL_PROJ_ABSENT);

    /* lease only when absent, with its TTL */
    assert_int_equal(lease(c, &loop, id, 7), 1);
    assert_int_equal(lease(c, &loop, id, 8), 0);
    long long pttl = key_ttl(c, &loop, "PTTL", id);
    assert_true(pttl > 0 && pttl <= 5000);
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
    assert_int_equal(o.proj.len, strlen("doc v3\nwith newline"));
    assert_string_equal(o.meta, "meta 19");
    /* one part at a time: the second alone, then one the entry does not have */
    o = get_part(c, &loop, id, 1);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_string_equal(o.payload, "doc v3\nwith newline/1");
    assert_int_equal(o.proj.len, strlen("doc v3\nwith newline/1"));
    assert_int_equal(o.proj.tag, 3 * 31 + 7);
    o = get_part(c, &loop, id, 2);
    assert_int_equal(o.proj.status, SL_CACHE_E_REPLY);
    /* the head read gives version and tag without the parts */
    o = head(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_int_equal(o.proj.version, 3);
    assert_int_equal(o.proj.tag, 3 * 31 + 7);
    assert_int_equal(o.proj.len, 0);
    long long ttl = key_ttl(c, &loop, "TTL", id);
    assert_true(ttl > 86000 && ttl <= 86400);
    /* a fill after the lease is gone is refused */
    assert_int_equal(fill(c, &loop, id, 7, SL_PROJ_PUBLIC, 3, "again"), 0);

    /* publish: only newer than PUBLIC/TOMB */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 3, "same version"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 2, "older"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 4, "doc v4"), 1);
    /* mark: refused by a greater version, accepted otherwise (also over an equal PUBLIC) */
    assert_int_equal(mark(c, &loop, id, 3), 0);
    assert_int_equal(mark(c, &loop, id, 4), 1);
    assert_int_equal(mark(c, &loop, id, 5), 1); /* over a MARK of a lower version */
    assert_int_equal(mark(c, &loop, id, 5), 1); /* and of an equal one */
    assert_int_equal(mark(c, &loop, id, 4), 0); /* but not a lower one over it */
    o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_MARK);
    assert_int_equal(o.proj.version, 5);
    pttl = key_ttl(c, &loop, "PTTL", id);
    assert_true(pttl > 0 && pttl <= 5000);
    /* readers cannot lease or fill over a mark */
    assert_int_equal(lease(c, &loop, id, 9), 0);
    assert_int_equal(fill(c, &loop, id, 9, SL_PROJ_PUBLIC, 5, "reader"), 0);
    /* publish over a mark: not of an older version, yes of the same or newer */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 4, "stale builder"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_TOMB, 5, NULL), 1);
    o = get(c, &loop, id);
    assert_int_equal(o.proj.kind, SL_PROJ_TOMB);
    assert_int_equal(o.proj.version, 5);
    ttl = key_ttl(c, &loop, "TTL", id);
    assert_true(ttl > 3000 && ttl <= 3600);
    /* the stale write-back of N after N+1 is stored is rejected */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 5, "v5 public, late"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 6, "v6"), 1);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_PUBLIC, 5, "v5 late"), 0);
    assert_int_equal(publish(c, &loop, id, SL_PROJ_TOMB, 5, NULL), 0);
    assert_string_equal(get(c, &loop, id).payload, "v6");
    /* a mark over a TOMB of a lower version */
    assert_int_equal(publish(c, &loop, id, SL_PROJ_TOMB, 7, NULL), 1);
    assert_int_equal(mark(c, &loop, id, 6), 0);
    assert_int_equal(mark(c, &loop, id, 8), 1);

    /* publish over a lease wins; the reader's fill after it is refused */
    const char *id2 = "s2";
    assert_int_equal(lease(c, &loop, id2, 1), 1);
    assert_int_equal(publish(c, &loop, id2, SL_PROJ_PUBLIC, 1, "owner"), 1);
    assert_int_equal(fill(c, &loop, id2, 1, SL_PROJ_PUBLIC, 0, "reader late"), 0);
    assert_string_equal(get(c, &loop, id2).payload, "owner");
    /* a mark over a lease wins */
    const char *id5 = "s5";
    assert_int_equal(lease(c, &loop, id5, 3), 1);
    assert_int_equal(mark(c, &loop, id5, 1), 1);
    assert_int_equal(get(c, &loop, id5).proj.kind, SL_PROJ_MARK);
    /* a reader's fill of a TOMB, and an empty PUBLIC payload */
    const char *id6 = "s6";
    assert_int_equal(lease(c, &loop, id6, 11), 1);
    assert_int_equal(fill(c, &loop, id6, 11, SL_PROJ_TOMB, 2, "ignored"), 1);
    o = get(c, &loop, id6);
    assert_int_equal(o.proj.kind, SL_PROJ_TOMB);
    assert_int_equal(o.proj.version, 2);
    assert_int_equal(o.proj.len, 0);
    assert_int_equal(publish(c, &loop, id6, SL_PROJ_PUBLIC, 3, ""), 1);
    o = get(c, &loop, id6);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_int_equal(o.proj.len, 0);

    /* versions beyond 2^53 compare exactly (no double rounding) */
    const char *id3 = "s3";
    uint64_t big = (1ull << 53) + 1;
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big, "big"), 1);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big - 1, "big-1"), 0);
    assert_int_equal(mark(c, &loop, id3, big - 1), 0);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, big + 1, "big+1"), 1);
    assert_int_equal(get(c, &loop, id3).proj.version, big + 1);
    assert_int_equal(mark(c, &loop, id3, UINT64_MAX - 1), 1);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, UINT64_MAX - 2, "max-2"), 0);
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, UINT64_MAX, "max"), 1);
    o = get(c, &loop, id3);
    assert_int_equal(o.proj.version, UINT64_MAX);
    assert_string_equal(o.payload, "max");
    assert_int_equal(publish(c, &loop, id3, SL_PROJ_PUBLIC, UINT64_MAX - 1, "max-1"), 0);
    /* 10 vs 9: the longer decimal is the greater */
    const char *id4 = "s4";
    assert_int_equal(publish(c, &loop, id4, SL_PROJ_PUBLIC, 10, "ten"), 1);
    assert_int_equal(publish(c, &loop, id4, SL_PROJ_PUBLIC, 9, "nine"), 0);
    assert_int_equal(mark(c, &loop, id4, 9), 0);
    assert_int_equal(publish(c, &loop, id4, SL_PROJ_PUBLIC, 100, "hundred"), 1);

    /* only PUBLIC/TOMB can be written; the error comes later, from the loop */
    o = (outcome_t){0};
    sl_cache_proj_publish(c, "s7", 2, SL_PROJ_LEASE, 1, 0, NULL, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_E_REPLY);
    o = (outcome_t){0};
    sl_cache_proj_fill(c, "s7", 2, 1, SL_PROJ_MARK, 1, 0, NULL, on_proj, &o);
    wait_for(&loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_E_REPLY);

    /* a value that is not ours is reported, not misread */
    char key[96];
    snprintf(key, sizeof(key), "%sp:junk", prefix);
    const char *junk[] = {"T99999999999999999999999",
                          "P12",
                          "X1",
                          "M",
                          "L12a",
                          "Pnotanumber",
                          "P0 0000000000000001 9 1 m\nx",
                          "P0 00000000000000zz 1 1 m\nx",
                          "P0 0000000000000001 1\nx",
                          "P0 0000000000000001\nx"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        const char *set[] = {"SET", key, junk[i]};
        cmd(c, &loop, 3, set);
        o = get(c, &loop, "junk");
        assert_int_equal(o.proj.status, SL_CACHE_E_REPLY);
        assert_int_equal(o.proj.kind, SL_PROJ_ABSENT);
    }
    /* ... and the owner's publish repairs it (a version that is not all digits counts as none) */
    assert_int_equal(publish(c, &loop, "junk", SL_PROJ_PUBLIC, 1, "repaired"), 1);
    assert_string_equal(get(c, &loop, "junk").payload, "repaired");
    close_cache(c, &loop);
}

static void test_head(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_t *c = open_service(&loop);
    assert_int_equal(head(c, &loop, "h").proj.kind, SL_PROJ_ABSENT);
    assert_int_equal(head(c, &loop, "h").proj.status, SL_CACHE_OK);
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(publish(c, &loop, "h", SL_PROJ_PUBLIC, UINT64_MAX - 5, big), 1);
    outcome_t o = head(c, &loop, "h");
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    assert_int_equal(o.proj.kind, SL_PROJ_PUBLIC);
    assert_int_equal(o.proj.version, UINT64_MAX - 5);
    assert_true(o.proj.tag == (uint64_t)(UINT64_MAX - 5) * 31 + 7); /* the content tag (publish above) */
    assert_int_equal(o.proj.len, 0); /* the payload is never reported by head */
    assert_int_equal(mark(c, &loop, "h", UINT64_MAX), 1);
    o = head(c, &loop, "h");
    assert_int_equal(o.proj.kind, SL_PROJ_MARK);
    assert_int_equal(o.proj.version, UINT64_MAX);
    assert_int_equal(lease(c, &loop, "h2", 42), 1);
    o = head(c, &loop, "h2");
    assert_int_equal(o.proj.kind, SL_PROJ_LEASE);
    assert_int_equal(o.proj.version, 42);
    close_cache(c, &loop);
}

/* ---- large values: staged under a key of their own, moved into place by the script ---- */

typedef struct big_read {
    int called, same;
    size_t len;
    const char *want;
    size_t want_len;
} big_read_t;

static void on_big(const sl_proj_reply_t *r, void *data)
{
    big_read_t *b = data;
    b->called++;
    b->len = r->len;
    b->same = r->status == SL_CACHE_OK && r->kind == SL_PROJ_PUBLIC && r->len == b->want_len &&
              memcmp(r->payload, b->want, r->len) == 0;
}

static int read_back(sl_cache_t *c, uv_loop_t *loop, const char *id, const char *want, size_t n)
{
    big_read_t b = {0, 0, 0, want, n};
    sl_cache_proj_get(c, id, strlen(id), 0, on_big, &b);
    while (!b.called)
        uv_run(loop, UV_RUN_ONCE);
    return b.same;
}

/* How many staging keys of this run Redis holds. */
static long long staged_keys(sl_cache_t *c, uv_loop_t *loop)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "%ss:*", prefix);
    const char *argv[] = {"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pat};
    outcome_t o = cmd(c, loop, 4, argv);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    return o.gen.integer;
}

static void test_staged_values(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_config_t cfg = config(service_port());
    cfg.public_ttl_s = 100;
    sl_cache_t *c = open_with(&loop, &cfg);
    size_t n = 300000;
    char *big = malloc(n + 1), *big2 = malloc(n + 1);
    assert_non_null(big);
    assert_non_null(big2);
    for (size_t i = 0; i < n; i++) {
        big[i] = (char)('a' + (i * 7 + i / 1000) % 26);
        big2[i] = (char)('A' + (i * 3) % 26);
    }
    big[n] = big2[n] = 0;
    /* published: the very bytes, the PUBLIC TTL (not the staging key's minute), no staging key left */
    assert_int_equal(publish(c, &loop, "st", SL_PROJ_PUBLIC, 3, big), 1);
    assert_true(read_back(c, &loop, "st", big, n));
    long long ttl = key_ttl(c, &loop, "TTL", "st");
    assert_true(ttl > 60 && ttl <= 100);
    assert_int_equal(staged_keys(c, &loop), 0);
    /* refused (not newer; under a later MARK): the entry is unchanged and the staged value gone */
    assert_int_equal(publish(c, &loop, "st", SL_PROJ_PUBLIC, 3, big2), 0);
    assert_true(read_back(c, &loop, "st", big, n));
    assert_int_equal(mark(c, &loop, "st", 9), 1);
    assert_int_equal(publish(c, &loop, "st", SL_PROJ_PUBLIC, 4, big2), 0);
    assert_int_equal(staged_keys(c, &loop), 0);
    assert_int_equal(publish(c, &loop, "st", SL_PROJ_PUBLIC, 9, big2), 1);
    assert_true(read_back(c, &loop, "st", big2, n));
    /* fill: under its lease it lands; without it, nothing changes and nothing is left behind */
    assert_int_equal(lease(c, &loop, "st2", 77), 1);
    assert_int_equal(fill(c, &loop, "st2", 77, SL_PROJ_PUBLIC, 5, big), 1);
    assert_true(read_back(c, &loop, "st2", big, n));
    assert_int_equal(fill(c, &loop, "st2", 77, SL_PROJ_PUBLIC, 6, big2), 0);
    assert_true(read_back(c, &loop, "st2", big, n));
    assert_int_equal(staged_keys(c, &loop), 0);
    /* with no PUBLIC TTL configured, a staged value does not keep the staging key's */
    close_cache(c, &loop);
    cfg.public_ttl_s = 0;
    cfg.tomb_ttl_s = 30; /* both zero would mean the defaults (cache.c) */
    c = open_with(&loop, &cfg);
    assert_int_equal(publish(c, &loop, "st3", SL_PROJ_PUBLIC, 1, big), 1);
    assert_int_equal(key_ttl(c, &loop, "TTL", "st3"), -1);
    assert_true(read_back(c, &loop, "st3", big, n));
    free(big);
    free(big2);
    close_cache(c, &loop);
}

/* public_ttl_s = 0 next to a tomb TTL: PUBLIC entries do not expire, TOMBs do. */
static void test_ttl_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    sl_cache_config_t cfg = config(service_port());
    cfg.public_ttl_s = 0;
    cfg.tomb_ttl_s = 60;
    sl_cache_t *c = open_with(&loop, &cfg);
    assert_int_equal(publish(c, &loop, "t1", SL_PROJ_PUBLIC, 1, "forever"), 1);
    assert_int_equal(key_ttl(c, &loop, "TTL", "t1"), -1);
    assert_int_equal(publish(c, &loop, "t2", SL_PROJ_TOMB, 1, NULL), 1);
    long long ttl = key_ttl(c, &loop, "TTL", "t2");
    assert_true(ttl > 0 && ttl <= 60);
    close_cache(c, &loop);
}

/* ---- private redis-servers for failure tests ---- */

/* Every private server is tracked so that a failed assertion (cmocka longjmps past the test's own
 * stop_redis()) never leaves one running: the teardown of each test that starts one, and exit,
 * stop what is left; and the kernel kills them if this process dies (PR_SET_PDEATHSIG). */
static pid_t servers[8];

static pid_t start_redis(unsigned port, const char *unix_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the parent is already gone */
        char p[16];
        snprintf(p, sizeof(p), "%u", port);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2); /* never hold the test runner's pipes open */
        if (unix_path)
            execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", unix_path, "--save", "",
                   "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
        if (servers[i] == 0) {
            servers[i] = pid;
            return pid;
        }
    }
    fail_msg("too many private redis-servers");
    return pid;
}

static void stop_redis(pid_t pid)
{
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++)
        if (servers[i] == pid)
            servers[i] = 0;
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void stop_all_redis(void)
{
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++)
        if (servers[i] != 0)
            stop_redis(servers[i]);
}

static int teardown_servers(void **state)
{
    (void)state;
    stop_all_redis();
    return 0;
}

/* Trust (trust.c): a Redis whose marker is gone (an operator reset, a FLUSHALL, a restart from a
 * snapshot) is emptied of projection entries before any is served again, and the generation the
 * node memory watches changes. A refused mark or publish reports what holds the key. */
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
    snprintf(prefix, sizeof(prefix), "test%d.%ld:", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rejected),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_projection_rules),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_staged_values),
        cmocka_unit_test(test_ttl_config),
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
