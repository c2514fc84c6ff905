/* test_faults.c - every allocation fails in turn. An allocator that fails at its N-th call,
   for N = 1, 2, ... until the work succeeds:
     - moe_layer_create on layers of every weight kind: each failure is MOE_E_NOMEM with its
       message, *out NULL, nothing left allocated;
     - a whole CLI run on checkpoint fixtures (examples/moe_cli.c is included with its main
       renamed; moe.h, moe_io.h and the CLI all allocate through the hooks here): config.json,
       the index, the shards, the input, the packing, the workspace, the outputs. Each failure
       exits non-zero with a message that says "out of memory", leaves no allocation behind and
       no output file.
   In the sanitizer build LeakSanitizer checks at exit that nothing escaped the count.

   Build: cc -std=c99 -I. -Iexamples tests/test_faults.c -lm ; run from the repo root. */
#define _DEFAULT_SOURCE 1
#include <stddef.h>

static void *fi_malloc(size_t n);
static void *fi_realloc(void *p, size_t n);
static void fi_free(void *p);
#define MOE_MALLOC(sz, ctx) fi_malloc(sz)
#define MOE_FREE(p, ctx) fi_free(p)
#define MIO_MALLOC(sz) fi_malloc(sz)
#define MIO_REALLOC(p, sz) fi_realloc(p, sz)
#define MIO_FREE(p) fi_free(p)

int moe_cli_main(int argc, char **argv);
#define main moe_cli_main
#include "../examples/moe_cli.c"
#undef main

#include <dirent.h>
#include <fcntl.h>

#include "check.h"

/* ---- the failing allocator: counts calls and live blocks, fails call number g_fail_at ---- */

static size_t g_calls, g_fail_at, g_live;

static void *fi_malloc(size_t n) {
    if (++g_calls == g_fail_at) return NULL;
    size_t *h = (size_t *)malloc(n + 16);
    if (!h) return NULL;
    h[0] = n;
    g_live++;
    return (char *)h + 16;
}

static void *fi_realloc(void *p, size_t n) {
    if (!p) return fi_malloc(n);
    if (++g_calls == g_fail_at) return NULL;
    size_t *h = (size_t *)realloc((char *)p - 16, n + 16);
    if (!h) return NULL;
    h[0] = n;
    return (char *)h + 16;
}

static void fi_free(void *p) {
    if (!p) return;
    g_live--;
    free((char *)p - 16);
}

/* ---- moe_layer_create ---- */

enum { D = 8, FF = 12, E = 4 };
static float g_w[3 * E * 2 * FF * D];

static void test_create(void) {
    moe_config c[3];
    moe_weights w[3];
    memset(c, 0, sizeof c);
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++) {
        c[i].d_model = D, c[i].d_ff = FF, c[i].n_experts = E, c[i].top_k = 2;
        w[i].router.data = w[i].down.data = g_w;
    }
    w[0].gate.data = w[0].up.data = g_w;                       /* Mixtral-like */
    c[1].n_shared = 2, c[1].shared_gate = MOE_SHARED_GATE_SIGMOID; /* Qwen2-MoE-like */
    c[1].select_bias = 1, c[1].score = MOE_SCORE_SIGMOID;
    w[1].gate.data = w[1].up.data = g_w, w[1].select_bias.data = g_w;
    w[1].shared_gate_proj.data = w[1].shared_up.data = w[1].shared_down.data = g_w;
    w[1].shared_gate.data = g_w;
    c[2].expert_bias = 1, c[2].router_bias = 1, c[2].act = MOE_ACT_SWIGLU_OAI; /* GPT-OSS-like */
    c[2].score = MOE_SCORE_SOFTMAX_TOPK;
    w[2].gate_up.data = g_w, w[2].gate_up_split = MOE_SPLIT_INTERLEAVED;
    w[2].gate_up_bias.data = w[2].down_bias.data = w[2].router_bias.data = g_w;
    for (int i = 0; i < 3; i++) {
        int failures = 0;
        for (size_t n = 1;; n++) {
            moe_layer *L = (moe_layer *)(void *)&L;
            g_calls = 0, g_fail_at = n;
            moe_result r = moe_layer_create(&L, &c[i], &w[i]);
            if (r == MOE_OK) {
                moe_layer_free(L);
                CHECK_MSG(n > 1, "layer %d: no allocation to fail", i);
                break;
            }
            failures++;
            CHECK_MSG(r == MOE_E_NOMEM && L == NULL && g_live == 0 &&
                          strstr(moe_result_string(r), "out of memory"),
                      "layer %d, allocation %zu fails: %s, %zu blocks left", i, n,
                      moe_result_string(r), g_live);
            if (n > 100) break;
        }
        CHECK(failures >= 1 && g_live == 0);
    }
    g_fail_at = 0;
}

/* ---- a CLI run ---- */

static char g_tmp[64];

static size_t count_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    if (!d) return (size_t)-1;
    while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Runs the CLI with stdout to /dev/null and stderr into msg. */
static int run_cli(char **argv, int argc, char *msg, size_t n) {
    char path[128];
    int out = dup(1), errfd = dup(2), dn = open("/dev/null", O_WRONLY), cap;
    snprintf(path, sizeof path, "%s/stderr", g_tmp);
    cap = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fflush(stdout), fflush(stderr);
    dup2(dn, 1), dup2(cap, 2);
    int rc = moe_cli_main(argc, argv);
    fflush(stdout), fflush(stderr);
    dup2(out, 1), dup2(errfd, 2);
    close(out), close(errfd), close(dn);
    ssize_t got = pread(cap, msg, n - 1, 0);
    msg[got > 0 ? got : 0] = '\0';
    close(cap);
    unlink(path);
    return rc;
}

static void test_cli_case(const char *name, const char *dir, const char *layer, const char *x,
                          const char *extra) {
    char outdir[128], y[160], e[160], w[160], msg[2048];
    snprintf(outdir, sizeof outdir, "%s/out", g_tmp);
    mkdir(outdir, 0755);
    snprintf(y, sizeof y, "%s/y.npy", outdir);
    snprintf(e, sizeof e, "%s/e.npy", outdir);
    snprintf(w, sizeof w, "%s/w.npy", outdir);
    char *argv[16] = {"moe", "run"};
    int argc = 2;
    if (dir) {
        char *more[12] = {"--model", (char *)dir, "--layer", (char *)layer, "--input", (char *)x,
                          "--output", y, "--experts-out", e, "--weights-out", w};
        for (int i = 0; i < 12; i++) argv[argc++] = more[i];
    }
    if (extra) argv[argc++] = (char *)extra;
    /* a run that succeeds, to know how many allocations there are */
    g_calls = 0, g_fail_at = 0;
    int rc = run_cli(argv, argc, msg, sizeof msg);
    size_t total = g_calls;
    CHECK_MSG(rc == 0 && g_live == 0, "%s: the run without failures: rc %d, %zu blocks left: %s",
              name, rc, g_live, msg);
    clear_dir(outdir);
    int bad = 0;
    for (size_t n = 1; n <= total; n++) {
        g_calls = 0, g_fail_at = n;
        rc = run_cli(argv, argc, msg, sizeof msg);
        size_t left = count_files(outdir);
        if (rc == 0 || !strstr(msg, "out of memory") || g_live != 0 || left != 0) {
            if (bad++ < 5)
                printf("%s: allocation %zu of %zu fails: rc %d, %zu blocks and %zu files left, "
                       "message: %s\n", name, n, total, rc, g_live, left, msg);
            g_live = 0;
            clear_dir(outdir);
        }
    }
    g_fail_at = 0;
    CHECK_MSG(bad == 0 && total > 10, "%s: %d of %zu allocation failures mishandled", name, bad,
              total);
    printf("%s: %zu allocations, each failed once\n", name, total);
    rmdir(outdir);
}

int main(void) {
    test_create();
    strcpy(g_tmp, "/tmp/moe_test_faults_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    const char *ck = "tests/checkpoints";
    char d[5][128], x[5][300];
    /* kimi_k2_int4: a quantized checkpoint (the ignore list's matching, the scale arrays) */
    const char *cases[5][3] = {{"olmoe", "0", "olmoe.0"}, {"mixtral", "1", "mixtral.1"},
                               {"qwen2_moe", "1", "qwen2_moe.1"}, {"gpt_oss", "0", "gpt_oss.0"},
                               {"kimi_k2_int4", "1", "kimi_k2_int4.1"}};
    for (int i = 0; i < 5; i++) {
        snprintf(d[i], sizeof d[i], "%s/%s", ck, cases[i][0]);
        snprintf(x[i], sizeof x[i], "%s/%s/%s.x.npy", ck, cases[i][0], cases[i][2]);
        test_cli_case(cases[i][0], d[i], cases[i][1], x[i], NULL);
    }
    test_cli_case("olmoe --mmap", d[0], "0", x[0], "--mmap");
    test_cli_case("toy layer", NULL, NULL, NULL, "--stats");
    rmdir(g_tmp);
    return check_summary();
}
