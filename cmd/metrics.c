/*
 * Which counters /metrics exports besides the gateway's own: the core's, the cache's, the store
 * pools' and the node memory's, written with the gateway's Prometheus formatter.
 */
#include "cmd/app.h"

#define COUNTER(name, help, value) sl_gateway_metric(buf, len, name, "counter", help, (uint64_t)(value))
#define GAUGE(name, help, value)   sl_gateway_metric(buf, len, name, "gauge", help, (uint64_t)(value))

void sl_app_metrics(void *data, char **buf, size_t *len)
{
    sl_app_t *app = data;
    sl_core_stats_t c;
    sl_cache_stats_t k;
    sl_store_stats_t o, p;
    sl_core_get_stats(app->core, &c);
    sl_cache_get_stats(app->cache, &k);
    sl_store_get_stats(app->owner, &o);
    sl_store_get_stats(app->public_, &p);
    COUNTER("shareline_public_requests_total", "Public share lookups.", c.public_requests);
    COUNTER("shareline_public_cache_hits_total", "Public lookups answered from Redis or the node's memory.",
            c.public_cache_hits);
    COUNTER("shareline_public_memory_hits_total",
            "Public lookups answered from the node's memory (no Redis).", c.public_memory_hits);
    COUNTER("shareline_public_store_reads_total", "Public lookups that read MariaDB.", c.public_store_reads);
    COUNTER("shareline_public_fills_total", "Projections written to Redis by readers.", c.public_fills);
    COUNTER("shareline_public_unchanged_total",
            "Public lookups answered from the gateway's copy after Redis confirmed its version.",
            c.public_unchanged);
    COUNTER("shareline_public_fills_refused_total",
            "Reader fills refused because an owner change (a newer version) came first.",
            c.public_fills_refused);
    COUNTER("shareline_owner_calls_total", "Owner RPCs.", c.owner_calls);
    COUNTER("shareline_owner_errors_total", "Owner RPCs answered with an error.", c.owner_errors);
    COUNTER("shareline_publishes_total", "Projections published by owner changes.", c.publishes);
    COUNTER("shareline_pieces_hits_total", "Exchange pieces found in the node's memory (docs/pieces.md).",
            c.pieces_hits);
    COUNTER("shareline_pieces_misses_total",
            "Exchange pieces not in the node's memory (read from MariaDB, or rendered).", c.pieces_misses);
    COUNTER("shareline_pieces_rendered_total", "Exchanges whose pieces were rendered (new or changed).",
            c.pieces_rendered);
    COUNTER("shareline_chunk_builds_total", "Owner builds of a projection from the session's chunk state.",
            c.chunk_builds[1]);
    COUNTER("shareline_full_builds_total", "Projections built from every visible exchange.",
            c.chunk_builds[0]);
    COUNTER("shareline_chunk_fallbacks_total",
            "Owner builds that found the chunk state unusable and read every "
            "exchange.",
            c.chunk_fallbacks);
    COUNTER("shareline_pieces_stored_total", "Blobs of exchange pieces written to Redis (docs/pieces.md).",
            c.pieces_stored);
    COUNTER("shareline_pieces_fetched_total",
            "Blobs of exchange pieces read from Redis to assemble a document.", c.pieces_fetched);
    COUNTER("shareline_recipe_drops_total",
            "Redis entries dropped by a reader because a blob they name was gone (rebuilt from MariaDB).",
            c.recipe_drops);
    GAUGE("shareline_pieces_bytes",
          "Bytes of exchange pieces the node's memory holds (SHARELINE_PIECES_CACHE_BYTES).", c.pieces_bytes);
    COUNTER("shareline_cache_repairs_total", "Sessions published again by the repair after a failed publish.",
            c.cache_repairs);
    COUNTER("shareline_cache_versions_behind_total",
            "Owner writes that found Redis holding a version MariaDB never reached (a restore or failover); "
            "the session's version was moved past it.",
            c.versions_behind);
    COUNTER("shareline_cache_commands_total", "Redis commands sent.", k.commands);
    COUNTER("shareline_cache_errors_total", "Redis commands that failed.", k.errors);
    COUNTER("shareline_cache_timeouts_total", "Redis commands that timed out.", k.timeouts);
    COUNTER("shareline_cache_connects_total", "Redis (re)connections.", k.connects);
    COUNTER("shareline_cache_trust_lost_total",
            "Times the Redis reached turned out to be another one, or emptied (restart, snapshot, failover).",
            k.trust_lost);
    COUNTER("shareline_cache_trust_flushes_total",
            "Times this node emptied the projection entries of an untrusted Redis before using it.",
            k.trust_flushes);
    GAUGE("shareline_cache_up", "1 when connected to a Redis this node trusts.",
          sl_cache_connected(app->cache));
    COUNTER("shareline_store_owner_statements_total", "Statements on the owner account.", o.statements);
    COUNTER("shareline_store_public_statements_total", "Statements on the public account.", p.statements);
    COUNTER("shareline_store_errors_total", "Failed statements.", o.errors + p.errors);
    GAUGE("shareline_store_up", "1 when MariaDB is reachable.", sl_store_ready(app->owner));
    if (app->coh) {
        sl_coh_stats_t h;
        sl_coh_get_stats(app->coh, &h);
        GAUGE("shareline_node_coherent", "1 while the node may answer from its memory.", h.coherent);
        GAUGE("shareline_node_memory_entries", "Sessions whose current version the node remembers.",
              h.entries);
        COUNTER("shareline_node_invalidations_sent_total", "Invalidations this node published.",
                h.invalidations_sent);
        COUNTER("shareline_node_invalidations_received_total", "Invalidations received.",
                h.invalidations_received);
        COUNTER("shareline_node_acks_received_total", "Acknowledgements of our invalidations.",
                h.acks_received);
        COUNTER("shareline_node_lease_waits_total",
                "Nodes an invalidation waited out (no ack, lease expired).", h.lease_waits);
        COUNTER("shareline_node_learn_refused_total",
                "Redis answers not remembered (something changed meanwhile).", h.refused);
        COUNTER("shareline_node_coherence_lost_total", "Times the node stopped trusting its memory.",
                h.coherence_lost);
    }
}

int sl_app_ready(void *data)
{
    sl_app_t *app = data;
    return sl_store_ready(app->owner) && sl_store_ready(app->public_);
}
