/* moe_bench.c - how fast moe.h runs a layer, against the machine's own limits.

   For each preset (a real model's layer shape), packed format, thread count and token count
   it measures the whole forward pass and each stage (router + gating, plan, phase 1 =
   gate/up/activation, phase 2 = down, combine), and puts the result beside ceilings measured
   in the same run:
     - read ceiling: a streaming read over a buffer far larger than the caches (GB/s),
       measured again right before each case;
     - compute ceilings: register-only loops of independent vector FMAs (GFLOP/s), two loop
       shapes, best of several passes, threads started before the timed region; and of the
       bf16 dot product (vdpbf16ps) where the build has it.
   Decode is judged by GB/s of the packed bytes the batch really reads (router + every
   distinct expert the batch selected + shared experts, in the format they are packed in,
   padding included); prefill by GFLOP/s of the multiply-adds really done (2 flops each),
   against the peak of the arithmetic the case uses (the `compute` column: fma for f32, bf16,
   f16 exact; bf16dot for --dtype bf16dot). The scalar reference path gives the speed-up
   column.

   Weights are random from a fixed seed; the routed experts share one source matrix (packing
   still gives each its own packed copy, so the memory traffic is real), and routing comes from
   real router logits on random inputs, so the experts selected are roughly uniform.

   Build: cc -std=c99 -O3 -march=native -fopenmp -Ibench -I. bench/moe_bench.c -o moe-bench -lm
   Usage: moe-bench [--preset qwen3,dsv2lite,mixtral,dsv3,toy] [--tokens 1,16,128,512]
                    [--dtype f32,bf16,f16,bf16dot,q8,q4,fp8,mxfp4] [--threads 1,2] [--experts N]
                    [--repeats N] [--no-ref] [--quick] [--output table|csv|json|md] [--csv]
                    [--plot FILE.svg] [--version] [--help]
   Every output format starts with the build line (moe_build_info) and the ceilings; --plot
   draws the roofline of the run (write_roofline). */
#define _DEFAULT_SOURCE /* clock_gettime, posix_memalign, and MADV_HUGEPAGE for moe.h */
#define MOE_IMPLEMENTATION
#include "moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x853c49e6748fea9bull;
static float frand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int max_threads(void) {
#if MOE__OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- ceilings ----------------------------------------------------------------------------- */

/* Streaming read: every thread sums its slice with 8 independent accumulators. GB/s. */
static double read_ceiling(int nth, int reps) {
    static float *buf;
    size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    if (!buf) { /* 2 MiB aligned and huge pages, as moe.h asks for its packed weights */
        void *mem = NULL;
        if (posix_memalign(&mem, (size_t)2 << 20, n * sizeof(float)) != 0) return 0.0;
        buf = (float *)mem;
#ifdef MADV_HUGEPAGE
        (void)madvise(buf, n * sizeof(float), MADV_HUGEPAGE);
#endif
        for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    }
    double best = 1e30, sink = 0.0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_s();
        MOE__PRAGMA(omp parallel num_threads(nth) reduction(+ : sink))
        {
            int id = 0, nt = 1;
#if MOE__OMP
            id = omp_get_thread_num(), nt = omp_get_num_threads();
#endif
            /* four sequential streams at once, as the decode kernel reads (one stream alone
               leaves bandwidth unused on some machines) */
            size_t per = n / (size_t)nt, q = per / 4 / 64 * 64, b = per * (size_t)id;
            float s[8] = {0};
#if MOE__SIMD
            moe__v a[4];
            for (int j = 0; j < 4; j++) a[j] = moe__vset(0.0f);
            for (size_t i = b; i < b + q; i += MOE__VW)
                for (int j = 0; j < 4; j++) a[j] = moe__vadd(a[j], moe__vld(buf + i + j * q));
            for (int j = 0; j < 4; j++) {
                float o[MOE__VW];
                moe__vst(o, a[j]);
                s[j] += o[0] + o[MOE__VW - 1];
            }
#else
            for (size_t i = b; i < b + q; i += 2)
                for (int j = 0; j < 8; j++) s[j] += buf[i + (j & 1) + (size_t)(j / 2) * q];
#endif
            for (int j = 0; j < 8; j++) sink += s[j];
        }
        double t = now_s() - t0;
        best = t < best ? t : best;
    }
    if (sink == 1234.5) printf(" ");
    return (double)(n / (size_t)nth / 4 / 64 * 64 * 4) * (double)nth * sizeof(float) / best / 1e9;
}

/* Compute ceilings: register-only loops, one parallel region whose threads all start before
   the timed passes (a barrier before and after each pass, timed by thread 0), each pass long
   enough (~40 ms) to swamp the barrier, and the best of 12 passes, since other tenants only
   ever slow a pass down. Two loop shapes for the FMA peak: NCH independent accumulators
   updated by one multiplier (a = a * m + c), and the micro-kernel's own shape (acc += b * w,
   one broadcast against several weight vectors); the ceiling is the higher, and the two must
   agree within 10 %, else the line says so. GFLOP/s (2 flops per multiply-add). */
enum { NCH = 12, NPASS = 12 };

#if MOE__SIMD
static MOE__INLINE moe__v fma_kind(int shape, int bf16, moe__v a, moe__v b, moe__v c) {
#if MOE__DPBF16
    if (bf16) return moe__vdpbf16(a, b, c);
#endif
    (void)bf16;
    return shape ? moe__vfma(b, c, a) : moe__vfma(a, b, c);
}
#endif

#if MOE__SIMD
/* int8 dot loops: the instruction sequence the q8 (kind 3) and q4 (kind 4) kernels issue per
   4 bytes a lane, on independent accumulators */
static double int_ceiling(int nth, int kind) {
    long iters = 1000000;
    double best = 1e30;
    int64_t sink = 0;
    (void)nth;
    MOE__PRAGMA(omp parallel num_threads(nth) reduction(+ : sink))
    {
        for (int pass = -1; pass < NPASS; pass++) {
            double t0 = 0.0;
            MOE__PRAGMA(omp barrier)
            MOE__PRAGMA(omp master)
            t0 = now_s();
            /* the activation operand is the accumulator itself, so nothing of the sequence can
               be hoisted out of the loop (the values do not matter) */
            moe__vi a[NCH], w = moe__viset(0x05fb07f9);
            moe__vi wp = moe__vq8_prep(w);
            for (int j = 0; j < NCH; j++) a[j] = moe__viset(j * 0x01010101);
            for (long i = 0; i < iters; i++) {
                MOE__UNROLL
                for (int j = 0; j < NCH; j++)
                    a[j] = kind == 3 ? moe__vdot_q8(a[j], wp, w, a[j]) : moe__vdot_q4(a[j], wp, a[j]);
            }
            for (int j = 0; j < NCH; j++) {
                int32_t o[MOE__VW];
                memcpy(o, &a[j], sizeof o);
                sink += o[0];
            }
            MOE__PRAGMA(omp barrier)
            MOE__PRAGMA(omp master)
            {
                double t = now_s() - t0;
                if (pass >= 0 && t < best) best = t;
            }
        }
    }
    if (sink == 12345) printf(" ");
    return 2.0 * 4.0 * NCH * MOE__VW * (double)iters * nth / best / 1e9; /* GOP/s */
}
#endif

/* kind 0, 1: FMA shapes; 2: bf16 dot (counts 2 multiply-adds a lane) */
static double compute_ceiling(int nth, int kind) {
    long iters = 1000000;
    double best = 1e30, sink = 0.0;
    (void)nth;
    MOE__PRAGMA(omp parallel num_threads(nth) reduction(+ : sink))
    {
        for (int pass = -1; pass < NPASS; pass++) { /* pass -1: warm-up, not timed */
            double t0 = 0.0;
            MOE__PRAGMA(omp barrier)
            MOE__PRAGMA(omp master)
            t0 = now_s();
#if MOE__SIMD
            moe__v a[NCH], m = moe__vset(0.999999f), c = moe__vset(1e-7f);
            for (int j = 0; j < NCH; j++) a[j] = moe__vset((float)j);
            for (long i = 0; i < iters; i++) {
                MOE__UNROLL
                for (int j = 0; j < NCH; j++) a[j] = fma_kind(kind == 1, kind == 2, a[j], m, c);
            }
            for (int j = 0; j < NCH; j++) {
                float o[MOE__VW];
                moe__vst(o, a[j]);
                sink += o[0];
            }
#else
            float a[NCH];
            for (int j = 0; j < NCH; j++) a[j] = (float)j;
            for (long i = 0; i < iters / 8; i++)
                for (int j = 0; j < NCH; j++) a[j] = fmaf(a[j], 0.999999f, 1e-7f);
            for (int j = 0; j < NCH; j++) sink += a[j];
#endif
            MOE__PRAGMA(omp barrier)
            MOE__PRAGMA(omp master)
            {
                double t = now_s() - t0;
                if (pass >= 0 && t < best) best = t;
            }
        }
    }
    if (sink == 1234.5) printf(" ");
#if MOE__SIMD
    double lanes = MOE__VW, n = (double)iters;
#else
    double lanes = 1, n = (double)(iters / 8);
#endif
    return 2.0 * NCH * lanes * n * (kind == 2 ? 2.0 : 1.0) * nth / best / 1e9;
}

/* The FMA ceiling: the better of the two shapes; *agree = 0 when they differ by over 10 %. */
static double fma_ceiling(int nth, int *agree) {
    double a = compute_ceiling(nth, 0), b = compute_ceiling(nth, 1);
    *agree = fabs(a - b) <= 0.1 * (a > b ? a : b);
    return a > b ? a : b;
}

/* ---- presets ------------------------------------------------------------------------------ */

typedef struct preset {
    const char *name;
    int d, ff, E, k, n_shared, d_shared, sigmoid_groups;
} preset;

static const preset presets[] = {
    {"qwen3", 2048, 768, 128, 8, 0, 0, 0},
    {"dsv2lite", 2048, 1408, 64, 6, 2, 1408, 0},
    {"mixtral", 4096, 14336, 8, 2, 0, 0, 0},
    {"dsv3", 7168, 2048, 256, 8, 1, 2048, 1},
    {"toy", 256, 128, 16, 4, 1, 128, 0},
};

typedef struct bench_layer {
    moe_layer *L;
    float *expert_src, *router, *shared_src;
    const void **per;
} bench_layer;

/* the --dtype names: packed format and dot mode */
static const char *const dtype_names[] = {"f32", "bf16", "f16", "bf16dot", "q8", "q4", "fp8", "mxfp4"};
static const moe_format dtype_format[] = {MOE_FORMAT_F32, MOE_FORMAT_BF16, MOE_FORMAT_F16,
                                          MOE_FORMAT_BF16, MOE_FORMAT_Q8, MOE_FORMAT_Q4,
                                          MOE_FORMAT_FP8, MOE_FORMAT_MXFP4};
enum { N_DTYPES = 8 };

static int make_layer(const preset *p, int E, int dtype, bench_layer *b) {
    size_t d = (size_t)p->d, ff = (size_t)p->ff, S = (size_t)p->n_shared * (size_t)p->d_shared;
    size_t big = ff > d ? ff * d : d * ff;
    moe_config c;
    memset(&c, 0, sizeof c);
    c.d_model = p->d, c.d_ff = p->ff, c.n_experts = E, c.top_k = p->k;
    c.n_shared = p->n_shared, c.d_shared = p->d_shared, c.norm = MOE_NORM_SUM;
    c.format = c.shared_format = dtype_format[dtype];
    c.dot = dtype == 3 ? MOE_DOT_BF16 : MOE_DOT_EXACT;
    if (p->sigmoid_groups) {
        c.score = MOE_SCORE_SIGMOID, c.n_group = E % 8 == 0 ? 8 : 1, c.topk_group = 4;
        if (c.n_group == 1) c.topk_group = 1;
        c.group_score = MOE_GROUP_TOP2_SUM, c.scale = 2.5f, c.norm_eps = 1e-20f;
    }
    memset(b, 0, sizeof *b);
    b->expert_src = (float *)malloc(3 * big * sizeof(float));
    b->router = (float *)malloc((size_t)E * d * sizeof(float));
    b->shared_src = S ? (float *)malloc(3 * S * d * sizeof(float)) : NULL;
    b->per = (const void **)malloc(3 * (size_t)E * sizeof(void *));
    if (!b->expert_src || !b->router || (S && !b->shared_src) || !b->per) return 0;
    fill(b->expert_src, 3 * big, 1.0f / sqrtf((float)d));
    fill(b->router, (size_t)E * d, 1.0f);
    if (S) fill(b->shared_src, 3 * S * d, 1.0f / sqrtf((float)d));
    for (int e = 0; e < E; e++) {
        b->per[e] = b->expert_src;
        b->per[E + e] = b->expert_src + big;
        b->per[2 * E + e] = b->expert_src + 2 * big;
    }
    moe_weights w;
    memset(&w, 0, sizeof w);
    w.router.data = b->router;
    w.gate.per_expert = b->per, w.up.per_expert = b->per + E, w.down.per_expert = b->per + 2 * E;
    if (S) {
        w.shared_gate_proj.data = b->shared_src, w.shared_up.data = b->shared_src + S * d;
        w.shared_down.data = b->shared_src + 2 * S * d;
    }
    moe_result r = moe_layer_create(&b->L, &c, &w);
    free(b->expert_src), free(b->shared_src), free(b->router), free((void *)b->per);
    b->expert_src = b->shared_src = b->router = NULL, b->per = NULL;
    if (r != MOE_OK) fprintf(stderr, "moe-bench: %s: %s\n", p->name, moe_result_string(r));
    return r == MOE_OK;
}

/* ---- one case ----------------------------------------------------------------------------- */

enum { NX = 4 }; /* input batches a case cycles through */

typedef struct result {
    double ms, ms_min, ms_max, ref_ms, stage[5], bytes, flops;
} result;

/* One forward pass stage by stage: the calls moe_forward makes, each timed (st[0..5): route,
   plan, phase 1, phase 2, combine). */
static void forward_stages(const moe_layer *L, const float *x, size_t T, float *y,
                           const moe_workspace *ws, double *st) {
    moe__ws w;
    int nth = moe__threads(L, ws);
    if (moe__begin(L, T, T * L->k, 1, ws, &w) != MOE_OK) return;
    double t0 = now_s();
    moe__route(L, x, T, &w, nth);
    double t1 = now_s();
    moe__plan(L, T, &w, 1);
    double t2 = now_s();
    moe__run_phase(L, x, T, &w, nth, 1);
    double t3 = now_s();
    moe__run_phase(L, x, T, &w, nth, 2);
    double t4 = now_s();
    moe__combine_all(L, x, T, y, &w, nth);
    double t5 = now_s();
    st[0] = t1 - t0, st[1] = t2 - t1, st[2] = t3 - t2, st[3] = t4 - t3, st[4] = t5 - t4;
}

static result run_case(moe_layer *L, size_t T, int nth, int repeats, int do_ref) {
    result res;
    memset(&res, 0, sizeof res);
    size_t d = L->d, E = L->E, ff = L->ex.ff, S = L->sh.ff;
    size_t bytes = 0;
    moe_workspace_size(L, T, &bytes);
    moe_workspace ws;
    ws.data = malloc(bytes), ws.size = bytes, ws.n_threads = nth;
    memset(ws.data, 0, bytes); /* fault the pages in outside the timed region */
    /* NX different batches, used in turn, so that no run finds the previous run's experts
       in the last-level cache (a model's next layer or token would not either) */
    float *x = (float *)malloc(NX * T * d * sizeof(float)), *y = (float *)malloc(T * d * sizeof(float));
    fill(x, NX * T * d, 1.0f);
    memset(y, 0, T * d * sizeof(float));

    /* what a batch needs: distinct experts, kept pairs (mean over the NX batches) */
    int64_t *cnt = (int64_t *)calloc(E, sizeof(int64_t));
    double expert_w = (double)d * (double)ff * (L->gated ? 3.0 : 2.0);
    double shared_w = (double)d * (double)S * (L->gated ? 3.0 : 2.0);
    /* bytes as packed: what the kernels really stream */
    double packed_router = (double)L->router.expert_bytes;
    double packed_expert = (double)(L->ex.w1.expert_bytes + L->ex.w2.expert_bytes);
    double packed_shared = S ? (double)(L->sh.w1.expert_bytes + L->sh.w2.expert_bytes) : 0.0;
    for (int b = 0; b < NX; b++) {
        moe_trace tr;
        double pairs = 0.0, distinct = 0.0;
        memset(&tr, 0, sizeof tr);
        tr.expert_tokens = cnt;
        moe_route(L, x + (size_t)b * T * d, T, &ws, &tr);
        for (size_t e = 0; e < E; e++) pairs += (double)cnt[e], distinct += cnt[e] > 0;
        res.bytes += (packed_router + distinct * packed_expert + packed_shared) / NX;
        res.flops += 2.0 * ((double)T * E * d + pairs * expert_w + (double)T * shared_w + pairs * d) / NX;
    }
    free(cnt);

    double *ms = (double *)malloc((size_t)repeats * sizeof(double));
    double *st = (double *)malloc((size_t)repeats * 5 * sizeof(double));
#define XB(i) (x + (size_t)((i) % NX) * T * d)
    for (int i = 0; i < 2; i++) moe_forward(L, XB(i), T, y, &ws, NULL); /* warm-up */
    for (int i = 0; i < repeats; i++) {
        double t0 = now_s();
        moe_forward(L, XB(i), T, y, &ws, NULL);
        ms[i] = 1e3 * (now_s() - t0);
    }
    for (int i = 0; i < repeats; i++) forward_stages(L, XB(i), T, y, &ws, st + 5 * i);
    for (int s = 0; s < 5; s++) {
        double v[64];
        int n = repeats < 64 ? repeats : 64;
        for (int i = 0; i < n; i++) v[i] = 1e3 * st[5 * i + s];
        res.stage[s] = median(v, n);
    }
    res.ms_min = res.ms_max = ms[0];
    for (int i = 0; i < repeats; i++) {
        res.ms_min = ms[i] < res.ms_min ? ms[i] : res.ms_min;
        res.ms_max = ms[i] > res.ms_max ? ms[i] : res.ms_max;
    }
    res.ms = median(ms, repeats);
    res.ref_ms = NAN;
    if (do_ref) { /* the scalar reference: fewer repeats, it is slow */
        int rr = res.ms * 40.0 > 2000.0 ? 1 : 3;
        double v[3];
        moe__select_kernels(L, 1);
        for (int i = 0; i < rr; i++) {
            double t0 = now_s();
            moe_forward(L, XB(i), T, y, &ws, NULL);
            v[i] = 1e3 * (now_s() - t0);
        }
        moe__select_kernels(L, 0);
        res.ref_ms = median(v, rr);
    }
#undef XB
    free(ms), free(st), free(x), free(y), free(ws.data);
    return res;
}

/* ---- output: table, csv, json, md, and the roofline ---------------------------------------- */

typedef enum out_kind { OUT_TABLE, OUT_CSV, OUT_JSON, OUT_MD } out_kind;

/* the ceilings of one thread count */
typedef struct ceilings {
    int threads, fma_agree;
    double read, read_best, fma, bf16, q8, q4; /* read_best: the best read of the run */
} ceilings;

/* one case as printed and plotted */
typedef struct row {
    const char *preset, *dtype, *compute;
    int experts, threads;
    size_t tokens;
    result r;
    double gbps, read, gflops, peak, intensity;
} row;

/* ', "name": v', a JSON number; NaN and infinities, which JSON lacks, as null */
static void jnum(const char *name, double v) {
    if (v == v && v - v == 0.0) printf(", \"%s\": %.6g", name, v);
    else printf(", \"%s\": null", name);
}

static void print_header(out_kind o, const char *build, const ceilings *c, int n) {
    if (o == OUT_JSON) {
        printf("{\n  \"build\": \"%s\",\n  \"ceilings\": [", build);
        for (int i = 0; i < n; i++) {
            printf("%s\n    {\"threads\": %d", i ? "," : "", c[i].threads);
            jnum("read_gbps", c[i].read), jnum("fma_gflops", c[i].fma);
            printf(", \"fma_shapes_agree\": %s", c[i].fma_agree ? "true" : "false");
            jnum("bf16dot_gflops", c[i].bf16);
            printf(", \"bf16dot_hw\": %s", MOE__DPBF16 ? "true" : "false");
            jnum("int8_q8_gops", c[i].q8), jnum("int8_q4_gops", c[i].q4);
            printf("}");
        }
        printf("\n  ],\n  \"cases\": [");
        return;
    }
    /* csv: comment lines; md: the build line as a paragraph, the ceilings as a list */
    const char *pre = o == OUT_CSV ? "# " : o == OUT_MD ? "- " : "";
    printf("%s%s\n%s", o == OUT_CSV ? "# " : "", build, o == OUT_MD ? "\n" : "");
    for (int i = 0; i < n; i++)
        printf("%sceilings, %d thread%s: read %.1f GB/s, FMA %.1f GFLOP/s%s, bf16 dot %.1f%s, "
               "int8 dot %.1f (q8 kernel's sequence) / %.1f (q4's) GOP/s\n",
               pre, c[i].threads, c[i].threads > 1 ? "s" : "", c[i].read, c[i].fma,
               c[i].fma_agree ? ""
                              : " (the two FMA loop shapes disagree by > 10 %: a noisy machine)",
               c[i].bf16, MOE__DPBF16 ? " GFLOP/s" : " (emulated: FMA ceiling used)", c[i].q8,
               c[i].q4);
    if (o == OUT_CSV)
        printf(
            "preset,dtype,isa,experts,threads,tokens,ms,ms_min,ms_max,tokens_per_s,weight_mb,"
            "gbps,gbps_ceiling,gbps_frac,gflops,gflops_ceiling,gflops_frac,ref_ms,"
            "speedup_vs_ref,route_ms,plan_ms,phase1_ms,phase2_ms,combine_ms,compute,intensity\n");
    else if (o == OUT_MD)
        printf("\n| preset | dtype | threads | tokens | ms | min..max | tok/s | GB/s | of read | "
               "GFLOP/s | of peak | flop/B | vs ref | route/plan/ph1/ph2/comb ms |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    else
        printf("\n%-9s %-7s %3s %5s %9s %15s %9s %7s %6s %5s %7s %5s %7s  %s\n", "preset", "dtype",
               "thr", "tok", "ms", "min..max", "tok/s", "GB/s", "(ceil)", "frac", "GFLOP/s", "frac",
               "vs ref", "route/plan/ph1/ph2/comb ms");
}

static void print_row(out_kind o, const row *w, const char *isa, int first) {
    const result *r = &w->r;
    double tps = (double)w->tokens / (r->ms * 1e-3), sp = r->ref_ms / r->ms;
    const double *st = r->stage;
    if (o == OUT_CSV) {
        printf(
            "%s,%s,%s,%d,%d,%zu,%.4f,%.4f,%.4f,%.1f,%.2f,%.2f,%.2f,%.3f,%.2f,%.2f,%.3f,%.3f,%.2f,"
            "%.4f,%.4f,%.4f,%.4f,%.4f,%s,%.4f\n",
            w->preset, w->dtype, isa, w->experts, w->threads, w->tokens, r->ms, r->ms_min,
            r->ms_max, tps, r->bytes / 1e6, w->gbps, w->read, w->gbps / w->read, w->gflops, w->peak,
            w->gflops / w->peak, r->ref_ms, sp, st[0], st[1], st[2], st[3], st[4], w->compute,
            w->intensity);
    } else if (o == OUT_JSON) {
        printf("%s\n    {\"preset\": \"%s\", \"dtype\": \"%s\", \"isa\": \"%s\", "
               "\"compute\": \"%s\", \"experts\": %d, \"threads\": %d, \"tokens\": %zu",
               first ? "" : ",", w->preset, w->dtype, isa, w->compute, w->experts, w->threads,
               w->tokens);
        jnum("ms", r->ms), jnum("ms_min", r->ms_min), jnum("ms_max", r->ms_max);
        jnum("tokens_per_s", tps), jnum("weight_mb", r->bytes / 1e6);
        jnum("gbps", w->gbps), jnum("gbps_ceiling", w->read);
        jnum("gflops", w->gflops), jnum("gflops_ceiling", w->peak);
        jnum("intensity", w->intensity), jnum("ref_ms", r->ref_ms), jnum("speedup_vs_ref", sp);
        printf(", \"stages_ms\": {\"route\": %.6g", st[0]);
        jnum("plan", st[1]), jnum("phase1", st[2]), jnum("phase2", st[3]);
        jnum("combine", st[4]);
        printf("}}");
    } else {
        char ref[32] = "      -"; /* no reference run for this case */
        if (sp == sp) snprintf(ref, sizeof ref, "%6.1fx", sp);
        if (o == OUT_MD)
            printf(
                "| %s | %s | %d | %zu | %.3f | %.3f..%.3f | %.1f | %.1f | %.2f (of %.1f) | %.1f | "
                "%.2f | %.2f | %s | %.3f/%.3f/%.3f/%.3f/%.3f |\n",
                w->preset, w->dtype, w->threads, w->tokens, r->ms, r->ms_min, r->ms_max, tps,
                w->gbps, w->gbps / w->read, w->read, w->gflops, w->gflops / w->peak, w->intensity,
                sp == sp ? ref + strspn(ref, " ") : "-", st[0], st[1], st[2], st[3], st[4]);
        else
            printf("%-9s %-7s %3d %5zu %9.3f %7.3f..%-7.3f %9.1f %7.1f %6.1f %5.2f %7.1f "
                   "%5.2f %s  %.3f/%.3f/%.3f/%.3f/%.3f\n",
                   w->preset, w->dtype, w->threads, w->tokens, r->ms, r->ms_min, r->ms_max, tps,
                   w->gbps, w->read, w->gbps / w->read, w->gflops, w->gflops / w->peak, ref, st[0],
                   st[1], st[2], st[3], st[4]);
    }
    fflush(stdout);
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", f);
        else if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* The roofline (Williams, Waterman and Patterson, CACM 2009), log-log: arithmetic intensity
   (flops per packed byte the case reads) against GFLOP/s. Per thread count the read ceiling
   is the line y = bandwidth * x up to the highest compute ceiling, each compute ceiling a
   horizontal line from where it meets that slope; every case is a point (class "case") at
   its intensity and achieved GFLOP/s, labelled "preset T=tokens dtype". */
enum { SVG_W = 960, SVG_H = 620, PL = 70, PR = 250, PT = 50, PB = 60 };

typedef struct axes {
    double x0, x1, y0, y1; /* log10 bounds */
} axes;
static double ax_x(const axes *a, double v) {
    return PL + (log10(v) - a->x0) / (a->x1 - a->x0) * (SVG_W - PL - PR);
}
static double ax_y(const axes *a, double v) {
    return SVG_H - PB - (log10(v) - a->y0) / (a->y1 - a->y0) * (SVG_H - PT - PB);
}

typedef struct svg_name {
    double y;
    char text[64];
    const char *color;
} svg_name;

static const char *dtype_color(const char *dt) {
    static const char *const col[] = {"#1f77b4", "#2ca02c", "#17becf", "#9467bd",
                                      "#d62728", "#ff7f0e", "#8c564b", "#e377c2"};
    for (int j = 0; j < N_DTYPES; j++)
        if (!strcmp(dt, dtype_names[j])) return col[j];
    return "#000";
}

static void write_roofline(FILE *f, const char *build, const ceilings *c, int nc, const row *rows,
                           int n) {
    /* the ranges: every point, every ceiling and the ridge points, in whole decades */
    double xmin = 1e30, xmax = 0, ymin = 1e30, ymax = 0;
    for (int i = 0; i < n; i++) {
        double x = rows[i].intensity, y = rows[i].gflops;
        if (x > 0 && y > 0) {
            xmin = x < xmin ? x : xmin, xmax = x > xmax ? x : xmax;
            ymin = y < ymin ? y : ymin, ymax = y > ymax ? y : ymax;
        }
    }
    for (int i = 0; i < nc; i++) {
        double top = c[i].fma > c[i].bf16 ? c[i].fma : c[i].bf16;
        top = c[i].q8 > top ? c[i].q8 : top, top = c[i].q4 > top ? c[i].q4 : top;
        double ridge = top / c[i].read_best;
        xmax = ridge * 2 > xmax ? ridge * 2 : xmax, ymax = top > ymax ? top : ymax;
    }
    if (xmax <= 0) xmin = 0.1, xmax = 10, ymin = 1, ymax = 100; /* no case ran */
    axes a = {floor(log10(xmin / 1.5)), ceil(log10(xmax)), floor(log10(ymin / 1.5)),
              ceil(log10(ymax * 1.5))};
    if (a.x1 - a.x0 < 2) a.x0 = a.x1 - 2;
    if (a.y1 - a.y0 < 2) a.y0 = a.y1 - 2;

    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    fprintf(f,
            "<text x=\"%d\" y=\"20\" font-size=\"14\">moe-bench roofline</text>\n"
            "<text x=\"%d\" y=\"36\" fill=\"#555\">",
            PL, PL);
    xml_text(f, build);
    fprintf(f, "</text>\n<g class=\"grid\" stroke=\"#ddd\">\n");
    for (double e = a.x0; e <= a.x1 + 0.5; e++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", ax_x(&a, pow(10, e)),
                PT, ax_x(&a, pow(10, e)), SVG_H - PB);
    for (double e = a.y0; e <= a.y1 + 0.5; e++)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", PL,
                ax_y(&a, pow(10, e)), SVG_W - PR, ax_y(&a, pow(10, e)));
    fprintf(f, "</g>\n<g class=\"ticks\" fill=\"#333\">\n");
    for (double e = a.x0; e <= a.x1 + 0.5; e++)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                ax_x(&a, pow(10, e)), SVG_H - PB + 16, pow(10, e));
    for (double e = a.y0; e <= a.y1 + 0.5; e++)
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", PL - 6,
                ax_y(&a, pow(10, e)) + 4, pow(10, e));
    fprintf(f,
            "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            PL, PT, SVG_W - PL - PR, SVG_H - PT - PB);
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">arithmetic intensity (flop per "
            "packed byte read)</text>\n",
            PL + (SVG_W - PL - PR) / 2, SVG_H - 18);
    fprintf(f,
            "<text transform=\"translate(18 %d) rotate(-90)\" text-anchor=\"middle\">GFLOP/s"
            "</text>\n",
            PT + (SVG_H - PT - PB) / 2);

    /* the ceilings; the plot is clipped to its frame */
    fprintf(
        f,
        "<clipPath id=\"frame\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/></clipPath>\n",
        PL, PT, SVG_W - PL - PR, SVG_H - PT - PB);
    double xr = pow(10, a.x1), xl = pow(10, a.x0);
    /* the compute ceilings' names, right of the frame, moved apart where they would overlap */
    svg_name names[64], tmp;
    int n_names = 0;
    for (int i = 0; i < nc; i++) {
        char thr[32] = "";
        if (nc > 1) snprintf(thr, sizeof thr, ", %d thr", c[i].threads);
        const char *dash = i == nc - 1 ? "" : " stroke-dasharray=\"6 3\"";
        struct {
            const char *name, *unit, *color;
            double v;
            int on;
        } roof[] = {
            {"f32 FMA", "GFLOP/s", "#1f77b4", c[i].fma, 1},
            {"bf16 dot", "GFLOP/s", "#9467bd", c[i].bf16, MOE__DPBF16},
            {"int8 dot (q8)", "GOP/s", "#d62728", c[i].q8, MOE__SIMD},
            {"int8 dot (q4)", "GOP/s", "#ff7f0e", c[i].q4, MOE__SIMD},
        };
        double bw = c[i].read_best, top = 0;
        for (int j = 0; j < 4; j++)
            if (roof[j].on && roof[j].v > top) top = roof[j].v;
        fprintf(
            f,
            "<g class=\"ceiling\" clip-path=\"url(#frame)\" stroke-width=\"1.5\" fill=\"none\">\n");
        fprintf(f,
                "<line class=\"read\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#000\"%s/>\n",
                ax_x(&a, xl), ax_y(&a, bw * xl), ax_x(&a, top / bw), ax_y(&a, top), dash);
        for (int j = 0; j < 4; j++)
            if (roof[j].on)
                fprintf(f,
                        "<line class=\"compute\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"%s\"%s/>\n",
                        ax_x(&a, roof[j].v / bw), ax_y(&a, roof[j].v), ax_x(&a, xr),
                        ax_y(&a, roof[j].v), roof[j].color, dash);
        fprintf(f, "</g>\n<g class=\"ceiling-label\">\n");
        /* the read ceiling named where it leaves the frame or meets the roof */
        double lx = top / bw < xr ? top / bw : xr;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">read %.1f GB/s%s</text>\n",
                ax_x(&a, lx) - 8, ax_y(&a, bw * lx) + 2, bw, thr);
        fprintf(f, "</g>\n");
        for (int j = 0; j < 4; j++)
            if (roof[j].on && n_names < 64) {
                names[n_names].y = ax_y(&a, roof[j].v) + 4, names[n_names].color = roof[j].color;
                snprintf(names[n_names++].text, sizeof names[0].text, "%s %.1f %s%s", roof[j].name,
                         roof[j].v, roof[j].unit, thr);
            }
    }
    for (int i = 1; i < n_names; i++) /* by height (insertion sort), then 12 px apart */
        for (int j = i; j > 0 && names[j].y < names[j - 1].y; j--) {
            tmp = names[j], names[j] = names[j - 1], names[j - 1] = tmp;
        }
    fprintf(f, "<g class=\"ceiling-name\">\n");
    for (int i = 0; i < n_names; i++) {
        if (i && names[i].y < names[i - 1].y + 12) names[i].y = names[i - 1].y + 12;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" fill=\"%s\">", SVG_W - PR + 6, names[i].y,
                names[i].color);
        xml_text(f, names[i].text);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</g>\n");

    /* the cases; labels beside their points, alternately above and below */
    fprintf(f, "<g class=\"cases\">\n");
    for (int i = 0; i < n; i++) {
        const row *w = &rows[i];
        double x = w->intensity > 0 ? w->intensity : xl,
               y = w->gflops > 0 ? w->gflops : pow(10, a.y0);
        char label[96];
        snprintf(label, sizeof label, "%s T=%zu %s", w->preset, w->tokens, w->dtype);
        if (nc > 1)
            snprintf(label + strlen(label), sizeof label - strlen(label), " %dthr", w->threads);
        fprintf(f, "<circle class=\"case\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>",
                ax_x(&a, x), ax_y(&a, y), dtype_color(w->dtype));
        xml_text(f, label);
        fprintf(f, ": %.3g flop/B, %.1f GFLOP/s, %.1f GB/s</title></circle>\n", w->intensity,
                w->gflops, w->gbps);
        fprintf(f, "<text class=\"label\" x=\"%.1f\" y=\"%.1f\" font-size=\"9\">", ax_x(&a, x) + 6,
                ax_y(&a, y) + (i % 2 ? 10 : -4));
        xml_text(f, label);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</g>\n</svg>\n");
}

/* ---- command line ------------------------------------------------------------------------- */

/* A comma list of whole numbers in [lo, hi] into out[max]: the count, or 0 with a message that
   names the flag. */
static int parse_list(const char *flag, const char *s, long lo, long hi, long *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < lo || v > hi) {
            fprintf(stderr, "moe-bench: %s '%s': not a comma list of whole numbers %ld..%ld\n",
                    flag, s, lo, hi);
            return 0;
        }
        if (n == max) {
            fprintf(stderr, "moe-bench: %s '%s': more than %d values\n", flag, s, max);
            return 0;
        }
        out[n++] = v;
        p = *end ? end + 1 : end;
        if (*end && !*p) return fprintf(stderr, "moe-bench: %s '%s': a trailing comma\n", flag, s), 0;
    }
    if (!n) fprintf(stderr, "moe-bench: %s needs a value\n", flag);
    return n;
}

/* Option `name` at argv[*i], as "--name value" or "--name=value": 1 and *v (NULL when the value
   is missing; the caller says so), advancing *i past the value; 0 if argv[*i] is another flag. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **v) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return 0;
    if (argv[*i][n] == '=') return *v = argv[*i] + n + 1, 1;
    if (argv[*i][n]) return 0;
    *v = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

/* the most threads moe.h runs (moe__threads): the larger of the processors and
   omp_get_max_threads(), at most omp_get_thread_limit() */
static int thread_cap(void) {
#if MOE__OMP
    int max = omp_get_max_threads(), procs = omp_get_num_procs(), limit = omp_get_thread_limit();
    int cap = max > procs ? max : procs;
    return cap < limit ? cap : limit;
#else
    return 1;
#endif
}

static int processors(void) {
#if MOE__OMP
    return omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

static const char *compiler_name(char *buf, size_t n) {
#if defined(__clang__)
    snprintf(buf, n, "clang %d.%d", __clang_major__, __clang_minor__);
#elif defined(__GNUC__)
    snprintf(buf, n, "gcc %d.%d", __GNUC__, __GNUC_MINOR__);
#else
    snprintf(buf, n, "unknown compiler");
#endif
    return buf;
}

static void usage(FILE *f, const char *argv0) {
    fprintf(f,
            "usage: %s [--preset qwen3,dsv2lite,mixtral,dsv3,toy] [--tokens 1,16,128,512]\n"
            "          [--dtype f32,bf16,f16,bf16dot,q8,q4,fp8,mxfp4] [--threads 1,2] [--experts N]\n"
            "          [--repeats N] [--no-ref] [--quick] [--output table|csv|json|md] [--csv]\n"
            "          [--plot FILE.svg] [--version] [--help]   (--flag=value works too)\n"
            "  --quick         the short set of `make bench`: presets toy,qwen3 and tokens\n"
            "                  1,16,128 (each unless given), at most 10 repeats, no reference\n"
            "                  run above 16 tokens\n"
            "  --output FMT    table (default), csv (--csv), json or md (a Markdown table); the\n"
            "                  build line and the ceilings come first in each\n"
            "  --plot FILE     also write a roofline of every case to FILE (SVG)\n"
            "  --version       the build line (moe_build_info) and exit\n",
            argv0);
}

int main(int argc, char **argv) {
    const char *preset_arg = "qwen3,dsv2lite,mixtral,toy", *plot = NULL;
    long tokens[16] = {1, 16, 128, 512}, threads[16];
    int dtypes[N_DTYPES] = {0}, n_dtypes = 1;
    int n_tokens = 4, n_threads = 0, repeats = 0, do_ref = 1, quick = 0;
    int preset_given = 0, tokens_given = 0;
    out_kind out = OUT_TABLE;
    long experts = 0;
    char cc[64], build[320];
    snprintf(build, sizeof build, "%s; %d OpenMP thread%s, %s", moe_build_info()->text,
             max_threads(), max_threads() > 1 ? "s" : "", compiler_name(cc, sizeof cc));
    int csv_given = 0, output_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, argv[0]);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("moe-bench: %s\n", build);
            return 0;
        } else if (!strcmp(a, "--csv")) out = OUT_CSV, csv_given = 1;
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--no-ref")) do_ref = 0;
        else {
            static const char *const flags[] = {"--preset", "--tokens", "--threads", "--experts",
                                                "--repeats", "--plot", "--output", "--dtype"};
            int f = -1;
            for (int j = 0; j < (int)(sizeof flags / sizeof *flags) && f < 0; j++)
                if (opt_val(argc, argv, &i, flags[j], &v)) f = j;
            if (f < 0) {
                fprintf(stderr, "moe-bench: unknown option '%s'\n", a);
                usage(stderr, argv[0]);
                return 2;
            }
            a = flags[f];
            if (!v || !*v) {
                fprintf(stderr, "moe-bench: %s needs a value\n", a);
                return 2;
            }
            long one[1];
            switch (f) {
            case 0: preset_arg = v, preset_given = 1; break;
            case 1:
                if (!(n_tokens = parse_list(a, v, 1, 1L << 20, tokens, 16))) return 2;
                tokens_given = 1;
                break;
            case 2:
                if (!(n_threads = parse_list(a, v, 1, 4096, threads, 16))) return 2;
                break;
            case 3:
                if (!parse_list(a, v, 1, 1 << 16, one, 1)) return 2;
                experts = one[0];
                break;
            case 4:
                if (!parse_list(a, v, 1, 1000000, one, 1)) return 2;
                repeats = (int)one[0];
                break;
            case 5: plot = v; break;
            case 6: {
                static const char *const kinds[] = {"table", "csv", "json", "md"};
                int k = -1;
                for (int j = 0; j < 4; j++)
                    if (!strcmp(v, kinds[j])) k = j;
                if (k < 0) {
                    fprintf(stderr, "moe-bench: --output %s: not table, csv, json or md\n", v);
                    return 2;
                }
                out = (out_kind)k, output_given = 1;
                break;
            }
            default: {
                char list[128];
                n_dtypes = 0;
                snprintf(list, sizeof list, "%s", v);
                for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
                    int k = -1;
                    for (int j = 0; j < N_DTYPES; j++)
                        if (!strcmp(t, dtype_names[j])) k = j;
                    if (k < 0 || n_dtypes == N_DTYPES) {
                        fprintf(stderr, "moe-bench: unknown dtype '%s' (f32, bf16, f16, bf16dot, q8, q4, fp8, mxfp4)\n", t);
                        return 2;
                    }
                    dtypes[n_dtypes++] = k;
                }
                if (!n_dtypes) return fprintf(stderr, "moe-bench: --dtype needs a value\n"), 2;
            }
            }
        }
    }
    /* every preset named must exist: a typo is an error before minutes of measuring */
    {
        char names[256];
        snprintf(names, sizeof names, "%s", preset_arg);
        int n_named = 0;
        long max_e = 0;
        for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ","), n_named++) {
            const preset *p = NULL;
            for (size_t j = 0; j < sizeof presets / sizeof presets[0]; j++)
                if (!strcmp(presets[j].name, tok)) p = &presets[j];
            if (!p) {
                fprintf(stderr, "moe-bench: unknown preset '%s' (", tok);
                for (size_t j = 0; j < sizeof presets / sizeof presets[0]; j++)
                    fprintf(stderr, "%s%s", j ? ", " : "", presets[j].name);
                fprintf(stderr, ")\n");
                return 2;
            }
            if (p->E > max_e) max_e = p->E;
        }
        if (!n_named) return fprintf(stderr, "moe-bench: --preset needs a value\n"), 2;
        /* flags that change nothing in this run get a word, as build/moe's do */
        if (experts >= max_e)
            fprintf(stderr, "moe-bench: warning: --experts %ld has no effect: the presets run "
                    "have at most %ld experts (it only lowers the count)\n", experts, max_e);
    }
    if (csv_given && output_given)
        fprintf(stderr, "moe-bench: warning: --csv and --output both given: the last one, %s, "
                "is used\n", out == OUT_CSV ? "csv" : out == OUT_JSON ? "json" : out == OUT_MD ? "md" : "table");
    /* a count above the processors runs as moe.h runs it (moe__threads' cap), and the ceilings
       are measured with that team too: a ceiling of 99 threads time-sliced on 2 cores means
       nothing */
    for (int t = 0; t < n_threads; t++) {
        int cap = thread_cap();
        if (threads[t] > processors())
            fprintf(stderr, "moe-bench: warning: --threads %ld exceeds the %d processors "
                    "available: moe.h runs %d (the processors, or OMP_NUM_THREADS if higher), "
                    "and so does this run\n", threads[t], processors(),
                    threads[t] < cap ? (int)threads[t] : cap);
        if (threads[t] > cap) threads[t] = cap;
    }
    if (quick && !preset_given) preset_arg = "toy,qwen3";
    if (quick && !tokens_given) tokens[0] = 1, tokens[1] = 16, tokens[2] = 128, n_tokens = 3;
    if (n_threads <= 0) {
        threads[0] = 1, n_threads = 1;
        if (max_threads() > 1) threads[n_threads++] = max_threads();
    }
    /* the plot file is opened first, so that a bad path fails before the measurements */
    FILE *plot_file = NULL;
    if (plot && !(plot_file = fopen(plot, "w"))) {
        fprintf(stderr, "moe-bench: --plot %s: cannot write it\n", plot);
        return 1;
    }

    /* ceilings, once per thread count */
    ceilings ceils[16];
    for (int i = 0; i < n_threads; i++) {
        ceilings *c = &ceils[i];
        c->threads = (int)threads[i];
        c->read = c->read_best = read_ceiling(c->threads, 7);
        c->fma = fma_ceiling(c->threads, &c->fma_agree);
        c->bf16 = MOE__DPBF16 ? compute_ceiling(c->threads, 2) : c->fma;
#if MOE__SIMD
        c->q8 = int_ceiling(c->threads, 3), c->q4 = int_ceiling(c->threads, 4);
#else
        c->q8 = c->q4 = c->fma;
#endif
    }
    const char *isa = moe_build_info()->isa;
    print_header(out, build, ceils, n_threads);

    row *rows = NULL;
    int n_rows = 0, cap_rows = 0;
    char names[256];
    strncpy(names, preset_arg, sizeof names - 1);
    names[sizeof names - 1] = 0;
    for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ",")) {
        const preset *p = NULL;
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            if (!strcmp(presets[i].name, tok)) p = &presets[i];
        if (!p) {
            fprintf(stderr, "moe-bench: unknown preset %s\n", tok);
            continue;
        }
        int E = experts > 0 && experts < p->E ? (int)experts : p->E;
        {   /* fit in memory: the packed experts must stay under ~70% of RAM */
            double per = 4.0 * 3.0 * p->d * (double)p->ff;
            double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
            while (E > p->k && per * E > 0.7 * ram) E /= 2;
            if (p->sigmoid_groups && E % 8) E = E / 8 * 8;
            if (E < p->k) E = p->k;
            if (E != p->E && out == OUT_TABLE)
                printf("(%s: %d experts of %d, to fit in memory)\n", p->name, E, p->E);
        }
        for (int di = 0; di < n_dtypes; di++) {
            int dt = dtypes[di], dot = dt == 3;
            bench_layer bl;
            double tc = now_s();
            if (!make_layer(p, E, dt, &bl)) continue;
            if (out == OUT_TABLE)
                printf("(%s %s: packed %.2f GB in %.1f s)\n", p->name, dtype_names[dt],
                       (double)moe_layer_packed_bytes(bl.L) / 1e9, now_s() - tc);
            for (int ti = 0; ti < n_threads; ti++)
                for (int ki = 0; ki < n_tokens; ki++) {
                    size_t T = (size_t)tokens[ki];
                    int nth = (int)threads[ti];
                    int rep = repeats;
                    const ceilings *c = &ceils[ti];
                    if (rep <= 0) { /* about a second a case, 3..25 runs */
                        result probe = run_case(bl.L, T, nth, 1, 0);
                        rep = (int)(1000.0 / (probe.ms + 1e-3));
                        rep = rep < 3 ? 3 : rep > 25 ? 25 : rep;
                        if (quick && rep > 10) rep = 10;
                    }
                    if (n_rows == cap_rows) {
                        cap_rows = cap_rows ? 2 * cap_rows : 16;
                        row *nr = (row *)realloc(rows, (size_t)cap_rows * sizeof *rows);
                        if (!nr) {
                            fprintf(stderr, "moe-bench: out of memory\n");
                            return 1;
                        }
                        rows = nr;
                    }
                    row *w = &rows[n_rows++];
                    memset(w, 0, sizeof *w);
                    /* the read ceiling again, right before the case: other tenants of the
                       memory system come and go, and the fraction should compare like with like */
                    w->read = read_ceiling(nth, 3);
                    if (w->read > ceils[ti].read_best) ceils[ti].read_best = w->read;
                    w->r = run_case(bl.L, T, nth, rep, do_ref && !(quick && T > 16));
                    w->preset = p->name, w->dtype = dtype_names[dt], w->experts = E;
                    w->threads = nth, w->tokens = T;
                    w->gbps = w->r.bytes / (w->r.ms * 1e-3) / 1e9;
                    w->gflops = w->r.flops / (w->r.ms * 1e-3) / 1e9;
                    w->intensity = w->r.flops / w->r.bytes;
                    w->peak = dot ? c->bf16 : dt == 4 ? c->q8 : dt == 5 ? c->q4 : c->fma;
                    w->compute = dot ? (MOE__DPBF16 && bl.L->dpbf16 ? "bf16dot" : "bf16dot-emu")
                                 : dt == 4 || dt == 5 ? "int8" : "fma"; /* fp8, mxfp4: fp32 FMA */
                    print_row(out, w, isa, n_rows == 1);
                }
            moe_layer_free(bl.L);
        }
    }
    if (out == OUT_JSON) printf("%s  ]\n}\n", n_rows ? "\n" : "");
    int rc = 0;
    if (plot_file) {
        write_roofline(plot_file, build, ceils, n_threads, rows, n_rows);
        if (fclose(plot_file) != 0) {
            fprintf(stderr, "moe-bench: --plot %s: write failed\n", plot);
            rc = 1;
        }
    }
    free(rows);
    return rc;
}
