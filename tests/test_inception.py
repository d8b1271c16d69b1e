"""net/inception.py: the same-layer (Inception-ResNet-20-b) scenario of Tables 3/4 and Fig. 7."""
import glob

import mxnet as mx
import numpy as np
import pytest

import net
import train_cifar
from net import inception as I
from net.errors import AFFError, UnknownNameError
from utils import data as D
from utils import paper_tables as PT
from utils.logs import parse_log

FUSIONS = ('add', 'concat', 'msgau', 'msse', 'mssa', 'aff', 'iaff', 'globalglobal',
           'locallocal', 'sk')


def _name(fusion, b):
    return 'cifar_%s_inception_resnet20_b%d' % (fusion, b)


def _count(model, trainable=False):
    return sum(p.data().size for p in model.collect_params().values()
               if not trainable or p.grad_req != 'null')


# ---------------------------------------------------------------- build, forward, backward
@pytest.mark.parametrize('fusion,b', [(f, 1) for f in FUSIONS] + [('aff', 2), ('iaff', 2),
                                                                   ('concat', 2)])
def test_builds_forward_backward(fusion, b):
    mx.random.seed(0)
    model = net.get_model(_name(fusion, b), classes=7)
    model.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    with mx.autograd.record():
        out = model(x)
        loss = mx.nd.softmax_cross_entropy(out, mx.nd.array([1, 5]))
    loss.backward()
    assert out.shape == (2, 7) and np.isfinite(out.asnumpy()).all()
    # every kernel and BN scale receives a gradient (biases before a BN legitimately get 0)
    for name, p in model.collect_params().items():
        if p.grad_req == 'null':
            continue
        g = p.grad().asnumpy()
        assert np.isfinite(g).all(), name
        if name.endswith(('weight', 'gamma')):
            assert np.abs(g).sum() > 0, name
    blocks = [len(model.features[i]) for i in (2, 3, 4)]
    assert blocks == [b] * 3
    # every 3x3 convolution of the host, the stem's included, is an Inception module
    incs = _inception_convs(model)
    assert len(incs) == 1 + 2 * 3 * b
    assert all(type(m.attention).__name__ == type(incs[0].attention).__name__ for m in incs)


def _inception_convs(model):
    found = []

    def walk(block):
        if isinstance(block, I.InceptionConv):
            found.append(block)
        for child in block._children.values():
            walk(child)
    walk(model)
    return found


def test_hybridized_equals_imperative():
    mx.random.seed(1)
    model = net.get_model(_name('iaff', 1), classes=5)
    model.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    want = model(x).asnumpy()
    model.hybridize()
    np.testing.assert_allclose(model(x).asnumpy(), want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- parameter counts by hand
# b = 1, widths 16-16-32-64, 100 classes; "total" counts every tensor element, BN running mean
# and variance included (4 numbers per BN channel; the data BN keeps its fixed gamma/beta too).
#   data BN (3 ch)                                   4*3           = 12
#   Add, no BN in the branches: an Inception conv in->out = 2 * 9*in*out = 18*in*out
#     stem 3->16                                     18*3*16       = 864
#     stage1 16->16: BN 4*16 + 18*16*16 + BN 4*16 + 18*16*16        = 9,344
#     stage2 16->32: BN 4*16 + 18*16*32 + BN 4*32 + 18*32*32 + 1x1 16*32 = 28,352
#     stage3 32->64: BN 4*32 + 18*32*64 + BN 4*64 + 18*64*64 + 1x1 32*64 = 113,024
#     head: BN 4*64 + Dense 64*100 + 100                            = 6,756
#   => Add = 158,352
# The other fusions add, per Inception conv with C outputs (C = 16 x 3, 32 x 2, 64 x 2):
#   branch BNs 2*4C = 8C, plus
#   AFF / G+G / L+L / MS-GAU / MS-SE / MS-SA: two single-layer branches, each
#     Conv1x1 C*C + C bias and BN 4C                 -> 2C^2 + 10C
#   iAFF (r=4): four bottlenecks, each C*C/4 + C/4 + BN 4*C/4 + C/4*C + C + BN 4C
#                                                    -> 4 * (C^2/2 + 6.25C) = 2C^2 + 25C
#   Concatenation: Conv1x1 2C*C + C bias             -> 2C^2 + C
#   SKNet: C*C/4 + C/4 + BN C + C/4*2C + 2C + BN 8C  -> 0.75C^2 + 11.25C
SUM_C2 = 3 * 16 ** 2 + 2 * 32 ** 2 + 2 * 64 ** 2      # 11,008
SUM_C = 3 * 16 + 2 * 32 + 2 * 64                      # 240
ADD_B1 = 12 + 864 + 9344 + 28352 + 113024 + 6756
EXPECTED_B1 = {
    'add': ADD_B1,
    'aff': ADD_B1 + 2 * SUM_C2 + 18 * SUM_C,
    'iaff': ADD_B1 + 2 * SUM_C2 + 33 * SUM_C,
    'concat': ADD_B1 + 2 * SUM_C2 + 9 * SUM_C,
    'sk': ADD_B1 + (3 * SUM_C2) // 4 + (77 * SUM_C) // 4,
}
for _f in ('globalglobal', 'locallocal', 'msgau', 'msse', 'mssa'):
    EXPECTED_B1[_f] = EXPECTED_B1['aff']


@pytest.mark.parametrize('fusion', FUSIONS)
def test_parameter_count_b1(fusion):
    assert ADD_B1 == 158352 and EXPECTED_B1['aff'] == 184688     # the arithmetic above
    model = net.get_model(_name(fusion, 1))
    model.initialize()
    assert _count(model) == EXPECTED_B1[fusion]


def test_table4_parameter_budget():
    """§5.1.2: AFF (r = 2 budget, single-layer branches) and iAFF (r = 4) spend the same number
    of attention weights; Table 3's three scales have the same parameter number."""
    def fusion_weights(fusion):
        model = net.get_model(_name(fusion, 1))
        model.initialize()
        return sum(p.data().size for n, p in model._collect_params_with_prefix().items()
                   if '.attention.' in n and n.endswith('weight'))
    assert fusion_weights('aff') == fusion_weights('iaff') == 2 * SUM_C2
    counts = set()
    for fusion in ('aff', 'globalglobal', 'locallocal'):
        model = net.get_model(_name(fusion, 1))
        model.initialize()
        counts.add(_count(model, trainable=True))
    assert len(counts) == 1


# ---------------------------------------------------------------- the two branches
def test_branch_layout_and_dilation():
    model = net.get_model(_name('aff', 2))
    for m in _inception_convs(model):
        c3, c5 = m.branch3x3[0], m.branch5x5[0]
        assert c3._kwargs['kernel'] == c5._kwargs['kernel'] == (3, 3)
        assert c3._kwargs['dilate'] == (1, 1) and c3._kwargs['pad'] == (1, 1)
        assert c5._kwargs['dilate'] == (2, 2) and c5._kwargs['pad'] == (2, 2)
        assert c3._kwargs['stride'] == c5._kwargs['stride']
        assert len(m.branch3x3) == len(m.branch5x5) == 2          # conv + BN
    add = net.get_model(_name('add', 1))
    assert all(len(m.branch3x3) == len(m.branch5x5) == 1 for m in _inception_convs(add))


def _support(a):
    return {tuple(int(v) for v in p) for p in np.argwhere(np.abs(a[0, 0]) > 1e-6)}


@pytest.mark.parametrize('stride', [1, 2])
def test_impulse_response_is_3x3_and_dilated_5x5(stride):
    conv = I.InceptionConv(1, 1, stride, 'add', branch_bn=False)
    conv.initialize(mx.init.One())
    x = mx.nd.zeros((1, 1, 13, 13))
    x[0, 0, 6, 6] = 1
    r3 = conv.branch3x3(x).asnumpy()
    r5 = conv.branch5x5(x).asnumpy()
    assert r3.shape == r5.shape == (1, 1, 13 // stride + 13 % stride, 13 // stride + 13 % stride)
    if stride == 1:
        assert _support(r3) == {(6 + i, 6 + j) for i in (-1, 0, 1) for j in (-1, 0, 1)}
        # a 3x3 kernel with dilation 2: taps every other pixel of a 5x5 window
        assert _support(r5) == {(6 + i, 6 + j) for i in (-2, 0, 2) for j in (-2, 0, 2)}
        out = conv(x).asnumpy()                       # Add: X + Y
        np.testing.assert_allclose(out, r3 + r5)
        assert out[0, 0, 6, 6] == 2
    else:
        # output pixel (i, j) reads input rows 2i-d .. 2i+d: the impulse at 6 reaches i = 3
        # through the centre tap for both branches, i = 2..4 through the outer taps of the
        # dilated (d = 2) branch only
        assert _support(r3) == {(3, 3)}
        assert _support(r5) == {(3 + i, 3 + j) for i in (-1, 0, 1) for j in (-1, 0, 1)}


# ---------------------------------------------------------------- fusion formulas
def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _randomise(block, seed):
    """Random weights and BN statistics, so that no BN is an identity."""
    rng = np.random.RandomState(seed)
    for name, p in sorted(block.collect_params().items()):
        shape = p.shape
        if name.endswith('running_var'):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, shape)))
        else:
            p.set_data(mx.nd.array(rng.normal(0, 0.5, shape)))


def _conv_bn(conv, bn, v):
    """Conv1x1 (+bias) then BN in inference mode, from the parameters, in numpy."""
    w = conv.weight.data().asnumpy()[:, :, 0, 0]
    out = np.einsum('oc,nchw->nohw', w, v) + conv.bias.data().asnumpy()[None, :, None, None]
    g, b, m, var = (getattr(bn, k).data().asnumpy()[None, :, None, None]
                    for k in ('gamma', 'beta', 'running_mean', 'running_var'))
    return (out - m) / np.sqrt(var + bn._kwargs['eps']) * g + b


def test_aff_is_eq4_with_the_weight_on_the_3x3_branch():
    """Z = W X + (1 - W) Y, W = sigmoid(L(X+Y) + g(X+Y)), computed here from the parameters."""
    aff = I.same_layer_fusion('aff', 6)
    assert isinstance(aff, I.SameLayerAFF)
    aff.initialize()
    _randomise(aff, 0)
    rng = np.random.RandomState(1)
    x, y = rng.normal(size=(2, 6, 5, 5)), rng.normal(size=(2, 6, 5, 5))
    t = x + y
    assert len(aff.local_att) == 2 and len(aff.global_att) == 3      # [Conv, BN], [GAP, Conv, BN]
    local = _conv_bn(aff.local_att[0], aff.local_att[1], t)
    glob = _conv_bn(aff.global_att[1], aff.global_att[2], t.mean(axis=(2, 3), keepdims=True))
    w = _sigmoid(local + glob)
    assert 0.05 < w.mean() < 0.95 and w.std() > 0.05             # a non-trivial weight
    got = aff(mx.nd.array(x), mx.nd.array(y)).asnumpy()
    np.testing.assert_allclose(got, w * x + (1 - w) * y, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got, w * y + (1 - w) * x, atol=1e-3)   # orientation matters
    np.testing.assert_allclose(aff.weight(mx.nd, mx.nd.array(x), mx.nd.array(y)).asnumpy(), w,
                               rtol=1e-4, atol=1e-6)


def test_global_global_and_local_local_scales():
    gg, ll = I.same_layer_fusion('globalglobal', 4), I.same_layer_fusion('Local+Local', 4)
    for m, seed in ((gg, 2), (ll, 3)):
        m.initialize()
        _randomise(m, seed)
    rng = np.random.RandomState(4)
    x, y = rng.normal(size=(2, 4, 6, 6)), rng.normal(size=(2, 4, 6, 6))
    t = x + y
    gap = t.mean(axis=(2, 3), keepdims=True)
    w = _sigmoid(_conv_bn(gg.global_att[1], gg.global_att[2], gap)
                 + _conv_bn(gg.global_att2[1], gg.global_att2[2], gap))
    assert w.shape == (2, 4, 1, 1)                       # one weight per channel and image
    np.testing.assert_allclose(gg(mx.nd.array(x), mx.nd.array(y)).asnumpy(),
                               w * x + (1 - w) * y, rtol=1e-4, atol=1e-5)
    w = _sigmoid(_conv_bn(ll.local_att[0], ll.local_att[1], t)
                 + _conv_bn(ll.local_att2[0], ll.local_att2[1], t))
    np.testing.assert_allclose(ll(mx.nd.array(x), mx.nd.array(y)).asnumpy(),
                               w * x + (1 - w) * y, rtol=1e-4, atol=1e-5)


def test_iaff_is_eq5():
    iaff = I.same_layer_fusion('iAFF', 8)
    assert iaff.r == 4 and iaff.local_att[0]._channels == 2      # bottleneck C/4
    iaff.initialize()
    _randomise(iaff, 5)
    rng = np.random.RandomState(6)
    x, y = rng.normal(size=(2, 8, 4, 4)), rng.normal(size=(2, 8, 4, 4))

    def bottleneck(seq, u):                       # [(GAP,) Conv, BN, ReLU, Conv, BN]
        k = len(seq) - 5
        return _conv_bn(seq[k + 3], seq[k + 4], np.maximum(_conv_bn(seq[k], seq[k + 1], u), 0))

    def mscam(local, glob, v):
        return _sigmoid(bottleneck(local, v)
                        + bottleneck(glob, v.mean(axis=(2, 3), keepdims=True)))
    w1 = mscam(iaff.local_att, iaff.global_att, x + y)
    i = w1 * x + (1 - w1) * y
    w2 = mscam(iaff.local_att2, iaff.global_att2, i)
    np.testing.assert_allclose(iaff(mx.nd.array(x), mx.nd.array(y)).asnumpy(),
                               w2 * x + (1 - w2) * y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('fusion', FUSIONS)
def test_fusing_a_map_with_itself(fusion):
    """Selections weigh X and Y with weights summing to 1 (no factor 2, Table 1); Add doubles;
    modulation / refinement give (1 + M) X."""
    m = I.same_layer_fusion(fusion, 8)
    m.initialize()
    _randomise(m, 7)
    x = mx.nd.array(np.random.RandomState(8).normal(size=(2, 8, 4, 4)))
    got = m(x, x).asnumpy()
    if fusion in ('aff', 'iaff', 'globalglobal', 'locallocal', 'sk'):
        np.testing.assert_allclose(got, x.asnumpy(), rtol=1e-5, atol=1e-5)
    elif fusion == 'add':
        np.testing.assert_allclose(got, 2 * x.asnumpy())
    elif fusion == 'concat':
        w = m.fuse.weight.data().asnumpy()[:, :, 0, 0]
        want = np.einsum('oc,nchw->nohw', w[:, :8] + w[:, 8:], x.asnumpy()) \
            + m.fuse.bias.data().asnumpy()[None, :, None, None]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    else:                                              # MS-GAU, MS-SE, MS-SA: (1 + M) X
        ratio = got / x.asnumpy() - 1
        assert (ratio > 0).all() and (ratio < 1).all()


def test_sk_softmax_pair():
    sk = I.same_layer_fusion('SKNet', 8)
    sk.initialize()
    _randomise(sk, 9)
    rng = np.random.RandomState(10)
    x, y = rng.normal(size=(2, 8, 4, 4)), rng.normal(size=(2, 8, 4, 4))
    logits = sk.global_att(mx.nd.array(x + y)).asnumpy().reshape(2, 2, 8)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    a = (e / e.sum(axis=1, keepdims=True))[..., None, None]
    np.testing.assert_allclose(sk(mx.nd.array(x), mx.nd.array(y)).asnumpy(),
                               a[:, 0] * x + a[:, 1] * y, rtol=1e-4, atol=1e-5)


def test_modulation_and_refinement_use_net_fusion():
    """Where the short-skip module already has the same-layer formula it is reused as is."""
    assert isinstance(I.same_layer_fusion('msgau', 4), net.fusion.MSGAU)
    assert isinstance(I.same_layer_fusion('MS-SENet', 4), net.fusion.MSSE)
    assert isinstance(I.same_layer_fusion('mssa', 4), net.fusion.MSSA)
    assert isinstance(I.same_layer_fusion('ASKCFuse', 4), I.SameLayerAFF)
    assert isinstance(I.same_layer_fusion(net.fusion.DirectAdd, 4), net.fusion.DirectAdd)


# ---------------------------------------------------------------- registry and errors
def test_every_inception_cell_has_a_registry_name():
    names = set(net.get_model_list())
    cells = [c for c in PT.CELLS if c.scenario == 'inception']
    assert len(cells) == 3 * 4 + 7 * 4                  # Table 3 (3 rows) + Table 4 (7 rows)
    for c in cells:
        assert c.model in names and c.available, c.key
        info = net.get_model_info(c.model)
        assert info.builder is I.CIFARInceptionResNet and info.era == 'paper'
        assert info.kwargs['layers'] == [c.b] * 3 and info.fusion == c.fusion
    for b in (1, 2, 3, 4):                               # Fig. 7's SKNet baseline
        assert _name('sk', b) in names
    assert sorted(n for n in names if '_inception_' in n) == sorted(
        _name(f, b) for f in FUSIONS for b in (1, 2, 3, 4))
    assert PT.lint() == []


@pytest.mark.parametrize('fusion,cls,match', [
    ('nosuchfusion', UnknownNameError, 'unknown same-layer fusion'),
    ('se', AFFError, 'no same-layer'),
    ('HalfASKCFuse', AFFError, 'no same-layer'),
])
def test_bad_fusion_names(fusion, cls, match):
    with pytest.raises(cls, match=match) as err:
        I.CIFARInceptionResNet(fusion, [1, 1, 1])
    assert '\n' not in str(err.value) and 'aff' in str(err.value)


# ---------------------------------------------------------------- training through train_cifar
def _out_flags(out):
    return ['--gpus', '', '--logging-dir', str(out / 'logs'), '--save-dir', str(out / 'params'),
            '--save-plot-dir', str(out)]


def test_trains_on_digits(tmp_path, monkeypatch):
    """The quick-start command with an Inception model, on a slice of the digits (fast)."""
    full = D.load_digits32

    def small(train=True):
        x, y = full(train)
        return (x[:96], y[:96]) if train else (x[:32], y[:32])
    monkeypatch.setattr(D, 'load_digits32', small)
    name = _name('aff', 1)
    assert train_cifar.main(['--model', name, '--dataset', 'digits', '--num-epochs', '1']
                            + _out_flags(tmp_path)) == 0
    log = glob.glob(str(tmp_path / 'logs' / '*.log'))[0]
    seg = parse_log(log)[-1]
    assert len(seg.epochs) == 1 and np.isfinite(seg.epochs[0].loss)
    with open(log) as f:
        assert 'shortened to 0 to fit --num-epochs 1' in f.read()
    saved = mx.nd.load(glob.glob(str(tmp_path / 'params' / '*-last.params'))[0])
    assert any('branch5x5' in k for k in saved) and saved['output.weight'].shape == (10, 64)


def test_trains_with_the_paper_recipe_on_cifar100(tmp_path):
    """What utils/reproduce prints for an InceptionNet cell, shortened to one tiny epoch."""
    rng = np.random.RandomState(0)
    for train, n in ((True, 48), (False, 16)):
        fine = rng.randint(0, 100, size=n)
        D.write_cifar(str(tmp_path / 'data'), 'cifar100', train,
                      rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), fine,
                      coarse_labels=fine // 5)
    cell = PT.cells(table='4', row='iAFF (ours)', column='InceptionNet b=1')[0]
    assert train_cifar.main(['--recipe', 'paper', '--model', cell.model, '--dataset', 'cifar100',
                             '--data-dir', str(tmp_path / 'data'), '--skip-checksum',
                             '--num-epochs', '1', '--batch-size', '16', '-j', '0']
                            + _out_flags(tmp_path)) == 0
    saved = mx.nd.load(glob.glob(str(tmp_path / 'params' / '*-last.params'))[0])
    assert saved['output.weight'].shape == (100, 64)          # the paper's 100-output head
    assert any('global_att2' in k for k in saved)
