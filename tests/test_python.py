"""test_python.py - examples/moe.py (the ctypes binding of build/libmoe.so) against references
written here: a numpy float64 softmax top-k SwiGLU MoE with shared experts, numpy argsort for
the routing, and, where torch imports, a PyTorch Mixtral-style block in float64.

Tolerance: moe.h computes in fp32 from the same fp32 weights the float64 references use, with
K <= 64 terms per dot product: the error is fp32 rounding of those sums and of the gating
(measured below 1e-6 of max(1, max|ref|)); TOL = 1e-5 leaves a margin. The packed formats are
held to the bounds of README "Packed formats" (max error over max|ref|). The worst error of
each comparison is printed.

Usage: python3 tests/test_python.py    (makes build/libmoe.so first; MOE_LIB=path to use another)
Prints one line per check, "skipped: ..." for what a missing module prevents, and
"N passed, M failed"; exits 1 on a failure."""
import ctypes
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
if 'MOE_LIB' not in os.environ:
    subprocess.check_call(['make', '-s', '-C', ROOT, 'lib'])
sys.path.insert(0, os.path.join(ROOT, 'examples'))
import moe  # noqa: E402

TOL = 1e-5
passed = failed = 0


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok    %s%s' % (name, ' (%s)' % detail if detail else ''))
    else:
        failed += 1
        print('FAIL  %s%s' % (name, ': ' + detail if detail else ''))


def rel_err(y, ref):
    return float(np.max(np.abs(np.asarray(y, np.float64) - ref)) / max(1.0, np.max(np.abs(ref))))


def raises(fn, exc):
    try:
        fn()
    except exc as e:
        return e
    return None


# ---- the reference: softmax -> top-k -> renormalise -> SwiGLU experts, plus shared experts

def silu(z):
    return z / (1.0 + np.exp(-z))


def ref_moe(x, W, k, norm=True):
    """float64 MoE of x [T][d]; W holds float32 arrays as given to the layer."""
    x = x.astype(np.float64)
    R, G, U, D = (W[n].astype(np.float64) for n in ('router', 'gate', 'up', 'down'))
    logits = x @ R.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top = np.argsort(-p, axis=1, kind='stable')[:, :k]  # key descending, lower index on ties
    w = np.take_along_axis(p, top, 1)
    if norm:
        w = w / w.sum(1, keepdims=True)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = top[t, j]
            y[t] += w[t, j] * (D[e] @ (silu(G[e] @ x[t]) * (U[e] @ x[t])))
    if 'shared_down' in W:
        SG, SU, SD = (W[n].astype(np.float64)
                      for n in ('shared_gate_proj', 'shared_up', 'shared_down'))
        y += (silu(x @ SG.T) * (x @ SU.T)) @ SD.T
    return y, top, w, logits


def make_weights(rng, d, ff, E, S):
    s = 1.0 / np.sqrt(d)
    W = {'router': rng.normal(size=(E, d)), 'gate': s * rng.normal(size=(E, ff, d)),
         'up': s * rng.normal(size=(E, ff, d)), 'down': rng.normal(size=(E, d, ff)) / np.sqrt(ff)}
    if S:
        W.update(shared_gate_proj=s * rng.normal(size=(S, d)),
                 shared_up=s * rng.normal(size=(S, d)),
                 shared_down=rng.normal(size=(d, S)) / np.sqrt(S))
    return {n: a.astype(np.float32) for n, a in W.items()}


def clear_margins(x, W, k):
    """Each token's k-th and (k+1)-th probabilities apart by 1e-4, so fp32 rounding cannot
    change the experts chosen: the reference is then exact on them."""
    _, top, _, logits = ref_moe(x, W, k)
    p = np.sort(logits, 1)[:, ::-1]
    return bool(np.all(p[:, k - 1] - p[:, k] > 1e-4))


D, FF, E, K, NS, DS = 64, 32, 8, 2, 2, 24
CFG = dict(d_model=D, d_ff=FF, n_experts=E, top_k=K, norm='sum', n_shared=NS, d_shared=DS)


def data(seed, T):
    rng = np.random.default_rng(seed)
    W = make_weights(rng, D, FF, E, NS * DS)
    while True:
        x = rng.normal(size=(T, D)).astype(np.float32)
        if clear_margins(x, W, K):
            return x, W


def test_layout():
    sizes = {n: moe._lib.moe_lib_sizeof(n.encode()) for n in moe.STRUCTS}
    check('ctypes.sizeof of every struct = C sizeof',
          all(ctypes.sizeof(c) == sizes[n] for n, c in moe.STRUCTS.items()),
          ', '.join('%s %d' % (n, s) for n, s in sizes.items()))
    check('every field offset and size = C offsetof/sizeof', moe.layout_problems() == [])
    c = moe.c_layout()
    check('the C table lists every field of every mirrored struct',
          all([f for f, _, _ in c[n]] == [f for f, _ in cls._fields_]
              for n, cls in moe.STRUCTS.items()))

    class short_trace(ctypes.Structure):  # z_loss forgotten: the check must see it
        _fields_ = moe.moe_trace._fields_[:-1]

    class swapped_tensor(ctypes.Structure):  # dtype and layout in the wrong order
        f = moe.moe_tensor._fields_
        _fields_ = f[:2] + [f[3], f[2]] + f[4:]
    bad = moe.layout_problems({'moe_trace': short_trace})
    check('a mirror missing a field is caught', any('sizeof' in b for b in bad), '; '.join(bad))
    bad = moe.layout_problems({'moe_tensor': swapped_tensor})
    check('a mirror with two fields swapped is caught', any('moe_tensor.dtype' in b for b in bad),
          '; '.join(bad))


def test_forward():
    x, W = data(1, 37)
    ref, top, w, logits = ref_moe(x, W, K)
    layer = moe.Layer(CFG, W)
    y, tr = layer.forward(x, trace=True)
    err = rel_err(y, ref)
    check('forward = numpy float64 MoE (softmax top-2, SwiGLU, 2 shared experts)', err <= TOL,
          'max err %.2e of max(1, max|ref|), tol %.0e' % (err, TOL))
    check('trace experts = the reference top-k, slot order', np.array_equal(tr.experts, top))
    ew = rel_err(tr.weights, w)
    check('trace weights = the reference', ew <= TOL, 'max err %.2e' % ew)
    el = rel_err(tr.logits, logits)
    check('trace logits = x @ router.T', el <= TOL, 'max err %.2e' % el)
    check('trace expert_tokens add up to T k', int(tr.expert_tokens.sum()) == 37 * K)

    r = layer.route(x)
    order = np.argsort(-r.logits.astype(np.float64), axis=1, kind='stable')[:, :K]
    check('route experts = numpy argsort of its logits', np.array_equal(r.experts, order))
    check('route = forward trace (experts, weights, logits bits)',
          np.array_equal(r.experts, tr.experts) and np.array_equal(r.weights, tr.weights)
          and np.array_equal(r.logits, tr.logits))
    check('route aux_loss, z_loss = forward trace',
          r.aux_loss == tr.aux_loss and r.z_loss == tr.z_loss)

    # shapes: [B, T, d] in, the same out; one token as a vector; no token
    x3 = x[:36].reshape(4, 9, D)
    y3 = layer.forward(x3)
    check('[4, 9, d] input -> [4, 9, d] output, rows = the [36, d] call (bits)',
          y3.shape == (4, 9, D) and np.array_equal(y3.reshape(36, D), layer.forward(x[:36])))
    r3 = layer.route(x3)
    check('[4, 9, d] route -> experts [4, 9, k], logits [4, 9, E]',
          r3.experts.shape == (4, 9, K) and r3.logits.shape == (4, 9, E))
    check('a token alone = the same token in the batch (bits)',
          np.array_equal(layer.forward(x[5]), y[5]) and layer.forward(x[5]).shape == (D,))
    check('no token: an empty output', layer.forward(np.zeros((0, D))).shape == (0, D))
    x64 = x.astype(np.float64)
    check('float64 input is converted (the same bits as float32)',
          np.array_equal(layer.forward(x64), y))
    check('threads 1 and 2 give the same bits',
          np.array_equal(layer.forward(x, threads=1), layer.forward(x, threads=2)))

    # per-expert lists (the nn.ModuleList layout) = fused arrays
    Wl = dict(W, gate=list(W['gate']), up=list(W['up']), down=list(W['down']))
    check('per-expert lists give the bits of fused arrays',
          np.array_equal(moe.Layer(CFG, Wl).forward(x), y))
    # IN_OUT layout through Tensor
    down_t = np.ascontiguousarray(W['down'].transpose(0, 2, 1))
    Wt = dict(W, down=moe.Tensor(down_t, layout='in_out'))
    check("Tensor(layout='in_out') gives the bits of the [out][in] array",
          np.array_equal(moe.Layer(CFG, Wt).forward(x), y))

    # the routed forward with the route's own slots is the forward
    check('forward_routed(route\'s experts, weights) = forward (bits)',
          np.array_equal(layer.forward_routed(x, tr.experts, tr.weights), y))
    check('config read back with defaults, enums by name',
          layer.config['norm'] == 'sum' and layer.config['format'] == 'f32'
          and layer.config['d_shared'] == DS)
    b = moe.build_info()
    check('build_info', b['version'].count('.') == 2
          and b['isa'] in ('avx512', 'avx2', 'neon', 'scalar')
          and 'q8' in b['formats'], b['text'])
    layer.close()
    check('a closed layer raises', raises(lambda: layer.forward(x), ValueError) is not None)


def bf16_bits(a):
    """float32 -> bf16 bits, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_formats():
    x, W = data(2, 23)
    ref = ref_moe(x, W, K)[0]
    y32 = moe.Layer(CFG, W, format='f32').forward(x)
    check('format auto from f32 arrays = f32 (bits)',
          np.array_equal(moe.Layer(CFG, W).forward(x), y32))
    # bounds of README "Packed formats", max |err| / max |ref|
    for fmt, bound in (('f16', 3e-3), ('bf16', 2e-2), ('q8', 5e-2), ('q4', 0.3)):
        layer = moe.Layer(CFG, W, format=fmt, shared_format=fmt)
        y, tr = layer.forward(x, trace=True)
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        check('format %s within %g of max|ref|, same experts' % (fmt, bound),
              err <= bound and np.array_equal(tr.experts, ref_moe(x, W, K)[1])
              and layer.sizes['format'] == fmt, 'max err %.2e' % err)
    lb = moe.Layer(CFG, W, format='bf16', dot='bf16')
    check("dot='bf16' runs and reads back", lb.config['dot'] == 'bf16'
          and float(np.max(np.abs(lb.forward(x) - ref)) / np.max(np.abs(ref))) <= 3e-2)
    # bf16 bits in: packed as bf16 (auto), the bits of the f32 layer of the rounded weights
    Wb = {n: moe.Tensor(bf16_bits(a), dtype='bf16') for n, a in W.items()}
    Wr = {n: (bf16_bits(a).astype(np.uint32) << 16).view(np.float32) for n, a in W.items()}
    lbits = moe.Layer(CFG, Wb)
    check('bf16 bits packed as bf16 (auto) = f32 layer of the rounded weights (bits)',
          lbits.config['format'] == 'bf16'
          and np.array_equal(lbits.forward(x), moe.Layer(CFG, Wr, format='f32').forward(x)))
    Wh = {n: a.astype(np.float16) for n, a in W.items()}
    check('float16 arrays pack as f16 (auto)', moe.Layer(CFG, Wh).config['format'] == 'f16')


def test_errors():
    x, W = data(3, 4)
    e = raises(lambda: moe.Layer(dict(CFG, top_k=E + 1), W), moe.MoeError)
    check('top_k > n_experts: MoeError MOE_E_TOPK with moe_result_string',
          e is not None and e.name == 'MOE_E_TOPK' and e.code == moe.RESULTS['MOE_E_TOPK']
          and str(e) == moe.result_string(e.code), repr(str(e)) if e else 'no error')
    e = raises(lambda: moe.Layer(CFG, dict(W, gate=W['router'])), moe.MoeError)  # router as gate
    check('the router given as the experts\' gate: MOE_E_SIZE naming weights.gate',
          e is not None and e.name == 'MOE_E_SIZE' and 'weights.gate' in str(e),
          repr(str(e)) if e else '')
    e = raises(lambda: moe.Layer(CFG, dict(W, router=None)), moe.MoeError)
    check('no router: MOE_E_NO_ROUTER', e is not None and e.name == 'MOE_E_NO_ROUTER', str(e))
    e = raises(lambda: moe.Layer(dict(CFG, score='softmaxx'), W), ValueError)
    check('an unknown enum name: ValueError listing the names',
          e is not None and 'sigmoid' in str(e), str(e))
    e = raises(lambda: moe.Layer(dict(CFG, n_expert=4), W), TypeError)
    check('an unknown config key: TypeError', e is not None, str(e))
    e = raises(lambda: moe.Layer(CFG, dict(W, gate=list(W['gate'])[:3])), ValueError)
    check('a per-expert list of the wrong length: ValueError', e is not None, str(e))
    e = raises(lambda: moe.Layer(CFG, dict(W, gate=W['gate'].view(np.uint16))), ValueError)
    check('uint16 arrays without dtype=bf16: ValueError', e is not None, str(e))
    layer = moe.Layer(CFG, W)
    e = raises(lambda: layer.forward(np.zeros((3, D + 1))), ValueError)
    check('x of the wrong width: ValueError', e is not None, str(e))
    ex = np.full((4, K), E, np.int32)
    e = raises(lambda: layer.forward_routed(x, ex, np.ones((4, K))), moe.MoeError)
    check('forward_routed with expert id E: MOE_E_EXPERT',
          e is not None and e.name == 'MOE_E_EXPERT', str(e))
    e = raises(lambda: layer.forward(x, threads=-1), moe.MoeError)
    check('threads -1: MOE_E_THREADS', e is not None and e.name == 'MOE_E_THREADS', str(e))


def test_torch():
    try:
        import torch
        from torch import nn
    except ImportError:
        print('skipped: torch not installed (Debian python3-torch): the PyTorch comparison')
        return
    torch.manual_seed(0)
    d, ff, n_exp, k, T = 48, 40, 6, 2, 29

    class Expert(nn.Module):  # MixtralBlockSparseTop2MLP
        def __init__(self):
            super().__init__()
            self.w1 = nn.Linear(d, ff, bias=False)
            self.w2 = nn.Linear(ff, d, bias=False)
            self.w3 = nn.Linear(d, ff, bias=False)

        def forward(self, h):
            return self.w2(nn.functional.silu(self.w1(h)) * self.w3(h))

    class Block(nn.Module):  # MixtralSparseMoeBlock, inference
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(d, n_exp, bias=False)
            self.experts = nn.ModuleList([Expert() for _ in range(n_exp)])

        def forward(self, h):
            logits = self.gate(h)
            p = torch.softmax(logits, dim=-1, dtype=torch.float64)
            w, sel = torch.topk(p, k, dim=-1)
            w = w / w.sum(dim=-1, keepdim=True)
            y = torch.zeros_like(h)
            for e in range(n_exp):
                tok, slot = torch.where(sel == e)
                if len(tok):
                    y[tok] += w[tok, slot, None] * self.experts[e](h[tok])
            return y, sel, logits

    block = Block().double()
    with torch.no_grad():  # fp32-representable weights: both sides see the same values
        for prm in block.parameters():
            prm.copy_(prm.float().double())
    x = torch.randn(T, d, dtype=torch.float64).float()
    with torch.no_grad():
        ref, sel, logits = block(x.double())
    f32 = lambda t: t.detach().float().numpy()  # noqa: E731
    ex = block.experts
    layer = moe.Layer(dict(d_model=d, d_ff=ff, n_experts=n_exp, top_k=k, norm='sum'),
                      {'router': f32(block.gate.weight),
                       'gate': [f32(m.w1.weight) for m in ex],
                       'up': [f32(m.w3.weight) for m in ex],
                       'down': [f32(m.w2.weight) for m in ex]})
    y, tr = layer.forward(x.numpy(), trace=True)
    err = rel_err(y, ref.numpy())
    check('forward = PyTorch Mixtral-style block in float64', err <= TOL,
          'max err %.2e of max(1, max|ref|), tol %.0e' % (err, TOL))
    srt = np.sort(logits.numpy(), 1)[:, ::-1]
    clear = srt[:, k - 1] - srt[:, k] > 1e-4
    check('experts = torch.topk (tokens with a clear margin: %d of %d)' % (clear.sum(), T),
          np.array_equal(tr.experts[clear], sel.numpy()[clear]))
    el = rel_err(tr.logits, logits.numpy())
    check('logits = the block\'s gate', el <= TOL, 'max err %.2e' % el)


def test_enums():
    """Every enumerator moe.h declares reaches Python with its value (examples/moe_lib.c lists
    them by hand: this catches one added to moe.h and not there)."""
    import re
    h = open(os.path.join(ROOT, 'moe.h')).read()
    missing = []
    for t, body in re.findall(r'typedef enum (moe_\w+) \{(.*?)\} \1;', h, re.S):
        body = re.sub(r'/\*.*?\*/', '', body, flags=re.S)
        for name in re.findall(r'\b(MOE_[A-Z0-9_]+)\s*(?:=[^,]*)?(?:,|$)', body):
            if not name.endswith('_COUNT') and name not in moe.ENUMS.get(t, {}):
                missing.append('%s.%s' % (t, name))
    check('every enumerator of moe.h is in moe_lib_enum', not missing, ' '.join(missing))
    fields = re.search(r'typedef struct moe_config \{(.*?)\} moe_config;', h, re.S).group(1)
    enum_fields = dict((f, t) for t, f in re.findall(r'^\s*(moe_\w+) (\w+);', fields, re.M)
                       if t not in ('moe_task',))
    check('every enum field of moe_config takes names in Python',
          all(moe._FIELD_ENUM.get(f) == t for f, t in enum_fields.items()),
          ', '.join(sorted(enum_fields)))


def load_case(d, stem):
    base = os.path.join(ROOT, 'tests', d, stem)
    return [np.load(base + '.%s.npy' % n) for n in ('x', 'y', 'e', 'w')]


def test_checkpoints():
    """Layer.from_model against the transformers references committed in tests/checkpoints
    (tests/gen_checkpoints.py) and the float64 renderings of tests/gguf (tests/gen_gguf.py)."""
    ck = os.path.join(ROOT, 'tests', 'checkpoints')
    check('moe_layers(mixtral): every layer',
          moe.moe_layers(os.path.join(ck, 'mixtral')) == ['0', '1'])
    # Qwen2-MoE: a layer i is sparse where (i + 1) % decoder_sparse_step == 0 and i is not in
    # mlp_only_layers (step 2, mlp_only_layers [3], 4 layers: layer 1 only)
    got = moe.moe_layers(os.path.join(ck, 'qwen2_moe'))
    check('moe_layers(qwen2_moe) = decoder_sparse_step and mlp_only_layers', got == ['1'], str(got))
    # kimi_k2_int4 packs as q4, which runs on int8 activations: exact with format='f32'; as
    # stored, within README's q4-on-int8 bound (NMSE 1e-3, tests/test_cli.sh's NMSE_INT4)
    x, y, _, _ = [np.load(os.path.join(ck, 'kimi_k2_int4', 'kimi_k2_int4.1.%s.npy' % n))
                  for n in 'xyew']
    L = moe.Layer.from_model(os.path.join(ck, 'kimi_k2_int4'), 1)
    got = L.forward(x)
    nmse = float(((got - y) ** 2).sum() / (y.astype(np.float64) ** 2).sum())
    check('from_model(kimi_k2_int4) packs q4 as stored, NMSE <= 1e-3',
          L.sizes['format'] == 'q4' and nmse <= 1e-3, 'NMSE %.2e' % nmse)
    for case, layer, fmt in (('mixtral', 1, None), ('qwen2_moe', 1, None),
                             ('qwen3_moe_fp8', 1, None), ('kimi_k2_int4', 1, 'f32'),
                             ('gpt_oss_mxfp4', 0, None), ('deepseek_v3', 1, None)):
        x, y, e, w = [np.load(os.path.join(ck, case, '%s.%d.%s.npy' % (case, layer, n)))
                      for n in 'xyew']
        L = moe.Layer.from_model(os.path.join(ck, case), layer, format=fmt)
        got, tr = L.forward(x, trace=True)
        err = rel_err(got, y)
        check('from_model(%s, %d, format=%s) = transformers' % (case, layer, fmt),
              err <= TOL and np.array_equal(tr.experts, e) and got.shape == y.shape,
              'max err %.2e of max(1, max|ref|), tol %.0e' % (err, TOL))
        Lm = moe.Layer.from_model(os.path.join(ck, case), layer, format=fmt, mmap=True)
        check('from_model(%s, mmap=True): the same bits' % case,
              np.array_equal(Lm.forward(x).view(np.uint32), got.view(np.uint32)))
    # an expert subset: the two halves of Mixtral's 8 experts sum to the whole layer (fp32
    # rounding of one more addition apart)
    x, y, _, _ = [np.load(os.path.join(ck, 'mixtral', 'mixtral.1.%s.npy' % n)) for n in 'xyew']
    lo = moe.Layer.from_model(os.path.join(ck, 'mixtral'), 1, expert_begin=0, expert_count=4)
    hi = moe.Layer.from_model(os.path.join(ck, 'mixtral'), '1', expert_begin=4)
    err = rel_err(lo.forward(x) + hi.forward(x), y)
    check('from_model expert subsets 0..3 + 4..7 = the whole layer', err <= TOL,
          'max err %.2e' % err)
    check('a subset holds the whole router', lo.n_experts == 8 and lo.config['expert_count'] == 4)
    # a format: bf16 packing of an f32 checkpoint is the README's bf16 bound away
    L = moe.Layer.from_model(os.path.join(ck, 'mixtral'), 1, format='bf16')
    check('from_model(format=bf16) packs bf16', L.sizes['format'] == 'bf16')
    gg = os.path.join(ROOT, 'tests', 'gguf')
    for case, layer, tol in (('qwen3moe_q8_0', 1, 5e-2), ('deepseek2_q4_k', 1, 1e-5),
                             ('gptoss_mxfp4', 0, 1e-5)):
        path = os.path.join(gg, case + '.gguf')
        x, y, e = [np.load(os.path.join(gg, '%s.%s.npy' % (case, n))) for n in 'xye']
        check('moe_layers(%s.gguf) has block %d' % (case, layer), str(layer) in moe.moe_layers(path))
        got, tr = moe.Layer.from_model(path, layer).forward(x, trace=True)
        err = rel_err(got, y)
        check('from_model(%s.gguf, %d) = its float64 rendering' % (case, layer),
              err <= tol and np.array_equal(tr.experts, e), 'max err %.2e, tol %.0e' % (err, tol))
    # errors name what is wrong, and nothing is left half-made
    for args, words in (((os.path.join(ck, 'no_such_model'), 1), 'no_such_model'),
                        ((os.path.join(ck, 'mixtral'), 7), '7'),
                        ((os.path.join(ck, 'qwen2_moe'), 0), '0'),
                        ((os.path.join(gg, 'qwen3moe_q8_0.gguf'), 'one'), "'one'"),
                        ((os.path.join(ck, 'mixtral'), 1, None, None, 6, 4), 'expert')):
        e = raises(lambda: moe.Layer.from_model(*args), moe.LoadError)
        check('from_model%s: LoadError naming %s' % (args[1:], words),
              e is not None and words in str(e), str(e))
    e = raises(lambda: moe.moe_layers(os.path.join(ck, 'no_such_model')), moe.LoadError)
    check('moe_layers(a missing directory): LoadError naming it',
          e is not None and 'no_such_model' in str(e), str(e))
    # deepseek2: block_count 2, leading_dense_block_count 1 (tests/gguf/*.manifest)
    got = moe.moe_layers(os.path.join(gg, 'deepseek2_q4_k.gguf'))
    check('moe_layers(deepseek2 GGUF) leaves out the leading dense block', got == ['1'], str(got))
    # an architecture moe_gguf.h does not know (the same file, one letter of its name changed)
    import tempfile
    data = open(os.path.join(gg, 'qwen3moe_q8_0.gguf'), 'rb').read()
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, 'bad.gguf')
        open(bad, 'wb').write(data.replace(b'qwen3moe', b'qwen9moe'))
        e = raises(lambda: moe.moe_layers(bad), moe.LoadError)
        check('moe_layers(an unknown architecture): LoadError naming it, not an empty list',
              e is not None and "'qwen9moe' is not supported" in str(e), str(e))
    e = raises(lambda: moe.Layer.from_model(os.path.join(ck, 'mixtral'), 1, format='q9'),
               ValueError)
    check('from_model(format=q9): ValueError', e is not None, str(e))


if __name__ == '__main__':
    for t in (test_layout, test_enums, test_forward, test_formats, test_errors, test_checkpoints,
              test_torch):
        t()
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)
