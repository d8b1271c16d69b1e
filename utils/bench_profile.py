"""Where a step's time goes: MXNet's per-operator totals for one model, baseline or fast path.

Usage: python -m utils.bench_profile --model NAME [--phase train|inference] [--baseline]
                                     [--batch-size B] [--input-size S] [--iters N] [--min-share PCT]

Runs --iters steps after warm-up under MXNet's profiler (aggregate statistics) and prints the operators
sorted by total time, with their share of the sum.  Bulk execution is switched off first, so that every
operator is timed on its own (the engine otherwise runs a whole static graph as one "operator"); this makes
the step itself somewhat slower than in `python -m utils.bench`.  --baseline: the official module structure
(the modules as built, plain hybridize); default: the CPU speed layer (`net.cpu_speed`) as `utils.bench` times it
(training with plain hybridize, as the suite's records; inference through `utils.train.hybridize_for_inference`).
The causes quoted in docs/performance.md come from this command.
"""
import argparse
import json
import os

import utils  # noqa: F401  (thread settings before mxnet)
from utils.cli import positive_int, run_main

# before mxnet is imported: time every operator on its own
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_TRAIN', '0')
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_INFERENCE', '0')

import mxnet as mx  # noqa: E402

from net import cpu_speed  # noqa: E402
from utils.bench import _outputs, train_step_fn  # noqa: E402
from utils.models import build, check_names, output_classes  # noqa: E402
from utils.train import hybridize_for_inference  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_profile', description=__doc__.split('\n')[0],
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
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
    mx.profiler.set_state('run')
    for _ in range(args.iters):
        step()
    mx.nd.waitall()
    mx.profiler.set_state('stop')
    totals = operator_totals(mx.profiler.dumps(reset=True, format='json'))
    return path, size, totals


def main(argv=None):
    args = parse_args(argv)
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
