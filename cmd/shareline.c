/*
 * build/shareline — the server, and its admin subcommands:
 *
 *   shareline [serve]                                          run the server (foreground)
 *   shareline admin migrate                                    apply migrations, grant the public account
 *   shareline admin tenant create NAME                         -> tenant id
 *   shareline admin user create --tenant ID --handle H --name N -> user id
 *   shareline admin token create --user ID                     -> the token (shown once)
 *
 * This file only wires the modules together (store, cache, core, rpc, gateway).
 */
#include <malloc.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache/coherence.h"
#include "cmd/config.h"
#include "core/core.h"
#include "gateway/gateway.h"

static sl_config_t cfg; /* static: lives for the whole process */

static void usage(FILE *f)
{
    fprintf(f, "usage: shareline [serve]\n"
               "       shareline admin migrate\n"
               "       shareline admin tenant create NAME\n"
               "       shareline admin user create --tenant ID --handle HANDLE --name \"Display Name\"\n"
               "       shareline admin token create --user ID\n"
               "       shareline admin token create --service-tenant ID\n"
               "Configuration: var/shareline.env (or $SHARELINE_CONFIG) and SHARELINE_* environment "
               "variables; see README.md.\n");
}

/* ---- admin ---- */

static sl_store_sync_t *admin_db(void)
{
    sl_store_error_t err;
    sl_store_sync_t *db = sl_store_sync_open(&cfg.db, &err);
    if (db == NULL)
        fprintf(stderr, "shareline: cannot connect to MariaDB at %s:%u as %s: %s\n", cfg.db.host, cfg.db.port,
                cfg.db.user, err.message);
    return db;
}

/* Migrations, then SELECT on the public views for the public account (the only thing it may read). */
static int migrate(sl_store_sync_t *db)
{
    sl_store_error_t err;
    if (sl_store_migrate(db, &err) != 0) {
        fprintf(stderr, "shareline: migration failed: %s\n", err.message);
        return -1;
    }
    /* Account names cannot be statement parameters: they are checked, then quoted. */
    const char *names[] = {cfg.db_public.user, cfg.db_public_grantee_host};
    for (size_t i = 0; i < 2; i++)
        if (*names[i] == '\0' || strlen(names[i]) > 80 || strspn(names[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-%:") != strlen(names[i])) {
            fprintf(stderr, "shareline: SHARELINE_DB_PUBLIC_USER/_GRANTEE_HOST must be 1-80 of A-Z a-z 0-9 _ . - %% :\n");
            return -1;
        }
    static const char *const views[] = {"public_sessions", "public_exchanges"};
    for (size_t i = 0; i < 2; i++) {
        char sql[300];
        snprintf(sql, sizeof(sql), "GRANT SELECT ON %s TO '%s'@'%s'", views[i], names[0], names[1]);
        if (sl_store_sync_exec(db, sql, NULL, 0, NULL, &err) != 0) {
            fprintf(stderr, "shareline: cannot grant SELECT on %s to the public account %s@%s: %s\n", views[i],
                    names[0], names[1], err.message);
            return -1;
        }
    }
    return 0;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static int parse_id(const char *s, long long *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return -1;
    *out = strtoll(s, &end, 10);
    return *end == '\0' && *out > 0 ? 0 : -1;
}

static int insert_print_id(sl_store_sync_t *db, const char *sql, const sl_store_value_t *p, size_t n)
{
    sl_store_error_t err;
    sl_store_result_t *r;
    if (sl_store_sync_exec(db, sql, p, n, &r, &err) != 0) {
        fprintf(stderr, "shareline: %s\n", err.message);
        return 1;
    }
    printf("%llu\n", (unsigned long long)r->insert_id);
    sl_store_result_free(r);
    return 0;
}

static int admin(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    sl_store_sync_t *db = admin_db();
    if (db == NULL)
        return 1;
    int rc = 2;
    sl_store_error_t err;
    if (strcmp(argv[0], "migrate") == 0) {
        rc = migrate(db) == 0 ? 0 : 1;
    } else if (argc >= 3 && strcmp(argv[0], "tenant") == 0 && strcmp(argv[1], "create") == 0) {
        const char *name = argv[2];
        if (*name == '\0' || strlen(name) > 200) {
            fprintf(stderr, "shareline: tenant name must be 1-200 bytes\n");
            rc = 2;
        } else {
            sl_store_value_t p[] = {sl_store_text(name, strlen(name))};
            rc = insert_print_id(db, "INSERT INTO tenants (name) VALUES (?)", p, 1);
        }
    } else if (argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "create") == 0) {
        long long tenant;
        const char *handle = opt(argc, argv, "--handle"), *name = opt(argc, argv, "--name");
        if (parse_id(opt(argc, argv, "--tenant"), &tenant) != 0 || handle == NULL || name == NULL ||
            *handle == '\0' || strlen(handle) > 64 || *name == '\0' || strlen(name) > 200) {
            fprintf(stderr, "shareline: user create needs --tenant ID --handle HANDLE (1-64 bytes) "
                            "--name NAME (1-200 bytes)\n");
            rc = 2;
        } else {
            sl_store_value_t p[] = {sl_store_int(tenant), sl_store_text(handle, strlen(handle)),
                                    sl_store_text(name, strlen(name))};
            rc = insert_print_id(db, "INSERT INTO users (tenant_id, handle, display_name) VALUES (?, ?, ?)", p, 3);
        }
    } else if (argc >= 2 && strcmp(argv[0], "token") == 0 && strcmp(argv[1], "create") == 0) {
        long long user, tenant;
        char token[80];
        const char *svc = opt(argc, argv, "--service-tenant");
        if (svc != NULL) {
            /* A service token: tenant-scoped, acts for that tenant's users ("as_user"). */
            if (parse_id(svc, &tenant) != 0) {
                fprintf(stderr, "shareline: token create --service-tenant needs a tenant id\n");
                rc = 2;
            } else if (sl_core_token_new(token, sizeof(token)) != 0) {
                fprintf(stderr, "shareline: no randomness available\n");
                rc = 1;
            } else {
                unsigned char hash[32];
                sl_core_token_hash(token, strlen(token), hash);
                sl_store_value_t p[] = {sl_store_blob(hash, 32), sl_store_int(tenant)};
                sl_store_result_t *r;
                if (sl_store_sync_exec(db,
                                       "INSERT INTO tokens (token_hash, tenant_id, user_id, kind)"
                                       " SELECT ?, id, NULL, 'service' FROM tenants WHERE id = ?",
                                       p, 2, &r, &err) != 0) {
                    fprintf(stderr, "shareline: %s\n", err.message);
                    rc = 1;
                } else {
                    rc = r->affected_rows == 1 ? 0 : 1;
                    if (rc == 0)
                        printf("%s\n", token);
                    else
                        fprintf(stderr, "shareline: no tenant with id %lld\n", tenant);
                    sl_store_result_free(r);
                }
            }
        } else if (parse_id(opt(argc, argv, "--user"), &user) != 0) {
            fprintf(stderr, "shareline: token create needs --user ID (or --service-tenant ID)\n");
            rc = 2;
        } else if (sl_core_token_new(token, sizeof(token)) != 0) {
            fprintf(stderr, "shareline: no randomness available\n");
            rc = 1;
        } else {
            unsigned char hash[32];
            sl_core_token_hash(token, strlen(token), hash);
            sl_store_value_t p[] = {sl_store_blob(hash, 32), sl_store_int(user), sl_store_int(user)};
            sl_store_result_t *r;
            if (sl_store_sync_exec(db,
                                   "INSERT INTO tokens (token_hash, tenant_id, user_id, kind)"
                                   " SELECT ?, tenant_id, ?, 'user' FROM users WHERE id = ?",
                                   p, 3, &r, &err) != 0) {
                fprintf(stderr, "shareline: %s\n", err.message);
                rc = 1;
            } else {
                if (r->affected_rows == 1) {
                    printf("%s\n", token);
                    rc = 0;
                } else {
                    fprintf(stderr, "shareline: no user with id %lld\n", user);
                    rc = 1;
                }
                sl_store_result_free(r);
            }
        }
    } else {
        usage(stderr);
    }
    sl_store_sync_close(db);
    return rc;
}

/* ---- serve ---- */

typedef struct app {
    uv_loop_t *loop;
    sl_store_t *owner, *public_;
    sl_cache_t *cache;
    sl_coh_t *coh;
    sl_core_t *core;
    sl_rpc_server_t *rpc;
    sl_gateway_t *gw;
    uv_signal_t sigint, sigterm;
} app_t;

static int app_ready(void *data)
{
    app_t *app = data;
    return sl_store_ready(app->owner) && sl_store_ready(app->public_);
}

static void appendf(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void appendf(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : realloc(*buf, *len + (size_t)n + 1);
    if (p == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(p + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *buf = p;
    *len += (size_t)n;
}

#define COUNTER(name, help, value)                                                                              \
    appendf(buf, len, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",                     \
            (unsigned long long)(value))
#define GAUGE(name, help, value)                                                                                \
    appendf(buf, len, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %llu\n",                       \
            (unsigned long long)(value))

static void app_metrics(void *data, char **buf, size_t *len)
{
    app_t *app = data;
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
    COUNTER("shareline_public_memory_hits_total", "Public lookups answered from the node's memory (no Redis).",
            c.public_memory_hits);
    COUNTER("shareline_public_store_reads_total", "Public lookups that read MariaDB.", c.public_store_reads);
    COUNTER("shareline_public_fills_total", "Projections written to Redis by readers.", c.public_fills);
    COUNTER("shareline_public_unchanged_total",
            "Public lookups answered from the gateway's copy after Redis confirmed its version.", c.public_unchanged);
    COUNTER("shareline_public_fills_refused_total",
            "Reader fills refused because an owner change (a newer version) came first.", c.public_fills_refused);
    COUNTER("shareline_owner_calls_total", "Owner RPCs.", c.owner_calls);
    COUNTER("shareline_owner_errors_total", "Owner RPCs answered with an error.", c.owner_errors);
    COUNTER("shareline_publishes_total", "Projections published by owner changes.", c.publishes);
    COUNTER("shareline_cache_repairs_total", "Sessions published again by the repair after a failed publish.",
            c.cache_repairs);
    COUNTER("shareline_cache_commands_total", "Redis commands sent.", k.commands);
    COUNTER("shareline_cache_errors_total", "Redis commands that failed.", k.errors);
    COUNTER("shareline_cache_timeouts_total", "Redis commands that timed out.", k.timeouts);
    COUNTER("shareline_cache_connects_total", "Redis (re)connections.", k.connects);
    GAUGE("shareline_cache_up", "1 when connected to Redis.", sl_cache_connected(app->cache));
    COUNTER("shareline_store_owner_statements_total", "Statements on the owner account.", o.statements);
    COUNTER("shareline_store_public_statements_total", "Statements on the public account.", p.statements);
    COUNTER("shareline_store_errors_total", "Failed statements.", o.errors + p.errors);
    GAUGE("shareline_store_up", "1 when MariaDB is reachable.", sl_store_ready(app->owner));
    if (app->coh) {
        sl_coh_stats_t h;
        sl_coh_get_stats(app->coh, &h);
        GAUGE("shareline_node_coherent", "1 while the node may answer from its memory.", h.coherent);
        GAUGE("shareline_node_memory_entries", "Sessions whose current version the node remembers.", h.entries);
        COUNTER("shareline_node_invalidations_sent_total", "Invalidations this node published.", h.invalidations_sent);
        COUNTER("shareline_node_invalidations_received_total", "Invalidations received.", h.invalidations_received);
        COUNTER("shareline_node_acks_received_total", "Acknowledgements of our invalidations.", h.acks_received);
        COUNTER("shareline_node_lease_waits_total", "Nodes an invalidation waited out (no ack, lease expired).",
                h.lease_waits);
        COUNTER("shareline_node_learn_refused_total", "Redis answers not remembered (something changed meanwhile).",
                h.refused);
        COUNTER("shareline_node_coherence_lost_total", "Times the node stopped trusting its memory.", h.coherence_lost);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    fprintf(stderr, "shareline: signal %d, stopping\n", signum);
    uv_stop(s->loop);
}

static int serve(void)
{
    /* Every answer copies a projection variant (tens of KB) into h2o's request pool and frees it
     * right after: with glibc's defaults that memory goes back to the kernel and is faulted in again
     * on the next request (a profile showed ~15% of the CPU in page faults). Keep it. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    static app_t app; /* static: reachable until exit */
    /* Every connection is a descriptor: take the hard limit, and keep the connection cap below it
     * (room for MariaDB, Redis and the listener). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 256 &&
        cfg.max_connections > rl.rlim_cur - 256) {
        fprintf(stderr, "shareline: SHARELINE_MAX_CONNECTIONS lowered from %u to %lu (open file limit %lu)\n",
                cfg.max_connections, (unsigned long)(rl.rlim_cur - 256), (unsigned long)rl.rlim_cur);
        cfg.max_connections = (unsigned)(rl.rlim_cur - 256);
    }
    sl_store_error_t err;
    char msg[256];

    sl_store_sync_t *db = admin_db();
    if (db == NULL)
        return 1;
    int mrc = migrate(db);
    sl_store_sync_close(db);
    if (mrc != 0)
        return 1;

    app.loop = uv_default_loop();
    if (sl_cache_open(&app.cache, app.loop, &cfg.cache) != 0) {
        fprintf(stderr, "shareline: bad Redis configuration\n");
        return 1;
    }
    if (sl_store_open(&app.owner, app.loop, &cfg.db, &err) != 0 ||
        sl_store_open(&app.public_, app.loop, &cfg.db_public, &err) != 0) {
        fprintf(stderr, "shareline: bad MariaDB configuration: %s\n", err.message);
        return 1;
    }
    sl_core_config_t core_cfg = {.public_base_url = cfg.public_url};
    /* Test hook only (tests/e2e/stale_writeback.sh): never set it in production. */
    const char *delay = getenv("SHARELINE_TEST_FILL_DELAY_MS");
    if (delay && *delay)
        core_cfg.test_fill_delay_ms = (unsigned)strtoul(delay, NULL, 10);
    const char *failpub = getenv("SHARELINE_TEST_FAIL_PUBLISH"); /* test hook: tests/e2e/repair.sh */
    if (failpub && *failpub)
        core_cfg.test_fail_publish = (unsigned)strtoul(failpub, NULL, 10);
    sl_rpc_limits_t limits;
    sl_rpc_limits_default(&limits);
    /* The gateway enforces SHARELINE_MAX_BODY on RPC bodies itself; calls it makes internally (a
     * decompressed SpecStory upload) may be bigger, up to 256 MiB. */
    limits.max_body = cfg.max_body > (256u << 20) ? cfg.max_body : (256u << 20);
    app.rpc = sl_rpc_server_new(&limits);
    if (app.rpc == NULL || sl_core_open(&app.core, app.loop, app.owner, app.public_, app.cache, &core_cfg) != 0 ||
        sl_core_register(app.core, app.rpc) != 0) {
        fprintf(stderr, "shareline: out of memory\n");
        return 1;
    }
    sl_core_start_repair(app.core, 2000);
    if (cfg.node_memory) {
        /* lease/5 between renewals, a fifth of the lease as margin */
        sl_coh_config_t ccfg = {.lease_ms = cfg.node_lease_ms,
                                .renew_ms = cfg.node_lease_ms / 6,
                                .margin_ms = cfg.node_lease_ms / 5};
        if (sl_coh_open(&app.coh, app.loop, app.cache, &cfg.cache, &ccfg) != 0) {
            fprintf(stderr, "shareline: cannot start the node memory\n");
            return 1;
        }
        sl_core_set_coherence(app.core, app.coh);
    }
    sl_gateway_config_t gcfg = {
        .host = cfg.listen_host,
        .port = cfg.port,
        .tls_cert = cfg.tls_cert,
        .tls_key = cfg.tls_key,
        .max_body = cfg.max_body,
        .max_connections = cfg.max_connections,
        .send_timeout_ms = cfg.send_timeout_ms,
        .ready = app_ready,
        .metrics = app_metrics,
        .data = &app,
    };
    if (sl_gateway_start(&app.gw, app.loop, app.rpc, &gcfg, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "shareline: %s\n", msg);
        return 1;
    }
    uv_signal_init(app.loop, &app.sigint);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_init(app.loop, &app.sigterm);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    fprintf(stderr, "shareline: serving on %s://%s:%u (HTTP/1.1 and HTTP/2), public URL %s\n",
            cfg.tls_cert ? "https" : "http", cfg.listen_host, cfg.port, cfg.public_url);
    uv_run(app.loop, UV_RUN_DEFAULT);
    /* Stop accepting and exit; in-flight work is abandoned (owner calls are transactional). */
    sl_gateway_stop(app.gw);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (sl_config_load(&cfg) != 0)
        return 2;
    if (argc < 2 || strcmp(argv[1], "serve") == 0)
        return serve();
    if (strcmp(argv[1], "admin") == 0)
        return admin(argc - 2, argv + 2);
    usage(stderr);
    return 2;
}
