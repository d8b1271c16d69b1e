"""The documents are true to the repository and self-contained.

* No tracked file cites material that a clone does not have (the project-private reference notes
  that lived beside the repository during development);
* every ``docs/<name>.md §N`` citation (``docs/official-code.md §4.6``, ``docs/related_methods.md
  §1.5``, ``docs/pitfalls.md §1`` ...) names a numbered section of that document, and ``§N item K``
  an item of that section;
* every relative Markdown link of the README and of docs/*.md points at a file that exists, and
  at a heading of it where the link has an anchor.
"""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS = os.path.relpath(os.path.abspath(__file__), ROOT)

#: Files that another change is rewriting right now; they still cite the private notes.  Empty
#: this set once they cite docs/official-code.md / docs/related_methods.md instead (the last test
#: below fails as soon as an entry no longer needs to be here).
PENDING_REWRITE = set()

#: Documents the README links that another change adds (links to them may dangle until then).
WRITTEN_ELSEWHERE = set()

#: How the private material was cited: the reference "spec" by section, its file names, and the
#: folder beside the repository that holds it.
FOREIGN = [re.compile(p, re.I) for p in (
    r"\bspec(?:'s)?\s*(?:§|section\s+\d|\(\d)",
    r'\bthe spec\b',
    r'openaff-spec',
    r'related-methods',
    r'ecosystem\.md|environment\.md',
    r'\.\./shared\b|/work/shared\b|shared/reference|shared/papers',
)]


def tracked_files():
    """Repository-relative paths of the tracked files (every file but hidden / cache folders
    when git is not available)."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode('utf-8')
        files = [f for f in out.split('\0') if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith('.') and d != '__pycache__']
        files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    return files


def read_text(rel):
    """The file's text, or None for binary files (and files deleted in the working tree)."""
    try:
        with open(os.path.join(ROOT, rel), 'rb') as f:
            data = f.read()
        return None if b'\0' in data else data.decode('utf-8')
    except (OSError, UnicodeDecodeError):
        return None


TEXTS = {rel: text for rel in tracked_files() for text in [read_text(rel)] if text is not None}
DOCS = sorted(rel for rel in TEXTS if rel == 'README.md' or re.fullmatch(r'docs/[^/]+\.md', rel))


def foreign_citations(text):
    return [m.group(0) for pattern in FOREIGN for m in pattern.finditer(text)]


# ---------------------------------------------------------------- nothing outside the repository
def test_no_file_cites_material_outside_the_repository():
    bad = {}
    for rel, text in TEXTS.items():
        if rel == THIS or rel in PENDING_REWRITE:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            found = foreign_citations(line)
            if found:
                bad.setdefault(rel, []).append('%d: %s' % (number, line.strip()[:100]))
    assert not bad, '\n'.join('%s\n  %s' % (rel, '\n  '.join(lines)) for rel, lines in bad.items())


def test_the_pending_rewrites_still_need_their_exemption():
    """An exempted file that no longer cites the private notes must leave PENDING_REWRITE."""
    done = sorted(rel for rel in PENDING_REWRITE
                  if rel not in TEXTS or not foreign_citations(TEXTS[rel]))
    assert not done, 'remove from PENDING_REWRITE: %s' % ', '.join(done)


# ---------------------------------------------------------------- section citations
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$', re.M)
NUMBERED = re.compile(r'^(\d+(?:\.\d+)*)\.?(?=\s)')
CITED_DOC = re.compile(r'\bdocs/([A-Za-z0-9_.-]+\.md)')
SECTION = re.compile(r'§\s?(\d+(?:\.\d+)?)(?:\s*[-–]\s*(\d+(?:\.\d+)?))?(?:\s+items?\s+(\d+))?')


def sections(text):
    """Section number -> the text of that section (up to the next heading)."""
    heads = list(HEADING.finditer(text))
    out = {}
    for i, h in enumerate(heads):
        m = NUMBERED.match(h.group(2))
        if m:
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            out[m.group(1)] = text[h.end():end]
    return out


def citations(text):
    """(document, section, item or None) of every ``docs/<doc>.md §N[-M][ item K]`` in ``text``:
    the § numbers that follow the document's name in the same clause."""
    for m in CITED_DOC.finditer(text):
        clause = re.split(r'[)\];]|\n\s*\n|docs/', text[m.end():m.end() + 80])[0]
        if '§' not in clause[:3]:        # "docs/x.md, heading" or a plain mention: no section
            continue
        for s in SECTION.finditer(clause):
            for number in filter(None, (s.group(1), s.group(2))):
                yield m.group(1), number, s.group(3) if number == s.group(1) else None


def test_every_cited_section_exists():
    cited = [(rel, doc, number, item) for rel, text in TEXTS.items() if rel != THIS
             for doc, number, item in citations(text)]
    assert len(cited) > 50          # the mechanism works: the code cites docs/official-code.md a lot
    numbered = {}
    bad = []
    for rel, doc, number, item in cited:
        path = 'docs/' + doc
        if path not in numbered:
            numbered[path] = sections(TEXTS[path]) if path in TEXTS else None
        secs = numbered[path]
        if secs is None:
            bad.append('%s cites %s, which does not exist' % (rel, path))
        elif number not in secs:
            bad.append('%s cites %s §%s, which has no such section' % (rel, path, number))
        elif item and not re.search(r'^\s*%s\.\s' % item, secs[number], re.M):
            bad.append('%s cites %s §%s item %s, which has no such item' % (rel, path, number, item))
    assert not bad, '\n'.join(bad)


def test_the_citation_parser():
    text = ('see docs/official-code.md §2.2-2.3 and (docs/official-code.md §3.4, hashes §3.6); '
            'docs/official-code.md §4.6 item 7, docs/related_methods.md §1.5, A11) and '
            'docs/segmentation.md, "StopSign" (AFINet §4.3)')
    assert list(citations(text)) == [
        ('official-code.md', '2.2', None), ('official-code.md', '2.3', None),
        ('official-code.md', '3.4', None), ('official-code.md', '3.6', None),
        ('official-code.md', '4.6', '7'), ('related_methods.md', '1.5', None)]
    secs = sections('# Title\n## 1. One\ntext\n### 1.2 Sub\n1. first\n## 10. Ten\n')
    assert sorted(secs) == ['1', '1.2', '10'] and '1. first' in secs['1.2']


def test_official_code_keeps_the_section_numbers_the_code_relies_on():
    secs = sections(TEXTS['docs/official-code.md'])
    want = ['0.1', '0.2'] + ['1.%d' % i for i in range(1, 8)] + ['2.%d' % i for i in range(1, 8)] + \
        ['3.%d' % i for i in range(1, 7)] + ['4.%d' % i for i in range(1, 7)] + \
        [str(i) for i in range(11)]
    assert set(want) <= set(secs), sorted(set(want) - set(secs))


# ---------------------------------------------------------------- links
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^```.*?^```', re.M | re.S)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)       # a link's text only
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')


def anchors(text):
    seen, out = {}, set()
    for h in HEADING.finditer(FENCE.sub('', text)):
        base = slug(h.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else '%s-%d' % (base, n))
    return out


def test_slug_follows_github():
    assert slug('4.3 `train_imagenet.py` at both commits: command line and behaviour') == \
        '43-train_imagenetpy-at-both-commits-command-line-and-behaviour'
    assert slug('1. `hybridize(static_shape=True)` and CPU BatchNorm') == \
        '1-hybridizestatic_shapetrue-and-cpu-batchnorm'
    assert anchors('# A\n## A\n```\n# not a heading\n```\n') == {'a', 'a-1'}


@pytest.mark.parametrize('doc', DOCS)
def test_relative_links_point_at_existing_files(doc):
    text = FENCE.sub('', TEXTS[doc])
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I):           # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        rel = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if rel in WRITTEN_ELSEWHERE and not os.path.exists(os.path.join(ROOT, rel)):
            continue
        if not os.path.exists(os.path.join(ROOT, rel)):
            bad.append('%s: no file %s' % (target, rel))
        elif anchor and rel.endswith('.md'):
            with open(os.path.join(ROOT, rel), encoding='utf-8') as f:
                if anchor not in anchors(f.read()):
                    bad.append('%s: no heading #%s in %s' % (target, anchor, rel))
    assert not bad, '\n'.join(bad)


def test_the_readme_is_a_front_page():
    """The README says what this is, the two commands, the capabilities and where the docs are;
    the long sections live in docs/."""
    readme = TEXTS['README.md']
    assert 'make demo' in readme and 'make test' in readme
    assert len(readme) < 12000, len(readme)
    linked = set(re.findall(r'\]\((docs/[^)#\s]+\.md)', readme))
    assert {d for d in DOCS if d.startswith('docs/')} <= linked, \
        sorted({d for d in DOCS if d.startswith('docs/')} - linked)
