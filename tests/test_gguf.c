/* test_gguf.c - the GGUF reader and the MoE layer of a GGUF model (examples/moe_gguf.h), on the
   files tests/gen_gguf.py writes (run from the repository root):
   1. every fixture of tests/gguf/ opened three ways (MIO_READ, MIO_MAP, memory): the header,
      every metadata entry (type and value; arrays by count and a hash of their elements, through
      the iterator) and every tensor info against the generator's manifest; tensor bytes read with
      pread equal the mapped ones;
   2. the typed getters, the iterator over nested arrays and every value type, their errors;
   3. each fixture's moe_config equals the one examples/hf_config.h makes from the HF
      config.json the file stands for, field by field;
   4. every file of tests/corpus/gguf/ fails, at open or at planning, with the words
      tests/corpus/gguf/expected.txt gives, every message its own; a header over MGG_MAX_HEADER;
      the memory an open takes (moe_io.h's allocator is counted here) for the headers that cost
      the most per byte, at most 8 times their size;
   5. end to end: mgg_plan_layer -> moe_layer_create -> moe_forward against the float64
      references, experts exactly, y and the weights within 1e-5 of max(1, max|ref|) (the test_cli.sh
      bound: the stored weights are exact, the error is fp32 rounding) where the layer computes on
      fp32 activations, 5e-2 where it packs as q8 or q4 (int8 activations: tests/test_accuracy.c
      measures 2.1e-2 for q8), once with the format moe.h picks and once forced to f32; the read
      and the mapped file give the same bytes; on_packed releases the sources.
      A layer whose block types moe.h does not load yet (moe_layer_create says MOE_E_DTYPE)
      prints "skipped: moe.h does not load <types> yet" and counts as skipped, not failed.
   Last line: "N passed, M failed". */
#define _DEFAULT_SOURCE 1
#define MGG_MAX_HEADER ((size_t)16 << 20) /* small, so that section 4 can reach it */
#include <stddef.h>
static void *t_malloc(size_t n);
static void *t_realloc(void *q, size_t n);
static void t_free(void *q);
#define MIO_MALLOC(sz) t_malloc(sz) /* counted: the reader's memory is bounded by its input */
#define MIO_REALLOC(p, sz) t_realloc(p, sz)
#define MIO_FREE(p) t_free(p)
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "hf_config.h"
#define MOE_GGUF_IMPLEMENTATION
#include "moe_gguf.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define FIXTURES "tests/gguf"
#define CORPUS "tests/corpus/gguf"

static int n_skip;

/* live and peak bytes moe_io.h and moe_gguf.h hold; a realloc counts old and new at once */
static size_t g_live, g_peak;
static void *t_malloc(size_t n) {
    size_t *h = (size_t *)malloc(n + 16);
    if (!h) return NULL;
    h[0] = n;
    g_live += n;
    if (g_live > g_peak) g_peak = g_live;
    return (char *)h + 16;
}
static void *t_realloc(void *q, size_t n) {
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
static void t_free(void *q) {
    if (!q) return;
    size_t *h = (size_t *)(void *)((char *)q - 16);
    g_live -= h[0];
    free(h);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *b;
    long n;
    *len = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (char *)malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

/* the encoded bytes of an iterated element: a string's length and an array's header precede p */
static const unsigned char *elem_start(const mgg_value *e) {
    return e->p - (e->type == MGG_STRING ? 8 : e->type == MGG_ARRAY ? 12 : 0);
}

/* ---- 1. fixtures against their manifests ---- */

static void check_manifest(const mgg_file *g, const char *man, const char *what) {
    char *text = strdup(man), *save = NULL, *line;
    size_t kv_i = 0, t_i = 0;
    int bad = n_fail;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[8] = {0}, *s2 = NULL, *tok;
        int nf = 0;
        /* split on tabs, keeping empty fields (an empty string value) */
        for (tok = line; nf < 8; nf++) {
            f[nf] = tok;
            s2 = strchr(tok, '\t');
            if (!s2) { nf++; break; }
            *s2 = 0;
            tok = s2 + 1;
        }
        if (!strcmp(f[0], "info")) {
            unsigned long long v = strtoull(f[2], NULL, 10);
            if (!strcmp(f[1], "version")) CHECK_INT(g->version, v);
            if (!strcmp(f[1], "alignment")) CHECK_INT(g->alignment, v);
            if (!strcmp(f[1], "data_start")) CHECK_INT(g->data_start, v);
            if (!strcmp(f[1], "n_kv")) CHECK_INT(g->n_kv, v);
            if (!strcmp(f[1], "n_tensors")) CHECK_INT(g->n_tensors, v);
            if (!strcmp(f[1], "header")) CHECK_INT(g->hdr_len, v);
        } else if (!strcmp(f[0], "kv") && nf >= 4) {
            const mgg_kv *kv = kv_i < g->n_kv ? &g->kv[kv_i] : NULL;
            kv_i++;
            CHECK_MSG(kv && !strcmp(kv->key, f[1]) && mgg_find(g, f[1]) == kv, "%s: entry %zu is not '%s'", what, kv_i - 1, f[1]);
            if (!kv) continue;
            CHECK_MSG(!strcmp(mgg_value_type_name(kv->v.type), f[2]), "%s: '%s' has type %s, manifest %s", what, f[1],
                      mgg_value_type_name(kv->v.type), f[2]);
            if (!strcmp(f[2], "string")) {
                CHECK_MSG(kv->v.len == strlen(f[3]) && !memcmp(kv->v.p, f[3], kv->v.len) && kv->v.p[kv->v.len] == 0,
                          "%s: '%s' = \"%s\", manifest \"%s\"", what, f[1], (const char *)kv->v.p, f[3]);
            } else if (!strcmp(f[2], "array")) {
                mgg_iter it;
                mgg_value e;
                uint64_t h = 0xCBF29CE484222325ULL, n = 0;
                CHECK(!strcmp(mgg_value_type_name(kv->v.elem_type), f[3]));
                mgg_iter_init(&it, &kv->v);
                while (mgg_iter_next(&it, &e)) {
                    h = fnv(h, elem_start(&e), e.size);
                    n++;
                }
                CHECK_INT(n, strtoull(f[4], NULL, 10));
                CHECK_INT(kv->v.len, n);
                CHECK_MSG(h == strtoull(f[5], NULL, 16), "%s: '%s': elements hash %016llx, manifest %s", what, f[1],
                          (unsigned long long)h, f[5]);
            } else if (!strcmp(f[2], "float32") || !strcmp(f[2], "float64")) {
                double v = 0;
                CHECK(mgg_value_f64(&kv->v, &v) == MIO_OK && v == strtod(f[3], NULL));
            } else if (!strcmp(f[2], "uint64")) {
                CHECK_INT(mio__le64(kv->v.p) == strtoull(f[3], NULL, 10), 1);
            } else {
                int64_t v = 0;
                CHECK(mgg_value_i64(&kv->v, &v) == MIO_OK || kv->v.type == MGG_BOOL);
                if (kv->v.type == MGG_BOOL) v = kv->v.p[0];
                CHECK_MSG(v == strtoll(f[3], NULL, 10), "%s: '%s' = %lld, manifest %s", what, f[1], (long long)v, f[3]);
            }
        } else if (!strcmp(f[0], "tensor") && nf >= 7) {
            const mgg_tensor *t = t_i < g->n_tensors ? &g->tensors[t_i] : NULL;
            char ne[96];
            size_t at = 0;
            t_i++;
            CHECK_MSG(t && !strcmp(t->t.name, f[1]) && mgg_find_tensor(g, f[1]) == t, "%s: tensor %zu is not '%s'", what, t_i - 1, f[1]);
            if (!t) continue;
            for (int k = 0; k < t->n_dims; k++) at += (size_t)snprintf(ne + at, sizeof ne - at, "%s%lld", k ? "," : "", (long long)t->ne[k]);
            if (!t->n_dims) ne[0] = 0;
            CHECK_INT(t->type, atoi(f[2]));
            CHECK_INT(t->n_dims, atoi(f[3]));
            CHECK_MSG(!strcmp(ne, f[4]), "%s: '%s' ne %s, manifest %s", what, f[1], ne, f[4]);
            CHECK_INT(t->rel_offset, strtoull(f[5], NULL, 10));
            CHECK_INT(t->t.nbytes, strtoull(f[6], NULL, 10));
            CHECK_INT(t->t.offset, g->data_start + t->rel_offset);
            CHECK_INT(t->t.rank, t->n_dims);
            for (int k = 0; k < t->n_dims; k++) CHECK_INT(t->t.shape[k], t->ne[t->n_dims - 1 - k]);
        }
    }
    CHECK_INT(kv_i, g->n_kv);
    CHECK_INT(t_i, g->n_tensors);
    if (n_fail > bad) printf("  (%s)\n", what);
    free(text);
}

static void fixtures(void) {
    char path[256], man_path[256], err[MIO_ERR_SIZE], line[256];
    FILE *cases = fopen(FIXTURES "/cases.txt", "r");
    int n = 0;
    CHECK_MSG(cases != NULL, "cannot open " FIXTURES "/cases.txt (run from the repository root)");
    if (!cases) return;
    while (fgets(line, sizeof line, cases)) {
        char name[64];
        size_t ml, fl;
        char *man, *file;
        mgg_file gr, gm, gx;
        if (line[0] == '#' || sscanf(line, "%63s", name) != 1) continue;
        n++;
        snprintf(path, sizeof path, FIXTURES "/%s.gguf", name);
        snprintf(man_path, sizeof man_path, FIXTURES "/%s.manifest", name);
        man = slurp(man_path, &ml);
        file = slurp(path, &fl);
        CHECK_MSG(man && file, "%s: missing fixture files", name);
        if (!man || !file) continue;
        CHECK_MSG(mgg_open(&gr, path, MIO_READ, err, sizeof err) == MIO_OK && !err[0], "%s (read): %s", name, err);
        CHECK_MSG(mgg_open(&gm, path, MIO_MAP, err, sizeof err) == MIO_OK, "%s (map): %s", name, err);
        CHECK_MSG(mgg_open_mem(&gx, file, fl, name, err, sizeof err) == MIO_OK, "%s (memory): %s", name, err);
        check_manifest(&gr, man, path);
        check_manifest(&gm, man, path);
        check_manifest(&gx, man, path);
        for (size_t i = 0; i < gr.n_tensors && i < gm.n_tensors; i++) {
            const mgg_tensor *tr = &gr.tensors[i], *tm = &gm.tensors[i];
            CHECK(tr->t.data == NULL && tm->t.data == gm.base + tm->t.offset && gx.tensors[i].t.data == (void *)(file + tm->t.offset));
            CHECK(mgg_load(&gr, tr, err, sizeof err) == MIO_OK && tr->t.data && tr->t.mapped);
            CHECK(tr->t.data && !memcmp(tr->t.data, tm->t.data, tm->t.nbytes));
        }
        mgg_close(&gr);
        mgg_close(&gm);
        mgg_close(&gx);
        free(man);
        free(file);
    }
    fclose(cases);
    CHECK_MSG(n >= 9, "only %d fixtures in " FIXTURES "/cases.txt", n);
}

/* ---- 2. getters and iterators ---- */

static void getters(void) {
    char err[MIO_ERR_SIZE];
    mgg_file g;
    int64_t i;
    double f;
    int b;
    const char *s;
    mgg_iter it, in;
    mgg_value e, x;
    if (mgg_open(&g, FIXTURES "/llama_legacy_f32.gguf", MIO_MAP, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    CHECK(mgg_get_i64(&g, "test.u8", &i, err, sizeof err) == MIO_OK && i == 200 && !err[0]);
    CHECK(mgg_get_i64(&g, "test.i8", &i, err, sizeof err) == MIO_OK && i == -100);
    CHECK(mgg_get_i64(&g, "test.u16", &i, err, sizeof err) == MIO_OK && i == 60000);
    CHECK(mgg_get_i64(&g, "test.i16", &i, err, sizeof err) == MIO_OK && i == -30000);
    CHECK(mgg_get_i64(&g, "test.u32", &i, err, sizeof err) == MIO_OK && i == 4000000000LL);
    CHECK(mgg_get_i64(&g, "test.i32", &i, err, sizeof err) == MIO_OK && i == -2000000000LL);
    CHECK(mgg_get_i64(&g, "test.i64", &i, err, sizeof err) == MIO_OK && i == INT64_MIN);
    CHECK(mgg_get_i64(&g, "test.u64", &i, err, sizeof err) == MIO_ERR_TYPE && strstr(err, "18446744073709551615 is out of range"));
    CHECK(mgg_get_i64(&g, "test.f32", &i, err, sizeof err) == MIO_ERR_TYPE &&
          strstr(err, "metadata 'test.f32' is a float32, expected an integer"));
    CHECK(mgg_get_f64(&g, "test.f32", &f, err, sizeof err) == MIO_OK && f == (double)0.1f);
    CHECK(mgg_get_f64(&g, "test.f64", &f, err, sizeof err) == MIO_OK && f == -2.5e-300);
    CHECK(mgg_get_f64(&g, "test.u32", &f, err, sizeof err) == MIO_OK && f == 4e9);
    CHECK(mgg_get_f64(&g, "test.str", &f, err, sizeof err) == MIO_ERR_TYPE && strstr(err, "is a string, expected a number"));
    CHECK(mgg_get_bool(&g, "test.bool_true", &b, err, sizeof err) == MIO_OK && b == 1);
    CHECK(mgg_get_bool(&g, "test.bool_false", &b, err, sizeof err) == MIO_OK && b == 0);
    CHECK(mgg_get_bool(&g, "test.u8", &b, err, sizeof err) == MIO_ERR_TYPE && strstr(err, "is a uint8, expected a bool"));
    CHECK(mgg_get_str(&g, "test.str", &s, err, sizeof err) == MIO_OK && !strcmp(s, "hello, GGUF"));
    CHECK(mgg_get_str(&g, "test.empty_str", &s, err, sizeof err) == MIO_OK && !strcmp(s, ""));
    CHECK(mgg_get_str(&g, "test.nested", &s, err, sizeof err) == MIO_ERR_TYPE && strstr(err, "is an array, expected a string"));
    i = 7;
    CHECK(mgg_get_i64(&g, "no.such.key", &i, err, sizeof err) == MIO_ERR_NOT_FOUND && i == 7 && strstr(err, "no metadata 'no.such.key'"));
    CHECK(mgg_find(&g, "no.such.key") == NULL && mgg_find_tensor(&g, "blk.0.ffn_gate_exps.weight") == NULL);
    /* [["a", "bc"], [], ["def"]] */
    mgg_iter_init(&it, &mgg_find(&g, "test.nested")->v);
    {
        static const char *const want[3][2] = {{"a", "bc"}, {NULL, NULL}, {"d\xc3\xa9" "f", NULL}};
        int k = 0;
        while (mgg_iter_next(&it, &e)) {
            int j = 0;
            CHECK(e.type == MGG_ARRAY && e.elem_type == MGG_STRING && k < 3);
            mgg_iter_init(&in, &e);
            while (mgg_iter_next(&in, &x)) {
                CHECK(k < 3 && j < 2 && want[k][j] && x.type == MGG_STRING && x.len == strlen(want[k][j]) &&
                      !memcmp(x.p, want[k][j], x.len));
                j++;
            }
            CHECK(k < 3 && (j == 2 ? want[k][1] != NULL : j == 1 ? want[k][0] && !want[k][1] : !want[k][0]));
            k++;
        }
        CHECK_INT(k, 3);
    }
    /* [[1, -2, 3], [4, 5, -6]] as int16 */
    {
        static const int want[6] = {1, -2, 3, 4, 5, -6};
        int k = 0;
        mgg_iter_init(&it, &mgg_find(&g, "test.matrix")->v);
        while (mgg_iter_next(&it, &e)) {
            mgg_iter_init(&in, &e);
            while (mgg_iter_next(&in, &x)) CHECK(x.type == MGG_INT16 && mgg_value_i64(&x, &i) == MIO_OK && k < 6 && i == want[k++]);
        }
        CHECK_INT(k, 6);
    }
    {
        int k = 0, bits = 0;
        mgg_iter_init(&it, &mgg_find(&g, "test.bools")->v);
        while (mgg_iter_next(&it, &e)) bits |= e.p[0] << k++;
        CHECK(k == 3 && bits == 5);
        mgg_iter_init(&it, &mgg_find(&g, "test.empty")->v);
        CHECK(mgg_iter_next(&it, &e) == 0);
        mgg_iter_init(&it, &mgg_find(&g, "test.u8")->v); /* not an array: no elements */
        CHECK(mgg_iter_next(&it, &e) == 0);
    }
    CHECK(!strcmp(mgg_type_name(12), "Q4_K") && !strcmp(mgg_type_name(39), "MXFP4") && !strcmp(mgg_type_name(42), "?"));
    CHECK(mgg_type_block(12) == 256 && mgg_type_size(12) == 144 && mgg_type_block(31) == 0 && mgg_type_size(-1) == 0);
    mgg_close(&g);

    /* the tokenizer arrays of the qwen2moe fixture */
    if (mgg_open(&g, FIXTURES "/qwen2moe_q4_0.gguf", MIO_READ, err, sizeof err) == MIO_OK) {
        const mgg_kv *tk = mgg_find(&g, "tokenizer.ggml.tokens"), *sc = mgg_find(&g, "tokenizer.ggml.scores");
        int k = 0;
        CHECK(tk && tk->v.type == MGG_ARRAY && tk->v.elem_type == MGG_STRING && tk->v.len == 10);
        CHECK(sc && sc->v.elem_type == MGG_FLOAT32 && sc->v.len == 10);
        if (tk && sc) {
            mgg_iter_init(&it, &tk->v);
            mgg_iter_init(&in, &sc->v);
            while (mgg_iter_next(&it, &e) && mgg_iter_next(&in, &x)) {
                if (k == 7) CHECK(e.len == 6 && !memcmp(e.p, "\xe4\xbd\xa0\xe5\xa5\xbd", 6));
                if (k == 2) CHECK(e.len == 4 && !memcmp(e.p, "</s>", 4));
                CHECK(mgg_value_f64(&x, &f) == MIO_OK && f == -0.25 * k);
                k++;
            }
            CHECK_INT(k, 10);
        }
        mgg_close(&g);
    } else {
        CHECK_MSG(0, "%s", err);
    }
}

/* ---- 3. the moe_config against hf_config.h's ---- */

static void same_config(const moe_config *a, const moe_config *b, const char *what) {
    int before = n_fail;
#define SAME(f) CHECK_MSG(a->f == b->f, "%s: %s: gguf %g, config.json %g", what, #f, (double)a->f, (double)b->f)
    SAME(d_model); SAME(d_ff); SAME(n_experts); SAME(top_k); SAME(n_shared); SAME(d_shared);
    SAME(shared_gate); SAME(score); SAME(router_bias); SAME(select_bias); SAME(n_group); SAME(topk_group);
    SAME(group_score); SAME(norm); SAME(norm_eps); SAME(norm_p); SAME(scale); SAME(jitter_eps);
    SAME(capacity); SAME(drop); SAME(weight_on_input); SAME(ffn); SAME(act); SAME(act_alpha);
    SAME(act_limit); SAME(expert_bias); SAME(format); SAME(shared_format); SAME(dot);
    SAME(expert_begin); SAME(expert_count); SAME(pool_threads); SAME(logit_softcap); SAME(group_fill);
    SAME(scale_on_sum); SAME(shared_combine); SAME(shared_act_limit); SAME(n_zero_experts);
    SAME(output_bias); SAME(out_norm); SAME(out_norm_eps); SAME(d_latent); SAME(router_in_norm);
    SAME(expert_in_norm); SAME(in_norm_eps); SAME(expert_scale); SAME(shared_router);
#undef SAME
    CHECK(a->parallel_for == b->parallel_for && a->pool == b->pool);
    if (n_fail > before) printf("  (%s)\n", what);
}

static void hf_equal(const char *name, const mgg_layer *L) {
    char path[256], err[1024], layer[24];
    mio_json_doc doc;
    hf_plan plan;
    snprintf(path, sizeof path, FIXTURES "/%s.config.json", name);
    snprintf(layer, sizeof layer, "%lld", (long long)L->layer);
    if (mio_json_parse_file(&doc, path, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    if (hf_plan_layer(&plan, mio_json_root(&doc), layer, err, sizeof err) == 0) {
        n_pass++;
        same_config(&L->cfg, &plan.cfg, name);
    } else {
        CHECK_MSG(0, "%s: hf_plan_layer: %s", name, err);
    }
    mio_json_free(&doc);
}

/* ---- 4. the corpus of malformed files and bad layers ---- */

#define MAX_MSGS 128
static char msgs[MAX_MSGS][MIO_ERR_SIZE];
static int n_msgs;

/* the message without its "PATH: " prefix */
static const char *body(const char *err, const char *prefix) {
    size_t n = strlen(prefix);
    return !strncmp(err, prefix, n) && !strncmp(err + n, ": ", 2) ? err + n + 2 : NULL;
}

static void corpus(void) {
    char line[1024], path[1100], err[MIO_ERR_SIZE], err2[MIO_ERR_SIZE];
    FILE *ex = fopen(CORPUS "/expected.txt", "r");
    int listed = 0, files = 0;
    CHECK_MSG(ex != NULL, "cannot open " CORPUS "/expected.txt");
    if (!ex) return;
    while (fgets(line, sizeof line, ex)) {
        char *name = line, *lay, *words, *nl;
        size_t len;
        char *buf;
        mgg_file g;
        mgg_layer L;
        int rc, rc2, ok;
        const char *b1, *b2;
        if (line[0] == '#' || !(lay = strchr(line, '\t')) || !(words = strchr(lay + 1, '\t'))) continue;
        *lay++ = 0, *words++ = 0;
        if ((nl = strchr(words, '\n'))) *nl = 0;
        listed++;
        snprintf(path, sizeof path, CORPUS "/%s", name);
        buf = slurp(path, &len);
        CHECK_MSG(buf != NULL, "cannot read %s", path);
        if (!buf) continue;
        /* an exact-size copy, so a read past the end is an ASan error */
        {
            char *exact = (char *)malloc(len ? len : 1);
            memcpy(exact, buf, len);
            free(buf);
            buf = exact;
        }
        if (!strcmp(lay, "-")) {
            rc = mgg_open(&g, path, MIO_READ, err, sizeof err);
            rc2 = mgg_open_mem(&g, buf, len, name, err2, sizeof err2);
        } else {
            long long layer = strtoll(lay, NULL, 10);
            rc = mgg_open(&g, path, MIO_READ, err, sizeof err);
            CHECK_MSG(rc == MIO_OK, "%s must open: %s", name, err);
            if (!rc) rc = mgg_plan_layer(&g, layer, &L, err, sizeof err);
            mgg_close(&g);
            rc2 = mgg_open_mem(&g, buf, len, name, err2, sizeof err2);
            CHECK_MSG(rc2 == MIO_OK, "%s must open from memory: %s", name, err2);
            if (!rc2) rc2 = mgg_plan_layer(&g, layer, &L, err2, sizeof err2);
            CHECK(L.n_used == 0 && L.per_expert[0] == NULL); /* a failed plan leaves nothing */
        }
        mgg_close(&g);
        b1 = body(err, path);
        b2 = body(err2, name);
        ok = rc < 0 && rc >= MIO_ERR_UNSUPPORTED && rc2 == rc && b1 && b2 && !strcmp(b1, b2) && strstr(b1, words);
        CHECK_MSG(ok, "%s: rc %d/%d, message \"%s\" / \"%s\", expected \"%s\"", name, rc, rc2, err, err2, words);
        if (b1 && n_msgs < MAX_MSGS) {
            for (int i = 0; i < n_msgs; i++) CHECK_MSG(strcmp(msgs[i], b1), "%s gives the message of another file: %s", name, b1);
            snprintf(msgs[n_msgs++], MIO_ERR_SIZE, "%s", b1);
        }
        free(buf);
    }
    fclose(ex);
    {
        /* every file is listed */
        DIR *d = opendir(CORPUS);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name);
            files += n > 5 && !strcmp(e->d_name + n - 5, ".gguf");
        }
        if (d) closedir(d);
        CHECK_MSG(files == listed, "%d files in " CORPUS ", %d listed", files, listed);
    }
    CHECK_MSG(listed >= 60, "only %d corpus files", listed);
}

/* A header past MGG_MAX_HEADER (16 MiB here): a 16 MiB + 1 string (the string limit is 16 MiB,
   the header's other 45 bytes go over), from memory and from a file. */
static void header_limit(void) {
    size_t n = (size_t)16 << 20, len = 24 + 8 + 1 + 4 + 8 + n;
    unsigned char *b = (unsigned char *)calloc(1, len);
    char err[MIO_ERR_SIZE], path[] = "/tmp/moe_gguf_big_XXXXXX";
    mgg_file g;
    int fd;
    memcpy(b, "GGUF\3\0\0\0", 8);
    b[16] = 1;                          /* one metadata entry */
    b[24] = 1, b[32] = 's';             /* key "s" */
    b[33] = MGG_STRING;
    memcpy(b + 37, &n, 8);              /* little-endian hosts only, as the rest of the tests */
    CHECK(mgg_open_mem(&g, b, len, "big", err, sizeof err) == MIO_ERR_FORMAT && strstr(err, "larger than the limit of 16777216"));
    mgg_close(&g);
    fd = mkstemp(path);
    if (fd >= 0) {
        CHECK(write(fd, b, len) == (ssize_t)len);
        close(fd);
        CHECK(mgg_open(&g, path, MIO_READ, err, sizeof err) == MIO_ERR_FORMAT && strstr(err, "larger than the limit of 16777216"));
        mgg_close(&g);
        /* just under the limit it opens, the read buffer grown from 64 KiB in steps */
        n = ((size_t)16 << 20) - 64;
        memcpy(b + 37, &n, 8);
        fd = open(path, O_WRONLY | O_TRUNC);
        CHECK(fd >= 0 && write(fd, b, 45 + n) == (ssize_t)(45 + n));
        if (fd >= 0) close(fd);
        CHECK(mgg_open(&g, path, MIO_READ, err, sizeof err) == MIO_OK && g.n_kv == 1 && g.kv[0].v.len == n);
        mgg_close(&g);
        unlink(path);
    }
    free(b);
}

/* Memory at open against the header's size, for the headers that cost the most per byte: tensor
   infos of 0 dimensions (a scalar, its 4 bytes at its own offset) with 3-byte names (27 bytes
   each; names must differ, so 3 bytes is the least for 200k of them) and metadata entries of a
   3-byte key and a uint8 (16 bytes). */
static void name3(unsigned char *d, size_t i) {
    d[0] = (unsigned char)(1 + i % 255), d[1] = (unsigned char)(1 + i / 255 % 255), d[2] = (unsigned char)(1 + i / 65025);
}

static void memory_bound(void) {
    enum { N = 200000 };
    size_t cap = 24 + (size_t)N * 27 + 32 + (size_t)N * 32, len = 24, i, peak_t, peak_k, base, len_t;
    unsigned char *b = (unsigned char *)calloc(1, cap);
    char err[MIO_ERR_SIZE];
    mgg_file g;
    uint64_t n = N, three = 3;
    memcpy(b, "GGUF\3\0\0\0", 8);
    memcpy(b + 8, &n, 8); /* N tensors: name, n_dims 0, type F32, offset 0 */
    for (i = 0; i < N; i++, len += 27) {
        uint64_t off = (uint64_t)i * 32;
        memcpy(b + len, &three, 8);
        name3(b + len + 8, i);
        memset(b + len + 11, 0, 8);
        memcpy(b + len + 19, &off, 8);
    }
    len_t = len; /* the header; the data section follows, 32 bytes a tensor */
    g_peak = base = g_live;
    CHECK_MSG(mgg_open_mem(&g, b, (len + 31) / 32 * 32 + (size_t)N * 32, "tensors", err, sizeof err) == MIO_OK && g.n_tensors == N,
              "%s", err);
    peak_t = g_peak - base;
    mgg_close(&g);
    memset(b + 8, 0, 8);
    memcpy(b + 16, &n, 8); /* N metadata entries */
    for (i = 0, len = 24; i < N; i++, len += 16) {
        memcpy(b + len, &three, 8);
        name3(b + len + 8, i);
        memset(b + len + 11, 0, 4); /* MGG_UINT8 */
        b[len + 15] = 1;
    }
    g_peak = base = g_live;
    CHECK_MSG(mgg_open_mem(&g, b, len, "kvs", err, sizeof err) == MIO_OK && g.n_kv == N, "%s", err);
    peak_k = g_peak - base;
    mgg_close(&g);
    printf("memory at open: %.1fx the header for %d tensor infos, %.1fx for %d metadata entries\n",
           (double)peak_t / (double)len_t, N, (double)peak_k / (double)len, N);
    CHECK_MSG(peak_t <= 8 * len_t && peak_k <= 8 * len, "peaks %zu and %zu bytes", peak_t, peak_k);
    free(b);
}

/* ---- 5. end to end ---- */

static double tol_of(moe_format f) { return f == MOE_FORMAT_Q8 || f == MOE_FORMAT_Q4 ? 5e-2 : 1e-5; }

static const char *format_name(moe_format f) {
    static const char *const n[] = {"auto", "f32", "bf16", "f16", "q8", "q4", "fp8", "mxfp4"};
    return (unsigned)f < sizeof n / sizeof *n ? n[f] : "?";
}

typedef struct ref {
    float *x;
    double *y, *e, *w;
    size_t T, d, k;
} ref;

/* runs the layer on the reference input; fills y (T x d): 1 if created, 0 if skipped */
static int run(const char *what, const char *blocks, const moe_config *cfg, const moe_weights *w, const ref *R,
               float *y, int32_t *ex, float *wt, moe_format *fmt) {
    moe_layer *layer = NULL;
    char msg[512];
    moe_result r = moe_layer_create_msg(&layer, cfg, w, msg, sizeof msg);
    size_t bytes = 0;
    if (r == MOE_E_DTYPE && strcmp(blocks, "-")) {
        char list[64];
        size_t i;
        snprintf(list, sizeof list, "%s", blocks);
        for (i = 0; list[i]; i++)
            if (list[i] == ',') list[i] = '/';
        printf("skipped: moe.h does not load %s yet (%s: %s)\n", list, what, msg);
        n_skip++;
        return 0;
    }
    CHECK_MSG(r == MOE_OK, "%s: moe_layer_create: %s (%s)", what, moe_result_string(r), msg);
    if (r) return 0;
    moe_workspace ws = {0};
    moe_trace tr = {0};
    CHECK(moe_workspace_size(layer, R->T, &bytes) == MOE_OK);
    ws.data = malloc(bytes ? bytes : 1), ws.size = bytes;
    tr.expert = ex, tr.weight = wt;
    CHECK_MSG((r = moe_forward(layer, R->x, R->T, y, &ws, &tr)) == MOE_OK, "%s: moe_forward: %s", what, moe_result_string(r));
    *fmt = moe_layer_config(layer)->format;
    if (cfg->n_shared && tol_of(moe_layer_config(layer)->shared_format) > tol_of(*fmt)) *fmt = moe_layer_config(layer)->shared_format;
    free(ws.data);
    moe_layer_free(layer);
    return 1;
}

static void compare(const char *what, const ref *R, const float *y, const int32_t *ex, const float *wt, moe_format fmt) {
    double my = 1, ey = 0, mw = 1, ew = 0, tol = tol_of(fmt);
    size_t bad_e = 0;
    for (size_t i = 0; i < R->T * R->d; i++) {
        my = fmax(my, fabs(R->y[i]));
        ey = fmax(ey, fabs((double)y[i] - R->y[i]));
    }
    for (size_t i = 0; i < R->T * R->k; i++) {
        mw = fmax(mw, fabs(R->w[i]));
        ew = fmax(ew, fabs((double)wt[i] - R->w[i]));
        bad_e += ex[i] != (int32_t)R->e[i];
    }
    CHECK_MSG(bad_e == 0, "%s: %zu experts differ from the reference", what, bad_e);
    CHECK_MSG(ey <= tol * my, "%s (%s): max |y - ref| = %.3g, over %.1g x %.3g", what, format_name(fmt), ey, tol, my);
    CHECK_MSG(ew <= 1e-5 * mw, "%s: max |w - ref| = %.3g", what, ew);
    printf("ok    %-30s %-5s Y %.2e W %.2e E exact\n", what, format_name(fmt), ey / my, ew / mw);
}

static void end_to_end(void) {
    char line[256];
    FILE *cases = fopen(FIXTURES "/cases.txt", "r");
    if (!cases) return;
    while (fgets(line, sizeof line, cases)) {
        char name[64], blocks[64], path[256], err[MIO_ERR_SIZE], what[96];
        long long layer;
        mgg_file g, gm;
        mgg_layer L, Lm;
        ref R = {0};
        size_t r1, c1;
        float *y, *y2, *wt;
        int32_t *ex;
        moe_format fmt = MOE_FORMAT_AUTO;
        if (line[0] == '#' || sscanf(line, "%63s %lld %63s", name, &layer, blocks) != 3) continue;
        snprintf(path, sizeof path, FIXTURES "/%s.gguf", name);
        if (mgg_open(&g, path, MIO_READ, err, sizeof err) || mgg_plan_layer(&g, layer, &L, err, sizeof err)) {
            CHECK_MSG(0, "%s", err);
            mgg_close(&g);
            continue;
        }
        n_pass++;
        CHECK_MSG(moe_config_check(&L.cfg) == MOE_OK, "%s: moe_config_check: %s", name, moe_result_string(moe_config_check(&L.cfg)));
        CHECK(!strcmp(L.arch, mgg_find(&g, "general.architecture") ? (const char *)mgg_find(&g, "general.architecture")->v.p : ""));
        hf_equal(name, &L);
        /* the plan of every other block of the file fails with a message (not an MoE block) */
        for (long long b = 0; b < 3; b++) {
            mgg_layer X;
            if (b == layer) continue;
            CHECK_MSG(mgg_plan_layer(&g, b, &X, err, sizeof err) != MIO_OK && err[0], "%s: block %lld planned", name, b);
        }
#define NPY(field, suf, fn)                                                                            \
    snprintf(path, sizeof path, FIXTURES "/%s." suf ".npy", name);                                          \
    CHECK_MSG(fn(path, &R.field, &r1, &c1, err, sizeof err) == MIO_OK, "%s", err);
        NPY(x, "x", mio_npy_read)
        R.T = r1, R.d = c1;
        NPY(y, "y", mio_npy_read_f64)
        NPY(e, "e", mio_npy_read_f64)
        R.k = c1;
        NPY(w, "w", mio_npy_read_f64)
#undef NPY
        CHECK(R.x && R.y && R.e && R.w && R.d == (size_t)L.cfg.d_model && R.k == (size_t)L.cfg.top_k);
        if (!(R.x && R.y && R.e && R.w)) goto next;
        y = (float *)malloc(R.T * R.d * sizeof(float));
        y2 = (float *)malloc(R.T * R.d * sizeof(float));
        wt = (float *)malloc(R.T * R.k * sizeof(float));
        ex = (int32_t *)malloc(R.T * R.k * sizeof(int32_t));
        snprintf(what, sizeof what, "%s layer %lld", name, layer);
        if (run(what, blocks, &L.cfg, &L.w, &R, y, ex, wt, &fmt)) {
            moe_config c32 = L.cfg;
            compare(what, &R, y, ex, wt, fmt);
            /* the mapped file gives the bytes of the read one */
            snprintf(path, sizeof path, FIXTURES "/%s.gguf", name);
            if (mgg_open(&gm, path, MIO_MAP, err, sizeof err) == MIO_OK && mgg_plan_layer(&gm, layer, &Lm, err, sizeof err) == MIO_OK) {
                moe_format f2;
                if (run(what, blocks, &Lm.cfg, &Lm.w, &R, y2, ex, wt, &f2))
                    CHECK_MSG(!memcmp(y, y2, R.T * R.d * sizeof(float)), "%s: mapped and read files differ", what);
                mgg_layer_free(&Lm);
            } else {
                CHECK_MSG(0, "%s", err);
            }
            mgg_close(&gm);
            /* forced to f32: the block formats dequantized, exact */
            c32.format = c32.shared_format = MOE_FORMAT_F32;
            snprintf(what, sizeof what, "%s layer %lld, format f32", name, layer);
            if (run(what, blocks, &c32, &L.w, &R, y2, ex, wt, &fmt)) compare(what, &R, y2, ex, wt, fmt);
            /* on_packed drops the read copies' pages as they are packed (last: it zeroes them) */
            L.w.on_packed = mgg_on_packed, L.w.user = &L;
            if (run(what, blocks, &L.cfg, &L.w, &R, y2, ex, wt, &fmt)) {
                size_t total = 0;
                for (int i = 0; i < L.n_used; i++) total += L.used[i]->t.nbytes;
                CHECK_MSG(L.released > total / 2 && L.released <= total, "%s: on_packed released %zu of %zu bytes", name,
                          L.released, total);
            }
        }
        free(y);
        free(y2);
        free(wt);
        free(ex);
    next:
        MIO_FREE(R.x);
        MIO_FREE(R.y);
        MIO_FREE(R.e);
        MIO_FREE(R.w);
        mgg_layer_free(&L);
        mgg_close(&g);
    }
    fclose(cases);
}

/* mgg_is_gguf: a GGUF file yes; a directory, a JSON file, a file shorter than the magic, a
   missing path and NULL no */
static void is_gguf(void) {
    char tmp[] = "/tmp/moe_is_gguf_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "GGU", 3) == 3);
        close(fd);
    }
    CHECK(mgg_is_gguf("tests/gguf/qwen3moe_q8_0.gguf") == 1);
    CHECK(mgg_is_gguf("tests/gguf") == 0);
    CHECK(mgg_is_gguf("tests/gguf/qwen3moe_q8_0.config.json") == 0);
    CHECK(mgg_is_gguf(tmp) == 0);
    CHECK(mgg_is_gguf("tests/gguf/no_such.gguf") == 0);
    CHECK(mgg_is_gguf(NULL) == 0);
    unlink(tmp);
}

int main(void) {
    (void)hf_bind; (void)hf_unbind; /* only hf_plan_layer's config is compared here */
    fixtures();
    getters();
    corpus();
    header_limit();
    memory_bound();
    end_to_end();
    is_gguf();
    if (n_skip) printf("skipped: %d runs of layers with block types moe.h does not load yet\n", n_skip);
    return check_summary();
}
