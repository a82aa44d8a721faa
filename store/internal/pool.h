/*
 * Internal to store/: the non-blocking pool's state, shared by pool.c (the pool: acquiring,
 * releasing, health checks, deferred completions, closing) and conn.c (one connection: connecting,
 * the library's non-blocking operations, statements).
 */
#ifndef SL_STORE_INTERNAL_POOL_H
#define SL_STORE_INTERNAL_POOL_H

#include "store/internal/store.h"

#define RECONNECT_MIN_MS   50
#define RECONNECT_MAX_MS   2000
#define HEALTH_INTERVAL_MS 1000
#define PING_TIMEOUT_MS    2000

typedef enum cstate {
    C_DOWN,       /* not connected; the timer schedules the next attempt */
    C_CONNECTING, /* OP_CONNECT running */
    C_IDLE,       /* connected, in the pool */
    C_LENT,       /* handed out by acquire */
    C_RESET,      /* rolling back what a caller left open */
    C_PING,       /* health check of an idle connection */
} cstate_t;

typedef enum op {
    OP_NONE,
    OP_CONNECT,
    OP_PREPARE,
    OP_EXECUTE,
    OP_STORE,
    OP_QUERY_TEXT,
    OP_STORE_TEXT,
    OP_ROLLBACK,
    OP_PING,
} op_t;

typedef struct stmt_entry {
    const char *sql; /* cache key: the pointer (SQL text lives as long as the store) */
    MYSQL_STMT *stmt;
    int text; /* the server will not prepare it: run it with the text protocol */
} stmt_entry_t;

struct sl_store_conn {
    sl_store_t *s;
    MYSQL *m;
    uv_poll_t *poll; /* per MYSQL connection (its socket), freed in its close callback */
    uv_timer_t timer;
    cstate_t state;
    op_t op;
    int broken;    /* a connection error happened: re-make before lending again */
    int timed_out; /* the current operation hit its deadline */
    int ever_connected;
    int release_after; /* released while a statement was running */
    unsigned backoff_ms;
    uint64_t deadline;
    uint64_t last_used;

    stmt_entry_t *stmts;
    size_t nstmts, capstmts;

    /* the statement in progress */
    const char *sql;
    stmt_entry_t *entry;
    sl_store_value_t *params;
    size_t nparams;
    MYSQL_BIND *binds;
    sl_store_query_cb cb;
    void *cb_data;

    /* out-values of the async calls */
    int iret;
    my_bool bret;
    MYSQL *mret;
    MYSQL_RES *rret;
};

typedef struct waiter {
    struct waiter *next;
    sl_store_acquire_cb cb;
    void *data;
    uint64_t deadline;
} waiter_t;

typedef enum dkind { D_ACQUIRE, D_QUERY } dkind_t;

typedef struct deferred {
    struct deferred *next;
    dkind_t kind;
    sl_store_acquire_cb acb;
    sl_store_query_cb qcb;
    void *data;
    sl_store_conn_t *conn;
    sl_store_result_t *res;
    int failed;
    sl_store_error_t err;
} deferred_t;

struct sl_store {
    uv_loop_t *loop;
    sl_store_config_t cfg;
    char *host, *unix_socket, *user, *password, *database;
    sl_store_conn_t *conns;
    size_t nconns;
    size_t connected;
    int connect_failed; /* the latest connect attempt failed (fail acquires fast while none is up) */
    sl_store_error_t last_connect_error;

    waiter_t *whead, *wtail;
    uv_timer_t acquire_timer;
    uv_timer_t health_timer;

    deferred_t *dhead, *dtail;
    uv_idle_t idle;
    int idle_active;

    int depth; /* > 0 while inside a public API call: completions must be deferred */
    int closing;
    int pending_closes;
    sl_store_stats_t stats;
};

/* ---- pool.c ---- */

/* Delivers a statement's outcome from the loop (never from inside the call that started it). */
void sl_store__defer_query(sl_store_t *s, sl_store_query_cb cb, void *data, sl_store_result_t *res,
                           const sl_store_error_t *err);
/* Lends idle connections to waiting acquirers, in order. */
void sl_store__dispatch(sl_store_t *s);
/* Fails every waiting acquire with err. */
void sl_store__fail_waiters(sl_store_t *s, const sl_store_error_t *err);
/* Frees the store once closing and every deferred completion was delivered. */
void sl_store__maybe_free(sl_store_t *s);
void sl_store__on_idle(uv_idle_t *h);

/* ---- conn.c ---- */

/* Starts connecting c (C_DOWN -> C_CONNECTING). */
void sl_store__connect(sl_store_conn_t *c);
/* Takes c out of service and schedules the next attempt (with backoff after a failure). */
void sl_store__drop(sl_store_conn_t *c, int after_failure);
/* Starts operation op on c (its deadline set by the caller). */
void sl_store__begin(sl_store_conn_t *c, op_t op);
/* Closes c's MariaDB connection and I/O handles (no I/O when the peer is dead). */
void sl_store__close_conn(sl_store_conn_t *c);

#endif
