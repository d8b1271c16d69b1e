"""Process-wide runtime defaults that must be in place before ``mxnet`` is imported.

MXNet 1.9.1 starts one OpenMP thread per *physical* core it believes it has, which on the
2-vCPU machines of this project is one thread: half the machine.  When the user has not chosen
a value, ``OMP_NUM_THREADS`` is set at the first import of :mod:`net` (or :mod:`utils`) to the
cores that are usable *and idle*: MXNet's OpenMP threads meet at a barrier after every operator,
and a thread that another process has descheduled makes every operator wait for it.  Measured
(AFF-ResNet-20-b1 training step, batch 32, 2 vCPUs, median ms; docs/performance.md,
"CPU threads"): quiet 53 (1 thread) / 42 (2 threads); one busy process 56 / 77; two 71 / 198; four
136 / 415.  ``OMP_WAIT_POLICY=PASSIVE`` or a lower ``GOMP_SPINCOUNT`` made both cases slower.
The choice is made once, from a 0.2 s sample of ``/proc/stat``; :data:`THREADS_NOTE` says it.
"""
import os
import sys
import time
import warnings

#: one sentence for the training logs: the thread count in force and why
THREADS_NOTE = ''


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times():
    with open('/proc/stat') as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])    # idle + iowait, all


def idle_cores(interval=0.2):
    """Cores of this machine left idle by other processes over ``interval`` seconds, or None
    where ``/proc/stat`` cannot be read."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(interval)
        idle1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (idle1 - idle0) / float(total1 - total0)


def choose_threads(usable, idle):
    """Threads for ``usable`` cores of which ``idle`` (None: unknown) are idle: all usable cores
    on a quiet machine, fewer -- at least one -- where other processes keep cores busy."""
    if idle is None:
        return usable
    return max(1, min(usable, int(idle + 0.3)))


def configure_threads():
    """Set ``OMP_NUM_THREADS`` unless the user did; returns the value in force."""
    global THREADS_NOTE
    if 'OMP_NUM_THREADS' in os.environ:
        THREADS_NOTE = 'OMP_NUM_THREADS=%s (set by you)' % os.environ['OMP_NUM_THREADS']
        return os.environ['OMP_NUM_THREADS']
    if 'mxnet' in sys.modules:
        # Too late to take effect: say so instead of pretending.
        warnings.warn('mxnet was imported before net/utils; OMP_NUM_THREADS left unset '
                      '(set it yourself or import net first)', RuntimeWarning, stacklevel=3)
        return None
    usable = usable_cores()
    idle = idle_cores() if usable > 1 else None
    threads = choose_threads(usable, idle)
    os.environ['OMP_NUM_THREADS'] = str(threads)
    THREADS_NOTE = 'OMP_NUM_THREADS=%d chosen: %d usable core(s)%s; set OMP_NUM_THREADS to ' \
        'override' % (threads, usable, '' if idle is None else ', %.1f idle at start' % idle)
    if threads < usable:
        THREADS_NOTE = 'WARNING: ' + THREADS_NOTE + ' (other processes keep cores busy: more ' \
            'OpenMP threads than idle cores make every operator wait)'
    return os.environ['OMP_NUM_THREADS']


configure_threads()
