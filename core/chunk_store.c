/*
 * The chunk state of a long public session in MariaDB (session_chunks, migration 13; the state
 * itself: chunks.c; docs/pieces.md "Changes that cost what they change"). Read and written only
 * inside an owner's transaction, on the connection that holds the session's row lock, so the rows
 * and the exchanges they describe change together; sessions.chunks_version names the version they
 * describe (the triggers of migration 13 set it to NULL when an exchange changes otherwise).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal/chunk_store.h"

static const char SQL_READ[] = "SELECT first_pos, first_id, data FROM session_chunks WHERE session_id = ?";
static const char SQL_CLEAR[] = "DELETE FROM session_chunks WHERE session_id = ?";
static const char SQL_DELETE[] =
    "DELETE FROM session_chunks WHERE session_id = ? AND first_pos = ? AND first_id = ?";
static const char SQL_PUT[] =
    "INSERT INTO session_chunks (session_id, first_pos, first_id, data) VALUES (?, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE data = VALUES(data)";
static const char SQL_VERSION[] = "UPDATE sessions SET chunks_version = ? WHERE id = ?";

int sl_chunks_read(sl_store_conn_t *conn, const char *id, size_t idlen, sl_chunks_t *cs,
                   sl_store_result_t **res, sl_store_error_t *err)
{
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    sl_store_result_t *r = sl_await_exec(conn, SQL_READ, p, 1, err);
    if (r == NULL)
        return -1;
    *res = r;
    if (r->ncols != 3)
        return 1;
    for (size_t i = 0; i < r->nrows; i++) {
        const sl_store_value_t *d = sl_store_cell(r, i, 2);
        if (d->type != SL_STORE_BLOB && d->type != SL_STORE_TEXT)
            return 1;
        if (sl_chunks_add_row(cs, sl_store_cell(r, i, 0)->i, sl_store_cell(r, i, 1)->i, d->ptr, d->len) != 0)
            return 1;
    }
    return sl_chunks_ready(cs) == 0 ? 0 : 1;
}

static int run(sl_store_conn_t *conn, const char *sql, const sl_store_value_t *p, size_t n,
               sl_store_error_t *err)
{
    sl_store_result_t *r = sl_await_exec(conn, sql, p, n, err);
    sl_store_result_free(r);
    return r == NULL ? -1 : 0;
}

int sl_chunks_write(sl_store_conn_t *conn, const char *id, size_t idlen, const sl_chunks_t *cs, int all,
                    uint64_t version, sl_store_error_t *err)
{
    sl_store_value_t sid = sl_store_text(id, idlen);
    if (all && run(conn, SQL_CLEAR, &sid, 1, err) != 0)
        return -1;
    for (size_t i = 0; !all && i < cs->ngone; i++) {
        sl_store_value_t p[] = {sid, sl_store_int(cs->gone[i].pos), sl_store_int(cs->gone[i].id)};
        if (run(conn, SQL_DELETE, p, 3, err) != 0)
            return -1;
    }
    for (size_t i = 0; i < cs->n; i++) {
        const sl_chunk_t *c = &cs->c[i];
        if (!c->dirty && !all)
            continue;
        unsigned char *data;
        size_t len;
        if (sl_chunk_encode(c, &data, &len) != 0) {
            err->code = SL_STORE_E_QUERY;
            err->server_errno = 0;
            snprintf(err->message, sizeof(err->message), "out of memory writing the chunk state");
            return -1;
        }
        sl_store_value_t p[] = {sid, sl_store_int(c->row_pos), sl_store_int(c->row_id),
                                sl_store_blob(data, len)};
        int rc = run(conn, SQL_PUT, p, 4, err);
        free(data);
        if (rc != 0)
            return -1;
    }
    sl_store_value_t v[] = {sl_store_int((int64_t)version), sid};
    return run(conn, SQL_VERSION, v, 2, err);
}

int sl_chunks_keep_recipe(sl_core_t *core, const sl_chunks_t *cs, const sl_proj_session_t *s,
                          uint64_t version, sl_projection_t *out)
{
    if (sl_recipe_encode_keys(s, cs->total, version, cs->n ? cs->c[0].key : NULL, sizeof(cs->c[0]), cs->n,
                              &out->recipe, &out->recipe_len) != 0)
        return -1;
    uint64_t gen = core->cache ? sl_cache_trust_generation(core->cache) : 0, now = uv_now(core->loop);
    for (size_t i = 0; i < cs->n; i++) {
        const sl_chunk_t *c = &cs->c[i];
        const void *blob;
        size_t len;
        sl_pc_entry_t *e = sl_pcache_get(core->pieces, c->key, &blob, &len);
        int known = sl_pcache_in_redis(e, gen, now, SL_BLOB_KNOWN_MS);
        sl_pcache_release(core->pieces, e);
        if (known)
            continue;
        unsigned char *b;
        size_t blen;
        if (sl_chunk_keys_blob(c, &b, &blen) != 0)
            return -1;
        if (e == NULL)
            sl_pcache_put(core->pieces, c->key, b, blen);
        int rc = sl_projection_store_add(out, c->key, b, blen);
        free(b);
        if (rc != 0)
            return -1;
    }
    return 0;
}
