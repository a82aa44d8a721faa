/*
 * Internal to core/: the pieces of a public projection (pieces.c, docs/pieces.md).
 *
 * Every exchange contributes the same bytes to the public document wherever it stands in it: its
 * entry in the table of contents and its article (HTML), its toc item and exchange object (JSON),
 * its section (Markdown). Those five pieces are rendered, escaped and deflated once, when the
 * exchange's text, title or time changes, and kept with the exchange (exchanges.pieces, checked
 * against a hash of what they were made from). A document is then glue (the head, counts, section
 * boundaries, commas, the tail) plus pieces: assembling it copies compressed bytes and combines
 * CRCs (sl_zdoc_*) instead of rendering and compressing every exchange again.
 */
#ifndef SL_CORE_INTERNAL_PIECES_H
#define SL_CORE_INTERNAL_PIECES_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "core/internal/buf.h"

enum {
    SL_PC_TOC_HTML, /* <li><a href="#exchange-ID">TITLE</a></li> */
    SL_PC_ART_HTML, /* <article id="exchange-ID">...</article>\n */
    SL_PC_TOC_JSON, /* {"id":ID,"title":"..."} */
    SL_PC_EX_JSON,  /* {"id":ID,"title":...,"prompt":...,"response":...,"created_at":...} */
    SL_PC_MD,       /* \n---\n\n## TITLE ... ### Response\n\nRESPONSE\n */
    SL_PC_COUNT
};

/* One piece: raw deflate of its plain bytes, byte-aligned at both ends and referring to nothing
 * outside itself, with the plain length and CRC-32 (what a gzip trailer needs). */
typedef struct sl_piece {
    const unsigned char *z;
    size_t zlen;
    size_t plain_len;
    uint32_t crc;
    uint32_t op; /* crc32_combine_gen(plain_len): appending the piece to a CRC costs one product */
} sl_piece_t;

typedef struct sl_pieces {
    sl_piece_t p[SL_PC_COUNT];
    const char *desc;  /* the page description this exchange gives when it is the first one shown */
    size_t desc_len;   /* (whitespace collapsed, at most 200 bytes, not escaped) */
    const char *title; /* its title as shown (the session's, when the session has none and this */
    size_t title_len;  /* exchange is the first one shown) */
} sl_pieces_t;

/* What the pieces are made of: the exchange as the public views show it. */
typedef struct sl_piece_src {
    int64_t id;
    const char *title, *prompt, *response, *created_at;
    size_t title_len, prompt_len, response_len, created_len;
} sl_piece_src_t;

/* The version of the piece format and of everything rendered into a piece (renderer, markup). It
 * is part of the hash that says whether stored pieces are current: change it whenever a piece of
 * the same exchange would come out different, and every stored piece is rebuilt when next used. */
#define SL_PIECES_REV "p2"

/* Renders and deflates the pieces of one exchange into *blob (malloc'd, what exchanges.pieces
 * keeps). z is a raw-deflate stream (deflateInit2 with -15) reused between calls. 0, or -1 when
 * out of memory. */
int sl_pieces_build(z_stream *z, const sl_piece_src_t *src, unsigned char **blob, size_t *bloblen);

/* Reads a stored blob (pointers into it). 0, or -1 when it is not one (then it is rebuilt). */
int sl_pieces_read(const void *blob, size_t len, sl_pieces_t *out);

/* The JSON string for s[0..n) (valid UTF-8), quoted and escaped, appended to b. */
void sl_json_str(sl_buf_t *b, const char *s, size_t n);

/* ---- a gzip member assembled from glue and pieces ---- */

typedef struct sl_zdoc {
    sl_buf_t out;  /* the member so far */
    sl_buf_t glue; /* plain glue not yet written */
    z_stream zs;   /* raw deflate for glue */
    int zinit;
    uint32_t crc;
    size_t plain;   /* plain bytes so far */
    int dry;        /* pieces are counted, not copied: the length and CRC of the member, no bytes */
    size_t skipped; /* bytes of the pieces not copied (dry) */
} sl_zdoc_t;

void sl_zdoc_init(sl_zdoc_t *d);
/* Plain bytes between pieces (kept until the next piece or the end). */
void sl_zdoc_glue(sl_zdoc_t *d, const char *s, size_t n);
void sl_zdoc_gstr(sl_zdoc_t *d, const char *s);
void sl_zdoc_piece(sl_zdoc_t *d, const sl_piece_t *p);
/* Ends the member: *out (malloc'd; NULL when dry), its length, the CRC-32 and length of the plain document.
 * 0, or -1 when out of memory. d is freed either way. */
int sl_zdoc_finish(sl_zdoc_t *d, char **out, size_t *outlen, uint32_t *crc, size_t *plain);
void sl_zdoc_free(sl_zdoc_t *d);

#endif
