/*
 * Admin operations (core.h): migrations and the public account's grant, tenants, users and
 * tokens. Blocking, on the store's blocking API: they run before serving or from `shareline
 * admin`, never on the event loop.
 */
#include <stdio.h>
#include <string.h>

#include "core/internal/core.h"

/* Account names cannot be statement parameters: they are checked against this set, then quoted. */
static const char ACCOUNT_CHARS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-%:";

static int account_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 80 && strspn(s, ACCOUNT_CHARS) == n;
}

int sl_core_admin_migrate(sl_store_sync_t *db, const char *public_user, const char *grantee_host, char *err,
                          size_t errlen)
{
    sl_store_error_t e;
    if (sl_store_migrate(db, &e) != 0) {
        snprintf(err, errlen, "migration failed: %s", e.message);
        return -1;
    }
    if (!account_name_ok(public_user) || !account_name_ok(grantee_host)) {
        snprintf(err, errlen,
                 "SHARELINE_DB_PUBLIC_USER/_GRANTEE_HOST must be 1-80 of A-Z a-z 0-9 _ . - %% :");
        return -1;
    }
    /* SELECT on the public views is all the public account may do: even a bug in the public read
     * path cannot read a hidden exchange. */
    static const char *const views[] = {"public_sessions", "public_exchanges", "public_exchange_keys"};
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        char sql[300];
        snprintf(sql, sizeof(sql), "GRANT SELECT ON %s TO '%s'@'%s'", views[i], public_user, grantee_host);
        if (sl_store_sync_exec(db, sql, NULL, 0, NULL, &e) != 0) {
            snprintf(err, errlen, "cannot grant SELECT on %s to the public account %s@%s: %s", views[i],
                     public_user, grantee_host, e.message);
            return -1;
        }
    }
    return 0;
}

/* Runs an INSERT and hands back its id; 0 rows inserted is "not found" (an INSERT ... SELECT). */
static int insert(sl_store_sync_t *db, const char *sql, const sl_store_value_t *p, size_t n, uint64_t *id,
                  const char *none, char *err, size_t errlen)
{
    sl_store_error_t e;
    sl_store_result_t *r;
    if (sl_store_sync_exec(db, sql, p, n, &r, &e) != 0) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    int rc = r->affected_rows == 1 ? 0 : -1;
    if (rc == 0 && id)
        *id = r->insert_id;
    else if (rc != 0)
        snprintf(err, errlen, "%s", none);
    sl_store_result_free(r);
    return rc;
}

int sl_core_admin_tenant_create(sl_store_sync_t *db, const char *name, uint64_t *id, char *err, size_t errlen)
{
    if (*name == '\0' || strlen(name) > 200) {
        snprintf(err, errlen, "tenant name must be 1-200 bytes");
        return -1;
    }
    sl_store_value_t p[] = {sl_store_text(name, strlen(name))};
    return insert(db, "INSERT INTO tenants (name) VALUES (?)", p, 1, id, "tenant not created", err, errlen);
}

int sl_core_admin_user_create(sl_store_sync_t *db, uint64_t tenant, const char *handle, const char *name,
                              uint64_t *id, char *err, size_t errlen)
{
    if (tenant == 0 || *handle == '\0' || strlen(handle) > 64 || *name == '\0' || strlen(name) > 200) {
        snprintf(err, errlen, "a user needs a tenant id, a handle of 1-64 bytes and a name of 1-200 bytes");
        return -1;
    }
    sl_store_value_t p[] = {sl_store_int((int64_t)tenant), sl_store_text(handle, strlen(handle)),
                            sl_store_text(name, strlen(name))};
    return insert(db, "INSERT INTO users (tenant_id, handle, display_name) VALUES (?, ?, ?)", p, 3, id,
                  "user not created", err, errlen);
}

int sl_core_admin_token_create(sl_store_sync_t *db, uint64_t user, uint64_t service_tenant, char *token,
                               size_t tokcap, char *err, size_t errlen)
{
    if ((user == 0) == (service_tenant == 0)) {
        snprintf(err, errlen, "a token is for a user or for a tenant's services, not both");
        return -1;
    }
    if (sl_token_new(token, tokcap) != 0) {
        snprintf(err, errlen, "no randomness available");
        return -1;
    }
    unsigned char hash[32];
    sl_token_hash(token, strlen(token), hash);
    int rc;
    if (service_tenant) {
        /* A service token: tenant-scoped, acts for that tenant's users ("as_user"). */
        sl_store_value_t p[] = {sl_store_blob(hash, 32), sl_store_int((int64_t)service_tenant)};
        char none[64];
        snprintf(none, sizeof(none), "no tenant with id %llu", (unsigned long long)service_tenant);
        rc = insert(db,
                    "INSERT INTO tokens (token_hash, tenant_id, user_id, kind)"
                    " SELECT ?, id, NULL, 'service' FROM tenants WHERE id = ?",
                    p, 2, NULL, none, err, errlen);
    } else {
        sl_store_value_t p[] = {sl_store_blob(hash, 32), sl_store_int((int64_t)user),
                                sl_store_int((int64_t)user)};
        char none[64];
        snprintf(none, sizeof(none), "no user with id %llu", (unsigned long long)user);
        rc = insert(db,
                    "INSERT INTO tokens (token_hash, tenant_id, user_id, kind)"
                    " SELECT ?, tenant_id, ?, 'user' FROM users WHERE id = ?",
                    p, 3, NULL, none, err, errlen);
    }
    if (rc != 0)
        explicit_bzero(token, tokcap);
    return rc;
}

int sl_core_admin_login_link(sl_store_sync_t *db, uint64_t user, const char *base_url, char *url, size_t cap,
                             char *err, size_t errlen)
{
    char link[80];
    if (sl_token_new_prefixed(link, sizeof(link), "sll_") != 0) {
        snprintf(err, errlen, "no randomness available");
        return -1;
    }
    unsigned char hash[32];
    sl_token_hash(link, strlen(link), hash);
    sl_store_value_t p[] = {sl_store_blob(hash, 32), sl_store_int((int64_t)user),
                            sl_store_int(SL_CONSOLE_LINK_TTL_S), sl_store_int((int64_t)user)};
    char none[64];
    snprintf(none, sizeof(none), "no user with id %llu", (unsigned long long)user);
    int rc = insert(db,
                    "INSERT INTO console_tokens (token_hash, tenant_id, user_id, kind, expires_at)"
                    " SELECT ?, tenant_id, ?, 'login', NOW(6) + INTERVAL ? SECOND FROM users WHERE id = ?",
                    p, 4, NULL, none, err, errlen);
    if (rc == 0 && (size_t)snprintf(url, cap, "%s/console/login?link=%s", base_url, link) >= cap) {
        snprintf(err, errlen, "the public URL is too long");
        rc = -1;
    }
    explicit_bzero(link, sizeof(link));
    return rc;
}

int sl_core_admin_token_revoke(sl_store_sync_t *db, const char *token_or_hash, char *err, size_t errlen)
{
    unsigned char hash[32];
    size_t n = strlen(token_or_hash);
    int is_hex = n == 64 && strspn(token_or_hash, "0123456789abcdefABCDEF") == 64;
    if (is_hex) {
        for (int i = 0; i < 32; i++) {
            unsigned v;
            sscanf(token_or_hash + 2 * i, "%2x", &v);
            hash[i] = (unsigned char)v;
        }
    } else if (n > 0 && n <= 256) {
        sl_token_hash(token_or_hash, n, hash);
    } else {
        snprintf(err, errlen, "give the token, or the 64 hex digits of its SHA-256");
        return -1;
    }
    /* a bearer token, or a console session or sign-in link (docs/console.md) */
    static const char *const sql[] = {
        "UPDATE tokens SET revoked_at = NOW(6) WHERE token_hash = ? AND revoked_at IS NULL",
        "UPDATE console_tokens SET revoked_at = NOW(6) WHERE token_hash = ? AND revoked_at IS NULL",
    };
    sl_store_value_t p[] = {sl_store_blob(hash, 32)};
    sl_store_error_t e;
    int rc = -1;
    for (size_t i = 0; i < 2 && rc != 0; i++) {
        sl_store_result_t *r;
        if (sl_store_sync_exec(db, sql[i], p, 1, &r, &e) != 0) {
            snprintf(err, errlen, "%s", e.message);
            return -1;
        }
        rc = r->affected_rows == 1 ? 0 : -1;
        sl_store_result_free(r);
    }
    if (rc != 0)
        snprintf(err, errlen, "no such token, or it was revoked already");
    return rc;
}
