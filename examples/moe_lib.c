/* moe_lib.c - moe.h as a shared library (`make lib` -> build/libmoe.so), for examples/moe.py
   and any other foreign-function interface.

   Built with -fvisibility=hidden, so the library exports moe.h's API (MOEDEF, made visible
   here) and the three functions below, nothing else. They describe this build's struct layouts
   and enum values, so a binding that mirrors the structs by hand (ctypes, cffi, Rust bindgen
   output checked in) can compare itself with the compiler's own answer at load time: a field
   added to moe.h and not to the mirror is then an error, not a silently misread struct. */
#if defined(__GNUC__) || defined(__clang__)
#define MOEDEF extern __attribute__((visibility("default")))
#endif
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <string.h>

/* sizeof the public struct named `type` ("moe_config", ...); 0 for a name not in the list */
MOEDEF size_t moe_lib_sizeof(const char *type);
/* field i of the public structs in declaration order: struct name, field name, offset, size;
   returns 0 (and leaves the outputs) past the last field */
MOEDEF int moe_lib_field(int i, const char **type, const char **name, size_t *offset, size_t *size);
/* enumerator i of the public enums (the _COUNT markers left out) and the MOE_SLOT_* ids:
   enum type name, enumerator name, value; returns 0 past the last one */
MOEDEF int moe_lib_enum(int i, const char **type, const char **name, int *value);

typedef struct moe_lib__field {
    const char *type, *name;
    size_t offset, size;
} moe_lib__field;

#define MOE_LIB__F(T, f) {#T, #f, offsetof(T, f), sizeof(((T *)0)->f)}
static const moe_lib__field moe_lib__fields[] = {
    MOE_LIB__F(moe_config, d_model), MOE_LIB__F(moe_config, d_ff),
    MOE_LIB__F(moe_config, n_experts), MOE_LIB__F(moe_config, top_k),
    MOE_LIB__F(moe_config, n_shared), MOE_LIB__F(moe_config, d_shared),
    MOE_LIB__F(moe_config, shared_gate), MOE_LIB__F(moe_config, score),
    MOE_LIB__F(moe_config, router_bias), MOE_LIB__F(moe_config, select_bias),
    MOE_LIB__F(moe_config, n_group), MOE_LIB__F(moe_config, topk_group),
    MOE_LIB__F(moe_config, group_score), MOE_LIB__F(moe_config, norm),
    MOE_LIB__F(moe_config, norm_eps), MOE_LIB__F(moe_config, norm_p), MOE_LIB__F(moe_config, scale),
    MOE_LIB__F(moe_config, jitter_eps), MOE_LIB__F(moe_config, capacity),
    MOE_LIB__F(moe_config, drop), MOE_LIB__F(moe_config, weight_on_input),
    MOE_LIB__F(moe_config, ffn), MOE_LIB__F(moe_config, act), MOE_LIB__F(moe_config, act_alpha),
    MOE_LIB__F(moe_config, act_limit), MOE_LIB__F(moe_config, expert_bias),
    MOE_LIB__F(moe_config, format), MOE_LIB__F(moe_config, shared_format),
    MOE_LIB__F(moe_config, dot), MOE_LIB__F(moe_config, expert_begin),
    MOE_LIB__F(moe_config, expert_count), MOE_LIB__F(moe_config, parallel_for),
    MOE_LIB__F(moe_config, pool), MOE_LIB__F(moe_config, pool_threads),
    MOE_LIB__F(moe_config, logit_softcap), MOE_LIB__F(moe_config, group_fill),
    MOE_LIB__F(moe_config, scale_on_sum), MOE_LIB__F(moe_config, shared_combine),
    MOE_LIB__F(moe_config, shared_act_limit), MOE_LIB__F(moe_config, n_zero_experts),
    MOE_LIB__F(moe_config, output_bias), MOE_LIB__F(moe_config, out_norm),
    MOE_LIB__F(moe_config, out_norm_eps), MOE_LIB__F(moe_config, d_latent),
    MOE_LIB__F(moe_config, router_in_norm), MOE_LIB__F(moe_config, expert_in_norm),
    MOE_LIB__F(moe_config, in_norm_eps), MOE_LIB__F(moe_config, expert_scale),
    MOE_LIB__F(moe_config, shared_router),

    MOE_LIB__F(moe_tensor, data), MOE_LIB__F(moe_tensor, per_expert), MOE_LIB__F(moe_tensor, dtype),
    MOE_LIB__F(moe_tensor, layout), MOE_LIB__F(moe_tensor, n_elems),
    MOE_LIB__F(moe_tensor, scale), MOE_LIB__F(moe_tensor, scale_per_expert),
    MOE_LIB__F(moe_tensor, scale_dtype), MOE_LIB__F(moe_tensor, block_out),
    MOE_LIB__F(moe_tensor, block_in),

    MOE_LIB__F(moe_weights, router), MOE_LIB__F(moe_weights, router_bias),
    MOE_LIB__F(moe_weights, select_bias), MOE_LIB__F(moe_weights, gate),
    MOE_LIB__F(moe_weights, up), MOE_LIB__F(moe_weights, gate_up), MOE_LIB__F(moe_weights, down),
    MOE_LIB__F(moe_weights, gate_up_split), MOE_LIB__F(moe_weights, gate_bias),
    MOE_LIB__F(moe_weights, up_bias), MOE_LIB__F(moe_weights, gate_up_bias),
    MOE_LIB__F(moe_weights, down_bias), MOE_LIB__F(moe_weights, shared_gate_proj),
    MOE_LIB__F(moe_weights, shared_up), MOE_LIB__F(moe_weights, shared_gate_up),
    MOE_LIB__F(moe_weights, shared_down), MOE_LIB__F(moe_weights, shared_gate_up_split),
    MOE_LIB__F(moe_weights, shared_gate), MOE_LIB__F(moe_weights, on_packed),
    MOE_LIB__F(moe_weights, user), MOE_LIB__F(moe_weights, output_bias),
    MOE_LIB__F(moe_weights, out_norm), MOE_LIB__F(moe_weights, latent_in),
    MOE_LIB__F(moe_weights, latent_out), MOE_LIB__F(moe_weights, router_in_scale),
    MOE_LIB__F(moe_weights, expert_in_norm), MOE_LIB__F(moe_weights, expert_scale),

    MOE_LIB__F(moe_packed_sizes, router), MOE_LIB__F(moe_packed_sizes, expert),
    MOE_LIB__F(moe_packed_sizes, experts), MOE_LIB__F(moe_packed_sizes, shared),
    MOE_LIB__F(moe_packed_sizes, total), MOE_LIB__F(moe_packed_sizes, format),
    MOE_LIB__F(moe_packed_sizes, shared_format), MOE_LIB__F(moe_packed_sizes, bits_per_weight),
    MOE_LIB__F(moe_packed_sizes, shared_bits_per_weight),

    MOE_LIB__F(moe_workspace, data), MOE_LIB__F(moe_workspace, size),
    MOE_LIB__F(moe_workspace, n_threads),

    MOE_LIB__F(moe_trace, expert), MOE_LIB__F(moe_trace, weight), MOE_LIB__F(moe_trace, logits),
    MOE_LIB__F(moe_trace, expert_tokens), MOE_LIB__F(moe_trace, mean_prob),
    MOE_LIB__F(moe_trace, n_dropped), MOE_LIB__F(moe_trace, aux_loss),
    MOE_LIB__F(moe_trace, z_loss),

    MOE_LIB__F(moe_build, version_major), MOE_LIB__F(moe_build, version_minor),
    MOE_LIB__F(moe_build, version_patch), MOE_LIB__F(moe_build, isa),
    MOE_LIB__F(moe_build, panel_width), MOE_LIB__F(moe_build, openmp),
    MOE_LIB__F(moe_build, bf16_dot_hw), MOE_LIB__F(moe_build, formats), MOE_LIB__F(moe_build, text),
};
#undef MOE_LIB__F

typedef struct moe_lib__enum {
    const char *type, *name;
    int value;
} moe_lib__enum;

#define MOE_LIB__E(T, v) {#T, #v, (int)(v)}
static const moe_lib__enum moe_lib__enums[] = {
    MOE_LIB__E(moe_result, MOE_OK), MOE_LIB__E(moe_result, MOE_E_NULL),
    MOE_LIB__E(moe_result, MOE_E_DIM), MOE_LIB__E(moe_result, MOE_E_TOPK),
    MOE_LIB__E(moe_result, MOE_E_GROUP_DIVIDE), MOE_LIB__E(moe_result, MOE_E_TOPK_GROUP),
    MOE_LIB__E(moe_result, MOE_E_GROUP_TOPK), MOE_LIB__E(moe_result, MOE_E_GROUP_SIZE),
    MOE_LIB__E(moe_result, MOE_E_OVERFLOW), MOE_LIB__E(moe_result, MOE_E_OPTION),
    MOE_LIB__E(moe_result, MOE_E_VALUE), MOE_LIB__E(moe_result, MOE_E_SHARED),
    MOE_LIB__E(moe_result, MOE_E_CAPACITY), MOE_LIB__E(moe_result, MOE_E_ACT_PLAIN),
    MOE_LIB__E(moe_result, MOE_E_BIAS_SCORE), MOE_LIB__E(moe_result, MOE_E_NO_ROUTER),
    MOE_LIB__E(moe_result, MOE_E_NO_EXPERTS), MOE_LIB__E(moe_result, MOE_E_NO_ROUTER_BIAS),
    MOE_LIB__E(moe_result, MOE_E_NO_SELECT_BIAS), MOE_LIB__E(moe_result, MOE_E_NO_EXPERT_BIAS),
    MOE_LIB__E(moe_result, MOE_E_NO_SHARED), MOE_LIB__E(moe_result, MOE_E_NO_SHARED_GATE),
    MOE_LIB__E(moe_result, MOE_E_DTYPE), MOE_LIB__E(moe_result, MOE_E_NOMEM),
    MOE_LIB__E(moe_result, MOE_E_WORKSPACE), MOE_LIB__E(moe_result, MOE_E_SPARSEMIXER),
    MOE_LIB__E(moe_result, MOE_E_DOT), MOE_LIB__E(moe_result, MOE_E_SUBSET),
    MOE_LIB__E(moe_result, MOE_E_EXPERT), MOE_LIB__E(moe_result, MOE_E_SIZE),
    MOE_LIB__E(moe_result, MOE_E_OFFSETS), MOE_LIB__E(moe_result, MOE_E_THREADS),
    MOE_LIB__E(moe_result, MOE_E_NORM_P),

    MOE_LIB__E(moe_score, MOE_SCORE_SOFTMAX), MOE_LIB__E(moe_score, MOE_SCORE_SIGMOID),
    MOE_LIB__E(moe_score, MOE_SCORE_SOFTMAX_TOPK), MOE_LIB__E(moe_score, MOE_SCORE_SIGMOID_TOPK),
    MOE_LIB__E(moe_score, MOE_SCORE_SPARSEMIXER), MOE_LIB__E(moe_group_score, MOE_GROUP_MAX),
    MOE_LIB__E(moe_group_score, MOE_GROUP_TOP2_SUM), MOE_LIB__E(moe_norm, MOE_NORM_NONE),
    MOE_LIB__E(moe_norm, MOE_NORM_SUM), MOE_LIB__E(moe_norm, MOE_NORM_SUM_CLAMP),
    MOE_LIB__E(moe_norm, MOE_NORM_LP), MOE_LIB__E(moe_drop, MOE_DROP_ZERO),
    MOE_LIB__E(moe_drop, MOE_DROP_IDENTITY), MOE_LIB__E(moe_ffn, MOE_FFN_GATED),
    MOE_LIB__E(moe_ffn, MOE_FFN_PLAIN), MOE_LIB__E(moe_act, MOE_ACT_SILU),
    MOE_LIB__E(moe_act, MOE_ACT_GELU_ERF), MOE_LIB__E(moe_act, MOE_ACT_GELU_TANH),
    MOE_LIB__E(moe_act, MOE_ACT_RELU), MOE_LIB__E(moe_act, MOE_ACT_SWIGLU_OAI),
    MOE_LIB__E(moe_shared_gate, MOE_SHARED_GATE_NONE),
    MOE_LIB__E(moe_shared_gate, MOE_SHARED_GATE_SIGMOID), MOE_LIB__E(moe_format, MOE_FORMAT_AUTO),
    MOE_LIB__E(moe_format, MOE_FORMAT_F32), MOE_LIB__E(moe_format, MOE_FORMAT_BF16),
    MOE_LIB__E(moe_format, MOE_FORMAT_F16), MOE_LIB__E(moe_format, MOE_FORMAT_Q8),
    MOE_LIB__E(moe_format, MOE_FORMAT_Q4), MOE_LIB__E(moe_dot, MOE_DOT_EXACT),
    MOE_LIB__E(moe_dot, MOE_DOT_BF16), MOE_LIB__E(moe_dtype, MOE_F32),
    MOE_LIB__E(moe_dtype, MOE_BF16), MOE_LIB__E(moe_dtype, MOE_F16),
    MOE_LIB__E(moe_layout, MOE_OUT_IN), MOE_LIB__E(moe_layout, MOE_IN_OUT),
    MOE_LIB__E(moe_gate_up_split, MOE_SPLIT_HALVES),
    MOE_LIB__E(moe_gate_up_split, MOE_SPLIT_INTERLEAVED), MOE_LIB__E(slot, MOE_SLOT_NONE),
    MOE_LIB__E(slot, MOE_SLOT_IDENTITY),
};
#undef MOE_LIB__E

MOEDEF size_t moe_lib_sizeof(const char *type) {
    static const struct {
        const char *type;
        size_t size;
    } sizes[] = {
        {"moe_config", sizeof(moe_config)},       {"moe_tensor", sizeof(moe_tensor)},
        {"moe_weights", sizeof(moe_weights)},     {"moe_packed_sizes", sizeof(moe_packed_sizes)},
        {"moe_workspace", sizeof(moe_workspace)}, {"moe_trace", sizeof(moe_trace)},
        {"moe_build", sizeof(moe_build)},
    };
    for (size_t i = 0; type && i < sizeof sizes / sizeof sizes[0]; i++)
        if (!strcmp(type, sizes[i].type)) return sizes[i].size;
    return 0;
}

MOEDEF int moe_lib_field(int i, const char **type, const char **name, size_t *offset,
                         size_t *size) {
    if (i < 0 || (size_t)i >= sizeof moe_lib__fields / sizeof moe_lib__fields[0]) return 0;
    if (type) *type = moe_lib__fields[i].type;
    if (name) *name = moe_lib__fields[i].name;
    if (offset) *offset = moe_lib__fields[i].offset;
    if (size) *size = moe_lib__fields[i].size;
    return 1;
}

MOEDEF int moe_lib_enum(int i, const char **type, const char **name, int *value) {
    if (i < 0 || (size_t)i >= sizeof moe_lib__enums / sizeof moe_lib__enums[0]) return 0;
    if (type) *type = moe_lib__enums[i].type;
    if (name) *name = moe_lib__enums[i].name;
    if (value) *value = moe_lib__enums[i].value;
    return 1;
}
