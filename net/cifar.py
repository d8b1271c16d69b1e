"""CIFAR hosts: pre-activation ResNet ("ResNet-20-b", AFF-ResNet-32) and ResNeXt
(docs/official-code.md §2.2-2.3).

One builder per host; ``era`` selects the official code version:

* ``'head'`` (open-aff HEAD, the released checkpoints): the pre-activation ResNet projects
  the shortcut with [AvgPool, Conv1x1]; the ResNeXt projects with [AvgPool, Conv1x1, BN]
  (avg_down) and honours ``start_layer``;
* ``'paper'`` (commit 806562e, the submitted paper's Tables 3/4/S1): [Conv1x1(stride)] and
  [Conv1x1(stride), BN]; its ResNeXt host fused every stage (AFF hard-coded).
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .blocks import PreActBasicBlock, ResNeXtBlock, conv3x3, stage_fusion, _norm
from .errors import AFFError
from .layers import GlobalAvgPool

__all__ = ['CIFARPreActResNet', 'CIFARResNeXt']

ERAS = ('head', 'paper')


def _check_era(era):
    if era not in ERAS:
        raise AFFError('unknown era %r; use one of %s' % (era, ', '.join(ERAS)))


class CIFARPreActResNet(HybridBlock):
    """Pre-activation ResNet for 32x32 inputs (official ``CIFARAFFResNet`` / ``ResNet110V2ASKC``).

    ``features`` = [data BN (no affine), stem, stage1..3, BN, ReLU, GAP, Flatten]; ``output`` =
    Dense(classes).  ``layers``: blocks per stage (b); ``channels``: [stem, stage1, stage2,
    stage3] widths; stage strides 1, 2, 2; a stage's first block projects when the width
    changes.  Stages numbered below ``start_layer`` (1-based) use plain addition.  Depth is
    ``2 * sum(layers) + 2``.  ``deep_stem`` (HEAD only): three 3x3 convs instead of one.
    ``conv(in_channels, channels, stride)``: the stem and block convolutions (default a plain
    3x3; the Inception-ResNet host of :mod:`net.inception` passes its fused convolution).
    """

    def __init__(self, fusion, layers, channels, classes=100, start_layer=1, era='head',
                 deep_stem=False, r=None, norm_layer=None, norm_kwargs=None, conv=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check_era(era)
        if len(layers) != 3 or len(channels) != 4:
            raise AFFError('CIFAR ResNet needs 3 stage depths and 4 widths, got layers=%s '
                           'channels=%s' % (list(layers), list(channels)))
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            f = self.features
            f.add(_norm(3, norm_layer, norm_kwargs, scale=False, center=False))
            if deep_stem:
                half = channels[0] // 2
                f.add(nn.Conv2D(half, 3, 1, 1, use_bias=False, in_channels=3),
                      _norm(half, **nk), nn.Activation('relu'),
                      nn.Conv2D(half, 3, 1, 1, use_bias=False, in_channels=half),
                      _norm(half, **nk), nn.Activation('relu'),
                      nn.Conv2D(channels[0], 3, 1, 1, use_bias=False, in_channels=half))
            else:
                f.add((conv or conv3x3)(3, channels[0], 1))
            in_channels = channels[0]
            for i, (n, width) in enumerate(zip(layers, channels[1:])):
                stride = 1 if i == 0 else 2
                stage = nn.HybridSequential(prefix='stage%d_' % (i + 1))
                with stage.name_scope():
                    for j in range(n):
                        stage.add(PreActBasicBlock(
                            in_channels, width, stride if j == 0 else 1,
                            stage_fusion(fusion, i + 1, start_layer),
                            downsample=(j == 0 and width != in_channels), era=era, r=r,
                            conv=conv, **nk))
                        in_channels = width
                f.add(stage)
            f.add(_norm(in_channels, **nk), nn.Activation('relu'), GlobalAvgPool(),
                  nn.Flatten())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


class CIFARResNeXt(HybridBlock):
    """ResNeXt for 32x32 inputs (official ``CIFARAFFResNeXt`` / ``CIFARResNextASKC``).

    ``features`` = [Conv3x3 c0, BN, ReLU, stage1..3, GAP]; ``output`` = Dense(classes).  Stage
    base widths c0, 2c0, 4c0 (block outputs 4x that), strides 1, 2, 2; **every** stage's first
    block projects its shortcut.  Fusion r = 16.  Depth is ``3 * sum(layers) + 2``.
    ``last_gamma`` has the inverted ResNeXt meaning (False -> last BN gamma starts at 0).
    """

    def __init__(self, fusion, layers, base_channels=64, cardinality=32, bottleneck_width=4,
                 classes=100, start_layer=1, era='head', deep_stem=False, use_se=False,
                 last_gamma=False, r=16, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        _check_era(era)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            f = self.features
            c0 = base_channels
            if deep_stem:
                f.add(nn.Conv2D(c0, 3, 1, 1, use_bias=False, in_channels=3), _norm(c0, **nk),
                      nn.Activation('relu'),
                      nn.Conv2D(c0, 3, 1, 1, use_bias=False, in_channels=c0), _norm(c0, **nk),
                      nn.Activation('relu'))
                f.add(nn.Conv2D(c0, 3, 1, 1, use_bias=False, in_channels=c0))
            else:
                f.add(nn.Conv2D(c0, 3, 1, 1, use_bias=False, in_channels=3))
            f.add(_norm(c0, **nk), nn.Activation('relu'))
            in_channels = c0
            for i, n in enumerate(layers):
                width = c0 * 2 ** i
                stride = 1 if i == 0 else 2
                stage = nn.HybridSequential(prefix='stage%d_' % (i + 1))
                with stage.name_scope():
                    for j in range(n):
                        stage.add(ResNeXtBlock(
                            in_channels, width, cardinality, bottleneck_width,
                            stride if j == 0 else 1, stage_fusion(fusion, i + 1, start_layer),
                            downsample=(j == 0), avg_down=(era == 'head'), last_gamma=last_gamma,
                            use_se=use_se, r=r, **nk))
                        in_channels = width * 4
                f.add(stage)
            f.add(GlobalAvgPool())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))
