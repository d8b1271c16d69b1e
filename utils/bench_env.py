"""Allocator and MXNet environment switches, measured: ``utils.bench_layer`` in child processes that
alternate between settings (round 1: every setting, round 2: every setting, ...), so that a slow phase of
the machine falls on all of them alike.

Usage: python -m utils.bench_env --model cifar_aff_resnet20_b1 [--batch-size 128] [--rounds 2]
       [--phases train] [--json FILE]

Each setting's images/s are the median over its rounds of ``utils.bench_layer``'s medians, per variant.
The settings (docs/performance.md "Allocator and engine switches") are environment variables only: none
of them is set by the scripts -- this measures whether recommending one is worth it.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

from utils.bench import environment, load_average, run_child
from utils.cli import positive_int, run_main
from utils.models import check_names

#: setting -> environment variables added to the child's environment
SETTINGS = {
    'default': {},
    # glibc: keep freed blocks in the heap instead of returning them with munmap/trim (MXNet 1.9.1's
    # CPU storage has no pool, so every step maps and faults in its buffers again)
    'glibc no mmap/trim': {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': '17179869184',
                           'MALLOC_TOP_PAD_': '268435456'},
    'MXNET_EXEC_BULK_EXEC_TRAIN=0': {'MXNET_EXEC_BULK_EXEC_TRAIN': '0'},
    'MXNET_ENGINE_TYPE=ThreadedEngine': {'MXNET_ENGINE_TYPE': 'ThreadedEngine'},
}


def run_once(model, batch, phases, env_add, windows, iters):
    """One child ``utils.bench_layer`` run: its records and its environment record."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'rec.json')
        run_child(['utils.bench_layer', '--models', model, '--batch-size', str(batch), '--phases', phases,
                   '--windows', str(windows), '--iters', str(iters), '--json', out],
                  'utils.bench_layer under %s' % (env_add or 'the default environment'),
                  env=dict(os.environ, **env_add))
        with open(out, encoding='utf-8') as f:
            return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.bench_env', description=__doc__.split('\n')[0])
    p.add_argument('--model', default='cifar_aff_resnet20_b1', help='a registry name')
    p.add_argument('--batch-size', type=positive_int, default=128, help='images per step')
    p.add_argument('--phases', default='train', help='train, inference or both (comma-separated)')
    p.add_argument('--rounds', type=positive_int, default=2, help='alternating rounds of every setting')
    p.add_argument('--windows', type=positive_int, default=3, help='timed windows per variant and run')
    p.add_argument('--iters', type=positive_int, default=3, help='steps per window')
    p.add_argument('--json', metavar='FILE', help='also write the results and the environment')
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    check_names([args.model])
    load_start = load_average()
    runs = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting, env_add in SETTINGS.items():
            runs[setting].append(run_once(args.model, args.batch_size, args.phases, env_add,
                                          args.windows, args.iters))
            print('round %d, %s: %s' % (r + 1, setting, json.dumps(
                {rec['phase']: rec['images_per_s'] for rec in runs[setting][-1]['records']})), flush=True)
    summary = {}
    for setting, rounds in runs.items():
        summary[setting] = {}
        for k, rec in enumerate(rounds[0]['records']):
            summary[setting][rec['phase']] = {
                v: round(statistics.median(rd['records'][k]['images_per_s'][v] for rd in rounds), 1)
                for v in rec['images_per_s']}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'model': args.model, 'batch_size': args.batch_size, 'settings': SETTINGS,
                       'median_images_per_s': summary, 'runs': runs,
                       'environment': environment(load_start)}, f, indent=1)
    return 0


if __name__ == '__main__':
    run_main(main)
