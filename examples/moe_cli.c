/* moe - run one Mixture-of-Experts layer with moe.h: a toy layer from a seed, or one MoE layer
   of a Hugging Face checkpoint (config.json + safetensors) on activations from a .npy file.

      build/moe                                   toy layer, default options
      build/moe run --experts 16 --k 4 --stats    toy layer, other options
      build/moe run --model DIR --layer L --input X.npy --output Y.npy
                    [--experts-out E.npy] [--weights-out W.npy] [--threads N] [--stats]
      build/moe --help

   The checkpoint side: hf_config.h maps config.json to a moe_config and names the layer's
   tensors; moe_io.h reads the layer's tensors from the safetensors files (with pread into
   memory of its own by default, immune to a file that shrinks; through mmap with --mmap) and
   reads/writes .npy. After moe_layer_create has packed a source tensor, its pages are dropped
   (moe_weights.on_packed -> madvise), and the sources are closed once the layer is built. */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "hf_config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *usage_text =
    "usage: moe [run] [options]              run a toy MoE layer built from a seed\n"
    "       moe run --model DIR --layer L --input X.npy --output Y.npy [options]\n"
    "                                        run one MoE layer of a Hugging Face checkpoint\n"
    "       moe --help\n"
    "\n"
    "Toy layer (no --model): random weights from --seed, random input tokens; prints the\n"
    "config, each token's experts and weights, the load per expert, the aux and z losses,\n"
    "a checksum of y (sum, sum of squares) and the create/forward times.\n"
    "  --d D             hidden size (64)\n"
    "  --ff F            expert width (128)\n"
    "  --experts E       routed experts (8)\n"
    "  --k K             experts per token (2)\n"
    "  --shared N        shared experts, each of width F (1)\n"
    "  --score S         softmax | sigmoid | softmax_topk | sigmoid_topk | sparsemixer |\n"
    "                    sqrt_softplus (softmax)\n"
    "  --act A           silu | gelu | gelu_tanh | relu | swiglu_oai | relu2 | swiglu_clamp |\n"
    "                    silu_clamp (silu)\n"
    "  --plain           ungated experts: down(act(up x)) instead of SwiGLU\n"
    "  --norm, --no-norm renormalise the top-k weights to sum 1 (on)\n"
    "  --groups G        split the experts into G groups (0 = none); group score is the max\n"
    "                    (softmax scores) or the sum of the top 2 (sigmoid scores)\n"
    "  --topk-group G2   groups kept per token (G)\n"
    "  --tokens T        tokens (4)\n"
    "  --seed S          seed of weights and input (1)\n"
    "\n"
    "Checkpoint layer:\n"
    "  --model DIR       directory with config.json and model.safetensors, or\n"
    "                    model.safetensors.index.json and its shards (F32/BF16/F16, FP8, INT4,\n"
    "                    MXFP4)\n"
    "  --layer L         layer index as in model.layers.L (DBRX: transformer.blocks.L).\n"
    "                    switch_transformers: encoder.N or decoder.N, or a flat index\n"
    "                    (0..num_layers-1 = encoder, then decoder)\n"
    "  --input X.npy     float32 [T][hidden_size], C order: the MoE block's input\n"
    "  --output Y.npy    float32 [T][hidden_size]: the MoE block's output, routed + shared\n"
    "                    experts (no residual, no norm)\n"
    "  --experts-out E.npy  int32 [T][k]: selected experts, slot order (key descending)\n"
    "  --weights-out W.npy  float32 [T][k]: each slot's weight (0 for a slot dropped by\n"
    "                    capacity; Llama-4 applies it to the expert's input)\n"
    "  --mmap            map the checkpoint instead of reading it (the default, --no-mmap):\n"
    "                    the sources are not copied, so the peak memory is lower, but a file\n"
    "                    that shrinks while it is mapped kills the process with SIGBUS\n"
    "  --drop zero|identity  what a token over an expert's capacity outputs (layers with a\n"
    "                    capacity: switch_transformers): 0 (default, transformers since\n"
    "                    PR #37123 and Mesh TensorFlow) or p * x (transformers before it)\n"
    "  The outputs appear together, only when the whole run succeeds; a failed run leaves\n"
    "  every file as it was. An output may not be the input or a file of the checkpoint.\n"
    "  Switch layers see X as one sequence (one capacity group).\n"
    "\n"
    "Both:\n"
    "  --dtype F         packed format of the routed experts: auto | f32 | bf16 | f16 | q8 | q4\n"
    "                    | fp8 | mxfp4 (q8, q4: int8 and 4-bit weights, a scale per 32 inputs,\n"
    "                    int8 activations; fp8 (E4M3), mxfp4 (E2M1): a scale per 32 inputs,\n"
    "                    fp32 activations; see the README for their error). auto\n"
    "                    (the default) keeps the checkpoint's precision: a bf16 checkpoint packs\n"
    "                    as bf16, with the bits of an f32 layer in half the memory (toy: f32)\n"
    "  --shared-dtype F  the shared experts' format (default: --dtype)\n"
    "  --bf16-dot        bf16 experts compute with bf16 activations and vdpbf16ps arithmetic\n"
    "                    (AVX512_BF16; emulated elsewhere, same bits): faster prefill, about\n"
    "                    3 significant digits\n"
    "  --threads N       OpenMP threads (0 = all)\n"
    "  --stats           per-expert load, aux loss, z-loss, dropped slots, packed bytes,\n"
    "                    load time and peak RSS\n"
    "  --help            this text\n";

/* Every allocation of the CLI goes through moe_io.h's MIO_MALLOC (malloc unless a program that
   includes this file says otherwise, as tests/test_faults.c does to fail each one in turn). */
static void *cli_calloc(size_t n, size_t size) {
    size_t bytes = n * size;
    void *p;
    if (n && bytes / n != size) return NULL;
    p = MIO_MALLOC(bytes > 0 ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The usage text, then every model_type hf_config.h maps, wrapped. */
static void usage(void) {
    size_t col = 2;
    fputs(usage_text, stdout);
    printf("\nFamilies (config.json model_type) for --model:\n ");
    for (size_t i = 0; i < HF_N_FAMILIES; i++) {
        size_t n = strlen(hf_table[i].model_type) + 1;
        if (col + n > 92) printf("\n "), col = 2;
        printf(" %s", hf_table[i].model_type);
        col += n;
    }
    printf("\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* ---- options ---- */

typedef struct opts {
    /* toy */
    int d, ff, experts, k, shared, tokens, groups, topk_group, plain, norm;
    unsigned long long seed;
    moe_score score;
    moe_act act;
    /* checkpoint */
    const char *model, *layer, *input, *output, *experts_out, *weights_out;
    int use_mmap;            /* --mmap: map the checkpoint instead of reading it */
    int drop;                   /* -1 = the family's default, else a moe_drop */
    /* both */
    int threads, stats;
    int format, shared_format, bf16_dot; /* moe_format values (0 = as the checkpoint) */
    int shared_format_set;
} opts;

#if defined(__GNUC__) || defined(__clang__)
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
/* Prints "moe: MESSAGE" and returns 2, the exit status of a usage error. */
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moe: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in %d..%d", lo, hi);
        fprintf(stderr, "moe: bad value '%s' for %s: expected %s\n", s ? s : "(missing)", flag,
                range);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int pick(const char *flag, const char *s, const char *const *names, int n, int *out) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) { *out = i; return 1; }
    fprintf(stderr, "moe: bad value '%s' for %s: expected one of", s ? s : "(missing)", flag);
    for (int i = 0; i < n; i++) fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "\n");
    return 0;
}

static const char *const score_names[] = {"softmax", "sigmoid", "softmax_topk", "sigmoid_topk",
                                          "sparsemixer", "sqrt_softplus"};
static const char *const act_names[] = {"silu", "gelu", "gelu_tanh", "relu", "swiglu_oai",
                                        "relu2", "swiglu_clamp", "silu_clamp"};
#define N_SCORES (int)(sizeof score_names / sizeof *score_names)
#define N_ACTS (int)(sizeof act_names / sizeof *act_names)
static const char *const drop_names[] = {"zero", "identity"};
static const char *const format_names[] = {"auto", "f32", "bf16", "f16", "q8", "q4", "fp8", "mxfp4"}; /* = moe_format */

/* 0 ok, 1 help printed, 2 error printed */
static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->d = 64; o->ff = 128; o->experts = 8; o->k = 2; o->shared = 1; o->tokens = 4;
    o->norm = 1; o->seed = 1; o->topk_group = -1; o->drop = -1;
    int i = 1;
    if (i < argc && !strcmp(argv[i], "run")) i++;
    else if (i < argc && argv[i][0] != '-')
        return fail("unknown command '%s' (moe run, moe --help)", argv[i]);
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int x;
#define VAL(name) (!strcmp(a, name) && (i++, 1))
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 1; }
        else if (!strcmp(a, "--plain")) o->plain = 1;
        else if (!strcmp(a, "--norm")) o->norm = 1;
        else if (!strcmp(a, "--no-norm")) o->norm = 0;
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!strcmp(a, "--mmap")) o->use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) o->use_mmap = 0;
        else if (VAL("--d")) { if (!parse_int(a, v, 1, 1 << 16, &o->d)) return 2; }
        else if (VAL("--ff")) { if (!parse_int(a, v, 1, 1 << 18, &o->ff)) return 2; }
        else if (VAL("--experts")) { if (!parse_int(a, v, 1, 4096, &o->experts)) return 2; }
        else if (VAL("--k")) { if (!parse_int(a, v, 1, 4096, &o->k)) return 2; }
        else if (VAL("--shared")) { if (!parse_int(a, v, 0, 64, &o->shared)) return 2; }
        else if (VAL("--tokens")) { if (!parse_int(a, v, 0, 1 << 20, &o->tokens)) return 2; }
        else if (VAL("--groups")) { if (!parse_int(a, v, 0, 4096, &o->groups)) return 2; }
        else if (VAL("--topk-group")) { if (!parse_int(a, v, 1, 4096, &o->topk_group)) return 2; }
        else if (VAL("--threads")) { if (!parse_int(a, v, 0, 4096, &o->threads)) return 2; }
        else if (VAL("--seed")) {
            char *end;
            errno = 0;
            if (v && *v && *v != '-') o->seed = strtoull(v, &end, 10);
            if (!v || !*v || *v == '-' || *end || errno)
                return fail("bad value '%s' for %s: expected an unsigned integer", v ? v : "(missing)", a);
        }
        else if (VAL("--dtype")) {
            if (!pick(a, v, format_names, MOE_FORMAT_COUNT, &o->format)) return 2;
        }
        else if (VAL("--shared-dtype")) {
            if (!pick(a, v, format_names, MOE_FORMAT_COUNT, &o->shared_format)) return 2;
            o->shared_format_set = 1;
        }
        else if (!strcmp(a, "--bf16-dot")) o->bf16_dot = 1;
        else if (VAL("--score")) { if (!pick(a, v, score_names, N_SCORES, &x)) return 2; o->score = (moe_score)x; }
        else if (VAL("--act")) { if (!pick(a, v, act_names, N_ACTS, &x)) return 2; o->act = (moe_act)x; }
        else if (VAL("--drop")) { if (!pick(a, v, drop_names, 2, &o->drop)) return 2; }
        else if (VAL("--model")) { if (!v) return fail("%s needs a value", a); o->model = v; }
        else if (VAL("--layer")) { if (!v) return fail("%s needs a value", a); o->layer = v; }
        else if (VAL("--input")) { if (!v) return fail("%s needs a value", a); o->input = v; }
        else if (VAL("--output")) { if (!v) return fail("%s needs a value", a); o->output = v; }
        else if (VAL("--experts-out")) { if (!v) return fail("%s needs a value", a); o->experts_out = v; }
        else if (VAL("--weights-out")) { if (!v) return fail("%s needs a value", a); o->weights_out = v; }
        else return fail("unknown option '%s' (see moe --help)", a);
#undef VAL
    }
    if (!o->model && (o->layer || o->input || o->output || o->experts_out || o->weights_out ||
                      o->drop >= 0))
        return fail("--layer, --input, --drop and the outputs need --model (see moe --help)");
    if (!o->shared_format_set) o->shared_format = o->format; /* --dtype sets both */
    return 0;
}

/* ---- summary printing, shared by both modes ---- */

static const char *norm_name(moe_norm n) {
    static const char *const s[] = {"none", "sum", "sum_clamp", "lp"};
    return (unsigned)n < 4 ? s[n] : "?";
}

static void print_config(const moe_config *c) {
    printf("config: d=%d d_ff=%d experts=%d top_k=%d shared=%d", c->d_model, c->d_ff,
           c->n_experts, c->top_k, c->n_shared);
    if (c->n_shared) printf(" (width %d%s)", c->n_shared * c->d_shared,
                            c->shared_gate ? ", sigmoid-gated" : "");
    printf(" ffn=%s act=%s score=%s norm=%s", c->ffn == MOE_FFN_PLAIN ? "plain" : "gated",
           (unsigned)c->act < N_ACTS ? act_names[c->act] : "?",
           (unsigned)c->score < N_SCORES ? score_names[c->score] : "?", norm_name(c->norm));
    if (c->scale != 1.0f) printf(" scale=%g", (double)c->scale);
    if (c->n_group > 1) printf(" groups=%d keep=%d (%s)", c->n_group, c->topk_group,
                               c->group_score == MOE_GROUP_MAX ? "max" : "top2-sum");
    if (c->select_bias) printf(" select_bias");
    if (c->router_bias) printf(" router_bias");
    if (c->expert_bias) printf(" expert_bias");
    if (c->capacity) printf(" capacity=%d drop=%s", c->capacity,
                            c->drop == MOE_DROP_IDENTITY ? "identity" : "zero");
    if (c->weight_on_input) printf(" weight_on_input");
    printf(" format=%s", (unsigned)c->format < MOE_FORMAT_COUNT ? format_names[c->format] : "?");
    if (c->n_shared)
        printf(" shared_format=%s",
               (unsigned)c->shared_format < MOE_FORMAT_COUNT ? format_names[c->shared_format] : "?");
    if (c->dot == MOE_DOT_BF16) printf(" dot=bf16");
    if (c->logit_softcap > 0.0f) printf(" logit_softcap=%g", (double)c->logit_softcap);
    if (c->scale_on_sum) printf(" scale_on_sum");
    if (c->shared_combine == MOE_SHARED_AVERAGE) printf(" shared_average");
    if (c->n_zero_experts) printf(" zero_experts=%d", c->n_zero_experts);
    if (c->output_bias) printf(" output_bias");
    if (c->out_norm == MOE_OUT_NORM_RMS) printf(" out_norm=rms(eps %g)", (double)c->out_norm_eps);
    if (c->d_latent) printf(" d_latent=%d", c->d_latent);
    if (c->router_in_norm) printf(" router_in_norm");
    if (c->expert_in_norm) printf(" expert_in_norm");
    if (c->expert_scale) printf(" expert_scale");
    if (c->shared_router) printf(" shared_router");
    printf("\n");
}

static void print_stats(const moe_config *c, const moe_trace *tr) {
    printf("load (tokens per expert%s):", c->n_zero_experts ? "; z: a zero-computation expert" : "");
    for (int e = 0; e < c->n_experts + c->n_zero_experts; e++) {
        if (e % 16 == 0) printf("\n ");
        printf(" %3d%s:%-4lld", e, e < c->n_experts ? "" : "z", (long long)tr->expert_tokens[e]);
    }
    printf("\naux_loss %.6f  z_loss %.6f  dropped %zu\n", tr->aux_loss, tr->z_loss,
           tr->n_dropped);
}

static void checksum(const float *y, size_t n, double *s, double *s2) {
    *s = *s2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        *s += y[i];
        *s2 += (double)y[i] * y[i];
    }
}

/* ---- running a layer, shared by both modes ---- */

/* Allocates the workspace into *ws (the caller frees ws->data), runs moe_forward with a trace
   into ex, wt, load and times it. Prints the problem and returns -1 on failure. */
static int forward_traced(const moe_layer *layer, const float *x, size_t T, float *y,
                          int32_t *ex, float *wt, int64_t *load, moe_workspace *ws,
                          moe_trace *tr, double *secs) {
    size_t bytes;
    if (moe_workspace_size(layer, T, &bytes) != MOE_OK ||
        !(ws->data = MIO_MALLOC(bytes ? bytes : 1))) {
        fprintf(stderr, "moe: out of memory for the workspace of %zu tokens\n", T);
        return -1;
    }
    ws->size = bytes;
    memset(tr, 0, sizeof *tr);
    tr->expert = ex, tr->weight = wt, tr->expert_tokens = load;
    double t0 = now_s();
    moe_result r = moe_forward(layer, x, T, y, ws, tr);
    *secs = now_s() - t0;
    if (r != MOE_OK) {
        fprintf(stderr, "moe: moe_forward: %s\n", moe_result_string(r));
        return -1;
    }
    return 0;
}

/* ---- toy layer ---- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [-a, a) */
static void fill(float *p, size_t n, float a, uint64_t *s) {
    for (size_t i = 0; i < n; i++)
        p[i] = a * (2.0f * (float)(rng_next(s) >> 40) / 16777216.0f - 1.0f);
}

static int run_toy(const opts *o) {
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = o->d; c.d_ff = o->ff; c.n_experts = o->experts; c.top_k = o->k;
    c.n_shared = o->shared; c.score = o->score; c.act = o->act;
    c.ffn = o->plain ? MOE_FFN_PLAIN : MOE_FFN_GATED;
    c.norm = o->norm ? MOE_NORM_SUM : MOE_NORM_NONE;
    c.n_group = o->groups;
    c.topk_group = o->topk_group > 0 ? o->topk_group : o->groups;
    c.group_score = (o->score == MOE_SCORE_SIGMOID) ? MOE_GROUP_TOP2_SUM : MOE_GROUP_MAX;
    c.format = (moe_format)o->format, c.shared_format = (moe_format)o->shared_format;
    c.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    moe_result r = moe_config_check(&c);
    if (r != MOE_OK) {
        fprintf(stderr, "moe: bad toy config: %s\n", moe_result_string(r));
        return 2;
    }
    int rc = 1;
    moe_layer *layer = NULL;
    moe_workspace ws = {0};
    ws.data = NULL, ws.size = 0, ws.n_threads = o->threads;
    size_t d = (size_t)o->d, ff = (size_t)o->ff, E = (size_t)o->experts, T = (size_t)o->tokens;
    size_t S = (size_t)o->shared * ff, K = (size_t)o->k;
    uint64_t s = o->seed;
    float *router = MIO_MALLOC(E * d * sizeof *router);
    float *gate = MIO_MALLOC(E * ff * d * sizeof(float));
    float *up = MIO_MALLOC(E * ff * d * sizeof(float));
    float *down = MIO_MALLOC(E * d * ff * sizeof(float));
    float *sg = MIO_MALLOC((S ? S : 1) * d * sizeof(float));
    float *su = MIO_MALLOC((S ? S : 1) * d * sizeof(float));
    float *sd = MIO_MALLOC((S ? S : 1) * d * sizeof(float));
    float *x = MIO_MALLOC((T ? T : 1) * d * sizeof(float));
    float *y = MIO_MALLOC((T ? T : 1) * d * sizeof(float));
    int32_t *ex = MIO_MALLOC((T ? T : 1) * K * sizeof(int32_t));
    float *wt = MIO_MALLOC((T ? T : 1) * K * sizeof(float));
    int64_t *load = MIO_MALLOC(E * sizeof(int64_t));
    if (!router || !gate || !up || !down || !sg || !su || !sd || !x || !y || !ex || !wt || !load) {
        fprintf(stderr, "moe: out of memory\n");
        goto done;
    }
    fill(router, E * d, 2.0f / sqrtf((float)d), &s);
    fill(gate, E * ff * d, 1.7f / sqrtf((float)d), &s);
    fill(up, E * ff * d, 1.7f / sqrtf((float)d), &s);
    fill(down, E * d * ff, 1.7f / sqrtf((float)ff), &s);
    fill(sg, S * d, 1.7f / sqrtf((float)d), &s);
    fill(su, S * d, 1.7f / sqrtf((float)d), &s);
    fill(sd, S * d, S ? 1.7f / sqrtf((float)S) : 0.0f, &s);
    fill(x, T * d, 1.7f, &s);

    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = router; w.gate.data = gate; w.up.data = up; w.down.data = down;
    if (S) { w.shared_gate_proj.data = sg; w.shared_up.data = su; w.shared_down.data = sd; }
    double t0 = now_s();
    r = moe_layer_create(&layer, &c, &w);
    double t_create = now_s() - t0;
    if (r != MOE_OK) {
        fprintf(stderr, "moe: moe_layer_create: %s\n", moe_result_string(r));
        goto done;
    }
    moe_trace tr;
    double t_fwd;
    if (forward_traced(layer, x, T, y, ex, wt, load, &ws, &tr, &t_fwd)) goto done;
    const moe_config *fc = moe_layer_config(layer);
    printf("moe.h %d.%d.%d toy layer, seed %llu, %zu tokens\n", MOE_VERSION_MAJOR,
           MOE_VERSION_MINOR, MOE_VERSION_PATCH, o->seed, T);
    print_config(fc);
    for (size_t t = 0; t < T; t++) {
        printf("token %zu:", t);
        for (size_t j = 0; j < K; j++) printf("  e%d %.4f", ex[t * K + j], (double)wt[t * K + j]);
        printf("\n");
    }
    print_stats(fc, &tr);
    double cs, cs2;
    checksum(y, T * d, &cs, &cs2);
    printf("y checksum: sum %.6f  sum of squares %.6f\n", cs, cs2);
    printf("time: create %.3f ms (packed %.1f KiB), forward %.3f ms\n", 1e3 * t_create,
           (double)moe_layer_packed_bytes(layer) / 1024.0, 1e3 * t_fwd);
    if (o->stats) printf("peak RSS %.1f MiB\n", peak_rss_mib());
    rc = 0;
done:
    moe_layer_free(layer);
    MIO_FREE(ws.data); MIO_FREE(router); MIO_FREE(gate); MIO_FREE(up); MIO_FREE(down);
    MIO_FREE(sg); MIO_FREE(su); MIO_FREE(sd); MIO_FREE(x); MIO_FREE(y); MIO_FREE(ex);
    MIO_FREE(wt); MIO_FREE(load);
    return rc;
}

/* ---- checkpoint layer ---- */

/* Source views the layer is packed from: the mio tensors (pages released once packed). */
typedef struct loader {
    size_t n_used, cap;
    size_t released;            /* bytes handed back through on_packed */
    const mio_tensor *used[];   /* cap entries: every tensor of the plan */
} loader;

static void on_packed(void *user, const void *data, size_t bytes) {
    loader *L = (loader *)user;
    const char *p = (const char *)data;
    for (size_t i = 0; i < L->n_used; i++) {
        const mio_tensor *t = L->used[i];
        const char *b = (const char *)t->data;
        if (t->mapped && p >= b && p < b + t->nbytes) {
            size_t off = (size_t)(p - b), len = bytes <= t->nbytes - off ? bytes : t->nbytes - off;
            if (mio_tensor_release(t, off, len, NULL, 0) == MIO_OK) L->released += len;
            return;
        }
    }
}

/* A safetensors dtype as hf_found takes it: a plain one into *out, the storage dtypes of
   quantized weights, scales and shapes into *store (hf_bind checks which a tensor may have);
   0 for any other. */
static int dtype_of(int mio_dt, moe_dtype *out, int *store) {
    *store = HF_ST_PLAIN;
    switch (mio_dt) {
    case MIO_DTYPE_F32: *out = MOE_F32; return 1;
    case MIO_DTYPE_BF16: *out = MOE_BF16; return 1;
    case MIO_DTYPE_F16: *out = MOE_F16; return 1;
    case MIO_DTYPE_F8_E4M3: *store = HF_ST_F8_E4M3; return 1;
    case MIO_DTYPE_F8_E8M0: *store = HF_ST_E8M0; return 1;
    case MIO_DTYPE_U8: *store = HF_ST_U8; return 1;
    case MIO_DTYPE_I8: *store = HF_ST_I8; return 1;
    case MIO_DTYPE_I32: *store = HF_ST_I32; return 1;
    case MIO_DTYPE_I64: *store = HF_ST_I64; return 1;
    default: return 0;
    }
}

/* hf_lookup for the checkpoint: finds a tensor in the safetensors files and remembers it, so
   that on_packed can release its pages. */
static int model_lookup(void *user, const char *name, hf_found *out, char *err, size_t en) {
    void **ctx = (void **)user;
    mio_model *m = (mio_model *)ctx[0];
    loader *ld = (loader *)ctx[1];
    const mio_tensor *t;
    char e[MIO_ERR_SIZE];
    if (!mio_model_has(m, name)) return 1;
    int r = mio_model_tensor(m, name, &t, e, sizeof e);
    if (r == MIO_ERR_NOT_FOUND) {
        snprintf(err, en, "%s", e);
        return 1;
    }
    if (r) {
        snprintf(err, en, "cannot read tensor '%s': %s", name, e);
        return -1;
    }
    out->dtype = MOE_F32;
    if (!dtype_of(t->dtype, &out->dtype, &out->store)) {
        snprintf(err, en, "tensor '%s' has unsupported dtype %s (moe.h takes F32, BF16, F16; "
                 "quantized checkpoints F8_E4M3, U8, I32 and their scales)", name,
                 mio_dtype_name(t->dtype));
        return -1;
    }
    out->data = t->data; /* moe.h reads sources through memcpy: alignment does not matter */
    out->rank = t->rank;
    for (int i = 0; i < t->rank && i < 8; i++) out->shape[i] = t->shape[i];
    for (size_t i = 0; i < ld->n_used; i++)
        if (ld->used[i] == t) return 0;
    if (ld->n_used >= ld->cap) {
        snprintf(err, en, "too many tensors in one layer"); /* cannot happen: cap is the plan's count */
        return -1;
    }
    ld->used[ld->n_used++] = t;
    return 0;
}

/* 1 if path's directory is writable (the outputs are created there). */
static int dir_writable(const char *path, char *dir, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, n, ".");
    else if (slash == path) snprintf(dir, n, "/");
    else snprintf(dir, n, "%.*s", (int)(slash - path), path);
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && access(dir, W_OK) == 0;
}

static const char *const out_flags[3] = {"--output", "--experts-out", "--weights-out"};

/* The outputs before anything is read: each in a writable directory, not something other than
   a file, no two the same file. 0 ok, else the message is printed. */
static int check_outputs(const char *const outs[3]) {
    char dir[4096];
    struct stat st;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        if (!dir_writable(outs[i], dir, sizeof dir)) {
            fprintf(stderr, "moe: cannot write output '%s': directory '%s' is missing or not "
                    "writable\n", outs[i], dir);
            return -1;
        }
        if (stat(outs[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            fprintf(stderr, "moe: cannot write output '%s' (%s): it exists and is not a regular "
                    "file\n", outs[i], out_flags[i]);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (outs[j] && mio_same_file(outs[i], outs[j])) {
                fprintf(stderr, "moe: %s '%s' and %s '%s' name the same file\n", out_flags[j],
                        outs[j], out_flags[i], outs[i]);
                return -1;
            }
    }
    return 0;
}

/* No output may be one of the files the run reads (realpath, device and inode): the input,
   config.json, or any file of the checkpoint, whether this layer reads it or not. */
static int check_not_inputs(const char *const outs[3], const char *input, const char *config,
                            const mio_model *m) {
    char path[4096];
    size_t n = m->sharded ? m->n_shards + 1 : 1;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        const char *why = NULL, *what = NULL;
        if (mio_same_file(outs[i], input)) why = "the input (--input)", what = input;
        else if (mio_same_file(outs[i], config)) why = "the model's config.json", what = config;
        for (size_t k = 0; k < n && !why; k++) {
            if (!m->sharded) snprintf(path, sizeof path, "%s", m->single.path);
            else if (k == 0) snprintf(path, sizeof path, "%s", m->index_path);
            else snprintf(path, sizeof path, "%s/%s", m->dir, m->shards[k - 1].file);
            if (mio_same_file(outs[i], path)) why = "a file of the checkpoint", what = path;
        }
        if (why) {
            fprintf(stderr, "moe: refusing to write %s '%s': it is %s, '%s'\n", out_flags[i],
                    outs[i], why, what);
            return -1;
        }
    }
    return 0;
}

static int run_model(const opts *o) {
    char err[MIO_ERR_SIZE + 1024], e2[MIO_ERR_SIZE], path[4096], dir[4096];
    struct stat st;
    int rc = 1;
    mio_json_doc doc;
    mio_model model;
    hf_plan plan;
    loader *ld = NULL;
    float *x = NULL, *y = NULL, *wt = NULL;
    int32_t *ex = NULL;
    int64_t *load = NULL;
    hf_bound bound;
    moe_layer *layer = NULL;
    moe_workspace ws = {0};
    ws.data = NULL, ws.size = 0, ws.n_threads = o->threads;
    int model_open = 0;
    const char *const outs[3] = {o->output, o->experts_out, o->weights_out};
    mio_outputs written;

    memset(&doc, 0, sizeof doc);
    mio_outputs_init(&written);
    memset(&bound, 0, sizeof bound);
    if (!o->layer || !o->input || !o->output) {
        fprintf(stderr, "moe: run --model needs --layer, --input and --output (see moe --help)\n");
        return 2;
    }
    if (check_outputs(outs)) return 1;
    double t_start = now_s();
    if (stat(o->model, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "moe: model directory '%s' not found (or not a directory)\n", o->model);
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", o->model);
    if (stat(path, &st)) {
        fprintf(stderr, "moe: %s: config.json not found\n", path);
        return 1;
    }
    if (mio_json_parse_file(&doc, path, e2, sizeof e2)) {
        fprintf(stderr, "moe: %s\n", e2);
        return 1;
    }
    if (hf_plan_layer(&plan, mio_json_root(&doc), o->layer, err, sizeof err)) {
        /* config errors name the file; --layer errors do not */
        if (!strncmp(err, "config.json", 11)) fprintf(stderr, "moe: %s/%s\n", o->model, err);
        else fprintf(stderr, "moe: %s\n", err);
        goto done;
    }
    if (plan.note[0]) fprintf(stderr, "moe: note: %s\n", plan.note);
    if (o->drop >= 0) {
        if (!plan.cfg.capacity) {
            fprintf(stderr, "moe: --drop applies to layers with an expert capacity "
                    "(switch_transformers); %s has none\n", plan.family);
            goto done;
        }
        plan.cfg.drop = (moe_drop)o->drop;
    }

    /* the input first: cheap to check, and no point mapping weights for a bad one */
    size_t T, D;
    if (mio_npy_read(o->input, &x, &T, &D, e2, sizeof e2)) {
        fprintf(stderr, "moe: input %s\n", e2);
        goto done;
    }
    if (D != (size_t)plan.cfg.d_model) {
        fprintf(stderr, "moe: input %s has width %zu, expected hidden_size %d (config.json): "
                "X.npy must be float32 [T][%d]\n", o->input, D, plan.cfg.d_model, plan.cfg.d_model);
        goto done;
    }

    if (mio_model_open_as(&model, o->model, o->use_mmap ? MIO_MAP : MIO_READ, e2, sizeof e2)) {
        fprintf(stderr, "moe: %s\n", e2);
        goto done;
    }
    model_open = 1;
    snprintf(dir, sizeof dir, "%s/config.json", o->model);
    if (check_not_inputs(outs, o->input, dir, &model)) goto done;

    int E = plan.cfg.n_experts;
    size_t cap = plan.n_lookups;
    ld = cli_calloc(1, sizeof *ld + cap * sizeof *ld->used);
    if (!ld) { fprintf(stderr, "moe: out of memory\n"); goto done; }
    ld->cap = cap;
    moe_weights w;
    void *lookup_ctx[2] = {&model, ld};
    int br = hf_bind(&plan, model_lookup, lookup_ctx, &w, &bound, err, sizeof err);
    if (br) {
        fprintf(stderr, "moe: %s%s%s\n", err, br == -2 ? " in " : "", br == -2 ? o->model : "");
        goto done;
    }
    const char *prefix = bound.prefix;
    w.on_packed = on_packed;
    w.user = ld;

    plan.cfg.format = (moe_format)o->format, plan.cfg.shared_format = (moe_format)o->shared_format;
    plan.cfg.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    double t0 = now_s();
    moe_result r = moe_layer_create(&layer, &plan.cfg, &w);
    double t_create = now_s() - t0;
    if (r != MOE_OK) {
        fprintf(stderr, "moe: %s %s: moe_layer_create: %s\n", plan.family, plan.layer_name,
                moe_result_string(r));
        goto done;
    }
    double t_load = now_s() - t_start;
    mio_model_close(&model); /* the layer has its packed copy: the sources (or their maps) go */
    model_open = 0;

    size_t K = (size_t)plan.cfg.top_k, d = (size_t)plan.cfg.d_model;
    y = MIO_MALLOC((T ? T : 1) * d * sizeof *y);
    ex = MIO_MALLOC((T ? T : 1) * K * sizeof *ex);
    wt = MIO_MALLOC((T ? T : 1) * K * sizeof *wt);
    /* the trace counts the zero-computation experts too (LongCat-Flash) */
    load = MIO_MALLOC(((size_t)E + (size_t)plan.cfg.n_zero_experts) * sizeof *load);
    if (!y || !ex || !wt || !load) {
        fprintf(stderr, "moe: out of memory for %zu tokens\n", T);
        goto done;
    }
    moe_trace tr;
    double t_fwd;
    if (forward_traced(layer, x, T, y, ex, wt, load, &ws, &tr, &t_fwd)) goto done;

    /* the outputs appear together or not at all (moe_io.h: mio_outputs) */
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        int wr = i == 0 ? mio_outputs_npy_f32(&written, outs[i], y, T, d, e2, sizeof e2)
               : i == 1 ? mio_outputs_npy_i32(&written, outs[i], ex, T, K, e2, sizeof e2)
                        : mio_outputs_npy_f32(&written, outs[i], wt, T, K, e2, sizeof e2);
        if (wr) {
            fprintf(stderr, "moe: cannot write output '%s': %s\n", outs[i], e2);
            goto done;
        }
    }
    if (mio_outputs_commit(&written, e2, sizeof e2)) {
        fprintf(stderr, "moe: cannot write the outputs: %s\n", e2);
        goto done;
    }

    printf("%s %s (%s): %zu tokens, d=%zu, experts %d, top-%zu -> %s\n", plan.family,
           plan.layer_name, prefix, T, d, E, K, o->output);
    if (o->stats) {
        print_config(moe_layer_config(layer));
        print_stats(moe_layer_config(layer), &tr);
        double cs, cs2;
        checksum(y, T * d, &cs, &cs2);
        printf("y checksum: sum %.6f  sum of squares %.6f\n", cs, cs2);
        printf("load %.3f ms (create/pack %.3f ms), forward %.3f ms\n", 1e3 * t_load,
               1e3 * t_create, 1e3 * t_fwd);
        printf("packed %.1f KiB, source pages released %.1f KiB, peak RSS %.1f MiB\n",
               (double)moe_layer_packed_bytes(layer) / 1024.0, (double)ld->released / 1024.0,
               peak_rss_mib());
    }
    rc = 0;
done:
    mio_outputs_discard(&written);
    MIO_FREE(ld);
    hf_unbind(&bound);
    moe_layer_free(layer);
    if (model_open) mio_model_close(&model);
    mio_json_free(&doc);
    MIO_FREE(ws.data); MIO_FREE(x); MIO_FREE(y); MIO_FREE(ex); MIO_FREE(wt); MIO_FREE(load);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    int r = parse_args(argc, argv, &o);
    if (r == 1) return 0;
    if (r) return r;
    return o.model ? run_model(&o) : run_toy(&o);
}
