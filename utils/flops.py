"""FLOPs / MACs and parameter counts of registry models, in the official tool's convention or a correct one.

Usage: python -m utils.flops NAME... [--official] [--input-size S] [--classes K] [--set KEY=VALUE]
                             [--markdown] [--per-layer]

One forward pass of a zero 1x3xSxS input (S = the model's `input_size`: 32 for CIFAR, 224 for ImageNet)
runs with forward hooks on every Conv2D and Dense layer; each hook reads the layer's weight and the
output shape it produced. Numbers are per image. Two conventions:

* official (--official) -- exactly what open-aff's `utils/flops.py` reports (docs/official-code.md
  §7): only Conv2D and Dense count; conv = in_c*kh*kw*out_c*H_out*W_out/groups with in_c read from the weight's second dimension
  (which MXNet already stores as in_c/groups: grouped convolutions are UNDER-counted by the factor
  `groups`), + out_c*H_out*W_out if the conv has a bias; Dense = 2*units*in - in, + units with a bias.
  A conv multiply-add is 1 FLOP. This is the convention of the paper's 4.1 / 4.3 GFLOPs (ResNet-50 vs
  AFF-ResNet-50).
* macs (default) -- multiply-accumulates of Conv2D and Dense, grouped convolutions counted fully:
  conv = (in_c/groups)*kh*kw*out_c*H_out*W_out (the weight's size times the output positions), Dense =
  in*units. Bias additions are ignored (they are not multiply-adds). The table shows GMACs and
  GFLOPs = 2 x GMACs (a multiply and an add each count 1, as in the supplement's "18C^2HW" for a 3x3 conv).

Neither convention counts BatchNorm, activations, pooling or the element-wise additions and
multiplications of the residual sums and of the attention. They are measured separately, as "elem":
one operation per output element of every other operator executed in the forward pass (BatchNorm,
ReLU, sigmoid, add, broadcast multiply, ...), pooling one per element of each window; reshapes,
slices, concatenation and dropout count 0. "elem in fusion" is the part executed inside the fusion
modules (the attention; for plain Add networks, the residual addition itself). These ops are
traced, not hooked: Gluon hooks only see layers, not the operators a hybrid_forward calls. They are
counted for the network as given -- the official module structure as built; a network rewritten by
the CPU speed layer (net.cpu_speed: fewer passes, e.g. 2*(x + w*(y - x)) for AFF) counts what that
executes -- so "elem" is an estimate of memory-bound work, not a reproduction of anything official.

Parameters: total = every element of `collect_params()`, BatchNorm running statistics included (as the
official tool and docs/official-code.md §2.7), trainable = grad_req != 'null'; printed in millions.

The model must NOT be hybridized (hooks do not fire inside a cached graph): count a fresh
`net.get_model(...)`. An uninitialised model is initialised on the CPU.
"""
import argparse
import ast
import ctypes
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import net
from net.errors import AFFError, UnknownNameError
from net.fusion import _Fusion
from utils.cli import positive_int, run_main
from utils.models import check_names, count_params, input_size as default_input_size

import mxnet as mx  # after net, which sets the thread count
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['count', 'overhead', 'FlopsResult', 'LayerCount', 'MODES', 'CONVENTION', 'format_table',
           'format_layers', 'main']

MODES = ('macs', 'official')

#: the one-line statement of each convention printed above the tables
CONVENTION = {
    'official': ("FLOPs (G) = open-aff utils/flops.py (docs/official-code.md §7): Conv2D + Dense only, "
                 "a conv multiply-add = 1 FLOP, grouped convs under-counted by `groups`, conv biases + out_c*H*W, Dense "
                 "2*units*in - in (+units); params include BN running stats"),
    'macs': ("GMACs = multiply-accumulates of Conv2D + Dense (grouped convs counted fully, biases ignored); "
             "GFLOPs = 2 x GMACs; elem (G) = other operators' element-wise work (BN, activations, pooling, "
             "additions, attention broadcasts; 1 op per output element), NOT in GMACs/GFLOPs; "
             "params include BN running stats"),
}


@dataclass
class LayerCount:
    """One call of a Conv2D or Dense layer (a layer called twice appears twice)."""
    name: str                   # dotted child path from the model (e.g. 'layer3.0.conv2')
    kind: str                   # 'Conv2D' or 'Dense'
    weight_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    groups: int
    bias: bool
    official: int               # the official tool's count (bias term included)
    macs: int                   # multiply-accumulates, grouped convs counted fully, no bias
    bias_adds: int              # the official bias term (out_c*H*W for a conv, units for Dense; 0 without)


@dataclass
class FlopsResult:
    """What `count` returns. `total` is in the requested mode: official FLOPs, or MACs."""
    name: str
    mode: str
    input_size: int
    total: int
    official: int               # official-tool FLOPs (always computed)
    macs: int                   # MACs (always computed); GFLOPs = 2 * macs / 1e9
    elementwise: int            # non-Conv/Dense operator work, one op per output element (see module doc)
    elementwise_fusion: int     # the part of `elementwise` executed inside fusion modules
    params_total: int           # elements of every parameter, BN running statistics included
    params_trainable: int       # elements of the parameters with grad_req != 'null'
    layers: List[LayerCount] = field(default_factory=list)
    elementwise_ops: dict = field(default_factory=dict)   # operator name -> element ops

    @property
    def flops(self):
        """FLOPs in the correct convention: 2 x MACs (multiply and add counted separately)."""
        return 2 * self.macs

    @property
    def params_total_m(self):
        return self.params_total / 1e6

    @property
    def params_trainable_m(self):
        return self.params_trainable / 1e6

    @property
    def gtotal(self):
        return self.total / 1e9


# ---------------------------------------------------------------------------------------------
# per-layer rules
# ---------------------------------------------------------------------------------------------
def _prod(values):
    n = 1
    for v in values:
        n *= int(v)
    return n


def conv_counts(weight_shape, output_shape, groups, bias):
    """(official, macs, bias_adds) of one Conv2D call from its weight (out_c, in_c/groups, kh, kw) and
    its output (N, out_c, H, W), per image."""
    out_c, in_per_group = int(weight_shape[0]), int(weight_shape[1])
    kernel = _prod(weight_shape[2:])
    positions = _prod(output_shape[2:])
    assert int(output_shape[1]) == out_c and out_c % groups == 0
    macs = out_c * in_per_group * kernel * positions          # the weight's size x output positions
    bias_adds = out_c * positions if bias else 0
    # official: in_c is the weight's second dimension, i.e. already divided by groups, and is divided
    # again; exact in integers because groups divides out_c
    official = in_per_group * kernel * (out_c // groups) * positions + bias_adds
    return official, macs, bias_adds


def dense_counts(weight_shape, bias):
    """(official, macs, bias_adds) of one Dense call from its weight (units, in)."""
    units, in_units = int(weight_shape[0]), int(weight_shape[1])
    bias_adds = units if bias else 0
    official = 2 * units * in_units - in_units + bias_adds    # the official formula, "- in" included
    return official, units * in_units, bias_adds


# ---------------------------------------------------------------------------------------------
# element-wise operator tracing
# ---------------------------------------------------------------------------------------------
#: operators that only move or view data (or are the identity at inference): no arithmetic
_DATA_MOVEMENT = frozenset([
    'Reshape', 'reshape', 'Flatten', 'flatten', 'slice_axis', 'slice', 'slice_like', 'Concat', 'concat',
    'stack', 'split', 'SliceChannel', 'broadcast_like', 'broadcast_to', 'broadcast_axis', 'expand_dims',
    'squeeze', 'transpose', 'SwapAxis', 'Dropout', '_copy', '_copyto', 'identity', 'Cast', 'cast',
    'reshape_like', 'tile', 'repeat', 'Pad', 'pad', 'take', 'pick', 'BlockGrad', 'stop_gradient',
])
#: counted by the hooks (MACs / official), not as element-wise work
_HOOKED = frozenset(['Convolution', 'FullyConnected', 'Deconvolution'])


def _op_names():
    """{op handle value: operator name} of every registered MXNet operator."""
    lib = mx.base._LIB
    size = ctypes.c_uint()
    plist = ctypes.POINTER(ctypes.c_char_p)()
    mx.base.check_call(lib.MXListAllOpNames(ctypes.byref(size), ctypes.byref(plist)))
    all_names = [mx.base.py_str(plist[i]) for i in range(size.value)]  # copy: the C buffer is reused
    names = {}
    for name in all_names:
        handle = mx.base.OpHandle()
        mx.base.check_call(lib.NNGetOpHandle(mx.base.c_str(name), ctypes.byref(handle)))
        if handle.value not in names:  # aliases share a handle: keep the operator's real name
            real, doc, ret = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_char_p()
            nargs, arg_names, arg_types, arg_docs = (ctypes.c_uint(), ctypes.POINTER(ctypes.c_char_p)(),
                                                     ctypes.POINTER(ctypes.c_char_p)(),
                                                     ctypes.POINTER(ctypes.c_char_p)())
            mx.base.check_call(lib.NNGetOpInfo(handle, ctypes.byref(real), ctypes.byref(doc),
                                               ctypes.byref(nargs), ctypes.byref(arg_names),
                                               ctypes.byref(arg_types), ctypes.byref(arg_docs),
                                               ctypes.byref(ret)))
            names[handle.value] = mx.base.py_str(real.value)
    return names


_OP_NAMES = None


def _attrs(keys, vals):
    """An operator call's attributes as {name: string}."""
    return dict(zip(keys, (str(v) for v in vals)))


def _elementwise_cost(op, inputs, keys, vals, outputs):
    if op in _HOOKED or op in _DATA_MOVEMENT or not inputs:   # no input: creation (zeros, random ...)
        return 0
    out = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    if out is None or not hasattr(out, 'shape'):
        return 0
    elements = _prod(out.shape)
    if op in ('ones_like', 'zeros_like'):   # read only their input's shape
        return 0
    if op in ('mean', 'sum'):   # reductions read every input
        return _prod(inputs[0].shape)
    if op == 'dot' and len(inputs[0].shape) == 2:   # the speed layer's rank-1 products: m*k*n MACs
        transpose_a = _attrs(keys, vals).get('transpose_a', 'False') in ('True', 'true', '1')
        return elements * inputs[0].shape[0 if transpose_a else 1]
    if op == 'Pooling':
        attrs = _attrs(keys, vals)
        if attrs.get('global_pool', 'False') in ('True', 'true', '1'):
            return _prod(inputs[0].shape)
        kernel = ast.literal_eval(attrs.get('kernel', '(1,)'))
        return elements * _prod(kernel if isinstance(kernel, tuple) else (kernel,))
    return elements


@contextmanager
def _trace_elementwise(record):
    """Count the element-wise work of every imperative operator invoked inside the block:
    `record(op_name, cost)`. MXNet's generated operator functions call the module-level
    `_imperative_invoke` of mxnet.ndarray.register, which is wrapped for the duration."""
    global _OP_NAMES
    if _OP_NAMES is None:
        _OP_NAMES = _op_names()
    module = mx.ndarray.register
    original = module._imperative_invoke

    def traced(handle, ndargs, keys, vals, out, *rest):
        result = original(handle, ndargs, keys, vals, out, *rest)
        op = _OP_NAMES.get(handle, '?')
        cost = _elementwise_cost(op, ndargs, keys, vals, out if out is not None else result)
        if cost:
            if op == 'Activation':   # sigmoid and ReLU are both Activation: tell them apart
                op = 'Activation(%s)' % _attrs(keys, vals).get('act_type', '?')
            record(op, cost)
        return result

    module._imperative_invoke = traced
    try:
        yield
    finally:
        module._imperative_invoke = original


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------
def _walk(block, path=''):
    """(dotted path, block) of `block` and all its descendants."""
    yield path, block
    for child_name, child in block._children.items():
        yield from _walk(child, f"{path}.{child_name}" if path else child_name)


def _ensure_initialized(block):
    params = block.collect_params()
    for param in params.values():
        if param._data is None and not param._deferred_init:
            param.initialize(ctx=mx.cpu())
    deferred = [p for p in params.values() if p._deferred_init]
    ctx = mx.cpu()
    for param in params.values():
        if param._data is not None:
            ctx = param.list_ctx()[0]
            break
    return ctx, bool(deferred)


def _build(name, classes=None, **model_kwargs):
    check_names([name])
    if classes is not None:
        model_kwargs['classes'] = classes
    try:
        return net.get_model(name, **model_kwargs)
    except TypeError as e:
        if 'unexpected keyword argument' in str(e):
            raise AFFError(f"model {name!r} does not take these arguments ({e}); "
                           "check --set / the keyword arguments") from None
        raise


def count(model_or_name, input_size=None, mode='macs', classes=None, label=None, **model_kwargs):
    """Count the per-image FLOPs/MACs and the parameters of a registry name or a Gluon block.

    `mode` 'macs' (result.total = MACs) or 'official' (result.total = the official tool's FLOPs); both
    numbers are always available as result.macs / result.official. `classes` and `model_kwargs` are
    passed to `net.get_model` when a name is given. A block must not be hybridized; it is initialised
    on the CPU if it is not. Returns a `FlopsResult`.
    """
    if mode not in MODES:
        raise UnknownNameError(f"unknown FLOPs mode {mode!r}; choose one of {', '.join(MODES)}")
    if isinstance(model_or_name, str):
        name = model_or_name
        block = _build(name, classes, **dict(model_kwargs))
        shown = dict(model_kwargs, **({} if classes is None else {'classes': classes}))
        if shown:
            name += '(' + ', '.join(f'{k}={v}' for k, v in shown.items()) + ')'
    else:
        if classes is not None or model_kwargs:
            raise AFFError("classes / model arguments apply to a model name, not to a built block")
        block = model_or_name
        name = getattr(block, 'name', type(block).__name__)
    name = label or name
    blocks = list(_walk(block))
    for path, b in blocks:
        if isinstance(b, HybridBlock) and getattr(b, '_active', False):
            raise AFFError(f"{name} is hybridized: FLOPs hooks need imperative execution; "
                           "count a fresh net.get_model(...) without calling hybridize()")
    size = int(input_size or default_input_size(name if isinstance(model_or_name, str) else '', block))
    ctx, deferred = _ensure_initialized(block)
    x = mx.nd.zeros((1, 3, size, size), ctx=ctx)
    if deferred:  # materialise deferred shapes first, so that no initialisation runs while tracing
        block(x)
        mx.nd.waitall()

    layers = []
    elementwise = {'total': 0, 'fusion': 0, 'depth': 0}
    ops = {}
    paths = {id(b): p for p, b in blocks}

    def layer_hook(layer, inputs, output):
        out = output[0] if isinstance(output, (list, tuple)) else output
        weight_shape = tuple(int(d) for d in layer.weight.shape)
        has_bias = getattr(layer, 'bias', None) is not None
        if isinstance(layer, nn.Conv2D):
            groups = int(layer._kwargs.get('num_group', 1))
            official, macs, bias_adds = conv_counts(weight_shape, out.shape, groups, has_bias)
            kind = 'Conv2D'
        else:
            groups = 1
            official, macs, bias_adds = dense_counts(weight_shape, has_bias)
            kind = 'Dense'
        layers.append(LayerCount(paths.get(id(layer), layer.name), kind, weight_shape,
                                 tuple(int(d) for d in out.shape), groups, has_bias,
                                 official, macs, bias_adds))

    def enter_fusion(b, inputs):
        elementwise['depth'] += 1

    def leave_fusion(b, inputs, output):
        elementwise['depth'] -= 1

    def record(op, cost):
        elementwise['total'] += cost
        ops[op] = ops.get(op, 0) + cost
        if elementwise['depth'] > 0:
            elementwise['fusion'] += cost

    handles = []
    try:
        for _, b in blocks:
            if isinstance(b, (nn.Conv2D, nn.Dense)):
                handles.append(b.register_forward_hook(layer_hook))
            elif isinstance(b, _Fusion):
                handles.append(b.register_forward_pre_hook(enter_fusion))
                handles.append(b.register_forward_hook(leave_fusion))
        with _trace_elementwise(record):
            out = block(x)
        mx.nd.waitall()
        del out
    finally:
        for h in handles:
            h.detach()

    official = sum(layer.official for layer in layers)
    macs = sum(layer.macs for layer in layers)
    _, total_params, trainable = count_params(block)
    return FlopsResult(name=name, mode=mode, input_size=size,
                       total=official if mode == 'official' else macs, official=official, macs=macs,
                       elementwise=elementwise['total'], elementwise_fusion=elementwise['fusion'],
                       params_total=total_params, params_trainable=trainable, layers=layers,
                       elementwise_ops=dict(sorted(ops.items(), key=lambda kv: -kv[1])))


def overhead(fused_name, plain_name, mode='macs', decimals=None, input_size=None):
    """Relative FLOPs overhead of a fused network over its plain host: fused/plain - 1.

    Each argument is a registry name, a block or a `FlopsResult` (of the same mode). With `decimals`,
    both totals are first rounded to that many decimals of G, as the paper does: official mode,
    aff_resnet50_v1b vs resnet50_v1b = +5.75 % exactly, +4.88 % from the rounded 4.3 / 4.1 G.
    """
    def total(item):
        result = item if isinstance(item, FlopsResult) else count(item, input_size=input_size, mode=mode)
        if result.mode != mode:
            raise AFFError(f"{result.name} was counted in {result.mode!r} mode, not {mode!r}")
        return round(result.total / 1e9, decimals) if decimals is not None else result.total
    fused, plain = total(fused_name), total(plain_name)
    return fused / plain - 1


# ---------------------------------------------------------------------------------------------
# tables and CLI
# ---------------------------------------------------------------------------------------------
def _table(header, body, numeric, markdown):
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(x) for x in col) for col in zip(header, *body)]

    def fmt(cols):
        return "  ".join(c.rjust(w) if n else c.ljust(w)
                         for c, w, n in zip(cols, widths, numeric)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(row) for row in body])


def format_table(results, mode='macs', markdown=False):
    """The convention line, then one row per result."""
    if mode == 'official':
        header = ['model', 'input', 'params (M)', 'trainable (M)', 'FLOPs (G)', 'FLOPs']
        body = [[r.name, str(r.input_size), f"{r.params_total_m:.2f}", f"{r.params_trainable_m:.2f}",
                 f"{r.official / 1e9:.2f}", f"{r.official:,}"] for r in results]
    else:
        header = ['model', 'input', 'params (M)', 'trainable (M)', 'GMACs', 'GFLOPs', 'elem (G)',
                  'elem in fusion (G)']
        body = [[r.name, str(r.input_size), f"{r.params_total_m:.2f}", f"{r.params_trainable_m:.2f}",
                 f"{r.macs / 1e9:.2f}", f"{r.flops / 1e9:.2f}", f"{r.elementwise / 1e9:.3f}",
                 f"{r.elementwise_fusion / 1e9:.3f}"] for r in results]
    numeric = [False] + [True] * (len(header) - 1)
    return CONVENTION[mode] + "\n" + _table(header, body, numeric, markdown)


def format_layers(result, markdown=False):
    """Per-layer table of one result (both conventions)."""
    header = ['layer', 'type', 'weight', 'output', 'groups', 'bias', 'official', 'MACs']
    body = [[l.name, l.kind, 'x'.join(map(str, l.weight_shape)), 'x'.join(map(str, l.output_shape)),
             str(l.groups), 'yes' if l.bias else 'no', f"{l.official:,}", f"{l.macs:,}"]
            for l in result.layers]
    body.append(['total', '', '', '', '', '', f"{result.official:,}", f"{result.macs:,}"])
    numeric = [False, False, False, False, True, False, True, True]
    return f"{result.name} ({result.input_size}x{result.input_size}):\n" + _table(header, body, numeric,
                                                                                  markdown)


def _model_arg(text):
    key, sep, value = text.partition('=')
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a plain string
    return key, value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m utils.flops", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[4:]))
    p.add_argument("names", nargs="+", metavar="NAME", help="registry names (`python -m utils.models --all`)")
    p.add_argument("--official", action="store_true",
                   help="the official open-aff tool's FLOPs (default: GMACs and GFLOPs = 2 x GMACs)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="input side length (default: the model's own, 32 for CIFAR and 224 for ImageNet)")
    p.add_argument("--classes", type=positive_int, default=None, help="classes (default: the model's own)")
    p.add_argument("--set", dest="model_args", type=_model_arg, action="append", default=[],
                   metavar="KEY=VALUE", help="constructor argument for every NAME, e.g. start_layer=1")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--per-layer", action="store_true", help="also print every Conv2D/Dense call")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_names(args.names)
    mode = 'official' if args.official else 'macs'
    results = [count(name, input_size=args.input_size, mode=mode, classes=args.classes,
                     **dict(args.model_args)) for name in args.names]
    print(format_table(results, mode, markdown=args.markdown))
    if args.per_layer:
        for result in results:
            print()
            print(format_layers(result, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    run_main(main)
