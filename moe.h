/* moe.h v0.1 - one Mixture-of-Experts FFN layer on the CPU, faithful to every open MoE family.
                 public domain or MIT, see end of file.

   Do this:
      #define MOE_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Every other file includes it without the define.

   QUICK START (the same program as examples/basic.c, which the tests compile)

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
          moe_workspace ws = { malloc(bytes), bytes, 0 };
          r = moe_forward(layer, x, T, y, &ws, NULL);
          printf("%s, y[0] = %f\n", moe_result_string(r), y[0]);
          free(ws.data);
          moe_layer_free(layer);
          return r != MOE_OK;
      }

   CONFIGURATION MACROS (define before the implementation include)

      macro                  default        effect
      MOE_STATIC             off            every API function is `static` (private to one file)
      MOE_NO_SIMD            off            scalar kernels only (the reference path)
      MOE_NO_OPENMP          off            ignore OpenMP even when compiled with -fopenmp
      MOE_MALLOC(sz,ctx)     malloc(sz)     allocator for the packed weights and the layer;
      MOE_FREE(p,ctx)        free(p)          define both or neither; ctx is NULL
      MOE_ASSERT(x)          assert(x)      internal invariants only, never bad input

   CONTRACTS
      - Faithful: each family's numbers to fp32 rounding (see README for the family table).
      - Deterministic: a token's output is bit-identical whatever the batch it is in, its
        position there, and the thread count: every output element is one sequential fp32
        accumulation over K in a fixed order, and slots are mixed in slot order.
      - No allocation in moe_forward / moe_route: the caller passes a workspace.
      - Errors come back as moe_result codes; the library never prints, exits or aborts.

   RECENT CHANGES
      0.1  first release: every routing rule, experts, shared experts, trace.
*/
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 1
#define MOE_VERSION_PATCH 0

#ifndef MOEDEF
#if defined(MOE_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define MOEDEF static __attribute__((unused)) /* a user may call only some of them */
#elif defined(MOE_STATIC)
#define MOEDEF static
#else
#define MOEDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results ------------------------------------------------------------------------------ */

typedef enum moe_result {
    MOE_OK = 0,
    MOE_E_NULL = -1,            /* a required pointer argument is NULL */
    MOE_E_DIM = -2,             /* d_model, d_ff, n_experts or top_k is zero or negative, or
                                   n_zero_experts or d_latent is negative */
    MOE_E_TOPK = -3,            /* top_k is larger than n_experts + n_zero_experts */
    MOE_E_GROUP_DIVIDE = -4,    /* n_group does not divide n_experts */
    MOE_E_TOPK_GROUP = -5,      /* topk_group is not in 1..n_group */
    MOE_E_GROUP_TOPK = -6,      /* top_k is larger than the experts in the kept groups */
    MOE_E_GROUP_SIZE = -7,      /* group score "sum of top 2" needs at least 2 experts a group */
    MOE_E_OVERFLOW = -8,        /* a size product overflows size_t */
    MOE_E_OPTION = -9,          /* an enum field holds an unknown value */
    MOE_E_VALUE = -10,          /* a float option is negative (jitter_eps may be), NaN or infinite */
    MOE_E_SHARED = -11,         /* n_shared or d_shared is negative, shared_gate without shared
                                   experts, or shared_router without shared experts, with a
                                   shared_gate or with a score other than SIGMOID */
    MOE_E_CAPACITY = -12,       /* capacity is negative */
    MOE_E_ACT_PLAIN = -13,      /* the clamped SwiGLU activations need a gated FFN */
    MOE_E_BIAS_SCORE = -14,     /* select_bias only works with scores SOFTMAX, SIGMOID, SQRT_SOFTPLUS */
    MOE_E_NO_ROUTER = -15,      /* weights.router is missing */
    MOE_E_NO_EXPERTS = -16,     /* the expert matrices the FFN kind needs are missing */
    MOE_E_NO_ROUTER_BIAS = -17, /* cfg.router_bias is set but weights.router_bias is missing */
    MOE_E_NO_SELECT_BIAS = -18, /* cfg.select_bias is set but weights.select_bias is missing */
    MOE_E_NO_EXPERT_BIAS = -19, /* cfg.expert_bias is set but an expert bias is missing */
    MOE_E_NO_SHARED = -20,      /* n_shared > 0 but the shared expert matrices are missing */
    MOE_E_NO_SHARED_GATE = -21, /* shared_gate is SIGMOID but weights.shared_gate is missing */
    MOE_E_DTYPE = -22,          /* a tensor has an unknown dtype or layout */
    MOE_E_NOMEM = -23,          /* MOE_MALLOC returned NULL */
    MOE_E_WORKSPACE = -24,      /* the workspace is smaller than moe_workspace_size() said */
    MOE_E_SPARSEMIXER = -25,    /* MOE_SCORE_SPARSEMIXER is defined for top_k = 2 only */
    MOE_E_NO_OUTPUT_BIAS = -26, /* cfg.output_bias is set but weights.output_bias is missing */
    MOE_E_NO_OUT_NORM = -27,    /* cfg.out_norm is RMS but weights.out_norm is missing */
    MOE_E_NO_LATENT = -28,      /* cfg.d_latent > 0 but weights.latent_in or latent_out is missing */
    MOE_E_NO_IN_NORM = -29      /* cfg.router_in_norm, expert_in_norm or expert_scale is set but its
                                   weight vector is missing */
} moe_result;

/* A static, never-NULL English sentence for any value (unknown values get a generic one). */
MOEDEF const char *moe_result_string(moe_result r);

/* ---- configuration ------------------------------------------------------------------------ */

/* How router logits h become scores p and which experts are selected.
   (reference sheet: shared/reference/moe-variants.md, sections 1 and 3) */
typedef enum moe_score {
    MOE_SCORE_SOFTMAX = 0,   /* p = softmax(h); select top-k of p (+ select_bias); w = p_e */
    MOE_SCORE_SIGMOID,       /* p = sigmoid(h); select top-k of p (+ select_bias); w = p_e */
    MOE_SCORE_SOFTMAX_TOPK,  /* select top-k of h; w = softmax over the k selected h (GPT-OSS, Granite) */
    MOE_SCORE_SIGMOID_TOPK,  /* select top-k of h; w = sigmoid(h_e) (Llama-4) */
    MOE_SCORE_SPARSEMIXER,   /* Phi-3.5-MoE sparsemixer, inference form, top_k = 2 */
    MOE_SCORE_SQRT_SOFTPLUS  /* p = sqrt(softplus(h)); select top-k of p (+ select_bias); w = p_e
                                (DeepSeek-V4 scoring_func "sqrtsoftplus") */
} moe_score;

typedef enum moe_group_score {
    MOE_GROUP_MAX = 0,       /* group score = best key in the group (DeepSeek-V2) */
    MOE_GROUP_TOP2_SUM       /* group score = sum of the two best keys (DeepSeek-V3, GLM-4.5) */
} moe_group_score;

typedef enum moe_group_fill {
    MOE_GROUP_FILL_NEG_INF = 0, /* the keys of dropped groups become -inf: never selected (vLLM,
                                   llama.cpp, HF DeepSeek-V3 since 2026-04) */
    MOE_GROUP_FILL_ZERO       /* they become 0.0, and still beat a kept key below 0 (HF Mistral4,
                                 AXK2, DeepSeek-V2) */
} moe_group_fill;

typedef enum moe_shared_combine {
    MOE_SHARED_SUM = 0,      /* y = routed + shared */
    MOE_SHARED_AVERAGE       /* y = (routed + shared) / 2 (Cohere2-MoE "average") */
} moe_shared_combine;

typedef enum moe_norm {
    MOE_NORM_NONE = 0,       /* weights as scored */
    MOE_NORM_SUM,            /* w /= (sum w + norm_eps)          Mixtral, Qwen3, DeepSeek-V3 (eps 1e-20) */
    MOE_NORM_SUM_CLAMP,      /* w /= max(sum w, norm_eps)        ERNIE-4.5 (eps 1e-12) */
    MOE_NORM_LP              /* w /= (sum |w|^norm_p)^(1/norm_p) DBRX (p = moe_normalize_expert_weights) */
} moe_norm;

typedef enum moe_drop {
    MOE_DROP_ZERO = 0,       /* a slot over capacity adds nothing (HF Switch since transformers
                                PR #37123, 2025-04; Mesh TensorFlow) */
    MOE_DROP_IDENTITY        /* it adds weight * x, as HF SwitchTransformersSparseMLP did before
                                that PR (dropped tokens kept their input, then were scaled by p) */
} moe_drop;

typedef enum moe_ffn {
    MOE_FFN_GATED = 0,       /* down( act(gate x + bg) * (up x + bu) ) + bd */
    MOE_FFN_PLAIN            /* down( act(up x + bu) ) + bd        (Switch, NLLB) */
} moe_ffn;

typedef enum moe_act {
    MOE_ACT_SILU = 0,        /* z * sigmoid(z) */
    MOE_ACT_GELU_ERF,        /* 0.5 z (1 + erf(z / sqrt 2)) */
    MOE_ACT_GELU_TANH,       /* 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) */
    MOE_ACT_RELU,            /* max(z, 0) */
    MOE_ACT_SWIGLU_OAI,      /* GPT-OSS: g = min(g, limit), u = clamp(u, -limit, limit),
                                (u + 1) * g * sigmoid(alpha g); gated FFN only */
    MOE_ACT_RELU2,           /* max(z, 0)^2 (Nemotron-H "relu2") */
    MOE_ACT_SWIGLU_CLAMP,    /* DeepSeek-V4: silu(min(g, limit)) * clamp(u, -limit, limit); gated */
    MOE_ACT_SILU_CLAMP       /* Step-3.7: min(silu(g), limit) * clamp(u, -limit, limit), the clamp
                                after the activation; gated */
} moe_act;

typedef enum moe_out_norm {
    MOE_OUT_NORM_NONE = 0,   /* the block output as combined */
    MOE_OUT_NORM_RMS         /* y = w_c * (y_c / sqrt(mean_c y_c^2 + out_norm_eps)), weights.out_norm
                                (HF LlamaRMSNorm on routed + shared: A.X K1 post_mlp_layernorm) */
} moe_out_norm;

typedef enum moe_shared_gate {
    MOE_SHARED_GATE_NONE = 0, /* shared experts are added as they are */
    MOE_SHARED_GATE_SIGMOID   /* scaled by sigmoid(g . x) per token (Qwen2-MoE shared_expert_gate) */
} moe_shared_gate;

/* Everything that defines the layer's arithmetic. Zero in any optional field means the default
   written beside it, so `moe_config cfg = {0}` plus the four dimensions is Mixtral without
   renormalisation. Checked by moe_config_check() and moe_layer_create(). */
typedef struct moe_config {
    /* dimensions (required, > 0) */
    int d_model;             /* hidden size d */
    int d_ff;                /* width of one routed expert */
    int n_experts;           /* E */
    int top_k;               /* k, 1..E */

    /* shared experts: one dense FFN of width n_shared * d_shared, run on every token */
    int n_shared;            /* 0 = none */
    int d_shared;            /* width of one shared expert; 0 = d_ff */
    moe_shared_gate shared_gate;

    /* routing */
    moe_score score;
    int router_bias;         /* 1 = logits get weights.router_bias (GPT-OSS, Switch option) */
    int select_bias;         /* 1 = selection key = p + weights.select_bias (e_score_correction_bias) */
    int n_group;             /* 0 or 1 = no group limit; else E is split into n_group groups */
    int topk_group;          /* groups kept when n_group > 1 */
    moe_group_score group_score;
    moe_norm norm;
    float norm_eps;          /* 0 = 0 (see moe_norm) */
    float norm_p;            /* MOE_NORM_LP exponent; 0 = 1 */
    float scale;             /* routed_scaling_factor, applied after norm; 0 = 1 */
    float jitter_eps;        /* sparsemixer threshold epsilon (router_jitter_noise); 0 = 0.01, the
                                HF default; negative = exactly 0 (router_jitter_noise: 0) */
    int capacity;            /* per-expert token capacity per forward call; 0 = unlimited */
    moe_drop drop;           /* what a slot over capacity contributes */
    int weight_on_input;     /* 1 = expert e computes FFN_e(w_e x), output added unweighted (Llama-4) */

    /* experts */
    moe_ffn ffn;
    moe_act act;
    float act_alpha;         /* MOE_ACT_SWIGLU_OAI alpha; 0 = 1.702 */
    float act_limit;         /* limit of the clamped activations (SWIGLU_OAI, SWIGLU_CLAMP,
                                SILU_CLAMP); 0 = 7.0; +INFINITY = no clamp */
    int expert_bias;         /* 1 = experts have biases (weights.*_bias) */

    /* since 0.2; zero keeps the 0.1 behaviour */
    float logit_softcap;     /* > 0: the router logits become c tanh(h / c) before scoring (Laguna
                                moe_router_logit_softcapping); 0 = none */
    moe_group_fill group_fill; /* what the keys of dropped groups become */
    int scale_on_sum;        /* 1 = `scale` multiplies the routed sum after mixing and the weights
                                stay unscaled (Laguna, Step-3.7, MiniMax-M3); 0 = on the weights */
    moe_shared_combine shared_combine; /* how routed and shared outputs combine */
    float shared_act_limit;  /* the shared FFN's clamp limit; 0 = act_limit; +INFINITY = none */

    /* since 0.3; zero keeps the 0.2 behaviour */
    int n_zero_experts;      /* Z > 0: the router scores E + Z choices, and choice E + j (a
                                "zero-computation" expert, LongCat-Flash zero_expert_num)
                                outputs weight * x; router, router_bias and select_bias then have
                                E + Z rows, and the trace's logits, expert_tokens and mean_prob
                                E + Z entries. Capacity never applies to them */
    int output_bias;         /* 1 = weights.output_bias [d] is added to the output (JetMoE's
                                block bias) */
    moe_out_norm out_norm;   /* a norm on the block output, after the bias */
    float out_norm_eps;      /* MOE_OUT_NORM_RMS epsilon; 0 = 1e-6 */
    int d_latent;            /* > 0: the routed experts work in a latent space of this width
                                (Nemotron-H moe_latent_size): they see x_l = weights.latent_in . x
                                and their mixed output is mapped back by weights.latent_out; the
                                router and the shared experts see x. A slot that outputs its input
                                (capacity IDENTITY, zero-computation expert) adds w x_l */
    int router_in_norm;      /* 1 = the router reads rms(x) * weights.router_in_scale / sqrt(d),
                                rms(x) = x / sqrt(mean x^2 + in_norm_eps) (Gemma-4
                                Gemma4TextRouter: a norm without weight, a learned scale, d^-1/2) */
    int expert_in_norm;      /* 1 = the routed experts read rms(x) * weights.expert_in_norm
                                (Gemma-4 pre_feedforward_layernorm_2); the shared experts see x */
    float in_norm_eps;       /* the epsilon of both input norms; 0 = 1e-6 */
    int expert_scale;        /* 1 = each slot's weight is then multiplied by weights.expert_scale[e]
                                (Gemma-4 per_expert_scale) */
    int shared_router;       /* 1 = the router has n_shared more outputs, one per shared expert,
                                after the E (+ Z) choices; with score SIGMOID their scores join
                                the k selected in the normalisation (NORM_SUM: w = p / (sum of the
                                k + the n_shared p + eps)) and the scale, and shared expert s's
                                activation is multiplied by its own weight (Inkling); needs
                                n_shared > 0 and no shared_gate. The trace's logits, expert_tokens
                                and mean_prob then have E + Z + n_shared entries */
} moe_config;

/* Checks a config on its own (weights are checked by moe_layer_create). */
MOEDEF moe_result moe_config_check(const moe_config *cfg);

/* ---- weights ------------------------------------------------------------------------------ */

typedef enum moe_dtype { MOE_F32 = 0, MOE_BF16, MOE_F16 } moe_dtype;

/* How one expert's matrix is stored. For a map from `in` to `out` features: */
typedef enum moe_layout {
    MOE_OUT_IN = 0,          /* [out][in], as torch nn.Linear.weight (Mixtral w1, Qwen gate_proj) */
    MOE_IN_OUT               /* [in][out], as GPT-OSS gate_up_proj / down_proj, Llama-4, DBRX w2 */
} moe_layout;

/* How a fused gate+up tensor (2 * d_ff outputs) splits into its two halves. */
typedef enum moe_gate_up_split {
    MOE_SPLIT_HALVES = 0,    /* outputs [0, d_ff) are gate, [d_ff, 2 d_ff) are up (Llama-4, Granite) */
    MOE_SPLIT_INTERLEAVED    /* even outputs are gate, odd are up (GPT-OSS) */
} moe_gate_up_split;

/* A read-only view of one weight tensor for all experts. Give either `data`, all experts back to
   back ([E][rows][cols], the fused layout), or `per_expert`, E pointers to one matrix each (the
   nn.ModuleList layout). Never written, never freed; only read during moe_layer_create. Vectors
   (biases) have one row. A view with both pointers NULL is "absent". */
typedef struct moe_tensor {
    const void *data;
    const void *const *per_expert;
    moe_dtype dtype;
    moe_layout layout;
} moe_tensor;

/* The weights of a layer, as checkpoints store them. Shapes are logical (out x in):
     router       E x d            the gate linear (always fp32 math)
     router_bias  E                cfg.router_bias
     select_bias  E                cfg.select_bias (selection only, never in the weight)
     gate, up     per expert ff x d   (gated FFN; or give gate_up instead)
     gate_up      per expert 2ff x d, split by gate_up_split
     up           per expert ff x d   (plain FFN)
     down         per expert d x ff
     gate_bias, up_bias  per expert ff;  gate_up_bias per expert 2ff;  down_bias per expert d
     shared_gate_proj, shared_up, shared_down: one FFN of width S = n_shared * d_shared,
                  shapes S x d, S x d, d x S (given as one matrix: `data`)
     shared_gate  d                the Qwen2-MoE shared_expert_gate weight (1 x d)
     output_bias  d                cfg.output_bias;  out_norm  d   cfg.out_norm (the norm's weight)
     latent_in    D x d, latent_out  d x D   cfg.d_latent = D; the routed experts are then
                  D wide: gate, up ff x D, down D x ff, down_bias D
     router_in_scale d, expert_in_norm d   cfg.router_in_norm, cfg.expert_in_norm
     expert_scale E (+ n_zero_experts)     cfg.expert_scale
   With cfg.n_zero_experts = Z, router is (E + Z) x d and router_bias, select_bias have E + Z.
   `on_packed`, if set, is called after each source buffer has been packed, so a loader can
   release its pages (e.g. madvise) before the next one is read: (user, pointer, bytes). Calls
   come one at a time, but under OpenMP from whichever thread packed that expert. */
typedef struct moe_weights {
    moe_tensor router, router_bias, select_bias;
    moe_tensor gate, up, gate_up, down;
    moe_gate_up_split gate_up_split;
    moe_tensor gate_bias, up_bias, gate_up_bias, down_bias;
    moe_tensor shared_gate_proj, shared_up, shared_gate_up, shared_down;
    moe_gate_up_split shared_gate_up_split;
    moe_tensor shared_gate;
    void (*on_packed)(void *user, const void *data, size_t bytes);
    void *user;
    moe_tensor output_bias, out_norm; /* since 0.3 */
    moe_tensor latent_in, latent_out; /* since 0.3 */
    moe_tensor router_in_scale, expert_in_norm, expert_scale; /* since 0.3 */
} moe_weights;

/* ---- layer -------------------------------------------------------------------------------- */

typedef struct moe_layer moe_layer; /* opaque: the config and the packed weights */

/* Validates cfg and w, packs every weight once into the layer's own fp32 layout (the sources
   are not referenced afterwards) and returns it in *out (NULL on error). The layer is read-only
   afterwards: any number of threads may run moe_forward on it at once, each with its own
   workspace. */
MOEDEF moe_result moe_layer_create(moe_layer **out, const moe_config *cfg, const moe_weights *w);
MOEDEF void moe_layer_free(moe_layer *layer); /* NULL is fine */
MOEDEF const moe_config *moe_layer_config(const moe_layer *layer); /* with defaults filled in */
MOEDEF size_t moe_layer_packed_bytes(const moe_layer *layer);

/* ---- workspace and trace ------------------------------------------------------------------ */

/* Caller memory for one call. A workspace sized for n tokens serves any call with <= n tokens.
   Alignment: any; the library aligns inside. Not shared between concurrent calls. */
typedef struct moe_workspace {
    void *data;
    size_t size;
    int n_threads;           /* OpenMP threads for this call; 0 = all (omp_get_max_threads) */
} moe_workspace;

/* Bytes of workspace moe_forward and moe_route need for n_tokens (MOE_E_OVERFLOW if too big). */
MOEDEF moe_result moe_workspace_size(const moe_layer *layer, size_t n_tokens, size_t *bytes);

/* Optional routing record, filled by moe_forward and moe_route. Every pointer may be NULL
   (that part is skipped); the scalars are always written. Statistics are over this call's
   tokens. */
typedef struct moe_trace {
    int32_t *expert;         /* [T][k] selected experts, key descending, lower index first on ties
                                (E.. E + Z - 1: a zero-computation expert). Below, E counts
                                cfg.n_zero_experts too */
    float *weight;           /* [T][k] the factor the expert's output (input, if weight_on_input)
                                is multiplied by; 0 for a dropped slot */
    float *logits;           /* [T][E] router logits (after router bias) */
    int64_t *expert_tokens;  /* [E] (token, slot) pairs each expert processed (dropped excluded) */
    float *mean_prob;        /* [E] mean over tokens of softmax(logits) */
    size_t n_dropped;        /* out: slots over capacity */
    double aux_loss;         /* out: load-balancing loss as HF load_balancing_loss_func (Mixtral,
                                Qwen, DBRX; the Switch loss for k = 1): E * sum_e f_e * P_e with
                                f_e = (top-k picks of e in softmax(logits)) / T, P_e = mean_prob,
                                before router_aux_loss_coef */
    double z_loss;           /* out: mean over tokens of logsumexp(logits)^2 (ST-MoE router z-loss) */
} moe_trace;

/* ---- forward ------------------------------------------------------------------------------ */

/* y[t] = MoE(x[t]) for t < n_tokens. x and y are [n_tokens][d_model], row-major, and must not
   overlap. n_tokens = 0 is valid and does nothing (the trace scalars become 0). */
MOEDEF moe_result moe_forward(const moe_layer *layer, const float *x, size_t n_tokens, float *y,
                              const moe_workspace *ws, moe_trace *trace);

/* Routing only (router, gating, capacity, trace); no expert is run. */
MOEDEF moe_result moe_route(const moe_layer *layer, const float *x, size_t n_tokens,
                            const moe_workspace *ws, moe_trace *trace);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */

/* ============================================================================================ */
/*                                      IMPLEMENTATION                                          */
/* ============================================================================================ */
#ifdef MOE_IMPLEMENTATION
#undef MOE_IMPLEMENTATION

#include <float.h>
#include <math.h>
#include <string.h>

// ---- config checks ----------------------------------------------------------------------------

#if defined(MOE_MALLOC) && defined(MOE_FREE)
#elif !defined(MOE_MALLOC) && !defined(MOE_FREE)
#include <stdlib.h>
#define MOE_MALLOC(sz, ctx) ((void)(ctx), malloc(sz))
#define MOE_FREE(p, ctx) ((void)(ctx), free(p))
#else
#error "moe.h: define both MOE_MALLOC and MOE_FREE, or neither"
#endif

#ifndef MOE_ASSERT
#include <assert.h>
#define MOE_ASSERT(x) assert(x)
#endif

#if defined(_OPENMP) && !defined(MOE_NO_OPENMP)
#include <omp.h>
#define MOE__OMP 1
#define MOE__PRAGMA(x) _Pragma(#x)
#else
#define MOE__OMP 0
#define MOE__PRAGMA(x)
#endif

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#include <sys/mman.h>
#if !defined(MADV_HUGEPAGE)
/* Strict -std=c99 hides madvise; glibc has it all the same, and the value is asm-generic's. */
extern int madvise(void *addr, size_t len, int advice);
#define MADV_HUGEPAGE 14
#endif
#define MOE__HUGEPAGES 1
#else
#define MOE__HUGEPAGES 0
#endif

#ifdef __cplusplus
#define MOE__CAST(T, p) static_cast<T>(p)
#else
#define MOE__CAST(T, p) ((T)(p))
#endif

// ---- ISA detection ----------------------------------------------------------------------------
// Decided here, once. Nothing below tests a compiler ISA macro; it tests MOE__AVX512, MOE__AVX2,
// MOE__NEON (at most one is 1) and MOE__NR, the panel width of the packed weights.

#if !defined(MOE_NO_SIMD) && defined(__AVX512F__)
#define MOE__AVX512 1
#elif !defined(MOE_NO_SIMD) && defined(__AVX2__) && defined(__FMA__)
#define MOE__AVX2 1
#elif !defined(MOE_NO_SIMD) && defined(__ARM_NEON) && defined(__aarch64__)
#define MOE__NEON 1
#endif
#ifndef MOE__AVX512
#define MOE__AVX512 0
#endif
#ifndef MOE__AVX2
#define MOE__AVX2 0
#endif
#ifndef MOE__NEON
#define MOE__NEON 0
#endif
#define MOE__SIMD (MOE__AVX512 || MOE__AVX2 || MOE__NEON)

/* Outputs per packed panel, a multiple of the vector width: two vectors on x86 (a gated row is
   then 4 accumulators, and 6 rows x 4 fill 24 of AVX-512's 32 registers), four on NEON. */
#if MOE__AVX512
#define MOE__NR 32
#else
#define MOE__NR 16
#endif
#define MOE__ALIGN 64

// ---- vector layer -----------------------------------------------------------------------------
// The few operations the fast kernels need, once per ISA. moe__v holds MOE__VW floats.
// moe__vfma(a, b, c) = a * b + c with one rounding: fmaf lane by lane, which is why the fast
// kernels equal the reference bit for bit. MOE__ACC is how many accumulator registers a
// micro-kernel tile may hold (the rest hold the broadcast inputs and the weights).

#if defined(__GNUC__)
#define MOE__INLINE inline __attribute__((always_inline))
#define MOE__PREFETCH(p) __builtin_prefetch(p)
#define MOE__PREFETCH_L2(p) __builtin_prefetch(p, 0, 2) /* into L2, not L1 */
#else
#define MOE__INLINE inline
#define MOE__PREFETCH(p) ((void)(p))
#define MOE__PREFETCH_L2(p) ((void)(p))
#endif
#if defined(MOE__UNROLL)
#elif defined(__clang__) /* full unrolling keeps the tile's accumulator array in registers */
#define MOE__UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define MOE__UNROLL _Pragma("GCC unroll 32")
#else
#define MOE__UNROLL
#endif

#if MOE__AVX512
#include <immintrin.h>
#define MOE__VW 16
#define MOE__ACC 24
typedef __m512 moe__v;
static MOE__INLINE moe__v moe__vld(const float *p) { return _mm512_loadu_ps(p); }
static MOE__INLINE void moe__vst(float *p, moe__v a) { _mm512_storeu_ps(p, a); }
static MOE__INLINE moe__v moe__vset(float x) { return _mm512_set1_ps(x); }
static MOE__INLINE moe__v moe__vfma(moe__v a, moe__v b, moe__v c) { return _mm512_fmadd_ps(a, b, c); }
static MOE__INLINE moe__v moe__vadd(moe__v a, moe__v b) { return _mm512_add_ps(a, b); }
static MOE__INLINE moe__v moe__vsub(moe__v a, moe__v b) { return _mm512_sub_ps(a, b); }
static MOE__INLINE moe__v moe__vmul(moe__v a, moe__v b) { return _mm512_mul_ps(a, b); }
static MOE__INLINE moe__v moe__vdiv(moe__v a, moe__v b) { return _mm512_div_ps(a, b); }
/* max/min as x86 defines them: a > b ? a : b (a NaN in a gives b). The maskz forms with a full
   mask are the same instructions; they dodge g++ 12's false -Wmaybe-uninitialized on the plain
   intrinsics (GCC bug 105593). */
#define MOE__ALL ((__mmask16)0xffff)
static MOE__INLINE moe__v moe__vmax(moe__v a, moe__v b) { return _mm512_maskz_max_ps(MOE__ALL, a, b); }
static MOE__INLINE moe__v moe__vmin(moe__v a, moe__v b) { return _mm512_maskz_min_ps(MOE__ALL, a, b); }
static MOE__INLINE moe__v moe__vabs(moe__v a) { return _mm512_abs_ps(a); }
static MOE__INLINE moe__v moe__vround(moe__v a) { /* to nearest integer */
    return _mm512_maskz_roundscale_ps(MOE__ALL, a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static MOE__INLINE moe__v moe__vpow2(moe__v n) { /* 2^n, n integral in [-126, 127] */
    __m512i e = _mm512_add_epi32(_mm512_maskz_cvtps_epi32(MOE__ALL, n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(MOE__ALL, e, 23));
}
static MOE__INLINE moe__v moe__vneg_sel(moe__v z, moe__v a, moe__v b) { /* z < 0 ? a : b */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), b, a);
}
#elif MOE__AVX2
#include <immintrin.h>
#define MOE__VW 8
#define MOE__ACC 12
typedef __m256 moe__v;
static MOE__INLINE moe__v moe__vld(const float *p) { return _mm256_loadu_ps(p); }
static MOE__INLINE void moe__vst(float *p, moe__v a) { _mm256_storeu_ps(p, a); }
static MOE__INLINE moe__v moe__vset(float x) { return _mm256_set1_ps(x); }
static MOE__INLINE moe__v moe__vfma(moe__v a, moe__v b, moe__v c) { return _mm256_fmadd_ps(a, b, c); }
static MOE__INLINE moe__v moe__vadd(moe__v a, moe__v b) { return _mm256_add_ps(a, b); }
static MOE__INLINE moe__v moe__vsub(moe__v a, moe__v b) { return _mm256_sub_ps(a, b); }
static MOE__INLINE moe__v moe__vmul(moe__v a, moe__v b) { return _mm256_mul_ps(a, b); }
static MOE__INLINE moe__v moe__vdiv(moe__v a, moe__v b) { return _mm256_div_ps(a, b); }
static MOE__INLINE moe__v moe__vmax(moe__v a, moe__v b) { return _mm256_max_ps(a, b); }
static MOE__INLINE moe__v moe__vmin(moe__v a, moe__v b) { return _mm256_min_ps(a, b); }
static MOE__INLINE moe__v moe__vabs(moe__v a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static MOE__INLINE moe__v moe__vround(moe__v a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static MOE__INLINE moe__v moe__vpow2(moe__v n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static MOE__INLINE moe__v moe__vneg_sel(moe__v z, moe__v a, moe__v b) {
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ));
}
#elif MOE__NEON
#include <arm_neon.h>
#define MOE__VW 4
#define MOE__ACC 24
typedef float32x4_t moe__v;
static MOE__INLINE moe__v moe__vld(const float *p) { return vld1q_f32(p); }
static MOE__INLINE void moe__vst(float *p, moe__v a) { vst1q_f32(p, a); }
static MOE__INLINE moe__v moe__vset(float x) { return vdupq_n_f32(x); }
static MOE__INLINE moe__v moe__vfma(moe__v a, moe__v b, moe__v c) { return vfmaq_f32(c, a, b); }
static MOE__INLINE moe__v moe__vadd(moe__v a, moe__v b) { return vaddq_f32(a, b); }
static MOE__INLINE moe__v moe__vsub(moe__v a, moe__v b) { return vsubq_f32(a, b); }
static MOE__INLINE moe__v moe__vmul(moe__v a, moe__v b) { return vmulq_f32(a, b); }
static MOE__INLINE moe__v moe__vdiv(moe__v a, moe__v b) { return vdivq_f32(a, b); }
/* the x86 definition, so ReLU and the clamps treat NaN as the scalar code does */
static MOE__INLINE moe__v moe__vmax(moe__v a, moe__v b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
static MOE__INLINE moe__v moe__vmin(moe__v a, moe__v b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
static MOE__INLINE moe__v moe__vabs(moe__v a) { return vabsq_f32(a); }
static MOE__INLINE moe__v moe__vround(moe__v a) { return vrndnq_f32(a); }
static MOE__INLINE moe__v moe__vpow2(moe__v n) {
    int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}
static MOE__INLINE moe__v moe__vneg_sel(moe__v z, moe__v a, moe__v b) {
    return vbslq_f32(vcltq_f32(z, vdupq_n_f32(0.0f)), a, b);
}
#endif

#if MOE__SIMD
#define MOE__NV (MOE__NR / MOE__VW) /* vectors per panel row (per half when gated) */
#define MOE__MR (MOE__ACC / MOE__NV) /* most rows a tile holds (plain; half that gated) */

/* e^x, lane by lane. Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor for e^r
   (truncation 5e-9), then 2^n as two factors so that overflow to inf and gradual underflow to 0
   come out as expf's do. Relative error <= 1.5e-7 (measured 7.4e-8, 1.3 x 2^-24; the activations
   built on it: sigmoid and SiLU <= 4e-7, GELU erf <= 6e-7, GELU tanh <= 2.5e-7, wherever
   |f| >= 1e-30, absolute below that; tests/test_kernels.c sweeps z over [-120, 120] and the
   extremes, and checks these bounds and that no finite input gives NaN). */
static MOE__INLINE moe__v moe__vexp(moe__v x) {
    x = moe__vmin(moe__vset(89.0f), moe__vmax(moe__vset(-104.0f), x)); /* NaN passes through */
    moe__v n = moe__vround(moe__vmul(x, moe__vset(1.44269504088896341f)));
    moe__v r = moe__vfma(n, moe__vset(-0.693145751953125f), x); /* ln2, high 15 bits: exact */
    r = moe__vfma(n, moe__vset(-1.428606820309417232e-6f), r);  /* ln2, the rest */
    moe__v p = moe__vset(1.0f / 5040.0f);
    p = moe__vfma(p, r, moe__vset(1.0f / 720.0f));
    p = moe__vfma(p, r, moe__vset(1.0f / 120.0f));
    p = moe__vfma(p, r, moe__vset(1.0f / 24.0f));
    p = moe__vfma(p, r, moe__vset(1.0f / 6.0f));
    p = moe__vfma(p, r, moe__vset(0.5f));
    p = moe__vfma(p, r, moe__vset(1.0f));
    p = moe__vfma(p, r, moe__vset(1.0f));
    moe__v n1 = moe__vround(moe__vmul(n, moe__vset(0.5f))), n2 = moe__vsub(n, n1);
    return moe__vmul(moe__vmul(p, moe__vpow2(n1)), moe__vpow2(n2));
}

static MOE__INLINE moe__v moe__vsigmoid(moe__v z) {
    moe__v one = moe__vset(1.0f);
    return moe__vdiv(one, moe__vadd(one, moe__vexp(moe__vsub(moe__vset(0.0f), z))));
}

/* 0.5 z (1 + erf(z / sqrt 2)), written with erfc so that the negative side, where 1 + erf
   cancels, keeps its relative accuracy: 1 + erf(x) = erfc(-x). erfc(|x|) = t exp(-x^2 + P(t)),
   t = 1 / (1 + |x| / 2), P the Chebyshev fit of Numerical Recipes (2nd ed., section 6.2, erfcc,
   fractional error < 1.2e-7). x^2 = z^2 / 2 is split exactly into hi + lo with an fma, and
   exp(-hi) and exp(P - lo) are taken apart, so a large argument loses nothing to rounding. */
static MOE__INLINE moe__v moe__vgelu_erf(moe__v z) {
    moe__v half = moe__vset(0.5f), one = moe__vset(1.0f);
    moe__v a = moe__vmin(moe__vabs(z), moe__vset(15.0f)); /* erfc(15 / sqrt 2) = 0 in fp32 */
    moe__v t = moe__vdiv(one, moe__vfma(a, moe__vset(0.35355339059327376f), one));
    moe__v zz = moe__vmul(a, a);
    moe__v hi = moe__vmul(zz, half), lo = moe__vmul(moe__vfma(a, a, moe__vsub(moe__vset(0.0f), zz)), half);
    moe__v p = moe__vset(0.17087277f);
    p = moe__vfma(p, t, moe__vset(-0.82215223f));
    p = moe__vfma(p, t, moe__vset(1.48851587f));
    p = moe__vfma(p, t, moe__vset(-1.13520398f));
    p = moe__vfma(p, t, moe__vset(0.27886807f));
    p = moe__vfma(p, t, moe__vset(-0.18628806f));
    p = moe__vfma(p, t, moe__vset(0.09678418f));
    p = moe__vfma(p, t, moe__vset(0.37409196f));
    p = moe__vfma(p, t, moe__vset(1.00002368f));
    p = moe__vfma(p, t, moe__vset(-1.26551223f));
    moe__v e = moe__vmul(moe__vmul(t, moe__vexp(moe__vsub(moe__vset(0.0f), hi))),
                         moe__vexp(moe__vsub(p, lo))); /* erfc(|x|) */
    moe__v s = moe__vneg_sel(z, e, moe__vsub(moe__vset(2.0f), e)); /* 1 + erf(x) */
    return moe__vmul(moe__vmul(half, z), s);
}

/* 0.5 z (1 + tanh(u)) = z / (1 + e^(-2u)): no cancellation for negative z. */
static MOE__INLINE moe__v moe__vgelu_tanh(moe__v z) {
    moe__v z3 = moe__vmul(moe__vmul(moe__vmul(moe__vset(0.044715f), z), z), z);
    moe__v u2 = moe__vmul(moe__vset(-2.0f * 0.79788456080286536f), moe__vadd(z, z3));
    return moe__vdiv(z, moe__vadd(moe__vset(1.0f), moe__vexp(u2)));
}

#endif

// ---- small helpers ----------------------------------------------------------------------------

static int moe__mul(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}
static int moe__add(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return 0;
    *out = a + b;
    return 1;
}
static size_t moe__round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

static float moe__sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

static float moe__bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float moe__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf, nan */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: value = man * 2^-24, exact in fp32 */
        float f = (float)man * (1.0f / 16777216.0f);
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Element i of a source buffer, as fp32. Through memcpy: checkpoint tensors (safetensors) need
   not be aligned to their element size. */
static float moe__load(const void *src, moe_dtype dt, size_t i) {
    const unsigned char *b = MOE__CAST(const unsigned char *, src);
    uint16_t h;
    float f;
    if (dt == MOE_F32) {
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    memcpy(&h, b + 2 * i, 2);
    return dt == MOE_BF16 ? moe__bf16_to_f32(h) : moe__f16_to_f32(h);
}
static size_t moe__dtype_size(moe_dtype dt) { return dt == MOE_F32 ? 4 : 2; }
static int moe__present(const moe_tensor *t) { return t->data != NULL || t->per_expert != NULL; }

/* Expert e's buffer of a tensor whose experts hold `n` elements each. */
static const void *moe__expert_src(const moe_tensor *t, size_t e, size_t n) {
    if (t->per_expert) return t->per_expert[e];
    return MOE__CAST(const char *, t->data) + e * n * moe__dtype_size(t->dtype);
}

// ---- activations ------------------------------------------------------------------------------

typedef struct moe__actp {
    moe_act act;
    float alpha, limit;
} moe__actp;

static float moe__act1(const moe__actp *a, float z) {
    switch (a->act) {
    case MOE_ACT_GELU_ERF: return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
    case MOE_ACT_GELU_TANH:
        return 0.5f * z * (1.0f + tanhf(0.79788456080286536f * (z + 0.044715f * z * z * z)));
    case MOE_ACT_RELU: return z > 0.0f ? z : 0.0f;
    case MOE_ACT_RELU2: return z > 0.0f ? z * z : 0.0f; /* square(relu(z)) */
    default: return z * moe__sigmoid(z);
    }
}

/* Gated: act(g) * u, or one of the clamped forms: GPT-OSS (HF gpt_oss GptOssExperts.forward),
   DeepSeek-V4 (HF deepseek_v4 DeepseekV4Experts: clamp, then silu, no +1), Step-3.7 (HF step3p7
   Step3p7Experts: silu, then clamp). */
static float moe__act2(const moe__actp *a, float g, float u) {
    if (a->act == MOE_ACT_SWIGLU_OAI || a->act == MOE_ACT_SWIGLU_CLAMP ||
        a->act == MOE_ACT_SILU_CLAMP) {
        u = u < -a->limit ? -a->limit : (u > a->limit ? a->limit : u);
        if (a->act == MOE_ACT_SILU_CLAMP) {
            g = g * moe__sigmoid(g);
            return (g < a->limit ? g : a->limit) * u;
        }
        g = g < a->limit ? g : a->limit;
        if (a->act == MOE_ACT_SWIGLU_CLAMP) return g * moe__sigmoid(g) * u;
        return (u + 1.0f) * (g * moe__sigmoid(a->alpha * g));
    }
    return moe__act1(a, g) * u;
}

// ---- packed matrices --------------------------------------------------------------------------
// Every weight matrix of the layer is packed once, at creation, into panels: a matrix of n_out
// outputs over K inputs becomes ceil(n_out / NR) panels, each holding its NR outputs for every
// K step one after the other ([ks][w] lanes, w = NR, or 2 NR when gate and up are interleaved as
// [gate NR | up NR]), zero-padded past n_out. What one lane of a K step holds is the matrix's
// format; the kernels are chosen once per layer from the format (moe__kern below), and the only
// line of a kernel that touches a weight is the format's vector load.

#define MOE__KF32 0      /* fp32 weights: one float a lane a K step */
#define MOE__KIND_COUNT 1

typedef struct moe__mat {
    int kind;                  /* MOE__K*: the format of a lane */
    unsigned char *data;       /* expert e, panel p: data + e * expert_bytes + p * panel_bytes */
    size_t n_out, K;           /* outputs; inputs (the length of every output's K chain) */
    size_t ks;                 /* K steps stored in each panel */
    size_t w;                  /* lanes of a K step: NR, or 2 NR (gate | up) */
    size_t panels, step_bytes, panel_bytes, expert_bytes;
} moe__mat;

static size_t moe__kind_lane_bytes(int kind) {
    (void)kind;
    return 4;
}

/* Geometry of an n_out x K matrix in panels of w lanes, n_exp experts; 0 on size overflow. */
static int moe__mat_init(moe__mat *M, int kind, size_t n_out, size_t K, size_t w, size_t n_exp,
                         size_t *bytes) {
    memset(M, 0, sizeof *M);
    M->kind = kind, M->n_out = n_out, M->K = K, M->ks = K, M->w = w;
    M->panels = (n_out + MOE__NR - 1) / MOE__NR;
    M->step_bytes = w * moe__kind_lane_bytes(kind);
    return moe__mul(M->ks, M->step_bytes, &M->panel_bytes) &&
           moe__mul(M->panels, M->panel_bytes, &M->expert_bytes) &&
           moe__mul(M->expert_bytes, n_exp, bytes);
}

static const unsigned char *moe__mat_expert(const moe__mat *M, size_t e) {
    return M->data + e * M->expert_bytes;
}

/* The rows a kernel call reads and writes: input row i at x + (xi ? xi[i] : i) * ldx bytes (in
   the encoding the kernel reads: fp32 for every kernel so far), output row i at
   y + (yi ? yi[i] : i) * ldy floats. */
typedef struct moe__rows {
    const unsigned char *x;
    size_t ldx;
    const int32_t *xi;
    size_t m;
    float *y;
    size_t ldy;
    const int32_t *yi;
} moe__rows;

static moe__rows moe__rows_make(const void *x, size_t ldx, const int32_t *xi, size_t m, float *y,
                                size_t ldy, const int32_t *yi) {
    moe__rows R;
    R.x = MOE__CAST(const unsigned char *, x), R.ldx = ldx, R.xi = xi, R.m = m;
    R.y = y, R.ldy = ldy, R.yi = yi;
    return R;
}

static const unsigned char *moe__row_in(const moe__rows *R, size_t i) {
    return R->x + (R->xi ? (size_t)R->xi[i] : i) * R->ldx;
}
static float *moe__row_out(const moe__rows *R, size_t i) {
    return R->y + (R->yi ? (size_t)R->yi[i] : i) * R->ldy;
}

/* Lane l of K step k of a panel, as fp32 (the reference kernels' weight load). */
static float moe__lane(const moe__mat *M, const unsigned char *panel, size_t k, size_t l) {
    float f;
    memcpy(&f, panel + k * M->step_bytes + 4 * l, 4);
    return f;
}

// ---- kernels: scalar reference ----------------------------------------------------------------
// Every output is one fmaf chain over k = 0..K-1, starting from 0, with the bias added after
// the chain. The SIMD kernels keep exactly this order, so they agree with these bit for bit
// (activations aside, which use a vector exp).

/* The K chain of lane l of a panel against input row x (fp32). */
static float moe__chain_ref(const moe__mat *M, const unsigned char *panel, size_t l,
                            const unsigned char *xrow) {
    const float *x = (const float *)(const void *)xrow;
    float acc = 0.0f;
    for (size_t k = 0; k < M->K; k++) acc = fmaf(x[k], moe__lane(M, panel, k, l), acc);
    return acc;
}

/* Phase 1: out[i][p*NR + l] = act(gate + bg) [* (up + bu)] for panels p0..p1 of expert e. */
static void moe__ffn1_ref(const moe__actp *a, const moe__mat *M, size_t e, const float *B,
                          const moe__rows *R, size_t p0, size_t p1) {
    int gated = M->w == 2 * MOE__NR;
    for (size_t p = p0; p < p1; p++) {
        const unsigned char *Wp = moe__mat_expert(M, e) + p * M->panel_bytes;
        for (size_t i = 0; i < R->m; i++) {
            const unsigned char *x = moe__row_in(R, i);
            float *h = moe__row_out(R, i) + p * MOE__NR;
            for (size_t l = 0; l < MOE__NR; l++) {
                float u = moe__chain_ref(M, Wp, gated ? MOE__NR + l : l, x);
                if (B) u += B[p * M->w + (gated ? MOE__NR : 0) + l];
                if (gated) {
                    float g = moe__chain_ref(M, Wp, l, x);
                    if (B) g += B[p * M->w + l];
                    h[l] = moe__act2(a, g, u);
                } else {
                    h[l] = moe__act1(a, u);
                }
            }
        }
    }
}

/* out[i][p*NR + l] = x_i . W[p*NR + l] + B[...], for the real outputs (< n_out) only. */
static void moe__gemm_ref(const moe__mat *M, size_t e, const float *B, const moe__rows *R,
                          size_t p0, size_t p1) {
    for (size_t p = p0; p < p1; p++) {
        const unsigned char *Wp = moe__mat_expert(M, e) + p * M->panel_bytes;
        size_t nl = M->n_out - p * MOE__NR < MOE__NR ? M->n_out - p * MOE__NR : MOE__NR;
        for (size_t i = 0; i < R->m; i++) {
            const unsigned char *x = moe__row_in(R, i);
            float *y = moe__row_out(R, i) + p * MOE__NR;
            for (size_t l = 0; l < nl; l++) {
                float acc = moe__chain_ref(M, Wp, l, x);
                y[l] = B ? acc + B[p * MOE__NR + l] : acc;
            }
        }
    }
}

/* y = sum_j w[j] * Z[row j], j in slot order (a row pointer NULL is skipped), one fmaf chain. */
static void moe__combine_ref(float *y, size_t n, const float *const *z, const float *w, int k) {
    for (size_t c = 0; c < n; c++) {
        float acc = 0.0f;
        for (int j = 0; j < k; j++)
            if (z[j]) acc = fmaf(w[j], z[j][c], acc);
        y[c] = acc;
    }
}

// ---- kernels: SIMD ----------------------------------------------------------------------------
// One micro-kernel, moe__tile, sums a tile of mr rows by np panels (na vectors of each panel per
// K step) into a small buffer; moe__drive runs it over a call's rows and panels, then finishes
// each tile (bias, activation, store). Two tile shapes on the same packed layout, chosen by
// row count:
//   - few rows (decode, up to half a GEMM tile): every row in one tile and two panels at once
//     (four for one row), so each panel is read once, as parallel sequential streams with
//     prefetch ahead of each.
//   - many rows (GEMM): np = 1 and up to MOE__MR rows (half that gated). K is cut into chunks
//     of about MOE__KC bytes of the panel, and every row block of a chunk of rows passes over a
//     chunk before the next: the chunk stays in L2 while it is reused, and the partial sums wait
//     in a small buffer. A chain resumed from its partial sum is the same chain, so this changes
//     no bit.
// Either way every output is one vfma chain over k = 0..K-1 from 0: the shape never changes a
// bit, and the result equals the reference's fmaf chain. Only the activations differ (vector
// exp; bounds in tests/test_kernels.c).

#if MOE__SIMD
#ifndef MOE__PFD
#define MOE__PFD 4096 /* decode prefetch distance: bytes ahead in each panel stream */
#endif
#ifndef MOE__KC
#define MOE__KC 65536 /* GEMM: bytes of a panel's K chunk */
#endif
#define MOE__MCB 8 /* GEMM: row blocks that share a K chunk (their partial sums wait on the stack) */

/* One vector of lanes of a K step: the format's load, the one weight-touching line. */
static MOE__INLINE moe__v moe__vw(int kind, const unsigned char *p) {
    (void)kind;
    return moe__vld((const float *)(const void *)p);
}

/* Sums K steps k0..k1 of rows xr[0..mr) against np panels (ps bytes apart) of na vectors each,
   from 0 (init = 0) or from the partial sums in out (init = 1), into out.
   Indices are size_t: UBSan's signed-overflow checks on int indices stop clang from unrolling
   the tile (and its compile time explodes with -fno-sanitize-recover). */
static MOE__INLINE void moe__tile(int kind, size_t mr, size_t na, size_t np,
                                  const unsigned char *W, size_t ps, size_t k0, size_t k1,
                                  const unsigned char *const *xr, float *out, int init,
                                  const unsigned char *pf, size_t npf) {
    moe__v acc[MOE__ACC];
    size_t lb = moe__kind_lane_bytes(kind), sb = na * MOE__VW * lb;
    MOE__UNROLL
    for (size_t i = 0; i < mr * np * na; i++)
        acc[i] = init ? moe__vld(out + i * MOE__VW) : moe__vset(0.0f);
    for (size_t k = k0; k < k1; k++) {
        const unsigned char *wk = W + k * sb;
        if (np > 1 && MOE__PFD > 0) {
            MOE__UNROLL
            for (size_t q = 0; q < np; q++) {
                MOE__UNROLL
                for (size_t o = 0; o < sb; o += 64) MOE__PREFETCH(wk + q * ps + MOE__PFD + o);
            }
        } else if (pf) { /* GEMM: see moe__gemm_prefetch */
            for (size_t j = 0; j < npf; j++) MOE__PREFETCH_L2(pf + ((k - k0) * npf + j) * 64);
        }
        MOE__UNROLL
        for (size_t r = 0; r < mr; r++) {
            moe__v b = moe__vset(((const float *)(const void *)xr[r])[k]);
            MOE__UNROLL
            for (size_t q = 0; q < np; q++) {
                MOE__UNROLL
                for (size_t v = 0; v < na; v++) {
                    size_t i = (r * np + q) * na + v;
                    acc[i] = moe__vfma(b, moe__vw(kind, wk + q * ps + v * MOE__VW * lb), acc[i]);
                }
            }
        }
    }
    MOE__UNROLL
    for (size_t i = 0; i < mr * np * na; i++) moe__vst(out + i * MOE__VW, acc[i]);
}

/* moe__tile with mr, na (1 or 2 halves) and np as constants: one specialisation per case. */
static MOE__INLINE void moe__tile_run(int kind, int mr, int gated, int np, const unsigned char *W,
                                      size_t ps, size_t k0, size_t k1,
                                      const unsigned char *const *xr, float *out, int init,
                                      const unsigned char *pf, size_t npf) {
#define MOE__T1(r, g, p)                                                                          \
    case r:                                                                                       \
        if (r * g * MOE__NV * p <= MOE__ACC)                                                      \
            moe__tile(kind, r##u, g##u * MOE__NV, p##u, W, ps, k0, k1, xr, out, init, pf, npf);   \
        else                                                                                      \
            MOE_ASSERT(0);                                                                        \
        break;
#define MOE__TS(g, p)                                                                             \
    switch (mr) {                                                                                 \
        MOE__T1(1, g, p) MOE__T1(2, g, p) MOE__T1(3, g, p) MOE__T1(4, g, p) MOE__T1(5, g, p)      \
        MOE__T1(6, g, p) MOE__T1(7, g, p) MOE__T1(8, g, p) MOE__T1(9, g, p) MOE__T1(10, g, p)     \
        MOE__T1(11, g, p) MOE__T1(12, g, p)                                                       \
    default: MOE_ASSERT(0); break;                                                                \
    }
    if (gated && np == 1) MOE__TS(2, 1)
    else if (gated && np == 2) MOE__TS(2, 2)
    else if (gated) MOE__TS(2, 4)
    else if (np == 1) MOE__TS(1, 1)
    else if (np == 2) MOE__TS(1, 2)
    else MOE__TS(1, 4)
#undef MOE__TS
#undef MOE__T1
}

/* Panels a decode tile streams at once: 4 when the accumulators allow (one row on AVX-512:
   4 x 4 chains gated; measured a little faster than 2), else 2; GEMM tiles take one. */
static size_t moe__decode_panels(int decode, size_t m, size_t na, size_t p, size_t p1) {
    if (!decode || p + 1 >= p1) return 1;
    return m * na * 4 <= MOE__ACC && p + 3 < p1 ? 4 : 2;
}

/* Rows a tile takes: all of them when they are few (decode), else blocks of at most mrx rows,
   as even as the count allows (13 rows in 5 + 4 + 4, not 6 + 6 + 1). */
static size_t moe__rows_per_tile(size_t m, size_t mrx) {
    size_t nb = (m + mrx - 1) / mrx;
    return m <= mrx / 2 ? m : (m + nb - 1) / nb;
}

/* What a GEMM tile prefetches: the chunk that is read next (the panel's next K chunk, or the
   next panel's first), bytes `next`..`next + len`. Block bi of the nb that pass over the
   current chunk fetches its share, npf cache lines a K step over `steps` steps, so that the
   next chunk's first pass finds it in L2. (Prefetching ahead in the current panel instead, as
   decode does, measured slower for 8 rows an expert.) */
static const unsigned char *moe__gemm_prefetch(const unsigned char *next, size_t len,
                                               size_t steps, size_t bi, size_t nb, size_t *npf) {
    size_t lines = (len + 63) / 64, per = (lines + nb - 1) / nb;
    *npf = (per + steps - 1) / steps;
    return next && bi * per < lines ? next + bi * per * 64 : NULL;
}

static MOE__INLINE moe__v moe__vact1(const moe__actp *a, moe__v z) {
    switch (a->act) {
    case MOE_ACT_GELU_ERF: return moe__vgelu_erf(z);
    case MOE_ACT_GELU_TANH: return moe__vgelu_tanh(z);
    case MOE_ACT_RELU: return moe__vmax(z, moe__vset(0.0f));
    case MOE_ACT_RELU2: {
        moe__v r = moe__vmax(z, moe__vset(0.0f));
        return moe__vmul(r, r);
    }
    default: return moe__vmul(z, moe__vsigmoid(z));
    }
}

static MOE__INLINE moe__v moe__vact2(const moe__actp *a, moe__v g, moe__v u) {
    if (a->act == MOE_ACT_SWIGLU_OAI || a->act == MOE_ACT_SWIGLU_CLAMP ||
        a->act == MOE_ACT_SILU_CLAMP) {
        moe__v lim = moe__vset(a->limit);
        u = moe__vmin(moe__vmax(u, moe__vsub(moe__vset(0.0f), lim)), lim);
        if (a->act == MOE_ACT_SILU_CLAMP)
            return moe__vmul(moe__vmin(moe__vmul(g, moe__vsigmoid(g)), lim), u);
        g = moe__vmin(g, lim);
        if (a->act == MOE_ACT_SWIGLU_CLAMP) return moe__vmul(moe__vmul(g, moe__vsigmoid(g)), u);
        return moe__vmul(moe__vadd(u, moe__vset(1.0f)),
                         moe__vmul(g, moe__vsigmoid(moe__vmul(moe__vset(a->alpha), g))));
    }
    return moe__vmul(moe__vact1(a, g), u);
}

/* Finishes a tile of mr rows x np panels (sums in o): phase 1 (a != NULL) adds the bias and
   applies the activation, else adds the bias and stores the real outputs. */
static MOE__INLINE void moe__finish(const moe__actp *a, const moe__mat *M, const float *B,
                                    const moe__rows *R, size_t i0, size_t mr, size_t p, size_t np,
                                    const float *o) {
    size_t w = M->w;
    int gated = w == 2 * MOE__NR;
    for (size_t r = 0; r < mr; r++)
        for (size_t q = 0; q < np; q++) {
            const float *s = o + (r * np + q) * w, *b = B ? B + (p + q) * w : NULL;
            float *y = moe__row_out(R, i0 + r) + (p + q) * MOE__NR;
            if (a) {
                for (size_t l = 0; l < MOE__NR; l += MOE__VW) {
                    moe__v u = moe__vld(s + (gated ? MOE__NR : 0) + l);
                    if (b) u = moe__vadd(u, moe__vld(b + (gated ? MOE__NR : 0) + l));
                    if (gated) {
                        moe__v g = moe__vld(s + l);
                        if (b) g = moe__vadd(g, moe__vld(b + l));
                        moe__vst(y + l, moe__vact2(a, g, u));
                    } else {
                        moe__vst(y + l, moe__vact1(a, u));
                    }
                }
                continue;
            }
            size_t c0 = (p + q) * MOE__NR, nl = M->n_out - c0 < MOE__NR ? M->n_out - c0 : MOE__NR;
            if (nl == MOE__NR) {
                for (size_t l = 0; l < MOE__NR; l += MOE__VW) {
                    moe__v v = moe__vld(s + l);
                    moe__vst(y + l, b ? moe__vadd(v, moe__vld(b + l)) : v);
                }
            } else {
                for (size_t l = 0; l < nl; l++) y[l] = b ? s[l] + b[l] : s[l];
            }
        }
}

/* The kernels' common body: rows R against panels p0..p1 of expert e, in the decode or the GEMM
   shape, finished by moe__finish. kind is a constant in every caller, so each format gets its
   own copy of the tiles. */
static MOE__INLINE void moe__drive(int kind, const moe__actp *a, const moe__mat *M, size_t e,
                                   const float *B, const moe__rows *R, size_t p0, size_t p1) {
    size_t m = R->m, w = M->w, na = w / MOE__VW, ps = M->panel_bytes, ks = M->ks;
    int gated = w == 2 * MOE__NR;
    size_t mrx = gated ? MOE__MR / 2 : MOE__MR;
    int decode = m <= mrx / 2;
    size_t step = moe__rows_per_tile(m, mrx), nb = (m + step - 1) / step;
    const unsigned char *We = moe__mat_expert(M, e), *xr[MOE__MR];
    float part[MOE__MCB * MOE__ACC * MOE__VW];
    if (decode || nb == 1) { /* one row block: every panel is read once anyway */
        for (size_t p = p0; p < p1;) {
            size_t np = moe__decode_panels(decode, m, na, p, p1), npf = 0;
            for (size_t r = 0; r < m; r++) xr[r] = moe__row_in(R, r);
            const unsigned char *pf = NULL;
            if (np == 1 && p + 1 < p1) pf = moe__gemm_prefetch(We + (p + 1) * ps, ps, ks, 0, 1, &npf);
            moe__tile_run(kind, (int)m, gated, (int)np, We + p * ps, ps, 0, ks, xr, part, 0, pf,
                          npf);
            moe__finish(a, M, B, R, 0, m, p, np, part);
            p += np;
        }
        return;
    }
    /* GEMM: K chunks of about MOE__KC bytes, reused by up to MOE__MCB row blocks */
    size_t kc = MOE__KC / M->step_bytes;
    kc = kc < 1 ? 1 : kc > ks ? ks : kc;
    for (size_t p = p0; p < p1; p++) {
        const unsigned char *Wp = We + p * ps;
        for (size_t b0 = 0; b0 < nb; b0 += MOE__MCB) {
            size_t b1 = b0 + MOE__MCB < nb ? b0 + MOE__MCB : nb;
            for (size_t k0 = 0; k0 < ks; k0 += kc) {
                size_t k1 = k0 + kc < ks ? k0 + kc : ks, len = 0;
                const unsigned char *next = NULL;
                if (k1 < ks) { /* the panel's next chunk */
                    next = Wp + k1 * M->step_bytes;
                    len = ((k1 + kc < ks ? k1 + kc : ks) - k1) * M->step_bytes;
                } else if (b1 < nb) { /* the next row blocks start over on this panel */
                    next = Wp, len = kc * M->step_bytes;
                } else if (p + 1 < p1) { /* the next panel's first chunk */
                    next = Wp + ps, len = kc * M->step_bytes;
                }
                for (size_t bi = b0; bi < b1; bi++) {
                    size_t i0 = bi * step, mr = m - i0 < step ? m - i0 : step, npf = 0;
                    for (size_t r = 0; r < mr; r++) xr[r] = moe__row_in(R, i0 + r);
                    const unsigned char *pf =
                        moe__gemm_prefetch(next, len, k1 - k0, bi - b0, b1 - b0, &npf);
                    moe__tile_run(kind, (int)mr, gated, 1, Wp, ps, k0, k1, xr,
                                  part + (bi - b0) * MOE__ACC * MOE__VW, k0 > 0, pf, npf);
                }
            }
            for (size_t bi = b0; bi < b1; bi++) {
                size_t i0 = bi * step, mr = m - i0 < step ? m - i0 : step;
                moe__finish(a, M, B, R, i0, mr, p, 1, part + (bi - b0) * MOE__ACC * MOE__VW);
            }
        }
    }
}

/* One phase-1 and one GEMM kernel per format: moe__drive with the format as a constant. */
#define MOE__KERNELS(name, kind)                                                                  \
    static void moe__ffn1_##name(const moe__actp *a, const moe__mat *M, size_t e, const float *B, \
                                 const moe__rows *R, size_t p0, size_t p1) {                      \
        moe__drive(kind, a, M, e, B, R, p0, p1);                                                  \
    }                                                                                             \
    static void moe__gemm_##name(const moe__mat *M, size_t e, const float *B, const moe__rows *R, \
                                 size_t p0, size_t p1) {                                          \
        moe__drive(kind, NULL, M, e, B, R, p0, p1);                                               \
    }
MOE__KERNELS(f32, MOE__KF32)
#undef MOE__KERNELS

/* moe__combine_ref's contract, vectorised over the columns. */
static void moe__combine_simd(float *y, size_t n, const float *const *z, const float *w, int k) {
    size_t c = 0;
    for (; c + 4 * MOE__VW <= n; c += 4 * MOE__VW) {
        moe__v a0 = moe__vset(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < k; j++) {
            if (!z[j]) continue;
            moe__v s = moe__vset(w[j]);
            a0 = moe__vfma(s, moe__vld(z[j] + c), a0);
            a1 = moe__vfma(s, moe__vld(z[j] + c + MOE__VW), a1);
            a2 = moe__vfma(s, moe__vld(z[j] + c + 2 * MOE__VW), a2);
            a3 = moe__vfma(s, moe__vld(z[j] + c + 3 * MOE__VW), a3);
        }
        moe__vst(y + c, a0), moe__vst(y + c + MOE__VW, a1);
        moe__vst(y + c + 2 * MOE__VW, a2), moe__vst(y + c + 3 * MOE__VW, a3);
    }
    for (; c + MOE__VW <= n; c += MOE__VW) {
        moe__v a0 = moe__vset(0.0f);
        for (int j = 0; j < k; j++)
            if (z[j]) a0 = moe__vfma(moe__vset(w[j]), moe__vld(z[j] + c), a0);
        moe__vst(y + c, a0);
    }
    for (; c < n; c++) { /* the ragged end: the same chain, scalar */
        float acc = 0.0f;
        for (int j = 0; j < k; j++)
            if (z[j]) acc = fmaf(w[j], z[j][c], acc);
        y[c] = acc;
    }
}
#endif

// ---- kernel tables ----------------------------------------------------------------------------
// The kernels of a packed matrix set, chosen once at layer creation from its format and from
// reference-or-fast (moe__kernels). The call graph then reads as it runs: phase code calls
// L->ex.kern->ffn1 and never tests an ISA or a format.

typedef void (*moe__ffn1_fn)(const moe__actp *a, const moe__mat *M, size_t e, const float *B,
                             const moe__rows *R, size_t p0, size_t p1);
typedef void (*moe__gemm_fn)(const moe__mat *M, size_t e, const float *B, const moe__rows *R,
                             size_t p0, size_t p1);
typedef void (*moe__combine_fn)(float *y, size_t n, const float *const *z, const float *w, int k);

typedef struct moe__kern {
    const char *name;
    moe__ffn1_fn ffn1;
    moe__gemm_fn gemm;
    moe__combine_fn combine;
} moe__kern;

static const moe__kern moe__kern_ref[MOE__KIND_COUNT] = {
    {"f32 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref},
};
#if MOE__SIMD
static const moe__kern moe__kern_fast[MOE__KIND_COUNT] = {
    {"f32", moe__ffn1_f32, moe__gemm_f32, moe__combine_simd},
};
#else
#define moe__kern_fast moe__kern_ref
#endif

static const moe__kern *moe__kernels(int kind, int ref) {
    return ref ? &moe__kern_ref[kind] : &moe__kern_fast[kind];
}

// ---- packing ----------------------------------------------------------------------------------
// One packer: moe__pack_mat writes one expert's part of a matrix (every lane of its half of the
// panels, padding included, so nothing needs zeroing first), moe__pack_vec one vector. Each
// converts from the source dtype to the packed format on the way.

/* Where output o of one part of a source tensor lives: source output `off + o * step`. */
typedef struct moe__part {
    size_t off, step, src_out; /* src_out: outputs per expert in the source (2 ff when fused) */
} moe__part;

static moe__part moe__part_of(moe_gate_up_split split, int fused, int up, size_t ff) {
    moe__part pt = {0, 1, ff};
    if (!fused) return pt;
    pt.src_out = 2 * ff;
    if (split == MOE_SPLIT_INTERLEAVED) pt.off = up ? 1 : 0, pt.step = 2;
    else pt.off = up ? ff : 0;
    return pt;
}

/* Stores value v as lane l of K step k of a panel, in the matrix's format. */
static void moe__put_lane(const moe__mat *M, unsigned char *panel, size_t k, size_t l, float v) {
    memcpy(panel + k * M->step_bytes + 4 * l, &v, 4);
}

/* Packs lanes lane0..lane0+NR of expert e's panels (lane0 = 0: gate or single, NR: up) from a
   source holding the part pt of that expert, n_out outputs over M->K inputs. Lanes past n_out
   and K steps past K get zeros. */
static void moe__pack_mat(const moe__mat *M, size_t e, size_t lane0, const void *src, moe_dtype dt,
                          moe_layout lay, moe__part pt) {
    unsigned char *We = M->data + e * M->expert_bytes;
    size_t K = M->K;
    for (size_t p = 0; p < M->panels; p++) {
        unsigned char *Wp = We + p * M->panel_bytes;
        size_t nl = M->n_out - p * MOE__NR < MOE__NR ? M->n_out - p * MOE__NR : MOE__NR;
        if (lay == MOE_OUT_IN) { /* a source row is one output: read it along k */
            for (size_t l = 0; l < nl; l++) {
                size_t s = (pt.off + (p * MOE__NR + l) * pt.step) * K;
                for (size_t k = 0; k < K; k++)
                    moe__put_lane(M, Wp, k, lane0 + l, moe__load(src, dt, s + k));
            }
        } else { /* a source row is one input: read the panel's outputs of it together */
            for (size_t k = 0; k < K; k++) {
                size_t s = k * pt.src_out + pt.off + p * MOE__NR * pt.step;
                for (size_t l = 0; l < nl; l++)
                    moe__put_lane(M, Wp, k, lane0 + l, moe__load(src, dt, s + l * pt.step));
            }
        }
        for (size_t k = 0; k < M->ks; k++) /* the padding: outputs past n_out, steps past K */
            for (size_t l = k < K ? nl : 0; l < MOE__NR; l++) moe__put_lane(M, Wp, k, lane0 + l, 0.0f);
    }
}

/* dst[(o / NR) * w + lane0 + o % NR] = source part output o, for o < n; zeros up to n_pad. */
static void moe__pack_vec(float *dst, size_t n, size_t n_pad, size_t w, size_t lane0,
                          const void *src, moe_dtype dt, moe__part pt) {
    for (size_t o = 0; o < n_pad; o++)
        dst[(o / MOE__NR) * w + lane0 + o % MOE__NR] =
            o < n ? moe__load(src, dt, pt.off + o * pt.step) : 0.0f;
}

/* One packed FFN weight set: n_exp experts (E routed, or 1 for the shared experts). */
typedef struct moe__ffnw {
    size_t dm, dm_pad;     /* the model width it reads and writes (d, or d_latent), and padded */
    size_t ff, ff_pad;     /* width and width rounded to NR */
    moe__mat w1;           /* gate | up interleaved (gated, 2 NR lanes) or up: ff outputs over d */
    moe__mat w2;           /* down: d outputs over ff */
    float *b1;             /* per expert [ff_pad / NR][w1.w], or NULL */
    float *b2;             /* per expert [dm_pad], or NULL */
    const moe__kern *kern; /* the kernels of w1 and w2 */
} moe__ffnw;

struct moe_layer {
    moe_config cfg;        /* defaults filled in */
    moe__actp act, sh_act; /* routed and shared FFN activations (they differ in the limit) */
    int gated;
    size_t d, E, R, k, d_pad, e_pad; /* E experts with an FFN, R = E + n_zero_experts choices */
    size_t RO, S;          /* router outputs: R, + n_shared with shared_router; shared experts */
    size_t dl;             /* the routed experts' model width: d_latent, or d */
    moe__mat router;       /* RO outputs over d inputs, fp32 */
    const moe__kern *router_kern; /* also combines */
    float *router_bias;    /* [e_pad] or NULL */
    float *select_bias;    /* [R] or NULL */
    float *shared_gate;    /* [d] or NULL */
    float *out_bias, *out_norm; /* [d] or NULL */
    float *router_in_scale, *expert_in_norm; /* [d] or NULL */
    float *expert_scale;   /* [R] or NULL */
    moe__ffnw ex, sh;      /* routed experts; shared experts (sh.ff = 0 when none) */
    moe__mat lat_in, lat_out; /* cfg.d_latent: d_latent outputs over d; d over d_latent */
    size_t packed_bytes;
    void *mem;             /* what MOE_MALLOC returned (the layer lives inside it) */
};

/* Points the layer at the reference (ref = 1: tests, bench) or the fast kernels. */
static void moe__select_kernels(moe_layer *L, int ref) {
    L->router_kern = moe__kernels(L->router.kind, ref);
    L->ex.kern = moe__kernels(L->ex.w1.kind, ref);
    L->sh.kern = moe__kernels(L->sh.w1.kind, ref);
}

/* Tells the loader that expert e's buffer of tensor t (n elements an expert) is packed: its
   per_expert pointer, or its slice of the fused `data`. Once per (tensor, expert). */
static void moe__released(const moe_weights *w, const moe_tensor *t, size_t e, size_t n) {
    if (!w->on_packed || !moe__present(t)) return;
    /* experts pack in parallel; the loader's callback is called by one thread at a time */
    MOE__PRAGMA(omp critical(moe__on_packed))
    w->on_packed(w->user, moe__expert_src(t, e, n), n * moe__dtype_size(t->dtype));
}

/* Packs an FFN weight set: gate/up (separate or fused), down, biases. */
static void moe__pack_ffn(moe__ffnw *f, const moe_layer *L, size_t n_exp, const moe_tensor *gate,
                          const moe_tensor *up, const moe_tensor *gate_up, moe_gate_up_split split,
                          const moe_tensor *down, const moe_tensor *bg, const moe_tensor *bu,
                          const moe_tensor *bgu, const moe_tensor *bd, const moe_weights *w) {
    size_t d = f->dm, ff = f->ff, W1 = f->w1.w;
    int fused = L->gated && moe__present(gate_up), fb = fused && moe__present(bgu);
    moe__part whole = {0, 1, d};
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) if(n_exp > 1))
    for (long el = 0; el < (long)n_exp; el++) {
        size_t e = (size_t)el;
        for (int part = L->gated ? 0 : 1; part < 2; part++) {
            const moe_tensor *t = fused ? gate_up : (part ? up : gate);
            moe__part pt = moe__part_of(split, fused, part, ff);
            size_t lane0 = (L->gated && part) ? MOE__NR : 0;
            moe__pack_mat(&f->w1, e, lane0, moe__expert_src(t, e, pt.src_out * d), t->dtype,
                          t->layout, pt);
            if (!fused || part == 1) moe__released(w, t, e, pt.src_out * d);
            if (f->b1) {
                const moe_tensor *b = fb ? bgu : (part ? bu : bg);
                moe__part pb = moe__part_of(split, fb, part, ff);
                moe__pack_vec(f->b1 + e * (f->ff_pad / MOE__NR) * W1, ff, f->ff_pad, W1, lane0,
                              moe__expert_src(b, e, pb.src_out), b->dtype, pb);
                if (!fb || part == 1) moe__released(w, b, e, pb.src_out);
            }
        }
        moe__pack_mat(&f->w2, e, 0, moe__expert_src(down, e, d * ff), down->dtype, down->layout,
                      moe__part_of(split, 0, 0, d));
        moe__released(w, down, e, d * ff);
        if (f->b2) {
            moe__pack_vec(f->b2 + e * f->dm_pad, d, f->dm_pad, MOE__NR, 0,
                          moe__expert_src(bd, e, d), bd->dtype, whole);
            moe__released(w, bd, e, d);
        }
    }
}

// ---- gating and top-k -------------------------------------------------------------------------

/* Is (ka, ia) ahead of (kb, ib)? Key descending, then index ascending. NaN keys are last. */
static int moe__ahead(float ka, int ia, float kb, int ib) {
    if (ka != ka) return 0;
    if (kb != kb) return 1;
    return ka > kb || (ka == kb && ia < ib);
}

/* idx[0..k) = the k best of key[0..n) in (key desc, index asc) order; insertion, O(n k). */
static void moe__topk(const float *key, int n, int k, int32_t *idx) {
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && !moe__ahead(key[i], i, key[idx[k - 1]], idx[k - 1])) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && moe__ahead(key[i], i, key[idx[j - 1]], idx[j - 1])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

static void moe__softmax(const float *h, float *p, int n) {
    float m = -INFINITY, s = 0.0f;
    for (int i = 0; i < n; i++) m = h[i] > m ? h[i] : m;
    for (int i = 0; i < n; i++) s += (p[i] = expf(h[i] - m));
    for (int i = 0; i < n; i++) p[i] /= s;
}

/* Phi-3.5-MoE sparsemixer, inference path (HF phimoe `sparsemixer`, training=False): pick the
   best logit, softmax over the logits within relative distance 2 eps of it; then the same for
   the runner-up with the winner removed (its mask still measured on the original logits). */
static void moe__sparsemixer(const float *h, float *tmp, int n, float eps, int32_t *ex, float *w) {
    for (int i = 0; i < n; i++) tmp[i] = h[i];
    for (int r = 0; r < 2; r++) {
        int e = r && ex[0] == 0 ? 1 : 0; /* the runner-up is never the winner again */
        for (int i = e + 1; i < n; i++)
            if ((!r || i != ex[0]) && moe__ahead(tmp[i], i, tmp[e], e)) e = i;
        float m = tmp[e], s = 0.0f;
        for (int i = 0; i < n; i++) {
            float factor = fabsf(h[i]) > m ? fabsf(h[i]) : m;
            int masked = (m - h[i]) / factor > 2.0f * eps;
            if (!masked && tmp[i] != -INFINITY) s += expf(tmp[i] - m);
        }
        ex[r] = e;
        w[r] = 1.0f / s; /* exp(m - m) / s */
        tmp[e] = -INFINITY;
    }
}

/* Routes one token: logits h[E] -> experts ex[k], weights w[k]. scratch: 3 E floats, then
   E int32. */
static void moe__gate(const moe_layer *L, const float *h, float *scratch, int32_t *ex, float *w,
                      float *gam) {
    const moe_config *c = &L->cfg;
    int E = (int)L->R, k = c->top_k; /* every choice, the zero-computation experts included */
    float *p = scratch, *key = scratch + E;
    if (c->score == MOE_SCORE_SPARSEMIXER) {
        moe__sparsemixer(h, key, E, c->jitter_eps < 0.0f ? 0.0f : c->jitter_eps, ex, w);
        return;
    }
    if (c->score == MOE_SCORE_SOFTMAX) moe__softmax(h, p, E);
    for (int e = 0; e < E; e++) {
        if (c->score == MOE_SCORE_SIGMOID) p[e] = moe__sigmoid(h[e]);
        else if (c->score == MOE_SCORE_SQRT_SOFTPLUS) /* torch softplus: threshold 20 */
            p[e] = sqrtf(h[e] > 20.0f ? h[e] : log1pf(expf(h[e])));
        else if (c->score != MOE_SCORE_SOFTMAX) p[e] = h[e]; /* *_TOPK: select on the logits */
        key[e] = L->select_bias ? p[e] + L->select_bias[e] : p[e];
    }
    if (c->n_group > 1) {
        /* group-limited top-k (HF deepseek_v2 group_limited_greedy, deepseek_v3 noaux_tc):
           keep the topk_group best groups, exclude every other expert */
        int G = c->n_group, per = E / G;
        float *gs = scratch + 2 * E;
        int32_t *keep = (int32_t *)(void *)(scratch + 3 * E);
        for (int g = 0; g < G; g++) {
            const float *kg = key + g * per;
            float a = -INFINITY, b = -INFINITY;
            for (int i = 0; i < per; i++) {
                if (kg[i] > a) b = a, a = kg[i];
                else if (kg[i] > b) b = kg[i];
            }
            gs[g] = c->group_score == MOE_GROUP_MAX ? a : a + b;
        }
        moe__topk(gs, G, c->topk_group, keep);
        float fill = c->group_fill == MOE_GROUP_FILL_ZERO ? 0.0f : -INFINITY;
        for (int g = 0; g < G; g++) {
            int kept = 0;
            for (int j = 0; j < c->topk_group; j++) kept |= keep[j] == g;
            if (!kept)
                for (int i = 0; i < per; i++) key[g * per + i] = fill;
        }
    }
    moe__topk(key, E, k, ex);
    if (c->score == MOE_SCORE_SOFTMAX_TOPK) {
        float m = h[ex[0]], s = 0.0f;
        for (int j = 0; j < k; j++) s += (w[j] = expf(h[ex[j]] - m));
        for (int j = 0; j < k; j++) w[j] /= s;
    } else {
        for (int j = 0; j < k; j++)
            w[j] = c->score == MOE_SCORE_SIGMOID_TOPK ? moe__sigmoid(h[ex[j]]) : p[ex[j]];
    }
    if (c->norm != MOE_NORM_NONE) {
        float s = 0.0f;
        if (c->norm == MOE_NORM_LP && c->norm_p != 1.0f) {
            for (int j = 0; j < k; j++) s += powf(fabsf(w[j]), c->norm_p);
            s = powf(s, 1.0f / c->norm_p);
        } else {
            for (int j = 0; j < k; j++) s += c->norm == MOE_NORM_LP ? fabsf(w[j]) : w[j];
        }
        if (gam) /* Inkling: the shared experts' scores join the sum */
            for (size_t j = 0; j < L->S; j++) s += (gam[j] = moe__sigmoid(h[L->R + j]));
        if (c->norm == MOE_NORM_SUM) s += c->norm_eps;
        if (c->norm == MOE_NORM_SUM_CLAMP && s < c->norm_eps) s = c->norm_eps;
        for (int j = 0; j < k; j++) w[j] /= s;
        for (size_t j = 0; gam && j < L->S; j++) gam[j] /= s;
    } else if (gam) {
        for (size_t j = 0; j < L->S; j++) gam[j] = moe__sigmoid(h[L->R + j]);
    }
    if (c->scale != 1.0f && !c->scale_on_sum) { /* else the combine scales the routed sum */
        for (int j = 0; j < k; j++) w[j] *= c->scale;
        for (size_t j = 0; gam && j < L->S; j++) gam[j] *= c->scale;
    }
    if (L->expert_scale) /* Gemma-4: top_k_weights * per_expert_scale[top_k_index] */
        for (int j = 0; j < k; j++) w[j] *= L->expert_scale[ex[j]];
}

// ---- workspace --------------------------------------------------------------------------------

typedef struct moe__ws {
    float *logits;       /* [T][E] */
    float *scratch;      /* [T][4E] gating scratch */
    int32_t *ex;         /* [T][k] route: experts */
    float *wt;           /* [T][k] route: weights */
    unsigned char *drop; /* [T][k] 1 = over capacity */
    int32_t *off;        /* [E + 2] plan: first row of each expert (E + 1 = shared) */
    int32_t *rows;       /* [T k] plan: pair id t*k + j, grouped by expert, token order */
    int32_t *toks;       /* [T k] plan: token of each row */
    size_t *task;        /* [2][E + 2] first task of each expert, phase 1 and phase 2 */
    const float **zp;    /* [T][k + 1] combine: rows to mix */
    float *zw;           /* [T][k + 1] combine: their weights */
    float *gam;          /* [T][n_shared] cfg.shared_router: the shared experts' weights */
    float *xr;           /* [T][d] cfg.router_in_norm: the router's input */
    float *xn;           /* [T][d] cfg.expert_in_norm: the routed experts' input (before latent_in) */
    float *xl;           /* [T][dl] cfg.d_latent: the routed experts' input, latent_in . x */
    float *yl;           /* [T][dl] cfg.d_latent: the routed sum, before latent_out */
    float *xs;           /* [T k][dl] weight_on_input: scaled inputs, plan order */
    float *h;            /* [T k][ff_pad] phase 1 out, plan order */
    float *z;            /* [T k][dl] phase 2 out, pair order (dl = d without a latent space) */
    float *hs;           /* [T][S_pad] shared phase 1 */
    float *zs;           /* [T][d] shared phase 2 */
} moe__ws;

/* Lays the workspace out from `base` (NULL: only measure). 0 on size overflow. */
static int moe__carve(const moe_layer *L, size_t T, char *base, moe__ws *w, size_t *total) {
    size_t at = 0, n, TK, E = L->RO, k = L->k, TS = 0;
    int ok = moe__mul(T, k, &TK) && moe__mul(T, L->cfg.shared_router ? L->S : 0, &TS);
#define MOE__TAKE(ptr, type, count)                                                              \
    do {                                                                                         \
        ok = ok && moe__mul((count), sizeof(type), &n) && moe__add(at, n, &n) &&                 \
             moe__add(n, MOE__ALIGN, &n);                                                        \
        if (!ok) return 0;                                                                       \
        w->ptr = base ? (type *)(void *)(base + at) : NULL;                                      \
        at = n / MOE__ALIGN * MOE__ALIGN;                                                        \
    } while (0)
    size_t TE, TE4, TK1, TKd, TKf, TSs, Td, Tl;
    ok = ok && moe__mul(T, E, &TE) && moe__mul(TE, 4, &TE4) && moe__mul(T, k + 1, &TK1) &&
         moe__mul(TK, L->dl, &TKd) && moe__mul(TK, L->ex.ff_pad, &TKf) &&
         moe__mul(T, L->sh.ff_pad, &TSs) && moe__mul(T, L->d, &Td) && moe__mul(T, L->dl, &Tl);
    if (!ok) return 0;
    MOE__TAKE(logits, float, TE);
    MOE__TAKE(scratch, float, TE4 + 8 * E); /* + room for the trace's 2E doubles */
    MOE__TAKE(ex, int32_t, TK);
    MOE__TAKE(wt, float, TK);
    MOE__TAKE(drop, unsigned char, TK);
    MOE__TAKE(off, int32_t, L->E + 2);
    MOE__TAKE(rows, int32_t, TK);
    MOE__TAKE(toks, int32_t, TK);
    MOE__TAKE(task, size_t, 2 * (L->E + 2));
    MOE__TAKE(zp, const float *, TK1);
    MOE__TAKE(zw, float, TK1);
    MOE__TAKE(gam, float, TS);
    MOE__TAKE(xr, float, L->cfg.router_in_norm ? Td : 0);
    MOE__TAKE(xn, float, L->cfg.expert_in_norm ? Td : 0);
    MOE__TAKE(xl, float, L->cfg.d_latent ? Tl : 0);
    MOE__TAKE(yl, float, L->cfg.d_latent ? Tl : 0);
    MOE__TAKE(xs, float, L->cfg.weight_on_input ? TKd : 0);
    MOE__TAKE(h, float, TKf);
    MOE__TAKE(z, float, TKd);
    MOE__TAKE(hs, float, TSs);
    MOE__TAKE(zs, float, L->sh.ff ? Td : 0);
#undef MOE__TAKE
    *total = at + MOE__ALIGN; /* room to align the caller's pointer */
    return 1;
}

static int moe__threads(int n) {
#if MOE__OMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

// ---- route: router, gating, capacity ----------------------------------------------------------

/* y[T][ldy] = x[T][ldx] . M^T (+ B), one dense matrix (the router, the latent projections): one
   task per (block of 16 rows, panel of outputs). */
static void moe__dense(const moe_layer *L, const moe__mat *M, const float *B, const float *x,
                       size_t ldx, size_t T, float *y, size_t ldy, int nth) {
    size_t panels = M->panels, rb = 16, ntask = (T + rb - 1) / rb * panels;
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(nth) if(ntask > 1))
    for (long t = 0; t < (long)ntask; t++) {
        size_t r0 = (size_t)t / panels * rb, p = (size_t)t % panels;
        size_t m = T - r0 < rb ? T - r0 : rb;
        moe__rows R = moe__rows_make(x + r0 * ldx, ldx * sizeof(float), NULL, m, y + r0 * ldy,
                                     ldy, NULL);
        L->router_kern->gemm(M, 0, B, &R, p, p + 1);
    }
}

/* out[t] = rms(x[t]) * wt (* mult), rms(x) = x / sqrt(mean x^2 + eps): HF Gemma4RMSNorm in fp32,
   then the Gemma-4 router's scale and d^-1/2. */
static void moe__in_norm(const moe_layer *L, const float *x, size_t T, const float *wt,
                         float mult, float *out, int nth) {
    size_t d = L->d;
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(T > 64))
    for (long tl = 0; tl < (long)T; tl++) {
        const float *xt = x + (size_t)tl * d;
        float *o = out + (size_t)tl * d, ss = 0.0f;
        for (size_t c = 0; c < d; c++) ss = fmaf(xt[c], xt[c], ss);
        float r = 1.0f / sqrtf(ss / (float)d + L->cfg.in_norm_eps);
        for (size_t c = 0; c < d; c++) o[c] = mult != 1.0f ? xt[c] * r * wt[c] * mult : xt[c] * r * wt[c];
    }
}

static void moe__route(const moe_layer *L, const float *x, size_t T, moe__ws *w, int nth) {
    const moe_config *c = &L->cfg;
    size_t E = L->RO, k = L->k; /* E: the router's outputs */
    if (L->router_in_scale) { /* Gemma-4: norm(x) * scale * hidden_size^-0.5 */
        moe__in_norm(L, x, T, L->router_in_scale, 1.0f / sqrtf((float)L->d), w->xr, nth);
        x = w->xr;
    }
    /* router logits */
    moe__dense(L, &L->router, L->router_bias, x, L->d, T, w->logits, E, nth);
    MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(T > 64))
    for (long t = 0; t < (long)T; t++) {
        float *h = w->logits + (size_t)t * E, cap = c->logit_softcap;
        if (cap > 0.0f) /* HF laguna LagunaTopKRouter: the capped logits are "the" logits */
            for (size_t e = 0; e < E; e++) h[e] = tanhf(h[e] / cap) * cap;
        moe__gate(L, h, w->scratch + (size_t)t * 4 * E, w->ex + (size_t)t * k,
                  w->wt + (size_t)t * k, c->shared_router ? w->gam + (size_t)t * L->S : NULL);
    }
    /* capacity (Switch): per expert, the first `capacity` (token, slot) pairs in token order */
    memset(w->drop, 0, T * k);
    if (c->capacity > 0) {
        int32_t *used = w->off; /* L->E + 2 counters, reused by the plan afterwards */
        memset(used, 0, (L->E + 2) * sizeof *used);
        for (size_t i = 0; i < T * k; i++)
            if ((size_t)w->ex[i] < L->E && used[w->ex[i]]++ >= c->capacity) w->drop[i] = 1;
    }
}

/* Counting sort of the kept (token, slot) pairs by expert; stable, so rows keep token order. */
static void moe__plan(const moe_layer *L, size_t T, moe__ws *w) {
    size_t E = L->E, k = L->k;
    int32_t *off = w->off;
    memset(off, 0, (E + 2) * sizeof *off);
    for (size_t i = 0; i < T * k; i++) /* a zero-computation expert (>= E) runs no FFN */
        if (!w->drop[i] && (size_t)w->ex[i] < E) off[w->ex[i] + 1]++;
    for (size_t e = 0; e < E; e++) off[e + 1] += off[e];
    off[E + 1] = off[E] + (int32_t)(L->sh.ff ? T : 0); /* the shared experts see every token */
    for (size_t i = 0; i < T * k; i++) {
        if (w->drop[i] || (size_t)w->ex[i] >= E) continue;
        int32_t at = off[w->ex[i]]++;
        w->rows[at] = (int32_t)i;
        w->toks[at] = (int32_t)(i / k);
    }
    for (size_t e = E; e > 0; e--) off[e] = off[e - 1]; /* undo the ++ shift */
    off[0] = 0;
}

// ---- expert phases ----------------------------------------------------------------------------
// Experts 0..E-1 are the routed ones, E is the shared FFN (all tokens). Each phase is one flat
// list of tasks (expert, block of output panels), so a skewed routing still spreads over every
// thread. Blocks never split K, and an output belongs to exactly one task: the partition can
// change with the thread count without changing a bit of the result.

static size_t moe__rows_of(const moe__ws *w, size_t e) {
    return (size_t)(w->off[e + 1] - w->off[e]);
}

/* Panels per task for an expert with `rows` rows: about `target` rows x panels of work, so a
   busy expert (the shared one sees every token) is cut finer than a quiet one. Even when more
   than one, so decode tiles keep their panel pairs. */
static size_t moe__block(size_t target, size_t rows, size_t np) {
    size_t pb = target / (rows ? rows : 1);
    pb = pb < 1 ? 1 : pb > np ? np : pb;
    return pb > 1 && pb < np ? pb + (pb & 1) : pb;
}

/* Fills task[0..E+1] (first task of each expert) for panels_ex panels an expert (panels_sh for
   the shared one); returns the task count and, in *target, the work a task aims at: the whole
   phase's rows x panels over 8 tasks a thread. */
static size_t moe__tasks(const moe_layer *L, const moe__ws *w, size_t *task, size_t panels_ex,
                         size_t panels_sh, int nth, size_t *target) {
    size_t work = 0, n = 0;
    for (size_t e = 0; e <= L->E; e++)
        work += moe__rows_of(w, e) * (e < L->E ? panels_ex : panels_sh);
    *target = work / (8 * (size_t)nth);
    for (size_t e = 0; e <= L->E; e++) {
        size_t np = e < L->E ? panels_ex : panels_sh, rows = moe__rows_of(w, e);
        task[e] = n;
        if (rows) {
            size_t pb = moe__block(*target, rows, np);
            n += (np + pb - 1) / pb;
        }
    }
    task[L->E + 1] = n;
    return n;
}

static size_t moe__task_expert(const size_t *task, size_t E, size_t t) {
    size_t lo = 0, hi = E; /* last e with task[e] <= t */
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (task[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* What the routed experts read: latent_in . x, or Gemma-4's normed x, or x itself. */
static const float *moe__expert_in(const moe_layer *L, const float *x, const moe__ws *w) {
    return L->cfg.d_latent ? w->xl : L->expert_in_norm ? w->xn : x;
}

static void moe__phase1(const moe_layer *L, const float *x, moe__ws *w, int nth) {
    size_t target, *task = w->task, E = L->E, d = L->d, dl = L->dl;
    const float *xe = moe__expert_in(L, x, w); /* the routed experts' input */
    size_t n = moe__tasks(L, w, task, L->ex.ff_pad / MOE__NR, L->sh.ff_pad / MOE__NR, nth, &target);
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(nth) if(n > 1))
    for (long t = 0; t < (long)n; t++) {
        size_t e = moe__task_expert(task, E, (size_t)t), m = moe__rows_of(w, e);
        const moe__ffnw *f = e < E ? &L->ex : &L->sh;
        size_t fe = e < E ? e : 0, np = f->ff_pad / MOE__NR, pb = moe__block(target, m, np);
        size_t p0 = ((size_t)t - task[e]) * pb, p1 = p0 + pb < np ? p0 + pb : np;
        moe__rows R = moe__rows_make(x, d * sizeof(float), NULL, m, w->hs, f->ff_pad, NULL);
        if (e < E) {
            R.x = (const unsigned char *)xe, R.ldx = dl * sizeof(float);
            R.xi = w->toks + w->off[e];
            R.y = w->h + (size_t)w->off[e] * f->ff_pad;
            if (L->cfg.weight_on_input)
                R.x = (const unsigned char *)(w->xs + (size_t)w->off[e] * dl), R.xi = NULL;
        }
        const float *B = f->b1 ? f->b1 + fe * np * f->w1.w : NULL;
        f->kern->ffn1(e < E ? &L->act : &L->sh_act, &f->w1, fe, B, &R, p0, p1);
    }
}

static void moe__phase2(const moe_layer *L, moe__ws *w, int nth) {
    size_t target, *task = w->task + L->E + 2, E = L->E;
    size_t np_ex = L->ex.dm_pad / MOE__NR, np_sh = L->sh.dm_pad / MOE__NR;
    size_t n = moe__tasks(L, w, task, np_ex, np_sh, nth, &target);
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(nth) if(n > 1))
    for (long t = 0; t < (long)n; t++) {
        size_t e = moe__task_expert(task, E, (size_t)t), m = moe__rows_of(w, e);
        const moe__ffnw *f = e < E ? &L->ex : &L->sh;
        size_t np = e < E ? np_ex : np_sh;
        size_t pb = moe__block(target, m, np), p0 = ((size_t)t - task[e]) * pb;
        size_t p1 = p0 + pb < np ? p0 + pb : np;
        size_t fe = e < E ? e : 0;
        moe__rows R = moe__rows_make(e < E ? w->h + (size_t)w->off[e] * f->ff_pad : w->hs,
                                     f->ff_pad * sizeof(float), NULL, m, e < E ? w->z : w->zs,
                                     f->dm, e < E ? w->rows + w->off[e] : NULL);
        f->kern->gemm(&f->w2, fe, f->b2 ? f->b2 + fe * f->dm_pad : NULL, &R, p0, p1);
    }
}

// ---- combine ----------------------------------------------------------------------------------

/* The factor of the shared output for token t: 0 without shared experts, else g(t) (the
   Qwen2-MoE sigmoid gate, or 1), halved for MOE_SHARED_AVERAGE. */
static float moe__shared_factor(const moe_layer *L, const float *xt, float half) {
    if (!L->sh.ff) return 0.0f;
    if (!L->shared_gate) return half;
    float s = 0.0f;
    for (size_t c = 0; c < L->d; c++) s = fmaf(xt[c], L->shared_gate[c], s);
    return moe__sigmoid(s) * half;
}

/* One token's output row, after the experts: + output_bias, then the output norm. */
static void moe__out_post(const moe_layer *L, float *yt) {
    size_t d = L->d;
    if (L->out_bias) /* JetMoE: layer_output + self.bias */
        for (size_t c = 0; c < d; c++) yt[c] += L->out_bias[c];
    if (L->out_norm) { /* HF RMSNorm: weight * (h * rsqrt(mean(h^2) + eps)), in fp32 */
        float ss = 0.0f;
        for (size_t c = 0; c < d; c++) ss = fmaf(yt[c], yt[c], ss);
        float r = 1.0f / sqrtf(ss / (float)d + L->cfg.out_norm_eps);
        for (size_t c = 0; c < d; c++) yt[c] = L->out_norm[c] * (yt[c] * r);
    }
}

/* y[t] = sum_j w[t][j] Z[t k + j] in slot order, then + g(t) * shared[t], as one fp32 chain
   (a zero-computation expert's Z is x[t]). scale_on_sum: the routed part is its own chain, times
   scale, then + g(t) * shared[t]. MOE_SHARED_AVERAGE halves every factor, which is exact, so the
   chain is that of the sum. With a latent space the routed chain is d_latent wide, then
   latent_out maps it to d before the shared output joins. Then + output_bias, then the output
   norm. */
static void moe__combine_all(const moe_layer *L, const float *x, size_t T, float *y, moe__ws *w,
                             int nth) {
    size_t k = L->k, d = L->d, dl = L->dl;
    float half = L->cfg.shared_combine == MOE_SHARED_AVERAGE && L->sh.ff ? 0.5f : 1.0f;
    int on_sum = L->cfg.scale_on_sum && L->cfg.scale != 1.0f, lat = L->cfg.d_latent > 0;
    const float *xe = moe__expert_in(L, x, w); /* what the routed experts saw */
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(T > 1))
    for (long tl = 0; tl < (long)T; tl++) {
        size_t t = (size_t)tl, n = 0;
        const float **zp = w->zp + t * (k + 1);
        float *zw = w->zw + t * (k + 1);
        for (size_t j = 0; j < k; j++) {
            size_t i = t * k + j;
            int ident = w->drop[i] || (size_t)w->ex[i] >= L->E;
            if (w->drop[i] && L->cfg.drop == MOE_DROP_ZERO) continue;
            zp[n] = ident ? xe + t * dl : w->z + i * dl;
            zw[n++] = (L->cfg.weight_on_input && !ident ? 1.0f : w->wt[i]) * half;
        }
        if (lat) { /* the latent sum; latent_out and the rest below */
            L->router_kern->combine(w->yl + t * dl, dl, zp, zw, (int)n);
            continue;
        }
        float g = moe__shared_factor(L, x + t * d, half), *yt = y + t * d;
        if (on_sum) { /* (routed sum) * scale, then the shared output */
            float sc = L->cfg.scale;
            const float *zs = w->zs + t * d;
            L->router_kern->combine(yt, d, zp, zw, (int)n);
            for (size_t c = 0; c < d; c++) yt[c] = L->sh.ff ? fmaf(g, zs[c], yt[c] * sc) : yt[c] * sc;
        } else {
            if (L->sh.ff) {
                zp[n] = w->zs + t * d;
                zw[n++] = g;
            }
            L->router_kern->combine(yt, d, zp, zw, (int)n);
        }
        moe__out_post(L, yt);
    }
    if (!lat) return;
    /* Nemotron-H: fc2_latent_proj(routed), then + shared_experts(x) */
    moe__dense(L, &L->lat_out, NULL, w->yl, dl, T, y, d, nth);
    MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(T > 1))
    for (long tl = 0; tl < (long)T; tl++) {
        size_t t = (size_t)tl;
        float g = moe__shared_factor(L, x + t * d, half), *yt = y + t * d, sc = L->cfg.scale;
        const float *zs = w->zs + t * d;
        for (size_t c = 0; c < d; c++) {
            float r = on_sum ? yt[c] * sc : yt[c];
            yt[c] = L->sh.ff ? fmaf(g, zs[c], r) : r;
        }
        moe__out_post(L, yt);
    }
}

// ---- trace ------------------------------------------------------------------------------------

static void moe__trace(const moe_layer *L, size_t T, moe__ws *w, moe_trace *tr) {
    size_t E = L->RO, k = L->k;
    /* gating is done, so the scratch is free: p[E], top[E] (int32), then 2E doubles (the
       scratch holds T * 4E + 8E floats) */
    float *p = w->scratch;
    int32_t *top = (int32_t *)(void *)(w->scratch + 2 * E);
    double aux = 0.0, z = 0.0;
    tr->n_dropped = 0;
    for (size_t i = 0; i < T * k; i++) tr->n_dropped += w->drop[i];
    if (tr->expert) memcpy(tr->expert, w->ex, T * k * sizeof(int32_t));
    if (tr->weight)
        for (size_t i = 0; i < T * k; i++) tr->weight[i] = w->drop[i] ? 0.0f : w->wt[i];
    if (tr->logits) memcpy(tr->logits, w->logits, T * E * sizeof(float));
    if (tr->expert_tokens) {
        for (size_t e = 0; e < E; e++) tr->expert_tokens[e] = 0;
        for (size_t i = 0; i < T * k; i++) tr->expert_tokens[w->ex[i]] += !w->drop[i];
    }
    /* HF load_balancing_loss_func: P = softmax(logits), picks = top-k of P (its own, whatever
       the layer's rule), loss = E * sum_e (picks_e / T) * mean_t P[t][e]. z-loss from
       ST-MoE (HF switch_transformers router_z_loss_func). Summed in token order, in double. */
    {
        double *sp = (double *)(void *)(w->scratch + 4 * E), *pk = sp + E; /* sum P, picks */
        for (size_t e = 0; e < E; e++) sp[e] = pk[e] = 0.0;
        for (size_t t = 0; t < T; t++) {
            const float *h = w->logits + t * E;
            double m = -INFINITY, s = 0.0;
            for (size_t e = 0; e < E; e++) m = h[e] > m ? h[e] : m;
            for (size_t e = 0; e < E; e++) s += exp((double)h[e] - m);
            double lse = m + log(s);
            z += lse * lse;
            for (size_t e = 0; e < E; e++) {
                p[e] = (float)exp((double)h[e] - lse);
                sp[e] += exp((double)h[e] - lse);
            }
            moe__topk(p, (int)E, (int)k, top);
            for (size_t j = 0; j < k; j++) pk[top[j]] += 1.0;
        }
        for (size_t e = 0; e < E; e++) {
            double mp = T ? sp[e] / (double)T : 0.0;
            if (tr->mean_prob) tr->mean_prob[e] = (float)mp;
            aux += T ? pk[e] / (double)T * mp : 0.0;
        }
    }
    tr->aux_loss = aux * (double)E;
    tr->z_loss = T ? z / (double)T : 0.0;
}

// ---- public functions -------------------------------------------------------------------------

MOEDEF const char *moe_result_string(moe_result r) {
    switch (r) {
    case MOE_OK: return "ok";
    case MOE_E_NULL: return "a required pointer argument is NULL";
    case MOE_E_DIM:
        return "d_model, d_ff, n_experts and top_k must all be greater than zero, and "
               "n_zero_experts and d_latent not negative";
    case MOE_E_TOPK: return "top_k is larger than n_experts + n_zero_experts";
    case MOE_E_GROUP_DIVIDE: return "n_group does not divide n_experts";
    case MOE_E_TOPK_GROUP: return "topk_group must be between 1 and n_group";
    case MOE_E_GROUP_TOPK:
        return "top_k is larger than the number of experts in the kept groups "
               "(topk_group * n_experts / n_group)";
    case MOE_E_GROUP_SIZE:
        return "group_score MOE_GROUP_TOP2_SUM needs at least 2 experts per group";
    case MOE_E_OVERFLOW: return "a size computed from the dimensions overflows size_t";
    case MOE_E_OPTION: return "an enum field of the config or of a tensor holds an unknown value";
    case MOE_E_VALUE:
        return "a float option (norm_eps, norm_p, scale, act_alpha, logit_softcap) is negative, "
               "NaN or infinite, jitter_eps is NaN or infinite, or act_limit or shared_act_limit "
               "is negative or NaN";
    case MOE_E_SHARED:
        return "n_shared or d_shared is negative, or shared_gate is set without shared experts, or "
               "shared_router is set without shared experts, with shared_gate or without "
               "MOE_SCORE_SIGMOID";
    case MOE_E_CAPACITY: return "capacity is negative";
    case MOE_E_ACT_PLAIN:
        return "MOE_ACT_SWIGLU_OAI, _SWIGLU_CLAMP and _SILU_CLAMP need a gated FFN (ffn = "
               "MOE_FFN_GATED)";
    case MOE_E_BIAS_SCORE:
        return "select_bias needs score MOE_SCORE_SOFTMAX, MOE_SCORE_SIGMOID or "
               "MOE_SCORE_SQRT_SOFTPLUS";
    case MOE_E_NO_ROUTER: return "weights.router is missing";
    case MOE_E_NO_EXPERTS:
        return "expert weights are missing: a gated FFN needs gate and up (or gate_up) and "
               "down, a plain FFN needs up and down (per_expert pointers must all be set)";
    case MOE_E_NO_ROUTER_BIAS: return "cfg.router_bias is set but weights.router_bias is missing";
    case MOE_E_NO_SELECT_BIAS: return "cfg.select_bias is set but weights.select_bias is missing";
    case MOE_E_NO_EXPERT_BIAS:
        return "cfg.expert_bias is set but an expert bias is missing (gate_bias and up_bias, or "
               "gate_up_bias, and down_bias)";
    case MOE_E_NO_SHARED:
        return "n_shared > 0 but the shared expert weights are missing (shared_gate_proj and "
               "shared_up, or shared_gate_up, and shared_down)";
    case MOE_E_NO_SHARED_GATE:
        return "shared_gate is MOE_SHARED_GATE_SIGMOID but weights.shared_gate is missing";
    case MOE_E_DTYPE: return "a weight tensor has an unknown dtype or layout";
    case MOE_E_NOMEM: return "out of memory";
    case MOE_E_WORKSPACE: return "the workspace is smaller than moe_workspace_size() reports";
    case MOE_E_SPARSEMIXER: return "MOE_SCORE_SPARSEMIXER is defined for top_k = 2 only";
    case MOE_E_NO_OUTPUT_BIAS: return "cfg.output_bias is set but weights.output_bias is missing";
    case MOE_E_NO_OUT_NORM: return "cfg.out_norm is MOE_OUT_NORM_RMS but weights.out_norm is missing";
    case MOE_E_NO_LATENT:
        return "cfg.d_latent is set but weights.latent_in or weights.latent_out is missing";
    case MOE_E_NO_IN_NORM:
        return "cfg.router_in_norm, expert_in_norm or expert_scale is set but weights.router_in_scale, "
               "expert_in_norm or expert_scale is missing";
    }
    return "unknown moe_result code";
}

static int moe__bad_float(float v) { return !(v >= 0.0f) || v > FLT_MAX; }

/* Checks cfg and fills the defaults into *out. */
static moe_result moe__config(const moe_config *cfg, moe_config *out) {
    moe_config c;
    if (!cfg) return MOE_E_NULL;
    c = *cfg;
    if (c.d_model <= 0 || c.d_ff <= 0 || c.n_experts <= 0 || c.top_k <= 0 || c.n_zero_experts < 0 ||
        c.d_latent < 0)
        return MOE_E_DIM;
    /* the choices the router scores: the experts, then the zero-computation ones */
    int64_t R = (int64_t)c.n_experts + c.n_zero_experts;
    if (R > INT32_MAX) return MOE_E_OVERFLOW;
    if (c.top_k > R) return MOE_E_TOPK;
    if ((unsigned)c.score > MOE_SCORE_SQRT_SOFTPLUS || (unsigned)c.group_score > MOE_GROUP_TOP2_SUM ||
        (unsigned)c.norm > MOE_NORM_LP || (unsigned)c.drop > MOE_DROP_IDENTITY ||
        (unsigned)c.ffn > MOE_FFN_PLAIN || (unsigned)c.act > MOE_ACT_SILU_CLAMP ||
        (unsigned)c.shared_gate > MOE_SHARED_GATE_SIGMOID ||
        (unsigned)c.group_fill > MOE_GROUP_FILL_ZERO ||
        (unsigned)c.shared_combine > MOE_SHARED_AVERAGE || (unsigned)c.out_norm > MOE_OUT_NORM_RMS)
        return MOE_E_OPTION;
    /* the limits may be +inf (no clamp) */
    if (moe__bad_float(c.norm_eps) || moe__bad_float(c.norm_p) || moe__bad_float(c.scale) ||
        moe__bad_float(fabsf(c.jitter_eps)) || moe__bad_float(c.act_alpha) ||
        !(c.act_limit >= 0.0f) || !(c.shared_act_limit >= 0.0f) ||
        moe__bad_float(c.logit_softcap) || moe__bad_float(c.out_norm_eps) ||
        moe__bad_float(c.in_norm_eps))
        return MOE_E_VALUE;
    if (c.n_shared < 0 || c.d_shared < 0 || (c.n_shared == 0 && c.shared_gate))
        return MOE_E_SHARED;
    /* Inkling's router-weighted shared experts: sigmoid scores, one output each, no Qwen gate */
    if (c.shared_router && (c.n_shared == 0 || c.shared_gate || c.score != MOE_SCORE_SIGMOID))
        return MOE_E_SHARED;
    if (c.shared_router && R + c.n_shared > INT32_MAX) return MOE_E_OVERFLOW;
    if (c.capacity < 0) return MOE_E_CAPACITY;
    if ((c.act == MOE_ACT_SWIGLU_OAI || c.act == MOE_ACT_SWIGLU_CLAMP || c.act == MOE_ACT_SILU_CLAMP) &&
        c.ffn != MOE_FFN_GATED)
        return MOE_E_ACT_PLAIN;
    if (c.select_bias && c.score != MOE_SCORE_SOFTMAX && c.score != MOE_SCORE_SIGMOID &&
        c.score != MOE_SCORE_SQRT_SOFTPLUS)
        return MOE_E_BIAS_SCORE;
    if (c.score == MOE_SCORE_SPARSEMIXER && c.top_k != 2) return MOE_E_SPARSEMIXER;
    if (c.n_group < 0) return MOE_E_GROUP_DIVIDE;
    if (c.n_group <= 1) {
        c.n_group = 1;
        if (c.topk_group < 0 || c.topk_group > 1) return MOE_E_TOPK_GROUP;
        c.topk_group = 1;
    } else {
        if (R % c.n_group) return MOE_E_GROUP_DIVIDE;
        if (c.topk_group == 0) c.topk_group = c.n_group;
        if (c.topk_group < 0 || c.topk_group > c.n_group) return MOE_E_TOPK_GROUP;
        if (c.group_score == MOE_GROUP_TOP2_SUM && R / c.n_group < 2) return MOE_E_GROUP_SIZE;
        if ((int64_t)c.top_k > (int64_t)c.topk_group * (R / c.n_group)) return MOE_E_GROUP_TOPK;
    }
    if (c.d_shared == 0) c.d_shared = c.d_ff;
    if (c.norm_p == 0.0f) c.norm_p = 1.0f;
    if (c.scale == 0.0f) c.scale = 1.0f;
    if (c.jitter_eps == 0.0f) c.jitter_eps = 0.01f;
    if (c.act_alpha == 0.0f) c.act_alpha = 1.702f;
    if (c.act_limit == 0.0f) c.act_limit = 7.0f;
    if (c.shared_act_limit == 0.0f) c.shared_act_limit = c.act_limit;
    if (c.out_norm_eps == 0.0f) c.out_norm_eps = 1e-6f;
    if (c.in_norm_eps == 0.0f) c.in_norm_eps = 1e-6f;
    if (c.n_shared == 0) c.d_shared = 0;
    *out = c;
    return MOE_OK;
}

MOEDEF moe_result moe_config_check(const moe_config *cfg) {
    moe_config c;
    return moe__config(cfg, &c);
}

/* A tensor is usable if absent (returns 0) or fully present with valid enums (returns 1); bad
   enums or a NULL per-expert entry give an error through *r. */
static int moe__tensor_ok(const moe_tensor *t, size_t n_exp, moe_result missing, moe_result *r) {
    if (!moe__present(t)) return 0;
    if ((unsigned)t->dtype > MOE_F16 || (unsigned)t->layout > MOE_IN_OUT) {
        if (*r == MOE_OK) *r = MOE_E_DTYPE;
        return 1;
    }
    if (!t->data)
        for (size_t e = 0; e < n_exp; e++)
            if (!t->per_expert[e] && *r == MOE_OK) *r = missing;
    return 1;
}

static moe_result moe__weights_check(const moe_config *c, const moe_weights *w) {
    moe_result r = MOE_OK;
    size_t E = (size_t)c->n_experts;
    int gated = c->ffn == MOE_FFN_GATED;
#define MOE__HAS(t, n, code) moe__tensor_ok(&w->t, (n), (code), &r)
    if (!MOE__HAS(router, 1, MOE_E_NO_ROUTER)) return MOE_E_NO_ROUTER;
    if (c->router_bias && !MOE__HAS(router_bias, 1, MOE_E_NO_ROUTER_BIAS))
        return MOE_E_NO_ROUTER_BIAS;
    if (c->select_bias && !MOE__HAS(select_bias, 1, MOE_E_NO_SELECT_BIAS))
        return MOE_E_NO_SELECT_BIAS;
    int fused = gated && MOE__HAS(gate_up, E, MOE_E_NO_EXPERTS);
    int has_gu = fused || (gated ? MOE__HAS(gate, E, MOE_E_NO_EXPERTS) : 1);
    has_gu = has_gu && (fused || MOE__HAS(up, E, MOE_E_NO_EXPERTS));
    if (!has_gu || !MOE__HAS(down, E, MOE_E_NO_EXPERTS)) return MOE_E_NO_EXPERTS;
    if (c->expert_bias) {
        int b1 = fused && MOE__HAS(gate_up_bias, E, MOE_E_NO_EXPERT_BIAS);
        if (!b1) b1 = (gated ? MOE__HAS(gate_bias, E, MOE_E_NO_EXPERT_BIAS) : 1) &&
                      MOE__HAS(up_bias, E, MOE_E_NO_EXPERT_BIAS);
        if (!b1 || !MOE__HAS(down_bias, E, MOE_E_NO_EXPERT_BIAS)) return MOE_E_NO_EXPERT_BIAS;
    }
    if (c->n_shared > 0) {
        int sf = gated && MOE__HAS(shared_gate_up, 1, MOE_E_NO_SHARED);
        int ok = sf || ((gated ? MOE__HAS(shared_gate_proj, 1, MOE_E_NO_SHARED) : 1) &&
                        MOE__HAS(shared_up, 1, MOE_E_NO_SHARED));
        if (!ok || !MOE__HAS(shared_down, 1, MOE_E_NO_SHARED)) return MOE_E_NO_SHARED;
        if (c->shared_gate && !MOE__HAS(shared_gate, 1, MOE_E_NO_SHARED_GATE))
            return MOE_E_NO_SHARED_GATE;
    }
    if (c->output_bias && !MOE__HAS(output_bias, 1, MOE_E_NO_OUTPUT_BIAS))
        return MOE_E_NO_OUTPUT_BIAS;
    if (c->out_norm && !MOE__HAS(out_norm, 1, MOE_E_NO_OUT_NORM)) return MOE_E_NO_OUT_NORM;
    if (c->d_latent && (!MOE__HAS(latent_in, 1, MOE_E_NO_LATENT) ||
                        !MOE__HAS(latent_out, 1, MOE_E_NO_LATENT)))
        return MOE_E_NO_LATENT;
    if ((c->router_in_norm && !MOE__HAS(router_in_scale, 1, MOE_E_NO_IN_NORM)) ||
        (c->expert_in_norm && !MOE__HAS(expert_in_norm, 1, MOE_E_NO_IN_NORM)) ||
        (c->expert_scale && !MOE__HAS(expert_scale, 1, MOE_E_NO_IN_NORM)))
        return MOE_E_NO_IN_NORM;
    if ((unsigned)w->gate_up_split > MOE_SPLIT_INTERLEAVED ||
        (unsigned)w->shared_gate_up_split > MOE_SPLIT_INTERLEAVED)
        return MOE_E_OPTION;
#undef MOE__HAS
    return r;
}

/* Geometry of one packed FFN set: n_exp experts of width ff, packed as `kind`. */
static int moe__ffn_init(const moe_layer *L, moe__ffnw *f, int kind, size_t n_exp, size_t ff,
                         size_t dm) {
    size_t b;
    f->dm = dm, f->dm_pad = moe__round_up(dm, MOE__NR);
    f->ff = ff;
    f->ff_pad = moe__round_up(ff, MOE__NR);
    return moe__mat_init(&f->w1, kind, ff, dm, L->gated ? 2 * MOE__NR : MOE__NR, n_exp, &b) &&
           moe__mat_init(&f->w2, kind, dm, ff, MOE__NR, n_exp, &b);
}

/* The layer's one block of memory: the layer itself, then every packed array, 64-byte aligned.
   base NULL: only measures (*total). 0 on size overflow. */
static int moe__layer_carve(moe_layer *L, char *base, size_t *total) {
    const moe_config *c = &L->cfg;
    size_t at = moe__round_up(sizeof(moe_layer), MOE__ALIGN), n, b = 0;
    int ok = 1;
#define MOE__TAKE(ptr, type, nbytes)                                                             \
    do {                                                                                         \
        ok = ok && moe__add(at, (nbytes), &n) && moe__add(n, MOE__ALIGN, &n);                    \
        if (!ok) return 0;                                                                       \
        (ptr) = base && (nbytes) ? (type *)(void *)(base + at) : NULL;                           \
        at = n / MOE__ALIGN * MOE__ALIGN;                                                        \
    } while (0)
    MOE__TAKE(L->router.data, unsigned char, L->router.expert_bytes);
    MOE__TAKE(L->lat_in.data, unsigned char, c->d_latent ? L->lat_in.expert_bytes : 0);
    MOE__TAKE(L->lat_out.data, unsigned char, c->d_latent ? L->lat_out.expert_bytes : 0);
    MOE__TAKE(L->router_bias, float, c->router_bias ? L->e_pad * sizeof(float) : 0);
    MOE__TAKE(L->select_bias, float, c->select_bias ? L->R * sizeof(float) : 0);
    MOE__TAKE(L->shared_gate, float, c->shared_gate ? L->d * sizeof(float) : 0);
    MOE__TAKE(L->out_bias, float, c->output_bias ? L->d * sizeof(float) : 0);
    MOE__TAKE(L->out_norm, float, c->out_norm ? L->d * sizeof(float) : 0);
    MOE__TAKE(L->router_in_scale, float, c->router_in_norm ? L->d * sizeof(float) : 0);
    MOE__TAKE(L->expert_in_norm, float, c->expert_in_norm ? L->d * sizeof(float) : 0);
    MOE__TAKE(L->expert_scale, float, c->expert_scale ? L->R * sizeof(float) : 0);
    for (int s = 0; s < 2; s++) {
        moe__ffnw *f = s ? &L->sh : &L->ex;
        size_t ne = s ? (f->ff ? 1 : 0) : L->E, b1 = 0, b2 = 0;
        int bias = !s && c->expert_bias;
        ok = ok && moe__mul(f->w1.expert_bytes, ne, &b);
        MOE__TAKE(f->w1.data, unsigned char, b);
        ok = ok && moe__mul(f->w2.expert_bytes, ne, &b);
        MOE__TAKE(f->w2.data, unsigned char, b);
        ok = ok && (!bias || (moe__mul(f->ff_pad / MOE__NR * f->w1.w * sizeof(float), ne, &b1) &&
                              moe__mul(f->dm_pad * sizeof(float), ne, &b2)));
        MOE__TAKE(f->b1, float, b1);
        MOE__TAKE(f->b2, float, b2);
    }
#undef MOE__TAKE
    return moe__add(at, MOE__ALIGN, total); /* room to align what MOE_MALLOC returns */
}

MOEDEF moe_result moe_layer_create(moe_layer **out, const moe_config *cfg, const moe_weights *w) {
    moe_config c;
    moe_result r;
    moe_layer L;
    size_t S, total, rb;
    if (!out) return MOE_E_NULL;
    *out = NULL;
    if (!w) return MOE_E_NULL;
    if ((r = moe__config(cfg, &c)) != MOE_OK) return r;
    if ((r = moe__weights_check(&c, w)) != MOE_OK) return r;

    memset(&L, 0, sizeof L);
    L.cfg = c;
    L.act.act = c.act, L.act.alpha = c.act_alpha, L.act.limit = c.act_limit;
    L.sh_act = L.act, L.sh_act.limit = c.shared_act_limit;
    L.gated = c.ffn == MOE_FFN_GATED;
    L.d = (size_t)c.d_model, L.E = (size_t)c.n_experts, L.k = (size_t)c.top_k;
    L.R = L.E + (size_t)c.n_zero_experts;
    L.S = (size_t)c.n_shared, L.RO = L.R + (c.shared_router ? L.S : 0);
    L.dl = c.d_latent ? (size_t)c.d_latent : L.d;
    L.d_pad = moe__round_up(L.d, MOE__NR);
    L.e_pad = moe__round_up(L.RO, MOE__NR);
    if (!moe__mul((size_t)c.n_shared, (size_t)c.d_shared, &S) ||
        !moe__mat_init(&L.router, MOE__KF32, L.RO, L.d, MOE__NR, 1, &rb) ||
        !moe__ffn_init(&L, &L.ex, MOE__KF32, L.E, (size_t)c.d_ff, L.dl) ||
        (S && !moe__ffn_init(&L, &L.sh, MOE__KF32, 1, S, L.d)) ||
        (c.d_latent && (!moe__mat_init(&L.lat_in, MOE__KF32, L.dl, L.d, MOE__NR, 1, &rb) ||
                        !moe__mat_init(&L.lat_out, MOE__KF32, L.d, L.dl, MOE__NR, 1, &rb))) ||
        !moe__layer_carve(&L, NULL, &total))
        return MOE_E_OVERFLOW;
    moe__select_kernels(&L, 0);

    char *mem = MOE__CAST(char *, MOE_MALLOC(total, NULL));
    if (!mem) return MOE_E_NOMEM;
    char *base = mem + (MOE__ALIGN - (size_t)((uintptr_t)mem % MOE__ALIGN)) % MOE__ALIGN;
    moe__layer_carve(&L, base, &total);
    L.mem = mem;
    L.packed_bytes = total;
#if MOE__HUGEPAGES
    if (total >= (8u << 20)) { /* 512x fewer page faults and TLB misses on big layers */
        uintptr_t a = ((uintptr_t)mem + 4095) & ~(uintptr_t)4095;
        (void)madvise((void *)a, (size_t)((uintptr_t)mem + total - a) & ~(size_t)4095,
                      MADV_HUGEPAGE);
    }
#endif
    /* Nothing is zeroed first: the packers write every byte that is read, padding included, so
       a page faults in (in parallel, expert by expert) when its weights are written, and a
       loader that releases each source as it is packed peaks near the packed size. */
    moe__part whole = {0, 1, L.RO};
    moe__pack_mat(&L.router, 0, 0, moe__expert_src(&w->router, 0, L.RO * L.d), w->router.dtype,
                  w->router.layout, whole);
    moe__released(w, &w->router, 0, L.RO * L.d);
    if (L.router_bias) {
        moe__pack_vec(L.router_bias, L.RO, L.e_pad, MOE__NR, 0,
                      moe__expert_src(&w->router_bias, 0, L.RO), w->router_bias.dtype, whole);
        moe__released(w, &w->router_bias, 0, L.RO);
    }
    if (L.select_bias) {
        moe__pack_vec(L.select_bias, L.R, L.R, MOE__NR, 0,
                      moe__expert_src(&w->select_bias, 0, L.R), w->select_bias.dtype, whole);
        moe__released(w, &w->select_bias, 0, L.R);
    }
    if (c.d_latent) { /* Nemotron-H fc1_latent_proj, fc2_latent_proj */
        moe__part pin = {0, 1, L.dl}, pout = {0, 1, L.d};
        moe__pack_mat(&L.lat_in, 0, 0, moe__expert_src(&w->latent_in, 0, L.dl * L.d),
                      w->latent_in.dtype, w->latent_in.layout, pin);
        moe__released(w, &w->latent_in, 0, L.dl * L.d);
        moe__pack_mat(&L.lat_out, 0, 0, moe__expert_src(&w->latent_out, 0, L.dl * L.d),
                      w->latent_out.dtype, w->latent_out.layout, pout);
        moe__released(w, &w->latent_out, 0, L.dl * L.d);
    }
    /* the vectors: the Qwen2-MoE shared gate, the output bias, the output norm's weight, the
       Gemma-4 router scale and expert input norm ([d]); the per-expert scale ([R]) */
    float *vec[6] = {L.shared_gate, L.out_bias, L.out_norm, L.router_in_scale, L.expert_in_norm,
                     L.expert_scale};
    const moe_tensor *src[6] = {&w->shared_gate, &w->output_bias, &w->out_norm,
                                &w->router_in_scale, &w->expert_in_norm, &w->expert_scale};
    for (int v = 0; v < 6; v++) {
        size_t n = v == 5 ? L.R : L.d;
        if (!vec[v]) continue;
        moe__pack_vec(vec[v], n, n, MOE__NR, 0, moe__expert_src(src[v], 0, n), src[v]->dtype, whole);
        moe__released(w, src[v], 0, n);
    }
    moe__pack_ffn(&L.ex, &L, L.E, &w->gate, &w->up, &w->gate_up, w->gate_up_split, &w->down,
                  &w->gate_bias, &w->up_bias, &w->gate_up_bias, &w->down_bias, w);
    if (S) {
        moe_tensor none;
        memset(&none, 0, sizeof none);
        moe__pack_ffn(&L.sh, &L, 1, &w->shared_gate_proj, &w->shared_up, &w->shared_gate_up,
                      w->shared_gate_up_split, &w->shared_down, &none, &none, &none, &none, w);
    }
    memcpy(base, &L, sizeof L);
    *out = (moe_layer *)(void *)base;
    return MOE_OK;
}

MOEDEF void moe_layer_free(moe_layer *layer) {
    if (layer) MOE_FREE(layer->mem, NULL);
}

MOEDEF const moe_config *moe_layer_config(const moe_layer *layer) {
    return layer ? &layer->cfg : NULL;
}

MOEDEF size_t moe_layer_packed_bytes(const moe_layer *layer) {
    return layer ? layer->packed_bytes : 0;
}

MOEDEF moe_result moe_workspace_size(const moe_layer *layer, size_t n_tokens, size_t *bytes) {
    moe__ws w;
    if (!layer || !bytes) return MOE_E_NULL;
    *bytes = 0;
    if (n_tokens > (size_t)INT32_MAX / layer->k) return MOE_E_OVERFLOW;
    return moe__carve(layer, n_tokens, NULL, &w, bytes) ? MOE_OK : MOE_E_OVERFLOW;
}

/* Checks the arguments and lays out the workspace. */
static moe_result moe__begin(const moe_layer *L, const float *x, size_t T, const moe_workspace *ws,
                             moe__ws *w) {
    size_t need;
    if (!L || !ws || (T && !x)) return MOE_E_NULL;
    if (T > (size_t)INT32_MAX / L->k) return MOE_E_OVERFLOW;
    if (!moe__carve(L, T, NULL, w, &need)) return MOE_E_OVERFLOW;
    if (!ws->data || ws->size < need) return MOE_E_WORKSPACE;
    char *base = MOE__CAST(char *, ws->data);
    base += (MOE__ALIGN - (size_t)((uintptr_t)base % MOE__ALIGN)) % MOE__ALIGN;
    moe__carve(L, T, base, w, &need);
    return MOE_OK;
}

MOEDEF moe_result moe_route(const moe_layer *layer, const float *x, size_t n_tokens,
                            const moe_workspace *ws, moe_trace *trace) {
    moe__ws w;
    moe_result r = moe__begin(layer, x, n_tokens, ws, &w);
    if (r != MOE_OK) return r;
    moe__route(layer, x, n_tokens, &w, moe__threads(ws->n_threads));
    if (trace) moe__trace(layer, n_tokens, &w, trace);
    return MOE_OK;
}

MOEDEF moe_result moe_forward(const moe_layer *layer, const float *x, size_t n_tokens, float *y,
                              const moe_workspace *ws, moe_trace *trace) {
    moe__ws w;
    moe_result r = moe__begin(layer, x, n_tokens, ws, &w);
    if (r != MOE_OK) return r;
    if (n_tokens && !y) return MOE_E_NULL;
    int nth = moe__threads(ws->n_threads);
    const moe_layer *L = layer;
    moe__route(L, x, n_tokens, &w, nth);
    moe__plan(L, n_tokens, &w);
    if (L->expert_in_norm) /* Gemma-4 pre_feedforward_layernorm_2 */
        moe__in_norm(L, x, n_tokens, L->expert_in_norm, 1.0f, w.xn, nth);
    if (L->cfg.d_latent) /* Nemotron-H fc1_latent_proj: the routed experts' input */
        moe__dense(L, &L->lat_in, NULL, L->expert_in_norm ? w.xn : x, L->d, n_tokens, w.xl, L->dl,
                   nth);
    if (L->cfg.weight_on_input) { /* Llama-4: FFN_e(w_e x) */
        size_t n = (size_t)w.off[L->E], dl = L->dl;
        const float *xe = moe__expert_in(L, x, &w);
        MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(n > 64))
        for (long i = 0; i < (long)n; i++) {
            const float *xr = xe + (size_t)w.toks[i] * dl;
            float s = w.wt[w.rows[i]], *o = w.xs + (size_t)i * dl;
            for (size_t c = 0; c < dl; c++) o[c] = s * xr[c];
        }
    }
    moe__phase1(L, x, &w, nth);
    if (L->cfg.shared_router) { /* Inkling: act(gate) * up * gamma, per shared expert */
        size_t S = L->S, ds = (size_t)L->cfg.d_shared, ldh = L->sh.ff_pad;
        MOE__PRAGMA(omp parallel for schedule(static) num_threads(nth) if(n_tokens > 64))
        for (long t = 0; t < (long)n_tokens; t++)
            for (size_t j = 0; j < S; j++) {
                float g = w.gam[(size_t)t * S + j], *hs = w.hs + (size_t)t * ldh + j * ds;
                for (size_t c = 0; c < ds; c++) hs[c] *= g;
            }
    }
    moe__phase2(L, &w, nth);
    moe__combine_all(L, x, n_tokens, y, &w, nth);
    if (trace) moe__trace(L, n_tokens, &w, trace);
    return MOE_OK;
}

#endif /* MOE_IMPLEMENTATION */

/*
   VERSION HISTORY
      0.1  (2026-11-23) first release: every routing rule of the open MoE families, gated and
           plain experts, shared experts, capacity, trace; scalar kernels on packed panels.
*/

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the moe.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication in the spirit of the public domain.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
