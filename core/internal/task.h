/*
 * Internal to core/: tasks — coroutines on the libuv loop's thread, so that an owner operation that
 * takes ten round trips to MariaDB and Redis reads as straight-line code. A task runs until it waits
 * (sl_task_wait), then the loop goes on; the callback that completes the wait resumes it.
 *
 * Modules below the core stay callback-based; the sl_await_* helpers (await.c) adapt them.
 * Tasks are not threads: everything still runs on the loop's thread, one thing at a time, and a
 * task's state between waits may be changed by other tasks.
 */
#ifndef SL_CORE_TASK_H
#define SL_CORE_TASK_H

#include <stddef.h>

typedef struct sl_task sl_task_t;
typedef void (*sl_task_fn)(void *arg);

/* Creates a task running fn(arg) and runs it at once until it first waits or ends. Returns -1 when
 * no stack could be allocated (fn is not called). The task frees itself when fn returns. */
int sl_task_spawn(sl_task_fn fn, void *arg);

/* The running task (NULL outside any task). */
sl_task_t *sl_task_current(void);

/* Inside a task: gives the thread back until sl_task_resume(self). */
void sl_task_wait(void);

/* From a callback (outside the task): continues a waiting task until it waits again or ends. */
void sl_task_resume(sl_task_t *t);

/* Bytes of each task's stack. */
#define SL_TASK_STACK_SIZE (256 * 1024)

#endif
