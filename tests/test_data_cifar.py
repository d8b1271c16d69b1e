"""utils/data: the CIFAR binary files (generated here in the exact real format), the embedded digits set, the
official transforms and loaders. Never reads real data or the network."""
import hashlib
import math
import os
import random
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

import utils.data as D
from utils.data import cifar as C
from utils.data import digits as G
from utils.data import transforms as T

URL10 = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
URL100 = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'
# The format definition, written out independently of the module under test.
REC10, REC100, PLANE = 1 + 3072, 2 + 3072, 32 * 32
TRAIN10 = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin']


def images_of(n, seed):
    return np.random.RandomState(seed).randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)


def labels_of(n, k, seed):
    return np.random.RandomState(seed).randint(0, k, size=n)


def one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and '\n' not in msg, repr(msg)
    return msg


def sha1_of(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


@pytest.fixture
def cifar100(tmp_path):
    """A small CIFAR-100 train + test set in tmp_path; returns the dict of what was written."""
    out = {}
    for train, n, seed in ((True, 120, 1), (False, 37, 2)):
        x, fine, coarse = images_of(n, seed), labels_of(n, 100, seed + 10), labels_of(n, 20, seed + 20)
        C.write_cifar(tmp_path, 'cifar100', train, x, fine, coarse_labels=coarse)
        out[train] = (x, fine, coarse)
    return out


# --- the binary format ------------------------------------------------------------------------------------

def test_cifar10_round_trip_and_orientation(tmp_path):
    x, y = images_of(203, 0), labels_of(203, 10, 1)
    x[0] = 0
    x[0, 3, 5] = (255, 0, 0)                     # a red pixel at row 3, column 5
    paths = C.write_cifar(tmp_path, 'cifar10', True, x, y)
    assert [os.path.basename(p) for p in paths] == TRAIN10
    # 203 records spread as evenly as possible over the 5 batch files
    assert [os.path.getsize(tmp_path / n) // REC10 for n in TRAIN10] == [41, 41, 41, 40, 40]
    assert all(os.path.getsize(tmp_path / n) % REC10 == 0 for n in TRAIN10)
    xt, yt = images_of(31, 2), labels_of(31, 10, 3)
    C.write_cifar(tmp_path, 'cifar10', False, xt, yt)
    assert os.path.getsize(tmp_path / 'test_batch.bin') == 31 * REC10

    raw = np.fromfile(tmp_path / 'data_batch_1.bin', dtype=np.uint8)
    assert raw[0] == y[0]
    assert raw[1 + 3 * 32 + 5] == 255 and raw[1 + PLANE + 3 * 32 + 5] == 0 and raw[1:1 + 3 * PLANE].sum() == 255

    got_x, got_y = D.read_cifar(tmp_path, 'cifar10', train=True, verify=False)
    assert got_x.shape == (203, 32, 32, 3) and got_x.dtype == np.uint8 and got_x.flags['C_CONTIGUOUS']
    assert got_y.dtype == np.int32
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    assert tuple(got_x[0, 3, 5]) == (255, 0, 0) and int(got_x[0].sum()) == 255
    got_xt, got_yt = D.read_cifar(tmp_path, 'cifar10', train=False, verify=False)
    np.testing.assert_array_equal(got_xt, xt)
    np.testing.assert_array_equal(got_yt, yt)


def test_cifar100_round_trip_fine_and_coarse(tmp_path, cifar100):
    for train in (True, False):
        x, fine, coarse = cifar100[train]
        assert (fine != coarse).any()
        gx, gfine = D.read_cifar(tmp_path, 'cifar100', train=train, label_mode='fine', verify=False)
        gx2, gcoarse = D.read_cifar(tmp_path, 'cifar100', train=train, label_mode='coarse', verify=False)
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gx2, x)
        np.testing.assert_array_equal(gfine, fine)
        np.testing.assert_array_equal(gcoarse, coarse)
        assert gfine.dtype == gcoarse.dtype == np.int32
    # the default is the 100 fine labels (the official script's coarse default was a bug)
    np.testing.assert_array_equal(D.read_cifar(tmp_path, verify=False)[1], cifar100[True][1])


def test_cifar100_byte_layout(tmp_path, cifar100):
    x, fine, coarse = cifar100[True]
    raw = np.fromfile(tmp_path / 'train.bin', dtype=np.uint8)
    assert raw.size == 120 * REC100
    rec = raw.reshape(120, REC100)
    assert rec[0, 0] == coarse[0] and rec[0, 1] == fine[0]                     # coarse byte, then fine byte
    np.testing.assert_array_equal(rec[0, 2:2 + PLANE], x[0, :, :, 0].ravel())             # R plane, row-major
    np.testing.assert_array_equal(rec[0, 2 + PLANE:2 + 2 * PLANE], x[0, :, :, 1].ravel())  # G
    np.testing.assert_array_equal(rec[0, 2 + 2 * PLANE:], x[0, :, :, 2].ravel())           # B
    np.testing.assert_array_equal(rec[:, 0], coarse)
    np.testing.assert_array_equal(rec[:, 1], fine)


@pytest.mark.parametrize('dataset', ['cifar10', 'cifar100'])
@pytest.mark.parametrize('in_subfolder', [False, True])
def test_both_directory_layouts(tmp_path, dataset, in_subfolder):
    sub = {'cifar10': 'cifar-10-batches-bin', 'cifar100': 'cifar-100-binary'}[dataset]
    target = tmp_path / sub if in_subfolder else tmp_path
    x, y = images_of(10, 5), labels_of(10, 10, 6)
    C.write_cifar(target, dataset, False, x, y, coarse_labels=y if dataset == 'cifar100' else None)
    gx, gy = D.read_cifar(tmp_path, dataset, train=False, verify=False)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


def test_archive_subfolder_wins_over_top_level(tmp_path):
    x, y = images_of(6, 7), labels_of(6, 10, 8)
    C.write_cifar(tmp_path, 'cifar10', False, 255 - x, y)
    C.write_cifar(tmp_path / 'cifar-10-batches-bin', 'cifar10', False, x, y)
    np.testing.assert_array_equal(D.read_cifar(tmp_path, 'cifar10', False, verify=False)[0], x)


# --- checksums ----------------------------------------------------------------------------------------------

def test_checksum_mismatch_names_file_hashes_and_fix(tmp_path, cifar100):
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar100', train=False)              # verify=True by default
    msg = one_line(e)
    path = str(tmp_path / 'test.bin')
    assert 'checksum' in msg and path in msg and '--skip-checksum' in msg and URL100 in msg
    assert sha1_of(path) in msg and '8fb6623e830365ff53cf14adec797474f5478006' in msg


class _CountingHashlib:
    def __init__(self):
        self.calls = 0

    def sha1(self, *args):
        self.calls += 1
        return hashlib.sha1(*args)


def test_checksum_match_and_hash_cache(tmp_path, monkeypatch):
    x, y = images_of(25, 9), labels_of(25, 10, 10)
    C.write_cifar(tmp_path, 'cifar10', True, x, y)
    for name in TRAIN10:
        monkeypatch.setitem(C.CIFAR_SHA1['cifar10'], name, sha1_of(tmp_path / name))
    counter = _CountingHashlib()
    monkeypatch.setattr(C, 'hashlib', counter)
    gx, gy = D.read_cifar(tmp_path, 'cifar10', train=True, verify=True)
    np.testing.assert_array_equal(gx, x)
    assert counter.calls == 5
    D.read_cifar(tmp_path, 'cifar10', train=True, verify=True)
    assert counter.calls == 5                                     # each file hashed once per process
    # a rewritten file is hashed again (and now mismatches)
    x[3, 0, 0, 0] ^= 1
    C.write_cifar(tmp_path, 'cifar10', True, x, y)
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar10', train=True, verify=True)
    assert 'data_batch_1.bin' in one_line(e) and counter.calls == 6
    np.testing.assert_array_equal(D.read_cifar(tmp_path, 'cifar10', train=True, verify=False)[0], x)


# --- user errors: one line, naming the problem and the fix --------------------------------------------------

def test_missing_files(tmp_path):
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar10', train=True)
    msg = one_line(e)
    assert all(n in msg for n in TRAIN10) and URL10 in msg and str(tmp_path) in msg
    assert os.path.join(str(tmp_path), 'cifar-10-batches-bin', 'data_batch_1.bin') in msg

    C.write_cifar(tmp_path, 'cifar10', True, images_of(10, 1), labels_of(10, 10, 1))
    os.remove(tmp_path / 'data_batch_3.bin')
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar10', train=True, verify=False)
    msg = one_line(e)
    assert 'data_batch_3.bin' in msg and 'data_batch_1.bin,' not in msg and URL10 in msg

    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path / 'nowhere', 'cifar100', train=False)
    msg = one_line(e)
    assert 'test.bin' in msg and URL100 in msg
    assert os.path.join(str(tmp_path / 'nowhere'), 'cifar-100-binary', 'test.bin') in msg


@pytest.mark.parametrize('verify', [False, True])
def test_truncated_and_empty_files(tmp_path, cifar100, verify):
    path = tmp_path / 'train.bin'
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar100', train=True, verify=verify)
    msg = one_line(e)
    assert 'truncated' in msg and str(path) in msg and URL100 in msg
    open(path, 'wb').close()
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar100', train=True, verify=verify)
    msg = one_line(e)
    assert 'empty dataset' in msg and str(path) in msg


def test_label_out_of_range_is_corrupt(tmp_path):
    C.write_cifar(tmp_path, 'cifar10', False, images_of(4, 1), labels_of(4, 10, 1))
    raw = bytearray((tmp_path / 'test_batch.bin').read_bytes())
    raw[REC10] = 10                                                  # label of record 1
    (tmp_path / 'test_batch.bin').write_bytes(bytes(raw))
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar10', train=False, verify=False)
    assert 'label 10' in one_line(e)


def test_label_modes_and_class_counts(tmp_path):
    with pytest.raises(D.DataError) as e:
        D.read_cifar(tmp_path, 'cifar10', label_mode='coarse')
    assert 'coarse' in one_line(e) and 'cifar100' in str(e.value)
    for bad in (dict(dataset='cifar1000'), dict(label_mode='medium')):
        with pytest.raises(D.DataError) as e:
            D.read_cifar(tmp_path, **bad)
        one_line(e)
    assert D.num_classes('cifar10') == 10
    assert D.num_classes('cifar100') == D.num_classes('cifar100', 'fine') == 100
    assert D.num_classes('cifar100', 'coarse') == 20
    assert D.CIFAR_CLASSES == {'cifar10': 10, 'cifar100': {'fine': 100, 'coarse': 20}}
    with pytest.raises(D.DataError) as e:
        D.num_classes('cifar10', 'coarse')
    one_line(e)


def test_write_rejects_bad_input(tmp_path):
    x = images_of(5, 1)
    cases = [('cifar100', x, labels_of(5, 100, 1), None),          # no coarse labels
             ('cifar10', x, labels_of(5, 10, 1) + 10, None),        # label out of range
             ('cifar10', x[:, :, :, :1], labels_of(5, 10, 1), None),  # not HWC RGB
             ('cifar10', x[:4], labels_of(4, 10, 1), None)]          # fewer images than batch files
    for dataset, images, labels, coarse in cases:
        with pytest.raises(D.DataError) as e:
            C.write_cifar(tmp_path, dataset, True, images, labels, coarse_labels=coarse)
        one_line(e)
    assert not os.listdir(tmp_path)


# --- the embedded digits set -------------------------------------------------------------------------------

def _bilinear_x4(grey8):
    """8x8 -> 32x32 bilinear from the definition: pixel centres aligned, coordinates clamped to the edge."""
    src = (np.arange(32) + 0.5) / 4 - 0.5
    src = np.clip(src, 0, 7)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, 7)
    w = src - i0
    rows = grey8[:, i0, :] * (1 - w)[None, :, None] + grey8[:, i1, :] * w[None, :, None]
    return rows[:, :, i0] * (1 - w) + rows[:, :, i1] * w


def test_digits32():
    from sklearn.datasets import load_digits
    x, y = D.load_digits32(train=True)
    xt, yt = D.load_digits32(train=False)
    assert x.shape == (1347, 32, 32, 3) and xt.shape == (450, 32, 32, 3) and len(x) + len(xt) == 1797
    assert x.dtype == xt.dtype == np.uint8 and y.dtype == yt.dtype == np.int32
    assert set(y.tolist()) == set(yt.tolist()) == set(range(10))
    assert x.min() == 0 and x.max() == 255 and xt.max() == 255
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 0] == x[..., 2]).all()
    # stratified: every class keeps its share in the test split
    assert np.abs(np.bincount(yt) / len(yt) - np.bincount(y) / len(y)).max() < 0.01
    # deterministic, and the same on every machine (fingerprint of this exact split and conversion)
    x2, y2 = D.load_digits32(train=True)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert hashlib.sha1(x.tobytes()).hexdigest() == 'bb5d0af6f83193af3e27dd9f9c7a67260e1a37dd'
    train_idx, test_idx = G.split_indices()
    assert hashlib.sha1(test_idx.astype('<i8').tobytes()).hexdigest() == '6eb1e24df3ef4ed7315475bdbe8972f18a6ee54f'
    # the conversion follows its definition: bilinear x4, 0..16 -> 0..255
    raw = load_digits()
    want = np.round(_bilinear_x4(raw.images[test_idx]) * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(xt[..., 0], want)
    np.testing.assert_array_equal(yt, raw.target[test_idx])
    # the hard-coded normalisation constants are the training split's per-channel mean/std after ToTensor
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(D.DIGITS_MEAN, f.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(D.DIGITS_STD, f.std(axis=(0, 1, 2)), atol=1e-4)
    # copies: callers cannot corrupt the cache
    x[:] = 0
    assert D.load_digits32(train=True)[0].max() == 255


# --- transforms ------------------------------------------------------------------------------------------

def nd_image(a):
    return mx.nd.array(a, dtype=np.uint8)


def test_official_constants_and_normalisation():
    assert D.CIFAR_MEAN == (0.4914, 0.4822, 0.4465) and D.CIFAR_STD == (0.2023, 0.1994, 0.2010)
    colour = np.array([200, 100, 50], dtype=np.uint8)
    img = nd_image(np.broadcast_to(colour, (32, 32, 3)))
    want = (colour / 255.0 - np.array(D.CIFAR_MEAN)) / np.array(D.CIFAR_STD)
    out = D.test_transform().__call__(img).asnumpy()
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(want[:, None, None], out.shape), rtol=1e-5, atol=1e-5)
    mx.random.seed(0)
    random.seed(0)
    for _ in range(5):
        out = D.train_transform().__call__(img).asnumpy()
        assert out.shape == (3, 32, 32) and out.dtype == np.float32
        # the centre pixel is never padding (pad 4), so it is the normalised colour
        np.testing.assert_allclose(out[:, 16, 16], want, rtol=1e-5, atol=1e-5)


def test_random_crop_pads_with_zeros():
    tf = D.train_transform((0, 0, 0), (1, 1, 1))                 # identity normalisation: 255 -> 1, pad -> 0
    img = nd_image(np.full((32, 32, 3), 255, np.uint8))
    mx.random.seed(1)
    random.seed(1)
    shifts = set()
    for _ in range(40):
        out = tf(img).asnumpy()
        assert out.shape == (3, 32, 32) and set(np.unique(out)) <= {0.0, 1.0}
        rows, cols = np.flatnonzero(out[0].max(axis=1)), np.flatnonzero(out[0].max(axis=0))
        # the image is one contiguous block shifted by at most 4 pixels; the rest is zero padding
        assert len(rows) >= 28 and len(cols) >= 28
        assert out[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].min() == 1.0
        assert out.sum() == 3 * len(rows) * len(cols)
        shifts.add((rows[0], rows[-1], cols[0], cols[-1]))
    assert any(r0 > 0 or r1 < 31 for r0, r1, _, _ in shifts)    # some crops show zero rows
    assert len(shifts) > 5
    # pad=4: shifts of 0..4 pixels on either side, the full 4 on each side seen with this seed
    assert max(r0 for r0, _, _, _ in shifts) == 4 and min(r1 for _, r1, _, _ in shifts) == 27
    assert max(c0 for _, _, c0, _ in shifts) == 4 and min(c1 for _, _, _, c1 in shifts) == 27


def test_auto_augment_runs_first_on_the_uint8_image():
    seen = []
    img = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)

    def record(x):
        seen.append(x.asnumpy().copy())
        return mx.nd.zeros((40, 40, 3), dtype=np.uint8)            # only a later crop can make this 32x32

    out = D.train_transform(auto_augment=record)(nd_image(img))
    assert len(seen) == 1
    assert seen[0].dtype == np.uint8 and seen[0].shape == (32, 32, 3)
    np.testing.assert_array_equal(seen[0], img)                    # untouched: nothing ran before it
    assert out.shape == (3, 32, 32)                                # cropped after it
    # a Block is used as it is
    block = T._CallableBlock(lambda x: x)
    assert D.train_transform(auto_augment=block)[0] is block


def test_test_transform_is_deterministic():
    img = np.random.RandomState(1).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    tf = D.test_transform()
    a, b = tf(nd_image(img)).asnumpy(), tf(nd_image(img)).asnumpy()
    np.testing.assert_array_equal(a, b)
    want = (img.transpose(2, 0, 1) / 255.0 - np.array(D.CIFAR_MEAN)[:, None, None]) / \
        np.array(D.CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-5)


# --- datasets and loaders --------------------------------------------------------------------------------

def test_array_image_dataset():
    x, y = images_of(3, 4), labels_of(3, 10, 4)
    ds = D.ArrayImageDataset(x, y)
    img, label = ds[1]
    assert isinstance(img, mx.nd.NDArray) and img.dtype == np.uint8 and img.shape == (32, 32, 3)
    assert type(label) is int and label == y[1]
    np.testing.assert_array_equal(img.asnumpy(), x[1])
    t = ds.transform_first(D.test_transform())
    timg, tlabel = t[1]
    assert timg.shape == (3, 32, 32) and tlabel == y[1] and len(t) == 3
    with pytest.raises(D.DataError) as e:
        D.ArrayImageDataset(x.astype(np.float32), y)
    one_line(e)


@pytest.mark.parametrize('num_workers', [0, 2])
def test_loaders_last_batch(num_workers):
    x, y = images_of(10, 3), np.arange(10)
    ds = D.ArrayImageDataset(x, y)
    start = time.time()
    train = D.make_loader(ds, 4, train=True, num_workers=num_workers,
                          transform=D.train_transform(), timeout=30)
    test = D.make_loader(ds, 4, train=False, num_workers=num_workers,
                         transform=D.test_transform(), timeout=30)
    assert len(train) == 2 and len(test) == 3
    batches = list(train)
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32)] * 2
    labels = np.concatenate([b[1].asnumpy() for b in batches])
    assert len(set(labels.tolist())) == 8                          # 2 images dropped, none repeated
    batches = list(test)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1].asnumpy() for b in batches]), y)   # in order, all kept
    want = D.test_transform()(nd_image(x[9])).asnumpy()
    np.testing.assert_allclose(batches[-1][0][1].asnumpy(), want, rtol=1e-6)
    assert time.time() - start < 30
    del train, test


def test_iterations_per_epoch_and_shuffle():
    for n, batch in ((10, 4), (12, 4), (13, 5), (7, 7), (50, 8)):
        ds = D.ArrayImageDataset(images_of(n, n), np.arange(n))
        train = D.make_loader(ds, batch, train=True, num_workers=0)
        test = D.make_loader(ds, batch, train=False, num_workers=0)
        assert len(train) == sum(1 for _ in train) == n // batch
        assert len(test) == sum(1 for _ in test) == math.ceil(n / batch)
    mx.random.seed(0)
    np.random.seed(0)
    random.seed(0)
    orders = [np.concatenate([b[1].asnumpy() for b in train]).tolist() for _ in range(3)]
    assert len({tuple(o) for o in orders}) == 3 and orders[0] != sorted(orders[0])
    with pytest.raises(D.DataError) as e:
        D.make_loader(D.ArrayImageDataset(images_of(3, 1), np.arange(3)), 4, train=True)
    one_line(e)


class _Draws(gluon.data.Dataset):
    """Reports which process produced an item and a draw from MXNet's global random generator."""

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        time.sleep(0.03)                          # so that both workers get batches
        return os.getpid(), float(mx.nd.random.uniform().asscalar()), float(np.random.uniform())


def test_worker_processes_get_their_own_random_state():
    # MXNet forks its workers without reseeding: without make_loader's per-process reseed, every worker
    # would repeat its siblings' flips (MXNet RNG) and numpy draws.
    loader = D.make_loader(_Draws(), 2, train=False, num_workers=2, timeout=30)
    per_pid = {}
    for pids, u_mx, u_np in loader:
        for item in zip(pids.asnumpy().tolist(), u_mx.asnumpy().tolist(), u_np.asnumpy().tolist()):
            per_pid.setdefault(item[0], []).append(item[1:])
    assert len(per_pid) == 2 and os.getpid() not in per_pid
    a, b = (v[0] for v in per_pid.values())
    assert a[0] != b[0] and a[1] != b[1]
    del loader
