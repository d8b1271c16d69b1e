"""net/afinet_mobile.py: AFI-MobileNetV2 (AFINet Fig. 5b, Tables 4-5) and its MobileNetV2 hosts.

Counts are trainable parameters (BN running statistics left out), as in tests/test_afinet.py;
the expected values are docs/related_methods.md §1.5's arithmetic.  Forward passes at 32-64 px only.
"""
import re

import mxnet as mx
import numpy as np
import pytest

import net
import train_imagenet
from net.afinet_mobile import AFIMobileNetV2, MOBILENETV2_GROUPS
from net.errors import AFFError


def trainable(model, select=None):
    params = model.collect_params(select) if select else model.collect_params()
    return sum(int(np.prod(p.shape)) for p in params.values() if p.grad_req != 'null')


def _printed(n, like):
    return ('%.2fM' if like.endswith('M') else '%.2f') % (n / 1e6)


#: name -> (our exact count, the paper's figure, matches?)  AFINet Table 5 (M) and Table 4
COUNTS = {
    'afi_mobilenetv2_1.0': (3626936, '3.63', True),        # = 3,504,872 + 122,064
    # torchvision's MobileNetV2 is 3,504,872 = 3.50M; Table 5 prints 3.51M (its +0.12M delta
    # still holds).  The paper's own MobileNetV2 must differ slightly; unresolved, pinned.
    'mobilenetv2_1.0': (3504872, '3.51', False),
    'cifar_mobilenetv2_kl': (2412212, '2.41M', True),
    # the Fig. 5b rule on the KL host; Table 4 prints 2.25M for AFI-MobileNetV2, which no
    # reading reproduces (docs/related_methods.md §1.5, A11): not the published row, pinned
    'afi_cifar_mobilenetv2_kl': (2534276, '2.25M', False),
}


@pytest.mark.parametrize('name', sorted(COUNTS))
def test_counts(name):
    exact, printed, match = COUNTS[name]
    n = trainable(net.get_model(name))
    assert n == exact
    assert (_printed(n, printed) == printed) == match


def test_afi_modules_per_group_and_their_size():
    """Blocks 2..n of each (t, c, n, s) group: 0,1,2,3,2,2,0 modules of 2 * 3c * 3c/4 = 4.5 c^2."""
    model = net.get_model('afi_mobilenetv2_1.0')
    per_group, extra = [], 0
    for g, (t, c, n, s) in enumerate(MOBILENETV2_GROUPS, 1):
        stage = model.features[2 + g]
        assert len(stage) == n and stage.blocks[0].afi is None
        afis = [b.afi for b in list(stage.blocks)[1:]]
        per_group.append(len(afis))
        for blk in list(stage.blocks)[1:]:
            assert blk.conv1.weight.shape == (3 * c, c, 1, 1)            # expansion halved
            assert blk.afi.fc1.weight.shape == (3 * c // 4, 3 * c)
            assert blk.conv2.weight.shape == (6 * c, 1, 3, 3)            # depthwise on [X, R]
            assert trainable(blk.afi) == 4.5 * c * c
            extra += 4.5 * c * c - 3 * c * c - 6 * c                   # AFI - saved conv/BN
    assert per_group == [0, 1, 2, 3, 2, 2, 0]
    assert extra == 122064 == trainable(model) - trainable(net.get_model('mobilenetv2_1.0'))


def test_afi_is_a_convex_combination_of_the_stage_xs():
    """Group 4 (c = 64), block 4: AFI^(4) gets X^(2..4) (own X included), its weights sum to 1
    per sample and channel, R is their combination, and the depthwise conv reads [X^(4), R]."""
    mx.random.seed(3)
    model = net.get_model('afi_mobilenetv2_1.0', classes=5)
    model.initialize(mx.init.Xavier(magnitude=3))
    stage = model.features[6]
    seen = {}

    def keep(key):
        return lambda blk, inputs, output: seen.__setitem__(key, (inputs, output))
    for i in (1, 2, 3):
        stage.blocks[i].bn1.register_forward_hook(keep('bn%d' % i))
    stage.blocks[3].afi.register_forward_hook(keep('afi'))
    stage.blocks[3].conv2.register_forward_hook(keep('dw'))
    model(mx.nd.random.uniform(shape=(2, 3, 64, 64)))
    xs, r = seen['afi']
    assert len(xs) == 3
    for j, x in enumerate(xs):                                  # X^(j+2) = ReLU6(BN(conv1))
        want = np.clip(seen['bn%d' % (j + 1)][1].asnumpy(), 0, 6)
        np.testing.assert_allclose(x.asnumpy(), want, rtol=1e-6, atol=1e-6)
    w = stage.blocks[3].afi.weights(*xs).asnumpy()              # B x N x C
    assert w.shape == (2, 3, 192) and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    stack = np.stack([x.asnumpy() for x in xs], axis=1)
    np.testing.assert_allclose(r.asnumpy(), (stack * w[..., None, None]).sum(axis=1),
                               rtol=1e-4, atol=1e-5)
    (dw_in,), _ = seen['dw']
    np.testing.assert_array_equal(dw_in.asnumpy()[:, :192], xs[2].asnumpy())
    np.testing.assert_allclose(dw_in.asnumpy()[:, 192:], r.asnumpy(), rtol=1e-6, atol=1e-6)


def test_forward_backward_64px():
    mx.random.seed(0)
    model = net.get_model('afi_mobilenetv2_1.0', classes=7)
    model.initialize(mx.init.Xavier())
    model.hybridize()
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    with mx.autograd.record():
        out = model(x)
        loss = out.log_softmax().sum()
    loss.backward()
    assert out.shape == (2, 7) and np.isfinite(out.asnumpy()).all()
    grads = {n: p.grad().asnumpy() for n, p in model.collect_params().items()
             if p.grad_req != 'null'}
    assert all(np.isfinite(g).all() for g in grads.values())
    afi = {n: np.abs(g).sum() for n, g in grads.items() if '_afi_' in n}
    assert len(afi) == 2 * 10
    for name, g in afi.items():            # AFI^(2) sees only X^(2): softmax 1, no gradient
        block = int(re.search(r'block(\d+)_', name).group(1))
        assert (g == 0) == (block == 2), name


def test_kl_layout_and_width_multiplier():
    kl = net.get_model('afi_cifar_mobilenetv2_kl', classes=3)
    kl.initialize()
    assert kl(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 3)
    stem = kl.features[0]
    assert stem.weight.shape == (32, 3, 3, 3) and stem._kwargs['stride'] == (1, 1)
    assert kl.features[3].blocks[0].shortcut is not None      # group 1: 32 -> 16 at stride 1
    half = AFIMobileNetV2(multiplier=0.5, classes=10)
    assert half.features[0].weight.shape == (16, 3, 3, 3)
    assert half.output[-1].weight.shape == (10, 1280)


def test_bad_arguments():
    with pytest.raises(AFFError, match='layout'):
        AFIMobileNetV2(layout='gluoncv')
    with pytest.raises(AFFError, match='multiplier'):
        AFIMobileNetV2(multiplier=0)


def test_train_imagenet_builds_it_by_name(capsys):
    argv = ['--model', 'afi_mobilenetv2_1.0', '--recipe', 'afinet', '--summary']
    assert train_imagenet.main(argv) == 0
    # all parameters: + the running mean / var of every BN channel
    bn = sum(int(np.prod(p.shape)) for n, p in
             net.get_model('afi_mobilenetv2_1.0').collect_params().items() if 'running' in n)
    assert 'ImageNet-afi_mobilenetv2_1.0: %d parameters' % (3626936 + bn) in capsys.readouterr().out
