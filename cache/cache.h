/*
 * cache — the Redis side of Shareline: precomputed public projections, kept with versioned,
 * conditional writes, over hiredis' async API on the caller's libuv loop.
 *
 * The module knows nothing of sessions' contents, of the store, of rpc or of HTTP. It stores one
 * value per session id under the key "<prefix>p:<session id>"; the value is one of:
 *
 *   LEASE   "L<token>"                 a reader is rebuilding this entry (short TTL)
 *   MARK    "M<version>"               an owner change up to <version> is in flight: readers must
 *                                      read the store and may not fill (TTL)
 *   PUBLIC  "P<version> <tag> <n> <len 1> .. <len n> <meta>\n<part 1>..<part n>"
 *                                      the projection of <version>: up to SL_PROJ_PARTS opaque parts
 *                                      (e.g. one per stored representation) and a short opaque meta
 *                                      text; <tag> (16 hex digits) names its content (the caller's
 *                                      choice, e.g. a hash of its ETag): one version, one content.
 *                                      A get reads the head line and ONE part, never the others.
 *   TOMB    "T<version>"               not public at <version> (private, revoked, deleted)
 *
 * The write rules (each one Lua script, so atomic in Redis) are the invalidation protocol of
 * docs/invalidation.md:
 *   lease:   set L<token> only when the key is absent.
 *   fill:    set PUBLIC/TOMB only when the key still holds exactly L<token> (a reader's rebuild).
 *   mark:    set M<version> unless the key holds a PUBLIC/TOMB/MARK of a greater version.
 *   publish: set PUBLIC/TOMB of <version> when the key is absent, a LEASE, a MARK of version
 *            <= <version>, or a PUBLIC/TOMB of version < <version> (an owner's write).
 *
 * Every callback of this module is called exactly once, and never from inside the call that
 * registered it (always later, from the loop), whatever happens: success, error reply, timeout,
 * disconnect or sl_cache_close().
 */
#ifndef SL_CACHE_H
#define SL_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_cache sl_cache_t;

typedef struct sl_cache_config {
    const char *host;            /* IPv4/IPv6 literal ("127.0.0.1"); names are not resolved */
    unsigned port;               /* default 6379 */
    const char *unix_path;       /* when non-NULL, used instead of host/port */
    unsigned connect_timeout_ms; /* default 1000 */
    unsigned command_timeout_ms; /* default 1000; a timed-out command fails with SL_CACHE_E_TIMEOUT
                                    and the connection is dropped and re-made */
    unsigned reconnect_min_ms;   /* first reconnect delay, default 50; doubles per failure */
    unsigned reconnect_max_ms;   /* cap of the reconnect delay, default 2000 */
    const char *key_prefix;      /* default "sl:"; copied */
    unsigned public_ttl_s;       /* TTL of PUBLIC entries, default 86400; 0 = none */
    unsigned tomb_ttl_s;         /* TTL of TOMB entries, default 3600 */
    unsigned trust_check_ms;     /* how often the Redis' identity is checked (trust.c), default 1000 */
} sl_cache_config_t;

typedef enum sl_cache_status {
    SL_CACHE_OK = 0,
    SL_CACHE_E_DOWN,    /* not connected (or lost the connection before the reply) */
    SL_CACHE_E_TIMEOUT, /* no reply within command_timeout_ms */
    SL_CACHE_E_REPLY,   /* Redis answered with an error, or an unexpected reply */
    SL_CACHE_E_CLOSED,  /* sl_cache_close() was called */
} sl_cache_status_t;

typedef struct sl_cache_stats {
    uint64_t commands; /* commands sent */
    uint64_t errors;   /* callbacks with a status other than OK */
    uint64_t timeouts; /* of which timeouts */
    uint64_t connects; /* successful (re)connects */
    uint64_t disconnects;
    uint64_t trust_lost;    /* times a trusted Redis turned out to be another (or emptied) one */
    uint64_t trust_flushes; /* times this client emptied the projection entries before trusting */
} sl_cache_stats_t;

/* Opens a cache client on `loop` and starts connecting in the background (it keeps reconnecting
 * with backoff for as long as it is open). Copies what it needs of cfg. Returns 0, or a negative
 * errno-style value on bad configuration / out of memory. */
int sl_cache_open(sl_cache_t **out, uv_loop_t *loop, const sl_cache_config_t *cfg);

/* Fails every pending command with SL_CACHE_E_CLOSED (callbacks run later, from the loop), closes
 * the connection and the libuv handles, then frees the client. Safe to call from a callback. */
void sl_cache_close(sl_cache_t *c);

/* 1 when the connection is up (connected and not known to be broken) and the Redis it reaches is
 * trusted (below): projection commands can run. */
int sl_cache_connected(const sl_cache_t *c);

/* ---- trust (trust.c) ----
 *
 * Entries are trusted only in the Redis that they were written to since it started: the key
 * "<prefix>trusted:3" (3: the entry format) holds that Redis' run_id. After every connect, and every trust_check_ms, the
 * client compares it with INFO's run_id; when they differ (a restart, an RDB snapshot, a failover
 * to a replica, a FLUSHALL, or an operator deleting the key), projection commands fail with
 * SL_CACHE_E_DOWN until the client has deleted every "<prefix>p:*" entry and written the marker.
 * sl_cache_trust_generation() changes each time trust is lost or regained (the node memory forgets
 * everything then). */
int sl_cache_trusted(const sl_cache_t *c);
uint64_t sl_cache_trust_generation(const sl_cache_t *c);

void sl_cache_get_stats(const sl_cache_t *c, sl_cache_stats_t *out);

/* ---- projections ---- */

typedef enum sl_proj_kind {
    SL_PROJ_ABSENT = 0,
    SL_PROJ_LEASE,
    SL_PROJ_MARK,
    SL_PROJ_PUBLIC,
    SL_PROJ_TOMB,
} sl_proj_kind_t;

/* The content of a PUBLIC entry (fill, publish). */
#define SL_PROJ_PARTS    4
#define SL_PROJ_META_MAX 200
typedef struct sl_proj_content {
    const char *meta; /* opaque text without '\n', at most SL_PROJ_META_MAX bytes */
    size_t meta_len;
    size_t nparts; /* 1..SL_PROJ_PARTS */
    const void *part[SL_PROJ_PARTS];
    size_t len[SL_PROJ_PARTS];
} sl_proj_content_t;

typedef struct sl_proj_reply {
    sl_cache_status_t status;
    const char *error;   /* human text when status != OK (static or valid during the callback) */
    sl_proj_kind_t kind; /* get: what the key holds */
    uint64_t version;    /* get: version of MARK/PUBLIC/TOMB; token of LEASE */
    uint64_t tag;        /* get: the content tag of PUBLIC (0 for other kinds) */
    const void *payload; /* get: the requested part of PUBLIC; valid only during the callback */
    size_t len;
    const char *meta; /* get: the meta text of PUBLIC; valid only during the callback */
    size_t meta_len;
    int stored; /* lease/fill/mark/publish: 1 when the write took effect, 0 if refused; a refused
                   mark or publish also sets kind and version to what holds the key */
} sl_proj_reply_t;

typedef void (*sl_proj_cb)(const sl_proj_reply_t *reply, void *data);

/* Reads what the key holds and, for PUBLIC, part `part` (0-based) of it: one round trip, one
 * atomic read (a Lua script), whatever the size of the other parts. A PUBLIC entry without that
 * part answers status SL_CACHE_E_REPLY. */
void sl_cache_proj_get(sl_cache_t *c, const char *id, size_t idlen, unsigned part, sl_proj_cb cb, void *data);
/* Like get, but reads only the first 48 bytes (GETRANGE): kind, version and tag, never the payload.
 * For callers that hold a copy and only need to know whether it is still the current one. */
void sl_cache_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data);
void sl_cache_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_cb cb, void *data);
/* kind is SL_PROJ_PUBLIC (content and tag used) or SL_PROJ_TOMB (content and tag ignored). */
void sl_cache_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, uint64_t tag, const sl_proj_content_t *content, sl_proj_cb cb,
                        void *data);
void sl_cache_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_cb cb, void *data);
void sl_cache_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           uint64_t tag, const sl_proj_content_t *content, sl_proj_cb cb, void *data);
/* unmark: removes the entry only when it is exactly the MARK of version (an owner change that failed
 * before its commit, undone while it still holds the session's row lock); stored = 1 when removed. */
void sl_cache_proj_unmark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, sl_proj_cb cb,
                          void *data);

/* drop: removes the entry only when it is still exactly the PUBLIC entry of version with content
 * tag `tag` (a reader found blobs it names gone: the key is left absent, so the next reader takes a
 * lease and refills it from MariaDB); stored = 1 when removed. */
void sl_cache_proj_drop(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, uint64_t tag,
                        sl_proj_cb cb, void *data);

/* ---- exchange pieces (blobs.c, docs/pieces.md) ----
 *
 * "<prefix>x:<32 hex>": the blob of one exchange's pieces under the key it is named by (the hash of
 * everything it was made from: equal keys, equal bytes, for any session and node). A PUBLIC entry
 * holds a recipe naming its blobs; readers fetch the ones they lack. Written with a TTL (a blob no
 * recipe names any more goes by itself); a blob Redis evicted or let expire makes the reader drop
 * the entry and rebuild it from MariaDB. Like the projection commands, these run only while Redis
 * is trusted. */
typedef struct sl_blobs_reply {
    sl_cache_status_t status;
    const char *error;
    size_t n;                /* get: one per key asked */
    const void *const *blob; /* get: NULL where Redis holds none; valid only during the callback */
    const size_t *len;
} sl_blobs_reply_t;

typedef void (*sl_blobs_cb)(const sl_blobs_reply_t *reply, void *data);

/* MGET of n keys (n >= 1). */
void sl_cache_blobs_get(sl_cache_t *c, size_t n, const unsigned char (*keys)[16], sl_blobs_cb cb, void *data);
/* DEL of n keys (n >= 1): blobs of exchanges deleted by their owner; status OK when done. */
void sl_cache_blobs_del(sl_cache_t *c, size_t n, const unsigned char (*keys)[16], sl_blobs_cb cb, void *data);
/* SET of one blob with a TTL (seconds); status OK when stored. */
void sl_cache_blob_put(sl_cache_t *c, const unsigned char key[16], const void *blob, size_t len,
                       unsigned ttl_s, sl_blobs_cb cb, void *data);

/* ---- plain commands (health checks, tests, bench) ---- */

typedef struct sl_cache_reply {
    sl_cache_status_t status;
    const char *error;
    int is_nil;
    long long integer; /* integer replies */
    const char *str;   /* string/status replies; valid only during the callback */
    size_t len;
} sl_cache_reply_t;

typedef void (*sl_cache_cb)(const sl_cache_reply_t *reply, void *data);

/* Sends one command given as argv (binary-safe). Array replies are reported as an error. */
void sl_cache_command(sl_cache_t *c, int argc, const char **argv, const size_t *argvlen, sl_cache_cb cb,
                      void *data);

/* ---- node memory (coherence.c) ----
 *
 * Redis holds the authoritative projection entries (above). Asking it on every public GET costs a
 * round trip, a context switch to Redis and Redis' own CPU. This module lets a node remember, per
 * session id, "Redis holds PUBLIC (or TOMB) of version V", and answer from that memory, while
 * keeping the guarantee of docs/invalidation.md: once an owner's call returned, no node serves what
 * it removed. How (the full argument is in docs/invalidation.md, "Node memory"):
 *
 *  - Every node subscribes to the channel "<prefix>inv" and to its own "<prefix>c:<node id>", and
 *    holds a lease: a member of the sorted set "<prefix>nodes" scored with its expiry (Redis time),
 *    renewed every renew_ms for lease_ms. A renewal becomes usable only when its sync message,
 *    published right after it, arrives on the node's subscription: so every invalidation published
 *    before the renewal has been processed by then. The node trusts its memory only while its
 *    subscription is up and until (send time of the last confirmed renewal + lease_ms - margin_ms).
 *  - An owner change calls sl_coh_invalidate() after writing the MARK and again after publishing:
 *    it forgets the id locally, then one Lua script publishes the invalidation and returns every
 *    node with a live lease, atomically. The callback runs when each of those nodes acknowledged
 *    (it forgot the id before acknowledging) or its lease expired. Only then does the owner's call
 *    go on (and eventually return).
 *  - A node learns "id is at V" only from a Redis reply to a command sent with a ticket
 *    (sl_coh_ticket() before sending); the reply is refused if an invalidation of that id arrived
 *    after the ticket was taken, or the node was not coherent in between.
 *
 * When Redis is unreachable, frozen or restarted, subscriptions and renewals fail, leases lapse,
 * and nodes fall back to asking Redis (and, through the core, MariaDB).
 */

typedef struct sl_coh sl_coh_t;

typedef struct sl_coh_config {
    unsigned lease_ms;   /* default 1500 */
    unsigned renew_ms;   /* default 250 */
    unsigned margin_ms;  /* default 300: how much earlier than Redis' expiry a node stops trusting */
    size_t max_entries;  /* sessions remembered, default 262144; when full the oldest is evicted */
    size_t max_negative; /* ids remembered as never shared (TOMB of version 0, learnt from reads),
                            default 65536, evicted among themselves: unknown ids never push out real
                            entries */
} sl_coh_config_t;

typedef struct sl_coh_stats {
    uint64_t lookups, known;   /* sl_coh_lookup calls, of which answered */
    uint64_t learned, refused; /* sl_coh_learn accepted / refused */
    uint64_t invalidations_sent, invalidations_received, acks_received, lease_waits;
    uint64_t resubscribes, coherence_lost;
    size_t entries;
    int coherent;
} sl_coh_stats_t;

/* Opens the node's coherence on `loop`: its own subscriber connection (to redis_cfg's server, same
 * key prefix) and the renewals, sent through `data` (an open sl_cache_t, not owned). */
int sl_coh_open(sl_coh_t **out, uv_loop_t *loop, sl_cache_t *data, const sl_cache_config_t *redis_cfg,
                const sl_coh_config_t *cfg);
/* Pending invalidations complete with status SL_CACHE_E_CLOSED (later, from the loop). */
void sl_coh_close(sl_coh_t *h);

/* 1 when the node may currently trust its memory. */
int sl_coh_coherent(sl_coh_t *h);

/* 1 and *kind (SL_PROJ_PUBLIC or SL_PROJ_TOMB), *version and *tag when the node knows what Redis
 * holds for id; 0 when it must ask. */
int sl_coh_lookup(sl_coh_t *h, const char *id, size_t idlen, sl_proj_kind_t *kind, uint64_t *version,
                  uint64_t *tag);

/* Take before sending the Redis command whose reply you will pass to sl_coh_learn(). */
typedef struct sl_coh_ticket {
    uint64_t epoch, seq;
} sl_coh_ticket_t;
sl_coh_ticket_t sl_coh_ticket(sl_coh_t *h);

/* A reply to a command sent after `t` said Redis holds kind (PUBLIC or TOMB; anything else is
 * ignored) of version (and content tag) for id. Remembered unless something may have changed since
 * the ticket. TOMB of version 0 is a negative answer (the store shows no public session of that id). */
void sl_coh_learn(sl_coh_t *h, sl_coh_ticket_t t, const char *id, size_t idlen, sl_proj_kind_t kind,
                  uint64_t version, uint64_t tag);

/* Forgets id here, tells every node, and calls cb when every node that could trust its memory has
 * forgotten it (reply->status SL_CACHE_OK), or with an error status when the invalidation could not
 * be published (then the caller must not report success). Never calls cb from inside this call. */
void sl_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version, sl_proj_cb cb,
                       void *data);

void sl_coh_get_stats(sl_coh_t *h, sl_coh_stats_t *out);

/* Called with the id of every invalidation this node hears: another node's when it arrives (before
 * it is acknowledged), this node's own when sl_coh_invalidate() is called and again when it comes
 * back on the channel. Live events look again. It may run inside sl_coh_invalidate(): it must not
 * call back into the coherence synchronously. */
typedef void (*sl_coh_listener_fn)(void *data, const char *id, size_t idlen);
void sl_coh_set_listener(sl_coh_t *h, sl_coh_listener_fn fn, void *data);

#endif
