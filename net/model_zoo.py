"""The model registry: every network of the paper and of open-aff by name (GluonCV style).

>>> import net
>>> model = net.get_model('cifar_aff_resnet32')            # the released HEAD architecture
>>> model = net.get_model('aff_resnet50_v1b')               # the submitted paper's Table 5 host
>>> model = net.get_model('cifar_iaff_resnet20_b2', classes=20)

Naming: ``[cifar_]<fusion>_<host>[_suffix]``.  No suffix = the open-aff HEAD architecture
(the released checkpoints); ``_v1b`` (ImageNet) and ``_paper`` (CIFAR) = the submitted-paper
commit 806562e; ``cifar_<fusion>_resnet20_b<b>`` = a cell of Tables 3, 4 and S1 (806562e
host, b blocks per stage, width multiplier 1 -- see :data:`CELL_CHANNEL_TIMES`).  A name
without a fusion is the plain (Add) baseline.
"""
from dataclasses import dataclass, field

from . import model_store
from .cifar import CIFARPreActResNet, CIFARResNeXt
from .errors import unknown_name
from .fusion import PAPER_FUSIONS
from .imagenet import DEPTHS, ResNetV1bHost, ResNeXtHost

__all__ = ['get_model', 'get_model_list', 'get_model_info', 'ModelInfo', 'CELL_CHANNEL_TIMES',
           'CELL_FUSIONS']

#: Width multiplier of the ResNet-20-b cells (Tables 3, 4, S1).  The paper does not record
#: it.  We take 1 (widths 16-16-32-64): the 806562e default of ``--channel-times``, which the
#: authors overrode explicitly (``--channel-times 4``) only for their SOTA runs; and Fig. 7's
#: "iAFF-ResNet (b = 2) needs only 54% of the parameters of ResNet (b = 4)" is 0.548 at
#: width 1 (0.540 at 2, 0.535 at 4 -- docs/official-code.md §2.6), the paper truncating as it does in Table 5.
CELL_CHANNEL_TIMES = 1

#: the fusions that have ResNet-20-b cells: Tables 3, 4, S1 and the Fig. 7 baselines
CELL_FUSIONS = ('add', 'concat', 'msgau', 'msse', 'mssa', 'aff', 'iaff', 'globalglobal',
                'locallocal', 'halfaff', 'concataff', 'recursiveaff', 'se', 'sk', 'gau',
                'aff1layer')

#: fusion short name -> official mode string (what the official scripts were given)
_MODE = {'add': 'DirectAdd', 'aff': 'ASKCFuse', 'iaff': 'ResGlobLocaforGlobLocaCha',
         'globalglobal': 'ResGlobGlobCha', 'locallocal': 'ResLocaLocaCha', 'se': 'SEFuse'}


@dataclass(frozen=True)
class ModelInfo:
    """What a registry name builds: the host builder and its arguments, plus metadata."""
    name: str
    builder: object
    kwargs: dict = field(default_factory=dict)
    input_size: int = 32
    classes: int = 100
    era: str = 'head'
    fusion: str = 'add'
    host: str = ''
    paper: str = ''

    def build(self, **overrides):
        kwargs = dict(self.kwargs)
        kwargs.setdefault('classes', self.classes)
        kwargs.update(overrides)
        return self.builder(**kwargs)


_MODELS = {}


def _register(name, builder, **info):
    assert name not in _MODELS, name
    _MODELS[name] = ModelInfo(name=name, builder=builder, **info)


def _prefix(fusion):
    return '' if fusion == 'add' else fusion + '_'


# ------------------------------------------------------------------ CIFAR
def _cifar_resnet(name, fusion, blocks, channel_times, era, paper=''):
    _register(name, CIFARPreActResNet, kwargs=dict(
        fusion=_MODE.get(fusion, fusion), layers=[blocks] * 3,
        channels=[c * channel_times for c in (16, 16, 32, 64)], start_layer=1, era=era),
        era=era, fusion=fusion, host='ResNet-%d (pre-act, b=%d, width x%d)' % (
            6 * blocks + 2, blocks, channel_times), paper=paper)


def _cifar_resnext(name, fusion, blocks, era, paper=''):
    _register(name, CIFARResNeXt, kwargs=dict(
        fusion=_MODE.get(fusion, fusion), layers=[blocks] * 3, base_channels=64,
        cardinality=32, bottleneck_width=4, start_layer=1, era=era),
        era=era, fusion=fusion, host='ResNeXt-%d-32x4d' % (9 * blocks + 2), paper=paper)


for _fu in ('add', 'aff', 'iaff'):
    _cifar_resnet('cifar_%sresnet32' % _prefix(_fu), _fu, 5, 4, 'head')
    _cifar_resnet('cifar_%sresnet32_paper' % _prefix(_fu), _fu, 5, 4, 'paper')
    for _b in (3, 4, 5):
        _cifar_resnext('cifar_%sresnext%d_32x4d' % (_prefix(_fu), 9 * _b + 2), _fu, _b, 'head')
        _cifar_resnext('cifar_%sresnext%d_32x4d_paper' % (_prefix(_fu), 9 * _b + 2), _fu, _b,
                       'paper')

for _fu in CELL_FUSIONS:
    for _b in (1, 2, 3, 4):
        _cifar_resnet('cifar_%s_resnet20_b%d' % (_fu, _b), _fu, _b, CELL_CHANNEL_TIMES, 'paper',
                      paper='Table 3/4/S1 ResNet-20-b cell')


# ------------------------------------------------------------------ ImageNet
def _imagenet(name, host, fusion, depth, era, **extra):
    if host == 'resnet':
        builder, desc = ResNetV1bHost, 'ResNet-%d' % depth
        extra.setdefault('last_gamma', True)   # every official ResNet run used --last-gamma
    else:
        builder, desc = ResNeXtHost, 'ResNeXt-%d-32x4d' % depth
        extra.update(cardinality=32, bottleneck_width=4)
    _register(name, builder, kwargs=dict(fusion=_MODE.get(fusion, fusion), layers=DEPTHS[depth],
                                         start_layer=3, era=era, **extra),
              input_size=224, classes=1000, era=era, fusion=fusion,
              host=desc + (' v1b (7x7 stem)' if era == 'paper' else ' (deep stem, avg_down)'))


for _fu in ('add', 'aff', 'iaff'):
    for _d in (50, 101, 152):
        _imagenet('%sresnet%d' % (_prefix(_fu), _d), 'resnet', _fu, _d, 'head')
    _imagenet('%sresnext50_32x4d' % _prefix(_fu), 'resnext', _fu, 50, 'head')
    _imagenet('%sresnext50_32x4d_v1b' % _prefix(_fu), 'resnext', _fu, 50, 'paper')
for _fu in ('add', 'aff', 'iaff', 'globalglobal', 'locallocal', 'se'):
    _imagenet('%sresnet50_v1b' % _prefix(_fu), 'resnet', _fu, 50, 'paper')


# ------------------------------------------------------------------ families in their own files
# Each module of _FAMILIES defines ``register(reg)`` and calls ``reg(name, builder, **fields)``
# (fields of ModelInfo) for each of its names.  Add a family by importing it here.
from . import inception as _inception  # noqa: E402  (registers through _register above)
from . import fpn as _fpn  # noqa: E402
from . import afinet as _afinet, acmix as _acmix  # noqa: E402
from . import afinet_mobile as _afinet_mobile  # noqa: E402
_FAMILIES = (_inception, _fpn, _afinet, _acmix, _afinet_mobile)
for _family in _FAMILIES:
    _family.register(_register)


def get_model_list():
    """All registry names, in registration order."""
    return list(_MODELS)


def get_model_info(name):
    """The :class:`ModelInfo` of a registry name (raises listing the valid names)."""
    key = str(name).lower()
    if key not in _MODELS:
        raise unknown_name('model', name, list(_MODELS), 'python -m utils.models --all')
    return _MODELS[key]


def get_model(name, pretrained=False, ctx=None, root=None, **kwargs):
    """Build the network ``name`` (uninitialised unless ``pretrained``).

    ``kwargs`` override the constructor arguments (``classes``, ``r``, ``norm_layer`` ...).
    ``pretrained``: ``True`` (the released checkpoint of this architecture), a checkpoint
    tag / SHA-1 prefix, or a path to a ``.params`` file; see :mod:`net.model_store`.
    """
    info = get_model_info(name)
    model = info.build(**kwargs)
    model.input_size = info.input_size
    if pretrained:
        model_store.load_pretrained(model, info.name, pretrained, root=root, ctx=ctx)
    return model
