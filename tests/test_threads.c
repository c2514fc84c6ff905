/* test_threads.c - one layer, many threads: the layer is read-only after creation, so any
   number of caller threads may run moe_forward and moe_route on it at once, each with its own
   workspace (and, with OpenMP, each with its own team inside). Every call's output must be the
   bits of the same call made alone. The ThreadSanitizer variants of tests/run_tests.sh run this
   with and without OpenMP; here, in every build, it checks the results.

   Build: cc -std=c99 -O2 [-fopenmp] -I. tests/test_threads.c -lm ; run from the repo root. */
#define _POSIX_C_SOURCE 200809L
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { D = 48, FF = 40, E = 12, K = 3, S = 24, TMAX = 37, NTHREADS = 8, CALLS = 6 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float g_router[E * D], g_gate[E * FF * D], g_up[E * FF * D], g_down[E * D * FF];
static float g_sg[S * D], g_su[S * D], g_sd[D * S], g_x[TMAX * D];
static float g_want[TMAX * D];     /* the whole batch, computed alone before the threads start */
static int32_t g_want_ex[TMAX * K];
static const moe_layer *g_layer;

typedef struct job {
    int id, bad;                   /* calls whose result differed from the one made alone */
} job;

/* Each thread: batches of several sizes and offsets into x, with 1, 2 or all OpenMP threads,
   forward and route, each checked against the rows of the call made alone. A token's row does
   not depend on its batch, so every row can be compared with the full batch's. */
static void *worker(void *arg) {
    job *j = (job *)arg;
    size_t bytes = 0;
    moe_workspace_size(g_layer, TMAX, &bytes);
    moe_workspace ws = {malloc(bytes), bytes, 0};
    float *y = (float *)malloc(TMAX * D * sizeof(float));
    int32_t ex[TMAX * K];
    for (int c = 0; c < CALLS; c++) {
        int t0 = (j->id * 7 + c * 5) % TMAX, n = 1 + (j->id * 3 + c * 11) % (TMAX - t0);
        moe_trace tr;
        memset(&tr, 0, sizeof tr);
        tr.expert = ex;
        ws.n_threads = (j->id + c) % 3;
        if (moe_forward(g_layer, g_x + (size_t)t0 * D, (size_t)n, y, &ws, &tr) != MOE_OK ||
            memcmp(y, g_want + (size_t)t0 * D, (size_t)n * D * sizeof(float)) != 0 ||
            memcmp(ex, g_want_ex + (size_t)t0 * K, (size_t)n * K * sizeof(int32_t)) != 0)
            j->bad++;
        memset(ex, 0xff, sizeof ex);
        if (moe_route(g_layer, g_x + (size_t)t0 * D, (size_t)n, &ws, &tr) != MOE_OK ||
            memcmp(ex, g_want_ex + (size_t)t0 * K, (size_t)n * K * sizeof(int32_t)) != 0)
            j->bad++;
    }
    free(y);
    free(ws.data);
    return NULL;
}

static void run_case(const char *name, moe_config c) {
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = g_router, w.gate.data = g_gate, w.up.data = g_up, w.down.data = g_down;
    if (c.n_shared) w.shared_gate_proj.data = g_sg, w.shared_up.data = g_su, w.shared_down.data = g_sd;
    moe_layer *L = NULL;
    CHECK_INT(moe_layer_create(&L, &c, &w), MOE_OK);
    if (!L) return;
    g_layer = L;
    size_t bytes = 0;
    moe_workspace_size(L, TMAX, &bytes);
    moe_workspace ws = {malloc(bytes), bytes, 1};
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = g_want_ex;
    CHECK_INT(moe_forward(L, g_x, TMAX, g_want, &ws, &tr), MOE_OK);
    free(ws.data);
    pthread_t th[NTHREADS];
    job jobs[NTHREADS];
    int started = 0, bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i].id = i, jobs[i].bad = 0;
        if (pthread_create(&th[i], NULL, worker, &jobs[i]) == 0) started++;
        else break;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < started; i++) bad += jobs[i].bad;
    CHECK_MSG(started == NTHREADS, "%s: only %d threads started", name, started);
    CHECK_MSG(bad == 0, "%s: %d of %d concurrent calls differ from the call made alone", name, bad,
              started * CALLS * 2);
    moe_layer_free(L);
}

int main(void) {
    for (int i = 0; i < E * D; i++) g_router[i] = frand();
    for (int i = 0; i < E * FF * D; i++) g_gate[i] = 0.2f * frand(), g_up[i] = 0.2f * frand();
    for (int i = 0; i < E * D * FF; i++) g_down[i] = 0.2f * frand();
    for (int i = 0; i < S * D; i++) g_sg[i] = 0.2f * frand(), g_su[i] = 0.2f * frand();
    for (int i = 0; i < D * S; i++) g_sd[i] = 0.2f * frand();
    for (int i = 0; i < TMAX * D; i++) g_x[i] = frand();
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = D, c.d_ff = FF, c.n_experts = E, c.top_k = K;
    c.norm = MOE_NORM_SUM;
    run_case("softmax top-3", c);
    c.score = MOE_SCORE_SIGMOID, c.n_group = 4, c.topk_group = 2, c.group_score = MOE_GROUP_TOP2_SUM;
    c.n_shared = 1, c.d_shared = S, c.scale = 2.5f;
    run_case("sigmoid, groups, shared expert", c);
    return check_summary();
}
