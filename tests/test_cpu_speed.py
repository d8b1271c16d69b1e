"""net.cpu_speed, the CPU speed layer: every rewrite computes the official module's function, with its
parameters; it is applied on CPU contexts only, and GPU contexts keep the official structure."""
import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import net
from conftest import ROOT, rel_err
from net import cpu_speed, fusion, kernels
from net.layers import GlobalAvgPool, GroupedConv2D, blocks
from utils import train as T

#: every fusion class the speed layer rewrites, and those it leaves alone
REWRITTEN = [fusion.MSCAM, fusion.AFF, fusion.IAFF, fusion.GlobalGlobal, fusion.LocalLocal,
             fusion.AFFSingleLayer, fusion.MSGAU, fusion.MSSE, fusion.MSSA, fusion.MSModulatedSum,
             fusion.HalfAFF, fusion.ConcatAFF, fusion.RecursiveAFF, fusion.GlobalSelect,
             fusion.LocalSelect, fusion.DepthwiseAFF, fusion.Depthwise4AFF, fusion.ReLUAFF,
             fusion.SharedConvAFF]
UNTOUCHED = [fusion.DirectAdd, fusion.Concat, fusion.SE, fusion.GAU, fusion.SK,
             fusion.IterativeGlobal, fusion.IterativeLocal]


class _Wrap(nn.HybridBlock):
    """A fusion as the child of a block (as in a network), called with one or two inputs."""

    def __init__(self, cls, channels=16):
        super().__init__()
        self.single = cls is fusion.MSCAM
        with self.name_scope():
            self.f = cls(channels)

    def hybrid_forward(self, F, x, y):
        return self.f(x) if self.single else self.f(x, y)


def _twins(make):
    """Two initialised copies of ``make()`` with the same parameter values."""
    a, b = make(), make()
    for m in (a, b):
        m.initialize()
    return a, b


def _copy(src, dst, *inputs):
    dst(*inputs)                       # deferred shapes
    for p, q in zip(src.collect_params().values(), dst.collect_params().values()):
        q.set_data(p.data())


def _run(block, inputs, head, train):
    """(output, input gradients, parameter gradients) of ``block`` on copies of ``inputs``."""
    copies = [a.copy() for a in inputs]
    for a in copies:
        a.attach_grad()
    with mx.autograd.record(train_mode=train):
        out = block(*copies)
    out.backward(head)
    grads = [p.grad().asnumpy() for p in block.collect_params().values() if p.grad_req != 'null']
    return out.asnumpy(), [a.grad.asnumpy() for a in copies], grads


def _ops(block, inputs):
    """Operator names of ``block``'s hybridized graph."""
    block.hybridize()
    block(*inputs)
    return [n['op'] for n in json.loads(block._cached_graph[1].tojson())['nodes']]


KERNEL = kernels.load()
needs_kernel = pytest.mark.skipif(not KERNEL, reason='the fused kernel is not usable here: %s'
                                  % KERNEL.reason)
#: the fusions whose tail the fused operator computes
KERNEL_TAILS = {fusion.AFF, fusion.IAFF, fusion.MSCAM, fusion.AFFSingleLayer, fusion.DepthwiseAFF,
                fusion.ReLUAFF}
PATHS = [pytest.param(False, id='pure'), pytest.param(True, id='kernel', marks=needs_kernel)]


@pytest.mark.parametrize('fused', PATHS)
@pytest.mark.parametrize('cls', REWRITTEN, ids=lambda c: c.__name__)
def test_every_rewritten_fusion_computes_the_official_function(cls, fused, seeded):
    if fused and cls not in KERNEL_TAILS:
        pytest.skip('no fused tail for %s' % cls.__name__)
    official, fast = _twins(lambda: _Wrap(cls))
    x, y = mx.nd.random.normal(shape=(2, 16, 6, 6)), mx.nd.random.normal(shape=(2, 16, 6, 6))
    _copy(official, fast, x, y)
    note = cpu_speed.apply(fast, mx.cpu(), fused=fused)
    assert note.startswith('CPU speed layer (net.cpu_speed): 1 fusion')
    assert ('fused kernel on 1 tail(s)' in note) is fused
    assert type(fast.f).__name__ == 'CPU' + cls.__name__ and type(official.f) is cls
    assert getattr(type(fast.f), 'fused_kernel', False) is fused
    head = mx.nd.random.normal(shape=(2, 16, 6, 6))
    if cls is fusion.HalfAFF:
        # the official Half-AFF's backward dies in oneDNN (SIGFPE, see the last test): forward only;
        # the rewrite adds an identity copy to the official graph and the tested fast selection
        for train in (False, True):
            with mx.autograd.record(train_mode=train):
                want, got = official(x, y).asnumpy(), fast(x, y).asnumpy()
            assert rel_err(got, want) < (1e-5 if train else 2e-6)
        return
    for train in (False, True):
        want, want_in, want_p = _run(official, [x, y], head, train)
        got, got_in, got_p = _run(fast, [x, y], head, train)
        # training-mode BatchNorm over 2 x 6 x 6 values magnifies float32 rounding (< 1e-4 bound)
        tol = 1e-5 if train else 2e-6
        assert rel_err(got, want) < tol
        # relative to the largest gradient: some are zero in exact arithmetic (a conv bias before
        # a training-mode BatchNorm; MS-CAM's unused second input) and hold only rounding noise
        scale = max(np.abs(w).max() for w in want_in + want_p)
        for g, w in zip(got_in + got_p, want_in + want_p):
            assert np.abs(g - w).max() <= 1e-4 * scale
    assert list(fast._collect_params_with_prefix()) == list(official._collect_params_with_prefix())


@pytest.mark.parametrize('cls', UNTOUCHED, ids=lambda c: c.__name__)
def test_fusions_without_a_tail_to_rewrite_stay_official(cls):
    block = _Wrap(cls)
    assert cpu_speed.apply(block, mx.cpu(), training=False) == 'CPU speed layer: nothing to rewrite'
    assert type(block.f) is cls
    cpu_speed.apply(block, mx.cpu())           # training: only their pooling, if any
    assert type(block.f) is cls and set(cpu_speed.describe(block)) <= {'mean pooling'}


@pytest.mark.parametrize('cls,dot', [(fusion.AFF, True), (fusion.IAFF, True),
                                     (fusion.GlobalGlobal, False)])
def test_the_eq3_sum_is_add_hw_only_in_the_speed_layer(cls, dot):
    block = _Wrap(cls, 8)
    block.initialize()
    x = mx.nd.random.uniform(shape=(2, 8, 4, 4))
    official = _ops(block, [x, x])
    assert 'dot' not in official and 'broadcast_add' in official
    # training=False: the training-only mean pooling (mean_hw) is a dot product too
    cpu_speed.apply(block, mx.cpu(), training=False, fused=False)
    fast = _ops(block, [x, x])
    assert ('dot' in fast) is dot and ('broadcast_add' in fast) is not dot


@needs_kernel
@pytest.mark.parametrize('cls,op,n', [(fusion.AFF, 'aff_tail', 1), (fusion.IAFF, 'aff_tail', 2),
                                      (fusion.MSCAM, 'mscam_tail', 1),
                                      (fusion.GlobalGlobal, 'aff_tail', 0)])
def test_the_kernel_replaces_the_tail_in_the_graph(cls, op, n):
    block = _Wrap(cls, 8)
    block.initialize()
    x = mx.nd.random.uniform(shape=(2, 8, 4, 4))
    cpu_speed.apply(block, mx.cpu(), training=False)      # no mean_hw dot beside the tail
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)     # MS-CAM's wrapper ignores its y
        ops = _ops(block, [x, x])
    assert ops.count(op) == n
    assert ('dot' in ops or 'broadcast_add' in ops) is (n == 0)     # no pure (+) left beside it


@needs_kernel
def test_the_kernel_is_refused_for_accumulated_gradients_and_said():
    """grad_req='add' (gradient accumulation): lib_api operators overwrite their input gradients,
    so the speed layer takes the pure path and the sentence says why."""
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize()
    for p in model.collect_params().values():
        p.grad_req = 'add'
    note = cpu_speed.apply(model, mx.cpu())
    assert "fused kernel off, pure path: parameter" in note and "grad_req 'add'" in note
    assert not any(getattr(type(b), 'fused_kernel', False) for b in cpu_speed.rewritten(model))
    for p in model.collect_params().values():
        p.grad_req = 'write'
    assert 'fused kernel on 3 tail(s)' in cpu_speed.apply(model, mx.cpu())


@pytest.mark.parametrize('shape', [(3, 5, 4, 6), (2, 8, 1, 1)])
def test_add_hw_is_the_broadcast_add_forward_and_backward(shape, seeded):
    x = mx.nd.random.normal(shape=shape)
    v = mx.nd.random.normal(shape=shape[:2] + (1, 1))
    head = mx.nd.random.normal(shape=shape)
    results = []
    for fn in (mx.nd.broadcast_add, lambda a, b: cpu_speed.add_hw(mx.nd, a, b)):
        copies = [x.copy(), v.copy()]
        for a in copies:
            a.attach_grad()
        with mx.autograd.record():
            out = fn(*copies)
        out.backward(head)
        results.append((out.asnumpy(), copies[0].grad.asnumpy(), copies[1].grad.asnumpy()))
    assert np.array_equal(results[0][0], results[1][0])          # v * 1 is exact
    assert np.array_equal(results[0][1], results[1][1])
    assert rel_err(results[1][2], results[0][2]) < 1e-6           # a sum over H x W either way


@pytest.mark.parametrize('shape', [(4, 16, 28, 28), (3, 5, 7, 7), (2, 8, 1, 1)])
def test_mean_pooling_is_the_pooling_forward_and_backward(shape, seeded):
    pool = GlobalAvgPool()
    x = mx.nd.random.normal(shape=shape)
    head = mx.nd.arange(shape[0] * shape[1]).reshape(shape[0], shape[1], 1, 1)
    want = _run(pool, [x], head, True)
    cpu_speed.apply(pool, mx.cpu(), training=True)
    assert type(pool).__name__ == 'CPUGlobalAvgPool'
    got = _run(pool, [x], head, True)
    # float32 sums of up to 784 values in different orders (typical rounding ~ sqrt(784) * 6e-8)
    assert rel_err(got[0], want[0]) < 1e-5
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-6)
    cpu_speed.apply(pool, mx.cpu(), training=False)       # inference keeps the Pooling forward
    assert type(pool) is GlobalAvgPool


@pytest.mark.parametrize('groups,copies', [(32, True), (16, True), (8, False), (4, False),
                                           (128, False)])
def test_grouped_conv_layout_copies_only_for_slow_group_widths(groups, copies, seeded):
    """Group widths 128 // groups = 4, 8 get the plain-layout copies; 16, 32 and depthwise do not;
    names, values and gradients are those of nn.Conv2D."""
    ref = nn.Conv2D(128, 3, 1, 1, groups=groups, use_bias=False, in_channels=128, prefix='c_')
    conv = GroupedConv2D(128, 3, 1, 1, groups=groups, use_bias=False, in_channels=128, prefix='c_')
    assert list(conv.collect_params()) == list(ref.collect_params()) == ['c_weight']
    for m in (ref, conv):
        m.initialize()
    conv.weight.set_data(ref.weight.data())
    x = mx.nd.random.normal(shape=(2, 128, 8, 8))
    assert 'slice_axis' not in _ops(conv, [x])
    cpu_speed.apply(conv, mx.cpu(), training=True)
    ops = _ops(conv, [x])
    assert (ops.count('slice_axis'), ops.count('Reshape')) == ((1, 1) if copies else (0, 0))
    head = mx.nd.random.normal(shape=(2, 128, 8, 8))
    (o1, g1, p1), (o2, g2, p2) = (_run(m, [x], head, True) for m in (ref, conv))
    assert np.array_equal(o1, o2)
    for a, b in zip(g1 + p1, g2 + p2):
        assert rel_err(b, a) < 1e-6
    cpu_speed.apply(conv, mx.cpu(), training=False)
    assert 'slice_axis' not in _ops(conv, [x])


def test_a_network_is_counted_rewritten_and_restored():
    model = net.get_model('cifar_iaff_resnet20_b1', classes=10)
    # 3 iAFF blocks, each with two pooled global branches, and the head's pooling
    assert cpu_speed.apply(model, [mx.cpu(0), mx.cpu(1)], fused=False) == \
        'CPU speed layer (net.cpu_speed): 3 fusion, 7 mean pooling; fused kernel not asked for'
    assert cpu_speed.apply(model, mx.cpu(), training=False).startswith(
        'CPU speed layer (net.cpu_speed): 3 fusion; fused kernel ')
    assert cpu_speed.remove(model) == 3 and cpu_speed.rewritten(model) == []
    resnext = net.get_model('cifar_aff_resnext38_32x4d', classes=10)
    # 3 stages x 4 blocks of group widths 4, 8, 16: the first two stages get the copies
    assert cpu_speed.describe(resnext) == {}
    cpu_speed.apply(resnext, mx.cpu())
    assert cpu_speed.describe(resnext) == {'fusion': 12, 'mean pooling': 13,
                                           'plain-layout grouped conv': 8}


def _official_structure(model):
    classes = {type(b) for b in blocks(model)}
    return not any(getattr(c, 'cpu_speed', False) for c in classes)


def test_gpu_contexts_get_exactly_the_official_structure():
    """Hybridizing needs no device, so the GPU branch of the scripts runs here: no CPU rewrite is
    left in the network (one applied earlier is removed), and the graph has the official ops."""
    model = net.get_model('cifar_aff_resnext38_32x4d', classes=10)
    cpu_speed.apply(model, mx.cpu())
    note = T.hybridize_for_training(model, [mx.gpu(0), mx.gpu(1)])
    assert _official_structure(model)
    assert 'GPU context: the official module structure (33 CPU rewrites removed)' in note
    assert dict(model._flags).get('static_shape') is True
    model.initialize()
    sym = model(mx.sym.var('data'))
    ops = {n['op'] for n in json.loads(sym.tojson())['nodes']}
    assert 'dot' not in ops and 'slice_axis' not in ops and 'mean' not in ops
    assert {'broadcast_add', 'broadcast_mul', 'Pooling'} <= ops
    assert cpu_speed.apply(net.get_model('cifar_aff_resnet20_b1'), mx.gpu(0)).startswith(
        'GPU context: the official module structure (MXNet')


def test_cpu_training_hybridization_applies_the_speed_layer():
    model = net.get_model('cifar_aff_resnext38_32x4d', classes=10)
    note = T.hybridize_for_training(model, [mx.cpu()])
    assert 'CPU speed layer (net.cpu_speed): 12 fusion, 13 mean pooling, 8 plain-layout ' \
        'grouped conv; fused kernel ' in note
    assert dict(model._flags).get('static_shape', False) is False


@pytest.mark.parametrize('name', ['cifar_add_resnet20_b1', 'cifar_aff_resnet20_b1',
                                  'cifar_msgau_resnet20_b1'])
def test_inference_path_matches_the_official_network(name, seeded):
    """utils.train.hybridize_for_inference (speed layer, oneDNN folding, static_alloc) computes the
    official network's function, for the example batch shape and for another one."""
    from utils.models import build
    base, _, _ = build(name, classes=10)
    base.hybridize()
    fused, _, _ = build(name, classes=10)
    for p, q in zip(base.collect_params().values(), fused.collect_params().values()):
        q.set_data(p.data())
    x = mx.nd.random.uniform(shape=(3, 3, 32, 32))
    note = T.hybridize_for_inference(fused, x)
    # the plain host hits MXNet 1.9.1's conv+sum bug: static_alloc only, and the sentence says why
    if name == 'cifar_add_resnet20_b1':
        assert note.startswith('inference: oneDNN graph optimisation failed (') and 'Cannot find arg' in note
        assert note.endswith('hybridized with static_alloc only; CPU speed layer: nothing to rewrite')
    else:
        assert note.startswith('inference: oneDNN graph optimisation (optimize_for MKLDNN), '
                               'static_alloc; CPU speed layer (net.cpu_speed): 3 fusion; ')
    assert rel_err(fused(x).asnumpy(), base(x).asnumpy()) <= 2e-5
    x5 = mx.nd.random.uniform(shape=(5, 3, 32, 32))
    assert rel_err(fused(x5).asnumpy(), base(x5).asnumpy()) <= 2e-5


def test_export_after_remove_holds_only_official_operators(tmp_path):
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    model.initialize()
    cpu_speed.apply(model, mx.cpu())
    cpu_speed.remove(model)
    model.hybridize()
    model(mx.nd.zeros((1, 3, 32, 32)))
    model.export(str(tmp_path / 'm'))
    with open(str(tmp_path / 'm-symbol.json')) as f:
        ops = {n['op'] for n in json.load(f)['nodes']}
    assert 'dot' not in ops and 'mean' not in ops and 'Pooling' in ops


def test_half_aff_trains_on_the_cpu_through_the_speed_layer():
    """MXNet 1.9.1's oneDNN kills the process (SIGFPE) in the training backward of Half-AFF's post
    conv on its concatenation -- official structure included; the speed layer's plain-layout copy
    avoids it.  Run in a child process, which a floating-point exception would end."""
    code = ('import mxnet as mx, net\n'
            'from utils import train as T\n'
            'm = net.get_model("cifar_halfaff_resnet20_b1", classes=10)\n'
            'm.initialize()\n'
            'print(T.hybridize_for_training(m, [mx.cpu()]))\n'
            'x = mx.nd.random.normal(shape=(4, 3, 32, 32))\n'
            'with mx.autograd.record():\n'
            '    out = m(x)\n'
            'out.backward()\n'
            'mx.nd.waitall()\n'
            'print("trained")\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split('\n')[-2] == 'trained'
