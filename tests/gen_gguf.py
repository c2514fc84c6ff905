#!/usr/bin/python3
"""Tiny GGUF model files and float64 references for tests/test_gguf.c, written by hand.

Run with Debian's numpy and torch from the repository root (no gguf package):

    /usr/bin/python3 tests/gen_gguf.py      # rewrites tests/gguf/, tests/corpus/gguf/ and
                                            # tests/corpus/fuzz/gguf/

tests/gguf/<case>.gguf: one MoE block (sometimes behind dense or absent blocks) of a llama.cpp
model of one architecture, under llama.cpp's tensor names and metadata keys, with a few other
tensors (token_embd, norms, attention) the layer planner must skip, and per case:
    <case>.config.json   the Hugging Face config.json the file stands for (what
                         convert_hf_to_gguf.py reads to write the metadata); test_gguf.c maps it
                         with examples/hf_config.h and compares the moe_config field by field
    <case>.manifest      what was written: header fields, every metadata entry (type and value;
                         arrays by count and FNV-1a 64 of their elements' bytes), every tensor
                         (type, ne, offset, bytes), for the parser checks
    <case>.x.npy         float32 [T][d] input
    <case>.y.npy         float64 [T][d] reference output
    <case>.e.npy         int32 [T][k] reference experts, slot order (key descending)
    <case>.w.npy         float64 [T][k] reference weights
tests/gguf/cases.txt lists: case, layer, the block types the layer's experts use.

THE WEIGHTS. Drawn in float64 by gen_golden.py's builders under the HF names, then stored in the
case's GGUF types: F32, F16, BF16 rounded to nearest even; Q8_0, Q4_0, Q4_K and MXFP4 quantized
as ggml's reference quantizers do in spirit (a scale from the block's extreme values, codes by
rounding; bit-exactness with ggml's choices is not needed), then decoded by separate code that
follows the format definitions (shared/reference/cpu-moe-sota-2026-12.md section 2.2, ggml
ggml-quants.c dequantize_row_*):
    Q8_0   {f16 d; i8 q[32]}                  y = d q
    Q4_0   {f16 d; u8 qs[16]}                 y = d (u - 8), u of element j in the low nibble
                                              of qs[j], of j + 16 in the high one
    Q4_K   {f16 d, dmin; u8 scales[12]; u8 qs[128]} per 256: sub-block j's 6-bit sc, m from
           get_scale_min_k4; y = fp32(fp32(d sc) u - fp32(dmin m)), as ggml computes it in
           fp32 (d sc and dmin m are exact products, so the one rounding is of the
           difference: computed here exactly in float64, checked, then rounded once to fp32)
    MXFP4  {u8 e; u8 qs[16]}                  y = kvalues_fp4[nib] 2^(e - 128), element j in
                                              the low nibble of qs[j], j + 16 in the high one
The reference is the family's float64 HF rendering (gen_golden.py) on the decoded weights, so
the references are exact for the stored bits. Draws with routing near-ties are thrown away, as
gen_golden.py does.

THE CORPUS. tests/corpus/gguf/*.gguf: malformed files (truncated, bad magic, huge counts,
offsets out of the file, misaligned, unknown types, over-long strings and names, ...) and
well-formed files with a bad MoE layer (unsupported architecture or type, shapes that disagree
with the metadata, ...); tests/corpus/gguf/expected.txt gives for each the words its message
must hold (and the layer planned, or "-" for an error at open). tests/corpus/fuzz/gguf/: the
libFuzzer seeds, added to what is there (inputs merged from fuzzing runs stay): tiny valid models
of every architecture, and the malformed files.
Deterministic: fixed seeds, no timestamps.
"""

import hashlib
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_golden as G  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- GGUF writing -----------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32V, BOOL, STR, ARR, U64, I64, F64V = range(13)
VALUE_NAMES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
               "uint64", "int64", "float64"]
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f", BOOL: "<B",
              U64: "<Q", I64: "<q", F64V: "<d"}

# ggml types
T_F32, T_F16, T_Q4_0, T_Q8_0, T_Q4_K, T_Q6_K, T_BF16, T_MXFP4 = 0, 1, 2, 8, 12, 14, 30, 39
TYPE_NAMES = {T_F32: "F32", T_F16: "F16", T_Q4_0: "Q4_0", T_Q8_0: "Q8_0", T_Q4_K: "Q4_K", T_Q6_K: "Q6_K",
              T_BF16: "BF16", T_MXFP4: "MXFP4"}
BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_BF16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_Q4_K: (256, 144),
         T_MXFP4: (32, 17), T_Q6_K: (256, 210)}


def gstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<Q", len(b)) + b


def enc_value(t, v):
    """v for ARR: (element type, [elements])."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def align_up(n, a):
    return (n + a - 1) // a * a


def gguf_bytes(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, ggml type, ne list, raw bytes)]. Returns the
    file and the tensors' data-section offsets."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)))
    for key, t, v in kvs:
        out += gstr(key) + struct.pack("<I", t) + enc_value(t, v)
    offs, off = [], 0
    for name, tt, ne, raw in tensors:
        off = align_up(off, alignment)
        offs.append(off)
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", tt, off)
        off += len(raw)
    data_start = align_up(len(out), alignment)
    out += b"\0" * (data_start - len(out))
    for (name, tt, ne, raw), o in zip(tensors, offs):
        out += b"\0" * (data_start + o - len(out))
        out += raw
    return bytes(out), offs, data_start


def manifest(kvs, tensors, offs, version, alignment, data_start, n_header):
    """Lines of tab-separated fields test_gguf.c checks the parser against."""
    lines = ["info\tversion\t%d" % version, "info\talignment\t%d" % alignment, "info\tdata_start\t%d" % data_start,
             "info\tn_kv\t%d" % len(kvs), "info\tn_tensors\t%d" % len(tensors), "info\theader\t%d" % n_header]
    for key, t, v in kvs:
        if t == ARR:
            et, items = v
            body = b"".join(enc_value(et, x) for x in items)
            lines.append("kv\t%s\tarray\t%s\t%d\t%016x" % (key, VALUE_NAMES[et], len(items), fnv1a64(body)))
        elif t == STR:
            lines.append("kv\t%s\tstring\t%s" % (key, v))
        elif t in (F32V, F64V):
            val = float(np.float32(v)) if t == F32V else float(v)
            lines.append("kv\t%s\t%s\t%r" % (key, VALUE_NAMES[t], val))
        else:
            lines.append("kv\t%s\t%s\t%d" % (key, VALUE_NAMES[t], int(v)))
    for (name, tt, ne, raw), o in zip(tensors, offs):
        lines.append("tensor\t%s\t%d\t%d\t%s\t%d\t%d" % (name, tt, len(ne), ",".join(str(n) for n in ne), o, len(raw)))
    return "\n".join(lines) + "\n"


def header_len(kvs, tensors, version=3):
    n = 24 + sum(len(gstr(k)) + 4 + len(enc_value(t, v)) for k, t, v in kvs)
    return n + sum(len(gstr(nm)) + 4 + 8 * len(ne) + 12 for nm, _, ne, _ in tensors)


# ---- the block formats: encoders and separate decoders ----------------------------------------

def f16_bits(a):
    return np.asarray(a, dtype=np.float64).astype(np.float16)


def quant_q8_0(w):
    """w [N][K] float64 -> raw bytes of N rows of K/32 blocks."""
    N, K = w.shape
    b = w.reshape(N, K // 32, 32)
    d = f16_bits(np.abs(b).max(-1) / 127.0)
    dd = d.astype(np.float64)
    inv = np.divide(1.0, dd, out=np.zeros_like(dd), where=dd != 0)
    q = np.clip(np.rint(b * inv[..., None]), -127, 127).astype(np.int8)
    raw = np.zeros((N, K // 32, 34), np.uint8)
    raw[..., 0:2] = d.astype("<f2").view(np.uint8).reshape(N, K // 32, 2)
    raw[..., 2:] = q.view(np.uint8)
    return raw.tobytes()


def dequant_q8_0(raw, N, K):
    r = np.frombuffer(raw, np.uint8).reshape(N, K // 32, 34)
    d = np.ascontiguousarray(r[..., 0:2]).view("<f2")[..., 0].astype(np.float64)
    q = np.ascontiguousarray(r[..., 2:]).view(np.int8).astype(np.float64)
    return (d[..., None] * q).reshape(N, K)


def quant_q4_0(w):
    """ggml quantize_row_q4_0_ref: d = max / -8 with max the value of largest magnitude."""
    N, K = w.shape
    b = w.reshape(N, K // 32, 32)
    idx = np.abs(b).argmax(-1)
    mx = np.take_along_axis(b, idx[..., None], -1)[..., 0]
    d = f16_bits(mx / -8.0)
    dd = d.astype(np.float64)
    inv = np.divide(1.0, dd, out=np.zeros_like(dd), where=dd != 0)
    u = np.clip(np.floor(b * inv[..., None] + 8.5), 0, 15).astype(np.uint8)
    raw = np.zeros((N, K // 32, 18), np.uint8)
    raw[..., 0:2] = d.astype("<f2").view(np.uint8).reshape(N, K // 32, 2)
    raw[..., 2:] = u[..., :16] | (u[..., 16:] << 4)
    return raw.tobytes()


def dequant_q4_0(raw, N, K):
    r = np.frombuffer(raw, np.uint8).reshape(N, K // 32, 18)
    d = np.ascontiguousarray(r[..., 0:2]).view("<f2")[..., 0].astype(np.float64)
    qs = r[..., 2:]
    u = np.concatenate([qs & 0xF, qs >> 4], axis=-1).astype(np.float64)  # element j, then j + 16
    return (d[..., None] * (u - 8.0)).reshape(N, K)


def quant_q4_k(w):
    """Per 256: 8 sub-blocks of 32 with a scale (max - min) / 15 and a min -min (min <= 0),
    both quantized to 6 bits against the super-block's f16 d and dmin."""
    N, K = w.shape
    nb = K // 256
    x = w.reshape(N, nb, 8, 32)
    mn = np.minimum(x.min(-1), 0.0)
    scale = (x.max(-1) - mn) / 15.0
    minv = -mn
    d = f16_bits(scale.max(-1) / 63.0)
    dmin = f16_bits(minv.max(-1) / 63.0)
    dd, dm = d.astype(np.float64), dmin.astype(np.float64)
    sc = np.clip(np.rint(np.divide(scale, dd[..., None], out=np.zeros_like(scale), where=dd[..., None] != 0)), 0, 63)
    m = np.clip(np.rint(np.divide(minv, dm[..., None], out=np.zeros_like(minv), where=dm[..., None] != 0)), 0, 63)
    D = dd[..., None] * sc
    M = dm[..., None] * m
    u = np.clip(np.rint(np.divide(x + M[..., None], D[..., None], out=np.zeros_like(x), where=D[..., None] != 0)), 0, 15)
    sc, m, u = sc.astype(np.uint8), m.astype(np.uint8), u.astype(np.uint8)
    raw = np.zeros((N, nb, 144), np.uint8)
    raw[..., 0:2] = d.astype("<f2").view(np.uint8).reshape(N, nb, 2)
    raw[..., 2:4] = dmin.astype("<f2").view(np.uint8).reshape(N, nb, 2)
    q = np.zeros((N, nb, 12), np.uint8)
    q[..., 0:4] = sc[..., 0:4] | ((sc[..., 4:8] >> 4) << 6)
    q[..., 4:8] = m[..., 0:4] | ((m[..., 4:8] >> 4) << 6)
    q[..., 8:12] = (sc[..., 4:8] & 0xF) | ((m[..., 4:8] & 0xF) << 4)
    raw[..., 4:16] = q
    for c in range(4):  # 64 elements: sub-block 2c in the low nibbles, 2c + 1 in the high ones
        raw[..., 16 + 32 * c:16 + 32 * c + 32] = u[..., 2 * c, :] | (u[..., 2 * c + 1, :] << 4)
    return raw.tobytes()


def dequant_q4_k(raw, N, K):
    r = np.frombuffer(raw, np.uint8).reshape(N, K // 256, 144)
    d = np.ascontiguousarray(r[..., 0:2]).view("<f2")[..., 0].astype(np.float32)
    dmin = np.ascontiguousarray(r[..., 2:4]).view("<f2")[..., 0].astype(np.float32)
    q = r[..., 4:16].astype(np.int64)
    qs = r[..., 16:].astype(np.int64)

    def scale_min(j):  # get_scale_min_k4
        if j < 4:
            return q[..., j] & 63, q[..., j + 4] & 63
        return (q[..., j + 4] & 0xF) | ((q[..., j - 4] >> 6) << 4), (q[..., j + 4] >> 4) | ((q[..., j] >> 6) << 4)

    y = np.zeros((N, K // 256, 256), np.float64)
    for c in range(4):
        for half, j in ((0, 2 * c), (1, 2 * c + 1)):
            sc, m = scale_min(j)
            d1 = (d * sc.astype(np.float32)).astype(np.float64)  # exact in fp32: 11 x 6 bits
            m1 = (dmin * m.astype(np.float32)).astype(np.float64)
            nib = (qs[..., 32 * c:32 * c + 32] >> (4 * half)) & 0xF
            a = d1[..., None] * nib  # exact
            s = a - m1[..., None]
            bb = s - a  # TwoSum: the difference is exact in float64 iff its error term is 0
            errt = (a - (s - bb)) + (-m1[..., None] - bb)
            assert not errt.any(), "Q4_K reference not exact in float64"
            y[..., 64 * c + 32 * half:64 * c + 32 * half + 32] = s
    return y.astype(np.float32).astype(np.float64).reshape(N, K)


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])


def quant_mxfp4(w):
    N, K = w.shape
    b = w.reshape(N, K // 32, 32)
    amax = np.abs(b).max(-1)
    e = np.where(amax > 0, np.ceil(np.log2(np.maximum(amax, 1e-300) / 6.0)) + 127, 127).astype(np.int64)
    e = np.clip(e, 1, 254)
    v = np.abs(b) / np.ldexp(1.0, e - 127)[..., None]
    mag = np.abs(v[..., None] - E2M1).argmin(-1)
    code = (mag | np.where((b < 0) & (mag > 0), 8, 0)).astype(np.uint8)
    raw = np.zeros((N, K // 32, 17), np.uint8)
    raw[..., 0] = e.astype(np.uint8)
    raw[..., 1:] = code[..., :16] | (code[..., 16:] << 4)
    return raw.tobytes()


KVALUES_FP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float64)  # ggml, doubled


def dequant_mxfp4(raw, N, K):
    r = np.frombuffer(raw, np.uint8).reshape(N, K // 32, 17)
    e = r[..., 0].astype(np.int64)
    qs = r[..., 1:]
    nib = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
    return (KVALUES_FP4[nib] * np.ldexp(1.0, e - 128)[..., None]).reshape(N, K)


def store(a, tt):
    """A float64 array [.., rows, K] in GGUF type tt: (raw bytes, decoded float64 values)."""
    a = np.asarray(a, np.float64)
    if tt in (T_F32, T_F16, T_BF16):
        vals, raw = G._round(a, {T_F32: G.F32, T_F16: G.F16, T_BF16: G.BF16}[tt])
        return raw, vals
    K = a.shape[-1]
    N = a.size // K
    enc, dec = {T_Q8_0: (quant_q8_0, dequant_q8_0), T_Q4_0: (quant_q4_0, dequant_q4_0),
                T_Q4_K: (quant_q4_k, dequant_q4_k), T_MXFP4: (quant_mxfp4, dequant_mxfp4)}[tt]
    raw = enc(a.reshape(N, K))
    vals = dec(raw, N, K).reshape(a.shape)
    err = np.abs(vals - a).max() / max(np.abs(a).max(), 1e-30)
    assert err < 0.5, "quantizer %s off by %g" % (TYPE_NAMES[tt], err)
    return raw, vals


def ne_of(shape):
    return list(reversed(shape))


# ---- the cases --------------------------------------------------------------------------------
# A case: architecture, HF config (model_type and the keys the converter reads), the reference
# function, the builder of HF-named float64 weights, the MoE block's index and the GGUF types.

CASES = []


def case(name, arch, hf, family, builder, T, layer, n_blocks, types, extra_kv=(), version=3, alignment=32,
         layout="merged", lead=None, seed=1):
    CASES.append(dict(name=name, arch=arch, hf=hf, family=family, builder=builder, T=T, layer=layer,
                      n_blocks=n_blocks, types=types, extra_kv=list(extra_kv), version=version,
                      alignment=alignment, layout=layout, lead=lead, seed=seed))


TOKENS = ["<unk>", "<s>", "</s>", "a", "b", "c", "\u00e9t\u00e9", "\u4f60\u597d", "  ", "tok9"]
TOKENIZER_KV = [("tokenizer.ggml.model", STR, "llama"),
                ("tokenizer.ggml.tokens", ARR, (STR, TOKENS)),
                ("tokenizer.ggml.scores", ARR, (F32V, [float(-i) * 0.25 for i in range(len(TOKENS))])),
                ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [1] * (len(TOKENS) - 3))),
                ("tokenizer.ggml.merges", ARR, (STR, [])),
                ("tokenizer.ggml.bos_token_id", U32, 1)]
# one of every type, a nested array of strings, an array of arrays of numbers, empty arrays
TYPED_KV = [("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 60000), ("test.i16", I16, -30000),
            ("test.u32", U32, 4000000000), ("test.i32", I32, -2000000000), ("test.f32", F32V, 0.1),
            ("test.bool_true", BOOL, 1), ("test.bool_false", BOOL, 0), ("test.str", STR, "hello, GGUF"),
            ("test.empty_str", STR, ""), ("test.u64", U64, 18446744073709551615), ("test.i64", I64, -9223372036854775808),
            ("test.f64", F64V, -2.5e-300),
            ("test.nested", ARR, (ARR, [(STR, ["a", "bc"]), (STR, []), (STR, ["d\u00e9f"])])),
            ("test.matrix", ARR, (ARR, [(I16, [1, -2, 3]), (I16, [4, 5, -6])])),
            ("test.bools", ARR, (BOOL, [1, 0, 1])),
            ("test.empty", ARR, (U64, []))]


def gen(c):
    return dict(c, _ff=c.get("moe_intermediate_size", c.get("intermediate_size")),
                _E=c.get("num_experts", c.get("num_local_experts", c.get("n_routed_experts"))))


# Qwen3-MoE, Q8_0 experts; block 0 has no experts in this file (planning it is an error)
hf = dict(model_type="qwen3_moe", hidden_size=64, moe_intermediate_size=32, num_experts=6, num_experts_per_tok=2,
          norm_topk_prob=True, num_hidden_layers=2, mlp_only_layers=[0], decoder_sparse_step=1, hidden_act="silu")
case("qwen3moe_q8_0", "qwen3moe", hf, G.qwen3_moe, G.build_softmax_family(), 7, 1, 2,
     dict(router=T_F32, experts=T_Q8_0), seed=11)
# Qwen2-MoE, Q4_0 experts, a Q8_0 shared expert and its F32 sigmoid gate; tokenizer arrays
hf = dict(model_type="qwen2_moe", hidden_size=64, moe_intermediate_size=32, shared_expert_intermediate_size=64,
          num_experts=8, num_experts_per_tok=4, norm_topk_prob=False, num_hidden_layers=1, hidden_act="silu")
case("qwen2moe_q4_0", "qwen2moe", hf, G.qwen2_moe, G.build_softmax_family(shared="qwen2"), 8, 0, 1,
     dict(router=T_F32, experts=T_Q4_0, shared=T_Q8_0), extra_kv=TOKENIZER_KV, seed=12)
# DeepSeek-V3 shape (deepseek2 architecture, sigmoid): Q4_K gate and up (K = 256), Q8_0 down,
# as Q4_K_M files mix types; 4 groups keep 2, selection bias, leading dense block
hf = dict(model_type="deepseek_v3", hidden_size=256, moe_intermediate_size=32, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=1, n_group=4, topk_group=2, norm_topk_prob=True,
          routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc", first_k_dense_replace=1,
          num_hidden_layers=2, hidden_act="silu")
case("deepseek2_q4_k", "deepseek2", hf, G.deepseek_v3, G.build_deepseek_v3, 8, 1, 2,
     dict(router=T_F32, gate=T_Q4_K, up=T_Q4_K, down=T_Q8_0, shared_gate=T_Q4_K, shared_up=T_Q4_K,
          shared_down=T_Q8_0, bias=T_F32), lead=1, seed=13)
# GPT-OSS: MXFP4 gate, up and down (split from HF's interleaved gate_up as the converter does),
# F32 biases
hf = dict(model_type="gpt_oss", hidden_size=64, intermediate_size=32, num_local_experts=8, num_experts_per_tok=4,
          swiglu_limit=7.0, num_hidden_layers=1)
case("gptoss_mxfp4", "gpt-oss", hf, G.gpt_oss, G.build_gpt_oss, 9, 0, 1,
     dict(router=T_F32, experts=T_MXFP4, bias=T_F32), alignment=64, seed=14)
# Mixtral (llama architecture), F16 experts
hf = dict(model_type="mixtral", hidden_size=32, intermediate_size=24, num_local_experts=8, num_experts_per_tok=2,
          num_hidden_layers=1, hidden_act="silu")
case("llama_f16", "llama", hf, G.mixtral, G.build_softmax_family(expert_names=("w1", "w3", "w2")), 7, 0, 1,
     dict(router=T_F32, experts=T_F16), seed=15)
# OLMoE, BF16 router and experts
hf = dict(model_type="olmoe", hidden_size=32, intermediate_size=24, num_experts=8, num_experts_per_tok=3,
          norm_topk_prob=False, num_hidden_layers=1, hidden_act="silu")
case("olmoe_bf16", "olmoe", hf, G.olmoe, G.build_softmax_family(), 6, 0, 1,
     dict(router=T_BF16, experts=T_BF16), seed=16)
# DeepSeek-V2 (no expert_gating_func key: softmax), group_limited_greedy, fused F16 gate_up,
# two shared experts, scale 16; GGUF version 2
hf = dict(model_type="deepseek_v2", hidden_size=32, moe_intermediate_size=16, n_routed_experts=12,
          num_experts_per_tok=3, n_shared_experts=2, topk_method="group_limited_greedy", n_group=4, topk_group=2,
          routed_scaling_factor=16.0, norm_topk_prob=False, scoring_func="softmax", first_k_dense_replace=1,
          num_hidden_layers=2, hidden_act="silu")
case("deepseek2_f16", "deepseek2", hf, G.deepseek_v2, G.build_softmax_family(shared="deepseek"), 10, 1, 2,
     dict(router=T_F32, experts=T_F16, shared=T_F16), version=2, layout="fused", lead=1, seed=17)
# GLM-4.5 (glm4moe, no gating key: sigmoid), BF16 experts and shared expert, F32 selection bias
hf = dict(model_type="glm4_moe", hidden_size=32, moe_intermediate_size=16, n_routed_experts=8,
          num_experts_per_tok=3, n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
          routed_scaling_factor=2.5, first_k_dense_replace=1, num_hidden_layers=2, hidden_act="silu")
case("glm4moe_bf16", "glm4moe", hf, G.glm4_moe, G.build_deepseek_v3, 6, 1, 2,
     dict(router=T_F32, experts=T_BF16, shared=T_BF16, bias=T_F32), lead=1, seed=18)
# an old Mixtral file: one F32 tensor an expert (blk.0.ffn_gate.E.weight); alignment 64 and one
# metadata entry of every type
hf = dict(model_type="mixtral", hidden_size=32, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
          num_hidden_layers=1, hidden_act="silu")
case("llama_legacy_f32", "llama", hf, G.mixtral, G.build_softmax_family(expert_names=("w1", "w3", "w2")), 5, 0, 1,
     dict(router=T_F32, experts=T_F32), extra_kv=TYPED_KV, alignment=64, layout="per_expert", seed=19)


def arch_kv(cs, d, ff, E, k):
    """The metadata convert_hf_to_gguf.py writes for this config (the keys the MoE layer needs,
    and a few others)."""
    a, h = cs["arch"], cs["hf"]
    kv = [("general.architecture", STR, a), ("general.name", STR, "moe.h test " + cs["name"]),
          ("general.file_type", U32, 1), ("general.quantization_version", U32, 2)]
    if cs["alignment"] != 32:
        kv.append(("general.alignment", U32, cs["alignment"]))
    kv += [(a + ".block_count", U32, cs["n_blocks"]), (a + ".context_length", U32, 4096),
           (a + ".embedding_length", U32, d), (a + ".feed_forward_length", U32, ff if a in ("llama", "olmoe") else 4 * d),
           (a + ".attention.head_count", U32, 4), (a + ".attention.head_count_kv", U32, 2),
           (a + ".attention.layer_norm_rms_epsilon", F32V, 1e-6), (a + ".rope.freq_base", F32V, 10000.0),
           (a + ".expert_count", U32, E), (a + ".expert_used_count", U32, k)]
    if a in ("qwen2moe", "qwen3moe", "deepseek2", "glm4moe", "gpt-oss"):
        kv.append((a + ".expert_feed_forward_length", U32, ff))
    if a == "qwen2moe":
        kv.append((a + ".expert_shared_feed_forward_length", U32, h["shared_expert_intermediate_size"]))
    if a in ("deepseek2", "glm4moe"):
        kv += [(a + ".leading_dense_block_count", U32, h["first_k_dense_replace"]),
               (a + ".expert_shared_count", U32, h["n_shared_experts"]),
               (a + ".expert_weights_scale", F32V, h["routed_scaling_factor"]),
               (a + ".expert_weights_norm", BOOL, int(h["norm_topk_prob"])),
               (a + ".expert_group_count", U32, h["n_group"]), (a + ".expert_group_used_count", U32, h["topk_group"])]
        if h.get("scoring_func") == "sigmoid":  # V2 files and GLM files leave it out
            kv.append((a + ".expert_gating_func", U32, 2))
    return kv + cs["extra_kv"]


def to_gguf(cs, w, d, ff, E):
    """HF-named float64 weights -> (GGUF tensors of the MoE block, the decoded weights under the
    HF names for the reference)."""
    L, ty, fam = cs["layer"], cs["types"], cs["hf"]["model_type"]
    p = "blk.%d." % L
    ts, ref = [], {}
    router = "router.weight" if fam == "gpt_oss" else "gate.weight"
    raw, vals = store(w[router], ty["router"])
    ts.append((p + "ffn_gate_inp.weight", ty["router"], ne_of(w[router].shape), raw))
    ref[router] = vals
    tg, tu, td = (ty.get(x, ty.get("experts")) for x in ("gate", "up", "down"))
    if fam == "gpt_oss":
        gu = w["experts.gate_up_proj"]  # [E][d][2ff], gate = even columns
        gate, up = np.transpose(gu[:, :, 0::2], (0, 2, 1)), np.transpose(gu[:, :, 1::2], (0, 2, 1))
        down = np.transpose(w["experts.down_proj"], (0, 2, 1))  # [E][d][ff]
        (rg, gv), (ru, uv), (rd, dv) = store(gate, tg), store(up, tu), store(down, td)
        ts += [(p + "ffn_gate_exps.weight", tg, ne_of(gate.shape), rg), (p + "ffn_up_exps.weight", tu, ne_of(up.shape), ru),
               (p + "ffn_down_exps.weight", td, ne_of(down.shape), rd)]
        b = w["experts.gate_up_proj_bias"]
        braw = {}
        for nm, arr in (("ffn_gate_exps.bias", b[:, 0::2]), ("ffn_up_exps.bias", b[:, 1::2]),
                        ("ffn_down_exps.bias", w["experts.down_proj_bias"]), ("ffn_gate_inp.bias", w["router.bias"])):
            r_, v_ = store(arr, ty["bias"])
            ts.append((p + nm, ty["bias"], ne_of(arr.shape), r_))
            braw[nm] = v_
        guv = np.zeros_like(gu)
        guv[:, :, 0::2] = np.transpose(gv, (0, 2, 1))
        guv[:, :, 1::2] = np.transpose(uv, (0, 2, 1))
        gub = np.zeros_like(b)
        gub[:, 0::2], gub[:, 1::2] = braw["ffn_gate_exps.bias"], braw["ffn_up_exps.bias"]
        ref.update({"experts.gate_up_proj": guv, "experts.down_proj": np.transpose(dv, (0, 2, 1)),
                    "experts.gate_up_proj_bias": gub, "experts.down_proj_bias": braw["ffn_down_exps.bias"],
                    "router.bias": braw["ffn_gate_inp.bias"]})
        return ts, ref
    names = ("w1", "w3", "w2") if fam == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    stack = [np.stack([w["experts.%d.%s.weight" % (e, n)] for e in range(E)]) for n in names]
    if cs["layout"] == "per_expert":
        dec = [[None] * E for _ in range(3)]
        for i, (kind, tt) in enumerate((("ffn_gate", tg), ("ffn_up", tu), ("ffn_down", td))):
            for e in range(E):
                r_, v_ = store(stack[i][e], tt)
                ts.append((p + "%s.%d.weight" % (kind, e), tt, ne_of(stack[i][e].shape), r_))
                dec[i][e] = v_
        dec = [np.stack(x) for x in dec]
    elif cs["layout"] == "fused":
        gu = np.concatenate([stack[0], stack[1]], axis=1)  # [E][2ff][d]: gate rows, then up rows
        r_, v_ = store(gu, tg)
        ts.append((p + "ffn_gate_up_exps.weight", tg, ne_of(gu.shape), r_))
        rd, dv = store(stack[2], td)
        ts.append((p + "ffn_down_exps.weight", td, ne_of(stack[2].shape), rd))
        dec = [v_[:, :ff], v_[:, ff:], dv]
    else:
        dec = []
        for kind, arr, tt in (("ffn_gate_exps", stack[0], tg), ("ffn_up_exps", stack[1], tu), ("ffn_down_exps", stack[2], td)):
            r_, v_ = store(arr, tt)
            ts.append((p + kind + ".weight", tt, ne_of(arr.shape), r_))
            dec.append(v_)
    for e in range(E):
        for i, n in enumerate(names):
            ref["experts.%d.%s.weight" % (e, n)] = dec[i][e]
    sh = "shared_expert." if fam == "qwen2_moe" else "shared_experts."
    if sh + "gate_proj.weight" in w:
        for kind, n in (("ffn_gate_shexp", "gate_proj"), ("ffn_up_shexp", "up_proj"), ("ffn_down_shexp", "down_proj")):
            tt = ty.get("shared_" + n.split("_")[0], ty.get("shared"))
            r_, v_ = store(w[sh + n + ".weight"], tt)
            ts.append((p + kind + ".weight", tt, ne_of(w[sh + n + ".weight"].shape), r_))
            ref[sh + n + ".weight"] = v_
    if "shared_expert_gate.weight" in w:
        g = w["shared_expert_gate.weight"][0]
        r_, v_ = store(g, T_F32)
        ts.append((p + "ffn_gate_inp_shexp.weight", T_F32, [d], r_))
        ref["shared_expert_gate.weight"] = v_[None, :]
    if "gate.e_score_correction_bias" in w:
        r_, v_ = store(w["gate.e_score_correction_bias"], ty["bias"])
        ts.append((p + "exp_probs_b.bias", ty["bias"], [E], r_))
        ref["gate.e_score_correction_bias"] = v_
    return ts, ref


def other_tensors(cs, d, dr):
    """Tensors a model has besides the MoE block, which the planner must not read."""
    L = cs["layer"]
    ts = [("token_embd.weight", T_F16, [d, 16], store(dr.vec((16, d), 0.1), T_F16)[0]),
          ("output_norm.weight", T_F32, [d], store(dr.vec((d,), 0.1) + 1, T_F32)[0])]
    for b in range(cs["n_blocks"]):
        ts.append(("blk.%d.attn_norm.weight" % b, T_F32, [d], store(dr.vec((d,), 0.1) + 1, T_F32)[0]))
        ts.append(("blk.%d.ffn_norm.weight" % b, T_F32, [d], store(dr.vec((d,), 0.1) + 1, T_F32)[0]))
        if b == L:
            q = min(d, 32)
            ts.append(("blk.%d.attn_q.weight" % b, T_F16, [d, q], store(dr.mat((q, d), d), T_F16)[0]))
    return ts


def reference(family, hf, ref, x):
    aux = {}
    with torch.no_grad():
        y, ex, wt = family({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ref.items()}, hf,
                           torch.from_numpy(x), aux)
    return y.numpy(), ex.numpy().astype(np.int32), wt.numpy(), aux


def draw(cs):
    hf = cs["hf"]
    g = gen(hf)
    d, ff, E, k = hf["hidden_size"], g["_ff"], g["_E"], hf["num_experts_per_tok"]
    for attempt in range(600):
        dr = G.Draw(cs["seed"] * 1000 + attempt)
        w, x = cs["builder"](dr, g, cs["T"])
        ts, ref = to_gguf(cs, w, d, ff, E)
        xv = G._round(x, G.F32)[0]
        y, ex, wt, aux = reference(cs["family"], hf, ref, xv)
        if any(m < 1.0 for _, m in aux.get("margins", [])) or not aux.get("exercised", True):
            continue
        if "min_key" in aux and not aux["min_key"] > 1e-3:
            continue
        return ts, xv, y, ex, wt, dr, (d, ff, E, k)
    raise RuntimeError("%s: no draw with clear routing margins" % cs["name"])


def write_case(cs, out):
    ts, x, y, ex, wt, dr, (d, ff, E, k) = draw(cs)
    tensors = other_tensors(cs, d, dr)
    tensors[2:2] = ts  # the MoE block among the others
    kvs = arch_kv(cs, d, ff, E, k)
    data, offs, data_start = gguf_bytes(kvs, tensors, cs["version"], cs["alignment"])
    name = cs["name"]
    with open(os.path.join(out, name + ".gguf"), "wb") as f:
        f.write(data)
    with open(os.path.join(out, name + ".manifest"), "w", encoding="utf-8") as f:
        f.write(manifest(kvs, tensors, offs, cs["version"], cs["alignment"], data_start, header_len(kvs, tensors)))
    with open(os.path.join(out, name + ".config.json"), "w") as f:
        json.dump(cs["hf"], f, indent=2, sort_keys=True)
        f.write("\n")
    for suffix, a in (("x", x.astype(np.float32)), ("y", y.astype(np.float64)), ("e", ex.astype(np.int32)),
                      ("w", wt.astype(np.float64))):
        G_write_npy(os.path.join(out, "%s.%s.npy" % (name, suffix)), a)
    blocks = sorted({TYPE_NAMES[t] for _, t, ne, _ in ts if len(ne) >= 2 and t not in (T_F32, T_F16, T_BF16)})
    print("%-18s %7d bytes  T=%d  max|y| %.3g  %s" % (name, len(data), x.shape[0], float(np.abs(y).max()),
                                                     " ".join(blocks) or "-"))
    return "%s %d %s" % (name, cs["layer"], ",".join(blocks) or "-")


def G_write_npy(path, a):
    import gen_checkpoints as C  # noqa: E402 (its npy writer)
    C.write_npy(path, a)


# ---- malformed files and bad layers -----------------------------------------------------------

def tiny(arch="qwen3moe", d=32, ff=32, E=2, k=1, tt=T_Q8_0, layer=0, blocks=1, extra=(), drop=(), kv_over=None,
         shapes=None, types=None):
    """A tiny valid model: (kvs, tensors) for one MoE block of `arch`."""
    rng = np.random.default_rng(7)
    a = arch
    kv = [("general.architecture", STR, a), (a + ".block_count", U32, blocks), (a + ".embedding_length", U32, d),
          (a + ".expert_count", U32, E), (a + ".expert_used_count", U32, k), (a + ".expert_feed_forward_length", U32, ff)]
    p = "blk.%d." % layer
    shp = {"ffn_gate_inp.weight": [d, E], "ffn_gate_exps.weight": [d, ff, E], "ffn_up_exps.weight": [d, ff, E],
           "ffn_down_exps.weight": [ff, d, E]}
    if arch == "gpt-oss":
        shp.update({"ffn_gate_inp.bias": [E], "ffn_gate_exps.bias": [ff, E], "ffn_up_exps.bias": [ff, E],
                    "ffn_down_exps.bias": [d, E]})
    if arch in ("deepseek2", "glm4moe"):
        shp.update({"exp_probs_b.bias": [E], "ffn_gate_shexp.weight": [d, ff], "ffn_up_shexp.weight": [d, ff],
                    "ffn_down_shexp.weight": [ff, d]})
        kv += [(a + ".expert_shared_count", U32, 1), (a + ".expert_gating_func", U32, 2)]
    if arch == "qwen2moe":
        shp.update({"ffn_gate_shexp.weight": [d, ff], "ffn_up_shexp.weight": [d, ff], "ffn_down_shexp.weight": [ff, d],
                    "ffn_gate_inp_shexp.weight": [d]})
    if kv_over:
        kv = [x for x in kv if x[0] not in kv_over] + [(kk, t, v) for kk, (t, v) in kv_over.items() if t is not None]
    shp.update(shapes or {})
    ts = []
    for nm, ne in shp.items():
        if nm in drop:
            continue
        matrix = nm.endswith(("_exps.weight", "_shexp.weight")) and "gate_inp" not in nm or \
            nm.startswith(("ffn_gate.", "ffn_up.", "ffn_down."))
        t = (types or {}).get(nm, tt if matrix else T_F32)
        n = int(np.prod(ne))
        blck, size = BLOCK[t]
        if t in (T_F32, T_F16, T_BF16):
            raw = store(rng.standard_normal(ne[::-1]) * 0.1, t)[0]
        else:
            raw = bytes(n // blck * size)
        ts.append((p + nm, t, ne, raw))
    return kv + list(extra), ts


def raw_header(version=3, n_t=0, n_kv=0):
    return b"GGUF" + struct.pack("<IQQ", version, n_t, n_kv)


def kv_bytes(key, t, v):
    return gstr(key) + struct.pack("<I", t) + enc_value(t, v)


def tinfo(name, ne, tt, off):
    return gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", tt, off)


def malformed():
    """(file name, bytes, layer or None, words of the message)."""
    out = []
    good, _, _ = gguf_bytes(*tiny())
    one_t = lambda info, data=b"\0" * 64: raw_header(3, 1, 0) + info + b"\0" * (align_up(24 + len(info), 32) - 24 - len(info)) + data
    add = out.append
    add(("empty.gguf", b"", None, "empty file"))
    add(("short_magic.gguf", b"GG", None, "ends inside the magic"))
    add(("truncated_counts.gguf", b"GGUF" + struct.pack("<I", 3) + b"\1\0", None, "ends inside the tensor count"))
    add(("bad_magic.gguf", b"\x10\0\0\0\0\0\0\0{\"a\":1}" + b" " * 16, None, "not a GGUF file"))
    add(("version1.gguf", b"GGUF" + struct.pack("<III", 1, 0, 0), None, "version 1"))
    add(("big_endian.gguf", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), None, "big-endian"))
    add(("version_unknown.gguf", raw_header(7), None, "unknown GGUF version 7"))
    add(("huge_kv_count.gguf", raw_header(3, 0, 1 << 60) + b"\0" * 40, None, "metadata count 1152921504606846976"))
    add(("huge_tensor_count.gguf", raw_header(3, 1 << 40, 0) + b"\0" * 40, None, "tensor count 1099511627776"))
    add(("truncated_kv.gguf", raw_header(3, 0, 1) + kv_bytes("general.name", STR, "abcdefgh")[:-3], None,
         "ends inside the value of metadata 'general.name'"))
    add(("empty_key.gguf", raw_header(3, 0, 1) + kv_bytes("", U8, 1), None, "empty key"))
    add(("long_key.gguf", raw_header(3, 0, 1) + struct.pack("<Q", 1 << 40) + b"x" * 20, None, "over the limit of 65535"))
    add(("nul_key.gguf", raw_header(3, 0, 1) + kv_bytes("gen\0eral", U8, 1), None, "contains a NUL byte"))
    add(("duplicate_key.gguf", raw_header(3, 0, 2) + kv_bytes("a.b", U8, 1) + kv_bytes("a.b", U32, 2), None,
         "duplicate metadata key 'a.b'"))
    add(("bad_value_type.gguf", raw_header(3, 0, 1) + gstr("x") + struct.pack("<I", 13) + b"\0" * 8, None,
         "unknown value type 13"))
    add(("bad_bool.gguf", raw_header(3, 0, 1) + gstr("flag") + struct.pack("<IB", BOOL, 2), None, "bool with byte value 2"))
    add(("long_string.gguf", raw_header(3, 0, 1) + gstr("s") + struct.pack("<IQ", STR, 1 << 62) + b"abc", None,
         "over the limit of 16777216"))
    add(("string_past_end.gguf", raw_header(3, 0, 1) + gstr("s") + struct.pack("<IQ", STR, 100) + b"abc", None,
         "ends inside the value of metadata 's'"))
    add(("array_bad_type.gguf", raw_header(3, 0, 1) + gstr("arr") + struct.pack("<IIQ", ARR, 77, 1) + b"\0" * 8, None,
         "unknown element type 77"))
    add(("array_huge.gguf", raw_header(3, 0, 1) + gstr("arr") + struct.pack("<IIQ", ARR, U32, 1 << 61) + b"\0" * 16, None,
         "array of 2305843009213693952 uint32 elements"))
    nest = struct.pack("<IQ", STR, 0)
    for _ in range(9):
        nest = struct.pack("<IQ", ARR, 1) + nest
    add(("array_deep.gguf", raw_header(3, 0, 1) + gstr("deep") + struct.pack("<I", ARR) + nest, None,
         "nested deeper than 8"))
    add(("alignment_zero.gguf", raw_header(3, 0, 1) + kv_bytes("general.alignment", U32, 0), None,
         "general.alignment = 0 is not a power of 2"))
    add(("alignment_24.gguf", raw_header(3, 0, 1) + kv_bytes("general.alignment", U32, 24), None,
         "general.alignment = 24 is not a power of 2"))
    add(("alignment_string.gguf", raw_header(3, 0, 1) + kv_bytes("general.alignment", STR, "32"), None,
         "general.alignment is a string"))
    add(("tensor_empty_name.gguf", one_t(tinfo("", [4], T_F32, 0)), None, "tensor 0 has an empty name"))
    add(("tensor_long_name.gguf", one_t(tinfo("t" * 65, [4], T_F32, 0)), None, "over the limit of 64 bytes"))
    add(("tensor_dims.gguf", one_t(tinfo("t", [1, 1, 1, 1, 1], T_F32, 0)), None, "has 5 dimensions"))
    add(("tensor_negative.gguf", one_t(tinfo("t", [1 << 63], T_F32, 0)), None, "negative as an int64"))
    add(("tensor_overflow.gguf", one_t(tinfo("t", [1 << 40, 1 << 40], T_F32, 0)), None, "element count overflows"))
    add(("tensor_bytes_overflow.gguf", one_t(tinfo("t", [1 << 62], 28, 0)), None, "byte size"))
    add(("tensor_unknown_type.gguf", one_t(tinfo("t", [4], 99, 0)), None, "unknown type 99"))
    add(("tensor_removed_type.gguf", one_t(tinfo("t", [32], 31, 0)), None, "type 31 (Q4_0_4_4), which ggml removed"))
    add(("tensor_block.gguf", one_t(tinfo("t", [33], T_Q8_0, 0)), None, "not a multiple of the Q8_0 block of 32"))
    add(("tensor_misaligned.gguf", one_t(tinfo("t", [4], T_F32, 8)), None, "offset 8 is not a multiple of the alignment 32"))
    add(("tensor_out_of_file.gguf", one_t(tinfo("t", [4], T_F32, 1 << 20)), None, "end past the end of the file"))
    add(("tensor_truncated.gguf", good[:len(good) - 100], None, "blk.0.ffn_down_exps.weight': its"))
    two = raw_header(3, 2, 0) + tinfo("a", [16], T_F32, 0) + tinfo("b", [16], T_F32, 32)
    add(("tensor_overlap.gguf", two + b"\0" * (align_up(len(two), 32) - len(two)) + b"\0" * 128, None,
         "tensors 'a' and 'b' overlap"))
    two = raw_header(3, 2, 0) + tinfo("a", [4], T_F32, 0) + tinfo("a", [4], T_F32, 32)
    add(("tensor_duplicate.gguf", two + b"\0" * (align_up(len(two), 32) - len(two)) + b"\0" * 64, None,
         "duplicate tensor name 'a'"))
    info = tinfo("t\0x", [4], T_F32, 0)
    add(("tensor_nul_name.gguf", one_t(info), None, "name of tensor 0 ('t?x') contains a NUL byte"))

    # well-formed files whose MoE layer cannot be made
    def bad(name, layer, words, **kw):
        kvs, ts = tiny(**kw)
        out.append((name, gguf_bytes(kvs, ts)[0], layer, words))
    bad("plan_no_arch.gguf", 0, "no metadata 'general.architecture'", kv_over={"general.architecture": (None, None)})
    bad("plan_arch_type.gguf", 0, "metadata 'general.architecture' is a uint32, expected a string",
        kv_over={"general.architecture": (U32, 7)})
    bad("plan_arch_unknown.gguf", 0, "architecture 'mamba' is not supported; supported: llama qwen2moe",
        kv_over={"general.architecture": (STR, "mamba")})
    bad("plan_layer_range.gguf", 5, "layer 5 is out of range: the model has 1 block (qwen3moe.block_count)")
    bad("plan_layer_negative.gguf", -1, "layer -1 is out of range")
    bad("plan_no_blocks.gguf", 0, "no metadata 'qwen3moe.block_count'", kv_over={"qwen3moe.block_count": (None, None)})
    bad("plan_no_experts_key.gguf", 0, "no metadata 'qwen3moe.expert_count'", kv_over={"qwen3moe.expert_count": (None, None)})
    bad("plan_dense_model.gguf", 0, "expert_count = 0: a dense model", kv_over={"qwen3moe.expert_count": (U32, 0)})
    bad("plan_topk.gguf", 0, "expert_used_count = 3 (1..expert_count)", kv_over={"qwen3moe.expert_used_count": (U32, 3)})
    bad("plan_count_type.gguf", 0, "metadata 'qwen3moe.expert_count' is a float32, expected an integer",
        kv_over={"qwen3moe.expert_count": (F32V, 2.0)})
    bad("plan_count_range.gguf", 0, "metadata 'qwen3moe.embedding_length' = 4294967296 is out of range",
        kv_over={"qwen3moe.embedding_length": (U64, 1 << 32)})
    bad("plan_no_router.gguf", 0, "layer 0 has no MoE block: no tensor 'blk.0.ffn_gate_inp.weight'",
        drop=("ffn_gate_inp.weight",))
    bad("plan_missing_down.gguf", 0, "missing tensor 'blk.0.ffn_down_exps.weight'", drop=("ffn_down_exps.weight",))
    bad("plan_shape.gguf", 0, "tensor 'blk.0.ffn_up_exps.weight' has ne [32, 32, 3], expected [32, 32, 2]",
        shapes={"ffn_up_exps.weight": [32, 32, 3]})
    bad("plan_router_shape.gguf", 0, "tensor 'blk.0.ffn_gate_inp.weight' has ne [32, 3]",
        shapes={"ffn_gate_inp.weight": [32, 3]})
    bad("plan_ff_key.gguf", 0, "the experts are 32 wide, but qwen3moe.expert_feed_forward_length = 64",
        kv_over={"qwen3moe.expert_feed_forward_length": (U32, 64)})
    bad("plan_q6_k.gguf", 0, "tensor 'blk.0.ffn_down_exps.weight' has type Q6_K (14), not supported (F32, F16, BF16, "
        "Q8_0, Q4_0, Q4_K, MXFP4)", ff=256, tt=T_Q8_0, types={"ffn_down_exps.weight": T_Q6_K})
    bad("plan_router_q8_0.gguf", 0, "tensor 'blk.0.ffn_gate_inp.weight' has type Q8_0 (8), not supported for a router",
        types={"ffn_gate_inp.weight": T_Q8_0})
    bad("plan_dense_lead.gguf", 0, "layer 0 is a dense layer (deepseek2.leading_dense_block_count = 1)", arch="deepseek2",
        extra=[("deepseek2.leading_dense_block_count", U32, 1)])
    bad("plan_gating.gguf", 0, "deepseek2.expert_gating_func = 3 is not supported (1 softmax, 2 sigmoid)", arch="deepseek2",
        kv_over={"deepseek2.expert_gating_func": (U32, 3)})
    bad("plan_groups.gguf", 0, "deepseek2.expert_group_count = 2 needs deepseek2.expert_group_used_count", arch="deepseek2",
        extra=[("deepseek2.expert_group_count", U32, 2)])
    bad("plan_groups_used.gguf", 0, "deepseek2.expert_group_count = 2 and expert_group_used_count = 3 do not fit 2 experts",
        arch="deepseek2", extra=[("deepseek2.expert_group_count", U32, 2), ("deepseek2.expert_group_used_count", U32, 3)])
    bad("plan_norm_type.gguf", 0, "metadata 'deepseek2.expert_weights_norm' is a uint8, expected a bool", arch="deepseek2",
        extra=[("deepseek2.expert_weights_norm", U8, 1)])
    bad("plan_shared_missing.gguf", 0, "missing tensor 'blk.0.ffn_down_shexp.weight' (expert_shared_count > 0 needs the shared experts)",
        arch="glm4moe", drop=("ffn_down_shexp.weight",))
    bad("plan_gptoss_bias.gguf", 0, "missing tensor 'blk.0.ffn_gate_inp.bias' (gpt-oss's router bias)", arch="gpt-oss",
        drop=("ffn_gate_inp.bias",))
    bad("plan_shexp_gate.gguf", 0, "missing tensor 'blk.0.ffn_gate_inp_shexp.weight'", arch="qwen2moe",
        drop=("ffn_gate_inp_shexp.weight",))
    bad("plan_shexp_width.gguf", 0, "is 32 wide, but qwen2moe.expert_shared_feed_forward_length = 48", arch="qwen2moe",
        extra=[("qwen2moe.expert_shared_feed_forward_length", U32, 48)])
    bad("plan_scale_nan.gguf", 0, "metadata 'deepseek2.expert_weights_scale' = nan is not a finite float", arch="deepseek2",
        extra=[("deepseek2.expert_weights_scale", F32V, float("nan"))])
    bad("plan_ff_array.gguf", 0, "metadata 'qwen3moe.expert_feed_forward_length' is an array without an integer for layer 0",
        kv_over={"qwen3moe.expert_feed_forward_length": (ARR, (STR, ["32"]))})
    bad("plan_fused_odd.gguf", 0, "has an odd ne[1] = 63", drop=("ffn_gate_exps.weight", "ffn_up_exps.weight"),
        shapes={"ffn_gate_up_exps.weight": [32, 63, 2]})
    bad("plan_legacy_type.gguf", 0, "one type per expert set is supported", arch="llama",
        drop=("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"),
        shapes={"ffn_gate.0.weight": [32, 32], "ffn_gate.1.weight": [32, 32], "ffn_up.0.weight": [32, 32],
                "ffn_up.1.weight": [32, 32], "ffn_down.0.weight": [32, 32], "ffn_down.1.weight": [32, 32]},
        types={"ffn_up.1.weight": T_F16})
    return out


def fuzz_seeds():
    """Small valid models of every architecture and layout (the libFuzzer seeds)."""
    seeds = []
    for arch in ("llama", "qwen2moe", "qwen3moe", "deepseek2", "glm4moe", "gpt-oss", "olmoe"):
        kvs, ts = tiny(arch=arch, d=32, ff=32, E=2, k=1, tt=T_Q8_0)
        seeds.append(gguf_bytes(kvs, ts)[0])
    kvs, ts = tiny(arch="deepseek2", tt=T_MXFP4, drop=("ffn_gate_exps.weight", "ffn_up_exps.weight"),
                   shapes={"ffn_gate_up_exps.weight": [32, 64, 2]},
                   extra=[("deepseek2.expert_group_count", U32, 2), ("deepseek2.expert_group_used_count", U32, 1)])
    seeds.append(gguf_bytes(kvs, ts, alignment=32)[0])
    kvs, ts = tiny(arch="llama", tt=T_Q4_0, drop=("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"),
                   shapes={"ffn_%s.%d.weight" % (k, e): [32, 32] for k in ("gate", "up", "down") for e in range(2)})
    seeds.append(gguf_bytes(kvs, ts)[0])
    kvs, ts = tiny(d=256, ff=32, tt=T_Q4_K, types={"ffn_down_exps.weight": T_Q8_0})
    seeds.append(gguf_bytes(kvs + TYPED_KV + TOKENIZER_KV, ts, version=2)[0])
    return seeds


def main():
    out = os.path.join(HERE, "gguf")
    corpus = os.path.join(HERE, "corpus", "gguf")
    fz = os.path.join(HERE, "corpus", "fuzz", "gguf")
    for dpath in (out, corpus):
        if os.path.isdir(dpath):
            shutil.rmtree(dpath)
        os.makedirs(dpath)
    os.makedirs(fz, exist_ok=True)  # kept: it also holds inputs merged from fuzzing runs
    lines = [write_case(cs, out) for cs in CASES]
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("# case  layer  block types of the layer's matrices   (written by tests/gen_gguf.py)\n")
        f.write("\n".join(lines) + "\n")
    exp = ["# file<TAB>layer planned, or - for an error at open<TAB>words the message holds   (tests/gen_gguf.py)"]
    seen = set()
    for name, data, layer, words in malformed():
        assert name not in seen
        seen.add(name)
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
        exp.append("%s\t%s\t%s" % (name, "-" if layer is None else layer, words))
    with open(os.path.join(corpus, "expected.txt"), "w") as f:
        f.write("\n".join(exp) + "\n")
    fuzz_inputs = fuzz_seeds() + [data for _, data, _, _ in malformed() if data]
    for data in fuzz_inputs:
        with open(os.path.join(fz, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("total %d bytes in %s; %d malformed files, %d fuzz seeds" % (total, out, len(seen), len(fuzz_inputs)))


if __name__ == "__main__":
    main()
