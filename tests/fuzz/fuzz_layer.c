/* fuzz_layer.c - libFuzzer target: moe.h's entry points with fuzzed configs, weight views and
   inputs. The input's bytes pick the config (small dimensions, every enum and flag, out-of-range
   values, interesting floats, the packed formats and an expert subset), the weight views (dtype, layout, fused or per expert, a missing
   pointer), the tokens (NaN and infinities included), the workspace and the thread count. Checked:
   moe_layer_create fails exactly when moe_config_check does (or for a weight problem), and then
   leaves *out NULL; on success every call returns the documented code, every token gets k
   distinct valid experts, moe_route routes as moe_forward, and the trace adds up. */
#define MOE_IMPLEMENTATION
#include "../../moe.h"
#include "fuzz.h"

#include <limits.h>
#include <math.h>

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static float fval(rd *r) {
    static const float v[16] = {0.0f, 1.0f, -1.0f, 0.5f, 2.5f, 1e-20f, 1e-12f, 7.0f,
                                1.702f, 3.0f, 42.0f, 1e30f, -0.0f, 0.01f, 0.0f, 0.0f};
    unsigned c = u8(r);
    if (c == 255) return (float)NAN;
    if (c == 254) return (float)INFINITY;
    if (c == 253) return FLT_MAX;
    if (c == 252) return 1e-45f;
    return v[c % 16];
}

static float xval(rd *r) {
    unsigned c = u8(r);
    if (c == 255) return (float)NAN;
    if (c == 254) return (float)INFINITY;
    if (c == 253) return -(float)INFINITY;
    return ((float)c - 126.0f) / 32.0f;
}

enum { MAXD = 12, MAXE = 16, MAXT = 9, POOL = MAXE * 2 * MAXD * MAXD + 64 };
static float pool[POOL];
static size_t packed_calls;

static void on_packed(void *user, const void *data, size_t bytes) {
    const char *p = (const char *)data, *b = (const char *)pool;
    FUZZ_ASSERT(user == (void *)pool && p >= b && p + bytes <= b + sizeof pool);
    packed_calls++;
}

static int no_per_expert; /* E = INT_MAX: per-expert arrays would have to be that long */

/* a view of the pool: fused data, or per-expert pointers (one of them NULL sometimes) */
static void tensor(rd *r, moe_tensor *t, const void **pe, int n_exp, size_t stride) {
    unsigned c = u8(r);
    if (no_per_expert) c &= ~16u;
    t->dtype = (moe_dtype)(c % 4 == 3 ? (c & 4 ? 3 : -1) : (int)(c % 4) % 3);
    t->layout = (moe_layout)(c & 8 ? MOE_IN_OUT : MOE_OUT_IN);
    if (c == 0xfe) t->layout = (moe_layout)2;
    if (c & 16) {
        for (int e = 0; e < n_exp; e++) pe[e] = (const char *)pool + (size_t)e * stride;
        if ((c & 0xe0) == 0xe0) pe[u8(r) % n_exp] = NULL;
        t->per_expert = pe;
    } else {
        t->data = pool;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd r = {data, size};
    moe_config c;
    moe_weights w;
    static const void *pe[12][MAXE];
    memset(&c, 0, sizeof c);
    memset(&w, 0, sizeof w);
    unsigned m = u8(&r);
    c.d_model = 1 + (int)(u8(&r) % MAXD);
    c.d_ff = 1 + (int)(u8(&r) % MAXD);
    c.n_experts = 1 + (int)(u8(&r) % MAXE);
    c.top_k = 1 + (int)(u8(&r) % (unsigned)(c.n_experts + 1)); /* sometimes k > E */
    if (m == 1) c.d_model = 0;
    if (m == 2) c.top_k = -1;
    if (m == 3) c.d_model = c.d_ff = c.n_experts = INT_MAX; /* products overflow */
    no_per_expert = m == 3;
    c.n_shared = (int)(u8(&r) % 3);
    c.d_shared = (int)(u8(&r) % 5);
    c.shared_gate = (moe_shared_gate)(u8(&r) % 3);
    c.score = (moe_score)(u8(&r) % 6);
    c.router_bias = (int)(u8(&r) & 1);
    c.select_bias = (int)(u8(&r) & 1);
    c.n_group = (int)(u8(&r) % 5) - (m == 4);
    c.topk_group = (int)(u8(&r) % 5);
    c.group_score = (moe_group_score)(u8(&r) % 3);
    c.norm = (moe_norm)(u8(&r) % 5);
    c.norm_eps = fval(&r), c.norm_p = fval(&r), c.scale = fval(&r), c.jitter_eps = fval(&r);
    c.act_alpha = fval(&r), c.act_limit = fval(&r);
    c.capacity = (int)(u8(&r) % 4) - (m == 5);
    c.drop = (moe_drop)(u8(&r) % 3);
    c.weight_on_input = (int)(u8(&r) & 1);
    c.ffn = (moe_ffn)(u8(&r) % 3);
    c.act = (moe_act)(u8(&r) % 6);
    c.expert_bias = (int)(u8(&r) & 1);
    /* the packed formats, the dot mode and the expert subset come from the input's last two
       bytes, so the committed corpus keeps its meaning for everything before them */
    unsigned f1 = size ? data[size - 1] : 0, f2 = size > 1 ? data[size - 2] : 0;
    c.format = (moe_format)(f1 % (MOE_FORMAT_COUNT + 1)); /* one past the end sometimes */
    c.shared_format = (moe_format)((f1 / 8) % MOE_FORMAT_COUNT);
    c.dot = (moe_dot)((f1 >> 6) & 1);
    if (f2 & 1) c.expert_begin = (int)((f2 >> 1) % 4), c.expert_count = (int)((f2 >> 3) % 4);

    /* weights: the pool holds the rest of the input's bytes, every bit pattern allowed */
    memset(pool, 0, sizeof pool);
    memcpy(pool, r.p, r.n < sizeof pool ? r.n : sizeof pool);
    int E = c.n_experts > MAXE ? MAXE : c.n_experts;
    size_t mat = (size_t)2 * MAXD * MAXD * sizeof(float), vec = (size_t)2 * MAXD * sizeof(float);
    tensor(&r, &w.router, pe[0], 1, 0);
    if (u8(&r) & 1) {
        tensor(&r, &w.gate_up, pe[1], E, mat);
        w.gate_up_split = (moe_gate_up_split)(u8(&r) % 3);
    } else {
        tensor(&r, &w.gate, pe[1], E, mat);
        tensor(&r, &w.up, pe[2], E, mat);
    }
    tensor(&r, &w.down, pe[3], E, mat);
    if (c.router_bias && u8(&r) % 8) tensor(&r, &w.router_bias, pe[4], 1, 0);
    if (c.select_bias && u8(&r) % 8) tensor(&r, &w.select_bias, pe[5], 1, 0);
    if (c.expert_bias && u8(&r) % 8) {
        tensor(&r, &w.gate_up_bias, pe[6], E, vec);
        tensor(&r, &w.gate_bias, pe[7], E, vec);
        tensor(&r, &w.up_bias, pe[8], E, vec);
        tensor(&r, &w.down_bias, pe[9], E, vec);
    }
    if (c.n_shared && u8(&r) % 8) {
        w.shared_gate_proj.data = w.shared_up.data = w.shared_down.data = pool;
        if (u8(&r) & 1) w.shared_gate_up.data = pool;
        w.shared_gate_up_split = (moe_gate_up_split)(u8(&r) % 3);
        if (c.shared_gate) tensor(&r, &w.shared_gate, pe[10], 1, 0);
    }
    w.on_packed = on_packed;
    w.user = pool;

    moe_result rc = moe_config_check(&c);
    moe_layer *L = (moe_layer *)(void *)&L;
    packed_calls = 0;
    moe_result r1 = moe_layer_create(&L, &c, &w);
    FUZZ_ASSERT(moe_result_string(r1)[0] != '\0');
    if (rc != MOE_OK) FUZZ_ASSERT(r1 == rc); /* config errors come first, and the same */
    if (r1 != MOE_OK) {
        FUZZ_ASSERT(L == NULL);
        return 0;
    }
    FUZZ_ASSERT(rc == MOE_OK && packed_calls > 0);
    const moe_config *lc = moe_layer_config(L);
    size_t k = (size_t)lc->top_k, d = (size_t)lc->d_model, T = u8(&r) % MAXT, bytes = 0;
    FUZZ_ASSERT(moe_workspace_size(L, T, &bytes) == MOE_OK);
    static float x[MAXT * MAXD], y[MAXT * MAXD], wt[MAXT * MAXE], logits[MAXT * MAXE], mp[MAXE];
    static int32_t ex[MAXT * MAXE], ex2[MAXT * MAXE];
    static int64_t load[MAXE];
    for (size_t i = 0; i < T * d; i++) x[i] = xval(&r);
    unsigned tc = u8(&r);
    int nth = tc % 5 == 0 ? INT_MAX : tc % 5 == 1 ? -1 : (int)(tc % 3);
    moe_workspace ws = {malloc(bytes), bytes, nth};
    if (tc & 0x80) ws.size = bytes - 1;
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.expert = ex, tr.weight = wt, tr.logits = logits, tr.expert_tokens = load, tr.mean_prob = mp;
    moe_result rf = moe_forward(L, x, T, y, &ws, &tr);
    if (nth < 0) FUZZ_ASSERT(rf == MOE_E_THREADS);
    else if (T && ws.size < bytes) FUZZ_ASSERT(rf == MOE_E_WORKSPACE);
    else FUZZ_ASSERT(rf == MOE_OK);
    if (rf == MOE_OK && T) {
        int64_t kept = 0;
        for (size_t e = 0; e < (size_t)lc->n_experts; e++) kept += load[e];
        FUZZ_ASSERT(kept + (int64_t)tr.n_dropped == (int64_t)(T * k));
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < k; j++) {
                int32_t e = ex[t * k + j];
                FUZZ_ASSERT(e >= 0 && e < lc->n_experts);
                for (size_t i = 0; i < j; i++) FUZZ_ASSERT(ex[t * k + i] != e);
            }
        for (size_t i = 0; i < T * d; i++) fuzz_sink += (unsigned)(y[i] != y[i]);
        moe_trace t2;
        memset(&t2, 0, sizeof t2);
        t2.expert = ex2;
        FUZZ_ASSERT(moe_route(L, x, T, &ws, &t2) == MOE_OK);
        FUZZ_ASSERT(memcmp(ex, ex2, T * k * sizeof *ex) == 0);
    }
    FUZZ_ASSERT(moe_forward(L, NULL, 0, NULL, NULL, NULL) == MOE_OK);
    free(ws.data);
    moe_layer_free(L);
    return 0;
}
