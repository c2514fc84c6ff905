/* test_kernels.c - the fast kernels of moe.h against their scalar reference twins.

   Linear parts (the fma chains of phase 1, the router / phase 2 GEMM, the combine) must be
   bit-identical to the reference on every shape: K not a multiple of the vector width, output
   counts not a multiple of the panel width, 1..40 rows, indexed rows, with and without bias.
   Activations use a vector exp; their error is measured here against double precision over a
   wide range (saturation, overflow to inf, underflow to 0, no NaN for finite input), and the
   bound the header states is checked. Last, whole layers: fast path vs the use_ref path.

   In a MOE_NO_SIMD build the fast kernels are the reference, so the comparisons are trivial but
   still run (the layer test then checks use_ref plumbing).

   Build: cc -std=c99 -O2 -march=native -I. tests/test_kernels.c -o test_kernels -lm */
#define MOE__KC 1024 /* K chunks of a few steps, so that every GEMM shape here resumes chains */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static size_t urand(size_t n) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (size_t)(rng_state >> 33) % n;
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}

/* first index where a and b differ in bits, or -1 */
static long bitdiff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) return (long)i;
    return -1;
}

/* ---- packed test matrices ----------------------------------------------------------------- */

/* A matrix of n_out outputs over K inputs (gated: gate and up halves) packed as `kind` from a
   random fp32 source, as moe_layer_create packs one expert. */
typedef struct tmat {
    moe__mat M;
    float *src[2]; /* [n_out][K]: gate (or the only half), up */
    void *mem;
} tmat;

static void tmat_make(tmat *t, int kind, size_t n_out, size_t K, int gated, float scale) {
    size_t bytes = 0;
    moe__part pt = {0, 1, n_out};
    moe__mat_init(&t->M, kind, n_out, K, gated ? 2 * MOE__NR : MOE__NR, 1, &bytes);
    t->mem = malloc(bytes + 64);
    t->M.data = (unsigned char *)t->mem + (64 - (uintptr_t)t->mem % 64) % 64;
    memset(t->M.data, 0xA5, bytes); /* the packer must write every byte, padding included */
    for (int h = 0; h < 2; h++) {
        t->src[h] = (float *)malloc(n_out * K * sizeof(float));
        fill(t->src[h], n_out * K, scale);
    }
    moe__pack_mat(&t->M, 0, 0, t->src[0], MOE_F32, MOE_OUT_IN, pt);
    if (gated) moe__pack_mat(&t->M, 0, MOE__NR, t->src[1], MOE_F32, MOE_OUT_IN, pt);
}

static void tmat_free(tmat *t) { free(t->mem), free(t->src[0]), free(t->src[1]); }

static float flush(float f) { return fabsf(f) < FLT_MIN ? copysignf(0.0f, f) : f; }

/* bf16 of f, rounded to nearest even, from double arithmetic (independent of moe.h's bit
   tricks), denormals flushed: the activation rounding of the bf16 dot. */
static float to_bf16_daz(float f) {
    if (f != f || fabsf(f) < FLT_MIN) return f != f ? f : copysignf(0.0f, f);
    int e;
    frexp(f, &e);                        /* |f| in [2^(e-1), 2^e): bf16 has 8 significant bits */
    double q = ldexp(1.0, e - 8), r = (double)f / q, n = nearbyint(r); /* ties to even */
    return (float)(n * q);
}

/* The chain of lane l of panel p against fp32 row x, from the packed lanes, as the header
   defines it: exact kinds fmaf over k; the bf16 dot on bf16-rounded x with every step flushed,
   the padding pair included. */
static float chain(const moe__mat *M, size_t p, size_t l, const float *x) {
    const unsigned char *Wp = M->data + p * M->panel_bytes;
    float acc = 0.0f;
    if (M->kind == MOE__KBF16DOT) {
        for (size_t k = 0; k < 2 * M->ks; k++)
            acc = flush(fmaf(k < M->K ? to_bf16_daz(x[k]) : 0.0f, moe__lane(M, Wp, k, l), acc));
        return acc;
    }
    if (moe__kind_int(M->kind)) { /* x to int8 per group of 32 (d = amax / 127), exact sums */
        for (size_t g = 0; g < M->ks; g++) {
            float amax = 0.0f, d, id;
            int32_t isum = 0;
            for (size_t k = g * 32; k < g * 32 + 32 && k < M->K; k++)
                amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
            d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            for (size_t k = g * 32; k < g * 32 + 32 && k < M->K; k++) {
                /* moe.h's rule: x / d where 1 / d overflows (denormal groups) */
                long q = lrintf(id > FLT_MAX ? x[k] / d : x[k] * id);
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                isum += (int32_t)q * moe__qlane(M, Wp, k, l);
            }
            acc = fmaf((float)isum, moe__qscale(M, Wp, g, l) * d, acc);
        }
        return acc;
    }
    for (size_t k = 0; k < M->K; k++) acc = fmaf(x[k], moe__lane(M, Wp, k, l), acc);
    return acc;
}

/* The rows X (fp32, stride ldx floats) in the encoding kind's kernels read. */
static unsigned char *encode_rows(int kind, const float *X, size_t rows, size_t ldx, size_t K,
                                  size_t *rb) {
    int act = moe__kernels(kind, 0)->act;
    *rb = moe__act_row_bytes(act, K);
    unsigned char *a = (unsigned char *)malloc(rows * *rb);
    for (size_t i = 0; i < rows; i++) moe__act_encode(act, X + i * ldx, K, a + i * *rb);
    return a;
}

/* ---- linear parts: GEMM (router, phase 2) ------------------------------------------------- */

static void test_gemm(int kind, size_t K, size_t n_out, size_t m, int bias, int indexed) {
    size_t panels = (n_out + MOE__NR - 1) / MOE__NR, ldx = K + 3, ldy = n_out + 5;
    size_t nrow = m + 7; /* X and Y have spare rows so the index arrays can skip some */
    tmat t;
    tmat_make(&t, kind, n_out, K, 0, 1.0f);
    float *B = (float *)malloc(panels * MOE__NR * sizeof(float));
    float *X = (float *)malloc(nrow * ldx * sizeof(float));
    float *Y0 = (float *)malloc(nrow * ldy * sizeof(float)), *Y1 = (float *)malloc(nrow * ldy * sizeof(float));
    int32_t *xi = (int32_t *)malloc(m * sizeof(int32_t)), *yi = (int32_t *)malloc(m * sizeof(int32_t));
    fill(B, panels * MOE__NR, 1.0f);
    fill(X, nrow * ldx, 1.0f);
    for (size_t i = 0; i < nrow * ldy; i++) Y0[i] = Y1[i] = 1234.5f; /* untouched stays so */
    for (size_t i = 0; i < m; i++) {
        xi[i] = (int32_t)urand(nrow); /* repeats allowed */
        yi[i] = (int32_t)((i * 5 + 3) % nrow); /* distinct while m <= nrow (5 coprime-ish) */
    }
    if (nrow % 5 == 0)
        for (size_t i = 0; i < m; i++) yi[i] = (int32_t)i;
    size_t rb;
    unsigned char *Xa = encode_rows(kind, X, nrow, ldx, K, &rb);
    moe__rows R = moe__rows_make(Xa, rb, indexed ? xi : NULL, m, Y0, ldy, indexed ? yi : NULL);
    /* panels in two ranges, as the phase tasks split them */
    size_t mid = panels / 2;
    for (int pass = 0; pass < 2; pass++) {
        size_t p0 = pass ? mid : 0, p1 = pass ? panels : mid;
        R.y = Y0;
        moe__kernels(kind, 1)->gemm(&t.M, 0, bias ? B : NULL, &R, p0, p1);
        R.y = Y1;
        moe__kernels(kind, 0)->gemm(&t.M, 0, bias ? B : NULL, &R, p0, p1);
    }
    long at = bitdiff(Y0, Y1, nrow * ldy);
    CHECK_MSG(at < 0, "gemm %s K=%zu n_out=%zu m=%zu bias=%d idx=%d: first diff at %ld (%.9g vs %.9g)",
              moe__kernels(kind, 0)->name, K, n_out, m, bias, indexed, at, at < 0 ? 0.0 : Y0[at],
              at < 0 ? 0.0 : Y1[at]);
    /* and the reference is the plain chain of the packed lanes, bias after */
    int ok = 1;
    for (size_t i = 0; i < m && ok; i++) {
        const float *x = X + (indexed ? (size_t)xi[i] : i) * ldx;
        const float *y = Y0 + (indexed ? (size_t)yi[i] : i) * ldy;
        for (size_t o = 0; o < n_out && ok; o++) {
            float want = chain(&t.M, o / MOE__NR, o % MOE__NR, x);
            if (bias) want += B[o];
            ok = memcmp(&want, y + o, sizeof want) == 0;
        }
    }
    CHECK_MSG(ok, "gemm reference %s K=%zu n_out=%zu m=%zu: not the chain of the packed lanes",
              moe__kernels(kind, 1)->name, K, n_out, m);
    tmat_free(&t);
    free(B), free(X), free(Xa), free(Y0), free(Y1), free(xi), free(yi);
}

/* ---- phase 1: gate + up + activation ------------------------------------------------------ */

/* The exact pre-activation sums, as the reference chain computes them. */
static void preact(const moe__mat *M, const float *B, const float *x, size_t p, size_t l,
                   int gated, float *g, float *u) {
    size_t w = M->w;
    float a = chain(M, p, l, x), c = gated ? chain(M, p, MOE__NR + l, x) : 0.0f;
    if (B) a += B[p * w + l], c += gated ? B[p * w + MOE__NR + l] : 0.0f;
    if (gated) *g = a, *u = c;
    else *u = a;
}

static float act_fast(const moe__actp *a, int gated, float g, float u) {
#if MOE__SIMD
    float gv[MOE__VW], uv[MOE__VW], o[MOE__VW];
    for (int i = 0; i < MOE__VW; i++) gv[i] = g, uv[i] = u;
    moe__vst(o, gated ? moe__vact2(a, moe__vld(gv), moe__vld(uv)) : moe__vact1(a, moe__vld(uv)));
    return o[0];
#else
    return gated ? moe__act2(a, g, u) : moe__act1(a, u);
#endif
}

static double worst_act_vs_ref;

static void test_ffn1(int kind, size_t K, size_t ff, size_t m, int bias, int gated, moe_act act) {
    size_t panels = (ff + MOE__NR - 1) / MOE__NR, w = gated ? 2 * MOE__NR : MOE__NR;
    size_t ldx = K + 1, ldh = panels * MOE__NR + 2 * MOE__NR, nrow = m + 3;
    moe__actp ap;
    ap.act = act, ap.alpha = 1.702f, ap.limit = 7.0f;
    tmat t;
    tmat_make(&t, kind, ff, K, gated, 3.0f / sqrtf((float)K)); /* sums of a few units */
    float *B = (float *)malloc(panels * w * sizeof(float));
    float *X = (float *)malloc(nrow * ldx * sizeof(float));
    float *H0 = (float *)malloc(m * ldh * sizeof(float)), *H1 = (float *)malloc(m * ldh * sizeof(float));
    int32_t *xi = (int32_t *)malloc(m * sizeof(int32_t));
    fill(B, panels * w, 1.0f);
    fill(X, nrow * ldx, 1.0f);
    for (size_t i = 0; i < m * ldh; i++) H0[i] = H1[i] = -77.0f;
    for (size_t i = 0; i < m; i++) xi[i] = (int32_t)urand(nrow);
    size_t rb;
    unsigned char *Xa = encode_rows(kind, X, nrow, ldx, K, &rb);
    moe__rows R = moe__rows_make(Xa, rb, xi, m, H0, ldh, NULL);
    size_t mid = (panels + 1) / 2;
    for (int pass = 0; pass < 2; pass++) {
        size_t p0 = pass ? mid : 0, p1 = pass ? panels : mid;
        R.y = H0;
        moe__kernels(kind, 1)->ffn1(&ap, &t.M, 0, bias ? B : NULL, &R, p0, p1);
        R.y = H1;
        moe__kernels(kind, 0)->ffn1(&ap, &t.M, 0, bias ? B : NULL, &R, p0, p1);
    }
    /* every element: the fast result is exactly the vector activation of the exact chain sums
       (linear part bit-identical), and close to the scalar reference */
    int exact = 1;
    double worst = 0.0;
    for (size_t i = 0; i < m && exact; i++)
        for (size_t p = 0; p < panels; p++)
            for (size_t l = 0; l < MOE__NR; l++) {
                float g = 0.0f, u = 0.0f;
                preact(&t.M, bias ? B : NULL, X + (size_t)xi[i] * ldx, p, l, gated, &g, &u);
                float want = act_fast(&ap, gated, g, u), got = H1[i * ldh + p * MOE__NR + l];
                float ref = H0[i * ldh + p * MOE__NR + l];
                if (memcmp(&want, &got, sizeof got) != 0) {
                    exact = 0;
                    printf("  row %zu out %zu: %.9g vs %.9g\n", i, p * MOE__NR + l, want, got);
                    break;
                }
                double e = fabs((double)got - ref) / (fabs(ref) > 1.0 ? fabs(ref) : 1.0);
                worst = e > worst ? e : worst;
            }
    for (size_t i = 0; i < m; i++) /* nothing written past the panels */
        for (size_t c = panels * MOE__NR; c < ldh; c++) exact &= H1[i * ldh + c] == -77.0f;
    CHECK_MSG(exact, "ffn1 %s K=%zu ff=%zu m=%zu bias=%d gated=%d act=%d",
              moe__kernels(kind, 0)->name, K, ff, m, bias, gated, (int)act);
    /* vs the scalar reference (libm activations): absolute below 1, relative above. The
       reference's own error dominates: 0.5 z (1 + tanhf(u)) cancels for negative z (~1e-7
       absolute), which the vector GELUs avoid. */
    CHECK_MSG(worst < 1e-6, "ffn1 vs ref K=%zu ff=%zu m=%zu act=%d: worst %.3g", K, ff, m, (int)act, worst);
    if (worst > worst_act_vs_ref) worst_act_vs_ref = worst;
    tmat_free(&t);
    free(B), free(X), free(Xa), free(H0), free(H1), free(xi);
}

/* ---- combine ------------------------------------------------------------------------------- */

static void test_combine(size_t n, int k) {
    float *Z = (float *)malloc((size_t)k * n * sizeof(float)), wt[12], y0[300], y1[300];
    const float *zp[12];
    fill(Z, (size_t)k * n, 2.0f);
    for (int j = 0; j < k; j++) zp[j] = (j == 1 && k > 2) ? NULL : Z + (size_t)j * n, wt[j] = frand();
    moe__combine_ref(y0, n, zp, wt, k);
    moe__kernels(MOE__KF32, 0)->combine(y1, n, zp, wt, k);
    CHECK_MSG(bitdiff(y0, y1, n) < 0, "combine n=%zu k=%d", n, k);
    free(Z);
}

/* ---- activation accuracy ------------------------------------------------------------------ */
#if MOE__SIMD
/* One lane in, one lane out. */
static float v1(int which, float z) {
    float in[MOE__VW], o[MOE__VW];
    for (int i = 0; i < MOE__VW; i++) in[i] = z;
    moe__v v = moe__vld(in);
    switch (which) {
    case 0: v = moe__vexp(v); break;
    case 1: v = moe__vsigmoid(v); break;
    case 2: v = moe__vmul(v, moe__vsigmoid(v)); break;
    case 3: v = moe__vgelu_erf(v); break;
    default: v = moe__vgelu_tanh(v); break;
    }
    moe__vst(o, v);
    return o[0];
}

/* The function in double. Arguments formed in fp32 by the formula (as the scalar reference and
   PyTorch form them) are formed the same way here, so the error measured is the kernel's own. */
static double truth(int which, float z) {
    double d = z;
    switch (which) {
    case 0: return exp(d);
    case 1: return 1.0 / (1.0 + exp(-d));
    case 2: return d / (1.0 + exp(-d));
    case 3: return 0.5 * d * erfc(-d / sqrt(2.0));
    default: {
        float z3 = 0.044715f * z, s, u; /* one rounding a statement: no fma contraction */
        z3 = z3 * z;
        z3 = z3 * z;
        s = z + z3;
        u = 0.79788456080286536f * s;
        return d / (1.0 + exp(-2.0 * (double)u));
    }
    }
}

static void test_activations(void) {
    static const char *name[5] = {"exp", "sigmoid", "silu", "gelu_erf", "gelu_tanh"};
    /* Bounds stated in moe.h: relative error vs the exact function where |f| >= 1e-30, and
       absolute error <= bound * 1e-30 below (where fp32 itself runs out of bits, and where the
       scalar reference, e.g. 1 / (1 + expf(91)), returns 0 too). exp ~2 ulp; the others add a divide and, for the
       erf GELU, the 1.2e-7 of the erfc fit. */
    static const double bound[5] = {1.5e-7, 2.5e-7, 4e-7, 6e-7, 2.5e-7};
    for (int which = 0; which < 5; which++) {
        double worst = 0.0;
        float worst_z = 0.0f;
        int nan = 0, n = 0;
        float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-40f, 88.7f, 88.72f, 88.73f, 89.0f,
                           -87.3f, -88.7f, -103.0f, -104.0f, -110.0f, 1e10f, -1e10f, FLT_MAX,
                           -FLT_MAX, 20.0f, -20.0f, 0.5f, -0.5f};
        size_t ns = sizeof special / sizeof special[0];
        for (size_t i = 0; i < ns + 400001; i++) {
            float z = i < ns ? special[i] : -120.0f + 240.0f * (float)(i - ns) / 400000.0f;
            float y = v1(which, z);
            double t = truth(which, z);
            if (y != y) {
                nan++;
                continue;
            }
            if (fabs(t) > (double)FLT_MAX || isinf(y)) { /* beyond fp32: must be inf */
                if (y != (float)t) nan++;
                continue;
            }
            double e = fabs(y - t) / (fabs(t) > 1e-30 ? fabs(t) : 1e-30);
            if (e > worst) worst = e, worst_z = z;
            n++;
        }
        printf("  %-9s max rel error %.3g (%.2f x 2^-24) at z = %.7g, %d points\n", name[which],
               worst, worst / FLT_EPSILON * 2.0, worst_z, n);
        CHECK_MSG(nan == 0, "%s: %d NaN or wrong infinities", name[which], nan);
        CHECK_MSG(worst <= bound[which], "%s: %.3g > bound %.3g", name[which], worst, bound[which]);
    }
}
#endif

/* ---- whole layer: fast vs use_ref --------------------------------------------------------- */

static void test_layer1(const moe_config *c, size_t T) {
    size_t d = (size_t)c->d_model, ff = (size_t)c->d_ff, E = (size_t)c->n_experts;
    size_t S = (size_t)c->n_shared * (size_t)(c->d_shared ? c->d_shared : c->d_ff);
    int gated = c->ffn == MOE_FFN_GATED;
    float *router = (float *)malloc(E * d * sizeof(float));
    float *g = (float *)malloc(E * ff * d * sizeof(float)), *u = (float *)malloc(E * ff * d * sizeof(float));
    float *dn = (float *)malloc(E * d * ff * sizeof(float)), *sel = (float *)malloc(E * sizeof(float));
    float *sg = (float *)malloc((S + 1) * d * sizeof(float)), *su = (float *)malloc((S + 1) * d * sizeof(float));
    float *sd = (float *)malloc((S + 1) * d * sizeof(float));
    float *x = (float *)malloc(T * d * sizeof(float));
    float *y0 = (float *)malloc(T * d * sizeof(float)), *y1 = (float *)malloc(T * d * sizeof(float));
    fill(router, E * d, 1.0f), fill(g, E * ff * d, 2.0f / sqrtf((float)d));
    fill(u, E * ff * d, 2.0f / sqrtf((float)d)), fill(dn, E * d * ff, 1.0f / sqrtf((float)ff));
    fill(sel, E, 0.1f), fill(sg, (S + 1) * d, 2.0f / sqrtf((float)d));
    fill(su, (S + 1) * d, 2.0f / sqrtf((float)d)), fill(sd, (S + 1) * d, 1.0f);
    fill(x, T * d, 1.0f);
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = router, w.up.data = u, w.down.data = dn;
    if (gated) w.gate.data = g;
    if (c->select_bias) w.select_bias.data = sel;
    if (S) {
        w.shared_up.data = su, w.shared_down.data = sd;
        if (gated) w.shared_gate_proj.data = sg;
    }
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, c, &w);
    CHECK_MSG(r == MOE_OK, "layer create: %s", moe_result_string(r));
    if (r == MOE_OK) {
        size_t bytes;
        moe_workspace_size(L, T, &bytes);
        moe_workspace ws;
        ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
        moe__select_kernels(L, 1);
        r = moe_forward(L, x, T, y0, &ws, NULL);
        moe__select_kernels(L, 0);
        r = r == MOE_OK ? moe_forward(L, x, T, y1, &ws, NULL) : r;
        CHECK_MSG(r == MOE_OK, "forward: %s", moe_result_string(r));
        /* same experts (routing is bit-identical), activations within ~1e-6 relative: the
           output moves by that times the size of the terms, so compare to the output scale */
        double worst = 0.0, scale = 1e-3;
        for (size_t i = 0; i < T * d; i++) scale = fabs(y0[i]) > scale ? fabs(y0[i]) : scale;
        for (size_t i = 0; i < T * d; i++) {
            double e = fabs((double)y1[i] - y0[i]) / scale;
            worst = e > worst ? e : worst;
        }
        CHECK_MSG(worst < 1e-5, "layer d=%zu ff=%zu E=%zu act=%d format %d/%d dot %d T=%zu: worst %.3g",
                  d, ff, E, (int)c->act, (int)c->format, (int)c->shared_format, (int)c->dot, T, worst);
        if (c->act == MOE_ACT_RELU) /* no exp anywhere in the experts: exact */
            CHECK_MSG(bitdiff(y0, y1, T * d) < 0, "layer with ReLU: fast and reference differ");
        free(ws.data);
    }
    moe_layer_free(L);
    free(router), free(g), free(u), free(dn), free(sel), free(sg), free(su), free(sd), free(x);
    free(y0), free(y1);
}

/* every packed format and dot mode of the same layer */
static void test_layer(const moe_config *c, size_t T) {
    static const moe_format f[] = {MOE_FORMAT_F32, MOE_FORMAT_BF16, MOE_FORMAT_F16, MOE_FORMAT_BF16,
                                   MOE_FORMAT_Q8,  MOE_FORMAT_Q4,   MOE_FORMAT_FP8, MOE_FORMAT_MXFP4,
                                   MOE_FORMAT_F16};
    for (int v = 0; v < 9; v++) {
        moe_config cc = *c;
        cc.format = f[v], cc.shared_format = f[(v + 1) % 9];
        cc.dot = v == 3 ? MOE_DOT_BF16 : MOE_DOT_EXACT;
        test_layer1(&cc, T);
    }
}

/* moe__quant_group on a group of denormals, where 1 / d overflows (a fuzzer found x * inf:
   NaN for the zeros, a float-to-int8 conversion out of range under UBSan): d = amax / 127,
   q = nearest-even(x / d), finite, and the sum of the q */
static void test_quant_denormal(void) {
    float x[MOE__QG] = {0};
    unsigned char blk[MOE__QBLOCK];
    float d;
    int32_t sum;
    signed char q[MOE__QG];
    x[0] = 1.0e-39f, x[1] = -0.5e-39f, x[2] = 0.0f, x[3] = 0.25e-39f, x[4] = -1.0e-39f;
    moe__quant_group(x, 17, blk);
    memcpy(&d, blk, 4), memcpy(&sum, blk + 4, 4), memcpy(q, blk + 8, MOE__QG);
    CHECK(d == 1.0e-39f / 127.0f && d > 0.0f);
    int32_t want_sum = 0, ok = 1;
    for (int i = 0; i < MOE__QG; i++) {
        long want = i < 17 ? lrintf(x[i] / d) : 0;
        want = want > 127 ? 127 : want < -127 ? -127 : want;
        ok &= q[i] == want, want_sum += (int32_t)want;
    }
    CHECK(ok && q[0] == 127 && q[4] == -127 && q[2] == 0);
    CHECK(sum == want_sum);
}

int main(void) {
    static const size_t Ks[] = {1, 3, 7, 17, 33, 70};
    size_t nr = MOE__NR;
    size_t outs[] = {1, 5, nr, nr + 3, 3 * nr - 1};
    printf("moe.h kernels: %s, NR = %d\n",
           MOE__AVX512 ? "AVX-512" : MOE__AVX2 ? "AVX2+FMA" : MOE__NEON ? "NEON" : "scalar",
           MOE__NR);
    test_quant_denormal();

    for (int kind = 0; kind < MOE__KIND_COUNT; kind++) {
        /* GEMM: every row count 1..40 on one awkward shape, then a grid of shapes */
        for (size_t m = 1; m <= 40; m++)
            test_gemm(kind, 17, 2 * nr + 5, m, (int)(m & 1), (int)(m % 3 != 0));
        for (size_t m = 1; m <= 3; m++) test_gemm(kind, 9, 6 * nr + 5, m, 1, 1); /* 4-panel tiles */
        for (size_t m = 1; m <= 40; m += 13) test_gemm(kind, 300, nr + 1, m, 1, 1); /* K chunks */
        for (size_t a = 0; a < sizeof Ks / sizeof Ks[0]; a++)
            for (size_t b = 0; b < sizeof outs / sizeof outs[0]; b++) {
                static const size_t ms[] = {1, 2, 3, 5, 7, 13, 26};
                for (size_t c = 0; c < sizeof ms / sizeof ms[0]; c++)
                    test_gemm(kind, Ks[a], outs[b], ms[c], (int)((a + c) & 1), (int)((b + c) & 1));
            }

        /* phase 1: every row count on one shape per (gated, activation); then shapes */
        for (int gated = 0; gated < 2; gated++)
            for (int act = 0; act <= MOE_ACT_SILU_CLAMP; act++) {
                if (!gated && (act == MOE_ACT_SWIGLU_OAI || act == MOE_ACT_SWIGLU_CLAMP ||
                               act == MOE_ACT_SILU_CLAMP))
                    continue;
                for (size_t m = 1; m <= 40; m += (m < 14 ? 1 : 5))
                    test_ffn1(kind, 19, nr + 7, m, (int)(m & 1), gated, (moe_act)act);
                test_ffn1(kind, 11, 12 * nr - 3, 1, 1, gated, (moe_act)act); /* 4-panel tiles */
                test_ffn1(kind, 150, 2 * nr, 17, 1, gated, (moe_act)act);     /* K chunks */
                for (size_t a = 0; a < sizeof Ks / sizeof Ks[0]; a += 2)
                    for (size_t b = 0; b < sizeof outs / sizeof outs[0]; b += 2)
                        test_ffn1(kind, Ks[a], outs[b], 1 + (a + b) % 9, (int)(b & 1), gated,
                                  (moe_act)act);
            }
    }

    for (size_t n = 1; n < 200; n += 13)
        for (int k = 1; k <= 9; k += 4) test_combine(n, k);

#if MOE__SIMD
    printf("vector activations vs double precision:\n");
    test_activations();
#endif
    printf("phase 1 fast vs scalar reference (libm): worst relative difference %.3g\n",
           worst_act_vs_ref);

    /* whole layers */
    {
        moe_config c;
        memset(&c, 0, sizeof c);
        c.d_model = 45, c.d_ff = 37, c.n_experts = 8, c.top_k = 2, c.norm = MOE_NORM_SUM;
        test_layer(&c, 13);
        c.act = MOE_ACT_GELU_ERF, c.n_shared = 2, c.d_shared = 11;
        test_layer(&c, 29);
        memset(&c, 0, sizeof c);
        c.d_model = 64, c.d_ff = 48, c.n_experts = 16, c.top_k = 4, c.score = MOE_SCORE_SIGMOID;
        c.n_group = 4, c.topk_group = 2, c.group_score = MOE_GROUP_TOP2_SUM, c.select_bias = 1;
        c.norm = MOE_NORM_SUM, c.scale = 2.5f, c.n_shared = 1;
        test_layer(&c, 40);
        memset(&c, 0, sizeof c);
        c.d_model = 33, c.d_ff = 20, c.n_experts = 4, c.top_k = 1, c.ffn = MOE_FFN_PLAIN;
        c.act = MOE_ACT_RELU, c.capacity = 3;
        test_layer(&c, 17);
        c.ffn = MOE_FFN_GATED, c.act = MOE_ACT_SWIGLU_OAI, c.capacity = 0, c.top_k = 2;
        c.score = MOE_SCORE_SOFTMAX_TOPK;
        test_layer(&c, 9);
        c.act = MOE_ACT_GELU_TANH, c.weight_on_input = 1, c.score = MOE_SCORE_SIGMOID_TOPK;
        c.top_k = 1;
        test_layer(&c, 21);
    }

    return check_summary();
}
