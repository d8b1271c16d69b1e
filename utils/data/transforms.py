"""The official CIFAR input pipeline (open-aff ``train_cifar.py``), datasets over in-memory arrays, loaders.

Training: [AutoAugment, if any, on the uint8 HWC image] -> GluonCV ``RandomCrop(32, pad=4)`` (zero padding) ->
``RandomFlipLeftRight`` -> ``ToTensor`` (HWC uint8 -> CHW float32 in 0..1) -> ``Normalize(mean, std)``.
Test: ``ToTensor`` -> ``Normalize``. The train loader shuffles and drops the last partial batch (so an epoch
is floor(N / batch) iterations); the test loader keeps it.
"""
import os
import random

import mxnet as mx
import numpy as np
from gluoncv.data.transforms.block import RandomCrop
from mxnet import gluon
from mxnet.gluon.data.vision import transforms

from .cifar import DataError

#: The official CIFAR normalisation constants (per RGB channel, 0..1 scale).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class _CallableBlock(gluon.Block):
    """Wraps a plain callable (e.g. an AutoAugment policy function) so it can sit in a ``Compose``."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def forward(self, x):
        return self._fn(x)

    def __repr__(self):
        return f'{type(self).__name__}({self._fn!r})'


def train_transform(mean=CIFAR_MEAN, std=CIFAR_STD, auto_augment=None, flip=True):
    """The official training transform, applied to one uint8 HWC ``mx.nd`` image.

    `auto_augment`: optional callable/Block taking and returning a uint8 HWC image; it runs FIRST, before the
    crop and flip (as in the official script).  `flip=False` drops the horizontal flip (for
    the digits, whose mirror images are other shapes).
    """
    steps = []
    if auto_augment is not None:
        steps.append(auto_augment if isinstance(auto_augment, gluon.Block) else _CallableBlock(auto_augment))
    steps.append(RandomCrop(32, pad=4))
    if flip:
        steps.append(transforms.RandomFlipLeftRight())
    steps += [transforms.ToTensor(),
              transforms.Normalize(tuple(mean), tuple(std))]
    return transforms.Compose(steps)


def test_transform(mean=CIFAR_MEAN, std=CIFAR_STD):
    """The official test transform: ToTensor -> Normalize (deterministic)."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))])


class ArrayImageDataset(gluon.data.Dataset):
    """(images uint8 (N, H, W, C) numpy, labels (N,)) -> items (``mx.nd`` uint8 HWC image, int label)."""

    def __init__(self, images, labels):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"ArrayImageDataset needs uint8 images of shape (N, H, W, C), got {images.dtype} "
                            f"{images.shape}")
        if labels.shape != (len(images),):
            raise DataError(f"ArrayImageDataset: {len(images)} images but labels of shape {labels.shape}")
        self._images = images
        self._labels = labels

    def __len__(self):
        return len(self._images)

    def __getitem__(self, idx):
        return mx.nd.array(self._images[idx], dtype=np.uint8), int(self._labels[idx])


class _ReseedPerProcess(gluon.data.Dataset):
    """Reseeds Python's, numpy's and MXNet's RNGs the first time an item is read in a new process.

    MXNet's DataLoader forks its workers without reseeding them, so every worker would inherit the same
    random state and draw the same crops/flips as its siblings.
    """

    def __init__(self, dataset):
        self._dataset = dataset
        self._pid = os.getpid()

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, idx):
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            seed = int.from_bytes(os.urandom(4), 'little')
            random.seed(seed)
            np.random.seed(seed)
            mx.random.seed(seed)
        return self._dataset[idx]


class ShardBatchSampler:
    """Batches of a distributed worker's shard of range(n).

    The indices are permuted once with ``seed`` (identical on every worker), worker ``rank`` takes the
    contiguous slice [rank * n // num_parts, (rank + 1) * n // num_parts) (``self.indices``), and each epoch
    reshuffles the slice (``RandomState([seed, rank, epoch])``; ``seed=None``: the permutation uses 0 and
    the epochs numpy's global state) and yields ``(n // num_parts) // batch_size`` full batches -- the same
    count on every worker.  ``shuffle=False`` (validation shards): no permutation, all images of the slice
    in order, last batch partial.
    """

    def __init__(self, n, batch_size, rank=0, num_parts=1, seed=0, shuffle=True):
        n, batch_size, rank, num_parts = int(n), int(batch_size), int(rank), int(num_parts)
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        if num_parts < 1 or not 0 <= rank < num_parts:
            raise DataError(f"worker rank {rank} is outside 0..{num_parts - 1}")
        order = np.random.RandomState(0 if seed is None else seed).permutation(n) if shuffle else np.arange(n)
        self.indices = order[rank * n // num_parts:(rank + 1) * n // num_parts]
        self._batch, self._seed, self._rank, self._shuffle, self.epoch = batch_size, seed, rank, shuffle, 0
        if shuffle:
            self._num_batches = (n // num_parts) // batch_size
            if self._num_batches == 0:
                raise DataError(f"a training shard of {n // num_parts} images ({n} images over {num_parts} "
                                f"worker(s)) is smaller than one batch of {batch_size}: lower the batch size")
        else:
            self._num_batches = -(-len(self.indices) // batch_size)

    def __len__(self):
        return self._num_batches

    def __iter__(self):
        idx = self.indices
        if self._shuffle:
            rng = np.random if self._seed is None else np.random.RandomState([self._seed, self._rank, self.epoch])
            idx = idx[rng.permutation(len(idx))]
        self.epoch += 1
        for b in range(self._num_batches):
            yield [int(i) for i in idx[b * self._batch:(b + 1) * self._batch]]


def make_loader(dataset, batch_size, train, num_workers=0, transform=None, timeout=120, shard=None):
    """A ``gluon.data.DataLoader`` as the official script builds it.

    `train`: shuffle and ``last_batch='discard'`` (floor(N / batch) iterations per epoch); otherwise no
    shuffle and ``'keep'``. `transform` (if given) is applied to the image of each item
    (``dataset.transform_first``). `num_workers` > 0 uses that many worker processes (``thread_pool=False``),
    each with its own random seed; 0 loads in the calling process. `timeout`: seconds to wait for a batch
    from a worker.  `shard`: ``(rank, num_parts, seed)`` of a distributed run -- the training batches
    come from this rank's part (:class:`ShardBatchSampler`).
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    if train and len(dataset) < batch_size:
        raise DataError(f"training set of {len(dataset)} images is smaller than one batch of {batch_size}: "
                        f"an epoch would have no iteration; lower the batch size")
    if transform is not None:
        dataset = dataset.transform_first(transform)
    num_workers = max(0, int(num_workers))
    if num_workers > 0:
        dataset = _ReseedPerProcess(dataset)
    if train and shard is not None:
        return gluon.data.DataLoader(dataset, batch_sampler=ShardBatchSampler(len(dataset), batch_size, *shard),
                                     num_workers=num_workers, thread_pool=False, timeout=timeout)
    return gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=bool(train),
                                 last_batch='discard' if train else 'keep', num_workers=num_workers,
                                 thread_pool=False, timeout=timeout)
