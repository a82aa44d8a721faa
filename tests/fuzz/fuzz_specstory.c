/* Fuzz target: the SpecStory Markdown importer (core/specstory.c). On success: every string is
 * there, NUL-terminated at its length, and valid UTF-8; the title rule holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal/specstory.h"
#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t len)
{
    if (s == NULL || s[len] != '\0' || !sl_rpc_utf8_valid(s, len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_specstory_doc_t doc;
    char err[256] = "";
    if (sl_specstory_parse((const char *)data, size, &doc, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    if (doc.count > 0 && doc.exchanges == NULL)
        abort();
    for (size_t i = 0; i < doc.count; i++) {
        const sl_specstory_exchange_t *e = &doc.exchanges[i];
        check_str(e->prompt, e->prompt_len);
        check_str(e->response, e->response_len);
        if (e->title == NULL || strlen(e->title) > 120 || strlen(e->title) == 0)
            abort();
        check_str(e->title, strlen(e->title));
        if (e->created_at && strlen(e->created_at) != 20)
            abort();
    }
    if (doc.title)
        check_str(doc.title, strlen(doc.title));
    sl_specstory_free(&doc);
    return 0;
}
