/* The SpecStory importer alone: parses FILE ITER times and prints the median, min and max time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal/specstory.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: import_bench FILE ITERATIONS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *md = malloc((size_t)n);
    if (md == NULL || fread(md, 1, (size_t)n, f) != (size_t)n)
        return 1;
    fclose(f);
    int iters = atoi(argv[2]);
    if (iters < 1 || iters > 100000)
        iters = 100;
    double *t = malloc(sizeof(double) * (size_t)iters);
    size_t exchanges = 0;
    for (int i = 0; i < iters; i++) {
        sl_specstory_doc_t doc;
        char err[256];
        double t0 = now_ms();
        if (sl_specstory_parse(md, (size_t)n, &doc, err, sizeof(err)) != 0) {
            fprintf(stderr, "parse failed: %s\n", err);
            return 1;
        }
        t[i] = now_ms() - t0;
        exchanges = doc.count;
        sl_specstory_free(&doc);
    }
    qsort(t, (size_t)iters, sizeof(double), cmp);
    double med = t[iters / 2];
    printf("bytes=%ld exchanges=%zu iterations=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f MBps=%.1f\n", n,
           exchanges, iters, med, t[0], t[iters - 1], (double)n / 1e6 / (med / 1e3));
    free(t);
    free(md);
    return 0;
}
