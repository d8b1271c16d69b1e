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
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('[Eval]')][0]
        assert '(10 validation images, each counted once)' in line


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
