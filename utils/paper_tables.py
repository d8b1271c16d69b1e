"""The paper's result tables as data: one :class:`Cell` per printed number.

Sources: "Attentional Feature Fusion" (Dai et al., WACV 2021) Tables 2-5, the supplement's Tables S1 and
S2 (= Tables 6 and 7 of the arXiv appendix), the open-aff HEAD README and the released checkpoints
(:data:`net.model_store.RELEASED`, read from there, not retyped).

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
* ``model``: a registry name (``net.get_model_list()``), a *planned* name for the scenarios that have no
  network yet (``cifar_<fusion>_inception_resnet20_b<b>``, ``stopsign_<fusion>_fpn_resnet20_b<b>``; then
  ``available`` is False), or ``None`` (no network of ours: other architectures, FLOPs rows).
* ``recipe``: ``'paper'`` (Tables 3, 4, S1: Table 2 settings, no mixup), ``'paper_sota'`` (Table 5: the
  submitted paper's runs, with mixup), ``'released'`` (HEAD README / released checkpoints), ``None`` for
  cells that are no training result.

The related methods' tables (AFINet ``AFINet-<n>``, ACmix ``ACmix-README``; scenario ``'cifar'`` = plain
CIFAR-100 classification on the 100 fine labels, ``'imagenet'``; recipes ``'afinet'`` / ``'acmix'``; extra
metrics for their parameter, FLOPs, top-5 and memory columns) come from :mod:`utils.related_tables`.

``python -m utils.reproduce`` turns cells into training commands; :func:`lint` checks the table
(``python -m utils.paper_tables`` prints its problems).
"""
import re
from dataclasses import dataclass

import net
from net.model_store import RELEASED
from utils import related_tables as RT

__all__ = ['Cell', 'TABLES', 'SCENARIOS', 'METRICS', 'TABLE2', 'SUPPLEMENT', 'FUSION_OF_ROW',
           'CELLS', 'cells', 'lint', 'planned_model', 'registry']

#: table identifiers, in listing order
AFF_TABLES = ('3', '4', '5', 'S1', 'S2', 'HEAD-README', 'released')
TABLES = AFF_TABLES + RT.TABLES
SCENARIOS = ('inception', 'resnet', 'fpn', 'imagenet', 'cifar')
#: metric -> units it may be printed in (the last five: the related methods' tables)
METRICS = {'accuracy': ('fraction', 'percent'), 'mIoU': ('fraction',),
           'top1_err': ('fraction', 'percent'), 'params_M': ('M',), 'flops_pct': ('percent',),
           'flops_c2hw': ('C^2HW',), 'params_K': ('K',), 'flops_G': ('G',), 'flops_M': ('M',),
           'top5_acc': ('percent',), 'memory_MiB': ('MiB',)}
RECIPES = ('paper', 'paper_sota', 'released', 'afinet', 'acmix')
_RECIPE_OF_TABLE = dict({'3': 'paper', '4': 'paper', 'S1': 'paper', '5': 'paper_sota',
                         'HEAD-README': 'released', 'released': 'released'}, **RT.RECIPE_OF_TABLE)
_DATASET_OF_SCENARIO = {'inception': 'cifar100', 'resnet': 'cifar100', 'fpn': 'stopsign',
                        'imagenet': 'imagenet', 'cifar': 'cifar100', None: None}

# --------------------------------------------------------------------------- Table 2 (settings)
#: Table 2 of the paper, one dict per host network (key = scenario, plus 'resnext' for the CIFAR
#: ResNeXt-38 row, which no table of results uses).  Values as printed.
TABLE2 = {
    'inception': dict(task='Image Classification', dataset='CIFAR-100', host='Inception-ResNet-20-b',
                      fusing_scenario='Same Layer', r=4, epochs=400, batch_size=128,
                      optimizer='Nesterov', lr=0.2, lr_mode='Step, gamma=0.1', init='Kaiming'),
    'resnet': dict(task='Image Classification', dataset='CIFAR-100', host='ResNet-20-b',
                   fusing_scenario='Short Skip', r=4, epochs=400, batch_size=128,
                   optimizer='Nesterov', lr=0.2, lr_mode='Step, gamma=0.1', init='Kaiming'),
    'resnext': dict(task='Image Classification', dataset='CIFAR-100', host='ResNeXt-38-32x4d',
                    fusing_scenario='Short Skip', r=16, epochs=400, batch_size=128,
                    optimizer='Nesterov', lr=0.2, lr_mode='Step, gamma=0.1', init='Xavier'),
    'imagenet': dict(task='Image Classification', dataset='ImageNet', host='ResNet-50',
                     fusing_scenario='Short Skip', r=16, epochs=160, batch_size=128,
                     optimizer='Nesterov', lr=0.075, lr_mode='Cosine', init='Kaiming'),
    'fpn': dict(task='Semantic Segmentation', dataset='StopSign', host='ResNet-20-b + FPN',
                fusing_scenario='Long Skip', r=4, epochs=300, batch_size=32, optimizer='AdaGrad',
                lr=0.01, lr_mode='Poly', init='Kaiming'),
}

#: the settings the supplement adds to Table 2 ("Implementation details")
SUPPLEMENT = {
    'cifar': dict(wd=1e-4, lr_decay=0.1, lr_decay_epochs=(300, 350)),
    'imagenet': dict(label_smoothing=True, lr_mode='cosine', weight_decay=False),
    'stopsign': dict(dataset='subset of COCO', loss='cross entropy', metric='mIoU'),
    'mixup': 'Table 5 and Table 6 (S1) networks trained with mixup; all ablations and Fig. 7 without',
    'flops': dict(resnet50_gflops=4.1, aff_resnet50_gflops=4.3, increase_pct=4.88),
}

#: paper row label (Tables 3, 4, S1) -> registry fusion short name
FUSION_OF_ROW = {
    'Global + Global': 'globalglobal', 'Local + Local': 'locallocal', 'Global + Local': 'aff',
    'Add': 'add', 'Concatenation': 'concat', 'MS-GAU': 'msgau', 'MS-SENet': 'msse', 'MS-SA': 'mssa',
    'AFF (ours)': 'aff', 'iAFF (ours)': 'iaff',
    'Half-AFF': 'halfaff', 'Concat-AFF': 'concataff', 'AFF': 'aff', 'Recursive AFF': 'recursiveaff',
    'Iterative AFF': 'iaff',
}

_PLANNED = (re.compile(r'^cifar_([a-z0-9]+)_inception_resnet20_b([1-4])$'),
            re.compile(r'^stopsign_([a-z0-9]+)_fpn_resnet20_b([1-4])$'))


def registry():
    """The registry names, as a set (re-read each call: later issues add networks)."""
    return set(net.get_model_list())


def planned_model(scenario, fusion, b):
    """Registry name of a ``(scenario, fusion, b)`` cell of Tables 3/4/S1 (may not exist yet)."""
    if scenario == 'inception':
        return 'cifar_%s_inception_resnet20_b%d' % (fusion, b)
    if scenario == 'resnet':
        return 'cifar_%s_resnet20_b%d' % (fusion, b)
    if scenario == 'fpn':
        return 'stopsign_%s_fpn_resnet20_b%d' % (fusion, b)
    if scenario == 'imagenet':
        return '%s_resnet50_v1b' % fusion
    raise ValueError('no model name for scenario %r' % (scenario,))


# --------------------------------------------------------------------------- the cell
@dataclass(frozen=True)
class Cell:
    """One number of one table."""
    table: str            #: '3', '4', '5', 'S1', 'S2', 'HEAD-README' or 'released'
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
    model: object         #: registry name, planned name, or None
    available: bool       #: model is in net.get_model_list()
    source: str           #: where the number comes from
    note: str = ''

    @property
    def key(self):
        return (self.table, self.row, self.column)

    @property
    def text(self):
        """The value as the source prints it ('0.740', '3.70', '20.9', '19.78'; '/' for None)."""
        if self.value is None:
            return '/'
        if self.unit == 'C^2HW':
            return '%d' % self.value
        digits = {'3': 3, '4': 3, 'S1': 3, 'S2': 2, '5': 1, 'released': 4}.get(self.table)
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


def _cell(table, row, column, scenario, b, value, metric, unit, dataset, label_mode, recipe,
          model, source, note='', known=None):
    known = registry() if known is None else known
    return Cell(table=table, row=row, column=column, scenario=scenario, b=b, value=value,
                metric=metric, unit=unit, dataset=dataset, label_mode=label_mode, recipe=recipe,
                model=model, available=model is not None and model in known, source=source,
                note=note)


# --------------------------------------------------------------------------- the numbers
_COLS = (('inception', 'InceptionNet'), ('resnet', 'ResNet'), ('fpn', 'FPN'))

#: Table 3: row -> (InceptionNet b1..4, ResNet b1..4, FPN b1..4, ImageNet)
_T3 = {
    'Global + Global': ((0.735, 0.766, 0.775, 0.789), (0.754, 0.796, 0.811, 0.821),
                        (0.911, 0.923, 0.936, 0.939), 0.777),
    'Local + Local': ((0.746, 0.771, 0.785, 0.787), (0.754, 0.794, 0.808, 0.814),
                      (0.895, 0.919, 0.921, 0.924), 0.780),
    'Global + Local': ((0.756, 0.784, 0.794, 0.801), (0.763, 0.804, 0.816, 0.826),
                       (0.924, 0.935, 0.939, 0.944), 0.784),
}
#: 806562e ablation logs behind Table 3's ImageNet column (spec §5)
_T3_IMAGENET_LOG = {
    'Global + Global': ('resnet50_v1b_GlobGlob_div16.log', 0.2232, 158),
    'Local + Local': ('resnet50_v1b_LocaLoca_div16.1.log', 0.2200, 158),
    'Global + Local': ('resnet50_v1b_best_div16_resume.log', 0.2162, 155),
}

#: Table 4: row -> (context, strategy, InceptionNet b1..4, ResNet b1..4, FPN b1..4); None = '/'
_T4 = {
    'Add': ('None', '-', (0.720, 0.753, 0.771, 0.782), (0.740, 0.786, 0.797, 0.808),
            (0.895, 0.920, 0.925, 0.928)),
    'Concatenation': ('None', '-', (0.725, 0.749, 0.772, 0.779), (0.742, 0.782, 0.793, 0.798),
                      (0.897, 0.909, 0.925, 0.939)),
    'MS-GAU': ('Partially', 'Modulation', (0.751, 0.774, 0.788, 0.795),
               (0.766, 0.803, 0.815, 0.819), (0.917, 0.926, 0.937, 0.941)),
    'MS-SENet': ('Partially', 'Refinement', (0.752, 0.780, 0.790, 0.798),
                 (0.765, 0.799, 0.814, 0.820), (0.915, 0.929, 0.940, 0.940)),
    'MS-SA': ('Fully', 'Modulation', (0.756, 0.779, 0.790, 0.798), (0.761, 0.801, 0.814, 0.822),
              (0.920, 0.932, 0.938, 0.941)),
    'AFF (ours)': ('Fully', 'Selection', (0.756, 0.784, 0.794, 0.801),
                   (0.763, 0.804, 0.816, 0.826), (0.924, 0.935, 0.939, 0.944)),
    'iAFF (ours)': ('Fully', 'Selection', (0.774, 0.801, 0.808, 0.814),
                    (0.772, 0.807, 0.822, None), (0.927, 0.938, 0.945, 0.953)),
}

#: Table S1: row -> (fusion weights of local/global contexts, b1..3)
_S1 = {
    'Half-AFF': ('Constant, 0.5 for each', (0.759, 0.798, 0.813)),
    'Concat-AFF': ('Learned, fixed after training', (0.765, 0.792, 0.817)),
    'AFF': ('Constant, 0.5 for each', (0.764, 0.799, 0.816)),
    'Recursive AFF': ('Dynamic, depending on the local and global channel contexts',
                      (0.764, 0.797, 0.812)),
    'Iterative AFF': ('Constant, 0.5 for each', (0.772, 0.807, 0.822)),
}

#: Table S2: row -> (conv FLOPs in the ResBlock, point-wise conv FLOPs in AFF, percentage)
_S2 = {
    'BasicResBlock (CIFAR, r=4), doubling channels: Yes': (27, 1, 3.70),
    'BasicResBlock (CIFAR, r=4), doubling channels: No': (36, 1, 2.78),
    'BottleneckResBlock (ImageNet, r=16), doubling channels: Yes': (51, 4, 7.84),
    'BottleneckResBlock (ImageNet, r=16), doubling channels: No': (52, 4, 7.69),
}

#: Table 5, other papers' networks: row -> (top-1 err %, params M, reference number in the paper)
_T5_OTHERS = {
    'ResNet-101': (23.2, 42.5, 12),
    'Efficient-Channel-Attention-Net-101': (21.4, 42.5, 42),
    'Attention-Augmented-ResNet-101': (21.3, 45.4, 1),
    'SENet-101': (20.9, 49.4, 16),
    'Gather-Excite-θ+-ResNet-101': (20.7, 58.4, 15),
    'Local-Importance-Pooling-ResNet-101': (20.7, 42.9, 10),
}
#: Table 5, ours: row -> (model, top-1 err %, params M, HEAD architecture whose trainable count
#: gives the params, 806562e log, best err, epoch, log note)
_T5_OURS = {
    'AFF-ResNet-50 (ours)': ('aff_resnet50_v1b', 20.9, 30.3, 'aff_resnet50', 30373192,
                             'resnet50_v1b_best_AFF_mixup.log', 0.2090, 157,
                             '160 epochs, 2 GPUs x 120, mixup 0.2, label smoothing, last_gamma, fp16'),
    'AFF-ResNeXt-50-32x4d (ours)': ('aff_resnext50_32x4d_v1b', 20.8, 29.9, 'aff_resnext50_32x4d',
                                    29953704, 'resnext50_32x4d_aff_best.log', 0.2086, 152,
                                    '160 epochs, 4 GPUs x 128'),
    'iAFF-ResNet-50 (ours)': ('iaff_resnet50_v1b', 20.4, 35.1, 'iaff_resnet50', 35170120,
                              'resnet50_v1b_best_iAFF.log', 0.2043, 178,
                              '180 epochs (Table 2 says 160), 2 GPUs x 96'),
    'iAFF-ResNeXt-50-32x4d (ours)': ('iaff_resnext50_32x4d_v1b', 20.2, 34.7,
                                     'iaff_resnext50_32x4d', 34750632,
                                     'resnext50_32x4d_iaff_best.log', 0.2025, 159,
                                     '160 epochs, 4 GPUs x 128'),
}
#: v1b (806562e host) trainable counts, for the notes (spec §2.7)
_V1B_TRAINABLE = {'aff_resnet50_v1b': 30353960, 'aff_resnext50_32x4d_v1b': 29825832,
                  'iaff_resnet50_v1b': 35150888, 'iaff_resnext50_32x4d_v1b': 34622760}
#: what the slides (2020-11-26) print for Table 5 rows (they list only the iAFF rows)
_SLIDES_T5 = {'iAFF-ResNet-50 (ours)': 20.2, 'iAFF-ResNeXt-50-32x4d (ours)': 19.8}

#: HEAD README ImageNet table: row -> (model, top-1 err %)
_HEAD_README = {
    'AFF-ResNet-50': ('aff_resnet50', 20.3),
    'iAFF-ResNet-50': ('iaff_resnet50', 20.2),
    'iAFF-ResNeXt-50-32x4d': ('iaff_resnext50_32x4d', 19.78),
}


def _build():
    known = registry()
    out = []
    cifar = dict(unit='fraction', dataset='cifar100', label_mode='coarse', recipe='paper',
                 known=known)

    def ablation(table, row, scenario, b, value, source, note):
        dataset = _DATASET_OF_SCENARIO[scenario]
        kw = dict(cifar, dataset=dataset, label_mode='coarse' if dataset == 'cifar100' else None)
        title = dict(_COLS)[scenario]
        metric = 'mIoU' if scenario == 'fpn' else 'accuracy'
        out.append(_cell(table, row, '%s b=%d' % (title, b), scenario, b, value, metric,
                         source=source, note=note,
                         model=planned_model(scenario, FUSION_OF_ROW[row], b), **kw))

    # ---- Table 3
    for row, (incep, resnet, fpn, imagenet) in _T3.items():
        for (scenario, _), values in zip(_COLS, (incep, resnet, fpn)):
            for b, v in enumerate(values, 1):
                note = ('same run as Table 4 "AFF (ours)" (the paper prints identical values)'
                        if row == 'Global + Local' else '')
                ablation('3', row, scenario, b, v, 'paper Table 3', note)
        log, err, epoch = _T3_IMAGENET_LOG[row]
        out.append(_cell('3', row, 'ImageNet', 'imagenet', None, imagenet, 'accuracy', 'fraction',
                         'imagenet', None, 'paper', planned_model('imagenet', FUSION_OF_ROW[row], 0),
                         'paper Table 3',
                         '1 - best top-1 err %.4f (epoch %d) of the 806562e ablation log %s '
                         '(ResNet-50 v1b, r=16, 160 epochs, no mixup); rounded, not truncated'
                         % (err, epoch, log), known=known))
    # ---- Table 4
    for row, (context, strategy, incep, resnet, fpn) in _T4.items():
        for (scenario, _), values in zip(_COLS, (incep, resnet, fpn)):
            for b, v in enumerate(values, 1):
                notes = ['context %s, strategy %s' % (context, strategy)]
                if row == 'AFF (ours)':
                    notes.append('same run as Table 3 "Global + Local" (identical values)')
                if row == 'AFF (ours)' and scenario == 'resnet' and b <= 3:
                    s1 = _S1['AFF'][1][b - 1]
                    if s1 != v:
                        notes.append('Table S1 "AFF" prints %.3f for this configuration' % s1)
                if v is None:
                    notes.append("the paper prints '/' (no number); §5.1.2 says iAFF-ResNet "
                                 "'did not improve but degraded' from b=3 to b=4")
                ablation('4', row, scenario, b, v, 'paper Table 4', '; '.join(notes))
    # ---- Table S1 (ResNet-20-b host: its iAFF row equals Table 4's iAFF ResNet row)
    for row, (weights, values) in _S1.items():
        for b, v in enumerate(values, 1):
            notes = ['fusion weights of the local/global contexts: %s' % weights,
                     'host ResNet-20-b inferred (the supplement does not name it)']
            if row == 'AFF':
                t4 = _T4['AFF (ours)'][3][b - 1]
                if t4 != v:
                    notes.append('Table 4 "AFF (ours)" ResNet b=%d prints %.3f for the same '
                                 'configuration' % (b, t4))
            ablation('S1', row, 'resnet', b, v, 'supplement Table S1 (= arXiv Table 6)',
                     '; '.join(notes))
    # ---- Table 5
    for row, (err, params, ref) in _T5_OTHERS.items():
        for column, value, metric, unit in (('top-1 err.', err, 'top1_err', 'percent'),
                                            ('Params', params, 'params_M', 'M')):
            out.append(_cell('5', row, column, 'imagenet', None, value, metric, unit, 'imagenet',
                             None, None, None, 'paper Table 5 (cited from reference [%d])' % ref,
                             'not a network of this paper', known=known))
    for row, (model, err, params, head, head_count, log, log_err, epoch, how) in _T5_OURS.items():
        note = ('806562e log %s: best top-1 err %.4f (epoch %d; %s); the paper truncates'
                % (log, log_err, epoch, how))
        if row in _SLIDES_T5:
            note += '; the slides print %.1f (the HEAD number)' % _SLIDES_T5[row]
        out.append(_cell('5', row, 'top-1 err.', 'imagenet', None, err, 'top1_err', 'percent',
                         'imagenet', None, 'paper_sota', model, 'paper Table 5', note,
                         known=known))
        out.append(_cell('5', row, 'Params', 'imagenet', None, params, 'params_M', 'M', 'imagenet',
                         None, 'paper_sota', model, 'paper Table 5',
                         'the trainable parameters of the HEAD architecture %s (%d) truncated to '
                         '0.1 M; the 806562e v1b host %s has %d (spec §2.7)'
                         % (head, head_count, model, _V1B_TRAINABLE[model]), known=known))
    # ---- Table S2
    for row, (conv, pw, pct) in _S2.items():
        for column, value, metric, unit in (
                ('Flops of Conv in ResBlock', conv, 'flops_c2hw', 'C^2HW'),
                ('Flops of Point-wise Conv in AFF module', pw, 'flops_c2hw', 'C^2HW'),
                ('Percentage', pct, 'flops_pct', 'percent')):
            out.append(_cell('S2', row, column, None, None, value, metric, unit, None, None, None,
                             None, 'supplement Table S2 (= arXiv Table 7)',
                             'an analytic FLOPs count (multiply and add counted separately)',
                             known=known))
    # ---- HEAD README (ImageNet table; its AFF-ResNeXt-50 row is commented out)
    for row, (model, err) in _HEAD_README.items():
        out.append(_cell('HEAD-README', row, 'top-1 err.', 'imagenet', None, err, 'top1_err',
                         'percent', 'imagenet', None, 'released', model, 'open-aff HEAD README',
                         'the released checkpoint of %s, rounded (HEAD architecture: deep stem + '
                         'avg_down, 240 epochs)' % model, known=known))
    # ---- released checkpoints (net.model_store.RELEASED)
    for c in RELEASED:
        if c.label_mode in ('fine', 'coarse'):
            scenario, dataset, label_mode = 'resnet', 'cifar100', c.label_mode
            column = 'CIFAR-100 %s' % c.label_mode
        else:
            scenario, dataset, label_mode, column = 'imagenet', 'imagenet', None, 'ImageNet'
        out.append(_cell('released', '%s [%s]' % (c.model, c.tag), column, scenario, None,
                         c.value, c.metric, 'fraction', dataset, label_mode, 'released', c.model,
                         'net.model_store.RELEASED (official log %s)' % c.log,
                         '%s; best at epoch %d; file %s' % (c.note, c.epoch, c.file), known=known))
    return tuple(out)


def _build_related():
    known = registry()

    def make(table, row, column, scenario, value, metric, unit, dataset, model, source, note):
        return _cell(table, row, column, scenario, None, value, metric, unit, dataset,
                     'fine' if dataset == 'cifar100' else None,
                     RT.RECIPE_OF_TABLE[table] if model else None, model, source, note,
                     known=known)
    return tuple(RT.build(make))


#: every cell, in table order
CELLS = _build() + _build_related()


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
    its table, and defined for CIFAR; model in the registry iff ``available``, unavailable names
    planned ones; the model's fusion, depth and scenario agree with the row and column; source given.
    Across cells: unique (table, row, column); Table S2 percentages follow from its FLOPs; HEAD README
    numbers are the released checkpoints rounded; Table 2 + supplement agree with the ``paper`` recipe.
    """
    from utils.recipes import CIFAR_RECIPES
    all_cells = CELLS if all_cells is None else tuple(all_cells)
    known = registry()
    problems = []

    def bad(c, msg):
        problems.append('Table %s | %s | %s: %s' % (c.table, c.row, c.column, msg))

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
            if not (c.table == 'S2' or (c.table == '5' and '(ours)' not in c.row) or
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
        if c.model not in known and not any(p.match(c.model) for p in _PLANNED):
            bad(c, 'model %r is neither in the registry nor a planned name' % c.model)
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
    # HEAD README = released top-1 errors, rounded to the printed digits
    released = {c.model: c for c in all_cells if c.table == 'released' and c.metric == 'top1_err'}
    for c in all_cells:
        if c.table != 'HEAD-README':
            continue
        r = released.get(c.model)
        digits = len(repr(c.value).split('.')[1]) if '.' in repr(c.value) else 0
        if r is None:
            problems.append('Table HEAD-README | %s: no released checkpoint of %s' % (c.row, c.model))
        elif round(100 * r.value, digits) != c.value:
            problems.append('Table HEAD-README | %s: %s != released %.4f rounded'
                            % (c.row, c.value, r.value))
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


def main():
    problems = lint()
    for p in problems:
        print(p)
    print('%d cells, %d problems' % (len(CELLS), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    raise SystemExit(main())
