"""A run killed at any write point of an epoch's saves resumes to the uninterrupted schedule.

For each training script, a 3-epoch run is traced (every write point of utils.checkpoint:
fault_point), then for *every* point of epoch 1's end (CSV row, best file, the ``-last`` set's
pending parts, its commit record, the renames, the plot) a run is ended there with ``os._exit``
and resumed from its ``-last`` set.  The resumed run must end with the uninterrupted run's
update count and log the same per-epoch learning rates, one CSV row per epoch, no leftovers.
The runs are forked from this process (MXNet is fork-safe: it stops its engine around fork), so
that each costs only its training.
"""
import glob
import json
import os
import traceback

import numpy as np
import pytest

import train_cifar
import train_imagenet
import train_seg
from utils import checkpoint as C
from utils import data as D
from utils.data import imagenet as I
from utils.history import read_csv

pytestmark = pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')


def forked(main, argv, **env):
    """Exit status of ``main(argv)`` run in a forked child with ``env`` set."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.environ.update(env)
            C._FAULTS['count'] = 0
            code = main(argv) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('crash-data')
    rng = np.random.RandomState(0)
    for train, n in ((True, 64), (False, 32)):
        images = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        D.write_cifar(str(root / 'cifar'), 'cifar10', train, images, rng.randint(0, 10, size=n))
    rec = {}
    for split, n in (('train', 16), ('val', 8)):
        images = [rng.randint(0, 256, size=(40, 36, 3), dtype=np.uint8) for _ in range(n)]
        rec[split] = I.write_tiny_rec(str(root / ('rec/%s' % split)), images,
                                      rng.randint(0, 4, size=n))
    return dict(cifar=str(root / 'cifar'), rec=rec)


def cifar_case(data, out):
    argv = ['--dataset', 'cifar10', '--data-dir', data['cifar'], '--skip-checksum', '--gpus', '',
            '-j', '0', '--model', 'resnet', '--askc-type', 'ASKCFuse', '--blocks', '1',
            '--channel-times', '1', '--batch-size', '32', '--num-epochs', '3',
            '--warmup-epochs', '1', '--cosine', '--logging-dir', str(out / 'logs'),
            '--save-dir', str(out / 'params'), '--save-plot-dir', str(out / 'logs')]
    name = 'cifar10-ASKCFuse-resnet-8-c-1-s-1'
    last = str(out / 'params' / ('%s-last.params' % name))
    return dict(main=train_cifar.main, argv=argv, resume=['--resume-from', last],
                csv=str(out / 'logs' / ('train_%s.csv' % name)), record=last[:-7] + '.json')


def seg_case(data, out):
    model = 'stopsign_add_fpn_resnet20_b1'
    argv = ['--dataset', 'synthetic-stopsign', '--model', model, '--base-size', '32',
            '--crop-size', '32', '--synthetic-train', '16', '--synthetic-val', '8',
            '--batch-size', '8', '--vis-samples', '1', '--epochs', '3', '-j', '0',
            '--logging-dir', str(out / 'logs'), '--save-dir', str(out / 'params')]
    stem = str(out / 'params' / ('synthetic-stopsign-%s-last' % model))
    return dict(main=train_seg.main, argv=argv, resume=['--resume', stem + '.params'],
                csv=str(out / 'logs' / ('train_synthetic-stopsign-%s.csv' % model)),
                record=stem + '.json')


def imagenet_case(data, out):
    (rt, rti), (rv, rvi) = data['rec']['train'], data['rec']['val']
    argv = ['--use-rec', '--rec-train', rt, '--rec-train-idx', rti, '--rec-val', rv,
            '--rec-val-idx', rvi, '--model', 'cifar_aff_resnet20_b1', '--classes', '4',
            '--input-size', '32', '--batch-size', '4', '--num-epochs', '3', '--lr-mode', 'step',
            '--lr-decay-epoch', '1,2', '--warmup-epochs', '0', '-j', '0', '--log-interval', '0',
            '--save-frequency', '0', '--logging-file', str(out / 'train.log'),
            '--save-dir', str(out / 'params')]
    stem = str(out / 'params' / 'imagenet-ImageNet-cifar_aff_resnet20_b1-last')
    return dict(main=train_imagenet.main, argv=argv,
                resume=['--resume-params', stem + '.params', '--resume-states', stem + '.states'],
                csv=str(out / 'train.csv'), record=stem + '.json')


def arm_full_disk(monkeypatch, tmp_path, main, argv, point, occurrence=1):
    """Trace ``main(argv)`` in this process, then make the ``occurrence``-th (0-based: 1 = epoch 1)
    arrival at write point ``point`` of the next run raise ``OSError(ENOSPC)``."""
    trace = tmp_path / 'trace'
    monkeypatch.setenv('AFF_FAULT_TRACE', str(trace))
    C._FAULTS['count'] = 0
    assert main(argv) == 0
    hits = [int(n) for n, name in (ln.split(' ', 1) for ln in trace.read_text().splitlines())
            if name == point]
    monkeypatch.delenv('AFF_FAULT_TRACE')
    monkeypatch.setenv('AFF_FAULT_AT', str(hits[occurrence]))
    monkeypatch.setenv('AFF_FAULT_KIND', 'enospc')
    C._FAULTS['count'] = 0


def _record(path):
    with open(path) as f:
        return json.load(f)


def _points(trace):
    """The write points (numbers, names) of epoch 1's end in a trace."""
    with open(trace) as f:
        lines = [ln.split(' ', 1) for ln in f.read().splitlines()]
    marks = [int(k) for k, name in lines if name.startswith('epoch ')]
    begin, end = marks[1], marks[2]
    return [(int(k), name) for k, name in lines if begin <= int(k) < end]


@pytest.mark.slow
@pytest.mark.parametrize('case', [cifar_case, seg_case, imagenet_case])
def test_a_kill_at_every_write_point_resumes_the_same_schedule(data, tmp_path, case):
    full = case(data, tmp_path / 'full')
    trace = str(tmp_path / 'trace')
    assert forked(full['main'], full['argv'], AFF_FAULT_TRACE=trace) == 0
    want_rows = read_csv(full['csv'])
    want_update = _record(full['record'])['num_update']
    assert [r['epoch'] for r in want_rows] == [0, 1, 2]
    points = _points(trace)
    names = ' | '.join(name for _, name in points)
    for part in ('appended', '.params.pending', '.states.pending', 'last.json', 'renamed'):
        assert part in names, names   # the trace covers every kind of write of a save
    for k, name in points:
        run = case(data, tmp_path / ('kill%d' % k))
        assert forked(run['main'], run['argv'], AFF_FAULT_AT=str(k)) == 86, name
        assert forked(run['main'], run['argv'] + run['resume']) == 0, name
        rows = read_csv(run['csv'])
        assert [r['epoch'] for r in rows] == [0, 1, 2], name
        assert [r['lr'] for r in rows] == pytest.approx([r['lr'] for r in want_rows]), name
        assert _record(run['record'])['num_update'] == want_update, name
        left = glob.glob(os.path.join(os.path.dirname(run['record']), '*.pending')) + \
            glob.glob(os.path.join(os.path.dirname(run['record']), '.*.tmp'))
        assert not left, (name, left)
