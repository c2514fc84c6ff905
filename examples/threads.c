/* threads.c - one layer, several caller threads. A moe_layer is read-only after creation, so
   callers share it freely; each caller owns its workspace. Also checks the determinism contract:
   a token's output is bit-identical alone or in a batch, with 1 or 2 OpenMP threads.
   Build with -fopenmp for the threaded parts; without it everything runs on one thread. */
#define MOE_IMPLEMENTATION
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 16, FF = 32, E = 8, K = 2, T = 16, CALLERS = 4 };

static float rnd(float scale) { /* deterministic pseudo-random numbers (an LCG) */
    static uint32_t s = 1;
    s = s * 1664525u + 1013904223u;
    return scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
}

int main(void) {
    static float router[E * D], gate[E * FF * D], up[E * FF * D], down[E * D * FF];
    static float x[T * D], y1[T * D], y2[T * D], yt[T * D];
    for (int i = 0; i < E * FF * D; i++) { gate[i] = rnd(0.5f); up[i] = rnd(0.5f); down[i] = rnd(0.5f); }
    for (int i = 0; i < E * D; i++) router[i] = rnd(1.0f);
    for (int i = 0; i < T * D; i++) x[i] = rnd(2.0f);

    moe_config cfg = {0};
    cfg.d_model = D; cfg.d_ff = FF; cfg.n_experts = E; cfg.top_k = K; cfg.norm = MOE_NORM_SUM;
    moe_weights w = {0};
    w.router.data = router; w.gate.data = gate; w.up.data = up; w.down.data = down;
    moe_layer *layer; size_t bytes, one;
    moe_result r = moe_layer_create(&layer, &cfg, &w);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }
    moe_workspace_size(layer, T, &bytes);
    moe_workspace_size(layer, 1, &one);   // a caller that sends one token at a time
    void *mem = malloc(bytes + CALLERS * one);
    if (!mem) { fprintf(stderr, "threads: out of memory\n"); moe_layer_free(layer); return 1; }

    /* the whole batch, one thread (n_threads 1), then two */
    moe_workspace ws = {0};
    ws.data = mem, ws.size = bytes, ws.n_threads = 1;
    r = moe_forward(layer, x, T, y1, &ws, NULL);
    ws.n_threads = 2;
    if (r == MOE_OK) r = moe_forward(layer, x, T, y2, &ws, NULL);
    /* CALLERS threads share the layer; caller c runs tokens c, c + CALLERS, ... one at a time,
       each with its own workspace (one thread inside, as a server would with its own pool) */
    moe_result rc[CALLERS];
#ifdef _OPENMP
#pragma omp parallel for num_threads(CALLERS)
#endif
    for (int c = 0; c < CALLERS; c++) {
        moe_workspace own = {0};
        own.data = (char *)mem + bytes + (size_t)c * one, own.size = one, own.n_threads = 1;
        rc[c] = MOE_OK;
        for (int t = c; t < T && rc[c] == MOE_OK; t += CALLERS)
            rc[c] = moe_forward(layer, x + t * D, 1, yt + t * D, &own, NULL);
    }
    for (int c = 0; c < CALLERS; c++) if (r == MOE_OK) r = rc[c];
    free(mem);
    moe_layer_free(layer);
    if (r != MOE_OK) { fprintf(stderr, "moe: %s\n", moe_result_string(r)); return 1; }

    int fail = 0;
#ifdef _OPENMP
    const char *how = "on their own threads";
    fail |= memcmp(y1, y2, sizeof y1) != 0;
    printf("batch of %d, n_threads 1 vs 2: %s\n", T, fail ? "DIFFERENT" : "bit-identical");
#else
    const char *how = "in turn, built without -fopenmp";
    printf("batch of %d, n_threads 1 vs 2: skipped (built without -fopenmp)\n", T);
#endif
    int alone = memcmp(y1, yt, sizeof y1) != 0;
    printf("each token alone (%d callers, %s) vs the batch: %s\n", CALLERS, how,
           alone ? "DIFFERENT" : "bit-identical");
    printf("y[0] = %f\n", y1[0]);
    return fail | alone;
}
