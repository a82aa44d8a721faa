/*
 * The viewer page's Markdown renderer (core/render.c): the HTML-safety rules of
 * core/internal/render.h, each with an input that would break it if the rule did not hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/internal/render.h"

typedef struct out {
    char *p;
    size_t len, cap;
} out_t;

static void put(const char *s, size_t n, void *ud)
{
    out_t *o = ud;
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        assert_non_null(o->p);
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

/* The HTML of md; the caller frees it. */
static char *render(const char *md)
{
    out_t o = {0};
    put("", 0, &o);
    sl_render_markdown(md, strlen(md), put, &o);
    return o.p;
}

static char *escape(const char *s, size_t n)
{
    out_t o = {0};
    put("", 0, &o);
    sl_render_escape(s, n, put, &o);
    return o.p;
}

#define assert_has(html, needle)                                                                             \
    do {                                                                                                     \
        if (strstr((html), (needle)) == NULL)                                                                \
            fail_msg("expected [%s] in [%s]", (needle), (html));                                             \
    } while (0)
#define assert_lacks(html, needle)                                                                           \
    do {                                                                                                     \
        if (strstr((html), (needle)) != NULL)                                                                \
            fail_msg("unexpected [%s] in [%s]", (needle), (html));                                           \
    } while (0)

static void test_escape_every_special_byte(void **state)
{
    static const char in[] = "a&b<c>d\"e'f\0g";
    char *h = escape(in, sizeof(in) - 1);
    assert_string_equal(h, "a&amp;b&lt;c&gt;d&quot;e&#39;f\xEF\xBF\xBDg");
    free(h);
}

static void test_raw_html_is_text(void **state)
{
    char *h = render("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> <b onclick=x>b</b>\n");
    assert_lacks(h, "<script");
    assert_lacks(h, "<img");
    assert_lacks(h, "<b ");
    assert_has(h, "&lt;script&gt;");
    assert_has(h, "&lt;img src=x onerror=alert(1)&gt;");
    free(h);
}

static void test_text_and_code_escaped(void **state)
{
    char *h = render("a < b & \"c\"\n\n```\n</pre><script>x</script>\n```\n\n`<i>`\n");
    assert_lacks(h, "<script");
    assert_lacks(h, "</pre><script");
    assert_lacks(h, "<i>");
    assert_has(h, "&lt;/pre&gt;&lt;script&gt;");
    assert_has(h, "a &lt; b &amp; &quot;c&quot;");
    free(h);
}

static void test_only_safe_link_schemes(void **state)
{
    const char *bad[] = {"javascript:alert(1)",
                         "JaVaScRiPt:alert(1)",
                         "java\tscript:alert(1)",
                         " javascript:x",
                         "data:text/html,<script>x</script>",
                         "vbscript:x",
                         "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char md[200];
        snprintf(md, sizeof(md), "[click](%s)\n", bad[i]);
        char *h = render(md);
        assert_lacks(h, "href=");
        assert_has(h, "click");
        free(h);
    }
    const char *good[] = {"https://example.com/a?b=1&c=2",
                          "http://x.y/",
                          "mailto:a@b.c",
                          "#exchange-2",
                          "/docs/x",
                          "relative/path"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char md[200];
        snprintf(md, sizeof(md), "[ok](%s)\n", good[i]);
        char *h = render(md);
        assert_has(h, "href=\"");
        assert_has(h, "rel=\"nofollow noopener noreferrer\"");
        free(h);
    }
}

static void test_href_attribute_cannot_be_broken_out_of(void **state)
{
    char *h = render("[x](https://e.com/\"onmouseover=\"alert(1))\n\n<https://e.com/'><script>>\n");
    assert_lacks(h, "\"onmouseover");
    assert_lacks(h, "<script");
    free(h);
}

static void test_images_are_never_loaded(void **state)
{
    char *h = render("![a cat](https://e.com/cat.png) ![x](javascript:alert(1))\n");
    assert_lacks(h, "<img");
    assert_has(h, "[image: a cat]");
    assert_has(h, "href=\"https://e.com/cat.png\"");
    assert_lacks(h, "javascript:");
    free(h);
}

static void test_tool_think_details_become_collapsed_details(void **state)
{
    char *h =
        render("before\n\n<tool-use data-tool-type=\"shell\" data-tool-name=\"Bash\"><details>\n"
               "<summary>Run <b>tests</b></summary>\n\n```\nmake test\n```\n</details></tool-use>\n\n"
               "<think><details><summary>Thinking</summary>\nhmm <script>x</script>\n</details></think>\n\n"
               "after\n");
    assert_has(h, "<details class=\"tool\"");
    assert_has(h, "<details class=\"think\"");
    assert_lacks(h, " open");
    assert_lacks(h, "<tool-use");
    assert_lacks(h, "<think>");
    assert_lacks(h, "<script");
    assert_lacks(h, "<b>");
    assert_has(h, "&lt;script&gt;");
    assert_has(h, "make test");
    assert_has(h, "before");
    assert_has(h, "after");
    free(h);
}

static void test_tool_name_attribute_is_escaped(void **state)
{
    char *h = render(
        "<tool-use data-tool-type=\"x\" data-tool-name=\"a&quot;><script>x</script>\">body</tool-use>\n");
    assert_lacks(h, "<script");
    free(h);
}

static void test_unclosed_block_keeps_its_text(void **state)
{
    /* An opener without its closer is text, not a block that swallows the rest. */
    char *h = render("<think>\nstill here\n\n**bold**\n");
    assert_has(h, "still here");
    assert_has(h, "<strong>bold</strong>");
    assert_has(h, "&lt;think&gt;");
    free(h);
}

static void test_tables_and_task_lists_render(void **state)
{
    char *h = render("| a | b |\n|---|---|\n| <i>1</i> | 2 |\n\n- [x] done\n- [ ] todo\n");
    assert_has(h, "<table>");
    assert_has(h, "&lt;i&gt;1&lt;/i&gt;");
    assert_lacks(h, "<i>");
    assert_has(h, "<li>\xE2\x98\x91 done</li>");
    assert_has(h, "<li>\xE2\x98\x90 todo</li>");
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_every_special_byte),
        cmocka_unit_test(test_raw_html_is_text),
        cmocka_unit_test(test_text_and_code_escaped),
        cmocka_unit_test(test_only_safe_link_schemes),
        cmocka_unit_test(test_href_attribute_cannot_be_broken_out_of),
        cmocka_unit_test(test_images_are_never_loaded),
        cmocka_unit_test(test_tool_think_details_become_collapsed_details),
        cmocka_unit_test(test_tool_name_attribute_is_escaped),
        cmocka_unit_test(test_unclosed_block_keeps_its_text),
        cmocka_unit_test(test_tables_and_task_lists_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
