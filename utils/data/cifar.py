"""CIFAR-10 / CIFAR-100 in the official *binary* format: read, verify, write. Never downloads.

File formats (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"):

* CIFAR-10: ``data_batch_1.bin`` ... ``data_batch_5.bin`` (train, 10000 records each) and ``test_batch.bin``;
  a record is 1 label byte (0..9) followed by 3072 image bytes.
* CIFAR-100: ``train.bin`` (50000 records) and ``test.bin`` (10000); a record is the coarse label byte (0..19),
  the fine label byte (0..99), then 3072 image bytes.

The 3072 image bytes are channel-major (CHW): 1024 red bytes, 1024 green, 1024 blue, each plane row-major
32x32. :func:`read_cifar` returns HWC ``uint8`` images (N, 32, 32, 3), the layout the Gluon transforms take.

The files may sit in the sub-folder the official archive extracts to (``cifar-10-batches-bin/`` or
``cifar-100-binary/``) of ``data_dir`` or directly in ``data_dir``; when both hold a complete split, the
sub-folder wins (so extracting the archive into ``data_dir`` always repairs a bad file).
"""
import hashlib
import os

import numpy as np

from net.errors import AFFError


class DataError(AFFError):
    """A dataset that is missing, corrupt, or asked for in a way that cannot work; one-line message."""


IMAGE_SHAPE = (32, 32, 3)
IMAGE_BYTES = 3 * 32 * 32

DATASETS = ('cifar10', 'cifar100')
LABEL_MODES = ('fine', 'coarse')

#: Number of classes; for CIFAR-100 per label mode (fine = the 100 classes, coarse = the 20 superclasses).
CIFAR_CLASSES = {'cifar10': 10, 'cifar100': {'fine': 100, 'coarse': 20}}

#: Bytes per record.
RECORD_BYTES = {'cifar10': 1 + IMAGE_BYTES, 'cifar100': 2 + IMAGE_BYTES}

#: Official archives and the folder each one extracts to.
ARCHIVE_URL = {'cifar10': 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
               'cifar100': 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'}
ARCHIVE_DIR = {'cifar10': 'cifar-10-batches-bin', 'cifar100': 'cifar-100-binary'}

#: File names per (dataset, train).
FILES = {('cifar10', True): tuple(f'data_batch_{i}.bin' for i in range(1, 6)),
         ('cifar10', False): ('test_batch.bin',),
         ('cifar100', True): ('train.bin',),
         ('cifar100', False): ('test.bin',)}

#: Published SHA-1 of every official file (the values MXNet's dataset classes check).
CIFAR_SHA1 = {
    'cifar10': {
        'data_batch_1.bin': 'aadd24acce27caa71bf4b10992e9e7b2d74c2540',
        'data_batch_2.bin': 'c0ba65cce70568cd57b4e03e9ac8d2a5367c1795',
        'data_batch_3.bin': '1dd00a74ab1d17a6e7d73e185b69dbf31242f295',
        'data_batch_4.bin': 'aab85764eb3584312d3c7f65fd2fd016e36a258e',
        'data_batch_5.bin': '26e2849e66a845b7f1e4614ae70f4889ae604628',
        'test_batch.bin': '67eb016db431130d61cd03c7ad570b013799c88c',
    },
    'cifar100': {
        'train.bin': 'e207cd2e05b73b1393c74c7f5e7bea451d63e08e',
        'test.bin': '8fb6623e830365ff53cf14adec797474f5478006',
    },
}

# sha1 of files already hashed in this process, keyed by what changes when a file is rewritten.
_SHA1_CACHE = {}


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")


def _check_label_mode(dataset, label_mode):
    if label_mode not in LABEL_MODES:
        raise DataError(f"unknown label_mode {label_mode!r}: use 'fine' or 'coarse'")
    if dataset == 'cifar10' and label_mode == 'coarse':
        raise DataError("label_mode 'coarse' exists only for cifar100 (its 20 superclasses): "
                        "use label_mode 'fine' for cifar10")


def num_classes(dataset, label_mode='fine'):
    """Number of classes of `dataset` ('cifar10' or 'cifar100') under `label_mode` ('fine' or 'coarse')."""
    _check_dataset(dataset)
    _check_label_mode(dataset, label_mode)
    n = CIFAR_CLASSES[dataset]
    return n[label_mode] if isinstance(n, dict) else n


def _pretty(dataset):
    return {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}[dataset]


def find_files(data_dir, dataset, train):
    """Paths of the files of one split: all in `data_dir/<archive folder>` (searched first: the layout an
    extracted official archive has), or all directly in `data_dir`.

    Raises DataError naming the missing files, the directories searched, the archive URL and where to
    extract it.
    """
    _check_dataset(dataset)
    data_dir = os.path.expanduser(str(data_dir))
    names = FILES[(dataset, bool(train))]
    sub = os.path.join(data_dir, ARCHIVE_DIR[dataset])
    candidates = [sub, data_dir]
    best_missing = None
    for folder in candidates:
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
        if not missing:
            return [os.path.join(folder, n) for n in names]
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    split = 'train' if train else 'test'
    expected_path = os.path.join(data_dir, ARCHIVE_DIR[dataset], names[0])
    raise DataError(
        f"{_pretty(dataset)} {split} files missing: {', '.join(best_missing)} "
        f"(searched {sub} and {data_dir}); download {ARCHIVE_URL[dataset]} and extract it into "
        f"{data_dir} (so that {expected_path} exists)")


def _file_key(path):
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_sha1(path):
    """SHA-1 hex digest of a file, hashed at most once per process while the file is unchanged."""
    key = _file_key(path)
    digest = _SHA1_CACHE.get(key)
    if digest is None:
        h = hashlib.sha1()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 22), b''):
                h.update(chunk)
        digest = _SHA1_CACHE[key] = h.hexdigest()
    return digest


def _verify(path, buf, dataset, data_dir):
    """Compare the sha1 of `buf` (the bytes of `path`) with the published one (hash cached per file)."""
    name = os.path.basename(path)
    expected = CIFAR_SHA1[dataset][name]
    key = _file_key(path)
    digest = _SHA1_CACHE.get(key)
    if digest is None:
        digest = _SHA1_CACHE[key] = hashlib.sha1(buf).hexdigest()
    if digest != expected:
        raise DataError(
            f"checksum mismatch for {path}: sha1 {digest}, expected {expected}; re-download "
            f"{ARCHIVE_URL[dataset]} and extract it into {data_dir}, "
            f"or pass --skip-checksum (verify=False) if the file is a deliberately modified or subset copy")


def read_cifar(data_dir, dataset='cifar100', train=True, label_mode='fine', verify=True):
    """Read one split of CIFAR-10/100 from the official binary files.

    Returns ``(images, labels)``: ``uint8`` array (N, 32, 32, 3) in HWC/RGB order and ``int32`` labels
    (CIFAR-100: fine 0..99 or coarse 0..19 according to `label_mode`; CIFAR-10: 0..9, `label_mode` must be
    'fine'). With `verify` the SHA-1 of every file is compared with the published one (each file hashed once
    per process); pass ``verify=False`` for generated or subset files.
    """
    _check_dataset(dataset)
    _check_label_mode(dataset, label_mode)
    data_dir = os.path.expanduser(str(data_dir))
    paths = find_files(data_dir, dataset, train)
    rec = RECORD_BYTES[dataset]
    sizes = []
    for path in paths:
        size = os.path.getsize(path)
        if size == 0:
            raise DataError(f"empty dataset: {path} has 0 bytes; re-download {ARCHIVE_URL[dataset]} and "
                            f"extract it into {data_dir} (or regenerate the file)")
        if size % rec:
            raise DataError(f"{path} is corrupt or truncated: {size} bytes is not a multiple of the "
                            f"{rec}-byte {_pretty(dataset)} record; re-download {ARCHIVE_URL[dataset]} and extract it "
                            f"into {data_dir}")
        sizes.append(size)
    buf = np.empty(sum(sizes), dtype=np.uint8)
    offset = 0
    for path, size in zip(paths, sizes):
        view = memoryview(buf)[offset:offset + size]
        with open(path, 'rb') as f:
            got = f.readinto(view)
        if got != size:
            raise DataError(f"{path} changed while being read ({got} of {size} bytes); read it again")
        if verify:
            _verify(path, view, dataset, data_dir)
        offset += size
    records = buf.reshape(-1, rec)
    n_labels = rec - IMAGE_BYTES
    if dataset == 'cifar10':
        labels = records[:, 0]
    else:
        labels = records[:, 0] if label_mode == 'coarse' else records[:, 1]
    n_cls = num_classes(dataset, label_mode)
    bad = int(labels.max())
    if bad >= n_cls:
        raise DataError(f"{paths[0] if len(paths) == 1 else os.path.dirname(paths[0])} holds label {bad} "
                        f"but {_pretty(dataset)} ({label_mode}) has {n_cls} classes: the files are corrupt or "
                        f"of another dataset; re-download {ARCHIVE_URL[dataset]}")
    images = records[:, n_labels:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _atomic_write(path, payload):
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(payload)
    os.replace(tmp, path)


def write_cifar(data_dir, dataset, train, images, labels, coarse_labels=None):
    """Write images/labels as the official binary files of one split into `data_dir` (created if needed).

    `images`: uint8 (N, 32, 32, 3) HWC; `labels`: the CIFAR-10 labels or the CIFAR-100 *fine* labels;
    `coarse_labels`: the CIFAR-100 coarse labels (required for cifar100, not allowed for cifar10). The CIFAR-10
    training split is spread over the 5 batch files as evenly as possible (needs N >= 5). Returns the paths.
    """
    _check_dataset(dataset)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"write_cifar needs uint8 images of shape (N, 32, 32, 3), got {images.dtype} "
                        f"{images.shape}")
    n = len(images)

    def as_labels(values, n_cls, what):
        values = np.asarray(values)
        if values.shape != (n,):
            raise DataError(f"write_cifar: {what} must have shape ({n},), got {values.shape}")
        if n and (values.min() < 0 or values.max() >= n_cls):
            raise DataError(f"write_cifar: {what} must lie in 0..{n_cls - 1}")
        return values.astype(np.uint8)

    if dataset == 'cifar10':
        if coarse_labels is not None:
            raise DataError("write_cifar: coarse_labels exist only for cifar100; drop them for cifar10")
        label_cols = [as_labels(labels, 10, 'labels')]
    else:
        if coarse_labels is None:
            raise DataError("write_cifar: cifar100 records need coarse_labels (0..19) as well as the fine labels")
        label_cols = [as_labels(coarse_labels, 20, 'coarse_labels'), as_labels(labels, 100, 'labels')]
    names = FILES[(dataset, bool(train))]
    if n < len(names):
        raise DataError(f"write_cifar: {n} images cannot fill the {len(names)} {_pretty(dataset)} files "
                        f"(an empty file is not a valid dataset); give at least {len(names)}")
    records = np.empty((n, RECORD_BYTES[dataset]), dtype=np.uint8)
    for j, col in enumerate(label_cols):
        records[:, j] = col
    records[:, len(label_cols):] = images.transpose(0, 3, 1, 2).reshape(n, IMAGE_BYTES)
    data_dir = os.path.expanduser(str(data_dir))
    os.makedirs(data_dir, exist_ok=True)
    paths = []
    for name, part in zip(names, np.array_split(records, len(names))):
        path = os.path.join(data_dir, name)
        _atomic_write(path, part.tobytes())
        paths.append(path)
    return paths
