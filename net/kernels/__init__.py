"""The fused AFF / MS-CAM tail as a C++ custom operator (optional; see README.md here).

* :func:`load` loads ``_build/libaff_tail.so`` once per process and returns a :class:`Status`:
  true when the operators ``aff_tail`` / ``mscam_tail`` are usable as ``F.aff_tail`` ...,
  else false with a one-line ``reason`` for the log (not built, stale build, wrong CPU, other
  MXNet, load error).  Never raises; importing this module loads nothing.
* :func:`select` / :func:`mscam` build the tail inside ``hybrid_forward`` (``F`` = mx.nd or
  mx.sym), fused or as the pure MXNet formula of :mod:`net.fusion`.
* :func:`may_fuse` is the guard the caller asks first: the operator ignores MXNet's
  ``grad_req='add'`` (lib_api passes no write/add request) and would overwrite a gradient it
  should accumulate into; refused -> the caller takes the pure path and logs the reason.
"""
import os
import platform
import threading

from ..errors import AFFError
from . import build as _build

__all__ = ['Status', 'load', 'check', 'may_fuse', 'select', 'mscam', 'OPS']

#: the operators the library registers
OPS = ('aff_tail', 'mscam_tail')
_LOCK = threading.Lock()
_LOADED = None          # the Status of the one load attempt of this process


class Status:
    """``bool(status)``: usable; ``reason``: why not (or how it was loaded); ``isa``: the loops
    chosen at load time ('avx2+fma' or 'generic'), None when not loaded."""

    def __init__(self, ok, reason, isa=None):
        self.ok, self.reason, self.isa = bool(ok), reason, isa

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return 'Status(%s, %r)' % (self.ok, self.reason)


def check(lib=None):
    """Why the library at ``lib`` (default: the built one) cannot be loaded by this process, as a
    false :class:`Status`; None when nothing stands in the way.  Loads nothing."""
    lib = lib or _build.LIB_PATH
    if platform.machine() not in ('x86_64', 'AMD64'):
        return Status(False, 'wrong CPU: the fused kernel is x86-64 only, this is %s'
                      % platform.machine())
    if not os.path.isfile(lib):
        return Status(False, 'not built: %s is missing (python -m net.kernels.build, or make '
                             'kernels)' % _build.show_path(lib))
    stamp = _build.read_stamp(lib)
    if stamp is None:
        return Status(False, 'not built: %s has no build stamp (rebuild: python -m '
                             'net.kernels.build --force)' % _build.show_path(lib))
    try:
        want = _build.expected_stamp()
    except _build.BuildError as e:
        return Status(False, 'load error: %s' % e)
    if stamp.get('machine') != want['machine']:
        return Status(False, 'wrong CPU: built for %s, this is %s (rebuild here)'
                      % (stamp.get('machine'), want['machine']))
    if stamp.get('mxnet') != want['mxnet']:
        return Status(False, 'built for mxnet %s, running %s (rebuild: python -m '
                             'net.kernels.build)' % (stamp.get('mxnet'), want['mxnet']))
    if stamp.get('sources') != want['sources']:
        return Status(False, 'stale build: the kernel sources changed since it was built '
                             '(python -m net.kernels.build)')
    return None


def _isa(lib):
    import ctypes
    try:
        fn = ctypes.CDLL(lib).aff_tail_isa
        fn.restype = ctypes.c_char_p
        return fn().decode()
    except (OSError, AttributeError):
        return None


def load(lib=None):
    """Load the library once per process; the :class:`Status` of that one attempt."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            _LOADED = _load(lib or _build.LIB_PATH)
        return _LOADED


def _load(lib):
    import mxnet as mx
    if all(hasattr(mx.nd, op) and hasattr(mx.sym, op) for op in OPS):
        return Status(True, 'already loaded', _isa(lib) if os.path.isfile(lib) else None)
    refused = check(lib)
    if refused is not None:
        return refused
    try:
        mx.library.load(lib, verbose=False)
    except Exception as e:  # noqa: BLE001  (MXNetError, OSError: reported, never raised)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return Status(False, 'load error: %s' % first[:200])
    if not all(hasattr(mx.nd, op) for op in OPS):
        return Status(False, 'load error: the library registered no %s' % ' / '.join(OPS))
    isa = _isa(lib)
    return Status(True, 'loaded %s (%s loops)' % (_build.show_path(lib), isa), isa)


def _grad_req_of(item):
    """(label, grad_req or None when unknown) of one guard argument."""
    from mxnet import nd
    from mxnet.gluon import Parameter
    if isinstance(item, str):
        return 'grad_req %r' % item, item
    if isinstance(item, Parameter):
        return 'parameter %s' % item.name, item.grad_req
    if isinstance(item, nd.NDArray):
        # MXNet 1.9.1 has no getter for an NDArray's grad_req: a gradient buffer may be 'add'
        return 'an NDArray with a gradient buffer', (None if item.grad is not None else 'null')
    raise TypeError('may_fuse takes Parameters, dicts of them, NDArrays or grad_req strings, '
                    'not %s' % type(item).__name__)


def may_fuse(*inputs):
    """Whether the fused operator may replace the pure formula, as a :class:`Status`.

    ``inputs``: what reaches the operator *directly* -- Parameters (or dicts of them, e.g.
    ``block.collect_params()``), NDArrays, or grad_req strings.  Refused when the library is not
    loaded, when any of them has ``grad_req='add'`` (or is an NDArray with a gradient buffer,
    whose grad_req MXNet 1.9.1 cannot tell), or when ``MXNET_EXEC_ENABLE_ADDTO`` asks MXNet for
    add requests: the operator always writes its gradients.  Intermediate results (the
    L, G branch outputs, X + Y ...) are never 'add' in a Gluon graph and need not be passed.
    """
    items = []
    for item in inputs:
        items.extend(item.values() if hasattr(item, 'values') else [item])
    reqs = [_grad_req_of(item) for item in items]
    status = load()
    if not status:
        return Status(False, 'fused kernel unavailable: %s' % status.reason)
    if os.environ.get('MXNET_EXEC_ENABLE_ADDTO', '0').strip() not in ('', '0'):
        return Status(False, 'MXNET_EXEC_ENABLE_ADDTO is set: MXNet may hand the operator an add '
                             'request, which lib_api ops cannot honour')
    for label, req in reqs:
        if req not in ('write', 'null'):
            return Status(False, "%s has grad_req 'add'%s: the fused operator would overwrite "
                                 "the gradient it must add to" % (label, '' if req else ' (maybe)'))
    return Status(True, 'fused (%s loops)' % status.isa, status.isa)


def _require():
    status = load()
    if not status:
        raise AFFError('the fused AFF kernel is not loaded: %s' % status.reason)


def select(F, x, y, loc, glo, scale=1, fused=True):
    """``scale * (W*y + (1-W)*x)`` with ``W = sigmoid(loc (+) glo)`` -- the tail of AFF
    (scale 2), of both iAFF stages (scale 1) and of the other ``_select`` modules of
    :mod:`net.fusion`, in its convention (W multiplies Y).  ``loc``: N x C x H x W (the local
    context L), ``glo``: N x C x 1 x 1 (the global context g).  ``fused=False``: the speed layer's
    pure MXNet formula (``s*(x + W*(y-x))`` with ``W = sigmoid(add_hw(loc, glo))``)."""
    if not fused:
        from ..cpu_speed import add_hw, select as pure_select
        from ..layers import sigmoid
        return pure_select(F, x, y, sigmoid(F, add_hw(F, loc, glo)), scale, full=True)
    _require()
    return F.aff_tail(y, x, loc, glo, scale=float(scale))


def mscam(F, x, loc, glo, fused=True):
    """MS-CAM's tail, Eq. 3: ``x * sigmoid(loc (+) glo)``; ``fused=False``: the pure formula."""
    if not fused:
        from ..cpu_speed import add_hw
        from ..layers import sigmoid
        return x * sigmoid(F, add_hw(F, loc, glo))
    _require()
    return F.mscam_tail(x, loc, glo)
