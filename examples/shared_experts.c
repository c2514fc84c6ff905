/* shared_experts.c - a DeepSeek-V3-style layer: sigmoid scores, a selection-only bias,
   group-limited top-k, renormalised weights times routed_scaling_factor, one shared expert.
   Expert weights come per expert (the nn.ModuleList layout) in bf16, as checkpoints store them. */
#define MOE_IMPLEMENTATION
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 8, FF = 8, E = 8, K = 3, T = 4, G = 4 };  // G groups of E / G experts

/* fp32 -> bf16, round to nearest even (as torch's .to(torch.bfloat16)); no NaNs here */
static uint16_t bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* deterministic pseudo-random numbers in [-scale/2, scale/2) (an LCG) */
static float rnd(float scale) {
    static uint32_t s = 1;
    s = s * 1664525u + 1013904223u;
    return scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
}

int main(void) {
    static uint16_t gate[E][FF * D], up[E][FF * D], down[E][D * FF];
    static float router[E * D], sgate[FF * D], sup[FF * D], sdown[D * FF];
    const void *gp[E], *upp[E], *dp[E];   // one pointer per expert
    float bias[E], x[T * D], y[T * D];
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < FF * D; i++) {
            gate[e][i] = bf16(rnd(0.5f));
            up[e][i] = bf16(rnd(0.5f));
            down[e][i] = bf16(rnd(0.5f));
        }
        gp[e] = gate[e]; upp[e] = up[e]; dp[e] = down[e];
        bias[e] = 0.05f * (float)(e % 3);  // e_score_correction_bias: steers selection only
    }
    for (int i = 0; i < E * D; i++) router[i] = rnd(1.0f);
    for (int i = 0; i < FF * D; i++) sgate[i] = sup[i] = sdown[i] = rnd(0.5f);
    for (int i = 0; i < T * D; i++) x[i] = rnd(2.0f);

    moe_config cfg = {0};
    cfg.d_model = D; cfg.d_ff = FF; cfg.n_experts = E; cfg.top_k = K;
    cfg.score = MOE_SCORE_SIGMOID;
    cfg.select_bias = 1;
    cfg.n_group = G; cfg.topk_group = 2;  // keep the 2 groups with the best top-2 sums
    cfg.group_score = MOE_GROUP_TOP2_SUM;
    cfg.norm = MOE_NORM_SUM; cfg.norm_eps = 1e-20f;
    cfg.scale = 2.5f;                     // routed_scaling_factor, after the renormalisation
    cfg.n_shared = 1;                     // d_shared 0 = d_ff
    moe_weights w = {0};
    w.router.data = router;
    w.select_bias.data = bias;
    w.gate.per_expert = gp; w.up.per_expert = upp; w.down.per_expert = dp;
    w.gate.dtype = w.up.dtype = w.down.dtype = MOE_BF16;
    w.shared_gate_proj.data = sgate; w.shared_up.data = sup; w.shared_down.data = sdown;

    moe_layer *layer; size_t bytes;
    moe_result r = moe_layer_create(&layer, &cfg, &w);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }
    moe_workspace_size(layer, T, &bytes);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    int32_t ex[T * K]; float wt[T * K]; int64_t count[E];
    moe_trace tr = {0};
    tr.expert = ex; tr.weight = wt; tr.expert_tokens = count;
    r = moe_forward(layer, x, T, y, &ws, &tr);
    free(ws.data);
    moe_layer_free(layer);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }
    /* slots are in key order (p + bias); the weights are the unbiased p, renormalised, x 2.5 */
    for (int t = 0; t < T; t++) {
        float sum = 0.0f;
        printf("token %d:", t);
        for (int j = 0; j < K; j++) {
            printf("  e%d (group %d) %.4f", ex[t * K + j], ex[t * K + j] / (E / G), wt[t * K + j]);
            sum += wt[t * K + j];
        }
        printf("  sum %.4f  y[0] %+.6f\n", sum, y[t * D]);
    }
    printf("tokens per expert:");
    for (int e = 0; e < E; e++) printf(" %lld", (long long)count[e]);
    printf("  (the shared expert saw all %d)\n", T);
    return 0;
}
