/* cache/ against the real redis-server of the ctest `services` fixture: the commands and the
 * projection protocol (docs/invalidation.md: leases, fills, marks, publishes, staged values, TTLs).
 * Connections, trust and faults are in test_connection.c. Keys carry a per-run prefix. */
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
int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(prefix, sizeof(prefix), "test%d.%ld:", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_rejected),  cmocka_unit_test(test_commands),
        cmocka_unit_test(test_projection_rules), cmocka_unit_test(test_head),
        cmocka_unit_test(test_staged_values),    cmocka_unit_test(test_ttl_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
