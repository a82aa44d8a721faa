/*
 * Internal to store/: what the non-blocking pool (store.c) and the blocking API (sync.c) share —
 * connection options, parameter binding, result conversion and error mapping.
 */
#ifndef SL_STORE_INTERNAL_H
#define SL_STORE_INTERNAL_H

#include <mysql.h>

#include "store/store.h"

/* MariaDB error numbers we act on (mysqld_error.h / errmsg.h). */
#define SL_ER_DUP_ENTRY         1062
#define SL_ER_LOCK_WAIT_TIMEOUT 1205
#define SL_ER_UNSUPPORTED_PS    1295
#define SL_ER_STATEMENT_TIMEOUT 1969

/* Applies the options every connection uses: utf8mb4, UTC session time zone, a 256 MiB packet
 * limit on the client side, no LOAD DATA LOCAL, no automatic reconnect (the pool decides), the
 * connect timeout, and (nonblock != 0) MYSQL_OPT_NONBLOCK. Returns 0 or -1. */
int sl_store__options(MYSQL *m, const sl_store_config_t *cfg, int nonblock);

/* Arguments of mysql_real_connect(_start) derived from cfg. */
const char *sl_store__host(const sl_store_config_t *cfg);
const char *sl_store__socket(const sl_store_config_t *cfg);

/* Fills err from a client/server error number and message, choosing the code. */
void sl_store__error(sl_store_error_t *err, unsigned server_errno, const char *message);
void sl_store__errorf(sl_store_error_t *err, sl_store_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when an error number means the connection can no longer be trusted (client-side 2xxx). */
int sl_store__conn_broken(unsigned server_errno);

/* Binds params to stmt (which must have exactly nparams markers). `binds` has room for nparams.
 * The values must stay valid until the statement was executed. Returns 0, or -1 with err set. */
int sl_store__bind(MYSQL_STMT *stmt, const sl_store_value_t *params, size_t nparams, MYSQL_BIND *binds,
                   sl_store_error_t *err);

/* After a successful execute (and mysql_stmt_store_result() for statements with a result set),
 * converts everything into one sl_store_result_t. Fetching a stored result does no I/O. */
int sl_store__collect(MYSQL_STMT *stmt, sl_store_result_t **out, sl_store_error_t *err);

/* The same for the text protocol (the fallback for statements the server will not prepare):
 * res may be NULL (no result set). Every cell is TEXT or NULL. */
int sl_store__collect_text(MYSQL *m, MYSQL_RES *res, sl_store_result_t **out, sl_store_error_t *err);

/* Deep copy of params into one allocation (values and their bytes). */
sl_store_value_t *sl_store__copy_params(const sl_store_value_t *params, size_t n);

#endif
