/* test_determinism.c - a token's output never depends on how it was computed.

   moe.h promises bit-identical output rows whatever the thread count, the batch size, the other
   tokens in the batch, the token's position in it, and the kernel shape (the decode tile for an
   expert with few rows, the GEMM tile for many). This file checks each of these, bit for bit,
   on several layer configurations. Capacity makes routing depend on the batch by definition
   (Switch drops the late tokens), so that config is only checked across thread counts. Every
   case runs in every packed format (f32, bf16, f16) and with the bf16 dot.

   Build: cc -std=c99 -O2 [-march=native] [-fopenmp] -I. tests/test_determinism.c -lm */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}

enum { NTOK = 37 };

typedef struct layer_case {
    const char *name;
    moe_config cfg;
    int batch_invariant; /* 0 with capacity */
} layer_case;

typedef struct bufs {
    float *router, *gate, *up, *down, *sel, *sg, *su, *sd, *sgate, *lin, *lout, *onorm;
} bufs;

static moe_layer *make(const moe_config *c, bufs *b) {
    size_t d = (size_t)c->d_model, ff = (size_t)c->d_ff, E = (size_t)c->n_experts;
    size_t R = E + (size_t)c->n_zero_experts, dl = c->d_latent ? (size_t)c->d_latent : d;
    size_t S = (size_t)c->n_shared * (size_t)(c->d_shared ? c->d_shared : c->d_ff) + 1;
    b->router = (float *)malloc(R * d * sizeof(float));
    b->gate = (float *)malloc(E * ff * dl * sizeof(float));
    b->up = (float *)malloc(E * ff * dl * sizeof(float));
    b->down = (float *)malloc(E * dl * ff * sizeof(float));
    b->sel = (float *)malloc(R * sizeof(float));
    b->lin = (float *)malloc(dl * d * sizeof(float));
    b->lout = (float *)malloc(dl * d * sizeof(float));
    b->onorm = (float *)malloc(d * sizeof(float));
    b->sg = (float *)malloc(S * d * sizeof(float));
    b->su = (float *)malloc(S * d * sizeof(float));
    b->sd = (float *)malloc(S * d * sizeof(float));
    b->sgate = (float *)malloc(d * sizeof(float));
    fill(b->router, R * d, 1.0f), fill(b->gate, E * ff * dl, 0.3f), fill(b->up, E * ff * dl, 0.3f);
    fill(b->down, E * dl * ff, 0.3f), fill(b->sel, R, 0.05f), fill(b->sg, S * d, 0.3f);
    fill(b->lin, dl * d, 0.3f), fill(b->lout, dl * d, 0.3f), fill(b->onorm, d, 1.0f);
    fill(b->su, S * d, 0.3f), fill(b->sd, S * d, 0.3f), fill(b->sgate, d, 0.3f);
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = b->router, w.up.data = b->up, w.down.data = b->down;
    if (c->ffn == MOE_FFN_GATED) w.gate.data = b->gate;
    if (c->select_bias) w.select_bias.data = b->sel;
    if (c->d_latent) w.latent_in.data = b->lin, w.latent_out.data = b->lout;
    if (c->out_norm) w.out_norm.data = b->onorm;
    if (c->n_shared) {
        w.shared_up.data = b->su, w.shared_down.data = b->sd;
        if (c->ffn == MOE_FFN_GATED) w.shared_gate_proj.data = b->sg;
        if (c->shared_gate) w.shared_gate.data = b->sgate;
    }
    moe_layer *L = NULL;
    moe_result r = moe_layer_create(&L, c, &w);
    CHECK_MSG(r == MOE_OK, "create: %s", moe_result_string(r));
    return L;
}

static void drop(bufs *b) {
    free(b->router), free(b->gate), free(b->up), free(b->down), free(b->sel);
    free(b->sg), free(b->su), free(b->sd), free(b->sgate), free(b->lin), free(b->lout);
    free(b->onorm);
}

/* y = forward(x[0..T)) with n_threads threads */
static void run(const moe_layer *L, const float *x, size_t T, float *y, int n_threads) {
    size_t bytes = 0;
    moe_workspace_size(L, T, &bytes);
    moe_workspace ws;
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = n_threads;
    moe_result r = moe_forward(L, x, T, y, &ws, NULL);
    CHECK_MSG(r == MOE_OK, "forward: %s", moe_result_string(r));
    free(ws.data);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

static void test_case(const layer_case *lc) {
    bufs b;
    moe_layer *L = make(&lc->cfg, &b);
    if (!L) {
        drop(&b);
        return;
    }
    size_t d = (size_t)lc->cfg.d_model;
    float *x = (float *)malloc(NTOK * d * sizeof(float)), *y1 = (float *)malloc(NTOK * d * sizeof(float));
    float *y = (float *)malloc(NTOK * d * sizeof(float));
    float *xb = (float *)malloc(NTOK * d * sizeof(float)), *yb = (float *)malloc(NTOK * d * sizeof(float));
    fill(x, NTOK * d, 1.0f);

    /* thread counts 1, 2, 3 (the same task partition logic, different splits) */
    run(L, x, NTOK, y1, 1);
    for (int nth = 2; nth <= 3; nth++) {
        run(L, x, NTOK, y, nth);
        CHECK_MSG(same(y1, y, NTOK * d), "%s: %d threads differ from 1", lc->name, nth);
    }
    if (lc->batch_invariant) {
        /* each token alone (decode tiles) vs in the batch of 37 (GEMM tiles for busy experts) */
        int bad = -1;
        for (size_t t = 0; t < NTOK && bad < 0; t++) {
            run(L, x + t * d, 1, y, 1 + (int)(t % 2));
            if (!same(y, y1 + t * d, d)) bad = (int)t;
        }
        CHECK_MSG(bad < 0, "%s: token %d alone differs from it in the batch", lc->name, bad);
        /* the same token in batches of other sizes, company and positions */
        static const size_t sizes[] = {2, 3, 5, 8, 16, 29};
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t T = sizes[s], pos = (s * 7) % T, src = (s * 11) % NTOK;
            fill(xb, T * d, 1.0f); /* fresh company */
            memcpy(xb + pos * d, x + src * d, d * sizeof(float));
            run(L, xb, T, yb, 1 + (int)(s % 3));
            CHECK_MSG(same(yb + pos * d, y1 + src * d, d), "%s: token %zu at %zu of %zu differs",
                  lc->name, src, pos, T);
        }
        /* a batch that repeats one token: its expert rows all go through GEMM tiles */
        for (size_t t = 0; t < NTOK; t++) memcpy(xb + t * d, x + 5 * d, d * sizeof(float));
        run(L, xb, NTOK, yb, 2);
        int ok = 1;
        for (size_t t = 0; t < NTOK; t++) ok &= same(yb + t * d, y1 + 5 * d, d);
        CHECK_MSG(ok, "%s: 37 copies of a token differ from it", lc->name);
    }
    free(x), free(y1), free(y), free(xb), free(yb);
    moe_layer_free(L);
    drop(&b);
}

/* Kernel level: a row computed alone (decode tile) and as one of m rows (GEMM tiles, every
   position within a tile, K in chunks) is the same row, for every packed format. */
static void test_kernel_shapes(int kind) {
    size_t K = 300, ff = 5 * MOE__NR + 3, panels = (ff + MOE__NR - 1) / MOE__NR, ld = panels * MOE__NR;
    float *X = (float *)malloc(40 * K * sizeof(float)), *H = (float *)malloc(40 * ld * sizeof(float));
    float h1[6 * MOE__NR], y1[6 * MOE__NR];
    int32_t xi[40];
    fill(X, 40 * K, 1.0f);
    moe__actp a;
    a.act = MOE_ACT_SILU, a.alpha = 1.702f, a.limit = 7.0f;
    const moe__kern *kern = moe__kernels(kind, 0);
    for (int gated = 0; gated < 2; gated++) {
        moe__mat M;
        size_t bytes = 0;
        moe__part pt = {0, 1, ff};
        moe__mat_init(&M, kind, ff, K, gated ? 2 * MOE__NR : MOE__NR, 1, &bytes);
        void *mem = malloc(bytes + 64);
        float *src = (float *)malloc(ff * K * sizeof(float));
        M.data = (unsigned char *)mem + (64 - (uintptr_t)mem % 64) % 64;
        fill(src, ff * K, 0.1f);
        moe__pack_mat(&M, 0, 0, src, MOE_F32, MOE_OUT_IN, pt);
        if (gated) moe__pack_mat(&M, 0, MOE__NR, src, MOE_F32, MOE_OUT_IN, pt);
        size_t rb = moe__act_row_bytes(kern->act, K);
        unsigned char *Xa = (unsigned char *)malloc(40 * rb); /* the inputs as the kernel reads them */
        for (size_t i = 0; i < 40; i++) moe__act_encode(kern->act, X + i * K, K, Xa + i * rb);
        for (size_t m = 2; m <= 40; m += 3) {
            for (size_t i = 0; i < m; i++) xi[i] = (int32_t)((i * 7 + m) % 40);
            moe__rows R = moe__rows_make(Xa, rb, xi, m, H, ld, NULL);
            kern->ffn1(&a, &M, 0, NULL, &R, 0, panels);
            int ok = 1;
            for (size_t i = 0; i < m; i++) {
                moe__rows R1 = moe__rows_make(Xa, rb, xi + i, 1, h1, ld, NULL);
                kern->ffn1(&a, &M, 0, NULL, &R1, 0, panels);
                ok &= same(h1, H + i * ld, ld);
            }
            CHECK_MSG(ok, "ffn1 %s gated=%d: a row alone differs from it among %zu rows",
                      kern->name, gated, m);
            if (gated) continue;
            kern->gemm(&M, 0, NULL, &R, 0, panels);
            ok = 1;
            for (size_t i = 0; i < m; i++) {
                moe__rows R1 = moe__rows_make(Xa, rb, xi + i, 1, y1, ld, NULL);
                kern->gemm(&M, 0, NULL, &R1, 0, panels);
                ok &= same(y1, H + i * ld, ff);
            }
            CHECK_MSG(ok, "gemm %s: a row alone differs from it among %zu rows", kern->name, m);
        }
        free(mem), free(src), free(Xa);
    }
    free(X), free(H);
}

int main(void) {
    layer_case cases[5];
    memset(cases, 0, sizeof cases);
    /* Qwen3 / Mixtral-like: softmax top-k, renormalised */
    cases[0].name = "softmax top-k";
    cases[0].cfg.d_model = 40, cases[0].cfg.d_ff = 24, cases[0].cfg.n_experts = 8;
    cases[0].cfg.top_k = 2, cases[0].cfg.norm = MOE_NORM_SUM, cases[0].batch_invariant = 1;
    /* DeepSeek-V3-like: sigmoid, correction bias, groups, scale, a shared expert */
    cases[1].name = "sigmoid+groups+shared";
    cases[1].cfg.d_model = 48, cases[1].cfg.d_ff = 20, cases[1].cfg.n_experts = 16;
    cases[1].cfg.top_k = 4, cases[1].cfg.score = MOE_SCORE_SIGMOID, cases[1].cfg.n_group = 4;
    cases[1].cfg.topk_group = 2, cases[1].cfg.group_score = MOE_GROUP_TOP2_SUM;
    cases[1].cfg.select_bias = 1, cases[1].cfg.norm = MOE_NORM_SUM, cases[1].cfg.scale = 2.5f;
    cases[1].cfg.n_shared = 1, cases[1].cfg.d_shared = 36, cases[1].batch_invariant = 1;
    /* Llama-4-like: weight on the input, sigmoid of the top-1 logit, gated shared expert */
    cases[2].name = "weight_on_input";
    cases[2].cfg.d_model = 33, cases[2].cfg.d_ff = 40, cases[2].cfg.n_experts = 4;
    cases[2].cfg.top_k = 1, cases[2].cfg.score = MOE_SCORE_SIGMOID_TOPK;
    cases[2].cfg.weight_on_input = 1, cases[2].cfg.n_shared = 1;
    cases[2].cfg.shared_gate = MOE_SHARED_GATE_SIGMOID, cases[2].cfg.act = MOE_ACT_GELU_ERF;
    cases[2].batch_invariant = 1;
    /* Switch-like: plain ReLU experts with capacity (batch-dependent by definition) */
    cases[3].name = "capacity";
    cases[3].cfg.d_model = 32, cases[3].cfg.d_ff = 50, cases[3].cfg.n_experts = 4;
    cases[3].cfg.top_k = 1, cases[3].cfg.ffn = MOE_FFN_PLAIN, cases[3].cfg.act = MOE_ACT_RELU;
    cases[3].cfg.capacity = 6, cases[3].cfg.drop = MOE_DROP_IDENTITY;
    /* Nemotron-H / LongCat-like: ungated relu2 experts in a latent space, zero-computation
       experts, a shared expert, the output norm */
    cases[4].name = "latent+zero experts+out norm";
    cases[4].cfg.d_model = 40, cases[4].cfg.d_ff = 24, cases[4].cfg.n_experts = 8;
    cases[4].cfg.top_k = 3, cases[4].cfg.ffn = MOE_FFN_PLAIN, cases[4].cfg.act = MOE_ACT_RELU2;
    cases[4].cfg.score = MOE_SCORE_SIGMOID, cases[4].cfg.select_bias = 1;
    cases[4].cfg.norm = MOE_NORM_SUM, cases[4].cfg.d_latent = 20, cases[4].cfg.n_zero_experts = 4;
    cases[4].cfg.n_shared = 1, cases[4].cfg.out_norm = MOE_OUT_NORM_RMS;
    cases[4].batch_invariant = 1;
    /* every case in every packed format, and the bf16 dot */
    static const char *fname[] = {"f32", "bf16", "f16", "bf16-dot", "q8", "q4", "fp8", "mxfp4"};
    static const moe_format fv[] = {MOE_FORMAT_F32, MOE_FORMAT_BF16, MOE_FORMAT_F16,
                                    MOE_FORMAT_BF16, MOE_FORMAT_Q8,   MOE_FORMAT_Q4,
                                    MOE_FORMAT_FP8, MOE_FORMAT_MXFP4};
    for (int i = 0; i < 5; i++)
        for (int f = 0; f < 8; f++) {
            layer_case lc = cases[i];
            char name[96];
            snprintf(name, sizeof name, "%s, %s", cases[i].name, fname[f]);
            lc.name = name;
            lc.cfg.format = lc.cfg.shared_format = fv[f];
            lc.cfg.dot = f == 3 ? MOE_DOT_BF16 : MOE_DOT_EXACT;
            test_case(&lc);
        }
    for (int kind = 0; kind < MOE__KIND_COUNT; kind++) test_kernel_shapes(kind);
    return check_summary();
}
