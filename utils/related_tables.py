"""The related methods' tables (AFINet, ACmix) on top of :mod:`utils.paper_tables`: conventions,
printed deltas and their lint.  The numbers are data: ``utils/results/afinet.csv`` (AFINet, Pan et al.,
arXiv 2105.04354, Tables 2-9), ``utils/results/acmix.csv`` (the ACmix release README's ImageNet table
with the SAN README baselines its deltas refer to, and the ACmix supplement's Table 1 of practical
FLOPs per module) and ``utils/results/deltas.csv``.  Table ids: ``AFINet-<n>``, ``ACmix-README``,
``ACmix-S1``.

Conventions on top of utils/paper_tables.py: every CIFAR-100 number of AFINet is a **100-class (fine
label)** accuracy in percent; FLOPs are AFINet's thop counts **for a batch of 32** (its tables say so);
``recipe`` is ``'afinet'`` / ``'acmix'`` (utils/recipes.py); rows whose network is not built here carry
``model=None`` and a note starting with :data:`NOT_HERE`; ACmix-S1 is a cost analysis (no model).
Printed deltas (AFINet Tables 5 and 7, the ACmix README) are linted against the values, and the
ACmix-S1 shares against its GFLOPs.
"""

from utils import metafile

__all__ = ['TABLES', 'RECIPE_OF_TABLE', 'NOT_HERE', 'AFINET_SETTINGS', 'ACMIX_SETTINGS', 'DELTAS',
           'lint']

TABLES = ('AFINet-2', 'AFINet-3', 'AFINet-4', 'AFINet-5', 'AFINet-6', 'AFINet-7', 'AFINet-8',
          'AFINet-9', 'ACmix-README', 'ACmix-S1')
RECIPE_OF_TABLE = dict({t: 'afinet' for t in TABLES if t.startswith('AFINet')},
                       **{'ACmix-README': 'acmix'})
#: the note prefix of a cell whose network (or data) this repository does not have
NOT_HERE = 'not reproducible here: '

_SETTINGS = metafile.settings()
#: AFINet §4.3 (what the ``afinet`` recipes must say)
AFINET_SETTINGS = _SETTINGS['afinet']
#: ACmix supplement §B (ResNet models, following SAN): batch 256 = 8 GPUs x 32
ACMIX_SETTINGS = _SETTINGS['acmix']


def _deltas():
    out = {}
    for r in metafile.load('deltas.csv'):
        base = None if r['base_row'] is None else (r['table'], r['base_row'], r['base_column'])
        out[(r['table'], r['row'], r['column'])] = (r['delta'], base)
    return out


#: printed deltas: (table, row, column) -> (delta, key of the cell it is relative to or None)
DELTAS = _deltas()


def lint(all_cells, cifar_recipes, imagenet_recipes):
    """Cross-cell problems of the related tables: printed deltas follow from the values, and the
    ``afinet`` / ``acmix`` recipes say what the papers say."""
    problems = []
    by_key = {c.key: c for c in all_cells}
    for key, (delta, base_key) in DELTAS.items():
        c, base = by_key.get(key), by_key.get(base_key)
        if c is not None and base is not None and round(c.value - base.value, 2) != delta:
            problems.append('Table %s | %s | %s: printed delta %+.2f != %s - %s'
                            % (key[0], key[1], key[2], delta, c.value, base.value))
    problems += _lint_shares(all_cells)
    want = dict(AFINET_SETTINGS['cifar'])
    fractions = want.pop('decay_fractions')
    want['lr_decay_epoch'] = ','.join(str(int(f * want['num_epochs'])) for f in fractions)
    _check_recipe(problems, 'CIFAR afinet', cifar_recipes.get('afinet', {}), want)
    want = dict(AFINET_SETTINGS['imagenet'])
    want['lr_decay_epoch'] = ','.join(str(e) for e in want.pop('decay_epochs'))
    want['lr_mode'] = 'step'
    _check_recipe(problems, 'ImageNet afinet', imagenet_recipes.get('afinet', {}), want)
    a = ACMIX_SETTINGS
    _check_recipe(problems, 'ImageNet acmix', imagenet_recipes.get('acmix', {}), dict(
        num_epochs=a['num_epochs'], batch_size=a['total_batch'] // a['gpus'], lr=a['lr'],
        lr_mode=a['lr_mode'], label_smoothing=a['label_smoothing'], optimizer=a['optimizer']))
    return problems


def _lint_shares(all_cells):
    """ACmix-S1: the two stages' shares of a module add up to 100 %, and each share is its GFLOPs'
    share to within one point (the table rounds; SAN-19 ACmix prints 60 % where 1.29 / 2.18 = 59.2 %)."""
    problems = []
    groups = {}
    for c in all_cells:
        if c.table == 'ACmix-S1':
            host, stage, what = c.column.rsplit(' ', 2)
            groups.setdefault((c.row, host), {}).setdefault(stage, {})[what] = c.value
    for (module, host), stages in sorted(groups.items()):
        try:
            total = sum(s['GFLOPs'] for s in stages.values())
            shares = {k: s['share'] for k, s in stages.items()}
        except KeyError:
            problems.append('Table ACmix-S1 | %s | %s: a stage lacks its GFLOPs or its share'
                            % (module, host))
            continue
        if round(sum(shares.values())) != 100:
            problems.append('Table ACmix-S1 | %s | %s: the shares add up to %s %%, not 100'
                            % (module, host, sum(shares.values())))
        for stage, s in sorted(stages.items()):
            if abs(100.0 * s['GFLOPs'] / total - s['share']) > 1.0:
                problems.append('Table ACmix-S1 | %s | %s Stage %s: share %s %% but %.2f of %.2f '
                                'GFLOPs is %.1f %%' % (module, host, stage, s['share'],
                                                      s['GFLOPs'], total,
                                                      100.0 * s['GFLOPs'] / total))
    return problems


def _check_recipe(problems, name, recipe, want):
    for k, v in want.items():
        if recipe.get(k) != v:
            problems.append('recipe %s: %s=%r but the paper says %r' % (name, k, recipe.get(k), v))
