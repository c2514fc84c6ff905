/* test_io_fuzz.c - bounded, deterministic mutation fuzzing of the moe_io.h parsers, plus the
   regression corpus tests/corpus/io/ (run from the repository root).

   Valid JSON, safetensors and npy images are built in memory, mutated (bit flips, interesting
   bytes, truncation, extension, splicing, insertion, deletion, duplication; for safetensors and
   npy also mutations of the header text with the length field kept consistent) and parsed from
   an exactly sized heap copy, so AddressSanitizer sees any read past the end. Each parse must
   return MIO_OK or an error code with a message; on success every node, tensor byte and float
   the parser hands out is walked. Every corpus file must be rejected with a message.
   Fixed seed and iteration counts; well under 20 s on one core with ASan and UBSan.
   Last line: "N passed, M failed". */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#define MOE_IO_IMPLEMENTATION
#include "../examples/moe_io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERS_JSON 60000
#define ITERS_ST 60000
#define ITERS_NPY 40000
#define MAX_LEN 16384
#define CORPUS_DIR "tests/corpus/io"

static int n_pass, n_fail;
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    /* xorshift64*: fixed sequence, so every run parses the same inputs */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rnd(size_t n) { return n ? (size_t)(rng() % n) : 0; }

typedef struct buf {
    unsigned char *p;
    size_t len;
} buf;

static void report(int ok, const char *what, size_t iter, const buf *b, const char *err)
{
    if (ok) {
        n_pass++;
        return;
    }
    n_fail++;
    if (n_fail <= 20) printf("FAIL %s iteration %zu (%zu bytes): %s\n", what, iter, b ? b->len : 0, err ? err : "");
}

/* ---- seeds ---- */

static const char seed_config[] =
    "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"hidden_size\": 2048, \"num_experts\": 128,\n"
    " \"num_experts_per_tok\": 8, \"rms_norm_eps\": 1e-06, \"norm_topk_prob\": true, \"x\": -0.5,\n"
    " \"sliding_window\": null, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0},\n"
    " \"quantization_config\": {\"weight_block_size\": [128, 128], \"fmt\": \"e4m3\"},\n"
    " \"text_config\": {\"num_local_experts\": 16, \"deep\": [[[{\"a\": [1, 2.5e+3, \"\\u00e9\\ud83d\\ude00\\n\"]}]]]},\n"
    " \"big\": 18446744073709551615, \"min\": -9223372036854775808, \"s\": \"a\\\"b\\\\c\\/\\b\\f\\r\\t\"}";

static const char seed_index[] =
    "{\"metadata\": {\"total_size\": 1024}, \"weight_map\": {\"model.layers.0.mlp.experts.0.up_proj.weight\": "
    "\"model-00001-of-00002.safetensors\", \"model.layers.0.mlp.gate.weight\": \"model-00002-of-00002.safetensors\"}}";

static const char seed_st_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"c\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
    "\"e\":{\"dtype\":\"U8\",\"shape\":[0,7],\"data_offsets\":[40,40]},"
    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]},"
    "\"q\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[44,47]},"
    "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[47,55]}}";
#define SEED_ST_DATA 55

static const char seed_npy_dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";

static buf make_st(const char *header, size_t hlen, size_t data_len)
{
    buf b;
    size_t j;
    b.len = 8 + hlen + data_len;
    b.p = (unsigned char *)malloc(b.len ? b.len : 1);
    for (j = 0; j < 8; j++) b.p[j] = (unsigned char)((uint64_t)hlen >> (8 * j));
    memcpy(b.p + 8, header, hlen);
    for (j = 0; j < data_len; j++) b.p[8 + hlen + j] = (unsigned char)(j * 37 + 11);
    return b;
}

static buf make_npy(int major, const char *dict, size_t dict_len, size_t data_len)
{
    size_t pre = major == 1 ? 10 : 12, hl = dict_len + 1, j;
    buf b;
    while ((pre + hl) % 64) hl++;
    b.len = pre + hl + data_len;
    b.p = (unsigned char *)malloc(b.len);
    memcpy(b.p, "\x93NUMPY", 6);
    b.p[6] = (unsigned char)major;
    b.p[7] = 0;
    for (j = 0; j < pre - 8; j++) b.p[8 + j] = (unsigned char)(hl >> (8 * j));
    memcpy(b.p + pre, dict, dict_len);
    memset(b.p + pre + dict_len, ' ', hl - dict_len - 1);
    b.p[pre + hl - 1] = '\n';
    for (j = 0; j < data_len; j++) b.p[pre + hl + j] = (unsigned char)(j * 13 + 1);
    return b;
}

static buf copy_of(const void *p, size_t len)
{
    buf b;
    b.len = len;
    b.p = (unsigned char *)malloc(len ? len : 1);
    if (len) memcpy(b.p, p, len);
    return b;
}

/* ---- mutations ---- */

static const unsigned char interesting[] = {0x00, 0xff, 0x7f, 0x80, 0xc0, 0xed, 0xf4, '"', '\'', '{', '}', '[', ']',
                                            '(', ')', ',', ':', '\\', '0', '1', '9', '-', '+', 'e', 'E', '.', ' ',
                                            '\n', 'u', 'n', 't', 'f', 'N', 'T', 'F', 'd'};

static unsigned char pick_byte(void)
{
    return rng() & 1 ? interesting[rnd(sizeof interesting)] : (unsigned char)rng();
}

/* Apply 1..4 random mutations to b in place (b->p has room for MAX_LEN bytes); `other` is a
   second input to splice from. */
static void mutate(buf *b, const buf *other)
{
    int k, n = 1 + (int)rnd(4);
    for (k = 0; k < n; k++) {
        size_t pos = rnd(b->len + 1), len, src;
        switch (rnd(9)) {
        case 0: /* bit flip */
            if (b->len) b->p[rnd(b->len)] ^= (unsigned char)(1u << rnd(8));
            break;
        case 1: /* interesting byte */
        case 2:
            if (b->len) b->p[rnd(b->len)] = pick_byte();
            break;
        case 3: /* truncate */
            b->len = rnd(b->len + 1);
            break;
        case 4: /* extend */
            len = 1 + rnd(16);
            while (len-- && b->len < MAX_LEN) b->p[b->len++] = pick_byte();
            break;
        case 5: /* splice: overwrite with a chunk of the other input */
            if (other->len && b->len) {
                src = rnd(other->len);
                len = 1 + rnd(other->len - src);
                pos = rnd(b->len);
                if (len > b->len - pos) len = b->len - pos;
                memmove(b->p + pos, other->p + src, len);
            }
            break;
        case 6: /* insert a chunk of the other input */
            if (other->len) {
                src = rnd(other->len);
                len = 1 + rnd(other->len - src);
                if (len > MAX_LEN - b->len) len = MAX_LEN - b->len;
                memmove(b->p + pos + len, b->p + pos, b->len - pos);
                memcpy(b->p + pos, other->p + src, len);
                b->len += len;
            }
            break;
        case 7: /* delete a range */
            if (pos < b->len) {
                len = 1 + rnd(b->len - pos);
                memmove(b->p + pos, b->p + pos + len, b->len - pos - len);
                b->len -= len;
            }
            break;
        default: /* duplicate a chunk of itself */
            if (b->len && b->len < MAX_LEN) {
                src = rnd(b->len);
                len = 1 + rnd(b->len - src);
                if (len > 64) len = 64;
                if (len > MAX_LEN - b->len) len = MAX_LEN - b->len;
                memmove(b->p + pos + len, b->p + pos, b->len - pos);
                memmove(b->p + pos, b->p + (src < pos ? src : src + len), len);
                b->len += len;
            }
            break;
        }
    }
}

/* A fresh mutable copy of seed with MAX_LEN bytes of room, mutated. */
static buf mutated(const buf *seed, const buf *other)
{
    buf b;
    b.p = (unsigned char *)malloc(MAX_LEN);
    b.len = seed->len < MAX_LEN ? seed->len : MAX_LEN;
    memcpy(b.p, seed->p, b.len);
    mutate(&b, other);
    return b;
}

/* ---- the checks ---- */

static volatile unsigned sink;

static int err_ok(int rc, const char *err, const char *name)
{
    return rc < 0 && rc >= MIO_ERR_UNSUPPORTED && err[0] != '\0' && strlen(err) < MIO_ERR_SIZE &&
           (!name || strncmp(err, name, strlen(name)) == 0);
}

/* Parse b (from an exact-size copy) as JSON; on success walk every node. */
static int run_json(const buf *b, const char *name, char *err)
{
    mio_json_doc doc;
    buf exact = copy_of(b->p, b->len);
    int rc = mio_json_parse(&doc, exact.p, exact.len, name, err, MIO_ERR_SIZE), ok;
    if (rc == MIO_OK) {
        size_t i;
        ok = doc.n_nodes > 0 && err[0] == '\0';
        for (i = 0; i < doc.n_nodes && ok; i++) {
            const mio_json *v = &doc.nodes[i], *c;
            size_t k = 0;
            ok = v->type >= MIO_JSON_NULL && v->type <= MIO_JSON_OBJECT && v->offset < exact.len &&
                 (v->next == 0 || i + v->next < doc.n_nodes);
            if (v->type == MIO_JSON_STRING) ok = ok && v->str[v->str_len] == '\0';
            if (v->key) ok = ok && v->key[v->key_len] == '\0';
            for (c = mio_json_child(v); c && ok; c = mio_json_next(c)) {
                ok = (v->type == MIO_JSON_OBJECT) == (c->key != NULL);
                k++;
            }
            ok = ok && k == mio_json_len(v);
            if (v->type == MIO_JSON_STRING && v->str_len) sink += (unsigned char)v->str[v->str_len - 1];
        }
    } else {
        ok = err_ok(rc, err, name) && rc != MIO_ERR_ARG && doc.nodes == NULL;
    }
    mio_json_free(&doc);
    free(exact.p);
    return ok;
}

static int run_st(const buf *b, const char *name, char *err)
{
    mio_safetensors st;
    buf exact = copy_of(b->p, b->len);
    int rc = mio_safetensors_open_mem(&st, exact.p, exact.len, name, err, MIO_ERR_SIZE), ok;
    if (rc == MIO_OK) {
        size_t i, j;
        ok = err[0] == '\0';
        for (i = 0; i < st.n_tensors && ok; i++) {
            const mio_tensor *t = &st.tensors[i];
            const unsigned char *d = (const unsigned char *)t->data;
            uint64_t bits = (uint64_t)t->nelem * (uint64_t)mio_dtype_bits(t->dtype);
            ok = d >= exact.p && (size_t)(d - exact.p) <= exact.len && t->nbytes <= exact.len - (size_t)(d - exact.p) &&
                 bits / 8 == t->nbytes && t->rank >= 0 && t->rank <= MIO_MAX_RANK &&
                 mio_safetensors_find(&st, t->name) == t;
            for (j = 0; j < t->nbytes && ok; j++) sink += d[j];
        }
    } else {
        ok = err_ok(rc, err, name) && st.tensors == NULL;
    }
    mio_safetensors_close(&st);
    free(exact.p);
    return ok;
}

static int run_npy(const buf *b, const char *name, char *err)
{
    float *y = NULL;
    size_t r = 0, c = 0;
    buf exact = copy_of(b->p, b->len);
    int rc = mio_npy_read_mem(exact.p, exact.len, name, &y, &r, &c, err, MIO_ERR_SIZE), ok;
    if (rc == MIO_OK) {
        size_t i;
        ok = y != NULL && err[0] == '\0';
        for (i = 0; i < r * c && ok; i++) sink += (unsigned)(y[i] != y[i]);
    } else {
        ok = err_ok(rc, err, name) && y == NULL;
    }
    free(y);
    free(exact.p);
    return ok;
}

static void fuzz_json(void)
{
    char err[MIO_ERR_SIZE];
    buf seeds[3];
    size_t it, n_ok = 0;
    seeds[0] = copy_of(seed_config, strlen(seed_config));
    seeds[1] = copy_of(seed_index, strlen(seed_index));
    seeds[2] = copy_of(seed_st_header, strlen(seed_st_header));
    for (it = 0; it < 3; it++) report(run_json(&seeds[it], "seed.json", err) && err[0] == '\0', "json seed", it, &seeds[it], err);
    for (it = 0; it < ITERS_JSON; it++) {
        buf b = mutated(&seeds[rnd(3)], &seeds[rnd(3)]);
        int ok = run_json(&b, "fuzz.json", err);
        report(ok, "json", it, &b, err);
        n_ok += err[0] == '\0';
        free(b.p);
    }
    printf("json: %d iterations, %zu parsed, %zu rejected\n", ITERS_JSON, n_ok, (size_t)ITERS_JSON - n_ok);
    for (it = 0; it < 3; it++) free(seeds[it].p);
}

static void fuzz_safetensors(void)
{
    char err[MIO_ERR_SIZE];
    buf seed = make_st(seed_st_header, strlen(seed_st_header), SEED_ST_DATA);
    buf hdr = copy_of(seed_st_header, strlen(seed_st_header));
    size_t it, n_ok = 0;
    report(run_st(&seed, "seed.safetensors", err) && err[0] == '\0', "safetensors seed", 0, &seed, err);
    for (it = 0; it < ITERS_ST; it++) {
        buf b;
        size_t mode = rnd(4);
        if (mode == 0) { /* raw bytes */
            b = mutated(&seed, &hdr);
        } else if (mode == 3) { /* only the length field */
            static const uint64_t lens[] = {0, 1, 2, 7, 8, 0xffffffffULL, 0xffffffffffffffffULL, 0x8000000000000000ULL,
                                            100000001ULL};
            size_t j;
            uint64_t v = rng() & 1 ? lens[rnd(sizeof lens / sizeof lens[0])] : strlen(seed_st_header) + rnd(80) - 40;
            b = copy_of(seed.p, seed.len);
            for (j = 0; j < 8; j++) b.p[j] = (unsigned char)(v >> (8 * j));
        } else { /* the header text, with a consistent length and a data section of varying size */
            buf h = mutated(&hdr, &hdr);
            size_t data = SEED_ST_DATA;
            if (mode == 2) data = rnd(SEED_ST_DATA + 16);
            b = make_st((const char *)h.p, h.len, data);
            free(h.p);
        }
        report(run_st(&b, "fuzz.safetensors", err), "safetensors", it, &b, err);
        n_ok += err[0] == '\0';
        free(b.p);
    }
    printf("safetensors: %d iterations, %zu opened, %zu rejected\n", ITERS_ST, n_ok, (size_t)ITERS_ST - n_ok);
    free(seed.p);
    free(hdr.p);
}

static void fuzz_npy(void)
{
    char err[MIO_ERR_SIZE];
    buf seeds[2], dict = copy_of(seed_npy_dict, strlen(seed_npy_dict));
    size_t it, n_ok = 0;
    seeds[0] = make_npy(1, seed_npy_dict, strlen(seed_npy_dict), 48);
    seeds[1] = make_npy(2, seed_npy_dict, strlen(seed_npy_dict), 48);
    for (it = 0; it < 2; it++) report(run_npy(&seeds[it], "seed.npy", err) && err[0] == '\0', "npy seed", it, &seeds[it], err);
    for (it = 0; it < ITERS_NPY; it++) {
        buf b;
        if (rng() & 1) {
            b = mutated(&seeds[rnd(2)], &dict);
        } else {
            buf h = mutated(&dict, &dict);
            b = make_npy(1 + (int)rnd(2), (const char *)h.p, h.len, rng() & 1 ? 48 : rnd(64));
            free(h.p);
        }
        report(run_npy(&b, "fuzz.npy", err), "npy", it, &b, err);
        n_ok += err[0] == '\0';
        free(b.p);
    }
    printf("npy: %d iterations, %zu read, %zu rejected\n", ITERS_NPY, n_ok, (size_t)ITERS_NPY - n_ok);
    free(seeds[0].p);
    free(seeds[1].p);
    free(dict.p);
}

/* ---- regression corpus: every file must be rejected cleanly, from memory and from disk ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void run_corpus(void)
{
    DIR *d = opendir(CORPUS_DIR);
    struct dirent *e;
    char path[512], err[MIO_ERR_SIZE];
    int files = 0;
    if (!d) {
        report(0, "corpus: cannot open " CORPUS_DIR " (run from the repository root)", 0, NULL, NULL);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        FILE *f;
        buf b;
        long n;
        int rc, ok;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        b.len = (size_t)n;
        b.p = (unsigned char *)malloc(b.len ? b.len : 1);
        if (fread(b.p, 1, b.len, f) != b.len) b.len = 0;
        fclose(f);
        files++;
        if (ends_with(e->d_name, ".json")) {
            mio_json_doc doc;
            ok = run_json(&b, e->d_name, err) && err[0] != '\0';
            rc = mio_json_parse_file(&doc, path, err, sizeof err);
            ok = ok && err_ok(rc, err, path);
            mio_json_free(&doc);
        } else if (ends_with(e->d_name, ".safetensors")) {
            mio_safetensors st;
            ok = run_st(&b, e->d_name, err) && err[0] != '\0';
            rc = mio_safetensors_open(&st, path, err, sizeof err);
            ok = ok && err_ok(rc, err, path);
            mio_safetensors_close(&st);
        } else if (ends_with(e->d_name, ".npy")) {
            float *y = NULL;
            size_t r, c;
            ok = run_npy(&b, e->d_name, err) && err[0] != '\0';
            rc = mio_npy_read(path, &y, &r, &c, err, sizeof err);
            ok = ok && err_ok(rc, err, path) && y == NULL;
        } else {
            files--;
            free(b.p);
            continue;
        }
        if (!ok) printf("FAIL corpus %s: not rejected cleanly: \"%s\"\n", e->d_name, err);
        else n_pass++;
        n_fail += !ok;
        free(b.p);
    }
    closedir(d);
    printf("corpus: %d files\n", files);
    report(files >= 20, "corpus: fewer than 20 files in " CORPUS_DIR, 0, NULL, NULL);
}

int main(void)
{
    fuzz_json();
    fuzz_safetensors();
    fuzz_npy();
    run_corpus();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
