#!/usr/bin/env python3
"""Train the AFF networks on ImageNet (official train_imagenet.py dialect).

Not implemented yet (tracked in the train_imagenet issue). Build models with net.get_model(...) meanwhile.
"""
import os
import sys

from utils.cli import not_implemented

if __name__ == "__main__":
    sys.exit(not_implemented(os.path.basename(__file__), __doc__, 'train_imagenet'))
