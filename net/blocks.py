"""Residual blocks whose short-skip addition is a fusion module (paper Fig. 3, "AFF-ResBlock").

Each block calls ``attention(shortcut, body)``: X = the identity / projected shortcut,
Y = the residual-branch output (paper notation, see :mod:`net.fusion`).  The official code
passes them the other way round as ``attention(body, shortcut)`` and names its arguments
accordingly; the fusion modules reproduce the official formula under this swap.

Child names and Sequential indices are the official ones (docs/official-code.md §2.1, §3.3), so official
checkpoints load unchanged.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .fusion import DirectAdd, get_fusion
from .layers import GroupedConv2D

__all__ = ['PreActBasicBlock', 'BottleneckV1b', 'ResNeXtBlock', 'make_fusion']


def make_fusion(fusion, channels, r=None, norm_layer=None, norm_kwargs=None):
    """A fusion module from a name, a class, or a ``callable(channels)``."""
    if isinstance(fusion, str):
        extra = {} if norm_layer is None else dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        return get_fusion(fusion, channels, r=r, **extra)
    if isinstance(fusion, type) and r is not None:
        return fusion(channels, r=r)
    return fusion(channels)


def _norm(channels, norm_layer, norm_kwargs, **extra):
    kwargs = dict(norm_kwargs or {})
    kwargs.update(extra)
    return (norm_layer or nn.BatchNorm)(in_channels=channels, **kwargs)


def conv3x3(in_channels, channels, stride):
    """The plain 3x3 convolution of the CIFAR hosts (no bias)."""
    return nn.Conv2D(channels, 3, stride, 1, use_bias=False, in_channels=in_channels)


def _avg_pool(stride):
    # ceil_mode / count_include_pad as the official avg_down path (no effect at even sizes)
    return nn.AvgPool2D(pool_size=stride, strides=stride, ceil_mode=True, count_include_pad=False)


class PreActBasicBlock(HybridBlock):
    """Pre-activation basic block of the CIFAR hosts (official ``AFFResBlockV2`` /
    ``ResBlockV2ASKC``).

    ``resfwd`` = [BN, ReLU, Conv3x3(stride), BN, ReLU, Conv3x3]; ``downsample`` = [] or the
    projection of the **raw** block input (not the pre-activated one, unlike GluonCV's
    ``CIFARBasicBlockV2``): ``era='head'`` [AvgPool(stride), Conv1x1], ``era='paper'``
    [Conv1x1(stride)], neither with BN.  ``Z = attention(X=shortcut, Y=resfwd(x))`` with no
    ReLU after the fusion.  ``conv(in_channels, channels, stride)`` builds the two convolutions
    (default: a plain 3x3; :mod:`net.inception` passes its fused Inception convolution).
    """

    def __init__(self, in_channels, channels, stride, fusion, downsample=False, era='head',
                 r=None, norm_layer=None, norm_kwargs=None, conv=None, **kwargs):
        super().__init__(**kwargs)
        conv = conv or conv3x3
        with self.name_scope():
            self.resfwd = nn.HybridSequential(prefix='')
            self.resfwd.add(
                _norm(in_channels, norm_layer, norm_kwargs), nn.Activation('relu'),
                conv(in_channels, channels, stride),
                _norm(channels, norm_layer, norm_kwargs), nn.Activation('relu'),
                conv(channels, channels, 1))
            self.downsample = nn.HybridSequential(prefix='')
            if downsample:
                if era == 'head':
                    self.downsample.add(_avg_pool(stride),
                                        nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels))
                else:
                    self.downsample.add(nn.Conv2D(channels, 1, stride, use_bias=False,
                                                  in_channels=in_channels))
            self.attention = make_fusion(fusion, channels, r, norm_layer, norm_kwargs)
        self._project = bool(downsample)

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self._project else x
        return self.attention(shortcut, self.resfwd(x))


class BottleneckV1b(HybridBlock):
    """ResNet-V1b bottleneck with fused skip (official ``AFFBottleneck`` /
    ``BottleneckV1bASKC``): stride on the 3x3 conv,
    ``Z = ReLU(attention(X=shortcut, Y=bn3(conv3(...))))``.

    ``last_gamma=True`` initialises bn3's gamma to 0 (the ``--last-gamma`` of every
    official ImageNet ResNet run).  ``downsample`` is a ready block or None.
    ``conv(in_channels, channels, stride)`` replaces the 3x3 conv (:mod:`net.acmix` passes
    its ACmix operator); default the plain (dilated) 3x3.
    """

    def __init__(self, in_channels, planes, stride, fusion, downsample=None, dilation=1,
                 previous_dilation=1, last_gamma=False, r=16, norm_layer=None, norm_kwargs=None,
                 conv=None, **kwargs):
        super().__init__(**kwargs)
        out = planes * 4
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, 1, use_bias=False, in_channels=in_channels)
            self.bn1 = _norm(planes, norm_layer, norm_kwargs)
            self.relu1 = nn.Activation('relu')
            if conv is None:
                self.conv2 = nn.Conv2D(planes, 3, stride, dilation, dilation, use_bias=False,
                                       in_channels=planes)
            else:
                self.conv2 = conv(planes, planes, stride)
            self.bn2 = _norm(planes, norm_layer, norm_kwargs)
            self.relu2 = nn.Activation('relu')
            self.conv3 = nn.Conv2D(out, 1, use_bias=False, in_channels=planes)
            extra = dict(gamma_initializer='zeros') if last_gamma else {}
            self.bn3 = _norm(out, norm_layer, norm_kwargs, **extra)
            self.relu3 = nn.Activation('relu')
            self.downsample = downsample
            self.attention = make_fusion(fusion, out, r, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        body = self.relu1(self.bn1(self.conv1(x)))
        body = self.relu2(self.bn2(self.conv2(body)))
        body = self.bn3(self.conv3(body))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu3(self.attention(shortcut, body))


class ResNeXtBlock(HybridBlock):
    """ResNeXt bottleneck with fused skip (official ``AFFResNeXtBlock`` / ``ResNeXtBlockASKC``).

    ``D = channels * bottleneck_width // 64``, group width ``cardinality * D``; ``body`` =
    [Conv1x1, BN, ReLU, grouped Conv3x3(stride), BN, ReLU, Conv1x1 -> 4*channels, BN].
    Quirk (inherited by the official code from GluonCV): ``last_gamma`` is **inverted** --
    False (the default, and what every official script used) initialises the last BN's gamma
    to 0, True leaves it at 1.  ``downsample``: avg_down [AvgPool, Conv1x1, BN] or
    [Conv1x1(stride), BN].  ``Z = ReLU(attention(X=shortcut, Y=body))``.
    """

    def __init__(self, in_channels, channels, cardinality, bottleneck_width, stride, fusion,
                 downsample=False, avg_down=False, last_gamma=False, use_se=False, r=16,
                 norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        d = int(channels * bottleneck_width // 64)
        group_width = cardinality * d
        out = channels * 4
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            extra = {} if last_gamma else dict(gamma_initializer='zeros')
            self.body.add(
                nn.Conv2D(group_width, 1, use_bias=False, in_channels=in_channels),
                _norm(group_width, norm_layer, norm_kwargs), nn.Activation('relu'),
                GroupedConv2D(group_width, 3, stride, 1, groups=cardinality, use_bias=False,
                              in_channels=group_width),
                _norm(group_width, norm_layer, norm_kwargs), nn.Activation('relu'),
                nn.Conv2D(out, 1, use_bias=False, in_channels=group_width),
                _norm(out, norm_layer, norm_kwargs, **extra))
            if use_se:
                self.se = nn.HybridSequential(prefix='')
                self.se.add(nn.Conv2D(channels // 4, 1, in_channels=out), nn.Activation('relu'),
                            nn.Conv2D(out, 1, in_channels=channels // 4), nn.Activation('sigmoid'))
            else:
                self.se = None
            if downsample:
                self.downsample = nn.HybridSequential(prefix='')
                if avg_down:
                    self.downsample.add(_avg_pool(stride),
                                        nn.Conv2D(out, 1, use_bias=False, in_channels=in_channels))
                else:
                    self.downsample.add(nn.Conv2D(out, 1, stride, use_bias=False,
                                                  in_channels=in_channels))
                self.downsample.add(_norm(out, norm_layer, norm_kwargs))
            else:
                self.downsample = None
            self.attention = make_fusion(fusion, out, r, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        body = self.body(x)
        if self.se is not None:
            body = F.broadcast_mul(body, self.se(F.contrib.AdaptiveAvgPooling2D(body, output_size=1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.Activation(self.attention(shortcut, body), act_type='relu')


def stage_fusion(fusion, stage, start_layer):
    """The fusion of stage ``stage`` (1-based): stages before ``start_layer`` add (official rule)."""
    return fusion if stage >= start_layer else DirectAdd
