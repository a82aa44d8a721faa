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
    if (a->ac == NULL) return;
    if (status < 0) {
        /* libuv reports POLLERR this way and has stopped the handle. hiredis 0.14's own adapter
         * drops these, so a refused connect was never noticed. Hand it to hiredis: while
         * connecting, the write handler reads SO_ERROR and fails the connect (connect callback
         * with REDIS_ERR, context freed); once connected, the read handler gets the socket error
         * and disconnects (pending commands get NULL replies). */
        if (!(a->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(a->ac);
        else
            redisAsyncHandleRead(a->ac);
        /* hiredis kept the context (no error was pending after all): listen again, else nothing
         * would ever wake it — libuv does not restart a handle it stopped. */
        if (a->ac && a->events) uv_poll_start(&a->poll, a->events, on_poll);
        return;
    }
    /* Either handler may end in cleanup (a->ac = NULL); `a` itself lives until the close callback. */
    if ((events & UV_READABLE) && a->ac) redisAsyncHandleRead(a->ac);
    if ((events & UV_WRITABLE) && a->ac) redisAsyncHandleWrite(a->ac);
}

/* hiredis asks for read/write interest one bit at a time; libuv wants the whole set. A failed
 * uv_poll_start (fd gone bad) is left to the connect/command timeouts of cache.c to notice. */
static void update(adapter_t *a, int events)
{
    if (a->ac == NULL) return; /* after cleanup the handle is closing: never restart it */
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

/* The adapter is freed only here: hiredis may call cleanup from inside on_poll. */
static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* hiredis is done with the context (freed, or about to be): stop and close the poll handle
 * before hiredis closes the fd. Called at most once per context. */
static void cleanup(void *p)
{
    adapter_t *a = p;
    a->ac = NULL;
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, on_closed);
}

int sl_uv_redis_attach(uv_loop_t *loop, redisAsyncContext *ac)
{
    if (ac->ev.data != NULL) return -1;
    adapter_t *a = calloc(1, sizeof(*a));
    if (a == NULL) return -1;
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
