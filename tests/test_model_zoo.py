"""The registry: every name builds and runs, errors list the valid names, export round trip."""
import os

import mxnet as mx
import numpy as np
import pytest

import net
from net.errors import UnknownNameError
from net.model_zoo import CELL_FUSIONS

NAMES = net.get_model_list()

REQUIRED = ['cifar_aff_resnet32', 'cifar_aff_resnext38_32x4d', 'cifar_aff_resnext47_32x4d',
            'aff_resnet50', 'iaff_resnet50', 'aff_resnext50_32x4d', 'iaff_resnext50_32x4d',
            'resnet50_v1b', 'aff_resnet50_v1b', 'iaff_resnet50_v1b', 'globalglobal_resnet50_v1b',
            'locallocal_resnet50_v1b', 'aff_resnext50_32x4d_v1b', 'iaff_resnext50_32x4d_v1b',
            'resnext50_32x4d_v1b', 'resnet50', 'resnext50_32x4d', 'cifar_resnet32',
            'cifar_resnext38_32x4d', 'cifar_resnext47_32x4d']


def test_required_names_exist():
    missing = [n for n in REQUIRED if n not in NAMES]
    assert not missing


def test_every_table_cell_has_a_name():
    """Tables 3, 4, S1 and the Fig. 7 baselines: fusion x b = 1..4 on ResNet-20-b."""
    for fusion in ('add', 'concat', 'msgau', 'msse', 'mssa', 'aff', 'iaff', 'globalglobal',
                   'locallocal', 'halfaff', 'concataff', 'recursiveaff', 'se', 'sk', 'gau'):
        assert fusion in CELL_FUSIONS
        for b in (1, 2, 3, 4):
            info = net.get_model_info('cifar_%s_resnet20_b%d' % (fusion, b))
            assert info.kwargs['layers'] == [b] * 3 and info.era == 'paper'


def test_names_are_unique_and_lower_case():
    assert len(set(NAMES)) == len(NAMES)
    assert all(n == n.lower() for n in NAMES)


#: AFINet and ACmix (net/afinet.py, net/acmix.py) have their own forward/backward tests in
#: tests/test_afinet.py and tests/test_acmix.py (ACmix's 7x7 windows need >= 128 px inputs)
RELATED = [n for n in NAMES if net.get_model_info(n).fusion in ('afi', 'acmix')]
#: forward passes of the deep ImageNet variants cost seconds each and add nothing the
#: 50-layer ones do not test (same blocks; their structure is checked by build + counts)
DEEP = [n for n in NAMES if ('resnet101' in n or 'resnet152' in n) and n not in RELATED]


@pytest.mark.parametrize('name', [n for n in NAMES if n not in DEEP and n not in RELATED])
def test_builds_and_runs(name):
    model = net.get_model(name, classes=7)
    model.initialize(mx.init.Xavier())
    size = 32 if model.input_size == 32 else 64   # any size >= 32 works for the ImageNet hosts
    out = model(mx.nd.random.uniform(shape=(2, 3, size, size)))
    # the StopSign FPN networks (net/fpn.py) give per-pixel logits at the input size
    assert out.shape == ((2, 7, size, size) if name.startswith('stopsign_') else (2, 7))
    assert np.isfinite(out.asnumpy()).all()


@pytest.mark.parametrize('name', DEEP)
def test_deep_variants_build(name):
    depth = 101 if '101' in name else 152
    blocks = {101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    model = net.get_model(name)
    assert [len(getattr(model, 'layer%d' % i)) for i in range(1, 5)] == blocks
    fused = [hasattr(b.attention, 'local_att') for b in model.layer3] + \
        [hasattr(b.attention, 'local_att') for b in model.layer4]
    assert all(fused) == (not name.startswith('resnet'))


def test_lookup_is_case_insensitive():
    assert net.get_model_info('CIFAR_AFF_ResNet32').name == 'cifar_aff_resnet32'


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        net.get_model('aff_resnet51')
    msg = str(err.value)
    # the closest few names and where the whole list is, in one short line
    assert msg.startswith("unknown model 'aff_resnet51'; closest: aff_resnet50")
    assert 'python -m utils.models --all' in msg and 'cifar_iaff_resnet20_b4' not in msg
    assert '\n' not in msg and len(msg) < 300


def test_input_size_and_default_classes():
    assert net.get_model('aff_resnet50').input_size == 224
    assert net.get_model('cifar_aff_resnet32').input_size == 32
    assert net.get_model('aff_resnet50').fc.weight.shape == (1000, 2048)
    assert net.get_model('cifar_aff_resnet32').output.weight.shape == (100, 256)


def test_backward_reaches_every_trainable_parameter():
    model = net.get_model('cifar_iaff_resnet20_b1', classes=10)
    model.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(4, 3, 32, 32))
    with mx.autograd.record():
        loss = model(x).sum()
    loss.backward()
    dead = [n for n, p in model.collect_params().items()
            if p.grad_req != 'null' and not np.abs(p.grad().asnumpy()).sum() > 0]
    assert not dead


@pytest.mark.filterwarnings('ignore:Cannot decide type')
@pytest.mark.parametrize('name', ['cifar_aff_resnet20_b1', 'cifar_iaff_resnet20_b1',
                                  'cifar_sk_resnet20_b1', 'cifar_halfaff_resnet20_b1'])
def test_hybridize_export_import_round_trip(name, tmp_path):
    model = net.get_model(name, classes=10)
    model.initialize(mx.init.Xavier())
    model.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    want = model(x).asnumpy()
    prefix = str(tmp_path / name)
    model.export(prefix, epoch=0)
    loaded = mx.gluon.SymbolBlock.imports(prefix + '-symbol.json', ['data'], prefix + '-0000.params')
    np.testing.assert_array_equal(loaded(x).asnumpy(), want)
    assert os.path.getsize(prefix + '-0000.params') > 0
