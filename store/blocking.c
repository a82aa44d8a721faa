/* The blocking API of store/: start-up, the admin operations and tests (never on the event loop). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>

#include "store/internal/store.h"
#include "store/internal/migrations.h"

/* ---- blocking API ---- */

struct sl_store_sync {
    MYSQL *m;
};

sl_store_sync_t *sl_store_sync_open(const sl_store_config_t *cfg, sl_store_error_t *err)
{
    sl_store_config_t c = *cfg;
    if (c.connect_timeout_ms == 0)
        c.connect_timeout_ms = 2000;
    if (c.port == 0)
        c.port = 3306;
    sl_store_sync_t *db = calloc(1, sizeof(*db));
    if (db == NULL || (db->m = mysql_init(NULL)) == NULL) {
        free(db);
        sl_store__errorf(err, SL_STORE_E_CONN, "out of memory");
        return NULL;
    }
    if (sl_store__options(db->m, &c, 0) != 0) {
        sl_store__errorf(err, SL_STORE_E_CONN, "cannot set connection options");
        sl_store_sync_close(db);
        return NULL;
    }
    if (mysql_real_connect(db->m, sl_store__host(&c), c.user, c.password, c.database, c.port,
                           sl_store__socket(&c), 0) == NULL) {
        sl_store__error(err, mysql_errno(db->m), mysql_error(db->m));
        if (err && err->code != SL_STORE_E_CONN)
            err->code = SL_STORE_E_CONN; /* access denied, unknown database: still cannot connect */
        sl_store_sync_close(db);
        return NULL;
    }
    return db;
}

void sl_store_sync_close(sl_store_sync_t *db)
{
    if (db == NULL)
        return;
    if (db->m)
        mysql_close(db->m);
    free(db);
}

/* Statements the server refuses to prepare (ER_UNSUPPORTED_PS) without parameters run as text. */
static int exec_text(sl_store_sync_t *db, const char *sql, sl_store_result_t **res, sl_store_error_t *err)
{
    if (mysql_real_query(db->m, sql, (unsigned long)strlen(sql)) != 0) {
        sl_store__error(err, mysql_errno(db->m), mysql_error(db->m));
        return -1;
    }
    MYSQL_RES *r = mysql_store_result(db->m);
    if (r == NULL && mysql_field_count(db->m) != 0) {
        sl_store__error(err, mysql_errno(db->m), mysql_error(db->m));
        return -1;
    }
    sl_store_result_t *out;
    int rc = sl_store__collect_text(db->m, r, &out, err);
    if (r)
        mysql_free_result(r);
    if (rc != 0)
        return -1;
    if (res)
        *res = out;
    else
        sl_store_result_free(out);
    return 0;
}

int sl_store_sync_exec(sl_store_sync_t *db, const char *sql, const sl_store_value_t *params, size_t nparams,
                       sl_store_result_t **res, sl_store_error_t *err)
{
    if (res)
        *res = NULL;
    MYSQL_STMT *st = mysql_stmt_init(db->m);
    MYSQL_BIND *binds = nparams ? calloc(nparams, sizeof(*binds)) : NULL;
    int rc = -1;
    if (st == NULL || (nparams && binds == NULL)) {
        sl_store__errorf(err, SL_STORE_E_QUERY, "out of memory");
        goto done;
    }
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) != 0) {
        unsigned e = mysql_stmt_errno(st);
        if (e == SL_ER_UNSUPPORTED_PS && nparams == 0) {
            rc = exec_text(db, sql, res, err);
            goto done;
        }
        sl_store__error(err, e, mysql_stmt_error(st));
        goto done;
    }
    if (sl_store__bind(st, params, nparams, binds, err) != 0)
        goto done;
    if (mysql_stmt_execute(st) != 0) {
        sl_store__error(err, mysql_stmt_errno(st), mysql_stmt_error(st));
        goto done;
    }
    if (mysql_stmt_field_count(st) > 0) {
        my_bool on = 1;
        mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
        if (mysql_stmt_store_result(st) != 0) {
            sl_store__error(err, mysql_stmt_errno(st), mysql_stmt_error(st));
            goto done;
        }
    }
    sl_store_result_t *out;
    if (sl_store__collect(st, &out, err) != 0)
        goto done;
    if (res)
        *res = out;
    else
        sl_store_result_free(out);
    rc = 0;
done:
    if (st)
        mysql_stmt_close(st);
    free(binds);
    return rc;
}
