/* Internal to core/: a growable byte buffer, always NUL-terminated; oom set once an allocation
 * failed (later additions are then ignored, and the caller checks oom once at the end). */
#ifndef SL_CORE_INTERNAL_BUF_H
#define SL_CORE_INTERNAL_BUF_H

#include <stdlib.h>
#include <string.h>

typedef struct sl_buf {
    char *p;
    size_t len, cap;
    int oom;
} sl_buf_t;

/* Room for n more bytes (and the NUL) without moving len. 0, or -1 (oom set). */
static inline int sl_buf_reserve(sl_buf_t *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

static inline void sl_buf_add(sl_buf_t *b, const void *s, size_t n)
{
    if (sl_buf_reserve(b, n) != 0)
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void sl_buf_str(sl_buf_t *b, const char *s)
{
    sl_buf_add(b, s, strlen(s));
}

/* sl_render_out callback that appends to the sl_buf_t in ud */
static inline void sl_buf_out(const char *s, size_t n, void *ud)
{
    sl_buf_add(ud, s, n);
}

#endif
