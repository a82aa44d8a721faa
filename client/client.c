/* The owner-RPC client (see client.h), over libcurl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "client/client.h"
#include "rpc/rpc.h"

struct sl_client {
    CURLSH *share; /* the connection cache, kept across calls */
    char *base;
    char *auth; /* "Authorization: Bearer ..." */
    sl_client_proto_t proto;
    long timeout_ms;
    unsigned long long as_user;
};

typedef struct sink {
    char *p;
    size_t n, cap;
    int oom;
} sink_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *s = userdata;
    size_t n = size * nmemb;
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->n + n)
            cap *= 2;
        char *q = realloc(s->p, cap);
        if (q == NULL) {
            s->oom = 1;
            return 0;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, ptr, n);
    s->n += n;
    return n;
}

int sl_client_open(sl_client_t **out, const char *base_url, const char *token, sl_client_proto_t proto)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
    sl_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->share = curl_share_init();
    if (c->share)
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    c->base = strdup(base_url);
    size_t blen = c->base ? strlen(c->base) : 0;
    while (blen > 0 && c->base[blen - 1] == '/')
        c->base[--blen] = '\0';
    if (token) {
        size_t n = strlen(token) + 32;
        c->auth = malloc(n);
        if (c->auth)
            snprintf(c->auth, n, "Authorization: Bearer %s", token);
    }
    c->proto = proto;
    c->timeout_ms = 30000;
    if (c->share == NULL || c->base == NULL || (token && c->auth == NULL)) {
        sl_client_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

void sl_client_close(sl_client_t *c)
{
    if (c == NULL)
        return;
    if (c->share)
        curl_share_cleanup(c->share);
    free(c->base);
    free(c->auth);
    free(c);
}

void sl_client_set_timeout(sl_client_t *c, long ms)
{
    c->timeout_ms = ms > 0 ? ms : 30000;
}

void sl_client_set_as_user(sl_client_t *c, unsigned long long user_id)
{
    c->as_user = user_id;
}

/* Re-packs the request map with "as_user" added. */
static int add_as_user(const void *req, size_t len, unsigned long long user, msgpack_sbuffer *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, req, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&u);
        return -1;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    const msgpack_object_map *m = &u.data.via.map;
    msgpack_pack_map(&pk, m->size + 1);
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_pack_object(&pk, m->ptr[i].key);
        msgpack_pack_object(&pk, m->ptr[i].val);
    }
    sl_rpc_pack_str(&pk, "as_user");
    msgpack_pack_uint64(&pk, user);
    msgpack_unpacked_destroy(&u);
    return 0;
}

int sl_client_call(sl_client_t *c, const char *method, const void *req, size_t len, sl_client_answer_t *ans,
                   char *err, size_t errlen)
{
    memset(ans, 0, sizeof(*ans));
    msgpack_unpacked_init(&ans->unpacked);
    char url[2048];
    const char *prefix = strchr(method, '/') ? "" : SL_RPC_OWNER_SERVICE "/";
    if (method[0] == '/') /* a path of the server's own, e.g. "/console/login-link" */
        snprintf(url, sizeof(url), "%s%s", c->base, method);
    else
        snprintf(url, sizeof(url), "%s/rpc/%s%s", c->base, prefix, method);
    msgpack_sbuffer with_user;
    msgpack_sbuffer_init(&with_user);
    if (c->as_user) {
        if (add_as_user(req, len, c->as_user, &with_user) != 0) {
            snprintf(err, errlen, "the request is not a msgpack map");
            msgpack_sbuffer_destroy(&with_user);
            return -1;
        }
        req = with_user.data;
        len = with_user.size;
    }
    sink_t sink = {0};
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/msgpack");
    h = curl_slist_append(h, "Accept: application/msgpack");
    h = curl_slist_append(h, "Expect:");
    if (c->auth)
        h = curl_slist_append(h, c->auth);
    /* A fresh easy handle per call, the connection from the shared cache: reusing one easy handle
     * for a second request on an HTTP/2 prior-knowledge connection fails in curl 7.88 ("Error in
     * the HTTP2 framing layer"). */
    CURL *k = curl_easy_init();
    if (k == NULL) {
        curl_slist_free_all(h);
        msgpack_sbuffer_destroy(&with_user);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    curl_easy_setopt(k, CURLOPT_SHARE, c->share);
    curl_easy_setopt(k, CURLOPT_URL, url);
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(k, CURLOPT_POST, 1L);
    curl_easy_setopt(k, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(k, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(k, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k, CURLOPT_VERBOSE, getenv("SL_CLIENT_DEBUG") ? 1L : 0L);
    curl_easy_setopt(k, CURLOPT_HTTP_VERSION,
                     c->proto == SL_CLIENT_HTTP1 ? (long)CURL_HTTP_VERSION_1_1
                                                 : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    if (strncmp(c->base, "https:", 6) == 0 && c->proto == SL_CLIENT_HTTP2) {
        curl_easy_setopt(k, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    } else if (c->proto == SL_CLIENT_HTTP2) {
        /* libcurl 7.88 (Debian 12) fails the second request on a reused cleartext HTTP/2
         * prior-knowledge connection ("Error in the HTTP2 framing layer", before anything is sent;
         * the server is not involved: curl's own CLI and nghttp reuse it fine). Until a fixed
         * libcurl, each call opens its own connection. */
        curl_easy_setopt(k, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(k, CURLOPT_FORBID_REUSE, 1L);
    }
    CURLcode rc = curl_easy_perform(k);
    curl_slist_free_all(h);
    msgpack_sbuffer_destroy(&with_user);
    if (rc != CURLE_OK || sink.oom) {
        curl_easy_cleanup(k);
        snprintf(err, errlen, "cannot reach %s: %s", c->base,
                 sink.oom ? "out of memory" : curl_easy_strerror(rc));
        free(sink.p);
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(k);
    ans->status = (int)status;
    ans->body = sink.p;
    ans->body_len = sink.n;
    size_t off = 0;
    if (sink.n > 0 && msgpack_unpack_next(&ans->unpacked, sink.p, sink.n, &off) == MSGPACK_UNPACK_SUCCESS &&
        ans->unpacked.data.type == MSGPACK_OBJECT_MAP) {
        ans->map = &ans->unpacked.data;
        if (status != 200) {
            const msgpack_object *code = sl_rpc_field(ans->map, "code");
            const msgpack_object *msg = sl_rpc_field(ans->map, "message");
            if (code && code->type == MSGPACK_OBJECT_STR) {
                ans->code = code->via.str.ptr;
                ans->code_len = code->via.str.size;
            }
            if (msg && msg->type == MSGPACK_OBJECT_STR) {
                ans->message = msg->via.str.ptr;
                ans->message_len = msg->via.str.size;
            }
        }
    }
    return 0;
}

void sl_client_answer_free(sl_client_answer_t *ans)
{
    msgpack_unpacked_destroy(&ans->unpacked);
    free(ans->body);
    memset(ans, 0, sizeof(*ans));
}
