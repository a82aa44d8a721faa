/* The serving process's modules, wired together by cmd/shareline.c; metrics.c reports on them. */
#ifndef SL_CMD_APP_H
#define SL_CMD_APP_H

#include "cache/cache.h"
#include "core/core.h"
#include "gateway/gateway.h"
#include "store/store.h"

typedef struct sl_app {
    uv_loop_t *loop;
    sl_store_t *owner, *public_;
    sl_cache_t *cache;
    sl_coh_t *coh;
    sl_core_t *core;
    sl_rpc_server_t *rpc;
    sl_gateway_t *gw;
    uv_signal_t sigint, sigterm;
} sl_app_t;

/* The gateway's /metrics and /readyz callbacks (data: the sl_app_t). */
void sl_app_metrics(void *data, char **buf, size_t *len);
int sl_app_ready(void *data);

#endif
