/*
 * Internal to cache/: a small libuv event adapter for hiredis' async API.
 *
 * One uv_poll_t on the context's fd, driven by hiredis' addRead/delRead/addWrite/delWrite hooks.
 * Unlike hiredis' own adapters/libuv.h (0.14), a poll error (status < 0: libuv's report of POLLERR,
 * e.g. a refused or reset connection) is handed to hiredis instead of being ignored, so a refused
 * connect completes with an error (connect callback with REDIS_ERR) instead of hanging forever.
 * The poll handle is closed from hiredis' cleanup hook and freed in its close callback.
 */
#ifndef SL_CACHE_UV_REDIS_H
#define SL_CACHE_UV_REDIS_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop. Call before redisAsyncSetConnectCallback() (which arms the first write
 * event). Returns 0, or -1 (ac is left unattached; the caller frees it). */
int sl_uv_redis_attach(uv_loop_t *loop, redisAsyncContext *ac);

#endif
