#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/config.h"

/* Every key, its default, and where it goes. Documented in README.md ("Configuration"). */
typedef struct kv {
    char *key, *value;
} kv_t;

static kv_t *vals;
static size_t nvals;

static void set(const char *k, size_t klen, const char *v, size_t vlen)
{
    for (size_t i = 0; i < nvals; i++)
        if (strlen(vals[i].key) == klen && memcmp(vals[i].key, k, klen) == 0) {
            free(vals[i].value);
            vals[i].value = strndup(v, vlen);
            return;
        }
    vals = realloc(vals, (nvals + 1) * sizeof(*vals));
    vals[nvals].key = strndup(k, klen);
    vals[nvals].value = strndup(v, vlen);
    nvals++;
}

static const char *get(const char *key, const char *def)
{
    const char *e = getenv(key);
    if (e != NULL)
        return e;
    for (size_t i = 0; i < nvals; i++)
        if (strcmp(vals[i].key, key) == 0)
            return vals[i].value;
    return def;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static int get_uint(const char *key, unsigned long long def, unsigned long long max, unsigned long long *out)
{
    const char *s = get(key, NULL);
    if (s == NULL || *s == '\0') {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) {
        fprintf(stderr, "shareline: configuration %s=%s is not a number up to %llu\n", key, s, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int load_file(const char *path, int must_exist)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (!must_exist && errno == ENOENT)
            return 0;
        fprintf(stderr, "shareline: cannot read configuration %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\0')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            fprintf(stderr, "shareline: %s:%d: expected KEY=VALUE\n", path, lineno);
            fclose(f);
            return -1;
        }
        char *v = eq + 1;
        size_t vlen = strlen(v);
        if (vlen >= 2 && ((v[0] == '"' && v[vlen - 1] == '"') || (v[0] == '\'' && v[vlen - 1] == '\''))) {
            v++;
            vlen -= 2;
        }
        set(p, (size_t)(eq - p), v, vlen);
    }
    fclose(f);
    return 0;
}

int sl_config_load(sl_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    const char *path = getenv("SHARELINE_CONFIG");
    if (load_file(path ? path : "var/shareline.env", path != NULL) != 0)
        return -1;
    unsigned long long v;
    cfg->listen_host = strdup(get("SHARELINE_LISTEN_HOST", "127.0.0.1"));
    if (get_uint("SHARELINE_PORT", 8080, 65535, &v) != 0)
        return -1;
    cfg->port = (unsigned)v;
    cfg->tls_cert = dup_or_null(get("SHARELINE_TLS_CERT", NULL));
    cfg->tls_key = dup_or_null(get("SHARELINE_TLS_KEY", NULL));
    /* The default share URL follows what is served: https when a certificate is set. */
    int tls = cfg->tls_cert && *cfg->tls_cert && cfg->tls_key && *cfg->tls_key;
    char url[300];
    snprintf(url, sizeof(url), "%s://%s:%u", tls ? "https" : "http", cfg->listen_host, cfg->port);
    cfg->public_url = strdup(get("SHARELINE_PUBLIC_URL", url));
    if (strlen(cfg->public_url) > SL_CORE_MAX_BASE_URL) {
        fprintf(stderr, "shareline: configuration SHARELINE_PUBLIC_URL must be at most %d bytes\n",
                SL_CORE_MAX_BASE_URL);
        return -1;
    }
    cfg->metrics_token = dup_or_null(get("SHARELINE_METRICS_TOKEN", NULL));
    if (get_uint("SHARELINE_MAX_BODY", 32u << 20, 1ull << 30, &v) != 0)
        return -1;
    cfg->max_body = (size_t)v;

    cfg->cache.host = strdup(get("SHARELINE_REDIS_HOST", "127.0.0.1"));
    if (get_uint("SHARELINE_REDIS_PORT", 6379, 65535, &v) != 0)
        return -1;
    cfg->cache.port = (unsigned)v;
    cfg->cache.key_prefix = strdup(get("SHARELINE_REDIS_PREFIX", "sl:"));
    if (get_uint("SHARELINE_REDIS_TIMEOUT_MS", 1000, 60000, &v) != 0)
        return -1;
    cfg->cache.command_timeout_ms = (unsigned)v;
    if (get_uint("SHARELINE_NODE_MEMORY", 1, 1, &v) != 0)
        return -1;
    cfg->node_memory = (int)v;
    if (get_uint("SHARELINE_PIECES_CACHE_BYTES", 64ull << 20, 1ull << 40, &v) != 0)
        return -1;
    if (v < (1ull << 20)) {
        fprintf(stderr, "shareline: configuration SHARELINE_PIECES_CACHE_BYTES must be at least 1048576\n");
        return -1;
    }
    cfg->pieces_cache_bytes = (size_t)v;
    if (get_uint("SHARELINE_PROJECTION_SCRATCH", 0, 1, &v) != 0)
        return -1;
    cfg->projection_scratch = (int)v;
    if (get_uint("SHARELINE_CHUNKS_MIN", 256, 10000000, &v) != 0)
        return -1;
    cfg->chunks_min = v ? (unsigned)v : 1;
    if (get_uint("SHARELINE_NODE_LEASE_MS", 1500, 60000, &v) != 0)
        return -1;
    if (v < 500) {
        fprintf(stderr, "shareline: configuration SHARELINE_NODE_LEASE_MS must be at least 500\n");
        return -1;
    }
    cfg->node_lease_ms = (unsigned)v;
    /* The copies of what the node served: by default an eighth of the machine's memory (so that
     * several nodes, Redis and MariaDB fit beside it), at least 64 MiB, at most 16 GiB. */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    unsigned long long ram =
        pages > 0 && psize > 0 ? (unsigned long long)pages * (unsigned long long)psize : 0;
    unsigned long long def = ram / 8;
    def = def < (64ull << 20) ? (64ull << 20) : def > (16ull << 30) ? (16ull << 30) : def;
    if (get_uint("SHARELINE_NODE_MEMORY_BYTES", def, 1ull << 40, &v) != 0)
        return -1;
    if (v < (1u << 20)) {
        fprintf(stderr, "shareline: configuration SHARELINE_NODE_MEMORY_BYTES must be at least 1048576\n");
        return -1;
    }
    cfg->node_memory_bytes = (size_t)v;
    if (get_uint("SHARELINE_MAX_CONNECTIONS", 16384, 1000000, &v) != 0)
        return -1;
    cfg->max_connections = (unsigned)v;
    if (get_uint("SHARELINE_SEND_TIMEOUT_MS", 30000, 3600000, &v) != 0)
        return -1;
    cfg->send_timeout_ms = (unsigned)v;
    if (get_uint("SHARELINE_EVENTS_HEARTBEAT_MS", 15000, 600000, &v) != 0)
        return -1;
    cfg->events_heartbeat_ms = (unsigned)v;
    if (get_uint("SHARELINE_MAX_EVENT_STREAMS", 20000, 1000000, &v) != 0)
        return -1;
    cfg->max_event_streams = (unsigned)v;

    sl_store_config_t *db = &cfg->db;
    db->host = strdup(get("SHARELINE_DB_HOST", "127.0.0.1"));
    if (get_uint("SHARELINE_DB_PORT", 3306, 65535, &v) != 0)
        return -1;
    db->port = (unsigned)v;
    db->unix_socket = dup_or_null(get("SHARELINE_DB_SOCKET", NULL));
    db->database = strdup(get("SHARELINE_DB_NAME", "shareline"));
    db->user = strdup(get("SHARELINE_DB_USER", "shareline_owner"));
    db->password = strdup(get("SHARELINE_DB_PASSWORD", ""));
    if (get_uint("SHARELINE_DB_POOL", 4, 256, &v) != 0)
        return -1;
    db->pool_size = (unsigned)v;
    cfg->db_public = *db;
    cfg->db_public.user = strdup(get("SHARELINE_DB_PUBLIC_USER", "shareline_public"));
    cfg->db_public.password = strdup(get("SHARELINE_DB_PUBLIC_PASSWORD", ""));
    cfg->db_public_grantee_host = strdup(get("SHARELINE_DB_PUBLIC_GRANTEE_HOST", "127.0.0.1"));
    return 0;
}
