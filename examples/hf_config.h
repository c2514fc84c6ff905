/* hf_config.h - Hugging Face config.json -> moe_config, and the tensor names of one MoE layer,
   for every model family the example CLI (moe_cli.c) runs. Part of the CLI, not of moe.h.

   Include after moe.h and moe_io.h, in one file (every function here is static).

      hf_plan plan;
      char err[512];
      if (hf_plan_layer(&plan, mio_json_root(&cfg_doc), "3", err, sizeof err)) die(err);
      // plan.cfg: the moe_config; plan.t[0 .. plan.n): the tensors, each with its role in
      // moe_weights, its name (per-expert ones hold "{e}"), its expected shape and layout;
      // plan.prefix[0 .. plan.n_prefix): candidate name prefixes of the layer (the first one
      // under which the checkpoint has the router wins).

   Every routing option is read from config.json, with the family's Hugging Face default
   (configuration_<family>.py) when the key is absent or null. The rules, with their sources,
   are in shared/reference/moe-variants.md.

   Layer numbering: the decoder layer index as in `model.layers.N` (DBRX `transformer.blocks.N`).
   Switch Transformers has two stacks: `--layer encoder.N` or `decoder.N`; a plain integer N is
   the flat index encoder 0..num_layers-1, then decoder (N - num_layers). */
#ifndef HF_CONFIG_H
#define HF_CONFIG_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which moe_weights field a checkpoint tensor feeds. */
enum hf_role {
    HF_ROUTER, HF_ROUTER_BIAS, HF_SELECT_BIAS,
    HF_GATE, HF_UP, HF_GATE_UP, HF_DOWN, HF_GATE_UP_BIAS, HF_DOWN_BIAS,
    HF_SH_GATE, HF_SH_UP, HF_SH_DOWN, HF_SH_GATE_W, HF_SH_GATE_UP,
    HF_N_ROLES
};

#define HF_MAX_TENSORS 16
#define HF_MAX_PREFIX 4

typedef struct hf_tensor {
    int role;               /* enum hf_role */
    char name[160];         /* after the layer prefix; "{e}" stands for the expert index */
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
} hf_plan;

/* ---- reading config.json ---- */

typedef struct hf_ctx {
    char *err;
    size_t n;
    int bad;                /* first error already in err */
} hf_ctx;

static void hf_fail(hf_ctx *c, const char *msg) {
    if (c->bad) return;
    c->bad = 1;
    snprintf(c->err, c->n, "config.json: %s", msg);
}

/* Every integer key lands in an int (moe_config) or is compared with one, so a value outside
   int is an error here rather than a silent wrap in a cast. */
static int64_t hf_i(hf_ctx *c, const mio_json *o, const char *key, int64_t def) {
    char e[MIO_ERR_SIZE];
    int64_t v = def;
    int r = mio_json_get_i64(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    if (!r && (v < INT_MIN || v > INT_MAX)) {
        snprintf(e, sizeof e, "'%s' = %lld is out of range", key, (long long)v);
        hf_fail(c, e);
    }
    return r ? def : v;
}

static double hf_f(hf_ctx *c, const mio_json *o, const char *key, double def) {
    char e[MIO_ERR_SIZE];
    double v = def;
    int r = mio_json_get_f64(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    return r ? def : v;
}

static int hf_b(hf_ctx *c, const mio_json *o, const char *key, int def) {
    char e[MIO_ERR_SIZE];
    int v = def;
    int r = mio_json_get_bool(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
    return r ? def : v;
}

static const char *hf_s(hf_ctx *c, const mio_json *o, const char *key, const char *def) {
    char e[MIO_ERR_SIZE];
    const char *v = def;
    int r = mio_json_get_str(o, key, &v, e, sizeof e);
    if (r && r != MIO_ERR_NOT_FOUND) hf_fail(c, e);
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
    return -1;
}

static void hf_set_act(hf_ctx *c, hf_plan *p, const char *name) {
    int a = hf_act(name);
    if (a < 0) {
        char m[160];
        snprintf(m, sizeof m, "activation '%s' is not supported (silu, gelu, gelu_new, "
                 "gelu_pytorch_tanh, relu)", name);
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
    if (layer < 0 || layer >= n_layers) {
        char m[200];
        snprintf(m, sizeof m, "layer %lld is out of range: the model has %lld layers (%s), "
                 "0..%lld", (long long)layer, (long long)n_layers, key, (long long)n_layers - 1);
        hf_fail(c, m);
        return 0;
    }
    return 1;
}

static void hf_dense(hf_ctx *c, int64_t layer, const char *why) {
    char m[480];
    snprintf(m, sizeof m, "layer %lld is a dense layer (%s): it has no experts", (long long)layer,
             why);
    hf_fail(c, m);
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
    long long v = strtoll(s, &end, 10);
    if (*end) return 0;
    *layer = v;
    return 1;
}

/* An integer config key, or its attribute_map alias when the key is absent: transformers
   configs read either name (Qwen3MoeConfig: num_experts <-> num_local_experts), and
   save_pretrained writes the attribute's own name. */
static int64_t hf_i2(hf_ctx *c, const mio_json *o, const char *key, const char *alias, int64_t def) {
    const mio_json *v = mio_json_get(o, key);
    if ((!v || mio_json_is_null(v)) && alias && mio_json_get(o, alias)) return hf_i(c, o, alias, def);
    return hf_i(c, o, key, def);
}

/* The nested config object o[key] if it is one, else o (VLM text_config, DBRX ffn_config). */
static const mio_json *hf_sub(const mio_json *o, const char *key) {
    const mio_json *t = mio_json_get(o, key);
    return t && mio_json_type(t) == MIO_JSON_OBJECT ? t : o;
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
    return hf_layer_range(f->c, f->layer, hf_i(f->c, f->o, key, def), key);
}

/* HF MixtralConfig / PhimoeConfig: every layer, block_sparse_moe. */
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

/* HF Qwen2MoeConfig / Qwen3MoeConfig. Sparse layer: not in mlp_only_layers, experts > 0 and
   (layer + 1) % decoder_sparse_step == 0. */
static int hf_qwen(hf_fam *f) {
    hf_ctx *c = f->c;
    moe_config *m = &f->p->cfg;
    int q2 = HF_IS(f, "qwen2_moe");
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 2048);
    m->d_ff = (int)hf_i(c, f->o, "moe_intermediate_size", q2 ? 1408 : 768);
    m->n_experts = (int)hf_i2(c, f->o, "num_experts", "num_local_experts", q2 ? 60 : 128);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", q2 ? 4 : 8);
    m->norm = hf_b(c, f->o, "norm_topk_prob", 0) ? MOE_NORM_SUM : MOE_NORM_NONE;
    hf_set_act(c, f->p, hf_s(c, f->o, "hidden_act", "silu"));
    int64_t step = hf_i(c, f->o, "decoder_sparse_step", 1);
    if (!hf_layers(f, "num_hidden_layers", 24)) return -1; /* both configs */
    if (hf_in_list(c, f->o, "mlp_only_layers", f->layer)) {
        hf_dense(c, f->layer, "listed in mlp_only_layers");
        return -1;
    }
    if (m->n_experts <= 0 || step <= 0 || (f->layer + 1) % step) {
        snprintf(f->msg, sizeof f->msg, "decoder_sparse_step = %lld: sparse layers are those with "
                 "(layer + 1) %% step == 0", (long long)step);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    hf_prefix(f->p, "model.layers.{L}.", f->layer);
    hf_modulelist(f->p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    if (q2) {
        int64_t S = hf_i(c, f->o, "shared_expert_intermediate_size", 5632);
        if (S > 0) {
            m->n_shared = 1;
            m->d_shared = (int)S;
            m->shared_gate = MOE_SHARED_GATE_SIGMOID;
            hf_shared(f->p, "mlp.shared_expert.");
            hf_add(f->p, HF_SH_GATE_W, "mlp.shared_expert_gate.weight", 0, MOE_OUT_IN, 2, 1,
                   m->d_model, 0);
            hf_alt(f->p, 1, m->d_model, 0);
        }
    }
    return 0;
}

/* HF OlmoeConfig: every layer. */
static int hf_olmoe(hf_fam *f) {
    hf_ctx *c = f->c;
    moe_config *m = &f->p->cfg;
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 2048);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", 2048);
    m->n_experts = (int)hf_i2(c, f->o, "num_experts", "num_local_experts", 64);
    m->top_k = (int)hf_i(c, f->o, "num_experts_per_tok", 8);
    m->norm = hf_b(c, f->o, "norm_topk_prob", 0) ? MOE_NORM_SUM : MOE_NORM_NONE;
    hf_set_act(c, f->p, hf_s(c, f->o, "hidden_act", "silu"));
    if (!hf_layers(f, "num_hidden_layers", 16)) return -1;
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

/* HF DeepseekV2Config / DeepseekV3Config / Glm4MoeConfig. Kimi-K2 checkpoints say model_type
   "kimi_k2" and run DeepseekV3's code. MoE layer: layer >= first_k_dense_replace. The HF
   modeling code ignores moe_layer_freq (DeepSeek's remote code made layer L dense when
   L % freq != 0; released configs have 1). V2 defaults: configuration_deepseek_v2.py
   (num_experts_per_tok, n_group, topk_group default to None there: required here). */
static int hf_deepseek(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    const mio_json *o = f->o;
    int v2 = HF_IS(f, "deepseek_v2"), glm = HF_IS(f, "glm4_moe");
    m->d_model = (int)hf_i(c, o, "hidden_size", v2 ? 4096 : glm ? 4096 : 7168);
    m->d_ff = (int)hf_i(c, o, "moe_intermediate_size", v2 ? 1407 : glm ? 1408 : 2048);
    m->n_experts = (int)hf_i2(c, o, "n_routed_experts", "num_local_experts", v2 ? 64 : glm ? 128 : 256);
    m->top_k = (int)hf_i(c, o, "num_experts_per_tok", v2 ? 0 : 8);
    if (v2 && m->top_k == 0) hf_fail(c, "deepseek_v2 needs 'num_experts_per_tok' (HF default None)");
    int64_t ns = hf_i(c, o, "n_shared_experts", v2 ? 2 : 1);
    double rsf = hf_f(c, o, "routed_scaling_factor", v2 ? 1.0 : glm ? 1.0 : 2.5);
    int64_t ng = hf_i(c, o, "n_group", v2 ? 0 : glm ? 1 : 8);
    int64_t kg = hf_i(c, o, "topk_group", v2 ? 0 : glm ? 1 : 4);
    int norm = hf_b(c, o, "norm_topk_prob", v2 ? 0 : 1);
    int64_t fk = hf_i(c, o, "first_k_dense_replace", v2 ? 0 : glm ? 1 : 3);
    int64_t freq = hf_i(c, o, "moe_layer_freq", 1);
    hf_set_act(c, p, hf_s(c, o, "hidden_act", "silu"));
    m->scale = (float)rsf;
    if (v2) {
        const char *tm = hf_s(c, o, "topk_method", "greedy");
        const char *sf = hf_s(c, o, "scoring_func", "softmax");
        if (sf && strcmp(sf, "softmax")) {
            snprintf(f->msg, sizeof f->msg, "deepseek_v2 scoring_func '%s' is not supported "
                     "(softmax)", sf);
            hf_fail(c, f->msg);
        }
        m->score = MOE_SCORE_SOFTMAX;
        if (tm && !strcmp(tm, "group_limited_greedy")) {
            if (ng <= 0 || kg <= 0)
                hf_fail(c, "deepseek_v2 group_limited_greedy needs 'n_group' and 'topk_group' "
                        "(HF default None)");
            m->n_group = (int)ng;
            m->topk_group = (int)kg;
            m->group_score = MOE_GROUP_MAX;
        } else if (tm && strcmp(tm, "greedy")) {
            snprintf(f->msg, sizeof f->msg, "deepseek_v2 topk_method '%s' is not supported "
                     "(greedy, group_limited_greedy)", tm);
            hf_fail(c, f->msg);
        }
        /* HF DeepseekV2Moe never renormalises, whatever norm_topk_prob says */
        if (norm)
            snprintf(p->note, sizeof p->note, "norm_topk_prob = true is ignored, as in HF "
                     "deepseek_v2 (weights are not renormalised)");
    } else {
        m->score = MOE_SCORE_SIGMOID;
        m->select_bias = 1;
        m->n_group = (int)ng;
        m->topk_group = (int)kg;
        m->group_score = MOE_GROUP_TOP2_SUM;
        if (norm) {
            m->norm = MOE_NORM_SUM;
            m->norm_eps = 1e-20f;
        }
    }
    if (!hf_layers(f, "num_hidden_layers", v2 ? 32 : glm ? 46 : 61)) return -1;
    if (f->layer < fk) {
        snprintf(f->msg, sizeof f->msg, "first_k_dense_replace = %lld", (long long)fk);
        hf_dense(c, f->layer, f->msg);
        return -1;
    }
    if (freq > 1 && !c->bad && !p->note[0])
        snprintf(p->note, sizeof p->note, "moe_layer_freq = %lld is ignored, as in HF %s (every "
                 "layer from first_k_dense_replace on is MoE)", (long long)freq, f->mt);
    hf_prefix(p, "model.layers.{L}.", f->layer);
    hf_modulelist(p, "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj");
    if (!v2)
        hf_add(p, HF_SELECT_BIAS, "mlp.gate.e_score_correction_bias", 0, MOE_OUT_IN, 1,
               m->n_experts, 0, 0);
    if (ns > 0) {
        m->n_shared = (int)ns;
        m->d_shared = m->d_ff;
        hf_shared(p, "mlp.shared_experts.");
    }
    return 0;
}

/* HF GptOssConfig; the dequantized layout (not the MXFP4 _blocks/_scales one). */
static int hf_gpt_oss(hf_fam *f) {
    hf_ctx *c = f->c;
    hf_plan *p = f->p;
    moe_config *m = &p->cfg;
    m->d_model = (int)hf_i(c, f->o, "hidden_size", 2880);
    m->d_ff = (int)hf_i(c, f->o, "intermediate_size", 2880);
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
    if (!hf_layers(f, "num_hidden_layers", 36)) return -1;
    int64_t d = m->d_model, ff = m->d_ff, E = m->n_experts;
    p->split = MOE_SPLIT_INTERLEAVED;
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
        if (!c->bad && !(m->norm_p > 0.0f)) hf_fail(c, "moe_normalize_expert_weights must be > 0");
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
    int64_t nl = hf_i(c, o, "num_hidden_layers", 28);
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
    int64_t nl = hf_i(c, o, "num_layers", 12);
    /* configuration_switch_transformers.py: absent -> 12, explicit null -> num_layers */
    const mio_json *ndj = mio_json_get(o, "num_decoder_layers");
    int64_t ndl = ndj && mio_json_is_null(ndj) ? nl : hf_i(c, o, "num_decoder_layers", 12);
    int64_t nse = hf_i(c, o, "num_sparse_encoder_layers", 3);
    int64_t nsd = hf_i(c, o, "num_sparse_decoder_layers", 3);
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
    if (!stack) {
        if (layer >= 0 && layer < nl) stack = HF_STACK_ENCODER;
        else if (layer >= nl) { stack = HF_STACK_DECODER; layer -= nl; }
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
    {"phimoe", hf_mixtral, NULL, 0},
    {"qwen2_moe", hf_qwen, NULL, 0},
    {"qwen3_moe", hf_qwen, NULL, 0},
    {"olmoe", hf_olmoe, NULL, 0},
    {"jamba", hf_jamba, NULL, 0},
    {"deepseek_v2", hf_deepseek, NULL, 0},
    {"deepseek_v3", hf_deepseek, NULL, 0},
    {"kimi_k2", hf_deepseek, NULL, 0},
    {"glm4_moe", hf_deepseek, NULL, 0},
    {"gpt_oss", hf_gpt_oss, NULL, 0},
    {"llama4", hf_llama4, "text_config", 0},
    {"llama4_text", hf_llama4, NULL, 0},
    {"dbrx", hf_dbrx, NULL, 0},
    {"granitemoe", hf_granite, NULL, 0},
    {"granitemoeshared", hf_granite, NULL, 0},
    {"granitemoehybrid", hf_granite, NULL, 0},
    {"granitemoe_swa", hf_granite, NULL, 0},
    {"ernie4_5_moe", hf_ernie, NULL, 0},
    {"switch_transformers", hf_switch, NULL, 1u << HF_STACK_ENCODER | 1u << HF_STACK_DECODER},
};
#define HF_N_FAMILIES (sizeof hf_table / sizeof *hf_table)

/* Fills *p for layer `layer_arg` of the model whose config.json root is `root`.
   0 on success; otherwise -1 and a message in err. */
static int hf_plan_layer(hf_plan *p, const mio_json *root, const char *layer_arg, char *err,
                         size_t err_size) {
    hf_ctx cx = {err, err_size, 0}, *c = &cx;
    hf_fam f;
    const char *mt;
    const struct hf_family *fam = NULL;
    moe_config *m = &p->cfg;
    char msg[400];

    memset(p, 0, sizeof *p);
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
    if (!fam) {
        size_t at = 0;
        at += (size_t)snprintf(msg, sizeof msg, "unknown model_type '%s'; supported:", mt);
        for (size_t i = 0; i < HF_N_FAMILIES && at < sizeof msg; i++)
            at += (size_t)snprintf(msg + at, sizeof msg - at, " %s", hf_table[i].model_type);
        hf_fail(c, msg);
        return -1;
    }
    memset(&f, 0, sizeof f);
    f.c = c, f.p = p, f.root = root, f.mt = mt;
    f.o = fam->text ? hf_sub(root, fam->text) : root;
    if (!hf_parse_layer(layer_arg, &f.stack, &f.layer) ||
        (f.stack && !(fam->stacks >> f.stack & 1u))) {
        size_t at = (size_t)snprintf(err, err_size, "bad --layer '%s': expected a layer index",
                                     layer_arg);
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
        m->top_k > m->n_experts) {
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
static int hf_get(hf_lookup look, void *user, const char *name, const hf_tensor *sp, hf_found *f,
                  char *err, size_t n) {
    char e[MIO_ERR_SIZE], a[96], b[96];
    e[0] = 0;
    int r = look(user, name, f, e, sizeof e);
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
        free((void *)b->pe[i]);
        b->pe[i] = NULL;
    }
}

/* Fills *w (memset first) with views of every tensor of the plan, found through `look`: the
   prefix is the first of the plan's under which the router exists; per-expert tensors ("{e}")
   become per_expert arrays (owned by *b), each expert set of one dtype. 0 on success; else a
   message in err, nothing left to free, and -2 if the router is under none of the prefixes
   (the layer is not in this checkpoint), -1 for any other problem. */
static int hf_bind(const hf_plan *p, hf_lookup look, void *user, moe_weights *w, hf_bound *b,
                   char *err, size_t n) {
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
        int E = sp->per_expert ? p->cfg.n_experts : 1;
        slot->layout = sp->layout;
        if (sp->per_expert && !(b->pe[i] = (const void **)calloc((size_t)E, sizeof(void *)))) {
            snprintf(err, n, "out of memory");
            goto fail;
        }
        for (int x = 0; x < E; x++) {
            hf_tensor_name(name, sizeof name, b->prefix, sp->name, x);
            if (hf_get(look, user, name, sp, &f, err, n)) goto fail;
            if (!sp->per_expert) {
                slot->data = f.data, slot->dtype = f.dtype;
            } else if (x == 0) {
                b->pe[i][x] = f.data, slot->dtype = f.dtype;
            } else if (f.dtype != slot->dtype) {
                char first[300];
                hf_tensor_name(first, sizeof first, b->prefix, sp->name, 0);
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

#endif /* HF_CONFIG_H */
