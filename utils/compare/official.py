"""The official open-aff training logs: their records (``utils/results/official_logs.csv``), where
they are, and what they contain.

An official log is known by its path inside open-aff's ``params/`` folder (``imagenet/iAFF-ResNet-50/
iaff_resnet50.log``; 806562e's ``r = 4`` folders may be spelt ``r_4``), so a log is recognised in an
open-aff checkout, in the copies this repository ships, or anywhere that keeps that tail of the path.
"""
import os
import re
from dataclasses import dataclass

from utils import metafile, paths
from utils.compare.curves import best_of, values_of
from utils.logs import parse_log

__all__ = ['OfficialLog', 'OFFICIAL_LOGS', 'BUNDLED_OFFICIAL', 'default_official_root',
           'official_roots', 'find_official', 'entry_segment', 'OfficialResult', 'load_official', 'official_entry']

#: the official logs this repository ships (gzip copies, official relative paths; installed with
#: the package)
BUNDLED_OFFICIAL = paths.OFFICIAL_LOGS


@dataclass(frozen=True)
class OfficialLog:
    """One official open-aff training log and what it corresponds to."""
    path: str          #: ``head/<official path>`` (HEAD) or ``paper/<official path>`` (806562e)
    segment: object    #: index of the segment to use; None = the last segment with epoch lines
    best: float        #: best value of that segment (4 decimals, as the log prints it)
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

    @property
    def era(self):
        """``'head'`` or ``'paper'`` (806562e)."""
        return self.path.split('/', 1)[0]

    @property
    def official_path(self):
        """The path inside open-aff's ``params/`` folder (``r_4`` as stored here)."""
        return self.path.split('/', 1)[1]


def _records():
    out = []
    for row in metafile.load('official_logs.csv'):
        row.pop('_where')
        out.append(OfficialLog(**dict(row, cells=row['cells'] or (), note=row['note'] or '')))
    return out


#: Every official log with epoch lines, by :attr:`OfficialLog.path`.  The two logs without epoch
#: lines (``cifar100_laplace..._best_Acc.log``, the 806562e ResNeXt-38 AFF ``..._askc_mixup.log``)
#: are left out.
OFFICIAL_LOGS = {o.path: o for o in _records()}


def default_official_root():
    """``$AFF_OFFICIAL_LOGS`` if set (folders separated by ``os.pathsep``), else the copies this
    repository ships."""
    return os.environ.get('AFF_OFFICIAL_LOGS') or BUNDLED_OFFICIAL


def official_roots(root):
    """The folders of a root argument: a path, an ``os.pathsep``-separated string or a list."""
    if isinstance(root, (list, tuple)):
        return [os.fspath(r) for r in root]
    return [r for r in os.fspath(root).split(os.pathsep) if r]


def find_official(root, rel):
    """The file of official log ``rel`` (an :data:`OFFICIAL_LOGS` key) under ``root``, or None.

    Each folder of ``root`` is either laid out as here (``head/...``, ``paper/...``) or is an
    open-aff checkout's ``params/`` folder (the official path, 806562e's ``r = 4`` spelt either way);
    ``.gz`` copies are accepted."""
    entry = OFFICIAL_LOGS.get(rel)
    tails = [rel]
    if entry is not None:
        tails += [entry.official_path, entry.official_path.replace('/r_4/', '/r = 4/')]
    for folder in official_roots(root):
        for tail in tails:
            for candidate in (os.path.join(folder, tail), os.path.join(folder, tail + '.gz')):
                if os.path.isfile(candidate):
                    return candidate
    return None


def _norm_parts(path):
    """Path components, with 806562e's ``r = 4`` folder spelt ``r_4`` and ``.gz`` dropped."""
    text = os.path.abspath(os.fspath(path)).replace(os.sep, '/')
    text = re.sub(r'\.gz$', '', text)
    return [re.sub(r'^r\s*=\s*(\d+)$', r'r_\1', p) for p in text.split('/') if p]


def official_entry(path):
    """The :data:`OFFICIAL_LOGS` entry whose official path ``path`` ends with, or None.  Both our
    layout (``head/...``, ``paper/...``) and open-aff's own (``.../params/imagenet/...``) match."""
    parts = _norm_parts(path)
    for entry in OFFICIAL_LOGS.values():
        tail = entry.official_path.split('/')
        if parts[-len(tail):] == tail:
            return entry
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


def entry_segment(entry, segments):
    """The segment of a parsed official log that its record names (None if absent)."""
    if entry.segment is None:
        with_epochs = [s for s in segments if s.epochs]
        return with_epochs[-1] if with_epochs else None
    return segments[entry.segment] if entry.segment < len(segments) else None


_OFFICIAL_CACHE = {}


def load_official(root, rel):
    """Parse official log ``rel`` under ``root`` (cached per file and mtime)."""
    entry = OFFICIAL_LOGS[rel]
    path = find_official(root, rel)
    if path is None:
        return OfficialResult(entry, error='not found')
    key = (os.path.abspath(path), os.path.getmtime(path))
    if key not in _OFFICIAL_CACHE:
        seg = entry_segment(entry, parse_log(path))
        result = OfficialResult(entry, file=path)
        if seg is None or not seg.epochs:
            result.error = 'no epoch lines in segment %s' % entry.segment
        else:
            values = values_of(seg.epochs, entry.metric)
            b = best_of(values, entry.metric)
            result.segment = seg.index
            if b is not None:
                result.epoch, result.best = b
            result.curve = (tuple(e for e, _ in values), tuple(v for _, v in values))
        _OFFICIAL_CACHE[key] = result
    r = _OFFICIAL_CACHE[key]
    return OfficialResult(entry, r.file, r.segment, r.best, r.epoch, r.curve, r.error)
