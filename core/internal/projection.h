/* Internal to core/: the public projection (projection.c) and its invalidation (publish.c). */
#ifndef SL_CORE_INTERNAL_PROJECTION_H
#define SL_CORE_INTERNAL_PROJECTION_H

#include "core/internal/core.h"
#include "core/internal/pieces.h"

/* ---- the projection (projection.c) ---- */

/* A blob of pieces Redis may lack: stored before the entry that names it (recipe.c). */
typedef struct sl_blob {
    unsigned char key[16];
    unsigned char *blob; /* malloc'd */
    size_t len;
} sl_blob_t;

/* A built projection: every representation (malloc'd), its ETag and content tag. Redis stores its
 * recipe (the session's fields and the keys of its exchanges' pieces, recipe.c) and the meta text
 * "<etag> <json len> <html len> <md len> <json gz len> <html gz len> <md gz len>"; a reader
 * assembles a gzip form from the recipe and the pieces, and inflates a plain form when asked for
 * (sl_gunzip). */
typedef struct sl_projection {
    int found; /* 0: the session is not visible (TOMB) */
    uint64_t version;
    uint64_t tag; /* sl_rpc_etag_tag of its etag (found only) */
    char etag[64];
    size_t etag_len;
    char *rep[SL_REP_COUNT]; /* the gzip forms; the plain ones only when asked for (SL_PROJ_PLAIN) */
    size_t rep_len[SL_REP_COUNT];
    size_t plain_len[3]; /* of the JSON, the page and the Markdown */
    size_t len;          /* the three gzip forms (the size cap applies to it) */
    size_t gz_len[3];    /* of each gzip form (also when built SL_PROJ_DRY, without the bytes) */
    char *recipe;        /* public view only: what the Redis entry holds (recipe.c) */
    size_t recipe_len;
    sl_blob_t *store; /* the blobs the recipe names that this node does not know Redis holds */
    size_t nstore;
} sl_projection_t;

/* What a document is assembled from (core/pieces.h): the session's fields and, in order, its
 * visible exchanges with their pieces. Strings are not NUL-terminated. */
typedef struct sl_proj_str {
    const char *p;
    size_t n;
} sl_proj_str_t;

typedef struct sl_proj_session {
    sl_proj_str_t id, title, created_at, updated_at, project_name, project_icon, project_color, author_name,
        author_handle;
} sl_proj_session_t;

typedef struct sl_proj_row {
    int64_t id, position;
    size_t at; /* its row in the result it was read from (projection.c) */
    sl_proj_str_t title, created_at;
    unsigned char key[16]; /* the hash its pieces must carry to be current (projection.c) */
    sl_pieces_t pieces;
} sl_proj_row_t;

/* The exchanges of a document: their pieces in order (rows), or, for a dry build, the sums of a
 * chunk state (chunks.c; rows NULL). first: the first one's pieces (its title and description are
 * glue). */
struct sl_chunks;
typedef struct sl_proj_seq {
    size_t n;
    const sl_proj_row_t *rows;
    const struct sl_chunks *chunks;
    const sl_pieces_t *first;
} sl_proj_seq_t;
/* sl_projection_assemble from either (from chunk sums: dry whatever `dry` says). */
int sl_projection_assemble_seq(const sl_proj_session_t *s, const sl_proj_seq_t *q, uint64_t version, int dry,
                               sl_projection_t *out);

/* Assembles the three gzip forms, their plain lengths and the ETag from s and rows (pure: equal
 * inputs, equal bytes); dry: the lengths, CRCs and ETag without the bytes (rep[] NULL). 0, or -1
 * when out of memory. */
int sl_projection_assemble(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                           int dry, sl_projection_t *out);
/* One of them (part 0 JSON, 1 page, 2 Markdown): *gz malloc'd (NULL when dry). 0, or -1. */
int sl_projection_assemble_part(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n,
                                uint64_t version, unsigned part, int dry, char **gz, size_t *gzlen,
                                uint32_t *crc, size_t *plain);
/* 1 when etag (made by sl_projection_assemble) names `crc` as the CRC-32 of part `part`. */
int sl_etag_part_matches(const char *etag, size_t len, unsigned part, uint32_t crc);

/* Inflates the plain forms of p that `flags` names (SL_PROJ_PLAIN_PART) and are not there yet. 0, or -1. */
int sl_projection_plain(sl_projection_t *p, unsigned flags);

/* The one part of a PUBLIC entry: its recipe. */
#define SL_ENTRY_PART 0u
/* The document of a representation (its gzip form): 0 JSON, 1 HTML, 2 Markdown. */
#define SL_PART_OF(rep) ((unsigned)(rep) / 2)
/* 1 when rep is a gzip form (served from the part as stored). */
#define SL_REP_IS_GZ(rep) ((unsigned)(rep) % 2 == 1)

/* The content stored in Redis for p (found): parts point into p; meta written into metabuf. */
void sl_projection_content(const sl_projection_t *p, sl_proj_content_t *ct, char metabuf[SL_PROJ_META_MAX]);

/* What a stored PUBLIC entry's meta says: the etag and the plain and gzip length of each part. 0,
 * or -1 when malformed. */
typedef struct sl_stored_meta {
    const char *etag;
    size_t etag_len;
    size_t plain_len[3];
    size_t gz_len[3];
} sl_stored_meta_t;
int sl_stored_meta_parse(const char *meta, size_t len, sl_stored_meta_t *out);

/* Inflates a gzip member of exactly `plain_len` bytes into a new buffer (*out, malloc'd). 0, or -1
 * when it is not a gzip stream of that length. */
int sl_gunzip(const void *in, size_t len, size_t plain_len, char **out);

/* Which rows a projection is built from: the public views (public account, or inside an owner
 * transaction) or the viewer views (preview: the same filtering minus "is public"). */
typedef enum { SL_VIEW_PUBLIC, SL_VIEW_VIEWER } sl_view_t;

/* The largest projection: its three gzip forms as stored in Redis, and each plain representation
 * (what a node inflates and keeps). */
#define SL_MAX_PUBLIC_BYTES (16u << 20)

/* Reads the rows (their stored pieces, not their text) and assembles the projection; exchanges
 * whose pieces are missing or not current are read with their text and rendered, and inside an
 * owner transaction (conn) their new pieces are kept with them. Off the loop when large. Runs
 * inside a task. conn may be NULL (then connections of `store` are used, and text read by a second
 * statement is checked against the first one's keys: a change in between starts over, at most 3
 * times). Returns 0; -1 with err filled (store errors, out of memory); or -2 when the projection
 * would exceed SL_MAX_PUBLIC_BYTES (err->message says so; nothing is kept). */
#define SL_PROJ_SCRATCH       2u /* ignore stored pieces and keep none (the identity check's full rebuild) */
#define SL_PROJ_DRY           4u /* no document bytes: lengths, ETag and recipe only (an owner's publish) */
#define SL_PROJ_PLAIN_PART(n) (8u << (n)) /* also inflate the plain form of part n (0 JSON, 1 page, 2 MD) */
#define SL_PROJ_PLAIN         (SL_PROJ_PLAIN_PART(0) | SL_PROJ_PLAIN_PART(1) | SL_PROJ_PLAIN_PART(2))
int sl_projection_load(sl_core_t *core, sl_store_t *store, sl_store_conn_t *conn, sl_view_t view,
                       const char *id, size_t idlen, unsigned flags, sl_projection_t *out,
                       sl_store_error_t *err);
void sl_projection_free(sl_projection_t *p);

/* An owner change's build (inside its transaction, conn; public view, SL_PROJ_DRY), told what the
 * change touched. When inc is set (the session's chunk state describes it as locked: chunk_store.c)
 * and the change named its exchanges, it reads those exchanges and the chunk state only, and
 * writes back the chunks it changed; otherwise it builds from every exchange like
 * sl_projection_load, and writes the whole state when the session has SL_CHUNKS_MIN visible
 * exchanges or more. Returns like sl_projection_load. */
#define SL_TOUCH_MAX 64
typedef struct sl_touch {
    int inc;
    const int64_t *ids; /* sorted, at most SL_TOUCH_MAX */
    size_t n;
    int64_t lo, hi; /* and the ids in [lo, hi] (an append); lo > hi: none */
} sl_touch_t;
int sl_projection_change(sl_core_t *core, sl_store_conn_t *conn, const char *id, size_t idlen,
                         const sl_touch_t *t, sl_projection_t *out, sl_store_error_t *err);
/* Adds a copy of blob to out->store (what is stored in Redis before the entry). 0, or -1. */
int sl_projection_store_add(sl_projection_t *out, const unsigned char key[16], const void *blob, size_t len);

/* ---- recipes (recipe.c, docs/pieces.md) ---- */

/* Blobs are stored in Redis for SL_BLOB_TTL_S; a node trusts its knowledge that Redis holds one
 * (it stored or read it there) for SL_BLOB_KNOWN_MS, then stores it again with the next change. */
#define SL_BLOB_TTL_S    (7u * 24 * 3600)
#define SL_BLOB_KNOWN_MS (3ull * 24 * 3600 * 1000)

/* The recipe of a projection: its version, the session's fields and the keys of the chunks of its
 * visible exchanges' piece keys, in order (recipe.c). Everything a reader needs to assemble the
 * documents byte for byte, given the blobs. *out malloc'd; *chunks (each chunk's key and bytes,
 * stored in Redis like the pieces' blobs) freed with sl_recipe_chunks_free. 0, or -1 when out of
 * memory. */
int sl_recipe_encode(const sl_proj_session_t *s, const sl_proj_row_t *rows, size_t n, uint64_t version,
                     char **out, size_t *len, sl_blob_t **chunks, size_t *nchunks);
void sl_recipe_chunks_free(sl_blob_t *chunks, size_t n);
/* The same from the chunks' keys (ckeys + i * stride, i < nc) and the exchange count n. */
int sl_recipe_encode_keys(const sl_proj_session_t *s, size_t n, uint64_t version, const unsigned char *ckeys,
                          size_t stride, size_t nc, char **out, size_t *len);
/* The cut rule: a chunk of k keys whose last one is key ends there. */
int sl_recipe_cut(const unsigned char key[16], size_t k);
/* A chunk's blob and key from its k keys (keys + j * stride). 0, or -1 when out of memory. */
int sl_recipe_chunk(const unsigned char *keys, size_t stride, size_t k, sl_blob_t *out);

/* Stores in Redis the blobs of p (p->store) the node does not know Redis holds, and remembers that
 * it does. Runs in a task. 0, or -1 when Redis did not take one (the entry must not be written). */
int sl_recipe_store(sl_core_t *core, const sl_projection_t *p);

/* Deletes from Redis the blobs of exchanges their owner deleted (after the commit, before the call
 * returns; a blob Redis could not delete expires with its TTL, and no recipe names it). In a task. */
void sl_recipe_forget(sl_core_t *core, const unsigned char (*keys)[16], size_t n);

/* A reader's assembly of one gzip form (part) from a stored entry's recipe and meta: the blobs the
 * node holds, the others read from Redis (and kept). Runs in a task; large assemblies go to the
 * thread pool. 0 with *gz (malloc'd) and *gzlen; 1 when the recipe is malformed, Redis no longer
 * holds a blob it names, or the result does not match the ETag: the entry is to be dropped and
 * rebuilt; -1 on other failures (Redis down, out of memory). */
int sl_recipe_assemble(sl_core_t *core, const void *recipe, size_t len, const sl_stored_meta_t *m,
                       unsigned part, char **gz, size_t *gzlen);

/* ---- invalidation (publish.c) ---- */

/* Inside an owner transaction that is about to change what viewers may see of session `id`, whose
 * new version will be `version`: writes the MARK. Returns 0; 1 when Redis holds a greater version
 * (*ahead: Redis is ahead of MariaDB; the caller moves its version past it and tries again); -1
 * when Redis could not be asked (the caller must roll back and answer `unavailable`). */
int sl_invalidate_begin(sl_core_t *core, const char *id, size_t idlen, uint64_t version, uint64_t *ahead);
/* After COMMIT: publishes the new projection (or tombstone), retrying for a bounded time. Returns 0
 * (also when a later change of the session published first), or -1 if Redis could not be updated
 * or holds a version MariaDB never reached (the MARK stays; readers keep reading MariaDB; the
 * session stays cache_dirty for the repair). */
int sl_invalidate_finish(sl_core_t *core, const char *id, size_t idlen, const sl_projection_t *p);

#endif
