/*
 * The gateway's routing, apart from h2o so that it can be unit-tested and fuzzed
 * (tests/gateway/test_route.c, tests/fuzz/fuzz_route.c): which handler a path goes to, what a share
 * id may be, and the paths of the SpecStory-compatible API. Pure functions; nothing is allocated.
 */
#ifndef SL_GATEWAY_ROUTE_H
#define SL_GATEWAY_ROUTE_H

#include <stddef.h>

/* The same order as the gateway's per-route counters. */
typedef enum sl_route_kind {
    SL_ROUTE_SHARE_JSON,   /* /api/v1/share/{id} */
    SL_ROUTE_SHARE_HTML,   /* /share/{id} */
    SL_ROUTE_SHARE_EVENTS, /* /share/{id}/events */
    SL_ROUTE_RPC,          /* /rpc/{service/method} */
    SL_ROUTE_COMPAT,       /* /api/v1/projects[/...] */
    SL_ROUTE_HEALTH,       /* /healthz */
    SL_ROUTE_READY,        /* /readyz */
    SL_ROUTE_METRICS,      /* /metrics */
    SL_ROUTE_CONSOLE,      /* /console[/...] */
    SL_ROUTE_OTHER,
} sl_route_kind_t;

typedef struct sl_route {
    sl_route_kind_t kind;
    const char *rest; /* inside the path: the share id, the RPC method, the compat path after
                         "/api/v1/projects" ("" or starting with '/'); NULL for the others */
    size_t rest_len;
} sl_route_t;

/* Classifies path[0..len) (the query, from the first '?', is ignored). */
void sl_route_classify(const char *path, size_t len, sl_route_t *out);

/* 1 when id[0..len) is a possible share id: 1-64 bytes of A-Z a-z 0-9 '-' '_'. Anything else can
 * only be answered with the unknown-id 404 (so no id can ever name a file or another path). */
int sl_route_share_id_valid(const char *id, size_t len);

/* Percent-decodes one path segment into out (NUL-terminated, at most cap - 1 bytes). Returns its
 * length, or -1 when it is empty, too long, has a control byte (after decoding) or is not UTF-8. */
int sl_route_segment(const char *s, size_t n, char *out, size_t cap);

typedef enum sl_compat_kind {
    SL_COMPAT_NONE,     /* no such route: 404 */
    SL_COMPAT_PROJECTS, /* "" or "/" */
    SL_COMPAT_SESSIONS, /* /{project}/sessions[/] */
    SL_COMPAT_SIZES,    /* /{project}/sessions/sizes */
    SL_COMPAT_SESSION,  /* /{project}/sessions/{session} */
} sl_compat_kind_t;

/* Parses the compat path after "/api/v1/projects"; project (and for SL_COMPAT_SESSION session)
 * receive the decoded segments (sl_route_segment rules). */
sl_compat_kind_t sl_route_compat(const char *rest, size_t len, char *project, size_t pcap, char *session,
                                 size_t scap);

#endif
