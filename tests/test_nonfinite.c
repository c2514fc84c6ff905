/* test_nonfinite.c - what a token whose input row holds a NaN or an infinity gets, as the
   comment above moe_forward in moe.h defines it:
     - the call succeeds (moe.h checks no values);
     - the token gets k distinct experts in 0..E-1; with a NaN in its row every logit is NaN
       and the experts are known: 0..k-1, or under group-limited top-k first the experts of
       the groups its (all -inf) group scores did not keep, then the kept ones;
     - every other token's y, experts, weights and logits are bit-identical to a call without
       it (capacity aside, where it takes its slots);
     - mean_prob, aux_loss and z_loss, means over the tokens, are NaN.
   And the largest norm_p moe_config_check accepts keeps the weights finite.

   Build: cc -std=c99 -O2 [-march=native] [-fopenmp] -I. tests/test_nonfinite.c -lm */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { D = 16, FF = 8, E = 8, T = 7, KMAX = 3 };

static uint64_t rng_state = 0x853c49e6748fea9bull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float g_router[E * D], g_rbias[E], g_sel[E], g_w1[E * 2 * FF * D], g_w2[E * D * FF];
static float g_b1[E * 2 * FF], g_b2[E * D], g_sg[FF * D], g_su[FF * D], g_sd[D * FF], g_gate[D];

typedef struct nf_case {
    const char *name;
    moe_config cfg;
} nf_case;

static moe_layer *make(const moe_config *c) {
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = g_router;
    if (c->router_bias) w.router_bias.data = g_rbias;
    if (c->select_bias) w.select_bias.data = g_sel;
    if (c->ffn == MOE_FFN_GATED) w.gate_up.data = g_w1, w.gate_up_split = MOE_SPLIT_INTERLEAVED;
    else w.up.data = g_w1;
    w.down.data = g_w2;
    if (c->expert_bias) {
        if (c->ffn == MOE_FFN_GATED) w.gate_up_bias.data = g_b1;
        else w.up_bias.data = g_b1;
        w.down_bias.data = g_b2;
    }
    if (c->n_shared) {
        w.shared_gate_proj.data = g_sg, w.shared_up.data = g_su, w.shared_down.data = g_sd;
        if (c->shared_gate) w.shared_gate.data = g_gate;
    }
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, c, &w);
    if (r != MOE_OK) printf("  create: %s\n", moe_result_string(r));
    return L;
}

typedef struct run_out {
    float y[T * D], wt[T * KMAX], logits[T * E], mean_prob[E];
    int32_t ex[T * KMAX];
    int64_t load[E];
    double aux, z;
    moe_result r, r_route;
} run_out;

static void run(const moe_layer *L, const float *x, size_t n, run_out *o) {
    size_t bytes = 0;
    moe_workspace_size(L, n, &bytes);
    moe_workspace ws = {malloc(bytes), bytes, 0};
    moe_trace tr;
    memset(o, 0, sizeof *o);
    memset(&tr, 0, sizeof tr);
    tr.expert = o->ex, tr.weight = o->wt, tr.logits = o->logits;
    tr.expert_tokens = o->load, tr.mean_prob = o->mean_prob;
    o->r = moe_forward(L, x, n, o->y, &ws, &tr);
    o->aux = tr.aux_loss, o->z = tr.z_loss;
    int32_t ex2[T * KMAX];
    moe_trace tr2;
    memset(&tr2, 0, sizeof tr2);
    tr2.expert = ex2;
    o->r_route = moe_route(L, x, n, &ws, &tr2);
    if (o->r_route == MOE_OK && memcmp(ex2, o->ex, n * (size_t)L->k * sizeof *ex2) != 0)
        o->r_route = MOE_E_VALUE; /* moe_route must route as moe_forward does */
    free(ws.data);
}

/* The experts of a token whose every key is NaN: NaN ranks after -inf, ties to the lower
   index; group-limited top-k keeps groups 0..topk_group-1 (all group scores are -inf) and sets
   the other groups' keys to -inf, so those come first. */
static void nan_route(const moe_config *c, int32_t *want) {
    int k = c->top_k, n = 0, per = c->n_group > 1 ? E / c->n_group : E;
    int kept = c->n_group > 1 ? c->topk_group * per : E;
    for (int e = kept; e < E && n < k; e++) want[n++] = e;
    for (int e = 0; e < kept && n < k; e++) want[n++] = e;
}

static void test_case(const nf_case *tc) {
    moe_layer *L = make(&tc->cfg);
    CHECK_MSG(L != NULL, "%s: layer", tc->name);
    if (!L) return;
    size_t k = (size_t)tc->cfg.top_k;
    static float x[T * D], xr[T * D];
    for (int i = 0; i < T * D; i++) x[i] = 1.5f * frand();
    const float nan = (float)NAN, inf = (float)INFINITY;
    static run_out full, rest;
    for (int kind = 0; kind < 5; kind++)
        for (int at = 0; at < T; at += 3) {
            float row[D];
            memcpy(row, x + at * D, sizeof row);
            if (kind == 0) row[3] = nan;
            if (kind == 1) row[0] = inf;
            if (kind == 2) row[D - 1] = -inf;
            if (kind == 3)
                for (int c = 0; c < D; c++) row[c] = nan;
            if (kind == 4) row[1] = inf, row[5] = nan;
            int has_nan = kind == 0 || kind >= 3;
            float xb[T * D];
            memcpy(xb, x, sizeof xb);
            memcpy(xb + at * D, row, sizeof row);
            run(L, xb, T, &full);
            CHECK_MSG(full.r == MOE_OK && full.r_route == MOE_OK, "%s kind %d at %d: %s / %s",
                      tc->name, kind, at, moe_result_string(full.r),
                      moe_result_string(full.r_route));
            /* the bad token: k distinct valid experts; with a NaN, the predicted ones */
            const int32_t *be = full.ex + (size_t)at * k;
            int valid = 1;
            for (size_t j = 0; j < k; j++) {
                valid = valid && be[j] >= 0 && be[j] < E;
                for (size_t i = 0; i < j; i++) valid = valid && be[i] != be[j];
            }
            CHECK_MSG(valid, "%s kind %d at %d: experts not k distinct valid ones", tc->name,
                      kind, at);
            if (has_nan) {
                int32_t want[KMAX];
                nan_route(&tc->cfg, want);
                CHECK_MSG(memcmp(be, want, k * sizeof *want) == 0,
                          "%s kind %d at %d: experts %d %d, expected %d %d", tc->name, kind, at,
                          (int)be[0], (int)be[k - 1], (int)want[0], (int)want[k - 1]);
            }
            /* statistics over the tokens are NaN */
            int allnan = isnan(full.aux) && isnan(full.z);
            for (int e = 0; e < E; e++) allnan = allnan && isnan(full.mean_prob[e]);
            CHECK_MSG(allnan, "%s kind %d at %d: mean_prob/aux_loss/z_loss not NaN", tc->name,
                      kind, at);
            /* the other tokens: bit-identical to a call without the bad one */
            memcpy(xr, xb, (size_t)at * D * sizeof(float));
            memcpy(xr + at * D, xb + (at + 1) * D, (size_t)(T - 1 - at) * D * sizeof(float));
            run(L, xr, T - 1, &rest);
            int same = rest.r == MOE_OK;
            for (int t = 0, u = 0; t < T && same; t++) {
                if (t == at) continue;
                same = memcmp(full.y + t * D, rest.y + u * D, D * sizeof(float)) == 0 &&
                       memcmp(full.ex + t * k, rest.ex + u * k, k * sizeof(int32_t)) == 0 &&
                       memcmp(full.wt + t * k, rest.wt + u * k, k * sizeof(float)) == 0 &&
                       memcmp(full.logits + t * E, rest.logits + u * E, E * sizeof(float)) == 0;
                u++;
            }
            CHECK_MSG(same, "%s kind %d at %d: another token changed", tc->name, kind, at);
        }
    moe_layer_free(L);
}

/* Under capacity the bad token still takes its slots: the call succeeds, every token gets
   valid experts, and the kept slots add up. */
static void test_capacity(void) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = D, c.d_ff = FF, c.n_experts = E, c.top_k = 1;
    c.ffn = MOE_FFN_PLAIN, c.act = MOE_ACT_RELU, c.capacity = 1, c.drop = MOE_DROP_IDENTITY;
    moe_layer *L = make(&c);
    static float x[T * D];
    static run_out o;
    for (int i = 0; i < T * D; i++) x[i] = frand();
    x[2 * D + 4] = (float)NAN;
    run(L, x, T, &o);
    CHECK(o.r == MOE_OK && o.r_route == MOE_OK);
    CHECK_INT(o.ex[2], 0); /* NaN: expert 0 */
    int64_t kept = 0;
    for (int e = 0; e < E; e++) kept += o.load[e];
    int valid = 1;
    for (int t = 0; t < T; t++) valid = valid && o.ex[t] >= 0 && o.ex[t] < E;
    CHECK(valid && kept >= 1 && kept <= E);
    moe_layer_free(L);
}

/* The largest accepted norm_p (126 / log2 E = 42 for E = 8) on logits far apart: the weights
   stay finite, in (0, 1]; one step above is refused. */
static void test_norm_p_bound(void) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = D, c.d_ff = FF, c.n_experts = E, c.top_k = 3;
    c.norm = MOE_NORM_LP, c.norm_p = 42.0f;
    CHECK_INT(moe_config_check(&c), MOE_OK);
    moe_layer *L = make(&c);
    static float x[T * D];
    static run_out o;
    for (int i = 0; i < T * D; i++) x[i] = 40.0f * frand();
    for (int i = 0; i < D; i++) x[i] = 0.0f; /* token 0: equal logits, every weight 1/E */
    run(L, x, T, &o);
    CHECK(o.r == MOE_OK);
    int ok = 1;
    for (int i = 0; i < T * 3; i++) ok = ok && isfinite(o.wt[i]) && o.wt[i] > 0.0f && o.wt[i] <= 1.0f;
    for (int i = 0; i < T * D; i++) ok = ok && isfinite(o.y[i]);
    CHECK_MSG(ok, "norm_p 42: a weight or an output is not finite, or out of (0, 1]");
    moe_layer_free(L);
    c.norm_p = 42.01f;
    CHECK_INT(moe_config_check(&c), MOE_E_NORM_P);
}

int main(void) {
    for (int i = 0; i < E * D; i++) g_router[i] = frand();
    for (int i = 0; i < E; i++) g_rbias[i] = 0.1f * frand(), g_sel[i] = 0.05f * frand();
    for (int i = 0; i < E * 2 * FF * D; i++) g_w1[i] = 0.3f * frand();
    for (int i = 0; i < E * D * FF; i++) g_w2[i] = 0.3f * frand();
    for (int i = 0; i < E * 2 * FF; i++) g_b1[i] = 0.1f * frand();
    for (int i = 0; i < E * D; i++) g_b2[i] = 0.1f * frand();
    for (int i = 0; i < FF * D; i++) g_sg[i] = 0.3f * frand(), g_su[i] = 0.3f * frand();
    for (int i = 0; i < D * FF; i++) g_sd[i] = 0.3f * frand();
    for (int i = 0; i < D; i++) g_gate[i] = 0.3f * frand();

    nf_case cases[8];
    memset(cases, 0, sizeof cases);
    for (int i = 0; i < 8; i++) {
        moe_config *c = &cases[i].cfg;
        c->d_model = D, c->d_ff = FF, c->n_experts = E, c->top_k = 2;
    }
    cases[0].name = "softmax (Mixtral)";
    cases[0].cfg.norm = MOE_NORM_SUM;
    cases[1].name = "sigmoid, groups (DeepSeek-V3)";
    {
        moe_config *c = &cases[1].cfg;
        c->score = MOE_SCORE_SIGMOID, c->select_bias = 1, c->n_group = 4, c->topk_group = 2;
        c->group_score = MOE_GROUP_TOP2_SUM, c->norm = MOE_NORM_SUM, c->norm_eps = 1e-20f;
        c->scale = 2.5f, c->n_shared = 1, c->top_k = 3;
    }
    cases[2].name = "softmax, groups (DeepSeek-V2)";
    cases[2].cfg.n_group = 4, cases[2].cfg.topk_group = 3, cases[2].cfg.top_k = 3;
    cases[3].name = "softmax of the selected (GPT-OSS)";
    {
        moe_config *c = &cases[3].cfg;
        c->score = MOE_SCORE_SOFTMAX_TOPK, c->router_bias = 1, c->expert_bias = 1;
        c->act = MOE_ACT_SWIGLU_OAI;
    }
    cases[4].name = "sigmoid of the selected, weight on input (Llama-4)";
    {
        moe_config *c = &cases[4].cfg;
        c->score = MOE_SCORE_SIGMOID_TOPK, c->weight_on_input = 1, c->top_k = 1, c->n_shared = 1;
    }
    cases[5].name = "sparsemixer (Phi-3.5-MoE)";
    cases[5].cfg.score = MOE_SCORE_SPARSEMIXER;
    cases[6].name = "L2 norm (DBRX-style)";
    cases[6].cfg.norm = MOE_NORM_LP, cases[6].cfg.norm_p = 2.0f;
    cases[7].name = "plain relu, gated shared expert (Qwen2-MoE-style)";
    {
        moe_config *c = &cases[7].cfg;
        c->ffn = MOE_FFN_PLAIN, c->act = MOE_ACT_RELU, c->top_k = 1, c->n_shared = 1;
        c->shared_gate = MOE_SHARED_GATE_SIGMOID;
    }
    for (int i = 0; i < 8; i++) test_case(&cases[i]);
    test_capacity();
    test_norm_p_bound();
    return check_summary();
}
