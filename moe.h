/* moe.h v0.2 - one Mixture-of-Experts FFN layer on the CPU, faithful to every open MoE family.
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
          moe_workspace ws = {0};
          ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = 0;
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
      0.3  formats q8 and q4 (int8 activations, integer dot products); the rules of the newer
           families (n_zero_experts, output_bias, out_norm, d_latent, router_in_norm,
           expert_in_norm, expert_scale, shared_router, logit_softcap, group_fill,
           scale_on_sum, shared_combine, shared_act_limit, MOE_SCORE_SQRT_SOFTPLUS, RELU2 and
           the clamped SwiGLUs); result codes -31..-36.
      0.2  packed formats bf16 and f16 (cfg.format, shared_format; exact and bf16-dot modes);
           stages moe_route_slots / moe_experts / moe_combine and moe_forward_routed; expert
           subsets (cfg.expert_begin, expert_count); host thread pools (cfg.parallel_for);
           stated tensor sizes (moe_tensor.n_elems, moe_layer_create_msg); moe_build_info.
           Structs grew: start moe_config, moe_weights and moe_workspace from {0}.
      0.1  first release: every routing rule, experts, shared experts, trace.
*/
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 3
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
    MOE_E_DOT = -26,            /* dot = MOE_DOT_BF16 but no expert set is packed as bf16 */
    MOE_E_SUBSET = -27,         /* expert_begin / expert_count reach outside 0..n_experts */
    MOE_E_EXPERT = -28,         /* a given expert id is not a choice, MOE_SLOT_NONE or _IDENTITY */
    MOE_E_SIZE = -29,           /* a tensor's stated n_elems is not what the config needs */
    MOE_E_OFFSETS = -30,        /* moe_experts offsets do not start at 0 and never decrease */
    MOE_E_THREADS = -31,        /* moe_workspace.n_threads is negative */
    MOE_E_NORM_P = -32,         /* norm_p is below 1 or above 126 / log2(n_experts) */
    MOE_E_NO_OUTPUT_BIAS = -33, /* cfg.output_bias is set but weights.output_bias is missing */
    MOE_E_NO_OUT_NORM = -34,    /* cfg.out_norm is RMS but weights.out_norm is missing */
    MOE_E_NO_LATENT = -35,      /* cfg.d_latent > 0 but weights.latent_in or latent_out is missing */
    MOE_E_NO_IN_NORM = -36      /* cfg.router_in_norm, expert_in_norm or expert_scale is set but its
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
    MOE_SCORE_SQRT_SOFTPLUS, /* p = sqrt(softplus(h)); select top-k of p (+ select_bias); w = p_e
                                (DeepSeek-V4 scoring_func "sqrtsoftplus") */
    MOE_SCORE_COUNT
} moe_score;

typedef enum moe_group_score {
    MOE_GROUP_MAX = 0,       /* group score = best key in the group (DeepSeek-V2) */
    MOE_GROUP_TOP2_SUM,      /* group score = sum of the two best keys (DeepSeek-V3, GLM-4.5) */
    MOE_GROUP_SCORE_COUNT
} moe_group_score;

typedef enum moe_group_fill {
    MOE_GROUP_FILL_NEG_INF = 0, /* the keys of dropped groups become -inf: never selected (vLLM,
                                   llama.cpp, HF DeepSeek-V3 since 2026-04) */
    MOE_GROUP_FILL_ZERO,      /* they become 0.0, and still beat a kept key below 0 (HF Mistral4,
                                 AXK2, DeepSeek-V2) */
    MOE_GROUP_FILL_COUNT
} moe_group_fill;

typedef enum moe_shared_combine {
    MOE_SHARED_SUM = 0,      /* y = routed + shared */
    MOE_SHARED_AVERAGE,      /* y = (routed + shared) / 2 (Cohere2-MoE "average") */
    MOE_SHARED_COMBINE_COUNT
} moe_shared_combine;

typedef enum moe_norm {
    MOE_NORM_NONE = 0,       /* weights as scored */
    MOE_NORM_SUM,            /* w /= (sum w + norm_eps)          Mixtral, Qwen3, DeepSeek-V3 (eps 1e-20) */
    MOE_NORM_SUM_CLAMP,      /* w /= max(sum w, norm_eps)        ERNIE-4.5 (eps 1e-12) */
    MOE_NORM_LP,             /* w /= (sum |w|^norm_p)^(1/norm_p) DBRX (p = moe_normalize_expert_weights) */
    MOE_NORM_COUNT
} moe_norm;

typedef enum moe_drop {
    MOE_DROP_ZERO = 0,       /* a slot over capacity adds nothing (HF Switch since transformers
                                PR #37123, 2025-04; Mesh TensorFlow) */
    MOE_DROP_IDENTITY,       /* it adds weight * x, as HF SwitchTransformersSparseMLP did before
                                that PR (dropped tokens kept their input, then were scaled by p) */
    MOE_DROP_COUNT
} moe_drop;

typedef enum moe_ffn {
    MOE_FFN_GATED = 0,       /* down( act(gate x + bg) * (up x + bu) ) + bd */
    MOE_FFN_PLAIN,           /* down( act(up x + bu) ) + bd        (Switch, NLLB) */
    MOE_FFN_COUNT
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
    MOE_ACT_SILU_CLAMP,      /* Step-3.7: min(silu(g), limit) * clamp(u, -limit, limit), the clamp
                                after the activation; gated */
    MOE_ACT_COUNT
} moe_act;

typedef enum moe_out_norm {
    MOE_OUT_NORM_NONE = 0,   /* the block output as combined */
    MOE_OUT_NORM_RMS,        /* y = w_c * (y_c / sqrt(mean_c y_c^2 + out_norm_eps)), weights.out_norm
                                (HF LlamaRMSNorm on routed + shared: A.X K1 post_mlp_layernorm) */
    MOE_OUT_NORM_COUNT
} moe_out_norm;

typedef enum moe_shared_gate {
    MOE_SHARED_GATE_NONE = 0, /* shared experts are added as they are */
    MOE_SHARED_GATE_SIGMOID,  /* scaled by sigmoid(g . x) per token (Qwen2-MoE shared_expert_gate) */
    MOE_SHARED_GATE_COUNT
} moe_shared_gate;

/* A host thread pool instead of OpenMP (moe_config.parallel_for): parallel_for(pool, n, task,
   ctx) must run task(ctx, i) once for every i in 0..n-1, on any threads in any order, and return
   when all are done. */
typedef void (*moe_task)(void *ctx, int i);

/* The format an expert set's weights are packed in. The router, the biases and every
   accumulation stay fp32 whatever the format. */
typedef enum moe_format {
    MOE_FORMAT_AUTO = 0,     /* as the sources: bf16 if they are all bf16, f16 if all f16, else f32
                                (bf16 when dot = MOE_DOT_BF16) */
    MOE_FORMAT_F32,          /* 4 bytes a weight */
    MOE_FORMAT_BF16,         /* 2 bytes; from f32 or f16 sources rounded to nearest even */
    MOE_FORMAT_F16,          /* 2 bytes; from f32 or bf16 sources rounded to nearest even */
    MOE_FORMAT_Q8,           /* int8, symmetric, an f16 scale per 32 inputs (GGUF Q8_0): 8.5 bits */
    MOE_FORMAT_Q4,           /* 4-bit u - 8, an f16 (or bf16) scale per 32 inputs (GGUF Q4_0,
                                compressed-tensors INT4 group 32): 4.5 bits; both q formats
                                compute on int8 activations (see "Integer formats") */
    MOE_FORMAT_FP8,          /* E4M3, 1 byte, and an fp32 scale per 32 inputs (FP8 block and
                                per-channel checkpoints): 9 bits; widened in registers */
    MOE_FORMAT_MXFP4,        /* OCP MXFP4: E2M1 codes and an E8M0 scale per 32 inputs (GPT-OSS,
                                DeepSeek-V4, GGUF MXFP4): 4.25 bits; widened in registers */
    MOE_FORMAT_COUNT
} moe_format;

/* How the dot products of a packed expert set are computed. */
typedef enum moe_dot {
    MOE_DOT_EXACT = 0,       /* weights widened to fp32 in registers, one fp32 FMA chain over K in
                                order: a bf16 or f16 layer gives the bits of an f32 layer packed
                                from the same stored values */
    MOE_DOT_BF16,            /* sets packed as bf16: activations rounded to bf16 once per token and
                                phase, vdpbf16ps arithmetic (see "bf16 dot" below) */
    MOE_DOT_COUNT
} moe_dot;

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
    float norm_p;            /* MOE_NORM_LP exponent; 0 = 1. Accepted: 1 <= p <= 126 / log2(E),
                                else MOE_E_NORM_P: the top-1 weight is >= 1/E under softmax
                                scores, so its p-th power stays a normal float and the norm is
                                never 0 (p = 1e30 made it 0 and the weights inf); below 1 it
                                is no norm */
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

    /* packed formats */
    moe_format format;       /* routed experts; MOE_FORMAT_AUTO (0) = as their sources */
    moe_format shared_format; /* shared experts, independently; 0 = as their sources */
    moe_dot dot;             /* MOE_DOT_EXACT (0) or MOE_DOT_BF16 for the sets packed as bf16 */

    /* the experts this layer holds: expert_begin .. expert_begin + expert_count - 1 (a hybrid
       engine's CPU share, one rank's slice); the router, routing and shared experts are whole */
    int expert_begin;        /* 0 */
    int expert_count;        /* 0 = all from expert_begin on */

    /* threads from the host: every parallel step of moe_layer_create and of the forward calls
       runs through parallel_for instead of OpenMP (results are the same bits either way) */
    void (*parallel_for)(void *pool, int n, moe_task task, void *ctx); /* NULL: OpenMP */
    void *pool;
    int pool_threads;        /* the pool's threads, for sizing tasks; 0 = 1 */

    /* the rules of the newer families (since 0.3); zero keeps the earlier behaviour */
    float logit_softcap;     /* > 0: the router logits become c tanh(h / c) before scoring (Laguna
                                moe_router_logit_softcapping); 0 = none */
    moe_group_fill group_fill; /* what the keys of dropped groups become */
    int scale_on_sum;        /* 1 = `scale` multiplies the routed sum after mixing and the weights
                                stay unscaled (Laguna, Step-3.7, MiniMax-M3); 0 = on the weights */
    moe_shared_combine shared_combine; /* how routed and shared outputs combine */
    float shared_act_limit;  /* the shared FFN's clamp limit; 0 = act_limit; +INFINITY = none */

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

/* Source element types. F32, BF16 and F16 are plain; the others are the block formats
   checkpoints ship, for expert matrices (routed or shared) in layout MOE_OUT_IN only: each of the
   matrix's rows (one output, K inputs) is a run of blocks along K, K a multiple of the block
   (32, or 256 for Q4_K; any K for F8_E4M3). Their values, exactly as the formats define them: */
typedef enum moe_dtype {
    MOE_F32 = 0,
    MOE_BF16,
    MOE_F16,
    MOE_F8_E4M3,   /* OCP E4M3 ("fn": no inf, 0x7f and 0xff NaN), one byte an element, times the
                      scale of its block_out x block_in tile in `scale` ([ceil(N/bo)][ceil(K/bi)],
                      scale_dtype F32, BF16, F16 or E8M0): DeepSeek-V3 weight_scale_inv (a
                      multiplier), compressed-tensors per-channel (block 1 x K) */
    MOE_MXFP4,     /* OCP MXFP4 as HF stores it (gpt-oss `_blocks`, DeepSeek-V4): E2M1 codes,
                      element 2j in the low nibble of byte j, 2j + 1 in the high one, times
                      2^(s - 127), s the E8M0 byte of its 32 inputs in `scale` ([N][K/32]) */
    MOE_MXFP4_GGUF,/* GGUF block_mxfp4 {u8 e; u8 qs[16]} per 32: element j in the low nibble of
                      qs[j], j + 16 in the high one; E2M1 times 2^(e - 127) */
    MOE_Q8_0,      /* GGUF block_q8_0 {f16 d; int8 q[32]} per 32: d q */
    MOE_Q4_0,      /* GGUF block_q4_0 {f16 d; u8 qs[16]} per 32: element j in the low nibble of
                      qs[j], j + 16 in the high one; d (u - 8) */
    MOE_Q4_K,      /* GGUF block_q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]} per 256: sub-block
                      j of 32 has a 6-bit scale sc and min m (get_scale_min_k4), value
                      d sc u - dmin m in fp32 as ggml computes it (ggml-quants.c) */
    MOE_INT4,      /* compressed-tensors pack-quantized int4, symmetric: int32 words of 8
                      nibbles, element 8c + i = (word c >> 4i) & 15, minus 8, times the scale of
                      its group of 32 in `scale` ([N][K/32], F32, BF16 or F16) */
    MOE_E8M0,      /* scales only: 2^(x - 127) (x = 0: 2^-127; 255: NaN) */
    MOE_DTYPE_COUNT
} moe_dtype;

/* How one expert's matrix is stored. For a map from `in` to `out` features: */
typedef enum moe_layout {
    MOE_OUT_IN = 0,          /* [out][in], as torch nn.Linear.weight (Mixtral w1, Qwen gate_proj) */
    MOE_IN_OUT,              /* [in][out], as GPT-OSS gate_up_proj / down_proj, Llama-4, DBRX w2 */
    MOE_LAYOUT_COUNT
} moe_layout;

/* How a fused gate+up tensor (2 * d_ff outputs) splits into its two halves. */
typedef enum moe_gate_up_split {
    MOE_SPLIT_HALVES = 0,    /* outputs [0, d_ff) are gate, [d_ff, 2 d_ff) are up (Llama-4, Granite) */
    MOE_SPLIT_INTERLEAVED,   /* even outputs are gate, odd are up (GPT-OSS) */
    MOE_SPLIT_COUNT
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
    size_t n_elems;          /* 0 = not stated; else the elements of `data` (every expert) or of
                                each per_expert buffer, checked against the config (MOE_E_SIZE) */
    /* block formats with separate scales (MOE_F8_E4M3, MOE_MXFP4, MOE_INT4): the scales, as
       the weights are given (every expert's back to back with `data`, one pointer an expert
       with `per_expert`), their dtype, and for F8_E4M3 the tile (0, 0 = 128 x 128) */
    const void *scale;
    const void *const *scale_per_expert;
    moe_dtype scale_dtype;
    int block_out, block_in;
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
   release its pages (e.g. madvise) before the next one is read: (user, pointer, bytes), once per
   (tensor, expert) buffer: a per_expert pointer, or an expert's slice of a fused `data`. Under
   OpenMP the calls come one at a time, from whichever thread packed that expert; with the
   host's cfg.parallel_for they may come from several of its threads at once. */
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

/* Validates cfg and w, packs every weight once into the layer's own layout (cfg.format; the
   sources are not referenced afterwards) and returns it in *out (NULL on error). The layer is
   read-only afterwards: any number of threads may run moe_forward on it at once, each with its
   own workspace. A layer with an expert subset reads (and reports through on_packed) only its
   experts' buffers; the views still index experts globally ([E][...] data, E pointers). */
MOEDEF moe_result moe_layer_create(moe_layer **out, const moe_config *cfg, const moe_weights *w);
/* The same, and on error a sentence in msg[0..msg_size) that names the tensor at fault where
   there is one ("weights.gate: 1024 elements stated, 4096 needed (4 experts x 32 x 32)"). */
MOEDEF moe_result moe_layer_create_msg(moe_layer **out, const moe_config *cfg,
                                       const moe_weights *w, char *msg, size_t msg_size);
MOEDEF void moe_layer_free(moe_layer *layer); /* NULL is fine */
MOEDEF const moe_config *moe_layer_config(const moe_layer *layer); /* with defaults filled in */
MOEDEF size_t moe_layer_packed_bytes(const moe_layer *layer);

/* Where a layer's packed bytes go, by expert set and format. */
typedef struct moe_packed_sizes {
    size_t router;           /* the router (fp32) and its bias */
    size_t expert;           /* one routed expert: gate/up and down as packed, biases included */
    size_t experts;          /* every routed expert the layer holds */
    size_t shared;           /* the shared experts */
    size_t total;            /* moe_layer_packed_bytes */
    moe_format format, shared_format;
    double bits_per_weight;  /* routed: packed bits (padding and scales included) per weight */
    double shared_bits_per_weight;
} moe_packed_sizes;
MOEDEF moe_result moe_layer_sizes(const moe_layer *layer, moe_packed_sizes *out);

/* ---- workspace and trace ------------------------------------------------------------------ */

/* Caller memory for one call. A workspace sized for n tokens serves any call with <= n tokens.
   Alignment: any; the library aligns inside. Not shared between concurrent calls. */
typedef struct moe_workspace {
    void *data;
    size_t size;
    int n_threads;           /* OpenMP threads for this call; 0 = all (omp_get_max_threads);
                                negative: MOE_E_THREADS. More than max(omp_get_max_threads,
                                omp_get_num_procs) (at most omp_get_thread_limit) is capped
                                there: it only changes timing, never the output. With
                                cfg.parallel_for, the tasks are sized for cfg.pool_threads */
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
   overlap. n_tokens = 0 is valid and does nothing: x, y and ws may then be NULL (or ws->data
   NULL); the trace scalars and counts become 0.
   Non-finite input: a token whose x row holds a NaN or an infinity is computed by the same
   rules, with no check and no error. Its logits are NaN or infinite; NaN keys rank after every
   number, -inf included, then by lower index, so it still gets k distinct valid experts (with
   a NaN in x every logit is NaN: experts 0..k-1; under group-limited top-k its group scores
   are all -inf, groups 0..topk_group-1 are kept with NaN keys and lose to the -inf keys of the
   other groups, whose experts come first). Its y row and weights are whatever fp32 gives them
   (NaN, in general). Every other token's y, route and logits are bit-identical to a call
   without it, except under capacity, where it takes its slots like any token; mean_prob,
   aux_loss and z_loss, means over the tokens, become NaN. */
MOEDEF moe_result moe_forward(const moe_layer *layer, const float *x, size_t n_tokens, float *y,
                              const moe_workspace *ws, moe_trace *trace);

/* Routing only (router, gating, capacity, trace); no expert is run. Arguments and non-finite
   input as for moe_forward. */
MOEDEF moe_result moe_route(const moe_layer *layer, const float *x, size_t n_tokens,
                            const moe_workspace *ws, moe_trace *trace);

/* ---- stages: moe_forward = moe_route_slots + moe_experts + moe_combine ---------------------- */
/* The three stages give moe_forward's bits exactly, whatever the rows are grouped with: an
   engine can run them around its own transport (expert parallelism over MPI, a GPU that runs
   other experts) or routing (replay, hash layers). A slot is what the combine adds for one
   (token, j < top_k): an expert id (0..n_experts-1, global), or one of these: */
#define MOE_SLOT_NONE (-1)     /* nothing (a slot dropped by capacity with MOE_DROP_ZERO) */
#define MOE_SLOT_IDENTITY (-2) /* weight * x (dropped with MOE_DROP_IDENTITY; identity experts) */

/* Stage 1: routes n_tokens tokens into slots, expert[T][k] and weight[T][k], as moe_forward
   combines them (weight_on_input layers: the weight scales the expert's input). Workspace:
   moe_workspace_size. */
MOEDEF moe_result moe_route_slots(const moe_layer *layer, const float *x, size_t n_tokens,
                                  int32_t *expert, float *weight, const moe_workspace *ws,
                                  moe_trace *trace);

/* Stage 2: runs the experts the layer holds on rows grouped by expert: rows[i] (d_model floats)
   for offsets[j] <= i < offsets[j + 1] go to expert expert_begin + j (j < expert_count; n =
   offsets[expert_count] rows). out[i] is that expert's FFN of rows[i], unweighted; for a
   weight_on_input layer, of row_weight[i] * rows[i] (row_weight is ignored otherwise and may
   be NULL). No shared experts here. rows are [n][d_model] (x, before the layer's expert input
   norm and latent_in, which run here), out [n][D], D = d_latent or d_model (the experts'
   output before latent_out); they must not overlap. */
MOEDEF moe_result moe_experts(const moe_layer *layer, const float *rows, const int32_t *offsets,
                              const float *row_weight, float *out, const moe_workspace *ws);
MOEDEF moe_result moe_experts_workspace_size(const moe_layer *layer, size_t n_rows, size_t *bytes);

/* Stage 3: y[t] = sum over j < top_k, in slot order, of weight[t][j] * z[t k + j] (an expert
   slot, whichever process computed it), weight[t][j] * x[t] (MOE_SLOT_IDENTITY) or nothing
   (MOE_SLOT_NONE), plus the shared experts of x[t], computed here, and the layer's latent_out,
   output bias and norm. z is [T k][D] as moe_experts writes it (rows of non-expert slots are
   not read; z may be NULL when there are none). A zero-computation expert's id (n_experts ..
   n_experts + n_zero_experts - 1) counts as MOE_SLOT_IDENTITY, and moe_route_slots reports it
   so. With cfg.shared_router the shared experts' weights come from the layer's own router, here
   and in moe_forward_routed. Workspace:
   moe_workspace_size. */
MOEDEF moe_result moe_combine(const moe_layer *layer, const float *x, size_t n_tokens,
                              const int32_t *expert, const float *weight, const float *z,
                              float *y, const moe_workspace *ws);

/* moe_forward with the routing given: slots expert[T][k] (ids or MOE_SLOT_*) and weights[T][k]
   from the caller (a GPU router, routing replay, token-id hash layers). Expert slots the layer
   does not hold (an expert subset) add nothing; the shared experts are added. */
MOEDEF moe_result moe_forward_routed(const moe_layer *layer, const float *x, size_t n_tokens,
                                     const int32_t *expert, const float *weight, float *y,
                                     const moe_workspace *ws);

/* ---- build --------------------------------------------------------------------------------- */

typedef struct moe_build {
    int version_major, version_minor, version_patch;
    const char *isa;         /* the kernels built: "avx512", "avx2", "neon" or "scalar" */
    int panel_width;         /* outputs per packed panel (NR) */
    int openmp;              /* 1: built with OpenMP */
    int bf16_dot_hw;         /* 1: built with AVX512_BF16 (used where it agrees, see MOE_DOT_BF16) */
    const char *formats;     /* the packed formats, space-separated */
    const char *text;        /* all of it on one line */
} moe_build;

/* What this translation unit of moe.h was compiled into; a static constant. */
MOEDEF const moe_build *moe_build_info(void);

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
#include <stdarg.h>
#include <stdio.h> /* vsnprintf, for moe_layer_create_msg */
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

#if !defined(MOE_NO_SIMD) && defined(__AVX512F__) && defined(__AVX512BW__)
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
#if !MOE__SIMD
#define MOE__Q8_XOR 0 /* how the packed q8 bytes hold w (see the vector layer) */
#endif
#if MOE__AVX512 && defined(__AVX512BF16__)
#define MOE__DPBF16 1 /* the hardware bf16 dot product (AVX512_BF16) */
#else
#define MOE__DPBF16 0
#endif

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
#define MOE__NOINLINE __attribute__((noinline))
#define MOE__PREFETCH(p) __builtin_prefetch(p)
#define MOE__PREFETCH_L2(p) __builtin_prefetch(p, 0, 2) /* into L2, not L1 */
#else
#define MOE__INLINE inline
#define MOE__NOINLINE
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
/* weight formats: VW bf16 or f16 values widened to fp32 (both exact) */
static MOE__INLINE moe__v moe__vld_bf16(const void *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(MOE__ALL, _mm512_maskz_cvtepu16_epi32(MOE__ALL, h), 16));
}
static MOE__INLINE moe__v moe__vld_f16(const void *p) {
    return _mm512_maskz_cvtph_ps(MOE__ALL, _mm256_loadu_si256((const __m256i *)p));
}
/* bf16 pairs in 32-bit lanes: the high half (bits & 0xffff0000) and the low half (bits << 16) as
   fp32; a 32-bit pattern in every lane; denormal results to a zero of their sign */
static MOE__INLINE moe__v moe__vhi16(moe__v a) {
    return _mm512_castsi512_ps(
        _mm512_maskz_and_epi32(MOE__ALL, _mm512_castps_si512(a), _mm512_set1_epi32((int)0xffff0000u)));
}
static MOE__INLINE moe__v moe__vlo16(moe__v a) {
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(MOE__ALL, _mm512_castps_si512(a), 16));
}
static MOE__INLINE moe__v moe__vbits(uint32_t u) { return _mm512_castsi512_ps(_mm512_set1_epi32((int)u)); }
static MOE__INLINE moe__v moe__vftz(moe__v a) {
    __mmask16 tiny = _mm512_cmp_ps_mask(_mm512_abs_ps(a), _mm512_set1_ps(FLT_MIN), _CMP_LT_OQ);
    __m512i ai = _mm512_castps_si512(a);
    return _mm512_castsi512_ps(_mm512_mask_and_epi32(ai, tiny, ai, _mm512_set1_epi32((int)0x80000000u)));
}
/* scaled float formats (see MOE__KFP8): VW E4M3 codes as fp32 times 2^-120 (the code's bits
   under the fp32 sign, exponent and mantissa: exact, subnormal codes through the fp32
   denormals; NaN codes come out as 480 2^-120 times their sign, the packer makes their
   group's scale NaN); VW E2M1 codes (the low or high nibbles of VW bytes) doubled, as
   integers (ggml's kvalues_mxfp4), through a 16-entry table; VW E8M0 scales halved,
   2^(x - 128) */
static MOE__INLINE moe__v moe__vld_e4m3s(const void *p) {
    __m512i u = _mm512_maskz_cvtepi8_epi32(MOE__ALL, _mm_loadu_si128((const __m128i *)p));
    return _mm512_castsi512_ps(_mm512_maskz_and_epi32(MOE__ALL, _mm512_maskz_slli_epi32(MOE__ALL, u, 20),
                                                      _mm512_set1_epi32((int)0x87f00000u)));
}
static MOE__INLINE moe__v moe__vld_e2m1x2(const void *p, int hi) {
    /* the table as 16 floats: VPERMPS reads the low 4 bits of each lane's index, so the low
       nibble needs no mask and the high one one shift (the pair of calls on the same bytes
       shares the load) */
    const __m512 lut = _mm512_setr_ps(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    __m512i u = _mm512_maskz_cvtepu8_epi32(MOE__ALL, _mm_loadu_si128((const __m128i *)p));
    if (hi) u = _mm512_maskz_srli_epi32(MOE__ALL, u, 4);
    return _mm512_maskz_permutexvar_ps(MOE__ALL, u, lut);
}
static MOE__INLINE moe__v moe__vld_e8m0h(const void *p) {
    __m512i u = _mm512_maskz_cvtepu8_epi32(MOE__ALL, _mm_loadu_si128((const __m128i *)p));
    __m512i b = _mm512_maskz_slli_epi32(MOE__ALL, _mm512_sub_epi32(u, _mm512_set1_epi32(1)), 23);
    b = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(u, _mm512_set1_epi32(1)), b, _mm512_set1_epi32(0x00400000));
    b = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(u, _mm512_setzero_si512()), b, _mm512_set1_epi32(0x00200000));
    b = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(u, _mm512_set1_epi32(255)), b, _mm512_set1_epi32(0x7fc00000));
    return _mm512_castsi512_ps(b);
}
/* integer lanes for the int8 dot products (MOE__KQ8, MOE__KQ4): VW int32 lanes of 4 bytes */
typedef __m512i moe__vi;
#define MOE__Q8_XOR 0x80 /* q8 weights stored as u8 = w + 128, the unsigned operand of VPDPBUSD */
#define MOE__Q8_COMP (-128) /* so a group's sum starts at -128 sum(x) */
#define MOE__Q4_COMP (-8)   /* q4 nibbles are u = w + 8: -8 sum(x) */
static MOE__INLINE moe__vi moe__viload(const void *p) { return _mm512_loadu_si512(p); }
static MOE__INLINE moe__vi moe__viset(int32_t x) { return _mm512_set1_epi32(x); }
static MOE__INLINE moe__v moe__vicvt(moe__vi a) { return _mm512_maskz_cvtepi32_ps(MOE__ALL, a); }
static MOE__INLINE moe__vi moe__vnib_lo(moe__vi a) {
    return _mm512_maskz_and_epi32(MOE__ALL, a, _mm512_set1_epi8(0x0f));
}
static MOE__INLINE moe__vi moe__vnib_hi(moe__vi a) {
    return _mm512_maskz_and_epi32(MOE__ALL, _mm512_maskz_srli_epi32(MOE__ALL, a, 4),
                                  _mm512_set1_epi8(0x0f));
}
/* acc + sum over each lane's 4 bytes of a (u8) * b (s8), exactly */
static MOE__INLINE moe__vi moe__vdot_us(moe__vi acc, moe__vi a, moe__vi b) {
#if defined(__AVX512VNNI__)
    return _mm512_dpbusd_epi32(acc, a, b);
#else /* AVX512BW: even and odd bytes widened to 16 bits, multiplied and paired (exact) */
    __m512i m = _mm512_set1_epi16(0x00ff);
    __m512i ae = _mm512_maskz_and_epi32(MOE__ALL, a, m), ao = _mm512_srli_epi16(a, 8);
    __m512i be = _mm512_srai_epi16(_mm512_slli_epi16(b, 8), 8), bo = _mm512_srai_epi16(b, 8);
    return _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(ae, be), _mm512_madd_epi16(ao, bo)));
#endif
}
static MOE__INLINE moe__vi moe__vq8_prep(moe__vi w) { return w; }
static MOE__INLINE moe__vi moe__vdot_q8(moe__vi acc, moe__vi wp, moe__vi w, moe__vi x) {
    (void)w;
    return moe__vdot_us(acc, wp, x);
}
static MOE__INLINE moe__vi moe__vdot_q4(moe__vi acc, moe__vi u, moe__vi x) {
    return moe__vdot_us(acc, u, x);
}
#if MOE__DPBF16
static MOE__INLINE moe__v moe__vdpbf16(moe__v acc, moe__v x, moe__v w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(x), (__m512bh)_mm512_castps_si512(w));
}
#endif
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
static MOE__INLINE moe__v moe__vld_bf16(const void *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static MOE__INLINE moe__v moe__vld_f16(const void *p) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#else /* without F16C: the bits moved into place, then scaled by 2^112 (exact, subnormals too) */
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    __m256i em = _mm256_and_si256(h, _mm256_set1_epi32(0x7fff));
    __m256i sign = _mm256_slli_epi32(_mm256_xor_si256(h, em), 16);
    __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(em, 13)),
                             _mm256_set1_ps(5.192296858534828e33f));
    __m256i special = _mm256_or_si256(_mm256_set1_epi32(0x7f800000), /* inf, NaN (quieted) */
                                      _mm256_and_si256(_mm256_slli_epi32(em, 13),
                                                       _mm256_set1_epi32(0x007fffff)));
    special = _mm256_or_si256(special, _mm256_and_si256(_mm256_cmpgt_epi32(em, _mm256_set1_epi32(0x7c00)),
                                                        _mm256_set1_epi32(0x00400000)));
    __m256i big = _mm256_cmpgt_epi32(em, _mm256_set1_epi32(0x7bff));
    __m256i bits = _mm256_blendv_epi8(_mm256_castps_si256(v), special, big);
    return _mm256_castsi256_ps(_mm256_or_si256(bits, sign));
#endif
}
static MOE__INLINE moe__v moe__vhi16(moe__v a) {
    return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32((int)0xffff0000u)));
}
static MOE__INLINE moe__v moe__vlo16(moe__v a) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a), 16));
}
static MOE__INLINE moe__v moe__vbits(uint32_t u) { return _mm256_castsi256_ps(_mm256_set1_epi32((int)u)); }
static MOE__INLINE moe__v moe__vftz(moe__v a) {
    __m256 tiny = _mm256_cmp_ps(moe__vabs(a), _mm256_set1_ps(FLT_MIN), _CMP_LT_OQ);
    return _mm256_blendv_ps(a, _mm256_and_ps(a, _mm256_set1_ps(-0.0f)), tiny);
}
static MOE__INLINE moe__v moe__vld_e4m3s(const void *p) {
    __m256i u = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(u, 20), _mm256_set1_epi32((int)0x87f00000u)));
}
static MOE__INLINE moe__v moe__vld_e2m1x2(const void *p, int hi) {
    const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    if (hi) b = _mm_srli_epi16(b, 4);
    b = _mm_shuffle_epi8(lut, _mm_and_si128(b, _mm_set1_epi8(0x0f)));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}
static MOE__INLINE moe__v moe__vld_e8m0h(const void *p) {
    __m256i u = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    __m256i b = _mm256_slli_epi32(_mm256_sub_epi32(u, _mm256_set1_epi32(1)), 23);
    b = _mm256_blendv_epi8(b, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(u, _mm256_set1_epi32(1)));
    b = _mm256_blendv_epi8(b, _mm256_set1_epi32(0x00200000), _mm256_cmpeq_epi32(u, _mm256_setzero_si256()));
    b = _mm256_blendv_epi8(b, _mm256_set1_epi32(0x7fc00000), _mm256_cmpeq_epi32(u, _mm256_set1_epi32(255)));
    return _mm256_castsi256_ps(b);
}
typedef __m256i moe__vi;
#define MOE__Q8_XOR 0       /* q8 weights as s8: the sign trick below needs them signed */
#define MOE__Q8_COMP 0
#define MOE__Q4_COMP (-8)
static MOE__INLINE moe__vi moe__viload(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static MOE__INLINE moe__vi moe__viset(int32_t x) { return _mm256_set1_epi32(x); }
static MOE__INLINE moe__v moe__vicvt(moe__vi a) { return _mm256_cvtepi32_ps(a); }
static MOE__INLINE moe__vi moe__vnib_lo(moe__vi a) { return _mm256_and_si256(a, _mm256_set1_epi8(0x0f)); }
static MOE__INLINE moe__vi moe__vnib_hi(moe__vi a) {
    return _mm256_and_si256(_mm256_srli_epi32(a, 4), _mm256_set1_epi8(0x0f));
}
/* q8: |w| (u8) times x with w's sign (s8): pairs of products stay within 16 bits (|w| <= 128,
   |x| <= 127), so VPMADDUBSW never saturates, and the sum is exact */
static MOE__INLINE moe__vi moe__vq8_prep(moe__vi w) { return _mm256_abs_epi8(w); }
static MOE__INLINE moe__vi moe__vdot_q8(moe__vi acc, moe__vi wp, moe__vi w, moe__vi x) {
    __m256i p = _mm256_maddubs_epi16(wp, _mm256_sign_epi8(x, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
/* q4: nibbles u <= 15 times x: pairs within 16 bits */
static MOE__INLINE moe__vi moe__vdot_q4(moe__vi acc, moe__vi u, moe__vi x) {
    __m256i p = _mm256_maddubs_epi16(u, x);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
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
static MOE__INLINE moe__v moe__vld_bf16(const void *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)p), 16));
}
static MOE__INLINE moe__v moe__vld_f16(const void *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p)));
}
static MOE__INLINE moe__v moe__vhi16(moe__v a) {
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0xffff0000u)));
}
static MOE__INLINE moe__v moe__vlo16(moe__v a) {
    return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(a), 16));
}
static MOE__INLINE moe__v moe__vbits(uint32_t u) { return vreinterpretq_f32_u32(vdupq_n_u32(u)); }
static MOE__INLINE moe__v moe__vftz(moe__v a) {
    uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0x80000000u));
    return vbslq_f32(vcltq_f32(vabsq_f32(a), vdupq_n_f32(FLT_MIN)), vreinterpretq_f32_u32(sign), a);
}
static MOE__INLINE uint8x8_t moe__vb4(const void *p) { /* 4 bytes, in the low half */
    uint32_t w;
    memcpy(&w, p, 4);
    return vreinterpret_u8_u32(vdup_n_u32(w));
}
static MOE__INLINE moe__v moe__vld_e4m3s(const void *p) {
    int32x4_t u = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u8(moe__vb4(p)))));
    return vreinterpretq_f32_s32(vandq_s32(vshlq_n_s32(u, 20), vdupq_n_s32((int)0x87f00000u)));
}
static MOE__INLINE moe__v moe__vld_e2m1x2(const void *p, int hi) {
    static const int8_t lut[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    uint8x8_t b = moe__vb4(p);
    b = vand_u8(hi ? vshr_n_u8(b, 4) : b, vdup_n_u8(0x0f));
    int8x8_t v = vqtbl1_s8(vld1q_s8(lut), b);
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(v))));
}
static MOE__INLINE moe__v moe__vld_e8m0h(const void *p) {
    uint32x4_t u = vmovl_u16(vget_low_u16(vmovl_u8(moe__vb4(p))));
    uint32x4_t b = vshlq_n_u32(vsubq_u32(u, vdupq_n_u32(1)), 23);
    b = vbslq_u32(vceqq_u32(u, vdupq_n_u32(1)), vdupq_n_u32(0x00400000), b);
    b = vbslq_u32(vceqq_u32(u, vdupq_n_u32(0)), vdupq_n_u32(0x00200000), b);
    b = vbslq_u32(vceqq_u32(u, vdupq_n_u32(255)), vdupq_n_u32(0x7fc00000), b);
    return vreinterpretq_f32_u32(b);
}
typedef int32x4_t moe__vi;
#define MOE__Q8_XOR 0
#define MOE__Q8_COMP 0
#define MOE__Q4_COMP 0 /* the nibbles become w = u - 8 before the signed dot */
static MOE__INLINE moe__vi moe__viload(const void *p) { return vreinterpretq_s32_u8(vld1q_u8((const uint8_t *)p)); }
static MOE__INLINE moe__vi moe__viset(int32_t x) { return vdupq_n_s32(x); }
static MOE__INLINE moe__v moe__vicvt(moe__vi a) { return vcvtq_f32_s32(a); }
static MOE__INLINE moe__vi moe__vnib_lo(moe__vi a) {
    return vreinterpretq_s32_s8(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vreinterpretq_u8_s32(a), vdupq_n_u8(0x0f))), vdupq_n_s8(8)));
}
static MOE__INLINE moe__vi moe__vnib_hi(moe__vi a) {
    return vreinterpretq_s32_s8(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(vreinterpretq_u8_s32(a), 4)), vdupq_n_s8(8)));
}
/* acc + sum over each lane's 4 bytes of a * b (both s8), exactly */
static MOE__INLINE moe__vi moe__vdot_ss(moe__vi acc, moe__vi a, moe__vi b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, vreinterpretq_s8_s32(a), vreinterpretq_s8_s32(b));
#else /* products in 16 bits, paired, then the pairs of each lane */
    int8x16_t x = vreinterpretq_s8_s32(a), y = vreinterpretq_s8_s32(b);
    int16x8_t lo = vmull_s8(vget_low_s8(x), vget_low_s8(y)), hi = vmull_high_s8(x, y);
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
}
static MOE__INLINE moe__vi moe__vq8_prep(moe__vi w) { return w; }
static MOE__INLINE moe__vi moe__vdot_q8(moe__vi acc, moe__vi wp, moe__vi w, moe__vi x) {
    (void)w;
    return moe__vdot_ss(acc, wp, x);
}
static MOE__INLINE moe__vi moe__vdot_q4(moe__vi acc, moe__vi u, moe__vi x) {
    return moe__vdot_ss(acc, u, x);
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
    if (exp == 0x1f) { /* inf; NaN quieted, as the conversion instructions do */
        u = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u);
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

/* fp32 to bf16 and f16, rounded to nearest, ties to even (overflow to inf, f16 subnormals
   rounded too); a NaN stays a NaN (quieted). */
static uint16_t moe__f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static uint16_t moe__f32_to_f16(float f) {
    uint32_t u, a, sign;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a >= 0x38800000u) {                                    /* normal: |f| >= 2^-14 */
        a -= 112u << 23;                                       /* exponent bias 127 -> 15 */
        a += 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | (a >> 13));
    }
    /* subnormal (or zero): a whole number of 2^-24, rounded to nearest even; 1024 is 2^-14 */
    return (uint16_t)(sign | (uint32_t)nearbyintf(fabsf(f) * 16777216.0f));
}

/* The flushing of the bf16 dot product (see MOE__KBF16DOT): a denormal becomes a zero of its
   sign. */
static float moe__ftz(float f) { return fabsf(f) < FLT_MIN ? copysignf(0.0f, f) : f; }
static uint16_t moe__bf16_daz(uint16_t h) { return (h & 0x7f80u) ? h : (uint16_t)(h & 0x8000u); }

/* Element i of a source buffer, as fp32. Through memcpy: checkpoint tensors (safetensors) need
   not be aligned to their element size. */
/* The scalar codes of the block formats, exactly (OCP Microscaling Formats v1.0: E4M3, E2M1,
   E8M0). */
static float moe__e4m3(unsigned c) {
    unsigned e = (c >> 3) & 15, m = c & 7;
    float v = e ? ldexpf((float)(8 + m), (int)e - 10) : ldexpf((float)m, -9);
    if (e == 15 && m == 7) v = NAN;
    return (c & 0x80) ? -v : v;
}
static float moe__e2m1(unsigned c) {
    unsigned e = (c >> 1) & 3, m = c & 1;
    float v = e ? ldexpf((float)(2 + m), (int)e - 2) : 0.5f * (float)m;
    return (c & 8) ? -v : v;
}
static float moe__e8m0(unsigned x) { return x == 255 ? NAN : ldexpf(1.0f, (int)x - 127); }

/* Element i of a source buffer of a plain dtype (or E8M0 scales), as fp32. Through memcpy:
   checkpoint tensors (safetensors) need not be aligned to their element size. */
static float moe__load(const void *src, moe_dtype dt, size_t i) {
    const unsigned char *b = MOE__CAST(const unsigned char *, src);
    uint16_t h;
    float f;
    if (dt == MOE_F32) {
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    if (dt == MOE_E8M0) return moe__e8m0(b[i]);
    memcpy(&h, b + 2 * i, 2);
    return dt == MOE_BF16 ? moe__bf16_to_f32(h) : moe__f16_to_f32(h);
}
static size_t moe__dtype_size(moe_dtype dt) {
    return dt == MOE_F32 ? 4 : dt == MOE_E8M0 ? 1 : 2;
}
static int moe__dtype_block(moe_dtype dt) { return dt > MOE_F16 && dt < MOE_E8M0; }
/* The elements of a block along K (1 for the plain dtypes and E4M3) */
static size_t moe__dtype_group(moe_dtype dt) {
    return dt == MOE_Q4_K ? 256 : dt == MOE_F8_E4M3 || !moe__dtype_block(dt) ? 1 : 32;
}
/* Bytes of n elements (n a multiple of the block). */
static size_t moe__dtype_bytes(moe_dtype dt, size_t n) {
    switch (dt) {
    case MOE_F8_E4M3: return n;
    case MOE_MXFP4: case MOE_INT4: return n / 2;
    case MOE_MXFP4_GGUF: return n / 32 * 17;
    case MOE_Q8_0: return n / 32 * 34;
    case MOE_Q4_0: return n / 32 * 18;
    case MOE_Q4_K: return n / 256 * 144;
    default: return n * moe__dtype_size(dt);
    }
}
static int moe__present(const moe_tensor *t) { return t->data != NULL || t->per_expert != NULL; }

/* Expert e's buffer of a tensor whose experts hold `n` elements each. */
static const void *moe__expert_src(const moe_tensor *t, size_t e, size_t n) {
    if (t->per_expert) return t->per_expert[e];
    return MOE__CAST(const char *, t->data) + e * moe__dtype_bytes(t->dtype, n);
}

/* One expert's matrix as its source stores it: rows of K elements, and the scales of a block
   dtype that has them. */
typedef struct moe__src {
    const unsigned char *p, *s;
    moe_dtype dt, sdt;
    size_t K, bo, bi, sld; /* row length; E4M3 tile; scales per row of tiles (or of groups) */
} moe__src;

/* Scales of one expert of a tensor of `rows` x K: E4M3 tiles, or one per 32 inputs. */
static size_t moe__scale_count(const moe_tensor *t, size_t rows, size_t K) {
    if (t->dtype == MOE_F8_E4M3) {
        size_t bo = t->block_out > 0 ? (size_t)t->block_out : 128;
        size_t bi = t->block_in > 0 ? (size_t)t->block_in : 128;
        return ((rows + bo - 1) / bo) * ((K + bi - 1) / bi);
    }
    return t->dtype == MOE_MXFP4 || t->dtype == MOE_INT4 ? rows * (K / 32) : 0;
}

static moe__src moe__src_of(const moe_tensor *t, size_t e, size_t rows, size_t K) {
    moe__src S;
    memset(&S, 0, sizeof S);
    S.p = MOE__CAST(const unsigned char *, moe__expert_src(t, e, rows * K));
    S.dt = t->dtype, S.sdt = t->scale_dtype, S.K = K;
    S.bo = t->block_out > 0 ? (size_t)t->block_out : 128;
    S.bi = t->block_in > 0 ? (size_t)t->block_in : 128;
    S.sld = t->dtype == MOE_F8_E4M3 ? (K + S.bi - 1) / S.bi : K / 32;
    if (moe__scale_count(t, rows, K)) {
        if (t->scale_per_expert) S.s = MOE__CAST(const unsigned char *, t->scale_per_expert[e]);
        else S.s = MOE__CAST(const unsigned char *, t->scale) +
                   e * moe__scale_count(t, rows, K) * moe__dtype_size(t->scale_dtype);
    }
    return S;
}

/* GGUF Q4_K element j < 256 of block b, as ggml's dequantize_row_q4_K computes it: (d sc) u,
   minus dmin m, two fp32 roundings (kept apart so no compiler fuses them). */
static float moe__q4k(const unsigned char *b, size_t j) {
    const unsigned char *sc = b + 4, *q = b + 16;
    size_t sub = j / 32, l = j % 32;
    unsigned scl, mn, u = (sub & 1) ? q[sub / 2 * 32 + l] >> 4 : q[sub / 2 * 32 + l] & 15;
    uint16_t h;
    float d, dmin;
    memcpy(&h, b, 2), d = moe__f16_to_f32(h);
    memcpy(&h, b + 2, 2), dmin = moe__f16_to_f32(h);
    if (sub < 4) scl = sc[sub] & 63, mn = sc[sub + 4] & 63;
    else scl = (sc[sub + 4] & 15) | ((sc[sub - 4] >> 6) << 4), mn = (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4);
    float d1 = d * (float)scl, m1 = dmin * (float)mn;
    float p = d1 * (float)u;
    return p - m1;
}

/* Element i (row i / K, input i % K) of a source matrix, as fp32: its format's value. */
static float moe__load_s(const moe__src *S, size_t i) {
    size_t r = i / S->K, k = i % S->K;
    const unsigned char *b;
    uint16_t h;
    uint32_t wd;
    switch (S->dt) {
    case MOE_F8_E4M3: /* e4m3 * the tile's scale, one fp32 rounding (DeepSeek-V3 weight_dequant) */
        return moe__e4m3(S->p[i]) * moe__load(S->s, S->sdt, (r / S->bo) * S->sld + k / S->bi);
    case MOE_MXFP4:
        return moe__e2m1((i & 1) ? S->p[i / 2] >> 4 : S->p[i / 2] & 15) *
               moe__load(S->s, S->sdt, r * S->sld + k / 32);
    case MOE_MXFP4_GGUF:
        b = S->p + i / 32 * 17;
        return moe__e2m1(i % 32 < 16 ? b[1 + i % 32] & 15 : b[1 + i % 32 - 16] >> 4) * moe__e8m0(b[0]);
    case MOE_Q8_0:
        b = S->p + i / 32 * 34;
        memcpy(&h, b, 2);
        return moe__f16_to_f32(h) * (float)(signed char)b[2 + i % 32];
    case MOE_Q4_0:
        b = S->p + i / 32 * 18;
        memcpy(&h, b, 2);
        return moe__f16_to_f32(h) *
               (float)((int)(i % 32 < 16 ? b[2 + i % 32] & 15 : b[2 + i % 32 - 16] >> 4) - 8);
    case MOE_Q4_K: return moe__q4k(S->p + i / 256 * 144, i % 256);
    case MOE_INT4:
        memcpy(&wd, S->p + i / 8 * 4, 4);
        return (float)((int)((wd >> (4 * (i % 8))) & 15) - 8) * moe__load(S->s, S->sdt, r * S->sld + k / 32);
    default: return moe__load(S->p, S->dt, i);
    }
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

#define MOE__KF32 0     /* fp32: one float a lane a K step */
#define MOE__KBF16 1    /* bf16, widened to fp32 in registers (exact) */
#define MOE__KF16 2     /* f16, widened to fp32 in registers (exact) */
/* bf16 dot (dot = MOE_DOT_BF16): a lane of a K step is a pair of bf16 weights, w[2j] in the high
   half of the 32 bits and w[2j+1] in the low half, and the activations come as the same pairs.
   The arithmetic is VDPBF16PS's (Intel SDM, "VDPBF16PS"): for each pair, in that order,
       acc = ftz(acc + x[2j] w[2j]),  acc = ftz(acc + x[2j+1] w[2j+1])
   where each product of two bf16 is exact in fp32, each sum is rounded to nearest even, ftz
   flushes a denormal result to a zero of its sign, and bf16 denormal inputs are zero (the
   packer and the activation rounding flush them). Apart from denormals this is the exact chain
   of MOE__KBF16 run on bf16-rounded activations. Without AVX512_BF16 (and on AVX2, NEON,
   scalar) the same arithmetic runs as two fp32 FMAs with the flush, bit for bit. */
#define MOE__KBF16DOT 3
/* Integer formats (MOE_FORMAT_Q8, _Q4): a K step is a group of 32 inputs. Its block holds, for
   each of the group's 8 quads of inputs (k = 4q .. 4q + 3), the w lanes' 4 weights as bytes
   ([q][lane][4], so one 32-bit lane holds a lane's quad: the operand of VPDPBUSD, SDOT and
   PMADDUBSW), then the w lanes' scales (f16, or bf16 where the source's scales are bf16).
   q8 bytes are s8 (u8 = w + 128 on AVX-512, see MOE__Q8_XOR); q4 bytes hold quads 2p and
   2p + 1 of a lane in their low and high nibbles, u = w + 8. The activations are quantized to
   int8 per group of 32 (MOE__ACT_Q8), and a group adds to the chain as
       acc = fmaf((float)isum, fp32(scale_w) * scale_x, acc)
   where isum = sum of w q_x over the group is an exact integer, groups in K order. */
#define MOE__KQ8 4
#define MOE__KQ4 5
/* Scaled float formats (MOE_FORMAT_FP8, _MXFP4): a K step is a group of 32 inputs too. Its
   block holds the w lanes' codes for each input of the group ([32][lane] E4M3 bytes; MXFP4:
   [16][lane] bytes, inputs 2j and 2j + 1 in the low and high nibble of byte j), then the lanes'
   scales (fp32 for FP8, E8M0 bytes for MXFP4). A weight is widened in registers to
       w = fp32(code) * scale      (one fp32 rounding; exact for MXFP4, a power of two)
   and the K chain is the fp32 chain of the f32 formats: a layer in these formats gives the bits
   of an f32 layer whose weights are those w. The activations are fp32 rows, zero-padded to a
   whole group (MOE__ACT_F32G). */
#define MOE__KFP8 6
#define MOE__KMXFP4 7
#define MOE__KIND_COUNT 8
#define MOE__KBF16DOT_EMU 8 /* kernel only: MOE__KBF16DOT's arithmetic without the instruction */
#define MOE__QG 32 /* the group of the integer and scaled float formats */

typedef struct moe__mat {
    int kind;                  /* MOE__K*: the format of a lane */
    unsigned char *data;       /* expert e, panel p: data + e * expert_bytes + p * panel_bytes */
    size_t n_out, K;           /* outputs; inputs (the length of every output's K chain) */
    size_t ks;                 /* K steps stored in each panel */
    size_t w;                  /* lanes of a K step: NR, or 2 NR (gate | up) */
    size_t panels, step_bytes, panel_bytes, expert_bytes;
    int scale_bf16;            /* integer kinds: the scales are bf16 (else f16) */
} moe__mat;

static int moe__kind_int(int kind) { return kind == MOE__KQ8 || kind == MOE__KQ4; }
static int moe__kind_grp(int kind) { return kind == MOE__KFP8 || kind == MOE__KMXFP4; }
static size_t moe__kind_lane_bytes(int kind) {
    return kind == MOE__KBF16 || kind == MOE__KF16 ? 2 : 4;
}
static size_t moe__kind_per_step(int kind) {
    return kind == MOE__KBF16DOT ? 2 : moe__kind_int(kind) || moe__kind_grp(kind) ? MOE__QG : 1;
}
/* bytes of one K step of w lanes; of it, the weights (the rest are the scales) */
static size_t moe__kind_step_bytes(int kind, size_t w) {
    if (kind == MOE__KQ8) return (MOE__QG + 2) * w;
    if (kind == MOE__KQ4) return (MOE__QG / 2 + 2) * w;
    if (kind == MOE__KFP8) return (MOE__QG + 4) * w;
    if (kind == MOE__KMXFP4) return (MOE__QG / 2 + 1) * w;
    return w * moe__kind_lane_bytes(kind);
}
static size_t moe__kind_weight_bytes(int kind, size_t w) {
    if (kind == MOE__KQ8 || kind == MOE__KFP8) return MOE__QG * w;
    if (kind == MOE__KQ4 || kind == MOE__KMXFP4) return MOE__QG / 2 * w;
    return moe__kind_step_bytes(kind, w);
}

/* Geometry of an n_out x K matrix in panels of w lanes, n_exp experts; 0 on size overflow. */
static int moe__mat_init(moe__mat *M, int kind, size_t n_out, size_t K, size_t w, size_t n_exp,
                         size_t *bytes) {
    memset(M, 0, sizeof *M);
    M->kind = kind, M->n_out = n_out, M->K = K, M->w = w;
    M->ks = (K + moe__kind_per_step(kind) - 1) / moe__kind_per_step(kind);
    M->panels = (n_out + MOE__NR - 1) / MOE__NR;
    M->step_bytes = moe__kind_step_bytes(kind, w);
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

/* Weight k of lane l of a panel, as fp32 (the reference kernels' weight load). */
static float moe__lane(const moe__mat *M, const unsigned char *panel, size_t k, size_t l) {
    const unsigned char *b;
    uint16_t h;
    float f;
    if (moe__kind_grp(M->kind)) {
        const unsigned char *g = panel + (k / MOE__QG) * M->step_bytes, *sc;
        size_t j = k % MOE__QG;
        sc = g + moe__kind_weight_bytes(M->kind, M->w);
        if (M->kind == MOE__KFP8) {
            memcpy(&f, sc + 4 * l, 4);
            return moe__e4m3(g[j * M->w + l]) * f;
        }
        b = g + (j / 2) * M->w + l;
        return moe__e2m1((j & 1) ? *b >> 4 : *b & 15) * moe__e8m0(sc[l]);
    }
    if (M->kind == MOE__KF32) {
        memcpy(&f, panel + k * M->step_bytes + 4 * l, 4);
        return f;
    }
    if (M->kind == MOE__KBF16DOT) /* w[2j] high, w[2j + 1] low: u16 1, then u16 0 */
        b = panel + (k / 2) * M->step_bytes + 4 * l + ((k & 1) ? 0 : 2);
    else
        b = panel + k * M->step_bytes + 2 * l;
    memcpy(&h, b, 2);
    return M->kind == MOE__KF16 ? moe__f16_to_f32(h) : moe__bf16_to_f32(h);
}

/* Integer kinds: weight k of lane l of a panel (an integer), and the scale of its group. */
static int moe__qlane(const moe__mat *M, const unsigned char *panel, size_t k, size_t l) {
    const unsigned char *g = panel + (k / MOE__QG) * M->step_bytes;
    size_t j = k % MOE__QG, q = j / 4;
    if (M->kind == MOE__KQ8) return (int)(signed char)(g[(q * M->w + l) * 4 + j % 4] ^ MOE__Q8_XOR);
    unsigned char b = g[((q / 2) * M->w + l) * 4 + j % 4];
    return (int)((q & 1) ? b >> 4 : b & 15) - 8;
}
static float moe__qscale(const moe__mat *M, const unsigned char *panel, size_t g, size_t l) {
    uint16_t h;
    memcpy(&h, panel + g * M->step_bytes + moe__kind_weight_bytes(M->kind, M->w) + 2 * l, 2);
    return M->scale_bf16 ? moe__bf16_to_f32(h) : moe__f16_to_f32(h);
}

/* Activations in the encoding a kernel reads: fp32 rows; bf16 pairs (MOE__KBF16DOT; word j
   of a row = bf16(x[2j]) << 16 | bf16(x[2j + 1]), rounded to nearest even, denormals flushed,
   0 past n); or int8 groups (the integer kinds): per group of 32, a block
       { float d; int32 sum; int8 q[32] },  d = amax / 127, q = nearest-even(x * (1 / d))
   (x / d where 1 / d overflows: a group of denormals) clamped to +-127, sum = the q's sum,
   zeros past n; a group with a NaN or an infinity gets
   d = NaN (its token's outputs become NaN), an all-zero group d = 0. */
#define MOE__ACT_F32 0
#define MOE__ACT_BF16 1
#define MOE__ACT_Q8 2
#define MOE__ACT_F32G 3 /* fp32, zeros up to a whole group of 32 */
#define MOE__QBLOCK (8 + MOE__QG) /* bytes of an activation group */

static size_t moe__act_row_bytes(int act, size_t n) {
    if (act == MOE__ACT_Q8) return MOE__QBLOCK * ((n + MOE__QG - 1) / MOE__QG);
    if (act == MOE__ACT_F32G) return 4 * MOE__QG * ((n + MOE__QG - 1) / MOE__QG);
    return act == MOE__ACT_BF16 ? 4 * ((n + 1) / 2) : 4 * n;
}

static void moe__quant_group(const float *x, size_t n, unsigned char *dst) {
    float m = 0.0f, d, id;
    int32_t sum = 0, bad = 0;
    signed char q[MOE__QG];
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        bad |= !(a <= FLT_MAX);
        m = a > m ? a : m;
    }
    d = bad ? NAN : m / 127.0f;
    id = bad || d == 0.0f ? 0.0f : 1.0f / d;
    /* a group of denormals (amax below 127 2^-128): 1 / d overflows, and x * inf would be NaN
       for x = 0 and +-inf for the rest; divide instead (the same q wherever 1 / d is finite) */
    int divide = !bad && d != 0.0f && !(id <= FLT_MAX);
    for (size_t i = 0; i < MOE__QG; i++) {
        float r = i < n && !bad ? nearbyintf(divide ? x[i] / d : x[i] * id) : 0.0f;
        r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
        q[i] = (signed char)r, sum += q[i];
    }
    memcpy(dst, &d, 4), memcpy(dst + 4, &sum, 4), memcpy(dst + 8, q, MOE__QG);
}

static void moe__act_encode(int act, const float *x, size_t n, unsigned char *dst) {
    if (act == MOE__ACT_F32 || act == MOE__ACT_F32G) {
        memcpy(dst, x, n * sizeof(float));
        if (act == MOE__ACT_F32G) memset(dst + 4 * n, 0, moe__act_row_bytes(act, n) - 4 * n);
        return;
    }
    if (act == MOE__ACT_Q8) {
        for (size_t g = 0; g * MOE__QG < n; g++)
            moe__quant_group(x + g * MOE__QG, n - g * MOE__QG < MOE__QG ? n - g * MOE__QG : MOE__QG,
                             dst + g * MOE__QBLOCK);
        return;
    }
    for (size_t j = 0; 2 * j < n; j++) {
        uint32_t hi = moe__bf16_daz(moe__f32_to_bf16(x[2 * j]));
        uint32_t lo = 2 * j + 1 < n ? moe__bf16_daz(moe__f32_to_bf16(x[2 * j + 1])) : 0u;
        uint32_t word = hi << 16 | lo;
        memcpy(dst + 4 * j, &word, 4);
    }
}

// ---- kernels: scalar reference ----------------------------------------------------------------
// Every output is one fmaf chain over k = 0..K-1, starting from 0, with the bias added after
// the chain. The SIMD kernels keep exactly this order, so they agree with these bit for bit
// (activations aside, which use a vector exp).

/* The K chain of lane l of a panel against input row x (in the kind's activation encoding). */
static float moe__chain_ref(const moe__mat *M, const unsigned char *panel, size_t l,
                            const unsigned char *xrow) {
    float acc = 0.0f;
    if (moe__kind_int(M->kind)) { /* per group: the exact integer sum, then one fma */
        for (size_t g = 0; g < M->ks; g++) {
            const unsigned char *xb = xrow + g * MOE__QBLOCK;
            float dx;
            int32_t isum = 0;
            memcpy(&dx, xb, 4);
            for (size_t j = 0; j < MOE__QG; j++)
                isum += moe__qlane(M, panel, g * MOE__QG + j, l) * (int32_t)(signed char)xb[8 + j];
            acc = fmaf((float)isum, moe__qscale(M, panel, g, l) * dx, acc);
        }
        return acc;
    }
    if (M->kind == MOE__KBF16DOT) {
        for (size_t j = 0; j < M->ks; j++) { /* x[2j] w[2j], then x[2j+1] w[2j+1], flushed */
            uint32_t xw, ww;
            float a, b;
            memcpy(&xw, xrow + 4 * j, 4);
            memcpy(&ww, panel + j * M->step_bytes + 4 * l, 4);
            xw &= 0xffff0000u, ww &= 0xffff0000u;
            memcpy(&a, &xw, 4), memcpy(&b, &ww, 4);
            acc = moe__ftz(fmaf(a, b, acc));
            memcpy(&xw, xrow + 4 * j, 4);
            memcpy(&ww, panel + j * M->step_bytes + 4 * l, 4);
            xw <<= 16, ww <<= 16;
            memcpy(&a, &xw, 4), memcpy(&b, &ww, 4);
            acc = moe__ftz(fmaf(a, b, acc));
        }
        return acc;
    }
    const float *x = (const float *)(const void *)xrow;
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
    if (kind == MOE__KBF16) return moe__vld_bf16(p);
    if (kind == MOE__KF16) return moe__vld_f16(p);
    return moe__vld((const float *)(const void *)p); /* fp32, or bf16 pairs as 32-bit lanes */
}

#define MOE__RESUME 1 /* tile flags: start from the partial sums in out */
#define MOE__SBF16 2  /* the integer kinds' scales are bf16 */

/* The integer kinds' tile: K steps are groups; the fp32 sums live in out (L1), the group's
   integer sums in registers. */
static MOE__INLINE void moe__qtile(int kind, size_t mr, size_t na, size_t np,
                                   const unsigned char *W, size_t ps, size_t k0, size_t k1,
                                   const unsigned char *const *xr, float *out, int flags,
                                   const unsigned char *pf, size_t npf) {
    moe__vi acc[MOE__ACC];
    size_t w = na * MOE__VW, sb = moe__kind_step_bytes(kind, w), wb = moe__kind_weight_bytes(kind, w);
    int comp = kind == MOE__KQ8 ? MOE__Q8_COMP : MOE__Q4_COMP;
    if (!(flags & MOE__RESUME))
        for (size_t i = 0; i < mr * np * na * MOE__VW; i++) out[i] = 0.0f;
    for (size_t g = k0; g < k1; g++) {
        const unsigned char *wg = W + g * sb;
        if (np > 1 && MOE__PFD > 0) {
            MOE__UNROLL
            for (size_t q = 0; q < np; q++)
                for (size_t o = 0; o < sb; o += 64) MOE__PREFETCH(wg + q * ps + MOE__PFD + o);
        } else if (pf) {
            for (size_t j = 0; j < npf; j++) MOE__PREFETCH_L2(pf + ((g - k0) * npf + j) * 64);
        }
        int32_t xq[MOE__MR][MOE__QG / 4];
        float dx[MOE__MR];
        MOE__UNROLL
        for (size_t r = 0; r < mr; r++) {
            const unsigned char *xb = xr[r] + g * MOE__QBLOCK;
            int32_t sx;
            memcpy(&dx[r], xb, 4), memcpy(&sx, xb + 4, 4), memcpy(xq[r], xb + 8, MOE__QG);
            MOE__UNROLL
            for (size_t i = 0; i < np * na; i++) acc[r * np * na + i] = moe__viset(comp * sx);
        }
        if (kind == MOE__KQ8) {
            for (size_t qd = 0; qd < MOE__QG / 4; qd++) {
                MOE__UNROLL
                for (size_t q = 0; q < np; q++) {
                    MOE__UNROLL
                    for (size_t v = 0; v < na; v++) {
                        moe__vi wv = moe__viload(wg + q * ps + (qd * w + v * MOE__VW) * 4);
                        moe__vi wp = moe__vq8_prep(wv);
                        MOE__UNROLL
                        for (size_t r = 0; r < mr; r++) {
                            size_t i = (r * np + q) * na + v;
                            acc[i] = moe__vdot_q8(acc[i], wp, wv, moe__viset(xq[r][qd]));
                        }
                    }
                }
            }
        } else {
            for (size_t pr = 0; pr < MOE__QG / 8; pr++) {
                MOE__UNROLL
                for (size_t q = 0; q < np; q++) {
                    MOE__UNROLL
                    for (size_t v = 0; v < na; v++) {
                        moe__vi wv = moe__viload(wg + q * ps + (pr * w + v * MOE__VW) * 4);
                        moe__vi lo = moe__vnib_lo(wv), hi = moe__vnib_hi(wv);
                        MOE__UNROLL
                        for (size_t r = 0; r < mr; r++) {
                            size_t i = (r * np + q) * na + v;
                            acc[i] = moe__vdot_q4(acc[i], lo, moe__viset(xq[r][2 * pr]));
                            acc[i] = moe__vdot_q4(acc[i], hi, moe__viset(xq[r][2 * pr + 1]));
                        }
                    }
                }
            }
        }
        MOE__UNROLL
        for (size_t q = 0; q < np; q++) {
            MOE__UNROLL
            for (size_t v = 0; v < na; v++) {
                const unsigned char *sp = wg + q * ps + wb + v * MOE__VW * 2;
                moe__v sw = (flags & MOE__SBF16) ? moe__vld_bf16(sp) : moe__vld_f16(sp);
                MOE__UNROLL
                for (size_t r = 0; r < mr; r++) {
                    size_t i = (r * np + q) * na + v;
                    float *o = out + i * MOE__VW;
                    moe__vst(o, moe__vfma(moe__vicvt(acc[i]), moe__vmul(sw, moe__vset(dx[r])),
                                          moe__vld(o)));
                }
            }
        }
    }
}

#define MOE__P2_120 1.329227995784915872903807060280344576e36f /* 2^120, exactly (C++11 has no hex floats) */

/* The scaled float kinds' tile: K steps are groups of 32. Per group, each vector of lanes gets
   its scale folded with the decoder's power of two (FP8: s 2^120, exact for s < 2^8, which the
   packer ensures; MXFP4: the halved scale, exact), kept in L1; then, input by input, each
   weight vector is decoded and scaled once for every row, w = code * s in one fp32 rounding
   (the same product as moe__lane's), and the fp32 chain of moe__tile goes on. */
static MOE__INLINE void moe__gtile(int kind, size_t mr, size_t na, size_t np,
                                   const unsigned char *W, size_t ps, size_t k0, size_t k1,
                                   const unsigned char *const *xr, float *out, int flags,
                                   const unsigned char *pf, size_t npf) {
    moe__v acc[MOE__ACC];
    float sv[4 * MOE__NR * 2]; /* np <= 4 panels of na vectors (gated: 2 NR lanes) */
    size_t w = na * MOE__VW, sb = moe__kind_step_bytes(kind, w), wb = moe__kind_weight_bytes(kind, w);
    MOE__UNROLL
    for (size_t i = 0; i < mr * np * na; i++)
        acc[i] = (flags & MOE__RESUME) ? moe__vld(out + i * MOE__VW) : moe__vset(0.0f);
    for (size_t g = k0; g < k1; g++) {
        const unsigned char *wg = W + g * sb;
        if (np > 1 && MOE__PFD > 0) {
            MOE__UNROLL
            for (size_t q = 0; q < np; q++)
                for (size_t o = 0; o < sb; o += 64) MOE__PREFETCH(wg + q * ps + MOE__PFD + o);
        } else if (pf) {
            for (size_t j = 0; j < npf; j++) MOE__PREFETCH_L2(pf + ((g - k0) * npf + j) * 64);
        }
        MOE__UNROLL
        for (size_t q = 0; q < np; q++) {
            MOE__UNROLL
            for (size_t v = 0; v < na; v++) {
                const unsigned char *sp = wg + q * ps + wb;
                moe__v sc = kind == MOE__KFP8
                    ? moe__vmul(moe__vld((const float *)(const void *)sp + v * MOE__VW), moe__vset(MOE__P2_120))
                    : moe__vld_e8m0h(sp + v * MOE__VW);
                moe__vst(sv + (q * na + v) * MOE__VW, sc);
            }
        }
        if (kind == MOE__KFP8) {
            for (size_t j = 0; j < MOE__QG; j++) {
                MOE__UNROLL
                for (size_t q = 0; q < np; q++) {
                    MOE__UNROLL
                    for (size_t v = 0; v < na; v++) {
                        moe__v wv = moe__vmul(moe__vld_e4m3s(wg + q * ps + j * w + v * MOE__VW),
                                              moe__vld(sv + (q * na + v) * MOE__VW));
                        MOE__UNROLL
                        for (size_t r = 0; r < mr; r++) {
                            size_t i = (r * np + q) * na + v;
                            float xk = ((const float *)(const void *)xr[r])[g * MOE__QG + j];
                            acc[i] = moe__vfma(moe__vset(xk), wv, acc[i]);
                        }
                    }
                }
            }
        } else {
            for (size_t j = 0; j < MOE__QG / 2; j++) {
                MOE__UNROLL
                for (size_t q = 0; q < np; q++) {
                    MOE__UNROLL
                    for (size_t v = 0; v < na; v++) {
                        const unsigned char *b = wg + q * ps + j * w + v * MOE__VW;
                        moe__v sc = moe__vld(sv + (q * na + v) * MOE__VW);
                        moe__v lo = moe__vmul(moe__vld_e2m1x2(b, 0), sc);
                        moe__v hi = moe__vmul(moe__vld_e2m1x2(b, 1), sc);
                        MOE__UNROLL
                        for (size_t r = 0; r < mr; r++) {
                            size_t i = (r * np + q) * na + v;
                            const float *x = (const float *)(const void *)xr[r] + g * MOE__QG + 2 * j;
                            acc[i] = moe__vfma(moe__vset(x[0]), lo, acc[i]);
                            acc[i] = moe__vfma(moe__vset(x[1]), hi, acc[i]);
                        }
                    }
                }
            }
        }
    }
    MOE__UNROLL
    for (size_t i = 0; i < mr * np * na; i++) moe__vst(out + i * MOE__VW, acc[i]);
}

/* Sums K steps k0..k1 of rows xr[0..mr) against np panels (ps bytes apart) of na vectors each,
   from 0 or from the partial sums in out (flags & MOE__RESUME), into out.
   Indices are size_t: UBSan's signed-overflow checks on int indices stop clang from unrolling
   the tile (and its compile time explodes with -fno-sanitize-recover). */
static MOE__INLINE void moe__tile(int kind, size_t mr, size_t na, size_t np,
                                  const unsigned char *W, size_t ps, size_t k0, size_t k1,
                                  const unsigned char *const *xr, float *out, int flags,
                                  const unsigned char *pf, size_t npf) {
    moe__v acc[MOE__ACC];
    size_t lb = moe__kind_lane_bytes(kind), sb = na * MOE__VW * lb;
    if (moe__kind_int(kind)) {
        moe__qtile(kind, mr, na, np, W, ps, k0, k1, xr, out, flags, pf, npf);
        return;
    }
    if (moe__kind_grp(kind)) {
        moe__gtile(kind, mr, na, np, W, ps, k0, k1, xr, out, flags, pf, npf);
        return;
    }
    MOE__UNROLL
    for (size_t i = 0; i < mr * np * na; i++)
        acc[i] = (flags & MOE__RESUME) ? moe__vld(out + i * MOE__VW) : moe__vset(0.0f);
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
            if (kind == MOE__KBF16DOT || kind == MOE__KBF16DOT_EMU) { /* see MOE__KBF16DOT */
                uint32_t u, uh, ul;
                float xh, xl;
                memcpy(&u, xr[r] + 4 * k, 4);
                uh = u & 0xffff0000u, ul = u << 16;
                memcpy(&xh, &uh, 4), memcpy(&xl, &ul, 4);
                moe__v b = moe__vbits(u), bh = moe__vset(xh), bl = moe__vset(xl);
                (void)b, (void)bh, (void)bl;
                MOE__UNROLL
                for (size_t q = 0; q < np; q++) {
                    MOE__UNROLL
                    for (size_t v = 0; v < na; v++) {
                        size_t i = (r * np + q) * na + v;
                        moe__v wv = moe__vw(kind, wk + q * ps + v * MOE__VW * lb);
#if MOE__DPBF16
                        if (kind == MOE__KBF16DOT) {
                            acc[i] = moe__vdpbf16(acc[i], b, wv);
                            continue;
                        }
#endif
                        acc[i] = moe__vftz(moe__vfma(bh, moe__vhi16(wv), acc[i]));
                        acc[i] = moe__vftz(moe__vfma(bl, moe__vlo16(wv), acc[i]));
                    }
                }
                continue;
            }
            if (kind != MOE__KF32) continue; /* 16-bit weights: below */
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
        if (kind == MOE__KBF16 || kind == MOE__KF16) {
            /* widen each weight vector once for all rows (the sums are the same: only the
               order of independent accumulators changes) */
            MOE__UNROLL
            for (size_t q = 0; q < np; q++) {
                MOE__UNROLL
                for (size_t v = 0; v < na; v++) {
                    moe__v wv = moe__vw(kind, wk + q * ps + v * MOE__VW * lb);
                    MOE__UNROLL
                    for (size_t r = 0; r < mr; r++) {
                        size_t i = (r * np + q) * na + v;
                        acc[i] = moe__vfma(moe__vset(((const float *)(const void *)xr[r])[k]), wv, acc[i]);
                    }
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
                                      const unsigned char *const *xr, float *out, int flags,
                                      const unsigned char *pf, size_t npf) {
#define MOE__T1(r, g, p)                                                                          \
    case r:                                                                                       \
        if (r * g * MOE__NV * p <= MOE__ACC)                                                      \
            moe__tile(kind, r##u, g##u * MOE__NV, p##u, W, ps, k0, k1, xr, out, flags, pf, npf);  \
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

/* The tile set of one format, compiled once: every kernel of that format calls it (inlining it
   into each would multiply the unrolled tiles, and the compile time, for nothing). */
#define MOE__TILES(name, kind)                                                                    \
    static MOE__NOINLINE void moe__tiles_##name(int mr, int gated, int np, const unsigned char *W, \
                                                size_t ps, size_t k0, size_t k1,                  \
                                                const unsigned char *const *xr, float *out,       \
                                                int flags, const unsigned char *pf, size_t npf) { \
        moe__tile_run(kind, mr, gated, np, W, ps, k0, k1, xr, out, flags, pf, npf);              \
    }
MOE__TILES(f32, MOE__KF32)
MOE__TILES(bf16, MOE__KBF16)
MOE__TILES(f16, MOE__KF16)
MOE__TILES(bf16dot, MOE__KBF16DOT)
MOE__TILES(q8, MOE__KQ8)
MOE__TILES(q4, MOE__KQ4)
MOE__TILES(fp8, MOE__KFP8)
MOE__TILES(mxfp4, MOE__KMXFP4)
#if MOE__DPBF16
MOE__TILES(bf16dot_emu, MOE__KBF16DOT_EMU)
#endif
#undef MOE__TILES

typedef void (*moe__tiles_fn)(int mr, int gated, int np, const unsigned char *W, size_t ps,
                              size_t k0, size_t k1, const unsigned char *const *xr, float *out,
                              int flags, const unsigned char *pf, size_t npf);

static MOE__INLINE moe__tiles_fn moe__tiles_of(int kind) {
    switch (kind) {
    case MOE__KBF16: return moe__tiles_bf16;
    case MOE__KF16: return moe__tiles_f16;
    case MOE__KBF16DOT: return moe__tiles_bf16dot;
    case MOE__KQ8: return moe__tiles_q8;
    case MOE__KQ4: return moe__tiles_q4;
    case MOE__KFP8: return moe__tiles_fp8;
    case MOE__KMXFP4: return moe__tiles_mxfp4;
#if MOE__DPBF16
    case MOE__KBF16DOT_EMU: return moe__tiles_bf16dot_emu;
#endif
    default: return moe__tiles_f32;
    }
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
static MOE__NOINLINE void moe__finish(const moe__actp *a, const moe__mat *M, const float *B,
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
    int sbf = M->scale_bf16 ? MOE__SBF16 : 0;
    if (decode || nb == 1) { /* one row block: every panel is read once anyway */
        for (size_t p = p0; p < p1;) {
            size_t np = moe__decode_panels(decode, m, na, p, p1), npf = 0;
            for (size_t r = 0; r < m; r++) xr[r] = moe__row_in(R, r);
            const unsigned char *pf = NULL;
            if (np == 1 && p + 1 < p1) pf = moe__gemm_prefetch(We + (p + 1) * ps, ps, ks, 0, 1, &npf);
            moe__tiles_of(kind)((int)m, gated, (int)np, We + p * ps, ps, 0, ks, xr, part, sbf, pf,
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
                    moe__tiles_of(kind)((int)mr, gated, 1, Wp, ps, k0, k1, xr,
                                  part + (bi - b0) * MOE__ACC * MOE__VW,
                                  (k0 > 0 ? MOE__RESUME : 0) | sbf, pf, npf);
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
MOE__KERNELS(bf16, MOE__KBF16)
MOE__KERNELS(f16, MOE__KF16)
MOE__KERNELS(bf16dot, MOE__KBF16DOT)
MOE__KERNELS(q8, MOE__KQ8)
MOE__KERNELS(q4, MOE__KQ4)
MOE__KERNELS(fp8, MOE__KFP8)
MOE__KERNELS(mxfp4, MOE__KMXFP4)
#if MOE__DPBF16
MOE__KERNELS(bf16dot_emu, MOE__KBF16DOT_EMU)
#endif
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
    int act; /* MOE__ACT_*: the activation encoding ffn1 and gemm read */
} moe__kern;

/* Indexed by kind, then MOE__KBF16DOT_EMU. */
static const moe__kern moe__kern_ref[MOE__KIND_COUNT + 1] = {
    {"f32 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_F32},
    {"bf16 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_F32},
    {"f16 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_F32},
    {"bf16-dot reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_BF16},
    {"q8 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_Q8},
    {"q4 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_Q8},
    {"fp8 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_F32G},
    {"mxfp4 reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_F32G},
    {"bf16-dot reference", moe__ffn1_ref, moe__gemm_ref, moe__combine_ref, MOE__ACT_BF16},
};
#if MOE__SIMD
static const moe__kern moe__kern_fast[MOE__KIND_COUNT + 1] = {
    {"f32", moe__ffn1_f32, moe__gemm_f32, moe__combine_simd, MOE__ACT_F32},
    {"bf16", moe__ffn1_bf16, moe__gemm_bf16, moe__combine_simd, MOE__ACT_F32},
    {"f16", moe__ffn1_f16, moe__gemm_f16, moe__combine_simd, MOE__ACT_F32},
#if MOE__DPBF16
    {"bf16-dot (vdpbf16ps)", moe__ffn1_bf16dot, moe__gemm_bf16dot, moe__combine_simd, MOE__ACT_BF16},
#else
    {"bf16-dot (emulated)", moe__ffn1_bf16dot, moe__gemm_bf16dot, moe__combine_simd, MOE__ACT_BF16},
#endif
    {"q8", moe__ffn1_q8, moe__gemm_q8, moe__combine_simd, MOE__ACT_Q8},
    {"q4", moe__ffn1_q4, moe__gemm_q4, moe__combine_simd, MOE__ACT_Q8},
    {"fp8", moe__ffn1_fp8, moe__gemm_fp8, moe__combine_simd, MOE__ACT_F32G},
    {"mxfp4", moe__ffn1_mxfp4, moe__gemm_mxfp4, moe__combine_simd, MOE__ACT_F32G},
#if MOE__DPBF16
    {"bf16-dot (emulated)", moe__ffn1_bf16dot_emu, moe__gemm_bf16dot_emu, moe__combine_simd,
     MOE__ACT_BF16},
#else
    {"bf16-dot (emulated)", moe__ffn1_bf16dot, moe__gemm_bf16dot, moe__combine_simd, MOE__ACT_BF16},
#endif
};
#else
#define moe__kern_fast moe__kern_ref
#endif

static const moe__kern *moe__kernels(int kind, int ref) {
    return ref ? &moe__kern_ref[kind] : &moe__kern_fast[kind];
}

/* Does this CPU's VDPBF16PS compute MOE__KBF16DOT's arithmetic? Checked once per layer that
   would use it, on pairs chosen to tell the plausible implementations apart (the order of the
   two products, one rounding or two, the flushing of denormal inputs and results, signed
   zeros): if any bit differs, the layer runs the emulation, and its bits stay those of every
   other machine. */
static int moe__dpbf16_agrees(void) {
#if MOE__DPBF16
    float acc[MOE__VW], xs[MOE__VW], ws[MOE__VW], a0[MOE__VW], a1[MOE__VW];
    uint32_t st = 0x9e3779b9u;
    for (int rep = 0; rep < 64; rep++) {
        for (int i = 0; i < MOE__VW; i++) {
            uint32_t r[3];
            for (int j = 0; j < 3; j++) st = st * 1664525u + 1013904223u, r[j] = st;
            /* exponents near 1, near each other (cancellation), and near the denormal range */
            uint32_t ex = (rep % 4 == 3) ? 1u + (r[2] % 24u) : 118u + (r[2] % 16u);
            uint32_t xw = ((r[0] & 0x80008000u) | (ex << 23 | ex << 7)) ^ (r[1] & 0x007f007fu);
            uint32_t ww = ((r[1] & 0x80008000u) | (128u << 23 | 126u << 7)) ^ (r[0] & 0x007f007fu);
            if (rep % 8 == 7) ww &= 0x807f807fu; /* denormal weights */
            memcpy(&xs[i], &xw, 4), memcpy(&ws[i], &ww, 4);
            acc[i] = (rep & 1) ? -0.0f : (float)(r[2] % 7) * 0.0625f - 0.1875f;
        }
        moe__v x = moe__vld(xs), w = moe__vld(ws), a = moe__vld(acc);
        moe__vst(a0, moe__vdpbf16(a, x, w));
        /* the emulation's inputs are flushed as the packer and the activation rounding do */
        for (int i = 0; i < MOE__VW; i++) {
            uint32_t xw, ww;
            memcpy(&xw, &xs[i], 4), memcpy(&ww, &ws[i], 4);
            xw = (uint32_t)moe__bf16_daz((uint16_t)(xw >> 16)) << 16 | moe__bf16_daz((uint16_t)xw);
            ww = (uint32_t)moe__bf16_daz((uint16_t)(ww >> 16)) << 16 | moe__bf16_daz((uint16_t)ww);
            memcpy(&xs[i], &xw, 4), memcpy(&ws[i], &ww, 4);
        }
        x = moe__vld(xs), w = moe__vld(ws);
        a = moe__vftz(moe__vfma(moe__vhi16(x), moe__vhi16(w), a));
        moe__vst(a1, moe__vftz(moe__vfma(moe__vlo16(x), moe__vlo16(w), a)));
        if (memcmp(a0, a1, sizeof a0) != 0) return 0;
    }
    return 1;
#else
    return 0;
#endif
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

/* Stores value v as weight k of lane l of a panel, converted to the matrix's format (the
   inverse of moe__lane). */
static void moe__put_lane(const moe__mat *M, unsigned char *panel, size_t k, size_t l, float v) {
    uint16_t h;
    if (M->kind == MOE__KF32) {
        memcpy(panel + k * M->step_bytes + 4 * l, &v, 4);
        return;
    }
    if (M->kind == MOE__KF16) {
        h = moe__f32_to_f16(v);
        memcpy(panel + k * M->step_bytes + 2 * l, &h, 2);
    } else if (M->kind == MOE__KBF16) {
        h = moe__f32_to_bf16(v);
        memcpy(panel + k * M->step_bytes + 2 * l, &h, 2);
    } else {
        h = moe__bf16_daz(moe__f32_to_bf16(v));
        memcpy(panel + (k / 2) * M->step_bytes + 4 * l + ((k & 1) ? 0 : 2), &h, 2);
    }
}

/* Quantizes one lane's group of n <= 32 weights (zeros past n) into its block g: q8 with
   d = amax / 127, q4 (as GGUF Q4_0) with d = -m / 8 where m is the weight of largest magnitude,
   d rounded to f16 first, then q = nearest-even(v / d) clamped to -127..127 (q8) or -8..7 (q4);
   d = 0 for an all-zero group; a non-finite weight makes the group's scale NaN. */
static void moe__quant_lane(const moe__mat *M, unsigned char *g, size_t l, const float *v, size_t n) {
    float m = 0.0f, mv = 0.0f, dq;
    int bad = 0, q8 = M->kind == MOE__KQ8;
    for (size_t j = 0; j < n; j++) {
        float a = fabsf(v[j]);
        bad |= !(a <= FLT_MAX);
        if (a > m) m = a, mv = v[j];
    }
    uint16_t h = moe__f32_to_f16(bad ? NAN : q8 ? m / 127.0f : mv / -8.0f);
    dq = moe__f16_to_f32(h);
    memcpy(g + moe__kind_weight_bytes(M->kind, M->w) + 2 * l, &h, 2);
    for (size_t j = 0; j < MOE__QG; j++) {
        float r = j < n && dq != 0.0f && !bad ? nearbyintf(v[j] / dq) : 0.0f;
        size_t q = j / 4;
        if (q8) {
            r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
            g[(q * M->w + l) * 4 + j % 4] = (unsigned char)((int)r & 0xff) ^ MOE__Q8_XOR;
        } else {
            r = r > 7.0f ? 7.0f : r < -8.0f ? -8.0f : r;
            unsigned char *b = g + ((q / 2) * M->w + l) * 4 + j % 4, u = (unsigned char)((int)r + 8);
            *b = (q & 1) ? (unsigned char)((*b & 0x0f) | u << 4) : (unsigned char)((*b & 0xf0) | u);
        }
    }
}

/* Does source S hold the integer blocks of matrix M as they are, so that packing copies them
   instead of quantizing again? GGUF Q8_0 into q8, Q4_0 into q4, compressed-tensors INT4 into q4
   when its scales are the matrix's scale encoding (f16, or bf16). */
static int moe__qcopy(const moe__mat *M, const moe__src *S) {
    if (M->kind == MOE__KQ8) return S->dt == MOE_Q8_0;
    if (S->dt == MOE_INT4) return S->sdt == (M->scale_bf16 ? MOE_BF16 : MOE_F16);
    return S->dt == MOE_Q4_0;
}

/* Copies group g of row `row` of an integer-block source into lane l of its block: codes and
   scale bits unchanged. */
static void moe__qcopy_lane(const moe__mat *M, unsigned char *g, size_t l, const moe__src *S,
                            size_t row, size_t grp) {
    size_t i0 = row * S->K + grp * MOE__QG;
    const unsigned char *b = S->dt == MOE_Q8_0 ? S->p + i0 / 32 * 34 : S->p + i0 / 32 * 18;
    if (S->dt == MOE_INT4) b = S->s + (row * S->sld + grp) * 2;
    memcpy(g + moe__kind_weight_bytes(M->kind, M->w) + 2 * l, b, 2);
    for (size_t j = 0; j < MOE__QG; j++) {
        size_t q = j / 4;
        if (M->kind == MOE__KQ8) {
            g[(q * M->w + l) * 4 + j % 4] = (unsigned char)(b[2 + j] ^ MOE__Q8_XOR);
            continue;
        }
        unsigned u;
        if (S->dt == MOE_INT4) {
            uint32_t wd;
            memcpy(&wd, S->p + (i0 + j) / 8 * 4, 4);
            u = (wd >> (4 * ((i0 + j) % 8))) & 15;
        } else {
            u = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;
        }
        unsigned char *d = g + ((q / 2) * M->w + l) * 4 + j % 4;
        *d = (q & 1) ? (unsigned char)((*d & 0x0f) | u << 4) : (unsigned char)((*d & 0xf0) | u);
    }
}

/* Where input k of part output o lives in the source (element index). */
static size_t moe__src_at(const moe__src *S, moe_layout lay, moe__part pt, size_t o, size_t k) {
    return lay == MOE_OUT_IN ? (pt.off + o * pt.step) * S->K + k : k * pt.src_out + pt.off + o * pt.step;
}

/* moe__pack_mat for the integer kinds: each lane's weights gathered group by group. */
static void moe__pack_qmat(const moe__mat *M, unsigned char *We, size_t lane0, const moe__src *S,
                           moe_layout lay, moe__part pt) {
    size_t K = M->K;
    int copy = moe__qcopy(M, S);
    float v[MOE__QG];
    for (size_t p = 0; p < M->panels; p++) {
        unsigned char *Wp = We + p * M->panel_bytes;
        for (size_t l = 0; l < MOE__NR; l++) {
            size_t o = p * MOE__NR + l;
            for (size_t g = 0; g < M->ks; g++) {
                size_t k0 = g * MOE__QG, n = o < M->n_out ? (K - k0 < MOE__QG ? K - k0 : MOE__QG) : 0;
                if (copy && n) {
                    moe__qcopy_lane(M, Wp + g * M->step_bytes, lane0 + l, S, pt.off + o * pt.step, g);
                    continue;
                }
                for (size_t j = 0; j < n; j++) v[j] = moe__load_s(S, moe__src_at(S, lay, pt, o, k0 + j));
                moe__quant_lane(M, Wp + g * M->step_bytes, lane0 + l, v, n);
            }
        }
    }
}

/* E4M3 and E2M1 of an fp32 value, rounded to nearest even; E4M3 saturates at 448, E2M1 at 6 (the
   quantizers below keep |x| within them), NaN stays NaN for E4M3 (0x7f) and becomes 0 for E2M1,
   which has none. */
static unsigned moe__to_e4m3(float x) {
    unsigned sg = signbit(x) ? 0x80u : 0u, c;
    float a = fabsf(x);
    int ex;
    if (!(a == a)) return 0x7fu;
    if (a < 0.015625f) { /* subnormal: units of 2^-9; 8 units is the smallest normal, code 8 */
        c = (unsigned)nearbyintf(a * 512.0f);
    } else {
        frexpf(a, &ex); /* a = f 2^ex, f in [0.5, 1): the exponent is ex - 1 */
        float mant = nearbyintf(ldexpf(a, 4 - ex)); /* 8..16 */
        if (mant >= 16.0f) mant = 8.0f, ex++;
        c = ex - 1 + 7 > 15 ? 0x7eu : (unsigned)((ex - 1 + 7) << 3) | ((unsigned)mant - 8u);
    }
    return sg | (c > 0x7eu ? 0x7eu : c);
}
static unsigned moe__to_e2m1(float x) {
    static const float v[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float a = fabsf(x), best = INFINITY;
    unsigned c = 0;
    if (!(a == a)) return 0;
    for (unsigned i = 0; i < 8; i++) { /* nearest; a tie goes to the even code (the first) */
        float dd = fabsf(a - v[i]);
        if (dd < best) best = dd, c = i;
    }
    return (signbit(x) ? 8u : 0u) | c;
}

/* moe__pack_mat for the scaled float kinds: codes and scales copied from an E4M3 or MXFP4
   source (whose tiles hold whole groups of 32, fp8 scales below 2^8), else quantized: FP8 with scale amax / 448
   per lane and group, MXFP4 with the OCP rule 2^(floor(log2 amax) - 2) (E8M0), codes rounded
   to nearest even. */
static void moe__pack_gmat(const moe__mat *M, unsigned char *We, size_t lane0, const moe__src *S,
                           moe_layout lay, moe__part pt) {
    size_t K = M->K, w = M->w, wb = moe__kind_weight_bytes(M->kind, w);
    int fp8 = M->kind == MOE__KFP8;
    int copy = lay == MOE_OUT_IN && (fp8 ? S->dt == MOE_F8_E4M3 && (S->bi % MOE__QG == 0 || S->bi >= K)
                                         : S->dt == MOE_MXFP4 || S->dt == MOE_MXFP4_GGUF);
    for (size_t p = 0; p < M->panels; p++) {
        unsigned char *Wp = We + p * M->panel_bytes;
        for (size_t l = 0; l < MOE__NR; l++) {
            size_t o = p * MOE__NR + l, lane = lane0 + l, row = pt.off + o * pt.step;
            for (size_t g = 0; g < M->ks; g++) {
                unsigned char *gb = Wp + g * M->step_bytes, code[MOE__QG];
                size_t k0 = g * MOE__QG, n = o < M->n_out ? (K - k0 < MOE__QG ? K - k0 : MOE__QG) : 0;
                float sc = 0.0f;
                unsigned se = 0;
                memset(code, 0, sizeof code);
                if (copy && n) {
                    for (size_t j = 0; j < n; j++) {
                        size_t i = row * S->K + k0 + j;
                        if (fp8) code[j] = S->p[i];
                        else if (S->dt == MOE_MXFP4) code[j] = (i & 1) ? S->p[i / 2] >> 4 : S->p[i / 2] & 15;
                        else {
                            const unsigned char *b = S->p + i / 32 * 17;
                            code[j] = i % 32 < 16 ? b[1 + i % 32] & 15 : b[1 + i % 32 - 16] >> 4;
                        }
                    }
                    size_t i0 = row * S->K + k0;
                    if (fp8) sc = moe__load(S->s, S->sdt, (row / S->bo) * S->sld + k0 / S->bi);
                    else if (S->dt == MOE_MXFP4) se = S->s[row * S->sld + k0 / 32];
                    else se = S->p[i0 / 32 * 17];
                    if (fp8) { /* a NaN code: the group's scale (its outputs are NaN either way) */
                        for (size_t j = 0; j < n; j++)
                            if ((code[j] & 0x7f) == 0x7f) sc = NAN;
                    }
                }
                /* the kernels fold 2^120 into an fp8 scale: one of 2^8 or more is requantized */
                if (n && (!copy || (fp8 && fabsf(sc) >= 256.0f))) {
                    float v[MOE__QG], m = 0.0f;
                    int bad = 0;
                    for (size_t j = 0; j < n; j++) {
                        v[j] = moe__load_s(S, moe__src_at(S, lay, pt, o, k0 + j));
                        bad |= !(fabsf(v[j]) <= FLT_MAX);
                        m = fabsf(v[j]) > m ? fabsf(v[j]) : m;
                    }
                    if (fp8) {
                        sc = bad ? NAN : m / 448.0f;
                        for (size_t j = 0; j < n; j++) code[j] = (unsigned char)(sc > 0.0f ? moe__to_e4m3(v[j] / sc) : 0u);
                    } else {
                        int ex = 0;
                        if (m > 0.0f) frexpf(m, &ex), ex -= 1; /* floor(log2 m) */
                        int e = m > 0.0f ? ex - 2 + 127 : 0;
                        e = bad ? 255 : e < 0 ? 0 : e > 254 ? 254 : e;
                        se = (unsigned)e;
                        float xs = moe__e8m0(se);
                        for (size_t j = 0; j < n; j++) {
                            float q = v[j] / xs;
                            q = q > 6.0f ? 6.0f : q < -6.0f ? -6.0f : q;
                            code[j] = (unsigned char)moe__to_e2m1(q);
                        }
                    }
                }
                if (fp8) {
                    for (size_t j = 0; j < MOE__QG; j++) gb[j * w + lane] = code[j];
                    memcpy(gb + wb + 4 * lane, &sc, 4);
                } else {
                    for (size_t j = 0; j < MOE__QG / 2; j++)
                        gb[j * w + lane] = (unsigned char)(code[2 * j] | code[2 * j + 1] << 4);
                    gb[wb + lane] = (unsigned char)se;
                }
            }
        }
    }
}

/* Packs lanes lane0..lane0+NR of expert e's panels (lane0 = 0: gate or single, NR: up) from a
   source holding the part pt of that expert, n_out outputs over M->K inputs. Lanes past n_out
   and K steps past K get zeros. */
static void moe__pack_mat_s(const moe__mat *M, size_t e, size_t lane0, const moe__src *S,
                            moe_layout lay, moe__part pt) {
    unsigned char *We = M->data + e * M->expert_bytes;
    size_t K = M->K;
    if (moe__kind_int(M->kind)) {
        moe__pack_qmat(M, We, lane0, S, lay, pt);
        return;
    }
    if (moe__kind_grp(M->kind)) {
        moe__pack_gmat(M, We, lane0, S, lay, pt);
        return;
    }
    for (size_t p = 0; p < M->panels; p++) {
        unsigned char *Wp = We + p * M->panel_bytes;
        size_t nl = M->n_out - p * MOE__NR < MOE__NR ? M->n_out - p * MOE__NR : MOE__NR;
        if (lay == MOE_OUT_IN) { /* a source row is one output: read it along k */
            for (size_t l = 0; l < nl; l++) {
                size_t s = (pt.off + (p * MOE__NR + l) * pt.step) * K;
                for (size_t k = 0; k < K; k++)
                    moe__put_lane(M, Wp, k, lane0 + l, moe__load_s(S, s + k));
            }
        } else { /* a source row is one input: read the panel's outputs of it together */
            for (size_t k = 0; k < K; k++) {
                size_t s = k * pt.src_out + pt.off + p * MOE__NR * pt.step;
                for (size_t l = 0; l < nl; l++)
                    moe__put_lane(M, Wp, k, lane0 + l, moe__load_s(S, s + l * pt.step));
            }
        }
        size_t kpad = M->ks * moe__kind_per_step(M->kind); /* weights stored a lane */
        for (size_t k = 0; k < kpad; k++) /* the padding: outputs past n_out, weights past K */
            for (size_t l = k < K ? nl : 0; l < MOE__NR; l++) moe__put_lane(M, Wp, k, lane0 + l, 0.0f);
    }
}

/* moe__pack_mat_s from a buffer of a plain dtype. */
static void moe__pack_mat(const moe__mat *M, size_t e, size_t lane0, const void *src, moe_dtype dt,
                          moe_layout lay, moe__part pt) {
    moe__src S;
    memset(&S, 0, sizeof S);
    S.p = MOE__CAST(const unsigned char *, src), S.dt = dt, S.K = M->K, S.bo = S.bi = 128;
    moe__pack_mat_s(M, e, lane0, &S, lay, pt);
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
    size_t e0, ne;         /* the experts held: e0 .. e0 + ne - 1 (packed as 0 .. ne - 1) */
    moe__mat router;       /* RO outputs over d inputs, fp32 */
    const moe__kern *router_kern; /* also combines */
    float *router_bias;    /* [e_pad] or NULL */
    float *select_bias;    /* [R] or NULL */
    float *shared_gate;    /* [d] or NULL */
    float *out_bias, *out_norm; /* [d] or NULL */
    float *router_in_scale, *expert_in_norm; /* [d] or NULL */
    float *expert_scale;   /* [R] or NULL */
    moe__ffnw ex, sh;      /* routed experts held (ne); shared experts (sh.ff = 0 when none) */
    moe__mat lat_in, lat_out; /* cfg.d_latent: d_latent outputs over d; d over d_latent */
    int dpbf16;            /* 1: this CPU's VDPBF16PS agrees with MOE__KBF16DOT (it is used) */
    size_t packed_bytes;
    void *mem;             /* what MOE_MALLOC returned (the layer lives inside it) */
};

/* Points the layer at the reference (ref = 1: tests, bench) or the fast kernels. */
static void moe__select_kernels(moe_layer *L, int ref) {
    int kx = L->ex.w1.kind, ks = L->sh.w1.kind;
    if (kx == MOE__KBF16DOT && !L->dpbf16) kx = MOE__KBF16DOT_EMU;
    if (ks == MOE__KBF16DOT && !L->dpbf16) ks = MOE__KBF16DOT_EMU;
    L->router_kern = moe__kernels(L->router.kind, ref);
    L->ex.kern = moe__kernels(kx, ref);
    L->sh.kern = moe__kernels(ks, ref);
}

/* Tells the loader that expert e's buffer of tensor t (n elements an expert) is packed: its
   per_expert pointer, or its slice of the fused `data`. Once per (tensor, expert). */
static void moe__released(const moe_weights *w, const moe_tensor *t, size_t e, size_t n) {
    if (!w->on_packed || !moe__present(t)) return;
    /* experts pack in parallel; the loader's callback is called by one thread at a time */
    MOE__PRAGMA(omp critical(moe__on_packed))
    w->on_packed(w->user, moe__expert_src(t, e, n), moe__dtype_bytes(t->dtype, n));
}

/* The same for one expert's matrix of rows x K, and its scales. */
static void moe__released_mat(const moe_weights *w, const moe_tensor *t, size_t e, size_t rows,
                              size_t K) {
    size_t ns = moe__scale_count(t, rows, K);
    moe__released(w, t, e, rows * K);
    if (!w->on_packed || !ns) return;
    moe__src S = moe__src_of(t, e, rows, K);
    MOE__PRAGMA(omp critical(moe__on_packed))
    w->on_packed(w->user, S.s, ns * moe__dtype_size(t->scale_dtype));
}

/* What packing one FFN weight set needs: n_exp experts, source experts e0 + e. */
typedef struct moe__packjob {
    moe__ffnw *f;
    const moe_layer *L;
    size_t e0;
    const moe_tensor *gate, *up, *gate_up, *down, *bg, *bu, *bgu, *bd;
    moe_gate_up_split split;
    const moe_weights *w;
} moe__packjob;

/* Packs expert e of a set: gate/up (separate or fused), down, biases; reports each source. */
static void moe__task_pack(void *ctx, int el) {
    const moe__packjob *J = (const moe__packjob *)ctx;
    moe__ffnw *f = J->f;
    const moe_layer *L = J->L;
    const moe_weights *w = J->w;
    size_t d = f->dm, ff = f->ff, W1 = f->w1.w, e = (size_t)el, se = J->e0 + e;
    int fused = L->gated && moe__present(J->gate_up), fb = fused && moe__present(J->bgu);
    moe__part whole = {0, 1, d};
    for (int part = L->gated ? 0 : 1; part < 2; part++) {
        const moe_tensor *t = fused ? J->gate_up : (part ? J->up : J->gate);
        moe__part pt = moe__part_of(J->split, fused, part, ff);
        size_t lane0 = (L->gated && part) ? MOE__NR : 0;
        moe__src S = moe__src_of(t, se, pt.src_out, d);
        moe__pack_mat_s(&f->w1, e, lane0, &S, t->layout, pt);
        if (!fused || part == 1) moe__released_mat(w, t, se, pt.src_out, d);
        if (f->b1) {
            const moe_tensor *b = fb ? J->bgu : (part ? J->bu : J->bg);
            moe__part pb = moe__part_of(J->split, fb, part, ff);
            moe__pack_vec(f->b1 + e * (f->ff_pad / MOE__NR) * W1, ff, f->ff_pad, W1, lane0,
                          moe__expert_src(b, se, pb.src_out), b->dtype, pb);
            if (!fb || part == 1) moe__released(w, b, se, pb.src_out);
        }
    }
    moe__src S = moe__src_of(J->down, se, d, ff);
    moe__pack_mat_s(&f->w2, e, 0, &S, J->down->layout, moe__part_of(J->split, 0, 0, d));
    moe__released_mat(w, J->down, se, d, ff);
    if (f->b2) {
        moe__pack_vec(f->b2 + e * f->dm_pad, d, f->dm_pad, MOE__NR, 0,
                      moe__expert_src(J->bd, se, d), J->bd->dtype, whole);
        moe__released(w, J->bd, se, d);
    }
}

/* Packs an FFN weight set, experts in parallel (OpenMP, or the host's parallel_for). */
static void moe__pack_ffn(const moe__packjob *J, size_t n_exp) {
    const moe_config *c = &J->L->cfg;
    if (c->parallel_for && n_exp > 1) {
        c->parallel_for(c->pool, (int)n_exp, moe__task_pack, (void *)(uintptr_t)J);
        return;
    }
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) if(n_exp > 1))
    for (int e = 0; e < (int)n_exp; e++) moe__task_pack((void *)(uintptr_t)J, e);
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
// One call's memory, laid out in the caller's buffer. Token arrays are sized for T tokens,
// row arrays for R (token, slot) rows: R = T k for moe_forward, the caller's row count for
// moe_experts.

typedef struct moe__ws {
    float *logits;       /* [T][E] */
    float *scratch;      /* [T][4E] gating scratch */
    int32_t *ex;         /* [T][k] route: experts selected */
    float *wt;           /* [T][k] route: weights */
    unsigned char *drop; /* [T][k] 1 = over capacity */
    int32_t *slot;       /* [T][k] what combine adds: an expert, MOE_SLOT_NONE or _IDENTITY */
    int32_t *off;        /* [ne + 2] plan: first row of each held expert (ne + 1 = shared) */
    int32_t *rows;       /* [R] plan: pair id t*k + j, grouped by expert, token order */
    int32_t *toks;       /* [R] plan: token of each row */
    size_t *task;        /* [2][ne + 2] first task of each expert, phase 1 and phase 2 */
    const float **zp;    /* [T][k + 1] combine: rows to mix */
    float *zw;           /* [T][k + 1] combine: their weights */
    float *gam;          /* [T][n_shared] cfg.shared_router: the shared experts' weights */
    float *xr;           /* [T][d] cfg.router_in_norm: the router's input */
    float *xn;           /* [max(T, R)][d] cfg.expert_in_norm: the routed experts' input, normed */
    float *xl;           /* [max(T, R)][dl] cfg.d_latent: the routed experts' input, latent_in . x */
    float *yl;           /* [T][dl] cfg.d_latent: the routed sum, before latent_out */
    const float *xe;     /* [T][dl] the routed experts' input by token (x, xn or xl) */
    float *xs;           /* [R][dl] weight_on_input: scaled inputs, plan order */
    float *h;            /* [R][ff_pad] phase 1 out, plan order */
    float *z;            /* [R][dl] phase 2 out, pair order (moe_forward only) */
    float *hs;           /* [T][S_pad] shared phase 1 */
    float *zs;           /* [T][d] shared phase 2 */
    /* the phase inputs re-encoded for kernels that read another encoding than fp32 (e.g. bf16
       pairs), once per token and phase; unused when the set's kernels read fp32 */
    unsigned char *xa;   /* routed phase 1 input: [T][d], or [R][d] in plan order */
    unsigned char *ha;   /* routed phase 2 input: [R][ff] */
    unsigned char *xsa;  /* shared phase 1 input: [T][d] */
    unsigned char *hsa;  /* shared phase 2 input: [T][S] */
    /* where the routed rows come from and go (moe_experts: the caller's, in plan order) */
    const float *xin;    /* [R][d] plan-order input rows, or NULL: gather x by toks */
    const float *rwin;   /* [R] their weights (weight_on_input), with xin */
    float *zout;         /* [R][d] plan-order output rows, or NULL: z by pair id */
    const float *zsrc;   /* combine: the rows of the slots, by pair id */
    int all_slots;       /* combine: every expert slot has a row in zsrc (not only held ones) */
    size_t R;            /* routed rows of this call */
} moe__ws;

/* Lays the workspace out from `base` (NULL: only measure) for T tokens and R rows (z: 1 if the
   pair-order output z is needed). 0 on size overflow. */
static int moe__carve(const moe_layer *L, size_t T, size_t R, int z, char *base, moe__ws *w,
                      size_t *total) {
    size_t at = 0, n, TK, E = L->RO, ne = L->ne, k = L->k, TS = 0, TR = T > R ? T : R;
    int ok = moe__mul(T, k, &TK) && moe__mul(T, L->cfg.shared_router ? L->S : 0, &TS);
#define MOE__TAKE(ptr, type, count)                                                              \
    do {                                                                                         \
        ok = ok && moe__mul((count), sizeof(type), &n) && moe__add(at, n, &n) &&                 \
             moe__add(n, MOE__ALIGN, &n);                                                        \
        if (!ok) return 0;                                                                       \
        w->ptr = base ? (type *)(void *)(base + at) : NULL;                                      \
        at = n / MOE__ALIGN * MOE__ALIGN;                                                        \
    } while (0)
    size_t TE, TE4, TK1, Rl, Rf, TSs, Td, Tl, TRd, TRl;
    ok = ok && moe__mul(T, E, &TE) && moe__mul(TE, 4, &TE4) && moe__mul(T, k + 1, &TK1) &&
         moe__mul(R, L->dl, &Rl) && moe__mul(R, L->ex.ff_pad, &Rf) &&
         moe__mul(T, L->sh.ff_pad, &TSs) && moe__mul(T, L->d, &Td) && moe__mul(T, L->dl, &Tl) &&
         moe__mul(TR, L->d, &TRd) && moe__mul(TR, L->dl, &TRl);
    if (!ok) return 0;
    MOE__TAKE(logits, float, TE);
    MOE__TAKE(scratch, float, TE4 + 8 * E); /* + room for the trace's 2E doubles */
    MOE__TAKE(ex, int32_t, TK);
    MOE__TAKE(wt, float, TK);
    MOE__TAKE(drop, unsigned char, TK);
    MOE__TAKE(slot, int32_t, TK);
    MOE__TAKE(off, int32_t, ne + 2);
    MOE__TAKE(rows, int32_t, R);
    MOE__TAKE(toks, int32_t, R);
    MOE__TAKE(task, size_t, 2 * (ne + 2));
    MOE__TAKE(zp, const float *, TK1);
    MOE__TAKE(zw, float, TK1);
    MOE__TAKE(gam, float, TS);
    MOE__TAKE(xr, float, L->cfg.router_in_norm ? Td : 0);
    MOE__TAKE(xn, float, L->cfg.expert_in_norm ? TRd : 0);
    MOE__TAKE(xl, float, L->cfg.d_latent ? TRl : 0);
    MOE__TAKE(yl, float, L->cfg.d_latent ? Tl : 0);
    MOE__TAKE(xs, float, L->cfg.weight_on_input ? Rl : 0);
    MOE__TAKE(h, float, Rf);
    MOE__TAKE(z, float, z ? Rl : 0);
    MOE__TAKE(hs, float, TSs);
    MOE__TAKE(zs, float, L->sh.ff ? Td : 0);
    {
        int ax = L->ex.kern->act, as = L->sh.kern->act;
        size_t rx = moe__act_row_bytes(ax, L->d), rh = moe__act_row_bytes(ax, L->ex.ff);
        size_t rxs = moe__act_row_bytes(as, L->d), rhs = moe__act_row_bytes(as, L->sh.ff), a, b;
        ok = ok && moe__mul(T > R ? T : R, rx, &a) && moe__mul(R, rh, &b);
        MOE__TAKE(xa, unsigned char, ax != MOE__ACT_F32 ? a : 0);
        MOE__TAKE(ha, unsigned char, ax != MOE__ACT_F32 ? b : 0);
        ok = ok && moe__mul(T, rxs, &a) && moe__mul(T, rhs, &b);
        MOE__TAKE(xsa, unsigned char, L->sh.ff && as != MOE__ACT_F32 ? a : 0);
        MOE__TAKE(hsa, unsigned char, L->sh.ff && as != MOE__ACT_F32 ? b : 0);
    }
#undef MOE__TAKE
    w->xin = w->rwin = NULL, w->zout = NULL, w->zsrc = w->z, w->all_slots = 0, w->R = R;
    *total = at + MOE__ALIGN; /* room to align the caller's pointer */
    return 1;
}

/* The team size of one call (n_threads >= 0, checked by moe__begin). A count beyond what the
   process can usefully run is capped: asked for 2^31 - 1 threads, libgomp fails to allocate the
   team and calls exit(), and more threads than processors only oversubscribe them. The output
   does not depend on the count, so the cap changes timing only. */
static int moe__threads(const moe_layer *L, const moe_workspace *ws) {
    if (L->cfg.parallel_for) return L->cfg.pool_threads > 0 ? L->cfg.pool_threads : 1;
#if MOE__OMP
    int max = omp_get_max_threads(), procs = omp_get_num_procs(), limit = omp_get_thread_limit();
    int cap = max > procs ? max : procs, n = ws->n_threads;
    if (cap > limit) cap = limit;
    if (n == 0) return max;
    return n < cap ? n : cap;
#else
    (void)ws;
    return 1;
#endif
}

// ---- threads ----------------------------------------------------------------------------------
// Every parallel step of a call is a flat list of n independent tasks, run by moe__parallel:
// through the caller's parallel_for when the workspace has one, else an OpenMP loop (or a plain
// loop). Which thread runs which task never changes a result: each output element belongs to
// exactly one task.

typedef struct moe__call {
    const moe_layer *L;
    const float *x;
    size_t T;
    moe__ws *w;
    float *y;
    size_t per;          /* tokens (rows) a chunked task takes */
    size_t target;       /* phases: the work a task aims at */
    int act, set;        /* encode: the encoding; 0 routed / 1 shared */
} moe__call;

static void moe__parallel(const moe_config *c, int nth, size_t n, moe_task fn, void *ctx) {
    if (n == 0) return;
    if (c->parallel_for && n > 1) {
        c->parallel_for(c->pool, (int)n, fn, ctx);
        return;
    }
    (void)nth;
    MOE__PRAGMA(omp parallel for schedule(dynamic, 1) num_threads(nth) if(n > 1 && nth > 1))
    for (int i = 0; i < (int)n; i++) fn(ctx, i);
}

/* Cuts n items into chunks of about n / (4 nth), at least `least`: the task count. */
static size_t moe__chunks(size_t n, int nth, size_t least, size_t *per) {
    size_t p = n / (4 * (size_t)nth);
    *per = p < least ? least : p;
    return (n + *per - 1) / *per;
}

// ---- route: router, gating, capacity ----------------------------------------------------------

/* y[T][ldy] = x[T][ldx] . M^T (+ B) for one dense fp32 matrix (the router, the latent
   projections): one task per (block of 16 rows, panel of outputs). */
typedef struct moe__dns {
    const moe_layer *L;
    const moe__mat *M;
    const float *B, *x;
    float *y;
    size_t ldx, ldy, T;
} moe__dns;

static void moe__task_dense(void *ctx, int t) {
    const moe__dns *D = (const moe__dns *)ctx;
    size_t panels = D->M->panels, r0 = (size_t)t / panels * 16, p = (size_t)t % panels;
    size_t m = D->T - r0 < 16 ? D->T - r0 : 16;
    moe__rows R = moe__rows_make(D->x + r0 * D->ldx, D->ldx * sizeof(float), NULL, m,
                                 D->y + r0 * D->ldy, D->ldy, NULL);
    D->L->router_kern->gemm(D->M, 0, D->B, &R, p, p + 1);
}

static void moe__dense(const moe_layer *L, const moe__mat *M, const float *B, const float *x,
                       size_t ldx, size_t T, float *y, size_t ldy, int nth) {
    moe__dns D;
    D.L = L, D.M = M, D.B = B, D.x = x, D.ldx = ldx, D.T = T, D.y = y, D.ldy = ldy;
    moe__parallel(&L->cfg, nth, (T + 15) / 16 * M->panels, moe__task_dense, &D);
}

/* out[t] = rms(x[t]) * wt (* mult), rms(x) = x / sqrt(mean x^2 + eps): HF Gemma4RMSNorm in fp32,
   then the Gemma-4 router's scale and d^-1/2. */
typedef struct moe__nrm {
    const moe_layer *L;
    const float *x, *wt;
    float mult, *out;
    size_t T, per;
} moe__nrm;

static void moe__task_in_norm(void *ctx, int tt) {
    const moe__nrm *N = (const moe__nrm *)ctx;
    size_t d = N->L->d, t0 = (size_t)tt * N->per;
    for (size_t t = t0; t < t0 + N->per && t < N->T; t++) {
        const float *xt = N->x + t * d, *wt = N->wt;
        float *o = N->out + t * d, ss = 0.0f, mult = N->mult;
        for (size_t c = 0; c < d; c++) ss = fmaf(xt[c], xt[c], ss);
        float r = 1.0f / sqrtf(ss / (float)d + N->L->cfg.in_norm_eps);
        for (size_t c = 0; c < d; c++) o[c] = mult != 1.0f ? xt[c] * r * wt[c] * mult : xt[c] * r * wt[c];
    }
}

static void moe__in_norm(const moe_layer *L, const float *x, size_t T, const float *wt,
                         float mult, float *out, int nth) {
    moe__nrm N;
    N.L = L, N.x = x, N.T = T, N.wt = wt, N.mult = mult, N.out = out;
    moe__parallel(&L->cfg, nth, moe__chunks(T, nth, 8, &N.per), moe__task_in_norm, &N);
}

/* the logit softcap (HF laguna LagunaTopKRouter: the capped logits are "the" logits), then
   the gating of a chunk of tokens */
static void moe__task_gate(void *ctx, int t) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    size_t E = L->RO, k = L->k, t0 = (size_t)t * C->per;
    float cap = L->cfg.logit_softcap;
    for (size_t i = t0; i < t0 + C->per && i < C->T; i++) {
        float *h = C->w->logits + i * E;
        if (cap > 0.0f)
            for (size_t e = 0; e < E; e++) h[e] = tanhf(h[e] / cap) * cap;
        moe__gate(L, h, C->w->scratch + i * 4 * E, C->w->ex + i * k, C->w->wt + i * k,
                  L->cfg.shared_router ? C->w->gam + i * L->S : NULL);
    }
}

static void moe__route(const moe_layer *L, const float *x, size_t T, moe__ws *w, int nth) {
    const moe_config *c = &L->cfg;
    size_t k = L->k, n;
    moe__call C;
    memset(&C, 0, sizeof C);
    C.L = L, C.x = x, C.T = T, C.w = w;
    if (L->router_in_scale) { /* Gemma-4: norm(x) * scale * hidden_size^-0.5 */
        moe__in_norm(L, x, T, L->router_in_scale, 1.0f / sqrtf((float)L->d), w->xr, nth);
        x = w->xr;
    }
    moe__dense(L, &L->router, L->router_bias, x, L->d, T, w->logits, L->RO, nth);
    n = moe__chunks(T, nth, 16, &C.per);
    moe__parallel(&L->cfg, nth, n, moe__task_gate, &C);
    /* capacity (Switch): per expert, the first `capacity` (token, slot) pairs in token order */
    memset(w->drop, 0, T * k);
    if (c->capacity > 0) {
        int32_t *used = (int32_t *)(void *)w->scratch; /* E counters: gating is done */
        memset(used, 0, L->E * sizeof *used);
        for (size_t i = 0; i < T * k; i++)
            if ((size_t)w->ex[i] < L->E && used[w->ex[i]]++ >= c->capacity) w->drop[i] = 1;
    }
    for (size_t i = 0; i < T * k; i++) /* a zero-computation expert (>= E) outputs its input */
        w->slot[i] = w->drop[i] ? (c->drop == MOE_DROP_IDENTITY ? MOE_SLOT_IDENTITY : MOE_SLOT_NONE)
                     : (size_t)w->ex[i] < L->E ? w->ex[i] : MOE_SLOT_IDENTITY;
}

/* Counting sort of the slots the layer holds experts for, by expert; stable, so rows keep
   token order. shared: the shared experts see every token. */
static void moe__plan(const moe_layer *L, size_t T, moe__ws *w, int shared) {
    size_t ne = L->ne, k = L->k;
    int32_t *off = w->off, e0 = (int32_t)L->e0;
    memset(off, 0, (ne + 2) * sizeof *off);
    for (size_t i = 0; i < T * k; i++)
        if ((uint32_t)(w->slot[i] - e0) < (uint32_t)ne) off[w->slot[i] - e0 + 1]++;
    for (size_t e = 0; e < ne; e++) off[e + 1] += off[e];
    off[ne + 1] = off[ne] + (int32_t)(shared && L->sh.ff ? T : 0);
    for (size_t i = 0; i < T * k; i++) {
        if ((uint32_t)(w->slot[i] - e0) >= (uint32_t)ne) continue;
        int32_t at = off[w->slot[i] - e0]++;
        w->rows[at] = (int32_t)i;
        w->toks[at] = (int32_t)(i / k);
    }
    for (size_t e = ne; e > 0; e--) off[e] = off[e - 1]; /* undo the ++ shift */
    off[0] = 0;
    w->R = (size_t)off[ne];
}

// ---- expert phases ----------------------------------------------------------------------------
// Experts 0..ne-1 are the routed ones the layer holds, ne is the shared FFN (all tokens). Each
// phase is one flat list of tasks (expert, block of output panels), so a skewed routing still
// spreads over every thread. Blocks never split K, and an output belongs to exactly one task:
// the partition can change with the thread count without changing a bit of the result.

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

/* Fills task[0..ne+1] (first task of each expert) for panels_ex panels an expert (panels_sh for
   the shared one); returns the task count and, in *target, the work a task aims at: the whole
   phase's rows x panels over 8 tasks a thread. */
static size_t moe__tasks(const moe_layer *L, const moe__ws *w, size_t *task, size_t panels_ex,
                         size_t panels_sh, int nth, size_t *target) {
    size_t work = 0, n = 0, ne = L->ne;
    for (size_t e = 0; e <= ne; e++)
        work += moe__rows_of(w, e) * (e < ne ? panels_ex : panels_sh);
    *target = work / (8 * (size_t)nth);
    for (size_t e = 0; e <= ne; e++) {
        size_t np = e < ne ? panels_ex : panels_sh, rows = moe__rows_of(w, e);
        task[e] = n;
        if (rows) {
            size_t pb = moe__block(*target, rows, np);
            n += (np + pb - 1) / pb;
        }
    }
    task[ne + 1] = n;
    return n;
}

static size_t moe__task_expert(const size_t *task, size_t ne, size_t t) {
    size_t lo = 0, hi = ne; /* last e with task[e] <= t */
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (task[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Before the routed experts (phase 1): their input, x or (with moe_experts) the caller's rows,
   through Gemma-4's pre_feedforward_layernorm_2 and Nemotron-H's fc1_latent_proj where the
   layer has them. Sets w->xe (token rows) or replaces w->xin (plan rows). */
static void moe__expert_input(const moe_layer *L, const float *x, size_t T, moe__ws *w, int nth) {
    const float *src = w->xin ? w->xin : x;
    size_t n = w->xin ? w->R : T;
    if (L->expert_in_norm && n) {
        moe__in_norm(L, src, n, L->expert_in_norm, 1.0f, w->xn, nth);
        src = w->xn;
    }
    if (L->cfg.d_latent && n) {
        moe__dense(L, &L->lat_in, NULL, src, L->d, n, w->xl, L->dl, nth);
        src = w->xl;
    }
    if (w->xin) w->xin = src;
    else w->xe = src;
}

/* weight_on_input (Llama-4): the routed rows' inputs w_e x, in plan order */
static void moe__task_scale(void *ctx, int t) {
    const moe__call *C = (const moe__call *)ctx;
    const moe__ws *w = C->w;
    size_t dl = C->L->dl, i0 = (size_t)t * C->per;
    for (size_t i = i0; i < i0 + C->per && i < w->R; i++) {
        const float *xr = w->xin ? w->xin + i * dl : w->xe + (size_t)w->toks[i] * dl;
        float s = w->xin ? w->rwin[i] : w->wt[w->rows[i]], *o = w->xs + i * dl;
        for (size_t c = 0; c < dl; c++) o[c] = s * xr[c];
    }
}

/* cfg.shared_router (Inkling): shared expert s's activation times its router weight */
static void moe__task_shared_weight(void *ctx, int tt) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    size_t S = L->S, ds = (size_t)L->cfg.d_shared, ldh = L->sh.ff_pad, t0 = (size_t)tt * C->per;
    for (size_t t = t0; t < t0 + C->per && t < C->T; t++)
        for (size_t j = 0; j < S; j++) {
            float g = C->w->gam[t * S + j], *hs = C->w->hs + t * ldh + j * ds;
            for (size_t c = 0; c < ds; c++) hs[c] *= g;
        }
}

/* rows of src (stride ld floats, n used) -> dst in the kernels' encoding */
typedef struct moe__enc {
    int act;
    const float *src;
    size_t ld, n, rows, per;
    unsigned char *dst;
} moe__enc;

static void moe__task_encode(void *ctx, int t) {
    const moe__enc *E = (const moe__enc *)ctx;
    size_t rb = moe__act_row_bytes(E->act, E->n), i0 = (size_t)t * E->per;
    for (size_t i = i0; i < i0 + E->per && i < E->rows; i++)
        moe__act_encode(E->act, E->src + i * E->ld, E->n, E->dst + i * rb);
}

static void moe__encode(const moe_config *cfg, int nth, int act, const float *src, size_t ld,
                        size_t n, size_t rows, unsigned char *dst) {
    moe__enc E;
    E.act = act, E.src = src, E.ld = ld, E.n = n, E.rows = rows, E.dst = dst;
    moe__parallel(cfg, nth, moe__chunks(rows, nth, 8, &E.per), moe__task_encode, &E);
}

/* Before phase 1 (phase 0) or phase 2 (phase 1): the inputs of the sets whose kernels read
   another encoding than fp32. */
static void moe__encode_inputs(const moe_layer *L, const float *x, size_t T, moe__ws *w,
                               int phase, int nth) {
    int ax = L->ex.kern->act, as = L->sh.kern->act;
    size_t R = w->R, d = L->d, dl = L->dl, S = moe__rows_of(w, L->ne);
    if (phase == 0) {
        if (ax && L->cfg.weight_on_input) moe__encode(&L->cfg, nth, ax, w->xs, dl, dl, R, w->xa);
        else if (ax && w->xin) moe__encode(&L->cfg, nth, ax, w->xin, dl, dl, R, w->xa);
        else if (ax && R) moe__encode(&L->cfg, nth, ax, w->xe, dl, dl, T, w->xa);
        if (as && S) moe__encode(&L->cfg, nth, as, x, d, d, T, w->xsa);
    } else {
        if (ax) moe__encode(&L->cfg, nth, ax, w->h, L->ex.ff_pad, L->ex.ff, R, w->ha);
        if (as && S) moe__encode(&L->cfg, nth, as, w->hs, L->sh.ff_pad, L->sh.ff, T, w->hsa);
    }
}

static void moe__task_phase1(void *ctx, int t) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    const moe__ws *w = C->w;
    size_t ne = L->ne, *task = w->task;
    size_t e = moe__task_expert(task, ne, (size_t)t), m = moe__rows_of(w, e);
    const moe__ffnw *f = e < ne ? &L->ex : &L->sh;
    size_t fe = e < ne ? e : 0, np = f->ff_pad / MOE__NR, pb = moe__block(C->target, m, np);
    size_t p0 = ((size_t)t - task[e]) * pb, p1 = p0 + pb < np ? p0 + pb : np;
    int act = f->kern->act;
    size_t rb = moe__act_row_bytes(act, f->dm); /* one input row: dl wide routed, d shared */
    moe__rows R = moe__rows_make(act ? w->xsa : (const unsigned char *)C->x, rb, NULL, m, w->hs,
                                 f->ff_pad, NULL);
    if (e < ne) {
        size_t o = (size_t)w->off[e];
        R.y = w->h + o * f->ff_pad;
        if (L->cfg.weight_on_input || w->xin) /* the inputs are in plan order */
            R.x = (act ? w->xa : (const unsigned char *)(L->cfg.weight_on_input ? w->xs : w->xin)) +
                  o * rb;
        else
            R.x = act ? w->xa : (const unsigned char *)w->xe, R.xi = w->toks + o;
    }
    const float *B = f->b1 ? f->b1 + fe * np * f->w1.w : NULL;
    f->kern->ffn1(e < ne ? &L->act : &L->sh_act, &f->w1, fe, B, &R, p0, p1);
}

static void moe__task_phase2(void *ctx, int t) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    const moe__ws *w = C->w;
    size_t ne = L->ne, *task = w->task + ne + 2;
    size_t e = moe__task_expert(task, ne, (size_t)t), m = moe__rows_of(w, e);
    const moe__ffnw *f = e < ne ? &L->ex : &L->sh;
    size_t np = f->dm_pad / MOE__NR, dm = f->dm;
    size_t pb = moe__block(C->target, m, np), p0 = ((size_t)t - task[e]) * pb;
    size_t p1 = p0 + pb < np ? p0 + pb : np;
    size_t fe = e < ne ? e : 0, o = e < ne ? (size_t)w->off[e] : 0;
    int act = f->kern->act;
    size_t rb = act ? moe__act_row_bytes(act, f->ff) : f->ff_pad * sizeof(float);
    const unsigned char *H = act ? (e < ne ? w->ha : w->hsa)
                                 : (const unsigned char *)(e < ne ? w->h : w->hs);
    moe__rows R = moe__rows_make(H + o * rb, rb, NULL, m, w->zs, dm, NULL);
    if (e < ne) {
        if (w->zout) R.y = w->zout + o * dm;
        else R.y = w->z, R.yi = w->rows + o;
    }
    f->kern->gemm(&f->w2, fe, f->b2 ? f->b2 + fe * f->dm_pad : NULL, &R, p0, p1);
}

/* The expert phases of the plan in w: phase 1 = the routed experts' input (norm, latent),
   scale (weight_on_input), encode, gate/up and activation (then the shared experts' router
   weights); phase 2 = encode, down. */
static void moe__run_phase(const moe_layer *L, const float *x, size_t T, moe__ws *w, int nth,
                           int phase) {
    moe__call C;
    size_t n;
    memset(&C, 0, sizeof C);
    C.L = L, C.x = x, C.T = T, C.w = w;
    if (phase == 1) {
        moe__expert_input(L, x, T, w, nth);
        if (L->cfg.weight_on_input && w->R)
            moe__parallel(&L->cfg, nth, moe__chunks(w->R, nth, 8, &C.per), moe__task_scale, &C);
        moe__encode_inputs(L, x, T, w, 0, nth);
        n = moe__tasks(L, w, w->task, L->ex.ff_pad / MOE__NR, L->sh.ff_pad / MOE__NR, nth,
                       &C.target);
        moe__parallel(&L->cfg, nth, n, moe__task_phase1, &C);
        if (L->cfg.shared_router && moe__rows_of(w, L->ne))
            moe__parallel(&L->cfg, nth, moe__chunks(T, nth, 8, &C.per), moe__task_shared_weight,
                          &C);
    } else {
        moe__encode_inputs(L, x, T, w, 1, nth);
        n = moe__tasks(L, w, w->task + L->ne + 2, L->ex.dm_pad / MOE__NR, L->sh.dm_pad / MOE__NR,
                       nth, &C.target);
        moe__parallel(&L->cfg, nth, n, moe__task_phase2, &C);
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

/* y[t] = sum_j w[t][j] Z[t k + j] in slot order, then + g(t) * shared[t], as one fp32 chain.
   A slot adds its expert's row (if the layer holds the expert, or every expert slot when
   w->all_slots), w x (MOE_SLOT_IDENTITY: capacity IDENTITY, a zero-computation expert; x as
   the routed experts see it), or nothing (MOE_SLOT_NONE). scale_on_sum: the routed part is its
   own chain, times scale, then + g(t) * shared[t]. MOE_SHARED_AVERAGE halves every factor,
   which is exact, so the chain is that of the sum. With a latent space the routed chain is
   d_latent wide, and latent_out maps it to d before the shared output joins (see
   moe__combine_all). Then + output_bias, then the output norm. */
static void moe__task_combine(void *ctx, int tt) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    const moe__ws *w = C->w;
    const float *x = C->x, *xe = w->xe;
    float *y = C->y, half = L->cfg.shared_combine == MOE_SHARED_AVERAGE && L->sh.ff ? 0.5f : 1.0f;
    int on_sum = L->cfg.scale_on_sum && L->cfg.scale != 1.0f, lat = L->cfg.d_latent > 0;
    size_t k = L->k, d = L->d, dl = L->dl, t0 = (size_t)tt * C->per;
    for (size_t t = t0; t < t0 + C->per && t < C->T; t++) {
        size_t n = 0;
        const float **zp = w->zp + t * (k + 1);
        float *zw = w->zw + t * (k + 1);
        for (size_t j = 0; j < k; j++) {
            size_t i = t * k + j;
            int32_t s = w->slot[i];
            if (s == MOE_SLOT_IDENTITY) {
                zp[n] = xe + t * dl, zw[n++] = w->wt[i] * half;
            } else if (s >= 0 && (w->all_slots || (size_t)(s - (int32_t)L->e0) < L->ne)) {
                zp[n] = w->zsrc + i * dl;
                zw[n++] = (L->cfg.weight_on_input ? 1.0f : w->wt[i]) * half;
            }
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
}

/* Nemotron-H, after fc2_latent_proj(routed sum): (* scale), + shared_experts(x), the output
   bias and norm */
static void moe__task_combine_latent(void *ctx, int tt) {
    const moe__call *C = (const moe__call *)ctx;
    const moe_layer *L = C->L;
    size_t d = L->d, t0 = (size_t)tt * C->per;
    float half = L->cfg.shared_combine == MOE_SHARED_AVERAGE && L->sh.ff ? 0.5f : 1.0f;
    int on_sum = L->cfg.scale_on_sum && L->cfg.scale != 1.0f;
    for (size_t t = t0; t < t0 + C->per && t < C->T; t++) {
        float g = moe__shared_factor(L, C->x + t * d, half), *yt = C->y + t * d, sc = L->cfg.scale;
        const float *zs = C->w->zs + t * d;
        for (size_t c = 0; c < d; c++) {
            float r = on_sum ? yt[c] * sc : yt[c];
            yt[c] = L->sh.ff ? fmaf(g, zs[c], r) : r;
        }
        moe__out_post(L, yt);
    }
}

static void moe__combine_all(const moe_layer *L, const float *x, size_t T, float *y, moe__ws *w,
                             int nth) {
    moe__call C;
    size_t n;
    memset(&C, 0, sizeof C);
    C.L = L, C.x = x, C.T = T, C.w = w, C.y = y;
    n = moe__chunks(T, nth, 4, &C.per);
    moe__parallel(&L->cfg, nth, n, moe__task_combine, &C);
    if (!L->cfg.d_latent) return;
    moe__dense(L, &L->lat_out, NULL, w->yl, L->dl, T, y, L->d, nth);
    moe__parallel(&L->cfg, nth, n, moe__task_combine_latent, &C);
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
    case MOE_E_DOT:
        return "dot = MOE_DOT_BF16 needs format or shared_format MOE_FORMAT_BF16 (or AUTO)";
    case MOE_E_SUBSET:
        return "expert_begin and expert_count must select experts within 0..n_experts-1";
    case MOE_E_EXPERT:
        return "an expert id is neither an expert (0..n_experts-1) nor MOE_SLOT_NONE or "
               "MOE_SLOT_IDENTITY";
    case MOE_E_SIZE: return "a weight tensor's n_elems is not the size the config needs";
    case MOE_E_OFFSETS:
        return "moe_experts offsets must start at 0, never decrease, and hold under 2^31 rows";
    case MOE_E_THREADS: return "moe_workspace.n_threads is negative (0 means all threads)";
    case MOE_E_NORM_P:
        return "norm_p must be at least 1 and at most 126 / log2(n_experts) (so that the top-1 "
               "weight to the power norm_p stays a normal float)";
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
    if ((unsigned)c.score >= MOE_SCORE_COUNT || (unsigned)c.group_score >= MOE_GROUP_SCORE_COUNT ||
        (unsigned)c.norm >= MOE_NORM_COUNT || (unsigned)c.drop >= MOE_DROP_COUNT ||
        (unsigned)c.ffn >= MOE_FFN_COUNT || (unsigned)c.act >= MOE_ACT_COUNT ||
        (unsigned)c.shared_gate >= MOE_SHARED_GATE_COUNT || (unsigned)c.format >= MOE_FORMAT_COUNT ||
        (unsigned)c.shared_format >= MOE_FORMAT_COUNT || (unsigned)c.dot >= MOE_DOT_COUNT ||
        (unsigned)c.group_fill >= MOE_GROUP_FILL_COUNT ||
        (unsigned)c.shared_combine >= MOE_SHARED_COMBINE_COUNT ||
        (unsigned)c.out_norm >= MOE_OUT_NORM_COUNT)
        return MOE_E_OPTION;
    if (c.dot == MOE_DOT_BF16 && c.format != MOE_FORMAT_AUTO && c.format != MOE_FORMAT_BF16 &&
        (c.n_shared == 0 ||
         (c.shared_format != MOE_FORMAT_AUTO && c.shared_format != MOE_FORMAT_BF16)))
        return MOE_E_DOT;
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
    if (c.expert_begin < 0 || c.expert_count < 0 || c.expert_begin >= c.n_experts ||
        c.expert_count > c.n_experts - c.expert_begin)
        return MOE_E_SUBSET;
    if (c.expert_count == 0) c.expert_count = c.n_experts - c.expert_begin;
    if (c.d_shared == 0) c.d_shared = c.d_ff;
    if (c.norm_p == 0.0f) c.norm_p = 1.0f;
    /* under softmax, softmax-of-the-selected and sparsemixer scores the top-1 weight w >= 1/E,
       so w^p >= 2^-126 keeps the sum a normal float; 1/p and k^(1/p) stay finite for p >= 1 */
    if (c.norm_p < 1.0f || (double)c.norm_p * log2((double)R) > 126.0)
        return MOE_E_NORM_P;
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

/* The error message of moe_layer_create_msg (msg may be NULL); the first one written wins. */
typedef struct moe__msg {
    char *s;
    size_t n;
} moe__msg;

#if defined(__GNUC__) || defined(__clang__)
static void moe__say(moe__msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static void moe__say(moe__msg *m, const char *fmt, ...) {
    va_list ap;
    if (!m->s || !m->n || m->s[0]) return;
    va_start(ap, fmt);
    vsnprintf(m->s, m->n, fmt, ap);
    va_end(ap);
}

/* A tensor is usable if absent (returns 0) or present with valid enums and, per expert, a
   pointer for every expert of e0..e1 (returns 1); otherwise the error goes to *r. */
static int moe__tensor_ok(const moe_tensor *t, const char *name, size_t e0, size_t e1,
                          moe_result missing, moe_result *r, moe__msg *m) {
    if (!moe__present(t)) return 0;
    if ((unsigned)t->dtype >= MOE_E8M0 || (unsigned)t->layout >= MOE_LAYOUT_COUNT) {
        if (*r == MOE_OK) *r = MOE_E_DTYPE;
        moe__say(m, "weights.%s: unknown dtype %d or layout %d", name, (int)t->dtype,
                 (int)t->layout);
        return 1;
    }
    if (!t->data)
        for (size_t e = e0; e < e1; e++)
            if (!t->per_expert[e] && *r == MOE_OK) {
                *r = missing;
                moe__say(m, "weights.%s: per_expert[%zu] is NULL", name, e);
            }
    return 1;
}

static moe_result moe__weights_check(const moe_config *c, const moe_weights *w, moe__msg *m) {
    moe_result r = MOE_OK;
    size_t e0 = (size_t)c->expert_begin, e1 = e0 + (size_t)c->expert_count;
    int gated = c->ffn == MOE_FFN_GATED;
#define MOE__HAS(t, ex, code) moe__tensor_ok(&w->t, #t, (ex) ? e0 : 0, (ex) ? e1 : 1, (code), &r, m)
    if (!MOE__HAS(router, 0, MOE_E_NO_ROUTER)) return MOE_E_NO_ROUTER;
    if (c->router_bias && !MOE__HAS(router_bias, 0, MOE_E_NO_ROUTER_BIAS))
        return MOE_E_NO_ROUTER_BIAS;
    if (c->select_bias && !MOE__HAS(select_bias, 0, MOE_E_NO_SELECT_BIAS))
        return MOE_E_NO_SELECT_BIAS;
    int fused = gated && MOE__HAS(gate_up, 1, MOE_E_NO_EXPERTS);
    int has_gu = fused || (gated ? MOE__HAS(gate, 1, MOE_E_NO_EXPERTS) : 1);
    has_gu = has_gu && (fused || MOE__HAS(up, 1, MOE_E_NO_EXPERTS));
    if (!has_gu || !MOE__HAS(down, 1, MOE_E_NO_EXPERTS)) return MOE_E_NO_EXPERTS;
    if (c->expert_bias) {
        int b1 = fused && MOE__HAS(gate_up_bias, 1, MOE_E_NO_EXPERT_BIAS);
        if (!b1) b1 = (gated ? MOE__HAS(gate_bias, 1, MOE_E_NO_EXPERT_BIAS) : 1) &&
                      MOE__HAS(up_bias, 1, MOE_E_NO_EXPERT_BIAS);
        if (!b1 || !MOE__HAS(down_bias, 1, MOE_E_NO_EXPERT_BIAS)) return MOE_E_NO_EXPERT_BIAS;
    }
    if (c->n_shared > 0) {
        int sf = gated && MOE__HAS(shared_gate_up, 0, MOE_E_NO_SHARED);
        int ok = sf || ((gated ? MOE__HAS(shared_gate_proj, 0, MOE_E_NO_SHARED) : 1) &&
                        MOE__HAS(shared_up, 0, MOE_E_NO_SHARED));
        if (!ok || !MOE__HAS(shared_down, 0, MOE_E_NO_SHARED)) return MOE_E_NO_SHARED;
        if (c->shared_gate && !MOE__HAS(shared_gate, 0, MOE_E_NO_SHARED_GATE))
            return MOE_E_NO_SHARED_GATE;
    }
    if (c->output_bias && !MOE__HAS(output_bias, 0, MOE_E_NO_OUTPUT_BIAS))
        return MOE_E_NO_OUTPUT_BIAS;
    if (c->out_norm && !MOE__HAS(out_norm, 0, MOE_E_NO_OUT_NORM)) return MOE_E_NO_OUT_NORM;
    if (c->d_latent && (!MOE__HAS(latent_in, 0, MOE_E_NO_LATENT) ||
                        !MOE__HAS(latent_out, 0, MOE_E_NO_LATENT)))
        return MOE_E_NO_LATENT;
    if ((c->router_in_norm && !MOE__HAS(router_in_scale, 0, MOE_E_NO_IN_NORM)) ||
        (c->expert_in_norm && !MOE__HAS(expert_in_norm, 0, MOE_E_NO_IN_NORM)) ||
        (c->expert_scale && !MOE__HAS(expert_scale, 0, MOE_E_NO_IN_NORM)))
        return MOE_E_NO_IN_NORM;
    if ((unsigned)w->gate_up_split >= MOE_SPLIT_COUNT ||
        (unsigned)w->shared_gate_up_split >= MOE_SPLIT_COUNT)
        return MOE_E_OPTION;
#undef MOE__HAS
    if (r != MOE_OK) return r;

    /* stated sizes: elements of one expert's buffer, times E for a fused `data` view */
    {
        size_t E = (size_t)c->n_experts, d = (size_t)c->d_model, ff = (size_t)c->d_ff;
        size_t S = (size_t)c->n_shared * (size_t)c->d_shared, bias = (size_t)c->expert_bias;
        size_t Rc = E + (size_t)c->n_zero_experts, dl = c->d_latent ? (size_t)c->d_latent : d;
        size_t RO = Rc + (c->shared_router ? (size_t)c->n_shared : 0);
        struct {
            const char *name;
            const moe_tensor *t;
            size_t rows, cols;
            int per_expert, used, mat;
        } v[] = {
            {"router", &w->router, RO, d, 0, 1, 0},
            {"router_bias", &w->router_bias, 1, RO, 0, c->router_bias, 0},
            {"select_bias", &w->select_bias, 1, Rc, 0, c->select_bias, 0},
            {"gate", &w->gate, ff, dl, 1, gated && !fused, 1},
            {"up", &w->up, ff, dl, 1, !fused, 1},
            {"gate_up", &w->gate_up, 2 * ff, dl, 1, fused, 1},
            {"down", &w->down, dl, ff, 1, 1, 1},
            {"gate_bias", &w->gate_bias, 1, ff, 1, (int)bias && gated && !moe__present(&w->gate_up_bias), 0},
            {"up_bias", &w->up_bias, 1, ff, 1, (int)bias && !(fused && moe__present(&w->gate_up_bias)), 0},
            {"gate_up_bias", &w->gate_up_bias, 1, 2 * ff, 1, (int)bias && fused, 0},
            {"down_bias", &w->down_bias, 1, dl, 1, (int)bias, 0},
            {"shared_gate_proj", &w->shared_gate_proj, S, d, 0, S && gated && !moe__present(&w->shared_gate_up), 1},
            {"shared_up", &w->shared_up, S, d, 0, S && !(gated && moe__present(&w->shared_gate_up)), 1},
            {"shared_gate_up", &w->shared_gate_up, 2 * S, d, 0, S && gated, 1},
            {"shared_down", &w->shared_down, d, S, 0, S > 0, 1},
            {"shared_gate", &w->shared_gate, 1, d, 0, c->shared_gate != 0, 0},
            {"output_bias", &w->output_bias, 1, d, 0, c->output_bias, 0},
            {"out_norm", &w->out_norm, 1, d, 0, c->out_norm != 0, 0},
            {"latent_in", &w->latent_in, dl, d, 0, c->d_latent > 0, 0},
            {"latent_out", &w->latent_out, d, dl, 0, c->d_latent > 0, 0},
            {"router_in_scale", &w->router_in_scale, 1, d, 0, c->router_in_norm, 0},
            {"expert_in_norm", &w->expert_in_norm, 1, d, 0, c->expert_in_norm, 0},
            {"expert_scale", &w->expert_scale, 1, Rc, 0, c->expert_scale, 0},
        };
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            const moe_tensor *t = v[i].t;
            size_t need = v[i].rows * v[i].cols, n_e = v[i].per_expert && t->data ? E : 1, all;
            if (!v[i].used || !moe__present(t) || !t->n_elems) continue;
            if (!moe__mul(need, n_e, &all)) return MOE_E_OVERFLOW;
            if (t->n_elems != all) {
                if (n_e > 1)
                    moe__say(m, "weights.%s: %zu elements stated, %zu needed (%zu experts x %zu x %zu)",
                             v[i].name, t->n_elems, all, E, v[i].rows, v[i].cols);
                else
                    moe__say(m, "weights.%s: %zu elements stated%s, %zu needed (%zu x %zu)",
                             v[i].name, t->n_elems, t->data ? "" : " per expert", all, v[i].rows,
                             v[i].cols);
                return MOE_E_SIZE;
            }
        }
        /* block dtypes: expert matrices only, [out][in], K a whole number of blocks, scales */
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            const moe_tensor *t = v[i].t;
            moe_dtype dt = t->dtype, sd = t->scale_dtype;
            size_t K = v[i].cols, G = moe__dtype_group(dt);
            if (!v[i].used || !moe__present(t) || !moe__dtype_block(dt)) continue;
            if (!v[i].mat) {
                moe__say(m, "weights.%s: a block dtype (%d) is for expert matrices only", v[i].name, (int)dt);
                return MOE_E_DTYPE;
            }
            if (t->layout != MOE_OUT_IN || K % G) {
                moe__say(m, "weights.%s: a block dtype needs layout MOE_OUT_IN and an input width "
                         "that is a multiple of %zu (it is %zu)", v[i].name, G, K);
                return MOE_E_DTYPE;
            }
            int need = dt == MOE_F8_E4M3 || dt == MOE_MXFP4 || dt == MOE_INT4;
            int sd_ok = dt == MOE_MXFP4 ? sd == MOE_E8M0
                      : dt == MOE_INT4 ? sd == MOE_F32 || sd == MOE_BF16 || sd == MOE_F16
                      : (unsigned)sd <= MOE_F16 || sd == MOE_E8M0;
            if (need && (!sd_ok || (t->data ? !t->scale : !t->scale_per_expert) ||
                         t->block_out < 0 || t->block_in < 0)) {
                moe__say(m, "weights.%s: dtype %d needs its scales (scale or scale_per_expert, a "
                         "valid scale_dtype, block sizes >= 0)", v[i].name, (int)dt);
                return MOE_E_DTYPE;
            }
            if (need && t->scale_per_expert && !t->data)
                for (size_t e = v[i].per_expert ? e0 : 0; e < (v[i].per_expert ? e1 : 1); e++)
                    if (!t->scale_per_expert[e]) {
                        moe__say(m, "weights.%s: scale_per_expert[%zu] is NULL", v[i].name, e);
                        return MOE_E_DTYPE;
                    }
        }
    }
    return MOE_OK;
}

/* An expert set's packed format, MOE_FORMAT_AUTO resolved from its source tensors t[0..n). */
static moe_format moe__resolve_format(moe_format f, moe_dot dot, const moe_tensor *const *t, int n) {
    int bf = 1, hf = 1, f8 = 1, mx = 1, q8 = 1, q4 = 1;
    if (f != MOE_FORMAT_AUTO) return f;
    if (dot == MOE_DOT_BF16) return MOE_FORMAT_BF16;
    for (int i = 0; i < n; i++) {
        if (!moe__present(t[i])) continue;
        moe_dtype dt = t[i]->dtype;
        bf &= dt == MOE_BF16, hf &= dt == MOE_F16, f8 &= dt == MOE_F8_E4M3;
        mx &= dt == MOE_MXFP4 || dt == MOE_MXFP4_GGUF, q8 &= dt == MOE_Q8_0;
        q4 &= dt == MOE_Q4_0 || dt == MOE_INT4;
    }
    return bf ? MOE_FORMAT_BF16 : hf ? MOE_FORMAT_F16 : f8 ? MOE_FORMAT_FP8 : mx ? MOE_FORMAT_MXFP4
         : q8 ? MOE_FORMAT_Q8 : q4 ? MOE_FORMAT_Q4 : MOE_FORMAT_F32; /* Q4_K, mixed: f32 */
}

/* q4 keeps compressed-tensors INT4's bf16 scales as they are: the matrix's scales are bf16 when
   every source of it is INT4 with BF16 scales. */
static int moe__scales_bf16(const moe_tensor *const *t, int n) {
    int any = 0, all = 1;
    for (int i = 0; i < n; i++)
        if (moe__present(t[i]))
            any = 1, all &= t[i]->dtype == MOE_INT4 && t[i]->scale_dtype == MOE_BF16;
    return any && all;
}

static int moe__format_kind(moe_format f, moe_dot dot) {
    if (f == MOE_FORMAT_FP8) return MOE__KFP8;
    if (f == MOE_FORMAT_MXFP4) return MOE__KMXFP4;
    if (f == MOE_FORMAT_Q8) return MOE__KQ8;
    if (f == MOE_FORMAT_Q4) return MOE__KQ4;
    if (f == MOE_FORMAT_BF16) return dot == MOE_DOT_BF16 ? MOE__KBF16DOT : MOE__KBF16;
    return f == MOE_FORMAT_F16 ? MOE__KF16 : MOE__KF32;
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
        size_t ne = s ? (f->ff ? 1 : 0) : L->ne, b1 = 0, b2 = 0;
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

static moe_result moe__create(moe_layer **out, const moe_config *cfg, const moe_weights *w,
                              moe__msg *m) {
    moe_config c;
    moe_result r;
    moe_layer L;
    size_t S, total, rb;
    if (!out) return MOE_E_NULL;
    *out = NULL;
    if (!w) return MOE_E_NULL;
    if ((r = moe__config(cfg, &c)) != MOE_OK) return r;
    if ((r = moe__weights_check(&c, w, m)) != MOE_OK) return r;

    memset(&L, 0, sizeof L);
    L.cfg = c;
    L.act.act = c.act, L.act.alpha = c.act_alpha, L.act.limit = c.act_limit;
    L.sh_act = L.act, L.sh_act.limit = c.shared_act_limit;
    L.gated = c.ffn == MOE_FFN_GATED;
    L.d = (size_t)c.d_model, L.E = (size_t)c.n_experts, L.k = (size_t)c.top_k;
    L.R = L.E + (size_t)c.n_zero_experts;
    L.S = (size_t)c.n_shared, L.RO = L.R + (c.shared_router ? L.S : 0);
    L.dl = c.d_latent ? (size_t)c.d_latent : L.d;
    L.e0 = (size_t)c.expert_begin, L.ne = (size_t)c.expert_count;
    L.d_pad = moe__round_up(L.d, MOE__NR);
    L.e_pad = moe__round_up(L.RO, MOE__NR);
    {
        const moe_tensor *tx[4] = {&w->gate, &w->up, &w->gate_up, &w->down};
        const moe_tensor *ts[4] = {&w->shared_gate_proj, &w->shared_up, &w->shared_gate_up,
                                   &w->shared_down};
        c.format = moe__resolve_format(c.format, c.dot, tx, 4);
        c.shared_format = c.n_shared ? moe__resolve_format(c.shared_format, c.dot, ts, 4) : c.format;
        if (c.dot == MOE_DOT_BF16 && c.format != MOE_FORMAT_BF16 &&
            (!c.n_shared || c.shared_format != MOE_FORMAT_BF16))
            return MOE_E_DOT;
        L.cfg = c;
    }
    int kx = moe__format_kind(c.format, c.dot), ks = moe__format_kind(c.shared_format, c.dot);
    const moe_tensor *tdown = &w->down, *tsdown = &w->shared_down;
    if (!moe__mul((size_t)c.n_shared, (size_t)c.d_shared, &S) ||
        !moe__mat_init(&L.router, MOE__KF32, L.RO, L.d, MOE__NR, 1, &rb) ||
        !moe__ffn_init(&L, &L.ex, kx, L.ne, (size_t)c.d_ff, L.dl) ||
        (S && !moe__ffn_init(&L, &L.sh, ks, 1, S, L.d)) ||
        (c.d_latent && (!moe__mat_init(&L.lat_in, MOE__KF32, L.dl, L.d, MOE__NR, 1, &rb) ||
                        !moe__mat_init(&L.lat_out, MOE__KF32, L.d, L.dl, MOE__NR, 1, &rb))) ||
        !moe__layer_carve(&L, NULL, &total))
        return MOE_E_OVERFLOW;
    if (kx == MOE__KQ4) {
        const moe_tensor *a[3] = {&w->gate, &w->up, &w->gate_up};
        L.ex.w1.scale_bf16 = moe__scales_bf16(a, 3), L.ex.w2.scale_bf16 = moe__scales_bf16(&tdown, 1);
    }
    if (S && ks == MOE__KQ4) {
        const moe_tensor *a[3] = {&w->shared_gate_proj, &w->shared_up, &w->shared_gate_up};
        L.sh.w1.scale_bf16 = moe__scales_bf16(a, 3), L.sh.w2.scale_bf16 = moe__scales_bf16(&tsdown, 1);
    }
    if (kx == MOE__KBF16DOT || (S && ks == MOE__KBF16DOT)) L.dpbf16 = moe__dpbf16_agrees();
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
    {
        moe__packjob J;
        J.f = &L.ex, J.L = &L, J.e0 = L.e0, J.split = w->gate_up_split, J.w = w;
        J.gate = &w->gate, J.up = &w->up, J.gate_up = &w->gate_up, J.down = &w->down;
        J.bg = &w->gate_bias, J.bu = &w->up_bias, J.bgu = &w->gate_up_bias, J.bd = &w->down_bias;
        moe__pack_ffn(&J, L.ne);
        if (S) {
            moe_tensor none;
            memset(&none, 0, sizeof none);
            J.f = &L.sh, J.e0 = 0, J.split = w->shared_gate_up_split;
            J.gate = &w->shared_gate_proj, J.up = &w->shared_up, J.gate_up = &w->shared_gate_up;
            J.down = &w->shared_down, J.bg = J.bu = J.bgu = J.bd = &none;
            moe__pack_ffn(&J, 1);
        }
    }
    memcpy(base, &L, sizeof L);
    *out = (moe_layer *)(void *)base;
    return MOE_OK;
}

MOEDEF moe_result moe_layer_create_msg(moe_layer **out, const moe_config *cfg,
                                       const moe_weights *w, char *msg, size_t msg_size) {
    moe__msg m;
    m.s = msg, m.n = msg_size;
    if (msg && msg_size) msg[0] = '\0';
    moe_result r = moe__create(out, cfg, w, &m);
    if (r != MOE_OK) moe__say(&m, "%s", moe_result_string(r));
    return r;
}

MOEDEF moe_result moe_layer_create(moe_layer **out, const moe_config *cfg, const moe_weights *w) {
    return moe_layer_create_msg(out, cfg, w, NULL, 0);
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

MOEDEF moe_result moe_layer_sizes(const moe_layer *L, moe_packed_sizes *o) {
    if (!L || !o) return MOE_E_NULL;
    memset(o, 0, sizeof *o);
    size_t gw = L->gated ? 3 : 2, b1 = L->ex.b1 ? (L->ex.ff_pad / MOE__NR) * L->ex.w1.w * 4 : 0;
    size_t b2 = L->ex.b2 ? L->ex.dm_pad * 4 : 0;
    o->router = L->router.expert_bytes + (L->router_bias ? L->e_pad * 4 : 0) +
                (L->cfg.d_latent ? L->lat_in.expert_bytes + L->lat_out.expert_bytes : 0);
    o->expert = L->ex.w1.expert_bytes + L->ex.w2.expert_bytes + b1 + b2;
    o->experts = o->expert * L->ne;
    o->shared = L->sh.ff ? L->sh.w1.expert_bytes + L->sh.w2.expert_bytes : 0;
    o->total = L->packed_bytes;
    o->format = L->cfg.format, o->shared_format = L->cfg.shared_format;
    o->bits_per_weight = 8.0 * (double)(L->ex.w1.expert_bytes + L->ex.w2.expert_bytes) /
                         ((double)gw * (double)L->dl * (double)L->ex.ff);
    if (L->sh.ff)
        o->shared_bits_per_weight = 8.0 * (double)o->shared / ((double)gw * (double)L->d * (double)L->sh.ff);
    return MOE_OK;
}

MOEDEF moe_result moe_workspace_size(const moe_layer *layer, size_t n_tokens, size_t *bytes) {
    moe__ws w;
    if (!layer || !bytes) return MOE_E_NULL;
    *bytes = 0;
    if (n_tokens > (size_t)INT32_MAX / layer->k) return MOE_E_OVERFLOW;
    return moe__carve(layer, n_tokens, n_tokens * layer->k, 1, NULL, &w, bytes) ? MOE_OK
                                                                               : MOE_E_OVERFLOW;
}

MOEDEF moe_result moe_experts_workspace_size(const moe_layer *layer, size_t n_rows, size_t *bytes) {
    moe__ws w;
    if (!layer || !bytes) return MOE_E_NULL;
    *bytes = 0;
    if (n_rows > (size_t)INT32_MAX) return MOE_E_OVERFLOW;
    return moe__carve(layer, 0, n_rows, 0, NULL, &w, bytes) ? MOE_OK : MOE_E_OVERFLOW;
}

/* A call with no tokens computes nothing and needs no workspace (ws may be NULL); the trace
   gets its zeros. */
static moe_result moe__no_tokens(const moe_layer *L, const moe_workspace *ws, moe_trace *tr) {
    if (!L) return MOE_E_NULL;
    if (ws && ws->n_threads < 0) return MOE_E_THREADS;
    if (tr) {
        tr->n_dropped = 0;
        tr->aux_loss = tr->z_loss = 0.0;
        for (size_t e = 0; e < L->RO; e++) {
            if (tr->expert_tokens) tr->expert_tokens[e] = 0;
            if (tr->mean_prob) tr->mean_prob[e] = 0.0f;
        }
    }
    return MOE_OK;
}

/* Checks the workspace and lays it out for T tokens and R rows. */
static moe_result moe__begin(const moe_layer *L, size_t T, size_t R, int z, const moe_workspace *ws,
                             moe__ws *w) {
    size_t need;
    if (!ws) return MOE_E_NULL;
    if (ws->n_threads < 0) return MOE_E_THREADS;
    if (T > (size_t)INT32_MAX / L->k || R > (size_t)INT32_MAX) return MOE_E_OVERFLOW;
    if (!moe__carve(L, T, R, z, NULL, w, &need)) return MOE_E_OVERFLOW;
    if (!ws->data || ws->size < need) return MOE_E_WORKSPACE;
    char *base = MOE__CAST(char *, ws->data);
    base += (MOE__ALIGN - (size_t)((uintptr_t)base % MOE__ALIGN)) % MOE__ALIGN;
    moe__carve(L, T, R, z, base, w, &need);
    return MOE_OK;
}

/* Copies caller slots into the workspace, checking every id. */
static moe_result moe__take_slots(const moe_layer *L, size_t T, const int32_t *expert,
                                  const float *weight, moe__ws *w) {
    for (size_t i = 0; i < T * L->k; i++) {
        int32_t s = expert[i];
        if (s != MOE_SLOT_NONE && s != MOE_SLOT_IDENTITY && (s < 0 || (size_t)s >= L->R))
            return MOE_E_EXPERT;
        w->slot[i] = (size_t)s >= L->E && s >= 0 ? MOE_SLOT_IDENTITY : s, w->wt[i] = weight[i];
    }
    return MOE_OK;
}

MOEDEF moe_result moe_route(const moe_layer *layer, const float *x, size_t n_tokens,
                            const moe_workspace *ws, moe_trace *trace) {
    moe__ws w;
    if (n_tokens == 0) return moe__no_tokens(layer, ws, trace);
    if (!layer || !x) return MOE_E_NULL;
    moe_result r = moe__begin(layer, n_tokens, n_tokens * layer->k, 1, ws, &w);
    if (r != MOE_OK) return r;
    moe__route(layer, x, n_tokens, &w, moe__threads(layer, ws));
    if (trace) moe__trace(layer, n_tokens, &w, trace);
    return MOE_OK;
}

MOEDEF moe_result moe_route_slots(const moe_layer *layer, const float *x, size_t n_tokens,
                                  int32_t *expert, float *weight, const moe_workspace *ws,
                                  moe_trace *trace) {
    moe__ws w;
    if (n_tokens == 0) return moe__no_tokens(layer, ws, trace);
    if (!layer || !x || !expert || !weight) return MOE_E_NULL;
    moe_result r = moe__begin(layer, n_tokens, n_tokens * layer->k, 1, ws, &w);
    if (r != MOE_OK) return r;
    moe__route(layer, x, n_tokens, &w, moe__threads(layer, ws));
    for (size_t i = 0; i < n_tokens * layer->k; i++)
        expert[i] = w.slot[i], weight[i] = w.slot[i] == MOE_SLOT_NONE ? 0.0f : w.wt[i];
    if (trace) moe__trace(layer, n_tokens, &w, trace);
    return MOE_OK;
}

MOEDEF moe_result moe_forward(const moe_layer *layer, const float *x, size_t n_tokens, float *y,
                              const moe_workspace *ws, moe_trace *trace) {
    moe__ws w;
    if (n_tokens == 0) return moe__no_tokens(layer, ws, trace);
    if (!layer || !x || !y) return MOE_E_NULL;
    moe_result r = moe__begin(layer, n_tokens, n_tokens * layer->k, 1, ws, &w);
    if (r != MOE_OK) return r;
    int nth = moe__threads(layer, ws);
    moe__route(layer, x, n_tokens, &w, nth);
    moe__plan(layer, n_tokens, &w, 1);
    moe__run_phase(layer, x, n_tokens, &w, nth, 1);
    moe__run_phase(layer, x, n_tokens, &w, nth, 2);
    moe__combine_all(layer, x, n_tokens, y, &w, nth);
    if (trace) moe__trace(layer, n_tokens, &w, trace);
    return MOE_OK;
}

MOEDEF moe_result moe_forward_routed(const moe_layer *layer, const float *x, size_t n_tokens,
                                     const int32_t *expert, const float *weight, float *y,
                                     const moe_workspace *ws) {
    moe__ws w;
    if (n_tokens == 0) return moe__no_tokens(layer, ws, NULL);
    if (!layer || !x || !y || !expert || !weight) return MOE_E_NULL;
    moe_result r = moe__begin(layer, n_tokens, n_tokens * layer->k, 1, ws, &w);
    if (r != MOE_OK) return r;
    int nth = moe__threads(layer, ws);
    if (layer->cfg.shared_router) moe__route(layer, x, n_tokens, &w, nth); /* the shared weights */
    if ((r = moe__take_slots(layer, n_tokens, expert, weight, &w)) != MOE_OK) return r;
    moe__plan(layer, n_tokens, &w, 1);
    moe__run_phase(layer, x, n_tokens, &w, nth, 1);
    moe__run_phase(layer, x, n_tokens, &w, nth, 2);
    moe__combine_all(layer, x, n_tokens, y, &w, nth);
    return MOE_OK;
}

MOEDEF moe_result moe_experts(const moe_layer *layer, const float *rows, const int32_t *offsets,
                              const float *row_weight, float *out, const moe_workspace *ws) {
    moe__ws w;
    if (!layer || !offsets) return MOE_E_NULL;
    size_t ne = layer->ne, n;
    if (offsets[0] != 0) return MOE_E_OFFSETS;
    for (size_t e = 0; e < ne; e++)
        if (offsets[e + 1] < offsets[e]) return MOE_E_OFFSETS;
    n = (size_t)offsets[ne];
    if (n == 0) return moe__no_tokens(layer, ws, NULL);
    if (!rows || !out || (layer->cfg.weight_on_input && !row_weight)) return MOE_E_NULL;
    moe_result r = moe__begin(layer, 0, n, 0, ws, &w);
    if (r != MOE_OK) return r;
    memcpy(w.off, offsets, (ne + 1) * sizeof *offsets);
    w.off[ne + 1] = w.off[ne]; /* no shared rows */
    w.R = n, w.xin = rows, w.rwin = row_weight, w.zout = out;
    int nth = moe__threads(layer, ws);
    moe__run_phase(layer, NULL, 0, &w, nth, 1);
    moe__run_phase(layer, NULL, 0, &w, nth, 2);
    return MOE_OK;
}

MOEDEF moe_result moe_combine(const moe_layer *layer, const float *x, size_t n_tokens,
                              const int32_t *expert, const float *weight, const float *z,
                              float *y, const moe_workspace *ws) {
    moe__ws w;
    if (n_tokens == 0) return moe__no_tokens(layer, ws, NULL);
    if (!layer || !x || !y || !expert || !weight) return MOE_E_NULL;
    moe_result r = moe__begin(layer, n_tokens, n_tokens * layer->k, 0, ws, &w);
    if (r != MOE_OK) return r;
    int nth = moe__threads(layer, ws);
    if (layer->cfg.shared_router) moe__route(layer, x, n_tokens, &w, nth); /* the shared weights */
    if ((r = moe__take_slots(layer, n_tokens, expert, weight, &w)) != MOE_OK) return r;
    for (size_t i = 0; i < n_tokens * layer->k; i++)
        if (w.slot[i] >= 0 && !z) return MOE_E_NULL;
    memset(w.off, 0, (layer->ne + 1) * sizeof *w.off); /* the shared experts only */
    w.off[layer->ne + 1] = layer->sh.ff ? (int32_t)n_tokens : 0;
    w.R = 0, w.zsrc = z, w.all_slots = 1;
    moe__run_phase(layer, x, n_tokens, &w, nth, 1);
    moe__run_phase(layer, x, n_tokens, &w, nth, 2);
    moe__combine_all(layer, x, n_tokens, y, &w, nth);
    return MOE_OK;
}

#define MOE__STR2(x) #x
#define MOE__STR(x) MOE__STR2(x)
MOEDEF const moe_build *moe_build_info(void) {
#define MOE__ISA (MOE__AVX512 ? "avx512" : MOE__AVX2 ? "avx2" : MOE__NEON ? "neon" : "scalar")
    static const moe_build b = {
        MOE_VERSION_MAJOR, MOE_VERSION_MINOR, MOE_VERSION_PATCH, MOE__ISA, MOE__NR, MOE__OMP,
        MOE__DPBF16, "f32 bf16 f16 q8 q4 fp8 mxfp4",
        "moe.h " MOE__STR(MOE_VERSION_MAJOR) "." MOE__STR(MOE_VERSION_MINOR) "." MOE__STR(
            MOE_VERSION_PATCH) ", kernels "
#if MOE__AVX512
        "avx512"
#elif MOE__AVX2
        "avx2"
#elif MOE__NEON
        "neon"
#else
        "scalar"
#endif
        " (NR " MOE__STR(MOE__NR) "), OpenMP "
#if MOE__OMP
        "on"
#else
        "off"
#endif
        ", bf16 dot "
#if MOE__DPBF16
        "vdpbf16ps"
#else
        "emulated"
#endif
        ", formats f32 bf16 f16 q8 q4 fp8 mxfp4"};
#undef MOE__ISA
    return &b;
}

#endif /* MOE_IMPLEMENTATION */

/*
   VERSION HISTORY
      0.3  (2026-12-02) the rules of the newer families: zero-computation experts, an output
           bias and RMSNorm, a latent space for the experts, input norms and per-expert scales
           (Gemma-4), router-weighted shared experts (Inkling), sqrt-softplus scores, clamped
           activations, logit softcap, group fill, scale on the sum, averaged shared experts;
           formats q8 and q4 on integer dot products.
      0.2  (2026-12-01) packed formats (bf16, f16, bf16 dot) on typed packed matrices with a
           kernel table per layer; K-chunked GEMM tiles; public stages, routed forward, expert
           subsets, host thread pools, sized tensor views, build info.
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
