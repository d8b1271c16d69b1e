"""The result tables of the related methods as :mod:`utils.paper_tables` cells: AFINet and ACmix.

Sources: AFINet (Pan et al., arXiv 2105.04354) Tables 2-9 (../shared/papers/afinet-paper.md); the ACmix
release README's ImageNet table with the SAN README baselines its deltas refer to (as transcribed in
../shared/reference/related-methods.md §2.10; the ACmix supplement itself only has the FLOPs analysis of
its Table 1, which is no result and is left out).  Table ids: ``AFINet-<n>`` and ``ACmix-README``.

Conventions on top of utils/paper_tables.py: every CIFAR-100 number of AFINet is a **100-class (fine
label)** accuracy in percent; FLOPs are AFINet's thop counts **for a batch of 32** (its tables say so);
``recipe`` is ``'afinet'`` / ``'acmix'`` (utils/recipes.py); rows whose network is not built here carry
``model=None`` and a note starting with :data:`NOT_HERE`.  Printed deltas (AFINet Tables 5 and 7, the
ACmix README) are kept in :data:`DELTAS` and linted against the values.
"""

__all__ = ['TABLES', 'RECIPE_OF_TABLE', 'NOT_HERE', 'AFINET_SETTINGS', 'ACMIX_SETTINGS', 'DELTAS',
           'build', 'lint']

TABLES = ('AFINet-2', 'AFINet-3', 'AFINet-4', 'AFINet-5', 'AFINet-6', 'AFINet-7', 'AFINet-8',
          'AFINet-9', 'ACmix-README')
RECIPE_OF_TABLE = dict({t: 'afinet' for t in TABLES if t.startswith('AFINet')},
                       **{'ACmix-README': 'acmix'})
#: the note prefix of a cell whose network (or data) this repository does not have
NOT_HERE = 'not reproducible here: '

#: AFINet §4.3 (what the ``afinet`` recipes must say)
AFINET_SETTINGS = {
    'cifar': dict(optimizer='sgd', momentum=0.9, wd=1e-4, batch_size=64, num_epochs=300, lr=0.1,
                  lr_decay=0.1, decay_fractions=(0.5, 0.75), label_mode='fine'),
    'imagenet': dict(optimizer='sgd', momentum=0.9, wd=1e-4, batch_size=64, num_epochs=90,
                     lr=0.1 * 64 / 256, lr_decay=0.1, decay_epochs=(30, 60, 80)),
}
#: ACmix supplement §B (ResNet models, following SAN): batch 256 = 8 GPUs x 32
ACMIX_SETTINGS = dict(num_epochs=100, total_batch=256, gpus=8, lr=0.1, lr_mode='cosine',
                      label_smoothing=True, optimizer='sgd')

_A = 'AFINet paper Table %s'
_CIFAR_NOTE = ('afinet recipe: 300 epochs, batch 64, lr 0.1 / 10 at 150 and 225, the 100 fine '
               'labels; FLOPs are thop counts for a batch of 32')
_IMNET_NOTE = 'afinet recipe: 90 epochs, batch 64, lr 0.025 / 10 at 30, 60, 80'
_ACMIX_NOTE = 'acmix recipe: 100 epochs, batch 256 (8 x 32), cosine from 0.1, label smoothing 0.1'

# --------------------------------------------------------------------------- AFINet
#: Table 2: network -> per stage (params K, FLOPs M at batch 32)
_T2 = {'ResNet-32': ('cifar_resnet32_v1', ((23.36, 765.46), (88.77, 727.19), (353.66, 724.30))),
       'AFI-ResNet-32': ('afi_resnet32', ((18.82, 612.38), (70.72, 575.20), (281.73, 573.02)))}

#: Table 3 (Office-Home, fine-tune on A, test on B; "Pr:Al" as printed is Pr:Ar)
_T3_COLS = ('Ar:Cl', 'Ar:Pr', 'Ar:Rw', 'Cl:Ar', 'Cl:Pr', 'Cl:Rw', 'Pr:Ar', 'Pr:Cl', 'Pr:Rw',
            'Rw:Ar', 'Rw:Cl', 'Rw:Pr', 'Avg.')
_T3 = {'ResNet-50': (34.9, 50.0, 58.0, 37.4, 41.9, 46.2, 38.5, 31.2, 60.4, 53.9, 41.2, 59.9, 46.1),
       'AFI-ResNet-50': (42.0, 64.0, 71.6, 48.2, 56.8, 61.5, 48.5, 36.4, 69.5, 63.7, 45.3, 75.5,
                         56.9)}

#: Table 4 (CIFAR-100): row -> (model or None, top-1 %, params, params unit, FLOPs G at batch 32)
_T4 = {
    'ResNet-32': ('cifar_resnet32_v1', 71.16, 472.76, 'K', 2.23),
    'AFI-ResNet-32': ('afi_resnet32', 71.09, 378.23, 'K', 1.78),
    'ResNet-110': ('cifar_resnet110_v1', 73.73, 1.74, 'M', 8.17),
    'AFI-ResNet-110': ('afi_resnet110', 74.03, 1.35, 'M', 6.23),
    'ShuffleNetV2': (None, 70.71, 0.94, 'M', 1.32),
    'AFI-ShuffleNetV2': (None, 72.06, 0.95, 'M', 1.32),
    'MobileNetV2': ('cifar_mobilenetv2_kl', 75.20, 2.41, 'M', 3.03),
    'AFI-MobileNetV2': (None, 75.94, 2.25, 'M', 2.67),
    'DenseNet-40': (None, 75.58, 1.06, 'M', 34.48),
    'ResNeXt-29 (32x4d)': ('cifar_resnext29_32x4d_kl', 78.44, 4.87, 'M', 24.95),
    'AFI-ResNeXt-29 (32x4d)': ('afi_resnext29_32x4d', 79.37, 4.26, 'M', 21.74),
    'DenseNet-100': (None, 79.80, 7.09, 'M', 230.119),
}
_T4_WHY = {
    'ShuffleNetV2': 'the paper does not say where AFI goes in ShuffleNetV2, so neither network is '
                    'built (related-methods §1.5, A11)',
    'MobileNetV2': "the CIFAR AFI-MobileNetV2 count (2.25M / 2.67G) does not follow from any "
                   "reading (related-methods §1.5, A11); afi_cifar_mobilenetv2_kl (the Fig. 5b "
                   "rule of the ImageNet net on the KL host) has 2,534,276 parameters, so it is "
                   "not this row",
    'DenseNet': 'DenseNet is a comparison network of the paper, not built here',
}

#: Table 5 (ImageNet): row -> (model or None, top-1 %, top-5 %, params M, FLOPs G at batch 32)
_T5 = {
    'ResNet-50': ('resnet50_v1b', 75.3, 92.2, 25.56, 131.57),
    'AFI-ResNet-50': ('afi_resnet50', 76.19, 92.88, 23.85, 121.72),
    'ResNet-101': ('resnet101_v1b', 76.4, 92.9, 44.55, 250.69),
    'AFI-ResNet-101': ('afi_resnet101', 77.72, 93.76, 40.75, 226.91),
    'ResNet-152': ('resnet152_v1b', 77.0, 93.3, 60.19, 369.88),
    'AFI-ResNet-152': ('afi_resnet152', 78.24, 93.98, 54.67, 332.24),
    'MobileNetV2': ('mobilenetv2_1.0', 66.09, 87.14, 3.51, 10.46),
    'AFI-MobileNetV2': ('afi_mobilenetv2_1.0', 68.24, 88.54, 3.63, 9.36),
    'ResNeXt-50 (32x4d)': ('resnext50_32x4d_v1b', 76.08, 92.92, 25.03, 136.30),
    'AFI-ResNeXt-50': ('afi_resnext50_32x4d', 77.16, 93.40, 21.84, 116.61),
}
_T5_COLS = ('Top-1 Prec.', 'Top-5 Prec.', '#Params(M)', '#FLOPs(G)')

#: Table 6 (memory, batch 64, MiB): row -> (model, training, inference)
_T6 = {'ResNet-50': ('resnet50_v1b', 7447, 3827), 'AFI-ResNet-50': ('afi_resnet50', 7001, 2671)}

#: Table 7 (AFI in one stage only, CIFAR-100 top-1 %): backbone -> (depth, [none, s1, s2, s3])
_T7 = {'ResNet-32': (32, (71.16, 71.38, 70.63, 70.75)),
       'ResNet-110': (110, (73.73, 75.03, 74.13, 74.02))}
_T7_COLS = ('no AFI', 'Stage 1', 'Stage 2', 'Stage 3')

#: Table 8 (AFI-ResNet-50, ImageNet top-1 % vs r)
_T8 = {1: 76.21, 2: 76.21, 4: 76.19, 8: 76.11}

#: Table 9 (AFI-MobileNetV2 + an attention module, CIFAR-100 top-1 %)
_T9 = (('Baseline', 75.20), ('AFI', 75.94), ('AFI-SE', 76.15), ('AFI-GE', 76.22),
       ('AFI-CBAM', 76.51), ('AFI-ECA', 76.76))

# --------------------------------------------------------------------------- ACmix
#: row -> (model or None, top-1 %, params M, FLOPs G); baselines from the SAN README
_ACMIX = {
    'ResNet-26': ('resnet26_v1b', 73.6, 13.7, 2.4),
    'ResNet-26 + ACmix': ('acmix_resnet26', 76.1, 10.6, 2.3),
    'ResNet-38': ('resnet38_v1b', 76.0, 19.6, 3.2),
    'ResNet-38 + ACmix': ('acmix_resnet38', 77.4, 14.6, 2.9),
    'ResNet-50': ('resnet50_v1b', 76.9, 25.6, 4.1),
    'ResNet-50 + ACmix': ('acmix_resnet50', 77.8, 18.6, 3.6),
    'SAN-10 + ACmix': (None, 77.6, 12.1, 1.9),
    'SAN-15 + ACmix': (None, 78.4, 16.6, 2.7),
    'SAN-19 + ACmix': (None, 78.7, 21.2, 3.4),
    'PVT-T + ACmix': (None, 78.0, 13.0, 2.0),
    'PVT-S + ACmix': (None, 81.7, 25.0, 3.9),
    'Swin-T + ACmix': (None, 81.9, 30.0, 4.6),
    'Swin-S + ACmix': (None, 83.5, 51.0, 9.0),
}
#: the ACmix code's exact trainable counts (related-methods §2.6) vs the README's
_ACMIX_CODE_COUNTS = {'acmix_resnet26': 10487816, 'acmix_resnet38': 14410896,
                      'acmix_resnet50': 18333976}

#: printed deltas: (table, row, column) -> (delta, key of the cell it is relative to or None)
DELTAS = {}
_T5_DELTAS = {  # AFINet Table 5: the subscripts, in column order
    'AFI-ResNet-50': (0.89, 0.68, -1.71, -9.85), 'AFI-ResNet-101': (1.32, 0.86, -3.80, -23.78),
    'AFI-ResNet-152': (1.24, 0.68, -5.52, -37.64), 'AFI-MobileNetV2': (2.15, 1.40, 0.12, -1.10),
    'AFI-ResNeXt-50': (1.08, 0.48, -3.19, -19.69)}
for _row, _ds in _T5_DELTAS.items():
    _base = {'AFI-ResNeXt-50': 'ResNeXt-50 (32x4d)'}.get(_row, _row[len('AFI-'):])
    for _col, _d in zip(_T5_COLS, _ds):
        DELTAS[('AFINet-5', _row, _col)] = (_d, ('AFINet-5', _base, _col))
for _row, _ds in (('ResNet-32', (0.22, -0.53, -0.41)), ('ResNet-110', (1.30, 0.40, 0.29))):
    for _col, _d in zip(_T7_COLS[1:], _ds):
        DELTAS[('AFINet-7', _row, _col)] = (_d, ('AFINet-7', _row, _T7_COLS[0]))
for _depth, _d in ((26, 2.5), (38, 1.4), (50, 0.9)):
    DELTAS[('ACmix-README', 'ResNet-%d + ACmix' % _depth, 'Top-1')] = (
        _d, ('ACmix-README', 'ResNet-%d' % _depth, 'Top-1'))
# the README's deltas of the other hosts (their baselines are not in the table)
for _row, _d in (('SAN-10 + ACmix', 0.5), ('SAN-15 + ACmix', 0.4), ('SAN-19 + ACmix', 0.5),
                 ('PVT-T + ACmix', 2.9), ('PVT-S + ACmix', 1.9), ('Swin-T + ACmix', 0.6),
                 ('Swin-S + ACmix', 0.5)):
    DELTAS[('ACmix-README', _row, 'Top-1')] = (_d, None)


def build(make):
    """The cells; ``make(table, row, column, scenario, value, metric, unit, dataset, model,
    source, note)`` builds one (paper_tables fills b, label mode, recipe and availability)."""
    out = []

    def add(table, row, column, scenario, value, metric, unit, dataset, model, source, note=''):
        out.append(make(table, row, column, scenario, value, metric, unit, dataset, model, source,
                        note))

    # ---- Table 2 (per-stage parameters and FLOPs of ResNet-32 / AFI-ResNet-32)
    for row, (model, stages) in _T2.items():
        for s, (params, flops) in enumerate(stages, 1):
            note = 'stage %d of %s on CIFAR-100 (100-way head)' % (s, model)
            add('AFINet-2', row, 'Stage %d #Params' % s, 'cifar', params, 'params_K', 'K',
                'cifar100', model, _A % 2, note)
            add('AFINet-2', row, 'Stage %d #FLOPs' % s, 'cifar', flops, 'flops_M', 'M', 'cifar100',
                model, _A % 2, note + '; thop count for a batch of 32')
    # ---- Table 3 (Office-Home)
    for row, values in _T3.items():
        for col, v in zip(_T3_COLS, values):
            add('AFINet-3', row, col, None, v, 'accuracy', 'percent', None, None, _A % 3,
                NOT_HERE + 'Office-Home fine-tuning (20 epochs from ImageNet weights) has no '
                'pipeline in this repository' + ('; printed "Pr:Al"' if col == 'Pr:Ar' else ''))
    # ---- Table 4 (CIFAR-100)
    for row, (model, acc, params, unit, flops) in _T4.items():
        why = next((w for k, w in _T4_WHY.items() if k in row), '')
        note = (NOT_HERE + why) if model is None else _CIFAR_NOTE
        if row == 'AFI-ResNet-110':
            note += ('; our r = 4 count is 1,334,820 (1.33M), 1.35M needs r = 2 '
                     '(afi_resnet110_r2: 1,346,244) -- unresolved')
        add('AFINet-4', row, 'C100', 'cifar', acc, 'accuracy', 'percent', 'cifar100', model,
            _A % 4, note)
        add('AFINet-4', row, '#Params', 'cifar', params, 'params_K' if unit == 'K' else 'params_M',
            unit, 'cifar100', model, _A % 4, note)
        add('AFINet-4', row, '#FLOPs', 'cifar', flops, 'flops_G', 'G', 'cifar100', model, _A % 4,
            note)
    # ---- Table 5 (ImageNet)
    for row, (model, top1, top5, params, flops) in _T5.items():
        note = _IMNET_NOTE
        if model == 'resnet50_v1b' or model == 'resnext50_32x4d_v1b':
            note += '; baseline = the 806562e v1b host with plain addition (torchvision layout)'
        if model == 'mobilenetv2_1.0':
            note += ('; torchvision layout: 3,504,872 parameters = 3.50M (the paper prints 3.51M, '
                     'unresolved) and ~10.05G thop FLOPs (the paper 10.46G)')
        if model == 'afi_mobilenetv2_1.0':
            note += '; 3,626,936 parameters, exact'
        for col, v, metric, unit in zip(_T5_COLS, (top1, top5, params, flops),
                                        ('accuracy', 'top5_acc', 'params_M', 'flops_G'),
                                        ('percent', 'percent', 'M', 'G')):
            add('AFINet-5', row, col, 'imagenet', v, metric, unit, 'imagenet', model, _A % 5, note)
    # ---- Table 6 (memory)
    for row, (model, train, infer) in _T6.items():
        for col, v in (('Training Memory (MiB)', train), ('Inference Memory (MiB)', infer)):
            add('AFINet-6', row, col, 'imagenet', v, 'memory_MiB', 'MiB', 'imagenet', model, _A % 6,
                'GPU memory at batch 64 (framework and GPU not stated)')
    # ---- Table 7 (AFI in one stage)
    for row, (depth, values) in _T7.items():
        for s, (col, v) in enumerate(zip(_T7_COLS, values)):
            model = 'cifar_resnet%d_v1' % depth if s == 0 else 'afi_resnet%d_stage%d' % (depth, s)
            add('AFINet-7', row, col, 'cifar', v, 'accuracy', 'percent', 'cifar100', model, _A % 7,
                _CIFAR_NOTE)
    # ---- Table 8 (r)
    for r, v in _T8.items():
        add('AFINet-8', 'AFI-ResNet-50', 'r=%d' % r, 'imagenet', v, 'accuracy', 'percent',
            'imagenet', 'afi_resnet50' if r == 4 else 'afi_resnet50_r%d' % r, _A % 8, _IMNET_NOTE)
    # ---- Table 9 (AFI-MobileNetV2 + attention)
    for col, v in _T9:
        if col == 'Baseline':          # the MobileNetV2 row of Table 4 (75.20)
            add('AFINet-9', 'MobileNetV2', col, 'cifar', v, 'accuracy', 'percent', 'cifar100',
                'cifar_mobilenetv2_kl', _A % 9, _CIFAR_NOTE + '; the run of Table 4\'s '
                'MobileNetV2 row')
            continue
        add('AFINet-9', 'MobileNetV2', col, 'cifar', v, 'accuracy', 'percent', 'cifar100', None,
            _A % 9, NOT_HERE + 'the CIFAR AFI-MobileNetV2 is not reproducible (related-methods '
            '§1.5) and where the attention module goes is not specified (A14)')
    # ---- ACmix README (+ SAN README baselines)
    for row, (model, top1, params, flops) in _ACMIX.items():
        base = '+ ACmix' not in row
        source = ('SAN README (the baseline of the ACmix README delta)' if base else
                  'ACmix release README (LeapLabTHU/ACmix @ 81dddb6)')
        if model is None:
            note = NOT_HERE + 'only the ResNet hosts of ACmix are built here'
        else:
            note = _ACMIX_NOTE
            if model in _ACMIX_CODE_COUNTS:
                note += ('; the released code builds %d parameters (ours too): the README '
                         'prints 81 * sum(C) more, cause unknown' % _ACMIX_CODE_COUNTS[model])
        for col, v, metric, unit in (('Top-1', top1, 'accuracy', 'percent'),
                                     ('Params', params, 'params_M', 'M'),
                                     ('FLOPs', flops, 'flops_G', 'G')):
            add('ACmix-README', row, col, 'imagenet', v, metric, unit, 'imagenet', model, source,
                note + ('; FLOPs per image (multiply-adds)' if col == 'FLOPs' else ''))
    return out


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


def _check_recipe(problems, name, recipe, want):
    for k, v in want.items():
        if recipe.get(k) != v:
            problems.append('recipe %s: %s=%r but the paper says %r' % (name, k, recipe.get(k), v))
