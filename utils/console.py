"""Console entry points: ``pip install .`` puts one command per tool on PATH (setup.py reads :data:`TOOLS`).

Each command runs its module's ``main()`` exactly as ``python -m MODULE`` / ``python SCRIPT.py``
does, through :func:`utils.cli.run_main` (a user error is one ``error: ...`` line and exit status 2),
with the script's own preparation (the training scripts route Python warnings into the run's log):

    aff-train-cifar ...     = python train_cifar.py ...
    aff-reproduce --list    = python -m utils.reproduce --list

The function behind command ``aff-NAME`` is ``utils.console:NAME`` (``-`` becomes ``_``); the
functions are made from :data:`TOOLS` below, so a tool is added in one place.  This module imports
nothing of the project until a command runs (setup.py executes it on its own).
"""
import importlib
import logging

#: command -> (module whose ``main`` it runs, whether warnings go to ``logging`` first as in the
#: module's ``__main__`` block)
TOOLS = {
    'aff-train-cifar': ('train_cifar', True),
    'aff-train-imagenet': ('train_imagenet', False),
    'aff-train-seg': ('train_seg', True),
    'aff-reproduce': ('utils.reproduce', False),
    'aff-compare': ('utils.compare', False),
    'aff-models': ('utils.models', False),
    'aff-flops': ('utils.flops', False),
    'aff-gradcam': ('utils.gradcam', False),
    'aff-bench': ('utils.bench', False),
    'aff-bench-profile': ('utils.bench_profile', False),
    'aff-paper-tables': ('utils.paper_tables', False),
    'aff-launch': ('utils.launch', False),
    'aff-augment': ('utils.augment', False),
    'aff-export': ('utils.export', False),
}


def function_name(command):
    """``'aff-train-cifar'`` -> ``'train_cifar'``: the attribute of this module behind a command."""
    return command[len('aff-'):].replace('-', '_')


def entry_points():
    """setup.py's ``console_scripts``: ``'aff-train-cifar = utils.console:train_cifar'``, ..."""
    return ['%s = utils.console:%s' % (c, function_name(c)) for c in TOOLS]


def _command(command, module, capture_warnings):
    def run():
        if capture_warnings:
            logging.captureWarnings(True)
        from utils.cli import run_main
        run_main(importlib.import_module(module).main)
    run.__name__ = run.__qualname__ = function_name(command)
    run.__doc__ = 'The `%s` command: %s.main() with the command line.' % (command, module)
    return run


for _c, (_m, _w) in TOOLS.items():
    globals()[function_name(_c)] = _command(_c, _m, _w)
del _c, _m, _w
