"""StopSign: binary stop-sign segmentation -- built from a local COCO 2017 copy, or synthetic.

**This is our construction, not the authors'.**  The paper says only "StopSign (a subset of
COCO)" with "a large scale variation issue" (Sec. 5, supplement); its images, masks and split
were never published (docs/segmentation.md, "StopSign").  :func:`build_stopsign` makes:

* **images**: every COCO 2017 image with at least one ``stop sign`` annotation (category id 13),
  crowd annotations included -- COCO's own train2017 / val2017 split (train / val);
* **mask**: per pixel 1 = inside *any* stop-sign annotation of the image, else 0 -- the union of
  the instances decoded by pycocotools (polygons, uncompressed RLE of crowd annotations and
  compressed RLE alike).  Crowd regions are stop-sign pixels too, so they are foreground rather
  than "ignore" (COCO has almost no crowd stop signs; marking them background would teach the
  network the wrong answer).  Other categories are background;
* **cache** (``--data-dir``): ``<split>/images/<id>.jpg`` (the COCO file, copied byte for byte),
  ``<split>/masks/<id>.png`` (8-bit, values 0/1), ``<split>.txt`` (ids) and ``stopsign.json``
  (counts, sources, the rules above).  Everything is written to a temporary folder first and the
  manifest last, so a cache is either complete or rebuilt; it is reused while the manifest
  exists and rebuilt only on request (``rebuild=True`` / ``--rebuild-data``).

:func:`synthetic_stopsign` draws stop-sign-like red octagons with white rims at widely varying
scales, positions and slight rotations on cluttered backgrounds, with exact masks,
deterministic from a seed (tests and the offline demo).

:class:`StopSignSegmentation` / :class:`ArraySegmentation` are Gluon datasets with GluonCV's
segmentation transforms (:class:`gluoncv.data.segbase.SegmentationDataset`): training = random
flip, random rescale of the long side to 0.5-2.0 x ``base_size``, zero padding, random
``crop_size`` crop, random Gaussian blur; validation = short side to ``crop_size``, centre crop.
"""
import contextlib
import io
import json
import os
import shutil
import uuid

import numpy as np
from gluoncv.data.segbase import SegmentationDataset
from PIL import Image

from net.errors import import_extra

from .cifar import DataError

__all__ = ['STOP_SIGN_ID', 'STOPSIGN_MEAN', 'STOPSIGN_STD', 'coco_paths', 'build_stopsign',
           'load_stopsign', 'synthetic_stopsign', 'octagon_mask', 'StopSignSegmentation',
           'ArraySegmentation']

#: COCO 2017 category id of "stop sign"
STOP_SIGN_ID = 13
STOP_SIGN_NAME = 'stop sign'
#: ImageNet statistics, as GluonCV's segmentation scripts normalise
STOPSIGN_MEAN = (0.485, 0.456, 0.406)
STOPSIGN_STD = (0.229, 0.224, 0.225)
SPLITS = ('train', 'val')
MANIFEST = 'stopsign.json'
CACHE_VERSION = 1


# ------------------------------------------------------------------------------------------ COCO
def coco_paths(coco_root, split):
    """``(annotation json, image folder)`` of ``split`` in a COCO 2017 tree; one-line error if missing.

    Accepts the standard layout (``annotations/instances_<split>2017.json`` and
    ``<split>2017/``) and the variant with images under ``images/<split>2017/``.
    """
    root = os.path.expanduser(coco_root)
    if not os.path.isdir(root):
        raise DataError('--coco-root %s is not a folder; point it at a COCO 2017 copy with '
                        'annotations/ and train2017/ val2017/' % coco_root)
    ann = os.path.join(root, 'annotations', 'instances_%s2017.json' % split)
    if not os.path.isfile(ann):
        raise DataError('COCO annotations %s are missing; --coco-root needs '
                        'annotations/instances_{train,val}2017.json (from '
                        'annotations_trainval2017.zip)' % ann)
    for images in (os.path.join(root, '%s2017' % split), os.path.join(root, 'images',
                                                                      '%s2017' % split)):
        if os.path.isdir(images):
            return ann, images
    raise DataError('COCO image folder %s is missing; --coco-root needs %s2017/ (or '
                    'images/%s2017/) next to annotations/'
                    % (os.path.join(root, '%s2017' % split), split, split))


def _load_coco(ann_path):
    COCO = import_extra('pycocotools.coco', 'pycocotools', 'coco',
                        'building the StopSign cache from COCO (--coco-root)').COCO
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        try:
            return COCO(ann_path)
        except (ValueError, KeyError, TypeError, AssertionError, AttributeError) as e:
            # pycocotools asserts that the file holds a JSON object
            raise DataError('%s is not a COCO instances file (%s: %s)'
                            % (ann_path, type(e).__name__, str(e)[:200] or 'not a JSON object'))\
                from None


def _stop_sign_category(coco, ann_path):
    ids = coco.getCatIds(catNms=[STOP_SIGN_NAME])
    if not ids:
        raise DataError('%s has no "%s" category; use the COCO 2017 instances annotations'
                        % (ann_path, STOP_SIGN_NAME))
    return ids[0]


def stopsign_mask(coco, image_id, cat_id=STOP_SIGN_ID):
    """Union of every ``cat_id`` annotation of ``image_id`` (crowd included) as a 0/1 uint8 mask."""
    info = coco.imgs[image_id]
    mask = np.zeros((info['height'], info['width']), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[cat_id], iscrowd=None)):
        mask |= coco.annToMask(ann).astype(np.uint8)
    return mask


def _save_png(path, array):
    Image.fromarray(np.ascontiguousarray(array)).save(path, format='PNG')


def _build_split(coco_root, split, tmp):
    ann_path, image_dir = coco_paths(coco_root, split)
    coco = _load_coco(ann_path)
    cat = _stop_sign_category(coco, ann_path)
    ids = sorted(coco.getImgIds(catIds=[cat]))
    os.makedirs(os.path.join(tmp, split, 'images'))
    os.makedirs(os.path.join(tmp, split, 'masks'))
    crowd = 0
    for image_id in ids:
        info = coco.imgs[image_id]
        src = os.path.join(image_dir, info['file_name'])
        if not os.path.isfile(src):
            raise DataError('COCO image %s (listed in %s) is missing; the %s2017/ folder is '
                            'incomplete' % (src, ann_path, split))
        try:
            mask = stopsign_mask(coco, image_id, cat)
        except Exception as e:  # pycocotools fails in many ways on a malformed segmentation
            raise DataError('%s: a stop-sign annotation of image %d is malformed (%s: %s); use the '
                            'COCO 2017 instances annotations' % (ann_path, image_id,
                                                                 type(e).__name__, str(e)[:120])) \
                from None
        shutil.copyfile(src, os.path.join(tmp, split, 'images', '%012d.jpg' % image_id))
        _save_png(os.path.join(tmp, split, 'masks', '%012d.png' % image_id), mask)
        crowd += sum(1 for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[cat],
                                                             iscrowd=True)))
    with open(os.path.join(tmp, split + '.txt'), 'w') as f:
        f.write(''.join('%012d\n' % i for i in ids))
    n_ann = len(coco.getAnnIds(catIds=[cat], iscrowd=None))
    return dict(images=len(ids), annotations=n_ann, crowd_annotations=crowd,
                source=os.path.abspath(ann_path), category_id=cat)


def build_stopsign(coco_root, data_dir, rebuild=False, log=None):
    """Build (or reuse) the StopSign cache in ``data_dir`` from ``coco_root``; returns the manifest.

    An existing complete cache (its ``stopsign.json``) is reused unless ``rebuild``; a COCO root
    is only needed when building.  ``log``: optional ``callable(str)`` for progress lines.
    """
    data_dir = os.path.expanduser(data_dir)
    manifest_path = os.path.join(data_dir, MANIFEST)
    if os.path.isfile(manifest_path) and not rebuild:
        return read_manifest(data_dir)
    if coco_root is None and rebuild:
        raise DataError('rebuilding the StopSign cache needs --coco-root /path/to/coco')
    if coco_root is None:
        raise DataError('no StopSign cache in %s (no %s); build it once with --coco-root '
                        '/path/to/coco (COCO 2017 images + instances annotations)'
                        % (data_dir, MANIFEST))
    for split in SPLITS:  # fail before any work if a file is missing
        coco_paths(coco_root, split)
    os.makedirs(data_dir, exist_ok=True)
    tmp = os.path.join(data_dir, '.building-%d-%s' % (os.getpid(), uuid.uuid4().hex[:8]))
    try:
        splits = {}
        for split in SPLITS:
            if log:
                log('StopSign: selecting the "stop sign" images of COCO %s2017 ...' % split)
            splits[split] = _build_split(coco_root, split, tmp)
            if splits[split]['images'] == 0:
                raise DataError('no image of %s has a "stop sign" annotation (category %d); is '
                                'this the COCO 2017 instances file?'
                                % (splits[split]['source'], splits[split]['category_id']))
        if os.path.exists(manifest_path):
            os.remove(manifest_path)  # the cache is incomplete from here until the new manifest
        for split in SPLITS:
            for name in (split, split + '.txt'):
                dest = os.path.join(data_dir, name)
                if os.path.isdir(dest):
                    shutil.rmtree(dest)
                os.replace(os.path.join(tmp, name), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = dict(
        dataset='StopSign (this project\'s construction from COCO 2017)', version=CACHE_VERSION,
        rule='every image with a "stop sign" annotation (crowd included); mask = union of those '
             'annotations (polygons and RLE), 1 = stop sign, 0 = background',
        splits=splits)
    from utils.checkpoint import atomic_write

    def write(tmp_path):
        with open(tmp_path, 'w') as f:
            json.dump(manifest, f, indent=1)
    atomic_write(write, manifest_path)
    if log:
        log('StopSign cache written to %s: %s' % (data_dir, ', '.join(
            '%s %d images' % (s, splits[s]['images']) for s in SPLITS)))
    return manifest


def read_manifest(data_dir):
    path = os.path.join(os.path.expanduser(data_dir), MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError('cannot read the StopSign manifest %s (%s); rebuild the cache with '
                        '--coco-root DIR --rebuild-data' % (path, e)) from None
    if manifest.get('version') != CACHE_VERSION:
        raise DataError('%s is a StopSign cache of version %r, this code reads version %d; rebuild '
                        'it with --coco-root DIR --rebuild-data'
                        % (path, manifest.get('version'), CACHE_VERSION))
    return manifest


def load_stopsign(data_dir, split):
    """``[(image path, mask path)]`` of a built cache's split."""
    if split not in SPLITS:
        raise DataError('unknown StopSign split %r; use train or val' % (split,))
    data_dir = os.path.expanduser(data_dir)
    read_manifest(data_dir)
    with open(os.path.join(data_dir, split + '.txt')) as f:
        ids = [line.strip() for line in f if line.strip()]
    pairs = [(os.path.join(data_dir, split, 'images', i + '.jpg'),
              os.path.join(data_dir, split, 'masks', i + '.png')) for i in ids]
    for img, mask in pairs[:1] + pairs[-1:]:
        if not (os.path.isfile(img) and os.path.isfile(mask)):
            raise DataError('StopSign cache %s is incomplete (%s missing); rebuild it with '
                            '--coco-root DIR --rebuild-data' % (data_dir, img))
    return pairs


# ------------------------------------------------------------------------------------- synthetic
#: the eight edge normals of an upright stop sign (flat top): angles k * 45 degrees
_NORMALS = np.arange(8) * (np.pi / 4)


def octagon_mask(shape, cx, cy, apothem, angle=0.0):
    """Pixels whose centre lies inside the regular octagon (centre, apothem, rotation in radians):
    the intersection of its eight half-planes ``<p - c, n_k> <= apothem``."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    inside = np.ones(shape, bool)
    for phi in _NORMALS + angle:
        inside &= dx * np.cos(phi) + dy * np.sin(phi) <= apothem
    return inside


def _clutter(rng, size):
    """A random background: a colour gradient, rectangles, ellipses, lines, noise."""
    yy, xx = np.mgrid[0:size, 0:size] / float(size)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = c0 * (1 - t) + c1 * t
    for _ in range(rng.integers(3, 9)):
        colour = rng.uniform(0, 255, 3)
        kind = rng.integers(3)
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.5, 2) * size
        if kind == 0:
            sel = (xx * size >= x0) & (xx * size < x0 + w) & (yy * size >= y0) & (yy * size < y0 + h)
        elif kind == 1:
            sel = ((xx * size - x0) / w) ** 2 + ((yy * size - y0) / h) ** 2 <= 1
        else:
            a = rng.uniform(0, np.pi)
            sel = np.abs((xx * size - x0) * np.sin(a) - (yy * size - y0) * np.cos(a)) < max(1, w / 10)
        img[sel] = colour
    return img + rng.normal(0, 8, img.shape)


def _distractor(rng, img, size):
    """A red disc or a white square: sign colours without the sign's shape."""
    cx, cy = rng.uniform(0, size, 2)
    r = size * np.exp(rng.uniform(np.log(0.04), np.log(0.25)))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if rng.random() < 0.6:
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (rng.uniform(170, 230), rng.uniform(0, 40),
                                                         rng.uniform(0, 40))
    else:
        img[(np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)] = rng.uniform(225, 255)


def _sample(seed, index, size, max_signs, min_apothem, max_apothem, clutter):
    rng = np.random.default_rng([seed, index])
    img = _clutter(rng, size) if clutter else np.full((size, size, 3), 90.0)
    if clutter and rng.random() < 0.5:
        _distractor(rng, img, size)
    img = np.clip(img, 0, 255)
    mask = np.zeros((size, size), np.uint8)
    signs = []
    lo, hi = np.log(min_apothem), np.log(max_apothem * size)
    for _ in range(rng.integers(0 if max_signs > 1 else 1, max_signs + 1)):
        a = float(np.exp(rng.uniform(lo, hi)))          # log-uniform: wide scale variation
        cx, cy = (float(v) for v in rng.uniform(0, size, 2))
        angle = float(rng.uniform(-0.2, 0.2))            # about +-11 degrees
        red = np.array([rng.uniform(170, 230), rng.uniform(0, 40), rng.uniform(0, 40)])
        white = float(rng.uniform(225, 255))
        outer = octagon_mask((size, size), cx, cy, a, angle)
        inner = octagon_mask((size, size), cx, cy, 0.8 * a, angle)
        img[outer] = white
        img[inner] = red
        if a >= 6:                                       # a white "STOP" bar on big signs
            yy, xx = np.mgrid[0:size, 0:size] + 0.5
            img[inner & (np.abs(yy - cy) < 0.14 * a) & (np.abs(xx - cx) < 0.5 * a)] = white
        mask[outer] = 1
        signs.append(dict(cx=cx, cy=cy, apothem=a, angle=angle, red=red.tolist(), white=white))
    return np.round(img).astype(np.uint8), mask, signs


def synthetic_stopsign(num, size=64, seed=0, max_signs=2, min_apothem=2.5, max_apothem=0.45,
                       clutter=True, start=0):
    """``num`` synthetic StopSign samples: ``(images (N, size, size, 3) uint8, masks (N, size,
    size) uint8 0/1, signs)``; ``signs[i]`` lists each sign's geometry and colours.

    Sample ``start + i`` depends only on ``(seed, start + i)``.  Each image has 0..``max_signs``
    signs (at least 1 when ``max_signs`` is 1) of apothem log-uniform in [``min_apothem`` px,
    ``max_apothem * size``], anywhere (possibly cut by the border), rotated by up to ~11
    degrees; later signs paint over earlier ones and the mask is the union (exact: the pixels
    painted with sign colours are exactly the mask).  ``clutter=False``: plain grey background.
    """
    if num < 0 or size < 8:
        raise DataError('synthetic StopSign needs num >= 0 and size >= 8, got %d and %d'
                        % (num, size))
    images = np.zeros((num, size, size, 3), np.uint8)
    masks = np.zeros((num, size, size), np.uint8)
    signs = []
    for i in range(num):
        images[i], masks[i], s = _sample(seed, start + i, size, max_signs, min_apothem,
                                         max_apothem, clutter)
        signs.append(s)
    return images, masks, signs


# -------------------------------------------------------------------------------------- datasets
class _PairSegmentation(SegmentationDataset):
    """GluonCV segmentation dataset over (PIL image, PIL mask) pairs; items are
    ``(uint8 HWC mx.nd image, int32 HW mask)`` (normalise with ``transform_first``).

    ``mode``: ``'train'`` (random scale / crop / flip / blur), ``'val'`` (resize + centre crop)
    or ``'testval'`` (untouched).
    """
    NUM_CLASS = 2
    CLASSES = ('background', 'stop sign')

    def __init__(self, mode, base_size, crop_size, root=os.curdir):
        if mode not in ('train', 'val', 'testval'):
            raise DataError("segmentation mode must be 'train', 'val' or 'testval', got %r" % mode)
        super().__init__(root=root, split=mode, mode=mode, transform=None, base_size=base_size,
                         crop_size=crop_size)
        # GluonCV stores its per-image transform in an attribute that hides Gluon's
        # Dataset.transform / transform_first; normalisation goes through transform_first here
        del self.transform

    def _pair(self, idx):
        raise NotImplementedError

    def __getitem__(self, idx):
        img, mask = self._pair(idx)
        if self.mode == 'train':
            return self._sync_transform(img, mask)
        if self.mode == 'val':
            return self._val_sync_transform(img, mask)
        return self._img_transform(img), self._mask_transform(mask)


class StopSignSegmentation(_PairSegmentation):
    """A split of a built StopSign cache (:func:`build_stopsign`)."""

    def __init__(self, data_dir, split='train', mode=None, base_size=512, crop_size=480):
        self.pairs = load_stopsign(data_dir, split)
        super().__init__(mode or split, base_size, crop_size, root=os.path.expanduser(data_dir))

    def __len__(self):
        return len(self.pairs)

    def _pair(self, idx):
        img_path, mask_path = self.pairs[idx]
        try:
            pair = Image.open(img_path).convert('RGB'), Image.open(mask_path)
            pair[1].load()
        except OSError as e:  # PIL: UnidentifiedImageError, "image file is truncated", ...
            raise DataError('StopSign cache image %s or its mask is unreadable (%s); rebuild the '
                            'cache with --rebuild-data --coco-root ...' % (img_path, e)) from None
        return pair


class ArraySegmentation(_PairSegmentation):
    """In-memory ``(images (N, H, W, 3) uint8, masks (N, H, W) uint8)``, e.g. synthetic StopSign."""

    def __init__(self, images, masks, mode='train', base_size=64, crop_size=64):
        super().__init__(mode, base_size, crop_size)
        if images.shape[:3] != masks.shape or images.dtype != np.uint8:
            raise DataError('ArraySegmentation needs uint8 images (N, H, W, 3) and masks (N, H, W), '
                            'got %s %s and %s' % (images.dtype, images.shape, masks.shape))
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.images)

    def _pair(self, idx):
        return Image.fromarray(self.images[idx]), Image.fromarray(self.masks[idx])
