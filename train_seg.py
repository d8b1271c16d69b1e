#!/usr/bin/env python3
"""Train long-skip AFF networks (ResNet-20-b + FPN) for binary StopSign segmentation.

The paper's StopSign runs (Tables 3/4 FPN column, Fig. 7 GAU-FPN) with its Table 2 recipe by
default: AdaGrad, lr 0.01, poly schedule, 300 epochs, batch 32, Kaiming init, cross entropy,
pixAcc and mIoU (GluonCV's ``SegmentationMetric``).  Flags follow GluonCV's segmentation
script where they fit (``--dataset --base-size --crop-size --batch-size --epochs --lr --eval
--resume -j``).  The StopSign data is this project's construction from COCO 2017
(utils/data/stopsign.py); the authors never published theirs.

Quick start (offline, synthetic StopSign, a few minutes on two CPU cores):

    python train_seg.py --dataset synthetic-stopsign

With COCO 2017 on disk (builds the StopSign cache in --data-dir once, then trains AFF-FPN):

    python train_seg.py --dataset stopsign --coco-root /data/coco --data-dir /data/stopsign \\
        --model stopsign_aff_fpn_resnet20_b1
"""
import argparse
import logging
import os
import sys

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import (Parser, nonneg_float, nonneg_int, positive_float, positive_int, run_main,
                       seed_int)

import mxnet as mx  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from net.fpn import ResNetFPN, check_crop  # noqa: E402
from net.model_store import load_params  # noqa: E402
from utils.checkpoint import CheckpointSet  # noqa: E402
from utils import seg as S  # noqa: E402
from utils import train as T  # noqa: E402
from utils.engine import (Engine, Segmentation, open_run_logs, probe_writable,  # noqa: E402
                          start_from, weights_of)
from utils.recipes import SEG_RECIPES, resolve  # noqa: E402

DATASETS = ('stopsign', 'synthetic-stopsign')
CSV_FIELDS = ['epoch', 'train', 'pixAcc', 'mIoU', 'loss', 'lr', 'time']


def build_parser():
    p = Parser(prog='train_seg.py', description=__doc__.split('\n')[0],
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a('--model', default='stopsign_aff_fpn_resnet20_b1',
      help='a stopsign_<fusion>_fpn_resnet20_b<b> registry name (python -m utils.models --all)')
    a('--dataset', default='stopsign', help='stopsign (COCO-built cache) or synthetic-stopsign')
    a('--data-dir', default=None, help='the StopSign cache folder [default: '
      '$MXNET_HOME/datasets/stopsign or ~/.mxnet/datasets/stopsign]')
    a('--coco-root', default=None, help='a COCO 2017 copy (annotations/instances_{train,val}2017'
      '.json, train2017/, val2017/): builds the cache in --data-dir when it is missing')
    a('--rebuild-data', action='store_true', help='rebuild the StopSign cache from --coco-root')
    a('--base-size', type=positive_int, default=512, help='training images are rescaled around this size')
    a('--crop-size', type=positive_int, default=480, help='training crop / validation centre crop')
    a('--batch-size', type=positive_int, default=32, help='images per device and update')
    a('--test-batch-size', type=positive_int, default=None, help='[default: --batch-size]')
    a('--epochs', type=positive_int, default=300, help='epochs to train')
    a('--lr', type=positive_float, default=0.01, help='base learning rate')
    a('--optimizer', default='adagrad', choices=['adagrad', 'sgd', 'nag'],
      help='AdaGrad (Table 2) or momentum SGD / Nesterov')
    a('--momentum', type=nonneg_float, default=0.9, help='sgd / nag only')
    a('--wd', '--weight-decay', dest='wd', type=nonneg_float, default=1e-4, help='weight decay')
    a('--lr-mode', default='poly', choices=['poly', 'cosine', 'step', 'constant'],
      help='learning-rate schedule per update (GluonCV)')
    a('--power', type=positive_float, default=0.9, help='poly power')
    a('--init', default='kaiming', choices=['kaiming', 'xavier'],
      help='weight initialisation (Table 2: kaiming)')
    a('--eval', action='store_true', help='evaluate --resume on the validation set and exit')
    a('--resume', default=None, help='a checkpoint of ours (continues its schedule) or any '
      '.params file (weights only)')
    a('--save-dir', default='params', help='checkpoints: -best and -last sets')
    a('--logging-dir', default='logs', help='log, CSV, history plot and predictions PNG')
    a('--seed', type=seed_int, default=0, help='seed of MXNet, NumPy and Python generators')
    a('-j', '--num-workers', '--workers', dest='num_workers', type=nonneg_int, default=4,
      help='data-loading processes (capped to the usable cores)')
    a('--gpus', default='0', help='GPU ids ("" = CPU); the default becomes the CPU when MXNet '
      'sees no GPU')
    a('--mode', default='hybrid', choices=['hybrid', 'imperative'],
      help='hybrid (static graph) or imperative')
    a('--vis-samples', type=nonneg_int, default=4, help='validation samples in the predictions PNG')
    a('--synthetic-train', type=positive_int, default=480, help='synthetic-stopsign training images')
    a('--synthetic-val', type=positive_int, default=96, help='synthetic-stopsign validation images')
    a('--synthetic-seed', type=seed_int, default=0, help='seed of the synthetic images (kept apart '
      'from --seed so every run sees the same data)')
    a('--recipe', default=None, choices=sorted(SEG_RECIPES),
      help='defaults of a recipe (utils/recipes.py); explicit flags override it '
      '[default: quickstart for synthetic-stopsign, else paper]')
    return p


def default_recipe(args):
    return 'quickstart' if args.dataset == 'synthetic-stopsign' else 'paper'


def validate(args):
    if args.dataset not in DATASETS:
        raise AFFError('unknown --dataset %r; use %s' % (args.dataset, ' or '.join(DATASETS)))
    for name in ('batch_size', 'epochs', 'base_size', 'crop_size'):
        if getattr(args, name) < 1:
            raise AFFError('--%s must be >= 1, got %d' % (name.replace('_', '-'),
                                                          getattr(args, name)))
    if args.test_batch_size is not None and args.test_batch_size < 1:
        raise AFFError('--test-batch-size must be >= 1')
    if args.rebuild_data and not args.coco_root:
        raise AFFError('--rebuild-data needs --coco-root /path/to/coco (COCO 2017)')
    if args.eval and not args.resume:
        raise AFFError('--eval needs --resume CHECKPOINT (the weights to evaluate)')
    if args.dataset == 'synthetic-stopsign' and min(args.synthetic_train, args.synthetic_val) < 1:
        raise AFFError('--synthetic-train and --synthetic-val must be >= 1')
    info = net.get_model_info(args.model)  # unknown names list the valid ones
    if info.builder is not ResNetFPN:
        raise AFFError('--model %s is not a segmentation network; use a '
                       'stopsign_<fusion>_fpn_resnet20_b<b> name' % args.model)
    check_crop(args.crop_size, 4 * info.kwargs.get('stem_stride', 2), args.base_size)


def data_dir(args):
    if args.data_dir:
        return os.path.expanduser(args.data_dir)
    return os.path.join(mx.base.data_dir(), 'datasets', 'stopsign')


def load_datasets(args, log_lines):
    """``(train, val)`` segmentation datasets (items: uint8 HWC image, int32 mask); with
    ``--eval`` the training set is not built (``None``)."""
    from utils.data import stopsign as D
    if args.dataset == 'synthetic-stopsign':
        size, seed = args.base_size, args.synthetic_seed
        xva, yva, _ = D.synthetic_stopsign(args.synthetic_val, size, seed=seed,
                                           start=args.synthetic_train)
        val = D.ArraySegmentation(xva, yva, 'val', args.base_size, args.crop_size)
        if args.eval:
            return None, val
        xtr, ytr, _ = D.synthetic_stopsign(args.synthetic_train, size, seed=seed)
        log_lines.append('synthetic StopSign: %d training + %d validation images of %dx%d '
                         '(seed %d), %.1f%% stop-sign pixels'
                         % (len(xtr), len(xva), size, size, seed, 100.0 * ytr.mean()))
        return D.ArraySegmentation(xtr, ytr, 'train', args.base_size, args.crop_size), val
    root = data_dir(args)
    manifest = D.build_stopsign(args.coco_root, root, rebuild=args.rebuild_data,
                                log=log_lines.append)
    log_lines.append('StopSign cache %s: %s' % (root, ', '.join(
        '%s %d images' % (s, v['images']) for s, v in sorted(manifest['splits'].items()))))
    val = D.StopSignSegmentation(root, 'val', 'val', args.base_size, args.crop_size)
    if args.eval:
        return None, val
    return D.StopSignSegmentation(root, 'train', 'train', args.base_size, args.crop_size), val


def schedule(args, iters):
    mode_kw = dict(power=args.power) if args.lr_mode == 'poly' else {}
    if args.lr_mode == 'step':  # GluonCV's segmentation "step": x0.1 at 1/2 and 3/4 of training
        mode_kw = dict(decay_epochs=[args.epochs // 2, 3 * args.epochs // 4])
    return T.lr_schedule(args.lr_mode, args.lr, args.epochs, iters, **mode_kw)


def _loaders(args, ctx, workers, notes):
    """(train loader or None with --eval, validation loader, datasets, normalisation)."""
    from mxnet.gluon.data.vision import transforms
    from utils.data import make_loader
    from utils.data.stopsign import STOPSIGN_MEAN, STOPSIGN_STD
    train_set, val_set = load_datasets(args, notes)
    norm = transforms.Compose([transforms.ToTensor(),
                               transforms.Normalize(STOPSIGN_MEAN, STOPSIGN_STD)])
    batch = args.batch_size * len(ctx)
    train = None if args.eval else make_loader(train_set, batch, True, workers, norm)
    val = make_loader(val_set, (args.test_batch_size or args.batch_size) * len(ctx), False,
                      workers, norm)
    return train, val, train_set, val_set, norm


def _evaluate_only(args, model, ctx, val_data, val_set, norm, png):
    from utils.data.stopsign import STOPSIGN_MEAN, STOPSIGN_STD
    if args.mode == 'hybrid':
        print(T.hybridize_for_inference(model, mx.nd.zeros(
            (args.test_batch_size or args.batch_size, 3, args.crop_size, args.crop_size),
            ctx=ctx[0])))
    pix_acc, miou = S.evaluate(model, val_data, ctx)
    print('%s on %d %s validation images: pixAcc=%f mIoU=%f'
          % (args.resume, len(val_set), args.dataset, pix_acc, miou))
    S.save_overlays(model, val_set.transform_first(norm), S.pick_samples(val_set, args.vis_samples),
                    ctx, png, STOPSIGN_MEAN, STOPSIGN_STD, title='%s  mIoU=%.4f' % (args.model, miou))
    return 0


# --------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, sources = resolve(build_parser(), argv, SEG_RECIPES, default_recipe)
    validate(args)
    T.seed_everything(args.seed)
    ctx, notes = T.script_contexts(args.gpus, sources['gpus'])
    workers, note = T.capped_workers(args.num_workers)
    notes += [note] if note else []
    probe_writable(('--logging-dir', args.logging_dir),
                   *(() if args.eval else (('--save-dir', args.save_dir),)))
    train_data, val_data, train_set, val_set, norm = _loaders(args, ctx, workers, notes)
    model, name = net.get_model(args.model, classes=2), '%s-%s' % (args.dataset, args.model)
    model.initialize(T.initializer(args.init), ctx=ctx)
    png = os.path.join(args.logging_dir, '%s_predictions.png' % name)
    if args.eval:
        load_params(model, weights_of(args.resume, '--resume'), ctx=ctx)
        return _evaluate_only(args, model, ctx, val_data, val_set, norm, png)
    if args.mode == 'hybrid':
        notes.append(T.hybridize_for_training(model, ctx))
    batch = args.batch_size * len(ctx)
    iters = len(train_set) // batch
    trainer = T.make_trainer(model, schedule(args, iters), args.lr, args.wd, args.momentum,
                             optimizer=args.optimizer)
    config = dict(vars(args))
    ckpt = CheckpointSet(args.save_dir, name)   # -last every epoch, -best on a new best mIoU
    Engine.clean(ckpt, notes)
    stem = os.path.join(args.logging_dir, 'train_%s' % name)
    engine = Engine(Segmentation(), model, trainer, ctx, iters, batch, args.epochs, ckpt, config,
                    best='set', plot=(stem + '.csv', os.path.join(args.logging_dir,
                                                                  '%s_history.png' % name), name))
    resume = start_from(engine, args.resume, '--resume', model, ctx)
    with open_run_logs(stem + '.log', stem + '.csv', config, sources, notes + resume.notes, 'seg',
                       CSV_FIELDS, resume.start_epoch) as (log, csv):
        log.info('%d training images, %d validation images, %d iterations per epoch of %d'
                 % (len(train_set), len(val_set), iters, batch))
        engine.log, engine.csv = log, csv
        best = engine.fit(train_data, val_data, resume.start_epoch, resume.best)
        log.info('best mIoU=%.4f' % best)
        from utils.data.stopsign import STOPSIGN_MEAN, STOPSIGN_STD
        vis = S.pick_samples(val_set, args.vis_samples)
        S.save_overlays(model, val_set.transform_first(norm), vis, ctx, png, STOPSIGN_MEAN,
                        STOPSIGN_STD, title='%s  last epoch' % args.model)
        log.info('predictions on %d validation images: %s' % (len(vis), png))
    return 0


if __name__ == '__main__':
    logging.captureWarnings(True)
    run_main(main)
