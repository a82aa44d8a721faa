/*
 * Packing owner answers: key/value helpers and result rows packed by named columns (a column ->
 * key table beside each SELECT), so that an answer's shape is read off one table instead of a run
 * of numeric cell indices.
 */
#include <assert.h>
#include <stdio.h>

#include "core/internal/owner.h"

void sl_pack_kv_str(msgpack_packer *pk, const char *k, const char *v, size_t n)
{
    sl_rpc_pack_str(pk, k);
    sl_rpc_pack_strn(pk, v, n);
}

void sl_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    sl_rpc_pack_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

void sl_pack_kv_bool(msgpack_packer *pk, const char *k, int v)
{
    sl_rpc_pack_str(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void sl_op_pack_share_url(sl_op_t *op, const char *id, size_t idlen)
{
    /* base_url is at most SL_CORE_MAX_BASE_URL bytes (sl_core_open refuses longer ones), so this fits */
    char url[SL_CORE_MAX_BASE_URL + 80];
    int n = snprintf(url, sizeof(url), "%s/share/%.*s", op->core->base_url, (int)idlen, id);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(url) ? (size_t)n : sizeof(url) - 1;
    sl_pack_kv_str(sl_op_pk(op), "share_url", url, len);
}

void sl_pack_cell_str(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t col)
{
    const sl_store_value_t *v = sl_store_cell(r, row, col);
    if (v->type == SL_STORE_TEXT)
        sl_rpc_pack_strn(pk, v->ptr, v->len);
    else
        msgpack_pack_nil(pk);
}

size_t sl_cols_answered(const sl_col_t *cols, size_t ncols)
{
    size_t n = 0;
    for (size_t i = 0; i < ncols; i++)
        n += cols[i].kind != SL_COL_SKIP;
    return n;
}

void sl_pack_cols(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t first,
                  const sl_col_t *cols, size_t ncols)
{
    assert(first + ncols <= r->ncols); /* the table describes the SELECT beside it */
    for (size_t i = 0; i < ncols; i++) {
        if (cols[i].kind == SL_COL_SKIP)
            continue;
        sl_rpc_pack_str(pk, cols[i].key);
        const sl_store_value_t *v = sl_store_cell(r, row, first + i);
        switch (cols[i].kind) {
        case SL_COL_STR:
            sl_pack_cell_str(pk, r, row, first + i);
            break;
        case SL_COL_U64:
            msgpack_pack_uint64(pk, (uint64_t)v->i);
            break;
        case SL_COL_BOOL:
            if (v->i != 0)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        case SL_COL_SKIP:
            break;
        }
    }
}

void sl_pack_row(msgpack_packer *pk, const sl_store_result_t *r, size_t row, const sl_col_t *cols,
                 size_t ncols)
{
    msgpack_pack_map(pk, sl_cols_answered(cols, ncols));
    sl_pack_cols(pk, r, row, 0, cols, ncols);
}

void sl_pack_owner_title(msgpack_packer *pk, const sl_store_value_t *own, const sl_store_value_t *first)
{
    sl_rpc_pack_str(pk, "title");
    if (own->type == SL_STORE_TEXT && own->len > 0)
        sl_rpc_pack_strn(pk, own->ptr, own->len);
    else if (first && first->type == SL_STORE_TEXT && first->len > 0)
        sl_rpc_pack_strn(pk, first->ptr, first->len);
    else
        sl_rpc_pack_str(pk, "Untitled session");
}

/* The four project columns every SELECT that answers a project lists in this order. */
static const sl_col_t PROJECT_COLS[] = {
    {"project_id", SL_COL_U64}, {"name", SL_COL_STR}, {"icon", SL_COL_STR}, {"color", SL_COL_STR}};

void sl_pack_project(msgpack_packer *pk, const sl_store_result_t *r, size_t row, size_t col)
{
    msgpack_pack_map(pk, 4);
    sl_pack_cols(pk, r, row, col, PROJECT_COLS, 4);
}
