"""ImageNet input pipelines (open-aff ``train_imagenet.py``): RecordIO and image folders. Never downloads.

Two sources, as in the official script:

* RecordIO (``--use-rec``), :func:`rec_iters`: ``train.rec/.idx`` and ``val.rec/.idx`` packed by MXNet's
  ``im2rec``.  Training uses ``mx.io.ImageRecordIter`` (C++ decoding and augmentation) with the official
  parameters; with AutoAugment it uses a Gluon pipeline instead (below).
* Image folders, :func:`folder_loaders`: ``data_dir/train/<class>/*.JPEG`` and ``data_dir/val/<class>/*.JPEG``
  through ``gluon.data.vision.ImageFolderDataset`` and Gluon transforms.

Official augmentation parameters and where they live here:

==========================  ===================================  ==========================================
official                    RecordIO (ImageRecordIter)           Gluon pipeline (folders; rec + AutoAugment)
==========================  ===================================  ==========================================
random resized crop         ``random_resized_crop=True``,        ``RandomResizedCrop(input_size,
area [0.08, 1],             ``min/max_random_area=0.08/1``,      scale=RRC_AREA, ratio=RRC_RATIO)``
aspect [3/4, 4/3]           ``min/max_aspect_ratio=3/4, 4/3``
random mirror               ``rand_mirror=True``                 ``RandomFlipLeftRight()``
brightness/contrast/        ``brightness=contrast=saturation     ``RandomColorJitter(0.4, 0.4, 0.4)``
saturation 0.4              =JITTER``
PCA lighting 0.1            ``pca_noise=LIGHTING``               ``RandomLighting(LIGHTING)``
mean / std                  ``mean_r/g/b=REC_MEAN_RGB``,         ``ToTensor()`` (0..1), ``Normalize(
                            ``std_r/g/b=REC_STD_RGB`` (0..255)   IMAGENET_MEAN, IMAGENET_STD)`` (same / 255)
shuffle                     ``shuffle=True`` (``seed``)          :class:`ShardBatchSampler`
distributed sharding        ``num_parts``/``part_index``         :class:`ShardBatchSampler`
validation                  ``resize=ceil(S / crop_ratio)``      ``Resize(ceil(S / crop_ratio),
                            (shorter side), centre crop S        keep_ratio=True)``, ``CenterCrop(S)``
==========================  ===================================  ==========================================

(``REC_STD_RGB / 255`` is (0.229, 0.224, 0.225) to 3 digits and ``REC_MEAN_RGB / 255`` = (0.485, 0.458,
0.408) vs (0.485, 0.456, 0.406): the two official normalisations differ in the third digit of two means.)
The C++ and Gluon colour jitters are different implementations with the same magnitudes.  The Gluon
pipeline of RecordIO + AutoAugment normalises with ``REC_MEAN_RGB / 255`` and ``REC_STD_RGB / 255``, so that
its training inputs match the RecordIO validation iterator.

AutoAugment (``auto_augment``).  The official script imported autogluon's ImageNet AutoAugment only in its
image-folder DataLoader path and silently ignored it with ``--use-rec`` (docs/official-code.md §4.3).
Here it works in both modes: with ``--use-rec`` the training images are decoded from the ``.rec`` by Gluon
(``ImageRecordDataset``, :class:`RecordImageDataset`) instead of ``ImageRecordIter`` (slower: Python
decoding/augmentation in ``num_workers`` processes, not C++ threads).  Position: FIRST, on the decoded
uint8 image at its stored resolution, before RandomResizedCrop -- prepended to the transform list.  Where
the official ImageNet script put it is not recorded (docs/official-code.md §4.3); the official CIFAR script
prepends it, before RandomCrop (docs/official-code.md §4.2), and we follow that convention.
(The AutoAugment paper's reference code applies it after crop+resize; our translate magnitudes are
relative to the image size, so the position changes the scale of geometric ops only a little.)
``auto_augment``: False/None (off), True (the ImageNet policy), a policy name or a custom policy
(see ``utils.augment``).

Validation counts every image exactly once.  The official ``ImageRecordIter`` kept MXNet's default
``round_batch=True``: the last partial batch is filled by wrapping round to the start, and the metric ignored
``pad``, so up to batch-1 images were counted twice.  Measured with MXNet 1.9.1 (10 records, batch 4):
``round_batch=True`` yields [0-3], [4-7], [8, 9, 0, 1] pad 2 in epoch 1, then only [2-5], [6-9] in epoch 2
(the wrapped images are skipped; the coverage alternates between epochs) and later reports a stale
``pad=2`` on a full batch; ``round_batch=False`` yields [8, 9, x, x] with ``pad=0`` where the x slots hold
label 0 (or stale labels) and stale or uninitialised data (even NaN) -- the pad field cannot be trusted
either way.  So the
validation iterator here is ``ImageRecordIter(round_batch=False)`` wrapped in :class:`ExactEpochIter`,
which knows the number of records from the index and TRIMS the last batch to its real images (``pad=0``):
consumers that honour ``pad`` and consumers that ignore it both see each image once.  The Gluon
validation loaders keep the last partial batch (like ``last_batch='keep'``).  Validation is NOT sharded by default: every distributed
worker evaluates the whole set (``shard_val=True`` evaluates a contiguous shard per worker instead; the
metrics then have to be summed over workers).

Distributed training sharding.  RecordIO + ``ImageRecordIter``: MXNet's ``num_parts``/``part_index``
split of the index into contiguous ranges of ``ceil(n / num_parts)`` records (the last parts smaller, see
:func:`rec_part_range`); each part is shuffled within itself.  Gluon pipelines: :class:`ShardBatchSampler`
shuffles the indices once with ``seed`` (the same permutation on every worker), gives each worker a
contiguous slice (sizes differ by at most one), and per epoch yields the same number of batches,
``(n // num_parts) // batch_size``, on every worker (so synchronous workers never wait for one another);
the images left over in an epoch change from epoch to epoch because each shard is reshuffled.
``ImageRecordIter`` parts can differ in size and, with ``round_batch``, the number of batches per epoch
varies (wrapped images are skipped at the start of the next epoch): stop each epoch after
``n_train // (batch_size * num_workers_dist)`` batches, as the official script did.  (MXNet's Python
wrapper reads the first batch when the iterator is built; a ``reset()`` straight after construction of a
tiny part that the prefetcher had already read to its end started the first epoch at the wrap offset.)

Corrupt RecordIO files.  MXNet's ``ImageRecordIter`` does not raise on a truncated ``.rec`` or a garbled
image: its decoding threads abort the process (``terminate called after throwing an instance of
'dmlc::Error' ... Invalid RecordIO Format``; a garbled PNG gave SIGFPE).  :func:`verify_rec` therefore
checks the files before an iterator is built: the index parses, every offset is inside the ``.rec``, and
the RecordIO headers of the last record and of up to 64 records spread over the file are intact and end
inside the file (``level='quick'``, a few ms; catches truncation and a mismatched index).  ``level='full'``
checks every header; ``level='decode'`` also decodes every image (slow: for a one-off check of a suspect
file).  The Gluon pipelines decode with OpenCV's ``cv2.imdecode`` instead of ``mx.image.imdecode``, which
for a PNG with a destroyed data chunk printed a libpng error and returned an all-black image without
raising (and for another corruption raised later, at an unrelated operation); a broken image there raises
:class:`DataError` naming the record or file.

Labels are float32 in every pipeline (as ``ImageRecordIter`` yields them).  ``mx.recordio.pack_img``
encodes with OpenCV, which takes BGR: :func:`write_tiny_rec` takes RGB images and swaps the channels.
"""
import logging
import math
import os
import struct
import warnings

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from .cifar import DataError
from .transforms import ShardBatchSampler, _CallableBlock, _ReseedPerProcess

__all__ = ['REC_MEAN_RGB', 'REC_STD_RGB', 'IMAGENET_MEAN', 'IMAGENET_STD', 'JITTER', 'LIGHTING', 'RRC_AREA',
           'RRC_RATIO', 'val_resize', 'imagenet_train_transform', 'imagenet_val_transform', 'read_rec_index',
           'verify_rec', 'index_rec', 'rec_part_range', 'RecordImageDataset', 'ExactEpochIter',
           'ShardBatchSampler', 'rec_iters', 'folder_loaders', 'write_tiny_rec', 'write_tiny_folder']

log = logging.getLogger(__name__)

#: ImageRecordIter normalisation (RGB, 0..255 scale) of the official script.
REC_MEAN_RGB = (123.68, 116.779, 103.939)
REC_STD_RGB = (58.393, 57.12, 57.375)
#: Gluon normalisation after ToTensor (0..1 scale) of the official image-folder path.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Colour jitter (brightness = contrast = saturation) and AlexNet PCA lighting strengths.
JITTER = 0.4
LIGHTING = 0.1
#: RandomResizedCrop: fraction of the image area, aspect ratio range.
RRC_AREA = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)

_MAGIC = 0xced7230a            # dmlc RecordIO record header magic
_LEN_MASK = (1 << 29) - 1      # lower 29 bits: length of this part; upper 3: continuation flag
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png')
_IM2REC = 'python -m mxnet.tools.im2rec --list --recursive PREFIX IMAGE_DIR, then python -m mxnet.tools.im2rec ' \
          '--quality 95 PREFIX IMAGE_DIR'


def _one_line(text):
    return ' '.join(str(text).split())


def val_resize(input_size=224, crop_ratio=0.875):
    """Shorter side of validation images before the centre crop: ceil(input_size / crop_ratio) (256 for 224)."""
    if not 0 < crop_ratio <= 1:
        raise DataError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return int(math.ceil(input_size / crop_ratio))


# ----------------------------------------------------------------------------------------------- transforms

def _auto_augment_block(auto_augment, seed):
    if auto_augment is None or auto_augment is False:
        return None
    from utils.augment import AutoAugmentBlock
    try:
        return AutoAugmentBlock('imagenet' if auto_augment is True else auto_augment, seed)
    except ValueError as e:
        raise DataError(_one_line(f"auto_augment: {e}")) from None


def imagenet_train_transform(input_size=224, auto_augment=None, jitter=JITTER, lighting=LIGHTING,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """[AutoAugment] -> RandomResizedCrop -> flip -> colour jitter -> PCA lighting -> ToTensor -> Normalize,
    on a uint8 HWC ``mx.nd`` image.  `auto_augment`: None or a callable/Block on uint8 HWC images."""
    steps = []
    if auto_augment is not None:
        steps.append(auto_augment if isinstance(auto_augment, gluon.Block) else _CallableBlock(auto_augment))
    steps += [transforms.RandomResizedCrop(input_size, scale=RRC_AREA, ratio=RRC_RATIO),
              transforms.RandomFlipLeftRight()]
    if jitter:
        steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if lighting:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    return transforms.Compose(steps)


def imagenet_val_transform(input_size=224, crop_ratio=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize the shorter side to ceil(input_size / crop_ratio), centre crop input_size, ToTensor, Normalize."""
    return transforms.Compose([transforms.Resize(val_resize(input_size, crop_ratio), keep_ratio=True),
                               transforms.CenterCrop(input_size),
                               transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))])


# ----------------------------------------------------------------------------------------------- RecordIO

def _need_file(path, what, fix):
    if not os.path.isfile(path):
        raise DataError(f"{what} {path} not found: {fix}")
    if os.path.getsize(path) == 0:
        raise DataError(f"{what} {path} is empty: {fix}")


def _rec_fix(flag):
    return f"make it with MXNet's im2rec ({_IM2REC}) or pass {flag} PATH"


def _idx_fix(flag):
    return (f"im2rec writes it next to the .rec; rebuild it with utils.data.imagenet.index_rec(REC, IDX) "
            f"or pass {flag} PATH")


def read_rec_index(idx_path):
    """Parses an im2rec ``.idx`` file (lines ``key<TAB>offset``) -> list of (key, offset) in file order."""
    entries = []
    with open(idx_path, 'rb') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                key, offset = int(parts[0]), int(parts[1])
                if offset < 0:
                    raise ValueError
            except ValueError:
                raise DataError(f"{idx_path} line {lineno} is not 'key<TAB>offset': "
                                f"{line[:60].decode('latin-1').strip()!r}; not an im2rec index") from None
            entries.append((key, offset))
    return entries


def _record_end(f, offset, size):
    """Follows the parts of the record at `offset`; returns (end offset, payload) or an error string."""
    pos, payload = offset, []
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return None, f"record header at byte {pos} is cut off (file has {size} bytes)"
        magic, lrec = struct.unpack('<II', head)
        if magic != _MAGIC:
            return None, f"no RecordIO header at byte {pos} (magic {magic:#010x})"
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        end = pos + 8 + length
        if end > size:
            return None, f"record at byte {pos} needs {length} bytes but the file ends at {size} (truncated)"
        payload.append((pos + 8, length))
        pos = end + (-length % 4)
        if cflag in (0, 3):
            return pos, payload


def verify_rec(rec_path, idx_path, level='quick', rec_flag='--rec-*', idx_flag='--rec-*-idx'):
    """Checks an im2rec ``.rec``/``.idx`` pair; returns the number of records (index entries).

    level: 'quick' (index + headers of the last record and <= 64 others), 'full' (every header),
    'decode' (also decodes every image).  Raises :class:`DataError` (one line) on any problem.
    """
    if level not in ('quick', 'full', 'decode'):
        raise DataError(f"verify level must be 'quick', 'full' or 'decode', got {level!r}")
    _need_file(rec_path, 'RecordIO file', _rec_fix(rec_flag))
    _need_file(idx_path, 'RecordIO index', _idx_fix(idx_flag))
    entries = read_rec_index(idx_path)
    if not entries:
        raise DataError(f"RecordIO index {idx_path} has no entries: {_idx_fix(idx_flag)}")
    size = os.path.getsize(rec_path)
    offsets = sorted(off for _, off in entries)
    if offsets[-1] >= size:
        raise DataError(f"{rec_path} is truncated or does not match {idx_path}: the index points at byte "
                        f"{offsets[-1]} of a {size}-byte file; re-create the pair with im2rec")
    if level == 'quick':
        step = max(1, len(offsets) // 64)
        check = sorted(set(offsets[::step]) | {offsets[-1]})
    else:
        check = offsets
    with open(rec_path, 'rb') as f:
        for off in check:
            end, payload = _record_end(f, off, size)
            if end is None:
                raise DataError(f"corrupt RecordIO file {rec_path}: {payload}; re-create it with im2rec")
            if level == 'decode':
                parts = []
                for start, length in payload:
                    f.seek(start)
                    parts.append(f.read(length))
                # the writer split the record where its payload held the magic word; readers re-insert it
                _decode_check(struct.pack('<I', _MAGIC).join(parts), f"{rec_path} record at byte {off}")
    return len(entries)


def _decode(buf, where):
    """JPEG/PNG bytes -> uint8 HWC RGB ``mx.nd`` image, with OpenCV: ``mx.image.imdecode`` returns an
    all-black image for some corrupt PNGs (libpng reports the error on stderr only) and raises others
    asynchronously, at a later unrelated operation."""
    import cv2
    cut = _truncated(buf)
    if cut:
        # libjpeg decodes a cut JPEG without an error (grey rows, a warning on stderr only)
        raise DataError(f"the image of {where} is truncated ({cut}): re-copy or remove the file")
    bgr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR) if len(buf) else None
    if bgr is None:
        raise DataError(f"cannot decode the image of {where}: not a readable JPEG/PNG (corrupt file?)")
    return mx.nd.array(np.ascontiguousarray(bgr[:, :, ::-1]), dtype=np.uint8)


def _truncated(buf):
    """Why ``buf`` is a cut JPEG/PNG (its end marker is missing), or '' (complete or another format)."""
    buf = bytes(buf[:8]) + bytes(buf[-2048:]) if len(buf) > 2056 else bytes(buf)
    if buf[:2] == b'\xff\xd8' and b'\xff\xd9' not in buf[2:]:
        return 'no JPEG end-of-image marker'
    if buf[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in buf[8:]:
        return 'no PNG IEND chunk'
    return ''


def _decode_check(record, where):
    try:
        _, img = mx.recordio.unpack(record)
    except (mx.base.MXNetError, struct.error) as e:
        raise DataError(_one_line(f"cannot unpack {where}: {e}")) from None
    _decode(img, where)


def index_rec(rec_path, idx_path=None):
    """(Re)builds the ``.idx`` of a ``.rec`` by walking its records (keys 0, 1, ...); returns the count."""
    idx_path = idx_path or os.path.splitext(rec_path)[0] + '.idx'
    _need_file(rec_path, 'RecordIO file', _rec_fix('--rec-*'))
    size = os.path.getsize(rec_path)
    offsets = []
    with open(rec_path, 'rb') as f:
        pos = 0
        while pos < size:
            end, err = _record_end(f, pos, size)
            if end is None:
                raise DataError(f"corrupt RecordIO file {rec_path} after {len(offsets)} records: {err}")
            offsets.append(pos)
            pos = end
    tmp = idx_path + '.tmp'
    with open(tmp, 'w') as f:
        f.writelines(f"{i}\t{off}\n" for i, off in enumerate(offsets))
    os.replace(tmp, idx_path)
    return len(offsets)


def rec_part_range(n, part_index, num_parts):
    """[begin, end) of the records that ``ImageRecordIter(num_parts, part_index)`` reads when it has an index
    (dmlc's IndexedRecordIOSplitter: contiguous ranges of ceil(n / num_parts) records, the last ones
    smaller, possibly empty)."""
    step = -(-n // num_parts)
    return min(n, part_index * step), min(n, (part_index + 1) * step)


class RecordImageDataset(gluon.data.vision.ImageRecordDataset):
    """``ImageRecordDataset`` with an explicit index path (the stock class derives it from the ``.rec`` name)
    and checked decoding (OpenCV, see :func:`_decode`): a broken record or image raises :class:`DataError`
    naming the record.  Items: (uint8 HWC RGB ``mx.nd`` image, float32 label)."""

    def __init__(self, rec_path, idx_path):   # pylint: disable=super-init-not-called
        self.filename, self.idx_file = rec_path, idx_path
        self._record = mx.recordio.MXIndexedRecordIO(idx_path, rec_path, 'r')
        self._flag = 1
        self._transform = None

    def __getitem__(self, idx):
        where = f"record {idx} (key {self._record.keys[idx]}) of {self.filename}"
        try:
            header, buf = mx.recordio.unpack(self._record.read_idx(self._record.keys[idx]))
        except (mx.base.MXNetError, TypeError, struct.error) as e:
            msg = str(e).splitlines()[-1] if str(e) else type(e).__name__
            raise DataError(_one_line(f"corrupt {where}: {msg}; re-create the file with im2rec")) from None
        return _decode(buf, where), np.float32(header.label)


class _FolderImages(gluon.data.vision.ImageFolderDataset):
    """``ImageFolderDataset`` whose items decode with :func:`_decode` (errors name the file); float32 labels."""

    def __getitem__(self, idx):
        path, label = self.items[idx]
        try:
            with open(path, 'rb') as f:
                buf = f.read()
        except OSError as e:
            raise DataError(_one_line(f"cannot read {path}: {e.strerror}")) from None
        return _decode(buf, path), np.float32(label)


class ExactEpochIter(mx.io.DataIter):
    """Wraps an ``ImageRecordIter(round_batch=False)`` that reads `num_samples` records in order and yields
    exactly those: the last partial batch is trimmed to its real images (``pad = 0``).  Raises
    :class:`DataError` if the wrapped iterator ends early."""

    def __init__(self, it, num_samples, name=''):
        super().__init__(it.batch_size)
        self._it, self.num_samples, self._name, self._seen = it, int(num_samples), name, 0

    @property
    def provide_data(self):
        return self._it.provide_data

    @property
    def provide_label(self):
        return self._it.provide_label

    def reset(self):
        self._it.reset()
        self._seen = 0

    def __len__(self):
        return -(-self.num_samples // self.batch_size)

    def next(self):
        left = self.num_samples - self._seen
        if left <= 0:
            raise StopIteration
        try:
            batch = self._it.next()
        except StopIteration:
            raise DataError(f"{self._name}: the iterator stopped after {self._seen} of {self.num_samples} "
                            f"indexed images") from None
        keep = min(left, self.batch_size - (batch.pad or 0))
        data, label = batch.data, batch.label
        if keep < self.batch_size:
            data, label = [d[:keep] for d in data], [l[:keep] for l in label]
        self._seen += keep
        return mx.io.DataBatch(data=data, label=label, pad=0)


# ----------------------------------------------------------------------------------------------- Gluon side

class _Pipeline(gluon.data.Dataset):
    """(transform(image), label) over a dataset of (uint8 HWC image, label)."""

    def __init__(self, dataset, transform):
        self._dataset, self._transform = dataset, transform

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, idx):
        img, label = self._dataset[idx]
        return self._transform(img), label


def _loader(dataset, batch_sampler, num_workers, timeout=120):
    num_workers = max(0, int(num_workers))
    if num_workers > 0:
        dataset = _ReseedPerProcess(dataset)
    return gluon.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                 thread_pool=False, timeout=timeout)


def _val_sampler(n, batch_size, rank, num_workers_dist, shard_val):
    if shard_val:
        return ShardBatchSampler(n, batch_size, rank, num_workers_dist, shuffle=False)
    return ShardBatchSampler(n, batch_size, shuffle=False)


def _check_common(batch_size, input_size, rank, num_workers_dist):
    if int(batch_size) < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if int(input_size) < 1:
        raise DataError(f"input size must be >= 1, got {input_size}")
    if int(num_workers_dist) < 1 or not 0 <= int(rank) < int(num_workers_dist):
        raise DataError(f"worker rank {rank} is outside 0..{int(num_workers_dist) - 1}")


# ----------------------------------------------------------------------------------------------- entry points

def rec_iters(rec_train, rec_train_idx, rec_val, rec_val_idx, batch_size, input_size=224, crop_ratio=0.875,
              num_workers=4, rank=0, num_workers_dist=1, auto_augment=False, seed=0, *, shard_val=False,
              jitter=JITTER, lighting=LIGHTING, verify='quick', train=True):
    """RecordIO pipelines -> (train_iter, val_iter, n_train, n_val); with ``train=False`` (evaluation
    only) the training files are not opened: (None, val_iter, 0, n_val).

    `batch_size`: images per batch of this worker (all its devices).  `num_workers`: decoding threads
    (ImageRecordIter) or DataLoader processes (with AutoAugment).  `rank`/`num_workers_dist`: distributed
    sharding of the training set (``part_index``/``num_parts``).  `n_train`, `n_val`: records in the whole
    ``.idx`` files (not per shard).  `seed`: the ImageRecordIter shuffle seed (``None`` = 0), or the shard
    permutation / epoch order / AutoAugment seed of the Gluon pipeline.

    Training: ``mx.io.ImageRecordIter`` (an ``mx.io.DataIter``; batches NCHW float32 normalised, labels
    float32; MXNet's default ``round_batch``), or with `auto_augment` a ``gluon.data.DataLoader`` yielding
    (data, label).  Validation: :class:`ExactEpochIter` over ``ImageRecordIter(round_batch=False)``.
    `jitter`/`lighting` override the official 0.4 / 0.1 (0 disables); `verify`: :func:`verify_rec` level.
    """
    _check_common(batch_size, input_size, rank, num_workers_dist)
    batch_size, input_size, rank, num_workers_dist = int(batch_size), int(input_size), int(rank), \
        int(num_workers_dist)
    resize = val_resize(input_size, crop_ratio)
    want_train = train
    n_train = verify_rec(rec_train, rec_train_idx, verify, '--rec-train', '--rec-train-idx') if train else 0
    n_val = verify_rec(rec_val, rec_val_idx, verify, '--rec-val', '--rec-val-idx')
    threads = max(1, int(num_workers))
    shape = (3, input_size, input_size)
    norm = dict(mean_r=REC_MEAN_RGB[0], mean_g=REC_MEAN_RGB[1], mean_b=REC_MEAN_RGB[2],
                std_r=REC_STD_RGB[0], std_g=REC_STD_RGB[1], std_b=REC_STD_RGB[2])
    aa = _auto_augment_block(auto_augment, seed)
    if not want_train:
        train = None
    elif aa is None:
        begin, end = rec_part_range(n_train, rank, num_workers_dist)
        if end <= begin:
            raise DataError(f"{rec_train}: {n_train} records leave worker {rank} of {num_workers_dist} no "
                            f"records (MXNet splits into parts of ceil(n / workers))")
        train = mx.io.ImageRecordIter(
            path_imgrec=rec_train, path_imgidx=rec_train_idx, data_shape=shape, batch_size=batch_size,
            preprocess_threads=threads, shuffle=True, seed=0 if seed is None else int(seed),
            random_resized_crop=True, min_random_area=RRC_AREA[0], max_random_area=RRC_AREA[1],
            min_aspect_ratio=RRC_RATIO[0], max_aspect_ratio=RRC_RATIO[1], rand_mirror=True,
            brightness=jitter, contrast=jitter, saturation=jitter, pca_noise=lighting,
            num_parts=num_workers_dist, part_index=rank, verbose=False, **norm)
    else:
        dataset = RecordImageDataset(rec_train, rec_train_idx)
        # the RecordIO normalisation (/ 255), so that training matches the ImageRecordIter validation
        tf = imagenet_train_transform(input_size, aa, jitter, lighting, mean=tuple(m / 255 for m in REC_MEAN_RGB),
                                      std=tuple(s / 255 for s in REC_STD_RGB))
        sampler = ShardBatchSampler(n_train, batch_size, rank, num_workers_dist, seed)
        train = _loader(_Pipeline(dataset, tf), sampler, num_workers)
    if shard_val:
        begin, end = rec_part_range(n_val, rank, num_workers_dist)
        if end <= begin:
            raise DataError(f"{rec_val}: {n_val} records leave worker {rank} of {num_workers_dist} no "
                            f"validation records; do not shard the validation set")
        parts = dict(num_parts=num_workers_dist, part_index=rank)
    else:
        begin, end, parts = 0, n_val, {}
    val = mx.io.ImageRecordIter(
        path_imgrec=rec_val, path_imgidx=rec_val_idx, data_shape=shape, batch_size=batch_size,
        preprocess_threads=threads, shuffle=False, resize=resize, rand_crop=False, rand_mirror=False,
        round_batch=False, verbose=False, **parts, **norm)
    return train, ExactEpochIter(val, end - begin, rec_val), n_train, n_val


def _image_folder(root, what):
    if not os.path.isdir(root):
        raise DataError(f"ImageNet {what} folder {root} not found: expected {root}/<class>/*.JPEG (or use "
                        f"--use-rec with .rec files)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ds = _FolderImages(root, flag=1)
    if caught:
        log.warning('%s: ignored %d entries that are not class folders or .jpg/.jpeg/.png images',
                    root, len(caught))
    if not ds.synsets:
        loose = any(os.path.splitext(f)[1].lower() in _IMAGE_EXTS for f in os.listdir(root))
        hint = ("its images are not in class sub-folders (sort the ImageNet val images into their 1000 "
                "synset folders first)" if loose else "it has no class sub-folders")
        raise DataError(f"ImageNet {what} folder {root}: {hint}")
    if not ds.items:
        raise DataError(f"ImageNet {what} folder {root} has {len(ds.synsets)} class folders but no "
                        f".jpg/.jpeg/.png images")
    return ds


def folder_loaders(data_dir, batch_size, input_size=224, crop_ratio=0.875, num_workers=0, auto_augment=False,
                   rank=0, num_workers_dist=1, seed=0, *, shard_val=False, jitter=JITTER, lighting=LIGHTING,
                   timeout=120):
    """Image-folder pipelines -> (train_loader, val_loader, n_train, n_val) (``gluon.data.DataLoader``
    yielding (data NCHW float32, label float32)).

    ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` (.jpg/.jpeg/.png, any case); labels are the
    indices of the sorted TRAIN class folder names, validation folders are mapped by name (a val class
    missing from train is an error).  Training: [AutoAugment] -> RandomResizedCrop -> flip -> jitter ->
    lighting -> ToTensor -> Normalize, sharded by :class:`ShardBatchSampler`; validation: resize, centre
    crop, every image once (not sharded unless `shard_val`).  `n_train`/`n_val`: images in the whole
    folders.
    """
    _check_common(batch_size, input_size, rank, num_workers_dist)
    if not os.path.isdir(data_dir):
        raise DataError(f"ImageNet folder {data_dir} not found: expected {data_dir}/train/<class>/*.JPEG and "
                        f"{data_dir}/val/<class>/*.JPEG (or use --use-rec with .rec files)")
    train_ds = _image_folder(os.path.join(data_dir, 'train'), 'train')
    val_ds = _image_folder(os.path.join(data_dir, 'val'), 'val')
    index = {name: i for i, name in enumerate(train_ds.synsets)}
    unknown = [s for s in val_ds.synsets if s not in index]
    if unknown:
        raise DataError(f"{data_dir}/val has {len(unknown)} class folder(s) missing from train (e.g. "
                        f"{unknown[0]!r}): the two splits must use the same class folder names")
    val_ds.items = [(path, index[val_ds.synsets[lab]]) for path, lab in val_ds.items]
    val_ds.synsets = list(train_ds.synsets)
    batch_size, input_size = int(batch_size), int(input_size)
    aa = _auto_augment_block(auto_augment, seed)
    train_tf = imagenet_train_transform(input_size, aa, jitter, lighting)
    train = _loader(_Pipeline(train_ds, train_tf),
                    ShardBatchSampler(len(train_ds), batch_size, rank, num_workers_dist, seed),
                    num_workers, timeout)
    val = _loader(_Pipeline(val_ds, imagenet_val_transform(input_size, crop_ratio)),
                  _val_sampler(len(val_ds), batch_size, rank, num_workers_dist, shard_val), num_workers, timeout)
    return train, val, len(train_ds), len(val_ds)


# ----------------------------------------------------------------------------------------------- writers

def _check_images(images, labels):
    images = list(images)
    labels = [int(l) for l in labels]
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise DataError("no images to write")
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise DataError(f"image {i}: need uint8 RGB HWC, got {a.dtype} {a.shape}")
    if min(labels) < 0:
        raise DataError(f"labels must be >= 0, got {min(labels)}")
    return images, labels


def write_tiny_rec(path_prefix, images, labels, img_fmt='.png', quality=95):
    """Writes ``path_prefix.rec`` + ``.idx`` (keys 0..n-1) from uint8 RGB HWC images; returns (rec, idx).

    `img_fmt`: '.png' (lossless) or '.jpg' (`quality`).  The RGB images are swapped to BGR for OpenCV's
    encoder, so every reader (ImageRecordIter, ImageRecordDataset) decodes them back as RGB."""
    images, labels = _check_images(images, labels)
    rec, idx = path_prefix + '.rec', path_prefix + '.idx'
    os.makedirs(os.path.dirname(os.path.abspath(rec)), exist_ok=True)
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, 'w')
    try:
        for i, (img, lab) in enumerate(zip(images, labels)):
            header = mx.recordio.IRHeader(0, float(lab), i, 0)
            bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
            writer.write_idx(i, mx.recordio.pack_img(header, bgr, quality=quality, img_fmt=img_fmt))
    finally:
        writer.close()
    return rec, idx


def write_tiny_folder(root, split, images, labels, num_classes=None, ext='.png', class_names=None):
    """Writes ``root/split/<class>/<i>.<ext>`` (RGB uint8 HWC images) and returns the split folder.

    Class folders are ``class_names[label]`` or ``c00000``, ``c00001``... (zero-padded so that their sorted
    order is the label order) and are created for every label < `num_classes` (default max label + 1) even
    when empty, so that train and val folders name the same classes."""
    from PIL import Image
    images, labels = _check_images(images, labels)
    k = max(labels) + 1 if num_classes is None else int(num_classes)
    if max(labels) >= k:
        raise DataError(f"label {max(labels)} >= num_classes {k}")
    names = list(class_names) if class_names is not None else [f"c{i:05d}" for i in range(k)]
    if len(names) < k or sorted(names[:k]) != list(names[:k]):
        raise DataError("class_names must cover every label and be in sorted order (ImageFolderDataset "
                        "numbers the folders alphabetically)")
    out = os.path.join(root, split)
    for name in names[:k]:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    for i, (img, lab) in enumerate(zip(images, labels)):
        Image.fromarray(np.asarray(img)).save(os.path.join(out, names[lab], f"{i:06d}{ext}"),
                                              **({'quality': 95} if ext.lower() in ('.jpg', '.jpeg') else {}))
    return out
