"""Corrupt data ends in one error line, never a C++ abort or a traceback: RecordIO headers and images,
truncated folder images, malformed COCO annotations, a corrupt StopSign cache image."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import test_stopsign as TS
from conftest import ROOT
from utils.data import DataError
from utils.data import imagenet as I
from utils.data import stopsign as S

N = 200  # more records than the quick check samples (64): a broken one can hide between them


@pytest.fixture(scope='module')
def rec(tmp_path_factory):
    root = tmp_path_factory.mktemp('faults')
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, size=(40, 36, 3), dtype=np.uint8) for _ in range(N)]
    train = I.write_tiny_rec(str(root / 'train'), images, rng.randint(0, 4, size=N))
    val = I.write_tiny_rec(str(root / 'val'), images[:8], np.zeros(8))
    with open(train[1]) as f:
        offsets = sorted(int(line.split()[1]) for line in f if line.strip())
    sampled = set(offsets[::max(1, N // 64)]) | {offsets[-1]}
    hidden = next(o for o in offsets[N // 2:] if o not in sampled)
    return dict(root=root, train=train, val=val, hidden=hidden)


def _corrupt(src, dst, offset, data):
    with open(src, 'rb') as f:
        buf = bytearray(f.read())
    buf[offset:offset + len(data)] = data
    with open(dst, 'wb') as f:
        f.write(bytes(buf))


def _train(rec, train_rec, tmp_path, *extra):
    """train_imagenet.py in a child process (a C++ abort must not take pytest with it)."""
    argv = ['--use-rec', '--rec-train', train_rec, '--rec-train-idx', rec['train'][1],
            '--rec-val', rec['val'][0], '--rec-val-idx', rec['val'][1],
            '--model', 'cifar_aff_resnet20_b1', '--classes', '4', '--input-size', '32',
            '--batch-size', '50', '--num-epochs', '1', '--warmup-epochs', '0', '-j', '1',
            '--logging-file', str(tmp_path / 'train.log'), '--save-dir', str(tmp_path / 'p')]
    return subprocess.run([sys.executable, os.path.join(ROOT, 'train_imagenet.py')] + argv +
                          list(extra), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def _one_line(res, *words):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip().startswith(('error:', 'terminate',
                                                                            'Traceback'))]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: '), res.stderr
    assert 'Traceback' not in res.stderr and 'terminate called' not in res.stderr, res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_broken_record_header_anywhere_is_one_line_before_training(rec, tmp_path):
    bad = str(tmp_path / 'bad.rec')
    _corrupt(rec['train'][0], bad, rec['hidden'], b'\0\0\0\0')
    # the quick check misses it (MXNet would abort the process from C++ later) ...
    assert I.verify_rec(bad, rec['train'][1], 'quick') == N
    # ... the default check of every header names it
    _one_line(_train(rec, bad, tmp_path), bad, 'byte %d' % rec['hidden'])
    assert not (tmp_path / 'p').exists() or not os.listdir(str(tmp_path / 'p'))


def test_a_garbled_image_in_a_record_is_one_line(rec, tmp_path):
    bad = str(tmp_path / 'garbled.rec')
    # keep the RecordIO and image-record headers (8 + 24 bytes), destroy the JPEG's start
    _corrupt(rec['train'][0], bad, rec['hidden'] + 8 + 24, bytes(200))
    _one_line(_train(rec, bad, tmp_path), 'reading batch', 'the training data', '--rec-verify decode')
    # --rec-verify decode names the record before training
    _one_line(_train(rec, bad, tmp_path, '--rec-verify', 'decode'), bad,
              'record at byte %d' % rec['hidden'])


def test_a_truncated_jpeg_in_an_image_folder_is_an_error(tmp_path):
    path = str(tmp_path / 'cut.jpg')
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (64, 64, 3)).astype(np.uint8)).save(
        path, quality=90)
    with open(path, 'rb') as f:
        whole = f.read()
    with pytest.raises(DataError, match='truncated'):
        I._decode(whole[:len(whole) // 2], path)
    assert I._decode(whole, path).shape == (64, 64, 3)
    png = str(tmp_path / 'x.png')
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    with open(png, 'rb') as f:
        whole = f.read()
    with pytest.raises(DataError, match='IEND'):
        I._decode(whole[:-12], png)


def test_coco_files_of_the_wrong_structure_are_one_line(tmp_path):
    coco = str(tmp_path / 'coco')
    TS._write_coco(coco)
    ann = os.path.join(coco, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        good = json.load(f)
    with open(ann, 'w') as f:
        json.dump([good], f)                               # a list, not an object
    with pytest.raises(DataError, match='not a COCO instances file'):
        S.build_stopsign(coco, str(tmp_path / 'cache1'))
    broken = dict(good)
    broken['annotations'] = [dict(a, segmentation=[[1.0, 2.0, 'x']]) if a['category_id'] == 13
                             else a for a in good['annotations']]
    with open(ann, 'w') as f:
        json.dump(broken, f)
    with pytest.raises(DataError, match='annotation of image .* is malformed'):
        S.build_stopsign(coco, str(tmp_path / 'cache2'))


def test_a_corrupt_stopsign_cache_image_is_one_line(tmp_path):
    coco, cache = str(tmp_path / 'coco'), str(tmp_path / 'cache')
    TS._write_coco(coco)
    S.build_stopsign(coco, cache)
    ds = S.StopSignSegmentation(cache, 'train', 'val', 32, 32)
    img = ds.pairs[0][0]
    with open(img, 'r+b') as f:
        f.truncate(50)
    with pytest.raises(DataError, match='unreadable'):
        ds[0]
