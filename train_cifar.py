#!/usr/bin/env python3
"""Train AFF networks on CIFAR-10/100 or the bundled digits (the official open-aff train_cifar.py).

Every option of the official HEAD script keeps its name, default and meaning, so open-aff
command lines run unchanged (``--model resnet --askc-type ASKCFuse --blocks 5 --channel-times 4
--mixup --auto_aug --label-smoothing ...``).  Additions: ``--recipe``, ``--data-dir``,
``--label-mode``, ``--classes``, ``--era``, ``--init``, ``--seed``, ``--num-cpu-contexts``,
``--optimizer``, ``--skip-checksum``, ``--kv-store`` (``horovod``: one process per device, started
with ``horovodrun``), ``--dataset digits``; ``--model`` also takes any registry name.
docs/cifar.md describes them.

Quick start (no download, a few minutes on two CPU cores):

    python train_cifar.py --dataset digits
"""
import argparse
import logging
import os
import sys

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import (Parser, check_askc_type, epoch_list, epochs_of, nonneg_float, nonneg_int,
                       positive_float, positive_int, run_main, seed_int)

import mxnet as mx  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from utils import train as T  # noqa: E402
from utils.checkpoint import CheckpointSet  # noqa: E402
from utils.engine import (Classification, Engine, count_params, open_run_logs,  # noqa: E402
                          probe_writable, start_from)
from utils.recipes import CIFAR_RECIPES, resolve  # noqa: E402

#: 806562e ``--model`` values (docs/official-code.md §2.5) -> (blocks per stage)
PAPER_RESNEXT = {'resnext29_32x4d': 3, 'resnext38_32x4d': 4, 'resnext47_32x4d': 5,
                 'se_resnext38_32x4d': 4}


def build_parser():
    p = Parser(prog='train_cifar.py', description=__doc__.split('\n')[0],
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument_group('open-aff HEAD options (same names, defaults and meanings)').add_argument
    a('--dataset', default='cifar100', help='cifar10, cifar100 or digits (embedded quick start)')
    a('--batch-size', type=positive_int, default=128, help='images per device and update')
    a('--askc-type', default='xxx', help='fusion of --model resnet/resnext: an official mode string '
      '(ASKCFuse = AFF, ResGlobLocaforGlobLocaChaFuse = iAFF, DirectAdd = none) or a paper name; '
      'python -m utils.models --fusions lists them')
    a('--channel-times', type=positive_int, default=4, help='width multiplier of [16,16,32,64]')
    a('--blocks', type=positive_int, default=1, help='blocks per stage (depth 6*blocks+2)')
    a('--start-layer', type=nonneg_int, default=1, help='stages numbered below it use plain addition')
    a('--summary', action='store_true', help='print the parameter count and exit')
    a('--gpus', default='0,1,2,3', help='GPU ids ("" = CPU); with no GPU visible to MXNet the CPU '
      'is used, with a log line')
    a('--model', default='resnet', help='resnet, resnext, an 806562e name (resnext29_32x4d ...) or '
      'any registry name (python -m utils.models --all)')
    a('-j', '--num-data-workers', dest='num_workers', type=nonneg_int, default=96,
      help='data-loading processes (capped to the usable cores, with a log line)')
    a('--num-epochs', type=positive_int, default=640, help='epochs to train')
    a('--lr', type=positive_float, default=0.2, help='base learning rate (not scaled by the batch)')
    a('--momentum', type=nonneg_float, default=0.9, help='momentum of NAG/SGD')
    a('--wd', type=nonneg_float, default=1e-4, help='weight decay')
    a('--lr-decay', type=positive_float, default=0.1, help='factor of each step decay')
    a('--lr-decay-period', type=nonneg_int, default=0,
      help='decay every N epochs instead of at --lr-decay-epoch (0: off)')
    a('--lr-decay-epoch', type=epoch_list, default='300,450',
      help='step decay epochs (shifted by --warmup-epochs, as the official script)')
    a('--drop-rate', type=float, default=0.0, help='unused, as in the official script')
    a('--mode', default='hybrid', help='hybrid (static graph) or imperative')
    a('--save-period', type=nonneg_int, default=10, help='epochs between periodic checkpoints (0: off)')
    a('--save-dir', default='params', help='checkpoints: best, -last every epoch, periodic')
    a('--logging-dir', default='logs', help='the training log and the per-epoch CSV')
    a('--resume-from', default=None, help='a checkpoint of ours (continues its schedule) or '
      'any .params file (weights only, schedule from epoch 0, as the official script)')
    a('--save-plot-dir', default='.', help='the history plot <model>_history.png (the quickstart '
      'recipe: beside the log)')
    a('--mixup', action='store_true', help='mixup of each device shard with itself reversed')
    a('--mixup-alpha', type=positive_float, default=1.0,
      help='Beta(alpha, alpha) of the mixing weight')
    a('--mixup-off-epoch', type=nonneg_int, default=40, help='no mixup in the last N epochs')
    a('--auto_aug', action='store_true', help='AutoAugment (CIFAR-10 policy) before crop/flip')
    a('--label-smoothing', action='store_true', help='label smoothing, epsilon 0.1')
    a('--cosine', action='store_true', help='warmup + cosine per update (else per-epoch step decay)')
    a('--no-wd', action='store_true', help='no weight decay on BN gamma/beta and biases '
      '(only with --cosine, as the official script)')
    a('--warmup-lr', type=float, default=0.0, help='unused, as in the official script')
    a('--warmup-epochs', type=nonneg_int, default=10,
      help='linear warmup epochs (cosine mode; they also shift the step epochs)')
    a('--deep-stem', action='store_true', help='three 3x3 convs as stem (HEAD host option)')
    a = p.add_argument_group('additions of this repository').add_argument
    a('--recipe', default=None, choices=sorted(CIFAR_RECIPES),
      help='defaults of a recipe (utils/recipes.py); explicit flags override it '
      '[default: quickstart for digits, else official]')
    a('--data-dir', default=None,
      help='folder with the CIFAR binary files [default: where Gluon keeps them, '
      '$MXNET_HOME/datasets/<dataset> or ~/.mxnet/datasets/<dataset>]')
    a('--label-mode', default='fine', choices=['fine', 'coarse'],
      help='CIFAR-100 labels: 100 fine classes or the 20 superclasses (the paper\'s numbers)')
    a('--classes', type=positive_int, default=None,
      help='classifier outputs (default: the number of labels; the official runs used 100 '
      'outputs for the 20 superclasses)')
    a('--era', default='head', choices=['head', 'paper'],
      help='host code of --model resnet/resnext: open-aff HEAD or the 806562e paper commit')
    a('--init', default='xavier', choices=['xavier', 'kaiming'],
      help='xavier (the official scripts) or kaiming (MSRA; Table 2)')
    a('--seed', type=seed_int, default=0, help='seed of MXNet, NumPy and Python generators')
    a('--num-cpu-contexts', type=positive_int, default=1, help='CPU devices when training on the CPU')
    a('--optimizer', default='nag', choices=['nag', 'sgd'],
      help='nag (Nesterov, the official scripts) or sgd (plain momentum SGD: the '
      'AFINet and ACmix recipes)')
    a('--skip-checksum', action='store_true', help='accept CIFAR files whose SHA-1 differs')
    a('--kv-store', default='device', choices=KV_STORES,
      help='gradient aggregation: device/local/nccl within this process, or horovod (one process '
      'per device, started with horovodrun; docs/distributed.md)')
    return p


#: the parameter-server kvstores (dist_*) are train_imagenet.py's only
KV_STORES = ('device', 'local', 'nccl', 'horovod')


# --------------------------------------------------------------------------- the network
def model_name(args):
    """The official file/log stem (docs/official-code.md §3.4) or ``<dataset>-<registry name>``."""
    if args.model == 'resnet':
        return '%s-%s-resnet-%d-c-%d-s-%d' % (args.dataset, args.askc_type, 6 * args.blocks + 2,
                                             args.channel_times, args.start_layer)
    if args.model == 'resnext':
        return '%s-%s-resneXt-%d-%dx%d-c-%d-s-%d' % (
            args.dataset, args.askc_type, 9 * args.blocks + 2, _cardinality(args), 4,
            args.channel_times, args.start_layer)
    return '%s-%s' % (args.dataset, args.model)


def _cardinality(args):
    width = 16 * args.channel_times
    if width == 64:
        return 32
    if width == 128:
        return 64
    raise AFFError('--model resnext needs --channel-times 4 (cardinality 32) or 8 (64), as the '
                   'official script; got %d' % args.channel_times)


def build_net(args, classes):
    kw = dict(classes=classes)
    if args.model == 'resnet':
        from net.cifar import CIFARPreActResNet
        channels = [c * args.channel_times for c in (16, 16, 32, 64)]
        return CIFARPreActResNet(args.askc_type, [args.blocks] * 3, channels,
                                 start_layer=args.start_layer, era=args.era,
                                 deep_stem=args.deep_stem, **kw)
    if args.model == 'resnext':
        from net.cifar import CIFARResNeXt
        return CIFARResNeXt(args.askc_type, [args.blocks] * 3, 16 * args.channel_times,
                            _cardinality(args), 4, start_layer=args.start_layer, era=args.era,
                            deep_stem=args.deep_stem, **kw)
    if args.model in PAPER_RESNEXT:
        from net.openaff import CIFARResNextASKC
        return CIFARResNextASKC([PAPER_RESNEXT[args.model]] * 3, 32, 4, use_se='se_' in args.model,
                                **kw)
    return net.get_model(args.model, **kw)


# --------------------------------------------------------------------------- data
def load_data(args):
    """(train images, train labels, test images, test labels, mean, std, label classes)."""
    from utils import data as D
    if args.dataset == 'digits':
        xtr, ytr = D.load_digits32(train=True)
        xte, yte = D.load_digits32(train=False)
        return xtr, ytr, xte, yte, D.DIGITS_MEAN, D.DIGITS_STD, 10
    if args.dataset not in ('cifar10', 'cifar100'):
        raise AFFError('unknown --dataset %r; use cifar10, cifar100 or digits' % args.dataset)
    root = data_dir(args)
    kw = dict(dataset=args.dataset, label_mode=args.label_mode, verify=not args.skip_checksum)
    xtr, ytr = D.read_cifar(root, train=True, **kw)
    xte, yte = D.read_cifar(root, train=False, **kw)
    return xtr, ytr, xte, yte, D.CIFAR_MEAN, D.CIFAR_STD, D.num_classes(args.dataset,
                                                                         args.label_mode)


def data_dir(args):
    """``--data-dir``, else Gluon's own cache folder, so official command lines find the files
    a Gluon ``CIFAR100()`` download left there."""
    if args.data_dir:
        return os.path.expanduser(args.data_dir)
    return os.path.join(mx.base.data_dir(), 'datasets', args.dataset)


def validate(args):
    if args.dataset == 'cifar10' and args.label_mode == 'coarse':
        raise AFFError('--label-mode coarse exists only for CIFAR-100; drop it or use '
                       '--dataset cifar100')
    if args.mode not in ('hybrid', 'imperative'):
        raise AFFError("--mode must be 'hybrid' or 'imperative', got %r" % args.mode)
    if args.model in ('resnet', 'resnext'):
        check_askc_type(args.askc_type, args.model)
        fusion = net.fusion.canonical_fusion(args.askc_type)  # unknown -> the closest names
        if args.start_layer > 3 and fusion != net.fusion.canonical_fusion('DirectAdd'):
            raise AFFError('--start-layer %d leaves none of the 3 stages with %s; use 1, 2 or 3 '
                           '(or --askc-type DirectAdd for the plain network)'
                           % (args.start_layer, args.askc_type))


# --------------------------------------------------------------------------- schedule
def schedule(args, iters, notes):
    """Warmup + cosine per iteration (GluonCV), or the official per-epoch step decay at
    ``--lr-decay-epoch`` (or every ``--lr-decay-period``) minus ``--warmup-epochs``."""
    if args.cosine:
        return T.lr_schedule('cosine', args.lr, args.num_epochs, iters,
                             warmup_epochs=args.warmup_epochs)
    decays = list(range(args.lr_decay_period, args.num_epochs, args.lr_decay_period)) \
        if args.lr_decay_period > 0 else epochs_of(args.lr_decay_epoch)
    decays = [e - args.warmup_epochs for e in decays]
    if args.warmup_epochs:
        notes.append('step decay at epochs %s: --lr-decay-epoch %s shifted by --warmup-epochs %d '
                     'without any warmup, as the official script does'
                     % (decays, args.lr_decay_epoch, args.warmup_epochs))
    return T.EpochStepLR(args.lr, args.num_epochs, iters, decays, args.lr_decay)


def _notes(args, sources, classes, label_classes):
    """The log lines that explain this configuration."""
    notes = []
    if classes != label_classes:
        notes.append('WARNING: the classifier has %d outputs but the labels take only %d values '
                     '(%s %s labels) -- the official 100-output head on the 20 superclasses; '
                     'label smoothing spreads over all %d outputs'
                     % (classes, label_classes, args.dataset, args.label_mode, classes))
    if args.dataset == 'cifar100':
        notes.append('labels: %s (%d classes)%s' % (args.label_mode, label_classes,
                     ' -- the 20 superclasses of the paper\'s CIFAR-100 numbers'
                     if args.label_mode == 'coarse' else ''))
    if args.skip_checksum:
        notes.append('CIFAR file checksums NOT verified (--skip-checksum)')
    if sources['warmup_epochs'] != 'flag' and args.warmup_epochs >= args.num_epochs:
        # a short run (--num-epochs 1) should not fail on a warmup nobody asked for
        notes.append('--warmup-epochs %d (%s) shortened to %d to fit --num-epochs %d'
                     % (args.warmup_epochs, sources['warmup_epochs'], args.num_epochs - 1,
                        args.num_epochs))
        args.warmup_epochs = args.num_epochs - 1
    if args.mixup and args.mixup_off_epoch >= args.num_epochs:
        notes.append('--mixup-off-epoch %d >= --num-epochs %d: mixup is never applied (official '
                     'semantics; the targets are still dense)' % (args.mixup_off_epoch,
                                                                  args.num_epochs))
    if args.no_wd and not args.cosine:
        notes.append('--no-wd has no effect without --cosine (official behaviour)')
    return notes


# --------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, sources = resolve(build_parser(), argv, CIFAR_RECIPES,
                            lambda a: 'quickstart' if a.dataset == 'digits' else 'official')
    validate(args)
    T.seed_everything(args.seed)
    ctx, notes = T.script_contexts(args.gpus, sources['gpus'], args.num_cpu_contexts)
    _, rank, ranks, ctx, dist_notes = T.distribution(args.kv_store, ctx)
    notes += dist_notes
    workers, note = T.capped_workers(args.num_workers)
    notes += [note] if note else []
    if args.summary:  # no data needed: the label count follows from --dataset/--label-mode
        from utils import data as D
        label_classes = 10 if args.dataset == 'digits' else D.num_classes(args.dataset,
                                                                          args.label_mode)
        model = build_net(args, args.classes or label_classes)
        print('%s: %d tensors, %d parameters, %d trainable' % ((model_name(args),) +
                                                              count_params(model)))
        return 0
    xtr, ytr, xte, yte, mean, std, label_classes = load_data(args)
    classes = args.classes or label_classes
    if classes < label_classes:
        raise AFFError('--classes %d is smaller than the %d labels of %s; use --classes %d or more'
                       % (classes, label_classes, args.dataset, label_classes))
    notes += _notes(args, sources, classes, label_classes)
    model, name = build_net(args, classes), model_name(args)
    total_batch = args.batch_size * len(ctx) * ranks
    iters = len(xtr) // total_batch
    sched = schedule(args, max(iters, 1), notes)  # an empty epoch is refused by the engine
    plot_dir = args.save_plot_dir or args.logging_dir
    if rank == 0:
        probe_writable(('--save-dir', args.save_dir), ('--logging-dir', args.logging_dir),
                       ('--save-plot-dir', plot_dir))
    model.initialize(T.initializer(args.init), ctx=ctx)
    if args.mode == 'hybrid':
        notes.append(T.hybridize_for_training(model, ctx))
    trainer = T.make_trainer(model, sched, args.lr, args.wd, args.momentum,
                             no_wd=args.no_wd and args.cosine, optimizer=args.optimizer,
                             kvstore=args.kv_store)  # a name, as the official script's default
    config = {k: v for k, v in vars(args).items() if k != 'decay_epochs'}
    ckpt = CheckpointSet(args.save_dir, name)
    if rank == 0:
        Engine.clean(ckpt, notes)
    task = Classification('cifar', classes, args.num_epochs,
                          smoothing=0.1 if args.label_smoothing else 0.0, mixup=args.mixup,
                          mixup_alpha=args.mixup_alpha, mixup_off_epoch=args.mixup_off_epoch,
                          input_grad=True)
    logs = os.path.join(args.logging_dir, 'train_%s' % name)
    engine = Engine(task, model, trainer, ctx, iters, total_batch, args.num_epochs, ckpt, config,
                    best='params', save_period=args.save_period,
                    plot=(logs + '.csv', os.path.join(plot_dir, '%s_history.png' % name), name),
                    rank=rank)
    resume = start_from(engine, args.resume_from, '--resume-from', model, ctx)
    train_data, test_data = _loaders(args, xtr, ytr, xte, yte, mean, std, total_batch // ranks,
                                     workers, (rank, ranks, args.seed) if ranks > 1 else None)
    if rank != 0:  # trains and evaluates as rank 0, without logs, plots or checkpoints
        engine.fit(train_data, test_data, resume.start_epoch, resume.best)
        return 0
    with open_run_logs(logs + '.log', logs + '.csv', config, sources, notes + resume.notes,
                       'cifar', CSV_FIELDS, resume.start_epoch) as (log, csv):
        log.info('%d training images%s, %d test images, %d iterations per epoch of %d images'
                 % (len(xtr), ' (%d per rank)' % (len(xtr) // ranks) if ranks > 1 else '',
                    len(xte), iters, total_batch))
        engine.log, engine.csv = log, csv
        best = engine.fit(train_data, test_data, resume.start_epoch, resume.best)
        log.info('best val=%.4f' % best)
    return 0


CSV_FIELDS = ['epoch', 'train', 'train_metric_name', 'val', 'loss', 'lr', 'time']


def _loaders(args, xtr, ytr, xte, yte, mean, std, batch, workers, shard=None):
    """(train, test) loaders of ``batch`` images (this process's devices); ``shard``: ``(rank,
    ranks, seed)`` of a Horovod run (the training images of this rank's part)."""
    from utils import data as D
    aug = None
    if args.auto_aug:
        from utils.augment import AutoAugment
        aug = AutoAugment('cifar10', seed=args.seed)
    train_set = D.ArrayImageDataset(xtr, ytr)
    test_set = D.ArrayImageDataset(xte, yte)
    train = D.make_loader(train_set, batch, True, workers,
                          D.train_transform(mean, std, auto_augment=aug, flip=args.dataset != 'digits'),
                          shard=shard)
    test = D.make_loader(test_set, batch, False, workers, D.test_transform(mean, std))
    return train, test


if __name__ == '__main__':
    logging.captureWarnings(True)
    run_main(main)
