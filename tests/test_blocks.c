/* test_blocks.c - the block source dtypes checkpoints ship (FP8 E4M3 with tile scales, MXFP4 as
   HF and GGUF store it, GGUF Q8_0 / Q4_0 / Q4_K, compressed-tensors INT4) and the packed formats
   fp8 and mxfp4.

   The values are checked against decoders written here from the format definitions (OCP
   Microscaling Formats v1.0 for E4M3 / E2M1 / E8M0; ggml-quants.c for the GGUF blocks;
   compressed-tensors pack_quantized.py for INT4), not from moe.h's:
     - every E4M3, E2M1 and E8M0 code, scalar and vector decoders; fp32 -> E4M3 / E2M1 rounding
       against a brute-force nearest-even search;
     - fp8 and mxfp4 layers (the default format for such sources) give the bits of an f32
       layer packed from the dequantized weights (w = code * scale in fp32), fast and
       reference kernels, 1 to 37 tokens, 1 and 2 threads, fused and per-expert views, four
       scale encodings and three tile shapes (partial tiles included);
     - Q8_0, Q4_0 and INT4 (f16 and bf16 scales) pack into q8 / q4 without requantizing:
       every packed code and scale equals the source's;
     - Q4_K dequantizes to ggml's fp32 values: its layer is the f32 layer of those values;
     - the errors: a block dtype outside the expert matrices, IN_OUT, a K that is not a whole
       number of blocks, missing or mistyped scales.

   Build: cc -std=c99 -O2 -march=native -fopenmp -I. tests/test_blocks.c -o test_blocks -lm */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint32_t rng = 12345u;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
    return rng;
}
static float frnd(float a, float b) { return a + (b - a) * (float)(rnd() >> 8) / 16777216.0f; }

/* ---- decoders written from the definitions ---------------------------------------------- */

static double t_e4m3(unsigned c) { /* S.EEEE.MMM, bias 7, no infinities, S.1111.111 NaN */
    int s = (c >> 7) & 1, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? (m / 8.0) * pow(2.0, -6) : (1.0 + m / 8.0) * pow(2.0, e - 7);
    return s ? -v : v;
}
static const double t_e2m1v[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};
static double t_e8m0(unsigned x) { return x == 255 ? NAN : pow(2.0, (int)x - 127); }
static float t_half(uint16_t h) { /* IEEE binary16 */
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? m * pow(2.0, -24) : e == 31 ? (m ? NAN : INFINITY) : (1024 + m) * pow(2.0, e - 25);
    return (float)(s ? -v : v);
}
static float t_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t t_to_half(float f) { /* for small positive normal values used as scales */
    int e;
    double m = frexp((double)f, &e); /* f = m 2^e, m in [0.5, 1) */
    return (uint16_t)(((e - 1 + 15) << 10) | ((int)(m * 2048.0) - 1024));
}

/* ggml-quants.c dequantize_row_q4_K, written again: 8 sub-blocks of 32, 6-bit scales and mins */
static void t_q4k_block(const unsigned char *b, float *y) {
    uint16_t h;
    memcpy(&h, b, 2);
    float d = t_half(h);
    memcpy(&h, b + 2, 2);
    float dmin = t_half(h);
    const unsigned char *sc = b + 4, *q = b + 16;
    for (int j = 0; j < 8; j++) {
        int s, m;
        if (j < 4) {
            s = sc[j] & 63, m = sc[j + 4] & 63;
        } else {
            s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
            m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
        }
        volatile float d1 = d * (float)s, m1 = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int u = (j & 1) ? q[(j / 2) * 32 + l] >> 4 : q[(j / 2) * 32 + l] & 0xF;
            volatile float p = d1 * (float)u;
            y[j * 32 + l] = p - m1;
        }
    }
}

/* ---- 1. codes ---------------------------------------------------------------------------- */

static int same_f(float a, float b) { return (a != a && b != b) || memcmp(&a, &b, 4) == 0; }

static void test_codes(void) {
    int bad = 0;
    for (unsigned c = 0; c < 256; c++) bad += !same_f(moe__e4m3(c), (float)t_e4m3(c));
    CHECK_MSG(bad == 0, "%d E4M3 codes decode wrong", bad);
    bad = 0;
    for (unsigned c = 0; c < 16; c++) bad += !same_f(moe__e2m1(c), (float)t_e2m1v[c]);
    CHECK_MSG(bad == 0, "%d E2M1 codes decode wrong", bad);
    bad = 0;
    for (unsigned c = 0; c < 256; c++) bad += !same_f(moe__e8m0(c), (float)t_e8m0(c));
    CHECK_MSG(bad == 0, "%d E8M0 codes decode wrong", bad);
#if MOE__SIMD
    { /* the vector decoders on every code */
        unsigned char b[MOE__VW];
        float o[MOE__VW];
        int vb = 0;
        for (unsigned c0 = 0; c0 < 256; c0 += MOE__VW) {
            for (int i = 0; i < MOE__VW; i++) b[i] = (unsigned char)(c0 + (unsigned)i);
            moe__vst(o, moe__vld_e4m3s(b)); /* code * 2^-120 */
            for (int i = 0; i < MOE__VW; i++)
                if (((c0 + (unsigned)i) & 0x7f) != 0x7f) vb += !same_f(o[i] * 0x1p120f, moe__e4m3(c0 + (unsigned)i));
            moe__vst(o, moe__vld_e8m0h(b)); /* 2^(x - 128) */
            for (int i = 0; i < MOE__VW; i++) vb += !same_f(o[i] * 2.0f, moe__e8m0(c0 + (unsigned)i));
            moe__vst(o, moe__vld_e2m1x2(b, 0)); /* doubled */
            for (int i = 0; i < MOE__VW; i++) vb += o[i] * 0.5f != moe__e2m1((c0 + (unsigned)i) & 15); /* -0 as 0 */
            moe__vst(o, moe__vld_e2m1x2(b, 1));
            for (int i = 0; i < MOE__VW; i++) vb += o[i] * 0.5f != moe__e2m1((c0 + (unsigned)i) >> 4);
        }
        CHECK_MSG(vb == 0, "%d vector decodes differ from the scalar ones", vb);
    }
#endif
    /* fp32 -> E4M3 / E2M1: the nearest code, ties to the even one, every code round-trips */
    bad = 0;
    for (unsigned c = 0; c < 256; c++)
        if ((c & 0x7f) != 0x7f) bad += moe__to_e4m3(moe__e4m3(c)) != c;
    for (int i = 0; i < 200000; i++) {
        float x = frnd(-460.0f, 460.0f) * (i % 3 ? 1.0f : 1.0f / 256.0f);
        unsigned best = 0;
        double bd = INFINITY;
        for (unsigned c = 0; c < 256; c++) {
            double v = t_e4m3(c), dd = fabs(v - x);
            if (v != v || (c & 0x7f) == 0x7f) continue;
            if (dd < bd || (dd == bd && (c & 1) == 0 && (best & 1))) bd = dd, best = c;
        }
        if (fabsf(x) > 448.0f) best = x < 0 ? 0xfe : 0x7e;
        if (best == 0x80 && !signbit(x)) best = 0; /* -0 vs +0: the sign of x */
        if (best == 0 && signbit(x)) best = 0x80;
        bad += moe__to_e4m3(x) != best;
    }
    CHECK_MSG(bad == 0, "%d fp32 -> E4M3 roundings differ from the nearest-even code", bad);
    bad = 0;
    for (int i = 0; i < 20000; i++) {
        float x = frnd(-6.5f, 6.5f);
        unsigned best = 0;
        double bd = INFINITY;
        for (unsigned c = 0; c < 8; c++) {
            double dd = fabs(t_e2m1v[c] - fabs(x));
            if (dd < bd || (dd == bd && (c & 1) == 0 && (best & 1))) bd = dd, best = c;
        }
        bad += moe__to_e2m1(x) != (best | (signbit(x) ? 8u : 0u));
    }
    CHECK_MSG(bad == 0, "%d fp32 -> E2M1 roundings differ from the nearest-even code", bad);
}

/* ---- 2. layers ---------------------------------------------------------------------------- */

enum { D = 160, FF = 96, E = 6, K = 2, TMAX = 37 };

/* One expert matrix set in a block dtype and its dequantized f32 copy. */
typedef struct bmat {
    size_t rows, cols;
    unsigned char *q;  /* E experts' blocks, back to back */
    unsigned char *sc; /* their scales */
    float *f;          /* E experts' dequantized values */
    size_t qbytes, sbytes;
} bmat;

typedef struct bcase {
    const char *name;
    moe_dtype dt, sdt;
    int bo, bi; /* E4M3 tile (0 = 128) */
} bcase;

static float scale_val(moe_dtype sdt, const unsigned char *p) {
    uint16_t h;
    float f;
    if (sdt == MOE_F32) return memcpy(&f, p, 4), f;
    if (sdt == MOE_E8M0) return (float)t_e8m0(*p);
    memcpy(&h, p, 2);
    return sdt == MOE_BF16 ? t_bf16(h) : t_half(h);
}
static size_t ssize(moe_dtype sdt) { return sdt == MOE_F32 ? 4 : sdt == MOE_E8M0 ? 1 : 2; }
static void put_scale(moe_dtype sdt, unsigned char *p) {
    float f = frnd(0.5f, 2.0f) / 64.0f;
    if (sdt == MOE_F32) memcpy(p, &f, 4);
    else if (sdt == MOE_E8M0) *p = (unsigned char)(118 + rnd() % 10);
    else if (sdt == MOE_F16) {
        uint16_t h = t_to_half(f);
        memcpy(p, &h, 2);
    } else {
        uint32_t u;
        memcpy(&u, &f, 4);
        uint16_t h = (uint16_t)(u >> 16);
        memcpy(p, &h, 2);
    }
}

static void bmat_make(bmat *m, const bcase *c, size_t rows, size_t cols) {
    size_t n = rows * cols, bo = c->bo ? (size_t)c->bo : 128, bi = c->bi ? (size_t)c->bi : 128;
    size_t ns = 0;
    m->rows = rows, m->cols = cols;
    if (c->dt == MOE_F8_E4M3) ns = ((rows + bo - 1) / bo) * ((cols + bi - 1) / bi);
    if (c->dt == MOE_MXFP4 || c->dt == MOE_INT4) ns = rows * (cols / 32);
    m->qbytes = c->dt == MOE_F8_E4M3 ? n : c->dt == MOE_MXFP4 || c->dt == MOE_INT4 ? n / 2
              : c->dt == MOE_MXFP4_GGUF ? n / 32 * 17 : c->dt == MOE_Q8_0 ? n / 32 * 34
              : c->dt == MOE_Q4_0 ? n / 32 * 18 : n / 256 * 144;
    m->sbytes = ns * ssize(c->sdt);
    m->q = (unsigned char *)malloc(E * m->qbytes + 1);
    m->sc = (unsigned char *)malloc(E * m->sbytes + 1);
    m->f = (float *)malloc(E * n * sizeof(float));
    for (size_t e = 0; e < E; e++) {
        unsigned char *q = m->q + e * m->qbytes, *sc = m->sc + e * m->sbytes;
        float *f = m->f + e * n;
        for (size_t i = 0; i < m->qbytes; i++) q[i] = (unsigned char)rnd();
        for (size_t i = 0; i < ns; i++) put_scale(c->sdt, sc + i * ssize(c->sdt));
        for (size_t r = 0; r < rows; r++)
            for (size_t k = 0; k < cols; k++) {
                size_t i = r * cols + k;
                if (c->dt == MOE_F8_E4M3) {
                    if ((q[i] & 0x7f) == 0x7f) q[i] ^= 1; /* no NaN weights */
                    float s = scale_val(c->sdt, sc + ((r / bo) * ((cols + bi - 1) / bi) + k / bi) * ssize(c->sdt));
                    f[i] = (float)t_e4m3(q[i]) * s;
                } else if (c->dt == MOE_MXFP4) {
                    unsigned code = (i & 1) ? q[i / 2] >> 4 : q[i / 2] & 15;
                    f[i] = (float)t_e2m1v[code] * scale_val(MOE_E8M0, sc + r * (cols / 32) + k / 32);
                } else if (c->dt == MOE_MXFP4_GGUF) {
                    unsigned char *b = q + i / 32 * 17;
                    if (i % 32 == 0) b[0] = (unsigned char)(118 + rnd() % 10);
                    size_t j = i % 32;
                    unsigned code = j < 16 ? b[1 + j] & 15 : b[1 + j - 16] >> 4;
                    f[i] = (float)t_e2m1v[code] * (float)t_e8m0(b[0]);
                } else if (c->dt == MOE_Q8_0 || c->dt == MOE_Q4_0) {
                    size_t bs = c->dt == MOE_Q8_0 ? 34 : 18;
                    unsigned char *b = q + i / 32 * bs;
                    uint16_t h;
                    if (i % 32 == 0) {
                        h = t_to_half(frnd(0.5f, 2.0f) / 256.0f);
                        memcpy(b, &h, 2);
                        if (c->dt == MOE_Q8_0)
                            for (int j = 0; j < 32; j++)
                                if (b[2 + j] == 0x80) b[2 + j] = 0x81; /* ggml's range: -127..127 */
                    }
                    memcpy(&h, b, 2);
                    size_t j = i % 32;
                    int v = c->dt == MOE_Q8_0 ? (int)(signed char)b[2 + j]
                                              : (int)(j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4) - 8;
                    f[i] = t_half(h) * (float)v;
                } else if (c->dt == MOE_INT4) {
                    uint32_t wd;
                    memcpy(&wd, q + i / 8 * 4, 4);
                    int v = (int)((wd >> (4 * (i % 8))) & 15) - 8;
                    f[i] = (float)v * scale_val(c->sdt, sc + (r * (cols / 32) + k / 32) * ssize(c->sdt));
                } else if (c->dt == MOE_Q4_K && i % 256 == 255) {
                    unsigned char *b = q + i / 256 * 144;
                    uint16_t h = t_to_half(frnd(0.5f, 2.0f) / 512.0f);
                    memcpy(b, &h, 2);
                    h = t_to_half(frnd(0.5f, 2.0f) / 1024.0f);
                    memcpy(b + 2, &h, 2);
                    t_q4k_block(b, f + i - 255);
                }
            }
    }
}

static void bmat_free(bmat *m) { free(m->q), free(m->sc), free(m->f); }

static void view_block(moe_tensor *t, const bmat *m, const bcase *c, const void **pe, const void **ps,
                       int per_expert) {
    memset(t, 0, sizeof *t);
    t->dtype = c->dt, t->layout = MOE_OUT_IN, t->scale_dtype = c->sdt;
    t->block_out = c->bo, t->block_in = c->bi;
    if (per_expert) {
        for (int e = 0; e < E; e++) pe[e] = m->q + e * m->qbytes, ps[e] = m->sc + e * m->sbytes;
        t->per_expert = pe, t->scale_per_expert = ps;
    } else {
        t->data = m->q, t->scale = m->sc;
    }
}
static void view_f32(moe_tensor *t, const float *f) {
    memset(t, 0, sizeof *t);
    t->data = f, t->dtype = MOE_F32, t->layout = MOE_OUT_IN;
}

static moe_config base_cfg(int d, int ff) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = d, c.d_ff = ff, c.n_experts = E, c.top_k = K, c.norm = MOE_NORM_SUM;
    c.n_shared = 1;
    return c;
}

static void forward(const moe_layer *L, const float *x, size_t T, int nth, float *y) {
    size_t bytes = 0;
    moe_workspace_size(L, T, &bytes);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = nth;
    CHECK_INT(moe_forward(L, x, T, y, &ws, NULL), MOE_OK);
    free(ws.data);
}

/* The layer of block sources (format AUTO, or `fmt`) against the f32 layer of their values:
   memcmp when `exact`, else the NMSE within `nmse`. */
static void test_layer_case(const bcase *c, int d, int ff, moe_format fmt, int exact, double nmse,
                            int per_expert) {
    bmat g, u, dn, sg, su, sd;
    bcase cs = *c;
    bmat_make(&g, c, (size_t)ff, (size_t)d), bmat_make(&u, c, (size_t)ff, (size_t)d);
    bmat_make(&dn, c, (size_t)d, (size_t)ff);
    /* the shared expert: one expert's worth (the first) of three more */
    bmat_make(&sg, &cs, (size_t)ff, (size_t)d), bmat_make(&su, &cs, (size_t)ff, (size_t)d);
    bmat_make(&sd, &cs, (size_t)d, (size_t)ff);
    float *router = (float *)malloc((size_t)E * (size_t)d * sizeof(float));
    for (int i = 0; i < E * d; i++) router[i] = frnd(-0.3f, 0.3f);
    static const void *pe[6][E], *ps[6][E];
    moe_weights wb, wf;
    memset(&wb, 0, sizeof wb), memset(&wf, 0, sizeof wf);
    view_f32(&wb.router, router), view_f32(&wf.router, router);
    view_block(&wb.gate, &g, c, pe[0], ps[0], per_expert), view_f32(&wf.gate, g.f);
    view_block(&wb.up, &u, c, pe[1], ps[1], per_expert), view_f32(&wf.up, u.f);
    view_block(&wb.down, &dn, c, pe[2], ps[2], per_expert), view_f32(&wf.down, dn.f);
    view_block(&wb.shared_gate_proj, &sg, c, pe[3], ps[3], 0), view_f32(&wf.shared_gate_proj, sg.f);
    view_block(&wb.shared_up, &su, c, pe[4], ps[4], 0), view_f32(&wf.shared_up, su.f);
    view_block(&wb.shared_down, &sd, c, pe[5], ps[5], 0), view_f32(&wf.shared_down, sd.f);
    moe_config cb = base_cfg(d, ff), cf = cb;
    cb.format = cb.shared_format = fmt, cf.format = cf.shared_format = MOE_FORMAT_F32;
    moe_layer *Lb = NULL, *Lf = NULL;
    char msg[256];
    moe_result rb = moe_layer_create_msg(&Lb, &cb, &wb, msg, sizeof msg);
    CHECK_MSG(rb == MOE_OK, "%s: %s", c->name, msg);
    CHECK_INT(moe_layer_create(&Lf, &cf, &wf), MOE_OK);
    if (!Lb || !Lf) goto out;
    float *x = (float *)malloc(TMAX * (size_t)d * sizeof(float));
    float *yb = (float *)malloc(TMAX * (size_t)d * sizeof(float)), *yf = (float *)malloc(TMAX * (size_t)d * sizeof(float));
    for (int i = 0; i < TMAX * d; i++) x[i] = frnd(-1.0f, 1.0f);
    static const size_t Ts[] = {1, 3, TMAX};
    for (int ti = 0; ti < 3; ti++)
        for (int nth = 1; nth <= 2; nth++)
            for (int ref = 0; ref < 2; ref++) {
                size_t T = Ts[ti];
                moe__select_kernels(Lb, ref), moe__select_kernels(Lf, ref); /* the same activations */
                forward(Lb, x, T, nth, yb), forward(Lf, x, T, nth, yf);
                if (exact) {
                    CHECK_MSG(memcmp(yb, yf, T * (size_t)d * sizeof(float)) == 0,
                              "%s%s: T=%zu threads=%d %s kernels: not the bits of the f32 layer",
                              c->name, per_expert ? " (per expert)" : "", T, nth, ref ? "reference" : "fast");
                } else {
                    double e2 = 0, r2 = 0;
                    for (size_t i = 0; i < T * (size_t)d; i++)
                        e2 += ((double)yb[i] - yf[i]) * ((double)yb[i] - yf[i]), r2 += (double)yf[i] * yf[i];
                    CHECK_MSG(e2 <= nmse * r2, "%s: T=%zu NMSE %.3g against the f32 layer of the "
                              "values (bound %.3g)", c->name, T, e2 / r2, nmse);
                }
            }
    free(x), free(yb), free(yf);
out:
    moe_layer_free(Lb), moe_layer_free(Lf);
    bmat_free(&g), bmat_free(&u), bmat_free(&dn), bmat_free(&sg), bmat_free(&su), bmat_free(&sd);
    free(router);
}

/* ---- 3. integer blocks kept as they are -------------------------------------------------- */

static void test_qcopy(const bcase *c, moe_format fmt) {
    bmat g, u, dn;
    bmat_make(&g, c, FF, D), bmat_make(&u, c, FF, D), bmat_make(&dn, c, D, FF);
    float *router = (float *)calloc((size_t)E * D, sizeof(float));
    moe_weights w;
    memset(&w, 0, sizeof w);
    view_f32(&w.router, router);
    view_block(&w.gate, &g, c, NULL, NULL, 0), view_block(&w.up, &u, c, NULL, NULL, 0);
    view_block(&w.down, &dn, c, NULL, NULL, 0);
    moe_config cfg = base_cfg(D, FF);
    cfg.n_shared = 0, cfg.format = fmt;
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &cfg, &w), MOE_OK);
    CHECK_INT(moe_layer_config(L)->format, c->dt == MOE_Q8_0 ? MOE_FORMAT_Q8 : MOE_FORMAT_Q4);
    int bad = 0, sbad = 0;
    for (int part = 0; part < 3 && L; part++) {
        const moe__mat *M = part == 2 ? &L->ex.w2 : &L->ex.w1;
        const bmat *b = part == 0 ? &g : part == 1 ? &u : &dn;
        size_t lane0 = part == 1 ? MOE__NR : 0;
        for (size_t e = 0; e < E; e++)
            for (size_t o = 0; o < b->rows; o++)
                for (size_t k = 0; k < b->cols; k++) {
                    const unsigned char *panel = moe__mat_expert(M, e) + (o / MOE__NR) * M->panel_bytes;
                    size_t l = lane0 + o % MOE__NR, i = o * b->cols + k;
                    float v = b->f[e * b->rows * b->cols + i];
                    float s = moe__qscale(M, panel, k / 32, l);
                    int q = moe__qlane(M, panel, k, l);
                    bad += !same_f((float)q * s, v);
                    if (k % 32 == 0) { /* the scale's bits */
                        const unsigned char *src = c->dt == MOE_INT4
                            ? b->sc + e * b->sbytes + (o * (b->cols / 32) + k / 32) * 2
                            : b->q + e * b->qbytes + i / 32 * (c->dt == MOE_Q8_0 ? 34 : 18);
                        uint16_t hs, hp;
                        memcpy(&hs, src, 2);
                        memcpy(&hp, panel + (k / 32) * M->step_bytes + moe__kind_weight_bytes(M->kind, M->w) + 2 * l, 2);
                        sbad += hs != hp;
                    }
                }
    }
    CHECK_MSG(bad == 0 && sbad == 0, "%s: %d codes and %d scales not kept as they are", c->name, bad, sbad);
    if (c->dt == MOE_INT4 && L)
        CHECK_INT(L->ex.w1.scale_bf16, c->sdt == MOE_BF16);
    moe_layer_free(L);
    bmat_free(&g), bmat_free(&u), bmat_free(&dn);
    free(router);
}

/* ---- 4. errors ---------------------------------------------------------------------------- */

static void test_errors(void) {
    bcase c = {"fp8", MOE_F8_E4M3, MOE_F32, 0, 0};
    bmat g, u, dn;
    bmat_make(&g, &c, FF, D), bmat_make(&u, &c, FF, D), bmat_make(&dn, &c, D, FF);
    float *router = (float *)calloc((size_t)E * D, sizeof(float));
    moe_config cfg = base_cfg(D, FF);
    cfg.n_shared = 0;
    char msg[256];
    for (int v = 0; v < 6; v++) {
        moe_weights w;
        memset(&w, 0, sizeof w);
        view_f32(&w.router, router);
        view_block(&w.gate, &g, &c, NULL, NULL, 0), view_block(&w.up, &u, &c, NULL, NULL, 0);
        view_block(&w.down, &dn, &c, NULL, NULL, 0);
        const char *want = "";
        if (v == 0) w.router.dtype = MOE_Q8_0, want = "weights.router: a block dtype";
        if (v == 1) w.gate.layout = MOE_IN_OUT, want = "weights.gate: a block dtype needs layout MOE_OUT_IN";
        if (v == 2) w.down.scale = NULL, want = "weights.down: dtype 3 needs its scales";
        if (v == 3) w.up.scale_dtype = MOE_INT4, want = "weights.up: dtype 3 needs its scales";
        if (v == 4) w.gate.dtype = MOE_MXFP4, want = "weights.gate: dtype 4 needs its scales";
        if (v == 5) w.gate.dtype = MOE_E8M0, want = "weights.gate: unknown dtype";
        moe_layer *L = (moe_layer *)(void *)&w;
        moe_result r = moe_layer_create_msg(&L, &cfg, &w, msg, sizeof msg);
        CHECK_MSG(r == MOE_E_DTYPE && L == NULL && strstr(msg, want) != NULL, "case %d: %d \"%s\"", v,
                  (int)r, msg);
    }
    { /* Q8_0 needs K a multiple of 32: d = 40 */
        bcase q = {"q8_0", MOE_Q8_0, MOE_F16, 0, 0};
        bmat a;
        bmat_make(&a, &q, 64, 64);
        moe_config c2 = base_cfg(40, 64);
        c2.n_shared = 0;
        moe_weights w;
        memset(&w, 0, sizeof w);
        view_f32(&w.router, router);
        view_block(&w.gate, &a, &q, NULL, NULL, 0), view_block(&w.up, &a, &q, NULL, NULL, 0);
        view_block(&w.down, &a, &q, NULL, NULL, 0);
        moe_layer *L = NULL;
        moe_result r = moe_layer_create_msg(&L, &c2, &w, msg, sizeof msg);
        CHECK_MSG(r == MOE_E_DTYPE && strstr(msg, "a multiple of 32 (it is 40)"), "K 40: %d \"%s\"", (int)r, msg);
        bmat_free(&a);
    }
    bmat_free(&g), bmat_free(&u), bmat_free(&dn);
    free(router);
}

static void test_sizes(void) {
    static const struct { moe_format f; double bits; } v[] = {{MOE_FORMAT_FP8, 9.0}, {MOE_FORMAT_MXFP4, 4.25}};
    for (int i = 0; i < 2; i++) {
        float *w1 = (float *)calloc((size_t)E * 64 * 128, sizeof(float)), *r = (float *)calloc((size_t)E * 128, sizeof(float));
        moe_weights w;
        memset(&w, 0, sizeof w);
        view_f32(&w.router, r), view_f32(&w.gate, w1), view_f32(&w.up, w1), view_f32(&w.down, w1);
        moe_config c = base_cfg(128, 64);
        c.n_shared = 0, c.format = v[i].f;
        moe_layer *L = NULL;
        moe_packed_sizes ps;
        CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
        CHECK_INT(moe_layer_sizes(L, &ps), MOE_OK);
        CHECK_MSG(fabs(ps.bits_per_weight - v[i].bits) < 1e-9, "format %d: %g bits per weight", (int)v[i].f,
                  ps.bits_per_weight);
        moe_layer_free(L);
        free(w1), free(r);
    }
}

int main(void) {
    printf("%s\n", moe_build_info()->text);
    test_codes();
    static const bcase exact[] = {
        {"fp8, f32 scales, 128x128 tiles", MOE_F8_E4M3, MOE_F32, 0, 0},
        {"fp8, bf16 scales, 128x128 tiles", MOE_F8_E4M3, MOE_BF16, 0, 0},
        {"fp8, e8m0 scales, 32x64 tiles", MOE_F8_E4M3, MOE_E8M0, 32, 64},
        {"fp8, f16 scales, per channel", MOE_F8_E4M3, MOE_F16, 1, 1 << 20},
        {"mxfp4 (HF)", MOE_MXFP4, MOE_E8M0, 0, 0},
        {"mxfp4 (GGUF)", MOE_MXFP4_GGUF, MOE_E8M0, 0, 0},
    };
    for (int i = 0; i < 6; i++) test_layer_case(&exact[i], D, FF, MOE_FORMAT_AUTO, 1, 0, 0);
    test_layer_case(&exact[0], D, FF, MOE_FORMAT_AUTO, 1, 0, 1);
    test_layer_case(&exact[4], D, FF, MOE_FORMAT_AUTO, 1, 0, 1);
    { /* fp8 tiles of 48 inputs do not hold whole groups of 32: quantized again, close */
        bcase c = {"fp8, 16x48 tiles (requantized)", MOE_F8_E4M3, MOE_F32, 16, 48};
        test_layer_case(&c, D, FF, MOE_FORMAT_AUTO, 0, 2e-3, 0);
    }
    { /* Q4_K: dequantized to ggml's fp32 values, packed f32 */
        bcase c = {"q4_k", MOE_Q4_K, MOE_F16, 0, 0};
        test_layer_case(&c, 256, 256, MOE_FORMAT_AUTO, 1, 0, 0);
    }
    static const bcase ints[] = {
        {"q8_0", MOE_Q8_0, MOE_F16, 0, 0},
        {"q4_0", MOE_Q4_0, MOE_F16, 0, 0},
        {"int4, bf16 scales", MOE_INT4, MOE_BF16, 0, 0},
        {"int4, f16 scales", MOE_INT4, MOE_F16, 0, 0},
    };
    for (int i = 0; i < 4; i++) test_qcopy(&ints[i], MOE_FORMAT_AUTO);
    /* and their layers against the f32 layer of the values: the int8 activations' error */
    test_layer_case(&ints[0], D, FF, MOE_FORMAT_AUTO, 0, 5e-4, 0);
    test_layer_case(&ints[2], D, FF, MOE_FORMAT_AUTO, 0, 5e-4, 0);
    test_errors();
    test_sizes();
    return check_summary();
}
