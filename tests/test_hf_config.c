/* test_hf_config.c - the config.json mapping of the CLI (examples/hf_config.h) on hostile
   values: negative layer counts in every family, layer indices up to and beyond int64 (no
   arithmetic before the range check: UBSan watches in the sanitizer build), strings with an
   escaped NUL. Each case checks the result and the words of the message. Also the keys found
   absent with the defaults taken (plan.defaults), and a failure's kind and layer count.

   Build: cc -std=c99 -I. -Iexamples tests/test_hf_config.c -lm ; run from the repo root. */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "hf_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* hf_plan_layer on a config.json text; the message (or "") in err */
static int plan(const char *json, const char *layer, hf_plan *p, char *err, size_t n) {
    mio_json_doc doc;
    err[0] = 0;
    if (mio_json_parse(&doc, json, strlen(json), "config.json", err, n) != MIO_OK) return -2;
    int r = hf_plan_layer(p, mio_json_root(&doc), layer, err, n);
    mio_json_free(&doc);
    return r;
}

static void expect(const char *json, const char *layer, const char *words, int line) {
    hf_plan p;
    char err[1024];
    int r = plan(json, layer, &p, err, sizeof err);
    if (r == -1 && strstr(err, words)) n_pass++;
    else {
        n_fail++;
        printf("%s:%d: --layer %s on %s: rc %d, message \"%s\", expected \"%s\"\n", __FILE__,
               line, layer, json, r, err, words);
    }
}
#define EXPECT(json, layer, words) expect((json), (layer), (words), __LINE__)

/* the families, each with the keys it needs to get as far as the layer check */
static const struct { const char *type, *extra, *count; } fam[] = {
    {"mixtral", "", "num_hidden_layers"},
    {"phimoe", "", "num_hidden_layers"},
    {"qwen2_moe", "", "num_hidden_layers"},
    {"qwen3_moe", "", "num_hidden_layers"},
    {"olmoe", "", "num_hidden_layers"},
    {"jamba", "", "num_hidden_layers"},
    {"deepseek_v2", ", \"num_experts_per_tok\": 6", "num_hidden_layers"},
    {"deepseek_v3", "", "num_hidden_layers"},
    {"kimi_k2", "", "num_hidden_layers"},
    {"glm4_moe", "", "num_hidden_layers"},
    {"gpt_oss", "", "num_hidden_layers"},
    {"llama4", "", "num_hidden_layers"},
    {"dbrx", "", "n_layers"},
    {"granitemoe", "", "num_hidden_layers"},
    {"ernie4_5_moe", "", "num_hidden_layers"},
    {"switch_transformers", "", "num_layers"},
};

static void test_negative_counts(void) {
    char json[512], words[128];
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        const long long vals[3] = {-1, -7, -2147483648LL};
        for (int v = 0; v < 3; v++) {
            snprintf(json, sizeof json, "{\"model_type\": \"%s\", \"%s\": %lld%s}", fam[i].type,
                     fam[i].count, vals[v], fam[i].extra);
            snprintf(words, sizeof words, "'%s' = %lld is negative", fam[i].count, vals[v]);
            EXPECT(json, "0", words);
            EXPECT(json, "9223372036854775807", words);
        }
        /* zero layers: every index is out of range */
        snprintf(json, sizeof json, "{\"model_type\": \"%s\", \"%s\": 0%s}", fam[i].type,
                 fam[i].count, fam[i].extra);
        if (strcmp(fam[i].type, "switch_transformers"))
            EXPECT(json, "0", "has no layers");
    }
    /* llama4 reads its text keys under text_config */
    EXPECT("{\"model_type\": \"llama4\", \"text_config\": {\"num_hidden_layers\": -3}}", "1",
           "'num_hidden_layers' = -3 is negative");
    /* the other switch counts */
    EXPECT("{\"model_type\": \"switch_transformers\", \"num_decoder_layers\": -1}", "decoder.1",
           "'num_decoder_layers' = -1 is negative");
    EXPECT("{\"model_type\": \"switch_transformers\", \"num_sparse_encoder_layers\": -4}", "1",
           "'num_sparse_encoder_layers' = -4 is negative");
    EXPECT("{\"model_type\": \"switch_transformers\", \"num_sparse_decoder_layers\": -4}",
           "decoder.1", "'num_sparse_decoder_layers' = -4 is negative");
    /* the case that overflowed: a huge flat index minus a negative num_layers */
    EXPECT("{\"model_type\": \"switch_transformers\", \"num_layers\": -1}", "9223372036854775807",
           "'num_layers' = -1 is negative");
}

static void test_huge_layers(void) {
    char json[512], words[128];
    const char *huge[4] = {"2147483648", "9223372036854775806", "9223372036854775807",
                           "4611686018427387904"};
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        snprintf(json, sizeof json, "{\"model_type\": \"%s\"%s}", fam[i].type, fam[i].extra);
        for (int h = 0; h < 4; h++) {
            snprintf(words, sizeof words, "layer %s is out of range", huge[h]);
            EXPECT(json, huge[h], words);
        }
        EXPECT(json, "9223372036854775808", "bad --layer '9223372036854775808'"); /* > int64 */
        EXPECT(json, "99999999999999999999999", "bad --layer");
    }
    const char *sw = "{\"model_type\": \"switch_transformers\"}";
    EXPECT(sw, "9223372036854775807",
           "layer 9223372036854775807 is out of range: the model has 12 encoder and 12 decoder "
           "layers (num_layers, num_decoder_layers), flat index 0..23");
    EXPECT(sw, "24", "layer 24 is out of range: the model has 12 encoder and 12 decoder");
    EXPECT(sw, "decoder.9223372036854775807", "layer 9223372036854775807 is out of range");
    EXPECT(sw, "encoder.9223372036854775807", "layer 9223372036854775807 is out of range");
    /* the flat index still reaches the decoder */
    hf_plan p;
    char err[512];
    CHECK_INT(plan(sw, "13", &p, err, sizeof err), 0);
    CHECK(strcmp(p.layer_name, "decoder layer 1") == 0 && strstr(p.prefix[0], "decoder.block.1.") != NULL);
    CHECK_INT(plan(sw, "1", &p, err, sizeof err), 0);
    CHECK(strcmp(p.layer_name, "encoder layer 1") == 0);
    /* in range, defaults filled in */
    CHECK_INT(plan("{\"model_type\": \"olmoe\"}", "15", &p, err, sizeof err), 0);
    CHECK(p.cfg.d_model == 2048 && p.cfg.n_experts == 64 && p.cfg.top_k == 8);
    EXPECT("{\"model_type\": \"olmoe\"}", "16", "layer 16 is out of range: the model has 16 layers");
}

static void test_nul(void) {
    EXPECT("{\"model_type\": \"olmoe\\u0000anything\"}", "0", "'model_type' holds a NUL character");
    EXPECT("{\"model_type\": \"olmoe\", \"hidden_act\": \"silu\\u0000\"}", "0",
           "'hidden_act' holds a NUL character");
    EXPECT("{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"topk_method\": "
           "\"greedy\\u0000\"}", "1", "'topk_method' holds a NUL character");
    /* a key with a NUL is another key: the default applies */
    hf_plan p;
    char err[512];
    CHECK_INT(plan("{\"model_type\": \"olmoe\", \"num_experts\\u0000\": 4}", "0", &p, err, sizeof err), 0);
    CHECK_INT(p.cfg.n_experts, 64);
}

/* the keys a plan found absent, "key=value key=value ..." ("!" after a null one) */
static const char *took(const hf_plan *p) {
    static char b[2048];
    size_t at = 0;
    b[0] = 0;
    for (int i = 0; i < p->n_defaults && i < HF_MAX_DEFAULTS; i++)
        at += (size_t)snprintf(b + at, sizeof b - at, "%s%s=%s%s", i ? " " : "", p->defaults[i].key,
                               p->defaults[i].value, p->defaults[i].null ? "!" : "");
    return b;
}

static void test_defaults(void) {
    hf_plan p;
    char err[2048];
    CHECK_INT(plan("{\"model_type\": \"olmoe\"}", "0", &p, err, sizeof err), 0);
    CHECK_MSG(!strcmp(took(&p), "hidden_size=2048 intermediate_size=2048 num_experts (or "
                      "num_local_experts)=64 num_experts_per_tok=8 norm_topk_prob=false "
                      "hidden_act=\"silu\" num_hidden_layers=16"), "%s", took(&p));
    CHECK_INT(p.n_layers, 16);
    /* null counts as absent, and says so; a key given is not listed */
    CHECK_INT(plan("{\"model_type\": \"olmoe\", \"hidden_size\": null, \"num_experts\": 4, "
                   "\"num_experts_per_tok\": 2, \"num_hidden_layers\": 2}", "1", &p, err, sizeof err), 0);
    CHECK_MSG(!strcmp(took(&p), "hidden_size=2048! intermediate_size=2048 norm_topk_prob=false "
                      "hidden_act=\"silu\""), "%s", took(&p));
    /* nested keys by their path; floats in their shortest form */
    CHECK_INT(plan("{\"model_type\": \"gpt_oss\"}", "0", &p, err, sizeof err), 0);
    CHECK_MSG(strstr(took(&p), " swiglu_alpha=1.702 swiglu_limit=7 "), "%s", took(&p));
    CHECK_INT(plan("{\"model_type\": \"llama4\", \"text_config\": {\"hidden_size\": 8}}", "0", &p,
                   err, sizeof err), 0);
    CHECK_MSG(!strncmp(took(&p), "text_config.intermediate_size=8192 ", 35), "%s", took(&p));
    CHECK_INT(plan("{\"model_type\": \"qwen3_omni_moe\", \"talker_config\": {\"text_config\": "
                   "{\"num_experts\": 8}}}", "talker.1", &p, err, sizeof err), 0);
    CHECK_MSG(strstr(took(&p), "talker_config.text_config.moe_intermediate_size=384") &&
              !strstr(took(&p), "num_experts ("), "%s", took(&p));
    /* three spellings of one count: a default only when all are absent */
    CHECK_INT(plan("{\"model_type\": \"step3p5\", \"moe_num_experts\": 16}", "3", &p, err, sizeof err), 0);
    CHECK(p.cfg.n_experts == 16 && !strstr(took(&p), "experts ("));
    CHECK_INT(plan("{\"model_type\": \"step3p5\", \"num_local_experts\": 12}", "3", &p, err, sizeof err), 0);
    CHECK(p.cfg.n_experts == 12 && !strstr(took(&p), "n_routed_experts"));
    CHECK_INT(plan("{\"model_type\": \"step3p5\"}", "3", &p, err, sizeof err), 0);
    CHECK_MSG(p.cfg.n_experts == 288 && strstr(took(&p), "n_routed_experts (or num_local_experts)=288"),
              "%s", took(&p));
    /* more keys than the list holds: counted, the first HF_MAX_DEFAULTS kept */
    hf_ctx c;
    char key[16];
    memset(&p, 0, sizeof p);
    c.err = err, c.n = sizeof err, c.bad = 0, c.p = &p, c.root = NULL;
    for (int i = 0; i < HF_MAX_DEFAULTS + 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        hf_took_i(&c, NULL, key, NULL, i);
    }
    hf_took_i(&c, NULL, "k0", NULL, 0); /* once per name */
    CHECK(p.n_defaults == HF_MAX_DEFAULTS + 8 && !strcmp(p.defaults[HF_MAX_DEFAULTS - 1].key, "k31"));
}

/* what a failed plan says it was about, and the layer count it had read */
static void test_why(void) {
    hf_plan p;
    char err[2048];
    CHECK(plan("{\"model_type\": \"olmoe\"}", "16", &p, err, sizeof err) == -1 &&
          p.why == HF_BAD_LAYER && p.n_layers == 16);
    CHECK(plan("{\"model_type\": \"olmoe\"}", "x", &p, err, sizeof err) == -1 && p.why == HF_BAD_LAYER);
    CHECK(plan("{\"model_type\": \"deepseek_v3\"}", "1", &p, err, sizeof err) == -1 &&
          p.why == HF_NOT_MOE && p.n_layers == 61 && strstr(err, "dense"));
    CHECK(plan("{\"model_type\": \"deepseek_v4\"}", "1", &p, err, sizeof err) == -1 &&
          p.why == HF_NOT_MOE && strstr(err, "hash-routed"));
    CHECK(plan("{\"model_type\": \"olmoe\", \"hidden_size\": \"x\"}", "0", &p, err, sizeof err) ==
          -1 && p.why == HF_BAD_CONFIG && p.n_layers == -1);
    CHECK(plan("{\"model_type\": \"switch_transformers\"}", "24", &p, err, sizeof err) == -1 &&
          p.why == HF_BAD_LAYER && p.n_layers == 24);
    /* the unknown model_type message lists every family, however long the list */
    CHECK(plan("{\"model_type\": \"nope\"}", "0", &p, err, sizeof err) == -1 && p.why == HF_BAD_CONFIG);
    const char *at = strstr(err, "supported:");
    size_t words = 0;
    for (; at && *at; at++) words += *at == ' ';
    CHECK_MSG(words == HF_N_FAMILIES && strstr(err, " switch_transformers"), "%zu words: %s", words, err);
}

int main(void) {
    (void)hf_bind; (void)hf_unbind; /* the binding half of hf_config.h is tested by test_golden */
    test_negative_counts();
    test_huge_layers();
    test_nul();
    test_defaults();
    test_why();
    return check_summary();
}
