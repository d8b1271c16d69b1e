"""Compare training runs of ours with the paper's tables and the official open-aff logs.

Usage:
    python -m utils.compare [RUN_DIR_OR_LOG ...] [--official DIR] [--out DIR] [--markdown FILE]

Each argument is a training log (``train_*.log``, ``.gz`` too), an EpochCSV (its ``.log`` sibling
supplies the config), or a directory searched recursively for ``train_*.log``.  Every run is
matched to the paper cells (utils/paper_tables.py) it reproduces -- by its registry model, its
dataset and the output directory utils/reproduce.py gives the cell (``logs/table4/resnet/iaff_b2``);
one run can serve several cells (Table 3 "Global + Local" = Table 4 "AFF (ours)").  The report
(markdown, on stdout) has one row per (run, cell): our best value and epoch in the paper's unit
(fractions for accuracy / mIoU, top-1 error in % for Table 5), the paper value, the official log
that produced that cell (:data:`OFFICIAL_LOGS`) and flags for everything in which our run differs
from the cell (labels, recipe, classifier width, epochs, seed).  A second table compares the
official logs with the paper for the cells no run of ours covers: without arguments the command
prints just that.  PNGs go to ``--out`` (default ``compare/``): each run's learning curve with the
official curve dashed, a Fig. 7-style accuracy-vs-b plot per scenario and Table 4 as heatmaps
(paper values; ours minus paper).

``--official`` is the root of the official logs (``head/...``, ``paper/...``; ``.gz`` copies are
read transparently).  Default: ``../shared/reference/official_logs`` next to the repository if it
exists, else the copies in ``tests/data/official_logs``.
"""
import argparse
import math
import os
import re
import sys
from dataclasses import dataclass, field

from net.errors import AFFError
from utils import paper_tables as PT
from utils.cli import run_main
from utils.logs import parse_log, read_csv
from utils.reproduce import run_dir, run_key

__all__ = ['OfficialLog', 'OFFICIAL_LOGS', 'Run', 'OfficialResult', 'Row', 'Report',
           'default_official_root', 'find_official', 'load_official', 'discover', 'load_run',
           'registry_model', 'match_cells', 'cell_epochs', 'to_cell_unit', 'flags',
           'build_report', 'markdown', 'related_section', 'write_pngs', 'main']

from utils import paths  # noqa: E402  (kept beside the constants it serves)
ROOT = paths.PACKAGE_ROOT
SHARED_OFFICIAL = os.path.join(os.path.dirname(ROOT), 'shared', 'reference', 'official_logs')
COPIED_OFFICIAL = paths.OFFICIAL_LOGS

_METRIC_OF_KIND = {'cifar': 'val', 'imagenet': 'top1_err', 'seg': 'mIoU'}
_LOWER_IS_BETTER = ('top1_err', 'top5_err')


# =========================================================================== official logs
@dataclass(frozen=True)
class OfficialLog:
    """One official open-aff training log and what it corresponds to (spec §5, §6)."""
    path: str          #: relative to the official_logs root (head/ = HEAD, paper/ = 806562e)
    segment: object    #: index of the segment to use; None = the last segment with epoch lines
    best: float        #: best value of that segment as spec §5 prints it (4 decimals)
    epoch: int         #: its epoch (0-based, as logged)
    model: str         #: our registry name of the network it trained
    dataset: str       #: 'cifar100', 'cifar10' or 'imagenet'
    label_mode: object  #: 'coarse' / 'fine' (CIFAR-100), None otherwise
    recipe: str        #: the recipe of ours closest to it ('paper', 'paper_sota', 'released')
    cells: tuple = ()  #: keys (table, row, column) of the paper cells it produced
    note: str = ''

    @property
    def metric(self):
        """The log's metric: ``val`` (top-1 accuracy) or ``top1_err``."""
        return 'top1_err' if self.dataset == 'imagenet' else 'val'


def _released(model, tag):
    for c in PT.CELLS:
        if c.table == 'released' and c.row == '%s [%s]' % (model, tag):
            return c.key
    raise KeyError('no released cell %s [%s]' % (model, tag))


_R32 = 'ASKCFuse-resnet-32-c-4-s-1'
_X38 = 'ASKCFuse-resneXt-38-c-4-s-1'
_X47 = 'ASKCFuse-resneXt-47-32x4-c-4-s-1'
_T5 = 'top-1 err.'

#: Every official log with epoch lines (spec §5; the spec's ``r = 4`` directories are ``r_4``).
#: The two logs without epoch lines (``cifar100_laplace..._best_Acc.log``, the ResNeXt-38 AFF
#: ``..._askc_mixup.log``) are left out.
OFFICIAL_LOGS = {o.path: o for o in (
    # ---- HEAD, CIFAR-100 (the released checkpoints and the from-scratch runs they resumed)
    OfficialLog('head/cifar100/AFF-ResNet-32/train_cifar100-%s.log' % _R32, None, 0.8357, 635,
                'cifar_aff_resnet32', 'cifar100', 'fine', 'released',
                (_released('cifar_aff_resnet32', 'fine'),),
                'fine labels, from scratch, 640 epochs, step 290/440, AutoAugment + mixup + LS'),
    OfficialLog('head/cifar100/AFF-ResNet-32/superclasses/train_cifar100_cifar100-%s.log' % _R32,
                None, 0.9078, 617, 'cifar_aff_resnet32', 'cifar100', 'coarse', 'released',
                (_released('cifar_aff_resnet32', 'superclass'),),
                'resumed from the 0.9031 checkpoint: cosine, warmup 20, LS, no_wd, 4 GPUs'),
    OfficialLog('head/cifar100/AFF-ResNet-32/superclasses/From_Scratch_Log_train_cifar100_'
                'cifar100-%s.log' % _R32, 0, 0.9031, 521, 'cifar_aff_resnet32', 'cifar100',
                'coarse', 'released', (),
                'segment 0: from scratch (AutoAugment, mixup, step 300/450), stopped at epoch '
                '525; its 0.9031 checkpoint started the released superclass run'),
    OfficialLog('head/cifar100/AFF-ResNeXt-38-32x4d/From_Scratch_Log_train_cifar100_cifar100-%s'
                '.log' % _X38, None, 0.9065, 625, 'cifar_aff_resnext38_32x4d', 'cifar100',
                'coarse', 'released', (),
                'from scratch (AutoAugment, mixup, step 300/450, 4 GPUs); precursor of the '
                'released checkpoint'),
    OfficialLog('head/cifar100/AFF-ResNeXt-38-32x4d/train_cifar100-%s.log' % _X38, None, 0.9123,
                621, 'cifar_aff_resnext38_32x4d', 'cifar100', 'coarse', 'released',
                (_released('cifar_aff_resnext38_32x4d', 'superclass'),),
                'resumed from 0.9066: step 280/430, LS'),
    OfficialLog('head/cifar100/AFF-ResNeXt-47-32x4d/superclass/From_Scratch_Log_train_cifar100-'
                'ASKCFuse-resneXt-47-c-4-s-1.log', None, 0.9091, 634, 'cifar_aff_resnext47_32x4d',
                'cifar100', 'coarse', 'released', (),
                'from scratch (LS, step 280/430, 4 GPUs); precursor of the released checkpoint'),
    OfficialLog('head/cifar100/AFF-ResNeXt-47-32x4d/superclass/train_cifar100-%s.log' % _X47,
                None, 0.9184, 607, 'cifar_aff_resnext47_32x4d', 'cifar100', 'coarse',
                'released', (_released('cifar_aff_resnext47_32x4d', 'superclass'),),
                'resumed from 0.9147 (itself resumed from 0.9091), step'),
    OfficialLog('head/cifar100/AFF-ResNeXt-47-32x4d/train_cifar100-%s.log' % _X47, 5, 0.8538,
                605, 'cifar_aff_resnext47_32x4d', 'cifar100', 'fine', 'released',
                (_released('cifar_aff_resnext47_32x4d', 'fine'),),
                'segment 5: fine labels, from scratch, 2 GPUs, step 290/440 (segments 0-2 are '
                'the superclass resumes)'),
    # ---- HEAD, ImageNet (240 epochs, 4 x 128, mixup 0.2, LS, no_wd, last_gamma, fp16)
    OfficialLog('head/imagenet/AFF-ResNet-50/aff_resnet50.log', None, 0.2028, 235,
                'aff_resnet50', 'imagenet', None, 'released',
                (_released('aff_resnet50', 'head'), ('HEAD-README', 'AFF-ResNet-50', _T5)),
                '240 epochs, 4 x 128, mixup 0.2 (off for the last 5), LS, no_wd, fp16'),
    OfficialLog('head/imagenet/iAFF-ResNet-50/iaff_resnet50.log', None, 0.2022, 238,
                'iaff_resnet50', 'imagenet', None, 'released',
                (_released('iaff_resnet50', 'head'), ('HEAD-README', 'iAFF-ResNet-50', _T5)),
                'same recipe as AFF-ResNet-50'),
    OfficialLog('head/imagenet/AFF-ResNeXt-50/aff_resnext50.log', None, 0.2028, 231,
                'aff_resnext50_32x4d', 'imagenet', None, 'released',
                (_released('aff_resnext50_32x4d', 'head'),),
                'same recipe; its README row is commented out'),
    OfficialLog('head/imagenet/iAFF-ResNeXt-50/iaff_resnext50.log', 5, 0.1978, 238,
                'iaff_resnext50_32x4d', 'imagenet', None, 'released',
                (_released('iaff_resnext50_32x4d', 'head'),
                 ('HEAD-README', 'iAFF-ResNeXt-50-32x4d', _T5)),
                'segment 5: the last of 6 starts (the earlier ones aborted)'),
    # ---- 806562e, ImageNet: Table 3's ImageNet column (ablations, no mixup) and Table 5
    OfficialLog('paper/imagenet/ablation/resnet50_v1b_GlobGlob_div16.log', None, 0.2232, 158,
                'globalglobal_resnet50_v1b', 'imagenet', None, 'paper',
                (('3', 'Global + Global', 'ImageNet'),),
                'Global + Global, r=16, 160 epochs, 2 x 128, no mixup'),
    OfficialLog('paper/imagenet/ablation/resnet50_v1b_LocaLoca_div16.1.log', None, 0.2200, 158,
                'locallocal_resnet50_v1b', 'imagenet', None, 'paper',
                (('3', 'Local + Local', 'ImageNet'),), 'Local + Local, same recipe'),
    OfficialLog('paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_div16_resume.log', None,
                0.2162, 155, 'aff_resnet50_v1b', 'imagenet', None, 'paper',
                (('3', 'Global + Local', 'ImageNet'),),
                'Global + Local (AFF) ablation, no mixup; resumed at epoch 65 (epochs 65-159)'),
    OfficialLog('paper/imagenet/sota/AFF-ResNet-50/resnet50_v1b_best_AFF_mixup.log', None,
                0.2090, 157, 'aff_resnet50_v1b', 'imagenet', None, 'paper_sota',
                (('5', 'AFF-ResNet-50 (ours)', _T5),),
                'last of 21 starts: 160 epochs, 2 x 120, mixup 0.2, LS, no_wd, last_gamma, fp16'),
    OfficialLog('paper/imagenet/sota/iAFF-ResNet-50/resnet50_v1b_best_iAFF.log', None, 0.2043,
                178, 'iaff_resnet50_v1b', 'imagenet', None, 'paper_sota',
                (('5', 'iAFF-ResNet-50 (ours)', _T5),), '180 epochs (Table 2 says 160), 2 x 96'),
    OfficialLog('paper/imagenet/sota/AFF-ResNeXt-50-32x4d/resnext50_32x4d_aff_best.log', None,
                0.2086, 152, 'aff_resnext50_32x4d_v1b', 'imagenet', None, 'paper_sota',
                (('5', 'AFF-ResNeXt-50-32x4d (ours)', _T5),), '160 epochs, 4 x 128'),
    OfficialLog('paper/imagenet/sota/iAFF-ResNeXt-50-32x4d/resnext50_32x4d_iaff_best.log', None,
                0.2025, 159, 'iaff_resnext50_32x4d_v1b', 'imagenet', None, 'paper_sota',
                (('5', 'iAFF-ResNeXt-50-32x4d (ours)', _T5),), '160 epochs, 4 x 128'),
    # ---- 806562e, CIFAR (SOTA runs with mixup; no table of the paper prints them)
    OfficialLog('paper/cifar100/sota/resnet-32-aff-host/r_4/train_cifar100_resnet_v2_askc_'
                'blocks_5_channel_times_4_start_layer_1_mixup.log', None, 0.8967, 381,
                'cifar_aff_resnet32_paper', 'cifar100', 'coarse', 'paper_sota', (),
                'the submitted paper\'s CIFAR-100 AFF-ResNet-32 run (b5, x4, 400 epochs, mixup) '
                '= recipe paper_sota'),
    OfficialLog('paper/cifar100/sota/resnext29_32x4d_aff-host/r_4/train_cifar100_resnext29_'
                '32x4d_askc_mixup.log', None, 0.8973, 638, 'cifar_aff_resnext29_32x4d_paper',
                'cifar100', 'coarse', 'paper_sota', (),
                '640 epochs, 2 GPUs; its Namespace says model=\'resnext29_16x64d\''),
    OfficialLog('paper/cifar100/sota/resnext38_32x4d_iaff-host/train_cifar100_resnext38_32x4d_'
                'iaff_mixup.log', None, 0.8953, 639, 'cifar_iaff_resnext38_32x4d_paper',
                'cifar100', 'coarse', 'paper_sota', (),
                '640 epochs, 4 GPUs (segment 0 aborted at epoch 6)'),
    OfficialLog('paper/cifar10/resnet-32-askc-host/r_4/train_cifar10_resnet_v2_askc_blocks_5_'
                'channel_times_4_start_layer_1_mixup.log', 1, 0.9626, 387,
                'cifar_aff_resnet32_paper', 'cifar10', None, 'paper_sota', (),
                'CIFAR-10; segment 1 (lr 0.02, 400 epochs); segment 0 (lr 0.2) aborted at 36'),
    OfficialLog('paper/cifar10/resnext29_32x4d_askc/train_cifar10_resnext29_32x4d_askc_mixup.log',
                None, 0.9705, 592, 'cifar_aff_resnext29_32x4d_paper', 'cifar10', None,
                'paper_sota', (), 'CIFAR-10; 640 epochs, step 300/450, 4 GPUs'),
)}


def default_official_root():
    """``../shared/reference/official_logs`` next to the repository, else the test copies."""
    return SHARED_OFFICIAL if os.path.isdir(SHARED_OFFICIAL) else COPIED_OFFICIAL


def find_official(root, rel):
    """The file of official log ``rel`` under ``root`` (``.gz`` copy accepted), or None."""
    for candidate in (os.path.join(root, rel), os.path.join(root, rel + '.gz')):
        if os.path.isfile(candidate):
            return candidate
    return None


@dataclass
class OfficialResult:
    """An :class:`OfficialLog` as found under a root: its file, segment, best value and curve."""
    entry: OfficialLog
    file: object = None        #: None when the log is not under the root
    segment: object = None     #: index of the segment used
    best: object = None        #: best value (the log's metric, unrounded)
    epoch: object = None
    curve: tuple = ((), ())    #: (epochs, values) of that segment
    error: str = ''

    @property
    def found(self):
        return self.file is not None and self.best is not None

    @property
    def label(self):
        seg = '' if self.segment is None else ' seg%d' % self.segment
        return 'official %s%s' % (os.path.basename(self.entry.path), seg)


_OFFICIAL_CACHE = {}


def load_official(root, rel):
    """Parse official log ``rel`` under ``root`` (cached per file and mtime)."""
    entry = OFFICIAL_LOGS[rel]
    path = find_official(root, rel)
    if path is None:
        return OfficialResult(entry, error='not found')
    key = (os.path.abspath(path), os.path.getmtime(path))
    if key not in _OFFICIAL_CACHE:
        segs = parse_log(path)
        with_epochs = [s for s in segs if s.epochs]
        if entry.segment is None:
            seg = with_epochs[-1] if with_epochs else None
        else:
            seg = segs[entry.segment] if entry.segment < len(segs) else None
        result = OfficialResult(entry, file=path)
        if seg is None or not seg.epochs:
            result.error = 'no epoch lines in segment %s' % entry.segment
        else:
            values = _values(seg.epochs, entry.metric)
            b = _best_of(values, entry.metric)
            result.segment = seg.index
            if b is not None:
                result.epoch, result.best = b
            result.curve = (tuple(e for e, _ in values), tuple(v for _, v in values))
        _OFFICIAL_CACHE[key] = result
    r = _OFFICIAL_CACHE[key]
    return OfficialResult(entry, r.file, r.segment, r.best, r.epoch, r.curve, r.error)


# =========================================================================== runs
def _values(records, metric):
    """``[(epoch, value)]`` of a metric over records (EpochRecord or CSV row dicts)."""
    out = []
    for rec in records:
        value = rec.get(metric) if hasattr(rec, 'get') else None
        epoch = rec.get('epoch') if isinstance(rec, dict) else rec.epoch
        if isinstance(value, bool) or not isinstance(value, (int, float)) or epoch is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        out.append((int(epoch), float(value)))
    return out


def _best_of(values, metric):
    """``(epoch, value)`` of the best value (earliest on ties), or None."""
    found = None
    lower = metric in _LOWER_IS_BETTER
    for epoch, value in values:
        if found is None or (value < found[1] if lower else value > found[1]):
            found = (epoch, value)
    return found


@dataclass
class Run:
    """One training run of ours: a log (and/or its CSV) with its config and results."""
    path: str                  #: the log (or the CSV when there is no log)
    csv: object = None         #: the EpochCSV next to it, if any
    config: dict = field(default_factory=dict)
    kind: str = 'unknown'
    metric: object = None
    values: list = field(default_factory=list)   #: [(epoch, value)] of the run (resumes merged)
    best: object = None        #: (epoch, value)
    last: object = None        #: (epoch, value)
    model: object = None       #: registry name (None if unknown)
    index: int = 0             #: 1-based position in the report
    cells: list = field(default_factory=list)    #: matched paper cells

    @property
    def dir(self):
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def raw_model(self):
        return self.config.get('model')

    @property
    def dataset(self):
        ds = self.config.get('dataset')
        if ds:
            return str(ds).lower()
        return {'imagenet': 'imagenet', 'seg': 'stopsign'}.get(self.kind)

    @property
    def label_mode(self):
        if self.dataset != 'cifar100':
            return None
        # without a label_mode: Gluon's CIFAR100 default (fine_label=False), as the official runs
        return self.config.get('label_mode') or 'coarse'

    @property
    def head_classes(self):
        classes = self.config.get('classes')
        if isinstance(classes, int) and classes > 0:
            return classes
        if self.dataset == 'cifar100':
            return 20 if self.label_mode == 'coarse' else 100
        return None

    @property
    def recipe(self):
        return self.config.get('recipe')

    @property
    def seed(self):
        seed = self.config.get('seed')
        return seed if isinstance(seed, int) else None

    @property
    def epochs_run(self):
        return (self.values[-1][0] + 1) if self.values else 0

    @property
    def epochs_configured(self):
        n = self.config.get('num_epochs', self.config.get('epochs'))   # train_seg: --epochs
        return n if isinstance(n, int) else None

    @property
    def name(self):
        return os.path.basename(self.path)


def _chain(segments):
    """The records of the run: the last segment with epochs, extended back through the segments
    it resumed (a segment starting at epoch N > 0 continues the previous one)."""
    with_epochs = [s for s in segments if s.epochs]
    if not with_epochs:
        return [], segments[-1] if segments else None
    chain = [with_epochs[-1]]
    for seg in reversed(with_epochs[:-1]):
        start = chain[0].epochs[0].epoch
        if start > 0 and seg.epochs[0].epoch < start:
            chain.insert(0, seg)
        else:
            break
    by_epoch = {}
    for seg in chain:
        for rec in seg.epochs:
            by_epoch[rec.epoch] = rec
    return [by_epoch[e] for e in sorted(by_epoch)], chain[-1]


def _config_of(segments):
    for seg in reversed(segments):
        if seg.config:
            return dict(seg.config)
    return {}


def official_entry(path):
    """The :data:`OFFICIAL_LOGS` entry whose relative path ``path`` ends with (``.gz`` copies
    included), or None."""
    norm = os.path.abspath(os.fspath(path)).replace(os.sep, '/')
    if norm.endswith('.gz'):
        norm = norm[:-len('.gz')]
    for rel, entry in OFFICIAL_LOGS.items():
        if norm.endswith('/' + rel):
            return entry
    return None


def load_run(path):
    """A :class:`Run` from a log or an EpochCSV path."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AFFError('%s does not exist' % path)
    csv_path, log_path = None, None
    if path.endswith('.csv'):
        csv_path = path
        stem = path[:-len('.csv')]
        log_path = next((p for p in (stem + '.log', stem + '.log.gz') if os.path.isfile(p)), None)
    else:
        log_path = path
        stem = re.sub(r'\.log(\.gz)?$', '', path)
        csv_path = stem + '.csv' if os.path.isfile(stem + '.csv') else None
    run = Run(path=log_path or csv_path, csv=csv_path)
    records = []
    if log_path is not None:
        try:
            segments = parse_log(log_path)
        except (OSError, UnicodeError, EOFError) as e:
            raise AFFError('%s: cannot read the log (%s)' % (log_path, e)) from None
        run.config = _config_of(segments)
        entry = official_entry(log_path)
        if entry is not None and entry.label_mode and 'label_mode' not in run.config:
            # an official log given as a run: its label mode is known (the HEAD fine-label
            # runs used uncommitted code, so their Namespace line cannot say it)
            run.config['label_mode'] = entry.label_mode
            run.config.setdefault('classes', 100)   # every official CIFAR-100 head: 100 outputs
        records, last = _chain(segments)
        if not records and not any(seg.config for seg in segments) and csv_path is None:
            raise AFFError('%s is not a training log: it has no Namespace(...) configuration line '
                           'and no epoch line' % log_path)
        run.kind = last.kind if last is not None else 'unknown'
    if not records and csv_path is not None:
        records = read_csv(csv_path)
        keys = set(k for row in records for k, v in row.items() if v is not None)
        run.kind = ('seg' if 'mIoU' in keys else 'imagenet' if 'top1_err' in keys
                    else 'cifar' if 'val' in keys else run.kind)
    if run.kind == 'unknown':
        ds = str(run.config.get('dataset', '')).lower()
        run.kind = 'cifar' if ds.startswith('cifar') or ds == 'digits' else run.kind
    run.metric = _METRIC_OF_KIND.get(run.kind)
    if run.metric is not None:
        run.values = _values(records, run.metric)
        run.best = _best_of(run.values, run.metric)
        run.last = run.values[-1] if run.values else None
    run.model = registry_model(run.config, run.kind)
    return run


def _is_log(name):
    return name.startswith('train_') and (name.endswith('.log') or name.endswith('.log.gz'))


def discover(paths):
    """Runs of the given logs / CSVs / directories (searched recursively for ``train_*.log``)."""
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = []
            for d, dirs, names in os.walk(p):
                dirs.sort()
                found += [os.path.join(d, n) for n in sorted(names) if _is_log(n)]
            if not found:
                raise AFFError('%s: no train_*.log under this directory (give a training log, '
                               'its CSV, or a --logging-dir of train_cifar.py)' % p)
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise AFFError('%s does not exist' % p)
    runs, seen = [], set()
    for f in files:
        run = load_run(f)
        key = os.path.abspath(run.path)
        if key in seen:
            continue
        seen.add(key)
        run.index = len(runs) + 1
        runs.append(run)
    return runs


# ----------------------------------------------------------------- the registry name of a config
_REGISTRY = None


def _registry_infos():
    global _REGISTRY
    if _REGISTRY is None:
        import net
        _REGISTRY = {name: net.get_model_info(name) for name in net.get_model_list()}
    return _REGISTRY


def registry_model(config, kind=None):
    """The registry name of a run's network: ``model`` itself, or the registry network that the
    official ``--model resnet`` / ``resnext`` form (askc_type, blocks, channel_times, ...)
    builds."""
    infos = _registry_infos()
    model = config.get('model')
    if not isinstance(model, str):
        return None
    if model.lower() in infos:
        return model.lower()
    if model not in ('resnet', 'resnext'):
        return None
    askc = config.get('askc_type')
    era = config.get('era') or 'head'
    if kind == 'imagenet' or str(config.get('dataset', '')).lower() == 'imagenet':
        depth = config.get('num_layer') or 50
        short = next((i.fusion for i in infos.values() if i.kwargs.get('fusion') == askc), None)
        if short is None:
            return None
        name = '%s_%s%d%s%s' % (short, model, depth, '_32x4d' if model == 'resnext' else '',
                                '_v1b' if era == 'paper' else '')
        return name if name in infos else None
    blocks, times = config.get('blocks'), config.get('channel_times')
    if not isinstance(blocks, int) or not isinstance(times, int):
        return None
    want = dict(fusion=askc, layers=[blocks] * 3, start_layer=config.get('start_layer', 1),
                era=era)
    if model == 'resnet':
        want['channels'] = [c * times for c in (16, 16, 32, 64)]
    else:
        want.update(base_channels=16 * times, bottleneck_width=4,
                    cardinality={64: 32, 128: 64}.get(16 * times))
    for name, info in infos.items():
        if name.startswith('cifar_') and all(info.kwargs.get(k) == v for k, v in want.items()):
            return name
    return None


# =========================================================================== matching
def _training_cells():
    return [c for c in PT.CELLS if run_key(c) is not None]


def _path_endswith(path, tail):
    parts = [p for p in os.path.normpath(path).split(os.sep) if p]
    want = [p for p in tail.split('/') if p]
    return len(parts) >= len(want) and parts[-len(want):] == want


def match_cells(run):
    """``[(cell, how)]`` the run reproduces; ``how`` is 'directory', 'model' or 'directory+model'.

    A cell matches by the reproduce naming of the run's directory (``run_dir(cell, seed)``) or by
    the registry model and dataset.  Among the model matches, cells whose label mode and recipe
    agree with the run are preferred (a fine-label run of AFF-ResNet-32 is the released fine
    checkpoint's, not the superclass one's); when none agrees every model match is kept (flagged).
    """
    seed = run.seed or 0
    by_dir, by_model = [], []
    for c in _training_cells():
        if _path_endswith(run.dir, run_dir(c, seed)):
            by_dir.append(c)
        if run.model is not None and c.model == run.model and c.dataset == run.dataset:
            by_model.append(c)
    for same in (lambda c: c.label_mode == run.label_mode and c.recipe == run.recipe,
                 lambda c: c.label_mode == run.label_mode):
        preferred = [c for c in by_model if same(c)]
        if preferred:
            by_model = preferred
            break
    out = []
    for c in PT.CELLS:  # table order
        d, m = c in by_dir, c in by_model
        if d or m:
            out.append((c, 'directory+model' if d and m else 'directory' if d else 'model'))
    return out


def cell_epochs(cell):
    """The number of epochs behind a cell (its note, Table 2, or the released recipe)."""
    m = re.search(r'(\d+) epochs', cell.note)
    if m:
        return int(m.group(1))
    if cell.recipe == 'released' and cell.dataset == 'cifar100':
        from utils.recipes import CIFAR_RECIPES
        return CIFAR_RECIPES['released']['num_epochs']
    if cell.scenario in PT.TABLE2:
        return PT.TABLE2[cell.scenario]['epochs']
    return None


def to_cell_unit(value, metric, cell):
    """A value of a log metric (``val``, ``top1_err``, ``mIoU``; fractions) in the cell's unit."""
    if value is None:
        return None
    if cell.metric == 'accuracy' and metric == 'top1_err':
        value = 1.0 - value
    elif cell.metric == 'top1_err' and metric == 'val':
        value = 1.0 - value
    return value * 100.0 if cell.unit == 'percent' else value


def _who(cell):
    return {'released': 'the released checkpoint', 'HEAD-README': 'the README'}.get(
        cell.table, 'the paper')


def flags(run, cell):
    """What differs between our run and the cell (list of short strings)."""
    out, who = [], _who(cell)
    if run.model is not None and cell.model and run.model != cell.model:
        out.append('model %s vs %s' % (run.model, cell.model))
    elif run.model is None and cell.model:
        out.append('model %s not in the registry (cell: %s)' % (run.raw_model, cell.model))
    if run.dataset and cell.dataset and run.dataset != cell.dataset:
        out.append('dataset %s vs %s' % (run.dataset, cell.dataset))
    if cell.label_mode and run.label_mode and run.label_mode != cell.label_mode:
        out.append("%s labels vs %s's %s" % (run.label_mode, who.replace('the ', '', 1),
                                              cell.label_mode))
    if cell.recipe:
        if run.recipe is None:
            out.append('recipe not recorded vs %s' % cell.recipe)
        elif run.recipe != cell.recipe:
            out.append('recipe %s vs %s' % (run.recipe, cell.recipe))
    want_classes = {'cifar100': 100, 'imagenet': 1000}.get(cell.dataset)
    if want_classes and run.head_classes and run.head_classes != want_classes:
        out.append('%d-output head vs %s\'s %d' % (run.head_classes, who.replace('the ', '', 1),
                                                  want_classes))
    n = cell_epochs(cell)
    if not run.values:
        out.append('no finished epoch')
    elif n is not None and run.epochs_run != n:
        out.append('ran %d/%d epochs' % (run.epochs_run, n))
    conf = run.epochs_configured
    if n is not None and conf is not None and conf != n:
        out.append('configured %d epochs vs %d' % (conf, n))
    if run.seed:
        out.append('seed %d (reproduce uses 0)' % run.seed)
    return out


# =========================================================================== the report
@dataclass
class Row:
    """One (run, cell) comparison."""
    run: Run
    cell: object
    how: str
    ours: object            #: best value in the cell's unit (None without epochs)
    epoch: object
    official: object        #: OfficialResult of the cell's official log, or None
    flags: list

    @property
    def delta_paper(self):
        if self.ours is None or self.cell.value is None:
            return None
        return self.ours - self.cell.value

    @property
    def official_value(self):
        o = self.official
        if o is None or not o.found:
            return None
        return to_cell_unit(o.best, o.entry.metric, self.cell)

    @property
    def delta_official(self):
        ov = self.official_value
        return None if self.ours is None or ov is None else self.ours - ov


@dataclass
class Report:
    runs: list
    rows: list                 #: Row per (run, cell)
    unmatched: list            #: runs without a cell
    official_root: str
    official: dict             #: rel path -> OfficialResult (every entry of OFFICIAL_LOGS)

    def official_of(self, cell):
        for rel, entry in OFFICIAL_LOGS.items():
            if cell.key in entry.cells:
                return self.official[rel]
        return None

    def primary(self):
        """cell key -> the Row of the run that represents ours for that cell (fewest flags,
        then most epochs, then best value)."""
        out = {}
        for row in self.rows:
            if row.ours is None:
                continue
            lower = row.cell.metric == 'top1_err'
            rank = (len(row.flags), -row.run.epochs_run, row.ours if lower else -row.ours)
            if row.cell.key not in out or rank < out[row.cell.key][0]:
                out[row.cell.key] = (rank, row)
        return {k: v[1] for k, v in out.items()}


def build_report(runs, official_root):
    official = {rel: load_official(official_root, rel) for rel in OFFICIAL_LOGS}
    report = Report(runs=list(runs), rows=[], unmatched=[], official_root=official_root,
                    official=official)
    for run in report.runs:
        matched = match_cells(run)
        run.cells = [c for c, _ in matched]
        if not matched:
            report.unmatched.append(run)
        for cell, how in matched:
            epoch, value = run.best if run.best else (None, None)
            report.rows.append(Row(run, cell, how, to_cell_unit(value, run.metric, cell), epoch,
                                   report.official_of(cell), flags(run, cell)))
    return report


# ----------------------------------------------------------------------------- markdown
def _digits(cell):
    return 2 if cell.unit == 'percent' else 4


def _num(value, cell):
    return '—' if value is None else '%.*f' % (_digits(cell), value)


def _delta(value, cell):
    if value is None:
        return '—'
    text = '%+.*f' % (_digits(cell), value)
    return '%.*f' % (_digits(cell), 0.0) if float(text) == 0 else text


def _cell_name(cell):
    return 'Table %s / %s / %s' % (cell.table, cell.row, cell.column)


def _esc(text):
    return str(text).replace('|', '\\|')


def _table(head, rows):
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    lines += ['| ' + ' | '.join(_esc(x) for x in r) + ' |' for r in rows]
    return lines


def _rel_run(run):
    try:
        rel = os.path.relpath(run.path)
    except ValueError:
        return run.path
    return run.path if rel.startswith('..') else rel


def _official_text(o, cell):
    if o is None:
        return '—'
    if not o.found:
        return '— (%s)' % (o.error or 'not found')
    return '%s @%d' % (_num(to_cell_unit(o.best, o.entry.metric, cell), cell), o.epoch)


def _official_name(o):
    seg = '' if o.entry.segment is None else ' (segment %d)' % o.entry.segment
    return '%s%s' % (o.entry.path, seg)


def markdown(report):
    """The report as markdown text."""
    out = ['# AFF reproduction: ours vs the paper vs the official logs', '',
           'Official logs: `%s`.  Values in the paper\'s unit: fractions for accuracy and mIoU, '
           'top-1 error in %% for Table 5 and the HEAD README.' % report.official_root, '']
    missing = [rel for rel in OFFICIAL_LOGS if find_official(report.official_root, rel) is None]
    if missing:
        out += ['%d of the %d official logs are not under this root (this repository ships a copy '
                'of a few; pass --official DIR with the open-aff logs for the rest): their columns '
                'read "— (not found)".' % (len(missing), len(OFFICIAL_LOGS)), '']
    if report.runs:
        out += ['## Runs (%d)' % len(report.runs), '']
        rows = []
        for run in report.runs:
            best = ('%.4f @%d' % (run.best[1], run.best[0])) if run.best else '—'
            last = ('%.4f @%d' % (run.last[1], run.last[0])) if run.last else '—'
            data = [run.dataset or '?', run.label_mode or '', (str(run.head_classes) + ' out')
                    if run.head_classes else '']
            rows.append(('#%d' % run.index, _rel_run(run), run.model or '%s (?)' % run.raw_model,
                         ' / '.join(x for x in data if x), run.recipe or '—',
                         '—' if run.seed is None else str(run.seed),
                         '%d/%s' % (run.epochs_run, run.epochs_configured or '?'),
                         '%s %s' % (run.metric or '?', best), last,
                         str(len(run.cells))))
        out += _table(('#', 'run', 'model', 'data / labels / head', 'recipe', 'seed',
                       'epochs run/configured', 'best @epoch', 'last', 'cells'), rows)
        out += ['', '## Ours vs paper', '']
        rows = []
        for r in report.rows:
            rows.append((_cell_name(r.cell), '%s (#%d)' % (r.cell.model, r.run.index),
                         '—' if r.ours is None else '%s @%d' % (_num(r.ours, r.cell), r.epoch),
                         r.cell.text, _delta(r.delta_paper, r.cell),
                         _official_text(r.official, r.cell), _delta(r.delta_official, r.cell),
                         '; '.join(r.flags) or '—'))
        for run in report.unmatched:
            rows.append(('— (no paper cell)',
                         '%s (#%d)' % (run.model or run.raw_model, run.index),
                         ('%.4f @%d' % (run.best[1], run.best[0])) if run.best else '—',
                         '—', '—', '—', '—',
                         'no paper cell for model %s, dataset %s, directory %s'
                         % (run.model or run.raw_model, run.dataset, _rel_run(run))))
        out += _table(('cell', 'model', 'ours (best @epoch)', 'paper', 'Δ ours−paper',
                       'official log best', 'Δ ours−official', 'flags'), rows)
        out.append('')
    covered = set(r.cell.key for r in report.rows)
    out += ['## Official logs vs paper' + (' (cells without a run of ours)' if report.runs else ''),
            '']
    rows = []
    for c in PT.CELLS:
        if c.key in covered:
            continue
        o = report.official_of(c)
        if o is None:
            continue
        delta = None
        if o.found and c.value is not None:
            delta = to_cell_unit(o.best, o.entry.metric, c) - c.value
        rows.append((_cell_name(c), c.model or '—', _official_name(o), _official_text(o, c),
                     c.text, _delta(delta, c), o.entry.note))
    out += _table(('cell', 'model', 'official log', 'official best @epoch', 'paper',
                   'Δ official−paper', 'note'), rows) if rows else ['(none)']
    out += ['', '## Official logs without a paper cell', '']
    rows = []
    for rel, entry in OFFICIAL_LOGS.items():
        if entry.cells:
            continue
        o = report.official[rel]
        best = ('%.4f @%d' % (o.best, o.epoch)) if o.found else '— (%s)' % o.error
        rows.append((_official_name(o), entry.model, ' / '.join(
            x for x in (entry.dataset, entry.label_mode or '') if x), entry.recipe,
            '%s %s' % (entry.metric, best), entry.note))
    out += _table(('official log', 'model', 'data / labels', 'closest recipe', 'best @epoch',
                   'note'), rows)
    out += related_section(report)
    return '\n'.join(out) + '\n'


def _percent_acc(value, cell):
    """An accuracy / top-1 error cell value (or ours in the cell's unit) as top-1 accuracy in %."""
    if value is None:
        return None
    if cell.unit == 'fraction':
        value *= 100.0
    return 100.0 - value if cell.metric == 'top1_err' else value


def related_section(report):
    """AFF / iAFF beside AFINet and ACmix: the published top-1 accuracies and parameter counts of
    every built network (and ours where a run matched), ImageNet and CIFAR-100 (100 classes)."""
    primary = report.primary()
    params = {(c.table, c.row): c for c in PT.CELLS if c.metric in ('params_M', 'params_K')}

    def rows_of(keep):
        rows = []
        for c in PT.CELLS:
            if c.model is None or c.metric not in ('accuracy', 'top1_err') or not keep(c):
                continue
            p = params.get((c.table, c.row))
            mine = primary.get(c.key)
            ours = _percent_acc(mine.ours, c) if mine else None
            paper = _percent_acc(c.value, c)
            label = '%s, %s' % (c.row, c.column) if c.table in ('AFINet-7', 'AFINet-8') else c.row
            rows.append(('Table %s' % c.table, label, c.model, c.label_mode or '—',
                         '%.2f' % paper if paper is not None else '/',
                         '%s %s' % (p.text, p.unit) if p else '—',
                         '—' if ours is None else '%.2f (#%d)' % (ours, mine.run.index)))
        return rows

    head = ('table', 'row', 'model', 'labels', 'paper top-1 acc. %', 'paper params',
            'ours top-1 acc. %')
    out = ['', '## Related methods beside AFF / iAFF (published numbers)', '',
           'AFF/iAFF (Table 5, HEAD README), AFINet (Table 5, 8) and ACmix (release README) on '
           'ImageNet; each paper trained its own baselines with its own recipe (`--recipe '
           'paper_sota`, `afinet`, `acmix`), so compare a method with its own baseline row.', '']
    out += _table(head, rows_of(lambda c: c.dataset == 'imagenet' and c.table in (
        '5', 'HEAD-README', 'AFINet-5', 'AFINet-8', 'ACmix-README')))
    out += ['', 'CIFAR-100: AFINet (Tables 4, 7) reports the 100 fine labels; of AFF only the '
            'released fine-label checkpoints are 100-class numbers (its tables are '
            '20-superclass numbers).', '']
    out += _table(head, rows_of(lambda c: c.dataset == 'cifar100' and c.label_mode == 'fine'))
    return out


# ----------------------------------------------------------------------------- plots
def _new_figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    from utils.checkpoint import atomic_write
    return atomic_write(lambda tmp: fig.savefig(tmp, format='png'), path)


def _slug(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', text).strip('-') or 'run'


def _reference_for(run, report):
    """Official curves for a run: the logs of its cells, else logs of the same network."""
    rels = []
    for rel, entry in OFFICIAL_LOGS.items():
        if any(c.key in entry.cells for c in run.cells):
            rels.append(rel)
    if not rels:
        same = [rel for rel, e in OFFICIAL_LOGS.items()
                if e.model == run.model and e.dataset == run.dataset
                and e.label_mode == run.label_mode]
        pref = [rel for rel in same if OFFICIAL_LOGS[rel].recipe == run.recipe]
        rels = pref or same
    out = []
    for rel in rels:
        o = report.official[rel]
        if not o.found or o.entry.metric != run.metric:
            continue
        out.append((o.label, list(o.curve[0]), list(o.curve[1])))
    return out


def _run_png(run, report, out_dir):
    from utils.logs import plot_history
    tail = '-'.join([p for p in os.path.normpath(run.dir).split(os.sep) if p][-3:])
    path = os.path.join(out_dir, 'run%d_%s.png' % (run.index, _slug(tail)))
    source = run.csv if run.csv and os.path.isfile(run.csv) else run.path
    title = '#%d %s (%s)' % (run.index, run.model or run.raw_model or run.name,
                             ', '.join(_cell_name(c) for c in run.cells[:2]) or 'no paper cell')
    try:
        return plot_history(source, path, title=title, reference=_reference_for(run, report))
    except AFFError:
        return None  # nothing to plot yet (no epoch, no official curve)


_FIG7_SCENARIOS = (('resnet', 'ResNet-20-b, CIFAR-100 (short skip)', 'accuracy'),
                   ('inception', 'Inception-ResNet-20-b, CIFAR-100 (same layer)', 'accuracy'),
                   ('fpn', 'ResNet-20-b + FPN, StopSign (long skip)', 'mIoU'))


def _fusion_colors(rows):
    import matplotlib
    cmap = matplotlib.colormaps['tab10']
    return {row: cmap(i % 10) for i, row in enumerate(rows)}


def fig7_png(report, path):
    """Fig. 7 style: metric vs b per fusion of Table 4, per scenario; paper dashed, ours solid."""
    from matplotlib.lines import Line2D
    t4 = PT.cells(table='4')
    rows = list(dict.fromkeys(c.row for c in t4))
    scenarios = [s for s in _FIG7_SCENARIOS if any(c.scenario == s[0] for c in t4)]
    colors = _fusion_colors(rows)
    primary = report.primary()
    fig = _new_figure(5.2 * len(scenarios), 4.6)
    axes = fig.subplots(1, len(scenarios), squeeze=False)[0]
    n_ours = 0
    for ax, (scenario, title, ylabel) in zip(axes, scenarios):
        for row in rows:
            cells = sorted((c for c in t4 if c.row == row and c.scenario == scenario),
                           key=lambda c: c.b)
            pts = [(c.b, c.value) for c in cells if c.value is not None]
            ax.plot([b for b, _ in pts], [v for _, v in pts], linestyle='--', marker='o',
                    markersize=3, color=colors[row], alpha=0.8)
            ours = [(c.b, primary[c.key].ours) for c in cells if c.key in primary]
            if ours:
                n_ours += len(ours)
                ax.plot([b for b, _ in ours], [v for _, v in ours], linestyle='-', marker='s',
                        markersize=6, markeredgecolor='black', color=colors[row], linewidth=2)
        ax.set_xticks([1, 2, 3, 4])
        ax.set_xlabel('b (blocks per stage)')
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize='medium')
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors[r], marker='o', label=r) for r in rows]
    handles += [Line2D([], [], color='black', linestyle='--', label='paper (Table 4)'),
                Line2D([], [], color='black', linestyle='-', marker='s',
                       label='ours (%d cells)' % n_ours if n_ours else 'ours (no runs yet)')]
    fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize='small',
               frameon=False)
    fig.suptitle('Table 4 / Fig. 7: fusion vs network depth b')
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _table4_grid():
    t4 = PT.cells(table='4')
    rows = list(dict.fromkeys(c.row for c in t4))
    cols = [(s, b) for s in ('inception', 'resnet', 'fpn') for b in (1, 2, 3, 4)
            if any(c.scenario == s and c.b == b for c in t4)]
    by = {(c.row, c.scenario, c.b): c for c in t4}
    return rows, cols, by


_SHORT_SCEN = {'inception': 'Incep', 'resnet': 'ResNet', 'fpn': 'FPN'}


def _heatmap_axes(ax, rows, cols):
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(['%s b%d' % (_SHORT_SCEN[s], b) for s, b in cols], rotation=45,
                       ha='right', fontsize='small')
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize='small')
    for x in (3.5, 7.5):
        if x < len(cols) - 1:
            ax.axvline(x, color='white', linewidth=3)


def table4_paper_png(path):
    """Table 4 as a heatmap: colour = rank within the column (value - min) / (max - min)."""
    import numpy as np
    import matplotlib
    rows, cols, by = _table4_grid()
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            if c is not None and c.value is not None:
                grid[i, j] = c.value
    norm = np.full_like(grid, np.nan)
    for j in range(len(cols)):
        col = grid[:, j]
        lo, hi = np.nanmin(col), np.nanmax(col)
        norm[:, j] = (col - lo) / (hi - lo) if hi > lo else 0.5
    fig = _new_figure(11, 4.8)
    ax = fig.subplots()
    cmap = matplotlib.colormaps['viridis'].with_extremes(bad='#dddddd')
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, aspect='auto')
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            text = c.text if c is not None else ''
            light = not np.isnan(norm[i, j]) and norm[i, j] < 0.6
            ax.text(j, i, text, ha='center', va='center', fontsize=7,
                    color='white' if light else 'black')
    _heatmap_axes(ax, rows, cols)
    fig.colorbar(im, ax=ax, label='within-column position (0 = worst, 1 = best)')
    ax.set_title('Table 4 (paper): accuracy (Incep, ResNet; CIFAR-100) and mIoU (FPN; StopSign)')
    fig.tight_layout()
    return _save(fig, path)


def table4_diff_png(report, path):
    """Ours minus paper on the Table 4 grid, where runs exist ('*' = the run is flagged)."""
    import numpy as np
    import matplotlib
    rows, cols, by = _table4_grid()
    primary = report.primary()
    grid = np.full((len(rows), len(cols)), np.nan)
    notes = {}
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            row = primary.get(c.key) if c is not None else None
            if row is not None and row.delta_paper is not None:
                grid[i, j] = row.delta_paper
                notes[i, j] = '%+.3f%s' % (row.delta_paper, '*' if row.flags else '')
    finite = grid[~np.isnan(grid)]
    lim = max(0.01, float(np.abs(finite).max())) if finite.size else 0.01
    fig = _new_figure(11, 4.8)
    ax = fig.subplots()
    cmap = matplotlib.colormaps['RdBu'].with_extremes(bad='#eeeeee')
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-lim, vmax=lim, aspect='auto')
    for i in range(len(rows)):
        for j in range(len(cols)):
            c = by.get((rows[i], cols[j][0], cols[j][1]))
            if (i, j) in notes:
                dark = abs(grid[i, j]) > 0.6 * lim
                ax.text(j, i, notes[i, j], ha='center', va='center', fontsize=7,
                        color='white' if dark else 'black')
            else:
                ax.text(j, i, '/' if c is not None and c.value is None else '·', ha='center',
                        va='center', fontsize=7, color='#999999')
    _heatmap_axes(ax, rows, cols)
    fig.colorbar(im, ax=ax, label='ours − paper')
    ax.set_title('Table 4: ours − paper (%d cells with a run%s; * = run differs from the cell)'
                 % (len(notes), '' if notes else ' -- no runs of ours yet'))
    fig.tight_layout()
    return _save(fig, path)


def write_pngs(report, out_dir):
    """All PNGs of the report; returns their paths."""
    paths = []
    for run in report.runs:
        p = _run_png(run, report, out_dir)
        if p:
            paths.append(p)
    paths.append(fig7_png(report, os.path.join(out_dir, 'fig7_table4_vs_b.png')))
    paths.append(table4_paper_png(os.path.join(out_dir, 'table4_paper.png')))
    paths.append(table4_diff_png(report, os.path.join(out_dir, 'table4_ours_minus_paper.png')))
    return paths


# =========================================================================== CLI
def build_parser():
    p = argparse.ArgumentParser(prog='python -m utils.compare', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('runs', nargs='*', metavar='RUN_DIR_OR_LOG',
                   help='training logs, their CSVs, or directories searched for train_*.log')
    p.add_argument('--official', metavar='DIR', default=None,
                   help='root of the official logs (default: %s if it exists, else %s)'
                   % (os.path.relpath(SHARED_OFFICIAL, ROOT),
                      os.path.relpath(COPIED_OFFICIAL, ROOT)))
    p.add_argument('--out', metavar='DIR', default='compare',
                   help='PNG directory (default compare/)')
    p.add_argument('--markdown', metavar='FILE', help='also write the report to FILE')
    return p


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    root = args.official or default_official_root()
    if not os.path.isdir(root):
        raise AFFError('--official %s is not a directory (the root holding head/ and paper/)'
                       % root)
    runs = discover(args.runs)
    report = build_report(runs, root)
    text = markdown(report)
    pngs = write_pngs(report, args.out)
    text += '\n## Figures\n\n' + '\n'.join('- `%s`' % p for p in pngs) + '\n'
    if args.markdown:
        from utils.checkpoint import atomic_write

        def write(tmp):
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(text)
        atomic_write(write, args.markdown)
    sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    run_main(main)
