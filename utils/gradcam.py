"""Grad-CAM (Selvaraju et al., ICCV 2017) for any registry classifier -- the visualisation of Fig. 6.

The official repository never released its Grad-CAM code; this is ours.  The class activation
map of class c is ``ReLU(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of
``d y_c / d A^k``, where A is the last convolutional feature map (the output of the last stage,
after the final BN-ReLU of the pre-activation hosts).  It works on the CPU and on hybridized
networks: the network is split into a trunk (input -> A) and a head (A -> logits), and the
gradient is taken with respect to A.

    python -m utils.gradcam --model resnet50_v1b --params r50.params \\
        --model aff_resnet50_v1b --params aff.params --image cat.jpg dog.jpg --out cams.png
"""
import argparse
import os

import utils  # noqa: F401  (thread settings before mxnet)

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

import net  # noqa: E402
from net.errors import AFFError  # noqa: E402
from net.cifar import CIFARPreActResNet, CIFARResNeXt  # noqa: E402
from net.imagenet import ResNetV1bHost, ResNeXtHost  # noqa: E402
from utils.train import hybridize_for_inference  # noqa: E402

__all__ = ['split', 'fast_parts', 'grad_cam', 'load_image', 'overlay', 'main']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def split(model):
    """(trunk, head): ``head(trunk(x)) == model(x)``; trunk (a HybridSequential sharing the model's
    layers) ends at the last conv feature map."""
    if isinstance(model, CIFARPreActResNet):       # [..., stage3, BN, ReLU | GAP, Flatten]
        f = model.features
        return f[:-2], lambda a: model.output(f[-1](f[-2](a)))
    if isinstance(model, (CIFARResNeXt, ResNeXtHost)):   # [..., stage3/4 | GAP]
        f = model.features
        return f[:-1], lambda a: model.output(f[-1](a))
    if isinstance(model, ResNetV1bHost):
        trunk = nn.HybridSequential(prefix='')
        trunk.add(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                  model.layer3, model.layer4)

        def head(a):
            a = model.flat(model.avgpool(a))
            return model.fc(a if model.drop is None else model.drop(a))
        return trunk, head
    raise AFFError('Grad-CAM does not know where the last feature map of %s is; supported '
                   'hosts: CIFAR ResNet/ResNeXt and ImageNet ResNet/ResNeXt' % type(model).__name__)


def fast_parts(model, x):
    """``(trunk, head, note)``: :func:`split` with the trunk (forward only in Grad-CAM) prepared by
    :func:`utils.train.hybridize_for_inference` for inputs shaped like ``x`` (oneDNN on the CPU)."""
    trunk, head = split(model)
    return trunk, head, hybridize_for_inference(trunk, x)


def grad_cam(model, x, cls=None, parts=None):
    """Grad-CAM maps for a batch ``x`` (N x 3 x H x W); returns (cams N x h x w in [0, 1],
    predicted classes, softmax scores of the explained classes).  ``cls``: class per image
    (default: the predicted one); ``parts``: ``(trunk, head)`` from :func:`split` or
    :func:`fast_parts` (default: ``split(model)``)."""
    trunk, head = parts[:2] if parts else split(model)
    feats = trunk(x).copy()   # a hybridized trunk reuses its output buffer on the next call
    feats.attach_grad()
    with mx.autograd.record(train_mode=False):
        logits = head(feats)
    probs = mx.nd.softmax(logits).asnumpy()
    pred = probs.argmax(axis=1)
    target = pred if cls is None else np.broadcast_to(np.asarray(cls), pred.shape)
    logits.backward(mx.nd.one_hot(mx.nd.array(target, ctx=x.context), logits.shape[1]))
    a = feats.asnumpy()
    g = feats.grad.asnumpy()
    weights = g.mean(axis=(2, 3), keepdims=True)
    cams = np.maximum((weights * a).sum(axis=1), 0)
    peak = cams.reshape(len(cams), -1).max(axis=1).reshape(-1, 1, 1)
    cams = np.where(peak > 0, cams / np.maximum(peak, 1e-12), 0)
    return cams, pred, probs[np.arange(len(pred)), target]


def normalisation(name, size):
    """``(mean, std)`` of ``--normalize``: ``auto`` = CIFAR for inputs up to 64 px, else ImageNet;
    or the statistics a model was trained with (``cifar``, ``digits``, ``imagenet``)."""
    from utils.data import CIFAR_MEAN, CIFAR_STD, DIGITS_MEAN, DIGITS_STD
    table = {'cifar': (CIFAR_MEAN, CIFAR_STD), 'digits': (DIGITS_MEAN, DIGITS_STD),
             'imagenet': (IMAGENET_MEAN, IMAGENET_STD)}
    if name == 'auto':
        name = 'cifar' if size <= 64 else 'imagenet'
    if name not in table:
        raise AFFError('unknown --normalize %r; use auto, %s' % (name, ', '.join(sorted(table))))
    return table[name]


def load_image(path, size, normalize='auto'):
    """(uint8 HWC image as shown, normalised 1x3xSxS input): inputs up to 64 px get a plain resize,
    others resize the short side to size/0.875 and centre-crop; then :func:`normalisation`."""
    from PIL import Image
    mean, std = normalisation(normalize, size)
    if not os.path.isfile(path):
        raise AFFError('image %s does not exist' % path)
    try:
        img = Image.open(path).convert('RGB')
    except OSError as err:
        raise AFFError('%s is not a readable image (%s)' % (path, err)) from None
    if size <= 64:
        img = img.resize((size, size), Image.BILINEAR)
    else:
        short = int(round(size / 0.875))
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.uint8)
    x = (arr.astype('float32') / 255 - np.array(mean, 'float32')) / np.array(std, 'float32')
    return arr, mx.nd.array(x.transpose(2, 0, 1)[None])


def overlay(image, cam, alpha=0.5):
    """The CAM upsampled to the image (bilinear) and blended with a jet colour map (uint8 HWC)."""
    from matplotlib import colormaps
    from PIL import Image
    h, w = image.shape[:2]
    cam_img = Image.fromarray((cam * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    heat = colormaps['jet'](np.asarray(cam_img) / 255.0)[..., :3]
    return (alpha * heat * 255 + (1 - alpha) * image).clip(0, 255).astype(np.uint8)


def _figure(rows, titles, out):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from utils.checkpoint import atomic_write
    n_img, n_col = len(rows), len(rows[0])
    fig = Figure(figsize=(3 * n_col, 3 * n_img), dpi=100)
    FigureCanvasAgg(fig)
    axes = np.array(fig.subplots(n_img, n_col)).reshape(n_img, n_col)
    for i, row in enumerate(rows):
        for j, (img, caption) in enumerate(row):
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(caption if i else '%s\n%s' % (titles[j], caption), fontsize=8)
    fig.tight_layout()
    atomic_write(lambda tmp: fig.savefig(tmp, format='png'), out)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m utils.gradcam', description=__doc__.split('\n')[0])
    p.add_argument('--model', action='append', required=True,
                   help='registry name (repeat for side-by-side columns)')
    p.add_argument('--params', action='append', default=[],
                   help='.params file per --model (in the same order), or a released tag '
                   '("pretrained" for the default released checkpoint)')
    p.add_argument('--image', nargs='+', required=True, help='image file(s) to explain')
    p.add_argument('--classes', type=int, default=None,
                   help='classifier outputs of the models (default: each model\'s own)')
    p.add_argument('--input-size', type=int, default=None,
                   help='side the images are resized to (default: the model\'s input size)')
    p.add_argument('--labels', default=None, help='text file with one class name per line')
    p.add_argument('--hybridize', action='store_true',
                   help='explain the hybridized network; the trunk runs through the inference path '
                   '(oneDNN graph optimisation on the CPU, utils.train.hybridize_for_inference)')
    p.add_argument('--out', default='gradcam.png', help='the PNG written')
    p.add_argument('--normalize', default='auto', choices=['auto', 'cifar', 'digits', 'imagenet'],
                   help='input statistics: those the models were trained with (auto: CIFAR up to '
                   '64 px, else ImageNet)')
    args = p.parse_args(argv)
    if len(args.params) != len(args.model):
        raise AFFError('give one --params per --model (%d models, %d params)'
                       % (len(args.model), len(args.params)))
    names = None
    if args.labels:
        with open(args.labels) as f:
            names = [ln.strip() for ln in f]
    columns, titles = [], []
    for name, params in zip(args.model, args.params):
        kw = {} if args.classes is None else dict(classes=args.classes)
        pretrained = True if params == 'pretrained' else params
        model = net.get_model(name, pretrained=pretrained, **kw)
        size = args.input_size or model.input_size
        parts = None
        if args.hybridize:
            model.hybridize()
            parts = fast_parts(model, mx.nd.zeros((1, 3, size, size)))
            print('%s: %s' % (name, parts[2]))
        col = []
        for path in args.image:
            shown, x = load_image(path, size, args.normalize)
            cams, pred, score = grad_cam(model, x, parts=parts)
            label = names[pred[0]] if names and pred[0] < len(names) else 'class %d' % pred[0]
            col.append((overlay(shown, cams[0]), '%s (%.2f)' % (label, score[0])))
        columns.append(col)
        titles.append(name)
    rows = [list(r) for r in zip(*columns)]
    _figure(rows, titles, args.out)
    print('wrote %s (%d image(s) x %d model(s))' % (args.out, len(args.image), len(args.model)))
    return 0


if __name__ == '__main__':
    from utils.cli import run_main
    run_main(main)
