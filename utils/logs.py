"""Training logs in the official open-aff format: writing (ours) and parsing (ours and the official ones).

One module, so that the logs our scripts write are read back by exactly the parser that reads the
official logs (docs/official-code.md §4.5):

* CIFAR (both official commits): Python ``logging.basicConfig`` lines, i.e. prefixed ``INFO:root:``;
  a ``Namespace(...)`` line at every (re)start, then one line per epoch
  ``[Epoch N] train=F val=F loss=F time: F`` (806562e) or ``... loss=F lr: F time: F`` (HEAD);
  ``val`` is the top-1 accuracy.
* ImageNet (both): no prefix; ``Namespace(...)``; every 50 batches
  ``Epoch[E] Batch [B]<TAB>Speed: F samples/sec<TAB><metric>=F<TAB>lr=F``; per epoch
  ``[Epoch E] training: <metric>=F``, ``[Epoch E] speed: N samples/sec<TAB>time cost: F`` and
  ``[Epoch E] validation: err-top1=F err-top5=F``.
* Segmentation (ours): the CIFAR line with ``pixAcc=F mIoU=F`` after ``train=F``.  Any other
  ``key=value`` / ``key: value`` pair on an epoch line lands in ``EpochRecord.extra``.

A log is a list of *segments*: each ``Namespace`` line starts one (a resumed run appends to the same
file), lines before the first ``Namespace`` form a segment with an empty config, and an epoch number
that repeats inside a segment (a restart that did not log its config) starts a new one.

>>> segs = parse_log('logs/train_cifar100_aff_resnet32.log')        # .gz is read transparently
>>> best(segs)                                                       # (value, epoch, segment index)
Best(value=0.8357, epoch=635, segment=1)
>>> log = EpochLogger('logs/run.log', args)                          # appends a new segment
>>> log.epoch(0, train=0.07, val=0.03, loss=4.58, lr=0.2, time=29.4)

The EpochCSV beside a log and the learning-curve plot live in :mod:`utils.history`.
"""
import argparse
import ast
import gzip
import math
import numbers
import os
import re
import sys
from collections import namedtuple

from net.errors import AFFError

__all__ = ['EpochRecord', 'Segment', 'BatchRecord', 'Best', 'parse_namespace', 'parse_log', 'best',
           'curve', 'EpochLogger', 'KINDS']

KINDS = ('cifar', 'imagenet', 'seg', 'unknown')
_DEFAULT_METRIC = {'cifar': 'val', 'imagenet': 'top1_err', 'seg': 'mIoU'}
_HIGHER_IS_BETTER = {'val': True, 'mIoU': True, 'pixAcc': True, 'top1_err': False, 'top5_err': False,
                     'loss': False, 'time': False, 'train': False}  # CIFAR `train` is an RMSE
# Keys of an epoch line that map onto EpochRecord attributes (everything else goes to `extra`).
_FIELD_OF_KEY = {'train': 'train', 'val': 'val', 'loss': 'loss', 'lr': 'lr', 'time': 'time',
                 'err-top1': 'top1_err', 'err-top5': 'top5_err', 'top1_err': 'top1_err',
                 'top5_err': 'top5_err', 'speed': 'speed'}

# `LEVEL:logger:` as written by logging.basicConfig's default format (`INFO:root:` in the official logs).
_PREFIX_RE = re.compile(r'^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[^:\s]*:')
_EPOCH_RE = re.compile(r'^\[Epoch (\d+)\]\s+(.*)$')
_BATCH_RE = re.compile(r'^Epoch\[(\d+)\] Batch \[(\d+)\]\s+Speed:\s*(\S+) samples/sec\s+(.*)$')
_SPEED_RE = re.compile(r'^speed:\s*(\S+) samples/sec\s+time cost:\s*(\S+)\s*$')
_KEY = r'[A-Za-z_][\w.\-]*'
_PAIR = r'(%s)(?:=|:[ \t]*)(\S+)' % _KEY
_PAIR_RE = re.compile(_PAIR)
_PAIRS_RE = re.compile(r'^(?:%s)(?:\s+%s)*\s*$' % (_PAIR, _PAIR))
_KEY_RE = re.compile(r'^%s$' % _KEY)


# ------------------------------------------------------------------------------------------ records

class EpochRecord(object):
    """What the log says about one epoch; ``None`` for what it does not say."""

    FIELDS = ('epoch', 'train', 'val', 'loss', 'lr', 'time', 'top1_err', 'top5_err',
              'train_metric_name', 'train_metric', 'speed')
    __slots__ = FIELDS + ('extra', '_groups')

    def __init__(self, epoch, **values):
        self.epoch = int(epoch)
        for name in self.FIELDS[1:]:
            setattr(self, name, values.pop(name, None))
        self.extra = dict(values.pop('extra', None) or {})
        self.extra.update(values)
        self._groups = set()  # which kinds of line filled this record (restart detection)

    def get(self, name, default=None):
        """An attribute (``val``, ``top1_err``, ...) or an ``extra`` value (``mIoU``, ...)."""
        name = _FIELD_OF_KEY.get(name, name)
        if name in self.FIELDS:
            value = getattr(self, name)
            return default if value is None else value
        return self.extra.get(name, default)

    def as_dict(self):
        """Flat dict of what is known (``extra`` merged in), e.g. for CSV rows or plotting."""
        out = {name: getattr(self, name) for name in self.FIELDS if getattr(self, name) is not None}
        out.update(self.extra)
        return out

    def __eq__(self, other):
        return isinstance(other, EpochRecord) and self.as_dict() == other.as_dict()

    __hash__ = None

    def __repr__(self):
        return 'EpochRecord(%s)' % ', '.join('%s=%r' % kv for kv in self.as_dict().items())


BatchRecord = namedtuple('BatchRecord', 'epoch batch speed metric_name metric lr')


class Segment(object):
    """One (re)start of a run: its ``config`` and its ``epochs`` (EpochRecord list, in file order).

    ``index`` is the position in the file; ``lines`` the number of lines that belong to it (including
    its ``Namespace`` line); ``start_line`` the 1-based line number where it starts; ``namespace`` the
    raw ``Namespace(...)`` text (``None`` if the segment has none); ``implicit`` is True for a segment
    started by a repeated epoch number instead of a ``Namespace`` line; ``batches`` the ImageNet batch
    lines; ``other`` the ``(line number, text)`` of lines that are kept but not interpreted.
    """

    def __init__(self, index, config=None, namespace=None, start_line=1, implicit=False):
        self.index = index
        self.config = config if config is not None else {}
        self.namespace = namespace
        self.kind = 'unknown'
        self.epochs = []
        self.batches = []
        self.other = []
        self.lines = 0
        self.start_line = start_line
        self.implicit = implicit
        self._by_epoch = {}

    def epoch(self, number):
        """The EpochRecord of epoch ``number`` or ``None``."""
        return self._by_epoch.get(number)

    @property
    def epoch_range(self):
        """(first, last) epoch number, or ``None`` without epochs."""
        return (self.epochs[0].epoch, self.epochs[-1].epoch) if self.epochs else None

    @property
    def last(self):
        return self.epochs[-1] if self.epochs else None

    def __repr__(self):
        rng = '%d-%d' % self.epoch_range if self.epochs else '-'
        return ('Segment(index=%d, kind=%r, epochs=%s (%d), lines=%d, config keys=%d%s)'
                % (self.index, self.kind, rng, len(self.epochs), self.lines, len(self.config),
                   ', implicit' if self.implicit else ''))


# --------------------------------------------------------------------------------------- Namespace

def _strip_prefix(line):
    return _PREFIX_RE.sub('', line, count=1)


def _literal(node, src):
    """``ast.literal_eval`` of one node; what is not a literal stays as its source text."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name) and node.id in ('inf', 'nan'):
        return float(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Name) and node.operand.id == 'inf':
        return float('-inf')
    text = ast.get_source_segment(src, node)
    return text if text is not None else ast.unparse(node)


def _split_top_level(body):
    """Split ``a=1, b=[1, 2], c='x,y')...`` at top-level commas up to the closing parenthesis.

    Returns (chunks, closed): ``closed`` is False when the text ends before the call's ``)``.
    """
    chunks, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == '\\':
                i += 1
            elif ch == quote:
                quote = None
        elif ch in '\'"':
            quote = ch
        elif ch in '([{':
            depth += 1
        elif ch in ')]}':
            if depth == 0:
                chunks.append(body[start:i])
                return chunks, True
            depth -= 1
        elif ch == ',' and depth == 0:
            chunks.append(body[start:i])
            start = i + 1
        i += 1
    chunks.append(body[start:])
    return chunks, False


def _parse_namespace_partial(src):
    """Best effort for a damaged/truncated ``Namespace(`` line: every complete ``key=value``."""
    body = src[src.index('(') + 1:]
    chunks, closed = _split_top_level(body)
    if not closed:
        chunks = chunks[:-1]  # the last one was cut
    out = {}
    for chunk in chunks:
        key, sep, value = chunk.partition('=')
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            continue
        try:
            node = ast.parse(value, mode='eval').body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            out[key] = value
            continue
        out[key] = _literal(node, value)
    return out


def parse_namespace(text):
    """``"Namespace(a=1, b='x', c=None, e=[1, 2])"`` -> ``{'a': 1, 'b': 'x', 'c': None, 'e': [1, 2]}``.

    Accepts a whole log line (``INFO:root:`` prefix, trailing newline).  Values are read with
    ``ast.literal_eval``; anything else (``gpu(0)``, a class name) is kept as its source text;
    ``inf``/``nan`` become floats.  ``**{'a-b': 1}`` (argparse's form for non-identifier names) is
    merged.  A truncated line yields its complete pairs.  Raises AFFError without ``Namespace(``.
    """
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    text = _strip_prefix(text.replace('\0', '').strip())
    start = text.find('Namespace(')
    if start < 0:
        raise AFFError('not a Namespace line: %r' % text[:80])
    src = text[start:]
    try:
        tree = ast.parse(src, mode='eval')
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return _parse_namespace_partial(src)
    call = tree.body
    if not isinstance(call, ast.Call):
        return _parse_namespace_partial(src)
    out = {}
    for kw in call.keywords:
        value = _literal(kw.value, src)
        if kw.arg is not None:
            out[kw.arg] = value
        elif isinstance(value, dict):
            out.update(value)
    return out


# ------------------------------------------------------------------------------------------ parsing

def _number(text):
    try:
        return float(text)
    except ValueError:
        return text


def _pairs(text):
    """``'train=0.1 val=0.2 lr: 0.2'`` -> [('train', 0.1), ...]; ``None`` if the text is not all pairs."""
    if not _PAIRS_RE.match(text):
        return None
    return [(k, _number(v)) for k, v in _PAIR_RE.findall(text)]


def _assign(record, key, value):
    field = _FIELD_OF_KEY.get(key)
    if field is not None and field != 'speed':
        setattr(record, field, value)
    else:
        record.extra[key] = value


def _read_text(source):
    """(text, last_line_terminated) from a path (.gz or plain), bytes, text or an iterable of lines."""
    if isinstance(source, (str, os.PathLike)) and not (isinstance(source, str) and '\n' in source):
        with open(source, 'rb') as f:
            data = f.read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
    elif isinstance(source, str):
        data = source
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        items = list(source)
        if items and all(isinstance(x, (bytes, bytearray)) for x in items):
            items = [bytes(x).decode('utf-8', 'replace') for x in items]
        items = [x if isinstance(x, str) else str(x) for x in items]
        if any(x.endswith('\n') for x in items):
            data = ''.join(items)  # lines of a file: the last one may be unterminated
        else:
            data = '\n'.join(items) + ('\n' if items else '')  # a plain list of complete lines
    if isinstance(data, bytes):
        data = data.replace(b'\0', b'').decode('utf-8', 'replace')
    else:
        data = data.replace('\0', '')
    return data, data.endswith('\n') or not data


def _infer_kind(seg):
    has_batches = bool(seg.batches)
    for rec in seg.epochs:
        if 'mIoU' in rec.extra or 'pixAcc' in rec.extra:
            return 'seg'
    for rec in seg.epochs:
        if rec.top1_err is not None or rec.train_metric is not None or rec.speed is not None:
            return 'imagenet'
    if has_batches:
        return 'imagenet'
    for rec in seg.epochs:
        if rec.val is not None or rec.train is not None:
            return 'cifar'
    cfg = seg.config
    dataset = str(cfg.get('dataset', '')).lower()
    if 'cifar' in dataset:
        return 'cifar'
    if 'imagenet' in dataset or 'imagenet' in str(cfg.get('data_dir', '')).lower() \
            or 'rec_train' in cfg:
        return 'imagenet'
    if dataset:
        return 'seg'
    return 'unknown'


class _Parser(object):
    def __init__(self):
        self.segments = []
        self.cur = None

    def new_segment(self, lineno, config=None, namespace=None, implicit=False):
        self.cur = Segment(len(self.segments), config, namespace, lineno, implicit)
        self.segments.append(self.cur)

    def record_for(self, epoch, group, lineno):
        """The record of ``epoch``; a new segment if this kind of line was already seen for it."""
        seg = self.cur
        rec = seg._by_epoch.get(epoch)
        if (seg.epochs and epoch < seg.epochs[-1].epoch) or (rec is not None and group in rec._groups):
            self.new_segment(lineno, implicit=True)
            seg, rec = self.cur, None
        if rec is None:
            rec = EpochRecord(epoch)
            seg.epochs.append(rec)
            seg._by_epoch[epoch] = rec
        rec._groups.add(group)
        return rec

    def batch(self, epoch, batch, lineno):
        """Start a new segment when a batch line goes back in time (a restart without Namespace)."""
        seg = self.cur
        rec = seg._by_epoch.get(epoch)
        back = ((seg.epochs and epoch < seg.epochs[-1].epoch)
                or (rec is not None and ('training' in rec._groups or 'validation' in rec._groups))
                or (seg.batches and seg.batches[-1].epoch == epoch and batch <= seg.batches[-1].batch)
                or (seg.batches and epoch < seg.batches[-1].epoch))
        if back:
            self.new_segment(lineno, implicit=True)

    def line(self, raw, lineno, complete):
        """Interpret one line (``complete`` = it was newline-terminated)."""
        text = raw.rstrip('\r')
        body = _strip_prefix(text).strip()
        if body.startswith('Namespace(') and (complete or body.endswith(')')):
            self.new_segment(lineno, parse_namespace(body), body)
        else:
            if self.cur is None:
                self.new_segment(lineno)
            if not self.epoch_line(body, lineno, complete) and not self.batch_line(body, lineno, complete):
                if text.strip():
                    self.cur.other.append((lineno, text))
        self.cur.lines += 1  # the segment the line went to (a restart may have started a new one)

    def epoch_line(self, body, lineno, complete):
        m = _EPOCH_RE.match(body)
        if not m:
            return False
        epoch, rest = int(m.group(1)), m.group(2)
        if rest.startswith('training:'):
            pairs = _pairs(rest[len('training:'):].strip())
            if not pairs or not complete:  # an unterminated line may have lost digits
                return False
            rec = self.record_for(epoch, 'training', lineno)
            (name, value), more = pairs[0], pairs[1:]
            rec.train_metric_name, rec.train_metric = name, value
            for key, val in more:
                _assign(rec, key, val)
            return True
        if rest.startswith('speed:'):
            s = _SPEED_RE.match(rest)
            if not s:
                return False
            speed, cost = _number(s.group(1)), _number(s.group(2))
            if not isinstance(speed, float) or not isinstance(cost, float):
                return False
            rec = self.record_for(epoch, 'speed', lineno)
            rec.speed, rec.time = speed, cost
            return True
        if rest.startswith('validation:'):
            pairs = _pairs(rest[len('validation:'):].strip())
            if not pairs or not complete or not {'err-top1', 'err-top5'} <= set(k for k, _ in pairs):
                return False
            rec = self.record_for(epoch, 'validation', lineno)
            for key, val in pairs:
                _assign(rec, key, val)
            return True
        pairs = _pairs(rest)
        # The line must end with `time: F` (all official formats and ours do): a line cut short by a
        # crash is not taken for an epoch, and only the timing can be cut on an unterminated last line.
        if not pairs or pairs[-1][0] != 'time':
            return False
        rec = self.record_for(epoch, 'main', lineno)
        for key, val in pairs:
            _assign(rec, key, val)
        return True

    def batch_line(self, body, lineno, complete):
        m = _BATCH_RE.match(body)
        if not m or not complete:
            return False
        epoch, batch = int(m.group(1)), int(m.group(2))
        pairs = _pairs(m.group(4).strip())
        if pairs is None:
            return False
        self.batch(epoch, batch, lineno)
        metric_name = metric = lr = None
        for key, val in pairs:
            if key == 'lr':
                lr = val
            elif metric_name is None:
                metric_name, metric = key, val
        self.cur.batches.append(BatchRecord(epoch, batch, _number(m.group(3)), metric_name, metric, lr))
        return True


def parse_log(path_or_lines):
    """Parse a training log (ours or official) into a list of :class:`Segment`.

    ``path_or_lines``: a path (plain or gzip, detected by content), the text itself (a ``str``
    containing a newline), ``bytes``, or an iterable of lines (file object, list of strings).  NUL
    bytes are removed; an unterminated last line is used only if what it could have lost is the
    timing.  An empty input gives ``[]``.
    """
    text, terminated = _read_text(path_or_lines)
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    parser = _Parser()
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        parser.line(raw, i + 1, terminated or i < last)
    kinds = []
    for seg in parser.segments:
        seg.kind = _infer_kind(seg)
        kinds.append(seg.kind)
    # A segment that says nothing about its kind (no epochs, no config) takes the file's kind.
    known = set(k for k in kinds if k != 'unknown')
    if len(known) == 1:
        for seg in parser.segments:
            if seg.kind == 'unknown' and (seg.config or seg.epochs or seg.batches):
                seg.kind = next(iter(known))
    return parser.segments


# ------------------------------------------------------------------------------------ best / curve

class Best(namedtuple('Best', 'value epoch segment')):
    """``(value, epoch, segment index)``; ``.record`` is the EpochRecord (e.g. ``.record.top5_err``)."""

    record = None


def _metric_of(segments, metric):
    if metric is not None:
        return metric
    kinds = set(s.kind for s in segments if s.epochs)
    kinds.discard('unknown')
    if len(kinds) > 1:
        raise AFFError('best(): segments of different kinds %s; pass metric=' % sorted(kinds))
    if not kinds:
        return None
    return _DEFAULT_METRIC[kinds.pop()]


def _higher_is_better(metric, mode):
    if mode is not None:
        if mode not in ('max', 'min'):
            raise AFFError("best(): mode must be 'max' or 'min', got %r" % (mode,))
        return mode == 'max'
    if metric in _HIGHER_IS_BETTER:
        return _HIGHER_IS_BETTER[metric]
    low = metric.lower()
    return not ('err' in low or 'loss' in low or 'rmse' in low)


def best(segment_or_segments, metric=None, mode=None):
    """Best epoch: ``Best(value, epoch, segment index)`` or ``None`` if no epoch has the metric.

    Default metric by kind: ``val`` (max) for CIFAR, ``top1_err`` (min) for ImageNet, ``mIoU``
    (max) for segmentation; ``mode='max'|'min'`` overrides the direction of another metric.  Ties go
    to the earliest epoch (first segment).  The segment index is the position in the list given
    (for one Segment: its ``index`` in its file).  ``.record`` gives the whole epoch, e.g. the top-5
    error at the best top-1 epoch.
    """
    if isinstance(segment_or_segments, Segment):
        pairs = [(segment_or_segments.index, segment_or_segments)]
    else:
        pairs = list(enumerate(segment_or_segments))
    metric = _metric_of([s for _, s in pairs], metric)
    if metric is None:
        return None
    higher = _higher_is_better(metric, mode)
    found = None
    for idx, seg in pairs:
        for rec in seg.epochs:
            value = rec.get(metric)
            if not isinstance(value, float) and not isinstance(value, int):
                continue
            if isinstance(value, float) and math.isnan(value):
                continue
            if found is None or (value > found[0] if higher else value < found[0]):
                found = (value, rec.epoch, idx, rec)
    if found is None:
        return None
    out = Best(found[0], found[1], found[2])
    out.record = found[3]
    return out


def curve(segment, metric=None):
    """``(epochs, values)`` of one metric of a segment (default metric by kind)."""
    metric = metric or _DEFAULT_METRIC.get(segment.kind, 'val')
    xs, ys = [], []
    for rec in segment.epochs:
        value = rec.get(metric)
        if isinstance(value, (int, float)):
            xs.append(rec.epoch)
            ys.append(value)
    return xs, ys


# -------------------------------------------------------------------------------------------- writing

_STDOUT = object()


def _config_dict(config):
    if config is None:
        return {}
    if isinstance(config, argparse.Namespace):
        return dict(vars(config))
    if isinstance(config, dict):
        return dict(config)
    raise AFFError('EpochLogger config must be a dict or argparse.Namespace, got %s'
                   % type(config).__name__)


def _namespace_line(config):
    """argparse's own ``Namespace(...)`` repr (sorted keys, repr values) on a single line."""
    bad = [k for k in config if not isinstance(k, str)]
    if bad:
        raise AFFError('EpochLogger config keys must be strings, got %r' % (bad[:3],))
    line = repr(argparse.Namespace(**config))
    return line.replace('\r', ' ').replace('\n', ' ')


def _fmt(key, value, sep='='):
    if not _KEY_RE.match(key):
        raise AFFError('bad log key %r (letters, digits, _ . - only)' % (key,))
    if isinstance(value, numbers.Real):
        return '%s%s%f' % (key, sep, value)
    text = str(value)
    if not text or any(c.isspace() for c in text):
        raise AFFError('log value of %r must be a number or a word, got %r' % (key, value))
    return '%s%s%s' % (key, sep, text)


def _require(kind, values, names):
    missing = [n for n in names if values.get(n) is None]
    if missing:
        raise AFFError('EpochLogger(kind=%r).epoch() needs %s' % (kind, ', '.join(missing)))


class _FileOwner(object):
    """Closes ``self._file`` on close(), on leaving a ``with`` block and on garbage collection."""
    _file = None

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class EpochLogger(_FileOwner):
    """Append-only training log in the official format; every line is flushed as it is written.

    ``EpochLogger(path, config)`` appends ``<prefix>Namespace(...)`` (a resumed run thus adds a new
    segment, like the official logs); ``epoch(n, **values)`` writes the epoch line(s) of ``kind``:

    * ``cifar``: ``[Epoch n] train=%f val=%f loss=%f lr: %f time: %f`` (needs train, val, loss,
      time; ``lr`` optional -- without it the 806562e format);
    * ``seg``: ``[Epoch n] train=%f pixAcc=%f mIoU=%f loss=%f lr: %f time: %f`` (``train``, ``lr``
      optional);
    * ``imagenet``: ``[Epoch n] training: <train_metric_name>=%f``, ``[Epoch n] speed: %d
      samples/sec<TAB>time cost: %f``, ``[Epoch n] validation: err-top1=%f err-top5=%f`` (needs
      train_metric, speed, time, top1_err, top5_err; ``train_metric_name`` defaults to ``accuracy``).

    Other keyword values are written as extra ``key=%f`` pairs (after ``val``/``mIoU``, or at the
    end of the validation line) and come back in ``EpochRecord.extra``.  ``batch()`` writes the
    ImageNet batch line, ``info()`` free text.  Lines are mirrored to ``stream`` (default: the
    current ``sys.stdout``; ``None`` for silence) without the prefix.  The file is written
    directly, not through :mod:`logging`, so several loggers in one process never share handlers.
    """

    def __init__(self, log_path, config, prefix='INFO:root:', stream=_STDOUT, kind='cifar',
                 fsync=False):
        if kind not in ('cifar', 'imagenet', 'seg'):
            raise AFFError("EpochLogger kind must be 'cifar', 'imagenet' or 'seg', got %r" % (kind,))
        self.path = os.fspath(log_path)
        self.kind = kind
        self.prefix = prefix or ''
        self.stream = sys.stdout if stream is _STDOUT else stream
        self.fsync = fsync
        self.config = _config_dict(config)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._file = open(self.path, 'a', encoding='utf-8', newline='\n')
        # A previous run that died mid-line must not glue its fragment to our Namespace line.
        if self._file.tell() > 0 and not self._ends_with_newline():
            self._file.write('\n')
        self._write(_namespace_line(self.config))

    def _ends_with_newline(self):
        with open(self.path, 'rb') as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b'\n'

    def _write(self, *lines):
        if self._file is None:
            raise AFFError('EpochLogger for %s is closed' % self.path)
        self._file.write(''.join('%s%s\n' % (self.prefix, line) for line in lines))
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        if self.stream is not None:
            for line in lines:
                print(line, file=self.stream)
            try:
                self.stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        return lines

    def info(self, msg):
        """Free text line(s) (ignored by the parser unless they look like log lines)."""
        return self._write(*str(msg).split('\n'))

    def setup(self, sources, notes=()):
        """The lines after the configuration: where each setting that is not a default came from
        (``sources`` of :func:`utils.recipes.resolve`), then the script's notes, one per line."""
        self.info('sources: ' + ', '.join('%s=%s' % (k, v) for k, v in sorted(sources.items())
                                          if v != 'default'))
        for note in notes:
            self.info(note)

    def batch(self, epoch, batch, speed, metric_name, metric, lr):
        """``Epoch[e] Batch [b]<TAB>Speed: %f samples/sec<TAB><metric_name>=%f<TAB>lr=%f``."""
        return self._write('Epoch[%d] Batch [%d]\tSpeed: %f samples/sec\t%s\tlr=%f'
                           % (epoch, batch, speed, _fmt(metric_name, metric), lr))

    def epoch(self, epoch, **values):
        """Write the epoch line(s) of this logger's kind; returns the lines (without prefix)."""
        epoch = int(epoch)
        if self.kind == 'imagenet':
            name = values.pop('train_metric_name', None) or 'accuracy'
            _require(self.kind, values, ('train_metric', 'speed', 'time', 'top1_err', 'top5_err'))
            train_metric, speed, cost = (values.pop(k) for k in ('train_metric', 'speed', 'time'))
            top1, top5 = values.pop('top1_err'), values.pop('top5_err')
            tail = ''.join(' ' + _fmt(k, v) for k, v in values.items() if v is not None)
            return self._write('[Epoch %d] training: %s' % (epoch, _fmt(name, train_metric)),
                               '[Epoch %d] speed: %d samples/sec\ttime cost: %f' % (epoch, speed, cost),
                               '[Epoch %d] validation: err-top1=%f err-top5=%f%s'
                               % (epoch, top1, top5, tail))
        if self.kind == 'seg':
            _require(self.kind, values, ('pixAcc', 'mIoU', 'loss', 'time'))
            head = ('train', 'val', 'pixAcc', 'mIoU')
        else:
            _require(self.kind, values, ('train', 'val', 'loss', 'time'))
            head = ('train', 'val')
        loss, lr, cost = values.pop('loss'), values.pop('lr', None), values.pop('time')
        parts = [_fmt(k, values.pop(k)) for k in head if values.get(k) is not None]
        parts += [_fmt(k, v) for k, v in values.items() if v is not None]
        parts.append(_fmt('loss', loss))
        if lr is not None:
            parts.append(_fmt('lr', lr, ': '))
        parts.append(_fmt('time', cost, ': '))
        return self._write('[Epoch %d] %s' % (epoch, ' '.join(parts)))
