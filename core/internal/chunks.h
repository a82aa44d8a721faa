/*
 * Internal to core/: the chunk state of a public projection (chunks.c, docs/pieces.md "Changes
 * that cost what they change").
 *
 * A long public session keeps, in MariaDB (session_chunks), its visible exchanges in the recipe's
 * chunks (recipe.c: cut after every key whose last byte is below 4, and after 256 keys): for each
 * exchange its place, its piece key and each piece's plain length, deflated length and CRC-32; for
 * each chunk those sums. An owner change that names the exchanges it changed (append, hide, show,
 * retitle, delete) then reads these rows instead of every exchange's, takes its exchanges out and
 * puts them back as the public views now show them, cuts again only from the first chunk it touched
 * until the cuts meet the old ones, and assembles the documents' lengths, CRCs and ETag from the
 * sums (a run of pieces is one virtual piece: sl_chunks_span). Equal inputs give the chunks, recipe
 * and ETag of a full build: tests/core/test_chunks.c and tests/e2e/pieces_identity.sh compare them.
 */
#ifndef SL_CORE_INTERNAL_CHUNKS_H
#define SL_CORE_INTERNAL_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal/pieces.h"

/* One visible exchange in a chunk. */
typedef struct sl_chunk_rec {
    int64_t position, id;
    unsigned char key[16];
    uint32_t plain[SL_PC_COUNT], zlen[SL_PC_COUNT], crc[SL_PC_COUNT];
    uint32_t op[SL_PC_COUNT]; /* crc32_combine_gen(plain): appending the piece to a CRC is one product */
} sl_chunk_rec_t;

/* What a chunk's pieces of one kind add up to: joined (crc), and each after a comma (crc_comma:
 * ",p0,p1,...", the JSON arrays' form). */
typedef struct sl_chunk_sum {
    uint64_t plain, zlen;
    uint32_t crc, crc_comma;
} sl_chunk_sum_t;

typedef struct sl_chunk {
    int64_t row_pos, row_id;  /* the MariaDB row it was read from (its first exchange then) */
    int stored;               /* it was read from a row (row_pos/row_id name it) */
    int dirty;                /* changed: to write */
    const unsigned char *raw; /* read only: its records as stored (in the result), or NULL */
    sl_chunk_rec_t *rec;      /* changed: its records (malloc'd) */
    size_t n;
    unsigned char key[16]; /* its recipe key: the first 16 bytes of the SHA-256 of its blob */
    sl_chunk_sum_t sum[SL_PC_COUNT];
} sl_chunk_t;

typedef struct sl_chunks {
    sl_chunk_t *c;
    size_t n, cap;
    size_t *start; /* sl_chunks_index: the index of each chunk's first exchange, and the total */
    size_t total;
    struct sl_chunk_gone {
        int64_t pos, id;
    } * gone; /* rows to delete (chunks replaced by chunks that start elsewhere) */
    size_t ngone;
} sl_chunks_t;

/* The record of an exchange from its pieces. */
void sl_chunk_rec_of(sl_chunk_rec_t *r, int64_t position, int64_t id, const unsigned char key[16],
                     const sl_pieces_t *p);
/* Record j of chunk c (decoded when read only). */
void sl_chunk_rec_at(const sl_chunk_t *c, size_t j, sl_chunk_rec_t *out);

/* Adds one stored row (its data column). 0, or -1 when it is not a chunk of this format. */
int sl_chunks_add_row(sl_chunks_t *cs, int64_t row_pos, int64_t row_id, const void *data, size_t len);
/* Orders the chunks read and checks them (every chunk non-empty, in order, cut as the recipe cuts).
 * Then fills start/total. 0, or -1 when the state is not usable (build from the rows instead). */
int sl_chunks_ready(sl_chunks_t *cs);
/* The state of n records in order (a full build): every chunk dirty. 0, or -1 when out of memory. */
int sl_chunks_from(sl_chunks_t *cs, const sl_chunk_rec_t *recs, size_t n);
/* An owner change: takes out every exchange whose id is in touched[0..nt) (sorted) or in [lo, hi],
 * puts in vis[0..nv) (what the public views show of them now, sorted by position and id), cuts the
 * chunks it changed again and fills start/total. 0, or -1 (out of memory, or an exchange of vis
 * already there: build from the rows instead). */
int sl_chunks_apply(sl_chunks_t *cs, const int64_t *touched, size_t nt, int64_t lo, int64_t hi,
                    const sl_chunk_rec_t *vis, size_t nv);
/* The blob a changed chunk is stored as (MariaDB's data column). *out malloc'd. 0, or -1. */
int sl_chunk_encode(const sl_chunk_t *c, unsigned char **out, size_t *len);
/* Its recipe blob ("SLC1", the keys: what Redis stores under c->key). *out malloc'd. 0, or -1. */
int sl_chunk_keys_blob(const sl_chunk_t *c, unsigned char **out, size_t *len);

/* Exchanges a..b-1 of the state, pieces of one kind, as one virtual piece (lengths and CRC, no
 * bytes: what sl_zdoc_piece needs in a dry build); commas: a comma between each two (the JSON
 * arrays; a comma is glue written as a stored block of 6 bytes). */
void sl_chunks_span(const sl_chunks_t *cs, unsigned kind, size_t a, size_t b, int commas, sl_piece_t *out);

void sl_chunks_free(sl_chunks_t *cs);

/* Sessions with fewer visible exchanges than this keep no chunk state (a full build is as cheap). */
#define SL_CHUNKS_MIN 256

#endif
