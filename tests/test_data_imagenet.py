"""ImageNet input pipelines (utils/data/imagenet.py) on tiny RecordIO files and image folders written here."""
import collections
import os
import struct
import zlib

import numpy as np
import pytest

import mxnet as mx

from utils.data import DataError
from utils.data import imagenet as I

S = 32                   # network input size used throughout (val resize = ceil(32 / 0.875) = 37)
INVERT = [[('Invert', 1.0, 0)]]        # an AutoAugment policy that always inverts the image


def _random_images(n, seed=0, h=48, w=64):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n)]


def _constant_images(colours, h=40, w=56):
    return [np.tile(np.array(c, np.uint8), (h, w, 1)) for c in colours]


def _labels(batches):
    return [int(v) for _, lab in batches for v in lab.asnumpy().ravel()]


def _iter_batches(source, limit=None):
    """(data numpy, label NDArray) per batch, copied at once (ImageRecordIter reuses its buffers)."""
    out = []
    if isinstance(source, mx.io.DataIter):
        source.reset()
        for i, b in enumerate(source):
            if limit is not None and i >= limit:
                break
            keep = b.data[0].shape[0] - (b.pad or 0)
            out.append((b.data[0][:keep].asnumpy(), mx.nd.array(b.label[0][:keep].asnumpy())))
    else:
        for i, (d, lab) in enumerate(source):
            if limit is not None and i >= limit:
                break
            out.append((d.asnumpy(), lab))
    return out


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert '\n' not in msg and msg.strip() == msg and msg, repr(msg)
    return msg


@pytest.fixture
def rec_pair(tmp_path):
    """train: 12 random 48x64 images with distinct labels; val: 10 images labelled 0..4 twice."""
    train_labels = [(7 * i) % 13 for i in range(12)]
    val_labels = [i % 5 for i in range(10)]
    tr = I.write_tiny_rec(str(tmp_path / 'rec' / 'train'), _random_images(12, 1), train_labels)
    va = I.write_tiny_rec(str(tmp_path / 'rec' / 'val'), _random_images(10, 2), val_labels)
    return tr, va, train_labels, val_labels


def _rec_iters(rec_pair, batch_size=4, **kw):
    (tr, tri), (va, vai), _, _ = rec_pair
    kw.setdefault('num_workers', 1)
    return I.rec_iters(tr, tri, va, vai, batch_size, input_size=S, **kw)


# ------------------------------------------------------------------------------------------------ RecordIO

def test_rec_train_batches_shapes_labels_and_counts(rec_pair):
    train, val, n_train, n_val = _rec_iters(rec_pair)
    assert isinstance(train, mx.io.DataIter)
    assert (n_train, n_val) == (12, 10)
    batches = _iter_batches(train, limit=3)          # 12 / 4: one epoch, no wrap-around
    assert len(batches) == 3
    for d, lab in batches:
        assert d.shape == (4, 3, S, S) and d.dtype == np.float32 and lab.dtype == np.float32
    data = np.concatenate([d for d, _ in batches])
    assert np.isfinite(data).all()
    assert abs(data.mean()) < 0.6 and 0.5 < data.std() < 2.5       # ~ (uniform - 124) / 58
    assert sorted(_labels(batches)) == sorted(rec_pair[2])


def test_rec_normalisation_and_rgb_order(tmp_path):
    colours = [(200, 30, 90), (10, 240, 128), (90, 90, 250)]
    tr = I.write_tiny_rec(str(tmp_path / 'train'), _constant_images(colours), [0, 1, 2])
    va = I.write_tiny_rec(str(tmp_path / 'val'), _constant_images(colours), [0, 1, 2])
    train, val, _, _ = I.rec_iters(*tr, *va, 3, input_size=S, num_workers=1, jitter=0, lighting=0)
    want = (np.array(colours, np.float64) - I.REC_MEAN_RGB) / I.REC_STD_RGB       # (3 images, RGB)
    (d, lab), = _iter_batches(val)
    assert d.shape == (3, 3, S, S)
    np.testing.assert_allclose(d.mean(axis=(2, 3)), want, atol=1e-3)
    np.testing.assert_allclose(d.std(axis=(2, 3)), 0, atol=1e-3)
    # training without jitter/lighting: crop + flip of a constant image stays that image
    (d, lab), = _iter_batches(train, limit=1)
    got = d.mean(axis=(2, 3))[np.argsort(lab.asnumpy())]
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_rec_validation_counts_every_image_once(rec_pair):
    _, val, _, n_val = _rec_iters(rec_pair, batch_size=4)
    assert isinstance(val, mx.io.DataIter)
    for _ in range(3):                                   # reset before each pass, as the trainer does
        batches = _iter_batches(val)
        assert [d.shape[0] for d, _ in batches] == [4, 4, 2]
        assert collections.Counter(_labels(batches)) == collections.Counter(rec_pair[3])
    # the same records with MXNet's defaults (the official validation): the last batch wraps round
    (_, _), (va, vai), _, _ = rec_pair
    raw = mx.io.ImageRecordIter(path_imgrec=va, path_imgidx=vai, data_shape=(3, S, S), batch_size=4,
                                resize=37, verbose=False)
    seen = [int(v) for b in raw for v in b.label[0].asnumpy()]
    assert len(seen) == 12 and n_val == 10


def test_rec_validation_batch_larger_than_set(rec_pair):
    _, val, _, _ = _rec_iters(rec_pair, batch_size=16)
    batches = _iter_batches(val)
    assert [d.shape[0] for d, _ in batches] == [10]
    assert sorted(_labels(batches)) == sorted(rec_pair[3])


def test_rec_auto_augment_is_applied(tmp_path):
    colours = [(250, 5, 5)] * 4 + [(5, 250, 130)] * 4
    labels = [0] * 4 + [1] * 4
    tr = I.write_tiny_rec(str(tmp_path / 'train'), _constant_images(colours), labels)
    va = I.write_tiny_rec(str(tmp_path / 'val'), _constant_images(colours[:2]), labels[:2])
    mean, std = np.array(I.REC_MEAN_RGB), np.array(I.REC_STD_RGB)

    def per_label(train):
        batches = _iter_batches(train)
        assert sum(d.shape[0] for d, _ in batches) == 8
        data = np.concatenate([d for d, _ in batches]).mean(axis=(2, 3))
        labs = np.concatenate([lab.asnumpy() for _, lab in batches])
        return {k: data[labs == k] for k in (0, 1)}

    exact = dict(input_size=S, num_workers=0, jitter=0, lighting=0)
    plain, _, _, _ = I.rec_iters(*tr, *va, 4, auto_augment=False, **exact)
    inverted, _, _, _ = I.rec_iters(*tr, *va, 4, auto_augment=INVERT, seed=3, **exact)
    assert isinstance(inverted, mx.gluon.data.DataLoader)
    got_plain, got_inv = per_label(plain), per_label(inverted)
    for k, c in ((0, colours[0]), (1, colours[4])):
        np.testing.assert_allclose(got_plain[k], np.tile((np.array(c) - mean) / std, (4, 1)), atol=1e-3)
        np.testing.assert_allclose(got_inv[k], np.tile((255 - np.array(c) - mean) / std, (4, 1)), atol=1e-3)
    # with the official jitter and lighting the inversion still flips which channel is brighter
    jittered, _, _, _ = I.rec_iters(*tr, *va, 4, input_size=S, num_workers=0, auto_augment=INVERT)
    got = per_label(jittered)
    assert (got[0][:, 0] < got[0][:, 1]).all() and (got[1][:, 0] > got[1][:, 1]).all()
    # the ImageNet policy (auto_augment=True) runs on the decoded images
    real, _, _, _ = I.rec_iters(*tr, *va, 4, input_size=S, num_workers=0, auto_augment=True, seed=0)
    for d, lab in _iter_batches(real):
        assert d.shape == (4, 3, S, S) and d.dtype == np.float32 and np.isfinite(d).all()


def _steps(block):
    """Names of the leaf transforms of a Compose (which groups hybrid steps into HybridSequentials)."""
    kids = list(block._children.values())
    if not kids:
        return [type(block).__name__]
    return [n for k in kids for n in _steps(k)]


def test_auto_augment_runs_before_the_crop():
    tf = I.imagenet_train_transform(S, auto_augment=I._auto_augment_block(True, 0))
    assert _steps(tf) == ['AutoAugmentBlock', 'RandomResizedCrop', 'RandomFlipLeftRight', 'RandomColorJitter',
                          'RandomLighting', 'ToTensor', 'Normalize']
    assert _steps(I.imagenet_train_transform(S, jitter=0, lighting=0)) == [
        'RandomResizedCrop', 'RandomFlipLeftRight', 'ToTensor', 'Normalize']


def test_rec_sharding_parts_are_disjoint_and_complete(rec_pair):
    labels_of = {}
    for rank in (0, 1):
        train, _, n_train, _ = _rec_iters(rec_pair, batch_size=3, rank=rank, num_workers_dist=2)
        begin, end = I.rec_part_range(n_train, rank, 2)
        labels_of[rank] = _labels(_iter_batches(train, limit=(end - begin) // 3))
        assert sorted(labels_of[rank]) == sorted(rec_pair[2][begin:end])
    assert not set(labels_of[0]) & set(labels_of[1])
    assert sorted(labels_of[0] + labels_of[1]) == sorted(rec_pair[2])


def test_rec_part_range_matches_mxnet_split():
    assert [I.rec_part_range(23, p, 4) for p in range(4)] == [(0, 6), (6, 12), (12, 18), (18, 23)]
    assert [I.rec_part_range(23, p, 3) for p in range(3)] == [(0, 8), (8, 16), (16, 23)]
    assert I.rec_part_range(9, 3, 4) == (9, 9)


def test_rec_auto_augment_sharding(rec_pair):
    labels_of = []
    for rank in (0, 1):
        train, _, _, _ = _rec_iters(rec_pair, batch_size=3, rank=rank, num_workers_dist=2,
                                    auto_augment=INVERT, num_workers=0)
        labels_of.append(_labels(_iter_batches(train)))
        assert len(labels_of[-1]) == 6
    assert sorted(labels_of[0] + labels_of[1]) == sorted(rec_pair[2])


# ------------------------------------------------------------------------------------------------ folders

@pytest.fixture
def folder(tmp_path):
    """train: 12 images, one per class (so labels identify images); val: 10 images of classes 0..4."""
    root = str(tmp_path / 'imagenet')
    train_labels, val_labels = list(range(12)), [i % 5 for i in range(10)]
    I.write_tiny_folder(root, 'train', _random_images(12, 3), train_labels)
    I.write_tiny_folder(root, 'val', _random_images(10, 4), val_labels, num_classes=12)
    return root, train_labels, val_labels


def test_folder_batches_and_validation_once(folder):
    root, train_labels, val_labels = folder
    train, val, n_train, n_val = I.folder_loaders(root, 4, input_size=S, num_workers=0)
    assert (n_train, n_val) == (12, 10)
    batches = _iter_batches(train)
    assert len(batches) == 3
    for d, lab in batches:
        assert d.shape == (4, 3, S, S) and d.dtype == np.float32 and lab.dtype == np.float32
    assert sorted(_labels(batches)) == train_labels
    for _ in range(2):
        vb = _iter_batches(val)
        assert [d.shape[0] for d, _ in vb] == [4, 4, 2]
        assert collections.Counter(_labels(vb)) == collections.Counter(val_labels)


def test_folder_validation_with_worker_processes(folder):
    root, _, val_labels = folder
    _, val, _, _ = I.folder_loaders(root, 4, input_size=S, num_workers=2)
    assert collections.Counter(_labels(_iter_batches(val))) == collections.Counter(val_labels)


def test_folder_normalisation_and_val_crop(tmp_path):
    colours = [(200, 30, 90), (10, 240, 128)]
    root = str(tmp_path / 'im')
    I.write_tiny_folder(root, 'train', _constant_images(colours), [0, 1])
    imgs = _constant_images(colours, h=40, w=80)
    imgs[0][:, :20] = 0                      # black side bands that the centre crop of the val resize drops
    imgs[0][:, -20:] = 0
    I.write_tiny_folder(root, 'val', imgs, [0, 1])
    _, val, _, _ = I.folder_loaders(root, 2, input_size=S)
    (d, lab), = _iter_batches(val)
    want = (np.array(colours) / 255.0 - I.IMAGENET_MEAN) / I.IMAGENET_STD
    np.testing.assert_allclose(d.mean(axis=(2, 3)), want, atol=1e-3)
    assert _labels([(d, lab)]) == [0, 1]


def test_folder_auto_augment_is_applied(tmp_path):
    colours = [(250, 5, 5), (5, 250, 130)]
    root = str(tmp_path / 'im')
    I.write_tiny_folder(root, 'train', _constant_images(colours), [0, 1])
    I.write_tiny_folder(root, 'val', _constant_images(colours), [0, 1])
    train, _, _, _ = I.folder_loaders(root, 2, input_size=S, auto_augment=INVERT, jitter=0, lighting=0)
    (d, lab), = _iter_batches(train)
    got = d.mean(axis=(2, 3))[np.argsort(lab.asnumpy())]
    want = ((255 - np.array(colours)) / 255.0 - I.IMAGENET_MEAN) / I.IMAGENET_STD
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_folder_sharding_disjoint_complete_equal_batches(folder):
    root, train_labels, _ = folder
    seen = []
    for rank in (0, 1):
        train, _, _, _ = I.folder_loaders(root, 3, input_size=S, rank=rank, num_workers_dist=2, seed=5)
        labels = _labels(_iter_batches(train))
        assert len(labels) == 6
        seen.append(labels)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == train_labels
    # 13 images over 2 workers: shards of 6 and 7, but both run 6 // 3 = 2 batches per epoch
    shards = [I.ShardBatchSampler(13, 3, r, 2, seed=1) for r in (0, 1)]
    assert sorted(np.concatenate([s.indices for s in shards]).tolist()) == list(range(13))
    assert [len(s) for s in shards] == [2, 2] and [len(list(s)) for s in shards] == [2, 2]
    a, b = (I.ShardBatchSampler(13, 3, 1, 2, seed=1) for _ in range(2))
    first_a, first_b = list(a), list(b)
    assert first_a == first_b and list(a) != first_a       # reproducible; reshuffled each epoch


# ------------------------------------------------------------------------------------------------ errors

def test_missing_rec_and_idx(rec_pair, tmp_path):
    (tr, tri), (va, vai), _, _ = rec_pair
    with pytest.raises(DataError) as e:
        I.rec_iters(str(tmp_path / 'nope.rec'), tri, va, vai, 4, input_size=S)
    assert 'nope.rec' in _one_line(e) and 'im2rec' in str(e.value) and '--rec-train' in str(e.value)
    with open(vai) as f:
        original = f.read()
    os.remove(vai)
    with pytest.raises(DataError) as e:
        I.rec_iters(tr, tri, va, vai, 4, input_size=S)
    assert 'val.idx' in _one_line(e) and '--rec-val-idx' in str(e.value)
    assert I.index_rec(va, vai) == 10                       # the suggested fix works
    with open(vai) as f:
        assert f.read() == original
    _, val, _, n_val = I.rec_iters(tr, tri, va, vai, 4, input_size=S, num_workers=1)
    assert n_val == 10 and len(_labels(_iter_batches(val))) == 10


def test_truncated_rec_raises_one_line(rec_pair):
    (tr, tri), (va, vai), _, _ = rec_pair
    size = os.path.getsize(tr)
    with open(tr, 'r+b') as f:
        f.truncate(size - 100)
    with pytest.raises(DataError) as e:
        I.rec_iters(tr, tri, va, vai, 4, input_size=S)
    msg = _one_line(e)
    assert 'train.rec' in msg and 'truncated' in msg
    with open(tr, 'r+b') as f:
        f.truncate(size // 2)                              # the index now points past the end
    with pytest.raises(DataError) as e:
        I.verify_rec(tr, tri)
    assert 'truncated' in _one_line(e)


def test_garbled_record_payload(rec_pair):
    (tr, tri), _, _, _ = rec_pair
    offsets = [off for _, off in I.read_rec_index(tri)]
    with open(tr, 'r+b') as f:                 # keep the RecordIO headers, destroy record 3's PNG data
        f.seek(offsets[3] + 8 + 24 + 40)
        f.write(b'\0' * 400)
    assert I.verify_rec(tr, tri, 'full') == 12             # structure intact
    with pytest.raises(DataError) as e:
        I.verify_rec(tr, tri, 'decode')
    assert 'decode' in _one_line(e) and 'train.rec' in str(e.value)
    ds = I.RecordImageDataset(tr, tri)
    assert ds[2][0].shape == (48, 64, 3)
    with pytest.raises(DataError) as e:
        ds[3]
    assert 'record 3' in _one_line(e)


def test_bad_index_and_mismatched_pair(rec_pair, tmp_path):
    (tr, tri), (va, vai), _, _ = rec_pair
    bad = tmp_path / 'bad.idx'
    bad.write_text('0\t0\nnot an index\n')
    with pytest.raises(DataError) as e:
        I.verify_rec(tr, str(bad))
    assert 'line 2' in _one_line(e)
    shifted = tmp_path / 'shifted.idx'
    shifted.write_text(''.join(f'{k}\t{off + 4}\n' for k, off in I.read_rec_index(tri)))
    with pytest.raises(DataError) as e:
        I.verify_rec(tr, str(shifted))
    assert 'RecordIO header' in _one_line(e)


def test_folder_errors(tmp_path, folder):
    root = str(tmp_path / 'x')
    with pytest.raises(DataError) as e:
        I.folder_loaders(root, 4, input_size=S)
    assert 'not found' in _one_line(e)
    os.makedirs(os.path.join(root, 'train', 'c00000'))
    os.makedirs(os.path.join(root, 'val', 'c00000'))
    with pytest.raises(DataError) as e:                    # class folders without images
        I.folder_loaders(root, 4, input_size=S)
    assert 'no .jpg/.jpeg/.png images' in _one_line(e)
    I.write_tiny_folder(root, 'train', _random_images(4), [0, 0, 0, 0])
    # val images lying loose in val/ (the ImageNet val archive layout), not in class folders
    os.rmdir(os.path.join(root, 'val', 'c00000'))
    from PIL import Image
    Image.fromarray(_random_images(1)[0]).save(os.path.join(root, 'val', 'ILSVRC2012_val_00000001.JPEG'))
    with pytest.raises(DataError) as e:
        I.folder_loaders(root, 4, input_size=S)
    assert 'class sub-folders' in _one_line(e)
    other = str(tmp_path / 'y')
    I.write_tiny_folder(other, 'train', _random_images(4), [0, 1, 0, 1])
    with pytest.raises(DataError) as e:                    # val missing
        I.folder_loaders(other, 4, input_size=S)
    assert os.path.join(other, 'val') in _one_line(e)
    I.write_tiny_folder(other, 'val', _random_images(2), [0, 1], class_names=['c00000', 'zzz'])
    with pytest.raises(DataError) as e:                    # a val class the train split does not have
        I.folder_loaders(other, 4, input_size=S)
    assert "'zzz'" in _one_line(e)
    fr, _, _ = folder
    with pytest.raises(DataError) as e:                    # a shard smaller than one batch
        I.folder_loaders(fr, 8, input_size=S, rank=1, num_workers_dist=2)
    _one_line(e)


def test_val_resize_and_constants():
    assert I.val_resize(224, 0.875) == 256 and I.val_resize(S, 0.875) == 37
    np.testing.assert_allclose(np.array(I.REC_STD_RGB) / 255, I.IMAGENET_STD, atol=1e-3)
    assert (I.JITTER, I.LIGHTING, I.RRC_AREA) == (0.4, 0.1, (0.08, 1.0))


def test_multi_part_record(tmp_path):
    """dmlc RecordIO splits a record where its payload holds the magic word at a 4-aligned offset (about 8
    ImageNet JPEGs would); the header walk, the index rebuild and the decode check must follow the parts."""
    import cv2
    img = _random_images(1, 7)[0]
    png = cv2.imencode('.png', img[:, :, ::-1])[1].tobytes()
    magic = struct.pack('<I', 0xced7230a)
    # a tEXt chunk after IHDR; the record payload is 24 header bytes + PNG, so the chunk data starts at
    # 24 + 33 + 8 = 65 and the magic, after b'k\0' and one filler byte, at 68 (4-aligned)
    data = b'k\0' + b'x' + magic + b'pad'
    chunk = struct.pack('>I', len(data)) + b'tEXt' + data + struct.pack('>I', zlib.crc32(b'tEXt' + data))
    png = png[:33] + chunk + png[33:]
    prefix = str(tmp_path / 'multi')
    w = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    for i in range(3):
        w.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0), png))
    w.close()
    with open(prefix + '.rec', 'rb') as f:
        head = f.read(8)
    assert struct.unpack('<II', head)[1] >> 29 == 1          # really split into parts
    with open(prefix + '.idx') as f:
        written = f.read()
    assert I.verify_rec(prefix + '.rec', prefix + '.idx', 'decode') == 3
    assert I.index_rec(prefix + '.rec', prefix + '.idx') == 3
    with open(prefix + '.idx') as f:
        assert f.read() == written
    got, label = I.RecordImageDataset(prefix + '.rec', prefix + '.idx')[2]
    assert label == 2 and (got.asnumpy() == img).all()
