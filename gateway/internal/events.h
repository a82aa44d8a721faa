/*
 * Live events, the parts without h2o (events_delta.c): the shared event buffers, their encoding,
 * and the comparison of two versions of a rendered page that makes a change event. Used by
 * events.c (streams, watches, looks).
 */
#ifndef SL_GATEWAY_EVENTS_H
#define SL_GATEWAY_EVENTS_H

#include <stddef.h>
#include <stdint.h>

/* One encoded event, shared by every stream it is queued on. */
typedef struct ev {
    unsigned refs;
    size_t len;
    char data[];
} ev_t;

typedef struct art {
    uint64_t id, hash;
    size_t off, len; /* in the page of the index (valid only while it is being compared) */
} art_t;

typedef struct page_index {
    art_t *arts;
    size_t n;
    uint64_t header_hash;
    size_t header_off, header_len;
    int ok;
} page_index_t;

/* FNV-1a, 64 bits. */
uint64_t sl_ev_hash(const char *s, size_t n);
/* An event of n bytes (a reference held by the caller), or NULL (out of memory). */
ev_t *sl_ev_new(const char *s, size_t n);
void sl_ev_unref(ev_t *e); /* NULL: nothing */
/* "event: version" of version with the JSON document's ETag tag: the connect form (with "retry:"),
 * or with "reload": true. */
ev_t *sl_ev_version(uint64_t version, const char *tag, size_t taglen, int connect, int reload);
/* The articles and header of page p[0..n) (core/projection.c's markup): out->ok = 0 when it has none. */
void sl_ev_index_page(const char *p, size_t n, page_index_t *out);
/* The version event of the change old (version prev) -> (version, page p with index nw): removed,
 * upserted, header; "reload" when prev is 0, an index is unknown, or the change is too big. */
ev_t *sl_ev_change(const page_index_t *old, uint64_t prev, uint64_t version, const char *tag, size_t taglen,
                   const char *p, const page_index_t *nw);

#endif
