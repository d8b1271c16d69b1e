"""A few SGD steps of cifar_aff_resnet20_b1 on synthetic data, distributed or not (test_launch.py).

    python -m utils.launch -n 2 -s 1 -- python tests/dist_worker.py --out 'w{rank}.npz'  # dist
    python tests/dist_worker.py --reference --contexts 2 --out ref.npz         # one process

Every process seeds identically and builds the same fixed dataset.  Step ``i`` uses the global
batch ``data[i*B:(i+1)*B]``; a distributed worker of rank ``r`` trains on its shard of it
(``utils.launch.shard``), the reference gives shard ``r`` to context ``cpu(r)``.  Both call
``trainer.step(B)`` (plain SGD, no momentum, no weight decay), so the updates are the same sums
of the same per-shard gradients -- and BatchNorm sees the same half batches, so its moving
statistics of worker ``r`` are those of context ``r``.

The .npz holds ``init/NAME`` and ``param/NAME`` (trainable parameters before and after; NAME is
the structural name, e.g. ``features.0.weight``), ``aux<g>/NAME`` (BatchNorm moving statistics
of global shard ``g``) and ``loss<g>`` (summed loss of shard ``g`` at every step).

No forward pass may run outside ``autograd.record()`` before the first ``trainer.step``: with
oneDNN (MKLDNN, on in the wheel) an inference-mode forward reorders convolution weights into the
oneDNN layout, and the rank-0 worker's initial kvstore push of such a weight is then silently
never sent while both workers pass that key's barrier -- the server dies with "Check failed:
!stored.is_none(): init K first" (measured: 5 runs in 6; never with MXNET_MKLDNN_ENABLED=0, with
MXNET_ENGINE_TYPE=NaiveEngine, or without that forward).  So the initial weights are read after
the first backward pass, which finished the deferred initialisation.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import net  # noqa: E402  (configures threads before mxnet)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

from utils.launch import distributed_info, shard  # noqa: E402

MODEL = 'cifar_aff_resnet20_b1'
CLASSES = 10


def dataset(seed, n):
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    y = rng.randint(0, CLASSES, size=n).astype(np.float32)
    return x, y


def params_by_name(model):
    return model._collect_params_with_prefix()  # structural names, as save_parameters uses


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='.npz path; {rank} is replaced by the rank')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--batch-size', type=int, default=8, help='global batch')
    p.add_argument('--lr', type=float, default=0.1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--reference', action='store_true', help='one process, local kvstore')
    p.add_argument('--contexts', type=int, default=2, help='CPU contexts of --reference')
    args = p.parse_args()

    if args.reference:
        kv, ctxs = 'local', [mx.cpu(i) for i in range(args.contexts)]
        rank, num_workers = 0, 1
        parts = len(ctxs)
    else:
        kv = mx.kv.create('dist_sync')
        rank, num_workers = distributed_info(kv)
        ctxs = [mx.cpu(0)]
        parts = num_workers
    # global shard g = rank * len(ctxs) + c is what context c of worker `rank` trains on
    mine = [rank * len(ctxs) + c for c in range(len(ctxs))]

    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    x, y = dataset(args.seed + 1, args.steps * args.batch_size)
    model = net.get_model(MODEL, classes=CLASSES)
    model.initialize(mx.init.Xavier(), ctx=ctxs)
    params = params_by_name(model)
    init = None
    trainer = gluon.Trainer(model.collect_params(), 'sgd',
                            {'learning_rate': args.lr, 'momentum': 0.0, 'wd': 0.0}, kvstore=kv)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = {g: [] for g in mine}
    B = args.batch_size
    for step in range(args.steps):
        xb, yb = x[step * B:(step + 1) * B], y[step * B:(step + 1) * B]
        with autograd.record():
            outs = []
            for c, g in zip(ctxs, mine):
                part = shard(B, g, parts)
                outs.append(loss_fn(model(mx.nd.array(xb[part], ctx=c)),
                                    mx.nd.array(yb[part], ctx=c)))
        autograd.backward(outs)
        if init is None:  # the first forward pass finished the deferred initialisation
            init = {k: v.data(ctxs[0]).asnumpy() for k, v in params.items()
                    if v.grad_req != 'null'}
        trainer.step(B)
        for g, out in zip(mine, outs):
            losses[g].append(float(out.sum().asscalar()))

    result = {}
    for k, v in params.items():
        if v.grad_req == 'null':
            for c, g in zip(ctxs, mine):
                result['aux%d/%s' % (g, k)] = v.data(c).asnumpy()
        else:
            result['init/' + k] = init[k]
            result['param/' + k] = v.data(ctxs[0]).asnumpy()
            for c in ctxs[1:]:  # the contexts of one process must agree exactly
                if not np.array_equal(v.data(c).asnumpy(), result['param/' + k]):
                    raise SystemExit('%s differs between %s and %s' % (k, ctxs[0], c))
    for g in mine:
        result['loss%d' % g] = np.array(losses[g])
    out = args.out.format(rank=rank)
    np.savez(out, **result)
    print('rank %d/%d: %d steps, losses %s -> %s' % (
        rank, num_workers, args.steps, ' '.join('%.4f' % losses[g][0] for g in mine), out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
