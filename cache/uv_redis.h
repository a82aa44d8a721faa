/*
 * Internal to cache/: a small libuv event adapter for hiredis' async API.
 *
 * Unlike hiredis' own adapters/libuv.h (0.14), a poll error (status < 0: a refused or reset
 * connection reported as POLLERR/POLLHUP) is handed to hiredis instead of being ignored, so a
 * refused connect completes with an error instead of hanging forever (STACK_NOTES).
 */
#ifndef SL_CACHE_UV_REDIS_H
#define SL_CACHE_UV_REDIS_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop. Returns 0, or -1 (ac is left unattached; the caller frees it). */
int sl_uv_redis_attach(uv_loop_t *loop, redisAsyncContext *ac);

#endif
