/* moe-ep - one MoE layer across MPI ranks (expert parallelism), with the bits of one process.

      mpirun -np N build/moe-ep run --model DIR --layer L --input X.npy --output Y.npy
                    [--experts-out E.npy] [--weights-out W.npy] [--split a,b,..] [options]
      mpirun -np N build/moe-ep run --jobs FILE     one run per line of FILE, one MPI start-up
      mpirun -np N build/moe-ep --bench [toy layer options]
      build/moe-ep --help

   Rank r of N packs only experts first[r] .. first[r + 1] - 1 of the layer, first[r] = r E / N
   (a contiguous slice; E % N != 0 gives slices that differ by one), and holds a contiguous
   range of the tokens, as data-parallel attention would leave them. The router and the shared
   experts are on every rank. One forward pass:
     1. every rank routes its tokens (moe_route_slots; capacity over the global token order);
     2. MPI_Allgather of the message counts (and each rank's status), then MPI_Alltoallv of the
        x rows to the ranks that own the selected experts: one row per (token, rank), with one
        header (token, slot, expert, row, weight) per (token, slot);
     3. each rank groups what it received by expert and runs moe_experts;
     4. MPI_Alltoallv of the output rows back, one per (token, slot), unsummed;
     5. the home rank places them at their slots and calls moe_combine (slot order, the shared
        experts added there). Rank 0 reads the input, scatters it, gathers y and the trace and
        writes the outputs.
   Why the bits are those of one process: MPI moves bytes and adds nothing; every row's expert
   output is the same FMA chain whatever rows share its call (moe.h's stages are batch
   invariant, tests/test_stages.c); the sum over a token's slots is done once, by moe_combine,
   in slot order; the router statistics are folded token by token in token order, passed from
   rank to rank. */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "moe_model.h"

#include <mpi.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static const char *usage_text =
    "usage: mpirun -np N moe-ep run --model DIR --layer L --input X.npy --output Y.npy [options]\n"
    "       mpirun -np N moe-ep run --jobs FILE\n"
    "       mpirun -np N moe-ep --bench [options]\n"
    "       moe-ep --help\n"
    "\n"
    "One MoE layer of a Hugging Face checkpoint over N MPI ranks: rank r packs experts\n"
    "r*E/N .. (r+1)*E/N - 1, holds a contiguous range of the tokens, routes them, sends the x\n"
    "rows to the experts' ranks and combines what comes back. The outputs are byte for byte\n"
    "those of `moe run` with the same flags, for any N, token split and thread count.\n"
    "\n"
    "As `moe run`:\n"
    "  --model DIR --layer L --input X.npy --output Y.npy --experts-out E.npy\n"
    "  --weights-out W.npy --dtype F --shared-dtype F --bf16-dot --drop zero|identity\n"
    "  --mmap / --no-mmap --threads N (OpenMP threads per rank) --stats\n"
    "  Rank 0 reads the input and writes the outputs; every rank opens DIR (the same\n"
    "  checkpoint at the same or another path).\n"
    "Expert parallelism:\n"
    "  --split LIST      tokens per rank, comma-separated, N numbers summing to T (zeros\n"
    "                    allowed); default: rank r gets tokens r*T/N .. (r+1)*T/N - 1\n"
    "  --jobs FILE       run each line of FILE (rank 0 reads it) as the options of one run;\n"
    "                    words are separated by blanks; # lines and empty lines are skipped.\n"
    "                    Every job runs; the exit status is 1 if any failed\n"
    "  Capacity (switch_transformers) is exact: each rank learns how many (token, slot)\n"
    "  pairs of each expert come before its tokens (MPI_Allgather of per-expert counts).\n"
    "  Before anything is read, the ranks compare a hash of their options (paths and\n"
    "  --threads excepted); after loading, a digest of the layer (config, and the routing\n"
    "  and shared-expert output of probe tokens). A rank whose load fails, or a mismatch,\n"
    "  stops every rank with a message naming the rank and the error.\n"
    "\n"
    "--bench: a toy layer (random bf16 weights from --seed, every rank builds only its\n"
    "experts) run at each --tokens count per rank; prints per rank the bytes sent and\n"
    "received by each all-to-all, the time of each phase, and the layer time against the\n"
    "whole layer in one process on rank 0 (whose output must be the same bits).\n"
    "  --d D (2048) --ff F (768) --experts E (32) --k K (8) --shared S (1, each of width F)\n"
    "  --tokens LIST     tokens per rank (1,128)   --iters I (5, median)   --seed S (1)\n"
    "  --dtype F         (bf16)   --threads N (1)\n";

#define EP_ERR (MM_ERR_SIZE + 256)
static const char *const format_names[] = {"auto", "f32", "bf16", "f16", /* = moe_format */
                                           "q8",   "q4",  "fp8",  "mxfp4"};
static const char *const drop_names[] = {"zero", "identity"};

static double now_s(void) { return MPI_Wtime(); }

/* ---- the ranks ---- */

typedef struct ep_ctx {
    MPI_Comm comm;
    int rank, size;
} ep_ctx;

static void say(char *err, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* err = the message (first one wins: a later say does not overwrite it). */
static void say(char *err, const char *fmt, ...) {
    va_list ap;
    if (err[0]) return;
    va_start(ap, fmt);
    vsnprintf(err, EP_ERR, fmt, ap);
    va_end(ap);
    if (!err[0]) snprintf(err, EP_ERR, "failed"); /* an empty message would read as success */
}

/* Every rank calls this at the same points with its error ("" = none). If any rank failed,
   each prints one line (its own error, or the first failed rank's) and 1 is returned on every
   rank; else 0. One MPI_Allreduce when all went well: the ranks never enter the next
   collective with one of them missing, so a failure cannot hang. */
static int agree(const ep_ctx *P, const char *err) {
    int mine = err[0] ? P->rank : P->size, first = P->size;
    char msg[EP_ERR];
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, P->comm);
    if (first == P->size) return 0;
    if (P->rank == first) snprintf(msg, sizeof msg, "%s", err);
    MPI_Bcast(msg, EP_ERR, MPI_CHAR, first, P->comm);
    msg[EP_ERR - 1] = '\0';
    if (err[0]) fprintf(stderr, "moe-ep: rank %d of %d: %s\n", P->rank, P->size, err);
    else fprintf(stderr, "moe-ep: rank %d of %d: stopped: rank %d failed: %s\n", P->rank, P->size,
                 first, msg);
    return 1;
}

/* Out of memory in the middle of a forward pass, after the message sizes were agreed: the
   other ranks are already in the next collective, so the job ends (MPI_Abort ends every rank
   with a non-zero status, never a hang). */
static void die(const ep_ctx *P, const char *what) {
    fprintf(stderr, "moe-ep: rank %d of %d: %s\n", P->rank, P->size, what);
    MPI_Abort(P->comm, 1);
    exit(1);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

/* Every rank's hash against rank 0's. On a mismatch every rank prints the ranks that differ
   and two descriptions (what): rank 0's and its own, or, on rank 0, the first differing
   rank's. 0 if all are equal, else 1 on every rank. */
static int same_everywhere(const ep_ctx *P, uint64_t h, const char *kind, const char *what) {
    enum { W = 1024 };
    uint64_t *all = (uint64_t *)malloc((size_t)P->size * sizeof *all);
    char list[256], *desc;
    int bad = 0, at = 0, other = -1;
    if (!all) die(P, "out of memory");
    MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, P->comm);
    list[0] = '\0';
    for (int r = 1; r < P->size; r++)
        if (all[r] != all[0]) {
            if (at < (int)sizeof list - 16)
                at += snprintf(list + at, sizeof list - (size_t)at, "%s%d", bad ? ", " : "", r);
            if (other < 0 || r == P->rank) other = r;
            bad++;
        }
    free(all);
    if (!bad) return 0;
    if (!(desc = (char *)calloc((size_t)P->size, W))) die(P, "out of memory");
    snprintf(desc + (size_t)P->rank * W, W, "%s", what);
    MPI_Allgather(MPI_IN_PLACE, W, MPI_CHAR, desc, W, MPI_CHAR, P->comm);
    for (int r = 0; r < P->size; r++) desc[(size_t)r * W + W - 1] = '\0';
    fprintf(stderr, "moe-ep: rank %d of %d: %s differ across ranks: rank%s %s against rank 0 "
            "(rank 0: %s; rank %d: %s)\n", P->rank, P->size, kind, bad > 1 ? "s" : "", list,
            desc, other, desc + (size_t)other * W);
    free(desc);
    return 1;
}

/* ---- options ---- */

typedef struct opts {
    int bench;
    const char *model, *layer, *input, *output, *experts_out, *weights_out, *jobs, *split;
    int use_mmap, drop, threads, threads_set, stats, verbose;
    int format, shared_format, shared_format_set, bf16_dot, format_set;
    /* bench */
    int d, ff, experts, k, shared, iters;
    unsigned long long seed;
    const char *tokens;
} opts;

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out, char *err) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        say(err, "bad value '%s' for %s: expected an integer in %d..%d", s ? s : "(missing)",
            flag, lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int pick(const char *flag, const char *s, const char *const *names, int n, int *out,
                char *err) {
    char list[256];
    int at = 0;
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) { *out = i; return 1; }
    list[0] = '\0';
    for (int i = 0; i < n; i++) at += snprintf(list + at, sizeof list - (size_t)at, " %s", names[i]);
    say(err, "bad value '%s' for %s: expected one of%s", s ? s : "(missing)", flag, list);
    return 0;
}

/* The options without a value, for "--stats=1: --stats takes no value". */
static const char *const switches[] = {"--help", "--version", "--bench", "--stats", "--mmap",
                                       "--no-mmap", "--bf16-dot", "--verbose"};

/* 1 if argv[*i] is option `name`, given as "NAME VALUE" or "NAME=VALUE" (as moe run takes
   them): *v is the value (NULL when none follows) and *i steps over what was read. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **v) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) || (a[n] && a[n] != '=')) return 0;
    if (a[n] == '=') *v = a + n + 1;
    else *v = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* 0 ok, 1 --help, 3 --version, 2 usage error (err says why). argv[0] is not an option. */
static int parse_args(int argc, char **argv, opts *o, char *err) {
    memset(o, 0, sizeof *o);
    o->drop = -1, o->d = 2048, o->ff = 768, o->experts = 32, o->k = 8, o->shared = 1;
    o->iters = 5, o->seed = 1, o->tokens = "1,128";
    int i = 1, cmd = 0;
    if (i < argc && !strcmp(argv[i], "run")) i++, cmd = 1;
    else if (i < argc && !strcmp(argv[i], "bench")) i++, o->bench = 1;
    else if (i < argc && argv[i][0] != '-') {
        say(err, "unknown command '%s' (moe-ep run, moe-ep --bench, moe-ep --help)", argv[i]);
        return 2;
    }
    for (; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        for (size_t j = 0; j < sizeof switches / sizeof *switches; j++) {
            size_t n = strlen(switches[j]);
            if (!strncmp(a, switches[j], n) && a[n] == '=') {
                say(err, "%s takes no value ('%s')", switches[j], a);
                return 2;
            }
        }
/* the option `name` with its value in v; `a` becomes the bare name, for the messages */
#define VAL(name) (opt_val(argc, argv, &i, name, &v) && (a = name, 1))
#define STR(field) do { if (!v) { say(err, "%s needs a value", a); return 2; } o->field = v; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        else if (!strcmp(a, "--version")) return 3;
        else if (!strcmp(a, "--verbose")) o->verbose = 1;
        else if (!strcmp(a, "--bench")) o->bench = 1;
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!strcmp(a, "--mmap")) o->use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) o->use_mmap = 0;
        else if (!strcmp(a, "--bf16-dot")) o->bf16_dot = 1;
        else if (VAL("--threads")) {
            if (!parse_int(a, v, 0, 4096, &o->threads, err)) return 2;
            o->threads_set = 1;
        }
        else if (VAL("--dtype")) {
            if (!pick(a, v, format_names, MOE_FORMAT_COUNT, &o->format, err)) return 2;
            o->format_set = 1;
        }
        else if (VAL("--shared-dtype")) {
            if (!pick(a, v, format_names, MOE_FORMAT_COUNT, &o->shared_format, err)) return 2;
            o->shared_format_set = 1;
        }
        else if (VAL("--drop")) { if (!pick(a, v, drop_names, 2, &o->drop, err)) return 2; }
        else if (VAL("--model")) STR(model);
        else if (VAL("--layer")) STR(layer);
        else if (VAL("--input")) STR(input);
        else if (VAL("--output")) STR(output);
        else if (VAL("--experts-out")) STR(experts_out);
        else if (VAL("--weights-out")) STR(weights_out);
        else if (VAL("--jobs")) STR(jobs);
        else if (VAL("--split")) STR(split);
        else if (VAL("--tokens")) STR(tokens);
        else if (VAL("--d")) { if (!parse_int(a, v, 1, 1 << 16, &o->d, err)) return 2; }
        else if (VAL("--ff")) { if (!parse_int(a, v, 1, 1 << 18, &o->ff, err)) return 2; }
        else if (VAL("--experts")) { if (!parse_int(a, v, 1, 4096, &o->experts, err)) return 2; }
        else if (VAL("--k")) { if (!parse_int(a, v, 1, 4096, &o->k, err)) return 2; }
        else if (VAL("--shared")) { if (!parse_int(a, v, 0, 64, &o->shared, err)) return 2; }
        else if (VAL("--iters")) { if (!parse_int(a, v, 1, 1000000, &o->iters, err)) return 2; }
        else if (VAL("--seed")) {
            char *end;
            errno = 0;
            if (v && *v && *v != '-') o->seed = strtoull(v, &end, 10);
            if (!v || !*v || *v == '-' || *end || errno) {
                say(err, "bad value '%s' for %s: expected an unsigned integer", v ? v : "(missing)", a);
                return 2;
            }
        }
        else { say(err, "unknown option '%s' (see moe-ep --help)", a); return 2; }
#undef VAL
#undef STR
    }
    if (o->bench && (cmd || o->model || o->jobs)) {
        say(err, "--bench runs a toy layer: it takes no run, --model or --jobs");
        return 2;
    }
    if (!o->bench && !o->model && !o->jobs) {
        say(err, "moe-ep runs a checkpoint layer (run --model DIR ..., or run --jobs FILE) or "
            "the benchmark (--bench); see moe-ep --help");
        return 2;
    }
    if (o->jobs && (o->model || o->layer || o->input || o->output || o->experts_out ||
                    o->weights_out || o->split || o->drop >= 0 || o->stats)) {
        say(err, "--jobs takes the runs' options from its file: give them there");
        return 2;
    }
    if (o->bench) {
        if (!o->format_set) o->format = MOE_FORMAT_BF16;
        if (!o->threads_set) o->threads = 1;
    }
    if (!o->shared_format_set) o->shared_format = o->format; /* --dtype sets both */
    return 0;
}

/* What the ranks must agree on: every option that changes the computation. Paths may differ
   (each machine has the checkpoint where it has it; only rank 0 reads the input and writes),
   and so may --threads, which changes no bit. */
static void canonical(const opts *o, char *s, size_t n) {
    int at = snprintf(s, n, "%s dtype=%s shared-dtype=%s bf16-dot=%d", o->bench ? "bench" : "run",
                      format_names[o->format], format_names[o->shared_format], o->bf16_dot);
    if (o->bench)
        snprintf(s + at, n - (size_t)at, " d=%d ff=%d experts=%d k=%d shared=%d tokens=%s "
                 "iters=%d seed=%llu", o->d, o->ff, o->experts, o->k, o->shared, o->tokens,
                 o->iters, o->seed);
    else if (o->jobs)
        snprintf(s + at, n - (size_t)at, " jobs");
    else
        snprintf(s + at, n - (size_t)at, " layer=%s drop=%s split=%s stats=%d",
                 o->layer ? o->layer : "-", o->drop < 0 ? "default" : drop_names[o->drop],
                 o->split ? o->split : "even", o->stats);
}

/* The token split: n[r] tokens on rank r, from --split or even. 0 ok, else err. */
static int token_split(const char *spec, size_t T, int N, size_t *n, char *err) {
    if (!spec || !strcmp(spec, "even")) {
        for (int r = 0; r < N; r++) n[r] = (size_t)(r + 1) * T / (size_t)N - (size_t)r * T / (size_t)N;
        return 0;
    }
    const char *p = spec;
    size_t sum = 0;
    int r = 0;
    for (;;) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || *p == '-' || errno || (*end && *end != ',')) {
            say(err, "--split '%s': expected %d token counts separated by commas", spec, N);
            return -1;
        }
        if (r < N) n[r] = (size_t)v;
        r++, sum += (size_t)v;
        if (!*end) break;
        p = end + 1;
    }
    if (r != N || sum != T) {
        say(err, "--split '%s': %d counts summing to %zu, but there are %d ranks and %zu tokens",
            spec, r, sum, N, T);
        return -1;
    }
    return 0;
}

/* ---- buffers that grow ---- */

typedef struct ep_buf {
    void *p;
    size_t n;
} ep_buf;

static void *grow(const ep_ctx *P, ep_buf *b, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > b->n) {
        void *q = realloc(b->p, bytes);
        if (!q) {
            char m[128];
            snprintf(m, sizeof m, "out of memory (%zu bytes for the forward pass)", bytes);
            die(P, m);
        }
        b->p = q, b->n = bytes;
    }
    return b->p;
}

/* ---- the expert-parallel layer ---- */

/* One (token, slot) going to an expert's rank. The row is sent once per (token, rank). */
typedef struct ep_hdr {
    int32_t token;           /* in the home rank's shard */
    int32_t slot;            /* 0 .. top_k - 1 */
    int32_t expert;          /* global id */
    int32_t row;             /* the row of this message that holds the token's x */
    float weight;            /* the slot weight (the expert's input factor, weight_on_input) */
} ep_hdr;

typedef struct ep_layer {
    moe_layer *layer;
    int E, RO, k, d, D;      /* experts; trace entries (+ zero experts, + shared router); top-k;
                                d_model; width of an expert's output (d_latent or d_model) */
    int capacity, drop_identity;
    int e0, ne;              /* this rank's experts */
    int *first;              /* [N + 1]: rank r owns experts first[r] .. first[r + 1] - 1 */
    int *owner;              /* [E] */
} ep_layer;

/* What one forward pass did on this rank (bench and --stats). */
enum { PH_ROUTE, PH_PACK, PH_WAIT, PH_COUNTS, PH_DISPATCH, PH_GROUP, PH_EXPERTS, PH_RETURN,
       PH_COMBINE, PH_N };
static const char *const phase_names[PH_N] = {"route", "pack", "wait", "counts", "dispatch",
                                              "group", "experts", "return", "combine"};
typedef struct ep_stat {
    double t[PH_N];          /* seconds in each phase; wait: in the barriers of sync */
    double total;
    size_t bytes_out[2], bytes_in[2]; /* to / from other ranks: dispatch, return */
    size_t pairs_out, pairs_in, rows_out, remote_pairs;
    int experts_used;        /* of this rank's experts, those that got a row */
} ep_stat;

typedef struct ep_work {
    ep_buf ws, slot, sw, sidx, last, cnt, msg, sbytes, sdisp, rbytes, rdisp, spairs, sdp, rpairs,
        rdp, rbuf, sbuf, xin, rw, zout, zret, zback, z, perm, offs, pos, capall, prefix;
    MPI_Datatype row_z;      /* D floats */
} ep_work;

static void work_free(ep_work *W) {
    ep_buf *b = &W->ws, *e = &W->prefix;
    for (; b <= e; b++) free(b->p);
}

static void owners(ep_layer *L, int N) {
    for (int r = 0; r <= N; r++) L->first[r] = (int)((int64_t)r * L->E / N);
    for (int r = 0; r < N; r++)
        for (int e = L->first[r]; e < L->first[r + 1]; e++) L->owner[e] = r;
}

/* The workspace for moe_route_slots / moe_combine on T tokens and moe_experts on R rows. */
static moe_workspace workspace(const ep_ctx *P, const ep_layer *L, ep_work *W, size_t T, size_t R,
                               int threads) {
    size_t a = 0, b = 0;
    moe_workspace ws = {0};
    if (moe_workspace_size(L->layer, T, &a) != MOE_OK ||
        moe_experts_workspace_size(L->layer, R, &b) != MOE_OK)
        die(P, "the workspace size overflows");
    ws.size = a > b ? a : b;
    ws.data = grow(P, &W->ws, ws.size);
    ws.n_threads = threads;
    return ws;
}

#define EP_INT_MAX ((size_t)INT32_MAX) /* MPI counts and displacements are int */

/* One forward pass over this rank's Tr tokens x ([Tr][d]). Out: y [Tr][d], ex and wt [Tr][k] (the
   trace's experts and weights), load [RO] (pairs each expert processed, this rank's tokens),
   *dropped; logits [Tr][RO] when not NULL. Every rank calls it with its own tokens (Tr may be
   0). sync (the bench): a barrier before each all-to-all, so that their times are the
   exchange's and the waiting for the slowest rank is counted apart. 0, or 1 on every rank
   after a failure (printed). */
static int ep_forward(const ep_ctx *P, const ep_layer *L, ep_work *W, int threads, int sync,
                      const float *x, size_t Tr, float *y, int32_t *ex, float *wt,
                      int64_t *load, size_t *dropped,
                      float *logits, float *mean_prob, moe_trace *local, ep_stat *st) {
    const int N = P->size, me = P->rank, k = L->k, E = L->E;
    const size_t d = (size_t)L->d, D = (size_t)L->D, TK = Tr * (size_t)k;
    char err[EP_ERR] = "";
    double t0 = now_s(), t1;
    moe_result r;
    ep_stat s;
    memset(&s, 0, sizeof s);

    /* 1. route */
    int32_t *slot = (int32_t *)grow(P, &W->slot, TK * sizeof(int32_t));
    float *sw = (float *)grow(P, &W->sw, TK * sizeof(float));
    moe_workspace ws = workspace(P, L, W, Tr, 0, threads);
    memset(local, 0, sizeof *local);
    local->expert = ex, local->weight = wt, local->logits = logits, local->mean_prob = mean_prob;
    r = moe_route_slots(L->layer, x, Tr, slot, sw, &ws, local);
    if (r != MOE_OK) say(err, "moe_route_slots: %s", moe_result_string(r));
    t1 = now_s(), s.t[PH_ROUTE] = t1 - t0, t0 = t1;

    /* capacity (Switch) is per expert over the global token order: the first `capacity` pairs
       are kept. A pair's place in that order is the pairs of its expert on the ranks before this
       one (their tokens come first) plus its place here. moe.h already dropped the pairs whose
       place here is over capacity; a global place is never smaller, so those stay dropped. */
    if (L->capacity > 0) {
        int64_t *all = (int64_t *)grow(P, &W->capall, (size_t)N * ((size_t)E + 1) * sizeof(int64_t));
        int64_t *mine = (int64_t *)grow(P, &W->prefix, ((size_t)E + 1) * sizeof(int64_t));
        memset(mine, 0, ((size_t)E + 1) * sizeof *mine);
        for (size_t i = 0; i < TK && !err[0]; i++)
            if (ex[i] >= 0 && ex[i] < E) mine[ex[i]]++;
        mine[E] = err[0] != 0; /* the status travels with the counts */
        MPI_Allgather(mine, E + 1, MPI_INT64_T, all, E + 1, MPI_INT64_T, P->comm);
        int failed = 0;
        for (int q = 0; q < N; q++) failed |= all[(size_t)q * ((size_t)E + 1) + (size_t)E] != 0;
        if (failed) {
            agree(P, err);
            return 1;
        }
        for (int e = 0; e < E; e++) {
            mine[e] = 0;
            for (int q = 0; q < me; q++) mine[e] += all[(size_t)q * ((size_t)E + 1) + (size_t)e];
        }
        for (size_t i = 0; i < TK; i++) {
            int e = ex[i];
            if (e < 0 || e >= E) continue; /* zero-computation experts have no capacity */
            if (mine[e]++ < L->capacity) {
                if (slot[i] < 0) say(err, "capacity: a pair dropped here is kept globally");
                continue;
            }
            wt[i] = 0.0f;
            if (slot[i] >= 0) {
                slot[i] = L->drop_identity ? MOE_SLOT_IDENTITY : MOE_SLOT_NONE;
                if (!L->drop_identity) sw[i] = 0.0f;
            }
        }
    }
    /* the trace's counts: a pair of a routed expert whose slot is not the expert was dropped */
    *dropped = 0;
    for (int e = 0; e < L->RO; e++) load[e] = 0;
    for (size_t i = 0; i < TK && !err[0]; i++) { /* (after a failure the slots are not set) */
        int drop = ex[i] < E && slot[i] < 0;
        *dropped += (size_t)drop;
        if (!drop && ex[i] >= 0 && ex[i] < L->RO) load[ex[i]]++;
    }

    /* 2. pack: per destination rank, the headers of its pairs in (token, slot) order, then the
       rows of the tokens that have a pair there, in token order */
    int64_t *cnt = (int64_t *)grow(P, &W->cnt, (size_t)(2 * N + 1) * sizeof(int64_t));
    int64_t *rows = cnt + 1, *pairs = cnt + 1 + N;
    int32_t *last = (int32_t *)grow(P, &W->last, (size_t)N * sizeof(int32_t));
    memset(cnt, 0, (size_t)(2 * N + 1) * sizeof *cnt);
    for (int q = 0; q < N; q++) last[q] = -1;
    for (size_t t = 0; t < Tr && !err[0]; t++)
        for (int j = 0; j < k; j++) {
            int e = slot[t * (size_t)k + (size_t)j];
            if (e < 0) continue;
            int q = L->owner[e];
            pairs[q]++;
            if (last[q] != (int32_t)t) last[q] = (int32_t)t, rows[q]++;
        }
    cnt[0] = err[0] != 0;
    t1 = now_s(), s.t[PH_PACK] = t1 - t0, t0 = t1;

    /* the message sizes of every rank, and every rank's status, in one collective */
    if (sync) {
        MPI_Barrier(P->comm);
        t1 = now_s(), s.t[PH_WAIT] += t1 - t0, t0 = t1;
    }
    int64_t *msg = (int64_t *)grow(P, &W->msg, (size_t)N * (size_t)(2 * N + 1) * sizeof(int64_t));
    MPI_Allgather(cnt, 2 * N + 1, MPI_INT64_T, msg, 2 * N + 1, MPI_INT64_T, P->comm);
    t1 = now_s(), s.t[PH_COUNTS] = t1 - t0, t0 = t1;
    {
        int failed = 0;
        for (int q = 0; q < N; q++) failed |= msg[(size_t)q * (size_t)(2 * N + 1)] != 0;
        if (failed) {
            agree(P, err);
            return 1;
        }
    }
    /* MPI counts and displacements are int: every rank checks every rank's totals, so all
       of them stop together if one message would not fit */
    for (int q = 0; q < N && !err[0]; q++) {
        size_t out = 0, in = 0;
        for (int o = 0; o < N; o++) {
            const int64_t *mq = msg + (size_t)q * (size_t)(2 * N + 1);
            const int64_t *mo = msg + (size_t)o * (size_t)(2 * N + 1);
            out += (size_t)mq[1 + N + o] * sizeof(ep_hdr) + (size_t)mq[1 + o] * d * sizeof(float);
            in += (size_t)mo[1 + N + q] * sizeof(ep_hdr) + (size_t)mo[1 + q] * d * sizeof(float);
        }
        if (out > EP_INT_MAX || in > EP_INT_MAX)
            say(err, "rank %d would send %zu and receive %zu bytes in one all-to-all, over the "
                "2 GiB of an MPI int count: give each rank fewer tokens", q, out, in);
    }
    if (err[0]) {
        fprintf(stderr, "moe-ep: rank %d of %d: %s\n", me, N, err);
        return 1;
    }
    int *sbytes = (int *)grow(P, &W->sbytes, (size_t)N * sizeof(int));
    int *sdisp = (int *)grow(P, &W->sdisp, (size_t)N * sizeof(int));
    int *rbytes = (int *)grow(P, &W->rbytes, (size_t)N * sizeof(int));
    int *rdisp = (int *)grow(P, &W->rdisp, (size_t)N * sizeof(int));
    int *spairs = (int *)grow(P, &W->spairs, (size_t)N * sizeof(int));
    int *sdp = (int *)grow(P, &W->sdp, (size_t)N * sizeof(int));
    int *rpairs = (int *)grow(P, &W->rpairs, (size_t)N * sizeof(int));
    int *rdp = (int *)grow(P, &W->rdp, (size_t)N * sizeof(int));
    size_t sb = 0, rb = 0, np_out = 0, np_in = 0;
    for (int q = 0; q < N; q++) {
        const int64_t *mq = msg + (size_t)q * (size_t)(2 * N + 1);
        sbytes[q] = (int)((size_t)pairs[q] * sizeof(ep_hdr) + (size_t)rows[q] * d * sizeof(float));
        rbytes[q] = (int)((size_t)mq[1 + N + me] * sizeof(ep_hdr) + (size_t)mq[1 + me] * d * sizeof(float));
        sdisp[q] = (int)sb, rdisp[q] = (int)rb, sb += (size_t)sbytes[q], rb += (size_t)rbytes[q];
        spairs[q] = (int)pairs[q], rpairs[q] = (int)mq[1 + N + me];
        sdp[q] = (int)np_out, rdp[q] = (int)np_in, np_out += (size_t)spairs[q], np_in += (size_t)rpairs[q];
        if (q != me) {
            s.bytes_out[0] += (size_t)sbytes[q], s.bytes_in[0] += (size_t)rbytes[q];
            s.bytes_out[1] += (size_t)rpairs[q] * D * sizeof(float);
            s.bytes_in[1] += (size_t)spairs[q] * D * sizeof(float);
            s.remote_pairs += (size_t)spairs[q];
        }
        s.rows_out += (size_t)rows[q];
    }
    s.pairs_out = np_out, s.pairs_in = np_in;

    /* fill the messages; sidx[p] = the slot (t k + j) of outgoing pair p, in message order */
    unsigned char *sbuf = (unsigned char *)grow(P, &W->sbuf, sb);
    int32_t *sidx = (int32_t *)grow(P, &W->sidx, np_out * sizeof(int32_t));
    {
        int64_t *hp = (int64_t *)grow(P, &W->pos, (size_t)(2 * N) * sizeof(int64_t)), *rp = hp + N;
        for (int q = 0; q < N; q++) hp[q] = 0, rp[q] = 0, last[q] = -1;
        for (size_t t = 0; t < Tr; t++)
            for (int j = 0; j < k; j++) {
                size_t i = t * (size_t)k + (size_t)j;
                int e = slot[i];
                if (e < 0) continue;
                int q = L->owner[e];
                if (last[q] != (int32_t)t) {
                    last[q] = (int32_t)t;
                    size_t at = (size_t)sdisp[q] + (size_t)pairs[q] * sizeof(ep_hdr); /* the rows */
                    memcpy(sbuf + at + (size_t)rp[q] * d * sizeof(float), x + t * d, d * sizeof(float));
                    rp[q]++;
                }
                ep_hdr h;
                h.token = (int32_t)t, h.slot = j, h.expert = e, h.row = (int32_t)(rp[q] - 1);
                h.weight = sw[i];
                memcpy(sbuf + sdisp[q] + (size_t)hp[q] * sizeof(ep_hdr), &h, sizeof h);
                sidx[(size_t)sdp[q] + (size_t)hp[q]] = (int32_t)i;
                hp[q]++;
            }
    }
    unsigned char *rbuf = (unsigned char *)grow(P, &W->rbuf, rb);
    t1 = now_s(), s.t[PH_PACK] += t1 - t0, t0 = t1;

    MPI_Alltoallv(sbuf, sbytes, sdisp, MPI_BYTE, rbuf, rbytes, rdisp, MPI_BYTE, P->comm);
    t1 = now_s(), s.t[PH_DISPATCH] = t1 - t0, t0 = t1;

    /* 3. group by local expert (counting sort; the order inside an expert does not matter:
       each row's output is its own FMA chain) */
    int32_t *offs = (int32_t *)grow(P, &W->offs, ((size_t)L->ne + 1) * sizeof(int32_t));
    int32_t *perm = (int32_t *)grow(P, &W->perm, np_in * sizeof(int32_t));
    float *xin = (float *)grow(P, &W->xin, np_in * d * sizeof(float));
    float *rw = (float *)grow(P, &W->rw, np_in * sizeof(float));
    float *zout = (float *)grow(P, &W->zout, np_in * D * sizeof(float));
    memset(offs, 0, ((size_t)L->ne + 1) * sizeof *offs);
    for (int q = 0; q < N; q++)
        for (int p = 0; p < rpairs[q]; p++) {
            ep_hdr h;
            memcpy(&h, rbuf + rdisp[q] + (size_t)p * sizeof h, sizeof h);
            int64_t nrows = msg[(size_t)q * (size_t)(2 * N + 1) + 1 + (size_t)me];
            if (h.expert < L->e0 || h.expert >= L->e0 + L->ne || h.row < 0 || h.row >= nrows)
                die(P, "a message header names an expert or row this rank does not have");
            offs[h.expert - L->e0 + 1]++;
        }
    for (int j = 0; j < L->ne; j++) offs[j + 1] += offs[j];
    {
        int32_t *at = (int32_t *)grow(P, &W->pos, ((size_t)L->ne + 1) * sizeof(int32_t));
        memcpy(at, offs, ((size_t)L->ne + 1) * sizeof *at);
        size_t p_all = 0;
        for (int q = 0; q < N; q++) {
            const unsigned char *base = rbuf + rdisp[q];
            const unsigned char *xr = base + (size_t)rpairs[q] * sizeof(ep_hdr);
            for (int p = 0; p < rpairs[q]; p++, p_all++) {
                ep_hdr h;
                memcpy(&h, base + (size_t)p * sizeof h, sizeof h);
                int32_t g = at[h.expert - L->e0]++;
                memcpy(xin + (size_t)g * d, xr + (size_t)h.row * d * sizeof(float), d * sizeof(float));
                rw[g] = h.weight;
                perm[p_all] = g;
            }
        }
    }
    t1 = now_s(), s.t[PH_GROUP] = t1 - t0, t0 = t1;

    for (int j = 0; j < L->ne; j++) s.experts_used += offs[j + 1] > offs[j];
    ws = workspace(P, L, W, Tr, np_in, threads);
    r = moe_experts(L->layer, xin, offs, rw, zout, &ws);
    if (r != MOE_OK) {
        snprintf(err, sizeof err, "moe_experts: %s", moe_result_string(r));
        die(P, err);
    }
    t1 = now_s(), s.t[PH_EXPERTS] = t1 - t0, t0 = t1;

    /* 4. the outputs back to their home ranks, in the order their headers came */
    float *zret = (float *)grow(P, &W->zret, np_in * D * sizeof(float));
    float *zback = (float *)grow(P, &W->zback, np_out * D * sizeof(float));
    for (size_t p = 0; p < np_in; p++) memcpy(zret + p * D, zout + (size_t)perm[p] * D, D * sizeof(float));
    if (sync) {
        t1 = now_s(), s.t[PH_GROUP] += t1 - t0, t0 = t1;
        MPI_Barrier(P->comm);
        t1 = now_s(), s.t[PH_WAIT] += t1 - t0, t0 = t1;
    }
    MPI_Alltoallv(zret, rpairs, rdp, W->row_z, zback, spairs, sdp, W->row_z, P->comm);
    t1 = now_s(), s.t[PH_RETURN] = t1 - t0, t0 = t1;

    /* 5. each row at its slot, then moe_combine in slot order (+ the shared experts) */
    float *z = (float *)grow(P, &W->z, TK * D * sizeof(float));
    for (size_t p = 0; p < np_out; p++) memcpy(z + (size_t)sidx[p] * D, zback + p * D, D * sizeof(float));
    ws = workspace(P, L, W, Tr, 0, threads);
    r = moe_combine(L->layer, x, Tr, slot, sw, z, y, &ws);
    if (r != MOE_OK) say(err, "moe_combine: %s", moe_result_string(r));
    t1 = now_s(), s.t[PH_COMBINE] = t1 - t0;
    for (int i = 0; i < PH_N; i++) s.total += s.t[i];
    if (st) *st = s;
    return agree(P, err);
}

/* ---- router statistics in token order ----
   moe_trace's mean_prob, aux_loss and z_loss are sums over tokens in token order, in double
   (moe.h, moe__trace), which no sum of per-rank partial results reproduces. So the sums are
   passed along: rank r receives them from rank r - 1, adds its tokens one by one, and passes
   them on; the last rank sends them to rank 0. Per token, exactly moe__trace's arithmetic on
   the logits; each rank checks its own fold against moe.h's trace of its tokens bit for bit,
   so a change on either side is caught. */
typedef struct ep_fold {
    double *sp, *pk, z; /* [RO] sums of softmax(logits), top-k picks; sum of lse^2 */
} ep_fold;

static int ahead(float ka, int ia, float kb, int ib) { /* moe.h's moe__ahead: NaN last */
    if (ka != ka) return 0;
    if (kb != kb) return 1;
    return ka > kb || (ka == kb && ia < ib);
}

static void fold_tokens(ep_fold *f, const float *logits, size_t T, int E, int k, float *p,
                        int32_t *top) {
    for (size_t t = 0; t < T; t++) {
        const float *h = logits + t * (size_t)E;
        double m = -INFINITY, s = 0.0;
        for (int e = 0; e < E; e++) m = h[e] > m ? h[e] : m;
        for (int e = 0; e < E; e++) s += exp((double)h[e] - m);
        double lse = m + log(s);
        f->z += lse * lse;
        for (int e = 0; e < E; e++) {
            p[e] = (float)exp((double)h[e] - lse);
            f->sp[e] += exp((double)h[e] - lse);
        }
        int have = 0; /* moe__topk: the k best of p */
        for (int i = 0; i < E; i++) {
            if (have == k && !ahead(p[i], i, p[top[k - 1]], top[k - 1])) continue;
            int j = have < k ? have++ : k - 1;
            while (j > 0 && ahead(p[i], i, p[top[j - 1]], top[j - 1])) top[j] = top[j - 1], j--;
            top[j] = i;
        }
        for (int j = 0; j < k; j++) f->pk[top[j]] += 1.0;
    }
}

/* mean_prob, aux_loss and z_loss from the sums over T tokens, as moe__trace finishes them. */
static void fold_finish(const ep_fold *f, size_t T, int E, float *mean_prob, double *aux_loss,
                        double *z_loss) {
    double aux = 0.0;
    for (int e = 0; e < E; e++) {
        double mp = T ? f->sp[e] / (double)T : 0.0;
        mean_prob[e] = (float)mp;
        aux += T ? f->pk[e] / (double)T * mp : 0.0;
    }
    *aux_loss = aux * (double)E;
    *z_loss = T ? f->z / (double)T : 0.0;
}

/* The statistics of all T tokens into rank 0's mean_prob / aux / z. Tr tokens here, with their
   logits; local is moe.h's trace of them (the check). 0, or 1 on every rank. */
static int ep_router_stats(const ep_ctx *P, const ep_layer *L, const float *logits, size_t Tr,
                           size_t T, const moe_trace *local, const float *local_mp,
                           float *mean_prob, double *aux, double *z) {
    const int E = L->RO, n = 2 * E + 1;
    double *buf = (double *)calloc((size_t)n, sizeof(double));
    float *p = (float *)malloc((size_t)E * sizeof(float) + 1);
    float *mp = (float *)malloc((size_t)E * sizeof(float) + 1);
    int32_t *top = (int32_t *)malloc((size_t)L->k * sizeof(int32_t));
    char err[EP_ERR] = "";
    ep_fold f;
    if (!buf || !p || !mp || !top) die(P, "out of memory");
    /* the check: this rank's tokens alone, from zero, against moe.h */
    f.sp = buf, f.pk = buf + E, f.z = 0.0;
    if (Tr) {
        double a, zz;
        fold_tokens(&f, logits, Tr, E, L->k, p, top);
        fold_finish(&f, Tr, E, mp, &a, &zz);
        if (memcmp(mp, local_mp, (size_t)E * sizeof *mp) || memcmp(&a, &local->aux_loss, sizeof a) ||
            memcmp(&zz, &local->z_loss, sizeof zz))
            say(err, "the router statistics folded here differ from moe.h's trace of the same "
                "tokens (moe_ep.c's fold_tokens no longer follows moe.h's moe__trace)");
        memset(buf, 0, (size_t)n * sizeof *buf);
    }
    if (P->rank > 0) MPI_Recv(buf, n, MPI_DOUBLE, P->rank - 1, 7, P->comm, MPI_STATUS_IGNORE);
    f.sp = buf, f.pk = buf + E, f.z = buf[2 * E];
    fold_tokens(&f, logits, Tr, E, L->k, p, top);
    buf[2 * E] = f.z;
    if (P->rank < P->size - 1) MPI_Send(buf, n, MPI_DOUBLE, P->rank + 1, 7, P->comm);
    else if (P->rank > 0) MPI_Send(buf, n, MPI_DOUBLE, 0, 8, P->comm);
    if (P->rank == 0) {
        if (P->size > 1) MPI_Recv(buf, n, MPI_DOUBLE, P->size - 1, 8, P->comm, MPI_STATUS_IGNORE);
        f.sp = buf, f.pk = buf + E, f.z = buf[2 * E];
        fold_finish(&f, T, E, mean_prob, aux, z);
    }
    free(buf), free(p), free(mp), free(top);
    return agree(P, err);
}

/* ---- a layer on every rank ---- */

/* A digest of what this rank's layer computes where the ranks must agree: the config, and the
   routing and shared-expert output of a few probe tokens (so a different checkpoint, options or
   kernels on one machine is found before it gives wrong tokens). */
static uint64_t layer_digest(const ep_ctx *P, const ep_layer *L, ep_work *W, int threads) {
    enum { NP = 3 };
    const moe_config *c = moe_layer_config(L->layer);
    size_t d = (size_t)L->d, k = (size_t)L->k, RO = (size_t)L->RO;
    float *x = (float *)malloc(NP * d * sizeof *x), *y = (float *)malloc(NP * d * sizeof *y);
    float *lg = (float *)malloc(NP * RO * sizeof *lg), *wt = (float *)malloc(NP * k * sizeof *wt);
    int32_t *ex = (int32_t *)malloc(NP * k * sizeof *ex);
    int32_t *none = (int32_t *)malloc(NP * k * sizeof *none);
    float *w0 = (float *)calloc(NP * k, sizeof *w0);
    uint64_t h = FNV0;
    int v[16];
    if (!x || !y || !lg || !wt || !ex || !none || !w0) die(P, "out of memory");
    v[0] = c->n_experts, v[1] = c->n_zero_experts, v[2] = c->top_k, v[3] = c->d_model;
    v[4] = c->d_ff, v[5] = c->n_shared, v[6] = c->d_shared, v[7] = c->d_latent;
    v[8] = c->capacity, v[9] = c->drop, v[10] = c->format, v[11] = c->shared_format;
    v[12] = c->dot, v[13] = c->weight_on_input, v[14] = c->ffn, v[15] = c->act;
    h = fnv1a(h, v, sizeof v);
    /* integer arithmetic only: the same probe on every machine, whatever its libm */
    for (size_t i = 0; i < NP * d; i++) x[i] = (float)((int)((i * 2654435761u) >> 7 & 1023) - 512) / 256.0f;
    moe_workspace ws = workspace(P, L, W, NP, 0, threads);
    moe_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.logits = lg, tr.expert = ex, tr.weight = wt;
    if (moe_route(L->layer, x, NP, &ws, &tr) != MOE_OK) die(P, "moe_route on the probe tokens failed");
    for (size_t i = 0; i < NP * k; i++) none[i] = MOE_SLOT_NONE;
    if (moe_forward_routed(L->layer, x, NP, none, w0, y, &ws) != MOE_OK)
        die(P, "moe_forward_routed on the probe tokens failed");
    h = fnv1a(h, lg, NP * RO * sizeof *lg), h = fnv1a(h, ex, NP * k * sizeof *ex);
    h = fnv1a(h, wt, NP * k * sizeof *wt), h = fnv1a(h, y, NP * d * sizeof *y);
    free(x), free(y), free(lg), free(wt), free(ex), free(none), free(w0);
    return h;
}

/* L takes the layer, whatever happens (free_layer frees it). 0, or -1 out of memory. */
static int setup_layer(const ep_ctx *P, ep_layer *L, ep_work *W, moe_layer *layer) {
    const moe_config *c = moe_layer_config(layer);
    memset(L, 0, sizeof *L);
    L->layer = layer;
    L->E = c->n_experts, L->k = c->top_k, L->d = c->d_model;
    L->RO = c->n_experts + c->n_zero_experts + (c->shared_router ? c->n_shared : 0);
    L->D = c->d_latent ? c->d_latent : c->d_model;
    L->capacity = c->capacity, L->drop_identity = c->drop == MOE_DROP_IDENTITY;
    L->e0 = c->expert_begin, L->ne = c->expert_count;
    L->first = (int *)malloc(((size_t)P->size + 1) * sizeof(int));
    L->owner = (int *)malloc((size_t)L->E * sizeof(int));
    if (!L->first || !L->owner) return -1;
    owners(L, P->size);
    if (MPI_Type_contiguous(L->D, MPI_FLOAT, &W->row_z) != MPI_SUCCESS ||
        MPI_Type_commit(&W->row_z) != MPI_SUCCESS)
        return -1;
    return 0;
}

static void free_layer(ep_layer *L, ep_work *W) { /* a zeroed L is fine */
    if (W->row_z != MPI_DATATYPE_NULL) MPI_Type_free(&W->row_z);
    free(L->first), free(L->owner);
    moe_layer_free(L->layer);
    memset(L, 0, sizeof *L);
}

/* ---- a checkpoint layer: moe run's job over the ranks ---- */

static const char *const out_flags[3] = {"--output", "--experts-out", "--weights-out"};

/* The outputs before anything is read (rank 0): each in a writable directory, not something
   other than a file, no two the same file, none a file the run reads. */
static int check_outputs(const char *const outs[3], char *err) {
    char dir[4096];
    struct stat st;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        const char *slash = strrchr(outs[i], '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == outs[i]) snprintf(dir, sizeof dir, "/");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash - outs[i]), outs[i]);
        if (stat(dir, &st) || !S_ISDIR(st.st_mode) || access(dir, W_OK)) {
            say(err, "cannot write output '%s': directory '%s' is missing or not writable", outs[i], dir);
            return -1;
        }
        if (stat(outs[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            say(err, "cannot write output '%s' (%s): it exists and is not a regular file", outs[i],
                out_flags[i]);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (outs[j] && mio_same_file(outs[i], outs[j])) {
                say(err, "%s '%s' and %s '%s' name the same file", out_flags[j], outs[j],
                    out_flags[i], outs[i]);
                return -1;
            }
    }
    return 0;
}

static int check_not_inputs(const char *const outs[3], const char *input, const mm_model *m, char *err) {
    char path[4096];
    const mio_model *f = &m->files;
    size_t n = f->sharded ? f->n_shards + 1 : 1;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        const char *why = NULL, *what = NULL;
        if (mio_same_file(outs[i], input)) why = "the input (--input)", what = input;
        else if (mio_same_file(outs[i], m->config_path))
            why = "the model's config.json", what = m->config_path;
        for (size_t s = 0; s < n && !why; s++) {
            if (!f->sharded) snprintf(path, sizeof path, "%s", f->single.path);
            else if (s == 0) snprintf(path, sizeof path, "%s", f->index_path);
            else snprintf(path, sizeof path, "%s/%s", f->dir, f->shards[s - 1].file);
            if (mio_same_file(outs[i], path)) why = "a file of the checkpoint", what = path;
        }
        if (why) {
            say(err, "refusing to write %s '%s': it is %s, '%s'", out_flags[i], outs[i], why, what);
            return -1;
        }
    }
    return 0;
}

static void checksum(const float *y, size_t n, double *s, double *s2) {
    *s = *s2 = 0.0;
    for (size_t i = 0; i < n; i++) *s += y[i], *s2 += (double)y[i] * y[i];
}

/* MPI_Scatterv / Gatherv counts in rows of `width` elements of `size` bytes: as bytes, checked. */
static int row_counts(const size_t *n, int N, size_t width, size_t size, int *cnt, int *disp,
                      char *err) {
    size_t at = 0;
    for (int r = 0; r < N; r++) {
        size_t b = n[r] * width * size;
        if (at + b > EP_INT_MAX) {
            say(err, "the input of %zu+ bytes is over the 2 GiB of an MPI int count", at + b);
            return -1;
        }
        cnt[r] = (int)b, disp[r] = (int)at, at += b;
    }
    return 0;
}

static int run_model(const ep_ctx *P, const opts *o) {
    const int N = P->size, me = P->rank;
    char err[EP_ERR] = "";
    const char *const outs[3] = {o->output, o->experts_out, o->weights_out};
    mm_model model;
    mm_options mo;
    mm_layer_info info;
    moe_layer *layer = NULL;
    ep_layer L;
    ep_work W;
    float *X = NULL, *Y = NULL, *WT = NULL, *x = NULL, *y = NULL, *wt = NULL, *logits = NULL,
          *mp_local = NULL, *mean_prob = NULL;
    int32_t *EX = NULL, *ex = NULL;
    int64_t *load = NULL, *LOAD = NULL;
    size_t T = 0, D = 0, *split = NULL, shape[MIO_NPY_MAX_RANK], oshape[MIO_NPY_MAX_RANK];
    int nrank = 0;
    int *cnt = NULL, *disp = NULL, *cntk = NULL, *dispk = NULL, rc = 1, have_model = 0;
    unsigned long long t_u = 0;
    mio_outputs written;

    memset(&model, 0, sizeof model);
    memset(&L, 0, sizeof L);
    memset(&W, 0, sizeof W);
    W.row_z = MPI_DATATYPE_NULL;
    mio_outputs_init(&written);
    memset(&mo, 0, sizeof mo);
    mo.format = (moe_format)o->format, mo.shared_format = (moe_format)o->shared_format;
    mo.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    mo.drop = o->drop < 0                     ? MM_DROP_DEFAULT
              : o->drop == MOE_DROP_IDENTITY ? MM_DROP_IDENTITY
                                              : MM_DROP_ZERO;

    /* 1. the plan on every rank; on rank 0 the outputs and the input */
    if (!o->model || !o->layer || !o->input || !o->output)
        say(err, "run --model needs --layer, --input and --output (see moe-ep --help)");
    if (!err[0] && me == 0) check_outputs(outs, err);
    double t_start = now_s();
    if (!err[0] && mm_open(&model, o->model, o->use_mmap, err, EP_ERR) == 0) have_model = 1;
    if (!err[0]) mm_layer_plan(&model, o->layer, &mo, &info, err, EP_ERR);
    if (!err[0] && me == 0) {
        const hf_plan *plan = &info.plan;
        if (plan->note[0]) fprintf(stderr, "moe-ep: note: %s\n", plan->note);
        for (int i = 0; o->verbose && i < plan->n_defaults && i < HF_MAX_DEFAULTS; i++)
            fprintf(stderr, "moe-ep: note: %s %s config.json, default %s\n", plan->defaults[i].key,
                    plan->defaults[i].null ? "is null in" : "absent from", plan->defaults[i].value);
        if (o->verbose && plan->n_defaults > HF_MAX_DEFAULTS)
            fprintf(stderr, "moe-ep: note: and %d more keys absent from config.json, with "
                    "defaults\n", plan->n_defaults - HF_MAX_DEFAULTS);
    }
    if (!err[0] && info.plan.cfg.n_experts < N)
        say(err, "%s %s has %d experts for %d ranks: every rank holds a slice of at least one "
            "expert; run at most %d ranks", info.plan.family, info.plan.layer_name,
            info.plan.cfg.n_experts, N, info.plan.cfg.n_experts);
    if (!err[0] && me == 0) {
        char e2[MIO_ERR_SIZE];
        int dm = info.plan.cfg.d_model;
        if (mio_npy_read_nd(o->input, &X, &nrank, shape, &T, &D, e2, sizeof e2))
            say(err, "input %s", e2);
        else if (D != (size_t)dm)
            say(err, "input %s has width %zu, expected hidden_size %d (config.json): X.npy must "
                "be float32 [..., %d] ([T][%d], [B][T][%d], ...)", o->input, D, dm, dm, dm, dm);
        else check_not_inputs(outs, o->input, &model, err);
    }
    if (agree(P, err)) goto done;

    /* 2. this rank's slice of the experts */
    {
        int E = info.plan.cfg.n_experts;
        mo.expert_begin = (int)((int64_t)me * E / N);
        mo.expert_count = (int)((int64_t)(me + 1) * E / N) - mo.expert_begin;
    }
    double t0 = now_s();
    mm_layer_create(&model, o->layer, &mo, &layer, &info, err, EP_ERR);
    double t_create = now_s() - t0, t_load = now_s() - t_start;
    if (!err[0]) {
        if (setup_layer(P, &L, &W, layer)) say(err, "out of memory");
        layer = NULL; /* L owns it */
    }
    if (agree(P, err)) goto done;
    {
        const moe_config *c = moe_layer_config(L.layer);
        char what[256];
        uint64_t h = layer_digest(P, &L, &W, o->threads);
        snprintf(what, sizeof what, "%s %s, %d experts, top-%d, d=%d, formats %s/%s, digest "
                 "%016llx", info.plan.family, info.plan.layer_name, c->n_experts, c->top_k,
                 c->d_model, format_names[c->format], format_names[c->shared_format],
                 (unsigned long long)h);
        if (same_everywhere(P, h, "the layers", what)) goto done;
    }

    /* 3. the tokens: the split, and each rank's rows */
    t_u = T;
    MPI_Bcast(&t_u, 1, MPI_UNSIGNED_LONG_LONG, 0, P->comm);
    T = (size_t)t_u;
    split = (size_t *)calloc((size_t)N, sizeof *split);
    cnt = (int *)malloc((size_t)N * sizeof *cnt), disp = (int *)malloc((size_t)N * sizeof *disp);
    cntk = (int *)malloc((size_t)N * sizeof *cntk), dispk = (int *)malloc((size_t)N * sizeof *dispk);
    if (!split || !cnt || !disp || !cntk || !dispk) die(P, "out of memory");
    if (me == 0) token_split(o->split, T, N, split, err);
    if (agree(P, err)) goto done;
    MPI_Bcast(split, N * (int)sizeof *split, MPI_BYTE, 0, P->comm);
    size_t Tr = split[me], d = (size_t)L.d, k = (size_t)L.k, RO = (size_t)L.RO;
    x = (float *)malloc(Tr * d * sizeof *x + 1), y = (float *)malloc(Tr * d * sizeof *y + 1);
    ex = (int32_t *)malloc(Tr * k * sizeof *ex + 1), wt = (float *)malloc(Tr * k * sizeof *wt + 1);
    load = (int64_t *)malloc(RO * sizeof *load), LOAD = (int64_t *)malloc(RO * sizeof *LOAD);
    if (o->stats) {
        logits = (float *)malloc(Tr * RO * sizeof *logits + 1);
        mp_local = (float *)malloc(RO * sizeof *mp_local);
        mean_prob = (float *)malloc(RO * sizeof *mean_prob);
        if (!logits || !mp_local || !mean_prob) say(err, "out of memory");
    }
    if (me == 0) {
        Y = (float *)malloc(T * d * sizeof *Y + 1), EX = (int32_t *)malloc(T * k * sizeof *EX + 1);
        WT = (float *)malloc(T * k * sizeof *WT + 1);
        if (!Y || !EX || !WT) say(err, "out of memory for %zu tokens", T);
    }
    if (!x || !y || !ex || !wt || !load || !LOAD) say(err, "out of memory for %zu tokens", Tr);
    if (!err[0] && !row_counts(split, N, d, sizeof(float), cnt, disp, err))
        row_counts(split, N, k, sizeof(int32_t), cntk, dispk, err);
    if (agree(P, err)) goto done;
    MPI_Scatterv(X, cnt, disp, MPI_BYTE, x, (int)(Tr * d * sizeof *x), MPI_BYTE, 0, P->comm);

    /* 4. the layer */
    ep_stat st;
    moe_trace local;
    size_t dropped = 0;
    unsigned long long dr = 0, DR = 0;
    if (ep_forward(P, &L, &W, o->threads, 0, x, Tr, y, ex, wt, load, &dropped, logits, mp_local,
                   &local, &st))
        goto done;
    float *mp0 = mean_prob;
    double aux = 0.0, zl = 0.0;
    if (o->stats && ep_router_stats(P, &L, logits, Tr, T, &local, mp_local, mp0, &aux, &zl)) goto done;

    /* 5. everything to rank 0 */
    MPI_Gatherv(y, cnt[me], MPI_BYTE, Y, cnt, disp, MPI_BYTE, 0, P->comm);
    MPI_Gatherv(ex, cntk[me], MPI_BYTE, EX, cntk, dispk, MPI_BYTE, 0, P->comm);
    MPI_Gatherv(wt, cntk[me], MPI_BYTE, WT, cntk, dispk, MPI_BYTE, 0, P->comm);
    MPI_Reduce(load, LOAD, (int)RO, MPI_INT64_T, MPI_SUM, 0, P->comm); /* integers: exact */
    dr = dropped;
    MPI_Reduce(&dr, &DR, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, P->comm);
    ep_stat *sts = NULL;
    if (o->stats && me == 0 && !(sts = (ep_stat *)malloc((size_t)N * sizeof *sts))) die(P, "out of memory");
    if (o->stats) MPI_Gather(&st, (int)sizeof st, MPI_BYTE, sts, (int)sizeof st, MPI_BYTE, 0, P->comm);

    if (me == 0) { /* as moe run: y in X's shape, the slots in its leading shape */
        char e2[MIO_ERR_SIZE];
        memcpy(oshape, shape, (size_t)nrank * sizeof *shape);
        oshape[nrank - 1] = k;
        for (int i = 0; i < 3 && !err[0]; i++) {
            if (!outs[i]) continue;
            int wr = i == 0 ? mio_outputs_npy_f32_nd(&written, outs[i], Y, nrank, shape, e2, sizeof e2)
                   : i == 1 ? mio_outputs_npy_i32_nd(&written, outs[i], EX, nrank, oshape, e2, sizeof e2)
                            : mio_outputs_npy_f32_nd(&written, outs[i], WT, nrank, oshape, e2, sizeof e2);
            if (wr) say(err, "cannot write output '%s': %s", outs[i], e2);
        }
        if (!err[0] && mio_outputs_commit(&written, e2, sizeof e2))
            say(err, "cannot write the outputs: %s", e2);
    }
    if (agree(P, err)) { free(sts); goto done; }
    if (me == 0) {
        char sh[MIO_NPY_MAX_RANK * 22 + 8];
        size_t at = 0;
        sh[0] = '\0';
        for (int i = 0; nrank != 2 && i < nrank && at < sizeof sh; i++)
            at += (size_t)snprintf(sh + at, sizeof sh - at, "%s%zu%s", i ? ", " : " ([", shape[i],
                                   i == nrank - 1 ? "])" : "");
        printf("%s %s (%s): %zu tokens%s, d=%zu, experts %d, top-%zu -> %s (%d rank%s)\n",
               info.plan.family, info.plan.layer_name, info.prefix, T, sh, d, L.E, k, o->output,
               N, N > 1 ? "s" : "");
        if (o->stats) {
            const moe_config *c = moe_layer_config(L.layer);
            printf("load (tokens per expert%s):",
                   c->n_zero_experts ? "; z: a zero-computation expert" : "");
            for (int e = 0; e < c->n_experts + c->n_zero_experts; e++) {
                if (e % 16 == 0) printf("\n ");
                printf(" %3d%s:%-4lld", e, e < c->n_experts ? "" : "z", (long long)LOAD[e]);
            }
            printf("\naux_loss %.6f  z_loss %.6f  dropped %llu\n", aux, zl, DR);
            double cs, cs2;
            checksum(Y, T * d, &cs, &cs2);
            printf("y checksum: sum %.6f  sum of squares %.6f\n", cs, cs2);
            for (int q = 0; q < N; q++)
                printf("rank %d: experts %d..%d, %zu tokens, pairs out %zu (%zu to other ranks), "
                       "in %zu, bytes out %zu, in %zu, forward %.3f ms\n", q, L.first[q],
                       L.first[q + 1] - 1, split[q], sts[q].pairs_out, sts[q].remote_pairs,
                       sts[q].pairs_in, sts[q].bytes_out[0] + sts[q].bytes_out[1],
                       sts[q].bytes_in[0] + sts[q].bytes_in[1], 1e3 * sts[q].total);
            printf("rank 0: load %.3f ms (create/pack %.3f ms), packed %.1f KiB\n", 1e3 * t_load,
                   1e3 * t_create, (double)moe_layer_packed_bytes(L.layer) / 1024.0);
        }
        fflush(stdout);
    }
    free(sts);
    rc = 0;
done:
    mio_outputs_discard(&written);
    free_layer(&L, &W);
    moe_layer_free(layer);
    if (have_model) mm_close(&model);
    work_free(&W);
    MIO_FREE(X), free(Y), free(EX), free(WT), free(x), free(y), free(ex), free(wt), free(load);
    free(LOAD), free(logits), free(mp_local), free(mean_prob), free(split), free(cnt), free(disp);
    free(cntk), free(dispk);
    return rc;
}

/* ---- --jobs: many runs, one start-up ---- */

static int run_jobs(const ep_ctx *P, const opts *outer) {
    char err[EP_ERR] = "";
    char *text = NULL;
    long len = 0;
    int failed = 0, n = 0;
    if (P->rank == 0) {
        FILE *f = fopen(outer->jobs, "rb");
        if (!f) say(err, "--jobs %s: %s", outer->jobs, strerror(errno));
        else {
            if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
                say(err, "--jobs %s: cannot read it", outer->jobs);
            else if (len > (1L << 26)) say(err, "--jobs %s: over 64 MiB", outer->jobs);
            else if (!(text = (char *)malloc((size_t)len + 1))) say(err, "out of memory");
            else if (fread(text, 1, (size_t)len, f) != (size_t)len)
                say(err, "--jobs %s: cannot read it", outer->jobs);
            fclose(f);
        }
    }
    if (agree(P, err)) { free(text); return 1; }
    MPI_Bcast(&len, 1, MPI_LONG, 0, P->comm);
    if (P->rank != 0 && !(text = (char *)malloc((size_t)len + 1))) say(err, "out of memory");
    if (agree(P, err)) { free(text); return 1; }
    MPI_Bcast(text, (int)len, MPI_CHAR, 0, P->comm);
    text[len] = '\0';
    for (char *line = text, *next; line && *line; line = next) {
        char *argv[256];
        int argc = 1;
        opts o;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        argv[0] = (char *)"moe-ep";
        int words = 0;
        for (char *w = strtok(line, " \t\r"); w; w = strtok(NULL, " \t\r"), words++)
            if (argc < 255) argv[argc++] = w;
        if (argc == 1 || argv[1][0] == '#') continue;
        n++;
        err[0] = '\0';
        int pr = words > 254 ? (say(err, "over 254 words"), 2) : parse_args(argc, argv, &o, err);
        if (pr == 0 && (o.bench || o.jobs)) say(err, "a job is one run: no --bench or --jobs"), pr = 2;
        if (pr == 1 || pr == 3) say(err, "--help or --version in a job"), pr = 2;
        if (pr == 0 && !o.threads_set) o.threads = outer->threads; /* the command line's, or 0 */
        if (pr) { /* the same on every rank: the line came from rank 0 */
            if (P->rank == 0) fprintf(stderr, "moe-ep: job %d: %s\n", n, err);
            failed++;
            continue;
        }
        if (run_model(P, &o)) {
            failed++;
            if (P->rank == 0) fprintf(stderr, "moe-ep: job %d failed\n", n);
        }
    }
    free(text);
    if (P->rank == 0) printf("moe-ep: %d job%s, %d failed\n", n, n == 1 ? "" : "s", failed);
    return failed ? 1 : 0;
}

/* ---- --bench: a toy layer ---- */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uni(uint64_t *s, float a) { /* uniform in [-a, a), as moe_cli.c's toy layer */
    return a * (2.0f * (float)(rng_next(s) >> 40) / 16777216.0f - 1.0f);
}
static uint16_t bf16_of(float f) { /* round to nearest even (finite values) */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
/* The stream of one tensor: every rank draws expert e's weights alike, whoever packs them. */
static uint64_t stream(unsigned long long seed, uint64_t what, uint64_t index) {
    uint64_t s = seed * 0x2545F4914F6CDD1Dull ^ (what << 48) ^ index, z = rng_next(&s);
    return z;
}

typedef struct toy {
    float *router, *sg, *su, *sd;
    uint16_t **gate, **up, **down; /* [E], only the held experts' set */
} toy;

static void toy_free(toy *t, int E) {
    for (int e = 0; t->gate && e < E; e++) free(t->gate[e]), free(t->up[e]), free(t->down[e]);
    free(t->gate), free(t->up), free(t->down), free(t->router), free(t->sg), free(t->su), free(t->sd);
    memset(t, 0, sizeof *t);
}

/* A toy layer holding experts e0 .. e0 + ne - 1 (the sources freed once packed). */
static moe_result toy_layer(const opts *o, int e0, int ne, moe_layer **out) {
    size_t d = (size_t)o->d, ff = (size_t)o->ff, E = (size_t)o->experts, S = (size_t)o->shared * ff;
    moe_config c;
    moe_weights w;
    toy t;
    uint64_t s;
    moe_result r = MOE_E_NOMEM;
    memset(&c, 0, sizeof c), memset(&w, 0, sizeof w), memset(&t, 0, sizeof t);
    c.d_model = o->d, c.d_ff = o->ff, c.n_experts = o->experts, c.top_k = o->k;
    c.n_shared = o->shared, c.norm = MOE_NORM_SUM, c.expert_begin = e0, c.expert_count = ne;
    c.format = (moe_format)o->format, c.shared_format = (moe_format)o->shared_format;
    c.dot = o->bf16_dot ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    t.router = (float *)malloc(E * d * sizeof(float));
    t.sg = (float *)malloc((S ? S : 1) * d * sizeof(float));
    t.su = (float *)malloc((S ? S : 1) * d * sizeof(float));
    t.sd = (float *)malloc((S ? S : 1) * d * sizeof(float));
    t.gate = (uint16_t **)calloc(E, sizeof *t.gate), t.up = (uint16_t **)calloc(E, sizeof *t.up);
    t.down = (uint16_t **)calloc(E, sizeof *t.down);
    if (!t.router || !t.sg || !t.su || !t.sd || !t.gate || !t.up || !t.down) goto done;
    s = stream(o->seed, 1, 0);
    for (size_t i = 0; i < E * d; i++) t.router[i] = uni(&s, 2.0f / sqrtf((float)d));
    s = stream(o->seed, 2, 0);
    for (size_t i = 0; i < S * d; i++) t.sg[i] = uni(&s, 1.7f / sqrtf((float)d));
    for (size_t i = 0; i < S * d; i++) t.su[i] = uni(&s, 1.7f / sqrtf((float)d));
    for (size_t i = 0; i < S * d; i++) t.sd[i] = uni(&s, S ? 1.7f / sqrtf((float)S) : 0.0f);
    for (int e = e0; e < e0 + ne; e++) {
        t.gate[e] = (uint16_t *)malloc(ff * d * 2), t.up[e] = (uint16_t *)malloc(ff * d * 2);
        t.down[e] = (uint16_t *)malloc(ff * d * 2);
        if (!t.gate[e] || !t.up[e] || !t.down[e]) goto done;
        s = stream(o->seed, 3, (uint64_t)e);
        for (size_t i = 0; i < ff * d; i++) t.gate[e][i] = bf16_of(uni(&s, 1.7f / sqrtf((float)d)));
        for (size_t i = 0; i < ff * d; i++) t.up[e][i] = bf16_of(uni(&s, 1.7f / sqrtf((float)d)));
        for (size_t i = 0; i < ff * d; i++) t.down[e][i] = bf16_of(uni(&s, 1.7f / sqrtf((float)ff)));
    }
    w.router.data = t.router;
    w.gate.per_expert = (const void *const *)t.gate, w.gate.dtype = MOE_BF16;
    w.up.per_expert = (const void *const *)t.up, w.up.dtype = MOE_BF16;
    w.down.per_expert = (const void *const *)t.down, w.down.dtype = MOE_BF16;
    if (S) w.shared_gate_proj.data = t.sg, w.shared_up.data = t.su, w.shared_down.data = t.sd;
    r = moe_layer_create(out, &c, &w);
done:
    toy_free(&t, (int)E);
    return r;
}

static void toy_tokens(const opts *o, size_t t0, size_t n, float *x) {
    for (size_t t = 0; t < n; t++) {
        uint64_t s = stream(o->seed, 4, (uint64_t)(t0 + t));
        for (size_t i = 0; i < (size_t)o->d; i++) x[t * (size_t)o->d + i] = uni(&s, 1.7f);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The ranks other than 0 wait for it without spinning (MPI_Barrier polls, which would take a
   core from the single-process measurement on rank 0). */
static void quiet_barrier(const ep_ctx *P) {
    MPI_Request q;
    int done = 0;
    MPI_Ibarrier(P->comm, &q);
    while (!done) {
        MPI_Test(&q, &done, MPI_STATUS_IGNORE);
        if (!done) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

static int bench(const ep_ctx *P, const opts *o) {
    const int N = P->size, me = P->rank;
    char err[EP_ERR] = "";
    size_t list[16];
    int nl = 0, rc = 1;
    ep_layer L;
    ep_work W;
    moe_layer *layer = NULL, *whole = NULL;
    memset(&L, 0, sizeof L), memset(&W, 0, sizeof W);
    W.row_z = MPI_DATATYPE_NULL;
    for (const char *p = o->tokens; *p && nl < 16;) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || (*end && *end != ',')) {
            say(err, "--tokens '%s': expected token counts per rank, comma-separated", o->tokens);
            break;
        }
        list[nl++] = v;
        p = *end ? end + 1 : end;
    }
    if (!err[0] && o->experts < N)
        say(err, "%d experts for %d ranks: run at most %d", o->experts, N, o->experts);
    if (!err[0] && o->k > o->experts) say(err, "--k %d > --experts %d", o->k, o->experts);
    if (agree(P, err)) return 1;
    int e0 = (int)((int64_t)me * o->experts / N), e1 = (int)((int64_t)(me + 1) * o->experts / N);
    moe_result r = toy_layer(o, e0, e1 - e0, &layer);
    if (r != MOE_OK) say(err, "toy layer: %s", moe_result_string(r));
    else {
        if (setup_layer(P, &L, &W, layer)) say(err, "out of memory");
        layer = NULL; /* L owns it */
    }
    if (agree(P, err)) goto done;
    if (same_everywhere(P, layer_digest(P, &L, &W, o->threads), "the layers", "toy layer")) goto done;
    if (me == 0 && (r = toy_layer(o, 0, o->experts, &whole)) != MOE_OK)
        say(err, "the whole toy layer: %s", moe_result_string(r));
    if (agree(P, err)) goto done;
    if (me == 0) {
        const moe_config *c = moe_layer_config(L.layer);
        moe_packed_sizes ps;
        moe_layer_sizes(whole, &ps);
        printf("moe-ep bench: toy layer d=%d ff=%d experts=%d k=%d shared=%d, %s experts "
               "(%.2f MiB each), %d rank%s x %d thread%s, median of %d, %s\n", c->d_model,
               c->d_ff, c->n_experts, c->top_k, c->n_shared, format_names[c->format],
               (double)ps.expert / 1048576.0, N, N > 1 ? "s" : "", o->threads,
               o->threads == 1 ? "" : "s", o->iters, moe_build_info()->text);
    }
    { /* the latency of a collective on its own: an all-to-all of one int per rank */
        enum { NI = 200 };
        int *a = (int *)calloc((size_t)N, sizeof *a), *b = (int *)calloc((size_t)N, sizeof *b);
        double lat[NI];
        if (!a || !b) die(P, "out of memory");
        for (int it = -10; it < NI; it++) {
            MPI_Barrier(P->comm);
            double t0 = now_s();
            MPI_Alltoall(a, 1, MPI_INT, b, 1, MPI_INT, P->comm);
            if (it >= 0) lat[it] = now_s() - t0;
        }
        double mine = median(lat, NI), worst = 0.0;
        MPI_Reduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, P->comm);
        if (me == 0)
            printf("an all-to-all of 4 bytes per rank pair: %.1f us (median of %d, slowest "
                   "rank)\n", 1e6 * worst, NI);
        free(a), free(b);
    }
    for (int li = 0; li < nl; li++) {
        size_t Tr = list[li], T = Tr * (size_t)N, d = (size_t)o->d, k = (size_t)o->k, RO = (size_t)L.RO;
        float *x = (float *)malloc(Tr * d * sizeof *x), *y = (float *)malloc(Tr * d * sizeof *y);
        int32_t *ex = (int32_t *)malloc(Tr * k * sizeof *ex);
        float *wt = (float *)malloc(Tr * k * sizeof *wt);
        int64_t *load = (int64_t *)malloc(RO * sizeof *load);
        double *tt = (double *)malloc((size_t)o->iters * (PH_N + 1) * sizeof *tt);
        float *X = NULL, *Y = NULL, *Y1 = NULL;
        if (!x || !y || !ex || !wt || !load || !tt) die(P, "out of memory");
        toy_tokens(o, (size_t)me * Tr, Tr, x);
        ep_stat st, med, *all = NULL;
        moe_trace local;
        size_t dropped;
        memset(&med, 0, sizeof med);
        /* one warm-up, then plain passes (the layer's time) and synced ones (the phases)
           in turn, so that both see the same machine */
        for (int it = -1; it < 2 * o->iters; it++) {
            int sync = it >= 0 && it % 2, at = it / 2;
            MPI_Barrier(P->comm);
            if (ep_forward(P, &L, &W, o->threads, sync, x, Tr, y, ex, wt, load, &dropped, NULL,
                           NULL, &local, &st))
                die(P, "the forward pass failed");
            if (it < 0) continue;
            if (sync)
                for (int ph = 0; ph < PH_N; ph++) tt[(size_t)ph * (size_t)o->iters + (size_t)at] = st.t[ph];
            else tt[(size_t)PH_N * (size_t)o->iters + (size_t)at] = st.total;
        }
        med = st;
        for (int ph = 0; ph < PH_N; ph++) med.t[ph] = median(tt + (size_t)ph * (size_t)o->iters, o->iters);
        med.total = median(tt + (size_t)PH_N * (size_t)o->iters, o->iters);
        if (me == 0) {
            all = (ep_stat *)malloc((size_t)N * sizeof *all);
            X = (float *)malloc(T * d * sizeof *X), Y = (float *)malloc(T * d * sizeof *Y);
            Y1 = (float *)malloc(T * d * sizeof *Y1);
            if (!all || !X || !Y || !Y1) die(P, "out of memory");
        }
        MPI_Gather(&med, (int)sizeof med, MPI_BYTE, all, (int)sizeof med, MPI_BYTE, 0, P->comm);
        MPI_Gather(y, (int)(Tr * d), MPI_FLOAT, Y, (int)(Tr * d), MPI_FLOAT, 0, P->comm);
        /* the whole layer in one process, while the other ranks sleep */
        double single[2] = {0.0, 0.0};
        int same = 1;
        if (me == 0) {
            moe_layer *L1 = whole;
            size_t bytes;
            moe_workspace ws = {0};
            toy_tokens(o, 0, T, X);
            if (moe_workspace_size(L1, T, &bytes) != MOE_OK || !(ws.data = malloc(bytes)))
                die(P, "out of memory");
            ws.size = bytes;
            for (int v = 0; v < 2; v++) {
                ws.n_threads = v == 0 ? o->threads : 0;
                for (int it = -1; it < o->iters; it++) {
                    double t0 = now_s();
                    if (moe_forward(L1, X, T, Y1, &ws, NULL) != MOE_OK) die(P, "moe_forward failed");
                    if (it >= 0) tt[it] = now_s() - t0;
                }
                single[v] = median(tt, o->iters);
                same &= !memcmp(Y, Y1, T * d * sizeof *Y);
            }
            free(ws.data);
        }
        quiet_barrier(P);
        if (me == 0) {
            double slow = 0.0;
            int cores = 1;
#ifdef _OPENMP
            cores = omp_get_max_threads();
#endif
            printf("\n%zu token%s per rank (T = %zu). Bytes to and from the other ranks in the "
                   "dispatch and the return;\nphases (us) from passes with a barrier before each "
                   "all-to-all (wait: in those barriers), total from passes without:\n", Tr,
                   Tr == 1 ? "" : "s", T);
            printf("rank experts used pairs(remote) rows-out  disp-out   disp-in    ret-out    ret-in");
            for (int ph = 0; ph < PH_N; ph++) printf(" %7.7s", phase_names[ph]);
            printf("   total\n");
            for (int q = 0; q < N; q++) {
                ep_stat *a = &all[q];
                printf("%4d %3d-%-3d %4d %5zu(%5zu) %8zu %9zu %9zu %9zu %9zu", q, L.first[q],
                       L.first[q + 1] - 1, a->experts_used, a->pairs_out, a->remote_pairs,
                       a->rows_out, a->bytes_out[0], a->bytes_in[0], a->bytes_out[1],
                       a->bytes_in[1]);
                for (int ph = 0; ph < PH_N; ph++) printf(" %7.0f", 1e6 * a->t[ph]);
                printf(" %8.0f\n", 1e6 * a->total);
                if (a->total > slow) slow = a->total;
            }
            printf("layer (slowest rank) %.0f us; one process, whole layer: %.0f us with %d "
                   "thread%s (ratio %.2f), %.0f us with %d (ratio %.2f); output bits %s\n", 1e6 * slow,
                   1e6 * single[0], o->threads, o->threads == 1 ? "" : "s", slow / single[0],
                   1e6 * single[1], cores, slow / single[1],
                   same ? "identical" : "DIFFERENT");
            fflush(stdout);
            if (!same) say(err, "the expert-parallel output differs from one process's");
        }
        free(x), free(y), free(ex), free(wt), free(load), free(tt), free(all), free(X), free(Y), free(Y1);
        if (agree(P, err)) goto done;
    }
    rc = 0;
done:
    free_layer(&L, &W);
    moe_layer_free(layer);
    moe_layer_free(whole);
    work_free(&W);
    return rc;
}

int main(int argc, char **argv) {
    ep_ctx P;
    opts o;
    char err[EP_ERR] = "", canon[1024];
    int rc;
    MPI_Init(&argc, &argv);
    P.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(P.comm, &P.rank);
    MPI_Comm_size(P.comm, &P.size);
    int pr = parse_args(argc, argv, &o, err);
    /* every rank parsed its own command line: the ranks agree that all could, then that they
       were given the same options */
    int info = pr == 1 || pr == 3 ? pr : 0, any = 0;
    MPI_Allreduce(&info, &any, 1, MPI_INT, MPI_MAX, P.comm);
    if (any) {
        if (P.rank == 0 && any == 3) printf("%s\n", moe_build_info()->text);
        else if (P.rank == 0) fputs(usage_text, stdout);
        MPI_Finalize();
        return 0;
    }
    if (agree(&P, err)) {
        MPI_Finalize();
        return 2;
    }
    canonical(&o, canon, sizeof canon);
    if (same_everywhere(&P, fnv1a(FNV0, canon, strlen(canon)), "the options", canon)) {
        MPI_Finalize();
        return 2;
    }
    rc = o.bench ? bench(&P, &o) : o.jobs ? run_jobs(&P, &o) : run_model(&P, &o);
    MPI_Finalize();
    return rc;
}
