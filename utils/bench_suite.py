"""The benchmark suite behind `python -m utils.bench` (no --model): baseline vs fast, fusion overheads,
data pipelines, and the Markdown tables generated from its JSON record.  See utils/bench.py for the CLI.

Every figure is a MEDIAN over timed windows after warm-up; the baseline and fast variants of a model are
timed in alternating windows of one process, with the same thread setting, so that load from other
processes hits both alike.  The record carries the machine, OMP_NUM_THREADS, the MXNet version and build
features and the load average; it is a measurement, not a test.
"""
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import net
from net.errors import AFFError
from net import cpu_speed
from utils.bench import _outputs, environment, interleaved_windows, load_average, timed_windows, train_step_fn
from utils.models import build, check_names, output_classes
from utils.train import hybridize_for_inference

import mxnet as mx  # after net, which sets the thread count

SCHEMA = 1

#: (registry name, recipe batch per device, plain host for the fusion-overhead column or None).
#: CIFAR: the `paper`/`released` recipes' 128; ImageNet: the recipes' 128 per device at 224.
SUITE = [
    ("cifar_add_resnet20_b1", 128, None),
    ("cifar_aff_resnet20_b1", 128, "cifar_add_resnet20_b1"),
    ("cifar_iaff_resnet20_b1", 128, "cifar_add_resnet20_b1"),
    ("cifar_aff_resnet32", 128, None),
    ("cifar_aff_resnext38_32x4d", 128, None),
    ("cifar_aff_resnext47_32x4d", 128, None),
    ("resnet50", 128, None),
    ("aff_resnet50", 128, "resnet50"),
    ("iaff_resnet50", 128, "resnet50"),
    ("aff_resnext50_32x4d", 128, None),
    ("iaff_resnext50_32x4d", 128, None),
]
#: inference windows run this many times --iters: a forward pass is ~3-5x quicker than a training step,
#: and windows of a tenth of a second gave medians that moved by 30 % between runs
INFER_ITERS = 4
QUICK = [("cifar_add_resnet20_b1", 2, None), ("cifar_aff_resnet20_b1", 2, "cifar_add_resnet20_b1")]
#: the plain host of a fused model, for --models lists
HOSTS = {name: host for name, _, host in SUITE if host}
HOSTS.update({"cifar_aff_resnet32": None})


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _copy_params(src, dst):
    """Give `dst` (same architecture, other prefix) the parameter values of `src`, by position."""
    a, b = list(src.collect_params().values()), list(dst.collect_params().values())
    if [p.shape for p in a] != [p.shape for p in b]:
        raise AFFError("internal: the two copies of a model differ in parameter shapes")
    for p, q in zip(a, b):
        q.set_data(p.data())


def _interleaved(steps, warmup, windows, iters):
    """`steps`: {label: fn}.  Warm each up, then time `windows` rounds; in each round every label gets one
    window of `iters` calls, the order rotating per round.  Returns {label: [seconds per window]}."""
    for step in steps.values():
        timed_windows(step, warmup, 0, 0)
    return interleaved_windows(steps, windows, iters, rotate=True)


def _rate(times, batch, iters):
    rates = [batch * iters / t for t in times]
    return {"images_per_s": statistics.median(rates), "min_images_per_s": min(rates),
            "max_images_per_s": max(rates), "window_seconds": times}


def _rel_err(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _onnxruntime_step(name, base, x, want):
    """``(step, relative error vs want, None)`` for ONNX Runtime running the export of ``base``'s
    weights (utils.export: the official module structure; intra-op threads = MXNet's); ``want``:
    ``base``'s output on ``x``.  ``(None, None, reason)`` when the model does not export."""
    from utils import export as E
    model = build(name, ctx=x.context, batch_size=1, size=x.shape[-1])[0]
    _copy_params(base, model)
    with tempfile.TemporaryDirectory(prefix="aff-bench-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        try:
            E.export(model, x.shape, path, name)
            sess = E.session(path)
        except AFFError as e:
            return None, None, str(e)
    feed = {sess.get_inputs()[0].name: x.asnumpy()}
    err = _rel_err(sess.run(None, feed)[0], want)
    return (lambda: sess.run(None, feed)), err, None


def measure_model(name, batch, size, warmup, windows, iters):
    """Baseline vs fast training step and inference of one model; see the module docstring."""
    ctx = mx.cpu()
    base, out, size = build(name, ctx=ctx, batch_size=1, size=size)
    classes = output_classes(out)
    base.hybridize()            # the official module structure
    fast = build(name, ctx=ctx, batch_size=1, size=size)[0]
    _copy_params(base, fast)
    cpu_speed.apply(fast, ctx, training=True)
    n_fusions = cpu_speed.describe(fast).get('fusion', 0)
    fast.hybridize()  # plain, as the records in docs/bench/ were measured (the scripts now add static_alloc)
    x = mx.nd.random.uniform(shape=(batch, 3, size, size), ctx=ctx)

    train = _interleaved({"baseline": train_step_fn(base, x, classes), "fast": train_step_fn(fast, x, classes)},
                         warmup, windows, iters)

    # inference: three copies with the baseline's (trained) values; the intermediate columns take the
    # fast fusions and the Pooling operator for global average pooling, as the inference path does
    static = build(name, ctx=ctx, batch_size=1, size=size)[0]
    onednn = build(name, ctx=ctx, batch_size=1, size=size)[0]
    for copy in (fast, static, onednn):
        _copy_params(base, copy)
    for copy in (fast, static):
        cpu_speed.apply(copy, ctx, training=False)
    fast.hybridize()
    static.hybridize(static_alloc=True, static_shape=True)
    note = hybridize_for_inference(onednn, x)
    onednn_error = note if "failed" in note else None  # then "fast" = static_alloc only
    want = _outputs(base(x))[0].asnumpy()
    errors = {"fast": _rel_err(_outputs(fast(x))[0].asnumpy(), want),
              "static": _rel_err(_outputs(static(x))[0].asnumpy(), want),
              "onednn": _rel_err(_outputs(onednn(x))[0].asnumpy(), want)}

    def infer(block):
        return lambda: _outputs(block(x))
    steps = {"baseline": infer(base), "fast_hybrid": infer(fast), "static": infer(static), "fast": infer(onednn)}
    ort_step, errors["onnxruntime"], ort_error = _onnxruntime_step(name, base, x, want)
    if ort_step is not None:  # in the same alternating windows as MXNet's paths
        steps["onnxruntime"] = ort_step
    else:
        del errors["onnxruntime"]
    infer_t = _interleaved(steps, warmup, windows, iters * INFER_ITERS)
    rec = {"model": name, "batch_size": batch, "input_size": size, "classes": classes, "fusions": n_fusions,
           "train": {k: _rate(v, batch, iters) for k, v in train.items()},
           "inference": {k: _rate(v, batch, iters * INFER_ITERS) for k, v in infer_t.items()},
           "inference_iters": iters * INFER_ITERS,
           "inference_rel_err_vs_baseline": errors,
           "inference_path": note, "onednn_error": onednn_error, "onnxruntime_error": ort_error}
    for phase in ("train", "inference"):
        r = rec[phase]
        r["speedup"] = r["fast"]["images_per_s"] / r["baseline"]["images_per_s"]
    return rec


# ----------------------------------------------------------------------------------------- data
def _drain(make_iter, batch, windows, n_batches):
    """images/s of `n_batches` batches per window (median over windows; one warm-up batch)."""
    it = make_iter()
    next(it)
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(n_batches):
            data = next(it)
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
    return _rate(times, batch, n_batches)


def _forever_loader(loader):
    while True:
        for item in loader:
            yield item


def _cifar_pipeline(auto_augment, n, batch, windows, n_batches):
    from utils.data import transforms as T
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
    aug = None
    if auto_augment:
        from utils.augment import AutoAugment
        aug = AutoAugment("cifar10", seed=0)
    ds = T.ArrayImageDataset(images, rng.randint(0, 100, size=n))
    tf = T.train_transform(T.CIFAR_MEAN, T.CIFAR_STD, auto_augment=aug)
    return _drain(lambda: _forever_loader(T.make_loader(ds, batch, train=True, num_workers=0, transform=tf)),
                  batch, windows, n_batches)


def _imagenet_pipeline(n, batch, windows, n_batches):
    """ImageRecordIter (the recipes' non-AutoAugment path) with one decoding thread over `n` JPEGs of
    500x375 (ImageNet's typical size), smooth content so that they compress like photographs."""
    from utils.data.imagenet import rec_iters, write_tiny_rec
    rng = np.random.RandomState(0)
    small = rng.randint(0, 256, size=(n, 24, 32, 3)).astype(np.uint8)
    images = [mx.image.imresize(mx.nd.array(im, dtype=np.uint8), 500, 375).asnumpy() for im in small]
    with tempfile.TemporaryDirectory() as tmp:
        rec, idx = write_tiny_rec(os.path.join(tmp, "bench"), images, rng.randint(0, 1000, size=n),
                                  img_fmt=".jpg", quality=90)
        size = os.path.getsize(rec) / n
        train, _, _, _ = rec_iters(rec, idx, rec, idx, batch, input_size=224, num_workers=1)

        def batches():
            while True:
                train.reset()
                for b in train:
                    yield b.data
        r = _drain(batches, batch, windows, n_batches)
    r["mean_jpeg_kib"] = round(size / 1024, 1)
    return r


def measure_data(quick, windows):
    n, batch, nb = (16, 4, 2) if quick else (1024, 128, 4)
    rec = {"workers": 0, "threads_note": "one process / one decoding thread: images/s per core"}
    _log("data: cifar standard")
    rec["cifar_standard"] = _cifar_pipeline(False, n, batch, windows, nb)
    _log("data: cifar autoaugment")
    rec["cifar_autoaugment"] = _cifar_pipeline(True, n, batch, windows, nb)
    _log("data: imagenet recordio")
    rec["imagenet_recordio"] = _imagenet_pipeline(8 if quick else 64, 4 if quick else 32, windows,
                                                  2 if quick else 4)
    return rec


# ----------------------------------------------------------------------------------------- suite
def _flops_overhead(fused, plain, size):
    from utils.flops import count
    a, b = count(fused, input_size=size), count(plain, input_size=size)
    return {"macs": a.total / b.total - 1}


def run_suite(args):
    load_start = load_average()
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        check_names(names)
        table = {n: (b, h) for n, b, h in SUITE}
        entries = [(n, table.get(n, (128 if n.startswith("cifar") else 32, None))[0], HOSTS.get(n)) for n in names]
    else:
        entries = QUICK if args.quick else SUITE
    warmup = args.warmup or (1 if args.quick else 2)
    windows = args.windows or (1 if args.quick else 5)
    iters = args.iters or (1 if args.quick else 2)
    models = []
    for name, batch, _ in entries:
        batch = args.batch_size or batch
        _log(f"model {name}: batch {batch}")
        m = measure_model(name, batch, args.input_size, warmup, windows, iters)
        models.append(m)
        _log(f"  train {m['train']['baseline']['images_per_s']:.1f} -> {m['train']['fast']['images_per_s']:.1f}, "
             f"inference {m['inference']['baseline']['images_per_s']:.1f} -> "
             f"{m['inference']['fast']['images_per_s']:.1f} img/s")
    by_name = {m["model"]: m for m in models}
    overheads = []
    for name, _, host in entries:
        if host and host in by_name:
            m, h = by_name[name], by_name[host]
            if (m["batch_size"], m["input_size"]) != (h["batch_size"], h["input_size"]):
                continue
            row = {"model": name, "host": host,
                   "flops": _flops_overhead(name, host, m["input_size"])}
            for phase in ("train", "inference"):
                row[phase] = {v: h[phase][v]["images_per_s"] / m[phase][v]["images_per_s"] - 1
                              for v in ("baseline", "fast")}
                row[phase]["ratio_to_flops"] = row[phase]["fast"] / row["flops"]["macs"]
            overheads.append(row)
    rec = {
        "schema": SCHEMA, "kind": "suite", "quick": bool(args.quick),
        "warmup": warmup, "windows": windows, "iters": iters,
        "models": models, "fusion_overhead": overheads,
        "data": measure_data(args.quick, windows) if args.data else None,
    }
    rec.update(environment(load_start))
    print(markdown_tables(rec))
    return rec


# ----------------------------------------------------------------------------------------- tables
#: record kind -> the command that writes it (named when another file is given)
RECORD_WRITERS = {"suite": "python -m utils.bench --json FILE` without --model",
                  "layer": "python -m utils.bench_layer --models ... --json FILE`"}


def load_record(path, kind="suite"):
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError) as e:
        raise AFFError(f"cannot read benchmark record {path}: {e}") from None
    if not isinstance(rec, dict) or rec.get("kind") != kind:
        raise AFFError(f"{path} is not a benchmark {kind} record (run `{RECORD_WRITERS[kind]})")
    return rec


def _md(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _path_mark(r):
    return " ‡" if r.get("onednn_error") else ""


def markdown_tables(rec):
    """The docs/performance.md tables of a suite record (a dict as written by --json)."""
    m = rec["machine"]
    out = [f"{m['cpu_model']}, {m['usable_cores']} usable cores, OMP_NUM_THREADS={rec['threads']}, "
           f"MXNet {rec['mxnet_version']} (MKLDNN {'on' if rec['mkldnn'] else 'off'}); medians of "
           f"{rec['windows']} interleaved windows x {rec['iters']} iterations"
           + (f" (inference {rec['models'][0]['inference_iters']})" if rec["models"] and
              "inference_iters" in rec["models"][0] else "")
           + f" after {rec['warmup']} warm-up; "
           f"load average {rec['load_average_1min']['start']} -> {rec['load_average_1min']['end']}; {rec['date']}",
           ""]
    rows = []
    for r in rec["models"]:
        t, i = r["train"], r["inference"]
        rows.append([r["model"], str(r["batch_size"]), str(r["input_size"]),
                     f"{t['baseline']['images_per_s']:.1f}", f"{t['fast']['images_per_s']:.1f}",
                     f"{t['speedup']:.2f}x",
                     f"{i['baseline']['images_per_s']:.1f}", f"{i['fast_hybrid']['images_per_s']:.1f}",
                     f"{i['static']['images_per_s']:.1f}",
                     f"{i['fast']['images_per_s']:.1f}" + _path_mark(r),
                     f"{i['speedup']:.2f}x",
                     f"{i['onnxruntime']['images_per_s']:.1f}" if "onnxruntime" in i else "—",
                     f"{max(r['inference_rel_err_vs_baseline'].values()):.1e}"])
    out.append(_md(["model", "batch", "input", "train base", "train fast", "train x", "infer base",
                    "infer fast fusions", "+static_alloc", "+oneDNN (fast)", "infer x", "ONNX Runtime",
                    "max rel err"], rows))
    if any("onnxruntime" not in r["inference"] for r in rec["models"]):
        out += ["", "— no ONNX Runtime figure: " + "; ".join(
            f"{r['model']}: {r.get('onnxruntime_error') or 'record older than the column'}"
            for r in rec["models"] if "onnxruntime" not in r["inference"])]
    if any(_path_mark(r) for r in rec["models"]):
        out += ["", "‡ optimize_for failed (MXNet 1.9.1's conv+sum bug, docs/pitfalls.md §5): the inference path "
                "keeps static_alloc only, so the column repeats the static_alloc path."]
    if rec["fusion_overhead"]:
        out.append("")
        rows = [[r["model"], r["host"], f"{100 * r['flops']['macs']:+.2f}%",
                 f"{100 * r['train']['baseline']:+.1f}%", f"{100 * r['train']['fast']:+.1f}%",
                 f"{r['train']['ratio_to_flops']:.1f}",
                 f"{100 * r['inference']['baseline']:+.1f}%", f"{100 * r['inference']['fast']:+.1f}%",
                 f"{r['inference']['ratio_to_flops']:.1f}"] for r in rec["fusion_overhead"]]
        out.append(_md(["fused model", "plain host", "MACs overhead", "train time overhead (base)",
                        "train (fast)", "train fast / MACs", "infer time overhead (base)", "infer (fast)",
                        "infer fast / MACs"], rows))
    if rec.get("data"):
        d = rec["data"]
        out.append("")
        rows = [[k, f"{d[k]['images_per_s']:.0f}"] for k in ("cifar_standard", "cifar_autoaugment",
                                                              "imagenet_recordio")]
        out.append(_md(["data pipeline (1 core)", "images/s"], rows))
    return "\n".join(out)
