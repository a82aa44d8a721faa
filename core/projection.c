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
#include <jansson.h>
#include <msgpack.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "core/internal/projection.h"
#include "core/internal/render.h"

#define SELECT_COLUMNS                                                                                       \
    "SELECT s.id, s.version, s.title, s.created_at, s.updated_at, s.project_name, s.project_icon,"           \
    " s.project_color, s.author_name, s.author_handle, e.id, e.title, e.prompt, e.response, e.created_at"

static const char SQL_LOAD_PUBLIC[] =
    SELECT_COLUMNS " FROM public_sessions s LEFT JOIN public_exchanges e ON e.session_id = s.id"
                   " WHERE s.id = ? ORDER BY e.position, e.id";
static const char SQL_LOAD_VIEWER[] =
    SELECT_COLUMNS " FROM viewer_sessions s LEFT JOIN viewer_exchanges e ON e.session_id = s.id"
                   " WHERE s.id = ? ORDER BY e.position, e.id";

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
    C_EPROMPT,
    C_ERESPONSE,
    C_ECREATED,
    C_COUNT
};

/* ---- a growable byte buffer ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void buf_add(buf_t *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

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

static json_t *jstr(const sl_store_result_t *r, size_t row, size_t col)
{
    size_t n;
    const char *s = cell(r, row, col, &n);
    return json_stringn(s, n);
}

static int gzip(const char *in, size_t len, char **out, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&zs, len) + 32;
    *out = malloc(cap);
    if (*out == NULL) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)*out;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(*out);
        return -1;
    }
    return 0;
}

/* A session without a title of its own (stored as '') is called after its first *visible*
 * exchange, so hiding that exchange also takes its words out of the session title. */
static const char *session_title(const sl_store_result_t *r, size_t *len)
{
    const char *s = cell(r, 0, C_TITLE, len);
    if (*len > 0)
        return s;
    for (size_t row = 0; row < r->nrows; row++)
        if (sl_store_cell(r, row, C_EID)->type == SL_STORE_INT)
            return cell(r, row, C_ETITLE, len);
    *len = strlen("Untitled session");
    return "Untitled session";
}

static json_t *build_json(const sl_store_result_t *r, size_t *visible)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "id", jstr(r, 0, C_ID));
    size_t tlen;
    const char *title = session_title(r, &tlen);
    json_object_set_new(doc, "title", json_stringn(title, tlen));
    json_t *project = json_object();
    json_object_set_new(project, "name", jstr(r, 0, C_PNAME));
    json_object_set_new(project, "icon", jstr(r, 0, C_PICON));
    json_object_set_new(project, "color", jstr(r, 0, C_PCOLOR));
    json_object_set_new(doc, "project", project);
    json_t *author = json_object();
    json_object_set_new(author, "name", jstr(r, 0, C_ANAME));
    json_object_set_new(author, "handle", jstr(r, 0, C_AHANDLE));
    json_object_set_new(doc, "author", author);
    json_object_set_new(doc, "created_at", jstr(r, 0, C_CREATED));
    json_object_set_new(doc, "updated_at", jstr(r, 0, C_UPDATED));
    json_t *toc = json_array(), *exchanges = json_array();
    size_t n = 0;
    for (size_t row = 0; row < r->nrows; row++) {
        const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
        if (eid->type != SL_STORE_INT)
            continue; /* LEFT JOIN row of a session without visible exchanges */
        json_t *t = json_object();
        json_object_set_new(t, "id", json_integer(eid->i));
        json_object_set_new(t, "title", jstr(r, row, C_ETITLE));
        json_array_append_new(toc, t);
        json_t *e = json_object();
        json_object_set_new(e, "id", json_integer(eid->i));
        json_object_set_new(e, "title", jstr(r, row, C_ETITLE));
        json_object_set_new(e, "prompt", jstr(r, row, C_EPROMPT));
        json_object_set_new(e, "response", jstr(r, row, C_ERESPONSE));
        json_object_set_new(e, "created_at", jstr(r, row, C_ECREATED));
        json_array_append_new(exchanges, e);
        n++;
    }
    json_object_set_new(doc, "exchange_count", json_integer((json_int_t)n));
    json_object_set_new(doc, "toc", toc);
    json_object_set_new(doc, "exchanges", exchanges);
    *visible = n;
    return doc;
}

/* ---- the viewer page ---- */

static void out_buf(const char *s, size_t n, void *ud)
{
    buf_add(ud, s, n);
}

static void buf_md(buf_t *b, const char *s, size_t n)
{
    sl_render_markdown(s, n, out_buf, b);
}

/* HTML-escapes text for element content and quoted attribute values (render.h's rules). */
static void buf_html(buf_t *b, const char *s, size_t n)
{
    sl_render_escape(s, n, out_buf, b);
}

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

/* The page description: the first visible prompt, whitespace collapsed, at most 200 bytes cut on
 * a character boundary. Never from a hidden exchange: only visible rows reach the projection. */
static void buf_description(buf_t *b, const sl_store_result_t *r)
{
    for (size_t row = 0; row < r->nrows; row++) {
        if (sl_store_cell(r, row, C_EID)->type != SL_STORE_INT)
            continue;
        size_t n;
        const char *p = cell(r, row, C_EPROMPT, &n);
        char out[204];
        size_t k = 0;
        int space = 0;
        for (size_t i = 0; i < n && k < 200; i++) {
            unsigned char ch = (unsigned char)p[i];
            if (isspace(ch)) {
                space = k > 0;
                continue;
            }
            if (space && k < 199) {
                out[k++] = ' ';
                space = 0;
            }
            out[k++] = (char)ch;
        }
        while (k > 0 && k < n && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
            k--; /* may have cut a multi-byte character: drop its continuation bytes... */
        if (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0xC0)
            k--; /* ...and its lead byte */
        buf_html(b, out, k);
        return;
    }
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

static void build_html(buf_t *b, const sl_store_result_t *r, uint64_t version)
{
    size_t n, tn;
    const char *s;
    const char *title = session_title(r, &tn);
    buf_str(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
               "<meta name=\"robots\" content=\"noindex, nofollow\">"
               "<meta name=\"referrer\" content=\"no-referrer\">");
    char vmeta[80];
    /* the live script (rpc/live.c) applies an event only to the version it follows */
    snprintf(vmeta, sizeof(vmeta), "<meta name=\"shareline-version\" content=\"%llu\"><title>",
             (unsigned long long)version);
    buf_str(b, vmeta);
    buf_html(b, title, tn);
    buf_str(b, " \xC2\xB7 Shareline</title>\n<meta name=\"description\" content=\"");
    buf_description(b, r);
    buf_str(b, "\">\n<meta property=\"og:type\" content=\"article\"><meta property=\"og:site_name\" "
               "content=\"Shareline\"><meta property=\"og:title\" content=\"");
    buf_html(b, title, tn);
    buf_str(b, "\"><meta property=\"og:description\" content=\"");
    buf_description(b, r);
    buf_str(b,
            "\">\n<meta name=\"twitter:card\" content=\"summary\"><meta name=\"twitter:title\" content=\"");
    buf_html(b, title, tn);
    buf_str(b, "\"><meta name=\"twitter:description\" content=\"");
    buf_description(b, r);
    buf_str(b, "\">\n<style>");
    buf_str(b, PAGE_CSS);
    buf_str(b, "</style></head>\n<body><div class=\"wrap\"><header><p class=\"meta\"><span class=\"project\">"
               "<span class=\"icon\" aria-hidden=\"true\" style=\"background:");
    char color[24];
    s = cell(r, 0, C_PCOLOR, &n);
    buf_str(b, safe_color(s, n, color, sizeof(color)));
    buf_str(b, "\" title=\"");
    s = cell(r, 0, C_PICON, &n);
    buf_html(b, s, n);
    buf_str(b, "\">");
    /* the icon: its name's first character (no image, nothing from another origin) */
    const char *pname = cell(r, 0, C_PNAME, &n);
    size_t first = n ? 1 : 0;
    if (s && *s) {
        pname = s;
        n = strlen(s);
        first = 1;
    }
    while (first < n && ((unsigned char)pname[first] & 0xC0) == 0x80)
        first++;
    buf_html(b, pname, first);
    buf_str(b, "</span><span class=\"project-name\">");
    s = cell(r, 0, C_PNAME, &n);
    buf_html(b, s, n);
    buf_str(b, "</span></span></p><h1>");
    buf_html(b, title, tn);
    buf_str(b, "</h1><p class=\"meta\">Shared by <span class=\"author\">");
    s = cell(r, 0, C_ANAME, &n);
    buf_html(b, s, n);
    buf_str(b, "</span> (@");
    s = cell(r, 0, C_AHANDLE, &n);
    buf_html(b, s, n);
    size_t count = 0;
    for (size_t row = 0; row < r->nrows; row++)
        count += sl_store_cell(r, row, C_EID)->type == SL_STORE_INT;
    char countbuf[64];
    snprintf(countbuf, sizeof(countbuf), ") \xC2\xB7 <span class=\"count\">%zu exchange%s</span>", count,
             count == 1 ? "" : "s");
    buf_str(b, countbuf);
    buf_str(b, " \xC2\xB7 updated <time datetime=\"");
    s = cell(r, 0, C_UPDATED, &n);
    buf_html(b, s, n);
    buf_str(b, "\">");
    buf_html(b, s, n);
    buf_str(b, "</time></p></header>\n");

    char idbuf[32], tmp[160];
    if (count == 0) {
        buf_str(b, "<main><p class=\"meta\">No exchanges are shared in this session yet.</p></main>");
    } else {
        /* Table of contents; long sessions get sections of TOC_SECTION, the first one open. */
        buf_str(b, "<nav aria-label=\"Contents\"><h2>Contents</h2>");
        size_t k = 0;
        for (size_t row = 0; row < r->nrows; row++) {
            const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
            if (eid->type != SL_STORE_INT)
                continue;
            if (k % TOC_SECTION == 0) {
                if (k > 0)
                    buf_str(b, count > TOC_SECTION ? "</ol></details>" : "</ol>");
                if (count > TOC_SECTION) {
                    size_t last = k + TOC_SECTION < count ? k + TOC_SECTION : count;
                    snprintf(tmp, sizeof(tmp), "<details%s><summary>Exchanges %zu\xE2\x80\x93%zu</summary>",
                             k == 0 ? " open" : "", k + 1, last);
                    buf_str(b, tmp);
                }
                snprintf(tmp, sizeof(tmp), "<ol start=\"%zu\">", k + 1);
                buf_str(b, tmp);
            }
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)eid->i);
            buf_str(b, "<li><a href=\"#exchange-");
            buf_str(b, idbuf);
            buf_str(b, "\">");
            s = cell(r, row, C_ETITLE, &n);
            buf_html(b, s, n);
            buf_str(b, "</a></li>");
            k++;
        }
        buf_str(b, count > TOC_SECTION ? "</ol></details></nav>\n<main>" : "</ol></nav>\n<main>");
        for (size_t row = 0; row < r->nrows; row++) {
            const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
            if (eid->type != SL_STORE_INT)
                continue;
            snprintf(idbuf, sizeof(idbuf), "%lld", (long long)eid->i);
            buf_str(b, "<article id=\"exchange-");
            buf_str(b, idbuf);
            buf_str(b, "\"><h2><a href=\"#exchange-");
            buf_str(b, idbuf);
            buf_str(b, "\">");
            s = cell(r, row, C_ETITLE, &n);
            buf_html(b, s, n);
            buf_str(b, "</a></h2><p class=\"meta\"><time datetime=\"");
            s = cell(r, row, C_ECREATED, &n);
            buf_html(b, s, n);
            buf_str(b, "\">");
            buf_html(b, s, n);
            buf_str(b, "</time></p><h3>Prompt</h3><div class=\"prompt\">");
            s = cell(r, row, C_EPROMPT, &n);
            buf_md(b, s, n);
            buf_str(b, "</div><h3>Response</h3><div class=\"response\">");
            s = cell(r, row, C_ERESPONSE, &n);
            buf_md(b, s, n);
            buf_str(b, "</div></article>\n");
        }
        buf_str(b, "</main>");
    }
    buf_str(b, "<footer>Shared with Shareline. The owner chose which exchanges appear here.</footer>"
               "</div>\n<script>");
    size_t sn;
    const char *script = sl_rpc_live_script(&sn);
    buf_add(b, script, sn);
    buf_str(b, "</script></body></html>\n");
}

/* The Markdown alternate (Accept: text/markdown): the visible exchanges only. */
static void build_markdown(buf_t *b, const sl_store_result_t *r)
{
    size_t n, tn;
    const char *title = session_title(r, &tn);
    buf_str(b, "# ");
    buf_add(b, title, tn);
    buf_str(b, "\n\n");
    const char *s = cell(r, 0, C_PNAME, &n);
    buf_str(b, "Project: ");
    buf_add(b, s, n);
    buf_str(b, " \xC2\xB7 shared by ");
    s = cell(r, 0, C_ANAME, &n);
    buf_add(b, s, n);
    buf_str(b, " (@");
    s = cell(r, 0, C_AHANDLE, &n);
    buf_add(b, s, n);
    buf_str(b, ")\n");
    char idbuf[48];
    for (size_t row = 0; row < r->nrows; row++) {
        const sl_store_value_t *eid = sl_store_cell(r, row, C_EID);
        if (eid->type != SL_STORE_INT)
            continue;
        buf_str(b, "\n---\n\n## ");
        s = cell(r, row, C_ETITLE, &n);
        buf_add(b, s, n);
        snprintf(idbuf, sizeof(idbuf), "\n\n<!-- exchange %lld, ", (long long)eid->i);
        buf_str(b, idbuf);
        s = cell(r, row, C_ECREATED, &n);
        buf_add(b, s, n);
        buf_str(b, " -->\n\n### Prompt\n\n");
        s = cell(r, row, C_EPROMPT, &n);
        buf_add(b, s, n);
        buf_str(b, "\n\n### Response\n\n");
        s = cell(r, row, C_ERESPONSE, &n);
        buf_add(b, s, n);
        buf_str(b, "\n");
    }
}

static int pack_projection(const sl_store_result_t *r, sl_projection_t *out)
{
    size_t visible;
    json_t *doc = build_json(r, &visible);
    char *json = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (json == NULL)
        return -1;
    buf_t html = {0}, md = {0};
    build_html(&html, r, out->version);
    build_markdown(&md, r);
    out->rep[SL_REP_JSON] = json;
    out->rep_len[SL_REP_JSON] = strlen(json);
    out->rep[SL_REP_HTML] = html.p;
    out->rep_len[SL_REP_HTML] = html.len;
    out->rep[SL_REP_MD] = md.p;
    out->rep_len[SL_REP_MD] = md.len;
    if (html.oom || md.oom)
        return -1;
    for (int rep = SL_REP_JSON; rep < SL_REP_COUNT; rep += 2)
        if (gzip(out->rep[rep], out->rep_len[rep], &out->rep[rep + 1], &out->rep_len[rep + 1]) != 0)
            return -1;
    out->len = out->rep_len[SL_REP_JSON_GZ] + out->rep_len[SL_REP_HTML_GZ] + out->rep_len[SL_REP_MD_GZ];

    /* The ETag names the version and the content: equal bytes, equal tag, even after a rebuild. */
    unsigned char dj[SHA256_DIGEST_LENGTH], dh[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)json, out->rep_len[SL_REP_JSON], dj);
    SHA256((const unsigned char *)html.p, html.len, dh);
    int k = snprintf(out->etag, sizeof(out->etag), "v%llu-", (unsigned long long)out->version);
    for (int i = 0; i < 5; i++)
        k += snprintf(out->etag + k, sizeof(out->etag) - (size_t)k, "%02x%02x", dj[i], dh[i]);
    out->etag_len = (size_t)k;
    out->tag = sl_rpc_etag_tag(out->etag, out->etag_len);
    return 0;
}

void sl_projection_content(const sl_projection_t *p, sl_proj_content_t *ct, char metabuf[SL_PROJ_META_MAX])
{
    memset(ct, 0, sizeof(*ct));
    int n = snprintf(metabuf, SL_PROJ_META_MAX, "%.*s %zu %zu %zu", (int)p->etag_len, p->etag,
                     p->rep_len[SL_REP_JSON], p->rep_len[SL_REP_HTML], p->rep_len[SL_REP_MD]);
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

/* Sessions whose rows hold more than this are built off the loop. */
#define INLINE_BUILD (64u << 10)

typedef struct build {
    const sl_store_result_t *r;
    sl_projection_t *out;
    int rc;
} build_t;

static void build(void *arg)
{
    build_t *b = arg;
    b->rc = pack_projection(b->r, b->out);
}

static size_t result_bytes(const sl_store_result_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nrows * r->ncols; i++)
        n += r->cells[i].len;
    return n;
}

int sl_projection_load(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                       const char *id, size_t idlen, sl_projection_t *out, sl_store_error_t *err)
{
    memset(out, 0, sizeof(*out));
    sl_store_value_t p[] = {sl_store_text(id, idlen)};
    const char *sql = view == SL_VIEW_PUBLIC ? SQL_LOAD_PUBLIC : SQL_LOAD_VIEWER;
    sl_store_result_t *r = conn ? sl_await_exec(conn, sql, p, 1, err) : sl_await_query(store, sql, p, 1, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->nrows > 0 && r->ncols == C_COUNT) {
        out->found = 1;
        out->version = (uint64_t)sl_store_cell(r, 0, C_VERSION)->i;
        /* Rendering and compressing a large session would stall the loop: it goes to the thread
         * pool (pack_projection touches only r and out). Every representation holds the text at
         * least once, so text over a third of the cap cannot fit: refused before any work. */
        size_t text = result_bytes(r);
        build_t b = {r, out, 0};
        if (text <= SL_MAX_PUBLIC_BYTES / 3) {
            if (text > INLINE_BUILD)
                sl_await_work(core->loop, build, &b);
            else
                build(&b);
        }
        size_t largest = 0;
        for (int rep = 0; rep < SL_REP_COUNT; rep++)
            largest = out->rep_len[rep] > largest ? out->rep_len[rep] : largest;
        if (text > SL_MAX_PUBLIC_BYTES / 3 ||
            (b.rc == 0 && (out->len > SL_MAX_PUBLIC_BYTES || largest > SL_MAX_PUBLIC_BYTES))) {
            sl_projection_free(out);
            err->code = SL_STORE_E_QUERY;
            err->server_errno = 0;
            snprintf(err->message, sizeof(err->message),
                     "the public page of this session would exceed %u MiB (its visible exchanges hold %zu "
                     "bytes of text); hide or delete exchanges, or split the session",
                     SL_MAX_PUBLIC_BYTES >> 20, text);
            rc = -2;
        } else if (b.rc != 0) {
            sl_projection_free(out);
            err->code = SL_STORE_E_QUERY;
            err->server_errno = 0;
            snprintf(err->message, sizeof(err->message), "out of memory building the projection");
            rc = -1;
        }
    }
    sl_store_result_free(r);
    return rc;
}

void sl_projection_free(sl_projection_t *p)
{
    for (int r = 0; r < SL_REP_COUNT; r++) {
        free(p->rep[r]);
        p->rep[r] = NULL;
    }
}
