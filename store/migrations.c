/*
 * The schema, as an append-only list of migrations. Never edit a migration that has shipped: add a
 * new one. Times are UTC (every connection sets time_zone '+00:00').
 *
 * Privacy lives partly here: the views viewer_* hold exactly what a viewer may see of a session
 * (no hidden or deleted exchange, no deleted session), and public_* add "and the session is
 * public". The public read path queries only public_* (see docs/invalidation.md).
 */
#include <stdio.h>
#include <string.h>

#include "store/internal/store.h"
#include "store/internal/migrations.h"

static const char *const m1_steps[] = {
    "CREATE TABLE IF NOT EXISTS tenants ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " name VARCHAR(200) NOT NULL,"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " tenant_id BIGINT UNSIGNED NOT NULL,"
    " handle VARCHAR(64) NOT NULL,"
    " display_name VARCHAR(200) NOT NULL,"
    " avatar_url VARCHAR(1000) NULL,"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " UNIQUE KEY users_tenant_handle (tenant_id, handle),"
    " CONSTRAINT users_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    /* Only the SHA-256 of a token is stored. kind 'service' tokens have no user_id and act for the
     * users of their tenant. */
    "CREATE TABLE IF NOT EXISTS tokens ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " token_hash BINARY(32) NOT NULL,"
    " tenant_id BIGINT UNSIGNED NOT NULL,"
    " user_id BIGINT UNSIGNED NULL,"
    " kind ENUM('user','service') NOT NULL DEFAULT 'user',"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " revoked_at DATETIME(6) NULL,"
    " UNIQUE KEY tokens_hash (token_hash),"
    " CONSTRAINT tokens_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id),"
    " CONSTRAINT tokens_user FOREIGN KEY (user_id) REFERENCES users (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    /* ext_id is the client's project id (SpecStory projectId, or the name when none is given). */
    "CREATE TABLE IF NOT EXISTS projects ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " tenant_id BIGINT UNSIGNED NOT NULL,"
    " owner_id BIGINT UNSIGNED NOT NULL,"
    " ext_id VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,"
    " name VARCHAR(200) NOT NULL,"
    " icon VARCHAR(64) NOT NULL DEFAULT '',"
    " color VARCHAR(32) NOT NULL DEFAULT '',"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " UNIQUE KEY projects_owner_ext (owner_id, ext_id),"
    " CONSTRAINT projects_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id),"
    " CONSTRAINT projects_owner FOREIGN KEY (owner_id) REFERENCES users (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    /* version is bumped by every change; exchange_seq hands out exchange ids (never reused). */
    "CREATE TABLE IF NOT EXISTS sessions ("
    " id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,"
    " tenant_id BIGINT UNSIGNED NOT NULL,"
    " owner_id BIGINT UNSIGNED NOT NULL,"
    " project_id BIGINT UNSIGNED NOT NULL,"
    " title VARCHAR(500) NOT NULL,"
    " is_public TINYINT(1) NOT NULL DEFAULT 0,"
    " version BIGINT UNSIGNED NOT NULL DEFAULT 1,"
    " exchange_seq INT UNSIGNED NOT NULL DEFAULT 0,"
    " agent VARCHAR(100) NOT NULL DEFAULT '',"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " deleted_at DATETIME(6) NULL,"
    " KEY sessions_owner_updated (owner_id, updated_at),"
    " KEY sessions_project_updated (project_id, updated_at),"
    " CONSTRAINT sessions_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id),"
    " CONSTRAINT sessions_owner FOREIGN KEY (owner_id) REFERENCES users (id),"
    " CONSTRAINT sessions_project FOREIGN KEY (project_id) REFERENCES projects (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    /* The upload, byte-exact. */
    "CREATE TABLE IF NOT EXISTS session_uploads ("
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,"
    " markdown LONGBLOB NOT NULL,"
    " raw_data LONGBLOB NULL,"
    " session_data LONGBLOB NULL,"
    " metadata LONGBLOB NULL,"
    " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " CONSTRAINT uploads_session FOREIGN KEY (session_id) REFERENCES sessions (id)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS exchanges ("
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " id INT UNSIGNED NOT NULL,"
    " position INT UNSIGNED NOT NULL,"
    " title VARCHAR(500) NULL,"
    " default_title VARCHAR(500) NOT NULL,"
    " prompt MEDIUMTEXT NOT NULL,"
    " response LONGTEXT NOT NULL,"
    " prompt_sha256 BINARY(32) NOT NULL,"
    " hidden TINYINT(1) NOT NULL DEFAULT 0,"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " deleted_at DATETIME(6) NULL,"
    " PRIMARY KEY (session_id, id),"
    " KEY exchanges_position (session_id, position),"
    " CONSTRAINT exchanges_session FOREIGN KEY (session_id) REFERENCES sessions (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_sessions AS"
    " SELECT s.id, s.is_public, s.version, s.title,"
    "  DATE_FORMAT(s.created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at,"
    "  DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ') AS updated_at,"
    "  p.name AS project_name, p.icon AS project_icon, p.color AS project_color,"
    "  u.display_name AS author_name, u.handle AS author_handle"
    " FROM sessions s JOIN projects p ON p.id = s.project_id JOIN users u ON u.id = s.owner_id"
    " WHERE s.deleted_at IS NULL",

    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_exchanges AS"
    " SELECT e.session_id, e.id, e.position, COALESCE(e.title, e.default_title) AS title,"
    "  e.prompt, e.response, DATE_FORMAT(e.created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at"
    " FROM exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL AND e.hidden = 0",

    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_sessions AS"
    " SELECT id, version, title, created_at, updated_at, project_name, project_icon, project_color,"
    "  author_name, author_handle"
    " FROM viewer_sessions WHERE is_public = 1",

    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_exchanges AS"
    " SELECT e.session_id, e.id, e.position, e.title, e.prompt, e.response, e.created_at"
    " FROM viewer_exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.is_public = 1",
    NULL,
};

/* Full-text search over what owners search: prompts and responses (ListSessions "query"). */
static const char *const m2_steps[] = {
    "ALTER TABLE exchanges ADD FULLTEXT INDEX IF NOT EXISTS exchanges_text (prompt, response)",
    NULL,
};

/* cache_dirty = 1 from the COMMIT of a change that must be published until its publish is known
 * to have succeeded; the repair republishes what stays dirty (docs/invalidation.md, "Repair"). */
static const char *const m3_steps[] = {
    "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS cache_dirty TINYINT(1) NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD INDEX IF NOT EXISTS sessions_cache_dirty (cache_dirty, updated_at)",
    NULL,
};

/* The repair's backoff: a session whose republish keeps failing is tried again after 2, 4, 8 ...
 * seconds (at most 10 minutes), never in a tight loop. */
static const char *const m4_steps[] = {
    "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS cache_repair_attempts INT NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS cache_repair_after DATETIME(6) NULL",
    NULL,
};

/* Re-sync keeps hides with their text (docs/specstory.md "Re-sync"): each exchange's response hash;
 * exchanges a sync removed keep their text (deleted_at set, removed_by_sync = 1) and come back when
 * uploaded again; the uploads a sync replaced are kept, the last 5 (session_upload_history). */
static const char *const m5_steps[] = {
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS response_sha256 BINARY(32) NULL",
    "UPDATE exchanges SET response_sha256 = UNHEX(SHA2(response, 256))"
    " WHERE response_sha256 IS NULL AND deleted_at IS NULL",
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS removed_by_sync TINYINT(1) NOT NULL DEFAULT 0",
    "CREATE TABLE IF NOT EXISTS session_upload_history ("
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " seq INT UNSIGNED NOT NULL,"
    " markdown LONGBLOB NOT NULL,"
    " raw_data LONGBLOB NULL,"
    " session_data LONGBLOB NULL,"
    " metadata LONGBLOB NULL,"
    " uploaded_at DATETIME(6) NOT NULL,"
    " PRIMARY KEY (session_id, seq),"
    " CONSTRAINT upload_history_session FOREIGN KEY (session_id) REFERENCES sessions (id)"
    ") ENGINE=InnoDB",
    NULL,
};

/* The pieces of the public page each exchange contributes (core/pieces.h, docs/pieces.md), kept
 * with it and the hash of what they were made from; the views show them with the exchange, and the
 * text's hashes they are checked against. */
static const char *const m6_steps[] = {
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS pieces LONGBLOB NULL",
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS pieces_key BINARY(16) NULL",
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS title_md5 BINARY(16)"
    " AS (UNHEX(MD5(COALESCE(title, default_title)))) STORED",
    /* what a projection reads of every exchange, in one index: never the rows' text or pieces */
    "ALTER TABLE exchanges ADD INDEX IF NOT EXISTS exchanges_pieces (session_id, deleted_at, hidden, id,"
    " position, created_at, title_md5, pieces_key, prompt_sha256, response_sha256)",
    /* The text's hashes follow the text whoever writes it (an operator scrubbing a secret by hand
     * included): the pieces are checked against them. Not for a deleted exchange, whose wiped
     * text keeps the hashes it had (a re-sync must not bring it back). */
    "CREATE TRIGGER IF NOT EXISTS exchanges_text_hashes BEFORE UPDATE ON exchanges FOR EACH ROW BEGIN"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.prompt <=> BINARY OLD.prompt) THEN"
    "  SET NEW.prompt_sha256 = UNHEX(SHA2(NEW.prompt, 256)); END IF;"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.response <=> BINARY OLD.response) THEN"
    "  SET NEW.response_sha256 = UNHEX(SHA2(NEW.response, 256)); END IF;"
    " END",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_exchanges AS"
    " SELECT e.session_id, e.id, e.position, COALESCE(e.title, e.default_title) AS title,"
    "  e.prompt, e.response, DATE_FORMAT(e.created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at,"
    "  e.pieces, e.pieces_key, e.prompt_sha256, e.response_sha256, e.title_md5, e.created_at AS created_raw"
    " FROM exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL AND e.hidden = 0",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_exchanges AS"
    " SELECT e.session_id, e.id, e.position, e.title, e.prompt, e.response, e.created_at, e.pieces,"
    "  e.pieces_key, e.prompt_sha256, e.response_sha256, e.title_md5, e.created_raw"
    " FROM viewer_exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.is_public = 1",
    NULL,
};

/* What a projection reads of each exchange (core/projection.c), through the index that holds all
 * of it: MariaDB otherwise walks the rows themselves (their text and pieces) for a session's
 * exchanges, about twice the work at 1,000 exchanges. Same filters as viewer_ and public_exchanges. */
static const char *const m7_steps[] = {
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_exchange_keys AS"
    " SELECT e.session_id, e.id, e.position, e.title_md5, e.created_at AS created_raw, e.pieces_key,"
    "  e.prompt_sha256, e.response_sha256"
    " FROM exchanges e FORCE INDEX (exchanges_pieces) JOIN sessions s ON s.id = e.session_id"
    " WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL AND e.hidden = 0",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_exchange_keys AS"
    " SELECT e.session_id, e.id, e.position, e.title_md5, e.created_raw, e.pieces_key, e.prompt_sha256,"
    "  e.response_sha256"
    " FROM viewer_exchange_keys e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.is_public = 1",
    NULL,
};

/* Uploads that grow (core/sync.c, docs/specstory.md "Uploads"): the current upload is a base and
 * tail parts, each with its length and hash; a new upload that keeps the base and some parts is
 * stored as the parts it changes, and the one it replaces as a reference to it (a prefix length
 * and the bytes after it), so that a re-sync writes what changed, not the whole file again. */
static const char *const m8_steps[] = {
    "ALTER TABLE session_uploads ADD COLUMN IF NOT EXISTS markdown_len BIGINT UNSIGNED NULL",
    "ALTER TABLE session_uploads ADD COLUMN IF NOT EXISTS markdown_sha256 BINARY(32) NULL",
    "ALTER TABLE session_uploads ADD COLUMN IF NOT EXISTS base_len BIGINT UNSIGNED NULL",
    "ALTER TABLE session_uploads ADD COLUMN IF NOT EXISTS base_sha256 BINARY(32) NULL",
    "ALTER TABLE session_uploads ADD COLUMN IF NOT EXISTS tail_parts INT UNSIGNED NOT NULL DEFAULT 0",
    "UPDATE session_uploads SET markdown_len = LENGTH(markdown), markdown_sha256 = UNHEX(SHA2(markdown, "
    "256)),"
    " base_len = LENGTH(markdown), base_sha256 = UNHEX(SHA2(markdown, 256))"
    " WHERE markdown_sha256 IS NULL AND tail_parts = 0",
    "CREATE TABLE IF NOT EXISTS session_upload_tail ("
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " part INT UNSIGNED NOT NULL,"
    " len BIGINT UNSIGNED NOT NULL,"
    " sha256 BINARY(32) NOT NULL,"
    " bytes LONGBLOB NOT NULL,"
    " PRIMARY KEY (session_id, part),"
    " CONSTRAINT upload_tail_session FOREIGN KEY (session_id) REFERENCES sessions (id)"
    ") ENGINE=InnoDB",
    "ALTER TABLE session_upload_history MODIFY markdown LONGBLOB NULL",
    "ALTER TABLE session_upload_history ADD COLUMN IF NOT EXISTS prefix_len BIGINT UNSIGNED NULL",
    NULL,
};

/* Secret scanning (core/scan.c, docs/secrets.md). Every exchange (and session title) is scanned
 * before a viewer may see it: a row is `scanned` only once its findings and its public text are
 * written, and the views show only scanned rows, with the redacted text where a finding is
 * redacted (public_prompt / public_response / public_title; NULL = the text as it is). Whoever
 * changes a text or title (our code, or an operator in SQL) makes the row unscanned again (the
 * triggers), so it leaves the public views until the next owner change or the background pass has
 * scanned it. `redaction` (hash of the public text, NULL without findings) is part of the pieces'
 * key. The pieces kept before this migration were rendered from unredacted text: dropped. */
static const char *const m9_steps[] = {
    "ALTER TABLE exchanges ADD COLUMN IF NOT EXISTS scanned TINYINT(1) NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS public_prompt LONGTEXT NULL,"
    " ADD COLUMN IF NOT EXISTS public_response LONGTEXT NULL,"
    " ADD COLUMN IF NOT EXISTS public_title VARCHAR(600) NULL,"
    " ADD COLUMN IF NOT EXISTS redaction BINARY(16) NULL",
    "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS title_scanned TINYINT(1) NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS public_title VARCHAR(600) NULL",
    "ALTER TABLE exchanges DROP INDEX IF EXISTS exchanges_pieces, ADD INDEX exchanges_pieces (session_id,"
    " deleted_at, hidden, scanned, id, position, created_at, title_md5, pieces_key, prompt_sha256,"
    " response_sha256, redaction)",
    "ALTER TABLE exchanges ADD INDEX IF NOT EXISTS exchanges_unscanned (scanned, deleted_at, session_id)",
    "ALTER TABLE sessions ADD INDEX IF NOT EXISTS sessions_title_unscanned (title_scanned, deleted_at)",
    "UPDATE exchanges SET pieces = NULL, pieces_key = NULL WHERE pieces IS NOT NULL OR pieces_key IS NOT "
    "NULL",
    "CREATE TABLE IF NOT EXISTS session_findings ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " exchange_id INT UNSIGNED NULL,"   /* NULL: the session's title */
    " field TINYINT UNSIGNED NOT NULL," /* 0 prompt, 1 response, 2 title, 3 session_title */
    " kind VARCHAR(64) CHARACTER SET ascii NOT NULL,"
    " rule_id VARCHAR(64) CHARACTER SET ascii NOT NULL,"
    " start_offset INT UNSIGNED NOT NULL,"
    " end_offset INT UNSIGNED NOT NULL,"
    " value_sha256 BINARY(32) NOT NULL,"
    " occurrence INT UNSIGNED NOT NULL," /* among equal values in that field */
    " preview VARCHAR(64) NOT NULL,"
    " revealed TINYINT(1) NOT NULL DEFAULT 0,"
    " KEY findings_exchange (session_id, exchange_id, field),"
    " CONSTRAINT findings_session FOREIGN KEY (session_id) REFERENCES sessions (id)"
    ") ENGINE=InnoDB",
    "DROP TRIGGER IF EXISTS exchanges_text_hashes",
    "CREATE TRIGGER exchanges_text_hashes BEFORE UPDATE ON exchanges FOR EACH ROW BEGIN"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.prompt <=> BINARY OLD.prompt) THEN"
    "  SET NEW.prompt_sha256 = UNHEX(SHA2(NEW.prompt, 256)); SET NEW.scanned = 0; END IF;"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.response <=> BINARY OLD.response) THEN"
    "  SET NEW.response_sha256 = UNHEX(SHA2(NEW.response, 256)); SET NEW.scanned = 0; END IF;"
    " IF NEW.deleted_at IS NULL AND (NOT (BINARY NEW.title <=> BINARY OLD.title)"
    "  OR NOT (BINARY NEW.default_title <=> BINARY OLD.default_title)) THEN SET NEW.scanned = 0; END IF;"
    " END",
    "CREATE TRIGGER IF NOT EXISTS sessions_title_scan BEFORE UPDATE ON sessions FOR EACH ROW BEGIN"
    " IF NOT (BINARY NEW.title <=> BINARY OLD.title) THEN SET NEW.title_scanned = 0; END IF;"
    " END",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_sessions AS"
    " SELECT s.id, s.is_public, s.version, IF(s.title_scanned = 1, COALESCE(s.public_title, s.title), '') AS "
    "title,"
    "  DATE_FORMAT(s.created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at,"
    "  DATE_FORMAT(s.updated_at, '%Y-%m-%dT%H:%i:%sZ') AS updated_at,"
    "  p.name AS project_name, p.icon AS project_icon, p.color AS project_color,"
    "  u.display_name AS author_name, u.handle AS author_handle"
    " FROM sessions s JOIN projects p ON p.id = s.project_id JOIN users u ON u.id = s.owner_id"
    " WHERE s.deleted_at IS NULL",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_exchanges AS"
    " SELECT e.session_id, e.id, e.position, COALESCE(e.public_title, e.title, e.default_title) AS title,"
    "  COALESCE(e.public_prompt, e.prompt) AS prompt, COALESCE(e.public_response, e.response) AS response,"
    "  DATE_FORMAT(e.created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at,"
    "  e.pieces, e.pieces_key, e.prompt_sha256, e.response_sha256, e.title_md5, e.created_at AS created_raw,"
    "  e.redaction"
    " FROM exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL AND e.hidden = 0 AND e.scanned = 1",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_exchanges AS"
    " SELECT e.session_id, e.id, e.position, e.title, e.prompt, e.response, e.created_at, e.pieces,"
    "  e.pieces_key, e.prompt_sha256, e.response_sha256, e.title_md5, e.created_raw, e.redaction"
    " FROM viewer_exchanges e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.is_public = 1",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW viewer_exchange_keys AS"
    " SELECT e.session_id, e.id, e.position, e.title_md5, e.created_at AS created_raw, e.pieces_key,"
    "  e.prompt_sha256, e.response_sha256, e.redaction"
    " FROM exchanges e FORCE INDEX (exchanges_pieces) JOIN sessions s ON s.id = e.session_id"
    " WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL AND e.hidden = 0 AND e.scanned = 1",
    "CREATE OR REPLACE SQL SECURITY DEFINER VIEW public_exchange_keys AS"
    " SELECT e.session_id, e.id, e.position, e.title_md5, e.created_raw, e.pieces_key, e.prompt_sha256,"
    "  e.response_sha256, e.redaction"
    " FROM viewer_exchange_keys e JOIN sessions s ON s.id = e.session_id"
    " WHERE s.is_public = 1",
    NULL,
};

/* The rules changed in 2c0f221 in a way that finds more (a random token holding a placeholder
 * word by chance was taken for a placeholder; docs/secret-rules.md "Recall"): every row scanned by
 * the earlier rules is scanned again. Unscanned rows leave the public pages (the views show scanned
 * rows only) until the owner's next change or the background pass has scanned them: fail closed.
 * Re-runnable: it only sets flags. */
static const char *const m10_steps[] = {
    "UPDATE exchanges SET scanned = 0 WHERE scanned = 1 AND deleted_at IS NULL",
    "UPDATE sessions SET title_scanned = 0 WHERE title_scanned = 1 AND deleted_at IS NULL",
    NULL,
};

/* Deleted means gone: an exchange the owner deleted kept its rendered pieces (its text, rendered)
 * in exchanges.pieces although its text was wiped. The deletes clear them now; this clears those
 * deleted before. (Exchanges removed by a re-sync keep their text to be matched, and their pieces.)
 * Re-runnable. */
static const char *const m11_steps[] = {
    "UPDATE exchanges SET pieces = NULL, pieces_key = NULL"
    " WHERE deleted_at IS NOT NULL AND removed_by_sync = 0 AND (pieces IS NOT NULL OR pieces_key IS NOT "
    "NULL)",
    NULL,
};

/* The owner console (docs/console.md): one-time sign-in links (kind 'login', "sll_…") and console
 * sessions (kind 'console', "slc_…"), in a table of their own: a node of an older release, which
 * knows only `tokens`, can never take one for a bearer token. Only the SHA-256 is stored. parent_id
 * is the bearer token a link or session came from (NULL: an operator's link); revoking that token
 * ends them. Re-runnable. */
static const char *const m12_steps[] = {
    "CREATE TABLE IF NOT EXISTS console_tokens ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " token_hash BINARY(32) NOT NULL,"
    " kind ENUM('login','console') NOT NULL,"
    " tenant_id BIGINT UNSIGNED NOT NULL,"
    " user_id BIGINT UNSIGNED NOT NULL,"
    " parent_id BIGINT UNSIGNED NULL,"
    " created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),"
    " expires_at DATETIME(6) NOT NULL,"
    " used_at DATETIME(6) NULL,"
    " revoked_at DATETIME(6) NULL,"
    " UNIQUE KEY console_tokens_hash (token_hash),"
    " KEY console_tokens_expiry (expires_at),"
    " CONSTRAINT console_tokens_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id),"
    " CONSTRAINT console_tokens_user FOREIGN KEY (user_id) REFERENCES users (id),"
    " CONSTRAINT console_tokens_parent FOREIGN KEY (parent_id) REFERENCES tokens (id)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
    NULL,
};

/* The chunk state of a public projection (core/chunks.c, docs/pieces.md "Changes that cost what
 * they change"): per session, its visible exchanges' piece keys, lengths and CRCs in chunks (the
 * recipe's), so that an owner change of a long session reads and rewrites the chunks it touches
 * instead of every exchange's row. sessions.chunks_version is the version those rows describe; any
 * change of a column that decides what the public views show of an exchange, by whoever makes it
 * (an operator in SQL included), sets it to NULL (the triggers below), and the next publish of the
 * session then builds from the rows, as before, and writes the state again. The triggers' UPDATE
 * has no condition on chunks_version: with one, a statement at READ COMMITTED could skip the
 * session's row (a semi-consistent read) instead of waiting for an owner change that holds it and
 * is about to write a state that no longer holds. Re-runnable. */
static const char *const m13_steps[] = {
    "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS chunks_version BIGINT UNSIGNED NULL",
    "CREATE TABLE IF NOT EXISTS session_chunks ("
    " session_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " first_pos BIGINT NOT NULL," /* the chunk's first exchange: position, id (its place) */
    " first_id BIGINT UNSIGNED NOT NULL,"
    " data MEDIUMBLOB NOT NULL," /* chunks.c: the chunk's exchanges and their sums */
    " PRIMARY KEY (session_id, first_pos, first_id),"
    " CONSTRAINT chunks_session FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE"
    ") ENGINE=InnoDB",
    "DROP TRIGGER IF EXISTS exchanges_text_hashes",
    "CREATE TRIGGER exchanges_text_hashes BEFORE UPDATE ON exchanges FOR EACH ROW BEGIN"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.prompt <=> BINARY OLD.prompt) THEN"
    "  SET NEW.prompt_sha256 = UNHEX(SHA2(NEW.prompt, 256)); SET NEW.scanned = 0; END IF;"
    " IF NEW.deleted_at IS NULL AND NOT (BINARY NEW.response <=> BINARY OLD.response) THEN"
    "  SET NEW.response_sha256 = UNHEX(SHA2(NEW.response, 256)); SET NEW.scanned = 0; END IF;"
    " IF NEW.deleted_at IS NULL AND (NOT (BINARY NEW.title <=> BINARY OLD.title)"
    "  OR NOT (BINARY NEW.default_title <=> BINARY OLD.default_title)) THEN SET NEW.scanned = 0; END IF;"
    " IF NOT (NEW.session_id <=> OLD.session_id AND NEW.id <=> OLD.id AND NEW.position <=> OLD.position"
    "  AND NEW.hidden <=> OLD.hidden AND NEW.deleted_at <=> OLD.deleted_at AND NEW.scanned <=> OLD.scanned"
    "  AND NEW.created_at <=> OLD.created_at AND BINARY NEW.title <=> BINARY OLD.title"
    "  AND BINARY NEW.default_title <=> BINARY OLD.default_title"
    "  AND BINARY NEW.public_title <=> BINARY OLD.public_title"
    "  AND NEW.prompt_sha256 <=> OLD.prompt_sha256 AND NEW.response_sha256 <=> OLD.response_sha256"
    "  AND BINARY NEW.public_prompt <=> BINARY OLD.public_prompt"
    "  AND BINARY NEW.public_response <=> BINARY OLD.public_response"
    "  AND NEW.redaction <=> OLD.redaction) THEN"
    "  UPDATE sessions SET chunks_version = NULL WHERE id IN (OLD.session_id, NEW.session_id);"
    " END IF;"
    " END",
    "CREATE TRIGGER IF NOT EXISTS exchanges_chunks_insert AFTER INSERT ON exchanges FOR EACH ROW"
    " UPDATE sessions SET chunks_version = NULL WHERE id = NEW.session_id",
    "CREATE TRIGGER IF NOT EXISTS exchanges_chunks_delete AFTER DELETE ON exchanges FOR EACH ROW"
    " UPDATE sessions SET chunks_version = NULL WHERE id = OLD.session_id",
    NULL,
};

const sl_store_migration_t sl_store_migrations[] = {
    {1, "initial schema", m1_steps},
    {2, "full-text index on exchanges", m2_steps},
    {3, "cache repair flag on sessions", m3_steps},
    {4, "cache repair backoff", m4_steps},
    {5, "re-sync identity and upload history", m5_steps},
    {6, "projection pieces with each exchange", m6_steps},
    {7, "projection keys through their index", m7_steps},
    {8, "uploads that grow: tail parts and references", m8_steps},
    {9, "secret scanning: findings, redacted public text, scanned rows only", m9_steps},
    {10, "secret scanning: rescan with the rules of 2c0f221", m10_steps},
    {11, "deleted exchanges lose their rendered pieces", m11_steps},
    {12, "console sessions and sign-in links", m12_steps},
    {13, "chunk state of long public sessions", m13_steps},
};

const size_t sl_store_migrations_count = sizeof(sl_store_migrations) / sizeof(sl_store_migrations[0]);

/* ---- migrations ---- */

static const char SQL_MIGRATIONS_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                           " version INT NOT NULL PRIMARY KEY,"
                                           " name VARCHAR(200) NOT NULL,"
                                           " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
                                           ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
static const char SQL_LOCK[] = "SELECT GET_LOCK('shareline_migrate', 60)";
static const char SQL_UNLOCK[] = "SELECT RELEASE_LOCK('shareline_migrate')";
static const char SQL_APPLIED[] = "SELECT COUNT(*) FROM schema_migrations WHERE version = ?";
static const char SQL_RECORD[] = "INSERT INTO schema_migrations (version, name) VALUES (?, ?)";

int sl_store_migrate(sl_store_sync_t *db, sl_store_error_t *err)
{
    sl_store_result_t *r = NULL;
    /* Several nodes may start at once: one migrates, the others wait for it and find nothing to do. */
    if (sl_store_sync_exec(db, SQL_LOCK, NULL, 0, &r, err) != 0)
        return -1;
    int locked =
        r->nrows == 1 && sl_store_cell(r, 0, 0)->type == SL_STORE_INT && sl_store_cell(r, 0, 0)->i == 1;
    sl_store_result_free(r);
    if (!locked) {
        sl_store__errorf(err, SL_STORE_E_TIMEOUT, "another node held the migration lock for 60 s");
        return -1;
    }
    int rc = -1;
    if (sl_store_sync_exec(db, SQL_MIGRATIONS_TABLE, NULL, 0, NULL, err) != 0)
        goto unlock;
    for (size_t i = 0; i < sl_store_migrations_count; i++) {
        const sl_store_migration_t *m = &sl_store_migrations[i];
        sl_store_value_t v[] = {sl_store_int(m->version), sl_store_text(m->name, strlen(m->name))};
        if (sl_store_sync_exec(db, SQL_APPLIED, v, 1, &r, err) != 0)
            goto unlock;
        int applied = sl_store_cell(r, 0, 0)->i > 0;
        sl_store_result_free(r);
        if (applied)
            continue;
        /* DDL commits implicitly in MariaDB, so a migration is not atomic: every step is written
         * to be re-runnable (IF NOT EXISTS, CREATE OR REPLACE), and the version is recorded last. */
        for (const char *const *step = m->steps; *step; step++) {
            if (sl_store_sync_exec(db, *step, NULL, 0, NULL, err) != 0) {
                if (err) {
                    char msg[sizeof(err->message)];
                    snprintf(msg, sizeof(msg), "migration %d (%.40s): %.180s", m->version, m->name,
                             err->message);
                    memcpy(err->message, msg, sizeof(msg));
                }
                goto unlock;
            }
        }
        if (sl_store_sync_exec(db, SQL_RECORD, v, 2, NULL, err) != 0)
            goto unlock;
    }
    rc = 0;
unlock:;
    sl_store_error_t ignored;
    if (sl_store_sync_exec(db, SQL_UNLOCK, NULL, 0, NULL, &ignored) != 0 && rc == 0) {
        *err = ignored;
        rc = -1;
    }
    return rc;
}
