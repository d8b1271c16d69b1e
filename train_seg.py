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
import time

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import run_main

import mxnet as mx  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from net.fpn import ResNetFPN, check_crop  # noqa: E402
from net.model_store import load_params  # noqa: E402
from utils.checkpoint import Checkpoints  # noqa: E402
from utils import seg as S  # noqa: E402
from utils import train as T  # noqa: E402
from utils.logs import EpochCSV, EpochLogger, plot_history  # noqa: E402
from utils.recipes import SEG_RECIPES, resolve  # noqa: E402

DATASETS = ('stopsign', 'synthetic-stopsign')
CSV_FIELDS = ['epoch', 'train', 'pixAcc', 'mIoU', 'loss', 'lr', 'time']


def build_parser():
    p = argparse.ArgumentParser(
        prog='train_seg.py', description=__doc__.split('\n')[0],
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
    a('--base-size', type=int, default=512, help='training images are rescaled around this size')
    a('--crop-size', type=int, default=480, help='training crop / validation centre crop')
    a('--batch-size', type=int, default=32)
    a('--test-batch-size', type=int, default=None, help='[default: --batch-size]')
    a('--epochs', type=int, default=300)
    a('--lr', type=float, default=0.01)
    a('--optimizer', default='adagrad', choices=['adagrad', 'sgd', 'nag'])
    a('--momentum', type=float, default=0.9, help='sgd / nag only')
    a('--wd', '--weight-decay', dest='wd', type=float, default=1e-4)
    a('--lr-mode', default='poly', choices=['poly', 'cosine', 'step', 'constant'])
    a('--power', type=float, default=0.9, help='poly power')
    a('--init', default='kaiming', choices=['kaiming', 'xavier'])
    a('--eval', action='store_true', help='evaluate --resume on the validation set and exit')
    a('--resume', default=None, help='a checkpoint of ours (continues its schedule) or any '
      '.params file (weights only)')
    a('--save-dir', default='params')
    a('--logging-dir', default='logs')
    a('--seed', type=int, default=0)
    a('-j', '--num-workers', '--workers', dest='num_workers', type=int, default=4,
      help='data-loading processes (capped to the usable cores)')
    a('--gpus', default='0', help='GPU ids ("" = CPU); the default becomes the CPU when MXNet '
      'sees no GPU')
    a('--mode', default='hybrid', choices=['hybrid', 'imperative'])
    a('--vis-samples', type=int, default=4, help='validation samples in the predictions PNG')
    a('--synthetic-train', type=int, default=480, help='synthetic-stopsign training images')
    a('--synthetic-val', type=int, default=96, help='synthetic-stopsign validation images')
    a('--synthetic-seed', type=int, default=0, help='seed of the synthetic images (kept apart '
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
    """``(train, val)`` segmentation datasets (items: uint8 HWC image, int32 mask)."""
    from utils.data import stopsign as D
    if args.dataset == 'synthetic-stopsign':
        size = args.base_size
        xtr, ytr, _ = D.synthetic_stopsign(args.synthetic_train, size, seed=args.synthetic_seed)
        xva, yva, _ = D.synthetic_stopsign(args.synthetic_val, size, seed=args.synthetic_seed,
                                           start=args.synthetic_train)
        log_lines.append('synthetic StopSign: %d training + %d validation images of %dx%d '
                         '(seed %d), %.1f%% stop-sign pixels'
                         % (len(xtr), len(xva), size, size, args.synthetic_seed,
                            100.0 * ytr.mean()))
        return (D.ArraySegmentation(xtr, ytr, 'train', args.base_size, args.crop_size),
                D.ArraySegmentation(xva, yva, 'val', args.base_size, args.crop_size))
    root = data_dir(args)
    manifest = D.build_stopsign(args.coco_root, root, rebuild=args.rebuild_data,
                                log=log_lines.append)
    log_lines.append('StopSign cache %s: %s' % (root, ', '.join(
        '%s %d images' % (s, v['images']) for s, v in sorted(manifest['splits'].items()))))
    return (D.StopSignSegmentation(root, 'train', 'train', args.base_size, args.crop_size),
            D.StopSignSegmentation(root, 'val', 'val', args.base_size, args.crop_size))


def make_trainer(model, args, sched):
    opts = dict(wd=args.wd, lr_scheduler=sched)
    if args.optimizer in ('sgd', 'nag'):
        opts['momentum'] = args.momentum
    return mx.gluon.Trainer(model.collect_params(), args.optimizer, opts)


# --------------------------------------------------------------------------- main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, sources = resolve(parser, argv, SEG_RECIPES, default_recipe)
    validate(args)
    T.seed_everything(args.seed)
    notes = []

    ctx, more = T.script_contexts(args.gpus, sources['gpus'])
    notes += more
    workers, note = T.capped_workers(args.num_workers)
    notes += [note] if note else []

    train_set, val_set = load_datasets(args, notes)
    from utils.data import make_loader
    from utils.data.stopsign import STOPSIGN_MEAN, STOPSIGN_STD
    from mxnet.gluon.data.vision import transforms
    norm = transforms.Compose([transforms.ToTensor(),
                               transforms.Normalize(STOPSIGN_MEAN, STOPSIGN_STD)])
    batch = args.batch_size * len(ctx)
    test_batch = (args.test_batch_size or args.batch_size) * len(ctx)
    if not args.eval:
        train_data = make_loader(train_set, batch, True, workers, norm)
    val_data = make_loader(val_set, test_batch, False, workers, norm)

    model = net.get_model(args.model, classes=2)
    name = '%s-%s' % (args.dataset, args.model)
    model.initialize(T.initializer(args.init), ctx=ctx)
    if args.mode == 'hybrid':
        notes.append(T.hybridize_for_training(model, ctx))

    start_epoch, best_miou = 0, 0.0
    meta = states = None
    if args.resume:
        params, meta, states = S.read_checkpoint(args.resume)
        load_params(model, params, ctx=ctx)
        if meta is not None and meta.get('model_name') not in (None, name):
            raise AFFError('%s is a checkpoint of %s, not of %s; resume it with the same --model '
                           'and --dataset' % (args.resume, meta.get('model_name'), name))

    os.makedirs(args.logging_dir, exist_ok=True)
    val_png = os.path.join(args.logging_dir, '%s_predictions.png' % name)
    vis = S.pick_samples(val_set, args.vis_samples)
    if args.eval:
        if args.mode == 'hybrid':
            print(T.hybridize_for_inference(model, mx.nd.zeros(
                (args.test_batch_size or args.batch_size, 3, args.crop_size, args.crop_size), ctx=ctx[0])))
        pix_acc, miou = S.evaluate(model, val_data, ctx)
        print('%s on %d %s validation images: pixAcc=%f mIoU=%f'
              % (args.resume, len(val_set), args.dataset, pix_acc, miou))
        S.save_overlays(model, val_set.transform_first(norm), vis, ctx, val_png, STOPSIGN_MEAN,
                        STOPSIGN_STD, title='%s  mIoU=%.4f' % (args.model, miou))
        return 0

    iters = len(train_set) // batch
    mode_kw = dict(power=args.power) if args.lr_mode == 'poly' else {}
    if args.lr_mode == 'step':  # GluonCV's segmentation "step": x0.1 at 1/2 and 3/4 of training
        mode_kw = dict(decay_epochs=[args.epochs // 2, 3 * args.epochs // 4])
    sched = T.lr_schedule(args.lr_mode, args.lr, args.epochs, iters, **mode_kw)
    trainer = make_trainer(model, args, sched)
    if meta is not None and states is not None:
        T.load_trainer_states(trainer, states)
        start_epoch, best_miou = meta['epoch'] + 1, meta['best_mIoU']
        notes.append('resumed %s: epoch %d onwards, update %d, best mIoU %.4f'
                     % (args.resume, start_epoch, trainer._optimizer.num_update, best_miou))
    elif args.resume:
        notes.append('loaded weights from %s; the schedule starts at epoch 0' % args.resume)

    config = dict(vars(args))
    log = EpochLogger(os.path.join(args.logging_dir, 'train_%s.log' % name), config,
                      stream=sys.stdout, kind='seg')
    csv = EpochCSV(os.path.join(args.logging_dir, 'train_%s.csv' % name), CSV_FIELDS)
    try:
        log.setup(sources, notes)
        log.info('%d training images, %d validation images, %d iterations per epoch of %d'
                 % (len(train_set), len(val_set), iters, batch))
        ckpt = Checkpoints(args.save_dir, name)   # -last every epoch, -best on a new best mIoU
        best_miou = _train(args, model, trainer, ckpt, log, csv, train_data, val_data, ctx, iters,
                           batch, start_epoch, best_miou, name, config)
        log.info('best mIoU=%.4f' % best_miou)
        S.save_overlays(model, val_set.transform_first(norm), vis, ctx, val_png, STOPSIGN_MEAN,
                        STOPSIGN_STD, title='%s  last epoch' % args.model)
        log.info('predictions on %d validation images: %s' % (len(vis), val_png))
    finally:
        log.close()
        csv.close()
    return 0


def _train(args, model, trainer, ckpt, log, csv, train_data, val_data, ctx, iters, batch,
           start_epoch, best_miou, name, config):
    """The epoch loop; returns the best validation mIoU."""
    from gluoncv.utils.metrics import SegmentationMetric
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    show_bar = sys.stderr.isatty()
    for epoch in range(start_epoch, args.epochs):
        tic = time.time()
        metric = SegmentationMetric(2)
        loss_sum, seen = 0.0, 0
        for x, y in T.progress(train_data, iters, 'epoch %d' % epoch, show_bar):
            xs, ys = T.split(x, ctx), T.split(y, ctx)
            for v in xs:
                # keeps the backward pass of the parameter-free input BN, which updates its
                # moving statistics (see train_cifar.py)
                v.attach_grad()
            outs, losses = T.train_step(model, loss_fn, trainer, xs,
                                        [t.astype('float32') for t in ys], batch)
            loss_sum += sum(l.sum().asscalar() for l in losses)
            seen += batch
            metric.update(ys, outs)
        pix_acc, miou = S.evaluate(model, val_data, ctx)
        lr_now, elapsed = trainer.learning_rate, time.time() - tic
        row = dict(epoch=epoch, train=metric.get()[0], pixAcc=pix_acc, mIoU=miou,
                   loss=loss_sum / max(seen, 1), lr=lr_now, time=elapsed)
        log.epoch(**row)
        csv.append(row)
        if miou > best_miou:
            best_miou = miou
            ckpt.save('best', model, None, dict(epoch=epoch, mIoU=miou, pixAcc=pix_acc,
                                                model_name=name))
        ckpt.save('last', model, trainer, dict(epoch=epoch, best_mIoU=best_miou, model_name=name,
                                               num_update=trainer._optimizer.num_update,
                                               config=config))
        plot_history(os.path.join(args.logging_dir, 'train_%s.csv' % name),
                     os.path.join(args.logging_dir, '%s_history.png' % name), title=name)
    return best_miou


if __name__ == '__main__':
    logging.captureWarnings(True)
    run_main(main)
