/*
 * store — MariaDB access for Shareline: a pool of non-blocking connections on the caller's libuv
 * loop, prepared statements only, plus a small blocking API for start-up (migrations) and the
 * admin subcommands.
 *
 * The module knows nothing of the cache, of rpc or of HTTP; it runs the SQL it is given. SQL text
 * passed to sl_store_exec()/sl_store_query() must be a string that lives as long as the store
 * (a string literal): prepared statements are cached per connection by the pointer.
 *
 * Every callback is called exactly once, and never from inside the call that registered it
 * (always later, from the loop). A callback may start the next statement on the same connection.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sl_store sl_store_t;
typedef struct sl_store_conn sl_store_conn_t;

typedef struct sl_store_config {
    const char *host;        /* IP literal; NULL or "localhost" means unix_socket */
    unsigned port;           /* default 3306 */
    const char *unix_socket; /* used when host is NULL/"localhost" */
    const char *user;
    const char *password;
    const char *database;
    unsigned pool_size;          /* connections, default 4 */
    unsigned connect_timeout_ms; /* default 2000 */
    unsigned query_timeout_ms;   /* read/write timeout per statement, default 10000 */
    unsigned acquire_timeout_ms; /* how long sl_store_acquire() waits for a usable connection, default 3000 */
} sl_store_config_t;

typedef enum sl_store_code {
    SL_STORE_OK = 0,
    SL_STORE_E_CONN,    /* cannot connect / connection lost: the service is unavailable */
    SL_STORE_E_TIMEOUT, /* statement or acquire timed out */
    SL_STORE_E_DUP,     /* duplicate key (ER_DUP_ENTRY) */
    SL_STORE_E_QUERY,   /* any other server error (syntax, constraint, deadlock, ...) */
    SL_STORE_E_CLOSED,  /* the store is closing */
} sl_store_code_t;

typedef struct sl_store_error {
    sl_store_code_t code;
    unsigned server_errno; /* MariaDB/client error number, 0 when none */
    char message[256];
} sl_store_error_t;

typedef enum sl_store_type {
    SL_STORE_NULL = 0,
    SL_STORE_INT,  /* int64 */
    SL_STORE_TEXT, /* bytes meant as UTF-8 text (params are sent as strings) */
    SL_STORE_BLOB, /* bytes (params are sent as blobs) */
} sl_store_type_t;

/* A parameter or a result cell. Result cells: integer columns are INT, NULL is NULL, every other
 * column comes back as TEXT (its bytes; `ptr` is NUL-terminated for convenience, `len` excludes it). */
typedef struct sl_store_value {
    sl_store_type_t type;
    int64_t i;
    const void *ptr;
    size_t len;
} sl_store_value_t;

static inline sl_store_value_t sl_store_int(int64_t i)
{
    sl_store_value_t v = {SL_STORE_INT, i, NULL, 0};
    return v;
}
static inline sl_store_value_t sl_store_text(const char *s, size_t len)
{
    sl_store_value_t v = {SL_STORE_TEXT, 0, s, len};
    return v;
}
static inline sl_store_value_t sl_store_blob(const void *p, size_t len)
{
    sl_store_value_t v = {SL_STORE_BLOB, 0, p, len};
    return v;
}
static inline sl_store_value_t sl_store_null(void)
{
    sl_store_value_t v = {SL_STORE_NULL, 0, NULL, 0};
    return v;
}

/* The outcome of one statement. Owned by whoever receives it: free with sl_store_result_free(). */
typedef struct sl_store_result {
    size_t nrows, ncols;
    sl_store_value_t *cells; /* row-major: cells[row * ncols + col] */
    uint64_t affected_rows;
    uint64_t insert_id;
    void *arena; /* the text cells' bytes (blocks of store/convert.c), freed with the result */
} sl_store_result_t;

void sl_store_result_free(sl_store_result_t *res);

static inline const sl_store_value_t *sl_store_cell(const sl_store_result_t *r, size_t row, size_t col)
{
    return &r->cells[row * r->ncols + col];
}

/* The row of r whose integer column col equals v, r being ordered by that column (binary search);
 * r->nrows when there is none. */
static inline size_t sl_store_find_int(const sl_store_result_t *r, size_t col, int64_t v)
{
    size_t lo = 0, hi = r->nrows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t x = sl_store_cell(r, mid, col)->i;
        if (x == v)
            return mid;
        if (x < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->nrows;
}

/* ---- non-blocking pool ---- */

/* Creates the pool on `loop` and starts connecting in the background (reconnecting with backoff
 * while open). Copies cfg. Returns 0, or fills err and returns -1 (bad configuration). */
int sl_store_open(sl_store_t **out, uv_loop_t *loop, const sl_store_config_t *cfg, sl_store_error_t *err);

/* Fails queued acquires and running statements with SL_STORE_E_CLOSED, closes connections and
 * handles, then frees the store. */
void sl_store_close(sl_store_t *s);

/* 1 while at least one pooled connection is connected. */
int sl_store_ready(const sl_store_t *s);

typedef void (*sl_store_acquire_cb)(sl_store_conn_t *conn, const sl_store_error_t *err, void *data);
typedef void (*sl_store_query_cb)(sl_store_result_t *res, const sl_store_error_t *err, void *data);

/* Hands a connection to cb for exclusive use (a transaction, or several statements); waits in FIFO
 * order for one up to acquire_timeout_ms. On error conn is NULL. Give it back with sl_store_release(). */
void sl_store_acquire(sl_store_t *s, sl_store_acquire_cb cb, void *data);

/* Gives a connection back. If the caller left a transaction open (or a statement failed with a
 * connection error), the store rolls back / reconnects before lending it again. */
void sl_store_release(sl_store_conn_t *conn);

/* Runs one prepared statement on an acquired connection. `params` are copied before return.
 * On success res is non-NULL and owned by the callback; on error res is NULL. */
void sl_store_exec(sl_store_conn_t *conn, const char *sql, const sl_store_value_t *params, size_t nparams,
                   sl_store_query_cb cb, void *data);

/* acquire + exec + release, for a single statement outside a transaction. */
void sl_store_query(sl_store_t *s, const char *sql, const sl_store_value_t *params, size_t nparams,
                    sl_store_query_cb cb, void *data);

typedef struct sl_store_stats {
    uint64_t statements; /* statements executed */
    uint64_t errors;
    uint64_t reconnects;
} sl_store_stats_t;

void sl_store_get_stats(const sl_store_t *s, sl_store_stats_t *out);

/* ---- blocking API (start-up, admin subcommands, tests) ---- */

typedef struct sl_store_sync sl_store_sync_t;

sl_store_sync_t *sl_store_sync_open(const sl_store_config_t *cfg, sl_store_error_t *err);
void sl_store_sync_close(sl_store_sync_t *db);
/* Runs one statement (prepared). *res (if res is non-NULL) receives the result, owned by the caller. */
int sl_store_sync_exec(sl_store_sync_t *db, const char *sql, const sl_store_value_t *params, size_t nparams,
                       sl_store_result_t **res, sl_store_error_t *err);

/* Applies the schema migrations that are not yet applied (store/migrations.c), each in order,
 * recording them in schema_migrations. Idempotent. Returns 0, or -1 with err filled. */
int sl_store_migrate(sl_store_sync_t *db, sl_store_error_t *err);

#endif
