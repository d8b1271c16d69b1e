"""The benchmark suite runs on a tiny setting and writes its JSON schema (no timing is asserted anywhere);
that the paths it measures compute the same function is tests/test_cpu_speed.py's subject."""
import json
import os
import subprocess
import sys

import mxnet as mx

from conftest import ROOT


def _bench(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'utils.bench'] + args, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_suite_writes_the_schema_and_the_markdown_tables(tmp_path):
    out = tmp_path / 'suite.json'
    res = _bench(['--quick', '--json', str(out)], tmp_path)
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert (rec['schema'], rec['kind'], rec['quick']) == (1, 'suite', True)
    assert rec['threads'] == '1' and rec['mxnet_version'] == mx.__version__ and isinstance(rec['mkldnn'], bool)
    assert rec['machine']['cpu_model'] and rec['machine']['usable_cores'] >= 1
    assert isinstance(rec['mxnet_features'], list) and 'MKLDNN' in rec['mxnet_features']
    assert [m['model'] for m in rec['models']] == ['cifar_add_resnet20_b1', 'cifar_aff_resnet20_b1']
    for m in rec['models']:
        assert (m['batch_size'], m['input_size']) == (2, 32)
        assert set(m['train']) == {'baseline', 'fast', 'speedup'}
        # ONNX Runtime on the exported weights, in the same windows (issue 16)
        assert set(m['inference']) == {'baseline', 'fast_hybrid', 'static', 'fast', 'onnxruntime',
                                       'speedup'}
        assert m['onnxruntime_error'] is None and m['inference_rel_err_vs_baseline']['onnxruntime'] <= 1e-4
        for phase in ('train', 'inference'):
            for k, v in m[phase].items():
                if k != 'speedup':
                    assert len(v['window_seconds']) == rec['windows'] and v['images_per_s'] > 0
        assert max(v for k, v in m['inference_rel_err_vs_baseline'].items() if k != 'onnxruntime') <= 2e-5
    (ov,) = rec['fusion_overhead']
    assert (ov['model'], ov['host']) == ('cifar_aff_resnet20_b1', 'cifar_add_resnet20_b1')
    assert 0 < ov['flops']['macs'] < 0.2
    assert set(ov['train']) == {'baseline', 'fast', 'ratio_to_flops'}
    for key in ('cifar_standard', 'cifar_autoaugment', 'imagenet_recordio'):
        assert rec['data'][key]['images_per_s'] > 0
    md = _bench(['--markdown', str(out)], tmp_path)
    assert md.returncode == 0, md.stderr
    assert md.stdout.count('| cifar_aff_resnet20_b1 |') == 2 and '| imagenet_recordio |' in md.stdout
    assert '| ONNX Runtime |' in md.stdout and 'no ONNX Runtime figure' not in md.stdout
    # a record without the column (written before it existed) says so instead of failing
    for m in rec['models']:
        del m['inference']['onnxruntime'], m['onnxruntime_error']
    out.write_text(json.dumps(rec))
    md = _bench(['--markdown', str(out)], tmp_path)
    assert md.returncode == 0, md.stderr
    assert 'cifar_aff_resnet20_b1: record older than the column' in md.stdout


def test_markdown_of_a_non_suite_file_is_one_error_line(tmp_path):
    bad = tmp_path / 'x.json'
    bad.write_text('{"model": "m"}')
    res = _bench(['--markdown', str(bad)], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith('error: ') and res.stderr.count('\n') == 1


def test_model_and_suite_flags_conflict_is_one_error_line(tmp_path):
    res = _bench(['--model', 'cifar_add_resnet20_b1', '--quick'], tmp_path)
    assert res.returncode == 2 and res.stderr.startswith('error: ') and res.stderr.count('\n') == 1


def test_operator_profile_lists_the_operators_of_both_paths(tmp_path):
    """utils.bench_profile (the source of the causes in docs/performance.md): the baseline's global average
    pooling is the Pooling operator and its sigmoid an Activation; the fast training path pools with mean_hw."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)

    def ops(*flags):
        cmd = [sys.executable, '-m', 'utils.bench_profile', '--model', 'cifar_aff_resnet20_b1',
               '--batch-size', '2', '--iters', '1', '--min-share', '0']
        res = subprocess.run(cmd + list(flags), cwd=str(tmp_path), env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0].startswith('cifar_aff_resnet20_b1, ') and lines[-1].startswith('sum of operators')
        return {ln.split()[0] for ln in lines[2:-1]}, lines[0]
    base, head = ops('--baseline')
    assert {'_backward_Pooling', '_backward_Convolution', 'Activation'} <= base and 'baseline' in head
    fast, head = ops()
    # the mean pooling is net.cpu_speed.mean_hw: a matrix-vector product with a row of 1/(H*W) (the
    # only broadcast_div of the step; the loss has a mean of its own)
    assert {'_backward_dot', 'broadcast_div'} <= fast and '_backward_Pooling' not in fast
    assert 'fast' in head
    infer, head = ops('--phase', 'inference')
    assert '_sg_mkldnn_conv' in infer and 'oneDNN graph optimisation (' in head
    bad = subprocess.run([sys.executable, '-m', 'utils.bench_profile', '--model', 'nope'], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith('error: ') and bad.stderr.count('\n') == 1


def test_speed_layer_benchmark_times_four_variants_of_the_same_weights():
    """utils.bench_layer: open-aff's plain hybridize / official with static_alloc / speed layer /
    + kernel, same weights (inference outputs agree),
    one record per phase; no timing is asserted."""
    from utils import bench_layer
    for phase in ('train', 'inference'):
        rec = bench_layer.measure('cifar_aff_resnet20_b1', 2, phase, windows=1, iters=1)
        assert set(rec['images_per_s']) == set(bench_layer.VARIANTS)
        assert all(v > 0 for v in rec['images_per_s'].values())
        assert rec['notes']['official'].startswith('official')
        assert rec['notes']['open-aff hybridize()'] == 'official, plain hybridize()'
        assert rec['notes']['speed layer, pure tails'].startswith('CPU speed layer (net.cpu_speed)')
    assert all(d <= 2e-5 for d in rec['max_rel_diff_vs_official'].values())
    row = bench_layer.markdown([rec]).splitlines()[-1]
    ips = rec['images_per_s']
    assert row.startswith('| cifar_aff_resnet20_b1 | inference | 2 |')
    assert row.endswith('| %.2fx | %.2fx |' % (ips['speed layer + fused kernel'] / ips['official'],
                                                ips['speed layer + fused kernel'] / ips['open-aff hybridize()']))
    # --markdown reads only its own records: a missing file or a suite record is one error line
    for path, words in (('missing.json', 'cannot read benchmark record'),
                        (os.path.join(ROOT, 'docs', 'bench', 'cifar_2threads_quiet.json'),
                         'is not a benchmark layer record')):
        bad = subprocess.run([sys.executable, '-m', 'utils.bench_layer', '--markdown', path], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith('error: ') and words in bad.stderr
        assert bad.stderr.count('\n') == 1


def test_environment_benchmark_alternates_settings_in_child_processes(tmp_path, monkeypatch):
    """utils.bench_env: each setting's variables reach its child (its environment record says so),
    the default's child has none of them; medians per setting, phase and variant; no timing asserted."""
    from utils import bench_env, bench_layer
    monkeypatch.setattr(bench_env, 'SETTINGS', {'default': {}, 'glibc': {'MALLOC_MMAP_MAX_': '0'}})
    monkeypatch.delenv('MALLOC_MMAP_MAX_', raising=False)
    out = tmp_path / 'env.json'
    assert bench_env.main(['--model', 'cifar_aff_resnet20_b1', '--batch-size', '2', '--rounds', '1',
                           '--windows', '1', '--iters', '1', '--json', str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec['runs']['glibc'][0]['environment']['env']['MALLOC_MMAP_MAX_'] == '0'
    assert rec['runs']['glibc'][0]['kind'] == 'layer'     # what bench_layer --markdown reads
    assert 'MALLOC_MMAP_MAX_' not in rec['runs']['default'][0]['environment']['env']
    for setting in ('default', 'glibc'):
        assert set(rec['median_images_per_s'][setting]['train']) == set(bench_layer.VARIANTS)


def test_onednn_account_counts_the_layout_reorders_of_the_verbose_log(tmp_path):
    """utils.bench_profile --onednn: the parser sums MKLDNN_VERBOSE exec lines between the marks only, a
    reorder keyed by its layouts; the command runs the step in a child and prints per-step figures."""
    from utils import bench_profile as bp
    line = ('dnnl_verbose,exec,cpu,reorder,jit:blk,undef,src_f32::blocked:%s:f0 dst_f32::blocked:%s:f0'
            ',,,2x16x4x4,%s')
    conv = 'dnnl_verbose,exec,cpu,convolution,brgconv,forward,src_f32::blocked:acdb:f0,,alg,mb2,%s'
    log = [line % ('acdb', 'abcd', '9.0'), bp._BEGIN, line % ('acdb', 'abcd', '0.5'),
           line % ('abcd', 'acdb', '0.25'), line % ('acdb', 'abcd', '1.5'), conv % '2.0', 'noise',
           bp._END, conv % '7.0']
    assert bp.onednn_totals(log) == {'reorder acdb -> abcd': (2, 0.5 + 1.5),
                                     'reorder abcd -> acdb': (1, 0.25), 'convolution': (1, 2.0)}
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, '-m', 'utils.bench_profile', '--model', 'cifar_aff_resnet20_b1',
                          '--batch-size', '2', '--iters', '1', '--onednn'], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith('cifar_aff_resnet20_b1, train, batch 2') and 'oneDNN primitives' in lines[0]
    kinds = {ln.rsplit(None, 2)[0] for ln in lines[2:]}
    assert 'convolution' in kinds and any(k.startswith('reorder ') for k in kinds)
    assert lines[-2].startswith('all layout reorders') and lines[-1].startswith('all oneDNN primitives')


def test_operator_benchmark_times_every_case_and_refuses_a_bad_shape(tmp_path):
    """utils.bench_ops: the kernel's cases on both layouts (when loaded), both poolings; the oneDNN-layout
    inputs hold the same values as the plain ones (an identity convolution)."""
    from utils import bench_ops
    import net.kernels
    rec = bench_ops.measure((2, 8, 4, 4), windows=1, iters=1)
    names = set(rec['ms_per_call'])
    assert {'add, plain layout', 'mean fwd+bwd, plain', 'mean_hw fwd+bwd, oneDNN layout'} <= names
    assert ('aff_tail, oneDNN layout' in names) is bool(net.kernels.load())
    assert all(v > 0 for v in rec['ms_per_call'].values())
    x = mx.nd.random.uniform(shape=(2, 8, 4, 4))
    assert (bench_ops._onednn_layout(x).asnumpy() == x.asnumpy()).all()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    bad = subprocess.run([sys.executable, '-m', 'utils.bench_ops', '--shape', '2,8'], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'N,C,H,W' in bad.stderr


def test_speed_layer_benchmark_in_processes_starts_every_child_from_the_same_weights(tmp_path):
    """utils.bench_layer --processes: each variant in its own child, seeded alike (inference outputs
    agree with the official child's), only the asked variants; an unknown variant is a usage error."""
    from utils import bench_layer
    rec = bench_layer.measure_processes('cifar_aff_resnet20_b1', 2, 'inference', windows=1, iters=1,
                                        variants=('official', 'speed layer + fused kernel'))
    assert set(rec['images_per_s']) == {'official', 'speed layer + fused kernel'}
    # a child seeded differently would start from other weights: O(1) differences
    assert rec['max_rel_diff_vs_official']['speed layer + fused kernel'] <= 2e-5
    assert rec['how'] == {'processes': True, 'windows': 1, 'iters': 1, 'warmup': 1}
    row = bench_layer.markdown([rec]).splitlines()[-1].split(' | ')
    assert row[4:6] == ['—', '—'] and row[-1] == '— |'      # open-aff, pure; x open-aff
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    bad = subprocess.run([sys.executable, '-m', 'utils.bench_layer', '--models', 'cifar_aff_resnet20_b1',
                          '--variants', 'official,fast'], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown variant 'fast'" in bad.stderr
    # a child that fails is one error line naming it (here: an unknown model reaches the child)
    res = subprocess.run([sys.executable, '-c', 'from utils import bench_layer; from utils.cli import run_main; '
                          'run_main(bench_layer.measure_processes, "nope", 2, "train", 1, 1)'],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith('error: the utils.bench_layer child (nope, train, ')
    assert res.stderr.count('\n') == 1
