"""Checkpoints that survive a kill at any instant.

*One file* is written atomically: the data goes to a temporary file in the destination folder,
is flushed to disk and replaces the destination in one ``os.replace`` (atomic within one file
system); on any error the temporary file is removed and the previous file stays untouched.

*A set* -- ``<stem>.params`` (weights), ``<stem>.states`` (optimizer) and ``<stem>.json`` (the
commit record) -- is committed as a whole, like a journal:

1. each part is written, atomically, to ``<stem>.<part>.pending``;
2. the commit record ``<stem>.json`` (epoch, update count, size and SHA-256 of every part, the
   script's metadata and configuration) replaces the previous one: this is the commit;
3. the pending parts are renamed over their final names.

A kill before 2 leaves the previous set whole (the pending files are removed, and said, at the
next start); a kill after 2 leaves a record whose parts are pending, which the reader finishes
(rolls forward) before it resumes.  The reader verifies sizes and hashes, so a part that was
replaced, truncated or garbled by hand is named instead of being trained on.

>>> from utils.checkpoint import CheckpointSet
>>> ckpt = CheckpointSet('params', 'cifar100-ASKCFuse-resnet-32-c-4-s-1')
>>> ckpt.save('last', model, trainer, dict(epoch=7, num_update=336))
>>> ckpt.read('params/cifar100-ASKCFuse-resnet-32-c-4-s-1-last.params').meta['epoch']
7
"""
import errno
import glob
import hashlib
import json
import os
import pickle
import re
import uuid

from net.errors import CheckpointError

__all__ = ['atomic_write', 'save_params_atomic', 'save_states_atomic', 'CheckpointSet',
           'SavedSet', 'fault_point', 'RECORD_FORMAT']

#: version of the commit record; records without it were written before sets were journaled
RECORD_FORMAT = 2
PARTS = ('params', 'states')


# ------------------------------------------------------------------------------- fault injection
_FAULTS = {'count': 0}


def fault_point(name):
    """A place where a write can be interrupted; the fault-injection tests end the process here.

    ``AFF_FAULT_AT=k`` ends the process (``os._exit(86)``) at the k-th point this process reaches
    (1-based); with ``AFF_FAULT_KIND=enospc`` the k-th point raises ``OSError(ENOSPC)`` instead,
    as a full disk would.  ``AFF_FAULT_TRACE=FILE`` appends one line per point reached.  Without
    these variables this does nothing but count.
    """
    _FAULTS['count'] += 1
    trace = os.environ.get('AFF_FAULT_TRACE')
    if trace:
        with open(trace, 'a') as f:
            f.write('%d %s\n' % (_FAULTS['count'], name))
    at = os.environ.get('AFF_FAULT_AT')
    if at and int(at) == _FAULTS['count']:
        if os.environ.get('AFF_FAULT_KIND') == 'enospc':
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os._exit(86)


# ------------------------------------------------------------------------------- one file
def _fsync_path(path, directory=False):
    flags = os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms cannot open directories: durability is best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _tmp_name(path):
    return os.path.join(os.path.dirname(os.path.abspath(path)), '.%s.%d.%s.tmp' % (
        os.path.basename(path), os.getpid(), uuid.uuid4().hex[:8]))


def atomic_write(write, path):
    """Call ``write(tmp_path)`` and atomically move the result to ``path``; returns ``path``.

    ``write`` must create the file it is given (e.g. ``net.save_parameters``).  The parent
    directory is created if needed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        _fsync_path(tmp)
        fault_point('written ' + os.path.basename(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_path(directory, directory=True)
    fault_point('replaced ' + os.path.basename(path))
    return path


def save_params_atomic(net, path):
    """``net.save_parameters(path)``, atomically."""
    return atomic_write(net.save_parameters, path)


def save_states_atomic(trainer, path):
    """``trainer.save_states(path)`` (optimizer state), atomically."""
    return atomic_write(trainer.save_states, path)


def _digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


# ------------------------------------------------------------------------------- sets
class SavedSet(object):
    """A verified checkpoint set: ``stem``, ``params`` and ``states`` paths (``states`` None when
    the set has none), ``meta`` (the commit record) and ``notes`` (what reading it did)."""

    def __init__(self, stem, meta, states, notes):
        self.stem, self.meta, self.notes = stem, meta, notes
        self.params = stem + '.params'
        self.states = states

    @property
    def epoch(self):
        return self.meta['epoch']


def stem_of(path):
    """``a/b-last`` for ``a/b-last.params``, ``.states``, ``.json`` or the stem itself."""
    path = os.path.expanduser(os.fspath(path))
    for ext in ('.params', '.states', '.json'):
        if path.endswith(ext):
            return path[:-len(ext)]
    return path


def _read_record(path):
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError('%s is not a commit record of ours (unreadable JSON: %s); '
                              'resume from another checkpoint' % (path, e)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get('epoch'), int):
        raise CheckpointError('%s is not a commit record of ours (no epoch number); resume from '
                              'another checkpoint' % path)
    return meta


def _part_state(final, pending, want):
    """'final', 'pending' (the pending file is the committed one) or None (missing/differs)."""
    for which, path in (('final', final), ('pending', pending)):
        if os.path.isfile(path) and os.path.getsize(path) == want['size'] \
                and _digest(path) == want['sha256']:
            return which
    return None


def read_set(stem):
    """The verified :class:`SavedSet` at ``stem`` (finishing a commit that a kill interrupted),
    or a :class:`CheckpointError` naming the part that is missing or differs from its record."""
    record = stem + '.json'
    if not os.path.isfile(record):
        raise CheckpointError('%s has no commit record %s: it is not a complete checkpoint set'
                              % (stem, record))
    meta = _read_record(record)
    notes = []
    if meta.get('format') != RECORD_FORMAT:  # written before sets were journaled
        states = stem + '.states' if os.path.isfile(stem + '.states') else None
        if not os.path.isfile(stem + '.params'):
            raise CheckpointError('%s.params is missing' % stem)
        notes.append('%s: a checkpoint of an earlier version (no hashes in its record): its '
                     'parts are not verified' % stem)
        return SavedSet(stem, meta, states, notes)
    parts = meta.get('parts', {})
    for part, want in sorted(parts.items()):
        final, pending = '%s.%s' % (stem, part), '%s.%s.pending' % (stem, part)
        where = _part_state(final, pending, want)
        if where is None:
            raise CheckpointError('%s does not match its commit record %s (missing, truncated or '
                                  'replaced): the set is torn' % (final, record))
        if where == 'pending':
            os.replace(pending, final)
            fault_point('rolled forward ' + os.path.basename(final))
            notes.append('finished the interrupted commit of %s (epoch %d): %s renamed into place'
                         % (stem, meta['epoch'], os.path.basename(pending)))
    return SavedSet(stem, meta, stem + '.states' if 'states' in parts else None, notes)


class CheckpointSet(object):
    """``<save_dir>/<name>-<tag>.{params,states,json}`` sets, each committed as a whole."""

    def __init__(self, save_dir, name):
        self.dir, self.name = save_dir, name

    def stem(self, tag):
        return os.path.join(self.dir, '%s-%s' % (self.name, tag))

    def save(self, tag, model, trainer, meta):
        """Commit weights, optimizer states (unless ``trainer`` is None) and ``meta`` (needs
        ``epoch``) as set ``tag``; returns the stem."""
        return self.save_stem(self.stem(tag), model, trainer, meta)

    def save_stem(self, stem, model, trainer, meta):
        """:meth:`save` under any stem (the official ImageNet names)."""
        writers = {'params': model.save_parameters}
        if trainer is not None:
            writers['states'] = trainer.save_states
        parts = {}
        for part in PARTS:
            if part in writers:
                pending = '%s.%s.pending' % (stem, part)
                atomic_write(writers[part], pending)
                parts[part] = dict(size=os.path.getsize(pending), sha256=_digest(pending))
        record = dict(meta, format=RECORD_FORMAT, parts=parts)
        atomic_write(lambda tmp: _write_json(tmp, record), stem + '.json')   # the commit
        for part in parts:
            os.replace('%s.%s.pending' % (stem, part), '%s.%s' % (stem, part))
            fault_point('renamed %s.%s' % (os.path.basename(stem), part))
        if trainer is None and os.path.isfile(stem + '.states'):
            os.remove(stem + '.states')  # a set without states must not pair with older ones
        _fsync_path(os.path.dirname(os.path.abspath(stem)), directory=True)
        return stem

    def read(self, path):
        """:func:`read_set` of the set ``path`` names (any of its files or its stem)."""
        return read_set(stem_of(path))

    def sets(self):
        """Stems of this name's sets with a commit record, newest epoch first."""
        found = []
        for record in glob.glob(glob.escape(self.stem('')) + '*.json'):
            try:
                meta = _read_record(record)
            except CheckpointError:
                continue
            found.append((meta['epoch'], record[:-len('.json')]))
        return [stem for _, stem in sorted(found, reverse=True)]

    def read_or_recover(self, path):
        """:func:`read_set` of ``path``; when that set is torn, the newest complete set of the same
        name that is not newer, with a note saying which and why."""
        stem = stem_of(path)
        try:
            return read_set(stem)
        except CheckpointError as torn:
            reason = str(torn)
        for other in self.sets():
            if other == stem:
                continue
            try:
                found = read_set(other)
            except CheckpointError:
                continue
            found.notes.insert(0, 'resuming from %s (epoch %d) instead: %s'
                               % (other, found.epoch, reason))
            return found
        raise CheckpointError('%s; no other complete checkpoint set of %s in %s: start a new '
                              'run' % (reason, self.name, self.dir))

    def clean_leftovers(self):
        """Remove the temporary and pending files an interrupted save left; returns their names."""
        # temporary files: .<file>.<pid>.<hex>.tmp of any file of this name (best files too)
        pattern = re.compile(r'^(\..*%s-.*\.tmp|.*%s-.*\.pending)$' % ((re.escape(self.name),) * 2))
        removed = []
        if not os.path.isdir(self.dir):
            return removed
        for entry in sorted(os.listdir(self.dir)):
            if pattern.match(entry) and entry.endswith('.pending'):
                try:  # pending parts of a committed record are finished, not removed
                    read_set(os.path.join(self.dir, entry.rsplit('.', 2)[0]))
                except CheckpointError:
                    pass
        for entry in sorted(os.listdir(self.dir)):
            if pattern.match(entry):
                os.remove(os.path.join(self.dir, entry))
                removed.append(entry)
        return removed


# ------------------------------------------------------------------------------- optimizer states
def check_states(path, params):
    """Check that ``path`` holds Gluon Trainer states for ``params`` (a list of Parameters in
    the trainer's order): one state per parameter, each with the parameter's shape.  Raises a
    :class:`CheckpointError` naming the file otherwise (truncated, garbled, another model's)."""
    if not os.path.isfile(path):
        raise CheckpointError('%s does not exist' % path)
    try:
        with open(path, 'rb') as f:
            loaded = pickle.loads(f.read())
    except Exception as e:  # a pickle of garbage can raise nearly anything
        raise CheckpointError('%s is not an optimizer-states file (%s: %s); resume from another '
                              'checkpoint or without states' % (path, type(e).__name__,
                                                                str(e)[:80])) from None
    states = loaded[0] if isinstance(loaded, tuple) and len(loaded) == 2 else loaded
    if not isinstance(states, dict):
        raise CheckpointError('%s is not an optimizer-states file of a Gluon Trainer' % path)
    trained = set(i for i, p in enumerate(params) if p.grad_req != 'null')
    if set(states) != trained:
        raise CheckpointError('%s holds optimizer states for %d parameters but the network trains %d: '
                              'it is another model\'s' % (path, len(states), len(trained)))
    for i, state in sorted(states.items()):
        p = params[i]
        for s in _arrays(state):
            if len(s.shape) != len(p.shape) or any(
                    d and d != e for d, e in zip(p.shape, s.shape)):
                raise CheckpointError('%s: the optimizer state of parameter %d (%s) has shape %s, '
                                      'the network\'s is %s: it is another model\'s'
                                      % (path, i, p.name, tuple(s.shape), tuple(p.shape)))


def _arrays(state):
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _arrays(s)]
    return [state] if hasattr(state, 'shape') else []
