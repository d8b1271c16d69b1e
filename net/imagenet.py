"""ImageNet hosts: ResNet-50/101/152 (V1b layout) and ResNeXt-50-32x4d with fused skips
(docs/official-code.md §2.2-2.3).

``era='head'`` (open-aff HEAD, the released checkpoints) uses a deep stem (three 3x3 convs)
and average-pool downsampling ("v1d"-like); ``era='paper'`` (806562e, the submitted paper's
Tables 3 and 5) uses the 7x7 stem and strided 1x1 projections ("v1b").  Fusion modules sit in
stages ``>= start_layer`` (3 in every official run: AFF only in the last two stages), r = 16.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .blocks import BottleneckV1b, ResNeXtBlock, stage_fusion, _norm, _avg_pool
from .cifar import _check_era
from .errors import AFFError
from .layers import GlobalAvgPool

__all__ = ['ResNetV1bHost', 'ResNeXtHost', 'DEPTHS', 'OFFICIAL_DEPTHS', 'check_depth']

#: blocks per stage of the standard ResNet/ResNeXt depths (He et al.), used by the registry
DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
#: what the official HEAD ``train_imagenet.py --num-layer`` builds: its 152 is [3, 4, 36, 3]
#: (stage 2 keeps 4 blocks, 8 short of ResNet-152) -- reproduced for the script dialect only
OFFICIAL_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 4, 36, 3]}


class ResNetV1bHost(HybridBlock):
    """ResNet with fused skips (official ``AFFResNet`` / ``ResNet50_v1bASKC``).

    Children: ``conv1`` (7x7 conv, or a Sequential deep stem of 3x3 convs
    ``stem_width, stem_width, 2*stem_width``), ``bn1``, ``relu``, ``maxpool``, ``layer1..4``
    (planes 64..512, strides 1, 2, 2, 2; the first block of each layer projects, as
    ``down{i}_`` [Conv1x1(stride), BN] or with ``avg_down`` [AvgPool, Conv1x1, BN]),
    ``avgpool``, ``flat``, optional ``drop``, ``fc``.  ``last_gamma``: bn3 gamma starts at 0.
    ``dilated``: stages 3 and 4 keep stride 1 and dilate by 2 and 4 (segmentation backbones).
    ``conv(in_channels, channels, stride)``: replaces every bottleneck's 3x3 conv (ACmix).
    """

    def __init__(self, fusion, layers, classes=1000, start_layer=3, era='head', deep_stem=None,
                 stem_width=32, avg_down=None, last_gamma=False, dilated=False, final_drop=0.0,
                 use_global_stats=False, r=16, norm_layer=None, norm_kwargs=None, conv=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check_era(era)
        if era == 'paper':
            deep_stem = False  # 806562e ignores deep_stem: always the 7x7 stem
            avg_down = False if avg_down is None else avg_down
        else:
            deep_stem = True if deep_stem is None else deep_stem
            avg_down = True if avg_down is None else avg_down
        norm_kwargs = dict(norm_kwargs or {})
        if use_global_stats:
            norm_kwargs['use_global_stats'] = True
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            if deep_stem:
                self.conv1 = nn.HybridSequential(prefix='conv1_')
                self.conv1.add(
                    nn.Conv2D(stem_width, 3, 2, 1, use_bias=False, in_channels=3),
                    _norm(stem_width, **nk), nn.Activation('relu'),
                    nn.Conv2D(stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                    _norm(stem_width, **nk), nn.Activation('relu'),
                    nn.Conv2D(2 * stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width))
                in_channels = 2 * stem_width
            else:
                self.conv1 = nn.Conv2D(64, 7, 2, 3, use_bias=False, in_channels=3)
                in_channels = 64
            self.bn1 = _norm(in_channels, **nk)
            self.relu = nn.Activation('relu')
            self.maxpool = nn.MaxPool2D(3, 2, 1)
            dilations = (1, 1, 2, 4) if dilated else (1, 1, 1, 1)
            for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
                stride = 1 if i == 0 or dilations[i] > 1 else 2
                layer = nn.HybridSequential(prefix='layers%d_' % (i + 1))
                with layer.name_scope():
                    for j in range(n):
                        down = None
                        if j == 0 and (stride != 1 or in_channels != planes * 4):
                            down = nn.HybridSequential(prefix='down%d_' % (i + 1))
                            if avg_down:
                                down.add(_avg_pool(stride) if dilations[i] == 1 else
                                         nn.AvgPool2D(1, 1, ceil_mode=True, count_include_pad=False),
                                         nn.Conv2D(planes * 4, 1, use_bias=False,
                                                   in_channels=in_channels))
                            else:
                                down.add(nn.Conv2D(planes * 4, 1, stride, use_bias=False,
                                                   in_channels=in_channels))
                            down.add(_norm(planes * 4, **nk))
                        dil = dilations[i] if j else max(1, dilations[i] // 2)
                        layer.add(BottleneckV1b(
                            in_channels, planes, stride if j == 0 else 1,
                            stage_fusion(fusion, i + 1, start_layer), down, dilation=dil,
                            last_gamma=last_gamma, r=r, conv=conv, **nk))
                        in_channels = planes * 4
                setattr(self, 'layer%d' % (i + 1), layer)
            self.avgpool = GlobalAvgPool()
            self.flat = nn.Flatten()
            self.drop = nn.Dropout(final_drop) if final_drop > 0 else None
            self.fc = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.flat(self.avgpool(x))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)


class ResNeXtHost(HybridBlock):
    """ResNeXt with fused skips (official ``AFFResNeXt`` / ``ResNextASKC``).

    ``features`` = [stem, MaxPool, stage1..4, GAP], ``output`` = Dense(classes).  HEAD stem:
    3x3 convs ``stem_width, stem_width, 2*stem_width`` (64, 64, 128) each with BN + ReLU;
    806562e: 7x7 conv 64, BN, ReLU.  Every stage's first block projects; with ``avg_down``
    stages 2-4 project by [AvgPool, Conv1x1, BN] (stage 1 never pools).  ``last_gamma`` has
    the inverted ResNeXt meaning (False -> last BN gamma starts at 0; no official script
    passed it).
    """

    def __init__(self, fusion, layers, cardinality=32, bottleneck_width=4, classes=1000,
                 start_layer=3, era='head', deep_stem=None, stem_width=64, avg_down=None,
                 last_gamma=False, use_se=False, r=16, norm_layer=None, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check_era(era)
        if deep_stem is None:
            deep_stem = era == 'head'
        if avg_down is None:
            avg_down = era == 'head'
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            f = self.features
            if deep_stem:
                f.add(nn.Conv2D(stem_width, 3, 2, 1, use_bias=False, in_channels=3),
                      _norm(stem_width, **nk), nn.Activation('relu'),
                      nn.Conv2D(stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                      _norm(stem_width, **nk), nn.Activation('relu'),
                      nn.Conv2D(2 * stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                      _norm(2 * stem_width, **nk), nn.Activation('relu'))
                in_channels = 2 * stem_width
            else:
                f.add(nn.Conv2D(64, 7, 2, 3, use_bias=False, in_channels=3), _norm(64, **nk),
                      nn.Activation('relu'))
                in_channels = 64
            f.add(nn.MaxPool2D(3, 2, 1))
            for i, n in enumerate(layers):
                width = 64 * 2 ** i
                stride = 1 if i == 0 else 2
                stage = nn.HybridSequential(prefix='stage%d_' % (i + 1))
                with stage.name_scope():
                    for j in range(n):
                        stage.add(ResNeXtBlock(
                            in_channels, width, cardinality, bottleneck_width,
                            stride if j == 0 else 1, stage_fusion(fusion, i + 1, start_layer),
                            downsample=(j == 0), avg_down=(avg_down and i > 0),
                            last_gamma=last_gamma, use_se=use_se, r=r, **nk))
                        in_channels = width * 4
                f.add(stage)
            f.add(GlobalAvgPool())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def check_depth(num_layers, official=False):
    table = OFFICIAL_DEPTHS if official else DEPTHS
    if num_layers not in table:
        raise AFFError('unsupported depth %r; use one of %s' % (num_layers, sorted(table)))
    return list(table[num_layers])
