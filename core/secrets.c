/*
 * Secret scanning: the rules file, compiled into one Hyperscan database (which rules match at
 * all, in one pass over the text) and one PCRE2 program per rule (where, and which group is the
 * secret), and the checks a pattern cannot make. See core/internal/secrets.h and docs/secrets.md.
 *
 * Why two engines: Hyperscan scans every rule at once at memory speed but reports only where a
 * match ends and has no capture groups; PCRE2 (JIT) gives the groups but runs one rule at a time.
 * Hyperscan compiles the patterns in prefilter mode (a match it reports may be a false alarm, a
 * match it misses cannot exist), single-match (the first match of a rule is all the pass needs),
 * and PCRE2 then runs only the rules that fired, over the same text: realistic text fires few.
 *
 * Cost is linear in the text: one Hyperscan pass, then per fired rule one left-to-right PCRE2
 * walk that resumes after each hit (a PEM block's hit resumes after the block it extended to).
 */
#define _GNU_SOURCE /* memmem */
#include <assert.h>
#include <ctype.h>
#include <hs/hs.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/internal/secrets.h"

enum {
    CHECK_ENTROPY = 1u << 0,
    CHECK_PLACEHOLDER = 1u << 1,
    CHECK_JWT = 1u << 2,
    CHECK_PEM = 1u << 3,
};

#define MAX_RULES 1024
#define MAX_GROUP 15

typedef struct rule {
    char *id, *kind, *pattern;
    unsigned group, checks;
    double entropy;
    pcre2_code *re;
} rule_t;

struct sl_secret_rules {
    rule_t *rules;
    unsigned n;
    hs_database_t *db;
    unsigned char version[16];
};

/* ---- per-thread scratch: Hyperscan's and PCRE2's match data, freed when the thread ends ---- */

typedef struct scratch {
    hs_scratch_t *hs;
    const hs_database_t *db; /* the database HS was last grown for */
    pcre2_match_data *md;
    pcre2_match_context *mc; /* the match limit */
} scratch_t;

/* PCRE2 steps one match attempt may take. A rule that needs more on some text (a pattern that
 * backtracks) does not fail the change: the rest of the field from where it was looking is redacted
 * under that rule's kind (fail closed), and the walk stops. */
#define MATCH_LIMIT 200000

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    scratch_t *s = p;
    if (s->hs)
        hs_free_scratch(s->hs);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mc);
    free(s);
}

static void scratch_key_make(void)
{
    (void)pthread_key_create(&scratch_key, scratch_free);
}

static scratch_t *scratch_get(const hs_database_t *db)
{
    (void)pthread_once(&scratch_once, scratch_key_make);
    scratch_t *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return NULL;
        if (!(s->md = pcre2_match_data_create(MAX_GROUP + 1, NULL)) ||
            !(s->mc = pcre2_match_context_create(NULL)) || pcre2_set_match_limit(s->mc, MATCH_LIMIT) ||
            pthread_setspecific(scratch_key, s)) {
            scratch_free(s);
            return NULL;
        }
    }
    if (s->db != db) { /* grows the scratch to fit DB as well as those it already fits */
        if (hs_alloc_scratch(db, &s->hs) != HS_SUCCESS)
            return NULL;
        s->db = db;
    }
    return s;
}

/* ---- the file ---- */

/* splits LINE (NUL-terminated, modified) at tabs into at most MAX fields */
static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    return n;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return 0;
    return 1;
}

static int parse_checks(char *s, rule_t *r)
{
    if (!strcmp(s, "-"))
        return 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (!strncmp(tok, "entropy=", 8)) {
            char *end;
            r->entropy = strtod(tok + 8, &end);
            if (*end || r->entropy <= 0 || r->entropy > 8)
                return -1;
            r->checks |= CHECK_ENTROPY;
        } else if (!strcmp(tok, "placeholder"))
            r->checks |= CHECK_PLACEHOLDER;
        else if (!strcmp(tok, "jwt"))
            r->checks |= CHECK_JWT;
        else if (!strcmp(tok, "pem"))
            r->checks |= CHECK_PEM;
        else
            return -1;
    }
    return 0;
}

void sl_secrets_free(sl_secret_rules_t *rs)
{
    if (!rs)
        return;
    for (unsigned i = 0; i < rs->n; i++) {
        free(rs->rules[i].id);
        free(rs->rules[i].kind);
        free(rs->rules[i].pattern);
        pcre2_code_free(rs->rules[i].re);
    }
    free(rs->rules);
    hs_free_database(rs->db);
    free(rs);
}

static int compile_pcre(rule_t *r, unsigned lineno, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (!r->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        snprintf(err, errlen, "secret rules line %u (%s): PCRE2: %s at offset %zu", lineno, r->id,
                 (char *)msg, (size_t)off);
        return -1;
    }
    uint32_t groups = 0;
    pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (r->group > groups || r->group > MAX_GROUP) {
        snprintf(err, errlen, "secret rules line %u (%s): group %u but the pattern has %u", lineno, r->id,
                 r->group, groups);
        return -1;
    }
    (void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is missing */
    return 0;
}

sl_secret_rules_t *sl_secrets_compile(const char *text, size_t len, char *err, size_t errlen)
{
    sl_secret_rules_t *rs = calloc(1, sizeof(*rs));
    char *copy = malloc(len + 1);
    unsigned *lines = NULL;
    if (!rs || !copy || !(rs->rules = calloc(MAX_RULES, sizeof(rule_t))) ||
        !(lines = calloc(MAX_RULES, sizeof(*lines)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    unsigned lineno = 0;
    for (char *line = copy, *next; line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (*line == '#' || *line == '\0' || strncmp(line, "rule\t", 5))
            continue; /* comments, blanks and test records */
        char *f[6];
        if (split_tabs(line, f, 6) != 6 || !valid_name(f[1]) || !valid_name(f[2]) || !*f[5]) {
            snprintf(err, errlen,
                     "secret rules line %u: want rule<TAB>id<TAB>kind<TAB>group<TAB>checks<TAB>pattern",
                     lineno);
            goto fail;
        }
        if (rs->n == MAX_RULES) {
            snprintf(err, errlen, "secret rules line %u: more than %d rules", lineno, MAX_RULES);
            goto fail;
        }
        for (unsigned i = 0; i < rs->n; i++)
            if (!strcmp(rs->rules[i].id, f[1])) {
                snprintf(err, errlen, "secret rules line %u: rule id %s is used twice", lineno, f[1]);
                goto fail;
            }
        rule_t *r = &rs->rules[rs->n];
        char *end;
        r->group = (unsigned)strtoul(f[3], &end, 10);
        if (*end || end == f[3] || !(r->id = strdup(f[1])) || !(r->kind = strdup(f[2])) ||
            !(r->pattern = strdup(f[5])) || parse_checks(f[4], r)) {
            snprintf(err, errlen, "secret rules line %u: bad group or checks", lineno);
            rs->n++;
            goto fail;
        }
        lines[rs->n++] = lineno;
        if (compile_pcre(r, lineno, err, errlen))
            goto fail;
    }
    if (!rs->n) {
        snprintf(err, errlen, "secret rules: no rule");
        goto fail;
    }
    const char **pats = calloc(rs->n, sizeof(*pats));
    unsigned *flags = calloc(rs->n, sizeof(*flags)), *ids = calloc(rs->n, sizeof(*ids));
    if (!pats || !flags || !ids) {
        free(pats), free(flags), free(ids);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < rs->n; i++) {
        pats[i] = rs->rules[i].pattern;
        flags[i] = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH;
        ids[i] = i;
    }
    hs_compile_error_t *ce = NULL;
    hs_error_t he = hs_compile_multi(pats, flags, ids, rs->n, HS_MODE_BLOCK, NULL, &rs->db, &ce);
    free(pats), free(flags), free(ids);
    if (he != HS_SUCCESS) {
        int at = ce ? ce->expression : -1;
        snprintf(err, errlen, "secret rules%s%s: Hyperscan: %s", at >= 0 ? " rule " : "",
                 at >= 0 ? rs->rules[at].id : "", ce ? ce->message : "compile failed");
        hs_free_compile_error(ce);
        goto fail;
    }
    unsigned char md[32];
    unsigned mdlen = 0;
    if (!EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL)) {
        snprintf(err, errlen, "sha-256 failed");
        goto fail;
    }
    memcpy(rs->version, md, sizeof(rs->version));
    free(copy);
    free(lines);
    return rs;
fail:
    free(copy);
    free(lines);
    sl_secrets_free(rs);
    return NULL;
}

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static sl_secret_rules_t *builtin;
static char builtin_err[256];

static void builtin_make(void)
{
    builtin = sl_secrets_compile(sl_secret_rules_text, sl_secret_rules_len, builtin_err, sizeof(builtin_err));
}

const sl_secret_rules_t *sl_secrets_builtin(char *err, size_t errlen)
{
    (void)pthread_once(&builtin_once, builtin_make);
    if (!builtin && err)
        snprintf(err, errlen, "%s", builtin_err);
    return builtin;
}

const unsigned char *sl_secrets_version(const sl_secret_rules_t *rs)
{
    return rs->version;
}

unsigned sl_secrets_rule_count(const sl_secret_rules_t *rs)
{
    return rs->n;
}

const char *sl_secrets_rule_id(const sl_secret_rules_t *rs, unsigned rule)
{
    return rule < rs->n ? rs->rules[rule].id : "?";
}

const char *sl_secrets_rule_kind(const sl_secret_rules_t *rs, unsigned rule)
{
    return rule < rs->n ? rs->rules[rule].kind : "secret";
}

/* ---- checks ---- */

static double entropy(const char *s, size_t len)
{
    if (!len)
        return 0;
    unsigned counts[256] = {0};
    for (size_t i = 0; i < len; i++)
        counts[(unsigned char)s[i]]++;
    double h = 0;
    for (int c = 0; c < 256; c++)
        if (counts[c]) {
            double p = (double)counts[c] / (double)len;
            h -= p * log2(p);
        }
    return h;
}

static int contains_ci(const char *s, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= len; i++)
        if (!strncasecmp(s + i, word, wl))
            return 1;
    return 0;
}

/* the rule's bits per byte, or less for a value of 12 bytes or more: N bytes hold at most log2(N) bits
 * per byte, and a random 14-character password often has only 3.1 (docs/secrets.md, "The engine").
 * Shorter values keep the rule's figure: that is what tells "postgres" or "argon2id" from a secret */
static double entropy_needed(double rule, size_t len)
{
    if (len < 12)
        return rule;
    double cap = log2((double)len) - 0.75;
    return cap < rule ? cap : rule;
}

/* 8 bytes or more with lower-case and upper-case letters, digits and punctuation, three of the four:
 * made to be a credential ("66NzFm6yA", "Summer2024!"), whatever its entropy; words, paths, hex and
 * identifiers ("argon2id", "postgres", "MyServiceName") have fewer */
static int mixed_classes(const char *s, size_t len)
{
    int lower = 0, upper = 0, digit = 0, punct = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        lower |= c >= 'a' && c <= 'z';
        upper |= c >= 'A' && c <= 'Z';
        digit |= c >= '0' && c <= '9';
        punct |= c > ' ' && c < 0x7f && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
                 !(c >= '0' && c <= '9');
    }
    return len >= 8 && lower + upper + digit + punct >= 3;
}

static int is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* WORD (lower case) at S[0, wl) written as a person writes it: all lower, all upper or capitalized;
 * a random value mixes case by chance ("KYoUrUwe"), a placeholder does not */
static int word_at(const char *s, const char *word, size_t wl)
{
    int lower = 1, upper = 1, capital = s[0] == word[0] - 'a' + 'A';
    for (size_t i = 0; i < wl; i++) {
        char c = s[i], w = word[i];
        if (w >= 'a' && w <= 'z') {
            lower &= c == w;
            upper &= c == w - 'a' + 'A';
            capital &= i == 0 || c == w;
        } else if (c != w)
            return 0;
    }
    return lower || upper || capital;
}

/* a value that stands for a secret rather than being one: "your-api-key", "${TOKEN}", "xxxxxxxx",
 * AKIAIOSFODNN7EXAMPLE. Every test here is one that a random value in a provider's format passes
 * only by rare chance (docs/secrets.md gives the odds): a long word in one case anywhere (7+
 * letters: about 1e-11 per 36-character token), a short word in one case standing alone between
 * separators or the value's ends ("your_api_key", "xoxb-your-token"), a run of 8 equal characters,
 * characters no token format has. */
static int placeholder(const char *s, size_t len)
{
    static const char *const long_words[] = {"example", "changeme", "redacted", "placeholder"};
    static const char *const short_words[] = {"your", "dummy", "sample", "xxxx"};
    static const char *const marks[] = {"****", "${", "{{", "%(", "<", ">", "...."};
    if (len < 8 || s[0] == '$')
        return 1;
    size_t run = 1;
    for (size_t i = 1; i < len; i++) {
        run = s[i] == s[i - 1] ? run + 1 : 1;
        if (run >= 8)
            return 1;
    }
    for (size_t w = 0; w < sizeof(marks) / sizeof(*marks); w++) {
        size_t ml = strlen(marks[w]);
        for (size_t i = 0; i + ml <= len; i++)
            if (!memcmp(s + i, marks[w], ml))
                return 1;
    }
    for (size_t w = 0; w < sizeof(long_words) / sizeof(*long_words); w++) {
        size_t wl = strlen(long_words[w]);
        for (size_t i = 0; i + wl <= len; i++)
            if (word_at(s + i, long_words[w], wl))
                return 1;
    }
    for (size_t w = 0; w < sizeof(short_words) / sizeof(*short_words); w++) {
        size_t wl = strlen(short_words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (!word_at(s + i, short_words[w], wl))
                continue;
            if ((i == 0 || !is_alnum(s[i - 1])) && (i + wl == len || !is_alnum(s[i + wl])))
                return 1;
        }
    }
    return 0;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

/* a JWT: header.payload.signature, the header base64url of a JSON object naming "alg" */
static int jwt_ok(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    if (!dot || !memchr(dot + 1, '.', len - (size_t)(dot + 1 - s)))
        return 0;
    size_t hl = (size_t)(dot - s);
    if (hl > 1024)
        hl = 1024;
    char out[800];
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < hl; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            break;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    return o > 0 && out[0] == '{' && contains_ci(out, o, "\"alg\"");
}

/* the end of the PEM block that begins at TEXT+AT: after the "-----" closing its END line, or the
 * end of the text when the block is cut off (redacted to the end: a key is never half shown) */
static size_t pem_end(const char *text, size_t len, size_t at)
{
    const char *e = memmem(text + at, len - at, "-----END ", 9);
    if (!e)
        return len;
    size_t from = (size_t)(e - text) + 9;
    const char *close = memmem(text + from, len - from, "-----", 5);
    return close ? (size_t)(close - text) + 5 : len;
}

/* ---- the scan ---- */

typedef struct hits {
    sl_secret_hit_t *v;
    size_t n, cap;
    int failed;
} hits_t;

static void hits_add(hits_t *h, size_t start, size_t end, unsigned rule)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        sl_secret_hit_t *v = realloc(h->v, cap * sizeof(*v));
        if (!v) {
            h->failed = 1;
            return;
        }
        h->v = v, h->cap = cap;
    }
    h->v[h->n++] = (sl_secret_hit_t){start, end, rule};
}

/* runs rule R over TEXT with PCRE2 from left to right, adding each hit that passes its checks */
static int run_rule(const sl_secret_rules_t *rs, unsigned ri, const scratch_t *s, const char *text,
                    size_t len, hits_t *h)
{
    const rule_t *r = &rs->rules[ri];
    pcre2_match_data *md = s->md;
    size_t at = 0;
    while (at <= len) {
        int rc = pcre2_match(r->re, (PCRE2_SPTR)text, len, at, 0, md, s->mc);
        if (rc == PCRE2_ERROR_NOMATCH)
            return 0;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
            rc == PCRE2_ERROR_JIT_STACKLIMIT) {
            hits_add(h, at, len, ri); /* fail closed, and bounded */
            return 0;
        }
        if (rc < 0)
            return -1; /* memory: fail the scan rather than miss a secret */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t mstart = ov[0], mend = ov[1];
        size_t gs = ov[2 * r->group], ge = ov[2 * r->group + 1];
        size_t next = mend > mstart ? mend : mstart + 1;
        if (gs != PCRE2_UNSET && ge > gs) {
            const char *v = text + gs;
            size_t vl = ge - gs;
            int ok = 1;
            if ((r->checks & CHECK_ENTROPY) && !mixed_classes(v, vl) &&
                entropy(v, vl) < entropy_needed(r->entropy, vl))
                ok = 0;
            if (ok && (r->checks & CHECK_PLACEHOLDER) && placeholder(v, vl))
                ok = 0;
            if (ok && (r->checks & CHECK_JWT) && !jwt_ok(v, vl))
                ok = 0;
            if (ok && (r->checks & CHECK_PEM)) {
                ge = pem_end(text, len, ge);
                if (ge > next)
                    next = ge;
            }
            if (ok)
                hits_add(h, gs, ge, ri);
        }
        at = next;
    }
    return 0;
}

static int on_hs_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                       void *ctx)
{
    ((unsigned char *)ctx)[id] = 1;
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    const sl_secret_hit_t *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

int sl_secrets_scan(const sl_secret_rules_t *rs, const char *text, size_t len, sl_secret_hit_t **out,
                    size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!len)
        return 0;
    scratch_t *s = scratch_get(rs->db);
    unsigned char fired[MAX_RULES] = {0};
    if (!s || hs_scan(rs->db, text, (unsigned)len, 0, s->hs, on_hs_match, fired) != HS_SUCCESS)
        return -1;
    hits_t h = {0};
    for (unsigned i = 0; i < rs->n; i++)
        if (fired[i] && run_rule(rs, i, s, text, len, &h))
            h.failed = 1;
    if (h.failed) {
        free(h.v);
        return -1;
    }
    if (h.n > 1) { /* overlapping hits become one: the union, named by the rule listed first */
        qsort(h.v, h.n, sizeof(*h.v), hit_cmp);
        size_t w = 0;
        for (size_t i = 1; i < h.n; i++) {
            if (h.v[i].start < h.v[w].end) {
                if (h.v[i].end > h.v[w].end)
                    h.v[w].end = h.v[i].end;
                if (h.v[i].rule < h.v[w].rule)
                    h.v[w].rule = h.v[i].rule;
            } else
                h.v[++w] = h.v[i];
        }
        h.n = w + 1;
    }
    *out = h.v;
    *n = h.n;
    return 0;
}

void sl_secrets_preview(const char *s, size_t len, char *out, size_t outlen)
{
    size_t k = len / 6 < 4 ? len / 6 : 4;
    char head[5], tail[5];
    for (size_t i = 0; i < k; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)s[len - k + i];
        head[i] = (a > 32 && a < 127) ? (char)a : '*';
        tail[i] = (b > 32 && b < 127) ? (char)b : '*';
    }
    head[k] = tail[k] = '\0';
    snprintf(out, outlen, "%s\u2026%s", head, tail);
}

/* ---- the file's own tests ---- */

/* "\n", "\t" and "\\" in a test record's fields; returns the new length */
static size_t unescape(char *s)
{
    char *w = s;
    for (char *p = s; *p; p++) {
        if (*p == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
            p++;
            *w++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : '\\';
        } else
            *w++ = *p;
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void fail_line(void (*report)(const char *, void *), void *data, unsigned lineno, const char *what,
                      const char *rule)
{
    if (!report)
        return;
    char line[256];
    snprintf(line, sizeof(line), "secret rules line %u (%s): %s", lineno, rule, what);
    report(line, data);
}

int sl_secrets_self_test(const sl_secret_rules_t *rs, const char *text, size_t len,
                         void (*report)(const char *line, void *data), void *data)
{
    char *copy = malloc(len + 1);
    scratch_t *s = scratch_get(rs->db);
    if (!copy || !s) {
        free(copy);
        fail_line(report, data, 0, "out of memory", "-");
        return 1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    int failed = 0;
    unsigned lineno = 0;
    for (char *line = copy, *next; line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "test\t", 5))
            continue;
        char *f[5];
        int nf = split_tabs(line, f, 5);
        unsigned ri = rs->n;
        for (unsigned i = 0; nf >= 4 && i < rs->n; i++)
            if (!strcmp(rs->rules[i].id, f[1]))
                ri = i;
        int positive = nf == 5 && !strcmp(f[2], "+"), negative = nf == 4 && !strcmp(f[2], "-");
        if (ri == rs->n || (!positive && !negative)) {
            fail_line(report, data, lineno, "malformed test record or unknown rule", nf > 1 ? f[1] : "-");
            failed++;
            continue;
        }
        size_t tl = unescape(f[3]);
        hits_t h = {0};
        if (run_rule(rs, ri, s, f[3], tl, &h) || h.failed) {
            fail_line(report, data, lineno, "the rule failed to run", f[1]);
            failed++;
            free(h.v);
            continue;
        }
        if (negative && h.n) {
            fail_line(report, data, lineno, "found a secret where there is none", f[1]);
            failed++;
        }
        if (positive) {
            size_t sl = unescape(f[4]);
            const char *want = memmem(f[3], tl, f[4], sl);
            int exact = 0;
            for (size_t i = 0; want && i < h.n; i++)
                exact |= h.v[i].start == (size_t)(want - f[3]) && h.v[i].end - h.v[i].start == sl;
            /* and the whole scan (the Hyperscan prefilter first) covers it */
            sl_secret_hit_t *all = NULL;
            size_t na = 0, covered = 0;
            if (want && !sl_secrets_scan(rs, f[3], tl, &all, &na))
                for (size_t i = 0; i < na; i++)
                    covered |=
                        all[i].start <= (size_t)(want - f[3]) && all[i].end >= (size_t)(want - f[3]) + sl;
            free(all);
            if (!exact || !covered) {
                fail_line(report, data, lineno,
                          !want    ? "the secret is not in the text"
                          : !exact ? "the rule does not find exactly the secret"
                                   : "the scan (prefilter) misses it",
                          f[1]);
                failed++;
            }
        }
        free(h.v);
    }
    free(copy);
    return failed;
}
