/*
 * The public projection: what a viewer may see of a session, precomputed as the public JSON
 * document (API.md), the HTML page, the Markdown alternate, and the gzip of each. Redis stores the
 * three gzip forms as the parts of one entry (cache.h) with the ETag and the plain lengths as its
 * meta; a node inflates a plain form when it is asked for (sl_gunzip) and keeps what it served.
 *
 * It is built from one SELECT over the public_* (or viewer_*) views, so the rows come from one
 * consistent snapshot and hidden/deleted rows are filtered by MariaDB, not by this code.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <msgpack.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "core/internal/pieces.h"
#include "core/internal/projection.h"
#include "core/internal/render.h"

/* Whether an exchange's stored pieces are current is decided by a hash (pieces_key, computed here:
 * piece_key) of everything a piece is made from: the id, the title and time as the views show
 * them, the SHA-256 of the prompt and of the response (the columns every writer of the text keeps
 * with it, which the re-sync matches on), and the piece format's version. Reading the rows does
 * not read their text: an owner change costs the pieces it renders, not the session's size. */
#define SELECT_COLUMNS                                                                                       \
    "SELECT s.id, s.version, s.title, s.created_at, s.updated_at, s.project_name, s.project_icon,"           \
    " s.project_color, s.author_name, s.author_handle, e.id, e.title, e.created_at, e.pieces, e.pieces_key," \
    " e.prompt_sha256, e.response_sha256, e.position"

/* The rows, without their text: what the document is assembled from. Not ORDER BY e.position, e.id:
 * MariaDB sorts that through a temporary table holding the pieces (5 ms at 1,000 exchanges); the
 * rows are sorted here instead. */
static const char SQL_LOAD_PUBLIC[] =
    SELECT_COLUMNS " FROM public_sessions s LEFT JOIN public_exchanges e ON e.session_id = s.id"
                   " WHERE s.id = ?";
static const char SQL_LOAD_VIEWER[] =
    SELECT_COLUMNS " FROM viewer_sessions s LEFT JOIN viewer_exchanges e ON e.session_id = s.id"
                   " WHERE s.id = ?";

/* The text of the exchanges with ids in [?, ?] (those to render are among them). */
#define SELECT_TEXT                                                                                          \
    "SELECT e.id, e.prompt, e.response, e.title, e.created_at, e.prompt_sha256, e.response_sha256"
static const char SQL_TEXT_PUBLIC[] =
    SELECT_TEXT " FROM public_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";
static const char SQL_TEXT_VIEWER[] =
    SELECT_TEXT " FROM viewer_exchanges e WHERE e.session_id = ? AND e.id BETWEEN ? AND ? ORDER BY e.id";

/* Keeps rebuilt pieces with their exchange (inside the owner transaction that built them). */
static const char SQL_KEEP_PIECES[] =
    "UPDATE exchanges SET pieces = ?, pieces_key = ? WHERE session_id = ? AND id = ?";

enum {
    C_ID,
    C_VERSION,
    C_TITLE,
    C_CREATED,
    C_UPDATED,
    C_PNAME,
    C_PICON,
    C_PCOLOR,
    C_ANAME,
    C_AHANDLE,
    C_EID,
    C_ETITLE,
    C_ECREATED,
    C_EPIECES,
    C_EPKEY,
    C_EPSHA,
    C_ERSHA,
    C_EPOS,
    C_COUNT
};
enum { T_ID, T_PROMPT, T_RESPONSE, T_TITLE, T_CREATED, T_PSHA, T_RSHA, T_COUNT };

static const char *cell(const sl_store_result_t *r, size_t row, size_t col, size_t *len)
{
    const sl_store_value_t *v = sl_store_cell(r, row, col);
    if (v->type == SL_STORE_TEXT || v->type == SL_STORE_BLOB) {
        *len = v->len;
        return v->ptr;
    }
    *len = 0;
    return "";
}

static sl_proj_str_t str_of(const sl_store_result_t *r, size_t row, size_t col)
{
    sl_proj_str_t v;
    v.p = cell(r, row, col, &v.n);
    return v;
}

/* ---- the documents, from the session's fields and its exchanges' pieces ---- */

static void z_html(sl_zdoc_t *d, sl_proj_str_t v)
{
    sl_render_escape(v.p, v.n, sl_buf_out, &d->glue);
}

static void z_json(sl_zdoc_t *d, const char *key, sl_proj_str_t v)
{
    sl_zdoc_gstr(d, key);
    sl_json_str(&d->glue, v.p, v.n);
}

/* A session without a title of its own (stored as '') is called after its first *visible*
 * exchange, so hiding that exchange also takes its words out of the session title. */
static sl_proj_str_t session_title(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n)
{
    if (s->title.n > 0)
        return s->title;
    if (n > 0)
        return rows[0].title;
    return (sl_proj_str_t){"Untitled session", strlen("Untitled session")};
}

static void assemble_json(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n)
{
    z_json(d, "{\"id\":", s->id);
    z_json(d, ",\"title\":", session_title(s, rows, n));
    z_json(d, ",\"project\":{\"name\":", s->project_name);
    z_json(d, ",\"icon\":", s->project_icon);
    z_json(d, ",\"color\":", s->project_color);
    z_json(d, "},\"author\":{\"name\":", s->author_name);
    z_json(d, ",\"handle\":", s->author_handle);
    z_json(d, "},\"created_at\":", s->created_at);
    z_json(d, ",\"updated_at\":", s->updated_at);
    char num[64];
    snprintf(num, sizeof(num), ",\"exchange_count\":%zu,\"toc\":[", n);
    sl_zdoc_gstr(d, num);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sl_zdoc_glue(d, ",", 1);
        sl_zdoc_piece(d, &rows[i].pieces.p[SL_PC_TOC_JSON]);
    }
    sl_zdoc_gstr(d, "],\"exchanges\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sl_zdoc_glue(d, ",", 1);
        sl_zdoc_piece(d, &rows[i].pieces.p[SL_PC_EX_JSON]);
    }
    sl_zdoc_gstr(d, "]}");
}

static void assemble_markdown(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n)
{
    sl_proj_str_t title = session_title(s, rows, n);
    sl_zdoc_gstr(d, "# ");
    sl_zdoc_glue(d, title.p, title.n);
    sl_zdoc_gstr(d, "\n\nProject: ");
    sl_zdoc_glue(d, s->project_name.p, s->project_name.n);
    sl_zdoc_gstr(d, " \xC2\xB7 shared by ");
    sl_zdoc_glue(d, s->author_name.p, s->author_name.n);
    sl_zdoc_gstr(d, " (@");
    sl_zdoc_glue(d, s->author_handle.p, s->author_handle.n);
    sl_zdoc_gstr(d, ")\n");
    for (size_t i = 0; i < n; i++)
        sl_zdoc_piece(d, &rows[i].pieces.p[SL_PC_MD]);
}

/* ---- the viewer page ---- */

/* A project colour goes into a style attribute: only #hex or a plain colour name get through. */
static const char *safe_color(const char *s, size_t n, char *out, size_t cap)
{
    int ok = n > 0 && n < cap;
    if (ok && s[0] == '#') {
        ok = n == 4 || n == 7 || n == 9;
        for (size_t i = 1; ok && i < n; i++)
            ok = isxdigit((unsigned char)s[i]);
    } else {
        for (size_t i = 0; ok && i < n; i++)
            ok = isalpha((unsigned char)s[i]);
    }
    if (!ok)
        return "#5b6b7f";
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

#define TOC_SECTION 100

static const char PAGE_CSS[] =
    ":root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--soft:#f6f8fa;--line:#d1d9e0;"
    "--accent:#0969da}"
    "@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--soft:#151b23;"
    "--line:#3d444d;--accent:#4493f8}}"
    "*{box-sizing:border-box}body{font:16px/1.6 system-ui,-apple-system,'Segoe "
    "UI',sans-serif;color:var(--fg);"
    "background:var(--bg);margin:0}"
    ".wrap{max-width:56rem;margin:0 auto;padding:1.5rem 1rem 4rem}"
    "header h1{font-size:1.75rem;line-height:1.25;margin:.25rem 0 .5rem;overflow-wrap:anywhere}"
    ".meta{color:var(--muted);font-size:.9rem;margin:.25rem 0}"
    ".project{display:inline-flex;align-items:center;gap:.4rem;font-weight:600;color:var(--fg)}"
    ".icon{display:inline-grid;place-items:center;width:1.6rem;height:1.6rem;border-radius:.4rem;color:#fff;"
    "font-weight:700;font-size:.85rem}"
    "nav{background:var(--soft);border:1px solid var(--line);border-radius:.5rem;padding:.5rem "
    "1rem;margin:1.5rem 0}"
    "nav h2{font-size:1rem;margin:.5rem 0}nav ol{margin:.25rem 0;padding-left:2rem}"
    "nav a{color:var(--accent);text-decoration:none}nav a:hover{text-decoration:underline}"
    "article{border-top:1px solid var(--line);padding-top:1rem;margin-top:2rem;scroll-margin-top:1rem}"
    "article:target{outline:2px solid var(--accent);outline-offset:.5rem;border-radius:.25rem}"
    "article>h2{font-size:1.3rem;margin:.25rem 0;overflow-wrap:anywhere}article>h2 a{color:inherit;"
    "text-decoration:none}"
    "h3{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin:1.25rem 0 "
    ".25rem}"
    ".prompt{background:var(--soft);border-left:3px solid var(--accent);padding:.25rem "
    "1rem;border-radius:.25rem}"
    "pre{background:var(--soft);border:1px solid "
    "var(--line);border-radius:.4rem;padding:.75rem;overflow-x:auto;"
    "font-size:.85rem;line-height:1.45}"
    "code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}"
    ".table{overflow-x:auto}table{border-collapse:collapse;margin:.5rem 0}"
    "th,td{border:1px solid var(--line);padding:.3rem .6rem;vertical-align:top}"
    "details{border:1px solid var(--line);border-radius:.4rem;margin:.5rem 0;padding:.25rem .75rem}"
    "details>summary{cursor:pointer;color:var(--muted);font-size:.9rem}"
    "details[open]>summary{margin-bottom:.25rem}"
    "blockquote{margin:.5rem 0;padding-left:1rem;border-left:3px solid var(--line);color:var(--muted)}"
    "img{max-width:100%}a{color:var(--accent)}.unsafe-link{text-decoration:underline dotted}"
    "footer{margin-top:3rem;color:var(--muted);font-size:.85rem}"
    "@media (max-width:40rem){.wrap{padding:1rem .75rem 3rem}header "
    "h1{font-size:1.4rem}pre{font-size:.8rem}}";

static void assemble_html(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t count,
                          uint64_t version)
{
    sl_proj_str_t title = session_title(s, rows, count);
    /* the description: the first visible prompt's (never from a hidden exchange: only visible rows
     * reach the projection) */
    sl_proj_str_t desc = {"", 0};
    if (count > 0)
        desc = (sl_proj_str_t){rows[0].pieces.desc, rows[0].pieces.desc_len};
    sl_zdoc_gstr(d, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                    "<meta name=\"robots\" content=\"noindex, nofollow\">"
                    "<meta name=\"referrer\" content=\"no-referrer\">");
    char tmp[160];
    /* the live script (rpc/live.c) applies an event only to the version it follows */
    snprintf(tmp, sizeof(tmp), "<meta name=\"shareline-version\" content=\"%llu\"><title>",
             (unsigned long long)version);
    sl_zdoc_gstr(d, tmp);
    z_html(d, title);
    sl_zdoc_gstr(d, " \xC2\xB7 Shareline</title>\n<meta name=\"description\" content=\"");
    z_html(d, desc);
    sl_zdoc_gstr(d, "\">\n<meta property=\"og:type\" content=\"article\"><meta property=\"og:site_name\" "
                    "content=\"Shareline\"><meta property=\"og:title\" content=\"");
    z_html(d, title);
    sl_zdoc_gstr(d, "\"><meta property=\"og:description\" content=\"");
    z_html(d, desc);
    sl_zdoc_gstr(
        d, "\">\n<meta name=\"twitter:card\" content=\"summary\"><meta name=\"twitter:title\" content=\"");
    z_html(d, title);
    sl_zdoc_gstr(d, "\"><meta name=\"twitter:description\" content=\"");
    z_html(d, desc);
    sl_zdoc_gstr(d, "\">\n<style>");
    sl_zdoc_gstr(d, PAGE_CSS);
    sl_zdoc_gstr(
        d, "</style></head>\n<body><div class=\"wrap\"><header><p class=\"meta\"><span class=\"project\">"
           "<span class=\"icon\" aria-hidden=\"true\" style=\"background:");
    char color[24];
    sl_zdoc_gstr(d, safe_color(s->project_color.p, s->project_color.n, color, sizeof(color)));
    sl_zdoc_gstr(d, "\" title=\"");
    z_html(d, s->project_icon);
    sl_zdoc_gstr(d, "\">");
    /* the icon: its name's first character (no image, nothing from another origin) */
    sl_proj_str_t pname = s->project_icon.n ? s->project_icon : s->project_name;
    size_t first = pname.n ? 1 : 0;
    while (first < pname.n && ((unsigned char)pname.p[first] & 0xC0) == 0x80)
        first++;
    z_html(d, (sl_proj_str_t){pname.p, first});
    sl_zdoc_gstr(d, "</span><span class=\"project-name\">");
    z_html(d, s->project_name);
    sl_zdoc_gstr(d, "</span></span></p><h1>");
    z_html(d, title);
    sl_zdoc_gstr(d, "</h1><p class=\"meta\">Shared by <span class=\"author\">");
    z_html(d, s->author_name);
    sl_zdoc_gstr(d, "</span> (@");
    z_html(d, s->author_handle);
    snprintf(tmp, sizeof(tmp), ") \xC2\xB7 <span class=\"count\">%zu exchange%s</span>", count,
             count == 1 ? "" : "s");
    sl_zdoc_gstr(d, tmp);
    sl_zdoc_gstr(d, " \xC2\xB7 updated <time datetime=\"");
    z_html(d, s->updated_at);
    sl_zdoc_gstr(d, "\">");
    z_html(d, s->updated_at);
    sl_zdoc_gstr(d, "</time></p></header>\n");

    if (count == 0) {
        sl_zdoc_gstr(d, "<main><p class=\"meta\">No exchanges are shared in this session yet.</p></main>");
    } else {
        /* Table of contents; long sessions get sections of TOC_SECTION, the first one open. */
        sl_zdoc_gstr(d, "<nav aria-label=\"Contents\"><h2>Contents</h2>");
        for (size_t k = 0; k < count; k++) {
            if (k % TOC_SECTION == 0) {
                if (k > 0)
                    sl_zdoc_gstr(d, count > TOC_SECTION ? "</ol></details>" : "</ol>");
                if (count > TOC_SECTION) {
                    size_t last = k + TOC_SECTION < count ? k + TOC_SECTION : count;
                    snprintf(tmp, sizeof(tmp), "<details%s><summary>Exchanges %zu\xE2\x80\x93%zu</summary>",
                             k == 0 ? " open" : "", k + 1, last);
                    sl_zdoc_gstr(d, tmp);
                }
                snprintf(tmp, sizeof(tmp), "<ol start=\"%zu\">", k + 1);
                sl_zdoc_gstr(d, tmp);
            }
            sl_zdoc_piece(d, &rows[k].pieces.p[SL_PC_TOC_HTML]);
        }
        sl_zdoc_gstr(d, count > TOC_SECTION ? "</ol></details></nav>\n<main>" : "</ol></nav>\n<main>");
        for (size_t k = 0; k < count; k++)
            sl_zdoc_piece(d, &rows[k].pieces.p[SL_PC_ART_HTML]);
        sl_zdoc_gstr(d, "</main>");
    }
    sl_zdoc_gstr(d, "<footer>Shared with Shareline. The owner chose which exchanges appear here.</footer>"
                    "</div>\n<script>");
    size_t sn;
    const char *script = sl_rpc_live_script(&sn);
    sl_zdoc_glue(d, script, sn);
    sl_zdoc_gstr(d, "</script></body></html>\n");
}

int sl_projection_assemble(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                           sl_projection_t *out)
{
    uint32_t crc[3];
    size_t plain[3];
    for (int part = 0; part < 3; part++) {
        sl_zdoc_t d;
        sl_zdoc_init(&d);
        if (part == 0)
            assemble_json(&d, s, rows, n);
        else if (part == 1)
            assemble_html(&d, s, rows, n, version);
        else
            assemble_markdown(&d, s, rows, n);
        int gz = 2 * part + 1;
        if (sl_zdoc_finish(&d, &out->rep[gz], &out->rep_len[gz], &crc[part], &plain[part]) != 0)
            return -1;
        out->plain_len[part] = plain[part];
    }
    out->len = out->rep_len[SL_REP_JSON_GZ] + out->rep_len[SL_REP_HTML_GZ] + out->rep_len[SL_REP_MD_GZ];
    /* The ETag names the version and the content (the CRC-32 of the JSON, the page and the
     * Markdown): equal bytes, equal tag, even after a rebuild from scratch. */
    int k = snprintf(out->etag, sizeof(out->etag), "v%llu-%08x%08x%04x", (unsigned long long)version,
                     (unsigned)crc[0], (unsigned)crc[1], (unsigned)(crc[2] >> 16));
    out->etag_len = (size_t)k;
    out->tag = sl_rpc_etag_tag(out->etag, out->etag_len);
    return 0;
}

int sl_projection_plain(sl_projection_t *p)
{
    for (int part = 0; part < 3; part++) {
        int rep = 2 * part;
        if (p->rep[rep] == NULL &&
            sl_gunzip(p->rep[rep + 1], p->rep_len[rep + 1], p->plain_len[part], &p->rep[rep]) != 0)
            return -1;
        p->rep_len[rep] = p->plain_len[part];
    }
    return 0;
}

void sl_projection_content(const sl_projection_t *p, sl_proj_content_t *ct, char metabuf[SL_PROJ_META_MAX])
{
    memset(ct, 0, sizeof(*ct));
    int n = snprintf(metabuf, SL_PROJ_META_MAX, "%.*s %zu %zu %zu", (int)p->etag_len, p->etag,
                     p->plain_len[0], p->plain_len[1], p->plain_len[2]);
    ct->meta = metabuf;
    ct->meta_len = n > 0 && n < SL_PROJ_META_MAX ? (size_t)n : 0;
    ct->nparts = 3;
    for (unsigned i = 0; i < 3; i++) {
        ct->part[i] = p->rep[2 * i + 1];
        ct->len[i] = p->rep_len[2 * i + 1];
    }
}

int sl_stored_meta_parse(const char *meta, size_t len, sl_stored_meta_t *out)
{
    const char *end = meta + len, *sp = memchr(meta, ' ', len);
    if (sp == NULL || sp == meta || (size_t)(sp - meta) > 63)
        return -1;
    out->etag = meta;
    out->etag_len = (size_t)(sp - meta);
    const char *p = sp;
    for (int i = 0; i < 3; i++) {
        if (p >= end || *p != ' ')
            return -1;
        p++;
        size_t v = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9' && v <= SL_MAX_PUBLIC_BYTES)
            v = v * 10 + (size_t)(*p++ - '0');
        if (p == d || v > SL_MAX_PUBLIC_BYTES)
            return -1;
        out->plain_len[i] = v;
    }
    return p == end ? 0 : -1;
}

int sl_gunzip(const void *in, size_t len, size_t plain_len, char **out)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (plain_len > SL_MAX_PUBLIC_BYTES || inflateInit2(&zs, 15 + 16) != Z_OK)
        return -1;
    char *buf = malloc(plain_len ? plain_len : 1);
    if (buf == NULL) {
        inflateEnd(&zs);
        return -1;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)buf;
    zs.avail_out = (uInt)plain_len;
    int rc = inflate(&zs, Z_FINISH);
    int ok = rc == Z_STREAM_END && zs.total_out == plain_len && zs.avail_in == 0;
    inflateEnd(&zs);
    if (!ok) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* The hash stored pieces must carry to be current (see SELECT_COLUMNS): the first 16 bytes of a
 * SHA-256 over the version of the piece format and the exchange's id, title, time and text hashes,
 * each length-prefixed. A missing hash (rows older than the response hash) counts as its own value. */
static void piece_key(int64_t id, sl_proj_str_t title, sl_proj_str_t created, const sl_store_value_t *psha,
                      const sl_store_value_t *rsha, unsigned char out[16])
{
    unsigned char in[8 + 2 * 8 + 2 * 33 + sizeof(SL_PIECES_REV) + 2048], *q = in;
    unsigned char th[SHA256_DIGEST_LENGTH];
    if (title.n + created.n > 2048) { /* cannot happen (500 characters at most): hashed apart */
        SHA256((const unsigned char *)title.p, title.n, th);
        title = (sl_proj_str_t){(const char *)th, sizeof(th)};
    }
    memcpy(q, SL_PIECES_REV, sizeof(SL_PIECES_REV));
    q += sizeof(SL_PIECES_REV);
    uint64_t v[3] = {(uint64_t)id, title.n, created.n < 64 ? created.n : 64};
    memcpy(q, v, sizeof(v));
    q += sizeof(v);
    memcpy(q, title.p, title.n);
    q += title.n;
    memcpy(q, created.p, v[2]);
    q += v[2];
    const sl_store_value_t *h[2] = {psha, rsha};
    for (int i = 0; i < 2; i++) {
        int has = (h[i]->type == SL_STORE_BLOB || h[i]->type == SL_STORE_TEXT) && h[i]->len == 32;
        *q++ = (unsigned char)has;
        if (has) {
            memcpy(q, h[i]->ptr, 32);
            q += 32;
        }
    }
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(in, (size_t)(q - in), d);
    memcpy(out, d, 16);
}

/* The order of the document: by position, then id. */
static int by_position(const void *a, const void *b)
{
    const sl_proj_row_t *x = a, *y = b;
    if (x->position != y->position)
        return x->position < y->position ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The row of t (ordered by id) with this id, or NONE. */
static size_t text_row(const sl_store_result_t *t, int64_t id)
{
    size_t lo = 0, hi = t->nrows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = sl_store_cell(t, mid, T_ID)->i;
        if (v == id)
            return mid;
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

/* Sessions whose pieces and text to render hold more than this are built off the loop. */
#define INLINE_BUILD (64u << 10)
#define NONE         ((size_t)-1)

typedef struct build {
    const sl_store_result_t *t; /* the text of the rows to render (NULL: none) */
    sl_proj_session_t sess;
    sl_proj_row_t *rows;
    size_t n;
    size_t *text_of;       /* per row: its row in t, or NONE when its stored pieces are used */
    unsigned char **blobs; /* per row: the pieces rendered now (malloc'd), or NULL */
    size_t *bloblen;
    uint64_t version;
    unsigned flags;
    sl_projection_t *out;
    int rc;
} build_t;

/* Renders what is missing, then assembles (runs on the loop or on the thread pool: touches only b). */
static void build(void *arg)
{
    build_t *b = arg;
    z_stream z;
    memset(&z, 0, sizeof(z));
    int zok = 0;
    b->rc = 0;
    for (size_t i = 0; i < b->n && b->rc == 0; i++) {
        if (b->text_of[i] == NONE)
            continue;
        if (!zok && deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            b->rc = -1;
            break;
        }
        zok = 1;
        size_t tr = b->text_of[i];
        sl_piece_src_t src = {.id = b->rows[i].id,
                              .title = b->rows[i].title.p,
                              .title_len = b->rows[i].title.n,
                              .created_at = b->rows[i].created_at.p,
                              .created_len = b->rows[i].created_at.n};
        src.prompt = cell(b->t, tr, T_PROMPT, &src.prompt_len);
        src.response = cell(b->t, tr, T_RESPONSE, &src.response_len);
        if (sl_pieces_build(&z, &src, &b->blobs[i], &b->bloblen[i]) != 0 ||
            sl_pieces_read(b->blobs[i], b->bloblen[i], &b->rows[i].pieces) != 0)
            b->rc = -1;
    }
    if (zok)
        deflateEnd(&z);
    if (b->rc == 0)
        b->rc = sl_projection_assemble(&b->sess, b->rows, b->n, b->version, b->out);
    if (b->rc == 0 && (b->flags & SL_PROJ_PLAIN))
        b->rc = sl_projection_plain(b->out);
}

static int is_key(const sl_store_value_t *v)
{
    return (v->type == SL_STORE_BLOB || v->type == SL_STORE_TEXT) && v->len == 16;
}

static void too_large(sl_store_error_t *err, size_t text)
{
    err->code = SL_STORE_E_QUERY;
    err->server_errno = 0;
    snprintf(err->message, sizeof(err->message),
             "the public page of this session would exceed %u MiB (its visible exchanges hold %zu bytes of "
             "text to show); hide or delete exchanges, or split the session",
             SL_MAX_PUBLIC_BYTES >> 20, text);
}

#define RETRY 1

static int load_once(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                     const char *id, size_t idlen, unsigned flags, sl_projection_t *out,
                     sl_store_error_t *err)
{
    memset(out, 0, sizeof(*out));
    sl_store_value_t p[] = {sl_store_text(id, idlen), sl_store_int(0)};
    const char *sql = view == SL_VIEW_PUBLIC ? SQL_LOAD_PUBLIC : SQL_LOAD_VIEWER;
    sl_store_result_t *r = conn ? sl_await_exec(conn, sql, p, 1, err) : sl_await_query(store, sql, p, 1, err);
    if (r == NULL)
        return -1;
    if (r->nrows == 0 || r->ncols != C_COUNT) {
        sl_store_result_free(r);
        return 0; /* not visible: found = 0 */
    }
    out->found = 1;
    build_t b = {.version = (uint64_t)sl_store_cell(r, 0, C_VERSION)->i, .flags = flags, .out = out};
    out->version = b.version;
    b.sess = (sl_proj_session_t){str_of(r, 0, C_ID),      str_of(r, 0, C_TITLE), str_of(r, 0, C_CREATED),
                                 str_of(r, 0, C_UPDATED), str_of(r, 0, C_PNAME), str_of(r, 0, C_PICON),
                                 str_of(r, 0, C_PCOLOR),  str_of(r, 0, C_ANAME), str_of(r, 0, C_AHANDLE)};
    size_t rows = r->nrows;
    b.rows = calloc(rows, sizeof(*b.rows));
    b.text_of = calloc(rows, sizeof(*b.text_of));
    b.blobs = calloc(rows, sizeof(*b.blobs));
    b.bloblen = calloc(rows, sizeof(*b.bloblen));
    sl_store_result_t *t = NULL;
    int rc = -1;
    if (b.rows == NULL || b.text_of == NULL || b.blobs == NULL || b.bloblen == NULL) {
        err->code = SL_STORE_E_QUERY;
        err->server_errno = 0;
        snprintf(err->message, sizeof(err->message), "out of memory building the projection");
        goto out;
    }
    /* The rows, and which of them have current pieces. */
    size_t stale = 0, bytes = 0;
    int all = (flags & SL_PROJ_SCRATCH) != 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN; /* the ids of the rows to render */
    for (size_t row = 0; row < rows; row++) {
        const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
        if (eid->type != SL_STORE_INT)
            continue; /* LEFT JOIN row of a session without visible exchanges */
        sl_proj_row_t *e = &b.rows[b.n++];
        e->id = eid->i;
        e->position = sl_store_cell(r, row, C_EPOS)->i;
        e->at = row;
    }
    qsort(b.rows, b.n, sizeof(*b.rows), by_position);
    for (size_t i = 0; i < b.n; i++) {
        sl_proj_row_t *e = &b.rows[i];
        size_t row = e->at;
        e->title = str_of(r, row, C_ETITLE);
        e->created_at = str_of(r, row, C_ECREATED);
        piece_key(e->id, e->title, e->created_at, sl_store_cell(r, row, C_EPSHA),
                  sl_store_cell(r, row, C_ERSHA), e->key);
        const sl_store_value_t *pk = sl_store_cell(r, row, C_EPKEY), *pc = sl_store_cell(r, row, C_EPIECES);
        int current = !all && is_key(pk) && memcmp(pk->ptr, e->key, 16) == 0 &&
                      sl_pieces_read(pc->ptr, pc->len, &e->pieces) == 0;
        if (!current) {
            lo = e->id < lo ? e->id : lo;
            hi = e->id > hi ? e->id : hi;
        }
        b.text_of[i] = current ? NONE : 0;
        stale += !current;
        bytes += current ? pc->len : 0;
    }
    if (stale > 0) {
        /* The text of the rows to render: in the owner's transaction, the same snapshot as the
         * rows; outside one, checked against the rows' keys (a change in between: start over). */
        const char *tsql = view == SL_VIEW_PUBLIC ? SQL_TEXT_PUBLIC : SQL_TEXT_VIEWER;
        sl_store_value_t tp[] = {p[0], sl_store_int(lo), sl_store_int(hi)};
        t = conn ? sl_await_exec(conn, tsql, tp, 3, err) : sl_await_query(store, tsql, tp, 3, err);
        if (t == NULL)
            goto out;
        if (t->ncols != T_COUNT) {
            err->code = SL_STORE_E_QUERY;
            err->server_errno = 0;
            snprintf(err->message, sizeof(err->message), "unexpected columns reading exchanges");
            goto out;
        }
        size_t text = 0;
        for (size_t i = 0; i < b.n; i++) {
            if (b.text_of[i] == NONE)
                continue;
            size_t j = text_row(t, b.rows[i].id);
            unsigned char k[16];
            if (j != NONE)
                piece_key(b.rows[i].id, str_of(t, j, T_TITLE), str_of(t, j, T_CREATED),
                          sl_store_cell(t, j, T_PSHA), sl_store_cell(t, j, T_RSHA), k);
            if (j == NONE || memcmp(k, b.rows[i].key, 16) != 0) {
                rc = conn ? -1 : RETRY;
                if (conn) {
                    err->code = SL_STORE_E_QUERY;
                    err->server_errno = 0;
                    snprintf(err->message, sizeof(err->message), "the exchanges changed while read");
                }
                goto out;
            }
            b.text_of[i] = j;
            text += sl_store_cell(t, j, T_PROMPT)->len + sl_store_cell(t, j, T_RESPONSE)->len;
        }
        /* Every representation holds the text at least once: text over a third of the cap cannot
         * fit, and is refused before anything is rendered. */
        if (text > SL_MAX_PUBLIC_BYTES / 3) {
            too_large(err, text);
            rc = -2;
            goto out;
        }
        bytes += text;
        b.t = t;
    }
    /* Rendering and compressing a large session would stall the loop: it goes to the thread pool. */
    if (bytes > INLINE_BUILD)
        sl_await_work(core->loop, build, &b);
    else
        build(&b);
    if (b.rc != 0) {
        err->code = SL_STORE_E_QUERY;
        err->server_errno = 0;
        snprintf(err->message, sizeof(err->message), "out of memory building the projection");
        goto out;
    }
    size_t largest = 0;
    for (int part = 0; part < 3; part++)
        largest = out->plain_len[part] > largest ? out->plain_len[part] : largest;
    if (out->len > SL_MAX_PUBLIC_BYTES || largest > SL_MAX_PUBLIC_BYTES) {
        too_large(err, largest);
        rc = -2;
        goto out;
    }
    /* The pieces rendered now stay with their exchange: the next change renders only what it
     * touches. Only inside the owner's transaction, where the rows cannot change meanwhile. */
    rc = 0;
    for (size_t i = 0; conn && !(flags & SL_PROJ_SCRATCH) && i < b.n; i++) {
        if (b.blobs[i] == NULL)
            continue;
        sl_store_value_t kp[] = {sl_store_blob(b.blobs[i], b.bloblen[i]), sl_store_blob(b.rows[i].key, 16),
                                 sl_store_text(id, idlen), sl_store_int(b.rows[i].id)};
        sl_store_result_t *u = sl_await_exec(conn, SQL_KEEP_PIECES, kp, 4, err);
        if (u == NULL) {
            rc = -1;
            break;
        }
        sl_store_result_free(u);
    }
out:
    if (rc != 0)
        sl_projection_free(out);
    for (size_t i = 0; b.blobs && i < b.n; i++)
        free(b.blobs[i]);
    free(b.rows);
    free(b.text_of);
    free(b.blobs);
    free(b.bloblen);
    sl_store_result_free(t);
    sl_store_result_free(r);
    return rc;
}

int sl_projection_load(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                       const char *id, size_t idlen, unsigned flags, sl_projection_t *out,
                       sl_store_error_t *err)
{
    if (core->cfg.projection_scratch)
        flags |= SL_PROJ_SCRATCH;
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = load_once(core, store, conn, view, id, idlen, flags, out, err);
        if (rc != RETRY)
            return rc;
    }
    err->code = SL_STORE_E_QUERY;
    err->server_errno = 0;
    snprintf(err->message, sizeof(err->message), "the session kept changing while its page was built; retry");
    return -1;
}

void sl_projection_free(sl_projection_t *p)
{
    for (int r = 0; r < SL_REP_COUNT; r++) {
        free(p->rep[r]);
        p->rep[r] = NULL;
    }
}
