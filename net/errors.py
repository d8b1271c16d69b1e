"""User-facing errors: each message is one line that names the problem and the fix."""


class AFFError(Exception):
    """Base class of every error a user can cause (bad name, missing file, wrong checkpoint)."""


class UnknownNameError(AFFError, ValueError):
    """An unknown model or fusion name; the message lists the valid ones."""


class CheckpointError(AFFError):
    """A checkpoint that is missing, corrupt, or does not fit the network."""


def mxnet_reason(err):
    """The last non-empty line of an MXNet (or other) exception, without MXNet's own prefix: the
    part of its multi-line message that says what went wrong."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__).replace('MXNetError: ', '')


def unknown_name(kind, name, valid, listing, shown=()):
    """An :class:`UnknownNameError` for ``name``: the closest few of ``valid``, then ``shown``
    (names worth seeing anyway) and where the whole list is (``listing``) -- one short line."""
    import difflib
    lowered = {str(v).lower(): v for v in valid}
    close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), list(lowered), 5, 0.5)]
    parts = ['unknown %s %r' % (kind, name)]
    if close:
        parts.append('closest: %s' % ', '.join(close))
    if shown:
        parts.append(', '.join(shown))
    parts.append('all %d: %s' % (len(valid), listing))
    return UnknownNameError('; '.join(parts))


def import_extra(module, distribution, extra, purpose):
    """``importlib.import_module(module)`` of an optional dependency; when it is not installed, an
    :class:`AFFError` naming the setup.py extra that installs it (docs/install.md)."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split('.')[0]
        if e.name not in (top, module):
            raise
        raise AFFError("%s needs %s, which is not installed: pip install 'openaff-gluon[%s]' (or "
                       "pip install %s; make venv installs it)" % (purpose, distribution, extra,
                                                                 distribution)) from None
