/*
 * Re-sync: which stored exchange an uploaded one is, and which arrive hidden (resync.h; the rule in
 * docs/specstory.md). An uploaded exchange is, in this order of preference, the first stored one not
 * yet taken that has
 *   1. the same prompt and the same response (the same text: nothing can move to other text);
 *   2. the same prompt and the same user-turn timestamp (the same turn, its response grown or
 *      re-generated);
 *   3. the same response and the same user-turn timestamp (the same turn, its prompt re-exported
 *      with a small change);
 *   4. the same prompt at the same position (older formats without timestamps);
 * else it is new. Whatever it matched, a hide follows the text: an uploaded exchange whose response
 * equals the response of any exchange the owner hid, or whose prompt (unless it is short) equals the
 * prompt of one, arrives hidden. Matching uses hash tables: linear in the number of exchanges.
 */
#include <stdlib.h>
#include <string.h>

#include "core/internal/resync.h"

typedef struct mmap {
    size_t cap;
    long *head, *next;
} mmap_t;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t key2(const void *a, size_t an, const void *b, size_t bn)
{
    return fnv(fnv(1469598103934665603ull, a, an), b, bn);
}

static int mm_init(mmap_t *m, size_t n)
{
    m->cap = 16;
    while (m->cap < n * 2)
        m->cap *= 2;
    m->head = malloc(m->cap * sizeof(*m->head));
    m->next = malloc((n ? n : 1) * sizeof(*m->next));
    if (m->head == NULL || m->next == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        m->head[i] = -1;
    return 0;
}

static void mm_free(mmap_t *m)
{
    free(m->head);
    free(m->next);
}

/* Added from the last index to the first, so that each chain runs in ascending order. */
static void mm_add(mmap_t *m, uint64_t k, long idx)
{
    size_t b = (size_t)k & (m->cap - 1);
    m->next[idx] = m->head[b];
    m->head[b] = idx;
}

typedef int (*eq_fn)(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos);

/* The first stored row of k's chain not taken yet for which eq holds. Taken rows at the head of a
 * chain are dropped from it, so that a run of identical exchanges costs no re-walks. */
static long mm_find(mmap_t *m, uint64_t k, const sl_stored_t *st, const unsigned char *taken, eq_fn eq,
                    const sl_uploaded_t *u, size_t pos)
{
    size_t b = (size_t)k & (m->cap - 1);
    while (m->head[b] != -1 && taken[m->head[b]])
        m->head[b] = m->next[m->head[b]];
    for (long i = m->head[b]; i != -1; i = m->next[i])
        if (!taken[i] && eq(&st[i], u, pos))
            return i;
    return -1;
}

static int eq_text(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    (void)pos;
    return s->has_rsha && memcmp(s->psha, u->psha, 32) == 0 && memcmp(s->rsha, u->rsha, 32) == 0;
}

static int eq_turn(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    (void)pos;
    return u->created && s->created[0] && memcmp(s->psha, u->psha, 32) == 0 &&
           strcmp(s->created, u->created) == 0;
}

static int eq_rturn(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    (void)pos;
    return u->created && s->created[0] && s->has_rsha && memcmp(s->rsha, u->rsha, 32) == 0 &&
           strcmp(s->created, u->created) == 0;
}

static int eq_place(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    return s->position == pos && memcmp(s->psha, u->psha, 32) == 0;
}

static int eq_hidden_response(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    (void)pos;
    return s->hidden && s->has_rsha && memcmp(s->rsha, u->rsha, 32) == 0;
}

static int eq_hidden_prompt(const sl_stored_t *s, const sl_uploaded_t *u, size_t pos)
{
    (void)pos;
    return s->hidden && memcmp(s->psha, u->psha, 32) == 0;
}

int sl_resync_plan(const sl_stored_t *st, size_t n, const sl_uploaded_t *up, size_t nup,
                   sl_resync_step_t *steps, unsigned char *removed)
{
    mmap_t text, turn, rturn, place, hresp, hprompt;
    unsigned char *taken = calloc(n ? n : 1, 1), *none = calloc(n ? n : 1, 1);
    int rc = -1;
    memset(&text, 0, sizeof(text));
    memset(&turn, 0, sizeof(turn));
    memset(&rturn, 0, sizeof(rturn));
    memset(&place, 0, sizeof(place));
    memset(&hresp, 0, sizeof(hresp));
    memset(&hprompt, 0, sizeof(hprompt));
    if (taken == NULL || none == NULL || mm_init(&text, n) || mm_init(&turn, n) || mm_init(&rturn, n) ||
        mm_init(&place, n) || mm_init(&hresp, n) || mm_init(&hprompt, n))
        goto out;
    for (size_t j = n; j-- > 0;) {
        const sl_stored_t *s = &st[j];
        if (s->has_rsha)
            mm_add(&text, key2(s->psha, 32, s->rsha, 32), (long)j);
        if (s->created[0])
            mm_add(&turn, key2(s->psha, 32, s->created, strlen(s->created)), (long)j);
        if (s->created[0] && s->has_rsha)
            mm_add(&rturn, key2(s->rsha, 32, s->created, strlen(s->created)), (long)j);
        mm_add(&place, key2(s->psha, 32, &s->position, sizeof(s->position)), (long)j);
        if (s->hidden && s->has_rsha)
            mm_add(&hresp, key2(s->rsha, 32, "", 0), (long)j);
        if (s->hidden)
            mm_add(&hprompt, key2(s->psha, 32, "", 0), (long)j);
    }
    for (size_t i = 0; i < nup; i++) {
        const sl_uploaded_t *u = &up[i];
        uint32_t pos = (uint32_t)(i + 1);
        long k = mm_find(&text, key2(u->psha, 32, u->rsha, 32), st, taken, eq_text, u, pos);
        if (k < 0 && u->created)
            k = mm_find(&turn, key2(u->psha, 32, u->created, strlen(u->created)), st, taken, eq_turn, u, pos);
        if (k < 0 && u->created)
            k = mm_find(&rturn, key2(u->rsha, 32, u->created, strlen(u->created)), st, taken, eq_rturn, u,
                        pos);
        if (k < 0)
            k = mm_find(&place, key2(u->psha, 32, &pos, sizeof(pos)), st, taken, eq_place, u, pos);
        steps[i].row = k;
        steps[i].skip = k >= 0 && st[k].deleted;
        steps[i].hidden = k >= 0 && st[k].hidden;
        if (k >= 0)
            taken[k] = 1;
        /* the hide follows the text: lookups in the tables of hidden rows (none[] never taken) */
        if (mm_find(&hresp, key2(u->rsha, 32, "", 0), st, none, eq_hidden_response, u, pos) >= 0 ||
            (u->prompt_len >= SL_RESYNC_SHORT_PROMPT &&
             mm_find(&hprompt, key2(u->psha, 32, "", 0), st, none, eq_hidden_prompt, u, pos) >= 0))
            steps[i].hidden = 1;
    }
    for (size_t j = 0; j < n; j++)
        removed[j] = !taken[j] && !st[j].deleted && !st[j].by_sync;
    rc = 0;
out:
    mm_free(&text);
    mm_free(&turn);
    mm_free(&rturn);
    mm_free(&place);
    mm_free(&hresp);
    mm_free(&hprompt);
    free(taken);
    free(none);
    return rc;
}
