"""utils.compare: runs of ours vs the paper cells vs the official logs; its markdown and PNGs.

The official-log numbers are transcribed from docs/official-code.md §5 (best value, 4 decimals as
printed there, and its epoch; open-aff's ``r = 4`` directories are stored as ``r_4``).  The copies
in utils/official_logs are enough; when $AFF_OFFICIAL_LOGS names the full set, every log of
``OFFICIAL_LOGS`` is checked there as well.
"""
import gzip
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from net.errors import AFFError
from net.model_store import RELEASED
from utils import compare as C
from utils import paper_tables as PT
from utils import paths
from utils.history import EpochCSV
from utils.logs import EpochLogger
from utils.reproduce import run_dir

COPIED = paths.OFFICIAL_LOGS
# the full set of official logs, only where given explicitly (no path outside the repository
# is assumed): a folder laid out as utils/official_logs (head/, paper/)
SHARED = os.environ.get('AFF_OFFICIAL_LOGS', '')
needs_shared = pytest.mark.skipif(not SHARED or not os.path.isdir(SHARED),
                                  reason='set AFF_OFFICIAL_LOGS to the folder of all 26 official '
                                         'logs (head/, paper/) to check every one')

R32_FINE = 'head/cifar100/AFF-ResNet-32/train_cifar100-ASKCFuse-resnet-32-c-4-s-1.log'
X47_ROOT = 'head/cifar100/AFF-ResNeXt-47-32x4d/train_cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1.log'
IAFF_X50_HEAD = 'head/imagenet/iAFF-ResNeXt-50/iaff_resnext50.log'
AFF_R50_806 = 'paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_AFF_mixup.log'

# docs/official-code.md §5: log -> (best value, best epoch) of the segment the comparison uses.
SPEC5_BEST = {
    R32_FINE: (0.8357, 635),
    'head/cifar100/AFF-ResNet-32/superclasses/train_cifar100_cifar100-ASKCFuse-resnet-32-c-4-s-1.log':
        (0.9078, 617),
    'head/cifar100/AFF-ResNet-32/superclasses/From_Scratch_Log_train_cifar100_cifar100-ASKCFuse-'
    'resnet-32-c-4-s-1.log': (0.9031, 521),
    'head/cifar100/AFF-ResNeXt-38-32x4d/From_Scratch_Log_train_cifar100_cifar100-ASKCFuse-resneXt-'
    '38-c-4-s-1.log': (0.9065, 625),
    'head/cifar100/AFF-ResNeXt-38-32x4d/train_cifar100-ASKCFuse-resneXt-38-c-4-s-1.log': (0.9123, 621),
    'head/cifar100/AFF-ResNeXt-47-32x4d/superclass/From_Scratch_Log_train_cifar100-ASKCFuse-resneXt-'
    '47-c-4-s-1.log': (0.9091, 634),
    'head/cifar100/AFF-ResNeXt-47-32x4d/superclass/train_cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1.log':
        (0.9184, 607),
    X47_ROOT: (0.8538, 605),  # segment 5, the fine-label run
    'head/imagenet/AFF-ResNet-50/aff_resnet50.log': (0.2028, 235),
    'head/imagenet/iAFF-ResNet-50/iaff_resnet50.log': (0.2022, 238),
    'head/imagenet/AFF-ResNeXt-50/aff_resnext50.log': (0.2028, 231),
    IAFF_X50_HEAD: (0.1978, 238),
    'paper/imagenet/ablation/resnet50_v1b_GlobGlob_div16.log': (0.2232, 158),
    'paper/imagenet/ablation/resnet50_v1b_LocaLoca_div16.1.log': (0.2200, 158),
    'paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_div16_resume.log': (0.2162, 155),
    AFF_R50_806: (0.2090, 157),
    'paper/imagenet/sota/iAFF-ResNet-50/resnet50_v1b_best_iAFF.log': (0.2043, 178),
    'paper/imagenet/sota/AFF-ResNeXt-50-32x4d/resnext50_32x4d_aff_best.log': (0.2086, 152),
    'paper/imagenet/sota/iAFF-ResNeXt-50-32x4d/resnext50_32x4d_iaff_best.log': (0.2025, 159),
    'paper/cifar100/sota/resnet-32-aff-host/r_4/train_cifar100_resnet_v2_askc_blocks_5_channel_times_4_'
    'start_layer_1_mixup.log': (0.8967, 381),
    'paper/cifar100/sota/resnext29_32x4d_aff-host/r_4/train_cifar100_resnext29_32x4d_askc_mixup.log':
        (0.8973, 638),
    'paper/cifar100/sota/resnext38_32x4d_iaff-host/train_cifar100_resnext38_32x4d_iaff_mixup.log':
        (0.8953, 639),
    'paper/cifar10/resnet-32-askc-host/r_4/train_cifar10_resnet_v2_askc_blocks_5_channel_times_4_'
    'start_layer_1_mixup.log': (0.9626, 387),  # segment 1
    'paper/cifar10/resnext29_32x4d_askc/train_cifar10_resnext29_32x4d_askc_mixup.log': (0.9705, 592),
}
NO_EPOCH_LOGS = {
    'paper/cifar100/sota/resnet-32-aff-host/r_4/cifar100_laplace.cs.arizona.edu_GPU_0_best_Acc.log',
    'paper/cifar100/sota/resnext38_32x4d_aff-host/train_cifar100_resnext38_32x4d_askc_mixup.log',
}

T4_IAFF_B2 = ('4', 'iAFF (ours)', 'ResNet b=2')
S1_IAFF_B2 = ('S1', 'Iterative AFF', 'ResNet b=2')
CSV_FIELDS = ['epoch', 'train', 'train_metric_name', 'val', 'loss', 'lr', 'time']


def _cell(key):
    (cell,) = [c for c in PT.CELLS if c.key == key]
    return cell


def _table_rows(text, section):
    """The rows (lists of cells) of the markdown table under ``## <section>``."""
    lines = text.split('\n')
    start = next(i for i, l in enumerate(lines) if l.startswith('## ' + section))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith('## '):
            break
        if line.startswith('| ') and not line.startswith('|---'):
            rows.append([x.strip() for x in line.strip().strip('|').split(' | ')])
    return rows[1:]  # without the header


def _run_main(argv, capsys):
    assert C.main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def write_cifar_run(logdir, vals, label_mode, recipe, num_epochs, model='cifar_iaff_resnet20_b2',
                    seed=0, **extra):
    """A run of ours as train_cifar.py writes it: train_<model_name>.log + .csv in logdir."""
    config = dict(model=model, dataset='cifar100', label_mode=label_mode, classes=100,
                  recipe=recipe, seed=seed, askc_type='ASKCFuse', blocks=5, channel_times=4,
                  start_layer=1, era='paper', mixup=recipe == 'released', num_epochs=num_epochs,
                  lr=0.2, batch_size=128, logging_dir=str(logdir))
    config.update(extra)
    name = 'cifar100-%s' % model if model not in ('resnet', 'resnext') else \
        'cifar100-ASKCFuse-resnet-32-c-4-s-1'
    log_path = os.path.join(str(logdir), 'train_%s.log' % name)
    with EpochLogger(log_path, config, stream=None) as log, \
            EpochCSV(os.path.join(str(logdir), 'train_%s.csv' % name), CSV_FIELDS) as csv:
        for epoch, val in enumerate(vals):
            row = dict(train=0.1 * epoch, val=val, loss=4.0 - epoch, lr=0.2, time=12.5)
            log.epoch(epoch, **row)
            csv.append(epoch=epoch, train_metric_name='accuracy', **row)
    return log_path


# ----------------------------------------------------------------------------------- the table
def test_official_logs_table_is_consistent():
    keys = {c.key for c in PT.CELLS}
    assert set(C.OFFICIAL_LOGS) == set(SPEC5_BEST)
    for rel, entry in C.OFFICIAL_LOGS.items():
        assert entry.path == rel
        assert (entry.best, entry.epoch) == SPEC5_BEST[rel], rel
        assert set(entry.cells) <= keys, rel
        for key in entry.cells:
            assert _cell(key).model == entry.model, (rel, key)
        import net
        assert entry.model in net.get_model_list(), rel
    # the released checkpoints come from the logs net.model_store names, with their numbers
    for c in RELEASED:
        entry = C.OFFICIAL_LOGS['head/' + c.log]
        assert (entry.best, entry.epoch, entry.model) == (c.value, c.epoch, c.model)
        assert any(k[:2] == ('released', '%s [%s]' % (c.model, c.tag)) for k in entry.cells)
    # Table 5 truncates 100 x the 806562e best error; Table 3's ImageNet column is 1 - error, rounded
    for entry in C.OFFICIAL_LOGS.values():
        for key in entry.cells:
            cell = _cell(key)
            if cell.table == '5':
                assert math.floor(round(entry.best * 1000, 6)) / 10 == cell.value, key
            elif cell.table == '3':
                assert round(1 - entry.best, 3) == cell.value, key
    # every cell that an official log produced has one
    covered = {k for e in C.OFFICIAL_LOGS.values() for k in e.cells}
    want = {c.key for c in PT.CELLS if c.metric in ('accuracy', 'top1_err') and c.model
            and (c.table in ('released', 'HEAD-README', '5') or c.column == 'ImageNet')}
    assert covered == want


def test_copied_official_logs_parse_to_spec():
    present = [rel for rel in C.OFFICIAL_LOGS if C.find_official(COPIED, rel)]
    assert {R32_FINE, X47_ROOT, IAFF_X50_HEAD, AFF_R50_806} <= set(present)
    for rel in present:
        o = C.load_official(COPIED, rel)
        assert o.found and o.file.endswith('.gz'), rel
        assert (round(o.best, 4), o.epoch) == SPEC5_BEST[rel], rel
    assert C.load_official(COPIED, X47_ROOT).segment == 5
    missing = C.load_official(COPIED, 'paper/imagenet/ablation/resnet50_v1b_GlobGlob_div16.log')
    assert not missing.found and missing.error == 'not found'


def test_official_vs_paper_without_runs(tmp_path, capsys):
    out = _run_main(['--official', COPIED, '--out', tmp_path / 'png',
                     '--markdown', tmp_path / 'r.md'], capsys)
    assert 'Ours vs paper' not in out and '## Runs' not in out
    rows = {r[0]: r for r in _table_rows(out, 'Official logs vs paper')}
    # the HEAD fine-label AFF-ResNet-32 log = the released checkpoint 0.8357 (epoch 635)
    r = rows['Table released / cifar_aff_resnet32 [fine] / CIFAR-100 fine']
    assert r[1:6] == ['cifar_aff_resnet32', R32_FINE, '0.8357 @635', '0.8357', '0.0000']
    r = rows['Table released / cifar_aff_resnext47_32x4d [fine] / CIFAR-100 fine']
    assert r[2:6] == [X47_ROOT + ' (segment 5)', '0.8538 @605', '0.8538', '0.0000']
    # the 806562e AFF-ResNet-50 log vs Table 5 (top-1 error in %: 20.90 vs the printed 20.9)
    r = rows['Table 5 / AFF-ResNet-50 (ours) / top-1 err.']
    assert r[1:6] == ['aff_resnet50_v1b', AFF_R50_806, '20.90 @157', '20.9', '0.00']
    r = rows['Table HEAD-README / iAFF-ResNeXt-50-32x4d / top-1 err.']
    assert r[3:6] == ['19.78 @238', '19.78', '0.00']
    r = rows['Table released / iaff_resnext50_32x4d [head] / ImageNet']
    assert r[3:6] == ['0.1978 @238', '0.1978', '0.0000']
    # logs that are not copied are listed, not invented
    r = rows['Table 3 / Global + Global / ImageNet']
    assert r[3:6] == ['— (not found)', '0.777', '—']
    # the official logs that no table prints
    other = {r[0]: r for r in _table_rows(out, 'Official logs without a paper cell')}
    assert other['paper/cifar100/sota/resnet-32-aff-host/r_4/train_cifar100_resnet_v2_askc_blocks_5_'
                 'channel_times_4_start_layer_1_mixup.log'][4] == 'val 0.8967 @381'
    with open(tmp_path / 'r.md', encoding='utf-8') as f:
        assert f.read() == out
    # Fig. 7 and the Table 4 heatmaps are drawn from the paper alone
    for name in ('fig7_table4_vs_b.png', 'table4_paper.png', 'table4_ours_minus_paper.png'):
        _check_png(tmp_path / 'png' / name)
    assert sorted(os.listdir(tmp_path / 'png')) == ['fig7_table4_vs_b.png', 'table4_ours_minus_paper.png',
                                                     'table4_paper.png']


def _check_png(path):
    assert os.path.isfile(path), path
    with open(path, 'rb') as f:
        data = f.read()
    assert len(data) > 5000 and data[:8] == b'\x89PNG\r\n\x1a\n', path


# ------------------------------------------------------------------------------- runs of ours
def test_two_fake_runs_match_table4_iaff_b2(tmp_path, capsys):
    cell = _cell(T4_IAFF_B2)
    assert (cell.value, cell.model) == (0.807, 'cifar_iaff_resnet20_b2')
    rel = run_dir(cell)
    assert rel == 'table4/resnet/iaff_b2' and run_dir(_cell(S1_IAFF_B2)) == rel
    dir1 = tmp_path / 'a' / 'logs' / rel
    dir2 = tmp_path / 'b' / 'logs' / rel
    vals1, vals2 = [0.5, 0.6125, 0.55], [0.45, 0.5, 0.5375]
    write_cifar_run(dir1, vals1, 'coarse', 'paper', 400)
    write_cifar_run(dir2, vals2, 'fine', 'released', 640)
    out = _run_main([tmp_path / 'a', tmp_path / 'b', '--official', COPIED,
                     '--out', tmp_path / 'png'], capsys)

    runs = _table_rows(out, 'Runs')
    assert [r[0] for r in runs] == ['#1', '#2']
    assert runs[0][2] == runs[1][2] == 'cifar_iaff_resnet20_b2'
    assert runs[0][3:7] == ['cifar100 / coarse / 100 out', 'paper', '0', '3/400']
    assert runs[1][3:7] == ['cifar100 / fine / 100 out', 'released', '0', '3/640']
    assert runs[0][7:9] == ['val 0.6125 @1', '0.5500 @2']
    assert runs[1][7:9] == ['val 0.5375 @2', '0.5375 @2']

    rows = _table_rows(out, 'Ours vs paper')
    by = {(r[0], r[1]): r for r in rows}
    name = 'Table 4 / iAFF (ours) / ResNet b=2'
    d1 = '%+.4f' % (max(vals1) - 0.807)
    d2 = '%+.4f' % (max(vals2) - 0.807)
    assert (d1, d2) == ('-0.1945', '-0.2695')
    r1 = by[(name, 'cifar_iaff_resnet20_b2 (#1)')]
    r2 = by[(name, 'cifar_iaff_resnet20_b2 (#2)')]
    assert r1[2:8] == ['0.6125 @1', '0.807', d1, '—', '—', 'ran 3/400 epochs']
    assert r2[2:7] == ['0.5375 @2', '0.807', d2, '—', '—']
    assert r2[7].split('; ') == ["fine labels vs paper's coarse", 'recipe released vs paper',
                                 'ran 3/400 epochs', 'configured 640 epochs vs 400']
    # the same runs serve Table S1's Iterative AFF b=2 (same configuration, 0.807 too)
    s1 = 'Table S1 / Iterative AFF / ResNet b=2'
    assert by[(s1, 'cifar_iaff_resnet20_b2 (#1)')][2:5] == ['0.6125 @1', '0.807', d1]
    assert by[(s1, 'cifar_iaff_resnet20_b2 (#2)')][2:5] == ['0.5375 @2', '0.807', d2]
    assert len(rows) == 4

    # the structured report agrees; the flags come from the run, not from the directory name
    report = C.build_report(C.discover([tmp_path]), COPIED)
    assert [r.run.best for r in report.rows if r.cell.key == T4_IAFF_B2] == [(1, 0.6125), (2, 0.5375)]
    assert {r.how for r in report.rows} == {'directory+model'}
    assert report.primary()[T4_IAFF_B2].run.index == 1  # the unflagged run represents ours

    # the PNGs: one per run, Fig. 7 and the two heatmaps
    png = tmp_path / 'png'
    names = sorted(os.listdir(png))
    assert names == ['fig7_table4_vs_b.png', 'run1_table4-resnet-iaff_b2.png',
                     'run2_table4-resnet-iaff_b2.png', 'table4_ours_minus_paper.png',
                     'table4_paper.png']
    for n in names:
        _check_png(png / n)


def test_model_match_outside_reproduce_dirs(tmp_path, capsys):
    """Matching by model and dataset alone; the official --model resnet form; unmatched runs."""
    # the released recipe with the official model form -> cifar_aff_resnet32 -> the released fine cell
    log = write_cifar_run(tmp_path / 'x', [0.3, 0.4], 'fine', 'released', 640, model='resnet',
                          era='head')
    run = C.load_run(log[:-len('.log')] + '.csv')  # a CSV finds its log (config)
    assert run.model == 'cifar_aff_resnet32' and run.path == log and run.csv.endswith('.csv')
    assert [(c.key, how) for c, how in C.match_cells(run)] == [
        (('released', 'cifar_aff_resnet32 [fine]', 'CIFAR-100 fine'), 'model')]
    # a resumed run (second segment starting at epoch 2) continues the first one
    write_cifar_run(tmp_path / 'y', [0.2, 0.25], 'coarse', 'paper', 400, model='cifar_aff_resnet20_b1',
                    seed=3)
    with EpochLogger(os.path.join(str(tmp_path / 'y'), 'train_cifar100-cifar_aff_resnet20_b1.log'),
                     dict(model='cifar_aff_resnet20_b1', dataset='cifar100', label_mode='coarse',
                          classes=20, recipe='paper', seed=3, num_epochs=400),
                     stream=None) as resumed:
        resumed.epoch(2, train=0.3, val=0.3, loss=1.0, lr=0.2, time=1.0)
    # a CSV without a log: no config, nothing to match
    with EpochCSV(str(tmp_path / 'z' / 'train_orphan.csv'), CSV_FIELDS) as csv:
        csv.append(epoch=0, val=0.1, train=0.0, loss=1.0, time=1.0)
    out = _run_main([log, log[:-len('.log')] + '.csv', tmp_path / 'y',
                     tmp_path / 'z' / 'train_orphan.csv', '--official', COPIED,
                     '--out', tmp_path / 'png'], capsys)
    runs = _table_rows(out, 'Runs')
    assert len(runs) == 3  # the log and its CSV are one run
    rows = _table_rows(out, 'Ours vs paper')
    fine = [r for r in rows if r[0] == 'Table released / cifar_aff_resnet32 [fine] / CIFAR-100 fine']
    assert fine == [['Table released / cifar_aff_resnet32 [fine] / CIFAR-100 fine',
                     'cifar_aff_resnet32 (#1)', '0.4000 @1', '0.8357', '-0.4357', '0.8357 @635',
                     '-0.4357', 'ran 2/640 epochs']]
    # Table 3 Global + Local = Table 4 AFF (+ Table S1 AFF): one run, three cells
    b1 = [r for r in rows if r[1] == 'cifar_aff_resnet20_b1 (#2)']
    assert [r[0] for r in b1] == ['Table 3 / Global + Local / ResNet b=1',
                                  'Table 4 / AFF (ours) / ResNet b=1', 'Table S1 / AFF / ResNet b=1']
    assert b1[1][2:5] == ['0.3000 @2', '0.763', '-0.4630']
    assert b1[2][3:5] == ['0.764', '-0.4640']
    assert b1[0][7].split('; ') == ["20-output head vs paper's 100", 'ran 3/400 epochs',
                                    'seed 3 (reproduce uses 0)']
    # ... the CSV without its log names no network: unplaced, with the reason, in no cell
    assert not [r for r in rows if r[0] == '— (no paper cell)']
    orphan = _table_rows(out, 'Unplaced logs')
    assert len(orphan) == 1 and orphan[0][2:] == ['val 0.1000 @0', 'no configuration line']


def test_imagenet_run_in_table5_units(tmp_path, capsys):
    d = tmp_path / 'logs' / run_dir(_cell(('5', 'AFF-ResNet-50 (ours)', 'top-1 err.')))
    assert str(d).endswith(os.path.join('table5', 'imagenet', 'aff_resnet50_v1b'))
    config = dict(model='aff_resnet50_v1b', recipe='paper_sota', num_epochs=160, classes=1000,
                  seed=0, mixup=True)
    with EpochLogger(os.path.join(str(d), 'train_imagenet.log'), config, prefix='', stream=None,
                     kind='imagenet') as log:
        for epoch, err in enumerate([0.5, 0.25, 0.3]):
            log.epoch(epoch, train_metric=0.1, speed=100, time=10.0, top1_err=err,
                      top5_err=err / 3)
    out = _run_main([tmp_path / 'logs', '--official', COPIED, '--out', tmp_path / 'png'], capsys)
    rows = _table_rows(out, 'Ours vs paper')
    assert rows == [['Table 5 / AFF-ResNet-50 (ours) / top-1 err.', 'aff_resnet50_v1b (#1)',
                     '25.00 @1', '20.9', '+4.10', '20.90 @157', '+4.10', 'ran 3/160 epochs']]
    report = C.build_report(C.discover([tmp_path / 'logs']), COPIED)
    (row,) = report.rows
    assert row.ours == 25.0 and abs(row.delta_official - (25.0 - 20.8994)) < 1e-9
    # as Table 3's ImageNet column would read it: accuracy = 1 - error
    assert C.to_cell_unit(0.25, 'top1_err', _cell(('3', 'Global + Local', 'ImageNet'))) == 0.75
    _check_png(tmp_path / 'png' / 'run1_table5-imagenet-aff_resnet50_v1b.png')


# -------------------------------------------------------------------------------------- errors
def test_cli_dir_without_logs_is_one_line_error(tmp_path):
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    (empty / 'sub' / 'notes.txt').write_text('no logs here\n')
    proc = subprocess.run([sys.executable, '-m', 'utils.compare', str(empty), '--official', COPIED,
                           '--out', str(tmp_path / 'png')], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().split('\n')
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'no *.log under' in lines[0]
    assert proc.stdout == '' and not os.path.exists(tmp_path / 'png')


def test_bad_official_root_and_missing_path(tmp_path):
    with pytest.raises(AFFError, match='--official'):
        C.main(['--official', str(tmp_path / 'nope'), '--out', str(tmp_path / 'png')])
    with pytest.raises(AFFError, match='does not exist'):
        C.main([str(tmp_path / 'missing.log'), '--official', COPIED, '--out', str(tmp_path / 'png')])


# ------------------------------------------------------------------- every official log (if present)
@needs_shared
def test_shared_every_official_log_matches_spec():
    for rel in C.OFFICIAL_LOGS:
        o = C.load_official(SHARED, rel)
        assert o.found and o.file == os.path.join(SHARED, rel), (rel, o.error)
        assert (round(o.best, 4), o.epoch) == SPEC5_BEST[rel], rel
    # every official log with epoch lines is in the table
    rels = {os.path.relpath(os.path.join(d, f), SHARED)
            for d, _, files in os.walk(SHARED) for f in files if f.endswith('.log')}
    assert rels == set(C.OFFICIAL_LOGS) | NO_EPOCH_LOGS


def test_an_official_log_given_as_a_run_keeps_its_label_mode():
    """The HEAD fine-label logs carry no label_mode in their Namespace line (uncommitted code):
    read as a run, the OFFICIAL_LOGS entry decides, not Gluon's coarse default."""
    root = COPIED
    fine = 'head/cifar100/AFF-ResNet-32/train_cifar100-ASKCFuse-resnet-32-c-4-s-1.log'
    coarse = ('head/cifar100/AFF-ResNet-32/superclasses/From_Scratch_Log_train_cifar100_'
              'cifar100-ASKCFuse-resnet-32-c-4-s-1.log')
    for rel, mode in ((fine, 'fine'), (coarse, 'coarse')):
        run = C.load_run(os.path.join(root, rel + '.gz'))
        assert C.official_entry(run.path) is C.OFFICIAL_LOGS[rel]
        assert run.label_mode == mode and run.head_classes == 100   # the official 100-way head
    assert C.official_entry(os.path.join(root, 'head', 'elsewhere.log')) is None


def test_a_segmentation_run_meets_its_fpn_cell(tmp_path, capsys):
    """A train_seg.py log (kind 'seg', mIoU) in the reproduce directory of Table 4's AFF FPN
    b=1 cell is compared in mIoU with the paper's value; --epochs counts as configured."""
    cell = PT.cells(table='4', row='AFF (ours)', column='FPN b=1')[0]
    assert cell.metric == 'mIoU' and cell.model == 'stopsign_aff_fpn_resnet20_b1'
    d = tmp_path / 'logs' / run_dir(cell)
    config = dict(model=cell.model, dataset='stopsign', recipe='paper', seed=0, epochs=300)
    with EpochLogger(str(d / ('train_stopsign-%s.log' % cell.model)), config, stream=None,
                     kind='seg') as log:
        for e, miou in enumerate((0.41, 0.5, 0.47)):
            log.epoch(e, train=0.9, pixAcc=0.95, mIoU=miou, loss=0.2, lr=0.01, time=1.0)
    out = _run_main([tmp_path, '--official', COPIED, '--out', tmp_path / 'png'], capsys)
    runs = _table_rows(out, 'Runs')
    assert runs[0][2] == cell.model and runs[0][6] == '3/300' and runs[0][7] == 'mIoU 0.5000 @1'
    rows = [r for r in _table_rows(out, 'Ours vs paper') if r[1] == cell.model + ' (#1)']
    assert rows and rows[0][2:5] == ['0.5000 @1', cell.text, '%+.4f' % (0.5 - cell.value)]


def test_a_file_that_is_not_a_log_is_refused(tmp_path):
    junk = tmp_path / 'random.log'
    junk.write_bytes(np.random.RandomState(0).bytes(3000))
    with pytest.raises(AFFError, match='is not a training log'):
        C.main([str(junk), '--official', COPIED, '--out', str(tmp_path / 'png')])
    assert not os.path.exists(str(tmp_path / 'png'))


def test_the_report_says_how_many_official_logs_are_missing(tmp_path):
    empty = tmp_path / 'official'
    empty.mkdir()
    text = C.markdown(C.build_report([], str(empty)))
    assert '%d of the %d official logs are not under this root' % (
        len(C.OFFICIAL_LOGS), len(C.OFFICIAL_LOGS)) in text


# ---------------------------------------------------------------- open-aff's own folders and formats
def _gunzip_to(rel, dst):
    """The bundled copy of official log ``rel`` written, uncompressed, to ``dst``."""
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    with gzip.open(os.path.join(COPIED, rel + '.gz'), 'rb') as f, open(str(dst), 'wb') as out:
        out.write(f.read())
    return dst


def _last_segment(rel, transform=lambda line: line, keep=lambda line: True):
    """The last Namespace segment of a bundled official log, its lines edited / filtered."""
    with gzip.open(os.path.join(COPIED, rel + '.gz'), 'rt', encoding='utf-8',
                   errors='replace') as f:
        lines = f.read().split('\n')
    start = max(i for i, l in enumerate(lines) if l.startswith('Namespace('))
    return '\n'.join(transform(l) for l in lines[start:] if keep(l)) + '\n'


R32_806 = ('paper/cifar100/sota/resnet-32-aff-host/r_4/train_cifar100_resnet_v2_askc_blocks_5_'
           'channel_times_4_start_layer_1_mixup.log')
BEST_ACC_806 = 'paper/cifar100/sota/resnet-32-aff-host/r_4/cifar100_laplace.cs.arizona.edu_GPU_0_best_Acc.log'


def test_openaff_params_folders_as_laid_out(tmp_path, capsys):
    """open-aff's params/ folders (HEAD and 806562e, with its 'r = 4' folder and a log that is no
    training log): every official log is recognised by its path and meets its cells; the official
    column reads the logs from the same params/ folders."""
    head, old = tmp_path / 'open-aff' / 'params', tmp_path / 'open-aff-806562e' / 'params'
    _gunzip_to(IAFF_X50_HEAD, head / 'imagenet' / 'iAFF-ResNeXt-50' / 'iaff_resnext50.log')
    _gunzip_to(AFF_R50_806, old / AFF_R50_806.split('/', 1)[1])
    for rel in (R32_806, BEST_ACC_806):
        _gunzip_to(rel, old / rel.split('/', 1)[1].replace('/r_4/', '/r = 4/'))
    out = _run_main([head / 'imagenet' / 'iAFF-ResNeXt-50', old, '--official', head,
                     '--official', old, '--out', tmp_path / 'png'], capsys)
    runs = {os.path.basename(r[1]): r for r in _table_rows(out, 'Runs')}
    assert set(runs) == {'iaff_resnext50.log', os.path.basename(AFF_R50_806),
                         os.path.basename(R32_806)}
    assert runs['iaff_resnext50.log'][2] == 'iaff_resnext50_32x4d'
    assert runs['iaff_resnext50.log'][10] == 'official HEAD'
    assert runs[os.path.basename(AFF_R50_806)][2:4] == ['aff_resnet50_v1b', 'imagenet']
    assert runs[os.path.basename(AFF_R50_806)][10] == 'official 806562e'
    assert runs[os.path.basename(R32_806)][3] == 'cifar100 / coarse / 100 out'
    rows = {r[0]: r for r in _table_rows(out, 'Ours vs paper')}
    x50 = rows['Table HEAD-README / iAFF-ResNeXt-50-32x4d / top-1 err.']
    assert x50[2:8] == ['19.78 @238', '19.78', '0.00', '19.78 @238', '0.00', '—']
    assert rows['Table released / iaff_resnext50_32x4d [head] / ImageNet'][2] == '0.1978 @238'
    assert rows['Table 5 / AFF-ResNet-50 (ours) / top-1 err.'][2:6] == [
        '20.90 @157', '20.9', '0.00', '20.90 @157']
    assert 'an official log without a paper cell' in rows['— (no paper cell)'][7]
    skipped = _table_rows(out, 'Not training logs')
    assert len(skipped) == 1 and skipped[0][0].endswith('r = 4/' + os.path.basename(BEST_ACC_806))
    assert 'no Namespace(...) configuration line' in skipped[0][1]
    assert '## Unplaced logs' not in out


@pytest.mark.parametrize('askc,model', [('ResGlobGlobCha', 'globalglobal_resnet50_v1b'),
                                        ('ResLocaLocaCha', 'locallocal_resnet50_v1b'),
                                        ('ASKCFuse', 'aff_resnet50_v1b')])
def test_an_806562e_imagenet_log_is_placed_from_its_configuration(tmp_path, askc, model):
    """An 806562e ablation-style log under a name of its own: --model resnet50_v1b plus the fusion
    of --askc-type is that fusion's v1b network, which meets its Table 3 ImageNet cell."""
    text = _last_segment(AFF_R50_806, lambda l: l.replace("scenario='xxx'", "model='resnet50_v1b'")
                         .replace("askc_type='ASKCFuse'", "askc_type=%r" % askc))
    path = tmp_path / 'my_ablation.log'
    path.write_text(text, encoding='utf-8')
    run = C.load_run(path)
    assert (run.model, run.unplaced, run.source) == (model, '', 'official format')
    keys = [c.key for c, _ in C.match_cells(run)]
    row = {'globalglobal_resnet50_v1b': 'Global + Global', 'locallocal_resnet50_v1b':
           'Local + Local', 'aff_resnet50_v1b': 'Global + Local'}[model]
    assert ('3', row, 'ImageNet') in keys
    assert not any(k[0].startswith(('AFINet', 'ACmix')) for k in keys)   # not the plain ResNet-50


def test_an_806562e_sota_log_without_its_path_is_unplaced(tmp_path, capsys):
    """806562e's Table 5 script hard-coded the host (--scenario 'xxx'): under another name the log
    cannot be placed, and is listed so -- not matched to a neighbour."""
    path = tmp_path / 'renamed.log'
    path.write_text(_last_segment(AFF_R50_806), encoding='utf-8')
    run = C.load_run(path)
    assert run.model is None and "--scenario 'xxx'" in run.unplaced
    assert C.match_cells(run) == []
    out = _run_main([path, '--official', COPIED, '--out', tmp_path / 'png'], capsys)
    (row,) = _table_rows(out, 'Unplaced logs')
    assert row[2] == 'top1_err 0.2090 @157' and 'hard-coded' in row[3]
    assert not [r for r in _table_rows(out, 'Ours vs paper') if r[1].startswith('None')]


def test_a_resumed_log_reports_the_epochs_it_holds(tmp_path, capsys):
    """A log resumed at epoch 65 holds 95 epochs: the report says so instead of '160/160'."""
    epoch = re.compile(r'^\[Epoch (\d+)\]')

    def keep(line):
        m = epoch.match(line)
        return m is None or int(m.group(1)) >= 65
    text = _last_segment(AFF_R50_806, lambda l: l.replace(
        "scenario='xxx'", "model='resnet50_v1b'").replace('resume_epoch=0', 'resume_epoch=65'),
        keep)
    path = tmp_path / 'resumed.log'
    path.write_text(text, encoding='utf-8')
    run = C.load_run(path)
    assert (run.epochs_run, run.first_epoch, run.epochs_configured) == (95, 65, 160)
    out = _run_main([path, '--official', COPIED, '--out', tmp_path / 'png'], capsys)
    (r,) = _table_rows(out, 'Runs')
    assert r[6] == '95 (65-159)/160'
    cell = [x for x in _table_rows(out, 'Ours vs paper') if x[0] == 'Table 3 / Global + Local / ImageNet']
    assert 'the log holds epochs 65-159 only (95 of 160; resumed)' in cell[0][7]


def test_a_directory_of_unreadable_logs_is_one_error(tmp_path):
    d = tmp_path / 'junk'
    d.mkdir()
    (d / 'a.log').write_bytes(os.urandom(300).replace(b'\n', b' '))
    proc = subprocess.run([sys.executable, '-m', 'utils.compare', str(d), '--out',
                           str(tmp_path / 'png')], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().split('\n')
    assert len(lines) == 1 and 'none of its 1 *.log files is a training log' in lines[0]
