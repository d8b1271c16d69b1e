"""Where the tools find their files, the same way in a repository checkout and in an installed package.

``pip install .`` puts the packages ``net`` and ``utils`` and the three training scripts (top-level
modules ``train_cifar``, ``train_imagenet``, ``train_seg``: setup.py's ``py_modules``) side by side in
site-packages, as they stand side by side in the repository, so one rule serves both:

* :data:`PACKAGE_ROOT`: the folder holding ``net/``, ``utils/`` and the scripts (the repository root,
  or site-packages);
* :data:`CHECKOUT`: whether that folder is a repository checkout (it has ``setup.py``; an editable
  install, ``pip install -e .``, is one too);
* :func:`script`: the path of a training script;
* :data:`OFFICIAL_LOGS`: the gzipped copies of official open-aff training logs that are installed with
  ``utils`` (``utils/official_logs/``), utils.compare's fallback when the full set is not given;
* :func:`params_dir`: the checkpoints folder, ``params/`` of a checkout, else the MXNet model folder
  :func:`mxnet_models_dir` (``$MXNET_HOME/models``, by default ``~/.mxnet/models``, where GluonCV keeps
  its models too).  ``$AFF_PARAMS_DIR`` is searched before it (net.model_store).

Nothing here depends on the current directory.
"""
import os

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT = os.path.isfile(os.path.join(PACKAGE_ROOT, 'setup.py'))
#: the training scripts, installed as top-level modules next to ``net`` and ``utils``
SCRIPTS = ('train_cifar.py', 'train_imagenet.py', 'train_seg.py')
OFFICIAL_LOGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'official_logs')


def script(name):
    """The path of the training script ``name`` (e.g. ``'train_cifar.py'``)."""
    return os.path.join(PACKAGE_ROOT, name)


def mxnet_models_dir():
    """``$MXNET_HOME/models``, else ``~/.mxnet/models`` (absolute, read when called)."""
    home = os.environ.get('MXNET_HOME')
    folder = os.path.join(home, 'models') if home else os.path.join('~', '.mxnet', 'models')
    return os.path.abspath(os.path.expanduser(folder))


def params_dir():
    """The checkpoints folder: ``<checkout>/params`` in a checkout, else :func:`mxnet_models_dir`."""
    return os.path.join(PACKAGE_ROOT, 'params') if CHECKOUT else mxnet_models_dir()
