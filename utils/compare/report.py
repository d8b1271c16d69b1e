"""The comparison report: one row per (run, cell), the official logs against the paper, and the
related methods beside AFF / iAFF, as markdown."""
import os
from dataclasses import dataclass, field

from utils import paper_tables as PT
from utils.compare.official import OFFICIAL_LOGS, find_official, load_official, official_roots
from utils.compare.runs import Run, flags, match_cells, to_cell_unit

__all__ = ['Row', 'Report', 'build_report', 'markdown', 'related_section', 'cell_name']


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
    skipped: list = field(default_factory=list)   #: Skipped: logs of the directories not read

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


def build_report(runs, official_root, skipped=()):
    official = {rel: load_official(official_root, rel) for rel in OFFICIAL_LOGS}
    report = Report(runs=list(runs), rows=[], unmatched=[], official_root=official_root,
                    official=official, skipped=list(skipped))
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


def cell_name(cell):
    return 'Table %s / %s / %s' % (cell.table, cell.row, cell.column)


def _esc(text):
    return str(text).replace('|', '\\|')


def _table(head, rows):
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    lines += ['| ' + ' | '.join(_esc(x) for x in r) + ' |' for r in rows]
    return lines


def _rel_path(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith('..') else rel


def _rel_run(run):
    return _rel_path(run.path)


def _epochs_text(run):
    """``160/160``; a resumed log: ``95 (65-159)/160``."""
    conf = run.epochs_configured or '?'
    if run.first_epoch:
        return '%d (%d-%d)/%s' % (run.epochs_run, run.first_epoch, run.last[0], conf)
    return '%d/%s' % (run.epochs_run, conf)


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
           'top-1 error in %% for Table 5 and the HEAD README.' % '`, `'.join(official_roots(
               report.official_root)), '']
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
            rows.append(('#%d' % run.index, _rel_run(run),
                         run.model or '%s (unplaced)' % (run.raw_model or '?'),
                         ' / '.join(x for x in data if x), run.recipe or '—',
                         '—' if run.seed is None else str(run.seed), _epochs_text(run),
                         '%s %s' % (run.metric or '?', best), last,
                         str(len(run.cells)), run.source))
        out += _table(('#', 'run', 'model', 'data / labels / head', 'recipe', 'seed',
                       'epochs in log / configured', 'best @epoch', 'last', 'cells', 'log'), rows)
        out += ['', '## Ours vs paper', '']
        rows = []
        for r in report.rows:
            rows.append((cell_name(r.cell), '%s (#%d)' % (r.cell.model, r.run.index),
                         '—' if r.ours is None else '%s @%d' % (_num(r.ours, r.cell), r.epoch),
                         r.cell.text, _delta(r.delta_paper, r.cell),
                         _official_text(r.official, r.cell), _delta(r.delta_official, r.cell),
                         '; '.join(r.flags) or '—'))
        for run in report.unmatched:
            if run.unplaced:
                continue        # listed under "Unplaced logs"
            rows.append(('— (no paper cell)',
                         '%s (#%d)' % (run.model or run.raw_model, run.index),
                         ('%.4f @%d' % (run.best[1], run.best[0])) if run.best else '—',
                         '—', '—', '—', '—',
                         ('an official log without a paper cell: %s' % run.official.note)
                         if run.official is not None else
                         'no paper cell for model %s, dataset %s, directory %s'
                         % (run.model or run.raw_model, run.dataset, _rel_path(run.dir))))
        out += _table(('cell', 'model', 'ours (best @epoch)', 'paper', 'Δ ours−paper',
                       'official log best', 'Δ ours−official', 'flags'), rows)
        out.append('')
    unplaced = [run for run in report.runs if run.unplaced]
    if unplaced:
        out += ['## Unplaced logs (%d)' % len(unplaced), '',
                'Their configuration names no network of the registry, so they meet no cell; '
                'an official log is placed by its path inside open-aff\'s `params/` folder.', '']
        out += _table(('#', 'run', 'best @epoch', 'why'), [
            ('#%d' % run.index, _rel_run(run),
             ('%s %.4f @%d' % (run.metric, run.best[1], run.best[0])) if run.best else '—',
             run.unplaced) for run in unplaced])
        out.append('')
    if report.skipped:
        out += ['## Not training logs (%d)' % len(report.skipped), '']
        out += _table(('file', 'why'), [(_rel_path(s.path), s.why) for s in report.skipped])
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
        rows.append((cell_name(c), c.model or '—', _official_name(o), _official_text(o, c),
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


