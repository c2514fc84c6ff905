#!/usr/bin/python3
"""Tiny Hugging Face-style checkpoints, one per MoE family, for tests/test_cli.sh.

Run with Debian's torch from the repository root (no transformers, no safetensors package):

    /usr/bin/python3 tests/gen_checkpoints.py        # rewrites tests/checkpoints/

Each fixture directory tests/checkpoints/<case>/ holds what the CLI reads from a real model:
    config.json         the family's HF keys, including those that make some layers dense
                        (first_k_dense_replace, decoder_sparse_step, mlp_only_layers,
                        interleave_moe_layer_step, expert_layer_period, num_sparse_*_layers ...)
    model.safetensors   or model.safetensors.index.json + two shards, written here by hand
                        (u64 LE header length, JSON header padded with spaces to 8 bytes, data)
    tensors             the MoE layer(s) under their HF names, plus tensors the CLI must skip:
                        embeddings, attention, norms, a dense MLP layer, lm_head
and, per tested layer (file stem <case>.<layer>):
    .x.npy   float32 [T][d]       the input
    .y.npy   float64 [T][d]       reference output
    .e.npy   int32   [T][k]       reference experts, slot order (key descending)
    .w.npy   float64 [T][k]       reference weights (0 for a slot dropped by capacity, as the
                                  moe_trace reports it; Llama-4: the factor on the input)
tests/checkpoints/cases.txt lists the cases: name, directory, --layer, file stem.

The references are the float64 renderings of each family's HF modeling code in
tests/gen_golden.py (same operations in the same order), evaluated on the stored weights
(bf16/f16 values rounded first, x rounded to f32). The quantized checkpoints (a
quantization_config: fp8 blocks, compressed-tensors FP8 per channel and INT4, gpt-oss MXFP4)
store their expert matrices quantized here as each format defines, and the reference runs on
the exactly dequantized values (codes times scales, in float64). Draws whose routing has a near-tie (margin
< 1e-4 relative between adjacent keys, group ranks, sparsemixer thresholds) are rejected and
redrawn, as gen_golden.py does. Deterministic: fixed seeds, sorted JSON, no timestamps.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_golden as G  # noqa: E402

F32, BF16, F16 = G.F32, G.BF16, G.F16
# the plain dtypes by gen_golden's codes; the storage dtypes of quantized tensors by name
ST_DTYPE = {F32: "F32", BF16: "BF16", F16: "F16", "F8_E4M3": "F8_E4M3", "U8": "U8", "I32": "I32"}
ST_SIZE = {F32: 4, BF16: 2, F16: 2, "F8_E4M3": 1, "U8": 1, "I32": 4}


# ---- safetensors and npy writers --------------------------------------------------------------

def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, raw bytes). 4-byte types first so every tensor
    stays aligned to its element size."""
    items = sorted(tensors, key=lambda t: (-ST_SIZE[t[1]], t[0]))
    header, off = {}, 0
    for name, dt, shape, raw in items:
        header[name] = {"dtype": ST_DTYPE[dt], "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, raw in items:
            f.write(raw)
    return off


def write_npy(path, a):
    a = np.ascontiguousarray(a)
    descr = {np.dtype("<f4"): "<f4", np.dtype("<f8"): "<f8", np.dtype("<i4"): "<i4"}[a.dtype.newbyteorder("<")]
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % s for s in a.shape) if len(a.shape) != 1 else "%d," % a.shape[0])
    hdr = hdr.replace(", )", ")")
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + " " * (pad % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode("latin1"))
        f.write(a.astype(descr).tobytes())


def write_checkpoint(d, tensors, sharded):
    if not sharded:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return
    names = sorted(t[0] for t in tensors)
    half = set(names[: len(names) // 2])
    shards = {"model-00001-of-00002.safetensors": [t for t in tensors if t[0] in half],
              "model-00002-of-00002.safetensors": [t for t in tensors if t[0] not in half]}
    total, wmap = 0, {}
    for fn, ts in sorted(shards.items()):
        total += write_safetensors(os.path.join(d, fn), ts)
        for t in ts:
            wmap[t[0]] = fn
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2, sort_keys=True)
        f.write("\n")


# ---- the cases --------------------------------------------------------------------------------
# A case: one checkpoint directory. `moe` lists the MoE layers that get weights:
# (layer spec for --layer, tensor prefix, tested?) ; the reference runs on the tested ones.

def softmax_family(router="gate.weight", names=("gate_proj", "up_proj", "down_proj"), shared=None):
    return G.build_softmax_family(router_name=router, expert_names=names, shared=shared)


def dense_mlp(prefix, d, ff):
    return {prefix + "gate_proj.weight": (ff, d), prefix + "up_proj.weight": (ff, d),
            prefix + "down_proj.weight": (d, ff)}


def decoder_extras(d, n_layers, dense_layers, mlp="mlp.", ff_dense=32, root="model.", vocab=16):
    """Shapes of the tensors the CLI must not read: embeddings, attention, norms, dense MLPs."""
    s = {root + "embed_tokens.weight": (vocab, d), root + "norm.weight": (d,), "lm_head.weight": (vocab, d)}
    for L in range(n_layers):
        p = "%slayers.%d." % (root, L)
        s[p + "input_layernorm.weight"] = (d,)
        s[p + "post_attention_layernorm.weight"] = (d,)
        for q in ("q_proj", "k_proj", "v_proj", "o_proj"):
            s[p + "self_attn.%s.weight" % q] = (d, d)
        if L in dense_layers:
            s.update(dense_mlp(p + mlp, d, ff_dense))
    return s


CASES = []


def case(name, family, config, ref_cfg, builder, dtype, T, moe, extras, sharded, gen=None, variants=(),
         quant=None):
    """variants: (suffix, reference function, CLI flags): each tested layer is also run with the
    flags against that reference, as case <stem><suffix>. quant: for a quantized checkpoint, a
    function (key, float64 array) -> None (stored plain, as dtype says) or (the dequantized
    float64 values, [(key, storage dtype, shape, raw bytes), ...]: the tensors that store it)."""
    CASES.append(dict(name=name, family=family, config=config, ref_cfg=ref_cfg, builder=builder,
                      dtype=dtype, T=T, moe=moe, extras=extras, sharded=sharded, gen=gen or {},
                      variants=variants, quant=quant))


# Mixtral: 2 layers, both MoE; layer 1 tested; BF16, sharded
c = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=24, intermediate_size=20,
         num_local_experts=8, num_experts_per_tok=2, num_hidden_layers=2, hidden_act="silu",
         num_attention_heads=4, num_key_value_heads=2, vocab_size=16, rms_norm_eps=1e-5,
         router_aux_loss_coef=0.02, torch_dtype="bfloat16")
case("mixtral", G.mixtral, c, c, softmax_family(names=("w1", "w3", "w2")), BF16, 7,
     [("0", "model.layers.0.block_sparse_moe.", False), ("1", "model.layers.1.block_sparse_moe.", True)],
     decoder_extras(24, 2, []), True, dict(_ff=20, _E=8))

# Qwen2-MoE: decoder_sparse_step 2 -> layers 1, 3 sparse, 0 and 2 dense; mlp_only_layers [3]
c = dict(model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], hidden_size=24, intermediate_size=32,
         moe_intermediate_size=20, shared_expert_intermediate_size=36, num_experts=12, num_experts_per_tok=4,
         norm_topk_prob=False, decoder_sparse_step=2, mlp_only_layers=[3], num_hidden_layers=4,
         hidden_act="silu", vocab_size=16, torch_dtype="float32")
case("qwen2_moe", G.qwen2_moe, c, c, softmax_family(shared="qwen2"), F32, 9,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(24, 4, [0, 2, 3]), False, dict(_ff=20, _E=12))

# Qwen3-MoE: F16, sharded, norm_topk_prob, mlp_only_layers [0]
c = dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=40, intermediate_size=32,
         moe_intermediate_size=20, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
         decoder_sparse_step=1, mlp_only_layers=[0], num_hidden_layers=2, hidden_act="silu", vocab_size=16,
         torch_dtype="float16")
case("qwen3_moe", G.qwen3_moe, c, c, softmax_family(), F16, 8,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(40, 2, [0]), True, dict(_ff=20, _E=16))

# OLMoE: F32, all layers MoE, norm_topk_prob false
c = dict(model_type="olmoe", architectures=["OlmoeForCausalLM"], hidden_size=24, intermediate_size=36,
         num_experts=8, num_experts_per_tok=3, norm_topk_prob=False, num_hidden_layers=1, hidden_act="silu",
         vocab_size=16)
case("olmoe", G.olmoe, c, c, softmax_family(), F32, 6,
     [("0", "model.layers.0.mlp.", True)], decoder_extras(24, 1, []), False, dict(_ff=36, _E=8))

# Jamba: expert_layer_period 2, offset 1 -> layer 1 MoE, layer 0 dense
c = dict(model_type="jamba", architectures=["JambaForCausalLM"], hidden_size=24, intermediate_size=36,
         num_experts=8, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1,
         num_hidden_layers=2, hidden_act="silu", vocab_size=16)
case("jamba", G.jamba, c, c, softmax_family(router="router.weight"), F32, 7,
     [("1", "model.layers.1.feed_forward.", True)], decoder_extras(24, 2, [0], mlp="feed_forward."), False,
     dict(_ff=36, _E=8))

# DeepSeek-V2: group_limited_greedy (group score max), first_k_dense_replace 1
c = dict(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], hidden_size=24, intermediate_size=32,
         moe_intermediate_size=20, n_routed_experts=12, num_experts_per_tok=3, n_shared_experts=2,
         topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=16.0,
         norm_topk_prob=False, scoring_func="softmax", first_k_dense_replace=1, moe_layer_freq=1,
         num_hidden_layers=2, hidden_act="silu", vocab_size=16)
case("deepseek_v2", G.deepseek_v2, c, c, softmax_family(shared="deepseek"), F32, 10,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(24, 2, [0]), False, dict(_ff=20, _E=12))

# DeepSeek-V2-Lite: greedy, BF16, sharded, rsf 1
c = dict(model_type="deepseek_v2", hidden_size=24, intermediate_size=32, moe_intermediate_size=20,
         n_routed_experts=6, num_experts_per_tok=2, n_shared_experts=2, topk_method="greedy", n_group=1,
         topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False, first_k_dense_replace=1,
         num_hidden_layers=3, hidden_act="silu", vocab_size=16)
case("deepseek_v2_lite", G.deepseek_v2, c, c, softmax_family(shared="deepseek"), BF16, 7,
     [("2", "model.layers.2.mlp.", True)], decoder_extras(24, 3, [0]), True, dict(_ff=20, _E=6))

# DeepSeek-V3: sigmoid + e_score_correction_bias, 4 groups keep 2; router F32, experts BF16; sharded
c = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], hidden_size=24, intermediate_size=32,
         moe_intermediate_size=20, n_routed_experts=16, num_experts_per_tok=4, n_shared_experts=1, n_group=4,
         topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5, scoring_func="sigmoid",
         topk_method="noaux_tc", first_k_dense_replace=1, moe_layer_freq=1, num_hidden_layers=2,
         hidden_act="silu", vocab_size=16)
case("deepseek_v3", G.deepseek_v3, c, c, G.build_deepseek_v3,
     {"gate.weight": F32, "gate.e_score_correction_bias": F32, "*": BF16}, 11,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(24, 2, [0]), True)

# Kimi-K2: model_type deepseek_v3, n_group 1, rsf 2.827
c = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], hidden_size=24, intermediate_size=32,
         moe_intermediate_size=20, n_routed_experts=12, num_experts_per_tok=4, n_shared_experts=1, n_group=1,
         topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.827, scoring_func="sigmoid",
         topk_method="noaux_tc", first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu", vocab_size=16)
case("kimi_k2", G.kimi_k2, c, c, G.build_deepseek_v3, F32, 5,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(24, 2, [0]), False)

# GLM-4.5: deepseek_v3 routing, n_group 1, first_k_dense_replace 1
c = dict(model_type="glm4_moe", architectures=["Glm4MoeForCausalLM"], hidden_size=40, intermediate_size=32,
         moe_intermediate_size=20, n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1, n_group=1,
         topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, first_k_dense_replace=1,
         num_hidden_layers=2, hidden_act="silu", vocab_size=16)
case("glm4_moe", G.glm4_moe, c, c, G.build_deepseek_v3, F32, 6,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(40, 2, [0]), False)

# GPT-OSS: dequantized layout, F32 unsharded and BF16 sharded
c = dict(model_type="gpt_oss", architectures=["GptOssForCausalLM"], hidden_size=24, intermediate_size=20,
         num_local_experts=8, num_experts_per_tok=4, swiglu_limit=7.0, num_hidden_layers=1, vocab_size=16)
case("gpt_oss", G.gpt_oss, c, c, G.build_gpt_oss, F32, 9,
     [("0", "model.layers.0.mlp.", True)], decoder_extras(24, 1, []), False)
c = dict(model_type="gpt_oss", hidden_size=40, intermediate_size=20, num_local_experts=6,
         num_experts_per_tok=2, num_hidden_layers=2, vocab_size=16)  # swiglu_limit absent: default 7
case("gpt_oss_bf16", G.gpt_oss, c, dict(c, swiglu_limit=7.0), G.build_gpt_oss, BF16, 6,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(40, 2, []), True)

# Llama-4: config nested under text_config, interleave_moe_layer_step 2 -> layer 1 MoE; BF16;
# multimodal names (language_model.model.layers.N)
tc = dict(model_type="llama4_text", hidden_size=24, intermediate_size=20, intermediate_size_mlp=32,
          num_local_experts=8, num_experts_per_tok=1, interleave_moe_layer_step=2, num_hidden_layers=2,
          hidden_act="silu", vocab_size=16)
c = dict(model_type="llama4", architectures=["Llama4ForConditionalGeneration"], text_config=tc,
         vision_config=dict(hidden_size=16))
ex = decoder_extras(24, 2, [0], mlp="feed_forward.", root="language_model.model.")
ex["language_model.lm_head.weight"] = ex.pop("lm_head.weight")
case("llama4", G.llama4, c, tc, G.build_llama4, BF16, 8,
     [("1", "language_model.model.layers.1.feed_forward.", True)], ex, True)

# DBRX: ffn_config nested, transformer.blocks.N.ffn, F16
c = dict(model_type="dbrx", architectures=["DbrxForCausalLM"], d_model=40, n_layers=1, n_heads=4, vocab_size=16,
         ffn_config=dict(ffn_hidden_size=20, moe_num_experts=12, moe_top_k=4, moe_normalize_expert_weights=1.0,
                         ffn_act_fn=dict(name="silu")))
ref = dict(d_model=40, ffn_hidden_size=20, moe_num_experts=12, moe_top_k=4, moe_normalize_expert_weights=1.0,
           ffn_act_fn="silu")
ex = {"transformer.wte.weight": (16, 40), "transformer.norm_f.weight": (40,), "lm_head.weight": (16, 40),
      "transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight": (120, 40),
      "transformer.blocks.0.norm_attn_norm.attn.out_proj.weight": (40, 40),
      "transformer.blocks.0.norm_attn_norm.norm_1.weight": (40,)}
case("dbrx", G.dbrx, c, ref, G.build_dbrx, F16, 8, [("0", "transformer.blocks.0.ffn.", True)], ex, False)

# Granite-MoE
c = dict(model_type="granitemoe", architectures=["GraniteMoeForCausalLM"], hidden_size=24, intermediate_size=20,
         num_local_experts=10, num_experts_per_tok=3, num_hidden_layers=2, hidden_act="silu", vocab_size=16,
         embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=6.0)
case("granitemoe", G.granitemoe, c, c, G.build_granite, F32, 8,
     [("0", "model.layers.0.block_sparse_moe.", False), ("1", "model.layers.1.block_sparse_moe.", True)],
     decoder_extras(24, 2, []), True)

# Phi-3.5-MoE: sparsemixer with near-ties that the masks keep
c = dict(model_type="phimoe", architectures=["PhiMoEForCausalLM"], hidden_size=24, intermediate_size=18,
         num_local_experts=16, num_experts_per_tok=2, router_jitter_noise=0.01, input_jitter_noise=0.01,
         num_hidden_layers=1, hidden_act="silu", vocab_size=16)
case("phimoe", G.phimoe, c, c, G.build_phimoe, F32, 9,
     [("0", "model.layers.0.block_sparse_moe.", True)], decoder_extras(24, 1, []), False)

# ERNIE-4.5-MoE: moe_layer_start_index 1 -> layer 0 dense; shared experts; bias [1][E]
c = dict(model_type="ernie4_5_moe", architectures=["Ernie4_5_MoeForCausalLM"], hidden_size=24,
         intermediate_size=32, moe_intermediate_size=20, moe_num_experts=12, moe_k=3, moe_num_shared_experts=2,
         moe_layer_start_index=1, moe_layer_end_index=-1, moe_layer_interval=1, moe_norm_min=1e-12,
         num_hidden_layers=2, hidden_act="silu", vocab_size=16, use_bias=False)
case("ernie4_5_moe", G.ernie4_5_moe, c, c, G.build_ernie, F32, 8,
     [("1", "model.layers.1.mlp.", True)], decoder_extras(24, 2, [0]), True)

# Switch Transformers: 4 encoder + 4 decoder blocks, 2 sparse each (step 2: blocks 1 and 3);
# encoder.1 drops tokens (capacity 2 < T), decoder.3 tested too
c = dict(model_type="switch_transformers", architectures=["SwitchTransformersForConditionalGeneration"],
         d_model=24, d_ff=36, d_kv=8, num_heads=3, num_experts=6, expert_capacity=2, router_bias=False,
         dense_act_fn="relu", num_layers=4, num_decoder_layers=4, num_sparse_encoder_layers=2,
         num_sparse_decoder_layers=2, vocab_size=16, is_encoder_decoder=True)
ex = {"shared.weight": (16, 24), "encoder.final_layer_norm.weight": (24,), "decoder.final_layer_norm.weight": (24,)}
for stack, ffl in (("encoder", 1), ("decoder", 2)):
    for b in range(4):
        p = "%s.block.%d.layer." % (stack, b)
        ex[p + "0.SelfAttention.q.weight"] = (24, 24)
        ex[p + "0.layer_norm.weight"] = (24,)
        if b in (0, 2):
            ex[p + "%d.DenseReluDense.wi.weight" % ffl] = (36, 24)
            ex[p + "%d.DenseReluDense.wo.weight" % ffl] = (24, 36)
case("switch_transformers", G.switch_transformers, c, c, G.build_switch, F32, 11,
     [("encoder.1", "encoder.block.1.layer.1.mlp.", True), ("encoder.3", "encoder.block.3.layer.1.mlp.", False),
      ("decoder.1", "decoder.block.1.layer.2.mlp.", False), ("decoder.3", "decoder.block.3.layer.2.mlp.", True)],
     ex, True, variants=[(".identity", G.switch_transformers_v4, "--drop identity")])


# ---- cases made from a golden case ------------------------------------------------------------
# The families added with the one-mapping work: the checkpoint holds the golden case's config.json
# and its MoE layer under the same Hub names (fresh draws: a different seed), plus embeddings,
# norms and attention tensors the CLI must skip.

def from_golden(gname, sharded=False, name=None):
    gc = next(c for c in G.CASES if c["name"] == gname)
    config = gc["config"] if gc["config"] is not None else {k: v for k, v in gc["cfg"].items() if not k.startswith("_")}
    d = gc["cfg"].get("hidden_size", gc["cfg"].get("d_model"))
    prefix = gc["prefix"]
    root = prefix[:prefix.index("layers.")] if "layers." in prefix else ""
    n_layers = int(gc["layer"].split(".")[-1]) + 1
    case(name or gname, gc["family"], config, gc["cfg"], gc["builder"], gc["dtype"], gc["T"],
         [(gc["layer"], prefix + gc["block"], True)], decoder_extras(d, n_layers, [], root=root), sharded)


from_golden("granitemoeshared", sharded=True)
from_golden("granitemoehybrid_bf16", name="granitemoehybrid")
from_golden("granitemoe_swa")
from_golden("minimax", sharded=True)
from_golden("flex_olmo_bf16", name="flex_olmo")
from_golden("mellum")
from_golden("qwen3_next", sharded=True)
from_golden("qwen3_5_moe_bf16", name="qwen3_5_moe")
from_golden("qwen3_vl_moe")
from_golden("qwen3_omni_moe_thinker")
from_golden("qwen3_omni_moe_talker")
from_golden("dots1")
from_golden("deepseek_v32", sharded=True)
from_golden("deepseek_ocr2")
from_golden("glm4_moe_lite")
from_golden("glm4v_moe")
from_golden("glm_moe_dsa")
from_golden("solar_open")
from_golden("mimo_v2_flash")
from_golden("exaone_moe")
from_golden("kimi_k25")
from_golden("hunyuan_v1_moe")
from_golden("minimax_m2")
from_golden("minimax_m3_vl", sharded=True)
from_golden("hy_v3")
from_golden("afmoe_bf16", name="afmoe")
from_golden("laguna")
from_golden("step3p7")
from_golden("step3p5_bf16", name="step3p5")
from_golden("lfm2_moe")
from_golden("mistral4")
from_golden("axk2")
from_golden("cohere2_moe")
from_golden("cohere2_moe_sigmoid")
from_golden("aria")
from_golden("openai_privacy_filter")
from_golden("deepseek_v4", sharded=True)
from_golden("longcat_flash")
from_golden("jetmoe_bf16", name="jetmoe")
from_golden("axk1", sharded=True)
from_golden("nemotron_h")
from_golden("nemotron_h_latent_bf16", name="nemotron_h_latent", sharded=True)
from_golden("gemma4")


# ---- quantized checkpoints --------------------------------------------------------------------
# The layouts the Hub's quantized MoE checkpoints ship (quantization_config in config.json),
# written from float64 draws quantized here as the formats define them; the reference runs on
# the exactly dequantized stored weights (float64 products of codes and scales, no rounding), so
# it is the checkpoint's own math. torch 1.13 has no float8 dtype: E4M3 is encoded from its
# definition (OCP 8-bit floating point, "fn": no infinities, 0x7f/0xff NaN, max 448).

def _e4m3_table():
    v = np.empty(256)
    for c in range(256):
        e, m = (c >> 3) & 15, c & 7
        mag = np.nan if (e == 15 and m == 7) else (m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        v[c] = -mag if c & 0x80 else mag
    return v


E4M3 = _e4m3_table()
assert E4M3[0x7E] == 448.0 and E4M3[0x08] == 2.0 ** -6 and E4M3[0x01] == 2.0 ** -9 and E4M3[0xC0] == -2.0
FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6])  # E2M1, OCP MX


def _nearest_code(a, values):
    """Index of the nearest of the increasing non-negative `values` to each |a|, ties to the
    even index (round to nearest even: an even code has an even last mantissa bit)."""
    i = np.clip(np.searchsorted(values, a), 1, len(values) - 1)
    lo, hi = values[i - 1], values[i]
    up = (hi - a < a - lo) | ((hi - a == a - lo) & (i % 2 == 0))
    return np.where(up, i, i - 1)


def e4m3_encode(x):
    """E4M3 codes of x (|x| <= 448), nearest even."""
    code = _nearest_code(np.abs(x), E4M3[:0x7F])
    return (code | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def fp8_blocks(w, bo, bi, scale_dt):
    """w [N][K] -> (dequantized, E4M3 bytes, scales [ceil(N/bo)][ceil(K/bi)] as stored, their
    raw bytes): DeepSeek-V3's scheme, s = amax / 448 per tile, rounded to the scale dtype; the
    last tiles are partial. The scale is the multiplier (weight_scale_inv despite the name)."""
    N, K = w.shape
    nb, kb = -(-N // bo), -(-K // bi)
    s = np.array([[np.abs(w[i * bo:(i + 1) * bo, j * bi:(j + 1) * bi]).max() / 448.0 for j in range(kb)]
                  for i in range(nb)])
    sv, sraw = G._round(s, scale_dt)
    S = np.repeat(np.repeat(sv, bo, 0), bi, 1)[:N, :K]
    q = e4m3_encode(np.clip(w / S, -448.0, 448.0))
    return E4M3[q] * S, q.tobytes(), sv, sraw


def int4_groups(w, scale_dt):
    """w [N][K] -> (dequantized, I32 words [N][K/8], scales [N][K/32] as stored, raw):
    compressed-tensors pack-quantized symmetric int4, group 32: s = amax / 7 rounded to the
    scale dtype, q = nearest-even(w / s) in -8..7, element 8c + i in bits 4i.. of word c as q + 8
    (compressors/quantized_compressors/pack_quantized.py)."""
    N, K = w.shape
    g = w.reshape(N, K // 32, 32)
    sv, sraw = G._round(np.abs(g).max(-1) / 7.0, scale_dt)
    q = np.clip(np.rint(g / sv[..., None]), -8, 7)
    u = (q + 8).astype(np.uint32).reshape(N, K // 8, 8)
    words = np.zeros((N, K // 8), np.uint32)
    for i in range(8):
        words |= u[..., i] << np.uint32(4 * i)
    return (q * sv[..., None]).reshape(N, K), words.astype("<u4").tobytes(), sv, sraw


def mxfp4_blocks(w):
    """w [..][K] (K = inputs) -> (dequantized, _blocks [..][K/32][16] bytes, _scales [..][K/32]
    bytes): OCP MXFP4, X = 2^(floor(log2 amax) - 2) per 32 as an E8M0 byte (x + 127), E2M1 codes
    nearest even (clamped to +-6), byte j of a block: element 2j low nibble, 2j + 1 high
    (transformers integrations/mxfp4.py convert_moe_packed_tensors)."""
    g = w.reshape(w.shape[:-1] + (w.shape[-1] // 32, 32))
    e = np.floor(np.log2(np.abs(g).max(-1))) - 2
    X = 2.0 ** e
    v = np.clip(g / X[..., None], -6.0, 6.0)
    code = _nearest_code(np.abs(v), FP4[:8]) | np.where(np.signbit(v), 8, 0)
    blocks = (code[..., 0::2] | (code[..., 1::2] << 4)).astype(np.uint8)
    return (FP4[code] * X[..., None]).reshape(w.shape), blocks, (e + 127).astype(np.uint8)


def q_fp8(block=(128, 128), scale_dt=F32, suffix="_scale_inv", channel=False, plain=()):
    """Quantized storage of fp8 checkpoints: every 2-D `*.weight` of a linear (experts,
    shared experts, attention, dense MLPs) except the router and the keys in `plain`."""
    def q(k, a):
        if not k.endswith("proj.weight") or a.ndim != 2 or any(p in k for p in plain):
            return None
        bo, bi = (1, a.shape[1]) if channel else block
        vals, codes, sv, sraw = fp8_blocks(a, bo, bi, scale_dt)
        sk = k[:-len("weight")] + "weight_scale" if suffix == "_scale" else k + suffix
        return vals, [(k, "F8_E4M3", a.shape, codes), (sk, scale_dt, sv.shape, sraw)]
    return q


def q_int4(scale_dt=BF16, plain=()):
    def q(k, a):
        if not k.endswith("proj.weight") or a.ndim != 2 or any(p in k for p in plain):
            return None
        vals, words, sv, sraw = int4_groups(a, scale_dt)
        base = k[:-len("weight")]
        shape = np.array(a.shape, "<i4").tobytes()
        return vals, [(base + "weight_packed", "I32", (a.shape[0], a.shape[1] // 8), words),
                      (base + "weight_scale", scale_dt, sv.shape, sraw), (base + "weight_shape", "I32", (2,), shape)]
    return q


def q_gpt_oss_mxfp4(k, a):
    """gpt-oss: the experts' fused [E][in][out] matrices are stored [E][out][in] as MXFP4."""
    if k not in ("experts.gate_up_proj", "experts.down_proj"):
        return None
    vals, blocks, scales = mxfp4_blocks(np.ascontiguousarray(a.transpose(0, 2, 1)))
    return vals.transpose(0, 2, 1), [(k + "_blocks", "U8", blocks.shape, blocks.tobytes()),
                                     (k + "_scales", "U8", scales.shape, scales.tobytes())]


def quant_extras(d, n_layers, dense_layers, ff_dense=32, vocab=16):
    """The other tensors of a small quantized checkpoint: embeddings, norms, and the dense MLP
    of the dense layers (quantized like the experts), no attention (to keep the files small)."""
    s = {"model.embed_tokens.weight": (vocab, d), "model.norm.weight": (d,), "lm_head.weight": (vocab, d)}
    for L in range(n_layers):
        p = "model.layers.%d." % L
        s[p + "input_layernorm.weight"] = (d,)
        s[p + "post_attention_layernorm.weight"] = (d,)
        if L in dense_layers:
            s.update(dense_mlp(p + "mlp.", d, ff_dense))
    return s


# DeepSeek-V3 FP8 (deepseek-ai/DeepSeek-V3 config.json): 128 x 128 blocks with F32 scales,
# hidden 136 and width 72 so that every matrix has partial tail blocks (gate/up [72][136] ->
# scales [1][2], down [136][72] -> [2][1]); the router and its bias stay plain; shared experts
# quantized too.
c = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], hidden_size=136, intermediate_size=32,
         moe_intermediate_size=72, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, n_group=1,
         topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, scoring_func="sigmoid",
         topk_method="noaux_tc", first_k_dense_replace=1, moe_layer_freq=1, num_hidden_layers=2,
         hidden_act="silu", vocab_size=16, torch_dtype="bfloat16",
         quantization_config=dict(activation_scheme="dynamic", fmt="e4m3", quant_method="fp8",
                                  weight_block_size=[128, 128]))
case("deepseek_v3_fp8", G.deepseek_v3, c, c, G.build_deepseek_v3,
     {"gate.weight": BF16, "gate.e_score_correction_bias": F32, "*": BF16}, 12,
     [("1", "model.layers.1.mlp.", True)], quant_extras(136, 2, [0]), True, quant=q_fp8())

# Qwen3-MoE "-FP8" (Qwen/Qwen3-30B-A3B-FP8 config.json): BF16 scale_inv, the router listed in
# modules_to_not_convert with the norms; hidden 64 < 128, so each matrix is one partial tile.
skip = ["lm_head"] + ["model.layers.%d.%s" % (L, m) for L in range(2)
                      for m in ("input_layernorm", "mlp.gate", "post_attention_layernorm")]
c = dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=64, intermediate_size=32,
         moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
         decoder_sparse_step=1, mlp_only_layers=[0], num_hidden_layers=2, hidden_act="silu", vocab_size=16,
         torch_dtype="bfloat16",
         quantization_config=dict(activation_scheme="dynamic", fmt="e4m3", modules_to_not_convert=skip,
                                  quant_method="fp8", weight_block_size=[128, 128]))
case("qwen3_moe_fp8", G.qwen3_moe, c, c, softmax_family(), BF16, 8,
     [("1", "model.layers.1.mlp.", True)], quant_extras(64, 2, [0]), False, dict(_ff=32, _E=8),
     quant=q_fp8(scale_dt=BF16))

# Kimi-K2-Thinking's compressed-tensors INT4 (moonshotai/Kimi-K2-Thinking config.json): routed
# experts pack-quantized, group 32, BF16 scales; the ignore list keeps the shared experts, the
# dense MLPs and attention in BF16 ("re:" patterns).
ignore = ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]
qc = dict(config_groups=dict(group_0=dict(input_activations=None, output_activations=None, targets=["Linear"],
                                          weights=dict(actorder=None, block_structure=None, dynamic=False,
                                                       group_size=32, num_bits=4, observer="minmax",
                                                       observer_kwargs={}, strategy="group", symmetric=True,
                                                       type="int"))),
          format="pack-quantized", ignore=ignore, kv_cache_scheme=None, quant_method="compressed-tensors",
          quantization_status="compressed")
c = dict(model_type="kimi_k2", architectures=["DeepseekV3ForCausalLM"], hidden_size=64, intermediate_size=32,
         moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, n_group=1,
         topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.827, scoring_func="sigmoid",
         topk_method="noaux_tc", first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu", vocab_size=16,
         torch_dtype="bfloat16", quantization_config=qc)
case("kimi_k2_int4", G.kimi_k2, c, c, G.build_deepseek_v3,
     {"gate.e_score_correction_bias": F32, "*": BF16}, 8,
     [("1", "model.layers.1.mlp.", True)], quant_extras(64, 2, [0]), False,
     quant=q_int4(plain=("shared_experts.", "model.layers.0.mlp.")))

# compressed-tensors float-quantized, FP8 per output channel (GLM-4.x-FP8 style): weight_scale
# [N][1] F32; widths 48 and 24, not multiples of 32.
qc = dict(config_groups=dict(group_0=dict(input_activations=dict(dynamic=True, num_bits=8, strategy="token",
                                                                 symmetric=True, type="float"),
                                          targets=["Linear"],
                                          weights=dict(dynamic=False, num_bits=8, observer="minmax",
                                                       strategy="channel", symmetric=True, type="float"))),
          format="float-quantized", ignore=["lm_head", "re:.*mlp.gate$"], quant_method="compressed-tensors",
          quantization_status="compressed")
c = dict(model_type="glm4_moe", architectures=["Glm4MoeForCausalLM"], hidden_size=48, intermediate_size=32,
         moe_intermediate_size=24, n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1, n_group=1,
         topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, first_k_dense_replace=1,
         num_hidden_layers=2, hidden_act="silu", vocab_size=16, torch_dtype="bfloat16", quantization_config=qc)
case("glm4_moe_fp8", G.glm4_moe, c, c, G.build_deepseek_v3,
     {"gate.e_score_correction_bias": F32, "*": BF16}, 7,
     [("1", "model.layers.1.mlp.", True)], quant_extras(48, 2, [0]), False,
     quant=q_fp8(scale_dt=F32, suffix="_scale", channel=True))

# gpt-oss MXFP4 (openai/gpt-oss-20b config.json): the experts' _blocks/_scales, router and biases
# in BF16.
c = dict(model_type="gpt_oss", architectures=["GptOssForCausalLM"], hidden_size=64, intermediate_size=32,
         num_local_experts=4, num_experts_per_tok=2, swiglu_limit=7.0, num_hidden_layers=1, vocab_size=16,
         torch_dtype="bfloat16",
         quantization_config=dict(modules_to_not_convert=["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                          "model.embed_tokens", "lm_head"], quant_method="mxfp4"))
case("gpt_oss_mxfp4", G.gpt_oss, c, c, G.build_gpt_oss, BF16, 9,
     [("0", "model.layers.0.mlp.", True)], quant_extras(64, 1, []), False, quant=q_gpt_oss_mxfp4)


# ---- generation -------------------------------------------------------------------------------

def dtype_of(spec, name):
    return spec.get(name, spec["*"]) if isinstance(spec, dict) else spec


def reference(family, cfg, w, xv):
    """(y, experts, weights) of a reference function on stored weights; the weight of a slot
    dropped by capacity is reported as 0, as the moe_trace does."""
    aux = {}
    with torch.no_grad():
        y, ex, wt = family({k: torch.from_numpy(v[0]) for k, v in w.items()}, cfg, torch.from_numpy(xv), aux)
    wt = wt.clone()
    if aux.get("dropped") is not None:
        wt[aux["dropped"]] = 0.0
    return y.numpy(), ex.numpy().astype(np.int32), wt.numpy()


def draw_layer(cs, seed, tested):
    """Weights (name -> (float64 values, dtype, raw)) and x for one MoE layer; for a tested layer,
    redraw until every routing decision has its margin. Returns (w, x, y, experts, weights)."""
    cfg = dict(cs["ref_cfg"], **cs["gen"])
    for attempt in range(400):
        dr = G.Draw(seed * 1000 + attempt)
        w_np, x_np = cs["builder"](dr, cfg, cs["T"])
        w = {}
        for k in sorted(w_np):
            stored = cs["quant"](k, w_np[k]) if cs["quant"] else None
            if stored:
                w[k] = stored
                continue
            dt = dtype_of(cs["dtype"], k)
            vals, raw = G._round(w_np[k], dt)
            w[k] = (vals, [(k, dt, vals.shape, raw)])
        xv, _ = G._round(x_np, F32)
        if not tested:
            return w, xv, None, None, None
        aux = {}
        with torch.no_grad():
            y, ex, wt = cs["family"]({k: torch.from_numpy(v[0]) for k, v in w.items()}, cfg,
                                     torch.from_numpy(xv), aux)
        if any(m < 1.0 for _, m in aux.get("margins", [])):
            continue
        if not aux.get("exercised", True):
            continue
        if "min_key" in aux and not aux["min_key"] > 1e-3:
            continue
        dropped = aux.get("dropped")
        if cs["family"] is G.switch_transformers and cfg["expert_capacity"] < cs["T"]:
            if int(dropped.sum()) < 2:
                continue
        wt = wt.clone()
        if dropped is not None:
            wt[dropped] = 0.0  # the trace reports 0 for a dropped slot
        return w, xv, y.numpy(), ex.numpy().astype(np.int32), wt.numpy()
    raise RuntimeError("%s: no draw with clear routing margins" % cs["name"])


def extra_tensor(dr, shape, dt):
    a = dr.vec(shape, 0.1)
    return G._round(a, dt)[1]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "checkpoints")
    only = set(sys.argv[1:])
    if not only and os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    lines = []
    for ci, cs in enumerate(CASES):
        if only and cs["name"] not in only:
            continue
        d = os.path.join(root, cs["name"])
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cs["config"], f, indent=2, sort_keys=True)
            f.write("\n")
        tensors = []
        store_dt = dtype_of(cs["dtype"], "*")
        dr = G.Draw(90000 + ci)
        for name in sorted(cs["extras"]):
            shape = cs["extras"][name]
            if cs["quant"]:  # quantized checkpoints quantize their other linears too
                a = dr.vec(shape, 0.1)
                stored = cs["quant"](name, a)
                tensors.extend(stored[1] if stored else [(name, store_dt, shape, G._round(a, store_dt)[1])])
                continue
            tensors.append((name, store_dt, shape, extra_tensor(dr, shape, store_dt)))
        for li, (spec, prefix, tested) in enumerate(cs["moe"]):
            w, x, y, ex, wt = draw_layer(cs, 100 * (ci + 1) + li, tested)
            for k, (vals, stored) in w.items():
                for sk, dt, shape, raw in stored:
                    tensors.append((G.hub_name(prefix, "", sk), dt, shape, raw))
            if tested:
                runs = [("", y, ex, wt, "")]
                for suffix, family, flags in cs["variants"]:
                    runs.append((suffix,) + reference(family, dict(cs["ref_cfg"], **cs["gen"]), w, x) + (flags,))
                for suffix, y, ex, wt, flags in runs:
                    stem = "%s.%s%s" % (cs["name"], spec, suffix)
                    write_npy(os.path.join(d, stem + ".x.npy"), x.astype(np.float32))
                    write_npy(os.path.join(d, stem + ".y.npy"), y.astype(np.float64))
                    write_npy(os.path.join(d, stem + ".e.npy"), ex.astype(np.int32))
                    write_npy(os.path.join(d, stem + ".w.npy"), wt.astype(np.float64))
                    lines.append(("%s %s %s %s %s" % (stem, cs["name"], spec, stem, flags)).rstrip())
                    print("%-34s T=%d max|y| %.3g" % (stem, x.shape[0], float(np.abs(y).max())))
        write_checkpoint(d, tensors, cs["sharded"])
    if not only:
        with open(os.path.join(root, "cases.txt"), "w") as f:
            f.write("# case  directory  --layer  file-stem  [CLI flags]   (written by tests/gen_checkpoints.py)\n")
            f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(root) for f in fs)
    print("total %d bytes in %s" % (total, root))


if __name__ == "__main__":
    main()
