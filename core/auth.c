/*
 * Bearer tokens: only their SHA-256 is stored; a token is looked up by its hash, then the stored
 * hash is compared with the computed one in constant time (CRYPTO_memcmp).
 *
 * Why this leaks nothing through timing: the index lookup compares SHA-256(candidate) with stored
 * hashes, and how long that takes depends only on how many leading bytes of those hashes agree,
 * which an attacker cannot steer towards a real token without inverting SHA-256. The final
 * comparison in process never depends on where the bytes differ, and it also guards against a
 * column or collation change that would let the database call two different hashes equal.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/random.h>

#include "core/internal/core.h"

enum { T_TENANT, T_USER, T_KIND, T_HASH, T_ID };
static const char SQL_TOKEN[] = "SELECT tenant_id, user_id, kind, token_hash, id FROM tokens"
                                " WHERE token_hash = ? AND revoked_at IS NULL";
/* A console session (console.c): its own table, so that no older node takes it for a bearer token;
 * it ends with the token it came from. */
static const char SQL_CONSOLE_TOKEN[] =
    "SELECT c.tenant_id, c.user_id, 'console', c.token_hash, 0 FROM console_tokens c"
    " WHERE c.token_hash = ? AND c.kind = 'console' AND c.revoked_at IS NULL AND c.expires_at > NOW(6)"
    " AND (c.parent_id IS NULL OR EXISTS (SELECT 1 FROM tokens p WHERE p.id = c.parent_id AND p.revoked_at "
    "IS NULL))";
static const char SQL_USER_TENANT[] = "SELECT tenant_id FROM users WHERE id = ?";

void sl_token_hash(const char *token, size_t len, unsigned char out[32])
{
    SHA256((const unsigned char *)token, len, out);
}

int sl_token_hash_equal(const void *stored, size_t len, const unsigned char hash[32])
{
    return stored != NULL && len == 32 && CRYPTO_memcmp(stored, hash, 32) == 0;
}

uint64_t sl_random_u64(void)
{
    uint64_t v = 0;
    while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        ;
    return v;
}

int sl_token_new(char *out, size_t outlen)
{
    return sl_token_new_prefixed(out, outlen, "slt_");
}

int sl_token_new_prefixed(char *out, size_t outlen, const char *prefix)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[32];
    if (outlen < 64 || getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -1;
    size_t k = (size_t)snprintf(out, outlen, "%.4s", prefix);
    /* 32 bytes = 256 bits; 6 bits per char -> 43 chars */
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            out[k++] = b64url[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0)
        out[k++] = b64url[(acc << (6 - bits)) & 63];
    out[k] = '\0';
    return 0;
}

int sl_auth_token(sl_core_t *core, sl_rpc_call_t *call, sl_principal_t *out)
{
    size_t len;
    const char *token = sl_rpc_auth(call, &len);
    if (token == NULL || len == 0) {
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "missing bearer token (Authorization: Bearer <token>)");
        return -1;
    }
    if (len > 256) {
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "invalid bearer token");
        return -1;
    }
    unsigned char hash[32];
    sl_token_hash(token, len, hash);
    sl_store_value_t p[] = {sl_store_blob(hash, sizeof(hash))};
    sl_store_error_t err;
    int console = len > 4 && memcmp(token, "slc_", 4) == 0;
    sl_store_result_t *r = sl_await_query(core->owner, console ? SQL_CONSOLE_TOKEN : SQL_TOKEN, p, 1, &err);
    if (r == NULL) {
        sl_fail_store(call, &err);
        return -1;
    }
    const sl_store_value_t *stored = r->nrows == 1 ? sl_store_cell(r, 0, T_HASH) : NULL;
    if (stored == NULL || !sl_token_hash_equal(stored->ptr, stored->len, hash)) {
        sl_store_result_free(r);
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "invalid bearer token");
        return -1;
    }
    /* what the row is decides, positively: a kind this build does not know is refused */
    const sl_store_value_t *kind = sl_store_cell(r, 0, T_KIND);
    int user = kind->len == 4 && memcmp(kind->ptr, "user", 4) == 0;
    int service = kind->len == 7 && memcmp(kind->ptr, "service", 7) == 0;
    int is_console = console && kind->len == 7 && memcmp(kind->ptr, "console", 7) == 0;
    memset(out, 0, sizeof(*out));
    out->tenant_id = (uint64_t)sl_store_cell(r, 0, T_TENANT)->i;
    out->service = service;
    out->console = is_console;
    out->token_id = (uint64_t)sl_store_cell(r, 0, T_ID)->i;
    if (user || is_console)
        out->user_id = (uint64_t)sl_store_cell(r, 0, T_USER)->i;
    sl_store_result_free(r);
    if (!user && !service && !is_console) {
        sl_rpc_fail(call, SL_RPC_UNAUTHENTICATED, "invalid bearer token");
        return -1;
    }
    return 0;
}

int sl_auth_as_user(sl_core_t *core, sl_rpc_call_t *call, sl_principal_t *out)
{
    if (!out->service)
        return 0;
    sl_store_error_t err;
    sl_store_result_t *r;
    /* A service token acts for one user of its own tenant, named by the request's "as_user" (a
     * user id). A user of another tenant is answered exactly like a missing one. */
    const msgpack_object *as = sl_rpc_field(sl_rpc_request(call), "as_user");
    if (as == NULL || as->type != MSGPACK_OBJECT_POSITIVE_INTEGER || as->via.u64 > INT64_MAX) {
        sl_rpc_fail(call, SL_RPC_INVALID_ARGUMENT,
                    "a service token must name the user it acts for: field \"as_user\" (a user id)");
        return -1;
    }
    sl_store_value_t q[] = {sl_store_int((int64_t)as->via.u64)};
    r = sl_await_query(core->owner, SQL_USER_TENANT, q, 1, &err);
    if (r == NULL) {
        sl_fail_store(call, &err);
        return -1;
    }
    int ok = r->nrows == 1 && (uint64_t)sl_store_cell(r, 0, 0)->i == out->tenant_id;
    sl_store_result_free(r);
    if (!ok) {
        sl_rpc_fail(call, SL_RPC_NOT_FOUND, "user not found");
        return -1;
    }
    out->user_id = as->via.u64;
    return 0;
}

void sl_fail_store(sl_rpc_call_t *call, const sl_store_error_t *err)
{
    switch (err->code) {
    case SL_STORE_E_CONN:
    case SL_STORE_E_TIMEOUT:
    case SL_STORE_E_CLOSED:
        sl_rpc_fail(call, SL_RPC_UNAVAILABLE, "database unavailable, retry later");
        return;
    default:
        /* The server's text can name tables and values: log it, don't send it. */
        fprintf(stderr, "shareline: store error %u: %s\n", err->server_errno, err->message);
        sl_rpc_fail(call, SL_RPC_INTERNAL, "internal error (database)");
        return;
    }
}
