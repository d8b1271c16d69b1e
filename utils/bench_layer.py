"""What each step of the CPU speed layer is worth: the official structure, the speed layer with its pure
tails and with the fused kernel, timed in interleaved windows of one process (images/s, medians).

Usage: python -m utils.bench_layer --models A,B,... [--batch-size 128] [--windows 5] [--iters 3] [--json F]
                                   [--variants A,B] [--processes [--warmup 1]]
       python -m utils.bench_layer --markdown F.json      # the table of a record (docs/performance.md)

Training: forward + backward + SGD step, hybridized with static_alloc as the scripts do on the CPU
(`utils.train.hybridize_for_training`; the official variant without the speed layer), and, as open-aff
ran it, the official structure with a plain ``hybridize()`` (what static_alloc alone is worth). Inference:
`utils.train.hybridize_for_inference` (the official variant: static_alloc + static_shape, as the
official code). Every variant starts from the same weights; the inference outputs are compared with the
official network's. A measurement, not a test: run it on a quiet machine.

--processes: every window runs each variant in a child process of its own (alternating, as
utils.bench_env), for models whose variants do not fit in memory together (AFF-ResNeXt-38 at batch 128
needs more than 24 GiB for four); each child seeds MXNet the same way, so all start from the same
weights, and runs --warmup untimed steps before its timed ones.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import mxnet as mx
import numpy as np

from net import cpu_speed
from net.errors import AFFError
from utils.bench import (_outputs, environment, interleaved_windows, load_average, run_child, timed_windows,
                         train_step_fn)
from utils.bench_suite import _copy_params, _md, _rel_err, load_record
from utils.cli import positive_int, run_main
from utils.models import build, check_names, output_classes

__all__ = ['VARIANTS', 'SHORT', 'measure', 'measure_processes', 'main']

#: variant -> (speed layer applied, fused kernel asked for, static_alloc); 'official' is the reference
#: of the output comparison, 'open-aff hybridize()' the official scripts' plain hybridize (both phases)
VARIANTS = {'official': (False, False, True), 'open-aff hybridize()': (False, False, False),
            'speed layer, pure tails': (True, False, True), 'speed layer + fused kernel': (True, True, True)}
#: --variants / --child names of the variants
SHORT = {'official': 'official', 'open-aff': 'open-aff hybridize()', 'pure': 'speed layer, pure tails',
         'kernel': 'speed layer + fused kernel'}


#: the seed of every --processes child: the same initial weights in each
SEED = 7
#: untimed steps of every variant before the interleaved windows of one process
WARMUP = 2


def _copies(name, size, variants=VARIANTS):
    base, out, size = build(name, batch_size=1, size=size)
    made = {}
    for variant in variants:
        m = build(name, batch_size=1, size=size)[0]
        _copy_params(base, m)
        made[variant] = m
    return made, output_classes(out), size


def _prepare(model, variant, phase, x):
    speed, fused, static = VARIANTS[variant]
    if not static:
        model.hybridize()
        return 'official, plain hybridize()'
    if phase == 'train':
        note = cpu_speed.apply(model, mx.cpu(), training=True, fused=fused) if speed else 'official'
        model.hybridize(static_alloc=True)
        return note
    if not speed:
        model.hybridize(static_alloc=True, static_shape=True)
        return 'official, static_alloc + static_shape'
    note = cpu_speed.apply(model, mx.cpu(), training=False, fused=fused)
    try:
        model.optimize_for(x, backend='MKLDNN', clear=True, static_alloc=True, static_shape=True)
        return note + '; optimize_for MKLDNN'
    except mx.base.MXNetError:
        model.hybridize(static_alloc=True, static_shape=True)
        return note + '; optimize_for failed: static_alloc only'


def _record(name, phase, batch, size, rates, notes, diffs, how):
    # 4 significant digits: the large models run at 2-3 images/s
    return {'model': name, 'phase': phase, 'batch_size': batch, 'input_size': size,
            'images_per_s': {v: float('%.4g' % statistics.median(r)) for v, r in rates.items()},
            'windows_images_per_s': {v: [float('%.4g' % x) for x in r] for v, r in rates.items()},
            'notes': notes, 'max_rel_diff_vs_official': diffs, 'how': how}


def measure(name, batch, phase, windows, iters, size=None, variants=tuple(VARIANTS)):
    """``{variant: images/s median}`` plus the notes and, for inference, each variant's max
    relative output difference from the official network (when 'official' is among ``variants``)."""
    models, classes, size = _copies(name, size, variants)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    notes, steps = {}, {}
    for variant, m in models.items():
        notes[variant] = _prepare(m, variant, phase, x)
        steps[variant] = (train_step_fn(m, x, classes) if phase == 'train'
                          else (lambda m=m: _outputs(m(x))))
    diffs = {}
    if phase == 'inference' and 'official' in models:
        want = _outputs(models['official'](x))[0].asnumpy()
        for variant, m in models.items():
            diffs[variant] = _rel_err(_outputs(m(x))[0].asnumpy(), want)
    for fn in steps.values():            # warm-up: graph building, allocation
        for _ in range(WARMUP):
            fn()
    mx.nd.waitall()
    rates = {v: [batch * iters / t for t in ts] for v, ts in interleaved_windows(steps, windows, iters).items()}
    return _record(name, phase, batch, size, rates, notes, diffs,
                   {'processes': False, 'windows': windows, 'iters': iters, 'warmup': WARMUP})


def child(name, batch, phase, variant, warmup, iters, size, out):
    """One --processes window: build ``name`` from :data:`SEED`, prepare ``variant``, run ``warmup``
    untimed and ``iters`` timed steps; write images/s and the note (and, for inference, the output
    on the seeded input, as ``out``.npy) to ``out``."""
    mx.random.seed(SEED)
    np.random.seed(SEED)
    model, o, size = build(name, batch_size=1, size=size)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    note = _prepare(model, variant, phase, x)
    fn = train_step_fn(model, x, output_classes(o)) if phase == 'train' else (lambda: _outputs(model(x)))
    if phase == 'inference':
        np.save(out + '.npy', _outputs(model(x))[0].asnumpy())
    rate = batch * iters / timed_windows(fn, warmup, 1, iters)[0]
    with open(out, 'w', encoding='utf-8') as f:
        json.dump({'images_per_s': rate, 'note': note, 'size': size}, f)


def measure_processes(name, batch, phase, windows, iters, size=None, variants=tuple(VARIANTS),
                      warmup=1):
    """:func:`measure`, each window and variant in a child process of its own (alternating)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise AFFError('bench_layer: variants must be some of %s, got %s' % (', '.join(VARIANTS), variants))
    short_of = {v: k for k, v in SHORT.items()}
    rates = {v: [] for v in variants}
    notes, diffs, outputs = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in range(windows):
            for variant in rates:
                out = os.path.join(tmp, '%d-%s.json' % (w, short_of[variant]))
                cmd = ['utils.bench_layer', '--child', short_of[variant], '--models', name,
                       '--batch-size', str(batch), '--phases', phase, '--iters', str(iters),
                       '--warmup', str(warmup), '--out', out]
                if size:
                    cmd += ['--input-size', str(size)]
                run_child(cmd, 'the utils.bench_layer child (%s, %s, %s)' % (name, phase, variant))
                with open(out, encoding='utf-8') as f:
                    got = json.load(f)
                rates[variant].append(got['images_per_s'])
                notes[variant], size = got['note'], got['size']
                if phase == 'inference' and w == 0:
                    outputs[variant] = np.load(out + '.npy')
    if 'official' in outputs:
        diffs = {v: _rel_err(o, outputs['official']) for v, o in outputs.items()}
    return _record(name, phase, batch, size, rates, notes, diffs,
                   {'processes': True, 'windows': windows, 'iters': iters, 'warmup': warmup})


def markdown(records):
    """One table row per model and phase: every variant's images/s and the default's (speed layer +
    kernel) ratio over the official structure with static_alloc and over open-aff's plain hybridize()."""
    names = list(VARIANTS)
    rows = []

    def ratio(ips, over):
        best = ips.get('speed layer + fused kernel')
        return '%.2fx' % (best / ips[over]) if best and ips.get(over) else '—'
    for rec in records:
        ips = rec['images_per_s']
        rows.append([rec['model'], rec['phase'], str(rec['batch_size'])]
                    + ['%.1f' % ips[v] if v in ips else '—' for v in names]
                    + [ratio(ips, 'official'), ratio(ips, 'open-aff hybridize()')])
    return _md(['model', 'phase', 'batch'] + names + ['x official', 'x open-aff'], rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_layer', description=__doc__.split('\n')[0])
    p.add_argument('--models', help='comma-separated registry names')
    p.add_argument('--markdown', metavar='FILE', help='print the table of a --json record and exit')
    p.add_argument('--batch-size', type=positive_int, default=128, help='images per step (default 128)')
    p.add_argument('--input-size', type=positive_int, default=None, help='default: the model\'s own')
    p.add_argument('--phases', default='train,inference', help='train, inference or both')
    p.add_argument('--windows', type=positive_int, default=5, help='timed windows per variant (default 5)')
    p.add_argument('--iters', type=positive_int, default=3, help='steps per window (default 3)')
    p.add_argument('--json', metavar='FILE', help='also write the records and the environment')
    p.add_argument('--variants', default=','.join(SHORT),
                   help='comma-separated subset of %s (default: all)' % ', '.join(
                       '%s (%s)' % kv for kv in SHORT.items()))
    p.add_argument('--processes', action='store_true',
                   help='each window and variant in a child process of its own')
    p.add_argument('--warmup', type=positive_int, default=1,
                   help='--processes: untimed steps per child (default 1: a step of the large models takes a minute)')
    p.add_argument('--child', metavar='VARIANT', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    short = list(dict.fromkeys(v for v in args.variants.split(',') if v))
    if not short:
        p.error('--variants names none of: %s' % ', '.join(SHORT))
    unknown = [v for v in short + ([args.child] if args.child else []) if v not in SHORT]
    if unknown:
        p.error('unknown variant %s; choose from: %s' % (', '.join(map(repr, unknown)), ', '.join(SHORT)))
    variants = [SHORT[v] for v in short]
    if args.child:
        if not (args.models and args.out):
            p.error('--child needs --models and --out (it is the --processes child)')
        child(args.models, args.batch_size, args.phases, SHORT[args.child], args.warmup, args.iters,
              args.input_size, args.out)
        return 0
    if args.markdown:
        print(markdown(load_record(args.markdown, kind='layer')['records']))
        return 0
    if not args.models:
        p.error('--models is required (or --markdown FILE)')
    names = [n for n in args.models.split(',') if n]
    check_names(names)
    load_start = load_average()
    records = []
    how = measure_processes if args.processes else measure
    kw = {'warmup': args.warmup} if args.processes else {}
    for name in names:
        for phase in [x for x in args.phases.split(',') if x]:
            rec = how(name, args.batch_size, phase, args.windows, args.iters, args.input_size, variants, **kw)
            records.append(rec)
            print(json.dumps({k: rec[k] for k in ('model', 'phase', 'batch_size',
                                                  'images_per_s')}), flush=True)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'kind': 'layer', 'records': records, 'environment': environment(load_start)}, f,
                      indent=1)
    return 0


if __name__ == '__main__':
    run_main(main)
