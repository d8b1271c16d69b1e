"""utils.augment: the AutoAugment operations, the two published policies and the transform wrapper.

Expectations are derived from each operation's definition (see the utils.augment docstring), not
from running the implementation.
"""
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from utils import augment as A
from utils.augment import OPS, CIFAR10_POLICY, IMAGENET_POLICY, AutoAugment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'AutoContrast', 'Invert',
         'Equalize', 'Solarize', 'Posterize', 'Contrast', 'Color', 'Brightness', 'Sharpness'}


def rand_img(h=32, w=32, c=3, seed=0, lo=0, hi=256):
    return np.random.RandomState(seed).randint(lo, hi, (h, w, c)).astype(np.uint8)


def run(name, x, level, seed=0):
    """Applies operation ``name`` to a uint8 HWC array (C = 3) and returns a uint8 array."""
    return np.asarray(OPS[name](Image.fromarray(x), level, random.Random(seed)))


def bright_spots(y, thresh=250):
    ys, xs = np.nonzero(y[:, :, 0] >= thresh)
    return list(zip(ys.tolist(), xs.tolist()))


# --- policies -----------------------------------------------------------------------------------

@pytest.mark.parametrize('policy', [CIFAR10_POLICY, IMAGENET_POLICY], ids=['cifar10', 'imagenet'])
def test_policy_structure(policy):
    assert len(policy) == 25
    for sub in policy:
        assert len(sub) == 2
        for name, prob, level in sub:
            assert name in NAMES
            assert isinstance(prob, float) and 0.0 <= prob <= 1.0
            assert isinstance(level, int) and 0 <= level <= 9
    assert A.validate_policy(policy) == policy


def test_op_table_is_the_14_operations():
    assert set(OPS) == NAMES and len(OPS) == 14


def test_policy_first_rows():
    assert CIFAR10_POLICY[0] == (('Invert', 0.1, 7), ('Contrast', 0.2, 6))
    assert IMAGENET_POLICY[0] == (('Posterize', 0.4, 8), ('Rotate', 0.6, 9))
    assert A.POLICIES == {'cifar10': CIFAR10_POLICY, 'imagenet': IMAGENET_POLICY}


@pytest.mark.parametrize('bad', [
    ((('Cutout', 0.5, 3), ('Invert', 0.5, 3)),),
    ((('Invert', 1.5, 3), ('Invert', 0.5, 3)),),
    ((('Invert', 0.5, 10), ('Invert', 0.5, 3)),),
    ((('Invert', 0.5), ('Invert', 0.5, 3)),),
    (),
    'svhn',
])
def test_invalid_policies_are_rejected(bad):
    with pytest.raises(ValueError):
        AutoAugment(bad)


# --- operations ---------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(NAMES))
def test_every_op_keeps_dtype_and_shape(name):
    for shape in [(32, 32, 3), (40, 24, 3)]:
        x = rand_img(*shape)
        for level in range(10):
            y = run(name, x, level, seed=level)
            assert y.dtype == np.uint8 and y.shape == x.shape, (name, level)
    g = Image.fromarray(rand_img(32, 32, 1)[:, :, 0])          # grayscale (mode L) too
    assert OPS[name](g, 9, random.Random(0)).mode == 'L'


def test_invert():
    x = rand_img()
    np.testing.assert_array_equal(run('Invert', x, 7), 255 - x)
    np.testing.assert_array_equal(run('Invert', run('Invert', x, 3), 3), x)


def test_solarize_threshold_from_256_to_0():
    x = rand_img()
    np.testing.assert_array_equal(run('Solarize', x, 0), x)            # threshold 256
    np.testing.assert_array_equal(run('Solarize', x, 9), 255 - x)      # threshold 0
    for level in (2, 5):
        t = round(256 - 256 * level / 9)
        want = np.where(x >= t, 255 - x, x)
        np.testing.assert_array_equal(run('Solarize', x, level), want)


def test_posterize_bits_8_to_4():
    x = rand_img()
    np.testing.assert_array_equal(run('Posterize', x, 0), x)           # 8 bits
    np.testing.assert_array_equal(run('Posterize', x, 9), x & 0xF0)    # 4 bits: 4 low bits zeroed
    for level, bits in [(1, 8), (2, 7), (4, 6), (6, 5), (7, 5), (8, 4)]:
        mask = (0xFF << (8 - bits)) & 0xFF
        np.testing.assert_array_equal(run('Posterize', x, level), x & mask, err_msg=str(level))


@pytest.mark.parametrize('name', ['Brightness', 'Color', 'Contrast', 'Sharpness'])
def test_enhance_factor_one_is_identity(name):
    x = rand_img()
    np.testing.assert_array_equal(run(name, x, 4.5), x)                # 0.1 + 1.8 * 4.5/9 = 1


def test_brightness_factor_range():
    x = np.full((8, 8, 3), 200, np.uint8)
    assert np.all(run('Brightness', x, 0) == 20)                       # factor 0.1
    x = np.full((8, 8, 3), 100, np.uint8)
    assert np.all(run('Brightness', x, 9) == 190)                      # factor 1.9
    assert np.all(run('Brightness', x, 3) == 70)                       # factor 0.7


def test_color_level0_nearly_removes_saturation():
    x = np.zeros((8, 8, 3), np.uint8)
    x[..., 0] = 200
    x[..., 1:] = 50
    y = run('Color', x, 0).astype(int)                                 # factor 0.1
    spread = y.max(axis=2) - y.min(axis=2)
    assert np.all(np.abs(spread - 15) <= 1)                            # 0.1 * (200 - 50)


def test_contrast_level0_shrinks_deviations_tenfold():
    x = rand_img(seed=3)
    y = run('Contrast', x, 0).astype(float)
    assert 0.07 < y.std() / x.astype(float).std() < 0.13


@pytest.mark.parametrize('name', ['ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate'])
def test_geometric_magnitude_zero_is_identity(name):
    x = rand_img()
    for seed in range(4):                                              # either sign
        np.testing.assert_array_equal(run(name, x, 0, seed), x)


@pytest.mark.parametrize('size', [32, 224])
@pytest.mark.parametrize('axis', ['X', 'Y'])
def test_translate_moves_a_planted_pixel(size, axis):
    x = np.zeros((size, size, 3), np.uint8)
    y0 = x0 = size // 2
    x[y0, x0] = 255
    level = 9
    k = round(150 / 331 * level / 9 * size)                            # 15 px at 32, 102 at 224
    moves = set()
    for seed in range(12):
        y = run('Translate' + axis, x, level, seed)
        (yy, xx), = bright_spots(y)
        d = (xx - x0, yy - y0) if axis == 'X' else (yy - y0, xx - x0)
        assert d[0] in (k, -k) and d[1] == 0, (seed, d, k)
        moves.add(d[0])
        # the uncovered band is gray 128
        band = y[:, :k] if (axis == 'X' and d[0] > 0) else y[:, -k:] if axis == 'X' else \
            y[:k] if d[0] > 0 else y[-k:]
        assert np.all(band == 128)
    assert moves == {k, -k}                                            # both signs occur


def test_shear_x_moves_row_by_factor_times_y():
    size, level = 64, 9
    x = np.zeros((size, size, 3), np.uint8)
    y0, x0 = 50, 32
    x[y0, x0] = 255
    shifts = set()
    for seed in range(12):
        y = run('ShearX', x, level, seed)
        spots = bright_spots(y)
        assert spots and all(yy == y0 for yy, _ in spots)
        # output (x, y) samples input (x + s*y, y), s = +-0.3: the pixel moves by -s*y (+-15 px)
        shift = np.mean([xx for _, xx in spots]) - x0
        assert abs(abs(shift) - 0.3 * (y0 + 0.5)) <= 1.0, shift
        shifts.add(np.sign(shift))
    assert shifts == {-1.0, 1.0}
    corner = run('ShearX', np.full((32, 32, 3), 255, np.uint8), 9, seed=0)
    assert (corner == 128).any() and corner[0, 0, 0] == 255            # top row is fixed


def test_shear_y_moves_column_by_factor_times_x():
    x = np.zeros((64, 64, 3), np.uint8)
    x[32, 50] = 255
    for seed in range(6):
        spots = bright_spots(run('ShearY', x, 9, seed))
        assert spots and all(xx == 50 for _, xx in spots)
        shift = np.mean([yy for yy, _ in spots]) - 32
        assert abs(abs(shift) - 0.3 * 50.5) <= 1.0, shift


def test_rotate_30_degrees_at_level_9():
    size = 101
    c = (size - 1) / 2.0
    x = np.zeros((size, size, 3), np.uint8)
    r = 40
    x[int(c), int(c) + r] = 255                                        # on the horizontal axis
    angles = set()
    for seed in range(12):
        y = run('Rotate', x, 9, seed)
        spots = bright_spots(y)
        assert spots
        yy, xx = np.mean(spots, axis=0)
        angle = math.degrees(math.atan2(c - yy, xx - c))               # counter-clockwise, image y down
        assert abs(abs(angle) - 30) < 2.5, angle
        angles.add(np.sign(angle))
    assert angles == {-1.0, 1.0}
    white = run('Rotate', np.full((32, 32, 3), 255, np.uint8), 9)
    assert np.all(white[0, 0] == 128) and np.all(white[16, 16] == 255)  # gray corners


def test_auto_contrast_stretches_each_channel():
    rs = np.random.RandomState(1)
    x = np.stack([rs.randint(40, 90, (32, 32)), rs.randint(100, 201, (32, 32)),
                  rs.randint(0, 30, (32, 32))], axis=2).astype(np.uint8)
    y = run('AutoContrast', x, 5)
    for ch in range(3):
        xc, yc = x[..., ch].ravel(), y[..., ch].ravel()
        assert np.all(yc[xc == xc.min()] == 0) and np.all(yc[xc == xc.max()] == 255)
        lo, hi = int(xc.min()), int(xc.max())
        for v in np.unique(xc):                                        # linear in between
            want = math.floor((int(v) - lo) * 255 / (hi - lo) + 0.5)
            assert np.all(yc[xc == v] == want), (ch, v)
        order = np.argsort(xc, kind='stable')
        assert np.all(np.diff(yc[order].astype(int)) >= 0)             # monotone


def test_equalize_flattens_histogram_monotonically():
    rs = np.random.RandomState(2)
    x = rs.randint(100, 116, (32, 32, 3)).astype(np.uint8)             # 16 levels in a narrow band
    y = run('Equalize', x, 3)
    for ch in range(3):
        xc, yc = x[..., ch].ravel(), y[..., ch].ravel()
        order = np.argsort(xc, kind='stable')
        assert np.all(np.diff(yc[order].astype(int)) >= 0)
        assert yc.min() <= 20 and yc.max() >= 220                      # spread over the range
        # flatter: in 8 bins of width 32 the input has one full bin, the output no bin above 40%
        assert np.bincount(xc // 32, minlength=8).max() == xc.size
        assert np.bincount(yc // 32, minlength=8).max() < 0.4 * yc.size


def test_auto_contrast_leaves_constant_channel():
    x = rand_img()
    x[..., 1] = 90
    y = run('AutoContrast', x, 0)
    assert np.all(y[..., 1] == 90)
    assert y[..., 0].min() == 0 and y[..., 0].max() == 255


def test_sharpness_leaves_flat_image():
    x = np.full((16, 16, 3), 77, np.uint8)
    for level in (0, 9):
        np.testing.assert_array_equal(run('Sharpness', x, level), x)


# --- AutoAugment --------------------------------------------------------------------------------

def stream(aug, x, n=40):
    return np.stack([aug(x) for _ in range(n)])


def test_seeded_is_deterministic_and_seeds_differ():
    x = rand_img()
    a, b = stream(AutoAugment('cifar10', seed=5), x), stream(AutoAugment('cifar10', seed=5), x)
    np.testing.assert_array_equal(a, b)
    c = stream(AutoAugment('cifar10', seed=6), x)
    assert not np.array_equal(a, c)
    aug = AutoAugment('cifar10', seed=6)
    stream(aug, x, 7)
    aug.reseed(5)                                                      # restarts the stream
    np.testing.assert_array_equal(stream(aug, x), a)
    assert len({bytes(im) for im in a}) > 10                           # not a constant transform


def test_probability_one_applies_exactly_that_op():
    x = rand_img()
    np.testing.assert_array_equal(AutoAugment(((('Invert', 1.0, 3),),), seed=0)(x), 255 - x)
    aug = AutoAugment(((('Posterize', 1.0, 9), ('Solarize', 0.0, 9)),), seed=0)
    for _ in range(5):
        np.testing.assert_array_equal(aug(x), x & 0xF0)


def test_probability_zero_returns_input_unchanged():
    x = rand_img()
    before = x.copy()
    aug = AutoAugment(((('Invert', 0.0, 9), ('Rotate', 0.0, 9)), (('Equalize', 0.0, 5),)), seed=0)
    for _ in range(5):
        y = aug(x)
        assert y is x
    np.testing.assert_array_equal(x, before)


def test_output_is_a_new_writeable_array():
    x = rand_img()
    y = AutoAugment(((('Invert', 1.0, 0),),))(x)
    assert y is not x and y.flags.writeable and y.flags.c_contiguous


def test_subpolicies_are_drawn_uniformly():
    # sub-policy i inverts with probability 1 iff i == 0, so 1/3 of the outputs are inverted
    x = rand_img()
    pol = ((('Invert', 1.0, 0),), (('Invert', 0.0, 0),), (('Invert', 0.0, 0),))
    out = stream(AutoAugment(pol, seed=1), x, 600)
    frac = np.mean([np.array_equal(o, 255 - x) for o in out])
    assert abs(frac - 1 / 3) < 0.07


def test_pil_grayscale_and_type_errors():
    x = rand_img()
    inv = AutoAugment(((('Invert', 1.0, 0),),))
    out = inv(Image.fromarray(x))
    assert isinstance(out, Image.Image)
    np.testing.assert_array_equal(np.asarray(out), 255 - x)
    g = x[:, :, :1]
    np.testing.assert_array_equal(inv(g), 255 - g)                     # HW1 -> HW1
    np.testing.assert_array_equal(inv(g[:, :, 0]), 255 - g[:, :, 0])   # HW
    with pytest.raises(TypeError):
        inv(x.astype(np.float32))
    with pytest.raises(TypeError):
        AutoAugment(((('Invert', 0.0, 0),),))(x.astype(np.float32))   # even when nothing fires
    with pytest.raises(TypeError):
        inv(np.zeros((3, 32, 32), np.uint8))                            # CHW is not HWC


def test_forked_workers_do_not_replay_the_parent_stream(monkeypatch):
    x = rand_img()
    real = os.getpid()
    ref = stream(AutoAugment('cifar10', seed=5), x)                    # the parent's own stream
    outs = []
    for fake in (real + 1, real + 2, real + 1):
        worker = AutoAugment('cifar10', seed=5)                        # built in the parent ...
        monkeypatch.setattr(A.os, 'getpid', lambda fake=fake: fake)    # ... called in a worker
        outs.append(stream(worker, x))
        monkeypatch.setattr(A.os, 'getpid', lambda: real)
    assert not np.array_equal(outs[0], ref) and not np.array_equal(outs[1], ref)
    assert not np.array_equal(outs[0], outs[1])                        # workers differ
    np.testing.assert_array_equal(outs[0], outs[2])                    # from (seed, pid)


def test_dataloader_workers_differ():
    # a real forked DataLoader: each worker augments 16 identical images; the random translation
    # signs of the two batches coincide only if the workers replay one stream (or with p = 2**-16)
    import mxnet as mx
    x = np.zeros((16, 16, 3), np.uint8)
    x[8, 8] = 255
    aug = AutoAugment(((('TranslateX', 1.0, 9),),), seed=0)
    ds = mx.gluon.data.SimpleDataset([x] * 32).transform(aug)
    loader = mx.gluon.data.DataLoader(ds, batch_size=16, num_workers=2, batchify_fn=np.stack)
    b0, b1 = [np.asarray(b) for b in loader]
    assert len({bytes(im) for im in b0}) == 2                          # both signs occur
    assert not np.array_equal(b0, b1)


def test_ndarray_and_compose(seeded):
    import mxnet as mx
    from mxnet.gluon.data.vision import transforms
    for size in (32, 224):
        x = rand_img(size, size)
        nd = mx.nd.array(x, dtype=np.uint8)
        inv = AutoAugment(((('Invert', 1.0, 0),),))
        y = inv(nd)
        assert isinstance(y, mx.nd.NDArray) and y.dtype == np.uint8 and y.shape == (size, size, 3)
        np.testing.assert_array_equal(y.asnumpy(), 255 - x)

        block = A.AutoAugmentBlock('cifar10', seed=0)
        assert isinstance(block, mx.gluon.Block)
        t = transforms.Compose([block, transforms.ToTensor()])
        outs = [t(nd) for _ in range(8)]
        for o in outs:
            assert o.shape == (3, size, size) and o.dtype == np.float32
            assert 0.0 <= o.min().asscalar() and o.max().asscalar() <= 1.0
        assert len({o.asnumpy().tobytes() for o in outs}) > 1

        t = transforms.Compose([A.AutoAugmentBlock(((('Invert', 1.0, 0),),)), transforms.ToTensor()])
        want = (255 - x).transpose(2, 0, 1).astype(np.float32) / 255
        np.testing.assert_allclose(t(nd).asnumpy(), want, atol=1e-6)


def test_cli_writes_png(tmp_path):
    src, dst = tmp_path / 'in.png', tmp_path / 'out.png'
    Image.fromarray(rand_img()).save(src)
    r = subprocess.run([sys.executable, '-m', 'utils.augment', '--policy', 'cifar10', '--image',
                        str(src), '--out', str(dst), '--n', '16', '--seed', '0'],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with Image.open(dst) as im:
        assert im.format == 'PNG' and im.mode == 'RGB'
        tile = 32 * 4                                                  # auto zoom to 128 px
        assert im.size == (4 * tile + 3 * 2, 4 * tile + 3 * 2)
        assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 100
