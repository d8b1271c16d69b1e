"""Golden tests against the official open-aff code: its fixtures and checkpoint manifests."""
import glob
import os

import mxnet as mx
import numpy as np
import pytest

import net
from net import openaff
from conftest import DATA, load_manifest, rel_err

FIXTURES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DATA, 'fixtures', '*.npz')))

#: manifest -> registry name of the same architecture
MANIFESTS = {
    'cifar100_aff_resnet32': 'cifar_aff_resnet32',
    'cifar100_aff_resnext38_32x4d': 'cifar_aff_resnext38_32x4d',
    'cifar100_aff_resnext47_32x4d': 'cifar_aff_resnext47_32x4d',
    'imagenet_aff_resnet50': 'aff_resnet50',
    'imagenet_iaff_resnet50': 'iaff_resnet50',
    'imagenet_aff_resnext50_32x4d': 'aff_resnext50_32x4d',
    'imagenet_iaff_resnext50_32x4d': 'iaff_resnext50_32x4d',
    'paper_cifar100_aff_resnet32': 'cifar_aff_resnet32_paper',
    'paper_cifar100_aff_resnext38_32x4d': 'cifar_aff_resnext38_32x4d_paper',
    'paper_imagenet_aff_resnet50_v1b': 'aff_resnet50_v1b',
    'paper_imagenet_iaff_resnet50_v1b': 'iaff_resnet50_v1b',
    'paper_imagenet_globglob_resnet50_v1b': 'globalglobal_resnet50_v1b',
    'paper_imagenet_localoca_resnet50_v1b': 'locallocal_resnet50_v1b',
    'paper_imagenet_aff_resnext50_32x4d': 'aff_resnext50_32x4d_v1b',
    'paper_imagenet_iaff_resnext50_32x4d': 'iaff_resnext50_32x4d_v1b',
}

#: manifest -> the same architecture built through the official constructor names
OFFICIAL_CALLS = {
    'cifar100_aff_resnet32': lambda: openaff.CIFARAFFResNet(
        'ASKCFuse', 1, [5, 5, 5], [64, 64, 128, 256], 100, False),
    'cifar100_aff_resnext38_32x4d': lambda: openaff.CIFARAFFResNeXt(
        'ASKCFuse', 1, [4, 4, 4], [64, 64, 128, 256], 32, 4, classes=100),
    'cifar100_aff_resnext47_32x4d': lambda: openaff.CIFARAFFResNeXt(
        'ASKCFuse', 1, [5, 5, 5], [64, 64, 128, 256], 32, 4, classes=100, deep_stem=False,
        use_se=False),
    'imagenet_aff_resnet50': lambda: openaff.AFFResNet(
        'ASKCFuse', 3, [3, 4, 6, 3], classes=1000, last_gamma=True),
    'imagenet_iaff_resnet50': lambda: openaff.AFFResNet(
        'ResGlobLocaforGlobLocaCha', 3, [3, 4, 6, 3], classes=1000, last_gamma=True),
    'imagenet_aff_resnext50_32x4d': lambda: openaff.AFFResNeXt(
        'ASKCFuse', 3, [3, 4, 6, 3], 32, 4, use_se=False),
    'imagenet_iaff_resnext50_32x4d': lambda: openaff.AFFResNeXt(
        'ResGlobLocaforGlobLocaCha', 3, [3, 4, 6, 3], 32, 4, use_se=False),
    'paper_cifar100_aff_resnet32': lambda: openaff.ResNet110V2ASKC(
        'ASKCFuse', [5, 5, 5], [64, 64, 128, 256], 100, 1),
    'paper_cifar100_aff_resnext38_32x4d': lambda: openaff.CIFARResNextASKC([4, 4, 4], 32, 4, 100),
    'paper_imagenet_aff_resnet50_v1b': lambda: openaff.ResNet50_v1bASKC(
        'ASKCFuse', [3, 4, 6, 3], classes=1000, last_gamma=True),
    'paper_imagenet_iaff_resnet50_v1b': lambda: openaff.ResNet50_v1bASKC(
        'ResGlobLocaforGlobLocaCha', [3, 4, 6, 3]),
    'paper_imagenet_globglob_resnet50_v1b': lambda: openaff.ResNet50_v1bASKC(
        'ResGlobGlobCha', [3, 4, 6, 3]),
    'paper_imagenet_localoca_resnet50_v1b': lambda: openaff.ResNet50_v1bASKC(
        'ResLocaLocaCha', [3, 4, 6, 3]),
    'paper_imagenet_aff_resnext50_32x4d': lambda: openaff.ResNextASKC('ASKCFuse', [3, 4, 6, 3], 32, 4),
    'paper_imagenet_iaff_resnext50_32x4d': lambda: openaff.ResNextASKC(
        'ResGlobLocaforGlobLocaCha', [3, 4, 6, 3], 32, 4),
}


def saved_names(block):
    """(name, shape) exactly as ``save_parameters`` writes them, in file order."""
    return [(name, list(p.shape)) for name, p in block._collect_params_with_prefix().items()]


def test_every_manifest_is_covered():
    have = sorted(os.path.basename(p)[:-8] for p in glob.glob(os.path.join(DATA, 'manifests', '*.json.gz')))
    assert have == sorted(MANIFESTS) == sorted(OFFICIAL_CALLS)


@pytest.mark.parametrize('manifest', sorted(MANIFESTS))
def test_registry_model_matches_manifest(manifest):
    want = load_manifest(manifest)
    got = saved_names(net.get_model(MANIFESTS[manifest]))
    assert got == [(n, s) for n, s in want['params']]
    assert sum(int(np.prod(s)) for _, s in got) == want['param_count']


@pytest.mark.parametrize('manifest', sorted(OFFICIAL_CALLS))
def test_official_constructor_matches_manifest(manifest):
    want = load_manifest(manifest)
    assert saved_names(OFFICIAL_CALLS[manifest]()) == [(n, s) for n, s in want['params']]


def _official_fixture_net(name):
    mode = name.split('_b1_', 1)[1]
    if name.startswith('paper_'):
        return openaff.ResNet110V2ASKC(mode, [1, 1, 1], [16, 16, 32, 64], 10, 1)
    return openaff.CIFARAFFResNet(mode, 1, [1, 1, 1], [16, 16, 32, 64], 10, False)


def _check_outputs(model, name, hybridize=False, static_shape=True):
    ref = np.load(os.path.join(DATA, 'fixtures', name + '.npz'))
    model.load_parameters(os.path.join(DATA, 'fixtures', name + '.params'))
    if hybridize:
        model.hybridize(static_alloc=True, static_shape=static_shape)
    x = mx.nd.array(ref['x'])
    assert rel_err(model(x).asnumpy(), ref['out_eval']) < 2e-5
    with mx.autograd.record(train_mode=True):
        out_train = model(x)
    assert rel_err(out_train.asnumpy(), ref['out_train']) < 1e-4


def test_fixtures_present():
    assert len(FIXTURES) == 7


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_through_openaff(name):
    _check_outputs(_official_fixture_net(name), name)


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_hybridized(name):
    _check_outputs(_official_fixture_net(name), name, hybridize=True)


def _kernel_reason():
    from net import kernels
    status = kernels.load()
    return None if status else status.reason


@pytest.mark.parametrize('fused', [False, True], ids=['pure', 'kernel'])
@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_through_the_cpu_speed_layer(name, fused):
    """The official networks rewritten by net.cpu_speed (training rewrites, static_alloc as the
    scripts hybridize on the CPU), with the pure tails and with the fused kernel, give the
    official outputs, inference and training mode."""
    from net import cpu_speed
    if fused and _kernel_reason():
        pytest.skip('the fused kernel is not usable here: %s' % _kernel_reason())
    model = _official_fixture_net(name)
    note = cpu_speed.apply(model, mx.cpu(), training=True, fused=fused)
    assert note.startswith('CPU speed layer (')
    _check_outputs(model, name, hybridize=True, static_shape=False)


PAPER_NAMES = {'AYforXplusY': 'msgau', 'Concat': 'concat', 'HalfASKCFuse': 'halfaff',
               'ResGlobGlobCha': 'globalglobal'}


@pytest.mark.parametrize('mode', sorted(PAPER_NAMES))
def test_paper_fixture_is_a_resnet20_b1_cell(mode):
    """The 806562e fixtures are the b = 1 cells of Tables 3/4/S1 with a 10-class head."""
    model = net.get_model('cifar_%s_resnet20_b1' % PAPER_NAMES[mode], classes=10)
    _check_outputs(model, 'paper_cifar_resnet_b1_' + mode)
