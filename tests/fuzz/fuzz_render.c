/* Fuzz target: the viewer page's Markdown renderer (core/render.c). For every input the output
 * holds only the tags the renderer writes (raw HTML in the input is text), links only with safe
 * targets, and at most 16 times the input's bytes (plus a constant). scripts/fuzz.sh runs it with
 * large inputs and a per-input time limit, so a super-linear input fails it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal/render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct out {
    char *p;
    size_t n, cap;
} out_t;

static void put(const char *s, size_t n, void *ud)
{
    out_t *o = ud;
    if (o->n + n + 1 > o->cap) {
        o->cap = (o->n + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        if (o->p == NULL)
            abort();
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = '\0';
}

static const char *const TAGS[] = {"p",     "blockquote", "ul",  "ol",      "li",      "hr",     "h4",
                                   "h5",    "h6",         "pre", "code",    "div",     "table",  "thead",
                                   "tbody", "tr",         "th",  "td",      "em",      "strong", "a",
                                   "del",   "u",          "br",  "details", "summary", "span",   NULL};

static int allowed(const char *tag, size_t n)
{
    for (int i = 0; TAGS[i]; i++)
        if (strlen(TAGS[i]) == n && strncasecmp(TAGS[i], tag, n) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    out_t o = {0};
    put("", 0, &o);
    sl_render_markdown((const char *)data, size, put, &o);
    if (o.n > 16 * size + 4096)
        abort(); /* output blow-up */
    for (const char *q = o.p; (q = strchr(q, '<')) != NULL; q++) {
        const char *t = q + 1 + (q[1] == '/');
        size_t n = strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789");
        if (!allowed(t, n))
            abort(); /* a tag the renderer does not write: raw HTML got through */
    }
    for (const char *q = o.p; (q = strstr(q, "href=\"")) != NULL; q += 6) {
        const char *v = q + 6;
        if (strncasecmp(v, "javascript:", 11) == 0 || strncasecmp(v, "data:", 5) == 0 ||
            strncasecmp(v, "vbscript:", 9) == 0)
            abort();
    }
    free(o.p);
    return 0;
}
