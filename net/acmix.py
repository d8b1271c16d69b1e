"""ACmix (Pan et al., "On the Integration of Self-Attention and Convolution", CVPR 2022) in Gluon.

The operator follows the released ResNet operator as docs/related_methods.md §2.2-2.3
describes it (no code copied): shared 1x1 projections q, k, v (stage I, with biases); a local-window
self-attention path (window k_att, ``head`` heads, relative positional encoding from a 1x1 conv on a
[-1, 1] coordinate grid: logits q.(k + pe_centre - pe_neighbour) * d^-1/2, supplement Eq. 1, reflection
padding); a convolution path (a bias-free "light fully-connected layer" mixing the 3*head projections
into k_conv^2 maps, then a grouped k_conv x k_conv conv, groups = head_dim, shift-initialised = "shift
and aggregate"); output rate1 * att + rate2 * conv with two learnable scalars (initialised to 0.5).

ResNet-26/38/50-ACmix (supplement Table 2) = the torchvision-layout bottleneck ResNet whose 3x3 convs
are ACmix(width, width, stride) with the released effective hyper-parameters k_att 7, head 4, k_conv 3
(the released ``_make_layer`` names its arguments (rate, k, head) but they arrive in the right order:
no behaviour change, docs/related_methods.md §2.7).  Built from :class:`net.imagenet.ResNetV1bHost` (``era='paper'`` = 7x7 stem,
strided 1x1 projections) with its ``conv`` hook.

Released-code behaviour reproduced: the dep_conv bias is removed (the release assigns ``None``), the
two paths' output channel layouts differ (attention channel o = head o // d, conv channel o = group
o // head) and are added as they are, weight decay applies to rate1/rate2, q/k/v are projected at the
input resolution even for stride 2.  Choices: ``shift_init=True`` keeps the described shift
initialisation of dep_conv (trainable); the released ResNet overwrote it with Kaiming-normal (fan_out)
like every other conv -- ``shift_init=False`` leaves dep_conv to the network's initialiser
(train_imagenet.py: MSRAPrelu, a Kaiming initialiser) for that.  The dep_conv
padding is k_conv // 2 (the release hard-codes 1, the same for k_conv = 3).

Parameter counts (trainable): ResNet-26/38/50-ACmix = 10,487,816 / 14,410,896 / 18,333,976, exactly
the released code's.  The released README prints 10.6M / 14.6M / 18.6M: 81 * sum(C) more, one extra
dep_conv-sized tensor per ACmix layer, cause unknown (docs/related_methods.md §2.6); we match the
code, not the README.

Limits (as released): H and W even for a stride-2 layer; feature maps larger than 3 px per side
(reflection padding by 3), so ImageNet nets need inputs >= 128 px; out_channels divisible by head.
"""
from functools import partial

import numpy as np
from mxnet import init as _init
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .errors import AFFError

__all__ = ['ACmix', 'ShiftInit', 'register', 'MIN_INPUT_SIZE']

#: the smallest input side of the ImageNet ACmix nets: the 7x7 window needs maps > 3 px at 1/32
MIN_INPUT_SIZE = 128


@_init.register
class ShiftInit(_init.Initializer):
    """Shift kernels for the grouped conv of ACmix: input slot j of every output channel gets a
    one-hot k x k kernel at (j // k, j % k), so the conv sums the k^2 shifted maps (AC-S Fig. 3)."""

    def _init_weight(self, _, arr):
        out, slots, kh, kw = arr.shape
        w = np.zeros(arr.shape, dtype='float32')
        for j in range(slots):
            w[:, j, j // kw, j % kw] = 1.0
        arr[:] = w


class ACmix(HybridBlock):
    """The ACmix operator: ``ACmix(in_channels, channels, stride)(x)`` -> B x channels x H/s x W/s."""

    def __init__(self, in_channels, channels, stride=1, kernel_att=7, head=4, kernel_conv=3,
                 shift_init=True, **kwargs):
        super().__init__(**kwargs)
        if channels % head:
            raise AFFError('ACmix: channels (%d) must be divisible by head (%d)' % (channels, head))
        self.channels, self.head, self.head_dim = channels, head, channels // head
        self.stride, self.kernel_att, self.kernel_conv = stride, kernel_att, kernel_conv
        self.scaling = self.head_dim ** -0.5
        self.pad_att = kernel_att // 2    # the release's (dilation*(k-1)+1)//2 at dilation 1
        d, k2 = self.head_dim, kernel_conv * kernel_conv
        with self.name_scope():
            self.conv1 = nn.Conv2D(channels, 1, in_channels=in_channels)   # q
            self.conv2 = nn.Conv2D(channels, 1, in_channels=in_channels)   # k
            self.conv3 = nn.Conv2D(channels, 1, in_channels=in_channels)   # v
            self.conv_p = nn.Conv2D(d, 1, in_channels=2)                   # positional features
            self.fc = nn.Conv2D(k2, 1, use_bias=False, in_channels=3 * head)
            self.dep_conv = nn.Conv2D(
                channels, kernel_conv, stride, kernel_conv // 2, groups=d, use_bias=False,
                in_channels=k2 * d, weight_initializer=ShiftInit() if shift_init else None)
            self.rate1 = self.params.get('rate1', shape=(1,), init=_init.Constant(0.5))
            self.rate2 = self.params.get('rate2', shape=(1,), init=_init.Constant(0.5))

    # ------------------------------------------------------------------ helpers
    def _heads(self, F, t):
        """B x C x H x W -> (B*head) x d x H x W (channel c -> head c // d, component c % d)."""
        return t.reshape((0, -4, self.head, -1, -2)).reshape((-3, -2))

    def _subsample(self, F, t):
        if self.stride == 1:
            return t
        s = self.stride
        return F.slice(t, begin=(None,) * 4, end=(None,) * 4, step=(1, 1, s, s))

    def _unfold(self, F, t):
        """Reflection-pad and extract the k_att x k_att windows: N x d x k_att^2 x L (row-major)."""
        p, k = self.pad_att, self.kernel_att
        t = F.pad(t, mode='reflect', pad_width=(0, 0, 0, 0, p, p, p, p))
        cols = F.im2col(t, kernel=(k, k), stride=(self.stride, self.stride))
        return cols.reshape((0, -4, -1, k * k, -2))

    def positional(self, F, x):
        """pe = conv_p(grid), 1 x d x H x W; grid channel 0 = x coordinate, 1 = y, in [-1, 1]."""
        plane = F.zeros_like(F.slice_axis(F.slice_axis(x, axis=0, begin=0, end=1),
                                          axis=1, begin=0, end=1))          # 1 x 1 x H x W
        iw = F.contrib.arange_like(x, axis=3)
        ih = F.contrib.arange_like(x, axis=2)
        loc_w = F.broadcast_div(iw, F.max(iw)) * 2 - 1
        loc_h = F.broadcast_div(ih, F.max(ih)) * 2 - 1
        grid = F.concat(F.broadcast_add(plane, loc_w.reshape((1, 1, 1, -1))),
                        F.broadcast_add(plane, loc_h.reshape((1, 1, -1, 1))), dim=1)
        return self.conv_p(grid)

    def attention(self, F, q, k, v, pe):
        """Local self-attention with relative positional encoding (AC-S Eq. 1): B x C x H/s x W/s."""
        q_att = self._subsample(F, self._heads(F, q) * self.scaling)      # N x d x Ho x Wo
        pe_c = self._subsample(F, pe).reshape((0, 0, 1, -1))              # 1 x d x 1 x L
        k_unf, v_unf = self._unfold(F, self._heads(F, k)), self._unfold(F, self._heads(F, v))
        pe_unf = self._unfold(F, pe)                                      # 1 x d x k^2 x L
        rel = F.broadcast_add(k_unf, F.broadcast_sub(pe_c, pe_unf))       # N x d x k^2 x L
        logits = F.sum(F.broadcast_mul(q_att.reshape((0, 0, 1, -1)), rel), axis=1)
        att = F.softmax(logits, axis=1)                                   # over the window
        out = F.sum(F.broadcast_mul(att.expand_dims(1), v_unf), axis=2)   # N x d x L
        out = F.reshape_like(out, q_att)
        return out.reshape((-4, -1, self.head, -2)).reshape((0, -3, -2))

    def convolution(self, F, q, k, v):
        """fc over the 3*head projections, then the grouped conv (shift and aggregate)."""
        def split(t):   # B x C x H x W -> B x head x d x HW
            return t.reshape((0, -4, self.head, -1, -2)).reshape((0, 0, 0, -3))
        f = self.fc(F.concat(split(q), split(k), split(v), dim=1))       # B x k^2 x d x HW
        f = f.transpose((0, 2, 1, 3)).reshape((0, -3, -2))                # B x (d*k^2) x HW
        f = F.reshape_like(f, q, lhs_begin=2, lhs_end=None, rhs_begin=2, rhs_end=None)
        return self.dep_conv(f)

    def hybrid_forward(self, F, x, rate1, rate2):
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        out_att = self.attention(F, q, k, v, self.positional(F, x))
        out_conv = self.convolution(F, q, k, v)
        return F.broadcast_mul(rate1.reshape((1, 1, 1, 1)), out_att) + \
            F.broadcast_mul(rate2.reshape((1, 1, 1, 1)), out_conv)


# ----------------------------------------------------------------------------- registry
#: blocks per stage (supplement Table 2; released main.py --layers)
DEPTHS = {26: [1, 2, 4, 1], 38: [2, 3, 5, 2], 50: [3, 4, 6, 3]}


def register(reg):
    """ResNet-26/38/50-ACmix (supplement Table 2) and the plain ResNet-26/38 baselines."""
    from .imagenet import ResNetV1bHost
    for depth, layers in DEPTHS.items():
        reg('acmix_resnet%d' % depth, ResNetV1bHost,
            kwargs=dict(fusion='DirectAdd', layers=layers, start_layer=3, era='paper',
                        last_gamma=False, conv=partial(ACmix, kernel_att=7, head=4, kernel_conv=3)),
            input_size=224, classes=1000, era='paper', fusion='acmix',
            host='ResNet-%d (torchvision layout, 3x3 convs -> ACmix)' % depth,
            paper='ACmix supplement Table 2')
        if depth != 50:   # resnet50_v1b is registered already
            reg('resnet%d_v1b' % depth, ResNetV1bHost,
                kwargs=dict(fusion='DirectAdd', layers=layers, start_layer=3, era='paper',
                            last_gamma=True),
                input_size=224, classes=1000, era='paper', fusion='add',
                host='ResNet-%d v1b (7x7 stem)' % depth, paper='ACmix README baseline (SAN)')
