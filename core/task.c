/*
 * Tasks on ucontext. Each task has an mmap'd stack with a guard page below it (an overflow faults
 * instead of corrupting the heap); stacks are kept in a small free list for reuse.
 *
 * Under AddressSanitizer every switch is announced with __sanitizer_start/finish_switch_fiber, or
 * ASan would take the task's stack for a wild pointer region and report false errors.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/internal/task.h"

#if defined(__SANITIZE_ADDRESS__)
#define SL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_ASAN 1
#endif
#endif

#ifdef SL_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
#endif

struct sl_task {
    ucontext_t ctx;    /* the task's own context */
    ucontext_t caller; /* whoever resumed it last */
    void *map;         /* stack mapping, guard page first */
    size_t map_size;
    sl_task_fn fn;
    void *arg;
    int done;
    sl_task_t *prev_current;
#ifdef SL_ASAN
    void *fake_stack;
    const void *caller_bottom;
    size_t caller_size;
#endif
};

static __thread sl_task_t *current;
static __thread sl_task_t *free_list[32];
static __thread size_t free_count;

sl_task_t *sl_task_current(void)
{
    return current;
}

static size_t page_size(void)
{
    static size_t ps;
    if (ps == 0)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static sl_task_t *task_alloc(void)
{
    if (free_count > 0)
        return free_list[--free_count];
    sl_task_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->map_size = SL_TASK_STACK_SIZE + page_size();
    t->map =
        mmap(NULL, t->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t->map == MAP_FAILED) {
        free(t);
        return NULL;
    }
    mprotect(t->map, page_size(), PROT_NONE);
    return t;
}

static void task_release(sl_task_t *t)
{
    if (free_count < sizeof(free_list) / sizeof(free_list[0])) {
        free_list[free_count++] = t;
        return;
    }
    munmap(t->map, t->map_size);
    free(t);
}

/* Switches from the caller into t (first start or resume), and back when it waits or ends. */
static __attribute__((noinline)) void switch_in(sl_task_t *t)
{
    t->prev_current = current;
    current = t;
#ifdef SL_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, (char *)t->map + page_size(), SL_TASK_STACK_SIZE);
#endif
    swapcontext(&t->caller, &t->ctx);
#ifdef SL_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    current = t->prev_current;
    if (t->done)
        task_release(t);
}

static void trampoline(unsigned hi, unsigned lo)
{
    sl_task_t *t = (sl_task_t *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
#ifdef SL_ASAN
    __sanitizer_finish_switch_fiber(NULL, &t->caller_bottom, &t->caller_size);
#endif
    t->fn(t->arg);
    t->done = 1;
#ifdef SL_ASAN
    /* NULL: this stack will not be switched back to, so ASan may drop its fake frames. */
    __sanitizer_start_switch_fiber(NULL, t->caller_bottom, t->caller_size);
#endif
    setcontext(&t->caller);
}

/* Kept out of line: getcontext() returns twice, and must not share a frame with locals the
 * compiler could keep in registers (-Wclobbered). */
static __attribute__((noinline)) void prepare_context(sl_task_t *t)
{
    getcontext(&t->ctx);
    t->ctx.uc_stack.ss_sp = (char *)t->map + page_size();
    t->ctx.uc_stack.ss_size = SL_TASK_STACK_SIZE;
    t->ctx.uc_link = NULL;
    uintptr_t p = (uintptr_t)t;
    makecontext(&t->ctx, (void (*)(void))trampoline, 2, (unsigned)(p >> 32), (unsigned)(p & 0xffffffffu));
}

int sl_task_spawn(sl_task_fn fn, void *arg)
{
    sl_task_t *t = task_alloc();
    if (t == NULL)
        return -1;
    t->fn = fn;
    t->arg = arg;
    t->done = 0;
    prepare_context(t);
    switch_in(t);
    return 0;
}

void sl_task_wait(void)
{
    sl_task_t *t = current;
    assert(t != NULL && "sl_task_wait outside a task");
#ifdef SL_ASAN
    __sanitizer_start_switch_fiber(&t->fake_stack, t->caller_bottom, t->caller_size);
#endif
    swapcontext(&t->ctx, &t->caller);
#ifdef SL_ASAN
    __sanitizer_finish_switch_fiber(t->fake_stack, &t->caller_bottom, &t->caller_size);
#endif
}

void sl_task_resume(sl_task_t *t)
{
    assert(t != NULL && !t->done);
    switch_in(t);
}
