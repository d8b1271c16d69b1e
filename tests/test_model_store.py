"""net.model_store (the released-checkpoint table, lookup, hashing, verified loading),
utils.checkpoint (atomic saves) and params/README.md.

Nothing here touches the network, this repo's params/ or ~/.mxnet: every test runs
with the search directories pointed at empty temporary directories.
"""
import dataclasses
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from mxnet.gluon import nn

import net
from net import model_store as ms
from net.errors import AFFError, CheckpointError
from utils.checkpoint import save_params_atomic, save_states_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BN_NAMES = ('gamma', 'beta', 'running_mean', 'running_var')
EMPTY_BLOB = 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'   # git hash-object /dev/null

#: docs/official-code.md §3.6, transcribed independently of net/model_store.py
OFFICIAL_HASHES = {
    'cifar100/AFF-ResNet-32/0.8357-cifar100-ASKCFuse-resnet-32-c-4-s-1-best.params':
        'e5f9164dd45269fa776b65c4eb95308ff7465e80',
    'cifar100/AFF-ResNet-32/superclasses/0.9078-cifar100-cifar100-ASKCFuse-resnet-32-c-4-s-1-best.params':
        '296ae7f3672ba26378122a05ed8ca3c332e60e8e',
    'cifar100/AFF-ResNeXt-38-32x4d/0.9123-cifar100-ASKCFuse-resneXt-38-c-4-s-1-best.params':
        '95e0478d1e66f3c65bf88e440e30631aaec08ced',
    'cifar100/AFF-ResNeXt-47-32x4d/0.8538-cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1-best.params':
        'e8a6230d2fe602857292aba3b942f192d41af286',
    'cifar100/AFF-ResNeXt-47-32x4d/superclass/0.9184-cifar100-ASKCFuse-resneXt-47-32x4-c-4-s-1-best.params':
        '764e2ec951bf7e4fb3738b381f7c204b528db333',
    'imagenet/AFF-ResNet-50/0.2028-imagenet-ImageNet-ASKCFuse-resnet--50-s-3-235-best.params':
        'aedcb94bc954b03fccedaace6ae33a85c0831eb3',
    'imagenet/iAFF-ResNet-50/0.2022-imagenet-ImageNet-ResGlobLocaforGlobLocaCha-resnet--50-s-3-238-best.params':
        '8f0e020af632bb0f83e19b667894a783cbec4450',
    'imagenet/AFF-ResNeXt-50/0.2028-imagenet-ImageNet-ASKCFuse-resnext--50-s-3-231-best.params':
        '2dbc5a055fabfb2d37e451b02ef6cad8b04bb709',
    'imagenet/iAFF-ResNeXt-50/0.1978-imagenet-ImageNet-ResGlobLocaforGlobLocaCha-resnext--50-s-3-238-best.params':
        '769c70323f536e7cb89eaf246631f36515249e36',
}


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def isolated_search_dirs(tmp_path_factory, monkeypatch):
    """Point every default search directory at an empty temporary directory."""
    base = tmp_path_factory.mktemp('nowhere')
    monkeypatch.setattr(ms, 'REPO_PARAMS_DIR', str(base / 'repo_params'))
    monkeypatch.setenv('MXNET_HOME', str(base / 'mxnet_home'))
    monkeypatch.delenv('AFF_PARAMS_DIR', raising=False)
    return base


def one_line(excinfo):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    assert isinstance(excinfo.value, AFFError)
    return msg


def randomize_bn(model, seed):
    """Random BatchNorm tensors (values that float16 cannot represent exactly)."""
    rng = np.random.RandomState(seed)
    for name, p in model._collect_params_with_prefix().items():
        kind = name.rsplit('.', 1)[1]
        if kind in BN_NAMES:
            low = 0.5 if kind in ('running_var', 'gamma') else -0.5
            p.set_data(mx.nd.array(rng.uniform(low, low + 1.0, p.shape), dtype=p.dtype))


def seeded(name, seed=1, **kwargs):
    mx.random.seed(seed)
    model = net.get_model(name, **kwargs)
    model.initialize(mx.init.Xavier(magnitude=2))
    randomize_bn(model, seed)
    return model


def params_np(model):
    return {k: p.data().asnumpy() for k, p in model._collect_params_with_prefix().items()}


def patch_record(monkeypatch, model, tag, **changes):
    """Replace one RELEASED record; returns the new record."""
    old = next(c for c in ms.RELEASED if c.model == model and c.tag == tag)
    new = dataclasses.replace(old, **changes)
    monkeypatch.setattr(ms, 'RELEASED', tuple(new if c is old else c for c in ms.RELEASED))
    return new


@pytest.fixture(scope='module')
def r32(tmp_path_factory):
    """A seeded cifar_aff_resnet32 saved to disk: (path, input, inference output, params)."""
    model = seeded('cifar_aff_resnet32')
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 32, 32)))
    out = model(x).asnumpy()
    assert np.isfinite(out).all() and out.std() > 0
    path = str(tmp_path_factory.mktemp('r32') / 'r32.params')
    model.save_parameters(path)
    return path, x, out, params_np(model)


# ----------------------------------------------------------------------------- the table
def test_released_table_records():
    assert len(ms.RELEASED) == 9
    assert all(isinstance(c, ms.Checkpoint) for c in ms.RELEASED)
    assert len({c.file for c in ms.RELEASED}) == 9
    assert len({c.path for c in ms.RELEASED}) == 9
    assert len({c.blob_sha1 for c in ms.RELEASED}) == 9
    assert {c.relpath: c.blob_sha1 for c in ms.RELEASED} == OFFICIAL_HASHES
    assert ms.URL_ROOT == 'https://github.com/YimianDai/open-aff/raw/master/'
    with pytest.raises(dataclasses.FrozenInstanceError):
        ms.RELEASED[0].tag = 'x'
    for c in ms.RELEASED:
        assert re.fullmatch('[0-9a-f]{40}', c.blob_sha1)
        assert c.path.startswith('params/') and c.path.endswith('/' + c.file)
        assert c.url == ms.URL_ROOT + c.path
        assert c.file.startswith('%.4f-' % c.value)
        assert re.fullmatch('[a-z]+', c.tag)
        assert c.log.endswith('.log') and c.note and '\n' not in c.note
        if c.label_mode == 'imagenet':
            assert (c.classes, c.dtype, c.metric) == (1000, 'float16', 'top1_err')
            assert c.file.endswith('-%d-best.params' % c.epoch) and c.path.startswith('params/imagenet/')
        else:
            assert (c.classes, c.dtype, c.metric) == (100, 'float32', 'accuracy')
            assert c.label_mode in ('fine', 'coarse') and c.path.startswith('params/cifar100/')
            assert c.tag == {'fine': 'fine', 'coarse': 'superclass'}[c.label_mode]
            assert 0 < c.epoch < 640
    fine = {(c.model, c.value) for c in ms.RELEASED if c.label_mode == 'fine'}
    assert fine == {('cifar_aff_resnet32', 0.8357), ('cifar_aff_resnext47_32x4d', 0.8538)}
    coarse = {(c.model, c.value) for c in ms.RELEASED if c.label_mode == 'coarse'}
    assert coarse == {('cifar_aff_resnet32', 0.9078), ('cifar_aff_resnext38_32x4d', 0.9123),
                      ('cifar_aff_resnext47_32x4d', 0.9184)}
    imagenet = {(c.model, c.value, c.epoch) for c in ms.RELEASED if c.label_mode == 'imagenet'}
    assert imagenet == {('aff_resnet50', 0.2028, 235), ('iaff_resnet50', 0.2022, 238),
                        ('aff_resnext50_32x4d', 0.2028, 231), ('iaff_resnext50_32x4d', 0.1978, 238)}


def test_released_table_defaults_and_tags():
    models = {c.model for c in ms.RELEASED}
    assert len(models) == 7
    for model in models:
        records = ms.checkpoints_of(model)
        assert len({c.tag for c in records}) == len(records)
        defaults = [c for c in records if c.default]
        assert len(defaults) == 1 and ms.default_checkpoint(model) is defaults[0]
        if any(c.label_mode == 'fine' for c in records):
            assert defaults[0].label_mode == 'fine'
    assert ms.default_checkpoint('cifar_aff_resnext38_32x4d').tag == 'superclass'
    assert ms.default_checkpoint('cifar_resnet32') is None and ms.checkpoints_of('cifar_resnet32') == ()


@pytest.mark.parametrize('model', sorted({c.model for c in ms.RELEASED}))
def test_released_models_build_with_the_table_classes(model):
    assert model in net.get_model_list()
    built = net.get_model(model)
    heads = [(k, p.shape) for k, p in built._collect_params_with_prefix().items()
             if k in ('output.weight', 'fc.weight')]
    assert len(heads) == 1
    assert {c.classes for c in ms.checkpoints_of(model)} == {heads[0][1][0]}


def test_params_readme_contains_the_generated_table():
    with open(os.path.join(ROOT, 'params', 'README.md'), encoding='utf-8') as f:
        text = f.read()
    table = ms.released_table_markdown()
    assert table in text
    assert text.count('.params](https://') == len(ms.RELEASED) == table.count('\n') - 2
    for c in ms.RELEASED:
        assert c.blob_sha1 in table and c.url in table
    assert 'git hash-object' in text and "pretrained='superclass'" in text


# ----------------------------------------------------------------------------- hashing
@pytest.mark.parametrize('content', [b'', b'hello\0world\r\n', None])
def test_git_blob_sha1_equals_git_hash_object(tmp_path, content):
    if content is None:   # larger than the read chunk: exercises the streaming
        content = np.random.RandomState(3).bytes(2 * (1 << 20) + 12345)
    path = tmp_path / 'blob.bin'
    path.write_bytes(content)
    if content == b'':
        assert ms.git_blob_sha1(path) == EMPTY_BLOB
    git = shutil.which('git')
    if git is None:
        pytest.skip('git is not installed')
    res = subprocess.run([git, 'hash-object', '--no-filters', str(path)], cwd=tmp_path,
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    assert ms.git_blob_sha1(str(path)) == res.stdout.strip()


# ----------------------------------------------------------------------------- loading
def test_round_trip_through_get_model_by_path(r32):
    path, x, out, params = r32
    loaded = net.get_model('cifar_aff_resnet32', pretrained=path)
    assert set(params_np(loaded)) == set(params)
    for k, v in params_np(loaded).items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    np.testing.assert_array_equal(loaded(x).asnumpy(), out)
    # os.PathLike works too, and so does loading into an already initialised network
    other = seeded('cifar_aff_resnet32', seed=7)
    assert not np.array_equal(other(x).asnumpy(), out)
    assert ms.load_params(other, path) == path
    np.testing.assert_array_equal(other(x).asnumpy(), out)
    assert ms.find_checkpoint('cifar_aff_resnet32', Path(path)) == (None, path)


def test_deferred_shapes_compare_known_dims_only(tmp_path):
    def mlp(out):
        m = nn.HybridSequential()
        m.add(nn.Dense(5), nn.Dense(out))   # in_units unknown until the first forward
        return m
    src = mlp(3)
    src.initialize()
    x = mx.nd.ones((2, 7))
    ref = src(x).asnumpy()
    path = str(tmp_path / 'mlp.params')
    src.save_parameters(path)
    dst = mlp(3)
    ms.load_params(dst, path)
    assert dst[0].weight.shape == (5, 7)
    np.testing.assert_array_equal(dst(x).asnumpy(), ref)
    with pytest.raises(CheckpointError) as exc:
        ms.load_params(mlp(4), path)
    assert 'classes=3' in one_line(exc)


def test_imagenet_fp16_checkpoint_loads_into_float32(tmp_path):
    src = seeded('aff_resnet50', seed=2)
    orig = params_np(src)
    src.cast('float16')
    path = str(tmp_path / 'aff_resnet50_fp16.params')
    src.save_parameters(path)
    del src
    saved = mx.nd.load(path)
    assert set(saved) == set(orig)
    kinds = {}
    for name, arr in saved.items():
        kind = name.rsplit('.', 1)[1]
        want = np.float32 if kind in BN_NAMES else np.float16
        assert kind in BN_NAMES + ('weight', 'bias')
        assert arr.dtype == want, (name, arr.dtype)
        kinds.setdefault(kind, 0)
        kinds[kind] += 1
    assert set(kinds) == set(BN_NAMES + ('weight', 'bias'))
    del saved

    loaded = net.get_model('aff_resnet50', pretrained=path)
    got = loaded._collect_params_with_prefix()
    assert set(got) == set(orig)
    rounded_somewhere = False
    for name, p in got.items():
        data = p.data().asnumpy()
        assert np.dtype(p.dtype) == np.float32 and data.dtype == np.float32, name
        if name.rsplit('.', 1)[1] in BN_NAMES:
            np.testing.assert_array_equal(data, orig[name], err_msg=name)   # kept in fp32
            rounded_somewhere |= not np.array_equal(
                orig[name].astype(np.float16).astype(np.float32), orig[name])
        else:
            np.testing.assert_array_equal(data, orig[name].astype(np.float16).astype(np.float32),
                                          err_msg=name)
    assert rounded_somewhere   # the BN check above distinguishes fp32 from fp16-rounded values


# ----------------------------------------------------------------------------- table lookup
def test_table_lookup_verifies_the_blob_hash(r32, tmp_path, monkeypatch):
    path, x, out, _ = r32
    root = tmp_path / 'root'
    root.mkdir()
    rec = ms.default_checkpoint('cifar_aff_resnet32')
    dst = root / rec.file
    shutil.copyfile(path, dst)
    sha = ms.git_blob_sha1(dst)
    rec = patch_record(monkeypatch, 'cifar_aff_resnet32', rec.tag, blob_sha1=sha)

    for sel in (True, rec.tag, sha[:6], sha[:12].upper(), sha):
        assert ms.find_checkpoint('cifar_aff_resnet32', sel, root=root) == (rec, str(dst))
    model = net.get_model('cifar_aff_resnet32', pretrained=True, root=root)
    np.testing.assert_array_equal(model(x).asnumpy(), out)
    model = net.get_model('cifar_aff_resnet32', pretrained=sha[:8], root=str(root))
    np.testing.assert_array_equal(model(x).asnumpy(), out)

    # one flipped byte inside the tensor data: still a readable file, but not the released one
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained='fine', root=root)
    msg = one_line(exc)
    assert 're-download' in msg and rec.url in msg
    assert sha in msg and ms.git_blob_sha1(dst) in msg


@pytest.mark.parametrize('where', ['root', 'env', 'repo', 'mxnet_home'])
@pytest.mark.parametrize('layout', ['bare', 'official'])
def test_search_directories_and_layouts(tmp_path, monkeypatch, where, layout):
    rec = ms.default_checkpoint('aff_resnet50')
    dirs = {'root': tmp_path / 'root', 'env': tmp_path / 'env', 'repo': tmp_path / 'repo',
            'mxnet_home': tmp_path / 'mxhome' / 'models'}
    monkeypatch.setenv('AFF_PARAMS_DIR', str(dirs['env']))
    monkeypatch.setattr(ms, 'REPO_PARAMS_DIR', str(dirs['repo']))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxhome'))
    assert ms.search_dirs(dirs['root']) == [str(dirs[k]) for k in ('root', 'env', 'repo', 'mxnet_home')]
    target = dirs[where] / (rec.file if layout == 'bare' else rec.relpath)
    target.parent.mkdir(parents=True)
    target.write_bytes(b'x')
    assert ms.find_checkpoint('aff_resnet50', True, root=dirs['root']) == (rec, str(target))
    # an earlier directory wins
    if where != 'root':
        first = dirs['root'] / rec.file
        first.parent.mkdir(parents=True, exist_ok=True)
        first.write_bytes(b'y')
        assert ms.find_checkpoint('aff_resnet50', 'head', root=dirs['root'])[1] == str(first)


def test_default_mxnet_home(monkeypatch):
    monkeypatch.delenv('MXNET_HOME')
    assert ms.search_dirs()[-1] == os.path.join(os.path.expanduser('~'), '.mxnet', 'models')


def test_coarse_label_checkpoint_logs_one_warning(r32, tmp_path, monkeypatch, caplog):
    path, x, out, _ = r32
    root = tmp_path / 'root'
    fine = ms.default_checkpoint('cifar_aff_resnet32')
    coarse = next(c for c in ms.checkpoints_of('cifar_aff_resnet32') if c.label_mode == 'coarse')
    for rec in (fine, coarse):
        dst = root / rec.relpath
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        patch_record(monkeypatch, rec.model, rec.tag, blob_sha1=ms.git_blob_sha1(dst))
    with caplog.at_level(logging.WARNING, logger='net'):
        net.get_model('cifar_aff_resnet32', pretrained=True, root=root)
        assert [r for r in caplog.records if r.name == 'net'] == []
        model = net.get_model('cifar_aff_resnet32', pretrained='superclass', root=root)
    records = [r for r in caplog.records if r.name == 'net']
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    msg = records[0].getMessage()
    assert '20' in msg and '0..19' in msg and '100 outputs' in msg and '\n' not in msg
    np.testing.assert_array_equal(model(x).asnumpy(), out)


# ----------------------------------------------------------------------------- errors
def test_missing_file_names_url_and_destination(tmp_path):
    rec = ms.default_checkpoint('aff_resnet50')
    with pytest.raises(CheckpointError) as exc:
        net.get_model('aff_resnet50', pretrained=True, root=tmp_path)
    msg = one_line(exc)
    assert rec.file in msg and rec.url in msg and 'download' in msg
    assert str(tmp_path) in msg and ms.REPO_PARAMS_DIR in msg and 'put it in' in msg


def test_unknown_tag_lists_the_valid_ones():
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained='coarse-ish')
    msg = one_line(exc)
    assert "'fine'" in msg and "'superclass'" in msg and 'coarse-ish' in msg


def test_sha_prefix_errors():
    other = ms.default_checkpoint('iaff_resnext50_32x4d')
    with pytest.raises(CheckpointError) as exc:
        ms.find_checkpoint('cifar_aff_resnet32', other.blob_sha1[:7])
    msg = one_line(exc)
    assert 'iaff_resnext50_32x4d' in msg and 'get_model' in msg
    with pytest.raises(CheckpointError) as exc:
        ms.find_checkpoint('cifar_aff_resnet32', '000000')
    assert "'fine'" in one_line(exc)


def test_model_without_released_checkpoint():
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_resnet32', pretrained=True)
    msg = one_line(exc)
    assert 'cifar_resnet32' in msg and 'cifar_aff_resnet32' in msg and 'aff_resnet50' in msg
    assert "pretrained='/path/to/file.params'" in msg


def test_nonexistent_path(tmp_path):
    missing = str(tmp_path / 'nope.params')
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained=missing)
    assert missing in one_line(exc) and 'existing' in str(exc.value)


@pytest.mark.parametrize('damage', ['truncated', 'header', 'empty', 'garbage'])
def test_corrupt_file(r32, tmp_path, damage):
    path = r32[0]
    data = Path(path).read_bytes()
    bad = {'truncated': data[:len(data) // 2], 'header': data[:30], 'empty': b'',
           'garbage': np.random.RandomState(5).bytes(4096)}[damage]
    target = tmp_path / 'bad.params'
    target.write_bytes(bad)
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained=str(target))
    msg = one_line(exc)
    assert 'not a readable MXNet parameter file' in msg and 're-download' in msg
    assert str(target) in msg


def test_checkpoint_of_another_architecture(r32):
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_iaff_resnet32', pretrained=r32[0])
    msg = one_line(exc)
    assert 'missing from the file' in msg and 'local_att2' in msg
    assert 'different architecture' in msg and 'classes=' not in msg


def test_other_head_size_says_which_classes(tmp_path):
    path = str(tmp_path / 'ten.params')
    seeded('cifar_aff_resnet32', classes=10).save_parameters(path)
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained=path)
    msg = one_line(exc)
    assert 'this file has a 10-class head: build the model with classes=10' in msg
    assert 'output.weight' in msg
    net.get_model('cifar_aff_resnet32', pretrained=path, classes=10)   # and that fix works


def test_paper_downsample_names_get_a_hint(tmp_path):
    path = str(tmp_path / 'paper.params')
    seeded('cifar_aff_resnet32_paper').save_parameters(path)
    with pytest.raises(CheckpointError) as exc:
        net.get_model('cifar_aff_resnet32', pretrained=path)
    msg = one_line(exc)
    assert 'downsample.0' in msg and "'_paper' variant" in msg


# ----------------------------------------------------------------------------- atomic saves
def test_save_params_atomic_writes_a_loadable_file(r32, tmp_path):
    path, x, out, params = r32
    model = net.get_model('cifar_aff_resnet32', pretrained=path)
    dst = tmp_path / 'new' / 'dir' / 'ckpt.params'
    assert save_params_atomic(model, str(dst)) == str(dst)
    assert os.listdir(dst.parent) == ['ckpt.params']
    assert dst.read_bytes() == Path(path).read_bytes()
    np.testing.assert_array_equal(
        net.get_model('cifar_aff_resnet32', pretrained=str(dst))(x).asnumpy(), out)


def test_save_params_atomic_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    model = seeded('cifar_aff_resnet20_b1')
    dst = tmp_path / 'ckpt.params'
    save_params_atomic(model, dst)
    before = dst.read_bytes()
    written = []

    def broken_save(filename, *args, **kwargs):
        with open(filename, 'wb') as f:
            f.write(before[:100])
        written.append(filename)
        raise RuntimeError('disk full')

    monkeypatch.setattr(model, 'save_parameters', broken_save)
    with pytest.raises(RuntimeError, match='disk full'):
        save_params_atomic(model, dst)
    assert written and written[0] != str(dst) and os.path.dirname(written[0]) == str(tmp_path)
    assert dst.read_bytes() == before
    assert os.listdir(tmp_path) == ['ckpt.params']


def test_save_states_atomic(tmp_path):
    model = seeded('cifar_aff_resnet20_b1')
    trainer = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    with mx.autograd.record():
        loss = model(mx.nd.ones((2, 3, 32, 32))).sum()
    loss.backward()
    trainer.step(2)
    dst = tmp_path / 'ckpt.states'
    assert save_states_atomic(trainer, str(dst)) == str(dst)
    assert os.listdir(tmp_path) == ['ckpt.states'] and dst.stat().st_size > 0
    fresh = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    fresh.load_states(str(dst))
    assert fresh._updaters[0].states.keys() == trainer._updaters[0].states.keys()
