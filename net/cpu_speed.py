"""The CPU speed layer: a built network rewritten for MXNet 1.9.1's CPU (oneDNN) kernels.

The modules of :mod:`net.fusion` and :mod:`net.layers` compute the official formulas operation for
operation -- what open-aff ran on its GPUs.  On the CPU several of those operations hit slow kernels
(docs/pitfalls.md §4, §6, §7, §11; docs/performance.md), so the scripts, the benchmark, ``--eval`` and
Grad-CAM rewrite the network before hybridizing it, **on CPU contexts only**
(:func:`apply`; GPU contexts keep the official structure):

* fusion tails with fewer full-size passes: ``Z = s*(X + W*(Y-X))`` instead of
  ``s*Y*W + s*X*(1-W)`` (``z + z`` for s = 2: MXNet's CPU ``_mul_scalar`` is slow; bit-identical),
  element-wise rather than broadcast kernels where W has the shape of X, and iAFF's two stages
  sharing ``Y - X``;
* the (+) of Eq. 3 (a pooled branch added to a map) as :func:`add_hw`, a rank-1 ``dot`` plus an
  element-wise add, instead of the slow generic ``broadcast_add`` and its reduction;
* Half-AFF's concatenation copied into the plain layout before its post conv (else its training
  backward dies of a floating-point exception inside oneDNN -- also in the official structure);
* training only: global average pooling as a mean over H x W, :func:`mean_hw` (the oneDNN
  Pooling *backward* is pathologically slow; its forward is the fastest, so inference keeps it),
  and grouped convs of group width 4/8/12 with plain-layout copies around them (a training-mode
  BatchNorm on oneDNN's blocked layout of such a conv is pathologically slow).

Every rewrite is the same function with the same parameters (a class swap of the block: names,
shapes and checkpoints are untouched); :func:`remove` restores the official classes (``export``
goes through them, so saved symbol files need nothing of this module).  Tests run the golden
fixtures through both.
"""
import mxnet as mx

from . import fusion as _fu
from . import kernels
from .layers import GlobalAvgPool, GroupedConv2D, blocks, sigmoid

__all__ = ['add_hw', 'mean_hw', 'select', 'apply', 'remove', 'rewritten', 'describe']


def add_hw(F, x, v):
    """``x + v`` with ``v`` (N x C x 1 x 1) repeated over the H x W of ``x`` (N x C x H x W): the
    (+) of Eq. 3, as a rank-1 matrix product with a row of ones plus an element-wise add -- the
    same values (every element is ``x + v * 1``).  Why: MXNet 1.9.1's CPU ``broadcast_add`` of a
    per-channel vector to a map is a slow generic broadcast kernel, and so is its backward's
    reduction; this is faster although it writes one more full-size tensor (AFF / iAFF-ResNet-20 b1
    training step 7 % / 6 % faster, medians of 25 interleaved steps; inference +3 %, within noise)."""
    flat, ones = _flat_ones(F, x)
    return F.reshape_like(flat + F.dot(F.reshape(v, shape=(-1, 1)), ones), x)


def _flat_ones(F, x):
    """``x`` (N x C x H x W) as an (N*C) x (H*W) matrix, and a 1 x (H*W) row of ones (no gradient)."""
    flat = F.reshape(x, shape=(-3, -1))
    return flat, F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1))


def mean_hw(F, x):
    """Global average pooling of ``x`` (N x C x H x W) to N x C x 1 x 1 as a matrix-vector product
    with a row of 1/(H*W): the same mean, summed by BLAS.  Why: MXNet 1.9.1's CPU ``mean`` over
    H and W is a generic reduction, and its backward a generic broadcast; forward + backward this
    is 1.1-1.6x faster (``python -m utils.bench_ops``, docs/performance.md).  The row of weights
    gets no gradient (BlockGrad)."""
    flat, ones = _flat_ones(F, x)
    row = F.BlockGrad(F.broadcast_div(ones, F.sum(ones, axis=1, keepdims=True)))
    sums = F.reshape_like(F.dot(flat, row, transpose_b=True), x,         # N x C x 1
                          lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
    return F.expand_dims(sums, axis=3)


# ------------------------------------------------------------------------------- the rewrites
def select(F, x, y, w, scale, full=False):
    """The fewer-pass selection ``scale*(x + w*(y - x))`` (``z + z`` for scale 2; ``full``: w has the
    shape of x, so element-wise kernels)."""
    out = x + (w * (y - x) if full else F.broadcast_mul(w, y - x))
    if scale == 2:
        return out + out
    return out * scale if scale != 1 else out


class _FastSelect(object):
    """Mixin: the fewer-pass selection and, for the context-sum modules, the (+) as add_hw."""
    cpu_speed = True

    def _select(self, F, x, y, w, scale, full=False):
        return select(F, x, y, w, scale, full)

    def _weight(self, F, t, local_att, global_att):
        loc, glo = local_att(t), global_att(t)
        if self.global_pool and not self.local_pool:
            return sigmoid(F, add_hw(F, loc, glo))
        return sigmoid(F, F.broadcast_add(loc, glo))


class _FastIAFF(_FastSelect):
    def hybrid_forward(self, F, x, y):
        d = y - x                                   # shared by both stages
        w1 = self._weight(F, x + y, self.local_att, self.global_att)
        w2 = self._weight(F, x + w1 * d, self.local_att2, self.global_att2)
        return x + w2 * d


class _KernelAFF(_FastSelect):
    """AFF-form tails (W = sigmoid(L (+) g), Z = s*(W*Y + (1-W)*X)) through the fused operator."""
    fused_kernel = True
    tail_scale = 2

    def hybrid_forward(self, F, x, y):
        t = x + y
        return kernels.select(F, x, y, self.local_att(t), self.global_att(t), self.tail_scale)


class _KernelIAFF(_FastSelect):
    fused_kernel = True

    def hybrid_forward(self, F, x, y):
        t = x + y
        i = kernels.select(F, x, y, self.local_att(t), self.global_att(t), 1)
        return kernels.select(F, x, y, self.local_att2(i), self.global_att2(i), 1)


class _KernelMSCAM(_FastSelect):
    fused_kernel = True

    def hybrid_forward(self, F, x):
        return kernels.mscam(F, x, self.local_att(x), self.global_att(x))


#: modules whose tail is the fused operator's form (L full-size, g pooled), -> the kernel class
_KERNEL_TAILS = ((_fu.IAFF, _KernelIAFF), (_fu.MSCAM, _KernelMSCAM),
                 (_fu.AFFSingleLayer, _KernelAFF), (_fu.AFF, _KernelAFF),
                 (_fu.DepthwiseAFF, _KernelAFF), (_fu.ReLUAFF, _KernelAFF))


class _FastHalfAFF(_FastSelect):
    def _concat(self, F, loc, glo):
        # a plain-layout copy of the concatenation: without it the training backward of the post
        # conv dies of a floating-point exception in MXNet 1.9.1's oneDNN (docs/pitfalls.md §11)
        return F.slice_axis(F.concat(loc, glo, dim=1), axis=1, begin=0, end=None)


class _MeanPool(object):
    """Global average pooling as a mean over H and W (training): :func:`mean_hw`."""
    cpu_speed = True

    def hybrid_forward(self, F, x):
        return mean_hw(F, x)


class _PlainLayoutGroupedConv(object):
    """A grouped conv whose input and output are copied into MXNet's plain NCHW layout (training):
    the slice's backward writes the input gradient in plain layout, the reshape the output."""
    cpu_speed = True

    def hybrid_forward(self, F, x, weight, bias=None):
        x = F.slice_axis(x, axis=1, begin=0, end=None)
        return F.reshape(super().hybrid_forward(F, x, weight, bias), shape=(0, 0, 0, 0))


def _slow_layout(conv):
    """Whether oneDNN lays this grouped conv out slowly for a training-mode BatchNorm (group
    widths 4, 8, 12: ResNeXt 32x4d's first two stages; 16 and 32 are not affected)."""
    w = conv.group_width
    return conv.groups > 1 and w > 1 and w % 16 != 0


#: fusions whose forward has neither a selection nor a context sum to rewrite
_NOTHING_TO_REWRITE = (_fu.DirectAdd, _fu.Concat, _fu.SE, _fu.GAU, _fu.SK, _fu._IterativeSingle)

_CLASSES = {}


def _fast_class(cls, mixin):
    key = (cls, mixin)
    if key not in _CLASSES:
        _CLASSES[key] = type('CPU' + cls.__name__, (mixin, cls),
                             {'__doc__': 'CPU speed layer over :class:`%s.%s`.'
                                         % (cls.__module__, cls.__name__),
                              '_official_class': cls})
    return _CLASSES[key]


def _rewrite_of(block, training, fused):
    """The speed-layer class for ``block``, or None."""
    cls = type(block)
    if getattr(cls, 'cpu_speed', False):
        return None
    if fused:
        for official, kernel_cls in _KERNEL_TAILS:
            if type(block) is official:     # exactly: subclasses may change the branches
                return _fast_class(cls, kernel_cls)
    if isinstance(block, _fu.IAFF):
        return _fast_class(cls, _FastIAFF)
    if isinstance(block, _fu.HalfAFF):
        return _fast_class(cls, _FastHalfAFF)
    if isinstance(block, _fu._Fusion) and not isinstance(block, _NOTHING_TO_REWRITE):
        return _fast_class(cls, _FastSelect)
    if training and isinstance(block, GlobalAvgPool):
        return _fast_class(cls, _MeanPool)
    if training and isinstance(block, GroupedConv2D) and _slow_layout(block):
        return _fast_class(cls, _PlainLayoutGroupedConv)
    return None


def rewritten(block):
    """The blocks inside ``block`` that currently run a speed-layer class."""
    return [b for b in blocks(block) if getattr(type(b), 'cpu_speed', False)]


def remove(block):
    """Restore the official class of every rewritten block; returns how many.  Hybridize again."""
    n = 0
    for b in rewritten(block):
        b.__class__ = type(b)._official_class
        n += 1
    return n


def describe(block):
    """``{kind: count}`` of the rewritten blocks (kind: fusion, pooling, grouped conv)."""
    out = {}
    for b in rewritten(block):
        kind = ('fusion' if isinstance(b, _fu._Fusion) else
                'mean pooling' if isinstance(b, GlobalAvgPool) else 'plain-layout grouped conv')
        out[kind] = out.get(kind, 0) + 1
    return out


def apply(block, ctx, training=True, fused=True):
    """Rewrite ``block`` for the CPU when every context of ``ctx`` (a Context or a list) is a CPU;
    returns one sentence for the log.  ``training``: also the training-only rewrites (mean pooling,
    plain-layout grouped convs).  ``fused``: the AFF / iAFF / MS-CAM tails through the fused C++
    operator (:mod:`net.kernels`) when it is built, loaded and allowed (:func:`net.kernels.may_fuse`:
    no parameter with ``grad_req='add'``, no ``MXNET_EXEC_ENABLE_ADDTO``) -- else the pure path, and
    the sentence says why.  Call before hybridizing and again after changing a ``grad_req``;
    idempotent; a second call with ``training=False`` first removes the training-only rewrites."""
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    if not all(isinstance(c, mx.Context) and c.device_type == 'cpu' for c in ctx):
        n = remove(block)
        return ('GPU context: the official module structure%s (MXNet\'s own pointwise fusion: '
                'MXNET_USE_FUSION=1, its default)' % (' (%d CPU rewrites removed)' % n if n else ''))
    kernel = kernels.may_fuse(block.collect_params()) if fused else None
    for b in rewritten(block):      # the kernel choice and the training rewrites may change
        if isinstance(b, _fu._Fusion) or not training:
            b.__class__ = type(b)._official_class
    for b in blocks(block):
        cls = _rewrite_of(b, training, bool(kernel))
        if cls is not None:
            b.__class__ = cls
    counts = describe(block)
    if not counts:
        return 'CPU speed layer: nothing to rewrite'
    n_kernel = sum(1 for b in rewritten(block) if getattr(type(b), 'fused_kernel', False))
    if kernel is None:
        how = 'fused kernel not asked for'
    elif kernel:
        how = 'fused kernel on %d tail(s): %s' % (n_kernel, kernel.reason)
    else:
        how = 'fused kernel off, pure path: %s' % kernel.reason
    return 'CPU speed layer (net.cpu_speed): %s; %s' % (', '.join(
        '%d %s' % (n, kind) for kind, n in sorted(counts.items())), how)
