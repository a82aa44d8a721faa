/* Helpers shared by the tests of cache/ against real redis-servers (test_cache.c: the projection
 * protocol; test_connection.c: connections, trust, faults; test_blobs.c: blobs of pieces). */
#ifndef SL_TESTS_CACHE_HELPERS_H
#define SL_TESTS_CACHE_HELPERS_H

#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"

/* The key prefix of this run (main() sets it): runs never clash. */
extern char prefix[64];

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

/* The content the helpers write: the test's text as part 0, "<text>/1" as part 1, meta
 * "meta <length of the text>". */
typedef struct content {
    sl_proj_content_t ct;
    char meta[64], second[64];
} content_t;

sl_cache_config_t config(unsigned port);
unsigned service_port(void);
unsigned free_port(void);
void on_proj(const sl_proj_reply_t *r, void *data);
void on_gen(const sl_cache_reply_t *r, void *data);
void wait_for(uv_loop_t *loop, outcome_t *o);
void wait_connected(sl_cache_t *c, uv_loop_t *loop, int ms);
void pump(uv_loop_t *loop, int ms);
void close_cache(sl_cache_t *c, uv_loop_t *loop);
outcome_t cmd(sl_cache_t *c, uv_loop_t *loop, int argc, const char **argv);
long long key_ttl(sl_cache_t *c, uv_loop_t *loop, const char *what, const char *id);
const sl_proj_content_t *content(content_t *k, const char *p);
outcome_t get_part(sl_cache_t *c, uv_loop_t *loop, const char *id, unsigned part);
outcome_t get(sl_cache_t *c, uv_loop_t *loop, const char *id);
outcome_t head(sl_cache_t *c, uv_loop_t *loop, const char *id);
int publish(sl_cache_t *c, uv_loop_t *loop, const char *id, sl_proj_kind_t kind, uint64_t v, const char *p);
int mark(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t v);
int lease(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token);
int fill(sl_cache_t *c, uv_loop_t *loop, const char *id, uint64_t token, sl_proj_kind_t kind, uint64_t v,
         const char *p);
sl_cache_t *open_with(uv_loop_t *loop, const sl_cache_config_t *cfg);
sl_cache_t *open_service(uv_loop_t *loop);
pid_t start_redis(unsigned port, const char *unix_path);
void stop_redis(pid_t pid);
void stop_all_redis(void);
int teardown_servers(void **state);

#endif
