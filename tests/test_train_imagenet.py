"""train_imagenet.py end to end on tiny RecordIO files and image folders the test writes."""
import glob
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import train_imagenet
from conftest import ROOT
from launched import assert_all_gone, kill_leftovers
from utils.data import imagenet as I
from utils.logs import parse_log

SIZE, CLASSES = 40, 4


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet')
    rng = np.random.RandomState(0)
    out = {}
    for split, n in (('train', 24), ('val', 10)):
        images = [rng.randint(0, 256, size=(SIZE + 8, SIZE + 4, 3), dtype=np.uint8) for _ in range(n)]
        labels = rng.randint(0, CLASSES, size=n)
        out[split] = I.write_tiny_rec(str(root / ('rec/%s' % split)), images, labels)
        I.write_tiny_folder(str(root / 'folder'), split, images, labels, num_classes=CLASSES)
    out['root'] = root
    return out


def _argv(tiny, tmp, *extra, rec=True, model='resnet', askc='ASKCFuse'):
    (rt, rti), (rv, rvi) = tiny['train'], tiny['val']
    data = (['--use-rec', '--rec-train', rt, '--rec-train-idx', rti, '--rec-val', rv,
             '--rec-val-idx', rvi] if rec else ['--data-dir', str(tiny['root'] / 'folder')])
    return data + ['--model', model, '--askc-type', askc, '--classes', str(CLASSES),
                   '--input-size', '32', '--batch-size', '4', '--num-epochs', '1',
                   '--warmup-epochs', '0', '-j', '0', '--log-interval', '2',
                   '--logging-file', str(tmp / 'train.log'), '--save-dir', str(tmp / 'params')] + \
        list(extra)


@pytest.mark.parametrize('model,askc,rec', [('resnet', 'ASKCFuse', True),
                                            ('resnet', 'ResGlobLocaforGlobLocaCha', False),
                                            ('resnext', 'ASKCFuse', False),
                                            ('resnext', 'ResGlobLocaforGlobLocaCha', True)])
def test_one_epoch(tiny, tmp_path, model, askc, rec):
    argv = _argv(tiny, tmp_path, '--mixup', '--label-smoothing', '--no-wd', '--last-gamma',
                 '--mixup-off-epoch', '0', rec=rec, model=model, askc=askc)
    assert train_imagenet.main(argv) == 0
    seg = parse_log(str(tmp_path / 'train.log'))[-1]
    assert seg.config['askc_type'] == askc and seg.kind == 'imagenet'
    e = seg.epochs[0]
    assert e.epoch == 0 and 0 <= e.top1_err <= 1 and 0 <= e.top5_err <= e.top1_err
    with open(str(tmp_path / 'train.log')) as f:
        text = f.read()
    assert 'float16 needs a GPU' in text and '24 training images' in text
    name = 'ImageNet-%s-%s--50-s-3' % (askc, model)
    assert glob.glob(str(tmp_path / 'params' / ('imagenet-%s-0.params' % name)))
    assert glob.glob(str(tmp_path / 'params' / ('imagenet-%s-0.states' % name)))


def test_autoaugment_in_rec_mode_and_registry_model(tiny, tmp_path):
    argv = _argv(tiny, tmp_path, '--auto_aug', model='cifar_aff_resnet20_b1')
    assert train_imagenet.main(argv) == 0
    assert parse_log(str(tmp_path / 'train.log'))[-1].config['auto_aug'] is True


def test_eval_counts_each_image_once(tiny, tmp_path, capsys):
    argv = _argv(tiny, tmp_path, model='cifar_aff_resnet20_b1')
    assert train_imagenet.main(argv) == 0
    params = glob.glob(str(tmp_path / 'params' / 'imagenet-*-0.params'))[0]
    capsys.readouterr()
    for rec in (True, False):
        assert train_imagenet.main(_argv(tiny, tmp_path, '--eval', '--resume-params', params,
                                         rec=rec, model='cifar_aff_resnet20_b1')) == 0
        out = capsys.readouterr().out.splitlines()
        line = [ln for ln in out if ln.startswith('[Eval]')][0]
        assert '(10 validation images, each counted once)' in line
        # evaluated through the one inference path (utils.train.hybridize_for_inference)
        assert any(line.startswith('inference: oneDNN graph optimisation (optimize_for MKLDNN), '
                                   'static_alloc; CPU speed layer (net.cpu_speed): ') for line in out)


def _batch_lrs(log, epoch):
    import re
    with open(log) as f:
        return [float(m.group(1)) for m in re.finditer(r'Epoch\[%d\] Batch \[\d+\].*lr=([0-9.]+)' % epoch,
                                                       f.read())]


def test_resume_continues_the_schedule(tiny, tmp_path):
    """--resume-epoch/--resume-params/--resume-states (official): the per-iteration learning
    rate after the resume is the uninterrupted run's."""
    common = ('--num-epochs', '3', '--lr-mode', 'cosine', '--warmup-epochs', '1',
              '--save-frequency', '1', '--log-interval', '1')
    full = tmp_path / 'full'
    assert train_imagenet.main(_argv(tiny, full, *common, model='cifar_aff_resnet20_b1')) == 0
    stem = glob.glob(str(full / 'params' / 'imagenet-*-1.params'))[0][:-len('.params')]
    again = tmp_path / 'again'
    assert train_imagenet.main(_argv(tiny, again, *common, '--resume-epoch', '2', '--resume-params',
                                     stem + '.params', '--resume-states', stem + '.states',
                                     model='cifar_aff_resnet20_b1')) == 0
    assert [e.epoch for e in parse_log(str(again / 'train.log'))[-1].epochs] == [2]
    want = _batch_lrs(str(full / 'train.log'), 2)
    assert len(want) == 6 and want == _batch_lrs(str(again / 'train.log'), 2)
    # without --resume-states (as after a distributed run) the schedule continues too
    light = tmp_path / 'light'
    assert train_imagenet.main(_argv(tiny, light, *common, '--resume-epoch', '2', '--resume-params',
                                     stem + '.params', model='cifar_aff_resnet20_b1')) == 0
    assert want == _batch_lrs(str(light / 'train.log'), 2)
    assert 'the momentum starts from zero' in (light / 'train.log').read_text()
    # the per-epoch CSV beside each log, one row per epoch, agreeing with the log lines
    import csv
    for run, epochs in ((full, [0, 1, 2]), (again, [2])):
        with open(str(run / 'train.csv')) as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == train_imagenet.CSV_FIELDS
        assert [int(r['epoch']) for r in rows] == epochs
        for r, e in zip(rows, parse_log(str(run / 'train.log'))[-1].epochs):
            assert float(r['top1_err']) == pytest.approx(e.top1_err, abs=1e-6)
            assert float(r['top5_err']) == pytest.approx(e.top5_err, abs=1e-6)


def _run(argv, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'train_imagenet.py')] + argv,
                          cwd=str(cwd), capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def _one_error_line(res, *words):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_inputs(tiny, tmp_path):
    base = _argv(tiny, tmp_path)
    missing = list(base)
    missing[missing.index('--rec-train') + 1] = str(tmp_path / 'none.rec')
    _one_error_line(_run(missing, tmp_path), 'none.rec')
    noidx = list(base)
    noidx[noidx.index('--rec-val-idx') + 1] = str(tmp_path / 'none.idx')
    _one_error_line(_run(noidx, tmp_path), 'none.idx')
    bad = tmp_path / 'bad.rec'
    with open(tiny['train'][0], 'rb') as f:
        bad.write_bytes(f.read()[:-50])
    corrupt = list(base)
    corrupt[corrupt.index('--rec-train') + 1] = str(bad)
    _one_error_line(_run(corrupt, tmp_path), 'bad.rec')
    _one_error_line(_run(base + ['--dtype', 'float16'], tmp_path), 'float16', 'GPU')
    # a checkpoint of another architecture
    other = mx.gluon.nn.Dense(3, in_units=2)
    other.initialize()
    other.save_parameters(str(tmp_path / 'other.params'))
    _one_error_line(_run(base + ['--eval', '--resume-params', str(tmp_path / 'other.params')],
                         tmp_path), 'other.params')
    _one_error_line(_run(base + ['--askc-type', 'Nope'], tmp_path), 'Nope')


# ------------------------------------------------------------------ distributed (issue: 2 workers)
def _close(a, b):
    """Largest |a - b| over every tensor, relative to the largest |b| of the whole model (the
    exactness convention for training-mode BatchNorm: 1e-4 of max |output|)."""
    scale = max(float(np.abs(b[k]).max()) for k in b.files)
    return max(float(np.abs(a[k] - b[k]).max()) for k in b.files) / scale


@pytest.mark.slow
def test_dist_sync_two_workers_equal_one_process_on_two_contexts(tmp_path):
    """train_imagenet.py itself, through utils.launch with --kv-store dist_sync: 2 workers
    (1 server) end with the parameters of one process training the same per-device batches on
    2 CPU contexts -- trainable weights (identical on both workers) and each device's own
    BatchNorm statistics; only worker 0 writes checkpoints and the log, without .states (the
    servers hold the optimizer)."""
    worker = os.path.join(ROOT, 'tests', 'imagenet_dist_worker.py')
    flags = ['--model', 'cifar_aff_resnet20_b1', '--classes', '10', '--batch-size', '4',
             '--num-epochs', '2', '--lr', '0.1', '--wd', '1e-4', '--no-wd', '--label-smoothing',
             '--warmup-epochs', '1', '--dtype', 'float32', '--log-interval', '2',
             '--save-frequency', '0']
    one, dist = tmp_path / 'one', tmp_path / 'dist'
    one.mkdir(), dist.mkdir()
    ref = subprocess.Popen([sys.executable, worker, str(one)] + flags + [
        '--num-cpu-contexts', '2', '--save-dir', str(one), '--logging-file', str(one / 'log')],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = str(tmp_path / 'pids')
    try:
        run = subprocess.run(
            [sys.executable, '-m', 'utils.launch', '-n', '2', '-s', '1', '--timeout', '120',
             '--pid-file', pid_file, '--', sys.executable, worker, str(dist)] + flags + [
                '--kv-store', 'dist_sync', '--save-dir', str(dist),
                '--logging-file', str(dist / 'log')],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
        ref_out = ref.communicate(timeout=120)[0]
    finally:
        if ref.poll() is None:
            ref.kill()
            ref.communicate()
        kill_leftovers(pid_file)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert ref.returncode == 0, ref_out[-3000:]
    assert_all_gone(pid_file, ['scheduler', 'server', 'worker', 'worker'])

    d0, d1 = (np.load(str(dist / ('device%d.npz' % g))) for g in (0, 1))
    r0, r1 = (np.load(str(one / ('device%d.npz' % g))) for g in (0, 1))
    trainable = [k for k in r0.files if 'running_' not in k]
    assert len(trainable) > 50
    # the training moved the weights, and the two devices' BatchNorm statistics differ: the
    # comparisons below could fail
    assert _close(r0, r1) > 1e-3
    # the workers agree exactly: both pulled the servers' weights
    for k in trainable:
        np.testing.assert_array_equal(d0[k], d1[k], err_msg=k)
    # ... and each equals its device of the one-process run (measured: bit-identical; the
    # servers run NAG with --no-wd's multipliers and the warmup + cosine schedule)
    assert _close(d0, r0) <= 1e-5 and _close(d1, r1) <= 1e-5

    # only worker 0 logs and checkpoints (validation errors may differ from the one-process
    # run: there each context evaluates its half with its own BatchNorm statistics)
    log_dist = parse_log(str(dist / 'log'))[-1]
    assert [e.epoch for e in log_dist.epochs] == [0, 1]
    assert 'parameter server dist_sync: worker 0 of 2' in (dist / 'log').read_text()
    def periodic(d):   # "-best" files depend on the validation error beating 1.0 on 8 images
        return sorted(os.path.basename(f) for f in glob.glob(str(d / '*.params')) if '-best' not in f)
    # the official periodic file after the last epoch, and our -last set (every epoch)
    assert periodic(dist) == periodic(one) == ['imagenet-ImageNet-cifar_aff_resnet20_b1-1.params',
                                               'imagenet-ImageNet-cifar_aff_resnet20_b1-last.params']
    best, improved = 1.0, 0
    for e in log_dist.epochs:
        improved += e.top1_err < best
        best = min(best, e.top1_err)
    assert len(glob.glob(str(dist / '*-best.params'))) == improved
    assert not glob.glob(str(dist / '*.states'))                  # the states are the servers'
    assert 'no .states files are written' in (dist / 'log').read_text()
    # the logged learning rates are the schedule's, as in the one-process run
    lrs = _batch_lrs(str(dist / 'log'), 0) + _batch_lrs(str(dist / 'log'), 1)
    assert len(lrs) == 6 and lrs == _batch_lrs(str(one / 'log'), 0) + _batch_lrs(str(one / 'log'), 1)
    assert len(set(lrs)) == 6                   # warmup then cosine: it is not stuck
    assert run.stdout.count('validation: err-top1=') == 2        # worker 0's two epochs only


def test_released_recipe_runs_on_the_cpu_in_float32(tiny, tmp_path):
    """The recipe's float16 (not the user's flag) becomes float32 on the CPU, with a log line;
    the same value given as a flag is an error (test_bad_inputs)."""
    argv = _argv(tiny, tmp_path, '--recipe', 'released', model='cifar_aff_resnet20_b1')
    assert train_imagenet.main(argv) == 0
    text = (tmp_path / 'train.log').read_text()
    seg = parse_log(str(tmp_path / 'train.log'))[-1]
    assert seg.config['recipe'] == 'released' and seg.config['dtype'] == 'float16'
    assert '--dtype float16 is replaced by float32' in text    # the HEAD default = the recipe's
    assert len(seg.epochs) == 1
