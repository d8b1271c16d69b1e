"""Long-skip fusion: ResNet-20-b + FPN for binary StopSign segmentation (paper Fig. 3c, Tables 3/4).

The paper gives only the host's name ("ResNet-20-b + FPN", Table 2) and the fusion formulas
(Table 1, Eq. 4-5); the authors never released the network (open-aff issues #1, #25).  What
they said later: the task is **binary** (stop sign vs background) and the FPN channels
**decrease 512 -> 256 -> 128 -> 64** instead of FPN's fixed 256 (issue #25); the low-level map
X is brought to the fused width by a **point-wise convolution** and the high-level map Y is
**bilinearly upsampled** (issue #10).  Everything else below is this project's choice:

* **encoder** = the CIFAR pre-activation ResNet-20-b of :class:`net.cifar.CIFARPreActResNet`
  (806562e ``era='paper'`` host, widths 16-16-32-64, b blocks per stage, plain addition in the
  residual blocks -- only the long-skip fusions change), reused as built there: its data BN
  and stages are taken over, its classifier tail is dropped.  Its taps are the stage outputs
  C1, C2, C3 (strides 1, 2, 4 relative to the stem);
* **stem stride 2** (``stem_stride``): the CIFAR stem keeps 32x32 inputs at full resolution;
  StopSign crops are COCO-sized (default 480), where a full-resolution 128-channel decoder
  level would cost ~35 GMAC per 3x3 conv.  The stem conv is therefore rebuilt with stride 2
  (``stem_stride=1`` keeps the host's own stem), giving output stride 8: crops must be
  multiples of 8 (:func:`check_crop`);
* **where 512 comes from**: P3 = PWConv(C3: 64 -> 512) + BN + ReLU, the top of the pyramid
  (the "channel expansion" lines of Fig. 3c);
* **one top-down step** (:class:`FPNLevel`, at widths 256 then 128): X = PWConv(C_l -> D) +
  BN + ReLU; Y = PWConv(P_{l+1}: 2D -> D) + BN + ReLU, then bilinear upsampling to X's size
  (``align_corners=False``); Z = fusion(X, Y); P_l = Conv3x3(Z) + BN + ReLU -- the
  ``feature_high`` / ``post`` layers of the paper-era ``model/atac/fusion.py`` fragments
  (docs/official-code.md §1.5), with Y reduced before upsampling (4x cheaper than after);
* **head**: Conv3x3 128 -> 64 + BN + ReLU, Conv1x1 64 -> 2 (with bias), so the widths run
  512 -> 256 -> 128 -> 64 as the author described; the 2-class logits are bilinearly
  upsampled from stride 2 to the input size (GluonCV FCN style); no auxiliary head, no dropout;
* **fusions** (:data:`FPN_FUSIONS`): the modules of :mod:`net.fusion` in paper notation
  ``fusion(X = low-level, Y = high-level)``, r = 4 (Table 2) where a module has r.  Their
  formulas match the atac fragments (AFF with the factor 2; MS-GAU = M(Y)X + Y; MS-SA =
  M(X+Y)X + Y; GAU-FPN = G(Y)X + Y) with two deliberate exceptions: **iAFF** is the paper's
  Eq. 5 (the fragment ``IASKCChaFuse_Reduce`` overwrites its low-level input with the
  local-attention logits, docs/official-code.md §1.5 -- a bug we do not reproduce), and **MS-SE** is the
  paper's X + M(Y)Y (the fragment computes M from X+Y, which is MS-SA's context level).
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .blocks import _norm, make_fusion
from .cifar import CIFARPreActResNet, _check_era
from .errors import AFFError

__all__ = ['ResNetFPN', 'FPNLevel', 'FPN_FUSIONS', 'DECODER_WIDTHS', 'check_crop', 'register']

#: decoder widths: top of the pyramid, the two fused levels, the head (issue #25)
DECODER_WIDTHS = (512, 256, 128, 64)

#: Table 3/4 FPN rows (utils/paper_tables.py short names) + GAU-FPN of Fig. 7
FPN_FUSIONS = ('add', 'concat', 'msgau', 'msse', 'mssa', 'aff', 'iaff', 'globalglobal',
               'locallocal', 'gau')

#: default crop of the StopSign recipe (open-acm's base 512 / crop 480 of the same author)
STOPSIGN_CROP = 480


def _pw(in_channels, channels, norm_layer=None, norm_kwargs=None):
    """PWConv (no bias: a BN follows) + BN + ReLU."""
    seq = nn.HybridSequential(prefix='')
    seq.add(nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels),
            _norm(channels, norm_layer, norm_kwargs), nn.Activation('relu'))
    return seq


def _conv_bn_relu(in_channels, channels, norm_layer=None, norm_kwargs=None):
    seq = nn.HybridSequential(prefix='')
    seq.add(nn.Conv2D(channels, 3, 1, 1, use_bias=False, in_channels=in_channels),
            _norm(channels, norm_layer, norm_kwargs), nn.Activation('relu'))
    return seq


def _upsample_like(F, y, x):
    return F.contrib.BilinearResize2D(y, x, mode='like', align_corners=False)


class FPNLevel(HybridBlock):
    """One top-down FPN step with a long-skip fusion (Fig. 3c): ``P = post(fusion(X, up(Y)))``.

    ``lateral`` brings the low-level map to ``channels`` (X); ``reduce`` brings the coarser
    pyramid level to ``channels`` (Y) before the bilinear upsampling; ``attention`` is the
    fusion in paper notation; ``post`` = Conv3x3 + BN + ReLU.
    """

    def __init__(self, fusion, low_channels, high_channels, channels, r=None, norm_layer=None,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        self.channels = channels
        with self.name_scope():
            self.lateral = _pw(low_channels, channels, **nk)
            self.reduce = _pw(high_channels, channels, **nk)
            self.attention = make_fusion(fusion, channels, r, **nk)
            self.post = _conv_bn_relu(channels, channels, **nk)

    def hybrid_forward(self, F, low, high):
        x = self.lateral(low)
        y = _upsample_like(F, self.reduce(high), x)
        return self.post(self.attention(x, y))


class ResNetFPN(HybridBlock):
    """ResNet-20-b + FPN (long-skip fusion) for per-pixel classification; see the module doc.

    ``fusion``: a name of :data:`FPN_FUSIONS` (any :func:`net.fusion.get_fusion` name works);
    ``layers``: blocks per stage ``[b, b, b]``; ``channels``: encoder widths (stem, stage1..3);
    ``widths``: decoder widths (top, level 2, level 1, head); ``stem_stride``: 1 or 2.
    Output: ``(N, classes, H, W)`` logits at the input resolution.
    """

    def __init__(self, fusion, layers, channels=(16, 16, 32, 64), widths=DECODER_WIDTHS,
                 classes=2, stem_stride=2, era='paper', r=None, norm_layer=None,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        _check_era(era)
        if len(widths) != 4:
            raise AFFError('the FPN decoder needs 4 widths (top, level 2, level 1, head), got %s'
                           % (list(widths),))
        if stem_stride not in (1, 2):
            raise AFFError('stem_stride must be 1 or 2, got %r' % (stem_stride,))
        nk = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        self.stem_stride = stem_stride
        self.stride = 4 * stem_stride
        self.widths = tuple(widths)
        with self.name_scope():
            # the ResNet-20-b host exactly as net.cifar builds it; its classifier tail
            # (BN, ReLU, GAP, Dense) is never registered here, so it has no parameters
            host = CIFARPreActResNet('add', layers, channels, classes=classes, era=era,
                                     prefix='encoder_', **nk)
            data_bn, stem, stage1, stage2, stage3 = list(host.features._children.values())[:5]
            self.stem = nn.HybridSequential(prefix='')
            if stem_stride == 1:
                self.stem.add(data_bn, stem)
            else:
                self.stem.add(data_bn, nn.Conv2D(channels[0], 3, stem_stride, 1, use_bias=False,
                                                 in_channels=3, prefix='encoder_stem_'))
            self.stage1, self.stage2, self.stage3 = stage1, stage2, stage3
            self.top = _pw(channels[3], widths[0], **nk)
            self.level2 = FPNLevel(fusion, channels[2], widths[0], widths[1], r=r,
                                   prefix='level2_', **nk)
            self.level1 = FPNLevel(fusion, channels[1], widths[1], widths[2], r=r,
                                   prefix='level1_', **nk)
            self.head = _conv_bn_relu(widths[2], widths[3], **nk)
            self.head.add(nn.Conv2D(classes, 1, in_channels=widths[3]))

    def hybrid_forward(self, F, x):
        c1 = self.stage1(self.stem(x))
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        p2 = self.level2(c2, self.top(c3))
        p1 = self.level1(c1, p2)
        return _upsample_like(F, self.head(p1), x)


def check_crop(crop_size, stride=8, base_size=None):
    """One-line error unless ``crop_size`` is a positive multiple of the network stride (so every
    pyramid level is exactly twice the next) and at most ``base_size``."""
    if crop_size < stride or crop_size % stride:
        raise AFFError('--crop-size %d is not a multiple of the network stride %d; use e.g. %d'
                       % (crop_size, stride, max(stride, crop_size - crop_size % stride)))
    if base_size is not None and crop_size > base_size:
        raise AFFError('--crop-size %d is larger than --base-size %d; the crop is taken from the '
                       'image resized to about --base-size, use --crop-size <= --base-size'
                       % (crop_size, base_size))


def register(reg):
    """Registry names ``stopsign_<fusion>_fpn_resnet20_b<b>`` (Tables 3/4 FPN cells, Fig. 7)."""
    for fusion in FPN_FUSIONS:
        for b in (1, 2, 3, 4):
            reg('stopsign_%s_fpn_resnet20_b%d' % (fusion, b), ResNetFPN,
                kwargs=dict(fusion=fusion, layers=[b] * 3, channels=[16, 16, 32, 64],
                            widths=DECODER_WIDTHS, stem_stride=2, era='paper'),
                input_size=STOPSIGN_CROP, classes=2, era='paper', fusion=fusion,
                host='ResNet-20-b + FPN (pre-act, b=%d, decoder 512-256-128-64)' % b,
                paper='Fig. 7 GAU-FPN baseline' if fusion == 'gau' else 'Table 3/4 FPN cell')
