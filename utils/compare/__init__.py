"""Compare training runs with the paper's tables and the official open-aff logs.

Usage:
    python -m utils.compare [RUN_DIR_OR_LOG ...] [--official DIR ...] [--out DIR] [--markdown FILE]

Each argument is a training log (``.gz`` too), an EpochCSV (its ``.log`` sibling supplies the
config), or a directory searched recursively for ``*.log`` -- ours (``train_*.log`` of the training
scripts) or the official ones as open-aff lays them out (``params/imagenet/iAFF-ResNet-50/``,
806562e's ``params/imagenet/ablation/``).  An official log is recognised by its path and meets the
cells its record names (``utils/results/official_logs.csv``); any other log is placed on a registry
network from its own configuration line (:func:`utils.compare.runs.place`) and matched to the paper
cells (utils/paper_tables.py) it reproduces -- by that network and its dataset, or by the output
directory utils/reproduce.py gives the cell (``logs/table4/resnet/iaff_b2``); one run can serve several
cells (Table 3 "Global + Local" = Table 4 "AFF (ours)").  A log that names no network is listed as
unplaced, with the reason; a ``*.log`` of a directory that is no training log is listed too.

The report (markdown, on stdout) has one row per (run, cell): our best value and epoch in the paper's
unit (fractions for accuracy / mIoU, top-1 error in % for Table 5), the paper value, the official log
behind that cell and flags for everything in which the run differs from the cell (labels, recipe,
classifier width, epochs -- a resumed log says which it holds -- seed).  A second table compares the
official logs with the paper for the cells no run covers: without arguments the command prints just
that.  PNGs go to ``--out`` (default ``compare/``): each run's learning curve with the official curve
dashed, a Fig. 7-style accuracy-vs-b plot per scenario and Table 4 as heatmaps (paper; ours minus
paper).

``--official DIR`` (repeatable; default ``$AFF_OFFICIAL_LOGS``, else the copies shipped in this
repository) is where the official logs are looked up: a folder laid out as ``head/...`` +
``paper/...``, or the ``params/`` folder of an open-aff checkout (HEAD or 806562e).

Modules: :mod:`~utils.compare.official` (the records, finding and reading official logs),
:mod:`~utils.compare.runs` (reading, placing and matching runs), :mod:`~utils.compare.report`
(markdown) and :mod:`~utils.compare.figures` (PNGs).
"""
import argparse
import os
import sys

from net.errors import AFFError
from utils.compare.curves import best_of, values_of
from utils.compare.figures import fig7_png, table4_diff_png, table4_paper_png, write_pngs
from utils.compare.official import (BUNDLED_OFFICIAL, OFFICIAL_LOGS, OfficialLog, OfficialResult,
                                    default_official_root, find_official, load_official,
                                    official_entry, official_roots)
from utils.compare.report import Report, Row, build_report, markdown, related_section
from utils.compare.runs import (Run, Skipped, cell_epochs, discover, flags, load_run, match_cells,
                                place, registry_model, to_cell_unit)

__all__ = ['OfficialLog', 'OFFICIAL_LOGS', 'BUNDLED_OFFICIAL', 'Run', 'Skipped', 'OfficialResult',
           'Row', 'Report', 'default_official_root', 'official_roots', 'find_official',
           'load_official', 'official_entry', 'discover', 'load_run', 'place', 'registry_model',
           'match_cells', 'cell_epochs', 'to_cell_unit', 'flags', 'build_report', 'markdown',
           'related_section', 'write_pngs', 'fig7_png', 'table4_paper_png', 'table4_diff_png',
           'values_of', 'best_of', 'build_parser', 'main']


def build_parser():
    p = argparse.ArgumentParser(prog='python -m utils.compare', description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('runs', nargs='*', metavar='RUN_DIR_OR_LOG',
                   help='training logs (ours or official), their CSVs, or directories searched '
                        'for *.log')
    p.add_argument('--official', metavar='DIR', action='append', default=None,
                   help='where the official logs are: a folder holding head/ and paper/, or an '
                        'open-aff checkout\'s params/ folder; repeatable (default: '
                        '$AFF_OFFICIAL_LOGS, else the copies shipped in this repository)')
    p.add_argument('--out', metavar='DIR', default='compare',
                   help='PNG directory (default compare/)')
    p.add_argument('--markdown', metavar='FILE', help='also write the report to FILE')
    return p


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    roots = args.official or official_roots(default_official_root())
    for root in roots:
        if not os.path.isdir(root):
            raise AFFError('--official %s is not a directory (a folder holding head/ and paper/, '
                           'or an open-aff params/ folder)' % root)
    skipped = []
    runs = discover(args.runs, skipped)
    report = build_report(runs, roots, skipped)
    text = markdown(report)
    pngs = write_pngs(report, args.out)
    text += '\n## Figures\n\n' + '\n'.join('- `%s`' % p for p in pngs) + '\n'
    if args.markdown:
        from utils.checkpoint import atomic_write

        def write(tmp):
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(text)
        atomic_write(write, args.markdown)
    sys.stdout.write(text)
    return 0
