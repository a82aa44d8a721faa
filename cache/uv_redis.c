/* The libuv event adapter of cache/ (see uv_redis.h). */
#include <stdlib.h>

#include "cache/internal/uv_redis.h"

/*
 * Write path. hiredis asks for write interest (addWrite) each time a command is appended to its
 * output buffer. Arming UV_WRITABLE for that costs, per command, libuv's stop/start of the poll
 * handle (an epoll_ctl DEL, an ADD, a MOD) plus a whole loop iteration spent waiting for a socket
 * that is almost always writable. Once connected we therefore only note that a write is wanted and
 * flush hiredis' buffer ourselves, once per loop iteration, from a uv_check (right after the I/O
 * callbacks that queued the commands) and a uv_prepare (before the loop blocks, for commands queued
 * by timers and close callbacks). UV_WRITABLE is armed only when a flush could not write everything.
 * Commands queued in one iteration leave in one write(), in the order they were queued.
 *
 * While connecting, hiredis' addWrite means "tell me when connect() completed": that is a real poll.
 */
typedef struct adapter {
    redisAsyncContext *ac; /* NULL once hiredis called cleanup */
    uv_poll_t poll;
    uv_prepare_t prepare;
    uv_check_t check;
    int events;     /* what hiredis asked for (UV_READABLE | UV_WRITABLE) */
    int armed;      /* what the poll handle currently listens for */
    int want_write; /* connected, and hiredis has output to send */
    int flushing;   /* prepare/check started */
    int open_handles;
} adapter_t;

static void on_poll(uv_poll_t *h, int status, int events);

/* Makes the poll handle listen for exactly `events` (libuv restarts the handle on every
 * uv_poll_start, so only call it when the set changes). */
static void arm(adapter_t *a, int events)
{
    if (a->ac == NULL || events == a->armed)
        return;
    a->armed = events;
    if (events)
        uv_poll_start(&a->poll, events, on_poll);
    else
        uv_poll_stop(&a->poll);
}

static int connected(const adapter_t *a)
{
    return a->ac != NULL && (a->ac->c.flags & REDIS_CONNECTED);
}

static void stop_flushing(adapter_t *a)
{
    if (!a->flushing)
        return;
    a->flushing = 0;
    uv_prepare_stop(&a->prepare);
    uv_check_stop(&a->check);
}

static void flush(adapter_t *a)
{
    if (a->ac == NULL || !a->want_write) {
        stop_flushing(a);
        return;
    }
    redisAsyncHandleWrite(a->ac); /* may end in del_write (all sent) or in cleanup (error) */
    if (a->ac == NULL)
        return;
    if (a->want_write) {
        /* the socket's buffer is full: let the poll tell us when it drains */
        stop_flushing(a);
        arm(a, a->events | UV_WRITABLE);
    } else {
        stop_flushing(a);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    flush(h->data);
}

static void on_check(uv_check_t *h)
{
    flush(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    adapter_t *a = h->data;
    if (a->ac == NULL)
        return;
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
        if (a->ac && a->armed)
            uv_poll_start(&a->poll, a->armed, on_poll);
        return;
    }
    /* Either handler may end in cleanup (a->ac = NULL); `a` itself lives until the close callbacks. */
    if ((events & UV_READABLE) && a->ac)
        redisAsyncHandleRead(a->ac);
    if ((events & UV_WRITABLE) && a->ac)
        redisAsyncHandleWrite(a->ac);
    if (connected(a) && (a->events & UV_WRITABLE)) {
        /* the connect completed: from now on write interest is want_write (flush or poll) */
        a->events &= ~UV_WRITABLE;
        arm(a, a->events | (a->want_write ? UV_WRITABLE : 0));
    }
}

static void add_read(void *p)
{
    adapter_t *a = p;
    a->events |= UV_READABLE;
    arm(a, a->events | (a->armed & UV_WRITABLE));
}

static void del_read(void *p)
{
    adapter_t *a = p;
    a->events &= ~UV_READABLE;
    arm(a, a->events | (a->armed & UV_WRITABLE));
}

static void add_write(void *p)
{
    adapter_t *a = p;
    if (a->ac == NULL)
        return;
    if (!connected(a)) {
        a->events |= UV_WRITABLE; /* connecting: wait for the connect to complete */
        arm(a, a->events);
        return;
    }
    a->want_write = 1;
    if (!(a->armed & UV_WRITABLE) && !a->flushing) {
        a->flushing = 1;
        uv_prepare_start(&a->prepare, on_prepare);
        uv_check_start(&a->check, on_check);
    }
}

static void del_write(void *p)
{
    adapter_t *a = p;
    a->want_write = 0;
    a->events &= ~UV_WRITABLE;
    arm(a, a->events);
}

/* The adapter is freed when its three handles are closed: hiredis may call cleanup from inside
 * on_poll or flush. */
static void on_closed(uv_handle_t *h)
{
    adapter_t *a = h->data;
    if (--a->open_handles == 0)
        free(a);
}

/* hiredis is done with the context (freed, or about to be): stop and close the handles before
 * hiredis closes the fd. Called at most once per context. */
static void cleanup(void *p)
{
    adapter_t *a = p;
    a->ac = NULL;
    a->want_write = 0;
    stop_flushing(a);
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->prepare, on_closed);
    uv_close((uv_handle_t *)&a->check, on_closed);
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
    uv_prepare_init(loop, &a->prepare);
    uv_check_init(loop, &a->check);
    a->open_handles = 3;
    a->ac = ac;
    a->poll.data = a;
    a->prepare.data = a;
    a->check.data = a;
    ac->ev.data = a;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
