"""Grad-CAM: the map of a trained tiny network peaks on the planted discriminative patch."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import net
from conftest import ROOT
from utils import gradcam

PATCH = 8


def _images(n, rng, with_patch):
    """Standardised images (as the real pipelines give): the network's input BatchNorm never
    updates its running statistics (MXNet updates them in the backward pass, which it prunes
    for a parameter-free BN on the input), so it is the identity at inference."""
    x = rng.uniform(-1, 1, size=(n, 3, 32, 32)).astype('float32')
    where = rng.randint(0, 32 - PATCH + 1, size=(n, 2))
    if with_patch:
        for img, (r, c) in zip(x, where):
            img[0, r:r + PATCH, c:c + PATCH] = 2.0   # a bright red square
            img[1:, r:r + PATCH, c:c + PATCH] = -2.0
    return x, where


@pytest.fixture(scope='module')
def trained():
    """cifar_aff_resnet20_b1 taught 'is there a red square?' (class 1) on random backgrounds."""
    mx.random.seed(0)
    rng = np.random.RandomState(0)
    model = net.get_model('cifar_aff_resnet20_b1', classes=2)
    model.initialize(mx.init.Xavier())
    trainer = mx.gluon.Trainer(model.collect_params(), 'nag', dict(learning_rate=0.05, momentum=0.9))
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(120):
        pos, _ = _images(16, rng, True)
        neg, _ = _images(16, rng, False)
        x = mx.nd.array(np.concatenate([pos, neg]))
        x.attach_grad()   # lets MXNet run (and update the statistics of) the input BatchNorm
        y = mx.nd.array([1] * 16 + [0] * 16)
        with mx.autograd.record():
            loss = loss_fn(model(x), y)
        loss.backward()
        trainer.step(32)
    test_pos, where = _images(12, rng, True)
    test_neg, _ = _images(12, rng, False)
    pred = model(mx.nd.array(np.concatenate([test_pos, test_neg]))).argmax(axis=1).asnumpy()
    assert (pred == np.array([1] * 12 + [0] * 12)).mean() >= 0.95
    return model, test_pos, where


def _peak(cam):
    """The 32x32 pixel under the CAM maximum (each map cell covers 32/h pixels)."""
    h, w = cam.shape
    r, c = np.unravel_index(cam.argmax(), cam.shape)
    return (r + 0.5) * 32 / h, (c + 0.5) * 32 / w


def test_heatmap_peaks_on_the_patch(trained):
    model, images, where = trained
    cams, pred, score = gradcam.grad_cam(model, mx.nd.array(images))
    assert cams.shape == (len(images), 8, 8) and cams.min() >= 0 and cams.max() <= 1
    assert (pred == 1).all() and (score > 0.5).all()
    hits = 0
    for cam, (r, c) in zip(cams, where):
        pr, pc = _peak(cam)
        # inside the patch, give or take one map cell (4 px)
        hits += (r - 4 <= pr <= r + PATCH + 4) and (c - 4 <= pc <= c + PATCH + 4)
    assert hits >= 0.8 * len(images)


def test_hybridized_network_gives_the_same_map(trained):
    model, images, _ = trained
    want = gradcam.grad_cam(model, mx.nd.array(images[:4]))[0]
    model.hybridize(static_alloc=True, static_shape=True)
    try:
        got = gradcam.grad_cam(model, mx.nd.array(images[:4]))[0]
        again = gradcam.grad_cam(model, mx.nd.array(images[4:8]))[0]
    finally:
        model.hybridize(active=False)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(again, got)


def test_inference_path_trunk_gives_the_same_map(trained):
    """The Grad-CAM trunk through utils.train.hybridize_for_inference (oneDNN) explains alike."""
    from net import cpu_speed
    model, images, _ = trained
    x = mx.nd.array(images[:4])
    want = gradcam.grad_cam(model, x)[0]
    try:
        trunk, head, note = gradcam.fast_parts(model, x)
        assert note.startswith('inference: oneDNN graph optimisation (')
        got = gradcam.grad_cam(model, x, parts=(trunk, head))[0]
    finally:
        model.hybridize(active=False)
        cpu_speed.remove(model)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_split_reproduces_the_network():
    for name, size in (('cifar_aff_resnet20_b1', 32), ('cifar_aff_resnext29_32x4d', 32),
                       ('aff_resnet50', 64), ('aff_resnext50_32x4d_v1b', 64)):
        model = net.get_model(name, classes=5)
        model.initialize(mx.init.Xavier())
        x = mx.nd.random.uniform(shape=(1, 3, size, size))
        trunk, head = gradcam.split(model)
        np.testing.assert_allclose(head(trunk(x)).asnumpy(), model(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_cli_side_by_side(trained, tmp_path):
    from PIL import Image
    model, images, _ = trained
    params = str(tmp_path / 'tiny.params')
    model.save_parameters(params)
    img = ((images[0].transpose(1, 2, 0) + 2) * 60).astype(np.uint8)
    Image.fromarray(img).save(str(tmp_path / 'x.png'))
    out = str(tmp_path / 'cams.png')
    cmd = [sys.executable, '-m', 'utils.gradcam', '--model', 'cifar_aff_resnet20_b1', '--params',
           params, '--model', 'cifar_aff_resnet20_b1', '--params', params, '--classes', '2',
           '--image', str(tmp_path / 'x.png'), str(tmp_path / 'x.png'), '--hybridize', '--out', out]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(out) > 5000 and '2 image(s) x 2 model(s)' in res.stdout
    bad = subprocess.run(cmd[:5] + ['--image', str(tmp_path / 'missing.png'), '--classes', '2'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith('error:')
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_input_statistics_can_be_chosen(tmp_path):
    import numpy as np
    from PIL import Image
    from utils import data as D
    from utils.gradcam import load_image
    path = str(tmp_path / 'x.png')
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path)
    for name, (mean, std) in (('auto', (D.CIFAR_MEAN, D.CIFAR_STD)),
                              ('digits', (D.DIGITS_MEAN, D.DIGITS_STD))):
        _, x = load_image(path, 32, name)
        want = (128 / 255 - np.array(mean)) / np.array(std)
        np.testing.assert_allclose(x.asnumpy()[0, :, 0, 0], want, rtol=1e-5)
