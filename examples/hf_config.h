/* hf_config.h - Hugging Face config.json -> moe_config, and the tensor names of one MoE layer,
   for every model family the loader (moe_model.h) and the CLI (moe_cli.c) run. Not part of
   moe.h.

   Include after moe.h and moe_io.h, in one file (every function here is static).

      hf_plan plan;
      char err[512];
      if (hf_plan_layer(&plan, mio_json_root(&cfg_doc), "3", err, sizeof err)) die(err);
      // plan.cfg: the moe_config; plan.t[0 .. plan.n): the tensors, each with its role in
      // moe_weights, its name (per-expert ones hold "{e}"), its expected shape and layout;
      // plan.prefix[0 .. plan.n_prefix): candidate name prefixes of the layer (the first one
      // under which the checkpoint has the router wins); plan.defaults[0 .. plan.n_defaults):
      // the keys that were absent or null, with the default taken. On failure plan.why says
      // whether config.json, the layer argument, or the layer itself (dense) is at fault, and
      // plan.n_layers is the stack's layer count when the plan got as far as reading it.

   Every routing option is read from config.json, with the family's Hugging Face default
   (configuration_<family>.py) when the key is absent or null. Each family's comment names the
   transformers classes (modeling_<family>.py) whose rules it follows.

   Layer numbering: the decoder layer index as in `model.layers.N` (DBRX `transformer.blocks.N`).
   Switch Transformers has two stacks: `--layer encoder.N` or `decoder.N`; a plain integer N is
   the flat index encoder 0..num_layers-1, then decoder (N - num_layers). */
#ifndef HF_CONFIG_H
#define HF_CONFIG_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which moe_weights field a checkpoint tensor feeds. */
enum hf_role {
    HF_ROUTER, HF_ROUTER_BIAS, HF_SELECT_BIAS,
    HF_GATE, HF_UP, HF_GATE_UP, HF_DOWN, HF_GATE_UP_BIAS, HF_DOWN_BIAS,
    HF_SH_GATE, HF_SH_UP, HF_SH_DOWN, HF_SH_GATE_W, HF_SH_GATE_UP, HF_OUT_BIAS, HF_OUT_NORM,
    HF_LAT_IN, HF_LAT_OUT, HF_ROUTER_IN_SCALE, HF_EXPERT_IN_NORM, HF_EXPERT_SCALE,
    HF_N_ROLES
};

#if defined(__GNUC__) || defined(__clang__)
#define HF_MAYBE_UNUSED __attribute__((unused)) /* a program need not call it */
#else
#define HF_MAYBE_UNUSED
#endif

#define HF_MAX_TENSORS 16
#define HF_MAX_PREFIX 4
#define HF_MAX_DEFAULTS 32

typedef struct hf_tensor {
    int role;               /* enum hf_role */
    char name[160];         /* after the layer prefix; "{e}" stands for the expert index */
    char alt_name[160];     /* "", or a second name tried when the first is absent */
    int per_expert;         /* 1: one tensor per expert (name holds "{e}") */
    int rank;               /* expected shape of each tensor */
    int64_t shape[3];
    int alt_rank;           /* 0, or a second accepted shape (e.g. bias [E] or [1][E]) */
    int64_t alt_shape[3];
    moe_layout layout;
} hf_tensor;

typedef struct hf_plan {
    char family[40];            /* model_type */
    char layer_name[48];        /* "layer 3", "encoder layer 1" */
    moe_config cfg;
    moe_gate_up_split split;    /* for HF_GATE_UP */
    moe_gate_up_split shared_split; /* for HF_SH_GATE_UP */
    hf_tensor t[HF_MAX_TENSORS];
    int n;
    char prefix[HF_MAX_PREFIX][96];
    int n_prefix;
    char note[160];             /* a warning to print (e.g. an ignored key), or "" */
    int64_t n_layers;           /* layers of the layer's stack, from config.json; -1 if the
                                   plan failed before reading the count */
    int why;                    /* on failure, what was wrong: enum hf_why */
    /* the keys read from config.json that were absent (or null), with the default taken, in
       reading order: a loader reports them ("num_experts absent from config.json, default 64") */
    struct hf_default {
        char key[128];          /* "hidden_size", "text_config.hidden_size" */
        char value[40];         /* as JSON: 64, 1e-06, true, "silu" */
        int null;               /* 1: present as null; 0: absent */
    } defaults[HF_MAX_DEFAULTS];
    int n_defaults;             /* all of them; the first HF_MAX_DEFAULTS are in defaults[] */
} hf_plan;

/* hf_plan.why: a failed plan's kind, so that a loader can tell a dense layer from a typo */
enum hf_why {
    HF_BAD_CONFIG = 1,  /* config.json (missing key, wrong type, unknown model_type, ...) */
    HF_BAD_LAYER,       /* the layer argument: malformed, or out of range */
    HF_NOT_MOE          /* a dense layer, or one moe.h cannot route (token-id hash layers) */
};

/* ---- reading config.json ---- */

typedef struct hf_ctx {
    char *err;
    size_t n;
    int bad;                /* first error already in err */
    hf_plan *p;             /* where hf_took records the defaults taken */
    const mio_json *root;   /* for the dotted names of nested keys */
} hf_ctx;

static void hf_fail_why(hf_ctx *c, int why, const char *msg) {
    if (c->bad) return;
    c->bad = 1;
    c->p->why = why;
    snprintf(c->err, c->n, "config.json: %s", msg);
}

static void hf_fail(hf_ctx *c, const char *msg) { hf_fail_why(c, HF_BAD_CONFIG, msg); }

/* The dotted path of object o below root ("text_config", "thinker_config.text_config"; "" for
   root itself). The nodes of a document lie in one array in document order, so the child whose
   range holds o is the one to descend into. */
static void hf_path(const mio_json *root, const mio_json *o, char *out, size_t n) {
    size_t at = 0;
    out[0] = 0;
    if (!o || !root) return; /* an absent nested object (DBRX without ffn_config): the key alone */
    for (const mio_json *cur = root; cur != o && o > cur;) {
        const mio_json *ch = mio_json_child(cur), *in = NULL;
        for (; ch && !in; ch = mio_json_next(ch))
            if (o >= ch && (!mio_json_next(ch) || o < mio_json_next(ch))) in = ch;
        if (!in || !mio_json_key(in)) return;
        at += (size_t)snprintf(out + at, at < n ? n - at : 0, "%s%s", at ? "." : "", mio_json_key(in));
        cur = in;
    }
}

/* Records that `key` of object o (or its alias, also absent) was absent or null and `value`
   (a JSON literal) was taken instead; once per name. */
static void hf_took(hf_ctx *c, const mio_json *o, const char *key, const char *alias,
                    const char *value) {
    char path[64], name[128]; /* the paths are of hf_sub's keys: "thinker_config.text_config" */
    hf_plan *p = c->p;
    hf_path(c->root, o, path, sizeof path);
    snprintf(name, sizeof name, "%s%s%s", path, path[0] ? "." : "", key);
    if (alias) snprintf(name + strlen(name), sizeof name - strlen(name), " (or %s)", alias);
    for (int i = 0; i < p->n_defaults && i < HF_MAX_DEFAULTS; i++)
        if (!strcmp(p->defaults[i].key, name)) return;
    if (p->n_defaults < HF_MAX_DEFAULTS) {
        struct hf_default *d = &p->defaults[p->n_defaults];
        snprintf(d->key, sizeof d->key, "%s", name);
        snprintf(d->value, sizeof d->value, "%s", value);
        d->null = mio_json_get(o, key) != NULL;
    }
    p->n_defaults++;
}

static void hf_took_i(hf_ctx *c, const mio_json *o, const char *key, const char *alias,
                      int64_t def) {
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)def);
    hf_took(c, o, key, alias, v);
}

/* The shortest %g that reads back as def: 0.01 rather than 0.010000000000000000208. */
static void hf_took_f(hf_ctx *c, const mio_json *o, const char *key, double def) {
    char v[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(v, sizeof v, "%.*g", prec, def);
        if (strtod(v, NULL) == def) break;
    }
    hf_took(c, o, key, NULL, v);
}

/* Every integer key lands in an int (moe_config) or is compared with one, so a value outside
   int is an error here rather than a silent wrap in a cast. */
static int64_t hf_i_or(hf_ctx *c, const mio_json *o, const char *key, const char *alias,
                       int64_t def) {
    char e[MIO_ERR_SIZE];
    int64_t v = def;
    int r = mio_json_get_i64(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    if (r == MIO_ERR_NOT_FOUND) hf_took_i(c, o, key, alias, def);
    if (!r && (v < INT_MIN || v > INT_MAX)) {
        snprintf(e, sizeof e, "'%s' = %lld is out of range", key, (long long)v);
        hf_fail(c, e);
    }
    return r ? def : v;
}

static int64_t hf_i(hf_ctx *c, const mio_json *o, const char *key, int64_t def) {
    return hf_i_or(c, o, key, NULL, def);
}

/* A count (layers, sparse layers): an int that must not be negative. */
static int64_t hf_count(hf_ctx *c, const mio_json *o, const char *key, int64_t def) {
    int64_t v = hf_i(c, o, key, def);
    if (v < 0) {
        char e[MIO_ERR_SIZE];
        snprintf(e, sizeof e, "'%s' = %lld is negative", key, (long long)v);
        hf_fail(c, e);
        return def;
    }
    return v;
}

static double hf_f(hf_ctx *c, const mio_json *o, const char *key, double def) {
    char e[MIO_ERR_SIZE];
    double v = def;
    int r = mio_json_get_f64(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    if (r == MIO_ERR_NOT_FOUND) hf_took_f(c, o, key, def);
    return r ? def : v;
}

static int hf_b(hf_ctx *c, const mio_json *o, const char *key, int def) {
    char e[MIO_ERR_SIZE];
    int v = def;
    int r = mio_json_get_bool(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    if (r == MIO_ERR_NOT_FOUND) hf_took(c, o, key, NULL, def ? "true" : "false");
    return r ? def : v;
}

static const char *hf_s(hf_ctx *c, const mio_json *o, const char *key, const char *def) {
    char e[MIO_ERR_SIZE];
    const char *v = def;
    int r = mio_json_get_str(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    if (r == MIO_ERR_NOT_FOUND && def) {
        char q[40];
        snprintf(q, sizeof q, "\"%s\"", def);
        hf_took(c, o, key, NULL, q);
    }
    return r ? def : v;
}

/* 1 if the integer list o[key] (absent or null = empty) holds v. */
static int hf_in_list(hf_ctx *c, const mio_json *o, const char *key, int64_t v) {
    const mio_json *a = mio_json_get(o, key);
    if (!a || mio_json_is_null(a)) return 0;
    if (mio_json_type(a) != MIO_JSON_ARRAY) {
        char m[128];
        snprintf(m, sizeof m, "'%s' is %s, expected a list of layer indices", key,
                 mio_json_type_name(mio_json_type(a)));
        hf_fail(c, m);
        return 0;
    }
    for (const mio_json *x = mio_json_child(a); x; x = mio_json_next(x)) {
        int64_t i;
        if (mio_json_as_i64(x, &i) == MIO_OK && i == v) return 1;
    }
    return 0;
}

/* HF ACT2FN name -> moe_act; -1 if moe.h has no such activation. */
static int hf_act(const char *s) {
    if (!strcmp(s, "silu") || !strcmp(s, "swish")) return MOE_ACT_SILU;
    if (!strcmp(s, "gelu")) return MOE_ACT_GELU_ERF;
    if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast"))
        return MOE_ACT_GELU_TANH;
    if (!strcmp(s, "relu")) return MOE_ACT_RELU;
    if (!strcmp(s, "relu2")) return MOE_ACT_RELU2;
    return -1;
}

static void hf_set_act(hf_ctx *c, hf_plan *p, const char *name) {
    int a = hf_act(name);
    if (a < 0) {
        char m[320];
        snprintf(m, sizeof m, "activation '%.200s' is not supported (silu, gelu, gelu_new, "
                 "gelu_pytorch_tanh, relu, relu2)", name);
        hf_fail(c, m);
        return;
    }
    p->cfg.act = (moe_act)a;
}

/* ---- building the tensor list ---- */

static void hf_add(hf_plan *p, int role, const char *name, int per_expert, moe_layout layout,
                   int rank, int64_t a, int64_t b, int64_t c3) {
    hf_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    t->role = role;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->per_expert = per_expert;
    t->layout = layout;
    t->rank = rank;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c3;
}

/* The last tensor added may also be found under `name` (another checkpoint spelling). */
static void hf_alt_name(hf_plan *p, const char *name) {
    snprintf(p->t[p->n - 1].alt_name, sizeof p->t[0].alt_name, "%s", name);
}

static void hf_alt(hf_plan *p, int rank, int64_t a, int64_t b) {
    hf_tensor *t = &p->t[p->n - 1];
    t->alt_rank = rank;
    t->alt_shape[0] = a;
    t->alt_shape[1] = b;
}

static void hf_prefix(hf_plan *p, const char *fmt_layer, int64_t layer) {
    /* "{L}" in fmt_layer stands for the layer index */
    char *dst = p->prefix[p->n_prefix++];
    const char *at = strstr(fmt_layer, "{L}");
    if (!at) { snprintf(dst, 96, "%s", fmt_layer); return; }
    snprintf(dst, 96, "%.*s%lld%s", (int)(at - fmt_layer), fmt_layer, (long long)layer, at + 3);
}

/* Router + per-expert SwiGLU (nn.ModuleList) under `base` ("mlp.", "block_sparse_moe.", ...). */
static void hf_modulelist(hf_plan *p, const char *base, const char *router, const char *g,
                          const char *u, const char *dn) {
    int64_t d = p->cfg.d_model, ff = p->cfg.d_ff, E = p->cfg.n_experts;
    char n[160];
    snprintf(n, sizeof n, "%s%s", base, router);
    hf_add(p, HF_ROUTER, n, 0, MOE_OUT_IN, 2, E, d, 0);
    snprintf(n, sizeof n, "%sexperts.{e}.%s.weight", base, g);
    hf_add(p, HF_GATE, n, 1, MOE_OUT_IN, 2, ff, d, 0);
    snprintf(n, sizeof n, "%sexperts.{e}.%s.weight", base, u);
    hf_add(p, HF_UP, n, 1, MOE_OUT_IN, 2, ff, d, 0);
    snprintf(n, sizeof n, "%sexperts.{e}.%s.weight", base, dn);
    hf_add(p, HF_DOWN, n, 1, MOE_OUT_IN, 2, d, ff, 0);
}

/* A shared SwiGLU of width S = n_shared * d_shared under `base` ("mlp.shared_experts."). */
static void hf_shared(hf_plan *p, const char *base) {
    int64_t d = p->cfg.d_model, S = (int64_t)p->cfg.n_shared * p->cfg.d_shared;
    char n[160];
    snprintf(n, sizeof n, "%sgate_proj.weight", base);
    hf_add(p, HF_SH_GATE, n, 0, MOE_OUT_IN, 2, S, d, 0);
    snprintf(n, sizeof n, "%sup_proj.weight", base);
    hf_add(p, HF_SH_UP, n, 0, MOE_OUT_IN, 2, S, d, 0);
    snprintf(n, sizeof n, "%sdown_proj.weight", base);
    hf_add(p, HF_SH_DOWN, n, 0, MOE_OUT_IN, 2, d, S, 0);
}

static int hf_layer_range(hf_ctx *c, int64_t layer, int64_t n_layers,
                          const char *key) {
    if (!c->bad) c->p->n_layers = n_layers;
    if (layer < 0 || layer >= n_layers) {
        char m[200];
        if (n_layers == 0)
            snprintf(m, sizeof m, "layer %lld is out of range: the model has no layers (%s = 0)",
                     (long long)layer, key);
        else
            snprintf(m, sizeof m, "layer %lld is out of range: the model has %lld layers (%s), "
                     "0..%lld", (long long)layer, (long long)n_layers, key,
                     (long long)n_layers - 1);
        hf_fail_why(c, HF_BAD_LAYER, m);
        return 0;
    }
    return 1;
}

static void hf_dense(hf_ctx *c, int64_t layer, const char *why) {
    char m[480];
    snprintf(m, sizeof m, "layer %lld is a dense layer (%s): it has no experts", (long long)layer,
             why);
    hf_fail_why(c, HF_NOT_MOE, m);
}

/* Parses "N" or "STACK.N" (encoder, decoder: Switch; thinker, talker: Qwen3-Omni). *stack: 0
   none given, else the index into hf_stacks. */
static const char *const hf_stacks[] = {"", "encoder", "decoder", "thinker", "talker"};
enum { HF_STACK_NONE, HF_STACK_ENCODER, HF_STACK_DECODER, HF_STACK_THINKER, HF_STACK_TALKER };

static int hf_parse_layer(const char *s, int *stack, int64_t *layer) {
    char *end;
    *stack = 0;
    for (int i = 1; i < (int)(sizeof hf_stacks / sizeof *hf_stacks); i++) {
        size_t n = strlen(hf_stacks[i]);
        if (!strncmp(s, hf_stacks[i], n) && s[n] == '.') {
            *stack = i;
            s += n + 1;
            break;
        }
    }
    if (!*s || *s == '-' || *s == '+') return 0;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno) return 0; /* ERANGE: beyond int64, and so beyond every model */
    *layer = v;
    return 1;
}

/* An integer config key, or its attribute_map alias when the key is absent: transformers
   configs read either name (Qwen3MoeConfig: num_experts <-> num_local_experts), and
   save_pretrained writes the attribute's own name. */
static int64_t hf_i2(hf_ctx *c, const mio_json *o, const char *key, const char *alias, int64_t def) {
    const mio_json *v = mio_json_get(o, key);
    if ((!v || mio_json_is_null(v)) && alias && mio_json_get(o, alias)) return hf_i(c, o, alias, def);
    return hf_i_or(c, o, key, alias, def);
}

/* The nested config object o[key] if it is one, else o (VLM text_config, DBRX ffn_config). */
static const mio_json *hf_sub(const mio_json *o, const char *key) {
    const mio_json *t = mio_json_get(o, key);
    return t && mio_json_type(t) == MIO_JSON_OBJECT ? t : o;
}

/* Element i of the list o[key]: 1 and *out (a string, e.g. mlp_layer_types) if the list is
   there; 0 if the key is absent or null. */
static int hf_str_at(hf_ctx *c, const mio_json *o, const char *key, int64_t i, const char **out) {
    const mio_json *a = mio_json_get(o, key), *x;
    char m[200];
    if (!a || mio_json_is_null(a)) return 0;
    if (mio_json_type(a) != MIO_JSON_ARRAY || i < 0 || (size_t)i >= mio_json_len(a) ||
        !(x = mio_json_at(a, (size_t)i)) || !(*out = mio_json_as_str(x, NULL))) {
        snprintf(m, sizeof m, "'%s' must be a list of strings with an entry for layer %lld", key,
                 (long long)i);
        hf_fail(c, m);
        return 0;
    }
    return 1;
}

/* ---- the families ---- */

/* What every family function gets: the context, the plan, the config object (already the
   nested text config where the family has one), the model_type, the layer and its stack. */
typedef struct hf_fam {
    hf_ctx *c;
    hf_plan *p;
    const mio_json *root, *o;
    const char *mt;
    int stack;
    int64_t layer;
    char msg[400];
} hf_fam;

#define HF_IS(f, name) (!strcmp((f)->mt, name))

/* Checks the layer index against n_layers (the config key named `key`); 0 if out of range. */
static int hf_layers(hf_fam *f, const char *key, int64_t def) {
    return hf_layer_range(f->c, f->layer, hf_count(f->c, f->o, key, def), key);
}

/* The MoE-layer rule of configs with mlp_layer_types ("sparse" / "dense", also "moe"): 1 if
   layer is MoE; 0 (with the error set) if dense. Without the list, `fallback` decides. */
static int hf_mlp_layer_types(hf_fam *f, int fallback, const char *fallback_why) {
    const char *t = NULL;
    if (hf_str_at(f->c, f->o, "mlp_layer_types", f->layer, &t)) {
        if (!strcmp(t, "sparse") || !strcmp(t, "moe")) return 1;
        snprintf(f->msg, sizeof f->msg, "mlp_layer_types[%lld] = \"%s\"", (long long)f->layer, t);
        hf_dense(f->c, f->layer, f->msg);
        return 0;
    }
    if (f->c->bad) return 0;
    if (!fallback) hf_dense(f->c, f->layer, fallback_why);
    return fallback;
}

/* HF MixtralConfig / PhimoeConfig / MiniMaxConfig (= Mixtral's block): every layer, Hub names
   under block_sparse_moe. */
static int hf_mixtral(hf_fam *f) {
    hf_ctx *c = f->c;
    moe_config *m = &f->p->cfg;
    int phi = HF_IS(f, "phimoe");
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", phi ? 6400 : 14336);
    m->n_experts = (int)hf_i2(c, f->o, "num_local_experts", "num_experts", phi ? 16 : 8);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", 2);
    hf_set_act(c, f->p, hf_s(c, f->o, "hidden_act", "silu"));
    if (phi) {
        m->score = MOE_SCORE_SPARSEMIXER;
        m->jitter_eps = (float)hf_f(c, f->o, "router_jitter_noise", 0.01);
        if (!c->bad && m->jitter_eps == 0.0f) m->jitter_eps = -1.0f; /* moe.h: < 0 is exactly 0 */
    } else {
        m->norm = MOE_NORM_SUM;
    }
    if (!hf_layers(f, "num_hidden_layers", 32)) return -1;
    hf_prefix(f->p, "model.layers.{L}.", f->layer);
    hf_modulelist(f->p, "block_sparse_moe.", "gate.weight", "w1", "w3", "w2");
    return 0;
}

/* The Qwen MoE blocks. Qwen2MoeSparseMoeBlock (qwen2_moe, qwen3_next, qwen3_5_moe, the
   qwen3_omni_moe talker): softmax, top-k, /sum iff norm_topk_prob, plus a shared expert times
   sigmoid(shared_expert_gate . x). Qwen3MoeSparseMoeBlock (qwen3_moe, mellum, qwen3_vl_moe, the
   qwen3_omni_moe thinker): the same without the shared expert. Qwen3-VL-MoE and Qwen3.5-MoE
   route with Qwen3VLMoeTextTopKRouter, which always renormalises (no norm_topk_prob).
   Sparse layer (Qwen2/3-MoE decoder): not in mlp_only_layers, experts > 0 and
   (layer + 1) % decoder_sparse_step == 0; mellum: mlp_layer_types; qwen3_5_moe: every layer. */
static int hf_qwen(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    int q2 = HF_IS(f, "qwen2_moe"), next = HF_IS(f, "qwen3_next"), mellum = HF_IS(f, "mellum");
    int q35 = HF_IS(f, "qwen3_5_moe") || HF_IS(f, "qwen3_5_moe_text");
    int vl = HF_IS(f, "qwen3_vl_moe") || HF_IS(f, "qwen3_vl_moe_text");
    int omni = HF_IS(f, "qwen3_omni_moe"), talker = omni && f->stack == HF_STACK_TALKER;
    int shared = q2 || next || q35 || talker, always_norm = vl || q35;
    /* defaults: configuration_<m>.py (omni: Qwen3OmniMoeTextConfig / ...TalkerTextConfig) */
    int64_t d = 2048, ff = 768, E = 128, k = 8, S = 0, nl = 24;
    int norm = 0;
    if (q2) ff = 1408, E = 60, k = 4, S = 5632;
    if (next) ff = 512, E = 512, k = 10, S = 512, nl = 48, norm = 1;
    if (q35) ff = 512, E = 256, k = 8, S = 512, nl = 40;
    if (vl) ff = 1408, E = 60, k = 4;
    if (mellum) d = 2304, ff = 896, E = 64, nl = 28, norm = 1;
    if (omni && !talker) nl = 48, norm = 1;
    if (talker) d = 1024, ff = 384, E = 128, k = 6, S = 768, nl = 20;
    if (omni) {
        const mio_json *sub = hf_sub(f->root, talker ? "talker_config" : "thinker_config");
        o = f->o = hf_sub(sub, "text_config");
        snprintf(p->layer_name, sizeof p->layer_name, "%s layer %lld", talker ? "talker" : "thinker",
                 (long long)f->layer);
    }
    m->d_model = (int)hf_i(c, o, "hidden_size", d);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", ff);
    m->n_experts = (int)hf_i2(c, o, "num_experts", "num_local_experts", E);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", k);
    m->norm = always_norm || hf_b(c, o, "norm_topk_prob", norm) ? MOE_NORM_SUM : MOE_NORM_NONE;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    int64_t step = hf_i(c, o, "decoder_sparse_step", 1);
    if (!hf_layers(f, "num_hidden_layers", nl)) return -1;
    if (mellum) {
        if (!hf_mlp_layer_types(f, 1, "")) return -1;
    } else if (!q35) {
        if (hf_in_list(c, o, "mlp_only_layers", f->layer)) {
            hf_dense(c, f->layer, "listed in mlp_only_layers");
            return -1;
        }
        if (m->n_experts <= 0 || step <= 0 || (f->layer + 1) % step) {
            snprintf(f->msg, sizeof f->msg, "decoder_sparse_step = %lld: sparse layers are those "
                     "with (layer + 1) %% step == 0", (long long)step);
            hf_dense(c, f->layer, f->msg);
            return -1;
        }
    }
    if (omni) {
        hf_prefix(p, talker ? "talker.model.layers.{L}." : "thinker.model.layers.{L}.", f->layer);
    } else if (vl || q35) {
        hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
        hf_prefix(p, "model.layers.{L}.", f->layer);
    } else {
        hf_prefix(p, "model.layers.{L}.", f->layer);
    }
    if (vl) { /* the Hub stores these experts fused, [in][out] (transposed on load) */
        int64_t dd = m->d_model, fff = m->d_ff, EE = m->n_experts;
        p->split = MOE_SPLIT_HALVES;
        hf_add(p, HF_ROUTER, "mlp.gate.weight", 0, MOE_OUT_IN, 2, EE, dd, 0);
        hf_add(p, HF_GATE_UP, "mlp.experts.gate_up_proj", 0, MOE_IN_OUT, 3, EE, dd, 2 * fff);
        hf_add(p, HF_DOWN, "mlp.experts.down_proj", 0, MOE_IN_OUT, 3, EE, fff, dd);
    } else {
        hf_modulelist(p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    }
    if (shared) {
        int64_t sw = hf_i(c, o, "shared_expert_intermediate_size", S);
        if (sw > 0) {
            m->n_shared = 1;
            m->d_shared = (int)sw;
            m->shared_gate = MOE_SHARED_GATE_SIGMOID;
            hf_shared(p, "mlp.shared_expert.");
            hf_add(p, HF_SH_GATE_W, "mlp.shared_expert_gate.weight", 0, MOE_OUT_IN, 2, 1,
                   m->d_model, 0);
            hf_alt(p, 1, m->d_model, 0);
        }
    }
    return 0;
}

/* HF OlmoeConfig / FlexOlmoConfig (OlmoeSparseMoeBlock): every layer. */
static int hf_olmoe(hf_fam *f) {
    hf_ctx *c = f->c;
    moe_config *m = &f->p->cfg;
    int flex = HF_IS(f, "flex_olmo");
    m->d_model = (int)hf_i(c, f->o, "hidden_size", flex ? 4096 : 2048);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", flex ? 11008 : 2048);
    m->n_experts = (int)hf_i2(c, f->o, "num_experts", "num_local_experts", flex ? 7 : 64);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", flex ? 5 : 8);
    m->norm = hf_b(c, f->o, "norm_topk_prob", 0) ? MOE_NORM_SUM : MOE_NORM_NONE;
    hf_set_act(c, f->p, hf_s(c, f->o, "hidden_act", "silu"));
    if (!hf_layers(f, "num_hidden_layers", flex ? 32 : 16)) return -1;
    hf_prefix(f->p, "model.layers.{L}.", f->layer);
    hf_modulelist(f->p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    return 0;
}

/* HF JambaConfig: MoE layer if num_experts > 1 and layer % period == offset. */
static int hf_jamba(hf_fam *f) {
    hf_ctx *c = f->c;
    moe_config *m = &f->p->cfg;
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", 14336);
    m->n_experts = (int)hf_i2(c, f->o, "num_experts", "num_local_experts", 16);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", 2);
    hf_set_act(c, f->p, hf_s(c, f->o, "hidden_act", "silu"));
    int64_t period = hf_i(c, f->o, "expert_layer_period", 2);
    int64_t off = hf_i(c, f->o, "expert_layer_offset", 1);
    if (!hf_layers(f, "num_hidden_layers", 32)) return -1;
    if (m->n_experts <= 1 || period <= 0 || f->layer % period != off) {
        snprintf(f->msg, sizeof f->msg, "expert_layer_period = %lld, expert_layer_offset = %lld",
                 (long long)period, (long long)off);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    hf_prefix(f->p, "model.layers.{L}.", f->layer);
    hf_modulelist(f->p, "feed_forward.", "router.weight", "gate_proj", "up_proj", "down_proj");
    return 0;
}

/* The DeepSeek MoE blocks and their descendants, one row of configuration_<m>.py defaults each.
   kind HF_DS_V2: DeepseekV2Moe (softmax, greedy or group_limited_greedy with group score = max,
   weights x routed_scaling_factor, never renormalised); HF_DS_V3: DeepseekV3MoE (sigmoid,
   selection key p + e_score_correction_bias, groups by the sum of the top 2, /(sum + 1e-20) iff
   norm_topk_prob, x routed_scaling_factor); HF_DS_MISTRAL4: Mistral4MoE, the same on softmax
   p with no bias, dropped groups' keys 0.0, experts fused on the Hub; HF_DS_AXK2: AXK2MoE, V3
   with dropped groups' keys 0.0 and groups off when n_group is null; HF_DS_AXK1: AXK1MoE, V3
   with an RMSNorm (post_mlp_layernorm, rms_norm_eps) on routed + shared. Shared experts: ungated,
   n_shared x moe_intermediate_size. -1: no HF default (None), the key is required. */
enum { HF_FROM_FK, HF_MLP_TYPES_OR_FK, HF_EVERY, HF_MLP_TYPES_OR_FIRST_DENSE, HF_MLP_TYPES_OR_FK_FREQ };
enum { HF_DS_V3, HF_DS_V2, HF_DS_MISTRAL4, HF_DS_AXK2, HF_DS_AXK1 };
static const struct hf_ds {
    const char *mt;
    int kind, rule;
    int64_t d, ff, E, k, ns, ng, kg, fk, nl;
    double rsf;
    int norm;
    const char *E_key, *ns_key;
} hf_ds_table[] = {
    /* mt          kind rule                        d     ff    E    k   ns ng kg fk nl  rsf  norm */
    {"deepseek_v2", 1, HF_FROM_FK, 4096, 1407, 64, -1, 2, 0, 0, 0, 32, 1.0, 0, NULL, NULL},
    {"deepseek_v3", 0, HF_FROM_FK, 7168, 2048, 256, 8, 1, 8, 4, 3, 61, 2.5, 1, NULL, NULL},
    {"kimi_k2", 0, HF_FROM_FK, 7168, 2048, 256, 8, 1, 8, 4, 3, 61, 2.5, 1, NULL, NULL},
    {"kimi_k25", 0, HF_FROM_FK, 7168, 2048, 256, 8, 1, 8, 4, 3, 61, 2.5, 1, NULL, NULL},
    {"glm4_moe", 0, HF_FROM_FK, 4096, 1408, 128, 8, 1, 1, 1, 1, 46, 1.0, 1, NULL, NULL},
    {"glm4v_moe", 0, HF_FROM_FK, 4096, 1408, 128, 8, 1, 1, 1, 1, 46, 1.0, 1, NULL, NULL},
    {"glm4v_moe_text", 0, HF_FROM_FK, 4096, 1408, 128, 8, 1, 1, 1, 1, 46, 1.0, 1, NULL, NULL},
    {"dots1", 0, HF_FROM_FK, 4608, 1408, -1, -1, -1, 1, 1, 0, 62, 1.0, 0, NULL, NULL},
    {"deepseek_v32", 0, HF_MLP_TYPES_OR_FK, 7168, 2048, 256, 8, 1, 8, 4, 3, 61, 2.5, 1, NULL, NULL},
    {"glm_moe_dsa", 0, HF_MLP_TYPES_OR_FK, 6144, 2048, 256, 8, 1, 1, 1, 3, 78, 2.5, 1, NULL, NULL},
    {"glm4_moe_lite", 0, HF_MLP_TYPES_OR_FIRST_DENSE, 2048, 1536, 64, 4, 1, 1, 1, 0, 47, 1.8, 1, NULL, NULL},
    {"mimo_v2_flash", 0, HF_MLP_TYPES_OR_FIRST_DENSE, 4096, 2048, 256, 8, 0, 1, 1, 0, 48, 1.0, 1, NULL, NULL},
    {"solar_open", 0, HF_EVERY, 4096, 1280, 128, 8, 1, 1, 1, 0, 48, 1.0, 1, NULL, NULL},
    {"exaone_moe", 0, HF_MLP_TYPES_OR_FK, 4096, 1024, 64, 8, 1, 1, 1, 1, 32, 2.5, 1, "num_experts", "num_shared_experts"},
    {"deepseek_ocr2", 1, HF_MLP_TYPES_OR_FK, 4096, 1407, 64, -1, 2, 0, 0, 0, 32, 1.0, 0, NULL, NULL},
    {"deepseek_ocr2_text", 1, HF_MLP_TYPES_OR_FK, 4096, 1407, 64, -1, 2, 0, 0, 0, 32, 1.0, 0, NULL, NULL},
    {"mistral4", HF_DS_MISTRAL4, HF_FROM_FK, 4096, 2048, 128, 4, 1, 1, 1, 0, 36, 1.0, 1, NULL, NULL},
    {"axk2", HF_DS_AXK2, HF_MLP_TYPES_OR_FK_FREQ, 2048, 512, 128, 8, 1, 0, 0, 1, 48, 2.5, 1, NULL, NULL},
    {"axk1", HF_DS_AXK1, HF_FROM_FK, 7168, 2048, 192, 8, 1, 8, 4, 1, 61, 2.5, 1, NULL, NULL},
};

/* Kimi-K2 checkpoints say model_type "kimi_k2" and run DeepseekV3's code; kimi_k25 nests it as
   text_config. The HF modeling code ignores moe_layer_freq (DeepSeek's remote code made layer L
   dense when L % freq != 0; released configs have 1). */
static int hf_deepseek(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    const struct hf_ds *t = &hf_ds_table[0];
    for (size_t i = 0; i < sizeof hf_ds_table / sizeof *hf_ds_table; i++)
        if (HF_IS(f, hf_ds_table[i].mt)) t = &hf_ds_table[i];
    int v2 = t->kind == HF_DS_V2, mimo = HF_IS(f, "mimo_v2_flash");
    m->d_model = (int)hf_i(c, o, "hidden_size", t->d);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", t->ff);
    m->n_experts = t->E_key ? (int)hf_i(c, o, t->E_key, t->E)
                            : (int)hf_i2(c, o, "n_routed_experts", "num_local_experts", t->E);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", t->k);
    int64_t ns = mimo ? 0 : hf_i(c, o, t->ns_key ? t->ns_key : "n_shared_experts", t->ns);
    if (!c->bad && (m->n_experts < 0 || m->top_k < 0 || ns < 0)) {
        snprintf(f->msg, sizeof f->msg, "%s needs '%s' (HF default None)", f->mt,
                 m->n_experts < 0 ? (t->E_key ? t->E_key : "n_routed_experts")
                 : m->top_k < 0 ? "num_experts_per_tok" : "n_shared_experts");
        hf_fail(c, f->msg);
    }
    double rsf = hf_f(c, o, "routed_scaling_factor", t->rsf);
    int64_t ng = hf_i(c, o, "n_group", t->ng);
    int64_t kg = hf_i(c, o, "topk_group", t->kg);
    int norm = hf_b(c, o, "norm_topk_prob", t->norm);
    int64_t fk = hf_i(c, o, "first_k_dense_replace", t->fk);
    const mio_json *freq_j = mio_json_get(o, "moe_layer_freq");
    int64_t freq = freq_j && mio_json_type(freq_j) != MIO_JSON_ARRAY ? hf_i(c, o, "moe_layer_freq", 1) : 1;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    m->scale = (float)rsf;
    if (v2) {
        const char *tm = hf_s(c, o, "topk_method", "greedy");
        const char *sf = hf_s(c, o, "scoring_func", "softmax");
        if (sf && strcmp(sf, "softmax")) {
            snprintf(f->msg, sizeof f->msg, "%s scoring_func '%.200s' is not supported (softmax)", f->mt, sf);
            hf_fail(c, f->msg);
        }
        m->score = MOE_SCORE_SOFTMAX;
        if (tm && !strcmp(tm, "group_limited_greedy")) {
            if (ng <= 0 || kg <= 0)
                hf_fail(c, "group_limited_greedy needs 'n_group' and 'topk_group' (HF default None)");
            m->n_group = (int)ng;
            m->topk_group = (int)kg;
            m->group_score = MOE_GROUP_MAX;
        } else if (tm && strcmp(tm, "greedy")) {
            snprintf(f->msg, sizeof f->msg, "%s topk_method '%.200s' is not supported (greedy, "
                     "group_limited_greedy)", f->mt, tm);
            hf_fail(c, f->msg);
        }
        /* HF DeepseekV2Moe never renormalises, whatever norm_topk_prob says */
        if (norm)
            snprintf(p->note, sizeof p->note, "norm_topk_prob = true is ignored, as in HF "
                     "deepseek_v2 (weights are not renormalised)");
    } else {
        m->score = t->kind == HF_DS_MISTRAL4 ? MOE_SCORE_SOFTMAX : MOE_SCORE_SIGMOID;
        m->select_bias = t->kind != HF_DS_MISTRAL4;
        m->n_group = (int)ng;
        m->topk_group = (int)kg;
        m->group_score = MOE_GROUP_TOP2_SUM;
        if (t->kind == HF_DS_MISTRAL4 || t->kind == HF_DS_AXK2) m->group_fill = MOE_GROUP_FILL_ZERO;
        if (norm) {
            m->norm = MOE_NORM_SUM;
            m->norm_eps = 1e-20f;
        }
    }
    if (!hf_layers(f, "num_hidden_layers", t->nl)) return -1;
    if (t->rule == HF_FROM_FK || t->rule == HF_MLP_TYPES_OR_FK) {
        snprintf(f->msg, sizeof f->msg, "first_k_dense_replace = %lld", (long long)fk);
        int moe = t->rule == HF_FROM_FK ? f->layer >= fk || (hf_dense(c, f->layer, f->msg), 0)
                                        : hf_mlp_layer_types(f, f->layer >= fk, f->msg);
        if (!moe) return -1;
    } else if (t->rule == HF_MLP_TYPES_OR_FIRST_DENSE) {
        /* mimo_v2_flash's older configs give moe_layer_freq as a 0/1 list per layer */
        int64_t on = 1;
        if (freq_j && mio_json_type(freq_j) == MIO_JSON_ARRAY && !mio_json_get(o, "mlp_layer_types")) {
            const mio_json *x = mio_json_at(freq_j, (size_t)f->layer);
            if (!x || mio_json_as_i64(x, &on)) {
                hf_fail(c, "'moe_layer_freq' must be a list of 0/1 with an entry per layer");
                return -1;
            }
            if (!on) {
                snprintf(f->msg, sizeof f->msg, "moe_layer_freq[%lld] = 0", (long long)f->layer);
                hf_dense(c, f->layer, f->msg);
                return -1;
            }
        } else if (!hf_mlp_layer_types(f, f->layer >= 1, "the first layer is dense "
                                       "(mlp_layer_types default)")) {
            return -1;
        }
    } else if (t->rule == HF_MLP_TYPES_OR_FK_FREQ) { /* AXK2Config's legacy rule */
        snprintf(f->msg, sizeof f->msg, "first_k_dense_replace = %lld, moe_layer_freq = %lld: MoE "
                 "layers are those >= first_k_dense_replace with layer %% freq == 0",
                 (long long)fk, (long long)freq);
        if (!hf_mlp_layer_types(f, f->layer >= fk && freq > 0 && f->layer % freq == 0, f->msg))
            return -1;
        freq = 1;
    }
    if (freq > 1 && !c->bad && !p->note[0])
        snprintf(p->note, sizeof p->note, "moe_layer_freq = %lld is ignored, as in HF %s (every "
                 "layer from first_k_dense_replace on is MoE)", (long long)freq, f->mt);
    if (f->o != f->root) { /* VLMs: the language model's layers */
        hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
        hf_prefix(p, "language_model.model.layers.{L}.", f->layer);
    }
    hf_prefix(p, "model.layers.{L}.", f->layer);
    if (t->kind == HF_DS_MISTRAL4) { /* the Hub stores the experts fused, as transformers */
        int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
        p->split = MOE_SPLIT_HALVES;
        hf_add(p, HF_ROUTER, "mlp.gate.weight", 0, MOE_OUT_IN, 2, E, d, 0);
        hf_add(p, HF_GATE_UP, "mlp.experts.gate_up_proj", 0, MOE_OUT_IN, 3, E, 2 * ff, d);
        hf_add(p, HF_DOWN, "mlp.experts.down_proj", 0, MOE_OUT_IN, 3, E, d, ff);
    } else {
        hf_modulelist(p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    }
    if (!v2 && t->kind != HF_DS_MISTRAL4) {
        hf_add(p, HF_SELECT_BIAS, "mlp.gate.e_score_correction_bias", 0, MOE_OUT_IN, 1,
               m->n_experts, 0, 0);
        hf_alt_name(p, "mlp.e_score_correction_bias"); /* exaone_moe's Hub spelling */
    }
    if (ns > 0) {
        m->n_shared = (int)ns;
        m->d_shared = m->d_ff;
        hf_shared(p, "mlp.shared_experts.");
    }
    if (t->kind == HF_DS_AXK1) { /* the decoder layer's norm; conversion_mapping moves it into mlp. */
        m->out_norm = MOE_OUT_NORM_RMS;
        m->out_norm_eps = (float)hf_f(c, o, "rms_norm_eps", 1e-6);
        hf_add(p, HF_OUT_NORM, "post_mlp_layernorm.weight", 0, MOE_OUT_IN, 1, m->d_model, 0, 0);
        hf_alt_name(p, "mlp.post_mlp_layernorm.weight");
    }
    return 0;
}

/* HF HunYuanMoEV1Config: every layer; router mlp.gate.wg (fp32), softmax, top-moe_topk, /sum
   (no eps); experts and the ungated shared_mlp are SwiGLUs of width intermediate_size.
   num_experts and moe_topk may be per-layer lists. */
static int hf_hunyuan(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    int64_t v[2] = {16, 2};
    const char *keys[2] = {"num_experts", "moe_topk"};
    if (!hf_layers(f, "num_hidden_layers", 32)) return -1;
    for (int i = 0; i < 2; i++) {
        const mio_json *j = mio_json_get(o, keys[i]);
        if (j && mio_json_type(j) == MIO_JSON_ARRAY) {
            const mio_json *x = mio_json_at(j, (size_t)f->layer);
            if (!x || mio_json_as_i64(x, &v[i]) || v[i] < INT_MIN || v[i] > INT_MAX) {
                snprintf(f->msg, sizeof f->msg, "'%s' is a list without an integer for layer %lld",
                         keys[i], (long long)f->layer);
                hf_fail(c, f->msg);
                return -1;
            }
        } else {
            v[i] = hf_i(c, o, keys[i], v[i]);
        }
    }
    m->d_model = (int)hf_i(c, o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, o, "intermediate_size", 11008);
    m->n_experts = (int)v[0];
    m->top_k = (int)v[1];
    m->norm = MOE_NORM_SUM;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    m->n_shared = 1;
    m->d_shared = m->d_ff;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_modulelist(p, "mlp.", "gate.wg.weight", "gate_proj", "up_proj", "down_proj");
    hf_shared(p, "mlp.shared_mlp.");
    return 0;
}

/* HF GptOssConfig; the dequantized layout (not the MXFP4 _blocks/_scales one). Also
   OpenAIPrivacyFilterConfig(GptOssConfig), an encoder with the same block in fp32. */
static int hf_gpt_oss(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    int opf = HF_IS(f, "openai_privacy_filter");
    m->d_model = (int)hf_i(c, f->o, "hidden_size", opf ? 640 : 2880);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", opf ? 640 : 2880);
    m->n_experts = (int)hf_i2(c, f->o, "num_local_experts", "num_experts", 128);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", 4);
    m->score = MOE_SCORE_SOFTMAX_TOPK;
    m->router_bias = 1;
    m->expert_bias = 1;
    m->act = MOE_ACT_SWIGLU_OAI;
    /* swiglu_alpha: GptOssConfig key in newer configuration_gpt_oss.py (older
       modeling_gpt_oss.py hard-codes 1.702) */
    m->act_alpha = (float)hf_f(c, f->o, "swiglu_alpha", 1.702);
    m->act_limit = (float)hf_f(c, f->o, "swiglu_limit", 7.0);
    if (!hf_layers(f, "num_hidden_layers", opf ? 8 : 36)) return -1;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    /* OpenAIPrivacyFilterExperts._apply_gate: the halves; its router's scores / k and the
       block's output * k cancel */
    p->split = opf ? MOE_SPLIT_HALVES : MOE_SPLIT_INTERLEAVED;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "mlp.router.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_ROUTER_BIAS, "mlp.router.bias", 0, MOE_OUT_IN, 1, E, 0, 0);
    hf_add(p, HF_GATE_UP, "mlp.experts.gate_up_proj", 0, MOE_IN_OUT, 3, E, d, 2 * ff);
    hf_add(p, HF_GATE_UP_BIAS, "mlp.experts.gate_up_proj_bias", 0, MOE_OUT_IN, 2, E, 2 * ff, 0);
    hf_add(p, HF_DOWN, "mlp.experts.down_proj", 0, MOE_IN_OUT, 3, E, ff, d);
    hf_add(p, HF_DOWN_BIAS, "mlp.experts.down_proj_bias", 0, MOE_OUT_IN, 2, E, d, 0);
    return 0;
}

/* HF Llama4TextConfig, nested under text_config in Llama4Config. MoE layers: moe_layers if
   given, else every interleave_moe_layer_step-th (step - 1, 2 step - 1, ...). */
static int hf_llama4(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 5120);
    m->d_ff = (int)hf_i(c, o, "intermediate_size", 8192);
    m->n_experts = (int)hf_i2(c, o, "num_local_experts", "num_experts", 16);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", 1);
    m->score = MOE_SCORE_SIGMOID_TOPK;
    m->weight_on_input = 1;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    int64_t step = hf_i(c, o, "interleave_moe_layer_step", 1);
    if (!hf_layers(f, "num_hidden_layers", 48)) return -1;
    const mio_json *ml = mio_json_get(o, "moe_layers");
    if (ml && !mio_json_is_null(ml)) {
        if (!hf_in_list(c, o, "moe_layers", f->layer)) {
            hf_dense(c, f->layer, "not listed in moe_layers");
            return -1;
        }
    } else if (step <= 0 || (f->layer + 1) % step) {
        snprintf(f->msg, sizeof f->msg, "interleave_moe_layer_step = %lld: MoE layers are "
                 "step-1, 2*step-1, ...", (long long)step);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    m->n_shared = 1;
    m->d_shared = m->d_ff;
    p->split = MOE_SPLIT_HALVES;
    hf_prefix(p, "language_model.model.layers.{L}.", f->layer);
    hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "feed_forward.router.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_GATE_UP, "feed_forward.experts.gate_up_proj", 0, MOE_IN_OUT, 3, E, d, 2 * ff);
    hf_add(p, HF_DOWN, "feed_forward.experts.down_proj", 0, MOE_IN_OUT, 3, E, ff, d);
    hf_shared(p, "feed_forward.shared_expert.");
    return 0;
}

/* HF DbrxConfig + DbrxFFNConfig (nested as ffn_config). */
static int hf_dbrx(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *fc = mio_json_get(f->root, "ffn_config");
    const char *act = "silu";
    m->d_model = (int)hf_i(c, f->o, "d_model", 2048);
    m->d_ff = (int)hf_i(c, fc, "ffn_hidden_size", 3584);
    m->n_experts = (int)hf_i(c, fc, "moe_num_experts", 4);
    m->top_k = (int)hf_i(c, fc, "moe_top_k", 1);
    const mio_json *af = mio_json_get(fc, "ffn_act_fn");
    if (af && mio_json_type(af) == MIO_JSON_OBJECT) act = hf_s(c, af, "name", "silu");
    hf_set_act(c, p, act);
    const mio_json *nw = mio_json_get(fc, "moe_normalize_expert_weights");
    if (!nw || !mio_json_is_null(nw)) {
        m->norm = MOE_NORM_LP;
        m->norm_p = (float)hf_f(c, fc, "moe_normalize_expert_weights", 1.0);
        if (!c->bad && !(m->norm_p >= 1.0f))
            hf_fail(c, "moe_normalize_expert_weights must be at least 1 (a p-norm)");
    }
    if (!hf_layers(f, "n_layers", 24)) return -1;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    hf_prefix(p, "transformer.blocks.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "ffn.router.layer.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_GATE, "ffn.experts.mlp.w1", 0, MOE_OUT_IN, 2, E * ff, d, 0);
    hf_add(p, HF_UP, "ffn.experts.mlp.v1", 0, MOE_OUT_IN, 2, E * ff, d, 0);
    hf_add(p, HF_DOWN, "ffn.experts.mlp.w2", 0, MOE_IN_OUT, 2, E * ff, d, 0);
    return 0;
}

/* HF GraniteMoeConfig and its shared-MLP descendants: GraniteMoeShared (a shared_mlp beside
   the MoE block iff shared_intermediate_size > 0, default 0), GraniteMoeHybrid (mamba/attention
   layers; the shared_mlp always, default width 1024; the MoE block iff num_local_experts > 0),
   GraniteMoeSWA (experts fused as experts.gate_up_proj / down_proj, router.weight; shared MLP
   as GraniteMoeShared). The shared MLP is added ungated: input_linear [2S][d] split in halves
   (first activated), output_linear [d][S]. */
static int hf_granite(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    int hybrid = HF_IS(f, "granitemoehybrid"), swa = HF_IS(f, "granitemoe_swa");
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", 11008);
    m->n_experts = (int)hf_i2(c, f->o, "num_local_experts", "num_experts", 8);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", 2);
    m->score = MOE_SCORE_SOFTMAX_TOPK;
    hf_set_act(c, p, hf_s(c, f->o, "hidden_act", "silu"));
    int64_t S = HF_IS(f, "granitemoe") ? 0 : hf_i(c, f->o, "shared_intermediate_size", hybrid ? 1024 : 0);
    if (!hf_layers(f, "num_hidden_layers", 32)) return -1;
    if (hybrid && m->n_experts == 0) {
        hf_dense(c, f->layer, "num_local_experts = 0: granitemoehybrid has only the shared MLP");
        return -1;
    }
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    p->split = MOE_SPLIT_HALVES;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    if (swa) {
        hf_add(p, HF_ROUTER, "block_sparse_moe.router.weight", 0, MOE_OUT_IN, 2, E, d, 0);
        hf_add(p, HF_GATE_UP, "block_sparse_moe.experts.gate_up_proj", 0, MOE_OUT_IN, 3, E, 2 * ff, d);
        hf_add(p, HF_DOWN, "block_sparse_moe.experts.down_proj", 0, MOE_OUT_IN, 3, E, d, ff);
    } else {
        hf_add(p, HF_ROUTER, "block_sparse_moe.router.layer.weight", 0, MOE_OUT_IN, 2, E, d, 0);
        hf_add(p, HF_GATE_UP, "block_sparse_moe.input_linear.weight", 0, MOE_OUT_IN, 3, E, 2 * ff, d);
        hf_add(p, HF_DOWN, "block_sparse_moe.output_linear.weight", 0, MOE_OUT_IN, 3, E, d, ff);
    }
    if (S > 0) {
        m->n_shared = 1;
        m->d_shared = (int)S;
        p->shared_split = MOE_SPLIT_HALVES;
        hf_add(p, HF_SH_GATE_UP, "shared_mlp.input_linear.weight", 0, MOE_OUT_IN, 2, 2 * S, d, 0);
        hf_add(p, HF_SH_DOWN, "shared_mlp.output_linear.weight", 0, MOE_OUT_IN, 2, d, S, 0);
    }
    return 0;
}

/* Element i of the number list o[key]: its value, or def when the key, the list or the entry is
   absent or null (Step-3.7 swiglu_limits). */
static double hf_f_at(hf_ctx *c, const mio_json *o, const char *key, int64_t i, double def) {
    const mio_json *a = mio_json_get(o, key), *x;
    double v;
    char m[200];
    if (!a || mio_json_is_null(a)) return def;
    if (mio_json_type(a) != MIO_JSON_ARRAY) {
        snprintf(m, sizeof m, "'%s' must be a list of numbers, one per layer", key);
        hf_fail(c, m);
        return def;
    }
    if (i < 0 || (size_t)i >= mio_json_len(a) || !(x = mio_json_at(a, (size_t)i)) ||
        mio_json_is_null(x))
        return def;
    if (mio_json_as_f64(x, &v)) {
        snprintf(m, sizeof m, "'%s'[%lld] is not a number", key, (long long)i);
        hf_fail(c, m);
        return def;
    }
    return v;
}

/* 1 if layer is MoE by "layer >= key" (AFMoE, LFM2-MoE num_dense_layers); else the error. */
static int hf_from_key(hf_fam *f, const char *key, int64_t def) {
    int64_t n = hf_i(f->c, f->o, key, def);
    if (f->c->bad) return 0;
    if (f->layer >= n) return 1;
    snprintf(f->msg, sizeof f->msg, "%s = %lld", key, (long long)n);
    hf_dense(f->c, f->layer, f->msg);
    return 0;
}

/* The sigmoid routers with a selection-only bias and no groups: p = sigmoid(h) (fp32), key =
   p + bias, top-k, weights the gathered p, /(sum + eps), x scale - on the weights, or (Laguna's
   block and its copies) on the routed sum after mixing.
     minimax_m2     MiniMaxM2SparseMoeBlock: eps 0, no scale, Mixtral experts, every layer
     minimax_m3_vl  MiniMaxM3VLSparseMoeBlock(LagunaSparseMoeBlock): eps 0, routed sum x
                    routed_scaling_factor, experts and the shared MLP (n_shared_experts x
                    shared_intermediate_size, fused gate_up on the halves) are GPT-OSS's clamped
                    SwiGLU (swiglu_alpha, swiglu_limit)
     hy_v3          HYV3MoE: eps 1e-20, weights x router_scaling_factor, shared_mlp
     afmoe          AfmoeSparseMoeBlock: eps 1e-20, weights x route_scale, shared_experts; MoE
                    from num_dense_layers on
     laguna         LagunaSparseMoeBlock: optional tanh soft-cap of the logits, eps 0, routed sum
                    x moe_routed_scaling_factor, shared_expert
     step3p5/3p7    Step3p7SparseMoeBlock (Laguna's): eps 0, routed sum x
                    moe_router_scaling_factor; experts min(silu(g), L) clamp(u, +-L) with L =
                    swiglu_limits[layer], the shared expert with swiglu_limits_shared[layer]
                    (0 or null: no clamp)
     lfm2_moe       Lfm2MoeSparseMoeBlock: bias iff use_expert_bias, /(sum + 1e-6) iff
                    norm_topk_prob, weights x routed_scaling_factor; always SiLU; MoE from
                    num_dense_layers on */
static int hf_sigmoid(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    int m2 = HF_IS(f, "minimax_m2"), m3 = HF_IS(f, "minimax_m3_vl") || HF_IS(f, "minimax_m3_vl_text");
    int hy = HF_IS(f, "hy_v3"), af = HF_IS(f, "afmoe"), lag = HF_IS(f, "laguna");
    int step = HF_IS(f, "step3p5") || HF_IS(f, "step3p7"), lfm = HF_IS(f, "lfm2_moe");
    int64_t d, E, k, nl, ns = 0, S = 0;
    double rsf = 1.0;
    const char *bias = NULL;
    m->score = MOE_SCORE_SIGMOID;
    m->select_bias = 1;
    m->norm = MOE_NORM_SUM;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    if (m2 || m3) {
        d = m2 ? 3072 : 6144, E = m2 ? 256 : 128, k = m2 ? 8 : 4, nl = m2 ? 62 : 60;
        m->d_ff = (int)hf_i(c, o, "intermediate_size", m2 ? 1536 : 3072);
        E = hf_i2(c, o, "num_local_experts", "num_experts", E);
    } else if (hy || af) {
        d = hy ? 4096 : 2048, E = hy ? 192 : 64, k = hy ? 8 : 6, nl = hy ? 80 : 32;
        m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", hy ? 1536 : 1408);
        E = hf_i2(c, o, "num_experts", "num_local_experts", E);
        ns = hf_i(c, o, "num_shared_experts", hy ? 1 : 2), S = ns * m->d_ff;
        rsf = hf_f(c, o, hy ? "router_scaling_factor" : "route_scale", hy ? 2.826 : 1.0);
        m->norm_eps = 1e-20f;
        bias = "mlp.expert_bias";
    } else if (lag) {
        d = 2048, E = 256, k = 8, nl = 40;
        m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 512);
        E = hf_i2(c, o, "num_experts", "num_local_experts", E);
        ns = 1, S = hf_i(c, o, "shared_expert_intermediate_size", 512);
        rsf = hf_f(c, o, "moe_routed_scaling_factor", 1.0);
        m->logit_softcap = (float)hf_f(c, o, "moe_router_logit_softcapping", 0.0);
        m->scale_on_sum = 1;
    } else if (step) {
        d = 4096, nl = 45;
        m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 1280);
        const mio_json *mne = mio_json_get(o, "moe_num_experts");
        E = hf_i2(c, o, "n_routed_experts", mne && !mio_json_is_null(mne) ? "moe_num_experts"
                                                                         : "num_local_experts", 288);
        k = hf_i2(c, o, "num_experts_per_tok", "moe_top_k", 8);
        ns = 1, S = hf_i2(c, o, "share_expert_dim", "share_expert_dims", 1280);
        rsf = hf_f(c, o, "moe_router_scaling_factor", 1.0);
        m->scale_on_sum = 1;
    } else { /* lfm2_moe */
        d = 2048, E = 32, k = 4, nl = 32;
        m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 1792);
        E = hf_i2(c, o, "num_experts", "num_local_experts", E);
        rsf = hf_f(c, o, "routed_scaling_factor", 1.0);
        m->select_bias = hf_b(c, o, "use_expert_bias", 1);
        m->norm = hf_b(c, o, "norm_topk_prob", 1) ? MOE_NORM_SUM : MOE_NORM_NONE;
        m->norm_eps = 1e-6f;
        m->act = MOE_ACT_SILU; /* Lfm2MoeMLP: F.silu, whatever hidden_act says */
    }
    if (m3) {
        ns = hf_i(c, o, "n_shared_experts", 1), S = hf_i(c, o, "shared_intermediate_size", 3072);
        rsf = hf_f(c, o, "routed_scaling_factor", 2.0);
        m->scale_on_sum = 1;
        m->act = MOE_ACT_SWIGLU_OAI; /* MiniMaxM3VLExperts._apply_gate, whatever hidden_act says */
        m->act_alpha = (float)hf_f(c, o, "swiglu_alpha", 1.702);
        m->act_limit = (float)hf_f(c, o, "swiglu_limit", 7.0);
    }
    m->d_model = (int)hf_i(c, o, "hidden_size", d);
    m->n_experts = (int)E;
    if (!step) k = hf_i(c, o, "num_experts_per_tok", k);
    m->top_k = (int)k;
    m->scale = (float)rsf;
    if (!hf_layers(f, "num_hidden_layers", nl)) return -1;
    if (step) {
        double L = hf_f_at(c, o, "swiglu_limits", f->layer, 0.0);
        double Ls = hf_f_at(c, o, "swiglu_limits_shared", f->layer, 0.0);
        if (m->act != MOE_ACT_SILU && !c->bad && (L > 0 || Ls > 0))
            hf_fail(c, "swiglu_limits are supported with hidden_act silu only");
        m->act = MOE_ACT_SILU_CLAMP;
        m->act_limit = L > 0 ? (float)L : INFINITY;
        m->shared_act_limit = Ls > 0 ? (float)Ls : INFINITY;
    }
    if (c->bad) return -1;
    /* which layers */
    if (hy || lag) {
        if (!hf_mlp_layer_types(f, f->layer >= 1, "the first layer is dense (mlp_layer_types "
                                "default)"))
            return -1;
    } else if (af || lfm) {
        if (!hf_from_key(f, "num_dense_layers", af ? 1 : 2)) return -1;
    } else if (m3) {
        const mio_json *fq = mio_json_get(o, "moe_layer_freq");
        int64_t on = 1;
        if (!mio_json_get(o, "mlp_layer_types") && fq && mio_json_type(fq) == MIO_JSON_ARRAY) {
            const mio_json *x = mio_json_at(fq, (size_t)f->layer);
            if (!x || mio_json_as_i64(x, &on)) {
                hf_fail(c, "'moe_layer_freq' must be a list of 0/1 with an entry per layer");
                return -1;
            }
            if (!on) {
                snprintf(f->msg, sizeof f->msg, "moe_layer_freq[%lld] = 0", (long long)f->layer);
                hf_dense(c, f->layer, f->msg);
                return -1;
            }
        } else if (!hf_mlp_layer_types(f, 1, "")) {
            return -1;
        }
    } else if (step) {
        const mio_json *en = mio_json_get(o, "moe_layers_enum");
        int moe = f->layer >= 3;
        const char *s = en ? mio_json_as_str(en, NULL) : NULL;
        if (s) { /* "3,4,5,..." */
            moe = 0;
            for (const char *q = s; *q;) {
                char *end;
                long long v = strtoll(q, &end, 10);
                if (end == q) {
                    hf_fail(c, "'moe_layers_enum' must list layer indices, comma-separated");
                    return -1;
                }
                moe |= v == f->layer;
                q = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    hf_fail(c, "'moe_layers_enum' must list layer indices, comma-separated");
                    return -1;
                }
            }
        } else if (en && !mio_json_is_null(en)) {
            moe = hf_in_list(c, o, "moe_layers_enum", f->layer);
        }
        if (!hf_mlp_layer_types(f, moe, en && !mio_json_is_null(en)
                                ? "not listed in moe_layers_enum"
                                : "layers 0..2 are dense (mlp_layer_types default)"))
            return -1;
    }
    /* names */
    int64_t dd = m->d_model, ff = m->d_ff;
    if (m3 || step) {
        hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
        hf_prefix(p, "language_model.model.layers.{L}.", f->layer);
    }
    hf_prefix(p, "model.layers.{L}.", f->layer);
    if (m2 || m3) {
        hf_modulelist(p, "block_sparse_moe.", "gate.weight", "w1", "w3", "w2");
        hf_add(p, HF_SELECT_BIAS, "block_sparse_moe.e_score_correction_bias", 0, MOE_OUT_IN, 1, E,
               0, 0);
        hf_alt_name(p, "block_sparse_moe.gate.e_score_correction_bias");
    } else if (step) { /* the Hub checkpoints: per-projection expert stacks under moe. */
        hf_add(p, HF_ROUTER, "moe.gate.weight", 0, MOE_OUT_IN, 2, E, dd, 0);
        hf_add(p, HF_SELECT_BIAS, "moe.router_bias", 0, MOE_OUT_IN, 1, E, 0, 0);
        hf_add(p, HF_GATE, "moe.gate_proj.weight", 0, MOE_OUT_IN, 3, E, ff, dd);
        hf_add(p, HF_UP, "moe.up_proj.weight", 0, MOE_OUT_IN, 3, E, ff, dd);
        hf_add(p, HF_DOWN, "moe.down_proj.weight", 0, MOE_OUT_IN, 3, E, dd, ff);
    } else if (lfm) {
        hf_modulelist(p, "feed_forward.", "gate.weight", "w1", "w3", "w2");
        if (m->select_bias)
            hf_add(p, HF_SELECT_BIAS, "feed_forward.expert_bias", 0, MOE_OUT_IN, 1, E, 0, 0);
    } else {
        hf_modulelist(p, "mlp.", hy || af ? "router.gate.weight" : "gate.weight", "gate_proj",
                      "up_proj", "down_proj");
        hf_add(p, HF_SELECT_BIAS, bias ? bias : "mlp.experts.e_score_correction_bias", 0,
               MOE_OUT_IN, 1, E, 0, 0);
        if (lag) hf_alt_name(p, "mlp.gate.e_score_correction_bias");
    }
    if (ns > 0 && S > 0) {
        m->n_shared = (int)ns;
        m->d_shared = (int)(S / ns);
        if (m3) m->d_shared = (int)S; /* shared_intermediate_size is one expert's */
        hf_shared(p, m3 ? "block_sparse_moe.shared_experts." : step ? "share_expert."
                     : hy ? "mlp.shared_mlp." : lag ? "mlp.shared_expert." : "mlp.shared_experts.");
    }
    return 0;
}

/* HF Cohere2MoeConfig (Cohere2MoeSparseMoeBlock): top-k of the logits, then softmax over the k
   (expert_selection_fn "softmax") or their sigmoid, /sum iff norm_topk_prob ("sigmoid"); experts
   of width intermediate_size; num_shared_experts x intermediate_size shared, added or averaged
   (shared_expert_combination_strategy). MoE iff mlp_layer_types[L] is not "dense" (default:
   from first_k_dense_replace on). */
static int hf_cohere2(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 8192);
    m->d_ff = (int)hf_i(c, o, "intermediate_size", 22528);
    m->n_experts = (int)hf_i(c, o, "num_experts", 8);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", 2);
    int64_t ns = hf_i(c, o, "num_shared_experts", 0), fk = hf_i(c, o, "first_k_dense_replace", 0);
    const char *sel = hf_s(c, o, "expert_selection_fn", "softmax");
    const char *comb = hf_s(c, o, "shared_expert_combination_strategy", "average");
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    if (c->bad) return -1;
    if (!strcmp(sel, "softmax")) {
        m->score = MOE_SCORE_SOFTMAX_TOPK;
    } else if (!strcmp(sel, "sigmoid")) {
        m->score = MOE_SCORE_SIGMOID_TOPK;
        m->norm = hf_b(c, o, "norm_topk_prob", 1) ? MOE_NORM_SUM : MOE_NORM_NONE;
    } else {
        hf_fail(c, "expert_selection_fn must be \"softmax\" or \"sigmoid\"");
        return -1;
    }
    if (strcmp(comb, "sum") && strcmp(comb, "average")) {
        hf_fail(c, "shared_expert_combination_strategy must be \"sum\" or \"average\"");
        return -1;
    }
    if (!hf_layers(f, "num_hidden_layers", 40)) return -1;
    const char *t = NULL;
    if (hf_str_at(c, o, "mlp_layer_types", f->layer, &t) ? !strcmp(t, "dense") : f->layer < fk) {
        if (t) snprintf(f->msg, sizeof f->msg, "mlp_layer_types[%lld] = \"dense\"", (long long)f->layer);
        else snprintf(f->msg, sizeof f->msg, "first_k_dense_replace = %lld", (long long)fk);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    if (c->bad) return -1;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_modulelist(p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    if (ns > 0) {
        m->n_shared = (int)ns;
        m->d_shared = m->d_ff;
        m->shared_combine = strcmp(comb, "average") ? MOE_SHARED_SUM : MOE_SHARED_AVERAGE;
        hf_shared(p, "mlp.shared_experts.");
    }
    return 0;
}

/* HF AriaTextConfig (AriaTextMoELayer, every layer): router nn.Linear mlp.router, top-k of the
   logits, softmax over the k; experts fused by grouped GEMM: fc1 [E][d][2ff] (halves, the first
   activated), fc2 [E][ff][d]; shared experts moe_num_shared_experts x intermediate_size. */
static int hf_aria(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, o, "intermediate_size", 4096);
    m->n_experts = (int)hf_i(c, o, "moe_num_experts", 8);
    m->top_k = (int)hf_i(c, o, "moe_topk", 2);
    int64_t ns = hf_i(c, o, "moe_num_shared_experts", 2);
    m->score = MOE_SCORE_SOFTMAX_TOPK;
    hf_set_act(c, p, "silu"); /* AriaExperts: nn.functional.silu */
    if (!hf_layers(f, "num_hidden_layers", 32)) return -1;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    p->split = MOE_SPLIT_HALVES;
    if (f->o != f->root) {
        hf_prefix(p, "language_model.model.layers.{L}.", f->layer);
        hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
    }
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "mlp.router.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_GATE_UP, "mlp.experts.fc1.weight", 0, MOE_IN_OUT, 3, E, d, 2 * ff);
    hf_add(p, HF_DOWN, "mlp.experts.fc2.weight", 0, MOE_IN_OUT, 3, E, ff, d);
    if (ns > 0) {
        m->n_shared = (int)ns;
        m->d_shared = m->d_ff;
        hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu")); /* the shared LlamaMLP's */
        if (m->act != MOE_ACT_SILU) {
            hf_fail(c, "aria: a hidden_act other than silu (the shared experts') is not supported");
            return -1;
        }
        hf_shared(p, "mlp.shared_experts.");
    }
    return 0;
}

/* HF DeepseekV4Config (DeepseekV4SparseMoeBlock, every layer): p = ACT2FN[scoring_func](h)
   (sqrtsoftplus, also sigmoid, softmax), key p + e_score_correction_bias, top-k, /(sum + 1e-20)
   always, x routed_scaling_factor; experts silu(min(g, L)) clamp(u, +-L), L = swiglu_limit; the
   shared expert is an unclamped SwiGLU of width moe_intermediate_size. Hub names are DeepSeek's
   (layers.L.ffn.gate, .experts.{e}.w1/w3/w2, .shared_experts). The "hash_moe" layers
   (mlp_layer_types, default the first 3) choose experts by token id: not supported. */
static int hf_deepseek_v4(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 2048);
    m->n_experts = (int)hf_i2(c, o, "n_routed_experts", "num_local_experts", 256);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", 6);
    m->scale = (float)hf_f(c, o, "routed_scaling_factor", 1.5);
    m->act_limit = (float)hf_f(c, o, "swiglu_limit", 10.0);
    const char *sf = hf_s(c, o, "scoring_func", "sqrtsoftplus");
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    if (c->bad) return -1;
    if (m->act != MOE_ACT_SILU) {
        hf_fail(c, "deepseek_v4: hidden_act must be silu (the clamped SwiGLU)");
        return -1;
    }
    m->act = MOE_ACT_SWIGLU_CLAMP;
    m->shared_act_limit = INFINITY;
    m->score = !strcmp(sf, "sqrtsoftplus") ? MOE_SCORE_SQRT_SOFTPLUS
               : !strcmp(sf, "sigmoid") ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
    if (strcmp(sf, "sqrtsoftplus") && strcmp(sf, "sigmoid") && strcmp(sf, "softmax")) {
        hf_fail(c, "deepseek_v4 scoring_func must be sqrtsoftplus, sigmoid or softmax");
        return -1;
    }
    m->select_bias = 1;
    m->norm = MOE_NORM_SUM;
    m->norm_eps = 1e-20f;
    int64_t n_hash = hf_count(c, o, "num_hash_layers", 3); /* the legacy key of the default */
    if (!hf_layers(f, "num_hidden_layers", 43)) return -1;
    const char *t = NULL;
    int hash = hf_str_at(c, o, "mlp_layer_types", f->layer, &t) ? !strcmp(t, "hash_moe")
                                                                : f->layer < n_hash;
    if (c->bad) return -1;
    if (hash) {
        snprintf(f->msg, sizeof f->msg, "layer %lld is a hash-routed layer (%s): its experts come "
                 "from the token ids (tid2eid), which this loader does not take", (long long)f->layer,
                 t ? "mlp_layer_types = \"hash_moe\"" : "num_hash_layers");
        hf_fail_why(c, HF_NOT_MOE, f->msg);
        return -1;
    }
    m->n_shared = 1;
    m->d_shared = m->d_ff;
    hf_prefix(p, "layers.{L}.", f->layer);
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_modulelist(p, "ffn.", "gate.weight", "w1", "w3", "w2");
    hf_add(p, HF_SELECT_BIAS, "ffn.gate.bias", 0, MOE_OUT_IN, 1, m->n_experts, 0, 0);
    int64_t d = m->d_model, S = m->d_ff;
    hf_add(p, HF_SH_GATE, "ffn.shared_experts.w1.weight", 0, MOE_OUT_IN, 2, S, d, 0);
    hf_add(p, HF_SH_UP, "ffn.shared_experts.w3.weight", 0, MOE_OUT_IN, 2, S, d, 0);
    hf_add(p, HF_SH_DOWN, "ffn.shared_experts.w2.weight", 0, MOE_OUT_IN, 2, d, S, 0);
    return 0;
}

/* HF LongcatFlashConfig (LongcatFlashMoE, one per decoder layer, beside its two dense MLPs):
   router.classifier in fp32 over n_routed_experts + zero_expert_num choices (its bias, if any,
   is not used by LongcatFlashTopkRouter.forward), softmax, top-moe_topk of p +
   e_score_correction_bias, gathered p x routed_scaling_factor (no renormalisation); choices from
   n_routed_experts on are the zero-computation experts, weight * x. Layers: num_layers. */
static int hf_longcat(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 6144);
    m->d_ff = (int)hf_i(c, o, "expert_ffn_hidden_size", 2048);
    m->n_experts = (int)hf_i2(c, o, "n_routed_experts", "num_local_experts", 512);
    m->n_zero_experts = (int)hf_i(c, o, "zero_expert_num", 256);
    m->top_k = (int)hf_i2(c, o, "moe_topk", "num_experts_per_tok", 12);
    m->scale = (float)hf_f(c, o, "routed_scaling_factor", 6.0);
    m->select_bias = 1;
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    if (!c->bad && m->n_zero_experts < 0) hf_fail(c, "zero_expert_num must not be negative");
    if (!hf_layers(f, "num_layers", 28)) return -1;
    int64_t d = m->d_model, R = (int64_t)m->n_experts + m->n_zero_experts;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "mlp.router.classifier.weight", 0, MOE_OUT_IN, 2, R, d, 0);
    hf_add(p, HF_SELECT_BIAS, "mlp.router.e_score_correction_bias", 0, MOE_OUT_IN, 1, R, 0, 0);
    char n[160];
    const char *proj[3] = {"gate_proj", "up_proj", "down_proj"};
    int role[3] = {HF_GATE, HF_UP, HF_DOWN};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "mlp.experts.{e}.%s.weight", proj[i]);
        hf_add(p, role[i], n, 1, MOE_OUT_IN, 2, i < 2 ? m->d_ff : d, i < 2 ? d : m->d_ff, 0);
    }
    return 0;
}

/* HF JetMoeConfig (JetMoeMoE, every layer; the attention's mixture JetMoeMoA is not a block
   moe.h runs): router.layer, top-k of the logits (fp32), softmax over the k; input_linear
   [E][2ff][d] in halves, act(first) * second, output_linear [E][d][ff]; the block's bias [d]
   added after mixing. */
static int hf_jetmoe(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 2048);
    m->d_ff = (int)hf_i(c, o, "intermediate_size", 5632);
    m->n_experts = (int)hf_i(c, o, "num_local_experts", 8);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", 2);
    m->score = MOE_SCORE_SOFTMAX_TOPK;
    m->output_bias = 1;
    hf_set_act(c, p, hf_s(c, o, "activation_function", "silu"));
    if (!hf_layers(f, "num_hidden_layers", 12)) return -1;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    p->split = MOE_SPLIT_HALVES;
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "mlp.router.layer.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_GATE_UP, "mlp.input_linear.weight", 0, MOE_OUT_IN, 3, E, 2 * ff, d);
    hf_add(p, HF_DOWN, "mlp.output_linear.weight", 0, MOE_OUT_IN, 3, E, d, ff);
    hf_add(p, HF_OUT_BIAS, "mlp.bias", 0, MOE_OUT_IN, 1, d, 0, 0);
    return 0;
}

/* HF NemotronHConfig (NemotronHMoE, the "moe" entries of layers_block_type - alias
   layer_types; or of the legacy hybrid_override_pattern, 'E'): the DeepSeek-V3 router
   (DeepseekV3MoE.route_tokens_to_experts), ungated experts down(act(up x)) with mlp_hidden_act
   (relu2), optionally in a moe_latent_size latent space (fc1_latent_proj before the experts,
   fc2_latent_proj after), plus the ungated shared expert of width
   moe_shared_expert_intermediate_size on x. Hub names under backbone.layers.L.mixer. */
static int hf_nemotron_h(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    static const char *const dflt[4] = {"linear_attention", "moe", "full_attention", "mlp"};
    m->d_model = (int)hf_i(c, o, "hidden_size", 4096);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 7688);
    m->n_experts = (int)hf_i2(c, o, "n_routed_experts", "num_local_experts", 8);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", 2);
    int64_t S = hf_i(c, o, "moe_shared_expert_intermediate_size", 7688);
    int64_t ng = hf_i(c, o, "n_group", 1), kg = hf_i(c, o, "topk_group", 1);
    m->d_latent = (int)hf_i(c, o, "moe_latent_size", 0);
    m->scale = (float)hf_f(c, o, "routed_scaling_factor", 1.0);
    m->score = MOE_SCORE_SIGMOID;
    m->select_bias = 1;
    m->n_group = (int)ng, m->topk_group = (int)kg, m->group_score = MOE_GROUP_TOP2_SUM;
    if (hf_b(c, o, "norm_topk_prob", 1)) m->norm = MOE_NORM_SUM, m->norm_eps = 1e-20f;
    m->ffn = MOE_FFN_PLAIN;
    hf_set_act(c, p, hf_s(c, o, "mlp_hidden_act", "relu2"));
    if (hf_b(c, o, "mlp_bias", 0)) hf_fail(c, "mlp_bias = true is not supported");
    if (c->bad) return -1;
    /* the layer list: layers_block_type (or layer_types), hybrid_override_pattern, the default */
    const char *key = mio_json_get(o, "layers_block_type") ? "layers_block_type" : "layer_types";
    const mio_json *lt = mio_json_get(o, key);
    const char *pat = hf_s(c, o, "hybrid_override_pattern", NULL), *t = NULL;
    int64_t nl;
    char kind[2] = {0, 0};
    if (lt && !mio_json_is_null(lt)) {
        nl = mio_json_type(lt) == MIO_JSON_ARRAY ? (int64_t)mio_json_len(lt) : 0;
        if (!hf_layer_range(c, f->layer, nl, key) || !hf_str_at(c, o, key, f->layer, &t)) return -1;
    } else if (pat) {
        nl = (int64_t)strlen(pat);
        if (!hf_layer_range(c, f->layer, nl, "hybrid_override_pattern")) return -1;
        kind[0] = pat[f->layer];
        t = kind[0] == 'E' ? "moe" : kind;
        key = "hybrid_override_pattern";
    } else {
        if (!hf_layer_range(c, f->layer, 4, "layers_block_type default")) return -1;
        t = dflt[f->layer];
        key = "layers_block_type default";
    }
    if (strcmp(t, "moe")) {
        snprintf(f->msg, sizeof f->msg, "%s[%lld] = \"%s\"", key, (long long)f->layer, t);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts, dl = m->d_latent ? m->d_latent : d;
    hf_prefix(p, "backbone.layers.{L}.", f->layer);
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "mixer.gate.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_SELECT_BIAS, "mixer.gate.e_score_correction_bias", 0, MOE_OUT_IN, 1, E, 0, 0);
    hf_add(p, HF_UP, "mixer.experts.{e}.up_proj.weight", 1, MOE_OUT_IN, 2, ff, dl, 0);
    hf_add(p, HF_DOWN, "mixer.experts.{e}.down_proj.weight", 1, MOE_OUT_IN, 2, dl, ff, 0);
    if (m->d_latent) {
        hf_add(p, HF_LAT_IN, "mixer.fc1_latent_proj.weight", 0, MOE_OUT_IN, 2, dl, d, 0);
        hf_add(p, HF_LAT_OUT, "mixer.fc2_latent_proj.weight", 0, MOE_OUT_IN, 2, d, dl, 0);
    }
    if (S > 0) {
        m->n_shared = 1;
        m->d_shared = (int)S;
        hf_add(p, HF_SH_UP, "mixer.shared_experts.up_proj.weight", 0, MOE_OUT_IN, 2, S, d, 0);
        hf_add(p, HF_SH_DOWN, "mixer.shared_experts.down_proj.weight", 0, MOE_OUT_IN, 2, d, S, 0);
    }
    return 0;
}

/* HF Gemma4TextConfig with enable_moe_block (every decoder layer runs its dense MLP and this
   branch on the same residual; the layer sums the two after their own post-norms, outside the
   block): Gemma4TextRouter reads the residual - rms(x) * scale * hidden_size^-0.5, proj,
   softmax, top-top_k_experts, /sum, x per_expert_scale -, the experts (MixtralExperts: fused
   gate_up halves, hidden_activation) read pre_feedforward_layernorm_2(x), and the output is
   post_feedforward_layernorm_2(experts). Gemma4RMSNorm: x / sqrt(mean x^2 + rms_norm_eps) * w.
   Layer-level Hub names (model.language_model.layers.L.router.proj, ...). */
static int hf_gemma4(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 2304);
    m->d_ff = (int)hf_i2(c, o, "moe_intermediate_size", "expert_intermediate_size", -1);
    m->n_experts = (int)hf_i(c, o, "num_experts", -1);
    m->top_k = (int)hf_i(c, o, "top_k_experts", -1);
    double eps = hf_f(c, o, "rms_norm_eps", 1e-6);
    hf_set_act(c, p, hf_s(c, o, "hidden_activation", "gelu_pytorch_tanh"));
    if (!hf_layers(f, "num_hidden_layers", 30)) return -1;
    if (!hf_b(c, o, "enable_moe_block", 0)) {
        if (!c->bad) hf_dense(c, f->layer, "enable_moe_block is false");
        return -1;
    }
    if (!c->bad && (m->d_ff < 0 || m->n_experts < 0 || m->top_k < 0)) {
        hf_fail(c, m->d_ff < 0 ? "gemma4 needs 'moe_intermediate_size' (HF default None)"
                   : m->n_experts < 0 ? "gemma4 needs 'num_experts' (HF default None)"
                                      : "gemma4 needs 'top_k_experts' (HF default None)");
        return -1;
    }
    m->norm = MOE_NORM_SUM;
    m->router_in_norm = 1, m->expert_in_norm = 1, m->expert_scale = 1;
    m->in_norm_eps = (float)eps;
    m->out_norm = MOE_OUT_NORM_RMS, m->out_norm_eps = (float)eps;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    p->split = MOE_SPLIT_HALVES;
    if (f->o != f->root) hf_prefix(p, "model.language_model.layers.{L}.", f->layer);
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_add(p, HF_ROUTER, "router.proj.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    hf_add(p, HF_ROUTER_IN_SCALE, "router.scale", 0, MOE_OUT_IN, 1, d, 0, 0);
    hf_add(p, HF_EXPERT_SCALE, "router.per_expert_scale", 0, MOE_OUT_IN, 1, E, 0, 0);
    hf_add(p, HF_GATE_UP, "experts.gate_up_proj", 0, MOE_OUT_IN, 3, E, 2 * ff, d);
    hf_add(p, HF_DOWN, "experts.down_proj", 0, MOE_OUT_IN, 3, E, d, ff);
    hf_add(p, HF_EXPERT_IN_NORM, "pre_feedforward_layernorm_2.weight", 0, MOE_OUT_IN, 1, d, 0, 0);
    hf_add(p, HF_OUT_NORM, "post_feedforward_layernorm_2.weight", 0, MOE_OUT_IN, 1, d, 0, 0);
    return 0;
}

/* HF Ernie4_5_MoeConfig. MoE layer: (layer + 1) % interval == 0 and start <= layer <= end
   (end -1 = the last layer). */
static int hf_ernie(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    m->d_model = (int)hf_i(c, o, "hidden_size", 2560);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", 1536);
    m->n_experts = (int)hf_i2(c, o, "moe_num_experts", "num_local_experts", 64);
    m->top_k = (int)hf_i(c, o, "moe_k", 6);
    int64_t ns = hf_i(c, o, "moe_num_shared_experts", 2);
    int64_t nl = hf_count(c, o, "num_hidden_layers", 28);
    int64_t start = hf_i(c, o, "moe_layer_start_index", 1);
    int64_t end = hf_i(c, o, "moe_layer_end_index", -1);
    int64_t iv = hf_i(c, o, "moe_layer_interval", 1);
    m->score = MOE_SCORE_SOFTMAX;
    m->select_bias = 1;
    m->norm = MOE_NORM_SUM_CLAMP;
    m->norm_eps = (float)hf_f(c, o, "moe_norm_min", 1e-12);
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    if (hf_b(c, o, "use_bias", 0)) hf_fail(c, "use_bias = true is not supported");
    if (end == -1) end = nl - 1;
    if (!hf_layer_range(c, f->layer, nl, "num_hidden_layers")) return -1;
    if (iv <= 0 || (f->layer + 1) % iv || f->layer < start || f->layer > end) {
        snprintf(f->msg, sizeof f->msg, "moe_layer_start_index = %lld, moe_layer_end_index = "
                 "%lld, moe_layer_interval = %lld", (long long)start, (long long)end, (long long)iv);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_modulelist(p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    hf_add(p, HF_SELECT_BIAS, "mlp.moe_statics.e_score_correction_bias", 0, MOE_OUT_IN, 2, 1,
           m->n_experts, 0);
    hf_alt(p, 1, m->n_experts, 0);
    if (ns > 0) {
        m->n_shared = (int)ns;
        m->d_shared = m->d_ff;
        hf_shared(p, "mlp.shared_experts.");
    }
    return 0;
}

/* HF SwitchTransformersConfig: sparse step = num_layers // num_sparse_*_layers; block i is
   sparse if i % step == 1 or step == 1. */
static int hf_switch(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    int64_t nl = hf_count(c, o, "num_layers", 12);
    /* configuration_switch_transformers.py: absent -> 12, explicit null -> num_layers */
    const mio_json *ndj = mio_json_get(o, "num_decoder_layers");
    int64_t ndl = ndj && mio_json_is_null(ndj) ? nl : hf_count(c, o, "num_decoder_layers", 12);
    int64_t nse = hf_count(c, o, "num_sparse_encoder_layers", 3);
    int64_t nsd = hf_count(c, o, "num_sparse_decoder_layers", 3);
    m->d_model = (int)hf_i(c, o, "d_model", 768);
    m->d_ff = (int)hf_i(c, o, "d_ff", 2048);
    m->n_experts = (int)hf_i(c, o, "num_experts", 8);
    m->top_k = 1;
    m->ffn = MOE_FFN_PLAIN;
    m->capacity = (int)hf_i(c, o, "expert_capacity", 64);
    m->drop = MOE_DROP_ZERO; /* HF since PR #37123 (2025-04), and Mesh TensorFlow */
    m->router_bias = hf_b(c, o, "router_bias", 0);
    hf_set_act(c, p, hf_s(c, o, "dense_act_fn", "relu"));
    if (c->bad) return -1;
    int stack = f->stack;
    int64_t layer = f->layer;
    if (!stack) { /* a flat index: range-checked before any arithmetic on it */
        if (layer < nl) {
            stack = HF_STACK_ENCODER;
        } else if (layer - nl < ndl) { /* 0 <= nl <= layer: no overflow */
            stack = HF_STACK_DECODER;
            layer -= nl;
        } else {
            snprintf(f->msg, sizeof f->msg, "layer %lld is out of range: the model has %lld "
                     "encoder and %lld decoder layers (num_layers, num_decoder_layers), flat "
                     "index 0..%lld", (long long)layer, (long long)nl, (long long)ndl,
                     (long long)(nl + ndl - 1));
            c->p->n_layers = nl + ndl;
            hf_fail_why(c, HF_BAD_LAYER, f->msg);
            return -1;
        }
    }
    int dec = stack == HF_STACK_DECODER;
    int64_t n = dec ? ndl : nl, ns = dec ? nsd : nse;
    int64_t step = ns > 0 ? n / ns : 0; /* 0: no sparse block (modeling_switch_transformers.py) */
    snprintf(p->layer_name, sizeof p->layer_name, "%s layer %lld", dec ? "decoder" : "encoder",
             (long long)layer);
    if (!hf_layer_range(c, layer, n, dec ? "num_decoder_layers" : "num_layers")) return -1;
    if (!(step > 0 && (layer % step == 1 || step == 1))) {
        snprintf(f->msg, sizeof f->msg, "%s block %lld is dense: num_sparse_%s_layers = %lld makes "
                 "blocks i with i %% %lld == 1 sparse", dec ? "decoder" : "encoder",
                 (long long)layer, dec ? "decoder" : "encoder", (long long)ns, (long long)step);
        hf_dense(c, layer, f->msg);
        return -1;
    }
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    hf_prefix(p, dec ? "decoder.block.{L}.layer.2.mlp." : "encoder.block.{L}.layer.1.mlp.", layer);
    hf_add(p, HF_ROUTER, "router.classifier.weight", 0, MOE_OUT_IN, 2, E, d, 0);
    if (m->router_bias)
        hf_add(p, HF_ROUTER_BIAS, "router.classifier.bias", 0, MOE_OUT_IN, 1, E, 0, 0);
    hf_add(p, HF_UP, "experts.expert_{e}.wi.weight", 1, MOE_OUT_IN, 2, ff, d, 0);
    hf_add(p, HF_DOWN, "experts.expert_{e}.wo.weight", 1, MOE_OUT_IN, 2, d, ff, 0);
    return 0;
}

/* Every model_type the CLI runs, with its mapping function and the stacks its --layer takes
   (a bit per hf_stacks entry; 0: plain indices only). Where the config nests the text model
   (VLMs), `text` names the key. The order is the one --help and the error list print. */
static const struct hf_family {
    const char *model_type;
    int (*fn)(hf_fam *);
    const char *text;
    unsigned stacks;
} hf_table[] = {
    {"mixtral", hf_mixtral, NULL, 0},
    {"minimax", hf_mixtral, NULL, 0},
    {"phimoe", hf_mixtral, NULL, 0},
    {"qwen2_moe", hf_qwen, NULL, 0},
    {"qwen3_moe", hf_qwen, NULL, 0},
    {"qwen3_next", hf_qwen, NULL, 0},
    {"qwen3_5_moe", hf_qwen, "text_config", 0},
    {"qwen3_5_moe_text", hf_qwen, NULL, 0},
    {"qwen3_vl_moe", hf_qwen, "text_config", 0},
    {"qwen3_vl_moe_text", hf_qwen, NULL, 0},
    {"qwen3_omni_moe", hf_qwen, NULL, 1u << HF_STACK_THINKER | 1u << HF_STACK_TALKER},
    {"mellum", hf_qwen, NULL, 0},
    {"olmoe", hf_olmoe, NULL, 0},
    {"flex_olmo", hf_olmoe, NULL, 0},
    {"jamba", hf_jamba, NULL, 0},
    {"hunyuan_v1_moe", hf_hunyuan, NULL, 0},
    {"deepseek_v2", hf_deepseek, NULL, 0},
    {"deepseek_ocr2", hf_deepseek, "text_config", 0},
    {"deepseek_ocr2_text", hf_deepseek, NULL, 0},
    {"deepseek_v3", hf_deepseek, NULL, 0},
    {"kimi_k2", hf_deepseek, NULL, 0},
    {"kimi_k25", hf_deepseek, "text_config", 0},
    {"deepseek_v32", hf_deepseek, NULL, 0},
    {"dots1", hf_deepseek, NULL, 0},
    {"glm4_moe", hf_deepseek, NULL, 0},
    {"glm4_moe_lite", hf_deepseek, NULL, 0},
    {"glm4v_moe", hf_deepseek, "text_config", 0},
    {"glm4v_moe_text", hf_deepseek, NULL, 0},
    {"glm_moe_dsa", hf_deepseek, NULL, 0},
    {"solar_open", hf_deepseek, NULL, 0},
    {"mimo_v2_flash", hf_deepseek, NULL, 0},
    {"exaone_moe", hf_deepseek, NULL, 0},
    {"mistral4", hf_deepseek, NULL, 0},
    {"axk2", hf_deepseek, NULL, 0},
    {"axk1", hf_deepseek, NULL, 0},
    {"gpt_oss", hf_gpt_oss, NULL, 0},
    {"openai_privacy_filter", hf_gpt_oss, NULL, 0},
    {"llama4", hf_llama4, "text_config", 0},
    {"llama4_text", hf_llama4, NULL, 0},
    {"dbrx", hf_dbrx, NULL, 0},
    {"granitemoe", hf_granite, NULL, 0},
    {"granitemoeshared", hf_granite, NULL, 0},
    {"granitemoehybrid", hf_granite, NULL, 0},
    {"granitemoe_swa", hf_granite, NULL, 0},
    {"ernie4_5_moe", hf_ernie, NULL, 0},
    {"minimax_m2", hf_sigmoid, NULL, 0},
    {"minimax_m3_vl", hf_sigmoid, "text_config", 0},
    {"minimax_m3_vl_text", hf_sigmoid, NULL, 0},
    {"hy_v3", hf_sigmoid, NULL, 0},
    {"afmoe", hf_sigmoid, NULL, 0},
    {"laguna", hf_sigmoid, NULL, 0},
    {"step3p5", hf_sigmoid, NULL, 0},
    {"step3p7", hf_sigmoid, "text_config", 0},
    {"lfm2_moe", hf_sigmoid, NULL, 0},
    {"cohere2_moe", hf_cohere2, NULL, 0},
    {"aria", hf_aria, "text_config", 0},
    {"aria_text", hf_aria, NULL, 0},
    {"deepseek_v4", hf_deepseek_v4, NULL, 0},
    {"longcat_flash", hf_longcat, NULL, 0},
    {"jetmoe", hf_jetmoe, NULL, 0},
    {"nemotron_h", hf_nemotron_h, NULL, 0},
    {"gemma4", hf_gemma4, "text_config", 0},
    {"gemma4_text", hf_gemma4, NULL, 0},
    {"switch_transformers", hf_switch, NULL, 1u << HF_STACK_ENCODER | 1u << HF_STACK_DECODER},
};
#define HF_N_FAMILIES (sizeof hf_table / sizeof *hf_table)

/* Fills *p for layer `layer_arg` of the model whose config.json root is `root`.
   0 on success; otherwise -1, a message in err and the kind in p->why. */
static int hf_plan_layer(hf_plan *p, const mio_json *root, const char *layer_arg, char *err,
                         size_t err_size) {
    hf_ctx cx, *c = &cx;
    hf_fam f;
    const char *mt;
    const struct hf_family *fam = NULL;
    moe_config *m = &p->cfg;
    char msg[400];

    memset(p, 0, sizeof *p);
    p->n_layers = -1;
    cx.err = err, cx.n = err_size, cx.bad = 0, cx.p = p, cx.root = root;
    if (err_size) err[0] = 0;
    mt = hf_s(c, root, "model_type", NULL);
    if (c->bad) return -1;
    if (!mt) {
        hf_fail(c, "no 'model_type' key");
        return -1;
    }
    snprintf(p->family, sizeof p->family, "%s", mt);
    for (size_t i = 0; i < HF_N_FAMILIES && !fam; i++)
        if (!strcmp(mt, hf_table[i].model_type)) fam = &hf_table[i];
    if (!fam) { /* straight into err: the list of every family is longer than a local buffer */
        size_t at = (size_t)snprintf(err, err_size, "config.json: unknown model_type '%.200s'; "
                                     "supported:", mt);
        for (size_t i = 0; i < HF_N_FAMILIES && at < err_size; i++)
            at += (size_t)snprintf(err + at, err_size - at, " %s", hf_table[i].model_type);
        p->why = HF_BAD_CONFIG;
        return -1;
    }
    memset(&f, 0, sizeof f);
    f.c = c, f.p = p, f.root = root, f.mt = mt;
    f.o = fam->text ? hf_sub(root, fam->text) : root;
    if (!hf_parse_layer(layer_arg, &f.stack, &f.layer) ||
        (f.stack && !(fam->stacks >> f.stack & 1u))) {
        size_t at = (size_t)snprintf(err, err_size, "bad --layer '%s': expected a layer index",
                                     layer_arg);
        p->why = HF_BAD_LAYER;
        for (int i = 1; i < (int)(sizeof hf_stacks / sizeof *hf_stacks) && at < err_size; i++)
            if (fam->stacks >> i & 1u)
                at += (size_t)snprintf(err + at, err_size - at, ", %s.N", hf_stacks[i]);
        if (f.stack && at < err_size)
            snprintf(err + at, err_size - at, " (%s. is not a stack of %s)", hf_stacks[f.stack], mt);
        return -1;
    }
    snprintf(p->layer_name, sizeof p->layer_name, "layer %lld", (long long)f.layer);
    if (fam->fn(&f) || c->bad) return -1;
    if (m->d_model <= 0 || m->d_ff <= 0 || m->n_experts <= 0 || m->top_k <= 0 ||
        m->top_k > (int64_t)m->n_experts + m->n_zero_experts) {
        snprintf(msg, sizeof msg, "bad sizes: hidden %d, expert width %d, experts %d, top-k %d",
                 m->d_model, m->d_ff, m->n_experts, m->top_k);
        hf_fail(c, msg);
        return -1;
    }
    return 0;
}

/* ---- binding a plan to the checkpoint's tensors ---- */

/* One tensor as the checkpoint holds it, from an hf_lookup. */
typedef struct hf_found {
    const void *data;
    moe_dtype dtype;
    int rank;
    int64_t shape[8];
} hf_found;

/* Finds the tensor with this full name: 0 found (*out filled), 1 absent, -1 unusable (a message
   in err, e.g. a dtype moe.h does not take). The CLI looks in the safetensors files, the golden
   test in its records. */
typedef int (*hf_lookup)(void *user, const char *name, hf_found *out, char *err, size_t err_size);

/* What hf_bind allocates (the per-expert pointer arrays); hf_unbind frees it. */
typedef struct hf_bound {
    const void **pe[HF_MAX_TENSORS];
    const char *prefix;         /* the plan's prefix the tensors were found under */
} hf_bound;

static moe_tensor *hf_role_slot(moe_weights *w, int role) {
    switch (role) {
    case HF_ROUTER: return &w->router;
    case HF_ROUTER_BIAS: return &w->router_bias;
    case HF_SELECT_BIAS: return &w->select_bias;
    case HF_GATE: return &w->gate;
    case HF_UP: return &w->up;
    case HF_GATE_UP: return &w->gate_up;
    case HF_DOWN: return &w->down;
    case HF_GATE_UP_BIAS: return &w->gate_up_bias;
    case HF_DOWN_BIAS: return &w->down_bias;
    case HF_SH_GATE: return &w->shared_gate_proj;
    case HF_SH_UP: return &w->shared_up;
    case HF_SH_DOWN: return &w->shared_down;
    case HF_SH_GATE_W: return &w->shared_gate;
    case HF_SH_GATE_UP: return &w->shared_gate_up;
    case HF_OUT_BIAS: return &w->output_bias;
    case HF_OUT_NORM: return &w->out_norm;
    case HF_LAT_IN: return &w->latent_in;
    case HF_LAT_OUT: return &w->latent_out;
    case HF_ROUTER_IN_SCALE: return &w->router_in_scale;
    case HF_EXPERT_IN_NORM: return &w->expert_in_norm;
    case HF_EXPERT_SCALE: return &w->expert_scale;
    default: return NULL;
    }
}

static const char *hf_dtype_name(moe_dtype dt) {
    return dt == MOE_F32 ? "F32" : dt == MOE_BF16 ? "BF16" : "F16";
}

static void hf_shape_str(char *b, size_t n, int rank, const int64_t *s) {
    size_t at = (size_t)snprintf(b, n, "[");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(b + at, n - at, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (at < n) snprintf(b + at, n - at, "]");
}

static int hf_shape_is(const hf_found *f, int rank, const int64_t *s) {
    if (f->rank != rank) return 0;
    for (int i = 0; i < rank; i++)
        if (f->shape[i] != s[i]) return 0;
    return 1;
}

/* name = prefix + pattern with "{e}" replaced by e */
static void hf_tensor_name(char *out, size_t n, const char *prefix, const char *pat, int e) {
    const char *at = strstr(pat, "{e}");
    if (at) snprintf(out, n, "%s%.*s%d%s", prefix, (int)(at - pat), pat, e, at + 3);
    else snprintf(out, n, "%s%s", prefix, pat);
}

/* One tensor: looked up, its shape checked against the plan. 0 ok, else -1 and err. */
static int hf_get(hf_lookup look, void *user, const char *prefix, const char *name,
                  const hf_tensor *sp, hf_found *f, char *err, size_t n) {
    char e[MIO_ERR_SIZE], a[96], b[96], alt[300];
    e[0] = 0;
    int r = look(user, name, f, e, sizeof e);
    if (r > 0 && sp->alt_name[0]) {
        hf_tensor_name(alt, sizeof alt, prefix, sp->alt_name, 0);
        if (look(user, alt, f, e, sizeof e) == 0) r = 0, name = alt;
    }
    if (r > 0) {
        if (e[0]) snprintf(err, n, "missing tensor '%s' (%s)", name, e);
        else snprintf(err, n, "missing tensor '%s'", name);
        return -1;
    }
    if (r < 0) {
        snprintf(err, n, "%s", e);
        return -1;
    }
    if (!hf_shape_is(f, sp->rank, sp->shape) &&
        !(sp->alt_rank && hf_shape_is(f, sp->alt_rank, sp->alt_shape))) {
        hf_shape_str(a, sizeof a, sp->rank, sp->shape);
        hf_shape_str(b, sizeof b, f->rank, f->shape);
        snprintf(err, n, "tensor '%s' has wrong shape %s, expected %s (from config.json)", name, b,
                 a);
        return -1;
    }
    return 0;
}

static void hf_unbind(hf_bound *b) {
    for (int i = 0; i < HF_MAX_TENSORS; i++) {
        MIO_FREE((void *)b->pe[i]);
        b->pe[i] = NULL;
    }
}

/* The elements of a found tensor, for moe_tensor.n_elems (moe_layer_create checks them). */
static size_t hf_elems(const hf_found *f) {
    size_t n = 1;
    for (int i = 0; i < f->rank && i < 8; i++) n *= (size_t)f->shape[i];
    return n;
}

/* Fills *w (memset first) with views of every tensor of the plan, found through `look`: the
   prefix is the first of the plan's under which the router exists; per-expert tensors ("{e}")
   become per_expert arrays (owned by *b), each expert set of one dtype. Every view states its
   size (n_elems). Of the per-expert tensors only experts e0 .. e0 + ne - 1 are looked up (an
   expert subset: cfg.expert_begin, expert_count); the arrays still index experts globally, NULL
   outside the subset. Fused tensors ([E][...] in one) are whole. 0 on success; else a message
   in err, nothing left to free, and -2 if the router is under none of the prefixes (the layer
   is not in this checkpoint), -1 for any other problem. */
static int hf_bind_experts(const hf_plan *p, int e0, int ne, hf_lookup look, void *user,
                           moe_weights *w, hf_bound *b, char *err, size_t n) {
    char name[300], e[MIO_ERR_SIZE];
    hf_found f;
    memset(w, 0, sizeof *w);
    memset(b, 0, sizeof *b);
    for (int i = 0; i < p->n_prefix && !b->prefix; i++) {
        hf_tensor_name(name, sizeof name, p->prefix[i], p->t[0].name, 0);
        int r = look(user, name, &f, e, sizeof e);
        if (r < 0) {
            snprintf(err, n, "%s", e);
            return -1;
        }
        if (r == 0) b->prefix = p->prefix[i];
    }
    if (!b->prefix) {
        hf_tensor_name(name, sizeof name, p->prefix[0], p->t[0].name, 0);
        snprintf(err, n, "missing tensor '%s' (the router of %s %s)", name, p->family,
                 p->layer_name);
        return -2;
    }
    w->gate_up_split = p->split;
    w->shared_gate_up_split = p->shared_split;
    for (int i = 0; i < p->n; i++) {
        const hf_tensor *sp = &p->t[i];
        moe_tensor *slot = hf_role_slot(w, sp->role);
        int E = p->cfg.n_experts, x0 = sp->per_expert ? e0 : 0, x1 = sp->per_expert ? e0 + ne : 1;
        slot->layout = sp->layout;
        if (sp->per_expert) {
            b->pe[i] = (const void **)MIO_MALLOC((size_t)E * sizeof(void *));
            if (!b->pe[i]) {
                snprintf(err, n, "out of memory");
                goto fail;
            }
            memset((void *)b->pe[i], 0, (size_t)E * sizeof(void *));
        }
        for (int x = x0; x < x1; x++) {
            hf_tensor_name(name, sizeof name, b->prefix, sp->name, x);
            if (hf_get(look, user, b->prefix, name, sp, &f, err, n)) goto fail;
            if (!sp->per_expert) {
                slot->data = f.data, slot->dtype = f.dtype, slot->n_elems = hf_elems(&f);
            } else if (x == x0) {
                b->pe[i][x] = f.data, slot->dtype = f.dtype, slot->n_elems = hf_elems(&f);
            } else if (f.dtype != slot->dtype) {
                char first[300];
                hf_tensor_name(first, sizeof first, b->prefix, sp->name, x0);
                snprintf(err, n, "tensor '%s' has dtype %s but '%s' has %s: one dtype per "
                         "expert set is supported", name, hf_dtype_name(f.dtype), first,
                         hf_dtype_name(slot->dtype));
                goto fail;
            } else {
                b->pe[i][x] = f.data;
            }
        }
        if (sp->per_expert) slot->per_expert = b->pe[i];
    }
    return 0;
fail:
    hf_unbind(b);
    memset(w, 0, sizeof *w);
    return -1;
}

/* hf_bind_experts with every expert. */
HF_MAYBE_UNUSED static int hf_bind(const hf_plan *p, hf_lookup look, void *user, moe_weights *w, hf_bound *b,
                   char *err, size_t n) {
    return hf_bind_experts(p, 0, p->cfg.n_experts, look, user, w, b, err, n);
}

#endif /* HF_CONFIG_H */
