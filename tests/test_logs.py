"""utils.logs: the official logs parse to the numbers of docs/official-code.md §5; our logs round-trip.

The expected values are transcribed from docs/official-code.md §5 (4 decimals as printed there; open-aff's
paths say ``r = 4`` where the copies here say ``r_4``).  A selection of the official logs is copied
(gzipped) under utils/official_logs/; when $AFF_OFFICIAL_LOGS names the folder of all of them
(head/, paper/), every one of the 26 official logs is checked as well.
"""
import argparse
import gzip
import io
import os
import struct

import pytest

from conftest import ROOT
from net.errors import AFFError
from utils import logs, paths
from utils.history import EpochCSV, plot_history, read_csv
from utils.logs import EpochLogger, best, curve, parse_log, parse_namespace

COPIED = paths.OFFICIAL_LOGS
# the full set of official logs, only where given explicitly (no path outside the repository
# is assumed): a folder laid out as utils/official_logs (head/, paper/)
SHARED = os.environ.get('AFF_OFFICIAL_LOGS', '')

R32_806 = ('paper/cifar10/resnet-32-askc-host/r_4/'
           'train_cifar10_resnet_v2_askc_blocks_5_channel_times_4_start_layer_1_mixup.log')
R32_806_C100 = ('paper/cifar100/sota/resnet-32-aff-host/r_4/'
                'train_cifar100_resnet_v2_askc_blocks_5_channel_times_4_start_layer_1_mixup.log')
BEST_ACC = 'paper/cifar100/sota/resnet-32-aff-host/r_4/cifar100_laplace.cs.arizona.edu_GPU_0_best_Acc.log'
R32_FINE = 'head/cifar100/AFF-ResNet-32/train_cifar100-ASKCFuse-resnet-32-c-4-s-1.log'
R32_SCRATCH = ('head/cifar100/AFF-ResNet-32/superclasses/'
               'From_Scratch_Log_train_cifar100_cifar100-ASKCFuse-resnet-32-c-4-s-1.log')
R32_SUPER = 'head/cifar100/AFF-ResNet-32/superclasses/train_cifar100_cifar100-ASKCFuse-resnet-32-c-4-s-1.log'
X47_ROOT = 'head/cifar100/AFF-ResNeXt-47-32x4d/train_cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1.log'
X47_SUPER = 'head/cifar100/AFF-ResNeXt-47-32x4d/superclass/train_cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1.log'
IAFF_X50_HEAD = 'head/imagenet/iAFF-ResNeXt-50/iaff_resnext50.log'
AFF_R50_806 = 'paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_AFF_mixup.log'

# docs/official-code.md §5, one row per listed segment with epoch lines:
# (log, segment index (None = the last segment that has epochs), first epoch, last epoch,
#  final value, best value, best epoch, top-5 err at the best epoch, final top-5 err)
# CIFAR values are top-1 accuracy, ImageNet values top-1 error.
SPEC5 = [
    (R32_806, 0, 0, 36, 0.6319, 0.6651, 34, None, None),
    (R32_806, 1, 0, 399, 0.9617, 0.9626, 387, None, None),
    ('paper/cifar10/resnext29_32x4d_askc/train_cifar10_resnext29_32x4d_askc_mixup.log',
     None, 0, 639, 0.9684, 0.9705, 592, None, None),
    (R32_806_C100, None, 0, 399, 0.8967, 0.8967, 381, None, None),
    ('paper/cifar100/sota/resnext29_32x4d_aff-host/r_4/train_cifar100_resnext29_32x4d_askc_mixup.log',
     None, 0, 639, 0.8972, 0.8973, 638, None, None),
    ('paper/cifar100/sota/resnext38_32x4d_iaff-host/train_cifar100_resnext38_32x4d_iaff_mixup.log',
     None, 0, 639, 0.8953, 0.8953, 639, None, None),
    ('paper/imagenet/ablation/resnet50_v1b_GlobGlob_div16.log',
     None, 0, 159, 0.2233, 0.2232, 158, 0.0661, 0.0659),
    ('paper/imagenet/ablation/resnet50_v1b_LocaLoca_div16.1.log',
     None, 0, 159, 0.2207, 0.2200, 158, 0.0628, 0.0626),
    ('paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_div16_resume.log',
     None, 65, 159, 0.2168, 0.2162, 155, 0.0594, 0.0595),
    (AFF_R50_806, None, 0, 159, 0.2107, 0.2090, 157, 0.0525, 0.0536),
    ('paper/imagenet/sota/iAFF-ResNet-50/resnet50_v1b_best_iAFF.log',
     None, 0, 179, 0.2057, 0.2043, 178, 0.0521, 0.0522),
    ('paper/imagenet/sota/AFF-ResNeXt-50-32x4d/resnext50_32x4d_aff_best.log',
     None, 0, 159, 0.2096, 0.2086, 152, 0.0560, 0.0564),
    ('paper/imagenet/sota/iAFF-ResNeXt-50-32x4d/resnext50_32x4d_iaff_best.log',
     None, 0, 159, 0.2025, 0.2025, 159, 0.0536, 0.0536),
    (R32_SCRATCH, 0, 0, 525, 0.9002, 0.9031, 521, None, None),
    (R32_SUPER, None, 0, 639, 0.9064, 0.9078, 617, None, None),
    (R32_FINE, None, 0, 639, 0.8322, 0.8357, 635, None, None),
    ('head/cifar100/AFF-ResNeXt-38-32x4d/From_Scratch_Log_train_cifar100_cifar100-ASKCFuse-resneXt-38-c-4-s-1.log',
     None, 0, 639, 0.9057, 0.9065, 625, None, None),
    ('head/cifar100/AFF-ResNeXt-38-32x4d/train_cifar100-ASKCFuse-resneXt-38-c-4-s-1.log',
     None, 0, 639, 0.9115, 0.9123, 621, None, None),
    ('head/cifar100/AFF-ResNeXt-47-32x4d/superclass/From_Scratch_Log_train_cifar100-ASKCFuse-resneXt-47-c-4-s-1.log',
     None, 0, 639, 0.9080, 0.9091, 634, None, None),
    (X47_SUPER, None, 0, 639, 0.9157, 0.9184, 607, None, None),
    (X47_ROOT, 0, 0, 639, 0.9132, 0.9147, 607, None, None),
    (X47_ROOT, 1, 0, 639, 0.9082, 0.9101, 1, None, None),
    (X47_ROOT, 2, 0, 639, 0.9157, 0.9184, 607, None, None),
    (X47_ROOT, 5, 0, 639, 0.8504, 0.8538, 605, None, None),
    ('head/imagenet/AFF-ResNet-50/aff_resnet50.log', None, 0, 239, 0.2033, 0.2028, 235, 0.0527, 0.0529),
    ('head/imagenet/iAFF-ResNet-50/iaff_resnet50.log', None, 0, 239, 0.2028, 0.2022, 238, 0.0546, 0.0548),
    ('head/imagenet/AFF-ResNeXt-50/aff_resnext50.log', None, 0, 239, 0.2046, 0.2028, 231, 0.0529, 0.0550),
    (IAFF_X50_HEAD, None, 0, 239, 0.1984, 0.1978, 238, 0.0519, 0.0522),
]

# Segment structure where docs/official-code.md §5 states it: number of Namespace segments, and (index -> (first, last)
# epoch) of the segments that have epoch lines.  Every other segment has none.
STRUCTURE = {
    R32_806: (2, {0: (0, 36), 1: (0, 399)}),
    R32_SCRATCH: (6, {0: (0, 525), 1: (0, 0), 4: (0, 4), 5: (0, 639)}),  # seg1/seg4 short resumes
    X47_ROOT: (6, {0: (0, 639), 1: (0, 639), 2: (0, 639), 4: (0, 1), 5: (0, 639)}),
    IAFF_X50_HEAD: (6, {5: (0, 239)}),  # earlier ones aborted
    AFF_R50_806: (21, {20: (0, 159)}),  # 21 restarts
    'paper/cifar100/sota/resnext38_32x4d_aff-host/train_cifar100_resnext38_32x4d_askc_mixup.log': (2, {}),
    'paper/cifar100/sota/resnext38_32x4d_iaff-host/train_cifar100_resnext38_32x4d_iaff_mixup.log':
        (2, {0: (0, 6), 1: (0, 639)}),  # seg0 aborted at 6
    R32_FINE: (2, {1: (0, 639)}),
}

# "Reference curves" of docs/official-code.md §5: validation metric of the final segment at epochs 0 9 39 79 119 159 199 239.
CURVE_EPOCHS = (0, 9, 39, 79, 119, 159, 199, 239)
CURVES = {
    'head/imagenet/AFF-ResNet-50/aff_resnet50.log': (.9592, .4196, .3101, .2842, .2579, .2352, .2151, .2033),
    'head/imagenet/iAFF-ResNet-50/iaff_resnet50.log': (.9920, .4384, .3127, .2950, .2607, .2349, .2149, .2028),
    'head/imagenet/AFF-ResNeXt-50/aff_resnext50.log': (.9604, .4024, .2939, .2707, .2484, .2326, .2114, .2046),
    IAFF_X50_HEAD: (.9932, .4233, .3055, .2717, .2501, .2277, .2085, .1984),
    AFF_R50_806: (.9487, .4677, .3820, .3236, .2592, .2107, None, None),
    'paper/imagenet/sota/iAFF-ResNet-50/resnet50_v1b_best_iAFF.log':
        (.9771, .5060, .4027, .3399, .2831, .2219, None, None),
    'paper/imagenet/sota/AFF-ResNeXt-50-32x4d/resnext50_32x4d_aff_best.log':
        (.9724, .4708, .3217, .2806, .2306, .2096, None, None),
    'paper/imagenet/sota/iAFF-ResNeXt-50-32x4d/resnext50_32x4d_iaff_best.log':
        (.9941, .4738, .3236, .2694, .2283, .2025, None, None),
    R32_FINE: (.0343, .1617, .6169, .7200, .7222, .7273, .7269, .7447),
    X47_ROOT: (.0422, .2492, .6996, .7444, .7633, .7733, .7759, .7511),
}
CURVES_LATE = {R32_FINE: {299: .8192, 449: .8284, 639: .8322},
               X47_ROOT: {299: .8401, 449: .8454, 639: .8504},
               'paper/imagenet/sota/iAFF-ResNet-50/resnet50_v1b_best_iAFF.log': {179: .2057}}

COPIED_LOGS = sorted(os.path.relpath(os.path.join(d, f), COPIED)[:-len('.gz')]
                     for d, _, files in os.walk(COPIED) for f in files if f.endswith('.log.gz'))

_CACHE = {}


def _parsed(base, rel):
    key = (base, rel)
    if key not in _CACHE:
        path = os.path.join(base, rel + ('.gz' if base == COPIED else ''))
        _CACHE[key] = parse_log(path)
    return _CACHE[key]


def _read(path):
    with open(path) as f:
        return f.read()


def _r4(x):
    return round(x, 4)


def check_spec_row(segs, row):
    rel, index, first, last, final, best_value, best_epoch, best_top5, final_top5 = row
    seg = [s for s in segs if s.epochs][-1] if index is None else segs[index]
    assert (seg.epochs[0].epoch, seg.epochs[-1].epoch) == (first, last), rel
    # every epoch of the range, once, in order
    assert [r.epoch for r in seg.epochs] == list(range(first, last + 1)), rel
    b = best(seg)
    assert b is not None and b.epoch == best_epoch and _r4(b.value) == best_value, (rel, tuple(b))
    assert b.segment == seg.index
    if seg.kind == 'imagenet':
        assert _r4(seg.epochs[-1].top1_err) == final and _r4(seg.epochs[-1].top5_err) == final_top5, rel
        assert _r4(b.record.top5_err) == best_top5, rel
        assert all(r.top1_err is not None and r.top5_err is not None and r.train_metric is not None
                   and r.speed is not None and r.time is not None for r in seg.epochs), rel
    else:
        assert seg.kind == 'cifar'
        assert _r4(seg.epochs[-1].val) == final, rel
        assert best_top5 is None and final_top5 is None


def check_structure(segs, rel):
    count, ranges = STRUCTURE[rel]
    assert len(segs) == count, rel
    assert all(s.namespace is not None and s.config for s in segs), rel  # each starts at a Namespace line
    got = {s.index: s.epoch_range for s in segs if s.epochs}
    assert got == ranges, rel


# ------------------------------------------------------------------------------- copied official logs

def test_copied_selection_is_small_and_complete():
    assert set(COPIED_LOGS) >= {R32_806, R32_FINE, R32_SCRATCH, IAFF_X50_HEAD, AFF_R50_806, BEST_ACC}
    total = sum(os.path.getsize(os.path.join(COPIED, p + '.gz')) for p in COPIED_LOGS)
    assert total < 1.5e6


@pytest.mark.parametrize('row', [r for r in SPEC5 if r[0] in COPIED_LOGS],
                         ids=lambda r: '%s-seg%s' % (os.path.basename(r[0]), r[1]))
def test_copied_log_matches_spec(row):
    check_spec_row(_parsed(COPIED, row[0]), row)


@pytest.mark.parametrize('rel', [r for r in STRUCTURE if r in COPIED_LOGS])
def test_copied_log_structure(rel):
    check_structure(_parsed(COPIED, rel), rel)


def test_best_over_all_segments_and_kinds():
    segs = _parsed(COPIED, X47_ROOT)
    assert tuple(best(segs)) == (0.9184, 607, 2)
    assert best(segs[5]).value == 0.8538  # the fine-label run
    assert best(segs[3]) is None  # a Namespace line without epochs
    b = best(_parsed(COPIED, IAFF_X50_HEAD))
    assert (b.value, b.epoch, b.segment, b.record.top5_err) == (0.197829, 238, 5, 0.051889)
    assert best(_parsed(COPIED, IAFF_X50_HEAD), metric='top5_err').value <= 0.051889
    seg = _parsed(COPIED, R32_FINE)[1]
    assert best(seg, metric='loss').value == min(r.loss for r in seg.epochs)
    assert best(seg, metric='val', mode='min').value == min(r.val for r in seg.epochs)
    # the first epoch wins a tie: 0.8967 is reached at 381 and again at 399
    seg = _parsed(COPIED, R32_806_C100)[0]
    assert seg.epoch(399).val == 0.8967 and best(seg).epoch == 381


def test_copied_logs_kinds_and_formats():
    head = _parsed(COPIED, R32_FINE)[1]
    assert head.kind == 'cifar' and head.epochs[0].lr == 0.2 and head.epochs[0].time == 29.44932
    assert head.config['gpus'] == '0,1' and head.config['resume_from'] is None
    old = _parsed(COPIED, R32_806)[1]
    assert old.epochs[0].lr is None and old.config['lr'] == 0.02  # 806562e: no lr on the epoch line
    img = _parsed(COPIED, IAFF_X50_HEAD)
    assert all(s.kind == 'imagenet' for s in img)
    assert img[0].config['input_size'] == 320 and img[2].config['dtype'] == 'float32'
    last = img[5]
    first = last.epochs[0]
    assert (first.train_metric_name, first.train_metric, first.speed, first.time, first.top1_err,
            first.top5_err) == ('rmse', 0.026159, 1058.0, 1229.805974, 0.993244, 0.973573)
    assert len(last.batches) == 240 * 50 and last.batches[0] == (0, 49, 422.929331, 'rmse', 0.025511, 0.0003)
    assert len(img[3].batches) == 11 and not img[3].epochs  # an aborted start: batch lines only
    assert last.lines == 1 + 240 * 53


def test_nul_bytes_log():
    with gzip.open(os.path.join(COPIED, R32_SCRATCH + '.gz'), 'rb') as f:
        raw = f.read()
    assert raw.count(b'\0') == 828  # the run of NULs is really in the copied file
    segs = _parsed(COPIED, R32_SCRATCH)
    seg0 = segs[0]
    assert seg0.epoch(359).val == 0.8913 and seg0.epoch(360).val == 0.8886  # the lines around the NULs
    assert not seg0.other
    # seg5 is the same run as the separate superclasses/train log
    if R32_SUPER in COPIED_LOGS:
        assert segs[5].epochs == _parsed(COPIED, R32_SUPER)[0].epochs


def test_non_log_lines_are_kept():
    segs = _parsed(COPIED, BEST_ACC)
    assert len(segs) == 1 and segs[0].config == {} and segs[0].kind == 'unknown'
    assert segs[0].other == [(1, 'best Acc: 0.8967')] and best(segs) is None


def test_gz_and_plain_parse_alike(tmp_path):
    with gzip.open(os.path.join(COPIED, R32_806 + '.gz'), 'rt') as f:
        text = f.read()
    plain = tmp_path / 'plain.log'
    plain.write_text(text)
    a, b = parse_log(str(plain)), _parsed(COPIED, R32_806)
    assert [s.epochs for s in a] == [s.epochs for s in b] and [s.config for s in a] == [s.config for s in b]
    with open(plain) as f:  # file object = iterable of lines
        assert [s.epochs for s in parse_log(f)] == [s.epochs for s in b]
    assert [s.epochs for s in parse_log(text)] == [s.epochs for s in b]  # the text itself


# ------------------------------------------------------------------- every official log (if present)

needs_shared = pytest.mark.skipif(not SHARED or not os.path.isdir(SHARED),
                                  reason='set AFF_OFFICIAL_LOGS to the folder of all 26 official '
                                         'logs (head/, paper/) to check every one')


@needs_shared
def test_shared_all_26_logs_parse():
    rels = sorted(os.path.relpath(os.path.join(d, f), SHARED)
                  for d, _, files in os.walk(SHARED) for f in files if f.endswith('.log'))
    assert len(rels) == 26
    assert {r[0] for r in SPEC5} | set(STRUCTURE) | set(CURVES) <= set(rels) | {BEST_ACC}
    for rel in rels:
        segs = _parsed(SHARED, rel)
        assert segs, rel
        for seg in segs:
            # nothing unexplained: the only free-text line of all logs is "best Acc: 0.8967"
            assert not seg.other or rel == BEST_ACC, (rel, seg.other[:3])
            assert not seg.implicit, rel  # every restart in the official logs logged its Namespace
            if seg.epochs:
                assert seg.kind in ('cifar', 'imagenet')
                nums = [r.epoch for r in seg.epochs]
                assert nums == list(range(nums[0], nums[-1] + 1)), rel
    # copied files are byte-identical to the originals
    for rel in COPIED_LOGS:
        with gzip.open(os.path.join(COPIED, rel + '.gz'), 'rb') as f, open(os.path.join(SHARED, rel), 'rb') as g:
            assert f.read() == g.read(), rel


@needs_shared
@pytest.mark.parametrize('row', SPEC5, ids=lambda r: '%s-seg%s' % (os.path.basename(r[0]), r[1]))
def test_shared_log_matches_spec(row):
    check_spec_row(_parsed(SHARED, row[0]), row)


@needs_shared
@pytest.mark.parametrize('rel', sorted(STRUCTURE))
def test_shared_log_structure(rel):
    check_structure(_parsed(SHARED, rel), rel)


@needs_shared
@pytest.mark.parametrize('rel', sorted(CURVES))
def test_shared_reference_curves(rel):
    seg = [s for s in _parsed(SHARED, rel) if s.epochs][-1]
    xs, ys = curve(seg)
    values = dict(zip(xs, ys))
    want = dict((e, v) for e, v in zip(CURVE_EPOCHS, CURVES[rel]) if v is not None)
    want.update(CURVES_LATE.get(rel, {}))
    assert {e: _r4(values[e]) for e in want} == want


@needs_shared
def test_shared_duplicated_runs():
    """Spec: From_Scratch ResNet-32 seg5 = the superclasses/train log; ResNeXt-47 seg2 = superclass/train."""
    assert _parsed(SHARED, R32_SCRATCH)[5].epochs == _parsed(SHARED, R32_SUPER)[0].epochs
    assert _parsed(SHARED, X47_ROOT)[2].epochs == _parsed(SHARED, X47_SUPER)[0].epochs
    assert _parsed(SHARED, X47_ROOT)[2].config == _parsed(SHARED, X47_SUPER)[0].config


# -------------------------------------------------------------------------------------- Namespace

def test_parse_namespace_real_lines():
    head = ("INFO:root:Namespace(askc_type='ASKCFuse', auto_aug=True, batch_size=128, blocks=5, "
            "channel_times=4, cosine=False, dataset='cifar100', deep_stem=False, drop_rate=0.0, "
            "gpus='0,1,2,3', label_smoothing=True, lr=0.2, lr_decay_epoch='300,450', mixup_alpha=1, "
            "resume_from=None, warmup_lr=0.0, wd=0.0001)\n")
    cfg = parse_namespace(head)
    assert cfg == {'askc_type': 'ASKCFuse', 'auto_aug': True, 'batch_size': 128, 'blocks': 5,
                   'channel_times': 4, 'cosine': False, 'dataset': 'cifar100', 'deep_stem': False,
                   'drop_rate': 0.0, 'gpus': '0,1,2,3', 'label_smoothing': True, 'lr': 0.2,
                   'lr_decay_epoch': '300,450', 'mixup_alpha': 1, 'resume_from': None, 'warmup_lr': 0.0,
                   'wd': 0.0001}
    assert isinstance(cfg['mixup_alpha'], int) and isinstance(cfg['drop_rate'], float)
    seg = _parsed(COPIED, IAFF_X50_HEAD)[5]
    assert seg.config['rec_train'] == '/xdisk/kobus/yimian/imagenet/rec/train.rec'
    assert seg.config['teacher'] is None and seg.config['r'] == 16 and seg.config['lr'] == 0.075
    assert len(seg.config) == 50


def test_parse_namespace_literals_and_oddities():
    text = ("Namespace(a=[1, 2, [3, 'x,y']], b=\"it's, here\", c='say \"hi\"', d=(1,), e={'k': None}, "
            "f=-1.5e-05, g=gpu(0), h=inf, i=[cpu(0), cpu(1)], j=True, **{'odd-name': 3})")
    cfg = parse_namespace(text)
    assert cfg == {'a': [1, 2, [3, 'x,y']], 'b': "it's, here", 'c': 'say "hi"', 'd': (1,),
                   'e': {'k': None}, 'f': -1.5e-05, 'g': 'gpu(0)', 'h': float('inf'),
                   'i': '[cpu(0), cpu(1)]', 'j': True, 'odd-name': 3}
    # argparse's own repr goes round trip
    ns = argparse.Namespace(lr=0.1, gpus='0,1', steps=[30, 60], name="a'b\"c", none=None, flag=False)
    assert parse_namespace(repr(ns)) == vars(ns)
    # a truncated line gives its complete pairs
    assert parse_namespace("Namespace(a=1, b='x,y', c=[1, 2") == {'a': 1, 'b': 'x,y'}
    with pytest.raises(AFFError):
        parse_namespace('best Acc: 0.8967')


# ------------------------------------------------------------------------------------- EpochLogger

def _cifar_values(i):
    return dict(train=0.07 + i / 1000.0, val=0.1234567 + i / 100.0, loss=4.5 - i / 3.0, lr=0.2 / (i + 1),
                time=29.4 + i)


def test_epoch_logger_cifar_round_trip_and_resume(tmp_path):
    path = str(tmp_path / 'sub' / 'run.log')
    out = io.StringIO()
    cfg1 = {'lr': 0.2, 'gpus': '0,1', 'steps': [300, 450], 'resume_from': None, 'mixup': True}
    log = EpochLogger(path, cfg1, stream=out)
    for i in range(3):
        log.epoch(i, **_cifar_values(i))
    log.info('best Acc: 0.1434')
    log.close()
    ns = argparse.Namespace(**dict(cfg1, lr=0.02, resume_from='params/x.params'))
    with EpochLogger(path, ns, stream=None) as log2:  # resume: appends a new segment
        for i in range(3, 5):
            log2.epoch(i, **_cifar_values(i))
    lines = _read(path).splitlines()
    assert all(line.startswith('INFO:root:') for line in lines)
    assert lines[0] == 'INFO:root:' + repr(argparse.Namespace(**cfg1))
    assert lines[1] == ('INFO:root:[Epoch 0] train=0.070000 val=0.123457 loss=4.500000 lr: 0.200000 '
                        'time: 29.400000')
    # the stream mirror carries the same lines without the prefix, and nothing of the second logger
    assert out.getvalue().splitlines() == [line[len('INFO:root:'):] for line in lines[:5]]
    segs = parse_log(path)
    assert len(segs) == 2
    assert segs[0].config == cfg1 and segs[1].config == vars(ns)
    assert [r.epoch for r in segs[0].epochs] == [0, 1, 2] and [r.epoch for r in segs[1].epochs] == [3, 4]
    for seg in segs:
        assert seg.kind == 'cifar'
        for rec in seg.epochs:
            want = _cifar_values(rec.epoch)
            for key, value in want.items():
                assert getattr(rec, key) == round(value, 6), (rec.epoch, key)
    assert segs[0].other == [(5, 'INFO:root:best Acc: 0.1434')]
    assert tuple(best(segs)) == (round(_cifar_values(4)['val'], 6), 4, 1)


def test_two_loggers_in_one_process_do_not_mix(tmp_path):
    a, b = str(tmp_path / 'a.log'), str(tmp_path / 'b.log')
    la = EpochLogger(a, {'name': 'a'}, stream=None)
    lb = EpochLogger(b, {'name': 'b'}, stream=None, prefix='')
    la.epoch(0, **_cifar_values(0))
    lb.epoch(0, **_cifar_values(1))
    la.close()
    lb.close()
    sa, sb = parse_log(a), parse_log(b)
    assert sa[0].config == {'name': 'a'} and sb[0].config == {'name': 'b'}
    assert sa[0].epochs[0].val == 0.123457 and sb[0].epochs[0].val == 0.133457
    assert _read(b).startswith('Namespace(')
    assert len(_read(a).splitlines()) == 2


def test_epoch_logger_806562e_format_and_errors(tmp_path):
    path = str(tmp_path / 'old.log')
    with EpochLogger(path, {}, stream=None) as log:
        lines = log.epoch(7, train=0.1, val=0.5, loss=2.0, time=3.0)
        assert lines == ('[Epoch 7] train=0.100000 val=0.500000 loss=2.000000 time: 3.000000',)
        with pytest.raises(AFFError, match='needs val'):
            log.epoch(8, train=0.1, loss=2.0, time=3.0)
        with pytest.raises(AFFError):
            log.epoch(8, train=0.1, val=0.5, loss=2.0, time=3.0, **{'bad key': 1.0})
    with pytest.raises(AFFError):
        EpochLogger(path, {}, kind='nope', stream=None)
    rec = parse_log(path)[0].epochs[0]
    assert (rec.epoch, rec.val, rec.lr) == (7, 0.5, None)


def test_epoch_logger_imagenet_round_trip(tmp_path):
    path = str(tmp_path / 'imagenet.log')
    with EpochLogger(path, {'model': 'resnet'}, prefix='', stream=None, kind='imagenet') as log:
        for e in range(3):
            for b in (49, 99):
                log.batch(e, b, speed=1000.5 + b, metric_name='rmse', metric=0.026, lr=0.0003 * (b + 1))
            lines = log.epoch(e, train_metric_name='rmse', train_metric=0.0261, speed=1219.7, time=1050.25,
                              top1_err=0.9 - e / 10.0, top5_err=0.7 - e / 10.0)
    assert lines == ('[Epoch 2] training: rmse=0.026100', '[Epoch 2] speed: 1219 samples/sec\ttime cost: 1050.250000',
                     '[Epoch 2] validation: err-top1=0.700000 err-top5=0.500000')
    assert _read(path).startswith('Namespace(') and 'INFO' not in _read(path)
    (seg,) = parse_log(path)
    assert seg.kind == 'imagenet' and seg.config == {'model': 'resnet'}
    assert [(r.epoch, r.top1_err, r.top5_err, r.train_metric_name, r.train_metric, r.speed, r.time)
            for r in seg.epochs] == [(e, round(0.9 - e / 10.0, 6), round(0.7 - e / 10.0, 6), 'rmse', 0.0261,
                                      1219.0, 1050.25) for e in range(3)]
    assert len(seg.batches) == 6 and seg.batches[1] == (0, 99, 1099.5, 'rmse', 0.026, 0.03)
    b = best(seg)
    assert (b.value, b.epoch, b.record.top5_err) == (0.7, 2, 0.5)


def test_epoch_logger_seg_and_extra_pairs(tmp_path):
    path = str(tmp_path / 'seg.log')
    with EpochLogger(path, {'dataset': 'stopsign'}, stream=None, kind='seg') as log:
        line = log.epoch(0, train=0.5, pixAcc=0.91, mIoU=0.4, loss=0.3, lr=0.01, time=12.0)[0]
        log.epoch(1, pixAcc=0.95, mIoU=0.61, loss=0.2, lr=0.009, time=12.5, fwIoU=0.7)
        log.epoch(2, pixAcc=0.94, mIoU=0.55, loss=0.1, time=12.5)
    assert line == '[Epoch 0] train=0.500000 pixAcc=0.910000 mIoU=0.400000 loss=0.300000 lr: 0.010000 time: 12.000000'
    (seg,) = parse_log(path)
    assert seg.kind == 'seg'
    assert [r.extra for r in seg.epochs] == [{'pixAcc': 0.91, 'mIoU': 0.4},
                                             {'pixAcc': 0.95, 'mIoU': 0.61, 'fwIoU': 0.7},
                                             {'pixAcc': 0.94, 'mIoU': 0.55}]
    assert seg.epochs[0].train == 0.5 and seg.epochs[1].train is None and seg.epochs[2].lr is None
    assert tuple(best(seg)) == (0.61, 1, 0)
    assert best(seg, metric='pixAcc').epoch == 1 and best(seg, metric='fwIoU').value == 0.7
    # extra pairs on a CIFAR line, and unknown extras on the imagenet validation line
    with EpochLogger(path, {}, stream=None) as log:
        log.epoch(0, train=0.1, val=0.2, top5=0.55, loss=1.0, lr=0.1, time=2.0)
    rec = parse_log(path)[-1].epochs[0]
    assert rec.val == 0.2 and rec.extra == {'top5': 0.55} and rec.get('top5') == 0.55
    segs = parse_log(['[Epoch 3] validation: err-top1=0.2 err-top5=0.05 loss=1.5'])
    rec = segs[0].epochs[0]
    assert (rec.top1_err, rec.top5_err, rec.loss, rec.extra) == (0.2, 0.05, 1.5, {})
    assert segs[0].kind == 'imagenet'


# --------------------------------------------------------------------------- robustness of parse_log

CIFAR_LINES = ['INFO:root:Namespace(lr=0.2)',
               'INFO:root:[Epoch 0] train=0.07 val=0.10 loss=3.0 lr: 0.2 time: 20.5',
               'INFO:root:[Epoch 1] train=0.07 val=0.20 loss=2.9 lr: 0.2 time: 20.1',
               'INFO:root:[Epoch 2] train=0.07 val=0.30 loss=2.8 lr: 0.2 time: 20.3']


def test_truncated_last_line(tmp_path):
    path = tmp_path / 'cut.log'
    full = '\n'.join(CIFAR_LINES) + '\n'
    cut_at = full.index('val=0.30') + len('val=0.3')  # killed in the middle of the last epoch line
    for cut, epochs in ((cut_at, [0, 1]), (full.index('[Epoch 2]') + 3, [0, 1]),
                        (len(full) - 1, [0, 1, 2]),  # only the newline is missing: a complete line
                        (full.index('time: 20.3') + len('time: '), [0, 1])):
        path.write_bytes(full[:cut].encode())
        (seg,) = parse_log(str(path))
        assert [r.epoch for r in seg.epochs] == epochs, full[:cut][-30:]
        assert [r.val for r in seg.epochs] == [0.1, 0.2, 0.3][:len(epochs)]
    # the same through gzip, and a truncated imagenet validation line
    gz = tmp_path / 'cut.log.gz'
    gz.write_bytes(gzip.compress(full[:cut_at].encode()))
    assert [r.epoch for r in parse_log(str(gz))[0].epochs] == [0, 1]
    img = ('Namespace(a=1)\n[Epoch 0] training: accuracy=0.5\n[Epoch 0] speed: 10 samples/sec\ttime cost: 5.0\n'
           '[Epoch 0] validation: err-top1=0.4 err-top5=0.2\n[Epoch 1] training: accuracy=0.6\n'
           '[Epoch 1] validation: err-top1=0.3 err-top5=0.1')
    (seg,) = parse_log(img.encode()[:-1])
    assert seg.epochs[0].top5_err == 0.2 and seg.epochs[1].top1_err is None and seg.epochs[1].train_metric == 0.6
    # a log appended to after such a crash keeps the fragment apart from the new Namespace line
    path.write_bytes(full[:cut_at].encode())
    with EpochLogger(str(path), {'lr': 0.02}, stream=None) as log:
        log.epoch(0, **_cifar_values(0))
    segs = parse_log(str(path))
    assert [len(s.epochs) for s in segs] == [2, 1] and segs[1].config == {'lr': 0.02}


def test_nul_bytes_and_crlf_and_empty():
    text = (CIFAR_LINES[0] + '\r\n' + CIFAR_LINES[1] + '\n\0\0\0' + CIFAR_LINES[2][:20] + '\0' * 5
            + CIFAR_LINES[2][20:] + '\n')
    (seg,) = parse_log(text.encode())
    assert [r.val for r in seg.epochs] == [0.1, 0.2] and seg.config == {'lr': 0.2}
    assert parse_log([]) == [] and parse_log(b'') == []


def test_restart_without_namespace_starts_a_segment():
    lines = CIFAR_LINES + ['INFO:root:[Epoch 1] train=0.07 val=0.25 loss=2.9 lr: 0.2 time: 20.1',
                           'INFO:root:[Epoch 2] train=0.07 val=0.35 loss=2.9 lr: 0.2 time: 20.1']
    segs = parse_log(lines)
    assert [s.epoch_range for s in segs] == [(0, 2), (1, 2)]
    assert segs[1].implicit and segs[1].config == {} and segs[1].kind == 'cifar'
    assert [s.lines for s in segs] == [4, 2]
    assert tuple(best(segs)) == (0.35, 2, 1)
    # lines before the first Namespace form a segment with an empty config
    segs = parse_log(['hello', CIFAR_LINES[1]] + CIFAR_LINES)
    assert [s.config for s in segs] == [{}, {'lr': 0.2}] and [len(s.epochs) for s in segs] == [1, 3]
    # imagenet: batch lines of an epoch that was already finished belong to a new segment
    img = ['Namespace(a=1)', 'Epoch[0] Batch [49]\tSpeed: 10.0 samples/sec\trmse=0.02\tlr=0.1',
           '[Epoch 0] training: rmse=0.02', '[Epoch 0] speed: 10 samples/sec\ttime cost: 5.0',
           '[Epoch 0] validation: err-top1=0.4 err-top5=0.2',
           'Epoch[0] Batch [49]\tSpeed: 10.0 samples/sec\trmse=0.03\tlr=0.1',
           '[Epoch 0] training: rmse=0.03', '[Epoch 0] validation: err-top1=0.5 err-top5=0.3']
    segs = parse_log(img)
    assert len(segs) == 2 and [len(s.batches) for s in segs] == [1, 1]
    assert segs[1].epochs[0].top1_err == 0.5 and segs[1].epochs[0].speed is None


# -------------------------------------------------------------------------------------------- CSV

FIELDS = ['epoch', 'train', 'val', 'loss', 'lr', 'time']


def test_epoch_csv_header_resume_and_mismatch(tmp_path):
    path = str(tmp_path / 'd' / 'run.csv')
    with EpochCSV(path, FIELDS) as c:
        c.append(epoch=0, **_cifar_values(0))
        c.append({'epoch': 1, 'val': 0.5})
        with pytest.raises(AFFError, match='unknown CSV field'):
            c.append(epoch=2, bogus=1.0)
    with EpochCSV(path, FIELDS) as c:  # resume: no second header
        c.append(epoch=2, train=0.1, val=1 / 3.0, loss=float('nan'), lr=0.2, time=3)
    text = _read(path)
    assert text.count('epoch,') == 1 and text.startswith('epoch,train,val,loss,lr,time\n')
    rows = read_csv(path)
    assert [r['epoch'] for r in rows] == [0, 1, 2]
    assert rows[0] == dict(epoch=0, **_cifar_values(0))  # exact floats
    assert rows[1] == {'epoch': 1, 'train': None, 'val': 0.5, 'loss': None, 'lr': None, 'time': None}
    assert rows[2]['val'] == 1 / 3.0 and rows[2]['loss'] != rows[2]['loss'] and rows[2]['time'] == 3
    with pytest.raises(AFFError) as err:
        EpochCSV(path, FIELDS + ['top5'])
    assert '\n' not in str(err.value) and 'header' in str(err.value)
    # a row cut by a crash is skipped by read_csv and removed before resuming
    with open(path, 'a') as f:
        f.write('3,0.1,0.')
    assert len(read_csv(path)) == 3
    with EpochCSV(path, FIELDS) as c:
        c.append(epoch=3, val=0.9)
    assert [r['epoch'] for r in read_csv(path)] == [0, 1, 2, 3] and read_csv(path)[3]['val'] == 0.9


# ------------------------------------------------------------------------------------------- plot

def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', head[16:24])


def test_plot_history(tmp_path, monkeypatch):
    csv_path = str(tmp_path / 'run.csv')
    with EpochCSV(csv_path, FIELDS) as c:
        for i in range(20):
            c.append(epoch=i, **_cifar_values(i))
    png = tmp_path / 'plots' / 'run.png'
    png.parent.mkdir()
    png.write_bytes(b'old contents')
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', spy)
    seg = [s for s in _parsed(COPIED, R32_FINE) if s.epochs][-1]
    ref = [('official AFF-ResNet-32 fine',) + tuple(curve(seg))]
    assert plot_history(csv_path, str(png), title='ours vs official', reference=ref) == str(png)
    assert replaced and replaced[-1][1] == str(png) and replaced[-1][0] != str(png)
    assert os.path.dirname(replaced[-1][0]) == str(png.parent)  # temp file beside the target
    assert sorted(os.listdir(png.parent)) == ['run.png']  # no temp file left
    w, h = _png_size(png)
    assert (w, h) == (1500, 450) and 20000 < png.stat().st_size < 2000000
    # records, a Segment and an ImageNet log (no lr column: two panels) work too
    out = tmp_path / 'img.png'
    plot_history(_parsed(COPIED, IAFF_X50_HEAD)[5], str(out))
    assert _png_size(out) == (1000, 450)
    plot_history(seg.epochs, str(out), reference=[('x', [0, 1], [0.1, 0.2])])
    assert _png_size(out) == (1500, 450)
    with pytest.raises(AFFError):
        plot_history([], str(out))


def test_plot_history_failure_keeps_previous_png(tmp_path, monkeypatch):
    png = tmp_path / 'keep.png'
    png.write_bytes(b'previous')
    from matplotlib.figure import Figure

    def boom(self, *a, **k):
        raise RuntimeError('disk full')

    monkeypatch.setattr(Figure, 'savefig', boom)
    with pytest.raises(RuntimeError):
        plot_history([{'epoch': 0, 'val': 0.5}], str(png))
    assert png.read_bytes() == b'previous' and os.listdir(tmp_path) == ['keep.png']


def test_module_api():
    """The log writer/parser and the CSV/plot history are two modules."""
    from utils import history
    assert set(logs.__all__) >= {'parse_log', 'parse_namespace', 'best', 'EpochLogger'}
    assert not set(logs.__all__) & {'EpochCSV', 'read_csv', 'plot_history'}
    assert set(history.__all__) == {'EpochCSV', 'read_csv', 'plot_history'}


def test_history_plot_names_the_training_metric_of_each_kind():
    from utils.history import _train_label
    assert _train_label([{'epoch': 0, 'train': 0.8, 'train_metric_name': 'rmse'}]) == 'train rmse'
    assert _train_label([{'epoch': 0, 'train': 0.8, 'pixAcc': 0.9, 'mIoU': 0.7}]) == 'train pixAcc'
    assert _train_label([{'epoch': 0, 'train': 0.8}]) == 'train metric'
