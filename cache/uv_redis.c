/* The libuv event adapter of cache/ (see uv_redis.h). */
#include <stdlib.h>

#include "cache/uv_redis.h"

typedef struct adapter {
    redisAsyncContext *ac; /* NULL once hiredis called cleanup */
    uv_poll_t poll;
    int events;
} adapter_t;

static void on_poll(uv_poll_t *h, int status, int events)
{
    adapter_t *a = h->data;
    if (a->ac == NULL)
        return;
    if (status < 0) {
        /* libuv stopped the handle. Let hiredis see the socket error: while connecting the write
         * handler checks SO_ERROR and fails the connect; once connected a read gets the error. */
        if (!(a->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(a->ac);
        else
            redisAsyncHandleRead(a->ac);
        return;
    }
    /* Either handler may end in cleanup (a->ac = NULL); `a` itself lives until the close callback. */
    if ((events & UV_READABLE) && a->ac)
        redisAsyncHandleRead(a->ac);
    if ((events & UV_WRITABLE) && a->ac)
        redisAsyncHandleWrite(a->ac);
}

static void update(adapter_t *a, int events)
{
    a->events = events;
    if (events)
        uv_poll_start(&a->poll, events, on_poll);
    else
        uv_poll_stop(&a->poll);
}

static void add_read(void *p)
{
    adapter_t *a = p;
    update(a, a->events | UV_READABLE);
}

static void del_read(void *p)
{
    adapter_t *a = p;
    update(a, a->events & ~UV_READABLE);
}

static void add_write(void *p)
{
    adapter_t *a = p;
    update(a, a->events | UV_WRITABLE);
}

static void del_write(void *p)
{
    adapter_t *a = p;
    update(a, a->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void cleanup(void *p)
{
    adapter_t *a = p;
    a->ac = NULL;
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, on_closed);
}

int sl_uv_redis_attach(uv_loop_t *loop, redisAsyncContext *ac)
{
    if (ac->ev.data != NULL)
        return -1;
    adapter_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -1;
    if (uv_poll_init(loop, &a->poll, ac->c.fd) != 0) {
        free(a);
        return -1;
    }
    a->ac = ac;
    a->poll.data = a;
    ac->ev.data = a;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
