"""net/fpn.py: ResNet-20-b + FPN with every long-skip fusion of Tables 3/4 (and GAU-FPN)."""
import mxnet as mx
import numpy as np
import pytest

import net
from net import fpn
from net.errors import AFFError
from net.fusion import AFF, IAFF, MSSE, Concat, DirectAdd, GAU, GlobalGlobal, LocalLocal, MSGAU, MSSA
from utils import paper_tables as PT

CLASS_OF = {'add': DirectAdd, 'concat': Concat, 'msgau': MSGAU, 'msse': MSSE, 'mssa': MSSA,
            'aff': AFF, 'iaff': IAFF, 'globalglobal': GlobalGlobal, 'locallocal': LocalLocal,
            'gau': GAU}


def _count(block):
    return sum(int(np.prod(p.shape)) for p in block.collect_params().values())


def test_registry_covers_every_fpn_cell_and_gau():
    names = set(net.get_model_list())
    cells = {c.model for c in PT.CELLS if c.scenario == 'fpn'}
    assert len(cells) == 36 and cells <= names
    assert all(c.available for c in PT.CELLS if c.scenario == 'fpn')
    for b in (1, 2, 3, 4):
        assert 'stopsign_gau_fpn_resnet20_b%d' % b in names
    info = net.get_model_info('stopsign_iaff_fpn_resnet20_b3')
    assert (info.classes, info.input_size, info.era, info.fusion) == (2, 480, 'paper', 'iaff')
    assert info.kwargs['layers'] == [3, 3, 3] and info.builder is fpn.ResNetFPN


@pytest.mark.parametrize('fusion', fpn.FPN_FUSIONS)
def test_every_fusion_runs_forward_and_backward(fusion):
    mx.random.seed(0)
    model = net.get_model('stopsign_%s_fpn_resnet20_b1' % fusion)
    assert isinstance(model.level2.attention, CLASS_OF[fusion])
    assert isinstance(model.level1.attention, CLASS_OF[fusion])
    model.initialize(mx.init.MSRAPrelu())
    model.hybridize()
    x = mx.nd.random.uniform(shape=(2, 3, 32, 48))
    with mx.autograd.record():
        out = model(x)
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss(axis=1)(out, mx.nd.zeros((2, 32, 48)))
    loss.backward()
    assert out.shape == (2, 2, 32, 48)
    assert np.isfinite(out.asnumpy()).all()
    grads = {n: p.grad().abs().sum().asscalar() for n, p in model.collect_params().items()
             if p.grad_req != 'null'}
    # every trainable parameter takes part (a fusion whose branch were unused would show zeros)
    assert all(g > 0 for g in grads.values()), [n for n, g in grads.items() if g == 0]


def test_decoder_widths_512_256_128_64():
    model = net.get_model('stopsign_aff_fpn_resnet20_b2')
    assert model.widths == (512, 256, 128, 64)
    assert model.top[0]._channels == 512
    assert (model.level2.channels, model.level1.channels) == (256, 128)
    assert model.level2.attention.channels == 256 and model.level1.attention.channels == 128
    assert model.head[0]._channels == 64 and model.head[3]._channels == 2
    # X by a point-wise conv from the encoder (stage2: 32, stage1: 16 channels), Y reduced
    assert model.level2.lateral[0]._kwargs['kernel'] == (1, 1)
    assert model.level2.lateral[0]._in_channels == 32 and model.level1.lateral[0]._in_channels == 16
    assert model.level2.reduce[0]._in_channels == 512 and model.level1.reduce[0]._in_channels == 256
    model.initialize()
    shapes = {}
    for blk in (model.level2, model.level1):
        blk.register_forward_hook(lambda b, i, o: shapes.__setitem__(b.channels, o.shape))
    model(mx.nd.zeros((1, 3, 64, 64)))
    assert shapes == {256: (1, 256, 16, 16), 128: (1, 128, 32, 32)}   # stride 4 and 2


def test_the_encoder_is_the_resnet20b_host():
    model = net.get_model('stopsign_add_fpn_resnet20_b2')
    host = net.get_model('cifar_add_resnet20_b2')
    fpn_names = {k.split('encoder_', 1)[1] for k in model.collect_params() if 'encoder_' in k}
    host_names = {k.split('_', 1)[1] for k in host.collect_params()}
    # the host's parameters minus its classifier tail (final BN, Dense); the stride-2 stem
    # replaces conv0
    extra = {'stem_weight'}
    assert fpn_names - extra == {n for n in host_names
                                 if not n.startswith(('dense', 'batchnorm1_', 'conv0_'))}
    assert extra <= fpn_names
    assert model.stem[1]._kwargs['stride'] == (2, 2)
    one = fpn.ResNetFPN('add', [1, 1, 1], stem_stride=1)
    assert one.stride == 4 and one.stem[1]._kwargs['stride'] == (1, 1)


def _bn(c):
    return 4 * c          # gamma, beta, running mean, running var


def _expected_add_b1():
    """ResNet-20-b (b = 1, widths 16-16-32-64) + FPN with Add, counted by hand."""
    enc = _bn(3) + 3 * 16 * 9                                  # data BN, stem conv
    enc += _bn(16) + 16 * 16 * 9 + _bn(16) + 16 * 16 * 9       # stage1 block
    enc += _bn(16) + 16 * 32 * 9 + _bn(32) + 32 * 32 * 9 + 16 * 32      # stage2 + projection
    enc += _bn(32) + 32 * 64 * 9 + _bn(64) + 64 * 64 * 9 + 32 * 64      # stage3 + projection
    dec = 64 * 512 + _bn(512)                                  # top: PWConv 64 -> 512
    for low, high, c in ((32, 512, 256), (16, 256, 128)):
        dec += low * c + _bn(c) + high * c + _bn(c) + c * c * 9 + _bn(c)  # lateral, reduce, post
    dec += 128 * 64 * 9 + _bn(64) + 64 * 2 + 2                 # head
    return enc + dec


def _aff_params(c, r=4):
    inter = c // r
    branch = c * inter + inter + _bn(inter) + inter * c + c + _bn(c)
    return 2 * branch


def test_parameter_count_by_hand():
    add = net.get_model('stopsign_add_fpn_resnet20_b1')
    assert _count(add) == _expected_add_b1() == 1102334
    aff = net.get_model('stopsign_aff_fpn_resnet20_b1')
    assert _count(aff) == _expected_add_b1() + _aff_params(256) + _aff_params(128)
    iaff = net.get_model('stopsign_iaff_fpn_resnet20_b1')
    assert _count(iaff) == _expected_add_b1() + 2 * (_aff_params(256) + _aff_params(128))
    # Table 3's three scales have the same budget
    assert len({_count(net.get_model('stopsign_%s_fpn_resnet20_b1' % f))
                for f in ('aff', 'globalglobal', 'locallocal')}) == 1


def test_iaff_is_the_papers_eq5_not_the_fragment():
    """Eq. 5: the second stage mixes the *inputs* X and Y (the fragment mixed attention logits)."""
    mx.random.seed(1)
    m = fpn.FPNLevel('iaff', 4, 8, 8)
    m.initialize(mx.init.Normal(0.5))
    x, y = mx.nd.random.normal(shape=(2, 8, 4, 4)), mx.nd.random.normal(shape=(2, 8, 4, 4))
    a = m.attention
    w1 = mx.nd.sigmoid(mx.nd.broadcast_add(a.local_att(x + y), a.global_att(x + y)))
    i = w1 * y + (1 - w1) * x
    w2 = mx.nd.sigmoid(mx.nd.broadcast_add(a.local_att2(i), a.global_att2(i)))
    want = w2 * y + (1 - w2) * x
    np.testing.assert_allclose(a(x, y).asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-5)


def test_level_upsamples_y_bilinearly_and_fuses_x_first():
    m = fpn.FPNLevel('add', 3, 5, 4)
    m.initialize()
    low, high = mx.nd.random.uniform(shape=(1, 3, 8, 8)), mx.nd.random.uniform(shape=(1, 5, 4, 4))
    y = mx.nd.contrib.BilinearResize2D(m.reduce(high), height=8, width=8, align_corners=False)
    np.testing.assert_allclose(m(low, high).asnumpy(), m.post(m.lateral(low) + y).asnumpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('crop,base,msg', [(60, 64, 'multiple of the network stride 8'),
                                           (4, 64, 'multiple'), (96, 64, 'larger than')])
def test_check_crop(crop, base, msg):
    with pytest.raises(AFFError, match=msg):
        fpn.check_crop(crop, 8, base)
    fpn.check_crop(64, 8, 64)


def test_bad_constructor_arguments():
    with pytest.raises(AFFError, match='4 widths'):
        fpn.ResNetFPN('aff', [1, 1, 1], widths=(256, 128, 64))
    with pytest.raises(AFFError, match='stem_stride'):
        fpn.ResNetFPN('aff', [1, 1, 1], stem_stride=4)
