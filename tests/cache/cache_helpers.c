/* The helpers of cache_helpers.h. */
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

char prefix[64];

sl_cache_config_t config(unsigned port)
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

unsigned service_port(void)
{
    return (unsigned)atoi(getenv("SHARELINE_REDIS_PORT") ? getenv("SHARELINE_REDIS_PORT") : "6379");
}

/* A port nothing listens on right now (the kernel's pick), for a private redis-server. */
unsigned free_port(void)
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

/* `returned` is set by the caller right after the registering call returns: a callback that finds
 * it unset ran synchronously, inside that call — which the contract forbids. */
void on_proj(const sl_proj_reply_t *r, void *data)
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

void on_gen(const sl_cache_reply_t *r, void *data)
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

void wait_for(uv_loop_t *loop, outcome_t *o)
{
    o->returned = 1;
    while (!o->called)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(o->sync_call, 0);
    assert_int_equal(o->called, 1);
}

/* Runs the loop for up to ms (real time) or until the client is connected. */
void wait_connected(sl_cache_t *c, uv_loop_t *loop, int ms)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    while (!sl_cache_connected(c) && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

void pump(uv_loop_t *loop, int ms)
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
void close_cache(sl_cache_t *c, uv_loop_t *loop)
{
    sl_cache_close(c);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

outcome_t cmd(sl_cache_t *c, uv_loop_t *loop, int argc, const char **argv)
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
long long key_ttl(sl_cache_t *c, uv_loop_t *loop, const char *what, const char *id)
{
    char key[128];
    snprintf(key, sizeof(key), "%sp:%s", prefix, id);
    const char *argv[] = {what, key};
    outcome_t o = cmd(c, loop, 2, argv);
    assert_int_equal(o.gen.status, SL_CACHE_OK);
    return o.gen.integer;
}

const sl_proj_content_t *content(content_t *k, const char *p)
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

outcome_t get_part(sl_cache_t *c, uv_loop_t *loop, const char *id, unsigned part)
{
    outcome_t o = {0};
    sl_cache_proj_get(c, id, strlen(id), part, on_proj, &o);
    wait_for(loop, &o);
    return o;
}

outcome_t get(sl_cache_t *c, uv_loop_t *loop, const char *id)
{
    outcome_t o = {0};
    sl_cache_proj_get(c, id, strlen(id), 0, on_proj, &o);
    wait_for(loop, &o);
    return o;
}

outcome_t head(sl_cache_t *c, uv_loop_t *loop, const char *id)
{
    outcome_t o = {0};
    sl_cache_proj_head(c, id, strlen(id), on_proj, &o);
    wait_for(loop, &o);
    return o;
}

int publish(sl_cache_t *c, uv_loop_t *loop, const char *id, sl_proj_kind_t kind, uint64_t v, const char *p)
{
    outcome_t o = {0};
    content_t k;
    sl_cache_proj_publish(c, id, strlen(id), kind, v, v * 31 + 7, content(&k, p), on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

int mark(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t v)
{
    outcome_t o = {0};
    sl_cache_proj_mark(c, id, strlen(id), v, 5000, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

int lease(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token)
{
    outcome_t o = {0};
    sl_cache_proj_lease(c, id, strlen(id), token, 5000, on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

int fill(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token, sl_proj_kind_t kind, uint64_t v,
         const char *p)
{
    outcome_t o = {0};
    content_t k;
    sl_cache_proj_fill(c, id, strlen(id), token, kind, v, v * 31 + 7, content(&k, p), on_proj, &o);
    wait_for(loop, &o);
    assert_int_equal(o.proj.status, SL_CACHE_OK);
    return o.proj.stored;
}

sl_cache_t *open_with(uv_loop_t *loop, const sl_cache_config_t *cfg)
{
    sl_cache_t *c;
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(sl_cache_open(&c, loop, cfg), 0);
    wait_connected(c, loop, 3000);
    assert_true(sl_cache_connected(c));
    return c;
}

sl_cache_t *open_service(uv_loop_t *loop)
{
    sl_cache_config_t cfg = config(service_port());
    return open_with(loop, &cfg);
}

static pid_t servers[8];

pid_t start_redis(unsigned port, const char *unix_path)
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

void stop_redis(pid_t pid)
{
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++)
        if (servers[i] == pid)
            servers[i] = 0;
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

void stop_all_redis(void)
{
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++)
        if (servers[i] != 0)
            stop_redis(servers[i]);
}

int teardown_servers(void **state)
{
    (void)state;
    stop_all_redis();
    return 0;
}

/* Trust (trust.c): a Redis whose marker is gone (an operator reset, a FLUSHALL, a restart from a
 * snapshot) is emptied of projection entries before any is served again, and the generation the
 * node memory watches changes. A refused mark or publish reports what holds the key. */