/* test_formats.c - the packed weight formats (moe_config.format, shared_format, dot).

   - Conversions: f16 -> f32 for all 65536 values (scalar and vector loads), bf16 -> f32 the
     same, f32 -> bf16 and f32 -> f16 round to nearest even against a double-precision rounding
     (and against the F16C instruction where the build has it), on edge cases and random bits.
   - Exact mode: a layer packed as bf16 (f16) gives the bits of the f32-packed layer built from
     the same stored values, for every layout, fused and per-expert sources, biases, shared
     experts, 1 to 64 tokens; a set packed independently of the other.
   - MOE_FORMAT_AUTO picks the sources' precision; the packed size follows the format.
   - The bf16 dot: every kernel path equals the scalar reference of the arithmetic the header
     defines (test_kernels.c checks the kernels; here whole layers), and its error against the
     exact layer is the bound stated in the README.

   Build: cc -std=c99 -O2 -march=native -I. tests/test_formats.c -o test_formats -lm */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((rng() >> 40) & 0xffffff) / 8388608.0f - 1.0f; }

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- conversions --------------------------------------------------------------------------- */

/* f16 h as a double, from the IEEE 754 binary16 definition */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void test_widen(void) {
    int bad_scalar = 0, bad_vec = 0, bad_bf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = moe__f16_to_f32((uint16_t)h);
        double want = f16_value((uint16_t)h);
        if (want != want) { /* NaN: stays NaN, quieted, payload kept */
            uint32_t u = bits_of(f);
            bad_scalar += !(f != f) || (u & 0x00400000u) == 0 || ((u >> 13) & 0x1ffu) != (h & 0x1ffu);
        } else {
            bad_scalar += (double)f != want || !signbit(f) != !signbit(want);
        }
        bad_bf += bits_of(moe__bf16_to_f32((uint16_t)h)) != h << 16;
    }
#if MOE__SIMD
    for (uint32_t h0 = 0; h0 < 65536; h0 += MOE__VW) {
        uint16_t in[MOE__VW];
        float o[MOE__VW], ob[MOE__VW];
        for (int i = 0; i < MOE__VW; i++) in[i] = (uint16_t)(h0 + (uint32_t)i);
        moe__vst(o, moe__vld_f16(in));
        moe__vst(ob, moe__vld_bf16(in));
        for (int i = 0; i < MOE__VW; i++) {
            bad_vec += bits_of(o[i]) != bits_of(moe__f16_to_f32(in[i]));
            bad_vec += bits_of(ob[i]) != bits_of(moe__bf16_to_f32(in[i]));
        }
    }
#endif
    CHECK_MSG(bad_scalar == 0, "f16 -> f32: %d of 65536 values wrong", bad_scalar);
    CHECK_MSG(bad_bf == 0, "bf16 -> f32: %d of 65536 values wrong", bad_bf);
    CHECK_MSG(bad_vec == 0, "vector f16/bf16 loads differ from scalar on %d values", bad_vec);
}

/* f rounded to nearest even with p significant bits, normal range from 2^emin, largest finite
   fmax (rounds to inf above it), in double: the definition, not bit tricks. */
static double round_ref(float f, int p, int emin, double fmax) {
    if (f != f || isinf(f) || f == 0.0f) return f;
    double a = fabs((double)f), q;
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e) */
    q = e - 1 < emin ? ldexp(1.0, emin - p + 1) : ldexp(1.0, e - p);
    double r = nearbyint(a / q) * q;
    if (r > fmax) r = INFINITY;
    return f < 0 ? -r : r;
}

static int check_round(float f) {
    int bad = 0;
    float b = moe__bf16_to_f32(moe__f32_to_bf16(f)), h = moe__f16_to_f32(moe__f32_to_f16(f));
    double rb = round_ref(f, 8, -126, 3.3895313892515355e38), rh = round_ref(f, 11, -14, 65504.0);
    if (f != f) return !(b != b) + !(h != h);
    bad += (double)b != rb || !signbit(b) != !signbit(f);
    bad += (double)h != rh || !signbit(h) != !signbit(f);
#if defined(__F16C__)
    bad += moe__f32_to_f16(f) != _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#endif
    return bad;
}

static void test_round(void) {
    int bad = 0, n = 0;
    static const float edge[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 65536.0f,
                                 1e-8f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 6.1035156e-5f,
                                 6.1035152e-5f, 3.0517578e-5f, FLT_MAX, FLT_MIN, 1e-40f,
                                 3.3895314e38f, 1.00390625f, 1.01171875f, 1.0009766f, 1.0004883f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++, n += 2)
        bad += check_round(edge[i]) + check_round(-edge[i]);
    bad += check_round(INFINITY) + check_round(-INFINITY) + check_round(NAN);
    for (int i = 0; i < 1000000; i++, n++) { /* random bit patterns, and ties of both formats */
        uint32_t u = (uint32_t)rng();
        if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u;  /* a bf16 tie */
        if (i % 4 == 2) u = (u & 0xffffe000u) | 0x1000u;  /* an f16 tie (normal range) */
        if (i % 4 == 3) u = (u & 0x807fffffu) | ((uint32_t)(100 + i % 18) << 23); /* f16 subnormals */
        bad += check_round(of_bits(u));
    }
    CHECK_MSG(bad == 0, "f32 -> bf16/f16 rounding: %d of %d wrong", bad, n);
}

/* ---- layers -------------------------------------------------------------------------------- */

/* A layer's weights in one source dtype: every tensor fused ([E][...]) or per expert. */
typedef struct src {
    moe_config cfg;
    moe_weights w;
    void *buf[20];
    const void *per[4][64];
    int n;
} src;

/* x rounded through dtype dt (what that source stores) */
static float stored(moe_dtype dt, float x) {
    if (dt == MOE_BF16) return moe__bf16_to_f32(moe__f32_to_bf16(x));
    if (dt == MOE_F16) return moe__f16_to_f32(moe__f32_to_f16(x));
    return x;
}

/* n random values (scale s, seed): as dtype dt, optionally first rounded through `via` */
static void *tensor(src *S, size_t n, float s, uint64_t seed, moe_dtype dt, moe_dtype via) {
    size_t es = dt == MOE_F32 ? 4 : 2;
    unsigned char *b = (unsigned char *)malloc(n * es + 1);
    uint64_t keep = rng_state;
    rng_state = seed;
    for (size_t i = 0; i < n; i++) {
        float v = stored(via, s * frand());
        if (dt == MOE_F32) memcpy(b + 4 * i, &v, 4);
        else {
            uint16_t h = dt == MOE_BF16 ? moe__f32_to_bf16(v) : moe__f32_to_f16(v);
            memcpy(b + 2 * i, &h, 2);
        }
    }
    rng_state = keep;
    S->buf[S->n++] = b;
    return b;
}

/* variant: bit 0 per-expert pointers, bit 1 IN_OUT fused gate_up (interleaved), bit 2 biases.
   The matrices are rounded through `via`; biases are not (they stay fp32 in every format). */
static void make_src(src *S, const moe_config *c, int variant, moe_dtype dt, moe_dtype via) {
    size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t Sd = (size_t)c->n_shared * (size_t)(c->d_shared ? c->d_shared : c->d_ff);
    memset(S, 0, sizeof *S);
    S->cfg = *c;
    moe_weights *w = &S->w;
    w->router.data = tensor(S, E * d, 1.0f, 11, MOE_F32, MOE_F32);
    if (variant & 2) {
        w->gate_up.data = tensor(S, E * d * 2 * ff, 0.3f, 12, dt, via);
        w->gate_up.dtype = dt, w->gate_up.layout = MOE_IN_OUT;
        w->gate_up_split = MOE_SPLIT_INTERLEAVED;
        w->down.data = tensor(S, E * ff * d, 0.3f, 13, dt, via);
        w->down.dtype = dt, w->down.layout = MOE_IN_OUT;
    } else {
        w->gate.data = tensor(S, E * ff * d, 0.3f, 14, dt, via);
        w->up.data = tensor(S, E * ff * d, 0.3f, 15, dt, via);
        w->down.data = tensor(S, E * d * ff, 0.3f, 16, dt, via);
        w->gate.dtype = w->up.dtype = w->down.dtype = dt;
    }
    if (variant & 1) { /* the same buffers, as nn.ModuleList pointers */
        moe_tensor *t[3] = {&w->gate, &w->up, &w->down};
        size_t n[3] = {ff * d, ff * d, d * ff};
        if (variant & 2) t[0] = &w->gate_up, n[0] = 2 * ff * d, t[1] = NULL;
        for (int j = 0; j < 3; j++) {
            if (!t[j] || !t[j]->data) continue;
            for (size_t e = 0; e < E; e++)
                S->per[j][e] = (const char *)t[j]->data + e * n[j] * (dt == MOE_F32 ? 4 : 2);
            t[j]->per_expert = S->per[j], t[j]->data = NULL;
        }
    }
    if (variant & 4) {
        S->cfg.expert_bias = 1;
        w->down_bias.data = tensor(S, E * d, 0.5f, 17, dt, dt), w->down_bias.dtype = dt;
        if (variant & 2) {
            w->gate_up_bias.data = tensor(S, E * 2 * ff, 0.5f, 18, dt, dt);
            w->gate_up_bias.dtype = dt;
        } else {
            w->gate_bias.data = tensor(S, E * ff, 0.5f, 19, dt, dt);
            w->up_bias.data = tensor(S, E * ff, 0.5f, 20, dt, dt);
            w->gate_bias.dtype = w->up_bias.dtype = dt;
        }
    }
    if (Sd) {
        w->shared_gate_proj.data = tensor(S, Sd * d, 0.3f, 21, dt, via);
        w->shared_up.data = tensor(S, Sd * d, 0.3f, 22, dt, via);
        w->shared_down.data = tensor(S, d * Sd, 0.3f, 23, dt, via);
        w->shared_gate_proj.dtype = w->shared_up.dtype = w->shared_down.dtype = dt;
    }
}

static void free_src(src *S) {
    for (int i = 0; i < S->n; i++) free(S->buf[i]);
}

/* y for T tokens of a fixed input, through a layer of S with the given formats */
static float *run(const src *S, moe_format f, moe_format fs, moe_dot dot, size_t T, int nth,
                  size_t *packed, moe_config *got) {
    moe_config c = S->cfg;
    c.format = f, c.shared_format = fs, c.dot = dot;
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, &c, &S->w);
    CHECK_MSG(r == MOE_OK, "create (format %d/%d, dot %d): %s", (int)f, (int)fs, (int)dot,
              moe_result_string(r));
    if (r != MOE_OK) return NULL;
    size_t d = (size_t)c.d_model, bytes = 0;
    float *x = (float *)malloc(T * d * sizeof(float)), *y = (float *)malloc(T * d * sizeof(float));
    uint64_t keep = rng_state;
    rng_state = 77;
    for (size_t i = 0; i < T * d; i++) x[i] = frand();
    rng_state = keep;
    moe_workspace_size(L, T, &bytes);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = nth;
    r = moe_forward(L, x, T, y, &ws, NULL);
    CHECK_MSG(r == MOE_OK, "forward: %s", moe_result_string(r));
    if (packed) *packed = moe_layer_packed_bytes(L);
    if (got) *got = *moe_layer_config(L);
    free(ws.data), free(x);
    moe_layer_free(L);
    return y;
}

static int same(const float *a, const float *b, size_t n) {
    return a && b && memcmp(a, b, n * sizeof(float)) == 0;
}

static void test_exact(const moe_config *c, const char *name) {
    static const size_t Ts[] = {1, 7, 64};
    size_t d = (size_t)c->d_model;
    for (int variant = 0; variant < 8; variant++)
        for (size_t ti = 0; ti < 3; ti++) {
            size_t T = Ts[ti];
            src s16, s32;
            /* a bf16 checkpoint packed as bf16, f16 as f16: the f32 layer's bits */
            for (int h = 0; h < 2; h++) {
                moe_dtype dt = h ? MOE_F16 : MOE_BF16;
                moe_format f = h ? MOE_FORMAT_F16 : MOE_FORMAT_BF16;
                make_src(&s16, c, variant, dt, dt);
                float *y0 = run(&s16, MOE_FORMAT_F32, MOE_FORMAT_F32, MOE_DOT_EXACT, T, 0, NULL, NULL);
                float *y1 = run(&s16, f, f, MOE_DOT_EXACT, T, 0, NULL, NULL);
                float *y2 = run(&s16, f, MOE_FORMAT_F32, MOE_DOT_EXACT, T, 1, NULL, NULL);
                float *y3 = run(&s16, MOE_FORMAT_AUTO, MOE_FORMAT_AUTO, MOE_DOT_EXACT, T, 2, NULL, NULL);
                CHECK_MSG(same(y0, y1, T * d), "%s variant %d T %zu: %s-packed != f32-packed",
                          name, variant, T, h ? "f16" : "bf16");
                CHECK_MSG(same(y0, y2, T * d), "%s variant %d T %zu: routed %s, shared f32",
                          name, variant, T, h ? "f16" : "bf16");
                CHECK_MSG(same(y0, y3, T * d), "%s variant %d T %zu: AUTO", name, variant, T);
                free(y0), free(y1), free(y2), free(y3);
                free_src(&s16);
                /* an f32 checkpoint packed as bf16 / f16 = f32 layer of the rounded values */
                make_src(&s32, c, variant, MOE_F32, MOE_F32);
                make_src(&s16, c, variant, MOE_F32, dt);
                y0 = run(&s16, MOE_FORMAT_F32, MOE_FORMAT_F32, MOE_DOT_EXACT, T, 0, NULL, NULL);
                y1 = run(&s32, f, f, MOE_DOT_EXACT, T, 0, NULL, NULL);
                CHECK_MSG(same(y0, y1, T * d), "%s variant %d T %zu: f32 source packed as %s",
                          name, variant, T, h ? "f16" : "bf16");
                free(y0), free(y1);
                free_src(&s16), free_src(&s32);
            }
        }
}

/* AUTO follows the sources; packed bytes follow the format */
static void test_auto_and_size(void) {
    moe_config c, got;
    memset(&c, 0, sizeof c);
    c.d_model = 256, c.d_ff = 128, c.n_experts = 8, c.top_k = 2, c.n_shared = 1;
    src s;
    size_t b32, b16, bmix;
    make_src(&s, &c, 0, MOE_BF16, MOE_BF16);
    free(run(&s, MOE_FORMAT_F32, MOE_FORMAT_F32, MOE_DOT_EXACT, 1, 0, &b32, &got));
    CHECK_INT(got.format, MOE_FORMAT_F32);
    free(run(&s, MOE_FORMAT_AUTO, MOE_FORMAT_AUTO, MOE_DOT_EXACT, 1, 0, &b16, &got));
    CHECK_INT(got.format, MOE_FORMAT_BF16);
    CHECK_INT(got.shared_format, MOE_FORMAT_BF16);
    free(run(&s, MOE_FORMAT_AUTO, MOE_FORMAT_F32, MOE_DOT_EXACT, 1, 0, &bmix, &got));
    CHECK_INT(got.shared_format, MOE_FORMAT_F32);
    /* weights are 3 * 9 * 128 * 256 = 884736; the router (f32) and padding are the rest */
    double wts = 3.0 * 9 * 128 * 256;
    CHECK_MSG(b32 > 4 * wts && b32 < 4 * wts + 65536, "f32 layer %zu bytes", b32);
    CHECK_MSG(b16 > 2 * wts && b16 < 2 * wts + 65536, "bf16 layer %zu bytes", b16);
    CHECK_MSG(bmix > b16 && bmix < b32, "bf16 routed + f32 shared: %zu bytes", bmix);
    free_src(&s);
    make_src(&s, &c, 0, MOE_F16, MOE_F16);
    free(run(&s, MOE_FORMAT_AUTO, MOE_FORMAT_AUTO, MOE_DOT_EXACT, 1, 0, NULL, &got));
    CHECK_INT(got.format, MOE_FORMAT_F16);
    free(run(&s, MOE_FORMAT_AUTO, MOE_FORMAT_AUTO, MOE_DOT_BF16, 1, 0, NULL, &got));
    CHECK_INT(got.format, MOE_FORMAT_BF16); /* the bf16 dot packs as bf16 */
    free_src(&s);
    make_src(&s, &c, 0, MOE_BF16, MOE_BF16); /* one f32 tensor among bf16 ones: f32 */
    s.w.down.data = tensor(&s, 8 * 128 * 256, 0.3f, 99, MOE_F32, MOE_F32);
    s.w.down.dtype = MOE_F32;
    free(run(&s, MOE_FORMAT_AUTO, MOE_FORMAT_AUTO, MOE_DOT_EXACT, 1, 0, NULL, &got));
    CHECK_INT(got.format, MOE_FORMAT_F32);
    CHECK_INT(got.shared_format, MOE_FORMAT_BF16);
    free_src(&s);
}

/* The bf16 dot: thread count and batch never change a bit; its error against the exact
   (f32-arithmetic) layer of the same bf16 weights stays within the README's bound. */
static double worst_dot_rel;
static void test_dot(const moe_config *c, const char *name) {
    size_t d = (size_t)c->d_model, T = 37;
    src s;
    make_src(&s, c, 4, MOE_BF16, MOE_BF16);
    float *ye = run(&s, MOE_FORMAT_BF16, MOE_FORMAT_BF16, MOE_DOT_EXACT, T, 0, NULL, NULL);
    float *y1 = run(&s, MOE_FORMAT_BF16, MOE_FORMAT_BF16, MOE_DOT_BF16, T, 1, NULL, NULL);
    float *y2 = run(&s, MOE_FORMAT_BF16, MOE_FORMAT_BF16, MOE_DOT_BF16, T, 2, NULL, NULL);
    float *y3 = run(&s, MOE_FORMAT_BF16, MOE_FORMAT_BF16, MOE_DOT_BF16, T, 3, NULL, NULL);
    float *yo = run(&s, MOE_FORMAT_BF16, MOE_FORMAT_BF16, MOE_DOT_BF16, 1, 0, NULL, NULL);
    CHECK_MSG(same(y1, y2, T * d) && same(y1, y3, T * d), "%s: bf16 dot differs by threads", name);
    CHECK_MSG(same(y1, yo, d), "%s: bf16 dot: token 0 alone differs from it in a batch", name);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < T * d; i++) {
        double e = (double)y1[i] - ye[i];
        num += e * e, den += (double)ye[i] * ye[i];
    }
    double rel = sqrt(num / den); /* relative RMS error: activations rounded to 8 bits */
    if (rel > worst_dot_rel) worst_dot_rel = rel;
    CHECK_MSG(rel < 4e-3, "%s: bf16 dot relative RMS error %.3g vs the exact layer", name, rel);
    free(ye), free(y1), free(y2), free(y3), free(yo);
    free_src(&s);
}

/* q8 and q4 weights follow the stated rounding rule, and the sizes report 8.5 / 4.5 bits */
static void test_quant(void) {
    enum { d = 64, ff = 32, E = 2 };
    static float g[E * ff * d], u[E * ff * d], dn[E * d * ff], router[E * d];
    for (int i = 0; i < E * ff * d; i++) g[i] = frand() * (i % 7 == 0 ? 3.0f : 0.5f), u[i] = frand();
    for (int i = 0; i < E * d * ff; i++) dn[i] = frand();
    for (int i = 0; i < 32; i++) g[i] = 0.0f; /* an all-zero group */
    for (int f = MOE_FORMAT_Q8; f <= MOE_FORMAT_Q4; f++) {
        moe_config c;
        memset(&c, 0, sizeof c);
        c.d_model = d, c.d_ff = ff, c.n_experts = E, c.top_k = 1, c.format = (moe_format)f;
        moe_weights w;
        memset(&w, 0, sizeof w);
        w.router.data = router, w.gate.data = g, w.up.data = u, w.down.data = dn;
        moe_layer *L = NULL;
        CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
        if (!L) continue;
        const moe__mat *M = &L->ex.w1;
        int bad = 0;
        for (size_t e = 0; e < E; e++)
            for (size_t o = 0; o < ff; o++)
                for (size_t gi = 0; gi < d / 32; gi++) {
                    const float *v = g + (e * ff + o) * d + gi * 32;
                    const unsigned char *panel = M->data + e * M->expert_bytes + (o / MOE__NR) * M->panel_bytes;
                    double m = 0.0, mv = 0.0;
                    for (int j = 0; j < 32; j++)
                        if (fabs(v[j]) > m) m = fabs(v[j]), mv = v[j];
                    /* the scale: amax / 127, or -m / 8 (signed), as f16 */
                    float want_d = moe__f16_to_f32(moe__f32_to_f16(f == MOE_FORMAT_Q8 ? (float)m / 127.0f : (float)mv / -8.0f));
                    float got_d = moe__qscale(M, panel, gi, o % MOE__NR);
                    bad += memcmp(&want_d, &got_d, 4) != 0;
                    for (int j = 0; j < 32; j++) {
                        double r = want_d != 0.0f ? nearbyint((double)v[j] / want_d) : 0.0;
                        double lo = f == MOE_FORMAT_Q8 ? -127 : -8, hi = f == MOE_FORMAT_Q8 ? 127 : 7;
                        r = r < lo ? lo : r > hi ? hi : r;
                        bad += moe__qlane(M, panel, gi * 32 + (size_t)j, o % MOE__NR) != (int)r;
                    }
                }
        CHECK_MSG(bad == 0, "format %d: %d quantized weights or scales off the rule", f, bad);
        moe_packed_sizes ps;
        CHECK_INT(moe_layer_sizes(L, &ps), MOE_OK);
        double want_bits = f == MOE_FORMAT_Q8 ? 8.5 : 4.5; /* ff, d: whole panels and groups */
        CHECK_MSG(fabs(ps.bits_per_weight - want_bits) < 1e-9 && ps.format == (moe_format)f &&
                      ps.experts == E * ps.expert && ps.total == moe_layer_packed_bytes(L),
                  "format %d: %.3f bits a weight", f, ps.bits_per_weight);
        moe_layer_free(L);
    }
}

int main(void) {
    printf("moe.h formats: %s kernels, bf16 dot %s\n",
           MOE__AVX512 ? "AVX-512" : MOE__AVX2 ? "AVX2" : MOE__NEON ? "NEON" : "scalar",
           MOE__DPBF16 ? "vdpbf16ps when it agrees" : "emulated");
    test_widen();
    test_round();
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = 40, c.d_ff = 24, c.n_experts = 6, c.top_k = 2, c.norm = MOE_NORM_SUM;
    c.n_shared = 1, c.d_shared = 19;
    test_exact(&c, "gated+shared");
    memset(&c, 0, sizeof c);
    c.d_model = 37, c.d_ff = 53, c.n_experts = 4, c.top_k = 1, c.act = MOE_ACT_SWIGLU_OAI;
    c.score = MOE_SCORE_SOFTMAX_TOPK;
    test_exact(&c, "gpt-oss-like");
    test_auto_and_size();
    test_quant();
    memset(&c, 0, sizeof c);
    c.d_model = 96, c.d_ff = 80, c.n_experts = 8, c.top_k = 2, c.norm = MOE_NORM_SUM;
    c.n_shared = 1;
    test_dot(&c, "gated+shared");
    c.d_model = 33, c.d_ff = 47; /* odd K: the padding pair */
    test_dot(&c, "odd widths");
    printf("bf16 dot vs exact: worst relative RMS error %.3g\n", worst_dot_rel);
    return check_summary();
}
