"""Same-layer fusion: the Inception-ResNet-20-b host of Tables 3/4 ("InceptionNet") and Fig. 7.

Paper §4.1: in the same-layer scenario **X** is the output of a 3x3 kernel and **Y** the output
of a 5x5 kernel; §4.3 / Fig. 3 ("AFF-Inception module") replaces the Inception module's fusion
by the fusion under test.  The authors never released this network; the paper-era fragments
(806562e ``model/atac``, docs/official-code.md §1.6, §2.4) are unimportable.  What we build, and why:

* **Host** = the ResNet-20-b host of :class:`net.cifar.CIFARPreActResNet` (data BN, stem, three
  pre-activation stages of b blocks, widths 16-16-32-64, strides 1-2-2, BN-ReLU-GAP-Dense) in
  which **every 3x3 convolution, the stem's included, is an Inception module**
  (:class:`InceptionConv`), as in the fragment ``ResNet20V2DyReF``.
* **Inception module** = two parallel branches on the same input, ``branch3x3`` = Conv3x3 and
  ``branch5x5`` = Conv3x3 with dilation 2 (a 5x5 receptive field at the cost of a 3x3, the
  fragment's ``dilations=(1, 2)``), stride in both, each followed by BN; then
  ``attention(X=branch3x3, Y=branch5x5)``.  No ReLU inside (the pre-activation block supplies
  BN-ReLU before the next module).  Add has no BN in its branches (fragment ``Direct_AddConv``).
* **Residual shortcut** sits around the pair of Inception modules, as in ResNet-20-b: block =
  BN-ReLU-Inception(stride)-BN-ReLU-Inception, plus the raw (not pre-activated) input, plain
  addition, no ReLU after it; projection = Conv1x1(stride) without BN (``era='paper'``).  The
  same-layer fusion is the only fusion in the network.
* Fragment quirk **not** kept: ``ResBlockV2DyReF`` gives the first module of a block
  ``in_channels`` outputs; we use the block width, as ResNet-20-b does.

Fusion of the two branches (``fusion(x, y)``, x = X = 3x3 branch, y = Y = 5x5 branch).  Where a
fragment exists its formula is used: the weight multiplies X as in Eq. 4 (not Y as in the
short-skip modules of :mod:`net.fusion`) and **no factor 2** anywhere:

=================  ==========================================  ===============================
name               Z                                            source
=================  ==========================================  ===============================
add                X + Y                                        ``Direct_AddConv``
concat             Conv1x1_{2C->C}([X; Y])  (= W_A X + W_B Y)   ``LearnedConv``, Table 1
msgau              M(Y) X + Y                                   ``AYforXplusYDyReFConv``
msse               X + M(Y) Y                                   ``XplusAYforYDyReFConv``
mssa               M(X+Y) X + Y                                 ``AXYforXplusYDyReFConv``
aff                M(X+Y) X + (1 - M(X+Y)) Y                    ``SK_LGChaDyReFConv``, Eq. 4
iaff               Eq. 5: M2(I) X + (1 - M2(I)) Y,              ``MatryoshkaDyReFConv``, Eq. 5
                   I = M1(X+Y) X + (1 - M1(X+Y)) Y
globalglobal       as aff, both context branches pooled         paper Fig. 4 (no fragment)
locallocal         as aff, neither context branch pooled        paper Fig. 4 (no fragment)
sk                 a0 X + a1 Y, (a0, a1) = softmax of G(X+Y)    ``SKConv``, Table 1 SKNet
=================  ==========================================  ===============================

Context branches (the paper's r): MS-GAU / MS-SE / MS-SA / AFF / Global+Global / Local+Local use
single-layer C->C branches (``[Conv1x1, BN]``, with GAP for a global one), as the fragments do --
the weight count of the paper's "r = 2" (§5.1.2) and the same count for the three Table 3 rows
("all of them have the same parameter number").  iAFF uses two bottleneck MS-CAMs with r = 4
(Eq. 2-3, §5.1.2 "r in iAFF is 4", Table 2's r = 4): the fragment's two single-layer stages would
double the fusion budget against AFF, contradicting "given the same parameter budget" of
Table 4, so we follow the paper here (``SameLayerIAFF(C, r=None)`` is the fragment's
version).  The host's ``r`` = an integer gives the AFF, iAFF, Global+Global and Local+Local
branches a C -> C/r -> C bottleneck (MS-GAU / MS-SE / MS-SA / SKNet ignore it).  SKNet: GAP,
Conv C->C/4, BN, ReLU, Conv C/4->2C, BN (the module of :class:`net.fusion.SK`), without its
factor 2 (Table 1).  Concatenation keeps C channels: the paper's W_A X + W_B Y is the 1x1
convolution of the concatenated 2C maps, so every cell has the same widths.
"""
from functools import partial

from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .blocks import _norm
from .cifar import CIFARPreActResNet
from .errors import AFFError, UnknownNameError
from .layers import sigmoid
from .fusion import (DirectAdd, Concat, MSGAU, MSSE, MSSA, AFF, AFFSingleLayer, IAFF, GlobalGlobal,
                     LocalLocal, SK, _Fusion, _inter, canonical_fusion, context, get_fusion)

__all__ = ['InceptionConv', 'CIFARInceptionResNet', 'SameLayerConcat', 'SameLayerSelection',
           'SameLayerAFF', 'SameLayerGlobalGlobal', 'SameLayerLocalLocal', 'SameLayerIAFF',
           'SameLayerSK', 'same_layer_fusion', 'FUSIONS', 'register']


# --------------------------------------------------------------------------------------
# the same-layer fusion modules
# --------------------------------------------------------------------------------------
class SameLayerConcat(_Fusion):
    """Concatenation (Table 1): ``Z = W_A X + W_B Y`` = Conv1x1 (2C -> C, bias) of ``[X; Y]``.

    Fragment ``LearnedConv``.  Unlike the short-skip :class:`net.fusion.Concat` there is no BN
    before the conv: both branches already end in BN.
    """
    paper_name = 'Concatenation'

    def __init__(self, channels, r=None, **kwargs):
        super().__init__(channels, **kwargs)
        with self.name_scope():
            self.fuse = nn.Conv2D(channels, kernel_size=1, in_channels=2 * channels)

    def hybrid_forward(self, F, x, y):
        return self.fuse(F.concat(x, y, dim=1))


def _scale_branch(scale, channels, r, norm_layer, norm_kwargs):
    inter = None if r is None else _inter(channels, r)
    return context(channels, inter, pool=(scale == 'global'), norm_layer=norm_layer,
                   norm_kwargs=norm_kwargs)


class SameLayerSelection(_Fusion):
    """Soft selection ``Z = W X + (1 - W) Y`` with ``W = sigmoid(A(X+Y) (+) B(X+Y))`` (Eq. 4).

    ``scales``: the aggregation scales of the two context branches A, B (Table 3 / Fig. 4);
    ``r=None``: single-layer C->C branches (fragment ``SK_LGChaDyReFConv``, the paper's r = 2
    budget), else bottleneck C -> C/r -> C.  Children are named ``<scale>_att`` (a repeated
    scale gets the suffix 2).
    """
    paper_name = 'selection'
    scales = ('local', 'global')

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        self._names = []
        with self.name_scope():
            for scale in self.scales:
                name = scale + '_att' + ('2' if scale + '_att' in self._names else '')
                setattr(self, name, _scale_branch(scale, channels, r, norm_layer, norm_kwargs))
                self._names.append(name)

    def weight(self, F, x, y):
        """The fusion weight W on X (exposed for tests and visualisation)."""
        t = x + y
        a, b = (getattr(self, n) for n in self._names)
        return sigmoid(F, F.broadcast_add(a(t), b(t)))

    def hybrid_forward(self, F, x, y):
        # W*X + (1-W)*Y = Y + W*(X-Y): one multiplication fewer
        return y + F.broadcast_mul(self.weight(F, x, y), x - y)


class SameLayerAFF(SameLayerSelection):
    """AFF, Eq. 4 ("Global + Local" of Table 3): local and global context branches."""
    paper_name = 'AFF'


class SameLayerGlobalGlobal(SameLayerSelection):
    """"Global + Global" of Table 3 / Fig. 4: both context branches globally pooled."""
    paper_name = 'Global+Global'
    scales = ('global', 'global')


class SameLayerLocalLocal(SameLayerSelection):
    """"Local + Local" of Table 3 / Fig. 4: neither context branch pooled."""
    paper_name = 'Local+Local'
    scales = ('local', 'local')


class SameLayerIAFF(_Fusion):
    """Iterative AFF, Eq. 5: ``I = M1(X+Y) X + (1-M1(X+Y)) Y``, ``Z = M2(I) X + (1-M2(I)) Y``.

    M1 = ``local_att`` (+) ``global_att``, M2 = ``local_att2`` (+) ``global_att2``; bottleneck
    MS-CAMs with ``r`` = 4 (§5.1.2), ``r=None`` = the fragment's single-layer branches.
    """
    paper_name = 'iAFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = _scale_branch('local', channels, r, **nk)
            self.global_att = _scale_branch('global', channels, r, **nk)
            self.local_att2 = _scale_branch('local', channels, r, **nk)
            self.global_att2 = _scale_branch('global', channels, r, **nk)

    def hybrid_forward(self, F, x, y):
        d = x - y
        w1 = sigmoid(F, F.broadcast_add(self.local_att(x + y), self.global_att(x + y)))
        i = y + w1 * d
        w2 = sigmoid(F, F.broadcast_add(self.local_att2(i), self.global_att2(i)))
        return y + w2 * d


class SameLayerSK(SK):
    """SKNet selection (Table 1, Fig. 7 baseline): ``Z = a0 X + a1 Y``, ``(a0, a1)`` = softmax
    over the pair of ``G(X+Y)`` (GAP, Conv C->C/4, BN, ReLU, Conv C/4->2C, BN).

    The module of :class:`net.fusion.SK` without its factor 2, the first softmax slot on the
    3x3 branch as in SKNet.
    """

    def hybrid_forward(self, F, x, y):
        a = F.softmax(F.reshape(self.global_att(x + y), shape=(0, 2, -1, 1)), axis=1)
        a0 = F.reshape(F.slice_axis(a, axis=1, begin=0, end=1), shape=(0, -1, 1, 1))
        a1 = F.reshape(F.slice_axis(a, axis=1, begin=1, end=2), shape=(0, -1, 1, 1))
        return F.broadcast_mul(x, a0) + F.broadcast_mul(y, a1)


#: registry short name -> same-layer module; None = the short-skip module of net.fusion fits
FUSIONS = {'add': None, 'concat': SameLayerConcat, 'msgau': None, 'msse': None, 'mssa': None,
           'aff': SameLayerAFF, 'iaff': SameLayerIAFF, 'globalglobal': SameLayerGlobalGlobal,
           'locallocal': SameLayerLocalLocal, 'sk': SameLayerSK}
# paper names and official mode strings resolve through net.fusion's table to these classes
_SHORT_NAME = {DirectAdd: 'add', Concat: 'concat', MSGAU: 'msgau', MSSE: 'msse', MSSA: 'mssa',
               AFF: 'aff', AFFSingleLayer: 'aff', IAFF: 'iaff', GlobalGlobal: 'globalglobal',
               LocalLocal: 'locallocal', SK: 'sk'}


def _short_name(fusion):
    if isinstance(fusion, type):
        if fusion in _SHORT_NAME:
            return _SHORT_NAME[fusion]
    else:
        try:
            cls = canonical_fusion(fusion)
        except UnknownNameError:
            raise UnknownNameError('unknown same-layer fusion %r; use one of %s'
                                   % (fusion, ', '.join(FUSIONS))) from None
        if cls in _SHORT_NAME:
            return _SHORT_NAME[cls]
    raise AFFError('fusion %r has no same-layer (Inception) variant in the paper; use one of %s'
                   % (getattr(fusion, '__name__', fusion), ', '.join(FUSIONS)))


def same_layer_fusion(fusion, channels, r=None, norm_layer=None, norm_kwargs=None):
    """The module fusing the 3x3 (X) and 5x5 (Y) branches: a registry short name, paper name
    or official mode string (``'aff'``, ``'MS-SENet'``, ``'ASKCFuse'`` ...) or a fusion class."""
    name = _short_name(fusion)
    extra = {} if norm_layer is None else dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    cls = FUSIONS[name]
    if cls is None:
        return get_fusion(name, channels, r=r, **extra)
    if r is not None:                    # else the module's own default (iAFF: 4)
        extra['r'] = r
    return cls(channels, **extra)


# --------------------------------------------------------------------------------------
# the Inception module and the host
# --------------------------------------------------------------------------------------
class InceptionConv(HybridBlock):
    """Inception module of Fig. 3: ``attention(X = BN(Conv3x3(x)), Y = BN(Conv3x3_dil2(x)))``.

    Both convolutions: ``channels`` outputs, ``stride``, no bias; the second has dilation 2
    and padding 2 (5x5 receptive field, same output size).  ``branch_bn=False`` drops the BNs
    (the Add baseline).  Used wherever the ResNet-20-b host has a 3x3 convolution.
    """

    def __init__(self, in_channels, channels, stride, fusion, r=None, branch_bn=True,
                 norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.branch3x3 = nn.HybridSequential(prefix='')
            self.branch5x5 = nn.HybridSequential(prefix='')
            for branch, dilation in ((self.branch3x3, 1), (self.branch5x5, 2)):
                branch.add(nn.Conv2D(channels, 3, stride, padding=dilation, dilation=dilation,
                                     use_bias=False, in_channels=in_channels))
                if branch_bn:
                    branch.add(_norm(channels, norm_layer, norm_kwargs))
            self.attention = same_layer_fusion(fusion, channels, r, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.attention(self.branch3x3(x), self.branch5x5(x))


class CIFARInceptionResNet(CIFARPreActResNet):
    """Inception-ResNet-20-b (Table 2): :class:`CIFARPreActResNet` with every 3x3 convolution
    replaced by an :class:`InceptionConv` fusing its branches with ``fusion``.

    ``layers``: blocks per stage (b, b, b); ``channels``: [stem, stage1, stage2, stage3];
    ``r``: context-branch ratio (None = the per-fusion default of the module docstring);
    ``era``: shortcut projection, ``'paper'`` Conv1x1(stride) (the fragment's), ``'head'``
    AvgPool + Conv1x1.  The residual shortcuts are plain additions.
    """

    def __init__(self, fusion, layers, channels=(16, 16, 32, 64), classes=100, era='paper',
                 r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        name = _short_name(fusion)       # an unknown name fails here, before any layer exists
        conv = partial(InceptionConv, fusion=name, r=r, branch_bn=(name != 'add'),
                       norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        super().__init__('add', layers, channels, classes=classes, start_layer=1, era=era,
                         norm_layer=norm_layer, norm_kwargs=norm_kwargs, conv=conv, **kwargs)
        self.fusion = name


def register(reg):
    """Registry names ``cifar_<fusion>_inception_resnet20_b<b>``: Tables 3/4 cells and Fig. 7."""
    from .model_zoo import CELL_CHANNEL_TIMES    # here: model_zoo imports this module
    channels = [c * CELL_CHANNEL_TIMES for c in (16, 16, 32, 64)]
    for fusion in FUSIONS:
        for b in (1, 2, 3, 4):
            reg('cifar_%s_inception_resnet20_b%d' % (fusion, b), CIFARInceptionResNet,
                kwargs=dict(fusion=fusion, layers=[b] * 3, channels=list(channels), era='paper'),
                era='paper', fusion=fusion,
                host='Inception-ResNet-20-b (depth %d, b=%d, width x%d; 3x3 + dilated 3x3 '
                     'branches)' % (6 * b + 2, b, CELL_CHANNEL_TIMES),
                paper='Fig. 7 SKNet baseline (InceptionNet)' if fusion == 'sk'
                else 'Table 3/4 InceptionNet cell')
