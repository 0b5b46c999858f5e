/* k8sxray.otlp._fast: a segment document straight to OTLP protobuf spans, in C.
 *
 * The daemon's OTLP sink turns every segment document into spans: in Python that is
 * json.loads, k8sxray.otlp.spans.convert and k8sxray.otlp.codec.encode_span, about 15 us a
 * document. Here one pass reads the JSON and writes the same bytes, for the documents that
 * k8sxray's recorder, the official X-Ray SDKs, the daemon's OTLP receiver and the benchmarks
 * send: segments with nested subsegments; name, ids, times, http, aws (the resource's
 * eks/ec2/xray objects, an AWS SDK call's fields), sql, origin, service.version, user,
 * fault/error, namespace, annotations, metadata (k8s and otel.resource for the resource, otel
 * for the span's name, kind and attributes), cause with exceptions.
 *
 * The Python path stays the reference. Whatever this module is not sure to write exactly as
 * Python writes it (in-progress documents, subsegments sent on their own, span events in the
 * otel namespace, an attribute written twice, duplicate keys, numbers it cannot round-trip,
 * invalid JSON or UTF-8, lone surrogates, ...) makes it answer None, and the caller runs the
 * Python path on that document. So the one rule is: when it answers, it answers what Python
 * would.
 *
 * Python API (see _fast.pyi):
 *   encode(document: bytes) -> (resource, spans, count, trace_id, id) | None
 *     resource  the resource's attributes, encoded as codec.encode_resource writes them
 *     spans     each span as a ScopeSpans.spans field (tag 0x12, length, Span message)
 *     count     how many spans
 *     trace_id  the trace id as 32 hex digits, id the segment's id (for spans.Resources)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64     /* JSON nesting this module follows; deeper documents go to Python */
#define MAX_KEYS 64      /* keys of one object checked for duplicates */

/* --- output buffers --------------------------------------------------------------------- */

#define MAX_ATTRS 64  /* attributes of one span or resource checked for a repeated key */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int failed;
    /* the keys of the attributes written (offset and length in p): Python's dict keeps one
     * attribute per key, so a key written twice sends the document to Python */
    int nkeys, repeated;
    size_t key_at[MAX_ATTRS], key_len[MAX_ATTRS];
} Buf;

static void buf_clear(Buf *b) {
    b->len = 0;
    b->nkeys = 0;
    b->repeated = 0;
}

static int buf_reserve(Buf *b, size_t more) {
    if (b->failed) return -1;
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    unsigned char *p = PyMem_Realloc(b->p, cap);
    if (!p) { b->failed = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(Buf *b, const void *data, size_t n) {
    if (n == 0 || buf_reserve(b, n) < 0) return;  /* n == 0: data may be an empty buffer's NULL */
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_byte(Buf *b, unsigned char c) {
    if (b->len < b->cap || buf_reserve(b, 1) == 0) b->p[b->len++] = c;
}

static size_t varint_size(uint64_t n) {
    size_t s = 1;
    while (n > 127) { n >>= 7; s++; }
    return s;
}

static void put_varint(Buf *b, uint64_t n) {
    unsigned char tmp[10];
    size_t i = 0;
    while (n > 127) { tmp[i++] = (unsigned char)((n & 0x7F) | 0x80); n >>= 7; }
    tmp[i++] = (unsigned char)n;
    put(b, tmp, i);
}

static void put_fixed64(Buf *b, uint64_t n) {
    unsigned char tmp[8];
    for (int i = 0; i < 8; i++) { tmp[i] = (unsigned char)(n & 0xFF); n >>= 8; }
    put(b, tmp, 8);
}

/* a length-delimited field: tag, length, payload */
static void put_ld(Buf *b, unsigned char tag, const void *data, size_t n) {
    put_byte(b, tag);
    put_varint(b, n);
    put(b, data, n);
}

/* --- JSON values ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *p, *end;
    unsigned char *arena;        /* decoded strings that had escapes */
    size_t arena_len, arena_cap;
} Doc;

enum { V_NULL, V_FALSE, V_TRUE, V_INT, V_FLOAT, V_STR, V_OBJ, V_ARR };

typedef struct {
    int type;
    const char *s;   /* V_STR: UTF-8 (not NUL-terminated) */
    size_t n;
    int64_t i;       /* V_INT */
    double d;        /* V_FLOAT */
    const unsigned char *at;  /* where the value starts in the document */
} Val;

#define FAIL (-1)

static void ws(Doc *d) {
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')) d->p++;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_u4(const unsigned char *p, const unsigned char *end) {
    if (end - p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* The length of the UTF-8 sequence at p (as Python's strict decoder accepts it), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (end - p >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[2] & 0xC0) != 0x80) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;  /* no surrogates */
        return (p[1] >= lo && p[1] <= hi) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        return (p[1] >= lo && p[1] <= hi) ? 4 : 0;
    }
    return 0;
}

/* A string at d->p (its opening quote). With out, decodes it (escapes into the arena; lone
 * surrogates refused); without, only checks it (any \uXXXX is valid JSON). */
static int read_string(Doc *d, Val *out) {
    const unsigned char *p = d->p + 1, *end = d->end, *start = p;
    int escaped = 0;
    while (1) {
        if (p >= end) return FAIL;
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            p++;
            continue;
        }
        if (c == '"') break;
        if (c < 0x20) return FAIL;
        if (c == '\\') {
            if (p + 1 >= end) return FAIL;
            escaped = 1;
            unsigned char e = p[1];
            if (e == 'u') {
                if (read_u4(p + 2, end) < 0) return FAIL;
                p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                p += 2;
            } else {
                return FAIL;
            }
            continue;
        }
        int n = utf8_len(p, end);
        if (!n) return FAIL;
        p += n;
    }
    d->p = p + 1;
    if (!out) return 0;
    out->type = V_STR;
    if (!escaped) {
        out->s = (const char *)start;
        out->n = (size_t)(p - start);
        return 0;
    }
    /* decoded text is never longer than its escaped form */
    size_t need = (size_t)(p - start);
    if (d->arena_len + need > d->arena_cap) return FAIL;
    unsigned char *o = d->arena + d->arena_len, *o0 = o;
    const unsigned char *q = start;
    while (q < p) {
        if (*q != '\\') { *o++ = *q++; continue; }
        unsigned char e = q[1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            *o++ = (unsigned char)to[strchr(from, e) - from];
            q += 2;
            continue;
        }
        long cp = read_u4(q + 2, p);
        q += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = (p - q >= 6 && q[0] == '\\' && q[1] == 'u') ? read_u4(q + 2, p) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) return FAIL;  /* a lone surrogate */
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return FAIL;
        }
        if (cp < 0x80) {
            *o++ = (unsigned char)cp;
        } else if (cp < 0x800) {
            *o++ = (unsigned char)(0xC0 | (cp >> 6));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (unsigned char)(0xE0 | (cp >> 12));
            *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (unsigned char)(0xF0 | (cp >> 18));
            *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        }
    }
    out->s = (const char *)o0;
    out->n = (size_t)(o - o0);
    d->arena_len += out->n;
    return 0;
}

/* A number at d->p: an int of at most 18 digits (json.loads' int; more might not fit in
 * int64, and Python limits an int's digits) or a finite float parsed as json.loads parses it. */
static int read_number(Doc *d, Val *out) {
    const unsigned char *p = d->p, *end = d->end, *start = p;
    int is_float = 0;
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return FAIL;
    if (*p == '0') p++;
    else while (p < end && *p >= '0' && *p <= '9') p++;
    if (p < end && *p == '.') {
        is_float = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') return FAIL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_float = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return FAIL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    size_t n = (size_t)(p - start);
    d->p = p;
    if (!is_float) {
        const unsigned char *q = start;
        int negative = *q == '-';
        if (negative) q++;
        if (p - q > 18) return FAIL;
        int64_t v = 0;
        for (; q < p; q++) v = v * 10 + (*q - '0');
        out->type = V_INT;
        out->i = negative ? -v : v;
        return 0;
    }
    /* Most times have at most 16 digits (below 2**53) and a fraction of a few: the digits as an integer (exact
     * in a double) divided by a power of ten (exact too) is one correctly rounded operation, the
     * double json.loads reads. */
    static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    {
        const unsigned char *q = start;
        int negative = *q == '-', digits = 0, fraction = -1;
        if (negative) q++;
        uint64_t m = 0;
        for (; q < p && ((*q >= '0' && *q <= '9') || *q == '.'); q++) {
            if (*q == '.') { fraction = 0; continue; }
            m = m * 10 + (uint64_t)(*q - '0');
            digits++;
            if (fraction >= 0) fraction++;
        }
        if (q == p && digits <= 16 && m <= (1ULL << 53) && fraction >= 0) {
            double v = (double)m / POW10[fraction];
            out->type = V_FLOAT;
            out->d = negative ? -v : v;
            return 0;
        }
    }
    char text[64];
    if (n >= sizeof(text)) return FAIL;
    memcpy(text, start, n);
    text[n] = 0;
    char *stop = NULL;
    double v = PyOS_string_to_double(text, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return FAIL; }
    if (stop != text + n || !isfinite(v)) return FAIL;
    out->type = V_FLOAT;
    out->d = v;
    return 0;
}

static int skip_value(Doc *d, int depth);

/* Reads one value at d->p: scalars fully; objects and arrays are checked and skipped, their
 * start kept in out->at for a later walk. */
static int read_value(Doc *d, Val *out, int depth) {
    ws(d);
    if (d->p >= d->end) return FAIL;
    out->at = d->p;
    unsigned char c = *d->p;
    if (c == '"') return read_string(d, out);
    if (c == '{' || c == '[') {
        out->type = c == '{' ? V_OBJ : V_ARR;
        return skip_value(d, depth);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return read_number(d, out);
    static const struct { const char *word; int type; } words[] = {
        {"null", V_NULL}, {"true", V_TRUE}, {"false", V_FALSE}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(d->end - d->p) >= n && memcmp(d->p, words[i].word, n) == 0) {
            d->p += n;
            out->type = words[i].type;
            return 0;
        }
    }
    return FAIL;
}

/* Object iteration: obj_first at '{', then obj_next until it returns 0 (end) or FAIL. */
static int obj_next(Doc *d, Val *key, int *first) {
    ws(d);
    if (d->p >= d->end) return FAIL;
    if (*d->p == '}') { d->p++; return 0; }
    if (!*first) {
        if (*d->p != ',') return FAIL;
        d->p++;
        ws(d);
        if (d->p >= d->end) return FAIL;
    }
    *first = 0;
    if (*d->p != '"' || read_string(d, key) < 0) return FAIL;  /* key NULL: checked only */
    ws(d);
    if (d->p >= d->end || *d->p != ':') return FAIL;
    d->p++;
    return 1;
}

static int arr_next(Doc *d, int *first) {
    ws(d);
    if (d->p >= d->end) return FAIL;
    if (*d->p == ']') { d->p++; return 0; }
    if (!*first) {
        if (*d->p != ',') return FAIL;
        d->p++;
    }
    *first = 0;
    return 1;
}

static int skip_value(Doc *d, int depth) {
    ws(d);
    if (d->p >= d->end) return FAIL;
    unsigned char c = *d->p;
    if (c == '"') return read_string(d, NULL);
    if (c != '{' && c != '[') {
        Val v;
        return read_value(d, &v, depth);
    }
    if (depth >= MAX_DEPTH) return FAIL;
    d->p++;
    int first = 1, more;
    if (c == '{') {
        while ((more = obj_next(d, NULL, &first)) == 1)
            if (skip_value(d, depth + 1) < 0) return FAIL;
    } else {
        while ((more = arr_next(d, &first)) == 1)
            if (skip_value(d, depth + 1) < 0) return FAIL;
    }
    return more;
}

static int eq(const Val *v, const char *s) {
    if (v->type != V_STR || v->n == 0 || v->s[0] != s[0]) return *s == 0 && v->type == V_STR && v->n == 0;
    size_t n = strlen(s);
    return v->type == V_STR && v->n == n && memcmp(v->s, s, n) == 0;
}

static int has_dot(const Val *v) { return memchr(v->s, '.', v->n) != NULL; }

/* Records the keys of the object at `at` in keys[] (for duplicate checks); FAIL on a duplicate
 * or more than MAX_KEYS keys. */
static int remember_key(Val *keys, int *count, const Val *key) {
    for (int i = 0; i < *count; i++)
        if (keys[i].n == key->n && memcmp(keys[i].s, key->s, key->n) == 0) return FAIL;
    if (*count >= MAX_KEYS) return FAIL;
    keys[(*count)++] = *key;
    return 0;
}

/* Fields of an object, by name: fields[i] gets the value of names[i] (type V_NULL and at NULL
 * when absent). Other keys are checked and skipped; a duplicate named key fails. */
static int read_fields(Doc *d, const unsigned char *at, const char *const *names, Val *fields, int n, int depth) {
    for (int i = 0; i < n; i++) { fields[i].type = V_NULL; fields[i].at = NULL; }
    d->p = at + 1;
    int first = 1, more;
    Val key;
    while ((more = obj_next(d, &key, &first)) == 1) {
        int i = 0;
        while (i < n && !eq(&key, names[i])) i++;
        if (i == n) {
            if (skip_value(d, depth + 1) < 0) return FAIL;
            continue;
        }
        if (fields[i].at) return FAIL;  /* json.loads keeps the last one, in the first one's place */
        if (read_value(d, &fields[i], depth + 1) < 0) return FAIL;
    }
    return more;
}

/* --- protobuf attributes (KeyValue messages) --------------------------------------------- */

static int is_scalar(const Val *v) { return v->type >= V_FALSE && v->type <= V_STR; }

/* An AnyValue for a scalar. */
static void put_any(Buf *b, const Val *v) {
    switch (v->type) {
    case V_STR: put_ld(b, 0x0a, v->s, v->n); break;
    case V_TRUE: put(b, "\x10\x01", 2); break;
    case V_FALSE: put(b, "\x10\x00", 2); break;
    case V_INT: put_byte(b, 0x18); put_varint(b, (uint64_t)v->i); break;
    case V_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->d, 8);
        put_byte(b, 0x21);
        put_fixed64(b, bits);
        break;
    }
    }
}

static size_t any_size(const Val *v) {
    switch (v->type) {
    case V_STR: return 1 + varint_size(v->n) + v->n;
    case V_TRUE: case V_FALSE: return 2;
    case V_INT: return 1 + varint_size((uint64_t)v->i);
    case V_FLOAT: return 9;
    }
    return 0;
}

/* Whether an attribute with this key (prefix + key) was written to b. */
static int has_key(const Buf *b, const char *prefix, size_t pl, const char *key, size_t kl) {
    for (int i = 0; i < b->nkeys; i++) {
        const unsigned char *k = b->p + b->key_at[i];
        if (b->key_len[i] == pl + kl && memcmp(k, prefix, pl) == 0 && memcmp(k + pl, key, kl) == 0) return 1;
    }
    return 0;
}

/* KeyValue.key (prefix + key), remembered for has_key */
static void put_key(Buf *b, const char *prefix, size_t pl, const char *key, size_t kl) {
    if (has_key(b, prefix, pl, key, kl) || b->nkeys >= MAX_ATTRS) b->repeated = 1;
    put_byte(b, 0x0a);
    put_varint(b, pl + kl);
    if (b->nkeys < MAX_ATTRS) {
        b->key_at[b->nkeys] = b->len;
        b->key_len[b->nkeys++] = pl + kl;
    }
    put(b, prefix, pl);
    put(b, key, kl);
}

/* tag, KeyValue{key, value: AnyValue(scalar)}; the key as prefix + name */
static void put_attr2(Buf *b, unsigned char tag, const char *prefix, const char *key, size_t keylen, const Val *v) {
    size_t pl = strlen(prefix), kl = pl + keylen, av = any_size(v);
    size_t kv = 1 + varint_size(kl) + kl + 1 + varint_size(av) + av;
    put_byte(b, tag);
    put_varint(b, kv);
    put_key(b, prefix, pl, key, keylen);
    put_byte(b, 0x12);
    put_varint(b, av);
    put_any(b, v);
}

/* tag, KeyValue{key, value: an AnyValue already encoded} */
static void put_attr_encoded(Buf *b, unsigned char tag, const Val *key, const unsigned char *av, size_t n) {
    size_t kv = 1 + varint_size(key->n) + key->n + 1 + varint_size(n) + n;
    put_byte(b, tag);
    put_varint(b, kv);
    put_key(b, "", 0, key->s, key->n);
    put_ld(b, 0x12, av, n);
}

static void put_attr(Buf *b, unsigned char tag, const char *key, const Val *v) {
    put_attr2(b, tag, "", key, strlen(key), v);
}

static void put_attr_str(Buf *b, unsigned char tag, const char *key, const char *s, size_t n) {
    Val v = {.type = V_STR, .s = s, .n = n};
    put_attr(b, tag, key, &v);
}

/* tag, KeyValue{key, AnyValue{array_value: the strings in list}} (list: AnyValues already) */
static void put_attr_array(Buf *b, unsigned char tag, const char *key, const Buf *values) {
    size_t kl = strlen(key), av = 1 + varint_size(values->len) + values->len;
    size_t kv = 1 + varint_size(kl) + kl + 1 + varint_size(av) + av;
    put_byte(b, tag);
    put_varint(b, kv);
    put_key(b, "", 0, key, kl);
    put_byte(b, 0x12);
    put_varint(b, av);
    put_ld(b, 0x2a, values->p, values->len);
}

/* one ArrayValue.values entry: a string AnyValue */
static void put_array_str(Buf *b, const char *s, size_t n) {
    put_byte(b, 0x0a);
    put_varint(b, 1 + varint_size(n) + n);
    put_ld(b, 0x0a, s, n);
}

/* --- json.dumps(value, separators=(",", ":"), ensure_ascii=False) ------------------------ */

static void dump_string(Buf *b, const Val *v) {
    put_byte(b, '"');
    for (size_t i = 0; i < v->n; i++) {
        unsigned char c = (unsigned char)v->s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        }
        if (esc) {
            put(b, esc, 2);
        } else if (c < 0x20) {
            char tmp[7];
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            put(b, tmp, 6);
        } else {
            put_byte(b, c);
        }
    }
    put_byte(b, '"');
}

static int dump_value(Doc *d, Buf *b, int depth) {
    Val v;
    if (read_value(d, &v, depth) < 0) return FAIL;
    char tmp[32];
    switch (v.type) {
    case V_NULL: put(b, "null", 4); return 0;
    case V_TRUE: put(b, "true", 4); return 0;
    case V_FALSE: put(b, "false", 5); return 0;
    case V_STR: dump_string(b, &v); return 0;
    case V_INT: {
        int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v.i);
        put(b, tmp, (size_t)n);
        return 0;
    }
    case V_FLOAT: {
        char *text = PyOS_double_to_string(v.d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (!text) { PyErr_Clear(); return FAIL; }
        put(b, text, strlen(text));
        PyMem_Free(text);
        return 0;
    }
    }
    /* an object or an array: walk it again, writing it out */
    const unsigned char *after = d->p;
    d->p = v.at + 1;
    int first = 1, more;
    if (v.type == V_OBJ) {
        Val keys[MAX_KEYS], key;
        int count = 0;
        put_byte(b, '{');
        while ((more = obj_next(d, &key, &first)) == 1) {
            if (remember_key(keys, &count, &key) < 0) return FAIL;
            if (count > 1) put_byte(b, ',');
            dump_string(b, &key);
            put_byte(b, ':');
            if (dump_value(d, b, depth + 1) < 0) return FAIL;
        }
        put_byte(b, '}');
    } else {
        int count = 0;
        put_byte(b, '[');
        while ((more = arr_next(d, &first)) == 1) {
            if (count++) put_byte(b, ',');
            if (dump_value(d, b, depth + 1) < 0) return FAIL;
        }
        put_byte(b, ']');
    }
    if (more < 0) return FAIL;
    d->p = after;
    return 0;
}

/* --- the mapping (k8sxray/otlp/spans.py, in the same order) ------------------------------ */

typedef struct {
    Doc doc;
    Buf out;        /* the spans, each as a ScopeSpans.spans field */
    Buf span;       /* the span being written */
    Buf attrs;      /* its attributes */
    Buf events;     /* its events */
    Buf text;       /* a metadata namespace's JSON, a stack trace */
    Buf list;       /* an array attribute's values; an event's attributes */
    Buf resource;   /* the resource's attributes */
    Buf value;      /* an attribute's value that is a list */
    unsigned char trace_id[16];
    Py_ssize_t count;
} Ctx;

/* the fields of an entity that the mapping reads */
enum {
    F_NAME, F_ID, F_TRACE_ID, F_PARENT_ID, F_TYPE, F_START, F_END, F_IN_PROGRESS, F_NAMESPACE,
    F_HTTP, F_AWS, F_SQL, F_USER, F_ANNOTATIONS, F_METADATA, F_FAULT, F_ERROR, F_CAUSE,
    F_SUBSEGMENTS, F_SERVICE, F_ORIGIN, N_FIELDS
};
static const char *const ENTITY[N_FIELDS] = {
    "name", "id", "trace_id", "parent_id", "type", "start_time", "end_time", "in_progress",
    "namespace", "http", "aws", "sql", "user", "annotations", "metadata", "fault", "error", "cause",
    "subsegments", "service", "origin",
};

static int hex_id(const Val *v, size_t digits, unsigned char *out) {
    if (v->type != V_STR || v->n != digits) return FAIL;
    int nonzero = 0;
    for (size_t i = 0; i < digits; i += 2) {
        unsigned char a = (unsigned char)v->s[i], c = (unsigned char)v->s[i + 1];
        if (a >= 'A' && a <= 'F') return FAIL;  /* lowercase only */
        if (c >= 'A' && c <= 'F') return FAIL;
        int h = hexval(a), l = hexval(c);
        if (h < 0 || l < 0) return FAIL;
        out[i / 2] = (unsigned char)(h * 16 + l);
        nonzero |= out[i / 2];
    }
    return nonzero ? 0 : FAIL;
}

/* spans.to_nanos for the times it computes exactly */
static int nanos(const Val *v, uint64_t *out) {
    if (v->type == V_INT && v->i >= 0 && v->i < 10000000000LL) {
        *out = (uint64_t)v->i * 1000000000ULL;
        return 0;
    }
    /* below 1e10 s (the year 2286): the nanoseconds fit the fixed64 (Python fails past 2**64) */
    if (v->type != V_FLOAT || !(v->d >= 0.0 && v->d < 1e10)) return FAIL;
    double whole = trunc(v->d);
    *out = (uint64_t)whole * 1000000000ULL + (uint64_t)nearbyint((v->d - whole) * 1e9);
    return 0;
}

/* A field that Python turns into str() when not None: a string or null here. */
static int text_or_null(const Val *v) { return v->type == V_STR || v->type == V_NULL ? 0 : FAIL; }

/* Fields of the object at v, when v is an object; all absent otherwise. */
static int fields_of(Ctx *c, const Val *v, const char *const *names, Val *fields, int n, int depth) {
    if (v->type != V_OBJ) {
        for (int i = 0; i < n; i++) { fields[i].type = V_NULL; fields[i].at = NULL; }
        return 0;
    }
    return read_fields(&c->doc, v->at, names, fields, n, depth) < 0 ? FAIL : 0;
}

static int http_attributes(Ctx *c, const Val *http, int depth) {
    static const char *const HTTP[] = {"request", "response"};
    static const char *const REQUEST[] = {"method", "url", "user_agent", "client_ip", "x_forwarded_for"};
    static const char *const RESPONSE[] = {"status", "content_length"};
    static const char *const NAMES[] = {"http.request.method", "url.full", "user_agent.original"};
    Val parts[2], r[5], s[2];
    if (fields_of(c, http, HTTP, parts, 2, depth) < 0) return FAIL;
    if (fields_of(c, &parts[0], REQUEST, r, 5, depth + 1) < 0) return FAIL;
    for (int i = 0; i < 4; i++) {
        if (text_or_null(&r[i]) < 0) return FAIL;
        if (r[i].type != V_STR) continue;
        if (i < 3) put_attr(&c->attrs, 0x4a, NAMES[i], &r[i]);
        else put_attr(&c->attrs, 0x4a, r[4].type == V_TRUE ? "http.client_ip" : "client.address", &r[i]);
    }
    if (fields_of(c, &parts[1], RESPONSE, s, 2, depth + 1) < 0) return FAIL;
    if (s[0].type == V_INT) put_attr(&c->attrs, 0x4a, "http.response.status_code", &s[0]);
    if (s[1].type == V_INT) put_attr(&c->attrs, 0x4a, "http.response.body.size", &s[1]);
    return 0;
}

/* spans._aws_call: an AWS SDK call's fields, the known ones first, then any other scalar */
static int aws_call_attributes(Ctx *c, const Val *name, const Val *aws, int depth) {
    static const char *const KNOWN[] = {"operation", "region", "request_id", "queue_url", "bucket_name", "key",
                                        "table_name", "table_names"};
    static const char *const NAMES[] = {"rpc.method", "aws.region", "aws.request_id", "aws.sqs.queue.url",
                                        "aws.s3.bucket", "aws.s3.key"};
    put_attr_str(&c->attrs, 0x4a, "rpc.system", "aws-api", 7);
    put_attr_str(&c->attrs, 0x4a, "rpc.service", name->s, name->n);
    Val f[8];
    if (fields_of(c, aws, KNOWN, f, 8, depth) < 0) return FAIL;
    for (int i = 0; i < 6; i++)
        if (is_scalar(&f[i])) put_attr(&c->attrs, 0x4a, NAMES[i], &f[i]);
    buf_clear(&c->list);
    if (f[6].type == V_STR) {
        put_array_str(&c->list, f[6].s, f[6].n);
        put_attr_array(&c->attrs, 0x4a, "aws.dynamodb.table_names", &c->list);
    } else if (f[7].type == V_ARR) {
        Doc *d = &c->doc;
        d->p = f[7].at + 1;
        int first = 1, more;
        while ((more = arr_next(d, &first)) == 1) {
            Val t;
            if (read_value(d, &t, depth + 2) < 0 || t.type != V_STR) return FAIL;
            put_array_str(&c->list, t.s, t.n);
        }
        if (more < 0) return FAIL;
        put_attr_array(&c->attrs, 0x4a, "aws.dynamodb.table_names", &c->list);
    }
    if (aws->type != V_OBJ) return 0;
    Doc *d = &c->doc;
    d->p = aws->at + 1;
    int first = 1, more, count = 0;
    Val keys[MAX_KEYS], key, v;
    while ((more = obj_next(d, &key, &first)) == 1) {
        if (remember_key(keys, &count, &key) < 0) return FAIL;  /* Python iterates the dict */
        if (read_value(d, &v, depth + 1) < 0) return FAIL;
        int known = 0;
        for (int i = 0; i < 8; i++) known |= eq(&key, KNOWN[i]);
        if (known || !is_scalar(&v)) continue;
        if (has_dot(&key)) return FAIL;  /* aws.<key> might be a name set above */
        put_attr2(&c->attrs, 0x4a, "aws.", key.s, key.n, &v);
    }
    return more;
}

/* spans._sql: the known fields by their names, any other scalar as aws.xray.sql.<field> */
static int sql_attributes(Ctx *c, const Val *sql, int depth) {
    static const char *const KNOWN[] = {"sanitized_query", "database_type", "user", "url"};
    static const char *const NAMES[] = {"db.query.text", "db.system", "db.user", "db.connection_string"};
    Doc *d = &c->doc;
    d->p = sql->at + 1;
    int first = 1, more, count = 0;
    Val keys[MAX_KEYS], key, v;
    while ((more = obj_next(d, &key, &first)) == 1) {
        if (remember_key(keys, &count, &key) < 0) return FAIL;  /* Python iterates the dict */
        if (read_value(d, &v, depth + 1) < 0) return FAIL;
        if (!is_scalar(&v)) continue;
        int i = 0;
        while (i < 4 && !eq(&key, KNOWN[i])) i++;
        if (i < 4) put_attr(&c->attrs, 0x4a, NAMES[i], &v);
        else put_attr2(&c->attrs, 0x4a, "aws.xray.sql.", key.s, key.n, &v);
    }
    return more;
}

static int annotation_attributes(Ctx *c, const Val *annotations, int depth) {
    if (annotations->type != V_OBJ) return 0;
    Doc *d = &c->doc;
    d->p = annotations->at + 1;
    int first = 1, more, count = 0, any = 0;
    Val keys[MAX_KEYS], key, v;
    buf_clear(&c->list);
    while ((more = obj_next(d, &key, &first)) == 1) {
        if (remember_key(keys, &count, &key) < 0 || has_dot(&key)) return FAIL;
        if (read_value(d, &v, depth + 1) < 0) return FAIL;
        any = 1;
        if (!is_scalar(&v)) continue;
        put_attr2(&c->attrs, 0x4a, "", key.s, key.n, &v);
        put_array_str(&c->list, key.s, key.n);
    }
    if (more < 0) return FAIL;
    if (any) put_attr_array(&c->attrs, 0x4a, "aws.xray.annotations", &c->list);
    return 0;
}

static int metadata_attributes(Ctx *c, const Val *metadata, int segment, int depth) {
    if (metadata->type != V_OBJ) return 0;
    Doc *d = &c->doc;
    d->p = metadata->at + 1;
    int first = 1, more, count = 0;
    Val keys[MAX_KEYS], key;
    while ((more = obj_next(d, &key, &first)) == 1) {
        if (remember_key(keys, &count, &key) < 0) return FAIL;
        if (eq(&key, "otel") || eq(&key, "otel.resource")) {  /* the span's and the resource's */
            if (skip_value(d, depth + 1) < 0) return FAIL;
            continue;
        }
        if (segment && eq(&key, "k8s")) {
            if (skip_value(d, depth + 1) < 0) return FAIL;
            continue;
        }
        buf_clear(&c->text);
        if (dump_value(d, &c->text, depth + 1) < 0) return FAIL;
        Val json = {.type = V_STR, .s = (const char *)c->text.p, .n = c->text.len};
        put_attr2(&c->attrs, 0x4a, "aws.xray.metadata.", key.s, key.n, &json);
    }
    return more;
}

/* spans._exceptions: exception events; *message gets the first exception message */
static int exception_events(Ctx *c, const Val *cause, uint64_t end, Val *message, int depth) {
    static const char *const CAUSE[] = {"exceptions"};
    static const char *const EXCEPTION[] = {"type", "message", "stack"};
    static const char *const FRAME[] = {"label", "path", "line"};
    message->type = V_NULL;
    Val f;
    if (fields_of(c, cause, CAUSE, &f, 1, depth) < 0) return FAIL;
    if (f.type != V_ARR) return 0;  /* Python: no exceptions list, no events */
    Doc *d = &c->doc;
    const unsigned char *next = f.at + 1;
    int first = 1, more;
    while (1) {
        d->p = next;
        if ((more = arr_next(d, &first)) != 1) break;
        Val e, x[3];
        if (read_value(d, &e, depth + 2) < 0 || e.type != V_OBJ) return FAIL;
        next = d->p;
        if (fields_of(c, &e, EXCEPTION, x, 3, depth + 2) < 0) return FAIL;
        if (text_or_null(&x[0]) < 0 || text_or_null(&x[1]) < 0) return FAIL;
        buf_clear(&c->list);
        if (x[0].type == V_STR) put_attr(&c->list, 0x1a, "exception.type", &x[0]);
        if (x[1].type == V_STR) {
            put_attr(&c->list, 0x1a, "exception.message", &x[1]);
            if (message->type != V_STR || message->n == 0) *message = x[1];
        }
        if (x[2].type == V_ARR) {
            Buf *t = &c->text;
            buf_clear(t);
            if (x[0].type == V_STR) put(t, x[0].s, x[0].n);
            else put(t, "Exception", 9);
            if (x[1].type == V_STR) { put(t, ": ", 2); put(t, x[1].s, x[1].n); }
            d->p = x[2].at + 1;
            int ffirst = 1, fmore, frames = 0;
            while ((fmore = arr_next(d, &ffirst)) == 1) {
                Val frame, g[3];
                if (read_value(d, &frame, depth + 3) < 0 || frame.type != V_OBJ) return FAIL;
                const unsigned char *after = d->p;
                if (fields_of(c, &frame, FRAME, g, 3, depth + 3) < 0) return FAIL;
                d->p = after;
                frames++;
                if (text_or_null(&g[0]) < 0) return FAIL;
                if (g[1].at ? g[1].type != V_STR : 0) return FAIL;
                if (g[2].at ? g[2].type != V_INT : 0) return FAIL;
                char line[24];
                int ln = snprintf(line, sizeof(line), ":%lld", g[2].at ? (long long)g[2].i : 0LL);
                int labelled = g[0].type == V_STR && g[0].n > 0;
                put(t, "\n    at ", 8);
                if (labelled) { put(t, g[0].s, g[0].n); put(t, " (", 2); }
                if (g[1].at) put(t, g[1].s, g[1].n);
                put(t, line, (size_t)ln);
                if (labelled) put_byte(t, ')');
            }
            if (fmore < 0) return FAIL;
            if (frames) {
                Val stack = {.type = V_STR, .s = (const char *)t->p, .n = t->len};
                put_attr(&c->list, 0x1a, "exception.stacktrace", &stack);
            }
        }
        /* Event{time_unix_nano, name, attributes} */
        size_t body = 9 + 11 + c->list.len;
        put_byte(&c->events, 0x5a);
        put_varint(&c->events, body);
        put_byte(&c->events, 0x09);
        put_fixed64(&c->events, end);
        put_ld(&c->events, 0x12, "exception", 9);
        put(&c->events, c->list.p, c->list.len);
    }
    return more;
}

/* An attribute whose value is any JSON value Python's codec._any_value writes as we do: a
 * scalar, null (an empty AnyValue) or a list of those; an object or a nested list: FAIL. */
static int put_attr_value(Ctx *c, Buf *b, unsigned char tag, const Val *key, const Val *v, int depth) {
    if (is_scalar(v)) {
        put_attr2(b, tag, "", key->s, key->n, v);
        return 0;
    }
    if (v->type == V_NULL) {
        put_attr_encoded(b, tag, key, NULL, 0);
        return 0;
    }
    if (v->type != V_ARR) return FAIL;
    Buf *a = &c->value;
    buf_clear(a);
    put_byte(a, 0x2a);
    put_byte(a, 0);  /* the ArrayValue's length, set below when it fits one byte */
    Doc *d = &c->doc;
    d->p = v->at + 1;
    int first = 1, more;
    while ((more = arr_next(d, &first)) == 1) {
        Val item;
        if (read_value(d, &item, depth + 1) < 0) return FAIL;
        if (item.type == V_NULL) {
            put(a, "\x0a\x00", 2);
        } else if (is_scalar(&item)) {
            put_byte(a, 0x0a);
            put_varint(a, any_size(&item));
            put_any(a, &item);
        } else {
            return FAIL;
        }
    }
    if (more < 0 || a->failed || a->len - 2 > 127) return FAIL;
    a->p[1] = (unsigned char)(a->len - 2);
    put_attr_encoded(b, tag, key, a->p, a->len);
    return 0;
}

/* The otel metadata namespace (spans._span): the span's name and kind, other keys as attributes. */
static int otel_attributes(Ctx *c, const Val *otel, Val *name, int *kind, int depth) {
    static const char *const OTEL[] = {"span.name", "span.kind", "events"};
    static const char *const KINDS[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
    Val f[3];
    if (fields_of(c, otel, OTEL, f, 3, depth) < 0) return FAIL;
    if (f[0].at) {
        if (f[0].type != V_STR) return FAIL;  /* Python: str() of it */
        *name = f[0];
    }
    for (int i = 0; i < 6; i++)
        if (eq(&f[1], KINDS[i])) *kind = i;
    if (f[2].type == V_ARR) return FAIL;  /* span events: Python's */
    Doc *d = &c->doc;
    d->p = otel->at + 1;
    int first = 1, more;
    Val key, v;
    while ((more = obj_next(d, &key, &first)) == 1) {
        if (read_value(d, &v, depth + 1) < 0) return FAIL;
        if (eq(&key, "span.name") || eq(&key, "span.kind")) continue;
        const unsigned char *after = d->p;
        if (put_attr_value(c, &c->attrs, 0x4a, &key, &v, depth + 1) < 0) return FAIL;
        d->p = after;
    }
    return more;
}

static int truthy_flag(const Val *v, int *out) {
    if (v->type == V_TRUE) { *out = 1; return 0; }
    if (v->type == V_FALSE || v->type == V_NULL) return 0;
    return FAIL;
}

/* One entity (at `at`) and its nested subsegments, depth-first, as spans.convert walks them. */
static int walk(Ctx *c, Val *f, const unsigned char *parent, int segment, int depth) {
    if (depth > 64) return FAIL;
    unsigned char id[8];
    if (hex_id(&f[F_ID], 16, id) < 0) return FAIL;
    if (f[F_IN_PROGRESS].type != V_NULL && f[F_IN_PROGRESS].type != V_FALSE) return FAIL;
    if (f[F_NAME].type != V_STR && f[F_NAME].type != V_NULL) return FAIL;
    Val name = f[F_NAME].type == V_STR ? f[F_NAME] : (Val){.type = V_STR, .s = "", .n = 0};
    uint64_t start, end;
    if (nanos(&f[F_START], &start) < 0) return FAIL;
    if (!f[F_END].at) end = start;
    else if (nanos(&f[F_END], &end) < 0) return FAIL;
    if (text_or_null(&f[F_NAMESPACE]) < 0) return FAIL;
    int aws_call = !segment && eq(&f[F_NAMESPACE], "aws");
    int remote = !segment && eq(&f[F_NAMESPACE], "remote");
    int kind = segment ? 2 : (aws_call || remote) ? 3 : 1;
    int fault = 0, error = 0;
    if (truthy_flag(&f[F_FAULT], &fault) < 0 || truthy_flag(&f[F_ERROR], &error) < 0) return FAIL;

    buf_clear(&c->attrs);
    buf_clear(&c->events);
    Val span_name = name;
    if (f[F_METADATA].type == V_OBJ) {
        static const char *const OTEL[] = {"otel"};
        Val otel;
        if (fields_of(c, &f[F_METADATA], OTEL, &otel, 1, depth + 1) < 0) return FAIL;
        if (otel.type == V_OBJ && otel_attributes(c, &otel, &span_name, &kind, depth + 2) < 0) return FAIL;
    }
    if (remote) put_attr(&c->attrs, 0x4a, "peer.service", &name);
    if (f[F_HTTP].type == V_OBJ && http_attributes(c, &f[F_HTTP], depth + 1) < 0) return FAIL;
    if (aws_call && aws_call_attributes(c, &name, &f[F_AWS], depth + 1) < 0) return FAIL;
    if (f[F_SQL].type == V_OBJ && sql_attributes(c, &f[F_SQL], depth + 1) < 0) return FAIL;
    if (segment && f[F_USER].type == V_STR) put_attr(&c->attrs, 0x4a, "enduser.id", &f[F_USER]);
    if (annotation_attributes(c, &f[F_ANNOTATIONS], depth + 1) < 0) return FAIL;
    if (metadata_attributes(c, &f[F_METADATA], segment, depth + 1) < 0) return FAIL;
    Val message = {.type = V_NULL};
    if (exception_events(c, &f[F_CAUSE], end, &message, depth + 1) < 0) return FAIL;
    if (c->attrs.repeated) return FAIL;  /* an attribute written twice: Python keeps one */

    Buf *s = &c->span;
    s->len = 0;
    put(s, "\x0a\x10", 2);
    put(s, c->trace_id, 16);
    put(s, "\x12\x08", 2);
    put(s, id, 8);
    if (parent) { put(s, "\x22\x08", 2); put(s, parent, 8); }
    put_ld(s, 0x2a, span_name.s, span_name.n);
    if (kind) {
        put_byte(s, 0x30);
        put_byte(s, (unsigned char)kind);
    }
    put_byte(s, 0x39);
    put_fixed64(s, start);
    put_byte(s, 0x41);
    put_fixed64(s, end);
    put(s, c->attrs.p, c->attrs.len);
    put(s, c->events.p, c->events.len);
    if (fault || error) {
        size_t m = message.type == V_STR && message.n ? message.n : 0;
        put_byte(s, 0x7a);
        put_varint(s, (m ? 1 + varint_size(m) + m : 0) + 2);
        if (m) put_ld(s, 0x12, message.s, m);
        put(s, "\x18\x02", 2);
    }
    if (s->failed) return FAIL;
    put_ld(&c->out, 0x12, s->p, s->len);
    c->count++;

    if (f[F_SUBSEGMENTS].type != V_ARR) return 0;
    Doc *d = &c->doc;
    const unsigned char *next = f[F_SUBSEGMENTS].at + 1;
    int first = 1, more;
    while (1) {
        d->p = next;
        if ((more = arr_next(d, &first)) != 1) break;
        Val sub;
        if (read_value(d, &sub, depth + 2) < 0 || sub.type != V_OBJ) return FAIL;
        next = d->p;
        Val g[N_FIELDS];
        if (read_fields(d, sub.at, ENTITY, g, N_FIELDS, depth + 2) < 0) return FAIL;
        if (walk(c, g, id, 0, depth + 1) < 0) return FAIL;
    }
    return more;
}

/* spans.resource_of */
static int resource_attributes(Ctx *c, Val *f) {
    static const char *const AWS[] = {"eks", "ec2", "ecs", "xray", "account_id"};
    static const char *const EKS[] = {"pod", "cluster_name", "container_id"};
    static const char *const EKS_NAMES[] = {"k8s.pod.name", "k8s.cluster.name", "container.id"};
    static const char *const EC2[] = {"instance_id", "availability_zone", "instance_type", "ami_id"};
    static const char *const EC2_NAMES[] = {"host.id", "cloud.availability_zone", "host.type", "host.image.id"};
    static const char *const XRAY[] = {"sdk", "sdk_version"};
    static const char *const XRAY_NAMES[] = {"telemetry.sdk.name", "telemetry.sdk.version"};
    static const char *const SERVICE[] = {"version"};
    static const char *const METADATA[] = {"k8s", "otel.resource"};
    static const char *const K8S[] = {"namespace", "node", "pod_uid", "container_name", "workload", "labels"};
    static const char *const K8S_NAMES[] = {"k8s.namespace.name", "k8s.node.name", "k8s.pod.uid",
                                            "k8s.container.name"};
    static const char *const WORKLOAD[] = {"kind", "name"};
    static const char *const PLATFORMS[][2] = {
        {"AWS::EKS::Container", "aws_eks"}, {"AWS::ECS::Container", "aws_ecs"},
        {"AWS::EC2::Instance", "aws_ec2"}, {"AWS::ElasticBeanstalk::Environment", "aws_elastic_beanstalk"},
        {"AWS::Lambda::Function", "aws_lambda"}};
    static const char *const KINDS[] = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"};
    Buf *r = &c->resource;
    if (f[F_NAME].type == V_STR && f[F_NAME].n) put_attr(r, 0x0a, "service.name", &f[F_NAME]);
    else put_attr_str(r, 0x0a, "service.name", "unknown_service", 15);
    Val v;
    if (fields_of(c, &f[F_SERVICE], SERVICE, &v, 1, 1) < 0 || text_or_null(&v) < 0) return FAIL;
    if (v.type == V_STR) put_attr(r, 0x0a, "service.version", &v);
    const char *platform = NULL;
    for (int i = 0; i < 5 && f[F_ORIGIN].type == V_STR; i++)
        if (eq(&f[F_ORIGIN], PLATFORMS[i][0])) platform = PLATFORMS[i][1];
    if (platform || f[F_AWS].type == V_OBJ) put_attr_str(r, 0x0a, "cloud.provider", "aws", 3);
    if (platform) put_attr_str(r, 0x0a, "cloud.platform", platform, strlen(platform));
    Val aws[5], g[4];
    if (fields_of(c, &f[F_AWS], AWS, aws, 5, 1) < 0) return FAIL;
    if (aws[2].type == V_OBJ) return FAIL;  /* ecs: container.id twice, Python's */
    if (fields_of(c, &aws[0], EKS, g, 3, 2) < 0) return FAIL;
    for (int i = 0; i < 3; i++) if (is_scalar(&g[i])) put_attr(r, 0x0a, EKS_NAMES[i], &g[i]);
    if (fields_of(c, &aws[1], EC2, g, 4, 2) < 0) return FAIL;
    for (int i = 0; i < 4; i++) if (is_scalar(&g[i])) put_attr(r, 0x0a, EC2_NAMES[i], &g[i]);
    if (fields_of(c, &aws[3], XRAY, g, 2, 2) < 0) return FAIL;
    for (int i = 0; i < 2; i++) if (is_scalar(&g[i])) put_attr(r, 0x0a, XRAY_NAMES[i], &g[i]);
    if (aws[4].type == V_STR) put_attr(r, 0x0a, "cloud.account.id", &aws[4]);
    Val m[2], k[6], w[2];
    if (fields_of(c, &f[F_METADATA], METADATA, m, 2, 1) < 0) return FAIL;
    if (fields_of(c, &m[0], K8S, k, 6, 2) < 0) return FAIL;
    for (int i = 0; i < 4; i++) if (is_scalar(&k[i])) put_attr(r, 0x0a, K8S_NAMES[i], &k[i]);
    if (fields_of(c, &k[4], WORKLOAD, w, 2, 3) < 0) return FAIL;
    for (int i = 0; i < 6 && w[0].type == V_STR && w[1].type != V_NULL; i++) {
        if (!eq(&w[0], KINDS[i])) continue;
        if (w[1].type != V_STR) return FAIL;
        if (w[1].n == 0) break;  /* Python: `and workload.get("name")` */
        char attr[40];
        size_t n = (size_t)snprintf(attr, sizeof(attr), "k8s.%s.name", KINDS[i]);
        for (size_t j = 4; j < n; j++) if (attr[j] >= 'A' && attr[j] <= 'Z') attr[j] = (char)(attr[j] + 32);
        put_attr(r, 0x0a, attr, &w[1]);
    }
    if (k[5].type == V_OBJ) {
        Doc *d = &c->doc;
        d->p = k[5].at + 1;
        int first = 1, more, count = 0;
        Val keys[MAX_KEYS], key, value;
        while ((more = obj_next(d, &key, &first)) == 1) {
            if (remember_key(keys, &count, &key) < 0) return FAIL;
            if (read_value(d, &value, 4) < 0 || value.type != V_STR) return FAIL;
            put_attr2(r, 0x0a, "k8s.pod.label.", key.s, key.n, &value);
        }
        if (more < 0) return FAIL;
    }
    if (r->repeated) return FAIL;  /* an attribute written twice: Python keeps one */
    if (m[1].type == V_OBJ) {  /* otel.resource: what the attributes above do not say (setdefault) */
        Doc *d = &c->doc;
        const unsigned char *next = m[1].at + 1;
        int first = 1, more, count = 0;
        Val keys[MAX_KEYS], key, value;
        while (1) {
            d->p = next;
            if ((more = obj_next(d, &key, &first)) != 1) break;
            if (remember_key(keys, &count, &key) < 0) return FAIL;
            if (read_value(d, &value, 3) < 0) return FAIL;
            next = d->p;
            if (has_key(r, "", 0, key.s, key.n)) continue;
            if (put_attr_value(c, r, 0x0a, &key, &value, 3) < 0) return FAIL;
        }
        if (more < 0) return FAIL;
    }
    return r->repeated ? FAIL : 0;
}

static int encode_document(Ctx *c, Val *f) {
    Doc *d = &c->doc;
    ws(d);
    if (d->p >= d->end || *d->p != '{') return FAIL;
    if (read_fields(d, d->p, ENTITY, f, N_FIELDS, 0) < 0) return FAIL;  /* checks it all */
    ws(d);
    if (d->p != d->end) return FAIL;  /* json.loads: "Extra data" */
    if (f[F_TYPE].type != V_NULL && f[F_TYPE].type != V_STR) return FAIL;
    if (eq(&f[F_TYPE], "subsegment")) return FAIL;  /* its resource is its segment's: Python's */
    if (f[F_TRACE_ID].type != V_STR || f[F_TRACE_ID].n != 35) return FAIL;
    const char *t = f[F_TRACE_ID].s;
    if (t[0] != '1' || t[1] != '-' || t[10] != '-') return FAIL;
    char digits[32];
    memcpy(digits, t + 2, 8);
    memcpy(digits + 8, t + 11, 24);
    Val hex = {.type = V_STR, .s = digits, .n = 32};
    if (hex_id(&hex, 32, c->trace_id) < 0) return FAIL;
    unsigned char parent[8];
    int has_parent = f[F_PARENT_ID].type != V_NULL;
    if (has_parent && hex_id(&f[F_PARENT_ID], 16, parent) < 0) return FAIL;
    if (resource_attributes(c, f) < 0) return FAIL;
    return walk(c, f, has_parent ? parent : NULL, 1, 0);
}

/* The buffers are kept from one call to the next (the GIL is held throughout a call, and nothing
 * here calls back into Python); any grown past 1 MiB by a large document is let go. */
static Ctx kept;

static void release(Ctx *c) {
    Buf *bufs[] = {&c->out, &c->span, &c->attrs, &c->events, &c->text, &c->list, &c->resource, &c->value};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (bufs[i]->cap > (1 << 20) || bufs[i]->failed) {
            PyMem_Free(bufs[i]->p);
            memset(bufs[i], 0, sizeof(Buf));
        }
        buf_clear(bufs[i]);
    }
    if (c->doc.arena_cap > (1 << 20)) {
        PyMem_Free(c->doc.arena);
        c->doc.arena = NULL;
        c->doc.arena_cap = 0;
    }
}

static PyObject *encode(PyObject *self, PyObject *arg) {
    char *data;
    Py_ssize_t size;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "encode() takes bytes");
        return NULL;
    }
    if (PyBytes_AsStringAndSize(arg, &data, &size) < 0) return NULL;
    Ctx *c = &kept;
    size_t need = (size_t)size * 4 + 64;  /* decoded strings, some read more than once */
    if (c->doc.arena_cap < need) {
        unsigned char *arena = PyMem_Realloc(c->doc.arena, need);
        if (!arena) return PyErr_NoMemory();
        c->doc.arena = arena;
        c->doc.arena_cap = need;
    }
    c->doc.arena_len = 0;
    c->doc.p = (const unsigned char *)data;
    c->doc.end = c->doc.p + size;
    c->count = 0;
    Val f[N_FIELDS];
    int rc = encode_document(c, f);
    int nomem = c->out.failed || c->span.failed || c->attrs.failed || c->events.failed || c->text.failed ||
                c->list.failed || c->resource.failed || c->value.failed;
    PyObject *result = NULL;
    if (nomem) {
        PyErr_NoMemory();
    } else if (rc < 0) {
        result = Py_NewRef(Py_None);
    } else {
        const char *t = f[F_TRACE_ID].s;
        char trace_id[32];
        memcpy(trace_id, t + 2, 8);
        memcpy(trace_id + 8, t + 11, 24);
        result = Py_BuildValue("(y#y#ns#s#)", (const char *)c->resource.p, (Py_ssize_t)c->resource.len,
                               (const char *)c->out.p, (Py_ssize_t)c->out.len, c->count, trace_id,
                               (Py_ssize_t)32, f[F_ID].s, (Py_ssize_t)f[F_ID].n);
    }
    release(c);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_O,
     "encode(document: bytes) -> (resource, spans, count, trace_id, id) | None\n\n"
     "A segment document's spans as OTLP protobuf, or None where the Python path must run."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "k8sxray.otlp._fast",
    "A segment document straight to OTLP protobuf spans (see _fast.c).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module_def); }
