/* moe_gguf.h v0.1.0 - GGUF (llama.cpp's model file) reader, and the MoE layer of one block of a
   GGUF model as a moe_config and moe_weights views. Part of the example CLI, not of moe.h.
   public domain or MIT, see end of file.

   Do this, in one C or C++ file:
      #define _DEFAULT_SOURCE
      #define MOE_IMPLEMENTATION           // or moe.h's implementation elsewhere
      #include "moe.h"
      #define MOE_IO_IMPLEMENTATION        // required in this same file: the implementation
      #include "moe_io.h"                  // below uses moe_io.h's file helpers
      #define MOE_GGUF_IMPLEMENTATION
      #include "moe_gguf.h"
   Other files include moe.h, moe_io.h and moe_gguf.h without the defines.

   Quick start (every call returns MIO_OK == 0 or a negative MIO_ERR_* code and fills err with
   a message that names the file, the key or tensor, and what was wrong):

      char err[MIO_ERR_SIZE];
      mgg_file g;
      mgg_layer L;
      if (mgg_open(&g, "model.gguf", MIO_READ, err, sizeof err)) die(err);
      if (mgg_plan_layer(&g, 3, &L, err, sizeof err)) die(err);   // blk.3's MoE block
      L.w.on_packed = mgg_on_packed, L.w.user = &L;               // optional: drop the pages
      moe_layer_create_msg(&layer, &L.cfg, &L.w, err, sizeof err);
      mgg_layer_free(&L);
      mgg_close(&g);                                              // the layer keeps its copy

   Names are mgg_ / MGG_ ("moe gguf", as mio_ is "moe io"), not gguf_: ggml's own gguf.h uses
   gguf_* and GGUF_TYPE_*, and a program may link both.

   THE FILE (GGUF v3; v2 has the same layout, and is read too; all little-endian)
      u32 magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count
      kv:     string key, u32 value_type, value
      tensor: string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset
      padding to general.alignment (u32, default 32), then the data section; a tensor's offset
      is relative to it and a multiple of the alignment
      string: u64 length, bytes (no NUL); array: u32 element type, u64 count, elements
   Opening validates all of it up front, with overflow-checked arithmetic: every count against
   the bytes left in the file (before anything is allocated for it), every length, key (1 to
   65535 bytes, no NUL, no duplicate) and tensor name (1 to 64 bytes, no NUL, no duplicate),
   bools (0 or 1), value and element types, array nesting (MGG_MAX_DEPTH), the alignment (a
   power of 2), each tensor's n_dims (at most 4), ne (each at most INT64_MAX, their product
   too), type (every ggml type is known by name and block size; a type no GGUF may hold is an
   error), ne[0] a multiple of the type's block, byte size, offset (aligned, data inside the
   file) and that no two tensors overlap. Every malformed input gets its own message. Tensors
   of any known type are accepted at open (a Q4_K_M file holds Q6_K tensors); the layer planner
   refuses the types moe.h does not take, naming the tensor.

   Memory: the header is read (MIO_READ) or mapped (MIO_MAP) and kept; the tables, exactly
   sized after a first pass, take at most about 8 times its size (tests/test_gguf.c measures
   the headers that cost the most per byte: minimal tensor infos and minimal metadata entries);
   a header over MGG_MAX_HEADER bytes is refused. Tensor data is not read at open: mapped with
   the file (MIO_MAP), or read with pread by mgg_load (MIO_READ, immune to a file that shrinks:
   the read fails with a message instead of a SIGBUS).

   THE MoE LAYER (mgg_plan_layer): llama.cpp's tensor names for block L,
      blk.L.ffn_gate_inp.weight   ne [d, E]        router (F32, F16 or BF16)
      blk.L.ffn_gate_inp.bias     ne [E]           router bias (gpt-oss)
      blk.L.exp_probs_b.bias      ne [E]           selection bias (DeepSeek-V3, GLM-4.5)
      blk.L.ffn_{gate,up}_exps.weight  ne [d, F, E]  experts: one expert's F x d slab
      blk.L.ffn_gate_up_exps.weight    ne [d, 2F, E] fused: gate rows first, then up
      blk.L.ffn_down_exps.weight  ne [F, d, E]
      blk.L.ffn_{gate,up,down}_exps.bias  ne [F, E] / [d, E]   (gpt-oss)
      blk.L.ffn_{gate,up}.X.weight, ffn_down.X.weight   one tensor an expert (old Mixtral files)
      blk.L.ffn_{gate,up}_shexp.weight ne [d, S], ffn_down_shexp.weight ne [S, d]  shared
      blk.L.ffn_gate_inp_shexp.weight  ne [d]      the shared expert's sigmoid gate (qwen2moe)
   ne[0] is the fastest axis, so a GGUF matrix is moe.h's MOE_OUT_IN layout as it stands: the
   views point at the tensors' bytes, dtype from the GGUF type (F32, F16, BF16, and the block
   types Q8_0 -> MOE_Q8_0, Q4_0 -> MOE_Q4_0, Q4_K -> MOE_Q4_K, MXFP4 -> MOE_MXFP4_GGUF: the
   block bytes as stored, nothing converted here). The routing comes from the architecture's
   metadata (A = general.architecture): A.embedding_length, A.block_count, A.expert_count,
   A.expert_used_count, A.expert_feed_forward_length, A.expert_shared_count,
   A.expert_shared_feed_forward_length, A.expert_gating_func, A.expert_weights_norm,
   A.expert_weights_scale, A.expert_group_count, A.expert_group_used_count,
   A.leading_dense_block_count, with the defaults llama.cpp applies when a key is absent; the
   rules per architecture are at mgg__arch_table. The moe_config is the one examples/hf_config.h
   makes from the Hugging Face config.json the file was converted from (tests/test_gguf.c
   checks this on every fixture). Widths come from the tensors' shapes, and are checked against
   the metadata.

   Conventions as moe_io.h: (char *err, size_t err_size) on every call that can fail, err may
   be NULL, "" on success; nothing printed, no global state; objects are not thread-safe.
   Configuration macros (define before the implementation):
      MGG_MAX_HEADER   256 MiB   largest header (magic to the end of the tensor infos)
      MGG_MAX_STRING   16 MiB    longest string value
      MGG_MAX_DEPTH    8         deepest nesting of arrays
*/
#ifndef MOE_GGUF_H
#define MOE_GGUF_H

#ifndef MOE_H
#error "moe_gguf.h: include moe.h first"
#endif
#ifndef MOE_IO_H
#error "moe_gguf.h: include moe_io.h first"
#endif

#include <stddef.h>
#include <stdint.h>

#define MGG_VERSION_MAJOR 0
#define MGG_VERSION_MINOR 1
#define MGG_VERSION_PATCH 0

#if defined(MGG_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define MGGDEF static __attribute__((unused))
#elif defined(MGG_STATIC)
#define MGGDEF static
#else
#define MGGDEF extern
#endif

#ifndef MGG_MAX_HEADER
#define MGG_MAX_HEADER ((size_t)256 << 20)
#endif
#ifndef MGG_MAX_STRING
#define MGG_MAX_STRING ((uint64_t)16 << 20)
#endif
#ifndef MGG_MAX_DEPTH
#define MGG_MAX_DEPTH 8
#endif
#define MGG_MAX_KEY 65535      /* GGUF spec: keys at most 65535 bytes */
#define MGG_MAX_NAME 64        /* GGUF spec: tensor names at most 64 bytes */
#define MGG_MAX_DIMS 4
#define MGG_DEFAULT_ALIGNMENT 32

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types, as numbered in the file. */
enum {
    MGG_UINT8 = 0, MGG_INT8, MGG_UINT16, MGG_INT16, MGG_UINT32, MGG_INT32, MGG_FLOAT32,
    MGG_BOOL, MGG_STRING, MGG_ARRAY, MGG_UINT64, MGG_INT64, MGG_FLOAT64,
    MGG_N_VALUE_TYPES
};

/* ggml tensor types (ggml.h enum ggml_type): the ones moe.h takes, and one for messages. */
enum {
    MGG_GGML_F32 = 0, MGG_GGML_F16 = 1, MGG_GGML_Q4_0 = 2, MGG_GGML_Q8_0 = 8, MGG_GGML_Q4_K = 12,
    MGG_GGML_Q6_K = 14, MGG_GGML_BF16 = 30, MGG_GGML_MXFP4 = 39,
    MGG_GGML_N_TYPES = 42      /* 0..41 are named; a number past them is an error */
};

/* One metadata value, pointing into the header bytes the file object keeps. */
typedef struct mgg_value {
    int type;                  /* MGG_UINT8 .. MGG_FLOAT64 */
    const unsigned char *p;    /* scalar: its little-endian bytes (read them with mgg_value_*);
                                  string: its bytes (NUL-terminated for a metadata value itself,
                                  not for an array element); array: the first element */
    uint64_t len;              /* string: bytes; array: elements; scalar: 1 */
    int elem_type;             /* array: the elements' type; otherwise -1 */
    size_t size;               /* bytes the value takes in the file */
} mgg_value;

typedef struct mgg_kv {
    const char *key;           /* NUL-terminated */
    mgg_value v;
} mgg_kv;

typedef struct mgg_tensor {
    mio_tensor t;              /* name, rank and shape (row-major: the reverse of ne), nelem,
                                  data, nbytes, offset (absolute, in the file), file, mapped: so
                                  mio_tensor_release works on it. dtype: MIO_DTYPE_F32, F16 or
                                  BF16 for those types, MIO_DTYPE_UNKNOWN for the others */
    int type;                  /* ggml type */
    int n_dims;                /* 0..4 */
    int64_t ne[MGG_MAX_DIMS];  /* ggml order, ne[0] fastest; 1 past n_dims */
    uint64_t rel_offset;       /* the offset as stored: relative to the data section */
} mgg_tensor;

typedef struct mgg_file {
    char *path;                /* path, or the name given to mgg_open_mem */
    int how;                   /* MIO_MAP (also for memory) or MIO_READ */
    int fd;                    /* MIO_READ: the open file */
    const unsigned char *base; /* MIO_MAP: the whole file; MIO_READ: NULL */
    size_t size;               /* file size */
    int mapped;                /* 1: base is our mmap */
    const unsigned char *hdr;  /* the header's bytes (base, or a copy read with pread) */
    size_t hdr_len;            /* bytes from the magic to the end of the tensor infos */
    unsigned char *hdr_copy;
    uint32_t version;          /* 2 or 3 */
    mgg_kv *kv;                /* file order */
    size_t n_kv;
    mgg_tensor *tensors;       /* file order */
    size_t n_tensors;
    size_t *kv_sorted, *tensors_sorted; /* indices, by key and by name */
    char *arena;               /* keys, tensor names, string values (NUL-terminated) */
    size_t alignment;
    uint64_t data_start;       /* file offset of the data section */
} mgg_file;

/* 1 if path is a regular file that starts with the magic "GGUF" (a llama.cpp model file, as
   opposed to a Hugging Face model directory), else 0. */
MGGDEF int mgg_is_gguf(const char *path);
/* Open and validate the file, read as `how` says (MIO_READ: header with pread, tensors by
   mgg_load; MIO_MAP: mapped). Close with mgg_close (also after a failed open). */
MGGDEF int mgg_open(mgg_file *g, const char *path, int how, char *err, size_t err_size);
/* The same on a buffer the caller keeps alive and unchanged until close; name is used in
   messages (NULL: "<memory>"). */
MGGDEF int mgg_open_mem(mgg_file *g, const void *buf, size_t len, const char *name, char *err,
                        size_t err_size);
MGGDEF void mgg_close(mgg_file *g);

/* Metadata. find: NULL if absent. The getters: MIO_OK; MIO_ERR_NOT_FOUND if absent (*out
   untouched: preset the default; err says which key); MIO_ERR_TYPE with "metadata 'K' is a
   string, expected an integer" when present with another type or out of range. get_i64 takes
   every integer type, get_f64 the float and integer types, get_bool only bool, get_str only a
   string without a NUL byte inside. */
MGGDEF const mgg_kv *mgg_find(const mgg_file *g, const char *key);
MGGDEF int mgg_get_i64(const mgg_file *g, const char *key, int64_t *out, char *err, size_t err_size);
MGGDEF int mgg_get_f64(const mgg_file *g, const char *key, double *out, char *err, size_t err_size);
MGGDEF int mgg_get_bool(const mgg_file *g, const char *key, int *out, char *err, size_t err_size);
MGGDEF int mgg_get_str(const mgg_file *g, const char *key, const char **out, char *err,
                       size_t err_size);
/* One value as a number: MIO_OK, or MIO_ERR_TYPE for another type (or a uint64 > INT64_MAX). */
MGGDEF int mgg_value_i64(const mgg_value *v, int64_t *out);
MGGDEF int mgg_value_f64(const mgg_value *v, double *out);

/* The elements of an array value, in order: mgg_iter_init, then mgg_iter_next until it returns
   0. A string element's p is not NUL-terminated (use len); a nested array is iterated the same
   way. Works on validated values only (those of an open file). */
typedef struct mgg_iter {
    const unsigned char *p;
    uint64_t left;
    int type;
} mgg_iter;
MGGDEF void mgg_iter_init(mgg_iter *it, const mgg_value *array);
MGGDEF int mgg_iter_next(mgg_iter *it, mgg_value *elem);

MGGDEF const char *mgg_value_type_name(int type);   /* "uint32", "string", "array", "?" */
MGGDEF const char *mgg_type_name(int ggml_type);    /* "Q4_K", "BF16"; "?" if unknown */
MGGDEF int mgg_type_block(int ggml_type);           /* elements a block: 1, 32, 256; 0 unknown */
MGGDEF int mgg_type_size(int ggml_type);            /* bytes a block; 0 unknown */

/* Tensors. find: NULL if absent. load: MIO_READ reads the tensor's bytes (once; they stay until
   close, or until released with mio_tensor_release(&t->t, ...)); a no-op for MIO_MAP. */
MGGDEF const mgg_tensor *mgg_find_tensor(const mgg_file *g, const char *name);
MGGDEF int mgg_load(mgg_file *g, const mgg_tensor *t, char *err, size_t err_size);

/* ---- the MoE layer of a block ---- */

#define MGG_MAX_USED 24

typedef struct mgg_layer {
    char arch[32];             /* general.architecture */
    int64_t layer;
    moe_config cfg;            /* ready for moe_layer_create (format etc. at their defaults) */
    moe_weights w;             /* views of the file's tensors (loaded); on_packed unset */
    const mgg_tensor *used[MGG_MAX_USED]; /* the tensors the views point into */
    int n_used;
    const void **per_expert[3]; /* old per-expert files: gate, up, down pointer arrays (owned) */
    size_t released;           /* bytes mgg_on_packed handed back (calls one at a time) */
    char note[200];            /* a remark for the user (a key ignored, as HF does), or "" */
} mgg_layer;

/* Fills *L (memset first) for block `layer` of the file: the moe_config from the metadata,
   the weight views from the tensors, each loaded (MIO_READ). The views stay valid until
   mgg_close; release L with mgg_layer_free. MIO_OK, or an error with a message: unsupported
   architecture (the list is in it), layer out of range, a dense layer, a missing key or
   tensor, a shape that disagrees with the metadata, a type moe.h does not take. */
MGGDEF int mgg_plan_layer(mgg_file *g, int64_t layer, mgg_layer *L, char *err, size_t err_size);
MGGDEF void mgg_layer_free(mgg_layer *L);
/* moe_weights.on_packed for L.w (user = the mgg_layer): drops the packed source bytes' pages
   (mio_tensor_release) and counts them in L->released. */
MGGDEF void mgg_on_packed(void *user, const void *data, size_t bytes);
/* "llama qwen2moe qwen3moe deepseek2 glm4moe gpt-oss olmoe" */
MGGDEF const char *mgg_architectures(void);
/* The moe_dtype of a ggml type: 1 and *out, or 0 if moe.h does not take it. */
MGGDEF int mgg_moe_dtype(int ggml_type, moe_dtype *out);

#ifdef __cplusplus
}
#endif
#endif /* MOE_GGUF_H */

/* ========================================================================================== */
#ifdef MOE_GGUF_IMPLEMENTATION
#ifndef MOE_GGUF_IMPLEMENTATION_DONE
#define MOE_GGUF_IMPLEMENTATION_DONE

#ifndef MOE_IO_IMPLEMENTATION_DONE
#error "moe_gguf.h: define MOE_IO_IMPLEMENTATION and include moe_io.h earlier in this file"
#endif

/* ---- types ---- */

static const char *const mgg__value_names[MGG_N_VALUE_TYPES] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
    "uint64", "int64", "float64"};
/* encoded bytes of a scalar of each type; 0 for string and array */
static const unsigned char mgg__value_size[MGG_N_VALUE_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* name, elements a block, bytes a block: ggml-common.h's block structs. Block 0: a number no
   GGUF file may hold (a type removed from ggml). */
static const struct { const char *name; int blck, size; } mgg__types[MGG_GGML_N_TYPES] = {
    {"F32", 1, 4}, {"F16", 1, 2}, {"Q4_0", 32, 18}, {"Q4_1", 32, 20},
    {"Q4_2", 0, 0}, {"Q4_3", 0, 0}, {"Q5_0", 32, 22}, {"Q5_1", 32, 24},
    {"Q8_0", 32, 34}, {"Q8_1", 32, 36}, {"Q2_K", 256, 84}, {"Q3_K", 256, 110},
    {"Q4_K", 256, 144}, {"Q5_K", 256, 176}, {"Q6_K", 256, 210}, {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18}, {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82}, {"IQ4_XS", 256, 136},
    {"I8", 1, 1}, {"I16", 1, 2}, {"I32", 1, 4}, {"I64", 1, 8},
    {"F64", 1, 8}, {"IQ1_M", 256, 56}, {"BF16", 1, 2}, {"Q4_0_4_4", 0, 0},
    {"Q4_0_4_8", 0, 0}, {"Q4_0_8_8", 0, 0}, {"TQ1_0", 256, 54}, {"TQ2_0", 256, 66},
    {"IQ4_NL_4_4", 0, 0}, {"IQ4_NL_4_8", 0, 0}, {"IQ4_NL_8_8", 0, 0},
    {"MXFP4", 32, 17}, {"NVFP4", 64, 36}, {"Q1_0", 128, 18}};

MGGDEF const char *mgg_value_type_name(int type)
{
    return type >= 0 && type < MGG_N_VALUE_TYPES ? mgg__value_names[type] : "?";
}
MGGDEF const char *mgg_type_name(int t) { return t >= 0 && t < MGG_GGML_N_TYPES ? mgg__types[t].name : "?"; }
MGGDEF int mgg_type_block(int t) { return t >= 0 && t < MGG_GGML_N_TYPES ? mgg__types[t].blck : 0; }
MGGDEF int mgg_type_size(int t) { return t >= 0 && t < MGG_GGML_N_TYPES ? mgg__types[t].size : 0; }

MGGDEF int mgg_moe_dtype(int t, moe_dtype *out)
{
    switch (t) {
    case MGG_GGML_F32: *out = MOE_F32; return 1;
    case MGG_GGML_F16: *out = MOE_F16; return 1;
    case MGG_GGML_BF16: *out = MOE_BF16; return 1;
    case MGG_GGML_Q8_0: *out = MOE_Q8_0; return 1;
    case MGG_GGML_Q4_0: *out = MOE_Q4_0; return 1;
    case MGG_GGML_Q4_K: *out = MOE_Q4_K; return 1;
    case MGG_GGML_MXFP4: *out = MOE_MXFP4_GGUF; return 1;
    default: return 0;
    }
}

static uint32_t mgg__le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* ---- the header reader ----
   Two passes, as moe_io.h's parsers: the first reads and validates every field and counts the
   bytes of names and strings (the buffer of a MIO_READ file grows while it is read); the
   second, over the header now all in memory and known good, fills tables of the exact size. */

typedef struct mgg__rd {
    mgg_file *g;
    const unsigned char *b;    /* the bytes read so far (g->base for a mapped file) */
    unsigned char *buf;        /* MIO_READ: the growing copy */
    size_t have, pos;
    char what[320];            /* what is being read, for messages */
    char key[208];             /* the current key or tensor name, cut, printable */
    char *err;
    size_t es;
} mgg__rd;

/* s[0..n) for a message: at most 200 bytes, control bytes as '?' */
static void mgg__printable(char *d, const unsigned char *s, size_t n)
{
    size_t i, m = n < 200 ? n : 200;
    for (i = 0; i < m; i++) d[i] = (char)(s[i] >= 0x20 && s[i] != 0x7f ? s[i] : '?');
    if (n > m) memcpy(d + m, "...", 4);
    else d[m] = '\0';
}

/* Makes bytes [pos, pos + n) readable. */
static int mgg__need(mgg__rd *r, uint64_t n)
{
    mgg_file *g = r->g;
    size_t want, cap;
    long long got;
    unsigned char *nb;
    if (n > (uint64_t)(g->size - r->pos))
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: the file ends inside %s (at byte %zu of %zu, %llu bytes short): truncated?",
                         g->path, r->what, r->pos, g->size, (unsigned long long)(n - (g->size - r->pos)));
    if (r->pos > MGG_MAX_HEADER || n > (uint64_t)(MGG_MAX_HEADER - r->pos))
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: the header is larger than the limit of %zu bytes (MGG_MAX_HEADER), reached in %s",
                         g->path, (size_t)MGG_MAX_HEADER, r->what);
    if (n <= (uint64_t)(r->have - r->pos)) return MIO_OK;
    /* MIO_READ: read on, at least doubling what is held, never past the file or the limit */
    want = r->pos + (size_t)n;
    cap = r->have * 2 > want ? r->have * 2 : want;
    if (cap < ((size_t)64 << 10)) cap = (size_t)64 << 10;
    if (cap > g->size) cap = g->size;
    if (cap > MGG_MAX_HEADER) cap = MGG_MAX_HEADER;
    nb = (unsigned char *)MIO_REALLOC(r->buf, cap);
    if (!nb) return mio__fail(r->err, r->es, MIO_ERR_NOMEM, "%s: out of memory for %zu bytes of header", g->path, cap);
    r->buf = nb;
    r->b = nb;
    got = mio__pread_all(g->fd, nb + r->have, cap - r->have, r->have);
    if (got != (long long)(cap - r->have))
        return mio__fail(r->err, r->es, MIO_ERR_IO, "%s: read of the header failed: %s", g->path,
                         got < 0 ? strerror(errno) : "the file got shorter");
    r->have = cap;
    return MIO_OK;
}

static int mgg__u32(mgg__rd *r, uint32_t *v)
{
    int rc = mgg__need(r, 4);
    if (rc) return rc;
    *v = mgg__le32(r->b + r->pos);
    r->pos += 4;
    return MIO_OK;
}

static int mgg__u64(mgg__rd *r, uint64_t *v)
{
    int rc = mgg__need(r, 8);
    if (rc) return rc;
    *v = mio__le64(r->b + r->pos);
    r->pos += 8;
    return MIO_OK;
}

/* Validates the value of type `type` at pos (depth: arrays it is inside) and moves past it. */
static int mgg__scan_value(mgg__rd *r, int type, int depth)
{
    mgg_file *g = r->g;
    uint64_t len, n, i, min;
    uint32_t et;
    int rc;
    if (mgg__value_size[type]) {
        if ((rc = mgg__need(r, mgg__value_size[type]))) return rc;
        if (type == MGG_BOOL && r->b[r->pos] > 1)
            return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: metadata '%s': a bool with byte value %u at byte %zu (must be 0 or 1)",
                             g->path, r->key, r->b[r->pos], r->pos);
        r->pos += mgg__value_size[type];
        return MIO_OK;
    }
    if (type == MGG_STRING) {
        if ((rc = mgg__u64(r, &len))) return rc;
        if (len > MGG_MAX_STRING)
            return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: metadata '%s': a string of %llu bytes (at byte %zu), over the limit of %llu bytes",
                             g->path, r->key, (unsigned long long)len, r->pos - 8, (unsigned long long)MGG_MAX_STRING);
        if ((rc = mgg__need(r, len))) return rc;
        r->pos += (size_t)len;
        return MIO_OK;
    }
    /* an array */
    if (depth >= MGG_MAX_DEPTH)
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: metadata '%s': arrays nested deeper than %d levels (at byte %zu)",
                         g->path, r->key, MGG_MAX_DEPTH, r->pos);
    if ((rc = mgg__u32(r, &et))) return rc;
    if (et >= MGG_N_VALUE_TYPES)
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: metadata '%s': an array of unknown element type %u (at byte %zu; types 0..12 are defined)",
                         g->path, r->key, et, r->pos - 4);
    if ((rc = mgg__u64(r, &n))) return rc;
    min = mgg__value_size[et] ? mgg__value_size[et] : et == MGG_STRING ? 8 : 12;
    if (n > (uint64_t)(g->size - r->pos) / min)
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: metadata '%s': an array of %llu %s elements (at byte %zu) cannot fit in the %zu bytes left in the file",
                         g->path, r->key, (unsigned long long)n, mgg__value_names[et], r->pos - 12, g->size - r->pos);
    if (mgg__value_size[et] && et != MGG_BOOL) {
        if ((rc = mgg__need(r, n * min))) return rc;
        r->pos += (size_t)(n * min);
        return MIO_OK;
    }
    for (i = 0; i < n; i++)
        if ((rc = mgg__scan_value(r, (int)et, depth + 1))) return rc;
    return MIO_OK;
}

/* Encoded size of a validated value at p. */
static size_t mgg__size_at(const unsigned char *p, int type)
{
    size_t s = 12;
    uint64_t n, i;
    int et;
    if (mgg__value_size[type]) return mgg__value_size[type];
    if (type == MGG_STRING) return 8 + (size_t)mio__le64(p);
    et = (int)mgg__le32(p);
    n = mio__le64(p + 4);
    if (mgg__value_size[et]) return s + (size_t)n * mgg__value_size[et];
    for (i = 0; i < n; i++) s += mgg__size_at(p + s, et);
    return s;
}

static int mgg__kv_cmp_g(const mgg_file *g, size_t a, size_t b)
{
    return strcmp(g->kv[a].key, g->kv[b].key);
}

/* sort of indices by a comparison with context (qsort has none): heap sort, n log n, no
   recursion, no allocation */
static void mgg__sort(size_t *ix, size_t n, const mgg_file *g,
                      int (*cmp)(const mgg_file *, size_t, size_t))
{
    size_t i, end, root, child, t;
    if (n < 2) return;
    for (i = n / 2; i-- > 0;) {
        for (root = i; (child = 2 * root + 1) < n; root = child) {
            if (child + 1 < n && cmp(g, ix[child], ix[child + 1]) < 0) child++;
            if (cmp(g, ix[root], ix[child]) >= 0) break;
            t = ix[root], ix[root] = ix[child], ix[child] = t;
        }
    }
    for (end = n - 1; end > 0; end--) {
        t = ix[0], ix[0] = ix[end], ix[end] = t;
        for (root = 0; (child = 2 * root + 1) < end; root = child) {
            if (child + 1 < end && cmp(g, ix[child], ix[child + 1]) < 0) child++;
            if (cmp(g, ix[root], ix[child]) >= 0) break;
            t = ix[root], ix[root] = ix[child], ix[child] = t;
        }
    }
}

static int mgg__t_cmp_name(const mgg_file *g, size_t a, size_t b)
{
    return strcmp(g->tensors[a].t.name, g->tensors[b].t.name);
}

static int mgg__t_cmp_off(const mgg_file *g, size_t a, size_t b)
{
    uint64_t x = g->tensors[a].rel_offset, y = g->tensors[b].rel_offset;
    if (x != y) return x < y ? -1 : 1;
    return a < b ? -1 : a > b; /* a stable order for equal offsets */
}

/* Reads one string's length and checks it as a key (kind "key") or tensor name. */
static int mgg__name(mgg__rd *r, const char *kind, uint64_t index, size_t limit, size_t *off, size_t *len)
{
    mgg_file *g = r->g;
    uint64_t n;
    int rc = mgg__u64(r, &n);
    if (rc) return rc;
    if (n == 0)
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: %s %llu has an empty %s (at byte %zu)", g->path,
                         kind[0] == 'k' ? "metadata entry" : "tensor", (unsigned long long)index,
                         kind[0] == 'k' ? "key" : "name", r->pos - 8);
    if (n > limit)
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: the %s of %s %llu is %llu bytes long (at byte %zu), over the limit of %zu bytes",
                         g->path, kind[0] == 'k' ? "key" : "name", kind[0] == 'k' ? "metadata entry" : "tensor",
                         (unsigned long long)index, (unsigned long long)n, r->pos - 8, limit);
    if ((rc = mgg__need(r, n))) return rc;
    mgg__printable(r->key, r->b + r->pos, (size_t)n);
    if (memchr(r->b + r->pos, 0, (size_t)n))
        return mio__fail(r->err, r->es, MIO_ERR_FORMAT, "%s: the %s of %s %llu ('%s') contains a NUL byte", g->path,
                         kind[0] == 'k' ? "key" : "name", kind[0] == 'k' ? "metadata entry" : "tensor",
                         (unsigned long long)index, r->key);
    *off = r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return MIO_OK;
}

/* The tensor info at p (validated): fills t, returns the bytes it takes. */
static size_t mgg__tensor_at(const unsigned char *p, mgg_tensor *t, char **name)
{
    size_t n = (size_t)mio__le64(p), at = 8 + n;
    uint64_t nel = 1;
    int k;
    memset(t, 0, sizeof *t);
    memcpy(*name, p + 8, n);
    (*name)[n] = '\0';
    t->t.name = *name;
    *name += n + 1;
    t->n_dims = (int)mgg__le32(p + at);
    at += 4;
    for (k = 0; k < MGG_MAX_DIMS; k++) t->ne[k] = 1;
    for (k = 0; k < t->n_dims; k++, at += 8) nel *= (uint64_t)(t->ne[k] = (int64_t)mio__le64(p + at));
    t->type = (int)mgg__le32(p + at);
    t->rel_offset = mio__le64(p + at + 4);
    t->t.dtype = t->type == MGG_GGML_F32 ? MIO_DTYPE_F32 : t->type == MGG_GGML_F16 ? MIO_DTYPE_F16
               : t->type == MGG_GGML_BF16 ? MIO_DTYPE_BF16 : MIO_DTYPE_UNKNOWN;
    t->t.rank = t->n_dims;
    for (k = 0; k < t->n_dims; k++) t->t.shape[k] = t->ne[t->n_dims - 1 - k];
    t->t.nelem = (size_t)nel;
    t->t.nbytes = (size_t)(nel / (uint64_t)mgg__types[t->type].blck * (uint64_t)mgg__types[t->type].size);
    return at + 12;
}

static int mgg__parse(mgg_file *g, char *err, size_t es)
{
    mgg__rd rd, *r = &rd;
    size_t i, j, arena = 0, at, align_at = MIO__NONE;
    int align_type = -1;
    uint64_t n_tensors, n_kv, left;
    uint32_t magic, version, u;
    char *names;
    int rc;
    memset(r, 0, sizeof *r);
    r->g = g, r->err = err, r->es = es;
    if (g->base) r->b = g->base, r->have = g->size;

    /* pass 1: the fixed header */
    if (g->size == 0) return mio__fail(err, es, MIO_ERR_FORMAT, "%s: empty file (0 bytes), not a GGUF file", g->path);
    {
        unsigned char first[4] = {0, 0, 0, 0};
        size_t k = g->size < 4 ? g->size : 4;
        snprintf(r->what, sizeof r->what, "the magic \"GGUF\"");
        if ((rc = mgg__need(r, k))) goto fail;
        memcpy(first, r->b, k);
        if (memcmp(first, "GGUF", k) != 0) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: not a GGUF file (it starts with bytes %02x %02x %02x %02x, not \"GGUF\")",
                           g->path, first[0], first[1], first[2], first[3]);
            goto fail;
        }
    }
    if ((rc = mgg__u32(r, &magic))) goto fail;
    snprintf(r->what, sizeof r->what, "the version");
    if ((rc = mgg__u32(r, &version))) goto fail;
    if (version == 1) {
        rc = mio__fail(err, es, MIO_ERR_UNSUPPORTED, "%s: GGUF version 1 (32-bit counts, 2023) is not supported: versions 2 and 3 are; convert the file again", g->path);
        goto fail;
    }
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && (version >> 24 == 2 || version >> 24 == 3))
            rc = mio__fail(err, es, MIO_ERR_UNSUPPORTED, "%s: a big-endian GGUF file (version bytes %02x %02x %02x %02x): only little-endian files are supported",
                           g->path, version & 0xff, version >> 8 & 0xff, version >> 16 & 0xff, version >> 24);
        else
            rc = mio__fail(err, es, MIO_ERR_UNSUPPORTED, "%s: unknown GGUF version %u (versions 2 and 3 are supported)", g->path, version);
        goto fail;
    }
    g->version = version;
    snprintf(r->what, sizeof r->what, "the tensor count");
    if ((rc = mgg__u64(r, &n_tensors))) goto fail;
    snprintf(r->what, sizeof r->what, "the metadata count");
    if ((rc = mgg__u64(r, &n_kv))) goto fail;
    /* each metadata entry takes at least 13 bytes (key length, a 1-byte key, type, a 1-byte
       value), each tensor info 25 (name length, a 1-byte name, n_dims, type, offset) */
    left = g->size - r->pos;
    if (n_kv > left / 13) {
        rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: metadata count %llu is larger than the file allows (%llu bytes left after the 24-byte header, 13 at least an entry)",
                       g->path, (unsigned long long)n_kv, (unsigned long long)left);
        goto fail;
    }
    if (n_tensors > (left - n_kv * 13) / 25) {
        rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor count %llu is larger than the file allows (%llu bytes left for the tensor infos, 25 at least a tensor)",
                       g->path, (unsigned long long)n_tensors, (unsigned long long)(left - n_kv * 13));
        goto fail;
    }

    /* pass 1: metadata */
    for (i = 0; i < (size_t)n_kv; i++) {
        size_t key, key_len, val;
        snprintf(r->what, sizeof r->what, "the key of metadata entry %zu", i);
        if ((rc = mgg__name(r, "key", i, MGG_MAX_KEY, &key, &key_len))) goto fail;
        snprintf(r->what, sizeof r->what, "the type of metadata '%s'", r->key);
        if ((rc = mgg__u32(r, &u))) goto fail;
        if (u >= MGG_N_VALUE_TYPES) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: metadata '%s' has unknown value type %u (at byte %zu; types 0..12 are defined)",
                           g->path, r->key, u, r->pos - 4);
            goto fail;
        }
        val = r->pos;
        snprintf(r->what, sizeof r->what, "the value of metadata '%s'", r->key);
        if ((rc = mgg__scan_value(r, (int)u, 0))) goto fail;
        arena += key_len + 1 + (u == MGG_STRING ? (size_t)mio__le64(r->b + val) + 1 : 0);
        if (align_at == MIO__NONE && key_len == 17 && !memcmp(r->b + key, "general.alignment", 17))
            align_at = val, align_type = (int)u;
    }

    /* the alignment (before the tensor infos, whose offsets must respect it) */
    g->alignment = MGG_DEFAULT_ALIGNMENT;
    if (align_at != MIO__NONE) {
        const unsigned char *v = r->b + align_at;
        uint64_t a;
        if (align_type != MGG_UINT8 && align_type != MGG_UINT16 && align_type != MGG_UINT32 && align_type != MGG_UINT64) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: general.alignment is a %s, expected a uint32", g->path,
                           mgg__value_names[align_type]);
            goto fail;
        }
        a = align_type == MGG_UINT8 ? v[0] : align_type == MGG_UINT16 ? (uint64_t)(v[0] | v[1] << 8)
          : align_type == MGG_UINT32 ? mgg__le32(v) : mio__le64(v);
        if (a == 0 || (a & (a - 1)) != 0 || a > ((uint64_t)1 << 30)) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: general.alignment = %llu is not a power of 2 between 1 and 2^30",
                           g->path, (unsigned long long)a);
            goto fail;
        }
        g->alignment = (size_t)a;
    }

    /* pass 1: tensor infos */
    for (i = 0; i < (size_t)n_tensors; i++) {
        size_t name, name_len;
        uint64_t v, nel = 1, off;
        int k, n_dims;
        int64_t ne0 = 1;
        snprintf(r->what, sizeof r->what, "the name of tensor %zu", i);
        if ((rc = mgg__name(r, "name", i, MGG_MAX_NAME, &name, &name_len))) goto fail;
        snprintf(r->what, sizeof r->what, "the info of tensor '%s'", r->key);
        if ((rc = mgg__u32(r, &u))) goto fail;
        if (u > MGG_MAX_DIMS) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (at most %d)", g->path, r->key, u, MGG_MAX_DIMS);
            goto fail;
        }
        n_dims = (int)u;
        for (k = 0; k < n_dims; k++) {
            if ((rc = mgg__u64(r, &v))) goto fail;
            if (v > (uint64_t)INT64_MAX) {
                rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': ne[%d] = %llu is negative as an int64", g->path, r->key, k,
                               (unsigned long long)v);
                goto fail;
            }
            if (k == 0) ne0 = (int64_t)v;
            if (v && nel > (uint64_t)INT64_MAX / v) {
                rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': the element count overflows (ne[0..%d] multiply past 2^63)",
                               g->path, r->key, k);
                goto fail;
            }
            nel *= v;
        }
        if ((rc = mgg__u32(r, &u))) goto fail;
        if (u >= MGG_GGML_N_TYPES) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s' has unknown type %u (ggml types are 0..%d)", g->path, r->key, u,
                           MGG_GGML_N_TYPES - 1);
            goto fail;
        }
        if (!mgg__types[u].blck) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s' has type %u (%s), which ggml removed: no GGUF file may hold it", g->path,
                           r->key, u, mgg__types[u].name);
            goto fail;
        }
        if (ne0 % mgg__types[u].blck) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block of %d elements",
                           g->path, r->key, (long long)ne0, mgg__types[u].name, mgg__types[u].blck);
            goto fail;
        }
        /* nel / blck blocks of `size` bytes: 2^63 elements of an 8-byte type overflow 64 bits */
        if (nel / (uint64_t)mgg__types[u].blck > (uint64_t)((size_t)-1) / (uint64_t)mgg__types[u].size) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': its byte size (%llu %s elements) overflows", g->path, r->key,
                           (unsigned long long)nel, mgg__types[u].name);
            goto fail;
        }
        if ((rc = mgg__u64(r, &off))) goto fail;
        if (off % g->alignment) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %zu", g->path,
                           r->key, (unsigned long long)off, g->alignment);
            goto fail;
        }
        arena += name_len + 1;
    }
    g->hdr_len = r->pos;
    g->data_start = (r->pos + g->alignment - 1) / g->alignment * g->alignment;

    /* pass 2: the tables, exactly sized, pointing into the header and the arena */
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    g->kv = (mgg_kv *)MIO_MALLOC(g->n_kv ? g->n_kv * sizeof *g->kv : 1);
    g->tensors = (mgg_tensor *)MIO_MALLOC(g->n_tensors ? g->n_tensors * sizeof *g->tensors : 1);
    g->kv_sorted = (size_t *)MIO_MALLOC(g->n_kv ? g->n_kv * sizeof(size_t) : 1);
    g->tensors_sorted = (size_t *)MIO_MALLOC(g->n_tensors ? g->n_tensors * sizeof(size_t) : 1);
    g->arena = (char *)MIO_MALLOC(arena ? arena : 1);
    if (!g->kv || !g->tensors || !g->kv_sorted || !g->tensors_sorted || !g->arena) {
        rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory for the tables of %zu entries and %zu tensors", g->path,
                       g->n_kv, g->n_tensors);
        g->n_tensors = 0; /* none filled: close has nothing to unmap */
        goto fail;
    }
    if (g->how == MIO_READ) {
        g->hdr_copy = r->buf;
        r->buf = NULL;
        g->hdr = g->hdr_copy;
    } else {
        g->hdr = g->base;
    }
    names = g->arena;
    at = 24;
    for (i = 0; i < g->n_kv; i++) {
        mgg_kv *kv = &g->kv[i];
        size_t n = (size_t)mio__le64(g->hdr + at);
        const unsigned char *v;
        memcpy(names, g->hdr + at + 8, n);
        names[n] = '\0';
        kv->key = names;
        names += n + 1;
        at += 8 + n;
        kv->v.type = (int)mgg__le32(g->hdr + at);
        at += 4;
        v = g->hdr + at;
        kv->v.size = mgg__size_at(v, kv->v.type);
        kv->v.elem_type = -1;
        kv->v.len = 1;
        kv->v.p = v;
        if (kv->v.type == MGG_STRING) {
            kv->v.len = mio__le64(v);
            memcpy(names, v + 8, (size_t)kv->v.len);
            names[kv->v.len] = '\0';
            kv->v.p = (const unsigned char *)names;
            names += (size_t)kv->v.len + 1;
        } else if (kv->v.type == MGG_ARRAY) {
            kv->v.elem_type = (int)mgg__le32(v);
            kv->v.len = mio__le64(v + 4);
            kv->v.p = v + 12;
        }
        at += kv->v.size;
        g->kv_sorted[i] = i;
    }
    for (i = 0; i < g->n_tensors; i++) {
        mgg_tensor *t = &g->tensors[i];
        uint64_t room = g->data_start <= g->size ? g->size - g->data_start : 0;
        at += mgg__tensor_at(g->hdr + at, t, &names);
        t->t.file = g->path;
        g->tensors_sorted[i] = i;
        if (t->rel_offset > room || t->t.nbytes > room - t->rel_offset) {
            char nm[208];
            mgg__printable(nm, (const unsigned char *)t->t.name, strlen(t->t.name));
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%s': its %zu bytes at offset %llu of the data section (file bytes %llu..) end past the end of the file (%zu bytes): truncated?",
                           g->path, nm, t->t.nbytes, (unsigned long long)t->rel_offset,
                           (unsigned long long)(g->data_start + t->rel_offset), g->size);
            g->n_tensors = i + 1; /* the ones filled, for close */
            goto fail;
        }
        /* inside the file now: the pointer arithmetic cannot overflow */
        t->t.offset = g->data_start + t->rel_offset;
        if (g->how != MIO_READ) t->t.data = g->base + (size_t)t->t.offset;
        t->t.mapped = g->how != MIO_READ && g->mapped;
    }

    /* duplicates and overlaps */
    mgg__sort(g->kv_sorted, g->n_kv, g, mgg__kv_cmp_g);
    for (i = 1; i < g->n_kv; i++)
        if (!strcmp(g->kv[g->kv_sorted[i - 1]].key, g->kv[g->kv_sorted[i]].key)) {
            size_t a = g->kv_sorted[i - 1], b = g->kv_sorted[i];
            char nm[208];
            mgg__printable(nm, (const unsigned char *)g->kv[a].key, strlen(g->kv[a].key));
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: duplicate metadata key '%s' (entries %zu and %zu)", g->path, nm,
                           a < b ? a : b, a < b ? b : a);
            goto fail;
        }
    mgg__sort(g->tensors_sorted, g->n_tensors, g, mgg__t_cmp_name);
    for (i = 1; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[g->tensors_sorted[i - 1]].t.name, g->tensors[g->tensors_sorted[i]].t.name)) {
            char nm[208];
            const char *dup = g->tensors[g->tensors_sorted[i]].t.name;
            mgg__printable(nm, (const unsigned char *)dup, strlen(dup));
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: duplicate tensor name '%s'", g->path, nm);
            goto fail;
        }
    {
        /* by offset, in a scratch copy of the index: each tensor must end before the next
           non-empty one starts */
        size_t *ix = (size_t *)MIO_MALLOC(g->n_tensors ? g->n_tensors * sizeof(size_t) : 1), last = MIO__NONE;
        if (!ix) {
            rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", g->path);
            goto fail;
        }
        for (i = 0; i < g->n_tensors; i++) ix[i] = i;
        mgg__sort(ix, g->n_tensors, g, mgg__t_cmp_off);
        for (j = 0; j < g->n_tensors; j++) {
            const mgg_tensor *t = &g->tensors[ix[j]];
            if (!t->t.nbytes) continue;
            if (last != MIO__NONE) {
                const mgg_tensor *p = &g->tensors[last];
                if (p->rel_offset + p->t.nbytes > t->rel_offset) {
                    char n1[208], n2[208];
                    mgg__printable(n1, (const unsigned char *)p->t.name, strlen(p->t.name));
                    mgg__printable(n2, (const unsigned char *)t->t.name, strlen(t->t.name));
                    rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap (data section bytes [%llu, %llu) and [%llu, %llu))",
                                   g->path, n1, n2, (unsigned long long)p->rel_offset,
                                   (unsigned long long)(p->rel_offset + p->t.nbytes), (unsigned long long)t->rel_offset,
                                   (unsigned long long)(t->rel_offset + t->t.nbytes));
                    MIO_FREE(ix);
                    goto fail;
                }
            }
            last = ix[j];
        }
        MIO_FREE(ix);
    }
    rc = MIO_OK;
fail:
    MIO_FREE(r->buf);
    return rc;
}

/* ---- open, close, lookups ---- */

MGGDEF void mgg_close(mgg_file *g)
{
    size_t i;
    if (!g) return;
    if (g->mapped && g->base) munmap((void *)(uintptr_t)g->base, g->size);
    if (g->tensors)
        for (i = 0; i < g->n_tensors; i++)
            if (g->tensors[i].t.copy_len) munmap((void *)(uintptr_t)g->tensors[i].t.data, g->tensors[i].t.copy_len);
    if (g->how == MIO_READ && g->fd >= 0) close(g->fd);
    MIO_FREE(g->hdr_copy);
    MIO_FREE(g->kv);
    MIO_FREE(g->tensors);
    MIO_FREE(g->kv_sorted);
    MIO_FREE(g->tensors_sorted);
    MIO_FREE(g->arena);
    MIO_FREE(g->path);
    memset(g, 0, sizeof *g);
    g->fd = -1;
}

MGGDEF int mgg_is_gguf(const char *path)
{
    struct stat st;
    char magic[4];
    FILE *f;
    if (!path || stat(path, &st) || !S_ISREG(st.st_mode) || !(f = fopen(path, "rb"))) return 0;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

MGGDEF int mgg_open(mgg_file *g, const char *path, int how, char *err, size_t err_size)
{
    int rc;
    mio__clear(err, err_size);
    if (!g) return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_open: NULL file object");
    memset(g, 0, sizeof *g);
    g->fd = -1;
    if (!path || (how != MIO_MAP && how != MIO_READ))
        return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_open: NULL path or bad mode");
    g->path = mio__strndup(path, strlen(path));
    if (!g->path) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", path);
    g->how = how;
    if (how == MIO_READ) {
        rc = mio__open_regular(path, &g->fd, &g->size, err, err_size);
    } else {
        rc = mio__map_file(path, &g->base, &g->size, err, err_size);
        g->mapped = g->base != NULL;
    }
    if (!rc) rc = mgg__parse(g, err, err_size);
    if (rc) mgg_close(g);
    return rc;
}

MGGDEF int mgg_open_mem(mgg_file *g, const void *buf, size_t len, const char *name, char *err, size_t err_size)
{
    int rc;
    mio__clear(err, err_size);
    if (!g) return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_open_mem: NULL file object");
    memset(g, 0, sizeof *g);
    g->fd = -1;
    if (!buf && len) return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_open_mem: NULL buffer");
    if (!name) name = "<memory>";
    g->path = mio__strndup(name, strlen(name));
    if (!g->path) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", name);
    g->how = MIO_MAP;
    g->base = (const unsigned char *)buf;
    g->size = len;
    rc = mgg__parse(g, err, err_size);
    if (rc) mgg_close(g);
    return rc;
}

MGGDEF const mgg_kv *mgg_find(const mgg_file *g, const char *key)
{
    size_t lo = 0, hi;
    if (!g || !key || !g->kv_sorted) return NULL;
    hi = g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, g->kv[g->kv_sorted[mid]].key);
        if (c == 0) return &g->kv[g->kv_sorted[mid]];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

MGGDEF const mgg_tensor *mgg_find_tensor(const mgg_file *g, const char *name)
{
    size_t lo = 0, hi;
    if (!g || !name || !g->tensors_sorted) return NULL;
    hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, g->tensors[g->tensors_sorted[mid]].t.name);
        if (c == 0) return &g->tensors[g->tensors_sorted[mid]];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

MGGDEF int mgg_value_i64(const mgg_value *v, int64_t *out)
{
    const unsigned char *p;
    uint64_t u;
    if (!v || !out) return MIO_ERR_ARG;
    p = v->p;
    switch (v->type) {
    case MGG_UINT8: *out = p[0]; return MIO_OK;
    case MGG_INT8: *out = (int8_t)p[0]; return MIO_OK;
    case MGG_UINT16: *out = (int64_t)(p[0] | p[1] << 8); return MIO_OK;
    case MGG_INT16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return MIO_OK;
    case MGG_UINT32: *out = mgg__le32(p); return MIO_OK;
    case MGG_INT32: *out = (int32_t)mgg__le32(p); return MIO_OK;
    case MGG_UINT64:
        u = mio__le64(p);
        if (u > (uint64_t)INT64_MAX) return MIO_ERR_TYPE;
        *out = (int64_t)u;
        return MIO_OK;
    case MGG_INT64:
        u = mio__le64(p);
        memcpy(out, &u, 8); /* two's complement, without an implementation-defined cast */
        return MIO_OK;
    default: return MIO_ERR_TYPE;
    }
}

MGGDEF int mgg_value_f64(const mgg_value *v, double *out)
{
    int64_t i;
    if (!v || !out) return MIO_ERR_ARG;
    if (v->type == MGG_FLOAT32) {
        uint32_t b = mgg__le32(v->p);
        float f;
        memcpy(&f, &b, 4);
        *out = f;
        return MIO_OK;
    }
    if (v->type == MGG_FLOAT64) {
        uint64_t b = mio__le64(v->p);
        memcpy(out, &b, 8);
        return MIO_OK;
    }
    if (v->type == MGG_UINT64) {
        *out = (double)mio__le64(v->p);
        return MIO_OK;
    }
    if (mgg_value_i64(v, &i) == MIO_OK) {
        *out = (double)i;
        return MIO_OK;
    }
    return MIO_ERR_TYPE;
}

/* the entry for key, or MIO_ERR_NOT_FOUND with a message */
static int mgg__lookup(const mgg_file *g, const char *key, const mgg_kv **kv, char *err, size_t es)
{
    mio__clear(err, es);
    if (!g || !key) return mio__fail(err, es, MIO_ERR_ARG, "mgg_get: NULL argument");
    *kv = mgg_find(g, key);
    if (!*kv) return mio__fail(err, es, MIO_ERR_NOT_FOUND, "%s: no metadata '%s'", g->path, key);
    return MIO_OK;
}

/* "metadata 'K' is a string, expected an integer" */
static void mgg__wrong_msg(char *b, size_t n, const mgg_kv *kv, const char *want)
{
    const char *tn = mgg__value_names[kv->v.type];
    snprintf(b, n, "metadata '%.200s' is %s %s, expected %s", kv->key, tn[0] == 'i' || tn[0] == 'a' ? "an" : "a", tn,
             want);
}

static int mgg__wrong(const mgg_file *g, const mgg_kv *kv, const char *want, char *err, size_t es)
{
    char m[400];
    mgg__wrong_msg(m, sizeof m, kv, want);
    return mio__fail(err, es, MIO_ERR_TYPE, "%s: %s", g->path, m);
}

MGGDEF int mgg_get_i64(const mgg_file *g, const char *key, int64_t *out, char *err, size_t err_size)
{
    const mgg_kv *kv;
    int rc = mgg__lookup(g, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->v.type == MGG_UINT64 && mio__le64(kv->v.p) > (uint64_t)INT64_MAX)
        return mio__fail(err, err_size, MIO_ERR_TYPE, "%s: metadata '%s' = %llu is out of range", g->path, key,
                         (unsigned long long)mio__le64(kv->v.p));
    if (mgg_value_i64(&kv->v, out) != MIO_OK) return mgg__wrong(g, kv, "an integer", err, err_size);
    return MIO_OK;
}

MGGDEF int mgg_get_f64(const mgg_file *g, const char *key, double *out, char *err, size_t err_size)
{
    const mgg_kv *kv;
    int rc = mgg__lookup(g, key, &kv, err, err_size);
    if (rc) return rc;
    if (mgg_value_f64(&kv->v, out) != MIO_OK) return mgg__wrong(g, kv, "a number", err, err_size);
    return MIO_OK;
}

MGGDEF int mgg_get_bool(const mgg_file *g, const char *key, int *out, char *err, size_t err_size)
{
    const mgg_kv *kv;
    int rc = mgg__lookup(g, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->v.type != MGG_BOOL) return mgg__wrong(g, kv, "a bool", err, err_size);
    *out = kv->v.p[0];
    return MIO_OK;
}

MGGDEF int mgg_get_str(const mgg_file *g, const char *key, const char **out, char *err, size_t err_size)
{
    const mgg_kv *kv;
    int rc = mgg__lookup(g, key, &kv, err, err_size);
    if (rc) return rc;
    if (kv->v.type != MGG_STRING) return mgg__wrong(g, kv, "a string", err, err_size);
    if (memchr(kv->v.p, 0, (size_t)kv->v.len))
        return mio__fail(err, err_size, MIO_ERR_TYPE, "%s: metadata '%s' is a string with a NUL byte inside", g->path, key);
    *out = (const char *)kv->v.p;
    return MIO_OK;
}

MGGDEF void mgg_iter_init(mgg_iter *it, const mgg_value *a)
{
    memset(it, 0, sizeof *it);
    if (!a || a->type != MGG_ARRAY) return;
    it->p = a->p;
    it->left = a->len;
    it->type = a->elem_type;
}

MGGDEF int mgg_iter_next(mgg_iter *it, mgg_value *e)
{
    if (!it->left) return 0;
    memset(e, 0, sizeof *e);
    e->type = it->type;
    e->elem_type = -1;
    e->len = 1;
    e->size = mgg__size_at(it->p, it->type);
    if (it->type == MGG_STRING) {
        e->len = mio__le64(it->p);
        e->p = it->p + 8;
    } else if (it->type == MGG_ARRAY) {
        e->elem_type = (int)mgg__le32(it->p);
        e->len = mio__le64(it->p + 4);
        e->p = it->p + 12;
    } else {
        e->p = it->p;
    }
    it->p += e->size;
    it->left--;
    return 1;
}

MGGDEF int mgg_load(mgg_file *g, const mgg_tensor *ct, char *err, size_t err_size)
{
    mgg_tensor *t;
    long sys = sysconf(_SC_PAGESIZE);
    size_t ps = sys > 0 ? (size_t)sys : 4096u, len;
    long long got;
    void *p;
    mio__clear(err, err_size);
    if (!g || !ct || ct < g->tensors || ct >= g->tensors + g->n_tensors)
        return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_load: not a tensor of this file");
    t = &g->tensors[ct - g->tensors];
    if (g->how != MIO_READ || t->t.data) return MIO_OK;
    if (t->t.nbytes == 0) {
        t->t.data = g->arena; /* any valid address: there is nothing to read */
        return MIO_OK;
    }
    len = (t->t.nbytes + ps - 1) / ps * ps;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: tensor '%s': out of memory for %zu bytes", g->path, t->t.name,
                         t->t.nbytes);
#if defined(MADV_HUGEPAGE)
    if (len >= ((size_t)8 << 20)) (void)madvise(p, len, MADV_HUGEPAGE);
#endif
    got = mio__pread_all(g->fd, p, t->t.nbytes, t->t.offset);
    if (got != (long long)t->t.nbytes) {
        int e = errno;
        munmap(p, len);
        if (got < 0)
            return mio__fail(err, err_size, MIO_ERR_IO, "%s: tensor '%s': read failed: %s", g->path, t->t.name, strerror(e));
        return mio__fail(err, err_size, MIO_ERR_IO, "%s: tensor '%s': the file ended after %lld of its %zu bytes (cut while it was open?)",
                         g->path, t->t.name, got, t->t.nbytes);
    }
    t->t.data = p;
    t->t.copy_len = len;
    t->t.mapped = 1;
    return MIO_OK;
}

/* ---- the MoE layer ----
   The rules per architecture, from llama.cpp (src/models/<arch>.cpp, llm_graph_context::
   build_moe_ffn in src/llama-graph.cpp, the hparams of src/llama-model.cpp) and its converter
   (convert_hf_to_gguf.py, which writes the keys from config.json), stated as the moe_config
   examples/hf_config.h builds from that config.json:
     llama      Mixtral: softmax, top-k, renormalised (norm_w true).
     qwen2moe   softmax, top-k, no renormalisation (llama.cpp passes false; HF norm_topk_prob's
                default), one shared expert of width S times sigmoid(ffn_gate_inp_shexp . x).
     qwen3moe   softmax, top-k, renormalised (llama.cpp passes true).
     olmoe      softmax, top-k, no renormalisation.
     deepseek2  expert_gating_func 1 (softmax, the default for V2 files without the key): the
                DeepSeek-V2 router, weights x expert_weights_scale, never renormalised (HF
                DeepseekV2Moe; a true expert_weights_norm is ignored with a note), groups with
                the group score max when expert_group_count > 1 (HF group_limited_greedy;
                llama.cpp uses the top-2 sum written for V3 here); 2 (sigmoid): DeepSeek-V3,
                selection on p + exp_probs_b, groups by the top-2 sum, /(sum + 1e-20) when
                expert_weights_norm, x expert_weights_scale. Shared experts: expert_shared_count
                of the expert width. Blocks below leading_dense_block_count are dense.
     glm4moe    the deepseek2 rules with sigmoid by default (GLM-4.5).
     gpt-oss    router with bias, top-k of the logits, softmax over the k (llama.cpp
                SOFTMAX_WEIGHT), experts with biases, SwiGLU-OAI alpha 1.702 limit 7 (both fixed
                in llama.cpp's LLM_FFN_SWIGLU_OAI_MOE).
   A present expert_weights_norm is honoured by the softmax families too (it states HF's
   norm_topk_prob), and expert_weights_scale other than 0 and 1 scales them, as llama.cpp does.
   Renormalisation divides by the sum (HF) where llama.cpp divides by max(sum, 6.1e-5): they
   differ only when k weights sum below 6.1e-5, which softmax and sigmoid scores of the top k
   of E <= 2^14 experts never do. */

enum { MGG_LLAMA, MGG_QWEN2MOE, MGG_QWEN3MOE, MGG_OLMOE, MGG_DEEPSEEK2, MGG_GLM4MOE, MGG_GPTOSS };
static const struct { const char *name; int id; } mgg__arch_table[] = {
    {"llama", MGG_LLAMA}, {"qwen2moe", MGG_QWEN2MOE}, {"qwen3moe", MGG_QWEN3MOE},
    {"deepseek2", MGG_DEEPSEEK2}, {"glm4moe", MGG_GLM4MOE}, {"gpt-oss", MGG_GPTOSS},
    {"olmoe", MGG_OLMOE}};
#define MGG__N_ARCH (sizeof mgg__arch_table / sizeof mgg__arch_table[0])

MGGDEF const char *mgg_architectures(void) { return "llama qwen2moe qwen3moe deepseek2 glm4moe gpt-oss olmoe"; }

typedef struct mgg__plan {
    mgg_file *g;
    mgg_layer *L;
    int arch;
    char *err;
    size_t es;
    int rc;                    /* the first error's code; its message is in err */
} mgg__plan;

#if defined(__GNUC__) || defined(__clang__)
static void mgg__pfail(mgg__plan *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
static void mgg__pfail(mgg__plan *p, int code, const char *fmt, ...)
{
    char m[1024];
    va_list ap;
    if (p->rc) return;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    p->rc = code;
    mio__fail(p->err, p->es, code, "%s: %s", p->g->path, m);
}

/* "<arch>.<suffix>" */
static const char *mgg__key(mgg__plan *p, const char *suffix, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", p->L->arch, suffix);
    return buf;
}

/* An integer hyperparameter that lands in an int: def if absent (required: an error), an
   error if present with another type, negative, or past INT_MAX. A per-layer array (as some
   converters write expert_feed_forward_length) gives its entry for the layer. */
static int64_t mgg__hp_int(mgg__plan *p, const char *suffix, int64_t def, int required)
{
    char key[96], m[400];
    const mgg_kv *kv;
    mgg_value x;
    int64_t v = def;
    int r;
    if (p->rc) return def;
    mgg__key(p, suffix, key, sizeof key);
    kv = mgg_find(p->g, key);
    if (!kv) {
        if (required) mgg__pfail(p, MIO_ERR_NOT_FOUND, "no metadata '%s' (needed for the MoE layer)", key);
        return def;
    }
    x = kv->v;
    if (kv->v.type == MGG_ARRAY) {
        mgg_iter it;
        int64_t i = 0;
        int found = 0;
        mgg_iter_init(&it, &kv->v);
        while (!found && mgg_iter_next(&it, &x)) found = i++ == p->L->layer;
        if (!found || mgg_value_i64(&x, &v) != MIO_OK) {
            mgg__pfail(p, MIO_ERR_TYPE, "metadata '%s' is an array without an integer for layer %lld", key,
                       (long long)p->L->layer);
            return def;
        }
    } else if ((r = mgg_value_i64(&x, &v)) != MIO_OK) {
        if (x.type == MGG_UINT64) mgg__pfail(p, MIO_ERR_TYPE, "metadata '%s' = %llu is out of range", key,
                                             (unsigned long long)mio__le64(x.p));
        else mgg__wrong_msg(m, sizeof m, kv, "an integer"), mgg__pfail(p, MIO_ERR_TYPE, "%s", m);
        return def;
    }
    if (v < 0 || v > INT_MAX) {
        mgg__pfail(p, MIO_ERR_FORMAT, "metadata '%s' = %lld is out of range", key, (long long)v);
        return def;
    }
    return v;
}

static double mgg__hp_f64(mgg__plan *p, const char *suffix, double def, int *present)
{
    char key[96], m[400];
    const mgg_kv *kv;
    double v = def;
    *present = 0;
    if (p->rc) return def;
    kv = mgg_find(p->g, mgg__key(p, suffix, key, sizeof key));
    if (!kv) return def;
    if (mgg_value_f64(&kv->v, &v) != MIO_OK) {
        mgg__wrong_msg(m, sizeof m, kv, "a number");
        mgg__pfail(p, MIO_ERR_TYPE, "%s", m);
        return def;
    }
    if (!(v == v) || v > 3.4e38 || v < -3.4e38) {
        mgg__pfail(p, MIO_ERR_FORMAT, "metadata '%s' = %g is not a finite float", key, v);
        return def;
    }
    *present = 1;
    return v;
}

static int mgg__hp_bool(mgg__plan *p, const char *suffix, int def, int *present)
{
    char key[96], m[400];
    const mgg_kv *kv;
    *present = 0;
    if (p->rc) return def;
    kv = mgg_find(p->g, mgg__key(p, suffix, key, sizeof key));
    if (!kv) return def;
    if (kv->v.type != MGG_BOOL) {
        mgg__wrong_msg(m, sizeof m, kv, "a bool");
        mgg__pfail(p, MIO_ERR_TYPE, "%s", m);
        return def;
    }
    *present = 1;
    return kv->v.p[0];
}

/* blk.<layer>.<suffix> */
static const mgg_tensor *mgg__t(mgg__plan *p, const char *suffix, char *name, size_t n)
{
    snprintf(name, n, "blk.%lld.%s", (long long)p->L->layer, suffix);
    return mgg_find_tensor(p->g, name);
}

static void mgg__ne_str(char *b, size_t n, const int64_t *ne, int nd)
{
    size_t at = (size_t)snprintf(b, n, "[");
    int i;
    for (i = 0; i < nd && at < n; i++) at += (size_t)snprintf(b + at, n - at, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (at < n) snprintf(b + at, n - at, "]");
}

/* Checks t's shape (ggml order) and type, loads it and points the view at it. kind 'm': an
   expert or shared matrix (every type moe.h takes); 'v': a router or a vector (F32, F16, BF16).
   A vector of n may also be stored [n, 1]. */
static void mgg__bind(mgg__plan *p, moe_tensor *slot, const mgg_tensor *t, int kind, int nd, int64_t a, int64_t b,
                      int64_t c, const char *what)
{
    int64_t want[3];
    char s1[96], s2[96], e[MIO_ERR_SIZE];
    moe_dtype dt;
    int i, ok;
    if (p->rc) return;
    want[0] = a, want[1] = b, want[2] = c;
    ok = t->n_dims == nd;
    for (i = 0; i < nd && ok; i++) ok = t->ne[i] == want[i];
    if (!ok && nd == 1 && t->n_dims == 2 && t->ne[0] == a && t->ne[1] == 1) ok = 1;
    if (!ok) {
        mgg__ne_str(s1, sizeof s1, t->ne, t->n_dims);
        mgg__ne_str(s2, sizeof s2, want, nd);
        mgg__pfail(p, MIO_ERR_FORMAT, "tensor '%s' has ne %s, expected %s (%s)", t->t.name, s1, s2, what);
        return;
    }
    if (!mgg_moe_dtype(t->type, &dt) || (kind == 'v' && t->type != MGG_GGML_F32 && t->type != MGG_GGML_F16 &&
                                         t->type != MGG_GGML_BF16)) {
        if (kind == 'v')
            mgg__pfail(p, MIO_ERR_UNSUPPORTED, "tensor '%s' has type %s (%d), not supported for a router or a vector (F32, F16, BF16)",
                       t->t.name, mgg__types[t->type].name, t->type);
        else
            mgg__pfail(p, MIO_ERR_UNSUPPORTED, "tensor '%s' has type %s (%d), not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K, MXFP4)",
                       t->t.name, mgg__types[t->type].name, t->type);
        return;
    }
    if ((i = mgg_load(p->g, t, e, sizeof e)) != MIO_OK) {
        p->rc = i;
        mio__fail(p->err, p->es, i, "%s", e); /* it names the file already */
        return;
    }
    for (i = 0; i < p->L->n_used && p->L->used[i] != t; i++) continue;
    if (i == p->L->n_used) {
        if (p->L->n_used == MGG_MAX_USED) {
            mgg__pfail(p, MIO_ERR_ARG, "more than %d tensors in one layer", MGG_MAX_USED); /* cannot happen */
            return;
        }
        p->L->used[p->L->n_used++] = t;
    }
    slot->data = t->t.data;
    slot->dtype = dt;
    slot->layout = MOE_OUT_IN;
    slot->n_elems = t->t.nelem;
}

/* a required tensor of the block */
static const mgg_tensor *mgg__need_t(mgg__plan *p, const char *suffix, const char *why)
{
    char name[128];
    const mgg_tensor *t;
    if (p->rc) return NULL;
    t = mgg__t(p, suffix, name, sizeof name);
    if (!t) mgg__pfail(p, MIO_ERR_NOT_FOUND, "missing tensor '%s' (%s)", name, why);
    return t;
}

/* an expert width from a tensor's shape: 1 if usable */
static int mgg__width(mgg__plan *p, int64_t ff, const mgg_tensor *t)
{
    if (ff >= 1 && ff <= INT_MAX) return 1;
    mgg__pfail(p, MIO_ERR_FORMAT, "tensor '%s' gives an expert width of %lld", t->t.name, (long long)ff);
    return 0;
}

/* the experts: merged _exps tensors, the fused gate_up, or one tensor an expert (older
   Mixtral files); sets cfg.d_ff */
static void mgg__experts(mgg__plan *p, int64_t d, int64_t E)
{
    mgg_layer *L = p->L;
    char name[128];
    const mgg_tensor *gt = mgg__t(p, "ffn_gate_exps.weight", name, sizeof name);
    const mgg_tensor *gu = mgg__t(p, "ffn_gate_up_exps.weight", name, sizeof name);
    const mgg_tensor *dn;
    int64_t ff;
    if (gt || !gu) {
        const mgg_tensor *up;
        if (!gt && mgg__t(p, "ffn_gate.0.weight", name, sizeof name)) { /* one tensor an expert */
            static const char *const kinds[3] = {"ffn_gate", "ffn_up", "ffn_down"};
            moe_tensor *slots[3];
            const mgg_tensor *first[3] = {NULL, NULL, NULL};
            int k, e;
            slots[0] = &L->w.gate, slots[1] = &L->w.up, slots[2] = &L->w.down;
            first[0] = mgg__t(p, "ffn_gate.0.weight", name, sizeof name);
            ff = first[0]->ne[1];
            if (!mgg__width(p, ff, first[0])) return;
            for (k = 0; k < 3 && !p->rc; k++) {
                L->per_expert[k] = (const void **)MIO_MALLOC((size_t)E * sizeof(void *));
                if (!L->per_expert[k]) {
                    mgg__pfail(p, MIO_ERR_NOMEM, "out of memory");
                    return;
                }
                for (e = 0; e < E && !p->rc; e++) {
                    char sfx[64];
                    const mgg_tensor *t;
                    snprintf(sfx, sizeof sfx, "%s.%d.weight", kinds[k], e);
                    t = mgg__need_t(p, sfx, "one of the experts, stored one tensor an expert");
                    if (!t) return;
                    if (e == 0) first[k] = t;
                    else if (t->type != first[k]->type) {
                        mgg__pfail(p, MIO_ERR_UNSUPPORTED, "tensor '%s' has type %s but '%s' has %s: one type per expert set is supported",
                                   t->t.name, mgg__types[t->type].name, first[k]->t.name, mgg__types[first[k]->type].name);
                        return;
                    }
                    if (k < 2) mgg__bind(p, slots[k], t, 'm', 2, d, ff, 1, "embedding_length, expert width");
                    else mgg__bind(p, slots[k], t, 'm', 2, ff, d, 1, "expert width, embedding_length");
                    L->per_expert[k][e] = slots[k]->data;
                }
                slots[k]->data = NULL;
                slots[k]->per_expert = L->per_expert[k];
                slots[k]->n_elems = (size_t)(d * ff);
            }
            L->cfg.d_ff = (int)ff;
            return;
        }
        gt = mgg__need_t(p, "ffn_gate_exps.weight", "the experts' gate projections");
        up = mgg__need_t(p, "ffn_up_exps.weight", "the experts' up projections");
        dn = mgg__need_t(p, "ffn_down_exps.weight", "the experts' down projections");
        if (p->rc) return;
        ff = gt->ne[1];
        if (!mgg__width(p, ff, gt)) return;
        mgg__bind(p, &L->w.gate, gt, 'm', 3, d, ff, E, "embedding_length, expert width, expert_count");
        mgg__bind(p, &L->w.up, up, 'm', 3, d, ff, E, "embedding_length, expert width, expert_count");
    } else {
        dn = mgg__need_t(p, "ffn_down_exps.weight", "the experts' down projections");
        if (p->rc) return;
        if (gu->ne[1] % 2) {
            mgg__pfail(p, MIO_ERR_FORMAT, "tensor '%s' has an odd ne[1] = %lld: no gate and up halves", gu->t.name, (long long)gu->ne[1]);
            return;
        }
        ff = gu->ne[1] / 2;
        if (!mgg__width(p, ff, gu)) return;
        mgg__bind(p, &L->w.gate_up, gu, 'm', 3, d, 2 * ff, E, "embedding_length, 2 x expert width, expert_count");
        L->w.gate_up_split = MOE_SPLIT_HALVES; /* llama.cpp: views of the first and second half */
    }
    mgg__bind(p, &L->w.down, dn, 'm', 3, ff, d, E, "expert width, embedding_length, expert_count");
    L->cfg.d_ff = (int)ff;
}

/* the shared experts ffn_{gate,up,down}_shexp: n of them, S wide together */
static void mgg__shared(mgg__plan *p, int64_t d, int64_t n, const char *why)
{
    mgg_layer *L = p->L;
    const mgg_tensor *g = mgg__need_t(p, "ffn_gate_shexp.weight", why);
    const mgg_tensor *u = mgg__need_t(p, "ffn_up_shexp.weight", why);
    const mgg_tensor *dn = mgg__need_t(p, "ffn_down_shexp.weight", why);
    int64_t S, key;
    if (p->rc) return;
    S = g->ne[1];
    if (S < 1 || S > INT_MAX) {
        mgg__pfail(p, MIO_ERR_FORMAT, "tensor '%s' gives a shared width of %lld", g->t.name, (long long)S);
        return;
    }
    key = mgg__hp_int(p, "expert_shared_feed_forward_length", 0, 0);
    if (!p->rc && key && key != S) {
        mgg__pfail(p, MIO_ERR_FORMAT, "tensor '%s' is %lld wide, but %s.expert_shared_feed_forward_length = %lld", g->t.name,
                   (long long)S, L->arch, (long long)key);
        return;
    }
    mgg__bind(p, &L->w.shared_gate_proj, g, 'm', 2, d, S, 1, "embedding_length, shared width");
    mgg__bind(p, &L->w.shared_up, u, 'm', 2, d, S, 1, "embedding_length, shared width");
    mgg__bind(p, &L->w.shared_down, dn, 'm', 2, S, d, 1, "shared width, embedding_length");
    if (p->rc) return;
    /* as hf_config.h: n experts of the routed width when that is what S is, else one of S */
    if (n > 1 && S == n * L->cfg.d_ff) {
        L->cfg.n_shared = (int)n;
        L->cfg.d_shared = L->cfg.d_ff;
    } else if (n > 1 && S % n == 0) {
        L->cfg.n_shared = (int)n;
        L->cfg.d_shared = (int)(S / n);
    } else {
        L->cfg.n_shared = 1;
        L->cfg.d_shared = (int)S;
    }
}

/* an optional vector of the block (a bias) into slot; 1 if present */
static int mgg__vec(mgg__plan *p, moe_tensor *slot, const char *suffix, int nd, int64_t a, int64_t b, const char *what)
{
    char name[128];
    const mgg_tensor *t = mgg__t(p, suffix, name, sizeof name);
    if (!t || p->rc) return 0;
    mgg__bind(p, slot, t, 'v', nd, a, b, 1, what);
    return 1;
}

MGGDEF int mgg_plan_layer(mgg_file *g, int64_t layer, mgg_layer *L, char *err, size_t err_size)
{
    mgg__plan pl, *p = &pl;
    moe_config *m;
    const char *arch = NULL;
    char e[MIO_ERR_SIZE], key[96], name[128];
    int64_t n_layers, d, E, k, ff_key;
    const mgg_tensor *router;
    size_t i;
    int r, present;

    mio__clear(err, err_size);
    if (!L) return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_plan_layer: NULL layer");
    memset(L, 0, sizeof *L);
    if (!g || !g->kv_sorted) return mio__fail(err, err_size, MIO_ERR_ARG, "mgg_plan_layer: the file is not open");
    memset(p, 0, sizeof *p);
    p->g = g, p->L = L, p->err = err, p->es = err_size;
    m = &L->cfg;
    L->layer = layer;

    r = mgg_get_str(g, "general.architecture", &arch, e, sizeof e);
    if (r == MIO_ERR_NOT_FOUND) return mio__fail(err, err_size, r, "%s: no metadata 'general.architecture': not a llama.cpp model file", g->path);
    if (r) return mio__fail(err, err_size, r, "%s", e);
    p->arch = -1;
    for (i = 0; i < MGG__N_ARCH; i++)
        if (!strcmp(arch, mgg__arch_table[i].name)) p->arch = mgg__arch_table[i].id;
    if (p->arch < 0)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: architecture '%.64s' is not supported; supported: %s", g->path, arch,
                         mgg_architectures());
    snprintf(L->arch, sizeof L->arch, "%s", arch);

    n_layers = mgg__hp_int(p, "block_count", 0, 1);
    if (p->rc) goto fail;
    if (layer < 0 || layer >= n_layers) {
        if (n_layers == 0) mgg__pfail(p, MIO_ERR_ARG, "layer %lld is out of range: the model has no blocks (%s.block_count = 0)",
                                      (long long)layer, arch);
        else mgg__pfail(p, MIO_ERR_ARG, "layer %lld is out of range: the model has %lld block%s (%s.block_count), 0..%lld",
                        (long long)layer, (long long)n_layers, n_layers == 1 ? "" : "s", arch, (long long)n_layers - 1);
        goto fail;
    }
    d = mgg__hp_int(p, "embedding_length", 0, 1);
    E = mgg__hp_int(p, "expert_count", 0, 1);
    k = mgg__hp_int(p, "expert_used_count", 0, 1);
    if (p->rc) goto fail;
    if (E == 0) {
        mgg__pfail(p, MIO_ERR_UNSUPPORTED, "%s.expert_count = 0: a dense model, it has no experts", arch);
        goto fail;
    }
    if (d == 0 || k == 0 || k > E) {
        mgg__pfail(p, MIO_ERR_FORMAT, "bad sizes: %s.embedding_length = %lld, expert_count = %lld, expert_used_count = %lld (1..expert_count)",
                   arch, (long long)d, (long long)E, (long long)k);
        goto fail;
    }
    if (p->arch == MGG_DEEPSEEK2 || p->arch == MGG_GLM4MOE) {
        int64_t lead = mgg__hp_int(p, "leading_dense_block_count", 0, 0);
        if (!p->rc && layer < lead) {
            mgg__pfail(p, MIO_ERR_ARG, "layer %lld is a dense layer (%s.leading_dense_block_count = %lld): it has no experts",
                       (long long)layer, arch, (long long)lead);
            goto fail;
        }
    }
    router = mgg__t(p, "ffn_gate_inp.weight", name, sizeof name);
    if (!router) {
        mgg__pfail(p, MIO_ERR_NOT_FOUND, "layer %lld has no MoE block: no tensor '%s' (the router); a dense layer?",
                   (long long)layer, name);
        goto fail;
    }
    m->d_model = (int)d;
    m->n_experts = (int)E;
    m->top_k = (int)k;
    m->act = MOE_ACT_SILU;
    mgg__bind(p, &L->w.router, router, 'v', 2, d, E, 1, "embedding_length, expert_count");
    mgg__experts(p, d, E);
    ff_key = mgg__hp_int(p, "expert_feed_forward_length", 0, 0);
    if (!p->rc && ff_key && ff_key != m->d_ff) {
        mgg__pfail(p, MIO_ERR_FORMAT, "the experts are %d wide, but %s.expert_feed_forward_length = %lld", m->d_ff, arch,
                   (long long)ff_key);
        goto fail;
    }
    if (p->rc) goto fail;

    switch (p->arch) {
    case MGG_LLAMA:
        m->norm = MOE_NORM_SUM;
        break;
    case MGG_QWEN2MOE:
    case MGG_QWEN3MOE:
    case MGG_OLMOE: {
        int norm = mgg__hp_bool(p, "expert_weights_norm", p->arch == MGG_QWEN3MOE, &present);
        double s = mgg__hp_f64(p, "expert_weights_scale", 0.0, &present);
        m->norm = norm ? MOE_NORM_SUM : MOE_NORM_NONE;
        if (present && s != 0.0 && s != 1.0) m->scale = (float)s;
        if (p->arch == MGG_QWEN2MOE && mgg__t(p, "ffn_gate_shexp.weight", name, sizeof name)) {
            const mgg_tensor *sg = mgg__need_t(p, "ffn_gate_inp_shexp.weight", "the shared expert's gate");
            mgg__shared(p, d, 1, "the shared expert, as ffn_gate_shexp is there");
            if (sg) mgg__bind(p, &L->w.shared_gate, sg, 'v', 1, d, 1, 1, "embedding_length");
            m->shared_gate = MOE_SHARED_GATE_SIGMOID;
        }
        break;
    }
    case MGG_DEEPSEEK2:
    case MGG_GLM4MOE: {
        int64_t gating = mgg__hp_int(p, "expert_gating_func", p->arch == MGG_GLM4MOE ? 2 : 1, 0);
        int64_t ng = mgg__hp_int(p, "expert_group_count", 0, 0), kg, ns;
        int norm = mgg__hp_bool(p, "expert_weights_norm", 0, &present);
        int norm_present = present;
        double s = mgg__hp_f64(p, "expert_weights_scale", 1.0, &present);
        int has_kg = mgg_find(g, mgg__key(p, "expert_group_used_count", key, sizeof key)) != NULL;
        kg = mgg__hp_int(p, "expert_group_used_count", 0, 0);
        ns = mgg__hp_int(p, "expert_shared_count", 0, 0);
        if (p->rc) break;
        if (gating == 0) gating = p->arch == MGG_GLM4MOE ? 2 : 1; /* llama.cpp: NONE = the default */
        if (gating != 1 && gating != 2) {
            mgg__pfail(p, MIO_ERR_UNSUPPORTED, "%s.expert_gating_func = %lld is not supported (1 softmax, 2 sigmoid)", arch, (long long)gating);
            break;
        }
        if (ng > 0 && !has_kg) {
            mgg__pfail(p, MIO_ERR_NOT_FOUND, "%s.expert_group_count = %lld needs %s.expert_group_used_count", arch, (long long)ng, arch);
            break;
        }
        if (ng > 1 && (kg < 1 || kg > ng || E % ng)) {
            mgg__pfail(p, MIO_ERR_FORMAT, "%s.expert_group_count = %lld and expert_group_used_count = %lld do not fit %lld experts "
                       "(the groups must divide them, 1..groups kept)", arch, (long long)ng, (long long)kg, (long long)E);
            break;
        }
        m->scale = (float)(s != 0.0 ? s : 1.0); /* llama.cpp: 0 = no scaling */
        if (gating == 1) { /* DeepSeek-V2 */
            m->score = MOE_SCORE_SOFTMAX;
            if (ng > 1) {
                m->n_group = (int)ng;
                m->topk_group = (int)kg;
                m->group_score = MOE_GROUP_MAX;
            }
            if (norm_present && norm)
                snprintf(L->note, sizeof L->note, "%s.expert_weights_norm = true is ignored, as in HF deepseek_v2 (softmax "
                         "weights are not renormalised)", arch);
        } else { /* DeepSeek-V3, GLM-4.5 */
            m->score = MOE_SCORE_SIGMOID;
            m->n_group = (int)ng;
            m->topk_group = (int)kg;
            m->group_score = MOE_GROUP_TOP2_SUM;
            if (norm) {
                m->norm = MOE_NORM_SUM;
                m->norm_eps = 1e-20f;
            }
            m->select_bias = mgg__vec(p, &L->w.select_bias, "exp_probs_b.bias", 1, E, 1, "expert_count");
        }
        if (ns > 0) mgg__shared(p, d, ns, "expert_shared_count > 0 needs the shared experts");
        break;
    }
    case MGG_GPTOSS: {
        const mgg_tensor *rb = mgg__need_t(p, "ffn_gate_inp.bias", "gpt-oss's router bias");
        int64_t ff = m->d_ff;
        m->score = MOE_SCORE_SOFTMAX_TOPK;
        m->router_bias = 1;
        m->expert_bias = 1;
        m->act = MOE_ACT_SWIGLU_OAI;
        m->act_alpha = 1.702f;
        m->act_limit = 7.0f;
        if (rb) mgg__bind(p, &L->w.router_bias, rb, 'v', 1, E, 1, 1, "expert_count");
        if (L->w.gate_up.data) {
            const mgg_tensor *b = mgg__need_t(p, "ffn_gate_up_exps.bias", "gpt-oss's expert biases");
            if (b) mgg__bind(p, &L->w.gate_up_bias, b, 'v', 2, 2 * ff, E, 1, "2 x expert width, expert_count");
        } else {
            const mgg_tensor *bg = mgg__need_t(p, "ffn_gate_exps.bias", "gpt-oss's expert biases");
            const mgg_tensor *bu = mgg__need_t(p, "ffn_up_exps.bias", "gpt-oss's expert biases");
            if (bg) mgg__bind(p, &L->w.gate_bias, bg, 'v', 2, ff, E, 1, "expert width, expert_count");
            if (bu) mgg__bind(p, &L->w.up_bias, bu, 'v', 2, ff, E, 1, "expert width, expert_count");
        }
        {
            const mgg_tensor *bd = mgg__need_t(p, "ffn_down_exps.bias", "gpt-oss's expert biases");
            if (bd) mgg__bind(p, &L->w.down_bias, bd, 'v', 2, d, E, 1, "embedding_length, expert_count");
        }
        break;
    }
    }
    if (p->rc) goto fail;
    return MIO_OK;
fail:
    mgg_layer_free(L);
    memset(L, 0, sizeof *L);
    return p->rc ? p->rc : MIO_ERR_FORMAT;
}

MGGDEF void mgg_layer_free(mgg_layer *L)
{
    int k;
    if (!L) return;
    for (k = 0; k < 3; k++) {
        MIO_FREE((void *)L->per_expert[k]);
        L->per_expert[k] = NULL;
    }
}

MGGDEF void mgg_on_packed(void *user, const void *data, size_t bytes)
{
    mgg_layer *L = (mgg_layer *)user;
    const char *p = (const char *)data;
    int i;
    if (!L) return;
    for (i = 0; i < L->n_used; i++) {
        const mio_tensor *t = &L->used[i]->t;
        const char *b = (const char *)t->data;
        if (t->mapped && p >= b && p < b + t->nbytes) {
            size_t off = (size_t)(p - b), len = bytes <= t->nbytes - off ? bytes : t->nbytes - off;
            if (mio_tensor_release(t, off, len, NULL, 0) == MIO_OK) L->released += len;
            return;
        }
    }
}

#endif /* MOE_GGUF_IMPLEMENTATION_DONE */
#endif /* MOE_GGUF_IMPLEMENTATION */

/*
   Version history
     0.1.0  GGUF v2/v3 reader (MIO_READ and MIO_MAP, every field validated, each malformed input
            its own message), and the MoE layer of a block of the llama, qwen2moe, qwen3moe,
            deepseek2, glm4moe, gpt-oss and olmoe architectures (issue 9).

------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2025 the moe.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an
overt act of relinquishment in perpetuity of all present and future rights to
this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
