"""Feature-fusion modules of "Attentional Feature Fusion" (Dai et al., WACV 2021).

Every two-input module is called as ``fusion(x, y)`` in the paper's notation:

* ``x`` = **X**, the identity / shortcut (short skip), the low-level map (long skip),
  the first branch (same layer);
* ``y`` = **Y**, the residual-branch output / high-level map / second branch.

The official open-aff modules take ``(x, residual)`` = (**Y**, **X**), i.e. the other way
round; the host blocks in :mod:`net.blocks` call ``fusion(shortcut, body)``, which is that
swap, stated once.  Formulas in the docstrings below are written in paper symbols and
reproduce the official code exactly, including its quirks:

* **the sigmoid weight multiplies Y.**  Eq. 4 of the paper puts M on X; the code computes
  ``W = M(X (+) Y)`` and returns ``W*Y + (1-W)*X`` -- the same family with M <-> 1-M, which
  matters when transplanting weights or plotting "fusion weights";
* **factor 2** in AFF (``ASKCFuse``) and every 806562e selection module built on it, but
  **not** in iAFF (``ResGlobLocaforGlobLocaChaFuse``) nor in Recursive AFF (docs/official-code.md §1.1);
* **reduction ratio**: ``inter = channels // r`` (floor).  The CIFAR blocks build modules
  with the class default r = 4, the ImageNet blocks pass r = 16.  The MS-GAU / MS-SE / MS-SA
  modules and the 1-layer AFF have C->C single-layer branches (no bottleneck), which have
  the weight count of an r = 2 bottleneck -- the paper's "r = 2" of Table 4;
* the 1x1 convolutions inside attention modules have biases (MXNet default); BatchNorm in
  the global branch runs on N x C x 1 x 1 tensors.

Child names and Sequential indices follow the official classes exactly (parameterless
layers such as ReLU, Sigmoid and pooling occupy indices), so official checkpoints load with
plain ``load_parameters``.  :func:`get_fusion` maps paper names and every official mode
string to a module.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .errors import AFFError, unknown_name
from .layers import GlobalAvgPool, sigmoid

__all__ = ['MSCAM', 'DirectAdd', 'Concat', 'AFF', 'AFFSingleLayer', 'IAFF', 'GlobalGlobal',
           'LocalLocal', 'MSGAU', 'MSSE', 'MSSA', 'MSModulatedSum', 'SE', 'GAU', 'SK',
           'HalfAFF', 'ConcatAFF', 'RecursiveAFF', 'GlobalSelect', 'LocalSelect',
           'IterativeGlobal', 'IterativeLocal', 'DepthwiseAFF', 'Depthwise4AFF', 'ReLUAFF',
           'SharedConvAFF', 'get_fusion', 'fusion_names', 'canonical_fusion', 'PAPER_FUSIONS']


# --------------------------------------------------------------------------------------
# context branches (the "L" and "G" of Eq. 2-3)
# --------------------------------------------------------------------------------------
def _bn(channels, norm_layer=None, norm_kwargs=None):
    norm_layer = norm_layer or nn.BatchNorm
    return norm_layer(in_channels=channels, **(norm_kwargs or {}))


def context(channels, inter=None, pool=False, half=False, tail=None, groups=1,
            norm_layer=None, norm_kwargs=None):
    """A channel-context branch as a HybridSequential with the official indices.

    ``pool``: global average pooling first (global context g(X), else local L(X));
    ``inter=None``: one C->C point-wise conv + BN; ``inter=k``: the bottleneck
    PWConv(C->k)-BN-ReLU-PWConv(k->C)-BN of Eq. 2; ``half``: only PWConv(C->k)-BN-ReLU
    (Half-AFF); ``tail``: an activation appended at the end; ``groups``: depthwise convs.
    """
    seq = nn.HybridSequential(prefix='')
    with seq.name_scope():
        if pool:
            seq.add(GlobalAvgPool())
        width = channels if inter is None else inter
        seq.add(nn.Conv2D(width, kernel_size=1, in_channels=channels, groups=groups),
                _bn(width, norm_layer, norm_kwargs))
        if half:
            seq.add(nn.Activation('relu'))
        elif inter is not None:
            seq.add(nn.Activation('relu'),
                    nn.Conv2D(channels, kernel_size=1, in_channels=width, groups=groups),
                    _bn(channels, norm_layer, norm_kwargs))
        if tail:
            seq.add(nn.Activation(tail))
    return seq


def _inter(channels, r):
    inter = int(channels // r)
    if inter < 1:
        raise AFFError('reduction ratio r=%s leaves no channel for %d input channels; '
                       'use r <= %d' % (r, channels, channels))
    return inter


class _Fusion(HybridBlock):
    """Base class: remembers the constructor arguments for ``repr`` and FLOP tools.

    The formulas are the official code's, operation for operation; :mod:`net.cpu_speed` rewrites
    :meth:`_select` and :meth:`_ContextSum._weight` (and iAFF's forward) for MXNet's CPU kernels.
    """

    #: paper name of the module (used by repr and the docs)
    paper_name = ''

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def _select(self, F, x, y, w, scale, full=False):
        """The selection ``scale*Y*W + scale*X*(1-W)`` as the official code writes it; ``full``
        says that W has the shape of X (else it is N x C x 1 x 1 and broadcast)."""
        if scale != 1:
            y, x = scale * y, scale * x
        return F.broadcast_mul(y, w) + F.broadcast_mul(x, 1 - w)

    def __repr__(self):
        return '%s(channels=%d%s)' % (type(self).__name__, self.channels,
                                      ', r=%s' % self.r if getattr(self, 'r', None) else '')


class _ContextSum(_Fusion):
    """Shared machinery of the modules whose weight is sigmoid(L(.) + G(.))."""
    #: whether the branches named local_att / global_att start with global average pooling
    local_pool = False
    global_pool = True

    def _weight(self, F, t, local_att, global_att):
        """``sigmoid(L(t) (+) G(t))`` (Eq. 3), the (+) broadcasting a pooled branch."""
        return sigmoid(F, F.broadcast_add(local_att(t), global_att(t)))


# --------------------------------------------------------------------------------------
# MS-CAM (single input) -- Eq. 3
# --------------------------------------------------------------------------------------
class MSCAM(_ContextSum):
    """Multi-scale channel attention module, Eq. 3: ``X' = X * sigmoid(L(X) (+) g(X))``.

    L is the bottleneck local context of Eq. 2, g the same bottleneck after global average
    pooling; (+) broadcasts g over H x W.  ``r`` is the channel reduction ratio.
    """
    paper_name = 'MS-CAM'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        with self.name_scope():
            self.local_att = context(channels, inter, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.global_att = context(channels, inter, pool=True, norm_layer=norm_layer,
                                      norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x):
        return x * self._weight(F, x, self.local_att, self.global_att)


# --------------------------------------------------------------------------------------
# Table 4: context-agnostic baselines
# --------------------------------------------------------------------------------------
class DirectAdd(_Fusion):
    """Add (Table 1/4): ``Z = X + Y``.  Official ``DirectAddFuse``; no parameters."""
    paper_name = 'Add'

    def __init__(self, channels=0, r=None, **kwargs):
        super().__init__(channels, **kwargs)

    def hybrid_forward(self, F, x, y):
        return x + y


class Concat(_Fusion):
    """Concatenation (Table 1/4): ``Z = W [Y; X]`` -- BN then a 1x1 conv on the 2C channels.

    Official ``ConcatFuse``: child ``fuse`` = [0 BN(2C), 1 Conv1x1 2C->C (+bias)]; the code
    concatenates (residual-branch output, identity) = (Y, X) in that order.
    """
    paper_name = 'Concatenation'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        with self.name_scope():
            self.fuse = nn.HybridSequential(prefix='')
            self.fuse.add(_bn(2 * channels, norm_layer, norm_kwargs),
                          nn.Conv2D(channels, kernel_size=1, in_channels=2 * channels))

    def hybrid_forward(self, F, x, y):
        return self.fuse(F.concat(y, x, dim=1))


# --------------------------------------------------------------------------------------
# AFF and its scale ablations (Tables 3, 4)
# --------------------------------------------------------------------------------------
class _TwoBranchSelect(_ContextSum):
    """``Z = s * (W*Y + (1-W)*X)`` with ``W = sigmoid(A(X+Y) (+) B(X+Y))``."""
    scale = 2

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, pool=self.local_pool, **nk)
            self.global_att = context(channels, inter, pool=self.global_pool, **nk)

    def hybrid_forward(self, F, x, y):
        w = self._weight(F, x + y, self.local_att, self.global_att)
        return self._select(F, x, y, w, self.scale,
                            full=not (self.local_pool and self.global_pool))


class AFF(_TwoBranchSelect):
    """Attentional feature fusion, Eq. 4 ("Global + Local" in Table 3).

    Official ``ASKCFuse``: ``W = sigmoid(L(X+Y) (+) g(X+Y))`` (bottleneck MS-CAM, ratio r),
    ``Z = 2*W*Y + 2*(1-W)*X``.  Quirks: the **factor 2** (the author keeps the weights
    summing to 2 like X+Y, issues #3/#13), and W multiplies Y where Eq. 4 has M on X.
    """
    paper_name = 'AFF'


class GlobalGlobal(_TwoBranchSelect):
    """"Global + Global" of Table 3 / Fig. 4: AFF with both branches pooled.

    Official ``ResGlobGlobChaFuse``: the child named ``local_att`` also starts with GAP.
    """
    paper_name = 'Global+Global'
    local_pool = True


class LocalLocal(_TwoBranchSelect):
    """"Local + Local" of Table 3 / Fig. 4: AFF with no pooling in either branch.

    Official ``ResLocaLocaChaFuse`` (mode ``ResLocalLocaCha`` in the CIFAR block): the
    child named ``global_att`` has no GAP (its conv sits at index 0).
    """
    paper_name = 'Local+Local'
    global_pool = False


class AFFSingleLayer(_ContextSum):
    """AFF with single-layer C->C branches (no bottleneck; the weight count of r = 2).

    Official ``ResGlobLocaChaFuse``: ``local_att`` = [Conv, BN], ``global_att`` =
    [GAP, Conv, BN]; ``Z = 2*W*Y + 2*(1-W)*X``.  A candidate for Table 4's "AFF, r = 2"
    (the paper does not record which AFF fed Table 4; its AFF row equals Table 3's r = 4 row).
    """
    paper_name = 'AFF (1-layer)'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, **nk)
            self.global_att = context(channels, pool=True, **nk)

    def hybrid_forward(self, F, x, y):
        w = self._weight(F, x + y, self.local_att, self.global_att)
        return self._select(F, x, y, w, 2, full=True)


class IAFF(_ContextSum):
    """Iterative AFF, Eq. 5: the initial integration X (+) Y is itself an AFF.

    Official ``ResGlobLocaforGlobLocaChaFuse``: ``W1 = M1(X+Y)``,
    ``I = W1*Y + (1-W1)*X``, ``W2 = M2(I)``, ``Z = W2*Y + (1-W2)*X``; M1, M2 are bottleneck
    MS-CAMs (children ``local_att``/``global_att`` and ``local_att2``/``global_att2``).
    Quirk: **no factor 2** in either stage (unlike AFF; the author's oversight, issue #13).
    """
    paper_name = 'iAFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, **nk)
            self.global_att = context(channels, inter, pool=True, **nk)
            self.local_att2 = context(channels, inter, **nk)
            self.global_att2 = context(channels, inter, pool=True, **nk)

    def hybrid_forward(self, F, x, y):
        # official: xi = x*wei + residual*(1-wei), xo likewise with wei2
        w1 = self._weight(F, x + y, self.local_att, self.global_att)
        i = y * w1 + x * (1 - w1)
        w2 = self._weight(F, i, self.local_att2, self.global_att2)
        return y * w2 + x * (1 - w2)


# --------------------------------------------------------------------------------------
# Table 4: partially / fully context-aware modulation and refinement (1-layer branches)
# --------------------------------------------------------------------------------------
class _SingleLayerPair(_ContextSum):
    """Modules with 1-layer ``local_att`` [Conv, BN] and ``global_att`` [GAP, Conv, BN]."""

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, **nk)
            self.global_att = context(channels, pool=True, **nk)


class MSGAU(_SingleLayerPair):
    """MS-GAU, partially context-aware modulation (Table 4): ``Z = M(Y)*X + Y``.

    Official ``AYforXplusYAddFuse``; M has single-layer local and global branches.
    """
    paper_name = 'MS-GAU'

    def hybrid_forward(self, F, x, y):
        return self._weight(F, y, self.local_att, self.global_att) * x + y


class MSSE(_SingleLayerPair):
    """MS-SENet, partially context-aware refinement (Table 4): ``Z = X + M(Y)*Y``.

    Official ``XplusAYforYAddFuse``.
    """
    paper_name = 'MS-SE'

    def hybrid_forward(self, F, x, y):
        return x + self._weight(F, y, self.local_att, self.global_att) * y


class MSSA(_SingleLayerPair):
    """MS-SA, fully context-aware modulation (Table 4): ``Z = M(X+Y)*X + Y``.

    Official ``AXYforXplusYAddFuse``.
    """
    paper_name = 'MS-SA'

    def hybrid_forward(self, F, x, y):
        return self._weight(F, x + y, self.local_att, self.global_att) * x + y


class MSModulatedSum(_SingleLayerPair):
    """``Z = M(X+Y)*(X+Y)`` -- official ``AXYforXYAddFuse``; not a row of the paper."""
    paper_name = 'M(X+Y)(X+Y)'

    def hybrid_forward(self, F, x, y):
        t = x + y
        return self._weight(F, t, self.local_att, self.global_att) * t


# --------------------------------------------------------------------------------------
# Fig. 7 baselines: SENet, GAU, SKNet
# --------------------------------------------------------------------------------------
class SE(_Fusion):
    """SENet refinement (Table 1, Fig. 7): ``Z = X + G(Y)*Y``, G = global bottleneck + sigmoid.

    Official ``SEFuse``: ``global_att`` = [GAP, Conv C->C/r, BN, ReLU, Conv C/r->C, BN, Sigmoid].
    """
    paper_name = 'SENet'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        with self.name_scope():
            self.global_att = context(channels, _inter(channels, r), pool=True, tail='sigmoid',
                                      norm_layer=norm_layer, norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x, y):
        return x + F.broadcast_mul(y, self.global_att(y))


class GAU(_Fusion):
    """GAU modulation (Table 1, Fig. 7): ``Z = G(Y)*X + Y`` with a single-layer global G.

    Official ``GAUFuse``: ``global_att`` = [GAP, Conv C->C, BN, Sigmoid].
    """
    paper_name = 'GAU'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        with self.name_scope():
            self.global_att = context(channels, pool=True, tail='sigmoid',
                                      norm_layer=norm_layer, norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x, y):
        return F.broadcast_mul(x, self.global_att(y)) + y


class SK(_Fusion):
    """SKNet soft selection (Table 1, Fig. 7): softmax over the two inputs per channel.

    Official ``SKFuse`` (r fixed to 4): ``global_att`` = [GAP, Conv C->C/4, BN, ReLU,
    Conv C/4->2C, BN] on X+Y; the 2C logits are read as (N, 2, C), softmax over the pair
    gives (a0, a1); ``Z = 2*a0*Y + 2*a1*X`` (factor 2 as in AFF).
    """
    paper_name = 'SKNet'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        inter = _inter(channels, 4)
        with self.name_scope():
            g = nn.HybridSequential(prefix='')
            g.add(GlobalAvgPool(),
                  nn.Conv2D(inter, kernel_size=1, in_channels=channels),
                  _bn(inter, norm_layer, norm_kwargs), nn.Activation('relu'),
                  nn.Conv2D(2 * channels, kernel_size=1, in_channels=inter),
                  _bn(2 * channels, norm_layer, norm_kwargs))
            self.global_att = g

    def hybrid_forward(self, F, x, y):
        a = F.softmax(F.reshape(self.global_att(x + y), shape=(0, 2, -1, 1)), axis=1)
        a0 = F.reshape(F.slice_axis(a, axis=1, begin=0, end=1), shape=(0, -1, 1, 1))
        a1 = F.reshape(F.slice_axis(a, axis=1, begin=1, end=2), shape=(0, -1, 1, 1))
        return 2 * (F.broadcast_mul(y, a0) + F.broadcast_mul(x, a1))


# --------------------------------------------------------------------------------------
# Table S1: manners of fusing local and global contexts
# --------------------------------------------------------------------------------------
class HalfAFF(_Fusion):
    """Half-AFF (Table S1): local and global contexts concatenated after the first PWConv.

    Official ``HalfASKCFuse``: ``local_att`` = [Conv C->C/r, BN, ReLU], ``global_att`` =
    [GAP, Conv C->C/r, BN, ReLU], ``post`` = [Conv 2C/r->C, BN, Sigmoid];
    ``W = post([L; broadcast g])``, ``Z = 2*W*Y + 2*(1-W)*X``.
    The code broadcasts g as ``(L + g) - L``, as here.  On the CPU its training backward dies of a
    floating-point exception in MXNet 1.9.1's oneDNN (docs/pitfalls.md §11); :mod:`net.cpu_speed`
    works around it.
    """
    paper_name = 'Half-AFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, half=True, **nk)
            self.global_att = context(channels, inter, pool=True, half=True, **nk)
            self.post = _post(channels, 2 * inter, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x, y):
        t = x + y
        loc = self.local_att(t)
        glo = F.broadcast_sub(F.broadcast_add(loc, self.global_att(t)), loc)   # as the official code
        return self._select(F, x, y, self.post(self._concat(F, loc, glo)), 2, full=True)

    def _concat(self, F, loc, glo):
        return F.concat(loc, glo, dim=1)


def _post(channels, in_channels, norm_layer=None, norm_kwargs=None):
    seq = nn.HybridSequential(prefix='')
    seq.add(nn.Conv2D(channels, kernel_size=1, in_channels=in_channels),
            _bn(channels, norm_layer, norm_kwargs), nn.Activation('sigmoid'))
    return seq


class ConcatAFF(_Fusion):
    """Concat-AFF (Table S1): full local and global contexts concatenated, fused by a PWConv.

    Official ``ConcatASKCFuse``: bottleneck branches each followed by a ReLU, ``post`` =
    [Conv 2C->C, BN, Sigmoid]; ``W = post([L; broadcast g])``, ``Z = 2*W*Y + 2*(1-W)*X``.
    """
    paper_name = 'Concat-AFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, tail='relu', **nk)
            self.global_att = context(channels, inter, pool=True, tail='relu', **nk)
            self.post = _post(channels, 2 * channels, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x, y):
        t = x + y
        loc = self.local_att(t)
        glo = F.broadcast_like(self.global_att(t), loc)
        return self._select(F, x, y, self.post(F.concat(loc, glo, dim=1)), 2, full=True)


class RecursiveAFF(_ContextSum):
    """Recursive AFF (Table S1): local and global contexts are themselves fused by an MS-CAM.

    Official ``RASKCFuse`` (r fixed to 4): ``l = L(X+Y)``, ``g = G(X+Y)``,
    ``W2 = sigmoid(L2(l+g) (+) G2(l+g))``, ``W = sigmoid(W2*l + (1-W2)*g)``,
    ``Z = W*Y + (1-W)*X`` (no factor 2).
    """
    paper_name = 'Recursive AFF'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        inter = _inter(channels, 4)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, **nk)
            self.global_att = context(channels, inter, pool=True, **nk)
            self.local_att2 = context(channels, inter, **nk)
            self.global_att2 = context(channels, inter, pool=True, **nk)

    def hybrid_forward(self, F, x, y):
        t = x + y
        loc = self.local_att(t)
        glo = self.global_att(t)
        w2 = self._weight(F, F.broadcast_add(loc, glo), self.local_att2, self.global_att2)
        # W2*l + (1-W2)*g = g + W2*(l-g)
        w = sigmoid(F, F.broadcast_add(w2 * F.broadcast_sub(loc, glo), glo))
        return self._select(F, x, y, w, 1, full=True)


# --------------------------------------------------------------------------------------
# 806562e modules that are not rows of the paper (kept so every official mode builds)
# --------------------------------------------------------------------------------------
class _SingleAttentionSelect(_Fusion):
    """``W = attention(X+Y)`` (sigmoid inside), ``Z = 2*W*Y + 2*(1-W)*X``."""
    pool = False

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        with self.name_scope():
            self.attention = context(channels, channels, pool=self.pool, tail='sigmoid',
                                     norm_layer=norm_layer, norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x, y):
        return self._select(F, x, y, self.attention(x + y), 2, full=not self.pool)


class GlobalSelect(_SingleAttentionSelect):
    """Official ``ResGlobChaFuse``: single-scale global selection, full-width bottleneck."""
    paper_name = 'global selection'
    pool = True


class LocalSelect(_SingleAttentionSelect):
    """Official ``ResLocaChaFuse``: single-scale local selection, full-width bottleneck."""
    paper_name = 'local selection'


class _IterativeSingle(_Fusion):
    """Two single-scale 1-layer selection stages, both with the factor 2."""
    pool = False

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        name = 'global_att' if self.pool else 'local_att'
        with self.name_scope():
            setattr(self, name, context(channels, pool=self.pool, **nk))
            setattr(self, name + '2', context(channels, pool=self.pool, **nk))
        self._stages = name

    def hybrid_forward(self, F, x, y):
        first, second = getattr(self, self._stages), getattr(self, self._stages + '2')
        w1 = sigmoid(F, first(x + y))
        i = 2 * F.broadcast_add(x, F.broadcast_mul(w1, y - x))
        w2 = sigmoid(F, second(i))
        return 2 * F.broadcast_add(x, F.broadcast_mul(w2, y - x))


class IterativeGlobal(_IterativeSingle):
    """Official ``ResGlobforGlobChaFuse``: ``I = 2*W1*Y + 2*(1-W1)*X`` with W1 = sigmoid(G1(X+Y)),
    then ``Z = 2*W2*Y + 2*(1-W2)*X`` with W2 = sigmoid(G2(I))."""
    paper_name = 'iterative global'
    pool = True


class IterativeLocal(_IterativeSingle):
    """Official ``ResLocaforLocaChaFuse``: as :class:`IterativeGlobal` with local branches."""
    paper_name = 'iterative local'


class DepthwiseAFF(_TwoBranchSelect):
    """Official ``DepthASKCFuse``: AFF whose local branch uses depthwise (groups=C) 1x1 convs."""
    paper_name = 'depthwise AFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        _Fusion.__init__(self, channels, **kwargs)
        self.r = r
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, channels, groups=channels, **nk)
            self.global_att = context(channels, _inter(channels, r), pool=True, **nk)


class Depthwise4AFF(_ContextSum):
    """Official ``Depth4ASKCFuse``: four depthwise local branches,
    ``W = sigmoid(L1+L2+L3+L4 (+) G)``, ``Z = 2*W*Y + 2*(1-W)*X``."""
    paper_name = 'depthwise-4 AFF'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        self.r = r
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            for i in range(1, 5):
                setattr(self, 'local_att%d' % i, context(channels, channels, groups=channels, **nk))
            self.global_att = context(channels, _inter(channels, r), pool=True, **nk)

    def hybrid_forward(self, F, x, y):
        t = x + y
        s = self.local_att1(t) + self.local_att2(t) + self.local_att3(t) + self.local_att4(t)
        w = sigmoid(F, F.broadcast_add(s, self.global_att(t)))
        return self._select(F, x, y, w, 2, full=True)


class ReLUAFF(_TwoBranchSelect):
    """Official ``AddReLUASKCFuse``: AFF with a ReLU appended to both context branches."""
    paper_name = 'AFF + ReLU'

    def __init__(self, channels, r=4, norm_layer=None, norm_kwargs=None, **kwargs):
        _Fusion.__init__(self, channels, **kwargs)
        self.r = r
        inter = _inter(channels, r)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.local_att = context(channels, inter, tail='relu', **nk)
            self.global_att = context(channels, inter, pool=True, tail='relu', **nk)


class SharedConvAFF(_Fusion):
    """Official ``ConcatASKC``: ``S = shared_att(X+Y)`` ([Conv C->C, BN, ReLU]),
    ``W = sig(L(S) (+) g(S))`` with ``sig`` = [Conv C->C, BN, Sigmoid] (r fixed to 4),
    ``Z = 2*W*Y + 2*(1-W)*X``."""
    paper_name = 'shared-conv AFF'

    def __init__(self, channels, r=None, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(channels, **kwargs)
        inter = _inter(channels, 4)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.shared_att = context(channels, tail='relu', **nk)
            self.local_att = context(channels, inter, **nk)
            self.global_att = context(channels, inter, pool=True, **nk)
            self.sig = _post(channels, channels, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x, y):
        s = self.shared_att(x + y)
        w = self.sig(F.broadcast_add(self.local_att(s), self.global_att(s)))
        return self._select(F, x, y, w, 2, full=True)


# --------------------------------------------------------------------------------------
# the factory
# --------------------------------------------------------------------------------------
#: paper name -> class, for the short-skip (residual block) scenario
PAPER_FUSIONS = {
    'add': DirectAdd, 'concat': Concat, 'msgau': MSGAU, 'msse': MSSE, 'mssa': MSSA,
    'aff': AFF, 'iaff': IAFF, 'globalglobal': GlobalGlobal, 'locallocal': LocalLocal,
    'halfaff': HalfAFF, 'concataff': ConcatAFF, 'recursiveaff': RecursiveAFF,
    'se': SE, 'sk': SK, 'gau': GAU, 'aff1layer': AFFSingleLayer,
}

#: every official mode string / class name (806562e and HEAD) -> class
OFFICIAL_FUSIONS = {
    'DirectAdd': DirectAdd, 'Concat': Concat, 'ConcatFuse': Concat,
    'ASKCFuse': AFF, 'LCNASKCFuse': AFF,
    'ResGlobLocaforGlobLocaCha': IAFF,
    'ResGlobGlobCha': GlobalGlobal,
    'ResLocaLocaCha': LocalLocal, 'ResLocalLocaCha': LocalLocal,
    'ResGlobLocaCha': AFFSingleLayer,
    'ResGlobCha': GlobalSelect, 'ResLocaCha': LocalSelect,
    'ResGlobforGlobCha': IterativeGlobal, 'ResLocaforLocaCha': IterativeLocal,
    'AYforXplusY': MSGAU, 'XplusAYforY': MSSE, 'AXYforXplusY': MSSA, 'AXYforXY': MSModulatedSum,
    'SEFuse': SE, 'GAUFuse': GAU, 'SKFuse': SK,
    'HalfASKCFuse': HalfAFF, 'ConcatASKCFuse': ConcatAFF, 'RASKCFuse': RecursiveAFF,
    'DepthASKCFuse': DepthwiseAFF, 'Depth4ASKCFuse': Depthwise4AFF,
    'AddReLUASKCFuse': ReLUAFF, 'ConcatASKC': SharedConvAFF,
}
# the official class names end in "Fuse" where the mode string does not
for _mode, _cls in list(OFFICIAL_FUSIONS.items()):
    if not _mode.endswith('Fuse') and _mode not in ('Concat', 'ConcatASKC'):
        OFFICIAL_FUSIONS.setdefault(_mode + 'Fuse', _cls)
OFFICIAL_FUSIONS.update({'ResGlobLocaforGlobLocaChaFuse': IAFF, 'DirectAddFuse': DirectAdd,
                         'AYforXplusYAddFuse': MSGAU, 'XplusAYforYAddFuse': MSSE,
                         'AXYforXplusYAddFuse': MSSA, 'AXYforXYAddFuse': MSModulatedSum})

#: official modes that exist but cannot build (docs/official-code.md §1.4)
BROKEN_FUSIONS = {
    'twoconcataskc': 'TwoConcatASKC is broken in the official code (it concatenates an HxW local '
                     'map with a 1x1 global map, and two children share one prefix); use '
                     'ConcatASKCFuse (Concat-AFF) instead',
}


def _norm(name):
    return ''.join(ch for ch in str(name).lower() if ch.isalnum())


def _lookup():
    table = {}
    for key, cls in PAPER_FUSIONS.items():
        table[_norm(key)] = cls
    for key, cls in OFFICIAL_FUSIONS.items():
        table.setdefault(_norm(key), cls)
    # paper spellings
    for alias, key in (('msse', 'msse'), ('msenet', 'msse'), ('mssenet', 'msse'),
                       ('globallocal', 'aff'), ('iterativeaff', 'iaff'), ('senet', 'se'),
                       ('sknet', 'sk'), ('addition', 'add'), ('concatenation', 'concat'),
                       ('mssa', 'mssa'), ('msgau', 'msgau')):
        table[_norm(alias)] = PAPER_FUSIONS[key]
    return table


_TABLE = _lookup()


def fusion_names(official=True):
    """Paper names (and, with ``official``, every official mode string) accepted by get_fusion."""
    names = list(PAPER_FUSIONS)
    if official:
        names += sorted(OFFICIAL_FUSIONS)
    return names


def canonical_fusion(name):
    """The class a paper name or official mode string stands for (raises with the valid list)."""
    key = _norm(name)
    if key in BROKEN_FUSIONS:
        raise AFFError(BROKEN_FUSIONS[key])
    try:
        return _TABLE[key]
    except KeyError:
        raise unknown_name('fusion', name, fusion_names(), 'python -m utils.models --fusions',
                           shown=['paper names: ' + ' '.join(PAPER_FUSIONS)]) from None


#: the paper's three scenarios (Fig. 3), under their names and the spellings of utils.reproduce
SCENARIOS = {'short': 'short', 'resnet': 'short', 'long': 'long', 'fpn': 'long',
             'same': 'same', 'inception': 'same'}


def get_fusion(name, channels, r=None, scenario='short', **kwargs):
    """Build the fusion ``name`` for ``channels`` feature maps.

    ``name``: a paper name (``'aff'``, ``'iAFF'``, ``'Global+Global'``, ``'MS-GAU'`` ...) or
    an official mode string (``'ASKCFuse'``, ``'ResGlobLocaforGlobLocaCha'`` ...), matched
    case-, space- and punctuation-insensitively.  ``r``: reduction ratio; ``None`` keeps the
    module's default (4), as the official CIFAR block does; modules without r ignore it.
    ``scenario`` (:data:`SCENARIOS`): ``'short'`` (``'resnet'``, the default) -- a residual
    block's fusion, called ``fusion(X = identity, Y = residual branch)``; ``'long'``
    (``'fpn'``) -- the same modules, called ``fusion(X = low-level, Y = upsampled high-level)``
    as :class:`net.fpn.FPNLevel` does; ``'same'`` (``'inception'``) -- the same-layer module
    fusing an Inception module's 3x3 (X) and 5x5 (Y) branches,
    :func:`net.inception.same_layer_fusion` (the Table 3/4 rows and SKNet only).
    """
    kind = SCENARIOS.get(str(scenario).lower())
    if kind is None:
        raise AFFError('unknown fusion scenario %r; use short (residual blocks), long (FPN '
                       'levels) or same (Inception branches)' % (scenario,))
    if kind == 'same':
        from .inception import same_layer_fusion
        return same_layer_fusion(name, channels, r=r, **kwargs)
    cls = canonical_fusion(name)
    if r is not None:
        kwargs['r'] = r
    return cls(channels, **kwargs)
