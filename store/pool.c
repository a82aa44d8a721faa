/*
 * The non-blocking MariaDB pool of store/: acquiring and releasing connections (FIFO, one
 * deadline), health checks of idle connections, one-statement queries, closing.
 *
 * Callbacks are never called from inside the API call that registered them: results that are known
 * at once (errors, an idle connection for acquire) go through a queue drained by a uv_idle_t.
 */
#include <stdlib.h>
#include <string.h>

#include "store/internal/pool.h"

/* ---- deferred completions ---- */

static void defer(sl_store_t *s, deferred_t *d)
{
    d->next = NULL;
    if (s->dtail)
        s->dtail->next = d;
    else
        s->dhead = d;
    s->dtail = d;
    if (!s->idle_active) {
        uv_idle_start(&s->idle, sl_store__on_idle);
        s->idle_active = 1;
    }
}

void sl_store__defer_query(sl_store_t *s, sl_store_query_cb cb, void *data, sl_store_result_t *res,
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

void sl_store__on_idle(uv_idle_t *h)
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
        sl_store__maybe_free(s);
}

/* ---- pool ---- */

void sl_store__fail_waiters(sl_store_t *s, const sl_store_error_t *err)
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

static void on_acquire_timer(uv_timer_t *t);

static void arm_acquire_timer(sl_store_t *s)
{
    if (s->whead == NULL) {
        uv_timer_stop(&s->acquire_timer);
        return;
    }
    uint64_t now = uv_now(s->loop);
    uv_timer_start(&s->acquire_timer, on_acquire_timer,
                   s->whead->deadline > now ? s->whead->deadline - now : 0, 0);
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

void sl_store__dispatch(sl_store_t *s)
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
        c->deadline =
            now + (s->cfg.query_timeout_ms < PING_TIMEOUT_MS ? s->cfg.query_timeout_ms : PING_TIMEOUT_MS);
        sl_store__begin(c, OP_PING);
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
        sl_store__connect(c);
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
            sl_store__dispatch(s);
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
        sl_store__drop(c, 0);
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
            sl_store__begin(c, OP_ROLLBACK);
        } else {
            c->state = C_IDLE;
            sl_store__dispatch(s);
        }
    }
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
        sl_store__defer_query(s, cb, data, NULL, &err);
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
    sl_store_t *s = h->data; /* sl_store__maybe_free() points every handle's data at the store */
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
void sl_store__maybe_free(sl_store_t *s)
{
    if (s->pending_closes != 0 || s->dhead)
        return;
    s->pending_closes = 1; /* guard while closing */
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        sl_store__close_conn(c);
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
    sl_store__fail_waiters(s, &err);
    uv_timer_stop(&s->health_timer);
    for (size_t i = 0; i < s->nconns; i++) {
        sl_store_conn_t *c = &s->conns[i];
        if (c->op != OP_NONE && c->cb) {
            sl_store_query_cb cb = c->cb;
            c->cb = NULL;
            sl_store__defer_query(s, cb, c->cb_data, NULL, &err);
        }
        sl_store__close_conn(c);
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
        uv_idle_start(&s->idle, sl_store__on_idle);
        s->idle_active = 1;
    }
    s->depth--;
}
