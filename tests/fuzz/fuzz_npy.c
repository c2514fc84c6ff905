/* fuzz_npy.c - libFuzzer target: the .npy reader (float32 rank 2, and the float64 reference
   path of any rank >= 2 with its shape). */
#define _DEFAULT_SOURCE
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MIO_ERR_SIZE];
    float *y = NULL;
    double *z = NULL;
    size_t r = 0, c = 0, i, shape[MIO_NPY_MAX_RANK], lead = 1;
    int rank = 0, d;
    unsigned char *p = fuzz_copy(data, size);
    if (!p) return 0;
    if (mio_npy_read_mem(p, size, "fuzz.npy", &y, &r, &c, err, sizeof err) == MIO_OK) {
        FUZZ_ASSERT(y != NULL && r * c * 4 <= size);
        for (i = 0; i < r * c; i++) fuzz_sink += (unsigned)(y[i] != y[i]);
    } else {
        FUZZ_ASSERT(err[0] != '\0' && y == NULL);
    }
    MIO_FREE(y);
    if (mio__npy_read_buf(p, size, "fuzz.npy", 1, (void **)&z, &r, &c, &rank, shape, err,
                          sizeof err) == MIO_OK) {
        FUZZ_ASSERT(rank >= 2 && rank <= MIO_NPY_MAX_RANK && shape[rank - 1] == c);
        for (d = 0; d < rank - 1; d++) lead *= shape[d];
        FUZZ_ASSERT(lead == r);
        for (i = 0; i < r * c; i++) fuzz_sink += (unsigned)(z[i] != z[i]);
    } else {
        FUZZ_ASSERT(err[0] != '\0' && z == NULL);
    }
    MIO_FREE(z);
    free(p);
    return 0;
}
