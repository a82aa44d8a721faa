/* The core object and its method registrations. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

int sl_core_open(sl_core_t **out, uv_loop_t *loop, sl_store_t *owner, sl_store_t *public_, sl_cache_t *cache,
                 const sl_core_config_t *cfg)
{
    sl_core_t *core = calloc(1, sizeof(*core));
    if (core == NULL)
        return -1;
    core->loop = loop;
    core->owner = owner;
    core->public_ = public_;
    core->cache = cache;
    core->cfg = *cfg;
    if (core->cfg.max_markdown == 0)
        core->cfg.max_markdown = 64u << 20;
    if (core->cfg.max_exchanges == 0)
        core->cfg.max_exchanges = 10000;
    const char *base = cfg->public_base_url ? cfg->public_base_url : "http://127.0.0.1:8080";
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    core->base_url = strndup(base, n);
    if (core->base_url == NULL) {
        free(core);
        return -1;
    }
    core->cfg.public_base_url = core->base_url;
    *out = core;
    return 0;
}

void sl_core_set_coherence(sl_core_t *core, struct sl_coh *coh)
{
    core->coh = coh;
}

void sl_core_close(sl_core_t *core)
{
    if (core == NULL)
        return;
    free(core->base_url);
    free(core);
}

int sl_core_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    if (sl_public_register(core, srv) != 0 || sl_sessions_register(core, srv) != 0)
        return -1;
    return 0;
}

void sl_core_get_stats(const sl_core_t *core, sl_core_stats_t *out)
{
    *out = core->stats;
}
