"""ONNX export (utils/export.py, docs/onnx.md): one model per exportable family exported and run in
ONNX Runtime against MXNet, the --params round trip, the one-line errors (an operator the exporter
cannot convert, missing packages, a released checkpoint that is not here) and the exit statuses.

The tests that export need onnx and onnxruntime (requirements.txt pins them; a venv made before they
were added skips those tests, saying so); the missing-package and usage tests run without them."""
import os
import subprocess
import sys

import numpy as np
import pytest

import net
from net.errors import AFFError
from utils import export as E
from utils.cli import run_main

import mxnet as mx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import onnx
    import onnxruntime  # noqa: F401
    import onnx.mapping  # noqa: F401
    MISSING = None
except ImportError as e:
    MISSING = e.name
needs_onnx = pytest.mark.skipif(MISSING is not None, reason='%s is not installed in this venv (make venv '
                                'installs the pinned onnx and onnxruntime of requirements.txt)' % MISSING)


def cli(argv, capsys):
    """(exit status, stdout, stderr) of `python -m utils.export ARGV`, run in this process."""
    with pytest.raises(SystemExit) as info:
        run_main(E.main, argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


# --- one model per family: export + ONNX Runtime ---------------------------------------------------

#: (registry name, input size): CIFAR cell host with iAFF, SK (the split-attention kind of fusion),
#: Inception, FPN (BilinearResize2D 'like', align_corners=False), AFINet (Reshape codes), ACmix (im2col)
FAMILY_MODELS = [('cifar_iaff_resnet20_b1', None), ('cifar_sk_resnet20_b1', None),
                 ('cifar_aff_inception_resnet20_b1', None), ('stopsign_aff_fpn_resnet20_b1', 64),
                 ('afi_resnet32', None), ('acmix_resnet26', 64)]


@needs_onnx
@pytest.mark.parametrize('name,size', FAMILY_MODELS)
def test_export_runs_in_onnx_runtime_like_mxnet(name, size, tmp_path):
    out = str(tmp_path / 'm.onnx')
    r = E.export_and_verify(name, out, size=size, batch_size=2)
    assert r.rel_errors and r.rel_error <= E.RTOL
    proto = onnx.load(out)
    onnx.checker.check_model(proto)
    assert [(o.domain, o.version) for o in proto.opset_import] == [('', E.OPSET)]
    assert proto.ir_version == 7                               # the lowest IR of opset 13
    weights = {t.name for t in proto.graph.initializer}
    assert [i.name for i in proto.graph.input] == ['data']      # weights are not graph inputs
    assert len(weights) > 10
    ops = {n.op_type for n in proto.graph.node}
    assert 'BatchNormalization' in ops and 'Conv' in ops        # BatchNorm is not folded in the file
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    side = size or net.get_model_info(name).input_size
    assert dims == [2, 3, side, side]
    # the ONNX file alone (a new session, another input) still computes the MXNet function
    x = np.random.RandomState(7).standard_normal(dims).astype(np.float32)
    got = E.session(out).run(None, {'data': x})
    ref = [o.asnumpy() for o in E._outputs(r.model(mx.nd.array(x)))]
    assert max(E.relative_errors(ref, got)) <= E.RTOL


@needs_onnx
def test_fpn_resize_needs_the_half_pixel_mode(tmp_path, monkeypatch):
    """The check can fail: without the align_corners=False fix of `_tidy` the FPN differs."""
    tidy = E._tidy
    monkeypatch.setattr(E, '_tidy', lambda onnx, path, half_pixel=(): tidy(onnx, path, ()))
    with pytest.raises(E.MismatchError, match='differs from MXNet'):
        E.export_and_verify('stopsign_aff_fpn_resnet20_b1', str(tmp_path / 'f.onnx'), size=64)


@needs_onnx
def test_fixed_gamma_batchnorm_exports_what_mxnet_computes(tmp_path):
    """Gluon's BatchNorm(scale=False) ignores its stored gamma; the export must as well (MXNet's
    translation passes the stored gamma on)."""
    model, size = E.load_model('cifar_aff_resnet20_b1')
    shape = (2, 3, size, size)
    x = E.example_input(shape)
    model.hybridize()
    before = model(x).asnumpy()
    (gamma,) = [p for n, p in model.collect_params().items() if n.endswith('_gamma') and p.grad_req == 'null']
    gamma.set_data(mx.nd.array([2.0, 0.5, 3.0]))
    assert np.abs(model(x).asnumpy() - before).max() == 0          # MXNet ignores it
    prefix = str(tmp_path / 'm')
    model.export(prefix)
    assert mx.nd.load(prefix + '-0000.params')['arg:' + gamma.name].asnumpy().tolist() == [2.0, 0.5, 3.0]
    _, params = E._symbol_and_params(prefix)
    assert params[gamma.name].asnumpy().tolist() == [1.0, 1.0, 1.0]
    out = str(tmp_path / 'g.onnx')
    E.export(model, shape, out)
    errors, _ = E.verify(out, model, x)
    assert max(errors) <= E.RTOL


@needs_onnx
def test_exporter_runs_at_opset_13_and_restores_onnx():
    newest, imports = onnx.defs.onnx_opset_version(), dict(onnx.checker.DEFAULT_CONTEXT.opset_imports)
    assert newest > E.OPSET                    # else the pinned onnx is older than this test assumes
    with E._opset(onnx, E.OPSET):
        assert onnx.defs.onnx_opset_version() == E.OPSET
        assert dict(onnx.checker.DEFAULT_CONTEXT.opset_imports) == {'': E.OPSET}
    assert onnx.defs.onnx_opset_version() == newest
    assert dict(onnx.checker.DEFAULT_CONTEXT.opset_imports) == imports


# --- the command line ------------------------------------------------------------------------------

@needs_onnx
def test_params_round_trip(tmp_path, capsys):
    """--params: the ONNX file computes the network of those weights (not of the random ones)."""
    name = 'cifar_aff_resnet20_b1'
    model, size = E.load_model(name, seed=3)
    params, out = str(tmp_path / 'w.params'), str(tmp_path / 'w.onnx')
    model.save_parameters(params)
    code, stdout, err = cli(['--model', name, '--params', params, '--out', out], capsys)
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].startswith('exported %s (input 1x3x32x32, opset 13' % name) and out in lines[0]
    assert lines[1].startswith('verified in ONNX Runtime') and '<= 1e-04' in lines[1]
    x = E.example_input((1, 3, size, size), seed=11)
    got = E.session(out).run(None, {'data': x.asnumpy()})[0]
    loaded = net.get_model(name, pretrained=params)
    assert np.abs(got - loaded(x).asnumpy()).max() <= E.RTOL * np.abs(got).max()
    other, _ = E.load_model(name, seed=4)
    assert np.abs(got - other(x).asnumpy()).max() > 0.01 * np.abs(got).max()


@needs_onnx
def test_mismatch_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    """A wrong export (one weight changed in the file) is caught: one line, exit status 1."""
    export = E.export

    def spoiled(model, shape, out, name='model'):
        proto = export(model, shape, out, name)
        for tensor in proto.graph.initializer:
            if tensor.name.endswith('dense0_weight'):
                w = onnx.numpy_helper.to_array(tensor) * 1.01
                tensor.CopyFrom(onnx.numpy_helper.from_array(w, tensor.name))
        onnx.save(proto, out)
        return proto
    monkeypatch.setattr(E, 'export', spoiled)
    code, _, err = cli(['--model', 'cifar_add_resnet20_b1', '--out', str(tmp_path / 'x.onnx')], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith('error: ONNX Runtime differs from MXNet for cifar_add_resnet20_b1')


@needs_onnx
def test_unconvertible_operator_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    """Every family exports now, so an operator without translation is made by removing one."""
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    for table in MXNetGraph.registry_.values():
        if 'Activation' in table:
            monkeypatch.delitem(table, 'Activation')
    code, out, err = cli(['--model', 'cifar_aff_resnet20_b1', '--out', str(tmp_path / 'a.onnx')], capsys)
    assert code == 2 and out == ''
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith('error: cannot export cifar_aff_resnet20_b1 to ONNX: MXNet\'s exporter '
                          '(opset 13) fails on operator Activation (node ')
    assert 'No conversion function registered for op type Activation' in err
    assert not (tmp_path / 'a.onnx').exists()


@needs_onnx
def test_exporter_failure_outside_an_operator_is_one_line(tmp_path, capsys, monkeypatch):
    """The failure MXNet 1.9.1 gives with a current onnx when nothing pins opset 13."""
    def fail(*args, **kwargs):
        raise onnx.checker.ValidationError('Unrecognized attribute: axes for operator ReduceMean\n\n'
                                           '==> Context: Bad node spec for node.')
    monkeypatch.setattr(mx.onnx, 'export_model', fail)
    code, _, err = cli(['--model', 'cifar_aff_resnet20_b1', '--out', str(tmp_path / 'r.onnx')], capsys)
    assert code == 2
    assert err.strip() == ("error: cannot export cifar_aff_resnet20_b1 to ONNX: MXNet's exporter failed "
                           "before converting an operator: ValidationError: Unrecognized attribute: axes "
                           "for operator ReduceMean")


@pytest.mark.parametrize('module', ['onnx', 'onnxruntime', 'onnx.mapping'])
def test_missing_package_is_one_line_naming_the_extra(module, capsys, monkeypatch):
    if module != 'onnx' and MISSING == 'onnx':
        pytest.skip('onnx is not installed: only its own message can be checked')
    monkeypatch.setitem(sys.modules, module, None)        # import raises ImportError
    if module == 'onnx.mapping':
        monkeypatch.delattr(sys.modules['onnx'], 'mapping', raising=False)
    code, out, err = cli(['--model', 'cifar_aff_resnet20_b1', '--no-verify'] if module != 'onnxruntime'
                         else ['--model', 'cifar_aff_resnet20_b1'], capsys)
    assert code == 2 and out == ''
    assert len(err.strip().splitlines()) == 1
    if module == 'onnx.mapping':
        assert "MXNet 1.9.1's exporter needs: pip install onnx==1.18.0" in err
    else:
        assert err.startswith('error: ONNX %s needs %s, which is not installed: pip install '
                              "'openaff-gluon[onnx]'" % ('export' if module == 'onnx' else
                                                         'Runtime verification', module))


def test_pretrained_without_the_checkpoint_is_the_model_store_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv('AFF_PARAMS_DIR', str(tmp_path))
    monkeypatch.setattr(E, 'onnx_modules', lambda runtime=True: (None, None))   # onnx not needed
    code, out, err = cli(['--model', 'cifar_aff_resnet20_b1', '--pretrained'], capsys)
    assert code == 2 and out == ''
    assert err.strip().splitlines() == [
        "error: no released checkpoint for model 'cifar_aff_resnet20_b1'; released checkpoints exist for: "
        "aff_resnet50, aff_resnext50_32x4d, cifar_aff_resnet32, cifar_aff_resnext38_32x4d, "
        "cifar_aff_resnext47_32x4d, iaff_resnet50, iaff_resnext50_32x4d (or pass "
        "pretrained='/path/to/file.params')"]


@pytest.mark.parametrize('argv,message', [
    ([], 'give --model NAME (or --all-families)'),
    (['--model', 'cifar_aff_resnet20_b1', '--params', 'x.params', '--pretrained'], 'not allowed with'),
    (['--model', 'cifar_aff_resnet20_b1', '--batch-size', '0'], 'expected a positive integer'),
    (['--all-families', '--model', 'cifar_aff_resnet20_b1'], '--all-families takes no --model'),
    (['--model', 'cifar_aff_resnet20_b1', '--no-verify', '--bench'], 'need onnxruntime'),
])
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    code, out, err = cli(argv, capsys)
    assert code == 2 and out == ''
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_unknown_model_and_bad_constructor_argument(capsys):
    code, _, err = cli(['--model', 'cifar_aff_resnet20', '--no-verify'], capsys)
    assert code == 2 and "unknown model 'cifar_aff_resnet20'" in err
    with pytest.raises(AFFError, match='does not take these arguments'):
        E.load_model('cifar_aff_resnet20_b1', no_such_argument=1)


@needs_onnx
def test_command_line_in_a_child_process(tmp_path):
    """`python -m utils.export` itself: exit 0 and the two lines; the file is written."""
    out = tmp_path / 'c.onnx'
    res = subprocess.run([sys.executable, '-m', 'utils.export', '--model', 'cifar_msgau_resnet20_b1',
                          '--out', str(out), '--batch-size', '3'], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count('\n') == 2 and 'verified in ONNX Runtime' in res.stdout
    assert 'Traceback' not in res.stderr and out.stat().st_size > 10000
