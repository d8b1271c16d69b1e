"""Horovod, the second distributed engine beside ps-lite: ``--kv-store horovod`` (docs/distributed.md).

One process per device, started by ``horovodrun``; after each backward pass the gradients are
all-reduced (ring all-reduce: NCCL between GPUs, gloo between CPUs) and every rank applies the same
update itself -- no parameter servers.  What a rank sees is exactly what one device of a one-process
multi-device run sees: its shard of each global batch, its own BatchNorm statistics, the mean
gradient of the whole batch (tests/test_horovod.py checks the equality on loopback).

Horovod is optional: ``make horovod`` builds it against the pinned MXNet (the flags in
:data:`INSTALL`); without it ``--kv-store horovod`` is one error line naming that command.
"""
import os

import mxnet as mx

from net.errors import AFFError

#: the build of Horovod 0.28.1 (an sdist only) that ``make horovod`` runs: MXNet ops, gloo for the
#: CPU and the launcher, no MPI/TensorFlow/PyTorch (add NCCL on GPU machines: docs/distributed.md)
BUILD_ENV = (('HOROVOD_WITH_MXNET', '1'), ('HOROVOD_WITHOUT_TENSORFLOW', '1'),
             ('HOROVOD_WITHOUT_PYTORCH', '1'), ('HOROVOD_WITHOUT_MPI', '1'), ('HOROVOD_WITH_GLOO', '1'),
             ('HOROVOD_CPU_OPERATIONS', 'gloo'))
PIP_ARGS = ('install', '--no-build-isolation', 'horovod==0.28.1')
INSTALL = ' '.join(['%s=%s' % kv for kv in BUILD_ENV] + ['pip'] + list(PIP_ARGS))


def load():
    """``horovod.mxnet``, initialised; one line saying how to install it when it is missing."""
    try:
        import horovod.mxnet as hvd
    except ImportError as e:
        raise AFFError('--kv-store horovod needs Horovod built for MXNet (%s); install it with '
                       '`make horovod` (or: %s), see docs/distributed.md' % (e, INSTALL)) from None
    if not hvd.is_initialized():
        hvd.init()
    return hvd


def launched():
    """True when this process was started by ``horovodrun`` (its rank variables are set)."""
    return 'HOROVOD_RANK' in os.environ or 'OMPI_COMM_WORLD_RANK' in os.environ


def launched_size():
    """How many processes ``horovodrun`` started (1 when it did not start this one)."""
    for var in ('HOROVOD_SIZE', 'OMPI_COMM_WORLD_SIZE'):
        try:
            return int(os.environ[var])
        except (KeyError, ValueError):
            pass
    return 1


def device(hvd, ctx):
    """``([context], note)``: the one device of this rank.  On GPUs the local rank's GPU (as
    Horovod's own examples; the list of ``--gpus`` only says that GPUs are used); on the CPU the
    CPU, where more than one context per process is refused -- Horovod all-reduces only the first
    context's gradients, so the others would train on their own."""
    if ctx[0].device_type == 'gpu':
        ctx = [mx.gpu(hvd.local_rank())]
    elif len(ctx) > 1:
        raise AFFError('--kv-store horovod trains one device per process, got %d CPU contexts; '
                       'drop --num-cpu-contexts and start more ranks (horovodrun -np N)' % len(ctx))
    note = 'Horovod: rank %d of %d (local rank %d) on %s, gradients all-reduced by %s' % (
        hvd.rank(), hvd.size(), hvd.local_rank(), ctx[0],
        'NCCL' if ctx[0].device_type == 'gpu' and hvd.nccl_built() else 'gloo')
    if not launched():
        note += ' (not started by horovodrun: a single process)'
    return ctx, note


_TRAINER = None


def trainer_class():
    """Horovod's ``DistributedTrainer`` whose ``step(batch_size)`` takes the images of the whole
    update across ranks, as MXNet's kvstores do (Horovod's own ``step`` takes the images of one
    rank: it already averages over the ranks)."""
    global _TRAINER
    if _TRAINER is None:
        hvd = load()

        class GlobalBatchTrainer(hvd.DistributedTrainer):
            def step(self, batch_size, ignore_stale_grad=False):
                # all-reduce only finished gradients: MXNet 1.9.1 lets Horovod's all-reduce read
                # a gradient the backward pass is still writing (hybridized or not; measured on
                # loopback: the ranks' weights drifted apart by ~2e-6 in 4 of 8 runs, in 0 of 12
                # with the wait).  The cost: no overlap of the all-reduce with the backward pass.
                for p in self._params:
                    if p.grad_req != 'null':
                        p.list_grad()[0].wait_to_read()
                super().step(batch_size / hvd.size(), ignore_stale_grad)

            @staticmethod
            def mean_over_ranks(total, count):
                """``sum(total) / sum(count)`` over the ranks: the epoch's training loss of the
                whole global batch (each rank sums the losses of its own shard)."""
                both = hvd.allreduce(mx.nd.array([total, count]), name='aff.loss', op=hvd.Sum)
                total, count = both.asnumpy().tolist()
                return total / count

            @staticmethod
            def barrier():
                """Return when every rank got here (an all-reduce of one number)."""
                hvd.allreduce(mx.nd.zeros((1,)), name='aff.barrier').wait_to_read()

        _TRAINER = GlobalBatchTrainer
    return _TRAINER


def make_trainer(params, optimizer, opts):
    """The rank's trainer, after every rank took rank 0's weights (``broadcast_parameters``;
    parameters still waiting for their shapes are broadcast when they are initialised)."""
    hvd = load()
    hvd.broadcast_parameters(params, root_rank=0)
    return trainer_class()(params, optimizer, opts)


def install():
    """Build and install Horovod into this interpreter's environment (``make horovod``)."""
    import subprocess
    import sys
    cmd = [sys.executable, '-m', 'pip'] + list(PIP_ARGS)
    print('building Horovod (about 2 minutes on 2 cores): %s' % INSTALL, flush=True)
    return subprocess.call(cmd, env=dict(os.environ, **dict(BUILD_ENV)))


if __name__ == '__main__':
    import sys
    if sys.argv[1:] != ['install']:
        sys.exit('usage: python -m utils.horovod install   (builds Horovod for the pinned MXNet)')
    sys.exit(install())
