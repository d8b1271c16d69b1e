"""Shared test helpers.  Reference data copied from the official code lives in tests/data/."""
import gzip
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'data')
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The tests run many tiny operators, where one OpenMP thread is faster than two, and two
# threads on a machine whose other core is busy (a parallel build, a test subprocess) make
# every operator wait for a descheduled thread (measured: 100x slower).  Correctness does not
# depend on it; the user's own runs keep the default of net/_env.py.
os.environ.setdefault('OMP_NUM_THREADS', '1')

import net  # noqa: E402  (configures OpenMP threads before mxnet)


def load_setup():
    """setup.py as a module (not run as __main__: setup() is not called)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('aff_setup', os.path.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_manifest(name):
    with gzip.open(os.path.join(DATA, 'manifests', name + '.json.gz'), 'rt') as f:
        return json.load(f)


def rel_err(got, want):
    import numpy as np
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture
def seeded():
    import mxnet as mx
    import numpy as np
    mx.random.seed(0)
    np.random.seed(0)
