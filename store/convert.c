/*
 * What the pool (conn.c) and the blocking API (blocking.c) of store/ share: connection options,
 * error mapping, binding parameters, converting results into sl_store_result_t.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>

#include "store/internal/store.h"
#include "store/internal/migrations.h"

int sl_store__options(MYSQL *m, const sl_store_config_t *cfg, int nonblock)
{
    unsigned connect_s = (cfg->connect_timeout_ms + 999) / 1000;
    unsigned long packet = 256ul << 20;
    my_bool off = 0;
    unsigned int zero = 0;
    if (connect_s == 0)
        connect_s = 1;
    if (mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
        mysql_optionsv(m, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'") != 0 ||
        mysql_optionsv(m, MYSQL_OPT_MAX_ALLOWED_PACKET, &packet) != 0 ||
        mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &zero) != 0 ||
        mysql_optionsv(m, MYSQL_OPT_RECONNECT, &off) != 0 ||
        mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s) != 0)
        return -1;
    if (nonblock && mysql_optionsv(m, MYSQL_OPT_NONBLOCK, 0) != 0)
        return -1;
    return 0;
}

static int use_socket(const sl_store_config_t *cfg)
{
    return cfg->host == NULL || strcmp(cfg->host, "localhost") == 0;
}

const char *sl_store__host(const sl_store_config_t *cfg)
{
    return use_socket(cfg) ? "localhost" : cfg->host;
}

const char *sl_store__socket(const sl_store_config_t *cfg)
{
    return use_socket(cfg) ? cfg->unix_socket : NULL;
}

int sl_store__conn_broken(unsigned server_errno)
{
    return server_errno >= 2000 && server_errno < 3000;
}

void sl_store__errorf(sl_store_error_t *err, sl_store_code_t code, const char *fmt, ...)
{
    if (err == NULL)
        return;
    err->code = code;
    err->server_errno = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void sl_store__error(sl_store_error_t *err, unsigned server_errno, const char *message)
{
    if (err == NULL)
        return;
    sl_store_code_t code = SL_STORE_E_QUERY;
    if (server_errno == SL_ER_DUP_ENTRY)
        code = SL_STORE_E_DUP;
    else if (server_errno == SL_ER_LOCK_WAIT_TIMEOUT || server_errno == SL_ER_STATEMENT_TIMEOUT)
        code = SL_STORE_E_TIMEOUT;
    else if (sl_store__conn_broken(server_errno))
        code = SL_STORE_E_CONN;
    err->code = code;
    err->server_errno = server_errno;
    snprintf(err->message, sizeof(err->message), "%s",
             message && *message ? message : "unknown MariaDB error");
}

int sl_store__bind(MYSQL_STMT *stmt, const sl_store_value_t *params, size_t nparams, MYSQL_BIND *binds,
                   sl_store_error_t *err)
{
    unsigned long want = mysql_stmt_param_count(stmt);
    if (want != nparams) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "statement has %lu parameters, %zu given", want, nparams);
        return -1;
    }
    if (nparams == 0)
        return 0;
    memset(binds, 0, nparams * sizeof(*binds));
    for (size_t i = 0; i < nparams; i++) {
        const sl_store_value_t *v = &params[i];
        MYSQL_BIND *b = &binds[i];
        switch (v->type) {
        case SL_STORE_NULL:
            b->buffer_type = MYSQL_TYPE_NULL;
            break;
        case SL_STORE_INT:
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = (void *)&v->i;
            break;
        case SL_STORE_TEXT:
        case SL_STORE_BLOB:
            b->buffer_type = v->type == SL_STORE_TEXT ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB;
            /* A zero-length value still needs a non-NULL buffer, or it would be sent as NULL. */
            b->buffer = (void *)(v->ptr ? v->ptr : "");
            b->buffer_length = (unsigned long)v->len;
            b->length_value = (unsigned long)v->len;
            b->length = &b->length_value;
            break;
        default:
            sl_store__errorf(err, SL_STORE_E_QUERY, "parameter %zu has an unknown type", i);
            return -1;
        }
    }
    if (mysql_stmt_bind_param(stmt, binds)) {
        sl_store__error(err, mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
        return -1;
    }
    return 0;
}

/* Integer columns, and DECIMAL columns without a fractional part (what MAX()/SUM()/COALESCE() of
 * integers may come back as), are INT cells. */
static int is_integer_type(const MYSQL_FIELD *f)
{
    enum enum_field_types t = f->type;
    if ((t == MYSQL_TYPE_NEWDECIMAL || t == MYSQL_TYPE_DECIMAL) && f->decimals == 0 && f->length <= 19)
        return 1;
    return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_LONG || t == MYSQL_TYPE_INT24 ||
           t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

static sl_store_result_t *result_new(size_t nrows, size_t ncols)
{
    sl_store_result_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->nrows = nrows;
    r->ncols = ncols;
    if (nrows * ncols > 0) {
        r->cells = calloc(nrows * ncols, sizeof(*r->cells));
        if (r->cells == NULL) {
            free(r);
            return NULL;
        }
    }
    return r;
}

/* The text cells of a result live in blocks of at least ARENA_BLOCK bytes, chained through their
 * first word: one allocation per block, not per cell (a 1,000-row result has thousands of cells). */
#define ARENA_BLOCK 16384
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block_t;

void sl_store_result_free(sl_store_result_t *res)
{
    if (res == NULL)
        return;
    for (arena_block_t *b = res->arena, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(res->cells);
    free(res);
}

static char *arena_alloc(sl_store_result_t *r, size_t n)
{
    arena_block_t *b = r->arena;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        arena_block_t *nb = malloc(sizeof(*nb) + cap);
        if (nb == NULL)
            return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b != NULL && n > ARENA_BLOCK) {
            /* a big value gets a block of its own behind the current one, which stays open */
            nb->next = b->next;
            b->next = nb;
            nb->used = n;
            return nb->data;
        }
        nb->next = b;
        r->arena = b = nb;
    }
    char *p = b->data + b->used;
    b->used += n;
    return p;
}

static int set_text(sl_store_result_t *r, sl_store_value_t *cell, const void *bytes, size_t len)
{
    char *p = arena_alloc(r, len + 1);
    if (p == NULL)
        return -1;
    if (len)
        memcpy(p, bytes, len);
    p[len] = '\0';
    cell->type = SL_STORE_TEXT;
    cell->ptr = p;
    cell->len = len;
    return 0;
}

typedef struct column {
    int integer;
    int temporal; /* DATETIME or TIMESTAMP (1), DATE (2): read as MYSQL_TIME, written here */
    unsigned decimals;
    MYSQL_TIME tm;
    long long ival;
    char *buf;
    unsigned long buflen;
    unsigned long length;
    my_bool is_null;
    my_bool error;
} column_t;

static char *digits(char *w, unsigned long v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return w + n;
}

/* A DATE, DATETIME or TIMESTAMP as text, byte for byte what the connector makes of it when it is
 * fetched as a string ("YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" and, with fractional digits, "." and
 * as many digits of the microseconds as the column has), without its sprintf per value: a
 * projection reads one per exchange, and stored pieces are checked against these bytes. */
static size_t format_time(const MYSQL_TIME *t, int date_only, unsigned decimals, char out[32])
{
    char *w = digits(out, t->year > 9999 ? 9999 : t->year, 4);
    *w++ = '-';
    w = digits(w, t->month % 100, 2);
    *w++ = '-';
    w = digits(w, t->day % 100, 2);
    if (!date_only) {
        *w++ = ' ';
        w = digits(w, t->hour % 100, 2);
        *w++ = ':';
        w = digits(w, t->minute % 100, 2);
        *w++ = ':';
        w = digits(w, t->second % 100, 2);
        if (decimals >= 1 && decimals <= 6) {
            char frac[6];
            digits(frac, t->second_part % 1000000, 6);
            *w++ = '.';
            memcpy(w, frac, decimals);
            w += decimals;
        }
    }
    return (size_t)(w - out);
}

int sl_store__collect(MYSQL_STMT *stmt, sl_store_result_t **out, sl_store_error_t *err)
{
    *out = NULL;
    MYSQL_RES *meta = mysql_stmt_result_metadata(stmt);
    size_t ncols = meta ? mysql_num_fields(meta) : 0;
    size_t nrows = meta ? (size_t)mysql_stmt_num_rows(stmt) : 0;
    sl_store_result_t *r = result_new(nrows, ncols);
    column_t *cols = ncols ? calloc(ncols, sizeof(*cols)) : NULL;
    MYSQL_BIND *binds = ncols ? calloc(ncols, sizeof(*binds)) : NULL;
    int rc = -1;
    if (r == NULL || (ncols && (cols == NULL || binds == NULL))) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
        goto done;
    }
    r->affected_rows = mysql_stmt_affected_rows(stmt);
    r->insert_id = mysql_stmt_insert_id(stmt);
    if (ncols == 0) {
        rc = 0;
        goto done;
    }
    MYSQL_FIELD *fields = mysql_fetch_fields(meta);
    for (size_t c = 0; c < ncols; c++) {
        MYSQL_BIND *b = &binds[c];
        b->is_null = &cols[c].is_null;
        b->length = &cols[c].length;
        b->error = &cols[c].error;
        enum enum_field_types t = fields[c].type;
        if (t == MYSQL_TYPE_DATETIME || t == MYSQL_TYPE_TIMESTAMP || t == MYSQL_TYPE_DATE) {
            cols[c].temporal = t == MYSQL_TYPE_DATE ? 2 : 1;
            cols[c].decimals = fields[c].decimals;
            b->buffer_type = t == MYSQL_TYPE_DATE ? MYSQL_TYPE_DATE : MYSQL_TYPE_DATETIME;
            b->buffer = &cols[c].tm;
            b->buffer_length = sizeof(cols[c].tm);
        } else if (is_integer_type(&fields[c])) {
            cols[c].integer = 1;
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &cols[c].ival;
            b->is_unsigned = (fields[c].flags & UNSIGNED_FLAG) != 0;
        } else {
            /* max_length is known because STMT_ATTR_UPDATE_MAX_LENGTH was set before storing; a
             * value longer than the buffer (temporal conversions) is re-read below. */
            cols[c].buflen = fields[c].max_length + 1;
            if (cols[c].buflen < 64)
                cols[c].buflen = 64;
            cols[c].buf = malloc(cols[c].buflen);
            if (cols[c].buf == NULL) {
                sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
                goto done;
            }
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = cols[c].buf;
            b->buffer_length = cols[c].buflen;
        }
    }
    if (mysql_stmt_bind_result(stmt, binds)) {
        sl_store__error(err, mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
        goto done;
    }
    for (size_t row = 0; row < nrows; row++) {
        int f = mysql_stmt_fetch(stmt);
        if (f == 1 || f == MYSQL_NO_DATA) {
            sl_store__error(err, mysql_stmt_errno(stmt),
                            f == 1 ? mysql_stmt_error(stmt) : "result ended before its row count");
            goto done;
        }
        for (size_t c = 0; c < ncols; c++) {
            sl_store_value_t *cell = &r->cells[row * ncols + c];
            if (cols[c].is_null) {
                cell->type = SL_STORE_NULL;
                continue;
            }
            if (cols[c].integer) {
                cell->type = SL_STORE_INT;
                cell->i = (int64_t)cols[c].ival;
                continue;
            }
            if (cols[c].temporal) {
                char t[32];
                size_t tn = format_time(&cols[c].tm, cols[c].temporal == 2, cols[c].decimals, t);
                if (set_text(r, cell, t, tn) != 0) {
                    sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
                    goto done;
                }
                continue;
            }
            if (cols[c].length >= cols[c].buflen) {
                char *big = malloc(cols[c].length + 1);
                MYSQL_BIND one;
                memset(&one, 0, sizeof(one));
                unsigned long got = 0;
                one.buffer_type = MYSQL_TYPE_STRING;
                one.buffer = big;
                one.buffer_length = cols[c].length + 1;
                one.length = &got;
                if (big == NULL || mysql_stmt_fetch_column(stmt, &one, (unsigned)c, 0) != 0 ||
                    set_text(r, cell, big, got < cols[c].length ? got : cols[c].length) != 0) {
                    free(big);
                    sl_store__errorf(err, SL_STORE_E_QUERY, "cannot read column %zu", c);
                    goto done;
                }
                free(big);
                continue;
            }
            if (set_text(r, cell, cols[c].buf, cols[c].length) != 0) {
                sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
                goto done;
            }
        }
    }
    rc = 0;
done:
    if (meta)
        mysql_free_result(meta);
    for (size_t c = 0; c < ncols && cols; c++)
        free(cols[c].buf);
    free(cols);
    free(binds);
    mysql_stmt_free_result(stmt);
    if (rc == 0)
        *out = r;
    else
        sl_store_result_free(r);
    return rc;
}

int sl_store__collect_text(MYSQL *m, MYSQL_RES *res, sl_store_result_t **out, sl_store_error_t *err)
{
    *out = NULL;
    size_t ncols = res ? mysql_num_fields(res) : 0;
    size_t nrows = res ? (size_t)mysql_num_rows(res) : 0;
    sl_store_result_t *r = result_new(nrows, ncols);
    if (r == NULL) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
        return -1;
    }
    r->affected_rows = mysql_affected_rows(m);
    r->insert_id = mysql_insert_id(m);
    for (size_t row = 0; row < nrows; row++) {
        MYSQL_ROW vals = mysql_fetch_row(res);
        unsigned long *lens = mysql_fetch_lengths(res);
        for (size_t c = 0; vals && c < ncols; c++) {
            sl_store_value_t *cell = &r->cells[row * ncols + c];
            if (vals[c] == NULL) {
                cell->type = SL_STORE_NULL;
            } else if (set_text(r, cell, vals[c], lens[c]) != 0) {
                sl_store_result_free(r);
                sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory reading a result");
                return -1;
            }
        }
    }
    *out = r;
    return 0;
}

sl_store_value_t *sl_store__copy_params(const sl_store_value_t *params, size_t n)
{
    size_t bytes = n * sizeof(*params);
    for (size_t i = 0; i < n; i++)
        if (params[i].type == SL_STORE_TEXT || params[i].type == SL_STORE_BLOB)
            bytes += params[i].len;
    sl_store_value_t *copy = malloc(bytes ? bytes : 1);
    if (copy == NULL)
        return NULL;
    char *data = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        copy[i] = params[i];
        if ((params[i].type == SL_STORE_TEXT || params[i].type == SL_STORE_BLOB) && params[i].len > 0) {
            memcpy(data, params[i].ptr, params[i].len);
            copy[i].ptr = data;
            data += params[i].len;
        }
    }
    return copy;
}
