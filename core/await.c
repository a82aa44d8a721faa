/* Adapters that let a task wait for the callback-based store and cache (see task.h). */
#include <stdlib.h>
#include <string.h>

#include "core/internal/core.h"

typedef struct wait_store {
    sl_task_t *task;
    int done;
    sl_store_conn_t *conn;
    sl_store_result_t *res;
    sl_store_error_t err;
} wait_store_t;

static void finish(int *done, sl_task_t *task)
{
    *done = 1;
    /* Callbacks are never synchronous (module contracts), so the task is always waiting here. */
    sl_task_resume(task);
}

static void on_acquire(sl_store_conn_t *conn, const sl_store_error_t *err, void *data)
{
    wait_store_t *w = data;
    w->conn = conn;
    if (err)
        w->err = *err;
    finish(&w->done, w->task);
}

static void on_query(sl_store_result_t *res, const sl_store_error_t *err, void *data)
{
    wait_store_t *w = data;
    w->res = res;
    if (err)
        w->err = *err;
    finish(&w->done, w->task);
}

static void wait_until(int *done)
{
    while (!*done)
        sl_task_wait();
}

sl_store_conn_t *sl_await_acquire(sl_store_t *s, sl_store_error_t *err)
{
    wait_store_t w = {.task = sl_task_current()};
    sl_store_acquire(s, on_acquire, &w);
    wait_until(&w.done);
    if (w.conn == NULL)
        *err = w.err;
    return w.conn;
}

sl_store_result_t *sl_await_exec(sl_store_conn_t *c, const char *sql, const sl_store_value_t *params,
                                 size_t n, sl_store_error_t *err)
{
    wait_store_t w = {.task = sl_task_current()};
    sl_store_exec(c, sql, params, n, on_query, &w);
    wait_until(&w.done);
    if (w.res == NULL)
        *err = w.err;
    return w.res;
}

sl_store_result_t *sl_await_query(sl_store_t *s, const char *sql, const sl_store_value_t *params, size_t n,
                                  sl_store_error_t *err)
{
    wait_store_t w = {.task = sl_task_current()};
    sl_store_query(s, sql, params, n, on_query, &w);
    wait_until(&w.done);
    if (w.res == NULL)
        *err = w.err;
    return w.res;
}

typedef struct wait_proj {
    sl_task_t *task;
    int done;
    sl_proj_reply_t *out;
    void **payload; /* when non-NULL, the payload is copied here */
} wait_proj_t;

static void on_proj(const sl_proj_reply_t *r, void *data)
{
    wait_proj_t *w = data;
    *w->out = *r;
    if (w->payload != NULL && r->status == SL_CACHE_OK && r->kind == SL_PROJ_PUBLIC) {
        /* the part, then the meta text, in one buffer */
        *w->payload = malloc(r->len + r->meta_len + 1);
        if (*w->payload == NULL) {
            w->out->status = SL_CACHE_E_REPLY;
            w->out->error = "out of memory";
        } else {
            memcpy(*w->payload, r->payload, r->len);
            if (r->meta_len)
                memcpy((char *)*w->payload + r->len, r->meta, r->meta_len);
        }
    }
    /* The reply's pointers are only valid during the callback. */
    w->out->payload = w->payload ? *w->payload : NULL;
    w->out->meta = w->payload && *w->payload ? (const char *)*w->payload + r->len : NULL;
    if (w->out->meta == NULL)
        w->out->meta_len = 0;
    if (w->out->status != SL_CACHE_OK)
        w->out->error = "cache unavailable";
    finish(&w->done, w->task);
}

void sl_await_proj_get(sl_cache_t *c, const char *id, size_t idlen, unsigned part, sl_proj_result_t *out)
{
    memset(out, 0, sizeof(*out));
    wait_proj_t w = {sl_task_current(), 0, &out->r, &out->payload};
    sl_cache_proj_get(c, id, idlen, part, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_head(c, id, idlen, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_lease(c, id, idlen, token, ttl_ms, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, uint64_t tag, const sl_proj_content_t *content,
                        sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_fill(c, id, idlen, token, kind, version, tag, content, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_mark(c, id, idlen, version, ttl_ms, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_unmark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_unmark(c, id, idlen, version, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           uint64_t tag, const sl_proj_content_t *content, sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_publish(c, id, idlen, kind, version, tag, content, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_proj_drop(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, uint64_t tag,
                        sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_cache_proj_drop(c, id, idlen, version, tag, on_proj, &w);
    wait_until(&w.done);
}

void sl_await_coh_invalidate(sl_coh_t *h, const char *id, size_t idlen, uint64_t version,
                             sl_proj_reply_t *out)
{
    wait_proj_t w = {sl_task_current(), 0, out, NULL};
    sl_coh_invalidate(h, id, idlen, version, on_proj, &w);
    wait_until(&w.done);
}

typedef struct wait_timer {
    uv_timer_t timer;
    sl_task_t *task;
    int done;
} wait_timer_t;

static void on_timer_closed(uv_handle_t *h)
{
    wait_timer_t *w = h->data;
    finish(&w->done, w->task);
}

static void on_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_timer_closed);
}

void sl_await_sleep(uv_loop_t *loop, unsigned ms)
{
    wait_timer_t w = {.task = sl_task_current()};
    uv_timer_init(loop, &w.timer);
    w.timer.data = &w;
    uv_timer_start(&w.timer, on_timer, ms, 0);
    wait_until(&w.done);
}

/* ---- work off the loop ---- */

typedef struct wait_work {
    uv_work_t req;
    sl_task_t *task;
    int done;
    void (*fn)(void *);
    void *arg;
} wait_work_t;

static void on_work(uv_work_t *req)
{
    wait_work_t *w = req->data;
    w->fn(w->arg);
}

static void on_work_done(uv_work_t *req, int status)
{
    (void)status; /* never cancelled: uv_cancel is not used */
    wait_work_t *w = req->data;
    finish(&w->done, w->task);
}

void sl_await_work(uv_loop_t *loop, void (*fn)(void *), void *arg)
{
    wait_work_t w = {.task = sl_task_current(), .fn = fn, .arg = arg};
    w.req.data = &w;
    if (uv_queue_work(loop, &w.req, on_work, on_work_done) != 0) {
        fn(arg); /* cannot queue: do it here rather than not at all */
        return;
    }
    wait_until(&w.done);
}
