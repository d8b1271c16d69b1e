"""Parameter table of registry models and of the released checkpoints.

Usage: python -m utils.models [NAME ...] [--released] [--all] [--classes K] [--markdown]

For each model it builds the network with `net.get_model`, initialises it on the CPU, runs one forward
pass at its input size (so that deferred shapes exist) and counts `collect_params()`:

* tensors   — number of parameter arrays (what `save_parameters` writes);
* total     — every element, BatchNorm running statistics included;
* trainable — elements of parameters with grad_req != 'null'.

With no NAME the released checkpoints (`net.model_store.RELEASED`) are listed, one row per checkpoint;
`--all` lists every registry name. A NAME that has released checkpoints is shown once per checkpoint, with
the checkpoint's class count, unless --classes is given.
"""
import argparse
import sys

import net
from net.errors import AFFError
from net.model_store import RELEASED
from utils.cli import positive_int, run_main

import mxnet as mx  # after net, which sets the thread count


def input_size(name, block=None):
    """Input side length for `name`: the block's `input_size` attribute if it has one, else 32 for the
    CIFAR models (names starting with 'cifar') and 224 otherwise."""
    size = getattr(block, "input_size", None)
    if size:
        return int(size)
    return 32 if name.startswith("cifar") else 224


def check_names(names):
    """Raise UnknownNameError (an AFFError) for the first name that is not in the registry, with the
    closest ones (:func:`net.get_model_info`)."""
    for name in names:
        net.get_model_info(name)


def build(name, classes=None, ctx=None, batch_size=1, size=None):
    """Build `name`, initialise it and run one inference forward pass to materialise deferred shapes.

    Returns (block, outputs, size)."""
    ctx = ctx or mx.cpu()
    kwargs = {} if classes is None else {"classes": classes}
    block = net.get_model(name, **kwargs)
    block.initialize(ctx=ctx)
    size = size or input_size(name, block)
    x = mx.nd.zeros((batch_size, 3, size, size), ctx=ctx)
    out = block(x)
    mx.nd.waitall()
    return block, out, size


def output_classes(out):
    """Number of classes of a classification (N, C) or segmentation (N, C, H, W) output, or of the first
    output of a tuple."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    return int(out.shape[1]) if len(out.shape) >= 2 else None


def count_params(block):
    """(tensors, total elements, trainable elements) of `block.collect_params()`."""
    tensors = total = trainable = 0
    for name, param in block.collect_params().items():
        if param.shape is None or any(d <= 0 for d in param.shape):
            raise AFFError(f"parameter {name} has no complete shape {param.shape}: it was not reached "
                           "by a forward pass; give its layer in_channels/in_units")
        n = 1
        for d in param.shape:
            n *= d
        tensors += 1
        total += n
        if param.grad_req != "null":
            trainable += n
    return tensors, total, trainable


def model_rows(entries, progress=None):
    """One row per (name, classes, record-or-None) entry; each distinct (name, classes) is built once.
    classes None = the model's default.  ``progress(k, n, name)`` is called before each build."""
    stats = {}
    rows = []
    todo = len(set((name, classes) for name, classes, _ in entries))
    for name, classes, rec in entries:
        if (name, classes) not in stats:
            if progress is not None:
                progress(len(stats) + 1, todo, name)
            block, out, _ = build(name, classes)
            stats[name, classes] = (classes or output_classes(out),) + count_params(block)
            del block, out
        n_classes, tensors, total, trainable = stats[name, classes]
        rows.append({
            "name": name, "classes": n_classes, "tensors": tensors, "total": total,
            "trainable": trainable,
            "checkpoint": rec.file if rec else "",
            "result": _result(rec) if rec else "",
        })
    return rows


def _result(rec):
    return f"{rec.metric} {rec.value} @{rec.epoch} ({rec.label_mode}) {rec.dtype}"


HEADER = ["model", "classes", "tensors", "total (M)", "total", "trainable (M)", "trainable",
          "checkpoint", "result"]
NUMERIC = [False, True, True, True, True, True, True, False, False]


def format_table(rows, markdown=False):
    """The rows as an aligned text table (or Markdown); the checkpoint columns only when one is set."""
    def cells(row):
        return [row["name"], str(row["classes"]), str(row["tensors"]),
                f"{row['total'] / 1e6:.2f}", f"{row['total']:,}",
                f"{row['trainable'] / 1e6:.2f}", f"{row['trainable']:,}",
                row["checkpoint"], row["result"]]

    header = HEADER
    body = [cells(r) for r in rows]
    if not any(r["checkpoint"] for r in rows):  # drop the empty checkpoint columns
        header, body = header[:-2], [b[:-2] for b in body]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if NUMERIC[i] else "---" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *body)]

    def fmt(cols):
        return "  ".join(c.rjust(w) if NUMERIC[i] else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cols, widths))).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m utils.models", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[4:]))
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: the released models)")
    p.add_argument("--released", action="store_true",
                   help="also list the released checkpoints (the default when no NAME is given)")
    p.add_argument("--all", action="store_true", help="list every registry name")
    p.add_argument("--classes", type=positive_int, default=None,
                   help="number of classes for the NAMEs / --all models (default: each model's own)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--fusions", action="store_true",
                   help="list every fusion name (--askc-type / get_fusion) with the module it builds")
    return p.parse_args(argv)


def fusion_table():
    """Lines ``name  module`` for every paper name and official mode string."""
    from net.fusion import canonical_fusion, fusion_names
    names = fusion_names()
    width = max(len(n) for n in names)
    return ["%-*s  %s" % (width, n, canonical_fusion(n).__name__) for n in names]


def main(argv=None):
    args = parse_args(argv)
    if args.fusions:
        print("\n".join(fusion_table()))
        return 0
    names = list(dict.fromkeys(args.names + (net.get_model_list() if args.all else [])))
    check_names(names)
    entries = []
    for name in names:  # a released model without --classes: its checkpoints' rows
        recs = [r for r in RELEASED if r.model == name] if args.classes is None else []
        entries += [(name, r.classes, r) for r in recs] or [(name, args.classes, None)]
    if args.released or not names:
        entries += [(r.model, r.classes, r) for r in RELEASED if (r.model, r.classes, r) not in entries]
    def progress(k, n, name):  # --all builds 220 networks (minutes): say where it is, on stderr
        if n > 5:
            print(f"[{k}/{n}] {name}", file=sys.stderr, flush=True)
    print(format_table(model_rows(entries, progress), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    run_main(main)
