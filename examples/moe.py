"""moe.py - moe.h from Python: a ctypes binding of build/libmoe.so (`make lib`), numpy in and out.

    import numpy as np, moe
    layer = moe.Layer(dict(d_model=64, d_ff=32, n_experts=8, top_k=2, norm='sum'),
                      weights={'router': R, 'gate': G, 'up': U, 'down': D}, format='bf16')
    y = layer.forward(x)        # x [..., d_model] -> y, the same shape, float32
    tr = layer.route(x)         # tr.experts, tr.weights [..., top_k]; tr.logits [..., n_experts]
    layer = moe.Layer.from_model('Qwen3-30B-A3B', 12)     # a checkpoint directory or .gguf

Config keys are moe_config's fields, enum values by name ('sigmoid', 'top2_sum', 'q8') or
number; weight keys are moe_weights' fields (README "Weights as checkpoints store them"): an
array holds every expert ([E][out][in], the fused layout), a list of E arrays is the per-expert
layout, and Tensor(...) states a layout ('in_out') or bf16 bits. float32 and float16 arrays are
passed as they are, bf16 as uint16 bits with Tensor(a, dtype='bf16'), float64 is converted to
float32. Every view states its size, so a tensor of the wrong shape is an error that names it.

The structs below mirror moe.h field for field. At import the module compares each offset and
size with the compiler's (moe_lib_field, moe_lib_sizeof in examples/moe_lib.c), so a header
that grew a field stops the import, naming the field, instead of misreading memory.

A layer is read-only once created: calls from several Python threads may run at once (ctypes
releases the GIL during the call; each call brings its own workspace). Errors of the library
raise MoeError with moe_result_string's sentence (moe_layer_create_msg's, which names the
tensor, for creation); bad arguments on the Python side raise ValueError or TypeError.

The library is found at $MOE_LIB, else ../build/libmoe.so or ./libmoe.so beside this file,
else through the loader's search path (ctypes.util.find_library('moe')).
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ['Layer', 'Tensor', 'Trace', 'MoeError', 'LoadError', 'build_info', 'result_string',
           'moe_layers', 'SLOT_NONE', 'SLOT_IDENTITY']

c_int, c_float, c_double, c_size_t, c_void_p = (ctypes.c_int, ctypes.c_float, ctypes.c_double,
                                                ctypes.c_size_t, ctypes.c_void_p)
c_enum = ctypes.c_int  # C enums are int-sized (the layout check below would say otherwise)

moe_task = ctypes.CFUNCTYPE(None, c_void_p, c_int)
moe_parallel_for = ctypes.CFUNCTYPE(None, c_void_p, c_int, moe_task, c_void_p)
moe_on_packed = ctypes.CFUNCTYPE(None, c_void_p, c_void_p, c_size_t)


class moe_config(ctypes.Structure):
    _fields_ = [
        ('d_model', c_int), ('d_ff', c_int), ('n_experts', c_int), ('top_k', c_int),
        ('n_shared', c_int), ('d_shared', c_int), ('shared_gate', c_enum),
        ('score', c_enum), ('router_bias', c_int), ('select_bias', c_int),
        ('n_group', c_int), ('topk_group', c_int), ('group_score', c_enum),
        ('norm', c_enum), ('norm_eps', c_float), ('norm_p', c_float), ('scale', c_float),
        ('jitter_eps', c_float), ('capacity', c_int), ('drop', c_enum),
        ('weight_on_input', c_int),
        ('ffn', c_enum), ('act', c_enum), ('act_alpha', c_float), ('act_limit', c_float),
        ('expert_bias', c_int),
        ('format', c_enum), ('shared_format', c_enum), ('dot', c_enum),
        ('expert_begin', c_int), ('expert_count', c_int),
        ('parallel_for', moe_parallel_for), ('pool', c_void_p), ('pool_threads', c_int),
        ('logit_softcap', c_float), ('group_fill', c_enum), ('scale_on_sum', c_int),
        ('shared_combine', c_enum), ('shared_act_limit', c_float), ('n_zero_experts', c_int),
        ('output_bias', c_int), ('out_norm', c_enum), ('out_norm_eps', c_float),
        ('d_latent', c_int), ('router_in_norm', c_int), ('expert_in_norm', c_int),
        ('in_norm_eps', c_float), ('expert_scale', c_int), ('shared_router', c_int),
    ]


class moe_tensor(ctypes.Structure):
    _fields_ = [('data', c_void_p), ('per_expert', ctypes.POINTER(c_void_p)),
                ('dtype', c_enum), ('layout', c_enum), ('n_elems', c_size_t),
                ('scale', c_void_p), ('scale_per_expert', ctypes.POINTER(c_void_p)),
                ('scale_dtype', c_enum), ('block_out', c_int), ('block_in', c_int)]


class moe_weights(ctypes.Structure):
    _fields_ = [
        ('router', moe_tensor), ('router_bias', moe_tensor), ('select_bias', moe_tensor),
        ('gate', moe_tensor), ('up', moe_tensor), ('gate_up', moe_tensor), ('down', moe_tensor),
        ('gate_up_split', c_enum),
        ('gate_bias', moe_tensor), ('up_bias', moe_tensor), ('gate_up_bias', moe_tensor),
        ('down_bias', moe_tensor),
        ('shared_gate_proj', moe_tensor), ('shared_up', moe_tensor),
        ('shared_gate_up', moe_tensor), ('shared_down', moe_tensor),
        ('shared_gate_up_split', c_enum),
        ('shared_gate', moe_tensor),
        ('on_packed', moe_on_packed), ('user', c_void_p),
        ('output_bias', moe_tensor), ('out_norm', moe_tensor),
        ('latent_in', moe_tensor), ('latent_out', moe_tensor),
        ('router_in_scale', moe_tensor), ('expert_in_norm', moe_tensor),
        ('expert_scale', moe_tensor),
    ]


class moe_packed_sizes(ctypes.Structure):
    _fields_ = [('router', c_size_t), ('expert', c_size_t), ('experts', c_size_t),
                ('shared', c_size_t), ('total', c_size_t),
                ('format', c_enum), ('shared_format', c_enum),
                ('bits_per_weight', c_double), ('shared_bits_per_weight', c_double)]


class moe_workspace(ctypes.Structure):
    _fields_ = [('data', c_void_p), ('size', c_size_t), ('n_threads', c_int)]


class moe_trace(ctypes.Structure):
    _fields_ = [('expert', c_void_p), ('weight', c_void_p), ('logits', c_void_p),
                ('expert_tokens', c_void_p), ('mean_prob', c_void_p),
                ('n_dropped', c_size_t), ('aux_loss', c_double), ('z_loss', c_double)]


class moe_build(ctypes.Structure):
    _fields_ = [('version_major', c_int), ('version_minor', c_int), ('version_patch', c_int),
                ('isa', ctypes.c_char_p), ('panel_width', c_int), ('openmp', c_int),
                ('bf16_dot_hw', c_int), ('formats', ctypes.c_char_p), ('text', ctypes.c_char_p)]


STRUCTS = {c.__name__: c for c in (moe_config, moe_tensor, moe_weights, moe_packed_sizes,
                                   moe_workspace, moe_trace, moe_build)}


def _find_library():
    if os.environ.get('MOE_LIB'):
        return os.environ['MOE_LIB']
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.path.join(here, '..', 'build', 'libmoe.so'), os.path.join(here, 'libmoe.so')):
        if os.path.exists(p):
            return p
    if ctypes.util.find_library('moe'):
        return ctypes.util.find_library('moe')
    raise ImportError('moe: libmoe.so not found: run `make lib` (build/libmoe.so) or set MOE_LIB')


_lib = ctypes.CDLL(_find_library())

_P = ctypes.POINTER
for _name, _res, _args in [
        ('moe_result_string', ctypes.c_char_p, [c_int]),
        ('moe_layer_create_msg', c_int, [_P(c_void_p), _P(moe_config), _P(moe_weights),
                                         ctypes.c_char_p, c_size_t]),
        ('moe_layer_free', None, [c_void_p]),
        ('moe_layer_config', _P(moe_config), [c_void_p]),
        ('moe_layer_packed_bytes', c_size_t, [c_void_p]),
        ('moe_layer_sizes', c_int, [c_void_p, _P(moe_packed_sizes)]),
        ('moe_workspace_size', c_int, [c_void_p, c_size_t, _P(c_size_t)]),
        ('moe_forward', c_int, [c_void_p, c_void_p, c_size_t, c_void_p, _P(moe_workspace),
                                _P(moe_trace)]),
        ('moe_route', c_int, [c_void_p, c_void_p, c_size_t, _P(moe_workspace), _P(moe_trace)]),
        ('moe_forward_routed', c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_void_p,
                                       c_void_p, _P(moe_workspace)]),
        ('moe_build_info', _P(moe_build), []),
        ('moe_lib_sizeof', c_size_t, [ctypes.c_char_p]),
        ('moe_lib_field', c_int, [c_int, _P(ctypes.c_char_p), _P(ctypes.c_char_p),
                                  _P(c_size_t), _P(c_size_t)]),
        ('moe_lib_enum', c_int, [c_int, _P(ctypes.c_char_p), _P(ctypes.c_char_p), _P(c_int)]),
        ('moe_lib_moe_layers', c_int, [ctypes.c_char_p, ctypes.c_char_p, c_size_t,
                                       ctypes.c_char_p, c_size_t]),
        ('moe_lib_load_layer', c_int, [ctypes.c_char_p, ctypes.c_char_p, c_int, c_int, c_int,
                                       c_int, c_int, _P(c_void_p), ctypes.c_char_p, c_size_t])]:
    _f = getattr(_lib, _name)
    _f.restype, _f.argtypes = _res, _args


def c_layout():
    """The library's struct layouts: {struct: [(field, offset, size), ...]} in declaration order."""
    out, i = {}, 0
    t, n, off, sz = ctypes.c_char_p(), ctypes.c_char_p(), c_size_t(), c_size_t()
    while _lib.moe_lib_field(i, t, n, off, sz):
        out.setdefault(t.value.decode(), []).append((n.value.decode(), off.value, sz.value))
        i += 1
    return out


def layout_problems(structs=None):
    """Differences between ctypes mirrors ({name: Structure}, default: this module's) and the
    library's layouts; an empty list when they agree."""
    structs = STRUCTS if structs is None else structs
    c, bad = c_layout(), []
    for name, cls in structs.items():
        size = _lib.moe_lib_sizeof(name.encode())
        if size != ctypes.sizeof(cls):
            bad.append('%s: sizeof %d in C, %d here' % (name, size, ctypes.sizeof(cls)))
        mine = [(f[0], getattr(cls, f[0]).offset, getattr(cls, f[0]).size) for f in cls._fields_]
        theirs = c.get(name, [])
        for a, b in zip(theirs, mine):
            if a != b:
                bad.append('%s.%s: offset %d size %d in C; here %s.%s at %d size %d'
                           % ((name,) + a + (name,) + b))
                break
        if len(theirs) != len(mine):
            bad.append('%s: %d fields in C, %d here' % (name, len(theirs), len(mine)))
    return bad


_problems = layout_problems()
if _problems:
    raise ImportError('moe: the ctypes structs do not match this libmoe.so (rebuild it with '
                      '`make lib`, or update moe.py): ' + '; '.join(_problems))


def _enums():
    out, i = {}, 0
    t, n, v = ctypes.c_char_p(), ctypes.c_char_p(), c_int()
    while _lib.moe_lib_enum(i, t, n, v):
        out.setdefault(t.value.decode(), {})[n.value.decode()] = v.value
        i += 1
    return out


ENUMS = _enums()  # {'moe_score': {'MOE_SCORE_SOFTMAX': 0, ...}, ...}, from the library
RESULTS = ENUMS['moe_result']
SLOT_NONE = ENUMS['slot']['MOE_SLOT_NONE']
SLOT_IDENTITY = ENUMS['slot']['MOE_SLOT_IDENTITY']

# enum type -> the prefix its names drop ('softmax_topk' is MOE_SCORE_SOFTMAX_TOPK)
_PREFIX = {'moe_score': 'MOE_SCORE_', 'moe_group_score': 'MOE_GROUP_', 'moe_norm': 'MOE_NORM_',
           'moe_drop': 'MOE_DROP_', 'moe_ffn': 'MOE_FFN_', 'moe_act': 'MOE_ACT_',
           'moe_shared_gate': 'MOE_SHARED_GATE_', 'moe_format': 'MOE_FORMAT_',
           'moe_dot': 'MOE_DOT_', 'moe_dtype': 'MOE_', 'moe_layout': 'MOE_',
           'moe_gate_up_split': 'MOE_SPLIT_', 'moe_group_fill': 'MOE_GROUP_FILL_',
           'moe_shared_combine': 'MOE_SHARED_', 'moe_out_norm': 'MOE_OUT_NORM_'}
_NAMES = {t: {n[len(p):].lower(): v for n, v in ENUMS[t].items()} for t, p in _PREFIX.items()}
_FIELD_ENUM = {'shared_gate': 'moe_shared_gate', 'score': 'moe_score',
               'group_score': 'moe_group_score', 'norm': 'moe_norm', 'drop': 'moe_drop',
               'ffn': 'moe_ffn', 'act': 'moe_act', 'format': 'moe_format',
               'shared_format': 'moe_format', 'dot': 'moe_dot',
               'gate_up_split': 'moe_gate_up_split', 'shared_gate_up_split': 'moe_gate_up_split',
               'group_fill': 'moe_group_fill', 'shared_combine': 'moe_shared_combine',
               'out_norm': 'moe_out_norm'}
# host thread pools need C callbacks; from Python, threads come from OpenMP (threads=)
_NOT_FROM_PYTHON = ('parallel_for', 'pool', 'pool_threads')


def _enum(kind, field, v):
    if isinstance(v, str):
        names = _NAMES[kind]
        if v.lower() not in names:
            raise ValueError('moe: %s = %r: not one of %s' % (field, v, ', '.join(sorted(names))))
        return names[v.lower()]
    return int(v)


def _enum_name(kind, v):
    for n, x in _NAMES[kind].items():
        if x == v:
            return n
    return v


def result_string(code):
    """moe_result_string: the sentence for a result code."""
    return _lib.moe_result_string(code).decode()


class MoeError(Exception):
    """An error of moe.h: .code is the moe_result (negative), .name its enum name."""

    def __init__(self, code, message=None):
        self.code = code
        self.name = next((n for n, v in RESULTS.items() if v == code), str(code))
        Exception.__init__(self, message or result_string(code))


class LoadError(Exception):
    """A checkpoint that moe_model.h or moe_gguf.h could not turn into a layer (a missing file,
    key or tensor, an unsupported architecture, a dense layer); the message names it."""


def moe_layers(path):
    """The MoE layers of a checkpoint (a Hugging Face model directory or a .gguf file), as the
    names Layer.from_model takes: ['1', '3'], ['encoder.1', ...]; a GGUF file's block indices."""
    err = ctypes.create_string_buffer(4096)
    size = 1 << 12
    while True:
        names = ctypes.create_string_buffer(size)
        n = _lib.moe_lib_moe_layers(os.fsencode(path), names, size, err, len(err))
        if n >= 0:
            return names.value.decode().split() if n else []
        if b'too small' not in err.value or size >= 1 << 24:
            raise LoadError(err.value.decode(errors='replace'))
        size *= 16


def _check(r):
    if r != 0:
        raise MoeError(r)


def build_info():
    """moe_build_info() as a dict: version, isa, panel_width, openmp, bf16_dot_hw, formats, text."""
    b = _lib.moe_build_info().contents
    return {'version': '%d.%d.%d' % (b.version_major, b.version_minor, b.version_patch),
            'isa': b.isa.decode(), 'panel_width': b.panel_width, 'openmp': bool(b.openmp),
            'bf16_dot_hw': bool(b.bf16_dot_hw), 'formats': b.formats.decode().split(),
            'text': b.text.decode()}


class Tensor:
    """A weight with a stated layout ('out_in', the default, as nn.Linear; or 'in_out') or
    dtype ('f32', 'f16', or 'bf16' for uint16/int16 arrays of bf16 bits). data: one array of
    every expert, or a list of E arrays (one an expert)."""

    def __init__(self, data, layout='out_in', dtype=None):
        self.data, self.layout, self.dtype = data, layout, dtype


def _array(a, dtype, what):
    a = np.asarray(a)
    if dtype is None:
        if a.dtype.name == 'bfloat16':  # ml_dtypes' bfloat16
            a, dtype = a.view(np.uint16), 'bf16'
        elif a.dtype == np.float16:
            dtype = 'f16'
        elif a.dtype in (np.uint16, np.int16):
            raise ValueError("moe: %s is %s: for bf16 bits say Tensor(a, dtype='bf16')"
                             % (what, a.dtype))
        else:
            a, dtype = a.astype(np.float32, copy=False), 'f32'
    elif dtype == 'bf16':
        if a.dtype.itemsize != 2 or a.dtype == np.float16:
            raise ValueError('moe: %s: bf16 data must be 2-byte integers (the bits), not %s'
                             % (what, a.dtype))
        a = a.view(np.uint16)
    elif dtype in ('f16', 'f32'):
        a = a.astype(np.float16 if dtype == 'f16' else np.float32, copy=False)
    else:
        raise ValueError("moe: %s: dtype %r is not 'f32', 'f16' or 'bf16'" % (what, dtype))
    return np.ascontiguousarray(a), _NAMES['moe_dtype'][dtype]


class Trace:
    """A routing record (moe_trace): experts, weights [..., top_k] in slot order; logits
    [..., n_experts]; expert_tokens, mean_prob [n_experts]; n_dropped, aux_loss, z_loss."""

    def __init__(self, lead, k, E):
        T = int(np.prod(lead, dtype=np.int64))
        self.experts = np.empty((T, k), np.int32)
        self.weights = np.empty((T, k), np.float32)
        self.logits = np.empty((T, E), np.float32)
        self.expert_tokens = np.empty(E, np.int64)
        self.mean_prob = np.empty(E, np.float32)
        self._lead = lead
        self.c = moe_trace(self.experts.ctypes.data, self.weights.ctypes.data,
                           self.logits.ctypes.data, self.expert_tokens.ctypes.data,
                           self.mean_prob.ctypes.data)

    def _done(self):
        c, lead = self.c, self._lead
        self.n_dropped, self.aux_loss, self.z_loss = int(c.n_dropped), c.aux_loss, c.z_loss
        self.experts = self.experts.reshape(lead + self.experts.shape[1:])
        self.weights = self.weights.reshape(lead + self.weights.shape[1:])
        self.logits = self.logits.reshape(lead + self.logits.shape[1:])
        del self.c, self._lead
        return self

    def __repr__(self):
        return ('Trace(experts=%r, weights=%r, n_dropped=%d, aux_loss=%g, z_loss=%g)'
                % (self.experts, self.weights, self.n_dropped, self.aux_loss, self.z_loss))


class Layer:
    """One MoE layer, packed by moe_layer_create.

    Layer(config, weights, threads=0, **fields): config is a dict of moe_config fields, and
    keyword fields are merged into it (format='q8', norm='sum', ...). threads is the OpenMP
    thread count of every call (0 = all), which a call's own threads= overrides; the output
    is the same for every count."""

    def __init__(self, config=None, weights=None, threads=0, **fields):
        cfg = dict(config or {})
        cfg.update(fields)
        c = moe_config()
        for k, v in cfg.items():
            if k in _NOT_FROM_PYTHON or k not in dict(moe_config._fields_):
                raise TypeError('moe: %r is not a moe_config field the binding sets' % k)
            if k in _FIELD_ENUM:
                v = _enum(_FIELD_ENUM[k], k, v)
            setattr(c, k, float(v) if isinstance(getattr(c, k), float) else int(v))
        w, keep = moe_weights(), []
        for k, v in (weights or {}).items():
            if v is None:  # absent, as a view with NULL pointers
                continue
            if k in ('gate_up_split', 'shared_gate_up_split'):
                setattr(w, k, _enum(_FIELD_ENUM[k], k, v))
            elif k in dict(moe_weights._fields_) and k not in ('on_packed', 'user'):
                setattr(w, k, self._tensor(k, v, c.n_experts, keep))
            else:
                raise TypeError('moe: %r is not a moe_weights tensor' % k)
        self._L = c_void_p()
        msg = ctypes.create_string_buffer(1024)
        r = _lib.moe_layer_create_msg(ctypes.byref(self._L), c, w, msg, len(msg))
        del keep  # packed: the sources are not referenced any more
        if r != 0:
            raise MoeError(r, msg.value.decode(errors='replace'))
        self._created(threads)

    def _created(self, threads):
        """The fields every Layer keeps once self._L holds a created layer."""
        self.threads = threads
        rc = _lib.moe_layer_config(self._L).contents
        self.d_model, self.n_experts, self.top_k = rc.d_model, rc.n_experts, rc.top_k

    @classmethod
    def from_model(cls, path, layer, format=None, shared_format=None, expert_begin=0,
                   expert_count=0, mmap=False, threads=0):
        """Layer `layer` of a checkpoint: a Hugging Face model directory (config.json and
        safetensors, as build/moe run --model reads it) or a .gguf file (layer = block index).
        format, shared_format: 'bf16', 'q8', ... (None = as the checkpoint stores them);
        expert_begin, expert_count: the experts the layer holds (0, 0 = all); mmap=True maps
        the files instead of reading them. Raises LoadError with the loader's message."""
        fmt = 0 if format is None else _enum('moe_format', 'format', format)
        sfmt = 0 if shared_format is None else _enum('moe_format', 'shared_format', shared_format)
        self = cls.__new__(cls)
        self._L = c_void_p()
        err = ctypes.create_string_buffer(8192)
        r = _lib.moe_lib_load_layer(os.fsencode(path), str(layer).encode(), fmt, sfmt,
                                    int(expert_begin), int(expert_count), 1 if mmap else 0,
                                    ctypes.byref(self._L), err, len(err))
        if r != 0:
            raise LoadError(err.value.decode(errors='replace'))
        self._created(threads)
        return self

    @staticmethod
    def _tensor(name, v, n_experts, keep):
        t = moe_tensor()
        layout, dtype = 'out_in', None
        if isinstance(v, Tensor):
            v, layout, dtype = v.data, v.layout, v.dtype
        t.layout = _enum('moe_layout', name + ' layout', layout)
        if isinstance(v, (list, tuple)):  # per expert: E pointers, each buffer the same size
            if len(v) != n_experts:
                raise ValueError('moe: weights %s: %d arrays given, one per expert (%d) needed'
                                 % (name, len(v), n_experts))
            arrs = [_array(a, dtype, 'weights %s[%d]' % (name, e)) for e, a in enumerate(v)]
            if len({a.size for a, _ in arrs}) != 1 or len({d for _, d in arrs}) != 1:
                raise ValueError('moe: weights %s: the per-expert arrays differ in size or dtype'
                                 % name)
            ptrs = (c_void_p * len(arrs))(*[a.ctypes.data for a, _ in arrs])
            keep.extend([arrs, ptrs])
            t.per_expert = ctypes.cast(ptrs, ctypes.POINTER(c_void_p))
            t.n_elems, t.dtype = arrs[0][0].size, arrs[0][1]
        else:
            a, t.dtype = _array(v, dtype, 'weights ' + name)
            keep.append(a)
            t.data, t.n_elems = a.ctypes.data, a.size
        return t

    def close(self):
        """Frees the packed weights (also done when the layer is collected)."""
        if getattr(self, '_L', None) and self._L.value:
            _lib.moe_layer_free(self._L)
            self._L = c_void_p()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _live(self):
        if not self._L.value:
            raise ValueError('moe: the layer is closed')
        return self._L

    def _rows(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim < 1 or x.shape[-1] != self.d_model:
            raise ValueError('moe: x has shape %s: the last dimension must be d_model = %d'
                             % (x.shape, self.d_model))
        lead = x.shape[:-1]
        return x.reshape(-1, self.d_model), lead

    def _workspace(self, T, threads):
        n = c_size_t()
        _check(_lib.moe_workspace_size(self._live(), T, ctypes.byref(n)))
        buf = np.empty(max(n.value, 1), np.uint8)
        nth = self.threads if threads is None else threads
        return moe_workspace(buf.ctypes.data, n.value, int(nth)), buf

    def forward(self, x, trace=False, threads=None):
        """y = MoE(x) for x [..., d_model]; with trace=True, (y, Trace)."""
        x2, lead = self._rows(x)
        y = np.empty_like(x2)
        ws, buf = self._workspace(x2.shape[0], threads)
        tr = Trace(lead, self.top_k, self.n_experts) if trace else None
        _check(_lib.moe_forward(self._L, x2.ctypes.data, x2.shape[0], y.ctypes.data,
                                ctypes.byref(ws), ctypes.byref(tr.c) if tr else None))
        del buf
        y = y.reshape(lead + (self.d_model,))
        return (y, tr._done()) if trace else y

    def route(self, x, threads=None):
        """Routing only (moe_route): the Trace of x [..., d_model]; no expert runs."""
        x2, lead = self._rows(x)
        ws, buf = self._workspace(x2.shape[0], threads)
        tr = Trace(lead, self.top_k, self.n_experts)
        _check(_lib.moe_route(self._L, x2.ctypes.data, x2.shape[0], ctypes.byref(ws),
                              ctypes.byref(tr.c)))
        del buf
        return tr._done()

    def forward_routed(self, x, experts, weights, threads=None):
        """moe_forward_routed: the forward pass with the caller's slots, experts (global ids,
        SLOT_NONE or SLOT_IDENTITY) and weights, each [..., top_k]."""
        x2, lead = self._rows(x)
        shape = lead + (self.top_k,)
        e = np.ascontiguousarray(experts, dtype=np.int32)
        w = np.ascontiguousarray(weights, dtype=np.float32)
        if e.shape != shape or w.shape != shape:
            raise ValueError('moe: experts %s and weights %s must both be %s'
                             % (e.shape, w.shape, shape))
        y = np.empty_like(x2)
        ws, buf = self._workspace(x2.shape[0], threads)
        _check(_lib.moe_forward_routed(self._L, x2.ctypes.data, x2.shape[0], e.ctypes.data,
                                       w.ctypes.data, y.ctypes.data, ctypes.byref(ws)))
        del buf
        return y.reshape(lead + (self.d_model,))

    @property
    def config(self):
        """moe_layer_config: the config with every default filled in, enums by name."""
        c = _lib.moe_layer_config(self._live()).contents
        out = {}
        for k, _ in moe_config._fields_:
            if k not in _NOT_FROM_PYTHON:
                v = getattr(c, k)
                out[k] = _enum_name(_FIELD_ENUM[k], v) if k in _FIELD_ENUM else v
        return out

    @property
    def packed_bytes(self):
        return _lib.moe_layer_packed_bytes(self._live())

    @property
    def sizes(self):
        """moe_layer_sizes: packed bytes by part and bits per weight."""
        s = moe_packed_sizes()
        _check(_lib.moe_layer_sizes(self._live(), ctypes.byref(s)))
        out = {k: getattr(s, k) for k, _ in moe_packed_sizes._fields_}
        out['format'] = _enum_name('moe_format', s.format)
        out['shared_format'] = _enum_name('moe_format', s.shared_format)
        return out
