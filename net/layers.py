"""Small parameterless layers with a fast path (switched by :func:`net.fusion.set_fast`)."""
from mxnet.gluon.block import HybridBlock

__all__ = ['GlobalAvgPool', 'sigmoid', 'blocks', 'set_pooling']


def blocks(block):
    """Every block inside ``block``, itself included (depth first)."""
    todo = [block]
    while todo:
        b = todo.pop()
        yield b
        todo.extend(reversed(list(b._children.values())))


def set_pooling(block, fast):
    """Switch every :class:`GlobalAvgPool` inside ``block`` to the mean (``fast=True``, for
    training) or to the Pooling operator (``fast=False``: the fastest forward, for inference and
    the official baseline).  Hybridize again afterwards.  Returns the number switched."""
    n = 0
    for b in blocks(block):
        if isinstance(b, GlobalAvgPool):
            b.fast = bool(fast)
            n += 1
    return n


def sigmoid(F, x):
    """The logistic function as the official ``nn.Activation('sigmoid')`` computes it (oneDNN's
    eltwise kernel on the CPU; ``F.sigmoid`` is a much slower scalar loop, README pitfall 18)."""
    return F.Activation(x, act_type='sigmoid')


class GlobalAvgPool(HybridBlock):
    """Global average pooling N x C x H x W -> N x C x 1 x 1, the function of ``nn.GlobalAvgPool2D``.

    ``fast`` (default): a mean over H and W.  ``fast=False``: the Pooling operator that
    ``nn.GlobalAvgPool2D`` (and the official code) uses -- whose *forward* is the faster one, so
    inference paths switch back to it (:func:`set_pooling`).  Why: in MXNet 1.9.1 the oneDNN
    global-average-pooling *backward* is pathologically slow on inputs that come out of oneDNN layers
    -- 35 % of the official-structure AFF-ResNet-20 b1 training step, and it slows the BatchNorm
    backward after it (``python -m utils.bench_profile --model cifar_aff_resnet20_b1 --baseline``;
    README pitfall 16, docs/performance.md).
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
