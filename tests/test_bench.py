"""The benchmark suite runs on a tiny setting and writes its JSON schema; the fast paths it measures compute the
same function as the baselines (no timing is asserted anywhere)."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import net
from net.fusion import AFF, IAFF, GlobalGlobal, GlobalSelect, HalfAFF, IterativeGlobal, set_fast
from conftest import ROOT, rel_err
from utils.train import hybridize_for_inference


def _pair(cls, channels=16):
    a, b = cls(channels), cls(channels)
    a.initialize()
    b.initialize()
    x = mx.nd.random.normal(shape=(2, channels, 6, 6))
    y = mx.nd.random.normal(shape=(2, channels, 6, 6))
    a(x, y)
    b(x, y)
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data())
    return a, b, x, y


@pytest.mark.parametrize('cls', [AFF, IAFF, GlobalGlobal, GlobalSelect, HalfAFF, IterativeGlobal])
def test_baseline_and_fast_fusions_agree(cls, seeded):
    fast, base, x, y = _pair(cls)
    assert set_fast(base, False) == 1 and base.fast is False and fast.fast is True
    for block in (fast, base):
        block.hybridize()
    want = base(x, y).asnumpy()
    assert rel_err(fast(x, y).asnumpy(), want) < 2e-6
    with mx.autograd.record():
        t_base = base(x, y)
    with mx.autograd.record():
        t_fast = fast(x, y)
    # training-mode BatchNorm divides by batch statistics of 2 x 6 x 6 values, which magnifies the
    # rounding of mean-vs-Pooling (measured up to 2.4e-6); the standard's bound is 1e-4
    assert rel_err(t_fast.asnumpy(), t_base.asnumpy()) < 1e-5


def test_set_fast_reaches_every_fusion_of_a_network():
    model = net.get_model('cifar_iaff_resnet20_b1', classes=10)
    assert set_fast(model, False) == 3  # one fusion per block, three blocks
    assert set_fast(model, True) == 3


@pytest.mark.parametrize('name', ['cifar_add_resnet20_b1', 'cifar_aff_resnet20_b1', 'cifar_msgau_resnet20_b1'])
def test_inference_path_matches_the_unfused_network(name, seeded):
    """utils.train.hybridize_for_inference (oneDNN folding, Pooling, static_alloc) computes the
    baseline's function, for the example batch shape and for another one."""
    from utils.models import build
    from utils.train import hybridize_for_inference
    base, _, _ = build(name, classes=10)
    set_fast(base, False)
    base.hybridize()
    fused, _, _ = build(name, classes=10)
    for p, q in zip(base.collect_params().values(), fused.collect_params().values()):
        q.set_data(p.data())
    x = mx.nd.random.uniform(shape=(3, 3, 32, 32))
    note = hybridize_for_inference(fused, x)
    # the plain host hits MXNet 1.9.1's conv+sum bug: static_alloc only, and the sentence says why
    if name == 'cifar_add_resnet20_b1':
        assert note.startswith('inference: oneDNN graph optimisation failed (') and 'Cannot find arg' in note
        assert note.endswith('hybridized with static_alloc only')
    else:
        assert note == 'inference: oneDNN graph optimisation (optimize_for MKLDNN), static_alloc'
    assert rel_err(fused(x).asnumpy(), base(x).asnumpy()) <= 2e-5
    x5 = mx.nd.random.uniform(shape=(5, 3, 32, 32))
    assert rel_err(fused(x5).asnumpy(), base(x5).asnumpy()) <= 2e-5


def _forward_backward(fn, inputs, head):
    """``fn(*inputs)`` recorded on fresh copies of ``inputs`` and back-propagated from ``head``:
    (output, [input gradients]) as NDArrays."""
    copies = [a.copy() for a in inputs]
    for a in copies:
        a.attach_grad()
    with mx.autograd.record():
        out = fn(*copies)
    out.backward(head)
    return out, [a.grad for a in copies]


def test_global_avg_pool_paths_agree_and_are_switched(seeded):
    from net.layers import GlobalAvgPool, set_train_path
    mean, pool = GlobalAvgPool(), GlobalAvgPool(fast=False)
    x = mx.nd.random.normal(shape=(4, 16, 28, 28))
    grads = []
    for block in (mean, pool):
        block.hybridize()
        out, (grad,) = _forward_backward(block, [x], mx.nd.arange(64).reshape(4, 16, 1, 1))
        grads.append(grad.asnumpy())
        assert out.shape == (4, 16, 1, 1)
    # float32 sums of 784 values in different orders (typical rounding ~ sqrt(784) * 6e-8)
    assert rel_err(mean(x).asnumpy(), x.asnumpy().mean(axis=(2, 3), keepdims=True)) < 1e-5
    assert rel_err(pool(x).asnumpy(), mean(x).asnumpy()) < 1e-5
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    model = net.get_model('cifar_aff_resnet20_b1', classes=10)
    assert set_train_path(model, False) == 4  # three fusions' global branches + the head
    assert set_fast(model, True) == 3 and set_train_path(model, True) == 4


def _ops(block, x):
    """Operator names of ``block``'s hybridized graph for input ``x`` (a list: several inputs)."""
    block.hybridize()
    block(*(x if isinstance(x, list) else [x]))
    sym = block._cached_graph[1]
    return [n['op'] for n in json.loads(sym.tojson())['nodes']]


@pytest.mark.parametrize('groups,reorders', [(32, True), (16, True), (8, False), (4, False), (128, False)])
def test_grouped_conv_reorder_is_the_same_conv_and_is_switched(groups, reorders, seeded):
    """net.layers.GroupedConv2D: names, values and gradients of nn.Conv2D; the layout copies only
    for group widths that are not multiples of 16 (width 128 // groups) and only on the fast path."""
    from mxnet.gluon import nn
    from net.layers import GroupedConv2D, set_train_path
    ref = nn.Conv2D(128, 3, 1, 1, groups=groups, use_bias=False, in_channels=128, prefix='c_')
    conv = GroupedConv2D(128, 3, 1, 1, groups=groups, use_bias=False, in_channels=128, prefix='c_')
    assert list(conv.collect_params()) == list(ref.collect_params()) == ['c_weight']
    assert conv.reorders is reorders
    ref.initialize()
    conv.initialize()
    conv.weight.set_data(ref.weight.data())
    x = mx.nd.random.normal(shape=(2, 128, 8, 8))
    ops = _ops(conv, x)
    assert (ops.count('slice_axis'), ops.count('Reshape')) == ((1, 1) if reorders else (0, 0))
    assert set_train_path(conv, False) == 1
    assert 'slice_axis' not in _ops(conv, x)
    set_train_path(conv, True)
    conv.hybridize()
    head = mx.nd.random.normal(shape=(2, 128, 8, 8))
    outs, grads = [], []
    for block in (ref, conv):
        block.hybridize()
        out, (grad,) = _forward_backward(block, [x], head)
        outs.append(out.asnumpy())
        grads.append((grad.asnumpy(), block.weight.grad().asnumpy()))
    assert np.array_equal(outs[0], outs[1])
    for a, b in zip(grads[0], grads[1]):
        assert rel_err(b, a) < 1e-6


@pytest.mark.parametrize('shape', [(3, 5, 4, 6), (2, 8, 1, 1)])
def test_add_hw_is_the_broadcast_add_forward_and_backward(shape, seeded):
    """net.layers.add_hw (the fast (+) of Eq. 3): equal to broadcast_add, gradients included."""
    from net.layers import add_hw
    x = mx.nd.random.normal(shape=shape)
    v = mx.nd.random.normal(shape=shape[:2] + (1, 1))
    head = mx.nd.random.normal(shape=shape)
    results = []
    for fn in (mx.nd.broadcast_add, lambda a, b: add_hw(mx.nd, a, b)):
        out, (gx, gv) = _forward_backward(fn, [x, v], head)
        results.append((out.asnumpy(), gx.asnumpy(), gv.asnumpy()))
    assert np.array_equal(results[0][0], results[1][0])          # v * 1 is exact
    assert np.array_equal(results[0][1], results[1][1])
    assert rel_err(results[1][2], results[0][2]) < 1e-6           # a sum over H x W either way


@pytest.mark.parametrize('cls,uses', [(AFF, True), (IAFF, True), (GlobalGlobal, False)])
def test_fast_context_sum_uses_add_hw_and_the_baseline_broadcast_add(cls, uses):
    from mxnet.gluon import nn as gnn

    class Wrap(gnn.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.f = cls(8)

        def hybrid_forward(self, F, a, b):
            return self.f(a, b)
    block = Wrap()
    block.initialize()
    x = mx.nd.random.uniform(shape=(2, 8, 4, 4))
    fast_ops = _ops(block, [x, x])
    assert ('dot' in fast_ops) is uses and ('broadcast_add' in fast_ops) is not uses
    set_fast(block, False)
    base_ops = _ops(block, [x, x])
    assert 'dot' not in base_ops and 'broadcast_add' in base_ops


def test_resnext_blocks_use_the_reordering_grouped_conv_and_inference_drops_it():
    from net.layers import GroupedConv2D, blocks
    model = net.get_model('cifar_aff_resnext38_32x4d', classes=10)
    convs = [b for b in blocks(model) if isinstance(b, GroupedConv2D)]
    # 3 stages x 4 blocks, group widths 4, 8, 16: the first two stages reorder
    assert len(convs) == 12 and [c.reorders for c in convs] == [True] * 8 + [False] * 4
    assert all(c.fast for c in convs)
    assert set_fast(model, False) == 12 and not any(c.fast for c in convs)
    set_fast(model, True)
    model.initialize()
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    hybridize_for_inference(model, x)
    assert not any(c.fast for c in convs)


def _bench(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'utils.bench'] + args, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_suite_writes_the_schema_and_the_markdown_tables(tmp_path):
    out = tmp_path / 'suite.json'
    res = _bench(['--quick', '--json', str(out)], tmp_path)
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert (rec['schema'], rec['kind'], rec['quick']) == (1, 'suite', True)
    assert rec['threads'] == '1' and rec['mxnet_version'] == mx.__version__ and isinstance(rec['mkldnn'], bool)
    assert rec['machine']['cpu_model'] and rec['machine']['usable_cores'] >= 1
    assert isinstance(rec['mxnet_features'], list) and 'MKLDNN' in rec['mxnet_features']
    assert [m['model'] for m in rec['models']] == ['cifar_add_resnet20_b1', 'cifar_aff_resnet20_b1']
    for m in rec['models']:
        assert (m['batch_size'], m['input_size']) == (2, 32)
        assert set(m['train']) == {'baseline', 'fast', 'speedup'}
        assert set(m['inference']) == {'baseline', 'fast_hybrid', 'static', 'fast', 'speedup'}
        for phase in ('train', 'inference'):
            for k, v in m[phase].items():
                if k != 'speedup':
                    assert len(v['window_seconds']) == rec['windows'] and v['images_per_s'] > 0
        assert max(m['inference_rel_err_vs_baseline'].values()) <= 2e-5
    (ov,) = rec['fusion_overhead']
    assert (ov['model'], ov['host']) == ('cifar_aff_resnet20_b1', 'cifar_add_resnet20_b1')
    assert 0 < ov['flops']['macs'] < 0.2
    assert set(ov['train']) == {'baseline', 'fast', 'ratio_to_flops'}
    for key in ('cifar_standard', 'cifar_autoaugment', 'imagenet_recordio'):
        assert rec['data'][key]['images_per_s'] > 0
    md = _bench(['--markdown', str(out)], tmp_path)
    assert md.returncode == 0, md.stderr
    assert md.stdout.count('| cifar_aff_resnet20_b1 |') == 2 and '| imagenet_recordio |' in md.stdout


def test_markdown_of_a_non_suite_file_is_one_error_line(tmp_path):
    bad = tmp_path / 'x.json'
    bad.write_text('{"model": "m"}')
    res = _bench(['--markdown', str(bad)], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith('error: ') and res.stderr.count('\n') == 1


def test_model_and_suite_flags_conflict_is_one_error_line(tmp_path):
    res = _bench(['--model', 'cifar_add_resnet20_b1', '--quick'], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith('error: ') and res.stderr.count('\n') == 1


def test_operator_profile_lists_the_operators_of_both_paths(tmp_path):
    """utils.bench_profile (the source of the causes in docs/performance.md): the baseline's global average
    pooling is the Pooling operator and its sigmoid an Activation; the fast training path pools with a mean."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)

    def ops(*flags):
        cmd = [sys.executable, '-m', 'utils.bench_profile', '--model', 'cifar_aff_resnet20_b1',
               '--batch-size', '2', '--iters', '1', '--min-share', '0']
        res = subprocess.run(cmd + list(flags), cwd=str(tmp_path), env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0].startswith('cifar_aff_resnet20_b1, ') and lines[-1].startswith('sum of operators')
        return {ln.split()[0] for ln in lines[2:-1]}, lines[0]
    base, head = ops('--baseline')
    assert {'_backward_Pooling', '_backward_Convolution', 'Activation'} <= base and 'baseline' in head
    fast, head = ops()
    assert '_backward_mean' in fast and '_backward_Pooling' not in fast and 'fast' in head
    infer, head = ops('--phase', 'inference')
    assert '_sg_mkldnn_conv' in infer and 'oneDNN graph optimisation (' in head
    bad = subprocess.run([sys.executable, '-m', 'utils.bench_profile', '--model', 'nope'], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith('error: ') and bad.stderr.count('\n') == 1
