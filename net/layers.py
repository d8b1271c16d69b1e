"""Layers with a fast training path (switched by :func:`net.fusion.set_fast` and, for inference,
:func:`set_train_path`); same parameters and function as the Gluon layers they replace."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['GlobalAvgPool', 'GroupedConv2D', 'sigmoid', 'add_hw', 'blocks', 'set_train_path']


def blocks(block):
    """Every block inside ``block``, itself included (depth first)."""
    todo = [block]
    while todo:
        b = todo.pop()
        yield b
        todo.extend(reversed(list(b._children.values())))


def set_train_path(block, fast):
    """Switch every :class:`GlobalAvgPool` (mean or Pooling) and every :class:`GroupedConv2D`
    (layout reorder or none) inside ``block`` to its training fast path (``fast=True``) or off
    (``fast=False``: the official layers -- for the baseline, and for inference, where the off
    path is the faster one).  Hybridize again afterwards.  Returns the number switched."""
    n = 0
    for b in blocks(block):
        if isinstance(b, (GlobalAvgPool, GroupedConv2D)):
            b.fast = bool(fast)
            n += 1
    return n


def sigmoid(F, x):
    """The logistic function as the official ``nn.Activation('sigmoid')`` computes it (oneDNN's
    eltwise kernel on the CPU; ``F.sigmoid`` is a much slower scalar loop, docs/pitfalls.md §6)."""
    return F.Activation(x, act_type='sigmoid')


def add_hw(F, x, v):
    """``x + v`` with ``v`` (N x C x 1 x 1) repeated over the H x W of ``x`` (N x C x H x W): the
    (+) of Eq. 3, as a rank-1 matrix product with a row of ones plus an element-wise add -- the
    same values (every element is ``x + v * 1``).  Why: MXNet 1.9.1's CPU ``broadcast_add`` of a
    per-channel vector to a map is a slow generic broadcast kernel, and so is its backward's
    reduction; this is faster although it writes one more full-size tensor (AFF / iAFF-ResNet-20 b1
    training step 7 % / 6 % faster, medians of 25 interleaved steps; inference +3 %, within noise)."""
    flat = F.reshape(x, shape=(-3, -1))                                  # (N*C) x (H*W)
    ones = F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1))       # 1 x (H*W), no gradient
    return F.reshape_like(flat + F.dot(F.reshape(v, shape=(-1, 1)), ones), x)


class GlobalAvgPool(HybridBlock):
    """Global average pooling N x C x H x W -> N x C x 1 x 1, the function of ``nn.GlobalAvgPool2D``.

    ``fast`` (default): a mean over H and W.  ``fast=False``: the Pooling operator that
    ``nn.GlobalAvgPool2D`` (and the official code) uses -- whose *forward* is the faster one, so
    inference paths switch back to it (:func:`set_train_path`).  Why: in MXNet 1.9.1 the oneDNN
    global-average-pooling *backward* is pathologically slow on inputs that come out of oneDNN layers
    -- 35 % of the official-structure AFF-ResNet-20 b1 training step, and it slows the BatchNorm
    backward after it (``python -m utils.bench_profile --model cifar_aff_resnet20_b1 --baseline``;
    docs/pitfalls.md §4, docs/performance.md).
    Parameterless, so checkpoints do not see the swap.
    """

    def __init__(self, fast=True, **kwargs):
        super().__init__(**kwargs)
        self.fast = fast

    def hybrid_forward(self, F, x):
        if self.fast:
            return F.mean(x, axis=(2, 3), keepdims=True)
        return F.Pooling(x, kernel=(1, 1), pool_type='avg', global_pool=True, layout='NCHW')

    def __repr__(self):
        return '%s(fast=%s)' % (type(self).__name__, self.fast)


class GroupedConv2D(nn.Conv2D):
    """``nn.Conv2D`` with ``groups`` (ResNeXt's 3x3 conv); same parameter names (alias ``conv``).

    ``fast`` (default) and a group width that is not a multiple of 16 (ResNeXt 32x4d's first two
    stages: 4 and 8): the conv's input goes through a full ``slice_axis`` and its output through a
    reshape, which hand the BatchNorm before it (backward, through the ReLU) and the one after it
    MXNet's plain NCHW layout.  Why: in MXNet 1.9.1 on the CPU a training-mode BatchNorm on the
    blocked layout oneDNN gives such a conv's input gradient (and, for widths 4 and 12, its
    output) is pathologically slow.  [conv1x1, BN, ReLU, this conv, BN, ReLU] forward + backward,
    32 groups: 16 x 128 x 32 x 32 (width 4) 374 -> 83 ms; 16 x 256 x 16 x 16 (width 8) 91 -> 21 ms,
    stride 2 from 32 x 32 302 -> 67 ms; widths 16 and 32 are not affected (the copies only cost
    there).  docs/pitfalls.md §7, docs/performance.md.  Inference after oneDNN folds the BatchNorm
    into the conv is not affected either, so inference switches it off (:func:`set_train_path`).
    Same function, no parameters added; ``in_channels`` must be given.
    """

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0), groups=1,
                 in_channels=0, fast=True, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, groups=groups,
                         in_channels=in_channels, **kwargs)
        self.fast = fast
        width = in_channels // groups if in_channels else 0
        #: whether this conv's group width is one oneDNN lays out slowly for BatchNorm
        self.reorders = groups > 1 and width > 1 and width % 16 != 0

    def hybrid_forward(self, F, x, weight, bias=None):
        if not (self.fast and self.reorders):
            return super().hybrid_forward(F, x, weight, bias)
        # the slice's backward writes the input gradient in plain layout; the reshape the output
        x = F.slice_axis(x, axis=1, begin=0, end=None)
        return F.reshape(super().hybrid_forward(F, x, weight, bias), shape=(0, 0, 0, 0))
