"""Process-wide runtime defaults that must be in place before ``mxnet`` is imported.

MXNet 1.9.1 starts one OpenMP thread per *physical* core it believes it has, which on the
2-vCPU machines of this project is one thread: half the machine.  When the user has not
chosen a value, ``OMP_NUM_THREADS`` is set to the number of cores this process may run on.
It is done once, at the first import of :mod:`net` (or :mod:`utils`).
"""
import os
import sys
import warnings


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_threads():
    """Set ``OMP_NUM_THREADS`` unless the user did; returns the value in force."""
    if 'OMP_NUM_THREADS' in os.environ:
        return os.environ['OMP_NUM_THREADS']
    if 'mxnet' in sys.modules:
        # Too late to take effect: say so instead of pretending.
        warnings.warn('mxnet was imported before net/utils; OMP_NUM_THREADS left unset '
                      '(set it yourself or import net first)', RuntimeWarning, stacklevel=3)
        return None
    os.environ['OMP_NUM_THREADS'] = str(usable_cores())
    return os.environ['OMP_NUM_THREADS']


configure_threads()
