/* fuzz_gguf.c - libFuzzer target: a GGUF file (examples/moe_gguf.h) from memory, then the MoE
   layer of blocks 0 to 2. On success every metadata value is walked (arrays through the
   iterator, nested ones too) and every tensor's bytes read; a layer that plans must have sizes
   moe.h can take and views inside the input. Every failure must come with a message. */
#define _DEFAULT_SOURCE
#define MOE_IMPLEMENTATION
#include "../../moe.h"
#define MOE_IO_IMPLEMENTATION
#include "../../examples/moe_io.h"
#define MOE_GGUF_IMPLEMENTATION
#include "../../examples/moe_gguf.h"
#include "fuzz.h"

static int inside(const void *p, size_t n, const unsigned char *b, size_t len) {
    const unsigned char *q = (const unsigned char *)p;
    return n == 0 || (q >= b && q <= b + len && n <= (size_t)(b + len - q));
}

static void walk(const mgg_value *v, int depth, const unsigned char *b, size_t len) {
    mgg_iter it;
    mgg_value e;
    uint64_t n = 0;
    int64_t i;
    double f;
    FUZZ_ASSERT(depth <= MGG_MAX_DEPTH);
    if (v->type == MGG_ARRAY) {
        mgg_iter_init(&it, v);
        while (mgg_iter_next(&it, &e)) {
            FUZZ_ASSERT(e.type == v->elem_type);
            walk(&e, depth + 1, b, len);
            n++;
        }
        FUZZ_ASSERT(n == v->len);
    } else if (v->type == MGG_STRING) {
        FUZZ_ASSERT(depth == 0 ? v->p[v->len] == 0 : inside(v->p, (size_t)v->len, b, len));
        for (uint64_t k = 0; k < v->len; k++) fuzz_sink += v->p[k];
    } else {
        FUZZ_ASSERT(inside(v->p, v->size, b, len));
        if (mgg_value_i64(v, &i) == MIO_OK) fuzz_sink += (unsigned)i;
        if (mgg_value_f64(v, &f) == MIO_OK) fuzz_sink += f != f;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MIO_ERR_SIZE];
    mgg_file g;
    unsigned char *p = fuzz_copy(data, size);
    if (!p) return 0;
    if (mgg_open_mem(&g, p, size, "fuzz.gguf", err, sizeof err) == MIO_OK) {
        size_t i, j;
        FUZZ_ASSERT(!err[0] && g.hdr_len <= size && g.data_start >= g.hdr_len);
        for (i = 0; i < g.n_kv; i++) {
            FUZZ_ASSERT(mgg_find(&g, g.kv[i].key) == &g.kv[i]);
            walk(&g.kv[i].v, 0, p, size);
        }
        for (i = 0; i < g.n_tensors; i++) {
            const mgg_tensor *t = &g.tensors[i];
            const unsigned char *d = (const unsigned char *)t->t.data;
            FUZZ_ASSERT(mgg_find_tensor(&g, t->t.name) == t);
            FUZZ_ASSERT(inside(d, t->t.nbytes, p, size) && t->rel_offset % g.alignment == 0);
            FUZZ_ASSERT((uint64_t)t->t.nelem / (uint64_t)mgg_type_block(t->type) * (uint64_t)mgg_type_size(t->type) == t->t.nbytes);
            for (j = 0; j < t->t.nbytes; j += 61) fuzz_sink += d[j];
        }
        for (int64_t layer = 0; layer < 3; layer++) {
            mgg_layer L;
            if (mgg_plan_layer(&g, layer, &L, err, sizeof err) == MIO_OK) {
                const moe_config *c = &L.cfg;
                FUZZ_ASSERT(c->d_model > 0 && c->d_ff > 0 && c->n_experts > 0 && c->top_k > 0 && c->top_k <= c->n_experts);
                FUZZ_ASSERT(L.n_used >= 2 && L.w.router.data);
                for (int k = 0; k < L.n_used; k++) FUZZ_ASSERT(inside(L.used[k]->t.data, L.used[k]->t.nbytes, p, size));
                fuzz_sink += (unsigned)moe_config_check(c);
                mgg_layer_free(&L);
            } else {
                FUZZ_ASSERT(err[0] != '\0' && L.n_used == 0);
            }
        }
    } else {
        FUZZ_ASSERT(err[0] != '\0' && g.kv == NULL);
    }
    mgg_close(&g);
    free(p);
    return 0;
}
