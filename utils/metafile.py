"""The repository's results and records as data: the CSV metafiles under ``utils/results/``.

One file per source, one row per printed number or record, in the style of timm's results tables and
mmpretrain's metafiles:

=====================  =========  ==============================================================
file                   schema     what
=====================  =========  ==============================================================
``aff_paper.csv``      cells      the AFF paper's Tables 3, 4, 5, S1, S2, the open-aff HEAD README and
                                  the slides' ImageNet table (the released checkpoints' cells are
                                  made from ``released.csv``)
``afinet.csv``         cells      AFINet (arXiv 2105.04354) Tables 2-9
``acmix.csv``          cells      the ACmix release README (+ the SAN README baselines) and the ACmix
                                  supplement's Table 1
``deltas.csv``         deltas     the deltas those tables print, checked against their values
``released.csv``       released   the 9 checkpoint files of open-aff HEAD (:mod:`net.model_store`)
``official_logs.csv``  logs       every official open-aff training log with epoch lines
                                  (:mod:`utils.compare`)
``settings.json``      --         Table 2 and the supplements' training settings
=====================  =========  ==============================================================

:func:`load` reads a file into typed dicts and raises one :class:`MetafileError` naming the file, line
and column of the first problem; :func:`problems` lists all of them (``python -m utils.paper_tables``
prints them together with the semantic lint of :func:`utils.paper_tables.lint`).  Empty fields are
``None``.
"""
import csv
import json
import os

from net.errors import AFFError

__all__ = ['RESULTS_DIR', 'SCHEMAS', 'FILES', 'MetafileError', 'load', 'problems', 'settings',
           'cell_key', 'parse_keys']

#: the folder of the metafiles (installed with the package)
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')

_TYPES = {
    'str': str,
    'int': int,
    'float': float,
    'bool': lambda s: {'true': True, 'false': False}[s],
}

#: schema -> ((column, type, required), ...); type 'keys' = cell keys 'table | row | column' joined
#: by '; '
SCHEMAS = {
    'cells': (('table', 'str', True), ('row', 'str', True), ('column', 'str', True),
              ('scenario', 'str', False), ('b', 'int', False), ('value', 'float', False),
              ('metric', 'str', True), ('unit', 'str', True), ('dataset', 'str', False),
              ('label_mode', 'str', False), ('recipe', 'str', False), ('model', 'str', False),
              ('source', 'str', True), ('note', 'str', False)),
    'deltas': (('table', 'str', True), ('row', 'str', True), ('column', 'str', True),
               ('delta', 'float', True), ('base_row', 'str', False),
               ('base_column', 'str', False)),
    'released': (('model', 'str', True), ('tag', 'str', True), ('file', 'str', True),
                 ('path', 'str', True), ('blob_sha1', 'str', True), ('classes', 'int', True),
                 ('label_mode', 'str', True), ('dtype', 'str', True), ('metric', 'str', True),
                 ('value', 'float', True), ('epoch', 'int', True), ('log', 'str', True),
                 ('default', 'bool', True), ('note', 'str', True)),
    'logs': (('path', 'str', True), ('segment', 'int', False), ('best', 'float', True),
             ('epoch', 'int', True), ('model', 'str', True), ('dataset', 'str', True),
             ('label_mode', 'str', False), ('recipe', 'str', True), ('cells', 'keys', False),
             ('note', 'str', False)),
}

#: file -> schema
FILES = {'aff_paper.csv': 'cells', 'afinet.csv': 'cells', 'acmix.csv': 'cells',
         'deltas.csv': 'deltas', 'released.csv': 'released', 'official_logs.csv': 'logs'}


class MetafileError(AFFError):
    """A metafile under utils/results/ is missing or malformed."""


def cell_key(text):
    """``'5 | AFF-ResNet-50 (ours) | top-1 err.'`` -> ``('5', 'AFF-ResNet-50 (ours)', 'top-1 err.')``."""
    parts = tuple(p.strip() for p in text.split(' | '))
    if len(parts) != 3 or not all(parts):
        raise ValueError("%r is not 'table | row | column'" % text)
    return parts


def parse_keys(text):
    """The cell keys of a ``keys`` field (``'; '``-separated)."""
    return tuple(cell_key(k) for k in text.split('; ') if k.strip())


def _convert(kind, text):
    if kind == 'keys':
        return parse_keys(text)
    return _TYPES[kind](text)


def _read(name, root):
    """``(rows, problems)`` of one metafile."""
    if name not in FILES:
        raise MetafileError('unknown metafile %r; the metafiles are %s' % (name, ', '.join(FILES)))
    path = os.path.join(root, name)
    schema = SCHEMAS[FILES[name]]
    try:
        with open(path, newline='', encoding='utf-8') as f:
            lines = list(csv.reader(f))
    except OSError as e:
        return [], ['%s: cannot read (%s); the metafiles ship in utils/results/ -- reinstall or '
                    'restore it from git' % (path, e.strerror or e)]
    if not lines:
        return [], ['%s: empty file (a header line is required)' % name]
    header, want = lines[0], [c for c, _, _ in schema]
    if header != want:
        missing = [c for c in want if c not in header]
        extra = [c for c in header if c not in want]
        return [], ['%s:1: header %s; expected the columns %s (missing %s, unknown %s)'
                    % (name, ','.join(header), ','.join(want), missing or 'none',
                       extra or 'none')]
    rows, bad = [], []
    for n, fields in enumerate(lines[1:], 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(want):
            bad.append('%s:%d: %d fields, the header has %d' % (name, n, len(fields), len(want)))
            continue
        row = {'_where': '%s:%d' % (name, n)}
        for (col, kind, required), text in zip(schema, fields):
            if text == '':
                if required:
                    bad.append('%s:%d: column %s is empty' % (name, n, col))
                row[col] = None
                continue
            if text != text.strip():
                bad.append('%s:%d: column %s has surrounding spaces: %r' % (name, n, col, text))
            try:
                row[col] = _convert(kind, text)
            except (ValueError, KeyError):
                bad.append('%s:%d: column %s: %r is not a%s %s'
                           % (name, n, col, text, 'n' if kind == 'int' else '', kind))
                row[col] = None
        rows.append(row)
    return rows, bad


def problems(root=RESULTS_DIR):
    """Every schema problem of every metafile (empty list = clean)."""
    out = []
    for name in FILES:
        out += _read(name, root)[1]
    try:
        settings(root)
    except MetafileError as e:
        out.append(str(e))
    return out


_CACHE = {}


def load(name, root=RESULTS_DIR):
    """The rows of metafile ``name`` as dicts (``'_where'`` = ``file:line``), typed by its schema."""
    key = (name, os.path.abspath(root))
    if key not in _CACHE:
        rows, bad = _read(name, root)
        if bad:
            more = ' (and %d more problems)' % (len(bad) - 1) if len(bad) > 1 else ''
            raise MetafileError('%s%s; python -m utils.paper_tables lists them all'
                                % (bad[0], more))
        _CACHE[key] = rows
    return [dict(r) for r in _CACHE[key]]


def settings(root=RESULTS_DIR):
    """``settings.json``: ``{'table2': ..., 'supplement': ..., 'afinet': ..., 'acmix': ...}``."""
    path = os.path.join(root, 'settings.json')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except OSError as e:
        raise MetafileError('%s: cannot read (%s)' % (path, e.strerror or e)) from None
    except ValueError as e:
        raise MetafileError('%s: not valid JSON (%s)' % (path, e)) from None
    missing = [k for k in ('table2', 'supplement', 'afinet', 'acmix') if k not in data]
    if missing:
        raise MetafileError('%s: missing the sections %s' % (path, ', '.join(missing)))
    return data
