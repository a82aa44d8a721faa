/*
 * build/shareline — the server, and its admin subcommands (the operations live in the core's
 * admin API, core/core.h):
 *
 *   shareline [serve]                                          run the server (foreground)
 *   shareline admin migrate                                    apply migrations, grant the public account
 *   shareline admin tenant create NAME                         -> tenant id
 *   shareline admin user create --tenant ID --handle H --name N -> user id
 *   shareline admin token create --user ID                     -> the token (shown once)
 *   shareline admin token revoke TOKEN_OR_HASH                 (the token stops working at once)
 *   shareline admin login-link --user ID                       -> a one-time console sign-in URL
 *
 * This file only wires the modules together (store, cache, core, rpc, gateway); metrics.c says
 * which of their counters /metrics exports.
 */
#include <malloc.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cmd/app.h"
#include "cmd/config.h"

static sl_config_t cfg; /* static: lives for the whole process */

static void usage(FILE *f)
{
    fprintf(f, "usage: shareline [serve]\n"
               "       shareline admin migrate\n"
               "       shareline admin tenant create NAME\n"
               "       shareline admin user create --tenant ID --handle HANDLE --name \"Display Name\"\n"
               "       shareline admin token create --user ID\n"
               "       shareline admin token create --service-tenant ID\n"
               "       shareline admin token revoke TOKEN_OR_HASH\n"
               "       shareline admin login-link --user ID\n"
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

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

/* A positive integer option, or 0 when absent or not one. */
static uint64_t opt_id(int argc, char **argv, const char *name)
{
    const char *s = opt(argc, argv, name);
    char *end;
    if (s == NULL || *s == '\0')
        return 0;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v > 0 ? (uint64_t)v : 0;
}

/* Prints the one value an admin subcommand answers, or its error. Exit code 0, or 1. */
static int done(int rc, const char *value, const char *err)
{
    if (rc != 0) {
        fprintf(stderr, "shareline: %s\n", err);
        return 1;
    }
    if (value)
        printf("%s\n", value);
    return 0;
}

static int admin(int argc, char **argv)
{
    int is_tenant = argc >= 3 && strcmp(argv[0], "tenant") == 0 && strcmp(argv[1], "create") == 0;
    int is_user = argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "create") == 0;
    int is_token = argc >= 2 && strcmp(argv[0], "token") == 0 && strcmp(argv[1], "create") == 0;
    int is_revoke = argc >= 3 && strcmp(argv[0], "token") == 0 && strcmp(argv[1], "revoke") == 0;
    int is_migrate = argc >= 1 && strcmp(argv[0], "migrate") == 0;
    int is_link = argc >= 1 && strcmp(argv[0], "login-link") == 0;
    uint64_t user = is_token || is_link ? opt_id(argc, argv, "--user") : 0;
    uint64_t service = is_token ? opt_id(argc, argv, "--service-tenant") : 0;
    uint64_t tenant = is_user ? opt_id(argc, argv, "--tenant") : 0;
    const char *handle = opt(argc, argv, "--handle"), *name = opt(argc, argv, "--name");
    if (!is_tenant && !is_user && !is_token && !is_migrate && !is_revoke && !is_link) {
        usage(stderr);
        return 2;
    }
    if (is_user && (tenant == 0 || handle == NULL || name == NULL)) {
        fprintf(stderr, "shareline: user create needs --tenant ID --handle HANDLE (1-64 bytes) "
                        "--name NAME (1-200 bytes)\n");
        return 2;
    }
    if (is_token && user == 0 && service == 0) {
        fprintf(stderr, "shareline: token create needs --user ID (or --service-tenant ID)\n");
        return 2;
    }
    if (is_link && user == 0) {
        fprintf(stderr, "shareline: login-link needs --user ID\n");
        return 2;
    }
    sl_store_sync_t *db = admin_db();
    if (db == NULL)
        return 1;
    char err[512], value[80];
    uint64_t id = 0;
    int rc;
    if (is_migrate) {
        rc = done(sl_core_admin_migrate(db, cfg.db_public.user, cfg.db_public_grantee_host, err, sizeof(err)),
                  NULL, err);
    } else if (is_tenant) {
        rc = sl_core_admin_tenant_create(db, argv[2], &id, err, sizeof(err));
        snprintf(value, sizeof(value), "%llu", (unsigned long long)id);
        rc = done(rc, value, err);
    } else if (is_link) {
        char url[2048];
        rc = done(sl_core_admin_login_link(db, user, cfg.public_url, url, sizeof(url), err, sizeof(err)), url,
                  err);
        explicit_bzero(url, sizeof(url));
    } else if (is_revoke) {
        rc = done(sl_core_admin_token_revoke(db, argv[2], err, sizeof(err)), NULL, err);
    } else if (is_user) {
        rc = sl_core_admin_user_create(db, tenant, handle, name, &id, err, sizeof(err));
        snprintf(value, sizeof(value), "%llu", (unsigned long long)id);
        rc = done(rc, value, err);
    } else {
        rc = done(sl_core_admin_token_create(db, service ? 0 : user, service, value, sizeof(value), err,
                                             sizeof(err)),
                  value, err);
        explicit_bzero(value, sizeof(value));
    }
    sl_store_sync_close(db);
    return rc;
}

/* ---- serve ---- */

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
    static sl_app_t app; /* static: reachable until exit */
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
    char msg[512];

    sl_store_sync_t *db = admin_db();
    if (db == NULL)
        return 1;
    int mrc = sl_core_admin_migrate(db, cfg.db_public.user, cfg.db_public_grantee_host, msg, sizeof(msg));
    sl_store_sync_close(db);
    if (mrc != 0) {
        fprintf(stderr, "shareline: %s\n", msg);
        return 1;
    }

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
    if (cfg.node_memory) {
        /* lease/6 between renewals, a fifth of the lease as margin */
        sl_coh_config_t ccfg = {.lease_ms = cfg.node_lease_ms,
                                .renew_ms = cfg.node_lease_ms / 6,
                                .margin_ms = cfg.node_lease_ms / 5};
        if (sl_coh_open(&app.coh, app.loop, app.cache, &cfg.cache, &ccfg) != 0) {
            fprintf(stderr, "shareline: cannot start the node memory\n");
            return 1;
        }
    }
    sl_core_config_t core_cfg = {.public_base_url = cfg.public_url,
                                 .projection_scratch = cfg.projection_scratch,
                                 .chunks_min = cfg.chunks_min,
                                 .pieces_cache_bytes = cfg.pieces_cache_bytes};
    sl_rpc_limits_t limits;
    sl_rpc_limits_default(&limits);
    /* The gateway enforces SHARELINE_MAX_BODY on RPC bodies itself; calls it makes internally (a
     * decompressed SpecStory upload, at most 64 MiB of JSON) may be a little bigger. */
    limits.max_body = cfg.max_body > (65u << 20) ? cfg.max_body : (65u << 20);
    if (sl_rpc_server_open(&app.rpc, &limits) != 0 ||
        sl_core_open(&app.core, app.loop, app.owner, app.public_, app.cache, app.coh, &core_cfg) != 0 ||
        sl_core_register(app.core, app.rpc) != 0) {
        fprintf(stderr, "shareline: out of memory\n");
        return 1;
    }
    sl_core_repair_start(app.core, 2000);
    sl_gateway_config_t gcfg = {
        .host = cfg.listen_host,
        .port = cfg.port,
        .tls_cert = cfg.tls_cert,
        .tls_key = cfg.tls_key,
        .max_body = cfg.max_body,
        .max_connections = cfg.max_connections,
        .send_timeout_ms = cfg.send_timeout_ms,
        .events_heartbeat_ms = cfg.events_heartbeat_ms,
        .max_event_streams = cfg.max_event_streams,
        .share_cache_bytes = cfg.node_memory_bytes,
        .metrics_token = cfg.metrics_token,
        .public_url = cfg.public_url,
        .ready = sl_app_ready,
        .metrics = sl_app_metrics,
        .data = &app,
    };
    if (sl_gateway_open(&app.gw, app.loop, app.rpc, &gcfg, msg, sizeof(msg)) != 0) {
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
    sl_gateway_close(app.gw);
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
