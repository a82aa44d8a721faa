/*
 * The SpecStory Markdown importer (see specstory.h and docs/specstory.md).
 *
 * The file is read line by line. A line is a turn header when it is, on its own, one of
 *   _**User**_  _**User (…)**_  _**User - sidechain (…)**_  _**User (sidechain)**_
 *   _**Agent**_ _**Agent (…)**_ _**Agent - sidechain (…)**_ _**Assistant**_ _****_
 * Only those exact shapes count, so a bold-italic line inside a prompt stays text. Fenced code is
 * not tracked: real files contain unbalanced fences (tool output cut short), and tracking them
 * would swallow the following turns.
 *
 * What is dropped: the header lines themselves, the `---` separators that stand right before a
 * header (or at the end), `<!-- message-id: … -->` comments, and the metadata lines before the
 * first turn (generator comment, `#` title, session comment, `## SpecStory`). Every other line
 * lands in a prompt or a response; text before the first user turn (for example a Gemini
 * "Resumed from…" agent turn) becomes a leading exchange with an empty prompt.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal/specstory.h"

#define TITLE_MAX 120
#define UNTITLED  "Untitled exchange"

typedef struct line {
    const char *p;
    size_t n; /* without "\n" and a trailing "\r" */
} line_t;

/* Where each line is, compactly: 8 bytes a line (inputs are < 4 GiB), and 1 byte for its kind. */
typedef struct lpos {
    uint32_t off, n;
} lpos_t;

#define LINE(i) ((line_t){md + pos[(i)].off, pos[(i)].n})

typedef enum kind {
    K_TEXT,
    K_USER,      /* non-sidechain user turn: starts an exchange */
    K_SIDE_USER, /* sidechain user turn */
    K_AGENT,     /* any agent/assistant turn, sidechain or not, and untitled _****_ blocks */
    K_META,      /* metadata line before the first turn */
    K_DROP,      /* message-id comments, separators */
} kind_t;

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* The exchanges' text. Four small allocations per exchange made a file of bare headers cost more
 * per byte at 1 MB than at 64 KB (allocator and page-fault work, tests/core/test_linear.c); the
 * text goes instead into blocks of >= 64 KB that never move, so every string stays where it was
 * written. The string being written (the "open" one) is the last in the newest block and grows in
 * place, or moves once to a new block twice its size: linear in the text, one allocation per block. */
#define TEXT_BLOCK (64u << 10)

typedef struct text_blk {
    struct text_blk *next;
    size_t cap, used;
    char data[];
} text_blk_t;

typedef struct text {
    text_blk_t *head; /* the newest block */
    size_t open;      /* where the open string starts in head */
    int oom;
} text_t;

static size_t text_open_len(const text_t *t)
{
    return t->head ? t->head->used - t->open : 0;
}

/* Appends to the open string, keeping room for its NUL. */
static void text_add(text_t *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    text_blk_t *b = t->head;
    if (b == NULL || b->cap - b->used < n + 1) {
        size_t have = text_open_len(t), cap = TEXT_BLOCK;
        while (cap < 2 * (have + n + 1))
            cap *= 2;
        text_blk_t *nb = malloc(sizeof(*nb) + cap);
        if (nb == NULL) {
            t->oom = 1;
            return;
        }
        nb->cap = cap;
        nb->used = have;
        nb->next = b;
        if (have)
            memcpy(nb->data, b->data + t->open, have);
        if (b)
            b->used = t->open; /* the moved part is not in the old block any more */
        t->head = b = nb;
        t->open = 0;
    }
    if (n)
        memcpy(b->data + b->used, s, n);
    b->used += n;
}

/* Ends the open string: NUL-terminated, stays where it is until text_free. NULL when out of memory. */
static char *text_close(text_t *t, size_t *len)
{
    text_add(t, "", 0);
    if (t->oom)
        return NULL;
    text_blk_t *b = t->head;
    char *p = b->data + t->open;
    if (len)
        *len = b->used - t->open;
    b->data[b->used++] = '\0';
    t->open = b->used;
    return p;
}

static char *text_dup(text_t *t, const char *s, size_t n)
{
    text_add(t, s, n);
    return text_close(t, NULL);
}

static void text_free(text_blk_t *b)
{
    while (b) {
        text_blk_t *next = b->next;
        free(b);
        b = next;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF). Returns the offset of the first bad
 * byte, or len. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned min;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            unsigned d = s[i + k];
            if ((d & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (d & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += need + 1;
    }
    return i;
}

static int starts(const line_t *l, const char *pfx)
{
    size_t n = strlen(pfx);
    return l->n >= n && memcmp(l->p, pfx, n) == 0;
}

static int ends(const line_t *l, const char *sfx)
{
    size_t n = strlen(sfx);
    return l->n >= n && memcmp(l->p + l->n - n, sfx, n) == 0;
}

static int is_blank(const line_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!isspace((unsigned char)l->p[i]))
            return 0;
    return 1;
}

static int is_rule(const line_t *l)
{
    return l->n == 3 && memcmp(l->p, "---", 3) == 0;
}

static const char *find(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0)
            return p + i;
    return NULL;
}

/* A turn header: "_**" role [" - sidechain"] [" (" anything ")"] "**_". inner/innerlen: the text
 * in parentheses, if any. */
static kind_t header_kind(const line_t *l, const char **inner, size_t *innerlen)
{
    *inner = NULL;
    *innerlen = 0;
    if (l->n < 6 || !starts(l, "_**") || !ends(l, "**_"))
        return K_TEXT;
    const char *p = l->p + 3;
    size_t n = l->n - 6;
    if (n == 0)
        return K_AGENT; /* _****_ : an untitled block of the earliest format */
    int user;
    size_t rl;
    if (n >= 4 && memcmp(p, "User", 4) == 0) {
        user = 1;
        rl = 4;
    } else if (n >= 5 && memcmp(p, "Agent", 5) == 0) {
        user = 0;
        rl = 5;
    } else if (n >= 9 && memcmp(p, "Assistant", 9) == 0) {
        user = 0;
        rl = 9;
    } else {
        return K_TEXT;
    }
    p += rl;
    n -= rl;
    int side = 0;
    if (n >= 12 && memcmp(p, " - sidechain", 12) == 0) {
        side = 1;
        p += 12;
        n -= 12;
    }
    if (n > 0) {
        if (n < 3 || p[0] != ' ' || p[1] != '(' || p[n - 1] != ')')
            return K_TEXT;
        *inner = p + 2;
        *innerlen = n - 3;
        if (*innerlen >= 9 && memcmp(*inner, "sidechain", 9) == 0)
            side = 1;
    }
    if (!user)
        return K_AGENT;
    return side ? K_SIDE_USER : K_USER;
}

static int digits(const char *p, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return 0;
    return 1;
}

static int num(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

/* Finds "YYYY-MM-DD[ T]HH:MM:SS[.fff][Z|±HH:MM]" in p[0..n) and writes it to out as
 * "YYYY-MM-DDTHH:MM:SSZ" in UTC; returns its length, or 0 when there is none. */
static size_t timestamp_in(const char *p, size_t n, char out[32])
{
    for (size_t i = 0; i + 19 <= n; i++) {
        const char *s = p + i;
        if (!(digits(s, 4) && s[4] == '-' && digits(s + 5, 2) && s[7] == '-' && digits(s + 8, 2) &&
              (s[10] == ' ' || s[10] == 'T') && digits(s + 11, 2) && s[13] == ':' && digits(s + 14, 2) &&
              s[16] == ':' && digits(s + 17, 2)))
            continue;
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = num(s, 4) - 1900;
        tm.tm_mon = num(s + 5, 2) - 1;
        tm.tm_mday = num(s + 8, 2);
        tm.tm_hour = num(s + 11, 2);
        tm.tm_min = num(s + 14, 2);
        tm.tm_sec = num(s + 17, 2);
        if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
            tm.tm_sec > 60)
            continue;
        size_t k = i + 19;
        if (k < n && p[k] == '.')
            for (k++; k < n && isdigit((unsigned char)p[k]); k++)
                ;
        long offset = 0;
        if (k + 6 <= n && (p[k] == '+' || p[k] == '-') && digits(p + k + 1, 2) && p[k + 3] == ':' &&
            digits(p + k + 4, 2)) {
            offset = (num(p + k + 1, 2) * 60L + num(p + k + 4, 2)) * 60L;
            if (p[k] == '-')
                offset = -offset;
        }
        time_t t = timegm(&tm) - offset;
        struct tm u;
        if (gmtime_r(&t, &u) == NULL)
            return 0;
        /* Only four-digit years make a "YYYY-MM-DDTHH:MM:SSZ" (found by fuzzing: year 0026 gave
         * "26-01-05T07:01:00Z"); anything before 1970 is not a session time either. */
        if (u.tm_year + 1900 < 1970 || u.tm_year + 1900 > 9999)
            continue;
        return strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &u);
    }
    return 0;
}

/* The same, malloc'd, or NULL. */
static char *find_timestamp(const char *p, size_t n)
{
    char out[32];
    size_t k = timestamp_in(p, n, out);
    return k ? dupn(out, k) : NULL;
}

/* Title from the prompt: its first non-blank line without leading Markdown markers, trimmed,
 * at most TITLE_MAX bytes, cut on a character boundary with "…" when shortened. Written to out;
 * returns its length. */
static size_t title_of(const char *prompt, size_t len, char out[TITLE_MAX + 1])
{
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && prompt[e] != '\n')
            e++;
        size_t a = i, b = e;
        while (a < b && (isspace((unsigned char)prompt[a]) || prompt[a] == '#' || prompt[a] == '>'))
            a++;
        if (a + 1 < b && (prompt[a] == '-' || prompt[a] == '*' || prompt[a] == '+') && prompt[a + 1] == ' ')
            a += 2;
        while (a < b && isspace((unsigned char)prompt[a]))
            a++;
        while (b > a && isspace((unsigned char)prompt[b - 1]))
            b--;
        if (b > a) {
            size_t n = b - a;
            if (n <= TITLE_MAX) {
                memcpy(out, prompt + a, n);
                return n;
            }
            size_t cut = TITLE_MAX - 3; /* room for "…" */
            while (cut > 0 && ((unsigned char)prompt[a + cut] & 0xC0) == 0x80)
                cut--;
            memcpy(out, prompt + a, cut);
            memcpy(out + cut, "\xE2\x80\xA6", 3);
            return cut + 3;
        }
        i = e + 1;
    }
    memcpy(out, UNTITLED, sizeof(UNTITLED) - 1);
    return sizeof(UNTITLED) - 1;
}

/* Session comment: "<!-- <Agent> Session <id> (<timestamp>) -->" */
static void parse_session_comment(const line_t *l, sl_specstory_doc_t *doc)
{
    const char *p = l->p + 4, *end = l->p + l->n - 3;
    while (p < end && *p == ' ')
        p++;
    const char *s = find(p, (size_t)(end - p), " Session ");
    if (s == NULL)
        return;
    if (doc->agent == NULL && s > p)
        doc->agent = dupn(p, (size_t)(s - p));
    const char *id = s + 9, *ide = id;
    while (ide < end && *ide != ' ' && *ide != '(')
        ide++;
    if (doc->session_id == NULL && ide > id)
        doc->session_id = dupn(id, (size_t)(ide - id));
    if (doc->created_at == NULL)
        doc->created_at = find_timestamp(ide, (size_t)(end - ide));
}

/* Metadata lines before the first turn; fills doc. Returns 1 when l is one. */
static int preamble_meta(const line_t *l, sl_specstory_doc_t *doc, int *marker)
{
    if (starts(l, "<!-- Generated by SpecStory")) {
        *marker = 1;
        return 1;
    }
    if (starts(l, "<!--") && ends(l, "-->") && find(l->p, l->n, " Session ")) {
        *marker = 1;
        parse_session_comment(l, doc);
        return 1;
    }
    if (l->n == 12 && memcmp(l->p, "## SpecStory", 12) == 0) {
        *marker = 1;
        return 1;
    }
    if (starts(l, "# ") && doc->title == NULL) {
        const char *p = l->p + 2;
        size_t n = l->n - 2;
        while (n && isspace((unsigned char)p[n - 1]))
            n--;
        doc->title = dupn(p, n);
        return 1;
    }
    if (starts(l, "## ") && doc->title == NULL) {
        doc->title = dupn(l->p + 3, l->n - 3);
        return 1;
    }
    return 0;
}

static int is_message_id(const line_t *l)
{
    return starts(l, "<!-- message-id:") && ends(l, "-->");
}

/* Appends lines [a, b) to the open string of out, dropping separators before headers (kinds[] says
 * which) and trimming blank lines at both ends; a blank line goes before this part if the open
 * string is not empty. */
static void append_body(text_t *out, const char *md, const lpos_t *pos, const unsigned char *kinds, size_t a,
                        size_t b)
{
    while (a < b && (kinds[a] == K_DROP || is_blank(&LINE(a))))
        a++;
    while (b > a && (kinds[b - 1] == K_DROP || is_blank(&LINE(b - 1))))
        b--;
    if (a >= b)
        return;
    if (text_open_len(out) > 0)
        text_add(out, "\n\n", 2);
    for (size_t i = a; i < b; i++) {
        if (kinds[i] == K_DROP)
            continue;
        text_add(out, md + pos[i].off, pos[i].n);
        if (i + 1 < b)
            text_add(out, "\n", 1);
    }
}

void sl_specstory_free(sl_specstory_doc_t *doc)
{
    if (doc == NULL)
        return;
    text_free(doc->text);
    free(doc->exchanges);
    free(doc->title);
    free(doc->agent);
    free(doc->session_id);
    free(doc->created_at);
    memset(doc, 0, sizeof(*doc));
}

int sl_specstory_parse(const char *md, size_t len, sl_specstory_doc_t *doc, char *err, size_t errlen)
{
    return sl_specstory_parse_max(md, len, 0, doc, err, errlen);
}

int sl_specstory_parse_max(const char *md, size_t len, size_t max_exchanges, sl_specstory_doc_t *doc,
                           char *err, size_t errlen)
{
    memset(doc, 0, sizeof(*doc));
    if (md == NULL && len > 0) {
        set_err(err, errlen, "no input");
        return -1;
    }
    const char *nul = len ? memchr(md, '\0', len) : NULL;
    if (nul) {
        set_err(err, errlen, "not a SpecStory history file: it contains a NUL byte at offset %zu",
                (size_t)(nul - md));
        return -1;
    }
    size_t bad = utf8_check((const unsigned char *)md, len);
    if (bad != len) {
        set_err(err, errlen, "not valid UTF-8 at byte offset %zu", bad);
        return -1;
    }
    if (len >= 3 && memcmp(md, "\xEF\xBB\xBF", 3) == 0) {
        md += 3;
        len -= 3;
    }

    /* split into lines */
    size_t nlines = 1;
    for (size_t i = 0; i < len; i++)
        nlines += md[i] == '\n';
    if (len > UINT32_MAX) {
        set_err(err, errlen, "the file is larger than 4 GiB");
        return -1;
    }
    lpos_t *pos = calloc(nlines, sizeof(*pos));
    unsigned char *kinds = calloc(nlines, sizeof(*kinds));
    if (pos == NULL || kinds == NULL) {
        free(pos);
        free(kinds);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    size_t nl = 0;
    for (size_t i = 0; i <= len;) {
        size_t e = i;
        while (e < len && md[e] != '\n')
            e++;
        size_t n = e - i;
        if (n && md[i + n - 1] == '\r')
            n--;
        if (!(e == len && n == 0 && nl > 0)) /* no empty line after a final "\n" */
            pos[nl++] = (lpos_t){(uint32_t)i, (uint32_t)n};
        i = e + 1;
    }

    /* classify */
    int marker = 0, in_preamble = 1;
    size_t users = 0, first_turn = nl;
    for (size_t i = 0; i < nl; i++) {
        const char *inner;
        size_t innerlen;
        kind_t k = header_kind(&LINE(i), &inner, &innerlen);
        if (k != K_TEXT) {
            if (in_preamble)
                first_turn = i;
            in_preamble = 0;
            kinds[i] = k;
            users += k == K_USER;
            continue;
        }
        if (in_preamble && preamble_meta(&LINE(i), doc, &marker)) {
            kinds[i] = K_META;
            continue;
        }
        kinds[i] = is_message_id(&LINE(i)) ? K_DROP : K_TEXT;
    }
    /* "---" right before a header (or the end) is a separator, not content */
    for (size_t i = 0; i < nl; i++) {
        if (kinds[i] != K_TEXT || !is_rule(&LINE(i)))
            continue;
        size_t j = i + 1;
        while (j < nl && (is_blank(&LINE(j)) || kinds[j] == K_DROP))
            j++;
        if (j == nl || (kinds[j] != K_TEXT && kinds[j] != K_META))
            kinds[i] = K_DROP;
    }
    /* the session comment's time wins; else a timestamp title ("# 2026-01-05 08:00:00Z") */
    if (doc->created_at == NULL && doc->title)
        doc->created_at = find_timestamp(doc->title, strlen(doc->title));
    if (!marker && first_turn == nl) {
        free(pos);
        free(kinds);
        sl_specstory_free(doc);
        set_err(err, errlen,
                "not a SpecStory history file: no \"Generated by SpecStory\" comment and no _**User**_ / "
                "_**Agent**_ turn headers");
        return -1;
    }

    /* text before the first user turn (agent turns or stray text) */
    size_t first_user = nl;
    for (size_t i = 0; i < nl; i++)
        if (kinds[i] == K_USER) {
            first_user = i;
            break;
        }
    /* the text before the first user turn is the first open string of the text blocks */
    text_t text = {0};
    for (size_t i = 0; i < first_user;) {
        if (kinds[i] == K_META || (kinds[i] != K_TEXT && kinds[i] != K_DROP)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < first_user && (kinds[j] == K_TEXT || kinds[j] == K_DROP))
            j++;
        append_body(&text, md, pos, kinds, i, j);
        i = j;
    }
    size_t lead = text_open_len(&text);

    size_t count = users + (lead > 0 ? 1 : 0);
    if (max_exchanges && count > max_exchanges) {
        /* checked before any exchange is built: a run of headers costs its line table only */
        text_free(text.head);
        free(pos);
        free(kinds);
        sl_specstory_free(doc);
        set_err(err, errlen, "the session has %zu exchanges; the limit is %zu", count, max_exchanges);
        return -2;
    }
    doc->exchanges = count ? calloc(count, sizeof(*doc->exchanges)) : NULL;
    int oom = count && doc->exchanges == NULL;
    size_t x = 0;
    if (!oom && lead > 0) {
        sl_specstory_exchange_t *e = &doc->exchanges[x++];
        doc->count = x;
        e->response = text_close(&text, &e->response_len);
        e->prompt = text_dup(&text, "", 0);
        e->title = text_dup(&text, UNTITLED, sizeof(UNTITLED) - 1);
        oom = text.oom;
    }
    for (size_t i = first_user; !oom && i < nl; i++) {
        if (kinds[i] != K_USER)
            continue;
        sl_specstory_exchange_t *e = &doc->exchanges[x++];
        doc->count = x;
        const char *inner;
        size_t innerlen;
        header_kind(&LINE(i), &inner, &innerlen);
        char tmp[TITLE_MAX + 32];
        size_t tn = inner ? timestamp_in(inner, innerlen, tmp) : 0;
        e->created_at = tn ? text_dup(&text, tmp, tn) : NULL;
        /* prompt: up to the next header of any kind */
        size_t j = i + 1;
        while (j < nl && (kinds[j] == K_TEXT || kinds[j] == K_DROP || kinds[j] == K_META))
            j++;
        append_body(&text, md, pos, kinds, i + 1, j);
        e->prompt = text_close(&text, &e->prompt_len);
        /* response: every turn after it up to the next non-sidechain user turn */
        size_t k = j;
        while (k < nl && kinds[k] != K_USER) {
            size_t m = k + 1;
            while (m < nl && (kinds[m] == K_TEXT || kinds[m] == K_DROP || kinds[m] == K_META))
                m++;
            append_body(&text, md, pos, kinds, k + 1, m);
            k = m;
        }
        e->response = text_close(&text, &e->response_len);
        e->title = e->prompt ? text_dup(&text, tmp, title_of(e->prompt, e->prompt_len, tmp)) : NULL;
        oom = text.oom;
        i = k - 1;
    }
    doc->text = text.head;
    free(pos);
    free(kinds);
    if (oom) {
        sl_specstory_free(doc);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

char *sl_specstory_title(const char *prompt, size_t len)
{
    char out[TITLE_MAX + 1];
    return dupn(out, title_of(prompt, len, out));
}
