/* test_io.c - tests of examples/moe_io.h: JSON, safetensors (single and sharded), npy.
   Files are written into a fresh directory under /tmp and removed at the end. Every error case
   checks the result code and that the message names the problem. moe_io.h allocates through a
   counting allocator here, so the memory bounds are checked too. Last line: "N passed, M failed". */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
static void *t_malloc(size_t n);
static void *t_realloc(void *q, size_t n);
static void t_free(void *q);
#define MIO_MALLOC(sz) t_malloc(sz)
#define MIO_REALLOC(p, sz) t_realloc(p, sz)
#define MIO_FREE(p) t_free(p)
#define MOE_IO_IMPLEMENTATION
#include "../examples/moe_io.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int n_pass, n_fail;
static char tmpdir[64];

/* live and peak bytes moe_io.h holds; a realloc counts old and new at once, as it may */
static size_t g_live, g_peak;
static volatile unsigned g_sink; /* reads the compiler must keep */
static void *t_malloc(size_t n)
{
    size_t *h = (size_t *)malloc(n + 16);
    if (!h) return NULL;
    h[0] = n;
    g_live += n;
    if (g_live > g_peak) g_peak = g_live;
    return (char *)h + 16;
}
static void *t_realloc(void *q, size_t n)
{
    size_t *h, old;
    if (!q) return t_malloc(n);
    h = (size_t *)(void *)((char *)q - 16);
    old = h[0];
    if (g_live + n > g_peak) g_peak = g_live + n;
    h = (size_t *)realloc(h, n + 16);
    if (!h) return NULL;
    h[0] = n;
    g_live = g_live - old + n;
    return (char *)h + 16;
}
static void t_free(void *q)
{
    size_t *h;
    if (!q) return;
    h = (size_t *)(void *)((char *)q - 16);
    g_live -= h[0];
    free(h);
}

static void check(int ok, const char *what, int line)
{
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL line %d: %s\n", line, what);
    }
}
#define CHECK(c) check((c) != 0, #c, __LINE__)

/* rc must equal want and err must contain every string given (NULL-terminated list). */
static void check_err(int rc, int want, const char *err, int line, ...)
{
    va_list ap;
    const char *s;
    int ok = rc == want;
    va_start(ap, line);
    while ((s = va_arg(ap, const char *)) != NULL) {
        if (!strstr(err, s)) {
            printf("FAIL line %d: message lacks \"%s\"\n", line, s);
            ok = 0;
        }
    }
    va_end(ap);
    if (rc != want) printf("FAIL line %d: result %d, expected %d\n", line, rc, want);
    if (!ok) printf("     message: %s\n", err);
    if (ok) n_pass++;
    else n_fail++;
}
#define CHECK_ERR(rc, want, ...) check_err((rc), (want), err, __LINE__, __VA_ARGS__, (const char *)NULL)

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static int write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* remove tmpdir and what the tests put in it (two levels) */
static void rm_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    struct stat sb;
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode) && depth > 0) rm_tree(p, depth - 1);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- JSON ---- */

static const char config_json[] =
    "{\n"
    "  \"architectures\": [\"MixtralForCausalLM\"],\n"
    "  \"hidden_size\": 4096,\n"
    "  \"num_local_experts\": 8,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"eps6\": 1e-06,\n"
    "  \"router_aux_loss_coef\": 0.02,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"use_cache\": true,\n"
    "  \"sliding_window\": null,\n"
    "  \"initializer_range\": -0.5,\n"
    "  \"vocab_size\": 151936,\n"
    "  \"big\": 9007199254740993,\n"
    "  \"min64\": -9223372036854775808,\n"
    "  \"huge\": 18446744073709551615,\n"
    "  \"tiny\": 1E-300,\n"
    "  \"neg_exp\": -2.5e+3,\n"
    "  \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32768},\n"
    "  \"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]},\n"
    "  \"text_config\": {\"num_local_experts\": 16, \"moe_layers\": [1, 3, 5],\n"
    "                  \"nested\": {\"deeper\": [[], {}, [{\"a\": [true]}]]}},\n"
    "  \"escapes\": \"q\\\"b\\\\s\\/n\\nt\\tu\\u00e9\\ud83d\\ude00z\\b\\f\\r\",\n"
    "  \"nul\": \"a\\u0000b\",\n"
    "  \"empty\": \"\",\n"
    "  \"raw_utf8\": \"\xce\xb1\xce\xb2\"\n"
    "}\n";

static void test_json_config(void)
{
    char err[MIO_ERR_SIZE];
    mio_json_doc doc;
    const mio_json *root, *v, *tc, *c;
    double d = 0;
    int64_t i = 0;
    int b = -1;
    size_t len = 0;
    const char *s = NULL;
    int rc = mio_json_parse(&doc, config_json, strlen(config_json), "config.json", err, sizeof err);
    CHECK(rc == MIO_OK);
    if (rc) {
        printf("     %s\n", err);
        return;
    }
    CHECK(err[0] == '\0');
    root = mio_json_root(&doc);
    CHECK(mio_json_type(root) == MIO_JSON_OBJECT);
    CHECK(mio_json_len(root) == 24);
    CHECK(mio_json_get_i64(root, "hidden_size", &i, err, sizeof err) == MIO_OK && i == 4096);
    CHECK(mio_json_get_f64(root, "rms_norm_eps", &d, err, sizeof err) == MIO_OK && d == 1e-05);
    CHECK(mio_json_get_f64(root, "eps6", &d, err, sizeof err) == MIO_OK && d == 1e-06);
    CHECK(mio_json_get_f64(root, "router_aux_loss_coef", &d, err, sizeof err) == MIO_OK && d == 0.02);
    CHECK(mio_json_get_f64(root, "initializer_range", &d, err, sizeof err) == MIO_OK && d == -0.5);
    CHECK(mio_json_get_f64(root, "tiny", &d, err, sizeof err) == MIO_OK && d == 1e-300);
    CHECK(mio_json_get_f64(root, "neg_exp", &d, err, sizeof err) == MIO_OK && d == -2500.0);
    CHECK(mio_json_get_i64(root, "rope_theta", &i, err, sizeof err) == MIO_OK && i == 1000000);
    CHECK(mio_json_get_i64(root, "vocab_size", &i, err, sizeof err) == MIO_OK && i == 151936);
    CHECK(mio_json_get_i64(root, "big", &i, err, sizeof err) == MIO_OK && i == 9007199254740993LL);
    CHECK(mio_json_get_i64(root, "min64", &i, err, sizeof err) == MIO_OK && i == INT64_MIN);
    v = mio_json_get(root, "huge");
    CHECK(v && v->type == MIO_JSON_NUMBER && !v->is_int && v->num == 18446744073709551615.0);
    CHECK_ERR(mio_json_get_i64(root, "huge", &i, err, sizeof err), MIO_ERR_TYPE, "'huge'", "expected an integer");
    CHECK_ERR(mio_json_get_i64(root, "rms_norm_eps", &i, err, sizeof err), MIO_ERR_TYPE, "'rms_norm_eps'", "expected an integer");
    CHECK(mio_json_get_bool(root, "use_cache", &b, err, sizeof err) == MIO_OK && b == 1);
    CHECK(mio_json_get_bool(root, "tie_word_embeddings", &b, err, sizeof err) == MIO_OK && b == 0);
    CHECK(mio_json_is_null(mio_json_get(root, "sliding_window")));
    CHECK(mio_json_get(root, "no_such_key") == NULL);
    CHECK(!mio_json_is_null(mio_json_get(root, "no_such_key")));
    i = 7;
    CHECK_ERR(mio_json_get_i64(root, "sliding_window", &i, err, sizeof err), MIO_ERR_NOT_FOUND, "'sliding_window' is null");
    CHECK_ERR(mio_json_get_i64(root, "no_such_key", &i, err, sizeof err), MIO_ERR_NOT_FOUND, "'no_such_key' not found");
    CHECK(i == 7); /* defaults survive */
    CHECK_ERR(mio_json_get_f64(root, "architectures", &d, err, sizeof err), MIO_ERR_TYPE,
              "'architectures' is an array, expected a number");
    CHECK_ERR(mio_json_get_str(root, "text_config", &s, err, sizeof err), MIO_ERR_TYPE, "is an object, expected a string");
    CHECK_ERR(mio_json_get_bool(root, "hidden_size", &b, err, sizeof err), MIO_ERR_TYPE, "is a number");
    CHECK_ERR(mio_json_get_i64(mio_json_get(root, "absent_config"), "x", &i, err, sizeof err), MIO_ERR_NOT_FOUND, "'x'");
    CHECK_ERR(mio_json_get_i64(mio_json_get(root, "hidden_size"), "x", &i, err, sizeof err), MIO_ERR_TYPE, "expected an object");

    /* nested objects and arrays */
    v = mio_json_get(root, "rope_scaling");
    CHECK(mio_json_get_str(v, "type", &s, err, sizeof err) == MIO_OK && strcmp(s, "yarn") == 0);
    CHECK(mio_json_get_f64(v, "factor", &d, err, sizeof err) == MIO_OK && d == 4.0);
    v = mio_json_get(mio_json_get(root, "quantization_config"), "weight_block_size");
    CHECK(mio_json_len(v) == 2 && mio_json_at(v, 1) && mio_json_at(v, 1)->i64 == 128 && !mio_json_at(v, 2));
    tc = mio_json_get(root, "text_config");
    CHECK(mio_json_get_i64(tc, "num_local_experts", &i, err, sizeof err) == MIO_OK && i == 16);
    v = mio_json_get(tc, "moe_layers");
    i = 0;
    for (c = mio_json_child(v); c; c = mio_json_next(c)) i = i * 10 + c->i64;
    CHECK(i == 135);
    v = mio_json_get(mio_json_get(tc, "nested"), "deeper");
    CHECK(mio_json_len(v) == 3 && mio_json_len(mio_json_at(v, 0)) == 0 &&
          mio_json_type(mio_json_at(v, 1)) == MIO_JSON_OBJECT);
    c = mio_json_get(mio_json_at(mio_json_at(v, 2), 0), "a");
    CHECK(mio_json_as_bool(mio_json_at(c, 0), &b) == MIO_OK && b == 1);
    /* the member after the nested object is reached by next, skipping its subtree */
    CHECK(mio_json_get(root, "escapes") != NULL && mio_json_key(mio_json_next(tc)) &&
          strcmp(mio_json_key(mio_json_next(tc)), "escapes") == 0);

    /* strings */
    s = mio_json_as_str(mio_json_get(root, "escapes"), &len);
    CHECK(s && len == 21 && memcmp(s, "q\"b\\s/n\nt\tu\xc3\xa9\xf0\x9f\x98\x80z\b\f\r", 21) == 0);
    s = mio_json_as_str(mio_json_get(root, "nul"), &len);
    CHECK(s && len == 3 && s[0] == 'a' && s[1] == '\0' && s[2] == 'b');
    /* ... but not through get_str, whose C string would read as "a" */
    s = NULL;
    CHECK_ERR(mio_json_get_str(root, "nul", &s, err, sizeof err), MIO_ERR_TYPE, "'nul' holds a NUL character");
    CHECK(s == NULL);
    s = mio_json_as_str(mio_json_get(root, "empty"), &len);
    CHECK(s && len == 0 && s[0] == '\0');
    s = mio_json_as_str(mio_json_get(root, "raw_utf8"), &len);
    CHECK(s && len == 4 && strcmp(s, "\xce\xb1\xce\xb2") == 0);
    CHECK(mio_json_as_str(mio_json_get(root, "hidden_size"), NULL) == NULL);
    CHECK(mio_json_as_f64(mio_json_get(root, "empty"), &d) == MIO_ERR_TYPE);
    CHECK(mio_json_type(NULL) == MIO_JSON_NONE && strcmp(mio_json_type_name(MIO_JSON_NONE), "absent") == 0);
    mio_json_free(&doc);
    CHECK(doc.nodes == NULL && mio_json_root(&doc) == NULL);

    /* scalars at the top level, whitespace, byte order mark */
    CHECK(mio_json_parse(&doc, " \t\r\n42 \n", 8, NULL, err, sizeof err) == MIO_OK &&
          mio_json_root(&doc)->i64 == 42);
    mio_json_free(&doc);
    CHECK(mio_json_parse(&doc, "\xef\xbb\xbf[]", 5, NULL, err, sizeof err) == MIO_OK &&
          mio_json_len(mio_json_root(&doc)) == 0);
    mio_json_free(&doc);
    CHECK(mio_json_parse(&doc, "\"x\"", 3, NULL, err, sizeof err) == MIO_OK);
    mio_json_free(&doc);
}

static void test_json_errors(void)
{
    static const struct { const char *text; const char *want; } cases[] = {
        {"", "empty input"},
        {"   \n", "empty input"},
        {"{", "expected a member name (a string), found end of input"},
        {"{\"a\":1", "end of input inside the object that starts at byte 0"},
        {"[1,2", "end of input inside the array"},
        {"{\"a\":", "end of input, expected a value"},
        {"{\"a\":1,}", "expected a member name"},
        {"[1,]", "unexpected ']', expected a value"},
        {"{\"a\" 1}", "expected ':' after member name, found '1'"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}' after an object member"},
        {"[1 2]", "expected ',' or ']' after an array element"},
        {"\"abc", "unterminated string"},
        {"\"abc\\", "unterminated string"},
        {"\"a\\xb\"", "bad escape '\\x' in string"},
        {"\"\\u12G4\"", "expected 4 hex digits"},
        {"\"\\u12\"", "expected 4 hex digits"},
        {"\"\\ud800\"", "high surrogate \\uD800 not followed"},
        {"\"\\ud800\\u0041\"", "not followed by a low surrogate"},
        {"\"\\udc00\"", "unpaired low surrogate"},
        {"01", "leading zero"},
        {"-01", "leading zero"},
        {"1.", "expected a digit after '.'"},
        {"1.e5", "expected a digit after '.'"},
        {"1e", "expected a digit in the exponent"},
        {"1e+", "expected a digit in the exponent"},
        {"-", "expected a digit after '-'"},
        {"-x", "expected a digit after '-', found 'x'"},
        {"+1", "unexpected '+'"},
        {".5", "unexpected '.'"},
        {"NaN", "NaN and Infinity are not valid"},
        {"[Infinity]", "NaN and Infinity are not valid"},
        {"-Infinity", "expected a digit after '-'"},
        {"tru", "unexpected 't'"},
        {"nul", "unexpected 'n'"},
        {"True", "unexpected 'T'"},
        {"[1] x", "unexpected 'x' after the top-level value"},
        {"{} {}", "after the top-level value"},
        {"1e999", "out of the range of a double"},
        {"-1e999", "out of the range of a double"},
        {"\"a\x01" "b\"", "control character 0x01 in string"},
        {"\"tab\there\"", "control character 0x09"},
        {"\"\xff\"", "invalid UTF-8"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},
        {"\"\xe0\x80\xaf\"", "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8"},
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},
        {"\"\xe2\x82\"", "invalid UTF-8"},
        {"{'a': 1}", "expected a member name (a string), found '''"},
        {"// c\n{}", "unexpected '/'"},
        {"{\n  \"a\": x\n}", "byte 9 (line 2, column 8)"},
        {"[\xce\xb1]", "unexpected byte 0xce"},
    };
    char err[MIO_ERR_SIZE], deep[200];
    mio_json_doc doc;
    size_t k;
    int rc;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rc = mio_json_parse(&doc, cases[k].text, strlen(cases[k].text), "t.json", err, sizeof err);
        if (rc != MIO_ERR_FORMAT || !strstr(err, cases[k].want) || strncmp(err, "t.json: byte ", 13) != 0 ||
            doc.nodes != NULL) {
            n_fail++;
            printf("FAIL json case %zu \"%s\": rc %d, message \"%s\", want \"%s\"\n", k, cases[k].text, rc,
                   err, cases[k].want);
        } else {
            n_pass++;
        }
        mio_json_free(&doc);
    }
    /* an embedded NUL byte is an unexpected character, not the end */
    rc = mio_json_parse(&doc, "[1,\0 2]", 7, "t.json", err, sizeof err);
    CHECK_ERR(rc, MIO_ERR_FORMAT, "byte 3", "unexpected byte 0x00");
    /* nesting: 64 levels parse, 65 do not */
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    rc = mio_json_parse(&doc, deep, 128, "t.json", err, sizeof err);
    CHECK(rc == MIO_OK && doc.n_nodes == 64);
    mio_json_free(&doc);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    rc = mio_json_parse(&doc, deep, 130, "t.json", err, sizeof err);
    CHECK_ERR(rc, MIO_ERR_FORMAT, "nesting deeper than 64 levels", "byte 64");
    /* truncation at every length of a valid document is an error, never a crash */
    {
        size_t n = strlen(config_json), cut, bad = 0;
        for (cut = 0; cut + 2 < n; cut++) { /* config_json ends in "}\n" */
            char *copy = (char *)malloc(cut ? cut : 1);
            memcpy(copy, config_json, cut);
            rc = mio_json_parse(&doc, copy, cut, "t.json", err, sizeof err);
            if (rc != MIO_ERR_FORMAT || err[0] == '\0') bad++;
            mio_json_free(&doc);
            free(copy);
        }
        CHECK(bad == 0);
    }
    /* files */
    {
        char p[256];
        path_in(p, sizeof p, "config.json");
        CHECK(write_file(p, config_json, strlen(config_json)));
        rc = mio_json_parse_file(&doc, p, err, sizeof err);
        CHECK(rc == MIO_OK && mio_json_len(mio_json_root(&doc)) == 24);
        mio_json_free(&doc);
        CHECK(write_file(p, "{\"a\": [1, 2}", 12));
        rc = mio_json_parse_file(&doc, p, err, sizeof err);
        CHECK_ERR(rc, MIO_ERR_FORMAT, "config.json: byte 11", "expected ',' or ']'");
        path_in(p, sizeof p, "no_such.json");
        rc = mio_json_parse_file(&doc, p, err, sizeof err);
        CHECK_ERR(rc, MIO_ERR_IO, "no_such.json", "No such file");
    }
}

/* ---- safetensors ---- */

typedef struct tspec {
    const char *name, *dtype;
    int rank;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} tspec;

/* A safetensors image: header padded with spaces to a multiple of 8, as the reference writer
   does, then the data of each tensor in order. */
static unsigned char *st_build(const tspec *t, int n, size_t *len)
{
    char hdr[8192];
    size_t h = 0, off = 0, total;
    unsigned char *buf;
    int i, j;
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (i = 0; i < n; i++) {
        h += (size_t)snprintf(hdr + h, sizeof hdr - h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, t[i].dtype);
        for (j = 0; j < t[i].rank; j++)
            h += (size_t)snprintf(hdr + h, sizeof hdr - h, "%s%lld", j ? "," : "", (long long)t[i].shape[j]);
        h += (size_t)snprintf(hdr + h, sizeof hdr - h, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    hdr[h++] = '}';
    while (h % 8) hdr[h++] = ' ';
    total = 8 + h + off;
    buf = (unsigned char *)malloc(total);
    for (j = 0; j < 8; j++) buf[j] = (unsigned char)((uint64_t)h >> (8 * j));
    memcpy(buf + 8, hdr, h);
    off = 8 + h;
    for (i = 0; i < n; i++) {
        if (t[i].nbytes) memcpy(buf + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    *len = total;
    return buf;
}

/* A safetensors image from header text and data, with an optional header-length override. */
static unsigned char *st_raw(const char *header, size_t data_len, uint64_t hlen, size_t *len)
{
    size_t h = strlen(header), j;
    unsigned char *buf = (unsigned char *)calloc(8 + h + data_len + 1, 1);
    if (hlen == 0) hlen = h;
    for (j = 0; j < 8; j++) buf[j] = (unsigned char)(hlen >> (8 * j));
    memcpy(buf + 8, header, h);
    *len = 8 + h + data_len;
    return buf;
}

static float f32s[6] = {1, 2, 3, 4, 5, 6};
static uint16_t bf16s[4] = {0x3f80, 0x4000, 0xbf80, 0x0000};
static uint16_t f16s[4] = {0x3c00, 0x4000, 0xc000, 0x7bff};
static float scalar = 42.0f;
static float big[3 * 1024];
static unsigned char fp8s[4] = {1, 2, 3, 4};
static unsigned char f4s[3] = {0x12, 0x34, 0x56};

static const tspec main_tensors[] = {
    {"model.layers.0.mlp.gate.weight", "F32", 2, {2, 3}, f32s, sizeof f32s},
    {"b", "BF16", 1, {4}, bf16s, sizeof bf16s},
    {"h", "F16", 2, {2, 2}, f16s, sizeof f16s},
    {"scalar", "F32", 0, {0}, &scalar, 4},
    {"empty", "U8", 2, {0, 5}, NULL, 0},
    {"big", "F32", 2, {3, 1024}, big, sizeof big},
    {"fp8", "F8_E4M3", 1, {4}, fp8s, 4},
    {"f4", "F4", 2, {3, 2}, f4s, 3},
};

static void check_main_tensors(const mio_safetensors *st, const char *what)
{
    char err[MIO_ERR_SIZE];
    const mio_tensor *t;
    size_t i, k;
    int ok = st->n_tensors == 8;
    for (k = 0; k < 8 && ok; k++) {
        const tspec *s = &main_tensors[k];
        t = mio_safetensors_find(st, s->name);
        ok = t && strcmp(t->name, s->name) == 0 && strcmp(mio_dtype_name(t->dtype), s->dtype) == 0 &&
             t->rank == s->rank && t->nbytes == s->nbytes && t->file == st->path &&
             (s->nbytes == 0 || memcmp(t->data, s->data, s->nbytes) == 0) &&
             (const unsigned char *)t->data == st->base + t->offset;
        for (i = 0; ok && i < (size_t)s->rank; i++) ok = t->shape[i] == s->shape[i];
    }
    if (!ok) printf("     tensor %zu mismatch (%s)\n", k ? k - 1 : 0, what);
    CHECK(ok);
    t = mio_safetensors_find(st, "model.layers.0.mlp.gate.weight");
    CHECK(t && t->dtype == MIO_DTYPE_F32 && t->nelem == 6 && t->shape[2] == 0);
    t = mio_safetensors_find(st, "scalar");
    CHECK(t && t->rank == 0 && t->nelem == 1 && t->nbytes == 4);
    t = mio_safetensors_find(st, "empty");
    CHECK(t && t->nelem == 0 && t->nbytes == 0);
    t = mio_safetensors_find(st, "f4");
    CHECK(t && t->dtype == MIO_DTYPE_F4 && t->nelem == 6 && t->nbytes == 3);
    /* sorted by name */
    for (i = 1, ok = 1; i < st->n_tensors; i++) ok &= strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0;
    CHECK(ok);
    CHECK(mio_safetensors_find(st, "__metadata__") == NULL);
    CHECK_ERR(mio_safetensors_get(st, "missing.weight", &t, err, sizeof err), MIO_ERR_NOT_FOUND,
              "tensor 'missing.weight' not found", st->path);
    CHECK(mio_safetensors_get(st, "h", &t, err, sizeof err) == MIO_OK && t->dtype == MIO_DTYPE_F16 && err[0] == 0);
}

static void test_safetensors_single(void)
{
    char err[MIO_ERR_SIZE], p[256];
    mio_safetensors st;
    const mio_tensor *t;
    unsigned char *img;
    size_t len, i;
    int rc, ok;
    for (i = 0; i < 3 * 1024; i++) big[i] = (float)i * 0.5f;
    img = st_build(main_tensors, 8, &len);

    rc = mio_safetensors_open_mem(&st, img, len, "mem.safetensors", err, sizeof err);
    CHECK(rc == MIO_OK);
    if (rc == MIO_OK) {
        check_main_tensors(&st, "memory");
        t = mio_safetensors_find(&st, "big");
        CHECK(t && !t->mapped && mio_tensor_release(t, 0, t->nbytes, err, sizeof err) == MIO_OK);
    }
    mio_safetensors_close(&st);

    path_in(p, sizeof p, "single.safetensors");
    CHECK(write_file(p, img, len));
    rc = mio_safetensors_open(&st, p, err, sizeof err);
    CHECK(rc == MIO_OK);
    if (rc == MIO_OK) {
        check_main_tensors(&st, "file");
        t = mio_safetensors_find(&st, "big");
        CHECK(t && t->mapped);
        /* drop the pages, then read again: the mapping refills from the file */
        CHECK(mio_tensor_release(t, 0, t->nbytes, err, sizeof err) == MIO_OK);
        CHECK(mio_tensor_release(t, 100, 5000, err, sizeof err) == MIO_OK);
        CHECK(mio_tensor_release(t, t->nbytes, 0, err, sizeof err) == MIO_OK);
        ok = memcmp(t->data, big, sizeof big) == 0;
        CHECK(ok);
        CHECK_ERR(mio_tensor_release(t, 1, t->nbytes, err, sizeof err), MIO_ERR_ARG, "outside tensor 'big'");
        CHECK_ERR(mio_tensor_release(t, (size_t)-1, 2, err, sizeof err), MIO_ERR_ARG, "outside tensor 'big'");
        CHECK(mio_tensor_release(NULL, 0, 0, err, sizeof err) == MIO_ERR_ARG);
    }
    mio_safetensors_close(&st);
    CHECK(st.base == NULL && st.tensors == NULL);
    mio_safetensors_close(&st); /* twice is harmless */
    free(img);

    /* a file with no tensors, only metadata */
    img = st_raw("{\"__metadata__\":{}}", 0, 0, &len);
    CHECK(mio_safetensors_open_mem(&st, img, len, "m", err, sizeof err) == MIO_OK && st.n_tensors == 0);
    mio_safetensors_close(&st);
    free(img);
    img = st_raw("{}", 0, 0, &len);
    CHECK(mio_safetensors_open_mem(&st, img, len, "m", err, sizeof err) == MIO_OK && st.n_tensors == 0);
    mio_safetensors_close(&st);
    free(img);

    /* file-level errors */
    path_in(p, sizeof p, "five.safetensors");
    CHECK(write_file(p, "\x10\0\0\0\0", 5));
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "five.safetensors", "file is 5 bytes, too short");
    path_in(p, sizeof p, "zero.safetensors");
    CHECK(write_file(p, "", 0));
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "zero.safetensors", "file is 0 bytes");
    path_in(p, sizeof p, "none.safetensors");
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_IO, "none.safetensors", "cannot open", "No such file");
    CHECK_ERR(mio_safetensors_open(&st, tmpdir, err, sizeof err), MIO_ERR_IO, "not a regular file");
    path_in(p, sizeof p, "trunc.safetensors");
    img = st_build(main_tensors, 2, &len);
    CHECK(write_file(p, img, 40)); /* cut inside the header */
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "trunc.safetensors", "header length",
              "larger than the file allows", "file is 40 bytes");
    CHECK(write_file(p, img, len - 1)); /* cut inside the data */
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "tensor 'b'",
              "end past the data section (31 bytes");
    free(img);
}

static void test_safetensors_errors(void)
{
    static const struct { const char *header; size_t data; uint64_t hlen; const char *want1, *want2; } cases[] = {
        {"{}", 0, 1000000000000000000ULL, "header length 1000000000000000000 is larger than the file", "10 bytes"},
        {"{}", 0, 0xFFFFFFFFFFFFFFFFULL, "header length 18446744073709551615 is larger", "truncated"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, 0, "JSON header at file offset 8: byte",
         "end of input inside the object"},
        {"[1]", 0, 0, "header is an array, expected a JSON object", NULL},
        {"\"x\"", 0, 0, "header is a string", NULL},
        {"{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0, "tensor 'w': unknown dtype 'Q4_K'", NULL},
        {"{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "unknown dtype 'f32'", NULL},
        {"{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "tensor 'w': \"dtype\" is a number, expected a string", NULL},
        {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "\"dtype\" is absent", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,100]}}", 24, 0,
         "tensor 'w': data_offsets [0, 100] end past the data section (24 bytes", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, 0, "data_offsets [8, 4] have begin > end", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, 0,
         "shape [2, 3] of F32 needs 24 bytes, but data_offsets [0, 20] span 20", NULL},
        {"{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, 0, "BF16 needs 8 bytes", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,3],\"data_offsets\":[0,4]}}", 4, 0, "shape[0] is not a non-negative integer", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", 4, 0, "shape[0] is not a non-negative integer", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,4]}}", 4, 0, "shape[1] is not", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,4]}}", 4, 0, "NaN and Infinity", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,4]}}", 4, 0, "\"shape\" is a string", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, 0, "expected [begin, end]", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0, "\"data_offsets\" is absent", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, 0, "data_offsets[0] is not", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, 0, "tensors 'a' [0, 16] and 'b' [8, 24] overlap", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "tensor 'a' appears twice", NULL},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 0, "rank 9 exceeds MIO_MAX_RANK", NULL},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4, 0,
         "element count overflows", NULL},
        {"{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967295],\"data_offsets\":[0,4]}}", 4, 0, "byte size overflows", NULL},
        {"{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, 0, "not a whole number of bytes", NULL},
        {"{\"w\":7}", 0, 0, "tensor 'w': entry is a number, expected an object", NULL},
        {"{\"__metadata__\":[]}", 0, 0, "__metadata__ is an array", NULL},
        {"{\"__metadata__\":{\"format\":1}}", 0, 0, "__metadata__ 'format' is a number, expected a string", NULL},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "NUL character", NULL},
        {"{\"w\":{\"dtype\":\"F32\\u0000junk\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "tensor 'w': unknown dtype 'F32'", NULL},
    };
    char err[MIO_ERR_SIZE];
    mio_safetensors st;
    unsigned char *img;
    size_t k, len;
    int rc;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        img = st_raw(cases[k].header, cases[k].data, cases[k].hlen, &len);
        rc = mio_safetensors_open_mem(&st, img, len, "bad.safetensors", err, sizeof err);
        if (rc != MIO_ERR_FORMAT || strncmp(err, "bad.safetensors: ", 17) != 0 || !strstr(err, cases[k].want1) ||
            (cases[k].want2 && !strstr(err, cases[k].want2)) || st.tensors != NULL) {
            n_fail++;
            printf("FAIL safetensors case %zu: rc %d, message \"%s\", want \"%s\"\n", k, rc, err, cases[k].want1);
        } else {
            n_pass++;
        }
        mio_safetensors_close(&st);
        free(img);
    }
    /* empty tensors may share an offset with anything; a valid entry beside an empty one */
    img = st_raw("{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                 "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"z\":{\"dtype\":\"I64\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[8,8]}}", 8, 0, &len);
    rc = mio_safetensors_open_mem(&st, img, len, "ok", err, sizeof err);
    CHECK(rc == MIO_OK && st.n_tensors == 3);
    if (rc) printf("     %s\n", err);
    mio_safetensors_close(&st);
    free(img);
    /* the storage dtypes of quantized checkpoints (FP8 block scales, gpt-oss MXFP4 _blocks and
       _scales, compressed-tensors weight_packed / weight_shape), with their element sizes */
    img = st_raw("{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,3],\"data_offsets\":[0,6]},"
                 "\"s\":{\"dtype\":\"F8_E8M0\",\"shape\":[2],\"data_offsets\":[6,8]},"
                 "\"u\":{\"dtype\":\"U8\",\"shape\":[1,2,16],\"data_offsets\":[8,40]},"
                 "\"i\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[40,44]},"
                 "\"w\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[44,60]},"
                 "\"n\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[60,68]}}", 68, 0, &len);
    for (size_t i = 0; i < 8; i++) img[len - 8 + i] = (unsigned char)(i % 4 == 0 ? 7 * (i / 4 + 1) : 0);
    rc = mio_safetensors_open_mem(&st, img, len, "quantized", err, sizeof err);
    CHECK(rc == MIO_OK && st.n_tensors == 6);
    if (rc) printf("     %s\n", err);
    {
        static const struct { const char *name; int dtype, bits; size_t nelem; } q[] = {
            {"q", MIO_DTYPE_F8_E4M3, 8, 6}, {"s", MIO_DTYPE_F8_E8M0, 8, 2}, {"u", MIO_DTYPE_U8, 8, 32},
            {"i", MIO_DTYPE_I8, 8, 4}, {"w", MIO_DTYPE_I32, 32, 4}, {"n", MIO_DTYPE_I32, 32, 2}};
        for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
            const mio_tensor *t = rc ? NULL : mio_safetensors_find(&st, q[i].name);
            int ok = t && t->dtype == q[i].dtype && mio_dtype_bits(t->dtype) == q[i].bits &&
                     t->nelem == q[i].nelem && t->nbytes == q[i].nelem * (size_t)q[i].bits / 8 &&
                     mio_dtype_from_name(mio_dtype_name(q[i].dtype)) == q[i].dtype;
            if (!ok) printf("     quantized storage dtype '%s' read wrong\n", q[i].name);
            CHECK(ok);
        }
        /* a weight_shape [7, 14] read back as little-endian int32 */
        const mio_tensor *t = rc ? NULL : mio_safetensors_find(&st, "n");
        int32_t v[2] = {0, 0};
        if (t) memcpy(v, t->data, 8);
        CHECK(t && v[0] == 7 && v[1] == 14);
    }
    mio_safetensors_close(&st);
    free(img);
    /* unknown extra keys in an entry are ignored, as the reference implementation does */
    img = st_raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":{}}}", 4, 0, &len);
    CHECK(mio_safetensors_open_mem(&st, img, len, "ok", err, sizeof err) == MIO_OK);
    mio_safetensors_close(&st);
    free(img);
    CHECK(mio_dtype_from_name("BF16") == MIO_DTYPE_BF16 && mio_dtype_bits(MIO_DTYPE_BF16) == 16 &&
          mio_dtype_bits(MIO_DTYPE_F6_E2M3) == 6 && mio_dtype_from_name("bf16") == MIO_DTYPE_UNKNOWN &&
          strcmp(mio_dtype_name(MIO_DTYPE_F8_E8M0), "F8_E8M0") == 0 && strcmp(mio_dtype_name(999), "?") == 0);
}

static void write_st(const char *dir, const char *file, const tspec *t, int n)
{
    char p[256];
    size_t len;
    unsigned char *img = st_build(t, n, &len);
    snprintf(p, sizeof p, "%s/%s", dir, file);
    CHECK(write_file(p, img, len));
    free(img);
}

static void test_model_dir(void)
{
    char err[MIO_ERR_SIZE], d[200], p[256];
    mio_model m;
    const mio_tensor *t, *ta;
    int rc;
    static float av[2] = {1, 2}, bv[3] = {3, 4, 5}, cv[1] = {6};
    static const tspec s1[] = {{"a", "F32", 1, {2}, av, 8}, {"b", "F32", 1, {3}, bv, 12}};
    static const tspec s2[] = {{"c", "F32", 1, {1}, cv, 4}};
    static const char index_json[] =
        "{\"metadata\": {\"total_size\": 24},\n"
        " \"weight_map\": {\"b\": \"model-00001-of-00003.safetensors\",\n"
        "   \"c\": \"model-00002-of-00003.safetensors\",\n"
        "   \"a\": \"model-00001-of-00003.safetensors\",\n"
        "   \"d\": \"model-00003-of-00003.safetensors\",\n"
        "   \"e\": \"model-00002-of-00003.safetensors\"}}\n";

    /* missing, not a directory, empty */
    path_in(d, sizeof d, "no_such_dir");
    CHECK_ERR(mio_model_open(&m, d, err, sizeof err), MIO_ERR_IO, "model directory", "no_such_dir", "No such file");
    path_in(d, sizeof d, "emptydir");
    CHECK(mkdir(d, 0755) == 0);
    CHECK_ERR(mio_model_open(&m, d, err, sizeof err), MIO_ERR_IO, "emptydir",
              "neither model.safetensors nor model.safetensors.index.json");

    /* single file */
    path_in(d, sizeof d, "single");
    CHECK(mkdir(d, 0755) == 0);
    write_st(d, "model.safetensors", main_tensors, 8);
    rc = mio_model_open(&m, d, err, sizeof err);
    CHECK(rc == MIO_OK && !m.sharded && mio_model_count(&m) == 8);
    CHECK(mio_model_tensor(&m, "h", &t, err, sizeof err) == MIO_OK && t->dtype == MIO_DTYPE_F16);
    CHECK(mio_model_has(&m, "b") && !mio_model_has(&m, "zz"));
    CHECK(mio_model_name_at(&m, 0) && strcmp(mio_model_name_at(&m, 0), "b") == 0 && !mio_model_name_at(&m, 8));
    CHECK_ERR(mio_model_tensor(&m, "zz", &t, err, sizeof err), MIO_ERR_NOT_FOUND, "tensor 'zz' not found", "model.safetensors");
    mio_model_close(&m);
    /* a path to the file itself */
    path_in(p, sizeof p, "single/model.safetensors");
    CHECK(mio_model_open(&m, p, err, sizeof err) == MIO_OK && mio_model_count(&m) == 8);
    mio_model_close(&m);
    /* a trailing slash does not matter */
    path_in(p, sizeof p, "single/");
    CHECK(mio_model_open(&m, p, err, sizeof err) == MIO_OK && mio_model_count(&m) == 8);
    mio_model_close(&m);

    /* sharded */
    path_in(d, sizeof d, "sharded");
    CHECK(mkdir(d, 0755) == 0);
    write_st(d, "model-00001-of-00003.safetensors", s1, 2);
    write_st(d, "model-00002-of-00003.safetensors", s2, 1);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    CHECK(write_file(p, index_json, strlen(index_json)));
    rc = mio_model_open(&m, d, err, sizeof err);
    CHECK(rc == MIO_OK && m.sharded && mio_model_count(&m) == 5 && m.n_shards == 3);
    if (rc) {
        printf("     %s\n", err);
        return;
    }
    CHECK(mio_model_has(&m, "d") && !mio_model_has(&m, "f") && !m.shards[0].open && !m.shards[1].open);
    CHECK(strcmp(mio_model_name_at(&m, 0), "a") == 0 && strcmp(mio_model_name_at(&m, 4), "e") == 0);
    rc = mio_model_tensor(&m, "a", &ta, err, sizeof err);
    CHECK(rc == MIO_OK && ta->nbytes == 8 && memcmp(ta->data, av, 8) == 0 && ta->mapped);
    CHECK(strstr(ta->file, "model-00001-of-00003.safetensors") != NULL);
    CHECK(m.shards[0].open && !m.shards[1].open);
    rc = mio_model_tensor(&m, "c", &t, err, sizeof err);
    CHECK(rc == MIO_OK && t->nbytes == 4 && memcmp(t->data, cv, 4) == 0 && m.shards[1].open);
    rc = mio_model_tensor(&m, "b", &t, err, sizeof err);
    CHECK(rc == MIO_OK && t->shape[0] == 3 && memcmp(t->data, bv, 12) == 0);
    CHECK(memcmp(ta->data, av, 8) == 0); /* earlier pointers stay valid */
    CHECK(mio_tensor_release(t, 0, t->nbytes, err, sizeof err) == MIO_OK);
    CHECK_ERR(mio_model_tensor(&m, "d", &t, err, sizeof err), MIO_ERR_IO, "shard file", "model-00003-of-00003.safetensors",
              "is missing", "tensor 'd'");
    CHECK_ERR(mio_model_tensor(&m, "e", &t, err, sizeof err), MIO_ERR_FORMAT, "tensor 'e'", "maps it to 'model-00002-of-00003.safetensors'",
              "no such tensor");
    CHECK_ERR(mio_model_tensor(&m, "zzz", &t, err, sizeof err), MIO_ERR_NOT_FOUND, "tensor 'zzz' not found",
              "model.safetensors.index.json");
    mio_model_close(&m);
    CHECK(m.shards == NULL && m.dir == NULL);

    /* a broken shard: the message names the shard and the tensor */
    snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", d);
    CHECK(write_file(p, "\xff\xff\0\0\0\0\0\0{}", 10));
    CHECK(mio_model_open(&m, d, err, sizeof err) == MIO_OK);
    CHECK_ERR(mio_model_tensor(&m, "d", &t, err, sizeof err), MIO_ERR_FORMAT, "model-00003-of-00003.safetensors",
              "header length 65535", "shard of tensor 'd'");
    mio_model_close(&m);

    /* bad indexes */
    {
        static const struct { const char *text; int rc; const char *want; } bad[] = {
            {"{\"metadata\": {}}", MIO_ERR_FORMAT, "\"weight_map\" is absent, expected an object"},
            {"{\"weight_map\": []}", MIO_ERR_FORMAT, "\"weight_map\" is an array"},
            {"{\"weight_map\": {}}", MIO_ERR_FORMAT, "\"weight_map\" is empty"},
            {"{\"weight_map\": {\"a\": 3}}", MIO_ERR_FORMAT, "weight_map['a'] is a number"},
            {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", MIO_ERR_FORMAT, "'../x.safetensors' is not a file name inside"},
            {"{\"weight_map\": {\"a\": \"/etc/passwd\"}}", MIO_ERR_FORMAT, "is not a file name inside"},
            {"{\"weight_map\": {\"a\": \"\"}}", MIO_ERR_FORMAT, "is not a file name inside"},
            {"{\"weight_map\": {\"a\": \"s\", \"a\": \"s\"}}", MIO_ERR_FORMAT, "tensor 'a' appears twice in weight_map"},
            {"{\"weight_map\": {\"a\": \"s\",}}", MIO_ERR_FORMAT, "model.safetensors.index.json: byte 25"},
        };
        size_t k;
        path_in(d, sizeof d, "badindex");
        CHECK(mkdir(d, 0755) == 0);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
        for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            CHECK(write_file(p, bad[k].text, strlen(bad[k].text)));
            rc = mio_model_open(&m, d, err, sizeof err);
            if (rc != bad[k].rc || !strstr(err, bad[k].want) || m.dir != NULL) {
                n_fail++;
                printf("FAIL index case %zu: rc %d, message \"%s\", want \"%s\"\n", k, rc, err, bad[k].want);
            } else {
                n_pass++;
            }
            mio_model_close(&m);
        }
    }
}

/* ---- npy ---- */

/* An npy image: preamble for version major.0, the dict padded to 64 with spaces and '\n'. */
static unsigned char *npy_build(int major, const char *dict, const void *data, size_t dlen, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12, h = strlen(dict), hl = h + 1, j;
    unsigned char *b;
    while ((pre + hl) % 64) hl++;
    b = (unsigned char *)malloc(pre + hl + dlen + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (j = 0; j < pre - 8; j++) b[8 + j] = (unsigned char)(hl >> (8 * j));
    memcpy(b + pre, dict, h);
    memset(b + pre + h, ' ', hl - h - 1);
    b[pre + hl - 1] = '\n';
    if (dlen) memcpy(b + pre + hl, data, dlen);
    *len = pre + hl + dlen;
    return b;
}

static void test_npy(void)
{
    char err[MIO_ERR_SIZE], p[256];
    static const float x[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    static const int32_t ids[6] = {0, 7, -1, 2147483647, -2147483647 - 1, 42};
    static const char np_header[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    float *y = NULL;
    size_t r = 0, c = 0, len, hl;
    unsigned char *raw;
    int rc;

    /* round trip */
    path_in(p, sizeof p, "x.npy");
    CHECK(mio_npy_write_f32(p, x, 2, 3, err, sizeof err) == MIO_OK && err[0] == '\0');
    rc = mio_npy_read(p, &y, &r, &c, err, sizeof err);
    CHECK(rc == MIO_OK && r == 2 && c == 3 && y && memcmp(x, y, sizeof x) == 0);
    MIO_FREE(y);
    /* the bytes are what numpy.save writes: magic, 1.0, header padded so data starts at 128 */
    raw = read_whole(p, &len);
    CHECK(raw && len == 128 + 24);
    if (raw) {
        hl = (size_t)raw[8] | (size_t)raw[9] << 8;
        CHECK(memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0 && hl == 118 && (10 + hl) % 64 == 0);
        CHECK(memcmp(raw + 10, np_header, strlen(np_header)) == 0 && raw[127] == '\n' && raw[126] == ' ');
        free(raw);
    }
    /* int32 writer */
    path_in(p, sizeof p, "ids.npy");
    CHECK(mio_npy_write_i32(p, ids, 3, 2, err, sizeof err) == MIO_OK);
    raw = read_whole(p, &len);
    CHECK(raw && len == 128 + 24 && memcmp(raw + 10, "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2), }", 59) == 0 &&
          memcmp(raw + 128, ids, 24) == 0);
    free(raw);
    CHECK_ERR(mio_npy_read(p, &y, &r, &c, err, sizeof err), MIO_ERR_UNSUPPORTED, "ids.npy: dtype is '<i4', expected '<f4' (float32)");
    CHECK(y == NULL);
    /* empty arrays */
    path_in(p, sizeof p, "empty.npy");
    CHECK(mio_npy_write_f32(p, NULL, 0, 64, err, sizeof err) == MIO_OK);
    rc = mio_npy_read(p, &y, &r, &c, err, sizeof err);
    CHECK(rc == MIO_OK && r == 0 && c == 64 && y != NULL);
    MIO_FREE(y);
    /* version 2.0, double-quoted keys, keys in another order, no trailing comma */
    raw = npy_build(2, "{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f4\"}", x, 8, &len);
    rc = mio_npy_read_mem(raw, len, "v2.npy", &y, &r, &c, err, sizeof err);
    CHECK(rc == MIO_OK && r == 1 && c == 2 && y[0] == 1.5f && y[1] == -2.0f);
    MIO_FREE(y);
    free(raw);

    /* errors */
    {
        static const struct { int major; const char *dict; size_t dlen; int rc; const char *want; } cases[] = {
            {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, MIO_ERR_UNSUPPORTED,
             "bad.npy: dtype is '<f8', expected '<f4' (float32)"},
            {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, MIO_ERR_UNSUPPORTED, "dtype is '>f4'"},
            {1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", 6, MIO_ERR_UNSUPPORTED, "dtype is '|u1'"},
            {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, MIO_ERR_UNSUPPORTED,
             "bad.npy: fortran_order is True, expected C order"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5, 7), }", 420, MIO_ERR_UNSUPPORTED,
             "bad.npy: shape (3, 5, 7) has rank 3, expected [T][hidden_size]"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 20, MIO_ERR_UNSUPPORTED, "shape (5,) has rank 1"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, MIO_ERR_UNSUPPORTED, "shape () has rank 0"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, MIO_ERR_FORMAT,
             "data truncated: shape (2, 3) float32 needs 24 bytes, file has 20"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, MIO_ERR_FORMAT, "4 unexpected bytes after the data"},
            {1, "{'descr': '<f4', 'fortran_order': False}", 0, MIO_ERR_FORMAT, "header lacks 'shape'"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'foo': 1}", 24, MIO_ERR_FORMAT,
             "unexpected or repeated key 'foo'"},
            {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)}", 4, MIO_ERR_FORMAT,
             "repeated key 'descr'"},
            {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", 8, MIO_ERR_UNSUPPORTED, "structured"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (nan, 4), }", 0, MIO_ERR_FORMAT, "not a non-negative integer"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }", 0, MIO_ERR_FORMAT, "not a non-negative integer"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 1), }", 0, MIO_ERR_FORMAT,
             "dimension overflows"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0, MIO_ERR_FORMAT,
             "byte size overflows"},
            {1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 1)}", 4, MIO_ERR_FORMAT, "neither True nor False"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': [1, 1]}", 4, MIO_ERR_FORMAT, "'shape' is not a tuple"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1 1)}", 4, MIO_ERR_FORMAT, "expected ',' or ')'"},
            {1, "{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1)}", 4, MIO_ERR_FORMAT, "expected ',' or '}' after 'descr'"},
            {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)} x", 4, MIO_ERR_FORMAT, "unexpected bytes after the dict"},
            {1, "hello", 0, MIO_ERR_FORMAT, "header does not start with a '{'"},
            {1, "{'descr': '<f\\4', 'fortran_order': False, 'shape': (1, 1)}", 4, MIO_ERR_FORMAT, "'descr' is not a short quoted string"},
        };
        static const unsigned char zeros[512] = {0};
        size_t k;
        for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            raw = npy_build(cases[k].major, cases[k].dict, zeros, cases[k].dlen, &len);
            y = (float *)&r; /* must come back NULL */
            rc = mio_npy_read_mem(raw, len, "bad.npy", &y, &r, &c, err, sizeof err);
            if (rc != cases[k].rc || !strstr(err, cases[k].want) || strncmp(err, "bad.npy: ", 9) != 0 || y != NULL) {
                n_fail++;
                printf("FAIL npy case %zu: rc %d, message \"%s\", want \"%s\"\n", k, rc, err, cases[k].want);
            } else {
                n_pass++;
            }
            free(raw);
        }
    }
    raw = npy_build(1, np_header, x, 24, &len);
    raw[0] = 'N';
    CHECK_ERR(mio_npy_read_mem(raw, len, "m.npy", &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT, "m.npy: not an npy file");
    raw[0] = 0x93;
    raw[6] = 3;
    CHECK_ERR(mio_npy_read_mem(raw, len, "m.npy", &y, &r, &c, err, sizeof err), MIO_ERR_UNSUPPORTED,
              "npy format version 3.0, expected 1.0 or 2.0");
    raw[6] = 1;
    raw[8] = 0xff;
    CHECK_ERR(mio_npy_read_mem(raw, len, "m.npy", &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT,
              "header length 255 runs past the end of the file (152 bytes");
    CHECK_ERR(mio_npy_read_mem(raw, 7, "m.npy", &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT, "file is 7 bytes, too short");
    raw[6] = 2;
    CHECK_ERR(mio_npy_read_mem(raw, 11, "m.npy", &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT, "too short for an npy 2.0 header");
    free(raw);
    path_in(p, sizeof p, "none.npy");
    CHECK_ERR(mio_npy_read(p, &y, &r, &c, err, sizeof err), MIO_ERR_IO, "none.npy: cannot open: No such file");
    path_in(p, sizeof p, "zero.npy");
    CHECK(write_file(p, "", 0));
    CHECK_ERR(mio_npy_read(p, &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT, "zero.npy: file is 0 bytes");
    raw = npy_build(1, np_header, x, 24, &len);
    path_in(p, sizeof p, "cut.npy");
    CHECK(write_file(p, raw, len - 3));
    CHECK_ERR(mio_npy_read(p, &y, &r, &c, err, sizeof err), MIO_ERR_FORMAT, "cut.npy: data truncated", "file has 21");
    free(raw);
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, ".mio-", 5) == 0) n++;
    closedir(d);
    return n;
}

static void test_npy_atomic(void)
{
    char err[MIO_ERR_SIZE], p[256], q[256];
    static const float x[4] = {1, 2, 3, 4};
    struct stat sb;
    unsigned char *before, *after;
    size_t n0, n1;

    /* directory missing: error, nothing created */
    path_in(p, sizeof p, "missing_dir/out.npy");
    CHECK_ERR(mio_npy_write_f32(p, x, 2, 2, err, sizeof err), MIO_ERR_IO, "missing_dir/out.npy",
              "cannot create a temporary file", "No such file");
    path_in(q, sizeof q, "missing_dir");
    CHECK(stat(p, &sb) != 0 && stat(q, &sb) != 0);

    /* an existing output survives a failed write byte for byte */
    path_in(p, sizeof p, "keep.npy");
    CHECK(mio_npy_write_f32(p, x, 2, 2, err, sizeof err) == MIO_OK);
    before = read_whole(p, &n0);
    CHECK_ERR(mio_npy_write_f32(p, x, (size_t)1 << 62, 8, err, sizeof err), MIO_ERR_ARG, "keep.npy", "byte size overflows");
    after = read_whole(p, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    free(after);
    /* a successful write replaces it */
    CHECK(mio_npy_write_f32(p, x, 1, 4, err, sizeof err) == MIO_OK);
    after = read_whole(p, &n1);
    CHECK(after && n1 == n0 && memcmp(before, after, n0) != 0 && after[10 + 51] == '1' && after[10 + 54] == '4');
    free(before);
    free(after);

    /* the output path is a directory: rename fails, the temporary file is removed */
    path_in(p, sizeof p, "adir");
    CHECK(mkdir(p, 0755) == 0);
    CHECK_ERR(mio_npy_write_i32(p, (const int32_t *)x, 2, 2, err, sizeof err), MIO_ERR_IO, "adir", "is a directory, not a file to replace");
    CHECK(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK(count_tmp_files(tmpdir) == 0);
    CHECK(mio_npy_write_f32(NULL, x, 1, 1, err, sizeof err) == MIO_ERR_ARG);
    CHECK(mio_npy_write_f32(p, NULL, 1, 1, err, sizeof err) == MIO_ERR_ARG);
}

/* A FIFO (or any file that is not a regular one) is refused at once by every reader; opening
   one for reading used to block until a writer came, i.e. forever. alarm() turns a hang into a
   failed test. */
static void test_not_regular(void)
{
    char err[MIO_ERR_SIZE], d[200], p[256];
    mio_json_doc doc;
    mio_safetensors st;
    mio_model m;
    float *y = NULL;
    size_t r, c;
    alarm(20);
    path_in(p, sizeof p, "fifo.json");
    CHECK(mkfifo(p, 0600) == 0);
    CHECK_ERR(mio_json_parse_file(&doc, p, err, sizeof err), MIO_ERR_IO, "fifo.json", "not a regular file (a FIFO)");
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_IO, "fifo.json", "not a regular file (a FIFO)");
    CHECK_ERR(mio_npy_read(p, &y, &r, &c, err, sizeof err), MIO_ERR_IO, "fifo.json", "not a regular file (a FIFO)");
    CHECK(y == NULL);
    CHECK_ERR(mio_npy_read(tmpdir, &y, &r, &c, err, sizeof err), MIO_ERR_IO, "not a regular file (a directory)");
    CHECK_ERR(mio_json_parse_file(&doc, "/dev/null", err, sizeof err), MIO_ERR_IO, "/dev/null",
              "not a regular file (a character device)");
    /* in a model directory: the single file, the index, a shard */
    path_in(d, sizeof d, "fifo_model");
    CHECK(mkdir(d, 0755) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    CHECK(mkfifo(p, 0600) == 0);
    CHECK_ERR(mio_model_open(&m, d, err, sizeof err), MIO_ERR_IO, "model.safetensors", "not a regular file (a FIFO)");
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    CHECK(mkfifo(p, 0600) == 0);
    CHECK_ERR(mio_model_open(&m, d, err, sizeof err), MIO_ERR_IO, "index.json", "not a regular file (a FIFO)");
    unlink(p);
    {
        static const char idx[] = "{\"weight_map\": {\"a\": \"shard.safetensors\"}}";
        CHECK(write_file(p, idx, strlen(idx)));
    }
    snprintf(p, sizeof p, "%s/shard.safetensors", d);
    CHECK(mkfifo(p, 0600) == 0);
    CHECK(mio_model_open(&m, d, err, sizeof err) == MIO_OK);
    {
        const mio_tensor *t;
        CHECK_ERR(mio_model_tensor(&m, "a", &t, err, sizeof err), MIO_ERR_IO, "shard.safetensors",
                  "not a regular file (a FIFO)", "tensor 'a'");
    }
    mio_model_close(&m);
    alarm(0);
}

/* Memory is bounded by the input: a DOM needs one node per value and the strings, counted
   first; the safetensors header and the index are streamed. A 100 MB header holding one long
   array used to cost 3.8 GiB (a 40-byte node per 2-byte value, doubled while growing). */
static void test_memory(void)
{
    char err[MIO_ERR_SIZE], d[200], p[256];
    mio_safetensors st;
    mio_json_doc doc;
    mio_model m;
    size_t H = (size_t)2 << 20, len, i, n, at, base;
    unsigned char *img = (unsigned char *)malloc(8 + H);
    int rc, fd;
    /* one long array as the header: refused at its first byte, with the names arena only */
    for (i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)H >> (8 * i));
    img[8] = '[';
    for (i = 9; i + 1 < 8 + H; i += 2) img[i] = '0', img[i + 1] = ',';
    img[8 + H - 2] = ']', img[8 + H - 1] = ' ';
    g_peak = base = g_live;
    rc = mio_safetensors_open_mem(&st, img, 8 + H, "long.safetensors", err, sizeof err);
    CHECK_ERR(rc, MIO_ERR_FORMAT, "header is an array, expected a JSON object");
    CHECK(g_peak - base <= H + 65536);
    if (g_peak - base > H + 65536) printf("     peak %zu bytes for a %zu-byte header\n", g_peak - base, H);
    /* the same array inside an unknown key of an entry, and as a shape: checked, not kept */
    at = 8;
    at += (size_t)sprintf((char *)img + at, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":[");
    for (; at + 16 < 8 + H; at += 2) img[at] = '0', img[at + 1] = ',';
    memcpy(img + at, "0]}}", 4);
    for (at += 4; at < 8 + H; at++) img[at] = ' ';
    g_peak = base = g_live;
    rc = mio_safetensors_open_mem(&st, img, 8 + H, "key.safetensors", err, sizeof err);
    CHECK(rc == MIO_OK && st.n_tensors == 1);
    if (rc) printf("     %s\n", err);
    CHECK(g_peak - base <= H + 65536 + 200);
    mio_safetensors_close(&st);
    at = 8 + (size_t)sprintf((char *)img + 8, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0");
    for (; at + 40 < 8 + H; at += 2) img[at] = ',', img[at + 1] = '1';
    at += (size_t)sprintf((char *)img + at, "],\"data_offsets\":[0,0]}}");
    while (at < 8 + H) img[at++] = ' ';
    g_peak = base = g_live;
    rc = mio_safetensors_open_mem(&st, img, 8 + H, "rank.safetensors", err, sizeof err);
    CHECK_ERR(rc, MIO_ERR_FORMAT, "tensor 'w': rank");
    CHECK(g_peak - base <= H + 65536);
    /* as many tensors as fit: the table and the names stay within 10 times the header */
    at = 8;
    img[at++] = '{';
    for (n = 0; at + 80 < 8 + H; n++)
        at += (size_t)sprintf((char *)img + at, "%s\"%zu\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              n ? "," : "", n);
    img[at++] = '}';
    while (at < 8 + H) img[at++] = ' ';
    g_peak = base = g_live;
    rc = mio_safetensors_open_mem(&st, img, 8 + H, "many.safetensors", err, sizeof err);
    CHECK(rc == MIO_OK && st.n_tensors == n);
    if (rc) printf("     %s\n", err);
    CHECK(g_peak - base <= 10 * H);
    printf("     %zu tensors in a %zu-byte header: peak %.2f x the header\n", n, H,
           (double)(g_peak - base) / (double)H);
    mio_safetensors_close(&st);

    /* the DOM: exactly one node per value plus the strings */
    n = (size_t)1 << 17;
    img[0] = '[';
    for (i = 0; i < n; i++) img[1 + 2 * i] = '0', img[2 + 2 * i] = ',';
    img[2 * n] = ']';
    len = 2 * n + 1;
    g_peak = base = g_live;
    rc = mio_json_parse(&doc, img, len, "long.json", err, sizeof err);
    CHECK(rc == MIO_OK && doc.n_nodes == n + 1);
    CHECK(g_peak - base == len + 1 + doc.n_nodes * sizeof(mio_json));
    mio_json_free(&doc);

    /* a dense index: within 10 times the file */
    path_in(d, sizeof d, "dense_index");
    CHECK(mkdir(d, 0755) == 0);
    at = (size_t)sprintf((char *)img, "{\"metadata\": {\"total_size\": 1, \"x\": [[1, 2], {\"y\": null}]}, \"weight_map\": {");
    len = (size_t)1 << 20;
    for (n = 0; at + 40 < len; n++) at += (size_t)sprintf((char *)img + at, "%s\"%zu\":\"s%zu\"", n ? "," : "", n, n % 7);
    img[at++] = '}';
    img[at++] = '}';
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    CHECK(write_file(p, img, at));
    g_peak = base = g_live;
    rc = mio_model_open(&m, d, err, sizeof err);
    CHECK(rc == MIO_OK && m.n_entries == n && m.n_shards == 7);
    if (rc) printf("     %s\n", err);
    CHECK(g_peak - base <= 10 * at);
    printf("     %zu index entries in %zu bytes: peak %.2f x the file\n", n, at,
           (double)(g_peak - base) / (double)at);
    mio_model_close(&m);
    /* files over their limit are refused before anything is read */
    fd = open(p, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)MIO_INDEX_MAX_FILE + 1) == 0);
    close(fd);
    g_peak = base = g_live;
    CHECK_ERR(mio_model_open(&m, d, err, sizeof err), MIO_ERR_FORMAT, "index.json: file is 67108865 bytes, over the limit of 67108864");
    CHECK(g_peak - base < 65536);
    unlink(p);
    path_in(p, sizeof p, "big_config.json");
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)MIO_JSON_MAX_FILE + 1) == 0);
    close(fd);
    CHECK_ERR(mio_json_parse_file(&doc, p, err, sizeof err), MIO_ERR_FORMAT, "big_config.json: file is 4194305 bytes, over the limit of 4194304");
    unlink(p);
    free(img);
}

/* Messages keep their reason: one longer than the buffer is cut in the middle, and names from
   a file are cut at 200 bytes. Also: a file that is not safetensors is called that. */
static void test_messages(void)
{
    char err[MIO_ERR_SIZE], small[64], p[4096], name[5001], hdr[5200];
    mio_safetensors st;
    float *y = NULL;
    size_t r, c, at, n, len;
    unsigned char *img;
    static const char enoent[] = "No such file or directory";
    at = (size_t)snprintf(p, sizeof p, "%s", tmpdir);
    while (at + 220 < 3400) {
        p[at++] = '/';
        memset(p + at, 'd', 200);
        at += 200;
    }
    snprintf(p + at, sizeof p - at, "/x.npy");
    CHECK(mio_npy_read(p, &y, &r, &c, err, sizeof err) == MIO_ERR_IO);
    n = strlen(err);
    CHECK(n == sizeof err - 1 && strncmp(err, tmpdir, strlen(tmpdir)) == 0 && strstr(err, " ... ") &&
          strcmp(err + n - strlen(enoent), enoent) == 0);
    CHECK(mio_safetensors_open(&st, p, small, sizeof small) == MIO_ERR_IO);
    n = strlen(small);
    CHECK(n == sizeof small - 1 && strcmp(small + n - strlen(enoent), enoent) == 0 && strstr(small, " ... "));
    /* the cut is exact at every buffer size */
    for (r = 1; r < 200; r++) {
        char b[200];
        mio_npy_read(p, &y, &c, &c, b, r);
        if (strlen(b) != (r - 1 < 3000 ? r - 1 : 0) ||
            (r > 48 && strcmp(b + strlen(b) - strlen(enoent), enoent) != 0)) {
            printf("FAIL line %d: a %zu-byte buffer holds \"%s\"\n", __LINE__, r, b);
            n_fail++;
            break;
        }
    }
    /* a 5000-byte tensor name: cut, and the reason still there */
    memset(name, 'n', 5000);
    name[5000] = 0;
    snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
    img = st_raw(hdr, 1, 0, &len);
    CHECK_ERR(mio_safetensors_open_mem(&st, img, len, "long.safetensors", err, sizeof err), MIO_ERR_FORMAT,
              "long.safetensors: tensor 'nnnn", "': unknown dtype 'Q9'");
    CHECK(strlen(err) < 300);
    free(img);
    /* other files as shards */
    path_in(p, sizeof p, "model.bin");
    {
        static const char zip[] = "PK\x03\x04\x14\0\0\0\x08\0archive/data.pkl";
        CHECK(write_file(p, zip, sizeof zip - 1));
    }
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "model.bin: not a safetensors file");
    path_in(p, sizeof p, "index.safetensors");
    CHECK(write_file(p, "{\"weight_map\": {}}", 18));
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "index.safetensors: not a safetensors file");
    path_in(p, sizeof p, "eight.safetensors");
    CHECK(write_file(p, "\x08\0\0\0\0\0\0\0", 8));
    CHECK_ERR(mio_safetensors_open(&st, p, err, sizeof err), MIO_ERR_FORMAT, "not a safetensors file");
}

static int same_bytes(const char *path, const unsigned char *want, size_t n)
{
    size_t len;
    unsigned char *b = read_whole(path, &len);
    int ok = b && len == n && memcmp(b, want, n) == 0;
    free(b);
    return ok;
}

/* A set of outputs appears together or not at all; targets are put back when a rename fails */
static void test_outputs(void)
{
    char err[MIO_ERR_SIZE], d[200], pa[256], pb[256], pc[256], q[512], name[300];
    static const float x[4] = {1, 2, 3, 4}, z[4] = {5, 6, 7, 8};
    unsigned char *a0, *b0;
    size_t na, nb;
    mio_outputs o;
    struct stat sb;
    path_in(d, sizeof d, "outs");
    CHECK(mkdir(d, 0755) == 0);
    snprintf(pa, sizeof pa, "%s/a.npy", d);
    snprintf(pb, sizeof pb, "%s/b.npy", d);
    snprintf(pc, sizeof pc, "%s/c.npy", d);
    CHECK(mio_npy_write_f32(pa, x, 2, 2, err, sizeof err) == MIO_OK);
    CHECK(mio_npy_write_f32(pb, x, 4, 1, err, sizeof err) == MIO_OK);
    a0 = read_whole(pa, &na);
    b0 = read_whole(pb, &nb);
    /* staged but not committed: nothing changes, nothing stays */
    mio_outputs_init(&o);
    CHECK(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_i32(&o, pc, (const int32_t *)z, 1, 4, err, sizeof err) == MIO_OK);
    CHECK(count_tmp_files(d) == 2 && stat(pc, &sb) != 0 && same_bytes(pa, a0, na));
    mio_outputs_discard(&o);
    CHECK(count_tmp_files(d) == 0 && stat(pc, &sb) != 0 && same_bytes(pa, a0, na));
    /* the same file twice: by name, by another spelling, through a symlink, a hard link */
    mio_outputs_init(&o);
    CHECK(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err) == MIO_OK);
    CHECK_ERR(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err), MIO_ERR_ARG, "names the same file as the output");
    snprintf(q, sizeof q, "%s/../outs/./a.npy", d);
    CHECK_ERR(mio_outputs_npy_f32(&o, q, z, 2, 2, err, sizeof err), MIO_ERR_ARG, "names the same file");
    snprintf(q, sizeof q, "%s/link.npy", d);
    CHECK(symlink("a.npy", q) == 0);
    CHECK_ERR(mio_outputs_npy_f32(&o, q, z, 2, 2, err, sizeof err), MIO_ERR_ARG, "names the same file");
    unlink(q);
    CHECK(link(pa, q) == 0);
    CHECK_ERR(mio_outputs_npy_f32(&o, q, z, 2, 2, err, sizeof err), MIO_ERR_ARG, "names the same file");
    unlink(q);
    CHECK(mio_outputs_npy_f32(&o, pc, z, 2, 2, err, sizeof err) == MIO_OK); /* a new one is fine */
    snprintf(q, sizeof q, "%s/./c.npy", d);
    CHECK_ERR(mio_outputs_npy_f32(&o, q, z, 2, 2, err, sizeof err), MIO_ERR_ARG, "names the same file"); /* not there yet */
    mio_outputs_discard(&o);
    CHECK(count_tmp_files(d) == 0 && same_bytes(pa, a0, na));
    /* the third rename fails (its target became a directory): the first two are put back */
    mio_outputs_init(&o);
    CHECK(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_f32(&o, pb, z, 4, 1, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_f32(&o, pc, z, 1, 4, err, sizeof err) == MIO_OK);
    CHECK(mkdir(pc, 0755) == 0);
    snprintf(q, sizeof q, "%s/inside", pc);
    CHECK(write_file(q, "x", 1));
    CHECK_ERR(mio_outputs_commit(&o, err, sizeof err), MIO_ERR_IO, "c.npy", "every output left as it was");
    mio_outputs_discard(&o);
    CHECK(same_bytes(pa, a0, na) && same_bytes(pb, b0, nb) && stat(pc, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK(count_tmp_files(d) == 0);
    unlink(q);
    rmdir(pc);
    /* the same with the failure on the second, the first new */
    unlink(pa);
    mio_outputs_init(&o);
    CHECK(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_f32(&o, pc, z, 1, 4, err, sizeof err) == MIO_OK);
    CHECK(mkdir(pc, 0755) == 0);
    snprintf(q, sizeof q, "%s/inside", pc);
    CHECK(write_file(q, "x", 1));
    CHECK(mio_outputs_commit(&o, err, sizeof err) == MIO_ERR_IO);
    mio_outputs_discard(&o);
    CHECK(stat(pa, &sb) != 0 && count_tmp_files(d) == 0);
    unlink(q);
    rmdir(pc);
    /* and when all goes well: every target replaced, nothing else left */
    mio_outputs_init(&o);
    CHECK(mio_outputs_npy_f32(&o, pa, z, 2, 2, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_f32(&o, pb, z, 4, 1, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_npy_i32(&o, pc, (const int32_t *)z, 1, 4, err, sizeof err) == MIO_OK);
    CHECK(mio_outputs_commit(&o, err, sizeof err) == MIO_OK);
    mio_outputs_discard(&o);
    {
        float *y = NULL;
        size_t r = 0, c = 0;
        CHECK(mio_npy_read(pb, &y, &r, &c, err, sizeof err) == MIO_OK && r == 4 && c == 1 && memcmp(y, z, 16) == 0);
        MIO_FREE(y);
    }
    CHECK(count_tmp_files(d) == 0 && stat(pc, &sb) == 0 && S_ISREG(sb.st_mode));
    /* a name of 250 bytes (a suffix on it would pass NAME_MAX) */
    memset(name, 'y', 246);
    memcpy(name + 246, ".npy", 5);
    snprintf(q, sizeof q, "%s/%s", d, name);
    CHECK_ERR(mio_npy_write_f32(q, x, 2, 2, err, sizeof err), MIO_OK, "");
    CHECK(stat(q, &sb) == 0 && count_tmp_files(d) == 0);
    unlink(q);
    /* new files get 0666 less the umask, not mkstemp's 0600 */
    {
        mode_t um = umask(022);
        CHECK(mio_npy_write_f32(pa, x, 2, 2, err, sizeof err) == MIO_OK);
        CHECK(stat(pa, &sb) == 0 && (sb.st_mode & 0777) == 0644);
        umask(um);
    }
    unlink(pa);
    unlink(pb);
    unlink(pc);
    free(a0);
    free(b0);
}

/* MIO_READ: the header through pread, a tensor copied when loaded; a file that shrinks is an
   error. MIO_MAP on the same file dies of SIGBUS (in a child here): the contract it documents. */
static void test_read_mode(void)
{
    char err[MIO_ERR_SIZE], p[256];
    mio_safetensors st;
    mio_model m;
    const mio_tensor *t, *h;
    unsigned char *img;
    size_t len, i;
    long ps = sysconf(_SC_PAGESIZE);
    int rc, status = 0;
    pid_t pid;
    img = st_build(main_tensors, 8, &len);
    path_in(p, sizeof p, "read.safetensors");
    CHECK(write_file(p, img, len));
    rc = mio_safetensors_open_as(&st, p, MIO_READ, err, sizeof err);
    CHECK(rc == MIO_OK && st.n_tensors == 8 && st.base == NULL);
    if (rc) {
        printf("     %s\n", err);
        free(img);
        return;
    }
    CHECK(mio_safetensors_get(&st, "big", &t, err, sizeof err) == MIO_OK && t->data == NULL);
    CHECK(mio_safetensors_load(&st, "big", &t, err, sizeof err) == MIO_OK && t->data &&
          memcmp(t->data, big, sizeof big) == 0 && t->mapped && t->copy_len >= t->nbytes &&
          (uintptr_t)t->data % (uintptr_t)ps == 0);
    CHECK(mio_safetensors_load(&st, "big", &h, err, sizeof err) == MIO_OK && h == t); /* once */
    CHECK(mio_safetensors_load(&st, "empty", &h, err, sizeof err) == MIO_OK && h->data != NULL);
    CHECK_ERR(mio_safetensors_load(&st, "nope", &h, err, sizeof err), MIO_ERR_NOT_FOUND, "tensor 'nope' not found");
    /* a released copy is freed: its whole pages read zeros */
    CHECK(mio_tensor_release(t, 0, t->nbytes, err, sizeof err) == MIO_OK);
    {
        const unsigned char *b = (const unsigned char *)t->data;
        int zero = 1;
        for (i = 0; i < (size_t)ps && i < t->nbytes; i++) zero &= b[i] == 0;
        CHECK(zero);
    }
    CHECK(mio_safetensors_load(&st, "h", &h, err, sizeof err) == MIO_OK);
    /* the file is cut to its header: what was loaded stays, what was not is an error */
    CHECK(truncate(p, (off_t)st.data_start) == 0);
    CHECK(memcmp(h->data, f16s, sizeof f16s) == 0);
    CHECK_ERR(mio_safetensors_load(&st, "model.layers.0.mlp.gate.weight", &t, err, sizeof err), MIO_ERR_IO,
              "tensor 'model.layers.0.mlp.gate.weight': the file ended after 0 of its 24 bytes");
    CHECK(t == NULL);
    mio_safetensors_close(&st);
    /* the same cut under MIO_MAP: the first touch of a page past the end is SIGBUS */
    CHECK(write_file(p, img, len));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (mio_safetensors_open(&st, p, err, sizeof err) != MIO_OK) _exit(3);
        t = mio_safetensors_find(&st, "big");
        if (!t || truncate(p, (off_t)st.data_start) != 0) _exit(4);
        rc = open("/dev/null", O_WRONLY); /* a sanitizer's report of the SIGBUS is no news */
        if (rc >= 0) dup2(rc, 2);
        for (i = 0; i < t->nbytes; i++) g_sink += ((const unsigned char *)t->data)[i];
        _exit(0); /* not reached: the read above faults */
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    /* killed by SIGBUS, or (under a sanitizer, which catches it) an exit that says so */
    CHECK(WIFSIGNALED(status) ? WTERMSIG(status) == SIGBUS
                              : WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3 &&
                                    WEXITSTATUS(status) != 4);
    /* a model opened MIO_READ loads on lookup, shards included */
    CHECK(write_file(p, img, len));
    rc = mio_model_open_as(&m, p, MIO_READ, err, sizeof err);
    CHECK(rc == MIO_OK && mio_model_tensor(&m, "big", &t, err, sizeof err) == MIO_OK && t->data &&
          memcmp(t->data, big, sizeof big) == 0 && t->copy_len);
    mio_model_close(&m);
    free(img);
}

int main(void)
{
    strcpy(tmpdir, "/tmp/moe_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("cannot create a temporary directory\n0 passed, 1 failed\n");
        return 1;
    }
    test_json_config();
    test_json_errors();
    test_safetensors_single();
    test_safetensors_errors();
    test_model_dir();
    test_npy();
    test_npy_atomic();
    test_not_regular();
    test_memory();
    test_messages();
    test_outputs();
    test_read_mode();
    CHECK(strstr(mio_result_str(MIO_ERR_FORMAT), "MIO_ERR_FORMAT") != NULL);
    rm_tree(tmpdir, 2);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
