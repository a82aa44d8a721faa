/* Tasks (coroutines on the loop): run until they wait, resumed from loop callbacks, many at once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <uv.h>

#include "core/internal/task.h"

typedef struct step {
    uv_timer_t timer;
    sl_task_t *task;
    int *log;
    int *nlog;
    int id;
} step_t;

static void on_timer(uv_timer_t *t)
{
    step_t *s = t->data;
    sl_task_resume(s->task);
}

/* A task that records, waits on a timer twice, records again. */
static void body(void *arg)
{
    step_t *s = arg;
    s->task = sl_task_current();
    assert_non_null(s->task);
    for (int round = 0; round < 3; round++) {
        s->log[(*s->nlog)++] = s->id * 10 + round;
        if (round < 2) {
            uv_timer_start(&s->timer, on_timer, (uint64_t)(s->id % 3), 0);
            sl_task_wait();
        }
    }
    /* Deep-ish stack use inside a task must be fine (256 KiB stacks). */
    char big[64 * 1024];
    memset(big, s->id, sizeof(big));
    assert_int_equal(big[sizeof(big) - 1], (char)s->id);
}

static void test_many_tasks(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    enum { N = 50 };
    static step_t steps[N];
    static int log[N * 3];
    int nlog = 0;
    for (int i = 0; i < N; i++) {
        steps[i] = (step_t){.log = log, .nlog = &nlog, .id = i + 1};
        uv_timer_init(&loop, &steps[i].timer);
        steps[i].timer.data = &steps[i];
        assert_int_equal(sl_task_spawn(body, &steps[i]), 0);
        /* spawn ran it up to its first wait */
        assert_int_equal(log[nlog - 1], (i + 1) * 10);
        assert_null(sl_task_current());
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(nlog, N * 3);
    /* every task did its three rounds in order */
    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (int k = 0; k < nlog; k++)
            if (log[k] / 10 == i + 1) {
                assert_int_equal(log[k] % 10, seen);
                seen++;
            }
        assert_int_equal(seen, 3);
    }
    for (int i = 0; i < N; i++)
        uv_close((uv_handle_t *)&steps[i].timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static int nested_order[4];
static int nested_n;

static void inner(void *arg)
{
    nested_order[nested_n++] = 2;
}

static void outer(void *arg)
{
    nested_order[nested_n++] = 1;
    assert_int_equal(sl_task_spawn(inner, NULL), 0); /* a task may start another */
    nested_order[nested_n++] = 3;
}

static void test_nested_spawn(void **state)
{
    assert_int_equal(sl_task_spawn(outer, NULL), 0);
    assert_int_equal(nested_n, 3);
    assert_int_equal(nested_order[0], 1);
    assert_int_equal(nested_order[1], 2);
    assert_int_equal(nested_order[2], 3);
    assert_null(sl_task_current());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_tasks),
        cmocka_unit_test(test_nested_spawn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
