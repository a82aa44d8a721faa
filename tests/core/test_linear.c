/*
 * The renderer (core/render.c) and the SpecStory importer (core/specstory.c) do work linear in
 * their input, whatever the input: each adversarial family below is run at 64 KB and at 1 MB (16×
 * the input), and the CPU time may grow by at most 32× (linear: ~16×; quadratic: ~256×). The
 * renderer's output stays within 16× its input. The families are the constructs that made either
 * one super-linear or blow up its output: unclosed block openers, deep quote and list nesting,
 * runs of emphasis, link and code delimiters, header runs, long lines.
 *
 * A ratio, not an absolute time, so the test holds on any machine and under sanitizers; the median
 * of several runs of each size is taken, so a slow moment of the machine does not decide, and a run
 * too short to time is repeated until it is not (so the ratio is a ratio, not a guess at a floor).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/internal/render.h"
#include "core/internal/specstory.h"

#define SMALL            (64u << 10)
#define LARGE            (1u << 20)
#define MAX_TIME_RATIO   32.0
#define MAX_OUTPUT_RATIO 16.0

/* unit repeated to n bytes (cut at n), after an optional head */
static char *family(const char *head, const char *unit, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    size_t h = strlen(head), u = strlen(unit), k = 0;
    memcpy(s, head, h < n ? h : n);
    k = h < n ? h : n;
    while (k < n) {
        size_t c = u < n - k ? u : n - k;
        memcpy(s + k, unit, c);
        k += c;
    }
    s[n] = '\0';
    return s;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t out_bytes;

static void count_out(const char *s, size_t n, void *ud)
{
    (void)s;
    (void)ud;
    out_bytes += n;
}

typedef void (*work_fn)(const char *s, size_t n);

static void run_render(const char *s, size_t n)
{
    out_bytes = 0;
    sl_render_markdown(s, n, count_out, NULL);
}

static void run_import(const char *s, size_t n)
{
    sl_specstory_doc_t doc;
    char err[256];
    if (sl_specstory_parse(s, n, &doc, err, sizeof(err)) == 0)
        sl_specstory_free(&doc);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median CPU time of `runs` runs (runs <= 9). A run shorter than MIN_RUN is repeated until
 * the repetitions take MIN_RUN, and their mean is the run's time: a clock read around 1 ms of work
 * says little, and a 64 KB input often takes about that. */
#define MIN_RUN 0.010
static double median_time(work_fn fn, const char *s, size_t n, int runs)
{
    double t[9];
    int reps = 1;
    for (int i = 0; i < runs; i++) {
        double t0 = cpu_now(), dt;
        for (int r = 0; r < reps; r++)
            fn(s, n);
        dt = cpu_now() - t0;
        while (dt < MIN_RUN && reps < 4096) { /* too short to read: repeat it, from scratch */
            reps *= 2;
            t0 = cpu_now();
            for (int r = 0; r < reps; r++)
                fn(s, n);
            dt = cpu_now() - t0;
        }
        t[i] = dt / reps;
    }
    qsort(t, (size_t)runs, sizeof(t[0]), cmp_double);
    return t[runs / 2] < 1e-7 ? 1e-7 : t[runs / 2];
}

typedef struct fam {
    const char *name, *head, *unit;
} fam_t;

/* Measures one family; returns 1 when it broke a bound (every family is measured before failing). */
static int check_family(work_fn fn, const fam_t *f, int check_output)
{
    int bad = 0;
    char *small = family(f->head, f->unit, SMALL), *large = family(f->head, f->unit, LARGE);
    double ts = median_time(fn, small, SMALL, 7);
    double tl = median_time(fn, large, LARGE, 5);
    double ratio = tl / ts;
    print_message("%-28s 64 KB %8.2f ms   1 MB %8.2f ms   ratio %6.1f", f->name, ts * 1e3, tl * 1e3, ratio);
    if (check_output) {
        fn(large, LARGE);
        print_message("   output %zu bytes (%.1fx)", out_bytes, (double)out_bytes / LARGE);
        if ((double)out_bytes > MAX_OUTPUT_RATIO * LARGE) {
            print_message("   TOO LARGE");
            bad = 1;
        }
    }
    if (ratio > MAX_TIME_RATIO) {
        print_message("   SUPER-LINEAR");
        bad = 1;
    }
    print_message("\n");
    free(small);
    free(large);
    return bad;
}

static const fam_t RENDER_FAMILIES[] = {
    {"unclosed <think>", "", "<think>\n"},
    {"unclosed <details>", "", "<details>\n"},
    {"unclosed <tool-use>", "", "<tool-use data-tool-name=\"x\">\n"},
    {"openers, one closer each", "", "<think>\n<details>\n<tool-use>\n</think>\n"},
    {"nested <details>", "", "<details>\n<summary>s</summary>\n"},
    {"> nesting", "", ">"},
    {"> nesting, spaced", "", "> "},
    {"- list nesting", "", "- "},
    {"1. list nesting", "", "1. "},
    {"[ run", "", "["},
    {"[]( run", "", "[]("},
    {"* run", "", "*"},
    {"_ run", "", "_"},
    {"` run", "", "`"},
    {"** ** alternation", "", "**a "},
    {"<summary> run", "<think>\n", "<summary>"},
    {"long line", "", "abcdefgh "},
    {"table columns", "|a|\n|-|\n", "|x"},
    {"entities", "", "&amp"},
};

static const fam_t IMPORT_FAMILIES[] = {
    {"_**User**_ headers", "", "_**User**_\n"},
    {"user/agent turns", "", "_**User**_\n\nq\n\n---\n\n_**Agent**_\n\na\n\n---\n\n"},
    {"sidechain turns", "_**User**_\n\nq\n\n", "_**User - sidechain (2026-01-01 00:00:00Z)**_\n\nx\n"},
    {"--- separators", "_**User**_\n\n", "---\n\n"},
    {"message-id comments", "_**User**_\n\n---\n", "<!-- message-id: x -->\n"},
    {"blank lines", "_**User**_\n", "\n"},
    {"long line", "_**User**_\n\n", "abcdefgh "},
    {"timestamps", "", "_**User (2026-01-01 00:00:00Z)**_\n"},
};

static void test_render_linear(void **state)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(RENDER_FAMILIES) / sizeof(RENDER_FAMILIES[0]); i++)
        bad += check_family(run_render, &RENDER_FAMILIES[i], 1);
    assert_int_equal(bad, 0);
}

static void test_import_linear(void **state)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(IMPORT_FAMILIES) / sizeof(IMPORT_FAMILIES[0]); i++)
        bad += check_family(run_import, &IMPORT_FAMILIES[i], 0);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_linear),
        cmocka_unit_test(test_import_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
