"""utils/paper_tables.py: the paper's tables as data (counts, values, lint, consistency).

The values (utils/results/*.csv) are checked three times: against a transcription typed into this file
(always), against docs/official-code.md §6 (always), and against the paper / supplement / slides
texts when $AFF_REFERENCE_DIR names a folder holding them.
"""
import dataclasses
import math
import os
import re
import shutil

import numpy as np
import pytest

import net
from net.model_store import RELEASED
from utils import metafile
from utils import paper_tables as PT

# The cross-checks against the paper / supplement / slides texts run only where the reference texts
# are given explicitly (no path outside the repository is assumed).
SHARED = os.environ.get('AFF_REFERENCE_DIR', '')
PAPER = os.path.join(SHARED, 'papers', 'aff-wacv2021-paper.md')
SUPPLEMENT = os.path.join(SHARED, 'papers', 'aff-supplement.md')
SLIDES = os.path.join(SHARED, 'papers', 'aff-slides.md')
#: our own record of the official code, whose §6 transcribes the tables independently of the CSVs
OFFICIAL_CODE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                             'official-code.md')

# ---------------------------------------------------------------- independent transcription
# Table 3: InceptionNet b1-4 | ResNet b1-4 | FPN b1-4 | ImageNet
T3 = {
    'Global + Global': '.735 .766 .775 .789  .754 .796 .811 .821  .911 .923 .936 .939  .777',
    'Local + Local': '.746 .771 .785 .787  .754 .794 .808 .814  .895 .919 .921 .924  .780',
    'Global + Local': '.756 .784 .794 .801  .763 .804 .816 .826  .924 .935 .939 .944  .784',
}
# Table 4: InceptionNet b1-4 | ResNet b1-4 | FPN b1-4
T4 = {
    'Add': '.720 .753 .771 .782  .740 .786 .797 .808  .895 .920 .925 .928',
    'Concatenation': '.725 .749 .772 .779  .742 .782 .793 .798  .897 .909 .925 .939',
    'MS-GAU': '.751 .774 .788 .795  .766 .803 .815 .819  .917 .926 .937 .941',
    'MS-SENet': '.752 .780 .790 .798  .765 .799 .814 .820  .915 .929 .940 .940',
    'MS-SA': '.756 .779 .790 .798  .761 .801 .814 .822  .920 .932 .938 .941',
    'AFF (ours)': '.756 .784 .794 .801  .763 .804 .816 .826  .924 .935 .939 .944',
    'iAFF (ours)': '.774 .801 .808 .814  .772 .807 .822 /  .927 .938 .945 .953',
}
S1 = {'Half-AFF': '.759 .798 .813', 'Concat-AFF': '.765 .792 .817', 'AFF': '.764 .799 .816',
      'Recursive AFF': '.764 .797 .812', 'Iterative AFF': '.772 .807 .822'}
T5_OURS = {  # row: (model, top-1 err %, params M, HEAD architecture, 806562e log best err)
    'AFF-ResNet-50 (ours)': ('aff_resnet50_v1b', 20.9, 30.3, 'aff_resnet50', 0.2090),
    'AFF-ResNeXt-50-32x4d (ours)': ('aff_resnext50_32x4d_v1b', 20.8, 29.9, 'aff_resnext50_32x4d',
                                    0.2086),
    'iAFF-ResNet-50 (ours)': ('iaff_resnet50_v1b', 20.4, 35.1, 'iaff_resnet50', 0.2043),
    'iAFF-ResNeXt-50-32x4d (ours)': ('iaff_resnext50_32x4d_v1b', 20.2, 34.7,
                                     'iaff_resnext50_32x4d', 0.2025),
}
COLUMNS12 = ['%s b=%d' % (s, b) for s in ('InceptionNet', 'ResNet', 'FPN') for b in (1, 2, 3, 4)]


def _values(text):
    return [None if v == '/' else float(v) for v in text.split()]


def _cell(table, row, column):
    hits = [c for c in PT.CELLS if c.key == (table, row, column)]
    assert len(hits) == 1, (table, row, column)
    return hits[0]


# ---------------------------------------------------------------- counts and transcription
def test_counts_per_table():
    counts = {t: len(PT.cells(table=t)) for t in PT.TABLES}
    assert counts == {'3': 39, '4': 84, '5': 20, 'S1': 15, 'S2': 12, 'HEAD-README': 3,
                      'released': 9,
                      # AFINet: Table 2 2 nets x 3 stages x (params, FLOPs); Table 3 2 x 13
                      # Office-Home columns; Table 4 12 rows x 3; Table 5 10 rows x 4; Table 6
                      # 2 x 2; Table 7 2 x 4; Table 8 4 r; Table 9 6; ACmix README 13 rows x 3
                      'AFINet-2': 12, 'AFINet-3': 26, 'AFINet-4': 36, 'AFINet-5': 40,
                      'AFINet-6': 4, 'AFINet-7': 8, 'AFINet-8': 4, 'AFINet-9': 6,
                      'ACmix-README': 39,
                      # slides: 2 iAFF rows x (err, params); ACmix supplement Table 1: 7
                      # (module, host) pairs x 2 stages x (GFLOPs, share)
                      'slides': 4, 'ACmix-S1': 28}
    assert len(PT.CELLS) == 186 + 203
    assert len({c.key for c in PT.CELLS}) == len(PT.CELLS)


def test_values_equal_the_transcription():
    for row, text in T3.items():
        cols = COLUMNS12 + ['ImageNet']
        assert [_cell('3', row, c).value for c in cols] == _values(text), row
    for row, text in T4.items():
        assert [_cell('4', row, c).value for c in COLUMNS12] == _values(text), row
    for row, text in S1.items():
        assert [_cell('S1', row, 'ResNet b=%d' % b).value for b in (1, 2, 3)] == _values(text)
    for row, (model, err, params, _, _) in T5_OURS.items():
        assert _cell('5', row, 'top-1 err.').value == err
        assert _cell('5', row, 'Params').value == params
        assert _cell('5', row, 'top-1 err.').model == model == _cell('5', row, 'Params').model


# slides (2020-11-26) Table 1, our rows: (top-1 err %, params M)
SLIDES_OURS = {'iAFF-ResNet-50 (ours)': (20.2, 35.1), 'iAFF-ResNeXt-50-32x4d (ours)': (19.8, 34.7)}
# ACmix supplement Table 1: module -> host -> (stage I GFLOPs, %, stage II GFLOPs, %); '-' left out
ACMIX_T1 = {'Convolution': {'ResNet-50': '1.85 99 0.01 1'},
            'Self-Attention': {'ResNet-50': '0.96 83 0.19 17', 'SAN-19': '1.29 64 0.72 36',
                               'Swin-T': '1.04 68 0.49 32'},
            'ACmix': {'ResNet-50': '0.96 73 0.35 27', 'SAN-19': '1.29 60 0.89 40',
                      'Swin-T': '1.04 62 0.64 38'}}


def test_slides_and_acmix_table1_equal_the_transcription():
    for row, (err, params) in SLIDES_OURS.items():
        assert (_cell('slides', row, 'top-1 err.').value, _cell('slides', row, 'Params').value) \
            == (err, params)
        assert _cell('slides', row, 'top-1 err.').model == T5_OURS[row][3]   # the HEAD network
    n = 0
    for module, hosts in ACMIX_T1.items():
        for host, text in hosts.items():
            g1, p1, g2, p2 = (float(v) for v in text.split())
            got = [_cell('ACmix-S1', module, '%s Stage %s %s' % (host, st, what)).value
                   for st in ('I', 'II') for what in ('GFLOPs', 'share')]
            assert got == [g1, p1, g2, p2], (module, host)
            n += 4
    assert n == len(PT.cells(table='ACmix-S1')) == 28
    assert _cell('ACmix-S1', 'ACmix', 'SAN-19 Stage I share').text == '60'


def test_lint_is_clean():
    assert PT.lint() == []
    assert metafile.problems() == []


def _copy_results(tmp_path):
    dst = tmp_path / 'results'
    shutil.copytree(metafile.RESULTS_DIR, dst)
    return dst


def _edit(path, old, new):
    text = path.read_text(encoding='utf-8')
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding='utf-8')


@pytest.mark.parametrize('file,old,new,expect', [
    ('aff_paper.csv', 'table,row,column,', 'table,row,col,', 'header'),
    ('aff_paper.csv', 'r=4), doubling channels: Yes",Percentage,', 'r=4), doubling channels: Yes",Percentage,x,',
     'fields, the header has 14'),
    ('aff_paper.csv', 'InceptionNet b=1,inception,1,0.735,', 'InceptionNet b=1,inception,1,.735x,',
     "'.735x' is not a float"),
    ('released.csv', ',true,"trained from scratch on the 100 fine labels (640',
     ',yes,"trained from scratch on the 100 fine labels (640', "'yes' is not a bool"),
    ('official_logs.csv', 'head/imagenet/AFF-ResNet-50/aff_resnet50.log,,0.2028',
     'head/imagenet/AFF-ResNet-50/aff_resnet50.log,,', 'column best is empty'),
    ('official_logs.csv', 'HEAD-README | AFF-ResNet-50 | top-1 err.', 'HEAD-README | AFF-ResNet-50',
     "is not a keys"),
])
def test_metafile_schema_problems_name_file_line_and_column(tmp_path, file, old, new, expect):
    root = _copy_results(tmp_path)
    _edit(root / file, old, new)
    found = metafile.problems(str(root))
    assert len(found) == 1 and found[0].startswith(file + ':') and expect in found[0], found
    with pytest.raises(metafile.MetafileError, match='python -m utils.paper_tables lists'):
        metafile.load(file, str(root))


def test_a_missing_metafile_is_one_problem(tmp_path):
    root = _copy_results(tmp_path)
    (root / 'deltas.csv').unlink()
    found = metafile.problems(str(root))
    assert len(found) == 1 and 'deltas.csv: cannot read' in found[0]


def test_paper_tables_command_lists_metafile_problems(tmp_path, monkeypatch, capsys):
    root = _copy_results(tmp_path)
    _edit(root / 'acmix.csv', 'ACmix-S1,ACmix,Swin-T Stage II share,,,38.0,',
          'ACmix-S1,ACmix,Swin-T Stage II share,,,38.0x,')
    monkeypatch.setattr(metafile, 'RESULTS_DIR', str(root))
    monkeypatch.setattr(metafile.problems, '__defaults__', (str(root),))
    assert PT.main() == 1
    out = capsys.readouterr().out
    assert "acmix.csv:" in out and "'38.0x' is not a float" in out


@pytest.mark.parametrize('key,value,expect', [
    (('3', 'Global + Global', 'ImageNet'), 0.778, 'best 0.2232 gives 0.777'),
    (('5', 'iAFF-ResNet-50 (ours)', 'top-1 err.'), 20.5, 'best 0.2043 gives 20.4'),
    (('HEAD-README', 'iAFF-ResNet-50', 'top-1 err.'), 20.1, 'released 0.2022 rounded'),
    (('slides', 'iAFF-ResNeXt-50-32x4d (ours)', 'top-1 err.'), 19.7, 'released 0.1978 rounded'),
    (('ACmix-S1', 'ACmix', 'SAN-19 Stage II share'), 45.0, 'add up to 105.0'),
    (('ACmix-S1', 'Self-Attention', 'Swin-T Stage I GFLOPs'), 1.5, 'Stage I: share 68.0'),
])
def test_cross_lint_ties_cells_to_logs_checkpoints_and_shares(key, value, expect):
    changed = [dataclasses.replace(c, value=value) if c.key == key else c for c in PT.CELLS]
    assert any(expect in p for p in PT.lint(changed)), PT.lint(changed)


def test_official_log_records_are_linted():
    rows = metafile.load('official_logs.csv')
    assert len(rows) == 24
    by_key = {c.key: c for c in PT.CELLS}
    bad = [dict(r, model='cifar_aff_resnet56') if r['path'].endswith('aff_resnet50.log') else r
           for r in rows]
    orig = metafile.load
    try:
        metafile.load = lambda name, root=None: bad if name == 'official_logs.csv' else orig(name)
        found = PT._lint_official_logs(by_key)
    finally:
        metafile.load = orig
    assert any("model 'cifar_aff_resnet56' is not in the registry" in p for p in found)
    assert any('the log trained cifar_aff_resnet56' in p for p in found)


@pytest.mark.parametrize('change,expect', [
    (dict(label_mode='fine'), "label_mode 'fine' in a paper table"),
    (dict(label_mode=None), 'needs label_mode coarse or fine'),
    (dict(model='cifar_aff_resnet20_b2'), 'not the'),          # row is Table 4 iAFF
    (dict(model='cifar_iaff_resnet20_b9'), 'is not in the registry'),
    (dict(available=False), 'available=False'),
    (dict(recipe=None), 'missing or unknown recipe'),
    (dict(recipe='released'), "Table 4 cells use 'paper'"),
    (dict(metric=''), 'missing metric'),
    (dict(b=3), 'does not match the column'),
    (dict(value=None), "value None without a note"),
    (dict(value=80.7), 'out of (0, 1)'),
    (dict(source=''), 'no source'),
    (dict(dataset='imagenet'), 'does not fit scenario'),
])
def test_lint_finds_problems(change, expect):
    good = _cell('4', 'iAFF (ours)', 'ResNet b=2')
    broken = dataclasses.replace(good, **change)
    problems = PT.lint([broken if c is good else c for c in PT.CELLS])
    assert problems and any(expect in p for p in problems), problems


def test_lint_finds_duplicates_and_unknown_names():
    c = _cell('3', 'Global + Global', 'InceptionNet b=1')
    assert any('duplicate' in p for p in PT.lint(PT.CELLS + (c,)))
    bad = dataclasses.replace(c, model='cifar_globalglobal_inceptionv3_b1')
    assert any('aff_paper.csv:' in p and 'not in the registry' in p for p in PT.lint([bad]))
    s2 = [dataclasses.replace(x, value=3.71) if x.key == (
        'S2', 'BasicResBlock (CIFAR, r=4), doubling channels: Yes', 'Percentage') else x
        for x in PT.CELLS]
    assert any('Table S2' in p for p in PT.lint(s2))


# ---------------------------------------------------------------- the paper's own consistency
def test_table4_aff_row_is_table3_global_local_row():
    for col in COLUMNS12:
        t3, t4 = _cell('3', 'Global + Local', col), _cell('4', 'AFF (ours)', col)
        assert t3.value == t4.value and t3.model == t4.model, col


def test_table_s1_against_table4():
    """S1's Iterative AFF row is Table 4's iAFF ResNet row (so the S1 host is ResNet-20-b); its
    AFF row is not Table 4's AFF row (b=1, 2 differ): a discrepancy of the paper, kept as printed."""
    for b in (1, 2, 3):
        col = 'ResNet b=%d' % b
        assert _cell('S1', 'Iterative AFF', col).value == _cell('4', 'iAFF (ours)', col).value
    diffs = {b: (_cell('S1', 'AFF', 'ResNet b=%d' % b).value,
                 _cell('4', 'AFF (ours)', 'ResNet b=%d' % b).value) for b in (1, 2, 3)}
    assert diffs == {1: (0.764, 0.763), 2: (0.799, 0.804), 3: (0.816, 0.816)}
    assert 'Table 4' in _cell('S1', 'AFF', 'ResNet b=2').note


def test_missing_iaff_resnet_b4():
    c = _cell('4', 'iAFF (ours)', 'ResNet b=4')
    assert c.value is None and c.text == '/' and "'/'" in c.note
    assert c.model == 'cifar_iaff_resnet20_b4' and c.available


def test_label_modes():
    for c in PT.CELLS:
        if c.table in ('3', '4', 'S1') and c.scenario in ('inception', 'resnet'):
            assert c.label_mode == 'coarse', c.key
        if c.dataset in ('imagenet', 'stopsign', None):
            assert c.label_mode is None, c.key
    fine = sorted(c.value for c in PT.CELLS if c.label_mode == 'fine' and c.table in PT.AFF_TABLES)
    assert fine == [0.8357, 0.8538]
    # AFINet's CIFAR-100 numbers are 100-class (fine-label) numbers
    related = [c for c in PT.CELLS if c.table in PT.RT.TABLES and c.dataset == 'cifar100']
    assert len(related) == 12 + 36 + 8 + 6 and all(c.label_mode == 'fine' for c in related)


def test_models_and_availability():
    known = set(net.get_model_list())
    for c in PT.CELLS:
        assert c.available == (c.model in known), c.key
        if c.scenario == 'inception':
            assert c.available and re.match(r'^cifar_\w+_inception_resnet20_b[1-4]$', c.model)
        if c.scenario == 'fpn':
            assert c.available and re.match(r'^stopsign_\w+_fpn_resnet20_b[1-4]$', c.model)
    assert _cell('4', 'MS-SENet', 'ResNet b=3').model == 'cifar_msse_resnet20_b3'
    assert _cell('S1', 'Recursive AFF', 'ResNet b=1').model == 'cifar_recursiveaff_resnet20_b1'
    assert _cell('4', 'Concatenation', 'FPN b=2').model == 'stopsign_concat_fpn_resnet20_b2'
    assert _cell('3', 'Local + Local', 'InceptionNet b=4').model == \
        'cifar_locallocal_inception_resnet20_b4'
    assert [_cell('3', r, 'ImageNet').model for r in T3] == [
        'globalglobal_resnet50_v1b', 'locallocal_resnet50_v1b', 'aff_resnet50_v1b']
    assert all(c.model is None and c.recipe is None for c in PT.cells(table='S2'))
    others = [c for c in PT.cells(table='5') if '(ours)' not in c.row]
    assert len(others) == 12 and all(c.model is None for c in others)


def test_recipes():
    for c in PT.CELLS:
        want = {'3': 'paper', '4': 'paper', 'S1': 'paper', '5': 'paper_sota',
                'HEAD-README': 'released', 'slides': 'released', 'released': 'released'}.get(
                    c.table, PT.RT.RECIPE_OF_TABLE.get(c.table))
        assert c.recipe == (want if c.model else None), c.key


def test_imagenet_column_is_one_minus_the_ablation_log_errors():
    """Table 3's ImageNet column = 1 - best top-1 err of the 806562e ablation logs, rounded."""
    for row, err in (('Global + Global', 0.2232), ('Local + Local', 0.2200),
                     ('Global + Local', 0.2162)):
        c = _cell('3', row, 'ImageNet')
        assert round(1 - err, 3) == c.value and '%.4f' % err in c.note


def test_table5_errors_are_the_logs_truncated():
    for row, (_, err, _, _, log) in T5_OURS.items():
        c = _cell('5', row, 'top-1 err.')
        assert math.floor(log * 1000 + 1e-9) / 10 == c.value
        assert '%.4f' % log in c.note


def _trainable(model):
    return sum(int(np.prod(p.shape)) for p in model.collect_params().values()
               if p.grad_req != 'null')


def test_table5_params_follow_from_the_head_architectures():
    for row, (_, _, params, head, _) in T5_OURS.items():
        n = _trainable(net.get_model(head))
        assert math.floor(n / 1e5) / 10 == params == _cell('5', row, 'Params').value, (row, n)
        assert head in _cell('5', row, 'Params').note


def test_released_cells_come_from_the_model_store():
    rel = PT.cells(table='released')
    assert [(c.model, c.value, c.metric) for c in rel] == [
        (r.model, r.value, r.metric) for r in RELEASED]
    for c, r in zip(rel, RELEASED):
        assert c.label_mode == (r.label_mode if r.label_mode in ('fine', 'coarse') else None)
    readme = {c.model: c.value for c in PT.cells(table='HEAD-README')}
    assert readme == {'aff_resnet50': 20.3, 'iaff_resnet50': 20.2, 'iaff_resnext50_32x4d': 19.78}


def test_paper_text_claims():
    """§5.2: iAFF-ResNet-50 beats GE-θ+-ResNet-101 by 0.3 % with 60 % of its parameters;
    supplement: AFF-ResNet-50 adds 4.88 % FLOPs (4.1 -> 4.3 G)."""
    ge = 'Gather-Excite-θ+-ResNet-101'
    i50 = 'iAFF-ResNet-50 (ours)'
    assert round(_cell('5', ge, 'top-1 err.').value - _cell('5', i50, 'top-1 err.').value, 1) == 0.3
    assert round(_cell('5', i50, 'Params').value / _cell('5', ge, 'Params').value, 2) == 0.60
    f = PT.SUPPLEMENT['flops']
    assert round(100 * (f['aff_resnet50_gflops'] - f['resnet50_gflops']) / f['resnet50_gflops'],
                 2) == f['increase_pct']


def test_filters():
    assert len(PT.cells(table='4', scenario='resnet', b=2)) == 7
    assert PT.cells(table='s1') == PT.cells(table='Table S1') == PT.cells(table='S1')
    assert {c.table for c in PT.cells(model='cifar_aff_resnet20_b2')} == {'3', '4', 'S1'}
    assert len(PT.cells(scenario='imagenet', table='3')) == 3
    with pytest.raises(ValueError):
        PT.cells(table='6')


def test_cell_text_and_fraction():
    assert _cell('4', 'Add', 'ResNet b=1').text == '0.740'
    assert _cell('S2', 'BasicResBlock (CIFAR, r=4), doubling channels: Yes', 'Percentage').text \
        == '3.70'
    assert _cell('5', 'iAFF-ResNet-50 (ours)', 'top-1 err.').fraction == pytest.approx(0.204)
    assert _cell('HEAD-README', 'iAFF-ResNeXt-50-32x4d', 'top-1 err.').text == '19.78'


# ---------------------------------------------------------------- cross-check with $AFF_REFERENCE_DIR
def _clean(text):
    text = re.sub(r'<[^>]+>', '', text)
    text = text.replace('$\\theta^+$', 'θ+').replace('θ^+', 'θ+')
    text = re.sub(r'\s*\[\d+\]', '', text)            # citation numbers
    text = re.sub(r'\(\s+', '(', re.sub(r'\s+\)', ')', text))
    text = re.sub(r'\s*-\s*', '-', text)
    return ' '.join(text.split())


def _tab_rows(path):
    with open(path, encoding='utf-8') as f:
        return [[_clean(x) for x in line.rstrip('\n').split('\t')] for line in f if '\t' in line]


def _num(text):
    text = text.strip().rstrip('%').replace(' M', '')
    return None if text == '/' else float(text)


def _rows_by_label(rows, labels, first, n):
    """label -> values of the tab rows whose first field is a label (each label exactly once)."""
    out = {}
    for r in rows:
        if r[0] in labels:
            assert r[0] not in out, 'label %r twice' % r[0]
            out[r[0]] = [_num(x) for x in r[first:first + n]]
    assert set(out) == set(labels)
    return out


def _s2_rows(rows):
    """Table S2 / Table 7 rows: '<type>, doubling channels: Yes|No' -> [conv, point-wise, %]."""
    out, kind = {}, None
    for r in rows:
        if r[0].startswith(('BasicResBlock', 'BottleneckResBlock')):
            kind = ' '.join(re.sub(r'\$r = (\d+)\$', r'r=\1', r[0]).split())
        elif r[0]:
            kind = None
        if kind is None or len(r) < 5 or r[1] not in ('Yes', 'No'):
            continue
        flops = [int(re.search(r'(\d*)\s*C\^\{?2\}?HW', x).group(1) or 1) for x in r[2:4]]
        out['%s, doubling channels: %s' % (kind, r[1])] = flops + [_num(r[4])]
    return out


shared = pytest.mark.skipif(not SHARED or not os.path.isdir(SHARED),
                            reason='set AFF_REFERENCE_DIR to the folder holding papers/ and '
                                   'reference/ to cross-check against the paper texts')


def _check_tables(t3=None, t4=None, s1=None, t5=None, s2=None):
    for row, values in (t3 or {}).items():
        assert [_cell('3', row, c).value for c in COLUMNS12 + ['ImageNet']] == values, row
    for row, values in (t4 or {}).items():
        assert [_cell('4', row, c).value for c in COLUMNS12] == values, row
    for row, values in (s1 or {}).items():
        assert [_cell('S1', row, 'ResNet b=%d' % b).value for b in (1, 2, 3)] == values, row
    for row, (err, params) in (t5 or {}).items():
        assert [_cell('5', row, 'top-1 err.').value, _cell('5', row, 'Params').value] == \
            [err, params], row
    for row, values in (s2 or {}).items():
        assert [_cell('S2', row, c).value for c in (
            'Flops of Conv in ResBlock', 'Flops of Point-wise Conv in AFF module',
            'Percentage')] == values, row


@shared
def test_every_cell_equals_the_paper_text():
    rows = _tab_rows(PAPER)
    t5_rows = [c.row for c in PT.cells(table='5', column='Params')]
    _check_tables(t3=_rows_by_label(rows, list(T3), 1, 13),
                  t4=_rows_by_label(rows, list(T4), 3, 12),
                  s1=_rows_by_label(rows, list(S1), 2, 3),           # arXiv appendix Table 6
                  t5=_rows_by_label(rows, t5_rows, 1, 2),
                  s2=_s2_rows(rows))                                   # arXiv appendix Table 7
    assert len(_s2_rows(rows)) == 4


@shared
def test_table2_equals_the_paper_text():
    t2 = [r for r in _tab_rows(PAPER) if len(r) == 11 and r[4].isdigit()]
    assert len(t2) == 5
    by_host = {r[2].replace('$b$', 'b').replace('$', ''): r for r in t2}
    for key, d in PT.TABLE2.items():
        r = by_host[d['host']]
        lr_mode = r[9].replace('$\\gamma = 0.1$', 'gamma=0.1')
        assert [int(r[4]), int(r[5]), int(r[6]), r[7], float(r[8]), lr_mode, r[10]] == [
            d['r'], d['epochs'], d['batch_size'], d['optimizer'], d['lr'], d['lr_mode'],
            d['init']], key


@shared
def test_every_cell_equals_the_supplement():
    rows = _tab_rows(SUPPLEMENT)
    _check_tables(s1=_rows_by_label(rows, list(S1), 2, 3), s2=_s2_rows(rows))
    assert len(_s2_rows(rows)) == 4


@shared
def test_slides():
    """The slides repeat Table 3 unchanged; their ImageNet table lists only the iAFF rows, with
    the HEAD (released) numbers 20.2 / 19.8 instead of the paper's 20.4 / 20.2."""
    rows = _tab_rows(SLIDES)
    _check_tables(t3=_rows_by_label(rows, list(T3), 1, 13))
    ours = {r[0]: (_num(r[1]), _num(r[2])) for r in rows if '(ours)' in r[0]}
    assert set(ours) == {'iAFF-ResNet-50 (ours)', 'iAFF-ResNeXt-50-32x4d (ours)'}
    readme = {c.model: c.value for c in PT.cells(table='HEAD-README')}
    for row, (err, params) in ours.items():
        head = T5_OURS[row][3]
        assert err == round(readme[head], 1) != _cell('5', row, 'top-1 err.').value
        assert params == _cell('5', row, 'Params').value


def _official_code_sections():
    with open(OFFICIAL_CODE, encoding='utf-8') as f:
        text = f.read()
    return {m.group(1): m.group(2) for m in
            re.finditer(r'^### (Table \S+)[^\n]*\n(.*?)(?=^#)', text, re.S | re.M)}, text


def _md_rows(section):
    return [[x.strip() for x in line.strip().strip('|').split('|')]
            for line in section.splitlines() if line.startswith('| ') and '---' not in line]


def test_every_cell_equals_official_code_section6():
    sections, text = _official_code_sections()
    t3 = {r[0]: [_num(x) for x in r[1:14]] for r in _md_rows(sections['Table 3'])
          if r[0] in T3}
    rename = {'AFF': 'AFF (ours)', 'iAFF': 'iAFF (ours)'}
    t4 = {rename.get(r[0], r[0]): [_num(x) for x in r[3:15]]
          for r in _md_rows(sections['Table 4']) if rename.get(r[0], r[0]) in T4}
    s1 = {r[0]: [_num(x) for x in r[2:5]] for r in _md_rows(sections['Table S1']) if r[0] in S1}
    t5 = {r[0]: (_num(r[1]), _num(r[2])) for r in _md_rows(sections['Table 5'])
          if r[0] != 'Architecture'}
    s2 = {}
    for r in _md_rows(sections['Table S2']):
        if r[1] in ('Yes', 'No'):
            flops = [int(re.match(r'(\d*)C²HW', x).group(1) or 1) for x in r[2:4]]
            s2['%s, doubling channels: %s' % (r[0], r[1])] = flops + [_num(r[4])]
    assert (len(t3), len(t4), len(s1), len(t5), len(s2)) == (3, 7, 5, 10, 4)
    _check_tables(t3=t3, t4=t4, s1=s1, t5=t5, s2=s2)
    # §5: the HEAD README ImageNet numbers; §6: the logs behind Table 5
    m = re.search(r'ImageNet AFF-ResNet-50 ([\d.]+), iAFF-ResNet-50\s+([\d.]+), '
                  r'iAFF-ResNeXt-50 ([\d.]+)', text)
    assert [float(x) for x in m.groups()] == [20.3, 20.2, 19.78]
    m = re.search(r'Matching 806562e-era logs: ([\d.]+), ([\d.]+), ([\d.]+), ([\d.]+)',
                  sections['Table 5'])
    assert [float(x) for x in m.groups()] == [v[4] for v in T5_OURS.values()]
