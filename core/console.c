/*
 * The owner console's sign-in (docs/console.md): the internal service shareline.v1.Console that the
 * gateway calls for /console/ requests. Sign-in links and console sessions are rows of
 * `console_tokens` (migration 12), apart from the bearer tokens of `tokens`, so that no node of an
 * older release can take one for a bearer token. Only their SHA-256 is stored; `admin token revoke`
 * ends them; core/auth.c accepts a console session ("slc_...") as its user.
 *
 *   kind 'login'    a one-time sign-in link ("sll_..."): expires after SL_CONSOLE_LINK_TTL_S, never
 *                   a bearer token; SignIn consumes it with one UPDATE (used once, even by two racing
 *                   requests: the statement that marks it used is the one that may sign in).
 *   kind 'console'  a console session ("slc_..."): what the cookie holds; expires after
 *                   SL_CONSOLE_SESSION_TTL_S (absolute), ends at SignOut.
 * Both carry the bearer token they came from (parent_id; NULL for an operator's link): revoking that
 * token ends them. Only a user's own bearer token makes a link or a session: a console session
 * cannot make another (its 12 hours stay 12 hours), nor can a service token.
 *
 * Nothing here reads a body before its caller is known: SignIn's credential is its body (a few
 * hundred bytes, checked by the rpc layer's limits), the other methods check the token first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal/core.h"
#include "core/internal/owner.h"

/* The bearer token a link came from must still work (a revoked token's links die with it). */
#define PARENT_ALIVE                                                                                         \
    " AND (c.parent_id IS NULL OR EXISTS (SELECT 1 FROM tokens p WHERE p.id = c.parent_id"                   \
    " AND p.revoked_at IS NULL))"
static const char SQL_LINK_USE[] = "UPDATE console_tokens c SET c.used_at = NOW(6), c.revoked_at = NOW(6)"
                                   " WHERE c.token_hash = ? AND c.kind = 'login' AND c.revoked_at IS NULL"
                                   " AND c.expires_at > NOW(6)" PARENT_ALIVE;
static const char SQL_LINK_OWNER[] =
    "SELECT tenant_id, user_id, kind, token_hash, parent_id FROM console_tokens"
    " WHERE token_hash = ?";
static const char SQL_SIGN_OUT[] = "UPDATE console_tokens SET revoked_at = NOW(6)"
                                   " WHERE token_hash = ? AND kind = 'console' AND revoked_at IS NULL";
static const char SQL_WHO_CONSOLE[] =
    "SELECT u.handle, u.display_name, DATE_FORMAT(c.expires_at, '%Y-%m-%dT%H:%i:%SZ')"
    " FROM users u JOIN console_tokens c ON c.token_hash = ? WHERE u.id = ?";
static const char SQL_WHO_USER[] =
    "SELECT handle, display_name, NULL FROM users WHERE ? IS NOT NULL AND id = ?";
static const char SQL_TOKEN_INSERT[] =
    "INSERT INTO console_tokens (token_hash, tenant_id, user_id, kind, parent_id, expires_at)"
    " VALUES (?, ?, ?, ?, ?, NOW(6) + INTERVAL ? SECOND)";

enum { O_TENANT, O_USER, O_KIND, O_HASH, O_PARENT };

typedef struct console_call {
    sl_core_t *core;
    sl_rpc_call_t *call;
    sl_rpc_method_id_t id;
} console_call_t;

/* Inserts a new link ("login") or session ("console") for user, from bearer token parent (0: none),
 * expiring in ttl_s; its value in out. */
static int mint(sl_core_t *core, sl_rpc_call_t *call, uint64_t tenant, uint64_t user, uint64_t parent,
                const char *kind, unsigned ttl_s, char *out, size_t cap)
{
    if (sl_token_new_prefixed(out, cap, strcmp(kind, "login") == 0 ? "sll_" : "slc_") != 0) {
        sl_rpc_fail(call, SL_RPC_INTERNAL, "internal error (no randomness)");
        return -1;
    }
    unsigned char hash[32];
    sl_token_hash(out, strlen(out), hash);
    sl_store_value_t p[] = {sl_store_blob(hash, sizeof(hash)),
                            sl_store_int((int64_t)tenant),
                            sl_store_int((int64_t)user),
                            sl_store_text(kind, strlen(kind)),
                            parent ? sl_store_int((int64_t)parent) : sl_store_null(),
                            sl_store_int((int64_t)ttl_s)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_TOKEN_INSERT, p, 6, &err);
    if (r == NULL) {
        explicit_bzero(out, cap);
        sl_fail_store(call, &err);
        return -1;
    }
    sl_store_result_free(r);
    return 0;
}

/* The tenant, user and parent of the sign-in link whose hash is given, once it was consumed. */
static int link_owner(sl_core_t *core, sl_rpc_call_t *call, const unsigned char hash[32], uint64_t *tenant,
                      uint64_t *user, uint64_t *parent)
{
    sl_store_value_t p[] = {sl_store_blob(hash, 32)};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(core->owner, SQL_LINK_OWNER, p, 1, &err);
    if (r == NULL) {
        sl_fail_store(call, &err);
        return -1;
    }
    const sl_store_value_t *stored = r->nrows == 1 ? sl_store_cell(r, 0, O_HASH) : NULL;
    int ok = stored != NULL && sl_token_hash_equal(stored->ptr, stored->len, hash) &&
             sl_ext_matches(sl_store_cell(r, 0, O_KIND), "login", 5);
    if (ok) {
        const sl_store_value_t *pv = sl_store_cell(r, 0, O_PARENT);
        *tenant = (uint64_t)sl_store_cell(r, 0, O_TENANT)->i;
        *user = (uint64_t)sl_store_cell(r, 0, O_USER)->i;
        *parent = pv->type == SL_STORE_NULL ? 0 : (uint64_t)pv->i;
    }
    sl_store_result_free(r);
    if (!ok)
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "this sign-in link is invalid, expired or already used");
    return ok ? 0 : -1;
}

/* Only a user's own bearer token makes a session or a link: not a service token, not a console
 * session (which would renew itself past its expiry). */
static int users_own_token(sl_rpc_call_t *call, const sl_principal_t *who)
{
    if (!who->service && !who->console)
        return 0;
    sl_rpc_fail(call, SL_RPC_PERMISSION_DENIED, "%s",
                who->service ? "a service token does not sign in to the console"
                             : "a console session cannot make another sign-in; use your own token");
    return -1;
}

/* SignIn {"login_link": L} without auth, or {} with a user's token as the call's auth (the token
 * form): a new console session for that user. */
static void sign_in(console_call_t *cc)
{
    sl_rpc_call_t *call = cc->call;
    char msg[160];
    const char *link = NULL;
    size_t llen = 0;
    int hl = sl_rpc_get_str(sl_rpc_request(call), "login_link", 0, 256, &link, &llen, msg, sizeof(msg));
    if (hl < 0 || (hl == 1 && llen == 0)) {
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "this sign-in link is invalid, expired or already used");
        return;
    }
    uint64_t tenant = 0, user = 0, parent = 0;
    if (hl == 1) {
        unsigned char hash[32];
        sl_token_hash(link, llen, hash);
        sl_store_value_t p[] = {sl_store_blob(hash, sizeof(hash))};
        sl_store_error_t err;
        sl_store_result_t *r = sl_await_query(cc->core->owner, SQL_LINK_USE, p, 1, &err);
        if (r == NULL) {
            sl_fail_store(call, &err);
            return;
        }
        uint64_t used = r->affected_rows;
        sl_store_result_free(r);
        if (used != 1) {
            sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED,
                        "this sign-in link is invalid, expired or already used");
            return;
        }
        if (link_owner(cc->core, call, hash, &tenant, &user, &parent) != 0)
            return;
    } else {
        sl_principal_t who;
        if (sl_auth_token(cc->core, call, &who) != 0 || users_own_token(call, &who) != 0)
            return;
        tenant = who.tenant_id;
        user = who.user_id;
        parent = who.token_id;
    }
    char session[80];
    if (mint(cc->core, call, tenant, user, parent, "console", SL_CONSOLE_SESSION_TTL_S, session,
             sizeof(session)) != 0)
        return;
    msgpack_packer *pk = sl_rpc_packer(call);
    msgpack_pack_map(pk, 2);
    sl_pack_kv_str(pk, "session_token", session, strlen(session));
    sl_pack_kv_u64(pk, "max_age", SL_CONSOLE_SESSION_TTL_S);
    explicit_bzero(session, sizeof(session));
    sl_rpc_reply(call);
}

static void sign_out(console_call_t *cc)
{
    size_t len;
    const char *token = sl_rpc_auth(cc->call, &len);
    if (token == NULL || len == 0 || len > 256) {
        sl_rpc_fail(cc->call, SL_RPC_UNAUTHENTICATED, "not signed in");
        return;
    }
    unsigned char hash[32];
    sl_token_hash(token, len, hash);
    sl_store_value_t p[] = {sl_store_blob(hash, sizeof(hash))};
    sl_store_error_t err;
    sl_store_result_t *r = sl_await_query(cc->core->owner, SQL_SIGN_OUT, p, 1, &err);
    if (r == NULL) {
        sl_fail_store(cc->call, &err);
        return;
    }
    sl_store_result_free(r);
    msgpack_pack_map(sl_rpc_packer(cc->call), 0);
    sl_rpc_reply(cc->call);
}

static void who_am_i(console_call_t *cc)
{
    sl_principal_t who;
    if (sl_auth_token(cc->core, cc->call, &who) != 0)
        return;
    if (who.service) {
        sl_rpc_fail(cc->call, SL_RPC_PERMISSION_DENIED, "a service token is not a person");
        return;
    }
    size_t len;
    const char *token = sl_rpc_auth(cc->call, &len);
    unsigned char hash[32];
    sl_token_hash(token, len, hash);
    sl_store_value_t p[] = {sl_store_blob(hash, sizeof(hash)), sl_store_int((int64_t)who.user_id)};
    sl_store_error_t err;
    sl_store_result_t *r =
        sl_await_query(cc->core->owner, who.console ? SQL_WHO_CONSOLE : SQL_WHO_USER, p, 2, &err);
    if (r == NULL) {
        sl_fail_store(cc->call, &err);
        return;
    }
    if (r->nrows != 1) {
        sl_store_result_free(r);
        sl_rpc_fail(cc->call, SL_RPC_UNAUTHENTICATED, "not signed in");
        return;
    }
    const sl_store_value_t *exp = sl_store_cell(r, 0, 2);
    msgpack_packer *pk = sl_rpc_packer(cc->call);
    msgpack_pack_map(pk, exp->type == SL_STORE_TEXT ? 4 : 3);
    sl_pack_kv_u64(pk, "user_id", who.user_id);
    sl_pack_kv_str(pk, "handle", sl_store_cell(r, 0, 0)->ptr, sl_store_cell(r, 0, 0)->len);
    sl_pack_kv_str(pk, "name", sl_store_cell(r, 0, 1)->ptr, sl_store_cell(r, 0, 1)->len);
    if (exp->type == SL_STORE_TEXT)
        sl_pack_kv_str(pk, "expires_at", exp->ptr, exp->len);
    sl_store_result_free(r);
    sl_rpc_reply(cc->call);
}

static void login_link(console_call_t *cc)
{
    sl_principal_t who;
    if (sl_auth_token(cc->core, cc->call, &who) != 0 || users_own_token(cc->call, &who) != 0)
        return;
    char link[80];
    if (mint(cc->core, cc->call, who.tenant_id, who.user_id, who.token_id, "login", SL_CONSOLE_LINK_TTL_S,
             link, sizeof(link)) != 0)
        return;
    char url[SL_CORE_MAX_BASE_URL + 160];
    int n = snprintf(url, sizeof(url), "%s/console/login?link=%s", cc->core->base_url, link);
    explicit_bzero(link, sizeof(link));
    msgpack_packer *pk = sl_rpc_packer(cc->call);
    msgpack_pack_map(pk, 2);
    sl_pack_kv_str(pk, "url", url, n < 0 ? 0 : (size_t)n < sizeof(url) ? (size_t)n : sizeof(url) - 1);
    sl_pack_kv_u64(pk, "expires_in", SL_CONSOLE_LINK_TTL_S);
    explicit_bzero(url, sizeof(url));
    sl_rpc_reply(cc->call);
}

/* Expired sign-in links and console sessions are deleted a day after they expired (kept that long for
 * an operator who looks into a sign-in), at most once a minute per node, 500 rows at a time. */
static const char SQL_SWEEP[] =
    "DELETE FROM console_tokens WHERE expires_at < NOW(6) - INTERVAL 1 DAY LIMIT 500";

void sl_console_sweep(sl_core_t *core)
{
    uint64_t now = uv_now(core->loop);
    if (core->console_swept_ms != 0 && now - core->console_swept_ms < 60000)
        return;
    core->console_swept_ms = now;
    sl_store_error_t err;
    sl_store_result_free(sl_await_query(core->owner, SQL_SWEEP, NULL, 0, &err));
}

static void console_task(void *arg)
{
    console_call_t *cc = arg;
    /* the requests are small maps: the deferred body (if any) is loaded at once */
    if (sl_rpc_load_take(cc->call) == 0 && (sl_rpc_load_make(cc->call), sl_rpc_load_finish(cc->call) == 0)) {
        switch (cc->id) {
        case SL_M_CONSOLE_SIGN_IN:
            sign_in(cc);
            break;
        case SL_M_CONSOLE_SIGN_OUT:
            sign_out(cc);
            break;
        case SL_M_CONSOLE_WHOAMI:
            who_am_i(cc);
            break;
        default:
            login_link(cc);
            break;
        }
    }
    free(cc);
}

static void on_console_call(sl_rpc_call_t *call, void *data)
{
    const sl_core_method_t *m = data;
    console_call_t *cc = calloc(1, sizeof(*cc));
    if (cc == NULL) {
        sl_rpc_fail(call, SL_RPC_INTERNAL, "internal error");
        return;
    }
    cc->core = m->core;
    cc->call = call;
    cc->id = m->id;
    if (sl_task_spawn(console_task, cc) != 0) {
        free(cc);
        sl_rpc_fail(call, SL_RPC_RESOURCE_EXHAUSTED, "server overloaded, retry later");
    }
}

int sl_console_register(sl_core_t *core, sl_rpc_server_t *srv)
{
    static const sl_rpc_method_id_t ids[] = {SL_M_CONSOLE_SIGN_IN, SL_M_CONSOLE_SIGN_OUT, SL_M_CONSOLE_WHOAMI,
                                             SL_M_CONSOLE_LOGIN_LINK};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        core->console_methods[i].core = core;
        core->console_methods[i].id = ids[i];
        if (sl_rpc_register(srv, sl_rpc_method_name(ids[i]), on_console_call, &core->console_methods[i]) != 0)
            return -1;
    }
    return 0;
}
