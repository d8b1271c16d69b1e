"""Atomic checkpoint writes: a killed or failing run never leaves a truncated file behind.

The data goes to a temporary file in the destination directory, is flushed to disk, and
replaces the destination in one ``os.replace`` (atomic on POSIX and Windows within one file
system).  On any error the temporary file is removed and the previous file stays untouched.

>>> from utils.checkpoint import save_params_atomic, save_states_atomic
>>> save_params_atomic(net, 'params/0.8357-cifar100-...-best.params')
>>> save_states_atomic(trainer, 'params/0.8357-cifar100-...-best.states')
"""
import json
import os
import uuid

__all__ = ['atomic_write', 'save_params_atomic', 'save_states_atomic', 'Checkpoints']


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


def atomic_write(write, path):
    """Call ``write(tmp_path)`` and atomically move the result to ``path``; returns ``path``.

    ``write`` must create the file it is given (e.g. ``net.save_parameters``).  The parent
    directory is created if needed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, '.%s.%d.%s.tmp' % (os.path.basename(path), os.getpid(),
                                                       uuid.uuid4().hex[:8]))
    try:
        write(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_path(directory, directory=True)
    return path


def save_params_atomic(net, path):
    """``net.save_parameters(path)``, atomically."""
    return atomic_write(net.save_parameters, path)


def save_states_atomic(trainer, path):
    """``trainer.save_states(path)`` (optimizer state), atomically."""
    return atomic_write(trainer.save_states, path)


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


class Checkpoints:
    """``<save_dir>/<name>-<tag>.{params,states,json}`` checkpoints, every file atomic."""

    def __init__(self, save_dir, name):
        self.dir, self.name = save_dir, name

    def stem(self, tag):
        return os.path.join(self.dir, '%s-%s' % (self.name, tag))

    def save(self, tag, model, trainer, meta):
        """Weights, optimizer states (unless ``trainer`` is None) and ``meta`` as json -- the json
        last: a checkpoint without it is incomplete and not resumable.  Returns the stem."""
        stem = self.stem(tag)
        save_params_atomic(model, stem + '.params')
        if trainer is not None:
            save_states_atomic(trainer, stem + '.states')
        atomic_write(lambda tmp: _write_json(tmp, meta), stem + '.json')
        return stem
