"""Layers the host networks share: global average pooling and grouped convolutions as the official
code builds them (:mod:`net.cpu_speed` rewrites both for CPU training), the official sigmoid, and a
walk over a block's children."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['GlobalAvgPool', 'GroupedConv2D', 'sigmoid', 'blocks']


def blocks(block):
    """Every block inside ``block``, itself included (depth first)."""
    todo = [block]
    while todo:
        b = todo.pop()
        yield b
        todo.extend(reversed(list(b._children.values())))


def sigmoid(F, x):
    """The logistic function as the official ``nn.Activation('sigmoid')`` computes it (oneDNN's
    eltwise kernel on the CPU; ``F.sigmoid`` is a much slower scalar loop, docs/pitfalls.md §6)."""
    return F.Activation(x, act_type='sigmoid')


class GlobalAvgPool(HybridBlock):
    """Global average pooling N x C x H x W -> N x C x 1 x 1: the Pooling operator that
    ``nn.GlobalAvgPool2D`` (and the official code) uses.  Parameterless; its own class so that
    :mod:`net.cpu_speed` can find it (CPU training computes it as a mean)."""

    def hybrid_forward(self, F, x):
        return F.Pooling(x, kernel=(1, 1), pool_type='avg', global_pool=True, layout='NCHW')


class GroupedConv2D(nn.Conv2D):
    """``nn.Conv2D`` with ``groups`` (ResNeXt's 3x3 conv); same parameter names.  Its own class so
    that :mod:`net.cpu_speed` can find it; ``in_channels`` must be given (the speed layer decides
    from the group width)."""

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0), groups=1,
                 in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, groups=groups,
                         in_channels=in_channels, **kwargs)
        self.groups = groups
        self.group_width = in_channels // groups if in_channels else 0
