"""utils/reproduce.py: the commands it prints parse with train_cifar.py and run only on --run."""
import os
import re
import shlex
import subprocess
import sys

import pytest

import net
import train_cifar
from conftest import ROOT
from net.errors import AFFError
from utils import paper_tables as PT
from utils import reproduce as R
from utils.recipes import CIFAR_RECIPES, resolve

EXAMPLE = ('python train_cifar.py --recipe paper --model cifar_iaff_resnet20_b2 --dataset cifar100 '
           '--label-mode coarse --classes 100 --seed 0 --data-dir DATA '
           '--logging-dir logs/table4/resnet/iaff_b2 --save-dir params/table4/resnet/iaff_b2 '
           '--save-plot-dir logs/table4/resnet/iaff_b2')


def _resolve(argv):
    """What train_cifar.py makes of a command line (a fresh parser: resolve() sets defaults)."""
    args, _ = resolve(train_cifar.build_parser(), argv, CIFAR_RECIPES,
                      lambda a: 'quickstart' if a.dataset == 'digits' else 'official')
    train_cifar.validate(args)
    return args


def _main(capsys, *argv):
    assert R.main(list(argv)) == 0
    return capsys.readouterr().out


def _commands(text):
    return [line for line in text.splitlines() if line.startswith('python ')]


def test_the_documented_example(capsys):
    out = _main(capsys, '--table', '4', '--scenario', 'resnet', '--b', '2')
    assert EXAMPLE in _commands(out)
    assert len(_commands(out)) == 7
    assert '# Table 4 | iAFF (ours) | ResNet b=2 | paper 0.807 accuracy, CIFAR-100 coarse labels\n' \
        + EXAMPLE in out


@pytest.mark.parametrize('seed,data_dir', [(0, 'DATA'), (3, '/data/my cifar')])
def test_every_cifar_command_resolves_to_its_cell(seed, data_dir):
    n = 0
    for c in PT.CELLS:
        kind, _ = R.status(c)
        if kind != 'run' or c.scenario in ('imagenet', 'fpn'):
            continue
        argv = shlex.split(R.Plan(kind, '', R.command(c, seed, data_dir), [c]).text)
        assert argv[:2] == ['python', 'train_cifar.py'], c.key
        args = _resolve(argv[2:])
        assert (args.model, args.recipe, args.label_mode, args.seed, args.classes, args.dataset,
                args.data_dir) == (c.model, c.recipe, c.label_mode, seed, 100, 'cifar100',
                                   data_dir), c.key
        d = R.run_dir(c, seed)
        assert args.logging_dir == args.save_plot_dir == 'logs/' + d
        assert args.save_dir == 'params/' + d
        assert (d.endswith('_seed%d' % seed)) == bool(seed)
        n += 1
    # Tables 3 (ResNet, InceptionNet), 4 (ResNet, InceptionNet), S1, the 5 released CIFAR
    # checkpoints
    # + AFINet Table 4 (the 7 accuracy cells of built networks), Table 7 (8) and Table 9 (its
    # MobileNetV2 baseline, Table 4's run)
    assert n == 12 + 12 + 28 + 28 + 15 + 5 + 7 + 8 + 1


@pytest.mark.parametrize('seed,data_dir', [(0, 'DATA'), (2, '/data/my imagenet')])
def test_every_imagenet_command_resolves_to_its_cell(seed, data_dir):
    import train_imagenet
    from utils.recipes import IMAGENET_RECIPES
    runs = set()
    for c in PT.cells(scenario='imagenet'):
        kind, _ = R.status(c)
        if kind != 'run':
            continue
        argv = shlex.split(R.Plan(kind, '', R.command(c, seed, 'CIFAR', imagenet_dir=data_dir),
                                  [c]).text)
        assert argv[:2] == ['python', 'train_imagenet.py'], c.key
        assert 'CIFAR' not in argv                     # each script gets its own data folder
        args, _ = resolve(train_imagenet.build_parser(), argv[2:], IMAGENET_RECIPES,
                          lambda a: 'official')
        assert (args.model, args.recipe, args.seed, args.use_rec) == (c.model, c.recipe, seed,
                                                                       True), c.key
        assert c.model in net.get_model_list()
        rec = os.path.join(data_dir, 'rec')
        assert (args.rec_train, args.rec_train_idx, args.rec_val, args.rec_val_idx) == tuple(
            os.path.join(rec, f) for f in ('train.rec', 'train.idx', 'val.rec', 'val.idx'))
        d = R.run_dir(c, seed)
        assert args.save_dir == 'params/' + d
        assert args.logging_file == 'logs/%s/train_imagenet.log' % d
        # Table 5's SOTA rows train with mixup, Table 3's ablation rows without (docs/official-code.md §4.6)
        assert args.mixup == (c.recipe in ('paper_sota', 'released')), c.key
        runs.add(R.run_key(c))
    # Table 3 (3 rows), Table 5 (4 of ours), the 4 released checkpoints (the README's 3 share)
    # + AFINet Table 5 (all 10 networks), Table 8 (r = 1, 2, 8; r = 4 is Table 5's run) and the
    # ACmix README (3 ACmix ResNets + 3 baselines)
    assert len(runs) == 3 + 4 + 4 + 10 + 3 + 6



def args_of(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.mark.parametrize('seed,data_dir', [(0, 'DATA'), (5, '/data/my stopsign')])
def test_every_fpn_command_resolves_to_its_cell(seed, data_dir):
    import train_seg
    from utils.recipes import SEG_RECIPES
    runs = set()
    for c in PT.cells(scenario='fpn'):
        kind, _ = R.status(c)
        assert kind == 'run', c.key
        argv = shlex.split(R.Plan(kind, '', R.command(c, seed, 'CIFAR', stopsign_dir=data_dir,
                                                      coco_root='/data/coco'), [c]).text)
        assert argv[:2] == ['python', 'train_seg.py'], c.key
        assert 'CIFAR' not in argv and args_of(argv, '--coco-root') == '/data/coco'
        args, _ = resolve(train_seg.build_parser(), argv[2:], SEG_RECIPES,
                          train_seg.default_recipe)
        train_seg.validate(args)
        assert (args.model, args.recipe, args.dataset, args.seed, args.data_dir) == (
            c.model, c.recipe, 'stopsign', seed, data_dir), c.key
        assert c.model in net.get_model_list()
        # Table 2's StopSign row
        assert (args.optimizer, args.lr, args.lr_mode, args.epochs, args.batch_size,
                args.init) == ('adagrad', 0.01, 'poly', 300, 32, 'kaiming'), c.key
        d = R.run_dir(c, seed)
        assert args.logging_dir == 'logs/' + d and args.save_dir == 'params/' + d
        runs.add(R.run_key(c))
    # Table 3 (3 rows x 4) and Table 4 (7 rows x 4); Table 3's Global + Local is Table 4's AFF
    assert len(runs) == 12 + 28 - 4

def test_paper_recipe_means_no_mixup_and_coarse_labels():
    args = _resolve(shlex.split(EXAMPLE)[2:])
    assert (args.mixup, args.label_smoothing, args.auto_aug, args.num_epochs, args.lr,
            args.lr_decay_epoch, args.batch_size, args.era) == (
        False, False, False, 400, 0.2, '300,350', 128, 'paper')


def test_shared_runs_share_command_and_directory():
    for b in (1, 2, 3, 4):
        for scen, title in (('resnet', 'ResNet'), ('inception', 'InceptionNet'), ('fpn', 'FPN')):
            col = '%s b=%d' % (title, b)
            t3 = PT.cells(table='3', row='Global + Local', column=col)[0]
            t4 = PT.cells(table='4', row='AFF (ours)', column=col)[0]
            assert R.command(t3) == R.command(t4) and R.run_dir(t3) == R.run_dir(t4)
            assert R.run_dir(t4) == 'table4/%s/aff_b%d' % (scen, b)
    for b in (1, 2, 3):
        col = 'ResNet b=%d' % b
        for s1, t4 in (('AFF', 'AFF (ours)'), ('Iterative AFF', 'iAFF (ours)')):
            assert R.command(PT.cells(table='S1', row=s1, column=col)[0]) == \
                R.command(PT.cells(table='4', row=t4, column=col)[0])
    # distinct runs never share an output directory
    dirs = {}
    for c in PT.CELLS:
        if R.run_key(c) is not None:
            assert dirs.setdefault(R.run_dir(c), R.run_key(c)) == R.run_key(c), c.key
    assert R.run_dir(PT.cells(table='S1', row='Half-AFF', b=1)[0]) == 'tableS1/resnet/halfaff_b1'
    assert R.run_dir(PT.cells(table='3', row='Local + Local', column='ImageNet')[0]) == \
        'table3/imagenet/locallocal_resnet50_v1b'


def test_one_command_for_a_shared_run(capsys):
    out = _main(capsys, '--model', 'cifar_aff_resnet20_b2')
    assert len(_commands(out)) == 1
    head = out.split('python ')[0]
    for table in ('3', '4', 'S1'):
        assert '# Table %s |' % table in head
    assert '# caveat:' in head                 # S1 prints 0.799, Table 4 0.804
    out = _main(capsys, '--model', 'cifar_aff_resnet20_b3')
    assert len(_commands(out)) == 1 and '# caveat:' not in out    # both print 0.816


def test_not_runnable_cells(capsys):
    out = _main(capsys, '--table', '3', '--b', '1')
    assert '# not runnable yet:' not in out           # Inception and FPN networks exist
    assert 'cifar_aff_inception_resnet20_b1' in out and 'stopsign_aff_fpn_resnet20_b1' in out
    assert len(_commands(out)) == 9                   # 3 ResNet + 3 InceptionNet + 3 FPN cells
    assert len([c for c in _commands(out) if c.startswith('python train_seg.py ')]) == 3
    out = _main(capsys, '--table', '3', '--scenario', 'imagenet')
    assert '# not runnable yet' not in out and len(_commands(out)) == 3
    assert re.search(r'^python train_imagenet\.py --recipe paper --model aff_resnet50_v1b ',
                     out, re.M)
    out = _main(capsys, '--table', '5')
    assert re.search(r'^python train_imagenet\.py --recipe paper_sota --model iaff_resnet50_v1b ',
                     out, re.M)
    assert len(_commands(out)) == 4
    assert out.count('# no command: a result cited') == 12
    assert out.count('# no command: a parameter count') == 4
    out = _main(capsys, '--table', 'S2')
    assert out.count('# no command: an analytic FLOPs count') == 12 and 'python' not in out


def test_every_scenario_has_its_script_and_runs():
    """The three training scripts exist, so a training cell of every scenario is runnable."""
    scripts = ('train_cifar.py', 'train_imagenet.py', 'train_seg.py')
    assert set(R._SCRIPT_OF_SCENARIO.values()) == set(scripts)
    assert all(os.path.isfile(os.path.join(ROOT, script)) for script in scripts)
    for table, column in (('3', 'ImageNet'), ('4', 'InceptionNet b=1'), ('4', 'ResNet b=1'),
                          ('4', 'FPN b=1')):
        row = 'Global + Local' if table == '3' else 'Add'
        assert R.status(PT.cells(table=table, row=row, column=column)[0]) == ('run', '')


def test_script_is_valid_bash_with_one_command_per_run(tmp_path, capsys):
    path = tmp_path / 'all.sh'
    out = _main(capsys, '--script', str(path), '--seed', '1')
    assert str(path) in out and not (tmp_path / 'logs').exists()
    text = path.read_text()
    assert subprocess.run(['bash', '-n', str(path)]).returncode == 0
    assert os.access(str(path), os.X_OK)
    lines = text.splitlines()
    assert lines[0] == '#!/usr/bin/env bash' and 'set -euo pipefail' in lines
    cmds = _commands(text)
    want = {' '.join(shlex.quote(a) for a in R.command(c, 1)) for c in PT.CELLS
            if R.status(c)[0] == 'run'}
    assert len(cmds) == len(set(cmds)) == len(want) and set(cmds) == want
    for i, line in enumerate(lines):          # a cell comment with the paper value above each
        if line.startswith('python '):
            assert re.match(r'^# (Table .*\| (paper|reported) \S+|caveat: )', lines[i - 1])
    for c in PT.CELLS:                         # every cell is mentioned once
        assert text.count('# ' + R.describe(c) + '\n') == 1, c.key


def test_dry_run_is_the_default_and_runs_nothing(monkeypatch, capsys):
    def forbidden(*a, **k):
        raise AssertionError('a dry run must not start a process')
    for name in ('run', 'Popen', 'call', 'check_call'):
        monkeypatch.setattr(subprocess, name, forbidden)
    monkeypatch.setattr(os, 'system', forbidden)
    watched = [os.path.join(ROOT, 'logs', 'table4'), os.path.join(ROOT, 'params', 'table4')]
    before = [os.path.exists(p) for p in watched]
    args = R.build_parser().parse_args([])
    assert not args.run
    _main(capsys, '--table', '4', '--scenario', 'resnet', '--b', '2')
    _main(capsys, '--table', '4', '--scenario', 'resnet', '--b', '2', '--dry-run')
    assert [os.path.exists(p) for p in watched] == before
    with pytest.raises(SystemExit):
        R.build_parser().parse_args(['--run', '--dry-run'])


def test_cli_dry_run_creates_nothing(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, '-m', 'utils.reproduce', '--table', '4', '--b', '1'],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert EXAMPLE.replace('b2', 'b1') in p.stdout
    assert list(tmp_path.iterdir()) == []


def test_run_executes_the_commands_in_order(monkeypatch, capsys):
    calls = []

    class Done:
        returncode = 0

    def fake_run(argv, cwd=None, **kw):
        calls.append((argv, cwd))
        return Done()
    monkeypatch.setattr(subprocess, 'run', fake_run)
    with pytest.raises(AFFError, match='placeholder'):
        R.main(['--table', '4', '--scenario', 'resnet', '--b', '2', '--run'])
    assert calls == []
    assert R.main(['--table', '4', '--scenario', 'resnet', '--b', '2', '--run',
                   '--data-dir', '/data/cifar']) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith('reproduce: running 7 training commands for 7 cells')
    assert [a[1:] for a, _ in calls] == [shlex.split(c)[1:] for c in re.findall(
        r'^\[\d/7\] (.*)$', out, re.M)]
    assert all(a[0] == sys.executable and cwd == ROOT for a, cwd in calls)
    assert calls[-1][0][1:] == shlex.split(EXAMPLE.replace('DATA', '/data/cifar'))[1:]

    # an ImageNet cell needs its own folder, not the CIFAR one
    with pytest.raises(AFFError, match='--imagenet-dir DIR for the train_imagenet.py commands'):
        R.main(['--table', '3', '--scenario', 'imagenet', '--run', '--data-dir', '/data/cifar'])

    calls.clear()
    Done.returncode = 3
    assert R.main(['--table', '4', '--b', '1', '--run', '--data-dir', '/data/cifar',
                   '--stopsign-dir', '/data/stopsign', '--imagenet-dir', '/data/imagenet']) == 3
    assert len(calls) == 1                    # stops at the first failure


def test_workdir_runs_the_commands_elsewhere_with_the_script_by_path(monkeypatch, capsys, tmp_path):
    """--workdir (the default of an installed package is the current directory, utils.paths): the
    commands name the script by its path and run there; the bash script cds there."""
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr(subprocess, 'run', lambda argv, cwd=None, **kw: calls.append((argv, cwd)) or Done())
    work = str(tmp_path / 'runs')
    os.mkdir(work)
    filters = ['--table', '4', '--scenario', 'resnet', '--b', '2', '--workdir', work]
    out = _main(capsys, *filters)
    script = os.path.join(ROOT, 'train_cifar.py')
    assert EXAMPLE.replace('python train_cifar.py', 'python ' + script) in _commands(out)
    assert R.main(filters + ['--run', '--data-dir', '/data/cifar']) == 0
    assert len(calls) == 7 and all(a[1] == script and cwd == work for a, cwd in calls)
    assert R.main(filters + ['--script', str(tmp_path / 'run.sh')]) == 0
    assert 'cd %s\n' % work in (tmp_path / 'run.sh').read_text()
    with pytest.raises(AFFError, match='is not a folder'):
        R.main(filters[:-1] + [str(tmp_path / 'missing'), '--run', '--data-dir', '/data/cifar'])
    monkeypatch.setattr(R.paths, 'CHECKOUT', False)      # installed: the current directory
    monkeypatch.chdir(work)
    assert R.default_workdir() == work and R.script_ref('train_cifar.py') == script

def test_list_contains_every_cell_once(capsys):
    out = _main(capsys, '--list')
    rows = [[x.strip() for x in line.strip('|').split('|')] for line in out.splitlines()[2:]]
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)) == len(PT.CELLS)
    assert set(keys) == {c.key for c in PT.CELLS}
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    assert by_key[('4', 'iAFF (ours)', 'ResNet b=4')][3:] == [
        '/', 'accuracy', 'cifar_iaff_resnet20_b4', 'yes']
    assert by_key[('3', 'Global + Global', 'FPN b=1')][3:] == [
        '0.911', 'mIoU', 'stopsign_globalglobal_fpn_resnet20_b1', 'yes']


def test_filters_and_errors(capsys):
    out = _main(capsys, '--list', '--table', 's1', '--b', '3')
    assert len(out.splitlines()) == 2 + 5
    with pytest.raises(AFFError, match='no cell matches'):
        R.main(['--table', '4', '--model', 'cifar_aff_resnet32'])
    with pytest.raises(AFFError, match='unknown table'):
        R.main(['--table', '7'])
