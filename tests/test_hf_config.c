/* test_hf_config.c - the config.json mapping of the CLI (examples/hf_config.h) on hostile
   values: negative layer counts in every family, layer indices up to and beyond int64 (no
   arithmetic before the range check: UBSan watches in the sanitizer build), strings with an
   escaped NUL. Each case checks the result and the words of the message.

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

int main(void) {
    (void)hf_bind; (void)hf_unbind; /* the binding half of hf_config.h is tested by test_golden */
    test_negative_counts();
    test_huge_layers();
    test_nul();
    return check_summary();
}
