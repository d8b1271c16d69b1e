"""Single operators of the CPU speed layer, timed on one tensor shape: the fused tail against an addition,
on MXNet's plain layout and on the layout oneDNN gives a convolution's output, and global average pooling
as MXNet's ``mean`` against ``net.cpu_speed.mean_hw`` (forward + backward).

Usage: python -m utils.bench_ops [--shape N,C,H,W] [--windows 15] [--iters 5] [--json F]

Every case is a hybridized block (static_alloc, as the scripts), timed in interleaved windows; the
figure is the median ms per call.  "oneDNN layout" inputs are outputs of a 1x1 convolution run once
before timing: an operator that oneDNN does not implement (the fused kernel, ``mean``, ``dot``) first
reorders such an input into the plain layout, inside its own call.  A measurement, not a test: run it on
a quiet machine (docs/performance.md quotes it).
"""
import argparse
import json
import statistics

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import positive_int, run_main

import mxnet as mx  # noqa: E402
from mxnet import gluon  # noqa: E402

from net import cpu_speed, kernels  # noqa: E402
from utils.bench import environment, interleaved_windows, load_average  # noqa: E402

__all__ = ['cases', 'measure', 'main']


class _Op(gluon.HybridBlock):
    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def hybrid_forward(self, F, *args):
        return self._fn(F, *args)


def _shape(text):
    try:
        dims = tuple(int(v) for v in text.split(','))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError('--shape takes N,C,H,W (four positive integers), got %r' % text)
    return dims


def _onednn_layout(x):
    """``x`` passed through a 1x1 identity convolution: same values, in the layout oneDNN chose."""
    c = x.shape[1]
    eye = mx.nd.eye(c).reshape((c, c, 1, 1))
    return mx.nd.Convolution(x, eye, kernel=(1, 1), num_filter=c, no_bias=True)


def cases(shape):
    """``{name: (block, inputs, backward)}``; the fused-tail cases only when the kernel is loaded."""
    n, c = shape[:2]
    plain = [mx.nd.random.uniform(-1, 1, shape=shape) for _ in range(3)]
    laid = [_onednn_layout(v) for v in plain]
    g = mx.nd.random.uniform(-1, 1, shape=(n, c, 1, 1))
    out = {'add, plain layout': (_Op(lambda F, a, b: a + b), plain[:2], False),
           'add, oneDNN layout': (_Op(lambda F, a, b: a + b), laid[:2], False)}
    if kernels.load():
        def tail():
            return _Op(lambda F, a, b, l, g: F.aff_tail(a, b, l, g, scale=2.0))
        out['aff_tail, plain layout'] = (tail(), plain + [g], False)
        out['aff_tail, oneDNN layout'] = (tail(), laid + [g], False)
    out['mean fwd+bwd, plain'] = (_Op(lambda F, x: F.mean(x, axis=(2, 3), keepdims=True)), plain[:1], True)
    out['mean_hw fwd+bwd, plain'] = (_Op(cpu_speed.mean_hw), plain[:1], True)
    out['mean fwd+bwd, oneDNN layout'] = (_Op(lambda F, x: F.mean(x, axis=(2, 3), keepdims=True)),
                                         laid[:1], True)
    out['mean_hw fwd+bwd, oneDNN layout'] = (_Op(cpu_speed.mean_hw), laid[:1], True)
    return out


def _step(block, inputs, backward):
    block.hybridize(static_alloc=True)
    if not backward:
        return lambda: block(*inputs)
    for v in inputs:
        v.attach_grad()

    def step():
        with mx.autograd.record():
            y = block(*inputs)
        y.backward()
    return step


def measure(shape, windows, iters):
    """``{case: median ms per call}`` and the raw windows."""
    steps = {name: _step(*case) for name, case in cases(shape).items()}
    for fn in steps.values():
        fn()
        fn()
    mx.nd.waitall()
    ms = {name: [t / iters * 1e3 for t in ts] for name, ts in interleaved_windows(steps, windows, iters).items()}
    return {'shape': list(shape), 'ms_per_call': {k: round(statistics.median(v), 3) for k, v in ms.items()},
            'windows_ms': {k: [round(x, 3) for x in v] for k, v in ms.items()}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_ops',
                                description='Single operators of the CPU speed layer on one tensor shape.',
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.split('\n')[3:]))
    p.add_argument('--shape', type=_shape, default=(128, 16, 32, 32), help='N,C,H,W (default 128,16,32,32)')
    p.add_argument('--windows', type=positive_int, default=15, help='interleaved windows (default 15)')
    p.add_argument('--iters', type=positive_int, default=5, help='calls per window (default 5)')
    p.add_argument('--json', default=None, help='write the record here')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = load_average()
    rec = measure(args.shape, args.windows, args.iters)
    rec['environment'] = environment(start)
    status = kernels.load()
    rec['kernel'] = status.reason
    print('shape %s; fused kernel: %s' % ('x'.join(map(str, args.shape)), status.reason))
    for name, v in rec['ms_per_call'].items():
        print('%-32s %8.3f ms' % (name, v))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rec, f, indent=1)
            f.write('\n')
    return 0


if __name__ == '__main__':
    run_main(main)
