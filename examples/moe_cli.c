/* moe - run one Mixture-of-Experts layer with moe.h: a toy layer from a seed, or one MoE layer
   of a Hugging Face checkpoint (config.json + safetensors) on activations from a .npy file.

      build/moe                                   toy layer, default options
      build/moe run --experts 16 --k 4 --stats    toy layer, other options
      build/moe run --model DIR --layer L --input X.npy --output Y.npy
                    [--experts-out E.npy] [--weights-out W.npy] [--threads N] [--stats]
      build/moe --help | --version

   The checkpoint side is moe_model.h (which a program can call the same way): hf_config.h maps
   config.json to a moe_config and names the layer's tensors; moe_io.h reads them from the
   safetensors files (with pread into memory of its own by default, immune to a file that
   shrinks; through mmap with --mmap) and reads/writes .npy. After moe_layer_create has packed a
   source tensor, its pages are dropped (moe_weights.on_packed -> madvise), and the sources are
   closed once the layer is built. */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "moe_model.h"
#define MOE_GGUF_IMPLEMENTATION
#include "moe_gguf.h"

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
#ifdef _OPENMP
#include <omp.h>
#endif

/* Every allocation of the CLI goes through moe_io.h's MIO_MALLOC (malloc unless a program that
   includes this file says otherwise, as tests/test_faults.c does to fail each one in turn). */

static const char *usage_text =
    "usage: moe [run] [options]              run a toy MoE layer built from a seed\n"
    "       moe run --model DIR --layer L --input X.npy --output Y.npy [options]\n"
    "                                        run one MoE layer of a Hugging Face checkpoint\n"
    "       moe --help | --version\n"
    "\n"
    "Every option that takes a value takes it as --opt VALUE or --opt=VALUE. An option that has\n"
    "no effect in the run asked for (a toy option with --model, --mmap without it, --threads\n"
    "beyond the cores) gives a warning on stderr (moe: warning: ...), and the run goes on.\n"
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
    "\n";
/* in two parts: C99 compilers need to take string literals of 4095 bytes only */
static const char *usage_text2 =
    "Checkpoint layer:\n"
    "  --model DIR       directory with config.json and model.safetensors, or\n"
    "                    model.safetensors.index.json and its shards (F32/BF16/F16, FP8, INT4,\n"
    "                    MXFP4)\n"
    "  --layer L         layer index as in model.layers.L (DBRX: transformer.blocks.L).\n"
    "                    switch_transformers: encoder.N or decoder.N, or a flat index\n"
    "                    (0..num_layers-1 = encoder, then decoder)\n"
    "  --input X.npy     float32 [..., hidden_size], C order: the MoE block's input; every\n"
    "                    dimension but the last counts tokens ([B][T][d] is B*T tokens)\n"
    "  --output Y.npy    float32, X's shape: the MoE block's output, routed + shared\n"
    "                    experts (no residual, no norm)\n"
    "  --experts-out E.npy  int32 [..., k] (X's leading shape): selected experts, slot order\n"
    "                    (key descending)\n"
    "  --weights-out W.npy  float32 [..., k]: each slot's weight (0 for a slot dropped by\n"
    "                    capacity; Llama-4 applies it to the expert's input)\n"
    "  --mmap            map the checkpoint instead of reading it (the default, --no-mmap):\n"
    "                    the sources are not copied, so the peak memory is lower, but a file\n"
    "                    that shrinks while it is mapped kills the process with SIGBUS\n"
    "  --drop zero|identity  what a token over an expert's capacity outputs (layers with a\n"
    "                    capacity: switch_transformers): 0 (default, transformers since\n"
    "                    PR #37123 and Mesh TensorFlow) or p * x (transformers before it)\n"
    "  --verbose         also list the config.json keys that were absent, with the default\n"
    "                    taken (moe: note: KEY absent from config.json, default N)\n"
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
    "  --help            this text\n"
    "  --version         moe.h's version and what this build holds (kernels, OpenMP, formats)\n";

/* The usage text, then every model_type hf_config.h maps, wrapped. */
static void usage(void) {
    size_t col = 2;
    fputs(usage_text, stdout);
    fputs(usage_text2, stdout);
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

#define MAX_GIVEN 24

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
    int verbose;                /* --verbose: the defaults config.json left to the family */
    /* both */
    int threads, stats;
    int format, shared_format, bf16_dot; /* moe_format values (0 = as the checkpoint) */
    int shared_format_set, threads_set;
    /* the toy-only and the checkpoint-only options given, in order, for the warnings */
    const char *toy_given[MAX_GIVEN], *model_given[MAX_GIVEN];
    int n_toy_given, n_model_given;
} opts;

#if defined(__GNUC__) || defined(__clang__)
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
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

/* Prints "moe: warning: MESSAGE": an option that changes nothing in this run. */
static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "moe: warning: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* Remembers that option `name` was given (once, in order). */
static void given(const char **list, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], name)) return;
    if (*n < MAX_GIVEN) list[(*n)++] = name;
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
#define N_FORMATS (int)(sizeof format_names / sizeof *format_names)

/* The options without a value, for "--plain=1: --plain takes no value". */
static const char *const switches[] = {"--help", "--version", "--plain", "--norm", "--no-norm",
                                       "--stats", "--mmap", "--no-mmap", "--bf16-dot",
                                       "--verbose"};

/* 1 if argv[*i] is option `name`, given as "NAME VALUE" or "NAME=VALUE": *v is the value (NULL
   when none follows) and *i steps over what was read. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **v) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) || (a[n] && a[n] != '=')) return 0;
    if (a[n] == '=') *v = a + n + 1;
    else *v = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* 0 ok, 1 help or version printed, 2 error printed */
static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->d = 64; o->ff = 128; o->experts = 8; o->k = 2; o->shared = 1; o->tokens = 4;
    o->norm = 1; o->seed = 1; o->topk_group = -1; o->drop = -1;
    int i = 1;
    if (i < argc && !strcmp(argv[i], "run")) i++;
    else if (i < argc && argv[i][0] != '-')
        return fail("unknown command '%s' (moe run, moe --help)", argv[i]);
    for (; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int x;
/* the option `name` with its value in v; `a` becomes the bare name, for the messages */
#define VAL(name) (opt_val(argc, argv, &i, name, &v) && (a = name, 1))
#define TOY(name) given(o->toy_given, &o->n_toy_given, name)
#define CKPT(name) given(o->model_given, &o->n_model_given, name)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 1; }
        else if (!strcmp(a, "--version")) { printf("%s\n", moe_build_info()->text); return 1; }
        else if (!strcmp(a, "--plain")) o->plain = 1, TOY(a);
        else if (!strcmp(a, "--norm")) o->norm = 1, TOY(a);
        else if (!strcmp(a, "--no-norm")) o->norm = 0, TOY(a);
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!strcmp(a, "--mmap")) o->use_mmap = 1, CKPT(a);
        else if (!strcmp(a, "--no-mmap")) o->use_mmap = 0, CKPT(a);
        else if (!strcmp(a, "--verbose")) o->verbose = 1, CKPT(a);
        else if (VAL("--d")) { if (!parse_int(a, v, 1, 1 << 16, &o->d)) return 2; TOY(a); }
        else if (VAL("--ff")) { if (!parse_int(a, v, 1, 1 << 18, &o->ff)) return 2; TOY(a); }
        else if (VAL("--experts")) { if (!parse_int(a, v, 1, 4096, &o->experts)) return 2; TOY(a); }
        else if (VAL("--k")) { if (!parse_int(a, v, 1, 4096, &o->k)) return 2; TOY(a); }
        else if (VAL("--shared")) { if (!parse_int(a, v, 0, 64, &o->shared)) return 2; TOY(a); }
        else if (VAL("--tokens")) { if (!parse_int(a, v, 0, 1 << 20, &o->tokens)) return 2; TOY(a); }
        else if (VAL("--groups")) { if (!parse_int(a, v, 0, 4096, &o->groups)) return 2; TOY(a); }
        else if (VAL("--topk-group")) { if (!parse_int(a, v, 1, 4096, &o->topk_group)) return 2; TOY(a); }
        else if (VAL("--threads")) {
            if (!parse_int(a, v, 0, 4096, &o->threads)) return 2;
            o->threads_set = 1;
        }
        else if (VAL("--seed")) {
            char *end;
            errno = 0;
            if (v && *v && *v != '-') o->seed = strtoull(v, &end, 10);
            if (!v || !*v || *v == '-' || *end || errno)
                return fail("bad value '%s' for %s: expected an unsigned integer", v ? v : "(missing)", a);
            TOY(a);
        }
        else if (VAL("--dtype")) {
            if (!pick(a, v, format_names, N_FORMATS, &o->format)) return 2;
        }
        else if (VAL("--shared-dtype")) {
            if (!pick(a, v, format_names, N_FORMATS, &o->shared_format)) return 2;
            o->shared_format_set = 1;
        }
        else if (!strcmp(a, "--bf16-dot")) o->bf16_dot = 1;
        else if (VAL("--score")) { if (!pick(a, v, score_names, N_SCORES, &x)) return 2; o->score = (moe_score)x; TOY(a); }
        else if (VAL("--act")) { if (!pick(a, v, act_names, N_ACTS, &x)) return 2; o->act = (moe_act)x; TOY(a); }
        else if (VAL("--drop")) { if (!pick(a, v, drop_names, 2, &o->drop)) return 2; }
        else if (VAL("--model")) { if (!v || !*v) return fail("%s needs a value", a); o->model = v; }
        else if (VAL("--layer")) { if (!v || !*v) return fail("%s needs a value", a); o->layer = v; }
        else if (VAL("--input")) { if (!v || !*v) return fail("%s needs a value", a); o->input = v; }
        else if (VAL("--output")) { if (!v || !*v) return fail("%s needs a value", a); o->output = v; }
        else if (VAL("--experts-out")) { if (!v || !*v) return fail("%s needs a value", a); o->experts_out = v; }
        else if (VAL("--weights-out")) { if (!v || !*v) return fail("%s needs a value", a); o->weights_out = v; }
        else {
            const char *eq = strchr(a, '=');
            for (size_t k = 0; eq && k < sizeof switches / sizeof *switches; k++)
                if (strlen(switches[k]) == (size_t)(eq - a) && !strncmp(a, switches[k], (size_t)(eq - a)))
                    return fail("%s takes no value: '%s' (see moe --help)", switches[k], a);
            return fail("unknown option '%s' (see moe --help)", a);
        }
#undef VAL
#undef TOY
#undef CKPT
    }
    if (!o->model && (o->layer || o->input || o->output || o->experts_out || o->weights_out ||
                      o->drop >= 0))
        return fail("--layer, --input, --drop and the outputs need --model (see moe --help)");
    if (!o->shared_format_set) o->shared_format = o->format; /* --dtype sets both */
    return 0;
}

/* The warnings the options alone decide: those of the other mode, --threads. */
static void warn_options(const opts *o) {
    for (int i = 0; o->model && i < o->n_toy_given; i++) {
        const char *f = o->toy_given[i];
        warn("%s has no effect with --model: %s", f,
             !strcmp(f, "--tokens") ? "the tokens are the rows of --input"
             : !strcmp(f, "--seed") ? "the weights and the input are read, not drawn"
                                    : "the layer is the checkpoint's, as config.json says");
    }
    for (int i = 0; !o->model && i < o->n_model_given; i++)
        warn("%s has no effect without --model: the toy layer reads no checkpoint", o->model_given[i]);
    if (!o->threads_set) return;
#ifdef _OPENMP
    /* moe.h runs min(n, max(omp_get_max_threads, procs), thread limit) threads */
    int procs = omp_get_num_procs(), max = omp_get_max_threads(), limit = omp_get_thread_limit();
    int cap = max > procs ? max : procs;
    if (cap > limit) cap = limit;
    if (o->threads > cap)
        warn("--threads %d is more than the %d cores available: moe.h runs %d threads (more "
             "would only take turns on the cores)", o->threads, procs, cap);
    else if (o->threads > procs)
        warn("--threads %d is more than the %d cores available: the threads take turns on "
             "them, which is slower than %d threads", o->threads, procs, procs);
#else
    warn("--threads has no effect: this build has no OpenMP (it runs on one thread)");
#endif
}

/* The warning the layer decides: a shared-experts format without shared experts. (--bf16-dot
   never goes unused: it makes auto formats bf16, and moe.h refuses it with no bf16 set.) */
static void warn_layer(const opts *o, const moe_config *c, const char *what) {
    if (o->shared_format_set && !c->n_shared)
        warn("--shared-dtype has no effect: %s has no shared experts", what);
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
    printf(" format=%s", (unsigned)c->format < N_FORMATS ? format_names[c->format] : "?");
    if (c->n_shared)
        printf(" shared_format=%s",
               (unsigned)c->shared_format < N_FORMATS ? format_names[c->shared_format] : "?");
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
    warn_layer(o, moe_layer_config(layer), "the toy layer");
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

/* 1 if the directory named by dir[0 .. n) is one and writable (the outputs are created there). */
static int dir_writable(const char *dir, size_t n) {
    char d[4096];
    struct stat st;
    if (n >= sizeof d) return 0; /* longer than PATH_MAX: no call could reach it */
    memcpy(d, dir, n);
    d[n] = '\0';
    return stat(d, &st) == 0 && S_ISDIR(st.st_mode) && access(d, W_OK) == 0;
}

static const char *const out_flags[3] = {"--output", "--experts-out", "--weights-out"};

/* The outputs before anything is read: each in a writable directory, not something other than
   a file, no two the same file. 0 ok, else the message is printed. */
static int check_outputs(const char *const outs[3]) {
    struct stat st;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        /* the directory part of the path as written, printed whole */
        const char *slash = strrchr(outs[i], '/'), *dir = outs[i];
        size_t n = slash ? (size_t)(slash - outs[i]) : 1;
        if (!slash) dir = ".";
        else if (slash == outs[i]) dir = "/", n = 1;
        if (!dir_writable(dir, n)) {
            fprintf(stderr, "moe: cannot write output '%s': directory '%.*s' is missing or not "
                    "writable\n", outs[i], (int)n, dir);
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

/* "[2, 3, 24]" */
static void shape_str(char *b, size_t n, int rank, const size_t *shape) {
    size_t at = (size_t)snprintf(b, n, "[");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(b + at, n - at, "%s%zu", i ? ", " : "", shape[i]);
    if (at < n) snprintf(b + at, n - at, "]");
}

/* After a layer is made: the forward pass of x ([..., d], rank dims `shape`), the outputs
   together or not at all (moe_io.h: mio_outputs; y in x's shape, the slots in its leading
   shape), the summary line (`what`, `where`) and --stats. 0 on success. */
static int forward_and_write(const opts *o, const moe_layer *layer, const float *x, int rank,
                             const size_t *shape, size_t T, const char *what, const char *where,
                             double t_load, double t_create, size_t released) {
    const char *const outs[3] = {o->output, o->experts_out, o->weights_out};
    const moe_config *c = moe_layer_config(layer);
    size_t K = (size_t)c->top_k, d = (size_t)c->d_model, oshape[MIO_NPY_MAX_RANK];
    char e2[MIO_ERR_SIZE], sh[MIO_NPY_MAX_RANK * 22 + 4];
    int rc = 1;
    float *y = MIO_MALLOC((T ? T : 1) * d * sizeof *y), *wt = MIO_MALLOC((T ? T : 1) * K * sizeof *wt);
    int32_t *ex = MIO_MALLOC((T ? T : 1) * K * sizeof *ex);
    /* the trace counts the zero-computation experts too (LongCat-Flash) */
    int64_t *load = MIO_MALLOC(((size_t)c->n_experts + (size_t)c->n_zero_experts) * sizeof *load);
    moe_workspace ws = {0};
    mio_outputs written;
    moe_trace tr;
    double t_fwd;
    ws.n_threads = o->threads;
    mio_outputs_init(&written);
    if (!y || !ex || !wt || !load) {
        fprintf(stderr, "moe: out of memory for %zu tokens\n", T);
        goto done;
    }
    if (forward_traced(layer, x, T, y, ex, wt, load, &ws, &tr, &t_fwd)) goto done;
    memcpy(oshape, shape, (size_t)rank * sizeof *shape);
    oshape[rank - 1] = K;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        int wr = i == 0 ? mio_outputs_npy_f32_nd(&written, outs[i], y, rank, shape, e2, sizeof e2)
               : i == 1 ? mio_outputs_npy_i32_nd(&written, outs[i], ex, rank, oshape, e2, sizeof e2)
                        : mio_outputs_npy_f32_nd(&written, outs[i], wt, rank, oshape, e2, sizeof e2);
        if (wr) {
            fprintf(stderr, "moe: cannot write output '%s': %s\n", outs[i], e2);
            goto done;
        }
    }
    if (mio_outputs_commit(&written, e2, sizeof e2)) {
        fprintf(stderr, "moe: cannot write the outputs: %s\n", e2);
        goto done;
    }
    sh[0] = '\0';
    if (rank != 2) shape_str(sh, sizeof sh, rank, shape);
    printf("%s (%s): %zu tokens%s%s%s, d=%zu, experts %d, top-%zu -> %s\n", what, where, T,
           sh[0] ? " (" : "", sh, sh[0] ? ")" : "", d, c->n_experts, K, o->output);
    if (o->stats) {
        print_config(c);
        print_stats(c, &tr);
        double cs, cs2;
        checksum(y, T * d, &cs, &cs2);
        printf("y checksum: sum %.6f  sum of squares %.6f\n", cs, cs2);
        printf("load %.3f ms (create/pack %.3f ms), forward %.3f ms\n", 1e3 * t_load,
               1e3 * t_create, 1e3 * t_fwd);
        printf("packed %.1f KiB, source pages released %.1f KiB, peak RSS %.1f MiB\n",
               (double)moe_layer_packed_bytes(layer) / 1024.0, (double)released / 1024.0,
               peak_rss_mib());
    }
    rc = 0;
done:
    mio_outputs_discard(&written);
    MIO_FREE(ws.data); MIO_FREE(y); MIO_FREE(ex); MIO_FREE(wt); MIO_FREE(load);
    return rc;
}

/* run --model FILE.gguf: the layer from moe_gguf.h, then the same forward and outputs. */
static int run_gguf(const opts *o) {
    char err[MIO_ERR_SIZE + 4096], e2[MIO_ERR_SIZE], what[160];
    int rc = 1, rank = 0, opened = 0;
    size_t shape[MIO_NPY_MAX_RANK];
    float *x = NULL;
    int64_t layer_ix;
    moe_layer *layer = NULL;
    const char *const outs[3] = {o->output, o->experts_out, o->weights_out};
    mgg_file g;
    mgg_layer *L = NULL;
    char *end = NULL;

    if (!o->layer || !o->input || !o->output) {
        fprintf(stderr, "moe: run --model needs --layer, --input and --output (see moe --help)\n");
        return 2;
    }
    if (check_outputs(outs)) return 1;
    errno = 0;
    layer_ix = strtoll(o->layer, &end, 10);
    if (!o->layer[0] || *end || errno || layer_ix < 0) {
        fprintf(stderr, "moe: bad --layer '%s': a GGUF file takes a block index (0, 1, ...)\n", o->layer);
        return 2;
    }
    double t_start = now_s();
    if (mgg_open(&g, o->model, o->use_mmap ? MIO_MAP : MIO_READ, err, sizeof err)) {
        fprintf(stderr, "moe: %s\n", err);
        return 1;
    }
    opened = 1;
    if (!(L = MIO_MALLOC(sizeof *L))) {
        fprintf(stderr, "moe: out of memory\n");
        goto done;
    }
    if (mgg_plan_layer(&g, layer_ix, L, err, sizeof err)) {
        fprintf(stderr, "moe: %s\n", err);
        MIO_FREE(L), L = NULL;
        goto done;
    }
    if (L->note[0]) fprintf(stderr, "moe: note: %s\n", L->note);
    if (o->drop >= 0) {
        fprintf(stderr, "moe: --drop applies to layers with an expert capacity "
                "(switch_transformers); %s has none\n", L->arch);
        goto done;
    }
    size_t T, D;
    if (mio_npy_read_nd(o->input, &x, &rank, shape, &T, &D, e2, sizeof e2)) {
        fprintf(stderr, "moe: input %s\n", e2);
        goto done;
    }
    int dm = L->cfg.d_model;
    if (D != (size_t)dm) {
        fprintf(stderr, "moe: input %s has width %zu, expected %s.embedding_length %d (%s): "
                "X.npy must be float32 [..., %d]\n", o->input, D, L->arch, dm, o->model, dm);
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        const char *why = !outs[i] ? NULL : mio_same_file(outs[i], o->input) ? "the input"
                        : mio_same_file(outs[i], o->model) ? "the model file" : NULL;
        if (why) {
            fprintf(stderr, "moe: refusing to write %s '%s': it is %s\n", out_flags[i], outs[i], why);
            goto done;
        }
    }
    L->cfg.format = (moe_format)o->format, L->cfg.shared_format = (moe_format)o->shared_format;
    L->cfg.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    L->w.on_packed = mgg_on_packed, L->w.user = L;
    double t0 = now_s();
    moe_result r = moe_layer_create_msg(&layer, &L->cfg, &L->w, e2, sizeof e2);
    double t_create = now_s() - t0, t_load = now_s() - t_start;
    size_t released = L->released;
    snprintf(what, sizeof what, "%s block %lld", L->arch, (long long)layer_ix);
    if (r != MOE_OK) {
        fprintf(stderr, "moe: %s: moe_layer_create: %s\n", what, e2);
        goto done;
    }
    mgg_layer_free(L), MIO_FREE(L), L = NULL;
    mgg_close(&g), opened = 0;
    warn_layer(o, moe_layer_config(layer), what);
    if (forward_and_write(o, layer, x, rank, shape, T, what, "gguf", t_load, t_create, released))
        goto done;
    rc = 0;
done:
    moe_layer_free(layer);
    if (L) mgg_layer_free(L), MIO_FREE(L);
    if (opened) mgg_close(&g);
    MIO_FREE(x);
    return rc;
}

static int run_model(const opts *o) {
    char e2[MIO_ERR_SIZE], what[120];
    int rc = 1, rank = 0, opened = 0;
    size_t shape[MIO_NPY_MAX_RANK];
    float *x = NULL;
    moe_layer *layer = NULL;
    const char *const outs[3] = {o->output, o->experts_out, o->weights_out};
    mm_model model;
    mm_options mo;
    mm_layer_info info;
    /* room for every message with the model's path in it, however long the path */
    size_t en = MM_ERR_SIZE + strlen(o->model);
    char *err = NULL;

    memset(&mo, 0, sizeof mo);
    if (!o->layer || !o->input || !o->output) {
        fprintf(stderr, "moe: run --model needs --layer, --input and --output (see moe --help)\n");
        return 2;
    }
    if (check_outputs(outs)) return 1;
    double t_start = now_s();
    if (!(err = MIO_MALLOC(en))) {
        fprintf(stderr, "moe: out of memory\n");
        return 1;
    }
    if (mm_open(&model, o->model, o->use_mmap, err, en)) {
        fprintf(stderr, "moe: %s\n", err);
        goto done;
    }
    opened = 1;
    mo.format = (moe_format)o->format, mo.shared_format = (moe_format)o->shared_format;
    mo.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    if (mm_layer_plan(&model, o->layer, &mo, &info, err, en)) {
        fprintf(stderr, "moe: %s\n", err);
        goto done;
    }
    const hf_plan *plan = &info.plan;
    if (plan->note[0]) fprintf(stderr, "moe: note: %s\n", plan->note);
    for (int i = 0; o->verbose && i < plan->n_defaults && i < HF_MAX_DEFAULTS; i++)
        fprintf(stderr, "moe: note: %s %s config.json, default %s\n", plan->defaults[i].key,
                plan->defaults[i].null ? "is null in" : "absent from", plan->defaults[i].value);
    if (o->verbose && plan->n_defaults > HF_MAX_DEFAULTS)
        fprintf(stderr, "moe: note: and %d more keys absent from config.json, with defaults\n",
                plan->n_defaults - HF_MAX_DEFAULTS);
    if (o->drop >= 0) {
        if (!plan->cfg.capacity) {
            fprintf(stderr, "moe: --drop applies to layers with an expert capacity "
                    "(switch_transformers); %s has none\n", plan->family);
            goto done;
        }
        mo.drop = o->drop == MOE_DROP_IDENTITY ? MM_DROP_IDENTITY : MM_DROP_ZERO;
    }

    /* the input first: cheap to check, and no point reading weights for a bad one */
    size_t T, D;
    if (mio_npy_read_nd(o->input, &x, &rank, shape, &T, &D, e2, sizeof e2)) {
        fprintf(stderr, "moe: input %s\n", e2);
        goto done;
    }
    int dm = plan->cfg.d_model;
    if (D != (size_t)dm) {
        fprintf(stderr, "moe: input %s has width %zu, expected hidden_size %d (config.json): "
                "X.npy must be float32 [..., %d] ([T][%d], [B][T][%d], ...)\n", o->input, D, dm,
                dm, dm, dm);
        goto done;
    }
    if (check_not_inputs(outs, o->input, model.config_path, &model.files)) goto done;

    double t0 = now_s();
    if (mm_layer_create(&model, o->layer, &mo, &layer, &info, err, en)) {
        fprintf(stderr, "moe: %s\n", err);
        goto done;
    }
    double t_create = now_s() - t0, t_load = now_s() - t_start;
    mm_close(&model); /* config.json and the headers: the layer needs neither */
    opened = 0;
    snprintf(what, sizeof what, "%s %s", plan->family, plan->layer_name);
    warn_layer(o, moe_layer_config(layer), what);
    if (forward_and_write(o, layer, x, rank, shape, T, what, info.prefix, t_load, t_create,
                          info.released))
        goto done;
    rc = 0;
done:
    moe_layer_free(layer);
    if (opened) mm_close(&model);
    MIO_FREE(err);
    MIO_FREE(x);
    return rc;
}

int main(int argc, char **argv) {
    opts o;
    int r = parse_args(argc, argv, &o);
    if (r == 1) return 0;
    if (r) return r;
    warn_options(&o);
    if (o.model && mgg_is_gguf(o.model)) return run_gguf(&o);
    return o.model ? run_model(&o) : run_toy(&o);
}
