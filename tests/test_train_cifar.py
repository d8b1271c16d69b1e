"""train_cifar.py end to end on CIFAR files written by the test in the exact real format."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import train_cifar
from conftest import ROOT
from utils import data as D
from utils import train as T
from utils.history import read_csv
from utils.logs import parse_log

N_TRAIN, N_TEST = 256, 64


@pytest.fixture(scope='module')
def cifar_dir(tmp_path_factory):
    """A few hundred random CIFAR-10 and CIFAR-100 images in the real binary formats."""
    root = tmp_path_factory.mktemp('cifar')
    rng = np.random.RandomState(0)
    for train, n in ((True, N_TRAIN), (False, N_TEST)):
        images = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = rng.randint(0, 100, size=n)
        D.write_cifar(str(root), 'cifar100', train, images, fine, coarse_labels=fine // 5)
        D.write_cifar(str(root), 'cifar10', train, images, fine % 10)
    return str(root)


def _argv(cifar_dir, out, *extra, dataset='cifar100'):
    return ['--dataset', dataset, '--data-dir', cifar_dir, '--skip-checksum', '--gpus', '',
            '-j', '0', '--model', 'resnet', '--blocks', '1', '--channel-times', '1',
            '--batch-size', '32', '--num-epochs', '2', '--warmup-epochs', '0',
            '--logging-dir', str(out / 'logs'), '--save-dir', str(out / 'params'),
            '--save-plot-dir', str(out)] + list(extra)


def _log(out):
    logs = glob.glob(str(out / 'logs' / '*.log'))
    assert len(logs) == 1
    return logs[0]


@pytest.mark.parametrize('askc', ['DirectAdd', 'ASKCFuse', 'ResGlobLocaforGlobLocaCha'])
def test_end_to_end_official_flags(cifar_dir, tmp_path, askc):
    argv = _argv(cifar_dir, tmp_path, '--askc-type', askc, '--mixup', '--label-smoothing',
                 '--auto_aug', '--cosine', '--no-wd', '--warmup-epochs', '1',
                 '--mixup-off-epoch', '1')
    assert train_cifar.main(argv) == 0
    name = 'cifar100-%s-resnet-8-c-1-s-1' % askc
    log = _log(tmp_path)
    assert os.path.basename(log) == 'train_%s.log' % name
    with open(log) as f:
        first = f.readline()
    assert first.startswith('INFO:root:Namespace(') and "askc_type='%s'" % askc in first
    segs = parse_log(log)
    assert len(segs) == 1 and segs[0].config['askc_type'] == askc
    epochs = segs[0].epochs
    assert [e.epoch for e in epochs] == [0, 1]
    assert all(0 <= e.val <= 1 and np.isfinite(e.loss) for e in epochs)
    rows = read_csv(str(tmp_path / 'logs' / ('train_%s.csv' % name)))
    assert [r['epoch'] for r in rows] == [0, 1] and rows[0]['train_metric_name'] == 'rmse'
    best = glob.glob(str(tmp_path / 'params' / ('*-%s-best.params' % name)))
    # official rule: a new best file whenever val beats the best so far (which starts at 0)
    improvements, top = [], 0.0
    for e in epochs:
        if e.val > top:
            top = e.val
            improvements.append('%.4f-%s-best.params' % (e.val, name))
    assert sorted(os.path.basename(b) for b in best) == sorted(improvements)
    for ext in ('params', 'states', 'json'):
        assert os.path.isfile(str(tmp_path / 'params' / ('%s-last.%s' % (name, ext))))
    assert os.path.getsize(str(tmp_path / ('%s_history.png' % name))) > 1000
    assert not glob.glob(str(tmp_path / 'params' / '.*.tmp'))


def _official_step_rates(lr, num_epochs, decay_epochs, warmup_epochs, factor=0.1):
    """The per-epoch rates of the official HEAD CIFAR step mode, simulated as its loop runs
    (docs/official-code.md §4.2: decay epochs shifted by -warmup; at the start of an epoch equal to
    the next decay epoch, lr *= factor; the epoch line prints trainer.learning_rate)."""
    decays = [e - warmup_epochs for e in decay_epochs]
    rates, count = [], 0
    for epoch in range(num_epochs):
        if count < len(decays) and epoch == decays[count]:
            lr *= factor
            count += 1
        rates.append(lr)
    return rates


@pytest.mark.parametrize('decays,warmup', [('3,4', 0), ('3,4', 1), ('0,2', 0), ('1,3', 2)])
def test_step_schedule_is_the_official_per_epoch_one(decays, warmup):
    """Our per-update schedule and the official per-epoch loop, side by side: every update of an
    epoch runs at the rate the official log prints for that epoch."""
    iters = 7
    sched = T.EpochStepLR(0.1, 5, iters, [int(e) - warmup for e in decays.split(',')], 0.1)
    official = _official_step_rates(0.1, 5, [int(e) for e in decays.split(',')], warmup)
    for update in range(1, 5 * iters + 1):
        assert sched(update) == pytest.approx(official[(update - 1) // iters])
    if (decays, warmup) == ('3,4', 0):   # the measured official log
        assert official == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.001])


def test_lr_trace_in_the_log_is_the_schedule(cifar_dir, tmp_path):
    """Released-recipe semantics: step decay at --lr-decay-epoch minus the warmup, no warmup;
    the logged per-epoch rates are the official script's."""
    argv = _argv(cifar_dir, tmp_path, '--askc-type', 'ASKCFuse', '--num-epochs', '4',
                 '--lr-decay-epoch', '3,4', '--warmup-epochs', '1')
    assert train_cifar.main(argv) == 0
    rows = read_csv(glob.glob(str(tmp_path / 'logs' / '*.csv'))[0])
    assert [r['lr'] for r in rows] == pytest.approx(_official_step_rates(0.2, 4, [3, 4], 1))
    with open(_log(tmp_path)) as f:
        assert 'shifted by --warmup-epochs 1 without any warmup' in f.read()


def test_fine_and_coarse_labels(cifar_dir, tmp_path):
    import mxnet as mx
    fine = D.read_cifar(cifar_dir, 'cifar100', True, 'fine', verify=False)[1]
    coarse = D.read_cifar(cifar_dir, 'cifar100', True, 'coarse', verify=False)[1]
    assert fine.max() >= 20 and coarse.max() < 20 and (coarse == fine // 5).all()
    out = tmp_path / 'coarse'
    assert train_cifar.main(_argv(cifar_dir, out, '--askc-type', 'ASKCFuse', '--label-mode',
                                  'coarse', '--num-epochs', '1')) == 0
    head = mx.nd.load(glob.glob(str(out / 'params' / '*-last.params'))[0])['output.weight']
    assert head.shape == (20, 64)
    out = tmp_path / 'official_head'
    assert train_cifar.main(_argv(cifar_dir, out, '--askc-type', 'ASKCFuse', '--label-mode',
                                  'coarse', '--classes', '100', '--num-epochs', '1')) == 0
    head = mx.nd.load(glob.glob(str(out / 'params' / '*-last.params'))[0])['output.weight']
    assert head.shape == (100, 64)
    with open(_log(out)) as f:
        text = f.read()
    assert 'WARNING: the classifier has 100 outputs but the labels take only 20 values' in text


def test_resume_continues_the_same_schedule(cifar_dir, tmp_path, monkeypatch):
    extra = ('--askc-type', 'ResGlobLocaforGlobLocaCha', '--num-epochs', '4', '--cosine',
             '--warmup-epochs', '1', '--save-period', '0')
    full = tmp_path / 'full'
    assert train_cifar.main(_argv(cifar_dir, full, *extra)) == 0

    cut = tmp_path / 'cut'
    from utils.checkpoint import CheckpointSet
    real_save = CheckpointSet.save

    def save_then_die(self, tag, model, trainer, meta):
        stem = real_save(self, tag, model, trainer, meta)
        if meta['epoch'] == 1:
            raise KeyboardInterrupt
        return stem

    monkeypatch.setattr(CheckpointSet, 'save', save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_cifar.main(_argv(cifar_dir, cut, *extra))
    monkeypatch.setattr(CheckpointSet, 'save', real_save)
    last = glob.glob(str(cut / 'params' / '*-last.params'))[0]
    assert train_cifar.main(_argv(cifar_dir, cut, *extra, '--resume-from', last)) == 0

    rows_full = read_csv(glob.glob(str(full / 'logs' / '*.csv'))[0])
    rows_cut = read_csv(glob.glob(str(cut / 'logs' / '*.csv'))[0])
    assert [r['epoch'] for r in rows_cut] == [0, 1, 2, 3]
    assert [r['lr'] for r in rows_cut] == [r['lr'] for r in rows_full]
    segs = parse_log(_log(cut))
    assert [[e.epoch for e in s.epochs] for s in segs] == [[0, 1], [2, 3]]
    with open(_log(cut)) as f:
        assert 'resumed' in f.read()


def test_weights_only_resume_restarts_the_schedule(cifar_dir, tmp_path):
    first = tmp_path / 'a'
    assert train_cifar.main(_argv(cifar_dir, first, '--askc-type', 'ASKCFuse',
                                  '--num-epochs', '1')) == 0
    best = glob.glob(str(first / 'params' / '*-best.params'))[0]
    second = tmp_path / 'b'
    assert train_cifar.main(_argv(cifar_dir, second, '--askc-type', 'ASKCFuse',
                                  '--num-epochs', '1', '--resume-from', best)) == 0
    seg = parse_log(_log(second))[-1]
    assert [e.epoch for e in seg.epochs] == [0]


def test_two_cpu_contexts(cifar_dir, tmp_path):
    assert train_cifar.main(_argv(cifar_dir, tmp_path, '--askc-type', 'ASKCFuse',
                                  '--num-cpu-contexts', '2', '--num-epochs', '1', '--mixup')) == 0
    with open(_log(tmp_path)) as f:
        text = f.read()
    assert '2 context(s)' in text and '%d iterations per epoch of 64 images' % (N_TRAIN // 64) in text


def test_registry_model_name(cifar_dir, tmp_path):
    argv = _argv(cifar_dir, tmp_path, '--num-epochs', '1', '--batch-size', '64',
                 '--dataset', 'cifar10')
    argv[argv.index('--model') + 1] = 'cifar_iaff_resnet20_b1'
    assert train_cifar.main(argv) == 0
    assert parse_log(_log(tmp_path))[0].epochs[0].epoch == 0
    assert os.path.basename(_log(tmp_path)) == 'train_cifar10-cifar_iaff_resnet20_b1.log'


@pytest.mark.parametrize('model,total', [('resnext29_32x4d', 5982532),    # docs/official-code.md §2.7
                                         ('resnext38_32x4d', 7832996)])
def test_paper_model_names_build_the_806562e_hosts(model, total):
    from utils.recipes import CIFAR_RECIPES, resolve
    args, _ = resolve(train_cifar.build_parser(), ['--model', model], CIFAR_RECIPES,
                      lambda a: 'official')
    built = train_cifar.build_net(args, 100)
    from utils.engine import count_params
    assert count_params(built)[1] == total
    assert 'features.3.0.downsample.0.weight' in built._collect_params_with_prefix()


def test_official_head_command_line_parses(cifar_dir):
    """The flags of a HEAD cmd_scripts line keep their names and meanings."""
    line = ('--mixup --auto_aug --label-smoothing --cosine --no-wd --gpus 0,1,2,3 --model resnet '
            '--askc-type ASKCFuse --blocks 5 --channel-times 4 --start-layer 1 --batch-size 128 '
            '--num-epochs 640 --lr 0.2 --lr-decay-epoch 300,450 --warmup-epochs 20 -j 96 '
            '--mode hybrid --dataset cifar100').split()
    from utils.recipes import CIFAR_RECIPES, resolve
    args, _ = resolve(train_cifar.build_parser(), line, CIFAR_RECIPES, lambda a: 'official')
    assert (args.mixup, args.auto_aug, args.label_smoothing, args.cosine, args.no_wd) == (True,) * 5
    assert (args.num_workers, args.warmup_epochs, args.blocks) == (96, 20, 5)
    assert train_cifar.model_name(args) == 'cifar100-ASKCFuse-resnet-32-c-4-s-1'


def _run(argv, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'train_cifar.py')] + argv,
                          cwd=str(cwd), capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def _one_error_line(res, *words):
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith('error: ') and 'Traceback' not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_inputs_end_in_one_clear_line(cifar_dir, tmp_path):
    base = ['--gpus', '', '-j', '0', '--model', 'resnet', '--askc-type', 'ASKCFuse',
            '--logging-dir', str(tmp_path / 'logs'), '--save-dir', str(tmp_path / 'params')]
    # missing data files: says what to download and where
    _one_error_line(_run(base + ['--data-dir', str(tmp_path / 'nothing')], tmp_path),
                    'cifar-100-binary.tar.gz', 'train.bin')
    # real-looking files whose checksum differs (no --skip-checksum)
    _one_error_line(_run(base + ['--data-dir', cifar_dir], tmp_path), 'checksum', '--skip-checksum')
    # a truncated file
    bad = tmp_path / 'truncated'
    bad.mkdir()
    for f in ('train.bin', 'test.bin'):
        with open(os.path.join(cifar_dir, f), 'rb') as src, open(str(bad / f), 'wb') as dst:
            dst.write(src.read()[:-100])
    _one_error_line(_run(base + ['--data-dir', str(bad), '--skip-checksum'], tmp_path), 'train.bin')
    # unknown fusion
    res = _run(['--askc-type', 'NoSuchFuse', '--data-dir', cifar_dir, '--skip-checksum',
                '--gpus', ''], tmp_path)
    _one_error_line(res, 'NoSuchFuse', 'ASKCFuse')
    # inconsistent flags
    _one_error_line(_run(base + ['--dataset', 'cifar10', '--label-mode', 'coarse',
                                 '--data-dir', cifar_dir], tmp_path), 'coarse')
    # a flag value that is not a number of the right kind: one line naming the flag
    _one_error_line(_run(base + ['--lr', 'nan', '--data-dir', cifar_dir], tmp_path), '--lr',
                    'finite')
    assert not os.path.exists(str(tmp_path / 'params'))


@pytest.mark.slow
def test_digits_quick_start(tmp_path):
    """The README's main command: AFF network on the bundled digits, >= 95% test accuracy."""
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}  # as a user runs it
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train_cifar.py'), '--dataset', 'digits'],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    log = glob.glob(str(tmp_path / 'logs' / '*.log'))[0]
    seg = parse_log(log)[-1]
    assert len(seg.epochs) == 15
    # outputs go to logs/ and params/, never into the folder the command runs from
    assert sorted(os.listdir(str(tmp_path))) == ['logs', 'params']
    assert glob.glob(str(tmp_path / 'logs' / '*_history.png'))
    assert max(e.val for e in seg.epochs) >= 0.95
    assert seg.epochs[-1].val >= 0.95


def test_summary_needs_no_data(tmp_path, capsys):
    """--summary prints the counts of the released AFF-ResNet-32 (from its manifest) without
    reading CIFAR."""
    from conftest import load_manifest
    manifest = load_manifest('cifar100_aff_resnet32')
    size = lambda shape: int(np.prod(shape))  # noqa: E731
    # not trained: BatchNorm running statistics, and the input BN's gamma/beta (features.0: fixed,
    # as in the official code)
    stats = sum(size(s) for n, s in manifest['params']
                if n.endswith(('running_mean', 'running_var')) or n.startswith('features.0.'))
    assert train_cifar.main(['--summary', '--model', 'resnet', '--askc-type', 'ASKCFuse',
                             '--blocks', '5', '--data-dir', str(tmp_path / 'nothing')]) == 0
    out = capsys.readouterr().out
    assert 'cifar100-ASKCFuse-resnet-32-c-4-s-1: %d tensors, %d parameters, %d trainable' % (
        len(manifest['params']), manifest['param_count'], manifest['param_count'] - stats) in out
