"""utils/data/stopsign.py: the COCO-built StopSign cache on a tiny COCO tree, the synthetic
generator, the GluonCV-style segmentation datasets."""
import json
import os

import numpy as np
import pytest
from matplotlib.path import Path
from PIL import Image

from utils.data import stopsign as D

H, W = 40, 50


# ------------------------------------------------------------------ a tiny COCO 2017 tree
def _rle_counts(mask):
    """Uncompressed COCO RLE written independently of pycocotools: column-major runs that start
    with a run of zeros."""
    flat = mask.T.reshape(-1)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def _rect(y0, y1, x0, x1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


#: a polygon with vertices off the pixel grid (no boundary ties)
POLY = [5.3, 4.2, 30.7, 6.1, 26.4, 28.8, 8.1, 25.6]


def _poly_pixels(poly):
    """(inside, near_edge): pixel centres inside the polygon, and those within 1 px of an edge."""
    ys, xs = np.mgrid[0:H, 0:W]
    pts = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    verts = np.array(poly).reshape(-1, 2)
    inside = Path(verts).contains_points(pts).reshape(H, W)
    near = np.zeros(H * W, bool)
    for a, b in zip(verts, np.roll(verts, -1, 0)):
        t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        near |= np.linalg.norm(pts - (a + t[:, None] * (b - a)), axis=1) <= 1.0
    return inside, near.reshape(H, W)


def _write_coco(root, with_stop_signs=True):
    """train: 1 polygon sign, 2 compressed-RLE sign + a person, 3 only a person, 4 crowd
    (uncompressed RLE) + polygon sign, overlapping; val: 5 polygon sign, 6 nothing."""
    from pycocotools import mask as mask_utils
    rng = np.random.RandomState(0)
    cats = [{'id': 1, 'name': 'person', 'supercategory': 'person'},
            {'id': 13, 'name': 'stop sign', 'supercategory': 'outdoor'}]
    rle2 = _rect(10, 30, 20, 45)
    compressed = mask_utils.encode(np.asfortranarray(rle2))
    compressed['counts'] = compressed['counts'].decode('ascii')
    crowd4 = _rect(0, 12, 0, 15)
    sign = 13 if with_stop_signs else 1
    splits = {
        'train': ([1, 2, 3, 4], [
            dict(id=11, image_id=1, category_id=sign, iscrowd=0, segmentation=[POLY]),
            dict(id=12, image_id=2, category_id=sign, iscrowd=0, segmentation=compressed),
            dict(id=13, image_id=2, category_id=1, iscrowd=0,
                 segmentation=[[1.0, 1.0, 12.0, 1.0, 12.0, 8.0, 1.0, 8.0]]),
            dict(id=14, image_id=3, category_id=1, iscrowd=0, segmentation=[POLY]),
            dict(id=15, image_id=4, category_id=sign, iscrowd=1,
                 segmentation={'counts': _rle_counts(crowd4), 'size': [H, W]}),
            dict(id=16, image_id=4, category_id=sign, iscrowd=0, segmentation=[POLY])]),
        'val': ([5, 6], [dict(id=21, image_id=5, category_id=sign, iscrowd=0,
                              segmentation=[POLY])]),
    }
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    for split, (ids, anns) in splits.items():
        folder = os.path.join(root, '%s2017' % split)
        os.makedirs(folder, exist_ok=True)
        images = []
        for i in ids:
            name = '%012d.jpg' % i
            Image.fromarray(rng.randint(0, 255, (H, W, 3)).astype(np.uint8)).save(
                os.path.join(folder, name), quality=95)
            images.append(dict(id=i, file_name=name, height=H, width=W))
        for a in anns:
            a.update(area=100.0, bbox=[0, 0, 10, 10])
        with open(os.path.join(root, 'annotations', 'instances_%s2017.json' % split), 'w') as f:
            json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return dict(rle2=rle2, crowd4=crowd4)


def _mask(cache, split, image_id):
    return np.array(Image.open(os.path.join(cache, split, 'masks', '%012d.png' % image_id)))


def test_builder_selects_stop_sign_images_and_unions_their_masks(tmp_path):
    coco, cache = str(tmp_path / 'coco'), str(tmp_path / 'cache')
    ref = _write_coco(coco)
    manifest = D.build_stopsign(coco, cache)
    assert manifest['splits']['train']['images'] == 3 and manifest['splits']['val']['images'] == 1
    assert manifest['splits']['train']['crowd_annotations'] == 1
    assert 'our' in manifest['dataset'] or "project's" in manifest['dataset']
    ids = [p[0] for p in D.load_stopsign(cache, 'train')]
    assert [os.path.basename(p) for p in ids] == ['%012d.jpg' % i for i in (1, 2, 4)]
    assert [os.path.basename(p[0]) for p in D.load_stopsign(cache, 'val')] == ['%012d.jpg' % 5]
    # images are the COCO files, byte for byte
    with open(os.path.join(coco, 'train2017', '%012d.jpg' % 2), 'rb') as a, \
            open(os.path.join(cache, 'train', 'images', '%012d.jpg' % 2), 'rb') as b:
        assert a.read() == b.read()

    inside, near = _poly_pixels(POLY)
    far = ~near
    m1 = _mask(cache, 'train', 1)
    assert m1.dtype == np.uint8 and m1.shape == (H, W) and set(np.unique(m1)) == {0, 1}
    assert (m1[far] == inside[far]).all()           # polygon: exact away from its edges
    assert abs(int(m1.sum()) - int(inside.sum())) < near.sum()
    # compressed RLE is exact; the person annotation of image 2 is background
    assert (_mask(cache, 'train', 2) == ref['rle2']).all()
    # crowd (uncompressed RLE) is foreground too, united with the polygon
    m4 = _mask(cache, 'train', 4)
    assert (m4[ref['crowd4'] == 1] == 1).all()
    rest = (ref['crowd4'] == 0) & far
    assert (m4[rest] == inside[rest]).all()
    assert (m4[ref['crowd4'] == 1] == 1).all() and (m4 == (ref['crowd4'] | m1)).all()
    assert (_mask(cache, 'val', 5) == m1).all()


def test_cache_is_reused_and_rebuilt_only_on_request(tmp_path):
    coco, cache = str(tmp_path / 'coco'), str(tmp_path / 'cache')
    _write_coco(coco)
    D.build_stopsign(coco, cache)
    mask_path = os.path.join(cache, 'train', 'masks', '%012d.png' % 2)
    os.utime(mask_path, (1, 1))
    D.build_stopsign(coco, cache)                      # reused: nothing rewritten
    assert os.stat(mask_path).st_mtime == 1
    D.build_stopsign(None, cache)                      # no COCO needed once built
    assert len(D.load_stopsign(cache, 'train')) == 3
    D.build_stopsign(coco, cache, rebuild=True)
    assert os.stat(mask_path).st_mtime > 1
    assert not [n for n in os.listdir(cache) if n.startswith('.')]   # no temporary leftovers
    ds = D.StopSignSegmentation(cache, 'train', 'val', base_size=32, crop_size=32)
    x, y = ds[0]
    assert len(ds) == 3 and x.shape == (32, 32, 3) and y.shape == (32, 32)


def test_builder_errors(tmp_path):
    coco, cache = str(tmp_path / 'coco'), str(tmp_path / 'cache')
    with pytest.raises(D.DataError, match='not a folder'):
        D.build_stopsign(coco, cache)
    with pytest.raises(D.DataError, match='no StopSign cache'):
        D.build_stopsign(None, cache)
    os.makedirs(coco)
    with pytest.raises(D.DataError, match=r'instances_train2017\.json are missing'):
        D.build_stopsign(coco, cache)
    _write_coco(coco, with_stop_signs=False)
    with pytest.raises(D.DataError, match='no image of .* has a "stop sign" annotation'):
        D.build_stopsign(coco, cache)
    assert not os.path.exists(os.path.join(cache, D.MANIFEST))
    _write_coco(coco)
    os.remove(os.path.join(coco, 'train2017', '%012d.jpg' % 4))
    with pytest.raises(D.DataError, match='is missing; the train2017/ folder is incomplete'):
        D.build_stopsign(coco, cache)
    os.rename(os.path.join(coco, 'val2017'), os.path.join(coco, 'elsewhere'))
    with pytest.raises(D.DataError, match='val2017/ .* next to annotations'):
        D.build_stopsign(coco, cache)
    assert not [n for n in os.listdir(cache) if n.startswith('.')]


def test_images_subfolder_layout_is_accepted(tmp_path):
    coco = str(tmp_path / 'coco')
    _write_coco(coco)
    os.makedirs(os.path.join(coco, 'images'))
    for s in ('train', 'val'):
        os.rename(os.path.join(coco, s + '2017'), os.path.join(coco, 'images', s + '2017'))
    assert D.build_stopsign(coco, str(tmp_path / 'c'))['splits']['val']['images'] == 1


# ------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_per_sample():
    a = D.synthetic_stopsign(6, 48, seed=3)
    b = D.synthetic_stopsign(6, 48, seed=3)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and a[2] == b[2]
    c = D.synthetic_stopsign(6, 48, seed=4)
    assert not (a[0] == c[0]).all()
    tail = D.synthetic_stopsign(2, 48, seed=3, start=4)     # sample i depends on (seed, i) only
    assert (tail[0] == a[0][4:]).all() and (tail[1] == a[1][4:]).all()


def _octagon_path(s):
    r = s['apothem'] / np.cos(np.pi / 8)                     # circumradius
    ang = s['angle'] + np.pi / 8 + np.arange(8) * np.pi / 4
    return Path(np.stack([s['cx'] + r * np.cos(ang), s['cy'] + r * np.sin(ang)], 1))


def test_synthetic_masks_are_exact():
    images, masks, signs = D.synthetic_stopsign(40, 48, seed=1)
    ys, xs = np.mgrid[0:48, 0:48]
    pts = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    for i in range(40):
        want = np.zeros(48 * 48, bool)
        for s in signs[i]:
            want |= _octagon_path(s).contains_points(pts)
        assert (masks[i].ravel().astype(bool) == want).all(), i
    # on a plain background every sign pixel has a sign colour and nothing else does
    images, masks, signs = D.synthetic_stopsign(20, 48, seed=2, max_signs=1, clutter=False)
    for img, m, (s,) in zip(images, masks, signs):
        colours = {tuple(np.round(s['red']).astype(int)), (round(s['white']),) * 3}
        got = {tuple(p) for p in img[m == 1].astype(int)}
        assert got <= colours and len(got) == 2
        assert (img[m == 0] == 90).all()


def test_synthetic_scales_vary_widely():
    _, masks, signs = D.synthetic_stopsign(200, 64, seed=0)
    apothems = [s['apothem'] for ss in signs for s in ss]
    assert min(apothems) < 4 and max(apothems) > 20
    assert any(len(s) == 0 for s in signs) and any(len(s) == 2 for s in signs)
    assert 0.03 < masks.mean() < 0.3


def test_array_dataset_transforms_keep_image_and_mask_aligned():
    import random
    random.seed(0)
    _, masks, _ = D.synthetic_stopsign(8, 64, seed=0, max_signs=1)
    images = np.repeat(masks[..., None] * 255, 3, axis=3).astype(np.uint8)
    train = D.ArraySegmentation(images, masks, 'train', base_size=64, crop_size=48)
    for i in range(8):
        x, y = train[i]
        x, y = x.asnumpy(), y.asnumpy()
        assert x.shape == (48, 48, 3) and y.shape == (48, 48) and set(np.unique(y)) <= {0, 1}
        assert ((x[..., 0] > 127) == (y == 1)).mean() > 0.9
    val = D.ArraySegmentation(images, masks, 'val', base_size=64, crop_size=64)
    x, y = val[3]
    assert (y.asnumpy() == masks[3]).all()            # short side = crop: identity
    assert len(val.transform_first(lambda v: v)) == 8
    with pytest.raises(D.DataError, match='mode'):
        D.ArraySegmentation(images, masks, 'test')
