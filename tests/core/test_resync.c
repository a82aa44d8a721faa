/*
 * Re-sync identity (core/resync.c): which stored exchange an uploaded one is, and that a hide
 * follows the text, never a row's position. The cases of the privacy review: a same-prompt upload
 * must not move a hidden response onto a visible row; a hidden exchange whose prompt changed by one
 * character, or whose response was re-generated, arrives hidden; a partial upload then the full
 * file brings everything back with its flags; an exchange the owner deleted stays deleted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/sha.h>

#include "core/internal/resync.h"

static void sha(const char *s, unsigned char out[32])
{
    SHA256((const unsigned char *)s, strlen(s), out);
}

static sl_stored_t stored(int64_t id, uint32_t pos, const char *prompt, const char *response, int hidden)
{
    sl_stored_t s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.position = pos;
    sha(prompt, s.psha);
    sha(response, s.rsha);
    s.has_rsha = 1;
    s.hidden = hidden;
    return s;
}

static sl_uploaded_t uploaded(const char *prompt, const char *response)
{
    sl_uploaded_t u;
    memset(&u, 0, sizeof(u));
    sha(prompt, u.psha);
    sha(response, u.rsha);
    u.prompt_len = strlen(prompt);
    return u;
}

#define LONG_PROMPT "Please explain why the upload test fails on the CI machine only"

static void test_same_prompt_keeps_the_hide_on_its_text(void **state)
{
    /* stored [yes->R1 visible, yes->R2 hidden], uploaded [yes->R2] (an earlier turn dropped) */
    sl_stored_t st[] = {stored(1, 1, "yes", "R1", 0), stored(2, 2, "yes", "R2 secret", 1)};
    sl_uploaded_t up[] = {uploaded("yes", "R2 secret")};
    sl_resync_step_t steps[1];
    unsigned char removed[2];
    assert_int_equal(sl_resync_plan(st, 2, up, 1, steps, removed), 0);
    assert_int_equal(steps[0].row, 1); /* the hidden row, not the visible first one */
    assert_int_equal(steps[0].hidden, 1);
    assert_int_equal(removed[0], 1);
    assert_int_equal(removed[1], 0);
}

static void test_changed_prompt_keeps_a_hidden_response_hidden(void **state)
{
    sl_stored_t st[] = {stored(1, 1, LONG_PROMPT, "the secret answer", 1)};
    sl_uploaded_t up[] = {uploaded(LONG_PROMPT " ", "the secret answer")}; /* whitespace fixed */
    sl_resync_step_t steps[1];
    unsigned char removed[1];
    assert_int_equal(sl_resync_plan(st, 1, up, 1, steps, removed), 0);
    assert_int_equal(steps[0].row, -1);   /* new text: a new row... */
    assert_int_equal(steps[0].hidden, 1); /* ...that arrives hidden */
}

static void test_changed_prompt_in_the_same_turn_is_the_same_exchange(void **state)
{
    /* a re-export fixed the prompt's whitespace; the turn's timestamp and response are unchanged */
    sl_stored_t st[] = {stored(1, 1, "intro", "i", 0), stored(2, 2, LONG_PROMPT, "the secret answer", 1)};
    strcpy(st[1].created, "2026-02-01T11:01:00Z");
    sl_uploaded_t up[] = {uploaded("intro", "i"), uploaded(LONG_PROMPT "  ", "the secret answer")};
    up[1].created = "2026-02-01T11:01:00Z";
    sl_resync_step_t steps[2];
    unsigned char removed[2];
    assert_int_equal(sl_resync_plan(st, 2, up, 2, steps, removed), 0);
    assert_int_equal(steps[1].row, 1); /* the same row: its id, title and hide stay */
    assert_int_equal(steps[1].hidden, 1);
    assert_int_equal(removed[0] + removed[1], 0);
    /* another turn time: not the same exchange, but the hide still follows the response */
    up[1].created = "2026-02-01T11:30:00Z";
    assert_int_equal(sl_resync_plan(st, 2, up, 2, steps, removed), 0);
    assert_int_equal(steps[1].row, -1);
    assert_int_equal(steps[1].hidden, 1);
}

static void test_regenerated_response_keeps_a_hidden_prompt_hidden(void **state)
{
    sl_stored_t st[] = {stored(1, 1, LONG_PROMPT, "first answer", 1), stored(2, 2, "next", "n", 0)};
    /* the same prompt, a new response, at another place: the prompt the owner hid stays hidden */
    sl_uploaded_t up[] = {uploaded("intro", "i"), uploaded(LONG_PROMPT, "second answer")};
    sl_resync_step_t steps[2];
    unsigned char removed[2];
    assert_int_equal(sl_resync_plan(st, 2, up, 2, steps, removed), 0);
    assert_int_equal(steps[0].hidden, 0);
    assert_int_equal(steps[1].hidden, 1);
}

static void test_short_prompts_do_not_spread_a_hide(void **state)
{
    /* hiding one "yes" does not hide every later "yes" with another response */
    sl_stored_t st[] = {stored(1, 1, "yes", "hidden one", 1)};
    sl_uploaded_t up[] = {uploaded("yes", "hidden one"), uploaded("yes", "a visible one")};
    sl_resync_step_t steps[2];
    unsigned char removed[1];
    assert_int_equal(sl_resync_plan(st, 1, up, 2, steps, removed), 0);
    assert_int_equal(steps[0].row, 0);
    assert_int_equal(steps[0].hidden, 1);
    assert_int_equal(steps[1].row, -1);
    assert_int_equal(steps[1].hidden, 0);
}

static void test_partial_then_full_upload(void **state)
{
    sl_stored_t st[] = {stored(1, 1, "a", "A", 0), stored(2, 2, "b", "B secret", 1),
                        stored(3, 3, "c", "C", 0)};
    sl_uploaded_t partial[] = {uploaded("a", "A"), uploaded("c", "C")};
    sl_resync_step_t steps[3];
    unsigned char removed[3];
    assert_int_equal(sl_resync_plan(st, 3, partial, 2, steps, removed), 0);
    assert_int_equal(steps[0].row, 0);
    assert_int_equal(steps[1].row, 2);
    assert_int_equal(removed[1], 1); /* B is removed by the sync: its text is kept */
    /* the store after the partial sync: B removed by the sync, still hidden */
    st[1].by_sync = 1;
    st[1].position = 2;
    st[2].position = 2;
    sl_uploaded_t full[] = {uploaded("a", "A"), uploaded("b", "B secret"), uploaded("c", "C")};
    assert_int_equal(sl_resync_plan(st, 3, full, 3, steps, removed), 0);
    assert_int_equal(steps[1].row, 1);    /* B comes back as itself, with its id... */
    assert_int_equal(steps[1].hidden, 1); /* ...and its hide */
    assert_int_equal(steps[0].hidden + steps[2].hidden, 0);
    assert_int_equal(removed[0] + removed[1] + removed[2], 0);
}

static void test_deleted_stays_deleted(void **state)
{
    sl_stored_t st[] = {stored(1, 1, "a", "A", 0)};
    st[0].deleted = 1;
    sl_uploaded_t up[] = {uploaded("a", "A")};
    sl_resync_step_t steps[1];
    unsigned char removed[1];
    assert_int_equal(sl_resync_plan(st, 1, up, 1, steps, removed), 0);
    assert_int_equal(steps[0].row, 0);
    assert_int_equal(steps[0].skip, 1);
    assert_int_equal(removed[0], 0);
}

static void test_same_turn_with_a_grown_response(void **state)
{
    /* the agent was still writing: same prompt, same turn time, longer response -> the same row */
    sl_stored_t st[] = {stored(7, 1, "build it", "part", 0)};
    memcpy(st[0].created, "2026-05-01T12:00:00Z", 21);
    sl_uploaded_t up[] = {uploaded("build it", "part and the rest")};
    up[0].created = "2026-05-01T12:00:00Z";
    sl_resync_step_t steps[1];
    unsigned char removed[1];
    assert_int_equal(sl_resync_plan(st, 1, up, 1, steps, removed), 0);
    assert_int_equal(steps[0].row, 0);
    assert_int_equal(removed[0], 0);
}

static void test_many_identical_exchanges(void **state)
{
    /* 10,000 identical exchanges on both sides: matched one to one, in order (and fast) */
    enum { N = 10000 };
    sl_stored_t *st = calloc(N, sizeof(*st));
    sl_uploaded_t *up = calloc(N, sizeof(*up));
    sl_resync_step_t *steps = calloc(N, sizeof(*steps));
    unsigned char *removed = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        st[i] = stored(i + 1, (uint32_t)i + 1, "yes", "ok", i == 5000);
        up[i] = uploaded("yes", "ok");
    }
    assert_int_equal(sl_resync_plan(st, N, up, N, steps, removed), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(steps[i].row, i);
        /* the response "ok" of the hidden one is hidden text: every "ok" arrives hidden */
        assert_int_equal(steps[i].hidden, 1);
        assert_int_equal(removed[i], 0);
    }
    free(st);
    free(up);
    free(steps);
    free(removed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_prompt_keeps_the_hide_on_its_text),
        cmocka_unit_test(test_changed_prompt_keeps_a_hidden_response_hidden),
        cmocka_unit_test(test_changed_prompt_in_the_same_turn_is_the_same_exchange),
        cmocka_unit_test(test_regenerated_response_keeps_a_hidden_prompt_hidden),
        cmocka_unit_test(test_short_prompts_do_not_spread_a_hide),
        cmocka_unit_test(test_partial_then_full_upload),
        cmocka_unit_test(test_deleted_stays_deleted),
        cmocka_unit_test(test_same_turn_with_a_grown_response),
        cmocka_unit_test(test_many_identical_exchanges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
