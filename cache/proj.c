/*
 * The projection entries of cache/ (cache.h): one key per session, "<prefix>p:<id>", holding a
 * LEASE, MARK, PUBLIC or TOMB value, read with GET (or GETRANGE for the head only) and written
 * only by the Lua scripts below, each atomic in Redis: the write rules of docs/invalidation.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/internal/client.h"

/* ---- Lua: the conditional writes of the invalidation protocol ----
 * Versions are decimal uint64 strings without leading zeros, so they compare exactly as
 * (length, then bytes) — Lua numbers are doubles and would round above 2^53. A stored version
 * that is not all digits (someone else's value) is treated as no version: the write wins. */
#define LUA_PARSE                                                                                            \
    "local function gt(a, b) if #a ~= #b then return #a > #b end return a > b end "                          \
    "local cur = redis.call('GET', KEYS[1]) "                                                                \
    "local kind, ver = nil, nil "                                                                            \
    "if cur then "                                                                                           \
    "  kind = string.sub(cur, 1, 1) "                                                                        \
    "  if kind == 'P' then local nl = string.find(cur, '\\n', 2, true) "                                     \
    "    if nl then local h = string.sub(cur, 2, nl - 1) "                                                   \
    "      ver = string.match(h, '^(%d+) %x+$') or h end "                                                   \
    "  elseif kind == 'M' or kind == 'T' then ver = string.sub(cur, 2) end "                                 \
    "  if ver and not string.match(ver, '^%d+$') then ver = nil end "                                        \
    "end "

/* ARGV: 1 = lease value, 2 = TTL ms. SET NX returns false (nil) when the key exists. */
static const char LUA_LEASE[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "return 0";

/* ARGV: 1 = expected lease value, 2 = new value, 3 = TTL seconds (0 = none) */
static const char LUA_FILL[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
    "else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

/* ARGV: 1 = version, 2 = TTL ms. A MARK of an equal or lower version and a LEASE are overwritten.
 * Refused, it answers what holds the key ("P<v>", "T<v>" or "M<v>"): the caller learns how far
 * ahead Redis is (a restored database is behind the cache) and moves past it. */
static const char LUA_MARK[] =
    LUA_PARSE "if ver and (kind == 'P' or kind == 'T' or kind == 'M') and gt(ver, ARGV[1]) "
              "then return kind .. ver end "
              "redis.call('SET', KEYS[1], 'M' .. ARGV[1], 'PX', ARGV[2]) return 1";

/* ARGV: 1 = version. Removes exactly the MARK of that version (a change that was not made). */
static const char LUA_UNMARK[] =
    "if redis.call('GET', KEYS[1]) == 'M' .. ARGV[1] then redis.call('DEL', KEYS[1]) "
    "return 1 end return 0";

/* ARGV: 1 = version, 2 = new value, 3 = TTL seconds (0 = none). Refused, it answers what holds the
 * key, as LUA_MARK does. */
static const char LUA_PUBLISH[] =
    LUA_PARSE "if ver and kind == 'M' and gt(ver, ARGV[1]) then return kind .. ver end "
              "if ver and (kind == 'P' or kind == 'T') and not gt(ARGV[1], ver) "
              "then return kind .. ver end "
              "if tonumber(ARGV[3]) > 0 then "
              "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
              "else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sl_cache__parse_refusal(sl_proj_reply_t *pr, const char *s, size_t len)
{
    if (len < 2 || parse_u64(s + 1, len - 1, &pr->version) != 0)
        return -1;
    switch (s[0]) {
    case 'P':
        pr->kind = SL_PROJ_PUBLIC;
        return 0;
    case 'T':
        pr->kind = SL_PROJ_TOMB;
        return 0;
    case 'M':
        pr->kind = SL_PROJ_MARK;
        return 0;
    default:
        return -1;
    }
}

static int parse_hex64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 16)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* Parses a projection value (or, for HEAD, its first bytes) into pr. */
void sl_cache__parse_proj(sl_proj_reply_t *pr, const redisReply *r)
{
    if (r->type == REDIS_REPLY_NIL) {
        pr->kind = SL_PROJ_ABSENT;
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        pr->status = SL_CACHE_E_REPLY;
        pr->error = "unexpected reply type for a projection key";
        return;
    }
    const char *s = r->str;
    size_t len = (size_t)r->len;
    size_t vend = len;
    if (len < 2)
        goto bad;
    switch (s[0]) {
    case 'L':
        pr->kind = SL_PROJ_LEASE;
        break;
    case 'M':
        pr->kind = SL_PROJ_MARK;
        break;
    case 'T':
        pr->kind = SL_PROJ_TOMB;
        break;
    case 'P': {
        const char *nl = memchr(s, '\n', len);
        if (nl == NULL)
            goto bad;
        pr->kind = SL_PROJ_PUBLIC;
        vend = (size_t)(nl - s);
        pr->payload = nl + 1;
        pr->len = len - vend - 1;
        /* "P<version> <16 hex digits>\n": the content tag (an entry without one has tag 0) */
        const char *sp = memchr(s, ' ', vend);
        if (sp != NULL) {
            if (parse_hex64(sp + 1, (size_t)(nl - sp - 1), &pr->tag) != 0)
                goto bad;
            vend = (size_t)(sp - s);
        }
        break;
    }
    default:
        goto bad;
    }
    if (parse_u64(s + 1, vend - 1, &pr->version) == 0)
        return;
bad:
    pr->status = SL_CACHE_E_REPLY;
    pr->error = "malformed value in a projection key";
    pr->kind = SL_PROJ_ABSENT;
    pr->version = 0;
    pr->payload = NULL;
    pr->len = 0;
}

/* Builds "<prefix>p:<id>" into stackbuf, or on the heap when it does not fit. */
static char *make_key(sl_cache_t *c, const char *id, size_t idlen, size_t *len, char *stackbuf,
                      size_t stacklen)
{
    size_t n = c->prefix_len + 2 + idlen;
    char *k = n <= stacklen ? stackbuf : malloc(n);
    if (k == NULL)
        abort();
    memcpy(k, c->prefix, c->prefix_len);
    memcpy(k + c->prefix_len, "p:", 2);
    if (idlen)
        memcpy(k + c->prefix_len + 2, id, idlen);
    *len = n;
    return k;
}

static void send_get(sl_cache_t *c, ckind_t kind, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, kind);
    k->pcb = cb;
    k->data = data;
    char kb[256];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    if (kind == K_GET) {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, klen};
        sl_cache__send(k, 2, argv, lens);
    } else {
        /* "P<20 digits> <16 hex>\n" fits in 39 bytes: only the head crosses the wire, however big the
         * entry. */
        const char *argv[] = {"GETRANGE", key, "0", "47"};
        size_t lens[] = {8, klen, 1, 2};
        sl_cache__send(k, 4, argv, lens);
    }
    if (key != kb)
        free(key);
}

void sl_cache_proj_get(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    send_get(c, K_GET, id, idlen, cb, data);
}

void sl_cache_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    send_get(c, K_HEAD, id, idlen, cb, data);
}

void sl_cache_proj_lease(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, unsigned ttl_ms,
                         sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], val[32], ttl[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(val, sizeof(val), "L%" PRIu64, token);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1); /* PX 0 is an error in Redis */
    const char *argv[] = {"EVAL", LUA_LEASE, "1", key, val, ttl};
    size_t lens[] = {4, sizeof(LUA_LEASE) - 1, 1, klen, (size_t)vlen, (size_t)tlen};
    sl_cache__send(k, 6, argv, lens);
    if (key != kb)
        free(key);
}

/* "P<version> <tag>\n<payload>" or "T<version>" */
static char *make_value(sl_proj_kind_t kind, uint64_t version, uint64_t tag, const void *payload, size_t len,
                        size_t *out)
{
    char head[48];
    int hlen = kind == SL_PROJ_PUBLIC
                   ? snprintf(head, sizeof(head), "P%" PRIu64 " %016" PRIx64 "\n", version, tag)
                   : snprintf(head, sizeof(head), "T%" PRIu64, version);
    size_t n = (size_t)hlen + (kind == SL_PROJ_PUBLIC ? len : 0);
    char *v = malloc(n);
    if (v == NULL)
        abort();
    memcpy(v, head, (size_t)hlen);
    if (kind == SL_PROJ_PUBLIC && len)
        memcpy(v + hlen, payload, len);
    *out = n;
    return v;
}

/* fill/publish write PUBLIC or TOMB only; anything else fails (later, from the loop). */
static int bad_kind(cmd_t *k, sl_proj_kind_t kind)
{
    if (kind == SL_PROJ_PUBLIC || kind == SL_PROJ_TOMB)
        return 0;
    sl_cache__fail(k, SL_CACHE_E_REPLY, "only PUBLIC or TOMB can be written");
    return 1;
}

void sl_cache_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, uint64_t tag, const void *payload, size_t len, sl_proj_cb cb,
                        void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind))
        return;
    char kb[256], lease[32], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, tag, payload, len, &vlen);
    int llen = snprintf(lease, sizeof(lease), "L%" PRIu64, token);
    int tlen =
        snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_FILL, "1", key, lease, val, ttl};
    size_t lens[] = {4, sizeof(LUA_FILL) - 1, 1, klen, (size_t)llen, vlen, (size_t)tlen};
    sl_cache__send(k, 7, argv, lens);
    free(val);
    if (key != kb)
        free(key);
}

void sl_cache_proj_mark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, unsigned ttl_ms,
                        sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], ver[24], ttl[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    int tlen = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1);
    const char *argv[] = {"EVAL", LUA_MARK, "1", key, ver, ttl};
    size_t lens[] = {4, sizeof(LUA_MARK) - 1, 1, klen, (size_t)vlen, (size_t)tlen};
    sl_cache__send(k, 6, argv, lens);
    if (key != kb)
        free(key);
}

void sl_cache_proj_publish(sl_cache_t *c, const char *id, size_t idlen, sl_proj_kind_t kind, uint64_t version,
                           uint64_t tag, const void *payload, size_t len, sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind))
        return;
    char kb[256], ver[24], ttl[24];
    size_t klen, vlen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *val = make_value(kind, version, tag, payload, len, &vlen);
    int verlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    int tlen =
        snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", LUA_PUBLISH, "1", key, ver, val, ttl};
    size_t lens[] = {4, sizeof(LUA_PUBLISH) - 1, 1, klen, (size_t)verlen, vlen, (size_t)tlen};
    sl_cache__send(k, 7, argv, lens);
    free(val);
    if (key != kb)
        free(key);
}

void sl_cache_proj_unmark(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, sl_proj_cb cb,
                          void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], ver[24];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int vlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    const char *argv[] = {"EVAL", LUA_UNMARK, "1", key, ver};
    size_t lens[] = {4, sizeof(LUA_UNMARK) - 1, 1, klen, (size_t)vlen};
    sl_cache__send(k, 5, argv, lens);
    if (key != kb)
        free(key);
}
