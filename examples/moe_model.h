/* moe_model.h - one MoE layer of a Hugging Face checkpoint as a moe_layer, for programs that
   embed moe.h: open a model directory, ask which layers are MoE, create layer L with options
   (packed formats, an expert subset). Not part of moe.h, which loads nothing: this is the
   checkpoint side, over moe_io.h (the files) and hf_config.h (config.json -> moe_config and the
   tensor names). build/moe (moe_cli.c) runs its checkpoint layers through it.

   Include it in one C file of the program, after the implementations of moe.h and moe_io.h
   (every function here is static):

      #define _DEFAULT_SOURCE 1                  // moe_io.h's implementation needs it first
      #define MOE_IMPLEMENTATION
      #include "moe.h"
      #define MOE_IO_IMPLEMENTATION
      #include "moe_io.h"
      #include "moe_model.h"

      mm_model m;
      char err[MM_ERR_SIZE];
      if (mm_open(&m, "ckpt", 0, err, sizeof err)) die(err);   // 1: map instead of read
      int n = mm_layer_count(&m, err, sizeof err);               // every layer, dense ones too
      for (int i = 0; i < n; i++) {
          char name[32];
          mm_layer_name(&m, i, name, sizeof name);               // "3", "encoder.1"
          if (mm_is_moe(&m, name, NULL, 0) == 1) printf("%s is MoE\n", name);
      }
      mm_options opt = {0};                      // zero = as the checkpoint, every expert
      moe_layer *layer;
      if (mm_layer_create(&m, "3", &opt, &layer, NULL, err, sizeof err)) die(err);
      mm_close(&m);                              // the layer holds its packed copy
      ... moe_forward(layer, x, T, y, &ws, NULL); moe_layer_free(layer);

   Memory: mm_open reads config.json and the safetensors headers (or the index) only. Each
   mm_layer_create opens the files for itself, hands every source buffer back to the kernel as
   soon as moe.h has packed it (moe_weights.on_packed), and closes them before it returns, so the
   peak is about the packed layer plus one layer's sources at most (MIO_READ copies them in;
   with use_mmap they are mapped and never copied). An expert subset reads only its experts'
   tensors where the checkpoint stores one per expert (fused [E][...] tensors are read whole).

   Messages: every function that can fail fills err (NULL is fine) with a sentence that names
   the file, key, layer or tensor at fault, the same words build/moe prints; one longer than
   err_size is shortened in the middle (" ... "), keeping both ends. MM_ERR_SIZE holds every
   message whose paths are shorter than about 1000 bytes. Nothing is printed, nothing exits.
   An mm_model is not thread-safe; layers made from it are independent of it. */
#ifndef MOE_MODEL_H
#define MOE_MODEL_H

#include "moe.h"
#include "moe_io.h"
#include "hf_config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__GNUC__) || defined(__clang__)
#define MMDEF static __attribute__((unused)) /* a program need not call every function */
#else
#define MMDEF static
#endif

#define MM_ERR_SIZE (MIO_ERR_SIZE + 1024)

/* What a token over an expert's capacity outputs (layers with one: switch_transformers). */
typedef enum mm_drop {
    MM_DROP_DEFAULT = 0,     /* the family's (switch_transformers: zero) */
    MM_DROP_ZERO,            /* 0, transformers since PR #37123 and Mesh TensorFlow */
    MM_DROP_IDENTITY         /* p * x, transformers before it */
} mm_drop;

/* How to build the layer; start from {0}: every field's zero is the default. */
typedef struct mm_options {
    moe_format format;       /* routed experts; MOE_FORMAT_AUTO (0) = as the checkpoint stores
                                them (a bf16 checkpoint packs as bf16) */
    moe_format shared_format; /* shared experts; 0 = as the checkpoint */
    moe_dot dot;             /* MOE_DOT_EXACT (0), or MOE_DOT_BF16 for the sets packed as bf16 */
    int expert_begin;        /* the experts the layer holds: expert_begin .. + expert_count - 1 */
    int expert_count;        /* 0 = all from expert_begin on */
    mm_drop drop;
    /* a host thread pool for the packing and for every forward call on the layer (moe_config's
       parallel_for, pool, pool_threads); NULL: OpenMP. With a pool, mm_layer_info.released is
       0: its on_packed calls may come at once from several threads, and the counting would
       race (the pages are released all the same). */
    void (*parallel_for)(void *pool, int n, moe_task task, void *ctx);
    void *pool;
    int pool_threads;
} mm_options;

typedef struct mm_model {
    char *dir;               /* as given */
    char *config_path;       /* dir/config.json */
    mio_json_doc config;
    mio_model files;         /* the checkpoint's files, headers only (every file a layer may
                                read: a program can check its outputs against them) */
    int how;                 /* MIO_MAP or MIO_READ: how mm_layer_create reaches the sources */
} mm_model;

/* What mm_layer_plan and mm_layer_create report about a layer. */
typedef struct mm_layer_info {
    hf_plan plan;            /* config.json's mapping: family, layer_name, cfg (the options
                                applied), the tensors, a note to show (plan.note), the keys that
                                were absent and the defaults taken (plan.defaults) */
    char prefix[96];         /* mm_layer_create: the prefix the tensors were found under */
    size_t source_bytes;     /* mm_layer_create: bytes of the source tensors it read */
    size_t released;         /* of them, handed back as they were packed (0 with a host pool) */
} mm_layer_info;

/* Opens the model directory dir (config.json, model.safetensors or the index and its shards):
   reads config.json and the checkpoint's headers. use_mmap: 1 = layers map their sources, 0 =
   read them (pread; immune to a file that shrinks). 0, or -1 and err (nothing to close). */
MMDEF int mm_open(mm_model *m, const char *dir, int use_mmap, char *err, size_t err_size);
MMDEF void mm_close(mm_model *m);      /* a closed or zeroed model is fine */

/* The layers of every stack (dense ones too), or -1 and err if config.json does not say. */
MMDEF int mm_layer_count(const mm_model *m, char *err, size_t err_size);
/* The name of layer i < mm_layer_count, as mm_layer_create takes it: "3"; "encoder.1",
   "decoder.0" (switch_transformers); "thinker.2", "talker.0" (qwen3_omni_moe). 0 or -1. */
MMDEF int mm_layer_name(const mm_model *m, int i, char *name, size_t size);
/* 1 if `layer` is a MoE layer that mm_layer_create builds; 0 if not (a dense layer, or one moe.h
   cannot route: DeepSeek-V4's token-id hash layers), with the reason in err; -1 for an error
   (a malformed or out-of-range layer, a bad config.json), with the message. */
MMDEF int mm_is_moe(const mm_model *m, const char *layer, char *err, size_t err_size);

/* The plan of `layer` with the options applied (info->plan.cfg is what mm_layer_create passes to
   moe_layer_create), without reading a tensor: its sizes, to check an input first. 0 or -1. */
MMDEF int mm_layer_plan(const mm_model *m, const char *layer, const mm_options *opt,
                        mm_layer_info *info, char *err, size_t err_size);
/* Creates the moe_layer of `layer` (opt NULL = defaults) into *out (NULL on failure); info, if
   not NULL, receives its plan and what was read. 0, or -1 and err. */
MMDEF int mm_layer_create(const mm_model *m, const char *layer, const mm_options *opt,
                          moe_layer **out, mm_layer_info *info, char *err, size_t err_size);

/* ---- implementation ---- */

/* Character k of the strings s[0..) joined. */
static char mm__char(const char *const *s, const size_t *len, size_t k) {
    int i = 0;
    while (k >= len[i]) k -= len[i++];
    return s[i][k];
}

/* err = the strings a, b, c, d (NULL: none) joined, shortened in the middle when they do not
   fit (moe_io.h's rule: the subject at the start and the reason at the end both survive). */
static void mm__join4(char *err, size_t n, const char *a, const char *b, const char *c,
                      const char *d) {
    const char *s[4];
    size_t len[4], total = 0, at = 0, k, head, tail;
    if (!err || !n) return;
    s[0] = a ? a : "", s[1] = b ? b : "", s[2] = c ? c : "", s[3] = d ? d : "";
    for (int i = 0; i < 4; i++) total += len[i] = strlen(s[i]);
    if (total < n || n <= 6) {
        for (k = 0; k < total && k < n - 1; k++) err[k] = mm__char(s, len, k);
        err[k] = '\0';
        return;
    }
    head = (n - 6) / 2, tail = n - 6 - head;
    for (k = 0; k < head; k++) err[at++] = mm__char(s, len, k);
    memcpy(err + at, " ... ", 5), at += 5;
    for (k = total - tail; k < total; k++) err[at++] = mm__char(s, len, k);
    err[at] = '\0';
}

static void mm__join(char *err, size_t n, const char *a, const char *b, const char *c) {
    mm__join4(err, n, a, b, c, NULL);
}

static void mm__say(char *err, size_t n, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* A message from short parts (names, numbers): formatted, then joined as one string. */
static void mm__say(char *err, size_t n, const char *fmt, ...) {
    char b[MM_ERR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    mm__join(err, n, b, NULL, NULL);
}

static char *mm__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = (char *)MIO_MALLOC(n);
    if (p) memcpy(p, s, n);
    return p;
}

MMDEF void mm_close(mm_model *m) {
    if (!m) return;
    if (m->dir) mio_model_close(&m->files); /* open exactly when dir is set */
    mio_json_free(&m->config);
    MIO_FREE(m->dir);
    MIO_FREE(m->config_path);
    memset(m, 0, sizeof *m);
}

MMDEF int mm_open(mm_model *m, const char *dir, int use_mmap, char *err, size_t err_size) {
    char e[MIO_ERR_SIZE];
    struct stat st;
    size_t n;
    if (err && err_size) err[0] = '\0';
    if (!m || !dir) {
        mm__join(err, err_size, "mm_open: NULL argument", NULL, NULL);
        return -1;
    }
    memset(m, 0, sizeof *m);
    m->how = use_mmap ? MIO_MAP : MIO_READ;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        mm__join(err, err_size, "model directory '", dir, "' not found (or not a directory)");
        return -1;
    }
    n = strlen(dir);
    m->config_path = (char *)MIO_MALLOC(n + sizeof "/config.json");
    if (!m->config_path) {
        mm__join(err, err_size, "out of memory", NULL, NULL);
        return -1;
    }
    memcpy(m->config_path, dir, n);
    memcpy(m->config_path + n, "/config.json", sizeof "/config.json");
    if (stat(m->config_path, &st)) {
        mm__join(err, err_size, m->config_path, ": config.json not found", NULL);
        goto fail;
    }
    if (mio_json_parse_file(&m->config, m->config_path, e, sizeof e)) {
        mm__join(err, err_size, e, NULL, NULL);
        goto fail;
    }
    /* headers only: MIO_READ reads no tensor until one is asked for, and this copy never is */
    if (mio_model_open_as(&m->files, dir, MIO_READ, e, sizeof e)) {
        mm__join(err, err_size, e, NULL, NULL);
        goto fail;
    }
    if (!(m->dir = mm__strdup(dir))) {
        mio_model_close(&m->files);
        mm__join(err, err_size, "out of memory", NULL, NULL);
        goto fail;
    }
    return 0;
fail:
    mm_close(m);
    return -1;
}

/* hf_plan_layer with the CLI's wording: config.json's problems name the file. */
static int mm__plan(const mm_model *m, const char *layer, hf_plan *p, char *err, size_t n) {
    char e[MM_ERR_SIZE];
    if (!m || !m->dir || !layer || !p) {
        mm__join(err, n, "mm: NULL argument or a model that is not open", NULL, NULL);
        if (p) memset(p, 0, sizeof *p), p->why = HF_BAD_CONFIG, p->n_layers = -1;
        return -1;
    }
    if (!hf_plan_layer(p, mio_json_root(&m->config), layer, e, sizeof e)) return 0;
    if (!strncmp(e, "config.json", 11)) mm__join(err, n, m->dir, "/", e);
    else mm__join(err, n, e, NULL, NULL);
    return -1;
}

/* The model's stacks (hf_stacks indices; 0 = plain indices) and their layer counts. */
static int mm__stacks(const mm_model *m, int *stack, int64_t *count, char *err, size_t n) {
    const struct hf_family *fam = NULL;
    const char *mt = NULL;
    int ns = 0;
    hf_plan p;
    if (m && m->dir &&
        mio_json_get_str(mio_json_root(&m->config), "model_type", &mt, NULL, 0) == MIO_OK)
        for (size_t i = 0; i < HF_N_FAMILIES && !fam; i++)
            if (!strcmp(mt, hf_table[i].model_type)) fam = &hf_table[i];
    if (!fam) { /* the plan says what is wrong */
        if (!mm__plan(m, "0", &p, err, n)) mm__join(err, n, "mm: no family", NULL, NULL);
        return -1;
    }
    for (int i = 0; i < (int)(sizeof hf_stacks / sizeof *hf_stacks); i++)
        if (fam->stacks ? fam->stacks >> i & 1u : i == 0) stack[ns++] = i;
    for (int s = 0; s < ns; s++) {
        char name[32];
        snprintf(name, sizeof name, "%s%s0", hf_stacks[stack[s]], stack[s] ? "." : "");
        mm__plan(m, name, &p, err, n); /* layer 0 of the stack may be dense, or absent */
        if (p.n_layers < 0) return -1;  /* failed before the count: err says why */
        count[s] = p.n_layers;
    }
    if (err && n) err[0] = '\0';
    return ns;
}

MMDEF int mm_layer_count(const mm_model *m, char *err, size_t err_size) {
    int stack[8];
    int64_t count[8], total = 0;
    int ns = mm__stacks(m, stack, count, err, err_size);
    for (int s = 0; s < ns; s++) total += count[s];
    if (total > INT_MAX) {
        mm__join(err, err_size, "config.json: more layers than an int counts", NULL, NULL);
        return -1;
    }
    return ns < 0 ? -1 : (int)total;
}

MMDEF int mm_layer_name(const mm_model *m, int i, char *name, size_t size) {
    int stack[8];
    int64_t count[8], at = i;
    int ns = mm__stacks(m, stack, count, NULL, 0);
    if (i < 0 || !name || !size) return -1;
    for (int s = 0; s < ns; s++) {
        if (at < count[s]) {
            int w = snprintf(name, size, "%s%s%lld", hf_stacks[stack[s]], stack[s] ? "." : "",
                             (long long)at);
            return w > 0 && (size_t)w < size ? 0 : -1;
        }
        at -= count[s];
    }
    return -1;
}

MMDEF int mm_is_moe(const mm_model *m, const char *layer, char *err, size_t err_size) {
    hf_plan p;
    if (!mm__plan(m, layer, &p, err, err_size)) {
        if (err && err_size) err[0] = '\0';
        return 1;
    }
    return p.why == HF_NOT_MOE ? 0 : -1;
}

MMDEF int mm_layer_plan(const mm_model *m, const char *layer, const mm_options *opt,
                        mm_layer_info *info, char *err, size_t err_size) {
    mm_options o;
    moe_config *c;
    if (!info) {
        mm__join(err, err_size, "mm_layer_plan: info is NULL", NULL, NULL);
        return -1;
    }
    memset(info, 0, sizeof *info);
    if (mm__plan(m, layer, &info->plan, err, err_size)) return -1;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    c = &info->plan.cfg;
    if (o.drop != MM_DROP_DEFAULT) {
        if (!c->capacity) {
            mm__say(err, err_size, "drop applies to layers with an expert capacity "
                    "(switch_transformers); %s has none", info->plan.family);
            return -1;
        }
        c->drop = o.drop == MM_DROP_IDENTITY ? MOE_DROP_IDENTITY : MOE_DROP_ZERO;
    }
    if (o.expert_begin < 0 || o.expert_count < 0 || o.expert_begin >= c->n_experts ||
        o.expert_count > c->n_experts - o.expert_begin) {
        mm__say(err, err_size, "expert subset: expert_begin %d, expert_count %d do not select "
                "experts within the %d of %s %s", o.expert_begin, o.expert_count, c->n_experts,
                info->plan.family, info->plan.layer_name);
        return -1;
    }
    c->expert_begin = o.expert_begin;
    c->expert_count = o.expert_count ? o.expert_count : c->n_experts - o.expert_begin;
    c->format = o.format, c->shared_format = o.shared_format, c->dot = o.dot;
    c->parallel_for = o.parallel_for, c->pool = o.pool, c->pool_threads = o.pool_threads;
    if (err && err_size) err[0] = '\0';
    return 0;
}

/* ---- the sources of one mm_layer_create ---- */

typedef struct mm__loader {
    mio_model *files;
    int count;                  /* count released bytes (no host pool: calls come one by one) */
    size_t n_used, cap;
    size_t bytes, released;
    const mio_tensor *used[];   /* cap entries: every tensor of the plan */
} mm__loader;

/* moe_weights.on_packed: the kernel may take back the pages of the buffer just packed. */
static void mm__on_packed(void *user, const void *data, size_t bytes) {
    mm__loader *L = (mm__loader *)user;
    const char *p = (const char *)data;
    for (size_t i = 0; i < L->n_used; i++) {
        const mio_tensor *t = L->used[i];
        const char *b = (const char *)t->data;
        if (t->mapped && p >= b && p < b + t->nbytes) {
            size_t off = (size_t)(p - b), len = bytes <= t->nbytes - off ? bytes : t->nbytes - off;
            if (mio_tensor_release(t, off, len, NULL, 0) == MIO_OK && L->count) L->released += len;
            return;
        }
    }
}

static int mm__dtype(int mio_dt, moe_dtype *out) {
    switch (mio_dt) {
    case MIO_DTYPE_F32: *out = MOE_F32; return 1;
    case MIO_DTYPE_BF16: *out = MOE_BF16; return 1;
    case MIO_DTYPE_F16: *out = MOE_F16; return 1;
    default: return 0;
    }
}

/* hf_lookup over the safetensors files: finds a tensor (reading it, MIO_READ) and remembers it,
   so that mm__on_packed can release its pages. */
static int mm__lookup(void *user, const char *name, hf_found *out, char *err, size_t en) {
    mm__loader *ld = (mm__loader *)user;
    const mio_tensor *t;
    char e[MIO_ERR_SIZE];
    if (!mio_model_has(ld->files, name)) return 1;
    int r = mio_model_tensor(ld->files, name, &t, e, sizeof e);
    if (r == MIO_ERR_NOT_FOUND) {
        mm__join(err, en, e, NULL, NULL);
        return 1;
    }
    if (r) {
        mm__join4(err, en, "cannot read tensor '", name, "': ", e);
        return -1;
    }
    if (!mm__dtype(t->dtype, &out->dtype)) {
        mm__say(err, en, "tensor '%s' has unsupported dtype %s (moe.h takes F32, BF16, F16)",
                name, mio_dtype_name(t->dtype));
        return -1;
    }
    out->data = t->data; /* moe.h reads sources through memcpy: alignment does not matter */
    out->rank = t->rank;
    for (int i = 0; i < t->rank && i < 8; i++) out->shape[i] = t->shape[i];
    for (size_t i = 0; i < ld->n_used; i++)
        if (ld->used[i] == t) return 0;
    if (ld->n_used >= ld->cap) { /* cannot happen: cap is the plan's count */
        mm__join(err, en, "too many tensors in one layer", NULL, NULL);
        return -1;
    }
    ld->used[ld->n_used++] = t;
    ld->bytes += t->nbytes;
    return 0;
}

MMDEF int mm_layer_create(const mm_model *m, const char *layer, const mm_options *opt,
                          moe_layer **out, mm_layer_info *info, char *err, size_t err_size) {
    mm_layer_info own, *li = info ? info : &own;
    char e[MM_ERR_SIZE];
    mio_model src;
    mm__loader *ld = NULL;
    hf_bound bound;
    moe_weights w;
    moe_config *c;
    size_t cap = 0;
    int rc = -1, br;
    if (!out) {
        mm__join(err, err_size, "mm_layer_create: out is NULL", NULL, NULL);
        return -1;
    }
    *out = NULL;
    if (mm_layer_plan(m, layer, opt, li, err, err_size)) return -1;
    c = &li->plan.cfg;
    if (mio_model_open_as(&src, m->dir, m->how, e, sizeof e)) {
        mm__join(err, err_size, e, NULL, NULL);
        return -1;
    }
    for (int i = 0; i < li->plan.n; i++) cap += li->plan.t[i].per_expert ? (size_t)c->expert_count : 1;
    ld = (mm__loader *)MIO_MALLOC(sizeof *ld + cap * sizeof *ld->used);
    if (!ld) {
        mm__join(err, err_size, "out of memory", NULL, NULL);
        goto done;
    }
    memset(ld, 0, sizeof *ld);
    ld->files = &src, ld->cap = cap, ld->count = c->parallel_for == NULL;
    br = hf_bind_experts(&li->plan, c->expert_begin, c->expert_count, mm__lookup, ld, &w, &bound,
                         e, sizeof e);
    if (br) {
        mm__join(err, err_size, e, br == -2 ? " in " : "", br == -2 ? m->dir : "");
        goto done;
    }
    snprintf(li->prefix, sizeof li->prefix, "%s", bound.prefix);
    w.on_packed = mm__on_packed;
    w.user = ld;
    if (moe_layer_create_msg(out, c, &w, e, sizeof e) != MOE_OK) {
        char what[160];
        snprintf(what, sizeof what, "%s %s: moe_layer_create: ", li->plan.family,
                 li->plan.layer_name);
        mm__join(err, err_size, what, e, NULL);
    } else {
        rc = 0;
        if (err && err_size) err[0] = '\0';
    }
    hf_unbind(&bound);
    li->source_bytes = ld->bytes, li->released = ld->released;
done:
    MIO_FREE(ld);
    mio_model_close(&src); /* the layer has its packed copy: the sources (or their maps) go */
    return rc;
}

#endif /* MOE_MODEL_H */
