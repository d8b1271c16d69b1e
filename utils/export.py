"""ONNX export of registry models, checked in ONNX Runtime against MXNet (docs/onnx.md).

Usage: python -m utils.export --model NAME [--params FILE | --pretrained] [--input-size S] [--batch-size B]
                              [--out FILE.onnx] [--classes N] [--set KEY=VALUE] [--seed N] [--no-verify]
                              [--float64] [--bench [--bench-windows N]]
       python -m utils.export --all-families [--markdown]      (the status table of docs/onnx.md)

The network is built from the registry in inference mode with the official modules of net/ (the CPU
speed layer, net.cpu_speed, is never applied for export; a block that carries it is restored first),
its weights are loaded (--params FILE written by `save_parameters`, --pretrained the released
checkpoint; neither: seeded random weights, see `random_weights`), it is hybridized, and one forward
pass writes a temporary symbol/params pair that MXNet's own exporter, `mx.onnx.export_model`,
converts to ONNX. The input shape (batch included) is fixed in the file.

Opset: MXNet 1.9.1's exporter has translations for opsets 12 and 13 only, and no `opset_version`
argument: it takes the installed onnx's newest opset (`onnx.defs.onnx_opset_version()`) for the stamp
and validates its graph with onnx.checker's default context, which has that opset too. With any onnx
that has Python 3.11 wheels (>= 1.13, opset >= 18) that fails ("Unrecognized attribute: axes for
operator ReduceMean": opset 18 made ReduceMean's axes an input). The export therefore runs with both
answering 13, the opset the translations were written for: nodes, check and stamp agree. The exporter
also imports `onnx.mapping`, which onnx removed in 1.19; requirements.txt pins onnx 1.18.0, the newest
release that has it.

Before the exporter runs, the symbol is made exportable without changing its function
(`_symbol_and_params`, `_static_symbol`): fixed-gamma BatchNorms get gamma = 1 (what MXNet computes;
the translation would pass the stored gamma on), Reshapes with the codes -2/-3/-4 get explicit shapes,
BilinearResize2D in mode 'like' gets its height and width, and im2col (no translation) becomes a
one-hot grouped convolution. After it, the file is tidied (weights as initializers only, not also as
graph inputs, so that ONNX Runtime may fold them; align_corners=False resizes in 'half_pixel' mode; the
IR version is the lowest that opset 13 needs) and passes `onnx.checker.check_model`. BatchNorm is not
folded in the file: MXNet's exporter writes inference-mode BatchNormalization nodes with the running
statistics (ONNX Runtime folds them into the convolutions when it loads the model, as its default graph
optimisation does).

Verification (unless --no-verify): ONNX Runtime (CPUExecutionProvider, intra-op threads = MXNet's
OpenMP threads) runs the file on a seeded random input, MXNet runs the same hybridized network on the
same input, and for every output max |ONNX - MXNet| / max |MXNet| must be <= 1e-4 (`RTOL`); one line
gives the result, and a mismatch exits with status 1. --float64 also compares both with MXNet in
float64 (what float32 rounding alone costs). A model or operator that cannot be exported is one error
line naming the MXNet operator (status 2).

--bench: inference images/s of ONNX Runtime and of MXNet's inference path
(`utils.train.hybridize_for_inference`) for the same model, batch and threads: windows of about a
second alternate between the two after warm-up; the median over windows is printed (a measurement,
not a test).
"""
import ast
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

import net
from net import cpu_speed
from net.errors import AFFError, import_extra
from utils.cli import Parser, positive_int, run_main, seed_int
from utils.flops import _model_arg as model_arg
from utils.models import check_names

import mxnet as mx  # after net, which sets the thread count

__all__ = ['OPSET', 'RTOL', 'FAMILIES', 'ExportResult', 'MismatchError', 'onnx_modules', 'load_model',
           'random_weights', 'export', 'verify', 'bench', 'export_and_verify', 'main']

#: the opset MXNet 1.9.1's translations target (they exist for 12 and 13)
OPSET = 13
#: max |ONNX Runtime - MXNet| / max |MXNet| allowed per output
RTOL = 1e-4
#: the pinned onnx release (requirements.txt): the newest that still has onnx.mapping
ONNX_PIN = '1.18.0'
#: images of the batch that sets the BatchNorm statistics of random weights (`random_weights`)
CALIBRATION_BATCH = 32


class MismatchError(AFFError):
    """ONNX Runtime's output differs from MXNet's beyond RTOL (exit status 1)."""
    exit_code = 1


@dataclass
class ExportResult:
    """What `export_and_verify` measured for one model."""
    name: str
    shape: tuple
    path: str
    nodes: int
    ops: List[str]
    rel_errors: List[float] = field(default_factory=list)    # per output; empty without verification
    model: Optional[object] = None                           # the exported (hybridized) network
    floor: Optional[tuple] = None                            # (MXNet fp32, ONNX) vs MXNet float64

    @property
    def rel_error(self):
        return max(self.rel_errors) if self.rel_errors else None


# ---------------------------------------------------------------------------------------------
# dependencies
# ---------------------------------------------------------------------------------------------
def onnx_modules(runtime=True):
    """(onnx, onnxruntime or None): the optional dependencies, or an AFFError naming the extra."""
    onnx = import_extra('onnx', 'onnx', 'onnx', 'ONNX export')
    try:
        import onnx.mapping  # noqa: F401  (MXNet 1.9.1's exporter imports it)
    except ImportError:
        raise AFFError("onnx %s has no onnx.mapping, which MXNet 1.9.1's exporter needs: pip install "
                       "onnx==%s (requirements.txt; make venv installs it)"
                       % (onnx.__version__, ONNX_PIN)) from None
    ort = import_extra('onnxruntime', 'onnxruntime', 'onnx', 'ONNX Runtime verification') \
        if runtime else None
    return onnx, ort


def mxnet_threads():
    """MXNet's OpenMP thread count (OMP_NUM_THREADS, which net._env sets when the user did not)."""
    try:
        return max(1, int(os.environ.get('OMP_NUM_THREADS', '')))
    except ValueError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
def random_weights(model, size, seed=0):
    """Seeded random weights for a check without a checkpoint, chosen so that MXNet's own float32
    rounding stays far below RTOL (docs/onnx.md, "Random weights"): He-normal convolution / dense
    weights (the block's own initialisers where it sets them); gamma and beta uniform in [0.5, 1.5];
    every BatchNorm's running mean set to the mean of its input and its running variance to the mean
    square of its input, over one forward pass of a seeded random batch. Non-trivial statistics and
    affine parameters, so that a wrong BatchNorm conversion (epsilon, statistics, a fixed gamma)
    shows, while the activations stay of order one at any depth and the positive beta keeps most
    ReLUs open: with BatchNorm statistics that normalise exactly and zero-mean beta, a random deep
    network is chaotic (MXNet float32 vs float64 differ by up to 1e-3 on the ResNet-50s), and with
    MXNet's default statistics its activations grow to 1e5 and the fusions' sigmoid gates saturate."""
    mx.random.seed(seed)
    model.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=mx.cpu())
    model(mx.nd.zeros((1, 3, size, size)))          # deferred shapes
    rng = np.random.RandomState(seed)
    for name, param in sorted(model.collect_params().items()):
        if name.endswith(('_gamma', '_beta')):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, size=param.shape), dtype=param.dtype))

    def calibrate(block, inputs):
        x = inputs[0].asnumpy().astype(np.float64)
        axis = int(block._kwargs.get('axis', 1))
        others = tuple(a for a in range(x.ndim) if a != axis)
        mean, power = x.mean(axis=others), np.maximum((x * x).mean(axis=others), 1e-4)
        block.running_mean.set_data(mx.nd.array(mean, dtype=block.running_mean.dtype))
        block.running_var.set_data(mx.nd.array(power, dtype=block.running_var.dtype))

    hooks = []
    model.apply(lambda b: hooks.append(b.register_forward_pre_hook(calibrate))
                if isinstance(getattr(b, 'running_var', None), mx.gluon.Parameter) else None)
    try:
        model(example_input((CALIBRATION_BATCH, 3, size, size), seed + 1000))
        mx.nd.waitall()
    finally:
        for h in hooks:
            h.detach()
    return model


def load_model(name, params=None, pretrained=False, classes=None, size=None, seed=0, **kwargs):
    """The official network `name` with its weights: `params` (a .params file), `pretrained` (the
    released checkpoint) or seeded random ones. Returns (model, input size)."""
    check_names([name])
    if classes is not None:
        kwargs['classes'] = classes
    try:
        model = net.get_model(name, pretrained=params or pretrained, **kwargs)
    except TypeError as e:
        if 'unexpected keyword argument' in str(e):
            raise AFFError("model %r does not take these arguments (%s); check --set / --classes"
                           % (name, e)) from None
        raise
    size = size or model.input_size
    if cpu_speed.rewritten(model):          # never for a fresh model; restores the official classes
        cpu_speed.remove(model)
    if not (params or pretrained):
        random_weights(model, size, seed)
    return model, size


def example_input(shape, seed=0):
    """The seeded random input of the check: standard normal."""
    return mx.nd.array(np.random.RandomState(seed + 1).standard_normal(shape).astype(np.float32))


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
@contextmanager
def _opset(onnx, version):
    """The installed onnx answers opset `version` while MXNet's exporter runs: the newest opset
    `onnx.defs.onnx_opset_version()` (read by mx.onnx.export_model for the translations and by
    onnx.helper.make_model for the stamp) and the opset of the checker's default context (with which
    the exporter validates the graph it built); see the module doc."""
    saved = onnx.defs.onnx_opset_version
    context = onnx.checker.DEFAULT_CONTEXT
    saved_imports = dict(context.opset_imports)
    onnx.defs.onnx_opset_version = lambda: version
    context.opset_imports = {'': version}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)   # onnx.mapping, used by MXNet
            yield
    finally:
        onnx.defs.onnx_opset_version = saved
        context.opset_imports = saved_imports


def _failing_node(tb):
    """The MXNet graph node (a dict with 'op' and 'name') whose conversion raised, from the
    traceback of an exception raised inside MXNet's exporter (its `convert_layer` frames)."""
    node = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == 'convert_layer' and isinstance(frame.f_locals.get('node'), dict):
            node = frame.f_locals['node']
        tb = tb.tb_next
    return node


def _one_line(e):
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text[:300]


def export_error(name, e):
    """The AFFError for an exception of MXNet's exporter: names the operator it could not convert."""
    node = _failing_node(e.__traceback__)
    if node is not None:
        return AFFError("cannot export %s to ONNX: MXNet's exporter (opset %d) fails on operator %s "
                        "(node %s): %s" % (name, OPSET, node.get('op'), node.get('name'), _one_line(e)))
    return AFFError("cannot export %s to ONNX: MXNet's exporter failed before converting an operator: "
                    "%s: %s" % (name, type(e).__name__, _one_line(e)))


def _tidy(onnx, path, half_pixel=()):
    """Weights as initializers only (not also graph inputs); the Resize nodes named in `half_pixel`
    with coordinate_transformation_mode 'half_pixel' (MXNet's align_corners=False); the lowest IR
    version of the opset; onnx.checker. Returns the loaded model."""
    model = onnx.load(path)
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for node in model.graph.node:
        if node.op_type == 'Resize' and node.name in half_pixel:
            for attr in node.attribute:
                if attr.name == 'coordinate_transformation_mode':
                    attr.s = b'half_pixel'
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def _symbol_and_params(prefix):
    """The symbol and {name: NDArray} (arguments and auxiliary states) that `HybridBlock.export`
    wrote at `prefix`, with the gamma of every BatchNorm that has fix_gamma (Gluon's scale=False)
    replaced by ones: MXNet's operator ignores the stored gamma then, but its ONNX translation passes
    it on, so a checkpoint whose fixed gamma is not exactly 1 would export a different function."""
    sym = mx.sym.load(prefix + '-symbol.json')
    params = {k.split(':', 1)[1]: v for k, v in mx.nd.load(prefix + '-0000.params').items()}
    nodes = json.loads(sym.tojson())['nodes']
    for node in nodes:
        if node['op'] != 'BatchNorm':
            continue
        fix_gamma = str(node.get('attrs', {}).get('fix_gamma', 'True'))   # the operator's default
        gamma = nodes[node['inputs'][1][0]]['name']
        if fix_gamma.lower() in ('true', '1') and gamma in params:
            params[gamma] = mx.nd.ones_like(params[gamma])
    return sym, params


#: MXNet Reshape codes its ONNX translation handles in a few fixed patterns only
_RESHAPE_CODES = (-2, -3, -4)


def _pair(text, default):
    values = tuple(ast.literal_eval(text)) if text not in (None, '', '()') else ()
    return values or default


def _static_symbol(sym, shape):
    """`sym` with the constructs of net/ that MXNet's translations reject rewritten, for the fixed
    input `shape`, into the same function:

    * a Reshape with the codes -2/-3/-4 (or reverse) gets its inferred output shape as an explicit
      target (AFINet's [X, R], ACmix's heads);
    * a BilinearResize2D in mode 'like' (the FPN's upsampling) becomes mode 'size' with the inferred
      height and width; its translation always writes align_corners, so the names of those with
      align_corners=False are returned for `_tidy` to give their Resize the matching mode;
    * im2col (ACmix's windows; no translation) becomes a convolution with one group per input
      channel and one-hot kernels -- output channel c*k*k + i*k + j copies x[c] at offset (i, j),
      im2col's order; exact: products with 1 and sums of zeros -- and a Reshape to im2col's shape.

    Returns (symbol, align_corners=False resize names, {name: NDArray} of the one-hot kernels)."""
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape(data=tuple(shape))
    shape_of = dict(zip(internals.list_outputs(), shapes))
    graph = json.loads(sym.tojson())
    nodes = graph['nodes']

    def output_shape(entry):
        node = nodes[entry[0]]
        if node['op'] == 'null':
            return shape_of[node['name']]
        single = node['name'] + '_output'
        return shape_of.get(single) or shape_of['%s_output%d' % (node['name'], entry[1])]

    half_pixel, kernels, rebuilt, moved = [], {}, [], {}
    for index, node in enumerate(nodes):
        attrs = node.setdefault('attrs', {})
        if node['op'] == 'Reshape':
            target = tuple(ast.literal_eval(attrs.get('shape', '()')))
            if attrs.get('reverse', 'False') == 'True' or set(target) & set(_RESHAPE_CODES):
                attrs['shape'] = str(tuple(output_shape([index, 0])))
                attrs.pop('reverse', None)
        elif node['op'] == '_contrib_BilinearResize2D' and attrs.get('mode') == 'like':
            height, width = output_shape(node['inputs'][1])[2:]
            node['inputs'] = node['inputs'][:1]
            attrs.update(mode='size', height=str(height), width=str(width))
            if attrs.get('align_corners', 'True') in ('False', '0'):
                half_pixel.append(node['name'])
        inputs = [[moved[e[0]]] + e[1:] for e in node['inputs']]
        if node['op'] == 'im2col':
            kernel = _pair(attrs.get('kernel'), ())
            ones = (1,) * len(kernel)
            channels, taps = output_shape(node['inputs'][0])[1], int(np.prod(kernel))
            weight = np.zeros((channels * taps, 1) + kernel, dtype=np.float32)
            for tap in range(taps):
                weight[(np.arange(channels) * taps + tap, 0) + np.unravel_index(tap, kernel)] = 1
            kernels[node['name'] + '_onehot_weight'] = mx.nd.array(weight)
            conv = dict(kernel=str(kernel), stride=str(_pair(attrs.get('stride'), ones)),
                        dilate=str(_pair(attrs.get('dilate'), ones)),
                        pad=str(_pair(attrs.get('pad'), (0,) * len(kernel))),
                        num_filter=str(channels * taps), num_group=str(channels), no_bias='True')
            rebuilt.append({'op': 'null', 'name': node['name'] + '_onehot_weight', 'inputs': []})
            rebuilt.append({'op': 'Convolution', 'name': node['name'] + '_onehot', 'attrs': conv,
                            'inputs': [inputs[0], [len(rebuilt) - 1, 0, 0]]})
            node = {'op': 'Reshape', 'name': node['name'], 'inputs': [[len(rebuilt) - 1, 0, 0]],
                    'attrs': {'shape': str(tuple(output_shape([index, 0])))}}
        else:
            node['inputs'] = inputs
        moved[index] = len(rebuilt)
        rebuilt.append(node)
    graph.pop('node_row_ptr', None)
    graph.update(nodes=rebuilt, arg_nodes=[i for i, n in enumerate(rebuilt) if n['op'] == 'null'],
                 heads=[[moved[h[0]]] + h[1:] for h in graph['heads']])
    return mx.sym.load_json(json.dumps(graph)), half_pixel, kernels


def export(model, shape, out, name='model'):
    """Export the hybridized inference network `model` for inputs of `shape` to the ONNX file `out`
    through a temporary symbol/params pair and `mx.onnx.export_model` (opset 13). Returns the onnx
    ModelProto written; AFFError naming the operator when MXNet's exporter cannot convert one."""
    onnx, _ = onnx_modules(runtime=False)
    if cpu_speed.rewritten(model):
        cpu_speed.remove(model)
    model.hybridize()
    mx.nd.waitall()
    model(mx.nd.zeros(shape))                 # the cached graph that `export` writes
    tmp = tempfile.mkdtemp(prefix='aff-onnx-')
    try:
        prefix = os.path.join(tmp, 'model')
        model.export(prefix)
        sym, params = _symbol_and_params(prefix)
        sym, half_pixel, kernels = _static_symbol(sym, shape)
        params.update(kernels)
        tmp_out = os.path.join(tmp, 'model.onnx')
        try:
            with _opset(onnx, OPSET), redirect_stdout(io.StringIO()):   # it prints node names
                mx.onnx.export_model(sym, params, in_shapes=[tuple(shape)], in_types=[np.float32],
                                     onnx_file_path=tmp_out)
        except Exception as e:   # the exporter raises AttributeError, NotImplementedError, ...
            raise export_error(name, e) from None
        try:
            proto = _tidy(onnx, tmp_out, half_pixel)
        except onnx.checker.ValidationError as e:
            raise AFFError("cannot export %s to ONNX: the exported graph fails onnx.checker: %s"
                           % (name, _one_line(e))) from None
        folder = os.path.dirname(os.path.abspath(out))
        os.makedirs(folder, exist_ok=True)
        shutil.move(tmp_out, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return proto


# ---------------------------------------------------------------------------------------------
# verification and benchmark
# ---------------------------------------------------------------------------------------------
def session(path, threads=None):
    """An ONNX Runtime session of `path` on the CPU with `threads` intra-op threads (MXNet's)."""
    _, ort = onnx_modules()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or mxnet_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3                   # errors only
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def relative_errors(reference, outputs):
    """max |o - r| / max |r| per output pair (max |o - r| where r is all zero)."""
    errors = []
    for r, o in zip(reference, outputs):
        scale = float(np.abs(r).max()) if r.size else 0.0
        diff = float(np.abs(o.astype(np.float64) - r).max()) if r.size else 0.0
        errors.append(diff / scale if scale > 0 else diff)
    return errors


def verify(path, model, x, name='model', threads=None, float64=False):
    """Run the ONNX file and the MXNet network on `x`: (relative error of every output, the rounding
    floor or None). The floor (`float64`): (MXNet float32 vs MXNet float64, ONNX Runtime vs MXNet
    float64), the largest over the outputs -- what float32 rounding alone costs this network with
    these weights; the model is cast to float64 for one pass and back. AFFError when ONNX Runtime
    cannot load or run the file; MismatchError when the outputs differ in number or shape."""
    sess = session(path, threads)
    reference = [o.asnumpy() for o in _outputs(model(x))]
    try:
        got = sess.run(None, {sess.get_inputs()[0].name: x.asnumpy()})
    except Exception as e:       # onnxruntime's own exception types
        raise AFFError("ONNX Runtime cannot run the export of %s: %s" % (name, _one_line(e))) from None
    if len(got) != len(reference) or any(g.shape != r.shape for g, r in zip(got, reference)):
        raise MismatchError("ONNX Runtime gives outputs of shapes %s for %s, MXNet %s"
                            % ([g.shape for g in got], name, [r.shape for r in reference]))
    floor = None
    if float64:
        model.cast('float64')
        try:
            exact = [o.asnumpy() for o in _outputs(model(x.astype('float64')))]
        finally:
            model.cast('float32')
        floor = (max(relative_errors(exact, reference)), max(relative_errors(exact, got)))
    return relative_errors(reference, got), floor


def _windows(step, seconds):
    """Iterations of `step` that take about `seconds` (at least 1), measured after one warm-up call."""
    step()
    start = time.perf_counter()
    step()
    return max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))


def bench(path, model, x, windows=5, seconds=1.0, threads=None):
    """Inference images/s of ONNX Runtime and of MXNet's inference path for the same batch `x` and
    threads: alternating windows of about `seconds` each after warm-up; medians. `model` is rewritten
    for MXNet's fast inference (utils.train.hybridize_for_inference): export before calling this.
    Returns {'onnxruntime': img/s, 'mxnet': img/s, 'mxnet_path': sentence, 'windows': n}."""
    from utils.train import hybridize_for_inference
    sess = session(path, threads)
    feed = {sess.get_inputs()[0].name: x.asnumpy()}
    sentence = hybridize_for_inference(model, x)

    def run_mx():
        for o in _outputs(model(x)):
            o.wait_to_read()

    def run_ort():
        sess.run(None, feed)

    steps = {'mxnet': run_mx, 'onnxruntime': run_ort}
    iters = {k: _windows(s, seconds) for k, s in steps.items()}
    rates = {k: [] for k in steps}
    for _ in range(windows):
        for k, step in steps.items():
            start = time.perf_counter()
            for _ in range(iters[k]):
                step()
            rates[k].append(x.shape[0] * iters[k] / (time.perf_counter() - start))
    out = {k: statistics.median(v) for k, v in rates.items()}
    out.update(mxnet_path=sentence, windows=windows)
    return out


def export_and_verify(name, out, params=None, pretrained=False, size=None, batch_size=1, classes=None,
                      seed=0, check=True, float64=False, **kwargs):
    """Build, export to `out` and (if `check`) verify one model (with the float64 rounding floor if
    `float64`); an ExportResult. Raises MismatchError when an output differs beyond RTOL."""
    check_names([name])
    onnx_modules(runtime=check)
    model, size = load_model(name, params=params, pretrained=pretrained, classes=classes, size=size,
                             seed=seed, **kwargs)
    shape = (batch_size, 3, size, size)
    proto = export(model, shape, out, name=name)
    result = ExportResult(name=name, shape=shape, path=out, nodes=len(proto.graph.node),
                          ops=sorted({n.op_type for n in proto.graph.node}), model=model)
    if check:
        result.rel_errors, result.floor = verify(out, model, example_input(shape, seed), name=name,
                                                 float64=float64)
        if result.rel_error > RTOL:
            worst = int(np.argmax(result.rel_errors))
            floor = ("vs MXNet float64: MXNet float32 %.2e, ONNX Runtime %.2e" % result.floor
                     if result.floor else "--float64 shows MXNet's own float32 error")
            raise MismatchError("ONNX Runtime differs from MXNet for %s: max |diff| / max |MXNet| = "
                                "%.2e > %.0e (output %d of %d; %s)"
                                % (name, result.rel_error, RTOL, worst, len(result.rel_errors), floor))
    return result


# ---------------------------------------------------------------------------------------------
# the family table
# ---------------------------------------------------------------------------------------------
#: (family, registry name, input size or None for the model's own, constructor arguments)
FAMILIES = [
    ('CIFAR cell host (ResNet-20-b, paper era)', 'cifar_aff_resnet20_b1', None, {}),
    ('CIFAR cell host (ResNet-20-b, paper era)', 'cifar_iaff_resnet20_b1', None, {}),
    ('CIFAR ResNet (head era)', 'cifar_aff_resnet32', None, {}),
    ('CIFAR ResNet (paper era)', 'cifar_aff_resnet32_paper', None, {}),
    ('CIFAR ResNeXt (head era)', 'cifar_aff_resnext38_32x4d', None, {}),
    ('CIFAR ResNeXt (paper era)', 'cifar_iaff_resnext29_32x4d_paper', None, {}),
    ('ImageNet ResNet (deep stem)', 'aff_resnet50', 64, {}),
    ('ImageNet ResNet v1b', 'iaff_resnet50_v1b', 64, {}),
    ('ImageNet ResNeXt', 'aff_resnext50_32x4d', 64, {}),
    ('Inception-ResNet (CIFAR)', 'cifar_aff_inception_resnet20_b1', None, {}),
    ('FPN (StopSign segmentation)', 'stopsign_aff_fpn_resnet20_b1', 96, {}),
    ('AFINet CIFAR ResNet', 'afi_resnet32', None, {}),
    ('AFINet ImageNet ResNet', 'afi_resnet50', 64, {}),
    ('AFINet MobileNetV2', 'afi_mobilenetv2_1.0', 64, {}),
    ('ACmix ResNet', 'acmix_resnet26', 64, {}),
]
#: every fusion of the registry on the ResNet-20-b1 cell host, then the fusion classes that only
#: official mode strings reach, on the same host through fusion=<mode>
FUSION_NAMES = ['add', 'concat', 'msgau', 'msse', 'mssa', 'aff', 'iaff', 'globalglobal', 'locallocal',
                'halfaff', 'concataff', 'recursiveaff', 'se', 'sk', 'gau', 'aff1layer']
FUSION_MODES = ['AXYforXY', 'AddReLUASKCFuse', 'ConcatASKC', 'Depth4ASKCFuse', 'DepthASKCFuse',
                'ResGlobCha', 'ResLocaCha', 'ResGlobforGlobCha', 'ResLocaforLocaCha']
FAMILIES += [('fusion %s' % f, 'cifar_%s_resnet20_b1' % f, None, {}) for f in FUSION_NAMES
             if 'cifar_%s_resnet20_b1' % f not in [row[1] for row in FAMILIES]]
FAMILIES += [('fusion %s' % m, 'cifar_aff_resnet20_b1', None, {'fusion': m}) for m in FUSION_MODES]


def family_table(rows=None, markdown=False, stream=None):
    """Export and verify every row of FAMILIES (batch 2, with the float64 floor) into a temporary
    folder; print one line per row as it finishes, then the table. Returns the number of rows not
    exported or not within RTOL."""
    stream = stream or sys.stdout
    rows = FAMILIES if rows is None else rows
    tmp = tempfile.mkdtemp(prefix='aff-onnx-families-')
    table, bad = [], 0
    try:
        for i, (family, name, size, kwargs) in enumerate(rows):
            label = name + ''.join(' %s=%s' % kv for kv in sorted(kwargs.items()))
            start = time.perf_counter()
            side = size or net.get_model_info(name).input_size
            shape = '2x3x%dx%d' % (side, side)
            cells = ('', '', '')
            try:
                r = export_and_verify(name, os.path.join(tmp, '%d.onnx' % i), size=size, batch_size=2,
                                      float64=True, **kwargs)
                status, note = 'yes', ''
                cells = ('%.1e' % r.rel_error, '%.1e' % r.floor[0], '%.1e' % r.floor[1])
            except MismatchError as e:
                status, note, bad = 'MISMATCH', str(e), bad + 1
            except AFFError as e:
                status, note, bad = 'no', str(e), bad + 1
            row = (family, label, shape, status) + cells + (note,)
            table.append(row)
            print('%-42s %-38s %-11s %-4s %-7s %-7s %-7s %s (%.0f s)'
                  % (row + (time.perf_counter() - start,)), file=stream, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    header = ('family', 'model', 'input', 'exported', 'ONNX vs MXNet', 'MXNet fp32 vs fp64',
              'ONNX vs fp64', 'failing operator')
    if markdown:
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        lines += ['| ' + ' | '.join(('`%s`' % c) if j == 1 else c for j, c in enumerate(r)) + ' |'
                  for r in table]
    else:
        widths = [max(len(str(r[j])) for r in table + [header]) for j in range(len(header))]
        lines = ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + table]
    print('\n'.join(lines), file=stream)
    print('%d of %d rows exported and within %.0e; errors are max |diff| / max |reference| (opset %d, '
          'ONNX Runtime CPU, %d thread(s), seeded random weights and input)'
          % (len(table) - bad, len(table), RTOL, OPSET, mxnet_threads()), file=stream)
    return bad


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = Parser(prog='python -m utils.export', description=__doc__.split('\n')[0])
    p.add_argument('--model', help='registry name (python -m utils.models --all lists them)')
    weights = p.add_mutually_exclusive_group()
    weights.add_argument('--params', metavar='FILE',
                         help='weights written by save_parameters (default: seeded random weights)')
    weights.add_argument('--pretrained', action='store_true',
                         help="the model's released checkpoint (net.model_store; must be on disk)")
    p.add_argument('--input-size', type=positive_int, default=None,
                   help="input side length (default: the model's own, e.g. 32 for CIFAR, 224 for ImageNet)")
    p.add_argument('--batch-size', type=positive_int, default=1,
                   help='batch dimension of the exported input (fixed in the file; default 1)')
    p.add_argument('--out', metavar='FILE.onnx', default=None, help='the ONNX file (default: NAME.onnx)')
    p.add_argument('--classes', type=positive_int, default=None,
                   help="classifier outputs (default: the model's own; must match --params)")
    p.add_argument('--set', dest='model_args', type=model_arg, action='append', default=[],
                   metavar='KEY=VALUE', help='constructor argument, e.g. fusion=AXYforXY')
    p.add_argument('--seed', type=seed_int, default=0, help='seed of the random weights and input (0)')
    p.add_argument('--no-verify', action='store_true',
                   help='skip the ONNX Runtime check (onnxruntime is then not needed)')
    p.add_argument('--float64', action='store_true',
                   help="also compare MXNet's and ONNX Runtime's float32 outputs with MXNet in float64 "
                   "(what float32 rounding alone costs this network)")
    p.add_argument('--bench', action='store_true',
                   help="also measure inference images/s: ONNX Runtime vs MXNet's inference path")
    p.add_argument('--bench-windows', type=positive_int, default=5,
                   help='timed windows per runtime for --bench (about 1 s each; default 5)')
    p.add_argument('--all-families', action='store_true',
                   help='export and verify one model of every family and fusion; print the status table')
    p.add_argument('--markdown', action='store_true', help='--all-families: print a Markdown table')
    args = p.parse_args(argv)
    if args.all_families:
        if args.model or args.params or args.pretrained:
            p.error('--all-families takes no --model / --params / --pretrained')
    elif not args.model:
        p.error('give --model NAME (or --all-families)')
    if (args.bench or args.float64) and args.no_verify:
        p.error('--bench and --float64 need onnxruntime; drop --no-verify')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.all_families:
        onnx_modules()
        return 1 if family_table(markdown=args.markdown) else 0
    out = args.out or args.model + '.onnx'
    result = export_and_verify(args.model, out, params=args.params, pretrained=args.pretrained,
                               size=args.input_size, batch_size=args.batch_size, classes=args.classes,
                               seed=args.seed, check=not args.no_verify, float64=args.float64,
                               **dict(args.model_args))
    shape = 'x'.join(str(d) for d in result.shape)
    print('exported %s (input %s, opset %d, %d nodes) to %s' % (args.model, shape, OPSET, result.nodes,
                                                                out))
    if result.rel_errors:
        print('verified in ONNX Runtime (CPU, %d thread(s)): max |diff| / max |MXNet output| = %.2e '
              '<= %.0e over %d output(s)' % (mxnet_threads(), result.rel_error, RTOL,
                                             len(result.rel_errors)))
    if result.floor:
        print('float64 reference (MXNet): MXNet float32 %.2e, ONNX Runtime %.2e (max |diff| / max |float64|)'
              % result.floor)
    if args.bench:
        x = example_input(result.shape, args.seed)
        b = bench(out, result.model, x, windows=args.bench_windows)
        print('bench (batch %d, %d thread(s), median of %d windows): ONNX Runtime %.1f images/s, '
              'MXNet %.1f images/s (%s)' % (result.shape[0], mxnet_threads(), b['windows'],
                                            b['onnxruntime'], b['mxnet'], b['mxnet_path']))
    return 0


if __name__ == '__main__':
    run_main(main)
