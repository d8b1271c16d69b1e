"""Counts in the documents are generated, not typed: ``<!-- count:NAME -->N<!-- /count -->``.

Usage: python -m utils.doc_counts [--check]

Rewrites every such marker in README.md and docs/*.md with the current value of ``NAME``
(:data:`COUNTS`); ``--check`` only reports stale or unknown markers (exit 1), as the test suite does.
"""
import argparse
import glob
import os
import re
import sys

from net.errors import AFFError
from utils import paths

__all__ = ['COUNTS', 'MARKER', 'documents', 'values', 'update', 'main']

MARKER = re.compile(r'<!-- count:([a-z_]+) -->(.*?)<!-- /count -->')


def _cells():
    from utils import paper_tables as PT
    return PT.CELLS


def _official_logs():
    from utils.compare.official import OFFICIAL_LOGS
    return OFFICIAL_LOGS


def _models():
    import net
    return net.get_model_list()


def _released():
    from net.model_store import RELEASED
    return RELEASED


#: marker name -> function of nothing returning the number
COUNTS = {
    'cells': lambda: len(_cells()),
    'tables': lambda: len({c.table for c in _cells()}),
    'paper_cells': lambda: len([c for c in _cells() if c.table in
                                ('3', '4', '5', 'S1', 'S2', 'HEAD-README', 'slides', 'released')]),
    'related_cells': lambda: len([c for c in _cells() if c.table.startswith(('AFINet', 'ACmix'))]),
    'models': lambda: len(_models()),
    'released': lambda: len(_released()),
    'official_logs': lambda: len(_official_logs()),
}


def documents(root=paths.PACKAGE_ROOT):
    """README.md and docs/*.md of a checkout (empty when installed: no documents there)."""
    out = [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', '*.md')))
    return [p for p in out if os.path.isfile(p)]


def values():
    """``{name: value}`` of every count."""
    return {name: fn() for name, fn in COUNTS.items()}


def update(files, check=False):
    """Rewrite (or with ``check`` only inspect) the markers of ``files``; returns the problems,
    one line each (``file:line: ...``)."""
    now = values()
    problems = []
    for path in files:
        with open(path, encoding='utf-8') as f:
            text = f.read()

        def fill(m, path=path, text=text):
            name, old = m.group(1), m.group(2)
            line = text.count('\n', 0, m.start()) + 1
            where = '%s:%d' % (os.path.relpath(path, paths.PACKAGE_ROOT), line)
            if name not in now:
                problems.append('%s: unknown count %r (known: %s)'
                                % (where, name, ', '.join(sorted(now))))
                return m.group(0)
            if old != str(now[name]):
                problems.append('%s: count:%s says %s, it is %d' % (where, name, old, now[name]))
            return '<!-- count:%s -->%d<!-- /count -->' % (name, now[name])
        new = MARKER.sub(fill, text)
        if not check and new != text:
            from utils.checkpoint import atomic_write

            def write(tmp, new=new):
                with open(tmp, 'w', encoding='utf-8') as f:
                    f.write(new)
            atomic_write(write, path)
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.doc_counts', description=__doc__.split('\n')[0])
    p.add_argument('--check', action='store_true',
                   help='only report stale or unknown markers (exit 1), change nothing')
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    files = documents()
    if not files:
        raise AFFError('no README.md or docs/ here (%s): the counts live in a checkout'
                       % paths.PACKAGE_ROOT)
    problems = update(files, check=args.check)
    for line in problems:
        print(line)
    unknown = [x for x in problems if 'unknown count' in x]
    if args.check or unknown:
        return 1 if problems else 0
    print('%d marker(s) updated in %d file(s)' % (len(problems), len(files))
          if problems else 'all counts current')
    return 0


if __name__ == '__main__':
    from utils.cli import run_main
    run_main(main)
