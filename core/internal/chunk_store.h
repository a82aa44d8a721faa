/* Internal to core/: the chunk state of a long public session in MariaDB (chunk_store.c). */
#ifndef SL_CORE_INTERNAL_CHUNK_STORE_H
#define SL_CORE_INTERNAL_CHUNK_STORE_H

#include "core/internal/chunks.h"
#include "core/internal/projection.h"

/* Reads the session's chunk rows into cs (which points into *res: free it after cs). 0; 1 when
 * the rows do not make a usable state (build from the exchanges instead); -1 with err filled. */
int sl_chunks_read(sl_store_conn_t *conn, const char *id, size_t idlen, sl_chunks_t *cs,
                   sl_store_result_t **res, sl_store_error_t *err);
/* Writes cs (all: every chunk, after deleting the session's rows; else the changed chunks and the
 * deletes) and sets sessions.chunks_version to version. 0, or -1 with err filled. */
int sl_chunks_write(sl_store_conn_t *conn, const char *id, size_t idlen, const sl_chunks_t *cs, int all,
                    uint64_t version, sl_store_error_t *err);
/* out's recipe from cs, and the chunks this node does not know Redis holds (to out->store). 0, or -1
 * when out of memory. */
int sl_chunks_keep_recipe(sl_core_t *core, const sl_chunks_t *cs, const sl_proj_session_t *s,
                          uint64_t version, sl_projection_t *out);

#endif
