/* fuzz_libfuzzer_io.c - libFuzzer harness for the moe_io.h parsers. Not part of `make test`.

   The first input byte picks the parser (0: JSON, 1: safetensors, 2: npy; taken modulo 3), the
   rest is the file. Each parser gets an exactly sized heap copy so AddressSanitizer catches any
   read past the end; on success everything it returns is walked.

     clang -g -O1 -fsanitize=fuzzer,address,undefined -Iexamples tests/fuzz_libfuzzer_io.c -o fuzz_io
     ./fuzz_io -max_total_time=180 SEEDS

   where SEEDS is a directory of tests/corpus/io files, each prefixed with its selector byte
   (printf '\0' for .json, '\1' for .safetensors, '\2' for .npy, then the file).

   A crash leaves crash-<sha1>; strip its first byte and add it to tests/corpus/io/ under the
   matching extension once fixed, so test_io_fuzz replays it. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#define MOE_IO_IMPLEMENTATION
#include "../examples/moe_io.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void fuzz_json(const unsigned char *p, size_t n)
{
    char err[MIO_ERR_SIZE];
    mio_json_doc doc;
    if (mio_json_parse(&doc, p, n, "fuzz.json", err, sizeof err) == MIO_OK) {
        const mio_json *root = mio_json_root(&doc), *c;
        size_t i;
        int64_t v = 0;
        double d = 0;
        const char *s = NULL;
        for (i = 0; i < doc.n_nodes; i++) {
            const mio_json *j = &doc.nodes[i];
            if (j->type == MIO_JSON_STRING) sink += (unsigned char)j->str[j->str_len];
            if (j->key) sink += (unsigned char)j->key[j->key_len];
            for (c = mio_json_child(j); c; c = mio_json_next(c)) sink++;
            if (mio_json_as_i64(j, &v) == MIO_OK) sink += (unsigned)v;
        }
        mio_json_get_i64(root, "hidden_size", &v, err, sizeof err);
        mio_json_get_f64(root, "rms_norm_eps", &d, err, sizeof err);
        mio_json_get_str(root, "model_type", &s, err, sizeof err);
        sink += (unsigned)mio_json_len(mio_json_at(root, mio_json_len(root) / 2));
    } else if (err[0] == '\0') {
        abort(); /* every error must come with a message */
    }
    mio_json_free(&doc);
}

static void fuzz_st(const unsigned char *p, size_t n)
{
    char err[MIO_ERR_SIZE];
    mio_safetensors st;
    if (mio_safetensors_open_mem(&st, p, n, "fuzz.safetensors", err, sizeof err) == MIO_OK) {
        size_t i, j;
        for (i = 0; i < st.n_tensors; i++) {
            const mio_tensor *t = &st.tensors[i];
            const unsigned char *d = (const unsigned char *)t->data;
            if (mio_safetensors_find(&st, t->name) != t) abort();
            if ((uint64_t)t->nelem * (uint64_t)mio_dtype_bits(t->dtype) / 8 != t->nbytes) abort();
            for (j = 0; j < t->nbytes; j++) sink += d[j];
        }
    } else if (err[0] == '\0') {
        abort();
    }
    mio_safetensors_close(&st);
}

static void fuzz_npy(const unsigned char *p, size_t n)
{
    char err[MIO_ERR_SIZE];
    float *y = NULL;
    size_t r = 0, c = 0, i;
    if (mio_npy_read_mem(p, n, "fuzz.npy", &y, &r, &c, err, sizeof err) == MIO_OK) {
        for (i = 0; i < r * c; i++) sink += (unsigned)(y[i] != y[i]);
    } else if (err[0] == '\0' || y != NULL) {
        abort();
    }
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy;
    size_t n;
    if (size == 0) return 0;
    n = size - 1;
    copy = (unsigned char *)malloc(n ? n : 1);
    if (!copy) return 0;
    if (n) memcpy(copy, data + 1, n);
    switch (data[0] % 3) {
    case 0: fuzz_json(copy, n); break;
    case 1: fuzz_st(copy, n); break;
    default: fuzz_npy(copy, n); break;
    }
    free(copy);
    return 0;
}
