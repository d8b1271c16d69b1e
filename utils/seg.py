"""Segmentation helpers of ``train_seg.py``: evaluation (GluonCV ``SegmentationMetric``)
and the PNG of predicted masks over validation images."""
import mxnet as mx
import numpy as np
from gluoncv.utils.metrics import SegmentationMetric

from utils import train as T
from utils.checkpoint import atomic_write

__all__ = ['evaluate', 'pick_samples', 'save_overlays']


def evaluate(model, loader, ctx, nclass=2):
    """``(pixAcc, mIoU)`` of ``model`` over ``loader`` (GluonCV's metric: mean of the per-class IoU
    accumulated over the whole set, background included)."""
    metric = SegmentationMetric(nclass)
    for x, y in loader:
        xs, ys = T.split(x, ctx), T.split(y, ctx)
        metric.update(ys, [model(v) for v in xs])
    pix_acc, miou = metric.get()
    return float(pix_acc), float(miou)


def pick_samples(dataset, n, scan=64):
    """``n`` indices for the predictions PNG: samples showing a stop sign first (among the first
    ``scan``), so the picture shows what the network finds, then the others in order."""
    looked = range(min(len(dataset), max(scan, n)))
    def has_sign(i):
        mask = dataset[i][1]
        return bool(np.any((mask.asnumpy() if hasattr(mask, 'asnumpy') else np.asarray(mask)) == 1))
    with_sign = [i for i in looked if has_sign(i)]
    rest = [i for i in looked if i not in set(with_sign)]
    return (with_sign + rest)[:n]


def save_overlays(model, dataset, indices, ctx, png_path, mean, std, title=None):
    """A PNG with one row per validation sample: the image, the ground truth and the prediction
    drawn over the image (stop-sign pixels tinted), with the sample's IoU of the stop-sign class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(indices)
    if not rows:
        return None
    fig = Figure(figsize=(9.0, 3.0 * rows), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3, squeeze=False)
    mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(std, np.float32).reshape(3, 1, 1)
    for r, i in enumerate(indices):
        x, y = dataset[i]
        x = x.asnumpy() if hasattr(x, 'asnumpy') else np.asarray(x)
        y = y.asnumpy() if hasattr(y, 'asnumpy') else np.asarray(y)
        pred = model(mx.nd.array(x[None], ctx=ctx[0])).argmax(axis=1)[0].asnumpy().astype(int)
        image = np.clip((x * std + mean).transpose(1, 2, 0), 0, 1)
        inter, union = np.sum((pred == 1) & (y == 1)), np.sum((pred == 1) | (y == 1))
        for c, (what, mask) in enumerate((('image', None), ('ground truth', y), ('prediction', pred))):
            ax = axes[r][c]
            shown = image.copy()
            if mask is not None:
                tint = np.array([0.0, 1.0, 0.2])
                shown[mask == 1] = 0.45 * shown[mask == 1] + 0.55 * tint
            ax.imshow(shown)
            ax.set_axis_off()
            label = what if c < 2 else 'prediction (IoU %s)' % (
                '%.2f' % (inter / union) if union else 'n/a: no sign')
            ax.set_title('#%d %s' % (i, label) if c == 0 else label, fontsize='small')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_write(lambda tmp: fig.savefig(tmp, format='png'), png_path)
