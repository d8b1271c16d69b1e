"""The paper's result tables as data: one :class:`Cell` per printed number.

The numbers live in the metafiles under ``utils/results/`` (:mod:`utils.metafile`): ``aff_paper.csv``
holds "Attentional Feature Fusion" (Dai et al., WACV 2021) Tables 3-5, the supplement's Tables S1 and
S2 (= Tables 6 and 7 of the arXiv appendix), the open-aff HEAD README and the slides' ImageNet table;
the released checkpoints' cells are made from ``released.csv`` (:data:`net.model_store.RELEASED`);
Table 2 and the supplement's settings are ``settings.json``.

Conventions
-----------
* ``label_mode``: every CIFAR-100 number of the paper is a **20-superclass** number (``'coarse'``; paper §5:
  the official code used Gluon's ``CIFAR100`` default ``fine_label=False`` on a 100-output head).  Only the
  released 0.8357 / 0.8538 checkpoints are ``'fine'``.  ImageNet and StopSign cells have ``None``.
* ``value`` is the number as printed (``None`` for the paper's '/'); ``unit`` says how to read it:
  ``'fraction'`` (0.807), ``'percent'`` (20.9 = 20.9 %), ``'M'`` (millions of parameters) or ``'C^2HW'``.
  :attr:`Cell.fraction` gives accuracies / errors / mIoU as a fraction whatever the unit.
* ``scenario``: ``'inception'`` (same-layer, Inception-ResNet-20-b on CIFAR-100), ``'resnet'`` (short skip on
  CIFAR-100: ResNet-20-b in the ablations; the released CIFAR checkpoints too), ``'fpn'`` (long skip,
  ResNet-20-b + FPN on StopSign), ``'imagenet'`` (ResNet-50 / ResNeXt-50), ``None`` (FLOPs analysis,
  other papers' results).
* ``model``: a registry name (``net.get_model_list()``), or ``None`` (no network of ours: other
  architectures, FLOPs rows).
* ``recipe``: ``'paper'`` (Tables 3, 4, S1: Table 2 settings, no mixup), ``'paper_sota'`` (Table 5: the
  submitted paper's runs, with mixup), ``'released'`` (HEAD README, slides, released checkpoints),
  ``None`` for cells that are no training result.

The related methods' tables (AFINet ``AFINet-<n>``, ACmix ``ACmix-README`` and ``ACmix-S1``; scenario
``'cifar'`` = plain CIFAR-100 classification on the 100 fine labels, ``'imagenet'``; recipes ``'afinet'``
/ ``'acmix'``; extra metrics for their parameter, FLOPs, top-5 and memory columns) follow the
conventions of :mod:`utils.related_tables`.

``python -m utils.reproduce`` turns cells into training commands; :func:`lint` checks the tables
(``python -m utils.paper_tables`` prints the problems of the metafiles and of the tables).
"""
import math
import re
from dataclasses import dataclass, field

import net
from net.model_store import RELEASED
from utils import metafile
from utils import related_tables as RT

__all__ = ['Cell', 'TABLES', 'SCENARIOS', 'METRICS', 'TABLE2', 'SUPPLEMENT', 'FUSION_OF_ROW',
           'CELLS', 'cells', 'lint', 'registry']

#: table identifiers, in listing order
AFF_TABLES = ('3', '4', '5', 'S1', 'S2', 'HEAD-README', 'slides', 'released')
TABLES = AFF_TABLES + RT.TABLES
SCENARIOS = ('inception', 'resnet', 'fpn', 'imagenet', 'cifar')
#: metric -> units it may be printed in (the last five: the related methods' tables)
METRICS = {'accuracy': ('fraction', 'percent'), 'mIoU': ('fraction',),
           'top1_err': ('fraction', 'percent'), 'params_M': ('M',), 'flops_pct': ('percent',),
           'flops_c2hw': ('C^2HW',), 'params_K': ('K',), 'flops_G': ('G',), 'flops_M': ('M',),
           'top5_acc': ('percent',), 'memory_MiB': ('MiB',)}
RECIPES = ('paper', 'paper_sota', 'released', 'afinet', 'acmix')
_RECIPE_OF_TABLE = dict({'3': 'paper', '4': 'paper', 'S1': 'paper', '5': 'paper_sota',
                         'HEAD-README': 'released', 'slides': 'released',
                         'released': 'released'}, **RT.RECIPE_OF_TABLE)
_DATASET_OF_SCENARIO = {'inception': 'cifar100', 'resnet': 'cifar100', 'fpn': 'stopsign',
                        'imagenet': 'imagenet', 'cifar': 'cifar100', None: None}

# --------------------------------------------------------------------------- settings
_SETTINGS = metafile.settings()
#: Table 2 of the paper, one dict per host network (key = scenario, plus 'resnext' for the CIFAR
#: ResNeXt-38 row, which no table of results uses).  Values as printed.
TABLE2 = _SETTINGS['table2']
#: the settings the supplement adds to Table 2 ("Implementation details")
SUPPLEMENT = _SETTINGS['supplement']

#: paper row label (Tables 3, 4, S1) -> registry fusion short name
FUSION_OF_ROW = {
    'Global + Global': 'globalglobal', 'Local + Local': 'locallocal', 'Global + Local': 'aff',
    'Add': 'add', 'Concatenation': 'concat', 'MS-GAU': 'msgau', 'MS-SENet': 'msse', 'MS-SA': 'mssa',
    'AFF (ours)': 'aff', 'iAFF (ours)': 'iaff',
    'Half-AFF': 'halfaff', 'Concat-AFF': 'concataff', 'AFF': 'aff', 'Recursive AFF': 'recursiveaff',
    'Iterative AFF': 'iaff',
}

def registry():
    """The registry names, as a set."""
    return set(net.get_model_list())


# --------------------------------------------------------------------------- the cell
@dataclass(frozen=True)
class Cell:
    """One number of one table."""
    table: str            #: a name of TABLES ('3', '4', '5', 'S1', 'S2', 'HEAD-README', ...)
    row: str              #: the paper's row label (markup and citation numbers removed)
    column: str           #: e.g. 'ResNet b=2', 'FPN b=3', 'ImageNet', 'top-1 err.', 'Params'
    scenario: object      #: 'inception' | 'resnet' | 'fpn' | 'imagenet' | None
    b: object             #: blocks per stage 1..4, or None
    value: object         #: float as printed, None for the paper's '/'
    metric: str           #: a key of METRICS
    unit: str             #: 'fraction', 'percent', 'M' or 'C^2HW'
    dataset: object       #: 'cifar100', 'imagenet', 'stopsign' or None
    label_mode: object    #: 'coarse' / 'fine' for CIFAR-100, else None
    recipe: object        #: 'paper', 'paper_sota', 'released' or None
    model: object         #: registry name, or None (no network of ours)
    available: bool       #: model is in net.get_model_list()
    source: str           #: where the number comes from
    note: str = ''
    where: str = field(default='', compare=False)   #: metafile:line it was read from

    @property
    def key(self):
        return (self.table, self.row, self.column)

    @property
    def text(self):
        """The value as the source prints it ('0.740', '3.70', '20.9', '19.78'; '/' for None)."""
        if self.value is None:
            return '/'
        if self.unit == 'C^2HW' or (self.table == 'ACmix-S1' and self.unit == 'percent'):
            return '%d' % self.value
        digits = _DIGITS.get(self.table)
        return repr(self.value) if digits is None else '%.*f' % (digits, self.value)

    @property
    def fraction(self):
        """Accuracy / error / mIoU as a fraction (None for other metrics or a missing value)."""
        if self.value is None or self.metric not in ('accuracy', 'top1_err', 'mIoU'):
            return None
        return self.value / 100.0 if self.unit == 'percent' else self.value

    @property
    def fusion(self):
        """Registry fusion short name of a Table 3/4/S1 row, else None."""
        return FUSION_OF_ROW.get(self.row) if self.table in ('3', '4', 'S1') else None


#: table -> digits its values are printed with (others: as stored)
_DIGITS = {'3': 3, '4': 3, 'S1': 3, 'S2': 2, '5': 1, 'slides': 1, 'released': 4}


def _released_cells(known):
    """The cells of the released checkpoints (``utils/results/released.csv``)."""
    out = []
    for c in RELEASED:
        if c.label_mode in ('fine', 'coarse'):
            scenario, dataset, label_mode = 'resnet', 'cifar100', c.label_mode
            column = 'CIFAR-100 %s' % c.label_mode
        else:
            scenario, dataset, label_mode, column = 'imagenet', 'imagenet', None, 'ImageNet'
        out.append(Cell(table='released', row='%s [%s]' % (c.model, c.tag), column=column,
                        scenario=scenario, b=None, value=c.value, metric=c.metric,
                        unit='fraction', dataset=dataset, label_mode=label_mode,
                        recipe='released', model=c.model, available=c.model in known,
                        source='utils/results/released.csv (official log %s)' % c.log,
                        note='%s; best at epoch %d; file %s' % (c.note, c.epoch, c.file),
                        where='released.csv'))
    return out


def _load_cells():
    """Every cell, in table order: the metafiles' rows typed into :class:`Cell`."""
    known = registry()
    rows = []
    for name in ('aff_paper.csv', 'afinet.csv', 'acmix.csv'):
        rows += metafile.load(name)
    out = []
    for r in rows:
        where = r.pop('_where')
        out.append(Cell(available=r['model'] is not None and r['model'] in known, where=where,
                        **dict(r, note=r['note'] or '')))
    out += _released_cells(known)
    order = {t: i for i, t in enumerate(TABLES)}
    return tuple(sorted(out, key=lambda c: order.get(c.table, len(order))))


#: every cell, in table order
try:
    CELLS = _load_cells()
except metafile.MetafileError:
    if __name__ != '__main__':
        raise
    CELLS = ()      # ``python -m utils.paper_tables`` lists the metafile problems


def _norm_table(table):
    if table is None:
        return None
    t = str(table).strip()
    t = re.sub(r'(?i)^table\s*', '', t)
    for name in TABLES:
        if t.lower() == name.lower():
            return name
    raise ValueError('unknown table %r; use one of %s' % (table, ', '.join(TABLES)))


def cells(table=None, scenario=None, b=None, model=None, row=None, column=None):
    """The cells matching every given filter (``table`` is case-insensitive: '4', 's1', 'Table 4')."""
    table = _norm_table(table)
    out = []
    for c in CELLS:
        if table is not None and c.table != table:
            continue
        if scenario is not None and c.scenario != scenario:
            continue
        if b is not None and c.b != int(b):
            continue
        if model is not None and c.model != model:
            continue
        if row is not None and c.row != row:
            continue
        if column is not None and c.column != column:
            continue
        out.append(c)
    return out


# --------------------------------------------------------------------------- lint
def lint(all_cells=None):
    """Problems of the table, one string each (empty list = clean), in the style of a metafile check.

    Per cell: known table/scenario/metric/unit; value present (or '/' explained in the note) and in
    range; dataset consistent with scenario, label_mode with dataset (fine only for released
    checkpoints), metric with dataset; recipe given exactly for cells with a model and the one of
    its table, and defined for CIFAR; the model in the registry (``available``); the model's fusion,
    depth and scenario agree with the row and column; source given.  Across cells: unique (table,
    row, column); Table S2 percentages follow from its FLOPs; HEAD README and slides numbers are the
    released checkpoints rounded; the numbers an official log produced follow from its best value
    (``utils/results/official_logs.csv``); Table 2 + supplement agree with the ``paper`` recipe; the
    related tables' deltas and shares (:func:`utils.related_tables.lint`).  Problems of the metafiles
    themselves (:func:`utils.metafile.problems`) come first.
    """
    from utils.recipes import CIFAR_RECIPES
    all_cells = CELLS if all_cells is None else tuple(all_cells)
    known = registry()
    problems = []

    def bad(c, msg):
        problems.append('%sTable %s | %s | %s: %s' % (c.where + ': ' if c.where else '', c.table,
                                                    c.row, c.column, msg))

    seen = {}
    for c in all_cells:
        if c.key in seen:
            bad(c, 'duplicate (table, row, column)')
        seen[c.key] = c
        if c.table not in TABLES:
            bad(c, 'unknown table %r' % c.table)
        if c.scenario not in SCENARIOS + (None,):
            bad(c, 'unknown scenario %r' % (c.scenario,))
        if c.b is not None and c.b not in (1, 2, 3, 4):
            bad(c, 'b=%r is not 1..4' % (c.b,))
        m = re.search(r'\bb=(\d)$', c.column)
        if (int(m.group(1)) if m else None) != c.b:
            bad(c, 'b=%r does not match the column' % (c.b,))
        if not c.source:
            bad(c, 'no source')
        # metric, unit, value
        if not c.metric or c.metric not in METRICS:
            bad(c, 'unknown or missing metric %r' % (c.metric,))
        elif c.unit not in METRICS[c.metric]:
            bad(c, 'unit %r is not one of %s for %s' % (c.unit, METRICS[c.metric], c.metric))
        if c.value is None:
            if "'/'" not in c.note:
                bad(c, "value None without a note explaining the paper's '/'")
        elif not isinstance(c.value, (int, float)):
            bad(c, 'value %r is not a number' % (c.value,))
        elif c.unit == 'fraction' and not 0 < c.value < 1:
            bad(c, 'fraction %r out of (0, 1)' % c.value)
        elif c.unit == 'percent' and not 0 < c.value < 100:
            bad(c, 'percentage %r out of (0, 100)' % c.value)
        # dataset, label mode, metric
        if c.scenario in _DATASET_OF_SCENARIO and c.dataset != _DATASET_OF_SCENARIO[c.scenario]:
            bad(c, 'dataset %r does not fit scenario %r' % (c.dataset, c.scenario))
        if c.dataset == 'cifar100':
            if c.label_mode not in ('coarse', 'fine'):
                bad(c, 'CIFAR-100 cell needs label_mode coarse or fine, not %r' % (c.label_mode,))
            elif c.label_mode == 'fine' and c.table in AFF_TABLES and c.table != 'released':
                bad(c, "label_mode 'fine' in a paper table: the paper's CIFAR-100 numbers are "
                       "20-superclass (coarse) numbers")
            elif c.label_mode == 'coarse' and c.table in RT.TABLES:
                bad(c, "label_mode 'coarse' in a related-method table: AFINet's CIFAR-100 "
                       "numbers are 100-class numbers")
            if c.metric != 'accuracy' and not (c.table in RT.TABLES and c.metric in (
                    'params_K', 'params_M', 'flops_G', 'flops_M')):
                bad(c, 'CIFAR-100 cell with metric %r' % c.metric)
        elif c.label_mode is not None:
            bad(c, 'label_mode %r on a %s cell' % (c.label_mode, c.dataset))
        if c.dataset == 'stopsign' and c.metric != 'mIoU':
            bad(c, 'StopSign cell with metric %r' % c.metric)
        if c.dataset == 'imagenet' and c.metric not in ('accuracy', 'top1_err', 'params_M') + (
                ('top5_acc', 'flops_G', 'memory_MiB') if c.table in RT.TABLES else ()):
            bad(c, 'ImageNet cell with metric %r' % c.metric)
        # recipe and model
        if c.model is None:
            if c.recipe is not None:
                bad(c, 'recipe %r on a cell without a model' % c.recipe)
            if c.available:
                bad(c, 'available without a model')
            if not (c.table in ('S2', 'ACmix-S1') or (c.table == '5' and '(ours)' not in c.row) or
                    (c.table in RT.TABLES and c.note.startswith(RT.NOT_HERE))):
                bad(c, 'no model')
            continue
        if c.recipe not in RECIPES:
            bad(c, 'missing or unknown recipe %r' % (c.recipe,))
        elif c.recipe != _RECIPE_OF_TABLE.get(c.table):
            bad(c, 'recipe %r, but Table %s cells use %r'
                % (c.recipe, c.table, _RECIPE_OF_TABLE.get(c.table)))
        if c.dataset == 'cifar100' and c.recipe not in CIFAR_RECIPES:
            bad(c, 'recipe %r is not a train_cifar.py recipe' % c.recipe)
        if c.available != (c.model in known):
            bad(c, 'available=%s but %r is %sin the registry'
                % (c.available, c.model, '' if c.model in known else 'not '))
        if c.model not in known:
            bad(c, 'model %r is not in the registry (python -m utils.models lists it)'
                % c.model)
        name_ok = {'inception': '_inception_resnet20_b' in c.model,
                   'fpn': c.model.startswith('stopsign_'),
                   'resnet': c.model.startswith('cifar_') and 'inception' not in c.model,
                   'imagenet': not c.model.startswith(('cifar_', 'stopsign_')),
                   'cifar': c.model in known and net.get_model_info(c.model).input_size == 32,
                   }.get(c.scenario, False)
        if not name_ok:
            bad(c, 'model %r does not fit scenario %r' % (c.model, c.scenario))
        fusion = c.fusion
        if fusion is not None:
            if not re.match(r'^(cifar_|stopsign_)?%s_' % fusion, c.model):
                bad(c, 'model %r is not the %r fusion of row %r' % (c.model, fusion, c.row))
            if c.model in known:
                info = net.get_model_info(c.model)
                if info.fusion != fusion:
                    bad(c, 'registry fusion of %s is %r, the row needs %r'
                        % (c.model, info.fusion, fusion))
                layers = info.kwargs.get('layers')
                if c.b is not None and layers is not None and list(layers) != [c.b] * 3:
                    bad(c, 'registry %s has layers %s, the column needs b=%d'
                        % (c.model, layers, c.b))
        if c.b is not None and not c.model.endswith('_b%d' % c.b):
            bad(c, 'model %r does not end with _b%d' % (c.model, c.b))
    problems += _lint_cross(all_cells, CIFAR_RECIPES)
    from utils.recipes import IMAGENET_RECIPES
    problems += RT.lint(all_cells, CIFAR_RECIPES, IMAGENET_RECIPES)
    return problems


def _lint_cross(all_cells, cifar_recipes):
    problems = []
    by_key = {c.key: c for c in all_cells}
    # Table S2: percentage = 100 * point-wise / conv FLOPs, to the printed 2 decimals
    for row in {c.row for c in all_cells if c.table == 'S2'}:
        conv = by_key.get(('S2', row, 'Flops of Conv in ResBlock'))
        pw = by_key.get(('S2', row, 'Flops of Point-wise Conv in AFF module'))
        pct = by_key.get(('S2', row, 'Percentage'))
        if conv and pw and pct and round(100.0 * pw.value / conv.value, 2) != pct.value:
            problems.append('Table S2 | %s: %.2f %% != 100 * %s / %s'
                            % (row, pct.value, pw.value, conv.value))
    # HEAD README and slides = released top-1 errors, rounded to the printed digits
    released = {c.model: c for c in all_cells if c.table == 'released' and c.metric == 'top1_err'}
    for c in all_cells:
        if c.table not in ('HEAD-README', 'slides') or c.metric != 'top1_err':
            continue
        r = released.get(c.model)
        if r is None:
            problems.append('Table %s | %s: no released checkpoint of %s' % (c.table, c.row, c.model))
        elif round(100 * r.value, _printed_digits(c)) != c.value:
            problems.append('Table %s | %s: %s != released %.4f rounded'
                            % (c.table, c.row, c.value, r.value))
    problems += _lint_official_logs(by_key)
    # Table 2 + supplement vs the 'paper' CIFAR recipe
    paper, t2, sup = cifar_recipes.get('paper', {}), TABLE2['resnet'], SUPPLEMENT['cifar']
    want = dict(num_epochs=t2['epochs'], batch_size=t2['batch_size'], lr=t2['lr'],
                lr_decay=sup['lr_decay'], wd=sup['wd'],
                lr_decay_epoch=','.join(str(e) for e in sup['lr_decay_epochs']),
                mixup=False, label_mode='coarse')
    for k, v in want.items():
        if paper.get(k) != v:
            problems.append('recipe paper: %s=%r but Table 2 / the supplement say %r'
                            % (k, paper.get(k), v))
    return problems


def _printed_digits(c):
    text = repr(c.value)
    return len(text.split('.')[1]) if '.' in text else 0


def _lint_official_logs(by_key):
    """``official_logs.csv``: known model, dataset, label mode and recipe; every cell it names
    exists, is the same network, and prints the log's best value (the paper truncates Table 5's
    errors to 0.1 %, everything else is rounded)."""
    problems, known = [], registry()
    for o in metafile.load('official_logs.csv'):
        where = '%s (%s)' % (o['_where'], o['path'])
        if o['model'] not in known:
            problems.append('%s: model %r is not in the registry' % (where, o['model']))
        if o['dataset'] not in ('cifar10', 'cifar100', 'imagenet'):
            problems.append('%s: unknown dataset %r' % (where, o['dataset']))
        if (o['label_mode'] is not None) != (o['dataset'] == 'cifar100') or \
                o['label_mode'] not in (None, 'fine', 'coarse'):
            problems.append('%s: label_mode %r on a %s log' % (where, o['label_mode'],
                                                              o['dataset']))
        if o['recipe'] not in RECIPES:
            problems.append('%s: unknown recipe %r' % (where, o['recipe']))
        for key in o['cells'] or ():
            c = by_key.get(key)
            if c is None:
                problems.append('%s: no cell %s' % (where, ' | '.join(key)))
                continue
            if c.model != o['model']:
                problems.append('%s: cell %s is %s, the log trained %s'
                                % (where, ' | '.join(key), c.model, o['model']))
            best = o['best']      # val accuracy (CIFAR) or top-1 error (ImageNet), a fraction
            if (c.metric == 'accuracy') == (o['dataset'] == 'imagenet'):
                best = 1.0 - best
            scale = 100.0 if c.unit == 'percent' else 1.0
            digits = _printed_digits(c)
            if c.table == '5':
                want = math.floor(round(best * scale * 10 ** digits, 6)) / 10 ** digits
            else:
                want = round(best * scale, digits)
            if abs(want - c.value) > 1e-9:
                problems.append('%s: best %.4f gives %s for cell %s, which prints %s'
                                % (where, o['best'], want, ' | '.join(key), c.value))
    return problems


def main():
    problems = metafile.problems() + lint()
    for p in problems:
        print(p)
    print('%d cells, %d problems' % (len(CELLS), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    raise SystemExit(main())
