"""Compatibility layer: the official open-aff class names and constructor signatures.

Code written against open-aff (``from model.fusion import ...`` /
``CIFARAFFResNet('ASKCFuse', 1, [5, 5, 5], [64, 64, 128, 256], 100, False)``) runs unchanged
against these names, and the networks save and load the same parameter files.  Everything
here is a thin mapping onto the project's own builders; nothing else lives in this module.

HEAD (open-aff 0bcfd8a): :func:`CIFARAFFResNet`, :func:`CIFARAFFResNeXt`, :func:`AFFResNet`,
:func:`AFFResNeXt`.  Submitted-paper commit 806562e: :func:`ResNet110V2ASKC`,
:func:`ResNet20V2ASKC`, :func:`ResNet50_v1bASKC`, :func:`ResNextASKC`,
:func:`CIFARResNextASKC`.  Fusion classes under their official names: :data:`ASKCFuse` ...
Every ``askc_type`` of docs/official-code.md §1.4 (and every paper name) is accepted.
"""
from mxnet.gluon import nn

from . import fusion as _f
from .cifar import CIFARPreActResNet, CIFARResNeXt
from .errors import AFFError
from .imagenet import ResNetV1bHost, ResNeXtHost

__all__ = ['CIFARAFFResNet', 'CIFARAFFResNeXt', 'AFFResNet', 'AFFResNeXt', 'ResNet110V2ASKC',
           'ResNet20V2ASKC', 'ResNet50_v1bASKC', 'ResNextASKC', 'CIFARResNextASKC']

# fusion modules under their official class names (signature ``(channels, r=4)``)
DirectAddFuse = _f.DirectAdd
ConcatFuse = _f.Concat
ASKCFuse = _f.AFF
LCNASKCFuse = _f.AFF
ResGlobLocaforGlobLocaChaFuse = _f.IAFF
ResGlobGlobChaFuse = _f.GlobalGlobal
ResLocaLocaChaFuse = _f.LocalLocal
ResGlobLocaChaFuse = _f.AFFSingleLayer
ResGlobChaFuse = _f.GlobalSelect
ResLocaChaFuse = _f.LocalSelect
ResGlobforGlobChaFuse = _f.IterativeGlobal
ResLocaforLocaChaFuse = _f.IterativeLocal
AYforXplusYAddFuse = _f.MSGAU
XplusAYforYAddFuse = _f.MSSE
AXYforXplusYAddFuse = _f.MSSA
AXYforXYAddFuse = _f.MSModulatedSum
SEFuse = _f.SE
GAUFuse = _f.GAU
SKFuse = _f.SK
HalfASKCFuse = _f.HalfAFF
ConcatASKCFuse = _f.ConcatAFF
RASKCFuse = _f.RecursiveAFF
DepthASKCFuse = _f.DepthwiseAFF
Depth4ASKCFuse = _f.Depthwise4AFF
AddReLUASKCFuse = _f.ReLUAFF
ConcatASKC = _f.SharedConvAFF


def _prefix(kwargs, name_prefix=''):
    if name_prefix and 'prefix' not in kwargs:
        kwargs['prefix'] = name_prefix
    return kwargs


def _norm_kw(norm_layer, norm_kwargs):
    return dict(norm_layer=None if norm_layer is nn.BatchNorm else norm_layer,
                norm_kwargs=norm_kwargs)


# ---------------------------------------------------------------- HEAD (0bcfd8a)
def CIFARAFFResNet(askc_type, start_layer, layers, channels, classes, deep_stem=False,
                   norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """HEAD ``model.CIFARAFFResNet``: pre-activation ResNet, [AvgPool, Conv1x1] projections."""
    return CIFARPreActResNet(askc_type, layers, channels, classes, start_layer=start_layer,
                             era='head', deep_stem=deep_stem,
                             **_norm_kw(norm_layer, norm_kwargs), **kwargs)


def CIFARAFFResNeXt(askc_type, start_layer, layers, channels, cardinality, bottleneck_width,
                    classes=10, deep_stem=False, use_se=False, norm_layer=nn.BatchNorm,
                    norm_kwargs=None, **kwargs):
    """HEAD ``model.CIFARAFFResNeXt``; only ``channels[0]`` is used (the stem/base width)."""
    return CIFARResNeXt(askc_type, layers, channels[0], cardinality, bottleneck_width,
                        classes=classes, start_layer=start_layer, era='head',
                        deep_stem=deep_stem, use_se=use_se,
                        **_norm_kw(norm_layer, norm_kwargs), **kwargs)


def AFFResNet(askc_type, start_layer, layers, classes=1000, dilated=False,
              norm_layer=nn.BatchNorm, norm_kwargs=None, last_gamma=False, deep_stem=True,
              stem_width=32, avg_down=True, final_drop=0.0, use_global_stats=False,
              name_prefix='', **kwargs):
    """HEAD ``model.AFFResNet`` (deep stem + avg_down by default)."""
    return ResNetV1bHost(askc_type, layers, classes, start_layer=start_layer, era='head',
                         deep_stem=deep_stem, stem_width=stem_width, avg_down=avg_down,
                         last_gamma=last_gamma, dilated=dilated, final_drop=final_drop,
                         use_global_stats=use_global_stats,
                         **_norm_kw(norm_layer, norm_kwargs), **_prefix(kwargs, name_prefix))


def AFFResNeXt(askc_type, start_layer, layers, cardinality, bottleneck_width, classes=1000,
               last_gamma=False, use_se=False, deep_stem=True, avg_down=True, stem_width=64,
               norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """HEAD ``model.AFFResNeXt`` (deep stem 64-64-128 + avg_down by default)."""
    return ResNeXtHost(askc_type, layers, cardinality, bottleneck_width, classes,
                       start_layer=start_layer, era='head', deep_stem=deep_stem,
                       stem_width=stem_width, avg_down=avg_down, last_gamma=last_gamma,
                       use_se=use_se, **_norm_kw(norm_layer, norm_kwargs), **kwargs)


# ---------------------------------------------------------------- 806562e (paper)
def ResNet110V2ASKC(in_askc_type, layers, channels, classes, start_layer=1,
                    norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """806562e ``model.ResNet110V2ASKC`` (``train_cifar.py --model resnet``): strided 1x1
    projections; the host of Tables 3/4/S1 (ResNet-20-b) and of AFF-ResNet-32."""
    return CIFARPreActResNet(in_askc_type, layers, channels, classes, start_layer=start_layer,
                             era='paper', **_norm_kw(norm_layer, norm_kwargs), **kwargs)


def ResNet20V2ASKC(layers, channels, classes, askc_type, asBackbone=False, **kwargs):
    """806562e ``model.ResNet20V2ASKC``: the older host with fusion in every stage."""
    if asBackbone:
        raise AFFError('asBackbone=True (returning attention maps) is not supported; build '
                       'the classifier and read the fusion weights with a forward hook')
    return CIFARPreActResNet(askc_type, layers, channels, classes, start_layer=1, era='paper',
                             **kwargs)


def ResNet50_v1bASKC(askc_type, layers, classes=1000, dilated=False, norm_layer=nn.BatchNorm,
                     norm_kwargs=None, last_gamma=False, deep_stem=False, stem_width=32,
                     avg_down=False, final_drop=0.0, use_global_stats=False, name_prefix='',
                     **kwargs):
    """806562e ``model.ResNet50_v1bASKC``: 7x7 stem always (``deep_stem`` is ignored, as in
    the official code), fusion in layer3/layer4 only."""
    return ResNetV1bHost(askc_type, layers, classes, start_layer=3, era='paper',
                         stem_width=stem_width, avg_down=avg_down, last_gamma=last_gamma,
                         dilated=dilated, final_drop=final_drop,
                         use_global_stats=use_global_stats,
                         **_norm_kw(norm_layer, norm_kwargs), **_prefix(kwargs, name_prefix))


def ResNextASKC(askc_type, layers, cardinality, bottleneck_width, classes=1000,
                last_gamma=False, use_se=False, deep_stem=False, avg_down=False, stem_width=64,
                norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """806562e ``model.ResNextASKC``: 7x7 stem by default, fusion in stages 3-4 only."""
    return ResNeXtHost(askc_type, layers, cardinality, bottleneck_width, classes,
                       start_layer=3, era='paper', deep_stem=deep_stem, stem_width=stem_width,
                       avg_down=avg_down, last_gamma=last_gamma, use_se=use_se,
                       **_norm_kw(norm_layer, norm_kwargs), **kwargs)


def CIFARResNextASKC(layers, cardinality, bottleneck_width, classes=10, use_se=False,
                     norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
    """806562e ``model.CIFARResNextASKC``: AFF (r = 16) hard-coded in every stage, strided
    [Conv1x1, BN] projections, stem width 64."""
    return CIFARResNeXt('ASKCFuse', layers, 64, cardinality, bottleneck_width,
                        classes=classes, start_layer=1, era='paper', use_se=use_se,
                        **_norm_kw(norm_layer, norm_kwargs), **kwargs)
