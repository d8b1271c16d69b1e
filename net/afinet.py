"""AFINet: Attentive Feature Integration (AFI) modules and AFI-Nets (Pan et al., arXiv 2105.04354).

The AFI module (AFINet §3.1, Eq. 1-2) squeezes each of N same-shape maps X^(j) by global average
pooling, scores each with one **shared** two-layer function s = W2 ReLU(W1 z) (no bias, no BN), takes
a softmax over the N inputs separately for every channel and returns the per-channel convex
combination R = sum_j softmax_j(s)[c] * X^(j)[c].

AFI-Nets (§3.2, Eq. 4): in every block i >= 2 of a stage the first convolution outputs half its usual
width, X^(i); R^(i) = AFI^(i)(...) has the same shape and the block's next convolution reads
concat([X^(i), R^(i)]) (X first).  Everything else is the backbone.

Ambiguities, resolved by the reading that reproduces the published parameter counts exactly
(docs/related_methods.md §1.4-1.5, §1.10; all counts trainable only):

* A1 block 1 of every stage is the **unmodified** backbone block (Table 1 shows it halved, but only
  an unmodified block 1 reproduces Tables 2, 4 and 5);
* A2 every block i >= 2 owns and runs an AFI module, AFI^(2) included (the text says it may be
  skipped, but its weights are in the counts);
* A4/A5 the module acts on c = the width of X (C/2, w/2) with hidden width c // r, r = 4, no bias;
* A3 inputs (parameter-neutral; ``afi_inputs``): CIFAR basic-block nets default to the paper's
  Eq. 4, X^(1..i-1) with X^(1) = the first C/2 channels of block 1's first-conv activation
  ('previous'; AFI^(2) then returns X^(1) exactly).  Bottleneck nets (stride in the 3x3 conv, so
  block 1's first-conv output is at the pre-stride resolution) use X^(2..i), the block's own X
  included; ``afi_inputs='own'`` gives the CIFAR nets X^(1..i);
* A9 CIFAR ResNet-(6N+2) is He et al.'s post-activation ResNet with 1x1 conv + BN projections
  ("option B"); A13 ImageNet ResNets use the torchvision ("v1.5") layout; the CIFAR ResNeXt-29 is
  the kuangliu/pytorch-cifar layout the paper cites (footnote 2: 1x1 stem conv, 2x expansion).

Counts that do not match the paper (each pinned by a test in tests/test_afinet.py):

* AFI-ResNet-110: 1,334,820 ("1.33M") at the paper's default r = 4; Table 4 prints 1.35M, which
  r = 2 would give (1,346,244) -- unresolved, we keep r = 4 (``afi_resnet110_r2`` builds the other);
* every other published count matches exactly (Tables 2, 4, 5; see the test's table).

Init: the last BN gamma of the ImageNet bottlenecks starts at 0 (``last_gamma``), as the registry's
v1b baselines they are compared with; the paper states no initialisation.  AFI-MobileNetV2 (Table 5,
exact) and its MobileNetV2 hosts are in net/afinet_mobile.py; its CIFAR configuration (Table 4's
2.25M) does not reproduce under any reading.  AFI-ShuffleNetV2 is not built: the paper does not say
where the module goes in ShuffleNetV2.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .blocks import _norm
from .errors import AFFError
from .layers import GlobalAvgPool, GroupedConv2D

__all__ = ['AFI', 'AFICIFARResNet', 'AFIBottleneckNet', 'register']


class AFI(HybridBlock):
    """Attentive Feature Integration module (AFINet Eq. 1-2).

    ``AFI(channels, r)(X1, ..., XN)`` -> R, every Xj of shape B x channels x H x W.  The scoring
    function W2 ReLU(W1 z) is shared by the N inputs, so the module works for any N >= 1 (N = 1
    returns X1: the softmax over one input is 1).
    """

    def __init__(self, channels, r=4, **kwargs):
        super().__init__(**kwargs)
        hidden = channels // r
        if hidden < 1:
            raise AFFError('AFI module: channels // r must be >= 1, got channels=%d r=%d'
                           % (channels, r))
        self.channels, self.hidden = channels, hidden
        with self.name_scope():
            self.fc1 = nn.Dense(hidden, use_bias=False, flatten=False, in_units=channels)
            self.fc2 = nn.Dense(channels, use_bias=False, flatten=False, in_units=hidden)

    def _weights(self, F, stacked):
        z = F.mean(stacked, axis=(3, 4))                         # B x N x C (squeeze)
        s = self.fc2(F.relu(self.fc1(z)))                        # shared scoring, B x N x C
        return F.softmax(s, axis=1)                              # over the N inputs, per channel

    def weights(self, *xs):
        """The normalised weights S~ (B x N x C) for NDArray inputs (for inspection)."""
        from mxnet import nd
        return self._weights(nd, nd.stack(*xs, axis=1))

    def hybrid_forward(self, F, *xs):
        stacked = F.stack(*xs, axis=1)                           # B x N x C x H x W
        w = self._weights(F, stacked).expand_dims(3).expand_dims(4)
        return F.sum(F.broadcast_mul(stacked, w), axis=1)


def _cat(F, x, r):
    """[X, R] along channels.  Stack + reshape instead of concat: MXNet 1.9.1's MKLDNN concat
    backward dies with SIGFPE on 8 + 8 channels fed by a conv gradient (AFI-ResNet stage 1)."""
    return F.stack(x, r, axis=1).reshape((0, -3, -2))


# ----------------------------------------------------------------------------- CIFAR ResNet
def _projection(in_channels, out_channels, stride, norm_layer, norm_kwargs):
    """The shortcut projection [Conv1x1(stride), BN] when the shape changes, else None (call it
    inside the block's name scope: its parameters are named ``down_*``)."""
    if stride == 1 and in_channels == out_channels:
        return None
    down = nn.HybridSequential(prefix='down_')
    down.add(nn.Conv2D(out_channels, 1, stride, use_bias=False, in_channels=in_channels),
             _norm(out_channels, norm_layer, norm_kwargs))
    return down


class _BasicBlock(HybridBlock):
    """Post-activation basic block (AFINet Eq. 3), or its AFI form (Eq. 4) when ``afi``.

    Returns ``(output, X)``: X = the first conv's activation (all C channels for a plain block).
    """

    def __init__(self, in_channels, channels, stride, afi, r, own, norm_layer, norm_kwargs,
                 **kwargs):
        super().__init__(**kwargs)
        first = channels // 2 if afi else channels
        self._own = own
        with self.name_scope():
            self.conv1 = nn.Conv2D(first, 3, stride, 1, use_bias=False, in_channels=in_channels)
            self.bn1 = _norm(first, norm_layer, norm_kwargs)
            self.afi = AFI(channels // 2, r, prefix='afi_') if afi else None
            self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False, in_channels=channels)
            self.bn2 = _norm(channels, norm_layer, norm_kwargs)
            self.downsample = _projection(in_channels, channels, stride, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x, *previous):
        h = F.relu(self.bn1(self.conv1(x)))
        body = h
        if self.afi is not None:
            inputs = previous + (h,) if self._own else previous
            body = _cat(F, h, self.afi(*inputs))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(body)) + shortcut), h


class _Stage(HybridBlock):
    """A stage: block 1 plain, blocks 2..n AFI blocks fed with the X's of this stage.

    ``first_x``: channels of block 1's activation used as X^(1) (0 = block 1 supplies none).
    """

    def __init__(self, blocks, first_x, **kwargs):
        super().__init__(**kwargs)
        self._first_x = first_x
        with self.name_scope():
            self.blocks = nn.HybridSequential(prefix='')
            for b in blocks:
                self.blocks.add(b)

    def __len__(self):
        return len(self.blocks)

    def hybrid_forward(self, F, x):
        xs = []
        for i in range(len(self.blocks)):
            blk = self.blocks[i]
            if getattr(blk, 'afi', None) is None:
                x, h = blk(x)
                if i == 0 and self._first_x:
                    xs.append(F.slice_axis(h, axis=1, begin=0, end=self._first_x))
            else:
                x, h = blk(x, *xs)
                xs.append(h)
        return x


class AFICIFARResNet(HybridBlock):
    """AFI-ResNet-(6N+2) for 32x32 inputs (AFINet Table 1, reading R1 of docs/related_methods.md §1.4).

    ``features`` = [Conv3x3 16, BN, ReLU, stage1..3, GAP]; ``output`` = Dense(classes).  Stage widths
    16/32/64, strides 1/2/2, N blocks each.  ``afi``: False builds He et al.'s plain ResNet-(6N+2)
    (option-B projections), True the AFI form; ``afi_stages``: the stages (1-based) that get AFI
    modules (Table 7 ablation); ``afi_inputs``: 'previous' (Eq. 4, X^(1..i-1)) or 'own' (X^(1..i)).
    """

    def __init__(self, blocks, afi=True, r=4, afi_stages=(1, 2, 3), afi_inputs='previous',
                 widths=(16, 32, 64), classes=100, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if afi_inputs not in ('previous', 'own'):
            raise AFFError("afi_inputs must be 'previous' or 'own', got %r" % (afi_inputs,))
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            self.features.add(nn.Conv2D(widths[0], 3, 1, 1, use_bias=False, in_channels=3),
                              _norm(widths[0], norm_layer, norm_kwargs), nn.Activation('relu'))
            in_channels = widths[0]
            for s, width in enumerate(widths, 1):
                on = afi and s in afi_stages
                stage = []
                for i in range(blocks if isinstance(blocks, int) else blocks[s - 1]):
                    stage.append(_BasicBlock(in_channels, width, 2 if (i == 0 and s > 1) else 1,
                                             on and i > 0, r, afi_inputs == 'own', norm_layer,
                                             norm_kwargs, prefix='stage%d_block%d_' % (s, i + 1)))
                    in_channels = width
                # X^(1) = the first C/2 channels of block 1's (full-width) first-conv activation
                first_x = width // 2 if on else 0
                self.features.add(_Stage(stage, first_x, prefix='stage%d_' % s))
            self.features.add(GlobalAvgPool())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


# ----------------------------------------------------------------------------- bottleneck nets
class _Bottleneck(HybridBlock):
    """Bottleneck (stride on the 3x3 conv, ``groups`` for ResNeXt), or its AFI form when ``afi``:
    the first 1x1 conv outputs ``width // 2`` = X, the 3x3 conv reads concat([X, AFI(X's)]).

    Returns ``(output, X)``.
    """

    def __init__(self, in_channels, width, out_channels, stride, groups, afi, r, last_gamma,
                 norm_layer, norm_kwargs, **kwargs):
        super().__init__(**kwargs)
        first = width // 2 if afi else width
        with self.name_scope():
            self.conv1 = nn.Conv2D(first, 1, use_bias=False, in_channels=in_channels)
            self.bn1 = _norm(first, norm_layer, norm_kwargs)
            self.afi = AFI(width // 2, r, prefix='afi_') if afi else None
            self.conv2 = GroupedConv2D(width, 3, stride, 1, groups=groups, use_bias=False,
                                       in_channels=width)
            self.bn2 = _norm(width, norm_layer, norm_kwargs)
            self.conv3 = nn.Conv2D(out_channels, 1, use_bias=False, in_channels=width)
            extra = dict(gamma_initializer='zeros') if last_gamma else {}
            self.bn3 = _norm(out_channels, norm_layer, norm_kwargs, **extra)
            self.downsample = _projection(in_channels, out_channels, stride, norm_layer,
                                          norm_kwargs)

    def hybrid_forward(self, F, x, *previous):
        h = F.relu(self.bn1(self.conv1(x)))
        body = h
        if self.afi is not None:
            body = _cat(F, h, self.afi(*(previous + (h,))))
        body = F.relu(self.bn2(self.conv2(body)))
        body = self.bn3(self.conv3(body))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(body + shortcut), h


class AFIBottleneckNet(HybridBlock):
    """AFI-ResNet-50/101/152, AFI-ResNeXt-50 (ImageNet) and AFI-ResNeXt-29 (CIFAR), or with
    ``afi=False`` their plain backbones (docs/related_methods.md §1.5).

    ``stem='imagenet'``: 7x7 conv 64 s2, BN, ReLU, 3x3 max-pool s2 (torchvision);
    ``stem='cifar'``: 1x1 conv 64, BN, ReLU (kuangliu/pytorch-cifar ResNeXt).  Stage s has
    ``layers[s-1]`` blocks of inner width ``widths[s-1]`` (the group width for ResNeXt) and output
    ``expansion * width``; strides 1, 2, 2(, 2).  AFI inputs: X^(2..i) (the block's own X included),
    since block 1's first conv runs before the stride.
    """

    def __init__(self, layers, widths, expansion, groups=1, stem='imagenet', afi=True, r=4,
                 classes=1000, last_gamma=False, norm_layer=None, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if stem not in ('imagenet', 'cifar'):
            raise AFFError("stem must be 'imagenet' or 'cifar', got %r" % (stem,))
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            f = self.features
            if stem == 'imagenet':
                f.add(nn.Conv2D(64, 7, 2, 3, use_bias=False, in_channels=3), _norm(64, **nk),
                      nn.Activation('relu'), nn.MaxPool2D(3, 2, 1))
            else:
                f.add(nn.Conv2D(64, 1, use_bias=False, in_channels=3), _norm(64, **nk),
                      nn.Activation('relu'))
            in_channels = 64
            for s, (n, width) in enumerate(zip(layers, widths), 1):
                blocks = []
                for i in range(n):
                    blocks.append(_Bottleneck(in_channels, width, expansion * width,
                                              2 if (i == 0 and s > 1) else 1, groups,
                                              afi and i > 0, r, last_gamma,
                                              prefix='stage%d_block%d_' % (s, i + 1), **nk))
                    in_channels = expansion * width
                f.add(_Stage(blocks, 0, prefix='stage%d_' % s))
            f.add(GlobalAvgPool())
            self.output = nn.Dense(classes, in_units=in_channels)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


# ----------------------------------------------------------------------------- registry
_IMAGENET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def register(reg):
    """Register the AFI-Nets and the plain baselines the registry lacked (AFINet Tables 4, 5, 7, 8)."""
    from .imagenet import ResNetV1bHost

    def cifar(name, n, afi, paper, **kw):
        reg(name, AFICIFARResNet, kwargs=dict(blocks=n, afi=afi, **kw), input_size=32,
            classes=100, era='head', fusion='afi' if afi else 'add',
            host='ResNet-%d (post-activation, option-B projections)' % (6 * n + 2), paper=paper)

    for n in (5, 18):
        depth = 6 * n + 2
        cifar('afi_resnet%d' % depth, n, True, 'AFINet Table 4')
        cifar('cifar_resnet%d_v1' % depth, n, False, 'AFINet Table 4 baseline')
        for s in (1, 2, 3):
            cifar('afi_resnet%d_stage%d' % (depth, s), n, True, 'AFINet Table 7',
                  afi_stages=(s,))
    cifar('afi_resnet110_r2', 18, True, 'AFINet Table 4 (the r = 2 reading of its 1.35M)', r=2)

    kl = dict(layers=[3, 3, 3], widths=[128, 256, 512], expansion=2, groups=32, stem='cifar')
    for afi in (True, False):
        reg('afi_resnext29_32x4d' if afi else 'cifar_resnext29_32x4d_kl', AFIBottleneckNet,
            kwargs=dict(kl, afi=afi), input_size=32, classes=100, era='head',
            fusion='afi' if afi else 'add',
            host='ResNeXt-29-32x4d (kuangliu/pytorch-cifar layout)',
            paper='AFINet Table 4' + ('' if afi else ' baseline'))

    def imagenet(name, depth, paper, **kw):
        reg(name, AFIBottleneckNet, kwargs=dict(layers=_IMAGENET_DEPTHS[depth], **kw),
            input_size=224, classes=1000, era='head', fusion='afi',
            host=('ResNeXt-%d-32x4d' if kw.get('groups') else 'ResNet-%d') % depth
            + ' (torchvision layout)', paper=paper)

    resnet = dict(widths=[64, 128, 256, 512], expansion=4, last_gamma=True)
    for depth in (50, 101, 152):
        imagenet('afi_resnet%d' % depth, depth, 'AFINet Table 5', **resnet)
    for r in (1, 2, 8):
        imagenet('afi_resnet50_r%d' % r, 50, 'AFINet Table 8', r=r, **resnet)
    imagenet('afi_resnext50_32x4d', 50, 'AFINet Table 5', widths=[128, 256, 512, 1024],
             expansion=2, groups=32, last_gamma=True)
    # torchvision-layout baselines of Table 5 = the 806562e v1b host with plain addition
    # (resnet50_v1b and resnext50_32x4d_v1b are registered already)
    for depth in (101, 152):
        reg('resnet%d_v1b' % depth, ResNetV1bHost,
            kwargs=dict(fusion='DirectAdd', layers=_IMAGENET_DEPTHS[depth], start_layer=3,
                        era='paper', last_gamma=True),
            input_size=224, classes=1000, era='paper', fusion='add',
            host='ResNet-%d v1b (7x7 stem)' % depth, paper='AFINet Table 5 baseline')
