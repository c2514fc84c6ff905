/* test_model.c - the loader API (examples/moe_model.h) on the checkpoint fixtures of
   tests/checkpoints (written by tests/gen_checkpoints.py):
     - every case of cases.txt through mm_open, mm_layer_create and moe_forward on the committed
       X: Y and W within TOL of the float64 references, E exactly; sources mapped (use_mmap)
       give the same bits as sources read. TOL = 1e-5 of max(1, max|ref|), tests/test_cli.sh's:
       fp32 arithmetic on the stored weights, K <= 48 terms a dot product;
     - the layer list: counts over the stacks, names, MoE or not, by each family's rule;
     - expert subsets: moe_forward_routed on a layer of experts [b, b + c) gives, bit for bit,
       what the whole layer gives with the other experts' slots masked (MOE_SLOT_NONE), shared
       experts included; where the checkpoint stores a tensor per expert it reads fewer bytes;
     - a host pool (parallel_for) gives OpenMP's bits;
     - the messages of the failures (the CLI prints the same ones) and the defaults recorded
       for the keys absent from config.json.
   Build: cc -std=c99 -I. -Iexamples tests/test_model.c -lm ; run from the repo root. */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "moe_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define CK "tests/checkpoints"
#define TOL 1e-5

/* max |got - ref| / max(1, max |ref|) */
static double rel_err(const float *got, const double *ref, size_t n) {
    double worst = 0.0, scale = 1.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= worst)) worst = e; /* a NaN is the worst */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return worst / scale;
}

/* x, or the reference named stem.what.npy, as doubles (NULL if unreadable) */
static double *ref(const char *dir, const char *stem, const char *what, size_t *rows, size_t *cols) {
    char path[512], e[MIO_ERR_SIZE];
    double *p = NULL;
    snprintf(path, sizeof path, CK "/%s/%s.%s.npy", dir, stem, what);
    if (mio_npy_read_f64(path, &p, rows, cols, e, sizeof e)) {
        printf("%s\n", e);
        return NULL;
    }
    return p;
}

/* A workspace for T tokens of layer (data from malloc; free it). */
static moe_workspace workspace(const moe_layer *layer, size_t T) {
    moe_workspace ws = {0};
    size_t bytes = 0;
    moe_workspace_size(layer, T, &bytes);
    ws.data = malloc(bytes ? bytes : 1), ws.size = bytes;
    return ws;
}

/* ---- every fixture against its reference ---- */

static void run_case(const char *name, const char *dir, const char *layer, const char *stem,
                     const char *flags) {
    char path[512], err[MM_ERR_SIZE], e[MIO_ERR_SIZE];
    mm_model m, mm;
    mm_options opt;
    mm_layer_info info;
    moe_layer *L = NULL, *Lm = NULL;
    float *x = NULL;
    size_t T, D, r1, c1, r2, c2, r3, c3;
    memset(&opt, 0, sizeof opt);
    if (strstr(flags, "--drop identity")) opt.drop = MM_DROP_IDENTITY;
    snprintf(path, sizeof path, CK "/%s", dir);
    if (mm_open(&m, path, 0, err, sizeof err) || mm_open(&mm, path, 1, err, sizeof err)) {
        CHECK_MSG(0, "%s: mm_open: %s", name, err);
        return;
    }
    int ok = !mm_layer_create(&m, layer, &opt, &L, &info, err, sizeof err);
    CHECK_MSG(ok, "%s: mm_layer_create: %s", name, err);
    ok = ok && !mm_layer_create(&mm, layer, &opt, &Lm, NULL, err, sizeof err);
    CHECK_MSG(ok, "%s: mm_layer_create (mapped): %s", name, err);
    mm_close(&m);
    mm_close(&mm);
    snprintf(path, sizeof path, CK "/%s/%s.x.npy", dir, stem);
    double *ry = ref(dir, stem, "y", &r1, &c1), *re = ref(dir, stem, "e", &r2, &c2);
    double *rw = ref(dir, stem, "w", &r3, &c3);
    if (ok && !mio_npy_read(path, &x, &T, &D, e, sizeof e) && ry && re && rw) {
        const moe_config *c = moe_layer_config(L);
        size_t K = (size_t)c->top_k;
        float *y = malloc(T * D * sizeof *y + 1), *ym = malloc(T * D * sizeof *y + 1);
        float *w = malloc(T * K * sizeof *w + 1);
        int32_t *ex = malloc(T * K * sizeof *ex + 1);
        moe_trace tr;
        moe_workspace ws = workspace(L, T);
        memset(&tr, 0, sizeof tr);
        tr.expert = ex, tr.weight = w;
        CHECK_INT(moe_forward(L, x, T, y, &ws, &tr), MOE_OK);
        CHECK_INT(moe_forward(Lm, x, T, ym, &ws, NULL), MOE_OK);
        CHECK_MSG(r1 == T && c1 == D && r2 == T && c2 == K && r3 == T && c3 == K,
                  "%s: reference shapes", name);
        double ey = rel_err(y, ry, T * D), ew = rel_err(w, rw, T * K);
        size_t differ = 0;
        for (size_t i = 0; i < T * K; i++) differ += ex[i] != (int32_t)re[i];
        CHECK_MSG(ey <= TOL && ew <= TOL && differ == 0,
                  "%s: Y err %.3g, W err %.3g (limit %g), %zu of %zu experts differ", name, ey, ew,
                  TOL, differ, T * K);
        CHECK_MSG(!memcmp(y, ym, T * D * sizeof *y), "%s: mapped sources give other bits", name);
        CHECK_MSG(info.source_bytes > 0 && info.released <= info.source_bytes,
                  "%s: %zu source bytes, %zu released", name, info.source_bytes, info.released);
        free(ws.data), free(y), free(ym), free(w), free(ex);
    } else if (ok) {
        CHECK_MSG(0, "%s: cannot read the input or a reference: %s", name, e);
    }
    MIO_FREE(x), MIO_FREE(ry), MIO_FREE(re), MIO_FREE(rw);
    moe_layer_free(L);
    moe_layer_free(Lm);
}

static void test_cases(void) {
    FILE *f = fopen(CK "/cases.txt", "r");
    char line[512], name[128], dir[128], layer[64], stem[128];
    int n = 0, at;
    if (!f) {
        CHECK_MSG(0, "cannot open " CK "/cases.txt (run from the repo root)");
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%127s %127s %63s %127s %n", name, dir, layer, stem, &at) < 4)
            continue;
        run_case(name, dir, layer, stem, line + at);
        n++;
    }
    fclose(f);
    printf("%d fixtures through mm_layer_create, each within %g of its reference\n", n, TOL);
    CHECK(n >= 60);
}

/* ---- the layer list ---- */

/* Checks the model's layer names and which are MoE: `want` is "name:1 name:0 ...". */
static void check_layers(const char *dir, const char *want) {
    char path[256], err[MM_ERR_SIZE], got[512], name[32];
    mm_model m;
    size_t at = 0;
    snprintf(path, sizeof path, CK "/%s", dir);
    if (mm_open(&m, path, 0, err, sizeof err)) {
        CHECK_MSG(0, "%s: %s", dir, err);
        return;
    }
    int n = mm_layer_count(&m, err, sizeof err);
    got[0] = '\0';
    for (int i = 0; i < n; i++) {
        CHECK(mm_layer_name(&m, i, name, sizeof name) == 0);
        int moe = mm_is_moe(&m, name, err, sizeof err);
        at += (size_t)snprintf(got + at, sizeof got - at, "%s%s:%d", i ? " " : "", name, moe);
        /* a layer that is not MoE says why; a MoE one builds */
        if (moe == 0) CHECK_MSG(strstr(err, "layer"), "%s %s: %s", dir, name, err);
    }
    CHECK(mm_layer_name(&m, n, name, sizeof name) == -1 && mm_layer_name(&m, -1, name, 8) == -1);
    CHECK_MSG(!strcmp(got, want), "%s: layers \"%s\", expected \"%s\"", dir, got, want);
    mm_close(&m);
}

static void test_layers(void) {
    check_layers("olmoe", "0:1");
    check_layers("deepseek_v3", "0:0 1:1");                 /* first_k_dense_replace = 1 */
    check_layers("qwen2_moe", "0:0 1:1 2:0 3:0");           /* decoder_sparse_step 2, mlp_only [3] */
    check_layers("switch_transformers",                     /* every 2nd block from 1 */
                 "encoder.0:0 encoder.1:1 encoder.2:0 encoder.3:1 "
                 "decoder.0:0 decoder.1:1 decoder.2:0 decoder.3:1");
    check_layers("qwen3_omni_moe_thinker", "thinker.0:1 thinker.1:1 talker.0:1 talker.1:1");
    check_layers("deepseek_v4", "0:0 1:0 2:0 3:1");         /* hash-routed layers 0..2 */

    char err[MM_ERR_SIZE];
    mm_model m;
    CHECK(mm_open(&m, CK "/deepseek_v4", 0, err, sizeof err) == 0);
    CHECK(mm_is_moe(&m, "2", err, sizeof err) == 0 && strstr(err, "hash-routed"));
    CHECK(mm_is_moe(&m, "4", err, sizeof err) == -1 && strstr(err, "layer 4 is out of range"));
    CHECK(mm_is_moe(&m, "x", err, sizeof err) == -1 && strstr(err, "bad --layer 'x'"));
    mm_close(&m);
}

/* ---- expert subsets ---- */

/* Routes X with the whole layer, then checks subsets against the whole layer with the other
   experts' slots masked. per_expert: the checkpoint has a tensor per expert (a subset reads
   fewer bytes); otherwise [E][...] tensors, read whole. */
static void check_subsets(const char *dir, const char *layer, const char *stem, int per_expert) {
    char path[512], err[MM_ERR_SIZE], e[MIO_ERR_SIZE];
    mm_model m;
    mm_options opt;
    mm_layer_info full_info, sub_info;
    moe_layer *full = NULL;
    float *x = NULL;
    size_t T, D;
    snprintf(path, sizeof path, CK "/%s", dir);
    memset(&opt, 0, sizeof opt);
    if (mm_open(&m, path, 0, err, sizeof err) ||
        mm_layer_create(&m, layer, &opt, &full, &full_info, err, sizeof err)) {
        CHECK_MSG(0, "%s: %s", dir, err);
        mm_close(&m);
        return;
    }
    snprintf(path, sizeof path, CK "/%s/%s.x.npy", dir, stem);
    CHECK(!mio_npy_read(path, &x, &T, &D, e, sizeof e));
    const moe_config *fc = moe_layer_config(full);
    int E = fc->n_experts, K = fc->top_k;
    int32_t *ex = malloc(T * (size_t)K * sizeof *ex), *masked = malloc(T * (size_t)K * sizeof *ex);
    float *wt = malloc(T * (size_t)K * sizeof *wt), *y1 = malloc(T * D * sizeof *y1);
    float *y2 = malloc(T * D * sizeof *y2), *yall = malloc(T * D * sizeof *yall);
    moe_workspace ws = workspace(full, T);
    CHECK_INT(moe_route_slots(full, x, T, ex, wt, &ws, NULL), MOE_OK);
    CHECK_INT(moe_forward_routed(full, x, T, ex, wt, yall, &ws), MOE_OK);
    const int ranges[3][2] = {{0, E / 2}, {E / 2, 0}, {1, 2}}; /* count 0: to the end */
    for (int r = 0; r < 3; r++) {
        moe_layer *sub = NULL;
        opt.expert_begin = ranges[r][0], opt.expert_count = ranges[r][1];
        int b = opt.expert_begin, c = opt.expert_count ? opt.expert_count : E - b;
        if (mm_layer_create(&m, layer, &opt, &sub, &sub_info, err, sizeof err)) {
            CHECK_MSG(0, "%s subset %d+%d: %s", dir, b, c, err);
            continue;
        }
        CHECK(moe_layer_config(sub)->expert_begin == b && moe_layer_config(sub)->expert_count == c);
        for (size_t i = 0; i < T * (size_t)K; i++)
            masked[i] = ex[i] >= 0 && (ex[i] < b || ex[i] >= b + c) ? MOE_SLOT_NONE : ex[i];
        moe_workspace ws2 = workspace(sub, T);
        CHECK_INT(moe_forward_routed(full, x, T, masked, wt, y1, &ws), MOE_OK);
        CHECK_INT(moe_forward_routed(sub, x, T, ex, wt, y2, &ws2), MOE_OK);
        CHECK_MSG(!memcmp(y1, y2, T * D * sizeof *y1),
                  "%s: experts %d..%d: not the bits of the whole layer with the rest masked", dir,
                  b, b + c - 1);
        CHECK_MSG(memcmp(yall, y2, T * D * sizeof *y2), "%s: experts %d..%d add all of them", dir,
                  b, b + c - 1);
        if (per_expert)
            CHECK_MSG(sub_info.source_bytes < full_info.source_bytes, "%s %d+%d: read %zu of %zu",
                      dir, b, c, sub_info.source_bytes, full_info.source_bytes);
        else
            CHECK_INT(sub_info.source_bytes, full_info.source_bytes);
        free(ws2.data);
        moe_layer_free(sub);
    }
    /* outside the experts */
    opt.expert_begin = E, opt.expert_count = 0;
    moe_layer *bad = (moe_layer *)&bad;
    CHECK(mm_layer_create(&m, layer, &opt, &bad, NULL, err, sizeof err) == -1 && bad == NULL);
    CHECK_MSG(strstr(err, "expert subset: expert_begin 8, expert_count 0") || E != 8, "%s", err);
    opt.expert_begin = 1, opt.expert_count = E;
    CHECK(mm_layer_create(&m, layer, &opt, &bad, NULL, err, sizeof err) == -1 &&
          strstr(err, "do not select experts"));
    free(ws.data), free(ex), free(masked), free(wt), free(y1), free(y2), free(yall);
    MIO_FREE(x);
    moe_layer_free(full);
    mm_close(&m);
}

static void test_subsets(void) {
    check_subsets("qwen2_moe", "1", "qwen2_moe.1", 1);    /* a tensor per expert, shared expert */
    check_subsets("deepseek_v3", "1", "deepseek_v3.1", 1); /* groups, selection bias */
    check_subsets("gpt_oss", "0", "gpt_oss.0", 0);        /* fused [E][...] with biases */
}

/* ---- a host pool ---- */

static int g_pool_calls;

static void serial_for(void *pool, int n, moe_task task, void *ctx) {
    (void)pool;
    g_pool_calls++;
    for (int i = n - 1; i >= 0; i--) task(ctx, i); /* backwards: order must not matter */
}

static void test_pool(void) {
    char err[MM_ERR_SIZE], e[MIO_ERR_SIZE];
    mm_model m;
    mm_options opt;
    mm_layer_info info;
    moe_layer *a = NULL, *b = NULL;
    float *x = NULL;
    size_t T, D;
    memset(&opt, 0, sizeof opt);
    CHECK(!mm_open(&m, CK "/mixtral", 0, err, sizeof err));
    CHECK(!mm_layer_create(&m, "1", &opt, &a, &info, err, sizeof err));
    CHECK_MSG(info.released > 0, "released %zu", info.released);
    opt.parallel_for = serial_for, opt.pool_threads = 3;
    CHECK(!mm_layer_create(&m, "1", &opt, &b, &info, err, sizeof err));
    CHECK_INT(info.released, 0); /* not counted: the calls may come at once */
    mm_close(&m);
    CHECK(!mio_npy_read(CK "/mixtral/mixtral.1.x.npy", &x, &T, &D, e, sizeof e));
    if (a && b && x) {
        float *ya = malloc(T * D * sizeof *ya), *yb = malloc(T * D * sizeof *yb);
        moe_workspace wa = workspace(a, T), wb = workspace(b, T);
        g_pool_calls = 0;
        CHECK_INT(moe_forward(a, x, T, ya, &wa, NULL), MOE_OK);
        CHECK_INT(g_pool_calls, 0);
        CHECK_INT(moe_forward(b, x, T, yb, &wb, NULL), MOE_OK);
        CHECK(g_pool_calls > 0 && !memcmp(ya, yb, T * D * sizeof *ya));
        free(ya), free(yb), free(wa.data), free(wb.data);
    }
    MIO_FREE(x);
    moe_layer_free(a);
    moe_layer_free(b);
}

/* ---- messages and defaults ---- */

static void test_messages(void) {
    char err[MM_ERR_SIZE], small[48];
    mm_model m;
    mm_options opt;
    mm_layer_info info;
    moe_layer *L = (moe_layer *)&L;
    memset(&opt, 0, sizeof opt);

    CHECK(mm_open(&m, CK "/nope", 0, err, sizeof err) == -1);
    CHECK_MSG(!strcmp(err, "model directory '" CK "/nope' not found (or not a directory)"), "%s", err);
    mm_close(&m); /* closing a model that failed to open is fine */
    CHECK(mm_open(&m, CK "/nope", 0, NULL, 0) == -1);
    CHECK(mm_open(&m, "tests", 0, err, sizeof err) == -1 &&
          !strcmp(err, "tests/config.json: config.json not found"));
    /* a message longer than the buffer keeps both ends */
    CHECK(mm_open(&m, CK "/a/long/directory/name/that/is/not/there", 0, small, sizeof small) == -1);
    CHECK_MSG(strlen(small) == sizeof small - 1 && !strncmp(small, "model directory '", 17) &&
                  strstr(small, " ... ") && strstr(small, "directory)"), "%s", small);

    CHECK(!mm_open(&m, CK "/olmoe", 0, err, sizeof err) && !err[0]);
    CHECK(mm_layer_create(&m, "5", &opt, &L, NULL, err, sizeof err) == -1 && L == NULL);
    CHECK_MSG(strstr(err, "/olmoe/config.json: layer 5 is out of range: the model has 1 layers"),
              "%s", err);
    CHECK(mm_layer_create(&m, "talker.0", NULL, &L, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "bad --layer 'talker.0'") && strstr(err, "not a stack of olmoe"), "%s", err);
    opt.drop = MM_DROP_IDENTITY;
    CHECK(mm_layer_create(&m, "0", &opt, &L, NULL, err, sizeof err) == -1);
    CHECK_MSG(!strcmp(err, "drop applies to layers with an expert capacity (switch_transformers); "
                           "olmoe has none"), "%s", err);
    opt.drop = MM_DROP_DEFAULT;
    CHECK(mm_layer_plan(&m, "0", &opt, &info, err, sizeof err) == 0);
    CHECK(info.plan.cfg.d_model == 24 && info.plan.cfg.n_experts == 8 &&
          info.plan.cfg.expert_count == 8 && info.plan.n_defaults == 0);
    CHECK(mm_layer_create(&m, "0", &opt, NULL, NULL, err, sizeof err) == -1);
    mm_close(&m);
    CHECK(mm_layer_count(&m, err, sizeof err) == -1); /* closed */

    CHECK(!mm_open(&m, CK "/deepseek_v3", 0, err, sizeof err));
    CHECK(mm_layer_create(&m, "0", NULL, &L, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "layer 0 is a dense layer (first_k_dense_replace = 1): it has no experts"),
              "%s", err);
    mm_close(&m);

    /* the keys config.json lacks, with the defaults taken, and drop on a layer with capacity */
    CHECK(!mm_open(&m, CK "/gpt_oss_bf16", 0, err, sizeof err));
    CHECK(!mm_layer_plan(&m, "1", NULL, &info, err, sizeof err));
    CHECK_INT(info.plan.n_defaults, 2);
    CHECK(!strcmp(info.plan.defaults[0].key, "swiglu_alpha") &&
          !strcmp(info.plan.defaults[0].value, "1.702") && !info.plan.defaults[0].null);
    CHECK(!strcmp(info.plan.defaults[1].key, "swiglu_limit") &&
          !strcmp(info.plan.defaults[1].value, "7"));
    mm_close(&m);
    CHECK(!mm_open(&m, CK "/qwen3_omni_moe_thinker", 0, err, sizeof err));
    CHECK(!mm_layer_plan(&m, "thinker.1", NULL, &info, err, sizeof err));
    CHECK(info.plan.n_defaults == 1 &&
          !strcmp(info.plan.defaults[0].key, "thinker_config.text_config.decoder_sparse_step"));
    mm_close(&m);
    CHECK(!mm_open(&m, CK "/switch_transformers", 0, err, sizeof err));
    opt.drop = MM_DROP_IDENTITY;
    CHECK(!mm_layer_plan(&m, "encoder.1", &opt, &info, err, sizeof err) &&
          info.plan.cfg.drop == MOE_DROP_IDENTITY);
    mm_close(&m);
}

int main(void) {
    test_cases();
    test_layers();
    test_subsets();
    test_pool();
    test_messages();
    return check_summary();
}
