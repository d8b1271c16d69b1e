#!/usr/bin/env python3
"""Train or evaluate AFF networks on ImageNet (the official open-aff train_imagenet.py dialect).

Every option of the official HEAD script keeps its name, default and meaning (``--model resnet
--askc-type ASKCFuse --num-layer 50 --start-layer 3 --use-rec --mixup --label-smoothing --no-wd
--last-gamma --dtype float16 ...``); ``--scenario ResNet|ResNeXt`` of the 806562e script is
accepted too.  Additions: ``--recipe`` (official, paper, paper_sota, released, afinet, acmix),
``--era``, ``--classes``, ``--eval``, ``--pretrained``, ``--kv-store`` (including the parameter
server: ``dist_sync``, ``dist_device_sync``, ``dist_async``, started with ``python -m
utils.launch``; and ``horovod``, started with ``horovodrun``), ``--seed``, ``--num-cpu-contexts``,
``--rec-verify``, ``--optimizer``; ``--model`` also takes any registry name.  docs/imagenet.md and
docs/distributed.md describe them.

    python train_imagenet.py --eval --model aff_resnet50 --pretrained --use-rec --rec-val ...
"""
import argparse
import os
import sys
import time

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import (Parser, check_askc_type, epoch_list, epochs_of, nonneg_float, nonneg_int,
                       positive_float, positive_int, run_main, seed_int)

import mxnet as mx  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from net.imagenet import check_depth  # noqa: E402
from net.model_store import load_params  # noqa: E402
from utils import train as T  # noqa: E402
from utils.checkpoint import CheckpointSet, stem_of  # noqa: E402
from utils.engine import (Classification, Engine, Resume, classification_errors,  # noqa: E402
                          count_params, open_run_logs, probe_writable, weights_of)
from utils.recipes import IMAGENET_RECIPES, resolve  # noqa: E402


def build_parser():
    p = Parser(prog='train_imagenet.py', description=__doc__.split('\n')[0],
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument_group('open-aff HEAD options (same names, defaults and meanings)').add_argument
    home = os.path.join('~', '.mxnet', 'datasets', 'imagenet')
    unused = 'unused, as in the official script'
    a('--data-dir', default=home, help='image folders train/<class>/ and val/<class>/ (without '
      '--use-rec)')
    a('--rec-train', default=os.path.join(home, 'rec', 'train.rec'), help='training RecordIO file')
    a('--rec-train-idx', default=os.path.join(home, 'rec', 'train.idx'), help='its index')
    a('--rec-val', default=os.path.join(home, 'rec', 'val.rec'), help='validation RecordIO file')
    a('--rec-val-idx', default=os.path.join(home, 'rec', 'val.idx'), help='its index')
    a('--use-rec', action='store_true', help='read the RecordIO files instead of --data-dir')
    a('--summary', action='store_true', help='print the parameter count and exit')
    a('--batch-size', type=positive_int, default=128, help='images per device and update')
    a('--r', type=int, default=16, help=unused + ' (r = 16 is built in)')
    a('--dtype', default='float16', help='float32, or float16 (GPU only)')
    a('--model', default='xxx', help='resnet, resnext (with --askc-type), or a registry name '
      '(python -m utils.models --all)')
    a('--scenario', default=None, help='806562e selector: ResNet or ResNeXt (= --model with '
      '--era paper)')
    a('--askc-type', default='xxx', help='fusion of --model resnet/resnext: ASKCFuse (AFF), '
      'ResGlobLocaforGlobLocaChaFuse (iAFF), DirectAdd (none), ... (python -m utils.models '
      '--fusions)')
    a('--num-gpus', type=nonneg_int, default=4, help='GPUs (0 = CPU); with no GPU visible to MXNet '
      'the CPU is used, with a log line')
    a('-j', '--num-data-workers', dest='num_workers', type=nonneg_int, default=96,
      help='decoding threads / data-loading processes (capped to the usable cores)')
    a('--num-epochs', type=positive_int, default=240, help='epochs to train')
    a('--lr', type=positive_float, default=0.075, help='base learning rate')
    a('--momentum', type=nonneg_float, default=0.9, help='momentum of NAG/SGD')
    a('--wd', type=nonneg_float, default=1e-4, help='weight decay')
    a('--lr-mode', default='cosine', help='step, cosine, poly, linear or constant (per update, '
      'GluonCV), after the warmup')
    a('--lr-decay', type=positive_float, default=0.1, help='factor of each step decay')
    a('--lr-decay-period', type=nonneg_int, default=0,
      help='step mode: decay every N epochs instead of at --lr-decay-epoch (0: off)')
    a('--lr-decay-epoch', type=epoch_list, default='40,60', help='step mode: decay epochs')
    a('--warmup-lr', type=float, default=0.0, help=unused)
    a('--warmup-epochs', type=nonneg_int, default=5, help='linear warmup from 0 (epochs)')
    a('--last-gamma', action='store_true', help='zero-initialise the last BN gamma of each '
      'ResNet block')
    a('--mode', default='hybrid', help='hybrid (static graph) or imperative')
    a('--input-size', type=positive_int, default=224, help='training crop and validation size')
    a('--crop-ratio', type=positive_float, default=0.875, help='validation centre-crop ratio')
    a('--use-pretrained', action='store_true', help=unused)
    a('--use-se', action='store_true', help='squeeze-excitation in the ResNeXt host')
    a('--mixup', action='store_true', help='mixup of each device shard with itself reversed')
    a('--mixup-alpha', type=positive_float, default=0.2, help='Beta(alpha, alpha) of the mixing '
      'weight')
    a('--mixup-off-epoch', type=nonneg_int, default=5, help='no mixup in the last N epochs')
    a('--label-smoothing', action='store_true', help='label smoothing, epsilon 0.1')
    a('--no-wd', action='store_true', help='no weight decay on BN gamma/beta and biases')
    a('--teacher', default=None, help='not supported (distillation; unused in the official runs)')
    a('--temperature', type=float, default=20, help=unused + ' (distillation)')
    a('--hard-weight', type=float, default=0.5, help=unused + ' (distillation)')
    a('--batch-norm', action='store_true', help=unused)
    a('--use-gn', action='store_true', help=unused)
    a('--save-frequency', type=nonneg_int, default=10, help='epochs between periodic checkpoints '
      'imagenet-<model>-<epoch> (0: only after the last epoch)')
    a('--save-dir', default='params', help='checkpoints')
    a('--resume-epoch', type=nonneg_int, default=0, help='first epoch of a resumed run')
    a('--resume-params', default='', help='weights to resume from (our -last set: its epoch and '
      'schedule; any .params: weights only)')
    a('--resume-states', default='', help='optimizer states to resume from')
    a('--log-interval', type=nonneg_int, default=50, help='batches between speed lines (0: none)')
    a('--logging-file', default='train_imagenet.log', help='the training log (the CSV goes beside '
      'it)')
    a('--auto_aug', action='store_true', help='ImageNet AutoAugment policy (in RecordIO mode '
      'too; the official script ignored it there)')
    a('--start-layer', type=nonneg_int, default=3, help='stages numbered below it use plain '
      'addition')
    a('--num-layer', type=positive_int, default=50, help='depth of --model resnet/resnext')
    a = p.add_argument_group('additions of this repository').add_argument
    a('--recipe', default=None, choices=sorted(IMAGENET_RECIPES),
      help='defaults of a recipe (utils/recipes.py); explicit flags override it')
    a('--era', default='head', choices=['head', 'paper'],
      help='host code of --model resnet/resnext: open-aff HEAD or the 806562e paper commit')
    a('--classes', type=positive_int, default=1000, help='classifier outputs')
    a('--eval', action='store_true', help='only report top-1/top-5 error on the validation data')
    a('--pretrained', action='store_true', help='with --eval: the released checkpoint of the '
      'registry --model')
    a('--kv-store', default='device', help='local, device, nccl, dist_sync, dist_device_sync, '
      'dist_async (start dist_* runs with python -m utils.launch), horovod (start with '
      'horovodrun; docs/distributed.md)')
    a('--seed', type=seed_int, default=0, help='seed of MXNet, NumPy, Python and the data order')
    a('--num-cpu-contexts', type=positive_int, default=1, help='CPU devices when training on the '
      'CPU')
    a('--rec-verify', default='full', choices=['quick', 'full', 'decode'],
      help='check of the RecordIO files before training: every record header (full: MXNet aborts '
      'the process on a broken one), only 64 of them (quick), or also decode every image (decode: '
      'slow; names a garbled image)')
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
        check_askc_type(args.askc_type, args.model)
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
def data(args, ctx_count, rank, workers_dist, workers, train=True):
    """(train batches or None, val batches, n_train, n_val)."""
    from utils.data import imagenet as I
    batch = args.batch_size * ctx_count
    common = dict(input_size=args.input_size, crop_ratio=args.crop_ratio,
                  auto_augment=args.auto_aug, rank=rank, num_workers_dist=workers_dist,
                  seed=args.seed)
    if args.use_rec:
        path = lambda p: os.path.expanduser(p)  # noqa: E731
        return I.rec_iters(path(args.rec_train), path(args.rec_train_idx), path(args.rec_val),
                           path(args.rec_val_idx), batch, num_workers=workers, train=train,
                           verify=args.rec_verify, **common)
    return I.folder_loaders(os.path.expanduser(args.data_dir), batch, num_workers=workers,
                            **common)


def validate(args):
    if args.teacher:
        raise AFFError('--teacher (knowledge distillation) is not supported; the official runs '
                       'did not use it')
    if args.dtype not in ('float32', 'float16'):
        raise AFFError('--dtype must be float32 or float16, got %r' % args.dtype)
    if args.kv_store not in KV_STORES:
        raise AFFError('unknown --kv-store %r; use one of %s' % (args.kv_store, ', '.join(KV_STORES)))
    if args.resume_epoch >= args.num_epochs:
        raise AFFError('--resume-epoch %d is not below --num-epochs %d: nothing left to train'
                       % (args.resume_epoch, args.num_epochs))
    if args.model in ('resnet', 'resnext') and args.start_layer > 4 and \
            net.fusion.canonical_fusion(args.askc_type) != net.fusion.canonical_fusion('DirectAdd'):
        raise AFFError('--start-layer %d leaves none of the 4 stages with %s; use 1 to 4'
                       % (args.start_layer, args.askc_type))


KV_STORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync', 'dist_async', 'horovod')


def _dtype(args, sources, num_gpus, notes):
    if args.dtype == 'float16' and num_gpus == 0:
        if sources['dtype'] == 'flag':
            raise AFFError('--dtype float16 needs a GPU: MXNet has no float16 convolution on '
                           'the CPU; use --dtype float32')
        notes.append('float16 needs a GPU (MXNet has no fp16 convolution on the CPU): the %s '
                     '--dtype float16 is replaced by float32' % sources['dtype'])
        return 'float32'
    if args.dtype == 'float16':
        os.environ.setdefault('MXNET_SAFE_ACCUMULATION', '1')
    return args.dtype


def evaluate_only(args, model, ctx, dtype, val_data):
    if args.pretrained:
        model = net.get_model(args.model, pretrained=True, classes=args.classes, ctx=ctx[0])
    elif args.resume_params:
        load_params(model, weights_of(args.resume_params, '--resume-params'), ctx=ctx)
    else:
        raise AFFError('--eval needs --resume-params FILE or --pretrained (with a registry '
                       '--model that has a released checkpoint)')
    model.collect_params().reset_ctx(ctx)
    if dtype != 'float32':
        model.cast(dtype)
    if args.mode == 'hybrid':
        print(T.hybridize_for_inference(model, mx.nd.zeros(
            (args.batch_size, 3, args.input_size, args.input_size), ctx=ctx[0], dtype=dtype)))
    err1, err5, seen = classification_errors(model, val_data, ctx, dtype)
    print('[Eval] %s: err-top1=%f err-top5=%f (%d validation images, each counted once)'
          % (args.model, err1, err5, seen))
    return 0


def make_trainer(args, model, sched, kv, dtype, notes):
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
    return trainer


def restore(engine, args):
    """Official resume flags: ``--resume-params`` (our set: verified, continues its schedule;
    any .params: weights only) with ``--resume-states`` and ``--resume-epoch``."""
    if not (args.resume_params and os.path.isfile(stem_of(args.resume_params) + '.json')):
        return engine.restore_files(args.resume_params, args.resume_states, args.resume_epoch)
    if args.resume_states and stem_of(args.resume_states) != stem_of(args.resume_params):
        raise AFFError('--resume-states %s is not the states file of --resume-params %s; pass '
                       '%s.states or drop --resume-states' % (
                           args.resume_states, args.resume_params, stem_of(args.resume_params)))
    # official semantics: the momentum is restored only when --resume-states is given
    resume = engine.restore(args.resume_params, with_states=bool(args.resume_states))
    if args.resume_epoch not in (0, resume.start_epoch):
        raise AFFError('--resume-epoch %d contradicts %s, which ends at epoch %d; drop '
                       '--resume-epoch or pass %d' % (args.resume_epoch, args.resume_params,
                                                      resume.start_epoch - 1, resume.start_epoch))
    return resume


# --------------------------------------------------------------------------- main
CSV_FIELDS = ['epoch', 'train_metric_name', 'train', 'top1_err', 'top5_err', 'lr', 'speed',
              'time']


def csv_path(logging_file):
    """The per-epoch CSV beside the log: ``train_imagenet.log`` -> ``train_imagenet.csv``."""
    return os.path.splitext(logging_file)[0] + '.csv'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, sources = resolve(build_parser(), argv, IMAGENET_RECIPES, lambda a: 'official')
    validate(args)
    T.seed_everything(args.seed)
    ctx, notes = T.script_contexts(','.join(str(i) for i in range(args.num_gpus)),
                                   sources['num_gpus'], args.num_cpu_contexts, '--num-gpus',
                                   args.num_gpus)
    dtype = _dtype(args, sources, sum(c.device_type == 'gpu' for c in ctx), notes)
    kv, rank, workers_dist, ctx, dist_notes = T.distribution(args.kv_store, ctx)
    notes += dist_notes
    model, name = build_net(args), model_name(args)
    if args.summary:
        print('%s: %d parameters' % (name, count_params(model)[1]))
        return 0
    workers, note = T.capped_workers(args.num_workers)
    notes += [note] if note else []
    if not args.eval and rank == 0:
        probe_writable(('--save-dir', args.save_dir),
                       ('--logging-file', os.path.dirname(args.logging_file)))
    tic = time.time()
    train_data, val_data, n_train, n_val = data(args, len(ctx), rank, workers_dist, workers,
                                                train=not args.eval)
    if args.use_rec:
        notes.append('RecordIO files checked (--rec-verify %s) in %.1f s'
                     % (args.rec_verify, time.time() - tic))
    if args.eval:
        return evaluate_only(args, model, ctx, dtype, val_data)
    total_batch = args.batch_size * len(ctx) * workers_dist
    iters = n_train // total_batch
    sched = T.lr_schedule(args.lr_mode, args.lr, args.num_epochs, iters,
                          warmup_epochs=args.warmup_epochs, decay_epochs=epochs_of(args.lr_decay_epoch),
                          decay_factor=args.lr_decay, decay_period=args.lr_decay_period)
    model.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    if dtype != 'float32':
        model.cast(dtype)
    if args.mode == 'hybrid':
        notes.append(T.hybridize_for_training(model, ctx))
    trainer = make_trainer(args, model, sched, kv, dtype, notes)
    ckpt = CheckpointSet(args.save_dir, 'imagenet-' + name)
    if rank == 0:
        Engine.clean(ckpt, notes)
    task = Classification('imagenet', args.classes, args.num_epochs,
                          smoothing=0.1 if args.label_smoothing else 0.0, mixup=args.mixup,
                          mixup_alpha=args.mixup_alpha, mixup_off_epoch=args.mixup_off_epoch,
                          dtype=dtype)
    best = lambda epoch, err: os.path.join(  # noqa: E731  (the official best-file names)
        args.save_dir, '%.4f-imagenet-%s-%d-best' % (err, name, epoch))
    engine = Engine(task, model, trainer, ctx, iters, total_batch, args.num_epochs, ckpt,
                    dict(vars(args)), best=best, save_period=args.save_frequency,
                    period_tag='%d', save_final=True, log_interval=args.log_interval, rank=rank)
    resume = restore(engine, args)
    if rank != 0:
        engine.fit(train_data, val_data, resume.start_epoch, resume.best)
        return 0
    with open_run_logs(args.logging_file, csv_path(args.logging_file), dict(vars(args)), sources,
                       notes + resume.notes, 'imagenet', CSV_FIELDS, resume.start_epoch,
                       prefix='') as (log, csv):
        log.info('%d training images (%d per worker shard), %d validation images, %d iterations '
                 'per epoch of %d images' % (n_train, n_train // workers_dist, n_val, iters,
                                             total_batch))
        engine.log, engine.csv = log, csv
        engine.fit(train_data, val_data, resume.start_epoch, resume.best)
    return 0


if __name__ == '__main__':
    run_main(main)
