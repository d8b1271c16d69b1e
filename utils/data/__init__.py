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

# ImageNet (RecordIO and image folders).
from .imagenet import (IMAGENET_MEAN, IMAGENET_STD, JITTER, LIGHTING, REC_MEAN_RGB, REC_STD_RGB, RRC_AREA,
                       RRC_RATIO, ExactEpochIter, RecordImageDataset, ShardBatchSampler, folder_loaders,
                       imagenet_train_transform, imagenet_val_transform, index_rec, read_rec_index, rec_iters,
                       rec_part_range, val_resize, verify_rec, write_tiny_folder, write_tiny_rec)

__all__ += ['IMAGENET_MEAN', 'IMAGENET_STD', 'JITTER', 'LIGHTING', 'REC_MEAN_RGB', 'REC_STD_RGB', 'RRC_AREA',
            'RRC_RATIO', 'ExactEpochIter', 'RecordImageDataset', 'ShardBatchSampler', 'folder_loaders',
            'imagenet_train_transform', 'imagenet_val_transform', 'index_rec', 'read_rec_index', 'rec_iters',
            'rec_part_range', 'val_resize', 'verify_rec', 'write_tiny_folder', 'write_tiny_rec']
