#!/usr/bin/env python3
"""Train or evaluate AFF networks on ImageNet (the official open-aff train_imagenet.py dialect).

Every option of the official HEAD script keeps its name, default and meaning (``--model resnet
--askc-type ASKCFuse --num-layer 50 --start-layer 3 --use-rec --mixup --label-smoothing --no-wd
--last-gamma --dtype float16 ...``); ``--scenario ResNet|ResNeXt`` of the 806562e script is
accepted too.  Additions: ``--recipe paper|released``, ``--era``, ``--eval``, ``--pretrained``,
``--kv-store`` (including the parameter server: ``dist_sync``, ``dist_device_sync``,
``dist_async``; start the processes with ``python -m utils.launch``), ``--seed``,
``--num-cpu-contexts``; ``--model`` also takes any registry name.

    python train_imagenet.py --eval --model aff_resnet50 --pretrained --use-rec --rec-val ...
"""
import argparse
import os
import sys
import time

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import run_main

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from net.imagenet import check_depth  # noqa: E402
from net.model_store import load_params  # noqa: E402
from utils import train as T  # noqa: E402
from utils.checkpoint import save_params_atomic, save_states_atomic  # noqa: E402
from utils.logs import EpochCSV, EpochLogger  # noqa: E402
from utils.recipes import IMAGENET_RECIPES, resolve  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog='train_imagenet.py', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    home = os.path.join('~', '.mxnet', 'datasets', 'imagenet')
    # ---- the official HEAD options (spec §4.3)
    a('--data-dir', default=home, help='image folders train/ and val/ (without --use-rec)')
    a('--rec-train', default=os.path.join(home, 'rec', 'train.rec'))
    a('--rec-train-idx', default=os.path.join(home, 'rec', 'train.idx'))
    a('--rec-val', default=os.path.join(home, 'rec', 'val.rec'))
    a('--rec-val-idx', default=os.path.join(home, 'rec', 'val.idx'))
    a('--use-rec', action='store_true')
    a('--summary', action='store_true', help='print the parameter count and exit')
    a('--batch-size', type=int, default=128, help='per device')
    a('--r', type=int, default=16, help='unused, as in the official script (r = 16 is built in)')
    a('--dtype', default='float16', help='float32, or float16 (GPU only)')
    a('--model', default='xxx', help='resnet, resnext, or a registry name')
    a('--scenario', default=None, help='806562e selector: ResNet or ResNeXt (= --model with '
      '--era paper)')
    a('--askc-type', default='xxx')
    a('--num-gpus', type=int, default=4, help='GPUs (0 = CPU); the default becomes the CPU, '
      'with a log line, when MXNet sees no GPU')
    a('-j', '--num-data-workers', dest='num_workers', type=int, default=96)
    a('--num-epochs', type=int, default=240)
    a('--lr', type=float, default=0.075)
    a('--momentum', type=float, default=0.9)
    a('--wd', type=float, default=1e-4)
    a('--lr-mode', default='cosine')
    a('--lr-decay', type=float, default=0.1)
    a('--lr-decay-period', type=int, default=0)
    a('--lr-decay-epoch', default='40,60')
    a('--warmup-lr', type=float, default=0.0, help='unused, as in the official script')
    a('--warmup-epochs', type=int, default=5)
    a('--last-gamma', action='store_true')
    a('--mode', default='hybrid')
    a('--input-size', type=int, default=224)
    a('--crop-ratio', type=float, default=0.875)
    a('--use-pretrained', action='store_true', help='unused, as in the official script')
    a('--use-se', action='store_true')
    a('--mixup', action='store_true')
    a('--mixup-alpha', type=float, default=0.2)
    a('--mixup-off-epoch', type=int, default=5)
    a('--label-smoothing', action='store_true')
    a('--no-wd', action='store_true')
    a('--teacher', default=None, help='not supported (distillation; unused in the official runs)')
    a('--temperature', type=float, default=20)
    a('--hard-weight', type=float, default=0.5)
    a('--batch-norm', action='store_true', help='unused, as in the official script')
    a('--use-gn', action='store_true', help='unused, as in the official script')
    a('--save-frequency', type=int, default=10)
    a('--save-dir', default='params')
    a('--resume-epoch', type=int, default=0)
    a('--resume-params', default='')
    a('--resume-states', default='')
    a('--log-interval', type=int, default=50)
    a('--logging-file', default='train_imagenet.log')
    a('--auto_aug', action='store_true', help='ImageNet AutoAugment policy (in RecordIO mode '
      'too; the official script ignored it there)')
    a('--start-layer', type=int, default=3)
    a('--num-layer', type=int, default=50)
    # ---- additions
    a('--recipe', default=None, choices=sorted(IMAGENET_RECIPES))
    a('--era', default='head', choices=['head', 'paper'])
    a('--classes', type=int, default=1000)
    a('--eval', action='store_true', help='only report top-1/top-5 error on the validation data')
    a('--pretrained', action='store_true', help='with --eval: the released checkpoint of the '
      'registry --model')
    a('--kv-store', default='device', help='local, device, nccl, dist_sync, dist_device_sync, '
      'dist_async')
    a('--seed', type=int, default=0)
    a('--num-cpu-contexts', type=int, default=1)
    a('--optimizer', default='nag', choices=['nag', 'sgd'],
      help='nag (Nesterov, the official scripts) or sgd (plain momentum SGD: the '
      'AFINet and ACmix recipes)')
    return p


# --------------------------------------------------------------------------- network
def build_net(args):
    if args.scenario:
        if args.scenario not in ('ResNet', 'ResNeXt'):
            raise AFFError("--scenario must be ResNet or ResNeXt, got %r" % args.scenario)
        args.model, args.era = args.scenario.lower(), 'paper'
    if args.model in ('resnet', 'resnext'):
        net.fusion.canonical_fusion(args.askc_type)
        layers = check_depth(args.num_layer, official=True)
        if args.model == 'resnet':
            from net.imagenet import ResNetV1bHost
            return ResNetV1bHost(args.askc_type, layers, args.classes,
                                 start_layer=3 if args.era == 'paper' else args.start_layer,
                                 era=args.era, last_gamma=args.last_gamma)
        from net.imagenet import ResNeXtHost
        # the official scripts never pass last_gamma to ResNeXt (inverted meaning, zero gamma)
        return ResNeXtHost(args.askc_type, layers, 32, 4, args.classes,
                           start_layer=3 if args.era == 'paper' else args.start_layer,
                           era=args.era, use_se=args.use_se)
    if args.model == 'xxx':
        raise AFFError('choose a network: --model resnet|resnext (with --askc-type) or a '
                       'registry name (python -m utils.models --all)')
    return net.get_model(args.model, classes=args.classes)


def model_name(args):
    """The official stem ``ImageNet-<askc>-resnet--50-s-3`` (double dash as in the real files)."""
    if args.model in ('resnet', 'resnext'):
        return 'ImageNet-%s-%s-' % (args.askc_type, args.model) + '-%d-s-%d' % (
            args.num_layer, args.start_layer)
    return 'ImageNet-%s' % args.model


# --------------------------------------------------------------------------- data
def data(args, ctx_count, rank, workers_dist, workers):
    """(train batches, val batches, n_train, n_val); batches yield (data, label, pad)."""
    from utils.data import imagenet as I
    batch = args.batch_size * ctx_count
    common = dict(input_size=args.input_size, crop_ratio=args.crop_ratio,
                  auto_augment=args.auto_aug, rank=rank, num_workers_dist=workers_dist,
                  seed=args.seed)
    if args.use_rec:
        return I.rec_iters(os.path.expanduser(args.rec_train), os.path.expanduser(args.rec_train_idx),
                           os.path.expanduser(args.rec_val), os.path.expanduser(args.rec_val_idx),
                           batch, num_workers=workers, **common)
    return I.folder_loaders(os.path.expanduser(args.data_dir), batch, num_workers=workers,
                            **common)


def batches(source):
    """(data, label, pad) from an ImageRecordIter or a DataLoader."""
    if isinstance(source, mx.io.DataIter):
        source.reset()
        for b in source:
            yield b.data[0], b.label[0], b.pad or 0
    else:
        for d, l in source:
            yield d, l, 0


def evaluate(model, val, ctx, dtype):
    top1, top5 = mx.metric.Accuracy(), None
    k = 5
    seen = 0
    for d, l, pad in batches(val):
        keep = d.shape[0] - pad
        if keep <= 0:
            continue
        d, l = d[:keep], l[:keep]
        xs, ys = T.split(d.astype(dtype, copy=False), ctx), T.split(l, ctx)
        outs = [model(x).astype('float32', copy=False) for x in xs]
        if top5 is None:  # top-5 of fewer than 5 classes: top-k over all classes
            top5 = mx.metric.TopKAccuracy(min(k, outs[0].shape[1]))
        top1.update(ys, outs)
        top5.update(ys, outs)
        seen += keep
    if top5 is None:
        raise AFFError('the validation data is empty')
    return 1 - top1.get()[1], 1 - top5.get()[1], seen


# --------------------------------------------------------------------------- main
CSV_FIELDS = ['epoch', 'train_metric_name', 'train', 'top1_err', 'top5_err', 'lr', 'speed',
              'time']


def csv_path(logging_file):
    """The per-epoch CSV beside the log: ``train_imagenet.log`` -> ``train_imagenet.csv``."""
    return os.path.splitext(logging_file)[0] + '.csv'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, sources = resolve(build_parser(), argv, IMAGENET_RECIPES, lambda a: 'official')
    T.seed_everything(args.seed)
    notes = []
    if args.teacher:
        raise AFFError('--teacher (knowledge distillation) is not supported; the official runs '
                       'did not use it')

    ctx, more = T.script_contexts(','.join(str(i) for i in range(args.num_gpus)),
                                  sources['num_gpus'], args.num_cpu_contexts, '--num-gpus',
                                  args.num_gpus)
    notes += more
    num_gpus = sum(c.device_type == 'gpu' for c in ctx)
    dtype = args.dtype
    if dtype not in ('float32', 'float16'):
        raise AFFError('--dtype must be float32 or float16, got %r' % dtype)
    if dtype == 'float16':
        if num_gpus == 0:
            if sources['dtype'] == 'flag':
                raise AFFError('--dtype float16 needs a GPU: MXNet has no float16 convolution on '
                               'the CPU; use --dtype float32')
            dtype = 'float32'
            notes.append('float16 needs a GPU (MXNet has no fp16 convolution on the CPU): the %s '
                         '--dtype float16 is replaced by float32' % sources['dtype'])
        else:
            os.environ.setdefault('MXNET_SAFE_ACCUMULATION', '1')

    kv = mx.kv.create(args.kv_store)
    rank, workers_dist = kv.rank, kv.num_workers
    if workers_dist > 1:
        notes.append('parameter server %s: worker %d of %d' % (args.kv_store, rank, workers_dist))

    model = build_net(args)
    name = model_name(args)
    if args.summary:
        params = model._collect_params_with_prefix()
        print('%s: %d parameters' % (name, sum(int(np.prod(p.shape)) for p in params.values())))
        return 0

    workers, note = T.capped_workers(args.num_workers)
    notes += [note] if note else []
    train_data, val_data, n_train, n_val = data(args, len(ctx), rank, workers_dist, workers)

    if args.eval:
        if args.pretrained:
            model = net.get_model(args.model, pretrained=True, classes=args.classes, ctx=ctx[0])
        elif args.resume_params:
            load_params(model, args.resume_params, ctx=ctx)
        else:
            raise AFFError('--eval needs --resume-params FILE or --pretrained (with a registry '
                           '--model that has a released checkpoint)')
        model.collect_params().reset_ctx(ctx)
        if dtype != 'float32':
            model.cast(dtype)
        if args.mode == 'hybrid':
            example = mx.nd.zeros((args.batch_size, 3, args.input_size, args.input_size),
                                  ctx=ctx[0], dtype=dtype)
            print(T.hybridize_for_inference(model, example))
        err1, err5, seen = evaluate(model, val_data, ctx, dtype)
        print('[Eval] %s: err-top1=%f err-top5=%f (%d validation images, each counted once)'
              % (args.model, err1, err5, seen))
        return 0

    total_batch = args.batch_size * len(ctx) * workers_dist
    iters = n_train // total_batch
    decays = [int(e) for e in args.lr_decay_epoch.split(',') if e.strip()]
    sched = T.lr_schedule(args.lr_mode, args.lr, args.num_epochs, iters,
                          warmup_epochs=args.warmup_epochs, decay_epochs=decays,
                          decay_factor=args.lr_decay, decay_period=args.lr_decay_period)
    model.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    if args.resume_params:
        load_params(model, args.resume_params, ctx=ctx)
    if dtype != 'float32':
        model.cast(dtype)
    if args.mode == 'hybrid':
        notes.append(T.hybridize_for_training(model, ctx))
    trainer = T.make_trainer(model, sched, args.lr, args.wd, args.momentum, no_wd=args.no_wd,
                             kvstore=kv, multi_precision=dtype != 'float32',
                             optimizer=args.optimizer)
    if not T.states_savable(trainer):
        if args.resume_states:
            raise AFFError('--resume-states cannot be used with --kv-store %s: the optimizer '
                           'states live on the parameter servers; resume with --resume-epoch '
                           'and --resume-params only' % args.kv_store)
        notes.append('--kv-store %s updates on the parameter servers: no .states files are '
                     'written (a resumed run keeps its schedule but restarts the momentum)'
                     % args.kv_store)
    if args.resume_states:
        T.load_trainer_states(trainer, args.resume_states)
    elif args.resume_epoch:
        T.start_schedule_at(trainer, args.resume_epoch * iters)
        notes.append('resumed at epoch %d without --resume-states: the schedule continues at '
                     'update %d, the momentum starts from zero' % (args.resume_epoch,
                                                                 args.resume_epoch * iters))

    log = None
    if rank == 0:
        log = EpochLogger(args.logging_file, dict(vars(args)), prefix='', stream=sys.stdout,
                          kind='imagenet')
        log.setup(sources, notes)
        log.info('%d training images (%d per worker shard), %d validation images, %d iterations '
                 'per epoch of %d images' % (n_train, n_train // workers_dist, n_val, iters,
                                             total_batch))
    csv = None
    if rank == 0:
        csv = EpochCSV(csv_path(args.logging_file), CSV_FIELDS)
    try:
        _train(args, model, trainer, train_data, val_data, ctx, dtype, iters, total_batch,
               name, log, csv, rank)
    finally:
        for f in (log, csv):
            if f is not None:
                f.close()
    return 0


def _train(args, model, trainer, train_data, val_data, ctx, dtype, iters, total_batch, name,
           log, csv, rank):
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    eps = 0.1 if args.label_smoothing else 0.0
    best_err = 1.0
    os.makedirs(args.save_dir, exist_ok=True)
    for epoch in range(args.resume_epoch, args.num_epochs):
        tic = time.time()
        metric = mx.metric.RMSE() if args.mixup else mx.metric.Accuracy()
        mix_on = args.mixup and epoch < args.num_epochs - args.mixup_off_epoch
        btic = time.time()
        for i, (d, l, _) in enumerate(T.progress(batches(train_data), iters, 'epoch %d' % epoch,
                                                 sys.stderr.isatty() and rank == 0)):
            if i >= iters:
                break
            lam = np.random.beta(args.mixup_alpha, args.mixup_alpha) if mix_on else 1.0
            xs, ys = T.split(d, ctx), T.split(l, ctx)
            targets = [T.smooth_one_hot(y, args.classes, eps) for y in ys]
            if args.mixup:
                pairs = [T.mixup(x, t, lam) for x, t in zip(xs, targets)]
                xs, targets = [p[0] for p in pairs], [p[1] for p in pairs]
            xs = [x.astype(dtype, copy=False) for x in xs]
            targets = [t.astype(dtype, copy=False) for t in targets]
            outs, _ = T.train_step(model, loss_fn, trainer, xs, targets, total_batch)
            outs32 = [o.astype('float32', copy=False) for o in outs]
            if args.mixup:
                metric.update([t.astype('float32', copy=False) for t in targets],
                              [mx.nd.softmax(o) for o in outs32])
            else:
                metric.update(ys, outs32)
            if log is not None and args.log_interval and (i + 1) % args.log_interval == 0:
                m_name, m_value = metric.get()
                log.batch(epoch, i + 1, total_batch * args.log_interval / (time.time() - btic),
                          m_name, m_value, T.lr_after(trainer, epoch * iters + i + 1))
                btic = time.time()
        m_name, m_value = metric.get()
        err1, err5, _ = evaluate(model, val_data, ctx, dtype)
        cost = time.time() - tic
        if rank != 0:
            continue
        speed = int(iters * total_batch / max(cost, 1e-9))
        log.epoch(epoch, train_metric_name=m_name, train_metric=m_value, speed=speed, time=cost,
                  top1_err=err1, top5_err=err5)
        csv.append(dict(epoch=epoch, train_metric_name=m_name, train=m_value, top1_err=err1,
                        top5_err=err5, lr=T.lr_after(trainer, (epoch + 1) * iters), speed=speed,
                        time=cost))
        if err1 < best_err:
            best_err = err1
            stem = os.path.join(args.save_dir, '%.4f-imagenet-%s-%d-best' % (err1, name, epoch))
            _checkpoint(model, trainer, stem)
        if args.save_frequency and (epoch + 1) % args.save_frequency == 0 \
                or epoch == args.num_epochs - 1:
            _checkpoint(model, trainer, os.path.join(args.save_dir, 'imagenet-%s-%d' % (name, epoch)))


def _checkpoint(model, trainer, stem):
    save_params_atomic(model, stem + '.params')
    if T.states_savable(trainer):
        save_states_atomic(trainer, stem + '.states')


if __name__ == '__main__':
    run_main(main)
