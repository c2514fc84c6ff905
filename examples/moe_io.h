/* moe_io.h v0.4.0 - JSON, safetensors and .npy readers for the moe.h example CLI.
   public domain or MIT, see end of file.

   This is not part of moe.h: it is the file-format side of the example CLI, which runs one MoE
   layer of a Hugging Face checkpoint. It reads config.json, model.safetensors (single file or
   sharded through model.safetensors.index.json) and .npy activations, and writes .npy results.

   Do this:
      #define _DEFAULT_SOURCE          // before the first #include of that file (see below)
      #define MOE_IO_IMPLEMENTATION
      #include "moe_io.h"
   in *one* C or C++ file. Other files include "moe_io.h" without the define.

   Feature macros: the implementation needs POSIX 2008 plus madvise(MADV_DONTNEED), which glibc
   and musl declare only under _DEFAULT_SOURCE (or _GNU_SOURCE). Feature macros count only
   before the first system header, so define one at the top of the implementation file. If
   moe_io.h is that file's first include it defines _DEFAULT_SOURCE itself; if a system header
   came first without it, compilation stops with an #error that says so.

   Quick start (error handling shortened; every call returns MIO_OK == 0 or a negative code, and
   fills err with a message that names the file, the key or tensor, and what was wrong):

      char err[MIO_ERR_SIZE];
      mio_json_doc cfg;
      int64_t n_experts = 8;                              // default if the key is absent
      if (mio_json_parse_file(&cfg, "ckpt/config.json", err, sizeof err)) die(err);
      int r = mio_json_get_i64(mio_json_root(&cfg), "num_local_experts", &n_experts,
                               err, sizeof err);
      if (r && r != MIO_ERR_NOT_FOUND) die(err);          // present but not an integer

      mio_model m;
      const mio_tensor *t;
      if (mio_model_open(&m, "ckpt", err, sizeof err)) die(err);
      if (mio_model_tensor(&m, "model.layers.0.mlp.gate.weight", &t, err, sizeof err)) die(err);
      // t->dtype (MIO_DTYPE_BF16, ...), t->rank, t->shape[], t->data (NOT aligned), t->nbytes
      pack_somewhere(t);
      mio_tensor_release(t, 0, t->nbytes, err, sizeof err); // drop its pages from memory
      mio_model_close(&m);
      mio_json_free(&cfg);

      float *x; size_t T, D;
      if (mio_npy_read("x.npy", &x, &T, &D, err, sizeof err)) die(err);
      if (mio_npy_write_f32("y.npy", y, T, D, err, sizeof err)) die(err); // all or nothing
      MIO_FREE(x);

   Configuration macros (define before including):
      MIO_STATIC            unset    make every function static (private to one file)
      MIO_MALLOC(sz)        malloc   the allocator of everything moe_io.h allocates (define the
      MIO_REALLOC(p, sz)    realloc  three together or none); mio_npy_read's array comes from
      MIO_FREE(p)           free     it, so free that with MIO_FREE
      MIO_JSON_MAX_DEPTH    64       deepest nesting of arrays/objects the JSON parser accepts
      MIO_JSON_MAX_FILE     4 MiB    largest file mio_json_parse_file reads (config.json)
      MIO_ST_MAX_HEADER     100000000  largest safetensors JSON header accepted, in bytes (the
                                     limit of the reference Rust implementation)
      MIO_INDEX_MAX_FILE    64 MiB   largest model.safetensors.index.json accepted
      MIO_MAX_RANK          8        most dimensions a safetensors tensor may have
      MIO_NPY_MAX_RANK      32       most dimensions parsed from a .npy header (numpy's limit)

   Memory: every reader's memory is bounded by its input. mio_json_parse (a DOM) takes the
   input size plus one 80-byte node per value (counted in a first pass, so never more): at
   most about 41 times the input, which is why it is for small files (MIO_JSON_MAX_FILE). The
   safetensors header and the index, which can be large, are read by streaming parsers that
   keep only the tensor names and entries: at most about 10 times the header or index size.

   Conventions:
   - Every function that can fail takes (char *err, size_t err_size): err may be NULL; on
     failure it receives a NUL-terminated message, on success "". A message names what failed
     first and the reason last; one longer than err_size is shortened in the middle (" ... "),
     so both ends survive. MIO_ERR_SIZE (1024) holds every message short of very long paths;
     names taken from a file (tensor names, keys) are cut at 200 bytes in messages.
   - Nothing is printed, nothing exits, there is no global state. Objects are not thread-safe;
     distinct objects may be used from distinct threads.
   - Byte offsets in messages count from 0. Sizes are size_t with overflow-checked products.
*/
#if defined(MOE_IO_IMPLEMENTATION) && !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
#define _DEFAULT_SOURCE 1 /* only effective when this is the first include; see above */
#endif

#ifndef MOE_IO_H
#define MOE_IO_H

#include <stddef.h>
#include <stdint.h>

#define MIO_VERSION_MAJOR 0
#define MIO_VERSION_MINOR 4
#define MIO_VERSION_PATCH 0

#if defined(MIO_STATIC) && (defined(__GNUC__) || defined(__clang__))
#define MIODEF static __attribute__((unused)) /* a program need not call every function */
#elif defined(MIO_STATIC)
#define MIODEF static
#else
#define MIODEF extern
#endif

#if defined(MIO_MALLOC) && defined(MIO_REALLOC) && defined(MIO_FREE)
#elif !defined(MIO_MALLOC) && !defined(MIO_REALLOC) && !defined(MIO_FREE)
#include <stdlib.h>
#define MIO_MALLOC(sz) malloc(sz)
#define MIO_REALLOC(p, sz) realloc(p, sz)
#define MIO_FREE(p) free(p)
#else
#error "moe_io.h: define MIO_MALLOC, MIO_REALLOC and MIO_FREE together, or none of them"
#endif

#ifndef MIO_JSON_MAX_DEPTH
#define MIO_JSON_MAX_DEPTH 64
#endif
#ifndef MIO_JSON_MAX_FILE
#define MIO_JSON_MAX_FILE ((size_t)4 << 20)
#endif
#ifndef MIO_INDEX_MAX_FILE
#define MIO_INDEX_MAX_FILE ((size_t)64 << 20)
#endif
#ifndef MIO_ST_MAX_HEADER
#define MIO_ST_MAX_HEADER 100000000
#endif
#ifndef MIO_MAX_RANK
#define MIO_MAX_RANK 8
#endif
#ifndef MIO_NPY_MAX_RANK
#define MIO_NPY_MAX_RANK 32
#endif

#define MIO_ERR_SIZE 1024

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results ---- */
enum {
    MIO_OK = 0,
    MIO_ERR_ARG = -1,         /* NULL pointer or out-of-range argument */
    MIO_ERR_IO = -2,          /* a file or directory is missing, or open/read/write/mmap failed */
    MIO_ERR_NOMEM = -3,       /* malloc failed */
    MIO_ERR_FORMAT = -4,      /* malformed JSON, safetensors or npy content */
    MIO_ERR_NOT_FOUND = -5,   /* JSON key absent (or null), tensor not in the file/index */
    MIO_ERR_TYPE = -6,        /* JSON value of another type, or not representable as asked */
    MIO_ERR_UNSUPPORTED = -7  /* well-formed but not handled: npy dtype, order, rank, version */
};
MIODEF const char *mio_result_str(int result); /* "MIO_ERR_FORMAT: malformed file content" */

/* ---- JSON ----
   A strict RFC 8259 parser into a flat DOM: one array of nodes in document order (a container
   is followed by its children) and one arena of decoded strings. Strings are UTF-8 validated,
   escapes (\uXXXX with surrogate pairs) decoded, and NUL-terminated (an escaped \u0000 stays in
   the string; use str_len). Numbers keep their double value, and their exact int64 value when
   they are written as an integer that fits. Nesting is limited to MIO_JSON_MAX_DEPTH and the
   parser uses no recursion. NaN, Infinity, comments, trailing commas, leading zeros and
   trailing content are rejected; a leading UTF-8 byte-order mark is skipped. Duplicate keys are
   kept and lookups return the first. Node pointers stay valid until mio_json_free. Object
   lookup is a linear scan: fine for a config. Memory: len + 1 bytes of strings and exactly one
   node (sizeof(mio_json), 80 bytes on 64-bit) per value; a first pass validates and counts. */
enum {
    MIO_JSON_NONE = 0, /* what mio_json_type(NULL) returns: the value is absent */
    MIO_JSON_NULL,
    MIO_JSON_BOOL,
    MIO_JSON_NUMBER,
    MIO_JSON_STRING,
    MIO_JSON_ARRAY,
    MIO_JSON_OBJECT
};

typedef struct mio_json {
    int type;            /* MIO_JSON_* */
    int is_int;          /* NUMBER written without fraction/exponent and fitting int64 */
    size_t count;        /* ARRAY/OBJECT: number of elements or members */
    size_t next;         /* distance to the next sibling in the node array, 0 for the last */
    const char *key;     /* name of this member when the parent is an object, else NULL */
    size_t key_len;
    const char *str;     /* STRING: decoded UTF-8, NUL-terminated */
    size_t str_len;
    double num;          /* NUMBER */
    int64_t i64;         /* NUMBER when is_int; BOOL: 0 or 1 */
    size_t offset;       /* byte offset of the value in the parsed text */
} mio_json;

typedef struct mio_json_doc {
    mio_json *nodes;     /* nodes[0] is the root */
    size_t n_nodes, cap;
    char *strings;       /* arena of decoded strings */
} mio_json_doc;

/* Parse len bytes (need not be NUL-terminated). name prefixes error messages ("config.json:
   byte 17 (line 2, column 5): expected ':' after member name, found '='"); NULL means "JSON".
   On failure doc is left empty (mio_json_free is still safe). */
MIODEF int mio_json_parse(mio_json_doc *doc, const void *text, size_t len, const char *name,
                          char *err, size_t err_size);
/* Read a whole file and parse it; messages are prefixed with path. Files larger than
   MIO_JSON_MAX_FILE are refused (MIO_ERR_FORMAT) before anything is allocated. */
MIODEF int mio_json_parse_file(mio_json_doc *doc, const char *path, char *err, size_t err_size);
MIODEF void mio_json_free(mio_json_doc *doc);                 /* frees nodes and strings */
MIODEF const mio_json *mio_json_root(const mio_json_doc *doc); /* NULL if empty */

MIODEF int mio_json_type(const mio_json *v);        /* MIO_JSON_NONE if v is NULL */
MIODEF const char *mio_json_type_name(int type);    /* "a string", "an object", "absent", ... */
MIODEF int mio_json_is_null(const mio_json *v);     /* 1 if v is JSON null (not if absent) */
MIODEF const mio_json *mio_json_get(const mio_json *obj, const char *key); /* NULL: absent */
MIODEF size_t mio_json_len(const mio_json *v);      /* elements/members; 0 for scalars */
MIODEF const mio_json *mio_json_at(const mio_json *v, size_t i); /* O(i); NULL past the end */
MIODEF const mio_json *mio_json_child(const mio_json *v); /* first element/member, or NULL */
MIODEF const mio_json *mio_json_next(const mio_json *v);  /* next sibling, or NULL */
MIODEF const char *mio_json_key(const mio_json *member);  /* member name, or NULL */

/* Typed views of one value: MIO_OK, or MIO_ERR_TYPE (wrong type, not integral, or outside
   int64), MIO_ERR_ARG for NULL. as_i64 accepts integral numbers written as 4096.0 or 1e3. */
MIODEF int mio_json_as_f64(const mio_json *v, double *out);
MIODEF int mio_json_as_i64(const mio_json *v, int64_t *out);
MIODEF int mio_json_as_bool(const mio_json *v, int *out);
MIODEF const char *mio_json_as_str(const mio_json *v, size_t *len); /* NULL if not a string */

/* Member lookups for loaders: MIO_OK and *out set; MIO_ERR_NOT_FOUND when the key is absent or
   null (*out untouched, so preset the default); MIO_ERR_TYPE when present with another type,
   with a message such as "'num_experts' is a string, expected an integer". A NULL obj counts
   as absent, so mio_json_get(root, "text_config") can be passed whether it exists or not.
   get_str refuses (MIO_ERR_TYPE) a string holding an escaped NUL (\u0000): as a C string it
   would compare equal to its first part; mio_json_as_str gives such strings with their length.
   Messages name the key only: prefix the file name yourself. */
MIODEF int mio_json_get_f64(const mio_json *obj, const char *key, double *out,
                            char *err, size_t err_size);
MIODEF int mio_json_get_i64(const mio_json *obj, const char *key, int64_t *out,
                            char *err, size_t err_size);
MIODEF int mio_json_get_bool(const mio_json *obj, const char *key, int *out,
                             char *err, size_t err_size);
MIODEF int mio_json_get_str(const mio_json *obj, const char *key, const char **out,
                            char *err, size_t err_size);

/* ---- safetensors ----
   Format: u64 little-endian header length N, N bytes of JSON {"name": {"dtype": "BF16",
   "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data
   section, to which the offsets are relative. Opening validates everything up front: the
   length against the file size, every entry's dtype, shape and offsets, end-begin ==
   prod(shape) * dtype size (checked products), ranges inside the data section and not
   overlapping, no duplicate names (tensor names, nor keys within an entry). Keys of an entry
   other than the three are checked as JSON and ignored, as the reference implementation does.
   The header is read by a streaming parser that keeps the names and the tensor table only:
   at most about 10 times the header length. Recognised dtypes are listed below; which ones a
   loader can use is its decision (moe.h takes F32, BF16 and F16). */
enum {
    MIO_DTYPE_UNKNOWN = 0,
    MIO_DTYPE_F32, MIO_DTYPE_BF16, MIO_DTYPE_F16, MIO_DTYPE_F64, MIO_DTYPE_C64,
    MIO_DTYPE_I64, MIO_DTYPE_I32, MIO_DTYPE_I16, MIO_DTYPE_I8,
    MIO_DTYPE_U64, MIO_DTYPE_U32, MIO_DTYPE_U16, MIO_DTYPE_U8, MIO_DTYPE_BOOL,
    MIO_DTYPE_F8_E4M3, MIO_DTYPE_F8_E5M2, MIO_DTYPE_F8_E8M0,
    MIO_DTYPE_F8_E4M3FNUZ, MIO_DTYPE_F8_E5M2FNUZ,
    MIO_DTYPE_F6_E2M3, MIO_DTYPE_F6_E3M2, MIO_DTYPE_F4,
    MIO_DTYPE_COUNT
};
MIODEF const char *mio_dtype_name(int dtype);  /* "BF16"; "?" for unknown */
MIODEF int mio_dtype_bits(int dtype);          /* storage bits per element; 0 for unknown */
MIODEF int mio_dtype_from_name(const char *s); /* MIO_DTYPE_UNKNOWN if not recognised */

typedef struct mio_tensor {
    const char *name;              /* owned by the file object */
    int dtype;                     /* MIO_DTYPE_* */
    int rank;                      /* 0 (a scalar) .. MIO_MAX_RANK */
    int64_t shape[MIO_MAX_RANK];   /* shape[0..rank-1], row-major; unused entries are 0 */
    size_t nelem;                  /* product of the shape (1 for a scalar) */
    const void *data;              /* MIO_MAP: into the file mapping, NOT aligned in general;
                                      MIO_READ: NULL until loaded, then a page-aligned copy */
    size_t nbytes;
    uint64_t offset;               /* file offset of the first data byte */
    const char *file;              /* path of the file that holds it, for messages */
    int mapped;                    /* data lies in an mmap, of the file or of the copy (see
                                      mio_tensor_release) */
    size_t copy_len;               /* MIO_READ: bytes of the loaded copy's mapping, else 0 */
} mio_tensor;

typedef struct mio_safetensors {
    char *path;                    /* file path, or the name given to open_mem */
    const unsigned char *base;     /* whole file */
    size_t size;
    int mapped;                    /* 1: base is our mmap; 0: borrowed memory */
    size_t data_start;             /* 8 + header length */
    mio_tensor *tensors;           /* sorted by name, strcmp order */
    size_t n_tensors;
    char *names;                   /* the decoded tensor names (t->name points in here) */
    int how;                       /* MIO_MAP (also for memory) or MIO_READ */
    int fd;                        /* MIO_READ: the open file */
} mio_safetensors;

/* How tensor data is reached.
   MIO_MAP: the file is mapped (mmap) and tensors point into it. Cheapest in memory, but the
     file must not shrink while it is open: a page past the new end of a truncated or
     rewritten file is a SIGBUS that kills the process, and no library can catch it.
   MIO_READ: only the header is read at open; a tensor is read with pread into anonymous
     memory when loaded (mio_safetensors_load, or mio_model_tensor of a model opened so). A
     file that shrinks gives an error ("the file ended after N of its M bytes"), never a
     signal; one rewritten in place gives wrong values. Costs the copy: a loader that holds
     every source tensor of a layer at once needs their bytes in memory besides the packed
     layer (mio_tensor_release frees them as they are packed). */
enum { MIO_MAP = 0, MIO_READ = 1 };

/* Open the file (MIO_MAP or MIO_READ) and validate its header. Close with
   mio_safetensors_close. */
MIODEF int mio_safetensors_open_as(mio_safetensors *st, const char *path, int how,
                                   char *err, size_t err_size);
/* = mio_safetensors_open_as(st, path, MIO_MAP, ...) */
MIODEF int mio_safetensors_open(mio_safetensors *st, const char *path,
                                char *err, size_t err_size);
/* The same on a buffer the caller keeps alive and unchanged until close; name is used in
   messages (NULL: "<memory>"). Tensors from it have mapped == 0. */
MIODEF int mio_safetensors_open_mem(mio_safetensors *st, const void *buf, size_t len,
                                    const char *name, char *err, size_t err_size);
MIODEF void mio_safetensors_close(mio_safetensors *st);
MIODEF const mio_tensor *mio_safetensors_find(const mio_safetensors *st, const char *name);
/* Like find, but MIO_ERR_NOT_FOUND with "FILE: tensor 'NAME' not found" when absent. */
MIODEF int mio_safetensors_get(const mio_safetensors *st, const char *name,
                               const mio_tensor **out, char *err, size_t err_size);
/* Like get, and in MIO_READ mode reads the tensor's bytes (once; they stay until close). */
MIODEF int mio_safetensors_load(mio_safetensors *st, const char *name, const mio_tensor **out,
                                char *err, size_t err_size);

/* Tell the kernel it may drop the pages of bytes [offset, offset+len) of t's data (rounded
   inward to whole pages; madvise(MADV_DONTNEED)). The mapping stays valid: a later read faults
   the bytes in from the file again (MIO_MAP), or reads zeros (a MIO_READ copy, whose memory
   is freed). For a loader that has packed the tensor and wants its resident memory back.
   No-op for memory-opened files. MIO_ERR_ARG if the range is outside
   the tensor, MIO_ERR_IO if madvise fails. */
MIODEF int mio_tensor_release(const mio_tensor *t, size_t offset, size_t len,
                              char *err, size_t err_size);

/* ---- model directory ----
   DIR/model.safetensors if present, else DIR/model.safetensors.index.json, whose "weight_map"
   maps each tensor name to a shard file in DIR (its other members are checked as JSON and
   ignored; the index is read by a streaming parser, and limited to MIO_INDEX_MAX_FILE). Shards
   are opened lazily at the first lookup of one of their tensors, once each, and stay open
   until close. A path to a .safetensors file instead of a directory opens that file alone. The
   struct must not be moved while open. */
typedef struct mio_model_shard {
    const char *file;              /* as written in the index */
    int open;
    mio_safetensors st;
} mio_model_shard;

typedef struct mio_model_entry {
    const char *name;              /* tensor name from the index */
    size_t shard;                  /* index into shards */
} mio_model_entry;

typedef struct mio_model {
    char *dir;
    char *index_path;              /* NULL when not sharded */
    int sharded;
    mio_safetensors single;        /* when !sharded */
    mio_model_shard *shards;       /* when sharded: distinct shard files, sorted */
    size_t n_shards;
    mio_model_entry *entries;      /* when sharded: sorted by name */
    size_t n_entries;
    char *index_strings;           /* when sharded: the decoded names and shard files */
    int how;                       /* MIO_MAP or MIO_READ, for the shards */
} mio_model;

MIODEF int mio_model_open(mio_model *m, const char *dir, char *err, size_t err_size);
/* The same with the files opened MIO_MAP or MIO_READ (mio_model_tensor then loads). */
MIODEF int mio_model_open_as(mio_model *m, const char *dir, int how, char *err, size_t err_size);
MIODEF void mio_model_close(mio_model *m);
/* Find a tensor, opening its shard if needed. MIO_ERR_NOT_FOUND names the tensor; a missing or
   broken shard is reported with the shard's path and the tensor that needed it. */
MIODEF int mio_model_tensor(mio_model *m, const char *name, const mio_tensor **out,
                            char *err, size_t err_size);
MIODEF int mio_model_has(const mio_model *m, const char *name); /* 1 if listed; opens nothing */
MIODEF size_t mio_model_count(const mio_model *m);              /* number of tensor names */
MIODEF const char *mio_model_name_at(const mio_model *m, size_t i); /* sorted; NULL past end */

/* ---- npy ----
   Reader: format version 1.0 or 2.0, dtype '<f4', fortran_order False, rank 2 (mio_npy_read_nd:
   rank 2 or more, the leading dimensions taken as rows, the shape returned). Any other file
   is refused with a message that says what it has ("x.npy: dtype is '<f8', expected '<f4'
   (float32)", "x.npy: shape (3, 5, 7) has rank 3, expected [T][hidden_size]"). The data is
   copied into a MIO_MALLOC'd buffer the caller frees with MIO_FREE; a (0, D) array gives a
   valid 1-byte buffer. Files are read, not mapped (a file cut while it is read is an error,
   not a SIGBUS); the whole file is in memory once while it is converted.
   Writers: version 1.0 header padded to 64 bytes as numpy writes it. Each is an output set of
   one file (below): written to a temporary file next to path and renamed into place only when
   everything was written and synced, so on any failure path is untouched and no temporary
   file remains. */
MIODEF int mio_npy_read(const char *path, float **data, size_t *rows, size_t *cols,
                        char *err, size_t err_size);
MIODEF int mio_npy_read_mem(const void *buf, size_t len, const char *name, float **data,
                            size_t *rows, size_t *cols, char *err, size_t err_size);
/* The same for an array of rank 2 or more, read as rows = the product of every dimension but
   the last and cols = the last ([B][T][D]: B*T rows of D); *rank and shape[0 .. *rank) (shape
   holds MIO_NPY_MAX_RANK) receive its shape, for writing results of the same leading shape.
   Rank 0 or 1 is refused ("x.npy: shape (24,) has rank 1, expected [..., hidden_size]"). */
MIODEF int mio_npy_read_nd(const char *path, float **data, int *rank, size_t *shape,
                           size_t *rows, size_t *cols, char *err, size_t err_size);
/* The same checks, but any of '<f4', '<f8', '<i4', converted to double (exactly): for tests
   that compare results with float64 references. */
MIODEF int mio_npy_read_f64(const char *path, double **data, size_t *rows, size_t *cols,
                            char *err, size_t err_size);
MIODEF int mio_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                             char *err, size_t err_size);
MIODEF int mio_npy_write_i32(const char *path, const int32_t *data, size_t rows, size_t cols,
                             char *err, size_t err_size);

/* ---- outputs that appear together ----
   A set of files that become visible together or not at all. Each is written to a temporary
   file in its target's directory (".mio-" and 10 random letters, created with O_EXCL and mode
   0666 less the umask, as any new file; mkstemp's 0600 would leave outputs unreadable to the
   group), synced, and renamed into place by mio_outputs_commit, which renames them all. An
   existing target is kept under a temporary hard link until every rename has succeeded; if
   one fails, every target is put back as it was (a file system without hard links cannot get
   an existing target back). So a failure at any step, writing, syncing
   or renaming, leaves the targets byte for byte as they were and no file behind (short of the
   process being killed in the commit). A target that exists but is not a regular file, and
   two targets naming the same file (by path or by inode), are refused when added. */
#define MIO_MAX_OUTPUTS 8
typedef struct mio_output {
    char *path, *tmp, *bak;        /* target; its temporary file; the hard link kept during commit */
    int existed;                   /* the target existed when the commit began */
} mio_output;
typedef struct mio_outputs {
    mio_output f[MIO_MAX_OUTPUTS];
    int n;
} mio_outputs;

MIODEF void mio_outputs_init(mio_outputs *o);
/* Writes the array to a temporary file for path (npy, as mio_npy_write_*). */
MIODEF int mio_outputs_npy_f32(mio_outputs *o, const char *path, const float *data, size_t rows,
                               size_t cols, char *err, size_t err_size);
MIODEF int mio_outputs_npy_i32(mio_outputs *o, const char *path, const int32_t *data, size_t rows,
                               size_t cols, char *err, size_t err_size);
/* The same for an array of any shape: rank 1 .. MIO_NPY_MAX_RANK dimensions, C order. */
MIODEF int mio_outputs_npy_f32_nd(mio_outputs *o, const char *path, const float *data, int rank,
                                  const size_t *shape, char *err, size_t err_size);
MIODEF int mio_outputs_npy_i32_nd(mio_outputs *o, const char *path, const int32_t *data, int rank,
                                  const size_t *shape, char *err, size_t err_size);
/* Renames every temporary file into place; on failure restores every target. */
MIODEF int mio_outputs_commit(mio_outputs *o, char *err, size_t err_size);
/* Removes what is left (the temporary files of a set not committed) and frees; always call. */
MIODEF void mio_outputs_discard(mio_outputs *o);

/* 1 if the two paths name the same file: the same device and inode when both exist, the same
   real directory and name when neither does (a target not yet written); 0 otherwise. */
MIODEF int mio_same_file(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif /* MOE_IO_H */

/* ========================================================================================== */
#ifdef MOE_IO_IMPLEMENTATION
#ifndef MOE_IO_IMPLEMENTATION_DONE
#define MOE_IO_IMPLEMENTATION_DONE

#if !defined(__unix__) && !defined(__unix) && !(defined(__APPLE__) && defined(__MACH__))
#error "moe_io.h needs a POSIX system (open, fstat, mmap, rename); Windows is not supported"
#endif

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

#if defined(__GLIBC__) && !defined(__USE_MISC)
#error "moe_io.h: define _DEFAULT_SOURCE before the first #include in the file that defines MOE_IO_IMPLEMENTATION (madvise/MADV_DONTNEED are hidden otherwise)"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MIO__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MIO__PRINTF(f, a)
#endif

#define MIO__NONE ((size_t)-1)

/* ---- errors and small helpers ---- */

MIODEF const char *mio_result_str(int result)
{
    switch (result) {
    case MIO_OK: return "MIO_OK: success";
    case MIO_ERR_ARG: return "MIO_ERR_ARG: invalid argument";
    case MIO_ERR_IO: return "MIO_ERR_IO: file system error";
    case MIO_ERR_NOMEM: return "MIO_ERR_NOMEM: out of memory";
    case MIO_ERR_FORMAT: return "MIO_ERR_FORMAT: malformed file content";
    case MIO_ERR_NOT_FOUND: return "MIO_ERR_NOT_FOUND: not found";
    case MIO_ERR_TYPE: return "MIO_ERR_TYPE: value of the wrong type";
    case MIO_ERR_UNSUPPORTED: return "MIO_ERR_UNSUPPORTED: valid but not supported";
    default: return "unknown moe_io result code";
    }
}

static void mio__clear(char *err, size_t es)
{
    if (err && es) err[0] = '\0';
}

static int mio__fail(char *err, size_t es, int code, const char *fmt, ...) MIO__PRINTF(4, 5);
/* The message into err: whole if it fits, else its start and its end, where the reason is,
   around " ... ". The 12 KiB buffer holds two paths of PATH_MAX and the text around them; no
   allocation, as this may be an out-of-memory path. */
static int mio__fail(char *err, size_t es, int code, const char *fmt, ...)
{
    char buf[12288];
    size_t n, head, tail;
    va_list ap;
    int r;
    if (!err || !es) return code;
    va_start(ap, fmt);
    r = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    n = r < 0 ? 0 : (size_t)r < sizeof buf ? (size_t)r : sizeof buf - 1;
    if (n < es) {
        memcpy(err, buf, n + 1);
    } else if (es < 32) {
        memcpy(err, buf + n - (es - 1), es); /* the reason alone */
    } else {
        head = (es - 6) / 3;
        tail = es - 6 - head;
        memcpy(err, buf, head);
        memcpy(err + head, " ... ", 5);
        memcpy(err + head + 5, buf + n - tail, tail);
        err[es - 1] = '\0';
    }
    return code;
}

static char *mio__strndup(const char *s, size_t n)
{
    char *d = (char *)MIO_MALLOC(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* a + "/" + b, without doubling a trailing slash of a */
static char *mio__join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    int slash = na > 0 && a[na - 1] != '/';
    char *d = (char *)MIO_MALLOC(na + (size_t)slash + nb + 1);
    if (!d) return NULL;
    memcpy(d, a, na);
    if (slash) d[na] = '/';
    memcpy(d + na + (size_t)slash, b, nb + 1);
    return d;
}

static int mio__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > (size_t)-1 / a) return 0;
    *out = a * b;
    return 1;
}

static uint64_t mio__le64(const unsigned char *b)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static int mio__host_le(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

static const char *mio__file_kind(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
#ifdef S_ISSOCK
    if (S_ISSOCK(m)) return "a socket";
#endif
    return "not a plain file";
}

/* Opens path for reading and checks that it is a regular file, before anything is read or
   mapped. O_NONBLOCK makes the open of a FIFO return at once (a blocking open would wait for a
   writer forever); the flag is cleared again for the regular file, where it means nothing. */
static int mio__open_regular(const char *path, int *fd_out, size_t *size, char *err, size_t es)
{
    struct stat sb;
    int fd, fl;
#ifdef O_CLOEXEC
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
#else
    fd = open(path, O_RDONLY | O_NONBLOCK);
#endif
    *fd_out = -1;
    *size = 0;
    if (fd < 0) return mio__fail(err, es, MIO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mio__fail(err, es, MIO_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return mio__fail(err, es, MIO_ERR_IO, "%s: not a regular file (%s)", path,
                         mio__file_kind(sb.st_mode));
    }
    if ((uint64_t)sb.st_size >= (uint64_t)((size_t)-1)) {
        close(fd);
        return mio__fail(err, es, MIO_ERR_NOMEM, "%s: file too large for this address space", path);
    }
    fl = fcntl(fd, F_GETFL);
    if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size = (size_t)sb.st_size;
    return MIO_OK;
}

/* Whole file into memory (NUL-terminated for convenience); files over `limit` bytes are
   refused before anything is allocated. */
static int mio__read_file(const char *path, size_t limit, unsigned char **out, size_t *len,
                          char *err, size_t es)
{
    unsigned char *buf;
    size_t size, got = 0;
    int fd, rc = mio__open_regular(path, &fd, &size, err, es);
    *out = NULL;
    *len = 0;
    if (rc) return rc;
    if (size > limit) {
        close(fd);
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: file is %zu bytes, over the limit of %zu bytes for this kind of file",
                         path, size, limit);
    }
    buf = (unsigned char *)MIO_MALLOC(size + 1);
    if (!buf) {
        close(fd);
        return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            MIO_FREE(buf);
            close(fd);
            return mio__fail(err, es, MIO_ERR_IO, "%s: read failed after %zu of %zu bytes: %s",
                             path, got, size, r == 0 ? "unexpected end of file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = 0;
    *out = buf;
    *len = size;
    return MIO_OK;
}

/* Read-only private mapping of a whole file. An empty file gives base NULL, size 0. */
static int mio__map_file(const char *path, const unsigned char **base, size_t *size,
                         char *err, size_t es)
{
    void *p;
    size_t n;
    int fd, rc = mio__open_regular(path, &fd, &n, err, es);
    *base = NULL;
    *size = 0;
    if (rc) return rc;
    if (n == 0) {
        close(fd);
        return MIO_OK;
    }
    p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED)
        return mio__fail(err, es, MIO_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, n,
                         strerror(errno));
    *base = (const unsigned char *)p;
    *size = n;
    return MIO_OK;
}

/* ---- JSON parser ---- */

typedef struct mio__jp {
    const unsigned char *s;
    size_t n, pos;
    mio_json_doc *doc;
    char *sp;           /* string arena cursor */
    const char *name;
    char *err;
    size_t es;
} mio__jp;

static int mio__jp_fail(mio__jp *p, size_t at, const char *fmt, ...) MIO__PRINTF(3, 4);
static int mio__jp_fail(mio__jp *p, size_t at, const char *fmt, ...)
{
    char msg[192];
    size_t i, line = 1, col = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (i = 0; i < at && i < p->n; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return mio__fail(p->err, p->es, MIO_ERR_FORMAT, "%s: byte %zu (line %zu, column %zu): %s",
                     p->name, at, line, col, msg);
}

/* Describe the input at `at` for a message: 'x', byte 0x01, or end of input. */
static const char *mio__jp_what(const mio__jp *p, size_t at, char *buf, size_t bs)
{
    unsigned c;
    if (at >= p->n) return "end of input";
    c = p->s[at];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, bs, "'%c'", (char)c);
    else snprintf(buf, bs, "byte 0x%02x", c);
    return buf;
}

static void mio__jp_ws(mio__jp *p)
{
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int mio__jp_node(mio__jp *p, size_t *idx)
{
    mio_json_doc *d = p->doc;
    if (d->n_nodes == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64, bytes;
        mio_json *nn;
        if (!mio__mul_size(cap, sizeof(mio_json), &bytes))
            return mio__fail(p->err, p->es, MIO_ERR_NOMEM, "%s: too many JSON values", p->name);
        nn = (mio_json *)MIO_REALLOC(d->nodes, bytes);
        if (!nn)
            return mio__fail(p->err, p->es, MIO_ERR_NOMEM, "%s: out of memory for %zu JSON values",
                             p->name, cap);
        d->nodes = nn;
        d->cap = cap;
    }
    memset(&d->nodes[d->n_nodes], 0, sizeof(mio_json));
    *idx = d->n_nodes++;
    return MIO_OK;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid: no overlong
   forms, no UTF-16 surrogates, nothing above U+10FFFF. */
static size_t mio__utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static char *mio__utf8_put(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    return d;
}

/* 4 hex digits at p->s[at..]; -1 if not all there or not hex */
static long mio__jp_hex4(const mio__jp *p, size_t at)
{
    long v = 0;
    size_t i;
    if (at > p->n || p->n - at < 4) return -1;
    for (i = 0; i < 4; i++) {
        unsigned c = p->s[at + i];
        int d;
        if (c >= '0' && c <= '9') d = (int)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (int)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (int)(c - 'A' + 10);
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* String at p->pos (which is '"') decoded into the arena. Every string of k source bytes
   (quotes included) decodes to at most k-1 bytes with its NUL, so an arena of n+1 bytes always
   suffices. */
static int mio__jp_string(mio__jp *p, const char **out, size_t *out_len)
{
    size_t start = p->pos;
    char *d = p->sp, *d0 = p->sp;
    p->pos++;
    for (;;) {
        unsigned c;
        if (p->pos >= p->n)
            return mio__jp_fail(p, start, "unterminated string (no closing '\"' before end of input)");
        c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            size_t esc = p->pos;
            unsigned e;
            if (p->pos + 1 >= p->n)
                return mio__jp_fail(p, start, "unterminated string (input ends inside an escape)");
            e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': *d++ = '"'; break;
            case '\\': *d++ = '\\'; break;
            case '/': *d++ = '/'; break;
            case 'b': *d++ = '\b'; break;
            case 'f': *d++ = '\f'; break;
            case 'n': *d++ = '\n'; break;
            case 'r': *d++ = '\r'; break;
            case 't': *d++ = '\t'; break;
            case 'u': {
                long hi = mio__jp_hex4(p, p->pos), lo;
                uint32_t cp;
                if (hi < 0) return mio__jp_fail(p, esc, "bad \\u escape: expected 4 hex digits");
                p->pos += 4;
                if (hi >= 0xDC00 && hi <= 0xDFFF)
                    return mio__jp_fail(p, esc, "bad \\u escape: unpaired low surrogate \\u%04lX", hi);
                if (hi >= 0xD800 && hi <= 0xDBFF) {
                    if (p->pos + 1 >= p->n || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return mio__jp_fail(p, esc, "bad \\u escape: high surrogate \\u%04lX not followed by a \\u low surrogate", hi);
                    lo = mio__jp_hex4(p, p->pos + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return mio__jp_fail(p, esc, "bad \\u escape: high surrogate \\u%04lX not followed by a low surrogate", hi);
                    p->pos += 6;
                    cp = 0x10000u + (((uint32_t)hi - 0xD800u) << 10) + ((uint32_t)lo - 0xDC00u);
                } else {
                    cp = (uint32_t)hi;
                }
                d = mio__utf8_put(d, cp);
                break;
            }
            default:
                if (e >= 0x20 && e < 0x7f)
                    return mio__jp_fail(p, esc, "bad escape '\\%c' in string (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                                        (char)e);
                return mio__jp_fail(p, esc, "bad escape in string: backslash followed by byte 0x%02x", e);
            }
            continue;
        }
        if (c < 0x20)
            return mio__jp_fail(p, p->pos, "control character 0x%02x in string (must be escaped)", c);
        if (c < 0x80) {
            *d++ = (char)c;
            p->pos++;
        } else {
            size_t k = mio__utf8_len(p->s + p->pos, p->n - p->pos), i;
            if (k == 0) return mio__jp_fail(p, p->pos, "invalid UTF-8 in string (byte 0x%02x)", c);
            for (i = 0; i < k; i++) *d++ = (char)p->s[p->pos + i];
            p->pos += k;
        }
    }
    *d++ = '\0';
    p->sp = d;
    *out = d0;
    *out_len = (size_t)(d - d0) - 1;
    return MIO_OK;
}

/* strtod in the "C" locale whatever the program set: validate first, then convert a copy, and
   if the locale's decimal point is not '.', rewrite it. */
static int mio__strtod(const char *s, size_t n, double *out)
{
    char small[64], *buf = small, *end;
    int ok;
    if (n + 1 > sizeof small) {
        buf = (char *)MIO_MALLOC(n + 1);
        if (!buf) return 0;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, &end);
    ok = end == buf + n;
    if (!ok) {
        const struct lconv *lc = localeconv();
        char *dot = (char *)memchr(buf, '.', n);
        if (dot && lc && lc->decimal_point && lc->decimal_point[0] && !lc->decimal_point[1]) {
            *dot = lc->decimal_point[0];
            *out = strtod(buf, &end);
            ok = end == buf + n;
        }
    }
    if (buf != small) MIO_FREE(buf);
    return ok;
}

static int mio__jp_number(mio__jp *p, mio_json *v)
{
    size_t start = p->pos;
    int neg = 0, integral = 1, fits = 1;
    uint64_t mag = 0;
    char what[16];
    double x;
    if (p->s[p->pos] == '-') {
        neg = 1;
        p->pos++;
    }
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return mio__jp_fail(p, p->pos, "expected a digit after '-', found %s",
                            mio__jp_what(p, p->pos, what, sizeof what));
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            return mio__jp_fail(p, start, "number with a leading zero");
    } else {
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            unsigned dgt = (unsigned)(p->s[p->pos] - '0');
            if (mag > (UINT64_MAX - dgt) / 10) fits = 0;
            else mag = mag * 10 + dgt;
            p->pos++;
        }
    }
    if (p->pos < p->n && p->s[p->pos] == '.') {
        integral = 0;
        p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return mio__jp_fail(p, p->pos, "expected a digit after '.', found %s",
                                mio__jp_what(p, p->pos, what, sizeof what));
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = 0;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return mio__jp_fail(p, p->pos, "expected a digit in the exponent, found %s",
                                mio__jp_what(p, p->pos, what, sizeof what));
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    }
    if (!mio__strtod((const char *)p->s + start, p->pos - start, &x))
        return mio__fail(p->err, p->es, MIO_ERR_NOMEM, "%s: out of memory converting a number", p->name);
    if (x > 1.7976931348623157e308 || x < -1.7976931348623157e308)
        return mio__jp_fail(p, start, "number %.*s is out of the range of a double",
                            (int)(p->pos - start < 40 ? p->pos - start : 40), (const char *)p->s + start);
    v->type = MIO_JSON_NUMBER;
    v->num = x;
    if (integral && fits) {
        if (!neg && mag <= (uint64_t)INT64_MAX) {
            v->is_int = 1;
            v->i64 = (int64_t)mag;
        } else if (neg && mag <= (uint64_t)INT64_MAX + 1u) {
            v->is_int = 1;
            v->i64 = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
        }
    }
    return MIO_OK;
}

static int mio__jp_literal(mio__jp *p, mio_json *v)
{
    static const char *const words[3] = {"true", "false", "null"};
    size_t start = p->pos, i, len;
    char what[16];
    for (i = 0; i < 3; i++) {
        len = strlen(words[i]);
        if (p->n - p->pos >= len && memcmp(p->s + p->pos, words[i], len) == 0) {
            p->pos += len;
            v->type = i < 2 ? MIO_JSON_BOOL : MIO_JSON_NULL;
            v->i64 = i == 0;
            v->num = (double)v->i64;
            return MIO_OK;
        }
    }
    if (p->n - start >= 3 && (memcmp(p->s + start, "NaN", 3) == 0 || memcmp(p->s + start, "Inf", 3) == 0))
        return mio__jp_fail(p, start, "NaN and Infinity are not valid JSON numbers");
    if (p->s[start] == '-' || (p->s[start] >= '0' && p->s[start] <= '9'))
        return mio__jp_number(p, v);
    return mio__jp_fail(p, start, "unexpected %s, expected a value (object, array, string, number, true, false or null)",
                        mio__jp_what(p, start, what, sizeof what));
}

static int mio__jp_key(mio__jp *p, const char **key, size_t *key_len)
{
    char what[16];
    int rc;
    mio__jp_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != '"')
        return mio__jp_fail(p, p->pos, "expected a member name (a string), found %s",
                            mio__jp_what(p, p->pos, what, sizeof what));
    rc = mio__jp_string(p, key, key_len);
    if (rc) return rc;
    mio__jp_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':')
        return mio__jp_fail(p, p->pos, "expected ':' after member name, found %s",
                            mio__jp_what(p, p->pos, what, sizeof what));
    p->pos++;
    return MIO_OK;
}


/* The value at p->pos. Iterative: an explicit stack of open containers bounded by
   MIO_JSON_MAX_DEPTH, so hostile input cannot exhaust the C stack. `want` says whether a value
   comes next or a separator. doc NULL: only validate and count (*n_values, if given); strings
   go through the arena and are dropped again, nothing is allocated. doc set: append the nodes
   (in document order, a container before its children) to doc->nodes. whole: the value must be
   the rest of the input (whitespace aside). */
static int mio__jp_value(mio__jp *p, mio_json_doc *doc, int whole, size_t *n_values)
{
    struct { size_t node, last, offset; int isobj; } stack[MIO_JSON_MAX_DEPTH];
    int depth = 0, want = 1, rc;
    const char *key = NULL;
    size_t key_len = 0, idx = 0, count = 0;
    char *arena0 = p->sp, what[16];
    mio_json scratch;
    for (;;) {
        if (want) {
            mio_json *v = &scratch;
            unsigned char c;
            mio__jp_ws(p);
            if (p->pos >= p->n) return mio__jp_fail(p, p->pos, "unexpected end of input, expected a value");
            if (doc) {
                rc = mio__jp_node(p, &idx);
                if (rc) return rc;
                v = &doc->nodes[idx];
            } else {
                memset(v, 0, sizeof *v);
            }
            count++;
            v->offset = p->pos;
            v->key = key;
            v->key_len = key_len;
            key = NULL;
            if (depth > 0 && doc) {
                size_t last = stack[depth - 1].last;
                if (last != MIO__NONE) doc->nodes[last].next = idx - last;
                stack[depth - 1].last = idx;
                doc->nodes[stack[depth - 1].node].count++;
            }
            c = p->s[p->pos];
            if (c == '{' || c == '[') {
                if (depth == MIO_JSON_MAX_DEPTH)
                    return mio__jp_fail(p, p->pos, "nesting deeper than %d levels", MIO_JSON_MAX_DEPTH);
                v->type = c == '{' ? MIO_JSON_OBJECT : MIO_JSON_ARRAY;
                p->pos++;
                stack[depth].node = idx;
                stack[depth].last = MIO__NONE;
                stack[depth].offset = v->offset;
                stack[depth].isobj = c == '{';
                depth++;
                mio__jp_ws(p);
                if (p->pos < p->n && p->s[p->pos] == (c == '{' ? '}' : ']')) {
                    p->pos++;
                    depth--;
                    want = 0;
                } else if (c == '{') {
                    rc = mio__jp_key(p, &key, &key_len);
                    if (rc) return rc;
                }
                continue;
            }
            if (c == '"') {
                v->type = MIO_JSON_STRING;
                rc = mio__jp_string(p, &v->str, &v->str_len);
            } else {
                rc = mio__jp_literal(p, v);
            }
            if (rc) return rc;
            want = 0;
        } else {
            int isobj;
            unsigned char c;
            mio__jp_ws(p);
            if (depth == 0) {
                if (whole && p->pos != p->n)
                    return mio__jp_fail(p, p->pos, "unexpected %s after the top-level value",
                                        mio__jp_what(p, p->pos, what, sizeof what));
                break;
            }
            isobj = stack[depth - 1].isobj;
            if (p->pos >= p->n)
                return mio__jp_fail(p, p->pos, "unexpected end of input inside the %s that starts at byte %zu",
                                    isobj ? "object" : "array", stack[depth - 1].offset);
            c = p->s[p->pos];
            if (c == ',') {
                p->pos++;
                if (isobj) {
                    rc = mio__jp_key(p, &key, &key_len);
                    if (rc) return rc;
                }
                want = 1;
            } else if (c == (isobj ? '}' : ']')) {
                p->pos++;
                depth--;
            } else {
                return mio__jp_fail(p, p->pos, isobj ? "expected ',' or '}' after an object member, found %s"
                                                     : "expected ',' or ']' after an array element, found %s",
                                    mio__jp_what(p, p->pos, what, sizeof what));
            }
        }
    }
    if (!doc) p->sp = arena0;
    if (n_values) *n_values = count;
    return MIO_OK;
}

/* A parser over len bytes of text, decoding strings into arena (len + 1 bytes always do);
   a leading UTF-8 byte-order mark is skipped. */
static void mio__jp_init(mio__jp *p, const void *text, size_t len, char *arena, const char *name,
                         char *err, size_t es)
{
    p->s = (const unsigned char *)text;
    p->n = len;
    p->pos = 0;
    p->doc = NULL;
    p->sp = arena;
    p->name = name;
    p->err = err;
    p->es = es;
    if (len >= 3 && p->s[0] == 0xEF && p->s[1] == 0xBB && p->s[2] == 0xBF) p->pos = 3;
}

MIODEF void mio_json_free(mio_json_doc *doc)
{
    if (!doc) return;
    MIO_FREE(doc->nodes);
    MIO_FREE(doc->strings);
    memset(doc, 0, sizeof *doc);
}

/* Two passes over the text: the first validates it and counts the values, so the second
   allocates exactly one node per value; the strings need at most len + 1 bytes. */
MIODEF int mio_json_parse(mio_json_doc *doc, const void *text, size_t len, const char *name,
                          char *err, size_t err_size)
{
    size_t start, count = 0, bytes;
    int rc;
    mio__jp p;
    mio__clear(err, err_size);
    if (!doc) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_parse: doc is NULL");
    memset(doc, 0, sizeof *doc);
    if (!text && len) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_parse: text is NULL");
    if (!name) name = "JSON";
    doc->strings = (char *)MIO_MALLOC(len + 1);
    if (!doc->strings)
        return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory (%zu bytes)", name, len);
    mio__jp_init(&p, text, len, doc->strings, name, err, err_size);
    p.doc = doc;
    mio__jp_ws(&p);
    if (p.pos >= p.n) {
        rc = mio__jp_fail(&p, p.pos, "empty input, expected a JSON value");
        goto done;
    }
    start = p.pos;
    rc = mio__jp_value(&p, NULL, 1, &count);
    if (rc) goto done;
    if (!mio__mul_size(count, sizeof(mio_json), &bytes)) {
        rc = mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: too many JSON values", name);
        goto done;
    }
    doc->nodes = (mio_json *)MIO_MALLOC(bytes);
    if (!doc->nodes) {
        rc = mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory for %zu JSON values", name, count);
        goto done;
    }
    doc->cap = count;
    p.pos = start;
    rc = mio__jp_value(&p, doc, 1, NULL);
done:
    if (rc) mio_json_free(doc);
    return rc;
}

MIODEF int mio_json_parse_file(mio_json_doc *doc, const char *path, char *err, size_t err_size)
{
    unsigned char *buf;
    size_t len;
    int rc;
    mio__clear(err, err_size);
    if (!doc || !path) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_parse_file: NULL argument");
    memset(doc, 0, sizeof *doc);
    rc = mio__read_file(path, MIO_JSON_MAX_FILE, &buf, &len, err, err_size);
    if (rc) return rc;
    rc = mio_json_parse(doc, buf, len, path, err, err_size);
    MIO_FREE(buf);
    return rc;
}

/* ---- streaming reads ----
   The safetensors header and the index can be large (100 MB, 64 MiB), so they are not built
   into a DOM: these pull the values they need straight off the tokenizer and check and skip
   the rest, keeping only what the caller stores. */

/* The JSON type the value at p->pos starts as, MIO_JSON_NONE if no value starts there. */
static int mio__jp_peek(mio__jp *p)
{
    unsigned char c;
    mio__jp_ws(p);
    if (p->pos >= p->n) return MIO_JSON_NONE;
    c = p->s[p->pos];
    if (c == '{') return MIO_JSON_OBJECT;
    if (c == '[') return MIO_JSON_ARRAY;
    if (c == '"') return MIO_JSON_STRING;
    if (c == 't' || c == 'f') return MIO_JSON_BOOL;
    if (c == 'n') return MIO_JSON_NULL;
    if (c == '-' || (c >= '0' && c <= '9')) return MIO_JSON_NUMBER;
    return MIO_JSON_NONE;
}

/* One value into *v (type, number, string in the arena); a container is checked and skipped. */
static int mio__jp_scalar(mio__jp *p, mio_json *v)
{
    unsigned char c;
    memset(v, 0, sizeof *v);
    mio__jp_ws(p);
    if (p->pos >= p->n) return mio__jp_fail(p, p->pos, "unexpected end of input, expected a value");
    v->offset = p->pos;
    c = p->s[p->pos];
    if (c == '{' || c == '[') {
        v->type = c == '{' ? MIO_JSON_OBJECT : MIO_JSON_ARRAY;
        return mio__jp_value(p, NULL, 0, NULL);
    }
    if (c == '"') {
        v->type = MIO_JSON_STRING;
        return mio__jp_string(p, &v->str, &v->str_len);
    }
    return mio__jp_literal(p, v);
}

/* After a member or element of the container that starts at `start`: *more = 1 after a ',',
   0 after the closing bracket. */
static int mio__jp_sep(mio__jp *p, int isobj, size_t start, int *more)
{
    char what[16];
    mio__jp_ws(p);
    if (p->pos >= p->n)
        return mio__jp_fail(p, p->pos, "unexpected end of input inside the %s that starts at byte %zu",
                            isobj ? "object" : "array", start);
    if (p->s[p->pos] == ',' || p->s[p->pos] == (isobj ? '}' : ']')) {
        *more = p->s[p->pos++] == ',';
        return MIO_OK;
    }
    return mio__jp_fail(p, p->pos, isobj ? "expected ',' or '}' after an object member, found %s"
                                         : "expected ',' or ']' after an array element, found %s",
                        mio__jp_what(p, p->pos, what, sizeof what));
}

/* Opens the container at p->pos (a '{' or '['); *more = 0 if it is empty. For an object the
   first key is left to the caller. */
static void mio__jp_open(mio__jp *p, int *more)
{
    unsigned char close = p->s[p->pos] == '{' ? '}' : ']';
    p->pos++;
    mio__jp_ws(p);
    *more = !(p->pos < p->n && p->s[p->pos] == close);
    if (!*more) p->pos++;
}

/* The array at p->pos (a '['), of non-negative integers: count and values (at most max of
   them); *bad = 1 + the index of the first element that is not one, 0 if none. */
static int mio__jp_uints(mio__jp *p, uint64_t *vals, size_t max, size_t *count, size_t *bad)
{
    size_t start = p->pos;
    char *sp = p->sp;
    int more, rc;
    *count = *bad = 0;
    mio__jp_open(p, &more);
    while (more) {
        mio_json v;
        rc = mio__jp_scalar(p, &v);
        if (rc) return rc;
        p->sp = sp;
        if (v.type != MIO_JSON_NUMBER || !v.is_int || v.i64 < 0) {
            if (!*bad) *bad = *count + 1;
        } else if (*count < max) {
            vals[*count] = (uint64_t)v.i64;
        }
        (*count)++;
        rc = mio__jp_sep(p, 0, start, &more);
        if (rc) return rc;
    }
    return MIO_OK;
}

MIODEF const mio_json *mio_json_root(const mio_json_doc *doc)
{
    return doc && doc->n_nodes ? &doc->nodes[0] : NULL;
}

MIODEF int mio_json_type(const mio_json *v) { return v ? v->type : MIO_JSON_NONE; }

MIODEF const char *mio_json_type_name(int type)
{
    switch (type) {
    case MIO_JSON_NULL: return "null";
    case MIO_JSON_BOOL: return "a boolean";
    case MIO_JSON_NUMBER: return "a number";
    case MIO_JSON_STRING: return "a string";
    case MIO_JSON_ARRAY: return "an array";
    case MIO_JSON_OBJECT: return "an object";
    default: return "absent";
    }
}

MIODEF int mio_json_is_null(const mio_json *v) { return v && v->type == MIO_JSON_NULL; }

MIODEF size_t mio_json_len(const mio_json *v)
{
    return v && (v->type == MIO_JSON_ARRAY || v->type == MIO_JSON_OBJECT) ? v->count : 0;
}

MIODEF const mio_json *mio_json_child(const mio_json *v)
{
    return mio_json_len(v) ? v + 1 : NULL;
}

MIODEF const mio_json *mio_json_next(const mio_json *v)
{
    return v && v->next ? v + v->next : NULL;
}

MIODEF const mio_json *mio_json_at(const mio_json *v, size_t i)
{
    const mio_json *c;
    if (i >= mio_json_len(v)) return NULL;
    for (c = mio_json_child(v); c && i; i--) c = mio_json_next(c);
    return c;
}

MIODEF const char *mio_json_key(const mio_json *member) { return member ? member->key : NULL; }

MIODEF const mio_json *mio_json_get(const mio_json *obj, const char *key)
{
    const mio_json *c;
    size_t n;
    if (!obj || obj->type != MIO_JSON_OBJECT || !key) return NULL;
    n = strlen(key);
    for (c = mio_json_child(obj); c; c = mio_json_next(c))
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}

MIODEF int mio_json_as_f64(const mio_json *v, double *out)
{
    if (!v || !out) return MIO_ERR_ARG;
    if (v->type != MIO_JSON_NUMBER) return MIO_ERR_TYPE;
    *out = v->num;
    return MIO_OK;
}

MIODEF int mio_json_as_i64(const mio_json *v, int64_t *out)
{
    if (!v || !out) return MIO_ERR_ARG;
    if (v->type != MIO_JSON_NUMBER) return MIO_ERR_TYPE;
    if (v->is_int) {
        *out = v->i64;
        return MIO_OK;
    }
    /* integral doubles such as 4096.0 or 1e3; -2^63 <= x < 2^63 */
    if (v->num != v->num || v->num < -9223372036854775808.0 || v->num >= 9223372036854775808.0 ||
        (double)(int64_t)v->num != v->num)
        return MIO_ERR_TYPE;
    *out = (int64_t)v->num;
    return MIO_OK;
}

MIODEF int mio_json_as_bool(const mio_json *v, int *out)
{
    if (!v || !out) return MIO_ERR_ARG;
    if (v->type != MIO_JSON_BOOL) return MIO_ERR_TYPE;
    *out = (int)v->i64;
    return MIO_OK;
}

MIODEF const char *mio_json_as_str(const mio_json *v, size_t *len)
{
    if (!v || v->type != MIO_JSON_STRING) return NULL;
    if (len) *len = v->str_len;
    return v->str;
}

/* Shared front half of the keyed getters: present, not null, of type `type`. */
static int mio__json_member(const mio_json *obj, const char *key, int type, const char *want,
                            const mio_json **v, char *err, size_t es)
{
    mio__clear(err, es);
    if (!key) return mio__fail(err, es, MIO_ERR_ARG, "JSON lookup: key is NULL");
    if (!obj) return mio__fail(err, es, MIO_ERR_NOT_FOUND, "'%s' not found (no enclosing object)", key);
    if (obj->type != MIO_JSON_OBJECT)
        return mio__fail(err, es, MIO_ERR_TYPE, "cannot look up '%s' in %s, expected an object",
                         key, mio_json_type_name(obj->type));
    *v = mio_json_get(obj, key);
    if (!*v) return mio__fail(err, es, MIO_ERR_NOT_FOUND, "'%s' not found", key);
    if ((*v)->type == MIO_JSON_NULL) return mio__fail(err, es, MIO_ERR_NOT_FOUND, "'%s' is null", key);
    if ((*v)->type != type)
        return mio__fail(err, es, MIO_ERR_TYPE, "'%s' is %s, expected %s", key,
                         mio_json_type_name((*v)->type), want);
    return MIO_OK;
}

MIODEF int mio_json_get_f64(const mio_json *obj, const char *key, double *out,
                            char *err, size_t err_size)
{
    const mio_json *v = NULL;
    int rc = mio__json_member(obj, key, MIO_JSON_NUMBER, "a number", &v, err, err_size);
    if (rc) return rc;
    if (!out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_get_f64: out is NULL");
    *out = v->num;
    return MIO_OK;
}

MIODEF int mio_json_get_i64(const mio_json *obj, const char *key, int64_t *out,
                            char *err, size_t err_size)
{
    const mio_json *v = NULL;
    int rc = mio__json_member(obj, key, MIO_JSON_NUMBER, "an integer", &v, err, err_size);
    if (rc) return rc;
    if (!out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_get_i64: out is NULL");
    if (mio_json_as_i64(v, out) != MIO_OK)
        return mio__fail(err, err_size, MIO_ERR_TYPE, "'%s' is %.17g, expected an integer within int64",
                         key, v->num);
    return MIO_OK;
}

MIODEF int mio_json_get_bool(const mio_json *obj, const char *key, int *out,
                             char *err, size_t err_size)
{
    const mio_json *v = NULL;
    int rc = mio__json_member(obj, key, MIO_JSON_BOOL, "true or false", &v, err, err_size);
    if (rc) return rc;
    if (!out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_get_bool: out is NULL");
    *out = (int)v->i64;
    return MIO_OK;
}

MIODEF int mio_json_get_str(const mio_json *obj, const char *key, const char **out,
                            char *err, size_t err_size)
{
    const mio_json *v = NULL;
    int rc = mio__json_member(obj, key, MIO_JSON_STRING, "a string", &v, err, err_size);
    if (rc) return rc;
    if (!out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_json_get_str: out is NULL");
    /* a C string ends at its first NUL: "olmoe\u0000x" would compare equal to "olmoe" */
    if (strlen(v->str) != v->str_len)
        return mio__fail(err, err_size, MIO_ERR_TYPE, "'%s' holds a NUL character (\\u0000), "
                         "expected a string without one", key);
    *out = v->str;
    return MIO_OK;
}

/* ---- safetensors ---- */

static const struct { const char *name; int bits; } mio__dtypes[MIO_DTYPE_COUNT] = {
    {"?", 0},        {"F32", 32},     {"BF16", 16},    {"F16", 16},          {"F64", 64},
    {"C64", 64},     {"I64", 64},     {"I32", 32},     {"I16", 16},          {"I8", 8},
    {"U64", 64},     {"U32", 32},     {"U16", 16},     {"U8", 8},            {"BOOL", 8},
    {"F8_E4M3", 8},  {"F8_E5M2", 8},  {"F8_E8M0", 8},  {"F8_E4M3FNUZ", 8},   {"F8_E5M2FNUZ", 8},
    {"F6_E2M3", 6},  {"F6_E3M2", 6},  {"F4", 4}};

MIODEF const char *mio_dtype_name(int dtype)
{
    return dtype > 0 && dtype < MIO_DTYPE_COUNT ? mio__dtypes[dtype].name : "?";
}

MIODEF int mio_dtype_bits(int dtype)
{
    return dtype > 0 && dtype < MIO_DTYPE_COUNT ? mio__dtypes[dtype].bits : 0;
}

MIODEF int mio_dtype_from_name(const char *s)
{
    int i;
    if (!s) return MIO_DTYPE_UNKNOWN;
    for (i = 1; i < MIO_DTYPE_COUNT; i++)
        if (strcmp(s, mio__dtypes[i].name) == 0) return i;
    return MIO_DTYPE_UNKNOWN;
}

/* Append to buf (size bs, *used bytes used), silently truncating. */
static void mio__cat(char *buf, size_t bs, size_t *used, const char *fmt, ...) MIO__PRINTF(4, 5);
static void mio__cat(char *buf, size_t bs, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int r;
    if (*used + 1 >= bs) return;
    va_start(ap, fmt);
    r = vsnprintf(buf + *used, bs - *used, fmt, ap);
    va_end(ap);
    if (r > 0) *used = *used + (size_t)r < bs ? *used + (size_t)r : bs - 1;
}

/* "[2, 3]" (JSON style) or "(2, 3)" / "(5,)" (Python tuple style); long shapes end in "..." */
static const char *mio__fmt_shape(char *buf, size_t bs, const uint64_t *dims, int rank, int python)
{
    size_t used = 0;
    int i;
    buf[0] = '\0';
    mio__cat(buf, bs, &used, "%c", python ? '(' : '[');
    for (i = 0; i < rank; i++) {
        if (used + 32 > bs) {
            mio__cat(buf, bs, &used, ", ...");
            break;
        }
        mio__cat(buf, bs, &used, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    }
    if (python && rank == 1) mio__cat(buf, bs, &used, ",");
    mio__cat(buf, bs, &used, "%c", python ? ')' : ']');
    return buf;
}

static int mio__tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const mio_tensor *)a)->name, ((const mio_tensor *)b)->name);
}

typedef struct mio__range { uint64_t begin, end; size_t i; } mio__range;

static int mio__range_cmp(const void *a, const void *b)
{
    const mio__range *x = (const mio__range *)a, *y = (const mio__range *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* One header entry as read: the JSON type of each field (MIO_JSON_NONE when absent), the dtype
   string (left in the arena), the dims and offsets, and for each array 1 + the index of its
   first element that is not a non-negative integer (0 if none). */
typedef struct mio__st_fields {
    int dtype_type, shape_type, offs_type;
    const char *dtype;
    size_t dtype_len, rank, noffs, shape_bad, offs_bad;
    uint64_t dims[MIO_MAX_RANK], offs[2];
} mio__st_fields;

/* The entry object at p->pos; f and nm for messages. */
static int mio__st_read_entry(mio__jp *p, const char *f, const char *nm, mio__st_fields *e)
{
    static const char *const names[3] = {"dtype", "shape", "data_offsets"};
    size_t start = p->pos;
    int more, rc;
    memset(e, 0, sizeof *e);
    mio__jp_open(p, &more);
    while (more) {
        const char *key;
        size_t klen;
        char *ksp = p->sp;
        int which = -1, i, type;
        rc = mio__jp_key(p, &key, &klen);
        if (rc) return rc;
        for (i = 0; i < 3; i++)
            if (klen == strlen(names[i]) && memcmp(key, names[i], klen) == 0) which = i;
        p->sp = ksp;
        if (which >= 0 && (which == 0 ? e->dtype_type : which == 1 ? e->shape_type : e->offs_type))
            return mio__fail(p->err, p->es, MIO_ERR_FORMAT, "%s: tensor '%.200s': \"%s\" appears twice",
                             f, nm, names[which]);
        type = mio__jp_peek(p);
        if (which == 0 && type == MIO_JSON_STRING) {
            rc = mio__jp_string(p, &e->dtype, &e->dtype_len); /* kept until the entry is checked */
        } else if (which == 1 && type == MIO_JSON_ARRAY) {
            rc = mio__jp_uints(p, e->dims, MIO_MAX_RANK, &e->rank, &e->shape_bad);
        } else if (which == 2 && type == MIO_JSON_ARRAY) {
            rc = mio__jp_uints(p, e->offs, 2, &e->noffs, &e->offs_bad);
        } else {
            mio_json v;
            rc = mio__jp_scalar(p, &v);
            type = v.type;
            p->sp = ksp;
        }
        if (rc) return rc;
        if (which == 0) e->dtype_type = type;
        if (which == 1) e->shape_type = type;
        if (which == 2) e->offs_type = type;
        rc = mio__jp_sep(p, 1, start, &more);
        if (rc) return rc;
    }
    return MIO_OK;
}

/* Validate one entry and fill t. */
static int mio__st_entry(mio_safetensors *st, const char *nm, const mio__st_fields *e,
                         mio_tensor *t, size_t data_size, char *err, size_t es)
{
    const char *f = st->path, *ds = e->dtype;
    uint64_t nelem = 1, nbits;
    size_t rank = e->rank, i;
    char sh[96];
    int bits;
    if (e->dtype_type != MIO_JSON_STRING)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': \"dtype\" is %s, expected a string",
                         f, nm, mio_json_type_name(e->dtype_type));
    t->dtype = strlen(ds) == e->dtype_len ? mio_dtype_from_name(ds) : MIO_DTYPE_UNKNOWN; /* "F32\u0000" */
    if (t->dtype == MIO_DTYPE_UNKNOWN)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': unknown dtype '%.40s'", f, nm, ds);
    bits = mio__dtypes[t->dtype].bits;
    if (e->shape_type != MIO_JSON_ARRAY)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': \"shape\" is %s, expected an array of integers",
                         f, nm, mio_json_type_name(e->shape_type));
    if (e->shape_bad)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': shape[%zu] is not a non-negative integer",
                         f, nm, e->shape_bad - 1);
    if (rank > MIO_MAX_RANK)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': rank %zu exceeds MIO_MAX_RANK (%d)",
                         f, nm, rank, MIO_MAX_RANK);
    if (e->offs_type != MIO_JSON_ARRAY || (!e->offs_bad && e->noffs != 2))
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': \"data_offsets\" is %s, expected [begin, end]",
                         f, nm, e->offs_type != MIO_JSON_ARRAY ? mio_json_type_name(e->offs_type) : "not a pair");
    if (e->offs_bad)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': data_offsets[%zu] is not a non-negative integer",
                         f, nm, e->offs_bad - 1);

    mio__fmt_shape(sh, sizeof sh, e->dims, (int)rank, 0);
    for (i = 0; i < rank; i++)
        if (e->dims[i] == 0) nelem = 0; /* an empty tensor: no bytes, whatever the other sizes */
    for (i = 0; i < rank && nelem; i++) {
        if (nelem > UINT64_MAX / e->dims[i])
            return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': shape %s: element count overflows",
                             f, nm, sh);
        nelem *= e->dims[i];
    }
    if (nelem > UINT64_MAX / (uint64_t)bits || nelem > (uint64_t)((size_t)-1))
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': shape %s of %s: byte size overflows",
                         f, nm, sh, ds);
    nbits = nelem * (uint64_t)bits;
    if (nbits % 8)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': shape %s of %s is not a whole number of bytes",
                         f, nm, sh, ds);
    if (e->offs[0] > e->offs[1])
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': data_offsets [%llu, %llu] have begin > end",
                         f, nm, (unsigned long long)e->offs[0], (unsigned long long)e->offs[1]);
    if (e->offs[1] > (uint64_t)data_size)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': data_offsets [%llu, %llu] end past the data section (%zu bytes from file offset %zu; file is %zu bytes)",
                         f, nm, (unsigned long long)e->offs[0], (unsigned long long)e->offs[1], data_size,
                         st->data_start, st->size);
    if (e->offs[1] - e->offs[0] != nbits / 8)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s': shape %s of %s needs %llu bytes, but data_offsets [%llu, %llu] span %llu",
                         f, nm, sh, ds, (unsigned long long)(nbits / 8), (unsigned long long)e->offs[0],
                         (unsigned long long)e->offs[1], (unsigned long long)(e->offs[1] - e->offs[0]));
    t->name = nm;
    t->rank = (int)rank;
    for (i = 0; i < MIO_MAX_RANK; i++) t->shape[i] = i < rank ? (int64_t)e->dims[i] : 0;
    t->nelem = (size_t)nelem;
    t->nbytes = (size_t)(nbits / 8);
    t->data = st->base ? st->base + st->data_start + e->offs[0] : NULL;
    t->offset = (uint64_t)st->data_start + e->offs[0];
    t->file = st->path;
    t->mapped = st->mapped;
    return MIO_OK;
}

/* A value that is not the kind asked for: "what is TYPE, expected WANT", or the syntax error of
   a malformed scalar. A container is not read: it is the wrong kind whatever it holds. */
static int mio__jp_wrong(mio__jp *p, const char *f, const char *what, const char *want)
{
    mio_json v;
    char *sp = p->sp;
    int rc = MIO_OK, type = mio__jp_peek(p);
    if (type == MIO_JSON_OBJECT || type == MIO_JSON_ARRAY) { /* wrong whatever is inside */
        v.type = type;
    } else {
        rc = mio__jp_scalar(p, &v);
        p->sp = sp;
    }
    if (rc) return rc;
    return mio__fail(p->err, p->es, MIO_ERR_FORMAT, "%s: %s is %s, expected %s", f, what,
                     mio_json_type_name(v.type), want);
}

/* The header at hdr (hlen bytes): the tensor table, streamed; only the names are kept. */
static int mio__st_header(mio_safetensors *st, const unsigned char *hdr, size_t hlen, char *err,
                          size_t es)
{
    const char *f = st->path;
    size_t data_size = st->size - st->data_start, n = 0, cap = 0, start, i;
    mio__range *rg;
    char *jname, what[256];
    int rc = MIO_OK, more;
    mio__jp p;

    jname = (char *)MIO_MALLOC(strlen(f) + 40);
    st->names = (char *)MIO_MALLOC(hlen + 1);
    if (!jname || !st->names) {
        MIO_FREE(jname);
        return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", f);
    }
    snprintf(jname, strlen(f) + 40, "%s: JSON header at file offset 8", f);
    mio__jp_init(&p, hdr, hlen, st->names, jname, err, es);
    if (mio__jp_peek(&p) != MIO_JSON_OBJECT) {
        if (p.pos >= p.n) rc = mio__jp_fail(&p, p.pos, "empty input, expected a JSON value");
        else rc = mio__jp_wrong(&p, f, "header", "a JSON object");
        goto done;
    }
    start = p.pos;
    mio__jp_open(&p, &more);
    while (more) {
        const char *nm;
        size_t nlen;
        char *nsp = p.sp;
        rc = mio__jp_key(&p, &nm, &nlen);
        if (rc) goto done;
        if (nlen == 12 && memcmp(nm, "__metadata__", 12) == 0) { /* an object of strings */
            size_t mstart = p.pos;
            int mmore;
            p.sp = nsp;
            if (mio__jp_peek(&p) != MIO_JSON_OBJECT) {
                rc = mio__jp_wrong(&p, f, "__metadata__", "an object of strings");
                goto done;
            }
            mstart = p.pos;
            mio__jp_open(&p, &mmore);
            while (mmore) {
                const char *mk;
                size_t mklen;
                mio_json v;
                rc = mio__jp_key(&p, &mk, &mklen);
                if (!rc) rc = mio__jp_scalar(&p, &v);
                if (rc) goto done;
                if (v.type != MIO_JSON_STRING) {
                    snprintf(what, sizeof what, "__metadata__ '%.200s'", mk);
                    rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: %s is %s, expected a string", f,
                                   what, mio_json_type_name(v.type));
                    goto done;
                }
                p.sp = nsp;
                rc = mio__jp_sep(&p, 1, mstart, &mmore);
                if (rc) goto done;
            }
        } else {
            mio__st_fields e;
            char *fsp = p.sp;
            if (strlen(nm) != nlen) {
                rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: a tensor name contains a NUL character", f);
                goto done;
            }
            if (mio__jp_peek(&p) != MIO_JSON_OBJECT) {
                snprintf(what, sizeof what, "tensor '%.200s': entry", nm);
                rc = mio__jp_wrong(&p, f, what, "an object with dtype, shape, data_offsets");
                goto done;
            }
            rc = mio__st_read_entry(&p, f, nm, &e);
            if (rc) goto done;
            if (n == cap) { /* grow by half: the table is at most ~2.6 x the header */
                size_t nc = cap ? cap + cap / 2 : 16, bytes;
                mio_tensor *nt;
                if (!mio__mul_size(nc, sizeof(mio_tensor), &bytes) ||
                    !(nt = (mio_tensor *)MIO_REALLOC(st->tensors, bytes))) {
                    rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory for %zu tensors", f, nc);
                    goto done;
                }
                st->tensors = nt;
                cap = nc;
            }
            memset(&st->tensors[n], 0, sizeof(mio_tensor));
            rc = mio__st_entry(st, nm, &e, &st->tensors[n], data_size, err, es);
            if (rc) goto done;
            p.sp = fsp; /* the name stays, the dtype string goes */
            n++;
        }
        rc = mio__jp_sep(&p, 1, start, &more);
        if (rc) goto done;
    }
    mio__jp_ws(&p);
    if (p.pos != p.n) {
        char w[16];
        rc = mio__jp_fail(&p, p.pos, "unexpected %s after the top-level value",
                          mio__jp_what(&p, p.pos, w, sizeof w));
        goto done;
    }
    st->n_tensors = n;

    if (n > 1) qsort(st->tensors, n, sizeof(mio_tensor), mio__tensor_cmp); /* NULL when n = 0 */
    for (i = 1; i < n; i++)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s' appears twice in the header",
                           f, st->tensors[i].name);
            goto done;
        }

    /* Overlapping data would mean two tensors share bytes; the format forbids it. */
    rg = (mio__range *)MIO_MALLOC((n ? n : 1) * sizeof(mio__range));
    if (!rg) {
        rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", f);
        goto done;
    }
    for (i = 0; i < n; i++) {
        rg[i].begin = st->tensors[i].offset - st->data_start;
        rg[i].end = rg[i].begin + st->tensors[i].nbytes;
        rg[i].i = i;
    }
    qsort(rg, n, sizeof(mio__range), mio__range_cmp);
    {
        size_t prev = MIO__NONE; /* the non-empty range with the largest end so far */
        for (i = 0; i < n && !rc; i++) {
            if (rg[i].begin == rg[i].end) continue;
            if (prev != MIO__NONE && rg[i].begin < rg[prev].end)
                rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensors '%.200s' [%llu, %llu] and '%.200s' [%llu, %llu] overlap",
                               f, st->tensors[rg[prev].i].name, (unsigned long long)rg[prev].begin,
                               (unsigned long long)rg[prev].end, st->tensors[rg[i].i].name,
                               (unsigned long long)rg[i].begin, (unsigned long long)rg[i].end);
            if (prev == MIO__NONE || rg[i].end > rg[prev].end) prev = i;
        }
    }
    MIO_FREE(rg);
done:
    MIO_FREE(jname);
    return rc;
}

/* The 8-byte header length and the byte after it (b: the file's first min(size, 9) bytes). */
static int mio__st_length(mio_safetensors *st, const unsigned char *b, uint64_t *hlen, char *err,
                          size_t es)
{
    const char *f = st->path;
    if (st->size < 8)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                         f, st->size);
    *hlen = mio__le64(b);
    /* the spec: the JSON header must start with '{'. A length that does not fit the file and no
       '{' after it is some other file (a pytorch .bin, an HTML error page, an index) */
    if ((*hlen > (uint64_t)(st->size - 8) || *hlen > (uint64_t)MIO_ST_MAX_HEADER) &&
        (st->size == 8 || b[8] != '{'))
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: not a safetensors file (its first 8 bytes are no header length that fits the file, and no '{' follows them)",
                         f);
    if (*hlen > (uint64_t)(st->size - 8))
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header length %llu is larger than the file allows (%zu bytes after the 8-byte length; file is %zu bytes): truncated or not a safetensors file",
                         f, (unsigned long long)*hlen, st->size - 8, st->size);
    if (*hlen > (uint64_t)MIO_ST_MAX_HEADER)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                         f, (unsigned long long)*hlen, (unsigned long long)MIO_ST_MAX_HEADER);
    st->data_start = 8 + (size_t)*hlen;
    return MIO_OK;
}

static int mio__st_parse(mio_safetensors *st, char *err, size_t es)
{
    uint64_t hlen;
    int rc = mio__st_length(st, st->base, &hlen, err, es);
    return rc ? rc : mio__st_header(st, st->base + 8, (size_t)hlen, err, es);
}

/* n bytes at file offset off into buf: the count read, short at the end of the file; -1 with
   errno on an error */
static long long mio__pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        size_t k = n - got < ((size_t)1 << 30) ? n - got : ((size_t)1 << 30);
        ssize_t r = pread(fd, (char *)buf + got, k, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

/* MIO_READ: the header through pread; the file stays open for the loads */
static int mio__st_open_read(mio_safetensors *st, char *err, size_t es)
{
    unsigned char b[9], *hdr;
    uint64_t hlen;
    size_t want;
    long long got;
    int rc = mio__open_regular(st->path, &st->fd, &st->size, err, es);
    if (rc) return rc;
    want = st->size < 9 ? st->size : 9;
    got = mio__pread_all(st->fd, b, want, 0);
    if (got != (long long)want)
        return mio__fail(err, es, MIO_ERR_IO, "%s: read failed: %s", st->path,
                         got < 0 ? strerror(errno) : "the file got shorter");
    rc = mio__st_length(st, b, &hlen, err, es);
    if (rc) return rc;
    hdr = (unsigned char *)MIO_MALLOC(hlen ? (size_t)hlen : 1);
    if (!hdr) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory for the %llu-byte header", st->path,
                               (unsigned long long)hlen);
    got = mio__pread_all(st->fd, hdr, (size_t)hlen, 8);
    if (got != (long long)hlen)
        rc = mio__fail(err, es, MIO_ERR_IO, "%s: read of the header failed: %s", st->path,
                       got < 0 ? strerror(errno) : "the file got shorter");
    else
        rc = mio__st_header(st, hdr, (size_t)hlen, err, es);
    MIO_FREE(hdr);
    return rc;
}

/* MIO_READ: t's bytes into anonymous memory, once */
static int mio__st_load(mio_safetensors *st, mio_tensor *t, char *err, size_t es)
{
    long sys = sysconf(_SC_PAGESIZE);
    size_t ps = sys > 0 ? (size_t)sys : 4096u, len;
    long long got;
    void *p;
    if (st->how != MIO_READ || t->data) return MIO_OK;
    if (t->nbytes == 0) {
        t->data = st->names; /* any valid address: there is nothing to read */
        return MIO_OK;
    }
    len = (t->nbytes + ps - 1) / ps * ps;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return mio__fail(err, es, MIO_ERR_NOMEM, "%s: tensor '%.200s': out of memory for %zu bytes", t->file,
                         t->name, t->nbytes);
#if defined(MADV_HUGEPAGE)
    if (len >= ((size_t)8 << 20)) (void)madvise(p, len, MADV_HUGEPAGE); /* fewer page faults */
#endif
    got = mio__pread_all(st->fd, p, t->nbytes, t->offset);
    if (got != (long long)t->nbytes) {
        int e = errno;
        munmap(p, len);
        if (got < 0)
            return mio__fail(err, es, MIO_ERR_IO, "%s: tensor '%.200s': read failed: %s", t->file, t->name, strerror(e));
        return mio__fail(err, es, MIO_ERR_IO, "%s: tensor '%.200s': the file ended after %lld of its %zu bytes (cut while it was open?)",
                         t->file, t->name, got, t->nbytes);
    }
    t->data = p;
    t->copy_len = len;
    t->mapped = 1;
    return MIO_OK;
}

MIODEF void mio_safetensors_close(mio_safetensors *st)
{
    size_t i;
    if (!st) return;
    if (st->mapped && st->base) munmap((void *)(uintptr_t)st->base, st->size);
    for (i = 0; i < st->n_tensors; i++)
        if (st->tensors[i].copy_len) munmap((void *)(uintptr_t)st->tensors[i].data, st->tensors[i].copy_len);
    if (st->how == MIO_READ && st->fd >= 0) close(st->fd);
    MIO_FREE(st->tensors);
    MIO_FREE(st->path);
    MIO_FREE(st->names);
    memset(st, 0, sizeof *st);
}

MIODEF int mio_safetensors_open_as(mio_safetensors *st, const char *path, int how, char *err,
                                   size_t err_size)
{
    int rc;
    mio__clear(err, err_size);
    if (!st || !path || (how != MIO_MAP && how != MIO_READ))
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_safetensors_open: NULL or bad argument");
    memset(st, 0, sizeof *st);
    st->fd = -1;
    st->path = mio__strndup(path, strlen(path));
    if (!st->path) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", path);
    if (how == MIO_READ) {
        st->how = MIO_READ;
        rc = mio__st_open_read(st, err, err_size);
    } else {
        rc = mio__map_file(path, &st->base, &st->size, err, err_size);
        if (!rc) {
            st->mapped = st->base != NULL;
            rc = mio__st_parse(st, err, err_size);
        }
    }
    if (rc) mio_safetensors_close(st);
    return rc;
}

MIODEF int mio_safetensors_open(mio_safetensors *st, const char *path, char *err, size_t err_size)
{
    return mio_safetensors_open_as(st, path, MIO_MAP, err, err_size);
}

MIODEF int mio_safetensors_open_mem(mio_safetensors *st, const void *buf, size_t len,
                                    const char *name, char *err, size_t err_size)
{
    int rc;
    mio__clear(err, err_size);
    if (!st || (!buf && len))
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_safetensors_open_mem: NULL argument");
    memset(st, 0, sizeof *st);
    if (!name) name = "<memory>";
    st->path = mio__strndup(name, strlen(name));
    if (!st->path) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", name);
    st->base = (const unsigned char *)buf;
    st->size = len;
    rc = mio__st_parse(st, err, err_size);
    if (rc) mio_safetensors_close(st);
    return rc;
}

MIODEF const mio_tensor *mio_safetensors_find(const mio_safetensors *st, const char *name)
{
    size_t lo = 0, hi;
    if (!st || !name) return NULL;
    hi = st->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[mid].name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

MIODEF int mio_safetensors_get(const mio_safetensors *st, const char *name,
                               const mio_tensor **out, char *err, size_t err_size)
{
    mio__clear(err, err_size);
    if (!st || !name || !out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_safetensors_get: NULL argument");
    *out = mio_safetensors_find(st, name);
    if (!*out) return mio__fail(err, err_size, MIO_ERR_NOT_FOUND, "%s: tensor '%s' not found", st->path, name);
    return MIO_OK;
}

MIODEF int mio_safetensors_load(mio_safetensors *st, const char *name, const mio_tensor **out,
                                char *err, size_t err_size)
{
    int rc = mio_safetensors_get(st, name, out, err, err_size);
    if (rc) return rc;
    rc = mio__st_load(st, &st->tensors[*out - st->tensors], err, err_size);
    if (rc) *out = NULL;
    return rc;
}

MIODEF int mio_tensor_release(const mio_tensor *t, size_t offset, size_t len,
                              char *err, size_t err_size)
{
    uintptr_t lo, hi, ps;
    long sys;
    mio__clear(err, err_size);
    if (!t) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_tensor_release: tensor is NULL");
    if (offset > t->nbytes || len > t->nbytes - offset)
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_tensor_release: range [%zu, %zu + %zu) is outside tensor '%s' (%zu bytes)",
                         offset, offset, len, t->name, t->nbytes);
    if (!t->mapped || len == 0) return MIO_OK;
    sys = sysconf(_SC_PAGESIZE);
    ps = sys > 0 ? (uintptr_t)sys : 4096u;
    lo = (uintptr_t)t->data + offset;
    hi = lo + len;
    lo = (lo + ps - 1) / ps * ps;
    hi = hi / ps * ps;
    if (hi <= lo) return MIO_OK;
#if defined(MADV_DONTNEED)
    if (madvise((void *)lo, (size_t)(hi - lo), MADV_DONTNEED) != 0)
        return mio__fail(err, err_size, MIO_ERR_IO, "%s: madvise(MADV_DONTNEED) on tensor '%s' failed: %s",
                         t->file, t->name, strerror(errno));
#elif defined(POSIX_MADV_DONTNEED)
    {
        int e = posix_madvise((void *)lo, (size_t)(hi - lo), POSIX_MADV_DONTNEED);
        if (e != 0)
            return mio__fail(err, err_size, MIO_ERR_IO, "%s: posix_madvise on tensor '%s' failed: %s",
                             t->file, t->name, strerror(e));
    }
#endif
    return MIO_OK;
}

/* ---- model directory ---- */

static int mio__entry_cmp(const void *a, const void *b)
{
    return strcmp(((const mio_model_entry *)a)->name, ((const mio_model_entry *)b)->name);
}

/* A shard name must stay inside the model directory: relative, no ".." component. */
static int mio__safe_relpath(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || strlen(s) != len || s[0] == '/') return 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '/') j++;
        if (j - i == 2 && s[i] == '.' && s[i + 1] == '.') return 0;
        i = j + 1;
    }
    return 1;
}

static size_t mio__model_find(const mio_model *m, const char *name)
{
    size_t lo = 0, hi = m->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->entries[mid].name);
        if (c == 0) return mid;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return MIO__NONE;
}

static int mio__ptr_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Streams the index: "weight_map" into entries (name, index of its file in `files`), every
   other member checked and skipped. */
static int mio__index_read(mio_model *m, mio__jp *p, const char ***files_out, char *err, size_t es)
{
    const char *ip = m->index_path, **files = NULL;
    size_t start, n = 0, cap = 0;
    int rc, more, seen = 0;
    *files_out = NULL;
    if (mio__jp_peek(p) != MIO_JSON_OBJECT) {
        if (p->pos >= p->n) return mio__jp_fail(p, p->pos, "empty input, expected a JSON value");
        return mio__jp_wrong(p, ip, "the index", "a JSON object with a \"weight_map\"");
    }
    start = p->pos;
    mio__jp_open(p, &more);
    while (more) {
        const char *key;
        size_t klen;
        char *ksp = p->sp;
        rc = mio__jp_key(p, &key, &klen);
        if (rc) goto fail;
        p->sp = ksp;
        if (klen != 10 || memcmp(key, "weight_map", 10) != 0) {
            rc = mio__jp_value(p, NULL, 0, NULL);
        } else if (seen) {
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: \"weight_map\" appears twice", ip);
        } else if (mio__jp_peek(p) != MIO_JSON_OBJECT) {
            rc = mio__jp_wrong(p, ip, "\"weight_map\"", "an object mapping tensor names to shard files");
        } else {
            size_t wstart = p->pos;
            int wmore;
            seen = 1;
            mio__jp_open(p, &wmore);
            while (wmore) {
                const char *nm;
                size_t nlen;
                mio_json v;
                rc = mio__jp_key(p, &nm, &nlen);
                if (!rc) rc = mio__jp_scalar(p, &v);
                if (rc) goto fail;
                if (strlen(nm) != nlen) {
                    rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: a tensor name in weight_map contains a NUL character", ip);
                    goto fail;
                }
                if (v.type != MIO_JSON_STRING) {
                    rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: weight_map['%.200s'] is %s, expected a shard file name",
                                   ip, nm, mio_json_type_name(v.type));
                    goto fail;
                }
                if (!mio__safe_relpath(v.str, v.str_len)) {
                    rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: weight_map['%.200s'] = '%.200s' is not a file name inside the model directory",
                                   ip, nm, v.str);
                    goto fail;
                }
                if (n == cap) { /* grow by half: 24 bytes an entry, which takes >= 8 bytes */
                    size_t nc = cap ? cap + cap / 2 : 16, b1, b2;
                    mio_model_entry *ne = NULL;
                    const char **nf = NULL;
                    if (mio__mul_size(nc, sizeof *ne, &b1) && mio__mul_size(nc, sizeof *nf, &b2)) {
                        ne = (mio_model_entry *)MIO_REALLOC(m->entries, b1);
                        if (ne) m->entries = ne;
                        nf = ne ? (const char **)MIO_REALLOC((void *)files, b2) : NULL;
                        if (nf) files = nf;
                    }
                    if (!ne || !nf) {
                        rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory for %zu entries", ip, nc);
                        goto fail;
                    }
                    cap = nc;
                }
                m->entries[n].name = nm;
                m->entries[n].shard = n;
                files[n++] = v.str;
                rc = mio__jp_sep(p, 1, wstart, &wmore);
                if (rc) goto fail;
            }
        }
        if (!rc) rc = mio__jp_sep(p, 1, start, &more);
        if (rc) goto fail;
    }
    mio__jp_ws(p);
    if (p->pos != p->n) {
        char w[16];
        rc = mio__jp_fail(p, p->pos, "unexpected %s after the top-level value", mio__jp_what(p, p->pos, w, sizeof w));
        goto fail;
    }
    m->n_entries = n;
    if (!seen)
        rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: \"weight_map\" is absent, expected an object mapping tensor names to shard files", ip);
    else if (n == 0)
        rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: \"weight_map\" is empty", ip);
    if (rc) goto fail;
    *files_out = files;
    return MIO_OK;
fail:
    MIO_FREE((void *)files);
    return rc;
}

/* The index from its text (len bytes): entries sorted by name, the distinct shards. */
static int mio__model_index_text(mio_model *m, const unsigned char *text, size_t len, char *err,
                                 size_t es)
{
    const char *ip = m->index_path, **files = NULL, **uniq = NULL;
    size_t n, i, k;
    mio__jp p;
    int rc;
    m->index_strings = (char *)MIO_MALLOC(len + 1);
    if (!m->index_strings) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", ip);
    mio__jp_init(&p, text, len, m->index_strings, ip, err, es);
    rc = mio__index_read(m, &p, &files, err, es);
    if (rc) return rc;
    n = m->n_entries;
    qsort(m->entries, n, sizeof(mio_model_entry), mio__entry_cmp);
    for (i = 1; i < n && !rc; i++)
        if (strcmp(m->entries[i - 1].name, m->entries[i].name) == 0)
            rc = mio__fail(err, es, MIO_ERR_FORMAT, "%s: tensor '%.200s' appears twice in weight_map",
                           ip, m->entries[i].name);
    /* the distinct shard files, then each entry's shard by binary search */
    if (!rc && !(uniq = (const char **)MIO_MALLOC(n * sizeof *uniq)))
        rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", ip);
    if (!rc) {
        memcpy((void *)uniq, (const void *)files, n * sizeof *uniq);
        qsort((void *)uniq, n, sizeof *uniq, mio__ptr_strcmp);
        for (i = 0, k = 0; i < n; i++)
            if (k == 0 || strcmp(uniq[k - 1], uniq[i]) != 0) uniq[k++] = uniq[i];
        m->shards = (mio_model_shard *)MIO_MALLOC(k * sizeof(mio_model_shard));
        if (!m->shards) rc = mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", ip);
    }
    if (!rc) {
        memset(m->shards, 0, k * sizeof(mio_model_shard));
        for (i = 0; i < k; i++) m->shards[i].file = uniq[i];
        m->n_shards = k;
        for (i = 0; i < n; i++) {
            const char *file = files[m->entries[i].shard];
            const char **at = (const char **)bsearch(&file, (const void *)uniq, k, sizeof *uniq, mio__ptr_strcmp);
            m->entries[i].shard = (size_t)(at - uniq);
        }
    }
    MIO_FREE((void *)uniq);
    MIO_FREE((void *)files);
    return rc;
}

static int mio__model_index(mio_model *m, char *err, size_t es)
{
    unsigned char *text;
    size_t len;
    int rc = mio__read_file(m->index_path, MIO_INDEX_MAX_FILE, &text, &len, err, es);
    if (rc) return rc;
    rc = mio__model_index_text(m, text, len, err, es);
    MIO_FREE(text);
    return rc;
}

MIODEF void mio_model_close(mio_model *m)
{
    size_t i;
    if (!m) return;
    mio_safetensors_close(&m->single);
    for (i = 0; i < m->n_shards; i++)
        if (m->shards[i].open) mio_safetensors_close(&m->shards[i].st);
    MIO_FREE(m->shards);
    MIO_FREE(m->entries);
    MIO_FREE(m->index_strings);
    MIO_FREE(m->dir);
    MIO_FREE(m->index_path);
    memset(m, 0, sizeof *m);
}

MIODEF int mio_model_open(mio_model *m, const char *dir, char *err, size_t err_size)
{
    return mio_model_open_as(m, dir, MIO_MAP, err, err_size);
}

MIODEF int mio_model_open_as(mio_model *m, const char *dir, int how, char *err, size_t err_size)
{
    struct stat sb;
    char *single;
    int rc;
    mio__clear(err, err_size);
    if (!m || !dir || (how != MIO_MAP && how != MIO_READ))
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_model_open: NULL or bad argument");
    memset(m, 0, sizeof *m);
    m->how = how;
    if (stat(dir, &sb) != 0)
        return mio__fail(err, err_size, MIO_ERR_IO, "model directory '%s' cannot be opened: %s", dir,
                         strerror(errno));
    m->dir = mio__strndup(dir, strlen(dir));
    if (!m->dir) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", dir);
    if (S_ISREG(sb.st_mode)) {
        rc = mio_safetensors_open_as(&m->single, dir, how, err, err_size);
        if (rc) mio_model_close(m);
        return rc;
    }
    if (!S_ISDIR(sb.st_mode)) {
        mio_model_close(m);
        return mio__fail(err, err_size, MIO_ERR_IO, "model path '%s' is neither a directory nor a file", dir);
    }
    single = mio__join(dir, "model.safetensors");
    m->index_path = mio__join(dir, "model.safetensors.index.json");
    if (!single || !m->index_path) {
        MIO_FREE(single);
        mio_model_close(m);
        return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", dir);
    }
    if (stat(single, &sb) == 0) {
        MIO_FREE(m->index_path);
        m->index_path = NULL;
        rc = mio_safetensors_open_as(&m->single, single, how, err, err_size);
    } else if (stat(m->index_path, &sb) == 0) {
        m->sharded = 1;
        rc = mio__model_index(m, err, err_size);
    } else {
        rc = mio__fail(err, err_size, MIO_ERR_IO, "model directory '%s' has neither model.safetensors nor model.safetensors.index.json",
                       dir);
    }
    MIO_FREE(single);
    if (rc) mio_model_close(m);
    return rc;
}

MIODEF int mio_model_tensor(mio_model *m, const char *name, const mio_tensor **out,
                            char *err, size_t err_size)
{
    mio_model_shard *sh;
    size_t at;
    mio__clear(err, err_size);
    if (!m || !name || !out) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_model_tensor: NULL argument");
    *out = NULL;
    if (!m->sharded) return mio_safetensors_load(&m->single, name, out, err, err_size);
    at = mio__model_find(m, name);
    if (at == MIO__NONE)
        return mio__fail(err, err_size, MIO_ERR_NOT_FOUND, "tensor '%s' not found in %s", name, m->index_path);
    sh = &m->shards[m->entries[at].shard];
    if (!sh->open) {
        char why[MIO_ERR_SIZE];
        struct stat sb;
        char *path = mio__join(m->dir, sh->file);
        int rc;
        if (!path) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory", m->dir);
        if (stat(path, &sb) != 0 && errno == ENOENT) {
            rc = mio__fail(err, err_size, MIO_ERR_IO, "shard file '%s' is missing (model.safetensors.index.json lists it for tensor '%s')",
                           path, name);
            MIO_FREE(path);
            return rc;
        }
        rc = mio_safetensors_open_as(&sh->st, path, m->how, why, sizeof why);
        MIO_FREE(path);
        if (rc)
            return mio__fail(err, err_size, rc, "shard of tensor '%s' (model.safetensors.index.json): %s",
                             name, why);
        sh->open = 1;
    }
    *out = mio_safetensors_find(&sh->st, name);
    if (!*out)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "tensor '%s': model.safetensors.index.json maps it to '%s', but that shard has no such tensor",
                         name, sh->file);
    return mio_safetensors_load(&sh->st, name, out, err, err_size);
}

MIODEF int mio_model_has(const mio_model *m, const char *name)
{
    if (!m || !name) return 0;
    if (!m->sharded) return mio_safetensors_find(&m->single, name) != NULL;
    return mio__model_find(m, name) != MIO__NONE;
}

MIODEF size_t mio_model_count(const mio_model *m)
{
    if (!m) return 0;
    return m->sharded ? m->n_entries : m->single.n_tensors;
}

MIODEF const char *mio_model_name_at(const mio_model *m, size_t i)
{
    if (i >= mio_model_count(m)) return NULL;
    return m->sharded ? m->entries[i].name : m->single.tensors[i].name;
}

/* ---- npy ----
   Format (numpy/lib/format.py, NEP 1): "\x93NUMPY", major, minor, header length (u16 LE for
   1.0, u32 LE for 2.0), then a Python dict literal {'descr': '<f4', 'fortran_order': False,
   'shape': (T, D), } padded with spaces and ended by '\n', then the raw data. */

typedef struct mio__npyh {
    char descr[32];
    int fortran;
    int rank;
    uint64_t shape[MIO_NPY_MAX_RANK];
} mio__npyh;

static void mio__npy_ws(const char *h, size_t n, size_t *pos)
{
    while (*pos < n && (h[*pos] == ' ' || h[*pos] == '\t' || h[*pos] == '\n' || h[*pos] == '\r')) (*pos)++;
}

/* a Python string literal without escapes, into out (at most cap-1 chars) */
static int mio__npy_str(const char *h, size_t n, size_t *pos, char *out, size_t cap)
{
    char q;
    size_t k = 0;
    if (*pos >= n || (h[*pos] != '\'' && h[*pos] != '"')) return 0;
    q = h[(*pos)++];
    while (*pos < n && h[*pos] != q) {
        if (h[*pos] == '\\' || k + 1 >= cap) return 0;
        out[k++] = h[(*pos)++];
    }
    if (*pos >= n) return 0;
    (*pos)++;
    out[k] = '\0';
    return 1;
}

static int mio__npy_header(const char *h, size_t n, const char *f, mio__npyh *o, char *err, size_t es)
{
    size_t pos = 0;
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    char key[32];
    mio__npy_ws(h, n, &pos);
    if (pos >= n || h[pos] != '{')
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header does not start with a '{' dict", f);
    pos++;
    for (;;) {
        mio__npy_ws(h, n, &pos);
        if (pos < n && h[pos] == '}') {
            pos++;
            break;
        }
        if (!mio__npy_str(h, n, &pos, key, sizeof key))
            return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: expected a quoted key at header byte %zu", f, pos);
        mio__npy_ws(h, n, &pos);
        if (pos >= n || h[pos] != ':')
            return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: expected ':' after '%s'", f, key);
        pos++;
        mio__npy_ws(h, n, &pos);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            if (pos < n && (h[pos] == '[' || h[pos] == '{'))
                return mio__fail(err, es, MIO_ERR_UNSUPPORTED, "%s: dtype is a structured (record) dtype, expected '<f4' (float32)", f);
            if (!mio__npy_str(h, n, &pos, o->descr, sizeof o->descr))
                return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: 'descr' is not a short quoted string", f);
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            seen_fortran = 1;
            if (n - pos >= 4 && memcmp(h + pos, "True", 4) == 0) {
                o->fortran = 1;
                pos += 4;
            } else if (n - pos >= 5 && memcmp(h + pos, "False", 5) == 0) {
                o->fortran = 0;
                pos += 5;
            } else {
                return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: 'fortran_order' is neither True nor False", f);
            }
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            seen_shape = 1;
            if (pos >= n || h[pos] != '(')
                return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: 'shape' is not a tuple", f);
            pos++;
            for (;;) {
                uint64_t d = 0;
                size_t d0;
                mio__npy_ws(h, n, &pos);
                if (pos < n && h[pos] == ')') {
                    pos++;
                    break;
                }
                d0 = pos;
                while (pos < n && h[pos] >= '0' && h[pos] <= '9') {
                    unsigned dg = (unsigned)(h[pos] - '0');
                    if (d > (UINT64_MAX - dg) / 10)
                        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: a shape dimension overflows", f);
                    d = d * 10 + dg;
                    pos++;
                }
                if (pos == d0)
                    return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: 'shape' holds something that is not a non-negative integer", f);
                if (o->rank == MIO_NPY_MAX_RANK)
                    return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: shape has more than %d dimensions", f, MIO_NPY_MAX_RANK);
                o->shape[o->rank++] = d;
                mio__npy_ws(h, n, &pos);
                if (pos < n && h[pos] == ',') pos++;
                else if (pos >= n || h[pos] != ')')
                    return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: expected ',' or ')' in 'shape'", f);
            }
        } else {
            return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: unexpected or repeated key '%s'", f, key);
        }
        mio__npy_ws(h, n, &pos);
        if (pos < n && h[pos] == ',') pos++;
        else if (pos >= n || h[pos] != '}')
            return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: expected ',' or '}' after '%s'", f, key);
    }
    mio__npy_ws(h, n, &pos);
    if (pos != n)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header: unexpected bytes after the dict", f);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return mio__fail(err, es, MIO_ERR_FORMAT, "%s: header lacks '%s'", f,
                         !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return MIO_OK;
}

/* Element size of a dtype the readers take ('<f4', '<i4', '<f8'), 0 for any other. */
static size_t mio__npy_esize(const char *descr)
{
    if (strcmp(descr, "<f4") == 0 || strcmp(descr, "<i4") == 0) return 4;
    return strcmp(descr, "<f8") == 0 ? 8 : 0;
}

/* The readers' common part: checks an npy buffer (version, header, dtype, C order, rank 2 or,
   with rank_out, rank >= 2 and the shape into rank_out/shape_out, exact data size) and copies
   its elements into a malloc'd array, as float (to_f64 == 0; the file must be '<f4') or as
   double (to_f64 == 1; '<f4', '<f8' or '<i4'). */
static int mio__npy_read_buf(const void *buf, size_t len, const char *name, int to_f64,
                             void **data, size_t *rows, size_t *cols, int *rank_out,
                             size_t *shape_out, char *err, size_t err_size)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t hstart, hlen, n, nbytes, obytes, esize, avail, i, lead = 1;
    mio__npyh h;
    char sh[96];
    unsigned char *out;
    int rc, d;
    *data = NULL;
    *rows = *cols = 0;
    if (!name) name = "<memory>";
    memset(&h, 0, sizeof h);
    if (len < 10)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: file is %zu bytes, too short for an npy header (truncated?)",
                         name, len);
    if (memcmp(b, "\x93NUMPY", 6) != 0)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: not an npy file (missing the \\x93NUMPY magic)", name);
    if (b[6] == 1 && b[7] == 0) {
        hstart = 10;
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else if (b[6] == 2 && b[7] == 0) {
        if (len < 12)
            return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: file is %zu bytes, too short for an npy 2.0 header (truncated?)",
                             name, len);
        hstart = 12;
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)((uint32_t)b[11] << 24);
    } else {
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: npy format version %u.%u, expected 1.0 or 2.0",
                         name, b[6], b[7]);
    }
    if (hlen > len - hstart)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: header length %zu runs past the end of the file (%zu bytes; truncated?)",
                         name, hlen, len);
    rc = mio__npy_header((const char *)b + hstart, hlen, name, &h, err, err_size);
    if (rc) return rc;
    esize = mio__npy_esize(h.descr);
    if (!to_f64 && strcmp(h.descr, "<f4") != 0)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: dtype is '%s', expected '<f4' (float32)", name, h.descr);
    if (!esize)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: dtype is '%s', expected '<f4', '<f8' or '<i4'", name, h.descr);
    if (h.fortran)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: fortran_order is True, expected C order", name);
    mio__fmt_shape(sh, sizeof sh, h.shape, h.rank, 1);
    if (!rank_out && h.rank != 2)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: shape %s has rank %d, expected [T][hidden_size]",
                         name, sh, h.rank);
    if (rank_out && h.rank < 2)
        return mio__fail(err, err_size, MIO_ERR_UNSUPPORTED, "%s: shape %s has rank %d, expected [..., hidden_size]",
                         name, sh, h.rank);
    for (d = 0; d < h.rank; d++)
        if (h.shape[d] > (uint64_t)((size_t)-1) ||
            (d < h.rank - 1 && !mio__mul_size(lead, (size_t)h.shape[d], &lead)))
            return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: shape %s: byte size overflows", name, sh);
    if (!mio__mul_size(lead, (size_t)h.shape[h.rank - 1], &n) || !mio__mul_size(n, esize, &nbytes) ||
        !mio__mul_size(n, to_f64 ? 8 : 4, &obytes))
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: shape %s: byte size overflows", name, sh);
    avail = len - hstart - hlen;
    if (avail < nbytes)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: data truncated: shape %s %s needs %zu bytes, file has %zu after the header",
                         name, sh, esize == 8 ? "float64" : h.descr[1] == 'f' ? "float32" : "int32", nbytes, avail);
    if (avail > nbytes)
        return mio__fail(err, err_size, MIO_ERR_FORMAT, "%s: %zu unexpected bytes after the data of shape %s",
                         name, avail - nbytes, sh);
    out = (unsigned char *)MIO_MALLOC(obytes ? obytes : 1);
    if (!out) return mio__fail(err, err_size, MIO_ERR_NOMEM, "%s: out of memory for %zu bytes", name, obytes);
    b += hstart + hlen;
    /* assembling the little-endian bytes into an integer works on a host of either order */
    for (i = 0; i < n; i++, b += esize) {
        uint64_t u = 0;
        int k;
        for (k = (int)esize - 1; k >= 0; k--) u = u << 8 | b[k];
        if (!to_f64) {
            uint32_t u32 = (uint32_t)u;
            memcpy(out + 4 * i, &u32, 4);
        } else {
            double v;
            if (esize == 8) {
                memcpy(&v, &u, 8);
            } else if (h.descr[1] == 'f') {
                uint32_t u32 = (uint32_t)u;
                float f;
                memcpy(&f, &u32, 4);
                v = f;
            } else {
                v = (double)(int32_t)(uint32_t)u;
            }
            memcpy(out + 8 * i, &v, 8);
        }
    }
    *data = out;
    *rows = lead;
    *cols = (size_t)h.shape[h.rank - 1];
    if (rank_out) {
        *rank_out = h.rank;
        for (d = 0; d < h.rank; d++) shape_out[d] = (size_t)h.shape[d];
    }
    return MIO_OK;
}

/* Reads path and parses it with mio__npy_read_buf. */
static int mio__npy_read_file(const char *path, int to_f64, void **data, size_t *rows, size_t *cols,
                              int *rank, size_t *shape, char *err, size_t err_size)
{
    unsigned char *buf;
    size_t size;
    int rc = mio__read_file(path, (size_t)-2, &buf, &size, err, err_size); /* read, not mapped */
    if (rc) return rc;
    rc = mio__npy_read_buf(buf, size, path, to_f64, data, rows, cols, rank, shape, err, err_size);
    MIO_FREE(buf);
    return rc;
}

MIODEF int mio_npy_read_mem(const void *buf, size_t len, const char *name, float **data,
                            size_t *rows, size_t *cols, char *err, size_t err_size)
{
    void *p = NULL;
    int rc;
    mio__clear(err, err_size);
    if (!data || !rows || !cols || (!buf && len))
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_npy_read_mem: NULL argument");
    rc = mio__npy_read_buf(buf, len, name, 0, &p, rows, cols, NULL, NULL, err, err_size);
    *data = (float *)p;
    return rc;
}

MIODEF int mio_npy_read(const char *path, float **data, size_t *rows, size_t *cols,
                        char *err, size_t err_size)
{
    void *p = NULL;
    int rc;
    mio__clear(err, err_size);
    if (!path || !data || !rows || !cols) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_npy_read: NULL argument");
    rc = mio__npy_read_file(path, 0, &p, rows, cols, NULL, NULL, err, err_size);
    *data = (float *)p;
    return rc;
}

MIODEF int mio_npy_read_nd(const char *path, float **data, int *rank, size_t *shape,
                           size_t *rows, size_t *cols, char *err, size_t err_size)
{
    void *p = NULL;
    int rc;
    mio__clear(err, err_size);
    if (!path || !data || !rank || !shape || !rows || !cols)
        return mio__fail(err, err_size, MIO_ERR_ARG, "mio_npy_read_nd: NULL argument");
    *rank = 0;
    rc = mio__npy_read_file(path, 0, &p, rows, cols, rank, shape, err, err_size);
    *data = (float *)p;
    return rc;
}

MIODEF int mio_npy_read_f64(const char *path, double **data, size_t *rows, size_t *cols,
                            char *err, size_t err_size)
{
    void *p = NULL;
    int rc;
    mio__clear(err, err_size);
    if (!path || !data || !rows || !cols) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_npy_read_f64: NULL argument");
    rc = mio__npy_read_file(path, 1, &p, rows, cols, NULL, NULL, err, err_size);
    *data = (double *)p;
    return rc;
}

/* ---- outputs that appear together ---- */

MIODEF void mio_outputs_init(mio_outputs *o)
{
    if (o) memset(o, 0, sizeof *o);
}

/* dir part of path ("." if none) into a fresh string */
static char *mio__dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return mio__strndup(".", 1);
    if (slash == path) return mio__strndup("/", 1);
    return mio__strndup(path, (size_t)(slash - path));
}

/* path's directory ("." if none) into d; 0 if it does not fit */
static int mio__dirpart(const char *path, char *d, size_t n)
{
    const char *slash = strrchr(path, '/');
    size_t k = slash ? (size_t)(slash - path) : 0;
    if (k + 2 > n) return 0;
    memcpy(d, path, k);
    strcpy(d + k, !slash ? "." : k ? "" : "/");
    return 1;
}

/* realpath of path's directory, then '/' and its last component; 0 if the directory is not
   there. No allocation: a safety check must not change its answer when memory is short. */
static int mio__canon(const char *path, char *out, size_t n)
{
    char d[PATH_MAX], dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    return mio__dirpart(path, d, sizeof d) && realpath(d, dir) != NULL &&
           (size_t)snprintf(out, n, "%s/%s", dir, slash ? slash + 1 : path) < n;
}

MIODEF int mio_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    char ca[PATH_MAX + 256], cb[PATH_MAX + 256];
    int ea, eb;
    if (!a || !b) return 0;
    ea = stat(a, &sa) == 0;
    eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea || eb) return 0;
    if (mio__canon(a, ca, sizeof ca) && mio__canon(b, cb, sizeof cb)) return strcmp(ca, cb) == 0;
    return strcmp(a, b) == 0;
}

/* dir + "/.mio-" + 10 random letters into a fresh string; the letters mix the clock, the pid,
   an address and the attempt, so no state is kept between calls */
static char *mio__tmpname(const char *dir, const void *salt, int attempt)
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    uint64_t z;
    size_t n = strlen(dir);
    char *s = (char *)MIO_MALLOC(n + 17);
    int i;
    if (!s) return NULL;
    clock_gettime(CLOCK_REALTIME, &ts);
    z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 20) ^
        (uint64_t)(uintptr_t)salt ^ (uint64_t)attempt * 0x9E3779B97F4A7C15ULL;
    memcpy(s, dir, n);
    memcpy(s + n, "/.mio-", 6);
    for (i = 0; i < 10; i++) { /* splitmix64 */
        z += 0x9E3779B97F4A7C15ULL;
        {
            uint64_t x = z;
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
            x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
            s[n + 6 + i] = abc[(x ^ (x >> 31)) % 36];
        }
    }
    s[n + 16] = '\0';
    return s;
}

/* A new file next to path: the fd, and its name in *tmp */
static int mio__tmp_create(const char *path, char **tmp, int *fd_out, char *err, size_t es)
{
    char *dir = mio__dirname(path);
    int i, fd = -1, e = 0;
    *tmp = NULL;
    if (!dir) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", path);
    for (i = 0; i < 100 && fd < 0; i++) {
        MIO_FREE(*tmp);
        *tmp = mio__tmpname(dir, tmp, i);
        if (!*tmp) break;
        fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        e = errno;
        if (fd < 0 && e != EEXIST) break;
    }
    MIO_FREE(dir);
    if (fd < 0) {
        MIO_FREE(*tmp);
        *tmp = NULL;
        if (e == 0) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", path);
        return mio__fail(err, es, MIO_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
    }
    *fd_out = fd;
    return MIO_OK;
}

static int mio__write_all(int fd, const void *p, size_t n)
{
    const char *c = (const char *)p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        c += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Header + elements (4 bytes each, stored little-endian) into a temporary file for path. */
static int mio__npy_stage(mio_outputs *o, const char *path, const void *data, const char *descr,
                          int rank, const size_t *shape, char *err, size_t es)
{
    /* 32 dimensions of 20 digits and the dict's words fit, under v1.0's 65535 */
    char hdr[1024], sh[MIO_NPY_MAX_RANK * 22 + 4];
    size_t nbytes = 4, hl, at = 0;
    struct stat sb;
    mio_output *f;
    int fd = -1, i, ok, rc;
    if (!o || !path || !shape) return mio__fail(err, es, MIO_ERR_ARG, "npy write: NULL argument");
    if (rank < 1 || rank > MIO_NPY_MAX_RANK)
        return mio__fail(err, es, MIO_ERR_ARG, "%s: rank %d, expected 1..%d", path, rank, MIO_NPY_MAX_RANK);
    at += (size_t)snprintf(sh, sizeof sh, "(");
    for (i = 0; i < rank; i++)
        at += (size_t)snprintf(sh + at, sizeof sh - at, "%s%zu", i ? ", " : "", shape[i]);
    snprintf(sh + at, sizeof sh - at, "%s)", rank == 1 ? "," : "");
    for (i = 0; i < rank; i++)
        if (!mio__mul_size(nbytes, shape[i], &nbytes))
            return mio__fail(err, es, MIO_ERR_ARG, "%s: shape %s: byte size overflows", path, sh);
    if (!data && nbytes) return mio__fail(err, es, MIO_ERR_ARG, "npy write: NULL argument");
    if (o->n == MIO_MAX_OUTPUTS)
        return mio__fail(err, es, MIO_ERR_ARG, "%s: more than %d outputs in one set", path, MIO_MAX_OUTPUTS);
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return mio__fail(err, es, MIO_ERR_IO, "%s: is %s, not a file to replace", path, mio__file_kind(sb.st_mode));
    for (i = 0; i < o->n; i++)
        if (mio_same_file(o->f[i].path, path))
            return mio__fail(err, es, MIO_ERR_ARG, "%s: names the same file as the output '%s'", path, o->f[i].path);
    /* 10-byte preamble + dict, padded with spaces and ended by '\n' to a multiple of 64 */
    memcpy(hdr, "\x93NUMPY\x01\x00\x00\x00", 10);
    hl = 10 + (size_t)snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                               descr, sh);
    while ((hl + 1) % 64) hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    hdr[8] = (char)((hl - 10) & 0xff);
    hdr[9] = (char)((hl - 10) >> 8);

    f = &o->f[o->n];
    memset(f, 0, sizeof *f);
    f->path = mio__strndup(path, strlen(path));
    if (!f->path) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", path);
    rc = mio__tmp_create(path, &f->tmp, &fd, err, es);
    if (rc) {
        MIO_FREE(f->path);
        f->path = NULL;
        return rc;
    }
    o->n++; /* from here discard removes the temporary file */
    ok = mio__write_all(fd, hdr, hl);
    if (ok && mio__host_le()) {
        ok = nbytes == 0 || mio__write_all(fd, data, nbytes);
    } else if (ok) {
        const unsigned char *s = (const unsigned char *)data;
        unsigned char chunk[4096];
        size_t done = 0;
        while (ok && done < nbytes) {
            size_t k = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk, j;
            for (j = 0; j < k; j += 4) {
                chunk[j] = s[done + j + 3];
                chunk[j + 1] = s[done + j + 2];
                chunk[j + 2] = s[done + j + 1];
                chunk[j + 3] = s[done + j];
            }
            ok = mio__write_all(fd, chunk, k);
            done += k;
        }
    }
    if (ok && fsync(fd) != 0 && errno != EINVAL) ok = 0;
    {
        int e = errno;
        if (close(fd) != 0 && ok) ok = 0, e = errno;
        if (!ok) return mio__fail(err, es, MIO_ERR_IO, "%s: write failed, file left untouched: %s", path, strerror(e));
    }
    return MIO_OK;
}

MIODEF int mio_outputs_npy_f32(mio_outputs *o, const char *path, const float *data, size_t rows,
                               size_t cols, char *err, size_t err_size)
{
    size_t shape[2];
    shape[0] = rows, shape[1] = cols;
    mio__clear(err, err_size);
    return mio__npy_stage(o, path, data, "<f4", 2, shape, err, err_size);
}

MIODEF int mio_outputs_npy_i32(mio_outputs *o, const char *path, const int32_t *data, size_t rows,
                               size_t cols, char *err, size_t err_size)
{
    size_t shape[2];
    shape[0] = rows, shape[1] = cols;
    mio__clear(err, err_size);
    return mio__npy_stage(o, path, data, "<i4", 2, shape, err, err_size);
}

MIODEF int mio_outputs_npy_f32_nd(mio_outputs *o, const char *path, const float *data, int rank,
                                  const size_t *shape, char *err, size_t err_size)
{
    mio__clear(err, err_size);
    return mio__npy_stage(o, path, data, "<f4", rank, shape, err, err_size);
}

MIODEF int mio_outputs_npy_i32_nd(mio_outputs *o, const char *path, const int32_t *data, int rank,
                                  const size_t *shape, char *err, size_t err_size)
{
    mio__clear(err, err_size);
    return mio__npy_stage(o, path, data, "<i4", rank, shape, err, err_size);
}

/* Keeps an existing target under a hard link with a fresh name next to it (f->bak), so a
   failed commit can put it back. A file system without hard links gets no keeping: the commit
   then cannot put that target back should a later rename fail. */
static int mio__keep(mio_output *f, char *err, size_t es)
{
    struct stat sb;
    char *dir;
    int i;
    f->existed = lstat(f->path, &sb) == 0;
    if (!f->existed) return MIO_OK;
    if (!(dir = mio__dirname(f->path))) return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", f->path);
    for (i = 0; i < 100; i++) {
        f->bak = mio__tmpname(dir, f, i);
        if (!f->bak) {
            MIO_FREE(dir);
            return mio__fail(err, es, MIO_ERR_NOMEM, "%s: out of memory", f->path);
        }
        if (link(f->path, f->bak) == 0) break;
        MIO_FREE(f->bak);
        f->bak = NULL;
        if (errno != EEXIST) break;
    }
    MIO_FREE(dir);
    return MIO_OK;
}

MIODEF int mio_outputs_commit(mio_outputs *o, char *err, size_t err_size)
{
    int i, done = 0, rc = MIO_OK;
    mio__clear(err, err_size);
    if (!o) return mio__fail(err, err_size, MIO_ERR_ARG, "mio_outputs_commit: NULL argument");
    for (i = 0; i < o->n && !rc; i++) rc = mio__keep(&o->f[i], err, err_size);
    while (!rc && done < o->n) {
        mio_output *f = &o->f[done];
        if (rename(f->tmp, f->path) != 0) {
            rc = mio__fail(err, err_size, MIO_ERR_IO, "%s: write failed, every output left as it was: %s",
                           f->path, strerror(errno));
            break;
        }
        MIO_FREE(f->tmp);
        f->tmp = NULL;
        done++;
    }
    for (i = 0; i < done && rc; i++) { /* put back what was renamed: the kept file, or none */
        mio_output *f = &o->f[i];
        if (f->bak && rename(f->bak, f->path) != 0) {
            MIO_FREE(f->bak); /* could not put it back: leave the kept copy where it is */
            f->bak = NULL;
        } else if (f->bak) {
            MIO_FREE(f->bak);
            f->bak = NULL;
        } else if (!f->existed) {
            unlink(f->path);
        }
    }
    for (i = 0; i < o->n; i++)
        if (o->f[i].bak) {
            unlink(o->f[i].bak);
            MIO_FREE(o->f[i].bak);
            o->f[i].bak = NULL;
        }
    for (i = 0; i < o->n && !rc; i++) { /* the renames to disk, where the system allows it */
        char dir[PATH_MAX];
        int dfd;
        if (!mio__dirpart(o->f[i].path, dir, sizeof dir)) continue;
        if ((dfd = open(dir, O_RDONLY)) >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}

MIODEF void mio_outputs_discard(mio_outputs *o)
{
    int i;
    if (!o) return;
    for (i = 0; i < o->n; i++) {
        if (o->f[i].tmp) unlink(o->f[i].tmp);
        if (o->f[i].bak) unlink(o->f[i].bak);
        MIO_FREE(o->f[i].tmp);
        MIO_FREE(o->f[i].bak);
        MIO_FREE(o->f[i].path);
    }
    memset(o, 0, sizeof *o);
}

static int mio__npy_write(const char *path, const void *data, const char *descr, size_t rows,
                          size_t cols, char *err, size_t es)
{
    mio_outputs o;
    size_t shape[2];
    int rc;
    shape[0] = rows, shape[1] = cols;
    mio_outputs_init(&o);
    rc = mio__npy_stage(&o, path, data, descr, 2, shape, err, es);
    if (!rc) rc = mio_outputs_commit(&o, err, es);
    mio_outputs_discard(&o);
    return rc;
}

MIODEF int mio_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                             char *err, size_t err_size)
{
    mio__clear(err, err_size);
    return mio__npy_write(path, data, "<f4", rows, cols, err, err_size);
}

MIODEF int mio_npy_write_i32(const char *path, const int32_t *data, size_t rows, size_t cols,
                             char *err, size_t err_size)
{
    mio__clear(err, err_size);
    return mio__npy_write(path, data, "<i4", rows, cols, err, err_size);
}

#endif /* MOE_IO_IMPLEMENTATION_DONE */
#endif /* MOE_IO_IMPLEMENTATION */

/*
   Version history
     0.1.0  first version: JSON, safetensors (single file and sharded), npy read/write.
     0.2.0  mio_npy_read_f64: float32, float64 and int32 arrays as double.
     0.3.0  reliability: non-regular files refused before they are read; get_str refuses
            strings with a NUL; memory bounded by the input (streaming header and index
            parsers, an exact-size DOM, size limits per file); MIO_MALLOC/REALLOC/FREE;
            long messages cut in the middle, keeping the reason; "not a safetensors file".
            mio_outputs: outputs that appear together, put back on failure; O_EXCL random
            temporary names; mio_same_file.
            MIO_READ (mio_safetensors_open_as, mio_model_open_as, mio_safetensors_load):
            tensors read with pread, immune to a file that shrinks; npy files read, not mapped.
     0.4.0  mio_npy_read_nd and mio_outputs_npy_f32_nd / _i32_nd: arrays of rank 2 or more
            ([B][T][D] read as B*T rows) and results written in the same leading shape.

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
