/* Secret scanning engine (core/secrets.c): the built-in rules compile and pass their own tests,
 * hits merge, PEM blocks are taken whole, checks reject placeholders and low entropy, the rules
 * file's errors name their line, and the cost stays linear on adversarial input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/internal/secrets.h"

static void print_line(const char *line, void *data)
{
    (*(int *)data)++;
    fprintf(stderr, "%s\n", line);
}

static void test_builtin_rules(void **state)
{
    char err[256] = "";
    const sl_secret_rules_t *rs = sl_secrets_builtin(err, sizeof(err));
    if (!rs)
        fprintf(stderr, "%s\n", err);
    assert_non_null(rs);
    assert_true(sl_secrets_rule_count(rs) >= 30);
    int lines = 0;
    assert_int_equal(sl_secrets_self_test(rs, sl_secret_rules_text, sl_secret_rules_len, print_line, &lines),
                     0);
    assert_int_equal(lines, 0);
    /* every rule has at least two positive and two negative tests */
    for (unsigned r = 0; r < sl_secrets_rule_count(rs); r++) {
        const char *id = sl_secrets_rule_id(rs, r);
        int pos = 0, neg = 0;
        char want[160];
        size_t wl = (size_t)snprintf(want, sizeof(want), "\ntest\t%s\t", id);
        for (const char *p = sl_secret_rules_text; (p = strstr(p, want)); p += wl) {
            pos += p[wl] == '+';
            neg += p[wl] == '-';
        }
        if (pos < 2 || neg < 2)
            fprintf(stderr, "rule %s: %d positive, %d negative tests\n", id, pos, neg);
        assert_true(pos >= 2 && neg >= 2);
    }
}

static const char RULES[] =
    "# a small set for the engine's own behaviour\n"
    "rule\tkey\ttest-key\t1\t-\t\\b(TK[0-9A-F]{16})\\b\n"
    "rule\tpw\tpassword\t1\tentropy=3.0,placeholder\t(?i)password\\s*[:=]\\s*([^\\s\"']{8,64})\n"
    "rule\tpem\tprivate-key\t0\tpem\t-----BEGIN (?:RSA |EC )?PRIVATE KEY-----\n"
    "rule\tjwt\tjwt\t0\tjwt\t\\beyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\n"
    "rule\tgeneric\tsecret\t1\t-\tsecret=(\\S{4,40})\n"
    "test\tkey\t+\tthe key TK0123456789ABCDEF is here\tTK0123456789ABCDEF\n"
    "test\tkey\t-\tTK0123\n";

static sl_secret_rules_t *small_rules(void)
{
    char err[256] = "";
    sl_secret_rules_t *rs = sl_secrets_compile(RULES, sizeof(RULES) - 1, err, sizeof(err));
    if (!rs)
        fprintf(stderr, "%s\n", err);
    assert_non_null(rs);
    return rs;
}

static void scan(const sl_secret_rules_t *rs, const char *text, sl_secret_hit_t **hits, size_t *n)
{
    assert_int_equal(sl_secrets_scan(rs, text, strlen(text), hits, n), 0);
}

static void test_spans_and_kinds(void **state)
{
    sl_secret_rules_t *rs = small_rules();
    sl_secret_hit_t *h;
    size_t n;
    const char *t = "x TK0123456789ABCDEF y password = hunter2-Zq9#kLm z";
    scan(rs, t, &h, &n);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].start, 2);
    assert_int_equal(h[0].end, 20);
    assert_string_equal(sl_secrets_rule_kind(rs, h[0].rule), "test-key");
    assert_memory_equal(t + h[1].start, "hunter2-Zq9#kLm", 15);
    assert_int_equal(h[1].end - h[1].start, 15);
    assert_string_equal(sl_secrets_rule_kind(rs, h[1].rule), "password");
    free(h);

    /* placeholder and low-entropy values are not findings */
    scan(rs, "password = your-password-here; password: aaaaaaaaaaaa; password=${DB_PASSWORD}", &h, &n);
    assert_int_equal(n, 0);
    free(h);

    /* overlapping hits become one, named by the rule listed first */
    t = "secret=TK0123456789ABCDEF!!";
    scan(rs, t, &h, &n);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].start, 7);
    assert_int_equal(h[0].end, strlen(t));
    assert_string_equal(sl_secrets_rule_kind(rs, h[0].rule), "test-key");
    free(h);

    /* nothing to find: no hit, no allocation */
    scan(rs, "just prose about keys and passwords", &h, &n);
    assert_int_equal(n, 0);
    assert_null(h);
    sl_secrets_free(rs);
}

static void test_pem_whole(void **state)
{
    sl_secret_rules_t *rs = small_rules();
    sl_secret_hit_t *h;
    size_t n;
    const char *t = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE "
                    "KEY-----\nafter";
    scan(rs, t, &h, &n);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].start, 7);
    assert_int_equal(h[0].end, strstr(t, "\nafter") - t);
    free(h);
    /* inside a JSON string with \n escapes */
    t = "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEv\\n-----END PRIVATE KEY-----\\n\", \"x\": 1}";
    scan(rs, t, &h, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(t + h[0].end - 5, "-----", 5);
    assert_int_equal(strncmp(t + h[0].end, "\\n\"", 3), 0);
    free(h);
    /* cut off: redacted to the end of the text */
    t = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI";
    scan(rs, t, &h, &n);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].end, strlen(t));
    free(h);
    sl_secrets_free(rs);
}

static void test_jwt_check(void **state)
{
    sl_secret_rules_t *rs = small_rules();
    sl_secret_hit_t *h;
    size_t n;
    /* {"alg":"HS256","typ":"JWT"} */
    const char *jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
                      "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    scan(rs, jwt, &h, &n);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].end - h[0].start, strlen(jwt));
    free(h);
    /* the same shape whose header is not a JSON object with "alg" */
    scan(rs, "eyJub3RoaW5nIGhlcmU.abcdefghij.klmnopqrst", &h, &n);
    assert_int_equal(n, 0);
    free(h);
    sl_secrets_free(rs);
}

static void test_rules_file_errors(void **state)
{
    char err[256];
    static const char *const bad[] = {
        "rule\tx\tkind\t1\t-\n",                            /* no pattern */
        "rule\tx\tkind\t1\tfrobnicate\t(a+)\n",             /* unknown check */
        "rule\tx\tkind\t2\t-\t(a+)\n",                      /* no group 2 */
        "rule\tx\tkind\t1\t-\t(a+\n",                       /* PCRE2 error */
        "rule\tx\tkind\t1\t-\t(a*)\n",                      /* matches the empty text: Hyperscan refuses */
        "rule\tx\tkind\t0\t-\ta\nrule\tx\tkind\t0\t-\tb\n", /* an id twice */
        "rule\tX Y\tkind\t0\t-\ta\n",                       /* bad id */
        "# only comments\n",                                /* no rule */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        sl_secret_rules_t *rs = sl_secrets_compile(bad[i], strlen(bad[i]), err, sizeof(err));
        if (rs)
            fprintf(stderr, "accepted: %s", bad[i]);
        assert_null(rs);
        assert_true(strlen(err) > 10);
    }
    /* a failing self test is reported with its line */
    const char rules[] =
        "rule\tk\tkind\t0\t-\tK[0-9]{4}\ntest\tk\t+\tno key here\tK1234\ntest\tk\t-\tK9999\n";
    sl_secret_rules_t *rs = sl_secrets_compile(rules, sizeof(rules) - 1, err, sizeof(err));
    assert_non_null(rs);
    int lines = 0;
    assert_int_equal(sl_secrets_self_test(rs, rules, sizeof(rules) - 1, print_line, &lines), 2);
    assert_int_equal(lines, 2);
    sl_secrets_free(rs);
}

/* a rule that backtracks without end on some text: the rest of the field is redacted (fail closed)
 * and the scan ends in bounded time */
static void test_match_limit(void **state)
{
    const char rules[] = "rule\tslow\tslow-kind\t0\t-\t(?:a+)+b\n";
    char err[256];
    sl_secret_rules_t *rs = sl_secrets_compile(rules, sizeof(rules) - 1, err, sizeof(err));
    assert_non_null(rs);
    char text[64] = "ab";
    memset(text + 2, 'a', 40);
    text[42] = '!';
    text[43] = 'b'; /* a 'b' further on: PCRE2 cannot rule the attempt out, and backtracks */
    text[44] = '\0';
    sl_secret_hit_t *h;
    size_t n;
    scan(rs, text, &h, &n);
    assert_true(n >= 1);
    assert_int_equal(h[0].start, 0);
    assert_int_equal(h[n - 1].end, 44);
    free(h);
    sl_secrets_free(rs);
}

static void test_preview(void **state)
{
    char out[64];
    sl_secrets_preview("AKIAIOSFODNN7ZZZQ7XZ", 20, out, sizeof(out));
    assert_string_equal(out, "AKI\u20267XZ"); /* 20 bytes: 3 either side, never more than a third */
    sl_secrets_preview("ghp_0123456789abcdefghijklmnopqrstuvwxyz", 40, out, sizeof(out));
    assert_string_equal(out, "ghp_\u2026wxyz");
    sl_secrets_preview("short", 5, out, sizeof(out));
    assert_string_equal(out, "\u2026");
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* adversarial families at 64 KB and 1 MB: the time ratio stays near 16 (linear), never 256 */
static void test_linear_cost(void **state)
{
    char err[256];
    const sl_secret_rules_t *rs = sl_secrets_builtin(err, sizeof(err));
    assert_non_null(rs);
    static const char *const unit[] = {
        "-----BEGIN RSA PRIVATE KEY-----\n", /* BEGIN lines and no END */
        "password=",                         /* keywords without values */
        "eyJhbGciOi.",                       /* JWT starts */
        "postgres://u:",                     /* URL starts */
        "AKIA",                              /* key prefixes */
        "Authorization: Bearer ",
    };
    for (size_t u = 0; u < sizeof(unit) / sizeof(*unit); u++) {
        double t[2];
        for (int k = 0; k < 2; k++) {
            size_t len = k ? 1 << 20 : 1 << 16, ul = strlen(unit[u]);
            char *text = malloc(len);
            for (size_t i = 0; i < len; i++)
                text[i] = unit[u][i % ul];
            int reps = k ? 3 : 48;
            double t0 = seconds();
            for (int r = 0; r < reps; r++) {
                sl_secret_hit_t *h;
                size_t n;
                assert_int_equal(sl_secrets_scan(rs, text, len, &h, &n), 0);
                free(h);
            }
            t[k] = (seconds() - t0) / reps;
            free(text);
        }
        double ratio = t[1] / t[0];
        fprintf(stderr, "family %zu: 64 KB %.3f ms, 1 MB %.3f ms, ratio %.1f\n", u, t[0] * 1e3, t[1] * 1e3,
                ratio);
        assert_true(ratio < 40);
    }
}

/* random values in a provider's format, with words that mark placeholders ("your", "xxxx",
 * "example", "0000", ...) planted inside them in any case, are still secrets: a GitHub token that
 * happened to hold "YoUr" reached a public page in a fresh-clone CI run. The placeholder check
 * must look like a placeholder (case-consistent words at a separator, long runs), not like chance. */
static void test_random_values_with_words(void **state)
{
    char err[256];
    const sl_secret_rules_t *rs = sl_secrets_builtin(err, sizeof(err));
    assert_non_null(rs);
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    static const struct {
        const char *prefix, *alphabet, *before, *after;
        size_t body;
    } fmt[] = {
        {"ghp_", alnum, "export GITHUB_TOKEN=", "\n", 36},
        {"ghp_", alnum, "use token ", " now", 36},
        {"hf_", letters, "HF_TOKEN=", "\n", 34},
        {"AKIA", b32, "aws_access_key_id = ", "\n", 16},
    };
    static const char *const words[] = {"your",    "YoUr",    "yOUR",     "dummy",    "DuMmY",
                                        "sample",  "SaMPle",  "xxxx",     "XxXx",     "0000",
                                        "ExAmple", "eXAMPLE", "ChangeMe", "rEDACTED", "PlaceHolder"};
    unsigned seed = 20261204;
    int missed = 0, total = 0;
    for (size_t f = 0; f < sizeof(fmt) / sizeof(*fmt); f++)
        for (size_t w = 0; w <= sizeof(words) / sizeof(*words); w++) /* w == count: nothing planted */
            for (int k = 0; k < (w == sizeof(words) / sizeof(*words) ? 2000 : 200); k++) {
                char tok[64], text[160];
                size_t pl = strlen(fmt[f].prefix), al = strlen(fmt[f].alphabet);
                memcpy(tok, fmt[f].prefix, pl);
                for (size_t i = 0; i < fmt[f].body; i++)
                    tok[pl + i] = fmt[f].alphabet[rand_r(&seed) % al];
                tok[pl + fmt[f].body] = 0;
                if (w < sizeof(words) / sizeof(*words)) {
                    size_t wl = strlen(words[w]);
                    if (wl + 2 > fmt[f].body || (fmt[f].alphabet != alnum && strpbrk(words[w], "0123456789")))
                        continue;
                    /* upper-cased into an AWS key id, a long word is a placeholder (AKIAIOSFODNN7EXAMPLE) */
                    if (fmt[f].alphabet == b32 && wl >= 7)
                        continue;
                    /* an interior place: a character of the value on both sides */
                    size_t at = pl + 1 + rand_r(&seed) % (fmt[f].body - wl - 1);
                    for (size_t i = 0; i < wl; i++) {
                        char c = words[w][i];
                        if (fmt[f].alphabet == b32 && c >= 'a' && c <= 'z')
                            c = (char)(c - 'a' + 'A');
                        tok[at + i] = c;
                    }
                }
                snprintf(text, sizeof(text), "%s%s%s", fmt[f].before, tok, fmt[f].after);
                sl_secret_hit_t *h;
                size_t n;
                assert_int_equal(sl_secrets_scan(rs, text, strlen(text), &h, &n), 0);
                size_t start = strlen(fmt[f].before);
                int found = 0;
                for (size_t i = 0; i < n; i++)
                    found |= h[i].start <= start && h[i].end >= start + strlen(tok);
                free(h);
                total++;
                if (!found && missed++ < 10)
                    fprintf(stderr, "missed: %s\n", text);
            }
    fprintf(stderr, "%d of %d random values missed\n", missed, total);
    assert_int_equal(missed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_rules),
        cmocka_unit_test(test_spans_and_kinds),
        cmocka_unit_test(test_pem_whole),
        cmocka_unit_test(test_jwt_check),
        cmocka_unit_test(test_rules_file_errors),
        cmocka_unit_test(test_preview),
        cmocka_unit_test(test_match_limit),
        cmocka_unit_test(test_linear_cost),
        cmocka_unit_test(test_random_values_with_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
