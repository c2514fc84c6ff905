/* route_only.c - study routing without running experts: moe_route on a batch of a Switch-style
   top-1 layer with an expert capacity of 3, then the load per expert, the dropped slots, the
   load-balancing (aux) loss, the router z-loss and the mean router probability. */
#define MOE_IMPLEMENTATION
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>

enum { D = 8, FF = 4, E = 4, K = 1, T = 16, CAP = 3 };

/* deterministic pseudo-random numbers in [-scale/2, scale/2) (an LCG) */
static float rnd(float scale) {
    static uint32_t s = 1;
    s = s * 1664525u + 1013904223u;
    return scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
}

int main(void) {
    /* moe_route runs no expert, but a layer needs its expert weights: zeros will do */
    static float router[E * D], up[E * FF * D], down[E * D * FF];
    float x[T * D];
    for (int i = 0; i < E * D; i++) router[i] = rnd(1.0f) + (i < D ? 0.1f : 0.0f); // favour e0
    for (int i = 0; i < T * D; i++) x[i] = 0.5f + rnd(1.0f);

    moe_config cfg = {0};                 // softmax scores, weights not renormalised (Switch)
    cfg.d_model = D; cfg.d_ff = FF; cfg.n_experts = E; cfg.top_k = K;
    cfg.ffn = MOE_FFN_PLAIN; cfg.act = MOE_ACT_RELU;
    cfg.capacity = CAP;                   // Switch expert_capacity: first CAP tokens per expert
    cfg.drop = MOE_DROP_ZERO;             // a dropped slot would add nothing to y
    moe_weights w = {0};
    w.router.data = router; w.up.data = up; w.down.data = down;

    moe_layer *layer; size_t bytes;
    moe_result r = moe_layer_create(&layer, &cfg, &w);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }
    moe_workspace_size(layer, T, &bytes);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    int32_t ex[T * K]; int64_t kept[E]; float mean_prob[E];
    moe_trace tr = {0};
    tr.expert = ex; tr.expert_tokens = kept; tr.mean_prob = mean_prob;
    r = moe_route(layer, x, T, &ws, &tr);
    free(ws.data);
    moe_layer_free(layer);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }

    int wanted[E] = {0};                  // trace.expert lists dropped slots too
    for (int i = 0; i < T * K; i++) wanted[ex[i]]++;
    printf("expert  routed  kept  mean_prob\n");
    for (int e = 0; e < E; e++) {
        printf("%6d  %6d  %4lld  %9.4f  ", e, wanted[e], (long long)kept[e], mean_prob[e]);
        for (int j = 0; j < wanted[e]; j++) putchar(j < kept[e] ? '#' : '.');
        putchar('\n');
    }
    int64_t total = 0;
    for (int e = 0; e < E; e++) total += kept[e];
    printf("dropped %zu of %d slots (capacity %d)\n", tr.n_dropped, T * K, CAP);
    printf("aux_loss %.6f (1 when balanced)  z_loss %.6f\n", tr.aux_loss, tr.z_loss);
    if (total + (int64_t)tr.n_dropped != T * K) {
        fprintf(stderr, "route_only: kept + dropped != %d slots\n", T * K);
        return 1;
    }
    return 0;
}
