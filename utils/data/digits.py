"""The embedded quick-start dataset: scikit-learn's bundled handwritten digits, made CIFAR-shaped.

``sklearn.datasets.load_digits()`` ships inside the scikit-learn package (no download): 1797 grey 8x8 images
with integer values 0..16 and 10 classes (0..9). :func:`load_digits32` turns them into CIFAR-like
(N, 32, 32, 3) ``uint8`` RGB images so that every CIFAR pipeline and network runs on them unchanged:

1. upsample 8x8 -> 32x32 with OpenCV bilinear interpolation (``cv2.resize(..., INTER_LINEAR)`` on float32:
   pixel centres aligned, edges replicated). The scale factor is exactly 4, so every weight is a multiple
   of 1/8 and every interpolated value is an exact multiple of 1/64 (no rounding, identical on every machine);
2. scale 0..16 -> 0..255 (x 255/16), round half to even, ``uint8``;
3. replicate the grey channel to 3 channels.

Split: ``sklearn.model_selection.train_test_split(indices, test_size=0.25, stratify=target, random_state=0)``
gives 1347 training and 450 test images, every class in both; it only depends on numpy's ``RandomState``
(stable across machines and numpy versions by contract). The test suite pins a fingerprint of the split so a
change of scikit-learn's algorithm would be caught.

``DIGITS_MEAN`` / ``DIGITS_STD`` are the per-channel mean/std of the training split in the 0..1 scale of
``ToTensor`` (the three channels are equal); the test suite recomputes them.
"""
import functools

import numpy as np

from net.errors import import_extra

N_DIGITS = 1797
NUM_CLASSES = 10
TEST_SIZE = 0.25
SPLIT_SEED = 0

#: Per-channel mean/std of the training split after ToTensor (values in 0..1); recomputed by the tests.
DIGITS_MEAN = (0.3052, 0.3052, 0.3052)
DIGITS_STD = (0.3236, 0.3236, 0.3236)


def upsample32(grey8):
    """(N, 8, 8) values 0..16 -> (N, 32, 32, 3) uint8 0..255 (bilinear, see the module docstring)."""
    import cv2
    grey8 = np.asarray(grey8, dtype=np.float32)
    up = np.stack([cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR) for img in grey8])
    scaled = np.clip(np.round(up.astype(np.float64) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=3)


def _sklearn(module):
    return import_extra(module, 'scikit-learn', 'demo', 'the digits data set (--dataset digits)')


def split_indices():
    """(train indices, test indices) of the fixed stratified split, each sorted ascending."""
    train_test_split = _sklearn('sklearn.model_selection').train_test_split
    target = _raw()[1]
    train, test = train_test_split(np.arange(N_DIGITS), test_size=TEST_SIZE, stratify=target,
                                   random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


@functools.lru_cache(maxsize=1)
def _raw():
    bunch = _sklearn('sklearn.datasets').load_digits()
    return bunch.images, bunch.target


@functools.lru_cache(maxsize=1)
def _converted():
    images, target = _raw()
    train, test = split_indices()
    up = upsample32(images)
    labels = target.astype(np.int32)
    return {True: (up[train], labels[train]), False: (up[test], labels[test])}


def load_digits32(train=True):
    """(images uint8 (N, 32, 32, 3), labels int32) of the training (1347) or test (450) split."""
    images, labels = _converted()[bool(train)]
    return images.copy(), labels.copy()
