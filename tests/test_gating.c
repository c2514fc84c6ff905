/* test_gating.c - every gating rule of moe.h, one by one, on small hand-made examples.

   The router is the identity (d_model = E, W_r = I), so the router logits are the input row
   itself, exactly (every fmaf adds x * 1 or x * 0). Each case feeds known logits through
   moe_route and reads the selected experts and weights back from the trace. The expected
   values are worked out here, in double, straight from the formulas of
   shared/reference/moe-variants.md (sections 1, 3, 5), never by calling moe.h's own gating.

   Build: cc -std=c99 -I. tests/test_gating.c -o test_gating -lm ; run from the repo root. */
/* The scalar kernels: gating is plain C, the same in every build, and the SIMD tiles only cost compile time here
   (test_kernels.c, test_determinism.c and test_formats.c test those). */
#ifndef MOE_NO_SIMD
#define MOE_NO_SIMD
#endif
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Weights are computed by moe.h in fp32 (expf, a few adds and a divide), so a few ulps of
   fp32 relative to the weight; 2e-6 is ~16 ulps, far below any wrong-formula difference in
   these examples (the smallest is ~1e-3). */
#define WTOL 2e-6

#define MAXE 16

/* ---- the harness: an identity-router layer -------------------------------------------------- */

static float g_router[MAXE * MAXE], g_zero[MAXE * MAXE], g_rbias[MAXE], g_sbias[MAXE];

/* Routes T tokens whose logits are h[T][E] under cfg (dims filled in here: d_model = E,
   d_ff = 1). sel_bias: selection bias or NULL; rbias: router bias or NULL.
   Returns the moe_route result; ex/w are [T][k]. */
static moe_result route(moe_config cfg, const float *h, int T, const float *sel_bias,
                        const float *rbias, int32_t *ex, float *w) {
    int E = cfg.n_experts;
    moe_weights wt;
    moe_layer *L = NULL;
    memset(&wt, 0, sizeof wt);
    memset(g_router, 0, sizeof g_router);
    for (int e = 0; e < E; e++) g_router[e * E + e] = 1.0f;
    cfg.d_model = E;
    cfg.d_ff = 1;
    wt.router.data = g_router;
    wt.gate.data = wt.up.data = wt.down.data = g_zero;
    if (sel_bias) {
        cfg.select_bias = 1;
        memcpy(g_sbias, sel_bias, (size_t)E * sizeof(float));
        wt.select_bias.data = g_sbias;
    }
    if (rbias) {
        cfg.router_bias = 1;
        memcpy(g_rbias, rbias, (size_t)E * sizeof(float));
        wt.router_bias.data = g_rbias;
    }
    moe_result r = moe_layer_create(&L, &cfg, &wt);
    if (r != MOE_OK) return r;
    size_t bytes = 0;
    r = moe_workspace_size(L, (size_t)T, &bytes);
    if (r != MOE_OK) {
        moe_layer_free(L);
        return r;
    }
    moe_workspace ws;
    ws.data = malloc(bytes);
    ws.size = bytes;
    ws.n_threads = 0;
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = ex;
    tr.weight = w;
    r = moe_route(L, h, (size_t)T, &ws, &tr);
    if (r == MOE_OK) {
        /* moe_forward routes the same way, and runs whatever the logits (NaN included) */
        int32_t ex2[4 * MAXE];
        float w2[4 * MAXE], y[4 * MAXE];
        moe_trace tr2;
        memset(&tr2, 0, sizeof tr2);
        tr2.expert = ex2;
        tr2.weight = w2;
        moe_result r2 = moe_forward(L, h, (size_t)T, y, &ws, &tr2);
        size_t n = (size_t)T * (size_t)cfg.top_k;
        if (r2 != MOE_OK || memcmp(ex, ex2, n * sizeof *ex) != 0 ||
            memcmp(w, w2, n * sizeof *w) != 0) {
            n_fail++;
            printf("%s:%d: moe_forward routed differently from moe_route\n", __FILE__, __LINE__);
        } else n_pass++;
    }
    free(ws.data);
    moe_layer_free(L);
    return r;
}

/* As route(), for logits that hold NaN or infinities: a NaN in the input row would make every
   logit NaN (NaN * 0 in the identity router), so the special values come in through the router
   bias, which is added after the dot product. */
static moe_result route_special(moe_config cfg, const float *h, int T, int32_t *ex, float *w) {
    float x[4 * MAXE], rb[MAXE];
    int E = cfg.n_experts;
    for (int e = 0; e < E; e++) rb[e] = isfinite(h[e]) ? 0.0f : h[e];
    for (int i = 0; i < T * E; i++) {
        x[i] = isfinite(h[i]) ? h[i] : 0.0f;
        if (!isfinite(h[i]) && !(h[i] == rb[i % E] || (isnan(h[i]) && isnan(rb[i % E]))))
            return MOE_E_VALUE; /* the special values must sit in the same place in every row */
    }
    return route(cfg, x, T, NULL, rb, ex, w);
}

static moe_config base_cfg(int E, int k) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.n_experts = E;
    c.top_k = k;
    return c;
}

/* ---- double-precision formulas ------------------------------------------------------------- */

static void d_softmax(const double *h, double *p, int n) {
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++) m = h[i] > m ? h[i] : m;
    for (int i = 0; i < n; i++) s += exp(h[i] - m);
    for (int i = 0; i < n; i++) p[i] = exp(h[i] - m) / s;
}
static double d_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

static void to_double(const float *f, double *d, int n) {
    for (int i = 0; i < n; i++) d[i] = (double)f[i];
}

/* expected experts and weights, checked slot by slot */
static void check_route(const int32_t *ex, const float *w, const int *want_ex,
                        const double *want_w, int k, int line) {
    for (int j = 0; j < k; j++) {
        if (ex[j] != want_ex[j]) {
            n_fail++;
            printf("%s:%d: slot %d expert %d, expected %d\n", __FILE__, line, j, (int)ex[j],
                   want_ex[j]);
        } else n_pass++;
        if (!want_w) continue;
        double sc = fabs(want_w[j]) > 1.0 ? fabs(want_w[j]) : 1.0;
        if (!(fabs((double)w[j] - want_w[j]) <= WTOL * sc)) {
            n_fail++;
            printf("%s:%d: slot %d weight %.9g, expected %.9g\n", __FILE__, line, j, (double)w[j],
                   want_w[j]);
        } else n_pass++;
    }
}
#define CHECK_ROUTE(ex, w, want_ex, want_w, k) check_route(ex, w, want_ex, want_w, k, __LINE__)

/* ---- cases ------------------------------------------------------------------------------- */

static void test_softmax_topk_plain(void) {
    /* Mixtral / OLMoE: p = softmax(h), top-2 of p, w = p (no renorm) then renormalised */
    float h[4] = {1.0f, 3.0f, 2.0f, 0.5f};
    double hd[4], p[4];
    int32_t ex[4];
    float w[4];
    to_double(h, hd, 4);
    d_softmax(hd, p, 4);
    int want[2] = {1, 2};
    double ww[2] = {p[1], p[2]};
    moe_config c = base_cfg(4, 2);
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);

    c.norm = MOE_NORM_SUM; /* Mixtral: / sum, no eps */
    double s = p[1] + p[2];
    double wn[2] = {p[1] / s, p[2] / s};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, wn, 2);
    CHECK_NEAR(w[0] + w[1], 1.0, WTOL);

    /* by hand: h = {0, ln 3} -> p = {1/4, 3/4} */
    float h2[2] = {0.0f, (float)log(3.0)};
    int want2[1] = {1};
    double ww2[1] = {0.75};
    c = base_cfg(2, 1);
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want2, ww2, 1);
}

static void test_sigmoid_select_bias(void) {
    /* DeepSeek-V3 without groups: p = sigmoid(h), select on p + b, weight = unbiased p */
    float h[4] = {2.0f, 1.0f, 0.0f, -1.0f}, b[4] = {0.0f, 0.0f, 0.9f, 0.0f};
    int32_t ex[4];
    float w[4];
    moe_config c = base_cfg(4, 2);
    c.score = MOE_SCORE_SIGMOID;
    /* keys: 0.881, 0.731, 0.5 + 0.9 = 1.4, 0.269 -> {2, 0} */
    int want[2] = {2, 0};
    double ww[2] = {0.5, d_sigmoid(2.0)};
    CHECK_INT(route(c, h, 1, b, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);
    /* plain sigmoid, no bias: {0, 1} */
    int want_nb[2] = {0, 1};
    double ww_nb[2] = {d_sigmoid(2.0), d_sigmoid(1.0)};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want_nb, ww_nb, 2);
    /* with renorm + 1e-20 and routed scale 2.5 (V3): w = 2.5 p / (sum p + 1e-20) */
    c.norm = MOE_NORM_SUM;
    c.norm_eps = 1e-20f;
    c.scale = 2.5f;
    double s = 0.5 + d_sigmoid(2.0);
    double wv3[2] = {2.5 * 0.5 / s, 2.5 * d_sigmoid(2.0) / s};
    CHECK_INT(route(c, h, 1, b, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, wv3, 2);
    /* a negative bias can push the best score out */
    float b2[4] = {-1.0f, 0.0f, 0.0f, 0.0f};
    int want2[2] = {1, 2};
    double ww2[2] = {2.5 * d_sigmoid(1.0) / (d_sigmoid(1.0) + 0.5),
                     2.5 * 0.5 / (d_sigmoid(1.0) + 0.5)};
    CHECK_INT(route(c, h, 1, b2, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want2, ww2, 2);
    /* softmax + select bias (ERNIE-4.5): select on p + b, weight = p / max(sum, 1e-12) */
    c = base_cfg(4, 2);
    c.norm = MOE_NORM_SUM_CLAMP;
    c.norm_eps = 1e-12f;
    float hs[4] = {1.0f, 0.5f, 0.0f, 0.2f}, bs[4] = {0.0f, 0.0f, 0.0f, 0.3f};
    double hd[4], p[4];
    to_double(hs, hd, 4);
    d_softmax(hd, p, 4);
    /* p ~ {0.368, 0.223, 0.135, 0.165}; keys {0.368, 0.223, 0.135, 0.465} -> {3, 0} */
    int want3[2] = {3, 0};
    double ww3[2] = {p[3] / (p[3] + p[0]), p[0] / (p[3] + p[0])};
    CHECK_INT(route(c, hs, 1, bs, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, ww3, 2);
}

static void test_softmax_topk_gptoss(void) {
    /* GPT-OSS / Granite: top-k of the logits (+ router bias), w = softmax over the selected */
    float h[5] = {0.1f, 2.0f, -1.0f, 1.5f, 1.0f};
    float rb[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.75f}; /* logits become {.1, 2, -1, 1.5, 1.75} */
    int32_t ex[5];
    float w[5];
    moe_config c = base_cfg(5, 3);
    c.score = MOE_SCORE_SOFTMAX_TOPK;
    double v[3] = {2.0, 1.5, 1.0}, p[3];
    d_softmax(v, p, 3);
    int want[3] = {1, 3, 4};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, p, 3);
    double vb[3] = {2.0, 1.75, 1.5}, pb[3];
    d_softmax(vb, pb, 3);
    int wantb[3] = {1, 4, 3};
    CHECK_INT(route(c, h, 1, NULL, rb, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, wantb, pb, 3);
    /* k = 1: the weight is exactly 1 */
    c.top_k = 1;
    double one[1] = {1.0};
    int want1[1] = {1};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want1, one, 1);
    CHECK(w[0] == 1.0f);
    /* the selection is on the logits, so it is not softmax-of-all then top-k: same experts,
       but weights differ from Mixtral's un-renormalised p (check they sum to 1) */
    c.top_k = 3;
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_NEAR((double)w[0] + w[1] + w[2], 1.0, WTOL);
}

static void test_sigmoid_topk_llama4(void) {
    float h[4] = {-0.5f, 0.25f, -2.0f, 0.1f};
    int32_t ex[4];
    float w[4];
    moe_config c = base_cfg(4, 1);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    int want[1] = {1};
    double ww[1] = {d_sigmoid(0.25)};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 1);
    c.top_k = 3;
    int want3[3] = {1, 3, 0};
    double ww3[3] = {d_sigmoid(0.25), d_sigmoid(0.1), d_sigmoid(-0.5)};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, ww3, 3);
}

/* HF phimoe sparsemixer (inference), written from the formula of moe-variants.md section 3:
     m1 = max h; M1 = { j : (m1 - h_j) / max(|h_j|, m1) > 2 eps }; w1 = softmax(h, M1 -> -inf)[e1]
     h' = h, h'[e1] = -inf; m2 = max h'; M2 uses the ORIGINAL h_j; w2 = softmax(h', M2)[e2] */
static void d_sparsemixer(const double *h, int n, double eps, int *e_out, double *w_out) {
    double hp[MAXE];
    for (int i = 0; i < n; i++) hp[i] = h[i];
    for (int r = 0; r < 2; r++) {
        int e = -1;
        for (int i = 0; i < n; i++)
            if (e < 0 || hp[i] > hp[e]) e = i; /* first index of the maximum */
        double m = hp[e], num = 0.0, den = 0.0;
        for (int j = 0; j < n; j++) {
            double factor = fabs(h[j]) > m ? fabs(h[j]) : m;
            int masked = (m - h[j]) / factor > 2.0 * eps;
            double v = masked ? -INFINITY : hp[j];
            den += exp(v - m);
            if (j == e) num = exp(v - m);
        }
        e_out[r] = e;
        w_out[r] = num / den;
        hp[e] = -INFINITY;
    }
}

static void test_sparsemixer(void) {
    int32_t ex[8];
    float w[8];
    moe_config c = base_cfg(4, 2);
    c.score = MOE_SCORE_SPARSEMIXER; /* jitter_eps 0 = 0.01 */
    double hd[8], ww[2];
    int want[2];
    /* several survive: 0.995 and 0.99 are within 2 eps of 1.0, 0.5 is not */
    float h1[4] = {1.0f, 0.995f, 0.99f, 0.5f};
    to_double(h1, hd, 4);
    d_sparsemixer(hd, 4, 0.01, want, ww);
    CHECK_INT(want[0], 0);
    CHECK_INT(want[1], 1);
    CHECK(ww[0] < 0.5 && ww[1] < 0.75); /* really several in both softmaxes */
    CHECK_INT(route(c, h1, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);
    /* by hand: first softmax over {0, -.005, -.01}, second over {0, -.005} */
    CHECK_NEAR(w[0], 1.0 / (1.0 + exp(hd[1] - hd[0]) + exp(hd[2] - hd[0])), WTOL);
    CHECK_NEAR(w[1], 1.0 / (1.0 + exp(hd[2] - hd[1])), WTOL);

    /* jitter_eps < 0 is a threshold of exactly 0 (HF router_jitter_noise = 0): only the best
       logit survives each mask, so both weights are 1, where 0.01 kept three and two */
    c.jitter_eps = -1.0f;
    d_sparsemixer(hd, 4, 0.0, want, ww);
    CHECK_INT(route(c, h1, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);
    CHECK(w[0] == 1.0f && w[1] == 1.0f && ex[0] == 0 && ex[1] == 1);
    c.jitter_eps = 0.0f;

    /* only one survives each time: both weights exactly 1 */
    float h2[4] = {2.0f, 0.0f, 1.0f, -1.0f};
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    int want2[2] = {0, 2};
    double one[2] = {1.0, 1.0};
    CHECK_ROUTE(ex, w, want2, one, 2);
    CHECK(w[0] == 1.0f && w[1] == 1.0f);

    /* negative logits (factor = |h_j| > m) and E = 6, a wider eps */
    c = base_cfg(6, 2);
    c.score = MOE_SCORE_SPARSEMIXER;
    c.jitter_eps = 0.05f;
    float h3[6] = {-1.0f, -1.05f, -0.98f, -3.0f, -0.9f, -1.2f};
    to_double(h3, hd, 6);
    d_sparsemixer(hd, 6, 0.05, want, ww);
    CHECK_INT(want[0], 4);
    CHECK_INT(want[1], 2);
    CHECK_INT(route(c, h3, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);

    /* a tie for the top: lower index first, then the other one */
    c = base_cfg(4, 2);
    c.score = MOE_SCORE_SPARSEMIXER;
    float h4[4] = {0.3f, 1.0f, 0.2f, 1.0f};
    to_double(h4, hd, 4);
    d_sparsemixer(hd, 4, 0.01, want, ww);
    CHECK_INT(route(c, h4, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);
    CHECK_INT(ex[0], 1);
    CHECK_INT(ex[1], 3);
    CHECK_NEAR(w[0], 0.5, WTOL); /* two equal survivors */
    CHECK_NEAR(w[1], 1.0, WTOL); /* the winner is gone: alone */
}

static void test_norms(void) {
    int32_t ex[4];
    float w[4];
    float h[4] = {1.0f, 3.0f, 2.0f, 0.5f};
    double hd[4], p[4];
    to_double(h, hd, 4);
    d_softmax(hd, p, 4);
    int want[2] = {1, 2};
    moe_config c = base_cfg(4, 2);

    /* SUM with a big eps, so that it shows: w = p / (sum + eps) */
    c.norm = MOE_NORM_SUM;
    c.norm_eps = 0.5f;
    double s = p[1] + p[2];
    double w1[2] = {p[1] / (s + 0.5), p[2] / (s + 0.5)};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, w1, 2);

    /* SUM_CLAMP, sum above eps: plain / sum */
    c.norm = MOE_NORM_SUM_CLAMP;
    c.norm_eps = 1e-12f;
    double w2[2] = {p[1] / s, p[2] / s};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, w2, 2);

    /* SUM_CLAMP, sum below eps: / eps (sigmoid of very negative logits ~ 6e-5 in all) */
    c.score = MOE_SCORE_SIGMOID;
    c.norm_eps = 1e-3f;
    float hn[4] = {-10.0f, -11.0f, -12.0f, -13.0f};
    double s0 = d_sigmoid(-10.0), s1 = d_sigmoid(-11.0);
    CHECK(s0 + s1 < 1e-3);
    double w3[2] = {s0 / (double)1e-3f, s1 / (double)1e-3f};
    int want3[2] = {0, 1};
    CHECK_INT(route(c, hn, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, w3, 2);
    /* ... while SUM (+eps) gives s/(sum + eps) and NONE the raw scores */
    c.norm = MOE_NORM_SUM;
    double w3s[2] = {s0 / (s0 + s1 + (double)1e-3f), s1 / (s0 + s1 + (double)1e-3f)};
    CHECK_INT(route(c, hn, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, w3s, 2);
    c.norm = MOE_NORM_NONE;
    double w3n[2] = {s0, s1};
    CHECK_INT(route(c, hn, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, w3n, 2);

    /* LP, p = 1 (DBRX default): w / sum |w| */
    c = base_cfg(4, 3);
    c.norm = MOE_NORM_LP;
    c.norm_p = 1.0f;
    int want4[3] = {1, 2, 0};
    double s4 = p[1] + p[2] + p[0];
    double w4[3] = {p[1] / s4, p[2] / s4, p[0] / s4};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, w4, 3);
    /* norm_p = 0 means 1 */
    c.norm_p = 0.0f;
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, w4, 3);
    /* LP, p = 2: w / sqrt(sum w^2) */
    c.norm_p = 2.0f;
    double n2 = sqrt(p[1] * p[1] + p[2] * p[2] + p[0] * p[0]);
    double w5[3] = {p[1] / n2, p[2] / n2, p[0] / n2};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, w5, 3);
    CHECK_NEAR((double)w[0] * w[0] + (double)w[1] * w[1] + (double)w[2] * w[2], 1.0, 1e-5);
    /* LP, p = 3 */
    c.norm_p = 3.0f;
    double n3 = cbrt(p[1] * p[1] * p[1] + p[2] * p[2] * p[2] + p[0] * p[0] * p[0]);
    double w6[3] = {p[1] / n3, p[2] / n3, p[0] / n3};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, w6, 3);

    /* scale after norm: the weights sum to the scale, not 1 (scale before norm would cancel) */
    c = base_cfg(4, 2);
    c.norm = MOE_NORM_SUM;
    c.scale = 2.5f;
    double w7[2] = {2.5 * p[1] / s, 2.5 * p[2] / s};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, w7, 2);
    CHECK_NEAR((double)w[0] + w[1], 2.5, WTOL);
    /* scale without norm (DeepSeek-V2: w = p * 16) */
    c.norm = MOE_NORM_NONE;
    c.scale = 16.0f;
    double w8[2] = {16.0 * p[1], 16.0 * p[2]};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, w8, 2);
}

static void test_groups(void) {
    int32_t ex[8];
    float w[8];
    /* SIGMOID_TOPK selects on the logits themselves, so the keys are exactly h */
    moe_config c = base_cfg(8, 2);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    c.n_group = 4;
    c.topk_group = 2;

    /* TOP2_SUM: group 0 = {0.9, 0.0} holds the best single expert but sums to 0.9;
       group 1 = {0.6, 0.5} (1.1) and group 2 = {0.55, 0.5} (1.05) are kept; group 3 .2 */
    c.group_score = MOE_GROUP_TOP2_SUM;
    float h[8] = {0.9f, 0.0f, 0.6f, 0.5f, 0.55f, 0.5f, 0.1f, 0.1f};
    int want[2] = {2, 4};
    double ww[2] = {d_sigmoid(0.6f), d_sigmoid(0.55f)};
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, ww, 2);
    /* the same logits without groups pick expert 0 */
    moe_config c0 = c;
    c0.n_group = 0;
    c0.topk_group = 0;
    int want0[2] = {0, 2};
    double ww0[2] = {d_sigmoid(0.9f), d_sigmoid(0.6f)};
    CHECK_INT(route(c0, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want0, ww0, 2);
    /* MAX on the same logits: groups 0 (0.9) and 1 (0.6) kept -> {0, 2} */
    c.group_score = MOE_GROUP_MAX;
    CHECK_INT(route(c, h, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want0, ww0, 2);

    /* MAX: kept groups 0 (0.9) and 3 (0.85); expert 2's 0.8 is higher than 7's 0.1 but its
       group is out. k = 3 -> {0, 6, 7} */
    c.top_k = 3;
    float h2[8] = {0.9f, -5.0f, 0.8f, 0.79f, 0.7f, 0.69f, 0.85f, 0.1f};
    int want2[3] = {0, 6, 7};
    double ww2[3] = {d_sigmoid(0.9f), d_sigmoid(0.85f), d_sigmoid(0.1f)};
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want2, ww2, 3);
    /* TOP2_SUM on those: groups 1 (1.59) and 2 (1.39) -> {2, 3, 4} */
    c.group_score = MOE_GROUP_TOP2_SUM;
    int want3[3] = {2, 3, 4};
    double ww3[3] = {d_sigmoid(0.8f), d_sigmoid(0.79f), d_sigmoid(0.7f)};
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, ww3, 3);

    /* DeepSeek-V3 form: sigmoid, select on p + b in groups (TOP2_SUM), weights = unbiased p,
       renorm + 1e-20, scale 2.5. E = 6, 3 groups of 2, keep 1, k = 2. */
    c = base_cfg(6, 2);
    c.score = MOE_SCORE_SIGMOID;
    c.n_group = 3;
    c.topk_group = 1;
    c.group_score = MOE_GROUP_TOP2_SUM;
    c.norm = MOE_NORM_SUM;
    c.norm_eps = 1e-20f;
    c.scale = 2.5f;
    float h4[6] = {3.0f, -3.0f, 0.5f, 0.4f, 0.0f, 0.1f};
    float b4[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.3f, 0.3f};
    /* keys: g0 {.953, .047} = 1.0; g1 {.622, .599} = 1.221; g2 {.8, .825} = 1.625 -> g2 */
    double s4[6];
    for (int i = 0; i < 6; i++) s4[i] = d_sigmoid(h4[i]);
    CHECK((s4[0] + s4[1]) < (s4[2] + s4[3]) && (s4[2] + s4[3]) < (s4[4] + s4[5] + 0.6));
    int want4[2] = {5, 4};
    double sum4 = s4[5] + s4[4];
    double ww4[2] = {2.5 * s4[5] / sum4, 2.5 * s4[4] / sum4};
    CHECK_INT(route(c, h4, 1, b4, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, ww4, 2);

    /* DeepSeek-V2 form: softmax, MAX groups, no norm, scale 16 */
    c = base_cfg(8, 2);
    c.n_group = 4;
    c.topk_group = 2;
    c.scale = 16.0f;
    float h5[8] = {0.0f, 0.2f, 1.0f, -1.0f, 0.9f, 0.95f, 0.3f, 0.1f};
    double hd5[8], p5[8];
    to_double(h5, hd5, 8);
    d_softmax(hd5, p5, 8);
    /* group max: g0 .2, g1 1.0, g2 .95, g3 .3 -> g1, g2 -> {2, 5} */
    int want5[2] = {2, 5};
    double ww5[2] = {16.0 * p5[2], 16.0 * p5[5]};
    CHECK_INT(route(c, h5, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want5, ww5, 2);

    /* ties across groups: all groups equal -> the lowest groups are kept, and within them
       equal keys go lower index first */
    c = base_cfg(6, 3);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    c.n_group = 3;
    c.topk_group = 2;
    float h6[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    int want6[3] = {0, 1, 2};
    double s6 = d_sigmoid(0.5);
    double ww6[3] = {s6, s6, s6};
    CHECK_INT(route(c, h6, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want6, ww6, 3);
    /* groups 1 and 2 tie for the second place (MAX 0.7), group 0 leads: keep 0 and 1 */
    c.group_score = MOE_GROUP_MAX;
    float h7[6] = {0.1f, 0.9f, 0.7f, 0.0f, 0.0f, 0.7f};
    int want7[3] = {1, 2, 0};
    double ww7[3] = {d_sigmoid(0.9f), d_sigmoid(0.7f), d_sigmoid(0.1f)};
    CHECK_INT(route(c, h7, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want7, ww7, 3);
    /* TOP2_SUM with a duplicated maximum counts it twice: g0 {.5,.5} = 1.0 beats
       g1 {.9, 0} = 0.9 and g2 {.6, .3} = 0.9 */
    c = base_cfg(6, 1);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    c.n_group = 3;
    c.topk_group = 1;
    c.group_score = MOE_GROUP_TOP2_SUM;
    float h8[6] = {0.5f, 0.5f, 0.9f, 0.0f, 0.6f, 0.3f};
    int want8[1] = {0};
    double ww8[1] = {d_sigmoid(0.5)};
    CHECK_INT(route(c, h8, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want8, ww8, 1);
}

static void test_ties_and_shapes(void) {
    int32_t ex[16];
    float w[16];
    moe_config c = base_cfg(5, 3);
    c.score = MOE_SCORE_SOFTMAX_TOPK;
    /* all equal: {0, 1, 2}, weights 1/3 */
    float h1[5] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    int want1[3] = {0, 1, 2};
    double ww1[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    CHECK_INT(route(c, h1, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want1, ww1, 3);
    /* pairs of equal keys */
    float h2[5] = {0.5f, 2.0f, 0.5f, 2.0f, 1.0f};
    int want2[3] = {1, 3, 4};
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want2, NULL, 3);
    c.top_k = 4;
    int want3[4] = {1, 3, 4, 0};
    CHECK_INT(route(c, h2, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, NULL, 4);
    /* ties also in softmax: equal logits give bit-equal p */
    c.score = MOE_SCORE_SOFTMAX;
    c.top_k = 2;
    float h3[5] = {0.0f, 1.0f, 0.0f, 1.0f, 1.0f};
    int want4[2] = {1, 3};
    CHECK_INT(route(c, h3, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want4, NULL, 2);
    CHECK(w[0] == w[1]);
    /* -0 and +0 are equal keys */
    c.score = MOE_SCORE_SIGMOID_TOPK;
    c.top_k = 1;
    float h4[5] = {-1.0f, -0.0f, 0.0f, -1.0f, -2.0f};
    int want5[1] = {1};
    CHECK_INT(route(c, h4, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want5, NULL, 1);

    /* k = E: every expert, in key order; softmax + renorm sums to 1 */
    c = base_cfg(7, 7); /* E = 7: not a power of two */
    c.norm = MOE_NORM_SUM;
    float h5[7] = {0.3f, -1.0f, 2.0f, 0.3f, 1.0f, -0.5f, 0.7f};
    int want6[7] = {2, 4, 6, 0, 3, 5, 1};
    double hd5[7], p5[7];
    to_double(h5, hd5, 7);
    d_softmax(hd5, p5, 7);
    double ww6[7];
    for (int j = 0; j < 7; j++) ww6[j] = p5[want6[j]]; /* sum of all p is 1 */
    CHECK_INT(route(c, h5, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want6, ww6, 7);
    /* k = 1 on E = 7; E = 3; E = 1 */
    c.top_k = 1;
    c.norm = MOE_NORM_NONE;
    int want7[1] = {2};
    double ww7[1] = {p5[2]};
    CHECK_INT(route(c, h5, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want7, ww7, 1);
    c = base_cfg(3, 2);
    float h6[3] = {-1.0f, 0.5f, 0.25f};
    double hd6[3], p6[3];
    to_double(h6, hd6, 3);
    d_softmax(hd6, p6, 3);
    int want8[2] = {1, 2};
    double ww8[2] = {p6[1], p6[2]};
    CHECK_INT(route(c, h6, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want8, ww8, 2);
    c = base_cfg(1, 1);
    float h7[1] = {-3.0f};
    int want9[1] = {0};
    double ww9[1] = {1.0};
    CHECK_INT(route(c, h7, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want9, ww9, 1);
    /* E = 13, k = 5, several tokens at once, each checked on its own */
    c = base_cfg(13, 5);
    float h8[3 * 13];
    int32_t ex8[15];
    float w8[15];
    for (int t = 0; t < 3; t++)
        for (int e = 0; e < 13; e++) h8[t * 13 + e] = (float)((e * 7 + t * 5) % 13) * 0.25f - 1.0f;
    CHECK_INT(route(c, h8, 3, NULL, NULL, ex8, w8), MOE_OK);
    for (int t = 0; t < 3; t++) {
        double hd[13], p[13];
        int want[5];
        double ww[5];
        to_double(h8 + t * 13, hd, 13);
        d_softmax(hd, p, 13);
        /* the keys are distinct: sort by hand, selection style */
        int used[13] = {0};
        for (int j = 0; j < 5; j++) {
            int b = -1;
            for (int e = 0; e < 13; e++)
                if (!used[e] && (b < 0 || hd[e] > hd[b])) b = e;
            used[b] = 1;
            want[j] = b;
            ww[j] = p[b];
        }
        CHECK_ROUTE(ex8 + t * 5, w8 + t * 5, want, ww, 5);
    }
}

/* the k selected experts are valid and pairwise distinct */
static int distinct(const int32_t *ex, int k, int E) {
    for (int j = 0; j < k; j++) {
        if (ex[j] < 0 || ex[j] >= E) return 0;
        for (int i = 0; i < j; i++)
            if (ex[i] == ex[j]) return 0;
    }
    return 1;
}

static void test_nan(void) {
    /* Defined behaviour: a NaN key ranks after every number (even -inf); NaN keys among
       themselves go lower index first. Nothing crashes, the experts are always distinct. */
    int32_t ex[8];
    float w[8];
    float nan = (float)NAN;
    float h[5] = {nan, 1.0f, 2.0f, nan, 0.0f};
    moe_config c = base_cfg(5, 2);
    c.score = MOE_SCORE_SOFTMAX_TOPK;
    int want[2] = {2, 1};
    double v[2] = {2.0, 1.0}, p[2];
    d_softmax(v, p, 2);
    CHECK_INT(route_special(c, h, 1, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want, p, 2);
    c.top_k = 5;
    int want5[5] = {2, 1, 4, 0, 3};
    CHECK_INT(route_special(c, h, 1, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want5, NULL, 5);
    /* sigmoid: sigmoid(NaN) is NaN, so NaN keys last again */
    c = base_cfg(5, 3);
    c.score = MOE_SCORE_SIGMOID;
    int want3[3] = {2, 1, 4};
    double ww3[3] = {d_sigmoid(2.0), d_sigmoid(1.0), 0.5};
    CHECK_INT(route_special(c, h, 1, ex, w), MOE_OK);
    CHECK_ROUTE(ex, w, want3, ww3, 3);
    /* -inf beats NaN */
    float hi[3] = {nan, -INFINITY, nan};
    c = base_cfg(3, 1);
    c.score = MOE_SCORE_SIGMOID_TOPK;
    CHECK_INT(route_special(c, hi, 1, ex, w), MOE_OK);
    CHECK_INT(ex[0], 1);
    /* softmax: one NaN logit poisons every p, so all keys are NaN: index order */
    c = base_cfg(5, 2);
    CHECK_INT(route_special(c, h, 1, ex, w), MOE_OK);
    CHECK_INT(ex[0], 0);
    CHECK_INT(ex[1], 1);
    /* every rule, with NaN in several places: valid, distinct experts, no crash */
    float hs[4][6] = {{nan, nan, nan, nan, nan, nan},
                      {nan, 1.0f, nan, nan, nan, nan},
                      {0.5f, nan, -1.0f, nan, 2.0f, nan},
                      {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, nan}};
    for (int rule = 0; rule <= MOE_SCORE_SPARSEMIXER; rule++)
        for (int g = 0; g < (rule == MOE_SCORE_SPARSEMIXER ? 1 : 2); g++)
            for (int i = 0; i < 4; i++) {
                c = base_cfg(6, 2);
                c.score = (moe_score)rule;
                if (g) c.n_group = 3, c.topk_group = 2;
                CHECK_INT(route_special(c, hs[i], 1, ex, w), MOE_OK);
                if (!distinct(ex, 2, 6))
                    printf("  (rule %d, groups %d, case %d: experts %d %d)\n", rule, g, i,
                           (int)ex[0], (int)ex[1]);
                CHECK(distinct(ex, 2, 6));
            }
}

static void test_sparsemixer_degenerate(void) {
    /* The runner-up is chosen "with the winner removed": it must never be the winner again,
       even when every other logit is -inf (an expert disabled through a -inf router bias) or
       NaN. */
    int32_t ex[2];
    float w[2];
    moe_config c = base_cfg(2, 2);
    c.score = MOE_SCORE_SPARSEMIXER;
    float x[2] = {5.0f, 0.0f}, rb[2] = {0.0f, -INFINITY};
    CHECK_INT(route(c, x, 1, NULL, rb, ex, w), MOE_OK);
    CHECK_INT(ex[0], 0);
    CHECK_INT(ex[1], 1);
    float hn[3] = {(float)NAN, 1.0f, (float)NAN};
    c = base_cfg(3, 2);
    c.score = MOE_SCORE_SPARSEMIXER;
    CHECK_INT(route_special(c, hn, 1, ex, w), MOE_OK);
    CHECK_INT(ex[0], 1);
    CHECK_INT(ex[1], 0);
}

/* moe__topk directly: (key desc, index asc), NaN last */
static void test_topk_internal(void) {
    float key[9] = {1.0f, 3.0f, 3.0f, (float)NAN, -INFINITY, 3.0f, 2.0f, (float)NAN, 1.0f};
    int32_t idx[9];
    int want[9] = {1, 2, 5, 6, 0, 8, 4, 3, 7};
    for (int k = 1; k <= 9; k++) {
        moe__topk(key, 9, k, idx);
        int ok = 1;
        for (int j = 0; j < k; j++) ok &= idx[j] == want[j];
        if (!ok) printf("  topk k=%d wrong\n", k);
        CHECK(ok);
    }
}

/* The 0.2 rules: 0.0 for dropped groups, soft-capped logits, sqrt(softplus) scores, the scale
   left off the weights when it goes on the routed sum. */
static void test_v02_rules(void) {
    int32_t ex[8];
    float w[8];
    /* keys p + b = {-0.3, -0.3, -0.5, -0.5}: group 0 is kept. -inf fill selects its two
       experts; 0.0 fill makes the dropped group's keys 0 > -0.3, so HF Mistral4 / AXK2 pick
       experts 2 and 3 (with their own unbiased p) */
    moe_config c = base_cfg(4, 2);
    c.score = MOE_SCORE_SIGMOID, c.n_group = 2, c.topk_group = 1, c.group_score = MOE_GROUP_TOP2_SUM;
    float h0[4] = {0, 0, 0, 0}, b0[4] = {-0.8f, -0.8f, -1.0f, -1.0f};
    CHECK_INT(route(c, h0, 1, b0, NULL, ex, w), MOE_OK);
    CHECK(ex[0] == 0 && ex[1] == 1);
    c.group_fill = MOE_GROUP_FILL_ZERO;
    CHECK_INT(route(c, h0, 1, b0, NULL, ex, w), MOE_OK);
    CHECK(ex[0] == 2 && ex[1] == 3 && w[0] == 0.5f && w[1] == 0.5f);

    /* softcap c = 2: logits {3, 1, 0.5, -4} become 2 tanh(h / 2); the trace's logits are the
       capped ones; selection on sigmoid of them */
    c = base_cfg(4, 2);
    c.score = MOE_SCORE_SIGMOID, c.logit_softcap = 2.0f, c.norm = MOE_NORM_SUM;
    float h1[4] = {3.0f, 1.0f, 0.5f, -4.0f};
    double cap[4], ww[2];
    for (int e = 0; e < 4; e++) cap[e] = 2.0 * tanh(h1[e] / 2.0);
    CHECK_INT(route(c, h1, 1, NULL, NULL, ex, w), MOE_OK);
    double s0 = 1.0 / (1.0 + exp(-cap[0])), s1 = 1.0 / (1.0 + exp(-cap[1]));
    int want[2] = {0, 1};
    ww[0] = s0 / (s0 + s1), ww[1] = s1 / (s0 + s1);
    CHECK_ROUTE(ex, w, want, ww, 2);

    /* sqrt(softplus): p = sqrt(log(1 + e^h)), bias on the selection only, weights from p;
       h = 25 takes torch's threshold branch (softplus = h) */
    c = base_cfg(4, 2);
    c.score = MOE_SCORE_SQRT_SOFTPLUS;
    float h2[4] = {0.1f, 25.0f, -1.0f, 0.3f}, b2[4] = {0.0f, -10.0f, 0.9f, 0.0f};
    CHECK_INT(route(c, h2, 1, b2, NULL, ex, w), MOE_OK);
    int want2[2] = {2, 3}; /* keys 1.460, -5, 0.924, 0.863 */
    double ww2[2] = {sqrt(log1p(exp(-1.0))), sqrt(log1p(exp((double)0.3f)))};
    CHECK_ROUTE(ex, w, want2, ww2, 2);
    float h3[4] = {25.0f, 0.0f, 0.0f, 0.0f};
    CHECK_INT(route(c, h3, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK(ex[0] == 0 && fabs(w[0] - 5.0) < 1e-6);

    /* scale_on_sum: the weights in the trace stay unscaled (test_layer checks the output) */
    c = base_cfg(4, 2);
    c.norm = MOE_NORM_SUM, c.scale = 3.0f, c.scale_on_sum = 1;
    float h4[4] = {1.0f, 0.0f, 2.0f, -1.0f};
    CHECK_INT(route(c, h4, 1, NULL, NULL, ex, w), MOE_OK);
    CHECK(fabs(w[0] + w[1] - 1.0) < 1e-6);
}

int main(void) {
    test_softmax_topk_plain();
    test_sigmoid_select_bias();
    test_softmax_topk_gptoss();
    test_sigmoid_topk_llama4();
    test_sparsemixer();
    test_norms();
    test_groups();
    test_ties_and_shapes();
    test_nan();
    test_sparsemixer_degenerate();
    test_topk_internal();
    test_v02_rules();
    return check_summary();
}
