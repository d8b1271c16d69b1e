"""The training engine of ``train_cifar.py``, ``train_imagenet.py`` and ``train_seg.py``.

It owns, once for the three scripts: the epoch/iteration loop and its targets (mixup, label
smoothing, the official training metric), evaluation, the parameter count, the checkpoint sets
(:mod:`utils.checkpoint`) and resume, and the guards that make a long run safe:

* output folders are created and probed for writing before anything is trained;
* a non-finite loss (or non-finite weights before a save) stops the run with one error line and
  exit status :data:`EXIT_DIVERGED`; nothing is saved from such weights;
* a resume verifies the checkpoint set, its optimizer states against the network and its
  configuration against the flags: a changed batch refuses, changed schedule flags re-plan the
  schedule from the update reached (said in the log), any other changed flag is listed;
* a save that fails (a full disk) is one error line; the previous set is intact.

A script supplies a :class:`Task` (how a batch becomes inputs and targets, the metric, the
evaluation, the epoch's log line and CSV row, the best-checkpoint rule) and calls
:meth:`Engine.fit`.
"""
import contextlib
import logging
import math
import os
import sys
import time

import mxnet as mx
import numpy as np

from net.errors import AFFError, CheckpointError
from utils import train as T
from utils.checkpoint import check_states, fault_point, save_params_atomic, stem_of
from utils.history import EpochCSV, plot_history
from utils.logs import EpochLogger
from utils.models import count_params  # noqa: F401  (the one parameter counter, re-exported)

__all__ = ['Engine', 'Classification', 'Segmentation', 'Diverged', 'EXIT_DIVERGED',
           'probe_writable', 'count_params', 'batches', 'classification_errors',
           'Resume', 'SCHEDULE_FLAGS', 'start_from', 'weights_of', 'open_run_logs']

#: exit status of a run stopped by the divergence guard (usage errors exit 2)
EXIT_DIVERGED = 3

#: flags whose change on resume re-plans the learning-rate schedule from the update reached
SCHEDULE_FLAGS = ('num_epochs', 'epochs', 'lr', 'lr_mode', 'cosine', 'lr_decay', 'lr_decay_epoch',
                  'lr_decay_period', 'warmup_epochs', 'power', 'mixup_off_epoch')
#: flags that say where things are or how fast they run: never compared on resume
_PLACE_FLAGS = ('resume_from', 'resume', 'resume_params', 'resume_states', 'resume_epoch',
                'save_dir', 'logging_dir', 'logging_file', 'save_plot_dir', 'num_workers',
                'data_dir', 'rec_train', 'rec_train_idx', 'rec_val', 'rec_val_idx', 'coco_root',
                'log_interval', 'summary', 'eval', 'mode', 'gpus', 'num_gpus',
                'num_cpu_contexts', 'kv_store', 'skip_checksum', 'vis_samples', 'rec_verify')


class Diverged(AFFError):
    """The loss or the weights became non-finite (exit status :data:`EXIT_DIVERGED`)."""
    exit_code = EXIT_DIVERGED


# ------------------------------------------------------------------------------- small pieces
def probe_writable(*dirs):
    """Create each folder and write (then remove) a file in it; one AFFError line naming the
    folder otherwise -- before a single batch is trained."""
    for flag, d in dirs:
        d = os.path.abspath(os.path.expanduser(d or '.'))
        probe = os.path.join(d, '.aff-write-probe-%d' % os.getpid())
        try:
            os.makedirs(d, exist_ok=True)
            with open(probe, 'w') as f:
                f.write('ok')
            os.remove(probe)
        except OSError as e:
            raise AFFError('%s %s is not a writable folder (%s); choose another one'
                           % (flag, d, e.strerror or e)) from None


def _at_epoch(source, epoch):
    """A shard sampler shuffles by (seed, rank, epoch): a resumed run reads its epoch's order."""
    from utils.data.transforms import ShardBatchSampler
    sampler = getattr(source, '_batch_sampler', None)
    if isinstance(sampler, ShardBatchSampler):
        sampler.epoch = epoch


def batches(source, what='the data'):
    """``(data, label, pad)`` from an ``mx.io.DataIter`` (reset first) or a DataLoader.

    An MXNet error while reading (a garbled image inside a RecordIO record: OpenCV asserts in
    the decoding thread) becomes one AFFError line naming ``what`` and the batch."""
    def read():
        if isinstance(source, mx.io.DataIter):
            source.reset()  # the prefetching threads may fail here already
            for b in source:
                yield b.data[0], b.label[0], b.pad or 0
        else:
            for d, l in source:
                yield d, l, 0
    items, i = read(), 0
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except mx.base.MXNetError as e:
            reason = [ln for ln in str(e).splitlines() if ln.strip()][-1:] or ['(no message)']
            raise AFFError('reading batch %d of %s failed: %s; a record or image in it is corrupt '
                           '(train_imagenet.py --rec-verify decode names it)'
                           % (i + 1, what, ' '.join(reason[0].split())[:300])) from None
        i += 1
        yield item


def classification_errors(model, source, ctx, dtype='float32', k=5):
    """``(top-1 error, top-k error, images)`` over ``source``; padded images of a round-batch
    iterator are dropped, so each image counts once."""
    top1, topk, seen = mx.metric.Accuracy(), None, 0
    for d, l, pad in batches(source, 'the validation data'):
        keep = d.shape[0] - pad
        if keep <= 0:
            continue
        xs, ys = T.split(d[:keep].astype(dtype, copy=False), ctx), T.split(l[:keep], ctx)
        outs = [model(x).astype('float32', copy=False) for x in xs]
        if topk is None:  # top-5 of fewer than 5 classes: top-k over all classes
            topk = mx.metric.TopKAccuracy(min(k, outs[0].shape[1]))
        top1.update(ys, outs)
        topk.update(ys, outs)
        seen += keep
    if topk is None:
        raise AFFError('the validation data is empty')
    return 1 - top1.get()[1], 1 - topk.get()[1], seen


def _finite(x):
    return math.isfinite(x)


# ------------------------------------------------------------------------------- tasks
class Task(object):
    """What differs between the scripts.  ``kind``: the log format (:class:`utils.logs.EpochLogger`);
    ``best_key``: the record key of the best value; ``higher``: whether a higher value is better."""
    kind, best_key, higher, initial_best = 'cifar', 'best_acc', True, 0.0
    loss = None

    def metric(self, epoch):
        raise NotImplementedError

    def prepare(self, xs, ys, epoch):
        """``(inputs, targets)`` of one batch, per device shard."""
        raise NotImplementedError

    def update(self, metric, ys, targets, outs):
        metric.update(ys, outs)

    def evaluate(self, model, val_data, ctx):
        """A dict of validation values; ``score`` among them is what the best rule compares."""
        raise NotImplementedError

    def rows(self, epoch, train, values, loss, lr, speed, elapsed):
        """``(keywords of EpochLogger.epoch, CSV row)`` of one epoch."""
        raise NotImplementedError


class Classification(Task):
    """Image classification as the official scripts train it: one-hot targets with label
    smoothing over all ``classes`` outputs, mixup of each device shard with itself reversed
    (off in the last ``mixup_off_epoch`` epochs), RMSE as training metric under mixup, else
    accuracy.  ``kind`` 'cifar' (validation accuracy) or 'imagenet' (top-1/top-5 error)."""

    def __init__(self, kind, classes, num_epochs, smoothing=0.0, mixup=False, mixup_alpha=1.0,
                 mixup_off_epoch=0, dtype='float32', input_grad=False):
        self.kind, self.classes, self.num_epochs = kind, classes, num_epochs
        self.eps, self.mixup, self.alpha = smoothing, mixup, mixup_alpha
        self.mixup_off, self.dtype, self.input_grad = mixup_off_epoch, dtype, input_grad
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        if kind == 'imagenet':
            # the official ImageNet rule: a new best whenever top-1 error beats 1.0, then the best
            self.best_key, self.higher, self.initial_best = 'best_top1_err', False, 1.0

    def metric(self, epoch):
        return mx.metric.RMSE() if self.mixup else mx.metric.Accuracy()

    def prepare(self, xs, ys, epoch):
        mix_on = self.mixup and epoch < self.num_epochs - self.mixup_off
        lam = np.random.beta(self.alpha, self.alpha) if mix_on else 1.0
        targets = [T.smooth_one_hot(y, self.classes, self.eps) for y in ys]
        if self.mixup:
            pairs = [T.mixup(x, t, lam) for x, t in zip(xs, targets)]
            xs, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        xs = [x.astype(self.dtype, copy=False) for x in xs]
        targets = [t.astype(self.dtype, copy=False) for t in targets]
        if self.input_grad:
            for x in xs:
                # MXNet updates BatchNorm moving statistics in the backward pass, which it prunes
                # for the parameter-free input BN unless the input needs a gradient: without this
                # the input BN's statistics would stay 0/1 (docs/official-behaviour.md, item 11)
                x.attach_grad()
        return xs, targets

    def update(self, metric, ys, targets, outs):
        outs = [o.astype('float32', copy=False) for o in outs]
        if self.mixup:
            metric.update([t.astype('float32', copy=False) for t in targets],
                          [mx.nd.softmax(o) for o in outs])
        else:
            metric.update(ys, outs)

    def evaluate(self, model, val_data, ctx):
        err1, err5, _ = classification_errors(model, val_data, ctx, self.dtype)
        if self.kind == 'imagenet':
            return dict(top1_err=err1, top5_err=err5, score=err1)
        return dict(val=1 - err1, score=1 - err1)

    def rows(self, epoch, train, values, loss, lr, speed, elapsed):
        name, value = train
        if self.kind == 'imagenet':
            log = dict(train_metric_name=name, train_metric=value, speed=speed, time=elapsed,
                       top1_err=values['top1_err'], top5_err=values['top5_err'])
            row = dict(epoch=epoch, train_metric_name=name, train=value, top1_err=values['top1_err'],
                       top5_err=values['top5_err'], lr=lr, speed=speed, time=elapsed)
            return log, row
        log = dict(train=value, val=values['val'], loss=loss, lr=lr, time=elapsed)
        return log, dict(log, epoch=epoch, train_metric_name=name)


class Segmentation(Task):
    """Two-class segmentation: per-pixel cross entropy, pixAcc/mIoU (GluonCV's metric)."""
    kind, best_key, higher, initial_best = 'seg', 'best_mIoU', True, 0.0

    def __init__(self, nclass=2):
        self.nclass = nclass
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss(axis=1)

    def metric(self, epoch):
        from gluoncv.utils.metrics import SegmentationMetric
        return SegmentationMetric(self.nclass)

    def prepare(self, xs, ys, epoch):
        for v in xs:
            v.attach_grad()  # the input BN's statistics (see Classification.prepare)
        return xs, [t.astype('float32') for t in ys]

    def evaluate(self, model, val_data, ctx):
        from utils import seg as S
        pix_acc, miou = S.evaluate(model, val_data, ctx, self.nclass)
        return dict(pixAcc=pix_acc, mIoU=miou, score=miou)

    def rows(self, epoch, train, values, loss, lr, speed, elapsed):
        row = dict(epoch=epoch, train=train[1], pixAcc=values['pixAcc'], mIoU=values['mIoU'],
                   loss=loss, lr=lr, time=elapsed)
        return {k: v for k, v in row.items() if k != 'epoch'}, row


# ------------------------------------------------------------------------------- resume
class Resume(object):
    """What a resume found: ``start_epoch``, ``best`` (the best score so far), ``notes``."""

    def __init__(self, start_epoch=0, best=None, notes=()):
        self.start_epoch, self.best, self.notes = start_epoch, best, list(notes)


def _changed(old, new):
    """``{flag: (old, new)}`` of the configuration entries that differ (places excluded)."""
    out = {}
    for key, value in sorted(new.items()):
        if key in _PLACE_FLAGS or key not in old:
            continue
        if old[key] != value and not (isinstance(value, (list, tuple)) and list(value) == old[key]):
            out[key] = (old[key], value)
    return out


def _flag(key):
    return '--' + key.replace('_', '-')


# ------------------------------------------------------------------------------- the engine
class Engine(object):
    """One training run: ``model`` and ``trainer`` on ``ctx``, ``iters`` updates of
    ``total_batch`` images per epoch, ``num_epochs`` epochs.

    ``ckpt``: the run's :class:`CheckpointSet` (``-last`` every epoch, ``-<tag>`` every
    ``save_period`` epochs, ``period_tag`` its format); ``best``: ``'params'`` (the official CIFAR
    ``<acc>-<name>-best.params``), ``'set'`` (a set tagged ``best``) or a callable
    ``(epoch, score) -> stem`` of a set (the official ImageNet names); ``save_final``: a periodic
    set after the last epoch too (the official ImageNet rule).  ``log``/``csv``: None on
    the ranks that do not write.  ``plot``: ``(csv path, png path, title)`` or None.
    """

    def __init__(self, task, model, trainer, ctx, iters, total_batch, num_epochs, ckpt, config,
                 log=None, csv=None, best='set', save_period=0, period_tag='%04d',
                 save_last=True, save_final=False, log_interval=0, plot=None, rank=0):
        if iters < 1:
            raise AFFError('an epoch has no iteration: the training set is empty or smaller than '
                           'one batch of %d images; lower --batch-size or use more data' % total_batch)
        self.task, self.model, self.trainer, self.ctx = task, model, trainer, ctx
        self.iters, self.total_batch, self.num_epochs = iters, total_batch, num_epochs
        self.ckpt, self.config, self.log, self.csv = ckpt, config, log, csv
        self.best_rule, self.save_period, self.period_tag = best, save_period, period_tag
        self.save_last, self.save_final = save_last, save_final
        self.log_interval, self.plot, self.rank = log_interval, plot, rank

    # ---------------------------------------------------------------- resume
    def restore(self, path, with_states=True, recover=True):
        """Resume from our set at ``path``: verify it, load weights and (``with_states``) optimizer
        states, continue the update count; returns a :class:`Resume`.  A torn set falls back to
        the newest complete one when ``recover``."""
        found = self.ckpt.read_or_recover(path) if recover else self.ckpt.read(path)
        meta, notes = found.meta, list(found.notes)
        name = self.ckpt.name
        if meta.get('model_name') not in (None, name):
            raise CheckpointError('%s is a checkpoint of %s, not of %s; resume it with the same '
                                  'options' % (found.stem, meta.get('model_name'), name))
        if meta['epoch'] + 1 > self.num_epochs:
            raise AFFError('%s ends at epoch %d but this run has only %d epochs; raise the number '
                           'of epochs to continue it' % (found.stem, meta['epoch'], self.num_epochs))
        if meta['epoch'] + 1 == self.num_epochs:
            notes.append('nothing left to train: %s ends at the last epoch (%d of %d); raise the '
                         'number of epochs to train further' % (found.stem, meta['epoch'],
                                                                self.num_epochs))
        notes += self._compare_config(found.stem, meta)
        from net.model_store import load_params
        load_params(self.model, found.params, ctx=self.ctx)
        updates = (meta['epoch'] + 1) * self.iters
        if with_states and found.states:
            self.load_states(found.states)
        else:
            notes.append('%s: the optimizer states are %s; the momentum starts from zero' % (
                found.stem, 'not loaded' if found.states else 'not in the set'))
        T.start_schedule_at(self.trainer, updates)
        if meta.get('num_update') not in (None, updates):
            notes.append('WARNING: %s recorded %s updates, its epoch count gives %d; the schedule '
                         'continues at update %d' % (found.stem, meta['num_update'], updates, updates))
        best = meta.get(self.task.best_key)
        best = self.task.initial_best if best is None else best
        notes.append('resumed %s: epoch %d onwards, update %d, best %.4f'
                     % (found.stem, meta['epoch'] + 1, updates, best))
        return Resume(meta['epoch'] + 1, best, notes)

    def restore_files(self, params=None, states=None, epoch=0):
        """The official ImageNet resume: weights from any ``params`` file, optimizer states from
        any ``states`` file (checked against the network), the schedule continued at ``epoch``
        (without states, the momentum restarts: said).  Returns a :class:`Resume`."""
        from net.model_store import load_params
        notes = []
        if params:
            load_params(self.model, weights_of(params, '--resume-params'), ctx=self.ctx)
        if states:
            self.load_states(states)
        if epoch:
            T.start_schedule_at(self.trainer, epoch * self.iters)
            if not states:
                notes.append('resumed at epoch %d without optimizer states: the schedule '
                             'continues at update %d, the momentum starts from zero'
                             % (epoch, epoch * self.iters))
        return Resume(epoch, notes=notes)

    def _compare_config(self, stem, meta):
        old = meta.get('config')
        if not isinstance(old, dict):
            return ['%s records no configuration: the flags are not compared' % stem]
        for key in ('iters', 'total_batch'):
            if key in meta and meta[key] != getattr(self, key):
                raise AFFError(
                    '%s was trained with %d images per update (%d updates per epoch), this run '
                    'has %d (%d): a resume keeps the batch (--batch-size and the number of '
                    'devices) and the training set; start a new run to change them' % (
                        stem, meta['total_batch'], meta['iters'], self.total_batch, self.iters))
        notes = []
        changed = _changed(old, self.config)
        plan = {k: v for k, v in changed.items() if k in SCHEDULE_FLAGS}
        other = {k: v for k, v in changed.items() if k not in SCHEDULE_FLAGS}
        if plan:
            notes.append('schedule re-planned from the checkpoint on purpose: %s; the learning '
                         'rate follows the new schedule from the update reached' % ', '.join(
                             '%s %s (was %s)' % (_flag(k), v[1], v[0]) for k, v in plan.items()))
        if other:
            notes.append('WARNING: flags differ from the checkpoint\'s run and take effect from '
                         'the resumed epoch: %s' % ', '.join(
                             '%s %s (was %s)' % (_flag(k), v[1], v[0]) for k, v in other.items()))
        return notes

    def load_states(self, path):
        """Optimizer states of ``path`` (checked against the network first); the optimizer
        settings and schedule of this run stay (only the states and update counts are taken)."""
        check_states(path, self.trainer._params)
        T.load_trainer_states(self.trainer, path)

    # ---------------------------------------------------------------- the loop
    def fit(self, train_data, val_data, start_epoch=0, best=None):
        """Train epochs ``start_epoch .. num_epochs-1``; returns the best validation score."""
        task, trainer = self.task, self.trainer
        best = task.initial_best if best is None else best
        show_bar = sys.stderr.isatty() and self.rank == 0
        for epoch in range(start_epoch, self.num_epochs):
            tic = btic = time.time()
            metric = task.metric(epoch)
            loss_sum, seen = 0.0, 0
            _at_epoch(train_data, epoch)
            source = T.progress(batches(train_data, 'the training data'), self.iters,
                                'epoch %d' % epoch, show_bar)
            for i, (x, y, _) in enumerate(source):
                if i >= self.iters:
                    break
                xs, ys = T.split(x, self.ctx), T.split(y, self.ctx)
                xs, targets = task.prepare(xs, ys, epoch)
                outs, losses = T.train_step(self.model, task.loss, trainer, xs, targets,
                                            self.total_batch)
                batch_loss = sum(float(l.astype('float32').sum().asscalar()) for l in losses)
                if not _finite(batch_loss):
                    self._diverged('the loss is %s at epoch %d, iteration %d' % (
                        batch_loss, epoch, i + 1), epoch * self.iters + i + 1)
                loss_sum += batch_loss
                seen += int(x.shape[0])      # this process's images: a rank sums its own shard
                task.update(metric, ys, targets, outs)
                if self.log is not None and self.log_interval and (i + 1) % self.log_interval == 0:
                    name, value = metric.get()
                    self.log.batch(epoch, i + 1, self.total_batch * self.log_interval
                                   / max(time.time() - btic, 1e-9), name, value,
                                   T.lr_after(trainer, epoch * self.iters + i + 1))
                    btic = time.time()
            if seen == 0:
                raise AFFError('epoch %d had no training batch: the training data is empty or '
                               'smaller than one batch' % epoch)
            train = metric.get()
            # Horovod: the loss of the global batch, on every rank (a collective); other
            # distributed workers log their own shard's, as its training metric
            loss = (trainer.mean_over_ranks(loss_sum, seen) if hasattr(trainer, 'mean_over_ranks')
                    else loss_sum / seen)
            values = task.evaluate(self.model, val_data, self.ctx)
            elapsed = time.time() - tic
            if self.rank != 0:
                continue
            fault_point('epoch %d done' % epoch)
            self._check_weights(epoch)
            lr = T.lr_after(trainer, (epoch + 1) * self.iters)
            speed = int(self.iters * self.total_batch / max(elapsed, 1e-9))
            log_kw, row = task.rows(epoch, train, values, loss, lr, speed, elapsed)
            try:
                self.log.epoch(epoch, **log_kw)
                self.csv.append(row)
            except OSError as e:
                raise AFFError('writing the log of epoch %d failed (%s): %s; free space or fix '
                               'the folder and resume from the last checkpoint'
                               % (epoch, e.strerror or e, self.log.path)) from None
            best = self._end_of_epoch(epoch, values, best)
            if self.plot:
                try:
                    plot_history(*self.plot[:2], title=self.plot[2])
                except OSError as e:  # the checkpoint is committed: say it, go on
                    self._warn('WARNING: the history plot %s was not written (%s)'
                               % (self.plot[1], e.strerror or e), epoch)
        # Horovod: a rank that left early would shut the job down under rank 0's last save
        getattr(trainer, 'barrier', lambda: None)()
        return best

    def _warn(self, line, epoch):
        try:
            self.log.info(line)
        except OSError as e:
            raise AFFError('writing the log after epoch %d failed (%s): %s; the checkpoint of the '
                           'epoch is saved: free space and resume from it'
                           % (epoch, e.strerror or e, self.log.path)) from None

    def _diverged(self, what, update):
        lr = T.lr_after(self.trainer, update)
        raise Diverged('%s (learning rate %g): training stopped and nothing saved from these '
                       'weights; the checkpoints written so far are intact. Lower --lr (or the '
                       'warmup\'s end), check the data, or resume from the last good checkpoint'
                       % (what, lr))

    def _check_weights(self, epoch):
        total = sum(float(mx.nd.sum(mx.nd.abs(p.data(self.ctx[0]).astype('float32')))
                          .asscalar()) for p in self.model.collect_params().values())
        if not _finite(total):
            self._diverged('the weights are not finite after epoch %d' % epoch,
                           (epoch + 1) * self.iters)

    def _better(self, score, best):
        return score > best if self.task.higher else score < best

    def _meta(self, epoch, best):
        return {'epoch': epoch, 'num_update': (epoch + 1) * self.iters, 'iters': self.iters,
                'total_batch': self.total_batch, 'model_name': self.ckpt.name,
                self.task.best_key: best, 'config': self.config}

    def _end_of_epoch(self, epoch, values, best):
        """Best checkpoint, ``-last`` and periodic sets, in this order (each commit whole)."""
        score = values['score']
        trainer = self.trainer if T.states_savable(self.trainer) else None
        try:
            if self._better(score, best):
                best = score
                if self.best_rule == 'params':
                    save_params_atomic(self.model, os.path.join(
                        self.ckpt.dir, '%.4f-%s-best.params' % (score, self.ckpt.name)))
                elif self.best_rule == 'set':
                    self.ckpt.save('best', self.model, None,
                                   dict(self._meta(epoch, best), **{k: v for k, v in values.items()
                                                                    if k != 'score'}))
                else:
                    self.ckpt.save_stem(self.best_rule(epoch, score), self.model, trainer,
                                        self._meta(epoch, best))
            meta = self._meta(epoch, best)
            if self.save_last:
                self.ckpt.save('last', self.model, trainer, meta)
            if self.save_period and (epoch + 1) % self.save_period == 0 or \
                    self.save_final and epoch == self.num_epochs - 1:
                self.ckpt.save(self.period_tag % epoch, self.model, trainer, meta)
        except OSError as e:
            raise AFFError('saving the checkpoint of epoch %d in %s failed (%s); the sets written '
                           'before are intact: free space or fix the folder and resume from the '
                           'last one' % (epoch, self.ckpt.dir, e.strerror or e)) from None
        return best

    @staticmethod
    def clean(ckpt, notes):
        """Remove what an interrupted save of ``ckpt`` left, with a note."""
        removed = ckpt.clean_leftovers()
        if removed:
            notes.append('removed %d file(s) an interrupted save left in %s: %s'
                         % (len(removed), ckpt.dir, ', '.join(removed)))



# ------------------------------------------------------------------------------- script glue
def start_from(engine, path, flag, model, ctx):
    """The :class:`Resume` of ``flag PATH``: one of our sets (any of its files or its stem:
    verified, continues its schedule), any other ``.params`` file (weights only, the schedule
    from epoch 0, as the official scripts), or nothing (``path`` None)."""
    if not path:
        return Resume()
    path = os.path.expanduser(path)
    if os.path.isfile(stem_of(path) + '.json'):
        return engine.restore(path)
    path = weights_of(path, flag)
    from net.model_store import load_params
    load_params(model, path, ctx=ctx)
    return Resume(notes=['loaded weights from %s; the schedule starts at epoch 0 (official %s)'
                         % (path, flag)])


def weights_of(path, flag):
    """The weights file ``flag PATH`` names: the verified ``.params`` of one of our sets (any of
    its files or its stem), or any other existing ``.params`` file."""
    path = os.path.expanduser(path)
    if os.path.isfile(stem_of(path) + '.json'):
        from utils.checkpoint import read_set
        return read_set(stem_of(path)).params
    if os.path.isdir(path):
        raise AFFError('%s %s is a folder; pass a checkpoint file' % (flag, path))
    if not os.path.isfile(path):
        raise AFFError('%s %s does not exist' % (flag, path))
    return path


@contextlib.contextmanager
def open_run_logs(log_path, csv_path, config, sources, notes, kind, fields, start_epoch,
                  prefix='INFO:root:'):
    """``(log, csv)`` of a run: the official-format log (configuration first, then where each
    setting came from and the notes) and the per-epoch CSV, whose rows of epochs a resumed run
    trains again are removed (said in the log).  Both are closed on leaving."""
    log = EpochLogger(log_path, config, prefix=prefix, stream=sys.stdout, kind=kind)
    csv = None
    handler = _LogHandler(log)
    loggers = [logging.getLogger(n) for n in ('py.warnings', 'net', 'gluoncv')]
    logging.captureWarnings(True)
    for lg in loggers:
        lg.addHandler(handler)
    try:
        csv = EpochCSV(csv_path, fields)
        gone = csv.drop_from(start_epoch)
        if gone:
            notes = list(notes) + ['removed the CSV rows of epochs %s from %s: they were written '
                                   'after the checkpoint this run resumes from and are trained '
                                   'again' % (gone, csv_path)]
        log.setup(sources, notes)
        yield log, csv
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        logging.captureWarnings(False)
        for f in (csv, log):
            if f is not None:
                f.close()


class _LogHandler(logging.Handler):
    """Python warnings and the ``net`` / ``gluoncv`` loggers into the run's log, one line each."""

    def __init__(self, log):
        super(_LogHandler, self).__init__(logging.WARNING)
        self.log = log

    def emit(self, record):
        try:
            self.log.info('WARNING (%s): %s' % (record.name, ' '.join(record.getMessage().split())))
        except Exception:  # a log that cannot be written must not hide the warning's cause
            self.handleError(record)
