/* The built-in secret rules measured on data (docs/secrets.md):
 *
 *   secrets_corpus recall SAMPLES.jsonl [MIN%]  recall per kind of the labelled corpus
 *                                         (tests/secrets/gen_corpus.py): a sample is found when
 *                                         every occurrence of its secret lies inside one finding;
 *                                         exit 1 if a kind is under MIN% (99 when not given)
 *   secrets_corpus clean FILE...          findings in text with nothing planted (precision): each
 *                                         one listed (rule, line, masked), and findings per MB;
 *                                         exit 1 above 1 per MB
 *   secrets_corpus speed SECONDS FILE...  scanning throughput over the files, repeated for about
 *                                         SECONDS (one core): MB/s
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal/secrets.h"

static const sl_secret_rules_t *rules(void)
{
    char err[256];
    const sl_secret_rules_t *rs = sl_secrets_builtin(err, sizeof(err));
    if (!rs) {
        fprintf(stderr, "the built-in rules do not compile: %s\n", err);
        exit(2);
    }
    return rs;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (!b)
        exit(2);
    *len = n;
    return b;
}

typedef struct kind_stat {
    char name[64];
    unsigned samples, found;
} kind_stat_t;

static int recall(const char *path, double min)
{
    const sl_secret_rules_t *rs = rules();
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 2;
    }
    kind_stat_t k[128];
    unsigned nk = 0, total = 0, found_all = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *secret = json_string_value(json_object_get(o, "secret"));
        const char *text = json_string_value(json_object_get(o, "text"));
        if (!o || !kind || !secret || !text || !*secret) {
            fprintf(stderr, "%s: a line is not a sample: %.80s\n", path, line);
            json_decref(o);
            return 2;
        }
        size_t tl = json_string_length(json_object_get(o, "text")), sl = strlen(secret);
        sl_secret_hit_t *h;
        size_t n;
        if (sl_secrets_scan(rs, text, tl, &h, &n) != 0) {
            fprintf(stderr, "the scan failed\n");
            return 2;
        }
        int ok = memmem(text, tl, secret, sl) != NULL;
        for (const char *p = text; ok && (p = memmem(p, tl - (size_t)(p - text), secret, sl)); p++) {
            size_t at = (size_t)(p - text), covered = 0;
            for (size_t i = 0; i < n; i++)
                covered |= h[i].start <= at && h[i].end >= at + sl;
            ok = (int)covered;
        }
        unsigned j = 0;
        while (j < nk && strcmp(k[j].name, kind))
            j++;
        if (j == nk && nk < 128) {
            snprintf(k[nk].name, sizeof(k[nk].name), "%s", kind);
            k[nk].samples = k[nk].found = 0;
            nk++;
        }
        if (j < nk) {
            k[j].samples++;
            k[j].found += ok;
        }
        total++;
        found_all += ok;
        if (!ok)
            printf("MISSED %s (%s): %.60s\n", kind, json_string_value(json_object_get(o, "context")), secret);
        free(h);
        json_decref(o);
    }
    free(line);
    fclose(f);
    int bad = 0;
    printf("| kind | samples | found | recall |\n|---|---|---|---|\n");
    for (unsigned j = 0; j < nk; j++) {
        double r = 100.0 * k[j].found / k[j].samples;
        printf("| %s | %u | %u | %.1f%% |\n", k[j].name, k[j].samples, k[j].found, r);
        bad |= r < min || k[j].samples < 20;
    }
    printf("all: %u of %u (%.2f%%), %u kinds\n", found_all, total, 100.0 * found_all / (total ? total : 1),
           nk);
    return bad;
}

static int clean(int argc, char **argv)
{
    const sl_secret_rules_t *rs = rules();
    size_t bytes = 0, findings = 0;
    for (int a = 0; a < argc; a++) {
        size_t len;
        char *text = slurp(argv[a], &len);
        sl_secret_hit_t *h;
        size_t n;
        if (sl_secrets_scan(rs, text, len, &h, &n) != 0)
            return 2;
        for (size_t i = 0; i < n; i++) {
            size_t line = 1;
            for (size_t p = 0; p < h[i].start; p++)
                line += text[p] == '\n';
            char prev[64];
            sl_secrets_preview(text + h[i].start, h[i].end - h[i].start, prev, sizeof(prev));
            printf("%s:%zu: %s (%s) %s\n", argv[a], line, sl_secrets_rule_id(rs, h[i].rule),
                   sl_secrets_rule_kind(rs, h[i].rule), prev);
        }
        bytes += len;
        findings += n;
        free(h);
        free(text);
    }
    double mb = bytes / 1048576.0, per = mb > 0 ? findings / mb : 0;
    printf("%zu findings in %.2f MB (%d files): %.2f per MB\n", findings, mb, argc, per);
    return per > 1.0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int speed(double seconds, int argc, char **argv)
{
    const sl_secret_rules_t *rs = rules();
    char **texts = calloc((size_t)argc, sizeof(*texts));
    size_t *lens = calloc((size_t)argc, sizeof(*lens)), bytes = 0, scanned = 0;
    for (int a = 0; a < argc; a++) {
        texts[a] = slurp(argv[a], &lens[a]);
        bytes += lens[a];
    }
    /* warm (per-thread scratch, caches), then whole rounds over the files until the time is up */
    for (int a = 0; a < argc; a++) {
        sl_secret_hit_t *h;
        size_t n;
        sl_secrets_scan(rs, texts[a], lens[a], &h, &n);
        free(h);
    }
    double t0 = now(), t;
    unsigned rounds = 0;
    do {
        for (int a = 0; a < argc; a++) {
            sl_secret_hit_t *h;
            size_t n;
            if (sl_secrets_scan(rs, texts[a], lens[a], &h, &n) != 0)
                return 2;
            free(h);
        }
        scanned += bytes;
        rounds++;
    } while ((t = now() - t0) < seconds);
    printf("%.1f MB/s (%u rounds over %.2f MB in %.2f s, %u rules)\n", scanned / 1048576.0 / t, rounds,
           bytes / 1048576.0, t, sl_secrets_rule_count(rs));
    for (int a = 0; a < argc; a++)
        free(texts[a]);
    free(texts);
    free(lens);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "recall"))
        return recall(argv[2], argc >= 4 ? atof(argv[3]) : 99.0);
    if (argc >= 3 && !strcmp(argv[1], "clean"))
        return clean(argc - 2, argv + 2);
    if (argc >= 4 && !strcmp(argv[1], "speed"))
        return speed(atof(argv[2]), argc - 3, argv + 3);
    fprintf(stderr, "usage: secrets_corpus recall SAMPLES.jsonl | clean FILE... | speed SECONDS FILE...\n");
    return 2;
}
