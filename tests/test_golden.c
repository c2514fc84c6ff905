/* test_golden.c - every model family against a float64 PyTorch rendering of its published code.

   tests/gen_golden.py renders each family's Hugging Face MoE block (router, gating, top-k,
   renormalisation, scaling, experts, shared experts) in float64 and writes tiny cases to
   tests/golden/<case>.bin (listed in tests/golden/cases.txt): the case's config.json and
   --layer, the weights under their full Hub names and shapes (some bf16 / f16), x, and the
   reference y, experts, weights and router logits. This program maps the config.json with
   examples/hf_config.h - the very code `build/moe run --model DIR` runs, so the mapping users
   run is the mapping under test - binds the plan's tensors to the file's records with
   hf_bind(), runs moe_forward with a trace and checks, per case:

     - experts == experts_ref exactly, in slot order (the generator only keeps draws whose
       routing decisions all have margins > 1e-4 relative, far above fp32 rounding);
     - trace weights, router logits and y within the tolerance below; dropped slots (Switch
       capacity) have trace weight 0 and are counted in n_dropped;
     - determinism: the same batch with n_threads = 1, each token alone (tokens kept by
       capacity only), and the layer built from the other weight view (per_expert pointers
       instead of one fused buffer, or the reverse) all give bit-identical y; moe_route gives
       the same route as moe_forward.

   Grok-1 is the one case without a config.json (xai-org/grok-1 is JAX code, not a transformers
   family): grok1_setup() maps it by hand.

   TOLERANCE. The library computes in fp32 (weights widened exactly from bf16 / f16), the
   reference in float64 from the same stored values, so the difference is fp32 rounding alone.
   Each output is a few chained fp32 operations: dot products of length d or d_ff (<= 40), an
   activation, a softmax or sigmoid, at most 4 weighted slots plus a shared expert. With unit
   roundoff u = 6e-8, a length-n fp32 dot product has error <= n u sum|a_i b_i| (Higham 3.1;
   typically sqrt(n) u): for n = 40 that is 2.4e-6 of the output scale in the worst case and
   ~4e-7 typically. Measured over all cases the worst relative error max|y - y_ref| / max(1,
   max|y_ref|) is 3.7e-7 (dbrx_f16; weights and logits <= 3e-7; the test prints each case's).
   We allow TOL = 2e-6 of max(1, max|ref|): about the worst-case bound for the longest dot
   product, 5x the measured worst, and still ~50x below the smallest modelling error we could
   make (GELU erf vs tanh moves y by 1e-4; a wrong epsilon, renormalisation, clamp, scale, bias,
   split or layout by >= 1e-2). Kernels must therefore keep activations (exp, erf, tanh) within
   a few ulp; that is intended. The scale is max(1, max|ref|) over the whole tensor because the
   errors of near-zero outputs come from cancellation of O(max) terms.

   Run from the repository root (make test does): build/test_golden. Last line: "N passed,
   M failed"; exit status 1 on any failure. */
#define _DEFAULT_SOURCE 1 /* moe_io.h: madvise */
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "hf_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-6

#define MAX_CASES 256
#define CASE_LIST "tests/golden/cases.txt"

// ---- golden file reader -----------------------------------------------------------------------
// Format (little-endian): "MOEG", u32 version 1, then records: u32 name_len, name, u32 dtype
// (0 f32, 1 bf16, 2 f16, 3 i32, 4 f64, 5 text), u32 ndim, u32 dims[ndim], raw data.

enum { G_F32, G_BF16, G_F16, G_I32, G_F64, G_TEXT };
#define MAX_RECORDS 256
#define MAX_DIMS 4

typedef struct rec {
    char name[128];
    unsigned dtype, ndim, dims[MAX_DIMS];
    size_t count; /* elements */
    void *data;   /* own malloc: aligned for any element type */
} rec;

typedef struct golden {
    rec r[MAX_RECORDS];
    int n;
} golden;

static size_t elem_size(unsigned dt) {
    switch (dt) {
    case G_F32: case G_I32: return 4;
    case G_BF16: case G_F16: return 2;
    case G_F64: return 8;
    default: return 1;
    }
}

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void golden_free(golden *g) {
    for (int i = 0; i < g->n; i++) free(g->r[i].data);
    g->n = 0;
}

/* 0 on success; else prints why. */
static int golden_load(golden *g, const char *path) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;
    size_t at = 8;
    memset(g, 0, sizeof *g);
    if (!f) {
        printf("cannot open %s (run from the repository root; regenerate with "
               "/usr/bin/python3 tests/gen_golden.py)\n", path);
        return 1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 8 || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = (unsigned char *)malloc((size_t)len)) || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        printf("%s: cannot read\n", path);
        fclose(f);
        free(buf);
        return 1;
    }
    fclose(f);
    if (memcmp(buf, "MOEG", 4) != 0 || rd_u32(buf + 4) != 1) {
        printf("%s: not a version-1 golden file\n", path);
        free(buf);
        return 1;
    }
    while (at < (size_t)len) {
        rec *r = &g->r[g->n];
        uint32_t nl;
        if (g->n == MAX_RECORDS || at + 4 > (size_t)len) goto corrupt;
        nl = rd_u32(buf + at), at += 4;
        if (nl >= sizeof r->name || at + nl + 8 > (size_t)len) goto corrupt;
        memcpy(r->name, buf + at, nl), at += nl;
        r->dtype = rd_u32(buf + at), r->ndim = rd_u32(buf + at + 4), at += 8;
        if (r->dtype > G_TEXT || r->ndim > MAX_DIMS || at + 4 * r->ndim > (size_t)len) goto corrupt;
        r->count = 1;
        for (unsigned i = 0; i < r->ndim; i++) r->dims[i] = rd_u32(buf + at), at += 4, r->count *= r->dims[i];
        if (at + r->count * elem_size(r->dtype) > (size_t)len) goto corrupt;
        r->data = malloc(r->count * elem_size(r->dtype) + 1); /* +1: text gets a NUL */
        if (!r->data) goto corrupt;
        memcpy(r->data, buf + at, r->count * elem_size(r->dtype));
        if (r->dtype == G_TEXT) ((char *)r->data)[r->count] = 0;
        at += r->count * elem_size(r->dtype);
        g->n++;
    }
    free(buf);
    return 0;
corrupt:
    printf("%s: corrupt at byte %lu\n", path, (unsigned long)at);
    free(buf);
    golden_free(g);
    return 1;
}

static const rec *find(const golden *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->r[i].name, name) == 0) return &g->r[i];
    return NULL;
}

// ---- per-case context: missing names, the arena of views --------------------------------------

typedef struct ctx {
    const golden *g;
    char missing[160]; /* the first record a family asked for and did not find */
    void *owned[64];   /* per_expert pointer arrays and copies, freed after the case */
    int n_owned;
} ctx;

static void *ctx_alloc(ctx *c, size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (p && c->n_owned < (int)(sizeof c->owned / sizeof c->owned[0])) c->owned[c->n_owned++] = p;
    else free(p), p = NULL;
    return p;
}

static void ctx_free(ctx *c) {
    while (c->n_owned) free(c->owned[--c->n_owned]);
}

static const rec *need(ctx *c, const char *name) {
    const rec *r = find(c->g, name);
    if (!r && !c->missing[0]) {
        strncpy(c->missing, name, sizeof c->missing - 1);
        c->missing[sizeof c->missing - 1] = 0;
    }
    return r;
}

/* HF config field as a number (i32 or f64 record). */
static double cfg_num(ctx *c, const char *key) {
    char name[128];
    const rec *r;
    snprintf(name, sizeof name, "cfg.%s", key);
    r = need(c, name);
    if (!r) return 0.0;
    return r->dtype == G_I32 ? (double)*(const int32_t *)r->data : *(const double *)r->data;
}
static int cfg_int(ctx *c, const char *key) { return (int)cfg_num(c, key); }

static moe_dtype dtype_of(const rec *r) {
    return r->dtype == G_BF16 ? MOE_BF16 : r->dtype == G_F16 ? MOE_F16 : MOE_F32;
}

/* One tensor, all experts back to back (fused `data`), from record "w.<name>". */
static moe_tensor fused(ctx *c, const char *name, moe_layout layout) {
    char full[160];
    moe_tensor t;
    const rec *r;
    memset(&t, 0, sizeof t);
    snprintf(full, sizeof full, "w.%s", name);
    if ((r = need(c, full)) != NULL) t.data = r->data, t.dtype = dtype_of(r), t.layout = layout;
    return t;
}

// ---- the mapping: config.json through hf_config.h, tensors through hf_bind -------------------

/* hf_lookup over the golden records: "w.<name>". */
static int golden_lookup(void *user, const char *name, hf_found *out, char *err, size_t n) {
    char full[320];
    const rec *r;
    snprintf(full, sizeof full, "w.%s", name);
    if (!(r = find((const golden *)user, full))) return 1;
    if (r->dtype > G_F16) {
        snprintf(err, n, "record '%s' is not a weight (dtype %u)", full, r->dtype);
        return -1;
    }
    out->data = r->data, out->dtype = dtype_of(r), out->rank = (int)r->ndim;
    for (unsigned i = 0; i < r->ndim; i++) out->shape[i] = r->dims[i];
    return 0;
}

/* The case's config.json and --layer, mapped as the CLI maps them. 0 on success, else a message
   in err. */
static int hf_setup(const golden *g, hf_plan *plan, moe_weights *w, hf_bound *b, char *err,
                    size_t n) {
    const rec *cj = find(g, "config.json"), *layer = find(g, "layer");
    mio_json_doc doc;
    char e[MIO_ERR_SIZE];
    if (!cj || !layer || cj->dtype != G_TEXT || layer->dtype != G_TEXT) {
        snprintf(err, n, "no config.json or layer record");
        return -1;
    }
    if (mio_json_parse(&doc, cj->data, cj->count, "config.json", e, sizeof e)) {
        snprintf(err, n, "%s", e);
        return -1;
    }
    int r = hf_plan_layer(plan, mio_json_root(&doc), (const char *)layer->data, err, n);
    mio_json_free(&doc); /* the plan copies what it keeps */
    if (r) return -1;
    return hf_bind(plan, golden_lookup, (void *)g, w, b, err, n) ? -1 : 0;
}

/* xai-org/grok-1 model.py: softmax, top-2, no renormalisation; GeGLU with tanh GELU (jax.nn.gelu's
   default); JAX storage [in][out] for the router and every expert matrix. */
static int grok1_setup(ctx *c, moe_config *m, moe_weights *w) {
    memset(m, 0, sizeof *m);
    memset(w, 0, sizeof *w);
    m->d_model = cfg_int(c, "emb_size"), m->d_ff = cfg_int(c, "ffn_size");
    m->n_experts = cfg_int(c, "num_experts"), m->top_k = cfg_int(c, "num_selected_experts");
    m->score = MOE_SCORE_SOFTMAX, m->norm = MOE_NORM_NONE;
    m->act = MOE_ACT_GELU_TANH;
    w->router = fused(c, "router.w", MOE_IN_OUT);
    w->gate = fused(c, "moe.linear.w", MOE_IN_OUT);
    w->up = fused(c, "moe.linear_v.w", MOE_IN_OUT);
    w->down = fused(c, "moe.linear_1.w", MOE_IN_OUT);
    return !c->missing[0];
}

/* The other view of the routed-expert tensors: fused `data` becomes E `per_expert` pointers
   into it, and per_expert pointers become one contiguous copy. Same numbers, other code path;
   a stated size (hf_bind states them) follows the view: all experts' or one expert's. */
static int flip(ctx *c, moe_tensor *t, int E, size_t n_per_expert) {
    size_t bytes = n_per_expert * (t->dtype == MOE_F32 ? 4 : 2);
    if (t->data) {
        const void **p = (const void **)ctx_alloc(c, (size_t)E * sizeof *p);
        if (!p) return 0;
        for (int e = 0; e < E; e++) p[e] = (const char *)t->data + (size_t)e * bytes;
        t->data = NULL, t->per_expert = p;
        if (t->n_elems) t->n_elems = n_per_expert;
    } else if (t->per_expert) {
        char *d = (char *)ctx_alloc(c, (size_t)E * bytes);
        if (!d) return 0;
        for (int e = 0; e < E; e++) memcpy(d + (size_t)e * bytes, t->per_expert[e], bytes);
        t->per_expert = NULL, t->data = d;
        if (t->n_elems) t->n_elems = (size_t)E * n_per_expert;
    }
    return 1;
}

static int flip_all(ctx *c, const moe_config *m, moe_weights *w) {
    /* the experts' model width: d, or d_latent (Nemotron-H) */
    size_t d = (size_t)(m->d_latent ? m->d_latent : m->d_model), ff = (size_t)m->d_ff;
    int E = m->n_experts;
    return flip(c, &w->gate, E, ff * d) && flip(c, &w->up, E, ff * d) &&
           flip(c, &w->gate_up, E, 2 * ff * d) && flip(c, &w->down, E, d * ff) &&
           flip(c, &w->gate_bias, E, ff) && flip(c, &w->up_bias, E, ff) &&
           flip(c, &w->gate_up_bias, E, 2 * ff) && flip(c, &w->down_bias, E, d);
}

// ---- running and comparing --------------------------------------------------------------------

typedef struct errstat {
    double err, scale; /* max |got - ref|, max(1, max |ref|) */
    size_t at;         /* flat index of the worst element */
} errstat;

static errstat compare(const float *got, const double *ref, size_t n) {
    errstat s = {0.0, 1.0, 0};
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= s.err)) s.err = e, s.at = i; /* NaN counts as worst */
        if (fabs(ref[i]) > s.scale) s.scale = fabs(ref[i]);
    }
    return s;
}
static double rel(errstat s) { return s.err / s.scale; }

/* Runs the layer on tokens [t0, t0 + n) into y (rows t0..), with a trace when tr != NULL. */
static moe_result run(const moe_layer *L, const float *x, size_t t0, size_t n, float *y, void *ws,
                      size_t ws_size, int n_threads, moe_trace *tr) {
    moe_workspace w;
    size_t d = (size_t)moe_layer_config(L)->d_model;
    w.data = ws, w.size = ws_size, w.n_threads = n_threads;
    return moe_forward(L, x + t0 * d, n, y + t0 * d, &w, tr);
}

static int g_failed_checks;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("  FAIL %s: ", name);                                                       \
            printf(__VA_ARGS__);                                                               \
            printf("\n");                                                                      \
            g_failed_checks++;                                                                 \
        }                                                                                      \
    } while (0)

/* One case; returns 1 if it passed. */
static int run_case(const char *name) {
    char path[256];
    golden g;
    ctx c;
    moe_config m;
    moe_weights w;
    hf_plan plan;
    hf_bound bound;
    char err[1024];
    const char *model_type = "(no config.json)";
    moe_layer *L = NULL, *L2 = NULL;
    moe_result r;
    int before = g_failed_checks;
    float *y = NULL, *y1 = NULL, *ys = NULL, *y2 = NULL, *tw = NULL, *tl = NULL;
    int32_t *te = NULL;
    int64_t *tt = NULL;
    void *ws = NULL;
    size_t ws_size = 0;
    snprintf(path, sizeof path, "tests/golden/%s.bin", name);
    if (golden_load(&g, path) != 0) {
        printf("  FAIL %s: cannot load %s\n", name, path);
        return 0;
    }
    memset(&c, 0, sizeof c);
    memset(&bound, 0, sizeof bound);
    c.g = &g;

    const rec *fam = find(&g, "family"), *xr = find(&g, "x"), *yr = find(&g, "y_ref");
    const rec *er = find(&g, "experts_ref"), *wr = find(&g, "weights_ref");
    const rec *dr = find(&g, "dropped_ref"), *lr = find(&g, "logits_ref");
    if (!fam || !xr || !yr || !er || !wr || !dr || !lr || xr->ndim != 2 || er->ndim != 2 ||
        lr->ndim != 2) {
        printf("  FAIL %s: a reference record is missing or misshapen\n", name);
        golden_free(&g);
        return 0;
    }
    const char *family = (const char *)fam->data;
    size_t T = xr->dims[0], d = xr->dims[1], k = er->dims[1], E = lr->dims[1];
    const float *x = (const float *)xr->data;
    const double *y_ref = (const double *)yr->data, *w_ref = (const double *)wr->data;
    const double *l_ref = (const double *)lr->data;
    const int32_t *e_ref = (const int32_t *)er->data, *d_ref = (const int32_t *)dr->data;

    if (!strcmp(family, "grok1")) {
        CHECK(grok1_setup(&c, &m, &w), "grok1: %s not in the golden file", c.missing);
    } else if (hf_setup(&g, &plan, &w, &bound, err, sizeof err) == 0) {
        m = plan.cfg;
        model_type = plan.family;
    } else {
        CHECK(0, "hf_config.h: %s", err);
        goto done;
    }
    /* E: every router output, the zero-computation experts (LongCat-Flash) included */
    CHECK((size_t)m.d_model == d && (size_t)m.n_experts + (size_t)m.n_zero_experts == E &&
          (size_t)m.top_k == k,
          "config (d %d, E %d + %d, k %d) disagrees with the reference shapes (%zu, %zu, %zu)",
          m.d_model, m.n_experts, m.n_zero_experts, m.top_k, d, E, k);
    if (g_failed_checks != before) goto done;

    r = moe_layer_create(&L, &m, &w);
    CHECK(r == MOE_OK, "moe_layer_create: %s", moe_result_string(r));
    if (r != MOE_OK) goto done;
    r = moe_workspace_size(L, T, &ws_size);
    CHECK(r == MOE_OK, "moe_workspace_size: %s", moe_result_string(r));
    y = (float *)calloc(T * d, sizeof *y), y1 = (float *)calloc(T * d, sizeof *y1);
    ys = (float *)calloc(T * d, sizeof *ys), y2 = (float *)calloc(T * d, sizeof *y2);
    tw = (float *)calloc(T * k, sizeof *tw), tl = (float *)calloc(T * E, sizeof *tl);
    te = (int32_t *)calloc(T * k, sizeof *te), tt = (int64_t *)calloc(E, sizeof *tt);
    ws = malloc(ws_size);
    if (r != MOE_OK || !y || !y1 || !ys || !y2 || !tw || !tl || !te || !tt || !ws) {
        CHECK(0, "out of memory");
        goto done;
    }

    /* 1. the batch, all threads, with a trace */
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = te, tr.weight = tw, tr.logits = tl, tr.expert_tokens = tt;
    r = run(L, x, 0, T, y, ws, ws_size, 0, &tr);
    CHECK(r == MOE_OK, "moe_forward: %s", moe_result_string(r));
    if (r != MOE_OK) goto done;

    /* routing: exact experts in slot order, dropped slots, counts */
    size_t n_drop_ref = 0;
    int64_t counts[64] = {0};
    for (size_t i = 0; i < T * k; i++) {
        if (te[i] != e_ref[i]) {
            CHECK(0, "token %zu slot %zu: expert %d, reference %d", i / k, i % k, te[i], e_ref[i]);
            break;
        }
    }
    for (size_t i = 0; i < T * k; i++) {
        n_drop_ref += d_ref[i] != 0;
        if (!d_ref[i] && e_ref[i] >= 0 && (size_t)e_ref[i] < E && E <= 64) counts[e_ref[i]]++;
    }
    CHECK(tr.n_dropped == n_drop_ref, "n_dropped %zu, reference %zu", tr.n_dropped, n_drop_ref);
    for (size_t e = 0; e < E && E <= 64; e++)
        CHECK(tt[e] == counts[e], "expert_tokens[%zu] = %lld, reference %lld", e, (long long)tt[e],
              (long long)counts[e]);

    /* weights (a dropped slot reports 0), logits, y */
    double *w_exp = (double *)ctx_alloc(&c, T * k * sizeof *w_exp);
    if (!w_exp) { CHECK(0, "out of memory"); goto done; }
    for (size_t i = 0; i < T * k; i++) w_exp[i] = d_ref[i] ? 0.0 : w_ref[i];
    errstat sw = compare(tw, w_exp, T * k), sl = compare(tl, l_ref, T * E), sy = compare(y, y_ref, T * d);
    CHECK(rel(sw) <= TOL, "weight error %.3g at token %zu slot %zu: %.9g vs %.9g", rel(sw),
          sw.at / k, sw.at % k, (double)tw[sw.at], w_exp[sw.at]);
    CHECK(rel(sl) <= TOL, "logit error %.3g at token %zu expert %zu: %.9g vs %.9g", rel(sl),
          sl.at / E, sl.at % E, (double)tl[sl.at], l_ref[sl.at]);
    CHECK(rel(sy) <= TOL, "y error %.3g at token %zu column %zu: %.9g vs %.9g", rel(sy),
          sy.at / d, sy.at % d, (double)y[sy.at], y_ref[sy.at]);

    /* moe_route alone gives the same route as moe_forward */
    {
        moe_trace rt;
        moe_workspace wsp;
        int32_t *re = (int32_t *)ctx_alloc(&c, T * k * sizeof *re);
        float *rw = (float *)ctx_alloc(&c, T * k * sizeof *rw);
        memset(&rt, 0, sizeof rt);
        rt.expert = re, rt.weight = rw;
        wsp.data = ws, wsp.size = ws_size, wsp.n_threads = 0;
        r = re && rw ? moe_route(L, x, T, &wsp, &rt) : MOE_E_NOMEM;
        CHECK(r == MOE_OK && memcmp(re, te, T * k * sizeof *re) == 0 &&
              memcmp(rw, tw, T * k * sizeof *rw) == 0 && rt.n_dropped == tr.n_dropped,
              "moe_route's trace differs from moe_forward's");
    }

    /* 2. determinism: one thread; each token alone; the other weight view */
    r = run(L, x, 0, T, y1, ws, ws_size, 1, NULL);
    CHECK(r == MOE_OK && memcmp(y, y1, T * d * sizeof *y) == 0, "n_threads = 1 is not bit-identical");
    for (size_t t = 0; t < T; t++) {
        int dropped = 0;
        for (size_t j = 0; j < k; j++) dropped |= d_ref[t * k + j] != 0;
        r = run(L, x, t, 1, ys, ws, ws_size, 0, NULL);
        /* capacity is per call: a token dropped in the batch is kept alone, so skip it */
        if (!dropped)
            CHECK(r == MOE_OK && memcmp(y + t * d, ys + t * d, d * sizeof *y) == 0,
                  "token %zu alone is not bit-identical to the batch", t);
    }
    const char *view = w.down.per_expert ? "fused" : "per_expert"; /* the one we flip to */
    CHECK(flip_all(&c, &m, &w), "out of memory");
    r = moe_layer_create(&L2, &m, &w);
    CHECK(r == MOE_OK, "moe_layer_create (%s view): %s", view, moe_result_string(r));
    if (r == MOE_OK) {
        r = run(L2, x, 0, T, y2, ws, ws_size, 0, NULL);
        CHECK(r == MOE_OK && memcmp(y, y2, T * d * sizeof *y) == 0,
              "the layer built from the %s view is not bit-identical", view);
    }

    if (g_failed_checks == before)
        printf("  ok   %-22s %-22s T %2zu d %2zu E %2zu k %zu  rel err: y %.2e  w %.2e  logits %.2e\n",
               name, model_type, T, d, E, k, rel(sy), rel(sw), rel(sl));
done:
    moe_layer_free(L);
    moe_layer_free(L2);
    free(y), free(y1), free(ys), free(y2), free(tw), free(tl), free(te), free(tt), free(ws);
    ctx_free(&c);
    hf_unbind(&bound);
    golden_free(&g);
    return g_failed_checks == before;
}

int main(void) {
    int pass = 0, fail = 0, n = 0;
    static char cases[MAX_CASES][64];
    char line[256];
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        printf("the golden files are little-endian; this host is not\n0 passed, 1 failed\n");
        return 1;
    }
    FILE *f = fopen(CASE_LIST, "r");
    if (!f) {
        printf("cannot open %s (run from the repository root)\n0 passed, 1 failed\n", CASE_LIST);
        return 1;
    }
    while (n < MAX_CASES && fgets(line, sizeof line, f))
        if (line[0] != '#' && sscanf(line, "%63s", cases[n]) == 1) n++;
    fclose(f);
    printf("golden cases (tolerance %.0e of max(1, max|ref|)):\n", TOL);
    for (int i = 0; i < n; i++) {
        if (run_case(cases[i])) pass++;
        else fail++;
    }
    if (n == 0) fail++;
    printf("%d passed, %d failed\n", pass, fail);
    return fail != 0;
}
