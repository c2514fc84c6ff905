/* load_model - one MoE layer of a Hugging Face checkpoint through moe_model.h: list the model's
   MoE layers, create layer L, run it on X.npy (float32 [..., hidden_size]) and print a checksum.

      build/load_model tests/checkpoints/mixtral 1 tests/checkpoints/mixtral/mixtral.1.x.npy */
#define _DEFAULT_SOURCE 1 /* moe_io.h's implementation needs POSIX 2008: before any include */
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#include "moe_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    char err[MM_ERR_SIZE], name[32];
    mm_model m;
    if (argc != 4) {
        fprintf(stderr, "usage: load_model MODEL_DIR LAYER X.npy\n");
        return 2;
    }
    if (mm_open(&m, argv[1], 0, err, sizeof err)) {
        fprintf(stderr, "load_model: %s\n", err);
        return 1;
    }
    int n = mm_layer_count(&m, err, sizeof err);
    printf("%s: %d layers, MoE:", argv[1], n);
    for (int i = 0; i < n; i++)
        if (!mm_layer_name(&m, i, name, sizeof name) && mm_is_moe(&m, name, NULL, 0) == 1)
            printf(" %s", name);
    printf("\n");

    mm_options opt = {0}; /* zero: the checkpoint's formats, every expert */
    mm_layer_info info;
    moe_layer *layer;
    int r = mm_layer_create(&m, argv[2], &opt, &layer, &info, err, sizeof err);
    mm_close(&m); /* the layer holds its packed copy */
    if (r) {
        fprintf(stderr, "load_model: %s\n", err);
        return 1;
    }

    const moe_config *c = moe_layer_config(layer);
    float *x = NULL;
    int rank;
    size_t shape[MIO_NPY_MAX_RANK], T, d, bytes;
    if (mio_npy_read_nd(argv[3], &x, &rank, shape, &T, &d, err, sizeof err) ||
        d != (size_t)c->d_model) {
        fprintf(stderr, "load_model: %s\n", x ? "X's last dimension is not hidden_size" : err);
        MIO_FREE(x);
        moe_layer_free(layer);
        return 1;
    }
    float *y = malloc(T * d * sizeof *y + 1);
    moe_workspace ws = {0};
    moe_workspace_size(layer, T, &bytes);
    ws.data = malloc(bytes ? bytes : 1), ws.size = bytes;
    r = y && ws.data ? moe_forward(layer, x, T, y, &ws, NULL) : MOE_E_NOMEM;
    if (r == MOE_OK) {
        double s = 0.0;
        for (size_t i = 0; i < T * d; i++) s += fabs((double)y[i]);
        printf("%s %s: %zu tokens, d=%zu, %d experts, top-%d, sum |y| = %.6f\n",
               info.plan.family, info.plan.layer_name, T, d, c->n_experts, c->top_k, s);
    } else {
        fprintf(stderr, "load_model: moe_forward: %s\n", moe_result_string((moe_result)r));
    }
    free(ws.data);
    free(y);
    MIO_FREE(x);
    moe_layer_free(layer);
    return r != MOE_OK;
}
