"""net/afinet.py: the AFI module (AFINet Eq. 1-2), AFI-Nets and their published parameter counts.

Counts are trainable parameters (PyTorch convention: BN running statistics left out), on the
CIFAR-100 / ImageNet heads the paper uses.  Every published count is reproduced exactly
(docs/related_methods.md §1.4-1.5, reading R1) except AFI-ResNet-110, pinned below.
"""
import glob
import re

import mxnet as mx
import numpy as np
import pytest

import net
import train_cifar
from net.afinet import AFI, AFICIFARResNet
from utils import data as D
from utils.logs import parse_log

AFI_NAMES = [n for n in net.get_model_list() if net.get_model_info(n).paper.startswith('AFINet')]


def trainable(model, select=None):
    params = model.collect_params(select) if select else model.collect_params()
    return sum(int(np.prod(p.shape)) for p in params.values() if p.grad_req != 'null')


# ---------------------------------------------------------------- published counts
#: registry name -> (our exact count, what the paper prints); AFINet Tables 4 and 5
PUBLISHED = {
    'cifar_resnet32_v1': (472756, '472.76K'),
    'afi_resnet32': (378228, '378.23K'),
    'cifar_resnet110_v1': (1736564, '1.74M'),
    'cifar_resnext29_32x4d_kl': (4866468, '4.87M'),
    'afi_resnext29_32x4d': (4262564, '4.26M'),
    'resnet50_v1b': (25557032, '25.56'),
    'afi_resnet50': (23849256, '23.85'),
    'resnet101_v1b': (44549160, '44.55'),
    'afi_resnet101': (40748072, '40.75'),
    'resnet152_v1b': (60192808, '60.19'),
    'afi_resnet152': (54667560, '54.67'),
    'resnext50_32x4d_v1b': (25028904, '25.03'),
    'afi_resnext50_32x4d': (21840680, '21.84'),
}


def _printed(n, like):
    """``n`` in the paper's format of ``like`` ('378.23K', '1.74M', '25.56' = millions)."""
    if like.endswith('K'):
        return '%.2fK' % (n / 1e3)
    if like.endswith('M'):
        return '%.2fM' % (n / 1e6)
    return '%.2f' % (n / 1e6)


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_published_counts(name):
    exact, printed = PUBLISHED[name]
    n = trainable(net.get_model(name))
    assert n == exact
    assert _printed(n, printed) == printed


def test_table2_per_stage_counts():
    """AFINet Table 2: per-stage parameters of ResNet-32 and AFI-ResNet-32."""
    want = {'cifar_resnet32_v1': ('23.36K', '88.77K', '353.66K'),
            'afi_resnet32': ('18.82K', '70.72K', '281.73K')}
    for name, stages in want.items():
        model = net.get_model(name)
        got = tuple(_printed(trainable(model, r'.*_stage%d_.*' % s), 'K') for s in (1, 2, 3))
        assert got == stages, name


def test_afi_resnet110_does_not_match_the_paper():
    """Known mismatch: Table 4 prints 1.35M for AFI-ResNet-110, but the structure that reproduces
    every other count gives 1,334,820 = 1.33M at the paper's default r = 4; r = 2 gives 1.35M (and
    the 6.23G FLOPs too).  Unresolved, so the registry keeps r = 4 and offers afi_resnet110_r2."""
    assert trainable(net.get_model('afi_resnet110')) == 1334820
    assert trainable(net.get_model('afi_resnet110_r2')) == 1346244
    assert '%.2fM' % (1346244 / 1e6) == '1.35M' != '%.2fM' % (1334820 / 1e6)


def test_predicted_counts_of_the_ablations():
    """Tables 7 and 8 print no counts; these are the R1 predictions (docs/related_methods.md §1.9)."""
    want = {'afi_resnet32_stage1': 468212, 'afi_resnet32_stage2': 454708,
            'afi_resnet32_stage3': 400820, 'afi_resnet110_stage1': 1717252,
            'afi_resnet110_stage2': 1659860, 'afi_resnet110_stage3': 1430836,
            'afi_resnet50_r1': 24190248, 'afi_resnet50_r2': 23962920,
            'afi_resnet50_r8': 23792424}
    assert {n: trainable(net.get_model(n)) for n in want} == want


def test_readings_that_do_not_match():
    """Why reading R1: the literal alternatives miss 378,228 (docs/related_methods.md §1.4)."""
    # R6: the hidden width from the full block width (C/4 instead of (C/2)/4)
    r6 = trainable(AFICIFARResNet(5, r=2))   # (C/2)/2 = C/4
    assert r6 == 380916
    # no AFI at all in stage 3 of AFI-ResNet-32 (R1 elsewhere)
    assert trainable(net.get_model('afi_resnet32_stage3')) != 378228


def test_afi_module_weights_are_shared_and_small():
    module = AFI(32, 4)
    assert trainable(module) == 2 * 32 * 8   # W1 8x32, W2 32x8, no bias
    assert {p.shape for p in module.collect_params().values()} == {(8, 32), (32, 8)}


# ---------------------------------------------------------------- the AFI module
@pytest.fixture
def afi():
    mx.random.seed(1)
    module = AFI(16, 4)
    module.initialize(mx.init.Normal(1.0))
    return module


def _inputs(n, seed=0, shape=(3, 16, 5, 4)):
    rng = np.random.RandomState(seed)
    return [mx.nd.array(rng.randn(*shape) * (j + 1)) for j in range(n)]


def test_convex_combination(afi):
    xs = _inputs(4)
    w = afi.weights(*xs).asnumpy()                       # B x N x C
    assert w.shape == (3, 4, 16) and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    out = afi(*xs).asnumpy()
    stack = np.stack([x.asnumpy() for x in xs], axis=1)
    np.testing.assert_allclose(out, (stack * w[:, :, :, None, None]).sum(axis=1), rtol=1e-5,
                               atol=1e-6)
    assert (out <= stack.max(axis=1) + 1e-5).all() and (out >= stack.min(axis=1) - 1e-5).all()
    # the same weight at every spatial position of a channel
    assert np.isfinite(out).all()


def test_weights_follow_eq1_and_eq2(afi):
    """s_j = W2 ReLU(W1 GAP(X_j)), softmax over the inputs per channel."""
    xs = _inputs(3, seed=2)
    w1 = afi.fc1.weight.data().asnumpy()
    w2 = afi.fc2.weight.data().asnumpy()
    z = np.stack([x.asnumpy().mean(axis=(2, 3)) for x in xs], axis=1)   # B x N x C
    s = np.maximum(z @ w1.T, 0) @ w2.T
    e = np.exp(s - s.max(axis=1, keepdims=True))
    np.testing.assert_allclose(afi.weights(*xs).asnumpy(), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_scores_are_shared_so_order_does_not_matter(afi):
    xs = _inputs(3, seed=3)
    a = afi(*xs).asnumpy()
    b = afi(xs[2], xs[0], xs[1]).asnumpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_input_is_returned_unchanged(afi):
    """AFI^(2) with the single input X^(1): the softmax over one input is exactly 1."""
    (x,) = _inputs(1)
    np.testing.assert_array_equal(afi(x).asnumpy(), x.asnumpy())
    afi.hybridize()
    np.testing.assert_array_equal(afi(x).asnumpy(), x.asnumpy())


def test_input_readings_have_the_same_count_and_differ():
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    outs = []
    for inputs in ('previous', 'own'):
        mx.random.seed(0)
        model = AFICIFARResNet(2, afi_inputs=inputs, classes=10)
        model.initialize(mx.init.Xavier())
        assert trainable(model) == trainable(AFICIFARResNet(2, classes=10))
        outs.append(model(x).asnumpy())
    assert not np.allclose(outs[0], outs[1])


def test_block1_is_plain_and_later_blocks_halved():
    model = net.get_model('afi_resnet32')
    stage = model.features[3]                       # stage 1
    assert len(stage) == 5 and stage.blocks[0].afi is None
    assert stage.blocks[0].conv1.weight.shape == (16, 16, 3, 3)
    for blk in list(stage.blocks)[1:]:
        assert blk.conv1.weight.shape == (8, 16, 3, 3) and blk.afi is not None
        assert blk.conv2.weight.shape == (16, 16, 3, 3)
    b = net.get_model('afi_resnet50').features[4].blocks[1]      # stage 1, block 2
    assert b.conv1.weight.shape == (32, 256, 1, 1) and b.afi.fc1.weight.shape == (8, 32)


def test_bad_arguments():
    from net.errors import AFFError
    with pytest.raises(AFFError, match='afi_inputs'):
        AFICIFARResNet(5, afi_inputs='all')
    with pytest.raises(AFFError, match='channels // r'):
        AFI(3, 4)


# ---------------------------------------------------------------- every registered variant
@pytest.mark.parametrize('name', AFI_NAMES)
def test_forward_backward(name):
    model = net.get_model(name, classes=7)
    model.initialize(mx.init.Xavier())
    model.hybridize()
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))    # ImageNet hosts too: 1x1 at the end
    with mx.autograd.record():
        out = model(x)
        loss = (out ** 2).sum()
    loss.backward()
    assert out.shape == (2, 7) and np.isfinite(out.asnumpy()).all()
    dead = [n for n, p in model.collect_params().items() if p.grad_req != 'null'
            and not np.isfinite(p.grad().asnumpy()).all()]
    assert not dead


def test_every_afi_module_gets_a_gradient_except_afi2():
    """'previous' inputs: AFI^(2) sees one input, so its W1/W2 get no gradient (the paper's
    "skip"); every other module does.  Seeded: with stage 1's hidden width 2 both ReLU units of a
    module can be dead for some draws (about 1 in 5), which zeroes its gradient too."""
    mx.random.seed(0)
    model = AFICIFARResNet(3, classes=5)
    model.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(4, 3, 32, 32))
    with mx.autograd.record():
        loss = model(x).log_softmax().sum()
    loss.backward()
    modules = dict(model.collect_params('.*_afi_.*').items())
    assert len(modules) == 3 * 2 * 2                  # 3 stages x blocks 2, 3 x (W1, W2)
    for name, p in modules.items():
        g = np.abs(p.grad().asnumpy()).sum()
        block = int(re.search(r'block(\d+)_', name).group(1))
        assert (g == 0) == (block == 2), name


# ---------------------------------------------------------------- training through our script
def test_short_training_with_the_afinet_recipe(tmp_path):
    root = tmp_path / 'cifar'
    rng = np.random.RandomState(0)
    for train, n in ((True, 128), (False, 32)):
        images = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = rng.randint(0, 100, size=n)
        D.write_cifar(str(root), 'cifar100', train, images, fine, coarse_labels=fine // 5)
    argv = ['--recipe', 'afinet', '--model', 'afi_resnet32', '--dataset', 'cifar100',
            '--data-dir', str(root), '--skip-checksum', '--gpus', '', '-j', '0',
            '--num-epochs', '2', '--logging-dir', str(tmp_path / 'logs'),
            '--save-dir', str(tmp_path / 'params'), '--save-plot-dir', str(tmp_path)]
    assert train_cifar.main(argv) == 0
    (log,) = glob.glob(str(tmp_path / 'logs' / '*.log'))
    seg = parse_log(log)[-1]
    cfg = seg.config
    assert (cfg['recipe'], cfg['batch_size'], cfg['lr'], cfg['lr_decay_epoch'], cfg['optimizer'],
            cfg['label_mode'], cfg['wd']) == ('afinet', 64, 0.1, '150,225', 'sgd', 'fine', 1e-4)
    assert [e.epoch for e in seg.epochs] == [0, 1]
    assert all(np.isfinite(e.loss) and 0 <= e.val <= 1 for e in seg.epochs)
