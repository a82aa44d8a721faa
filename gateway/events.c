/*
 * Live events: GET /share/{id}/events (API.md "Live events", README "Live events").
 *
 * A stream is answered like the page it belongs to: the same GetShare of the HTML page (the node's
 * copy confirmed, or a call), the same 404 for anything not public. Then it stays open as
 * text/event-stream and hears:
 *   event: version   at connect, and after every change of the public document: its version, the
 *                    JSON document's ETag, and the change against the version before ("prev"):
 *                    exchanges removed, articles added or changed (rendered HTML, each with the id
 *                    it follows), the header when it changed; "reload" when the change cannot be
 *                    described (too big, or the node did not know the version before);
 *   event: gone      the session became private, was revoked or deleted; the stream ends;
 *   ": hb"           a comment every SHARELINE_EVENTS_HEARTBEAT_MS (15 s).
 *
 * Streams of one session share a watch: one look per change and node, however many streams. A
 * look is a GetShare of the HTML page (into the node's copies); a new version is compared with the
 * index of the one before (the articles' ids and hashes, the header's hash) and one event is
 * encoded and queued, by reference, on every stream. Changes are heard through the core's change
 * notices (rpc.h: every invalidation of docs/invalidation.md, from any node); every watch is also
 * looked at with each heartbeat (every second when the node has no notices: SHARELINE_NODE_MEMORY=0).
 *
 * The encoding of events and the comparison of two pages are in events_delta.c.
 *
 * Bounds: SHARELINE_MAX_EVENT_STREAMS streams a node (503 beyond); a stream whose client does not
 * read keeps at most EV_QUEUE_MAX events or EV_QUEUE_BYTES queued, then it is ended (the browser
 * reconnects with Last-Event-ID and gets the current version); pages over INDEX_INLINE bytes are
 * indexed on the thread pool.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/internal/events.h"
#include "gateway/internal/gateway.h"

#define EV_QUEUE_MAX   8
#define EV_QUEUE_BYTES (512u << 10)
#define INDEX_INLINE   (256u << 10)
#define WATCH_SLOTS    4096

struct sl_ev_stream;

typedef struct watch {
    struct watch *hnext;
    sl_events_t *ev;
    size_t idlen;
    char id[65];
    struct sl_ev_stream *streams;
    size_t nstreams;
    uint64_t version;   /* the version the streams were last told of (0: none yet) */
    page_index_t index; /* of that version's page (ok = 0: unknown) */
    int busy, again;    /* a look in flight / another notice came meanwhile */
    int kicked;         /* on the kick list: look at it in the next loop iteration */
    struct watch *knext;
} watch_t;

typedef struct sl_ev_stream {
    h2o_generator_t super;
    h2o_req_t *req; /* NULL once disposed */
    watch_t *w;
    struct sl_ev_stream *prev, *next;
    ev_t *queue[EV_QUEUE_MAX];
    size_t nqueue, queued_bytes;
    ev_t *inflight[EV_QUEUE_MAX + 1];
    size_t ninflight;
    int sending, ending, ended;
} stream_t;

struct sl_events {
    sl_gateway_t *gw;
    watch_t *slots[WATCH_SLOTS];
    size_t nwatches, nstreams, max_streams;
    unsigned heartbeat_ms, tick_ms, ticks;
    uv_timer_t timer;
    uv_timer_t kick; /* runs the looks of the notices, outside the caller's stack */
    watch_t *kicks;
    int closing; /* timers not yet closed */
    uint64_t sent, dropped, gone, looks;
};

/* ---- watches ---- */

static watch_t **slot_of(sl_events_t *ev, const char *id, size_t idlen)
{
    watch_t **p = &ev->slots[sl_ev_hash(id, idlen) % WATCH_SLOTS];
    while (*p && !((*p)->idlen == idlen && memcmp((*p)->id, id, idlen) == 0))
        p = &(*p)->hnext;
    return p;
}

static void watch_free_if_idle(watch_t *w)
{
    if (w->nstreams > 0 || w->busy || w->kicked)
        return;
    watch_t **p = slot_of(w->ev, w->id, w->idlen);
    if (*p == w)
        *p = w->hnext;
    w->ev->nwatches--;
    free(w->index.arts);
    free(w);
}

/* ---- streams ---- */

static void stream_flush(stream_t *s);

static void stream_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    stream_t *s = (stream_t *)g;
    for (size_t i = 0; i < s->ninflight; i++)
        sl_ev_unref(s->inflight[i]);
    s->ninflight = 0;
    s->sending = 0;
    stream_flush(s);
}

static void stream_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g;
    (void)req; /* the pool's dispose hook below does the cleaning */
}

static void stream_detach(stream_t *s)
{
    watch_t *w = s->w;
    if (w == NULL)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->w = NULL;
    w->nstreams--;
    w->ev->nstreams--;
    watch_free_if_idle(w);
}

/* The request's pool is being cleared: h2o holds none of our bytes any more. */
static void stream_dispose(void *p)
{
    stream_t *s = p;
    stream_detach(s);
    for (size_t i = 0; i < s->nqueue; i++)
        sl_ev_unref(s->queue[i]);
    for (size_t i = 0; i < s->ninflight; i++)
        sl_ev_unref(s->inflight[i]);
    s->nqueue = s->ninflight = 0;
    s->req = NULL;
}

/* Sends what is queued when h2o is ready for more (one h2o_send at a time); the final one when the
 * stream is ending. */
static void stream_flush(stream_t *s)
{
    if (s->sending || s->ended || s->req == NULL || (s->nqueue == 0 && !s->ending))
        return;
    h2o_iovec_t bufs[EV_QUEUE_MAX];
    for (size_t i = 0; i < s->nqueue; i++) {
        bufs[i] = h2o_iovec_init(s->queue[i]->data, s->queue[i]->len);
        s->inflight[i] = s->queue[i];
    }
    s->ninflight = s->nqueue;
    size_t n = s->nqueue;
    s->nqueue = 0;
    s->queued_bytes = 0;
    if (s->ending) {
        s->ended = 1;
        stream_detach(s);
        h2o_send(s->req, bufs, n, H2O_SEND_STATE_FINAL);
        return;
    }
    s->sending = 1;
    h2o_send(s->req, bufs, n, H2O_SEND_STATE_IN_PROGRESS);
}

static void stream_end(stream_t *s)
{
    s->ending = 1;
    stream_flush(s);
}

/* Queues e on s (a reference); a client that stopped reading is ended instead. */
static void stream_push(stream_t *s, ev_t *e)
{
    if (s->ending || s->ended)
        return;
    if (s->nqueue == EV_QUEUE_MAX || s->queued_bytes + e->len > EV_QUEUE_BYTES) {
        s->w->ev->dropped++;
        for (size_t i = 0; i < s->nqueue; i++)
            sl_ev_unref(s->queue[i]);
        s->nqueue = 0;
        s->queued_bytes = 0;
        stream_end(s);
        return;
    }
    e->refs++;
    s->queue[s->nqueue++] = e;
    s->queued_bytes += e->len;
    s->w->ev->sent++;
    stream_flush(s);
}

static void broadcast(watch_t *w, ev_t *e, int end)
{
    for (stream_t *s = w->streams, *next; s; s = next) {
        next = s->next; /* ending detaches */
        if (e)
            stream_push(s, e);
        if (end)
            stream_end(s);
    }
}

/* ---- looks: what holds now, and the event that tells it ---- */

static void look(watch_t *w);

static void look_done(watch_t *w)
{
    w->busy = 0;
    if (w->again && w->nstreams > 0) {
        look(w);
        return;
    }
    watch_free_if_idle(w);
}

/* The page of version (copy e) with index ix is what holds: tell the streams (nothing when they
 * already know that version), and keep the index for the next change. */
static void apply(watch_t *w, const sl_copy_t *e, uint64_t version, page_index_t *ix)
{
    if (version != w->version) {
        const char *p;
        size_t n;
        sl_copy_body(e, &p, &n);
        char tag[SL_REP_TAG_MAX];
        size_t tl = sl_copy_json_tag(e, tag);
        ev_t *ev = sl_ev_change(&w->index, w->version, version, tag, tl, p, ix);
        if (ev) {
            broadcast(w, ev, 0);
            sl_ev_unref(ev);
        }
    }
    free(w->index.arts);
    w->index = *ix;
    w->version = version;
}

typedef struct index_job {
    uv_work_t work;
    watch_t *w;
    sl_copy_t *e; /* held (sl_copy_ref) while the thread reads it */
    uint64_t version;
    page_index_t ix;
} index_job_t;

static void index_work(uv_work_t *req)
{
    index_job_t *j = req->data;
    const char *p;
    size_t n;
    sl_copy_body(j->e, &p, &n);
    sl_ev_index_page(p, n, &j->ix);
}

static void index_after(uv_work_t *req, int status)
{
    index_job_t *j = req->data;
    if (status == 0 && !j->w->again)
        apply(j->w, j->e, j->version, &j->ix);
    else
        free(j->ix.arts);
    sl_copy_unref(j->e);
    watch_t *w = j->w;
    free(j);
    look_done(w);
}

/* Indexes the page of copy e (version) and applies it; large pages on the thread pool. */
static void index_and_apply(watch_t *w, sl_copy_t *e, uint64_t version)
{
    const char *p;
    size_t n;
    sl_copy_body(e, &p, &n);
    if (n > INDEX_INLINE) {
        index_job_t *j = calloc(1, sizeof(*j));
        if (j != NULL) {
            j->work.data = j;
            j->w = w;
            j->e = e;
            j->version = version;
            sl_copy_ref(e);
            if (uv_queue_work(w->ev->gw->loop, &j->work, index_work, index_after) == 0)
                return; /* look_done in index_after */
            sl_copy_unref(e);
            free(j);
        }
    }
    page_index_t ix;
    sl_ev_index_page(p, n, &ix);
    apply(w, e, version, &ix);
    look_done(w);
}

static void on_look(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    watch_t *w = data;
    sl_gateway_t *gw = w->ev->gw;
    sl_rpc_share_t s;
    if (w->again) {
        /* A change was heard while this look was in flight: what it read may predate that change,
         * so it is not told to anyone; look again. (An owner's call returns only after every node
         * heard its change: no answer read before the change reaches a stream after the return.) */
        look_done(w);
        return;
    }
    if (code != SL_RPC_OK || sl_rpc_share_decode(body, len, &s) != 0 ||
        (s.found && !s.unchanged && s.which != SL_REP_HTML)) {
        look_done(w); /* looked at again with the next tick */
        return;
    }
    if (!s.found) {
        /* private, revoked or deleted: every stream hears "gone" and ends */
        sl_copies_drop_id(gw->copies, w->id, w->idlen);
        ev_t *ev = sl_ev_new(H2O_STRLIT("event: gone\ndata: {}\n\n"));
        w->ev->gone += w->nstreams;
        broadcast(w, ev, 1);
        sl_ev_unref(ev);
        w->again = 0;
        look_done(w);
        return;
    }
    sl_copy_t *e = sl_copies_find(gw->copies, w->id, w->idlen, SL_REP_HTML);
    if (s.unchanged) {
        if (e == NULL || sl_copy_version(e) != s.version) {
            w->again = 1; /* our copy went away meanwhile: look again */
            look_done(w);
            return;
        }
    } else {
        e = sl_copies_put(gw->copies, w->id, w->idlen, SL_REP_HTML, body, len);
        if (e == NULL) {
            /* a page the node cannot keep: no index, the pages reload */
            page_index_t none = {0};
            if (s.version != w->version) {
                char tag[SL_REP_TAG_MAX];
                size_t tl = sl_rep_tag(&s, SL_REP_JSON, tag);
                ev_t *ev = sl_ev_version(s.version, tag, tl, 0, 1);
                if (ev) {
                    broadcast(w, ev, 0);
                    sl_ev_unref(ev);
                }
            }
            free(w->index.arts);
            w->index = none;
            w->version = s.version;
            look_done(w);
            return;
        }
    }
    uint64_t version = sl_copy_version(e);
    if (version == w->version && w->index.ok) {
        look_done(w);
        return;
    }
    index_and_apply(w, e, version);
}

static void look(watch_t *w)
{
    if (w->busy) {
        w->again = 1;
        return;
    }
    sl_gateway_t *gw = w->ev->gw;
    sl_copy_t *e = sl_copies_find(gw->copies, w->id, w->idlen, SL_REP_HTML);
    uint64_t have_v = e ? sl_copy_version(e) : 0, have_t = e ? sl_copy_tag(e) : 0;
    if (e && have_v == w->version && w->index.ok &&
        sl_rpc_share_confirm(gw->rpc, w->id, w->idlen, have_v, have_t))
        return; /* the node knows for certain nothing changed */
    w->busy = 1;
    w->again = 0;
    w->ev->looks++;
    char buf[SL_RPC_SHARE_SMALL_MAX];
    size_t n = sl_rpc_share_request_encode(buf, sizeof(buf), w->id, w->idlen, SL_REP_HTML, have_v, have_t);
    const char *m = sl_rpc_method_name(SL_M_GET_SHARE);
    sl_rpc_call(gw->rpc, m, strlen(m), NULL, 0, buf, n, on_look, w);
}

static void on_kick(uv_timer_t *t)
{
    sl_events_t *ev = t->data;
    watch_t *list = ev->kicks;
    ev->kicks = NULL;
    while (list) {
        watch_t *w = list;
        list = w->knext;
        w->kicked = 0;
        if (w->nstreams > 0)
            look(w);
        else
            watch_free_if_idle(w);
    }
}

/* A change notice of the core (rpc.h): if anyone here follows the session, a look in flight is
 * marked at once (its answer may predate the change: docs/invalidation.md, "Live events"), and a
 * look is made in the next loop iteration (notices may come from inside an owner's call). */
static void on_changed(void *data, const char *id, size_t idlen)
{
    sl_events_t *ev = data;
    watch_t *w = *slot_of(ev, id, idlen);
    if (w == NULL)
        return;
    if (w->busy)
        w->again = 1;
    else if (!w->kicked) {
        w->kicked = 1;
        w->knext = ev->kicks;
        ev->kicks = w;
        uv_timer_start(&ev->kick, on_kick, 0, 0);
    }
}

/* ---- connecting ---- */

static void start_stream(sl_gateway_t *gw, h2o_req_t *req, const char *id, size_t idlen, uint64_t version,
                         const char *tag, size_t taglen)
{
    sl_events_t *ev = gw->events;
    watch_t **slot = slot_of(ev, id, idlen), *w = *slot;
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, 503, NULL);
            return;
        }
        w->ev = ev;
        w->idlen = idlen;
        memcpy(w->id, id, idlen);
        *slot = w;
        ev->nwatches++;
    }
    stream_t *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), stream_dispose);
    memset(s, 0, sizeof(*s));
    s->super.proceed = stream_proceed;
    s->super.stop = stream_stop;
    s->req = req;
    s->w = w;
    s->next = w->streams;
    if (w->streams)
        w->streams->prev = s;
    w->streams = s;
    w->nstreams++;
    ev->nstreams++;

    sl_gw_count_status(gw, 200);
    req->res.status = 200;
    req->res.reason = "OK";
    sl_gw_add_header(req, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("text/event-stream; charset=utf-8"));
    sl_gw_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
    sl_gw_add_header_str(req, "x-robots-tag", "noindex, nofollow");
    sl_gw_add_header_str(req, "x-content-type-options", "nosniff");
    sl_gw_add_header_str(req, "x-accel-buffering", "no");
    h2o_start_response(req, &s->super);

    ev_t *e = sl_ev_version(version, tag, taglen, 1, 0);
    if (e) {
        stream_push(s, e);
        sl_ev_unref(e);
    }
    if (w->version == 0)
        w->version = version; /* what its first stream was told: the base of the first change */
    if (w->version != version || !w->index.ok)
        look(w); /* learn the page's index (or catch up with what the stream was told) */
}

static void on_connect_reply(sl_rpc_code_t code, const void *body, size_t len, void *data)
{
    sl_pending_t *pd = data;
    sl_gateway_t *gw = pd->gw;
    sl_pending_t d = *pd;
    h2o_req_t *req = sl_gw_pending_finish(pd);
    if (req == NULL)
        return;
    sl_rpc_share_t s;
    if (code != SL_RPC_OK || sl_rpc_share_decode(body, len, &s) != 0 ||
        (s.found && !s.unchanged && s.which != SL_REP_HTML)) {
        sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, code == SL_RPC_UNAVAILABLE ? 503 : 500, NULL);
        return;
    }
    if (!s.found) {
        sl_copies_drop_id(gw->copies, d.id, d.idlen);
        sl_gw_share_not_found(gw, req, SL_ROUTE_SHARE_HTML);
        return;
    }
    char tag[SL_REP_TAG_MAX];
    if (s.unchanged) {
        sl_copy_t *e = sl_copies_find(gw->copies, d.id, d.idlen, SL_REP_HTML);
        if (e == NULL || sl_copy_version(e) != s.version) {
            sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, 503, NULL); /* raced a change: retry */
            return;
        }
        start_stream(gw, req, d.id, d.idlen, s.version, tag, sl_copy_json_tag(e, tag));
        return;
    }
    (void)sl_copies_put(gw->copies, d.id, d.idlen, SL_REP_HTML, body, len);
    start_stream(gw, req, d.id, d.idlen, s.version, tag, sl_rep_tag(&s, SL_REP_JSON, tag));
}

void sl_gw_events(sl_gateway_t *gw, h2o_req_t *req, const char *id, size_t idlen)
{
    sl_events_t *ev = gw->events;
    if (!sl_route_share_id_valid(id, idlen)) {
        sl_gw_share_not_found(gw, req, SL_ROUTE_SHARE_HTML);
        return;
    }
    if (ev->nstreams >= ev->max_streams) {
        sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, 503, NULL);
        return;
    }
    sl_copy_t *e = sl_copies_find(gw->copies, id, idlen, SL_REP_HTML);
    if (e != NULL && sl_rpc_share_confirm(gw->rpc, id, idlen, sl_copy_version(e), sl_copy_tag(e))) {
        char tag[SL_REP_TAG_MAX];
        start_stream(gw, req, id, idlen, sl_copy_version(e), tag, sl_copy_json_tag(e, tag));
        return;
    }
    sl_pending_t *pd = sl_gw_pending_new(gw, req, SL_ROUTE_SHARE_HTML);
    if (pd == NULL) {
        sl_gw_share_error(gw, req, SL_ROUTE_SHARE_HTML, 503, NULL);
        return;
    }
    memcpy(pd->id, id, idlen);
    pd->idlen = idlen;
    char buf[SL_RPC_SHARE_SMALL_MAX];
    size_t n = sl_rpc_share_request_encode(buf, sizeof(buf), id, idlen, SL_REP_HTML,
                                           e ? sl_copy_version(e) : 0, e ? sl_copy_tag(e) : 0);
    const char *m = sl_rpc_method_name(SL_M_GET_SHARE);
    sl_rpc_call(gw->rpc, m, strlen(m), NULL, 0, buf, n, on_connect_reply, pd);
}

/* ---- heartbeats and looks by the clock ---- */

static void on_tick(uv_timer_t *t)
{
    sl_events_t *ev = t->data;
    ev->ticks++;
    int heartbeat = (uint64_t)ev->ticks * ev->tick_ms >= ev->heartbeat_ms;
    if (heartbeat)
        ev->ticks = 0;
    ev_t *hb = heartbeat ? sl_ev_new(H2O_STRLIT(": hb\n\n")) : NULL;
    for (size_t i = 0; i < WATCH_SLOTS; i++) {
        for (watch_t *w = ev->slots[i], *next; w; w = next) {
            next = w->hnext;
            w->busy++; /* pinned while its streams are walked */
            if (hb)
                broadcast(w, hb, 0);
            w->busy--;
            if (w->nstreams == 0) {
                watch_free_if_idle(w);
                continue;
            }
            look(w);
        }
    }
    sl_ev_unref(hb);
}

int sl_events_open(sl_events_t **out, sl_gateway_t *gw, unsigned heartbeat_ms, size_t max_streams)
{
    sl_events_t *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return -1;
    ev->gw = gw;
    ev->heartbeat_ms = heartbeat_ms ? heartbeat_ms : 15000;
    ev->max_streams = max_streams ? max_streams : 20000;
    /* without change notices every watch is looked at each second */
    ev->tick_ms = sl_rpc_changes_available(gw->rpc) ? ev->heartbeat_ms : 1000;
    if (ev->tick_ms > ev->heartbeat_ms)
        ev->tick_ms = ev->heartbeat_ms;
    uv_timer_init(gw->loop, &ev->kick);
    ev->kick.data = ev;
    uv_timer_init(gw->loop, &ev->timer);
    ev->timer.data = ev;
    uv_timer_start(&ev->timer, on_tick, ev->tick_ms, ev->tick_ms);
    uv_unref((uv_handle_t *)&ev->timer);
    sl_rpc_set_change_listener(gw->rpc, on_changed, ev);
    *out = ev;
    return 0;
}

/* The two timers live inside ev: it is freed when libuv is done with both. */
static void on_timer_closed(uv_handle_t *h)
{
    sl_events_t *ev = h->data;
    if (--ev->closing == 0)
        free(ev);
}

void sl_events_close(sl_events_t *ev)
{
    if (ev == NULL)
        return;
    sl_rpc_set_change_listener(ev->gw->rpc, NULL, NULL);
    uv_timer_stop(&ev->timer);
    uv_timer_stop(&ev->kick);
    ev->closing = 2;
    uv_close((uv_handle_t *)&ev->kick, on_timer_closed);
    /* streams still open belong to h2o's requests; they detach when those are disposed */
    for (size_t i = 0; i < WATCH_SLOTS; i++)
        for (watch_t *w = ev->slots[i]; w; w = w->hnext)
            for (stream_t *s = w->streams; s; s = s->next)
                s->w = NULL;
    for (size_t i = 0; i < WATCH_SLOTS; i++)
        for (watch_t *w = ev->slots[i], *next; w; w = next) {
            next = w->hnext;
            if (w->busy)
                continue; /* its look answers into it: left to the process's exit */
            free(w->index.arts);
            free(w);
        }
    uv_close((uv_handle_t *)&ev->timer, on_timer_closed);
}

void sl_events_stats(const sl_events_t *ev, sl_events_stats_t *out)
{
    out->streams = ev->nstreams;
    out->watches = ev->nwatches;
    out->sent = ev->sent;
    out->dropped = ev->dropped;
    out->gone = ev->gone;
    out->looks = ev->looks;
}
