"""AutoAugment (Cubuk et al., "AutoAugment: Learning Augmentation Policies from Data", CVPR 2019).

The official open-aff CIFAR script put ``autogluon.utils.augment.AugmentationBlock(
autoaug_cifar10_policies())`` in front of RandomCrop/flip.  No MXNet library ships AutoAugment any
more, so this module implements it from the paper: the operations of its Table 1 and the policies
of its appendix (reduced CIFAR-10 and ImageNet), on PIL images.

Per image, :class:`AutoAugment` picks ONE of the 25 sub-policies uniformly at random and applies
each of its two operations with the operation's probability, at the operation's magnitude level.

Magnitudes.  The paper discretises each operation's range into 10 uniformly spaced values, levels
0..9, so level ``l`` means ``l / 9`` of the range (level 9 = the end of the range):

=============  ====================================================================================
ShearX/Y       shear factor ``0.3 * l/9`` (the paper's [-0.3, 0.3]), sign random (p = 0.5); the
               shear is about the top-left corner (the PIL affine convention of the usual
               implementations): output pixel (x, y) samples input (x + s*y, y).
TranslateX/Y   ``150/331 * l/9`` of the image width/height, sign random, rounded to whole pixels.
               The paper's range is [-150, 150] pixels for 331-pixel ImageNet images; relative
               offsets make the same policy meaningful for 32 px (max 15 px) and 224 px (max
               101 px).  (The authors' CIFAR code may have used smaller absolute offsets; we
               follow the paper's table.)
Rotate         ``30 * l/9`` degrees, sign random (counter-clockwise when positive).
Solarize       threshold ``round(256 - 256 * l/9)``: pixels >= threshold are inverted; level 0
               (threshold 256) is the identity, level 9 (threshold 0) equals Invert.
Posterize      ``8 - round(4 * l/9)`` bits (levels 0,1 -> 8 (identity), 2,3 -> 7, 4,5 -> 6,
               6,7 -> 5, 8,9 -> 4): the paper's range [4, 8] with larger magnitude = stronger
               distortion like every other operation.  (Some implementations map the level to
               0..4 bits instead, which at low levels blacks the image out; we do not.)
Color, Contrast, Brightness, Sharpness
               enhancement factor ``0.1 + 1.8 * l/9`` (the paper's [0.1, 1.9]; factor 1 = the
               identity, which integer levels never hit: 4 -> 0.9, 5 -> 1.1).  No random sign:
               the range already covers both directions.
AutoContrast, Invert, Equalize
               no magnitude (the level is ignored).
=============  ====================================================================================

Geometric operations fill uncovered pixels with gray 128 (``(128, 128, 128)`` for RGB, as in the
common implementations) and resample with nearest neighbour (PIL's default), so magnitude 0 is
exactly the identity.  Levels may be floats in [0, 9] when calling an operation directly (e.g.
``brightness(img, 4.5, rng)`` is the identity); policies use integer levels.

The paper's search space also has Cutout and SamplePairing; neither occurs in the two published
policies transcribed here, so they are not implemented.  (The paper's CIFAR training applies
Cutout separately, after AutoAugment; that is a different, independent transform.)

Randomness: each :class:`AutoAugment` owns a ``random.Random`` (seedable).  DataLoader workers are
forked copies that would all replay the parent's stream, so the first call in a process whose id
differs from the one that last (re)seeded the generator reseeds it: from ``(seed, pid)`` when a seed
was given (distinct per worker; reproducible only with ``num_workers=0``, because pids vary), from
OS entropy otherwise.  :meth:`AutoAugment.reseed` sets an explicit seed (e.g. a worker index).

Use (the official CIFAR order: AutoAugment on the uint8 HWC image, then crop/flip/ToTensor)::

    from mxnet.gluon.data.vision import transforms
    from utils.augment import AutoAugmentBlock
    train_tf = transforms.Compose([AutoAugmentBlock('cifar10'), <random crop, flip>,
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])

:class:`AutoAugment` itself is a plain callable (numpy / NDArray / PIL in, same type out), e.g. for
raw ImageNet images decoded from RecordIO; :class:`AutoAugmentBlock` wraps it as a ``gluon.Block``,
which ``transforms.Compose`` requires of its members.

Command line (a grid of augmented versions for eyeballing)::

    python -m utils.augment --policy cifar10 --image IN.png --out OUT.png --n 16
"""
import argparse
import math
import os
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ['OPS', 'CIFAR10_POLICY', 'IMAGENET_POLICY', 'POLICIES', 'AutoAugment', 'AutoAugmentBlock',
           'FILL', 'MAX_LEVEL', 'validate_policy']

FILL = 128
MAX_LEVEL = 9
_TRANSLATE = 150.0 / 331.0
_NEAREST = Image.Resampling.NEAREST
_RAMP = np.arange(256, dtype=np.int64)


def _mag(level, top):
    return top * float(level) / MAX_LEVEL


def _signed(value, rng):
    return -value if rng.random() < 0.5 else value


def _fill(img):
    bands = len(img.getbands())
    return FILL if bands == 1 else (FILL,) * bands


def _affine(img, coeffs):
    # coeffs (a, b, c, d, e, f): output pixel (x, y) samples input (a*x + b*y + c, d*x + e*y + f)
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=_NEAREST,
                         fillcolor=_fill(img))


# --- the 14 operations: op(img, level, rng) -> PIL image ---------------------------------------

def shear_x(img, level, rng):
    return _affine(img, (1, _signed(_mag(level, 0.3), rng), 0, 0, 1, 0))


def shear_y(img, level, rng):
    return _affine(img, (1, 0, 0, _signed(_mag(level, 0.3), rng), 1, 0))


def translate_x(img, level, rng):
    """Moves the content by ``dx`` pixels (dx > 0: to the right)."""
    dx = int(round(_signed(_mag(level, _TRANSLATE), rng) * img.size[0]))
    return _affine(img, (1, 0, -dx, 0, 1, 0))


def translate_y(img, level, rng):
    """Moves the content by ``dy`` pixels (dy > 0: down)."""
    dy = int(round(_signed(_mag(level, _TRANSLATE), rng) * img.size[1]))
    return _affine(img, (1, 0, 0, 0, 1, -dy))


def rotate(img, level, rng):
    return img.rotate(_signed(_mag(level, 30.0), rng), resample=_NEAREST, fillcolor=_fill(img))


def auto_contrast(img, level, rng):
    """Per channel, maps the darkest value to 0 and the brightest to 255 linearly, rounding halves
    up; constant channels are left alone.  (PIL's ImageOps.autocontrast truncates instead, so its
    maximum can land on 254.)"""
    extrema = img.getextrema()
    lo, hi = np.array(extrema if len(img.getbands()) > 1 else (extrema,), dtype=np.int64).T[:, :, None]
    d = np.maximum(hi - lo, 1)
    lut = np.where(hi > lo, np.clip(((_RAMP - lo) * 510 + d) // (2 * d), 0, 255), _RAMP)
    return img.point(lut.ravel().tolist())


def invert(img, level, rng):
    return ImageOps.invert(img)


def equalize(img, level, rng):
    return ImageOps.equalize(img)


def solarize(img, level, rng):
    return ImageOps.solarize(img, int(round(256 - _mag(level, 256.0))))


def posterize(img, level, rng):
    return ImageOps.posterize(img, 8 - int(round(_mag(level, 4.0))))


def _enhance(cls):
    def op(img, level, rng):
        return cls(img).enhance(0.1 + _mag(level, 1.8))
    op.__name__ = cls.__name__.lower()
    op.__doc__ = 'ImageEnhance.%s with factor 0.1 + 1.8 * level/9.' % cls.__name__
    return op


color = _enhance(ImageEnhance.Color)
contrast = _enhance(ImageEnhance.Contrast)
brightness = _enhance(ImageEnhance.Brightness)
sharpness = _enhance(ImageEnhance.Sharpness)

OPS = {
    'ShearX': shear_x, 'ShearY': shear_y, 'TranslateX': translate_x, 'TranslateY': translate_y,
    'Rotate': rotate, 'AutoContrast': auto_contrast, 'Invert': invert, 'Equalize': equalize,
    'Solarize': solarize, 'Posterize': posterize, 'Contrast': contrast, 'Color': color,
    'Brightness': brightness, 'Sharpness': sharpness,
}

# --- the published policies (paper appendix) ----------------------------------------------------
# Sub-policy i = ((op1, prob1, level1), (op2, prob2, level2)), rows in the order of the tables.
# Levels of magnitude-free operations (AutoContrast, Equalize, Invert) are kept as printed.

# Table "AutoAugment policy found on reduced CIFAR-10" (Table 9 of arXiv:1805.09501).
CIFAR10_POLICY = (
    (('Invert', 0.1, 7), ('Contrast', 0.2, 6)),                # 0
    (('Rotate', 0.7, 2), ('TranslateX', 0.3, 9)),              # 1
    (('Sharpness', 0.8, 1), ('Sharpness', 0.9, 3)),            # 2
    (('ShearY', 0.5, 8), ('TranslateY', 0.7, 9)),              # 3
    (('AutoContrast', 0.5, 8), ('Equalize', 0.9, 2)),          # 4
    (('ShearY', 0.2, 7), ('Posterize', 0.3, 7)),               # 5
    (('Color', 0.4, 3), ('Brightness', 0.6, 7)),               # 6
    (('Sharpness', 0.3, 9), ('Brightness', 0.7, 9)),           # 7
    (('Equalize', 0.6, 5), ('Equalize', 0.5, 1)),              # 8
    (('Contrast', 0.6, 7), ('Sharpness', 0.6, 5)),             # 9
    (('Color', 0.7, 7), ('TranslateX', 0.5, 8)),               # 10
    (('Equalize', 0.3, 7), ('AutoContrast', 0.4, 8)),          # 11
    (('TranslateY', 0.4, 3), ('Sharpness', 0.2, 6)),           # 12
    (('Brightness', 0.9, 6), ('Color', 0.2, 8)),               # 13
    (('Solarize', 0.5, 2), ('Invert', 0.0, 3)),                # 14
    (('Equalize', 0.2, 0), ('AutoContrast', 0.6, 0)),          # 15
    (('Equalize', 0.2, 8), ('Equalize', 0.6, 4)),              # 16
    (('Color', 0.9, 9), ('Equalize', 0.6, 6)),                 # 17
    (('AutoContrast', 0.8, 4), ('Solarize', 0.2, 8)),          # 18
    (('Brightness', 0.1, 3), ('Color', 0.7, 0)),               # 19
    (('Solarize', 0.4, 5), ('AutoContrast', 0.9, 3)),          # 20
    (('TranslateY', 0.9, 9), ('TranslateY', 0.7, 9)),          # 21
    (('AutoContrast', 0.9, 2), ('Solarize', 0.8, 3)),          # 22
    (('Equalize', 0.8, 8), ('Invert', 0.1, 3)),                # 23
    (('TranslateY', 0.7, 9), ('AutoContrast', 0.9, 1)),        # 24
)

# Table "AutoAugment policy found on ImageNet" (appendix of arXiv:1805.09501).  As printed, rows
# 20-24 repeat rows 4, 1, 13, 14 and 2; they are kept, so those sub-policies are drawn twice as often.
IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),               # 0
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),          # 1
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),              # 2
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),            # 3
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),              # 4
    (('Equalize', 0.4, 4), ('Rotate', 0.8, 8)),                # 5
    (('Solarize', 0.6, 3), ('Equalize', 0.6, 7)),              # 6
    (('Posterize', 0.8, 5), ('Equalize', 1.0, 2)),             # 7
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),                # 8
    (('Equalize', 0.6, 8), ('Posterize', 0.4, 6)),             # 9
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),                   # 10
    (('Rotate', 0.4, 9), ('Equalize', 0.6, 2)),                # 11
    (('Equalize', 0.0, 7), ('Equalize', 0.8, 8)),              # 12
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),                # 13
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),                 # 14
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),                   # 15
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),                 # 16
    (('Sharpness', 0.4, 7), ('Invert', 0.6, 8)),               # 17
    (('ShearX', 0.6, 5), ('Equalize', 1.0, 9)),                # 18
    (('Color', 0.4, 0), ('Equalize', 0.6, 3)),                 # 19
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),              # 20
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),          # 21
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),                # 22
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),                 # 23
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),              # 24
)

POLICIES = {'cifar10': CIFAR10_POLICY, 'imagenet': IMAGENET_POLICY}


def validate_policy(policy):
    """Returns ``policy`` as a tuple of tuples of (name, prob, level); raises ValueError if invalid."""
    if isinstance(policy, str):
        if policy.lower() not in POLICIES:
            raise ValueError('unknown AutoAugment policy %r (known: %s)' % (policy, ', '.join(POLICIES)))
        return POLICIES[policy.lower()]
    subs = tuple(tuple(tuple(op) for op in sub) for sub in policy)
    if not subs:
        raise ValueError('an AutoAugment policy needs at least one sub-policy')
    for i, sub in enumerate(subs):
        for op in sub:
            if len(op) != 3:
                raise ValueError('sub-policy %d: operation %r is not (name, prob, level)' % (i, op))
            name, prob, level = op
            if name not in OPS:
                raise ValueError('sub-policy %d: unknown operation %r (known: %s)'
                                 % (i, name, ', '.join(OPS)))
            if not 0.0 <= prob <= 1.0:
                raise ValueError('sub-policy %d: probability %r of %s is outside [0, 1]' % (i, prob, name))
            if not 0 <= level <= MAX_LEVEL:
                raise ValueError('sub-policy %d: level %r of %s is outside 0..%d'
                                 % (i, level, name, MAX_LEVEL))
    return subs


def _check_array(img):
    """Raises TypeError unless ``img`` is a uint8 HW / HWC (C = 1 or 3) numpy array or mxnet NDArray."""
    ok_type = isinstance(img, np.ndarray) or (type(img).__module__.startswith('mxnet')
                                              and hasattr(img, 'asnumpy'))
    shape, dtype = getattr(img, 'shape', None), getattr(img, 'dtype', None)
    if not ok_type or np.dtype(dtype) != np.uint8 or len(shape) not in (2, 3) \
            or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise TypeError('AutoAugment expects a PIL image or a uint8 HW/HWC image (C = 1 or 3) as a '
                        'numpy array or NDArray; got %s%s' % (
                            type(img).__name__,
                            '' if shape is None else ' %s of shape %s' % (dtype, shape)))


class AutoAugment:
    """Picks one sub-policy uniformly at random and applies its operations with their probabilities.

    Parameters
    ----------
    policy : 'cifar10', 'imagenet' or a policy: a sequence of sub-policies, each a sequence of
        (name, prob, level) with a name of ``OPS``, 0 <= prob <= 1 and 0 <= level <= 9 (the published
        sub-policies have two operations; custom ones may have any number).
    seed : int or None.  None seeds from OS entropy.

    ``__call__(img)`` takes a uint8 HWC numpy array (C = 1 or 3, or HW grayscale), a uint8 HWC
    ``mx.nd.NDArray`` or a PIL image (mode L or RGB) and returns the same type.  The image is
    converted to PIL once and back once, and only when an operation fires; when none fires the input
    object itself is returned.  Returned numpy arrays are new and writeable.
    """

    def __init__(self, policy='cifar10', seed=None):
        self.policy = validate_policy(policy)
        self._subs = tuple(tuple((OPS[n], p, lvl) for n, p, lvl in sub) for sub in self.policy)
        self.reseed(seed)

    def reseed(self, seed):
        """Restarts the random stream from ``seed`` (None: OS entropy) in the current process; processes
        forked later derive their streams from ``(seed, pid)``."""
        self.seed = seed
        self._rng = random.Random(seed)
        self._pid = os.getpid()

    def _generator(self):
        pid = os.getpid()
        if pid != self._pid:     # a forked/spawned DataLoader worker: do not replay the parent's stream
            self._rng = random.Random(None if self.seed is None else '%s/%d' % (self.seed, pid))
            self._pid = pid
        return self._rng

    def __call__(self, img):
        pil_in = isinstance(img, Image.Image)
        if not pil_in:
            _check_array(img)
        rng = self._generator()
        sub = self._subs[rng.randrange(len(self._subs))]
        fired = [(op, level) for op, prob, level in sub if rng.random() < prob]
        if not fired:
            return img
        if pil_in:
            for op, level in fired:
                img = op(img, level, rng)
            return img
        nd = not isinstance(img, np.ndarray)
        arr = img.asnumpy() if nd else img
        pil = Image.fromarray(arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
        for op, level in fired:
            pil = op(pil, level, rng)
        out = np.array(pil).reshape(arr.shape)
        if not nd:
            return out
        import mxnet as mx
        make = mx.np.array if isinstance(img, mx.np.ndarray) else mx.nd.array
        return make(out, ctx=img.context, dtype=np.uint8)

    def __repr__(self):
        name = next((k for k, v in POLICIES.items() if v == self.policy), 'custom')
        return '%s(policy=%s, %d sub-policies, seed=%r)' % (type(self).__name__, name, len(self.policy),
                                                            self.seed)


_BLOCK = None


def _make_block():
    from mxnet.gluon import Block

    class AutoAugmentBlock(Block):
        """:class:`AutoAugment` as a ``gluon.Block``, for ``gluon.data.vision.transforms.Compose``
        (whose children must be Blocks).  Takes and returns a uint8 HWC NDArray, so it goes before
        ``ToTensor``.  ``self.augment`` is the wrapped :class:`AutoAugment`."""

        def __init__(self, policy='cifar10', seed=None):
            super().__init__()
            self.augment = AutoAugment(policy, seed)

        def forward(self, x):
            return self.augment(x)

        def __repr__(self):
            return 'AutoAugmentBlock(%r)' % (self.augment,)

    AutoAugmentBlock.__module__ = __name__
    return AutoAugmentBlock


def __getattr__(name):
    # AutoAugmentBlock is built on first use so that this module (AutoAugment on numpy/PIL) does
    # not need mxnet; pickling finds the same class through this hook.
    global _BLOCK
    if name == 'AutoAugmentBlock':
        if _BLOCK is None:
            _BLOCK = _make_block()
        return _BLOCK
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


# --- command line ---------------------------------------------------------------------------------

def grid(images, gap=2):
    """Tiles equally sized PIL images into a near-square grid with gray gaps."""
    cols = int(math.ceil(math.sqrt(len(images))))
    rows = int(math.ceil(len(images) / float(cols)))
    w, h = images[0].size
    sheet = Image.new(images[0].mode, (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap),
                      _fill(images[0]))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return sheet


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.augment',
                                description='Write a grid of AutoAugment versions of one image.')
    p.add_argument('--policy', default='cifar10', choices=sorted(POLICIES))
    p.add_argument('--image', required=True, help='input image (any format PIL reads)')
    p.add_argument('--out', required=True, help='output image, e.g. grid.png')
    p.add_argument('--n', type=int, default=16, help='number of augmented versions (default 16)')
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--zoom', type=int, default=None,
                   help='integer upscaling of each tile (default: up to ~128 px for small images)')
    args = p.parse_args(argv)
    if args.n < 1:
        p.error('--n must be >= 1')
    img = Image.open(args.image).convert('RGB')
    aug = AutoAugment(args.policy, seed=args.seed)
    tiles = [aug(img) for _ in range(args.n)]
    zoom = args.zoom or max(1, 128 // max(img.size))
    if zoom > 1:
        tiles = [t.resize((t.size[0] * zoom, t.size[1] * zoom), _NEAREST) for t in tiles]
    grid(tiles).save(args.out)
    print('wrote %s: %d %s-policy versions of %s (%dx%d)' % (args.out, args.n, args.policy, args.image,
                                                            img.size[0], img.size[1]))


if __name__ == '__main__':
    main()
