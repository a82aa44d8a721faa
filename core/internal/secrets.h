/*
 * Internal to core/: secret scanning (secrets.c, docs/secrets.md).
 *
 * The rules are data (core/secret_rules.txt, built into the binary): each has an id, the kind
 * label a redaction shows ("[redacted: <kind>]"), a pattern, the group of the pattern that is the
 * secret, and checks a pattern alone cannot make (entropy, placeholders, a JWT's header, a PEM
 * block's end). All patterns go into one Hyperscan database scanned once over a text (the
 * prefilter: which rules match at all); only rules that fired are run with PCRE2 to find their
 * spans and groups. A text without a candidate costs one Hyperscan pass.
 *
 * Hits of several rules that overlap become one hit spanning them all, with the kind of the rule
 * listed first in the file (specific rules come before generic ones).
 */
#ifndef SL_CORE_INTERNAL_SECRETS_H
#define SL_CORE_INTERNAL_SECRETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_secret_rules sl_secret_rules_t;

typedef struct sl_secret_hit {
    size_t start, end; /* the secret's bytes: text[start, end) */
    unsigned rule;     /* index of the rule (sl_secrets_rule_*) that names its kind */
} sl_secret_hit_t;

/* Compiles RULES (the file's text, LEN bytes). On error returns NULL and writes a message naming
 * the line into ERR. The rules are immutable afterwards and may be shared by threads. */
sl_secret_rules_t *sl_secrets_compile(const char *rules, size_t len, char *err, size_t errlen);
void sl_secrets_free(sl_secret_rules_t *rules);

/* The rules built into the binary, compiled on first use (thread-safe); NULL (and ERR) only if
 * that file does not compile, which its unit test prevents. */
const sl_secret_rules_t *sl_secrets_builtin(char *err, size_t errlen);

/* 16 bytes that change whenever the rules change (SHA-256 of the file, cut): what a stored scan
 * is checked against, so that new rules rescan. */
const unsigned char *sl_secrets_version(const sl_secret_rules_t *rules);

unsigned sl_secrets_rule_count(const sl_secret_rules_t *rules);
const char *sl_secrets_rule_id(const sl_secret_rules_t *rules, unsigned rule);
const char *sl_secrets_rule_kind(const sl_secret_rules_t *rules, unsigned rule);

/* Scans TEXT[0, LEN) and fills *HITS (malloc'd, caller frees; sorted by start, not overlapping)
 * and *N. Uses per-thread scratch. Returns 0, or -1 on an allocation or engine failure (then
 * nothing may be published: the caller fails the change). */
int sl_secrets_scan(const sl_secret_rules_t *rules, const char *text, size_t len, sl_secret_hit_t **hits,
                    size_t *n);

/* The rules file's self tests ("test" records): runs each, writes a line per failure to REPORT
 * (may be NULL) and returns the number that failed. */
int sl_secrets_self_test(const sl_secret_rules_t *rules, const char *text, size_t len,
                         void (*report)(const char *line, void *data), void *data);

/* A masked preview of a secret for its owner: the first 4 and last 4 bytes around an ellipsis
 * ("AKIA…Q7XZ"), or fewer for a short secret, never more than a third of it. OUT holds >= 32. */
void sl_secrets_preview(const char *secret, size_t len, char *out, size_t outlen);

/* The built-in rules file and its length (generated from core/secret_rules.txt). */
extern const char sl_secret_rules_text[];
extern const size_t sl_secret_rules_len;

#endif
