/*
 * The pieces of a public projection and the gzip member assembled from them (pieces.h,
 * docs/pieces.md).
 *
 * A piece is deflated on its own (a fresh stream, ended with a full flush): it is byte-aligned at
 * both ends and no match in it reaches outside it, so pieces can be laid one after another, or
 * between blocks of other streams, and inflate as the concatenation of their plain bytes. Glue is
 * deflated with one stream per document that is fully flushed before each piece (its history is
 * forgotten, so it never refers across a piece), or written as stored blocks when it is a few
 * bytes. The gzip trailer's CRC-32 is combined from the pieces' CRCs (crc32_combine).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/internal/pieces.h"
#include "core/internal/render.h"

/* ---- the pieces of one exchange ---- */

void sl_json_str(sl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    sl_buf_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sl_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        size_t k = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            k = 6;
        }
        sl_buf_add(b, esc, k);
    }
    sl_buf_add(b, s + run, n - run);
    sl_buf_add(b, "\"", 1);
}

static void html(sl_buf_t *b, const char *s, size_t n)
{
    sl_render_escape(s, n, sl_buf_out, b);
}

static void markdown(sl_buf_t *b, const char *s, size_t n)
{
    sl_render_markdown(s, n, sl_buf_out, b);
}

/* The page description: the prompt, whitespace collapsed, at most 200 bytes cut on a character
 * boundary. */
static size_t description(const char *p, size_t n, char out[204])
{
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
    return k;
}

static void render_piece(int which, const sl_piece_src_t *e, sl_buf_t *b)
{
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)e->id);
    switch (which) {
    case SL_PC_TOC_HTML:
        sl_buf_str(b, "<li><a href=\"#exchange-");
        sl_buf_str(b, id);
        sl_buf_str(b, "\">");
        html(b, e->title, e->title_len);
        sl_buf_str(b, "</a></li>");
        break;
    case SL_PC_ART_HTML:
        sl_buf_str(b, "<article id=\"exchange-");
        sl_buf_str(b, id);
        sl_buf_str(b, "\"><h2><a href=\"#exchange-");
        sl_buf_str(b, id);
        sl_buf_str(b, "\">");
        html(b, e->title, e->title_len);
        sl_buf_str(b, "</a></h2><p class=\"meta\"><time datetime=\"");
        html(b, e->created_at, e->created_len);
        sl_buf_str(b, "\">");
        html(b, e->created_at, e->created_len);
        sl_buf_str(b, "</time></p><h3>Prompt</h3><div class=\"prompt\">");
        markdown(b, e->prompt, e->prompt_len);
        sl_buf_str(b, "</div><h3>Response</h3><div class=\"response\">");
        markdown(b, e->response, e->response_len);
        sl_buf_str(b, "</div></article>\n");
        break;
    case SL_PC_TOC_JSON:
        sl_buf_str(b, "{\"id\":");
        sl_buf_str(b, id);
        sl_buf_str(b, ",\"title\":");
        sl_json_str(b, e->title, e->title_len);
        sl_buf_str(b, "}");
        break;
    case SL_PC_EX_JSON:
        sl_buf_str(b, "{\"id\":");
        sl_buf_str(b, id);
        sl_buf_str(b, ",\"title\":");
        sl_json_str(b, e->title, e->title_len);
        sl_buf_str(b, ",\"prompt\":");
        sl_json_str(b, e->prompt, e->prompt_len);
        sl_buf_str(b, ",\"response\":");
        sl_json_str(b, e->response, e->response_len);
        sl_buf_str(b, ",\"created_at\":");
        sl_json_str(b, e->created_at, e->created_len);
        sl_buf_str(b, "}");
        break;
    default:
        sl_buf_str(b, "\n---\n\n## ");
        sl_buf_add(b, e->title, e->title_len);
        sl_buf_str(b, "\n\n<!-- exchange ");
        sl_buf_str(b, id);
        sl_buf_str(b, ", ");
        sl_buf_add(b, e->created_at, e->created_len);
        sl_buf_str(b, " -->\n\n### Prompt\n\n");
        sl_buf_add(b, e->prompt, e->prompt_len);
        sl_buf_str(b, "\n\n### Response\n\n");
        sl_buf_add(b, e->response, e->response_len);
        sl_buf_str(b, "\n");
    }
}

static void put32(sl_buf_t *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    sl_buf_add(b, x, 4);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Deflates in[0..n) on z (reset first) to out, ended with a full flush. 0 or -1. */
static int deflate_flushed(z_stream *z, int full, const void *in, size_t n, sl_buf_t *out)
{
    if (full && deflateReset(z) != Z_OK)
        return -1;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    for (;;) {
        if (sl_buf_reserve(out, deflateBound(z, z->avail_in) + 64) != 0)
            return -1;
        z->next_out = (Bytef *)out->p + out->len;
        z->avail_out = (uInt)(out->cap - out->len - 1);
        uInt before = z->avail_out;
        int rc = deflate(z, Z_FULL_FLUSH);
        out->len += before - z->avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
        if (z->avail_out != 0)
            return 0;
    }
}

#define MAGIC "SLP2"

int sl_pieces_build(z_stream *z, const sl_piece_src_t *src, unsigned char **blob, size_t *bloblen)
{
    sl_buf_t b = {0}, plain = {0};
    char desc[204];
    size_t dn = description(src->prompt, src->prompt_len, desc);
    sl_buf_add(&b, MAGIC, 4);
    unsigned char d2[2] = {(unsigned char)dn, (unsigned char)(dn >> 8)};
    sl_buf_add(&b, d2, 2);
    sl_buf_add(&b, desc, dn);
    size_t tn = src->title_len < 0xffff ? src->title_len : 0xffff;
    unsigned char t2[2] = {(unsigned char)tn, (unsigned char)(tn >> 8)};
    sl_buf_add(&b, t2, 2);
    sl_buf_add(&b, src->title, tn);
    int rc = 0;
    for (int i = 0; i < SL_PC_COUNT && rc == 0; i++) {
        plain.len = 0;
        render_piece(i, src, &plain);
        if (plain.oom) {
            rc = -1;
            break;
        }
        put32(&b, (uint32_t)plain.len);
        put32(&b, (uint32_t)crc32(0, (const Bytef *)plain.p, (uInt)plain.len));
        put32(&b, (uint32_t)crc32_combine_gen((z_off_t)plain.len));
        size_t at = b.len;
        put32(&b, 0); /* the compressed length, filled in below */
        size_t start = b.len;
        if (deflate_flushed(z, 1, plain.p, plain.len, &b) != 0) {
            rc = -1;
            break;
        }
        uint32_t zl = (uint32_t)(b.len - start);
        unsigned char x[4] = {(unsigned char)zl, (unsigned char)(zl >> 8), (unsigned char)(zl >> 16),
                              (unsigned char)(zl >> 24)};
        memcpy(b.p + at, x, 4);
    }
    free(plain.p);
    if (rc != 0 || b.oom) {
        free(b.p);
        return -1;
    }
    *blob = (unsigned char *)b.p;
    *bloblen = b.len;
    return 0;
}

int sl_pieces_read(const void *blob, size_t len, sl_pieces_t *out)
{
    const unsigned char *p = blob, *end = p + len;
    if (p == NULL || len < 6 || memcmp(p, MAGIC, 4) != 0)
        return -1;
    size_t dn = (size_t)p[4] | (size_t)p[5] << 8;
    p += 6;
    if (dn > 200 || (size_t)(end - p) < dn)
        return -1;
    out->desc = (const char *)p;
    out->desc_len = dn;
    p += dn;
    if (end - p < 2)
        return -1;
    size_t tn = (size_t)p[0] | (size_t)p[1] << 8;
    p += 2;
    if ((size_t)(end - p) < tn)
        return -1;
    out->title = (const char *)p;
    out->title_len = tn;
    p += tn;
    for (int i = 0; i < SL_PC_COUNT; i++) {
        if (end - p < 16)
            return -1;
        out->p[i].plain_len = get32(p);
        out->p[i].crc = get32(p + 4);
        out->p[i].op = get32(p + 8);
        out->p[i].zlen = get32(p + 12);
        p += 16;
        if ((size_t)(end - p) < out->p[i].zlen)
            return -1;
        out->p[i].z = p;
        p += out->p[i].zlen;
    }
    return p == end ? 0 : -1;
}

/* ---- the gzip member ---- */

void sl_zdoc_init(sl_zdoc_t *d)
{
    memset(d, 0, sizeof(*d));
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    sl_buf_add(&d->out, header, sizeof(header));
    d->zinit = deflateInit2(&d->zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    if (!d->zinit)
        d->out.oom = 1;
}

void sl_zdoc_glue(sl_zdoc_t *d, const char *s, size_t n)
{
    sl_buf_add(&d->glue, s, n);
}

void sl_zdoc_gstr(sl_zdoc_t *d, const char *s)
{
    sl_buf_add(&d->glue, s, strlen(s));
}

/* Glue shorter than this goes out as stored blocks: deflating a few bytes costs a flush and a reset
 * of the match table, and saves nothing. */
#define STORED_MAX 64

static void flush_glue(sl_zdoc_t *d)
{
    size_t n = d->glue.len;
    if (n == 0 || d->out.oom || d->glue.oom) {
        d->out.oom |= d->glue.oom;
        return;
    }
    d->crc = (uint32_t)crc32(d->crc, (const Bytef *)d->glue.p, (uInt)n);
    d->plain += n;
    if (n < STORED_MAX) {
        /* a stored block: the stream is byte-aligned here, so its 3 header bits pad to one byte */
        unsigned char h[5] = {0, (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)~n,
                              (unsigned char)(~n >> 8)};
        sl_buf_add(&d->out, h, 5);
        sl_buf_add(&d->out, d->glue.p, n);
    } else if (deflate_flushed(&d->zs, 0, d->glue.p, n, &d->out) != 0) {
        d->out.oom = 1;
    }
    d->glue.len = 0;
}

void sl_zdoc_piece(sl_zdoc_t *d, const sl_piece_t *p)
{
    flush_glue(d);
    if (d->dry)
        d->skipped += p->zlen;
    else
        sl_buf_add(&d->out, p->z, p->zlen);
    d->crc = (uint32_t)crc32_combine_op(d->crc, p->crc, p->op);
    d->plain += p->plain_len;
}

int sl_zdoc_finish(sl_zdoc_t *d, char **out, size_t *outlen, uint32_t *crc, size_t *plain)
{
    flush_glue(d);
    int rc = -1;
    if (!d->out.oom) {
        /* the last block: an empty final one from the glue stream (byte-aligned before it) */
        unsigned char tail[16];
        d->zs.next_in = NULL;
        d->zs.avail_in = 0;
        d->zs.next_out = tail;
        d->zs.avail_out = sizeof(tail);
        if (deflate(&d->zs, Z_FINISH) == Z_STREAM_END) {
            sl_buf_add(&d->out, tail, sizeof(tail) - d->zs.avail_out);
            unsigned char t[8];
            uint32_t isize = (uint32_t)d->plain;
            for (int i = 0; i < 4; i++) {
                t[i] = (unsigned char)(d->crc >> (8 * i));
                t[4 + i] = (unsigned char)(isize >> (8 * i));
            }
            sl_buf_add(&d->out, t, 8);
            rc = d->out.oom ? -1 : 0;
        }
    }
    if (rc == 0) {
        *out = d->dry ? NULL : d->out.p;
        *outlen = d->out.len + d->skipped;
        *crc = d->crc;
        *plain = d->plain;
        if (!d->dry)
            d->out.p = NULL;
    }
    sl_zdoc_free(d);
    return rc;
}

void sl_zdoc_free(sl_zdoc_t *d)
{
    free(d->out.p);
    free(d->glue.p);
    if (d->zinit)
        deflateEnd(&d->zs);
    memset(d, 0, sizeof(*d));
}
