"""The released open-aff checkpoints: the table, and how to find, verify and load them.

Nothing is ever downloaded.  A released file is looked up by its bare name or by its path in
the official repository (the part after ``params/``), in these directories, in order:

1. ``root`` (the argument of :func:`find_checkpoint` / ``net.get_model(..., root=...)``),
2. ``$AFF_PARAMS_DIR`` (one or more directories separated by ``os.pathsep``),
3. :data:`REPO_PARAMS_DIR`: ``params/`` of the repository checkout; when the package is installed
   (``pip install .``) the MXNet model folder instead, ``$MXNET_HOME/models``, else ``~/.mxnet/models``
   (utils.paths.params_dir),
4. ``$MXNET_HOME/models``, else ``~/.mxnet/models``.

A missing file raises :class:`~net.errors.CheckpointError` with the exact download URL.  Every
file found through the table is verified against its git blob SHA-1 (docs/official-code.md §3.6) before it is
loaded; ``git hash-object FILE`` prints the same hash.

>>> import net
>>> model = net.get_model('aff_resnet50', pretrained=True)                # the released file
>>> model = net.get_model('cifar_aff_resnet32', pretrained='superclass')  # by tag
>>> model = net.get_model('cifar_aff_resnet32', pretrained='e5f916')      # by blob SHA-1 prefix
>>> model = net.get_model('cifar_aff_resnet32', pretrained='/path/x.params')  # any file, no hash

ImageNet checkpoints hold float16 Conv/Dense tensors and float32 BatchNorm tensors; they are
cast to the network's dtype (float32 unless the network was cast) while loading.
"""
import hashlib
import logging
import os
import re
from dataclasses import dataclass

import mxnet as mx

from utils import paths

from .errors import CheckpointError, mxnet_reason

__all__ = ['Checkpoint', 'RELEASED', 'URL_ROOT', 'REPO_PARAMS_DIR', 'git_blob_sha1',
           'checkpoints_of', 'default_checkpoint', 'search_dirs', 'find_checkpoint',
           'load_params', 'load_pretrained', 'released_table_markdown']

#: where the official repository serves its files (append :attr:`Checkpoint.path`)
URL_ROOT = 'https://github.com/YimianDai/open-aff/raw/master/'

#: the checkpoints folder: ``params/`` in a repository checkout; installed, the MXNet model folder
#: (``$MXNET_HOME/models`` or ``~/.mxnet/models``), never site-packages
REPO_PARAMS_DIR = paths.params_dir()

_LOG = logging.getLogger('net')
_MIN_SHA_PREFIX = 6
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    """One released checkpoint file of the official repository (HEAD 0bcfd8a)."""
    model: str        #: registry name of the architecture (``net.get_model(model)``)
    tag: str          #: short selector, unique per model (``pretrained=tag``)
    file: str         #: bare file name
    path: str         #: path inside the official repository (``params/...``)
    blob_sha1: str    #: full git blob SHA-1 (``git hash-object``)
    classes: int      #: output units of the classifier stored in the file
    label_mode: str   #: 'fine' (100 CIFAR labels), 'coarse' (20 superclasses) or 'imagenet'
    dtype: str        #: 'float32', or 'float16' (fp16 Conv/Dense tensors, fp32 BatchNorm)
    metric: str       #: 'accuracy' (CIFAR, top-1) or 'top1_err' (ImageNet, single crop)
    value: float      #: best validation value reported by the file name and the log
    epoch: int        #: epoch of that value in the log (0-based, as logged)
    log: str          #: official training log, relative to the official ``params/``
    note: str         #: one sentence on how it was trained
    default: bool = False  #: selected by ``pretrained=True``

    @property
    def url(self):
        """Download URL of the file."""
        return URL_ROOT + self.path

    @property
    def relpath(self):
        """The official path without the leading ``params/``."""
        return self.path[len('params/'):] if self.path.startswith('params/') else self.path


def _released():
    from utils import metafile   # the data lives with the other metafiles (utils/results/)
    out = []
    for row in metafile.load('released.csv'):
        row.pop('_where')
        out.append(Checkpoint(**row))
    return tuple(out)


#: The 9 checkpoint files of open-aff HEAD (``utils/results/released.csv``; configs from the file
#: names and logs, docs/official-code.md §3.4; hashes = full git blob SHA-1, §3.6); one default
#: per model.
RELEASED = _released()


# ---------------------------------------------------------------------------- hashing
def git_blob_sha1(path):
    """git blob SHA-1 of a file: SHA-1 of ``b'blob <size>\\0'`` + content (streamed)."""
    size = os.path.getsize(path)
    sha = hashlib.sha1(b'blob %d\0' % size)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            sha.update(chunk)
    return sha.hexdigest()


# ---------------------------------------------------------------------------- lookup
def checkpoints_of(model):
    """The released checkpoints of a registry name (empty tuple if none)."""
    return tuple(c for c in RELEASED if c.model == model)


def default_checkpoint(model):
    """The checkpoint ``pretrained=True`` selects for ``model``, or None."""
    for c in checkpoints_of(model):
        if c.default:
            return c
    return None


def search_dirs(root=None):
    """The directories searched for released files, in order, without duplicates."""
    dirs = []
    if root is not None:
        dirs.append(os.fspath(root))
    env = os.environ.get('AFF_PARAMS_DIR')
    if env:
        dirs.extend(d for d in env.split(os.pathsep) if d)
    dirs.append(REPO_PARAMS_DIR)
    dirs.append(paths.mxnet_models_dir())
    out = []
    for d in dirs:
        d = os.path.abspath(os.path.expanduser(d))
        if d not in out:
            out.append(d)
    return out


def _released_models():
    return sorted({c.model for c in RELEASED})


def _select(model, pretrained):
    """The table record that ``pretrained`` (True, a tag or a SHA-1 prefix) names."""
    records = checkpoints_of(model)
    if not records:
        raise CheckpointError(
            'no released checkpoint for model %r; released checkpoints exist for: %s '
            '(or pass pretrained=\'/path/to/file.params\')' % (model, ', '.join(_released_models())))
    tags = ', '.join(repr(c.tag) for c in records)
    if pretrained is True:
        record = default_checkpoint(model)
        if record is None:  # pragma: no cover - the table always has one default per model
            raise CheckpointError('model %r has no default checkpoint; pass one of the tags %s'
                                  % (model, tags))
        return record
    key = pretrained.strip().lower()
    for c in records:
        if key == c.tag:
            return c
    if re.fullmatch('[0-9a-f]{%d,40}' % _MIN_SHA_PREFIX, key):
        hits = [c for c in RELEASED if c.blob_sha1.startswith(key)]
        mine = [c for c in hits if c.model == model]
        if len(mine) == 1:
            return mine[0]
        if len(mine) > 1:
            raise CheckpointError('SHA-1 prefix %r is ambiguous for %s; give more hex digits'
                                  % (pretrained, model))
        if hits:
            other = hits[0]
            raise CheckpointError(
                'SHA-1 prefix %r is the %r checkpoint of %s, not of %s: build '
                'net.get_model(%r, pretrained=%r) instead'
                % (pretrained, other.tag, other.model, model, other.model, pretrained))
        raise CheckpointError(
            'no released checkpoint of %s has a blob SHA-1 starting with %r; valid tags: %s '
            '(or pretrained=True, or a path to a .params file)' % (model, pretrained, tags))
    raise CheckpointError(
        'unknown checkpoint tag %r for %s; valid tags: %s (or pretrained=True, a blob SHA-1 '
        'prefix of >= %d hex digits, or a path to a .params file)'
        % (pretrained, model, tags, _MIN_SHA_PREFIX))


def _looks_like_path(value):
    if not isinstance(value, str):
        return True  # os.PathLike
    return (value.endswith('.params') or os.sep in value
            or (os.altsep is not None and os.altsep in value) or value.startswith('~'))


def find_checkpoint(model, pretrained=True, root=None):
    """Locate a checkpoint of ``model``; returns ``(Checkpoint or None, path)``.

    ``pretrained``: True (the default record of ``model``), a tag, a hex prefix of the blob
    SHA-1 (>= 6 digits), or a path (str / os.PathLike) to a ``.params`` file, which is returned
    as is (record None: no table entry, no hash check).  Raises CheckpointError if nothing fits
    or the file is absent from every directory of :func:`search_dirs`.  Never downloads.
    """
    if pretrained is False or pretrained is None:
        raise CheckpointError('pretrained=%r selects no checkpoint; pass True, a tag, a blob '
                              'SHA-1 prefix or a path to a .params file' % (pretrained,))
    if pretrained is not True and not isinstance(pretrained, (str, os.PathLike)):
        raise CheckpointError('pretrained=%r is not understood; pass True, a tag, a blob SHA-1 '
                              'prefix or a path to a .params file' % (pretrained,))
    if isinstance(pretrained, os.PathLike) or (
            isinstance(pretrained, str) and not any(
                c.tag == pretrained.strip().lower() for c in checkpoints_of(model))
            and (_looks_like_path(pretrained) or os.path.isfile(pretrained))):
        path = os.path.expanduser(os.fspath(pretrained))
        if os.path.isdir(path):
            raise CheckpointError('checkpoint path %s is a directory; pass the .params file '
                                  'inside it' % path)
        if not os.path.isfile(path):
            raise CheckpointError('checkpoint file %s does not exist; pass the path of an '
                                  'existing .params file (or pretrained=True / a tag for the '
                                  'released one)' % path)
        return None, path
    record = _select(model, pretrained)
    dirs = search_dirs(root)
    for d in dirs:
        for candidate in (os.path.join(d, record.file),
                          os.path.join(d, *record.relpath.split('/'))):
            if os.path.isfile(candidate):
                return record, candidate
    raise CheckpointError(
        'checkpoint %s (%s, tag %r) not found in: %s; download it from %s and put it in %s '
        '(bare name or the sub-path %s), or point $AFF_PARAMS_DIR at its folder (in Python: '
        'root=DIR, or pretrained=\'/path/to/file.params\')'
        % (record.file, record.model, record.tag, ', '.join(dirs), record.url, REPO_PARAMS_DIR,
           record.relpath))


# ---------------------------------------------------------------------------- loading
def _first(items, n=3):
    items = list(items)
    more = ', ...' if len(items) > n else ''
    return ', '.join(str(i) for i in items[:n]) + more


def _fmt_shape(shape):
    return '(%s)' % ','.join('?' if d <= 0 else str(d) for d in shape)


def _shape_fits(want, got):
    """Does a saved shape fit a parameter shape whose unknown dims are 0 (or -1)?"""
    if want is None:
        return True
    want = tuple(want)
    if len(want) == 0 and len(got) != 0:
        return True  # wholly unknown shape
    return len(want) == len(got) and all(w <= 0 or w == g for w, g in zip(want, got))


def _classes_hint(mismatched, saved):
    """K if the only mismatch is the output size of one dense layer (the classifier)."""
    layers = {name.rsplit('.', 1)[0] for name, _, _ in mismatched}
    if len(layers) != 1:
        return None
    layer = layers.pop()
    weight = saved.get(layer + '.weight')
    if weight is None or len(weight) != 2:
        return None
    ks = set()
    for _, want, got in mismatched:
        if len(want) != len(got) or not _shape_fits(tuple(want)[1:], got[1:]):
            return None
        ks.add(got[0])
    return ks.pop() if len(ks) == 1 else None


def _read_params_file(path):
    """{name: shape} of a .params file, or CheckpointError if MXNet cannot read it."""
    try:
        loaded = mx.nd.load(path)
    except (mx.base.MXNetError, MemoryError, OSError) as err:
        raise CheckpointError('%s is not a readable MXNet parameter file (%s); re-download it '
                              'or re-save it with save_parameters'
                              % (path, mxnet_reason(err))) from None
    if not isinstance(loaded, dict):
        raise CheckpointError('%s holds an unnamed list of arrays, not named parameters; save '
                              'it with net.save_parameters' % path)
    return {name: tuple(arr.shape) for name, arr in loaded.items()}


def _check_fit(net, path, saved):
    """Raise a one-line CheckpointError unless names and known dims match exactly."""
    params = net._collect_params_with_prefix()
    wanted = {name: p.shape for name, p in params.items()}
    missing = [n for n in wanted if n not in saved]
    unexpected = [n for n in saved if n not in wanted]
    mismatched = [(n, wanted[n], saved[n]) for n in wanted
                  if n in saved and not _shape_fits(wanted[n], saved[n])]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append('%d parameters missing from the file (%s)' % (len(missing), _first(missing)))
    if unexpected:
        parts.append('%d unexpected names in the file (%s)' % (len(unexpected), _first(unexpected)))
    if mismatched:
        parts.append('%d shape mismatches (%s)' % (len(mismatched), _first(
            '%s: network %s vs file %s' % (n, _fmt_shape(w), _fmt_shape(g))
            for n, w, g in mismatched)))
    k = None if (missing or unexpected) else _classes_hint(mismatched, saved)
    to_paper = {n.replace('.downsample.1.', '.downsample.0.') for n in missing}
    to_head = {n.replace('.downsample.0.', '.downsample.1.') for n in missing}
    if k is not None:
        fix = 'this file has a %d-class head: build the model with classes=%d' % (k, k)
    elif unexpected and all(n.startswith(('arg:', 'aux:')) for n in unexpected):
        fix = ('this is an exported symbol file: load it with gluon.SymbolBlock.imports, '
               'or save a file with net.save_parameters')
    elif missing and not mismatched and to_paper == set(unexpected) != set(missing):
        fix = ('the file uses the submitted-paper (806562e) names \'.downsample.0.\': build '
               'the \'_paper\' variant of this model')
    elif missing and not mismatched and to_head == set(unexpected) != set(missing):
        fix = ('the file uses the HEAD names \'.downsample.1.\': build the variant of this '
               'model without \'_paper\'')
    else:
        fix = ('the file was saved from a different architecture: build the network it was '
               'saved from (same registry name and constructor arguments)')
    raise CheckpointError('%s does not fit this %s: %s; %s'
                          % (path, type(net).__name__, '; '.join(parts), fix))


def load_params(net, path, ctx=None, expect=None):
    """Load a ``.params`` file (structural names) into ``net``; returns ``path``.

    Checks, in order, each failing with a one-line CheckpointError: the git blob SHA-1 if
    ``expect`` (a :class:`Checkpoint`) is given; that MXNet can read the file; that its names
    and shapes match the network exactly (unknown dims of deferred parameters are free).
    Tensors are cast to the network's dtypes (fp16 checkpoints load into float32 networks).
    ``net`` may be initialised or not; ``ctx`` as in ``Block.load_parameters``.
    """
    path = os.fspath(path)
    if expect is not None:
        actual = git_blob_sha1(path)
        if actual != expect.blob_sha1:
            raise CheckpointError(
                '%s has git blob SHA-1 %s but the released %s (%s, tag %r) has %s: the file is '
                'corrupt or a different one; re-download it from %s'
                % (path, actual, expect.file, expect.model, expect.tag, expect.blob_sha1,
                   expect.url))
    saved = _read_params_file(path)
    _check_fit(net, path, saved)
    net.load_parameters(path, ctx=ctx, cast_dtype=True, dtype_source='current')
    return path


def load_pretrained(net, model, pretrained, root=None, ctx=None):
    """:func:`find_checkpoint` + :func:`load_params` (on ``mx.cpu()`` if ``ctx`` is None).

    Returns ``(Checkpoint or None, path)``.  Logs one warning on logger ``'net'`` for a
    checkpoint trained on the 20 CIFAR-100 superclasses.
    """
    record, path = find_checkpoint(model, pretrained, root=root)
    load_params(net, path, ctx=mx.cpu() if ctx is None else ctx, expect=record)
    if record is not None and record.label_mode == 'coarse':
        _LOG.warning('%s checkpoint %r (%s) was trained on the 20 CIFAR-100 superclass '
                     '(coarse) labels: the head has %d outputs but only outputs 0..19 are '
                     'meaningful', model, record.tag, record.file, record.classes)
    return record, path


# ---------------------------------------------------------------------------- docs
def released_table_markdown():
    """The Markdown table of :data:`RELEASED` that ``params/README.md`` contains verbatim."""
    head = ('| model | tag | default | classes | labels | dtype | reported | epoch '
            '| git blob SHA-1 | download |')
    rows = [head, '|' + '---|' * head.count(' | ') + '---|']
    for c in RELEASED:
        metric = 'acc %.4f' % c.value if c.metric == 'accuracy' else 'top-1 err %.4f' % c.value
        dtype = 'fp16 (BN fp32)' if c.dtype == 'float16' else 'fp32'
        labels = {'fine': '100 fine', 'coarse': '20 superclasses',
                  'imagenet': 'ImageNet-1k'}[c.label_mode]
        rows.append('| `%s` | `%s` | %s | %d | %s | %s | %s | %d | `%s` | [%s](%s) |' % (
            c.model, c.tag, 'yes' if c.default else '', c.classes, labels, dtype, metric,
            c.epoch, c.blob_sha1, c.file, c.url))
    return '\n'.join(rows) + '\n'
