/*
 * The projection entries of cache/ (cache.h): one key per session, "<prefix>p:<id>", holding a
 * LEASE, MARK, PUBLIC or TOMB value, read with LUA_READ (the head and one part) or GETRANGE (the
 * head only) and written only by the Lua scripts below, each atomic in Redis: the write rules of
 * docs/invalidation.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cache/internal/client.h"

/* ---- Lua: the conditional writes of the invalidation protocol ----
 * Versions are decimal uint64 strings without leading zeros, so they compare exactly as
 * (length, then bytes) — Lua numbers are doubles and would round above 2^53. A stored version
 * that is not all digits (someone else's value) is treated as no version: the write wins. */
#define LUA_PARSE                                                                                            \
    "local function gt(a, b) if #a ~= #b then return #a > #b end return a > b end "                          \
    "local cur = redis.call('GETRANGE', KEYS[1], 0, 63) "                                                    \
    "local kind, ver = nil, nil "                                                                            \
    "if cur ~= '' then "                                                                                     \
    "  kind = string.sub(cur, 1, 1) "                                                                        \
    "  if kind == 'P' then ver = string.match(cur, '^P(%d+)[ \\n]') "                                        \
    "  elseif kind == 'M' or kind == 'T' then ver = string.sub(cur, 2) end "                                 \
    "  if ver and not string.match(ver, '^%d+$') then ver = nil end "                                        \
    "end "

/* ARGV: 1 = part (0-based). Answers the whole value when it is not PUBLIC (short: L, M, T; "" when
 * absent), else {head line, the part} — one atomic read that never moves the other parts. */
static const char LUA_READ[] = "local h = redis.call('GETRANGE', KEYS[1], 0, 511) "
                               "if string.sub(h, 1, 1) ~= 'P' then return h end "
                               "local nl = string.find(h, '\\n', 1, true) "
                               "if not nl then return h end "
                               "local line = string.sub(h, 1, nl - 1) "
                               "local it = string.gmatch(line, '%S+') "
                               "it() it() "
                               "local n = tonumber(it() or '') "
                               "local i = tonumber(ARGV[1]) "
                               "if not n or i >= n then return {line} end "
                               "local off = nl "
                               "for k = 1, i do off = off + (tonumber(it() or '') or 0) end "
                               "local len = tonumber(it() or '') or 0 "
                               "if len <= 0 then return {line, ''} end "
                               "return {line, redis.call('GETRANGE', KEYS[1], off, off + len - 1)}";

/* ARGV: 1 = lease value, 2 = TTL ms. SET NX returns false (nil) when the key exists. */
static const char LUA_LEASE[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "return 0";

/* Writing a value: fill and publish take it in ARGV[2] or, when ARGV[2] is '', staged under KEYS[2]
 * by a SET sent just before on the same connection (send_entry). A value passed to a script is
 * copied into Lua and out again — about 1.8 ms of Redis CPU for 1 MB, against 0.13 ms for a plain
 * SET — so a large one is staged and moved into place by RENAME (O(1)). A staged value the script
 * does not use is deleted; one that is gone (its SET failed) is an error, and nothing changed. */
#define LUA_STAGED                                                                                           \
    "local staged = ARGV[2] == '' "                                                                          \
    "if staged and redis.call('EXISTS', KEYS[2]) == 0 then "                                                 \
    "  return redis.error_reply('the staged value is gone') end "                                            \
    "local function store() "                                                                                \
    "  local ttl = tonumber(ARGV[3]) "                                                                       \
    "  if staged then redis.call('RENAME', KEYS[2], KEYS[1]) "                                               \
    "    if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end "        \
    "  elseif ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl) "                                  \
    "  else redis.call('SET', KEYS[1], ARGV[2]) end "                                                        \
    "end "                                                                                                   \
    "local function refuse(r) if staged then redis.call('DEL', KEYS[2]) end return r end "

/* ARGV: 1 = expected lease value, 2 = new value (or '': staged), 3 = TTL seconds (0 = none). The
 * lease is compared with the key's first bytes: a lease is short, and a PUBLIC value is not
 * copied into Lua to be compared. */
static const char LUA_FILL[] =
    LUA_STAGED "if redis.call('GETRANGE', KEYS[1], 0, 63) ~= ARGV[1] then return refuse(0) end "
               "store() return 1";

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

/* ARGV: 1 = version, 2 = new value (or '': staged), 3 = TTL seconds (0 = none). Refused, it answers
 * what holds the key, as LUA_MARK does. */
static const char LUA_PUBLISH[] =
    LUA_STAGED LUA_PARSE "if ver and kind == 'M' and gt(ver, ARGV[1]) then return refuse(kind .. ver) end "
                         "if ver and (kind == 'P' or kind == 'T') and not gt(ARGV[1], ver) "
                         "then return refuse(kind .. ver) end "
                         "store() return 1";

/* ARGV: 1 = the head's start "P<version> <tag> ". Removes exactly that PUBLIC entry. */
static const char LUA_DROP[] = "if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then "
                               "redis.call('DEL', KEYS[1]) return 1 end return 0";

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

static int parse_size(const char **p, const char *end, size_t *out)
{
    const char *q = *p;
    while (q < end && *q != ' ')
        q++;
    uint64_t v;
    if (parse_u64(*p, (size_t)(q - *p), &v) != 0 || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    *p = q < end ? q + 1 : q;
    return 0;
}

/* "P<version> <tag>[ ...]": version and tag from the start of a PUBLIC head (all of it or its first
 * 48 bytes). With `line` (the whole head line), also the part count and lengths and the meta. */
static int parse_public(sl_proj_reply_t *pr, const char *s, size_t len, int line)
{
    const char *end = s + len, *sp = memchr(s, ' ', len);
    if (sp == NULL || parse_u64(s + 1, (size_t)(sp - s - 1), &pr->version) != 0)
        return -1;
    const char *t = sp + 1;
    if (end - t < 16 || parse_hex64(t, 16, &pr->tag) != 0 || (end - t > 16 && t[16] != ' ' && t[16] != '\n'))
        return -1;
    pr->kind = SL_PROJ_PUBLIC;
    if (!line)
        return 0;
    const char *p = t + 16;
    if (p >= end || *p != ' ')
        return -1;
    p++;
    size_t n, l;
    if (parse_size(&p, end, &n) != 0 || n == 0 || n > SL_PROJ_PARTS)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (parse_size(&p, end, &l) != 0)
            return -1;
    pr->meta = p;
    pr->meta_len = (size_t)(end - p);
    return 0;
}

/* Parses what a key holds: a string (a whole short value, or for HEAD the first bytes; "" or nil
 * when absent) or, from LUA_READ, {PUBLIC head line, part} into pr. */
void sl_cache__parse_proj(sl_proj_reply_t *pr, const redisReply *r, int head_only)
{
    if (r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_STRING && r->len == 0)) {
        pr->kind = SL_PROJ_ABSENT;
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && !head_only) {
        if (r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len < 2 ||
            r->element[0]->str[0] != 'P' ||
            parse_public(pr, r->element[0]->str, (size_t)r->element[0]->len, 1) != 0)
            goto bad;
        if (r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING) {
            pr->status = SL_CACHE_E_REPLY;
            pr->error = "the projection entry has no such part";
            pr->kind = SL_PROJ_ABSENT;
            return;
        }
        pr->payload = r->element[1]->str;
        pr->len = (size_t)r->element[1]->len;
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        pr->status = SL_CACHE_E_REPLY;
        pr->error = "unexpected reply type for a projection key";
        return;
    }
    const char *s = r->str;
    size_t len = (size_t)r->len;
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
    case 'P':
        /* the head's first bytes (HEAD), or a PUBLIC value whose head line is malformed (GET) */
        if (head_only && parse_public(pr, s, len, 0) == 0)
            return;
        goto bad;
    default:
        goto bad;
    }
    if (parse_u64(s + 1, len - 1, &pr->version) == 0)
        return;
bad:
    pr->status = SL_CACHE_E_REPLY;
    pr->error = "malformed value in a projection key";
    pr->kind = SL_PROJ_ABSENT;
    pr->version = 0;
    pr->tag = 0;
    pr->payload = NULL;
    pr->len = 0;
    pr->meta = NULL;
    pr->meta_len = 0;
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

void sl_cache_proj_get(sl_cache_t *c, const char *id, size_t idlen, unsigned part, sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_GET);
    k->pcb = cb;
    k->data = data;
    char kb[256], pb[8];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int plen = snprintf(pb, sizeof(pb), "%u", part < SL_PROJ_PARTS ? part : SL_PROJ_PARTS);
    const char *argv[] = {"EVAL", LUA_READ, "1", key, pb};
    size_t lens[] = {4, sizeof(LUA_READ) - 1, 1, klen, (size_t)plen};
    sl_cache__send(k, 5, argv, lens);
    if (key != kb)
        free(key);
}

void sl_cache_proj_head(sl_cache_t *c, const char *id, size_t idlen, sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_HEAD);
    k->pcb = cb;
    k->data = data;
    char kb[256];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    /* "P<20 digits> <16 hex> " fits in 39 bytes: only the head crosses the wire, however big the
     * entry. */
    const char *argv[] = {"GETRANGE", key, "0", "47"};
    size_t lens[] = {8, klen, 1, 2};
    sl_cache__send(k, 4, argv, lens);
    if (key != kb)
        free(key);
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

/* "P<version> <tag> <n> <len 1> .. <len n> <meta>\n<parts>" or "T<version>"; NULL when the content
 * is not a possible one (no parts, too many, a meta with a newline or too long). */
static char *make_value(sl_proj_kind_t kind, uint64_t version, uint64_t tag, const sl_proj_content_t *ct,
                        size_t *out)
{
    char head[64 + SL_PROJ_PARTS * 24 + SL_PROJ_META_MAX];
    if (kind != SL_PROJ_PUBLIC) {
        int hlen = snprintf(head, sizeof(head), "T%" PRIu64, version);
        char *v = malloc((size_t)hlen);
        if (v == NULL)
            abort();
        memcpy(v, head, (size_t)hlen);
        *out = (size_t)hlen;
        return v;
    }
    if (ct == NULL || ct->nparts == 0 || ct->nparts > SL_PROJ_PARTS || ct->meta_len > SL_PROJ_META_MAX ||
        (ct->meta_len && memchr(ct->meta, '\n', ct->meta_len) != NULL))
        return NULL;
    int hlen = snprintf(head, sizeof(head), "P%" PRIu64 " %016" PRIx64 " %zu", version, tag, ct->nparts);
    size_t total = 0;
    for (size_t i = 0; i < ct->nparts; i++) {
        hlen += snprintf(head + hlen, sizeof(head) - (size_t)hlen, " %zu", ct->len[i]);
        total += ct->len[i];
    }
    head[hlen++] = ' ';
    if (ct->meta_len)
        memcpy(head + hlen, ct->meta, ct->meta_len);
    hlen += (int)ct->meta_len;
    head[hlen++] = '\n';
    size_t n = (size_t)hlen + total;
    char *v = malloc(n);
    if (v == NULL)
        abort();
    memcpy(v, head, (size_t)hlen);
    char *w = v + hlen;
    for (size_t i = 0; i < ct->nparts; i++) {
        if (ct->len[i])
            memcpy(w, ct->part[i], ct->len[i]);
        w += ct->len[i];
    }
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

/* Values from this size on are staged (LUA_STAGED). */
#define STAGE_MIN 4096

static void ignore_reply(const sl_cache_reply_t *r, void *data)
{
    (void)r; /* a failed staging SET shows in the script's answer (and in the client's error count) */
    (void)data;
}

/* "<prefix>s:<id>:<16 hex>": a staging key no other write can have (a per-process random part and
 * a counter). */
static char *make_stage_key(sl_cache_t *c, const char *id, size_t idlen, size_t *len)
{
    static _Thread_local uint64_t seed, count; /* a client lives on one loop: per thread is enough */
    if (seed == 0) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            r = uv_hrtime() ^ ((uint64_t)getpid() << 32);
        seed = r | 1;
    }
    uint64_t nonce = seed ^ (++count * 0x9E3779B97F4A7C15ull);
    size_t n = c->prefix_len + 2 + idlen + 1 + 16;
    char *k = malloc(n + 1);
    if (k == NULL)
        abort();
    memcpy(k, c->prefix, c->prefix_len);
    memcpy(k + c->prefix_len, "s:", 2);
    if (idlen)
        memcpy(k + c->prefix_len + 2, id, idlen);
    snprintf(k + c->prefix_len + 2 + idlen, 18, ":%016" PRIx64, nonce);
    *len = n;
    return k;
}

/* fill and publish: "EVAL <script> 2 <key> <staging key> <arg> <value or ''> <ttl>", the value a
 * PUBLIC or TOMB entry; a large value goes first in "SET <staging key> <value> PX 60000" (kept a
 * minute if the script never runs: the connection was lost in between). */
static void send_entry(sl_cache_t *c, const char *script, size_t scriptlen, const char *id, size_t idlen,
                       const char *arg, size_t arglen, sl_proj_kind_t kind, uint64_t version, uint64_t tag,
                       const sl_proj_content_t *content, sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    if (bad_kind(k, kind))
        return;
    size_t vlen;
    char *val = make_value(kind, version, tag, content, &vlen);
    if (val == NULL) {
        sl_cache__fail(k, SL_CACHE_E_REPLY, "not a possible projection content");
        return;
    }
    char kb[256], ttl[24];
    size_t klen, slen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    char *skey = make_stage_key(c, id, idlen, &slen);
    int staged = vlen >= STAGE_MIN;
    if (staged) {
        const char *sargv[] = {"SET", skey, val, "PX", "60000"};
        size_t slens[] = {3, slen, vlen, 2, 5};
        sl_cache_command(c, 5, sargv, slens, ignore_reply, NULL);
    }
    int tlen =
        snprintf(ttl, sizeof(ttl), "%u", kind == SL_PROJ_PUBLIC ? c->cfg.public_ttl_s : c->cfg.tomb_ttl_s);
    const char *argv[] = {"EVAL", script, "2", key, skey, arg, staged ? "" : val, ttl};
    size_t lens[] = {4, scriptlen, 1, klen, slen, arglen, staged ? 0 : vlen, (size_t)tlen};
    sl_cache__send(k, 8, argv, lens);
    free(val);
    free(skey);
    if (key != kb)
        free(key);
}

void sl_cache_proj_fill(sl_cache_t *c, const char *id, size_t idlen, uint64_t token, sl_proj_kind_t kind,
                        uint64_t version, uint64_t tag, const sl_proj_content_t *content, sl_proj_cb cb,
                        void *data)
{
    char lease[32];
    int llen = snprintf(lease, sizeof(lease), "L%" PRIu64, token);
    send_entry(c, LUA_FILL, sizeof(LUA_FILL) - 1, id, idlen, lease, (size_t)llen, kind, version, tag, content,
               cb, data);
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
                           uint64_t tag, const sl_proj_content_t *content, sl_proj_cb cb, void *data)
{
    char ver[24];
    int verlen = snprintf(ver, sizeof(ver), "%" PRIu64, version);
    send_entry(c, LUA_PUBLISH, sizeof(LUA_PUBLISH) - 1, id, idlen, ver, (size_t)verlen, kind, version, tag,
               content, cb, data);
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

void sl_cache_proj_drop(sl_cache_t *c, const char *id, size_t idlen, uint64_t version, uint64_t tag,
                        sl_proj_cb cb, void *data)
{
    cmd_t *k = sl_cache__cmd_new(c, K_WRITE);
    k->pcb = cb;
    k->data = data;
    char kb[256], head[64];
    size_t klen;
    char *key = make_key(c, id, idlen, &klen, kb, sizeof(kb));
    int hlen = snprintf(head, sizeof(head), "P%" PRIu64 " %016" PRIx64 " ", version, tag);
    const char *argv[] = {"EVAL", LUA_DROP, "1", key, head};
    size_t lens[] = {4, sizeof(LUA_DROP) - 1, 1, klen, (size_t)hlen};
    sl_cache__send(k, 5, argv, lens);
    if (key != kb)
        free(key);
}
