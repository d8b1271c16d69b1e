"""Where a step's time goes: MXNet's per-operator totals for one model, baseline or fast path.

Usage: python -m utils.bench_profile --model NAME [--phase train|inference] [--baseline]
                                     [--batch-size B] [--input-size S] [--iters N] [--min-share PCT]
                                     [--onednn]

Runs --iters steps after warm-up under MXNet's profiler (aggregate statistics) and prints the operators
sorted by total time, with their share of the sum.  Bulk execution is switched off first, so that every
operator is timed on its own (the engine otherwise runs a whole static graph as one "operator"); this makes
the step itself somewhat slower than in `python -m utils.bench`.  --baseline: the official module structure
(the modules as built, plain hybridize); default: the CPU speed layer (`net.cpu_speed`) as `utils.bench` times it
(training with plain hybridize, as the suite's records; inference through `utils.train.hybridize_for_inference`).
--onednn: instead, oneDNN's own account of the same steps (the command re-run in a child process with
MKLDNN_VERBOSE=1): per step, each primitive kind's calls and execution ms, and every layout reorder by its
source and destination layout -- the copies MXNet makes where a oneDNN-laid-out tensor meets an operator
that oneDNN does not implement (the fused kernel, mean, dot, broadcast ops) and back.
The causes quoted in docs/performance.md come from this command.
"""
import argparse
import collections
import json
import os
import sys

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import positive_int, run_main

# before mxnet is imported: time every operator on its own
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_TRAIN', '0')
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_INFERENCE', '0')

import mxnet as mx  # noqa: E402

from net import cpu_speed  # noqa: E402
from net.errors import AFFError  # noqa: E402
from utils.bench import _outputs, run_child, train_step_fn  # noqa: E402
from utils.models import build, check_names, output_classes  # noqa: E402
from utils.train import hybridize_for_inference  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_profile', description=__doc__.split('\n')[0],
                                allow_abbrev=False,   # --onednn is dropped by name for the child
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.split('\n')[2:]))
    p.add_argument('--model', required=True, help='registry name')
    p.add_argument('--phase', choices=('train', 'inference'), default='train',
                   help='profile training steps or the inference path')
    p.add_argument('--baseline', action='store_true', help='the official structure instead of the fast path')
    p.add_argument('--batch-size', type=positive_int, default=128, help='images per step')
    p.add_argument('--input-size', type=positive_int, default=None,
                   help='image side (default: the model\'s input size)')
    p.add_argument('--iters', type=positive_int, default=5, help='profiled steps (after 3 warm-up steps)')
    p.add_argument('--min-share', type=float, default=0.5,
                   help='list operators with at least this %% of the total (default 0.5; 0 lists all)')
    p.add_argument('--onednn', action='store_true',
                   help="oneDNN's primitives and layout reorders per step instead (MKLDNN_VERBOSE=1)")
    return p.parse_args(argv)


def operator_totals(stats):
    """{operator: (calls, total ms)} from the profiler's JSON aggregate statistics."""
    table = json.loads(stats).get('Time', {}).get('operator', {})
    return {name: (int(v['Count']), float(v['Total'])) for name, v in table.items()}


def profile(args):
    check_names([args.model])
    block, out, size = build(args.model, batch_size=1, size=args.input_size)
    x = mx.nd.random.uniform(shape=(args.batch_size, 3, size, size))
    if args.baseline:
        block.hybridize()
        path = 'baseline: official structure, plain hybridize'
    elif args.phase == 'train':
        path = 'fast: %s, plain hybridize (as the benchmark records)' % cpu_speed.apply(
            block, mx.cpu(), training=True)
        block.hybridize()
    else:
        path = 'fast: ' + hybridize_for_inference(block, x)
    if args.phase == 'train':
        step = train_step_fn(block, x, output_classes(out))
    else:
        def step():
            _outputs(block(x))
    for _ in range(3):
        step()
    mx.nd.waitall()
    marks = os.environ.get(_MARKS) == '1'
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
    mx.profiler.set_state('run')
    if marks:
        print(_BEGIN, flush=True)
    for _ in range(args.iters):
        step()
    mx.nd.waitall()
    if marks:
        print(_END, flush=True)
    mx.profiler.set_state('stop')
    totals = operator_totals(mx.profiler.dumps(reset=True, format='json'))
    return path, size, totals


_MARKS, _BEGIN, _END = 'AFF_ONEDNN_MARKS', '@@ profiled steps begin', '@@ profiled steps end'


def onednn_totals(lines):
    """``{kind: (calls, ms)}`` of the MKLDNN_VERBOSE ``exec`` lines between the child's marks; a
    reorder's kind names its layouts, e.g. ``reorder aBcd16b -> abcd``."""
    totals = collections.defaultdict(lambda: [0, 0.0])
    inside = False
    for line in lines:
        if line.startswith(_BEGIN) or line.startswith(_END):
            inside = line.startswith(_BEGIN)
            continue
        fields = line.strip().split(',')
        if (not inside or len(fields) < 10 or fields[1] != 'exec'
                or fields[0] not in ('dnnl_verbose', 'onednn_verbose', 'mkldnn_verbose')):
            continue
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        kind = fields[3]
        if kind == 'reorder':
            layouts = [tok.split(':')[3] for tok in fields[6].split() if tok.count(':') >= 4]
            kind = 'reorder ' + ' -> '.join(layouts)
        totals[kind][0] += 1
        totals[kind][1] += ms
    return {k: tuple(v) for k, v in totals.items()}


def onednn_main(argv, args):
    """Re-run this command with MKLDNN_VERBOSE=1 and print oneDNN's per-step account."""
    check_names([args.model])
    child = [a for a in (sys.argv[1:] if argv is None else argv) if a != '--onednn']
    env = dict(os.environ, MKLDNN_VERBOSE='1', DNNL_VERBOSE='1', **{_MARKS: '1'})
    run = run_child(['utils.bench_profile'] + child, 'the MKLDNN_VERBOSE child', env=env)
    totals = onednn_totals(run.stdout.splitlines())
    if not totals:
        raise AFFError('no oneDNN primitive ran in the profiled steps (is this MXNet built with MKLDNN? '
                       'mx.runtime.Features() says)')
    head = [line for line in run.stdout.splitlines() if line.startswith(args.model + ', ')]
    print((head[0] if head else args.model) + '; oneDNN primitives (MKLDNN_VERBOSE), per step:')
    print('%-40s %9s %9s' % ('primitive', 'calls', 'ms'))
    for name, (calls, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print('%-40s %9.1f %9.2f' % (name[:40], calls / args.iters, ms / args.iters))
    reorders = [v for k, v in totals.items() if k.startswith('reorder ')]
    print('%-40s %9.1f %9.2f' % ('all layout reorders', sum(c for c, _ in reorders) / args.iters,
                                 sum(ms for _, ms in reorders) / args.iters))
    print('%-40s %9s %9.2f' % ('all oneDNN primitives', '', sum(ms for _, ms in totals.values()) / args.iters))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.onednn and os.environ.get(_MARKS) != '1':
        return onednn_main(argv, args)
    path, size, totals = profile(args)
    whole = sum(ms for _, ms in totals.values()) or 1.0
    print('%s, %s, batch %d, %dx%d, %d profiled steps, OMP_NUM_THREADS=%s; %s'
          % (args.model, args.phase, args.batch_size, size, size, args.iters,
             os.environ.get('OMP_NUM_THREADS'), path))
    print('%-34s %7s %11s %7s' % ('operator', 'calls', 'total ms', 'share'))
    for name, (calls, ms) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        if ms >= args.min_share / 100 * whole:
            print('%-34s %7d %11.1f %6.1f%%' % (name[:34], calls, ms, 100 * ms / whole))
    print('%-34s %7s %11.1f   (%.1f ms per step)' % ('sum of operators', '', whole, whole / args.iters))
    return 0


if __name__ == '__main__':
    run_main(main)
