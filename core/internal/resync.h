/*
 * Internal to core/: which stored exchange an uploaded one is, on a re-sync (resync.c), and which
 * uploaded exchanges arrive hidden. Pure logic (no I/O), unit-tested in tests/core/test_resync.c;
 * the rule is written down in docs/specstory.md ("Re-sync: which exchange is which").
 */
#ifndef SL_CORE_INTERNAL_RESYNC_H
#define SL_CORE_INTERNAL_RESYNC_H

#include <stddef.h>
#include <stdint.h>

/* A stored exchange of the session, as the re-sync sees it. */
typedef struct sl_stored {
    int64_t id;
    uint32_t position;
    unsigned char psha[32]; /* SHA-256 of the prompt (kept when the text is wiped) */
    unsigned char rsha[32]; /* SHA-256 of the response, when has_rsha */
    int has_rsha;
    int deleted; /* deleted by the owner (text wiped): stays deleted */
    int by_sync; /* removed by an earlier sync (text kept): comes back when uploaded again */
    int hidden;
    char created[21]; /* "YYYY-MM-DDTHH:MM:SSZ", or "" */
} sl_stored_t;

/* An uploaded exchange. */
typedef struct sl_uploaded {
    unsigned char psha[32], rsha[32];
    size_t prompt_len;   /* after trimming white space (short prompts do not carry a hide) */
    const char *created; /* "YYYY-MM-DDTHH:MM:SSZ" of its user turn, or NULL */
} sl_uploaded_t;

/* What to do with uploaded exchange i. */
typedef struct sl_resync_step {
    long row;   /* the stored exchange it is (index into the stored array), or -1: a new one */
    int skip;   /* it is an exchange the owner deleted: it stays deleted, nothing is written */
    int hidden; /* its hidden flag after the sync */
} sl_resync_step_t;

/* Prompts shorter than this (trimmed) are "yes", "continue", "go on": hiding one exchange with such
 * a prompt does not hide every later exchange that says the same. */
#define SL_RESYNC_SHORT_PROMPT 32

/* Fills steps[0..nup) and removed[0..nstored): removed[k] = 1 when stored row k is live and no
 * uploaded exchange is it (the sync removes it, keeping its text). Linear in nstored + nup.
 * Returns 0, or -1 when out of memory. */
int sl_resync_plan(const sl_stored_t *stored, size_t nstored, const sl_uploaded_t *up, size_t nup,
                   sl_resync_step_t *steps, unsigned char *removed);

#endif
