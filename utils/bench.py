"""Training and inference throughput (images/s) of registry models on random data; the benchmark suite.

Usage: python -m utils.bench --model NAME [--batch-size B] [--input-size S] [--json FILE] [...]
       python -m utils.bench [--models A,B,...] [--quick] [--no-data] [--json FILE]   (the suite)
       python -m utils.bench --markdown FILE.json                                      (the tables of docs/performance.md)

The suite (no --model) measures, per model at its recipe's batch and input size: the BASELINE (the
official module structure, i.e. the modules of net/ as built: the official fusion formulas pass for
pass with broadcast_add for the (+) of Eq. 3, global average pooling through MXNet's Pooling operator,
grouped convs as plain Conv2D; plain `hybridize()` for training and inference) and the FAST path (the
CPU speed layer, `net.cpu_speed.apply`: fewer-pass fusion formulas, the (+) as `net.cpu_speed.add_hw`,
global average pooling as a mean and grouped convs of group width 4/8 with plain-layout copies in
training; training with plain hybridize, as the records in docs/bench/ were measured (the scripts now
add static_alloc, docs/pitfalls.md §1); inference through `utils.train.hybridize_for_inference`: the
fusion rewrites only, oneDNN `optimize_for` with conv+BN(+ReLU/+sum) folding and static_alloc;
intermediate columns without optimize_for / static_alloc), windows interleaved so that both see the
same load; each fusion's time overhead over its plain host next to its FLOPs overhead (utils.flops,
MACs); and data-pipeline images/s on one core (CIFAR standard augmentation, with AutoAugment; ImageNet
RecordIO decode + augmentation from a small .rec packed into a temporary directory).

Two phases, each timed as `--windows` windows of `--iters` iterations after `--warmup` untimed ones:

* train     — forward + backward + SGD `trainer.step` (autograd recording, training-mode BatchNorm);
* inference — forward only, autograd off.

With --model, the network is prepared as the scripts prepare it, `utils.train.hybridize_for_training`
(the CPU speed layer, static_alloc) for training and `utils.train.hybridize_for_inference` for
inference, unless --no-hybridize (then the official modules run imperatively). Every window starts and
ends with `mx.nd.waitall()`, so a window's time covers all the work queued in it. The reported figure is
the MEDIAN images/s over the windows; --json also writes the raw window times and the machine facts
(threads, MXNet version and features, CPU model; no host name). It is a measurement, not a test.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

from net.errors import AFFError
from utils.cli import positive_int, run_main
from utils.models import build, check_names, output_classes
from utils.train import hybridize_for_inference, hybridize_for_training

import mxnet as mx  # after utils, which sets the thread count
from mxnet import autograd, gluon


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[4:]))
    p.add_argument("--model", default=None,
                   help="one registry name: the single-model record (see `python -m utils.models --all`)")
    p.add_argument("--models", default=None,
                   help="suite: comma-separated registry names (default: the suite's list, see SUITE)")
    p.add_argument("--quick", action="store_true",
                   help="suite: tiny setting (2 small models, batch 2, 1 window each) -- for CI")
    p.add_argument("--no-data", dest="data", action="store_false", help="suite: skip the data pipelines")
    p.add_argument("--markdown", metavar="JSON", default=None,
                   help="print the Markdown tables of a suite JSON record and exit")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per iteration (default 32 for --model; each model's recipe batch in the suite)")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="input side length (default: the model's own, 32 for cifar* and 224 otherwise)")
    p.add_argument("--classes", type=positive_int, default=None, help="classes (default: the model's own)")
    p.add_argument("--warmup", type=positive_int, default=None,
                   help="untimed iterations per phase (default 3; suite 2)")
    p.add_argument("--windows", type=positive_int, default=None, help="timed windows per phase (default 5)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="iterations per window (default 5; suite 2)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the full record to FILE")
    p.add_argument("--no-hybridize", dest="hybridize", action="store_false",
                   help="run the official modules imperatively (default: as the scripts prepare "
                        "them, utils.train.hybridize_for_training / _for_inference)")
    return p.parse_args(argv)


def timed_windows(step, warmup, windows, iters):
    """Run `step` `warmup` times, then `windows` × `iters` times; the seconds of each window."""
    for _ in range(warmup):
        step()
    mx.nd.waitall()
    return interleaved_windows({'step': step}, windows, iters)['step']


def run_child(module_args, what, env=None):
    """Run ``python -m <module_args>`` from the package root (a benchmark's child process) and return
    its CompletedProcess; a failure is one AFFError line: the signal (a SIGKILL is usually the
    kernel's OOM killer) or the exit status with the child's last stderr line."""
    import signal
    import subprocess
    from utils.paths import PACKAGE_ROOT
    done = subprocess.run([sys.executable, '-m'] + list(module_args), env=env, capture_output=True,
                          text=True, cwd=PACKAGE_ROOT)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise AFFError('%s was killed by %s%s' % (what, name, ' (out of memory?)' if name == 'SIGKILL' else ''))
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise AFFError('%s failed (exit status %d): %s' % (what, done.returncode,
                                                           lines[-1].strip() if lines else 'no message'))
    return done


def interleaved_windows(steps, windows, iters, rotate=False):
    """``{name: [seconds of each window]}`` of ``steps`` (``{name: step}``, warmed up by the caller),
    their windows alternating so that all of them see the same load; ``rotate``: the order turns
    by one step each round."""
    names = list(steps)
    times = {name: [] for name in names}
    for w in range(windows):
        k = w % len(names) if rotate else 0
        for name in names[k:] + names[:k]:
            step = steps[name]
            mx.nd.waitall()
            start = time.perf_counter()
            for _ in range(iters):
                step()
            mx.nd.waitall()
            times[name].append(time.perf_counter() - start)
    return times


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def train_step_fn(block, x, classes):
    """A closure doing one SGD training step on `x` with random labels (one label array per output shape:
    (N,) for (N, C) outputs, (N, H, W) for (N, C, H, W) segmentation outputs)."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    trainer = gluon.Trainer(block.collect_params(), "sgd",
                            {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})
    labels = {}

    def label_for(out):
        shape = (out.shape[0],) + tuple(out.shape[2:])
        if shape not in labels:
            labels[shape] = mx.nd.random.randint(0, classes, shape=shape, ctx=x.context).astype("float32")
        return labels[shape]

    def step():
        with autograd.record():
            outs = _outputs(block(x))
            loss = mx.nd.add_n(*[loss_fn(o, label_for(o)).mean() for o in outs])
        loss.backward()
        trainer.step(x.shape[0])
    return step


def summarise(times, batch, iters):
    rates = [batch * iters / t for t in times]
    return {"images_per_s": statistics.median(rates), "min_images_per_s": min(rates),
            "max_images_per_s": max(rates), "window_seconds": times}


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_info():
    """(model name, the SIMD flags of SIMD_FLAGS it has) from /proc/cpuinfo."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", [f for f in SIMD_FLAGS if f in flags]


def machine():
    """Facts about the machine that matter for speed; nothing that identifies the host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    model, simd = cpu_info()
    return {"system": platform.system(), "kernel": platform.release(), "arch": platform.machine(),
            "python": platform.python_version(), "cpu_model": model, "cpu_simd": simd,
            "logical_cpus": os.cpu_count(), "usable_cores": cores, "mem_total_gib": mem_gib}


def peak_rss_gib():
    """This process's peak resident memory so far in GiB (Linux/macOS), else None."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)   # bytes on macOS, KiB on Linux


def load_average():
    """The 1-minute load average: other busy processes on a 2-core machine distort the timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run(args):
    load_start = load_average()
    ctx = mx.cpu()
    block, out, size = build(args.model, args.classes, ctx=ctx, batch_size=1, size=args.input_size)
    classes = args.classes or output_classes(out)
    train_path = hybridize_for_training(block, [ctx]) if args.hybridize else "imperative"
    x = mx.nd.random.uniform(shape=(args.batch_size, 3, size, size), ctx=ctx)

    train_times = timed_windows(train_step_fn(block, x, classes), args.warmup, args.windows, args.iters)
    train_rss = peak_rss_gib()
    note = hybridize_for_inference(block, x) if args.hybridize else "imperative"

    def infer():
        _outputs(block(x))
    infer_times = timed_windows(infer, args.warmup, args.windows, args.iters)

    rec = {
        "model": args.model, "classes": classes, "batch_size": args.batch_size, "input_size": size,
        "hybridize": args.hybridize, "warmup": args.warmup, "windows": args.windows, "iters": args.iters,
        "train": summarise(train_times, args.batch_size, args.iters),
        "inference": summarise(infer_times, args.batch_size, args.iters), "inference_path": note,
        "train_path": train_path,
        "peak_rss_gib_after_train": train_rss,
    }
    rec.update(environment(load_start))
    return rec


def environment(load_start):
    """Threads, MXNet build, machine, load and date: recorded with every measurement."""
    features = mx.runtime.Features()
    return {
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "KMP_", "MXNET_", "MALLOC_"))},
        "mxnet_version": mx.__version__,
        "mkldnn": features.is_enabled("MKLDNN"),
        "mxnet_features": sorted(name for name, f in features.items() if f.enabled),
        "machine": machine(),
        "load_average_1min": {"start": load_start, "end": load_average()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def format_record(rec):
    lines = [f"{rec['model']}: batch {rec['batch_size']}, input {rec['input_size']}, {rec['classes']} classes, "
             f"{'hybridized (static)' if rec['hybridize'] else 'imperative'}, threads {rec['threads']}, "
             f"mxnet {rec['mxnet_version']} (MKLDNN {'on' if rec['mkldnn'] else 'off'}), "
             f"{rec['machine']['cpu_model']}",
             f"median of {rec['windows']} windows x {rec['iters']} iters after {rec['warmup']} warm-up; "
             f"load average {rec['load_average_1min']['start']} -> {rec['load_average_1min']['end']} "
             f"on {rec['machine']['usable_cores']} cores",
             f"{'phase':<10} {'img/s':>9} {'min':>9} {'max':>9}"]
    for phase in ("train", "inference"):
        r = rec[phase]
        lines.append(f"{phase:<10} {r['images_per_s']:9.1f} {r['min_images_per_s']:9.1f} "
                     f"{r['max_images_per_s']:9.1f}")
    if rec.get("peak_rss_gib_after_train") is not None:
        lines.append(f"peak memory (RSS) after the training windows: {rec['peak_rss_gib_after_train']:.2f} GiB")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.markdown:
        from utils.bench_suite import load_record, markdown_tables
        print(markdown_tables(load_record(args.markdown)))
        return 0
    if args.model is None:
        from utils.bench_suite import run_suite
        rec = run_suite(args)
    else:
        if args.models or args.quick:
            raise AFFError("--model measures one model; --models/--quick select the suite: use one or the other")
        check_names([args.model])
        for key, default in (("batch_size", 32), ("warmup", 3), ("windows", 5), ("iters", 5)):
            if getattr(args, key) is None:
                setattr(args, key, default)
        rec = run(args)
        print(format_record(rec))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rec, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
