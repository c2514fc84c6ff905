/* fuzz_safetensors.c - libFuzzer target: a safetensors file (streamed header, tensor table). */
#define _DEFAULT_SOURCE
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MIO_ERR_SIZE];
    mio_safetensors st;
    unsigned char *p = fuzz_copy(data, size);
    if (!p) return 0;
    if (mio_safetensors_open_mem(&st, p, size, "fuzz.safetensors", err, sizeof err) == MIO_OK) {
        size_t i, j;
        for (i = 0; i < st.n_tensors; i++) {
            const mio_tensor *t = &st.tensors[i];
            const unsigned char *d = (const unsigned char *)t->data;
            FUZZ_ASSERT(mio_safetensors_find(&st, t->name) == t);
            FUZZ_ASSERT((uint64_t)t->nelem * (uint64_t)mio_dtype_bits(t->dtype) / 8 == t->nbytes);
            FUZZ_ASSERT(t->offset >= st.data_start && t->offset + t->nbytes <= size);
            FUZZ_ASSERT(i == 0 || strcmp(st.tensors[i - 1].name, t->name) < 0);
            for (j = 0; j < t->nbytes; j++) fuzz_sink += d[j];
        }
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    mio_safetensors_close(&st);
    free(p);
    return 0;
}
