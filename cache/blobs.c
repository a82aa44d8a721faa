/*
 * Exchange pieces in Redis (cache.h, docs/pieces.md): "<prefix>x:<32 hex>", the blob of one
 * exchange's pieces under the key that names it. Immutable by construction (equal keys, equal
 * bytes), so they need none of the write rules of the projection entries: a plain SET with a TTL,
 * and MGET to read the ones a reader lacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal/client.h"

#define BLOB_KEY_MAX 512

/* "<prefix>x:<32 hex>" into buf (BLOB_KEY_MAX bytes at least, or on the heap when the prefix is
 * long). */
static char *blob_key(const sl_cache_t *c, const unsigned char key[16], char *buf, size_t *len)
{
    size_t n = c->prefix_len + 2 + 32;
    char *k = n <= BLOB_KEY_MAX ? buf : malloc(n);
    if (k == NULL)
        abort();
    memcpy(k, c->prefix, c->prefix_len);
    memcpy(k + c->prefix_len, "x:", 2);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        k[c->prefix_len + 2 + 2 * i] = hex[key[i] >> 4];
        k[c->prefix_len + 3 + 2 * i] = hex[key[i] & 15];
    }
    *len = n;
    return k;
}

void sl_cache__deliver_blobs(cmd_t *k, sl_cache_status_t status, const char *error, const redisReply *r)
{
    sl_blobs_reply_t br = {.status = status, .error = error};
    if (status != SL_CACHE_OK || k->nblobs == 0) {
        if (status == SL_CACHE_OK && r->type != REDIS_REPLY_INTEGER &&
            (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)) {
            br.status = SL_CACHE_E_REPLY;
            br.error = "unexpected reply to a blob write";
        }
        k->bcb(&br, k->data);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != k->nblobs) {
        br.status = SL_CACHE_E_REPLY;
        br.error = "unexpected reply to a blob read";
        k->bcb(&br, k->data);
        return;
    }
    const void **blob = calloc(k->nblobs, sizeof(*blob));
    size_t *len = calloc(k->nblobs, sizeof(*len));
    if (blob == NULL || len == NULL) {
        free(blob);
        free(len);
        br.status = SL_CACHE_E_REPLY;
        br.error = "out of memory";
        k->bcb(&br, k->data);
        return;
    }
    for (size_t i = 0; i < k->nblobs; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING) {
            blob[i] = e->str;
            len[i] = (size_t)e->len;
        }
    }
    br.n = k->nblobs;
    br.blob = blob;
    br.len = len;
    k->bcb(&br, k->data);
    free(blob);
    free(len);
}

/* "<cmd> <key 1> .. <key n>" of blobs. */
static void send_keys(sl_cache_t *c, cmd_t *k, const char *cmd, size_t n, const unsigned char (*keys)[16])
{
    if (n == 0) {
        sl_cache__fail(k, SL_CACHE_E_REPLY, "no blobs named");
        return;
    }
    const char **argv = malloc((n + 1) * sizeof(*argv));
    size_t *lens = malloc((n + 1) * sizeof(*lens));
    char *names = malloc(n * (c->prefix_len + 2 + 32));
    if (argv == NULL || lens == NULL || names == NULL)
        abort(); /* the exactly-once promise cannot be kept without memory */
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    for (size_t i = 0; i < n; i++) {
        char *at = names + i * (c->prefix_len + 2 + 32), buf[BLOB_KEY_MAX];
        char *key = blob_key(c, keys[i], buf, &lens[i + 1]);
        memcpy(at, key, lens[i + 1]);
        if (key != buf)
            free(key);
        argv[i + 1] = at;
    }
    sl_cache__send(k, (int)(n + 1), argv, lens);
    free(argv);
    free(lens);
    free(names);
}

void sl_cache_blobs_get(sl_cache_t *c, size_t n, const unsigned char (*keys)[16], sl_blobs_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_BLOBS);
    k->bcb = cb;
    k->data = data;
    k->nblobs = n;
    send_keys(c, k, "MGET", n, keys);
}

void sl_cache_blobs_del(sl_cache_t *c, size_t n, const unsigned char (*keys)[16], sl_blobs_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_BLOBS);
    k->bcb = cb;
    k->data = data;
    send_keys(c, k, "DEL", n, keys);
}

void sl_cache_blob_put(sl_cache_t *c, const unsigned char key[16], const void *blob, size_t len,
                       unsigned ttl_s, sl_blobs_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_BLOBS);
    k->bcb = cb;
    k->data = data;
    char buf[BLOB_KEY_MAX], ttl[24];
    size_t klen;
    char *name = blob_key(c, key, buf, &klen);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_s ? ttl_s : 1);
    const char *argv[] = {"SET", name, blob, "EX", ttl};
    size_t lens[] = {3, klen, len, 2, (size_t)tlen};
    sl_cache__send(k, 5, argv, lens);
    if (name != buf)
        free(name);
}
