#ifndef SL_CORE_SYNC_H
#define SL_CORE_SYNC_H
/* What SyncSession (sync.c) shares with AppendExchanges (append.c): the re-sync's view of a
 * session's hidden exchanges and of an uploaded exchange, so an append hides by the same rule. */
#include <stddef.h>

#include "core/internal/owner.h"
#include "core/internal/resync.h"

/* The session's hidden exchanges as the re-sync sees them; *out is malloc'd (free it). Answers on
 * error. */
int sl_sync_load_hidden(sl_op_t *op, const char *id, size_t idlen, sl_stored_t **out, size_t *n);

/* An uploaded exchange: its text hashes, trimmed prompt length and creation time. */
void sl_sync_uploaded(sl_uploaded_t *u, const char *prompt, size_t plen, const char *response, size_t rlen,
                      const char *created);

#endif
