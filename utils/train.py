"""Training machinery shared by the scripts, with the official open-aff semantics.

* :func:`lr_schedule` -- per-iteration learning rate from GluonCV's ``LRScheduler`` /
  ``LRSequential`` (docs/official-code.md §4.4), including the official "decay epochs shifted by the warmup
  length" of the HEAD CIFAR script;
* :func:`mixup` and :func:`smooth_one_hot` -- targets as the official scripts build them;
* :func:`make_trainer` -- NAG with ``--no-wd`` (BatchNorm gamma/beta and biases exempt);
* :func:`contexts` -- ``--gpus`` / CPU contexts;
* :func:`initializer` -- the official Xavier or the paper's Kaiming.
"""
import os
import sys

import mxnet as mx
import numpy as np
from gluoncv.utils import LRScheduler, LRSequential

from net.errors import AFFError, mxnet_reason
from net import cpu_speed

__all__ = ['lr_schedule', 'mixup', 'smooth_one_hot', 'make_trainer', 'states_savable',
           'lr_after', 'start_schedule_at', 'contexts', 'script_contexts', 'capped_workers',
           'hybridize_for_training', 'progress',
           'initializer', 'no_wd_names', 'split', 'train_step', 'seed_everything',
           'load_trainer_states', 'check_lr', 'EpochStepLR']


# ----------------------------------------------------------------------------- learning rate
def lr_schedule(mode, lr, num_epochs, iters_per_epoch, warmup_epochs=0, decay_epochs=(),
                decay_factor=0.1, decay_period=0, power=2.0, warmup_lr=0.0):
    """GluonCV's per-iteration schedule: linear warmup from ``warmup_lr`` for
    ``warmup_epochs``, then ``mode`` (step / cosine / poly / linear / constant) over the rest.

    ``decay_epochs`` are absolute epochs (counted from the start of training); GluonCV
    counts them from the end of the warmup, so they are converted here.  (The official HEAD
    CIFAR script's own quirk -- decaying at ``e - warmup_epochs`` without any warmup in step
    mode -- is applied by the script, which says so in its log.)  ``decay_period > 0`` decays
    every ``decay_period`` epochs instead.
    """
    if iters_per_epoch < 1:
        raise AFFError('an epoch has no iteration: the batch is larger than the training set; '
                       'lower --batch-size or use more data')
    if num_epochs <= warmup_epochs:
        raise AFFError('--num-epochs (%d) must exceed --warmup-epochs (%d)'
                       % (num_epochs, warmup_epochs))
    check_lr(lr)
    rest = num_epochs - warmup_epochs
    kwargs = dict(base_lr=lr, target_lr=0, nepochs=rest, iters_per_epoch=iters_per_epoch,
                  power=power)
    if mode == 'step':
        if decay_period > 0:
            steps = list(range(decay_period, num_epochs, decay_period))
        else:
            steps = list(decay_epochs)
        kwargs.update(step_epoch=[e - warmup_epochs for e in steps], step_factor=decay_factor)
    elif mode not in ('cosine', 'poly', 'linear', 'constant'):
        raise AFFError('unknown --lr-mode %r; use step, cosine, poly, linear or constant' % mode)
    schedulers = []
    if warmup_epochs > 0:
        schedulers.append(LRScheduler(_one_update_safe('linear', warmup_epochs * iters_per_epoch),
                                      base_lr=warmup_lr, target_lr=lr, nepochs=warmup_epochs,
                                      iters_per_epoch=iters_per_epoch))
    schedulers.append(LRScheduler(_one_update_safe(mode, rest * iters_per_epoch), **kwargs))
    return LRSequential(schedulers)


def _one_update_safe(mode, niters):
    """GluonCV's linear/poly/cosine divide by ``niters - 1``: a phase of one update is the
    constant rate those formulas give at its first update."""
    return 'constant' if niters == 1 and mode in ('linear', 'poly', 'cosine') else mode


def check_lr(lr, flag='--lr'):
    """A learning rate must be a finite number above zero (one AFFError line otherwise)."""
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise AFFError('%s must be a finite number above 0, got %r' % (flag, lr))
    return lr


class EpochStepLR(mx.lr_scheduler.LRScheduler):
    """The official HEAD CIFAR step schedule: the rate is set at the start of each epoch and
    multiplied by ``factor`` when the epoch equals the next of ``decay_epochs`` (compared in
    order, as the official loop does: a decay epoch below 0 or passed over never decays).

    Per update (1-based, as the optimizer counts): update ``u`` belongs to epoch
    ``(u - 1) // iters_per_epoch``, so the rate of a whole epoch is the one the official log
    prints for it.  (GluonCV's step schedule switches one update earlier.)
    """

    def __init__(self, base_lr, num_epochs, iters_per_epoch, decay_epochs, factor):
        super(EpochStepLR, self).__init__(base_lr)
        self.iters_per_epoch, self.decay_epochs = iters_per_epoch, list(decay_epochs)
        self.factor, self.rates, count, rate = factor, [], 0, base_lr
        for epoch in range(num_epochs):
            if count < len(self.decay_epochs) and epoch == self.decay_epochs[count]:
                rate *= factor
                count += 1
            self.rates.append(rate)

    def __call__(self, num_update):
        epoch = max(int(num_update) - 1, 0) // self.iters_per_epoch
        return self.rates[min(epoch, len(self.rates) - 1)]


# ----------------------------------------------------------------------------- targets
def smooth_one_hot(labels, classes, eps=0.0):
    """One-hot targets with label smoothing: on = 1 - eps + eps/K, off = eps/K, K = ``classes``
    (the number of classifier outputs -- 100 even for the official 20-superclass runs)."""
    if eps:
        return mx.nd.one_hot(labels, classes, 1 - eps + eps / classes, eps / classes)
    return mx.nd.one_hot(labels, classes)


def mixup(data, targets, lam):
    """Mix one device shard with itself reversed along the batch axis (official scheme):
    ``lam * x + (1 - lam) * x[::-1]`` for images and (dense) targets alike."""
    if lam >= 1:
        return data, targets
    return (lam * data + (1 - lam) * data[::-1], lam * targets + (1 - lam) * targets[::-1])


def train_step(model, loss_fn, trainer, xs, targets, batch_size):
    """Forward and loss on every device shard under ``autograd.record()``, backward, then
    ``trainer.step(batch_size)``; returns ``(outputs, losses)``, one per shard."""
    with mx.autograd.record():
        outs = [model(x) for x in xs]
        losses = [loss_fn(o, t) for o, t in zip(outs, targets)]
    for loss in losses:
        loss.backward()
    trainer.step(batch_size)
    return outs, losses


def split(batch, ctx_list):
    """Split a batch along axis 0 over devices (equal shards, as the official scripts)."""
    return mx.gluon.utils.split_and_load(batch, ctx_list=ctx_list, batch_axis=0, even_split=False)


# ----------------------------------------------------------------------------- trainer
NO_WD_PATTERN = ('beta', 'gamma', 'bias')


def no_wd_names(params):
    """Names of the parameters ``--no-wd`` exempts: BatchNorm gamma/beta and every bias
    (the official regex ``.*beta|.*gamma|.*bias`` on the parameter names)."""
    return [name for name in params.keys() if name.endswith(NO_WD_PATTERN)]


def make_trainer(net, lr_scheduler, lr, wd, momentum, no_wd=False, optimizer='nag',
                 kvstore='device', multi_precision=False):
    """``gluon.Trainer`` with the official optimizer settings (NAG, momentum 0.9); ``optimizer``
    may also be ``sgd`` or ``adagrad`` (the StopSign recipe of Table 2)."""
    params = net.collect_params()
    if no_wd:
        for name in no_wd_names(params):
            params[name].wd_mult = 0.0
    # the schedule alone sets the rate (passing learning_rate too only overwrites the
    # scheduler's unused base_lr, with a warning)
    opts = dict(wd=wd, lr_scheduler=lr_scheduler)
    if optimizer in ('nag', 'sgd'):  # AdaGrad (the segmentation recipe) has no momentum
        opts['momentum'] = momentum
    if lr_scheduler is None:
        opts['learning_rate'] = lr
    if multi_precision:
        opts['multi_precision'] = True
    if kvstore == 'horovod':
        from utils import horovod
        return horovod.make_trainer(params, optimizer, opts)
    kv_type = getattr(kvstore, 'type', kvstore) or ''
    # dist_*: update on the parameter servers (MXNet's default).  The alternative, all-reduced
    # gradients applied by each worker (update_on_kvstore=False), races with the hybridized
    # backward pass on MXNet 1.9.1: measured, the workers' weights drifted apart (1e-6 to 1.06, in
    # 4 of about 10 runs); on the servers, 2 workers equal one process bit for bit.
    trainer = mx.gluon.Trainer(params, optimizer, opts, kvstore=kvstore,
                               update_on_kvstore=True if 'dist' in kv_type else None)
    # the servers receive the optimizer pickled without its param_dict, i.e. without the
    # parameters' wd_mult (--no-wd would be lost there): carry them by index, which pickles
    opt = trainer._optimizer
    opt.wd_mult.update({i: p.wd_mult for i, p in opt.param_dict.items() if p.wd_mult != 1.0})
    return trainer


def distribution(kv_store, ctx):
    """``(kvstore, rank, size, ctx, notes)`` of ``--kv-store``: MXNet's kvstore (``dist_*``: this
    worker's rank among the ps-lite workers) or ``'horovod'`` (the rank among the Horovod
    processes, on its one device: :func:`utils.horovod.device`)."""
    from utils import horovod
    if kv_store != 'horovod' and horovod.launched_size() > 1:
        raise AFFError('started by horovodrun as %d processes, but --kv-store is %s: each would '
                       'train on its own and all write the same files; add --kv-store horovod'
                       % (horovod.launched_size(), kv_store))
    if kv_store == 'horovod':
        hvd = horovod.load()
        ctx, note = horovod.device(hvd, ctx)
        return kv_store, hvd.rank(), hvd.size(), ctx, [note]
    try:
        kv = mx.kv.create(kv_store)
    except mx.base.MXNetError as e:  # nccl without an NCCL build, dist_* without its variables
        raise AFFError('--kv-store %s is not available here (MXNet: %s); use --kv-store device%s'
                       % (kv_store, mxnet_reason(e), ' or start the processes with python -m '
                          'utils.launch' if 'dist' in kv_store else '')) from None
    notes = ['parameter server %s: worker %d of %d' % (kv_store, kv.rank, kv.num_workers)] \
        if kv.num_workers > 1 else []
    return kv, kv.rank, kv.num_workers, ctx, notes


def states_savable(trainer):
    """False when the optimizer states live on parameter servers (every dist_* kvstore)."""
    kv = getattr(trainer, '_kvstore_params', {}).get('kvstore')
    return 'dist' not in (getattr(kv, 'type', kv) or '')


def lr_after(trainer, num_update):
    """The learning rate of update ``num_update`` (1-based).  Read from the schedule: with
    updates on parameter servers the local optimizer never counts updates, so
    ``trainer.learning_rate`` would stay at the first value."""
    sched = trainer._optimizer.lr_scheduler
    return sched(num_update) if sched is not None else trainer.learning_rate


def start_schedule_at(trainer, num_update):
    """Continue a per-iteration schedule after ``num_update`` updates when no optimizer states
    are loaded (the servers of a distributed run get this count with the pickled optimizer)."""
    opt = trainer._optimizer
    opt.begin_num_update = opt.num_update = int(num_update)
    # per-parameter counts of loaded states follow too: the schedule reads their maximum
    opt._index_update_count = {i: int(num_update) for i in opt._index_update_count}


# ----------------------------------------------------------------------------- devices, init
def contexts(gpus='', num_cpu_contexts=1, flag='--gpus', shown=None):
    """Devices from ``--gpus`` (comma-separated ids; empty = none) or ``num_cpu_contexts`` CPU
    contexts (how the multi-device path runs on machines without a GPU).

    Returns ``(ctx_list, note)`` -- ``note`` is a sentence for the log.
    """
    ids = [g.strip() for g in str(gpus or '').split(',') if g.strip()]
    if ids:
        try:
            ids = [int(g) for g in ids]
        except ValueError:
            raise AFFError('--gpus %r is not a comma-separated list of GPU ids' % gpus) from None
        have = mx.context.num_gpus()
        if max(ids) >= have:
            raise AFFError('%s %s asks for GPU %d but %d GPU(s) are visible to MXNet; use %s'
                           % (flag, gpus if shown is None else shown, max(ids), have,
                              'GPU ids below %d' % have if flag == '--gpus' else '%s %d or less'
                              % (flag, have)))
        return [mx.gpu(i) for i in ids], 'training on GPU(s) %s' % ','.join(map(str, ids))
    if num_cpu_contexts < 1:
        raise AFFError('--num-cpu-contexts must be >= 1')
    from net._env import THREADS_NOTE
    return ([mx.cpu(i) for i in range(num_cpu_contexts)],
            'training on the CPU (%d context(s), OMP_NUM_THREADS=%s)%s' % (
                num_cpu_contexts, os.environ.get('OMP_NUM_THREADS', 'unset'),
                '; ' + THREADS_NOTE if THREADS_NOTE else ''))


def script_contexts(gpus, gpus_source, num_cpu_contexts=1, flag='--gpus', shown=None):
    """``(ctx, notes)`` for a training script: ``gpus`` as :func:`contexts` takes it; when it is
    the flag's default (``gpus_source == 'default'``) and MXNet sees no GPU, the CPU is used and
    a note says so; an explicit value falls back too, with a WARNING line, as the official scripts
    (a GPU id that does not exist on a GPU machine stays an error).  ``shown``: the flag's value
    as the user would write it (default ``gpus``)."""
    notes = []
    if gpus and mx.context.num_gpus() == 0:
        # the official scripts train on the CPU when MXNet sees no GPU, whatever --gpus says
        shown = gpus if shown is None else shown
        notes.append('no GPU visible to MXNet: the default %s %s is replaced by the CPU'
                     % (flag, shown) if gpus_source == 'default' else
                     'WARNING: no GPU visible to MXNet: %s %s falls back to the CPU, as the '
                     'official scripts do' % (flag, shown))
        gpus = ''
    ctx, where = contexts(gpus, num_cpu_contexts, flag, shown)
    return ctx, notes + [where]


def capped_workers(requested):
    """``(workers, note)``: data-loading processes capped to the usable cores (note or None)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    workers = min(requested, cores or 1)
    if workers == requested:
        return workers, None
    return workers, '-j %d capped to %d data-loading processes (usable cores)' % (requested,
                                                                                  workers)


def hybridize_for_training(model, ctx):
    """Hybridize for training; returns a sentence for the log.

    Static allocation always; static *shapes* (what the official scripts ask for too) only when
    every context is a GPU: on the CPU, MXNet 1.9.1 with ``static_shape=True`` shows stale
    BatchNorm moving statistics in the parameter arrays (zeros, or those of earlier steps) and
    ends a multi-context run with wrong statistics (docs/pitfalls.md §1), while ``static_alloc``
    alone is bit-identical to plain ``hybridize()`` (tests/test_train_utils.py) and faster: it
    spares MXNet's pool-less CPU storage its page faults (AFF-ResNet-20-b1, batch 32, 2 threads:
    48-56 -> 41-42 ms per step, two interleaved rounds).
    On CPU contexts the network is first rewritten by the CPU speed layer (:mod:`net.cpu_speed`);
    on GPUs it keeps the official module structure, as in the official runs.
    """
    speed = cpu_speed.apply(model, ctx, training=True)
    if all(c.device_type == 'gpu' for c in ctx):
        model.hybridize(static_alloc=True, static_shape=True)
        return 'hybridized with static_alloc=True, static_shape=True; %s' % speed
    model.hybridize(static_alloc=True)
    return ('hybridized with static_alloc=True, without static_shape: on the CPU it leaves stale '
            'BatchNorm moving statistics in MXNet 1.9.1; %s' % speed)


def _onednn_available():
    return mx.runtime.Features().is_enabled('MKLDNN')


def hybridize_for_inference(model, x):
    """Prepare ``model`` for evaluation only (no gradients through it); returns a sentence for the log.

    On the CPU the inference rewrites of the speed layer (:func:`net.cpu_speed.apply` with
    ``training=False``: the fusion formulas; pooling and grouped convs stay official), then static
    allocation and -- on the CPU, when MXNet has
    oneDNN -- oneDNN graph optimisation, ``optimize_for(backend='MKLDNN')``: BatchNorm folded into
    the convolution before it, conv+ReLU and conv+sum fused.  Same function: outputs agree with
    the unfused network within 2e-5 relative (tests/test_bench.py).  ``x``: an example batch on the
    model's (first) context; other batch shapes re-partition on first use.

    MXNet 1.9.1's ``optimize_for`` fails ("Cannot find arg ...") when a pre-activation block's last
    convolution feeds only the residual sum (the plain CIFAR ResNets and FPNs; docs/pitfalls.md §5).  Then, as
    after any other failure, the model keeps static allocation only -- measured faster there than
    rerouting the sums around oneDNN's conv+sum fusion (docs/performance.md) -- and the sentence says so.
    """
    speed = cpu_speed.apply(model, x.context, training=False)
    if x.context.device_type != 'cpu' or not _onednn_available():
        model.hybridize(static_alloc=True, static_shape=True)
        return 'inference: hybridized with static_alloc=True, static_shape=True; %s' % speed
    try:
        # clear=True: a failed optimize_for otherwise leaves its graph behind for the next call
        model.optimize_for(x, backend='MKLDNN', clear=True, static_alloc=True, static_shape=True)
        return 'inference: oneDNN graph optimisation (optimize_for MKLDNN), static_alloc; %s' % speed
    except mx.base.MXNetError as e:
        error = str(e).strip().splitlines()[-1][:200]
    model.hybridize(static_alloc=True, static_shape=True)
    return ('inference: oneDNN graph optimisation failed (%s); hybridized with static_alloc only; %s'
            % (error, speed))


def progress(it, total, desc, show=None):
    """``it`` wrapped in a tqdm bar when ``show`` (default: stderr is a terminal), else ``it``."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return it
    from tqdm import tqdm
    return tqdm(it, total=total, desc=desc, leave=False)


def initializer(name):
    """``xavier`` = the official ``mx.init.Xavier()`` (uniform, avg, magnitude 3) of both CIFAR
    scripts; ``kaiming`` = ``MSRAPrelu`` as the ImageNet script and Table 2 (ResNet-20-b)."""
    if name == 'xavier':
        return mx.init.Xavier()
    if name == 'kaiming':
        return mx.init.MSRAPrelu()
    raise AFFError('unknown --init %r; use xavier or kaiming' % name)


def seed_everything(seed):
    """Seed MXNet's, NumPy's and Python's generators (``--seed``)."""
    import random
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def load_trainer_states(trainer, path):
    """The optimizer states (momentum) and update counts of ``path``, into ``trainer``.

    Unlike ``trainer.load_states``, the trainer keeps its own optimizer -- the learning rate
    schedule, weight decay, momentum and ``--no-wd`` multipliers of *this* run (MXNet's
    ``load_states`` replaces the optimizer by the pickled one, so changed flags would be ignored
    silently) -- and no file handle is left open (MXNet 1.9.1's kvstore path reads the file with
    a bare ``open(...).read()``).  States cannot be restored when the optimizer runs on
    parameter servers.
    """
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    mine = trainer._optimizer
    with open(path, 'rb') as f:
        data = f.read()
    if trainer._update_on_kvstore:
        updaters = [trainer._kvstore._updater]
        if updaters[0] is None:
            raise AFFError('optimizer states cannot be restored when the optimizer runs on the '
                           'parameter servers (%s); resume without --resume-states' % path)
    else:
        updaters = trainer._updaters
    for updater in updaters:
        updater.set_states(data)
    theirs = updaters[0].optimizer
    if theirs is not mine:
        mine.num_update, mine.begin_num_update = theirs.num_update, theirs.begin_num_update
        mine._index_update_count = dict(theirs._index_update_count)
    for updater in updaters:
        updater.optimizer = mine
    trainer._optimizer = mine
    mine.param_dict = {i: p for i, p in enumerate(trainer._params)}
