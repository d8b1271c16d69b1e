"""Runs: training logs (ours, or official open-aff logs in either era's format) read, placed on a
registry network and matched to the paper cells they reproduce.

Placing a log: a recognised official log (:func:`utils.compare.official.official_entry`) brings its
record (network, label mode, segment, cells); any other log is placed from its own configuration line
(:func:`place`): our registry name, or the official ``--model resnet|resnext`` + ``--askc-type`` forms
of HEAD, or 806562e's ``--model resnet50_v1b --askc-type ResGlobGlobCha``.  A log that names no network
this way (806562e's ``--scenario 'xxx'`` hard-coded the host; its CIFAR script recorded no fusion) is
*unplaced*: it is listed with the reason and matched to no cell.
"""
import os
import re
from dataclasses import dataclass, field

from net.errors import AFFError
from utils import paper_tables as PT
from utils.compare.curves import best_of, values_of
from utils.compare.official import entry_segment, official_entry
from utils.history import read_csv
from utils.logs import parse_log
from utils.reproduce import run_dir, run_key

__all__ = ['Run', 'Skipped', 'load_run', 'discover', 'place', 'registry_model', 'match_cells',
           'cell_epochs', 'to_cell_unit', 'flags']

_METRIC_OF_KIND = {'cifar': 'val', 'imagenet': 'top1_err', 'seg': 'mIoU'}
#: config keys only our scripts write: a log without them is in an official format
_OUR_KEYS = ('recipe', 'seed')


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
    official: object = None    #: the OfficialLog record when the log is an official one
    unplaced: str = ''         #: why no registry network could be named ('' = placed)

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
            if self.source != 'ours':
                return 100      # the official code: a 100-way head for both label modes
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
        """The number of epochs the log holds (a resumed log starts late)."""
        return len({e for e, _ in self.values})

    @property
    def first_epoch(self):
        return self.values[0][0] if self.values else None

    @property
    def source(self):
        """``'ours'``, ``'official HEAD'``, ``'official 806562e'`` or ``'official format'``."""
        if self.official is not None:
            return 'official ' + {'head': 'HEAD', 'paper': '806562e'}[self.official.era]
        return 'official format' if self.config and not any(
            k in self.config for k in _OUR_KEYS) else 'ours'

    @property
    def epochs_configured(self):
        n = self.config.get('num_epochs', self.config.get('epochs'))   # train_seg: --epochs
        return n if isinstance(n, int) else None

    @property
    def name(self):
        return os.path.basename(self.path)


@dataclass
class Skipped:
    """A ``*.log`` met in a directory that is no training log (or cannot be read)."""
    path: str
    why: str


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


def _apply_official(run, entry, segments):
    """An official log as a run: the record's network, labels, recipe and segment."""
    run.official = entry
    seg = entry_segment(entry, segments)
    if seg is not None and seg.config:
        run.config = dict(seg.config)
    run.config.update(model=entry.model, dataset=entry.dataset, recipe=entry.recipe)
    if entry.label_mode:
        # the HEAD fine-label runs used uncommitted code: their Namespace cannot say it
        run.config['label_mode'] = entry.label_mode
        run.config.setdefault('classes', 100)   # every official CIFAR-100 head: 100 outputs
    return (list(seg.epochs) if seg is not None else []), seg


def load_run(path):
    """A :class:`Run` from a log or an EpochCSV path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise AFFError('%s is a directory; give it without a file name to search it for logs'
                       % path)
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
        if entry is not None:
            records, last = _apply_official(run, entry, segments)
        else:
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
        run.values = values_of(records, run.metric)
        run.best = best_of(run.values, run.metric)
        run.last = run.values[-1] if run.values else None
    run.model, run.unplaced = place(run.config, run.kind)
    return run


def _is_log(name):
    return name.endswith('.log') or name.endswith('.log.gz')


def discover(paths, skipped=None):
    """The runs of the given logs / CSVs / directories (searched recursively for ``*.log``, ``.gz``
    too).  The ``*.log`` files of those directories that are no training logs are appended to
    ``skipped`` (a list) as :class:`Skipped`; a file given by name that cannot be read as a run is
    an error, and so is a directory without any training log."""
    skipped = [] if skipped is None else skipped
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = []
            for d, dirs, names in os.walk(p):
                dirs.sort()
                found += [(os.path.join(d, n), True) for n in sorted(names) if _is_log(n)]
            if not found:
                raise AFFError('%s: no *.log under this directory (give a training log, its CSV, '
                               'or a --logging-dir of the training scripts)' % p)
            files += found
        elif os.path.isfile(p):
            files.append((p, False))
        else:
            raise AFFError('%s does not exist' % p)
    runs, seen = [], set()
    for f, in_dir in files:
        try:
            run = load_run(f)
        except AFFError as e:
            if not in_dir:
                raise
            skipped.append(Skipped(f, str(e).replace(f + ': ', '').replace(f + ' ', '')))
            continue
        key = os.path.abspath(run.path)
        if key in seen:
            continue
        seen.add(key)
        run.index = len(runs) + 1
        runs.append(run)
    if not runs and skipped:
        raise AFFError('%s: none of its %d *.log files is a training log (%s: %s)'
                       % (', '.join(os.fspath(p) for p in paths), len(skipped),
                          os.path.basename(skipped[0].path), skipped[0].why))
    return runs


# ----------------------------------------------------------------- the registry network of a config
_REGISTRY = None


def _registry_infos():
    global _REGISTRY
    if _REGISTRY is None:
        import net
        _REGISTRY = {name: net.get_model_info(name) for name in net.get_model_list()}
    return _REGISTRY


def registry_model(config, kind=None):
    """The registry name of a run's network, or None (:func:`place` says why)."""
    return place(config, kind)[0]


def _is_imagenet(config, kind):
    return kind == 'imagenet' or str(config.get('dataset', '')).lower() == 'imagenet'


def place(config, kind=None):
    """``(registry name, '')`` of the network a log's configuration describes, or ``(None, why)``.

    Accepted: a registry name (``model``); HEAD's ``--model resnet|resnext`` with ``--askc-type``
    (and ``--blocks``/``--channel-times`` on CIFAR, ``--num-layer`` on ImageNet); 806562e's ImageNet
    ``--model <plain v1b host> --askc-type <mode>`` (the fusion replaces the host's addition).
    """
    infos = _registry_infos()
    model, askc = config.get('model'), config.get('askc_type')
    official_format = not any(k in config for k in _OUR_KEYS)
    if not isinstance(model, str) or not model:
        if config.get('scenario') is not None:
            return None, ("an 806562e ImageNet log: its configuration (--scenario %r, --askc-type "
                          "%r) does not name the host network, which that script hard-coded"
                          % (config.get('scenario'), askc))
        if config:
            return None, ('its configuration names no network (no --model; an 806562e CIFAR '
                          'log records no fusion either)')
        return None, 'no configuration line'
    name = model.lower()
    if name in infos:
        base = infos[name]
        if official_format and isinstance(askc, str) and askc not in ('xxx', base.kwargs.get(
                'fusion')) and base.fusion == 'add':
            want = dict(base.kwargs, fusion=askc)
            hits = [n for n, i in infos.items() if i.kwargs == want]
            if len(hits) == 1:
                return hits[0], ''
            return None, ('%s with --askc-type %s: no registry network is that host with that '
                          'fusion' % (model, askc))
        return name, ''
    if model not in ('resnet', 'resnext'):
        return None, 'model %r is not in the registry (python -m utils.models lists it)' % model
    era = config.get('era') or 'head'
    if _is_imagenet(config, kind):
        depth = config.get('num_layer') or 50
        short = next((i.fusion for i in infos.values() if i.kwargs.get('fusion') == askc), None)
        if short is None:
            return None, '--askc-type %r is no fusion of the registry' % (askc,)
        name = '%s_%s%d%s%s' % (short, model, depth, '_32x4d' if model == 'resnext' else '',
                                '_v1b' if era == 'paper' else '')
        return (name, '') if name in infos else (None, 'no registry network %s' % name)
    blocks, times = config.get('blocks'), config.get('channel_times')
    if not isinstance(blocks, int) or not isinstance(times, int):
        return None, '--model %s without integer --blocks / --channel-times' % model
    want = dict(fusion=askc, layers=[blocks] * 3, start_layer=config.get('start_layer', 1),
                era=era)
    if model == 'resnet':
        want['channels'] = [c * times for c in (16, 16, 32, 64)]
    else:
        want.update(base_channels=16 * times, bottleneck_width=4,
                    cardinality={64: 32, 128: 64}.get(16 * times))
    for name, info in infos.items():
        if name.startswith('cifar_') and all(info.kwargs.get(k) == v for k, v in want.items()):
            return name, ''
    return None, ('no registry network is --model %s --askc-type %s --blocks %d '
                  '--channel-times %d (%s era)' % (model, askc, blocks, times, era))


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
    if run.official is not None:       # an official log meets the cells its record names
        return [(c, 'official log') for c in PT.CELLS if c.key in run.official.cells]
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
    elif run.first_epoch:
        out.append('the log holds epochs %d-%d only (%d of %s; resumed)'
                   % (run.first_epoch, run.last[0], run.epochs_run, n or '?'))
    elif n is not None and run.epochs_run != n:
        out.append('ran %d/%d epochs' % (run.epochs_run, n))
    conf = run.epochs_configured
    if n is not None and conf is not None and conf != n:
        out.append('configured %d epochs vs %d' % (conf, n))
    if run.seed:
        out.append('seed %d (reproduce uses 0)' % run.seed)
    return out


