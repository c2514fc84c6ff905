/* fuzz_config.c - libFuzzer target: config.json to moe_config and a layer's tensor list
   (examples/hf_config.h). The input's first line is the --layer argument, the rest the file. */
#define _DEFAULT_SOURCE
#define MOE_IMPLEMENTATION
#include "../../moe.h"
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#include "../../examples/hf_config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024], layer[64];
    const uint8_t *nl = (const uint8_t *)memchr(data, '\n', size < 64 ? size : 63);
    size_t ll = nl ? (size_t)(nl - data) : 0, i;
    mio_json_doc doc;
    hf_plan plan;
    unsigned char *p;
    if (!nl) return 0;
    memcpy(layer, data, ll);
    layer[ll] = '\0';
    p = fuzz_copy(nl + 1, size - ll - 1);
    if (!p) return 0;
    if (mio_json_parse(&doc, p, size - ll - 1, "config.json", err, sizeof err) == MIO_OK) {
        if (hf_plan_layer(&plan, mio_json_root(&doc), layer, err, sizeof err) == 0) {
            const moe_config *c = &plan.cfg;
            FUZZ_ASSERT(plan.n > 0 && plan.n <= HF_MAX_TENSORS && plan.n_prefix >= 1 &&
                        plan.n_prefix <= HF_MAX_PREFIX);
            FUZZ_ASSERT(c->d_model > 0 && c->d_ff > 0 && c->n_experts > 0 && c->top_k > 0 &&
                        c->top_k <= c->n_experts);
            for (i = 0; i < (size_t)plan.n; i++) {
                FUZZ_ASSERT(plan.t[i].rank >= 1 && plan.t[i].rank <= 3);
                FUZZ_ASSERT(!plan.t[i].per_expert || strstr(plan.t[i].name, "{e}"));
            }
            fuzz_sink += (unsigned)moe_config_check(c);
        } else {
            FUZZ_ASSERT(err[0] != '\0');
        }
        mio_json_free(&doc);
    }
    free(p);
    return 0;
}
