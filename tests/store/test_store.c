/* store/ against a real mariadbd (started by the ctest `services` fixture). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/internal/migrations.h"
#include "store/store.h"

static sl_store_config_t base_config(void)
{
    sl_store_config_t c = {0};
    c.host = getenv("SHARELINE_DB_HOST");
    c.port = (unsigned)atoi(getenv("SHARELINE_DB_PORT") ? getenv("SHARELINE_DB_PORT") : "0");
    c.user = getenv("SHARELINE_DB_USER");
    c.password = getenv("SHARELINE_DB_PASSWORD");
    c.database = getenv("SHARELINE_DB_NAME");
    c.pool_size = 2;
    return c;
}

/* ---- helpers running the loop until a callback fired ---- */

typedef struct outcome {
    int called;
    int returned; /* set after the API call returned: callbacks must see it set */
    int sync_call;
    sl_store_result_t *res;
    sl_store_error_t err;
    sl_store_conn_t *conn;
} outcome_t;

static void on_query(sl_store_result_t *res, const sl_store_error_t *err, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    o->res = res;
    if (err)
        o->err = *err;
}

static void on_acquire(sl_store_conn_t *conn, const sl_store_error_t *err, void *data)
{
    outcome_t *o = data;
    o->called++;
    if (!o->returned)
        o->sync_call = 1;
    o->conn = conn;
    if (err)
        o->err = *err;
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    while (!*flag)
        uv_run(loop, UV_RUN_ONCE);
}

static sl_store_result_t *query(sl_store_t *s, uv_loop_t *loop, const char *sql, const sl_store_value_t *p,
                                size_t n, sl_store_error_t *err)
{
    outcome_t o = {0};
    sl_store_query(s, sql, p, n, on_query, &o);
    o.returned = 1;
    run_until(loop, &o.called);
    assert_int_equal(o.sync_call, 0);
    assert_int_equal(o.called, 1);
    if (err)
        *err = o.err;
    return o.res;
}

static sl_store_result_t *exec(sl_store_conn_t *c, uv_loop_t *loop, const char *sql,
                               const sl_store_value_t *p, size_t n, sl_store_error_t *err)
{
    outcome_t o = {0};
    sl_store_exec(c, sql, p, n, on_query, &o);
    o.returned = 1;
    run_until(loop, &o.called);
    assert_int_equal(o.sync_call, 0);
    if (err)
        *err = o.err;
    return o.res;
}

static sl_store_conn_t *acquire(sl_store_t *s, uv_loop_t *loop, sl_store_error_t *err)
{
    outcome_t o = {0};
    sl_store_acquire(s, on_acquire, &o);
    o.returned = 1;
    run_until(loop, &o.called);
    assert_int_equal(o.sync_call, 0);
    if (err)
        *err = o.err;
    return o.conn;
}

static void wait_ready(sl_store_t *s, uv_loop_t *loop)
{
    for (int i = 0; i < 500 && !sl_store_ready(s); i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_true(sl_store_ready(s));
}

static void close_store(sl_store_t *s, uv_loop_t *loop)
{
    sl_store_close(s);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
}

/* ---- tests ---- */

static const char SQL_TABLE[] = "CREATE TABLE IF NOT EXISTS store_test ("
                                " id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(100) NULL, body LONGBLOB NULL,"
                                " at DATETIME(6) NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
static const char SQL_CLEAR[] = "DELETE FROM store_test";
static const char SQL_INSERT[] = "INSERT INTO store_test (id, name, body, at) VALUES (?, ?, ?, ?)";
static const char SQL_SELECT[] = "SELECT id, name, body, at FROM store_test WHERE id = ?";
static const char SQL_COUNT[] = "SELECT COUNT(*) FROM store_test WHERE id = ?";
static const char SQL_BEGIN[] = "START TRANSACTION";
static const char SQL_SLEEP[] = "SELECT SLEEP(3)";
static const char SQL_BAD[] = "SELEKT nonsense";

static void test_migrate_idempotent(void **state)
{
    (void)state;
    sl_store_config_t cfg = base_config();
    sl_store_error_t err;
    sl_store_sync_t *db = sl_store_sync_open(&cfg, &err);
    assert_non_null(db);
    assert_int_equal(sl_store_migrate(db, &err), 0);
    assert_int_equal(sl_store_migrate(db, &err), 0);
    sl_store_result_t *r;
    assert_int_equal(
        sl_store_sync_exec(db, "SELECT COUNT(*), MAX(version) FROM schema_migrations", NULL, 0, &r, &err), 0);
    assert_int_equal(sl_store_cell(r, 0, 0)->i, (int64_t)sl_store_migrations_count);
    assert_int_equal(sl_store_cell(r, 0, 1)->i, sl_store_migrations[sl_store_migrations_count - 1].version);
    sl_store_result_free(r);
    /* the tables of the data model exist */
    const char *tables[] = {"tenants",  "users",           "tokens",   "projects",
                            "sessions", "session_uploads", "exchanges"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        sl_store_value_t p[] = {sl_store_text(tables[i], strlen(tables[i]))};
        assert_int_equal(sl_store_sync_exec(db,
                                            "SELECT COUNT(*) FROM information_schema.tables"
                                            " WHERE table_schema = DATABASE() AND table_name = ?",
                                            p, 1, &r, &err),
                         0);
        assert_int_equal(sl_store_cell(r, 0, 0)->i, 1);
        sl_store_result_free(r);
    }
    /* a statement the server will not prepare with parameters-free text still runs */
    assert_int_equal(sl_store_sync_exec(db, SQL_TABLE, NULL, 0, NULL, &err), 0);
    assert_int_equal(sl_store_sync_exec(db, SQL_BAD, NULL, 0, NULL, &err), -1);
    assert_int_equal(err.code, SL_STORE_E_QUERY);
    assert_true(err.server_errno > 0);
    sl_store_sync_close(db);
}

static void test_sync_refused(void **state)
{
    (void)state;
    sl_store_config_t cfg = base_config();
    cfg.port = 1; /* nothing listens there */
    sl_store_error_t err;
    assert_null(sl_store_sync_open(&cfg, &err));
    assert_int_equal(err.code, SL_STORE_E_CONN);
}

static void test_round_trip(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    sl_store_result_free(query(s, &loop, SQL_TABLE, NULL, 0, &err));
    sl_store_result_free(query(s, &loop, SQL_CLEAR, NULL, 0, &err));

    /* bytes with NUL, quotes and SQL-looking text round-trip as data; empty string is not NULL */
    static const char body[] = "a\0b'\"; DROP TABLE store_test; --\xff";
    const char *name = "h\xc3\xa9llo \xf0\x9f\x98\x80 ' OR 1=1 --";
    sl_store_value_t p[] = {sl_store_int(1), sl_store_text(name, strlen(name)),
                            sl_store_blob(body, sizeof(body)), sl_store_text("2026-01-02 03:04:05.5", 21)};
    sl_store_result_t *r = query(s, &loop, SQL_INSERT, p, 4, &err);
    assert_non_null(r);
    assert_int_equal(r->affected_rows, 1);
    sl_store_result_free(r);
    sl_store_value_t p2[] = {sl_store_int(2), sl_store_text("", 0), sl_store_null(), sl_store_null()};
    sl_store_result_free(query(s, &loop, SQL_INSERT, p2, 4, &err));

    sl_store_value_t k1[] = {sl_store_int(1)};
    r = query(s, &loop, SQL_SELECT, k1, 1, &err);
    assert_non_null(r);
    assert_int_equal(r->nrows, 1);
    assert_int_equal(r->ncols, 4);
    assert_int_equal(sl_store_cell(r, 0, 0)->type, SL_STORE_INT);
    assert_int_equal(sl_store_cell(r, 0, 0)->i, 1);
    assert_int_equal(sl_store_cell(r, 0, 1)->type, SL_STORE_TEXT);
    assert_string_equal(sl_store_cell(r, 0, 1)->ptr, name);
    assert_int_equal(sl_store_cell(r, 0, 2)->len, sizeof(body));
    assert_memory_equal(sl_store_cell(r, 0, 2)->ptr, body, sizeof(body));
    assert_string_equal(sl_store_cell(r, 0, 3)->ptr, "2026-01-02 03:04:05.500000");
    sl_store_result_free(r);

    sl_store_value_t k2[] = {sl_store_int(2)};
    r = query(s, &loop, SQL_SELECT, k2, 1, &err);
    assert_int_equal(sl_store_cell(r, 0, 1)->type, SL_STORE_TEXT);
    assert_int_equal(sl_store_cell(r, 0, 1)->len, 0);
    assert_int_equal(sl_store_cell(r, 0, 2)->type, SL_STORE_NULL);
    sl_store_result_free(r);

    /* a 3 MB value (bigger than one network packet) */
    size_t big_len = 3u << 20;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);
    sl_store_value_t p3[] = {sl_store_int(3), sl_store_null(), sl_store_blob(big, big_len), sl_store_null()};
    sl_store_result_free(query(s, &loop, SQL_INSERT, p3, 4, &err));
    sl_store_value_t k3[] = {sl_store_int(3)};
    r = query(s, &loop, SQL_SELECT, k3, 1, &err);
    assert_int_equal(sl_store_cell(r, 0, 2)->len, big_len);
    assert_memory_equal(sl_store_cell(r, 0, 2)->ptr, big, big_len);
    sl_store_result_free(r);
    free(big);

    /* duplicate key and syntax errors are told apart; the connection stays usable */
    r = query(s, &loop, SQL_INSERT, p, 4, &err);
    assert_null(r);
    assert_int_equal(err.code, SL_STORE_E_DUP);
    r = query(s, &loop, SQL_BAD, NULL, 0, &err);
    assert_null(r);
    assert_int_equal(err.code, SL_STORE_E_QUERY);
    /* wrong parameter count is an error, not a crash */
    r = query(s, &loop, SQL_SELECT, NULL, 0, &err);
    assert_null(r);
    assert_int_equal(err.code, SL_STORE_E_QUERY);
    r = query(s, &loop, SQL_COUNT, k1, 1, &err);
    assert_non_null(r);
    assert_int_equal(sl_store_cell(r, 0, 0)->i, 1);
    sl_store_result_free(r);

    sl_store_stats_t st;
    sl_store_get_stats(s, &st);
    assert_true(st.statements >= 10);
    assert_true(st.errors >= 3);
    close_store(s, &loop);
    uv_loop_close(&loop);
}

static void test_release_rolls_back(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.pool_size = 1; /* the same connection must come back clean */
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    sl_store_result_free(query(s, &loop, SQL_TABLE, NULL, 0, &err));
    sl_store_conn_t *c = acquire(s, &loop, &err);
    assert_non_null(c);
    sl_store_result_t *r = exec(c, &loop, SQL_BEGIN, NULL, 0, &err);
    assert_non_null(r);
    sl_store_result_free(r);
    sl_store_value_t p[] = {sl_store_int(77), sl_store_text("tx", 2), sl_store_null(), sl_store_null()};
    r = exec(c, &loop, SQL_INSERT, p, 4, &err);
    assert_non_null(r);
    sl_store_result_free(r);
    sl_store_release(c); /* no COMMIT */
    sl_store_value_t k[] = {sl_store_int(77)};
    r = query(s, &loop, SQL_COUNT, k, 1, &err);
    assert_non_null(r);
    assert_int_equal(sl_store_cell(r, 0, 0)->i, 0);
    sl_store_result_free(r);
    close_store(s, &loop);
    uv_loop_close(&loop);
}

static void test_acquire_timeout_and_fifo(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.pool_size = 1;
    cfg.acquire_timeout_ms = 300;
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    sl_store_conn_t *c = acquire(s, &loop, &err);
    assert_non_null(c);
    outcome_t o = {0};
    uint64_t t0 = uv_now(&loop);
    sl_store_acquire(s, on_acquire, &o);
    o.returned = 1;
    run_until(&loop, &o.called);
    assert_null(o.conn);
    assert_int_equal(o.err.code, SL_STORE_E_TIMEOUT);
    assert_true(uv_now(&loop) - t0 >= 250);
    /* two waiters, served in order once the connection comes back */
    outcome_t a = {0}, b = {0};
    sl_store_acquire(s, on_acquire, &a);
    sl_store_acquire(s, on_acquire, &b);
    a.returned = b.returned = 1;
    sl_store_release(c);
    run_until(&loop, &a.called);
    assert_non_null(a.conn);
    assert_int_equal(b.called, 0);
    sl_store_release(a.conn);
    run_until(&loop, &b.called);
    assert_non_null(b.conn);
    sl_store_release(b.conn);
    close_store(s, &loop);
    uv_loop_close(&loop);
}

static void test_query_timeout_then_recovers(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.pool_size = 1;
    cfg.query_timeout_ms = 300;
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    uint64_t t0 = uv_now(&loop);
    sl_store_result_t *r = query(s, &loop, SQL_SLEEP, NULL, 0, &err);
    assert_null(r);
    assert_int_equal(err.code, SL_STORE_E_TIMEOUT);
    assert_true(uv_now(&loop) - t0 < 2500);
    /* the connection was re-made: the next statement works */
    r = query(s, &loop, "SELECT 42", NULL, 0, &err);
    assert_non_null(r);
    assert_int_equal(sl_store_cell(r, 0, 0)->i, 42);
    sl_store_result_free(r);
    sl_store_stats_t st;
    sl_store_get_stats(s, &st);
    assert_true(st.reconnects >= 1);
    close_store(s, &loop);
    uv_loop_close(&loop);
}

/* The library closes its socket itself when a statement fails on the connection (here: our own
 * deadline shut it down). Descriptors opened meanwhile get that number back; the connection's
 * poll, closed later when the connection is dropped, must not take their epoll registration with
 * it (libuv then never reports them again, or aborts when it next modifies them). */
#define NPAIRS 16
static int ready_pairs;
static void on_pair_readable(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    ready_pairs++;
    uv_poll_stop(h);
}

static void test_dropped_connection_leaves_reused_fds_alone(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.pool_size = 1;
    cfg.query_timeout_ms = 300;
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    sl_store_conn_t *c = acquire(s, &loop, &err);
    assert_non_null(c);
    assert_null(exec(c, &loop, SQL_SLEEP, NULL, 0, &err));
    assert_int_equal(err.code, SL_STORE_E_TIMEOUT);
    /* the connection's socket is closed, the connection not yet dropped: new descriptors take the
     * lowest free numbers, among them the one the connection had */
    int fds[NPAIRS][2];
    uv_poll_t polls[NPAIRS];
    ready_pairs = 0;
    for (int i = 0; i < NPAIRS; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]), 0);
        assert_int_equal(uv_poll_init(&loop, &polls[i], fds[i][0]), 0);
        assert_int_equal(uv_poll_start(&polls[i], UV_READABLE, on_pair_readable), 0);
    }
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT); /* the polls are registered with epoll */
    sl_store_release(c);              /* broken: dropped, its poll closed */
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < NPAIRS; i++)
        assert_int_equal(write(fds[i][1], "x", 1), 1);
    uint64_t t0 = uv_now(&loop);
    while (ready_pairs < NPAIRS && uv_now(&loop) - t0 < 2000) {
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_update_time(&loop);
    }
    assert_int_equal(ready_pairs, NPAIRS); /* every descriptor is still watched */
    for (int i = 0; i < NPAIRS; i++)
        uv_close((uv_handle_t *)&polls[i], NULL);
    /* and the store recovers */
    sl_store_result_t *r = query(s, &loop, "SELECT 42", NULL, 0, &err);
    assert_non_null(r);
    sl_store_result_free(r);
    close_store(s, &loop);
    for (int i = 0; i < NPAIRS; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    uv_loop_close(&loop);
}

static void test_refused_fails_fast(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.port = 1;
    cfg.acquire_timeout_ms = 10000;
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    uint64_t t0 = uv_now(&loop);
    sl_store_result_t *r = query(s, &loop, "SELECT 1", NULL, 0, &err);
    assert_null(r);
    assert_int_equal(err.code, SL_STORE_E_CONN);
    assert_true(uv_now(&loop) - t0 < 3000); /* not the 10 s acquire timeout */
    assert_false(sl_store_ready(s));
    close_store(s, &loop);
    uv_loop_close(&loop);
}

static void test_close_with_pending(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    sl_store_config_t cfg = base_config();
    cfg.pool_size = 1;
    sl_store_t *s;
    sl_store_error_t err;
    assert_int_equal(sl_store_open(&s, &loop, &cfg, &err), 0);
    wait_ready(s, &loop);
    outcome_t a = {0}, b = {0};
    sl_store_query(s, SQL_SLEEP, NULL, 0, on_query, &a);
    sl_store_query(s, "SELECT 1", NULL, 0, on_query, &b);
    a.returned = b.returned = 1;
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    sl_store_close(s);
    assert_int_equal(a.called + b.called, 0); /* not from inside close */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a.called, 1);
    assert_int_equal(b.called, 1);
    assert_null(a.res);
    assert_null(b.res);
    assert_int_equal(a.err.code, SL_STORE_E_CLOSED);
    assert_int_equal(b.err.code, SL_STORE_E_CLOSED);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_idempotent),
        cmocka_unit_test(test_sync_refused),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_release_rolls_back),
        cmocka_unit_test(test_acquire_timeout_and_fifo),
        cmocka_unit_test(test_query_timeout_then_recovers),
        cmocka_unit_test(test_dropped_connection_leaves_reused_fds_alone),
        cmocka_unit_test(test_refused_fails_fast),
        cmocka_unit_test(test_close_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
