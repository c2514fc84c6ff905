/* test_stages.c - the staged and externally routed entry points, expert subsets, and threads
   from the host, each against moe_forward bit for bit.

   - moe_route_slots + moe_forward_routed: the bits of moe_forward.
   - moe_route_slots + moe_experts (rows grouped by expert, in an order moe_forward never uses)
     + moe_combine: the bits of moe_forward.
   - the experts split into three uneven subsets (three layers, as three ranks would hold them),
     each running its share of the rows, combined by yet another layer: the bits of moe_forward.
   - cfg.parallel_for with a small pthread pool: the bits of the OpenMP path, for creation and
     every entry point.
   - errors: bad expert ids, bad offsets, bad subsets, stated sizes that do not match (with the
     tensor named in moe_layer_create_msg's message), e.g. the HF router passed as the experts'
     gate.
   Every config runs in f32, bf16, with the bf16 dot, q8 and q4.

   Build: cc -std=c99 -O2 -march=native -fopenmp -I. tests/test_stages.c -o test_stages -lm */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static float *rnd(size_t n, float s) {
    float *p = (float *)malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = s * frand();
    return p;
}
static int same(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

/* ---- a small pthread pool ------------------------------------------------------------------ */

typedef struct pool {
    pthread_t th[8];
    int n, quit, busy;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    moe_task task;
    void *ctx;
    int n_tasks, next, finished, generation;
} pool;

static void *worker(void *arg) {
    pool *p = (pool *)arg;
    int seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        while (p->next < p->n_tasks) {
            int i = p->next++;
            pthread_mutex_unlock(&p->mu);
            p->task(p->ctx, i);
            pthread_mutex_lock(&p->mu);
            if (++p->finished == p->n_tasks) pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int g_pool_calls;
static void pool_for(void *pp, int n, moe_task task, void *ctx) {
    pool *p = (pool *)pp;
    pthread_mutex_lock(&p->mu);
    g_pool_calls++;
    p->task = task, p->ctx = ctx, p->n_tasks = n, p->next = 0, p->finished = 0;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    while (p->finished < n) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void pool_start(pool *p, int n) {
    memset(p, 0, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n; i++) pthread_create(&p->th[i], NULL, worker, p);
}

static void pool_stop(pool *p) {
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
}

/* ---- layers -------------------------------------------------------------------------------- */

typedef struct src {
    float *router, *sel, *rb, *g, *u, *dn, *bg, *bu, *bd, *sg, *su, *sd, *shg;
} src;

static void src_make(src *s, const moe_config *c) {
    size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t S = (size_t)c->n_shared * (size_t)(c->d_shared ? c->d_shared : c->d_ff);
    s->router = rnd(E * d, 1.0f), s->sel = rnd(E, 0.1f), s->rb = rnd(E, 0.5f);
    s->g = rnd(E * ff * d, 0.3f), s->u = rnd(E * ff * d, 0.3f), s->dn = rnd(E * d * ff, 0.3f);
    s->bg = rnd(E * ff, 0.2f), s->bu = rnd(E * ff, 0.2f), s->bd = rnd(E * d, 0.2f);
    s->sg = rnd(S * d, 0.3f), s->su = rnd(S * d, 0.3f), s->sd = rnd(S * d, 0.3f), s->shg = rnd(d, 0.3f);
}

static void src_free(src *s) {
    free(s->router), free(s->sel), free(s->rb), free(s->g), free(s->u), free(s->dn), free(s->bg);
    free(s->bu), free(s->bd), free(s->sg), free(s->su), free(s->sd), free(s->shg);
}

static moe_weights weights_of(const src *s, const moe_config *c) {
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = s->router, w.up.data = s->u, w.down.data = s->dn;
    if (c->ffn == MOE_FFN_GATED) w.gate.data = s->g;
    if (c->select_bias) w.select_bias.data = s->sel;
    if (c->router_bias) w.router_bias.data = s->rb;
    if (c->expert_bias) w.gate_bias.data = s->bg, w.up_bias.data = s->bu, w.down_bias.data = s->bd;
    if (c->n_shared) {
        w.shared_up.data = s->su, w.shared_down.data = s->sd;
        if (c->ffn == MOE_FFN_GATED) w.shared_gate_proj.data = s->sg;
        if (c->shared_gate) w.shared_gate.data = s->shg;
    }
    return w;
}

static moe_layer *make(const src *s, const moe_config *c) {
    moe_weights w = weights_of(s, c);
    moe_layer *L = NULL;
    char msg[256];
    moe_result r = moe_layer_create_msg(&L, c, &w, msg, sizeof msg);
    CHECK_MSG(r == MOE_OK, "create: %s", msg);
    return L;
}

static moe_workspace ws_for(const moe_layer *L, size_t T, size_t rows) {
    size_t a = 0, b = 0;
    moe_workspace ws = {0};
    moe_workspace_size(L, T, &a);
    moe_experts_workspace_size(L, rows, &b);
    ws.size = a > b ? a : b;
    ws.data = malloc(ws.size);
    return ws;
}

/* The rows of slots whose expert is in [e0, e0 + n), grouped by expert, tokens in reverse order
   within each (moe_forward keeps token order: the bits must not care). */
static size_t group(const int32_t *ex, size_t T, size_t k, int e0, int n, const float *x,
                    const float *wt, size_t d, float *rows, float *rw, int32_t *pair, int32_t *off) {
    size_t m = 0;
    for (int e = 0; e < n; e++) {
        off[e] = (int32_t)m;
        for (size_t i = T * k; i-- > 0;)
            if (ex[i] == e0 + e) {
                memcpy(rows + m * d, x + (i / k) * d, d * sizeof(float));
                rw[m] = wt[i], pair[m++] = (int32_t)i;
            }
    }
    off[n] = (int32_t)m;
    return m;
}

static void test_config(const moe_config *c0, const char *name) {
    static const moe_format fmt[7] = {MOE_FORMAT_F32, MOE_FORMAT_BF16, MOE_FORMAT_BF16,
                                      MOE_FORMAT_Q8,  MOE_FORMAT_Q4,   MOE_FORMAT_FP8, MOE_FORMAT_MXFP4};
    size_t T = 29, d = (size_t)c0->d_model, k = (size_t)c0->top_k, E = (size_t)c0->n_experts;
    float *x = rnd(T * d, 1.0f);
    x[3 * d] = 0.0f; /* a token of zeros among them */
    src s;
    src_make(&s, c0);
    for (int v = 0; v < 7; v++) {
        moe_config c = *c0;
        c.format = c.shared_format = fmt[v], c.dot = v == 2 ? MOE_DOT_BF16 : MOE_DOT_EXACT;
        moe_layer *L = make(&s, &c);
        if (!L) continue;
        moe_workspace ws = ws_for(L, T, T * k);
        float *y = (float *)malloc(T * d * sizeof(float)), *y2 = (float *)malloc(T * d * sizeof(float));
        float *z = (float *)malloc(T * k * d * sizeof(float)), *wt = (float *)malloc(T * k * sizeof(float));
        float *rows = (float *)malloc(T * k * d * sizeof(float)), *out = (float *)malloc(T * k * d * sizeof(float));
        float *rw = (float *)malloc(T * k * sizeof(float));
        int32_t *ex = (int32_t *)malloc(T * k * sizeof(int32_t)), *pair = (int32_t *)malloc(T * k * sizeof(int32_t));
        int32_t off[65];
        CHECK_INT(moe_forward(L, x, T, y, &ws, NULL), MOE_OK);
        CHECK_INT(moe_route_slots(L, x, T, ex, wt, &ws, NULL), MOE_OK);
        /* routed: the same bits */
        memset(y2, 0, T * d * sizeof(float));
        CHECK_INT(moe_forward_routed(L, x, T, ex, wt, y2, &ws), MOE_OK);
        CHECK_MSG(same(y, y2, T * d), "%s v%d: moe_forward_routed differs from moe_forward", name, v);
        /* staged: route, experts on grouped rows, combine */
        size_t m = group(ex, T, k, 0, (int)E, x, wt, d, rows, rw, pair, off);
        CHECK_INT(moe_experts(L, rows, off, rw, out, &ws), MOE_OK);
        for (size_t i = 0; i < m; i++) memcpy(z + (size_t)pair[i] * d, out + i * d, d * sizeof(float));
        memset(y2, 0, T * d * sizeof(float));
        CHECK_INT(moe_combine(L, x, T, ex, wt, z, y2, &ws), MOE_OK);
        CHECK_MSG(same(y, y2, T * d), "%s v%d: staged path differs from moe_forward", name, v);
        /* three ranks: uneven expert subsets, each runs its rows; any layer combines */
        int cut[4] = {0, (int)E / 3, (int)E / 3 + (int)E / 2, (int)E};
        moe_layer *part[3] = {NULL, NULL, NULL};
        memset(z, 0, T * k * d * sizeof(float));
        for (int r = 0; r < 3; r++) {
            moe_config cs = c;
            cs.expert_begin = cut[r], cs.expert_count = cut[r + 1] - cut[r];
            part[r] = make(&s, &cs);
            if (!part[r]) continue;
            CHECK_INT(moe_layer_config(part[r])->expert_count, cut[r + 1] - cut[r]);
            CHECK_MSG(moe_layer_packed_bytes(part[r]) < moe_layer_packed_bytes(L),
                      "%s: a subset layer holds fewer bytes", name);
            m = group(ex, T, k, cut[r], cut[r + 1] - cut[r], x, wt, d, rows, rw, pair, off);
            moe_workspace wr = ws_for(part[r], T, m);
            CHECK_INT(moe_experts(part[r], rows, off, rw, out, &wr), MOE_OK);
            for (size_t i = 0; i < m; i++)
                memcpy(z + (size_t)pair[i] * d, out + i * d, d * sizeof(float));
            free(wr.data);
        }
        if (part[2]) {
            moe_workspace wr = ws_for(part[2], T, T * k);
            memset(y2, 0, T * d * sizeof(float));
            CHECK_INT(moe_combine(part[2], x, T, ex, wt, z, y2, &wr), MOE_OK);
            CHECK_MSG(same(y, y2, T * d), "%s v%d: three expert subsets differ from one layer", name, v);
            free(wr.data);
        }
        for (int r = 0; r < 3; r++) moe_layer_free(part[r]);
        /* a host thread pool: creation and every call give the same bits */
        pool p;
        pool_start(&p, 3);
        moe_config cp = c;
        cp.parallel_for = pool_for, cp.pool = &p, cp.pool_threads = 3;
        int calls = g_pool_calls;
        moe_layer *LP = make(&s, &cp);
        if (LP) {
            moe_workspace wp = ws_for(LP, T, T * k);
            memset(y2, 0, T * d * sizeof(float));
            CHECK_INT(moe_forward(LP, x, T, y2, &wp, NULL), MOE_OK);
            CHECK_MSG(same(y, y2, T * d), "%s v%d: the host pool differs from OpenMP", name, v);
            CHECK_MSG(g_pool_calls > calls, "%s: the pool was never called", name);
            memset(y2, 0, T * d * sizeof(float));
            CHECK_INT(moe_forward_routed(LP, x, T, ex, wt, y2, &wp), MOE_OK);
            CHECK(same(y, y2, T * d));
            free(wp.data);
            moe_layer_free(LP);
        }
        pool_stop(&p);
        free(ws.data), free(y), free(y2), free(z), free(wt), free(rows), free(out), free(rw);
        free(ex), free(pair);
        moe_layer_free(L);
    }
    src_free(&s);
    free(x);
}

static void test_errors(void) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = 16, c.d_ff = 8, c.n_experts = 4, c.top_k = 2;
    src s;
    src_make(&s, &c);
    moe_layer *L = make(&s, &c);
    moe_workspace ws = ws_for(L, 4, 8);
    float x[64], y[64], wt[8] = {0.5f, 0.5f, 1, 0, 1, 1, 1, 1}, rows[8 * 16];
    int32_t ex[8] = {0, 1, 2, MOE_SLOT_NONE, MOE_SLOT_IDENTITY, 3, 1, 0};
    for (int i = 0; i < 64; i++) x[i] = frand();
    CHECK_INT(moe_forward_routed(L, x, 4, ex, wt, y, &ws), MOE_OK);
    ex[2] = 4; /* == n_experts */
    CHECK_INT(moe_forward_routed(L, x, 4, ex, wt, y, &ws), MOE_E_EXPERT);
    ex[2] = -3;
    CHECK_INT(moe_combine(L, x, 4, ex, wt, y, y, &ws), MOE_E_EXPERT);
    ex[2] = 2;
    CHECK_INT(moe_combine(L, x, 4, ex, wt, NULL, y, &ws), MOE_E_NULL); /* expert slots, no z */
    int32_t bad0[5] = {1, 1, 1, 1, 1}, down[5] = {0, 3, 2, 4, 4}, ok[5] = {0, 2, 2, 5, 8};
    CHECK_INT(moe_experts(L, rows, bad0, NULL, rows, &ws), MOE_E_OFFSETS);
    CHECK_INT(moe_experts(L, rows, down, NULL, rows, &ws), MOE_E_OFFSETS);
    float out[8 * 16];
    CHECK_INT(moe_experts(L, rows, ok, NULL, out, &ws), MOE_OK);
    moe_workspace small = ws;
    small.size = 64;
    CHECK_INT(moe_experts(L, rows, ok, NULL, out, &small), MOE_E_WORKSPACE);
    /* subsets */
    moe_config cs = c;
    cs.expert_begin = -1;
    CHECK_INT(moe_config_check(&cs), MOE_E_SUBSET);
    cs.expert_begin = 4;
    CHECK_INT(moe_config_check(&cs), MOE_E_SUBSET);
    cs.expert_begin = 1, cs.expert_count = 4;
    CHECK_INT(moe_config_check(&cs), MOE_E_SUBSET);
    cs.expert_count = 3;
    CHECK_INT(moe_config_check(&cs), MOE_OK);
    /* a subset's views need only its experts' pointers */
    {
        const void *per[4] = {NULL, s.g + 8 * 16, s.g + 2 * 8 * 16, NULL};
        const void *peru[4] = {NULL, s.u + 8 * 16, s.u + 2 * 8 * 16, NULL};
        const void *perd[4] = {NULL, s.dn + 8 * 16, s.dn + 2 * 8 * 16, NULL};
        moe_weights w = weights_of(&s, &c);
        w.gate.data = w.up.data = w.down.data = NULL;
        w.gate.per_expert = per, w.up.per_expert = peru, w.down.per_expert = perd;
        cs.expert_begin = 1, cs.expert_count = 2;
        moe_layer *LS = NULL;
        CHECK_INT(moe_layer_create(&LS, &cs, &w), MOE_OK);
        moe_layer_free(LS);
        cs.expert_count = 3; /* expert 3's pointer is NULL */
        char msg[200];
        CHECK_INT(moe_layer_create_msg(&LS, &cs, &w, msg, sizeof msg), MOE_E_NO_EXPERTS);
        CHECK_MSG(strstr(msg, "gate") && strstr(msg, "per_expert[3]"), "message: %s", msg);
    }
    /* stated sizes */
    {
        moe_weights w = weights_of(&s, &c);
        char msg[200];
        moe_layer *LS = NULL;
        w.router.n_elems = 4 * 16, w.gate.n_elems = w.up.n_elems = 4 * 8 * 16, w.down.n_elems = 4 * 16 * 8;
        CHECK_INT(moe_layer_create_msg(&LS, &c, &w, msg, sizeof msg), MOE_OK);
        moe_layer_free(LS);
        /* the HF mix-up: mlp.gate.weight (the router, E x d) given as the experts' gate */
        w.gate.data = s.router, w.gate.n_elems = 4 * 16;
        CHECK_INT(moe_layer_create_msg(&LS, &c, &w, msg, sizeof msg), MOE_E_SIZE);
        CHECK_MSG(LS == NULL && strstr(msg, "weights.gate") && strstr(msg, "64 elements") &&
                      strstr(msg, "512 needed"), "message: %s", msg);
        w.gate.data = s.g, w.gate.n_elems = 4 * 8 * 16;
        w.router.n_elems = 4 * 8 * 16; /* an expert matrix given as the router */
        CHECK_INT(moe_layer_create_msg(&LS, &c, &w, msg, sizeof msg), MOE_E_SIZE);
        CHECK_MSG(strstr(msg, "weights.router"), "message: %s", msg);
        CHECK_INT(moe_layer_create(&LS, &c, &w), MOE_E_SIZE); /* without a message too */
        /* per expert: the size of each buffer */
        const void *per[4] = {s.g, s.g + 128, s.g + 256, s.g + 384};
        w.router.n_elems = 0;
        w.gate.data = NULL, w.gate.per_expert = per, w.gate.n_elems = 4 * 128;
        CHECK_INT(moe_layer_create_msg(&LS, &c, &w, msg, sizeof msg), MOE_E_SIZE);
        CHECK_MSG(strstr(msg, "per expert"), "message: %s", msg);
        w.gate.n_elems = 128;
        CHECK_INT(moe_layer_create(&LS, &c, &w), MOE_OK);
        moe_layer_free(LS);
    }
    free(ws.data);
    moe_layer_free(L);
    src_free(&s);
}

int main(void) {
    const moe_build *b = moe_build_info();
    printf("%s\n", b->text);
    CHECK(b->text && strstr(b->text, b->isa) && b->panel_width == MOE__NR && b->openmp == MOE__OMP);
    CHECK(b->version_major == MOE_VERSION_MAJOR && b->version_minor == MOE_VERSION_MINOR);
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = 40, c.d_ff = 24, c.n_experts = 8, c.top_k = 2, c.norm = MOE_NORM_SUM;
    c.n_shared = 1, c.shared_gate = MOE_SHARED_GATE_SIGMOID;
    test_config(&c, "softmax + gated shared");
    memset(&c, 0, sizeof c);
    c.d_model = 48, c.d_ff = 20, c.n_experts = 16, c.top_k = 4, c.score = MOE_SCORE_SIGMOID;
    c.n_group = 4, c.topk_group = 2, c.group_score = MOE_GROUP_TOP2_SUM, c.select_bias = 1;
    c.norm = MOE_NORM_SUM, c.norm_eps = 1e-20f, c.scale = 2.5f, c.n_shared = 1, c.d_shared = 36;
    test_config(&c, "deepseek-v3-like");
    memset(&c, 0, sizeof c);
    c.d_model = 32, c.d_ff = 50, c.n_experts = 4, c.top_k = 1, c.ffn = MOE_FFN_PLAIN;
    c.act = MOE_ACT_RELU, c.capacity = 6, c.drop = MOE_DROP_IDENTITY, c.router_bias = 1;
    test_config(&c, "capacity, identity drop");
    c.drop = MOE_DROP_ZERO;
    test_config(&c, "capacity, zero drop");
    memset(&c, 0, sizeof c);
    c.d_model = 33, c.d_ff = 40, c.n_experts = 6, c.top_k = 1, c.score = MOE_SCORE_SIGMOID_TOPK;
    c.weight_on_input = 1, c.n_shared = 1, c.act = MOE_ACT_GELU_ERF;
    test_config(&c, "weight on input");
    memset(&c, 0, sizeof c);
    c.d_model = 37, c.d_ff = 21, c.n_experts = 5, c.top_k = 2, c.score = MOE_SCORE_SOFTMAX_TOPK;
    c.act = MOE_ACT_SWIGLU_OAI, c.expert_bias = 1, c.router_bias = 1;
    test_config(&c, "gpt-oss-like");
    test_errors();
    return check_summary();
}
