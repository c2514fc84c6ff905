/* test_errors.c - every error path of moe.h returns its own moe_result code.

   Each case starts from a valid layer and breaks one thing. Also: moe_result_string gives a
   distinct sentence for every code, *out is NULL after a failed create, MOE_E_NOMEM through a
   failing allocator, and every allocation is freed (counted here; LSan checks too under ASan).

   Build: cc -std=c99 -I. tests/test_errors.c -o test_errors -lm ; run from the repo root. */
#include <stddef.h>

static size_t g_n_malloc, g_n_free, g_fail_at = (size_t)-1;
static void *test_malloc(size_t sz);
static void test_free(void *p);
#define MOE_MALLOC(sz, ctx) test_malloc(sz)
#define MOE_FREE(p, ctx) test_free(p)

/* The scalar kernels: argument and config checks are the same in every build, and the SIMD tiles only cost compile time here
   (test_kernels.c, test_determinism.c and test_formats.c test those). */
#ifndef MOE_NO_SIMD
#define MOE_NO_SIMD
#endif
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fails on request, and refuses anything over 1 GiB (a size check that let a huge but
   non-overflowing product through would then show up as MOE_E_NOMEM, not as a crash) */
static void *test_malloc(size_t sz) {
    if (g_fail_at == 0 || sz > ((size_t)1 << 30)) {
        if (g_fail_at == 0) g_fail_at = (size_t)-1;
        return NULL;
    }
    if (g_fail_at != (size_t)-1) g_fail_at--;
    void *p = malloc(sz);
    if (p) g_n_malloc++;
    return p;
}
static void test_free(void *p) {
    if (p) g_n_free++;
    free(p);
}

#include "check.h"

#define CHECK_CODE(got, want)                                                                    \
    do {                                                                                         \
        moe_result g_ = (got), w_ = (want);                                                      \
        if (g_ == w_) n_pass++;                                                                  \
        else {                                                                                   \
            n_fail++;                                                                            \
            printf("%s:%d: %s: got %d (%s), expected %d (%s)\n", __FILE__, __LINE__, #got,     \
                   (int)g_, moe_result_string(g_), (int)w_, moe_result_string(w_));              \
        }                                                                                        \
    } while (0)

/* ---- a valid layer to break ----------------------------------------------------------------- */

enum { D = 4, FF = 8, E = 4, K = 2 };
static float g_router[E * D], g_mat[E * FF * D * 2], g_vec[E * FF * 2], g_shared[3 * 64 * D];

static moe_config good_cfg(void) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = D, c.d_ff = FF, c.n_experts = E, c.top_k = K;
    return c;
}

static moe_weights good_w(void) {
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = g_router;
    w.gate.data = w.up.data = w.down.data = g_mat;
    return w;
}

/* create must fail with `want`, leave *out NULL, and allocate nothing that stays */
static void expect_create(const moe_config *c, const moe_weights *w, moe_result want, int line) {
    moe_layer *L = (moe_layer *)(void *)&L; /* not NULL: create must clear it */
    size_t a = g_n_malloc, f = g_n_free;
    moe_result r = moe_layer_create(&L, c, w);
    if (r == want && L == NULL && g_n_malloc - a == g_n_free - f) n_pass++;
    else {
        n_fail++;
        printf("%s:%d: create: got %d (%s), expected %d (%s); out %s\n", __FILE__, line, (int)r,
               moe_result_string(r), (int)want, moe_result_string(want), L ? "not NULL" : "NULL");
        if (r == MOE_OK) moe_layer_free(L);
    }
}
#define EXPECT_CREATE(c, w, want) expect_create((c), (w), (want), __LINE__)

/* a config error: moe_config_check and moe_layer_create both give it */
static void expect_cfg(const moe_config *c, moe_result want, int line) {
    moe_weights w = good_w();
    moe_result r = moe_config_check(c);
    if (r == want) n_pass++;
    else {
        n_fail++;
        printf("%s:%d: config_check: got %d (%s), expected %d (%s)\n", __FILE__, line, (int)r,
               moe_result_string(r), (int)want, moe_result_string(want));
    }
    expect_create(c, &w, want, line);
}
#define EXPECT_CFG(c, want) expect_cfg((c), (want), __LINE__)

/* ---- tests -------------------------------------------------------------------------------- */

enum { N_CODES = 37 }; /* MOE_OK .. MOE_E_NO_IN_NORM (-36) */

static void test_strings(void) {
    const char *s[N_CODES + 1];
    for (int i = 0; i < N_CODES; i++) {
        s[i] = moe_result_string((moe_result)-i);
        CHECK(s[i] != NULL && s[i][0] != '\0');
    }
    s[N_CODES] = moe_result_string((moe_result)-N_CODES); /* unknown */
    CHECK(s[N_CODES] != NULL && s[N_CODES][0] != '\0');
    int distinct = 1;
    for (int i = 0; i <= N_CODES; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(s[i], s[j]) == 0) {
                distinct = 0;
                printf("  codes %d and %d share the message \"%s\"\n", -i, -j, s[i]);
            }
    CHECK(distinct);
    const char *u1 = moe_result_string((moe_result)1), *u2 = moe_result_string((moe_result)12345);
    const char *u3 = moe_result_string((moe_result)INT_MIN);
    CHECK(u1 && u2 && u3 && u1[0] && strcmp(u1, s[N_CODES]) == 0 &&
          strcmp(u2, s[N_CODES]) == 0 && strcmp(u3, s[N_CODES]) == 0);
}

static void test_null_args(void) {
    moe_config c = good_cfg();
    moe_weights w = good_w();
    moe_layer *L = (moe_layer *)(void *)&L;
    CHECK_CODE(moe_config_check(NULL), MOE_E_NULL);
    CHECK_CODE(moe_layer_create(NULL, &c, &w), MOE_E_NULL);
    CHECK_CODE(moe_layer_create(&L, NULL, &w), MOE_E_NULL);
    CHECK(L == NULL);
    L = (moe_layer *)(void *)&L;
    CHECK_CODE(moe_layer_create(&L, &c, NULL), MOE_E_NULL);
    CHECK(L == NULL);

    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    size_t bytes = 0;
    CHECK_CODE(moe_workspace_size(NULL, 1, &bytes), MOE_E_NULL);
    CHECK_CODE(moe_workspace_size(L, 1, NULL), MOE_E_NULL);
    CHECK_CODE(moe_workspace_size(L, 3, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    float x[3 * D] = {0}, y[3 * D];
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    CHECK_CODE(moe_forward(NULL, x, 3, y, &ws, NULL), MOE_E_NULL);
    CHECK_CODE(moe_forward(L, NULL, 3, y, &ws, NULL), MOE_E_NULL);
    CHECK_CODE(moe_forward(L, x, 3, NULL, &ws, NULL), MOE_E_NULL);
    CHECK_CODE(moe_forward(L, x, 3, y, NULL, NULL), MOE_E_NULL);
    CHECK_CODE(moe_route(NULL, x, 3, &ws, &tr), MOE_E_NULL);
    CHECK_CODE(moe_route(L, NULL, 3, &ws, &tr), MOE_E_NULL);
    CHECK_CODE(moe_route(L, x, 3, NULL, &tr), MOE_E_NULL);
    /* NULL x / y with no tokens, and a NULL trace, are fine */
    CHECK_CODE(moe_forward(L, NULL, 0, NULL, &ws, NULL), MOE_OK);
    CHECK_CODE(moe_route(L, NULL, 0, &ws, NULL), MOE_OK);
    /* no tokens need no workspace: NULL, or one without memory; the trace gets its zeros */
    moe_workspace none = {NULL, 0, 0};
    int64_t load[E];
    float mp[E];
    for (int pass = 0; pass < 4; pass++) {
        memset(&tr, 0xff, sizeof tr);
        memset(load, 0xff, sizeof load);
        memset(mp, 0xff, sizeof mp);
        tr.expert = NULL, tr.weight = NULL, tr.logits = NULL;
        tr.expert_tokens = load, tr.mean_prob = mp;
        const moe_workspace *wp = pass & 1 ? &none : NULL;
        CHECK_CODE(pass < 2 ? moe_forward(L, NULL, 0, NULL, wp, &tr) : moe_route(L, NULL, 0, wp, &tr),
                   MOE_OK);
        int zero = tr.n_dropped == 0 && tr.aux_loss == 0.0 && tr.z_loss == 0.0;
        for (int e = 0; e < E; e++) zero = zero && load[e] == 0 && mp[e] == 0.0f;
        CHECK_MSG(zero, "pass %d: trace of a zero-token call is not all zeros", pass);
    }
    CHECK_CODE(moe_forward(NULL, NULL, 0, NULL, NULL, NULL), MOE_E_NULL);
    CHECK_CODE(moe_forward(L, x, 3, y, &none, NULL), MOE_E_WORKSPACE);
    CHECK_CODE(moe_route(L, x, 3, &ws, NULL), MOE_OK);
    CHECK_CODE(moe_forward(L, x, 3, y, &ws, NULL), MOE_OK);
    free(ws.data);
    moe_layer_free(L);
    moe_layer_free(NULL);
}

static void test_config_errors(void) {
    moe_config c;
    /* dimensions zero or negative */
    int *dims[4];
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < 3; v++) {
            int vals[3] = {0, -1, INT_MIN};
            c = good_cfg();
            dims[0] = &c.d_model, dims[1] = &c.d_ff, dims[2] = &c.n_experts, dims[3] = &c.top_k;
            *dims[i] = vals[v];
            EXPECT_CFG(&c, MOE_E_DIM);
        }
    c = good_cfg();
    c.top_k = E + 1;
    EXPECT_CFG(&c, MOE_E_TOPK);
    c.top_k = INT_MAX;
    EXPECT_CFG(&c, MOE_E_TOPK);
    /* zero-computation experts: never negative; top_k counts them; groups span them too */
    c = good_cfg();
    c.n_zero_experts = -1;
    EXPECT_CFG(&c, MOE_E_DIM);
    c.n_zero_experts = INT_MIN;
    EXPECT_CFG(&c, MOE_E_DIM);
    c.n_zero_experts = 2;
    c.top_k = E + 2;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
    c.top_k = E + 3;
    EXPECT_CFG(&c, MOE_E_TOPK);
    c.top_k = 2;
    c.n_group = 3; /* E + 2 = 6 choices in 3 groups of 2 */
    c.topk_group = 1;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
    c.n_group = 4; /* 6 choices do not split into 4 groups, though the 4 experts would */
    EXPECT_CFG(&c, MOE_E_GROUP_DIVIDE);
    c.n_group = 1, c.topk_group = 0;
    c.n_zero_experts = INT_MAX; /* E + Z past int32 */
    EXPECT_CFG(&c, MOE_E_OVERFLOW);
    c = good_cfg();
    c.d_latent = -1;
    EXPECT_CFG(&c, MOE_E_DIM);

    /* groups */
    c = good_cfg();
    c.n_experts = 8;
    c.n_group = 3;
    EXPECT_CFG(&c, MOE_E_GROUP_DIVIDE);
    c.n_group = -2;
    EXPECT_CFG(&c, MOE_E_GROUP_DIVIDE);
    c.n_group = 16; /* more groups than experts */
    EXPECT_CFG(&c, MOE_E_GROUP_DIVIDE);
    c.n_group = 4;
    c.topk_group = 5;
    EXPECT_CFG(&c, MOE_E_TOPK_GROUP);
    c.topk_group = -1;
    EXPECT_CFG(&c, MOE_E_TOPK_GROUP);
    c.n_group = 0;
    c.topk_group = 2;
    EXPECT_CFG(&c, MOE_E_TOPK_GROUP);
    c.n_group = 1;
    EXPECT_CFG(&c, MOE_E_TOPK_GROUP);
    c.topk_group = -1;
    EXPECT_CFG(&c, MOE_E_TOPK_GROUP);
    c.n_group = 4; /* 2 experts a group, keep 1 group: at most 2 experts */
    c.topk_group = 1;
    c.top_k = 3;
    EXPECT_CFG(&c, MOE_E_GROUP_TOPK);
    c.top_k = 2;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
    c.n_group = 8; /* one expert a group */
    c.top_k = 1;
    c.group_score = MOE_GROUP_TOP2_SUM;
    EXPECT_CFG(&c, MOE_E_GROUP_SIZE);
    c.group_score = MOE_GROUP_MAX;
    CHECK_CODE(moe_config_check(&c), MOE_OK);

    /* every enum field: too big, and negative */
    for (int f = 0; f < 10; f++)
        for (int v = 0; v < 2; v++) {
            int bad = v ? -1 : 99;
            c = good_cfg();
            switch (f) {
            case 7: c.format = (moe_format)bad; break;
            case 8: c.n_shared = 1, c.shared_format = (moe_format)bad; break;
            case 9: c.dot = (moe_dot)bad; break;
            case 0: c.score = (moe_score)bad; break;
            case 1: c.group_score = (moe_group_score)bad; break;
            case 2: c.norm = (moe_norm)bad; break;
            case 3: c.drop = (moe_drop)bad; break;
            case 4: c.ffn = (moe_ffn)bad; break;
            case 5: c.act = (moe_act)bad; break;
            default: c.n_shared = 1, c.shared_gate = (moe_shared_gate)bad; break;
            }
            EXPECT_CFG(&c, MOE_E_OPTION);
        }
    c = good_cfg();
    c.score = (moe_score)(MOE_SCORE_SQRT_SOFTPLUS + 1);
    EXPECT_CFG(&c, MOE_E_OPTION);
    c = good_cfg();
    c.act = (moe_act)MOE_ACT_COUNT;
    EXPECT_CFG(&c, MOE_E_OPTION);
    c = good_cfg();
    c.format = MOE_FORMAT_COUNT;
    EXPECT_CFG(&c, MOE_E_OPTION);

    /* the bf16 dot needs a set packed as bf16 */
    c = good_cfg();
    c.dot = MOE_DOT_BF16;
    CHECK_CODE(moe_config_check(&c), MOE_OK); /* AUTO packs as bf16 */
    c.format = MOE_FORMAT_F32;
    EXPECT_CFG(&c, MOE_E_DOT);
    c.format = MOE_FORMAT_F16;
    EXPECT_CFG(&c, MOE_E_DOT);
    c.n_shared = 1; /* the shared set (AUTO) takes it */
    CHECK_CODE(moe_config_check(&c), MOE_OK);
    c.shared_format = MOE_FORMAT_F32;
    EXPECT_CFG(&c, MOE_E_DOT);
    c.shared_format = MOE_FORMAT_BF16;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
        c = good_cfg();
    c.group_fill = MOE_GROUP_FILL_COUNT;
    EXPECT_CFG(&c, MOE_E_OPTION);
    c = good_cfg();
    c.shared_combine = MOE_SHARED_COMBINE_COUNT;
    EXPECT_CFG(&c, MOE_E_OPTION);
    for (int v = 0; v < 2; v++) {
        c = good_cfg();
        c.out_norm = v ? (moe_out_norm)-1 : MOE_OUT_NORM_COUNT;
        EXPECT_CFG(&c, MOE_E_OPTION);
    }

    /* every float option: negative, NaN, +inf (and -0 is fine); jitter_eps may be negative
       (it means exactly 0), the clamp limits may be +inf (no clamp), and -inf is as bad as
       +inf */
    for (int f = 0; f < 10; f++)
        for (int v = 0; v < 5; v++) {
            float vals[5] = {-1.0f, (float)NAN, (float)INFINITY, -1e-30f, -(float)INFINITY};
            c = good_cfg();
            float *p = f == 0 ? &c.norm_eps : f == 1 ? &c.norm_p : f == 2 ? &c.scale
                     : f == 3 ? &c.jitter_eps : f == 4 ? &c.act_alpha : f == 5 ? &c.act_limit
                     : f == 6 ? &c.shared_act_limit : f == 7 ? &c.logit_softcap
                     : f == 8 ? &c.out_norm_eps : &c.in_norm_eps;
            *p = vals[v];
            if ((f == 3 && (v == 0 || v == 3)) || ((f == 5 || f == 6) && v == 2))
                CHECK_CODE(moe_config_check(&c), MOE_OK);
            else
                EXPECT_CFG(&c, MOE_E_VALUE);
            *p = -0.0f;
            CHECK_CODE(moe_config_check(&c), MOE_OK);
        }
    /* the clamped SwiGLUs need a gated FFN; the sqrt(softplus) score takes a selection bias */
    for (int a = 0; a < 3; a++) {
        c = good_cfg();
        c.ffn = MOE_FFN_PLAIN;
        c.act = a == 0 ? MOE_ACT_SWIGLU_OAI : a == 1 ? MOE_ACT_SWIGLU_CLAMP : MOE_ACT_SILU_CLAMP;
        EXPECT_CFG(&c, MOE_E_ACT_PLAIN);
    }
    c = good_cfg();
    c.score = MOE_SCORE_SQRT_SOFTPLUS, c.select_bias = 1;
    CHECK_CODE(moe_config_check(&c), MOE_OK);

    /* shared experts */
    c = good_cfg();
    c.n_shared = -1;
    EXPECT_CFG(&c, MOE_E_SHARED);
    c.n_shared = 1;
    c.d_shared = -1;
    EXPECT_CFG(&c, MOE_E_SHARED);
    c.n_shared = 0;
    c.d_shared = 0;
    c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    EXPECT_CFG(&c, MOE_E_SHARED);

    /* the router-weighted shared experts need shared experts, sigmoid scores, no Qwen gate */
    c = good_cfg();
    c.shared_router = 1, c.score = MOE_SCORE_SIGMOID;
    EXPECT_CFG(&c, MOE_E_SHARED);
    c.n_shared = 2;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
    c.score = MOE_SCORE_SOFTMAX;
    EXPECT_CFG(&c, MOE_E_SHARED);
    c.score = MOE_SCORE_SIGMOID, c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    EXPECT_CFG(&c, MOE_E_SHARED);

    c = good_cfg();
    c.capacity = -1;
    EXPECT_CFG(&c, MOE_E_CAPACITY);
    c.capacity = INT_MIN;
    EXPECT_CFG(&c, MOE_E_CAPACITY);

    c = good_cfg();
    c.act = MOE_ACT_SWIGLU_OAI;
    c.ffn = MOE_FFN_PLAIN;
    EXPECT_CFG(&c, MOE_E_ACT_PLAIN);

    moe_score no_bias[3] = {MOE_SCORE_SOFTMAX_TOPK, MOE_SCORE_SIGMOID_TOPK, MOE_SCORE_SPARSEMIXER};
    for (int i = 0; i < 3; i++) {
        c = good_cfg();
        c.select_bias = 1;
        c.score = no_bias[i];
        EXPECT_CFG(&c, MOE_E_BIAS_SCORE);
    }

    /* norm_p: 1 <= p <= 126 / log2(E); E = 4 here, so up to 63 */
    float bad_p[5] = {0.5f, 0.999f, 63.01f, 1e30f, FLT_MAX};
    for (int i = 0; i < 5; i++) {
        c = good_cfg();
        c.norm = MOE_NORM_LP;
        c.norm_p = bad_p[i];
        EXPECT_CFG(&c, MOE_E_NORM_P);
        c.norm = MOE_NORM_NONE; /* checked whatever the norm, as every float option */
        EXPECT_CFG(&c, MOE_E_NORM_P);
    }
    float ok_p[4] = {0.0f, 1.0f, 2.0f, 63.0f};
    for (int i = 0; i < 4; i++) {
        c = good_cfg();
        c.norm = MOE_NORM_LP;
        c.norm_p = ok_p[i];
        CHECK_CODE(moe_config_check(&c), MOE_OK);
    }
    c = good_cfg();
    c.n_experts = c.top_k = 1; /* log2(1) = 0: any finite p */
    c.norm = MOE_NORM_LP;
    c.norm_p = 1e30f;
    CHECK_CODE(moe_config_check(&c), MOE_OK);

    c = good_cfg();
    c.score = MOE_SCORE_SPARSEMIXER;
    c.top_k = 1;
    EXPECT_CFG(&c, MOE_E_SPARSEMIXER);
    c.top_k = 3;
    EXPECT_CFG(&c, MOE_E_SPARSEMIXER);
    c.top_k = 2;
    CHECK_CODE(moe_config_check(&c), MOE_OK);
}

static void test_overflow(void) {
    /* huge dimensions: the size products overflow (on 64-bit: ff_pad * d * 2 * E > 2^64) */
    moe_config c = good_cfg();
    moe_weights w = good_w();
    c.d_model = INT_MAX, c.d_ff = INT_MAX, c.n_experts = INT_MAX, c.top_k = 1;
    CHECK_CODE(moe_config_check(&c), MOE_OK); /* the config alone is valid */
    EXPECT_CREATE(&c, &w, MOE_E_OVERFLOW);
    /* the shared FFN: n_shared * d_shared = 2^62, times d */
    c = good_cfg();
    c.n_shared = INT_MAX, c.d_shared = INT_MAX;
    w.shared_gate_proj.data = w.shared_up.data = w.shared_down.data = g_shared;
    EXPECT_CREATE(&c, &w, MOE_E_OVERFLOW);
    /* big but not overflowing: the allocator says no */
    c = good_cfg();
    c.d_model = 1 << 20, c.d_ff = 1 << 20;
    w = good_w();
    EXPECT_CREATE(&c, &w, MOE_E_NOMEM);

    /* moe_workspace_size and the calls for huge token counts */
    c = good_cfg();
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    size_t bytes = 1;
    CHECK_CODE(moe_workspace_size(L, SIZE_MAX, &bytes), MOE_E_OVERFLOW);
    CHECK(bytes == 0);
    CHECK_CODE(moe_workspace_size(L, SIZE_MAX / 2, &bytes), MOE_E_OVERFLOW);
    CHECK_CODE(moe_workspace_size(L, (size_t)INT32_MAX / K + 1, &bytes), MOE_E_OVERFLOW);
    CHECK_CODE(moe_workspace_size(L, 1000, &bytes), MOE_OK);
    moe_workspace ws = {0};
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
    float x[D] = {0}, y[D];
    CHECK_CODE(moe_forward(L, x, SIZE_MAX, y, &ws, NULL), MOE_E_OVERFLOW);
    CHECK_CODE(moe_route(L, x, SIZE_MAX, &ws, NULL), MOE_E_OVERFLOW);
    free(ws.data);
    moe_layer_free(L);
}

static void test_missing_weights(void) {
    moe_config c = good_cfg();
    moe_weights w;
    const void *pe_bad[E] = {g_mat, g_mat, NULL, g_mat}; /* one NULL entry */
    const void *pe_ok[E] = {g_mat, g_mat, g_mat, g_mat};
    const void *pv_bad[E] = {g_vec, NULL, g_vec, g_vec};
    const void *pv_ok[E] = {g_vec, g_vec, g_vec, g_vec};
    const void *one_null[1] = {NULL};

    w = good_w();
    w.router.data = NULL;
    EXPECT_CREATE(&c, &w, MOE_E_NO_ROUTER);
    w.router.per_expert = one_null;
    EXPECT_CREATE(&c, &w, MOE_E_NO_ROUTER);

    /* gated: gate, up, down each missing, or with a NULL expert */
    for (int t = 0; t < 3; t++) {
        w = good_w();
        moe_tensor *m = t == 0 ? &w.gate : t == 1 ? &w.up : &w.down;
        m->data = NULL;
        EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
        m->per_expert = pe_bad;
        EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
        m->per_expert = pe_ok; /* all experts there: fine */
        moe_layer *L = NULL;
        CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
        moe_layer_free(L);
    }
    /* fused gate_up instead of gate and up */
    w = good_w();
    w.gate.data = w.up.data = NULL;
    w.gate_up.per_expert = pe_bad;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
    w.gate_up.per_expert = NULL;
    w.gate.data = g_mat; /* gate without up */
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
    /* plain: up and down; gate is not needed */
    c.ffn = MOE_FFN_PLAIN;
    w = good_w();
    w.gate.data = NULL;
    w.up.data = NULL;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
    w.up.data = g_mat;
    w.down.data = NULL;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
    w.down.per_expert = pe_bad;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);
    /* plain with a fused gate_up only: up is still missing */
    w = good_w();
    w.gate.data = w.up.data = NULL;
    w.gate_up.data = g_mat;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERTS);

    /* router and selection biases */
    c = good_cfg();
    c.router_bias = 1;
    w = good_w();
    EXPECT_CREATE(&c, &w, MOE_E_NO_ROUTER_BIAS);
    w.router_bias.per_expert = one_null;
    EXPECT_CREATE(&c, &w, MOE_E_NO_ROUTER_BIAS);
    c = good_cfg();
    c.select_bias = 1;
    c.score = MOE_SCORE_SIGMOID;
    w = good_w();
    EXPECT_CREATE(&c, &w, MOE_E_NO_SELECT_BIAS);
    w.select_bias.per_expert = one_null;
    EXPECT_CREATE(&c, &w, MOE_E_NO_SELECT_BIAS);

    /* expert biases: each of gate, up, down missing; a NULL expert; fused */
    for (int t = 0; t < 3; t++) {
        c = good_cfg();
        c.expert_bias = 1;
        w = good_w();
        w.gate_bias.data = w.up_bias.data = w.down_bias.data = g_vec;
        CHECK_CODE(moe_config_check(&c), MOE_OK);
        moe_tensor *b = t == 0 ? &w.gate_bias : t == 1 ? &w.up_bias : &w.down_bias;
        b->data = NULL;
        EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERT_BIAS);
        b->per_expert = pv_bad;
        EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERT_BIAS);
        b->per_expert = pv_ok;
        moe_layer *L = NULL;
        CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
        moe_layer_free(L);
    }
    c = good_cfg();
    c.expert_bias = 1;
    w = good_w();
    w.gate.data = w.up.data = NULL;
    w.gate_up.data = g_mat;
    w.down_bias.data = g_vec;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERT_BIAS); /* no gate_up_bias, no gate/up bias */
    w.gate_up_bias.per_expert = pv_bad;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERT_BIAS);
    c.ffn = MOE_FFN_PLAIN; /* plain: up_bias and down_bias */
    w = good_w();
    w.down_bias.data = g_vec;
    EXPECT_CREATE(&c, &w, MOE_E_NO_EXPERT_BIAS);

    /* shared experts */
    c = good_cfg();
    c.n_shared = 2;
    for (int t = 0; t < 4; t++) {
        w = good_w();
        w.shared_gate_proj.data = w.shared_up.data = w.shared_down.data = g_shared;
        if (t == 0) w.shared_gate_proj.data = NULL;
        if (t == 1) w.shared_up.data = NULL;
        if (t == 2) w.shared_down.data = NULL;
        if (t == 3) w.shared_down.data = NULL, w.shared_down.per_expert = one_null;
        EXPECT_CREATE(&c, &w, MOE_E_NO_SHARED);
    }
    w = good_w();
    EXPECT_CREATE(&c, &w, MOE_E_NO_SHARED);
    w.shared_gate_up.data = g_shared; /* fused shared, but no down */
    EXPECT_CREATE(&c, &w, MOE_E_NO_SHARED);
    w.shared_down.data = g_shared;
    c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    EXPECT_CREATE(&c, &w, MOE_E_NO_SHARED_GATE);
    w.shared_gate.per_expert = one_null;
    EXPECT_CREATE(&c, &w, MOE_E_NO_SHARED_GATE);
    w.shared_gate.per_expert = NULL;
    w.shared_gate.data = g_vec;
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    moe_layer_free(L);

    /* the latent projections: both needed */
    for (int t = 0; t < 3; t++) {
        c = good_cfg();
        c.d_latent = 2;
        w = good_w();
        if (t != 0) w.latent_in.data = g_vec;
        if (t != 1) w.latent_out.data = g_vec;
        if (t == 2) w.latent_out.per_expert = one_null, w.latent_out.data = NULL;
        EXPECT_CREATE(&c, &w, MOE_E_NO_LATENT);
    }
    w = good_w();
    w.latent_in.data = w.latent_out.data = g_vec;
    L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    moe_layer_free(L);

    /* the Gemma-4 router scale, expert input norm, per-expert scale */
    for (int t = 0; t < 3; t++) {
        c = good_cfg();
        w = good_w();
        moe_tensor *v = t == 0 ? &w.router_in_scale : t == 1 ? &w.expert_in_norm : &w.expert_scale;
        if (t == 0) c.router_in_norm = 1;
        if (t == 1) c.expert_in_norm = 1;
        if (t == 2) c.expert_scale = 1;
        EXPECT_CREATE(&c, &w, MOE_E_NO_IN_NORM);
        v->per_expert = one_null;
        EXPECT_CREATE(&c, &w, MOE_E_NO_IN_NORM);
        v->per_expert = NULL;
        v->data = g_vec;
        L = NULL;
        CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
        moe_layer_free(L);
    }

    /* the output bias and the output norm's weight */
    for (int t = 0; t < 2; t++) {
        c = good_cfg();
        w = good_w();
        moe_tensor *v = t ? &w.out_norm : &w.output_bias;
        moe_result want = t ? MOE_E_NO_OUT_NORM : MOE_E_NO_OUTPUT_BIAS;
        if (t) c.out_norm = MOE_OUT_NORM_RMS;
        else c.output_bias = 1;
        EXPECT_CREATE(&c, &w, want);
        v->per_expert = one_null;
        EXPECT_CREATE(&c, &w, want);
        v->per_expert = NULL;
        v->data = g_vec;
        L = NULL;
        CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
        moe_layer_free(L);
    }
}

static void test_dtype_layout(void) {
    moe_config c = good_cfg();
    moe_weights w;
    int bads[3] = {3, -1, 1000};
    for (int t = 0; t < 4; t++)
        for (int b = 0; b < 3; b++)
            for (int which = 0; which < 2; which++) {
                w = good_w();
                moe_tensor *m = t == 0 ? &w.router : t == 1 ? &w.gate : t == 2 ? &w.up : &w.down;
                if (which) m->layout = (moe_layout)(bads[b] == 3 ? 2 : bads[b]);
                else m->dtype = (moe_dtype)bads[b];
                EXPECT_CREATE(&c, &w, MOE_E_DTYPE);
            }
    /* a bias tensor with a bad dtype */
    c.router_bias = 1;
    w = good_w();
    w.router_bias.data = g_vec;
    w.router_bias.dtype = (moe_dtype)7;
    EXPECT_CREATE(&c, &w, MOE_E_DTYPE);
    /* an unused tensor is not looked at */
    c = good_cfg();
    w = good_w();
    w.gate_up_bias.data = g_vec;
    w.gate_up_bias.dtype = (moe_dtype)7;
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    moe_layer_free(L);
    /* a bad gate_up split enum */
    w = good_w();
    w.gate_up_split = (moe_gate_up_split)2;
    EXPECT_CREATE(&c, &w, MOE_E_OPTION);
    w = good_w();
    w.shared_gate_up_split = (moe_gate_up_split)-1;
    EXPECT_CREATE(&c, &w, MOE_E_OPTION);
}

static void test_nomem(void) {
    moe_config c = good_cfg();
    moe_weights w = good_w();
    g_fail_at = 0; /* the very next allocation fails */
    EXPECT_CREATE(&c, &w, MOE_E_NOMEM);
    g_fail_at = (size_t)-1;
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    moe_layer_free(L);
}

static void test_workspace(void) {
    moe_config c = good_cfg();
    moe_weights w = good_w();
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    size_t bytes, b1;
    CHECK_CODE(moe_workspace_size(L, 5, &bytes), MOE_OK);
    CHECK_CODE(moe_workspace_size(L, 4, &b1), MOE_OK);
    CHECK(b1 <= bytes);
    char *mem = (char *)malloc(bytes + 64);
    float x[5 * D] = {0}, y[5 * D];
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    moe_workspace ws = {0};
    ws.data = NULL, ws.size = bytes, ws.n_threads = 0;
    CHECK_CODE(moe_forward(L, x, 5, y, &ws, NULL), MOE_E_WORKSPACE);
    CHECK_CODE(moe_route(L, x, 5, &ws, &tr), MOE_E_WORKSPACE);
    ws.data = mem;
    ws.size = bytes - 1;
    CHECK_CODE(moe_forward(L, x, 5, y, &ws, NULL), MOE_E_WORKSPACE);
    CHECK_CODE(moe_route(L, x, 5, &ws, &tr), MOE_E_WORKSPACE);
    ws.size = b1; /* sized for 4 tokens, called with 5 */
    if (b1 < bytes) CHECK_CODE(moe_forward(L, x, 5, y, &ws, NULL), MOE_E_WORKSPACE);
    CHECK_CODE(moe_forward(L, x, 4, y, &ws, NULL), MOE_OK);
    CHECK_CODE(moe_forward(L, x, 1, y, &ws, NULL), MOE_OK); /* fewer tokens are fine */
    /* the exact size works at any alignment of the pointer */
    for (int off = 0; off < 64; off += 7) {
        ws.data = mem + off;
        ws.size = bytes;
        CHECK_CODE(moe_forward(L, x, 5, y, &ws, &tr), MOE_OK);
    }
    free(mem);
    moe_layer_free(L);
}

/* n_threads: negative is an error; any positive count, 2^31 - 1 included, runs (capped at what
   the process can run; libgomp used to exit() trying to allocate the team) and gives the bits
   of one thread */
static void test_threads(void) {
    enum { T = 300 }; /* enough tokens that every parallel region runs in parallel */
    moe_config c = good_cfg();
    moe_weights w = good_w();
    for (int i = 0; i < E * D; i++) g_router[i] = 0.25f * (float)(i % 7 - 3);
    for (int i = 0; i < E * FF * D * 2; i++) g_mat[i] = 0.03f * (float)(i % 11 - 5);
    moe_layer *L = NULL;
    CHECK_CODE(moe_layer_create(&L, &c, &w), MOE_OK);
    size_t bytes;
    CHECK_CODE(moe_workspace_size(L, T, &bytes), MOE_OK);
    moe_workspace ws = {malloc(bytes), bytes, 1};
    static float x[T * D], y1[T * D], y[T * D];
    for (int i = 0; i < T * D; i++) x[i] = 0.01f * (float)(i % 101 - 50);
    CHECK_CODE(moe_forward(L, x, T, y1, &ws, NULL), MOE_OK);
    int counts[5] = {0, 2, 1000, INT_MAX - 1, INT_MAX};
    for (int i = 0; i < 5; i++) {
        ws.n_threads = counts[i];
        memset(y, 0xff, sizeof y);
        CHECK_CODE(moe_forward(L, x, T, y, &ws, NULL), MOE_OK);
        CHECK_MSG(memcmp(y, y1, sizeof y) == 0, "n_threads %d: output differs from 1 thread",
                  counts[i]);
        CHECK_CODE(moe_route(L, x, T, &ws, NULL), MOE_OK);
    }
    int bad[3] = {-1, -2, INT_MIN};
    for (int i = 0; i < 3; i++) {
        ws.n_threads = bad[i];
        CHECK_CODE(moe_forward(L, x, T, y, &ws, NULL), MOE_E_THREADS);
        CHECK_CODE(moe_route(L, x, T, &ws, NULL), MOE_E_THREADS);
        CHECK_CODE(moe_forward(L, x, 0, y, &ws, NULL), MOE_E_THREADS);
    }
    free(ws.data);
    moe_layer_free(L);
    memset(g_router, 0, sizeof g_router);
    memset(g_mat, 0, sizeof g_mat);
}

int main(void) {
    test_strings();
    test_null_args();
    test_config_errors();
    test_overflow();
    test_missing_weights();
    test_dtype_layout();
    test_nomem();
    test_workspace();
    test_threads();
    CHECK(g_n_malloc == g_n_free); /* every layer was freed */
    if (g_n_malloc != g_n_free)
        printf("  %zu allocations, %zu frees\n", g_n_malloc, g_n_free);
    return check_summary();
}
