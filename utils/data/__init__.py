"""Datasets and input pipelines: CIFAR-10/100 binary files, the embedded digits set, the official transforms.

Nothing here downloads anything.
"""
from .cifar import (ARCHIVE_DIR, ARCHIVE_URL, CIFAR_CLASSES, CIFAR_SHA1, DataError, file_sha1, find_files,
                    num_classes, read_cifar, write_cifar)
from .digits import DIGITS_MEAN, DIGITS_STD, load_digits32
from .transforms import (CIFAR_MEAN, CIFAR_STD, ArrayImageDataset, make_loader, test_transform,
                         train_transform)

__all__ = ['ARCHIVE_DIR', 'ARCHIVE_URL', 'CIFAR_CLASSES', 'CIFAR_SHA1', 'DataError', 'file_sha1', 'find_files',
           'num_classes', 'read_cifar', 'write_cifar', 'DIGITS_MEAN', 'DIGITS_STD', 'load_digits32',
           'CIFAR_MEAN', 'CIFAR_STD', 'ArrayImageDataset', 'make_loader', 'test_transform', 'train_transform']
