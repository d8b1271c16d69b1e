"""The comparison's figures: each run's curve with the official one dashed, Fig. 7 (metric vs b per
fusion of Table 4) and Table 4 as heatmaps (the paper; ours minus the paper)."""
import os
import re

from net.errors import AFFError
from utils import paper_tables as PT
from utils.compare.official import OFFICIAL_LOGS
from utils.compare.report import cell_name

__all__ = ['fig7_png', 'table4_paper_png', 'table4_diff_png', 'write_pngs']


def _new_figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    from utils.checkpoint import atomic_write
    return atomic_write(lambda tmp: fig.savefig(tmp, format='png'), path)


def _slug(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', text).strip('-') or 'run'


def _reference_for(run, report):
    """Official curves for a run: the logs of its cells, else logs of the same network."""
    rels = []
    for rel, entry in OFFICIAL_LOGS.items():
        if any(c.key in entry.cells for c in run.cells):
            rels.append(rel)
    if not rels:
        same = [rel for rel, e in OFFICIAL_LOGS.items()
                if e.model == run.model and e.dataset == run.dataset
                and e.label_mode == run.label_mode]
        pref = [rel for rel in same if OFFICIAL_LOGS[rel].recipe == run.recipe]
        rels = pref or same
    out = []
    for rel in rels:
        if run.official is not None and rel == run.official.path:
            continue            # the run is this official log
        o = report.official[rel]
        if not o.found or o.entry.metric != run.metric:
            continue
        out.append((o.label, list(o.curve[0]), list(o.curve[1])))
    return out


def _run_png(run, report, out_dir):
    from utils.history import plot_history
    tail = '-'.join([p for p in os.path.normpath(run.dir).split(os.sep) if p][-3:])
    path = os.path.join(out_dir, 'run%d_%s.png' % (run.index, _slug(tail)))
    source = run.csv if run.csv and os.path.isfile(run.csv) else run.path
    title = '#%d %s (%s)' % (run.index, run.model or run.raw_model or run.name,
                             ', '.join(cell_name(c) for c in run.cells[:2]) or 'no paper cell')
    try:
        return plot_history(source, path, title=title, reference=_reference_for(run, report))
    except AFFError:
        return None  # nothing to plot yet (no epoch, no official curve)


_FIG7_SCENARIOS = (('resnet', 'ResNet-20-b, CIFAR-100 (short skip)', 'accuracy'),
                   ('inception', 'Inception-ResNet-20-b, CIFAR-100 (same layer)', 'accuracy'),
                   ('fpn', 'ResNet-20-b + FPN, StopSign (long skip)', 'mIoU'))


def _fusion_colors(rows):
    import matplotlib
    cmap = matplotlib.colormaps['tab10']
    return {row: cmap(i % 10) for i, row in enumerate(rows)}


def fig7_png(report, path):
    """Fig. 7 style: metric vs b per fusion of Table 4, per scenario; paper dashed, ours solid."""
    from matplotlib.lines import Line2D
    t4 = PT.cells(table='4')
    rows = list(dict.fromkeys(c.row for c in t4))
    scenarios = [s for s in _FIG7_SCENARIOS if any(c.scenario == s[0] for c in t4)]
    colors = _fusion_colors(rows)
    primary = report.primary()
    fig = _new_figure(5.2 * len(scenarios), 4.6)
    axes = fig.subplots(1, len(scenarios), squeeze=False)[0]
    n_ours = 0
    for ax, (scenario, title, ylabel) in zip(axes, scenarios):
        for row in rows:
            cells = sorted((c for c in t4 if c.row == row and c.scenario == scenario),
                           key=lambda c: c.b)
            pts = [(c.b, c.value) for c in cells if c.value is not None]
            ax.plot([b for b, _ in pts], [v for _, v in pts], linestyle='--', marker='o',
                    markersize=3, color=colors[row], alpha=0.8)
            ours = [(c.b, primary[c.key].ours) for c in cells if c.key in primary]
            if ours:
                n_ours += len(ours)
                ax.plot([b for b, _ in ours], [v for _, v in ours], linestyle='-', marker='s',
                        markersize=6, markeredgecolor='black', color=colors[row], linewidth=2)
        ax.set_xticks([1, 2, 3, 4])
        ax.set_xlabel('b (blocks per stage)')
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize='medium')
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors[r], marker='o', label=r) for r in rows]
    handles += [Line2D([], [], color='black', linestyle='--', label='paper (Table 4)'),
                Line2D([], [], color='black', linestyle='-', marker='s',
                       label='ours (%d cells)' % n_ours if n_ours else 'ours (no runs yet)')]
    fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize='small',
               frameon=False)
    fig.suptitle('Table 4 / Fig. 7: fusion vs network depth b')
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _table4_grid():
    t4 = PT.cells(table='4')
    rows = list(dict.fromkeys(c.row for c in t4))
    cols = [(s, b) for s in ('inception', 'resnet', 'fpn') for b in (1, 2, 3, 4)
            if any(c.scenario == s and c.b == b for c in t4)]
    by = {(c.row, c.scenario, c.b): c for c in t4}
    return rows, cols, by


_SHORT_SCEN = {'inception': 'Incep', 'resnet': 'ResNet', 'fpn': 'FPN'}


def _heatmap_axes(ax, rows, cols):
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(['%s b%d' % (_SHORT_SCEN[s], b) for s, b in cols], rotation=45,
                       ha='right', fontsize='small')
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize='small')
    for x in (3.5, 7.5):
        if x < len(cols) - 1:
            ax.axvline(x, color='white', linewidth=3)


def table4_paper_png(path):
    """Table 4 as a heatmap: colour = rank within the column (value - min) / (max - min)."""
    import numpy as np
    import matplotlib
    rows, cols, by = _table4_grid()
    grid = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            if c is not None and c.value is not None:
                grid[i, j] = c.value
    norm = np.full_like(grid, np.nan)
    for j in range(len(cols)):
        col = grid[:, j]
        lo, hi = np.nanmin(col), np.nanmax(col)
        norm[:, j] = (col - lo) / (hi - lo) if hi > lo else 0.5
    fig = _new_figure(11, 4.8)
    ax = fig.subplots()
    cmap = matplotlib.colormaps['viridis'].with_extremes(bad='#dddddd')
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, aspect='auto')
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            text = c.text if c is not None else ''
            light = not np.isnan(norm[i, j]) and norm[i, j] < 0.6
            ax.text(j, i, text, ha='center', va='center', fontsize=7,
                    color='white' if light else 'black')
    _heatmap_axes(ax, rows, cols)
    fig.colorbar(im, ax=ax, label='within-column position (0 = worst, 1 = best)')
    ax.set_title('Table 4 (paper): accuracy (Incep, ResNet; CIFAR-100) and mIoU (FPN; StopSign)')
    fig.tight_layout()
    return _save(fig, path)


def table4_diff_png(report, path):
    """Ours minus paper on the Table 4 grid, where runs exist ('*' = the run is flagged)."""
    import numpy as np
    import matplotlib
    rows, cols, by = _table4_grid()
    primary = report.primary()
    grid = np.full((len(rows), len(cols)), np.nan)
    notes = {}
    for i, r in enumerate(rows):
        for j, (s, b) in enumerate(cols):
            c = by.get((r, s, b))
            row = primary.get(c.key) if c is not None else None
            if row is not None and row.delta_paper is not None:
                grid[i, j] = row.delta_paper
                notes[i, j] = '%+.3f%s' % (row.delta_paper, '*' if row.flags else '')
    finite = grid[~np.isnan(grid)]
    lim = max(0.01, float(np.abs(finite).max())) if finite.size else 0.01
    fig = _new_figure(11, 4.8)
    ax = fig.subplots()
    cmap = matplotlib.colormaps['RdBu'].with_extremes(bad='#eeeeee')
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-lim, vmax=lim, aspect='auto')
    for i in range(len(rows)):
        for j in range(len(cols)):
            c = by.get((rows[i], cols[j][0], cols[j][1]))
            if (i, j) in notes:
                dark = abs(grid[i, j]) > 0.6 * lim
                ax.text(j, i, notes[i, j], ha='center', va='center', fontsize=7,
                        color='white' if dark else 'black')
            else:
                ax.text(j, i, '/' if c is not None and c.value is None else '·', ha='center',
                        va='center', fontsize=7, color='#999999')
    _heatmap_axes(ax, rows, cols)
    fig.colorbar(im, ax=ax, label='ours − paper')
    ax.set_title('Table 4: ours − paper (%d cells with a run%s; * = run differs from the cell)'
                 % (len(notes), '' if notes else ' -- no runs of ours yet'))
    fig.tight_layout()
    return _save(fig, path)


def write_pngs(report, out_dir):
    """All PNGs of the report; returns their paths."""
    paths = []
    for run in report.runs:
        p = _run_png(run, report, out_dir)
        if p:
            paths.append(p)
    paths.append(fig7_png(report, os.path.join(out_dir, 'fig7_table4_vs_b.png')))
    paths.append(table4_paper_png(os.path.join(out_dir, 'table4_paper.png')))
    paths.append(table4_diff_png(report, os.path.join(out_dir, 'table4_ours_minus_paper.png')))
    return paths


