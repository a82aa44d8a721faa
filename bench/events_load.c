/*
 * Live-event load for `make bench` (bench/events.sh): many open event streams of one session, the
 * time from an owner call's return to its event on every stream, and the server's RSS per stream.
 *
 * usage: events_load PORT SESSION_ID TOKEN STREAMS CHANGES SERVER_PID
 * Opens STREAMS HTTP/1.1 connections to GET /share/SESSION_ID/events on 127.0.0.1:PORT (epoll, one
 * thread), waits until each received its first event, reads the server's RSS, then makes CHANGES
 * owner calls (UpdateSessionTitle, one at a time, HTTP/1.1) and for each waits until every stream
 * received the event of the version the call answered (at most 10 s). Prints one JSON object.
 * An event that arrived while the call was still running counts as 0 ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct stream {
    int fd;
    uint64_t version; /* the highest "id:" seen */
    double at;        /* when it was seen */
    char tail[32];    /* the end of the previous read (an "id: " line may be split) */
    size_t taillen;
} stream_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(const char *pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int connect_to(int port, int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS)) {
        perror("connect");
        exit(1);
    }
    return fd;
}

/* Reads what s has and notes the last "id: N" seen. 0, or -1 when the stream ended. */
static int drain(stream_t *s, double t)
{
    char buf[65536 + 32];
    for (;;) {
        memcpy(buf, s->tail, s->taillen);
        ssize_t n = read(s->fd, buf + s->taillen, 65536);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        size_t len = s->taillen + (size_t)n;
        for (char *p = buf; (p = memmem(p, (size_t)(buf + len - p), "\nid: ", 5)) != NULL; p += 5) {
            char *e = memchr(p + 5, '\n', (size_t)(buf + len - p - 5));
            if (e == NULL)
                break;
            uint64_t v = strtoull(p + 5, NULL, 10);
            if (v > s->version) {
                s->version = v;
                s->at = t;
            }
        }
        s->taillen = len < sizeof(s->tail) ? len : sizeof(s->tail);
        memmove(s->tail, buf + len - s->taillen, s->taillen);
    }
}

/* UpdateSessionTitle over HTTP/1.1 (a connection of its own); returns the version it answered. */
static uint64_t owner_call(int port, const char *token, const char *sid, int k)
{
    char body[256], req[1024], resp[4096];
    int bl = snprintf(body, sizeof(body), "{\"session_id\":\"%s\",\"title\":\"bench title %d\"}", sid, k);
    int rl = snprintf(req, sizeof(req),
                      "POST /rpc/shareline.v1.Sessions/UpdateSessionTitle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n%s",
                      token, bl, body);
    int fd = connect_to(port, 0);
    if (write(fd, req, (size_t)rl) != rl)
        return 0;
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(resp) - 1 && (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    resp[got] = '\0';
    char *v = strstr(resp, "\"version\":");
    return v ? strtoull(v + 10, NULL, 10) : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: events_load PORT SESSION_ID TOKEN STREAMS CHANGES SERVER_PID\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[4]), changes = atoi(argv[5]);
    const char *sid = argv[2], *token = argv[3], *pid = argv[6];
    long rss0 = rss_kb(pid);
    stream_t *st = calloc((size_t)n, sizeof(*st));
    int ep = epoll_create1(0);
    char req[256];
    int rl = snprintf(req, sizeof(req), "GET /share/%s/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", sid);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        st[i].fd = connect_to(port, 1);
        struct epoll_event e = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, st[i].fd, &e);
        if (i % 500 == 499)
            usleep(20000); /* within the listen backlog */
    }
    struct epoll_event evs[1024];
    int connected = 0, sent = 0;
    while (connected < n && now() - t0 < 120) {
        int k = epoll_wait(ep, evs, 1024, 1000);
        double t = now();
        for (int j = 0; j < k; j++) {
            stream_t *s = &st[evs[j].data.u32];
            if (evs[j].events & EPOLLOUT) {
                if (write(s->fd, req, (size_t)rl) != rl) {
                    perror("write");
                    return 1;
                }
                struct epoll_event e = {.events = EPOLLIN, .data.u32 = evs[j].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
                sent++;
            }
            if (evs[j].events & EPOLLIN) {
                uint64_t before = s->version;
                drain(s, t);
                connected += before == 0 && s->version != 0;
            }
        }
    }
    double connect_s = now() - t0;
    if (connected < n) {
        fprintf(stderr, "only %d of %d streams got their first event (%d requests sent)\n", connected, n,
                sent);
        return 1;
    }
    usleep(1000000);
    long rss1 = rss_kb(pid);
    double *lat = calloc((size_t)n * (size_t)changes, sizeof(double)), worst = 0;
    size_t nl = 0;
    for (int c = 0; c < changes; c++) {
        uint64_t v = owner_call(port, token, sid, c);
        double ret = now();
        if (v == 0) {
            fprintf(stderr, "owner call %d failed\n", c);
            return 1;
        }
        int have = 0;
        while (now() - ret < 10) {
            have = 0;
            for (int i = 0; i < n; i++)
                have += st[i].version >= v;
            if (have == n)
                break;
            int k = epoll_wait(ep, evs, 1024, 100);
            double t = now();
            for (int j = 0; j < k; j++)
                drain(&st[evs[j].data.u32], t);
        }
        for (int i = 0; i < n; i++)
            if (st[i].version >= v) {
                double d = st[i].at - ret;
                lat[nl++] = d < 0 ? 0 : d;
                worst = d > worst ? d : worst;
            }
        usleep(200000);
    }
    qsort(lat, nl, sizeof(double), cmp_double);
    printf(
        "{\"streams\": %d, \"connect_seconds\": %.2f, \"rss_kb_before\": %ld, \"rss_kb_with_streams\": %ld, "
        "\"rss_bytes_per_stream\": %ld, \"changes\": %d, \"events_received\": %zu, \"events_expected\": %d, "
        "\"fanout_ms_p50\": %.1f, \"fanout_ms_p99\": %.1f, \"last_stream_ms_max\": %.1f}\n",
        n, connect_s, rss0, rss1, n ? (rss1 - rss0) * 1024 / n : 0, changes, nl, n * changes,
        nl ? lat[nl / 2] * 1000 : -1, nl ? lat[(size_t)((double)nl * 0.99)] * 1000 : -1, worst * 1000);
    return 0;
}
