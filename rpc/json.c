/*
 * JSON <-> msgpack mapping, the only one in the project. A JSON request body is the same map as a
 * msgpack one; it is converted here and then goes through exactly the same checks and code as a
 * msgpack request. Replies (trusted, produced by the core) go back to JSON through jansson.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "rpc/rpc.h"

/*
 * JSON -> msgpack without building a JSON tree: a first pass checks the syntax, the limits (depth,
 * element count) and counts each container's members; a second pass writes msgpack straight into
 * the output (a map or array header needs its count, which the first pass found). Memory is the
 * output, 4 bytes per container and the longest string; work is linear in the input, and a body
 * over the limits is refused after the first pass, before anything is written.
 */
typedef struct jp {
    const char *s, *end, *start;
    const sl_rpc_limits_t *lim;
    size_t elements;
    uint32_t *counts; /* members of each container, in the order they open */
    size_t ncounts, capcounts;
    char *err;
    size_t errlen;
} jp_t;

static int jfail(jp_t *p, const char *what)
{
    size_t line = 1, col = 1;
    for (const char *q = p->start; q < p->s && q < p->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(p->err, p->errlen, "malformed JSON request at line %zu column %zu: %s", line, col, what);
    return -1;
}

static void skip_ws(jp_t *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
        p->s++;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int hex4(const char *q, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(q[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at p->s (the opening quote). With out != NULL its decoded bytes are written there
 * (never longer than the raw string). Returns the decoded length, or -1. */
static ptrdiff_t string(jp_t *p, char *out)
{
    p->s++;
    const char *run = p->s;
    size_t n = 0;
    for (;;) {
        if (p->s >= p->end)
            return jfail(p, "unterminated string");
        unsigned char c = (unsigned char)*p->s;
        if (c == '"' || c == '\\') {
            size_t k = (size_t)(p->s - run);
            if (!sl_rpc_utf8_valid(run, k))
                return jfail(p, "string is not valid UTF-8");
            if (out)
                memcpy(out + n, run, k);
            n += k;
            if (c == '"') {
                p->s++;
                return (ptrdiff_t)n;
            }
            if (p->end - p->s < 2)
                return jfail(p, "unterminated string");
            char e = p->s[1], d;
            p->s += 2;
            switch (e) {
            case '"':
                d = '"';
                break;
            case '\\':
                d = '\\';
                break;
            case '/':
                d = '/';
                break;
            case 'b':
                d = '\b';
                break;
            case 'f':
                d = '\f';
                break;
            case 'n':
                d = '\n';
                break;
            case 'r':
                d = '\r';
                break;
            case 't':
                d = '\t';
                break;
            case 'u': {
                unsigned cp, lo;
                if (p->end - p->s < 4 || hex4(p->s, &cp) != 0)
                    return jfail(p, "invalid \\u escape");
                p->s += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return jfail(p, "invalid Unicode escape (a lone low surrogate)");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u' || hex4(p->s + 2, &lo) != 0 ||
                        lo < 0xdc00 || lo > 0xdfff)
                        return jfail(p, "invalid Unicode escape (a lone high surrogate)");
                    p->s += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp == 0)
                    return jfail(p, "\\u0000 is not allowed");
                char tmp[4];
                size_t k2 = put_utf8(tmp, cp);
                if (out)
                    memcpy(out + n, tmp, k2);
                n += k2;
                run = p->s;
                continue;
            }
            default:
                return jfail(p, "invalid escape");
            }
            if (out)
                out[n] = d;
            n++;
            run = p->s;
            continue;
        }
        if (c < 0x20)
            return jfail(p, "control character in a string");
        p->s++;
    }
}

/* A number at p->s: its extent; *is_int when it has no fraction or exponent. */
static int number(jp_t *p, const char **b, size_t *len, int *is_int)
{
    const char *q = p->s;
    *b = q;
    *is_int = 1;
    if (q < p->end && *q == '-')
        q++;
    if (q >= p->end || !(*q >= '0' && *q <= '9'))
        return jfail(p, "invalid number");
    if (*q == '0')
        q++;
    else
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    if (q < p->end && *q == '.') {
        *is_int = 0;
        q++;
        if (q >= p->end || !(*q >= '0' && *q <= '9'))
            return jfail(p, "invalid number");
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        *is_int = 0;
        q++;
        if (q < p->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= p->end || !(*q >= '0' && *q <= '9'))
            return jfail(p, "invalid number");
        while (q < p->end && *q >= '0' && *q <= '9')
            q++;
    }
    *len = (size_t)(q - *b);
    if (*len > 400)
        return jfail(p, "number too long");
    p->s = q;
    return 0;
}

static int literal(jp_t *p, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, lit, n) != 0)
        return jfail(p, "invalid literal");
    p->s += n;
    return 0;
}

/* Pass 1: one value, its containers' counts recorded. */
static int scan(jp_t *p, unsigned depth)
{
    if (++p->elements > p->lim->max_elements)
        return jfail(p, "too many elements");
    skip_ws(p);
    if (p->s >= p->end)
        return jfail(p, "unexpected end of input");
    char c = *p->s;
    if (c == '{' || c == '[') {
        if (depth + 1 > p->lim->max_depth)
            return jfail(p, "nesting too deep");
        if (p->ncounts == p->capcounts) {
            size_t cap = p->capcounts ? p->capcounts * 2 : 64;
            uint32_t *nc = realloc(p->counts, cap * sizeof(*nc));
            if (nc == NULL)
                return jfail(p, "out of memory");
            p->counts = nc;
            p->capcounts = cap;
        }
        size_t me = p->ncounts++;
        p->counts[me] = 0;
        char close = c == '{' ? '}' : ']';
        p->s++;
        skip_ws(p);
        if (p->s < p->end && *p->s == close) {
            p->s++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(p);
                if (p->s >= p->end || *p->s != '"')
                    return jfail(p, "expected a string as the object key");
                if (string(p, NULL) < 0)
                    return -1;
                skip_ws(p);
                if (p->s >= p->end || *p->s != ':')
                    return jfail(p, "expected ':'");
                p->s++;
            }
            if (scan(p, depth + 1) != 0)
                return -1;
            p->counts[me]++;
            skip_ws(p);
            if (p->s < p->end && *p->s == ',') {
                p->s++;
                continue;
            }
            if (p->s < p->end && *p->s == close) {
                p->s++;
                return 0;
            }
            return jfail(p, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"')
        return string(p, NULL) < 0 ? -1 : 0;
    if (c == 't')
        return literal(p, "true");
    if (c == 'f')
        return literal(p, "false");
    if (c == 'n')
        return literal(p, "null");
    const char *b;
    size_t n;
    int is_int;
    return number(p, &b, &n, &is_int);
}

/* Pass 2: the same value, written. The input is known good; keys are checked for duplicates. */
typedef struct emit {
    jp_t *p;
    msgpack_packer *pk;
    msgpack_sbuffer *out;
    size_t next;   /* next container's index into p->counts */
    char *scratch; /* decoded strings (never longer than the input) */
} emit_t;

static int emit_string(emit_t *e, size_t *at, size_t *len)
{
    ptrdiff_t n = string(e->p, e->scratch);
    msgpack_pack_str(e->pk, (size_t)n);
    *at = e->out->size;
    *len = (size_t)n;
    msgpack_pack_str_body(e->pk, e->scratch, (size_t)n);
    return 0;
}

typedef struct key {
    size_t at, len;
} jkey_t;

static int emit(emit_t *e)
{
    jp_t *p = e->p;
    skip_ws(p);
    char c = *p->s;
    if (c == '{' || c == '[') {
        uint32_t count = p->counts[e->next++];
        p->s++;
        if (c == '[') {
            msgpack_pack_array(e->pk, count);
            for (uint32_t i = 0; i < count; i++) {
                skip_ws(p);
                if (i > 0)
                    p->s++; /* ',' */
                if (emit(e) != 0)
                    return -1;
            }
        } else {
            msgpack_pack_map(e->pk, count);
            /* duplicate keys would make "which value wins" differ between encodings: refused, by an
             * open-addressing table of this object's keys (offsets into the output) */
            size_t cap = 8;
            while (cap < (size_t)count * 2)
                cap *= 2;
            jkey_t *tab = count > 1 ? calloc(cap, sizeof(*tab)) : NULL;
            if (count > 1 && tab == NULL)
                return jfail(p, "out of memory");
            for (uint32_t i = 0; i < count; i++) {
                skip_ws(p);
                if (i > 0) {
                    p->s++; /* ',' */
                    skip_ws(p);
                }
                size_t at, len;
                emit_string(e, &at, &len);
                if (tab) {
                    uint64_t h = 1469598103934665603ull;
                    for (size_t k = 0; k < len; k++)
                        h = (h ^ (unsigned char)e->out->data[at + k]) * 1099511628211ull;
                    size_t slot = (size_t)h & (cap - 1);
                    while (tab[slot].len || tab[slot].at) {
                        if (tab[slot].len == len &&
                            memcmp(e->out->data + tab[slot].at, e->out->data + at, len) == 0) {
                            free(tab);
                            return jfail(p, "duplicate object key");
                        }
                        slot = (slot + 1) & (cap - 1);
                    }
                    tab[slot].at = at;
                    tab[slot].len = len;
                }
                skip_ws(p);
                p->s++; /* ':' */
                if (emit(e) != 0) {
                    free(tab);
                    return -1;
                }
            }
            free(tab);
        }
        skip_ws(p);
        p->s++; /* the closing bracket */
        return 0;
    }
    if (c == '"') {
        size_t at, len;
        return emit_string(e, &at, &len);
    }
    if (c == 't' || c == 'f' || c == 'n') {
        if (c == 't')
            msgpack_pack_true(e->pk);
        else if (c == 'f')
            msgpack_pack_false(e->pk);
        else
            msgpack_pack_nil(e->pk);
        p->s += c == 'f' ? 5 : 4;
        return 0;
    }
    const char *b;
    size_t n;
    int is_int;
    number(p, &b, &n, &is_int);
    char num[401];
    memcpy(num, b, n);
    num[n] = '\0';
    if (is_int) {
        errno = 0;
        if (num[0] == '-') {
            long long v = strtoll(num, NULL, 10);
            if (errno == ERANGE)
                return jfail(p, "integer out of range");
            msgpack_pack_int64(e->pk, v);
        } else {
            unsigned long long v = strtoull(num, NULL, 10);
            if (errno == ERANGE)
                return jfail(p, "integer out of range");
            if (v <= INT64_MAX)
                msgpack_pack_int64(e->pk, (int64_t)v);
            else
                msgpack_pack_uint64(e->pk, v);
        }
        return 0;
    }
    double d = strtod(num, NULL);
    if (isinf(d))
        return jfail(p, "number out of range");
    msgpack_pack_double(e->pk, d);
    return 0;
}

int sl_rpc_json_to_msgpack(const char *json, size_t len, const sl_rpc_limits_t *limits, msgpack_sbuffer *out,
                           char *err, size_t errlen)
{
    sl_rpc_limits_t def;
    if (limits == NULL) {
        sl_rpc_limits_default(&def);
        limits = &def;
    }
    if (len > limits->max_body) {
        snprintf(err, errlen, "body of %zu bytes exceeds the limit of %zu bytes", len, limits->max_body);
        return -1;
    }
    jp_t p = {json, json + len, json, limits, 0, NULL, 0, 0, err, errlen};
    skip_ws(&p);
    if (p.s >= p.end || *p.s != '{') {
        free(p.counts);
        if (p.s < p.end && (*p.s == '[' || *p.s == '"' || *p.s == '-' || (*p.s >= '0' && *p.s <= '9') ||
                            *p.s == 't' || *p.s == 'f' || *p.s == 'n'))
            snprintf(err, errlen, "malformed JSON request: the body must be a JSON object");
        else
            jfail(&p, len ? "expected a JSON object" : "empty body");
        return -1;
    }
    int rc = scan(&p, 0);
    if (rc == 0) {
        skip_ws(&p);
        if (p.s != p.end)
            rc = jfail(&p, "end of input expected after the object");
    }
    if (rc == 0) {
        char *scratch = malloc(len + 1);
        if (scratch == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            msgpack_packer pk;
            msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
            emit_t e = {&p, &pk, out, 0, scratch};
            p.s = json;
            rc = emit(&e);
            free(scratch);
        }
    }
    free(p.counts);
    return rc;
}

/* ---- msgpack -> JSON (replies) ---- */

static json_t *to_json(const msgpack_object *o);

static json_t *bytes_to_json(const char *p, size_t n)
{
    if (sl_rpc_utf8_valid(p, n))
        return json_stringn(p, n);
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = 4 * ((n + 2) / 3);
    char *b = malloc(olen + 1);
    if (b == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)p[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)p[i + 2];
        b[j++] = tbl[(v >> 18) & 63];
        b[j++] = tbl[(v >> 12) & 63];
        b[j++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        b[j++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    json_t *s = json_stringn(b, j);
    free(b);
    return s;
}

static json_t *to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return bytes_to_json(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return bytes_to_json(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            json_array_append_new(a, to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            json_object_setn_new(m, kv->key.via.str.ptr, kv->key.via.str.size, to_json(&kv->val));
        }
        return m;
    }
    default:
        return json_null();
    }
}

int sl_rpc_msgpack_to_json(const void *buf, size_t len, char **out, size_t *outlen)
{
    msgpack_zone zone;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_init(&zone, 4096);
    int rc = -1;
    if (msgpack_unpack(buf, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        json_t *j = to_json(&obj);
        if (j != NULL) {
            *out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            if (*out != NULL) {
                *outlen = strlen(*out);
                rc = 0;
            }
        }
    }
    msgpack_zone_destroy(&zone);
    return rc;
}
