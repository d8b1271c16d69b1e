"""Training commands that reproduce the paper's table cells (utils/paper_tables.py).

Usage:
    python -m utils.reproduce --list [FILTERS]              # the cells (Markdown table)
    python -m utils.reproduce [FILTERS]                      # print the commands (dry run, the default)
    python -m utils.reproduce [FILTERS] --script run.sh      # write them as a bash script
    python -m utils.reproduce [FILTERS] --run                # run them, one after another

FILTERS: --table {3,4,5,S1,S2,HEAD-README,released,AFINet-2..9,ACmix-README}
--scenario {inception,resnet,fpn,imagenet,cifar}
--b {1,2,3,4} --model NAME --row LABEL; --seed N (default 0) goes into every command; the data
folders per script: --data-dir (CIFAR, placeholder DATA), --imagenet-dir (IMAGENET, read as
IMAGENET/rec/{train,val}.{rec,idx}), --stopsign-dir (STOPSIGN) and --coco-root.

One training run serves every cell it produced: Table 3's "Global + Local" row and Table 4's
"AFF (ours)" row (and Table S1's AFF / Iterative AFF rows) are the same configurations, so they map
to one command and one output directory, named after the first table in :data:`RUN_PRECEDENCE`
(``logs/table4/resnet/aff_b2``).  Every cell's script exists (train_cifar.py, train_imagenet.py,
train_seg.py); a cell whose model is not in the registry prints ``# not runnable yet: <reason>``;
cells that are no training result (Table S2, other papers' rows of Table 5, parameter counts) print
``# no command: <reason>``.

Where the commands run (``--workdir``; their ``logs/`` and ``params/`` go under it): the repository root
in a checkout, where they name the scripts bare (``python train_cifar.py ...``); in an installed
package (``pip install .``) the current directory, and they name the installed scripts by their path
(``python /.../site-packages/train_cifar.py ...``, utils.paths).
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

from net.errors import AFFError
from utils import paper_tables as PT
from utils import paths
from utils.cli import run_main

#: the folder with the training scripts (the checkout, or site-packages when installed)
ROOT = paths.PACKAGE_ROOT

#: the table whose name the shared output directory of a run carries, first match wins
RUN_PRECEDENCE = ('4', '3', 'S1', '5', 'released', 'HEAD-README')
_TABLE_DIR = {'3': 'table3', '4': 'table4', '5': 'table5', 'S1': 'tableS1', 'S2': 'tableS2',
              'HEAD-README': 'head_readme', 'released': 'released'}
_TABLE_DIR.update({t: t.lower().replace('-', '_') for t in PT.RT.TABLES})   # afinet_4, acmix_readme
_SCRIPT_OF_SCENARIO = {'inception': 'train_cifar.py', 'resnet': 'train_cifar.py',
                       'fpn': 'train_seg.py', 'imagenet': 'train_imagenet.py',
                       'cifar': 'train_cifar.py'}
#: why a cell of a model is no training result, by metric
_NOT_A_RUN = {'params_M': 'a parameter count', 'params_K': 'a parameter count',
              'flops_G': 'a FLOPs count', 'flops_M': 'a FLOPs count',
              'memory_MiB': 'a memory measurement',
              'top5_acc': 'the top-5 accuracy of the run behind the top-1 cell of this row'}
_SHORT = re.compile(r'^(?:cifar|stopsign)_([a-z0-9]+)_(?:inception_|fpn_)?resnet20_(b[1-4])$')


# --------------------------------------------------------------------------- what runs
def default_workdir():
    """Where the commands run by default: the repository root of a checkout, else the current
    directory (an installed package must not write its runs into site-packages)."""
    return ROOT if paths.CHECKOUT else os.getcwd()


def script_ref(script, workdir=None):
    """How a command that runs in ``workdir`` names ``script``: bare in :data:`ROOT`, else by path."""
    workdir = default_workdir() if workdir is None else workdir
    return script if os.path.abspath(workdir) == ROOT else os.path.join(ROOT, script)


def run_key(cell):
    """The identity of the training run behind a cell, or None if it is no training result."""
    if cell.model is None or cell.metric not in ('accuracy', 'top1_err', 'mIoU'):
        return None
    return (_SCRIPT_OF_SCENARIO[cell.scenario], cell.model, cell.recipe, cell.dataset,
            cell.label_mode)


def _canonical():
    out = {}
    for table in RUN_PRECEDENCE + tuple(t for t in PT.TABLES if t not in RUN_PRECEDENCE):
        for c in PT.CELLS:
            k = run_key(c)
            if c.table == table and k is not None and k not in out:
                out[k] = c
    return out


_CANONICAL = _canonical()


def run_dir(cell, seed=0):
    """``<table>/<scenario>/<run>`` of the run behind ``cell`` (shared by every cell of that run)."""
    key = run_key(cell)
    c = _CANONICAL.get(key, cell) if key is not None else cell
    m = _SHORT.match(c.model or '')
    name = '%s_%s' % m.groups() if m else c.model
    if c.table == 'released' and c.label_mode:
        name = '%s_%s' % (name[len('cifar_'):] if name.startswith('cifar_') else name,
                          c.label_mode)
    if seed:
        name += '_seed%d' % seed
    return '%s/%s/%s' % (_TABLE_DIR[c.table], c.scenario, name)


#: the data folders of the commands, per script: (flag of reproduce, placeholder, what it is)
DATA_FLAGS = {'train_cifar.py': ('--data-dir', 'DATA', 'the folder with the CIFAR binary files'),
              'train_imagenet.py': ('--imagenet-dir', 'IMAGENET',
                                    'the ImageNet folder with rec/{train,val}.{rec,idx}'),
              'train_seg.py': ('--stopsign-dir', 'STOPSIGN', 'the StopSign cache folder')}


def command(cell, seed=0, data_dir='DATA', imagenet_dir='IMAGENET', stopsign_dir='STOPSIGN',
            coco_root=None, workdir=None):
    """The argv (starting with ``python``) that trains the run behind ``cell``; None if none.
    Each script gets its own data folder (``data_dir``: CIFAR; ``imagenet_dir``: RecordIO files
    under ``rec/``; ``stopsign_dir``: the StopSign cache, built from ``coco_root`` if given); the
    command runs in ``workdir`` (default :func:`default_workdir`, see :func:`script_ref`)."""
    key = run_key(cell)
    if key is None:
        return None
    script = key[0]
    d = run_dir(cell, seed)
    argv = ['python', script_ref(script, workdir), '--recipe', cell.recipe, '--model', cell.model]
    if script == 'train_cifar.py':
        argv += ['--dataset', cell.dataset, '--label-mode', cell.label_mode, '--classes', '100',
                 '--seed', str(seed), '--data-dir', data_dir, '--logging-dir', 'logs/' + d,
                 '--save-dir', 'params/' + d, '--save-plot-dir', 'logs/' + d]
    elif script == 'train_imagenet.py':
        argv += ['--seed', str(seed), '--use-rec']
        for flag, f in (('train', 'train.rec'), ('train-idx', 'train.idx'), ('val', 'val.rec'),
                        ('val-idx', 'val.idx')):
            argv += ['--rec-' + flag, os.path.join(imagenet_dir, 'rec', f)]
        argv += ['--save-dir', 'params/' + d, '--logging-file', 'logs/%s/train_imagenet.log' % d]
    else:
        argv += ['--dataset', cell.dataset, '--seed', str(seed), '--data-dir', stopsign_dir]
        argv += ['--coco-root', coco_root] if coco_root else []
        argv += ['--logging-dir', 'logs/' + d, '--save-dir', 'params/' + d]
    return argv


def status(cell):
    """``(kind, reason)``: kind 'run' (a training command) or 'none' (no training run behind the
    cell).  Every cell's model is in the registry (the tables' lint checks it)."""
    if cell.model is None:
        if cell.table == 'S2':
            return 'none', 'an analytic FLOPs count, not a training result'
        if cell.table == 'ACmix-S1':
            return 'none', 'a FLOPs breakdown of another paper, not a training result'
        if cell.note.startswith(PT.RT.NOT_HERE):
            return 'none', cell.note.split(';')[0]
        ref = re.search(r'reference \[\d+\]', cell.source)
        return 'none', 'a result cited from another paper%s, not a network of ours' % (
            ' (%s)' % ref.group(0) if ref else '')
    if cell.metric in ('params_M', 'params_K'):
        head = re.search(r'HEAD architecture (\S+)', cell.note)
        return 'none', ('a parameter count, not a training result: python -m utils.models %s'
                        % (head.group(1) if head else cell.model))
    if run_key(cell) is None:
        return 'none', '%s, not a training result' % _NOT_A_RUN.get(cell.metric, cell.metric)
    return 'run', ''


def caveat(cell):
    """A one-line warning printed above a runnable command, or ''."""
    if cell.table == 'released' and cell.label_mode == 'coarse':
        return ('the released superclass checkpoints are the end of 2-3 chained, resumed runs; '
                'this single from-scratch run approximates them')
    if cell.table == 'S1' and cell.row == 'AFF' and 'prints' in cell.note:
        return ('Table S1 and Table 4 print different numbers for this configuration; one run '
                'is compared with both')
    return ''


def _value_text(c):
    if c.value is None:
        return "'/' (not reported)"
    unit = {'fraction': '', 'percent': ' %', 'M': ' M', 'C^2HW': ' C^2HW', 'K': ' K', 'G': ' G',
            'MiB': ' MiB'}[c.unit]
    labels = ', CIFAR-100 %s labels' % c.label_mode if c.label_mode else ''
    return '%s%s %s%s' % (c.text, unit, c.metric, labels)


def describe(c):
    """``Table 4 | iAFF (ours) | ResNet b=2 | paper 0.807 accuracy, CIFAR-100 coarse labels``."""
    who = {'HEAD-README': 'README', 'released': 'reported'}.get(c.table, 'paper')
    return 'Table %s | %s | %s | %s %s' % (c.table, c.row, c.column, who, _value_text(c))


# --------------------------------------------------------------------------- plans
class Plan:
    """One command (or the reason there is none) and the selected cells it serves."""

    def __init__(self, kind, reason, argv, cells):
        self.kind, self.reason, self.argv, self.cells = kind, reason, argv, list(cells)

    @property
    def text(self):
        return ' '.join(shlex.quote(a) for a in self.argv) if self.argv else None

    def lines(self):
        out = ['# ' + describe(c) for c in self.cells]
        if self.kind == 'run':
            for c in self.cells:
                if caveat(c):
                    out.append('# caveat: ' + caveat(c))
            out.append(self.text)
        else:
            out.append('# no command: ' + self.reason)
        return out


def plans(selected, seed=0, **dirs):
    """Group the selected cells by training run, in first-appearance order (``dirs``: the data
    folders and the ``workdir`` of :func:`command`)."""
    out, by_key = [], {}
    for c in selected:
        kind, reason = status(c)
        key = run_key(c) if kind != 'none' else None
        if key is not None and key in by_key:
            by_key[key].cells.append(c)
            continue
        p = Plan(kind, reason, command(c, seed, **dirs) if kind != 'none' else None, [c])
        out.append(p)
        if key is not None:
            by_key[key] = p
    return out


def script_text(selected_plans, argv_text, workdir=None):
    runs = [p for p in selected_plans if p.kind == 'run']
    n_cells = sum(len(p.cells) for p in selected_plans)
    lines = ['#!/usr/bin/env bash',
             '# Generated by: python -m utils.reproduce %s' % argv_text,
             '# %d training commands for %d cells; %d cells without a runnable command '
             '(commented).' % (len(runs), n_cells,
                               sum(len(p.cells) for p in selected_plans if p.kind != 'run')),
             '# Runs in the folder of the `cd` below with the `python` on PATH (activate the '
             'venv, e.g. .venv, first).',
             'set -euo pipefail',
             'cd %s' % shlex.quote(default_workdir() if workdir is None else workdir), '']
    for p in selected_plans:
        lines += p.lines() + ['']
    return '\n'.join(lines)


# --------------------------------------------------------------------------- CLI
def build_parser():
    p = argparse.ArgumentParser(prog='python -m utils.reproduce',
                                description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    f = p.add_argument_group('filters (all given ones must match)')
    f.add_argument('--table', help='one of %s (case-insensitive)' % ', '.join(PT.TABLES))
    f.add_argument('--scenario', choices=PT.SCENARIOS,
                   help='the cell\'s column: inception (same layer), resnet (short skip), fpn (long '
                   'skip), imagenet or cifar')
    f.add_argument('--b', type=int, choices=(1, 2, 3, 4),
                   help='blocks per stage of a ResNet-20-b cell')
    f.add_argument('--model', help='registry model name')
    f.add_argument('--row', help="the paper's row label, e.g. 'iAFF (ours)'")
    p.add_argument('--list', action='store_true', help='list the cells instead of commands')
    p.add_argument('--seed', type=int, default=0, help='--seed of every command')
    p.add_argument('--data-dir', default='DATA', help='CIFAR folder (--data-dir of the '
                   'train_cifar.py commands)')
    p.add_argument('--imagenet-dir', default='IMAGENET', help='ImageNet folder with '
                   'rec/{train,val}.{rec,idx} (the train_imagenet.py commands)')
    p.add_argument('--stopsign-dir', default='STOPSIGN', help='StopSign cache folder (--data-dir '
                   'of the train_seg.py commands)')
    p.add_argument('--coco-root', default=None, help='COCO 2017 copy the StopSign cache is built '
                   'from on the first train_seg.py run')
    p.add_argument('--script', metavar='FILE', help='write the commands as a bash script')
    p.add_argument('--workdir', metavar='DIR', default=None,
                   help='the folder the commands run in; their logs/ and params/ go under it '
                   '(default: the repository root in a checkout, the current directory when the '
                   'package is installed)')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--dry-run', action='store_true', help='print the commands (the default)')
    mode.add_argument('--run', action='store_true',
                      help='execute the runnable commands one after another')
    return p


def _select(args):
    try:
        selected = PT.cells(table=args.table, scenario=args.scenario, b=args.b, model=args.model,
                            row=args.row)
    except ValueError as e:
        raise AFFError(str(e)) from None
    if not selected:
        given = ' '.join('--%s %s' % (k, v) for k, v in
                         (('table', args.table), ('scenario', args.scenario), ('b', args.b),
                          ('model', args.model), ('row', args.row)) if v is not None)
        raise AFFError('no cell matches %s; `python -m utils.reproduce --list` lists them'
                       % (given or 'the filters'))
    return selected


def list_text(selected):
    head = ('table', 'row', 'column', 'value', 'metric', 'model', 'available')
    rows = [head, tuple('---' for _ in head)]
    for c in selected:
        rows.append((c.table, c.row, c.column, c.text,
                     c.metric, c.model or '-', 'yes' if c.available else 'no'))
    return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    selected = _select(args)
    if args.list:
        print(list_text(selected))
        return 0
    workdir = os.path.abspath(args.workdir) if args.workdir else default_workdir()
    ps = plans(selected, seed=args.seed, data_dir=args.data_dir, imagenet_dir=args.imagenet_dir,
               stopsign_dir=args.stopsign_dir, coco_root=args.coco_root, workdir=workdir)
    if args.script:
        with open(args.script, 'w') as f:
            f.write(script_text(ps, ' '.join(shlex.quote(a) for a in argv), workdir))
        os.chmod(args.script, 0o755)
    runs = [p for p in ps if p.kind == 'run']
    if not args.run:
        if args.script:
            print('wrote %s: %d training commands for %d cells'
                  % (args.script, len(runs), len(selected)))
        else:
            print('\n\n'.join('\n'.join(p.lines()) for p in ps))
        return 0
    if not os.path.isdir(workdir):
        raise AFFError('--workdir %s is not a folder' % workdir)
    for script in sorted(set(os.path.basename(p.argv[1]) for p in runs)):
        flag, placeholder, what = DATA_FLAGS[script]
        given = getattr(args, flag[2:].replace('-', '_'))
        if given == placeholder and not os.path.isdir(os.path.join(workdir, placeholder)):
            raise AFFError('--run needs %s DIR for the %s commands: %s is only a placeholder (%s)'
                           % (flag, script, placeholder, what))
    skipped = sum(len(p.cells) for p in ps if p.kind != 'run')
    print('reproduce: running %d training commands for %d cells (%d cells without a runnable '
          'command skipped), in %s' % (len(runs), len(selected) - skipped, skipped, workdir),
          flush=True)
    for i, p in enumerate(runs, 1):
        print('[%d/%d] %s' % (i, len(runs), p.text), flush=True)
        rc = subprocess.run([sys.executable] + p.argv[1:], cwd=workdir).returncode
        if rc:
            print('reproduce: command %d of %d failed (exit %d); stopping' % (i, len(runs), rc),
                  file=sys.stderr)
            return rc
    return 0


if __name__ == '__main__':
    run_main(main)
