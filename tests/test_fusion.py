"""Fusion modules: each official formula (docs/official-code.md §1.3-1.4) recomputed independently in numpy.

The numpy references below address the parameters by their official saved names
(``local_att.0.weight`` ...), so they check the child structure and the formula together.
X is the identity (official ``residual``), Y the residual-branch output (official ``x``).
"""
import mxnet as mx
import numpy as np
import pytest

import net
from net import fusion as F_
from net.errors import AFFError, UnknownNameError

C, H, W, N = 16, 5, 4, 3


def _params(block):
    return {k: v.data().asnumpy() for k, v in block._collect_params_with_prefix().items()}


def _init(block, seed=0):
    """Random weights AND random BatchNorm statistics, so BN is not the identity."""
    mx.random.seed(seed)
    block.initialize(mx.init.Uniform(0.5))
    rng = np.random.RandomState(seed)
    for name, p in block._collect_params_with_prefix().items():
        if name.endswith('running_mean') or name.endswith('beta'):
            p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape)))
        elif name.endswith('running_var') or name.endswith('gamma'):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
    return block


class Ref:
    """numpy evaluation of official branches by parameter name (inference-mode BN)."""

    def __init__(self, p):
        self.p = p

    def conv(self, t, name):
        w = self.p[name + '.weight'][:, :, 0, 0]
        groups = t.shape[1] // w.shape[1]
        outs = []
        og, ig = w.shape[0] // groups, w.shape[1]
        for g in range(groups):
            outs.append(np.einsum('oi,nihw->nohw', w[g * og:(g + 1) * og], t[:, g * ig:(g + 1) * ig]))
        out = np.concatenate(outs, axis=1)
        b = self.p.get(name + '.bias')
        return out if b is None else out + b[None, :, None, None]

    def bn(self, t, name):
        g, b = self.p[name + '.gamma'], self.p[name + '.beta']
        m, v = self.p[name + '.running_mean'], self.p[name + '.running_var']
        s = lambda a: a[None, :, None, None]  # noqa: E731
        return (t - s(m)) / np.sqrt(s(v) + 1e-5) * s(g) + s(b)

    def bottleneck(self, t, name, first):
        """conv-bn-relu-conv-bn starting at index ``first``."""
        i = first
        h = relu(self.bn(self.conv(t, '%s.%d' % (name, i)), '%s.%d' % (name, i + 1)))
        return self.bn(self.conv(h, '%s.%d' % (name, i + 3)), '%s.%d' % (name, i + 4))

    def single(self, t, name, first):
        return self.bn(self.conv(t, '%s.%d' % (name, first)), '%s.%d' % (name, first + 1))

    # the two MS-CAM context branches of docs/official-code.md §1.2
    def local(self, t, name='local_att'):
        return self.bottleneck(t, name, 0)

    def glob(self, t, name='global_att'):
        return self.bottleneck(gap(t), name, 1)


def relu(a):
    return np.maximum(a, 0)


def sig(a):
    return 1 / (1 + np.exp(-a))


def gap(a):
    return a.mean(axis=(2, 3), keepdims=True)


def REFERENCES():
    """paper name -> numpy reference f(R, X, Y) written from docs/official-code.md §1.3-1.4."""
    def aff(R, x, y):
        t = x + y
        w = sig(R.local(t) + R.glob(t))
        return 2 * y * w + 2 * x * (1 - w)

    def iaff(R, x, y):
        t = x + y
        w1 = sig(R.local(t) + R.glob(t))
        i = y * w1 + x * (1 - w1)
        w2 = sig(R.local(i, 'local_att2') + R.glob(i, 'global_att2'))
        return y * w2 + x * (1 - w2)

    def gg(R, x, y):
        t = x + y
        w = sig(R.bottleneck(gap(t), 'local_att', 1) + R.glob(t))
        return 2 * y * w + 2 * x * (1 - w)

    def ll(R, x, y):
        t = x + y
        w = sig(R.local(t) + R.bottleneck(t, 'global_att', 0))
        return 2 * y * w + 2 * x * (1 - w)

    def single_w(R, t):
        return sig(R.single(t, 'local_att', 0) + R.single(gap(t), 'global_att', 1))

    def aff1(R, x, y):
        w = single_w(R, x + y)
        return 2 * y * w + 2 * x * (1 - w)

    def concat(R, x, y):
        t = R.bn(np.concatenate([y, x], axis=1), 'fuse.0')
        return R.conv(t, 'fuse.1')

    def se(R, x, y):
        return x + y * sig(R.bottleneck(gap(y), 'global_att', 1))

    def gau(R, x, y):
        return sig(R.single(gap(y), 'global_att', 1)) * x + y

    def sk(R, x, y):
        a = R.bottleneck(gap(x + y), 'global_att', 1).reshape(N, 2, C)
        a = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
        return 2 * y * a[:, 0, :, None, None] + 2 * x * a[:, 1, :, None, None]

    def half(R, x, y):
        t = x + y
        loc = relu(R.single(t, 'local_att', 0))
        glo = relu(R.single(gap(t), 'global_att', 1)) + np.zeros_like(loc)
        w = sig(R.single(np.concatenate([loc, glo], 1), 'post', 0))
        return 2 * y * w + 2 * x * (1 - w)

    def concat_aff(R, x, y):
        t = x + y
        loc = relu(R.local(t))
        glo = relu(R.glob(t)) + np.zeros_like(loc)
        w = sig(R.single(np.concatenate([loc, glo], 1), 'post', 0))
        return 2 * y * w + 2 * x * (1 - w)

    def recursive(R, x, y):
        t = x + y
        l, g = R.local(t), R.glob(t)
        s = l + g
        w2 = sig(R.local(s, 'local_att2') + R.glob(s, 'global_att2'))
        w = sig(l * w2 + g * (1 - w2))
        return y * w + x * (1 - w)

    def shared(R, x, y):
        s = relu(R.single(x + y, 'shared_att', 0))
        w = sig(R.single(R.local(s) + R.glob(s), 'sig', 0))
        return 2 * y * w + 2 * x * (1 - w)

    def iter_single(pool, name):
        def f(R, x, y):
            br = (lambda t, n: R.single(gap(t), n, 1)) if pool else (lambda t, n: R.single(t, n, 0))
            w1 = sig(br(x + y, name))
            i = 2 * y * w1 + 2 * x * (1 - w1)
            w2 = sig(br(i, name + '2'))
            return 2 * y * w2 + 2 * x * (1 - w2)
        return f

    def select(pool):
        def f(R, x, y):
            t = x + y
            if pool:
                w = sig(R.bottleneck(gap(t), 'attention', 1))
            else:
                w = sig(R.bottleneck(t, 'attention', 0))
            return 2 * y * w + 2 * x * (1 - w)
        return f

    def relu_aff(R, x, y):
        t = x + y
        w = sig(relu(R.local(t)) + relu(R.glob(t)))
        return 2 * y * w + 2 * x * (1 - w)

    def depth(R, x, y):
        t = x + y
        w = sig(R.local(t) + R.glob(t))
        return 2 * y * w + 2 * x * (1 - w)

    def depth4(R, x, y):
        t = x + y
        s = sum(R.local(t, 'local_att%d' % i) for i in range(1, 5))
        w = sig(s + R.glob(t))
        return 2 * y * w + 2 * x * (1 - w)

    return {
        'DirectAdd': lambda R, x, y: x + y,
        'Concat': concat,
        'ASKCFuse': aff,
        'ResGlobLocaforGlobLocaCha': iaff,
        'ResGlobGlobCha': gg,
        'ResLocalLocaCha': ll,
        'ResGlobLocaCha': aff1,
        'AYforXplusY': lambda R, x, y: single_w(R, y) * x + y,
        'XplusAYforY': lambda R, x, y: x + single_w(R, y) * y,
        'AXYforXplusY': lambda R, x, y: single_w(R, x + y) * x + y,
        'AXYforXY': lambda R, x, y: single_w(R, x + y) * (x + y),
        'SEFuse': se,
        'GAUFuse': gau,
        'SKFuse': sk,
        'HalfASKCFuse': half,
        'ConcatASKCFuse': concat_aff,
        'RASKCFuse': recursive,
        'ConcatASKC': shared,
        'ResGlobforGlobCha': iter_single(True, 'global_att'),
        'ResLocaforLocaCha': iter_single(False, 'local_att'),
        'ResGlobCha': select(True),
        'ResLocaCha': select(False),
        'AddReLUASKCFuse': relu_aff,
        'DepthASKCFuse': depth,
        'Depth4ASKCFuse': depth4,
    }


@pytest.mark.parametrize('mode', sorted(REFERENCES()))
@pytest.mark.parametrize('hybrid', [False, True])
def test_official_formula(mode, hybrid):
    block = _init(net.get_fusion(mode, C))
    if hybrid:
        block.hybridize()
    rng = np.random.RandomState(1)
    x = rng.normal(size=(N, C, H, W)).astype('float32')
    y = rng.normal(size=(N, C, H, W)).astype('float32')
    got = block(mx.nd.array(x), mx.nd.array(y)).asnumpy()
    want = REFERENCES()[mode](Ref(_params(block)), x.astype('float64'), y.astype('float64'))
    assert got.shape == (N, C, H, W)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_mscam_is_eq3():
    block = _init(net.MSCAM(C, r=4))
    x = np.random.RandomState(2).normal(size=(N, C, H, W)).astype('float32')
    R = Ref(_params(block))
    want = x * sig(R.local(x) + R.glob(x))
    np.testing.assert_allclose(block(mx.nd.array(x)).asnumpy(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('cls,r,inter', [(F_.AFF, 4, 4), (F_.AFF, 16, 1), (F_.IAFF, 3, 5),
                                         (F_.GlobalGlobal, 4, 4), (F_.SE, 16, 1)])
def test_reduction_ratio_is_floor_division(cls, r, inter):
    names = dict((k, v.shape) for k, v in cls(C, r=r)._collect_params_with_prefix().items())
    first = [s for k, s in names.items() if k.endswith('weight')][0]
    assert first == (inter, C, 1, 1)


def test_reduction_ratio_too_large_is_a_clear_error():
    with pytest.raises(AFFError, match='r=32'):
        F_.AFF(16, r=32)


def test_factor_two_only_in_aff():
    """AFF of two equal inputs returns 2X; iAFF returns X (the official quirk, docs/official-code.md §1.1)."""
    x = mx.nd.array(np.random.RandomState(3).normal(size=(N, C, H, W)))
    aff = _init(F_.AFF(C))
    iaff = _init(F_.IAFF(C))
    np.testing.assert_allclose(aff(x, x).asnumpy(), 2 * x.asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(iaff(x, x).asnumpy(), x.asnumpy(), rtol=1e-5, atol=1e-6)


def test_weight_multiplies_the_residual_branch():
    """With the sigmoid saturated at 1, AFF returns 2Y: the weight sits on Y (docs/official-code.md §1.1)."""
    aff = _init(F_.AFF(C))
    aff.local_att[4].beta.set_data(mx.nd.full((C,), 50.0))
    aff.local_att[4].gamma.set_data(mx.nd.zeros((C,)))
    rng = np.random.RandomState(4)
    x, y = (mx.nd.array(rng.normal(size=(N, C, H, W))) for _ in range(2))
    np.testing.assert_allclose(aff(x, y).asnumpy(), 2 * y.asnumpy(), rtol=1e-5, atol=1e-5)


ALL_MODES = ['DirectAdd', 'Concat', 'ResGlobCha', 'ResLocaCha', 'ResGlobLocaCha', 'ResLocalLocaCha',
             'ResLocaLocaCha', 'ResGlobGlobCha', 'ResGlobLocaforGlobLocaCha', 'ResGlobforGlobCha',
             'ResLocaforLocaCha', 'AYforXplusY', 'XplusAYforY', 'AXYforXplusY', 'AXYforXY', 'SEFuse',
             'GAUFuse', 'ASKCFuse', 'HalfASKCFuse', 'ConcatASKCFuse', 'RASKCFuse', 'DepthASKCFuse',
             'Depth4ASKCFuse', 'AddReLUASKCFuse', 'LCNASKCFuse', 'ConcatASKC', 'SKFuse']


def test_every_official_mode_string_resolves():
    """Every 806562e mode string of docs/official-code.md §1.4 except the broken TwoConcatASKC."""
    for mode in ALL_MODES:
        assert net.get_fusion(mode, C) is not None
    assert net.get_fusion('ResLocalLocaCha', C).__class__ is net.get_fusion('Local+Local', C).__class__


@pytest.mark.parametrize('paper,official', [
    ('AFF', 'ASKCFuse'), ('iAFF', 'ResGlobLocaforGlobLocaChaFuse'), ('Add', 'DirectAddFuse'),
    ('Global+Global', 'ResGlobGlobCha'), ('Local + Local', 'ResLocaLocaCha'),
    ('MS-GAU', 'AYforXplusY'), ('MS-SE', 'XplusAYforY'), ('MS-SENet', 'XplusAYforY'),
    ('MS-SA', 'AXYforXplusY'), ('Concatenation', 'Concat'), ('Half-AFF', 'HalfASKCFuse'),
    ('Concat-AFF', 'ConcatASKCFuse'), ('Recursive AFF', 'RASKCFuse'), ('SENet', 'SEFuse'),
    ('SKNet', 'SKFuse'), ('GAU', 'GAUFuse'), ('Global+Local', 'ASKCFuse')])
def test_paper_names_map_to_official_modules(paper, official):
    assert F_.canonical_fusion(paper) is F_.canonical_fusion(official)


def test_unknown_fusion_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as err:
        net.get_fusion('AFFF', 16)
    msg = str(err.value)
    assert msg.startswith("unknown fusion 'AFFF'; closest: aff, iaff") and '\n' not in msg
    assert 'python -m utils.models --fusions' in msg and len(msg) < 400
    from utils.models import fusion_table
    assert any(line.split() == ['ASKCFuse', 'AFF'] for line in fusion_table())


def test_broken_official_mode_is_refused_with_a_reason():
    with pytest.raises(AFFError, match='ConcatASKCFuse'):
        net.get_fusion('TwoConcatASKC', 16)


def test_every_scenario_builds_its_own_module():
    """short and long skips share the modules of net.fusion; the same layer has its own."""
    from net.inception import SameLayerAFF, same_layer_fusion
    assert type(net.get_fusion('aff', 16)) is type(net.get_fusion('aff', 16, scenario='fpn')) \
        is type(net.get_fusion('ASKCFuse', 16, scenario='long')) is net.fusion.AFF
    for scenario in ('same', 'inception'):
        block = net.get_fusion('aff', 16, scenario=scenario)
        assert type(block) is SameLayerAFF is type(same_layer_fusion('aff', 16))
    assert type(net.get_fusion('msgau', 16, scenario='same')) is net.fusion.MSGAU
    with pytest.raises(AFFError, match='no same-layer'):
        net.get_fusion('halfaff', 16, scenario='same')
    with pytest.raises(AFFError, match='scenario'):
        net.get_fusion('aff', 16, scenario='sideways')


def test_fusion_backward_reaches_both_inputs():
    x = mx.nd.random.normal(shape=(N, C, H, W))
    y = mx.nd.random.normal(shape=(N, C, H, W))
    x.attach_grad()
    y.attach_grad()
    block = _init(net.get_fusion('iaff', C))
    with mx.autograd.record():
        out = block(x, y)
    out.backward()
    assert np.abs(x.grad.asnumpy()).sum() > 0 and np.abs(y.grad.asnumpy()).sum() > 0
