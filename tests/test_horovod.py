"""--kv-store horovod (utils/horovod.py): two Horovod ranks on loopback (gloo) train like one
process on two CPU contexts; a rank that dies stops the job; a resumed job continues it; the
error lines.  The loopback tests need Horovod (``make horovod``; CI builds it) and are skipped
with that reason without it."""
import glob
import importlib.util
import json
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import ROOT
from utils.logs import parse_log

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
# without importing it here: Horovod's module puts libmxnet's symbols in the global scope of
# this pytest process (net/kernels/build.py)
_spec = importlib.util.find_spec('horovod')
HAVE_HOROVOD = bool(_spec and os.path.isdir(os.path.join(os.path.dirname(_spec.origin), 'mxnet'))
                    and os.path.isfile(HOROVODRUN))
needs_horovod = pytest.mark.skipif(not HAVE_HOROVOD, reason='Horovod is not installed (make horovod)')

WORKER = os.path.join(ROOT, 'tests', 'imagenet_dist_worker.py')
FLAGS = ['--model', 'cifar_aff_resnet20_b1', '--classes', '10', '--batch-size', '4',
         '--num-epochs', '2', '--lr', '0.1', '--wd', '1e-4', '--no-wd', '--label-smoothing',
         '--warmup-epochs', '1', '--dtype', 'float32', '--log-interval', '2', '--save-frequency', '0']
STEM = 'imagenet-ImageNet-cifar_aff_resnet20_b1'
# one OpenMP thread everywhere: MXNet's CPU initialisers draw per thread, and the automatic
# choice (idle cores at start) may differ between the ranks and the reference
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def _horovodrun(argv, out_dir, timeout=240, **env):
    return subprocess.run([HOROVODRUN, '-np', '2', '-H', 'localhost:2', '--gloo',
                           '--network-interfaces', 'lo', sys.executable] + argv,
                          cwd=ROOT, env=dict(ENV, **env), capture_output=True, text=True,
                          timeout=timeout)


def _alive(marker):
    """Processes whose command line contains ``marker`` (zombies excluded)."""
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
            with open('/proc/%s/stat' % entry) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmd and state not in ('Z', 'X'):
            found.append(int(entry))
    return found


def _worker_run(out_dir, *extra, **env):
    out_dir.mkdir(exist_ok=True)
    return _horovodrun([WORKER, str(out_dir)] + FLAGS + [
        '--kv-store', 'horovod', '--save-dir', str(out_dir), '--logging-file',
        str(out_dir / 'log')] + list(extra), out_dir, **env)


def _close(a, b, keys):
    scale = max(float(np.abs(b[k]).max()) for k in keys)
    return max(float(np.abs(a[k] - b[k]).max()) for k in keys) / scale


def _stats(npz):
    return [k for k in npz.files if 'running_' in k]


def _trainable(npz):
    return [k for k in npz.files if 'running_' not in k]


def _batch_lrs(log):
    import re
    with open(log) as f:
        return [float(m.group(1)) for m in re.finditer(r'Batch \[\d+\].*lr=([0-9.]+)', f.read())]


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    """One uninterrupted 2-rank run of train_imagenet.py (tests/imagenet_dist_worker.py), with
    the trace of its fault points."""
    out = tmp_path_factory.mktemp('hvd_straight')
    run = _worker_run(out, AFF_FAULT_TRACE=str(out / 'trace'))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run


# ------------------------------------------------------------------ loopback equality
@needs_horovod
@pytest.mark.slow
def test_two_ranks_train_like_one_process_on_two_contexts(straight, tmp_path):
    """The issue's equality: 2 Horovod ranks end with the weights of one process training the
    same per-device batches on 2 CPU contexts; only rank 0 writes the log and checkpoints."""
    dist, run = straight
    one = tmp_path / 'one'
    one.mkdir()
    ref = subprocess.run([sys.executable, WORKER, str(one)] + FLAGS + [
        '--num-cpu-contexts', '2', '--save-dir', str(one), '--logging-file', str(one / 'log')],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    d0, d1 = (np.load(str(dist / ('device%d.npz' % g))) for g in (0, 1))
    r0, r1 = (np.load(str(one / ('device%d.npz' % g))) for g in (0, 1))
    trainable = _trainable(r0)
    assert len(trainable) > 50
    # training moved the weights and the devices' statistics differ: the checks below can fail
    assert _close(r0, r1, r0.files) > 1e-3
    # the ranks hold the same weights (all-reduced gradients, the same update on each rank) ...
    for k in trainable:
        np.testing.assert_array_equal(d0[k], d1[k], err_msg=k)
    # ... which are the one-process weights (measured: 2e-7 relative), and rank 0's BatchNorm
    # statistics are device 0's (6e-7)
    assert _close(d0, r0, trainable) <= 1e-6 and _close(d1, r1, trainable) <= 1e-6
    assert _close(d0, r0, _stats(r0)) <= 1e-5
    # rank 1's statistics are its own from the first step; in one process MXNet's Trainer copies
    # device 0's statistics to device 1 at its first step (test_mxnet_copies_device0_statistics
    # below): the difference is that one step's share, decayed by the momentum (measured 1.3e-3)
    assert 1e-5 < _close(d1, r1, _stats(r1)) <= 1e-2

    text = (dist / 'log').read_text()
    assert 'Horovod: rank 0 of 2 (local rank 0) on cpu(0), gradients all-reduced by gloo' in text
    assert [e.epoch for e in parse_log(str(dist / 'log'))[-1].epochs] == [0, 1]
    assert _batch_lrs(str(dist / 'log')) == _batch_lrs(str(one / 'log'))
    assert len(set(_batch_lrs(str(dist / 'log')))) == 6          # warmup then cosine
    # rank 0 alone wrote: one log, the sets (with optimizer states: they are the rank's own)
    assert run.stdout.count('validation: err-top1=') == 2
    assert '[1]<stdout>:' not in run.stdout
    assert os.path.isfile(str(dist / (STEM + '-last.states')))
    assert sorted(os.path.basename(p) for p in glob.glob(str(dist / '*.params'))
                  if '-best' not in p) == [STEM + '-1.params', STEM + '-last.params']


@needs_horovod
@pytest.mark.slow
def test_a_dead_rank_stops_the_job_and_the_resume_continues_it(straight, tmp_path):
    """Rank 0 ends at the end of epoch 1 (before its checkpoints): horovodrun stops rank 1 and
    exits non-zero; resuming from the epoch-0 set ends with the uninterrupted run's weights."""
    ref, _ = straight
    points = [ln.split(' ', 1)[1].strip() for ln in (ref / 'trace').read_text().splitlines()]
    at = points.index('epoch 1 done') + 1
    out = tmp_path / 'run'
    tic = time.time()
    killed = _worker_run(out, AFF_FAULT_AT=str(at))
    assert killed.returncode != 0
    # rank 0's fault exit (horovodrun names the first rank to fail: rank 0, or rank 1 when it
    # stopped first on Horovod's shutdown with its own one line)
    assert 'Process 0 exit with status code 86' in killed.stdout + killed.stderr
    assert time.time() - tic < 120
    assert not _alive(str(out))                                        # rank 1 was stopped
    with open(str(out / (STEM + '-last.json'))) as f:
        assert json.load(f)['epoch'] == 0

    resumed = _worker_run(out, '--resume-params', str(out / (STEM + '-last.params')),
                          '--resume-states', str(out / (STEM + '-last.states')))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    a0, a1 = (np.load(str(out / ('device%d.npz' % g))) for g in (0, 1))
    b0, b1 = (np.load(str(ref / ('device%d.npz' % g))) for g in (0, 1))
    assert _close(a0, b0, a0.files) <= 1e-5          # rank 0: weights and statistics
    assert _close(a1, b1, _trainable(b1)) <= 1e-5   # rank 1 resumes from rank 0's statistics
    segments = parse_log(str(out / 'log'))
    assert [e.epoch for e in segments[-1].epochs] == [1]
    assert _batch_lrs(str(out / 'log'))[-3:] == _batch_lrs(str(ref / 'log'))[-3:]


@needs_horovod
@pytest.mark.slow
def test_train_cifar_two_ranks_shard_the_training_set(tmp_path):
    """train_cifar.py --kv-store horovod: each rank trains on its half of every global batch;
    the log counts the global batch; only rank 0 writes."""
    # a learning rate of ~0: the epoch's loss is the broadcast initial network's on (nearly) the
    # same images in both runs below
    flags = [os.path.join(ROOT, 'train_cifar.py'), '--dataset', 'digits', '--num-epochs', '1',
             '--batch-size', '32', '--lr', '1e-9']
    run = _horovodrun(flags + ['--kv-store', 'horovod', '--save-dir', str(tmp_path / 'p'),
                               '--logging-dir', str(tmp_path / 'l')], tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    one = subprocess.run([sys.executable] + flags + ['--num-cpu-contexts', '2', '--save-dir',
                         str(tmp_path / 'p1'), '--logging-dir', str(tmp_path / 'l1')], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-3000:]
    # the logged loss is the global batch's: the ranks' sums over the images of all ranks (rank
    # 0's own sum over the global count logged half of it); the runs differ only in which
    # images share a device batch and in their augmentation draws
    got, want = (parse_log(glob.glob(str(tmp_path / d / '*.log'))[0])[-1].epochs[0].loss
                 for d in ('l', 'l1'))
    assert abs(got - want) <= 0.05 * want, (got, want)
    log = glob.glob(str(tmp_path / 'l' / '*.log'))
    assert len(log) == 1
    with open(log[0]) as f:
        text = f.read()
    assert '1347 training images (673 per rank), 450 test images, 21 iterations per epoch of 64 ' \
           'images' in text                    # 1347 // (32 x 2 ranks)
    assert len(parse_log(log[0])[-1].epochs) == 1
    assert os.path.isfile(str(tmp_path / 'p' / 'digits-cifar_aff_resnet20_b1-last.states'))


BROADCAST = """
import sys
sys.path.insert(0, %r)
import utils, mxnet as mx, numpy as np
import net
from utils import train as T
import horovod.mxnet as hvd
hvd.init()
mx.random.seed(hvd.rank())              # each rank draws other weights
model = net.get_model('cifar_aff_resnet20_b1', classes=10)
model.initialize(mx.init.Xavier(), ctx=[mx.cpu()])
before = {k: p.data().asnumpy() for k, p in model.collect_params().items()}
T.make_trainer(model, None, 0.1, 1e-4, 0.9, kvstore='horovod')
np.savez(sys.argv[1] + '/before%%d.npz' %% hvd.rank(), **before)
np.savez(sys.argv[1] + '/after%%d.npz' %% hvd.rank(),
         **{k: p.data().asnumpy() for k, p in model.collect_params().items()})
"""


@needs_horovod
def test_every_rank_starts_from_rank_0s_weights(tmp_path):
    """utils.train.make_trainer(kvstore='horovod') broadcasts rank 0's parameters (weights and
    BatchNorm statistics) before the first step."""
    run = _horovodrun(['-c', BROADCAST % ROOT, str(tmp_path)], tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    b0, b1, a0, a1 = (np.load(str(tmp_path / n)) for n in ('before0.npz', 'before1.npz',
                                                          'after0.npz', 'after1.npz'))
    assert any(not np.array_equal(b0[k], b1[k]) for k in b0.files)
    for k in b0.files:
        np.testing.assert_array_equal(a0[k], b0[k], err_msg=k)
        np.testing.assert_array_equal(a1[k], b0[k], err_msg=k)


# ------------------------------------------------------------------ error lines
def _one_error_line(res, *words):
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_without_horovod_the_flag_is_one_line_naming_the_install(tmp_path):
    fake = tmp_path / 'fake' / 'horovod'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('No module named horovod.mxnet')\n")
    env = dict(ENV, PYTHONPATH=str(tmp_path / 'fake'))
    for script in ('train_cifar.py', 'train_imagenet.py'):
        res = subprocess.run([sys.executable, os.path.join(ROOT, script), '--kv-store', 'horovod',
                              '--model', 'cifar_aff_resnet20_b1', '--num-epochs', '1',
                              '--save-dir', str(tmp_path), '--data-dir', str(tmp_path)],
                             cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
        _one_error_line(res, '--kv-store horovod needs Horovod', 'make horovod')


def test_horovodrun_without_the_horovod_kvstore_is_one_line(tmp_path):
    """Started by horovodrun (its rank variables) but --kv-store left at its default: each process
    would train alone and all would write the same files -- refused before anything is built."""
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train_cifar.py'), '--dataset',
                          'digits', '--num-epochs', '1', '--save-dir', str(tmp_path)],
                         cwd=str(tmp_path), env=dict(ENV, HOROVOD_RANK='0', HOROVOD_SIZE='2'),
                         capture_output=True, text=True, timeout=120)
    _one_error_line(res, 'started by horovodrun as 2 processes', 'add --kv-store horovod')
    assert not list(tmp_path.glob('*.params'))


def test_horovods_shutdown_error_is_one_line_and_other_errors_keep_their_traceback(tmp_path):
    """What a rank sees when another rank died: MXNet's 'Horovod has been shut down' becomes one
    line naming the cause and the resume (exit 1); any other exception is a bug and keeps its
    traceback."""
    code = ('import mxnet as mx\nfrom utils.cli import run_main\n'
            'def main():\n    raise %s\nrun_main(main)\n')
    env = dict(ENV, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, '-c', code % "mx.base.MXNetError('MXNetError: Horovod has "
                          "been shut down. This was caused by an exception on one of the ranks')"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.count('\n') == 1, res.stderr
    assert res.stderr.startswith('error: another Horovod rank stopped') and 'resume' in res.stderr
    res = subprocess.run([sys.executable, '-c', code % "mx.base.MXNetError('MXNetError: bad shape')"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and 'Traceback' in res.stderr and 'bad shape' in res.stderr


@needs_horovod
@pytest.mark.slow
def test_an_error_under_horovodrun_is_one_line_per_rank(tmp_path):
    """An error raised after Horovod started (here a missing --resume-from file, checked after the
    broadcast): each rank prints its one line and nothing else -- MXNet's atexit hook would
    print a traceback of Horovod's closed loop after it."""
    run = _horovodrun([os.path.join(ROOT, 'train_cifar.py'), '--dataset', 'digits',
                       '--num-epochs', '1', '--batch-size', '32', '--kv-store', 'horovod',
                       '--resume-from', str(tmp_path / 'nope-last.params'),
                       '--save-dir', str(tmp_path / 'p'), '--logging-dir', str(tmp_path / 'l')],
                      tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    said = 0
    for rank in (0, 1):
        lines = [ln for ln in out.splitlines() if ln.startswith('[%d]<stderr>:' % rank)]
        said += any('error: --resume-from' in ln for ln in lines)
        # no Python traceback of ours or MXNet's; a rank may be stopped ('Terminated') by
        # horovodrun once the other failed first, before it got to its own line
        assert not any('Traceback' in ln or 'Exception ignored' in ln for ln in lines), out[-3000:]
        assert any('error: --resume-from' in ln or ln.endswith(':Terminated') for ln in lines), out[-3000:]
    assert said >= 1, out[-3000:]


@pytest.mark.skipif(mx.runtime.Features().is_enabled('NCCL'), reason='this MXNet has NCCL')
def test_a_kvstore_this_mxnet_lacks_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train_cifar.py'), '--dataset',
                          'digits', '--kv-store', 'nccl', '--save-dir', str(tmp_path)],
                         cwd=str(tmp_path), env=ENV, capture_output=True, text=True, timeout=120)
    _one_error_line(res, '--kv-store nccl is not available', 'USE_NCCL', '--kv-store device')


@needs_horovod
def test_horovod_refuses_several_cpu_contexts_per_process(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train_cifar.py'), '--dataset',
                          'digits', '--kv-store', 'horovod', '--num-cpu-contexts', '2',
                          '--save-dir', str(tmp_path)], cwd=str(tmp_path), env=ENV,
                         capture_output=True, text=True, timeout=120)
    _one_error_line(res, 'one device per process', 'horovodrun -np')


# ------------------------------------------------------------------ the cause of the one difference
def test_mxnet_copies_device0_statistics_at_the_first_step():
    """MXNet 1.9.1's gluon Trainer creates its kvstore at the first ``step`` and then pulls every
    parameter -- BatchNorm statistics included -- from device 0 to the others: after step 1,
    device 1's statistics are device 0's; from step 2 on each device updates its own."""
    ctx = [mx.cpu(0), mx.cpu(1)]
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, in_channels=3), mx.gluon.nn.BatchNorm(in_channels=4),
            mx.gluon.nn.Dense(2, in_units=4 * 6 * 6))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    bn = net[1]
    rng = np.random.RandomState(0)

    def step():
        with mx.autograd.record():
            losses = [net(mx.nd.array(rng.standard_normal((4, 3, 8, 8)), ctx=c)).sum() for c in ctx]
        for loss in losses:
            loss.backward()
        trainer.step(8)
        return [bn.running_mean.data(c).asnumpy() for c in ctx]

    first = step()
    np.testing.assert_array_equal(first[0], first[1])
    second = step()
    assert np.abs(second[0] - second[1]).max() > 1e-4


def test_make_loader_shards_the_training_set():
    """make_loader(shard=(rank, parts, seed)): disjoint halves, the same batch count on each
    rank, the order a function of (seed, rank, epoch) -- what a resumed rank reads again."""
    from utils.data.transforms import ArrayImageDataset, make_loader
    x = np.zeros((20, 4, 4, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(20)
    ds = ArrayImageDataset(x, np.arange(20))
    seen, lengths = [], []
    for rank in (0, 1):
        loader = make_loader(ds, 3, True, shard=(rank, 2, 7))
        lengths.append(len(loader))
        seen.append([int(v) for _, y in loader for v in y.asnumpy()])
    assert lengths == [3, 3] and [len(s) for s in seen] == [9, 9]
    assert not set(seen[0]) & set(seen[1])
    again = make_loader(ds, 3, True, shard=(1, 2, 7))
    assert [int(v) for _, y in again for v in y.asnumpy()] == seen[1]
