"""train_imagenet.py on fixed synthetic batches, distributed or not (test_train_imagenet.py).

    python -m utils.launch -n 2 -s 1 -- python tests/imagenet_dist_worker.py OUT_DIR \\
        --kv-store dist_sync [train_imagenet flags]                    # 2 workers
    python tests/imagenet_dist_worker.py OUT_DIR --num-cpu-contexts 2 [flags]   # one process

Only the data source of ``train_imagenet.data`` is replaced -- everything else (recipe
resolution, kvstore, trainer, schedule, loop, evaluation, checkpoints) is the real script.  The
``N`` images are fixed; with ``D`` devices in all (workers x contexts) and ``B`` images per
device, step ``i`` trains on rows ``[i*D*B, (i+1)*D*B)`` and device ``g`` (worker ``g // C``,
context ``g % C``) gets rows ``i*D*B + [g*B, (g+1)*B)``.  So a 2-worker run and a one-process run
on 2 CPU contexts see the same per-device batches, and BatchNorm the same halves.

After training, ``OUT_DIR/device<g>.npz`` holds every parameter (trainable and BatchNorm
statistics, structural names) as held on device ``g``.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import net  # noqa: E402,F401  (configures threads before mxnet)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import train_imagenet as TI  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.engine import Engine  # noqa: E402

N_TRAIN, N_VAL, SIZE, CLASSES = 48, 8, 32, 10


def _images(seed, n):
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)
    return x, rng.randint(0, CLASSES, size=n).astype(np.float32)


def fake_data(args, ctx_count, rank, workers_dist, workers, train=True):
    per_worker = args.batch_size * ctx_count
    glob = per_worker * workers_dist
    x, y = _images(1234, N_TRAIN)
    rows = np.concatenate([np.arange(i * glob + rank * per_worker, i * glob + (rank + 1) * per_worker)
                           for i in range(N_TRAIN // glob)])
    train = mx.io.NDArrayIter(x[rows], y[rows], batch_size=per_worker, shuffle=False)
    vx, vy = _images(99, N_VAL)
    val = mx.io.NDArrayIter(vx, vy, batch_size=per_worker, shuffle=False, last_batch_handle='pad')
    return train, val, N_TRAIN, N_VAL


def main():
    out_dir, argv = sys.argv[1], sys.argv[2:]
    real_fit = Engine.fit

    def fit_and_dump(engine, *args, **kwargs):
        best = real_fit(engine, *args, **kwargs)
        params = engine.model._collect_params_with_prefix()
        for k, c in enumerate(engine.ctx):
            np.savez(os.path.join(out_dir, 'device%d.npz' % (engine.rank * len(engine.ctx) + k)),
                     **{n: p.data(c).asnumpy() for n, p in params.items()})
        return best

    TI.data = fake_data
    Engine.fit = fit_and_dump
    return TI.main(argv)


if __name__ == '__main__':
    run_main(main)
