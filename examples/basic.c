/* basic.c - the quick start of moe.h: a 4-expert top-2 layer on 3 tokens.
   Kept identical to the QUICK START comment in moe.h; tests/test_compile.sh checks it. */
#define MOE_IMPLEMENTATION
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    enum { D = 8, FF = 16, E = 4, K = 2, T = 3 };
    static float router[E * D], gate[E * FF * D], up[E * FF * D], down[E * D * FF];
    float x[T * D], y[T * D];
    for (int i = 0; i < E * FF * D; i++) gate[i] = up[i] = down[i] = 0.01f * (float)(i % 7 - 3);
    for (int i = 0; i < E * D; i++) router[i] = 0.1f * (float)(i % 5 - 2);
    for (int i = 0; i < T * D; i++) x[i] = 0.5f - 0.1f * (float)i;

    moe_config cfg = {0};                 // zero = default: softmax routing, SwiGLU experts
    cfg.d_model = D; cfg.d_ff = FF; cfg.n_experts = E; cfg.top_k = K;
    cfg.norm = MOE_NORM_SUM;              // Mixtral: renormalise the top-k weights
    moe_weights w = {0};                  // views of [E][out][in] tensors, as nn.Linear stores them
    w.router.data = router; w.gate.data = gate; w.up.data = up; w.down.data = down;

    moe_layer *layer; size_t bytes;
    moe_result r = moe_layer_create(&layer, &cfg, &w);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }
    moe_workspace_size(layer, T, &bytes);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    r = moe_forward(layer, x, T, y, &ws, NULL);
    printf("%s, y[0] = %f\n", moe_result_string(r), y[0]);
    free(ws.data);
    moe_layer_free(layer);
    return r != MOE_OK;
}
