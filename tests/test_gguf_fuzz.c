/* test_gguf_fuzz.c - bounded, deterministic mutation fuzzing of the GGUF reader and the MoE layer
   planner (examples/moe_gguf.h), on the fixtures of tests/gguf/ and the well-formed files of
   tests/corpus/gguf/ (run from the repository root).

   Each input is a seed file mutated 1 to 4 times: bit flips and interesting bytes (mostly in
   the header, where the parser looks), a 4- or 8-byte little-endian integer written anywhere in
   the header (so counts, lengths, types, dims and offsets take values such as 0, 2^32, 2^63,
   2^64 - 1 or their neighbours), truncation, extension, insertion, deletion and splicing from
   another seed. It is parsed from an exactly sized heap copy (AddressSanitizer sees any read
   past the end); then, on success, every metadata value is walked through the iterator (nested
   arrays too), every tensor's bytes are checked to lie in the buffer, and blocks 0 to 2 are
   planned: a plan that succeeds must give sizes moe.h can take and views inside the buffer; a
   failure must come with a message. Fixed seed and counts: a few seconds with ASan + UBSan.
   Last line: "N passed, M failed". */
#define _DEFAULT_SOURCE 1
#define MOE_IMPLEMENTATION
#include "moe.h"
#define MOE_IO_IMPLEMENTATION
#include "moe_io.h"
#define MOE_GGUF_IMPLEMENTATION
#include "moe_gguf.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define ITERS 24000
#define MAX_SEEDS 64
#define SLACK 256 /* bytes a mutation may add */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void) { /* xorshift64*: the same inputs every run */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static size_t rnd(size_t n) { return n ? (size_t)(rng() % n) : 0; }

typedef struct seed {
    unsigned char *p;
    size_t len, hdr; /* bytes; header length (where most mutations go) */
} seed;

static seed seeds[MAX_SEEDS];
static int n_seeds, n_small;
static volatile unsigned sink;

static void add_seed(const char *path) {
    FILE *f = fopen(path, "rb");
    long n;
    char err[MIO_ERR_SIZE];
    mgg_file g;
    seed *s;
    if (!f || n_seeds == MAX_SEEDS) {
        if (f) fclose(f);
        return;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = &seeds[n_seeds];
    s->p = (unsigned char *)malloc((size_t)n);
    s->len = fread(s->p, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    fclose(f);
    if (mgg_open_mem(&g, s->p, s->len, path, err, sizeof err) != MIO_OK) { /* a seed must be valid */
        free(s->p);
        return;
    }
    s->hdr = g.hdr_len;
    mgg_close(&g);
    n_seeds++;
}

static void load_seeds(void) {
    static const char *const dirs[2] = {"tests/gguf", "tests/corpus/gguf"};
    char path[512];
    for (int d = 0; d < 2; d++) {
        DIR *dir = opendir(dirs[d]);
        struct dirent *e;
        if (!dir) continue;
        while ((e = readdir(dir)) != NULL) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 5, ".gguf")) continue;
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            add_seed(path);
        }
        closedir(dir);
    }
    /* small seeds first: most iterations use them (copying a 300 KB fixture each time is slow) */
    for (int i = 0; i < n_seeds; i++)
        for (int j = i + 1; j < n_seeds; j++)
            if (seeds[j].len < seeds[i].len) {
                seed t = seeds[i];
                seeds[i] = seeds[j], seeds[j] = t;
            }
    for (n_small = 0; n_small < n_seeds && seeds[n_small].len <= 16384; n_small++) continue;
}

static const uint64_t interesting[] = {0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 14, 16, 24, 25, 30, 31, 32, 33, 39, 41, 42, 63, 64,
                                       65, 127, 128, 255, 256, 65535, 65536, 0x7fffffffULL, 0x80000000ULL,
                                       0xffffffffULL, 0x100000000ULL, 1ULL << 40, 1ULL << 61, 1ULL << 62,
                                       0x7fffffffffffffffULL, 0x8000000000000000ULL, 0xffffffffffffffffULL};

/* a position: in the header 7 times out of 8 */
static size_t pos_in(const unsigned char *p, size_t len, size_t hdr) {
    (void)p;
    if (!len) return 0;
    return rng() % 8 && hdr ? rnd(hdr < len ? hdr : len) : rnd(len);
}

static size_t mutate(unsigned char *b, size_t len, size_t cap, size_t hdr, const seed *other) {
    int n = 1 + (int)rnd(4);
    for (int k = 0; k < n; k++) {
        size_t pos = pos_in(b, len, hdr), m, src;
        switch (rnd(9)) {
        case 0: /* bit flip */
            if (len) b[pos] ^= (unsigned char)(1u << rnd(8));
            break;
        case 1: /* a byte */
            if (len) b[pos] = (unsigned char)(rng() & 1 ? interesting[rnd(sizeof interesting / 8)] : rng());
            break;
        case 2:
        case 3: { /* a 4- or 8-byte integer: interesting, or the one there plus or minus a little */
            size_t w = rng() & 1 ? 4 : 8;
            uint64_t v = 0;
            if (len < w) break;
            if (pos > len - w) pos = len - w;
            for (size_t i = 0; i < w; i++) v |= (uint64_t)b[pos + i] << (8 * i);
            v = rng() % 3 ? interesting[rnd(sizeof interesting / 8)] : v + rnd(5) - 2;
            for (size_t i = 0; i < w; i++) b[pos + i] = (unsigned char)(v >> (8 * i));
            break;
        }
        case 4: /* truncate */
            len = rng() & 1 ? rnd(len + 1) : len - rnd(len < 64 ? len + 1 : 64);
            break;
        case 5: /* extend */
            for (m = 1 + rnd(16); m-- && len < cap;) b[len++] = (unsigned char)rng();
            break;
        case 6: /* splice a chunk of the other seed's header over this one */
            if (other->hdr && len) {
                src = rnd(other->hdr);
                m = 1 + rnd(other->hdr - src < 64 ? other->hdr - src : 64);
                if (m > len - pos) m = len - pos;
                memcpy(b + pos, other->p + src, m);
            }
            break;
        case 7: /* insert a chunk of the other seed */
            if (other->hdr) {
                src = rnd(other->hdr);
                m = 1 + rnd(other->hdr - src < 32 ? other->hdr - src : 32);
                if (m > cap - len) m = cap - len;
                memmove(b + pos + m, b + pos, len - pos);
                memcpy(b + pos, other->p + src, m);
                len += m;
            }
            break;
        default: /* delete a range */
            if (pos < len) {
                m = 1 + rnd(len - pos < 32 ? len - pos : 32);
                memmove(b + pos, b + pos + m, len - pos - m);
                len -= m;
            }
            break;
        }
    }
    return len;
}

static int inside(const void *p, size_t n, const unsigned char *b, size_t len) {
    const unsigned char *q = (const unsigned char *)p;
    return n == 0 || (q >= b && q <= b + len && n <= (size_t)(b + len - q));
}

/* walks a value: every string byte and number, nested arrays through the iterator */
static int walk(const mgg_value *v, int depth, const unsigned char *b, size_t len) {
    mgg_iter it;
    mgg_value e;
    uint64_t n = 0;
    int64_t i;
    double f;
    if (depth > MGG_MAX_DEPTH + 1) return 0;
    if (v->type == MGG_ARRAY) {
        if (!inside(v->p, 0, b, len)) return 0;
        mgg_iter_init(&it, v);
        while (mgg_iter_next(&it, &e)) {
            if (e.type != v->elem_type || !walk(&e, depth + 1, b, len)) return 0;
            n++;
        }
        return n == v->len;
    }
    if (v->type == MGG_STRING) {
        if (depth > 0 && !inside(v->p, (size_t)v->len, b, len)) return 0;
        if (v->len) sink += v->p[v->len - 1];
        return 1;
    }
    if (!inside(v->p, v->size, b, len)) return 0;
    if (mgg_value_i64(v, &i) == MIO_OK) sink += (unsigned)i;
    if (mgg_value_f64(v, &f) == MIO_OK) sink += f != f;
    return 1;
}

static int err_ok(int rc, const char *err, const char *name) {
    return rc < 0 && rc >= MIO_ERR_UNSUPPORTED && err[0] && strlen(err) < MIO_ERR_SIZE && !strncmp(err, name, strlen(name));
}

static int check_plan(mgg_file *g, const unsigned char *b, size_t len) {
    char err[MIO_ERR_SIZE];
    for (int64_t layer = 0; layer < 3; layer++) {
        mgg_layer L;
        int rc = mgg_plan_layer(g, layer, &L, err, sizeof err);
        if (rc) {
            if (!err_ok(rc, err, "fuzz.gguf") || L.n_used) return 0;
            continue;
        }
        {
            const moe_config *c = &L.cfg;
            if (err[0] || c->d_model <= 0 || c->d_ff <= 0 || c->n_experts <= 0 || c->top_k <= 0 || c->top_k > c->n_experts ||
                L.n_used < 2 || !L.w.router.data || !(L.w.down.data || L.w.down.per_expert))
                return 0;
            for (int i = 0; i < L.n_used; i++)
                if (!inside(L.used[i]->t.data, L.used[i]->t.nbytes, b, len)) return 0;
            sink += (unsigned)moe_config_check(c);
        }
        mgg_layer_free(&L);
    }
    return 1;
}

static int run_one(const unsigned char *p, size_t len) {
    char err[MIO_ERR_SIZE];
    unsigned char *b = (unsigned char *)malloc(len ? len : 1);
    mgg_file g;
    int ok, rc;
    if (len) memcpy(b, p, len);
    rc = mgg_open_mem(&g, b, len, "fuzz.gguf", err, sizeof err);
    if (rc == MIO_OK) {
        ok = !err[0] && g.hdr_len <= len && g.data_start >= g.hdr_len;
        for (size_t i = 0; i < g.n_kv && ok; i++) ok = g.kv[i].key[0] && mgg_find(&g, g.kv[i].key) && walk(&g.kv[i].v, 0, b, len);
        for (size_t i = 0; i < g.n_tensors && ok; i++) {
            const mgg_tensor *t = &g.tensors[i];
            ok = mgg_find_tensor(&g, t->t.name) == t && inside(t->t.data, t->t.nbytes, b, len) &&
                 t->t.offset == g.data_start + t->rel_offset && t->rel_offset % g.alignment == 0 &&
                 t->n_dims >= 0 && t->n_dims <= MGG_MAX_DIMS && mgg_type_block(t->type) > 0;
            if (ok && t->t.nbytes) sink += ((const unsigned char *)t->t.data)[0] + ((const unsigned char *)t->t.data)[t->t.nbytes - 1];
        }
        ok = ok && check_plan(&g, b, len);
    } else {
        ok = err_ok(rc, err, "fuzz.gguf") && g.kv == NULL && g.tensors == NULL;
    }
    mgg_close(&g);
    free(b);
    return ok;
}

int main(void) {
    size_t opened = 0, planned = 0;
    unsigned char *b;
    load_seeds();
    CHECK_MSG(n_seeds >= 20 && n_small >= 10, "%d seeds (%d small): run from the repository root after tests/gen_gguf.py", n_seeds, n_small);
    if (!n_seeds) return check_summary();
    for (int i = 0; i < n_seeds; i++) CHECK(run_one(seeds[i].p, seeds[i].len));
    b = (unsigned char *)malloc(seeds[n_seeds - 1].len + SLACK);
    for (int it = 0; it < ITERS; it++) {
        const seed *s = &seeds[it % 8 && n_small ? rnd((size_t)n_small) : rnd((size_t)n_seeds)];
        const seed *o = &seeds[rnd((size_t)n_seeds)];
        size_t len;
        char err[MIO_ERR_SIZE];
        mgg_file g;
        memcpy(b, s->p, s->len);
        len = mutate(b, s->len, s->len + SLACK, s->hdr, o);
        if (run_one(b, len)) {
            n_pass++;
        } else {
            n_fail++;
            if (n_fail <= 10) printf("FAIL iteration %d (%zu bytes, from a seed of %zu)\n", it, len, s->len);
        }
        if (mgg_open_mem(&g, b, len, "x", err, sizeof err) == MIO_OK) {
            mgg_layer L;
            opened++;
            for (int64_t layer = 0; layer < 3; layer++)
                if (mgg_plan_layer(&g, layer, &L, err, sizeof err) == MIO_OK) planned++, mgg_layer_free(&L);
        }
        mgg_close(&g);
    }
    printf("%d iterations on %d seeds: %zu opened, %zu layers planned\n", ITERS, n_seeds, opened, planned);
    /* the loop must reach both sides: valid files and every kind of refusal */
    CHECK_MSG(opened > ITERS / 20 && opened < ITERS - ITERS / 20, "%zu of %d mutated files opened", opened, ITERS);
    CHECK_MSG(planned > 0, "no mutated file gave a layer");
    for (int i = 0; i < n_seeds; i++) free(seeds[i].p);
    free(b);
    return check_summary();
}
