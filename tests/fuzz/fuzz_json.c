/* fuzz_json.c - libFuzzer target: the JSON DOM parser (config.json) and its getters. */
#define _DEFAULT_SOURCE
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MIO_ERR_SIZE];
    mio_json_doc doc;
    unsigned char *p = fuzz_copy(data, size);
    if (!p) return 0;
    if (mio_json_parse(&doc, p, size, "fuzz.json", err, sizeof err) == MIO_OK) {
        const mio_json *root = mio_json_root(&doc), *c;
        int64_t v = 0;
        double d = 0;
        const char *s = NULL;
        size_t i, n = 0;
        FUZZ_ASSERT(doc.n_nodes >= 1 && doc.n_nodes <= size / 1 + 1);
        for (i = 0; i < doc.n_nodes; i++) {
            const mio_json *j = &doc.nodes[i];
            if (j->type == MIO_JSON_STRING) fuzz_sink += (unsigned char)j->str[j->str_len];
            if (j->key) fuzz_sink += (unsigned char)j->key[j->key_len];
            n = 0;
            for (c = mio_json_child(j); c; c = mio_json_next(c)) n++;
            FUZZ_ASSERT(n == mio_json_len(j));
            if (mio_json_as_i64(j, &v) == MIO_OK) fuzz_sink += (unsigned)v;
        }
        mio_json_get_i64(root, "hidden_size", &v, err, sizeof err);
        mio_json_get_f64(root, "rms_norm_eps", &d, err, sizeof err);
        if (mio_json_get_str(root, "model_type", &s, err, sizeof err) == MIO_OK)
            fuzz_sink += (unsigned)strlen(s);
        fuzz_sink += (unsigned)mio_json_len(mio_json_at(root, mio_json_len(root) / 2));
    } else {
        FUZZ_ASSERT(err[0] != '\0' && doc.nodes == NULL);
    }
    mio_json_free(&doc);
    free(p);
    return 0;
}
