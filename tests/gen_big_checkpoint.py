#!/usr/bin/python3
"""A Mixtral-shaped BF16 checkpoint of a few hundred MB for measuring the CLI's load paths
(README, "Loading a real layer"): 2 layers, d 1024, ff 3584, 8 experts, one shard per layer
(168 MiB each), random weights, and an input of 16 tokens. Not used by `make test`.

    /usr/bin/python3 tests/gen_big_checkpoint.py DIR
    build/moe run --model DIR --layer 1 --input DIR/x.npy --output /tmp/y.npy --stats [--mmap]
"""
import json
import os
import struct
import sys

import numpy as np

D, FF, E, LAYERS, T = 1024, 3584, 8, 2, 16


def bf16(a):
    """float32 -> bf16 bits, round to nearest even"""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    header, off = {}, 0
    for name, shape, raw in tensors:
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, raw in tensors:
            f.write(raw)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    weight_map = {}
    for layer in range(LAYERS):
        p = "model.layers.%d.block_sparse_moe." % layer
        ts = [(p + "gate.weight", (E, D), bf16(rng.standard_normal((E, D), np.float32) * 0.05).tobytes())]
        for e in range(E):
            for w, shape in (("w1", (FF, D)), ("w3", (FF, D)), ("w2", (D, FF))):
                a = rng.standard_normal(shape, np.float32) * 0.02
                ts.append((p + "experts.%d.%s.weight" % (e, w), shape, bf16(a).tobytes()))
        shard = "model-%05d-of-%05d.safetensors" % (layer + 1, LAYERS)
        write_safetensors(os.path.join(out, shard), ts)
        weight_map.update({name: shard for name, _, _ in ts})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1, sort_keys=True)
    cfg = dict(model_type="mixtral", hidden_size=D, intermediate_size=FF, num_local_experts=E,
               num_experts_per_tok=2, num_hidden_layers=LAYERS, hidden_act="silu")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    x = rng.standard_normal((T, D), np.float32)
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % x.shape
    hdr += " " * (64 - (10 + len(hdr) + 1) % 64) + "\n"
    with open(os.path.join(out, "x.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + x.tobytes())


if __name__ == "__main__":
    main()
