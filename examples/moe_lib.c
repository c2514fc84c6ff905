/* moe_lib.c - moe.h as a shared library (`make lib` -> build/libmoe.so), for examples/moe.py
   and any other foreign-function interface.

   Built with -fvisibility=hidden, so the library exports moe.h's API (MOEDEF, made visible
   here) and the functions below, nothing else. Three describe this build's struct layouts
   and enum values, so a binding that mirrors the structs by hand (ctypes, cffi, Rust bindgen
   output checked in) can compare itself with the compiler's own answer at load time: a field
   added to moe.h and not to the mirror is then an error, not a silently misread struct. Two
   open checkpoints (moe_model.h for a model directory, moe_gguf.h for a .gguf file) with plain
   C arguments, so a binding need not mirror the loaders' structs. */
#define _DEFAULT_SOURCE 1 /* moe_io.h's implementation: pread, mmap, madvise */
#if defined(__GNUC__) || defined(__clang__)
#define MOEDEF extern __attribute__((visibility("default")))
#endif
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "moe_model.h"
#define MOE_GGUF_IMPLEMENTATION
#include "moe_gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* sizeof the public struct named `type` ("moe_config", ...); 0 for a name not in the list */
MOEDEF size_t moe_lib_sizeof(const char *type);
/* field i of the public structs in declaration order: struct name, field name, offset, size;
   returns 0 (and leaves the outputs) past the last field */
MOEDEF int moe_lib_field(int i, const char **type, const char **name, size_t *offset, size_t *size);
/* enumerator i of the public enums (the _COUNT markers left out) and the MOE_SLOT_* ids:
   enum type name, enumerator name, value; returns 0 past the last one */
MOEDEF int moe_lib_enum(int i, const char **type, const char **name, int *value);
/* The MoE layers of the checkpoint at path (a model directory, or a .gguf file), in order, as
   their names ("3", "encoder.1"; GGUF: block indices) separated by single spaces into
   names[size]; returns how many, or -1 with err (a NUL-terminated message; also when names is
   too small, and for a block of a GGUF file that fails to plan for another reason than being
   dense: an unsupported architecture, a missing tensor). A dense layer is left out. */
MOEDEF int moe_lib_moe_layers(const char *path, char *names, size_t size, char *err,
                              size_t err_size);
/* Creates the moe_layer of `layer` of the checkpoint at path into *out: format and
   shared_format are moe_format values (0 = as stored), expert_begin and expert_count the
   experts it holds (0, 0 = all), use_mmap 1 maps the files instead of reading them. Returns 0,
   or -1 with *out NULL and err the loader's message (build/moe's words). */
MOEDEF int moe_lib_load_layer(const char *path, const char *layer, int format, int shared_format,
                              int expert_begin, int expert_count, int use_mmap, moe_layer **out,
                              char *err, size_t err_size);

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
    MOE_LIB__E(moe_result, MOE_E_NORM_P), MOE_LIB__E(moe_result, MOE_E_NO_OUTPUT_BIAS),
    MOE_LIB__E(moe_result, MOE_E_NO_OUT_NORM), MOE_LIB__E(moe_result, MOE_E_NO_LATENT),
    MOE_LIB__E(moe_result, MOE_E_NO_IN_NORM), MOE_LIB__E(moe_score, MOE_SCORE_SOFTMAX),
    MOE_LIB__E(moe_score, MOE_SCORE_SIGMOID), MOE_LIB__E(moe_score, MOE_SCORE_SOFTMAX_TOPK),
    MOE_LIB__E(moe_score, MOE_SCORE_SIGMOID_TOPK), MOE_LIB__E(moe_score, MOE_SCORE_SPARSEMIXER),
    MOE_LIB__E(moe_score, MOE_SCORE_SQRT_SOFTPLUS), MOE_LIB__E(moe_group_score, MOE_GROUP_MAX),
    MOE_LIB__E(moe_group_score, MOE_GROUP_TOP2_SUM),
    MOE_LIB__E(moe_group_fill, MOE_GROUP_FILL_NEG_INF),
    MOE_LIB__E(moe_group_fill, MOE_GROUP_FILL_ZERO), MOE_LIB__E(moe_shared_combine, MOE_SHARED_SUM),
    MOE_LIB__E(moe_shared_combine, MOE_SHARED_AVERAGE), MOE_LIB__E(moe_norm, MOE_NORM_NONE),
    MOE_LIB__E(moe_norm, MOE_NORM_SUM), MOE_LIB__E(moe_norm, MOE_NORM_SUM_CLAMP),
    MOE_LIB__E(moe_norm, MOE_NORM_LP), MOE_LIB__E(moe_drop, MOE_DROP_ZERO),
    MOE_LIB__E(moe_drop, MOE_DROP_IDENTITY), MOE_LIB__E(moe_ffn, MOE_FFN_GATED),
    MOE_LIB__E(moe_ffn, MOE_FFN_PLAIN), MOE_LIB__E(moe_act, MOE_ACT_SILU),
    MOE_LIB__E(moe_act, MOE_ACT_GELU_ERF), MOE_LIB__E(moe_act, MOE_ACT_GELU_TANH),
    MOE_LIB__E(moe_act, MOE_ACT_RELU), MOE_LIB__E(moe_act, MOE_ACT_SWIGLU_OAI),
    MOE_LIB__E(moe_act, MOE_ACT_RELU2), MOE_LIB__E(moe_act, MOE_ACT_SWIGLU_CLAMP),
    MOE_LIB__E(moe_act, MOE_ACT_SILU_CLAMP), MOE_LIB__E(moe_out_norm, MOE_OUT_NORM_NONE),
    MOE_LIB__E(moe_out_norm, MOE_OUT_NORM_RMS), MOE_LIB__E(moe_shared_gate, MOE_SHARED_GATE_NONE),
    MOE_LIB__E(moe_shared_gate, MOE_SHARED_GATE_SIGMOID), MOE_LIB__E(moe_format, MOE_FORMAT_AUTO),
    MOE_LIB__E(moe_format, MOE_FORMAT_F32), MOE_LIB__E(moe_format, MOE_FORMAT_BF16),
    MOE_LIB__E(moe_format, MOE_FORMAT_F16), MOE_LIB__E(moe_format, MOE_FORMAT_Q8),
    MOE_LIB__E(moe_format, MOE_FORMAT_Q4), MOE_LIB__E(moe_format, MOE_FORMAT_FP8),
    MOE_LIB__E(moe_format, MOE_FORMAT_MXFP4), MOE_LIB__E(moe_dot, MOE_DOT_EXACT),
    MOE_LIB__E(moe_dot, MOE_DOT_BF16), MOE_LIB__E(moe_dtype, MOE_F32),
    MOE_LIB__E(moe_dtype, MOE_BF16), MOE_LIB__E(moe_dtype, MOE_F16),
    MOE_LIB__E(moe_dtype, MOE_F8_E4M3), MOE_LIB__E(moe_dtype, MOE_MXFP4),
    MOE_LIB__E(moe_dtype, MOE_MXFP4_GGUF), MOE_LIB__E(moe_dtype, MOE_Q8_0),
    MOE_LIB__E(moe_dtype, MOE_Q4_0), MOE_LIB__E(moe_dtype, MOE_Q4_K),
    MOE_LIB__E(moe_dtype, MOE_INT4), MOE_LIB__E(moe_dtype, MOE_E8M0),
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

/* ---- checkpoints ---- */

static void moe_lib__say(char *err, size_t n, const char *msg) {
    if (err && n) snprintf(err, n, "%s", msg);
}

/* Appends name to names[size] at *at (a space first unless it is the first); 0 or -1. */
static int moe_lib__append(char *names, size_t size, size_t *at, const char *name) {
    size_t len = strlen(name) + (*at ? 1 : 0);
    if (!names || *at + len + 1 > size) return -1;
    snprintf(names + *at, size - *at, "%s%s", *at ? " " : "", name);
    *at += len;
    return 0;
}

/* The block count of a GGUF file's architecture ({arch}.block_count); -1 and err. */
static int64_t moe_lib__gguf_blocks(const mgg_file *g, char *err, size_t n) {
    const char *arch = NULL;
    char key[64];
    int64_t blocks = -1;
    if (mgg_get_str(g, "general.architecture", &arch, err, n)) return -1;
    snprintf(key, sizeof key, "%.40s.block_count", arch);
    if (mgg_get_i64(g, key, &blocks, err, n)) return -1;
    return blocks;
}

MOEDEF int moe_lib_moe_layers(const char *path, char *names, size_t size, char *err,
                              size_t err_size) {
    char e[MM_ERR_SIZE], name[64];
    size_t at = 0;
    int count = 0;
    if (!path) return moe_lib__say(err, err_size, "moe_lib_moe_layers: path is NULL"), -1;
    if (names && size) names[0] = 0;
    if (mgg_is_gguf(path)) {
        mgg_file g;
        if (mgg_open(&g, path, MIO_MAP, e, sizeof e)) return moe_lib__say(err, err_size, e), -1;
        int64_t blocks = moe_lib__gguf_blocks(&g, e, sizeof e);
        mgg_layer *L = blocks < 0 ? NULL : (mgg_layer *)MIO_MALLOC(sizeof *L);
        if (blocks >= 0 && !L) snprintf(e, sizeof e, "out of memory");
        for (int64_t b = 0; L && b < blocks && count >= 0; b++) {
            /* a block moe_gguf.h plans is MoE; its views are into the mapping, so this reads
               no tensor data */
            if (mgg_plan_layer(&g, b, L, e, sizeof e)) {
                if (strstr(e, "dense")) continue; /* a dense block: not a MoE layer */
                count = -1;                       /* anything else is the file's fault */
                break;
            }
            mgg_layer_free(L);
            snprintf(name, sizeof name, "%lld", (long long)b);
            if (moe_lib__append(names, size, &at, name)) {
                snprintf(e, sizeof e, "moe_lib_moe_layers: names[%zu] is too small", size);
                count = -1;
            } else count++;
        }
        if (blocks < 0 || !L) count = -1;
        MIO_FREE(L);
        mgg_close(&g);
        if (count < 0) moe_lib__say(err, err_size, e);
        return count;
    }
    mm_model m;
    if (mm_open(&m, path, 1, e, sizeof e)) return moe_lib__say(err, err_size, e), -1;
    int n = mm_layer_count(&m, e, sizeof e);
    if (n < 0) count = -1;
    for (int i = 0; i < n && count >= 0; i++) {
        int moe = mm_layer_name(&m, i, name, sizeof name)
                      ? (snprintf(e, sizeof e, "%s: layer %d has no name", path, i), -1)
                      : mm_is_moe(&m, name, e, sizeof e);
        if (moe < 0) { /* a malformed config.json, not a dense layer */
            count = -1;
            break;
        }
        if (!moe) continue;
        if (moe_lib__append(names, size, &at, name)) {
            snprintf(e, sizeof e, "moe_lib_moe_layers: names[%zu] is too small", size);
            count = -1;
        } else count++;
    }
    mm_close(&m);
    if (count < 0) moe_lib__say(err, err_size, e);
    return count;
}

static int moe_lib__load_gguf(const char *path, const char *layer, const moe_config *opt,
                              int use_mmap, moe_layer **out, char *err, size_t err_size) {
    char e[MM_ERR_SIZE], *end = NULL;
    mgg_file g;
    mgg_layer *L = NULL;
    int rc = -1;
    errno = 0;
    long long ix = strtoll(layer, &end, 10);
    if (!layer[0] || *end || errno || ix < 0) {
        snprintf(e, sizeof e, "bad layer '%s': a GGUF file takes a block index (0, 1, ...)", layer);
        return moe_lib__say(err, err_size, e), -1;
    }
    if (mgg_open(&g, path, use_mmap ? MIO_MAP : MIO_READ, e, sizeof e))
        return moe_lib__say(err, err_size, e), -1;
    if (!(L = (mgg_layer *)MIO_MALLOC(sizeof *L))) snprintf(e, sizeof e, "out of memory");
    else if (mgg_plan_layer(&g, ix, L, e, sizeof e)) MIO_FREE(L), L = NULL;
    else {
        L->cfg.format = opt->format, L->cfg.shared_format = opt->shared_format;
        L->cfg.expert_begin = opt->expert_begin, L->cfg.expert_count = opt->expert_count;
        L->w.on_packed = mgg_on_packed, L->w.user = L;
        char e2[MM_ERR_SIZE - 128];
        moe_result r = moe_layer_create_msg(out, &L->cfg, &L->w, e2, sizeof e2);
        if (r == MOE_OK) rc = 0;
        else snprintf(e, sizeof e, "%.32s block %lld: moe_layer_create: %s", L->arch, ix, e2);
        mgg_layer_free(L), MIO_FREE(L);
    }
    mgg_close(&g);
    if (rc) moe_lib__say(err, err_size, e);
    return rc;
}

MOEDEF int moe_lib_load_layer(const char *path, const char *layer, int format, int shared_format,
                              int expert_begin, int expert_count, int use_mmap, moe_layer **out,
                              char *err, size_t err_size) {
    char e[MM_ERR_SIZE];
    moe_config opt;
    if (out) *out = NULL;
    if (!path || !layer || !out)
        return moe_lib__say(err, err_size, "moe_lib_load_layer: path, layer or out is NULL"), -1;
    if (format < 0 || format >= MOE_FORMAT_COUNT || shared_format < 0 ||
        shared_format >= MOE_FORMAT_COUNT) {
        snprintf(e, sizeof e, "format %d or shared_format %d is not a moe_format (0..%d)", format,
                 shared_format, MOE_FORMAT_COUNT - 1);
        return moe_lib__say(err, err_size, e), -1;
    }
    memset(&opt, 0, sizeof opt);
    opt.format = (moe_format)format, opt.shared_format = (moe_format)shared_format;
    opt.expert_begin = expert_begin, opt.expert_count = expert_count;
    if (mgg_is_gguf(path)) return moe_lib__load_gguf(path, layer, &opt, use_mmap, out, err, err_size);
    mm_model m;
    mm_options mo;
    memset(&mo, 0, sizeof mo);
    mo.format = opt.format, mo.shared_format = opt.shared_format;
    mo.expert_begin = expert_begin, mo.expert_count = expert_count;
    if (mm_open(&m, path, use_mmap, e, sizeof e)) return moe_lib__say(err, err_size, e), -1;
    int rc = mm_layer_create(&m, layer, &mo, out, NULL, e, sizeof e);
    mm_close(&m);
    if (rc) moe_lib__say(err, err_size, e);
    return rc ? -1 : 0;
}
