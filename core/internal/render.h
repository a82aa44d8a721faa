/*
 * Internal to core/: Markdown -> safe HTML for the viewer page (md4c's parser, our own renderer).
 *
 * Safety rules (the page runs no script and loads nothing from another origin):
 *   - every byte of text is HTML-escaped; raw HTML in the Markdown is shown as text (MD_FLAG_NOHTML);
 *   - links keep only http:, https:, mailto:, in-page (#) and relative targets; anything else
 *     (javascript:, data:, vbscript:, ...) becomes plain text; links get rel="nofollow noopener";
 *   - images are never loaded: they become a link to the image, labelled with its alt text;
 *   - SpecStory's <tool-use …>, <think> and <details> blocks become collapsed <details> elements
 *     whose summary and body are rendered by these same rules.
 */
#ifndef SL_CORE_RENDER_H
#define SL_CORE_RENDER_H

#include <stddef.h>

typedef void (*sl_render_out)(const char *s, size_t n, void *ud);

/* Renders md[0..len) as HTML block content. */
void sl_render_markdown(const char *md, size_t len, sl_render_out out, void *ud);

/* Escapes s for HTML text and attribute values (& < > " '). */
void sl_render_escape(const char *s, size_t n, sl_render_out out, void *ud);

#endif
