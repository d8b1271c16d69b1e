"""A run's history beside its log: the EpochCSV (one row per epoch, for spreadsheets and plots) and
the learning-curve PNG, with official curves as dashed references.

>>> csv = EpochCSV('logs/run.csv', ['epoch', 'train', 'val', 'loss', 'lr', 'time'])
>>> csv.append(epoch=0, train=0.07, val=0.03, loss=4.58, lr=0.2, time=29.4)
>>> official = parse_log('open-aff/params/cifar100/AFF-ResNet-32/train_cifar100-'
...                      'ASKCFuse-resnet-32-c-4-s-1.log')[-1]
>>> plot_history('logs/run.csv', 'logs/run.png', reference=[('official',) + curve(official)])
"""
import csv
import io
import numbers
import os
import re

from net.errors import AFFError
from utils.logs import EpochRecord, Segment, _FileOwner, parse_log

__all__ = ['EpochCSV', 'read_csv', 'plot_history']


# ------------------------------------------------------------------------------------------------ CSV

def _csv_cell(value):
    if value is None:
        return ''
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))  # shortest text that reads back to the same float
    return str(value)


def _csv_value(text):
    if text is None or text == '':
        return None
    if re.match(r'^[+-]?\d+$', text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


class EpochCSV(_FileOwner):
    """One CSV row per epoch, appended and flushed at once; the header is written once.

    Resuming onto an existing file needs the same ``fields`` (else a one-line AFFError); a row cut
    by a crash (no final newline) is removed before appending.
    """

    def __init__(self, path, fields):
        self.path = os.fspath(path)
        self.fields = [str(f) for f in fields]
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise AFFError('EpochCSV fields must be non-empty and unique, got %r' % (self.fields,))
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        new = True
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            self._drop_partial_row()
            if os.path.getsize(self.path) > 0:
                with open(self.path, newline='', encoding='utf-8') as f:
                    header = next(csv.reader(f), [])
                if header != self.fields:
                    raise AFFError('%s: existing CSV header %s differs from %s; resume with the same '
                                   'fields or write a new file' % (self.path, ','.join(header),
                                                                   ','.join(self.fields)))
                new = False
        self._file = open(self.path, 'a', newline='', encoding='utf-8')
        self._writer = csv.writer(self._file, lineterminator='\n')
        if new:
            self._writer.writerow(self.fields)
            self._file.flush()

    def _drop_partial_row(self):
        with open(self.path, 'rb+') as f:
            data = f.read()
            if data.endswith(b'\n'):
                return
            f.truncate(data.rfind(b'\n') + 1)

    def drop_from(self, epoch):
        """Remove the rows of epochs >= ``epoch`` (a resumed run trains them again; the file is
        rewritten atomically).  Returns the epochs removed."""
        if 'epoch' not in self.fields:
            return []
        rows = read_csv(self.path)
        gone = [r['epoch'] for r in rows if isinstance(r.get('epoch'), int) and r['epoch'] >= epoch]
        if not gone:
            return gone
        from utils.checkpoint import atomic_write
        self._file.close()

        def write(tmp):
            with open(tmp, 'w', newline='', encoding='utf-8') as f:
                w = csv.writer(f, lineterminator='\n')
                w.writerow(self.fields)
                for r in rows:
                    if not (isinstance(r.get('epoch'), int) and r['epoch'] >= epoch):
                        w.writerow([_csv_cell(r.get(k)) for k in self.fields])
        atomic_write(write, self.path)
        self._file = open(self.path, 'a', newline='', encoding='utf-8')
        self._writer = csv.writer(self._file, lineterminator='\n')
        return gone

    def append(self, row=None, **values):
        """Append one row (a dict and/or keywords); missing fields are empty, unknown ones an error."""
        data = dict(row or {})
        data.update(values)
        if isinstance(row, EpochRecord):
            data = row.as_dict()
        unknown = [k for k in data if k not in self.fields]
        if unknown:
            raise AFFError('%s: unknown CSV field(s) %s (fields: %s)'
                           % (self.path, ', '.join(unknown), ', '.join(self.fields)))
        if self._file is None:
            raise AFFError('EpochCSV for %s is closed' % self.path)
        self._writer.writerow([_csv_cell(data.get(k)) for k in self.fields])
        self._file.flush()
        from utils.checkpoint import fault_point
        fault_point('appended ' + os.path.basename(self.path))



def read_csv(path):
    """Rows of an EpochCSV as dicts; numbers converted (ints stay int), empty cells ``None``.

    A last row without its newline (a writer that died mid-row) is skipped.
    """
    with open(path, 'r', newline='', encoding='utf-8') as f:
        text = f.read()
    if text and not text.endswith('\n'):
        text = text[:text.rfind('\n') + 1]
    reader = csv.DictReader(io.StringIO(text))
    return [{k: _csv_value(v) for k, v in row.items() if k is not None} for row in reader]


# ----------------------------------------------------------------------------------------------- plot

_VAL_KEYS = ('val', 'top1_err', 'top5_err', 'mIoU', 'pixAcc')
_LEGEND_BELOW = dict(loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize='small',
                     frameon=False)
_VAL_LABEL = {'val': 'val top-1 acc', 'top1_err': 'val top-1 err', 'top5_err': 'val top-5 err'}


def _history_rows(source):
    """Normalise a CSV path / log path / Segment / records / dict rows to a list of flat dicts."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith('.csv'):
            return read_csv(path)
        segs = [s for s in parse_log(path) if s.epochs]
        if not segs:
            raise AFFError('%s: no epoch lines to plot' % path)
        source = segs[-1]
    if isinstance(source, Segment):
        source = source.epochs
    rows = []
    for item in source:
        if isinstance(item, EpochRecord):
            rows.append(item.as_dict())
        elif isinstance(item, dict):
            rows.append(dict(item))
        else:
            raise AFFError('plot_history: cannot plot a %s' % type(item).__name__)
    return rows


def _series(rows, key):
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            epoch = row.get('epoch')
            xs.append(epoch if isinstance(epoch, numbers.Real) else i)
            ys.append(float(value))
    return xs, ys


def _train_label(rows):
    """The training metric's name: the CSV's ``train_metric_name``, pixel accuracy for a
    segmentation run (whose ``train`` column is that), else 'metric'."""
    name = next((r.get('train_metric_name') for r in rows if r.get('train_metric_name')), None)
    if name is None:
        name = 'pixAcc' if any('mIoU' in r for r in rows) else 'metric'
    return 'train %s' % name


def plot_history(records_or_csv, png_path, title=None, reference=None):
    """Training-history PNG: training loss/metric, validation metric(s) and lr per epoch.

    ``records_or_csv``: an EpochCSV path, a log path (its last segment with epochs), a Segment, a
    list of EpochRecord or of CSV row dicts.  ``reference``: optional ``[(label, epochs, values)]``
    drawn dashed on the validation panel (e.g. the official log's curve, see :func:`curve`).  Uses
    matplotlib's Agg canvas directly (no pyplot, no global backend switch) and replaces ``png_path``
    atomically.  Returns ``png_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from utils.checkpoint import atomic_write

    rows = _history_rows(records_or_csv)
    reference = list(reference or [])
    if not rows and not reference:
        raise AFFError('plot_history: nothing to plot for %s' % (png_path,))
    has_lr = any(isinstance(r.get('lr'), numbers.Real) for r in rows)
    ncols = 3 if has_lr else 2
    fig = Figure(figsize=(5.0 * ncols, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)

    ax = axes[0]
    xs, ys = _series(rows, 'loss')
    if xs:
        ax.plot(xs, ys, color='tab:red', label='train loss')
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss')
    ax.set_title('training')
    metric_key = 'train' if any('train' in r for r in rows) else 'train_metric'
    xs, ys = _series(rows, metric_key)
    if xs:
        label = _train_label(rows)
        twin = ax.twinx()
        twin.plot(xs, ys, color='tab:blue', label=label)
        twin.set_ylabel(label)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        if handles:  # below the axes: inside, it covered the curves
            ax.legend(handles, [h.get_label() for h in handles], **_LEGEND_BELOW)
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(**_LEGEND_BELOW)

    ax = axes[1]
    val_keys = [k for k in _VAL_KEYS if any(k in r for r in rows)]
    val_keys += sorted(set(k for r in rows for k in r if k.startswith('val_')))
    for key in val_keys:
        xs, ys = _series(rows, key)
        if xs:
            ax.plot(xs, ys, label=_VAL_LABEL.get(key, key))
    for label, epochs, values in reference:
        ax.plot(list(epochs), list(values), linestyle='--', label=str(label))
    ax.set_xlabel('epoch')
    ax.set_title('validation')
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**_LEGEND_BELOW)

    if has_lr:
        ax = axes[2]
        xs, ys = _series(rows, 'lr')
        ax.plot(xs, ys, color='tab:green')
        ax.set_xlabel('epoch')
        ax.set_title('learning rate')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(lambda tmp: fig.savefig(tmp, format='png'), png_path)
