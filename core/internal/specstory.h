/*
 * Internal to core/: the SpecStory Markdown importer. Turns a history file (every format described
 * in docs/specstory.md and tests/fixtures/specstory/, and variants) into exchanges.
 *
 * An exchange is one non-sidechain user turn (the prompt) plus everything after it up to the next
 * non-sidechain user turn (the response: agent turns, tool uses, sidechain turns), as Markdown.
 * No line of a turn is dropped: every line that belongs to a turn ends up in a prompt or response.
 */
#ifndef SL_CORE_SPECSTORY_H
#define SL_CORE_SPECSTORY_H

#include <stddef.h>

/* An exchange's strings live in blocks owned by the doc: read them, never free them one by one. */
typedef struct sl_specstory_exchange {
    char *title;  /* default title from the prompt's first non-empty line (<= 120 bytes, valid
                          UTF-8, never NULL; "Untitled exchange" when the prompt is empty) */
    char *prompt; /* NUL-terminated; prompt_len excludes the NUL */
    size_t prompt_len;
    char *response; /* NUL-terminated; response_len excludes the NUL */
    size_t response_len;
    char *created_at; /* "YYYY-MM-DDTHH:MM:SSZ" from the user turn's header, or NULL */
} sl_specstory_exchange_t;

typedef struct sl_specstory_doc {
    char *title;      /* the document's "# ..." heading text, or NULL */
    char *agent;      /* e.g. "Claude Code", "Cursor CLI", "Codex CLI", from the session comment, or NULL */
    char *session_id; /* the uuid of the session comment, or NULL */
    char *created_at; /* "YYYY-MM-DDTHH:MM:SSZ" of the session, or NULL */
    sl_specstory_exchange_t *exchanges;
    size_t count;
    struct text_blk *text; /* internal: holds every string of the exchanges (freed with the doc) */
} sl_specstory_doc_t;

/* Parses md[0..len). Returns 0 and fills doc (free with sl_specstory_free), or -1 with a human
 * message in err when the input is not a SpecStory history file at all (or is not valid UTF-8). */
int sl_specstory_parse(const char *md, size_t len, sl_specstory_doc_t *doc, char *err, size_t errlen);

/* The same, refusing (-2, with a message) a file of more than max_exchanges exchanges before any is
 * built (0: no limit). Work is linear in len; memory is at most 9 bytes per line of the input
 * (its line table) plus the exchanges' text, which is never longer than the input. */
int sl_specstory_parse_max(const char *md, size_t len, size_t max_exchanges, sl_specstory_doc_t *doc,
                           char *err, size_t errlen);

void sl_specstory_free(sl_specstory_doc_t *doc);

/* The default title of a prompt (the rule above), malloc'd; NULL when out of memory. */
char *sl_specstory_title(const char *prompt, size_t len);

#endif
