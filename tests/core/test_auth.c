/* The token hash comparison (core/auth.c): exact, over all 32 bytes, length checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/internal/core.h"

static void test_hash_equal(void **state)
{
    (void)state;
    unsigned char h[32], s[32];
    sl_token_hash("slt_example", 11, h);
    memcpy(s, h, 32);
    assert_int_equal(sl_token_hash_equal(s, 32, h), 1);
    for (int i = 0; i < 32; i++) { /* a difference in any byte, any bit */
        for (int bit = 0; bit < 8; bit++) {
            s[i] ^= (unsigned char)(1u << bit);
            assert_int_equal(sl_token_hash_equal(s, 32, h), 0);
            s[i] ^= (unsigned char)(1u << bit);
        }
    }
    assert_int_equal(sl_token_hash_equal(s, 31, h), 0);
    assert_int_equal(sl_token_hash_equal(s, 33, h), 0);
    assert_int_equal(sl_token_hash_equal(NULL, 32, h), 0);
    unsigned char h2[32];
    sl_token_hash("slt_examplf", 11, h2);
    assert_int_equal(sl_token_hash_equal(h2, 32, h), 0);
}

static void test_token_new(void **state)
{
    (void)state;
    char a[64], b[64];
    assert_int_equal(sl_token_new(a, sizeof(a)), 0);
    assert_int_equal(sl_token_new(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), 4 + 43);
    assert_memory_equal(a, "slt_", 4);
    assert_string_not_equal(a, b);
    assert_int_equal(sl_token_new(a, 10), -1); /* too small a buffer */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_hash_equal), cmocka_unit_test(test_token_new)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
