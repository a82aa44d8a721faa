/* Markdown -> safe HTML for the viewer page. The rules are in render.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <md4c.h>

#include "core/internal/render.h"

#define MAX_BLOCK_DEPTH 8
/* Quotes and lists nest to at most this depth on the page: deeper containers keep their text but
 * lose their tags, so 1 MB of ">" cannot become 27 MB of <blockquote> (output <= 16x input). */
#define MAX_NEST 16
/* More '[' than this in one piece of Markdown are shown as typed (see md()). */
#define MAX_BRACKETS 4096

typedef struct ctx {
    sl_render_out out;
    void *ud;
    int link_open[64]; /* per nesting level of A/IMG spans: 1 when we emitted <a> */
    int span_depth;
    int inline_only; /* summaries: no <p> */
    int nest;        /* open quote/list containers, counted beyond MAX_NEST too */
} ctx_t;

/* Whether a quote or list container (or an item of one) at the current depth gets its tags. */
static int shown(const ctx_t *c)
{
    return c->nest <= MAX_NEST;
}

static void put(ctx_t *c, const char *s, size_t n)
{
    if (n)
        c->out(s, n, c->ud);
}

static void puts_(ctx_t *c, const char *s)
{
    put(c, s, strlen(s));
}

void sl_render_escape(const char *s, size_t n, sl_render_out out, void *ud)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '\0':
            rep = "\xEF\xBF\xBD";
            break;
        default:
            continue;
        }
        if (i > start)
            out(s + start, i - start, ud);
        out(rep, strlen(rep), ud);
        start = i + 1;
    }
    if (n > start)
        out(s + start, n - start, ud);
}

static void esc(ctx_t *c, const char *s, size_t n)
{
    sl_render_escape(s, n, c->out, c->ud);
}

/* An entity may pass through only when it is exactly &name; &#123; or &#x1F; */
static int plain_entity(const char *s, size_t n)
{
    if (n < 3 || s[0] != '&' || s[n - 1] != ';')
        return 0;
    size_t i = 1;
    if (s[1] == '#') {
        i = 2;
        if (i < n - 1 && (s[i] == 'x' || s[i] == 'X'))
            i++;
    }
    if (i >= n - 1)
        return 0;
    for (; i < n - 1; i++)
        if (!isalnum((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Is this link target safe to put in href? Browsers ignore ASCII whitespace and control characters
 * inside a scheme ("java\tscript:"), so the check looks at the target without them. */
static int safe_url(const char *u, size_t n)
{
    char scheme[16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)u[i];
        if (ch <= 0x20 || ch == 0x7f)
            continue;
        if (ch == ':') {
            scheme[k] = '\0';
            return strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0 ||
                   strcmp(scheme, "mailto") == 0;
        }
        if (ch == '/' || ch == '?' || ch == '#')
            return 1; /* relative or in-page: no scheme */
        if (k + 1 >= sizeof(scheme))
            return 0; /* too long for any scheme we allow; cannot be relative either (':' later) */
        scheme[k++] = (char)tolower(ch);
    }
    return 1; /* no ':' at all: a relative path */
}

/* md4c gives attributes with entities still in them; the plain text is what we check and write. */
static size_t attr_text(const MD_ATTRIBUTE *a, char *buf, size_t cap)
{
    size_t n = a->size < cap ? a->size : cap;
    if (n > 0) /* an empty target ("[x]()") has no text pointer (found by fuzz_render) */
        memcpy(buf, a->text, n);
    return n;
}

static int enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    ctx_t *c = ud;
    char tmp[64];
    switch (type) {
    case MD_BLOCK_DOC:
        break;
    case MD_BLOCK_QUOTE:
        c->nest++;
        if (shown(c))
            puts_(c, "<blockquote>");
        break;
    case MD_BLOCK_UL:
        c->nest++;
        if (shown(c))
            puts_(c, "<ul>");
        break;
    case MD_BLOCK_OL: {
        const MD_BLOCK_OL_DETAIL *d = detail;
        c->nest++;
        if (!shown(c))
            break;
        if (d->start != 1) {
            snprintf(tmp, sizeof(tmp), "<ol start=\"%u\">", d->start);
            puts_(c, tmp);
        } else {
            puts_(c, "<ol>");
        }
        break;
    }
    case MD_BLOCK_LI: {
        const MD_BLOCK_LI_DETAIL *d = detail;
        if (shown(c))
            puts_(c, "<li>");
        if (d->is_task)
            puts_(c, d->task_mark == ' ' ? "\xE2\x98\x90 " : "\xE2\x98\x91 ");
        break;
    }
    case MD_BLOCK_HR:
        puts_(c, "<hr>");
        break;
    case MD_BLOCK_H: {
        /* Headings inside a response sit under the page's own h2/h3: shift them down. */
        const MD_BLOCK_H_DETAIL *d = detail;
        unsigned level = d->level + 3 > 6 ? 6 : d->level + 3;
        snprintf(tmp, sizeof(tmp), "<h%u>", level);
        puts_(c, tmp);
        break;
    }
    case MD_BLOCK_CODE: {
        const MD_BLOCK_CODE_DETAIL *d = detail;
        puts_(c, "<pre><code");
        if (d->lang.size > 0) {
            char lang[64];
            size_t n = attr_text(&d->lang, lang, sizeof(lang));
            puts_(c, " class=\"language-");
            esc(c, lang, n);
            puts_(c, "\"");
        }
        puts_(c, ">");
        break;
    }
    case MD_BLOCK_HTML: /* not produced with MD_FLAG_NOHTML */
        break;
    case MD_BLOCK_P:
        if (!c->inline_only)
            puts_(c, "<p>");
        break;
    case MD_BLOCK_TABLE:
        puts_(c, "<div class=\"table\"><table>");
        break;
    case MD_BLOCK_THEAD:
        puts_(c, "<thead>");
        break;
    case MD_BLOCK_TBODY:
        puts_(c, "<tbody>");
        break;
    case MD_BLOCK_TR:
        puts_(c, "<tr>");
        break;
    case MD_BLOCK_TH:
    case MD_BLOCK_TD: {
        const MD_BLOCK_TD_DETAIL *d = detail;
        const char *tag = type == MD_BLOCK_TH ? "th" : "td";
        const char *align = d->align == MD_ALIGN_LEFT     ? " style=\"text-align:left\""
                            : d->align == MD_ALIGN_CENTER ? " style=\"text-align:center\""
                            : d->align == MD_ALIGN_RIGHT  ? " style=\"text-align:right\""
                                                          : "";
        snprintf(tmp, sizeof(tmp), "<%s%s>", tag, align);
        puts_(c, tmp);
        break;
    }
    }
    return 0;
}

static int leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    ctx_t *c = ud;
    char tmp[16];
    switch (type) {
    case MD_BLOCK_DOC:
    case MD_BLOCK_HTML:
        break;
    case MD_BLOCK_QUOTE:
        if (shown(c))
            puts_(c, "</blockquote>");
        c->nest--;
        break;
    case MD_BLOCK_UL:
        if (shown(c))
            puts_(c, "</ul>");
        c->nest--;
        break;
    case MD_BLOCK_OL:
        if (shown(c))
            puts_(c, "</ol>");
        c->nest--;
        break;
    case MD_BLOCK_LI:
        if (shown(c))
            puts_(c, "</li>");
        break;
    case MD_BLOCK_HR:
        break;
    case MD_BLOCK_H: {
        const MD_BLOCK_H_DETAIL *d = detail;
        unsigned level = d->level + 3 > 6 ? 6 : d->level + 3;
        snprintf(tmp, sizeof(tmp), "</h%u>", level);
        puts_(c, tmp);
        break;
    }
    case MD_BLOCK_CODE:
        puts_(c, "</code></pre>");
        break;
    case MD_BLOCK_P:
        if (!c->inline_only)
            puts_(c, "</p>");
        break;
    case MD_BLOCK_TABLE:
        puts_(c, "</table></div>");
        break;
    case MD_BLOCK_THEAD:
        puts_(c, "</thead>");
        break;
    case MD_BLOCK_TBODY:
        puts_(c, "</tbody>");
        break;
    case MD_BLOCK_TR:
        puts_(c, "</tr>");
        break;
    case MD_BLOCK_TH:
        puts_(c, "</th>");
        break;
    case MD_BLOCK_TD:
        puts_(c, "</td>");
        break;
    }
    return 0;
}

static void open_link(ctx_t *c, const MD_ATTRIBUTE *href, const char *cls)
{
    int level = c->span_depth < 64 ? c->span_depth : 63;
    char url[4096];
    size_t n = attr_text(href, url, sizeof(url));
    if (href->size > sizeof(url) || !safe_url(url, n)) {
        c->link_open[level] = 0;
        puts_(c, "<span class=\"unsafe-link\">");
        return;
    }
    c->link_open[level] = 1;
    puts_(c, "<a");
    if (cls) {
        puts_(c, " class=\"");
        puts_(c, cls);
        puts_(c, "\"");
    }
    puts_(c, " rel=\"nofollow noopener noreferrer\" href=\"");
    esc(c, url, n);
    puts_(c, "\">");
}

static int enter_span(MD_SPANTYPE type, void *detail, void *ud)
{
    ctx_t *c = ud;
    switch (type) {
    case MD_SPAN_EM:
        puts_(c, "<em>");
        break;
    case MD_SPAN_STRONG:
        puts_(c, "<strong>");
        break;
    case MD_SPAN_A:
        open_link(c, &((const MD_SPAN_A_DETAIL *)detail)->href, NULL);
        break;
    case MD_SPAN_IMG:
        /* Never loaded: a link to the image, labelled with its alt text. */
        open_link(c, &((const MD_SPAN_IMG_DETAIL *)detail)->src, "image");
        puts_(c, "[image: ");
        break;
    case MD_SPAN_CODE:
        puts_(c, "<code>");
        break;
    case MD_SPAN_DEL:
        puts_(c, "<del>");
        break;
    case MD_SPAN_U:
        puts_(c, "<u>");
        break;
    default:
        break;
    }
    c->span_depth++;
    return 0;
}

static int leave_span(MD_SPANTYPE type, void *detail, void *ud)
{
    (void)detail;
    ctx_t *c = ud;
    if (c->span_depth > 0) /* md4c can leave a span it entered in an image's alt text: never below 0 */
        c->span_depth--;
    int level = c->span_depth < 64 ? c->span_depth : 63;
    switch (type) {
    case MD_SPAN_EM:
        puts_(c, "</em>");
        break;
    case MD_SPAN_STRONG:
        puts_(c, "</strong>");
        break;
    case MD_SPAN_IMG:
        puts_(c, "]");
        /* fall through */
    case MD_SPAN_A:
        puts_(c, c->link_open[level] ? "</a>" : "</span>");
        break;
    case MD_SPAN_CODE:
        puts_(c, "</code>");
        break;
    case MD_SPAN_DEL:
        puts_(c, "</del>");
        break;
    case MD_SPAN_U:
        puts_(c, "</u>");
        break;
    default:
        break;
    }
    return 0;
}

static int text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *ud)
{
    ctx_t *c = ud;
    switch (type) {
    case MD_TEXT_NULLCHAR:
        puts_(c, "\xEF\xBF\xBD");
        break;
    case MD_TEXT_BR:
        puts_(c, "<br>");
        break;
    case MD_TEXT_SOFTBR:
        puts_(c, "\n");
        break;
    case MD_TEXT_ENTITY:
        if (plain_entity(s, n))
            put(c, s, n);
        else
            esc(c, s, n);
        break;
    default: /* NORMAL, CODE, HTML (as text: NOHTML), LATEXMATH */
        esc(c, s, n);
        break;
    }
    return 0;
}

static void md(ctx_t *c, const char *s, size_t n)
{
    MD_PARSER p;
    memset(&p, 0, sizeof(p));
    p.flags = MD_DIALECT_GITHUB | MD_FLAG_NOHTML;
    p.enter_block = enter_block;
    p.leave_block = leave_block;
    p.enter_span = enter_span;
    p.leave_span = leave_span;
    p.text = text;
    c->span_depth = 0;
    /* md4c's link resolution grows faster than the text with the number of '[' (1 MB of them:
     * 32x the time of 64 KB). Past MAX_BRACKETS in one piece, each '[' is escaped ("\[": shown
     * as typed, no link): real text never has that many, and the work stays linear.
     * md4c 0.4.8 reads one byte past a text that ends inside a link destination ("[x](http",
     * found by fuzz_render under ASan): every piece it parses ends with a newline of our own,
     * which changes nothing of the rendering. */
    size_t brackets = 0;
    for (size_t i = 0; i < n; i++)
        brackets += s[i] == '[';
    int escape = brackets > MAX_BRACKETS;
    if (!escape && n > 0 && s[n - 1] == '\n') {
        md_parse(s, (MD_SIZE)n, &p, c);
        return;
    }
    char *copy = malloc(n + (escape ? brackets : 0) + 1);
    if (copy == NULL)
        return; /* out of memory: the piece is left out rather than read past its end */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (escape && s[i] == '[')
            copy[k++] = '\\';
        copy[k++] = s[i];
    }
    copy[k++] = '\n';
    md_parse(copy, (MD_SIZE)k, &p, c);
    free(copy);
}

/* ---- SpecStory blocks ---- */

typedef enum { B_NONE, B_TOOL, B_THINK, B_DETAILS } block_t;

static int at_line_start(const char *s, size_t i)
{
    return i == 0 || s[i - 1] == '\n';
}

static int starts_at(const char *s, size_t n, size_t i, const char *lit)
{
    size_t k = strlen(lit);
    return i + k <= n && memcmp(s + i, lit, k) == 0;
}

/* Finds the next block opener at a line start from i; sets *kind. */
static size_t next_opener(const char *s, size_t n, size_t i, block_t *kind)
{
    for (; i < n; i++) {
        if (s[i] != '<' || !at_line_start(s, i))
            continue;
        if (starts_at(s, n, i, "<tool-use ") || starts_at(s, n, i, "<tool-use>")) {
            *kind = B_TOOL;
            return i;
        }
        if (starts_at(s, n, i, "<think>")) {
            *kind = B_THINK;
            return i;
        }
        if (starts_at(s, n, i, "<details>") || starts_at(s, n, i, "<details ")) {
            *kind = B_DETAILS;
            return i;
        }
    }
    *kind = B_NONE;
    return n;
}

static const char *find_lit(const char *s, size_t n, size_t from, const char *lit)
{
    size_t k = strlen(lit);
    for (size_t i = from; i + k <= n; i++)
        if (memcmp(s + i, lit, k) == 0)
            return s + i;
    return NULL;
}

/*
 * Where each block ends, found in one pass over the text (not one scan to the end per opener: that
 * made n unclosed openers cost n passes over the text). Openers and closers of each tag are matched
 * like brackets, nested blocks of the same tag counted; an opener without its closer is no block.
 */
typedef struct bounds {
    size_t *open;  /* positions of openers (any "<tag>" or "<tag "), in order */
    size_t *close; /* for each opener: the index just after its matching closer, or 0 */
    size_t n, cap;
} bounds_t;

static const char *const OPEN_TAG[] = {
    [B_TOOL] = "<tool-use", [B_THINK] = "<think", [B_DETAILS] = "<details"};
static const char *const CLOSE_TAG[] = {
    [B_TOOL] = "</tool-use>", [B_THINK] = "</think>", [B_DETAILS] = "</details>"};

static int bounds_push(bounds_t *b, size_t at)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        size_t *o = realloc(b->open, cap * sizeof(*o)), *c = o ? realloc(b->close, cap * sizeof(*c)) : NULL;
        if (o)
            b->open = o;
        if (c == NULL)
            return -1;
        b->close = c;
        b->cap = cap;
    }
    b->open[b->n] = at;
    b->close[b->n++] = 0;
    return 0;
}

/* Fills b[kind] for s[0..n). Returns 0, or -1 when out of memory (then no block is recognised). */
static int find_bounds(const char *s, size_t n, bounds_t b[4])
{
    size_t *stack[4] = {0};
    size_t depth[4] = {0}, cap[4] = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s[i] != '<')
            continue;
        for (int k = B_TOOL; k <= B_DETAILS; k++) {
            size_t ol = strlen(OPEN_TAG[k]), cl = strlen(CLOSE_TAG[k]);
            if (i + ol < n && memcmp(s + i, OPEN_TAG[k], ol) == 0 && (s[i + ol] == '>' || s[i + ol] == ' ')) {
                if (bounds_push(&b[k], i) != 0) {
                    rc = -1;
                    break;
                }
                if (depth[k] == cap[k]) {
                    size_t c2 = cap[k] ? cap[k] * 2 : 16;
                    size_t *st = realloc(stack[k], c2 * sizeof(*st));
                    if (st == NULL) {
                        rc = -1;
                        break;
                    }
                    stack[k] = st;
                    cap[k] = c2;
                }
                stack[k][depth[k]++] = b[k].n - 1;
            } else if (i + cl <= n && memcmp(s + i, CLOSE_TAG[k], cl) == 0 && depth[k] > 0) {
                b[k].close[stack[k][--depth[k]]] = i + cl;
            }
        }
    }
    for (int k = 0; k < 4; k++)
        free(stack[k]);
    return rc;
}

/* The end of the block that opens at `at` (0: unclosed). *cursor walks b's openers forward. */
static size_t bounds_end(const bounds_t *b, size_t *cursor, size_t at)
{
    while (*cursor < b->n && b->open[*cursor] < at)
        (*cursor)++;
    return *cursor < b->n && b->open[*cursor] == at ? b->close[*cursor] : 0;
}

/* The value of attribute name="..." within tag[0..n). */
static int attr_value(const char *tag, size_t n, const char *name, const char **v, size_t *vl)
{
    char pat[48];
    snprintf(pat, sizeof(pat), " %s=\"", name);
    const char *p = find_lit(tag, n, 0, pat);
    if (p == NULL)
        return 0;
    p += strlen(pat);
    const char *e = memchr(p, '"', (size_t)(tag + n - p));
    if (e == NULL)
        return 0;
    *v = p;
    *vl = (size_t)(e - p);
    return 1;
}

static void render_blocks(ctx_t *c, const char *s, size_t n, int depth);

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Strips one leading "<details ...>" and one trailing "</details>" from a tool/think body. */
static void unwrap_details(const char **s, size_t *n)
{
    trim(s, n);
    if (*n >= 9 && memcmp(*s, "<details", 8) == 0 && ((*s)[8] == '>' || (*s)[8] == ' ')) {
        const char *gt = memchr(*s, '>', *n);
        if (gt) {
            size_t skip = (size_t)(gt - *s) + 1;
            if (*n >= skip + 10 && memcmp(*s + *n - 10, "</details>", 10) == 0) {
                *s += skip;
                *n -= skip + 10;
                trim(s, n);
            }
        }
    }
}

static void render_block(ctx_t *c, block_t kind, const char *s, size_t n, int depth)
{
    /* s[0..n) is the whole block including its tags */
    const char *gt = memchr(s, '>', n);
    size_t open_len = gt ? (size_t)(gt - s) + 1 : n;
    size_t close_len = kind == B_TOOL    ? strlen("</tool-use>")
                       : kind == B_THINK ? strlen("</think>")
                                         : strlen("</details>");
    if (open_len + close_len > n) { /* not a well-formed block after all: plain Markdown */
        md(c, s, n);
        return;
    }
    const char *body = s + open_len;
    size_t blen = n - open_len - close_len;
    const char *name = NULL, *type = NULL;
    size_t name_len = 0, type_len = 0;
    if (kind == B_TOOL) {
        attr_value(s, open_len, "data-tool-name", &name, &name_len);
        attr_value(s, open_len, "data-tool-type", &type, &type_len);
    }
    if (kind != B_DETAILS)
        unwrap_details(&body, &blen);
    /* the first <summary>…</summary> becomes the block's summary */
    const char *sum = NULL;
    size_t sum_len = 0;
    const char *so = find_lit(body, blen, 0, "<summary>");
    if (so && (size_t)(so - body) < 64) {
        const char *se = find_lit(body, blen, (size_t)(so - body), "</summary>");
        if (se) {
            sum = so + 9;
            sum_len = (size_t)(se - sum);
            size_t cut = (size_t)(se - body) + 10;
            body += cut;
            blen -= cut;
        }
    }
    puts_(c, kind == B_TOOL    ? "<details class=\"tool\""
             : kind == B_THINK ? "<details class=\"think\""
                               : "<details");
    if (type_len) {
        puts_(c, " data-tool-type=\"");
        esc(c, type, type_len);
        puts_(c, "\"");
    }
    puts_(c, "><summary>");
    if (sum_len) {
        ctx_t inner = *c;
        inner.inline_only = 1;
        md(&inner, sum, sum_len);
    } else if (kind == B_TOOL) {
        puts_(c, "Tool use");
        if (name_len) {
            puts_(c, ": ");
            esc(c, name, name_len);
        }
    } else {
        puts_(c, kind == B_THINK ? "Thinking" : "Details");
    }
    puts_(c, "</summary><div class=\"block\">");
    render_blocks(c, body, blen, depth + 1);
    puts_(c, "</div></details>");
}

static void render_blocks(ctx_t *c, const char *s, size_t n, int depth)
{
    bounds_t b[4];
    memset(b, 0, sizeof(b));
    size_t cursor[4] = {0};
    int have = depth < MAX_BLOCK_DEPTH && find_bounds(s, n, b) == 0;
    size_t pos = 0;
    while (pos < n) {
        block_t kind = B_NONE;
        size_t at = have ? next_opener(s, n, pos, &kind) : n;
        size_t end = kind == B_NONE ? 0 : bounds_end(&b[kind], &cursor[kind], at);
        if (kind != B_NONE && end == 0) {
            /* Unclosed: not a block; look for the next opener after this line. */
            size_t nl = at;
            while (nl < n && s[nl] != '\n')
                nl++;
            block_t k2;
            size_t at2 = next_opener(s, n, nl, &k2);
            md(c, s + pos, at2 - pos);
            pos = at2;
            continue;
        }
        if (at > pos)
            md(c, s + pos, at - pos);
        if (kind == B_NONE)
            break;
        render_block(c, kind, s + at, end - at, depth);
        pos = end;
    }
    for (int k = 0; k < 4; k++) {
        free(b[k].open);
        free(b[k].close);
    }
}

void sl_render_markdown(const char *s, size_t n, sl_render_out out, void *ud)
{
    ctx_t c;
    memset(&c, 0, sizeof(c));
    c.out = out;
    c.ud = ud;
    render_blocks(&c, s, n, 0);
}
