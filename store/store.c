/*
 * The non-blocking MariaDB pool of store/.
 *
 * Each pooled connection runs mariadb-connector-c's non-blocking API (MYSQL_OPT_NONBLOCK): a
 * *_start() call returns either 0 (done) or the MYSQL_WAIT_* events it needs; we wait for them with
 * a uv_poll_t on the connection's socket (and a uv_timer_t for MYSQL_WAIT_TIMEOUT and our own
 * deadlines) and call the matching *_cont(). One statement is a short chain of such operations:
 * prepare (once per connection and SQL pointer) -> execute -> store_result; conversion of the
 * stored rows does no I/O (store/sync.c).
 *
 * Deadlines: a statement that outlives query_timeout_ms gets its socket shut down, which makes the
 * library finish the operation with a connection error; the caller sees SL_STORE_E_TIMEOUT and the
 * connection is re-made. The same applies to connects (connect_timeout_ms) and health pings.
 *
 * Callbacks are never called from inside the API call that registered them: results that are known
 * at once (errors, an idle connection for acquire) go through a queue drained by a uv_idle_t.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "store/internal.h"

#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 2000
#define HEALTH_INTERVAL_MS 1000
#define PING_TIMEOUT_MS 2000

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
    int text;        /* the server will not prepare it: run it with the text protocol */
} stmt_entry_t;

struct sl_store_conn {
    sl_store_t *s;
    MYSQL *m;
    uv_poll_t *poll; /* per MYSQL connection (its socket), freed in its close callback */
    uv_timer_t timer;
    cstate_t state;
    op_t op;
    int broken;      /* a connection error happened: re-make before lending again */
    int timed_out;   /* the current operation hit its deadline */
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

static void start_connect(sl_store_conn_t *c);
static void dispatch_waiters(sl_store_t *s);
static void run_op(sl_store_conn_t *c, int status);
static void maybe_free(sl_store_t *s);

/* ---- deferred completions ---- */

static void on_idle(uv_idle_t *h);

static void defer(sl_store_t *s, deferred_t *d)
{
    d->next = NULL;
    if (s->dtail)
        s->dtail->next = d;
    else
        s->dhead = d;
    s->dtail = d;
    if (!s->idle_active) {
        uv_idle_start(&s->idle, on_idle);
        s->idle_active = 1;
    }
}

static void defer_query(sl_store_t *s, sl_store_query_cb cb, void *data, sl_store_result_t *res,
                        const sl_store_error_t *err)
{
    deferred_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort(); /* cannot keep the exactly-once promise without memory */
    d->kind = D_QUERY;
    d->qcb = cb;
    d->data = data;
    d->res = res;
    if (err) {
        d->failed = 1;
        d->err = *err;
    }
    defer(s, d);
}

static void defer_acquire(sl_store_t *s, sl_store_acquire_cb cb, void *data, sl_store_conn_t *conn,
                          const sl_store_error_t *err)
{
    deferred_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    d->kind = D_ACQUIRE;
    d->acb = cb;
    d->data = data;
    d->conn = conn;
    if (err) {
        d->failed = 1;
        d->err = *err;
    }
    defer(s, d);
}

static void on_idle(uv_idle_t *h)
{
    sl_store_t *s = h->data;
    while (s->dhead) {
        deferred_t *d = s->dhead;
        s->dhead = d->next;
        if (s->dhead == NULL)
            s->dtail = NULL;
        if (d->kind == D_ACQUIRE) {
            if (s->closing && d->conn) {
                /* Lent just before close: the caller never gets it. */
                d->conn->state = C_IDLE;
                d->conn = NULL;
                d->failed = 1;
                sl_store__errorf(&d->err, SL_STORE_E_CLOSED, "the store is closing");
            }
            d->acb(d->failed ? NULL : d->conn, d->failed ? &d->err : NULL, d->data);
        } else {
            d->qcb(d->res, d->failed ? &d->err : NULL, d->data);
        }
        free(d);
    }
    uv_idle_stop(&s->idle);
    s->idle_active = 0;
    if (s->closing)
        maybe_free(s);
}

/* ---- connection life ---- */

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void stop_io(sl_store_conn_t *c)
{
    if (c->poll) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, on_poll_closed);
        c->poll = NULL;
    }
    uv_timer_stop(&c->timer);
}

static void free_stmts(sl_store_conn_t *c)
{
    /* After mysql_close() the statements are detached from the connection: closing them does no I/O. */
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].stmt)
            mysql_stmt_close(c->stmts[i].stmt);
    c->nstmts = 0;
}

static void close_mysql(sl_store_conn_t *c)
{
    stop_io(c);
    if (c->m) {
        if (c->broken || c->op != OP_NONE) {
            /* A dead or stuck peer must not make mysql_close() wait for COM_QUIT to be written. */
            int fd = (int)mysql_get_socket(c->m);
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
        }
        mysql_close(c->m);
        c->m = NULL;
    }
    free_stmts(c);
}

static void on_reconnect_timer(uv_timer_t *t)
{
    sl_store_conn_t *c = t->data;
    if (!c->s->closing && c->state == C_DOWN)
        start_connect(c);
}

/* Takes a connection out of service and schedules the next attempt. */
static void drop_conn(sl_store_conn_t *c, int after_failure)
{
    sl_store_t *s = c->s;
    int was_up = c->state != C_DOWN && c->state != C_CONNECTING;
    close_mysql(c);
    if (was_up && s->connected > 0)
        s->connected--;
    c->state = C_DOWN;
    c->op = OP_NONE;
    c->broken = 0;
    c->timed_out = 0;
    if (s->closing)
        return;
    unsigned delay = 0;
    if (after_failure) {
        delay = c->backoff_ms ? c->backoff_ms : RECONNECT_MIN_MS;
        c->backoff_ms = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
    }
    uv_timer_start(&c->timer, on_reconnect_timer, delay, 0);
}

/* ---- waiting for the library ---- */

static void on_poll(uv_poll_t *h, int status, int events);

static void on_op_timer(uv_timer_t *t)
{
    sl_store_conn_t *c = t->data;
    uint64_t now = uv_now(c->s->loop);
    if (now >= c->deadline && !c->timed_out) {
        /* Our deadline: make the library fail the operation by shutting the socket down; the
         * poll then reports it and the operation completes with a connection error. */
        c->timed_out = 1;
        int fd = c->m ? (int)mysql_get_socket(c->m) : -1;
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        if (c->poll)
            uv_poll_start(c->poll, UV_READABLE | UV_WRITABLE, on_poll);
        /* Should the library not notice, hand it a timeout event after one more second. */
        uv_timer_start(&c->timer, on_op_timer, 1000, 0);
        return;
    }
    if (c->poll)
        uv_poll_stop(c->poll);
    run_op(c, MYSQL_WAIT_TIMEOUT);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sl_store_conn_t *c = h->data;
    int st = 0;
    if (status < 0) {
        st = MYSQL_WAIT_READ | MYSQL_WAIT_WRITE; /* let the library find the error */
    } else {
        if (events & UV_READABLE)
            st |= MYSQL_WAIT_READ;
        if (events & UV_WRITABLE)
            st |= MYSQL_WAIT_WRITE;
        if (events & UV_PRIORITIZED)
            st |= MYSQL_WAIT_EXCEPT;
    }
    uv_poll_stop(h);
    uv_timer_stop(&c->timer);
    run_op(c, st);
}

static void wait_for(sl_store_conn_t *c, int status)
{
    sl_store_t *s = c->s;
    if (c->poll == NULL) {
        int fd = (int)mysql_get_socket(c->m);
        c->poll = malloc(sizeof(*c->poll));
        if (c->poll == NULL || uv_poll_init(s->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            /* Cannot watch the socket: fail the operation as if it had timed out (the socket is
             * shut down, so the library's next attempt errors out). */
            c->timed_out = 1;
            if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
            uv_timer_start(&c->timer, on_op_timer, 0, 0);
            return;
        }
        c->poll->data = c;
    }
    int events = 0;
    if (status & MYSQL_WAIT_READ)
        events |= UV_READABLE;
    if (status & MYSQL_WAIT_WRITE)
        events |= UV_WRITABLE;
    if (status & MYSQL_WAIT_EXCEPT)
        events |= UV_PRIORITIZED;
    if (events)
        uv_poll_start(c->poll, events, on_poll);
    uint64_t now = uv_now(s->loop);
    uint64_t until = c->deadline > now ? c->deadline - now : 0;
    if (c->timed_out)
        until = 1000;
    if (status & MYSQL_WAIT_TIMEOUT) {
        uint64_t lib = mysql_get_timeout_value_ms(c->m);
        if (lib < until)
            until = lib;
    }
    uv_timer_start(&c->timer, on_op_timer, until, 0);
}

static void op_done(sl_store_conn_t *c);

/* Starts (status < 0) or continues (status = events) the current operation. */
static void run_op(sl_store_conn_t *c, int status)
{
    int start = status < 0;
    int r = 0;
    MYSQL_STMT *st = c->entry ? c->entry->stmt : NULL;
    switch (c->op) {
    case OP_CONNECT: {
        const sl_store_config_t *cfg = &c->s->cfg;
        r = start ? mysql_real_connect_start(&c->mret, c->m, sl_store__host(cfg), cfg->user, cfg->password,
                                             cfg->database, cfg->port, sl_store__socket(cfg), 0)
                  : mysql_real_connect_cont(&c->mret, c->m, status);
        break;
    }
    case OP_PREPARE:
        r = start ? mysql_stmt_prepare_start(&c->iret, st, c->sql, (unsigned long)strlen(c->sql))
                  : mysql_stmt_prepare_cont(&c->iret, st, status);
        break;
    case OP_EXECUTE:
        r = start ? mysql_stmt_execute_start(&c->iret, st) : mysql_stmt_execute_cont(&c->iret, st, status);
        break;
    case OP_STORE:
        r = start ? mysql_stmt_store_result_start(&c->iret, st) : mysql_stmt_store_result_cont(&c->iret, st, status);
        break;
    case OP_QUERY_TEXT:
        r = start ? mysql_real_query_start(&c->iret, c->m, c->sql, (unsigned long)strlen(c->sql))
                  : mysql_real_query_cont(&c->iret, c->m, status);
        break;
    case OP_STORE_TEXT:
        r = start ? mysql_store_result_start(&c->rret, c->m) : mysql_store_result_cont(&c->rret, c->m, status);
        break;
    case OP_ROLLBACK:
        r = start ? mysql_rollback_start(&c->bret, c->m) : mysql_rollback_cont(&c->bret, c->m, status);
        break;
    case OP_PING:
        r = start ? mysql_ping_start(&c->iret, c->m) : mysql_ping_cont(&c->iret, c->m, status);
        break;
    case OP_NONE:
        return;
    }
    if (r != 0)
        wait_for(c, r);
    else
        op_done(c);
}

static void begin_op(sl_store_conn_t *c, op_t op)
{
    c->op = op;
    run_op(c, -1);
}

/* ---- connecting ---- */

static void start_connect(sl_store_conn_t *c)
{
    sl_store_t *s = c->s;
    c->m = mysql_init(NULL);
    if (c->m == NULL || sl_store__options(c->m, &s->cfg, 1) != 0) {
        if (c->m)
            mysql_close(c->m);
        c->m = NULL;
        drop_conn(c, 1);
        return;
    }
    c->state = C_CONNECTING;
    c->timed_out = 0;
    c->deadline = uv_now(s->loop) + s->cfg.connect_timeout_ms;
    begin_op(c, OP_CONNECT);
}

static void fail_all_waiters(sl_store_t *s, const sl_store_error_t *err)
{
    while (s->whead) {
        waiter_t *w = s->whead;
        s->whead = w->next;
        defer_acquire(s, w->cb, w->data, NULL, err);
        free(w);
    }
    s->wtail = NULL;
    uv_timer_stop(&s->acquire_timer);
}

static void connect_done(sl_store_conn_t *c)
{
    sl_store_t *s = c->s;
    c->op = OP_NONE;
    if (c->mret == NULL || c->timed_out) {
        if (c->timed_out)
            sl_store__errorf(&s->last_connect_error, SL_STORE_E_CONN, "cannot connect to MariaDB: timed out after %u ms",
                             s->cfg.connect_timeout_ms);
        else {
            sl_store__error(&s->last_connect_error, mysql_errno(c->m), mysql_error(c->m));
            s->last_connect_error.code = SL_STORE_E_CONN;
        }
        s->connect_failed = 1;
        c->broken = 1;
        drop_conn(c, 1);
        /* Nobody can be served soon: fail the queue now rather than at its deadline. */
        if (s->connected == 0)
            fail_all_waiters(s, &s->last_connect_error);
        return;
    }
    if (c->ever_connected)
        s->stats.reconnects++;
    c->ever_connected = 1;
    c->backoff_ms = 0;
    s->connect_failed = 0;
    s->connected++;
    c->state = C_IDLE;
    c->last_used = uv_now(s->loop);
    dispatch_waiters(s);
}

/* ---- statements ---- */

static void finish(sl_store_conn_t *c, sl_store_result_t *res, sl_store_error_t *err)
{
    sl_store_t *s = c->s;
    sl_store_query_cb cb = c->cb;
    void *data = c->cb_data;
    c->op = OP_NONE;
    c->cb = NULL;
    free(c->params);
    free(c->binds);
    c->params = NULL;
    c->binds = NULL;
    c->entry = NULL;
    s->stats.statements++;
    if (c->timed_out) {
        sl_store_result_free(res);
        res = NULL;
        sl_store__errorf(err, SL_STORE_E_TIMEOUT, "statement timed out after %u ms", s->cfg.query_timeout_ms);
        c->broken = 1;
    }
    if (res == NULL) {
        s->stats.errors++;
        if (err->code == SL_STORE_E_CONN)
            c->broken = 1;
    }
    c->last_used = uv_now(s->loop);
    if (s->depth > 0)
        defer_query(s, cb, data, res, res ? NULL : err);
    else
        cb(res, res ? NULL : err, data);
    /* cb may have run the next statement or released the connection; a release that arrived
     * while this statement was running is carried out now. */
    if (c->release_after && c->op == OP_NONE) {
        c->release_after = 0;
        sl_store_release(c);
    }
}

static void fail_statement(sl_store_conn_t *c, unsigned e, const char *msg)
{
    sl_store_error_t err;
    sl_store__error(&err, e, msg);
    finish(c, NULL, &err);
}

static void execute_cached(sl_store_conn_t *c)
{
    sl_store_error_t err;
    if (sl_store__bind(c->entry->stmt, c->params, c->nparams, c->binds, &err) != 0) {
        finish(c, NULL, &err);
        return;
    }
    begin_op(c, OP_EXECUTE);
}

static void collect_and_finish(sl_store_conn_t *c)
{
    sl_store_result_t *res;
    sl_store_error_t err;
    if (sl_store__collect(c->entry->stmt, &res, &err) != 0)
        res = NULL;
    finish(c, res, &err);
}

static void remove_entry(sl_store_conn_t *c, stmt_entry_t *e)
{
    mysql_stmt_close(e->stmt);
    size_t i = (size_t)(e - c->stmts);
    c->stmts[i] = c->stmts[--c->nstmts];
}

static void op_done(sl_store_conn_t *c)
{
    sl_store_t *s = c->s;
    switch (c->op) {
    case OP_CONNECT:
        connect_done(c);
        return;
    case OP_PREPARE:
        if (c->iret != 0 || c->timed_out) {
            unsigned e = mysql_stmt_errno(c->entry->stmt);
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", mysql_stmt_error(c->entry->stmt));
            if (e == SL_ER_UNSUPPORTED_PS && c->nparams == 0 && !c->timed_out) {
                /* Keep the entry, without a statement, as "use the text protocol". */
                mysql_stmt_close(c->entry->stmt);
                c->entry->stmt = NULL;
                c->entry->text = 1;
                begin_op(c, OP_QUERY_TEXT);
                return;
            }
            remove_entry(c, c->entry);
            c->entry = NULL;
            fail_statement(c, e, msg);
            return;
        }
        execute_cached(c);
        return;
    case OP_EXECUTE:
        if (c->iret != 0 || c->timed_out) {
            fail_statement(c, mysql_stmt_errno(c->entry->stmt), mysql_stmt_error(c->entry->stmt));
            return;
        }
        if (mysql_stmt_field_count(c->entry->stmt) > 0) {
            my_bool on = 1;
            mysql_stmt_attr_set(c->entry->stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
            begin_op(c, OP_STORE);
            return;
        }
        collect_and_finish(c);
        return;
    case OP_STORE:
        if (c->iret != 0 || c->timed_out) {
            fail_statement(c, mysql_stmt_errno(c->entry->stmt), mysql_stmt_error(c->entry->stmt));
            return;
        }
        collect_and_finish(c);
        return;
    case OP_QUERY_TEXT:
        if (c->iret != 0 || c->timed_out) {
            fail_statement(c, mysql_errno(c->m), mysql_error(c->m));
            return;
        }
        begin_op(c, OP_STORE_TEXT);
        return;
    case OP_STORE_TEXT: {
        if ((c->rret == NULL && mysql_field_count(c->m) != 0) || c->timed_out) {
            fail_statement(c, mysql_errno(c->m), mysql_error(c->m));
            return;
        }
        sl_store_result_t *res;
        sl_store_error_t err;
        if (sl_store__collect_text(c->m, c->rret, &res, &err) != 0)
            res = NULL;
        if (c->rret)
            mysql_free_result(c->rret);
        c->rret = NULL;
        finish(c, res, &err);
        return;
    }
    case OP_ROLLBACK:
    case OP_PING: {
        int failed = (c->op == OP_ROLLBACK ? c->bret != 0 : c->iret != 0) || c->timed_out;
        c->op = OP_NONE;
        if (failed) {
            c->broken = 1;
            drop_conn(c, 0);
            return;
        }
        c->state = C_IDLE;
        dispatch_waiters(s);
        return;
    }
    case OP_NONE:
        return;
    }
}

/* ---- pool ---- */

static void on_acquire_timer(uv_timer_t *t);

static void arm_acquire_timer(sl_store_t *s)
{
    if (s->whead == NULL) {
        uv_timer_stop(&s->acquire_timer);
        return;
    }
    uint64_t now = uv_now(s->loop);
    uv_timer_start(&s->acquire_timer, on_acquire_timer, s->whead->deadline > now ? s->whead->deadline - now : 0, 0);
}

static void on_acquire_timer(uv_timer_t *t)
{
    sl_store_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    sl_store_error_t err;
    /* FIFO with one timeout for all: the head always expires first. */
    while (s->whead && s->whead->deadline <= now) {
        waiter_t *w = s->whead;
        s->whead = w->next;
        if (s->whead == NULL)
            s->wtail = NULL;
        sl_store__errorf(&err, s->connected ? SL_STORE_E_TIMEOUT : SL_STORE_E_CONN,
                         s->connected ? "no MariaDB connection free within %u ms"
                                      : "no MariaDB connection within %u ms",
                         s->cfg.acquire_timeout_ms);
        defer_acquire(s, w->cb, w->data, NULL, &err);
        free(w);
    }
    arm_acquire_timer(s);
}

static void dispatch_waiters(sl_store_t *s)
{
    for (size_t i = 0; i < s->nconns && s->whead; i++) {
        sl_store_conn_t *c = &s->conns[i];
        if (c->state != C_IDLE)
            continue;
        waiter_t *w = s->whead;
        s->whead = w->next;
        if (s->whead == NULL)
            s->wtail = NULL;
        c->state = C_LENT;
        defer_acquire(s, w->cb, w->data, c, NULL);
        free(w);
    }
    arm_acquire_timer(s);
}

static void on_health_timer(uv_timer_t *t)
{
    sl_store_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        if (c->state != C_IDLE || now - c->last_used < HEALTH_INTERVAL_MS)
            continue;
        /* An idle connection would not notice a dead server until used: ping it, so readiness
         * follows the server and the next caller does not get a dead connection. */
        c->state = C_PING;
        c->timed_out = 0;
        c->iret = 0;
        c->bret = 0;
        c->last_used = now;
        c->deadline = now + (s->cfg.query_timeout_ms < PING_TIMEOUT_MS ? s->cfg.query_timeout_ms : PING_TIMEOUT_MS);
        begin_op(c, OP_PING);
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sl_store_open(sl_store_t **out, uv_loop_t *loop, const sl_store_config_t *cfg, sl_store_error_t *err)
{
    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->user == NULL) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "store configuration needs a loop and a user");
        return -1;
    }
    if (cfg->port > 65535 || cfg->pool_size > 1024) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "bad store configuration (port or pool size)");
        return -1;
    }
    if ((cfg->host == NULL || strcmp(cfg->host, "localhost") == 0) && cfg->unix_socket == NULL) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "store configuration: host \"localhost\" needs unix_socket");
        return -1;
    }
    sl_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory");
        return -1;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.host = s->host = dup_or_null(cfg->host);
    s->cfg.unix_socket = s->unix_socket = dup_or_null(cfg->unix_socket);
    s->cfg.user = s->user = dup_or_null(cfg->user);
    s->cfg.password = s->password = dup_or_null(cfg->password);
    s->cfg.database = s->database = dup_or_null(cfg->database);
    if (s->cfg.port == 0)
        s->cfg.port = 3306;
    if (s->cfg.pool_size == 0)
        s->cfg.pool_size = 4;
    if (s->cfg.connect_timeout_ms == 0)
        s->cfg.connect_timeout_ms = 2000;
    if (s->cfg.query_timeout_ms == 0)
        s->cfg.query_timeout_ms = 10000;
    if (s->cfg.acquire_timeout_ms == 0)
        s->cfg.acquire_timeout_ms = 3000;
    s->nconns = s->cfg.pool_size;
    s->conns = calloc(s->nconns, sizeof(*s->conns));
    if (s->conns == NULL) {
        free(s->host);
        free(s->unix_socket);
        free(s->user);
        free(s->password);
        free(s->database);
        free(s);
        sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory");
        return -1;
    }
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(loop, &s->acquire_timer);
    s->acquire_timer.data = s;
    uv_timer_init(loop, &s->health_timer);
    s->health_timer.data = s;
    uv_timer_start(&s->health_timer, on_health_timer, HEALTH_INTERVAL_MS, HEALTH_INTERVAL_MS);
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        c->s = s;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        c->state = C_DOWN;
        start_connect(c);
    }
    *out = s;
    return 0;
}

int sl_store_ready(const sl_store_t *s)
{
    return s != NULL && !s->closing && s->connected > 0;
}

void sl_store_get_stats(const sl_store_t *s, sl_store_stats_t *out)
{
    *out = s->stats;
}

void sl_store_acquire(sl_store_t *s, sl_store_acquire_cb cb, void *data)
{
    s->depth++;
    sl_store_error_t err;
    if (s->closing) {
        sl_store__errorf(&err, SL_STORE_E_CLOSED, "the store is closing");
        defer_acquire(s, cb, data, NULL, &err);
    } else if (s->connected == 0 && s->connect_failed) {
        err = s->last_connect_error;
        defer_acquire(s, cb, data, NULL, &err);
    } else {
        waiter_t *w = calloc(1, sizeof(*w));
        if (w == NULL) {
            sl_store__errorf(&err, SL_STORE_E_QUERY, "out of memory");
            defer_acquire(s, cb, data, NULL, &err);
        } else {
            w->cb = cb;
            w->data = data;
            w->deadline = uv_now(s->loop) + s->cfg.acquire_timeout_ms;
            if (s->wtail)
                s->wtail->next = w;
            else
                s->whead = w;
            s->wtail = w;
            dispatch_waiters(s);
        }
    }
    s->depth--;
}

void sl_store_release(sl_store_conn_t *c)
{
    if (c == NULL)
        return;
    sl_store_t *s = c->s;
    if (c->state != C_LENT)
        return;
    if (c->op != OP_NONE) {
        c->release_after = 1;
        c->broken = 1; /* its statement's outcome is unknown to the caller */
        return;
    }
    s->depth++;
    if (s->closing) {
        c->state = C_IDLE;
    } else if (c->broken) {
        drop_conn(c, 0);
    } else {
        unsigned int status = 0;
        mariadb_get_infov(c->m, MARIADB_CONNECTION_SERVER_STATUS, &status);
        if (status & SERVER_STATUS_IN_TRANS) {
            /* The caller left a transaction open: never lend a connection in one. */
            c->state = C_RESET;
            c->timed_out = 0;
            c->bret = 0;
            c->iret = 0;
            c->deadline = uv_now(s->loop) + s->cfg.query_timeout_ms;
            begin_op(c, OP_ROLLBACK);
        } else {
            c->state = C_IDLE;
            dispatch_waiters(s);
        }
    }
    s->depth--;
}

void sl_store_exec(sl_store_conn_t *c, const char *sql, const sl_store_value_t *params, size_t nparams,
                   sl_store_query_cb cb, void *data)
{
    sl_store_t *s = c->s;
    sl_store_error_t err;
    s->depth++;
    if (s->closing) {
        sl_store__errorf(&err, SL_STORE_E_CLOSED, "the store is closing");
        goto fail;
    }
    if (c->state != C_LENT || c->op != OP_NONE) {
        sl_store__errorf(&err, SL_STORE_E_QUERY, "connection not acquired, or a statement is still running");
        goto fail;
    }
    if (c->broken || c->m == NULL) {
        sl_store__errorf(&err, SL_STORE_E_CONN, "the connection to MariaDB was lost");
        goto fail;
    }
    c->params = sl_store__copy_params(params, nparams);
    c->binds = nparams ? calloc(nparams, sizeof(*c->binds)) : NULL;
    if (c->params == NULL || (nparams && c->binds == NULL)) {
        free(c->params);
        free(c->binds);
        c->params = NULL;
        c->binds = NULL;
        sl_store__errorf(&err, SL_STORE_E_QUERY, "out of memory");
        goto fail;
    }
    c->nparams = nparams;
    c->sql = sql;
    c->cb = cb;
    c->cb_data = data;
    c->timed_out = 0;
    c->iret = 0;
    c->rret = NULL;
    c->deadline = uv_now(s->loop) + s->cfg.query_timeout_ms;
    c->entry = NULL;
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].sql == sql)
            c->entry = &c->stmts[i];
    if (c->entry && c->entry->text) {
        if (nparams != 0) {
            c->entry = NULL;
            sl_store_error_t e2;
            sl_store__errorf(&e2, SL_STORE_E_QUERY, "statement cannot be prepared, so it cannot take parameters");
            finish(c, NULL, &e2);
        } else {
            begin_op(c, OP_QUERY_TEXT);
        }
    } else if (c->entry) {
        execute_cached(c);
    } else {
        if (c->nstmts == c->capstmts) {
            size_t cap = c->capstmts ? c->capstmts * 2 : 16;
            stmt_entry_t *n = realloc(c->stmts, cap * sizeof(*n));
            if (n == NULL) {
                sl_store_error_t e2;
                sl_store__errorf(&e2, SL_STORE_E_QUERY, "out of memory");
                finish(c, NULL, &e2);
                s->depth--;
                return;
            }
            c->stmts = n;
            c->capstmts = cap;
        }
        MYSQL_STMT *st = mysql_stmt_init(c->m);
        if (st == NULL) {
            sl_store_error_t e2;
            sl_store__errorf(&e2, SL_STORE_E_QUERY, "out of memory");
            finish(c, NULL, &e2);
        } else {
            c->entry = &c->stmts[c->nstmts++];
            c->entry->sql = sql;
            c->entry->stmt = st;
            c->entry->text = 0;
            begin_op(c, OP_PREPARE);
        }
    }
    s->depth--;
    return;
fail:
    defer_query(s, cb, data, NULL, &err);
    s->depth--;
}

typedef struct one_query {
    sl_store_value_t *params;
    size_t nparams;
    const char *sql;
    sl_store_query_cb cb;
    void *data;
    sl_store_conn_t *conn;
} one_query_t;

static void one_done(sl_store_result_t *res, const sl_store_error_t *err, void *data)
{
    one_query_t *q = data;
    sl_store_release(q->conn);
    q->cb(res, err, q->data);
    free(q->params);
    free(q);
}

static void one_acquired(sl_store_conn_t *conn, const sl_store_error_t *err, void *data)
{
    one_query_t *q = data;
    if (conn == NULL) {
        q->cb(NULL, err, q->data);
        free(q->params);
        free(q);
        return;
    }
    q->conn = conn;
    sl_store_exec(conn, q->sql, q->params, q->nparams, one_done, q);
}

void sl_store_query(sl_store_t *s, const char *sql, const sl_store_value_t *params, size_t nparams,
                    sl_store_query_cb cb, void *data)
{
    one_query_t *q = calloc(1, sizeof(*q));
    sl_store_value_t *copy = sl_store__copy_params(params, nparams);
    if (q == NULL || copy == NULL) {
        free(q);
        free(copy);
        sl_store_error_t err;
        sl_store__errorf(&err, SL_STORE_E_QUERY, "out of memory");
        s->depth++;
        defer_query(s, cb, data, NULL, &err);
        s->depth--;
        return;
    }
    q->params = copy;
    q->nparams = nparams;
    q->sql = sql;
    q->cb = cb;
    q->data = data;
    sl_store_acquire(s, one_acquired, q);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
    sl_store_t *s = h->data; /* maybe_free() points every handle's data at the store */
    if (--s->pending_closes == 0) {
        for (size_t i = 0; i < s->nconns; i++)
            free(s->conns[i].stmts);
        free(s->conns);
        free(s->host);
        free(s->unix_socket);
        free(s->user);
        free(s->password);
        free(s->database);
        free(s);
    }
}

/* Called from the idle callback once every deferred completion was delivered. */
static void maybe_free(sl_store_t *s)
{
    if (s->pending_closes != 0 || s->dhead)
        return;
    s->pending_closes = 1; /* guard while closing */
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        close_mysql(c);
        s->pending_closes++;
        c->timer.data = s;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
    s->pending_closes += 3;
    uv_close((uv_handle_t *)&s->acquire_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->health_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_handle_closed);
    s->pending_closes--; /* drop the guard; the close callbacks bring it to 0 */
}

void sl_store_close(sl_store_t *s)
{
    if (s == NULL || s->closing)
        return;
    s->closing = 1;
    s->depth++;
    sl_store_error_t err;
    sl_store__errorf(&err, SL_STORE_E_CLOSED, "the store is closing");
    fail_all_waiters(s, &err);
    uv_timer_stop(&s->health_timer);
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        if (c->op != OP_NONE && c->cb) {
            sl_store_query_cb cb = c->cb;
            c->cb = NULL;
            defer_query(s, cb, c->cb_data, NULL, &err);
        }
        close_mysql(c);
        free(c->params);
        free(c->binds);
        c->params = NULL;
        c->binds = NULL;
        c->op = OP_NONE;
        c->entry = NULL;
        if (c->rret) {
            mysql_free_result(c->rret);
            c->rret = NULL;
        }
        uv_timer_stop(&c->timer);
    }
    /* Freed from the idle callback after the deferred callbacks have run. */
    if (!s->idle_active) {
        uv_idle_start(&s->idle, on_idle);
        s->idle_active = 1;
    }
    s->depth--;
}
