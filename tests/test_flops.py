"""utils.flops: the official tool's FLOPs (docs/official-code.md §2.7 numbers, §7 rules), MACs with
grouped convs counted fully (hand-derived), a hand-computed tiny network, the table CLI and the parameter totals."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import net
from net.layers import GlobalAvgPool
from net.errors import AFFError, UnknownNameError
from utils import flops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# docs/official-code.md §2.7, "FLOPs (flops.py)" column:
# (registry name, constructor overrides) -> official FLOPs
OFFICIAL_FLOPS = {
    ('resnet50_v1b', ()): 4091231208,                  # 806562e ResNet-50 (the supplement's 4.1 G)
    ('aff_resnet50_v1b', ()): 4326413928,              # 806562e AFF-ResNet-50 (4.3 G)
    ('iaff_resnet50_v1b', ()): 4561596648,
    ('resnext50_32x4d_v1b', ()): 4008541160,
    ('aff_resnext50_32x4d_v1b', ()): 4243723880,
    ('resnet50', ()): 4330871784,                      # HEAD
    ('aff_resnet50', ()): 4566054504,
    ('iaff_resnet50', ()): 4801237224,
    ('resnext50_32x4d', ()): 5376539624,
    ('aff_resnext50_32x4d', ()): 5611722344,
    ('iaff_resnext50_32x4d', ()): 5846905064,
    ('aff_resnet50', (('start_layer', 1),)): 4750308888,
    ('cifar_aff_resnet32', ()): 1133120084,
    ('cifar_aff_resnext38_32x4d', ()): 1038187044,
    ('cifar_aff_resnext47_32x4d', ()): 1265783188,
}
# rows that the derivation tests below reuse (every row is checked against
# docs/official-code.md §2.7: ~15 s in all)
FAST = [('resnet50_v1b', ()), ('aff_resnet50_v1b', ()), ('resnext50_32x4d_v1b', ()),
        ('aff_resnext50_32x4d', ()), ('cifar_aff_resnet32', ()), ('cifar_aff_resnext38_32x4d', ())]

# Dense head of the ImageNet models, 2048 -> 1000 with bias: official 2*u*i - i + u, MACs u*i
FC_OFFICIAL_MINUS_MACS = (2 * 1000 * 2048 - 2048 + 1000) - 1000 * 2048     # 2,046,952


def _ident(key):
    return key[0] + ''.join('-%s=%s' % kv for kv in key[1])


_CACHE = {}


def counted(key):
    """One forward pass per model for the whole file (each result holds both conventions)."""
    if key not in _CACHE:
        _CACHE[key] = flops.count(key[0], mode='official', **dict(key[1]))
    return _CACHE[key]


@pytest.mark.parametrize('key', list(OFFICIAL_FLOPS), ids=_ident)
def test_official_mode_equals_the_official_tool(key):
    result = counted(key)
    assert result.total == result.official == OFFICIAL_FLOPS[key]


def test_supplement_rounding_and_overhead():
    """Supplement: ResNet-50 4.1 G vs AFF-ResNet-50 4.3 G (+4.88 % from the rounded numbers; +5.75 % exactly)."""
    plain, fused = counted(FAST[0]), counted(FAST[1])
    assert '%.1f' % (plain.official / 1e9) == '4.1' and '%.1f' % (fused.official / 1e9) == '4.3'
    assert round(flops.overhead(fused, plain, 'official'), 4) == 0.0575
    assert round(flops.overhead(fused, plain, 'official', decimals=1), 4) == 0.0488
    with pytest.raises(AFFError):
        flops.overhead(fused, plain, 'macs')          # counted in official mode


def test_macs_of_non_grouped_networks():
    """No grouped conv: conv MACs = the official conv count minus its bias terms, per layer, and in total
    (derived by hand): ResNet-50 v1b has no conv bias; AFF's attention convs (layer3: 6 blocks at 14x14,
    1024 -> 64 -> 1024; layer4: 3 blocks at 7x7, 2048 -> 128 -> 2048) do, at H*W (local) and 1x1 (global)."""
    for key in FAST[:2]:
        result = counted(key)
        for layer in result.layers:
            assert layer.groups == 1
            if layer.kind == 'Conv2D':
                assert layer.macs == layer.official - layer.bias_adds
    aff_bias = 6 * (64 + 1024) * (196 + 1) + 3 * (128 + 2048) * (49 + 1)
    assert aff_bias == 1612416
    assert counted(FAST[0]).macs == 4091231208 - FC_OFFICIAL_MINUS_MACS == 4089184256
    assert counted(FAST[1]).macs == 4326413928 - aff_bias - FC_OFFICIAL_MINUS_MACS
    assert counted(FAST[1]).flops == 2 * counted(FAST[1]).macs


def test_macs_count_grouped_convs_fully_single_layer():
    """A 128-channel 3x3 conv with 32 groups on 8x8: (128/32)*9*128*64 MACs; the official tool / 32."""
    block = nn.HybridSequential()
    block.add(nn.Conv2D(128, 1, in_channels=3, use_bias=False),
              nn.Conv2D(128, 3, padding=1, groups=32, in_channels=128, use_bias=False))
    result = flops.count(block, input_size=8)
    pointwise, grouped = result.layers
    assert (pointwise.macs, pointwise.official) == (128 * 3 * 64, 128 * 3 * 64)
    assert grouped.weight_shape == (128, 4, 3, 3) and grouped.groups == 32
    assert grouped.macs == 4 * 9 * 128 * 64 == 294912
    assert grouped.official == 294912 // 32 == 9216
    assert result.total == result.macs == 24576 + 294912


def test_macs_count_grouped_convs_fully_network():
    """806562e ResNeXt-50 32x4d: 16 grouped 3x3 convs of width D = 128, 256, 512, 1024 at 56, 28, 14, 7
    (3, 4, 6, 3 blocks), each D*(D/32)*9*H*W = 14,450,688 MACs; the official tool counts 1/32 of them."""
    result = counted(('resnext50_32x4d_v1b', ()))
    grouped = [l for l in result.layers if l.groups > 1]
    assert [l.groups for l in grouped] == [32] * 16
    per_conv = 128 * 4 * 9 * 56 * 56
    assert per_conv == 256 * 8 * 9 * 28 * 28 == 512 * 16 * 9 * 14 * 14 == 1024 * 32 * 9 * 7 * 7 == 14450688
    assert all(l.macs == per_conv and l.official == per_conv // 32 for l in grouped)
    assert result.macs - result.official == 31 * 16 * (per_conv // 32) - FC_OFFICIAL_MINUS_MACS
    assert result.macs == 4230479872                     # 4.23 GMACs, the usual ResNeXt-50 figure


def test_grouped_identity_on_head_aff_resnext():
    """macs - official = sum over grouped convs of (groups - 1) * their official count, once the bias terms
    (counted only officially) and the Dense difference are put back."""
    result = counted(('aff_resnext50_32x4d', ()))
    grouped = [l for l in result.layers if l.groups > 1]
    assert grouped and all(not l.bias for l in grouped)
    bias = sum(l.bias_adds for l in result.layers if l.kind == 'Conv2D')
    assert bias > 0
    assert (result.macs - result.official + bias + FC_OFFICIAL_MINUS_MACS
            == sum((l.groups - 1) * l.official for l in grouped))


def test_tiny_network_by_hand():
    """Conv2D(8, 3x3, pad 1, bias) on 1x3x10x10 -> ReLU -> Dense(5, bias) on the 800 features."""
    block = nn.HybridSequential()
    block.add(nn.Conv2D(8, 3, padding=1, in_channels=3), nn.Activation('relu'), nn.Dense(5, in_units=800))
    block.initialize()
    x = mx.nd.zeros((1, 3, 10, 10))
    assert block(x).shape == (1, 5)
    conv_macs, conv_bias = 3 * 3 * 3 * 8 * 10 * 10, 8 * 10 * 10                    # 21,600 and 800
    dense_official, dense_macs = 2 * 5 * 800 - 800 + 5, 5 * 800                    # 7,205 and 4,000
    official = flops.count(block, input_size=10, mode='official')
    macs = flops.count(block, input_size=10)
    for result in (official, macs):
        assert [l.kind for l in result.layers] == ['Conv2D', 'Dense']
        assert result.layers[0].output_shape == (1, 8, 10, 10)
        assert (result.official, result.macs) == (22400 + 7205, 21600 + 4000)
        assert result.elementwise == 800 and result.elementwise_fusion == 0      # the ReLU only
        assert result.params_total == result.params_trainable == 8 * 27 + 8 + 5 * 800 + 5
        assert result.input_size == 10
    assert official.total == conv_macs + conv_bias + dense_official == 29605
    assert macs.total == conv_macs + dense_macs == 25600 and macs.flops == 51200


def test_elementwise_rules_by_hand():
    """elem: one op per output element (BN, ReLU), pooling one per window element (max 3x3: 9 per output,
    global: the input; as the speed layer's mean_hw: a dot of the input with a row of 1/(H*W), i.e.
    the input's elements, plus the row's sum and division), Flatten none; Conv2D/Dense only in MACs."""
    def block(gap):
        b = nn.HybridSequential()
        b.add(nn.Conv2D(4, 3, padding=1, in_channels=3, use_bias=False), nn.BatchNorm(in_channels=4),
              nn.Activation('relu'), nn.MaxPool2D(3, 2, padding=1), gap, nn.Flatten(), nn.Dense(2, in_units=4))
        return b
    result = flops.count(block(nn.GlobalAvgPool2D()), input_size=8)
    assert result.elementwise_ops == {'BatchNorm': 4 * 64, 'Activation(relu)': 4 * 64,
                                      'Pooling': 9 * 4 * 16 + 4 * 16}
    assert result.elementwise == 1152 and result.elementwise_fusion == 0
    result = flops.count(block(GlobalAvgPool()), input_size=8)      # the official Pooling
    assert result.elementwise_ops['Pooling'] == 9 * 4 * 16 + 4 * 16 and result.elementwise == 1152
    from net import cpu_speed
    fast = block(GlobalAvgPool())
    cpu_speed.apply(fast, mx.cpu())                                     # the CPU training mean_hw
    result = flops.count(fast, input_size=8)
    assert (result.elementwise_ops['dot'], result.elementwise_ops['sum'],
            result.elementwise_ops['broadcast_div']) == (4 * 16, 16, 16)
    assert 'ones_like' not in result.elementwise_ops and result.elementwise == 1152 + 16 + 16


def test_elementwise_inside_fusion_modules():
    """Add-ResNet-20 (b = 1): what runs inside the fusion modules is the three residual sums, one per block
    output (16x32x32, 32x16x16, 64x8x8); AFF's sigmoids all run inside its modules."""
    plain = flops.count('cifar_add_resnet20_b1')
    assert plain.elementwise_fusion == plain.elementwise_ops['broadcast_add'] == 16384 + 8192 + 4096
    aff = flops.count('cifar_aff_resnet20_b1')
    sig = aff.elementwise_ops['Activation(sigmoid)']
    assert sig == 28672 and aff.elementwise_fusion > sig


def test_parameter_totals_include_bn_running_stats():
    result = counted(('cifar_aff_resnet32', ()))
    model = net.get_model('cifar_aff_resnet32')
    params = model.collect_params()
    sizes = {k: int(np.prod(p.shape)) for k, p in params.items()}
    running = sum(v for k, v in sizes.items() if k.endswith(('running_mean', 'running_var')))
    assert running > 0
    assert result.params_total == sum(sizes.values()) == 7917456                  # docs/official-code.md §2.7
    assert result.params_trainable == 7897156
    assert round(result.params_total_m, 2) == 7.92


def test_hybridized_model_and_bad_mode_are_refused():
    model = net.get_model('cifar_aff_resnet20_b1')
    with pytest.raises(UnknownNameError):
        flops.count(model, mode='gflops')
    model.hybridize()
    with pytest.raises(AFFError, match='hybridized'):
        flops.count(model)


def _run(*args):
    return subprocess.run([sys.executable, '-m', 'utils.flops', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_table():
    r = _run('cifar_aff_resnet20_b1')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'GFLOPs = 2 x GMACs' in lines[0]
    assert lines[1].split()[:6] == ['model', 'input', 'params', '(M)', 'trainable', '(M)']
    assert 'GMACs' in lines[1] and 'GFLOPs' in lines[1]
    row = [l for l in lines if l.startswith('cifar_aff_resnet20_b1')]
    assert len(row) == 1
    result = flops.count('cifar_aff_resnet20_b1')
    assert result.params_total == 90968      # docs/official-code.md §1.7 (b = 1, width 1)
    assert row[0].split() == ['cifar_aff_resnet20_b1', '32', '0.09', '0.09',
                              '%.2f' % (result.macs / 1e9), '%.2f' % (2 * result.macs / 1e9),
                              '%.3f' % (result.elementwise / 1e9), '%.3f' % (result.elementwise_fusion / 1e9)]


def test_cli_unknown_name():
    r = _run('cifar_aff_resnet20_b1', 'no_such_net')
    assert r.returncode == 2
    assert r.stdout == ''
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith('error: unknown model')


def test_cli_official_per_layer_markdown(capsys):
    assert flops.main(['cifar_aff_resnet20_b1', '--official', '--per-layer', '--markdown']) == 0
    out = capsys.readouterr().out
    result = flops.count('cifar_aff_resnet20_b1', mode='official')
    assert out.startswith(flops.CONVENTION['official'] + '\n| model | input |')
    assert '| cifar_aff_resnet20_b1 | 32 | 0.09 | 0.09 | %.2f | %s |' % (result.official / 1e9,
                                                                       format(result.official, ',')) in out
    assert out.count('| Conv2D |') + out.count('| Dense |') == len(result.layers)
    assert '| total |' in out
