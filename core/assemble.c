/*
 * The public documents of a session — the JSON document (API.md), the viewer page and the
 * Markdown alternate — assembled as gzip members from the session's fields (glue) and its visible
 * exchanges' pieces (core/pieces.h, docs/pieces.md), or counted from a chunk state's sums
 * (chunks.c). Pure: equal inputs give equal bytes, which is what lets a document assembled from
 * kept pieces equal a full rebuild. Also the stored forms' helpers: the entry's meta, and inflating
 * a member (sl_gunzip).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/internal/chunks.h"
#include "core/internal/pieces.h"
#include "core/internal/projection.h"
#include "core/internal/render.h"

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
static sl_proj_str_t session_title(const sl_proj_session_t *s, const sl_proj_seq_t *q)
{
    if (s->title.n > 0)
        return s->title;
    if (q->n > 0)
        return (sl_proj_str_t){q->first->title, q->first->title_len};
    return (sl_proj_str_t){"Untitled session", strlen("Untitled session")};
}

/* The pieces of kind `kind` of exchanges a..b-1, a comma between each two when commas: copied one
 * by one, or (a dry build from chunk sums) counted as one. */
static void emit(sl_zdoc_t *d, const sl_proj_seq_t *q, unsigned kind, size_t a, size_t b, int commas)
{
    if (q->rows == NULL) {
        if (a < b) {
            sl_piece_t v;
            sl_chunks_span(q->chunks, kind, a, b, commas, &v);
            sl_zdoc_piece(d, &v);
        }
        return;
    }
    for (size_t i = a; i < b; i++) {
        if (commas && i > a)
            sl_zdoc_glue(d, ",", 1);
        sl_zdoc_piece(d, &q->rows[i].pieces.p[kind]);
    }
}

static void assemble_json(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_seq_t *q)
{
    size_t n = q->n;
    z_json(d, "{\"id\":", s->id);
    z_json(d, ",\"title\":", session_title(s, q));
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
    emit(d, q, SL_PC_TOC_JSON, 0, n, 1);
    sl_zdoc_gstr(d, "],\"exchanges\":[");
    emit(d, q, SL_PC_EX_JSON, 0, n, 1);
    sl_zdoc_gstr(d, "]}");
}

static void assemble_markdown(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_seq_t *q)
{
    sl_proj_str_t title = session_title(s, q);
    sl_zdoc_gstr(d, "# ");
    sl_zdoc_glue(d, title.p, title.n);
    sl_zdoc_gstr(d, "\n\nProject: ");
    sl_zdoc_glue(d, s->project_name.p, s->project_name.n);
    sl_zdoc_gstr(d, " \xC2\xB7 shared by ");
    sl_zdoc_glue(d, s->author_name.p, s->author_name.n);
    sl_zdoc_gstr(d, " (@");
    sl_zdoc_glue(d, s->author_handle.p, s->author_handle.n);
    sl_zdoc_gstr(d, ")\n");
    emit(d, q, SL_PC_MD, 0, q->n, 0);
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

/* The page's CSS and live script are the same on every page: deflated once, laid in like pieces. */
static sl_piece_t constants[2];
static pthread_once_t constants_once = PTHREAD_ONCE_INIT;

static void make_piece(const char *p, size_t n, sl_piece_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    sl_buf_t b = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    if (sl_buf_reserve(&b, deflateBound(&z, n) + 64) != 0)
        abort();
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)b.p;
    z.avail_out = (uInt)(b.cap - 1);
    if (deflate(&z, Z_FULL_FLUSH) != Z_OK || z.avail_in != 0 || z.avail_out == 0)
        abort(); /* deflateBound is enough room for one call */
    *out =
        (sl_piece_t){(const unsigned char *)b.p, b.cap - 1 - z.avail_out, n,
                     (uint32_t)crc32(0, (const Bytef *)p, (uInt)n), (uint32_t)crc32_combine_gen((z_off_t)n)};
    deflateEnd(&z);
}

static void make_constants(void)
{
    size_t sn;
    const char *script = sl_rpc_live_script(&sn);
    make_piece(PAGE_CSS, sizeof(PAGE_CSS) - 1, &constants[0]);
    make_piece(script, sn, &constants[1]);
}

static const sl_piece_t *constant_pieces(void)
{
    pthread_once(&constants_once, make_constants);
    return constants;
}

static void assemble_html(sl_zdoc_t *d, const sl_proj_session_t *s, const sl_proj_seq_t *q, uint64_t version)
{
    size_t count = q->n;
    sl_proj_str_t title = session_title(s, q);
    /* the description: the first visible prompt's (never from a hidden exchange: only visible rows
     * reach the projection) */
    sl_proj_str_t desc = {"", 0};
    if (count > 0)
        desc = (sl_proj_str_t){q->first->desc, q->first->desc_len};
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
    sl_zdoc_piece(d, &constant_pieces()[0]);
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
        for (size_t k = 0; k < count; k += TOC_SECTION) {
            size_t last = k + TOC_SECTION < count ? k + TOC_SECTION : count;
            if (k > 0)
                sl_zdoc_gstr(d, count > TOC_SECTION ? "</ol></details>" : "</ol>");
            if (count > TOC_SECTION) {
                snprintf(tmp, sizeof(tmp), "<details%s><summary>Exchanges %zu\xE2\x80\x93%zu</summary>",
                         k == 0 ? " open" : "", k + 1, last);
                sl_zdoc_gstr(d, tmp);
            }
            snprintf(tmp, sizeof(tmp), "<ol start=\"%zu\">", k + 1);
            sl_zdoc_gstr(d, tmp);
            emit(d, q, SL_PC_TOC_HTML, k, last, 0);
        }
        sl_zdoc_gstr(d, count > TOC_SECTION ? "</ol></details></nav>\n<main>" : "</ol></nav>\n<main>");
        emit(d, q, SL_PC_ART_HTML, 0, count, 0);
        sl_zdoc_gstr(d, "</main>");
    }
    sl_zdoc_gstr(d, "<footer>Shared with Shareline. The owner chose which exchanges appear here.</footer>"
                    "</div>\n<script>");
    sl_zdoc_piece(d, &constant_pieces()[1]);
    sl_zdoc_gstr(d, "</script></body></html>\n");
}

static int assemble_part(const sl_proj_session_t *s, const sl_proj_seq_t *q, uint64_t version, unsigned part,
                         int dry, char **gz, size_t *gzlen, uint32_t *crc, size_t *plain)
{
    sl_zdoc_t d;
    sl_zdoc_init(&d);
    d.dry = dry || q->rows == NULL;
    if (part == 0)
        assemble_json(&d, s, q);
    else if (part == 1)
        assemble_html(&d, s, q, version);
    else
        assemble_markdown(&d, s, q);
    return sl_zdoc_finish(&d, gz, gzlen, crc, plain);
}

int sl_projection_assemble_part(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n,
                                uint64_t version, unsigned part, int dry, char **gz, size_t *gzlen,
                                uint32_t *crc, size_t *plain)
{
    sl_proj_seq_t q = {n, rows, NULL, n > 0 ? &rows[0].pieces : NULL};
    return assemble_part(s, &q, version, part, dry, gz, gzlen, crc, plain);
}

int sl_projection_assemble(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                           int dry, sl_projection_t *out)
{
    sl_proj_seq_t q = {n, rows, NULL, n > 0 ? &rows[0].pieces : NULL};
    return sl_projection_assemble_seq(s, &q, version, dry, out);
}

int sl_projection_assemble_seq(const sl_proj_session_t *s, const sl_proj_seq_t *q, uint64_t version, int dry,
                               sl_projection_t *out)
{
    uint32_t crc[3];
    for (unsigned part = 0; part < 3; part++) {
        int gz = 2 * (int)part + 1;
        if (assemble_part(s, q, version, part, dry, &out->rep[gz], &out->rep_len[gz], &crc[part],
                          &out->plain_len[part]) != 0)
            return -1;
        out->gz_len[part] = out->rep_len[gz];
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

int sl_etag_part_matches(const char *etag, size_t len, unsigned part, uint32_t crc)
{
    const char *dash = memchr(etag, '-', len);
    if (dash == NULL || (size_t)(etag + len - dash) != 1 + 8 + 8 + 4 || part > 2)
        return 0;
    char want[9];
    int n = part < 2 ? snprintf(want, sizeof(want), "%08x", (unsigned)crc)
                     : snprintf(want, sizeof(want), "%04x", (unsigned)(crc >> 16));
    return memcmp(dash + 1 + 8 * part, want, (size_t)n) == 0;
}

int sl_projection_plain(sl_projection_t *p, unsigned flags)
{
    for (int part = 0; part < 3; part++) {
        int rep = 2 * part;
        if (!(flags & SL_PROJ_PLAIN_PART(part)) || p->rep[rep] != NULL)
            continue;
        if (sl_gunzip(p->rep[rep + 1], p->rep_len[rep + 1], p->plain_len[part], &p->rep[rep]) != 0)
            return -1;
        p->rep_len[rep] = p->plain_len[part];
    }
    return 0;
}

/* ---- stored forms ---- */

int sl_stored_meta_parse(const char *meta, size_t len, sl_stored_meta_t *out)
{
    const char *end = meta + len, *sp = memchr(meta, ' ', len);
    if (sp == NULL || sp == meta || (size_t)(sp - meta) > 63)
        return -1;
    out->etag = meta;
    out->etag_len = (size_t)(sp - meta);
    const char *p = sp;
    for (int i = 0; i < 6; i++) {
        if (p >= end || *p != ' ')
            return -1;
        p++;
        size_t v = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9' && v <= SL_MAX_PUBLIC_BYTES)
            v = v * 10 + (size_t)(*p++ - '0');
        if (p == d || v > SL_MAX_PUBLIC_BYTES)
            return -1;
        if (i < 3)
            out->plain_len[i] = v;
        else
            out->gz_len[i - 3] = v;
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
