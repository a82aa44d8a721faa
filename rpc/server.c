/* The rpc server: method table, calls and their answers, status codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

static const struct {
    const char *name;
    int http;
} codes[] = {
    [SL_RPC_OK] = {"ok", 200},
    [SL_RPC_INVALID_ARGUMENT] = {"invalid_argument", 400},
    [SL_RPC_UNAUTHENTICATED] = {"unauthenticated", 401},
    [SL_RPC_PERMISSION_DENIED] = {"permission_denied", 403},
    [SL_RPC_NOT_FOUND] = {"not_found", 404},
    [SL_RPC_ALREADY_EXISTS] = {"already_exists", 409},
    [SL_RPC_FAILED_PRECONDITION] = {"failed_precondition", 412},
    [SL_RPC_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429},
    [SL_RPC_PAYLOAD_TOO_LARGE] = {"resource_exhausted", 413},
    [SL_RPC_UNAVAILABLE] = {"unavailable", 503},
    [SL_RPC_INTERNAL] = {"internal", 500},
    [SL_RPC_UNIMPLEMENTED] = {"unimplemented", 501},
    [SL_RPC_DEADLINE_EXCEEDED] = {"deadline_exceeded", 504},
};

const char *sl_rpc_code_name(sl_rpc_code_t code)
{
    return (unsigned)code < sizeof(codes) / sizeof(codes[0]) ? codes[code].name : "internal";
}

int sl_rpc_code_http_status(sl_rpc_code_t code)
{
    return (unsigned)code < sizeof(codes) / sizeof(codes[0]) ? codes[code].http : 500;
}

typedef struct method {
    char *name;
    size_t len;
    sl_rpc_handler handler;
    void *data;
} method_t;

/* Answered calls are kept for reuse (with their zone's first chunk and small buffers), so that the
 * public read path, one small call per GET, does not go through malloc for each. */
#define CALL_FREE_MAX   64
#define CALL_KEEP_BYTES 4096 /* buffers larger than this are released, not kept */

struct sl_rpc_server {
    sl_rpc_limits_t limits;
    method_t *methods;
    size_t nmethods;
    struct sl_rpc_call *free_calls; /* linked through ->next_free */
    size_t nfree;
    sl_rpc_share_confirm_fn confirm; /* GetShare's confirmer (rpc.h), or NULL */
    void *confirm_data;
    sl_rpc_change_fn changed; /* the transport's change listener (rpc.h), or NULL */
    void *changed_data;
    int changes_available;
};

struct sl_rpc_call {
    sl_rpc_server_t *srv;
    struct sl_rpc_call *next_free;
    const method_t *method;
    char *body; /* copy of the request; the unpacked objects point into it */
    size_t body_cap;
    char *auth;
    size_t auth_cap;
    size_t auth_len;
    int has_auth; /* auth holds this call's credential (the buffer may be kept from an earlier one) */
    msgpack_zone zone;
    msgpack_object request;
    msgpack_sbuffer reply;
    msgpack_packer pk;
    sl_rpc_reply_cb cb;
    void *cb_data;
    /* a deferred body (sl_rpc_call_deferred): produced after the method checked the caller */
    const sl_rpc_body_src_t *src;
    void *src_data;
    msgpack_sbuffer raw;  /* what src->take kept */
    msgpack_sbuffer made; /* what src->make produced (the request, before the check) */
    size_t body_len;
    sl_rpc_code_t load_code; /* the outcome of sl_rpc_load_make */
    char load_msg[256];
};

static void call_destroy(sl_rpc_call_t *call);

int sl_rpc_server_open(sl_rpc_server_t **out, const sl_rpc_limits_t *limits)
{
    sl_rpc_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -1;
    if (limits)
        srv->limits = *limits;
    else
        sl_rpc_limits_default(&srv->limits);
    *out = srv;
    return 0;
}

void sl_rpc_server_close(sl_rpc_server_t *srv)
{
    if (srv == NULL)
        return;
    for (size_t i = 0; i < srv->nmethods; i++)
        free(srv->methods[i].name);
    free(srv->methods);
    while (srv->free_calls) {
        sl_rpc_call_t *c = srv->free_calls;
        srv->free_calls = c->next_free;
        call_destroy(c);
    }
    free(srv);
}

const sl_rpc_limits_t *sl_rpc_server_limits(const sl_rpc_server_t *srv)
{
    return &srv->limits;
}

int sl_rpc_register(sl_rpc_server_t *srv, const char *name, sl_rpc_handler handler, void *data)
{
    method_t *m = realloc(srv->methods, (srv->nmethods + 1) * sizeof(*m));
    if (m == NULL)
        return -1;
    srv->methods = m;
    m = &srv->methods[srv->nmethods];
    if ((m->name = strdup(name)) == NULL)
        return -1;
    m->len = strlen(name);
    m->handler = handler;
    m->data = data;
    srv->nmethods++;
    return 0;
}

static const method_t *find(const sl_rpc_server_t *srv, const char *name, size_t len)
{
    for (size_t i = 0; i < srv->nmethods; i++)
        if (srv->methods[i].len == len && memcmp(srv->methods[i].name, name, len) == 0)
            return &srv->methods[i];
    return NULL;
}

int sl_rpc_has_method(const sl_rpc_server_t *srv, const char *name, size_t len)
{
    return find(srv, name, len) != NULL;
}

static void pack_error(msgpack_packer *pk, sl_rpc_code_t code, const char *msg)
{
    msgpack_pack_map(pk, 2);
    sl_rpc_pack_str(pk, "code");
    sl_rpc_pack_str(pk, sl_rpc_code_name(code));
    sl_rpc_pack_str(pk, "message");
    sl_rpc_pack_str(pk, msg);
}

/* An answer without a call object (the request never reached a method). */
static void answer_error(sl_rpc_reply_cb cb, void *data, sl_rpc_code_t code, const char *msg)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_error(&pk, code, msg);
    cb(code, sb.data, sb.size, data);
    msgpack_sbuffer_destroy(&sb);
}

static void drop_deferred(sl_rpc_call_t *call)
{
    call->src = NULL;
    call->src_data = NULL;
    msgpack_sbuffer_destroy(&call->raw);
    msgpack_sbuffer_init(&call->raw);
    msgpack_sbuffer_destroy(&call->made);
    msgpack_sbuffer_init(&call->made);
}

static void call_destroy(sl_rpc_call_t *call)
{
    drop_deferred(call);
    msgpack_zone_destroy(&call->zone);
    msgpack_sbuffer_destroy(&call->reply);
    free(call->body);
    if (call->auth_cap > 0)
        explicit_bzero(call->auth, call->auth_cap);
    free(call->auth);
    free(call);
}

/* Back to the server's free list: nothing of the answered request survives (zone cleared, reply
 * emptied, credential wiped, large buffers released). */
static void call_free(sl_rpc_call_t *call)
{
    sl_rpc_server_t *srv = call->srv;
    if (srv->nfree >= CALL_FREE_MAX) {
        call_destroy(call);
        return;
    }
    drop_deferred(call);
    msgpack_zone_clear(&call->zone);
    if (call->reply.alloc > CALL_KEEP_BYTES) {
        msgpack_sbuffer_destroy(&call->reply);
        msgpack_sbuffer_init(&call->reply);
    } else {
        msgpack_sbuffer_clear(&call->reply);
    }
    if (call->body_cap > CALL_KEEP_BYTES) {
        free(call->body);
        call->body = NULL;
        call->body_cap = 0;
    }
    if (call->auth_cap > 0)
        explicit_bzero(call->auth, call->auth_cap); /* no credential lingers in a kept buffer */
    call->auth_len = 0;
    call->has_auth = 0;
    call->cb = NULL;
    call->cb_data = NULL;
    call->method = NULL;
    call->next_free = srv->free_calls;
    srv->free_calls = call;
    srv->nfree++;
}

static sl_rpc_call_t *call_get(sl_rpc_server_t *srv)
{
    sl_rpc_call_t *call = srv->free_calls;
    if (call != NULL) {
        srv->free_calls = call->next_free;
        srv->nfree--;
        call->next_free = NULL;
        return call;
    }
    call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->srv = srv;
    msgpack_sbuffer_init(&call->reply);
    msgpack_sbuffer_init(&call->raw);
    msgpack_sbuffer_init(&call->made);
    if (!msgpack_zone_init(&call->zone, 2048)) {
        free(call);
        return NULL;
    }
    return call;
}

/* Makes *buf hold at least need bytes (contents not kept). */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need < 64)
        need = 64;
    if (*buf != NULL && *cap >= need)
        return 0;
    char *b = malloc(need);
    if (b == NULL)
        return -1;
    if (*buf != NULL && *cap > 0)
        explicit_bzero(*buf, *cap);
    free(*buf);
    *buf = b;
    *cap = need;
    return 0;
}

/* A call object for method m with the caller's credential; answers and returns NULL on failure. */
static sl_rpc_call_t *call_start(sl_rpc_server_t *srv, const char *method, size_t method_len,
                                 const char *auth, size_t auth_len, sl_rpc_reply_cb cb, void *data,
                                 const method_t **mp)
{
    char msg[256];
    const method_t *m = find(srv, method, method_len);
    if (m == NULL) {
        snprintf(msg, sizeof(msg), "unknown method \"%.*s\"", (int)(method_len > 100 ? 100 : method_len),
                 method);
        answer_error(cb, data, SL_RPC_UNIMPLEMENTED, msg);
        return NULL;
    }
    sl_rpc_call_t *call = call_get(srv);
    if (call == NULL || (auth != NULL && reserve(&call->auth, &call->auth_cap, auth_len + 1) != 0)) {
        if (call)
            call_destroy(call);
        answer_error(cb, data, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    if (auth != NULL) {
        memcpy(call->auth, auth, auth_len);
        call->auth[auth_len] = '\0';
        call->auth_len = auth_len;
        call->has_auth = 1;
    }
    call->method = m;
    call->cb = cb;
    call->cb_data = data;
    call->request.type = MSGPACK_OBJECT_NIL; /* until a body is loaded */
    msgpack_packer_init(&call->pk, &call->reply, msgpack_sbuffer_write);
    *mp = m;
    return call;
}

/* Checks body[0..len) (owned by the call) and unpacks it as the request: SL_RPC_OK, or an error with msg. */
static sl_rpc_code_t load_body(sl_rpc_call_t *call, const char *body, size_t len, char *msg, size_t msglen)
{
    const sl_rpc_limits_t *lim = &call->srv->limits;
    if (len > lim->max_body) {
        snprintf(msg, msglen, "body of %zu bytes exceeds the limit of %zu bytes", len, lim->max_body);
        return SL_RPC_PAYLOAD_TOO_LARGE;
    }
    if (sl_rpc_check_msgpack(body, len, lim, msg, msglen) != 0)
        return SL_RPC_INVALID_ARGUMENT;
    size_t off = 0;
    /* Checked above, so this cannot over-allocate; a failure here is our bug. */
    if (msgpack_unpack(body, len, &off, &call->zone, &call->request) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(msg, msglen, "request could not be unpacked");
        return SL_RPC_INTERNAL;
    }
    call->body_len = len;
    return SL_RPC_OK;
}

void sl_rpc_call(sl_rpc_server_t *srv, const char *method, size_t method_len, const char *auth,
                 size_t auth_len, const void *body, size_t len, sl_rpc_reply_cb cb, void *data)
{
    char msg[256];
    if (len > srv->limits.max_body) {
        snprintf(msg, sizeof(msg), "body of %zu bytes exceeds the limit of %zu bytes", len,
                 srv->limits.max_body);
        answer_error(cb, data, SL_RPC_PAYLOAD_TOO_LARGE, msg);
        return;
    }
    if (sl_rpc_check_msgpack(body, len, &srv->limits, msg, sizeof(msg)) != 0) {
        answer_error(cb, data, SL_RPC_INVALID_ARGUMENT, msg);
        return;
    }
    const method_t *m;
    sl_rpc_call_t *call = call_start(srv, method, method_len, auth, auth_len, cb, data, &m);
    if (call == NULL)
        return;
    if (reserve(&call->body, &call->body_cap, len) != 0) {
        call_free(call);
        answer_error(cb, data, SL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (len > 0)
        memcpy(call->body, body, len);
    sl_rpc_code_t code = load_body(call, call->body, len, msg, sizeof(msg));
    if (code != SL_RPC_OK) {
        call_free(call);
        answer_error(cb, data, code, msg);
        return;
    }
    m->handler(call, m->data);
}

void sl_rpc_set_share_confirm(sl_rpc_server_t *srv, sl_rpc_share_confirm_fn fn, void *data)
{
    srv->confirm = fn;
    srv->confirm_data = data;
}

int sl_rpc_share_confirm(sl_rpc_server_t *srv, const char *id, size_t idlen, uint64_t have_version,
                         uint64_t have_tag)
{
    if (srv->confirm == NULL || have_version == 0 || have_tag == 0 || !sl_rpc_id_valid(id, idlen))
        return 0;
    return srv->confirm(srv->confirm_data, id, idlen, have_version, have_tag) == 1;
}

void sl_rpc_set_change_listener(sl_rpc_server_t *srv, sl_rpc_change_fn fn, void *data)
{
    srv->changed = fn;
    srv->changed_data = data;
}

void sl_rpc_changed(sl_rpc_server_t *srv, const char *id, size_t idlen)
{
    if (srv->changed != NULL && sl_rpc_id_valid(id, idlen))
        srv->changed(srv->changed_data, id, idlen);
}

void sl_rpc_set_changes_available(sl_rpc_server_t *srv, int available)
{
    srv->changes_available = available;
}

int sl_rpc_changes_available(const sl_rpc_server_t *srv)
{
    return srv->changes_available;
}

void sl_rpc_call_deferred(sl_rpc_server_t *srv, const char *method, size_t method_len, const char *auth,
                          size_t auth_len, const sl_rpc_body_src_t *src, void *src_data, sl_rpc_reply_cb cb,
                          void *data)
{
    const method_t *m;
    sl_rpc_call_t *call = call_start(srv, method, method_len, auth, auth_len, cb, data, &m);
    if (call == NULL)
        return;
    call->src = src;
    call->src_data = src_data;
    m->handler(call, m->data);
}

int sl_rpc_load_take(sl_rpc_call_t *call)
{
    if (call->src == NULL)
        return 0;
    char msg[256] = "";
    sl_rpc_code_t code = call->src->take(call->src_data, &call->raw, msg, sizeof(msg));
    if (code != SL_RPC_OK) {
        sl_rpc_fail(call, code, "%s", msg);
        return -1;
    }
    return 0;
}

size_t sl_rpc_load_size(const sl_rpc_call_t *call)
{
    return call->src ? call->raw.size : call->body_len;
}

void sl_rpc_load_make(sl_rpc_call_t *call)
{
    call->load_code = SL_RPC_OK;
    call->load_msg[0] = '\0';
    if (call->src == NULL)
        return;
    const msgpack_sbuffer *body = &call->raw;
    if (call->src->make) {
        call->load_code =
            call->src->make(call->src_data, call->raw.data ? call->raw.data : "", call->raw.size, &call->made,
                            call->load_msg, sizeof(call->load_msg));
        body = &call->made;
    }
    if (call->load_code == SL_RPC_OK)
        call->load_code =
            load_body(call, body->data ? body->data : "", body->size, call->load_msg, sizeof(call->load_msg));
}

int sl_rpc_load_finish(sl_rpc_call_t *call)
{
    if (call->src == NULL)
        return 0;
    if (call->load_code != SL_RPC_OK) {
        sl_rpc_fail(call, call->load_code, "%s", call->load_msg);
        return -1;
    }
    return 0;
}

const msgpack_object *sl_rpc_request(const sl_rpc_call_t *call)
{
    return &call->request;
}

const char *sl_rpc_auth(const sl_rpc_call_t *call, size_t *len)
{
    if (len)
        *len = call->auth_len;
    return call->has_auth ? call->auth : NULL;
}

const char *sl_rpc_method(const sl_rpc_call_t *call)
{
    return call->method->name;
}

msgpack_packer *sl_rpc_packer(sl_rpc_call_t *call)
{
    return &call->pk;
}

void sl_rpc_reply(sl_rpc_call_t *call)
{
    if (call->reply.size == 0)
        msgpack_pack_map(&call->pk, 0);
    call->cb(SL_RPC_OK, call->reply.data, call->reply.size, call->cb_data);
    call_free(call);
}

void sl_rpc_reply_raw(sl_rpc_call_t *call, const void *body, size_t len)
{
    call->cb(SL_RPC_OK, body, len, call->cb_data);
    call_free(call);
}

void sl_rpc_fail(sl_rpc_call_t *call, sl_rpc_code_t code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    msgpack_sbuffer_clear(&call->reply);
    pack_error(&call->pk, code, msg);
    call->cb(code, call->reply.data, call->reply.size, call->cb_data);
    call_free(call);
}
