/*
 * One pooled connection of store/: connecting, the library's non-blocking operations, statements.
 *
 * Each pooled connection runs mariadb-connector-c's non-blocking API (MYSQL_OPT_NONBLOCK): a
 * *_start() call returns either 0 (done) or the MYSQL_WAIT_* events it needs; we wait for them with
 * a uv_poll_t on the connection's socket (and a uv_timer_t for MYSQL_WAIT_TIMEOUT and our own
 * deadlines) and call the matching *_cont(). One statement is a short chain of such operations:
 * prepare (once per connection and SQL pointer) -> execute -> store_result; conversion of the
 * stored rows does no I/O (store/convert.c).
 *
 * Deadlines: a statement that outlives query_timeout_ms gets its socket shut down, which makes the
 * library finish the operation with a connection error; the caller sees SL_STORE_E_TIMEOUT and the
 * connection is re-made. The same applies to connects (connect_timeout_ms) and health pings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "store/internal/pool.h"

static void run_op(sl_store_conn_t *c, int status);
static void op_done(sl_store_conn_t *c);

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

/* The library closes its socket itself when it meets a connection error (end of stream, our own
 * shutdown at a deadline, a failed connect) and may open another while connecting. A poll left on
 * the closed number must go at once: once the number is reused (an accepted client, a new Redis or
 * MariaDB connection), closing the stale poll would remove the newcomer's epoll registration with
 * it, and libuv then never reports that descriptor again or aborts when it next changes it. Called
 * right after every library call that may do I/O, before anything else can open a descriptor. */
static void follow_socket(sl_store_conn_t *c)
{
    if (c->poll == NULL)
        return;
    uv_os_fd_t fd;
    int now = c->m ? (int)mysql_get_socket(c->m) : -1;
    if (uv_fileno((uv_handle_t *)c->poll, &fd) != 0 || (int)fd != now) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, on_poll_closed);
        c->poll = NULL;
    }
}

static void free_stmts(sl_store_conn_t *c)
{
    /* After mysql_close() the statements are detached from the connection: closing them does no I/O. */
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].stmt)
            mysql_stmt_close(c->stmts[i].stmt);
    c->nstmts = 0;
}

void sl_store__close_conn(sl_store_conn_t *c)
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
        sl_store__connect(c);
}

/* Takes a connection out of service and schedules the next attempt. */
void sl_store__drop(sl_store_conn_t *c, int after_failure)
{
    sl_store_t *s = c->s;
    int was_up = c->state != C_DOWN && c->state != C_CONNECTING;
    sl_store__close_conn(c);
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
        r = start ? mysql_stmt_store_result_start(&c->iret, st)
                  : mysql_stmt_store_result_cont(&c->iret, st, status);
        break;
    case OP_QUERY_TEXT:
        r = start ? mysql_real_query_start(&c->iret, c->m, c->sql, (unsigned long)strlen(c->sql))
                  : mysql_real_query_cont(&c->iret, c->m, status);
        break;
    case OP_STORE_TEXT:
        r = start ? mysql_store_result_start(&c->rret, c->m)
                  : mysql_store_result_cont(&c->rret, c->m, status);
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
    follow_socket(c);
    if (r != 0)
        wait_for(c, r);
    else
        op_done(c);
}

void sl_store__begin(sl_store_conn_t *c, op_t op)
{
    c->op = op;
    run_op(c, -1);
}

/* ---- connecting ---- */

void sl_store__connect(sl_store_conn_t *c)
{
    sl_store_t *s = c->s;
    c->m = mysql_init(NULL);
    if (c->m == NULL || sl_store__options(c->m, &s->cfg, 1) != 0) {
        if (c->m)
            mysql_close(c->m);
        c->m = NULL;
        sl_store__drop(c, 1);
        return;
    }
    c->state = C_CONNECTING;
    c->timed_out = 0;
    c->deadline = uv_now(s->loop) + s->cfg.connect_timeout_ms;
    sl_store__begin(c, OP_CONNECT);
}

static void connect_done(sl_store_conn_t *c)
{
    sl_store_t *s = c->s;
    c->op = OP_NONE;
    if (c->mret == NULL || c->timed_out) {
        if (c->timed_out)
            sl_store__errorf(&s->last_connect_error, SL_STORE_E_CONN,
                             "cannot connect to MariaDB: timed out after %u ms", s->cfg.connect_timeout_ms);
        else {
            sl_store__error(&s->last_connect_error, mysql_errno(c->m), mysql_error(c->m));
            s->last_connect_error.code = SL_STORE_E_CONN;
        }
        s->connect_failed = 1;
        c->broken = 1;
        sl_store__drop(c, 1);
        /* Nobody can be served soon: fail the queue now rather than at its deadline. */
        if (s->connected == 0)
            sl_store__fail_waiters(s, &s->last_connect_error);
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
    sl_store__dispatch(s);
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
        sl_store__defer_query(s, cb, data, res, res ? NULL : err);
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
    sl_store__begin(c, OP_EXECUTE);
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
    mysql_stmt_close(e->stmt); /* may write COM_STMT_CLOSE and meet a dead peer */
    follow_socket(c);
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
                follow_socket(c);
                c->entry->stmt = NULL;
                c->entry->text = 1;
                sl_store__begin(c, OP_QUERY_TEXT);
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
            sl_store__begin(c, OP_STORE);
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
        sl_store__begin(c, OP_STORE_TEXT);
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
            sl_store__drop(c, 0);
            return;
        }
        c->state = C_IDLE;
        sl_store__dispatch(s);
        return;
    }
    case OP_NONE:
        return;
    }
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
            sl_store__errorf(&e2, SL_STORE_E_QUERY,
                             "statement cannot be prepared, so it cannot take parameters");
            finish(c, NULL, &e2);
        } else {
            sl_store__begin(c, OP_QUERY_TEXT);
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
            sl_store__begin(c, OP_PREPARE);
        }
    }
    s->depth--;
    return;
fail:
    sl_store__defer_query(s, cb, data, NULL, &err);
    s->depth--;
}
