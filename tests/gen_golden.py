#!/usr/bin/python3
"""Golden end-to-end cases for moe.h, from float64 renderings of each family's published code.

Run with Debian's torch (1.13) from the repository root:

    /usr/bin/python3 tests/gen_golden.py          # writes tests/golden/<case>.bin

The output is deterministic: fixed seeds, float64 CPU arithmetic, and a byte format with no
timestamps, so running it again rewrites identical files.

THE REFERENCE FUNCTIONS
    One per family, each a rendering of the MoE block of Hugging Face
    `transformers/models/<m>/modeling_<m>.py` (Grok-1: xai-org/grok-1 model.py) in torch float64:
    router, gating, top-k, renormalisation, scaling, experts and shared experts, with the same
    operations in the same order as the original. They are pure functions:

        y, experts, weights = FAMILY(w, cfg, x, aux=None)

    w        dict of float64 tensors under the HF state-dict names of the MoE block, i.e. the
             checkpoint key with the `model.layers.N.mlp.` (or `block_sparse_moe.`,
             `feed_forward.`, `ffn.`) prefix removed, in the HF shapes ([out][in] for
             nn.Linear; experts as checkpoints store them: `experts.{e}.gate_proj.weight` for
             the nn.ModuleList families, fused 3-D tensors for GPT-OSS, Llama-4, DBRX, Granite)
    cfg      dict of HF config.json fields (hidden_size, num_experts_per_tok, ...)
    x        [T][d] float64
    returns  y [T][d], experts [T][k] (int64, slot order), weights [T][k] float64
    aux      optional dict; when given it receives 'logits' [T][E] (router logits, after the
             router bias), 'dropped' [T][k] (bool; Switch capacity) and 'margins', a list of
             (what, smallest margin) used by the generator to reject near-ties.

    Slot order is "selection key descending" (torch.topk(sorted=True)). HF calls topk with
    sorted=False in DeepSeek-V2/V3 and GLM; the set and every weight are the same, only the
    order of the k slots is then unspecified, and moe.h reports slots key-descending.

FILE FORMAT (all little-endian)
    magic   "MOEG" then u32 version = 1
    records until end of file, each:
        u32 name_len, name bytes (ASCII, no NUL)
        u32 dtype      0 f32, 1 bf16, 2 f16, 3 i32, 4 f64, 5 u8 (text)
        u32 ndim, u32 dims[ndim]
        raw data, prod(dims) elements of the dtype, row-major
    Records in every file:
        "family"        text, the reference function's name (e.g. "deepseek_v3")
        "case"          text, the file's case name
        "config.json"   text, the case's Hugging Face config.json; test_golden.c maps it with
                        examples/hf_config.h, the code the CLI runs
        "layer"         text, the --layer argument for that mapping ("1", "encoder.1")
        "cfg.<key>"     instead of the two above for Grok-1, which has no transformers config:
                        i32 (ints and bools) [1], f64 (floats) [1], or text
        "w.<hub name>"  every weight tensor under its full Hub name (model.layers.1.mlp.gate.weight)
                        and HF shape, stored as f32/bf16/f16
        "x"             f32 [T][d]
        "y_ref"         f64 [T][d]
        "experts_ref"   i32 [T][k], slot order
        "weights_ref"   f64 [T][k], the factor HF multiplies expert e's output (Llama-4: its
                        input) by; for a Switch token dropped by capacity it is still the router
                        probability (HF's output for it is 0)
        "dropped_ref"   i32 [T][k], 1 where the slot was dropped by capacity
        "logits_ref"    f64 [T][E], router logits (GPT-OSS: after the router bias)

    bf16 / f16 weights: the float64 draws are rounded to that dtype first (round to nearest
    even) and the reference is computed from the rounded values, so the file is exact.
    x is rounded to f32 first for the same reason.

ROBUST ROUTING
    moe.h computes in fp32, so every selection decision of a golden case must have a margin
    far above fp32 rounding: adjacent keys among the top k+1 (slot order is checked too),
    group ranks, the sparsemixer masks (distance of each ratio from 2*eps) all differ by more
    than 1e-4 relative (and 1e-5 absolute). A draw that fails is thrown away and the next seed
    is used. DeepSeek-V3-style draws must also have every p + bias > 0, because HF fills
    dropped groups with 0.0 where moe.h (like vLLM and llama.cpp) uses -inf; these are the
    same only when no kept key is negative (documented divergence, moe-variants.md section 7).
    A draw must also exercise what its case is about, or it is thrown away too: the group limit
    and the selection bias each change some token's experts (DeepSeek-V2 group, V3, ERNIE),
    both GPT-OSS clamps bite, the sparsemixer masks keep 2 and 3 experts (crafted near-ties on
    both sides of 2 eps), and Switch drops at least 2 tokens.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


F32, BF16, F16, I32, F64, TEXT = 0, 1, 2, 3, 4, 5
REL_MARGIN = 1e-4
ABS_MARGIN = 1e-5


# ---- activations (HF ACT2FN names) ------------------------------------------------------------

def _gelu_tanh(z):
    # HF NewGELUActivation / gelu_pytorch_tanh, jax.nn.gelu(approximate=True)
    return 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * torch.pow(z, 3.0))))


ACT2FN = {
    "silu": F.silu,
    "gelu": F.gelu,  # erf form
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
}


# ---- margin bookkeeping -----------------------------------------------------------------------

def _gap(a, b):
    """How far apart two keys are, in units of the required margin (>= 1 is safe)."""
    d = abs(a - b)
    return min(d / (REL_MARGIN * max(abs(a), abs(b), 1e-300)), d / ABS_MARGIN)


def _note_topk(aux, what, keys, k):
    """Selection of the top k of keys[t] with slots in descending order: every adjacent pair
    among the k+1 best must be separated."""
    if aux is None:
        return
    worst = float("inf")
    n = keys.shape[1]
    srt = torch.sort(keys, dim=-1, descending=True).values
    for t in range(keys.shape[0]):
        for j in range(min(k + 1, n) - 1):
            a, b = float(srt[t, j]), float(srt[t, j + 1])
            if math.isinf(a) and math.isinf(b):
                continue
            worst = min(worst, _gap(a, b))
    aux.setdefault("margins", []).append((what, worst))


def _note_group(aux, what, group_scores, topk_group):
    """Group selection: only the set matters, so only the topk_group-th vs the next."""
    if aux is None or topk_group >= group_scores.shape[1]:
        return
    srt = torch.sort(group_scores, dim=-1, descending=True).values
    worst = min(_gap(float(srt[t, topk_group - 1]), float(srt[t, topk_group]))
                for t in range(srt.shape[0]))
    aux.setdefault("margins", []).append((what, worst))


def _note_threshold(aux, what, ratio, threshold):
    """A mask `ratio > threshold`: no ratio may sit near the threshold (an absolute margin when
    the threshold is 0)."""
    if aux is None:
        return
    finite = ratio[torch.isfinite(ratio)]
    if threshold == 0:  # the best logit's own ratio is exactly 0 in any precision
        finite = finite[finite != 0]
    unit = REL_MARGIN * threshold if threshold > 0 else ABS_MARGIN
    worst = float((finite - threshold).abs().min()) / unit if finite.numel() else float("inf")
    aux.setdefault("margins", []).append((what, worst))


def _set(aux, key, value):
    if aux is not None:
        aux[key] = value


# ---- the HF expert loop -----------------------------------------------------------------------

def _sparse_moe_loop(x, selected_experts, routing_weights, n_experts, expert_fn):
    """The loop of MixtralSparseMoeBlock.forward (shared by Qwen2/3-MoE, OLMoE, Jamba, PhiMoE,
    DeepSeek, ERNIE, DBRX): one-hot mask, per expert the tokens that chose it, output times the
    routing weight, index_add_ into the result."""
    final_hidden_states = torch.zeros_like(x)
    expert_mask = F.one_hot(selected_experts, num_classes=n_experts).permute(2, 1, 0)
    for expert_idx in range(n_experts):
        idx, top_x = torch.where(expert_mask[expert_idx])
        if top_x.shape[0] == 0:
            continue
        current_state = x[None, top_x].reshape(-1, x.shape[-1])
        current_hidden_states = expert_fn(expert_idx, current_state) * routing_weights[top_x, idx, None]
        final_hidden_states.index_add_(0, top_x, current_hidden_states)
    return final_hidden_states


def _mlp(w, prefix, act, x):
    """LlamaMLP-style SwiGLU: down_proj(act(gate_proj(x)) * up_proj(x))."""
    return F.linear(act(F.linear(x, w[prefix + "gate_proj.weight"])) * F.linear(x, w[prefix + "up_proj.weight"]),
                    w[prefix + "down_proj.weight"])


# ---- reference functions, one per family -------------------------------------------------------

def mixtral(w, cfg, x, aux=None):
    """HF mixtral MixtralSparseMoeBlock: softmax (fp32), top-k, renormalise (no eps),
    experts w2(act(w1 x) * w3 x)."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    routing_weights /= routing_weights.sum(dim=-1, keepdim=True)

    def expert(e, h):
        p = "experts.%d." % e
        return F.linear(act(F.linear(h, w[p + "w1.weight"])) * F.linear(h, w[p + "w3.weight"]), w[p + "w2.weight"])

    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, expert)
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def qwen2_moe(w, cfg, x, aux=None):
    """HF qwen2_moe Qwen2MoeSparseMoeBlock: softmax, top-k, optional renorm (norm_topk_prob),
    plus shared_expert(x) * sigmoid(shared_expert_gate(x))."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    if cfg["norm_topk_prob"]:
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E,
                         lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    shared_expert_output = _mlp(w, "shared_expert.", act, x)
    shared_expert_output = torch.sigmoid(F.linear(x, w["shared_expert_gate.weight"])) * shared_expert_output
    y = y + shared_expert_output
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def qwen3_moe(w, cfg, x, aux=None):
    """HF qwen3_moe Qwen3MoeSparseMoeBlock: as Qwen2-MoE without the shared expert. The expert count
    is num_experts or its attribute_map alias num_local_experts (what transformers v5 writes)."""
    E, k = cfg.get("num_local_experts", cfg.get("num_experts")), cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    if cfg["norm_topk_prob"]:
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E,
                         lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def olmoe(w, cfg, x, aux=None):
    """HF olmoe OlmoeSparseMoeBlock: softmax, top-k, norm_topk_prob (false in OLMoE-1B-7B)."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    if cfg["norm_topk_prob"]:
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E,
                         lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def jamba(w, cfg, x, aux=None):
    """HF jamba JambaSparseMoeBlock: router linear, softmax, top-k, no renormalisation."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E,
                         lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def deepseek_v2(w, cfg, x, aux=None):
    """HF deepseek_v2 DeepseekV2Moe: fp32 router linear, softmax, greedy or
    group_limited_greedy (group score = max, other groups masked_fill 0.0), weights *
    routed_scaling_factor (the current HF code never renormalises), plus ungated shared experts
    of width moe_intermediate_size * n_shared_experts."""
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    T = x.shape[0]
    router_logits = F.linear(x, w["gate.weight"])
    scores = router_logits.softmax(dim=-1, dtype=torch.float64)
    if cfg["topk_method"] == "greedy":
        _note_topk(aux, "top-k of p", scores, k)
        topk_weight, topk_idx = torch.topk(scores, k=k, dim=-1, sorted=True)
    elif cfg["topk_method"] == "group_limited_greedy":
        G, kg = cfg["n_group"], cfg["topk_group"]
        group_scores = scores.view(T, G, -1).max(dim=-1).values
        _note_group(aux, "group max rank", group_scores, kg)
        group_idx = torch.topk(group_scores, k=kg, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores)
        group_mask.scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(T, G, E // G).reshape(T, -1)
        tmp_scores = scores.masked_fill(~score_mask.bool(), 0.0)
        _note_topk(aux, "top-k of masked p", tmp_scores, k)
        topk_weight, topk_idx = torch.topk(tmp_scores, k=k, dim=-1, sorted=True)
        if aux is not None:  # the group limit must matter for at least one token
            plain = torch.topk(scores, k=k, dim=-1)[1]
            aux["exercised"] = bool((torch.sort(plain, -1).values != torch.sort(topk_idx, -1).values).any())
    else:
        raise ValueError(cfg["topk_method"])
    topk_weight = topk_weight * cfg["routed_scaling_factor"]
    y = _sparse_moe_loop(x, topk_idx, topk_weight, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y + _mlp(w, "shared_experts.", act, x)
    _set(aux, "logits", router_logits)
    return y, topk_idx, topk_weight


def deepseek_v3(w, cfg, x, aux=None):
    """HF deepseek_v3 DeepseekV3TopkRouter + DeepseekV3MoE (also glm4_moe and Kimi-K2, which use
    this code path): fp32 router linear, sigmoid, selection on p + e_score_correction_bias,
    group score = sum of the top-2 biased scores, keep topk_group groups (others masked_fill
    0.0), top-k, weights gathered from the unbiased p, renormalised (+1e-20) when
    norm_topk_prob, times routed_scaling_factor; plus ungated shared experts."""
    E, k = cfg.get("n_routed_experts", cfg.get("num_experts")), cfg["num_experts_per_tok"]
    G, kg = cfg["n_group"], cfg["topk_group"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    scores = router_logits.sigmoid()
    # get_topk_indices
    # the bias: a buffer of the router (gate.e_score_correction_bias) or, in ExaoneMoe Hub
    # checkpoints, of the block (e_score_correction_bias)
    bias = w["gate.e_score_correction_bias"] if "gate.e_score_correction_bias" in w else w["e_score_correction_bias"]
    scores_for_choice = scores.view(-1, E) + bias.unsqueeze(0)
    group_scores = scores_for_choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)
    _note_group(aux, "group top-2-sum rank", group_scores, kg)
    group_idx = torch.topk(group_scores, k=kg, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    unmasked = scores_for_choice
    scores_for_choice = scores_for_choice.masked_fill(~score_mask.bool(), 0.0)
    _note_topk(aux, "top-k of masked p+b", scores_for_choice, k)
    topk_indices = torch.topk(scores_for_choice, k=k, dim=-1, sorted=True)[1]
    # forward
    topk_weights = scores.gather(1, topk_indices)
    if cfg["norm_topk_prob"]:
        denominator = topk_weights.sum(dim=-1, keepdim=True) + 1e-20
        topk_weights /= denominator
    topk_weights = topk_weights * cfg["routed_scaling_factor"]
    y = _sparse_moe_loop(x, topk_indices, topk_weights, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    if "shared_experts.gate_proj.weight" in w:  # MiMoV2FlashMoE: DeepseekV3MoE without them
        y = y + _mlp(w, "shared_experts.", act, x)
    if aux is not None:
        aux["logits"] = router_logits
        aux["min_key"] = float(unmasked.min())  # must be > 0 (HF 0.0 fill == moe.h -inf fill)
        by_p = torch.topk(scores, k=k, dim=-1)[1]
        biased_plain = torch.topk(unmasked, k=k, dim=-1)[1]
        srt = lambda a: torch.sort(a, -1).values
        bias_matters = bool((srt(by_p) != srt(biased_plain)).any())
        group_matters = G <= 1 or bool((srt(biased_plain) != srt(topk_indices)).any())
        aux["exercised"] = bias_matters and group_matters
    return y, topk_indices, topk_weights


def gpt_oss(w, cfg, x, aux=None):
    """HF gpt_oss GptOssTopKRouter + GptOssExperts (the CPU loop): router linear with bias,
    top-k of the logits, softmax over the k, experts x @ gate_up_proj[e] + bias with gate =
    even columns and up = odd columns, gate clamped above at limit, up clamped to +-limit,
    (up + 1) * gate * sigmoid(alpha gate), @ down_proj[e] + bias."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    alpha, limit = 1.702, cfg["swiglu_limit"]
    router_logits = F.linear(x, w["router.weight"], w["router.bias"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    router_top_value, router_indices = torch.topk(router_logits, k, dim=-1)
    router_top_value = F.softmax(router_top_value, dim=1, dtype=router_top_value.dtype)
    router_scores = torch.zeros_like(router_logits).scatter_(1, router_indices, router_top_value)
    # GptOssExperts.forward, CPU path
    next_states = torch.zeros_like(x)
    expert_mask = F.one_hot(router_indices, num_classes=E).permute(2, 1, 0)
    clamped = [0, 0]
    for expert_idx in range(E):
        _, token_idx = torch.where(expert_mask[expert_idx])
        if token_idx.numel() == 0:
            continue
        current_state = x[token_idx]
        gate_up = current_state @ w["experts.gate_up_proj"][expert_idx] + w["experts.gate_up_proj_bias"][expert_idx]
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        clamped[0] += int((gate > limit).sum())
        clamped[1] += int((up.abs() > limit).sum())
        gate = gate.clamp(min=None, max=limit)
        up = up.clamp(min=-limit, max=limit)
        glu = gate * torch.sigmoid(gate * alpha)
        gated_output = (up + 1) * glu
        out = gated_output @ w["experts.down_proj"][expert_idx] + w["experts.down_proj_bias"][expert_idx]
        weighted_output = out * router_scores[token_idx, expert_idx, None]
        next_states.index_add_(0, token_idx, weighted_output)
    if aux is not None:
        aux["logits"] = router_logits
        aux["exercised"] = clamped[0] > 0 and clamped[1] > 0  # both clamps must bite
    return next_states, router_indices, router_top_value


def llama4(w, cfg, x, aux=None):
    """HF llama4 Llama4Router + Llama4TextMoe + Llama4TextExperts: top-k of the logits, the
    rest set to -inf, sigmoid; every expert runs on x * score (0 for the unselected), gate_up
    [E][d][2ff] chunked into halves (gate, up), up * act(gate) @ down_proj; plus the shared
    expert (Llama4TextMLP)."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    d = x.shape[1]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.weight"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    router_top_value, router_indices = torch.topk(router_logits, k, dim=1)
    router_scores = torch.full_like(router_logits, float("-inf")).scatter_(1, router_indices, router_top_value)
    router_scores = torch.sigmoid(router_scores)
    # Llama4TextMoe.forward
    routed_in = x.repeat(router_scores.shape[1], 1)
    routed_in = routed_in * router_scores.transpose(0, 1).reshape(-1, 1)
    # Llama4TextExperts.forward
    hs = routed_in.view(E, -1, d)
    gate_up = torch.bmm(hs, w["experts.gate_up_proj"])
    gate, up = gate_up.chunk(2, dim=-1)
    routed_out = torch.bmm(up * act(gate), w["experts.down_proj"]).view(-1, d)
    out = _mlp(w, "shared_expert.", act, x)
    out = out + routed_out.reshape(router_scores.shape[1], -1, d).sum(dim=0)
    _set(aux, "logits", router_logits)
    return out, router_indices, router_scores.gather(1, router_indices)


def switch_transformers(w, cfg, x, aux=None):
    """HF switch_transformers SwitchTransformersTop1Router + SwitchTransformersSparseMLP /
    SwitchTransformersExperts for one batch row of T tokens: softmax, argmax, capacity by cumsum
    in token order (a token is kept if its position among the expert's tokens is <=
    expert_capacity), router_probs = max p; each kept token gets its expert's output wo(act(wi x))
    times router_probs, a dropped token gets 0 (final_hidden_states = zeros, as since transformers
    PR #37123 and in Mesh TensorFlow). The cumsum runs over the tokens, as PR #48421 restored it
    (at c49429ed it ran over a size-1 dimension and dropped nothing, issue #48293)."""
    E = cfg["num_experts"]
    act = ACT2FN[cfg["dense_act_fn"]]
    router_logits = F.linear(x, w["router.classifier.weight"])
    router_probs = F.softmax(router_logits, dim=-1, dtype=torch.float64)
    _note_topk(aux, "argmax of p", router_probs, 1)
    expert_index = torch.argmax(router_probs, dim=-1)
    expert_index = F.one_hot(expert_index, num_classes=E)
    token_priority = torch.cumsum(expert_index, dim=-2)
    expert_capacity_mask = token_priority <= cfg["expert_capacity"]
    expert_index = expert_index * expert_capacity_mask
    router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1)
    router_mask = expert_index.bool()
    final_hidden_states = torch.zeros_like(x)
    for idx in range(E):
        sel = router_mask[:, idx]
        if sel.any():
            p = "experts.expert_%d." % idx
            out = F.linear(act(F.linear(x[sel], w[p + "wi.weight"])), w[p + "wo.weight"])
            final_hidden_states[sel] += out * router_probs[sel]
    chosen = torch.argmax(router_logits, dim=-1).unsqueeze(-1)
    dropped = ~router_mask.any(dim=-1, keepdim=True)
    if aux is not None:
        aux["logits"] = router_logits
        aux["dropped"] = dropped
    return final_hidden_states, chosen, router_probs


def switch_transformers_v4(w, cfg, x, aux=None):
    """HF switch_transformers before PR #37123 (transformers 4.x), what the CLI runs with
    `--drop identity`: SwitchTransformersTop1Router + SwitchTransformersSparseMLP for one
    batch row of T tokens: softmax, argmax, capacity by cumsum in token order (a token is kept
    if its position among the expert's tokens is <= expert_capacity), router_probs = max p;
    next_states = hidden_states.clone(), kept tokens replaced by their expert's output
    wo(act(wi x)); output router_probs * next_states. So a dropped token outputs p * x."""
    E = cfg["num_experts"]
    act = ACT2FN[cfg["dense_act_fn"]]
    router_logits = F.linear(x, w["router.classifier.weight"])
    router_probs = F.softmax(router_logits, dim=-1, dtype=torch.float64)
    _note_topk(aux, "argmax of p", router_probs, 1)
    expert_index = torch.argmax(router_probs, dim=-1)
    expert_index = F.one_hot(expert_index, num_classes=E)
    token_priority = torch.cumsum(expert_index, dim=-2)
    expert_capacity_mask = token_priority <= cfg["expert_capacity"]
    expert_index = expert_index * expert_capacity_mask
    router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1)
    router_mask = expert_index.bool()
    next_states = x.clone()
    for idx in range(E):
        sel = router_mask[:, idx]
        if sel.any():
            p = "experts.expert_%d." % idx
            next_states[sel] = F.linear(act(F.linear(x[sel], w[p + "wi.weight"])), w[p + "wo.weight"])
    y = router_probs * next_states
    chosen = torch.argmax(router_logits, dim=-1).unsqueeze(-1)
    dropped = ~router_mask.any(dim=-1, keepdim=True)
    if aux is not None:
        aux["logits"] = router_logits
        aux["dropped"] = dropped
    return y, chosen, router_probs


def _sparsemixer(scores, jitter_eps, aux):
    """HF phimoe sparsemixer, inference path (training=False), top_k = 2."""
    # first expert
    mask_logits_threshold, max_ind = scores.max(dim=-1, keepdim=True)
    factor = scores.abs().clamp(min=mask_logits_threshold)
    ratio1 = (mask_logits_threshold - scores) / factor
    mask_logits_threshold = ratio1 > (2 * jitter_eps)
    masked_gates = scores.masked_fill(mask_logits_threshold, float("-inf"))
    selected_experts = max_ind
    masked_gates = torch.softmax(masked_gates, dim=-1)
    multiplier = masked_gates.gather(dim=-1, index=selected_experts)
    # second expert
    masked_scores = torch.scatter(scores, -1, selected_experts, float("-inf"))
    mask_logits_threshold, max_ind = masked_scores.max(dim=-1, keepdim=True)
    factor = scores.abs().clamp(min=mask_logits_threshold)
    ratio2 = (mask_logits_threshold - scores) / factor
    mask_logits_threshold = ratio2 > (2 * jitter_eps)
    masked_gates_top2 = masked_scores.masked_fill(mask_logits_threshold, float("-inf"))
    selected_experts_top2 = max_ind
    masked_gates_top2 = torch.softmax(masked_gates_top2, dim=-1)
    multiplier_top2 = masked_gates_top2.gather(dim=-1, index=selected_experts_top2)
    multiplier = torch.concat((multiplier, multiplier_top2), dim=-1)
    selected_experts = torch.concat((selected_experts, selected_experts_top2), dim=-1)
    if aux is not None:
        _note_topk(aux, "iterative top-2 of logits", scores, 2)
        _note_threshold(aux, "mask 1 threshold", ratio1, 2 * jitter_eps)
        r2 = ratio2.masked_fill(torch.zeros_like(scores, dtype=torch.bool).scatter_(1, selected_experts[:, :1], True),
                                float("nan"))
        _note_threshold(aux, "mask 2 threshold", r2, 2 * jitter_eps)
        kept1 = (~(ratio1 > 2 * jitter_eps)).sum(-1)
        kept2 = (~mask_logits_threshold).sum(-1) - 1  # minus e1, already -inf
        aux["exercised"] = bool((kept1 >= 2).any() and (kept1 >= 3).any() and (kept2 >= 2).any())
        if jitter_eps == 0:  # only the best logit survives each mask: nothing more to exercise
            aux["exercised"] = True
    return multiplier, selected_experts


def phimoe(w, cfg, x, aux=None):
    """HF phimoe PhimoeSparseMoeBlock: sparsemixer routing (router_jitter_noise as the threshold
    epsilon), experts w2(act(w1 x) * w3 x)."""
    E = cfg["num_local_experts"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights, selected_experts = _sparsemixer(router_logits, cfg["router_jitter_noise"], aux)

    def expert(e, h):
        p = "experts.%d." % e
        return F.linear(act(F.linear(h, w[p + "w1.weight"])) * F.linear(h, w[p + "w3.weight"]), w[p + "w2.weight"])

    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, expert)
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def dbrx(w, cfg, x, aux=None):
    """HF dbrx DbrxRouter + DbrxExperts/DbrxExpertGLU: softmax (fp32), top-k, divided by the
    moe_normalize_expert_weights-norm of the k weights; w1, v1, w2 stored [E*ff][d], w1/v1 used
    transposed, w2 untransposed: (act(x w1^T) * (x v1^T)) w2."""
    E, k = cfg["moe_num_experts"], cfg["moe_top_k"]
    ff, d = cfg["ffn_hidden_size"], x.shape[1]
    act = ACT2FN[cfg.get("ffn_act_fn", "silu")]
    router_logits = F.linear(x, w["router.layer.weight"])
    weights = router_logits.softmax(dim=-1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", weights, k)
    top_weights, top_experts = torch.topk(weights, k, dim=-1)
    top_weights_scale = torch.norm(top_weights, p=cfg["moe_normalize_expert_weights"], dim=-1, keepdim=True)
    top_weights = top_weights / top_weights_scale
    w1 = w["experts.mlp.w1"].view(E, ff, d)
    v1 = w["experts.mlp.v1"].view(E, ff, d)
    w2 = w["experts.mlp.w2"].view(E, ff, d)

    def expert(e, h):
        gate_proj = h.matmul(w1[e].t())
        up_proj = h.matmul(v1[e].t())
        return (act(gate_proj) * up_proj).matmul(w2[e])

    y = _sparse_moe_loop(x, top_experts, top_weights, E, expert)
    _set(aux, "logits", router_logits)
    return y, top_experts, top_weights


def granitemoe(w, cfg, x, aux=None):
    """HF granitemoe GraniteMoeTopKGating + GraniteMoeMoE: logits.float(), top-k of the logits,
    softmax over the k; input_linear [E][2ff][d] chunked into halves, act(first) * second,
    output_linear [E][d][ff]; gates multiply the expert outputs, index_add."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    logits = F.linear(x, w["router.layer.weight"])
    _note_topk(aux, "top-k of logits", logits, k)
    top_k_logits, top_k_indices = logits.topk(k, dim=1)
    top_k_gates = torch.softmax(top_k_logits, dim=1)
    zeros = torch.zeros([top_k_gates.size(0), E], dtype=top_k_gates.dtype)
    gates = zeros.scatter(1, top_k_indices, 1)
    expert_size = gates.long().sum(0).tolist()
    top_k_experts = top_k_indices.flatten()
    _, index_sorted_experts = top_k_experts.sort(dim=0, stable=True)  # HF: .sort(0)
    batch_index = index_sorted_experts.div(k, rounding_mode="trunc")
    batch_gates = top_k_gates.flatten()[index_sorted_experts]
    # GraniteMoeMoE.forward with GraniteMoeParallelExperts (split by expert_size, F.linear each)
    expert_inputs = x[batch_index]
    inputs = expert_inputs.split(expert_size, dim=0)
    hidden_states = torch.cat([F.linear(inputs[i], w["input_linear.weight"][i]) for i in range(E)], dim=0)
    chunked_hidden_states = hidden_states.chunk(2, dim=-1)
    hidden_states = act(chunked_hidden_states[0]) * chunked_hidden_states[1]
    hs = hidden_states.split(expert_size, dim=0)
    expert_outputs = torch.cat([F.linear(hs[i], w["output_linear.weight"][i]) for i in range(E)], dim=0)
    expert_outputs = expert_outputs * batch_gates[:, None]
    y = torch.zeros_like(x).index_add(0, batch_index, expert_outputs)
    _set(aux, "logits", logits)
    return y, top_k_indices, top_k_gates


def _granite_shared_mlp(w, act, x):
    """HF granitemoeshared GraniteMoeSharedMLP (also granitemoehybrid, granitemoe_swa), in the
    decoder layer: input_linear [2S][d] chunked into halves, act(first) * second,
    output_linear [d][S]."""
    h = F.linear(x, w["../shared_mlp.input_linear.weight"])
    a, b = h.chunk(2, dim=-1)
    return F.linear(act(a) * b, w["../shared_mlp.output_linear.weight"])


def granitemoeshared(w, cfg, x, aux=None):
    """HF granitemoeshared GraniteMoeSharedDecoderLayer: moe_hidden_states + shared_mlp(x) when
    shared_intermediate_size > 0 (the MoE block is GraniteMoe's); also granitemoehybrid, whose
    decoder layer always has the shared MLP."""
    y, experts, weights = granitemoe(w, cfg, x, aux)
    if cfg.get("shared_intermediate_size", 0) > 0:
        y = y + _granite_shared_mlp(w, ACT2FN[cfg.get("hidden_act", "silu")], x)
    return y, experts, weights


def granitemoe_swa(w, cfg, x, aux=None):
    """HF granitemoe_swa GraniteMoeSWATopKRouter + GraniteMoeSWAExperts: F.linear(x, weight).float(),
    top-k of the logits, softmax over the k; experts gate_up_proj [E][2ff][d] chunked into
    halves (gate first), act(gate) * up, down_proj [E][d][ff], times the weight, index_add; plus
    the shared MLP of GraniteMoeShared when shared_intermediate_size > 0 (default 0)."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.weight"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    top_k_logits, top_k_index = router_logits.topk(k, dim=-1)
    top_k_weights = torch.softmax(top_k_logits, dim=-1)

    def expert(e, h):
        gate, up = F.linear(h, w["experts.gate_up_proj"][e]).chunk(2, dim=-1)
        return F.linear(act(gate) * up, w["experts.down_proj"][e])

    y = _sparse_moe_loop(x, top_k_index, top_k_weights, E, expert)
    if cfg.get("shared_intermediate_size", 0) > 0:
        y = y + _granite_shared_mlp(w, act, x)
    _set(aux, "logits", router_logits)
    return y, top_k_index, top_k_weights


def ernie4_5_moe(w, cfg, x, aux=None):
    """HF ernie4_5_moe Ernie4_5_MoeSparseMoeBlock: fp32 router, softmax, top-k of
    moe_statics(p) = p + e_score_correction_bias, weights gathered from p and divided by
    clamp(sum, min=moe_norm_min); plus ungated shared experts."""
    E, k = cfg["moe_num_experts"], cfg["moe_k"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    shared_output = _mlp(w, "shared_experts.", act, x)
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    keys = routing_weights + w["moe_statics.e_score_correction_bias"].squeeze()
    _note_topk(aux, "top-k of p+b", keys, k)
    _, selected_experts = torch.topk(keys, k, dim=-1)
    routing_weights = torch.gather(routing_weights, dim=-1, index=selected_experts)
    routing_weights = routing_weights / torch.clamp(routing_weights.sum(dim=-1, keepdim=True), min=cfg["moe_norm_min"])
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y + shared_output
    if aux is not None:
        aux["logits"] = router_logits
        plain = torch.topk(F.softmax(router_logits, dim=1), k, dim=-1)[1]
        srt = lambda a: torch.sort(a, -1).values
        aux["exercised"] = bool((srt(plain) != srt(selected_experts)).any())
    return y, selected_experts, routing_weights


def grok1(w, cfg, x, aux=None):
    """xai-org/grok-1 model.py MoELayer/Router in float64: router on the fp32 input (weights
    stored JAX-style [in][out]), softmax, top-k with no renormalisation, experts
    linear_1(gelu(x linear) * (x linear_v)) with jax.nn.gelu's default tanh approximation,
    all expert matrices stored [E][in][out]."""
    E, k = cfg["num_experts"], cfg["num_selected_experts"]
    routing_logits = x @ w["router.w"]
    routing_probs = torch.softmax(routing_logits, dim=-1)
    _note_topk(aux, "top-k of p", routing_probs, k)
    expert_gate, expert_index = torch.topk(routing_probs, k, dim=-1)

    def expert(e, h):
        return (_gelu_tanh(h @ w["moe.linear.w"][e]) * (h @ w["moe.linear_v.w"][e])) @ w["moe.linear_1.w"][e]

    y = _sparse_moe_loop(x, expert_index, expert_gate, E, expert)
    _set(aux, "logits", routing_logits)
    return y, expert_index, expert_gate


def glm4_moe(w, cfg, x, aux=None):
    """HF glm4_moe Glm4MoeTopkRouter + Glm4MoeMoE: the DeepSeek-V3 code, copied (GLM-4.5 ships
    n_group = topk_group = 1, so the group step keeps every expert)."""
    return deepseek_v3(w, cfg, x, aux)


def kimi_k2(w, cfg, x, aux=None):
    """Kimi-K2 checkpoints run HF deepseek_v3 (model_type deepseek_v3, n_group = topk_group = 1,
    routed_scaling_factor 2.827)."""
    return deepseek_v3(w, cfg, x, aux)


# ---- families that reuse a block above (transformers imports it, or copies it unchanged) -------

def minimax(w, cfg, x, aux=None):
    """HF minimax MiniMaxSparseMoeBlock(MixtralSparseMoeBlock): the Mixtral block."""
    return mixtral(w, cfg, x, aux)


def flex_olmo(w, cfg, x, aux=None):
    """HF flex_olmo FlexOlmoSparseMoeBlock(OlmoeSparseMoeBlock): the OLMoE block."""
    return olmoe(w, cfg, x, aux)


def mellum(w, cfg, x, aux=None):
    """HF mellum MellumSparseMoeBlock(Qwen3MoeSparseMoeBlock): the Qwen3-MoE block."""
    return qwen3_moe(w, cfg, x, aux)


def qwen3_next(w, cfg, x, aux=None):
    """HF qwen3_next Qwen3NextSparseMoeBlock(Qwen2MoeSparseMoeBlock): the Qwen2-MoE block, with its
    sigmoid-gated shared expert."""
    return qwen2_moe(w, cfg, x, aux)


def qwen3_5_moe(w, cfg, x, aux=None):
    """HF qwen3_5_moe Qwen3_5MoeSparseMoeBlock: Qwen3Next's block with Qwen3VLMoeTextTopKRouter,
    which renormalises always (the config has no norm_topk_prob)."""
    return qwen2_moe(w, dict(cfg, norm_topk_prob=True), x, aux)


def qwen3_vl_moe(w, cfg, x, aux=None):
    """HF qwen3_vl_moe Qwen3VLMoeTextTopKRouter + Qwen3VLMoeTextExperts(Qwen3MoeExperts): softmax
    (fp32), top-k, always /sum; experts fused as the Hub stores them, gate_up_proj [E][d][2ff] and
    down_proj [E][ff][d] (transformers transposes them on load to [E][2ff][d] / [E][d][ff]; the
    products are the same), gate and up the two halves."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    router_probs = F.softmax(router_logits, dtype=torch.float64, dim=-1)
    _note_topk(aux, "top-k of p", router_probs, k)
    router_top_value, router_indices = torch.topk(router_probs, k, dim=-1)
    router_top_value /= router_top_value.sum(dim=-1, keepdim=True)

    def expert(e, h):
        gate, up = (h @ w["experts.gate_up_proj"][e]).chunk(2, dim=-1)
        return (act(gate) * up) @ w["experts.down_proj"][e]

    y = _sparse_moe_loop(x, router_indices, router_top_value, E, expert)
    _set(aux, "logits", router_logits)
    return y, router_indices, router_top_value


def qwen3_omni_moe_thinker(w, cfg, x, aux=None):
    """HF qwen3_omni_moe Qwen3OmniMoeThinkerTextSparseMoeBlock(Qwen3MoeSparseMoeBlock)."""
    return qwen3_moe(w, cfg, x, aux)


def qwen3_omni_moe_talker(w, cfg, x, aux=None):
    """HF qwen3_omni_moe Qwen3OmniMoeTalkerTextSparseMoeBlock(Qwen2MoeSparseMoeBlock)."""
    return qwen2_moe(w, cfg, x, aux)


def deepseek_ocr2(w, cfg, x, aux=None):
    """HF deepseek_ocr2 DeepseekOcr2TextMoe(DeepseekV2Moe)."""
    return deepseek_v2(w, cfg, x, aux)


def _v3_alias(name):
    def f(w, cfg, x, aux=None):
        return deepseek_v3(w, cfg, x, aux)
    f.__name__ = name
    f.__doc__ = "HF %s: DeepseekV3MoE and DeepseekV3TopkRouter (imported, or copied as Glm4MoeMoE)." % name
    return f


dots1 = _v3_alias("dots1")
deepseek_v32 = _v3_alias("deepseek_v32")
glm4_moe_lite = _v3_alias("glm4_moe_lite")
glm4v_moe = _v3_alias("glm4v_moe")
glm_moe_dsa = _v3_alias("glm_moe_dsa")
solar_open = _v3_alias("solar_open")
kimi_k25 = _v3_alias("kimi_k25")
mimo_v2_flash = _v3_alias("mimo_v2_flash")  # no shared experts (MiMoV2FlashMoE deletes them)
exaone_moe = _v3_alias("exaone_moe")        # num_experts, num_shared_experts


def hunyuan_v1_moe(w, cfg, x, aux=None):
    """HF hunyuan_v1_moe HunYuanMoEV1Gate + HunYuanMoEV1Moe: router gate.wg in fp32, softmax,
    top-moe_topk, /sum (no eps), experts SwiGLU of width intermediate_size, plus the ungated
    shared_mlp of the same width. num_experts and moe_topk may be per-layer lists (_layer)."""
    L = cfg["_layer"]
    E = cfg["num_experts"] if isinstance(cfg["num_experts"], int) else cfg["num_experts"][L]
    k = cfg["moe_topk"] if isinstance(cfg["moe_topk"], int) else cfg["moe_topk"][L]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.wg.weight"])
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64)
    _note_topk(aux, "top-k of p", routing_weights, k)
    routing_weights, selected_experts = torch.topk(routing_weights, k, dim=-1)
    routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y + _mlp(w, "shared_mlp.", act, x)
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


# ---- the sigmoid routers with a selection-only bias, and their blocks ---------------------------

def _bias_matters(aux, p, selected, k):
    """The case must be about the selection bias: it changes some token's experts."""
    if aux is not None:
        srt = lambda a: torch.sort(a, -1).values
        aux["exercised"] = bool((srt(torch.topk(p, k, dim=-1)[1]) != srt(selected)).any())


def _mixtral_expert(w, act):
    def expert(e, h):
        p = "experts.%d." % e
        return F.linear(act(F.linear(h, w[p + "w1.weight"])) * F.linear(h, w[p + "w3.weight"]), w[p + "w2.weight"])
    return expert


def minimax_m2(w, cfg, x, aux=None):
    """HF minimax_m2 MiniMaxM2TopKRouter + MiniMaxM2SparseMoeBlock: sigmoid(logits.float()), key =
    p + e_score_correction_bias (a buffer of the block), top-k, weights the gathered p / sum (no
    eps, no scale); Mixtral experts w2(act(w1 x) * w3 x)."""
    E, k = cfg.get("num_local_experts", cfg.get("num_experts")), cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = torch.sigmoid(router_logits)
    scores_for_choice = routing_weights + w["e_score_correction_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_choice, k)
    _, top_k_index = torch.topk(scores_for_choice, k, dim=-1, sorted=True)  # HF sorted=False
    top_k_weights = routing_weights.gather(1, top_k_index)
    top_k_weights /= top_k_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, top_k_index, top_k_weights, E, _mixtral_expert(w, act))
    _bias_matters(aux, routing_weights, top_k_index, k)
    _set(aux, "logits", router_logits)
    return y, top_k_index, top_k_weights


def _swiglu_oai(gate, up, alpha, limit):
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    glu = gate * torch.sigmoid(gate * alpha)
    return (up + 1.0) * glu


def minimax_m3_vl(w, cfg, x, aux=None):
    """HF minimax_m3_vl MiniMaxM3VLTopKRouter + MiniMaxM3VLSparseMoeBlock(LagunaSparseMoeBlock):
    the MiniMax-M2 router (e_score_correction_bias: the checkpoint's block_sparse_moe.
    e_score_correction_bias, a buffer of the router in transformers), routed output x
    routed_scaling_factor after mixing, plus the shared MiniMaxM3VLDenseMLP. Experts
    (MiniMaxM3VLExperts._apply_gate) and the shared MLP: gate_up chunked into halves (the Hub's
    w1 / w3 and gate_proj / up_proj, concatenated on load), gate.clamp(max=L), up.clamp(+-L),
    (up + 1) gate sigmoid(alpha gate)."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    alpha, limit, rsf = cfg["swiglu_alpha"], cfg["swiglu_limit"], cfg["routed_scaling_factor"]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = torch.sigmoid(router_logits)
    scores_for_choice = routing_weights + w["e_score_correction_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_choice, k)
    _, top_k_index = torch.topk(scores_for_choice, k, dim=-1, sorted=True)
    top_k_weights = routing_weights.gather(1, top_k_index)
    top_k_weights /= top_k_weights.sum(dim=-1, keepdim=True)
    clamped = [0, 0]

    def expert(e, h):
        p = "experts.%d." % e
        gate_up = F.linear(h, torch.cat([w[p + "w1.weight"], w[p + "w3.weight"]], dim=0))
        gate, up = gate_up.chunk(2, dim=-1)
        clamped[0] += int((gate > limit).sum())
        clamped[1] += int((up.abs() > limit).sum())
        return F.linear(_swiglu_oai(gate, up, alpha, limit), w[p + "w2.weight"])

    routed = _sparse_moe_loop(x, top_k_index, top_k_weights, E, expert)
    sh = "shared_experts."
    gate_up = F.linear(x, torch.cat([w[sh + "gate_proj.weight"], w[sh + "up_proj.weight"]], dim=0))
    gate, up = gate_up.chunk(2, dim=-1)
    shared = F.linear(_swiglu_oai(gate, up, alpha, limit), w[sh + "down_proj.weight"])
    y = routed * rsf + shared
    _bias_matters(aux, routing_weights, top_k_index, k)
    if aux is not None:
        aux["exercised"] = aux["exercised"] and clamped[0] > 0 and clamped[1] > 0
        aux["logits"] = router_logits
    return y, top_k_index, top_k_weights


def hy_v3(w, cfg, x, aux=None):
    """HF hy_v3 HYV3TopKRouter + HYV3MoE: router linear in fp32 (the Hub's mlp.router.gate),
    sigmoid, key = p + the block's expert bias (Hub mlp.expert_bias, e_score_correction_bias in
    transformers), top-k, gathered p / (sum + 1e-20) x router_scaling_factor; plus the shared
    experts (Hub mlp.shared_mlp), num_shared_experts x moe_intermediate_size, added in fp32."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.gate.weight"])
    scores = torch.sigmoid(router_logits)
    scores_for_choice = scores + w["expert_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_choice, k)
    topk_indices = torch.topk(scores_for_choice, k, dim=-1, sorted=True)[1]  # HF sorted=False
    topk_weights = scores.gather(1, topk_indices)
    topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
    topk_weights = topk_weights * cfg["router_scaling_factor"]
    y = _sparse_moe_loop(x, topk_indices, topk_weights, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y + _mlp(w, "shared_mlp.", act, x)
    _bias_matters(aux, scores, topk_indices, k)
    _set(aux, "logits", router_logits)
    return y, topk_indices, topk_weights


def afmoe(w, cfg, x, aux=None):
    """HF afmoe AfmoeTokenChoiceRouter + AfmoeSparseMoeBlock: router.gate linear, logits.float(),
    sigmoid, top-k of p + expert_bias (a parameter of the block), gathered p / (sum + 1e-20) x
    route_scale; plus the shared experts, num_shared_experts x moe_intermediate_size."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.gate.weight"])
    scores = torch.sigmoid(router_logits)
    _note_topk(aux, "top-k of p+b", scores + w["expert_bias"], k)
    _, selected_experts = torch.topk(scores + w["expert_bias"], k=k, dim=1)
    top_scores = scores.gather(dim=1, index=selected_experts)
    top_scores = top_scores / (top_scores.sum(dim=-1, keepdim=True) + 1e-20)
    top_scores = top_scores * cfg["route_scale"]
    y = _sparse_moe_loop(x, selected_experts, top_scores, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y + _mlp(w, "shared_experts.", act, x)
    _bias_matters(aux, scores, selected_experts, k)
    _set(aux, "logits", router_logits)
    return y, selected_experts, top_scores


def laguna(w, cfg, x, aux=None):
    """HF laguna LagunaTopKRouter + LagunaSparseMoeBlock: logits .float(), tanh soft-cap
    c tanh(h / c) when moe_router_logit_softcapping c > 0, sigmoid, key = p +
    e_score_correction_bias (the Hub's mlp.experts.e_score_correction_bias, renamed to the
    router's on load), top-k, gathered p / sum; routed output x moe_routed_scaling_factor, plus
    the shared expert (Hub mlp.shared_expert) of width shared_expert_intermediate_size."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    c = cfg.get("moe_router_logit_softcapping", 0.0)
    shared_output = _mlp(w, "shared_expert.", act, x)
    router_logits = F.linear(x, w["gate.weight"])
    if c > 0.0:
        router_logits = torch.tanh(router_logits / c) * c
    routing_scores = torch.sigmoid(router_logits)
    scores_for_selection = routing_scores + w["experts.e_score_correction_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_selection, k)
    _, selected_experts = torch.topk(scores_for_selection, k, dim=-1)
    routing_weights = routing_scores.gather(-1, selected_experts)
    routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    y = y * cfg["moe_routed_scaling_factor"]
    y = y + shared_output
    _bias_matters(aux, routing_scores, selected_experts, k)
    _set(aux, "logits", router_logits)  # the capped logits, as moe.h reports them
    return y, selected_experts, routing_weights


def step3p7(w, cfg, x, aux=None):
    """HF step3p7 Step3p7TopKRouter (the MiniMax-M3 router) + Step3p7SparseMoeBlock (Laguna's):
    sigmoid, key = p + the router bias (Hub moe.router_bias), top-k, gathered p / sum, routed
    output x moe_router_scaling_factor, plus the shared expert (Hub share_expert) of width
    share_expert_dim (the VLM step3p7 nests this text config, model_type step3p5). Experts (Step3p7Experts, fused gate_up = the Hub's moe.gate_proj /
    moe.up_proj stacks [E][ff][d] concatenated): act(gate).clamp(max=L) * up.clamp(+-L),
    L = swiglu_limits[layer]; the shared Step3p7MLP the same with swiglu_limits_shared[layer]
    (0 or None: no clamp). _layer is the layer index."""
    # attribute_map: moe_num_experts -> n_routed_experts, moe_top_k -> num_experts_per_tok
    E = cfg.get("n_routed_experts", cfg.get("moe_num_experts"))
    k, L = cfg.get("num_experts_per_tok", cfg.get("moe_top_k")), cfg["_layer"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    lim = (cfg.get("swiglu_limits") or [None] * (L + 1))[L] or float("inf")
    lim_sh = (cfg.get("swiglu_limits_shared") or [None] * (L + 1))[L] or float("inf")
    router_logits = F.linear(x, w["moe.gate.weight"])
    routing_weights = torch.sigmoid(router_logits)
    scores_for_choice = routing_weights + w["moe.router_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_choice, k)
    _, top_k_index = torch.topk(scores_for_choice, k, dim=-1, sorted=True)
    top_k_weights = routing_weights.gather(1, top_k_index)
    top_k_weights /= top_k_weights.sum(dim=-1, keepdim=True)
    clamped = {}  # limit -> [gates clamped, ups clamped]

    def apply_gate(gate, up, limit):
        n = clamped.setdefault(limit, [0, 0])
        n[0] += int((act(gate) > limit).sum())
        n[1] += int((up.abs() > limit).sum())
        return act(gate).clamp(max=limit) * up.clamp(min=-limit, max=limit)

    gate_up_proj = torch.cat([w["moe.gate_proj.weight"], w["moe.up_proj.weight"]], dim=1)

    def expert(e, h):
        gate, up = F.linear(h, gate_up_proj[e]).chunk(2, dim=-1)
        return F.linear(apply_gate(gate, up, lim), w["moe.down_proj.weight"][e])

    routed = _sparse_moe_loop(x, top_k_index, top_k_weights, E, expert)
    sh = "share_expert."
    shared = F.linear(apply_gate(F.linear(x, w[sh + "gate_proj.weight"]), F.linear(x, w[sh + "up_proj.weight"]), lim_sh),
                      w[sh + "down_proj.weight"])
    y = routed * cfg["moe_router_scaling_factor"] + shared
    _bias_matters(aux, routing_weights, top_k_index, k)
    if aux is not None:  # every finite limit must bite on both the gate and the up side
        aux["exercised"] = aux["exercised"] and all(min(n) > 0 for l, n in clamped.items() if l != float("inf"))
        aux["logits"] = router_logits
    return y, top_k_index, top_k_weights


def lfm2_moe(w, cfg, x, aux=None):
    """HF lfm2_moe Lfm2MoeSparseMoeBlock: gate linear, sigmoid; with use_expert_bias the top-k of
    p + expert_bias and the gathered p, else the top-k of p; / (sum + 1e-6) iff norm_topk_prob;
    x routed_scaling_factor; experts w2(silu(w1 x) * w3 x)."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    router_logits = F.linear(x, w["gate.weight"])
    routing_weights = router_logits.sigmoid()
    if cfg["use_expert_bias"]:
        scores_for_routing = routing_weights + w["expert_bias"]
        _note_topk(aux, "top-k of p+b", scores_for_routing, k)
        _, selected_experts = torch.topk(scores_for_routing, k=k, dim=-1)
        _bias_matters(aux, routing_weights, selected_experts, k)
        routing_weights = torch.gather(routing_weights, dim=1, index=selected_experts)
    else:
        _note_topk(aux, "top-k of p", routing_weights, k)
        routing_weights, selected_experts = torch.topk(routing_weights, k=k, dim=-1)
    if cfg["norm_topk_prob"]:
        routing_weights = routing_weights / (routing_weights.sum(dim=-1, keepdim=True) + 1e-6)
    if cfg["routed_scaling_factor"]:
        routing_weights = routing_weights * cfg["routed_scaling_factor"]
    y = _sparse_moe_loop(x, selected_experts, routing_weights, E, _mixtral_expert(w, F.silu))
    _set(aux, "logits", router_logits)
    return y, selected_experts, routing_weights


def mistral4(w, cfg, x, aux=None):
    """HF mistral4 Mistral4TopkRouter + Mistral4MoE(DeepseekV3MoE).route_tokens_to_experts:
    softmax(logits), group score = sum of the top-2 p, topk_group groups kept, the others'
    keys masked_fill 0.0, top-k, gathered p / (sum + 1e-20) iff norm_topk_prob, x
    routed_scaling_factor; experts DeepseekV3Experts, fused as the Hub stores them
    (experts.gate_up_proj [E][2ff][d] in halves, experts.down_proj [E][d][ff]); plus ungated
    shared experts."""
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    G, kg = cfg["n_group"], cfg["topk_group"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    scores = router_logits.softmax(-1)
    group_scores = scores.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)
    _note_group(aux, "group top-2-sum rank", group_scores, kg)
    group_idx = torch.topk(group_scores, k=kg, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    scores_for_choice = scores.masked_fill(~score_mask.bool(), 0.0)
    _note_topk(aux, "top-k of masked p", scores_for_choice, k)
    topk_indices = torch.topk(scores_for_choice, k=k, dim=-1, sorted=True)[1]  # HF sorted=False
    topk_weights = scores.gather(1, topk_indices)
    if cfg["norm_topk_prob"]:
        topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
    topk_weights = topk_weights * cfg["routed_scaling_factor"]

    def expert(e, h):
        gate, up = F.linear(h, w["experts.gate_up_proj"][e]).chunk(2, dim=-1)
        return F.linear(act(gate) * up, w["experts.down_proj"][e])

    y = _sparse_moe_loop(x, topk_indices, topk_weights, E, expert)
    y = y + _mlp(w, "shared_experts.", act, x)
    if aux is not None:
        aux["logits"] = router_logits
        srt = lambda a: torch.sort(a, -1).values
        aux["exercised"] = bool((srt(torch.topk(scores, k, dim=-1)[1]) != srt(topk_indices)).any())
    return y, topk_indices, topk_weights


def axk2(w, cfg, x, aux=None):
    """HF axk2 AXK2TopkRouter + AXK2MoE: DeepSeek-V3's router (fp32 sigmoid, key p +
    e_score_correction_bias, group score = sum of the top-2 keys) with the dropped groups'
    keys masked_fill 0.0 ("intentionally") and the group step only when n_group is set; top-k,
    gathered p / (sum + 1e-20) iff norm_topk_prob, x routed_scaling_factor; shared experts as
    V3. (The golden draws keep every kept key > 0, where 0.0 and -inf fills agree; the 0.0 fill
    itself is checked by tests/test_gating.c.)"""
    return deepseek_v3(w, cfg, x, aux)


def cohere2_moe(w, cfg, x, aux=None):
    """HF cohere2_moe Cohere2MoeTopKRouter + Cohere2MoeSparseMoeBlock: top-k of the logits; then
    softmax over the k (expert_selection_fn "softmax", fp32) or their sigmoid, / sum iff
    norm_topk_prob ("sigmoid"); MixtralExperts of width intermediate_size (Hub per-expert
    gate_proj / up_proj / down_proj); the shared experts (num_shared_experts x
    intermediate_size) added ("sum") or averaged with the routed output ("average")."""
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["gate.weight"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    router_scores, selected_experts = torch.topk(router_logits, k, dim=-1)
    if cfg["expert_selection_fn"] == "softmax":
        router_scores = F.softmax(router_scores, dim=1, dtype=torch.float64)
    else:
        router_scores = torch.sigmoid(router_scores)
        if cfg["norm_topk_prob"]:
            router_scores = router_scores / torch.sum(router_scores, dim=-1, keepdim=True)
    y = _sparse_moe_loop(x, selected_experts, router_scores, E, lambda e, h: _mlp(w, "experts.%d." % e, act, h))
    if cfg.get("num_shared_experts", 0) > 0:
        shared_expert_output = _mlp(w, "shared_experts.", act, x)
        if cfg["shared_expert_combination_strategy"] == "sum":
            y = y + shared_expert_output
        else:
            y = (y + shared_expert_output) / 2
    _set(aux, "logits", router_logits)
    return y, selected_experts, router_scores


def aria(w, cfg, x, aux=None):
    """HF aria AriaTextMoELayer + AriaExperts: router nn.Linear, top-k of the logits, softmax over
    the k; tokens sorted by expert (argsort of the flattened choices), grouped GEMM with fc1
    [E][d][2ff], chunked into halves, silu(first) * second, fc2 [E][ff][d], unpermuted and summed
    with the weights; plus the shared experts (intermediate_size x moe_num_shared_experts)."""
    E, k = cfg["moe_num_experts"], cfg["moe_topk"]
    router_logits = F.linear(x, w["router.weight"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    top_logits, top_indices = torch.topk(router_logits, k=k, dim=1)
    scores = F.softmax(top_logits, dim=-1)
    tokens_per_expert = torch.bincount(top_indices.flatten(), minlength=E)
    flatten_indices = top_indices.view(-1)
    sorted_indices = torch.sort(flatten_indices, stable=True)[1]  # HF torch.argsort
    permuted_tokens = x.index_select(0, sorted_indices // k)

    def gemm(tokens, weight):  # sequential_experts_gemm
        out = torch.zeros(tokens.shape[0], weight.shape[-1], dtype=tokens.dtype)
        cum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(tokens_per_expert, 0)])
        for e in range(weight.shape[0]):
            out[cum[e]:cum[e + 1]] = tokens[cum[e]:cum[e + 1]] @ weight[e]
        return out

    fc1_output = gemm(permuted_tokens, w["experts.fc1.weight"])
    projection, gate = torch.chunk(fc1_output, 2, dim=-1)
    expert_output = gemm(F.silu(projection) * gate, w["experts.fc2.weight"])
    unpermuted = torch.zeros(x.shape[0] * k, expert_output.shape[1], dtype=expert_output.dtype)
    unpermuted.index_copy_(0, sorted_indices, expert_output)
    y = (unpermuted.view(-1, k, expert_output.shape[1]) * scores.unsqueeze(-1)).sum(dim=1)
    y = y + _mlp(w, "shared_experts.", F.silu, x)
    _set(aux, "logits", router_logits)
    return y, top_indices, scores


def openai_privacy_filter(w, cfg, x, aux=None):
    """HF openai_privacy_filter OpenAIPrivacyFilterTopKRouter + ...Experts + ...MLP, all in fp32:
    router linear with bias, top-k of the logits, softmax over the k, / top_k; experts
    x @ gate_up_proj[e] + bias chunked into halves (gate first), gate.clamp(max=limit),
    up.clamp(+-limit), (up + 1) gate sigmoid(1.702 gate), @ down_proj[e] + bias, times the
    score; the block's output x num_experts_per_tok. Reported weights: score x top_k, the
    factor each expert output ends up multiplied by."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    alpha, limit = 1.702, cfg["swiglu_limit"]
    router_logits = F.linear(x, w["router.weight"], w["router.bias"])
    _note_topk(aux, "top-k of logits", router_logits, k)
    router_top_value, router_indices = torch.topk(router_logits, k, dim=-1)
    router_scores = F.softmax(router_top_value, dim=1, dtype=router_top_value.dtype)
    router_scores = router_scores / k
    next_states = torch.zeros_like(x)
    expert_mask = F.one_hot(router_indices, num_classes=E).permute(2, 1, 0)
    clamped = [0, 0]
    for expert_idx in range(E):
        top_k_pos, token_idx = torch.where(expert_mask[expert_idx])
        if token_idx.numel() == 0:
            continue
        gate_up = x[token_idx] @ w["experts.gate_up_proj"][expert_idx] + w["experts.gate_up_proj_bias"][expert_idx]
        gate, up = gate_up.chunk(2, dim=-1)
        clamped[0] += int((gate > limit).sum())
        clamped[1] += int((up.abs() > limit).sum())
        out = _swiglu_oai(gate, up, alpha, limit) @ w["experts.down_proj"][expert_idx] + w["experts.down_proj_bias"][expert_idx]
        next_states.index_add_(0, token_idx, out * router_scores[token_idx, top_k_pos, None])
    y = next_states * k
    if aux is not None:
        aux["logits"] = router_logits
        aux["exercised"] = clamped[0] > 0 and clamped[1] > 0
    return y, router_indices, router_scores * k


def deepseek_v4(w, cfg, x, aux=None):
    """HF deepseek_v4 DeepseekV4TopKRouter + DeepseekV4Experts + DeepseekV4SparseMoeBlock (a
    top-k layer; the hash_moe layers are not rendered): fp32 router linear, p =
    ACT2FN[scoring_func](h) (sqrtsoftplus: sqrt(softplus(h))), top-k of p +
    e_score_correction_bias (the Hub's ffn.gate.bias), gathered p / (sum + 1e-20) x
    routed_scaling_factor; experts gate_up (the Hub's w1 / w3) in halves, gate.clamp(max=L),
    up.clamp(+-L), silu(gate) * up, w2; plus the unclamped shared SwiGLU (Hub
    ffn.shared_experts.w1/w3/w2, width moe_intermediate_size)."""
    E, k, limit = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["swiglu_limit"]
    score_fn = {"sqrtsoftplus": lambda h: torch.sqrt(F.softplus(h)), "sigmoid": torch.sigmoid,
                "softmax": lambda h: h.softmax(-1)}[cfg.get("scoring_func", "sqrtsoftplus")]
    logits = F.linear(x, w["gate.weight"])
    scores = score_fn(logits)
    _note_topk(aux, "top-k of p+b", scores + w["gate.bias"], k)
    indices = torch.topk(scores + w["gate.bias"], k, dim=-1, sorted=True).indices  # HF sorted=False
    weights = scores.gather(1, indices)
    weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    weights = weights * cfg["routed_scaling_factor"]
    clamped = [0, 0]

    def expert(e, h):
        p = "experts.%d." % e
        gate, up = F.linear(h, torch.cat([w[p + "w1.weight"], w[p + "w3.weight"]], dim=0)).chunk(2, dim=-1)
        clamped[0] += int((gate > limit).sum())
        clamped[1] += int((up.abs() > limit).sum())
        return F.linear(F.silu(gate.clamp(max=limit)) * up.clamp(min=-limit, max=limit), w[p + "w2.weight"])

    routed = _sparse_moe_loop(x, indices, weights, E, expert)
    sh = "shared_experts."
    shared = F.linear(F.silu(F.linear(x, w[sh + "w1.weight"])) * F.linear(x, w[sh + "w3.weight"]), w[sh + "w2.weight"])
    y = routed + shared
    _bias_matters(aux, scores, indices, k)
    if aux is not None:
        aux["exercised"] = aux["exercised"] and clamped[0] > 0 and clamped[1] > 0
        aux["logits"] = logits
    return y, indices, weights


# ---- blocks with a new part: zero-computation experts, an output bias, an output norm -----------

def longcat_flash(w, cfg, x, aux=None):
    """HF longcat_flash LongcatFlashTopkRouter + LongcatFlashExperts + LongcatFlashMoE: classifier
    in fp32 over n_routed_experts + zero_expert_num choices (the forward uses only its weight),
    softmax, top-moe_topk of p + e_score_correction_bias, gathered p x routed_scaling_factor (no
    renormalisation); a choice >= n_routed_experts is a zero-computation expert, the identity."""
    E, Z, k = cfg["n_routed_experts"], cfg["zero_expert_num"], cfg["moe_topk"]
    act = ACT2FN[cfg.get("hidden_act", "silu")]
    router_logits = F.linear(x, w["router.classifier.weight"])
    scores = router_logits.softmax(dim=-1)
    scores_for_choice = scores + w["router.e_score_correction_bias"]
    _note_topk(aux, "top-k of p+b", scores_for_choice, k)
    topk_indices = torch.topk(scores_for_choice, k=k, dim=-1, sorted=True)[1]  # HF sorted=False
    topk_weights = scores.gather(1, topk_indices)
    topk_weights = topk_weights * cfg["routed_scaling_factor"]

    def expert(e, h):
        if e >= E:  # zero-computation expert
            return h
        return _mlp(w, "experts.%d." % e, act, h)

    y = _sparse_moe_loop(x, topk_indices, topk_weights, E + Z, expert)
    if aux is not None:
        aux["logits"] = router_logits
        zero = int((topk_indices >= E).sum())
        aux["exercised"] = 0 < zero < topk_indices.numel()  # both kinds of expert are chosen
    return y, topk_indices, topk_weights


def jetmoe(w, cfg, x, aux=None):
    """HF jetmoe JetMoeTopKGating + JetMoeMoE: router.layer logits .float(), top-k, softmax over
    the k; tokens grouped by expert (sort of the flattened choices), input_linear [E][2ff][d]
    chunked into halves, act(first) * second, output_linear [E][d][ff], times the gates,
    index_add; plus the block's bias [d]."""
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    act = ACT2FN[cfg.get("activation_function", "silu")]
    logits = F.linear(x, w["router.layer.weight"])
    _note_topk(aux, "top-k of logits", logits, k)
    top_k_logits, top_k_indices = logits.topk(k, dim=1)
    top_k_gates = torch.softmax(top_k_logits, dim=1)
    zeros = torch.zeros([top_k_gates.size(0), E], dtype=top_k_gates.dtype)
    gates = zeros.scatter(1, top_k_indices, 1)
    expert_size = gates.long().sum(0).tolist()
    _, index_sorted_experts = top_k_indices.flatten().sort(dim=0, stable=True)  # HF: .sort(0)
    batch_index = index_sorted_experts.div(k, rounding_mode="trunc")
    batch_gates = top_k_gates.flatten()[index_sorted_experts]
    inputs = x[batch_index].split(expert_size, dim=0)  # JetMoeParallelExperts
    hidden_states = torch.cat([F.linear(inputs[i], w["input_linear.weight"][i]) for i in range(E)], dim=0)
    chunked_hidden_states = hidden_states.chunk(2, dim=-1)
    hidden_states = act(chunked_hidden_states[0]) * chunked_hidden_states[1]
    hs = hidden_states.split(expert_size, dim=0)
    expert_outputs = torch.cat([F.linear(hs[i], w["output_linear.weight"][i]) for i in range(E)], dim=0)
    expert_outputs = expert_outputs * batch_gates[:, None]
    layer_output = torch.zeros_like(x).index_add(0, batch_index, expert_outputs)
    layer_output = layer_output + w["bias"]
    _set(aux, "logits", logits)
    return layer_output, top_k_indices, top_k_gates


def axk1(w, cfg, x, aux=None):
    """HF axk1 AXK1MoE: DeepseekV3MoE's routed + shared output, then post_mlp_layernorm, an
    RMSNorm (weight * h * rsqrt(mean(h^2) + rms_norm_eps), in fp32) - the decoder layer's
    module on the Hub, moved into the block by transformers' conversion mapping."""
    y, topk_indices, topk_weights = deepseek_v3(w, cfg, x, aux)
    variance = y.pow(2).mean(-1, keepdim=True)
    y = w["../post_mlp_layernorm.weight"] * (y * torch.rsqrt(variance + cfg["rms_norm_eps"]))
    return y, topk_indices, topk_weights


def _relu2(z):
    # HF ReLUSquaredActivation ("relu2")
    return torch.square(F.relu(z))


ACT2FN["relu2"] = _relu2


def nemotron_h(w, cfg, x, aux=None):
    """HF nemotron_h NemotronHTopkRouter + NemotronHMoE(DeepseekV3MoE) + NemotronHExperts: the
    DeepSeek-V3 router (fp32 sigmoid, key p + e_score_correction_bias, groups by the top-2 sum,
    top-k, gathered p / (sum + 1e-20) iff norm_topk_prob, x routed_scaling_factor); x through
    fc1_latent_proj when moe_latent_size is set; ungated experts down_proj(act(up_proj h)) with
    mlp_hidden_act; the mixed output through fc2_latent_proj; plus the ungated shared expert
    (NemotronHMLP) on x."""
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    G, kg = cfg.get("n_group", 1), cfg.get("topk_group", 1)
    act = ACT2FN[cfg.get("mlp_hidden_act", "relu2")]
    router_logits = F.linear(x, w["gate.weight"])
    scores = router_logits.sigmoid()
    scores_for_choice = scores + w["gate.e_score_correction_bias"]
    group_scores = scores_for_choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)
    _note_group(aux, "group top-2-sum rank", group_scores, kg)
    group_idx = torch.topk(group_scores, k=kg, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    masked = scores_for_choice.masked_fill(~score_mask.bool(), 0.0)
    _note_topk(aux, "top-k of masked p+b", masked, k)
    topk_indices = torch.topk(masked, k=k, dim=-1, sorted=True)[1]
    topk_weights = scores.gather(1, topk_indices)
    if cfg.get("norm_topk_prob", True):
        topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
    topk_weights = topk_weights * cfg.get("routed_scaling_factor", 1.0)
    h = F.linear(x, w["fc1_latent_proj.weight"]) if cfg.get("moe_latent_size") else x

    def expert(e, hs):
        p = "experts.%d." % e
        return F.linear(act(F.linear(hs, w[p + "up_proj.weight"])), w[p + "down_proj.weight"])

    h = _sparse_moe_loop(h, topk_indices, topk_weights, E, expert)
    if cfg.get("moe_latent_size"):
        h = F.linear(h, w["fc2_latent_proj.weight"])
    sh = "shared_experts."
    y = h + F.linear(act(F.linear(x, w[sh + "up_proj.weight"])), w[sh + "down_proj.weight"])
    _bias_matters(aux, scores, topk_indices, k)
    if aux is not None:
        aux["logits"] = router_logits
        aux["min_key"] = float(scores_for_choice.min())
    return y, topk_indices, topk_weights


def gemma4(w, cfg, x, aux=None):
    """HF gemma4 Gemma4TextRouter + Gemma4TextExperts(MixtralExperts), the MoE branch of
    Gemma4TextDecoderLayer: the router reads the residual x - Gemma4RMSNorm without weight
    (x * (mean x^2 + eps)^-0.5, fp32), times scale, times hidden_size^-0.5, proj, softmax,
    top-top_k_experts, /sum, times per_expert_scale[e] -; the experts read
    pre_feedforward_layernorm_2(x) (gate_up in halves, act(gate) * up, down_proj); the branch's
    output is post_feedforward_layernorm_2 of theirs (Gemma4RMSNorm: normed * weight)."""
    E, k, d, eps = cfg["num_experts"], cfg["top_k_experts"], x.shape[1], cfg["rms_norm_eps"]
    act = ACT2FN[cfg.get("hidden_activation", "gelu_pytorch_tanh")]

    def rms_norm(h, weight=None):
        normed = h * torch.pow(h.pow(2).mean(-1, keepdim=True) + eps, -0.5)
        return normed * weight if weight is not None else normed

    hidden_states = rms_norm(x)
    hidden_states = hidden_states * w["router.scale"] * d ** -0.5
    expert_scores = F.linear(hidden_states, w["router.proj.weight"])
    router_probabilities = F.softmax(expert_scores, dim=-1)
    _note_topk(aux, "top-k of p", router_probabilities, k)
    top_k_weights, top_k_index = torch.topk(router_probabilities, k=k, dim=-1)
    top_k_weights /= top_k_weights.sum(dim=-1, keepdim=True)
    top_k_weights = top_k_weights * w["router.per_expert_scale"][top_k_index]
    h2 = rms_norm(x, w["pre_feedforward_layernorm_2.weight"])

    def expert(e, h):
        gate, up = F.linear(h, w["experts.gate_up_proj"][e]).chunk(2, dim=-1)
        return F.linear(act(gate) * up, w["experts.down_proj"][e])

    h2 = _sparse_moe_loop(h2, top_k_index, top_k_weights, E, expert)
    y = rms_norm(h2, w["post_feedforward_layernorm_2.weight"])
    _set(aux, "logits", expert_scores)
    return y, top_k_index, top_k_weights


# ---- random weights ---------------------------------------------------------------------------

def _round(a, dtype):
    """Round a float64 numpy array to the storage dtype (nearest even); returns (float64 values,
    raw little-endian bytes)."""
    if dtype == F32:
        r = a.astype(np.float32)
        return r.astype(np.float64), r.astype("<f4").tobytes()
    if dtype == F16:
        r = a.astype(np.float16)
        return r.astype(np.float64), r.astype("<f2").tobytes()
    if dtype == BF16:
        f = a.astype(np.float32)  # exact enough: then round the f32 bits to bf16, nearest even
        u = f.view(np.uint32).astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        back = (u.astype(np.uint32) << 16).view(np.float32)
        return back.astype(np.float64), u.astype("<u2").tobytes()
    raise ValueError(dtype)


class Draw:
    """Scaled Gaussian weights so every activation is O(1): a matrix with fan-in n gets
    std gain / sqrt(n)."""

    def __init__(self, seed):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def mat(self, shape, fan_in, gain=1.0):
        return self.rng.standard_normal(shape) * (gain / math.sqrt(fan_in))

    def vec(self, shape, scale):
        return self.rng.standard_normal(shape) * scale

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape)


def _experts_modulelist(dr, w, E, d, ff, names=("gate_proj", "up_proj", "down_proj"), prefix="experts.%d.",
                        gain=1.0):
    g, u, dn = names
    for e in range(E):
        p = prefix % e
        w[p + g + ".weight"] = dr.mat((ff, d), d, gain)
        w[p + u + ".weight"] = dr.mat((ff, d), d, gain)
        w[p + dn + ".weight"] = dr.mat((d, ff), ff)


def _shared(dr, w, prefix, d, width):
    w[prefix + "gate_proj.weight"] = dr.mat((width, d), d)
    w[prefix + "up_proj.weight"] = dr.mat((width, d), d)
    w[prefix + "down_proj.weight"] = dr.mat((d, width), width)


# ---- the cases --------------------------------------------------------------------------------
# Each case: name, family function, HF config, weight dtype (or a per-name function), T, and a
# weight builder taking (Draw, cfg) and returning (w dict of float64 numpy arrays, x [T][d]).

def _x(dr, T, d, scale=1.0):
    return dr.vec((T, d), scale)


def build_softmax_family(router_name="gate.weight", expert_names=("gate_proj", "up_proj", "down_proj"),
                         router_gain=2.0, shared=None):
    def build(dr, c, T):
        d, ff, E = c["hidden_size"], c["_ff"], c["_E"]
        w = {router_name: dr.mat((E, d), d, router_gain)}
        _experts_modulelist(dr, w, E, d, ff, expert_names)
        if shared == "qwen2":
            _shared(dr, w, "shared_expert.", d, c["shared_expert_intermediate_size"])
            w["shared_expert_gate.weight"] = dr.mat((1, d), d, 1.5)
        elif shared == "deepseek":
            _shared(dr, w, "shared_experts.", d, c["_ff"] * c["n_shared_experts"])
        return w, _x(dr, T, d)
    return build


def build_deepseek_v3(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["n_routed_experts"]
    w = {"gate.weight": dr.mat((E, d), d, 1.0),
         # large enough to change the selection of some tokens, small enough to keep p + b > 0
         "gate.e_score_correction_bias": dr.uniform((E,), -0.05, 0.05)}
    _experts_modulelist(dr, w, E, d, ff)
    _shared(dr, w, "shared_experts.", d, ff * c["n_shared_experts"])
    return w, _x(dr, T, d)


def build_v3(E_key="n_routed_experts", ns_key="n_shared_experts", bias="gate.e_score_correction_bias"):
    """DeepSeek-V3-style weights for configs that name the counts differently (ExaoneMoe) or have
    no shared experts (MiMo-V2-Flash: ns_key None), or checkpoints that keep the selection bias
    elsewhere (ExaoneMoe: e_score_correction_bias of the block)."""
    def build(dr, c, T):
        d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c[E_key]
        w = {"gate.weight": dr.mat((E, d), d, 1.0),
             bias: dr.uniform((E,), -0.05, 0.05)}
        _experts_modulelist(dr, w, E, d, ff)
        if ns_key:
            _shared(dr, w, "shared_experts.", d, ff * c[ns_key])
        return w, _x(dr, T, d)
    return build


def build_qwen_vl(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["num_experts"]
    w = {"gate.weight": dr.mat((E, d), d, 2.0),
         "experts.gate_up_proj": dr.mat((E, d, 2 * ff), d),
         "experts.down_proj": dr.mat((E, ff, d), ff)}
    return w, _x(dr, T, d)


def build_hunyuan(dr, c, T):
    L = c["_layer"]
    d, ff = c["hidden_size"], c["intermediate_size"]
    E = c["num_experts"] if isinstance(c["num_experts"], int) else c["num_experts"][L]
    w = {"gate.wg.weight": dr.mat((E, d), d, 2.0)}
    _experts_modulelist(dr, w, E, d, ff)
    _shared(dr, w, "shared_mlp.", d, ff)
    return w, _x(dr, T, d)


def build_ernie(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["moe_num_experts"]
    w = {"gate.weight": dr.mat((E, d), d, 1.5),
         "moe_statics.e_score_correction_bias": dr.uniform((1, E), -0.05, 0.05)}
    _experts_modulelist(dr, w, E, d, ff)
    _shared(dr, w, "shared_experts.", d, ff * c["moe_num_shared_experts"])
    return w, _x(dr, T, d)


def build_gpt_oss(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    w = {"router.weight": dr.mat((E, d), d, 1.5),
         "router.bias": dr.vec((E,), 0.3),
         # gain 4 so that some gate values exceed the limit 7 and some up values leave [-7, 7]
         "experts.gate_up_proj": dr.mat((E, d, 2 * ff), d, 4.0),
         "experts.gate_up_proj_bias": dr.vec((E, 2 * ff), 0.5),
         "experts.down_proj": dr.mat((E, ff, d), ff, 0.1),
         "experts.down_proj_bias": dr.vec((E, d), 0.2)}
    return w, _x(dr, T, d)


def build_llama4(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    w = {"router.weight": dr.mat((E, d), d, 2.0),
         "experts.gate_up_proj": dr.mat((E, d, 2 * ff), d),
         "experts.down_proj": dr.mat((E, ff, d), ff)}
    _shared(dr, w, "shared_expert.", d, ff)
    return w, _x(dr, T, d)


def build_switch(dr, c, T):
    d, ff, E = c["d_model"], c["d_ff"], c["num_experts"]
    w = {"router.classifier.weight": dr.mat((E, d), d, 1.5)}
    for e in range(E):
        w["experts.expert_%d.wi.weight" % e] = dr.mat((ff, d), d, 1.5)
        w["experts.expert_%d.wo.weight" % e] = dr.mat((d, ff), ff)
    return w, _x(dr, T, d)


def build_phimoe(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    W = dr.mat((E, d), d, 2.0)
    w = {"gate.weight": W}
    _experts_modulelist(dr, w, E, d, ff, ("w1", "w3", "w2"))
    x = _x(dr, T, d)
    # Near-ties the sparsemixer mask must keep: for three tokens, choose the logits and solve
    # W x = target (d > E, so exactly). The gaps (relative to the top logit) sit on both sides
    # of 2 eps = 0.02 and at least 0.004 from it, so a wrong eps (0.005 or 0.013 already)
    # changes a mask and the weights.
    Wp = np.linalg.pinv(W)
    perm = dr.rng.permutation(E)
    for t, (top, gaps) in enumerate([(2.0, [0.012, 0.026, 0.3]),        # mask 1 keeps 2, mask 2 keeps 2
                                     (1.6, [0.004, 0.016, 0.4]),         # mask 1 keeps 3, mask 2 keeps 2
                                     (-0.3, [0.002, 0.9, 1.0])]):        # all logits negative
        target = top - 1.5 - dr.uniform((E,), 0.0, 1.0)
        for j, g in enumerate([0.0] + gaps):
            target[perm[(t * 4 + j) % E]] = top - g * abs(top)
        x[t] = Wp @ target
    return w, x


def build_dbrx(dr, c, T):
    d, ff, E = c["d_model"], c["ffn_hidden_size"], c["moe_num_experts"]
    w = {"router.layer.weight": dr.mat((E, d), d, 2.0),
         "experts.mlp.w1": dr.mat((E * ff, d), d),
         "experts.mlp.v1": dr.mat((E * ff, d), d),
         "experts.mlp.w2": dr.mat((E * ff, d), ff)}
    return w, _x(dr, T, d)


def build_granite(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    w = {"router.layer.weight": dr.mat((E, d), d, 2.0),
         "input_linear.weight": dr.mat((E, 2 * ff, d), d),
         "output_linear.weight": dr.mat((E, d, ff), ff)}
    return w, _x(dr, T, d)


def build_granite_shared(dr, c, T):
    """Granite experts (input_linear/output_linear, router.layer) plus the layer's shared_mlp."""
    w, x = build_granite(dr, c, T)
    d, S = c["hidden_size"], c["shared_intermediate_size"]
    w["../shared_mlp.input_linear.weight"] = dr.mat((2 * S, d), d)
    w["../shared_mlp.output_linear.weight"] = dr.mat((d, S), S)
    return w, x


def build_granite_swa(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    w = {"router.weight": dr.mat((E, d), d, 2.0),
         "experts.gate_up_proj": dr.mat((E, 2 * ff, d), d),
         "experts.down_proj": dr.mat((E, d, ff), ff)}
    S = c.get("shared_intermediate_size", 0)
    if S > 0:
        w["../shared_mlp.input_linear.weight"] = dr.mat((2 * S, d), d)
        w["../shared_mlp.output_linear.weight"] = dr.mat((d, S), S)
    return w, _x(dr, T, d)


def build_sigmoid(router="gate.weight", bias="e_score_correction_bias", experts=("gate_proj", "up_proj", "down_proj"),
                  shared=None, shared_names=("gate_proj", "up_proj", "down_proj"), gain=1.0, bias_scale=0.1):
    """A router [E][d] (gain 1: sigmoid scores spread over (0, 1)), a selection bias (uniform, large
    enough to change some token's experts), per-expert SwiGLUs of width _ff (gate and up with
    `gain`, to make clamps bite), and a shared SwiGLU of width _S under `shared`."""
    def build(dr, c, T):
        d, ff, E = c["hidden_size"], c["_ff"], c["_E"]
        w = {router: dr.mat((E, d), d, 1.0)}
        if bias:
            w[bias] = dr.uniform((E,), -bias_scale, bias_scale)
        _experts_modulelist(dr, w, E, d, ff, experts, gain=gain)
        if shared:
            S, (g, u, dn) = c["_S"], shared_names
            w[shared + g + ".weight"] = dr.mat((S, d), d, gain)
            w[shared + u + ".weight"] = dr.mat((S, d), d, gain)
            w[shared + dn + ".weight"] = dr.mat((d, S), S)
        return w, _x(dr, T, d)
    return build


def build_step(dr, c, T):
    """Step-3.5/3.7 Hub layout: the experts as per-projection stacks under moe."""
    d, ff, E, S = c["hidden_size"], c["_ff"], c["_E"], c["_S"]
    w = {"moe.gate.weight": dr.mat((E, d), d, 1.0),
         "moe.router_bias": dr.uniform((E,), -0.1, 0.1),
         "moe.gate_proj.weight": dr.mat((E, ff, d), d, 3.0),
         "moe.up_proj.weight": dr.mat((E, ff, d), d, 3.0),
         "moe.down_proj.weight": dr.mat((E, d, ff), ff),
         "share_expert.gate_proj.weight": dr.mat((S, d), d, 3.0),
         "share_expert.up_proj.weight": dr.mat((S, d), d, 3.0),
         "share_expert.down_proj.weight": dr.mat((d, S), S)}
    return w, _x(dr, T, d)


def build_mistral4(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["n_routed_experts"]
    w = {"gate.weight": dr.mat((E, d), d, 2.0),
         "experts.gate_up_proj": dr.mat((E, 2 * ff, d), d),
         "experts.down_proj": dr.mat((E, d, ff), ff)}
    _shared(dr, w, "shared_experts.", d, ff * c["n_shared_experts"])
    return w, _x(dr, T, d)


def build_aria(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["moe_num_experts"]
    w = {"router.weight": dr.mat((E, d), d, 2.0),
         "experts.fc1.weight": dr.mat((E, d, 2 * ff), d),
         "experts.fc2.weight": dr.mat((E, ff, d), ff)}
    _shared(dr, w, "shared_experts.", d, ff * c["moe_num_shared_experts"])
    return w, _x(dr, T, d)


def build_longcat(dr, c, T):
    d, ff, E, Z = c["hidden_size"], c["expert_ffn_hidden_size"], c["n_routed_experts"], c["zero_expert_num"]
    w = {"router.classifier.weight": dr.mat((E + Z, d), d, 2.0),
         "router.e_score_correction_bias": dr.uniform((E + Z,), -0.05, 0.05)}
    _experts_modulelist(dr, w, E, d, ff)
    return w, _x(dr, T, d)


def build_jetmoe(dr, c, T):
    d, ff, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    w = {"router.layer.weight": dr.mat((E, d), d, 2.0),
         "input_linear.weight": dr.mat((E, 2 * ff, d), d),
         "output_linear.weight": dr.mat((E, d, ff), ff),
         "bias": dr.vec((d,), 0.5)}
    return w, _x(dr, T, d)


def build_axk1(dr, c, T):
    w, x = build_deepseek_v3(dr, c, T)
    w["../post_mlp_layernorm.weight"] = 1.0 + dr.vec((c["hidden_size"],), 0.3)
    return w, x


def build_nemotron_h(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["n_routed_experts"]
    dl, S = c.get("moe_latent_size") or d, c["moe_shared_expert_intermediate_size"]
    w = {"gate.weight": dr.mat((E, d), d, 1.0), "gate.e_score_correction_bias": dr.uniform((E,), -0.1, 0.1)}
    for e in range(E):
        w["experts.%d.up_proj.weight" % e] = dr.mat((ff, dl), dl, 1.5)
        w["experts.%d.down_proj.weight" % e] = dr.mat((dl, ff), ff)
    if c.get("moe_latent_size"):
        w["fc1_latent_proj.weight"] = dr.mat((dl, d), d)
        w["fc2_latent_proj.weight"] = dr.mat((d, dl), dl)
    w["shared_experts.up_proj.weight"] = dr.mat((S, d), d, 1.5)
    w["shared_experts.down_proj.weight"] = dr.mat((d, S), S)
    return w, _x(dr, T, d)


def build_gemma4(dr, c, T):
    d, ff, E = c["hidden_size"], c["moe_intermediate_size"], c["num_experts"]
    w = {"router.proj.weight": dr.mat((E, d), d, 4.0),
         "router.scale": 1.0 + dr.vec((d,), 0.3),
         "router.per_expert_scale": 1.0 + dr.vec((E,), 0.3),
         "experts.gate_up_proj": dr.mat((E, 2 * ff, d), d, 2.0),
         "experts.down_proj": dr.mat((E, d, ff), ff),
         "pre_feedforward_layernorm_2.weight": 1.0 + dr.vec((d,), 0.3),
         "post_feedforward_layernorm_2.weight": 1.0 + dr.vec((d,), 0.3)}
    return w, _x(dr, T, d, 3.0)


def build_grok(dr, c, T):
    d, ff, E = c["emb_size"], c["ffn_size"], c["num_experts"]
    w = {"router.w": dr.mat((d, E), d, 2.0),
         "moe.linear.w": dr.mat((E, d, ff), d, 1.5),
         "moe.linear_v.w": dr.mat((E, d, ff), d),
         "moe.linear_1.w": dr.mat((E, ff, d), ff)}
    return w, _x(dr, T, d)


# ---- the case list ----------------------------------------------------------------------------
# case(name, family, cfg, dtype, T, builder, seed, layer, prefix, block, config=None)
#   cfg      the HF config fields the reference reads (keys starting with _ are generator-only);
#            minus those keys it is also the case's config.json, unless `config` is given
#            (nested configs: DBRX ffn_config, VLM text_config)
#   layer    the --layer argument the test passes to examples/hf_config.h
#   prefix   the Hub name prefix of the layer ("model.layers.1."), block the MoE block's
#            ("mlp."): a weight named "gate.weight" here is stored as
#            "model.layers.1.mlp.gate.weight"; one named "../shared_mlp.x" is layer-level
#            ("model.layers.1.shared_mlp.x")
#   seed     the base seed of the draws (fixed per case, so adding a case changes no other)

CASES = []


def case(name, family, cfg, dtype, T, builder, seed, layer="0", prefix="model.layers.0.", block="mlp.",
         config=None):
    CASES.append(dict(name=name, family=family, cfg=cfg, dtype=dtype, T=T, builder=builder, seed=seed,
                      layer=layer, prefix=prefix, block=block, config=config))


def hub_name(prefix, block, key):
    """The Hub name of weight `key` of a block at prefix + block; each leading "../" climbs one
    module out of the block (granite's shared_mlp is a sibling of block_sparse_moe)."""
    full = prefix + block
    while key.startswith("../"):
        full = full[:full.rstrip(".").rfind(".") + 1]
        key = key[3:]
    return full + key


case("mixtral_bf16", mixtral,
     dict(model_type="mixtral", hidden_size=24, intermediate_size=20, num_local_experts=8, num_experts_per_tok=2,
          hidden_act="silu", _ff=20, _E=8),
     BF16, 7, build_softmax_family(expert_names=("w1", "w3", "w2")), 1, block="block_sparse_moe.")
case("mixtral_gelu", mixtral,
     dict(model_type="mixtral", hidden_size=40, intermediate_size=20, num_local_experts=6, num_experts_per_tok=2,
          hidden_act="gelu", _ff=20, _E=6),
     F32, 5, build_softmax_family(expert_names=("w1", "w3", "w2")), 2, block="block_sparse_moe.")
case("qwen2_moe", qwen2_moe,
     dict(model_type="qwen2_moe", hidden_size=24, moe_intermediate_size=20, shared_expert_intermediate_size=36,
          num_experts=12, num_experts_per_tok=4, norm_topk_prob=False, hidden_act="silu", _ff=20, _E=12),
     F32, 9, build_softmax_family(shared="qwen2"), 3)
# transformers v5 writes Qwen3MoeConfig's expert count as num_local_experts (attribute_map alias)
case("qwen3_moe_f16", qwen3_moe,
     dict(model_type="qwen3_moe", hidden_size=40, moe_intermediate_size=20, num_local_experts=16,
          num_experts_per_tok=4, norm_topk_prob=True, hidden_act="silu", _ff=20, _E=16),
     F16, 8, build_softmax_family(), 4)
case("olmoe", olmoe,
     dict(model_type="olmoe", hidden_size=24, intermediate_size=36, num_experts=8, num_experts_per_tok=3,
          norm_topk_prob=False, hidden_act="silu", _ff=36, _E=8),
     F32, 6, build_softmax_family(), 5)
case("jamba", jamba,
     dict(model_type="jamba", hidden_size=24, intermediate_size=36, num_experts=8, num_experts_per_tok=2,
          hidden_act="silu", num_hidden_layers=2, expert_layer_period=2, expert_layer_offset=1, _ff=36, _E=8),
     F32, 7, build_softmax_family(router_name="router.weight"), 6, layer="1", prefix="model.layers.1.",
     block="feed_forward.")
case("deepseek_v2_lite", deepseek_v2,
     dict(model_type="deepseek_v2", hidden_size=24, moe_intermediate_size=20, n_routed_experts=6,
          num_experts_per_tok=2, n_shared_experts=2, topk_method="greedy", n_group=1, topk_group=1,
          routed_scaling_factor=1.0, norm_topk_prob=False, hidden_act="silu", first_k_dense_replace=0,
          _ff=20, _E=6),
     F32, 7, build_softmax_family(shared="deepseek"), 7)
case("deepseek_v2_group", deepseek_v2,
     dict(model_type="deepseek_v2", hidden_size=24, moe_intermediate_size=20, n_routed_experts=12,
          num_experts_per_tok=3, n_shared_experts=2, topk_method="group_limited_greedy", n_group=4, topk_group=2,
          routed_scaling_factor=16.0, norm_topk_prob=False, hidden_act="silu", first_k_dense_replace=0,
          _ff=20, _E=12),
     F32, 10, build_softmax_family(shared="deepseek"), 8)
case("deepseek_v3", deepseek_v3,
     dict(model_type="deepseek_v3", hidden_size=24, moe_intermediate_size=20, n_routed_experts=16,
          num_experts_per_tok=4, n_shared_experts=1, n_group=4, topk_group=2, norm_topk_prob=True,
          routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc", hidden_act="silu",
          first_k_dense_replace=1, num_hidden_layers=2),
     {"gate.weight": F32, "gate.e_score_correction_bias": F32, "*": BF16}, 11, build_deepseek_v3, 9,
     layer="1", prefix="model.layers.1.")
case("glm4_moe", glm4_moe,
     dict(model_type="glm4_moe", hidden_size=40, moe_intermediate_size=20, n_routed_experts=8,
          num_experts_per_tok=3, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.5, hidden_act="silu", first_k_dense_replace=0),
     F32, 6, build_deepseek_v3, 10)
case("kimi_k2", kimi_k2,
     dict(model_type="kimi_k2", hidden_size=24, moe_intermediate_size=20, n_routed_experts=12,
          num_experts_per_tok=4, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.827, scoring_func="sigmoid", topk_method="noaux_tc", hidden_act="silu",
          first_k_dense_replace=0),
     F32, 5, build_deepseek_v3, 11)
case("gpt_oss", gpt_oss,
     dict(model_type="gpt_oss", hidden_size=24, intermediate_size=20, num_local_experts=8, num_experts_per_tok=4,
          swiglu_limit=7.0),
     F32, 9, build_gpt_oss, 12)
case("gpt_oss_bf16", gpt_oss,
     dict(model_type="gpt_oss", hidden_size=40, intermediate_size=20, num_local_experts=6, num_experts_per_tok=2,
          swiglu_limit=7.0),
     BF16, 6, build_gpt_oss, 13)
case("llama4_bf16", llama4,
     dict(model_type="llama4_text", hidden_size=24, intermediate_size=20, num_local_experts=8,
          num_experts_per_tok=1, hidden_act="silu"),
     BF16, 8, build_llama4, 14, block="feed_forward.")
# Switch: encoder blocks 1, 5, 9 and decoder blocks 1, 5, 9 are sparse (12 blocks, 3 sparse)
case("switch_drop", switch_transformers,
     dict(model_type="switch_transformers", d_model=24, d_ff=36, num_experts=6, expert_capacity=2,
          dense_act_fn="relu", router_bias=False),
     F32, 11, build_switch, 15, layer="encoder.1", prefix="encoder.block.1.layer.1.mlp.", block="")
case("switch_gelu_bf16", switch_transformers,
     dict(model_type="switch_transformers", d_model=40, d_ff=20, num_experts=8, expert_capacity=64,
          dense_act_fn="gelu", router_bias=False),
     BF16, 6, build_switch, 16, layer="decoder.5", prefix="decoder.block.5.layer.2.mlp.", block="")
case("phimoe", phimoe,
     dict(model_type="phimoe", hidden_size=24, intermediate_size=18, num_local_experts=16, num_experts_per_tok=2,
          router_jitter_noise=0.01, hidden_act="silu"),
     F32, 9, build_phimoe, 17, block="block_sparse_moe.")
# router_jitter_noise 0 is a threshold of exactly 0 (not the 0.01 default): both weights are 1,
# on the same crafted near-ties that 0.01 keeps
case("phimoe_jitter0", phimoe,
     dict(model_type="phimoe", hidden_size=24, intermediate_size=18, num_local_experts=16, num_experts_per_tok=2,
          router_jitter_noise=0.0, hidden_act="silu"),
     F32, 6, build_phimoe, 22, block="block_sparse_moe.")
case("dbrx_f16", dbrx,
     dict(d_model=40, ffn_hidden_size=20, moe_num_experts=12, moe_top_k=4, moe_normalize_expert_weights=1.0,
          ffn_act_fn="silu"),
     F16, 8, build_dbrx, 18, prefix="transformer.blocks.0.", block="ffn.",
     config=dict(model_type="dbrx", d_model=40,
                 ffn_config=dict(ffn_hidden_size=20, moe_num_experts=12, moe_top_k=4,
                                 moe_normalize_expert_weights=1.0, ffn_act_fn=dict(name="silu"))))
case("granitemoe", granitemoe,
     dict(model_type="granitemoe", hidden_size=24, intermediate_size=20, num_local_experts=10,
          num_experts_per_tok=3, hidden_act="silu"),
     F32, 8, build_granite, 19, block="block_sparse_moe.")
# Granite with a shared MLP: GraniteMoeShared (shared_intermediate_size > 0), GraniteMoeHybrid
# (always; MoE iff num_local_experts > 0), GraniteMoeSWA (fused experts, shared off by default)
case("granitemoeshared", granitemoeshared,
     dict(model_type="granitemoeshared", hidden_size=24, intermediate_size=16, num_local_experts=8,
          num_experts_per_tok=2, shared_intermediate_size=20, hidden_act="silu"),
     F32, 7, build_granite_shared, 23, layer="1", prefix="model.layers.1.", block="block_sparse_moe.")
case("granitemoehybrid_bf16", granitemoeshared,
     dict(model_type="granitemoehybrid", hidden_size=16, intermediate_size=12, num_local_experts=6,
          num_experts_per_tok=2, shared_intermediate_size=24, hidden_act="silu",
          layer_types=["mamba", "attention"], num_hidden_layers=2),
     BF16, 6, build_granite_shared, 24, layer="1", prefix="model.layers.1.", block="block_sparse_moe.")
case("granitemoe_swa", granitemoe_swa,
     dict(model_type="granitemoe_swa", hidden_size=24, intermediate_size=16, num_local_experts=8,
          num_experts_per_tok=3, hidden_act="silu"),
     F32, 7, build_granite_swa, 25, block="block_sparse_moe.")
case("ernie4_5_moe", ernie4_5_moe,
     dict(model_type="ernie4_5_moe", hidden_size=24, moe_intermediate_size=20, moe_num_experts=12, moe_k=3,
          moe_num_shared_experts=2, moe_norm_min=1e-12, hidden_act="silu"),
     F32, 8, build_ernie, 20, layer="1", prefix="model.layers.1.")
# ---- families that reuse a supported block: only their config.json, names and MoE layers are new
case("minimax", minimax,
     dict(model_type="minimax", hidden_size=16, intermediate_size=12, num_local_experts=6, num_experts_per_tok=2,
          hidden_act="silu", _ff=12, _E=6),
     F32, 6, build_softmax_family(expert_names=("w1", "w3", "w2")), 26, block="block_sparse_moe.")
case("flex_olmo_bf16", flex_olmo,
     dict(model_type="flex_olmo", hidden_size=16, intermediate_size=12, num_experts=7, num_experts_per_tok=5,
          norm_topk_prob=False, hidden_act="silu", _ff=12, _E=7),
     BF16, 6, build_softmax_family(), 27)
# mellum: layer 1 of 2 is sparse by mlp_layer_types
case("mellum", mellum,
     dict(model_type="mellum", hidden_size=16, moe_intermediate_size=12, num_experts=8, num_experts_per_tok=2,
          norm_topk_prob=True, hidden_act="silu", num_hidden_layers=2, mlp_layer_types=["dense", "sparse"],
          _ff=12, _E=8),
     F32, 6, build_softmax_family(), 28, layer="1", prefix="model.layers.1.")
case("qwen3_next", qwen3_next,
     dict(model_type="qwen3_next", hidden_size=16, moe_intermediate_size=12, shared_expert_intermediate_size=20,
          num_experts=10, num_experts_per_tok=3, norm_topk_prob=True, hidden_act="silu", _ff=12, _E=10),
     F32, 7, build_softmax_family(shared="qwen2"), 29)
_q35 = dict(model_type="qwen3_5_moe_text", hidden_size=16, moe_intermediate_size=12, shared_expert_intermediate_size=16,
            num_experts=8, num_experts_per_tok=2, hidden_act="silu", num_hidden_layers=2)
case("qwen3_5_moe_bf16", qwen3_5_moe, dict(_q35, _ff=12, _E=8), BF16, 6, build_softmax_family(shared="qwen2"), 30,
     layer="1", prefix="model.language_model.layers.1.",
     config=dict(model_type="qwen3_5_moe", text_config=_q35, vision_config=dict(depth=1)))
_qvl = dict(model_type="qwen3_vl_moe_text", hidden_size=16, moe_intermediate_size=12, num_experts=8,
            num_experts_per_tok=3, hidden_act="silu", decoder_sparse_step=1)
case("qwen3_vl_moe", qwen3_vl_moe, _qvl, F32, 6, build_qwen_vl, 31, prefix="model.language_model.layers.0.",
     config=dict(model_type="qwen3_vl_moe", text_config=_qvl, vision_config=dict(depth=1)))
_thinker = dict(model_type="qwen3_omni_moe_text", hidden_size=16, moe_intermediate_size=12, num_experts=8,
                num_experts_per_tok=2, norm_topk_prob=True, hidden_act="silu", num_hidden_layers=2)
_talker = dict(model_type="qwen3_omni_moe_talker_text", hidden_size=12, moe_intermediate_size=8, num_experts=6,
               num_experts_per_tok=2, norm_topk_prob=False, shared_expert_intermediate_size=16, hidden_act="silu",
               num_hidden_layers=2)
_omni = dict(model_type="qwen3_omni_moe", thinker_config=dict(text_config=_thinker),
             talker_config=dict(text_config=_talker))
case("qwen3_omni_moe_thinker", qwen3_omni_moe_thinker, dict(_thinker, _ff=12, _E=8), F32, 6, build_softmax_family(),
     32, layer="thinker.1", prefix="thinker.model.layers.1.", config=_omni)
case("qwen3_omni_moe_talker", qwen3_omni_moe_talker, dict(_talker, _ff=8, _E=6), F32, 6,
     build_softmax_family(shared="qwen2"), 33, layer="talker.0", prefix="talker.model.layers.0.", config=_omni)
case("dots1", dots1,
     dict(model_type="dots1", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=2,
          n_shared_experts=2, n_group=1, topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.0,
          first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_deepseek_v3, 34, layer="1", prefix="model.layers.1.")
case("deepseek_v32", deepseek_v32,
     dict(model_type="deepseek_v32", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, n_group=2, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.5, num_hidden_layers=2, mlp_layer_types=["dense", "sparse"], hidden_act="silu"),
     {"gate.weight": F32, "gate.e_score_correction_bias": F32, "*": BF16}, 7, build_deepseek_v3, 35, layer="1",
     prefix="model.layers.1.")
_ocr = dict(model_type="deepseek_ocr2_text", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
            num_experts_per_tok=2, n_shared_experts=2, topk_method="greedy", n_group=1, topk_group=1,
            routed_scaling_factor=1.0, norm_topk_prob=False, hidden_act="silu", num_hidden_layers=2,
            mlp_layer_types=["dense", "sparse"])
case("deepseek_ocr2", deepseek_ocr2, dict(_ocr, _ff=12, _E=8), F32, 6, build_softmax_family(shared="deepseek"), 36,
     layer="1", prefix="model.language_model.layers.1.", config=dict(model_type="deepseek_ocr2", text_config=_ocr))
case("glm4_moe_lite", glm4_moe_lite,
     dict(model_type="glm4_moe_lite", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=1.8, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_deepseek_v3, 37, layer="1", prefix="model.layers.1.")
_glmv = dict(model_type="glm4v_moe_text", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
             num_experts_per_tok=3, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
             routed_scaling_factor=1.0, first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu")
case("glm4v_moe", glm4v_moe, _glmv, F32, 6, build_deepseek_v3, 38, layer="1", prefix="model.language_model.layers.1.",
     config=dict(model_type="glm4v_moe", text_config=_glmv, vision_config=dict(depth=1)))
case("glm_moe_dsa", glm_moe_dsa,
     dict(model_type="glm_moe_dsa", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.5, first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_deepseek_v3, 39, layer="1", prefix="model.layers.1.")
case("solar_open", solar_open,
     dict(model_type="solar_open", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=1.0, hidden_act="silu"),
     F32, 6, build_deepseek_v3, 40)
case("mimo_v2_flash", mimo_v2_flash,
     dict(model_type="mimo_v2_flash", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.0,
          num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_v3(ns_key=None), 41, layer="1", prefix="model.layers.1.")
case("exaone_moe", exaone_moe,
     dict(model_type="exaone_moe", hidden_size=16, moe_intermediate_size=12, num_experts=8, num_experts_per_tok=2,
          num_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5,
          first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_v3("num_experts", "num_shared_experts", "e_score_correction_bias"), 42, layer="1",
     prefix="model.layers.1.")
_k25 = dict(model_type="kimi_k2", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=2,
            n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.827,
            first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu")
case("kimi_k25", kimi_k25, _k25, F32, 6, build_deepseek_v3, 43, layer="1", prefix="language_model.model.layers.1.",
     config=dict(model_type="kimi_k25", text_config=_k25, vision_config=dict(hidden_size=16)))
# hunyuan_v1_moe: per-layer num_experts / moe_topk lists; layer 1 has 6 experts, top-2
case("hunyuan_v1_moe", hunyuan_v1_moe,
     dict(model_type="hunyuan_v1_moe", hidden_size=16, intermediate_size=12, num_experts=[4, 6], moe_topk=[1, 2],
          num_hidden_layers=2, hidden_act="silu", _layer=1),
     F32, 6, build_hunyuan, 44, layer="1", prefix="model.layers.1.")
# ---- families with the 0.2 rules: sigmoid + selection bias without groups, scale after mixing,
# logit soft-cap, clamped SwiGLUs, sqrt-softplus scores, 0.0 group fill, shared averaging
case("minimax_m2", minimax_m2,
     dict(model_type="minimax_m2", hidden_size=16, intermediate_size=12, num_local_experts=8, num_experts_per_tok=2,
          hidden_act="silu", _ff=12, _E=8),
     F32, 6, build_sigmoid(experts=("w1", "w3", "w2")), 45, block="block_sparse_moe.")
# MiniMax-M3: layer 1 of 2 sparse by mlp_layer_types; clamps at 2 bite (gain 3)
_m3 = dict(model_type="minimax_m3_vl_text", hidden_size=16, intermediate_size=12, num_local_experts=8,
           num_experts_per_tok=2, n_shared_experts=1, shared_intermediate_size=10, routed_scaling_factor=2.0,
           swiglu_alpha=1.702, swiglu_limit=2.0, num_hidden_layers=2, mlp_layer_types=["dense", "sparse"])
case("minimax_m3_vl", minimax_m3_vl, dict(_m3, _ff=12, _E=8, _S=10), F32, 6,
     build_sigmoid(experts=("w1", "w3", "w2"), shared="shared_experts.", gain=3.0), 46, layer="1",
     prefix="language_model.model.layers.1.", block="block_sparse_moe.",
     config=dict(model_type="minimax_m3_vl", text_config=_m3, vision_config=dict(hidden_size=16)))
case("hy_v3", hy_v3,
     dict(model_type="hy_v3", hidden_size=16, moe_intermediate_size=12, num_experts=8, num_experts_per_tok=2,
          num_shared_experts=1, router_scaling_factor=2.826, num_hidden_layers=2, hidden_act="silu",
          _ff=12, _E=8, _S=12),
     F32, 6, build_sigmoid(router="router.gate.weight", bias="expert_bias", shared="shared_mlp."), 47, layer="1",
     prefix="model.layers.1.")
case("afmoe_bf16", afmoe,
     dict(model_type="afmoe", hidden_size=16, moe_intermediate_size=12, num_experts=8, num_experts_per_tok=3,
          num_shared_experts=2, route_scale=2.5, num_dense_layers=1, num_hidden_layers=2, hidden_act="silu",
          _ff=12, _E=8, _S=24),
     {"router.gate.weight": F32, "expert_bias": F32, "*": BF16}, 6,
     build_sigmoid(router="router.gate.weight", bias="expert_bias", shared="shared_experts."), 48, layer="1",
     prefix="model.layers.1.")
# Laguna: the soft-cap 1.5 bites on logits of gain 1 (|h| up to ~3)
case("laguna", laguna,
     dict(model_type="laguna", hidden_size=16, moe_intermediate_size=12, shared_expert_intermediate_size=20,
          num_experts=8, num_experts_per_tok=2, moe_routed_scaling_factor=2.5, moe_router_logit_softcapping=1.5,
          num_hidden_layers=2, hidden_act="silu", _ff=12, _E=8, _S=20),
     F32, 6, build_sigmoid(bias="experts.e_score_correction_bias", shared="shared_expert."), 49, layer="1",
     prefix="model.layers.1.")
# Step-3.7 (VLM, text model_type step3p5): attribute_map names, layer 1 by moe_layers_enum, the
# experts clamped at 1.0 and the shared expert at 2.0 (per-layer lists)
_s37 = dict(model_type="step3p5", hidden_size=16, moe_intermediate_size=12, moe_num_experts=8, moe_top_k=2,
            share_expert_dim=20, moe_router_scaling_factor=2.0, swiglu_limits=[0.0, 1.0],
            swiglu_limits_shared=[0.0, 2.0], moe_layers_enum="1", num_hidden_layers=2, hidden_act="silu")
case("step3p7", step3p7, dict(_s37, _ff=12, _E=8, _S=20, _layer=1), F32, 6, build_step, 50, layer="1",
     prefix="model.layers.1.", block="", config=dict(model_type="step3p7", text_config=_s37))
# Step-3.5: MoE from layer 3 on (no mlp_layer_types, no moe_layers_enum); no clamp on layer 3
case("step3p5_bf16", step3p7,
     dict(model_type="step3p5", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=3,
          share_expert_dim=12, moe_router_scaling_factor=1.0, swiglu_limits=[0, 0, 0, None],
          num_hidden_layers=4, hidden_act="silu", _ff=12, _E=8, _S=12, _layer=3),
     {"moe.gate.weight": F32, "moe.router_bias": F32, "*": BF16}, 6, build_step, 51, layer="3", prefix="model.layers.3.", block="")
case("lfm2_moe", lfm2_moe,
     dict(model_type="lfm2_moe", hidden_size=16, moe_intermediate_size=12, num_experts=8, num_experts_per_tok=2,
          use_expert_bias=True, norm_topk_prob=True, routed_scaling_factor=1.5, num_dense_layers=1,
          num_hidden_layers=2, _ff=12, _E=8),
     F32, 6, build_sigmoid(bias="expert_bias", experts=("w1", "w3", "w2")), 52, layer="1", prefix="model.layers.1.",
     block="feed_forward.")
case("mistral4", mistral4,
     dict(model_type="mistral4", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=2,
          n_shared_experts=1, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.5,
          first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_mistral4, 53, layer="1", prefix="model.layers.1.")
# AXK2: no mlp_layer_types, so the legacy rule: layer >= first_k_dense_replace and % moe_layer_freq
case("axk2", axk2,
     dict(model_type="axk2", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=2,
          n_shared_experts=1, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5,
          first_k_dense_replace=1, moe_layer_freq=1, num_hidden_layers=2, hidden_act="silu"),
     F32, 6, build_deepseek_v3, 54, layer="1", prefix="model.layers.1.")
case("cohere2_moe", cohere2_moe,
     dict(model_type="cohere2_moe", hidden_size=16, intermediate_size=12, num_experts=8, num_experts_per_tok=2,
          num_shared_experts=1, shared_expert_combination_strategy="average", expert_selection_fn="softmax",
          hidden_act="silu", _ff=12, _E=8, _S=12),
     F32, 6, build_sigmoid(bias=None, shared="shared_experts."), 55)
case("cohere2_moe_sigmoid", cohere2_moe,
     dict(model_type="cohere2_moe", hidden_size=16, intermediate_size=12, num_experts=8, num_experts_per_tok=3,
          num_shared_experts=2, shared_expert_combination_strategy="sum", expert_selection_fn="sigmoid",
          norm_topk_prob=True, num_hidden_layers=2, mlp_layer_types=["dense", "sparse"], hidden_act="silu",
          _ff=12, _E=8, _S=24),
     F32, 6, build_sigmoid(bias=None, shared="shared_experts."), 56, layer="1", prefix="model.layers.1.")
_aria = dict(model_type="aria_text", hidden_size=16, intermediate_size=12, moe_num_experts=8, moe_topk=2,
             moe_num_shared_experts=2, hidden_act="silu")
case("aria", aria, _aria, F32, 6, build_aria, 57, prefix="language_model.model.layers.0.",
     config=dict(model_type="aria", text_config=_aria, vision_config=dict(hidden_size=16)))
case("openai_privacy_filter", openai_privacy_filter,
     dict(model_type="openai_privacy_filter", hidden_size=24, intermediate_size=20, num_local_experts=8,
          num_experts_per_tok=4, swiglu_limit=7.0),
     F32, 9, build_gpt_oss, 58)
# DeepSeek-V4: layers 0..2 are hash-routed (not supported); layer 3 is a top-k layer
case("deepseek_v4", deepseek_v4,
     dict(model_type="deepseek_v4", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, routed_scaling_factor=1.5, scoring_func="sqrtsoftplus",
          swiglu_limit=2.0, num_hidden_layers=4, hidden_act="silu", _ff=12, _E=8, _S=12),
     F32, 6, build_sigmoid(bias="gate.bias", experts=("w1", "w3", "w2"), shared="shared_experts.",
                           shared_names=("w1", "w3", "w2"), gain=3.0), 59, layer="3", prefix="layers.3.",
     block="ffn.")
# ---- blocks with a part added in moe.h 0.3
# LongCat-Flash: 6 experts and 3 zero-computation ones; layer 1 of num_layers 2
case("longcat_flash", longcat_flash,
     dict(model_type="longcat_flash", hidden_size=16, expert_ffn_hidden_size=12, n_routed_experts=6,
          zero_expert_num=3, moe_topk=3, routed_scaling_factor=6.0, num_layers=2, hidden_act="silu"),
     F32, 8, build_longcat, 60, layer="1", prefix="model.layers.1.")
case("jetmoe_bf16", jetmoe,
     dict(model_type="jetmoe", hidden_size=16, intermediate_size=12, num_local_experts=8, num_experts_per_tok=2,
          activation_function="silu"),
     BF16, 7, build_jetmoe, 61)
case("axk1", axk1,
     dict(model_type="axk1", hidden_size=16, moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=2,
          n_shared_experts=1, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5,
          first_k_dense_replace=1, num_hidden_layers=2, rms_norm_eps=1e-6, hidden_act="silu"),
     F32, 6, build_axk1, 62, layer="1", prefix="model.layers.1.")
# Nemotron-H: layer 1 is "moe" in layers_block_type; the latent case takes hybrid_override_pattern
case("nemotron_h", nemotron_h,
     dict(model_type="nemotron_h", hidden_size=16, moe_intermediate_size=12, moe_shared_expert_intermediate_size=20,
          n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.5, mlp_hidden_act="relu2", layers_block_type=["linear_attention", "moe"]),
     F32, 7, build_nemotron_h, 63, layer="1", prefix="backbone.layers.1.", block="mixer.")
case("nemotron_h_latent_bf16", nemotron_h,
     dict(model_type="nemotron_h", hidden_size=16, moe_intermediate_size=12, moe_shared_expert_intermediate_size=20,
          moe_latent_size=8, n_routed_experts=8, num_experts_per_tok=3, n_group=1, topk_group=1,
          norm_topk_prob=True, routed_scaling_factor=1.0, mlp_hidden_act="relu2", hybrid_override_pattern="M*E"),
     {"gate.weight": F32, "gate.e_score_correction_bias": F32, "*": BF16}, 6, build_nemotron_h, 64, layer="2",
     prefix="backbone.layers.2.", block="mixer.")
# Gemma 4 (26B-A4B style): the router's and the experts' input norms, the per-expert scale, the
# output norm; the layer-level names under the VLM's language model
_g4 = dict(model_type="gemma4_text", hidden_size=16, moe_intermediate_size=12, num_experts=8, top_k_experts=2,
           enable_moe_block=True, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", num_hidden_layers=2)
case("gemma4", gemma4, _g4, {"router.proj.weight": F32, "*": BF16}, 7, build_gemma4, 65, layer="1",
     prefix="model.language_model.layers.1.", block="",
     config=dict(model_type="gemma4", text_config=_g4, vision_config=dict(hidden_size=16)))
# Grok-1 is not a transformers family: no config.json; test_golden.c maps it by hand
case("grok1_bf16", grok1,
     dict(emb_size=24, ffn_size=36, num_experts=8, num_selected_experts=2),
     BF16, 6, build_grok, 21, prefix="", block="")


# ---- file writing -----------------------------------------------------------------------------

def _record(out, name, dtype, dims, data):
    nb = name.encode("ascii")
    out += struct.pack("<I", len(nb)) + nb
    out += struct.pack("<II", dtype, len(dims)) + struct.pack("<%dI" % len(dims), *dims)
    out += data


def _cfg_records(out, cfg):
    for key in sorted(cfg):
        if key.startswith("_"):
            continue
        v = cfg[key]
        name = "cfg." + key
        if isinstance(v, bool) or isinstance(v, int):
            _record(out, name, I32, [1], struct.pack("<i", int(v)))
        elif isinstance(v, float):
            _record(out, name, F64, [1], struct.pack("<d", v))
        elif isinstance(v, str):
            _record(out, name, TEXT, [len(v)], v.encode("ascii"))
        else:
            raise TypeError(key)


def _dtype_of(spec, name):
    if isinstance(spec, dict):
        return spec.get(name, spec["*"])
    return spec


def config_json(cs):
    """The case's config.json text (sorted keys, no generator-only keys), or None (Grok-1)."""
    cfg = cs["config"] if cs["config"] is not None else {k: v for k, v in cs["cfg"].items() if not k.startswith("_")}
    if "model_type" not in cfg:
        return None
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def draw_case(cs, base_seed):
    """Draws weights and input until every routing decision has its margin and the draw exercises
    what the case is about. Returns (seed, w {name: (float64 tensor, dtype)}, raw {name: bytes},
    x, xraw, y, experts, weights, aux)."""
    cfg, family, T = cs["cfg"], cs["family"], cs["T"]
    for attempt in range(400):
        seed = base_seed * 1000 + attempt
        dr = Draw(seed)
        w_np, x_np = cs["builder"](dr, cfg, T)
        w, raw = {}, {}
        for k in w_np:
            dt = _dtype_of(cs["dtype"], k)
            vals, raw[k] = _round(w_np[k], dt)
            w[k] = (torch.from_numpy(vals), dt)
        xv, xraw = _round(x_np, F32)
        x = torch.from_numpy(xv)
        aux = {}
        with torch.no_grad():
            y, experts, weights = family({k: v[0] for k, v in w.items()}, cfg, x, aux)
        if any(m < 1.0 for _, m in aux.get("margins", [])):
            continue
        if not aux.get("exercised", True):
            continue
        if "min_key" in aux and not aux["min_key"] > 1e-3:
            continue
        dropped = aux.get("dropped", torch.zeros_like(experts, dtype=torch.bool))
        if cfg.get("expert_capacity", T) < T and int(dropped.sum()) < 2:
            continue
        aux["dropped"] = dropped
        return seed, w, raw, x, xraw, y, experts, weights, aux
    raise RuntimeError("%s: no draw with clear routing margins" % cs["name"])


def make_case(cs):
    """The golden file's bytes for one case, and what main() prints about it."""
    seed, w, raw, x, xraw, y, experts, weights, aux = draw_case(cs, cs["seed"])
    dropped = aux["dropped"]
    out = bytearray(b"MOEG" + struct.pack("<I", 1))
    fam, name = cs["family"].__name__, cs["name"]
    _record(out, "family", TEXT, [len(fam)], fam.encode())
    _record(out, "case", TEXT, [len(name)], name.encode())
    cj = config_json(cs)
    if cj is None:
        _cfg_records(out, cs["cfg"])
    else:
        _record(out, "config.json", TEXT, [len(cj)], cj.encode("ascii"))
        _record(out, "layer", TEXT, [len(cs["layer"])], cs["layer"].encode("ascii"))
    for k in sorted(w):
        _record(out, "w." + hub_name(cs["prefix"], cs["block"], k), w[k][1], list(w[k][0].shape), raw[k])
    _record(out, "x", F32, list(x.shape), xraw)
    _record(out, "y_ref", F64, list(y.shape), y.numpy().astype("<f8").tobytes())
    _record(out, "experts_ref", I32, list(experts.shape), experts.numpy().astype("<i4").tobytes())
    _record(out, "weights_ref", F64, list(weights.shape), weights.numpy().astype("<f8").tobytes())
    _record(out, "dropped_ref", I32, list(dropped.shape), dropped.numpy().astype("<i4").tobytes())
    logits = aux["logits"]
    _record(out, "logits_ref", F64, list(logits.shape), logits.numpy().astype("<f8").tobytes())
    margins = min(m for _, m in aux["margins"])
    return bytes(out), seed, margins, float(y.abs().max()), int(dropped.sum())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "golden")
    os.makedirs(outdir, exist_ok=True)
    only = set(sys.argv[1:])
    total = 0
    for cs in CASES:
        if only and cs["name"] not in only:
            continue
        data, seed, margin, ymax, ndrop = make_case(cs)
        with open(os.path.join(outdir, cs["name"] + ".bin"), "wb") as f:
            f.write(data)
        total += len(data)
        print("%-20s %-20s seed %6d  bytes %6d  margin x%.3g  max|y| %.3g%s" % (
            cs["name"], cs["family"].__name__, seed, len(data), margin, ymax,
            "  dropped %d" % ndrop if ndrop else ""))
    if not only:  # the list test_golden.c runs
        with open(os.path.join(outdir, "cases.txt"), "w") as f:
            f.write("# golden cases, one file each (written by tests/gen_golden.py)\n")
            f.write("".join(cs["name"] + "\n" for cs in CASES))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
