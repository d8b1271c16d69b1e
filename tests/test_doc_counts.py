"""utils.doc_counts: the counts in README.md and docs/ are generated from the data, never typed."""
import re

from utils import doc_counts as D
from utils import paper_tables as PT


def test_the_documents_counts_are_current():
    files = D.documents()
    assert D.update(files, check=True) == []
    text = ''
    for f in files:
        with open(f, encoding='utf-8') as fh:
            text += fh.read()
    assert '<!-- count:cells -->%d<!-- /count -->' % len(PT.CELLS) in text
    # no typed cell count left beside the generated ones
    typed = [m.group(0) for m in re.finditer(r'(?<![\w>-])\d{3} (?:paper )?cells', text)]
    assert typed == []


def test_stale_and_unknown_markers(tmp_path):
    doc = tmp_path / 'x.md'
    doc.write_text('We hold <!-- count:cells -->12<!-- /count --> cells and '
                   '<!-- count:bogus -->3<!-- /count --> bogons.\n', encoding='utf-8')
    problems = D.update([str(doc)], check=True)
    assert len(problems) == 2
    assert 'count:cells says 12, it is %d' % len(PT.CELLS) in problems[0]
    assert "unknown count 'bogus'" in problems[1]
    assert '12<!--' in doc.read_text(encoding='utf-8')           # --check changes nothing
    D.update([str(doc)])
    text = doc.read_text(encoding='utf-8')
    assert '<!-- count:cells -->%d<!-- /count -->' % len(PT.CELLS) in text
    assert '<!-- count:bogus -->3<!-- /count -->' in text         # unknown: left as it was


def test_every_count_is_a_positive_number():
    values = D.values()
    assert set(values) == set(D.COUNTS) and all(isinstance(v, int) and v > 0 for v in values.values())
    assert values['cells'] == values['paper_cells'] + values['related_cells']
