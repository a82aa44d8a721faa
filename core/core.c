/* The core object: opening it, its test hooks, and registering its methods. */
#include <stdlib.h>
#include <string.h>

#include "core/internal/core.h"

/* Test hooks come from the environment only, never from configuration files: a production
 * deployment cannot turn them on by accident in shareline.env. Both are read once, here. */
static unsigned env_unsigned(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

int sl_core_open(sl_core_t **out, uv_loop_t *loop, sl_store_t *owner, sl_store_t *public_, sl_cache_t *cache,
                 sl_coh_t *coh, const sl_core_config_t *cfg)
{
    sl_core_t *core = calloc(1, sizeof(*core));
    if (core == NULL)
        return -1;
    core->loop = loop;
    core->owner = owner;
    core->public_ = public_;
    core->cache = cache;
    core->coh = coh;
    core->cfg = *cfg;
    if (core->cfg.max_markdown == 0)
        core->cfg.max_markdown = 64u << 20;
    if (core->cfg.max_exchanges == 0)
        core->cfg.max_exchanges = 10000;
    if (core->cfg.pieces_cache_bytes == 0)
        core->cfg.pieces_cache_bytes = 64u << 20;
    core->pieces = sl_pcache_new(core->cfg.pieces_cache_bytes);
    if (core->pieces == NULL) {
        free(core);
        return -1;
    }
    core->hooks.fill_delay_ms = env_unsigned("SHARELINE_TEST_FILL_DELAY_MS");
    core->hooks.fail_publish = env_unsigned("SHARELINE_TEST_FAIL_PUBLISH");
    const char *base = cfg->public_base_url ? cfg->public_base_url : "http://127.0.0.1:8080";
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    core->base_url = n > SL_CORE_MAX_BASE_URL ? NULL : strndup(base, n);
    if (core->base_url == NULL) {
        sl_pcache_free(core->pieces);
        free(core);
        return -1;
    }
    core->cfg.public_base_url = core->base_url;
    *out = core;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void sl_core_close(sl_core_t *core)
{
    if (core == NULL)
        return;
    free(core->base_url);
    sl_pcache_free(core->pieces);
    if (core->repair_started) {
        /* the timer lives inside the core: the core is freed once libuv is done with it */
        uv_timer_stop(&core->repair_timer);
        core->repair_timer.data = core;
        uv_close((uv_handle_t *)&core->repair_timer, on_timer_closed);
        return;
    }
    free(core);
}

/* Every invalidation the node hears is a change notice for the transport's live events (rpc.h). */
static void on_invalidation(void *data, const char *id, size_t idlen)
{
    sl_rpc_changed(data, id, idlen);
}

int sl_core_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    if (sl_public_register(core, srv) != 0 || sl_owner_register(core, srv) != 0 ||
        sl_console_register(core, srv) != 0)
        return -1;
    if (core->coh) {
        sl_coh_set_listener(core->coh, on_invalidation, srv);
        sl_rpc_set_changes_available(srv, 1);
    }
    return 0;
}

void sl_core_get_stats(const sl_core_t *core, sl_core_stats_t *out)
{
    *out = core->stats;
    sl_pcache_stats_t ps;
    sl_pcache_stats(core->pieces, &ps);
    out->pieces_hits = ps.hits;
    out->pieces_misses = ps.misses;
    out->pieces_bytes = ps.bytes;
}
