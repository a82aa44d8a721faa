/* Configuration of the shareline executable: a KEY=VALUE file plus environment overrides. */
#ifndef SL_CMD_CONFIG_H
#define SL_CMD_CONFIG_H

#include "cache/cache.h"
#include "core/core.h"
#include "store/store.h"

typedef struct sl_config {
    char *listen_host;
    unsigned port;
    char *public_url;
    char *tls_cert, *tls_key;
    size_t max_body;
    sl_cache_config_t cache;
    sl_store_config_t db;        /* owner account */
    sl_store_config_t db_public; /* public account (SELECT on public_* views only) */
    char *db_public_grantee_host;
    int node_memory;        /* SHARELINE_NODE_MEMORY: 1 (default) or 0 */
    int projection_scratch; /* SHARELINE_PROJECTION_SCRATCH: 0 (default) or 1 */
    unsigned chunks_min; /* SHARELINE_CHUNKS_MIN: visible exchanges from which a session keeps chunk state */
    size_t pieces_cache_bytes;    /* SHARELINE_PIECES_CACHE_BYTES: default 64 MiB, at least 1 MiB */
    unsigned node_lease_ms;       /* SHARELINE_NODE_LEASE_MS: default 1500 */
    size_t node_memory_bytes;     /* SHARELINE_NODE_MEMORY_BYTES: default 1/8 of RAM, 64 MiB..16 GiB */
    unsigned max_connections;     /* SHARELINE_MAX_CONNECTIONS: default 16384 */
    unsigned send_timeout_ms;     /* SHARELINE_SEND_TIMEOUT_MS: default 30000 */
    unsigned events_heartbeat_ms; /* SHARELINE_EVENTS_HEARTBEAT_MS: default 15000 */
    unsigned max_event_streams;   /* SHARELINE_MAX_EVENT_STREAMS: default 20000 */
    char *metrics_token;          /* SHARELINE_METRICS_TOKEN: when set, /metrics needs "Bearer <it>" */
} sl_config_t;

/* Loads defaults, then the file (SHARELINE_CONFIG, else ./var/shareline.env when it exists), then
 * the environment. Returns 0, or -1 with a message on stderr. */
int sl_config_load(sl_config_t *cfg);

#endif
