/* /metrics: the Prometheus text format, the gateway's own counters, and the formatter the process
 * uses for everyone else's (gateway.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "gateway/internal/gateway.h"

static const char *const route_names[SL_GW_ROUTES] = {
    [SL_ROUTE_SHARE_JSON] = "share_json",
    [SL_ROUTE_SHARE_HTML] = "share_html",
    [SL_ROUTE_SHARE_EVENTS] = "share_events",
    [SL_ROUTE_RPC] = "rpc",
    [SL_ROUTE_COMPAT] = "specstory",
    [SL_ROUTE_HEALTH] = "healthz",
    [SL_ROUTE_READY] = "readyz",
    [SL_ROUTE_METRICS] = "metrics",
    [SL_ROUTE_CONSOLE] = "console",
    [SL_ROUTE_OTHER] = "other",
};

static void appendf(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void appendf(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : realloc(*buf, *len + (size_t)n + 1);
    if (p == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(p + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *buf = p;
    *len += (size_t)n;
}

void sl_gateway_metric(char **buf, size_t *len, const char *name, const char *type, const char *help,
                       uint64_t value)
{
    appendf(buf, len, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
            (unsigned long long)value);
}

void sl_gw_metrics(const sl_gateway_t *gw, char **buf, size_t *len)
{
    appendf(buf, len,
            "# HELP shareline_http_requests_total HTTP requests by route.\n"
            "# TYPE shareline_http_requests_total counter\n");
    for (int i = 0; i < SL_GW_ROUTES; i++)
        appendf(buf, len, "shareline_http_requests_total{route=\"%s\"} %llu\n", route_names[i],
                (unsigned long long)gw->requests[i]);
    appendf(buf, len,
            "# HELP shareline_http_responses_total HTTP responses by status class.\n"
            "# TYPE shareline_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        appendf(buf, len, "shareline_http_responses_total{class=\"%dxx\"} %llu\n", c,
                (unsigned long long)gw->status_class[c]);
    sl_copies_stats_t cs;
    sl_copies_stats(gw->copies, &cs);
    sl_gateway_metric(buf, len, "shareline_http_aborted_total", "counter",
                      "Answers dropped because the client had gone.", gw->aborted);
    sl_gateway_metric(buf, len, "shareline_connect_deadlines_total", "counter",
                      "Connect calls answered deadline_exceeded (Connect-Timeout-Ms passed first).",
                      gw->deadlines);
    sl_gateway_metric(buf, len, "shareline_share_copies_hits_total", "counter",
                      "Public answers served from the node's copy (its version confirmed).", cs.hits);
    sl_gateway_metric(buf, len, "shareline_share_copies_misses_total", "counter",
                      "Public answers that carried the representation from the core.", cs.misses);
    sl_gateway_metric(buf, len, "shareline_share_copies_bytes", "gauge",
                      "Bytes of representation copies held by the node (bodies and bookkeeping).", cs.bytes);
    sl_gateway_metric(buf, len, "shareline_share_copies_budget_bytes", "gauge",
                      "SHARELINE_NODE_MEMORY_BYTES: the most the copies may hold.", cs.max_bytes);
    sl_gateway_metric(buf, len, "shareline_share_copies_entries", "gauge", "Representation copies held.",
                      cs.entries);
    sl_gateway_metric(buf, len, "shareline_share_copies_main_bytes", "gauge",
                      "Bytes of copies in the main queue (hit at least once since admission).",
                      cs.main_bytes);
    sl_gateway_metric(buf, len, "shareline_share_copies_admitted_total", "counter",
                      "Copies moved from probation to the main queue (hit while new).", cs.admitted_main);
    sl_gateway_metric(buf, len, "shareline_share_copies_evicted_total", "counter",
                      "Copies evicted to stay within the budget.", cs.evicted);
    sl_events_stats_t es;
    sl_events_stats(gw->events, &es);
    sl_gateway_metric(buf, len, "shareline_event_streams", "gauge", "Live event streams open now.",
                      es.streams);
    sl_gateway_metric(buf, len, "shareline_event_sessions", "gauge",
                      "Sessions the open event streams follow.", es.watches);
    sl_gateway_metric(buf, len, "shareline_events_sent_total", "counter",
                      "Events and heartbeats queued on streams.", es.sent);
    sl_gateway_metric(buf, len, "shareline_event_streams_dropped_total", "counter",
                      "Event streams ended because their client did not read.", es.dropped);
    sl_gateway_metric(buf, len, "shareline_event_streams_gone_total", "counter",
                      "Event streams ended with \"gone\" (private, revoked, deleted).", es.gone);
    sl_gateway_metric(buf, len, "shareline_event_looks_total", "counter",
                      "GetShare looks of followed sessions (one per change and node).", es.looks);
    sl_gateway_metric(buf, len, "shareline_connections_open", "gauge", "Client connections open now.",
                      gw->conns_open);
    sl_gateway_metric(buf, len, "shareline_connections_accepted_total", "counter",
                      "Client connections accepted.", gw->conns_accepted);
    sl_gateway_metric(buf, len, "shareline_connections_refused_total", "counter",
                      "Connections closed at once: SHARELINE_MAX_CONNECTIONS reached.", gw->conns_refused);
}
