"""Networks of "Attentional Feature Fusion" (Dai et al., WACV 2021) in MXNet Gluon.

``net.get_model(name)`` builds any registered network; ``net.get_fusion(name, channels)``
any fusion module; :mod:`net.openaff` exposes the official open-aff class names.
"""
from . import _env  # noqa: F401  (sets OMP_NUM_THREADS before mxnet is imported)
from .errors import AFFError, CheckpointError, UnknownNameError
from .fusion import get_fusion, fusion_names, MSCAM, AFF, IAFF
from .model_zoo import get_model, get_model_list, get_model_info

__all__ = ['get_model', 'get_model_list', 'get_model_info', 'get_fusion', 'fusion_names',
           'MSCAM', 'AFF', 'IAFF', 'AFFError', 'CheckpointError', 'UnknownNameError']
