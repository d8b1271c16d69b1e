"""What each step of the CPU speed layer is worth: the official structure, the speed layer with its pure
tails and with the fused kernel, timed in interleaved windows of one process (images/s, medians).

Usage: python -m utils.bench_layer --models A,B,... [--batch-size 128] [--windows 5] [--iters 3] [--json F]
       python -m utils.bench_layer --markdown F.json      # the table of a record (docs/performance.md)

Training: forward + backward + SGD step, hybridized with static_alloc as the scripts do on the CPU
(`utils.train.hybridize_for_training`; the official variant without the speed layer), and, as open-aff
ran it, the official structure with a plain ``hybridize()`` (what static_alloc alone is worth). Inference:
`utils.train.hybridize_for_inference` (the official variant: static_alloc + static_shape, as the
official code). Every variant starts from the same weights; the inference outputs are compared with the
official network's. A measurement, not a test: run it on a quiet machine.
"""
import argparse
import json
import statistics
import sys
import time

import mxnet as mx

from net import cpu_speed
from utils.bench import _outputs, environment, load_average, train_step_fn
from utils.bench_suite import _copy_params, _md, load_record
from utils.cli import run_main
from utils.models import build, check_names, output_classes

__all__ = ['VARIANTS', 'measure', 'main']

#: variant -> (speed layer applied, fused kernel asked for, static_alloc); 'official' is the reference
#: of the output comparison, 'open-aff hybridize()' the official scripts' plain hybridize (both phases)
VARIANTS = {'official': (False, False, True), 'open-aff hybridize()': (False, False, False),
            'speed layer, pure tails': (True, False, True), 'speed layer + fused kernel': (True, True, True)}


def _copies(name, size):
    base, out, size = build(name, batch_size=1, size=size)
    made = {}
    for variant in VARIANTS:
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


def measure(name, batch, phase, windows, iters, size=None):
    """``{variant: images/s median}`` plus the notes and, for inference, each variant's max
    relative output difference from the official network."""
    models, classes, size = _copies(name, size)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size))
    notes, steps = {}, {}
    for variant, m in models.items():
        notes[variant] = _prepare(m, variant, phase, x)
        steps[variant] = (train_step_fn(m, x, classes) if phase == 'train'
                          else (lambda m=m: _outputs(m(x))))
    diffs = {}
    if phase == 'inference':
        want = _outputs(models['official'](x))[0].asnumpy()
        for variant, m in models.items():
            got = _outputs(m(x))[0].asnumpy()
            diffs[variant] = float(abs(got - want).max() / max(abs(want).max(), 1e-30))
    for fn in steps.values():            # warm-up: graph building, allocation
        fn()
        fn()
    mx.nd.waitall()
    rates = {v: [] for v in steps}
    for _ in range(windows):
        for variant, fn in steps.items():
            mx.nd.waitall()
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            mx.nd.waitall()
            rates[variant].append(batch * iters / (time.perf_counter() - t))
    return {'model': name, 'phase': phase, 'batch_size': batch, 'input_size': size,
            'images_per_s': {v: round(statistics.median(r), 1) for v, r in rates.items()},
            'windows_images_per_s': {v: [round(x, 1) for x in r] for v, r in rates.items()},
            'notes': notes, 'max_rel_diff_vs_official': diffs}


def markdown(records):
    """One table row per model and phase: every variant's images/s and the default's (speed layer +
    kernel) ratio over the official structure with static_alloc and over open-aff's plain hybridize()."""
    names = list(VARIANTS)
    rows = []
    for rec in records:
        ips = rec['images_per_s']
        best = ips['speed layer + fused kernel']
        rows.append([rec['model'], rec['phase'], str(rec['batch_size'])] + ['%.1f' % ips[v] for v in names]
                    + ['%.2fx' % (best / ips['official']), '%.2fx' % (best / ips['open-aff hybridize()'])])
    return _md(['model', 'phase', 'batch'] + names + ['x official', 'x open-aff'], rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_layer', description=__doc__.split('\n')[0])
    p.add_argument('--models', help='comma-separated registry names')
    p.add_argument('--markdown', metavar='FILE', help='print the table of a --json record and exit')
    p.add_argument('--batch-size', type=int, default=128, help='images per step (default 128)')
    p.add_argument('--input-size', type=int, default=None, help='default: the model\'s own')
    p.add_argument('--phases', default='train,inference', help='train, inference or both')
    p.add_argument('--windows', type=int, default=5, help='timed windows per variant (default 5)')
    p.add_argument('--iters', type=int, default=3, help='steps per window (default 3)')
    p.add_argument('--json', metavar='FILE', help='also write the records and the environment')
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.markdown:
        print(markdown(load_record(args.markdown, kind='layer')['records']))
        return 0
    if not args.models:
        p.error('--models is required (or --markdown FILE)')
    names = [n for n in args.models.split(',') if n]
    check_names(names)
    load_start = load_average()
    records = []
    for name in names:
        for phase in [x for x in args.phases.split(',') if x]:
            rec = measure(name, args.batch_size, phase, args.windows, args.iters, args.input_size)
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
