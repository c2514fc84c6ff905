/* test_layer.c - whole layers of moe.h against a naive double-precision MoE written here.

   The reference (ref_forward) is the obvious loop: logits, gating (its own code, in double, from
   shared/reference/moe-variants.md), capacity, experts, shared experts, weight_on_input. Every
   weight is drawn as a small integer times a power of two, so it is exact in fp32, bf16 and f16
   and every source format encodes the same numbers.

   Also: the plan (counting sort), capacity and drops, slot-order combine, layouts and dtypes,
   edge shapes, no allocation in moe_forward / moe_route, on_packed, trace statistics,
   moe_route = moe_forward's routing, and batch invariance (memcmp).

   Build: cc -std=c99 -I. tests/test_layer.c -o test_layer -lm ; run from the repo root. */
#include <stddef.h>

static size_t g_n_malloc, g_n_free;
static void *counting_malloc(size_t sz);
static void counting_free(void *p);
#define MOE_MALLOC(sz, ctx) counting_malloc(sz)
#define MOE_FREE(p, ctx) counting_free(p)

#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *counting_malloc(size_t sz) {
    g_n_malloc++;
    return malloc(sz);
}
static void counting_free(void *p) {
    if (p) g_n_free++;
    free(p);
}

#include "check.h"

/* Tolerance of a whole layer against the double reference. Every output of moe.h is a short
   chain of fp32 fmas (K <= 64 inputs, then <= 9 slots) over values of order 1, plus fp32 expf /
   erff / tanhf in the activations (a few ulps, more for a vector exp). The rounding error is
   then a few times sqrt(K) * 2^-24 ~ 1e-6 of the magnitude of the terms; the terms are of the
   order of max|y| with these weights, so 2e-5 * max|y| leaves a wide margin and still catches
   any wrong formula (those differ by 1e-3 or more here). */
#define YTOL 2e-5

/* ---- random numbers, exact in every dtype ------------------------------------------------- */

static uint32_t g_rng = 12345u;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}
/* m * 2^-8 * scale, |m| <= 127: 7 significant bits, so exact in bf16 and in f16 (scale a power
   of two >= 2^-16) */
static float rval(float scale) { return (float)((int)(rnd() % 255) - 127) * (1.0f / 256.0f) * scale; }

/* ---- the model: logical weights, out x in, fp32 -------------------------------------------- */

typedef struct model {
    moe_config cfg;
    int E, R, d, ff, k, S;          /* R = E + n_zero_experts choices */
    int RO;                         /* router outputs: R (+ n_shared with shared_router) */
    int dl;                         /* the routed experts' width: d_latent, or d */
    float *router, *rbias, *sbias;  /* [R][d], [R], [R] */
    float *wg, *wu, *wd;            /* [E][ff][d], [E][ff][d], [E][d][ff] */
    float *bg, *bu, *bd;            /* [E][ff], [E][ff], [E][d] */
    float *sg, *su, *sd, *shg;      /* [S][d], [S][d], [d][S], [d] */
    float *ob, *on;                 /* output bias, output norm weight: [d] */
    float *li, *lo;                 /* latent_in [dl][d], latent_out [d][dl] */
    float *rs, *en, *es;            /* router_in_scale [d], expert_in_norm [d], expert_scale [R] */
} model;

static float *rarr(size_t n, float scale) {
    float *a = (float *)malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = rval(scale);
    return a;
}

/* Draws a model for cfg (dimensions in cfg). wscale scales the expert weights. */
static model model_make(const moe_config *cfg, float wscale) {
    model m;
    memset(&m, 0, sizeof m);
    m.cfg = *cfg;
    m.E = cfg->n_experts, m.d = cfg->d_model, m.ff = cfg->d_ff, m.k = cfg->top_k;
    m.R = m.E + cfg->n_zero_experts;
    m.RO = m.R + (cfg->shared_router ? cfg->n_shared : 0);
    m.dl = cfg->d_latent ? cfg->d_latent : m.d;
    m.S = cfg->n_shared * (cfg->d_shared ? cfg->d_shared : cfg->d_ff);
    size_t E = (size_t)m.E, d = (size_t)m.d, ff = (size_t)m.ff, S = (size_t)m.S;
    m.router = rarr((size_t)m.RO * d, 2.0f);
    m.rbias = rarr((size_t)m.RO, 1.0f);
    m.sbias = rarr((size_t)m.R, 0.5f);
    size_t dl = (size_t)m.dl; /* the experts' model width */
    m.wg = rarr(E * ff * dl, wscale);
    m.wu = rarr(E * ff * dl, wscale);
    m.wd = rarr(E * dl * ff, wscale);
    m.bg = rarr(E * ff, 0.5f);
    m.bu = rarr(E * ff, 0.5f);
    m.bd = rarr(E * dl, 0.5f);
    m.sg = rarr(S * d, wscale);
    m.su = rarr(S * d, wscale);
    m.sd = rarr(d * S, wscale);
    m.shg = rarr(d, 1.0f);
    m.ob = rarr(d, 1.0f);
    m.on = rarr(d, 1.0f);
    m.li = rarr(dl * d, 1.0f);
    m.lo = rarr(d * dl, 1.0f);
    m.rs = rarr(d, 1.0f);
    m.en = rarr(d, 1.0f);
    m.es = rarr((size_t)m.R, 1.0f);
    return m;
}

static void model_free(model *m) {
    float *all[20] = {m->router, m->rbias, m->sbias, m->wg, m->wu, m->wd, m->bg,
                      m->bu,     m->bd,    m->sg,    m->su, m->sd, m->shg, m->ob,
                      m->on,     m->li,    m->lo,    m->rs, m->en, m->es};
    for (int i = 0; i < 20; i++) free(all[i]);
}

/* ---- the reference, in double ------------------------------------------------------------- */

typedef struct refcfg { /* the config with its defaults resolved, written out here */
    double eps, p, scale, jitter, alpha, limit, sh_limit;
    int n_group, topk_group;
} refcfg;

static refcfg ref_defaults(const moe_config *c) {
    refcfg r;
    r.eps = c->norm_eps;
    r.p = c->norm_p == 0.0f ? 1.0 : c->norm_p;
    r.scale = c->scale == 0.0f ? 1.0 : c->scale;
    r.jitter = c->jitter_eps == 0.0f ? 0.01 : c->jitter_eps;
    r.alpha = c->act_alpha == 0.0f ? (double)1.702f : c->act_alpha;
    r.limit = c->act_limit == 0.0f ? 7.0 : c->act_limit;
    r.sh_limit = c->shared_act_limit == 0.0f ? r.limit : c->shared_act_limit;
    r.n_group = c->n_group > 1 ? c->n_group : 1;
    r.topk_group = c->n_group > 1 ? (c->topk_group ? c->topk_group : c->n_group) : 1;
    return r;
}

static double dsig(double z) { return 1.0 / (1.0 + exp(-z)); }

/* the k best of key[0..n), key descending then index ascending (selection) */
static void ref_topk(const double *key, int n, int k, int *out) {
    int used[256] = {0};
    for (int j = 0; j < k; j++) {
        int b = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (b < 0 || key[i] > key[b])) b = i;
        used[b] = 1;
        out[j] = b;
    }
}

static double g_ref_gam[64]; /* shared_router: the shared experts' weights */

static void ref_gate(const model *m, const double *h, int *ex, double *w) {
    const moe_config *c = &m->cfg;
    refcfg r = ref_defaults(c);
    int E = m->R, k = m->k; /* every router output: the zero-computation experts too */
    double p[256], key[256], mx = -INFINITY, s = 0.0;
    if (c->score == MOE_SCORE_SPARSEMIXER) { /* HF phimoe sparsemixer, inference */
        double hp[256];
        for (int i = 0; i < E; i++) hp[i] = h[i];
        for (int rr = 0; rr < 2; rr++) {
            int e = 0;
            for (int i = 1; i < E; i++)
                if (hp[i] > hp[e]) e = i;
            double mm = hp[e], den = 0.0;
            for (int j = 0; j < E; j++) {
                double factor = fabs(h[j]) > mm ? fabs(h[j]) : mm;
                if (!((mm - h[j]) / factor > 2.0 * r.jitter)) den += exp(hp[j] - mm);
            }
            ex[rr] = e;
            w[rr] = 1.0 / den;
            hp[e] = -INFINITY;
        }
        return;
    }
    for (int i = 0; i < E; i++) mx = h[i] > mx ? h[i] : mx;
    for (int i = 0; i < E; i++) s += exp(h[i] - mx);
    for (int i = 0; i < E; i++) {
        if (c->score == MOE_SCORE_SOFTMAX) p[i] = exp(h[i] - mx) / s;
        else if (c->score == MOE_SCORE_SIGMOID) p[i] = dsig(h[i]);
        else if (c->score == MOE_SCORE_SQRT_SOFTPLUS) p[i] = sqrt(log1p(exp(h[i])));
        else p[i] = h[i];
        key[i] = p[i] + (c->select_bias ? (double)m->sbias[i] : 0.0);
    }
    if (r.n_group > 1) {
        int G = r.n_group, per = E / G, keep[256];
        double gs[256];
        for (int g = 0; g < G; g++) {
            int two[2];
            ref_topk(key + g * per, per, c->group_score == MOE_GROUP_MAX ? 1 : 2, two);
            gs[g] = key[g * per + two[0]];
            if (c->group_score == MOE_GROUP_TOP2_SUM) gs[g] += key[g * per + two[1]];
        }
        ref_topk(gs, G, r.topk_group, keep);
        for (int g = 0; g < G; g++) {
            int kept = 0;
            for (int j = 0; j < r.topk_group; j++) kept |= keep[j] == g;
            for (int i = 0; !kept && i < per; i++)
                key[g * per + i] = c->group_fill == MOE_GROUP_FILL_ZERO ? 0.0 : -INFINITY;
        }
    }
    ref_topk(key, E, k, ex);
    if (c->score == MOE_SCORE_SOFTMAX_TOPK) {
        double ss = 0.0;
        for (int j = 0; j < k; j++) ss += exp(h[ex[j]] - h[ex[0]]);
        for (int j = 0; j < k; j++) w[j] = exp(h[ex[j]] - h[ex[0]]) / ss;
    } else if (c->score == MOE_SCORE_SIGMOID_TOPK) {
        for (int j = 0; j < k; j++) w[j] = dsig(h[ex[j]]);
    } else {
        for (int j = 0; j < k; j++) w[j] = p[ex[j]];
    }
    double n = 0.0;
    for (int j = 0; c->shared_router && j < c->n_shared; j++) /* Inkling: the shared join the sum */
        n += (g_ref_gam[j] = dsig(h[m->R + j]));
    for (int j = 0; j < k; j++) n += c->norm == MOE_NORM_LP ? pow(fabs(w[j]), r.p) : w[j];
    if (c->norm == MOE_NORM_LP) n = pow(n, 1.0 / r.p);
    if (c->norm == MOE_NORM_SUM) n += r.eps;
    if (c->norm == MOE_NORM_SUM_CLAMP && n < r.eps) n = r.eps;
    for (int j = 0; j < k; j++) {
        if (c->norm != MOE_NORM_NONE) w[j] /= n;
        if (!c->scale_on_sum) w[j] *= r.scale;
        if (c->expert_scale) w[j] *= m->es[ex[j]];
    }
    for (int j = 0; c->shared_router && j < c->n_shared; j++) {
        if (c->norm != MOE_NORM_NONE) g_ref_gam[j] /= n;
        if (!c->scale_on_sum) g_ref_gam[j] *= r.scale;
    }
}

static double ref_act1(const moe_config *c, double z) {
    switch (c->act) {
    case MOE_ACT_GELU_ERF: return 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
    case MOE_ACT_GELU_TANH:
        return 0.5 * z * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (z + 0.044715 * z * z * z)));
    case MOE_ACT_RELU: return z > 0.0 ? z : 0.0;
    case MOE_ACT_RELU2: return z > 0.0 ? z * z : 0.0;
    default: return z * dsig(z);
    }
}

static long g_clamped;   /* how many clamped-SwiGLU inputs were beyond the limit */
static int g_ref_shared; /* ref_ffn is running the shared FFN (its own clamp limit) */

static double ref_act2(const moe_config *c, double g, double u) {
    refcfg r = ref_defaults(c);
    double lim = g_ref_shared ? r.sh_limit : r.limit;
    if (c->act == MOE_ACT_SWIGLU_OAI || c->act == MOE_ACT_SWIGLU_CLAMP) {
        if (g > lim) g = lim, g_clamped++;
        if (u > lim) u = lim, g_clamped++;
        if (u < -lim) u = -lim, g_clamped++;
        return c->act == MOE_ACT_SWIGLU_CLAMP ? g * dsig(g) * u : (u + 1.0) * g * dsig(r.alpha * g);
    }
    if (c->act == MOE_ACT_SILU_CLAMP) { /* the clamp after the activation */
        double a = g * dsig(g);
        if (a > lim) a = lim, g_clamped++;
        if (u > lim) u = lim, g_clamped++;
        if (u < -lim) u = -lim, g_clamped++;
        return a * u;
    }
    return ref_act1(c, g) * u;
}

/* out[d] = FFN(x) for one expert given its matrices (biases may be NULL) */
static void ref_ffn(const model *m, int d, int F, const float *wg, const float *wu, const float *wd,
                    const float *bg, const float *bu, const float *bd, const double *x, double *out) {
    const moe_config *c = &m->cfg;
    int gated = c->ffn == MOE_FFN_GATED;
    double *hid = (double *)malloc((size_t)F * sizeof(double));
    for (int f = 0; f < F; f++) {
        double g = 0.0, u = 0.0;
        for (int i = 0; i < d; i++) {
            if (gated) g += (double)wg[(size_t)f * d + i] * x[i];
            u += (double)wu[(size_t)f * d + i] * x[i];
        }
        if (bu) u += bu[f];
        if (gated && bg) g += bg[f];
        hid[f] = gated ? ref_act2(c, g, u) : ref_act1(c, u);
        if (g_ref_shared && c->shared_router) hid[f] *= g_ref_gam[f / (F / c->n_shared)];
    }
    for (int o = 0; o < d; o++) {
        double s = bd ? (double)bd[o] : 0.0;
        for (int f = 0; f < F; f++) s += (double)wd[(size_t)o * F + f] * hid[f];
        out[o] = s;
    }
    free(hid);
}

typedef struct refout {
    int *ex;        /* [T][k] */
    double *w;      /* [T][k] */
    int *drop;      /* [T][k] */
    double *logits; /* [T][E] */
} refout;

/* y[T][d] in double; ro (optional) gets the routing */
static void ref_forward(const model *m, const float *x, int T, double *y, refout *ro) {
    const moe_config *c = &m->cfg;
    int E = m->E, d = m->d, k = m->k, ff = m->ff, dl = m->dl, D = d > dl ? d : dl;
    int *count = (int *)calloc((size_t)E, sizeof(int));
    double *xd = (double *)malloc((size_t)d * sizeof(double));
    double *xr = (double *)malloc((size_t)d * sizeof(double)); /* the router's input */
    double *xn = (double *)malloc((size_t)d * sizeof(double)); /* the experts' before latent_in */
    double *xe = (double *)malloc((size_t)dl * sizeof(double)); /* the experts' input */
    double *xin = (double *)malloc((size_t)dl * sizeof(double));
    double *z = (double *)malloc((size_t)D * sizeof(double));
    double *ys = (double *)malloc((size_t)dl * sizeof(double)); /* the routed sum */
    double h[256], w[256];
    int ex[256];
    for (int t = 0; t < T; t++) {
        double sx = 0.0, ieps = c->in_norm_eps == 0.0f ? (double)1e-6f : c->in_norm_eps;
        for (int i = 0; i < d; i++) xd[i] = x[(size_t)t * d + i], sx += xd[i] * xd[i];
        double rn = 1.0 / sqrt(sx / d + ieps);
        for (int i = 0; i < d; i++) { /* Gemma-4: the router's and the experts' inputs */
            xr[i] = c->router_in_norm ? xd[i] * rn * m->rs[i] / sqrt((double)d) : xd[i];
            xn[i] = c->expert_in_norm ? xd[i] * rn * m->en[i] : xd[i];
        }
        for (int i = 0; i < dl; i++) { /* Nemotron-H fc1_latent_proj */
            double s = 0.0;
            for (int j = 0; j < d; j++) s += (double)m->li[(size_t)i * d + j] * xn[j];
            xe[i] = c->d_latent ? s : xn[i];
        }
        for (int e = 0; e < m->RO; e++) {
            double s = c->router_bias ? (double)m->rbias[e] : 0.0;
            for (int i = 0; i < d; i++) s += (double)m->router[(size_t)e * d + i] * xr[i];
            h[e] = c->logit_softcap > 0.0f ? tanh(s / c->logit_softcap) * c->logit_softcap : s;
        }
        ref_gate(m, h, ex, w);
        double *yt = y + (size_t)t * d;
        for (int i = 0; i < dl; i++) ys[i] = 0.0;
        for (int j = 0; j < k; j++) {
            int e = ex[j], dropped = e < E && c->capacity > 0 && count[e]++ >= c->capacity;
            if (ro) {
                ro->ex[t * k + j] = e;
                ro->w[t * k + j] = w[j];
                ro->drop[t * k + j] = dropped;
            }
            if (dropped || e >= E) { /* a zero-computation expert: w x */
                if (e >= E || c->drop == MOE_DROP_IDENTITY)
                    for (int i = 0; i < dl; i++) ys[i] += w[j] * xe[i];
                continue;
            }
            for (int i = 0; i < dl; i++) xin[i] = c->weight_on_input ? w[j] * xe[i] : xe[i];
            size_t E1 = (size_t)e * ff * dl;
            ref_ffn(m, dl, ff, m->wg + E1, m->wu + E1, m->wd + (size_t)e * dl * ff,
                    c->expert_bias ? m->bg + (size_t)e * ff : NULL,
                    c->expert_bias ? m->bu + (size_t)e * ff : NULL,
                    c->expert_bias ? m->bd + (size_t)e * dl : NULL, xin, z);
            for (int i = 0; i < dl; i++) ys[i] += (c->weight_on_input ? 1.0 : w[j]) * z[i];
        }
        for (int i = 0; i < d; i++) { /* fc2_latent_proj */
            double s = 0.0;
            for (int j = 0; j < dl; j++) s += (double)m->lo[(size_t)i * dl + j] * ys[j];
            yt[i] = c->d_latent ? s : ys[i];
        }
        if (c->scale_on_sum) /* the routed sum times the scale, then the shared output */
            for (int i = 0; i < d; i++) yt[i] *= ref_defaults(c).scale;
        if (m->S) {
            double g = 1.0;
            if (c->shared_gate == MOE_SHARED_GATE_SIGMOID) {
                double s = 0.0;
                for (int i = 0; i < d; i++) s += (double)m->shg[i] * xd[i];
                g = dsig(s);
            }
            g_ref_shared = 1;
            ref_ffn(m, d, m->S, m->sg, m->su, m->sd, NULL, NULL, NULL, xd, z);
            g_ref_shared = 0;
            for (int i = 0; i < d; i++) yt[i] += g * z[i];
            if (c->shared_combine == MOE_SHARED_AVERAGE)
                for (int i = 0; i < d; i++) yt[i] *= 0.5;
        }
        if (c->output_bias)
            for (int i = 0; i < d; i++) yt[i] += m->ob[i];
        if (c->out_norm == MOE_OUT_NORM_RMS) {
            double ss = 0.0, eps = c->out_norm_eps == 0.0f ? (double)1e-6f : c->out_norm_eps;
            for (int i = 0; i < d; i++) ss += yt[i] * yt[i];
            double rr = 1.0 / sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) yt[i] *= rr * m->on[i];
        }
        if (ro)
            for (int e = 0; e < m->RO; e++) ro->logits[(size_t)t * m->RO + e] = h[e];
    }
    free(count);
    free(xd);
    free(xr);
    free(xn);
    free(xe);
    free(xin);
    free(z);
    free(ys);
}

/* ---- dtype encoders (for values exact in the target type) -------------------------------- */

static uint16_t enc_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
/* written here from the IEEE binary16 definition, for exact values (and +-inf) */
static uint16_t enc_f16(float f) {
    uint16_t sign = signbit(f) ? 0x8000u : 0u;
    double a = fabs((double)f);
    if (isinf(f)) return (uint16_t)(sign | 0x7c00u);
    if (a == 0.0) return sign;
    int ex;
    double fr = frexp(a, &ex); /* a = fr 2^ex, fr in [0.5, 1) */
    int e = ex - 1;            /* a = (2 fr) 2^e */
    if (e >= -14) return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((2.0 * fr - 1.0) * 1024.0));
    return (uint16_t)(sign | (uint16_t)(a / ldexp(1.0, -24))); /* subnormal */
}
static double dec_f16(uint16_t h) {
    int e = (h >> 10) & 31, mant = h & 1023;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return mant ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp((double)mant, -24);
    return s * ldexp(1.0 + mant / 1024.0, e - 15);
}

/* ---- source buffers ----------------------------------------------------------------------- */

typedef struct fmt {
    moe_dtype dtype;
    moe_layout layout;
    int per_expert, fused;
    moe_gate_up_split split;
} fmt;

#define POOL_MAX 4096
typedef struct pool {
    void *p[POOL_MAX];
    size_t bytes[POOL_MAX];
    int reported[POOL_MAX];
    int is_bias[POOL_MAX];
    int n;
} pool;

static void *pool_alloc(pool *pl, size_t bytes, int is_bias) {
    void *p = malloc(bytes ? bytes : 1);
    pl->p[pl->n] = p;
    pl->bytes[pl->n] = bytes;
    pl->reported[pl->n] = 0;
    pl->is_bias[pl->n] = is_bias;
    pl->n++;
    return p;
}

static void pool_free(pool *pl) {
    for (int i = 0; i < pl->n; i++) free(pl->p[i]);
    pl->n = 0;
}

static void put(void *buf, moe_dtype dt, size_t i, float v) {
    if (dt == MOE_F32) ((float *)buf)[i] = v;
    else if (dt == MOE_BF16) ((uint16_t *)buf)[i] = enc_bf16(v);
    else ((uint16_t *)buf)[i] = enc_f16(v);
}

/* One tensor of n_exp experts, logical [out][in]. For a fused gate_up: a = gate, b = up, out =
   2 * rows of a. Vectors: in = 1 (layout irrelevant). */
static moe_tensor make_tensor(pool *pl, fmt f, int n_exp, int out, int in, const float *a,
                              const float *b, int is_bias) {
    moe_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = f.dtype;
    t.layout = f.layout;
    size_t es = f.dtype == MOE_F32 ? 4 : 2, per = (size_t)out * in;
    void *whole = NULL;
    const void **pe = NULL;
    if (f.per_expert) pe = (const void **)pool_alloc(pl, (size_t)n_exp * sizeof(void *), -1);
    else whole = pool_alloc(pl, (size_t)n_exp * per * es, is_bias);
    for (int e = 0; e < n_exp; e++) {
        void *buf = f.per_expert ? pool_alloc(pl, per * es, is_bias)
                                 : (char *)whole + (size_t)e * per * es;
        if (f.per_expert) pe[e] = buf;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                float v;
                if (b) { /* fused: which half */
                    int half = out / 2, isup, r;
                    if (f.split == MOE_SPLIT_INTERLEAVED) isup = o & 1, r = o / 2;
                    else isup = o >= half, r = isup ? o - half : o;
                    v = (isup ? b : a)[(size_t)e * half * in + (size_t)r * in + i];
                } else {
                    v = a[(size_t)e * per + (size_t)o * in + i];
                }
                size_t at = f.layout == MOE_OUT_IN || in == 1 ? (size_t)o * in + i
                                                              : (size_t)i * out + o;
                put(buf, f.dtype, at, v);
            }
    }
    if (f.per_expert) t.per_expert = pe;
    else t.data = whole;
    return t;
}

/* the moe_weights of a model in format f (router and gate-vector always fp32 OUT_IN data) */
static moe_weights make_weights(const model *m, fmt f, pool *pl) {
    moe_weights w;
    const moe_config *c = &m->cfg;
    int E = m->E, d = m->d, ff = m->ff, gated = c->ffn == MOE_FFN_GATED;
    fmt vec = f, one = f;
    memset(&w, 0, sizeof w);
    vec.layout = MOE_OUT_IN;
    one.per_expert = 0;
    fmt plain = {MOE_F32, MOE_OUT_IN, 0, 0, MOE_SPLIT_HALVES};
    w.router = make_tensor(pl, plain, 1, m->RO, d, m->router, NULL, 0);
    if (c->router_bias) w.router_bias = make_tensor(pl, plain, 1, m->RO, 1, m->rbias, NULL, 1);
    if (c->select_bias) w.select_bias = make_tensor(pl, plain, 1, m->R, 1, m->sbias, NULL, 1);
    if (c->output_bias) w.output_bias = make_tensor(pl, plain, 1, d, 1, m->ob, NULL, 1);
    if (c->out_norm) w.out_norm = make_tensor(pl, plain, 1, d, 1, m->on, NULL, 1);
    if (c->router_in_norm) w.router_in_scale = make_tensor(pl, plain, 1, d, 1, m->rs, NULL, 1);
    if (c->expert_in_norm) w.expert_in_norm = make_tensor(pl, plain, 1, d, 1, m->en, NULL, 1);
    if (c->expert_scale) w.expert_scale = make_tensor(pl, plain, 1, m->R, 1, m->es, NULL, 1);
    w.gate_up_split = f.split;
    w.shared_gate_up_split = f.split;
    int dl = m->dl; /* the experts' model width */
    if (c->d_latent) {
        w.latent_in = make_tensor(pl, one, 1, dl, d, m->li, NULL, 0);
        w.latent_out = make_tensor(pl, one, 1, d, dl, m->lo, NULL, 0);
    }
    if (gated && f.fused) {
        w.gate_up = make_tensor(pl, f, E, 2 * ff, dl, m->wg, m->wu, 0);
    } else {
        if (gated) w.gate = make_tensor(pl, f, E, ff, dl, m->wg, NULL, 0);
        w.up = make_tensor(pl, f, E, ff, dl, m->wu, NULL, 0);
    }
    w.down = make_tensor(pl, f, E, dl, ff, m->wd, NULL, 0);
    if (c->expert_bias) {
        if (gated && f.fused) w.gate_up_bias = make_tensor(pl, vec, E, 2 * ff, 1, m->bg, m->bu, 1);
        else {
            if (gated) w.gate_bias = make_tensor(pl, vec, E, ff, 1, m->bg, NULL, 1);
            w.up_bias = make_tensor(pl, vec, E, ff, 1, m->bu, NULL, 1);
        }
        w.down_bias = make_tensor(pl, vec, E, dl, 1, m->bd, NULL, 1);
    }
    if (m->S) {
        if (gated && f.fused) w.shared_gate_up = make_tensor(pl, one, 1, 2 * m->S, d, m->sg, m->su, 0);
        else {
            if (gated) w.shared_gate_proj = make_tensor(pl, one, 1, m->S, d, m->sg, NULL, 0);
            w.shared_up = make_tensor(pl, one, 1, m->S, d, m->su, NULL, 0);
        }
        w.shared_down = make_tensor(pl, one, 1, d, m->S, m->sd, NULL, 0);
        if (c->shared_gate) w.shared_gate = make_tensor(pl, plain, 1, d, 1, m->shg, NULL, 1);
    }
    return w;
}

/* ---- running a layer ---------------------------------------------------------------------- */

static const fmt F32 = {MOE_F32, MOE_OUT_IN, 0, 0, MOE_SPLIT_HALVES};

static float *make_x(int T, int d, float scale) {
    float *x = (float *)malloc(((size_t)T * d + 1) * sizeof(float));
    for (int i = 0; i < T * d; i++) x[i] = rval(scale);
    return x;
}

/* forward with a fresh workspace; returns the result */
static moe_result fwd(const moe_layer *L, const float *x, int T, float *y, moe_trace *tr,
                      int n_threads) {
    size_t bytes = 0;
    moe_result r = moe_workspace_size(L, (size_t)T, &bytes);
    if (r != MOE_OK) return r;
    moe_workspace ws;
    ws.data = malloc(bytes);
    ws.size = bytes;
    ws.n_threads = n_threads;
    r = moe_forward(L, x, (size_t)T, y, &ws, tr);
    free(ws.data);
    return r;
}

/* max |y - yr| <= YTOL * max|yr| (and no NaN); prints the worst element */
static void check_y(const float *y, const double *yr, size_t n, const char *what, int line) {
    double mx = 0.0, worst = 0.0;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) mx = fabs(yr[i]) > mx ? fabs(yr[i]) : mx;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - yr[i]);
        if (!(e <= worst) || y[i] != y[i]) worst = e, wi = i, bad |= y[i] != y[i];
    }
    if (!bad && worst <= YTOL * (mx > 0.0 ? mx : 1e-30)) n_pass++;
    else {
        n_fail++;
        printf("%s:%d: %s: y[%zu] = %.9g, reference %.9g (max err %.3g, max|y| %.3g)\n", __FILE__,
               line, what, wi, (double)y[wi], yr[wi], worst, mx);
    }
}

/* Builds the layer of model m in format f, runs T tokens, checks y and the routing against the
   reference. Returns the output (caller frees) if want_y. */
static float *run_case(const model *m, fmt f, int T, float xscale, const char *what, int line,
                       int want_y) {
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(m, f, &pl);
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, &m->cfg, &w);
    if (r != MOE_OK) {
        n_fail++;
        printf("%s:%d: %s: create: %s\n", __FILE__, line, what, moe_result_string(r));
        pool_free(&pl);
        return NULL;
    }
    pool_free(&pl); /* the layer must not reference the sources any more */
    int k = m->k, E = m->RO;
    size_t n = (size_t)T * m->d;
    float *x = make_x(T, m->d, xscale), *y = (float *)malloc((n + 1) * sizeof(float));
    double *yr = (double *)malloc((n + 1) * sizeof(double));
    refout ro;
    ro.ex = (int *)malloc(((size_t)T * k + 1) * sizeof(int));
    ro.w = (double *)malloc(((size_t)T * k + 1) * sizeof(double));
    ro.drop = (int *)malloc(((size_t)T * k + 1) * sizeof(int));
    ro.logits = (double *)malloc(((size_t)T * E + 1) * sizeof(double));
    int32_t *tex = (int32_t *)malloc(((size_t)T * k + 1) * sizeof(int32_t));
    float *tw = (float *)malloc(((size_t)T * k + 1) * sizeof(float));
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = tex;
    tr.weight = tw;
    r = fwd(L, x, T, y, &tr, 0);
    CHECK_INT(r, MOE_OK);
    ref_forward(m, x, T, yr, &ro);
    check_y(y, yr, n, what, line);
    int route_ok = 1;
    for (int i = 0; i < T * k; i++) {
        double wr = ro.drop[i] ? 0.0 : ro.w[i];
        if (tex[i] != ro.ex[i] || fabs((double)tw[i] - wr) > 1e-5 * (fabs(wr) > 1 ? fabs(wr) : 1))
            route_ok = 0;
    }
    if (!route_ok) printf("%s:%d: %s: routing differs from the reference\n", __FILE__, line, what);
    CHECK(route_ok);
    moe_layer_free(L);
    free(x);
    free(yr);
    free(ro.ex);
    free(ro.w);
    free(ro.drop);
    free(ro.logits);
    free(tex);
    free(tw);
    if (want_y) return y;
    free(y);
    return NULL;
}

static moe_config cfg_dims(int d, int ff, int E, int k) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = d, c.d_ff = ff, c.n_experts = E, c.top_k = k;
    return c;
}

#define RUN(m, f, T, what) run_case(&(m), (f), (T), 1.0f, (what), __LINE__, 0)

/* ---- tests -------------------------------------------------------------------------------- */

static void test_activations(void) {
    const char *names[8] = {"silu", "gelu_erf", "gelu_tanh", "relu", "swiglu_oai", "relu2",
                            "swiglu_clamp", "silu_clamp"};
    for (int a = 0; a <= MOE_ACT_SILU_CLAMP; a++)
        for (int plain = 0; plain < 2; plain++) {
            if (plain && (a == MOE_ACT_SWIGLU_OAI || a == MOE_ACT_SWIGLU_CLAMP ||
                          a == MOE_ACT_SILU_CLAMP))
                continue;
            moe_config c = cfg_dims(17, 33, 5, 2);
            c.act = (moe_act)a;
            c.ffn = plain ? MOE_FFN_PLAIN : MOE_FFN_GATED;
            c.norm = MOE_NORM_SUM;
            model m = model_make(&c, 1.0f);
            char what[64];
            snprintf(what, sizeof what, "act %s %s", names[a], plain ? "plain" : "gated");
            RUN(m, F32, 9, what);
            model_free(&m);
        }
    /* SwiGLU-OAI: custom alpha and limit, and inputs well beyond the limit */
    moe_config c = cfg_dims(16, 16, 4, 2);
    c.act = MOE_ACT_SWIGLU_OAI;
    c.act_alpha = 1.25f;
    c.act_limit = 0.75f;
    c.score = MOE_SCORE_SOFTMAX_TOPK;
    c.router_bias = 1;
    c.expert_bias = 1;
    model m = model_make(&c, 1.0f);
    g_clamped = 0;
    run_case(&m, F32, 8, 3.0f, "swiglu_oai alpha 1.25 limit 0.75", __LINE__, 0);
    CHECK(g_clamped > 100); /* the clamps really were exercised, on both sides */
    model_free(&m);
    /* defaults (alpha 1.702, limit 7) with large inputs */
    c.act_alpha = 0.0f;
    c.act_limit = 0.0f;
    m = model_make(&c, 4.0f);
    g_clamped = 0;
    run_case(&m, F32, 8, 4.0f, "swiglu_oai defaults, beyond 7", __LINE__, 0);
    CHECK(g_clamped > 20);
    model_free(&m);
    /* DeepSeek-V4's clamp before silu (no +1) and Step-3.7's clamp after it, each with inputs
       beyond the limit, and a shared FFN with its own limit (or none: +inf) */
    for (int a = 0; a < 2; a++)
        for (int sh = 0; sh < 3; sh++) {
            c = cfg_dims(16, 16, 4, 2);
            c.act = a ? MOE_ACT_SILU_CLAMP : MOE_ACT_SWIGLU_CLAMP;
            c.act_limit = 0.8f;
            c.n_shared = 1, c.d_shared = 12;
            c.shared_act_limit = sh == 0 ? 0.0f : sh == 1 ? 1.9f : (float)INFINITY;
            m = model_make(&c, 3.0f);
            g_clamped = 0;
            char what[80];
            snprintf(what, sizeof what, "%s limit 0.8, shared limit %s", a ? "silu_clamp" : "swiglu_clamp",
                     sh == 0 ? "the same" : sh == 1 ? "1.9" : "none");
            run_case(&m, F32, 8, 3.0f, what, __LINE__, 0);
            CHECK(g_clamped > 20);
            model_free(&m);
        }
}

static void test_layouts(void) {
    /* every source format gives the same packed fp32 numbers: same y, bit for bit, and the
       reference's */
    moe_config c = cfg_dims(19, 21, 6, 2);
    c.norm = MOE_NORM_SUM;
    c.expert_bias = 1;
    c.n_shared = 2;
    c.d_shared = 5;
    model m = model_make(&c, 1.0f);
    float *y0 = NULL;
    int T = 7;
    size_t n = (size_t)T * m.d;
    for (int dt = 0; dt < 3; dt++)
        for (int lay = 0; lay < 2; lay++)
            for (int pe = 0; pe < 2; pe++)
                for (int fu = 0; fu < 3; fu++) {
                    fmt f;
                    f.dtype = (moe_dtype)dt;
                    f.layout = (moe_layout)lay;
                    f.per_expert = pe;
                    f.fused = fu > 0;
                    f.split = fu == 2 ? MOE_SPLIT_INTERLEAVED : MOE_SPLIT_HALVES;
                    char what[96];
                    snprintf(what, sizeof what, "dtype %d layout %d per_expert %d fused %d", dt,
                             lay, pe, fu);
                    g_rng = 777u; /* the same x each time */
                    float *y = run_case(&m, f, T, 1.0f, what, __LINE__, 1);
                    if (!y) continue;
                    if (!y0) {
                        y0 = y; /* the first: f32, OUT_IN, one buffer, separate gate and up */
                        continue;
                    }
                    int same = memcmp(y, y0, n * sizeof *y) == 0;
                    if (!same) printf("  (%s: not bit-identical to f32 out_in)\n", what);
                    CHECK(same);
                    free(y);
                }
    free(y0);
    model_free(&m);

    /* plain FFN in every layout; weight_on_input with fused halves in IN_OUT (Llama-4) */
    c = cfg_dims(9, 3, 3, 1);
    c.ffn = MOE_FFN_PLAIN;
    c.act = MOE_ACT_RELU;
    c.expert_bias = 1;
    m = model_make(&c, 1.0f);
    fmt f = {MOE_BF16, MOE_IN_OUT, 1, 0, MOE_SPLIT_HALVES};
    RUN(m, f, 5, "plain relu bf16 in_out per_expert");
    f.dtype = MOE_F16;
    f.per_expert = 0;
    RUN(m, f, 5, "plain relu f16 in_out");
    model_free(&m);
}

static void test_f16_special(void) {
    /* the converters, exhaustively, against decoders written here */
    int bad16 = 0, badb = 0;
    for (uint32_t hbits = 0; hbits < 65536; hbits++) {
        double want = dec_f16((uint16_t)hbits);
        float got = moe__f16_to_f32((uint16_t)hbits);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want))
            bad16++;
        uint32_t u = hbits << 16;
        float fb;
        memcpy(&fb, &u, 4);
        float gb = moe__bf16_to_f32((uint16_t)hbits);
        if (isnan(fb) ? !isnan(gb) : memcmp(&fb, &gb, 4) != 0) badb++;
    }
    CHECK_INT(bad16, 0);
    CHECK_INT(badb, 0);
    CHECK(moe__f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* the smallest subnormal */
    CHECK(moe__f16_to_f32(0x03ff) == 1023.0f * ldexpf(1.0f, -24));
    CHECK(moe__f16_to_f32(0x7c00) == INFINITY && moe__f16_to_f32(0xfc00) == -INFINITY);

    /* a layer whose down matrix is all f16 subnormals (|w| < 2^-14) */
    moe_config c = cfg_dims(8, 16, 4, 2);
    c.norm = MOE_NORM_SUM;
    model m = model_make(&c, 1.0f);
    for (int i = 0; i < m.E * m.d * m.ff; i++) m.wd[i] *= ldexpf(1.0f, -14); /* |w| < 2^-15 */
    int sub = 0, exact = 1;
    for (int i = 0; i < m.E * m.d * m.ff; i++) {
        uint16_t hb = enc_f16(m.wd[i]);
        sub += (hb & 0x7c00) == 0 && (hb & 0x3ff) != 0;
        exact &= dec_f16(hb) == (double)m.wd[i];
    }
    CHECK(exact);
    CHECK(sub > m.E * m.d * m.ff / 2);
    fmt f = {MOE_F16, MOE_OUT_IN, 0, 0, MOE_SPLIT_HALVES};
    RUN(m, f, 6, "f16 subnormal down");
    f.layout = MOE_IN_OUT;
    f.per_expert = 1;
    RUN(m, f, 6, "f16 subnormal down, in_out per_expert");
    model_free(&m);

    /* an f16 router bias of -inf switches an expert off: it is never selected */
    c = cfg_dims(8, 8, 4, 2);
    c.router_bias = 1;
    m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    uint16_t rb16[4] = {enc_f16(0.5f), 0xfc00u /* -inf */, enc_f16(-0.25f), enc_f16(1.0f)};
    w.router_bias.data = rb16;
    w.router_bias.dtype = MOE_F16;
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    int T = 12;
    float *x = make_x(T, 8, 1.0f), y[12 * 8];
    int32_t ex[24];
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = ex;
    CHECK_INT(fwd(L, x, T, y, &tr, 0), MOE_OK);
    int used1 = 0, finite = 1;
    for (int i = 0; i < T * 2; i++) used1 |= ex[i] == 1;
    for (int i = 0; i < T * 8; i++) finite &= isfinite(y[i]) != 0;
    CHECK(!used1);
    CHECK(finite);
    /* the same against the reference (bias -inf in double) */
    m.rbias[0] = 0.5f, m.rbias[1] = -INFINITY, m.rbias[2] = -0.25f, m.rbias[3] = 1.0f;
    double yr[12 * 8];
    ref_forward(&m, x, T, yr, NULL);
    check_y(y, yr, (size_t)T * 8, "f16 router bias -inf", __LINE__);
    moe_layer_free(L);
    free(x);
    model_free(&m);
}

static void test_families(void) {
    /* a spread of whole-layer configs against the reference */
    struct {
        const char *name;
        int d, ff, E, k, T;
        moe_score score;
        moe_norm norm;
        float eps, scale;
        int rbias, sbias, ng, tg;
        moe_group_score gs;
        int ns, ds, sgate, ebias, woi;
        moe_act act;
    } cs[] = {
        {"mixtral", 16, 32, 8, 2, 9, MOE_SCORE_SOFTMAX, MOE_NORM_SUM, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"qwen2 shared gated", 12, 8, 6, 4, 5, MOE_SCORE_SOFTMAX, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 1, 24, 1, 0, 0, MOE_ACT_SILU},
        {"deepseek v3", 8, 8, 8, 3, 6, MOE_SCORE_SIGMOID, MOE_NORM_SUM, 1e-20f, 2.5f, 0, 1, 4, 2, MOE_GROUP_TOP2_SUM, 2, 4, 0, 0, 0, MOE_ACT_SILU},
        {"deepseek v2", 8, 8, 8, 3, 6, MOE_SCORE_SOFTMAX, MOE_NORM_NONE, 0, 16.0f, 0, 0, 4, 2, MOE_GROUP_MAX, 2, 0, 0, 0, 0, MOE_ACT_SILU},
        {"dbrx lp2", 8, 16, 5, 3, 4, MOE_SCORE_SOFTMAX, MOE_NORM_LP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"ernie", 8, 8, 6, 2, 4, MOE_SCORE_SOFTMAX, MOE_NORM_SUM_CLAMP, 1e-12f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, MOE_ACT_SILU},
        {"gpt-oss", 8, 8, 6, 3, 5, MOE_SCORE_SOFTMAX_TOPK, MOE_NORM_NONE, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, MOE_ACT_SWIGLU_OAI},
        {"llama4", 8, 8, 5, 1, 7, MOE_SCORE_SIGMOID_TOPK, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, MOE_ACT_SILU},
        {"llama4 k2 woi", 8, 8, 5, 2, 7, MOE_SCORE_SIGMOID_TOPK, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, MOE_ACT_SILU},
        {"phimoe", 8, 8, 4, 2, 6, MOE_SCORE_SPARSEMIXER, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"grok gelu tanh", 8, 8, 8, 2, 4, MOE_SCORE_SOFTMAX, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_GELU_TANH},
        {"d1 ff1", 1, 1, 3, 2, 5, MOE_SCORE_SOFTMAX, MOE_NORM_SUM, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, MOE_ACT_SILU},
        {"d3 ff17 k=E", 3, 17, 3, 3, 4, MOE_SCORE_SOFTMAX, MOE_NORM_SUM, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, MOE_ACT_GELU_ERF},
        {"d33 ff3 E7 k1", 33, 3, 7, 1, 5, MOE_SCORE_SOFTMAX, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 1, 33, 0, 0, 0, MOE_ACT_SILU},
        {"d17 ff33 E5 T1", 17, 33, 5, 2, 1, MOE_SCORE_SIGMOID, MOE_NORM_SUM, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"E1 k1", 5, 7, 1, 1, 3, MOE_SCORE_SOFTMAX, MOE_NORM_NONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"E18 k=E", 4, 4, 18, 18, 3, MOE_SCORE_SOFTMAX, MOE_NORM_SUM, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, MOE_ACT_SILU},
        {"T40 E12 groups", 16, 16, 12, 4, 40, MOE_SCORE_SIGMOID, MOE_NORM_SUM, 1e-20f, 2.0f, 0, 1, 3, 2, MOE_GROUP_TOP2_SUM, 1, 0, 1, 0, 0, MOE_ACT_SILU},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        moe_config c = cfg_dims(cs[i].d, cs[i].ff, cs[i].E, cs[i].k);
        c.score = cs[i].score, c.norm = cs[i].norm, c.norm_eps = cs[i].eps, c.scale = cs[i].scale;
        c.router_bias = cs[i].rbias, c.select_bias = cs[i].sbias;
        c.n_group = cs[i].ng, c.topk_group = cs[i].tg, c.group_score = cs[i].gs;
        c.n_shared = cs[i].ns, c.d_shared = cs[i].ds;
        c.shared_gate = cs[i].sgate ? MOE_SHARED_GATE_SIGMOID : MOE_SHARED_GATE_NONE;
        c.expert_bias = cs[i].ebias, c.weight_on_input = cs[i].woi, c.act = cs[i].act;
        if (c.norm == MOE_NORM_LP) c.norm_p = 2.0f;
        model m = model_make(&c, 1.0f);
        RUN(m, F32, cs[i].T, cs[i].name);
        fmt f = {MOE_BF16, MOE_IN_OUT, 1, 1, MOE_SPLIT_INTERLEAVED};
        RUN(m, f, cs[i].T, cs[i].name);
        model_free(&m);
    }
    /* plain FFN with shared experts (gated and not) */
    for (int sg = 0; sg < 2; sg++) {
        moe_config c = cfg_dims(10, 6, 4, 2);
        c.ffn = MOE_FFN_PLAIN;
        c.act = MOE_ACT_GELU_ERF;
        c.n_shared = 1;
        c.shared_gate = sg ? MOE_SHARED_GATE_SIGMOID : MOE_SHARED_GATE_NONE;
        model m = model_make(&c, 1.0f);
        RUN(m, F32, 6, sg ? "plain + gated shared" : "plain + shared");
        model_free(&m);
    }
    /* the 0.2 options, each with the others that interact with it: the scale on the routed sum
       (with and without shared experts, gated or not), the shared/routed average, soft-capped
       logits, sqrt(softplus) scores with a selection bias, 0.0 for dropped groups (with keys
       below 0, where it matters), relu2 in a plain FFN */
    for (int v = 0; v < 9; v++) {
        moe_config c = cfg_dims(12, 10, 8, 3);
        const char *what = "";
        switch (v) {
        case 0: c.score = MOE_SCORE_SIGMOID, c.select_bias = 1, c.norm = MOE_NORM_SUM, c.scale = 2.5f;
            c.scale_on_sum = 1, what = "scale on the sum"; break;
        case 1: c.score = MOE_SCORE_SIGMOID, c.norm = MOE_NORM_SUM, c.scale = 1.7f, c.scale_on_sum = 1;
            c.n_shared = 1, c.d_shared = 14, what = "scale on the sum + shared"; break;
        case 2: c.scale = 0.6f, c.scale_on_sum = 1, c.n_shared = 1, c.shared_gate = MOE_SHARED_GATE_SIGMOID;
            what = "scale on the sum + gated shared"; break;
        case 3: c.n_shared = 2, c.shared_combine = MOE_SHARED_AVERAGE, what = "shared average"; break;
        case 4: c.score = MOE_SCORE_SOFTMAX_TOPK, c.n_shared = 1, c.shared_combine = MOE_SHARED_AVERAGE;
            c.shared_gate = MOE_SHARED_GATE_SIGMOID, what = "gated shared average"; break;
        case 5: c.score = MOE_SCORE_SIGMOID, c.logit_softcap = 0.9f, c.norm = MOE_NORM_SUM;
            what = "softcap 0.9"; break;
        case 6: c.score = MOE_SCORE_SQRT_SOFTPLUS, c.select_bias = 1, c.norm = MOE_NORM_SUM;
            c.norm_eps = 1e-20f, c.scale = 1.5f, what = "sqrt softplus"; break;
        case 7: c.score = MOE_SCORE_SIGMOID, c.select_bias = 1, c.n_group = 4, c.topk_group = 2;
            c.group_score = MOE_GROUP_TOP2_SUM, c.group_fill = MOE_GROUP_FILL_ZERO;
            what = "group fill 0.0"; break;
        default: c.ffn = MOE_FFN_PLAIN, c.act = MOE_ACT_RELU2, c.n_shared = 1, what = "plain relu2"; break;
        }
        model m = model_make(&c, 1.0f);
        if (v == 7) /* selection biases that push some keys below 0 */
            for (int e = 0; e < 8; e++) m.sbias[e] = e & 1 ? -0.9f : 0.05f * (float)e;
        RUN(m, F32, 11, what);
        fmt f = {MOE_BF16, MOE_IN_OUT, 1, 1, MOE_SPLIT_INTERLEAVED};
        RUN(m, f, 11, what);
        model_free(&m);
    }
}

/* counting sort: rows grouped by expert, token order inside, offsets */
static void test_plan(void) {
    /* identity router: logits = x. E = 3, k = 2, SIGMOID_TOPK so keys = x. */
    moe_config c = cfg_dims(3, 4, 3, 2);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    model m = model_make(&c, 1.0f);
    for (int i = 0; i < 9; i++) m.router[i] = (i % 4 == 0) ? 1.0f : 0.0f;
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    /* picks: t0 {2,0}, t1 {1,2}, t2 {0,1}, t3 {2,1}, t4 {0,2} */
    float x[15] = {0.5f, 0.1f, 0.9f, 0.0f, 0.8f, 0.3f, 0.7f, 0.6f, 0.2f,
                   0.1f, 0.4f, 0.95f, 0.9f, 0.0f, 0.5f};
    int T = 5;
    size_t bytes;
    CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 1;
    moe__ws wk;
    CHECK_INT(moe__begin(L, (size_t)T, (size_t)T * L->k, 1, &ws, &wk), MOE_OK);
    moe__route(L, x, (size_t)T, &wk, 1);
    moe__plan(L, (size_t)T, &wk, 1);
    int want_ex[10] = {2, 0, 1, 2, 0, 1, 2, 1, 0, 2};
    int ok = 1;
    for (int i = 0; i < 10; i++) ok &= wk.ex[i] == want_ex[i];
    CHECK(ok);
    /* expert 0: pairs 1 (t0), 4 (t2), 8 (t4); expert 1: 2 (t1), 5 (t2), 7 (t3);
       expert 2: 0 (t0), 3 (t1), 6 (t3), 9 (t4) */
    int want_off[5] = {0, 3, 6, 10, 10}; /* no shared experts: off[E+1] = off[E] */
    int want_rows[10] = {1, 4, 8, 2, 5, 7, 0, 3, 6, 9};
    for (int e = 0; e < 5; e++) CHECK_INT(wk.off[e], want_off[e]);
    for (int i = 0; i < 10; i++) {
        CHECK_INT(wk.rows[i], want_rows[i]);
        CHECK_INT(wk.toks[i], want_rows[i] / 2);
    }
    free(ws.data);
    moe_layer_free(L);

    /* with capacity 2 and a shared expert: dropped pairs leave the plan; off[E+1] adds T */
    c.capacity = 2;
    c.n_shared = 1;
    model_free(&m);
    m = model_make(&c, 1.0f);
    for (int i = 0; i < 9; i++) m.router[i] = (i % 4 == 0) ? 1.0f : 0.0f;
    pl.n = 0;
    w = make_weights(&m, F32, &pl);
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
    ws.data = malloc(bytes);
    ws.size = bytes;
    CHECK_INT(moe__begin(L, (size_t)T, (size_t)T * L->k, 1, &ws, &wk), MOE_OK);
    moe__route(L, x, (size_t)T, &wk, 1);
    moe__plan(L, (size_t)T, &wk, 1);
    /* pair order: 0:e2 1:e0 2:e1 3:e2 4:e0 5:e1 6:e2(3rd, drop) 7:e1(3rd, drop) 8:e0(drop) 9:e2 */
    int want_drop[10] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
    for (int i = 0; i < 10; i++) CHECK_INT(wk.drop[i], want_drop[i]);
    int want_off2[5] = {0, 2, 4, 6, 11};
    int want_rows2[6] = {1, 4, 2, 5, 0, 3};
    for (int e = 0; e < 5; e++) CHECK_INT(wk.off[e], want_off2[e]);
    for (int i = 0; i < 6; i++) CHECK_INT(wk.rows[i], want_rows2[i]);
    free(ws.data);
    moe_layer_free(L);
    model_free(&m);
}

static void test_capacity(void) {
    /* k = 1, E = 2, capacity 2: tokens 0..3 -> expert 0, token 4 -> expert 1, t5 -> 0 */
    for (int drop = 0; drop < 2; drop++)
        for (int woi = 0; woi < 2; woi++) {
            moe_config c = cfg_dims(2, 4, 2, 1);
            c.capacity = 2;
            c.drop = (moe_drop)drop;
            c.weight_on_input = woi;
            model m = model_make(&c, 1.0f);
            m.router[0] = 1.0f, m.router[1] = 0.0f, m.router[2] = 0.0f, m.router[3] = 1.0f;
            pool pl;
            pl.n = 0;
            moe_weights w = make_weights(&m, F32, &pl);
            moe_layer *L = NULL;
            CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
            pool_free(&pl);
            float x[12] = {1, 0, 0.5f, 0.25f, 0.75f, -0.5f, 0.3f, 0.1f, -1, 1, 2, 0};
            float y[12];
            double yr[12];
            int32_t ex[6];
            float wt[6];
            int64_t et[2];
            moe_trace tr;
            memset(&tr, 0, sizeof tr);
            tr.expert = ex, tr.weight = wt, tr.expert_tokens = et;
            CHECK_INT(fwd(L, x, 6, y, &tr, 0), MOE_OK);
            int want_ex[6] = {0, 0, 0, 0, 1, 0};
            for (int i = 0; i < 6; i++) CHECK_INT(ex[i], want_ex[i]);
            CHECK_INT(tr.n_dropped, 3);
            CHECK_INT(et[0], 2);
            CHECK_INT(et[1], 1);
            CHECK(wt[2] == 0.0f && wt[3] == 0.0f && wt[5] == 0.0f && wt[0] > 0.5f);
            ref_forward(&m, x, 6, yr, NULL);
            check_y(y, yr, 12, drop ? "capacity identity" : "capacity zero", __LINE__);
            /* by hand: a dropped token is 0 (ZERO) or p * x (IDENTITY) */
            double h0 = x[4], h1 = x[5], p = 1.0 / (1.0 + exp(h1 - h0));
            if (drop == MOE_DROP_ZERO) CHECK(y[4] == 0.0f && y[5] == 0.0f);
            else {
                CHECK_NEAR(y[4], p * x[4], 1e-6);
                CHECK_NEAR(y[5], p * x[5], 1e-6);
            }
            moe_layer_free(L);
            model_free(&m);
        }
    /* k = 2: capacity counts (token, slot) pairs in token order, slots in order */
    moe_config c = cfg_dims(6, 5, 4, 2);
    c.capacity = 3;
    c.drop = MOE_DROP_IDENTITY;
    c.norm = MOE_NORM_SUM;
    c.n_shared = 1;
    model m = model_make(&c, 1.0f);
    RUN(m, F32, 10, "capacity k=2 identity + shared");
    m.cfg.drop = MOE_DROP_ZERO;
    RUN(m, F32, 10, "capacity k=2 zero + shared");
    model_free(&m);
}

/* y = fmaf chain over the slots in slot order (then the shared expert), per the contract */
static void test_combine_order(void) {
    moe_config c = cfg_dims(8, 8, 6, 4);
    c.n_shared = 1;
    c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    int T = 5, k = 4, d = 8;
    float *x = make_x(T, d, 1.0f), y[40];
    size_t bytes;
    CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 1;
    CHECK_INT(moe_forward(L, x, (size_t)T, y, &ws, NULL), MOE_OK);
    moe__ws wk; /* the same carve: the expert outputs are still there */
    CHECK_INT(moe__begin(L, (size_t)T, (size_t)T * L->k, 1, &ws, &wk), MOE_OK);
    int same = 1, differs_reversed = 0;
    for (int t = 0; t < T; t++) {
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)m.shg[i] * x[t * d + i];
        for (int o = 0; o < d; o++) {
            float acc = 0.0f, rev = 0.0f;
            for (int j = 0; j < k; j++) acc = fmaf(wk.wt[t * k + j], wk.z[(t * k + j) * d + o], acc);
            /* the shared term's gate is an fp32 sigmoid: take it from the last zw entry */
            float gz = wk.zw[t * (k + 1) + k];
            CHECK_NEAR(gz, 1.0 / (1.0 + exp(-s)), 1e-6);
            acc = fmaf(gz, wk.zs[t * d + o], acc);
            for (int j = k - 1; j >= 0; j--)
                rev = fmaf(wk.wt[t * k + j], wk.z[(t * k + j) * d + o], rev);
            rev = fmaf(gz, wk.zs[t * d + o], rev);
            same &= memcmp(&acc, &y[t * d + o], 4) == 0;
            differs_reversed |= memcmp(&rev, &y[t * d + o], 4) != 0;
        }
    }
    CHECK(same);
    CHECK(differs_reversed); /* the check can tell the orders apart on this data */
    free(ws.data);
    free(x);
    moe_layer_free(L);
    model_free(&m);
}

static void test_edge_T0(void) {
    moe_config c = cfg_dims(8, 8, 16, 2);
    c.n_shared = 1;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    size_t bytes = 0;
    CHECK_INT(moe_workspace_size(L, 0, &bytes), MOE_OK);
    CHECK(bytes > 0);
    unsigned char *mem = (unsigned char *)malloc(bytes);
    moe_workspace ws = {0};
    ws.data = mem, ws.size = bytes, ws.n_threads = 0;
    int64_t et[16];
    float mp[16];
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert_tokens = et, tr.mean_prob = mp;
    tr.n_dropped = 99, tr.aux_loss = 5.0, tr.z_loss = 7.0;
    for (int e = 0; e < 16; e++) et[e] = 3, mp[e] = 3.0f;
    CHECK_INT(moe_forward(L, NULL, 0, NULL, &ws, &tr), MOE_OK);
    CHECK_INT(tr.n_dropped, 0);
    CHECK(tr.aux_loss == 0.0 && tr.z_loss == 0.0);
    int zero = 1;
    for (int e = 0; e < 16; e++) zero &= et[e] == 0 && mp[e] == 0.0f;
    CHECK(zero);
    tr.n_dropped = 99, tr.aux_loss = 5.0, tr.z_loss = 7.0;
    CHECK_INT(moe_route(L, NULL, 0, &ws, &tr), MOE_OK);
    CHECK(tr.n_dropped == 0 && tr.aux_loss == 0.0 && tr.z_loss == 0.0);
    /* y untouched for T = 0 */
    float yy[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_INT(moe_forward(L, yy, 0, yy + 4, &ws, NULL), MOE_OK);
    CHECK(yy[4] == 5.0f && yy[7] == 8.0f);

    /* The trace's scratch must stay inside the workspace's scratch region: for T = 0 the
       scratch holds 4E floats, but moe__trace zeroes 2E doubles at scratch + 4E, i.e. 8E
       floats. Fill the workspace with a pattern and look at what lies after the scratch. */
    memset(mem, 0xA5, bytes);
    moe__ws wk;
    CHECK_INT(moe__begin(L, 0, 0, 1, &ws, &wk), MOE_OK);
    CHECK_INT(moe_route(L, NULL, 0, &ws, &tr), MOE_OK);
    unsigned char *after = (unsigned char *)wk.ex; /* the region after the scratch */
    int clobbered = 0;
    for (unsigned char *p = after; p < mem + bytes; p++) clobbered |= *p != 0xA5;
    if (clobbered) printf("  (T = 0: the trace wrote past the scratch region of the workspace)\n");
    CHECK(!clobbered);
    free(mem);
    moe_layer_free(L);
    model_free(&m);
}

/* no allocation in moe_forward / moe_route */
static void test_no_alloc(void) {
    moe_config c = cfg_dims(17, 33, 6, 2);
    c.n_shared = 1;
    c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    c.capacity = 5;
    c.weight_on_input = 1;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    size_t before = g_n_malloc;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    CHECK_INT(g_n_malloc - before, 1); /* one allocation for the whole layer */
    pool_free(&pl);
    int T = 20;
    float *x = make_x(T, 17, 1.0f), *y = (float *)malloc((size_t)T * 17 * sizeof(float));
    size_t bytes;
    CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    int32_t ex[40];
    float wt[40], lg[120], mp[6];
    int64_t et[6];
    moe_trace tr = {ex, wt, lg, et, mp, 0, 0.0, 0.0};
    size_t a0 = g_n_malloc, f0 = g_n_free;
    for (int rep = 0; rep < 3; rep++) {
        CHECK_INT(moe_forward(L, x, (size_t)T, y, &ws, rep ? &tr : NULL), MOE_OK);
        CHECK_INT(moe_route(L, x, (size_t)(T - rep), &ws, &tr), MOE_OK);
    }
    CHECK_INT(g_n_malloc, a0);
    CHECK_INT(g_n_free, f0);
    moe_layer_free(L);
    CHECK_INT(g_n_free, f0 + 1);
    free(ws.data);
    free(x);
    free(y);
    model_free(&m);
}

/* on_packed: every byte of every source buffer is reported exactly once, after its last read:
   a per-expert buffer whole, a fused [E][...] buffer expert slice by expert slice. */
static int g_bad_report;
static unsigned char *g_cover[POOL_MAX]; /* times each byte of buffer i was reported */
static void on_packed(void *user, const void *data, size_t bytes) {
    pool *pl = (pool *)user;
    const unsigned char *d = (const unsigned char *)data;
    for (int i = 0; i < pl->n; i++) {
        const unsigned char *b = (const unsigned char *)pl->p[i];
        if (pl->is_bias[i] < 0 || d < b || d >= b + pl->bytes[i]) continue;
        if (bytes > pl->bytes[i] - (size_t)(d - b)) g_bad_report++; /* runs past the buffer */
        else
            for (size_t j = 0; j < bytes; j++) g_cover[i][(size_t)(d - b) + j]++;
        memset((void *)(uintptr_t)d, 0xFF, bytes); /* NaN in every dtype: a later read shows */
        return;
    }
    g_bad_report++;
}

static void test_on_packed(void) {
    for (int v = 0; v < 4; v++) {
        moe_config c = cfg_dims(9, 5, 3, 2);
        c.n_shared = 2;
        c.shared_gate = MOE_SHARED_GATE_SIGMOID;
        c.expert_bias = 1;
        c.router_bias = 1;
        if (v == 3) c.ffn = MOE_FFN_PLAIN;
        model m = model_make(&c, 1.0f);
        fmt f = {v == 1 ? MOE_F16 : MOE_BF16, v == 2 ? MOE_IN_OUT : MOE_OUT_IN, v & 1, v == 2,
                 MOE_SPLIT_INTERLEAVED};
        pool pl;
        pl.n = 0;
        moe_weights w = make_weights(&m, f, &pl);
        w.on_packed = on_packed;
        w.user = &pl;
        g_bad_report = 0;
        for (int i = 0; i < pl.n; i++) g_cover[i] = (unsigned char *)calloc(pl.bytes[i] + 1, 1);
        moe_layer *L = NULL;
        CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
        CHECK_INT(g_bad_report, 0);
        int mats_ok = 1, bias_ok = 1;
        for (int i = 0; i < pl.n; i++) {
            int once = 1;
            for (size_t j = 0; j < pl.bytes[i]; j++) once &= g_cover[i][j] == 1;
            free(g_cover[i]);
            if (pl.is_bias[i] < 0) continue; /* a per_expert pointer array, not a buffer */
            if (pl.is_bias[i]) bias_ok &= once;
            else mats_ok &= once;
        }
        if (!mats_ok) printf("  (variant %d: a weight matrix buffer was not reported once)\n", v);
        if (!bias_ok) printf("  (variant %d: a bias / gate vector buffer was not reported)\n", v);
        CHECK(mats_ok);
        CHECK(bias_ok);
        /* the released buffers are poisoned now: the layer must not need them */
        int T = 4;
        float *x = make_x(T, 9, 1.0f), y[36];
        double yr[36];
        CHECK_INT(fwd(L, x, T, y, NULL, 0), MOE_OK);
        ref_forward(&m, x, T, yr, NULL);
        check_y(y, yr, 36, "after on_packed poisoning", __LINE__);
        free(x);
        moe_layer_free(L);
        pool_free(&pl);
        model_free(&m);
    }
}

static void test_trace_stats(void) {
    /* a sigmoid router with selection bias and capacity: the layer's picks are not the
       softmax top-k the aux loss uses */
    moe_config c = cfg_dims(8, 4, 6, 2);
    c.score = MOE_SCORE_SIGMOID;
    c.select_bias = 1;
    c.capacity = 4;
    c.norm = MOE_NORM_SUM;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    int T = 13, E = 6, k = 2;
    float *x = make_x(T, 8, 1.0f), *y = (float *)malloc((size_t)T * 8 * sizeof(float));
    int32_t ex[26];
    float wt[26], lg[78], mp[6];
    int64_t et[6];
    moe_trace tr = {ex, wt, lg, et, mp, 0, 0.0, 0.0};
    CHECK_INT(fwd(L, x, T, y, &tr, 0), MOE_OK);
    double *yr = (double *)malloc((size_t)T * 8 * sizeof(double));
    refout ro;
    int rex[26], rdrop[26];
    double rw[26], rlog[78];
    ro.ex = rex, ro.w = rw, ro.drop = rdrop, ro.logits = rlog;
    ref_forward(&m, x, T, yr, &ro);
    /* expert_tokens and n_dropped from the reference routing */
    long cnt[6] = {0}, nd = 0;
    for (int i = 0; i < T * k; i++) {
        if (rdrop[i]) nd++;
        else cnt[rex[i]]++;
    }
    CHECK(nd > 0);
    CHECK_INT(tr.n_dropped, nd);
    for (int e = 0; e < E; e++) CHECK_INT(et[e], cnt[e]);
    /* logits */
    double lerr = 0.0;
    for (int i = 0; i < T * E; i++) lerr = fmax(lerr, fabs((double)lg[i] - rlog[i]));
    CHECK(lerr < 1e-5);
    /* HF load_balancing_loss_func: P = softmax(logits); top-k of P; E * sum f_e P_e.
       z-loss: mean logsumexp^2. All in double here. */
    double P[6], Pm[6] = {0}, f[6] = {0}, z = 0.0;
    for (int t = 0; t < T; t++) {
        const double *h = rlog + t * E;
        double mx = -INFINITY, s = 0.0;
        for (int e = 0; e < E; e++) mx = fmax(mx, h[e]);
        for (int e = 0; e < E; e++) s += exp(h[e] - mx);
        double lse = mx + log(s);
        z += lse * lse;
        for (int e = 0; e < E; e++) P[e] = exp(h[e] - lse), Pm[e] += P[e] / T;
        int top[2];
        ref_topk(P, E, k, top);
        for (int j = 0; j < k; j++) f[top[j]] += 1.0 / T;
    }
    double aux = 0.0;
    for (int e = 0; e < E; e++) aux += f[e] * Pm[e];
    aux *= E;
    z /= T;
    for (int e = 0; e < E; e++) CHECK_NEAR(mp[e], Pm[e], 1e-6);
    CHECK_NEAR(tr.aux_loss, aux, 1e-5);
    CHECK_NEAR(tr.z_loss, z, 1e-5);
    /* a balanced router gives aux = k: all logits equal -> P = 1/E, picks by index */
    /* moe_route gives the same routing and statistics as moe_forward, bit for bit */
    int32_t ex2[26];
    float wt2[26], lg2[78], mp2[6];
    int64_t et2[6];
    moe_trace tr2 = {ex2, wt2, lg2, et2, mp2, 0, 0.0, 0.0};
    size_t bytes;
    CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    CHECK_INT(moe_route(L, x, (size_t)T, &ws, &tr2), MOE_OK);
    CHECK(memcmp(ex, ex2, sizeof ex) == 0);
    CHECK(memcmp(wt, wt2, sizeof wt) == 0);
    CHECK(memcmp(lg, lg2, sizeof lg) == 0);
    CHECK(memcmp(mp, mp2, sizeof mp) == 0);
    CHECK(memcmp(et, et2, sizeof et) == 0);
    CHECK(tr.n_dropped == tr2.n_dropped && tr.aux_loss == tr2.aux_loss && tr.z_loss == tr2.z_loss);
    /* a trace with every pointer NULL still gets its scalars */
    moe_trace tr3;
    memset(&tr3, 0, sizeof tr3);
    CHECK_INT(moe_route(L, x, (size_t)T, &ws, &tr3), MOE_OK);
    CHECK(tr3.n_dropped == tr.n_dropped && tr3.aux_loss == tr.aux_loss && tr3.z_loss == tr.z_loss);
    free(ws.data);
    moe_layer_free(L);
    free(x);
    free(y);
    free(yr);
    model_free(&m);

    /* by hand: E = 4, k = 1, all logits 0 -> P = 1/4, every token picks expert 0:
       aux = 4 * (1 * 1/4) = 1; z = (ln 4)^2 */
    c = cfg_dims(4, 4, 4, 1);
    m = model_make(&c, 1.0f);
    memset(m.router, 0, 16 * sizeof(float));
    pl.n = 0;
    w = make_weights(&m, F32, &pl);
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    x = make_x(3, 4, 1.0f);
    memset(&tr3, 0, sizeof tr3);
    float y3[12];
    CHECK_INT(fwd(L, x, 3, y3, &tr3, 0), MOE_OK);
    CHECK_NEAR(tr3.aux_loss, 1.0, 1e-6);
    CHECK_NEAR(tr3.z_loss, log(4.0) * log(4.0), 1e-6);
    moe_layer_free(L);
    free(x);
    model_free(&m);
}

/* the same token gives the same bits in any batch, at any position, with any thread count */
static void test_batch_invariance(void) {
    moe_config c = cfg_dims(24, 40, 7, 3);
    c.n_shared = 1;
    c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    c.expert_bias = 1;
    c.norm = MOE_NORM_SUM;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    int d = 24, maxT = 90;
    float *probe = make_x(1, d, 1.0f), *x = make_x(maxT, d, 1.0f);
    float *y = (float *)malloc((size_t)maxT * d * sizeof(float)), y1[24];
    CHECK_INT(fwd(L, probe, 1, y1, NULL, 1), MOE_OK);
    int sizes[5] = {2, 7, 17, 40, 90}, ok = 1;
    for (int s = 0; s < 5; s++)
        for (int pos = 0; pos < sizes[s]; pos += sizes[s] > 10 ? 9 : 1)
            for (int th = 0; th < 3; th++) {
                float *xb = make_x(sizes[s], d, 1.0f);
                memcpy(xb + (size_t)pos * d, probe, (size_t)d * sizeof(float));
                if (pos + 1 < sizes[s]) /* a duplicate of the probe too, same experts */
                    memcpy(xb + (size_t)(pos + 1) * d, probe, (size_t)d * sizeof(float));
                CHECK_INT(fwd(L, xb, sizes[s], y, NULL, th), MOE_OK);
                if (memcmp(y + (size_t)pos * d, y1, sizeof y1) != 0) {
                    ok = 0;
                    printf("  (batch %d pos %d threads %d differs)\n", sizes[s], pos, th);
                }
                free(xb);
            }
    CHECK(ok);
    moe_layer_free(L);
    free(probe);
    free(x);
    free(y);
    model_free(&m);
}

static void test_config_defaults(void) {
    moe_config c = cfg_dims(4, 4, 4, 2);
    c.n_group = 2;
    c.n_shared = 1;
    model m = model_make(&c, 1.0f);
    pool pl;
    pl.n = 0;
    moe_weights w = make_weights(&m, F32, &pl);
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    pool_free(&pl);
    const moe_config *lc = moe_layer_config(L);
    CHECK(lc != NULL);
    CHECK(lc->norm_p == 1.0f && lc->scale == 1.0f && lc->jitter_eps == 0.01f);
    CHECK(lc->act_alpha == 1.702f && lc->act_limit == 7.0f);
    CHECK_INT(lc->d_shared, 4);
    CHECK_INT(lc->topk_group, 2);
    CHECK(moe_layer_packed_bytes(L) > 0);
    CHECK(moe_layer_config(NULL) == NULL && moe_layer_packed_bytes(NULL) == 0);
    moe_layer_free(L);
    moe_layer_free(NULL);
    model_free(&m);
}

/* since 0.3: zero-computation experts (LongCat-Flash), the output bias (JetMoE), the output
   RMSNorm (A.X K1), against the reference and with their edges */
static void test_v03_rules(void) {
    fmt pe = {MOE_BF16, MOE_IN_OUT, 1, 0, MOE_SPLIT_HALVES};
    /* LongCat-Flash: softmax over 6 experts + 3 zero-computation ones, selection bias, x 2.5,
       no renormalisation */
    moe_config c = cfg_dims(12, 8, 6, 3);
    c.n_zero_experts = 3, c.select_bias = 1, c.scale = 2.5f;
    model m = model_make(&c, 1.0f);
    for (int i = 0; i < 12; i++) m.router[6 * 12 + i] *= 0.5f; /* zero experts win sometimes */
    RUN(m, F32, 17, "zero experts");
    RUN(m, pe, 5, "zero experts, per-expert bf16");
    /* which were picked, and the trace arrays of E + Z entries */
    {
        pool pl;
        pl.n = 0;
        moe_weights w = make_weights(&m, F32, &pl);
        moe_layer *L = NULL;
        CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
        pool_free(&pl);
        int T = 17;
        float *x = make_x(T, 12, 1.0f);
        int32_t ex[51];
        float lg[17 * 9], mp[9];
        int64_t et[9];
        moe_trace tr;
        memset(&tr, 0, sizeof tr);
        tr.expert = ex, tr.logits = lg, tr.expert_tokens = et, tr.mean_prob = mp;
        size_t bytes = 0;
        CHECK_INT(moe_workspace_size(L, (size_t)T, &bytes), MOE_OK);
        moe_workspace ws = {malloc(bytes), bytes, 0};
        CHECK_INT(moe_route(L, x, (size_t)T, &ws, &tr), MOE_OK);
        int zero = 0, real = 0;
        long sum = 0;
        for (int i = 0; i < T * 3; i++) zero += ex[i] >= 6, real += ex[i] < 6;
        for (int e = 0; e < 9; e++) sum += (long)et[e];
        CHECK(zero > 0 && real > 0);
        CHECK_INT(sum, T * 3);
        double ps = 0.0;
        for (int e = 0; e < 9; e++) ps += mp[e];
        CHECK_NEAR(ps, 1.0, 1e-5);
        free(ws.data);
        free(x);
        moe_layer_free(L);
    }
    model_free(&m);
    /* with capacity (never applied to a zero expert), groups over the 9 choices, weight on the
       input (a zero expert still outputs w x) and a shared expert */
    for (int v = 0; v < 3; v++) {
        c = cfg_dims(8, 8, 6, 3);
        c.n_zero_experts = 3;
        if (v == 0) c.capacity = 2;
        if (v == 1) c.score = MOE_SCORE_SIGMOID, c.n_group = 3, c.topk_group = 2,
                     c.group_score = MOE_GROUP_TOP2_SUM, c.norm = MOE_NORM_SUM;
        if (v == 2) c.score = MOE_SCORE_SIGMOID_TOPK, c.weight_on_input = 1, c.n_shared = 1;
        m = model_make(&c, 1.0f);
        RUN(m, F32, 13, v == 0 ? "zero experts, capacity" : v == 1 ? "zero experts, groups"
                                                                 : "zero experts, weight on input");
        model_free(&m);
    }
    /* JetMoE: top-k of the logits, softmax over the k, and the block's output bias; the same
       with a shared expert averaged in, and with the routed sum scaled */
    for (int v = 0; v < 3; v++) {
        c = cfg_dims(12, 8, 6, 2);
        c.score = MOE_SCORE_SOFTMAX_TOPK, c.output_bias = 1;
        if (v >= 1) c.n_shared = 1, c.shared_combine = MOE_SHARED_AVERAGE;
        if (v == 2) c.scale = 1.5f, c.scale_on_sum = 1;
        m = model_make(&c, 1.0f);
        RUN(m, v ? pe : F32, 9, v == 0 ? "output bias" : v == 1 ? "output bias, average" : "output bias, on sum");
        model_free(&m);
    }
    /* A.X K1: RMSNorm on routed + shared (eps default 1e-6, then 0.5), also after a bias */
    for (int v = 0; v < 3; v++) {
        c = cfg_dims(16, 8, 8, 2);
        c.score = MOE_SCORE_SIGMOID, c.select_bias = 1, c.norm = MOE_NORM_SUM, c.norm_eps = 1e-20f;
        c.scale = 2.5f, c.n_shared = 1, c.out_norm = MOE_OUT_NORM_RMS;
        if (v == 1) c.out_norm_eps = 0.5f;
        if (v == 2) c.output_bias = 1, c.n_zero_experts = 2;
        m = model_make(&c, 1.0f);
        RUN(m, v == 1 ? pe : F32, 11, v == 0 ? "out norm" : v == 1 ? "out norm eps 0.5" : "out norm, bias, zero experts");
        model_free(&m);
    }
    /* Nemotron-H: the routed experts (ungated relu2) in a latent space of width 6 (and 19, wider
       than d), the router and the ungated shared expert on x; and with every part that meets
       the latent space: identity drops and zero experts add w x_l, weight on the input, the
       scale on the sum, the output norm */
    for (int v = 0; v < 6; v++) {
        c = cfg_dims(12, 8, 6, 2);
        c.ffn = MOE_FFN_PLAIN, c.act = MOE_ACT_RELU2, c.score = MOE_SCORE_SIGMOID;
        c.select_bias = 1, c.norm = MOE_NORM_SUM, c.norm_eps = 1e-20f, c.n_shared = 1;
        c.d_shared = 10, c.d_latent = v == 1 ? 19 : 6;
        if (v == 2) c.capacity = 2, c.drop = MOE_DROP_IDENTITY, c.n_zero_experts = 2;
        if (v == 3) c.ffn = MOE_FFN_GATED, c.act = MOE_ACT_SILU, c.weight_on_input = 1;
        if (v == 4) c.scale = 2.0f, c.scale_on_sum = 1, c.out_norm = MOE_OUT_NORM_RMS;
        if (v == 5) c.expert_bias = 1, c.n_shared = 0;
        m = model_make(&c, 1.0f);
        const char *what[6] = {"latent", "latent wider than d", "latent, identity drops, zero experts",
                               "latent, weight on input", "latent, scale on sum, out norm",
                               "latent, expert biases, no shared"};
        RUN(m, v & 1 ? pe : F32, 13, what[v]);
        model_free(&m);
    }

    /* Gemma-4: the router reads rms(x) * scale / sqrt(d), the experts rms(x) * w, each slot's
       weight times its expert's scale, the output normed; and these with a latent space, zero
       experts, a shared expert (which sees x) */
    for (int v = 0; v < 4; v++) {
        c = cfg_dims(16, 8, 8, 2);
        c.norm = MOE_NORM_SUM, c.act = MOE_ACT_GELU_TANH, c.router_in_norm = 1, c.expert_in_norm = 1;
        c.expert_scale = 1, c.out_norm = MOE_OUT_NORM_RMS;
        if (v == 1) c.in_norm_eps = 0.25f, c.out_norm = MOE_OUT_NORM_NONE;
        if (v == 2) c.d_latent = 6, c.n_zero_experts = 2, c.top_k = 3;
        if (v == 3) c.n_shared = 1, c.expert_in_norm = 0, c.weight_on_input = 1;
        m = model_make(&c, 1.0f);
        const char *what[4] = {"gemma4 norms", "gemma4 norms eps 0.25", "gemma4 norms, latent, zero",
                               "router norm, shared, weight on input"};
        RUN(m, v & 1 ? pe : F32, 11, what[v]);
        model_free(&m);
    }

    /* Inkling: 2 shared experts weighted by the router's last 2 outputs, normalised with the k
       routed; also with router bias, scale on the sum, zero experts, norm NONE */
    for (int v = 0; v < 4; v++) {
        c = cfg_dims(12, 8, 8, 3);
        c.score = MOE_SCORE_SIGMOID, c.select_bias = 1, c.norm = MOE_NORM_SUM, c.scale = 2.0f;
        c.n_shared = 2, c.d_shared = 6, c.shared_router = 1;
        if (v == 1) c.router_bias = 1, c.scale_on_sum = 1;
        if (v == 2) c.n_zero_experts = 2, c.ffn = MOE_FFN_PLAIN, c.act = MOE_ACT_RELU2;
        if (v == 3) c.norm = MOE_NORM_NONE, c.n_shared = 3;
        m = model_make(&c, 1.0f);
        const char *what[4] = {"shared router", "shared router, bias, on sum", "shared router, zero experts",
                               "shared router, no norm"};
        RUN(m, v & 1 ? pe : F32, 9, what[v]);
        model_free(&m);
    }

    /* the norm of an all-zero output is 0, not NaN */
    c = cfg_dims(4, 4, 3, 1);
    c.out_norm = MOE_OUT_NORM_RMS;
    m = model_make(&c, 1.0f);
    for (int i = 0; i < 3 * 4 * 4; i++) m.wd[i] = 0.0f;
    {
        float *y = run_case(&m, F32, 3, 1.0f, "out norm of zeros", __LINE__, 1);
        int ok = y != NULL;
        for (int i = 0; ok && i < 12; i++) ok = y[i] == 0.0f;
        CHECK(ok);
        free(y);
    }
    model_free(&m);
}

int main(void) {
    test_activations();
    test_layouts();
    test_f16_special();
    test_families();
    test_plan();
    test_capacity();
    test_combine_order();
    test_edge_T0();
    test_no_alloc();
    test_on_packed();
    test_trace_stats();
    test_batch_invariance();
    test_config_defaults();
    test_v03_rules();
    return check_summary();
}
